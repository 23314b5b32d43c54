/**
 * Shared Virtual Addressing (kernel: drivers/iommu/iommu-sva.c, and the device feature API of
 * 5.x–6.15 it depended on): a device issues DMA with a PASID into a process's address space, the
 * IOMMU walking the process's own CPU page tables, and its page faults resolved by the mm.
 *
 * Features (per device): IOPF first (the driver enables PRI or stall, the core puts the device on its
 * IOMMU's IOPF queue), then SVA (needs IOPF, PASIDs and a driver that can share an mm); disabling goes
 * the other way (IOPF while SVA is on: EBUSY; SVA while bonds exist: EBUSY).
 *
 * Bind (under the kernel's SVA lock): the mm gets one PASID from the global allocator, in
 * [1, max_pasids − 1] of the first device it is bound to (ENOSPC when none is free; a device whose
 * PASIDs cannot reach the mm's PASID: EOVERFLOW). A second bind of the same
 * (device, mm) returns the same bond with one more user. A new bond attaches one of the mm's SVA
 * domains to (device, PASID), or allocates one from the driver (`domainAllocSva`), which shares the
 * mm's page table and turns its mmu-notifier invalidations into TLB and ATC invalidations.
 *
 * mm exit while bound: the driver's notifier makes the PASID stop translating quietly; the core's
 * notifier calls each bond's `mmExit` callback (the 2019 SVA API) so the device driver can stop its
 * device. The device's page requests for the PASID then get INVALID. Unbind detaches the PASID; the
 * PASID stays with the mm until the mm is torn down (last mmdrop), as in Linux today.
 */
import type { Device } from '../bus/device.js';
import { isKernelError, KernelError } from '../bus/errno.js';
import { handleMmFault } from '../mm/fault.js';
import type { Mm } from '../mm/mm.js';
import { mmuNotifierPut, mmuNotifierRegister, type MmuNotifier } from '../mm/mmu-notifier.js';
import { PROT_EXEC, PROT_READ, PROT_WRITE } from '../mm/prot.js';
import { devFaultParam, devFaultParamGet, iommuIopfQueue, iopfAnswerPending, iopfGroupResponse, iopfQueueAddDevice, iopfQueueFlushDev, iopfQueueRemoveDevice } from './io-pgfault.js';
import { devIommu } from './iommu-device.js';
import { IOMMU_DOMAIN_SVA, iommuDomainFree, iommuDomainInit, type IommuDomain } from './iommu-domain.js';
import {
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
  type IommuPageResponseCode,
  type IopfFault,
  type IopfGroup,
} from './iommu-fault-types.js';
import { IommuAttachHandle } from './iommu-group.js';
import type { IommuDevFeature } from './iommu-ops.js';
import { iommuAllocGlobalPasid, iommuAttachDevicePasid, iommuAttachHandleGet, iommuDetachDevicePasid, iommuFreeGlobalPasid, IOMMU_PASID_INVALID } from './iommu-pasid.js';
import type { IommuSubsystem } from './iommu.js';
import { Mutex } from './mutex.js';

const LOG_NS = 'iommu:core:sva';

// ---- device features -------------------------------------------------------------------------

/** True if `feat` is enabled on `dev`. */
// kernel: iommu_dev_feature_enabled() [iommu.c] @v6.1
export function iommuDevFeatureEnabled(dev: Device, feat: IommuDevFeature): boolean {
  return devFaultParam(dev)?.features.has(feat) ?? false;
}

/**
 * Enable a device feature (the API of 5.x–6.15): ENODEV without an IOMMU or its feature op.
 * IOPF: the driver enables PRI or stall (its `devEnableFeat`), then the device joins its IOMMU's IOPF
 * queue (ENODEV if the IOMMU cannot answer page requests). SVA: EINVAL before IOPF, ENODEV without
 * PASIDs or a driver that can share an mm (the driver's part of SVA is `domainAllocSva`). EBUSY when
 * already enabled.
 */
