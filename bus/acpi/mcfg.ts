/**
 * MCFG (PCI Express memory-mapped configuration space): one 16-byte entry per ECAM window: base
 * address, PCI segment group, start and end bus. Malformed input is a FirmwareError("MCFG", …).
 */
import { type AcpiOemInfo, type AcpiTableHeader, acpiTableWriter, finishAcpiTable, readAcpiHeader } from './table.js';

export interface McfgEntry {
  baseAddress: number;
  segment: number;
  startBus: number;
  endBus: number;
  offset: number;
}

export interface McfgTable {
  header: AcpiTableHeader;
  entries: McfgEntry[];
}

const ENTRY = 16;

// kernel: pci_mcfg_parse() [pci_mcfg.c]
export function parseMcfg(blob: Uint8Array): McfgTable {
  const { header, r } = readAcpiHeader(blob, 'MCFG', 44);
  if ((header.length - 44) % ENTRY !== 0) r.fail(`${header.length} leaves ${(header.length - 44) % ENTRY} bytes after the last 16-byte entry`, 4, null, 'Length');
  const entries: McfgEntry[] = [];
  for (let off = 44; off + ENTRY <= header.length; off += ENTRY) {
    const where = `allocation ${entries.length} at 0x${off.toString(16)}`;
    const e = {
      baseAddress: r.u64(off, 'Base Address', where),
      segment: r.u16(off + 8, 'PCI Segment Group Number', where),
      startBus: r.u8(off + 10, 'Start Bus Number', where),
      endBus: r.u8(off + 11, 'End Bus Number', where),
      offset: off,
    };
    if (e.startBus > e.endBus) r.fail(`start bus ${e.startBus} is after end bus ${e.endBus}`, off + 10, where, 'Start Bus Number');
    entries.push(e);
  }
  return { header, entries };
}

export interface McfgSpec extends AcpiOemInfo {
  entries: { baseAddress: number; segment: number; startBus: number; endBus: number }[];
}

export function writeMcfg(spec: McfgSpec): Uint8Array {
  const w = acpiTableWriter();
  w.reserve(44);
  for (const e of spec.entries) {
    const o = w.length;
    w.u64(e.baseAddress, o);
    w.u16(e.segment, o + 8);
    w.u8(e.startBus, o + 10);
    w.u8(e.endBus, o + 11);
    w.u32(0, o + 12);
  }
  return finishAcpiTable(w, 'MCFG', 1, spec);
}
