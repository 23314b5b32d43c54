/**
 * Domains of the arm-smmu driver (kernel: the domain half of arm-smmu.c, as arm-smmu-v3-domain.ts
 * holds v3's): finalising a domain on its first attach (stage and format, a context bank, the page
 * table, the bank's registers and fault interrupt), destroying it, attaching masters (paging,
 * identity, blocked) with the bank's stall mode decided per attach, the hardware iova_to_phys
 * (ATS1PR), and the domain ops the iommu core calls (map, unmap, flush, free).
 *
 * The stall rule: SCTLR.CFCFG is set for a bank only when every master attached to it has
 * `dma-can-stall`; attaching a master that cannot stall to a stalling bank used by other masters is
 * refused with EINVAL; a bank that stopped stalling for a master does not start again when that
 * master leaves.
 */
import type { Device } from '../../bus/device.js';
import { KernelError } from '../../bus/errno.js';
import type { KernelLog } from '../../bus/log.js';
import { devmRequestIrq, freeIrq } from '../../bus/irq.js';
import { allocIoPgtableOps, freeIoPgtableOps } from '../../core/io-pgtable-arm.js';
import { type IoPgtableAllocator, type IoPgtableCfg, type IoPgtableFmt } from '../../core/io-pgtable.js';
import { devIommuPrivGet, devIommu } from '../../core/iommu-device.js';
import { IommuDomain } from '../../core/iommu-domain.js';
import { iommuGroupGet } from '../../core/iommu-group.js';
import type { DomainOps } from '../../core/iommu-ops.js';
import { iommuSubsystemOf } from '../../core/iommu.js';
import { orderForSize } from '../../mm/page-alloc.js';
import { armSmmuInitContextBank, armSmmuWriteContextBank, armSmmuWriteSctlr } from './arm-smmu-context.js';
import {
  ARM_SMMU_FEAT_COHERENT_WALK,
  ARM_SMMU_FEAT_FMT_AARCH32_L,
  ARM_SMMU_FEAT_FMT_AARCH64_16K,
  ARM_SMMU_FEAT_FMT_AARCH64_4K,
  ARM_SMMU_FEAT_FMT_AARCH64_64K,
  ARM_SMMU_FEAT_TRANS_S1,
  ARM_SMMU_FEAT_TRANS_S2,
  ARM_SMMU_INVALID_IRPTNDX,
  ARM_SMMU_V2,
  ArmSmmuDevice,
  ArmSmmuDomain,
  ArmSmmuMasterCfg,
  toSmmuDomain,
} from './arm-smmu-device.js';
import { armSmmuContextFault } from './arm-smmu-fault.js';
import { armSmmuTerminateStalls } from './arm-smmu-probe.js';
import { armSmmuMasterInstallS2crs } from './arm-smmu-stream-map.js';
import {
  ARM_SMMU_CB_ATS1PR,
  ARM_SMMU_CB_ATSR,
  ARM_SMMU_CB_PAR,
  ATSR_ACTIVE,
  CB_PAR_F,
  CBAR_TYPE_S1_TRANS_S2_BYPASS,
  CBAR_TYPE_S2_TRANS,
  S2CR_TYPE_FAULT,
  S2CR_TYPE_TRANS,
  type S2crType,
} from './arm-smmu-regs.js';
import { armSmmuIotlbSync, armSmmuFlushOps, armSmmuTlbFlushAll, armSmmuTlbSyncContext, armSmmuTlbSyncGlobal } from './arm-smmu-tlb.js';

const LOG_NS = 'iommu:drivers:arm-smmu';

const hex = (v: number): string => `0x${v.toString(16)}`;
const SZ_4K = 0x1000;

function log(smmu: ArmSmmuDevice): KernelLog {
  return smmu.dev.core.log;
}


/** Master record of a device this driver probed; ENXIO if it is not behind this driver. */
export function masterCfgOf(dev: Device): ArmSmmuMasterCfg {
  const cfg = devIommu(dev) ? devIommuPrivGet<unknown>(dev) : null;
  if (!(cfg instanceof ArmSmmuMasterCfg)) throw new KernelError('ENXIO', `${dev.name}: cannot attach to SMMU, is it on the same bus?`);
  return cfg;
}

