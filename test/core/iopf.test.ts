import { describe, expect, it } from 'vitest';
import {
  devFaultParam,
  iommuIopfQueue,
  iopfGroupResponse,
  iopfQueueAddDevice,
  iopfQueueAlloc,
  iopfQueueDiscardPartial,
  iopfQueueFlushDev,
  iopfQueueFree,
  iopfQueueRemoveDevice,
} from '../../core/io-pgfault.js';
import { iommuAttachDevice, iommuAttachGroupHandle, IommuAttachHandle } from '../../core/iommu-attach.js';
import { devIommu } from '../../core/iommu-device.js';
import { IOMMU_HWPT_ALLOC_PASID, iommuPagingDomainAllocFlags } from '../../core/iommu-domain.js';
import { iommuFaultShutdown, iommuReportDeviceFault } from '../../core/iommu-fault.js';
import {
  iommuPageResponse,
  iommuRegisterDeviceFaultHandler,
  IOMMU_PAGE_RESP_PASID_VALID,
  IOMMU_PAGE_RESP_VERSION_1,
} from '../../core/iommu-fault-legacy.js';
import { IOMMU_PAGE_RESP_FAILURE, IOMMU_PAGE_RESP_INVALID, IOMMU_PAGE_RESP_SUCCESS, type IopfGroup } from '../../core/iommu-fault-types.js';
import { iommuGroupGet } from '../../core/iommu-group.js';
import { iommuAttachDevicePasid } from '../../core/iommu-pasid.js';
import { iommuDevDisableFeature, iommuDevEnableFeature, iommuDevFeatureEnabled } from '../../core/iommu.js';
import { faultRig, pageRequest, settle, type FaultRig } from './fault-rig.js';
import { expectErrno } from '../lib/errno.js';

const PASID = 5;

/** A device on its IOMMU's IOPF queue with PASID 5 attached to a domain whose handler records groups. */
async function iopfSetup(handler?: (g: IopfGroup) => void | Promise<void>) {
  const s = await faultRig();
  await s.k.run(iommuDevEnableFeature(s.a, 'IOPF'));
  const groups: IopfGroup[] = [];
  const domain = iommuPagingDomainAllocFlags(s.a, IOMMU_HWPT_ALLOC_PASID);
  domain.iopfHandler =
    handler ??
    ((g) => {
      groups.push(g);
    });
  await s.k.run(iommuAttachDevicePasid(domain, s.a, PASID));
  return { ...s, groups, domain };
}

function grpids(s: FaultRig): [number, number][] {
  return s.responses.map((r) => [r.msg.grpid, r.msg.code]);
}

