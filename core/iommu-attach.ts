/**
 * Attaching groups and devices to domains, and who owns a group's DMA (kernel: the attach/detach,
 * set-domain and DMA-ownership parts of iommu.c).
 *
 * Rules (kernel 6.17):
 * - iommuAttachDevice: ENODEV without a group; EINVAL unless the group has exactly one device;
 *   EBUSY unless the group is on its default or blocking domain; EINVAL for a domain of another
 *   driver. Every device of the group is then attached; if one fails, all go back to the old domain.
 * - A device whose firmware requires a 1:1 mapping (IOMMU_RESV_DIRECT) refuses the blocking domain.
 * - A deferred attach skips the default domain until the device's driver first uses DMA.
 * - Detach returns the group to its blocking domain if someone owns it, else to its default domain.
 */
import type { Device } from '../bus/device.js';
import { isKernelError, KernelError, type Errno } from '../bus/errno.js';
import { devIommu, devIommuOps, hasIommu } from './iommu-device.js';
import {
  domainIommuOpsCompatible,
  IOMMU_DOMAIN_BLOCKED,
  iommuDomainTypeStr,
  iommuPagingDomainAlloc,
  type IommuDomain,
} from './iommu-domain.js';
import { IommuAttachHandle, iommuGroupGet, type IommuGroup } from './iommu-group.js';
import { iopfAnswerDomainFaults } from './io-pgfault.js';
import { IOMMU_NO_PASID } from './iommu-pasid.js';

/** kernel: IOMMU_SET_DOMAIN_MUST_SUCCEED */
const SET_DOMAIN_MUST_SUCCEED = 1 << 0;

/** Errnos an attach may report as they are; any other becomes ENODEV. */
const ATTACH_ERRNOS: readonly Errno[] = ['EINVAL', 'ENOMEM', 'ENOSPC', 'EBUSY', 'ENODEV'];

function groupOf(dev: Device): IommuGroup {
  const group = iommuGroupGet(dev);
  if (!group) throw new KernelError('ENODEV', `${dev.name} is not in an iommu group`);
  return group;
}

/** kernel: __iommu_attach_device() */
export async function __iommuAttachDevice(domain: IommuDomain, dev: Device, old: IommuDomain | null): Promise<void> {
  const param = devIommu(dev)!;
  try {
    await domain.ops.attachDev(domain, dev, old);
  } catch (e) {
    if (isKernelError(e) && !ATTACH_ERRNOS.includes(e.errno)) {
      throw new KernelError('ENODEV', `${dev.name}: attach to ${iommuDomainTypeStr(domain.type)} domain failed: ${e.message}`);
    }
    throw e;
  }
  param.attachDeferred = false;
  domain._noteAttach(dev, IOMMU_NO_PASID);
  if (old && old !== domain) {
    // The RID left `old`: its faults waiting there are answered (Linux does so on detach).
    old._noteDetach(dev, IOMMU_NO_PASID);
    iopfAnswerDomainFaults(old, dev, IOMMU_NO_PASID);
  }
  const trace = param.subsystem.port.trace;
  if (trace.active) {
    trace.emit({ kind: 'custom', time: param.subsystem.port.now(), track: dev.name, name: 'iommu:attach', args: { type: iommuDomainTypeStr(domain.type) } });
  }
}

/** kernel: __iommu_device_set_domain() */
export async function __iommuDeviceSetDomain(group: IommuGroup, dev: Device, newDomain: IommuDomain, oldDomain: IommuDomain | null, flags: number): Promise<void> {
  const param = devIommu(dev)!;
  if (param.requireDirect && (newDomain.type === IOMMU_DOMAIN_BLOCKED || newDomain === group.blockingDomain)) {
    group.subsystem.log.warn(dev.name, 'Firmware has requested this device have a 1:1 IOMMU mapping, rejecting configuring the device without a 1:1 mapping');
    throw new KernelError('EINVAL', `${dev.name} requires a 1:1 mapping and cannot be attached to a blocking domain`);
  }
  if (param.attachDeferred) {
    if (newDomain === group.defaultDomain) return;
    param.attachDeferred = false;
  }
  try {
    await __iommuAttachDevice(newDomain, dev, oldDomain);
  } catch (e) {
    // Leave the device somewhere safe rather than on a domain about to be freed.
    if ((flags & SET_DOMAIN_MUST_SUCCEED) !== 0 && group.blockingDomain && group.blockingDomain !== newDomain) {
      await __iommuAttachDevice(group.blockingDomain, dev, oldDomain).catch(() => undefined);
    }
    throw e;
  }
}

