/**
 * Attaching domains to PASIDs (kernel: iommu_attach_device_pasid() and friends in iommu.c), and the
 * per-kernel global PASID space (kernel: iommu_alloc_global_pasid()).
 *
 * Rules (kernel 6.17):
 * - attach: ENODEV without a group; EOPNOTSUPP unless the domain has setDevPasid and the driver has a
 *   blocked domain with one (that is how a PASID is detached); EINVAL for a domain of another driver,
 *   PASID 0 (the RID), or a PASID a PASID-capable device of the group cannot issue; EBUSY if the PASID
 *   is taken. setDevPasid runs on every device of the group that has PASIDs; if one fails, those done
 *   are detached again. The entry is published only once every device succeeded, so a fault lookup
 *   never sees an attach that is going to fail.
 * - detach: the blocked domain's setDevPasid on each device, then the entry goes.
 * - replace: needs a handle and an existing attachment (else EINVAL); on failure the PASID keeps the
 *   old domain.
 */
import type { Device } from '../bus/device.js';
import { KernelError } from '../bus/errno.js';
import { devIommu, devIommuOps } from './iommu-device.js';
import { iopfAnswerDomainFaults } from './io-pgfault.js';
import { domainIommuOpsCompatible, type IommuDomain } from './iommu-domain.js';
import { iommuGroupGet, type IommuAttachHandle, type IommuGroup } from './iommu-group.js';
import type { IommuSubsystem } from './iommu.js';

/** The RID: DMA without a PASID (kernel: IOMMU_NO_PASID). */
export const IOMMU_NO_PASID = 0;
/** kernel: IOMMU_FIRST_GLOBAL_PASID */
export const IOMMU_FIRST_GLOBAL_PASID = 1;
/** kernel: IOMMU_PASID_INVALID */
export const IOMMU_PASID_INVALID = 0xffff_ffff;

/** Detach `pasid` of `dev` from `domain` through the blocked domain. // kernel: iommu_remove_dev_pasid() */
async function iommuRemoveDevPasid(group: IommuGroup, dev: Device, pasid: number, domain: IommuDomain): Promise<void> {
  const blocked = devIommuOps(dev).blockedDomain!;
  try {
    await blocked.ops.setDevPasid!(blocked, dev, pasid, domain);
  } catch (e) {
    group.subsystem.log.warn(dev.name, `WARNING: removing PASID ${pasid} failed: ${String(e)}`);
  }
  domain._noteDetach(dev, pasid);
  iopfAnswerDomainFaults(domain, dev, pasid);
}

function hasPasids(dev: Device): boolean {
  return (devIommu(dev)?.maxPasids ?? 0) > 0;
}

/** kernel: __iommu_set_group_pasid() */
async function __iommuSetGroupPasid(domain: IommuDomain, group: IommuGroup, pasid: number, old: IommuDomain | null): Promise<void> {
  const done: Device[] = [];
  for (const dev of group.devices) {
    if (!hasPasids(dev)) continue;
    try {
      await domain.ops.setDevPasid!(domain, dev, pasid, old);
      done.push(dev);
      domain._noteAttach(dev, pasid);
      if (old && old !== domain) {
        old._noteDetach(dev, pasid);
        iopfAnswerDomainFaults(old, dev, pasid);
      }
    } catch (e) {
      for (const d of done) {
        // Back to the old domain if there was one (a driver must accept it), else detach.
        let restored = false;
        if (old) {
          try {
            await old.ops.setDevPasid!(old, d, pasid, domain);
            restored = true;
          } catch (re) {
            group.subsystem.log.warn(d.name, `WARNING: PASID ${pasid} could not return to its previous domain: ${String(re)}`);
          }
        }
        if (!restored) await iommuRemoveDevPasid(group, d, pasid, domain);
      }
      throw e;
    }
  }
}

function groupOf(dev: Device): IommuGroup {
  const group = iommuGroupGet(dev);
  if (!group) throw new KernelError('ENODEV', `${dev.name} is not in an iommu group`);
  return group;
}

