import { describe, expect, it } from 'vitest';
import { ofDmaIsCoherent, ofNAddrCells, ofNSizeCells, ofReg, ofTranslateAddress } from '../../../bus/of/address.js';
import { DtBuilder, ranges, reg } from '../../../bus/of/dt-builder.js';
import { parseFdt } from '../../../bus/of/fdt.js';
import type { DeviceTree } from '../../../bus/of/tree.js';
import { fwError } from './dt-test-utils.js';


/** Build, write and re-read, so nodes and properties carry blob offsets. */
function fromBlob(b: DtBuilder): DeviceTree {
  return parseFdt(b.blob());
}

describe('ofReg', () => {
  it('reads reg with the parent cells and translates through nested ranges', () => {
    const b = new DtBuilder({ '#address-cells': 2, '#size-cells': 2 });
    const soc = b.node('/soc@1000000000', { compatible: 'simple-bus', '#address-cells': 1, '#size-cells': 1, ranges: ranges([0, 0x10_0000_0000n, 0x1000_0000]) });
    soc.node('uart@1000', { reg: reg([0x1000, 0x100], [0x2000, 0x10]) });
    const sub = soc.node('bus@8000000', { compatible: 'simple-bus', '#address-cells': 1, '#size-cells': 1, ranges: ranges([0, 0x800_0000, 0x10_0000]) });
    sub.node('dev@40', { reg: reg([0x40, 0x20]) });
    const t = b.build();
    expect(ofReg(t, t.byPath('/soc@1000000000/uart@1000')!)).toEqual([
      { address: 0x10_0000_1000, size: 0x100 },
      { address: 0x10_0000_2000, size: 0x10 },
    ]);
    expect(ofReg(t, t.byPath('/soc@1000000000/bus@8000000/dev@40')!)).toEqual([{ address: 0x10_0800_0040, size: 0x20 }]);
    expect(ofReg(t, t.byPath('/soc@1000000000')!)).toEqual([]); // no reg
  });

  it('treats an empty ranges as identity and picks the matching ranges entry', () => {
    const b = new DtBuilder({ '#address-cells': 2, '#size-cells': 2 });
    const bus = b.node('/bus', { '#address-cells': 2, '#size-cells': 2, ranges: ranges() });
    bus.node('a@5000', { reg: reg([0x5000, 0x1000]) });
    const multi = b.node('/multi', {
      '#address-cells': 1,
      '#size-cells': 1,
      ranges: ranges([0x0, 0x1000_0000, 0x1000], [0x1_0000, 0x2000_0000, 0x1000]),
    });
    multi.node('b@10010', { reg: reg([0x1_0010, 4]) });
    multi.node('c@20000', { reg: reg([0x2_0000, 4]) });
    const t = b.build();
    expect(ofReg(t, t.byPath('/bus/a@5000')!)).toEqual([{ address: 0x5000, size: 0x1000 }]);
    expect(ofReg(t, t.byPath('/multi/b@10010')!)).toEqual([{ address: 0x2000_0010, size: 4 }]);
    const e = fwError(() => ofReg(t, t.byPath('/multi/c@20000')!));
    expect(e.reason).toBe('address <0x20000> lies in no "ranges" entry');
    expect(e.where).toBe('/multi');
  });

  it('reports a bus without ranges as not translatable, naming the bus and its offset', () => {
    const b = new DtBuilder({ '#address-cells': 1, '#size-cells': 1 });
    b.node('/bus', { '#address-cells': 1, '#size-cells': 1 }).node('dev@0', { reg: reg([0, 4]) });
    const t = fromBlob(b);
    const e = fwError(() => ofReg(t, t.byPath('/bus/dev@0')!));
    expect(e.reason).toMatch(/bus has no "ranges"/);
    expect(e.where).toBe('/bus');
    expect(e.offset).toBe(t.byPath('/bus')!.offset);
  });

  it('rejects wrong cell counts and untranslatable buses', () => {
    const b = new DtBuilder({ '#address-cells': 2, '#size-cells': 2 });
    b.node('/odd', { reg: [0, 0x1000, 0] });
    b.node('/cpus', { '#address-cells': 1, '#size-cells': 0 }).node('cpu@0', { reg: 0 });
    b.node('/wide', { '#address-cells': 5, '#size-cells': 1, ranges: ranges() });
    b.get('/wide').node('x@0', { reg: [0, 0, 0, 0, 0, 1] });
    const bytes = b.node('/bytes', { reg: Uint8Array.of(0, 0, 0) });
    const t = fromBlob(b);
    const odd = fwError(() => ofReg(t, t.byPath('/odd')!));
    expect(odd.reason).toBe('"reg" has 3 cells, not a multiple of 4 (2 address + 2 size cells from /)');
    expect(odd.offset).toBe(t.byPath('/odd')!.propertyOffsets.get('reg'));
    expect(fwError(() => ofReg(t, t.byPath('/cpus/cpu@0')!)).reason).toMatch(/#size-cells = 0/);
    expect(fwError(() => ofReg(t, t.byPath('/wide/x@0')!)).reason).toMatch(/5 address and 1 size cells/);
    expect(fwError(() => ofReg(t, t.byPath(bytes.path)!)).reason).toMatch(/3 bytes, not a whole number of cells/);
  });

  it('rejects addresses at or beyond 2^53 rather than rounding them', () => {
    const b = new DtBuilder({ '#address-cells': 2, '#size-cells': 2 });
    b.node('/hi', { reg: reg([0x20_0000_0000_0000n, 0x1000]) });
    b.node('/big', { reg: reg([0x1000, 0x20_0000_0000_0000n]) });
    const t = b.build();
    expect(fwError(() => ofReg(t, t.byPath('/hi')!)).reason).toMatch(/translated address 0x20000000000000 does not fit below 2\^53/);
    expect(fwError(() => ofReg(t, t.byPath('/big')!)).reason).toMatch(/size 0x20000000000000/);
  });

  it('rejects reg on the root', () => {
    const b = new DtBuilder({ '#address-cells': 1, '#size-cells': 1, reg: [0, 1] });
    const t = b.build();
    expect(fwError(() => ofReg(t, t.root)).reason).toMatch(/root node has a "reg"/);
  });

  it('inherits #address-cells/#size-cells from ancestors, defaulting to 1 (as the kernel does)', () => {
    const b = new DtBuilder({ '#address-cells': 2, '#size-cells': 2 });
    const mid = b.node('/mid', { ranges: true });
    mid.node('dev@0', { reg: [0, 0x3000, 0, 0x100] });
    const noCells = new DtBuilder({});
    noCells.node('/d@10', { reg: [0x10, 0x4] });
    const t = b.build();
    const dev = t.byPath('/mid/dev@0')!;
    expect([ofNAddrCells(dev), ofNSizeCells(dev)]).toEqual([2, 2]);
    expect(ofReg(t, dev)).toEqual([{ address: 0x3000, size: 0x100 }]);
    const t2 = noCells.build();
    expect([ofNAddrCells(t2.byPath('/d@10')!), ofNSizeCells(t2.byPath('/d@10')!)]).toEqual([1, 1]);
    expect(ofReg(t2, t2.byPath('/d@10')!)).toEqual([{ address: 0x10, size: 4 }]);
  });

  it('translates PCI assigned-addresses by space code (memory vs I/O)', () => {
    const b = new DtBuilder({ '#address-cells': 2, '#size-cells': 2 });
    const pci = b.node('/pcie@10000000', {
      device_type: 'pci',
      '#address-cells': 3,
      '#size-cells': 2,
      ranges: ranges([[0x0100_0000, 0, 0], 0x3eff_0000, 0x1_0000], [[0x0200_0000, 0, 0x1000_0000], 0x1000_0000, 0x2eff_0000]),
    });
    pci.node('ep@0,0', {
      reg: [0, 0, 0, 0, 0],
      'assigned-addresses': [0x8200_0010, 0, 0x1000_4000, 0, 0x4000, 0x8100_0014, 0, 0x100, 0, 0x100],
    });
    pci.node('ep@1,0', { reg: [0x800, 0, 0, 0, 0], 'assigned-addresses': [0x8200_0010, 0, 0x4000_0000, 0, 0x1000] });
    const t = b.build();
    expect(ofReg(t, t.byPath('/pcie@10000000/ep@0,0')!)).toEqual([
      { address: 0x1000_4000, size: 0x4000 },
      { address: 0x3eff_0100, size: 0x100 },
    ]);
    expect(fwError(() => ofReg(t, t.byPath('/pcie@10000000/ep@1,0')!)).reason).toMatch(/lies in no "ranges" entry/);
    // PCI config-space address translation on its own
    expect(ofTranslateAddress(t.byPath('/pcie@10000000/ep@0,0')!, [0x0200_0000, 0, 0x1000_0010])).toBe(0x1000_0010);
  });

  it('matches flag cells on a 3-cell non-PCI bus and the I/O bit on ISA', () => {
    const b = new DtBuilder({ '#address-cells': 2, '#size-cells': 1 });
    const flags = b.node('/flags', { '#address-cells': 3, '#size-cells': 1, ranges: ranges([[1, 0, 0], 0x5000_0000, 0x1000], [[2, 0, 0], 0x6000_0000, 0x1000]) });
    flags.node('a@2', { reg: [2, 0, 0x10, 0x10] });
    const isa = b.node('/isa@0', { '#address-cells': 2, '#size-cells': 1, ranges: ranges([[1, 0], 0x7000_0000, 0x1_0000], [[0, 0], 0x8000_0000, 0x1_0000]) });
    isa.node('uart@3f8', { reg: [1, 0x3f8, 8] });
    isa.node('mem@d0000', { reg: [0, 0xd000, 0x100] });
    const t = b.build();
    expect(ofReg(t, t.byPath('/flags/a@2')!)).toEqual([{ address: 0x6000_0010, size: 0x10 }]);
    expect(ofReg(t, t.byPath('/isa@0/uart@3f8')!)).toEqual([{ address: 0x7000_03f8, size: 8 }]);
    expect(ofReg(t, t.byPath('/isa@0/mem@d0000')!)).toEqual([{ address: 0x8000_d000, size: 0x100 }]);
  });
});

describe('ofDmaIsCoherent', () => {
  it('takes the nearest dma-coherent / dma-noncoherent, default non-coherent', () => {
    const b = new DtBuilder({ '#address-cells': 1, '#size-cells': 1 });
    const bus = b.node('/bus', { 'dma-coherent': true });
    bus.node('a');
    bus.node('b', { 'dma-noncoherent': true });
    b.node('/c');
    const t = b.build();
    expect(ofDmaIsCoherent(t.byPath('/bus/a')!)).toBe(true);
    expect(ofDmaIsCoherent(t.byPath('/bus/b')!)).toBe(false);
    expect(ofDmaIsCoherent(t.byPath('/c')!)).toBe(false);
  });
});
