/**
 * smmu-v3-walk-cache: the classic walk-cache bug. When an unmap takes a whole level 3 table away,
 * io-pgtable clears the level 2 descriptor and frees the table page, flushing the range first with
 * tlb_flush_walk(): a TLBI with Leaf = 0, because the SMMU may cache the level 2 descriptor (its walk
 * cache) and not only the leaves. A port that flushes with Leaf = 1 there invalidates the leaves and
 * leaves the cached walk pointing into the freed page. When the page allocator hands that page out
 * again as another range's level 3 table, the device's next access to the old IOVA walks through it
 * and lands in memory the IOVA was never mapped to.
 *
 * Three runs of the same sequence: the driver as it is (Leaf = 0: the access faults), the buggy port
 * (Leaf = 1: the access reads the other range's page), and the buggy port on an SMMU built without a
 * walk cache (the bug hides: why a model without walk caches passes such a port).
 */
import { iommuMap, iommuUnmap } from '../core/iommu-map.js';
import { IOMMU_READ, IOMMU_WRITE, type IommuFlushOps } from '../core/io-pgtable.js';
import { type ArmSmmuDomain, armSmmuTlbInvRangeDomainNowait } from '../drivers/arm-smmu-v3/arm-smmu-v3-domain.js';
import { CMDQ_0_OP, CMDQ_OP_TLBI_NH_VA, CMDQ_TLBI_1_LEAF } from '../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { Checks, type Scenario } from './scenario.js';
import { allocPages, bootSmmuV3, engineJob, fillPhys, mapRange, ownDomain, readPhys, runIn, settle, V3 } from './smmu-v3-lab.js';

const SZ_2M = 0x20_0000;
/** The IOVA whose table is freed, and another range at the same offset in its own 2 MiB. */
const OLD_IOVA = 0x1000_0000;
const OTHER_IOVA = 0x3000_0000;
const DST_IOVA = 0x5000_0000;

interface Run {
  /** What the device's read of OLD_IOVA did after the unmap. */
  state: string;
  dma: string;
  /** The bytes it copied out, if it completed (0x5e: the other range's page). */
  copied: number | null;
  /** Leaf flag of the TLBI_NH_VA commands issued by the 2 MiB unmap. */
  unmapLeaf: boolean[];
  faults: string[];
}

async function run(seed: number, opts: { leafOnlyWalkFlush: boolean; walkCache: boolean }): Promise<Run> {
  const lab = await bootSmmuV3({ seed, smmu: { walkCache: opts.walkCache } });
  const domain = (await ownDomain(lab, V3.engine)) as ArmSmmuDomain;
  if (opts.leafOnlyWalkFlush) {
    // The bug under study: a port whose tlb_flush_walk() invalidates leaves only.
    const tlb = (domain.pgtblOps as unknown as { tlb: IommuFlushOps }).tlb;
    tlb.tlbFlushWalk = (iova, size, granule) => armSmmuTlbInvRangeDomainNowait(iova, size, granule, true, domain);
  }
  const mine = allocPages(lab, 4096);
  const theirs = allocPages(lab, 4096);
  const dst = allocPages(lab, 4096);
  fillPhys(lab, mine, 4096, 0x11);
  fillPhys(lab, theirs, 4096, 0x5e);
  await mapRange(lab, domain, OLD_IOVA, mine, 4096);
  await mapRange(lab, domain, DST_IOVA, dst, 4096);
  // The device uses OLD_IOVA: its walk (level 0-2 table descriptors) is now cached.
  await engineJob(lab, V3.engine, { op: 'copy', src: OLD_IOVA, dst: DST_IOVA, len: 64 });

  // Unmapping the whole 2 MiB frees the level 3 table; then another range gets a table: the same page.
  const unmapLeaf: boolean[] = [];
  lab.smmu.cmdq.onCommand = (w, off) => {
    if (CMDQ_0_OP.get(w, off) === CMDQ_OP_TLBI_NH_VA) unmapLeaf.push(CMDQ_TLBI_1_LEAF.isSet(w, off));
  };
  await runIn(lab, iommuUnmap(domain, OLD_IOVA, SZ_2M), 'unmap');
  lab.smmu.cmdq.onCommand = null;
  await runIn(lab, iommuMap(domain, OTHER_IOVA, theirs, 4096, IOMMU_READ | IOMMU_WRITE), 'map');

  fillPhys(lab, dst, 4096, 0);
  const before = lab.smmu.events.length;
  const st = await engineJob(lab, V3.engine, { op: 'copy', src: OLD_IOVA, dst: DST_IOVA, len: 64 });
  await settle(lab);
  return {
    state: st.state,
    dma: st.dmaStatus,
    copied: st.state === 'done' ? readPhys(lab, dst, 1)[0]! : null,
    unmapLeaf,
    faults: lab.smmu.events.slice(before).map((e) => `${e.name}@0x${e.addr.toString(16)}`),
  };
}

export const scenario: Scenario = {
  name: 'smmu-v3-walk-cache',
  shows: 'freeing a page table with a leaf-only TLBI leaves a cached walk into the freed page; the next access lands in whatever reuses it',
  async run(ctx) {
    const c = new Checks();
    const fixed = await run(ctx.seed, { leafOnlyWalkFlush: false, walkCache: true });
    // The walk flush comes first (before the table is freed); the gathered leaf flush follows.
    c.ok('the driver flushes the freed table with Leaf = 0 before freeing it', fixed.unmapLeaf[0] === false, JSON.stringify(fixed.unmapLeaf));
    c.equal('after the unmap the old IOVA faults', { state: fixed.state, dma: fixed.dma }, { state: 'error', dma: 'fault' });
    c.equal('one F_TRANSLATION for it', fixed.faults, [`F_TRANSLATION@0x${OLD_IOVA.toString(16)}`]);

    const buggy = await run(ctx.seed, { leafOnlyWalkFlush: true, walkCache: true });
    c.ok('the buggy port flushes with Leaf = 1', buggy.unmapLeaf.length > 0 && buggy.unmapLeaf.every((l) => l), JSON.stringify(buggy.unmapLeaf));
    c.equal('the unmapped IOVA still translates: the copy completes', { state: buggy.state, dma: buggy.dma }, { state: 'done', dma: 'ok' });
    c.equal("and it read the other range's page (0x5e), never mapped at that IOVA", buggy.copied, 0x5e);
    c.equal('no fault is recorded', buggy.faults, []);

    const hidden = await run(ctx.seed, { leafOnlyWalkFlush: true, walkCache: false });
    c.equal('without a walk cache in the model the bug is invisible: the access faults', { state: hidden.state, dma: hidden.dma }, { state: 'error', dma: 'fault' });

    return c.result({
      'stale walk reached the reused table': buggy.copied === 0x5e,
      'fixed driver faults': fixed.state === 'error',
      'hidden without walk cache': hidden.state === 'error',
    });
  },
};
