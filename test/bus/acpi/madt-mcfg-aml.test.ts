import { describe, expect, it } from 'vitest';
import { eisaIdFromString, eisaIdToString, parseAml, parseResourceTemplate, writeDsdt } from '../../../bus/acpi/aml.js';
import { parseMadt, writeMadt } from '../../../bus/acpi/madt.js';
import { parseMcfg, writeMcfg } from '../../../bus/acpi/mcfg.js';
import { acpiChecksum, finishAcpiTable, acpiTableWriter } from '../../../bus/acpi/table.js';
import { fwError } from '../of/dt-test-utils.js';

function fix(b: Uint8Array): Uint8Array {
  b[9] = 0;
  b[9] = (0x100 - acpiChecksum(b)) & 0xff;
  return b;
}

describe('MADT', () => {
  it('round-trips GICC, GICD, MSI frames, GICR and ITS, and skips other structures by length', () => {
    const blob = writeMadt({
      gicc: [{ cpuInterfaceNumber: 0, uid: 0, baseAddress: 0x801_0000, gicrBaseAddress: 0, mpidr: 0x100 }],
      gicd: { baseAddress: 0x800_0000, version: 3 },
      msiFrames: [{ msiFrameId: 1, baseAddress: 0x802_0000, spiBase: 128, spiCount: 64 }, { msiFrameId: 2, baseAddress: 0x803_0000 }],
      gicr: [{ baseAddress: 0x80a_0000, length: 0xf6_0000 }],
      its: [{ translationId: 0, baseAddress: 0x808_0000 }],
    });
    const t = parseMadt(blob);
    expect(t.gicd).toEqual([{ gicId: 0, baseAddress: 0x800_0000, version: 3, offset: expect.any(Number) }]);
    expect(t.gicc[0]).toMatchObject({ baseAddress: 0x801_0000, mpidr: 0x100, flags: 1 });
    expect(t.msiFrames.map((f) => [f.msiFrameId, f.baseAddress, f.flags, f.spiBase, f.spiCount])).toEqual([
      [1, 0x802_0000, 1, 128, 64],
      [2, 0x803_0000, 0, 0, 0],
    ]);
    expect(t.gicr).toMatchObject([{ baseAddress: 0x80a_0000, length: 0xf6_0000 }]);
    expect(t.its).toMatchObject([{ translationId: 0, baseAddress: 0x808_0000 }]);
    // Insert an unknown structure (type 0x11, 6 bytes) before the GICD: it is skipped by its length.
    const extra = new Uint8Array(blob.length + 6);
    extra.set(blob.subarray(0, 44 + 80));
    extra.set([0x11, 6, 0, 0, 0, 0], 44 + 80);
    extra.set(blob.subarray(44 + 80), 44 + 86);
    new DataView(extra.buffer).setUint32(4, extra.length, true);
    const t2 = parseMadt(fix(extra));
    expect(t2.skipped).toEqual([0x11]);
    expect(t2.gicd[0].baseAddress).toBe(0x800_0000);
  });

  it('rejects a structure shorter than its type and one running past the table, naming it', () => {
    const blob = writeMadt({ gicc: [], gicd: { baseAddress: 0x800_0000, version: 2 } });
    const short = blob.slice();
    short[45] = 10;
    const e = fwError(() => parseMadt(fix(short)));
    expect(e.format).toBe('APIC');
    expect(e.where).toBe('GICD structure at 0x2c');
    expect(e.offset).toBe(45);
    expect(e.message).toMatch(/field "Length": 10 is shorter than a GICD structure/);
    const zero = blob.slice();
    zero[45] = 0;
    expect(fwError(() => parseMadt(fix(zero))).message).toMatch(/shorter than the 2-byte structure header/);
    const long = blob.slice();
    long[45] = 200;
    expect(fwError(() => parseMadt(fix(long))).message).toMatch(/runs past the table end/);
  });
});

describe('MCFG', () => {
  it('round-trips ECAM windows and rejects a bad bus range or a ragged length', () => {
    const blob = writeMcfg({ entries: [{ baseAddress: 0x3f00_0000, segment: 0, startBus: 0, endBus: 15 }, { baseAddress: 0x40_0000_0000, segment: 1, startBus: 0x80, endBus: 0xff }] });
    expect(parseMcfg(blob).entries.map((e) => [e.baseAddress, e.segment, e.startBus, e.endBus])).toEqual([
      [0x3f00_0000, 0, 0, 15],
      [0x40_0000_0000, 1, 0x80, 0xff],
    ]);
    const bad = blob.slice();
    bad[44 + 10] = 20;
    expect(fwError(() => parseMcfg(fix(bad))).message).toMatch(/field "Start Bus Number": start bus 20 is after end bus 15/);
    const ragged = new Uint8Array(blob.length + 3);
    ragged.set(blob);
    new DataView(ragged.buffer).setUint32(4, ragged.length, true);
    expect(fwError(() => parseMcfg(fix(ragged))).message).toMatch(/leaves 3 bytes/);
  });
});

