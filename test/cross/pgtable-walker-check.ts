/**
 * The io-pgtable / hardware walker cross-check, shared by the fixed-seed suite
 * (pgtable-walker.test.ts) and the seed sweep of `make soak` (pgtable-walker.soak.test.ts).
 *
 * Cross-check of the two independent readings of the Armv8 translation table format: random map/unmap
 * sequences through the kernel's io-pgtable, then the machine's walker, configured only from the
 * register values io-pgtable produced (TCR/VTCR fields and TTBR), must resolve every mapped IOVA exactly
 * as iova_to_phys does, with the permissions and attributes the prot bits imply, and must take a
 * translation fault on every unmapped one. For every format.
 *
 * A small model (a list of mapped ranges) is the oracle for what is mapped, and checks the map/unmap
 * return values: EEXIST exactly when a request overlaps a live mapping (with the bytes mapped before the
 * table holding the first overlap), unmap stopping only at a hole or a larger block.
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import { iommuIotlbGatherInit } from '../../core/iommu-gather.js';
import {
  IOMMU_CACHE,
  IOMMU_MMIO,
  IOMMU_NOEXEC,
  IOMMU_PRIV,
  IOMMU_READ,
  IOMMU_WRITE,
  IoPgtableMapError,
  type IoPgtable,
  type IoPgtableFmt,
} from '../../core/io-pgtable.js';
import { allocIoPgtableOps, freeIoPgtableOps } from '../../core/io-pgtable-arm.js';
import {
  compileStage1,
  compileStage2,
  decodeAddressSize,
  decodeS2SL0,
  decodeTG0,
  type StageConfig,
} from '../../hw/walker/config.js';
import { ACCESS_INSTR, ACCESS_PRIV, ACCESS_WRITE, PERM_R, PERM_W, PERM_X, WalkResult } from '../../hw/walker/result.js';
import { TranslationTableWalker } from '../../hw/walker/walker.js';
import { recordingFlushOps, tableRam, type TestTableAllocator, SZ_4K, SZ_16K, SZ_64K, SZ_2M, SZ_32M, SZ_512M, SZ_1G, SZ_4T, BITMAP_4K, BITMAP_16K, BITMAP_64K } from '../core/io-pgtable-rig.js';
import type { PhysicalMemory } from '../../hw/memory.js';


export interface Format {
  fmt: IoPgtableFmt;
  bitmap: number;
  ias: number;
  oas: number;
}

export const FORMATS: Format[] = [
  // 4K: four-level and shorter stage 1; stage 2 with level 0 starts and 2/8 concatenated tables.
  { fmt: 'ARM_64_LPAE_S1', bitmap: BITMAP_4K, ias: 48, oas: 48 },
  { fmt: 'ARM_64_LPAE_S1', bitmap: BITMAP_4K, ias: 39, oas: 40 },
  { fmt: 'ARM_64_LPAE_S1', bitmap: BITMAP_4K, ias: 32, oas: 36 },
  { fmt: 'ARM_64_LPAE_S1', bitmap: BITMAP_4K, ias: 44, oas: 42 },
  { fmt: 'ARM_64_LPAE_S2', bitmap: BITMAP_4K, ias: 48, oas: 48 },
  { fmt: 'ARM_64_LPAE_S2', bitmap: BITMAP_4K, ias: 40, oas: 40 },
  { fmt: 'ARM_64_LPAE_S2', bitmap: BITMAP_4K, ias: 42, oas: 42 },
  { fmt: 'ARM_64_LPAE_S2', bitmap: BITMAP_4K, ias: 40, oas: 48 },
  { fmt: 'ARM_64_LPAE_S2', bitmap: BITMAP_4K, ias: 36, oas: 40 },
  { fmt: 'ARM_64_LPAE_S2', bitmap: BITMAP_4K, ias: 32, oas: 32 },
  // 16K: level 0 starts with two entries; stage 2 with 2 and 16 concatenated tables.
  { fmt: 'ARM_64_LPAE_S1', bitmap: BITMAP_16K, ias: 48, oas: 48 },
  { fmt: 'ARM_64_LPAE_S1', bitmap: BITMAP_16K, ias: 36, oas: 42 },
  { fmt: 'ARM_64_LPAE_S2', bitmap: BITMAP_16K, ias: 48, oas: 48 },
  { fmt: 'ARM_64_LPAE_S2', bitmap: BITMAP_16K, ias: 40, oas: 40 },
  { fmt: 'ARM_64_LPAE_S2', bitmap: BITMAP_16K, ias: 40, oas: 42 },
  { fmt: 'ARM_64_LPAE_S2', bitmap: BITMAP_16K, ias: 36, oas: 36 },
  // 64K: 52-bit input and output with 4TB blocks; short tables.
  { fmt: 'ARM_64_LPAE_S1', bitmap: BITMAP_64K, ias: 48, oas: 48 },
  { fmt: 'ARM_64_LPAE_S1', bitmap: BITMAP_64K + SZ_4T, ias: 52, oas: 52 },
  { fmt: 'ARM_64_LPAE_S1', bitmap: BITMAP_64K, ias: 32, oas: 32 },
  { fmt: 'ARM_64_LPAE_S2', bitmap: BITMAP_64K, ias: 48, oas: 48 },
  { fmt: 'ARM_64_LPAE_S2', bitmap: BITMAP_64K + SZ_4T, ias: 52, oas: 52 },
  { fmt: 'ARM_64_LPAE_S2', bitmap: BITMAP_64K, ias: 44, oas: 44 },
  { fmt: 'ARM_64_LPAE_S2', bitmap: BITMAP_64K, ias: 40, oas: 40 },
  // AArch32 LPAE contexts (same descriptors, 4K only).
  { fmt: 'ARM_32_LPAE_S1', bitmap: BITMAP_4K, ias: 32, oas: 40 },
  { fmt: 'ARM_32_LPAE_S2', bitmap: BITMAP_4K, ias: 40, oas: 40 },
];

/** One mapped run of pages, as the model keeps it. */
interface Rec {
  iova: number;
  pa: number;
  size: number;
  pgsize: number;
  prot: number;
}