/** Over the context map. */
// kernel: __arm_smmu_alloc_bitmap() [arm-smmu.h]
function armSmmuAllocContextBank(smmuDomain: ArmSmmuDomain, smmu: ArmSmmuDevice, dev: Device, start: number): number {
  // (kernel: arm_smmu_alloc_context_bank())
  if (smmu.impl?.allocContextBank) {
    const idx = smmu.impl.allocContextBank(smmuDomain, smmu, dev, start);
    if (idx < 0) throw new KernelError('ENOSPC', `${smmu.name}: no context bank left for ${dev.name} (${smmu.impl.name} placement)`);
    return idx;
  }
  for (let i = start; i < smmu.numContextBanks; i++) {
    if (!smmu.contextMap[i]) {
      smmu.contextMap[i] = true;
      return i;
    }
  }
  throw new KernelError('ENOSPC', `${smmu.name}: all ${smmu.numContextBanks - start} context banks from ${start} are in use`);
}

/** Page tables come from the kernel's page allocator. */
function pgtableAllocator(smmu: ArmSmmuDevice, what: string): IoPgtableAllocator {
  const pages = iommuSubsystemOf(smmu.dev.core).pageAllocator;
  return {
    allocTable: (size, align) => pages.allocPages(orderForSize(Math.max(size, align)), { kind: 'page-table', what }, { zero: true }),
    freeTable: (pa) => pages.freePages(pa),
  };
}

/**
 * Finalise a domain on its first attach: stage and format, a context bank, the page table, the
 * bank's registers and its fault interrupt.
 */
// kernel: arm_smmu_init_domain_context() [arm-smmu.c]
async function armSmmuInitDomainContext(smmuDomain: ArmSmmuDomain, smmu: ArmSmmuDevice, dev: Device): Promise<void> {
  await smmuDomain.initMutex.run(() => {
    if (smmuDomain.smmu) return;
    const cfg = smmuDomain.cfg;
    // Map the requested stage onto what the SMMU has.
    if (!(smmu.features & ARM_SMMU_FEAT_TRANS_S1)) smmuDomain.stage = 'S2';
    if (!(smmu.features & ARM_SMMU_FEAT_TRANS_S2)) smmuDomain.stage = 'S1';
    // The closest format to the rest of a 64-bit system: AArch64 if the SMMU has it.
    cfg.fmt = 'NONE';
    if (smmu.features & ARM_SMMU_FEAT_FMT_AARCH32_L) cfg.fmt = 'AARCH32_L';
    if (smmu.features & (ARM_SMMU_FEAT_FMT_AARCH64_64K | ARM_SMMU_FEAT_FMT_AARCH64_16K | ARM_SMMU_FEAT_FMT_AARCH64_4K)) cfg.fmt = 'AARCH64';
    if (cfg.fmt === 'NONE') throw new KernelError('EINVAL', `${smmu.name}: no context format this driver can use`);
    let fmt: IoPgtableFmt;
    let ias: number;
    let oas: number;
    let start: number;
    if (smmuDomain.stage === 'S1') {
      cfg.cbar = CBAR_TYPE_S1_TRANS_S2_BYPASS;
      start = smmu.numS2ContextBanks;
      ias = smmu.vaSize;
      oas = smmu.ipaSize;
      if (cfg.fmt === 'AARCH64') fmt = 'ARM_64_LPAE_S1';
      else {
        fmt = 'ARM_32_LPAE_S1';
        ias = Math.min(ias, 32);
        oas = Math.min(oas, 40);
      }
    } else {
      // Nesting parents are plain stage 2 tables here.
      cfg.cbar = CBAR_TYPE_S2_TRANS;
      start = 0;
      ias = smmu.ipaSize;
      oas = smmu.paSize;
      if (cfg.fmt === 'AARCH64') fmt = 'ARM_64_LPAE_S2';
      else {
        fmt = 'ARM_32_LPAE_S2';
        ias = Math.min(ias, 40);
        oas = Math.min(oas, 40);
      }
    }
    const cbndx = armSmmuAllocContextBank(smmuDomain, smmu, dev, start);
    smmuDomain.smmu = smmu;
    cfg.cbndx = cbndx;
    if (smmu.version < ARM_SMMU_V2) {
      smmu.irptndx = (smmu.irptndx + 1) % Math.max(1, smmu.numContextIrqs);
      cfg.irptndx = smmu.irptndx;
    } else {
      cfg.irptndx = cbndx;
    }
    if (smmuDomain.stage === 'S1') cfg.asid = cbndx;
    else cfg.vmid = cbndx + 1;
    cfg.stall = false;
    cfg.stallSuspended = false;
    cfg.hupcf = smmuDomain.hupcfRequest ?? false;
    const pgtblCfg: IoPgtableCfg = {
      quirks: 0,
      pgsizeBitmap: smmu.pgsizeBitmap,
      ias,
      oas,
      coherentWalk: (smmu.features & ARM_SMMU_FEAT_COHERENT_WALK) !== 0,
      tlb: armSmmuFlushOps(smmuDomain),
      ram: smmu.dev.port.ram,
      allocator: pgtableAllocator(smmu, `arm-smmu ${smmu.name} cb${cbndx}`),
    };
    try {
      smmu.impl?.initContext?.(smmuDomain, pgtblCfg, dev);
      pgtblCfg.quirks = (pgtblCfg.quirks ?? 0) | smmuDomain.pgtblQuirks;
      const pgtbl = allocIoPgtableOps(fmt, pgtblCfg);
      // The domain's page sizes and aperture follow the table format.
      smmuDomain.pgsizeBitmap = pgtbl.cfg.pgsizeBitmap;
      smmuDomain.geometry = { apertureStart: 0, apertureEnd: 2 ** pgtbl.cfg.ias - 1, forceAperture: true };
      armSmmuInitContextBank(smmuDomain, pgtbl);
      armSmmuWriteContextBank(smmu, cbndx);
      smmuDomain.pgtbl = pgtbl;
    } catch (e) {
      smmu.cbs[cbndx].cfg = null;
      smmu.cbs[cbndx].domain = null;
      smmu.contextMap[cbndx] = false;
      smmuDomain.smmu = null;
      cfg.cbndx = -1;
      throw e;
    }
    // The fault interrupt last, so the handler never sees a half-built domain.
    const irq = smmu.irqs[cfg.irptndx];
    try {
      if (!irq) throw new KernelError('ENXIO', `no context interrupt ${cfg.irptndx}`);
      smmuDomain.contextIrq = devmRequestIrq(smmu.dev, irq, () => armSmmuContextFault(smmuDomain), 'arm-smmu-context-fault', { shared: true });
    } catch (e) {
      log(smmu).err(smmu.name, `failed to request context IRQ ${cfg.irptndx}: ${e instanceof Error ? e.message : String(e)}`, LOG_NS);
      cfg.irptndx = ARM_SMMU_INVALID_IRPTNDX;
    }
  });
}

