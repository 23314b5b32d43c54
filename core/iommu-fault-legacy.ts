/**
 * The older fault API generation, kept on purpose and kept here: the 2019 device fault-handler API
 * (kernel: iommu_register_device_fault_handler(), the versioned struct iommu_page_response and
 * iommu_page_response() of 5.3–6.7) and the user-facing fault queue built on it (the VFIO fault
 * region and VFIO_IOMMU_PAGE_RESPONSE of the vSVA series, include/uapi/linux/iommu.h @1bdd3e05).
 *
 * Why it is kept: Linux v6.8 removed the device handler (page requests go to the faulting domain's
 * iopf handler: io-pgfault.ts; user space gets them from the iommufd fault queue: iommufd.ts) and
 * never merged the uAPI. This project keeps both because the 2019 kernel threads it follows
 * (the fault page-response and SVA device-driver API threads) are about exactly this interface: the
 * EBUSY rule for unregistering with faults pending, versioned responses that carry private data, and
 * host tokens so hardware context never reaches a guest; the scenarios iopf-fault-records, sva-lab
 * and iopf-smmu-v2-stall and their tests exercise it; and an unrecoverable fault reported through
 * iommuReportDeviceFault() reaches a device's owner only through this handler. New code reports through iommu-fault.ts and answers through
 * io-pgfault.ts; nothing else in core/ carries this generation (io-pgfault.ts only keeps the
 * per-device handler slot and the `device-handler` owner of a pending group that it needs).
 *
 * In-kernel side: one handler per device (EBUSY for a second, EBUSY to unregister while groups it was
 * given are unanswered); it gets page requests no domain's iopf handler takes (partials too; a LAST
 * request becomes a pending group of one) and every unrecoverable fault; `iommuPageResponse(dev, msg)`
 * answers a pending group by PASID and group index (and private data when the response carries it).
 *
 * User-facing side: a device's fault queue that user space (a VMM) reads fault records from and
 * writes page responses to, as byte records that carry their size (`argsz`) and a version.
 *
 * Sizes: a caller says how big its structure is in `argsz`. Fault records: the kernel writes
 * min(argsz, its record size) bytes, zeroes the rest of a bigger caller's structure and reports the
 * size it filled in the record's `argsz`, so an older caller with a shorter structure still works and
 * a newer one sees zero in fields this kernel does not know. Responses: fields beyond the caller's
 * `argsz` are absent; bytes beyond this kernel's structure must be zero (E2BIG otherwise), as
 * copy_struct_from_user() has it.
 *
 * Private data, negotiated both ways as the thread proposes: `info()` says whether this kernel accepts
 * IOMMU_PAGE_RESP_PRIVATE_DATA in responses; `setFeatures(PRIV_DATA)` tells the kernel user space will
 * send it back, after which a response without it is rejected. Old user space that never asks still
 * works: the kernel finds the request by PASID and group index and supplies the private data itself.
 *
 * Host tokens (for guests): with `hostTokens`, every page-request record carries a sequence token in
 * private_data[0] instead of whatever the hardware gave (hardware context never reaches the guest).
 * A response must return the token; the kernel maps it back to the exact pending request and answers
 * it with the hardware's own private data. An unknown, already used or stale token is EINVAL and
 * changes nothing, so a late response can never complete a newer group that reuses the same index.
 *
 * Record layouts (little-endian), version 1:
 *   fault record (72 bytes, minimum 40): argsz u32 @0, version u32 @4, type u32 @8 (1 = DMA_UNRECOV,
 *     2 = PAGE_REQ), padding u32 @12, then
 *     page request: flags u32 @16 (PASID_VALID 1, LAST_PAGE 2, PRIV_DATA 4, NEEDS_PASID 8), pasid @20,
 *       grpid @24, perm @28 (READ 1, WRITE 2, EXEC 4, PRIV 8), addr u64 @32, private_data u64[2] @40;
 *     unrecoverable: reason u32 @16, flags @20 (PASID_VALID 1, ADDR_VALID 2, FETCH_ADDR_VALID 4),
 *       pasid @24, perm @28, addr u64 @32, fetch_addr u64 @40;
 *   page response (40 bytes, minimum 24): argsz u32 @0, version u32 @4, flags u32 @8 (PASID_VALID 1,
 *     PRIVATE_DATA 2), pasid @12, grpid @16, code @20 (SUCCESS 0, INVALID 1, FAILURE 2),
 *     private_data u64[2] @24.
 */