class Model {
  recs: Rec[] = [];

  /** Runs that share a byte with [a, b) (none when the range is empty). */
  overlapping(a: number, b: number): Rec[] {
    return this.recs.filter((r) => a < b && r.iova < b && a < r.iova + r.size);
  }

  covering(addr: number): Rec | undefined {
    return this.recs.find((r) => addr >= r.iova && addr < r.iova + r.size);
  }

  /** Index of the first page of the request that overlaps a live mapping, or -1. */
  firstOverlap(iova: number, pgsize: number, count: number): number {
    const hits = this.overlapping(iova, iova + pgsize * count);
    if (hits.length === 0) return -1;
    const first = Math.min(...hits.map((r) => Math.max(r.iova, iova)));
    return Math.floor((first - iova) / pgsize);
  }

  /** Remove [a, b) from every run, splitting runs that straddle it. */
  remove(a: number, b: number): void {
    const keep: Rec[] = [];
    for (const r of this.recs) {
      const end = r.iova + r.size;
      if (end <= a || r.iova >= b) {
        keep.push(r);
        continue;
      }
      if (r.iova < a) keep.push({ ...r, size: a - r.iova });
      if (end > b) keep.push({ ...r, iova: b, pa: r.pa + (b - r.iova), size: end - b });
    }
    this.recs = keep;
  }
}

/** Stage 1 permissions the kernel's encoding of `prot` implies (EL1&0 rules; see hw/walker). */
function s1Perms(prot: number, priv: boolean): number {
  const el0 = !(prot & IOMMU_PRIV);
  const ro = (prot & IOMMU_READ) !== 0 && !(prot & IOMMU_WRITE);
  const xn = (prot & IOMMU_NOEXEC) !== 0;
  if (!priv) return (el0 ? PERM_R : 0) | (el0 && !ro ? PERM_W : 0) | (xn ? 0 : PERM_X);
  return PERM_R | (ro ? 0 : PERM_W) | (xn || (el0 && !ro) ? 0 : PERM_X);
}