/**
 * Attach every device of the group to `newDomain`. On failure the devices already moved (and the one
 * that failed) go back to the group's current domain and the error is thrown; with MUST_SUCCEED the
 * others are still tried, the group ends on `newDomain` and the first error is thrown.
 * // kernel: __iommu_group_set_domain_internal()
 */
async function __iommuGroupSetDomainInternal(group: IommuGroup, newDomain: IommuDomain, flags: number): Promise<void> {
  if (group.domain === newDomain) return;
  let firstError: unknown = null;
  for (let i = 0; i < group.devices.length; i++) {
    try {
      await __iommuDeviceSetDomain(group, group.devices[i]!, newDomain, group.domain, flags);
    } catch (e) {
      firstError ??= e;
      if ((flags & SET_DOMAIN_MUST_SUCCEED) !== 0) continue;
      // A well-behaved driver always accepts again a domain that was attached before. A group
      // without a domain yet (first probe) is left for release to clean up.
      const back = group.domain;
      if (back) {
        for (let j = 0; j <= i; j++) {
          const d = group.devices[j]!;
          try {
            await __iommuDeviceSetDomain(group, d, back, newDomain, SET_DOMAIN_MUST_SUCCEED);
          } catch (re) {
            group.subsystem.log.warn(d.name, `WARNING: could not return to the previous domain: ${String(re)}`);
          }
        }
      }
      throw e;
    }
  }
  group.domain = newDomain;
  if (firstError !== null) throw firstError;
}

/** kernel: __iommu_group_set_domain() */
export function __iommuGroupSetDomain(group: IommuGroup, newDomain: IommuDomain): Promise<void> {
  return __iommuGroupSetDomainInternal(group, newDomain, 0);
}

/** kernel: __iommu_group_set_domain_internal(..., IOMMU_SET_DOMAIN_MUST_SUCCEED) — the group always ends on `newDomain`. */
export function __iommuGroupSetDomainMustSucceed(group: IommuGroup, newDomain: IommuDomain): Promise<void> {
  return __iommuGroupSetDomainInternal(group, newDomain, SET_DOMAIN_MUST_SUCCEED);
}

/** kernel: __iommu_group_set_domain_nofail() — a failure is a driver bug, logged as a warning. */
export async function __iommuGroupSetDomainNofail(group: IommuGroup, newDomain: IommuDomain): Promise<void> {
  try {
    await __iommuGroupSetDomainMustSucceed(group, newDomain);
  } catch (e) {
    group.subsystem.log.warn(`iommu group ${group.id}`, `WARNING: a driver failed an attach that must succeed: ${String(e)}`);
  }
}

/** Back to the core-owned domain. // kernel: __iommu_group_set_core_domain() */
export async function __iommuGroupSetCoreDomain(group: IommuGroup): Promise<void> {
  const target = group.owner !== null ? group.blockingDomain : group.defaultDomain;
  if (target) await __iommuGroupSetDomainNofail(group, target);
}

/** Attach a group, enforcing the rules in the header. // kernel: __iommu_attach_group() */
async function __iommuAttachGroup(domain: IommuDomain, group: IommuGroup): Promise<void> {
  if (group.domain && group.domain !== group.defaultDomain && group.domain !== group.blockingDomain) {
    throw new KernelError('EBUSY', `${group} is already attached to a ${iommuDomainTypeStr(group.domain.type)} domain it does not own`);
  }
  const dev = group.firstDev();
  if (!hasIommu(dev) || !domainIommuOpsCompatible(devIommuOps(dev), domain)) {
    throw new KernelError('EINVAL', `${group}: the domain belongs to another IOMMU driver`);
  }
  await __iommuGroupSetDomain(group, domain);
}

/** kernel: iommu_attach_device() */
export async function iommuAttachDevice(domain: IommuDomain, dev: Device): Promise<void> {
  const group = groupOf(dev);
  await group.mutex.run(async () => {
    if (group.devices.length !== 1) {
      throw new KernelError('EINVAL', `${dev.name}: ${group} has ${group.devices.length} devices; attach the group instead`);
    }
    await __iommuAttachGroup(domain, group);
  });
}

