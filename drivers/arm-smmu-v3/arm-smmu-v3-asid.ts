/**
 * The stage 1 ASID space of one kernel's SMMUv3s (kernel: arm_smmu_asid_xa and arm_smmu_asid_lock,
 * as Linux had them up to 6.9): one space for every SMMU of the kernel, each ASID owned either by a
 * paging domain or by an mm whose CPU ASID its SVA domains share (kernel: the shared
 * arm_smmu_ctx_desc, refcounted by the SVA domains of that mm on every SMMU).
 *
 * The lock serialises whatever reads an ASID into a CD or changes an owner's ASID: paging attaches,
 * PASID attaches and removals, taking an mm's ASID (which may move a paging domain to another ASID
 * and rewrite its CDs) and giving ASIDs back. Without it a CD could be written with an ASID that is
 * being taken away. Not recursive: nothing run under it may take it again.
 */
import type { DriverCore } from '../../bus/driver-core.js';
import { isKernelError, KernelError } from '../../bus/errno.js';
import { Ida } from '../../core/ida.js';
import { Mutex } from '../../core/mutex.js';
import type { Mm } from '../../mm/mm.js';
import type { ArmSmmuDomain } from './arm-smmu-v3-domain.js';

/** An mm's CPU ASID reserved for its SVA domains (kernel: the arm_smmu_ctx_desc with ->mm set). */
export class ArmSmmuSharedAsid {
  /** SVA domains of the mm using it, on any SMMU of the kernel (kernel: cd->refs). */
  refs = 1;

  constructor(
    readonly mm: Mm,
    readonly asid: number,
  ) {}
}

export type ArmSmmuAsidOwner = ArmSmmuDomain | ArmSmmuSharedAsid;

/** ASID → owner, and the lock over it. */
export class ArmSmmuAsidSpace {
  private readonly owners = new Map<number, ArmSmmuAsidOwner>();
  /** The ASIDs in `owners`, for finding the lowest free one without a scan (the xarray's free marks). */
  private readonly ids = new Ida('arm-smmu-v3 ASID');
  /** The kernel's arm_smmu_asid_lock */
  readonly lock = new Mutex('arm-smmu-v3 ASID');

  /** Lowest free ASID in [1, max] for `owner`; ENOSPC when none is. Kernel: xa_alloc(&arm_smmu_asid_xa) */
  alloc(owner: ArmSmmuAsidOwner, max: number): number {
    let asid: number;
    try {
      asid = this.ids.allocRange(1, max);
    } catch (e) {
      if (isKernelError(e, 'ENOSPC')) throw new KernelError('ENOSPC', `arm-smmu-v3: every ASID in [1, ${max}] is in use`);
      throw e;
    }
    this.owners.set(asid, owner);
    return asid;
  }

  /** Take `asid` for `owner`; EBUSY if someone holds it. */
  // kernel: xa_insert() [xarray.h]
  insert(asid: number, owner: ArmSmmuAsidOwner): void {
    const cur = this.owners.get(asid);
    if (cur !== undefined) throw new KernelError('EBUSY', `arm-smmu-v3: ASID ${asid} is already in use`);
    this.ids.allocRange(asid, asid);
    this.owners.set(asid, owner);
  }

  /** Give `asid` back if `owner` holds it (a domain moved off it no longer does). */
  // kernel: xa_erase() [lib/xarray.c]
  release(asid: number, owner: ArmSmmuAsidOwner): void {
    if (this.owners.get(asid) !== owner) return;
    this.owners.delete(asid);
    this.ids.free(asid);
  }

  owner(asid: number): ArmSmmuAsidOwner | undefined {
    return this.owners.get(asid);
  }

  has(asid: number): boolean {
    return this.owners.has(asid);
  }

  get inUse(): number {
    return this.owners.size;
  }
}

const spaces = new WeakMap<DriverCore, ArmSmmuAsidSpace>();

/** The ASID space of the kernel `core` belongs to. */
export function armSmmuAsidSpace(core: DriverCore): ArmSmmuAsidSpace {
  let space = spaces.get(core);
  if (!space) {
    space = new ArmSmmuAsidSpace();
    spaces.set(core, space);
  }
  return space;
}
