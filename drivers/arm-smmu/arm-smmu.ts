/**
 * The Arm SMMU v1/v2 driver (kernel: drivers/iommu/arm/arm-smmu/arm-smmu.c): MMU-400/401, MMU-500,
 * the Qualcomm SMMU-500/v2 flavours and generic SMMUv1/v2, driven only through their registers.
 *
 * Probe: `#global-interrupts` and the interrupt list from DT, the register space from `reg`, the
 * implementation hooks picked once (arm-smmu-impl.ts), the configuration from ID0/ID1/ID2 (stages,
 * stream matching or indexing, SMR groups, context banks, address sizes, table formats, page sizes),
 * global fault interrupts, reset (stream map and banks from the shadows, TLBs invalidated, sCR0 with
 * fault reporting on, CLIENTPD clear and USFCFG = `arm-smmu.disable_bypass`), the SMR width probe,
 * then registration with the iommu core, which probes the masters.
 *
 * Masters: `iommus` with one cell (stream ID; the SMMU node's `stream-match-mask` as mask) or two
 * (stream ID, SMR mask); `ofXlate` packs SID | MASK << 16. Each ID gets a stream-map entry; an entry
 * that already covers the ID (same or wider mask) is shared, a partial overlap is refused (EINVAL),
 * none left is ENOSPC. Groups: masters sharing an entry share a group.
 * Domains: stage 1 (ASID = bank) unless the SMMU lacks it or the domain asked to be a nesting
 * parent (IOMMU_HWPT_ALLOC_NEST_PARENT, or `armSmmuEnableNesting`), then stage 2 (VMID = bank + 1);
 * the AArch64 format when the SMMU has one, else AArch32 LPAE; a context bank is taken at first
 * attach (stage-2-only banks are the lowest) and programmed, and its fault interrupt requested.
 * Identity and blocked domains point the master's S2CRs at BYPASS and FAULT.
 * Stall: SCTLR.CFCFG is set for a bank only when every master attached to it has `dma-can-stall`
 * (never because a client asks); attaching a master that cannot stall to a stalling bank used by
 * other masters is refused with EINVAL; a bank that stopped stalling for a master does not start
 * again when that master leaves. Faults are handled on a workqueue (arm-smmu-fault.ts): reported to
 * the domain's fault handler, or for masters with IOPF on (stall-capable ones only) to the I/O
 * page-fault core, whose answer comes back through `pageResponse` (group index = context bank).
 * Shutdown follows `arm-smmu.shutdown_policy`: `bypass` (sCR0 = CLIENTPD, Linux today),
 * `abort-unmatched` (SMRs invalidated, USFCFG = 1), `abort-all` (also every S2CR = FAULT),
 * `translate` (stays enabled with the stream map reset to its boot state); fault interrupts stay on
 * only with `arm-smmu.shutdown_fault_irqs`. First every bank stops stalling (CFCFG = 0), every
 * stalled transaction is terminated, and shutdown polls until the stalls have retired, so no master is
 * left waiting: transactions queued behind a stall fault (visibly: CFRE) instead of stalling again.
 *
 * Differences from Linux: the legacy `mmu-masters` binding, ACPI/IORT, clocks and runtime PM are not
 * supported; the iova_to_phys op walks the tables in software (the core's op is synchronous and the
 * ATS1PR poll waits on virtual time: `armSmmuIovaToPhysHard` is the hardware walk, async); the
 * hardware is reset before registering with the core (so masters never see a half-set-up SMMU);
 * destroying a bank with a stalled transaction terminates it (and waits for it) first; reset
 * terminates stalls a previous kernel left (a crash kernel's case); freeing a domain masters are
 * still attached to blocks them first.
 */
import { FIELD_GET, FIELD_PREP } from '../../bus/bitfield.js';
import type { Device } from '../../bus/device.js';
import { KernelError } from '../../bus/errno.js';
import { devmIoremap, readPollTimeout } from '../../bus/io.js';
import type { KernelLog } from '../../bus/log.js';
import { devmRequestIrq, freeIrq } from '../../bus/irq.js';
import { PciDevice } from '../../bus/pci/pci-device.js';
import {
  platformBus,
  platformGetIrq,
  platformGetResource,
  platformIrqCount,
  type PlatformDevice,
  type PlatformDriver,
} from '../../bus/platform.js';
import { allocIoPgtableOps, freeIoPgtableOps } from '../../core/io-pgtable-arm.js';
import {
  IOMMU_MMIO,
  IOMMU_NOEXEC,
  IOMMU_WRITE,
  type IoPgtableAllocator,
  type IoPgtableCfg,
  type IoPgtableFmt,
} from '../../core/io-pgtable.js';
import { devIommuPrivGet, devIommuPrivSet, devIommu, IommuDevice } from '../../core/iommu-device.js';
import {
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IommuDomain,
} from '../../core/iommu-domain.js';
import { IOMMU_PAGE_RESP_SUCCESS } from '../../core/iommu-fault-types.js';
import { genericDeviceGroup, iommuGroupGet, pciDeviceGroup, type IommuGroup } from '../../core/iommu-group.js';
import type { DomainOps, IommuOps, IommuResvRegion } from '../../core/iommu-ops.js';
import { iommuDeviceRegister, iommuDeviceUnregister, iommuSubsystemOf } from '../../core/iommu.js';
import { orderForSize } from '../../mm/page-alloc.js';
import { armSmmuInitContextBank, armSmmuWriteContextBank, armSmmuWriteSctlr } from './arm-smmu-context.js';
import {
  ARM_SMMU_DEFAULT_PARAMS,
  ARM_SMMU_FEAT_COHERENT_WALK,
  ARM_SMMU_FEAT_EXIDS,
  ARM_SMMU_FEAT_FMT_AARCH32_L,
  ARM_SMMU_FEAT_FMT_AARCH32_S,
  ARM_SMMU_FEAT_FMT_AARCH64_16K,
  ARM_SMMU_FEAT_FMT_AARCH64_4K,
  ARM_SMMU_FEAT_FMT_AARCH64_64K,
  ARM_SMMU_FEAT_STREAM_MATCH,
  ARM_SMMU_FEAT_TRANS_NESTED,
  ARM_SMMU_FEAT_TRANS_OPS,
  ARM_SMMU_FEAT_TRANS_S1,
  ARM_SMMU_FEAT_TRANS_S2,
  ARM_SMMU_FEAT_VMID16,
  ARM_SMMU_INVALID_IRPTNDX,
  ARM_SMMU_V1,
  ARM_SMMU_V1_64K,
  ARM_SMMU_V2,
  ArmSmmuDevice,
  ArmSmmuDomain,
  ArmSmmuMasterCfg,
  toSmmuDomain,
  type ArmSmmuArchVersion,
  type ArmSmmuImplementation,
  type ArmSmmuParams,
} from './arm-smmu-device.js';
import {
  armSmmuContextFault,
  armSmmuContextFaultResume,
  armSmmuGlobalFault,
  armSmmuPendingFault,
} from './arm-smmu-fault.js';
import { armSmmuImplInit } from './arm-smmu-impl.js';
import {
  armSmmuFwidPrep,
  armSmmuMasterAllocSmes,
  armSmmuMasterFreeSmes,
  armSmmuMasterInstallS2crs,
  armSmmuWriteSme,
  fwspecOf,
} from './arm-smmu-stream-map.js';