// kernel: iommu_dev_enable_feature() [iommu.c] @v6.15
export async function iommuDevEnableFeature(dev: Device, feat: IommuDevFeature): Promise<void> {
  const di = devIommu(dev);
  const ops = di?.iommuDev?.ops;
  if (!di || !ops?.devEnableFeat) throw new KernelError('ENODEV', `${dev.name}: no IOMMU feature ${feat} to enable`);
  const param = devFaultParamGet(dev);
  if (param.features.has(feat)) throw new KernelError('EBUSY', `${dev.name}: ${feat} is already enabled`);
  if (feat === 'IOPF') {
    if (!ops.pageResponse) throw new KernelError('ENODEV', `${dev.name}: ${ops.name} cannot answer page requests`);
    await ops.devEnableFeat(dev, 'IOPF');
    // A driver may have put the device on a queue of its own.
    const joined = param.queue === null;
    if (joined) {
      try {
        iopfQueueAddDevice(iommuIopfQueue(di.iommuDev!), dev);
      } catch (e) {
        await ops.devDisableFeat?.(dev, 'IOPF');
        throw e;
      }
    }
    param.features.add('IOPF');
    param.queueJoinedByCore = joined;
    return;
  }
  if (feat !== 'SVA') throw new KernelError('EINVAL', `${dev.name}: unknown device feature ${String(feat)}`);
  if (!param.features.has('IOPF')) throw new KernelError('EINVAL', `${dev.name}: enable IOPF before SVA`);
  if (di.maxPasids === 0) throw new KernelError('ENODEV', `${dev.name} has no PASIDs: no SVA`);
  if (!ops.domainAllocSva) throw new KernelError('ENODEV', `${ops.name} cannot share a process address space`);
  param.features.add('SVA');
}

/**
 * Disable a device feature: EBUSY without an IOMMU or its op (as the old core did), EINVAL when not
 * enabled, EBUSY for SVA with live bonds or IOPF while SVA is on. Disabling IOPF takes the device off
 * its IOPF queue (pending groups answered INVALID) before the driver turns PRI or stall off.
 */
// kernel: iommu_dev_disable_feature() [iommu.c] @v6.15
export async function iommuDevDisableFeature(dev: Device, feat: IommuDevFeature): Promise<void> {
  const ops = devIommu(dev)?.iommuDev?.ops;
  if (!ops?.devDisableFeat) throw new KernelError('EBUSY', `${dev.name}: no IOMMU feature ${feat} to disable`);
  const param = devFaultParam(dev);
  if (!param?.features.has(feat)) throw new KernelError('EINVAL', `${dev.name}: ${feat} is not enabled`);
  if (feat === 'SVA') {
    if (param.svaBonds > 0) throw new KernelError('EBUSY', `${dev.name}: ${param.svaBonds} SVA bond(s) still bound`);
    param.features.delete('SVA');
    return;
  }
  if (param.features.has('SVA')) throw new KernelError('EBUSY', `${dev.name}: disable SVA before IOPF`);
  if (param.queue && param.queueJoinedByCore) iopfQueueRemoveDevice(param.queue, dev);
  param.features.delete('IOPF');
  await ops.devDisableFeat(dev, 'IOPF');
}

// ---- per-mm state -----------------------------------------------------------------------------

/** The kernel's struct iommu_mm_data — the PASID an mm got and its SVA domains. */
class IommuMm {
  readonly svaDomains: IommuDomain[] = [];
  readonly bonds = new Set<IommuSva>();
  /** The core's notifier, while the mm has bonds and has not exited. */
  notifier: MmuNotifier | null = null;

  constructor(
    readonly mm: Mm,
    readonly pasid: number,
    readonly subsystem: IommuSubsystem,
  ) {}
}

const iommuMms = new WeakMap<Mm, IommuMm>();
const svaLocks = new WeakMap<IommuSubsystem, Mutex>();

