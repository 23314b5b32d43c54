import { describe, expect, it } from 'vitest';
import {
  FirmwareIndex,
  MachineFirmwareError,
  UntranslatableAddressError,
  compatibles,
  isEnabled,
  readInterrupts,
  readIommuMap,
  readIommus,
  readRegions,
} from '../../hw/firmware.js';
import { parseFdt, writeFdt } from '../../bus/of/fdt.js';
import { Machine } from '../../hw/machine.js';
import { buildVirtDeviceTree } from '../../scenarios/machines/virt.js';
import { DtBuilder } from '../../bus/of/dt-builder.js';
import type { DeviceTree, DtNode } from '../../bus/of/tree.js';

const at = (t: DeviceTree, path: string): DtNode => t.byPath(path)!;

describe('hw firmware decoders', () => {
  it('translates reg through nested ranges (and identity ranges) to CPU addresses', () => {
    const b = new DtBuilder({ '#address-cells': 2, '#size-cells': 2 });
    b.node('/soc', { '#address-cells': 1, '#size-cells': 1, ranges: [0x0, 0x0, 0x1000_0000, 0x100_0000] })
      .node('bus@200000', { '#address-cells': 1, '#size-cells': 1, ranges: [0x0, 0x20_0000, 0x1_0000] })
      .node('dev@100', { reg: [0x100, 0x40, 0x200, 0x40] });
    b.node('/flat', { '#address-cells': 2, '#size-cells': 2, ranges: true }).node('x@8_00000000', { reg: [0x8, 0x0, 0x0, 0x1000] });
    const t = b.build();
    expect(readRegions(at(t, '/soc/bus@200000/dev@100'))).toEqual([
      { base: 0x1020_0100, size: 0x40 },
      { base: 0x1020_0200, size: 0x40 },
    ]);
    expect(readRegions(at(t, '/flat/x@8_00000000'))).toEqual([{ base: 0x8_0000_0000, size: 0x1000 }]);
  });

  it('reports an untranslatable reg with its own error class naming the node', () => {
    const b = new DtBuilder({ '#address-cells': 1, '#size-cells': 1 });
    b.node('/nobus', { '#address-cells': 1, '#size-cells': 1 }).node('d@10', { reg: [0x10, 0x4] });
    b.node('/bus2', { '#address-cells': 1, '#size-cells': 1, ranges: [0x0, 0x1000, 0x100] }).node('d@200', { reg: [0x200, 0x4] });
    const t = b.build();
    const dev = at(t, '/nobus/d@10');
    expect(() => readRegions(dev)).toThrow(UntranslatableAddressError);
    expect(() => readRegions(dev)).toThrow(/\/nobus has no "ranges".*node \/nobus\/d@10/);
    expect(() => readRegions(at(t, '/bus2/d@200'))).toThrow(/lies in no "ranges" entry/);
  });

  it('throws MachineFirmwareError for malformed reg and cells', () => {
    const b = new DtBuilder({ '#address-cells': 2, '#size-cells': 2 });
    b.node('/d', { reg: [0x0, 0x1000, 0x0] });
    b.node('/o', { reg: Uint8Array.of(0, 0, 1) });
    b.node('/c', { compatible: Uint8Array.of(0x61, 0x62) });
    const t = b.build();
    const dev = at(t, '/d');
    expect(() => readRegions(dev)).toThrow(MachineFirmwareError);
    expect(() => readRegions(dev)).toThrow(/"reg" has 3 cells, not a multiple of #address-cells \(2\) \+ #size-cells \(2\).*node \/d/);
    expect(() => readRegions(at(t, '/o'))).toThrow(/3 bytes, not a whole number of cells/);
    expect(() => compatibles(at(t, '/c'))).toThrow(/not a NUL-terminated/);
  });

  it('matches PCI ranges by space code', () => {
    const b = new DtBuilder({ '#address-cells': 2, '#size-cells': 2 });
    const pci = b.node('/pcie@40000000', {
      device_type: 'pci',
      '#address-cells': 3,
      '#size-cells': 2,
      // I/O space at 0x5f800000, 32-bit memory space 0x50000000 identity.
      ranges: [0x0100_0000, 0, 0, 0, 0x5f80_0000, 0, 0x80_0000, 0x0200_0000, 0, 0x5000_0000, 0, 0x5000_0000, 0, 0x800_0000],
    });
    pci.node('bar', { reg: [0x0200_0000, 0, 0x5000_1000, 0, 0x1000] });
    pci.node('io', { reg: [0x0100_0000, 0, 0x10, 0, 0x10] });
    pci.node('ep@0,0', { reg: [0x0000_0800, 0, 0, 0, 0] });
    const t = b.build();
    expect(readRegions(at(t, '/pcie@40000000/bar'))).toEqual([{ base: 0x5000_1000, size: 0x1000 }]);
    expect(readRegions(at(t, '/pcie@40000000/io'))).toEqual([{ base: 0x5f80_0010, size: 0x10 }]);
    expect(() => readRegions(at(t, '/pcie@40000000/ep@0,0'))).toThrow(UntranslatableAddressError);
  });

  it('reads interrupts through an inherited interrupt-parent and interrupts-extended', () => {
    const b = new DtBuilder({ '#address-cells': 1, '#size-cells': 1, 'interrupt-parent': 1 });
    b.node('/gic', { 'interrupt-controller': true, '#interrupt-cells': 3, phandle: 1 });
    b.node('/gpio', { 'interrupt-controller': true, '#interrupt-cells': 2, phandle: 2 });
    const soc = b.node('/soc', {});
    soc.node('dev', { interrupts: [0, 5, 4, 0, 6, 4], 'interrupt-names': ['tx', 'rx'] });
    soc.node('ext', { 'interrupts-extended': [1, 1, 9, 4, 2, 7, 1] });
    soc.node('bad', { interrupts: [0, 5] });
    soc.node('dangling', { 'interrupt-parent': 99, interrupts: [1] });
    const t = b.build();
    const [gic, gpio] = [at(t, '/gic'), at(t, '/gpio')];
    const idx = new FirmwareIndex(t.root);
    expect(readInterrupts(idx, at(t, '/soc/dev'))).toEqual([
      { controller: gic, cells: [0, 5, 4], name: 'tx' },
      { controller: gic, cells: [0, 6, 4], name: 'rx' },
    ]);
    expect(readInterrupts(idx, at(t, '/soc/ext'))).toEqual([
      { controller: gic, cells: [1, 9, 4], name: null },
      { controller: gpio, cells: [7, 1], name: null },
    ]);
    expect(() => readInterrupts(idx, at(t, '/soc/bad'))).toThrow(/"interrupts" has 2 cells, not a multiple of #interrupt-cells \(3\)/);
    expect(() => readInterrupts(idx, at(t, '/soc/dangling'))).toThrow(/phandle 99, which no node has/);
  });

  it('splits iommus by #iommu-cells and reads iommu-map', () => {
    const b = new DtBuilder({ '#address-cells': 1, '#size-cells': 1 });
    b.node('/smmu3', { '#iommu-cells': 1, phandle: 1 });
    b.node('/smmu2', { '#iommu-cells': 2, phandle: 2 });
    b.node('/master', { iommus: [1, 0x10, 2, 0x800, 0x7f, 1, 0x11] });
    b.node('/cut', { iommus: [2, 0x800] });
    b.node('/pci', { 'iommu-map': [0, 1, 0x100, 0x20] });
    // A 2-cell SMMU (arm-smmu) as Qualcomm boards map it: still 4 cells an entry, one stream ID out.
    b.node('/pci2', { 'iommu-map': [0, 2, 0x1c00, 1, 0x100, 2, 0x1c01, 1] });
    b.node('/pci3', { 'iommu-map': [0, 1, 0x100] });
    const t = b.build();
    const [v3, v2] = [at(t, '/smmu3'), at(t, '/smmu2')];
    const idx = new FirmwareIndex(t.root);
    expect(readIommus(idx, at(t, '/master'))).toEqual([
      { iommu: v3, cells: [0x10] },
      { iommu: v2, cells: [0x800, 0x7f] },
      { iommu: v3, cells: [0x11] },
    ]);
    expect(() => readIommus(idx, at(t, '/cut'))).toThrow(/ends inside a 2-cell specifier/);
    expect(readIommuMap(idx, at(t, '/pci'))).toEqual([{ ridBase: 0, iommu: v3, sidBase: 0x100, length: 0x20 }]);
    expect(readIommuMap(idx, at(t, '/pci2'))).toEqual([
      { ridBase: 0, iommu: v2, sidBase: 0x1c00, length: 1 },
      { ridBase: 0x100, iommu: v2, sidBase: 0x1c01, length: 1 },
    ]);
    expect(() => readIommuMap(idx, at(t, '/pci3'))).toThrow(/not a multiple of 4/);
  });

  it('treats status on the node or any ancestor', () => {
    const b = new DtBuilder();
    b.node('/off', { status: 'disabled' }).node('child', { status: 'okay' });
    b.node('/ok', { status: 'ok' });
    const t = b.build();
    expect([isEnabled(at(t, '/off')), isEnabled(at(t, '/off/child')), isEnabled(at(t, '/ok')), isEnabled(t.root)]).toEqual([false, false, true, true]);
  });
});

describe('machine firmware errors from a blob', () => {
  it('name the byte offset of the offending property and the node path', () => {
    const tree = buildVirtDeviceTree();
    // `iommus` naming a phandle nothing carries.
    tree.byPath('/dma@c000000')!.properties.set('iommus', Uint8Array.of(0, 0, 0x7f, 0xff, 0, 0, 1, 0));
    const parsed = parseFdt(writeFdt(tree));
    const node = parsed.byPath('/dma@c000000')!;
    const offset = node.propertyOffsets.get('iommus')!;
    expect(offset).toBeGreaterThan(0);
    let err: unknown;
    try {
      Machine.fromDeviceTree(parsed, { seed: 1 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MachineFirmwareError);
    expect(err).toMatchObject({ offset, where: '/dma@c000000' });
    expect((err as Error).message).toBe(
      `dtb: property "iommus" references phandle 32767, which no node has (offset 0x${offset.toString(16)}, node /dma@c000000)`,
    );

    const t2 = buildVirtDeviceTree();
    t2.byPath('/pcie@3f000000')!.properties.set('bus-range', Uint8Array.of(0, 0, 0, 0, 0, 0));
    const p2 = parseFdt(writeFdt(t2));
    expect(() => Machine.fromDeviceTree(p2, { seed: 1 })).toThrow(
      `(offset 0x${p2.byPath('/pcie@3f000000')!.propertyOffsets.get('bus-range')!.toString(16)}, node /pcie@3f000000)`,
    );
  });
});
