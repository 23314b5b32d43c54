/**
 * Shared machinery of the DTB fuzz tests (fuzz.test.ts runs a short seeded slice in `make test`,
 * fuzz.soak.test.ts a long one in `make soak`): damaged-blob generation from real and
 * builder-made DTBs, and the walk that must end in success or FirmwareError.
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import { FirmwareError } from '../../../bus/firmware-error.js';
import { ofDmaIsCoherent, ofReg } from '../../../bus/of/address.js';
import { DtBuilder, ranges, reg } from '../../../bus/of/dt-builder.js';
import { parseFdt, writeFdt } from '../../../bus/of/fdt.js';
import { ofIrqs, ofMapId, ofMsiParent } from '../../../bus/of/irq.js';
import { ofIommuConfigure, ofIommuMapEntries, ofIommuSpecs, ofPciIommuConfigure } from '../../../bus/of/of-iommu.js';
import type { DeviceTree, DtNode } from '../../../bus/of/tree.js';
import { canonical, fixture } from './dt-test-utils.js';

/** A machine using every feature the helpers read, so value damage reaches all of them. */
function fuzzMachine(): Uint8Array {
  const b = new DtBuilder({ compatible: 'iommu-sim,fuzz', '#address-cells': 2, '#size-cells': 2 });
  const gic = b.node('/intc@8000000', { 'interrupt-controller': true, '#interrupt-cells': 3, '#address-cells': 0, reg: reg([0x800_0000, 0x1_0000]) });
  const its = b.node('/its@8080000', { 'msi-controller': true, '#msi-cells': 1, reg: reg([0x808_0000, 0x2_0000]) });
  b.root.set({ 'interrupt-parent': gic });
  const v3 = b.node('/iommu@9050000', { compatible: 'arm,smmu-v3', '#iommu-cells': 1, reg: reg([0x905_0000, 0x2_0000]), interrupts: [0, 74, 1, 0, 75, 1], 'interrupt-names': ['eventq', 'gerror'], 'msi-parent': [its, 0x7f] });
  const m500 = b.node('/iommu@9100000', { compatible: 'arm,mmu-500', '#iommu-cells': 2, '#global-interrupts': 1, reg: reg([0x910_0000, 0x1_0000]), interrupts: [0, 90, 4, 0, 91, 4] });
  const soc = b.node('/soc', { compatible: 'simple-bus', '#address-cells': 1, '#size-cells': 1, ranges: ranges([0, 0xa00_0000, 0x100_0000]), 'dma-coherent': true });
  soc.node('dma@1000', { reg: reg([0x1000, 0x1000]), iommus: [v3, 0x10, v3, 0x11], 'dma-can-stall': true, 'pasid-num-bits': 8, interrupts: [0, 80, 4] });
  soc.node('gpu@2000', { reg: reg([0x2000, 0x1000]), iommus: [m500, 0x400, 0x7f], 'interrupts-extended': [gic, 0, 81, 4] });
  const gpio = soc.node('gpio@3000', { reg: reg([0x3000, 0x100]), 'interrupt-controller': true, '#interrupt-cells': 2, interrupts: [0, 82, 4] });
  soc.node('key', { 'interrupt-parent': gpio, interrupts: [3, 1] });
  const pcie = b.node('/pcie@10000000', {
    device_type: 'pci',
    '#address-cells': 3,
    '#size-cells': 2,
    '#interrupt-cells': 1,
    reg: reg([0x40_1000_0000n, 0x1000_0000]),
    ranges: ranges([[0x0200_0000, 0, 0x1000_0000], 0x1000_0000, 0x1000_0000]),
    'interrupt-map-mask': [0, 0, 0, 7],
    'interrupt-map': [0, 0, 0, 1, gic, 0, 100, 4, 0, 0, 0, 2, gic, 0, 101, 4],
    'iommu-map': [0, v3, 0x1_0000, 0x1_0000],
    'iommu-map-mask': 0xffff,
    'msi-map': [0, its, 0, 0x1_0000],
    'ats-supported': true,
  });
  pcie.node('ep@0,0', { reg: [0, 0, 0, 0, 0], interrupts: 2, 'assigned-addresses': [0x8200_0010, 0, 0x1000_4000, 0, 0x4000] });
  b.node('/disabled', { status: 'disabled' }).node('dev', { iommus: [v3, 5] });
  b.memreserve(0x4000_0000, 0x1_0000);
  return b.blob();
}

export interface Source {
  name: string;
  blob: Uint8Array;
  /** Offsets of structure tokens worth overwriting: node and property tokens, property length/name fields and value words. */
  hotspots: number[];
}

