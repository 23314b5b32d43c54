/**
 * iopf-fault-records: the user-facing fault records of the 2019 page-response thread, VFIO style, on
 * the PCIe accelerator. A PASID of the endpoint is attached to an UNMANAGED domain a VMM manages (no
 * in-kernel fault handler), so its page requests reach the device's fault handler: a fault queue with
 * host tokens. The VMM reads byte records whose private data is a host sequence token (the hardware's
 * context never reaches the guest), maps a page and answers with the token; the kernel maps the token
 * back to the exact pending request and the driver sends PRI_RESP.
 *
 * Also: a spurious response is rejected; a late duplicate and a stale token are rejected even when
 * the device has reused the group index for a newer request, which stays pending; the fault handler
 * cannot be unregistered (EBUSY) while a request it was given is unanswered; removing the device
 * answers its pending requests (Invalid), so the endpoint does not wait forever.
 */
import { isKernelError } from '../bus/errno.js';
import { IOMMU_HWPT_ALLOC_PASID, iommuPagingDomainAllocFlags } from '../core/iommu-domain.js';
import {
  IOMMU_FAULT_QUEUE_FEAT_PRIV_DATA,
  IOMMU_FAULT_QUEUE_INFO_HOST_TOKENS,
  iommuUnregisterDeviceFaultHandler,
  iommuUserFaultQueueOpen,
  type IommuUserFaultQueue,
} from '../core/iommu-fault-legacy.js';
import { iommuMap } from '../core/iommu-map.js';
import { devFaultParam } from '../core/io-pgfault.js';
import { IOMMU_READ, IOMMU_WRITE } from '../core/io-pgtable.js';
import { iommuAttachDevicePasid } from '../core/iommu-pasid.js';
import { PRI_RESP_DENY, PRI_RESP_SUCC } from '../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import type { DmaCompletion } from '../hw/dma.js';
import { Checks, type Scenario } from './scenario.js';
import { allocPages, bootSmmuV3, readPhys, runIn, settle } from './smmu-v3-lab.js';
import { accel, ACCEL, enableIopf, PAGE, pageResponseRecord, readFaultRecords, REC_PRIV_DATA, serveFaultQueue, watchResponses, type UserFaultRecord } from './sva-lab.js';

const PASID = 5;
const IOVA = 0x4000_0000;

/** The errno a call fails with, or 'ok'. */
function outcome(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    return isKernelError(e) ? e.errno : String(e);
  }
}

function respond(q: IommuUserFaultQueue, rec: UserFaultRecord, token = rec.privateData[0]): string {
  return outcome(() => q.write(pageResponseRecord({ grpid: rec.grpid, pasid: rec.pasid, code: 0, privateData: [token, 0n] })));
}