describe('the IOPF queue', () => {
  it('buffers partial requests and handles a three-request group exactly once, on LAST', async () => {
    const s = await iopfSetup();
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x1000, 3, { pasid: PASID, partial: true }))).toBe(0);
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x9000, 4, { pasid: PASID, partial: true }))).toBe(0);
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x2000, 3, { pasid: PASID, partial: true }))).toBe(0);
    await settle(s);
    expect(s.groups).toEqual([]);
    expect(devFaultParam(s.a)!.partial).toHaveLength(3);
    const last = iommuReportDeviceFault(s.a, pageRequest(0x3000, 3, { pasid: PASID }));
    // Not on the reporting path: the handler runs from the workqueue.
    expect(s.groups).toEqual([]);
    expect(await last).toBe(0);
    await settle(s);
    expect(s.groups).toHaveLength(1);
    const g = s.groups[0];
    expect(g.faults.map((f) => f.fault.prm.addr)).toEqual([0x1000, 0x2000, 0x3000]);
    expect(g.lastFault.fault.prm.addr).toBe(0x3000);
    expect(g.domain).toBe(s.domain);
    // The other group's partial stays buffered.
    expect(devFaultParam(s.a)!.partial.map((f) => f.fault.prm.grpid)).toEqual([4]);
    expect(s.responses).toEqual([]);
    // The domain's handler owns the group: the device-handler response API cannot complete it.
    await expectErrno(() => iommuPageResponse(s.a, { version: IOMMU_PAGE_RESP_VERSION_1, flags: IOMMU_PAGE_RESP_PASID_VALID, pasid: PASID, grpid: 3, code: IOMMU_PAGE_RESP_SUCCESS }), 'EINVAL');
    expect(devFaultParam(s.a)!.pending.size).toBe(1);
    expect(iopfGroupResponse(g, IOMMU_PAGE_RESP_SUCCESS)).toBe(true);
    // A duplicate or late answer changes nothing.
    expect(iopfGroupResponse(g, IOMMU_PAGE_RESP_INVALID)).toBe(false);
    expect(s.responses.map((r) => r.msg)).toEqual([{ pasid: PASID, grpid: 3, code: IOMMU_PAGE_RESP_SUCCESS }]);
    expect(s.responses[0].evt.fault.prm.addr).toBe(0x3000);
  });

  it('makes a group of one of a stall (no PASID) on the RID domain', async () => {
    const s = await faultRig();
    await s.k.run(iommuDevEnableFeature(s.noPasid, 'IOPF'));
    const dom = iommuPagingDomainAllocFlags(s.noPasid, 0);
    const seen: IopfGroup[] = [];
    dom.iopfHandler = (g) => {
      seen.push(g);
      iopfGroupResponse(g, IOMMU_PAGE_RESP_SUCCESS);
    };
    await s.k.run(iommuAttachGroupHandle(dom, iommuGroupGet(s.noPasid)!, new IommuAttachHandle()));
    void iommuReportDeviceFault(s.noPasid, pageRequest(0x4000, 0x2a));
    await settle(s);
    expect(seen).toHaveLength(1);
    expect(seen[0].faults).toHaveLength(1);
    expect(seen[0].attachHandle).toBeInstanceOf(IommuAttachHandle);
    expect(s.responses.map((r) => r.msg)).toEqual([{ pasid: 0, grpid: 0x2a, code: IOMMU_PAGE_RESP_SUCCESS }]);
  });

  it('uses the RID domain when no attach handle is stored for it', async () => {
    const s = await faultRig();
    await s.k.run(iommuDevEnableFeature(s.noPasid, 'IOPF'));
    const dom = iommuPagingDomainAllocFlags(s.noPasid, 0);
    dom.iopfHandler = (g) => void iopfGroupResponse(g, IOMMU_PAGE_RESP_INVALID);
    await s.k.run(iommuAttachDevice(dom, s.noPasid));
    void iommuReportDeviceFault(s.noPasid, pageRequest(0x4000, 1));
    await settle(s);
    expect(grpids(s)).toEqual([[1, IOMMU_PAGE_RESP_INVALID]]);
  });

  it('answers INVALID at once for a PASID with no fault-capable domain, even a partial request', async () => {
    const s = await iopfSetup();
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x1000, 1, { pasid: PASID + 1, partial: true }))).toBe('EINVAL');
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x1000, 2, { pasid: PASID + 1 }))).toBe('EINVAL');
    // The RID's default domain has no iopf handler either.
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x1000, 3))).toBe('EINVAL');
    expect(grpids(s)).toEqual([
      [1, IOMMU_PAGE_RESP_INVALID],
      [2, IOMMU_PAGE_RESP_INVALID],
      [3, IOMMU_PAGE_RESP_INVALID],
    ]);
    expect(devFaultParam(s.a)!.partial).toEqual([]);
  });

  it('answers FAILURE when the domain handler refuses the group (throws or rejects)', async () => {
    let n = 0;
    const s = await iopfSetup((g) => {
      if (n++ === 0) throw new Error('no thanks');
      return Promise.reject(new Error('not now either')).then(() => void g);
    });
    void iommuReportDeviceFault(s.a, pageRequest(0x1000, 1, { pasid: PASID }));
    void iommuReportDeviceFault(s.a, pageRequest(0x1000, 2, { pasid: PASID }));
    await settle(s);
    expect(grpids(s)).toEqual([
      [1, IOMMU_PAGE_RESP_FAILURE],
      [2, IOMMU_PAGE_RESP_FAILURE],
    ]);
    expect(s.k.core.log.entries.filter((e) => /iopf with pasid 5 aborted/.test(e.message))).toHaveLength(2);
  });

  it('answers FAILURE when the queue is full', async () => {
    const s = await faultRig();
    const q = iopfQueueAlloc('tiny', { depth: 1 });
    iopfQueueAddDevice(q, s.a);
    const dom = iommuPagingDomainAllocFlags(s.a, IOMMU_HWPT_ALLOC_PASID);
    dom.iopfHandler = () => undefined; // keeps its groups pending
    await s.k.run(iommuAttachDevicePasid(dom, s.a, PASID));
    void iommuReportDeviceFault(s.a, pageRequest(0x1000, 1, { pasid: PASID }));
    void iommuReportDeviceFault(s.a, pageRequest(0x1000, 2, { pasid: PASID }));
    expect(grpids(s)).toEqual([[2, IOMMU_PAGE_RESP_FAILURE]]);
    await settle(s);
    expect(q.inFlight).toBe(0);
    expect(q.name).toBe('iopf_queue/tiny');
  });

  it('takes a device once, needs a page_response op, and removes only from its own queue', async () => {
    const s = await faultRig();
    const q1 = iopfQueueAlloc('one');
    const q2 = iopfQueueAlloc('two');
    iopfQueueAddDevice(q1, s.a);
    await expectErrno(() => iopfQueueAddDevice(q1, s.a), 'EBUSY');
    await expectErrno(() => iopfQueueAddDevice(q2, s.a), 'EBUSY');
    await expectErrno(() => iopfQueueRemoveDevice(q2, s.a), 'EINVAL', /EINVAL.*not on iopf_queue\/two/);
    iopfQueueRemoveDevice(q1, s.a);
    iopfQueueAddDevice(q2, s.a);
    await expectErrno(iopfQueueFlushDev(s.b), 'ENODEV');
    const bare = await faultRig({ noPageResponse: true });
    await expectErrno(() => iopfQueueAddDevice(q1, bare.a), 'ENODEV');
  });

  it('answers pending groups INVALID and drops partials when a device leaves the queue', async () => {
    const s = await iopfSetup();
    void iommuReportDeviceFault(s.a, pageRequest(0x1000, 1, { pasid: PASID }));
    void iommuReportDeviceFault(s.a, pageRequest(0x2000, 2, { pasid: PASID, partial: true }));
    await settle(s);
    expect(s.groups).toHaveLength(1);
    const q = devFaultParam(s.a)!.queue!;
    iopfQueueRemoveDevice(q, s.a);
    expect(grpids(s)).toEqual([[1, IOMMU_PAGE_RESP_INVALID]]);
    expect(devFaultParam(s.a)!.partial).toEqual([]);
    expect(devFaultParam(s.a)!.stats.partialsDropped).toBe(1);
    // The handler's late answer is ignored.
    expect(iopfGroupResponse(s.groups[0], IOMMU_PAGE_RESP_SUCCESS)).toBe(false);
    expect(s.responses).toHaveLength(1);
    // Off the queue: no IOPF path any more, nobody to handle it.
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x3000, 3, { pasid: PASID }))).toBe('EINVAL');
  });

  it('does not run a queued group whose device left before it ran', async () => {
    const s = await iopfSetup();
    void iommuReportDeviceFault(s.a, pageRequest(0x1000, 1, { pasid: PASID }));
    iopfQueueRemoveDevice(devFaultParam(s.a)!.queue!, s.a);
    await settle(s);
    expect(s.groups).toEqual([]);
    expect(grpids(s)).toEqual([[1, IOMMU_PAGE_RESP_INVALID]]);
  });

  it('flushes a device: waits for the groups queued so far', async () => {
    const s = await iopfSetup(async (g) => {
      await s.k.scheduler.delay(5000);
      iopfGroupResponse(g, IOMMU_PAGE_RESP_SUCCESS);
    });
    void iommuReportDeviceFault(s.a, pageRequest(0x1000, 1, { pasid: PASID }));
    void iommuReportDeviceFault(s.a, pageRequest(0x2000, 2, { pasid: PASID }));
    const t0 = s.k.scheduler.now;
    await s.k.run(iopfQueueFlushDev(s.a));
    expect(s.k.scheduler.now - t0).toBeGreaterThanOrEqual(5000);
    expect(grpids(s)).toEqual([
      [1, IOMMU_PAGE_RESP_SUCCESS],
      [2, IOMMU_PAGE_RESP_SUCCESS],
    ]);
  });

  it('discards partials and frees a queue without leaving anything unanswered', async () => {
    const s = await iopfSetup();
    void iommuReportDeviceFault(s.a, pageRequest(0x1000, 1, { pasid: PASID, partial: true }));
    const q = devFaultParam(s.a)!.queue!;
    iopfQueueDiscardPartial(q);
    expect(devFaultParam(s.a)!.partial).toEqual([]);
    // The LAST of the discarded group now makes a group of one.
    void iommuReportDeviceFault(s.a, pageRequest(0x2000, 1, { pasid: PASID }));
    void iommuReportDeviceFault(s.a, pageRequest(0x3000, 2, { pasid: PASID }));
    await settle(s);
    expect(s.groups.map((g) => g.faults.length)).toEqual([1, 1]);
    iopfQueueFree(q);
    expect(grpids(s)).toEqual([
      [1, IOMMU_PAGE_RESP_INVALID],
      [2, IOMMU_PAGE_RESP_INVALID],
    ]);
    expect(q.devices.size).toBe(0);
    expect(() => iopfQueueAddDevice(q, s.a)).toThrow(/freed/);
    // The IOMMU's queue is made afresh once its old one is freed.
    expect(iommuIopfQueue(devIommu(s.a)!.iommuDev!)).not.toBe(q);
  });

  it('answers every pending group INVALID and frees the IOPF queues at kernel shutdown', async () => {
    const s = await iopfSetup(); // A's domain handler keeps its groups pending
    iommuRegisterDeviceFaultHandler(s.b, () => 0); // so does B's device handler
    void iommuReportDeviceFault(s.a, pageRequest(0x1000, 1, { pasid: PASID }));
    void iommuReportDeviceFault(s.a, pageRequest(0x2000, 2, { pasid: PASID, partial: true }));
    await iommuReportDeviceFault(s.b, pageRequest(0x3000, 3, { pasid: 1 }));
    await settle(s);
    expect(s.groups).toHaveLength(1);
    const q = devFaultParam(s.a)!.queue!;
    expect(s.responses).toEqual([]);

    expect(iommuFaultShutdown(s.k.iommu)).toBe(2);
    expect(s.responses.map((r) => [r.dev, r.msg.grpid, r.msg.code])).toEqual([
      [s.a.name, 1, IOMMU_PAGE_RESP_INVALID],
      [s.b.name, 3, IOMMU_PAGE_RESP_INVALID],
    ]);
    for (const d of [s.a, s.b]) expect(devFaultParam(d)!.pending.size).toBe(0);
    expect(devFaultParam(s.a)!.partial).toEqual([]);
    expect(devFaultParam(s.a)!.stats.partialsDropped).toBe(1);
    expect(q.isFreed).toBe(true);
    expect(q.devices.size).toBe(0);
    expect(devFaultParam(s.a)!.queue).toBeNull();
    // The handler's late answer changes nothing; a fault after shutdown is answered at once.
    expect(iopfGroupResponse(s.groups[0], IOMMU_PAGE_RESP_SUCCESS)).toBe(false);
    expect(await iommuReportDeviceFault(s.a, pageRequest(0x4000, 4, { pasid: PASID, partial: true }))).toBe('ENODEV');
    expect(await iommuReportDeviceFault(s.b, pageRequest(0x5000, 5, { pasid: 1 }))).toBe('ENODEV');
    expect(s.responses.slice(2).map((r) => [r.dev, r.msg.grpid, r.msg.code])).toEqual([
      [s.a.name, 4, IOMMU_PAGE_RESP_INVALID],
      [s.b.name, 5, IOMMU_PAGE_RESP_INVALID],
    ]);
    await settle(s);
    expect(q.inFlight).toBe(0);
    // Nothing left: a second pass answers nothing.
    expect(iommuFaultShutdown(s.k.iommu)).toBe(0);
  });

  it('traces each group as a work item and each response', async () => {
    const s = await iopfSetup((g) => void iopfGroupResponse(g, IOMMU_PAGE_RESP_SUCCESS));
    const rec = s.k.trace.record(['work', 'custom']);
    void iommuReportDeviceFault(s.a, pageRequest(0x1000, 6, { pasid: PASID }));
    await settle(s);
    rec.stop();
    const name = devFaultParam(s.a)!.queue!.name;
    expect(rec.events.map((e) => (e.kind === 'work' ? `${e.label} ${e.phase}` : e.kind === 'custom' ? `${e.name} ${JSON.stringify(e.args)}` : ''))).toEqual([
      `${name} grpid 6 queued`,
      `${name} grpid 6 start`,
      `iopf.response {"pasid":${PASID},"grpid":6,"code":0}`,
      `${name} grpid 6 end`,
    ]);
    expect(rec.events.every((e) => e.track === s.a.name)).toBe(true);
  });

  it('prefers the domain handler over the device handler for page requests it covers', async () => {
    const s = await iopfSetup();
    const toDevHandler: number[] = [];
    iommuRegisterDeviceFaultHandler(s.a, (f) => {
      if (f.type === 'page-req') toDevHandler.push(f.prm.grpid);
      return 0;
    });
    void iommuReportDeviceFault(s.a, pageRequest(0x1000, 1, { pasid: PASID }));
    void iommuReportDeviceFault(s.a, pageRequest(0x1000, 2, { pasid: PASID + 2 }));
    await settle(s);
    expect(s.groups.map((g) => g.lastFault.fault.prm.grpid)).toEqual([1]);
    expect(toDevHandler).toEqual([2]);
  });
});