import type { Device } from '../bus/device.js';
import { isKernelError, KernelError, type Errno } from '../bus/errno.js';
import {
  checkCode,
  devFaultParam,
  devFaultParamGet,
  iopfGroupResponse,
  iopfSendResponse,
  IopfGroupImpl,
  type DevFaultParam,
  type IommuDevFaultHandler,
} from './io-pgfault.js';
import { devIommu } from './iommu-device.js';
import type { IommuDomain } from './iommu-domain.js';
import {
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_NEEDS_PASID,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA,
  IOMMU_PAGE_RESP_FAILURE,
  type IommuFaultPageRequest,
  type IommuFaultRecord,
  type IopfFault,
} from './iommu-fault-types.js';

const LOG_NS = 'iommu:core:fault';

// ===============================================================================================
// The device fault handler and the versioned page response (in-kernel side)
// ===============================================================================================

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

// ---- reporting to the device handler -----------------------------------------------------------

function countResult(param: DevFaultParam, evt: IopfFault, r: 0 | Errno, group: IopfGroupImpl | null): 0 | Errno {
  if (r === 0) return 0;
  devIommu(param.dev)?.subsystem.log.warn(param.dev.name, `fault handler refused page request grpid ${evt.fault.prm.grpid}: ${r}`, LOG_NS);
  if (group) iopfGroupResponse(group, IOMMU_PAGE_RESP_FAILURE);
  else void iopfSendResponse(param.dev, evt, IOMMU_PAGE_RESP_FAILURE);
  return r;
}