function s2Perms(prot: number): number {
  return (prot & IOMMU_READ ? PERM_R : 0) | (prot & IOMMU_WRITE ? PERM_W : 0) | (prot & IOMMU_NOEXEC ? 0 : PERM_X);
}

/** The walker's view of a page table, built only from the register values io-pgtable produced. */
export function walkerConfig(t: IoPgtable): StageConfig {
  if (t.armLpaeS1Cfg) {
    const { tcr, ttbr } = t.armLpaeS1Cfg;
    return compileStage1({ granule: decodeTG0(tcr.tg)!, inputSize: 64 - tcr.tsz, outputSize: decodeAddressSize(tcr.ips)!, tableBase: ttbr });
  }
  const { vtcr, vttbr } = t.armLpaeS2Cfg!;
  const granule = decodeTG0(vtcr.tg)!;
  return compileStage2({
    granule,
    inputSize: 64 - vtcr.tsz,
    outputSize: decodeAddressSize(vtcr.ps)!,
    startLevel: decodeS2SL0(granule, vtcr.sl),
    tableBase: vttbr,
  });
}

interface Op {
  unmap: boolean;
  sizeSel: number;
  region: number;
  offset: number;
  count: number;
  paHi: number;
  paLo: number;
  prot: number;
}

const opArb: fc.Arbitrary<Op> = fc.record({
  unmap: fc.integer({ min: 0, max: 2 }).map((v) => v === 0),
  sizeSel: fc.integer({ min: 0, max: 9 }),
  region: fc.integer({ min: 0, max: 2 }),
  offset: fc.nat(),
  count: fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 1, max: 4 }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 1100 }) }),
  paHi: fc.nat(),
  paLo: fc.nat(),
  prot: fc.nat({ max: 63 }),
});

/** The page sizes of a table, smallest first. */
export function sizesOf(t: IoPgtable): number[] {
  return [SZ_4K, SZ_16K, SZ_64K, SZ_2M, SZ_32M, SZ_512M, SZ_1G, SZ_4T].filter((s) => t.cfg.pgsizeBitmap % (2 * s) >= s);
}

/**
 * Turn a generated op into concrete arguments. IOVAs cluster at the start of three regions (bottom,
 * middle and top of the input range), each two of the largest pages long, so that pages, blocks and
 * tables collide; `paWindow` restricts output addresses (for nested runs).
 */
function concretise(op: Op, t: IoPgtable, paWindow: [number, number]) {
  const sizes = sizesOf(t);
  const pgsize = sizes[Math.min(sizes.length - 1, op.sizeSel <= 5 ? 0 : op.sizeSel <= 8 ? 1 : 2)];
  const largest = sizes[sizes.length - 1];
  const span = Math.min(2 * largest, 2 ** (t.cfg.ias - 2));
  const top = 2 ** t.cfg.ias;
  const regionBase = [0, top / 2, top - span][op.region];
  const slots = span / pgsize;
  const count = Math.max(1, Math.min(op.count, slots));
  const iova = regionBase + (op.offset % Math.min(slots - count + 1, 1200)) * pgsize;
  const [paBase, paSize] = paWindow;
  const paSlots = Math.floor(paSize / pgsize) - count + 1;
  const pa = paBase + ((op.paHi * 2 ** 31 + op.paLo) % paSlots) * pgsize;
  let prot = op.prot;
  if (!(prot & (IOMMU_READ | IOMMU_WRITE))) prot |= IOMMU_READ;
  return { pgsize, count, iova, pa, prot };
}

interface Rig {
  ram: PhysicalMemory;
  allocator: TestTableAllocator;
  tlb: ReturnType<typeof recordingFlushOps>;
  t: IoPgtable;
  model: Model;
}