/** kernel: iommu_attach_device_pasid() */
export async function iommuAttachDevicePasid(domain: IommuDomain, dev: Device, pasid: number, handle: IommuAttachHandle | null = null): Promise<void> {
  const group = groupOf(dev);
  const ops = devIommuOps(dev);
  if (!domain.ops.setDevPasid || !ops.blockedDomain?.ops.setDevPasid) {
    throw new KernelError('EOPNOTSUPP', `${ops.name}: PASID attach is not supported for ${dev.name}`);
  }
  if (!domainIommuOpsCompatible(ops, domain)) throw new KernelError('EINVAL', `${dev.name}: the domain belongs to another IOMMU driver`);
  if (pasid === IOMMU_NO_PASID) throw new KernelError('EINVAL', `${dev.name}: PASID 0 is the RID; attach the device instead`);
  await group.mutex.run(async () => {
    for (const d of group.devices) {
      const max = devIommu(d)?.maxPasids ?? 0;
      if (max > 0 && (!Number.isInteger(pasid) || pasid < 0 || pasid >= max)) {
        throw new KernelError('EINVAL', `${d.name} supports PASIDs below ${max}, not ${pasid}`);
      }
    }
    if (group.pasidArray.has(pasid) || group.pasidReserved.has(pasid)) {
      throw new KernelError('EBUSY', `${group}: PASID ${pasid} is already attached`);
    }
    group.pasidReserved.add(pasid);
    try {
      await __iommuSetGroupPasid(domain, group, pasid, null);
    } finally {
      group.pasidReserved.delete(pasid);
    }
    if (handle) handle.domain = domain;
    group.pasidArray.set(pasid, { domain, handle });
  });
}

/** Move an attached PASID to `domain` without detaching it in between. // kernel: iommu_replace_device_pasid() */
export async function iommuReplaceDevicePasid(domain: IommuDomain, dev: Device, pasid: number, handle: IommuAttachHandle | null): Promise<void> {
  const group = groupOf(dev);
  if (!domain.ops.setDevPasid) throw new KernelError('EOPNOTSUPP', `${dev.name}: the domain cannot be attached to a PASID`);
  if (!domainIommuOpsCompatible(devIommuOps(dev), domain)) throw new KernelError('EINVAL', `${dev.name}: the domain belongs to another IOMMU driver`);
  if (pasid === IOMMU_NO_PASID) throw new KernelError('EINVAL', `${dev.name}: PASID 0 is the RID`);
  if (!handle) throw new KernelError('EINVAL', `${dev.name}: replacing PASID ${pasid} needs an attach handle`);
  await group.mutex.run(async () => {
    const cur = group.pasidArray.get(pasid);
    if (!cur) throw new KernelError('EINVAL', `${group}: PASID ${pasid} is not attached, nothing to replace`);
    if (cur.handle === handle) {
      group.subsystem.log.warn(dev.name, `WARNING: PASID ${pasid} replaced with the handle it already has`);
      throw new KernelError('EINVAL', `${group}: PASID ${pasid} already uses this handle`);
    }
    if (cur.domain !== domain) await __iommuSetGroupPasid(domain, group, pasid, cur.domain);
    handle.domain = domain;
    group.pasidArray.set(pasid, { domain, handle });
  });
}

/** kernel: iommu_detach_device_pasid() */
export async function iommuDetachDevicePasid(domain: IommuDomain, dev: Device, pasid: number): Promise<void> {
  const group = groupOf(dev);
  await group.mutex.run(async () => {
    for (const d of group.devices) {
      if (hasPasids(d)) await iommuRemoveDevPasid(group, d, pasid, domain);
    }
    group.pasidArray.delete(pasid);
  });
}

/**
 * The attach handle at (group, pasid): ENOENT if there is none (or a bare domain is attached there),
 * EBUSY if its domain is not of `type` (0 matches any). // kernel: iommu_attach_handle_get()
 */
export function iommuAttachHandleGet(group: IommuGroup, pasid: number, type: number): IommuAttachHandle {
  const entry = group.pasidArray.get(pasid);
  if (!entry?.handle) throw new KernelError('ENOENT', `${group}: no attach handle at PASID ${pasid}`);
  if (type !== 0 && entry.domain.type !== type) throw new KernelError('EBUSY', `${group}: PASID ${pasid} holds a domain of another type`);
  return entry.handle;
}

/**
 * A PASID from the kernel's global space in [1, dev max_pasids − 1], or IOMMU_PASID_INVALID when the
 * device has no PASIDs or the range is used up. // kernel: iommu_alloc_global_pasid()
 */
export function iommuAllocGlobalPasid(dev: Device): number {
  const param = devIommu(dev);
  if (!param || param.maxPasids === 0) return IOMMU_PASID_INVALID;
  try {
    return param.subsystem.globalPasids.allocRange(IOMMU_FIRST_GLOBAL_PASID, param.maxPasids - 1);
  } catch {
    return IOMMU_PASID_INVALID;
  }
}

/** Give a PASID back to the kernel's global space. // kernel: iommu_free_global_pasid() */
export function iommuFreeGlobalPasid(subsystem: IommuSubsystem, pasid: number): void {
  if (pasid === IOMMU_PASID_INVALID) throw new KernelError('EINVAL', 'freeing IOMMU_PASID_INVALID');
  subsystem.globalPasids.free(pasid);
}
