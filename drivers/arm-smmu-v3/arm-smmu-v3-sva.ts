/**
 * SVA domains (kernel: drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-sva.c): a stage 1 context that walks a
 * process's own CPU page tables. The iommu core allocates one per (mm, SMMU) through the ops'
 * `domainAllocSva` and attaches it to PASIDs; this file builds the CD, follows the mm's changes and
 * stops translating when the mm exits.
 *
 * - CD: TTB0 is the mm's level-0 table, with the CPU's TCR_EL1 walk attributes (T0SZ, TG0 4K,
 *   IRGN/ORGN WBWA, SH inner, IPS from the machine's PA size) and MAIR_EL1, so the SMMU reads the same
 *   descriptors the CPU does; S (stall) as for any CD of the master.
 * - ASID: the mm's own CPU ASID, as Linux had it up to 6.9 (arm_smmu_share_asid()), so the SMMU and
 *   the CPU tag the same address space alike. The first SVA attach of the domain takes it in the
 *   kernel's SMMU ASID space (arm-smmu-v3-asid.ts), under the ASID lock: free, it is reserved for the
 *   mm; held for the same mm (its SVA domain on another SMMU), one more reference; held by a paging
 *   domain, that domain moves to a fresh ASID (every CD of it rewritten hitlessly, then TLBI of the
 *   old ASID) and the mm takes it. The last SVA domain of the mm gives it back. An SMMU with 8-bit
 *   ASIDs (IDR0.ASID16 clear) cannot carry an mm's ASID above 255: such a bind fails (Linux refuses
 *   SVA outright when the SMMU's ASIDs are narrower than the CPU's).
 * - mmu notifier: `invalidateRange` becomes TLBI by VA for the ASID (a whole-ASID TLBI from
 *   CMDQ_MAX_TLBI_OPS pages on without range invalidation) and ATC_INV for every ATS master on the
 *   domain; `release` (mm exit) rewrites every attached CD to the quiet form (valid, EPD0, no walk, no
 *   stall or record) so DMA on the PASID aborts without events, then invalidates the ASID and ATCs.
 * - set_dev_pasid needs the mm alive (EINVAL after exit).
 * - free: TLBI of the ASID on this SMMU, so nothing stays cached under it once it is reused.
 */
import type { Device } from '../../bus/device.js';
import { KernelError } from '../../bus/errno.js';
import type { IommuDomain } from '../../core/iommu-domain.js';
import type { DomainOps } from '../../core/iommu-ops.js';
import type { Mm } from '../../mm/mm.js';
import { mmuNotifierPut, mmuNotifierRegister, type MmuNotifier } from '../../mm/mmu-notifier.js';
import { PAGE_SIZE } from '../../mm/page-alloc.js';
import { ArmSmmuSharedAsid, armSmmuAsidSpace, type ArmSmmuAsidSpace } from './arm-smmu-v3-asid.js';
import { armSmmuMakeQuietCd, armSmmuMakeS1Cd } from './arm-smmu-v3-cd.js';
import { ArmSmmuDomain, armSmmuTlbInvAsid, armSmmuTlbInvContext, armSmmuTlbInvRangeDomainWait } from './arm-smmu-v3-domain.js';
import { newEntry } from './arm-smmu-v3-entry.js';
import { armSmmuSetPasid, armSmmuWriteCdEntry, masterOf, type ArmSmmuMaster } from './arm-smmu-v3-master.js';
import { ARM_SMMU_FEAT_RANGE_INV, ARM_SMMU_FEAT_STALL_FORCE, ARM_SMMU_FEAT_TRANS_S1, CTXDESC_CD_0_ASID, CTXDESC_CD_0_V } from './arm-smmu-v3-regs.js';

/** Pages from which an invalidation becomes one TLBI for the whole ASID (kernel: CMDQ_MAX_TLBI_OPS, 1 << (PAGE_SHIFT - 3)). */
export const CMDQ_MAX_TLBI_OPS = 1 << (12 - 3);

/** An SVA domain of this driver: stage 1 over an mm's page tables. */
export class ArmSmmuSvaDomain extends ArmSmmuDomain {
  /** The subscription to the mm's page-table changes (kernel: smmu_domain->mmu_notifier). */
  notifier: MmuNotifier | null = null;
  /** The mm exited: its CDs are quiet. */
  released = false;
  /** The mm's ASID, once the first attach took it (kernel: the shared arm_smmu_ctx_desc). */
  sharedAsid: ArmSmmuSharedAsid | null = null;

  constructor(
    ops: DomainOps,
    readonly mm: Mm,
  ) {
    super(ops);
  }
}