/** Apply one op through io-pgtable and check its result against the model; then update the model. */
function apply(rig: Rig, op: Op, paWindow: [number, number]): void {
  const { t, model, tlb, allocator } = rig;
  const { pgsize, count, iova, pa, prot } = concretise(op, t, paWindow);
  const size = pgsize * count;
  const framesBefore = allocator.frees;
  tlb.calls.length = 0;
  if (op.unmap) {
    const got = t.unmapPages(iova, pgsize, count, iommuIotlbGatherInit());
    expect(got % pgsize).toBe(0);
    expect(got).toBeLessThanOrEqual(size);
    expect(model.overlapping(iova, iova + got).filter((r) => r.pgsize > pgsize)).toEqual([]);
    if (got < size) {
      const next = iova + got;
      // It stopped at a hole or a larger block: nothing of this size or smaller lies there.
      expect(model.overlapping(next, next + pgsize).filter((r) => r.pgsize <= pgsize)).toEqual([]);
    }
    model.remove(iova, iova + got);
  } else {
    const overlap = model.firstOverlap(iova, pgsize, count);
    try {
      expect(t.mapPages(iova, pa, pgsize, count, prot)).toBe(size);
      expect(overlap).toBe(-1);
      model.recs.push({ iova, pa, size, pgsize, prot });
    } catch (e) {
      if (!(e instanceof IoPgtableMapError)) throw e;
      expect(e.errno).toBe('EEXIST');
      expect(overlap).toBeGreaterThanOrEqual(0);
      // Whole table pages before the one holding the first overlap were mapped.
      const chunk = (t.granule / 8) * pgsize;
      const firstAddr = iova + overlap * pgsize;
      expect(e.mapped).toBe(Math.max(0, Math.floor(firstAddr / chunk) * chunk - iova));
      // What the iommu core does next: unmap the part that went in.
      if (e.mapped > 0) expect(t.unmapPages(iova, pgsize, e.mapped / pgsize, iommuIotlbGatherInit())).toBe(e.mapped);
    }
  }
  // Any table freed by this op was preceded by a flush of the walks through it.
  if (allocator.frees > framesBefore) expect(tlb.calls.some((c) => c.op === 'walk')).toBe(true);
}

/** Addresses to check: the edges and an inner page of every run, the bytes just outside, random ones. */
function probes(model: Model, t: IoPgtable, extra: number[]): number[] {
  const out: number[] = [];
  const top = 2 ** t.cfg.ias;
  for (const r of model.recs) {
    out.push(r.iova, r.iova + r.size - 1, r.iova + Math.floor(r.size / r.pgsize / 2) * r.pgsize + 0x123);
    if (r.iova > 0) out.push(r.iova - 1);
    if (r.iova + r.size < top) out.push(r.iova + r.size);
  }
  for (const x of extra) out.push(x % top);
  return out;
}

