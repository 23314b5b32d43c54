import { describe, expect, it } from 'vitest';
import { ofReg } from '../../../bus/of/address.js';
import { DtBuilder, DtBuilderError, ranges, reg, u64 } from '../../../bus/of/dt-builder.js';
import { parseFdt } from '../../../bus/of/fdt.js';
import { ofIrqByName, ofIrqs } from '../../../bus/of/irq.js';
import { ofIommuConfigure, ofPciIommuConfigure } from '../../../bus/of/of-iommu.js';
import { canonical, dtcDecompile, hasDtc } from './dt-test-utils.js';

/** A small machine, written the way a scenario author would. */
function smallMachine(): DtBuilder {
  const b = new DtBuilder({ compatible: ['iommu-sim,test', 'iommu-sim,virt'], model: 'test machine', '#address-cells': 2, '#size-cells': 2 });
  b.node('/memory@40000000', { device_type: 'memory', reg: reg([0x4000_0000, 0x8000_0000]) });
  const gic = b.node('/intc@8000000', {
    compatible: 'arm,gic-v3',
    'interrupt-controller': true,
    '#interrupt-cells': 3,
    '#address-cells': 2,
    '#size-cells': 2,
    ranges: ranges(),
    reg: reg([0x800_0000, 0x1_0000], [0x80a_0000, 0xf6_0000]),
  });
  const its = gic.node('msi-controller@8080000', { compatible: 'arm,gic-v3-its', 'msi-controller': true, '#msi-cells': 1, reg: reg([0x808_0000, 0x2_0000]) });
  b.root.set({ 'interrupt-parent': gic });
  const smmu = b.node('/iommu@9050000', {
    compatible: 'arm,smmu-v3',
    reg: reg([0x905_0000, 0x2_0000]),
    interrupts: [0, 74, 1, 0, 75, 1, 0, 77, 1],
    'interrupt-names': ['eventq', 'gerror', 'cmdq-sync'],
    '#iommu-cells': 1,
    'dma-coherent': true,
  });
  b.node('/dma@a000000', { compatible: 'arm,pl330', reg: reg([0xa00_0000, 0x1000]), interrupts: [0, 80, 4], iommus: [smmu, 0x10], 'dma-can-stall': true, 'pasid-num-bits': 16 });
  b.node('/pcie@10000000', {
    compatible: 'pci-host-ecam-generic',
    device_type: 'pci',
    '#address-cells': 3,
    '#size-cells': 2,
    reg: reg([0x40_1000_0000n, 0x1000_0000]),
    ranges: ranges([[0x0200_0000, 0, 0x1000_0000], 0x1000_0000, 0x1000_0000]),
    'iommu-map': [0, smmu, 0x100, 0x1_0000],
    'msi-map': [0, its, 0, 0x1_0000],
    'ats-supported': true,
  });
  b.node('/chosen', { 'stdout-path': '/pl011@9000000', 'linux,initrd-start': u64(0x4800_0000) });
  b.memreserve(0x4000_0000, 0x10_0000);
  return b;
}

function cells(bytes: Uint8Array | undefined): number[] {
  const dv = new DataView(bytes!.buffer, bytes!.byteOffset, bytes!.byteLength);
  return Array.from({ length: bytes!.length / 4 }, (_, i) => dv.getUint32(i * 4));
}

