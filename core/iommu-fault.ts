/**
 * Fault reporting (kernel: iommu_report_device_fault() of io-pgfault.c): the one entry point drivers
 * report recoverable and unrecoverable faults through, device removal and kernel shutdown of the
 * fault path.
 *
 * Where a fault goes:
 * - a page request whose PASID (or RID) is attached to a domain with an I/O page-fault handler, on a
 *   device that is on an IOPF queue: the IOPF queue (io-pgfault.ts) — partials buffered, the group
 *   handled on the workqueue, answered through `iopfGroupResponse`;
 * - otherwise, if the device has a fault handler of the 2019 API (iommu-fault-legacy.ts, which says
 *   why it is kept): the handler gets it (partials too). A LAST request becomes a pending group of
 *   one, answered later by `iommuPageResponse(dev, msg)` (or `iopfGroupResponse`); a handler that
 *   refuses it gets FAILURE;
 * - otherwise nobody can resolve it: INVALID at once, even for a partial request;
 * - unrecoverable faults go to the device handler only (the "dump the device's state" use).
 * The core answers everything it cannot hand on; a driver never answers a fault it reported.
 *
 * Unregistering a handler while it has pending groups is EBUSY (the 2019 API); the device-removal
 * path (`iommuFaultDeviceRelease`, called by the core before the driver releases the device) instead
 * answers every pending group INVALID and drops buffered partials, so no master waits forever. Kernel
 * shutdown does the same for every device at once (`iommuFaultShutdown`) and frees the IOPF queues.
 */
import type { Device } from '../bus/device.js';
import { KernelError, type Errno } from '../bus/errno.js';
import {
  devFaultParam,
  iopfAnswerPending,
  iopfHandlePageRequest,
  iopfQueueFree,
  iopfQueueRemoveDevice,
  iopfSendResponse,
  type IopfQueue,
  type DevFaultParam,
} from './io-pgfault.js';
import { devIommu } from './iommu-device.js';
import { reportToHandler, reportUnrecoverableToHandler } from './iommu-fault-legacy.js';
import { IOMMU_DOMAIN_NESTED, type IommuDomain } from './iommu-domain.js';
import {
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_PAGE_RESP_INVALID,
  type IommuFaultEvent,
  type IommuFaultPageRequest,
  type IopfFault,
} from './iommu-fault-types.js';
import type { IommuAttachHandle } from './iommu-group.js';
import { IOMMU_NO_PASID } from './iommu-pasid.js';
import type { IommuSubsystem } from './iommu.js';


// ---- reporting --------------------------------------------------------------------------------

/** The domain (and attach handle) a page request is for, if that domain can take I/O page faults. */
interface IopfTarget {
  domain: IommuDomain | null;
  handle: IommuAttachHandle | null;
}
// Reused for every lookup: the report path allocates nothing it does not keep.
const target: IopfTarget = { domain: null, handle: null };

/**
 * As the kernel's find_fault_handler() — the PASID's attach handle (or, with a user PASID table, the RID's
 * NESTED one); without a PASID the RID's handle, else the domain the group is attached to.
 */
function iopfLookup(dev: Device, prm: IommuFaultPageRequest): IopfTarget {
  target.domain = null;
  target.handle = null;
  const param = devIommu(dev);
  const group = param?.group;
  if (!group) return target;
  if ((prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) !== 0) {
    let entry = group.pasidArray.get(prm.pasid);
    if (!entry && param.iommuDev?.ops?.userPasidTable) {
      const rid = group.pasidArray.get(IOMMU_NO_PASID);
      if (rid && rid.domain.type === IOMMU_DOMAIN_NESTED) entry = rid;
    }
    if (entry) {
      target.domain = entry.domain;
      target.handle = entry.handle;
    }
  } else {
    const rid = group.pasidArray.get(IOMMU_NO_PASID);
    target.domain = rid?.domain ?? group.domain;
    target.handle = rid?.handle ?? null;
  }
  if (!target.domain?.iopfHandler) target.domain = null;
  return target;
}

/**
 * A driver reports a fault of `dev`. Page requests are handed on or answered (see the header); the
 * result is 0 when someone took the fault, an errno when the core answered it because nobody could
 * (EINVAL: no handler) or it could not be delivered. Unrecoverable faults return the device
 * handler's result, EINVAL without one. The core keeps the event object: report a fresh one each
 * time.
 */