/** Disable the domain's bank and give it back. */
// kernel: arm_smmu_destroy_domain_context() [arm-smmu.c]
async function armSmmuDestroyDomainContext(smmuDomain: ArmSmmuDomain): Promise<void> {
  const smmu = smmuDomain.smmu;
  if (!smmu) return;
  const cfg = smmuDomain.cfg;
  const idx = cfg.cbndx;
  // A transaction stalled in the bank would wait forever once the bank is gone, and one waiting behind
  // it would pass untranslated through the disabled bank: terminate, stop stalling, and wait until all
  // of them have retired while the bank still translates (and reports: CFRE).
  await armSmmuTerminateStalls(smmu, [idx]);
  smmu.cbs[idx].cfg = null;
  smmu.cbs[idx].domain = null;
  armSmmuWriteContextBank(smmu, idx);
  if (smmuDomain.contextIrq) {
    const action = smmuDomain.contextIrq;
    smmuDomain.contextIrq = null;
    if (!action.freed) await freeIrq(action);
  }
  if (smmuDomain.pgtbl) {
    freeIoPgtableOps(smmuDomain.pgtbl);
    smmuDomain.pgtbl = null;
    // freeIoPgtableOps started the invalidation; wait for it before the bank is reused.
    if (smmuDomain.stage === 'S1') await armSmmuTlbSyncContext(smmuDomain);
    else await armSmmuTlbSyncGlobal(smmu);
  }
  smmu.contextMap[idx] = false;
  smmuDomain.smmu = null;
  cfg.cbndx = -1;
}

/** Set SCTLR.CFCFG of a finalised bank. */
function armSmmuSetStall(smmuDomain: ArmSmmuDomain, stall: boolean): void {
  const smmu = smmuDomain.smmu;
  if (!smmu || stall === smmuDomain.cfg.stall) return;
  smmuDomain.cfg.stall = stall;
  armSmmuWriteSctlr(smmu, smmuDomain.cfg.cbndx);
}

const canStall = (dev: Device): boolean => dev.fwspec?.canStall ?? false;

