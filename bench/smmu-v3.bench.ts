/**
 * SMMUv3 benchmarks with the arm-smmu-v3 driver in charge: a kernel booted on the virt machine, the
 * DMA test engine at StreamID 0x101 given an UNMANAGED stage 1 domain through the iommu core, every
 * STE, CD, page table and command written by the driver.
 * - v3.translate_hit: TLB-hit translations (1024 pages resident, visited in a scrambled order),
 *   transactions/s;
 * - v3.translate_walk: cold translations on an SMMU built with a 16-entry TLB, 4096 pages mapped by
 *   the driver and visited in a scrambled order, so nearly every access walks the driver's tables;
 * - v3.map_unmap_strict: iommu_map + iommu_unmap of a 4 KiB page through core + driver + command
 *   queue by a single kernel thread, each unmap waiting for its TLBI's CMD_SYNC in virtual time: every
 *   pair pays the SMMU's command step and the CMD_SYNC completion interrupt alone, pairs/s;
 * - v3.map_unmap_strict_8t: the same by 8 kernel threads at once (each on its own page of the domain:
 *   what the lock-free command queue is built for), pairs/s;
 * - v3.cmdq_tlbi: CMD_TLBI_NH_VA commands through the driver's command queue in batches of 64 with a
 *   CMD_SYNC each (arm_smmu_cmdq_batch_add / _submit), waited for in virtual time, commands/s.
 */
import { iommuMap, iommuUnmap } from '../core/iommu-map.js';
import { IOMMU_READ, IOMMU_WRITE } from '../core/io-pgtable.js';
import { ArmSmmuCmdqBatch, tlbiEnt, type ArmSmmuCmdqEnt } from '../drivers/arm-smmu-v3/arm-smmu-v3-cmdq.js';
import type { ArmSmmuDomain } from '../drivers/arm-smmu-v3/arm-smmu-v3-domain.js';
import { CMDQ_OP_TLBI_NH_VA } from '../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { Outcome } from '../hw/smmu-v3/outcome.js';
import { allocPages, bootSmmuV3, ownDomain, runIn, V3, type SmmuV3Lab } from '../scenarios/smmu-v3-lab.js';
import { throughput, throughputAsync, type Bench } from './harness.js';

const SID = 0x101;
const IOVA_BASE = 0x10_0000_0000;

/** A permutation of 0..n-1 that scatters consecutive indexes (n a power of two). */
function scramble(n: number): Uint32Array {
  const out = new Uint32Array(n);
  const seen = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    let v = (Math.imul(i, 0x9e37_79b1) >>> 0) % n;
    while (seen[v]) v = (v + 1) % n;
    seen[v] = 1;
    out[i] = v;
  }
  return out;
}

/** Boot, give the engine a domain, map `pages` 4K pages from IOVA_BASE onto 64 pages of RAM. */
async function setup(pages: number, tlbEntries: number): Promise<{ lab: SmmuV3Lab; domain: ArmSmmuDomain }> {
  const lab = await bootSmmuV3({ seed: 1, smmu: { tlbEntries } });
  const domain = (await ownDomain(lab, V3.engine)) as ArmSmmuDomain;
  const data = allocPages(lab, 64 * 4096);
  await runIn(
    lab,
    (async () => {
      for (let i = 0; i < pages; i++) await iommuMap(domain, IOVA_BASE + i * 4096, data + (i % 64) * 4096, 4096, IOMMU_READ | IOMMU_WRITE);
    })(),
    'bench mappings',
  );
  return { lab, domain };
}

async function translateHit(): Promise<number> {
  const pages = 1024;
  const { lab } = await setup(pages, 16384);
  const smmu = lab.model;
  const order = scramble(pages);
  // Fill the TLB through the slow path once.
  const out = new Outcome();
  for (let i = 0; i < pages; i++) {
    if (!smmu.translator.translate(SID, false, 0, IOVA_BASE + i * 4096, 0, out)) throw new Error(`v3.translate_hit: ${out.detail}`);
  }
  let sink = 0;
  const rate = throughput((n) => {
    for (let i = 0; i < n; i++) {
      const pa = smmu.translateFast(SID, -1, IOVA_BASE + order[i & (pages - 1)] * 4096 + 0x18, 0);
      if (pa < 0) throw new Error('v3.translate_hit: unexpected TLB miss');
      sink += pa & 1;
    }
  });
  if (sink < 0) throw new Error('unreachable');
  return rate;
}