describe('device features', () => {
  it('enables IOPF before SVA and disables them the other way round', async () => {
    const s = await faultRig();
    await expectErrno(iommuDevEnableFeature(s.a, 'SVA'), 'EINVAL', /EINVAL.*IOPF before SVA/);
    await expectErrno(iommuDevDisableFeature(s.a, 'IOPF'), 'EINVAL', /EINVAL.*not enabled/);
    await s.k.run(iommuDevEnableFeature(s.a, 'IOPF'));
    await expectErrno(iommuDevEnableFeature(s.a, 'IOPF'), 'EBUSY');
    expect(devFaultParam(s.a)!.queue).toBe(iommuIopfQueue(devIommu(s.a)!.iommuDev!));
    await s.k.run(iommuDevEnableFeature(s.a, 'SVA'));
    expect(iommuDevFeatureEnabled(s.a, 'SVA')).toBe(true);
    await expectErrno(iommuDevDisableFeature(s.a, 'IOPF'), 'EBUSY', /EBUSY.*disable SVA before IOPF/);
    await s.k.run(iommuDevDisableFeature(s.a, 'SVA'));
    await s.k.run(iommuDevDisableFeature(s.a, 'IOPF'));
    expect(devFaultParam(s.a)!.queue).toBeNull();
    expect(s.features.map((f) => `${f.op} ${f.feat}`)).toEqual(['enable IOPF', 'disable IOPF']);
  });

  it('refuses SVA on a device without PASIDs and IOPF without a page_response op', async () => {
    const s = await faultRig();
    await s.k.run(iommuDevEnableFeature(s.noPasid, 'IOPF'));
    await expectErrno(iommuDevEnableFeature(s.noPasid, 'SVA'), 'ENODEV', /ENODEV.*no PASIDs/);
    const bare = await faultRig({ noPageResponse: true });
    await expectErrno(iommuDevEnableFeature(bare.a, 'IOPF'), 'ENODEV', /ENODEV.*cannot answer page requests/);
    expect(bare.features).toEqual([]);
  });
});

