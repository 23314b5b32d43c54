import { describe, expect, it } from 'vitest';
import { iommuUserFaultQueueOpen } from '../../core/iommu-fault-legacy.js';
import { IOMMU_FAULT_PERM_WRITE, IOMMU_FAULT_REASON_PTE_FETCH, IOMMU_FAULT_UNRECOV_ADDR_VALID } from '../../core/iommu-fault-types.js';
import { bootSmmuV3, engineJob, ownDomain, settle, V3 } from '../../scenarios/smmu-v3-lab.js';
import { readFaultRecords } from '../../scenarios/sva-lab.js';

describe('unrecoverable faults reach the device fault handler (the dump-the-device use)', () => {
  it('delivers a terminated SMMUv3 translation fault of a non-stalling master as a DMA_UNRECOV record', async () => {
    const lab = await bootSmmuV3({ seed: 3 });
    await ownDomain(lab, V3.engine);
    const dev = lab.kernel.core.findDevice(V3.engine)!;
    const q = iommuUserFaultQueueOpen(dev);
    const st = await engineJob(lab, V3.engine, { op: 'fill', dst: 0x3000_0000, len: 64, byte: 0x42 });
    await settle(lab);
    expect(st.state).toBe('error');
    const recs = readFaultRecords(q);
    expect(recs).toHaveLength(1);
    const r = recs[0];
    // type 1 (DMA_UNRECOV): reason @16, flags @20, pasid @24, perm @28, addr @32 (the event layout,
    // read here through the page-request field names at the same offsets).
    expect({ type: r.type, reason: r.flags, flags: r.pasid, pasid: r.grpid, perm: r.perm, addr: r.addr }).toEqual({
      type: 1,
      reason: IOMMU_FAULT_REASON_PTE_FETCH,
      flags: IOMMU_FAULT_UNRECOV_ADDR_VALID,
      pasid: 0,
      perm: IOMMU_FAULT_PERM_WRITE,
      addr: 0x3000_0000,
    });
    // Nothing to answer: the queue closes.
    expect(q.pendingGroups).toBe(0);
    q.close();
  });
});
