/**
 * Fault reporting (kernel: iommu_report_device_fault(), the device fault handler API of 5.3–6.7 and
 * iommu_page_response() in iommu.c): the one entry point drivers report recoverable and unrecoverable
 * faults through, per-device fault handlers, and versioned page responses.
 *
 * Where a fault goes:
 * - a page request whose PASID (or RID) is attached to a domain with an I/O page-fault handler, on a
 *   device that is on an IOPF queue: the IOPF queue (io-pgfault.ts) — partials buffered, the group
 *   handled on the workqueue, answered through `iopfGroupResponse`;
 * - otherwise, if the device has a fault handler (one per device; EBUSY for a second): the handler
 *   gets it (partials too). A LAST request becomes a pending group of one, answered later by
 *   `iommuPageResponse(dev, msg)` (or `iopfGroupResponse`); a handler that refuses it gets FAILURE;
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
import { isKernelError, KernelError, type Errno } from '../bus/errno.js';
import {
  devFaultParam,
  devFaultParamGet,
  iopfAnswerPending,
  iopfGroupResponse,
  iopfHandlePageRequest,
  iopfQueueFree,
  iopfQueueRemoveDevice,
  iopfSendResponse,
  checkCode,
  IopfGroupImpl,
  type IopfQueue,
  type DevFaultParam,
  type IommuDevFaultHandler,
} from './io-pgfault.js';
import { devIommu } from './iommu-device.js';
import { IOMMU_DOMAIN_NESTED, type IommuDomain } from './iommu-domain.js';
import {
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_INVALID,
  type IommuFaultEvent,
  type IommuFaultPageRequest,
  type IopfFault,
} from './iommu-fault-types.js';
import type { IommuAttachHandle } from './iommu-group.js';
import { IOMMU_NO_PASID } from './iommu-pasid.js';
import type { IommuSubsystem } from './iommu.js';

const LOG_NS = 'iommu:core:fault';

export type { IommuDevFaultHandler };

// (kernel: struct iommu_page_response (the versioned form of the 2019 API and its page-response thread))
export const IOMMU_PAGE_RESP_VERSION_1 = 1;
/** The response names the PASID of the request. */
export const IOMMU_PAGE_RESP_PASID_VALID = 1 << 0;
/** The response carries the request's private data back (the extension the thread proposes). */
export const IOMMU_PAGE_RESP_PRIVATE_DATA = 1 << 1;
const IOMMU_PAGE_RESP_FLAGS = IOMMU_PAGE_RESP_PASID_VALID | IOMMU_PAGE_RESP_PRIVATE_DATA;

/** A page response as a fault handler's owner sends it (kernel: struct iommu_page_response, v1 + private data). */
export interface IommuPageResponseMsg {
  version: number;
  /** IOMMU_PAGE_RESP_PASID_VALID | IOMMU_PAGE_RESP_PRIVATE_DATA */
  flags: number;
  pasid: number;
  grpid: number;
  /** IOMMU_PAGE_RESP_SUCCESS / INVALID / FAILURE */
  code: number;
  /** With IOMMU_PAGE_RESP_PRIVATE_DATA: the request's private data. */
  privateData?: readonly [number, number];
}

function errnoOf(e: unknown): Errno {
  return isKernelError(e) ? e.errno : 'EIO';
}

// ---- device fault handlers -------------------------------------------------------------------

/**
 * Install `dev`'s fault handler: EINVAL when the device is not behind an IOMMU, EBUSY when it has
 * one already, ENODEV while it is being removed.
 */
// kernel: iommu_register_device_fault_handler() [iommu.c] @v6.7
export function iommuRegisterDeviceFaultHandler(dev: Device, handler: IommuDevFaultHandler, data: unknown = null): void {
  if (!devIommu(dev)?.iommuDev) throw new KernelError('EINVAL', `${dev.name} is not behind an IOMMU: no fault handler to register`);
  const param = devFaultParamGet(dev);
  if (param.removing) throw new KernelError('ENODEV', `${dev.name} is being removed`);
  if (param.handler) throw new KernelError('EBUSY', `${dev.name} already has a device fault handler`);
  param.handler = handler;
  param.handlerData = data;
}

/**
 * Remove `dev`'s fault handler: EINVAL when the device is not behind an IOMMU, EBUSY while page
 * requests it was given are unanswered (nothing changes); nothing to do when none is registered.
 */
// kernel: iommu_unregister_device_fault_handler() [iommu.c] @v6.7
export function iommuUnregisterDeviceFaultHandler(dev: Device): void {
  if (!devIommu(dev)) throw new KernelError('EINVAL', `${dev.name} is not behind an IOMMU`);
  const param = devFaultParam(dev);
  if (!param?.handler) return;
  const pending = param.pendingOf('device-handler');
  if (pending > 0) throw new KernelError('EBUSY', `${dev.name}: ${pending} page request group(s) given to the fault handler are not answered yet`);
  param.handler = null;
  param.handlerData = null;
}

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

function countResult(param: DevFaultParam, evt: IopfFault, r: 0 | Errno, group: IopfGroupImpl | null): 0 | Errno {
  if (r === 0) return 0;
  devIommu(param.dev)?.subsystem.log.warn(param.dev.name, `fault handler refused page request grpid ${evt.fault.prm.grpid}: ${r}`, LOG_NS);
  if (group) iopfGroupResponse(group, IOMMU_PAGE_RESP_FAILURE);
  else void iopfSendResponse(param.dev, evt, IOMMU_PAGE_RESP_FAILURE);
  return r;
}

