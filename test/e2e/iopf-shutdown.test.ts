import { describe, expect, it } from 'vitest';
import { devFaultParam } from '../../core/io-pgfault.js';
import { iommuAttachDevice } from '../../core/iommu-attach.js';
import { IOMMU_HWPT_ALLOC_PASID, iommuPagingDomainAlloc, iommuPagingDomainAllocFlags } from '../../core/iommu-domain.js';
import { iommuUserFaultQueueForDomain } from '../../core/iommu-fault-legacy.js';
import { iommuAttachDevicePasid } from '../../core/iommu-pasid.js';
import { armSmmuOfMaster } from '../../drivers/arm-smmu/arm-smmu.js';
import { armSmmuDomainContextBank } from '../../drivers/arm-smmu/arm-smmu-domain.js';
import { armSmmuFaultStats } from '../../drivers/arm-smmu/arm-smmu-fault.js';
import { CMDQ_RESUME_0_RESP_ABORT, PRI_RESP_DENY } from '../../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { findTestEngine } from '../../drivers/misc/dma-test-engine.js';
import type { DmaCompletion } from '../../hw/dma.js';
import type { SmmuV2 } from '../../hw/smmu-v2/smmu-v2.js';
import { bootSmmuV3, deviceOf, runIn, settle } from '../../scenarios/smmu-v3-lab.js';
import { accel, enableIopf, readFaultRecords, STALL_ENGINE_V2, STALL_ENGINE_V3, watchResponses } from '../../scenarios/sva-lab.js';

const MMU500 = '/iommu@b000000';

describe('kernel shutdown with page requests nobody answered', () => {
  it('answers every pending group through its driver before the SMMUs go down: no master stays stalled', async () => {
    const lab = await bootSmmuV3({ seed: 5 });
    const k = lab.kernel;
    const v2 = lab.machine.iommus.get(MMU500)?.instance?.mmio[0]?.device as SmmuV2;

    // The PCIe endpoint: PASID 5 on a domain whose fault queue user space never serves.
    const { pdev, ep } = accel(lab);
    await enableIopf(lab, pdev, { iopfOnly: true });
    const priDom = iommuPagingDomainAllocFlags(pdev, IOMMU_HWPT_ALLOC_PASID);
    const priQ = iommuUserFaultQueueForDomain(priDom);
    await runIn(lab, iommuAttachDevicePasid(priDom, pdev, 5), 'attach PASID 5');
    // The stall-capable engine on the SMMUv3, PASID 3, likewise.
    const s3 = deviceOf(lab, STALL_ENGINE_V3);
    await enableIopf(lab, s3, { iopfOnly: true });
    const s3Dom = iommuPagingDomainAllocFlags(s3, IOMMU_HWPT_ALLOC_PASID);
    const s3Q = iommuUserFaultQueueForDomain(s3Dom);
    await runIn(lab, iommuAttachDevicePasid(s3Dom, s3, 3), 'attach PASID 3');
    // The stall-capable engine on the MMU-500 (no PASIDs).
    const s2 = deviceOf(lab, STALL_ENGINE_V2);
    const s2Dom = iommuPagingDomainAlloc(s2);
    await runIn(lab, iommuAttachDevice(s2Dom, s2), 'attach v2');
    await enableIopf(lab, s2, { iopfOnly: true });
    const s2Q = iommuUserFaultQueueForDomain(s2Dom);
    const cb = armSmmuDomainContextBank(s2Dom);

    const watch = watchResponses(lab);
    let priWrite: DmaCompletion | null = null;
    void ep.write(0x4000_0000, Uint8Array.of(1, 2, 3), { ssid: 5 }).then((r) => (priWrite = r));
    const e3 = findTestEngine(k.core, STALL_ENGINE_V3);
    const f3 = e3.start({ op: 'fill', dst: 0x5000_0000, len: 64, byte: 0x33 }, { ssid: 3 });
    const e2 = findTestEngine(k.core, STALL_ENGINE_V2);
    const f2 = e2.start({ op: 'fill', dst: 0x6000_0000, len: 64, byte: 0x22 });
    const done3 = e3.wait(f3);
    const done2 = e2.wait(f2);
    await settle(lab);

    // Each master waits on a group handed to user space.
    expect([readFaultRecords(priQ), readFaultRecords(s3Q), readFaultRecords(s2Q)].map((r) => r.map((x) => [x.type, x.flags, x.pasid, x.addr]))).toEqual([
      [[2, 3, 5, 0x4000_0000]],
      [[2, 3, 3, 0x5000_0000]],
      [[2, 2, 0, 0x6000_0000]],
    ]);
    expect([pdev, s3, s2].map((d) => devFaultParam(d)!.pending.size)).toEqual([1, 1, 1]);
    expect(ep.outstandingPageRequests).toBe(1);
    expect(lab.model.stalls.count).toBe(1);
    expect(v2.stalledCount(cb)).toBe(1);
    const queues = [pdev, s3, s2].map((d) => devFaultParam(d)!.queue!);
    expect(watch.list).toEqual([]);

    const report = await runIn(lab, k.shutdown(), 'shutdown');
    await settle(lab);
    watch.stop();

    // Answered INVALID through each driver while the SMMUs still ran: PRI_RESP deny, RESUME abort,
    // and the MMU-500's RESUME terminate.
    expect(watch.list).toEqual([
      { op: 'PRI_RESP', grpid: 0, ssid: 5, resp: PRI_RESP_DENY },
      { op: 'RESUME', grpid: 0, ssid: 0, resp: CMDQ_RESUME_0_RESP_ABORT },
    ]);
    expect(armSmmuFaultStats(armSmmuOfMaster(s2)!).terminated).toBe(1);
    expect(k.log.entries.some((e) => /shutdown: answered 3 pending page request group\(s\) INVALID/.test(e.message))).toBe(true);
    // No master is stalled: each saw its DMA fail, and every .shutdown (the engines' too) finished.
    expect((priWrite as DmaCompletion | null)?.status).toBe('fault');
    expect(ep.outstandingPageRequests).toBe(0);
    expect(lab.model.stalls.count).toBe(0);
    expect(v2.stalledCount(cb)).toBe(0);
    expect([(await done3).state, (await done2).state]).toEqual(['error', 'error']);
    expect(report.errors).toEqual([]);
    // Clean books: nothing pending, the IOPF queues freed, user space has nothing to answer.
    expect([pdev, s3, s2].map((d) => devFaultParam(d)!.pending.size)).toEqual([0, 0, 0]);
    expect(queues.every((q) => q.isFreed && q.devices.size === 0)).toBe(true);
    expect([priQ, s3Q, s2Q].map((q) => q.pendingGroups)).toEqual([0, 0, 0]);
  });
});
