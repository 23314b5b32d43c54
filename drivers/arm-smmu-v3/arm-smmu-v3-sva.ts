/**
 * SVA domains (kernel: drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-sva.c): a stage 1 context that walks a
 * process's own CPU page tables. The iommu core allocates one per (mm, SMMU) through the ops'
 * `domainAllocSva` and attaches it to PASIDs; this file builds the CD, follows the mm's changes and
 * stops translating when the mm exits.
 *
 * - CD: TTB0 is the mm's level-0 table, with the CPU's TCR_EL1 walk attributes (T0SZ, TG0 4K,
 *   IRGN/ORGN WBWA, SH inner, IPS from the machine's PA size) and MAIR_EL1, so the SMMU reads the same
 *   descriptors the CPU does; S (stall) as for any CD of the master. The ASID is the SMMU's own (from
 *   the ASID space every stage 1 domain uses): without broadcast TLB maintenance (no BTM) sharing the
 *   CPU's ASID would buy nothing, as Linux 6.x decided.
 * - mmu notifier: `invalidateRange` becomes TLBI by VA for the ASID (a whole-ASID TLBI from
 *   CMDQ_MAX_TLBI_OPS pages on without range invalidation) and ATC_INV for every ATS master on the
 *   domain; `release` (mm exit) rewrites every attached CD to the quiet form (valid, EPD0, no walk, no
 *   stall or record) so DMA on the PASID aborts without events, then invalidates the ASID and ATCs.
 * - set_dev_pasid needs the mm alive (EINVAL after exit).
 */
import type { Device } from '../../bus/device.js';
import { KernelError } from '../../bus/errno.js';
import type { IommuDomain } from '../../core/iommu-domain.js';
import type { DomainOps } from '../../core/iommu-ops.js';
import type { Mm } from '../../mm/mm.js';
import { mmuNotifierPut, mmuNotifierRegister, type MmuNotifier } from '../../mm/mmu-notifier.js';
import { PAGE_SIZE } from '../../mm/page-alloc.js';
import { armSmmuMakeQuietCd, armSmmuMakeS1Cd } from './arm-smmu-v3-cd.js';
import { ArmSmmuDomain, armSmmuAsidIda, armSmmuTlbInvContext, armSmmuTlbInvRangeDomain } from './arm-smmu-v3-domain.js';
import { newEntry } from './arm-smmu-v3-entry.js';
import { armSmmuSetPasid, armSmmuWriteCdEntry, masterOf, type ArmSmmuMaster } from './arm-smmu-v3-master.js';
import { ARM_SMMU_FEAT_RANGE_INV, ARM_SMMU_FEAT_STALL_FORCE, ARM_SMMU_FEAT_TRANS_S1 } from './arm-smmu-v3-regs.js';

/** Pages from which an invalidation becomes one TLBI for the whole ASID (kernel: CMDQ_MAX_TLBI_OPS, 1 << (PAGE_SHIFT - 3)). */
export const CMDQ_MAX_TLBI_OPS = 1 << (12 - 3);

/** An SVA domain of this driver: stage 1 over an mm's page tables. */
export class ArmSmmuSvaDomain extends ArmSmmuDomain {
  /** The subscription to the mm's page-table changes (kernel: smmu_domain->mmu_notifier). */
  notifier: MmuNotifier | null = null;
  /** The mm exited: its CDs are quiet. */
  released = false;

  constructor(
    ops: DomainOps,
    readonly mm: Mm,
  ) {
    super(ops);
  }
}

/** The CD of an SVA attachment: the mm's tables, walked as the CPU walks them. // kernel: arm_smmu_make_sva_cd() */
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

/** kernel: arm_smmu_mm_arch_invalidate_secondary_tlbs() */
async function armSmmuMmInvalidate(domain: ArmSmmuSvaDomain, start: number, end: number): Promise<void> {
  const smmu = domain.smmu;
  if (!smmu || domain.released) return;
  let size = end - start;
  if ((smmu.features & ARM_SMMU_FEAT_RANGE_INV) === 0 && size >= CMDQ_MAX_TLBI_OPS * PAGE_SIZE) size = 0;
  if (size === 0) await armSmmuTlbInvContext(domain);
  else await armSmmuTlbInvRangeDomain(start, size, PAGE_SIZE, false, domain);
}

/** The mm is going: every CD of the domain stops walking it, quietly. // kernel: arm_smmu_mm_release() */
async function armSmmuMmRelease(domain: ArmSmmuSvaDomain): Promise<void> {
  const smmu = domain.smmu;
  domain.released = true;
  if (!smmu) return;
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

/** kernel: arm_smmu_sva_set_dev_pasid() */
async function armSmmuSvaSetDevPasid(domain: IommuDomain, dev: Device, pasid: number, old: IommuDomain | null): Promise<void> {
  if (!(domain instanceof ArmSmmuSvaDomain)) throw new KernelError('EINVAL', 'arm-smmu-v3: not an SVA domain of this driver');
  const master = masterOf(dev);
  // The release notifier has run (or is about to) once the mm has no users: nothing to share.
  if (!domain.mm.mmgetNotZero()) throw new KernelError('EINVAL', `${dev.name}: the address space of pid ${domain.mm.pid} has exited`);
  try {
    const cd = newEntry();
    armSmmuMakeSvaCd(cd, master, domain.mm, domain.asid);
    await armSmmuSetPasid(master, domain, pasid, cd, old);
  } finally {
    await domain.mm.mmput();
  }
}

/** kernel: arm_smmu_sva_domain_free() */
async function armSmmuSvaDomainFree(domain: IommuDomain): Promise<void> {
  if (!(domain instanceof ArmSmmuSvaDomain)) return;
  const smmu = domain.smmu;
  if (smmu) {
    // Nothing may stay cached under an ASID that is about to be reused.
    await armSmmuTlbInvContext(domain);
    const ida = armSmmuAsidIda(smmu.dev.core);
    if (domain.asid && ida.has(domain.asid)) ida.free(domain.asid);
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
 * A domain sharing `mm` for `dev`'s SMMU: EOPNOTSUPP without stage 1 or SubstreamIDs for the master.
 * // kernel: arm_smmu_sva_domain_alloc()
 */
export function armSmmuSvaDomainAlloc(dev: Device, mm: Mm): ArmSmmuSvaDomain {
  const master = masterOf(dev);
  const smmu = master.smmu;
  if ((smmu.features & ARM_SMMU_FEAT_TRANS_S1) === 0) throw new KernelError('EOPNOTSUPP', `${smmu.name}: SVA needs stage 1`);
  if (master.ssidBits === 0) throw new KernelError('EOPNOTSUPP', `${dev.name}: SVA needs SubstreamIDs`);
  const domain = new ArmSmmuSvaDomain(svaDomainOps, mm);
  domain.stage = 'S1';
  // The CPU's page size: what the mm's tables map, and the granule of range invalidations.
  domain.pgsizeBitmap = PAGE_SIZE;
  domain.asid = armSmmuAsidIda(smmu.dev.core).allocRange(1, 2 ** smmu.asidBits - 1);
  domain.smmu = smmu;
  try {
    domain.notifier = mmuNotifierRegister(mm, {
      invalidateRange: (start, end) => armSmmuMmInvalidate(domain, start, end),
      release: () => armSmmuMmRelease(domain),
    });
  } catch (e) {
    armSmmuAsidIda(smmu.dev.core).free(domain.asid);
    throw e;
  }
  return domain;
}
