import { describe, expect, it } from 'vitest';
import { DtBuilder, type DtBuilderNode } from '../../../bus/of/dt-builder.js';
import { parseFdt } from '../../../bus/of/fdt.js';
import { ofIommuConfigure, ofIommuMapEntries, ofIommuSpecs, ofPciIommuConfigure } from '../../../bus/of/of-iommu.js';
import type { DeviceTree } from '../../../bus/of/tree.js';
import { fwError } from './dt-test-utils.js';


interface Machine {
  b: DtBuilder;
  v3: DtBuilderNode;
  mmu500: DtBuilderNode;
  off: DtBuilderNode;
}

function machine(): Machine {
  const b = new DtBuilder({ '#address-cells': 1, '#size-cells': 1 });
  const v3 = b.node('/smmu-v3', { compatible: 'arm,smmu-v3', '#iommu-cells': 1 });
  const mmu500 = b.node('/mmu-500', { compatible: 'arm,mmu-500', '#iommu-cells': 2 });
  const off = b.node('/smmu-off', { compatible: 'arm,smmu-v3', '#iommu-cells': 1, status: 'disabled' });
  return { b, v3, mmu500, off };
}

const at = (t: DeviceTree, p: string) => t.byPath(p)!;

describe('ofIommuConfigure (platform devices)', () => {
  it('builds one fwspec from all iommus entries with the master properties', () => {
    const { b, v3, mmu500 } = machine();
    const bus = b.node('/bus', { 'dma-coherent': true });
    bus.node('dma', { iommus: [v3, 0x10, v3, 0x11], 'dma-can-stall': true, 'pasid-num-bits': 20 });
    b.node('/gpu', { iommus: [mmu500, 0x400, 0x7f] });
    b.node('/plain');
    const t = b.build();
    expect(ofIommuConfigure(t, at(t, '/bus/dma'))).toEqual({
      iommuNode: at(t, '/smmu-v3'),
      specifiers: [[0x10], [0x11]],
      ids: [0x10, 0x11],
      canStall: true,
      pasidBits: 20,
      dmaCoherent: true,
      atsSupported: false,
    });
    const gpu = ofIommuConfigure(t, at(t, '/gpu'))!;
    expect(gpu.specifiers).toEqual([[0x400, 0x7f]]);
    expect(gpu.ids).toEqual([0x400]);
    expect(gpu).toMatchObject({ canStall: false, pasidBits: 0, dmaCoherent: false });
    expect(ofIommuConfigure(t, at(t, '/plain'))).toBeNull();
  });

  it('leaves a device behind a disabled IOMMU without one, as Linux does', () => {
    const { b, v3, off } = machine();
    b.node('/a', { iommus: [off, 1] });
    b.node('/b', { iommus: [v3, 1, off, 2] });
    const hidden = b.node('/hidden', { status: 'disabled' }).node('smmu', { '#iommu-cells': 1 });
    b.node('/c', { iommus: [hidden, 3] });
    b.node('/empty', { iommus: [] });
    const t = b.build();
    expect(ofIommuConfigure(t, at(t, '/a'))).toBeNull();
    expect(ofIommuConfigure(t, at(t, '/b'))).toBeNull();
    expect(ofIommuConfigure(t, at(t, '/c'))).toBeNull();
    expect(ofIommuConfigure(t, at(t, '/empty'))).toBeNull();
    // the raw list is still there for reporting
    expect(ofIommuSpecs(t, at(t, '/b')).map((s) => [s.iommu.path, s.cells])).toEqual([
      ['/smmu-v3', [1]],
      ['/smmu-off', [2]],
    ]);
  });

  it('handles #iommu-cells = 0 (no IDs) and 3', () => {
    const b = new DtBuilder({ '#address-cells': 1, '#size-cells': 1 });
    const zero = b.node('/z', { '#iommu-cells': 0 });
    const three = b.node('/three', { '#iommu-cells': 3 });
    b.node('/a', { iommus: [zero] });
    b.node('/b', { iommus: [three, 1, 2, 3] });
    const t = b.build();
    expect(ofIommuConfigure(t, at(t, '/a'))).toMatchObject({ specifiers: [[]], ids: [] });
    expect(ofIommuConfigure(t, at(t, '/b'))).toMatchObject({ specifiers: [[1, 2, 3]], ids: [1] });
  });

  it('raises FirmwareError naming the offset and node for malformed iommus', () => {
    const { b, v3, mmu500 } = machine();
    const noCells = b.node('/no-cells');
    b.node('/two', { iommus: [v3, 1, mmu500, 1, 0] });
    b.node('/dangling', { iommus: [0x55, 1] });
    b.node('/short', { iommus: [mmu500, 1] });
    b.node('/nocells', { iommus: [noCells, 1] });
    b.node('/pasid', { iommus: [v3, 1], 'pasid-num-bits': 21 });
    b.node('/wide', { iommus: [v3, 1], 'pasid-num-bits': [1, 2] });
    const t = parseFdt(b.blob());
    const check = (p: string, reason: RegExp, prop: string): void => {
      const e = fwError(() => ofIommuConfigure(t, at(t, p)));
      expect(e.reason, p).toMatch(reason);
      expect(e.where, p).toBe(p);
      expect(e.offset, p).toBe(at(t, p).propertyOffsets.get(prop));
      expect(e.message, p).toContain(`(offset 0x${e.offset!.toString(16)}, node ${p})`);
    };
    check('/two', /names both \/smmu-v3 and \/mmu-500; a device may sit behind one IOMMU only/, 'iommus');
    check('/dangling', /references phandle 85, which no node has/, 'iommus');
    check('/short', /\/mmu-500 takes 2 cells \(#iommu-cells\) but only 1 remain/, 'iommus');
    check('/nocells', /names \/no-cells, which has no "#iommu-cells"/, 'iommus');
    check('/pasid', /"pasid-num-bits" is 21, more than 20/, 'pasid-num-bits');
    check('/wide', /"pasid-num-bits" has 2 cells, expected 1/, 'pasid-num-bits');
  });

  it('rejects an absurd #iommu-cells', () => {
    const b = new DtBuilder({ '#address-cells': 1, '#size-cells': 1 });
    const x = b.node('/x', { '#iommu-cells': 0x1000_0000 });
    b.node('/m', { iommus: [x, 1] });
    const t = b.build();
    expect(fwError(() => ofIommuConfigure(t, at(t, '/m'))).reason).toMatch(/"#iommu-cells" of \/x is 268435456, more than 16/);
  });
});

describe('ofPciIommuConfigure (PCI devices via iommu-map)', () => {
  function pci(extra: Record<string, unknown> = {}): DeviceTree {
    const { b, v3, mmu500, off } = machine();
    b.node('/pcie', {
      device_type: 'pci',
      'iommu-map': [0, v3, 0x1_0000, 0x100, 0x100, v3, 0x2_0000, 0x100, 0x200, off, 0, 0x100],
      'ats-supported': true,
      'dma-coherent': true,
      ...extra,
    });
    b.node('/pcie-other', { 'iommu-map': [0, v3, 0, 0x100, 0x100, mmu500, 0x10, 0, 1] });
    return b.build();
  }

  it('maps a requester ID (and its DMA aliases) to stream IDs with host properties', () => {
    const t = pci();
    const host = at(t, '/pcie');
    expect(ofPciIommuConfigure(t, host, 0x8)).toEqual({
      iommuNode: at(t, '/smmu-v3'),
      specifiers: [[0x1_0008]],
      ids: [0x1_0008],
      canStall: false,
      pasidBits: 0,
      dmaCoherent: true,
      atsSupported: true,
    });
    expect(ofPciIommuConfigure(t, host, [0x8, 0x108])!.ids).toEqual([0x1_0008, 0x2_0008]);
    expect(ofIommuMapEntries(t, host).map((e) => [e.ridBase, e.iommu.path, e.sidBase, e.length])).toEqual([
      [0, '/smmu-v3', 0x1_0000, 0x100],
      [0x100, '/smmu-v3', 0x2_0000, 0x100],
      [0x200, '/smmu-off', 0, 0x100],
    ]);
  });

  it('returns null for unmapped IDs, a disabled IOMMU, or no map', () => {
    const t = pci();
    expect(ofPciIommuConfigure(t, at(t, '/pcie'), 0x300)).toBeNull();
    expect(ofPciIommuConfigure(t, at(t, '/pcie'), 0x201)).toBeNull();
    expect(ofPciIommuConfigure(t, at(t, '/smmu-v3'), 0)).toBeNull();
    expect(ofIommuMapEntries(t, at(t, '/smmu-v3'))).toEqual([]);
  });

  it('applies iommu-map-mask', () => {
    const t = pci({ 'iommu-map-mask': 0xff });
    expect(ofPciIommuConfigure(t, at(t, '/pcie'), 0x305)!.ids).toEqual([0x1_0005]);
  });

  it('rejects aliases that land on two IOMMUs', () => {
    const t = pci();
    const e = fwError(() => ofPciIommuConfigure(t, at(t, '/pcie-other'), [0x1, 0x100]));
    expect(e.reason).toBe('requester IDs of one device map to both /smmu-v3 and /mmu-500');
    expect(e.where).toBe('/pcie-other');
  });
});
