/**
 * I/O page-fault and SVA benchmarks, end to end on the virt machine with the arm-smmu-v3 driver:
 * - iopf.pri_roundtrip: the PCIe accelerator, bound to a process for SVA, writes into untouched pages
 *   of the process (32 at a time, its PRI capacity): ATS translation, page request, PRI queue and
 *   thread, IOPF queue, the SVA handler faulting the page in through the mm, PRI_RESP, translation
 *   again, the write. Faults resolved per second (the mapping is replaced between rounds, untimed).
 * - iopf.stall_roundtrip: the stall-capable engine, bound to a process, fills untouched pages through
 *   its SubstreamID from 8 DMA frames at once: stall, event queue and thread, IOPF queue, SVA handler,
 *   CMD_RESUME retry, the write replayed. Faults resolved per second.
 * - sva.bind_unbind: iommu_sva_bind_device + iommu_sva_unbind_device of a live mm on the accelerator
 *   (SVA domain allocation, CD install with its CFGI_CD + CMD_SYNC, CD clear, ASID invalidation, domain
 *   free), pairs per second.
 * Wall time is read around the timed part only (the harness's rule: it measures the program).
 */
import { performance } from 'node:perf_hooks';
import { iommuSvaBindDevice, iommuSvaUnbindDevice, type IommuSva } from '../core/iommu-sva.js';
import type { Mm } from '../mm/mm.js';
import { PROT_READ, PROT_WRITE } from '../mm/prot.js';
import { bootSmmuV3, deviceOf, engineOf, runIn, type SmmuV3Lab } from '../scenarios/smmu-v3-lab.js';
import { accel, bindNewProcess, enableIopf, PAGE, STALL_ENGINE_V3 } from '../scenarios/sva-lab.js';
import type { Bench } from './harness.js';

const MIN_MS = 500;
const WARM_MS = 1000;
/** DMA frames of the engine filling at once in the stall bench. */
const STALL_FRAMES = 8;

/**
 * Repeat rounds of `timed(n)` (n faults each), each after an untimed `prepare(n)`: WARM_MS of rounds to
 * let the JIT settle, then rounds until MIN_MS of timed wall time; faults per second.
 */
async function faultRate(prepare: (n: number) => Promise<void>, timed: (n: number) => Promise<void>, n: number): Promise<number> {
  const warmEnd = performance.now() + WARM_MS;
  while (performance.now() < warmEnd) {
    await prepare(n);
    await timed(n);
  }
  let spent = 0;
  let faults = 0;
  while (spent < MIN_MS) {
    await prepare(n);
    const t0 = performance.now();
    await timed(n);
    spent += performance.now() - t0;
    faults += n;
  }
  return faults / (spent / 1000);
}

/** A fresh untouched mapping of `n` pages in place of the previous one. */
async function remap(lab: SmmuV3Lab, mm: Mm, prev: number | null, n: number): Promise<number> {
  if (prev !== null) await runIn(lab, mm.munmap(prev, n * PAGE), 'munmap');
  return mm.mmap(n * PAGE, PROT_READ | PROT_WRITE);
}

async function priRoundtrip(): Promise<number> {
  const lab = await bootSmmuV3({ seed: 1 });
  const { pdev, ep } = accel(lab);
  const { mm, bond } = await bindNewProcess(lab, pdev);
  const byte = Uint8Array.of(0x5a);
  let buf: number | null = null;
  const before = ep.atsStats.pageRequests;
  let expected = 0;
  const rate = await faultRate(
    async (n) => {
      buf = await remap(lab, mm, buf, n);
    },
    async (n) => {
      const writes: Promise<unknown>[] = [];
      for (let i = 0; i < n; i++) writes.push(ep.write(buf! + i * PAGE, byte, { ssid: bond.pasid }));
      const done = (await runIn(lab, Promise.all(writes), 'faulting writes')) as { status: string }[];
      for (const d of done) if (d.status !== 'ok') throw new Error(`iopf.pri_roundtrip: a write failed: ${JSON.stringify(d)}`);
      expected += n;
    },
    32,
  );
  if (ep.atsStats.pageRequests - before !== expected) throw new Error(`iopf.pri_roundtrip: ${ep.atsStats.pageRequests - before} page requests for ${expected} faults`);
  return rate;
}

async function stallRoundtrip(): Promise<number> {
  const lab = await bootSmmuV3({ seed: 1 });
  const { mm, bond } = await bindNewProcess(lab, deviceOf(lab, STALL_ENGINE_V3));
  const engine = engineOf(lab, STALL_ENGINE_V3);
  let buf: number | null = null;
  const before = lab.model.stats.stalled;
  let expected = 0;
  const rate = await faultRate(
    async (n) => {
      buf = await remap(lab, mm, buf, n);
    },
    async (n) => {
      // Every DMA frame of the engine fills its own part: several stalls in flight at once.
      const per = n / STALL_FRAMES;
      const fills: Promise<{ state: string }>[] = [];
      for (let f = 0; f < STALL_FRAMES; f++) fills.push(engine.run({ op: 'fill', dst: buf! + f * per * PAGE, len: per * PAGE, byte: 0xa5 }, { ssid: bond.pasid }));
      const done = await runIn(lab, Promise.all(fills), 'faulting fills');
      for (const st of done) if (st.state !== 'done') throw new Error(`iopf.stall_roundtrip: a fill failed: ${JSON.stringify(st)}`);
      expected += n;
    },
    STALL_FRAMES * 8,
  );
  if (lab.model.stats.stalled - before !== expected) throw new Error(`iopf.stall_roundtrip: ${lab.model.stats.stalled - before} stalls for ${expected} faults`);
  return rate;
}

async function bindUnbind(): Promise<number> {
  const lab = await bootSmmuV3({ seed: 1 });
  const { pdev } = accel(lab);
  await enableIopf(lab, pdev);
  const mm = lab.kernel.processes.spawn().mm;
  const pair = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const bond: IommuSva = await iommuSvaBindDevice(pdev, mm);
      await iommuSvaUnbindDevice(bond);
    }
  };
  const warmEnd = performance.now() + WARM_MS;
  while (performance.now() < warmEnd) await runIn(lab, pair(10), 'warm-up');
  let n = 10;
  for (;;) {
    const t0 = performance.now();
    await runIn(lab, pair(n), 'bind/unbind');
    const dt = performance.now() - t0;
    if (dt >= MIN_MS) return n / (dt / 1000);
    n = dt < 1 ? n * 10 : Math.ceil((n * MIN_MS * 1.2) / dt);
  }
}

export const benches: readonly Bench[] = [
  { name: 'iopf.pri_roundtrip', unit: 'faults/s', run: priRoundtrip },
  { name: 'iopf.stall_roundtrip', unit: 'faults/s', run: stallRoundtrip },
  { name: 'sva.bind_unbind', unit: 'pairs/s', run: bindUnbind },
];