/** The kernel's iommu_sva_lock (one per kernel here) */
function svaLock(subsystem: IommuSubsystem): Mutex {
  let m = svaLocks.get(subsystem);
  if (!m) {
    m = new Mutex('iommu sva');
    svaLocks.set(subsystem, m);
  }
  return m;
}

/** The PASID `mm` was given for SVA, or IOMMU_PASID_INVALID. */
// kernel: mm_get_enqcmd_pasid() [iommu.h]
export function iommuMmPasid(mm: Mm): number {
  return iommuMms.get(mm)?.pasid ?? IOMMU_PASID_INVALID;
}

/** The mm's PASID data, allocating a PASID for `dev` on first use. */
// kernel: iommu_alloc_mm_data() [iommu-sva.c]
function iommuAllocMmData(mm: Mm, dev: Device, subsystem: IommuSubsystem): IommuMm {
  const maxPasids = devIommu(dev)!.maxPasids;
  const existing = iommuMms.get(mm);
  if (existing) {
    if (existing.pasid >= maxPasids) {
      throw new KernelError('EOVERFLOW', `${dev.name} supports PASIDs below ${maxPasids}; pid ${mm.pid} has PASID ${existing.pasid}`);
    }
    return existing;
  }
  const pasid = iommuAllocGlobalPasid(dev);
  if (pasid === IOMMU_PASID_INVALID) throw new KernelError('ENOSPC', `${dev.name}: no free PASID below ${maxPasids} for pid ${mm.pid}`);
  const data = new IommuMm(mm, pasid, subsystem);
  iommuMms.set(mm, data);
  // (kernel: mm_pasid_drop() from __mmdrop(): the PASID lives as long as the mm struct.)
  mm.onTeardown(() => {
    iommuMms.delete(mm);
    iommuFreeGlobalPasid(subsystem, pasid);
  });
  return data;
}

// ---- bonds ------------------------------------------------------------------------------------

/** Told when the bound mm exits, so the device driver can stop DMA on the PASID (the 2019 mm_exit). */
export type IommuSvaMmExit = (dev: Device, pasid: number, drvdata: unknown) => void | Promise<void>;

export interface IommuSvaBindOptions {
  /** Called once if the mm exits while bound. */
  mmExit?: IommuSvaMmExit;
  /** Passed to `mmExit`. */
  drvdata?: unknown;
}

/** A bond between a device and an mm (kernel: struct iommu_sva, an attach handle). */
export class IommuSva extends IommuAttachHandle {
  /** bind calls not yet matched by unbind. */
  users = 1;
  /** The mm exited while bound (mmExit was called). */
  mmExited = false;

  constructor(
    readonly dev: Device,
    readonly iommuMm: IommuMm,
    readonly mmExit: IommuSvaMmExit | null,
    readonly drvdata: unknown,
  ) {
    super();
  }

  get mm(): Mm {
    return this.iommuMm.mm;
  }

  get pasid(): number {
    return this.iommuMm.pasid;
  }
}

/** The core's notifier: tell every bond's driver that the mm is going. */
function iommuMmRelease(data: IommuMm): Promise<void> {
  const sub = data.notifier;
  data.notifier = null;
  const calls: Promise<void>[] = [];
  for (const bond of data.bonds) {
    if (bond.mmExited) continue;
    bond.mmExited = true;
    if (!bond.mmExit) continue;
    const log = data.subsystem.log;
    calls.push(
      Promise.resolve()
        .then(() => bond.mmExit!(bond.dev, bond.pasid, bond.drvdata))
        .catch((e: unknown) => log.err(bond.dev.name, `SVA mm_exit callback for PASID ${bond.pasid} failed: ${e instanceof Error ? e.message : String(e)}`, LOG_NS)),
    );
  }
  // The subscription's mm reference must not keep the struct (and its PASID) alive past exit.
  if (sub) mmuNotifierPut(sub);
  return Promise.all(calls).then(() => undefined);
}

