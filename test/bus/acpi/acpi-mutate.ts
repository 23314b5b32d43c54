/**
 * Mutated ACPI table sets for the firmware fuzz: one table of a known-good set is damaged
 * (truncated, bytes flipped, words overwritten, often with the checksum repaired so the damage
 * reaches the parsers behind the header check), then the set is booted. The only outcomes allowed
 * are a normal boot and a firmware error (FirmwareError from the kernel's tables, or the
 * machine's MachineFirmwareError); anything else is rethrown and fails the property.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import type { AcpiMemoryMap } from '../../../bus/acpi/acpi-boot.js';
import { acpiChecksum } from '../../../bus/acpi/table.js';
import { isFirmwareError } from '../../../cli/errors.js';
import { bootFromAcpi } from '../../../scenarios/lib/lab.js';
import { buildVirtAcpi } from '../../../scenarios/machines/virt-acpi.js';
import { qemuTables } from './acpi-fixture.js';

export interface AcpiSeed {
  name: string;
  tables: Map<string, Uint8Array>;
  memory: AcpiMemoryMap;
}

function fixtureSet(board: string, memory: AcpiMemoryMap): AcpiSeed {
  const dir = join(__dirname, '..', '..', 'fixtures', 'acpi', board);
  const tables = new Map<string, Uint8Array>();
  for (const f of readdirSync(dir)) if (/^[A-Z]{4}$/.test(f)) tables.set(f, new Uint8Array(readFileSync(join(dir, f))));
  return { name: board, tables, memory };
}

export const acpiSeeds: AcpiSeed[] = [
  { name: 'virt', ...buildVirtAcpi({ ramSize: 0x1000_0000 }) },
  { name: 'qemu-eb', ...qemuTables({ revision: 3, endpoints: [{ dev: 1, ats: true }] }) },
  { name: 'qemu-ed-rmr', ...qemuTables({ revision: 5, pciBootConfig: 'preserve', rmrs: [{ sid: 8, count: 2, base: 0x4800_0000, length: 0x1_0000 }], engines: [{ sid: 0x100, stall: true }], endpoints: [{ dev: 1 }] }) },
  fixtureSet('juno-r2', { ram: [{ base: 0x8000_0000, size: 0x1000_0000 }] }),
  fixtureSet('hip08-nosmmu', { ram: [{ base: 0x20_8000_0000, size: 0x1000_0000 }] }),
  fixtureSet('qemu-virt-smmuv3', { ram: [{ base: 0x4000_0000, size: 0x1000_0000 }] }),
  fixtureSet('n1sdp', { ram: [{ base: 0x8000_0000, size: 0x1000_0000 }] }),
  fixtureSet('rdn1edge', { ram: [{ base: 0x8000_0000, size: 0x1000_0000 }] }),
];

export const acpiMutation = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bits: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('word' as const), at: fc.nat(), value: fc.oneof(fc.nat({ max: 0xffff_ffff }), fc.constantFrom(0, 1, 0x30, 0xffff, 0x1_0000, 0xffff_ffff)) }),
  fc.record({ kind: fc.constant('byte' as const), at: fc.nat(), value: fc.nat({ max: 255 }) }),
);
export type AcpiMutation = typeof acpiMutation extends fc.Arbitrary<infer M> ? M : never;

export const acpiCase = fc.record({
  seed: fc.nat({ max: acpiSeeds.length - 1 }),
  table: fc.nat({ max: 3 }),
  muts: fc.array(acpiMutation, { minLength: 1, maxLength: 3 }),
  /** Repair the checksum (and Length after a truncation) so the damage reaches the body parsers. */
  repair: fc.boolean(),
});
export type AcpiCase = typeof acpiCase extends fc.Arbitrary<infer C> ? C : never;

export function mutateTable(blob: Uint8Array, muts: readonly AcpiMutation[], repair: boolean): Uint8Array {
  let b = blob.slice();
  for (const m of muts) {
    if (m.kind === 'truncate') {
      b = b.slice(0, m.at % (b.length + 1));
      continue;
    }
    if (b.length === 0) continue;
    // Header bytes are hit less often: most damage lands in the body.
    const at = b.length > 40 ? 36 + (m.at % (b.length - 36)) : m.at % b.length;
    if (m.kind === 'flip') b[at] ^= m.bits;
    else if (m.kind === 'byte') b[at] = m.value;
    else if (at + 4 <= b.length) new DataView(b.buffer, b.byteOffset).setUint32(at & ~3, m.value >>> 0, true);
  }
  if (repair && b.length >= 36) {
    new DataView(b.buffer, b.byteOffset).setUint32(4, b.length, true);
    b[9] = 0;
    b[9] = (0x100 - acpiChecksum(b)) & 0xff;
  }
  return b;
}

export function mutatedSet(c: AcpiCase): { tables: Map<string, Uint8Array>; memory: AcpiMemoryMap; table: string } {
  const s = acpiSeeds[c.seed];
  const keys = [...s.tables.keys()].sort();
  const table = keys[c.table % keys.length];
  const tables = new Map(s.tables);
  tables.set(table, mutateTable(s.tables.get(table)!, c.muts, c.repair));
  return { tables, memory: s.memory, table };
}

/** Boot a mutated set: 'booted' or 'firmware-error'; anything else is thrown. */
export async function acpiBootOutcome(c: AcpiCase): Promise<'booted' | 'firmware-error'> {
  const { tables, memory } = mutatedSet(c);
  try {
    await bootFromAcpi(tables, memory, { seed: 1 });
    return 'booted';
  } catch (e) {
    if (isFirmwareError(e)) return 'firmware-error';
    throw e;
  }
}