export { armSmmuFindSme } from './arm-smmu-stream-map.js';
import { QCOM_SMMU_500_SOCS, QCOM_SMMU_V2_SOCS } from './arm-smmu-qcom.js';
import {
  ARM_SMMU_CB_ATS1PR,
  ARM_SMMU_CB_ATSR,
  ARM_SMMU_CB_FSR,
  ARM_SMMU_CB_PAR,
  ARM_SMMU_CB_RESUME,
  ARM_SMMU_CB_SCTLR,
  SCTLR_CFCFG,
  ARM_SMMU_GR0_ID0,
  ARM_SMMU_GR0_ID1,
  ARM_SMMU_GR0_ID2,
  ARM_SMMU_GR0_SMR,
  ARM_SMMU_GR0_TLBIALLH,
  ARM_SMMU_GR0_TLBIALLNSNH,
  ARM_SMMU_GR0_sCR0,
  ARM_SMMU_GR0_sGFSR,
  ATSR_ACTIVE,
  CB_FSR_FAULT,
  CB_FSR_SS,
  CB_PAR_F,
  CBAR_TYPE_S1_TRANS_S2_BYPASS,
  CBAR_TYPE_S2_TRANS,
  ID0_ATOSNS,
  ID0_CTTW,
  ID0_EXIDS,
  ID0_NTS,
  ID0_NUMSIDB,
  ID0_NUMSMRG,
  ID0_PTFS_NO_AARCH32,
  ID0_PTFS_NO_AARCH32S,
  ID0_S1TS,
  ID0_S2TS,
  ID0_SMS,
  ID1_NUMCB,
  ID1_NUMPAGENDXB,
  ID1_NUMS2CB,
  ID1_PAGESIZE,
  ID2_IAS,
  ID2_OAS,
  ID2_PTFS_16K,
  ID2_PTFS_4K,
  ID2_PTFS_64K,
  ID2_UBS,
  ID2_VMID16,
  QCOM_DUMMY_VAL,
  RESUME_TERMINATE,
  S2CR_TYPE_BYPASS,
  S2CR_TYPE_FAULT,
  S2CR_TYPE_TRANS,
  SCTLR_CFIE,
  sCR0_BSU,
  sCR0_CLIENTPD,
  sCR0_EXIDENABLE,
  sCR0_FB,
  sCR0_GCFGFIE,
  sCR0_GCFGFRE,
  sCR0_GFIE,
  sCR0_GFRE,
  sCR0_PTM,
  sCR0_USFCFG,
  sCR0_VMID16EN,
  sCR0_VMIDPNE,
  SMR_ID,
  SMR_MASK,
  armSmmuIdSizeToBits,
  type S2crType,
} from './arm-smmu-regs.js';
import { armSmmuIotlbSync, armSmmuFlushOps, armSmmuTlbFlushAll, armSmmuTlbSyncContext, armSmmuTlbSyncGlobal } from './arm-smmu-tlb.js';

const LOG_NS = 'iommu:drivers:arm-smmu';
export const ARM_SMMU_DRIVER_NAME = 'arm-smmu';

const hex = (v: number): string => `0x${v.toString(16)}`;
const SZ_4K = 0x1000;
const SZ_16K = 0x4000;
const SZ_64K = 0x1_0000;
const SZ_1M = 0x10_0000;
const SZ_2M = 0x20_0000;
const SZ_16M = 0x100_0000;
const SZ_32M = 0x200_0000;
const SZ_512M = 0x2000_0000;
const SZ_1G = 0x4000_0000;

/** The kernel's MSI_IOVA_BASE / MSI_IOVA_LENGTH — the software-managed MSI window. */
export const MSI_IOVA_BASE = 0x800_0000;
export const MSI_IOVA_LENGTH = 0x10_0000;

/** The kernel's struct arm_smmu_match_data */
interface ArmSmmuMatchData {
  version: ArmSmmuArchVersion;
  model: ArmSmmuImplementation;
}

/** The kernel's arm_smmu_of_match[] (plus the Qualcomm strings, claimed directly). */
const ARM_SMMU_MATCH: ReadonlyMap<string, ArmSmmuMatchData> = new Map<string, ArmSmmuMatchData>([
  ['arm,smmu-v1', { version: ARM_SMMU_V1, model: 'GENERIC_SMMU' }],
  ['arm,smmu-v2', { version: ARM_SMMU_V2, model: 'GENERIC_SMMU' }],
  ['arm,mmu-400', { version: ARM_SMMU_V1, model: 'GENERIC_SMMU' }],
  ['arm,mmu-401', { version: ARM_SMMU_V1_64K, model: 'GENERIC_SMMU' }],
  ['arm,mmu-500', { version: ARM_SMMU_V2, model: 'ARM_MMU500' }],
  ['cavium,smmu-v2', { version: ARM_SMMU_V2, model: 'CAVIUM_SMMUV2' }],
  ['nvidia,smmu-500', { version: ARM_SMMU_V2, model: 'ARM_MMU500' }],
  ['qcom,smmu-v2', { version: ARM_SMMU_V2, model: 'QCOM_SMMUV2' }],
  ...QCOM_SMMU_500_SOCS.map((s): [string, ArmSmmuMatchData] => [`qcom,${s}-smmu-500`, { version: ARM_SMMU_V2, model: 'ARM_MMU500' }]),
  ['qcom,smmu-500', { version: ARM_SMMU_V2, model: 'ARM_MMU500' }],
  ...QCOM_SMMU_V2_SOCS.map((s): [string, ArmSmmuMatchData] => [`qcom,${s}-smmu-v2`, { version: ARM_SMMU_V2, model: 'QCOM_SMMUV2' }]),
]);