/** kernel: iommu_attach_group() */
export function iommuAttachGroup(domain: IommuDomain, group: IommuGroup): Promise<void> {
  return group.mutex.run(() => __iommuAttachGroup(domain, group));
}

/**
 * Undo iommuAttachDevice. A wrong domain or a group of several devices is a caller bug: logged as a
 * warning and ignored, as the kernel WARNs. // kernel: iommu_detach_device()
 */
export async function iommuDetachDevice(domain: IommuDomain, dev: Device): Promise<void> {
  const group = iommuGroupGet(dev);
  if (!group) return;
  await group.mutex.run(async () => {
    if (domain !== group.domain || group.devices.length !== 1) {
      group.subsystem.log.warn(dev.name, `WARNING: iommu_detach_device of a domain the ${group.devices.length}-device group is not attached to`);
      return;
    }
    await __iommuGroupSetCoreDomain(group);
  });
}

/** kernel: iommu_detach_group() */
export function iommuDetachGroup(_domain: IommuDomain, group: IommuGroup): Promise<void> {
  return group.mutex.run(() => __iommuGroupSetCoreDomain(group));
}

/** The domain the device's group is attached to now, or null. // kernel: iommu_get_domain_for_dev() */
export function iommuGetDomainForDev(dev: Device): IommuDomain | null {
  return iommuGroupGet(dev)?.domain ?? null;
}

/** The group's default domain: what the DMA API uses. // kernel: iommu_get_dma_domain() */
export function iommuGetDmaDomain(dev: Device): IommuDomain | null {
  return iommuGroupGet(dev)?.defaultDomain ?? null;
}

/** Do the attach a deferred device skipped. // kernel: iommu_deferred_attach() */
export async function iommuDeferredAttach(dev: Device, domain: IommuDomain): Promise<void> {
  const param = devIommu(dev);
  if (param?.attachDeferred) await __iommuAttachDevice(domain, dev, null);
}

// ---- DMA ownership ------------------------------------------------------------------------------

/**
 * A driver binding to `dev` will use the DMA API: EPROBE_DEFER while the group has no default domain
 * yet; EBUSY if the group is off its default domain, owned, or has PASIDs attached.
 * // kernel: iommu_device_use_default_domain()
 */
export async function iommuDeviceUseDefaultDomain(dev: Device): Promise<void> {
  const group = iommuGroupGet(dev);
  if (!group) return;
  await group.mutex.run(() => {
    if (!group.defaultDomain) throw new KernelError('EPROBE_DEFER', `${group} of ${dev.name} has no default domain yet`);
    if (group.ownerCnt > 0 && (group.domain !== group.defaultDomain || group.owner !== null || !group.pasidArrayEmpty)) {
      throw new KernelError('EBUSY', `${group} of ${dev.name} is in use off its default domain`);
    }
    group.ownerCnt++;
  });
}

/** kernel: iommu_device_unuse_default_domain() */
export async function iommuDeviceUnuseDefaultDomain(dev: Device): Promise<void> {
  const group = iommuGroupGet(dev);
  if (!group) return;
  await group.mutex.run(() => {
    if (group.ownerCnt === 0 || !group.pasidArrayEmpty) {
      group.subsystem.log.warn(dev.name, `WARNING: unbalanced iommu_device_unuse_default_domain on ${group}`);
      return;
    }
    group.ownerCnt--;
  });
}

/** kernel: __iommu_group_alloc_blocking_domain() */
function __iommuGroupAllocBlockingDomain(group: IommuGroup): void {
  if (group.blockingDomain) return;
  const dev = group.firstDev();
  const ops = devIommuOps(dev);
  // Drivers without a blocked domain get an empty paging domain instead.
  group.blockingDomain = ops.blockedDomain ?? iommuPagingDomainAlloc(dev);
}

/** kernel: __iommu_take_dma_ownership() */
async function __iommuTakeDmaOwnership(group: IommuGroup, owner: unknown): Promise<void> {
  if ((group.domain && group.domain !== group.defaultDomain) || !group.pasidArrayEmpty) {
    throw new KernelError('EBUSY', `${group} is off its default domain or has PASIDs attached`);
  }
  __iommuGroupAllocBlockingDomain(group);
  await __iommuGroupSetDomain(group, group.blockingDomain!);
  group.owner = owner;
  group.ownerCnt++;
}

function checkOwner(owner: unknown): void {
  if (owner === null || owner === undefined) throw new KernelError('EINVAL', 'a DMA owner token is required');
}