/** A page request nobody's domain handles: the device fault handler gets it. */
async function reportToHandler(param: DevFaultParam, evt: IopfFault): Promise<0 | Errno> {
  const handler = param.handler!;
  let group: IopfGroupImpl | null = null;
  if ((evt.fault.prm.flags & IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE) !== 0) {
    // Pending before the handler runs, so an answer from inside it finds the group.
    group = new IopfGroupImpl(param, [evt], 'device-handler', null, null);
    param.pending.add(group);
    param.stats.groups++;
  }
  let r: 0 | Errno;
  try {
    r = await handler(evt.fault, param.handlerData, group);
  } catch (e) {
    r = errnoOf(e);
  }
  return countResult(param, evt, r, group);
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
    if (!param?.handler) return faultResult('EINVAL');
    return reportUnrecoverable(param, fault);
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

async function reportUnrecoverable(param: DevFaultParam, fault: IommuFaultEvent['fault']): Promise<0 | Errno> {
  try {
    return await param.handler!(fault, param.handlerData, null);
  } catch (e) {
    return errnoOf(e);
  }
}

const settledResults = new Map<0 | Errno, Promise<0 | Errno>>();

/**
 * A settled promise of `r`, one per value: a report decided synchronously (the common case: the IOPF
 * queue took the fault) allocates no promise of its own.
 */
export function faultResult(r: 0 | Errno): Promise<0 | Errno> {
  let p = settledResults.get(r);
  if (!p) settledResults.set(r, (p = Promise.resolve(r)));
  return p;
}

// ---- page responses ---------------------------------------------------------------------------

/**
 * True if `msg` answers the request `prm`: same group index; the request's PASID named when it had one
 * (and none named when it had none). Private data: an in-kernel response need not carry it, the
 * kernel takes it from the pending request (iommu_page_response() sends the driver the request's own
 * event, private data included); a response that does carry it must carry exactly the request's (and
 * a request without private data accepts none). Only the user-facing records demand it back, once
 * user space negotiated it (iommu-fault-uapi.ts).
 */
export function iommuPageResponseMatches(prm: IommuFaultPageRequest, msg: IommuPageResponseMsg): boolean {
  if (prm.grpid !== msg.grpid) return false;
  const respPasid = (msg.flags & IOMMU_PAGE_RESP_PASID_VALID) !== 0;
  if ((prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) !== 0) {
    if (!respPasid || msg.pasid !== prm.pasid) return false;
  } else if (respPasid) {
    return false;
  }
  if ((msg.flags & IOMMU_PAGE_RESP_PRIVATE_DATA) === 0) return true;
  if ((prm.flags & IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA) === 0) return false;
  const pd = msg.privateData;
  return pd !== undefined && pd[0] === prm.privateData[0] && pd[1] === prm.privateData[1];
}

/** EINVAL unless `msg` is a well-formed version 1 response; `who` names the device or queue in the error. */
export function iommuCheckPageResponse(who: string, msg: IommuPageResponseMsg): void {
  if (msg.version !== IOMMU_PAGE_RESP_VERSION_1) throw new KernelError('EINVAL', `${who}: page response version ${msg.version} is not ${IOMMU_PAGE_RESP_VERSION_1}`);
  if (!Number.isInteger(msg.flags) || msg.flags < 0 || (msg.flags & ~IOMMU_PAGE_RESP_FLAGS) !== 0) {
    throw new KernelError('EINVAL', `${who}: page response flags 0x${msg.flags.toString(16)} include unknown bits`);
  }
  checkCode(msg.code);
  if ((msg.flags & IOMMU_PAGE_RESP_PRIVATE_DATA) !== 0 && (!msg.privateData || msg.privateData.length !== 2)) {
    throw new KernelError('EINVAL', `${who}: page response says PRIVATE_DATA but carries none`);
  }
}

/**
 * The pending group (given to the device fault handler) that `msg` answers, or null.
 */
export function iommuFindPendingGroup(dev: Device, msg: IommuPageResponseMsg): IopfGroupImpl | null {
  const param = devFaultParam(dev);
  if (!param) return null;
  for (const g of param.pending) {
    if (g.owner === 'device-handler' && iommuPageResponseMatches(g.lastFault.fault.prm, msg)) return g;
  }
  return null;
}

/**
 * Answer a page request given to `dev`'s fault handler. ENODEV if the IOMMU cannot answer page
 * requests; EINVAL for an unknown version or flag, a bad code, or when no pending group matches (by
 * PASID and group index, and by private data when the response carries some): a stale or spurious
 * response changes nothing. The driver is handed the pending request itself, so a request's private
 * data reaches the hardware whether or not the caller repeated it. Groups the IOPF queue's handlers
 * own cannot be answered from here.
 */
// kernel: iommu_page_response() [io-pgfault.c]
export function iommuPageResponse(dev: Device, msg: IommuPageResponseMsg): void {
  if (!devIommu(dev)?.iommuDev?.ops?.pageResponse) throw new KernelError('ENODEV', `${dev.name}: its IOMMU cannot answer page requests`);
  const param = devFaultParam(dev);
  if (!param) throw new KernelError('EINVAL', `${dev.name} has no fault reporting state`);
  iommuCheckPageResponse(dev.name, msg);
  if (param.pendingOf('device-handler') === 0) throw new KernelError('EINVAL', `${dev.name}: no pending PRQ, drop response (grpid ${msg.grpid})`);
  const group = iommuFindPendingGroup(dev, msg);
  if (!group) throw new KernelError('EINVAL', `${dev.name}: no pending page request matches the response (pasid ${msg.pasid}, grpid ${msg.grpid})`);
  iopfGroupResponse(group, msg.code as 0 | 1 | 2);
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