/** A page request nobody's domain handles: the device fault handler gets it. */
export async function reportToHandler(param: DevFaultParam, evt: IopfFault): Promise<0 | Errno> {
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

/** An unrecoverable fault goes to the device fault handler only: its result, EINVAL without one. */
export async function reportUnrecoverableToHandler(param: DevFaultParam | null, fault: IommuFaultRecord): Promise<0 | Errno> {
  if (!param?.handler) return 'EINVAL';
  try {
    return await param.handler(fault, param.handlerData, null);
  } catch (e) {
    return errnoOf(e);
  }
}

// ---- page responses ---------------------------------------------------------------------------

/**
 * True if `msg` answers the request `prm`: same group index; the request's PASID named when it had one
 * (and none named when it had none). Private data: an in-kernel response need not carry it, the
 * kernel takes it from the pending request (iommu_page_response() sends the driver the request's own
 * event, private data included); a response that does carry it must carry exactly the request's (and
 * a request without private data accepts none). Only the user-facing records demand it back, once
 * user space negotiated it (the user-facing queue below).
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

// ===============================================================================================
// The user-facing fault queue (VFIO fault region and VFIO_IOMMU_PAGE_RESPONSE)
// ===============================================================================================

// ---- the byte layouts -------------------------------------------------------------------------

export const IOMMU_FAULT_RECORD_VERSION_1 = 1;
/** kernel UAPI: IOMMU_FAULT_DMA_UNRECOV / IOMMU_FAULT_PAGE_REQ */
export const IOMMU_FAULT_DMA_UNRECOV = 1;
export const IOMMU_FAULT_PAGE_REQ = 2;
// kernel UAPI: IOMMU_FAULT_PAGE_REQUEST_* as user space sees them
export const UAPI_FAULT_PAGE_REQUEST_PASID_VALID = 1 << 0;
export const UAPI_FAULT_PAGE_REQUEST_LAST_PAGE = 1 << 1;
export const UAPI_FAULT_PAGE_REQUEST_PRIV_DATA = 1 << 2;
export const UAPI_FAULT_PAGE_REQUEST_NEEDS_PASID = 1 << 3;

export const FAULT_REC_ARGSZ = 0;
export const FAULT_REC_VERSION = 4;
export const FAULT_REC_TYPE = 8;
export const FAULT_REC_PRM_FLAGS = 16;
export const FAULT_REC_PRM_PASID = 20;
export const FAULT_REC_PRM_GRPID = 24;
export const FAULT_REC_PRM_PERM = 28;
export const FAULT_REC_PRM_ADDR = 32;
export const FAULT_REC_PRM_PRIVATE_DATA = 40;
export const FAULT_REC_EVT_REASON = 16;
export const FAULT_REC_EVT_FLAGS = 20;
export const FAULT_REC_EVT_PASID = 24;
export const FAULT_REC_EVT_PERM = 28;
export const FAULT_REC_EVT_ADDR = 32;
export const FAULT_REC_EVT_FETCH_ADDR = 40;
/** This kernel's fault record (header + 56-byte union). */
export const IOMMU_FAULT_RECORD_SIZE = 72;
/** The oldest record a caller may ask for: the header and a page request up to its address. */
export const IOMMU_FAULT_RECORD_MINSZ = 40;

export const PAGE_RESP_REC_ARGSZ = 0;
export const PAGE_RESP_REC_VERSION = 4;
export const PAGE_RESP_REC_FLAGS = 8;
export const PAGE_RESP_REC_PASID = 12;
export const PAGE_RESP_REC_GRPID = 16;
export const PAGE_RESP_REC_CODE = 20;
export const PAGE_RESP_REC_PRIVATE_DATA = 24;
/** This kernel's response record (version 1 with the private data appended). */
export const IOMMU_PAGE_RESPONSE_RECORD_SIZE = 40;
/** A response without private data (the first version of the structure). */
export const IOMMU_PAGE_RESPONSE_RECORD_MINSZ = 24;

/** info(): this kernel accepts IOMMU_PAGE_RESP_PRIVATE_DATA in responses. */
export const IOMMU_FAULT_QUEUE_INFO_PRIV_DATA = 1 << 0;
/** info(): page-request records carry host tokens, not the hardware's private data. */
export const IOMMU_FAULT_QUEUE_INFO_HOST_TOKENS = 1 << 1;
/** setFeatures(): user space returns private data (or the token) in every response. */
export const IOMMU_FAULT_QUEUE_FEAT_PRIV_DATA = 1 << 0;
const KNOWN_FEATURES = IOMMU_FAULT_QUEUE_FEAT_PRIV_DATA;

function put64(v: DataView, off: number, n: number): void {
  v.setUint32(off, n % 2 ** 32, true);
  v.setUint32(off + 4, Math.floor(n / 2 ** 32), true);
}

/** A u64 field as a number; NaN when it does not fit in one exactly (it can then match nothing). */
function get64(v: DataView, off: number): number {
  const hi = v.getUint32(off + 4, true);
  if (hi >= 2 ** 21) return Number.NaN;
  return hi * 2 ** 32 + v.getUint32(off, true);
}

function uapiPrmFlags(prm: IommuFaultPageRequest, privData: boolean): number {
  let f = 0;
  if ((prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) !== 0) f |= UAPI_FAULT_PAGE_REQUEST_PASID_VALID;
  if ((prm.flags & IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE) !== 0) f |= UAPI_FAULT_PAGE_REQUEST_LAST_PAGE;
  if (privData) f |= UAPI_FAULT_PAGE_REQUEST_PRIV_DATA;
  if ((prm.flags & IOMMU_FAULT_PAGE_REQUEST_NEEDS_PASID) !== 0) f |= UAPI_FAULT_PAGE_REQUEST_NEEDS_PASID;
  return f;
}

/** What `info()` reports. */
export interface IommuFaultQueueInfo {
  version: number;
  /** IOMMU_FAULT_QUEUE_INFO_* */
  flags: number;
  recordSize: number;
  responseSize: number;
  /** Records the queue holds before refusing new faults. */
  depth: number;
}

export interface IommuUserFaultQueueOptions {
  /** Records held for user space before new faults are refused (page requests then get FAILURE). */
  depth?: number;
  /** Substitute sequence tokens for the hardware's private data (a queue read by a guest). */
  hostTokens?: boolean;
}

/** One fault waiting for user space. */
interface QueuedRecord {
  readonly fault: IommuFaultRecord;
  /** The host token given to user space; 0 without host tokens. */
  readonly token: number;
  /** The group a LAST request completes (answered through it), null otherwise. */
  readonly group: IopfGroupImpl | null;
}

export interface IommuUserFaultQueueStats {
  /** Faults queued for user space. */
  queued: number;
  /** Faults refused because the queue was full. */
  overflows: number;
  /** Responses accepted. */
  responses: number;
  /** Responses rejected (EINVAL, E2BIG). */
  rejected: number;
}

export const IOMMU_USER_FAULT_QUEUE_DEFAULT_DEPTH = 256;

/**
 * A fault queue for user space. Two ways to feed it:
 * - VFIO style (`iommuUserFaultQueueOpen(dev)`): it is the device's fault handler (one per device:
 *   EBUSY if the device has one), and gets every fault no domain handler takes, unrecoverable too;
 * - iommufd style (`iommuUserFaultQueueForDomain(domain)`): it is a domain's I/O page-fault handler,
 *   and gets the page-request groups of every device and PASID the domain is attached to, from the
 *   IOPF queue's workqueue.
 * Either way a response answers exactly the group it names, once.
 */
export class IommuUserFaultQueue {
  private readonly records: QueuedRecord[] = [];
  /** Groups handed to user space and not answered through this queue yet, oldest first. */
  private readonly outstanding: IopfGroupImpl[] = [];
  /** token → group, for responses by token (host tokens only). */
  private readonly byToken = new Map<number, IopfGroupImpl>();
  private readonly tokenOf = new Map<IopfGroupImpl, number>();
  private nextToken = 1;
  private feats = 0;
  private open = true;
  private dev: Device | null = null;
  private domain: IommuDomain | null = null;
  readonly depth: number;
  readonly hostTokens: boolean;
  readonly stats: IommuUserFaultQueueStats = { queued: 0, overflows: 0, responses: 0, rejected: 0 };
  /** Called when a record is queued (the eventfd VFIO signals); user space then reads. */
  onFault: (() => void) | null = null;

  private constructor(
    /** For messages: the device or domain it serves. */
    readonly name: string,
    opts: IommuUserFaultQueueOptions,
  ) {
    const depth = opts.depth ?? IOMMU_USER_FAULT_QUEUE_DEFAULT_DEPTH;
    if (!Number.isSafeInteger(depth) || depth < 1) throw new KernelError('EINVAL', `${name}: fault queue depth ${depth} is not a positive integer`);
    this.depth = depth;
    this.hostTokens = opts.hostTokens ?? false;
  }

  /** The device fault handler of `dev` (VFIO style). Kernel: vfio_pci_iommu_dev_fault_handler() registration */
  static open(dev: Device, opts: IommuUserFaultQueueOptions = {}): IommuUserFaultQueue {
    const q = new IommuUserFaultQueue(dev.name, opts);
    iommuRegisterDeviceFaultHandler(dev, (fault, _data, group) => q.enqueue(fault, group as IopfGroupImpl | null), q);
    q.dev = dev;
    return q;
  }

  /**
   * The I/O page-fault handler of `domain` (iommufd style: the kernel's iommufd_fault_iopf_handler()
   * on a fault-capable hw_pagetable, whose counterpart is core/iommufd.ts): EBUSY if the domain has one.
   */
  static forDomain(domain: IommuDomain, opts: IommuUserFaultQueueOptions = {}): IommuUserFaultQueue {
    if (domain.iopfHandler) throw new KernelError('EBUSY', 'the domain already has an I/O page-fault handler');
    const q = new IommuUserFaultQueue(`domain fault queue`, opts);
    domain.iopfHandler = (group) => q.enqueueGroup(group as IopfGroupImpl);
    q.domain = domain;
    return q;
  }

  /** Records waiting to be read. */
  get length(): number {
    return this.records.length;
  }

  /** Groups given to user space and not answered yet. */
  get pendingGroups(): number {
    this.prune();
    return this.outstanding.length;
  }

  /** Features user space turned on (IOMMU_FAULT_QUEUE_FEAT_*). */
  get features(): number {
    return this.feats;
  }

  /** What this kernel offers (the user side of the negotiation). */
  info(): IommuFaultQueueInfo {
    return {
      version: IOMMU_FAULT_RECORD_VERSION_1,
      flags: IOMMU_FAULT_QUEUE_INFO_PRIV_DATA | (this.hostTokens ? IOMMU_FAULT_QUEUE_INFO_HOST_TOKENS : 0),
      recordSize: IOMMU_FAULT_RECORD_SIZE,
      responseSize: IOMMU_PAGE_RESPONSE_RECORD_SIZE,
      depth: this.depth,
    };
  }

  /** Tell the kernel what user space will do (the kernel side of the negotiation); EINVAL for unknown bits. */
  setFeatures(flags: number): void {
    if (!Number.isInteger(flags) || flags < 0 || (flags & ~KNOWN_FEATURES) !== 0) {
      throw new KernelError('EINVAL', `${this.name}: unknown fault queue features 0x${flags.toString(16)}`);
    }
    this.feats = flags;
  }

  private push(fault: IommuFaultRecord, group: IopfGroupImpl | null): void {
    let token = 0;
    if (this.hostTokens && fault.type === 'page-req') token = this.nextToken++;
    this.records.push({ fault, token, group });
    if (group) {
      this.outstanding.push(group);
      if (token !== 0) {
        this.byToken.set(token, group);
        this.tokenOf.set(group, token);
      }
    }
    this.stats.queued++;
  }

  /** As a device fault handler: queue the fault; ENOSPC when full (the core answers FAILURE). */
  private enqueue(fault: IommuFaultRecord, group: IopfGroupImpl | null): 0 | Errno {
    if (!this.open) return 'ENODEV';
    if (this.records.length >= this.depth) {
      this.stats.overflows++;
      return 'ENOSPC';
    }
    this.push(fault, group);
    this.onFault?.();
    return 0;
  }

  /** As a domain's iopf handler: queue every request of the group; throwing refuses it (FAILURE). */
  private enqueueGroup(group: IopfGroupImpl): void {
    if (!this.open) throw new KernelError('ENODEV', `${this.name} is closed`);
    if (this.records.length + group.faults.length > this.depth) {
      this.stats.overflows++;
      throw new KernelError('ENOSPC', `${this.name} is full`);
    }
    const faults = group.faults;
    for (let i = 0; i < faults.length; i++) this.push(faults[i].fault, i === faults.length - 1 ? group : null);
    this.onFault?.();
  }

  /** Forget groups answered some other way (a device removal answered them). */
  private prune(): void {
    for (let i = this.outstanding.length - 1; i >= 0; i--) {
      const g = this.outstanding[i];
      if (g.isPending) continue;
      this.outstanding.splice(i, 1);
      const t = this.tokenOf.get(g);
      if (t !== undefined) {
        this.byToken.delete(t);
        this.tokenOf.delete(g);
      }
    }
  }

  /**
   * Read the oldest record into `buf` (its first u32 is the caller's argsz). Returns the bytes
   * filled, 0 when the queue is empty. EINVAL for an argsz below the minimum or beyond the buffer.
   */
  read(buf: Uint8Array): number {
    const name = this.name;
    if (buf.length < 4) throw new KernelError('EINVAL', `${name}: fault record buffer of ${buf.length} bytes has no argsz`);
    const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const argsz = v.getUint32(FAULT_REC_ARGSZ, true);
    if (argsz < IOMMU_FAULT_RECORD_MINSZ) throw new KernelError('EINVAL', `${name}: fault record argsz ${argsz} is below ${IOMMU_FAULT_RECORD_MINSZ}`);
    if (argsz > buf.length) throw new KernelError('EINVAL', `${name}: fault record argsz ${argsz} exceeds the ${buf.length}-byte buffer`);
    const rec = this.records.shift();
    if (!rec) return 0;
    const filled = Math.min(argsz, IOMMU_FAULT_RECORD_SIZE);
    // Build the whole record, then copy what the caller has room for.
    const full = new Uint8Array(IOMMU_FAULT_RECORD_SIZE);
    const w = new DataView(full.buffer);
    w.setUint32(FAULT_REC_ARGSZ, filled, true);
    w.setUint32(FAULT_REC_VERSION, IOMMU_FAULT_RECORD_VERSION_1, true);
    const f = rec.fault;
    if (f.type === 'page-req') {
      const prm = f.prm;
      const hwPriv = (prm.flags & IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA) !== 0;
      w.setUint32(FAULT_REC_TYPE, IOMMU_FAULT_PAGE_REQ, true);
      w.setUint32(FAULT_REC_PRM_FLAGS, uapiPrmFlags(prm, this.hostTokens || hwPriv), true);
      w.setUint32(FAULT_REC_PRM_PASID, prm.pasid, true);
      w.setUint32(FAULT_REC_PRM_GRPID, prm.grpid, true);
      w.setUint32(FAULT_REC_PRM_PERM, prm.perm, true);
      put64(w, FAULT_REC_PRM_ADDR, prm.addr);
      if (this.hostTokens) {
        put64(w, FAULT_REC_PRM_PRIVATE_DATA, rec.token);
      } else if (hwPriv) {
        put64(w, FAULT_REC_PRM_PRIVATE_DATA, prm.privateData[0]);
        put64(w, FAULT_REC_PRM_PRIVATE_DATA + 8, prm.privateData[1]);
      }
    } else {
      const e = f.event;
      w.setUint32(FAULT_REC_TYPE, IOMMU_FAULT_DMA_UNRECOV, true);
      w.setUint32(FAULT_REC_EVT_REASON, e.reason, true);
      w.setUint32(FAULT_REC_EVT_FLAGS, e.flags, true);
      w.setUint32(FAULT_REC_EVT_PASID, e.pasid, true);
      w.setUint32(FAULT_REC_EVT_PERM, e.perm, true);
      put64(w, FAULT_REC_EVT_ADDR, e.addr);
      put64(w, FAULT_REC_EVT_FETCH_ADDR, e.fetchAddr);
    }
    buf.set(full.subarray(0, filled), 0);
    buf.fill(0, filled, argsz);
    return filled;
  }

  /**
   * Write one page response (its first u32 is the caller's argsz). Returns the bytes consumed.
   * EINVAL for a bad size, version, flag or code, a missing private data or token after PRIV_DATA was
   * negotiated, or a response that matches no pending request; E2BIG for non-zero bytes beyond this
   * kernel's structure. A rejected response changes nothing.
   */
  write(buf: Uint8Array): number {
    try {
      const msg = this.decodeResponse(buf);
      this.respond(msg);
      this.stats.responses++;
      return msg.argsz;
    } catch (e) {
      this.stats.rejected++;
      throw e;
    }
  }

  private decodeResponse(buf: Uint8Array): DecodedResponse {
    const name = this.name;
    if (!this.open) throw new KernelError('EINVAL', `${name}: the fault queue is closed`);
    if (buf.length < 4) throw new KernelError('EINVAL', `${name}: page response buffer of ${buf.length} bytes has no argsz`);
    const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const argsz = v.getUint32(PAGE_RESP_REC_ARGSZ, true);
    if (argsz < IOMMU_PAGE_RESPONSE_RECORD_MINSZ) throw new KernelError('EINVAL', `${name}: page response argsz ${argsz} is below ${IOMMU_PAGE_RESPONSE_RECORD_MINSZ}`);
    if (argsz > buf.length) throw new KernelError('EINVAL', `${name}: page response argsz ${argsz} exceeds the ${buf.length}-byte buffer`);
    for (let i = IOMMU_PAGE_RESPONSE_RECORD_SIZE; i < argsz; i++) {
      if (buf[i] !== 0) throw new KernelError('E2BIG', `${name}: page response byte ${i} is beyond this kernel's ${IOMMU_PAGE_RESPONSE_RECORD_SIZE}-byte structure and not zero`);
    }
    const msg: DecodedResponse = {
      argsz,
      version: v.getUint32(PAGE_RESP_REC_VERSION, true),
      flags: v.getUint32(PAGE_RESP_REC_FLAGS, true),
      pasid: v.getUint32(PAGE_RESP_REC_PASID, true),
      grpid: v.getUint32(PAGE_RESP_REC_GRPID, true),
      code: v.getUint32(PAGE_RESP_REC_CODE, true),
    };
    if ((msg.flags & IOMMU_PAGE_RESP_PRIVATE_DATA) !== 0) {
      if (argsz < IOMMU_PAGE_RESPONSE_RECORD_SIZE) {
        throw new KernelError('EINVAL', `${name}: page response says PRIVATE_DATA but its argsz ${argsz} leaves no room for it`);
      }
      msg.privateData = [get64(v, PAGE_RESP_REC_PRIVATE_DATA), get64(v, PAGE_RESP_REC_PRIVATE_DATA + 8)];
    }
    iommuCheckPageResponse(name, msg);
    if ((this.feats & IOMMU_FAULT_QUEUE_FEAT_PRIV_DATA) !== 0 && (msg.flags & IOMMU_PAGE_RESP_PRIVATE_DATA) === 0) {
      throw new KernelError('EINVAL', `${name}: user space negotiated PRIV_DATA but the response carries none`);
    }
    return msg;
  }

  /** The request (PASID and group index, as user space saw them) a response names. */
  private static namesRequest(prm: IommuFaultPageRequest, msg: IommuPageResponseMsg): boolean {
    if (prm.grpid !== msg.grpid) return false;
    const pasidValid = (prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) !== 0;
    if (pasidValid !== ((msg.flags & IOMMU_PAGE_RESP_PASID_VALID) !== 0)) return false;
    return !pasidValid || prm.pasid === msg.pasid;
  }

  /** The group a response answers, or EINVAL. */
  private target(msg: IommuPageResponseMsg): IopfGroupImpl {
    const name = this.name;
    this.prune();
    const withData = (msg.flags & IOMMU_PAGE_RESP_PRIVATE_DATA) !== 0;
    if (this.hostTokens && withData) {
      const [token, zero] = msg.privateData!;
      const g = zero === 0 ? this.byToken.get(token) : undefined;
      if (!g) throw new KernelError('EINVAL', `${name}: token ${token} names no pending page request (stale or spurious)`);
      if (!IommuUserFaultQueue.namesRequest(g.lastFault.fault.prm, msg)) {
        throw new KernelError('EINVAL', `${name}: token ${token} belongs to another request than pasid ${msg.pasid} grpid ${msg.grpid}`);
      }
      return g;
    }
    for (const g of this.outstanding) {
      const prm = g.lastFault.fault.prm;
      if (!IommuUserFaultQueue.namesRequest(prm, msg)) continue;
      // With the hardware's private data handed out and promised back, it must match too; old user
      // space that never negotiated it gets the request's own data supplied.
      if (!this.hostTokens && withData && !iommuPageResponseMatches(prm, msg)) continue;
      return g;
    }
    throw new KernelError('EINVAL', `${name}: no pending page request matches pasid ${msg.pasid} grpid ${msg.grpid}`);
  }

  private respond(msg: IommuPageResponseMsg): void {
    const g = this.target(msg);
    this.outstanding.splice(this.outstanding.indexOf(g), 1);
    const t = this.tokenOf.get(g);
    if (t !== undefined) {
      this.byToken.delete(t);
      this.tokenOf.delete(g);
    }
    iopfGroupResponse(g, msg.code as 0 | 1 | 2);
  }

  /**
   * Close the queue: EBUSY while groups it was given are unanswered (the 2019 rule: the fault
   * handler cannot go with faults pending). Records not read yet are dropped.
   */
  close(): void {
    if (!this.open) return;
    const pending = this.pendingGroups;
    if (pending > 0) throw new KernelError('EBUSY', `${this.name}: ${pending} page request group(s) are not answered yet`);
    // The device may have been removed (and its handler dropped) since the queue was opened.
    if (this.dev && devFaultParam(this.dev)?.handlerData === this) iommuUnregisterDeviceFaultHandler(this.dev);
    if (this.domain && !this.domain.isFreed) this.domain.iopfHandler = null;
    this.open = false;
    this.records.length = 0;
  }
}

interface DecodedResponse extends IommuPageResponseMsg {
  argsz: number;
}

/** Open `dev`'s user-facing fault queue, VFIO style (see IommuUserFaultQueue). */
export function iommuUserFaultQueueOpen(dev: Device, opts: IommuUserFaultQueueOptions = {}): IommuUserFaultQueue {
  return IommuUserFaultQueue.open(dev, opts);
}

/** Make a fault queue `domain`'s I/O page-fault handler, iommufd style (see IommuUserFaultQueue). */
export function iommuUserFaultQueueForDomain(domain: IommuDomain, opts: IommuUserFaultQueueOptions = {}): IommuUserFaultQueue {
  return IommuUserFaultQueue.forDomain(domain, opts);
}