/**
 * Decide the bank's stall mode for `dev` joining it. EINVAL when `dev` cannot stall and the bank
 * stalls for masters outside `dev`'s group. A bank nobody else uses stalls only if `dev` and the
 * rest of its group (attached along with it) can all stall; a bank in use can only stop stalling.
 * A master leaving never turns stall on again, so a detached master can always come back (the core
 * relies on re-attaching an old domain to roll back).
 */
function armSmmuStallForAttach(smmuDomain: ArmSmmuDomain, dev: Device): void {
  const group = iommuGroupGet(dev);
  const others = [...smmuDomain.masters].filter((m) => m !== dev && (group === null || iommuGroupGet(m) !== group));
  if (!canStall(dev) && smmuDomain.cfg.stall && others.length > 0) {
    throw new KernelError(
      'EINVAL',
      `${dev.name} cannot stall (its firmware node has no dma-can-stall), but context bank ${smmuDomain.cfg.cbndx} stalls on faults for ${others.map((m) => m.name).join(', ')}: attach it to another domain`,
    );
  }
  const joining = [dev, ...(group?.devices ?? [])].every(canStall);
  armSmmuSetStall(smmuDomain, others.length === 0 ? joining : smmuDomain.cfg.stall && joining);
}

/** The master leaves the paging domain it was attached to (if any). */
export function armSmmuMasterLeaveDomain(cfg: ArmSmmuMasterCfg, dev: Device, next: ArmSmmuDomain | null): void {
  const old = cfg.domain;
  if (!old || old === next) return;
  old.masters.delete(dev);
  cfg.domain = null;
}

// kernel: arm_smmu_attach_dev() [arm-smmu.c]
async function armSmmuAttachDev(domain: IommuDomain, dev: Device): Promise<void> {
  const smmuDomain = toSmmuDomain(domain);
  const cfg = masterCfgOf(dev);
  const smmu = cfg.smmu;
  // Ensure that the domain is finalised.
  await armSmmuInitDomainContext(smmuDomain, smmu, dev);
  // Domains never span SMMUs.
  if (smmuDomain.smmu !== smmu) {
    throw new KernelError('EINVAL', `${dev.name}: the domain lives on ${smmuDomain.smmu?.name ?? 'no SMMU'}, the device behind ${smmu.name}`);
  }
  armSmmuStallForAttach(smmuDomain, dev);
  armSmmuMasterLeaveDomain(cfg, dev, smmuDomain);
  smmuDomain.masters.add(dev);
  cfg.domain = smmuDomain;
  armSmmuMasterInstallS2crs(cfg, S2CR_TYPE_TRANS, smmuDomain.cfg.cbndx);
}

/** Identity (BYPASS) or blocked (FAULT). */
// kernel: arm_smmu_attach_dev_type() [arm-smmu.c]
export function armSmmuAttachDevType(dev: Device, type: S2crType): void {
  const cfg = masterCfgOf(dev);
  armSmmuMasterLeaveDomain(cfg, dev, null);
  armSmmuMasterInstallS2crs(cfg, type, 0);
}

/** ATS1PR, poll ATSR, read PAR; falls back to a table walk. */
// kernel: arm_smmu_iova_to_phys_hard() [arm-smmu.c]
export async function armSmmuIovaToPhysHard(domain: IommuDomain, iova: number): Promise<number> {
  const smmuDomain = toSmmuDomain(domain);
  const smmu = smmuDomain.requireSmmu('arm_smmu_iova_to_phys_hard');
  const pgtbl = smmuDomain.pgtbl!;
  const idx = smmuDomain.cfg.cbndx;
  const va = Math.floor(iova / SZ_4K) * SZ_4K;
  if (smmuDomain.cfg.fmt === 'AARCH64') smmu.cbWriteq(idx, ARM_SMMU_CB_ATS1PR, BigInt(va));
  else smmu.cbWrite(idx, ARM_SMMU_CB_ATS1PR, va >>> 0);
  let done = false;
  for (let waited = 0; waited <= 50; waited += 5) {
    if ((smmu.cbRead(idx, ARM_SMMU_CB_ATSR) & ATSR_ACTIVE) === 0) {
      done = true;
      break;
    }
    await smmu.dev.port.delay(5000);
  }
  if (!done) {
    log(smmu).err(smmu.name, `iova to phys timed out on ${hex(va)}. Falling back to software table walk.`, LOG_NS);
    return pgtbl.iovaToPhys(iova);
  }
  const phys = smmu.cbReadq(idx, ARM_SMMU_CB_PAR);
  if (phys & CB_PAR_F) {
    log(smmu).err(smmu.name, 'translation fault!', LOG_NS);
    log(smmu).err(smmu.name, `PAR = 0x${phys.toString(16)}`, LOG_NS);
    return 0;
  }
  return Number(phys & 0xff_ffff_f000n) + (iova % SZ_4K);
}

