/**
 * MADT (Multiple APIC Description Table, signature "APIC"): the Arm GIC structures: GICC (CPU
 * interface), GICD (distributor, with the GIC version), GIC MSI frame (GICv2m), GICR (redistributor
 * discovery range) and GIC ITS. Other structure types are skipped by their Length. Malformed input
 * is a FirmwareError("APIC", 'field "…": …', byte offset, structure).
 */
import { type AcpiOemInfo, type AcpiTableHeader, acpiTableWriter, finishAcpiTable, readAcpiHeader } from './table.js';

// Structure types (Linux: enum acpi_madt_type, the GIC ones).
export const ACPI_MADT_TYPE_GENERIC_INTERRUPT = 0x0b;
export const ACPI_MADT_TYPE_GENERIC_DISTRIBUTOR = 0x0c;
export const ACPI_MADT_TYPE_GENERIC_MSI_FRAME = 0x0d;
export const ACPI_MADT_TYPE_GENERIC_REDISTRIBUTOR = 0x0e;
export const ACPI_MADT_TYPE_GENERIC_TRANSLATOR = 0x0f;

/** GIC MSI frame flag: SPI Count and SPI Base are valid (else the frame's MSI_TYPER says). */
export const ACPI_MADT_OVERRIDE_SPI_VALUES = 1 << 0;
/** GICC flag: the processor is enabled. */
export const ACPI_MADT_ENABLED = 1 << 0;

/** GICD version field: 0 = discover from the hardware. */
export type GicVersion = 0 | 1 | 2 | 3 | 4;

export interface MadtGicc {
  cpuInterfaceNumber: number;
  uid: number;
  flags: number;
  baseAddress: number;
  gicrBaseAddress: number;
  mpidr: number;
  offset: number;
}
export interface MadtGicd {
  gicId: number;
  baseAddress: number;
  version: number;
  offset: number;
}
export interface MadtMsiFrame {
  msiFrameId: number;
  baseAddress: number;
  flags: number;
  spiCount: number;
  spiBase: number;
  offset: number;
}
export interface MadtGicr {
  baseAddress: number;
  length: number;
  offset: number;
}
export interface MadtIts {
  translationId: number;
  baseAddress: number;
  offset: number;
}

export interface MadtTable {
  header: AcpiTableHeader;
  flags: number;
  gicc: MadtGicc[];
  gicd: MadtGicd[];
  msiFrames: MadtMsiFrame[];
  gicr: MadtGicr[];
  its: MadtIts[];
  /** Types of structures skipped (not GIC ones), in order. */
  skipped: number[];
}

const MIN_LEN: Record<number, number> = { 0x0b: 76, 0x0c: 24, 0x0d: 24, 0x0e: 16, 0x0f: 20 };
const NAMES: Record<number, string> = { 0x0b: 'GICC', 0x0c: 'GICD', 0x0d: 'GIC MSI frame', 0x0e: 'GICR', 0x0f: 'GIC ITS' };

// kernel: acpi_parse_entries_array() [tables.c]
export function parseMadt(blob: Uint8Array): MadtTable {
  const { header, r } = readAcpiHeader(blob, 'APIC', 44);
  const t: MadtTable = { header, flags: r.u32(40, 'Flags'), gicc: [], gicd: [], msiFrames: [], gicr: [], its: [], skipped: [] };
  let off = 44;
  while (off < header.length) {
    const type = r.u8(off, 'Type', `structure at 0x${off.toString(16)}`);
    const where = `${NAMES[type] ?? `type 0x${type.toString(16)}`} structure at 0x${off.toString(16)}`;
    const len = r.u8(off + 1, 'Length', where);
    if (len < 2) r.fail(`${len} is shorter than the 2-byte structure header`, off + 1, where, 'Length');
    if (off + len > header.length) r.fail(`structure of ${len} bytes runs past the table end (0x${header.length.toString(16)})`, off + 1, where, 'Length');
    const min = MIN_LEN[type];
    if (min !== undefined && len < min) r.fail(`${len} is shorter than a ${NAMES[type]} structure (${min} bytes)`, off + 1, where, 'Length');
    switch (type) {
      case ACPI_MADT_TYPE_GENERIC_INTERRUPT:
        t.gicc.push({
          cpuInterfaceNumber: r.u32(off + 4, 'CPU Interface Number', where),
          uid: r.u32(off + 8, 'Processor UID', where),
          flags: r.u32(off + 12, 'Flags', where),
          baseAddress: r.u64(off + 32, 'Base Address', where),
          gicrBaseAddress: r.u64(off + 60, 'Redistributor Base Address', where),
          mpidr: len >= 76 ? r.u64(off + 68, 'ARM MPIDR', where) : 0,
          offset: off,
        });
        break;
      case ACPI_MADT_TYPE_GENERIC_DISTRIBUTOR:
        t.gicd.push({ gicId: r.u32(off + 4, 'Local GIC Hardware ID', where), baseAddress: r.u64(off + 8, 'Base Address', where), version: r.u8(off + 20, 'Version', where), offset: off });
        break;
      case ACPI_MADT_TYPE_GENERIC_MSI_FRAME:
        t.msiFrames.push({
          msiFrameId: r.u32(off + 4, 'MSI Frame ID', where),
          baseAddress: r.u64(off + 8, 'Base Address', where),
          flags: r.u32(off + 16, 'Flags', where),
          spiCount: r.u16(off + 20, 'SPI Count', where),
          spiBase: r.u16(off + 22, 'SPI Base', where),
          offset: off,
        });
        break;
      case ACPI_MADT_TYPE_GENERIC_REDISTRIBUTOR:
        t.gicr.push({ baseAddress: r.u64(off + 4, 'Base Address', where), length: r.u32(off + 12, 'Length', where), offset: off });
        break;
      case ACPI_MADT_TYPE_GENERIC_TRANSLATOR:
        t.its.push({ translationId: r.u32(off + 4, 'Translation ID', where), baseAddress: r.u64(off + 8, 'Base Address', where), offset: off });
        break;
      default:
        t.skipped.push(type);
    }
    off += len;
  }
  if (t.gicd.length > 1) r.fail(`${t.gicd.length} GIC distributors; ACPI allows one`, t.gicd[1]!.offset, `GICD structure at 0x${t.gicd[1]!.offset.toString(16)}`, 'Type');
  return t;
}