function svaBondCreated(data: IommuMm, bond: IommuSva): void {
  data.bonds.add(bond);
  if (!data.notifier && data.mm.users > 0) {
    data.notifier = mmuNotifierRegister(data.mm, { release: () => iommuMmRelease(data) });
  }
}

/**
 * Bind `dev` to `mm` for SVA; returns the bond (its PASID is the mm's). ENODEV without a group or with
 * SVA not enabled; EINVAL for an mm that has exited; ENOSPC / EOVERFLOW for PASIDs (see the header);
 * EBUSY if the PASID is attached to something else on this device; EOPNOTSUPP without
 * `domainAllocSva`.
 */
// kernel: iommu_sva_bind_device() [iommu-sva.c]
export async function iommuSvaBindDevice(dev: Device, mm: Mm, opts: IommuSvaBindOptions = {}): Promise<IommuSva> {
  const di = devIommu(dev);
  const group = di?.group;
  if (!di || !group) throw new KernelError('ENODEV', `${dev.name} is not in an iommu group`);
  if (!devFaultParam(dev)?.features.has('SVA')) throw new KernelError('ENODEV', `${dev.name}: SVA is not enabled`);
  const subsystem = di.subsystem;
  return svaLock(subsystem).run(async () => {
    if (mm.state !== 'live' || mm.users === 0) throw new KernelError('EINVAL', `pid ${mm.pid}: its address space has exited`);
    const data = iommuAllocMmData(mm, dev, subsystem);
    const pasid = data.pasid;

    // The same (device, mm) again: one more user of the same bond.
    try {
      const handle = iommuAttachHandleGet(group, pasid, IOMMU_DOMAIN_SVA);
      if (!(handle instanceof IommuSva) || handle.mm !== mm) throw new KernelError('EBUSY', `${dev.name}: PASID ${pasid} is bound to another address space`);
      handle.users++;
      return handle;
    } catch (e) {
      if (!isKernelError(e, 'ENOENT')) throw e;
    }

    const bond = new IommuSva(dev, data, opts.mmExit ?? null, opts.drvdata ?? null);
    // Share a domain the mm already has (another device of the same IOMMU), if one fits.
    for (const domain of data.svaDomains) {
      try {
        await iommuAttachDevicePasid(domain, dev, pasid, bond);
      } catch {
        continue;
      }
      (domain.cookie as { users: number }).users++;
      svaBondCreated(data, bond);
      devFaultParamGet(dev).svaBonds++;
      return bond;
    }

    const ops = di.iommuDev!.ops!;
    if (!ops.domainAllocSva) throw new KernelError('EOPNOTSUPP', `${ops.name} cannot allocate SVA domains`);
    const domain = ops.domainAllocSva(dev, mm);
    iommuDomainInit(domain, IOMMU_DOMAIN_SVA, ops);
    mm.mmgrab();
    domain.cookie = { type: 'sva', mm, users: 1 };
    domain.iopfHandler = iommuSvaIopfHandler;
    try {
      await iommuAttachDevicePasid(domain, dev, pasid, bond);
    } catch (e) {
      await iommuDomainFree(domain);
      throw e;
    }
    data.svaDomains.push(domain);
    svaBondCreated(data, bond);
    devFaultParamGet(dev).svaBonds++;
    return bond;
  });
}

/**
 * Drop one user of the bond; the last one detaches the PASID from the device, lets the device's IOPF
 * queue finish what it holds, answers INVALID anything still pending for the PASID, and frees the SVA
 * domain when no device uses it. The PASID stays with the mm. The caller has stopped the device's DMA
 * on the PASID. EINVAL for a bond already unbound.
 */