/**
 * Make the bank of `domain` keep translating other transactions while one has faulted (SCTLR.HUPCF),
 * or not. Takes effect at once on a finalised domain. (Linux sets HUPCF only in the Adreno impl; the
 * stall thread's use case, exposed for experiments.)
 */
export function armSmmuDomainSetHupcf(domain: IommuDomain, on: boolean): void {
  const smmuDomain = toSmmuDomain(domain);
  smmuDomain.hupcfRequest = on;
  const smmu = smmuDomain.smmu;
  if (!smmu) return;
  smmuDomain.cfg.hupcf = on;
  armSmmuWriteSctlr(smmu, smmuDomain.cfg.cbndx);
}

/** Ask for a stage 2 domain before its first attach. EPERM once finalised. */
// kernel: arm_smmu_enable_nesting() [arm-smmu.c] @v6.10
export function armSmmuEnableNesting(domain: IommuDomain): void {
  const smmuDomain = toSmmuDomain(domain);
  if (smmuDomain.smmu) throw new KernelError('EPERM', 'arm_smmu_enable_nesting: the domain is already attached');
  smmuDomain.stage = 'NESTED';
}

/** The context bank a domain uses (-1 before its first attach). */
export function armSmmuDomainContextBank(domain: IommuDomain): number {
  return toSmmuDomain(domain).cfg.cbndx;
}

// kernel: arm_smmu_domain_free() [arm-smmu.c]
async function armSmmuDomainFree(domain: IommuDomain): Promise<void> {
  const smmuDomain = toSmmuDomain(domain);
  // Not in Linux (a caller bug it leaves alone): masters still attached would translate through a
  // disabled bank, i.e. not at all. Block them first (their S2CRs at FAULT, as the blocked domain).
  for (const dev of [...smmuDomain.masters]) armSmmuAttachDevType(dev, S2CR_TYPE_FAULT);
  await armSmmuDestroyDomainContext(smmuDomain);
}

/** The kernel's arm_smmu_ops.default_domain_ops */
export const armSmmuDomainOps: DomainOps = {
  attachDev: (domain, dev) => armSmmuAttachDev(domain, dev),
  // kernel: arm_smmu_map_pages() [arm-smmu.c]
  mapPages(domain, iova, paddr, pgsize, pgcount, prot) {
    const pgtbl = toSmmuDomain(domain).pgtbl;
    if (!pgtbl) throw new KernelError('ENODEV', 'arm_smmu_map_pages: the domain has no page table until it is attached');
    return pgtbl.mapPages(iova, paddr, pgsize, pgcount, prot);
  },
  // kernel: arm_smmu_unmap_pages() [arm-smmu.c]
  unmapPages(domain, iova, pgsize, pgcount, gather) {
    const pgtbl = toSmmuDomain(domain).pgtbl;
    return pgtbl ? pgtbl.unmapPages(iova, pgsize, pgcount, gather) : 0;
  },
  // kernel: arm_smmu_flush_iotlb_all() [arm-smmu.c]
  async flushIotlbAll(domain) {
    const smmuDomain = toSmmuDomain(domain);
    if (smmuDomain.smmu) await armSmmuTlbFlushAll(smmuDomain);
  },
  // (kernel: arm_smmu_iotlb_sync()) Answers through `done` from the sync poll itself: a strict unmap's
  // wait is a hot path (bench v2.map_unmap_strict).
  iotlbSync(domain, _gather, done) {
    const smmuDomain = toSmmuDomain(domain);
    if (smmuDomain.smmu) armSmmuIotlbSync(smmuDomain, done);
    else done();
  },
  // (the software walk; see armSmmuIovaToPhysHard)
  // kernel: arm_smmu_iova_to_phys() [arm-smmu.c]
  iovaToPhys(domain, iova) {
    const pgtbl = toSmmuDomain(domain).pgtbl;
    return pgtbl ? pgtbl.iovaToPhys(iova) : 0;
  },
  free: armSmmuDomainFree,
};