export interface MadtSpec extends AcpiOemInfo {
  gicc: { cpuInterfaceNumber: number; uid: number; baseAddress: number; gicrBaseAddress?: number; mpidr: number }[];
  gicd: { baseAddress: number; version: GicVersion };
  msiFrames?: { msiFrameId: number; baseAddress: number; spiCount?: number; spiBase?: number }[];
  gicr?: { baseAddress: number; length: number }[];
  its?: { translationId: number; baseAddress: number }[];
}

/** Write a MADT (revision 5, ACPI 6.3 GICC of 80 bytes). */
export function writeMadt(spec: MadtSpec): Uint8Array {
  const w = acpiTableWriter();
  w.u32(0, 36);
  w.u32(0, 40);
  for (const c of spec.gicc) {
    const o = w.length;
    w.u8(ACPI_MADT_TYPE_GENERIC_INTERRUPT, o);
    w.u8(80, o + 1);
    w.reserve(o + 80);
    w.u32(c.cpuInterfaceNumber, o + 4);
    w.u32(c.uid, o + 8);
    w.u32(ACPI_MADT_ENABLED, o + 12);
    w.u64(c.baseAddress, o + 32);
    w.u64(c.gicrBaseAddress ?? 0, o + 60);
    w.u64(c.mpidr, o + 68);
  }
  {
    const o = w.length;
    w.u8(ACPI_MADT_TYPE_GENERIC_DISTRIBUTOR, o);
    w.u8(24, o + 1);
    w.reserve(o + 24);
    w.u64(spec.gicd.baseAddress, o + 8);
    w.u8(spec.gicd.version, o + 20);
  }
  for (const f of spec.msiFrames ?? []) {
    const o = w.length;
    w.u8(ACPI_MADT_TYPE_GENERIC_MSI_FRAME, o);
    w.u8(24, o + 1);
    w.reserve(o + 24);
    w.u32(f.msiFrameId, o + 4);
    w.u64(f.baseAddress, o + 8);
    const override = f.spiCount !== undefined && f.spiBase !== undefined;
    w.u32(override ? ACPI_MADT_OVERRIDE_SPI_VALUES : 0, o + 16);
    w.u16(f.spiCount ?? 0, o + 20);
    w.u16(f.spiBase ?? 0, o + 22);
  }
  for (const g of spec.gicr ?? []) {
    const o = w.length;
    w.u8(ACPI_MADT_TYPE_GENERIC_REDISTRIBUTOR, o);
    w.u8(16, o + 1);
    w.reserve(o + 16);
    w.u64(g.baseAddress, o + 4);
    w.u32(g.length, o + 12);
  }
  for (const i of spec.its ?? []) {
    const o = w.length;
    w.u8(ACPI_MADT_TYPE_GENERIC_TRANSLATOR, o);
    w.u8(20, o + 1);
    w.reserve(o + 20);
    w.u32(i.translationId, o + 4);
    w.u64(i.baseAddress, o + 8);
  }
  return finishAcpiTable(w, 'APIC', 5, spec);
}
