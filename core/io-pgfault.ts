/**
 * The I/O page-fault queue (kernel: drivers/iommu/io-pgfault.c): per-device fault state, partial page
 * requests buffered until the LAST one of their group, groups handed to the faulting domain's
 * `iopfHandler` on a named workqueue, and the one place every page response leaves the core.
 *
 * Rules (as io-pgfault.c of 6.17; the per-device state also holds the slot of the 2019 device
 * fault handler, whose API is iommu-fault-legacy.ts):
 * - a device joins one queue (`iopfQueueAddDevice`, EBUSY if it is already on one; ENODEV if its
 *   IOMMU cannot answer page requests) and leaves it with `iopfQueueRemoveDevice`, which drops its
 *   partial requests and answers every pending group INVALID, so no master waits forever;
 * - a request without LAST_PAGE is buffered; the LAST one collects the buffered requests with the same
 *   group index (the PASID is not compared, as the kernel does) into a group; a stall (no PRI group)
 *   is reported with LAST_PAGE and becomes a group of one;
 * - no handler for the fault: INVALID at once, even for a partial request; a full queue or a device
 *   being removed: FAILURE / INVALID at once; a handler that throws (refuses the group): FAILURE;
 * - the handler runs off the reporting thread, on the queue's p-queue workqueue (unbound and
 *   unordered, so groups may complete out of order), and answers with `iopfGroupResponse`, which
 *   sends only while the group is pending: a duplicate or late answer changes nothing.
 *
 * Response codes are values (SUCCESS / INVALID / FAILURE), not errors; the driver turns them into a
 * PRI_RESP or a RESUME through its `pageResponse` op.
 */
import PQueue from 'p-queue';
import type { Device } from '../bus/device.js';
import { KernelError, type Errno } from '../bus/errno.js';
import { devIommu, type IommuDevice } from './iommu-device.js';
import type { IommuDomain } from './iommu-domain.js';
import {
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
  type IommuFaultParam,
  type IommuFaultRecord,
  type IommuPageResponseCode,
  type IopfFault,
  type IopfGroup,
} from './iommu-fault-types.js';
import type { IommuAttachHandle } from './iommu-group.js';
import type { IommuDevFeature, IommuOps } from './iommu-ops.js';

const LOG_NS = 'iommu:core:io-pgfault';

/** Groups a queue holds (queued or running) before new ones are refused with FAILURE. */
export const IOPF_QUEUE_DEFAULT_DEPTH = 4096;

/**
 * A device fault handler (kernel: iommu_dev_fault_handler_t, the 2019 API): gets every fault of the
 * device that no domain I/O page-fault handler takes, and unrecoverable faults. `group` is the pending
 * group of a LAST page request (answer it with `iopfGroupResponse` or `iommuPageResponse`), null
 * otherwise. A non-zero return refuses the fault: a pending group is then answered FAILURE.
 */
export type IommuDevFaultHandler = (fault: IommuFaultRecord, data: unknown, group: IopfGroup | null) => 0 | Errno | Promise<0 | Errno>;

/** Who answers a pending group. */
export type IopfGroupOwner = 'iopf' | 'device-handler';

/** Counters of one device, for reports and tests. */
export interface IopfStats {
  /** Page requests reported (partial and last). */
  requests: number;
  /** Groups completed and handed to a handler. */
  groups: number;
  /** Unrecoverable faults reported. */
  unrecoverable: number;
  /** Responses sent, by code. */
  success: number;
  invalid: number;
  failure: number;
  /** Partial requests dropped (discard, removal). */
  partialsDropped: number;
}

/** The kernel's struct iommu_fault_param — the core's fault state of one device. */
export class DevFaultParam implements IommuFaultParam {
  /** The IOPF queue the device is on (kernel: fault_param->queue). */
  queue: IopfQueue | null = null;
  /** The core put it there when IOPF was enabled (and takes it off when IOPF is disabled). */
  queueJoinedByCore = false;
  /** The 2019 per-device handler and its cookie. */
  handler: IommuDevFaultHandler | null = null;
  handlerData: unknown = null;
  /** Page requests without LAST_PAGE waiting for their group's last one (kernel: partial). */
  readonly partial: IopfFault[] = [];
  /** Groups handed out and not answered yet, oldest first (kernel: faults). */
  readonly pending = new GroupSet('pendingSlot');
  /** Device features enabled through the feature API (IOPF, SVA). */
  readonly features = new Set<IommuDevFeature>();
  /** Live SVA bonds of the device (disabling SVA with bonds is EBUSY). */
  svaBonds = 0;
  /** Set while the device leaves the core: new faults are answered at once. */
  removing = false;
  readonly stats: IopfStats = { requests: 0, groups: 0, unrecoverable: 0, success: 0, invalid: 0, failure: 0, partialsDropped: 0 };

