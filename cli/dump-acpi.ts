/**
 * `iommu-sim dump-acpi --out DIR [--iort-revision N]`: write the virt machine's ACPI tables into a
 * folder, one file per signature (APIC, IORT, MCFG, DSDT), as /sys/firmware/acpi/tables holds
 * them; `boot --acpi DIR` boots them and `iasl -d DIR/IORT` disassembles them.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { buildVirtAcpi } from '../scenarios/machines/virt-acpi.js';
import { UsageError } from './errors.js';

function parseRevision(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) > 7) throw new InvalidArgumentError('an IORT revision is 0, 3, 5, 6 or 7');
  return Number(v);
}

export function dumpAcpi(o: { out: string; iortRevision?: number }): string[] {
  const { tables } = buildVirtAcpi(o.iortRevision !== undefined ? { iortRevision: o.iortRevision } : {});
  try {
    mkdirSync(o.out, { recursive: true });
    for (const [sig, blob] of tables) writeFileSync(join(o.out, sig), blob);
  } catch (e) {
    throw new UsageError(`cannot write ${o.out}: ${(e as Error).message}`);
  }
  return [...tables.keys()];
}

export function registerDumpAcpi(program: Command): void {
  program
    .command('dump-acpi')
    .description("write the virt machine's ACPI tables (APIC, IORT, MCFG, DSDT) into a folder")
    .requiredOption('--out <dir>', 'output folder (created if missing)')
    .option('--iort-revision <n>', 'IORT table revision (default 5, E.d)', parseRevision)
    .action((o: { out: string; iortRevision?: number }) => {
      const written = dumpAcpi(o);
      process.stdout.write(`wrote ${written.join(', ')} to ${o.out}\n`);
    });
}