/** The CD of an SVA attachment: the mm's tables, walked as the CPU walks them. Kernel: arm_smmu_make_sva_cd() */
export function armSmmuMakeSvaCd(target: Uint32Array, master: ArmSmmuMaster, mm: Mm, asid: number): void {
  const s1 = mm.stage1;
  armSmmuMakeS1Cd(target, master.stallEnabled, {
    asid,
    s1: {
      ttbr: s1.ttb0,
      tcr: { ips: s1.ips, tg: s1.tg0, sh: s1.sh0, orgn: s1.orgn0, irgn: s1.irgn0, tsz: s1.t0sz, epd1: s1.epd1 },
      mair: s1.mair,
    },
  });
}

// kernel: arm_smmu_mm_arch_invalidate_secondary_tlbs() [arm-smmu-v3-sva.c]
async function armSmmuMmInvalidate(domain: ArmSmmuSvaDomain, start: number, end: number): Promise<void> {
  const smmu = domain.smmu;
  // No ASID yet: no CD was written, nothing can be cached.
  if (!smmu || domain.released || !domain.sharedAsid) return;
  let size = end - start;
  if ((smmu.features & ARM_SMMU_FEAT_RANGE_INV) === 0 && size >= CMDQ_MAX_TLBI_OPS * PAGE_SIZE) size = 0;
  if (size === 0) await armSmmuTlbInvContext(domain);
  else await armSmmuTlbInvRangeDomainWait(start, size, PAGE_SIZE, false, domain);
}

/** The mm is going: every CD of the domain stops walking it, quietly. */
// kernel: arm_smmu_mm_release() [arm-smmu-v3-sva.c]
async function armSmmuMmRelease(domain: ArmSmmuSvaDomain): Promise<void> {
  const smmu = domain.smmu;
  domain.released = true;
  if (!smmu || !domain.sharedAsid) return;
  const stallForce = (smmu.features & ARM_SMMU_FEAT_STALL_FORCE) !== 0;
  for (const md of [...domain.devices]) {
    const table = md.master.cdTable;
    const pa = table?.cdPa(md.ssid);
    if (!table || pa === null || pa === undefined) continue;
    const target = newEntry();
    armSmmuMakeQuietCd(target, table.readCd(md.ssid), stallForce);
    await armSmmuWriteCdEntry(md.master, md.ssid, pa, target);
  }
  await armSmmuTlbInvContext(domain);
}

/**
 * Move a paging domain off its ASID: a fresh one from the space, every CD of the domain rewritten
 * with it through the hitless writer, then the old ASID invalidated on the domain's SMMU. The domain's
 * invalidations follow the new ASID from the start; whatever an unmap left cached under the old one
 * goes with the TLBI. The old ASID stays the domain's in the space until the caller hands it on (in
 * the same synchronous stretch, so no allocation can slip in). The caller holds the ASID lock.
 * (≤ 6.9) / arm_smmu_realloc_s1_domain_asid()
 */
// kernel: arm_smmu_share_asid() [arm-smmu-v3-sva.c] @v6.9
async function armSmmuReallocS1DomainAsid(space: ArmSmmuAsidSpace, domain: ArmSmmuDomain): Promise<void> {
  const smmu = domain.smmu!;
  const oldAsid = domain.asid;
  const newAsid = space.alloc(domain, 2 ** smmu.asidBits - 1);
  domain.asid = newAsid;
  for (const md of [...domain.devices]) {
    const table = md.master.cdTable;
    const pa = table?.cdPa(md.ssid);
    if (!table || pa === null || pa === undefined) continue;
    const cur = table.readCd(md.ssid);
    // Only the domain's own CDs: a master on the list whose CD is not written yet will use the new ASID.
    if (!CTXDESC_CD_0_V.isSet(cur) || CTXDESC_CD_0_ASID.get(cur) !== oldAsid) continue;
    const target = newEntry();
    target.set(cur);
    CTXDESC_CD_0_ASID.set(target, newAsid);
    await armSmmuWriteCdEntry(md.master, md.ssid, pa, target);
  }
  await armSmmuTlbInvAsid(smmu, oldAsid);
}

/**
 * Take the mm's CPU ASID for `domain` (see the header). EINVAL if another mm's SVA domains still hold
 * it; ENOSPC if a paging domain must move and no ASID is free. The caller holds the ASID lock.
 * Kernel: arm_smmu_share_asid() + arm_smmu_alloc_shared_cd() (≤ 6.9)
 */