async function translateWalk(): Promise<number> {
  const pages = 4096;
  const { lab } = await setup(pages, 16);
  const tr = lab.model.translator;
  const order = scramble(pages);
  const out = new Outcome();
  const walksBefore = tr.stats.walks;
  let calls = 0;
  const rate = throughput((n) => {
    for (let i = 0; i < n; i++) {
      const addr = IOVA_BASE + order[i & (pages - 1)] * 4096;
      if (lab.model.translateFast(SID, -1, addr, 0) < 0 && !tr.translate(SID, false, 0, addr, 0, out)) throw new Error(`v3.translate_walk: ${out.detail}`);
    }
    calls += n;
  });
  if (tr.stats.walks - walksBefore < calls * 0.9) throw new Error('v3.translate_walk: translations were not cold');
  return rate;
}

async function mapUnmapStrict(threads: number): Promise<number> {
  const { lab, domain } = await setup(0, 16384);
  const pa = allocPages(lab, 4096);
  const timeoutsBefore = lab.smmu.cmdq.stats.syncTimeouts;
  const thread = async (t: number, n: number): Promise<void> => {
    const iova = IOVA_BASE + 0x100_0000 + t * 4096;
    for (let i = 0; i < n; i++) {
      await iommuMap(domain, iova, pa, 4096, IOMMU_READ | IOMMU_WRITE);
      if ((await iommuUnmap(domain, iova, 4096)) !== 4096) throw new Error('v3.map_unmap_strict: unmap failed');
    }
  };
  const pairs = (n: number): Promise<void> => {
    const per = Math.ceil(n / threads);
    return runIn(lab, Promise.all(Array.from({ length: threads }, (_, t) => thread(t, per))).then(() => undefined), 'map/unmap pairs');
  };
  await pairs(5_000);
  const rate = await throughputAsync(pairs);
  if (lab.smmu.cmdq.stats.syncTimeouts !== timeoutsBefore) throw new Error('v3.map_unmap_strict: a CMD_SYNC timed out');
  return rate;
}

async function cmdqTlbi(): Promise<number> {
  const { lab, domain } = await setup(64, 16384);
  const batchSize = 64;
  const batch = new ArmSmmuCmdqBatch(lab.smmu.cmdq, lab.smmu);
  const ent: ArmSmmuCmdqEnt = { opcode: CMDQ_OP_TLBI_NH_VA, tlbi: { ...tlbiEnt(), asid: domain.asid, leaf: true } };
  const writtenBefore = lab.smmu.cmdq.stats.commands;
  let batches = 0;
  const run = (n: number): Promise<void> =>
    runIn(
      lab,
      (async () => {
        for (let b = 0; b < n; b++) {
          batch.init();
          for (let i = 0; i < batchSize; i++) {
            ent.tlbi!.addr = IOVA_BASE + i * 4096;
            batch.add(ent);
          }
          if ((await batch.submit()) !== 0) throw new Error('v3.cmdq_tlbi: CMD_SYNC failed');
        }
        batches += n;
      })(),
      'TLBI batches',
    );
  await run(500);
  const rate = await throughputAsync(run, batchSize);
  if (lab.smmu.cmdq.stats.commands - writtenBefore !== batches * (batchSize + 1)) throw new Error('v3.cmdq_tlbi: not every batch went to the queue');
  // Each batch's CMD_SYNC completed, so the SMMU consumed everything the driver wrote.
  if (lab.model.cmdq.stats.total !== lab.smmu.cmdq.stats.commands) throw new Error('v3.cmdq_tlbi: commands were not all consumed');
  return rate;
}

export const benches: Bench[] = [
  { name: 'v3.translate_hit', unit: 'transactions/s', run: translateHit },
  { name: 'v3.translate_walk', unit: 'transactions/s', run: translateWalk },
  { name: 'v3.map_unmap_strict', unit: 'pairs/s', run: () => mapUnmapStrict(1) },
  { name: 'v3.map_unmap_strict_8t', unit: 'pairs/s', run: () => mapUnmapStrict(8) },
  { name: 'v3.cmdq_tlbi', unit: 'commands/s', run: cmdqTlbi },
];