// kernel: iommu_sva_unbind_device() [iommu-sva.c]
export async function iommuSvaUnbindDevice(bond: IommuSva): Promise<void> {
  const data = bond.iommuMm;
  await svaLock(data.subsystem).run(async () => {
    if (bond.users <= 0) throw new KernelError('EINVAL', `${bond.dev.name}: SVA bond for PASID ${bond.pasid} is already unbound`);
    if (--bond.users > 0) return;
    const dev = bond.dev;
    const domain = bond.domain!;
    await iommuDetachDevicePasid(domain, dev, bond.pasid);
    const param = devFaultParam(dev);
    if (param) {
      if (param.queue) await iopfQueueFlushDev(dev);
      iopfAnswerPending(param, IOMMU_PAGE_RESP_INVALID, 'iopf', bond.pasid);
      param.svaBonds--;
    }
    data.bonds.delete(bond);
    const cookie = domain.cookie as { users: number };
    if (--cookie.users === 0) {
      data.svaDomains.splice(data.svaDomains.indexOf(domain), 1);
      await iommuDomainFree(domain);
    }
    if (data.bonds.size === 0 && data.notifier) {
      const sub = data.notifier;
      data.notifier = null;
      mmuNotifierPut(sub);
    }
  });
}

/** The bond's PASID, or IOMMU_PASID_INVALID once unbound. */
// kernel: iommu_sva_get_pasid() [iommu-sva.c]
export function iommuSvaGetPasid(bond: IommuSva): number {
  return bond.users > 0 ? bond.pasid : IOMMU_PASID_INVALID;
}

// ---- I/O page faults --------------------------------------------------------------------------

/**
 * Resolve one request against `mm`: INVALID without a PASID, for an exiting mm, an address outside
 * every VMA, or an access the VMA forbids; SUCCESS once the page is mapped. Never FAILURE.
 */
// kernel: iommu_sva_handle_mm() [iommu-sva.c]
export function iommuSvaHandleMm(fault: IopfFault, mm: Mm): IommuPageResponseCode {
  const prm = fault.fault.prm;
  if ((prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) === 0) return IOMMU_PAGE_RESP_INVALID;
  // (kernel: mmget_not_zero() ... mmput_async(). Nothing below yields, so the users the check sees)
  // cannot go away before the fault is handled: the check is all the reference would buy.
  if (mm.users === 0) return IOMMU_PAGE_RESP_INVALID;
  let status: IommuPageResponseCode = IOMMU_PAGE_RESP_INVALID;
  const vma = mm.findVma(prm.addr);
  if (vma) {
    const perm = prm.perm;
    let needed = 0;
    if ((perm & IOMMU_FAULT_PERM_READ) !== 0) needed |= PROT_READ;
    if ((perm & IOMMU_FAULT_PERM_WRITE) !== 0) needed |= PROT_WRITE;
    if ((perm & IOMMU_FAULT_PERM_EXEC) !== 0) needed |= PROT_EXEC;
    if ((vma.prot & needed) === needed) {
      const access = (perm & IOMMU_FAULT_PERM_WRITE) !== 0 ? 'write' : (perm & IOMMU_FAULT_PERM_EXEC) !== 0 ? 'exec' : 'read';
      if (handleMmFault(mm, prm.addr, access).ok) status = IOMMU_PAGE_RESP_SUCCESS;
    }
  }
  return status;
}

/**
 * The SVA domain's I/O page-fault handler: resolve each request in order, stop at the first that is
 * not SUCCESS (that verdict sticks), answer the group once.
 */
// kernel: iommu_sva_handle_iopf() [io-pgfault.c] @v6.7
export function iommuSvaIopfHandler(group: IopfGroup): void {
  const domain = group.domain;
  const cookie = domain?.cookie;
  if (!cookie || cookie.type !== 'sva') throw new KernelError('EINVAL', `${group.dev.name}: SVA fault handler on a domain that shares no mm`);
  let status: IommuPageResponseCode = IOMMU_PAGE_RESP_SUCCESS;
  const faults = group.faults;
  for (let i = 0; i < faults.length; i++) {
    status = iommuSvaHandleMm(faults[i], cookie.mm);
    if (status !== IOMMU_PAGE_RESP_SUCCESS) break;
  }
  iopfGroupResponse(group, status);
}