function checkSingleStage(rig: Rig, walker: TranslationTableWalker, cfg: StageConfig, addrs: number[]): void {
  const { t, model } = rig;
  const out = new WalkResult();
  // Each level up multiplies the block size by the entries per table.
  const levelOf = (pgsize: number) => 3 - Math.round(Math.log2(pgsize / t.granule) / Math.log2(t.granule / 8));
  for (const addr of addrs) {
    const r = model.covering(addr);
    const phys = t.iovaToPhys(addr);
    if (!r) {
      expect(phys, `iova 0x${addr.toString(16)} should be unmapped`).toBe(0);
      const okay = cfg.stage === 1 ? walker.walkStage1(cfg, addr, ACCESS_PRIV, out) : walker.walkStage2(cfg, addr, 0, out);
      expect(okay).toBe(false);
      expect([out.fault, out.faultStage], `walk of unmapped 0x${addr.toString(16)}`).toEqual(['translation', cfg.stage]);
      continue;
    }
    const want = r.pa + (addr - r.iova);
    expect(phys, `iova_to_phys(0x${addr.toString(16)})`).toBe(want);
    if (cfg.stage === 1) {
      // A privileged read is always allowed at stage 1.
      expect(walker.walkStage1(cfg, addr, ACCESS_PRIV, out), `walk 0x${addr.toString(16)}: ${out.fault}`).toBe(true);
      expect(out.pa).toBe(want);
      expect(out.s1Perms).toBe(s1Perms(r.prot, true));
      expect(out.attrIndx).toBe(r.prot & IOMMU_MMIO ? 2 : r.prot & IOMMU_CACHE ? 1 : 0);
      expect([out.sh, out.nG, out.ns]).toEqual([r.prot & IOMMU_CACHE ? 3 : 2, true, false]);
      expect([out.level, out.blockSize]).toEqual([levelOf(r.pgsize), r.pgsize]);
      const unpriv = s1Perms(r.prot, false);
      for (const [acc, bit] of [[0, PERM_R], [ACCESS_WRITE, PERM_W], [ACCESS_INSTR, PERM_X]] as const) {
        const okay = walker.walkStage1(cfg, addr, acc, out);
        expect(okay).toBe((unpriv & bit) !== 0);
        if (!okay) expect([out.fault, out.faultStage, out.faultLevel]).toEqual(['permission', 1, levelOf(r.pgsize)]);
      }
      expect(out.s1Perms).toBe(unpriv);
    } else {
      const perms = s2Perms(r.prot);
      const acc = perms & PERM_R ? 0 : ACCESS_WRITE;
      expect(walker.walkStage2(cfg, addr, acc, out), `walk 0x${addr.toString(16)}: ${out.fault}`).toBe(true);
      expect(out.pa).toBe(want);
      expect(out.s2Perms).toBe(perms);
      expect(out.memAttr).toBe(r.prot & IOMMU_MMIO ? 1 : r.prot & IOMMU_CACHE ? 0xf : 5);
      expect(out.s2Sh).toBe(r.prot & IOMMU_CACHE ? 3 : 2);
      expect([out.level, out.blockSize]).toEqual([levelOf(r.pgsize), r.pgsize]);
      expect(walker.walkStage2(cfg, addr, ACCESS_INSTR, out)).toBe((perms & PERM_X) !== 0);
      expect(walker.walkStage2(cfg, addr, ACCESS_WRITE, out)).toBe((perms & PERM_W) !== 0);
      if (!(perms & PERM_W)) expect([out.fault, out.faultStage]).toEqual(['permission', 2]);
    }
  }
}

export function newRig(f: Format): Rig {
  const { ram, allocator } = tableRam();
  const tlb = recordingFlushOps();
  const t = allocIoPgtableOps(f.fmt, { pgsizeBitmap: f.bitmap, ias: f.ias, oas: f.oas, tlb, ram, allocator });
  return { ram, allocator, tlb, t, model: new Model() };
}

/** Test name of a single-stage format: format, page sizes, ias, oas. */
export function formatName(f: Format): string {
  return `${f.fmt} ${sizesOf(newRig(f).t).map((s) => s.toString(16)).join('|')} ias ${f.ias} oas ${f.oas}`;
}

/** Random map/unmap sequences on one table of format `f`, then every probe checked against the walker. */
export function singleStageProperty(f: Format) {
  return fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), fc.array(fc.nat(), { maxLength: 40 }), (ops, extra) => {
    const rig = newRig(f);
    const cfg = walkerConfig(rig.t);
    const walker = new TranslationTableWalker(rig.ram);
    const paWindow: [number, number] = [0, 2 ** rig.t.cfg.oas];
    for (const op of ops) apply(rig, op, paWindow);
    const sizes = sizesOf(rig.t);
    const span = Math.min(2 * sizes[sizes.length - 1], 2 ** (rig.t.cfg.ias - 2));
    // Random probes near the regions the ops use, plus anywhere in the input range.
    const near = extra.map((x, k) => [0, 2 ** (rig.t.cfg.ias - 1), 2 ** rig.t.cfg.ias - span][k % 3] + (x * 4099) % span);
    checkSingleStage(rig, walker, cfg, probes(rig.model, rig.t, [...near, ...extra.map((x) => x * 2 ** 21 + x)]));
    // Every table goes back to the allocator, each exactly once.
    freeIoPgtableOps(rig.t);
    expect(rig.allocator.live.size).toBe(0);
  });
}

// Stage 2 maps the table RAM (at 1 GiB) at its own address with a 1G block, and an IPA window of
// 15 GiB at 1 TiB to PA 16 TiB + 5 GiB, leaving the window's last gigabyte unmapped.
const WIN = 2 ** 40;
const WIN_SIZE = 16 * SZ_1G;
const PA_BASE = 2 ** 44 + 5 * SZ_1G;