  constructor(readonly dev: Device) {}

  /** Pending groups that `owner` must answer. */
  pendingOf(owner: IopfGroupOwner): number {
    let n = 0;
    for (const g of this.pending) if (g.owner === owner) n++;
    return n;
  }
}

/**
 * An insertion-ordered set of groups kept in an array, each group holding its slot. A Set here would
 * grow and shrink its hash table with every burst of faults, and the garbage collector keeps the
 * tables a long-lived Set discarded (and every group they held, with all it references) alive until
 * its next full collection: the fault path would drag each burst into the old generation.
 */
export class GroupSet implements Iterable<IopfGroupImpl> {
  private readonly items: (IopfGroupImpl | null)[] = [];
  /** Slots in use are [0, end); the array never shrinks (emptied, it is refilled from slot 0). */
  private end = 0;
  private live = 0;

  /** Which of the group's slot fields this set uses (a flag and named fields: a computed key per access costs a keyed lookup). */
  private readonly pendingSet: boolean;

  constructor(slot: 'pendingSlot' | 'domainSlot') {
    this.pendingSet = slot === 'pendingSlot';
  }

  get size(): number {
    return this.live;
  }

  private slotOf(g: IopfGroupImpl): number {
    return this.pendingSet ? g.pendingSlot : g.domainSlot;
  }

  private setSlot(g: IopfGroupImpl, i: number): void {
    if (this.pendingSet) g.pendingSlot = i;
    else g.domainSlot = i;
  }

  has(g: IopfGroupImpl): boolean {
    const i = this.slotOf(g);
    return i >= 0 && i < this.end && this.items[i] === g;
  }

  add(g: IopfGroupImpl): this {
    if (this.has(g)) return this;
    if (this.end === this.items.length) this.items.push(g);
    else this.items[this.end] = g;
    this.setSlot(g, this.end++);
    this.live++;
    return this;
  }

  delete(g: IopfGroupImpl): boolean {
    if (!this.has(g)) return false;
    this.items[this.slotOf(g)] = null;
    this.setSlot(g, -1);
    this.live--;
    if (this.live === 0) this.end = 0;
    else if (this.end > 64 && this.live * 2 < this.end) this.compact();
    return true;
  }

  /** The groups, oldest first; a group deleted before the walk reaches it is skipped, as a Set does. */
  *[Symbol.iterator](): Iterator<IopfGroupImpl> {
    const items = this.items.slice(0, this.end);
    for (const g of items) if (g !== null && this.has(g)) yield g;
  }

  /** Close the gaps, keeping the order. */
  private compact(): void {
    const items = this.items;
    let j = 0;
    for (let i = 0; i < this.end; i++) {
      const g = items[i];
      if (g === null) continue;
      items[j] = g;
      this.setSlot(g, j++);
    }
    for (let i = j; i < this.end; i++) items[i] = null;
    this.end = j;
  }
}

/** The kernel's struct iopf_group */
export class IopfGroupImpl implements IopfGroup {
  /** The code it was answered with, once answered. */
  response: IommuPageResponseCode | null = null;
  /** The iopf handler it was queued for (its domain's when it was queued), until it runs. */
  handler: ((g: IopfGroup) => void | Promise<void>) | null = null;
  /** @internal Its slots in its device's pending set and its domain's (GroupSet), -1 when out. */
  pendingSlot = -1;
  /** @internal */
  domainSlot = -1;

  constructor(
    readonly param: DevFaultParam,
    readonly faults: readonly IopfFault[],
    readonly owner: IopfGroupOwner,
    readonly domain: IommuDomain | null,
    readonly attachHandle: IommuAttachHandle | null,
  ) {}

  get dev(): Device {
    return this.param.dev;
  }

  get lastFault(): IopfFault {
    return this.faults[this.faults.length - 1];
  }

