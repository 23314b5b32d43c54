/**
 * Cost curves (`npm run bench -- --scale`): how time per operation and memory per unit grow with the
 * size of the work. Each curve runs its workload at a few sizes on a fresh machine and records, per
 * size: CPU time per operation (this process's user + system time: on a shared machine it varies
 * far less than wall time), simulated RAM made resident per unit (sparse frames, 4 KiB each) and
 * JS heap per unit (heap + array buffers, measured after a forced GC when node runs with
 * --expose-gc, else a best effort). A curve is "flat" when its slowest time per operation is within
 * 2x of its fastest.
 *
 * A timed run follows a forced GC and a pause (so that V8's background threads are idle), and that
 * leaves the operation's code and data out of the caches: on this machine the first domain of a run
 * cost 60-120 µs of CPU and the tenth ~10, 256 SIDs 0.5 µs each against 0.27 straight after other
 * work. The pages, sids and domains points therefore make a throwaway run of the same operation on
 * state of their own right before the timed one (see WarmUp); the timed run does the same work.
 * That alone had put the 256-SID point at 2x the larger ones and the 10-domain point at 3x.
 *
 * Curves (default sizes run in a few minutes; `--large` adds the top sizes):
 * - pages:   iommu_map of one 4K page at a time into an UNMANAGED SMMUv3 domain, 10^3 .. 10^5 (10^6);
 *            memory per mapped page, with the page-table bytes it is compared against;
 * - devices: DMA masters behind one SMMUv3, the kernel booted and each probed and attached to its
 *            default domain; per device, the boot's cost beyond a boot without masters, 1 .. 10^2 (800: the GIC's SPIs, one per engine, run out before 10^3);
 * - sids:    StreamIDs made live in a 2-level stream table (20 SID bits; an L2 table per 256), dense
 *            from 0, 2^8 .. 2^16 (2^20);
 * - domains: paging domains allocated, each mapping one page (alloc + io-pgtable + map), 1 .. 10^3;
 * - dma:     DMA transactions (TLB-hit translations of the SMMUv3 model over 1024 mapped pages) in
 *            one run, 10^4 .. 10^6 (10^7).
 *
 * Writes `<out>/scale.json` and `<out>/scale.html` (the charts, SVG drawn by Apache ECharts) and
 * prints a table.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import type { Device } from '../bus/device.js';
import { iommuPagingDomainAlloc, type IommuDomain } from '../core/iommu-domain.js';
import { iommuGroupGet } from '../core/iommu-group.js';
import { iommuMap } from '../core/iommu-map.js';
import { IOMMU_READ, IOMMU_WRITE } from '../core/io-pgtable.js';
import { ArmSmmuStrtab } from '../drivers/arm-smmu-v3/arm-smmu-v3-strtab.js';
import { PhysicalMemory } from '../hw/memory.js';
import { Outcome } from '../hw/smmu-v3/outcome.js';
import type { CoherentBuffer } from '../mm/dma-coherent.js';
import { svgChart } from '../cli/svg-chart.js';
import { allocPages, bootSmmuV3, deviceOf, ownDomain, runIn, SMALL_SMMU_PATH, smallSmmuV3Tree, V3, type SmmuV3Lab } from '../scenarios/smmu-v3-lab.js';

export interface ScalePoint {
  size: number;
  /**
   * CPU time (user + system of this process) per operation, ns: steadier than wall time on a shared
   * machine. The median of the point's runs (each from a fresh state); min and max beside it.
   */
  nsPerOp: number;
  nsPerOpMin?: number;
  nsPerOpMax?: number;
  /** Simulated RAM made resident per unit, bytes (sparse 4 KiB frames). */
  ramBytesPerUnit: number;
  /** JS heap (heap + array buffers) grown per unit, bytes. */
  heapBytesPerUnit: number;
}

export interface ScaleCurve {
  name: string;
  unit: string;
  op: string;
  points: ScalePoint[];
  /** Slowest / fastest time per operation over the range: ≤ 2 is "flat". */
  spread: number;
  flat: boolean;
  /** For pages: page-table bytes per mapped page (what sparse memory is compared against). */
  pageTableBytesPerUnit?: number;
}