const S1_FORMATS: Format[] = [
  { fmt: 'ARM_64_LPAE_S1', bitmap: BITMAP_4K, ias: 48, oas: 48 },
  { fmt: 'ARM_64_LPAE_S1', bitmap: BITMAP_16K, ias: 47, oas: 48 },
  { fmt: 'ARM_64_LPAE_S1', bitmap: BITMAP_64K, ias: 42, oas: 48 },
];
const S2_FORMATS: Format[] = [
  { fmt: 'ARM_64_LPAE_S2', bitmap: BITMAP_4K, ias: 48, oas: 48 },
  { fmt: 'ARM_64_LPAE_S2', bitmap: BITMAP_64K, ias: 44, oas: 48 },
];
export const NESTED_PAIRS = S1_FORMATS.flatMap((a) => S2_FORMATS.map((b) => [a, b] as const));

export function nestedName(s1f: Format, s2f: Format): string {
  return `S1 ${s1f.bitmap.toString(16)}/${s1f.ias} over S2 ${s2f.bitmap.toString(16)}/${s2f.ias}`;
}

/** Random stage 1 sequences whose tables and output go through a fixed stage 2; nested walks checked. */
export function nestedProperty(s1f: Format, s2f: Format) {
  return fc.property(fc.array(opArb, { minLength: 1, maxLength: 25 }), fc.array(fc.nat(), { maxLength: 30 }), (ops, extra) => {
    const rig = newRig(s1f);
    const s2 = allocIoPgtableOps(s2f.fmt, {
      pgsizeBitmap: s2f.bitmap,
      ias: s2f.ias,
      oas: s2f.oas,
      tlb: recordingFlushOps(),
      ram: rig.ram,
      allocator: rig.allocator,
    });
    const s2Block = sizesOf(s2)[sizesOf(s2).length - 1] >= SZ_1G ? SZ_1G : SZ_512M;
    s2.mapPages(SZ_1G, SZ_1G, s2Block, SZ_1G / s2Block, IOMMU_READ | IOMMU_WRITE);
    s2.mapPages(WIN, PA_BASE, s2Block, (WIN_SIZE - SZ_1G) / s2Block, IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE);
    const c1 = walkerConfig(rig.t);
    const c2 = walkerConfig(s2);
    const walker = new TranslationTableWalker(rig.ram);
    for (const op of ops) apply(rig, op, [WIN, WIN_SIZE]);
    const out = new WalkResult();
    for (const va of probes(rig.model, rig.t, extra.map((x) => (x * 8191) % 2 ** 32))) {
      const r = rig.model.covering(va);
      const ipa = rig.t.iovaToPhys(va);
      const okay = walker.walkNested(c1, c2, va, ACCESS_PRIV, out);
      if (!r) {
        expect(ipa).toBe(0);
        expect([okay, out.fault, out.faultStage, out.s1ptw]).toEqual([false, 'translation', 1, false]);
        continue;
      }
      expect(ipa).toBe(r.pa + (va - r.iova));
      const pa = s2.iovaToPhys(ipa);
      if (ipa >= WIN + WIN_SIZE - SZ_1G) {
        expect(pa).toBe(0);
        expect([okay, out.fault, out.faultStage, out.s1ptw, out.ipa]).toEqual([false, 'translation', 2, false, ipa]);
        continue;
      }
      expect(okay, `nested walk of 0x${va.toString(16)}: ${out.fault} stage ${out.faultStage}`).toBe(true);
      expect([out.ipa, out.pa]).toEqual([ipa, PA_BASE + (ipa - WIN)]);
      expect(out.pa).toBe(pa);
      expect(out.perms).toBe(s1Perms(r.prot, true) & (PERM_R | PERM_W | PERM_X));
      expect(out.blockSize).toBe(Math.min(r.pgsize, s2Block));
    }
    freeIoPgtableOps(rig.t);
    freeIoPgtableOps(s2);
    expect(rig.allocator.live.size).toBe(0);
  });
}
