import { describe, expect, it } from 'vitest';
import { DtBuilder, type DtBuilderNode, reg } from '../../../bus/of/dt-builder.js';
import { parseFdt } from '../../../bus/of/fdt.js';
import { ofIdMapEntries, ofIrqByName, ofIrqFindParent, ofIrqs, ofMapId, ofMsiParent } from '../../../bus/of/irq.js';
import type { DeviceTree } from '../../../bus/of/tree.js';
import { fwError } from './dt-test-utils.js';


function base(): { b: DtBuilder; gic: DtBuilderNode } {
  const b = new DtBuilder({ '#address-cells': 1, '#size-cells': 1 });
  const gic = b.node('/gic@1000', { 'interrupt-controller': true, '#interrupt-cells': 3, '#address-cells': 0, reg: reg([0x1000, 0x1000]) });
  b.root.set({ 'interrupt-parent': gic });
  return { b, gic };
}

const path = (t: DeviceTree, p: string) => t.byPath(p)!;

describe('ofIrqs', () => {
  it('resolves interrupts against the inherited interrupt parent, with names', () => {
    const { b } = base();
    b.node('/uart@2000', { reg: reg([0x2000, 0x100]), interrupts: [0, 33, 4, 0, 34, 4], 'interrupt-names': ['rx', 'tx'] });
    const t = b.build();
    const uart = path(t, '/uart@2000');
    expect(ofIrqFindParent(t, uart)).toBe(path(t, '/gic@1000'));
    expect(ofIrqs(t, uart)).toEqual([
      { controller: path(t, '/gic@1000'), specifier: [0, 33, 4], name: 'rx' },
      { controller: path(t, '/gic@1000'), specifier: [0, 34, 4], name: 'tx' },
    ]);
    expect(ofIrqByName(t, uart, 'tx')!.specifier).toEqual([0, 34, 4]);
    expect(ofIrqByName(t, uart, 'err')).toBeNull();
    expect(ofIrqs(t, path(t, '/gic@1000'))).toEqual([]);
  });

  it('follows a per-node interrupt-parent to a cascaded controller and names missing names null', () => {
    const { b, gic } = base();
    const gpio = b.node('/gpio@3000', { 'interrupt-controller': true, '#interrupt-cells': 2, reg: reg([0x3000, 0x100]), interrupts: [0, 50, 4] });
    b.node('/key', { 'interrupt-parent': gpio, interrupts: [7, 2, 8, 2], 'interrupt-names': ['press'] });
    b.node('/ext', { 'interrupts-extended': [gic, 0, 60, 4, gpio, 3, 1] });
    const t = b.build();
    expect(ofIrqs(t, path(t, '/key'))).toEqual([
      { controller: path(t, '/gpio@3000'), specifier: [7, 2], name: 'press' },
      { controller: path(t, '/gpio@3000'), specifier: [8, 2], name: null },
    ]);
    expect(ofIrqs(t, path(t, '/gpio@3000'))[0].controller).toBe(path(t, '/gic@1000'));
    expect(ofIrqs(t, path(t, '/ext')).map((i) => [i.controller.path, i.specifier])).toEqual([
      ['/gic@1000', [0, 60, 4]],
      ['/gpio@3000', [3, 1]],
    ]);
    void gic;
  });

  it('walks an interrupt-map nexus with a mask, skipping entries whose parent is disabled', () => {
    const { b, gic } = base();
    const off = b.node('/gic-off', { 'interrupt-controller': true, '#interrupt-cells': 3, status: 'disabled' });
    const nexus = b.node('/pcie@40000000', {
      device_type: 'pci',
      '#address-cells': 3,
      '#size-cells': 2,
      '#interrupt-cells': 1,
      'interrupt-map-mask': [0x1800, 0, 0, 7],
      'interrupt-map': [
        0, 0, 0, 1, off, 0, 99, 4, // INTA, but its parent is disabled
        0, 0, 0, 1, gic, 0, 168, 4,
        0, 0, 0, 2, gic, 0, 169, 4,
        0x800, 0, 0, 1, gic, 0, 170, 4,
      ],
    });
    nexus.node('ep@0,0', { reg: [0x0, 0, 0, 0, 0], interrupts: 1 });
    nexus.node('ep@0,1', { reg: [0x100, 0, 0, 0, 0], interrupts: 2 });
    nexus.node('ep@1,0', { reg: [0x800, 0, 0, 0, 0], interrupts: 1 });
    nexus.node('ep@3,0', { reg: [0x1800, 0, 0, 0, 0], interrupts: 1 });
    nexus.node('noreg', { interrupts: 1 });
    const t = b.build();
    const spec = (p: string) => ofIrqs(t, path(t, p)).map((i) => [i.controller.path, i.specifier]);
    expect(spec('/pcie@40000000/ep@0,0')).toEqual([['/gic@1000', [0, 168, 4]]]);
    expect(spec('/pcie@40000000/ep@0,1')).toEqual([['/gic@1000', [0, 169, 4]]]);
    expect(spec('/pcie@40000000/ep@1,0')).toEqual([['/gic@1000', [0, 170, 4]]]);
    expect(fwError(() => ofIrqs(t, path(t, '/pcie@40000000/ep@3,0'))).reason).toMatch(/no "interrupt-map" entry of \/pcie@40000000 matches/);
    expect(fwError(() => ofIrqs(t, path(t, '/pcie@40000000/noreg'))).reason).toMatch(/needs the device's "reg"/);
  });

  it('raises FirmwareError for malformed interrupt descriptions', () => {
    const { b, gic } = base();
    b.node('/short', { interrupts: [0, 1] });
    b.node('/dangling', { 'interrupt-parent': 0x77, interrupts: [1] });
    b.node('/ext-short', { 'interrupts-extended': [gic, 0, 1] });
    const loopA = b.node('/loop-a');
    const loopB = b.node('/loop-b', { 'interrupt-parent': loopA });
    loopA.set({ 'interrupt-parent': loopB });
    b.node('/looper', { 'interrupt-parent': loopA, interrupts: [1] });
    b.node('/names', { interrupts: [0, 1, 4], 'interrupt-names': ['a', 'b'] });
    const nocells = b.node('/nocells', { 'interrupt-controller': true });
    b.node('/ext-nocells', { 'interrupts-extended': [nocells, 1] });
    const t = parseFdt(b.blob());
    const short = fwError(() => ofIrqs(t, path(t, '/short')));
    expect(short.reason).toBe('"interrupts" has 2 cells, not a multiple of #interrupt-cells = 3 of /gic@1000');
    expect(short.where).toBe('/short');
    expect(short.offset).toBe(path(t, '/short').propertyOffsets.get('interrupts'));
    const dangling = fwError(() => ofIrqs(t, path(t, '/dangling')));
    expect(dangling.reason).toBe('property "interrupt-parent" references phandle 119, which no node has');
    expect(dangling.offset).toBe(path(t, '/dangling').propertyOffsets.get('interrupt-parent'));
    expect(fwError(() => ofIrqs(t, path(t, '/ext-short'))).reason).toMatch(/takes 3 cells \(#interrupt-cells\) but only 2 remain/);
    expect(fwError(() => ofIrqs(t, path(t, '/looper'))).reason).toMatch(/interrupt-parent chain loops/);
    expect(fwError(() => ofIrqByName(t, path(t, '/names'), 'b')).reason).toMatch(/lists "b" at index 1 but the node has 1 interrupts/);
    expect(fwError(() => ofIrqs(t, path(t, '/ext-nocells'))).reason).toMatch(/has no "#interrupt-cells"/);
  });

  it('reports interrupts with no interrupt parent at all', () => {
    const b = new DtBuilder({ '#address-cells': 1, '#size-cells': 1 });
    b.node('/orphan', { interrupts: [5] });
    const t = b.build();
    expect(fwError(() => ofIrqs(t, path(t, '/orphan'))).reason).toBe('has "interrupts" but no interrupt parent');
  });
});

describe('ofMsiParent', () => {
  it('reads the single-phandle and the phandle+cells forms', () => {
    const b = new DtBuilder({ '#address-cells': 1, '#size-cells': 1 });
    const v2m = b.node('/v2m', { 'msi-controller': true });
    const its = b.node('/its', { 'msi-controller': true, '#msi-cells': 1 });
    b.node('/a', { 'msi-parent': v2m });
    b.node('/b', { 'msi-parent': [its, 0x40, its, 0x41] });
    b.node('/c');
    const t = b.build();
    expect(ofMsiParent(t, path(t, '/a'))).toEqual([{ node: path(t, '/v2m'), args: [] }]);
    expect(ofMsiParent(t, path(t, '/b'))).toEqual([
      { node: path(t, '/its'), args: [0x40] },
      { node: path(t, '/its'), args: [0x41] },
    ]);
    expect(ofMsiParent(t, path(t, '/c'))).toEqual([]);
  });
});

describe('ofMapId', () => {
  function mapTree(props: Record<string, unknown>, iommuCells = 1): DeviceTree {
    const b = new DtBuilder({ '#address-cells': 1, '#size-cells': 1 });
    const smmu = b.node('/smmu', { '#iommu-cells': iommuCells });
    const other = b.node('/smmu2', { '#iommu-cells': 1 });
    const its = b.node('/its', { '#msi-cells': 1 });
    const oldMsi = b.node('/old-msi', { 'msi-controller': true });
    const subst = (v: unknown): unknown =>
      Array.isArray(v) ? v.map((x) => (x === 'S' ? smmu : x === 'T' ? other : x === 'I' ? its : x === 'O' ? oldMsi : x)) : v;
    b.node('/host', Object.fromEntries(Object.entries(props).map(([k, v]) => [k, subst(v)])) as never);
    return parseFdt(b.blob());
  }
  const host = (t: DeviceTree) => t.byPath('/host')!;

  it('maps an ID through the covering entry, honouring the mask', () => {
    const t = mapTree({ 'iommu-map': [0, 'S', 0x1000, 0x100, 0x100, 'T', 0x2000, 0x100], 'iommu-map-mask': 0xff0f });
    expect(ofMapId(t, host(t), 0x1a, 'iommu-map', 'iommu-map-mask')).toEqual({ target: t.byPath('/smmu'), args: [0x100a] }); // 0x1a & 0xff0f = 0x0a
    expect(ofMapId(t, host(t), 0x1f5, 'iommu-map', 'iommu-map-mask')).toEqual({ target: t.byPath('/smmu2'), args: [0x2005] }); // 0x1f5 & 0xff0f = 0x105
    expect(ofMapId(t, host(t), 0x300, 'iommu-map', 'iommu-map-mask')).toBeNull();
    expect(ofMapId(t, host(t), 0x300, 'iommu-map', null)).toBeNull();
    expect(ofMapId(t, host(t), 0x10, 'iommu-map', 'iommu-map-mask', t.byPath('/smmu2'))).toBeNull(); // filtered out
    expect(ofMapId(t, host(t), 0x10, 'msi-map', 'msi-map-mask')).toBeNull(); // no msi-map at all
  });

  it('reads entries sized by the target #iommu-cells, and the legacy 1-cell form of 2-cell targets', () => {
    const twoCell = mapTree({ 'iommu-map': [0, 'S', 0x400, 0x7f, 1, 0x100, 'S', 0x401, 0x7f, 1] }, 2);
    expect(ofMapId(twoCell, host(twoCell), 0x100, 'iommu-map', null)!.args).toEqual([0x401, 0x7f]);
    const legacy = mapTree({ 'iommu-map': [0, 'S', 0x1c00, 1, 0x100, 'S', 0x1c01, 1] }, 2);
    expect(ofIdMapEntries(legacy, host(legacy), 'iommu-map')!.map((e) => e.outBase)).toEqual([[0x1c00], [0x1c01]]);
    expect(ofMapId(legacy, host(legacy), 0x100, 'iommu-map', null)!.args).toEqual([0x1c01]);
    // A 4-cell range onto a 2-cell SMMU: one stream ID out per RID, as Linux reads it.
    const range = mapTree({ 'iommu-map': [0, 'S', 0x1c00, 0x100] }, 2);
    expect(ofMapId(range, host(range), 0x42, 'iommu-map', null)!.args).toEqual([0x1c42]);
    const zero = mapTree({ 'iommu-map': [0, 'S', 0x10] }, 0);
    expect(ofMapId(zero, host(zero), 5, 'iommu-map', null)).toEqual({ target: zero.byPath('/smmu'), args: [] });
    const msi = mapTree({ 'msi-map': [0, 'I', 0x8000, 0x1_0000, 0x1_0000, 'O', 0, 0x10] });
    expect(ofMapId(msi, host(msi), 0x42, 'msi-map', 'msi-map-mask')!.args).toEqual([0x8042]);
    expect(ofMapId(msi, host(msi), 0x1_0003, 'msi-map', 'msi-map-mask')).toEqual({ target: msi.byPath('/old-msi'), args: [3] });
  });

  it('raises FirmwareError for bad maps', () => {
    const cases: [Record<string, unknown>, number, RegExp][] = [
      [{ 'iommu-map': [0, 'S', 0] }, 1, /bad "iommu-map" length: 3 cells, entry at cell 0 needs 4/],
      [{ 'iommu-map': [0, 'S', 0, 1, 5] }, 1, /bad "iommu-map" length: 5 cells, entry at cell 4 is cut short/],
      [{ 'iommu-map': Uint8Array.of(0, 0, 0) }, 1, /3 bytes, not a whole number of cells/],
      [{ 'iommu-map': [0, 0x99, 0, 1] }, 1, /references phandle 153, which no node has/],
      [{ 'iommu-map': [0, 'I', 0, 1] }, 1, /names \/its, which has no "#iommu-cells"/],
      [{ 'iommu-map': [0, 'S', 0, 0, 2] }, 2, /maps a 2-ID range to a 2-cell specifier/],
      [{ 'iommu-map': [0x100, 'S', 0, 0x100], 'iommu-map-mask': 0xff }, 1, /"iommu-map-mask" \(0xff\) ignores bits of id-base 0x100/],
      [{ 'iommu-map': [0, 'S', 0, 1], 'iommu-map-mask': [1, 2] }, 1, /"iommu-map-mask" has 2 cells, expected 1/],
    ];
    for (const [props, cells, reason] of cases) {
      const t = mapTree(props, cells);
      const e = fwError(() => ofMapId(t, host(t), 0, 'iommu-map', 'iommu-map-mask'));
      expect(e.reason).toMatch(reason);
      expect(e.where).not.toBeNull();
      expect(e.offset).not.toBeNull();
    }
  });

  it('rejects an ID that is not a u32 as a caller bug', () => {
    const t = mapTree({ 'iommu-map': [0, 'S', 0, 1] });
    expect(() => ofMapId(t, host(t), -1, 'iommu-map', null)).toThrow(RangeError);
  });
});