  /** True until answered (or dropped by a device removal, which answers it). */
  get isPending(): boolean {
    return this.param.pending.has(this);
  }
}

/** The kernel's struct iopf_queue — a workqueue that devices' page-request groups run on. */
export class IopfQueue {
  /** The devices on this queue. */
  readonly devices = new Set<Device>();
  /** The kernel's the unbound "iopf_queue/<name>" workqueue. */
  readonly wq: PQueue = new PQueue({ concurrency: Number.POSITIVE_INFINITY });
  /** Groups queued or running. */
  inFlight = 0;
  /**
   * Groups completed since the last work item started, with their handlers: one work item takes them
   * all (see iopfHandlePageRequest), as a reporting thread's pass hands them over together.
   */
  batch: IopfGroupImpl[] = [];
  private freed = false;

  constructor(
    readonly name: string,
    /** Groups it takes before refusing new ones with FAILURE. */
    readonly depth: number,
  ) {}

  get isFreed(): boolean {
    return this.freed;
  }

  /** @internal iopfQueueFree */
  _markFreed(): void {
    this.freed = true;
  }
}

// ---- per-device state ------------------------------------------------------------------------

/** The device's fault state, or null if it has none (not behind an IOMMU, or never needed one). */
export function devFaultParam(dev: Device): DevFaultParam | null {
  const p = devIommu(dev)?.faultParam;
  return p instanceof DevFaultParam ? p : null;
}

/** The device's fault state, created on first use. ENODEV when the device is not probed into an IOMMU. */
export function devFaultParamGet(dev: Device): DevFaultParam {
  const param = devIommu(dev);
  if (!param?.iommuDev) throw new KernelError('ENODEV', `${dev.name} is not behind a registered IOMMU: no fault reporting`);
  if (param.faultParam instanceof DevFaultParam) return param.faultParam;
  if (param.faultParam !== null) throw new KernelError('EINVAL', `${dev.name}: the fault slot holds something that is not the core's`);
  const fp = new DevFaultParam(dev);
  param.faultParam = fp;
  return fp;
}

function opsOf(dev: Device): IommuOps | null {
  return devIommu(dev)?.iommuDev?.ops ?? null;
}

function logOf(dev: Device) {
  return devIommu(dev)?.subsystem.log ?? null;
}

function traceResponse(dev: Device, pasid: number, grpid: number, code: IommuPageResponseCode): void {
  const port = devIommu(dev)?.subsystem.port;
  if (port?.trace.active) {
    port.trace.emit({ kind: 'custom', time: port.now(), track: dev.name, name: 'iopf.response', args: { pasid, grpid, code } });
  }
}

/**
 * Send `code` for the request `evt` through the driver: the one place a page response leaves the
 * core. A driver whose op fails is logged; nothing is retried. Returns the op's promise when it
 * returned one (already guarded: it never rejects), null when the op finished synchronously.
 */
function sendResponse(dev: Device, evt: IopfFault, code: IommuPageResponseCode): Promise<void> | null {
  const ops = opsOf(dev);
  const prm = evt.fault.prm;
  const param = devFaultParam(dev);
  if (param) {
    if (code === IOMMU_PAGE_RESP_SUCCESS) param.stats.success++;
    else if (code === IOMMU_PAGE_RESP_INVALID) param.stats.invalid++;
    else param.stats.failure++;
  }
  traceResponse(dev, prm.pasid, prm.grpid, code);
  if (!ops?.pageResponse) {
    logOf(dev)?.err(dev.name, `no page_response op: request grpid ${prm.grpid} stays unanswered`, LOG_NS);
    return null;
  }
  try {
    // A synchronous op (arm-smmu-v3's queues the command and returns) costs no promise here.
    const r = ops.pageResponse(dev, evt, { pasid: prm.pasid, grpid: prm.grpid, code });
    return r instanceof Promise ? r.catch((e: unknown) => responseFailed(dev, prm.grpid, code, e)) : null;
  } catch (e) {
    responseFailed(dev, prm.grpid, code, e);
    return null;
  }
}

function responseFailed(dev: Device, grpid: number, code: IommuPageResponseCode, e: unknown): void {
  logOf(dev)?.err(dev.name, `page response (grpid ${grpid}, code ${code}) failed: ${e instanceof Error ? e.message : String(e)}`, LOG_NS);
}