export function source(name: string, blob: Uint8Array): Source {
  const t = parseFdt(blob);
  const hotspots: number[] = [];
  for (const n of t.nodes()) {
    hotspots.push(n.offset!);
    for (const [k, off] of n.propertyOffsets) {
      hotspots.push(off, off + 4, off + 8);
      const words = n.prop(k)!.length >> 2;
      for (let w = 0; w < Math.min(words, 4); w++) hotspots.push(off + 12 + 4 * w);
    }
  }
  return { name, blob, hotspots };
}

/** The sources the fast slice uses: the builder machine and the smaller real boards. */
export const SOURCES: Source[] = [
  source('builder-machine', fuzzMachine()),
  source('fvp-base-revc', fixture('fvp-base-revc.dtb')),
  source('amd-overdrive-rev-b1', fixture('amd-overdrive-rev-b1.dtb')),
  source('juno-r2', fixture('juno-r2.dtb')),
];

const interestingU32 = fc.oneof(
  fc.constantFrom(0, 1, 2, 3, 4, 9, 16, 17, 0x10, 0x28, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 0xd00dfeed),
  fc.integer({ min: 0, max: 0x400 }),
  fc.integer({ min: 0, max: 0xffffffff }),
);

export type Mutation =
  | { kind: 'truncate'; at: number }
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'byte'; at: number; value: number }
  | { kind: 'header'; field: number; value: number }
  | { kind: 'hotspot'; which: number; value: number }
  | { kind: 'u32'; at: number; value: number };

export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('byte' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('header' as const), field: fc.integer({ min: 0, max: 9 }), value: interestingU32 }),
  fc.record({ kind: fc.constant('hotspot' as const), which: fc.nat(), value: interestingU32 }),
  fc.record({ kind: fc.constant('hotspot' as const), which: fc.nat(), value: interestingU32 }),
  fc.record({ kind: fc.constant('u32' as const), at: fc.nat(), value: interestingU32 }),
);

export function mutate(src: Source, muts: Mutation[]): Uint8Array {
  let b = src.blob.slice();
  const put = (at: number, v: number): void => {
    if (at + 4 <= b.length) new DataView(b.buffer).setUint32(at, v >>> 0);
  };
  for (const m of muts) {
    if (b.length === 0) break;
    switch (m.kind) {
      case 'truncate':
        b = b.slice(0, m.at % b.length);
        break;
      case 'flip':
        b[m.at % b.length] ^= 1 << m.bit;
        break;
      case 'byte':
        b[m.at % b.length] = m.value;
        break;
      case 'header':
        put(m.field * 4, m.value);
        break;
      case 'hotspot':
        put(src.hotspots[m.which % src.hotspots.length], m.value);
        break;
      case 'u32':
        put((m.at % b.length) & ~3, m.value);
        break;
    }
  }
  return b;
}

/** Run `f`; a FirmwareError is an accepted outcome, anything else is rethrown (a failure). */
function tolerate(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof FirmwareError)) throw e;
  }
}

const HELPERS: ((t: DeviceTree, n: DtNode) => unknown)[] = [
  (t, n) => ofReg(t, n),
  (t, n) => ofIrqs(t, n),
  (t, n) => ofMsiParent(t, n),
  (t, n) => ofIommuConfigure(t, n),
  (t, n) => ofIommuSpecs(t, n),
  (t, n) => ofIommuMapEntries(t, n),
  (t, n) => n.has('iommu-map') && [0, 0x8, 0x100, 0xffff].map((rid) => ofPciIommuConfigure(t, n, rid)),
  (t, n) => n.has('msi-map') && ofMapId(t, n, 0x100, 'msi-map', 'msi-map-mask'),
  (_t, n) => ofDmaIsCoherent(n),
  (_t, n) => [n.compatible, n.available, n.phandle, n.addressCells, n.sizeCells],
  (t, n) => n.phandle !== undefined && t.byPhandle(n.phandle),
];

/** Outcome of one damaged blob: rejected by the reader, or read and walked. */
export function exercise(blob: Uint8Array): 'rejected' | 'read' {
  let tree: DeviceTree;
  try {
    tree = parseFdt(blob);
  } catch (e) {
    if (e instanceof FirmwareError) return 'rejected';
    throw e;
  }
  for (const n of tree.nodes()) {
    for (const h of HELPERS) tolerate(() => h(tree, n));
    for (const k of n.properties.keys()) {
      tolerate(() => n.cells(k));
      tolerate(() => n.strings(k));
    }
  }
  let out: Uint8Array | null = null;
  tolerate(() => (out = writeFdt(tree)));
  if (out !== null) expect(canonical(parseFdt(out))).toEqual(canonical(tree));
  return 'read';
}