async function armSmmuShareAsid(space: ArmSmmuAsidSpace, domain: ArmSmmuSvaDomain): Promise<void> {
  const mm = domain.mm;
  const asid = mm.asid;
  let shared: ArmSmmuSharedAsid;
  const owner = space.owner(asid);
  if (owner instanceof ArmSmmuSharedAsid) {
    if (owner.mm !== mm) throw new KernelError('EINVAL', `arm-smmu-v3: ASID ${asid} of pid ${mm.pid} is still held for pid ${owner.mm.pid}`);
    // Every SVA domain of the mm, on any SMMU, uses the same ASID.
    owner.refs++;
    shared = owner;
  } else {
    if (owner) {
      await armSmmuReallocS1DomainAsid(space, owner);
      space.release(asid, owner);
    }
    shared = new ArmSmmuSharedAsid(mm, asid);
    space.insert(asid, shared);
  }
  domain.sharedAsid = shared;
  domain.asid = asid;
}

// kernel: arm_smmu_sva_set_dev_pasid() [arm-smmu-v3-sva.c]
async function armSmmuSvaSetDevPasid(domain: IommuDomain, dev: Device, pasid: number, old: IommuDomain | null): Promise<void> {
  if (!(domain instanceof ArmSmmuSvaDomain)) throw new KernelError('EINVAL', 'arm-smmu-v3: not an SVA domain of this driver');
  const master = masterOf(dev);
  // The release notifier has run (or is about to) once the mm has no users: nothing to share.
  if (!domain.mm.mmgetNotZero()) throw new KernelError('EINVAL', `${dev.name}: the address space of pid ${domain.mm.pid} has exited`);
  try {
    const space = armSmmuAsidSpace(master.smmu.dev.core);
    await space.lock.run(async () => {
      if (!domain.sharedAsid) await armSmmuShareAsid(space, domain);
      const cd = newEntry();
      armSmmuMakeSvaCd(cd, master, domain.mm, domain.asid);
      await armSmmuSetPasid(master, domain, pasid, cd, old);
    });
  } finally {
    // After the lock: the last mmput runs the release notifier.
    await domain.mm.mmput();
  }
}

// kernel: arm_smmu_sva_domain_free() [arm-smmu-v3-sva.c]
async function armSmmuSvaDomainFree(domain: IommuDomain): Promise<void> {
  if (!(domain instanceof ArmSmmuSvaDomain)) return;
  const smmu = domain.smmu;
  const shared = domain.sharedAsid;
  if (smmu && shared) {
    // Under the lock, asked for before anything can yield: a new mm given the same CPU ASID waits
    // until this SMMU has forgotten the old one.
    const space = armSmmuAsidSpace(smmu.dev.core);
    await space.lock.run(async () => {
      await armSmmuTlbInvContext(domain);
      domain.sharedAsid = null;
      if (--shared.refs === 0) space.release(shared.asid, shared);
    });
  }
  if (domain.notifier?.registered) mmuNotifierPut(domain.notifier);
  domain.notifier = null;
}

const svaDomainOps: DomainOps = {
  attachDev: (_domain, dev) => {
    throw new KernelError('EINVAL', `${dev.name}: an SVA domain is attached to PASIDs, not to a RID`);
  },
  setDevPasid: armSmmuSvaSetDevPasid,
  free: armSmmuSvaDomainFree,
};

/**
 * A domain sharing `mm` for `dev`'s SMMU: EOPNOTSUPP without stage 1 or SubstreamIDs for the master,
 * or when the mm's ASID does not fit the SMMU's ASIDs. The ASID is taken at the first attach.
 */
// kernel: arm_smmu_sva_domain_alloc() [arm-smmu-v3-sva.c]
export function armSmmuSvaDomainAlloc(dev: Device, mm: Mm): ArmSmmuSvaDomain {
  const master = masterOf(dev);
  const smmu = master.smmu;
  if ((smmu.features & ARM_SMMU_FEAT_TRANS_S1) === 0) throw new KernelError('EOPNOTSUPP', `${smmu.name}: SVA needs stage 1`);
  if (master.ssidBits === 0) throw new KernelError('EOPNOTSUPP', `${dev.name}: SVA needs SubstreamIDs`);
  if (mm.asid >= 2 ** smmu.asidBits) {
    throw new KernelError('EOPNOTSUPP', `${smmu.name}: ${smmu.asidBits}-bit ASIDs (IDR0.ASID16 clear) cannot carry CPU ASID ${mm.asid} of pid ${mm.pid}, which SVA shares`);
  }
  const domain = new ArmSmmuSvaDomain(svaDomainOps, mm);
  domain.stage = 'S1';
  // The CPU's page size: what the mm's tables map, and the granule of range invalidations.
  domain.pgsizeBitmap = PAGE_SIZE;
  domain.smmu = smmu;
  domain.notifier = mmuNotifierRegister(mm, {
    invalidateRange: (start, end) => armSmmuMmInvalidate(domain, start, end),
    release: () => armSmmuMmRelease(domain),
  });
  return domain;
}