/** Take the whole group away from the DMA API (VFIO). EPERM if it is in use. // kernel: iommu_group_claim_dma_owner() */
export function iommuGroupClaimDmaOwner(group: IommuGroup, owner: unknown): Promise<void> {
  checkOwner(owner);
  return group.mutex.run(async () => {
    if (group.ownerCnt > 0) throw new KernelError('EPERM', `${group} is already in use (${group.ownerCnt} user(s))`);
    await __iommuTakeDmaOwnership(group, owner);
  });
}

/** As above for one device; devices of a group may share the claim with the same owner token. // kernel: iommu_device_claim_dma_owner() */
export async function iommuDeviceClaimDmaOwner(dev: Device, owner: unknown): Promise<void> {
  checkOwner(owner);
  const group = groupOf(dev);
  await group.mutex.run(async () => {
    if (group.ownerCnt > 0) {
      if (group.owner !== owner) throw new KernelError('EPERM', `${group} of ${dev.name} is used by someone else`);
      group.ownerCnt++;
      return;
    }
    await __iommuTakeDmaOwnership(group, owner);
  });
}

/** kernel: __iommu_release_dma_ownership() */
async function __iommuReleaseDmaOwnership(group: IommuGroup): Promise<void> {
  if (group.ownerCnt === 0 || group.owner === null || !group.pasidArrayEmpty) {
    group.subsystem.log.warn(`iommu group ${group.id}`, 'WARNING: releasing DMA ownership that is not held (or with PASIDs attached)');
    return;
  }
  group.ownerCnt = 0;
  group.owner = null;
  if (group.defaultDomain) await __iommuGroupSetDomainNofail(group, group.defaultDomain);
}

/** kernel: iommu_group_release_dma_owner() */
export function iommuGroupReleaseDmaOwner(group: IommuGroup): Promise<void> {
  return group.mutex.run(() => __iommuReleaseDmaOwnership(group));
}

/** kernel: iommu_device_release_dma_owner() */
export async function iommuDeviceReleaseDmaOwner(dev: Device): Promise<void> {
  const group = groupOf(dev);
  await group.mutex.run(async () => {
    if (group.ownerCnt > 1) group.ownerCnt--;
    else await __iommuReleaseDmaOwnership(group);
  });
}

/** kernel: iommu_group_dma_owner_claimed() — true while any user holds the group. */
export function iommuGroupDmaOwnerClaimed(group: IommuGroup): boolean {
  return group.ownerCnt > 0;
}

// ---- RID attach handles -------------------------------------------------------------------------

/**
 * Attach a domain to the group and publish `handle` as the RID's entry (PASID 0), so fault
 * reporting finds the domain. EBUSY if the RID already has a handle. // kernel: iommu_attach_group_handle()
 */
export function iommuAttachGroupHandle(domain: IommuDomain, group: IommuGroup, handle: IommuAttachHandle): Promise<void> {
  return group.mutex.run(async () => {
    if (group.pasidArray.has(IOMMU_NO_PASID) || group.pasidReserved.has(IOMMU_NO_PASID)) {
      throw new KernelError('EBUSY', `${group}: the RID already has an attach handle`);
    }
    group.pasidReserved.add(IOMMU_NO_PASID);
    try {
      await __iommuAttachGroup(domain, group);
    } finally {
      group.pasidReserved.delete(IOMMU_NO_PASID);
    }
    handle.domain = domain;
    group.pasidArray.set(IOMMU_NO_PASID, { domain, handle });
  });
}

/** kernel: iommu_detach_group_handle() */
export function iommuDetachGroupHandle(_domain: IommuDomain, group: IommuGroup): Promise<void> {
  return group.mutex.run(async () => {
    await __iommuGroupSetCoreDomain(group);
    group.pasidArray.delete(IOMMU_NO_PASID);
  });
}

/** Switch the group to `newDomain` without a blocking step, publishing `handle`. // kernel: iommu_replace_group_handle() */
export function iommuReplaceGroupHandle(group: IommuGroup, newDomain: IommuDomain, handle: IommuAttachHandle): Promise<void> {
  return group.mutex.run(async () => {
    await __iommuGroupSetDomain(group, newDomain);
    handle.domain = newDomain;
    group.pasidArray.set(IOMMU_NO_PASID, { domain: newDomain, handle });
  });
}

export { IommuAttachHandle };
