/**
 * smmu-v3-stale-tlb: why the driver must invalidate. A page is unmapped twice:
 * - behind the driver's back (the PTE cleared straight in the page table, no TLBI): the SMMU still
 *   holds the translation and the device keeps writing into the page it no longer owns;
 * - through the iommu core: the driver queues a TLBI for the range and waits for its CMD_SYNC before
 *   the unmap returns, and the next DMA faults without touching the page.
 */
import { CMDQ_0_OP, CMDQ_OP_CMD_SYNC, CMDQ_OP_TLBI_NH_VA, CMDQ_TLBI_0_ASID, CMDQ_TLBI_1_VA_MASK } from '../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import type { ArmSmmuDomain } from '../drivers/arm-smmu-v3/arm-smmu-v3-domain.js';
import { Checks, type Scenario } from './scenario.js';
import { allocPages, bootSmmuV3, engineJob, fillPhys, mapRange, ownDomain, readPhys, settle, unmapRange, V3 } from './smmu-v3-lab.js';

const SRC_IOVA = 0x1000_0000;
const DST_IOVA = 0x2000_0000;
const ENGINE_SID = 0x101;

export const scenario: Scenario = {
  name: 'smmu-v3-stale-tlb',
  shows: 'a missing TLBI leaves the unmapped page writable by DMA; the driver always invalidates and waits before unmap returns',
  async run(ctx) {
    const lab = await bootSmmuV3({ seed: ctx.seed });
    const c = new Checks();
    const domain = (await ownDomain(lab, V3.engine)) as ArmSmmuDomain;
    const src = allocPages(lab, 4096);
    const dst = allocPages(lab, 4096);
    await mapRange(lab, domain, SRC_IOVA, src, 4096);
    await mapRange(lab, domain, DST_IOVA, dst, 4096);

    // Warm the TLB with a first copy.
    fillPhys(lab, src, 4096, 0x11);
    const first = await engineJob(lab, V3.engine, { op: 'copy', src: SRC_IOVA, dst: DST_IOVA, len: 4096 });
    c.equal('a first copy warms the TLB', first.state, 'done');

    // 1. Unmap behind the driver's back: the PTE goes, the TLB entry stays.
    const cleared = domain.pgtblOps.unmapPages(DST_IOVA, 4096, 1, null);
    c.equal('the PTE is gone from the page table', { cleared, phys: domain.pgtblOps.iovaToPhys(DST_IOVA) }, { cleared: 4096, phys: 0 });
    fillPhys(lab, src, 4096, 0x22);
    const stale = await engineJob(lab, V3.engine, { op: 'copy', src: SRC_IOVA, dst: DST_IOVA, len: 4096 });
    c.equal('without a TLBI the write still succeeds', stale.state, 'done');
    c.ok('and lands in the page that is no longer mapped', readPhys(lab, dst, 4096).every((b) => b === 0x22));
    c.ok('the SMMU still translates the IOVA from its TLB', lab.model.translateFast(ENGINE_SID, -1, DST_IOVA, 1) === dst);

    // 2. Map it again and unmap through the iommu core: the driver invalidates.
    await mapRange(lab, domain, DST_IOVA, dst, 4096);
    const seen: { op: number; asid: number; va: number }[] = [];
    lab.smmu.cmdq.onCommand = (w, off) => {
      const op = CMDQ_0_OP.get(w, off);
      seen.push({ op, asid: op === CMDQ_OP_TLBI_NH_VA ? CMDQ_TLBI_0_ASID.get(w, off) : 0, va: op === CMDQ_OP_TLBI_NH_VA ? CMDQ_TLBI_1_VA_MASK.get(w, off) : 0 });
    };
    const unmapped = await unmapRange(lab, domain, DST_IOVA, 4096);
    lab.smmu.cmdq.onCommand = null;
    const tlbi = seen.findIndex((s) => s.op === CMDQ_OP_TLBI_NH_VA && s.asid === domain.asid && s.va === DST_IOVA);
    c.equal('iommu_unmap unmapped the page', unmapped, 4096);
    c.ok('the driver issued TLBI_NH_VA for the IOVA and the domain ASID', tlbi >= 0, JSON.stringify(seen));
    c.ok('followed by a CMD_SYNC', seen.slice(tlbi + 1).some((s) => s.op === CMDQ_OP_CMD_SYNC));
    c.ok('which the SMMU had consumed when the unmap returned', lab.model.cmdq.q.isEmpty());
    c.ok('the TLB no longer translates the IOVA', lab.model.translateFast(ENGINE_SID, -1, DST_IOVA, 1) === -1);

    fillPhys(lab, dst, 4096, 0);
    fillPhys(lab, src, 4096, 0x33);
    const after = await engineJob(lab, V3.engine, { op: 'copy', src: SRC_IOVA, dst: DST_IOVA, len: 4096 });
    await settle(lab);
    c.equal('the next write faults', { state: after.state, status: after.dmaStatus }, { state: 'error', status: 'fault' });
    c.ok('and leaves the page untouched', readPhys(lab, dst, 4096).every((b) => b === 0));
    c.equal('one F_TRANSLATION for it', lab.smmu.events.map((e) => `${e.name}@0x${e.addr.toString(16)}`), [`F_TRANSLATION@0x${DST_IOVA.toString(16)}`]);
    return c.result({ 'stale write landed': true, 'commands for the unmap': seen.length });
  },
};