/** Every DT compatible the driver claims. */
export const ARM_SMMU_COMPATIBLES: readonly string[] = [...ARM_SMMU_MATCH.keys()];

function log(smmu: ArmSmmuDevice): KernelLog {
  return smmu.dev.core.log;
}

// ---- domains -------------------------------------------------------------------------------------

/** Master record of a device this driver probed; ENXIO if it is not behind this driver. */
function masterCfgOf(dev: Device): ArmSmmuMasterCfg {
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
function armSmmuMasterLeaveDomain(cfg: ArmSmmuMasterCfg, dev: Device, next: ArmSmmuDomain | null): void {
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
function armSmmuAttachDevType(dev: Device, type: S2crType): void {
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

/** The SMMU behind `dev`, or null when `dev` is not an arm-smmu master. */
export function armSmmuOfMaster(dev: Device): ArmSmmuDevice | null {
  const cfg = devIommu(dev) ? devIommuPrivGet<unknown>(dev) : null;
  return cfg instanceof ArmSmmuMasterCfg ? cfg.smmu : null;
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
const armSmmuDomainOps: DomainOps = {
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
  // (kernel: arm_smmu_iotlb_sync())
  async iotlbSync(domain) {
    const smmuDomain = toSmmuDomain(domain);
    if (smmuDomain.smmu) await armSmmuIotlbSync(smmuDomain);
  },
  // (the software walk; see armSmmuIovaToPhysHard)
  // kernel: arm_smmu_iova_to_phys() [arm-smmu.c]
  iovaToPhys(domain, iova) {
    const pgtbl = toSmmuDomain(domain).pgtbl;
    return pgtbl ? pgtbl.iovaToPhys(iova) : 0;
  },
  free: armSmmuDomainFree,
};

// ---- the iommu ops -----------------------------------------------------------------------------

/** The SMMU a device's firmware names (kernel: arm_smmu_get_by_fwnode()). */
function armSmmuGetByFwnode(dev: Device): ArmSmmuDevice | null {
  const node = dev.fwspec?.iommuNode;
  if (!node) return null;
  const smmuDev = dev.core.findDeviceByOfNode(node);
  const smmu = smmuDev?.driverData;
  return smmu instanceof ArmSmmuDevice ? smmu : null;
}

/** The iommu ops of one SMMU instance (kernel: arm_smmu_ops). */
function armSmmuOps(smmu: ArmSmmuDevice): IommuOps {
  const identityDomain = new IommuDomain({
    type: IOMMU_DOMAIN_IDENTITY,
    // kernel: arm_smmu_attach_dev_identity() [arm-smmu.c]
    ops: { attachDev: (_d, dev) => armSmmuAttachDevType(dev, S2CR_TYPE_BYPASS) },
  });
  const blockedDomain = new IommuDomain({
    type: IOMMU_DOMAIN_BLOCKED,
    // kernel: arm_smmu_attach_dev_blocked() [arm-smmu.c]
    ops: { attachDev: (_d, dev) => armSmmuAttachDevType(dev, S2CR_TYPE_FAULT) },
  });
  const newDomain = (stage: 'S1' | 'NESTED'): ArmSmmuDomain => {
    const d = new ArmSmmuDomain({ ops: armSmmuDomainOps, pgsizeBitmap: smmu.pgsizeBitmap });
    d.stage = stage;
    return d;
  };
  return {
    name: ARM_SMMU_DRIVER_NAME,
    pgsizeBitmap: smmu.pgsizeBitmap,
    identityDomain,
    blockedDomain,
    defaultDomainOps: armSmmuDomainOps,
    // kernel: arm_smmu_capable() [arm-smmu.c]
    capable(_dev, cap) {
      switch (cap) {
        case 'CACHE_COHERENCY':
          // A coherent walker implies coherent TBUs.
          return (smmu.features & ARM_SMMU_FEAT_COHERENT_WALK) !== 0;
        case 'NOEXEC':
        case 'DEFERRED_FLUSH':
          return true;
        default:
          return false;
      }
    },
    // kernel: arm_smmu_of_xlate() [arm-smmu.c]
    ofXlate(dev, fwspec, args) {
      let fwid = 0;
      if (args.length > 0) fwid |= armSmmuFwidPrep(dev, 'SMR.ID', args[0]);
      if (args.length > 1) fwid |= armSmmuFwidPrep(dev, 'SMR.MASK', args[1]);
      else {
        const mask = fwspec.iommuNode.u32('stream-match-mask');
        if (mask !== undefined) fwid |= armSmmuFwidPrep(dev, 'SMR.MASK', mask);
      }
      fwspec.ids.push(fwid >>> 0);
    },
    // kernel: arm_smmu_probe_device() [arm-smmu.c]
    async probeDevice(dev) {
      if (armSmmuGetByFwnode(dev) !== smmu) throw new KernelError('ENODEV', `${dev.name} is not behind ${smmu.name}`);
      const fwspec = fwspecOf(dev);
      for (const fwid of fwspec.ids) {
        const sid = FIELD_GET(SMR_ID, fwid);
        const mask = FIELD_GET(SMR_MASK, fwid);
        if (sid & ~smmu.streamidMask) {
          log(smmu).err(dev.name, `stream ID ${hex(sid)} out of range for SMMU (${hex(smmu.streamidMask)})`, LOG_NS);
          throw new KernelError('EINVAL', `${dev.name}: stream ID ${hex(sid)} out of range for ${smmu.name} (${hex(smmu.streamidMask)})`);
        }
        if (mask & ~smmu.smrMaskMask) {
          log(smmu).err(dev.name, `SMR mask ${hex(mask)} out of range for SMMU (${hex(smmu.smrMaskMask)})`, LOG_NS);
          throw new KernelError('EINVAL', `${dev.name}: SMR mask ${hex(mask)} out of range for ${smmu.name} (${hex(smmu.smrMaskMask)})`);
        }
      }
      const cfg = new ArmSmmuMasterCfg(smmu, fwspec.ids.length);
      devIommuPrivSet(dev, cfg);
      try {
        await armSmmuMasterAllocSmes(dev, cfg);
      } catch (e) {
        devIommuPrivSet(dev, null);
        log(smmu).err(dev.name, `${smmu.name}: ${e instanceof Error ? e.message : String(e)}`, LOG_NS);
        throw e;
      }
      return smmu.iommu!;
    },
    // kernel: arm_smmu_release_device() [arm-smmu.c]
    async releaseDevice(dev) {
      const cfg = masterCfgOf(dev);
      armSmmuMasterLeaveDomain(cfg, dev, null);
      await armSmmuMasterFreeSmes(cfg);
      devIommuPrivSet(dev, null);
    },
    // kernel: arm_smmu_device_group() [arm-smmu.c]
    deviceGroup(dev) {
      const cfg = masterCfgOf(dev);
      let group: IommuGroup | null = null;
      for (const idx of cfg.smendx) {
        const g = smmu.s2crs[idx].group;
        if (group && g && group !== g) {
          throw new KernelError('EINVAL', `${dev.name}: its stream IDs are shared with masters of two different groups`);
        }
        group = g ?? group;
      }
      if (group) return group;
      group = dev instanceof PciDevice ? pciDeviceGroup(dev) : genericDeviceGroup(dev);
      // Remember the group for the masters that share these entries.
      for (const idx of cfg.smendx) smmu.s2crs[idx].group = group;
      return group;
    },
    // the software MSI window.
    // kernel: arm_smmu_get_resv_regions() [arm-smmu.c]
    getResvRegions(): IommuResvRegion[] {
      return [{ start: MSI_IOVA_BASE, length: MSI_IOVA_LENGTH, prot: IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_MMIO, type: 'SW_MSI' }];
    },
    // kernel: arm_smmu_def_domain_type() [arm-smmu.c]
    defDomainType(dev) {
      return smmu.impl?.defDomainType ? smmu.impl.defDomainType(dev) : 0;
    },
    // kernel: arm_smmu_domain_alloc_paging() [arm-smmu.c]
    domainAllocPaging() {
      return newDomain('S1');
    },
    /** NEST_PARENT asks for a stage 2 domain (what iommu_enable_nesting() used to ask for). */
    domainAllocPagingFlags(_dev, flags) {
      if (flags & ~IOMMU_HWPT_ALLOC_NEST_PARENT) throw new KernelError('EOPNOTSUPP', `${smmu.name}: paging domain flags ${hex(flags)} are not supported`);
      if (flags & IOMMU_HWPT_ALLOC_NEST_PARENT) {
        if (!(smmu.features & ARM_SMMU_FEAT_TRANS_S2)) throw new KernelError('EOPNOTSUPP', `${smmu.name} has no stage 2 for a nesting parent`);
        return newDomain('NESTED');
      }
      return newDomain('S1');
    },
    /**
     * Answer a stalled context fault reported through the I/O page-fault path: SUCCESS retries the
     * transaction, anything else terminates it. `evt`'s group index is the context bank. An answer for
     * a stall that is no longer pending (terminated by a shutdown or a domain teardown) is ignored.
     */
    pageResponse(dev, evt, msg) {
      const smmuDomain = masterCfgOf(dev).domain;
      if (!smmuDomain || smmuDomain.cfg.cbndx !== evt.fault.prm.grpid || !armSmmuPendingFault(smmuDomain)) {
        log(smmu).debug(dev.name, `arm-smmu: page response for context bank ${evt.fault.prm.grpid} with no stall pending: ignored`, LOG_NS);
        return;
      }
      armSmmuContextFaultResume(smmuDomain, msg.code === IOMMU_PAGE_RESP_SUCCESS ? 'retry' : 'terminate');
    },
    /**
     * IOPF for a master whose firmware says it can stall (its stalled faults then go to the I/O
     * page-fault core); an SMMUv2 has no PASIDs, so no SVA. (Linux's arm-smmu has no such op: its
     * stalls go only to report_iommu_fault.)
     */
    devEnableFeat(dev, feat) {
      masterCfgOf(dev);
      if (feat === 'SVA') throw new KernelError('ENODEV', `${dev.name}: ${smmu.name} has no PASIDs: no SVA`);
      if (!(dev.fwspec?.canStall ?? false)) {
        throw new KernelError('EINVAL', `${dev.name} cannot stall (no dma-can-stall): no I/O page faults on ${smmu.name}`);
      }
    },
    /** IOPF off needs nothing of the hardware: stall stays as firmware allows it. */
    devDisableFeat(dev, feat) {
      masterCfgOf(dev);
      if (feat === 'SVA') throw new KernelError('EINVAL', `${dev.name}: SVA is not enabled`);
    },
  };
}

// ---- probe and reset ---------------------------------------------------------------------------

/**
 * Read the configuration from the ID registers.
 */
// kernel: arm_smmu_device_cfg_probe() [arm-smmu.c]
export function armSmmuDeviceCfgProbe(smmu: ArmSmmuDevice): void {
  const lg = log(smmu);
  const note = (m: string): void => lg.info(smmu.name, m, LOG_NS);
  const cttwFw = (smmu.features & ARM_SMMU_FEAT_COHERENT_WALK) !== 0;
  note('probing hardware configuration...');
  note(`SMMUv${smmu.version === ARM_SMMU_V2 ? 2 : 1} with:`);

  // ID0
  let id = smmu.gr0Read(ARM_SMMU_GR0_ID0);
  if ((id & ID0_S1TS) !== 0) {
    smmu.features |= ARM_SMMU_FEAT_TRANS_S1;
    note('\tstage 1 translation');
  }
  if ((id & ID0_S2TS) !== 0) {
    smmu.features |= ARM_SMMU_FEAT_TRANS_S2;
    note('\tstage 2 translation');
  }
  if ((id & ID0_NTS) !== 0) {
    smmu.features |= ARM_SMMU_FEAT_TRANS_NESTED;
    note('\tnested translation');
  }
  if (!(smmu.features & (ARM_SMMU_FEAT_TRANS_S1 | ARM_SMMU_FEAT_TRANS_S2))) {
    lg.err(smmu.name, '\tno translation support!', LOG_NS);
    throw new KernelError('ENODEV', `${smmu.name}: ID0 reports no translation stage`);
  }
  if ((id & ID0_S1TS) !== 0 && (smmu.version < ARM_SMMU_V2 || (id & ID0_ATOSNS) === 0)) {
    smmu.features |= ARM_SMMU_FEAT_TRANS_OPS;
    note('\taddress translation ops');
  }
  // Firmware's dma-coherent wins over what ID0.CTTW says.
  const cttwReg = (id & ID0_CTTW) !== 0;
  if (cttwFw || cttwReg) note(`\t${cttwFw ? '' : 'non-'}coherent table walk`);
  if (cttwFw !== cttwReg) note('\t(IDR0.CTTW overridden by FW configuration)');

  let size: number;
  if (smmu.version === ARM_SMMU_V2 && (id & ID0_EXIDS) !== 0) {
    smmu.features |= ARM_SMMU_FEAT_EXIDS;
    size = 1 << 16;
  } else {
    size = 1 << FIELD_GET(ID0_NUMSIDB, id);
  }
  smmu.streamidMask = size - 1;
  if ((id & ID0_SMS) !== 0) {
    smmu.features |= ARM_SMMU_FEAT_STREAM_MATCH;
    size = FIELD_GET(ID0_NUMSMRG, id);
    if (size === 0) {
      lg.err(smmu.name, 'stream-matching supported, but no SMRs present!', LOG_NS);
      throw new KernelError('ENODEV', `${smmu.name}: stream matching with no SMRs`);
    }
    smmu.smrs = Array.from({ length: size }, () => ({ id: 0, mask: 0, valid: false }));
    note(`\tstream matching with ${size} register groups`);
  }
  smmu.s2crs = Array.from({ length: size }, () => smmu.s2crInitVal());
  smmu.numMappingGroups = size;
  if (smmu.version < ARM_SMMU_V2 || (id & ID0_PTFS_NO_AARCH32) === 0) {
    smmu.features |= ARM_SMMU_FEAT_FMT_AARCH32_L;
    if ((id & ID0_PTFS_NO_AARCH32S) === 0) smmu.features |= ARM_SMMU_FEAT_FMT_AARCH32_S;
  }

  // ID1
  id = smmu.gr0Read(ARM_SMMU_GR0_ID1);
  smmu.pgshift = (id & ID1_PAGESIZE) !== 0 ? 16 : 12;
  size = 1 << (FIELD_GET(ID1_NUMPAGENDXB, id) + 1);
  const spaceSize = (2 * size) << smmu.pgshift;
  if (smmu.numpage !== spaceSize) {
    lg.warn(smmu.name, `SMMU address space size (${hex(spaceSize)}) differs from mapped region size (${hex(smmu.numpage)})!`, LOG_NS);
  }
  if (spaceSize > smmu.base.size) {
    throw new KernelError('ENODEV', `${smmu.name}: the register space (${hex(spaceSize)} bytes) is larger than the mapped region (${hex(smmu.base.size)})`);
  }
  // From now on numpage is NUMPAGE, so context bank n is at page numpage + n.
  smmu.numpage = size;
  smmu.numS2ContextBanks = FIELD_GET(ID1_NUMS2CB, id);
  smmu.numContextBanks = FIELD_GET(ID1_NUMCB, id);
  if (smmu.numS2ContextBanks > smmu.numContextBanks) {
    lg.err(smmu.name, 'impossible number of S2 context banks!', LOG_NS);
    throw new KernelError('ENODEV', `${smmu.name}: ${smmu.numS2ContextBanks} stage-2-only banks of ${smmu.numContextBanks}`);
  }
  note(`\t${smmu.numContextBanks} context banks (${smmu.numS2ContextBanks} stage-2 only)`);
  smmu.cbs = Array.from({ length: smmu.numContextBanks }, () => ({ ttbr: [0n, 0n], tcr: [0, 0], mair: [0, 0], cfg: null, domain: null }));
  smmu.contextMap.length = 0;
  for (let i = 0; i < smmu.numContextBanks; i++) smmu.contextMap.push(false);

  // ID2
  id = smmu.gr0Read(ARM_SMMU_GR0_ID2);
  smmu.ipaSize = armSmmuIdSizeToBits(FIELD_GET(ID2_IAS, id));
  smmu.paSize = armSmmuIdSizeToBits(FIELD_GET(ID2_OAS, id));
  if ((id & ID2_VMID16) !== 0) smmu.features |= ARM_SMMU_FEAT_VMID16;
  if (smmu.version < ARM_SMMU_V2) {
    smmu.vaSize = smmu.ipaSize;
    if (smmu.version === ARM_SMMU_V1_64K) smmu.features |= ARM_SMMU_FEAT_FMT_AARCH64_64K;
  } else {
    smmu.vaSize = armSmmuIdSizeToBits(FIELD_GET(ID2_UBS, id));
    if ((id & ID2_PTFS_4K) !== 0) smmu.features |= ARM_SMMU_FEAT_FMT_AARCH64_4K;
    if ((id & ID2_PTFS_16K) !== 0) smmu.features |= ARM_SMMU_FEAT_FMT_AARCH64_16K;
    if ((id & ID2_PTFS_64K) !== 0) smmu.features |= ARM_SMMU_FEAT_FMT_AARCH64_64K;
  }

  smmu.impl?.cfgProbe?.(smmu);

  // What the formats add up to.
  smmu.pgsizeBitmap = 0;
  if (smmu.features & ARM_SMMU_FEAT_FMT_AARCH32_S) smmu.pgsizeBitmap += SZ_4K + SZ_64K + SZ_1M + SZ_16M;
  if (smmu.features & (ARM_SMMU_FEAT_FMT_AARCH32_L | ARM_SMMU_FEAT_FMT_AARCH64_4K)) {
    for (const s of [SZ_4K, SZ_2M, SZ_1G]) if (Math.floor(smmu.pgsizeBitmap / s) % 2 === 0) smmu.pgsizeBitmap += s;
  }
  if (smmu.features & ARM_SMMU_FEAT_FMT_AARCH64_16K) smmu.pgsizeBitmap += SZ_16K + SZ_32M;
  if (smmu.features & ARM_SMMU_FEAT_FMT_AARCH64_64K) {
    for (const s of [SZ_64K, SZ_512M]) if (Math.floor(smmu.pgsizeBitmap / s) % 2 === 0) smmu.pgsizeBitmap += s;
  }
  note(`\tSupported page sizes: 0x${smmu.pgsizeBitmap.toString(16).padStart(8, '0')}`);
  if (smmu.features & ARM_SMMU_FEAT_TRANS_S1) note(`\tStage-1: ${smmu.vaSize}-bit VA -> ${smmu.ipaSize}-bit IPA`);
  if (smmu.features & ARM_SMMU_FEAT_TRANS_S2) note(`\tStage-2: ${smmu.ipaSize}-bit IPA -> ${smmu.paSize}-bit PA`);
}

/**
 * Bring the SMMU to the driver's state: stream map and banks from the shadows, TLBs invalidated,
 * sCR0 with fault reporting on and client access enabled.
 */
// kernel: arm_smmu_device_reset() [arm-smmu.c]
export async function armSmmuDeviceReset(smmu: ArmSmmuDevice): Promise<void> {
  // Not in Linux: a crash kernel (or anything booted without the previous kernel's shutdown) may find
  // transactions still stalled in the banks. Terminate them before the banks are rewritten (SCTLR = 0
  // would turn the terminate into a silent RAZ/WI), so no master waits forever on a kernel that is gone.
  await armSmmuTerminateStalls(smmu, Array.from({ length: smmu.numContextBanks }, (_, i) => i));
  // Clear the global FSR.
  smmu.gr0Write(ARM_SMMU_GR0_sGFSR, smmu.gr0Read(ARM_SMMU_GR0_sGFSR));
  // Stream mapping groups from the shadows: invalid SMRs, S2CRs at their initial type.
  for (let i = 0; i < smmu.numMappingGroups; i++) armSmmuWriteSme(smmu, i);
  // Every bank as configured (unassigned ones disabled), its FSR clear.
  for (let i = 0; i < smmu.numContextBanks; i++) {
    armSmmuWriteContextBank(smmu, i);
    smmu.cbWrite(i, ARM_SMMU_CB_FSR, CB_FSR_FAULT);
  }
  // Invalidate the TLB, just in case.
  smmu.gr0Write(ARM_SMMU_GR0_TLBIALLH, QCOM_DUMMY_VAL);
  smmu.gr0Write(ARM_SMMU_GR0_TLBIALLNSNH, QCOM_DUMMY_VAL);
  let reg = smmu.gr0Read(ARM_SMMU_GR0_sCR0);
  // Fault reporting on; TLB broadcast off.
  reg |= sCR0_GFRE | sCR0_GFIE | sCR0_GCFGFRE | sCR0_GCFGFIE;
  reg |= sCR0_VMIDPNE | sCR0_PTM;
  // Client access on, unmatched streams as disable_bypass says.
  reg &= ~sCR0_CLIENTPD;
  if (smmu.params['arm-smmu.disable_bypass']) reg |= sCR0_USFCFG;
  else reg &= ~sCR0_USFCFG;
  // No forced broadcast, no barrier upgrade.
  reg &= ~sCR0_FB;
  reg &= ~sCR0_BSU;
  if (smmu.features & ARM_SMMU_FEAT_VMID16) reg |= sCR0_VMID16EN;
  if (smmu.features & ARM_SMMU_FEAT_EXIDS) reg |= sCR0_EXIDENABLE;
  smmu.impl?.reset?.(smmu);
  // Push the button.
  await armSmmuTlbSyncGlobal(smmu);
  smmu.gr0Write(ARM_SMMU_GR0_sCR0, reg >>> 0);
}

/**
 * Find how many SMR ID and MASK bits are implemented, by writing all-ones into a free SMR and
 * reading it back.
 */
// kernel: arm_smmu_test_smr_masks() [arm-smmu.c]
export function armSmmuTestSmrMasks(smmu: ArmSmmuDevice): void {
  if (!smmu.smrs) return;
  // Live SMRs everywhere: nothing to test with, and nothing to worry about.
  const i = smmu.smrs.findIndex((s) => !s.valid);
  if (i < 0) return;
  // ID bits may be dropped where MASK bits are set: test each field on its own.
  smmu.gr0Write(ARM_SMMU_GR0_SMR(i), FIELD_PREP(SMR_ID, smmu.streamidMask & 0xffff));
  smmu.streamidMask = FIELD_GET(SMR_ID, smmu.gr0Read(ARM_SMMU_GR0_SMR(i)));
  smmu.gr0Write(ARM_SMMU_GR0_SMR(i), FIELD_PREP(SMR_MASK, smmu.streamidMask));
  smmu.smrMaskMask = FIELD_GET(SMR_MASK, smmu.gr0Read(ARM_SMMU_GR0_SMR(i)));
}

/** What the node says; the match data of its compatible. */
// kernel: arm_smmu_device_dt_probe() [arm-smmu.c]
function armSmmuDeviceDtProbe(dev: PlatformDevice): { data: ArmSmmuMatchData; globalIrqs: number; pmuIrqs: number } {
  const np = dev.ofNode;
  if (!np) throw new KernelError('ENODEV', `${dev.name}: arm-smmu needs a device tree node`);
  const compat = dev.matchedCompatible ?? np.compatible.find((c) => ARM_SMMU_MATCH.has(c));
  const data = compat !== undefined ? ARM_SMMU_MATCH.get(compat) : undefined;
  if (!data) throw new KernelError('ENODEV', `${dev.name}: no arm-smmu match for compatible ${np.compatible.join(', ')}`);
  const globalIrqs = np.u32('#global-interrupts');
  if (globalIrqs === undefined) throw new KernelError('ENODEV', `${dev.name}: missing #global-interrupts property`);
  // The DT binding has no PMU interrupts: everything after the global ones is a context interrupt
  // (only IORT describes PMU lines), as the machine wires them.
  const pmuIrqs = 0;
  if (np.has('mmu-masters')) {
    throw new KernelError('ENODEV', `${dev.name}: the deprecated "mmu-masters" binding is not supported; use "iommus"`);
  }
  return { data, globalIrqs, pmuIrqs };
}

// kernel: arm_smmu_device_probe() [arm-smmu.c]
async function armSmmuDeviceProbe(dev: PlatformDevice, params: ArmSmmuParams): Promise<void> {
  const { data, globalIrqs, pmuIrqs } = armSmmuDeviceDtProbe(dev);
  const res = platformGetResource(dev, 0);
  if (!res) throw new KernelError('ENODEV', `${dev.name}: no register region`);
  const base = devmIoremap(dev, res.start, res.size);
  const smmu = new ArmSmmuDevice({ dev, base, ioaddr: res.start, version: data.version, model: data.model, params });
  smmu.numpage = res.size;
  if (dev.dmaCoherent) smmu.features |= ARM_SMMU_FEAT_COHERENT_WALK;
  armSmmuImplInit(smmu);

  const numIrqs = platformIrqCount(dev);
  smmu.numGlobalIrqs = globalIrqs;
  smmu.numContextIrqs = numIrqs - globalIrqs - pmuIrqs;
  if (smmu.numContextIrqs <= 0) {
    throw new KernelError('ENODEV', `${dev.name}: found ${numIrqs} interrupts but expected at least ${globalIrqs + pmuIrqs + 1}`);
  }
  for (let i = 0; i < smmu.numContextIrqs; i++) smmu.irqs.push(platformGetIrq(dev, globalIrqs + pmuIrqs + i));

  armSmmuDeviceCfgProbe(smmu);

  if (smmu.version === ARM_SMMU_V2) {
    if (smmu.numContextBanks > smmu.numContextIrqs) {
      throw new KernelError('ENODEV', `${dev.name}: found only ${smmu.numContextIrqs} context irq(s) but ${smmu.numContextBanks} required`);
    }
    // Ignore superfluous interrupts.
    smmu.numContextIrqs = smmu.numContextBanks;
    smmu.irqs.length = smmu.numContextIrqs;
  }

  for (let i = 0; i < globalIrqs; i++) {
    const irq = platformGetIrq(dev, i);
    smmu.globalIrqActions.push(devmRequestIrq(dev, irq, () => armSmmuGlobalFault(smmu), 'arm-smmu global fault', { shared: true }));
  }

  dev.core.onTeardown('arm-smmu fault work', () => {
    smmu.gone = true;
    smmu.quiesced = true;
    smmu.faultQueue.clear();
  });
  dev.driverData = smmu;
  dev.devres.add('arm-smmu drvdata', () => {
    dev.driverData = null;
  });
  await armSmmuDeviceReset(smmu);
  armSmmuTestSmrMasks(smmu);

  smmu.iommu = new IommuDevice({ dev });
  await iommuDeviceRegister(smmu.iommu, armSmmuOps(smmu), dev);
  log(smmu).info(smmu.name, `arm-smmu: ${smmu.impl?.name ?? 'generic'} SMMUv${smmu.version === ARM_SMMU_V2 ? 2 : 1} registered`, LOG_NS);
}

// ---- shutdown and remove -------------------------------------------------------------------------

/** How long teardown waits for a terminated stall to retire (µs), polling every µs. */
export const ARM_SMMU_STALL_RETIRE_TIMEOUT_US = 10_000;

/**
 * Stop bank `idx` stalling (SCTLR.CFCFG = 0, through the impl's hook): transactions that were waiting
 * behind its stall (HUPCF = 0) and are admitted once it is terminated then fault in terminate mode
 * instead of stalling again with nobody left to answer. The shadow agrees (stallSuspended), and a
 * quiesced SMMU's RESUME path never turns stalling back on.
 */
function armSmmuStopStalling(smmu: ArmSmmuDevice, idx: number): void {
  const cfg = smmu.cbs[idx]?.cfg ?? null;
  if (cfg) {
    if (cfg.stall && !cfg.stallSuspended) {
      cfg.stallSuspended = true;
      armSmmuWriteSctlr(smmu, idx);
    }
    return;
  }
  const sctlr = smmu.cbRead(idx, ARM_SMMU_CB_SCTLR);
  if ((sctlr & SCTLR_CFCFG) !== 0) smmu.cbWrite(idx, ARM_SMMU_CB_SCTLR, (sctlr & ~SCTLR_CFCFG) >>> 0);
}

/** Answer whatever bank `idx` has latched: clear FSR, and terminate the transaction if it stalled. */
function armSmmuTerminateBank(smmu: ArmSmmuDevice, idx: number): void {
  const domain = smmu.cbs[idx].domain;
  if (domain && (domain.faultPending || armSmmuPendingFault(domain))) {
    armSmmuContextFaultResume(domain, 'terminate');
    return;
  }
  const fsr = smmu.cbRead(idx, ARM_SMMU_CB_FSR);
  if (!(fsr & CB_FSR_FAULT)) return;
  smmu.cbWrite(idx, ARM_SMMU_CB_FSR, fsr);
  if ((fsr & CB_FSR_SS) !== 0) smmu.cbWrite(idx, ARM_SMMU_CB_RESUME, RESUME_TERMINATE);
}

/**
 * Terminate every stalled transaction of banks `banks` and wait until the stalls have retired
 * (FSR.SS clear), so no master is left waiting: stalling is stopped first, so a transaction that was
 * queued behind the stall cannot stall again once admitted. A RESUME the SMMU ignored (a fault latched
 * again meanwhile) is answered again on the next poll. Kernel-style poll with a timeout; on timeout
 * the banks still stalled are named in the log.
 */
async function armSmmuTerminateStalls(smmu: ArmSmmuDevice, banks: readonly number[]): Promise<void> {
  // Answer first (answering a fault lets a suspended bank stall again), then stop stalling, before the
  // RESUME is carried out and the waiters are admitted.
  for (const i of banks) armSmmuTerminateBank(smmu, i);
  for (const i of banks) armSmmuStopStalling(smmu, i);
  const stalled = (): number[] => banks.filter((i) => (smmu.cbRead(i, ARM_SMMU_CB_FSR) & CB_FSR_SS) !== 0);
  try {
    await readPollTimeout(
      smmu.dev.port,
      () => {
        const left = stalled();
        // Answer again what was latched since: the RESUME is ignored while FSR records a fault.
        for (const i of left) if (smmu.cbRead(i, ARM_SMMU_CB_FSR) & CB_FSR_FAULT) armSmmuTerminateBank(smmu, i);
        return left.length;
      },
      (n) => n === 0,
      1,
      ARM_SMMU_STALL_RETIRE_TIMEOUT_US,
      `${smmu.name}: stalled transactions to retire`,
    );
  } catch (e) {
    if (!(e instanceof KernelError)) throw e;
    log(smmu).err(smmu.name, `stalled transactions did not retire in context bank(s) ${stalled().join(', ')}: ${e.message}`, LOG_NS);
  }
}

/** Invalidate every SMR (shadow and register), so every stream is unmatched. */
function armSmmuClearStreamMap(smmu: ArmSmmuDevice, s2crType: S2crType | null): void {
  for (let i = 0; i < smmu.numMappingGroups; i++) {
    const init = smmu.s2crInitVal();
    smmu.s2crs[i] = s2crType === null ? init : { ...init, type: s2crType };
    if (smmu.smrs) smmu.smrs[i] = { id: 0, mask: 0, valid: false };
    armSmmuWriteSme(smmu, i);
  }
}

/**
 * Leave the SMMU for whatever runs next (a reboot, a kexec'd kernel), as
 * `arm-smmu.shutdown_policy` says.
 */
// kernel: arm_smmu_device_shutdown() [arm-smmu.c]
export async function armSmmuDeviceShutdown(smmu: ArmSmmuDevice): Promise<void> {
  const lg = log(smmu);
  if (smmu.contextMap.some((used) => used)) lg.info(smmu.name, 'disabling translation', LOG_NS);
  smmu.quiesced = true;
  smmu.faultQueue.clear();
  await armSmmuTerminateStalls(smmu, Array.from({ length: smmu.numContextBanks }, (_, i) => i));
  const policy = smmu.params['arm-smmu.shutdown_policy'];
  const faultIrqs = smmu.params['arm-smmu.shutdown_fault_irqs'];
  const irqBits = (sCR0_GFIE | sCR0_GCFGFIE) >>> 0;
  let scr0: number;
  switch (policy) {
    case 'bypass':
      // Linux today: client ports disabled, everything passes untranslated.
      scr0 = sCR0_CLIENTPD;
      if (faultIrqs) scr0 |= sCR0_GFRE | sCR0_GCFGFRE | irqBits;
      break;
    case 'abort-unmatched':
    case 'abort-all':
      // Every stream unmatched (and every S2CR faulting for abort-all): unmatched streams abort.
      armSmmuClearStreamMap(smmu, policy === 'abort-all' ? S2CR_TYPE_FAULT : null);
      scr0 = (smmu.gr0Read(ARM_SMMU_GR0_sCR0) & ~sCR0_CLIENTPD) | sCR0_USFCFG | sCR0_GFRE | sCR0_GCFGFRE;
      scr0 = faultIrqs ? scr0 | irqBits : scr0 & ~irqBits;
      break;
    case 'translate':
      // Stay enabled with the stream map back at its boot state (USFCFG as disable_bypass says).
      armSmmuClearStreamMap(smmu, null);
      scr0 = smmu.gr0Read(ARM_SMMU_GR0_sCR0) & ~sCR0_CLIENTPD;
      scr0 = faultIrqs ? scr0 | irqBits : scr0 & ~irqBits;
      break;
  }
  if (!faultIrqs) {
    // No context fault interrupts either.
    for (let i = 0; i < smmu.numContextBanks; i++) {
      const sctlr = smmu.cbRead(i, ARM_SMMU_CB_SCTLR);
      if (sctlr & SCTLR_CFIE) smmu.cbWrite(i, ARM_SMMU_CB_SCTLR, (sctlr & ~SCTLR_CFIE) >>> 0);
    }
  }
  smmu.gr0Write(ARM_SMMU_GR0_sCR0, scr0 >>> 0);
  lg.info(smmu.name, `shutdown: policy ${policy}, fault interrupts ${faultIrqs ? 'kept' : 'disabled'}, sCR0 = ${hex(scr0 >>> 0)}`, LOG_NS);
}

// kernel: arm_smmu_device_remove() [arm-smmu.c]
async function armSmmuDeviceRemove(dev: PlatformDevice): Promise<void> {
  const smmu = dev.driverData;
  if (!(smmu instanceof ArmSmmuDevice)) return;
  if (smmu.iommu) await iommuDeviceUnregister(smmu.iommu);
  await armSmmuDeviceShutdown(smmu);
}

/** The platform driver, reading the `arm-smmu.*` parameters of its kernel. */
export function createArmSmmuDriver(params: ArmSmmuParams = ARM_SMMU_DEFAULT_PARAMS): PlatformDriver {
  const p: ArmSmmuParams = {
    'arm-smmu.disable_bypass': params['arm-smmu.disable_bypass'],
    'arm-smmu.shutdown_policy': params['arm-smmu.shutdown_policy'],
    'arm-smmu.shutdown_fault_irqs': params['arm-smmu.shutdown_fault_irqs'],
    'arm-smmu.stall_storm_guard': params['arm-smmu.stall_storm_guard'],
  };
  return {
    name: ARM_SMMU_DRIVER_NAME,
    bus: platformBus,
    ofMatchTable: ARM_SMMU_COMPATIBLES,
    probe: (dev) => armSmmuDeviceProbe(dev, p),
    remove: armSmmuDeviceRemove,
    // (kernel: arm_smmu_device_shutdown())
    async shutdown(dev) {
      const smmu = dev.driverData;
      if (smmu instanceof ArmSmmuDevice) await armSmmuDeviceShutdown(smmu);
    },
  };
}

export { ArmSmmuDevice, ArmSmmuDomain };
