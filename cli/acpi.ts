/**
 * `iommu-sim boot --acpi DIR [--memory BASE:SIZE,…]`: boot a machine from a folder of ACPI tables
 * named by signature, as /sys/firmware/acpi/tables holds them ("APIC", "IORT", "MCFG", "DSDT",
 * "SSDT1", …; a ".aml", ".dat" or ".bin" suffix is accepted; subfolders and other tables are
 * ignored). ACPI carries no RAM: `--memory` gives it (default 2 GiB at 0x4000_0000, virt's).
 *
 * Also what `--dtb` says when it is handed something that is not a DTB: ACPI AML, ACPI or DTS source.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { AcpiMemoryMap } from '../bus/acpi/acpi-boot.js';
import { acpiSignature } from '../bus/acpi/table.js';
import type { Machine } from '../hw/machine.js';
import { machineFromAcpi } from '../scenarios/lib/lab.js';
import { UsageError } from './errors.js';

/** The default memory map: virt's RAM. */
export const DEFAULT_ACPI_MEMORY = '0x40000000:0x80000000';

/** "BASE:SIZE[,BASE:SIZE…]" (hex with 0x, or decimal) → RAM ranges. */
export function parseMemoryMap(spec: string): AcpiMemoryMap {
  const ram = spec.split(',').map((part) => {
    const m = /^\s*(0x[0-9a-f]+|\d+)\s*:\s*(0x[0-9a-f]+|\d+)\s*$/i.exec(part);
    if (!m) throw new UsageError(`--memory: "${part}" is not BASE:SIZE (e.g. 0x40000000:0x80000000)`);
    const base = Number(m[1]);
    const size = Number(m[2]);
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(size) || size === 0 || base % 0x1000 !== 0 || size % 0x1000 !== 0) {
      throw new UsageError(`--memory: "${part}" must be a non-empty range of whole 4 KiB pages below 2^53`);
    }
    return { base, size };
  });
  return { ram };
}

/** Read a folder of tables by signature. */
export function readAcpiDir(dir: string): Map<string, Uint8Array> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    throw new UsageError(`cannot read ACPI table folder ${dir}: ${(e as Error).message}`);
  }
  const tables = new Map<string, Uint8Array>();
  for (const name of names.sort()) {
    const path = join(dir, name);
    const key = name.replace(/\.(aml|dat|bin)$/i, '').toUpperCase();
    if (!/^[A-Z0-9_]{4}\d*$/.test(key)) continue;
    try {
      if (!statSync(path).isFile()) continue;
      tables.set(key, new Uint8Array(readFileSync(path)));
    } catch (e) {
      // /sys/firmware/acpi/tables is readable by root only.
      throw new UsageError(`cannot read ${path}: ${(e as Error).message}`);
    }
  }
  if (tables.size === 0) throw new UsageError(`${dir} holds no ACPI table files (named by signature: APIC, IORT, MCFG, DSDT, …)`);
  return tables;
}

export interface AcpiBootOptions {
  acpi: string;
  memory?: string;
  seed: number;
}

/** The machine `boot --acpi` boots. */
export function acpiBootMachine(o: AcpiBootOptions): Machine {
  return machineFromAcpi(readAcpiDir(o.acpi), parseMemoryMap(o.memory ?? DEFAULT_ACPI_MEMORY), { seed: o.seed });
}

/**
 * Refuse what `--dtb` cannot boot, saying what it is and what to run instead: an ACPI table
 * (binary AML or a data table), ASL / iasl data-table source, or Device Tree source text.
 */
export function checkDtbInput(file: string, blob: Uint8Array): void {
  if (blob.length >= 4 && blob[0] === 0xd0 && blob[1] === 0x0d && blob[2] === 0xfe && blob[3] === 0xed) return;
  const sig = acpiSignature(blob);
  if (sig !== null && /^[A-Z][A-Z0-9_]{3}$/.test(sig) && blob.length >= 36) {
    const len = blob[4]! | (blob[5]! << 8) | (blob[6]! << 16) | (blob[7]! << 24);
    if (len >= 36 && len <= blob.length) {
      throw new UsageError(
        `${file} is an ACPI ${sig} table, not a flattened device tree: put it in a folder named by signature (${sig}) with the machine's other tables (APIC, IORT, MCFG, DSDT) and run \`iommu-sim boot --acpi DIR\``,
      );
    }
  }
  const head = new TextDecoder('latin1').decode(blob.subarray(0, 4096));
  if (/DefinitionBlock\s*\(|\[[0-9A-F]{3,4}h?\s+\d*\s*\d*\]\s*Signature\s*:|^\s*Signature\s*:/m.test(head)) {
    throw new UsageError(`${file} is ACPI source text: compile it with \`iasl ${file}\`, put the .aml tables in a folder named by signature, and run \`iommu-sim boot --acpi DIR\``);
  }
  if (/\/dts-v1\/\s*;|^\s*\/\s*\{/m.test(head)) {
    throw new UsageError(`${file} is Device Tree source (DTS) text, not a blob: compile it with \`dtc -I dts -O dtb -o board.dtb ${file}\` and pass board.dtb to --dtb`);
  }
}