describe('AML name space subset', () => {
  it('EISA IDs round-trip', () => {
    expect(eisaIdToString(eisaIdFromString('PNP0A08'))).toBe('PNP0A08');
    expect(eisaIdFromString('PNP0A03')).toBe(0x030ad041);
  });

  it('reads devices with _HID, _CID, _UID, _ADR, _SEG, _CCA, _CRS and nested devices by full path', () => {
    const blob = writeDsdt({
      devices: [
        { name: 'DMA0', hid: 'ISIM0001', uid: 7, cca: 1, memory: [{ base: 0xc00_0000, size: 0x1_0000 }, { base: 0x10_0000_0000, size: 0x2000 }], interrupts: [{ gsiv: 128 }, { gsiv: 129, edge: true, activeLow: true }] },
        { name: 'PCI0', hid: 'PNP0A08', cid: 'PNP0A03', seg: 1, uid: 0, children: [{ name: 'EP01', adr: 0x0001_0002, integers: { IATS: 1, IPAS: 20 } }] },
      ],
    });
    const ns = parseAml(blob).namespace;
    expect(ns.skipped).toEqual([]);
    expect(ns.devices.map((d) => d.path)).toEqual(['\\_SB_.DMA0', '\\_SB_.PCI0', '\\_SB_.PCI0.EP01']);
    const [dma, pci, ep] = ns.devices;
    expect(dma).toMatchObject({ hid: 'ISIM0001', uid: 7, cca: 1, parent: null });
    expect(dma.resources.memory).toEqual([{ base: 0xc00_0000, size: 0x1_0000 }, { base: 0x10_0000_0000, size: 0x2000 }]);
    expect(dma.resources.interrupts).toEqual([
      { gsiv: 128, edge: false, activeLow: false, shared: false },
      { gsiv: 129, edge: true, activeLow: true, shared: false },
    ]);
    expect(pci).toMatchObject({ hid: 'PNP0A08', cids: ['PNP0A03'], seg: 1, uid: 0 });
    expect(ep).toMatchObject({ parent: '\\_SB_.PCI0', adr: 0x0001_0002 });
    expect(ep.names.get('IPAS')).toBe(20);
  });

  /** Hand-assembled AML: a definition block around `body`. */
  const block = (body: number[]): Uint8Array => {
    const w = acpiTableWriter();
    w.bytes(Uint8Array.from(body));
    return finishAcpiTable(w, 'SSDT', 2);
  };
  const seg = (s: string): number[] => [...s].map((c) => c.charCodeAt(0));
  /** PkgLength + body. */
  const pkg = (body: number[]): number[] => {
    const total = body.length + 1 < 0x40 ? body.length + 1 : body.length + 2;
    return total < 0x40 ? [total, ...body] : [0x40 | (total & 0xf), total >> 4, ...body];
  };

  it('reads a Method (_CRS) that returns a local Name, as Juno firmware writes it, and skips If blocks and unknown opcodes safely', () => {
    const rt = [0x86, 9, 0, 1, 0x00, 0x00, 0xfc, 0x7f, 0x00, 0x10, 0x00, 0x00, 0x79, 0x00];
    const method = [0x08, ...seg('RBUF'), 0x11, ...pkg([0x0a, rt.length, ...rt]), 0xa4, ...seg('RBUF')];
    const dev = [
      ...seg('USB0'),
      0x08, ...seg('_HID'), 0x0d, ...seg('ARMH0D20'), 0,
      0x14, ...pkg([...seg('_CRS'), 0x08, ...method]),
      // If (One) { Name (FOO_, 1) }
      0xa0, 8, 0x01, 0x08, ...seg('FOO_'), 0x01,
      // An opcode this parser does not size (Store): the rest of the device is skipped.
      0x70, 0x01, 0x60,
      0x08, ...seg('_UID'), 0x0a, 9,
    ];
    const scope = [0x5c, ...seg('_SB_'), 0x5b, 0x82, ...pkg(dev)];
    const blob = block([0x10, ...pkg(scope), 0x5b, 0x82, ...pkg([...seg('NEXT'), 0x08, ...seg('_UID'), 0x01])]);
    const ns = parseAml(blob).namespace;
    expect(ns.devices.map((d) => d.path)).toEqual(['\\_SB_.USB0', '\\NEXT']);
    const usb = ns.devices[0];
    expect(usb.hid).toBe('ARMH0D20');
    expect(usb.resources.memory).toEqual([{ base: 0x7ffc_0000, size: 0x1000 }]);
    // _UID came after the unknown opcode: not read, and the skip is recorded with its offset.
    expect(usb.uid).toBeNull();
    expect(ns.skipped).toEqual([{ table: 'SSDT', offset: expect.any(Number), opcode: 0x70 }]);
    expect(ns.devices[1].uid).toBe(1);
  });

  it('malformed AML is a FirmwareError naming the table, the object, the offset and the field', () => {
    // A Device whose PkgLength runs past the table.
    const e = fwError(() => parseAml(block([0x5b, 0x82, 0x3f, ...seg('DEV0')])));
    expect(e.format).toBe('SSDT');
    expect(e.offset).toBe(38);
    expect(e.where).toBe('root scope');
    expect(e.message).toMatch(/field "PkgLength"/);
    // A bad NameSeg.
    expect(fwError(() => parseAml(block([0x08, 0x31, 0x41, 0x41, 0x41, 0x01]))).message).toMatch(/field "NameSeg": byte 0x31/);
    // A resource descriptor running past its buffer.
    expect(fwError(() => parseResourceTemplate(Uint8Array.from([0x86, 9, 0, 1, 2]), 'DSDT', 'Device \\_SB_.X')).message).toMatch(/field "resource descriptor"/);
  });
});
