/**
 * smmu-v3-stall: a master that can stall (`dma-can-stall`) faults on a page nobody mapped yet. Its
 * CD has S=1, so the SMMU holds the write and records F_TRANSLATION with Stall=1 and a STAG. The driver
 * hands the stall to the domain's fault handler off the event thread and answers with CMD_RESUME,
 * by the arm-smmu rule: only EAGAIN retries.
 * - the handler maps the page and returns EAGAIN: RESUME with retry, the write completes where the
 *   new mapping points;
 * - the handler only records the fault and returns 0 ("handled"): RESUME with abort; it is called
 *   once, the engine sees the write fail (no retry loop);
 * - the handler refuses: RESUME with abort, the engine sees the write fail;
 * - no handler at all: the driver answers abort at once; nothing stays stalled.
 */
import { iommuSetFaultHandler, type IommuDomain } from '../core/iommu-domain.js';
import { iommuMap } from '../core/iommu-map.js';
import { IOMMU_READ, IOMMU_WRITE } from '../core/io-pgtable.js';
import { armSmmuV3MasterOf } from '../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { CTXDESC_CD_0_S, STRTAB_STE_1_S1STALLD } from '../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { Checks, type Scenario } from './scenario.js';
import { allocPages, bootSmmuV3, deviceOf, engineJob, fillPhys, mapRange, ownDomain, readPhys, settle, V3, type SmmuV3Lab } from './smmu-v3-lab.js';

const SRC_IOVA = 0x1000_0000;
const DST_IOVA = 0x2000_0000;

async function stallingCopy(lab: SmmuV3Lab, domain: IommuDomain, pattern: number): Promise<{ state: string; dma: string }> {
  const src = allocPages(lab, 4096);
  fillPhys(lab, src, 4096, pattern);
  await mapRange(lab, domain, SRC_IOVA + pattern * 0x1000, src, 4096);
  const st = await engineJob(lab, V3.stallEngine, { op: 'copy', src: SRC_IOVA + pattern * 0x1000, dst: DST_IOVA + pattern * 0x1000, len: 4096 });
  await settle(lab);
  return { state: st.state, dma: st.dmaStatus };
}

export const scenario: Scenario = {
  name: 'smmu-v3-stall',
  shows: 'stalled faults go to the fault handler and are answered with CMD_RESUME: retry only on EAGAIN (after mapping); handled (0) or refused aborts',
  async run(ctx) {
    const lab = await bootSmmuV3({ seed: ctx.seed });
    const c = new Checks();
    const domain = await ownDomain(lab, V3.stallEngine);
    const master = armSmmuV3MasterOf(deviceOf(lab, V3.stallEngine))!;
    c.ok('the master is stall-capable', master.stallEnabled);
    c.ok('its CD has S = 1', CTXDESC_CD_0_S.isSet(master.cdTable!.readCd(0)));
    c.ok('its STE allows stalls (S1STALLD = 0)', !STRTAB_STE_1_S1STALLD.isSet(lab.smmu.strtab.readSte(master.streams[0]!)));

    // 1. A handler that maps the faulting page and retries.
    const dst = allocPages(lab, 4096);
    let mode: 'map' | 'report' | 'refuse' = 'map';
    const handled: number[] = [];
    iommuSetFaultHandler(domain, async (d, _dev, iova) => {
      handled.push(iova);
      if (mode === 'report') return 0;
      if (mode === 'refuse') return 'EFAULT';
      await iommuMap(d, iova - (iova % 4096), dst, 4096, IOMMU_READ | IOMMU_WRITE);
      return 'EAGAIN';
    });
    const retry = await stallingCopy(lab, domain, 0x41);
    const stallEvent = lab.smmu.events.find((e) => e.stall);
    c.equal('retry: the copy completes', retry, { state: 'done', dma: 'ok' });
    c.ok('retry: the bytes land in the page the handler mapped', readPhys(lab, dst, 4096).every((b) => b === 0x41));
    c.ok('retry: the event was F_TRANSLATION with Stall = 1', stallEvent?.name === 'F_TRANSLATION' && stallEvent.stall, JSON.stringify(stallEvent));
    c.equal('retry: the handler saw the IOVA', handled, [DST_IOVA + 0x41 * 0x1000]);
    c.equal('retry: one RESUME (retry)', { retry: lab.smmu.eventStats.resumeRetry, abort: lab.smmu.eventStats.resumeAbort }, { retry: 1, abort: 0 });
    c.equal('retry: the SMMU replayed the transaction', lab.model.stats.resumed, 1);

    // 2. A handler that only records the fault ("handled"): called once, the transaction terminated.
    mode = 'report';
    handled.length = 0;
    const stallsBefore = lab.model.stats.stalled;
    const reported = await stallingCopy(lab, domain, 0x44);
    c.equal('report only: the write fails', reported, { state: 'error', dma: 'abort' });
    c.equal('report only: the handler was called once', handled, [DST_IOVA + 0x44 * 0x1000]);
    c.equal('report only: one stall, one RESUME (abort), no retry', { stalls: lab.model.stats.stalled - stallsBefore, retry: lab.smmu.eventStats.resumeRetry, abort: lab.smmu.eventStats.resumeAbort }, { stalls: 1, retry: 1, abort: 1 });

    // 3. A handler that refuses.
    mode = 'refuse';
    const refused = await stallingCopy(lab, domain, 0x42);
    c.equal('abort: the write fails', refused, { state: 'error', dma: 'abort' });
    c.equal('abort: one RESUME (abort)', lab.smmu.eventStats.resumeAbort, 2);

    // 4. No handler: the driver answers at once.
    domain.cookie = { type: 'none' };
    const nobody = await stallingCopy(lab, domain, 0x43);
    c.equal('no handler: the write fails', nobody, { state: 'error', dma: 'abort' });
    c.equal('no handler: aborted by the driver', lab.smmu.eventStats.resumeAbort, 3);
    c.equal('nothing is left stalled', lab.model.stalls.count, 0);
    return c.result({ stalls: lab.model.stats.stalled, 'RESUME retry': lab.smmu.eventStats.resumeRetry, 'RESUME abort': lab.smmu.eventStats.resumeAbort });
  },
};