export const scenario: Scenario = {
  name: 'iopf-fault-records',
  shows: 'VFIO-style fault records with host tokens: responses map back exactly; spurious, stale and late answers are refused; removal drains',
  async run(ctx) {
    const lab = await bootSmmuV3({ seed: ctx.seed });
    const c = new Checks();
    const { pdev, ep } = accel(lab);
    await enableIopf(lab, pdev, { iopfOnly: true });
    const domain = iommuPagingDomainAllocFlags(pdev, IOMMU_HWPT_ALLOC_PASID);
    await runIn(lab, iommuAttachDevicePasid(domain, pdev, PASID), 'attach PASID');
    const q = iommuUserFaultQueueOpen(pdev, { hostTokens: true });
    c.ok('the kernel offers host tokens', (q.info().flags & IOMMU_FAULT_QUEUE_INFO_HOST_TOKENS) !== 0);
    q.setFeatures(IOMMU_FAULT_QUEUE_FEAT_PRIV_DATA);
    const watch = watchResponses(lab);
    const pages: number[] = [];
    const mapPage = async (iova: number): Promise<number> => {
      const pa = allocPages(lab, PAGE);
      pages.push(pa);
      await iommuMap(domain, iova - (iova % PAGE), pa, PAGE, IOMMU_READ | IOMMU_WRITE);
      return pa;
    };

    // 1. Served: the VMM maps a page and answers with the token.
    const vmm = serveFaultQueue(q, async (rec) => {
      await mapPage(rec.addr);
      return 0;
    });
    const data = Uint8Array.from({ length: 256 }, (_, i) => 255 - i);
    const w1 = await runIn(lab, ep.write(IOVA + 0x80, data, { ssid: PASID }), 'write 1');
    await settle(lab);
    c.equal('the write completes', w1.status, 'ok');
    c.ok('its bytes are in the page the VMM mapped', readPhys(lab, pages[0] + 0x80, 256).every((b, i) => b === data[i]));
    const rec1 = vmm.seen[0];
    c.ok('the record carries the PASID and a host token as private data', rec1 !== undefined && rec1.pasid === PASID && (rec1.flags & REC_PRIV_DATA) !== 0 && rec1.privateData[0] !== 0n && rec1.privateData[1] === 0n);
    c.equal('one PRI_RESP Success for it', watch.list, [{ op: 'PRI_RESP', grpid: rec1?.grpid ?? -1, ssid: PASID, resp: PRI_RESP_SUCC }]);

    // 2. By hand: spurious, EBUSY while pending, then the right answer, then a late duplicate.
    q.onFault = null;
    let w2: DmaCompletion | null = null;
    void ep.write(IOVA + PAGE, Uint8Array.of(7), { ssid: PASID }).then((r) => (w2 = r));
    await settle(lab);
    const [rec2] = readFaultRecords(q);
    c.ok('a second request is queued for user space', rec2 !== undefined && rec2.addr === IOVA + PAGE);
    if (!rec2) return c.result({});
    c.equal('a spurious response (no such group) is refused', outcome(() => q.write(pageResponseRecord({ grpid: (rec2.grpid + 7) % 512, pasid: PASID, code: 0, privateData: [rec2.privateData[0], 0n] }))), 'EINVAL');
    c.equal('the fault handler cannot go while a request is unanswered', outcome(() => iommuUnregisterDeviceFaultHandler(pdev)), 'EBUSY');
    c.equal('nor can the queue close', outcome(() => q.close()), 'EBUSY');
    c.equal('the endpoint still waits', ep.outstandingPageRequests, 1);
    await mapPage(IOVA + PAGE);
    c.equal('the answer with its token is taken', respond(q, rec2), 'ok');
    await settle(lab);
    c.equal('and the write completes', (w2 as DmaCompletion | null)?.status, 'ok');
    c.equal('a late duplicate of it is refused', respond(q, rec2), 'EINVAL');

    // 3. The device reuses the group index: the old token must not complete the new request.
    const reused = rec2.grpid;
    const before = watch.list.length;
    lab.model.pageRequest({ master: ep.name, streamId: ACCEL.sid, ssid: PASID, ssidValid: true, addr: IOVA + 2 * PAGE, read: true, write: false, exec: false, priv: false, prgIndex: reused, last: true });
    await settle(lab);
    const [rec3] = readFaultRecords(q);
    c.ok('the new request has the same group index and a new token', rec3 !== undefined && rec3.grpid === reused && rec3.privateData[0] !== rec2.privateData[0]);
    if (!rec3) return c.result({});
    c.equal('the stale token is refused', respond(q, rec3, rec2.privateData[0]), 'EINVAL');
    c.equal('the new request stays pending', devFaultParam(pdev)!.pending.size, 1);
    c.equal('nothing was sent for it', watch.list.length, before);
    c.equal('its own token answers it', respond(q, rec3), 'ok');
    c.equal('with one PRI_RESP Success for the reused index', watch.list.slice(before), [{ op: 'PRI_RESP', grpid: reused, ssid: PASID, resp: PRI_RESP_SUCC }]);

    // 4. Device removal with a request pending: answered Invalid, the endpoint stops waiting.
    let w4: DmaCompletion | null = null;
    void ep.write(IOVA + 3 * PAGE, Uint8Array.of(9), { ssid: PASID }).then((r) => (w4 = r));
    await settle(lab);
    c.equal('a request is pending at removal', q.pendingGroups, 1);
    const beforeRemoval = watch.list.length;
    await runIn(lab, lab.kernel.core.removeDevice(pdev), 'remove the endpoint');
    await settle(lab);
    c.equal('removal answered it Invalid', watch.list.slice(beforeRemoval).map((r) => [r.op, r.resp]), [['PRI_RESP', PRI_RESP_DENY]]);
    c.equal('the endpoint saw its write fail', (w4 as DmaCompletion | null)?.status, 'fault');
    c.equal('no page request is outstanding', ep.outstandingPageRequests, 0);
    c.equal('the queue has nothing pending', q.pendingGroups, 0);
    q.close();
    watch.stop();
    return c.result({ records: q.stats.queued, responses: q.stats.responses, rejected: q.stats.rejected, 'PRI responses': lab.smmu.eventStats.priResponses });
  },
};