const DONE: Promise<void> = Promise.resolve();

/** As sendResponse, as a promise that settles once the driver's op has (never rejects). */
export function iopfSendResponse(dev: Device, evt: IopfFault, code: IommuPageResponseCode): Promise<void> {
  return sendResponse(dev, evt, code) ?? DONE;
}

/** Groups handed to a domain's iopf handler and not answered yet, per domain. */
const domainGroups = new WeakMap<IommuDomain, GroupSet>();

/**
 * Answer INVALID every group still waiting on `domain`: those of `dev` only (null: every device), at
 * `pasid` only (IOMMU_NO_PASID, 0: the RID's; null: any). The detach paths call it, as Linux answers
 * a domain's outstanding faults when it is detached (and iommufd auto-responds on detach), and so does
 * freeing the domain: a stalled transaction never waits on a domain that is gone.
 */
// kernel: iommufd_auto_response_faults() [fault.c]
export function iopfAnswerDomainFaults(domain: IommuDomain, dev: Device | null, pasid: number | null): number {
  const set = domainGroups.get(domain);
  if (!set) return 0;
  let n = 0;
  for (const g of [...set]) {
    if (dev !== null && g.param.dev !== dev) continue;
    if (pasid !== null) {
      const prm = g.lastFault.fault.prm;
      const gp = (prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) !== 0 ? prm.pasid : 0;
      if (gp !== pasid) continue;
    }
    if (iopfGroupResponse(g, IOMMU_PAGE_RESP_INVALID)) n++;
    set.delete(g);
  }
  return n;
}

/**
 * Answer a group: only while it is pending, so a late or duplicate answer is ignored. Returns true
 * when this call answered it.
 */
// kernel: iopf_group_response() [io-pgfault.c]
export function iopfGroupResponse(group: IopfGroup, code: IommuPageResponseCode): boolean {
  if (!(group instanceof IopfGroupImpl)) throw new KernelError('EINVAL', 'iopf_group_response: not a group of the IOPF core');
  checkCode(code);
  if (group.domain) domainGroups.get(group.domain)?.delete(group);
  if (!group.param.pending.delete(group)) return false;
  group.response = code;
  // A driver op that waits (returns a promise) logs its own failure: nothing to wait for here.
  void sendResponse(group.param.dev, group.lastFault, code);
  return true;
}

/** EINVAL unless `code` is SUCCESS, INVALID or FAILURE. */
export function checkCode(code: number): asserts code is IommuPageResponseCode {
  if (code !== IOMMU_PAGE_RESP_SUCCESS && code !== IOMMU_PAGE_RESP_INVALID && code !== IOMMU_PAGE_RESP_FAILURE) {
    throw new KernelError('EINVAL', `page response code ${code} is not SUCCESS (0), INVALID (1) or FAILURE (2)`);
  }
}

// ---- queues ----------------------------------------------------------------------------------

/** A new queue named "iopf_queue/<name>". */
// kernel: iopf_queue_alloc() [io-pgfault.c]
export function iopfQueueAlloc(name: string, opts: { depth?: number } = {}): IopfQueue {
  const depth = opts.depth ?? IOPF_QUEUE_DEFAULT_DEPTH;
  if (!Number.isSafeInteger(depth) || depth < 1) throw new KernelError('EINVAL', `iopf_queue_alloc(${name}): depth ${depth} is not a positive integer`);
  return new IopfQueue(`iopf_queue/${name}`, depth);
}

/**
 * Put `dev` on `queue`: ENODEV if its IOMMU has no page_response op, EBUSY if it is on a queue
 * already.
 */
// kernel: iopf_queue_add_device() [io-pgfault.c]
export function iopfQueueAddDevice(queue: IopfQueue, dev: Device): void {
  if (queue.isFreed) throw new KernelError('EINVAL', `${queue.name} was freed`);
  if (!opsOf(dev)?.pageResponse) throw new KernelError('ENODEV', `${dev.name}: its IOMMU cannot answer page requests`);
  const param = devFaultParamGet(dev);
  if (param.queue) throw new KernelError('EBUSY', `${dev.name} is already on ${param.queue.name}`);
  param.queue = queue;
  param.removing = false;
  queue.devices.add(dev);
}