// kernel: iommu_report_device_fault() [io-pgfault.c]
export function iommuReportDeviceFault(dev: Device, evt: IommuFaultEvent): Promise<0 | Errno> {
  const fault = evt.fault;
  const param = devFaultParam(dev);
  if (fault.type === 'dma-unrecov') {
    if (param) param.stats.unrecoverable++;
    return reportUnrecoverableToHandler(param, fault);
  }
  if (fault.type !== 'page-req') {
    // A rejection, as from any async API: never a throw out of the call.
    return Promise.reject(new KernelError('EINVAL', `${dev.name}: unknown fault type ${String((fault as { type: unknown }).type)}`));
  }
  const iopf = evt as IopfFault;
  if (!devIommu(dev)?.iommuDev) return faultResult('ENODEV');
  if (param) {
    param.stats.requests++;
    if (param.removing) {
      void iopfSendResponse(dev, iopf, IOMMU_PAGE_RESP_INVALID);
      return faultResult('ENODEV');
    }
    const t = iopfLookup(dev, fault.prm);
    // The IOPF queue takes it synchronously (the handler runs later, on the workqueue).
    if (t.domain && param.queue) return faultResult(iopfHandlePageRequest(param, iopf, t.domain, t.handle));
    if (param.handler) return reportToHandler(param, iopf);
  }
  // (kernel: "no handler": answered at once, partial or not, so the device does not wait.)
  void iopfSendResponse(dev, iopf, IOMMU_PAGE_RESP_INVALID);
  return faultResult('EINVAL');
}

const settledResults = new Map<0 | Errno, Promise<0 | Errno>>();

/**
 * A settled promise of `r`, one per value: a report decided synchronously (the common case: the IOPF
 * queue took the fault) allocates no promise of its own.
 */
export function faultResult(r: 0 | Errno): Promise<0 | Errno> {
  let p = settledResults.get(r);
  if (!p) {
    p = Promise.resolve(r);
    settledResults.set(r, p);
    settledValues.set(p, r);
  }
  return p;
}

const settledValues = new Map<Promise<0 | Errno>, 0 | Errno>();

/**
 * The value of `p` when it is one of faultResult's settled promises (known without waiting), else
 * undefined: a driver thread that gathered a pass of results can then skip Promise.all's reaction
 * per element.
 */
export function settledFaultResult(p: Promise<0 | Errno>): 0 | Errno | undefined {
  return settledValues.get(p);
}

// ---- device removal ---------------------------------------------------------------------------

/**
 * The device leaves the core: new faults are answered INVALID at once, the device leaves its IOPF
 * queue (partials dropped, pending groups answered INVALID), groups given to its fault handler are
 * answered INVALID too, and the handler is dropped. Called by the core before the driver releases
 * the device. Returns the number of groups answered. Kernel: iopf_queue_remove_device() + the
 * removal of the fault parameter
 */
export function iommuFaultDeviceRelease(dev: Device): number {
  const param = devFaultParam(dev);
  if (!param) return 0;
  param.removing = true;
  let answered = param.pending.size;
  if (param.queue) iopfQueueRemoveDevice(param.queue, dev);
  iopfAnswerPending(param, IOMMU_PAGE_RESP_INVALID, null);
  answered -= param.pending.size;
  param.partial.length = 0;
  param.handler = null;
  param.handlerData = null;
  param.features.clear();
  return answered;
}

// ---- kernel shutdown --------------------------------------------------------------------------

/**
 * The kernel is going down, before device_shutdown() runs the drivers' `.shutdown`: every device's
 * fault path closes so no master is left waiting for an answer nobody will send. New faults are
 * answered INVALID at once, buffered partials are dropped, every pending group (the IOPF queue's and
 * the device handler's) is answered INVALID while the SMMUs still run, and the IOPF queues are freed.
 * Handlers and features stay: the devices are not removed. Linux has no such step (an SMMU's
 * shutdown turns it off under whatever is stalled); this stack promises that shutdown leaves no
 * master stalled and no group pending. Returns the number of groups answered.
 */
export function iommuFaultShutdown(subsystem: IommuSubsystem): number {
  const params: DevFaultParam[] = [];
  const queues = new Set<IopfQueue>();
  for (const group of subsystem.groups) {
    for (const dev of group.devices) {
      const param = devFaultParam(dev);
      if (!param) continue;
      param.removing = true;
      params.push(param);
      if (param.queue) queues.add(param.queue);
    }
  }
  let answered = 0;
  for (const p of params) answered += p.pending.size;
  // Each device leaves its queue (partials dropped, the queue's groups answered INVALID).
  for (const q of queues) iopfQueueFree(q);
  for (const p of params) {
    iopfAnswerPending(p, IOMMU_PAGE_RESP_INVALID, null);
    p.queueJoinedByCore = false;
    answered -= p.pending.size;
  }
  return answered;
}