describe('DtBuilder', () => {
  it('encodes typed values', () => {
    const t = smallMachine().build();
    const root = t.root;
    expect(root.strings('compatible')).toEqual(['iommu-sim,test', 'iommu-sim,virt']);
    expect(root.string('model')).toBe('test machine');
    const mem = t.byPath('/memory@40000000')!;
    expect(mem.cells('reg')).toEqual([0, 0x4000_0000, 0, 0x8000_0000]);
    const gic = t.byPath('/intc@8000000')!;
    expect(gic.prop('interrupt-controller')!.length).toBe(0);
    expect(gic.prop('ranges')!.length).toBe(0);
    expect(gic.cells('reg')).toEqual([0, 0x800_0000, 0, 0x1_0000, 0, 0x80a_0000, 0, 0xf6_0000]);
    const pcie = t.byPath('/pcie@10000000')!;
    expect(pcie.cells('reg')).toEqual([0x40, 0x1000_0000, 0, 0x1000_0000]);
    expect(pcie.cells('ranges')).toEqual([0x0200_0000, 0, 0x1000_0000, 0, 0x1000_0000, 0, 0x1000_0000]);
    expect(t.byPath('/chosen')!.cells('linux,initrd-start')).toEqual([0, 0x4800_0000]);
    expect(t.reservations).toEqual([{ address: 0x4000_0000, size: 0x10_0000 }]);
  });

  it('assigns phandles in tree order to referenced nodes only', () => {
    const t = smallMachine().build();
    const gic = t.byPath('/intc@8000000')!;
    const its = t.byPath('/intc@8000000/msi-controller@8080000')!;
    const smmu = t.byPath('/iommu@9050000')!;
    expect([gic.phandle, its.phandle, smmu.phandle]).toEqual([1, 2, 3]);
    expect(t.byPath('/memory@40000000')!.has('phandle')).toBe(false);
    expect(t.byPath('/dma@a000000')!.has('phandle')).toBe(false);
    expect(t.root.u32('interrupt-parent')).toBe(1);
    expect(t.byPath('/dma@a000000')!.cells('iommus')).toEqual([3, 0x10]);
    expect(cells(t.byPath('/pcie@10000000')!.prop('iommu-map'))).toEqual([0, 3, 0x100, 0x1_0000]);
    // the phandle property comes last, as dtc places it
    expect([...smmu.properties.keys()].at(-1)).toBe('phandle');
  });

  it('keeps explicit phandles and numbers the rest around them', () => {
    const b = new DtBuilder({ '#address-cells': 1, '#size-cells': 1 });
    const x = b.node('/x', { phandle: 1 });
    const y = b.node('/y');
    b.node('/z', { refs: [x, y] });
    const t = b.build();
    expect(t.byPath('/x')!.phandle).toBe(1);
    expect(t.byPath('/y')!.phandle).toBe(2);
    expect(t.byPath('/z')!.cells('refs')).toEqual([1, 2]);
  });

  it('builds a tree that the of_* helpers read as intended', () => {
    const t = smallMachine().build();
    const smmu = t.byPath('/iommu@9050000')!;
    expect(ofReg(t, smmu)).toEqual([{ address: 0x905_0000, size: 0x2_0000 }]);
    expect(ofIrqByName(t, smmu, 'gerror')).toEqual({ controller: t.byPath('/intc@8000000'), specifier: [0, 75, 1], name: 'gerror' });
    const dma = ofIommuConfigure(t, t.byPath('/dma@a000000')!)!;
    expect(dma).toMatchObject({ iommuNode: smmu, specifiers: [[0x10]], ids: [0x10], canStall: true, pasidBits: 16, dmaCoherent: false });
    expect(ofIrqs(t, t.byPath('/dma@a000000')!)[0].specifier).toEqual([0, 80, 4]);
    const pci = ofPciIommuConfigure(t, t.byPath('/pcie@10000000')!, 0x8)!;
    expect(pci).toMatchObject({ iommuNode: smmu, ids: [0x108], atsSupported: true });
    expect(ofReg(t, t.byPath('/pcie@10000000')!)).toEqual([{ address: 0x40_1000_0000, size: 0x1000_0000 }]);
  });

  it('blob() round-trips to the same tree', () => {
    const b = smallMachine();
    expect(canonical(parseFdt(b.blob()))).toEqual(canonical(b.build()));
  });

  it.skipIf(!hasDtc)('writes a blob dtc reads with no warnings at all (skipped when dtc is not on PATH)', () => {
    const r = dtcDecompile(smallMachine().blob());
    expect(r.status).toBe(0);
    expect(r.warnings).toEqual([]);
    expect(r.dts).toContain('iommus = <0x03 0x10>;');
    expect(r.dts).toContain('interrupt-names = "eventq\\0gerror\\0cmdq-sync";');
  });

  it('reports mistakes clearly', () => {
    const b = smallMachine();
    const err = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(DtBuilderError);
        return (e as Error).message;
      }
      throw new Error('no error raised');
    };
    expect(err(() => b.node('/soc/dma@1000'))).toBe('cannot add /soc/dma@1000: parent /soc does not exist');
    expect(err(() => b.node('/iommu@9050000'))).toBe('duplicate node: /iommu@9050000 already exists');
    expect(err(() => b.node('relative'))).toMatch(/must be absolute/);
    expect(err(() => b.get('/nope'))).toBe('no node /nope');
    expect(err(() => b.memreserve(-1, 4))).toMatch(/memreserve address -1/);

    const build = (props: Parameters<DtBuilder['node']>[1], parentCells = true): string => {
      const x = new DtBuilder(parentCells ? { '#address-cells': 1, '#size-cells': 1 } : {});
      x.node('/n@0', props);
      return err(() => x.build());
    };
    expect(build({ v: 2 ** 32 })).toBe('/n@0: property "v": 4294967296 is not a u32 cell value');
    expect(build({ v: [1, -1] })).toMatch(/-1 is not a u32/);
    expect(build({ v: 1.5 })).toMatch(/1.5 is not a u32/);
    expect(build({ v: ['a', 1] as never })).toMatch(/mixes strings with cells/);
    expect(build({ reg: reg([0x1_0000_0000, 4]) })).toMatch(/0x100000000 does not fit in 1 cell/);
    expect(build({ reg: reg([0, 4]) }, false)).toBe('/n@0: property "reg": parent / must set #address-cells and #size-cells explicitly');
    expect(build({ ranges: ranges([0, 0, 4]) })).toMatch(/"ranges" needs #address-cells on the node itself/);
    expect(build({ s: 'caf\u2603' })).toMatch(/character code 9731/);

    const other = new DtBuilder();
    const foreign = other.node('/foreign');
    expect(build({ ref: foreign })).toBe('/n@0: property "ref" references /foreign of another builder');
    const dupPh = new DtBuilder();
    dupPh.node('/a', { phandle: 5 });
    dupPh.node('/b', { phandle: 5 });
    expect(err(() => dupPh.build())).toBe('/b: phandle 5 is already used by another node');
    expect(err(() => new DtBuilder().node('/a/b'))).toBe('cannot add /a/b: parent /a does not exist');
    expect(err(() => new DtBuilder().root.node('x/y'))).toMatch(/bad node name "x\/y"/);
  });

  it('set() replaces and false removes properties; build() is repeatable', () => {
    const b = new DtBuilder({ '#address-cells': 1, '#size-cells': 1 });
    const n = b.node('/n', { status: 'okay', flag: true });
    n.set({ status: 'disabled', flag: false });
    const t1 = b.build();
    expect(t1.byPath('/n')!.string('status')).toBe('disabled');
    expect(t1.byPath('/n')!.has('flag')).toBe(false);
    expect(t1.byPath('/n')!.available).toBe(false);
    expect(canonical(b.build())).toEqual(canonical(t1));
    expect(b.build().root).not.toBe(t1.root);
  });
});