/** Drop the device's buffered partial requests (their groups never complete). */
function dropPartials(param: DevFaultParam): void {
  param.stats.partialsDropped += param.partial.length;
  param.partial.length = 0;
}

/** Answer `code` to every pending group of `param` that `owner` would have answered (all when null). */
export function iopfAnswerPending(param: DevFaultParam, code: IommuPageResponseCode, owner: IopfGroupOwner | null, pasid: number | null = null): number {
  let n = 0;
  for (const g of [...param.pending]) {
    if (owner !== null && g.owner !== owner) continue;
    if (pasid !== null) {
      const prm = g.lastFault.fault.prm;
      if ((prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) === 0 || prm.pasid !== pasid) continue;
    }
    if (iopfGroupResponse(g, code)) n++;
  }
  return n;
}

/**
 * Take `dev` off `queue`: its partial requests are dropped and every group still pending is answered
 * INVALID (a later answer from its handler is ignored). EINVAL if the device is not on that queue.
 * The driver stops and drains its hardware queue first.
 */
// kernel: iopf_queue_remove_device() [io-pgfault.c]
export function iopfQueueRemoveDevice(queue: IopfQueue, dev: Device): void {
  const param = devFaultParam(dev);
  if (!param || param.queue !== queue) throw new KernelError('EINVAL', `${dev.name} is not on ${queue.name}`);
  dropPartials(param);
  iopfAnswerPending(param, IOMMU_PAGE_RESP_INVALID, 'iopf');
  param.queue = null;
  queue.devices.delete(dev);
}

/**
 * Wait until every group queued so far has been handled (the driver drains its hardware queue first;
 * used before a PASID is reused). ENODEV if the device is on no queue.
 */
// kernel: iopf_queue_flush_dev() [io-pgfault.c]
export async function iopfQueueFlushDev(dev: Device): Promise<void> {
  const q = devFaultParam(dev)?.queue;
  if (!q) throw new KernelError('ENODEV', `${dev.name} is not on an IOPF queue`);
  await q.wq.onIdle();
}

/** Drop every buffered partial request of the queue's devices (after a hardware queue overflow). */
// kernel: iopf_queue_discard_partial() [io-pgfault.c]
export function iopfQueueDiscardPartial(queue: IopfQueue): void {
  for (const dev of queue.devices) {
    const param = devFaultParam(dev);
    if (param) dropPartials(param);
  }
}

/** Remove every device (answering their pending groups), then retire the queue. */
// kernel: iopf_queue_free() [io-pgfault.c]
export function iopfQueueFree(queue: IopfQueue): void {
  for (const dev of [...queue.devices]) iopfQueueRemoveDevice(queue, dev);
  queue.wq.clear();
  queue.inFlight -= queue.batch.length;
  queue.batch = [];
  queue._markFreed();
}

const iommuQueues = new WeakMap<IommuDevice, IopfQueue>();

/**
 * The queue the core puts an IOMMU's devices on when IOPF is enabled through the feature API (the
 * kernel's drivers allocate one per SMMU, named after it: `smmu->evtq.iopf`).
 */
export function iommuIopfQueue(iommu: IommuDevice): IopfQueue {
  let q = iommuQueues.get(iommu);
  if (!q || q.isFreed) {
    q = iopfQueueAlloc(iommu.name);
    iommuQueues.set(iommu, q);
  }
  return q;
}

// ---- reporting page requests -----------------------------------------------------------------

function traceWork(dev: Device, label: string, phase: 'queued' | 'start' | 'end'): void {
  const port = devIommu(dev)?.subsystem.port;
  if (port?.trace.active) port.trace.emit({ kind: 'work', time: port.now(), track: dev.name, label, phase });
}

/** A handler that threw (or rejected) refused its group: FAILURE. */
function iopfGroupFailed(group: IopfGroupImpl, e: unknown): void {
  const prm = group.lastFault.fault.prm;
  logOf(group.param.dev)?.warn(group.param.dev.name, `iopf with pasid ${prm.pasid} aborted: ${e instanceof Error ? e.message : String(e)}`, LOG_NS);
  iopfGroupResponse(group, IOMMU_PAGE_RESP_FAILURE);
}

/**
 * Run one group's handler; returns a promise only when the handler returned one (it settles when the
 * group is done and never rejects), null when the group is done already.
 */