/**
 * Give V8's background threads (concurrent sweeping after the forced GC, compilation and marking) a
 * moment to finish what the set-up and the heap baseline left them: their CPU time counts in this
 * process's and would be charged to a short measurement (a forced GC after a boot leaves 0.3-2 ms of
 * it).
 */
function settleThreads(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 100));
}

const gc = (globalThis as { gc?: () => void }).gc;

/**
 * Heap + array buffers after a forced GC. Twice: the buffers one GC finds dead leave `arrayBuffers`
 * only when its background sweeper has freed them, which the next GC waits for (after one, the
 * figure still counted the previous run's 16 MB of frames half the time).
 */
function heapBytes(): number {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/**
 * A throwaway run of the measured operation, made on state of its own right before the timed run.
 * After the settling pause (and the forced GC before it) the operation's code and data have left the
 * caches: the first operations of a run then cost several times the next ones (the first domain
 * 60-120 µs of CPU, the next ~10), a fixed cost that a run of a few hundred microseconds would charge
 * to its operations. The throwaway state is built before the first heap figure and kept past the
 * second, so the heap grown between them is that of `size + ops` operations of the same kind: the
 * heap per unit divides by both. Sim RAM is counted on the measured state only.
 */
interface WarmUp {
  /** Operations the throwaway run does. */
  ops: number;
  run(): Promise<void> | void;
}

/** Measure one size: the caller builds the state (not timed), `work` does `size` operations. */
async function measure(
  size: number,
  ram: () => number,
  work: () => Promise<void> | void,
  warm?: WarmUp,
): Promise<ScalePoint> {
  const h0 = heapBytes();
  await settleThreads();
  await warm?.run();
  const r0 = ram();
  const c0 = process.cpuUsage();
  await work();
  const c = process.cpuUsage(c0);
  const dt = (c.user + c.system) / 1000;
  const r1 = ram();
  const h1 = heapBytes();
  return {
    size,
    nsPerOp: (dt * 1e6) / size,
    ramBytesPerUnit: ((r1 - r0) * 4096) / size,
    heapBytesPerUnit: Math.max(0, h1 - h0) / (size + (warm?.ops ?? 0)),
  };
}

const IOVA_BASE = 0x10_0000_0000;

async function pagesPoint(size: number): Promise<ScalePoint> {
  const lab = await bootSmmuV3({ seed: 1 });
  const domain = await ownDomain(lab, V3.engine);
  const data = allocPages(lab, 64 * 4096);
  const mem = lab.machine.memory;
  // Warm the path up in another master's domain, then measure the sized run.
  const warm = await ownDomain(lab, V3.stallEngine);
  await runIn(lab, (async () => {
    for (let i = 0; i < 20_000; i++) await iommuMap(warm, IOVA_BASE + i * 4096, data, 4096, IOMMU_READ | IOMMU_WRITE);
  })(), 'warm-up');
  const mapPages = (d: IommuDomain, first: number, n: number): Promise<void> =>
    runIn(lab, (async () => {
      for (let i = first; i < first + n; i++) await iommuMap(d, IOVA_BASE + i * 4096, data + (i & 63) * 4096, 4096, IOMMU_READ | IOMMU_WRITE);
    })(), 'map pages');
  return measure(size, () => mem.residentFrames, () => mapPages(domain, 0, size), { ops: 512, run: () => mapPages(warm, 20_000, 512) });
}

async function bootEngines(n: number): Promise<{ lab: Awaited<ReturnType<typeof bootSmmuV3>>; cpuNs: number; heap: number }> {
  const tree = smallSmmuV3Tree({ engines: Array.from({ length: n }, (_, i) => ({ sid: 0x1000 + i })) });
  const h0 = heapBytes();
  await settleThreads();
  const c0 = process.cpuUsage();
  const lab = await bootSmmuV3({ seed: 1, tree, smmuPath: SMALL_SMMU_PATH });
  const c = process.cpuUsage(c0);
  return { lab, cpuNs: (c.user + c.system) * 1000, heap: heapBytes() - h0 };
}

/** Per device: what a boot with `size` engines costs beyond a boot with none (the fixed cost). */
async function devicesPoint(size: number): Promise<ScalePoint> {
  await bootEngines(Math.min(size, 10)); // warm-up
  const base = await bootEngines(0);
  const b = await bootEngines(size);
  const last = deviceOf(b.lab, `/dma@${(0x0c00_0000 + (size - 1) * 0x1_0000).toString(16)}`);
  if (!iommuGroupGet(last)) throw new Error('scale devices: the last engine has no IOMMU group');
  return {
    size,
    nsPerOp: Math.max(0, b.cpuNs - base.cpuNs) / size,
    ramBytesPerUnit: ((b.lab.machine.memory.residentFrames - base.lab.machine.memory.residentFrames) * 4096) / size,
    heapBytesPerUnit: Math.max(0, b.heap - base.heap) / size,
  };
}

/** A 2-level stream table (20 SID bits; an L2 table per 256) in RAM of its own. */
function freshStrtab(): { ram: PhysicalMemory; strtab: ArmSmmuStrtab } {
  const ram = new PhysicalMemory();
  ram.addRegion(0x8000_0000, 0x4000_0000);
  let next = 0x8000_0000;
  const alloc = (sz: number, what: string): CoherentBuffer => {
    const allocatedSize = Math.max(4096, 2 ** Math.ceil(Math.log2(sz)));
    const pa = Math.ceil(next / allocatedSize) * allocatedSize;
    next = pa + allocatedSize;
    return { pa, size: sz, allocatedSize, order: Math.log2(allocatedSize / 4096), device: 'scale', what };
  };
  const initialSte = (t: Uint32Array): void => {
    t.fill(0);
    t[0] = 1 | (4 << 1); // V=1, Config=bypass
  };
  const strtab = ArmSmmuStrtab.twoLevel(20, ram, alloc, initialSte, (m) => {
    throw new Error(m);
  });
  return { ram, strtab };
}

/** Dense StreamIDs from 0 (as PCI requester IDs are): an L2 table per 256. */
function initSids(strtab: ArmSmmuStrtab, size: number): void {
  for (let sid = 0; sid < size; sid++) {
    strtab.initSid(sid);
    if ((strtab.readSte(sid)[0] & 1) !== 1) throw new Error(`scale sids: STE ${sid} not valid`);
  }
}

async function sidsPoint(size: number): Promise<ScalePoint> {
  const { ram, strtab } = freshStrtab();
  const spare = freshStrtab().strtab;
  return measure(size, () => ram.residentFrames, () => initSids(strtab, size), { ops: 256, run: () => initSids(spare, 256) });
}

/** `size` paging domains of `dev`, each mapping one page, kept in `into`. */
function allocDomains(lab: SmmuV3Lab, dev: Device, data: number, size: number, into: IommuDomain[]): Promise<void> {
  return runIn(lab, (async () => {
    for (let i = 0; i < size; i++) {
      const d = iommuPagingDomainAlloc(dev);
      await iommuMap(d, IOVA_BASE, data, 4096, IOMMU_READ | IOMMU_WRITE);
      into.push(d);
    }
  })(), 'domains');
}

async function domainsPoint(size: number): Promise<ScalePoint> {
  const lab = await bootSmmuV3({ seed: 1 });
  const dev = deviceOf(lab, V3.engine);
  const data = allocPages(lab, 4096);
  const domains: IommuDomain[] = [];
  // The throwaway run has a machine of its own: in this one its domains would take ASIDs and pages.
  const spare = await bootSmmuV3({ seed: 1 });
  const spareDev = deviceOf(spare, V3.engine);
  const spareData = allocPages(spare, 4096);
  return measure(size, () => lab.machine.memory.residentFrames, () => allocDomains(lab, dev, data, size, domains), {
    ops: 10,
    run: () => allocDomains(spare, spareDev, spareData, 10, []),
  });
}

async function dmaPoint(size: number): Promise<ScalePoint> {
  const lab = await bootSmmuV3({ seed: 1, smmu: { tlbEntries: 16384 } });
  const domain = await ownDomain(lab, V3.engine);
  const data = allocPages(lab, 64 * 4096);
  const pages = 1024;
  await runIn(lab, (async () => {
    for (let i = 0; i < pages; i++) await iommuMap(domain, IOVA_BASE + i * 4096, data + (i & 63) * 4096, 4096, IOMMU_READ | IOMMU_WRITE);
  })(), 'dma mappings');
  const smmu = lab.model;
  const out = new Outcome();
  const sid = 0x101;
  const one = (i: number): void => {
    const addr = IOVA_BASE + ((i * 389) & (pages - 1)) * 4096 + 0x18;
    if (smmu.translateFast(sid, -1, addr, 0) < 0 && !smmu.translator.translate(sid, false, 0, addr, 0, out)) {
      throw new Error(`scale dma: ${out.detail}`);
    }
  };
  for (let i = 0; i < 100_000; i++) one(i);
  // A short run is a millisecond of CPU, where what V8's background threads add is not negligible:
  // the run is repeated on the same machine (the transactions keep counting up) and the best kept.
  let best: ScalePoint | null = null;
  for (let r = 0; r < (size < 1e6 ? 5 : 1); r++) {
    const p = await measure(size, () => lab.machine.memory.residentFrames, () => {
      for (let i = 0; i < size; i++) one(i);
    });
    if (!best || p.nsPerOp < best.nsPerOp) best = p;
  }
  return best!;
}

interface CurveSpec {
  name: string;
  unit: string;
  op: string;
  sizes: number[];
  large: number[];
  point: (size: number) => Promise<ScalePoint>;
}

const CURVES: CurveSpec[] = [
  { name: 'pages', unit: 'mapped 4K page', op: 'iommu_map (4K)', sizes: [1e3, 1e4, 1e5], large: [1e6], point: pagesPoint },
  { name: 'devices', unit: 'device', op: 'boot: probe + attach', sizes: [1, 10, 100], large: [800], point: devicesPoint },
  { name: 'sids', unit: 'StreamID', op: 'init SID (2-level)', sizes: [2 ** 8, 2 ** 12, 2 ** 16], large: [2 ** 20], point: sidsPoint },
  { name: 'domains', unit: 'domain', op: 'alloc + map 1 page', sizes: [1, 10, 100, 1000], large: [], point: domainsPoint },
  { name: 'dma', unit: 'transaction', op: 'translation (TLB hit)', sizes: [1e4, 1e5, 1e6], large: [1e7], point: dmaPoint },
];

/**
 * Spread of a curve: a size-1 point is one operation, within the resolution of the CPU clock (1 µs) and
 * of what V8's background threads add, so the spread is taken over the sizes of at least 10 operations
 * where there are two.
 */
function spreadOf(points: readonly ScalePoint[]): number {
  const big = points.filter((p) => p.size >= 10 && p.nsPerOp > 0);
  const use = big.length >= 2 ? big : points;
  const ns = use.map((p) => p.nsPerOp);
  return Math.max(...ns) / Math.min(...ns);
}

function chart(c: ScaleCurve): string {
  return svgChart(
    {
      title: { text: `${c.name}: ${c.op}`, subtext: `spread ${c.spread.toFixed(2)}x${c.flat ? ' (flat)' : ''}`, left: 'center' },
      legend: { bottom: 0 },
      grid: { left: 70, right: 70, top: 70, bottom: 60 },
      xAxis: { type: 'log', name: c.unit + 's', nameLocation: 'middle', nameGap: 28 },
      yAxis: [
        { type: 'log', name: 'ns / op' },
        { type: 'value', name: 'bytes / unit' },
      ],
      series: [
        { name: 'ns per op', type: 'line', data: c.points.map((p) => [p.size, p.nsPerOp]) },
        { name: 'heap bytes per unit', type: 'line', yAxisIndex: 1, data: c.points.map((p) => [p.size, Math.round(p.heapBytesPerUnit)]) },
        { name: 'sim RAM bytes per unit', type: 'line', yAxisIndex: 1, data: c.points.map((p) => [p.size, Math.round(p.ramBytesPerUnit)]) },
      ],
    },
    { width: 640, height: 340 },
  );
}

/** CPU time a point's runs add up to at least (unless MAX_RUNS comes first). */
const POINT_MIN_CPU_NS = 200e6;
const MAX_RUNS = 60;

/**
 * Run a point at least `runs` times, each from a fresh state, and until its runs add up to
 * POINT_MIN_CPU_NS of CPU time: one run of a short point (a fraction of a millisecond at the small
 * sizes) or one that takes a major GC swings 2-5x with what V8's background threads add, so the
 * median is kept, with the fastest and slowest run beside it.
 */
async function repeatedPoint(point: (size: number) => Promise<ScalePoint>, size: number, runs: number): Promise<ScalePoint> {
  const all: ScalePoint[] = [];
  let cpuNs = 0;
  while (all.length < runs || (cpuNs < POINT_MIN_CPU_NS && all.length < MAX_RUNS)) {
    const p = await point(size);
    all.push(p);
    cpuNs += p.nsPerOp * size;
  }
  all.sort((a, b) => a.nsPerOp - b.nsPerOp);
  const mid = (all.length - 1) >> 1;
  // The heap figure is the median of its own: code the JIT makes or drops between the two heap
  // figures moves one run's by up to ~200 KB, which at a handful of operations is ~20 KB each.
  const heap = all.map((p) => p.heapBytesPerUnit).sort((a, b) => a - b)[mid];
  return { ...all[mid], heapBytesPerUnit: heap, nsPerOpMin: all[0].nsPerOp, nsPerOpMax: all[all.length - 1].nsPerOp };
}

export async function runScale(opts: { large: boolean; only: string | null; out: string; runs: number; log: (l: string) => void }): Promise<ScaleCurve[]> {
  const curves: ScaleCurve[] = [];
  for (const spec of CURVES) {
    if (opts.only !== null && !spec.name.includes(opts.only)) continue;
    const points: ScalePoint[] = [];
    // One discarded run at the smallest size lets the JIT settle on the whole path first.
    opts.log(`scale: ${spec.name} warm-up`);
    await spec.point(spec.sizes[0]);
    for (const size of opts.large ? [...spec.sizes, ...spec.large] : spec.sizes) {
      opts.log(`scale: ${spec.name} at ${size} (${opts.runs} run${opts.runs === 1 ? '' : 's'})`);
      points.push(await repeatedPoint(spec.point, size, opts.runs));
    }
    const spread = spreadOf(points);
    const c: ScaleCurve = { name: spec.name, unit: spec.unit, op: spec.op, points, spread, flat: spread <= 2 };
    if (spec.name === 'pages') {
      // A 4K page needs one 8-byte leaf descriptor; its share of the tables above is 1/512 of that per level.
      c.pageTableBytesPerUnit = 8 * (1 + 1 / 512 + 1 / 512 ** 2);
    }
    curves.push(c);
  }
  mkdirSync(opts.out, { recursive: true });
  writeFileSync(join(opts.out, 'scale.json'), `${JSON.stringify({ machine: machineLine(), curves }, null, 2)}\n`);
  const html = [
    '<!doctype html><meta charset="utf-8"><title>iommu-sim cost curves</title>',
    `<h1>iommu-sim cost curves</h1><p>${machineLine()}</p>`,
    ...curves.map((c) => `<div>${chart(c)}</div>`),
  ].join('\n');
  writeFileSync(join(opts.out, 'scale.html'), `${html}\n`);
  for (const c of curves) writeFileSync(join(opts.out, `scale-${c.name}.svg`), chart(c));
  return curves;
}

export function machineLine(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  return `${cpu}, ${cpus().length} cores, node ${process.version}, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`;
}

export function formatScale(curves: readonly ScaleCurve[]): string {
  const lines = ['curve     size        ns/op (min-max)          heap B/unit   RAM B/unit'];
  for (const c of curves) {
    for (const p of c.points) {
      lines.push(
        `${c.name.padEnd(8)}  ${String(p.size).padStart(8)}  ${p.nsPerOp.toFixed(0).padStart(10)} ${`(${(p.nsPerOpMin ?? p.nsPerOp).toFixed(0)}-${(p.nsPerOpMax ?? p.nsPerOp).toFixed(0)})`.padEnd(17)}  ${p.heapBytesPerUnit.toFixed(1).padStart(12)}  ${p.ramBytesPerUnit.toFixed(1).padStart(11)}`,
      );
    }
    lines.push(`${c.name.padEnd(8)}  spread ${c.spread.toFixed(2)}x ${c.flat ? 'flat' : 'NOT flat'}${c.pageTableBytesPerUnit ? `; page-table bytes per page ${c.pageTableBytesPerUnit.toFixed(2)}` : ''}`);
  }
  return lines.join('\n');
}