function iopfRunGroup(queue: IopfQueue, group: IopfGroupImpl): Promise<void> | null {
  const dev = group.param.dev;
  const handler = group.handler!;
  group.handler = null;
  const traced = devIommu(dev)?.subsystem.port.trace.active === true;
  const label = traced ? `${queue.name} grpid ${group.lastFault.fault.prm.grpid}` : '';
  if (traced) traceWork(dev, label, 'start');
  let r: void | Promise<void>;
  try {
    // Answered already (the device left the queue meanwhile): nothing to do.
    r = group.isPending ? handler(group) : undefined;
  } catch (e) {
    iopfGroupFailed(group, e);
    iopfGroupFinished(queue, dev, label);
    return null;
  }
  if (!(r instanceof Promise)) {
    iopfGroupFinished(queue, dev, label);
    return null;
  }
  return r.then(
    () => iopfGroupFinished(queue, dev, label),
    (e: unknown) => {
      iopfGroupFailed(group, e);
      iopfGroupFinished(queue, dev, label);
    },
  );
}

/** A group's work is over (`label`: its traced work item, '' when not traced). */
function iopfGroupFinished(queue: IopfQueue, dev: Device, label: string): void {
  queue.inFlight--;
  if (label !== '') traceWork(dev, label, 'end');
}

/**
 * The work item: every group of the batch, each handler started in turn (the workqueue is unbound:
 * a handler that waits does not hold up the next group). Done when every group is.
 */
async function iopfRunBatch(queue: IopfQueue): Promise<void> {
  // p-queue starts a job inside add(): let the reporting thread finish its pass first, as a work
  // item would, and take every group the pass completed.
  await undefined;
  const batch = queue.batch;
  queue.batch = [];
  let waits: Promise<void>[] | null = null;
  for (let i = 0; i < batch.length; i++) {
    const w = iopfRunGroup(queue, batch[i]);
    if (w) (waits ??= []).push(w);
  }
  if (waits) await Promise.all(waits);
}

/**
 * A page request for a domain that has an I/O page-fault handler, on a device that is on a queue:
 * buffer a partial, or complete the group and queue it. Returns 0; the core answers whatever it
 * cannot hand on. Kernel: the iopf part of iommu_report_device_fault()
 */
export function iopfHandlePageRequest(param: DevFaultParam, evt: IopfFault, domain: IommuDomain, handle: IommuAttachHandle | null): 0 {
  const queue = param.queue!;
  const prm = evt.fault.prm;
  if ((prm.flags & IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE) === 0) {
    param.partial.push(evt);
    return 0;
  }
  // Collect the group's partials (by group index only), keeping the others in order.
  let faults: IopfFault[];
  const partial = param.partial;
  if (partial.length === 0) {
    faults = [evt];
  } else {
    faults = [];
    let keep = 0;
    for (let i = 0; i < partial.length; i++) {
      const p = partial[i];
      if (p.fault.prm.grpid === prm.grpid) faults.push(p);
      else partial[keep++] = p;
    }
    partial.length = keep;
    faults.push(evt);
  }
  if (queue.inFlight >= queue.depth) {
    // (kernel: the abort group when no group can be allocated.)
    logOf(param.dev)?.warn(param.dev.name, `iopf with pasid ${prm.pasid} aborted: ${queue.name} is full`, LOG_NS);
    void iopfSendResponse(param.dev, evt, IOMMU_PAGE_RESP_FAILURE);
    return 0;
  }
  const group = new IopfGroupImpl(param, faults, 'iopf', domain, handle);
  param.pending.add(group);
  let byDomain = domainGroups.get(domain);
  if (!byDomain) domainGroups.set(domain, (byDomain = new GroupSet('domainSlot')));
  byDomain.add(group);
  param.stats.groups++;
  queue.inFlight++;
  const handler = domain.iopfHandler!;
  if (devIommu(param.dev)?.subsystem.port.trace.active) traceWork(param.dev, `${queue.name} grpid ${prm.grpid}`, 'queued');
  // One work item per batch: the first group of a batch queues it, the others join before it starts.
  // (A handler's failure is its group's FAILURE answer; the work item itself never rejects.)
  group.handler = handler;
  queue.batch.push(group);
  if (queue.batch.length === 1) void queue.wq.add(() => iopfRunBatch(queue));
  return 0;
}
