/**
 * The arm-smmu driver's data structures (kernel: the structs of arm-smmu.h): one probed SMMU
 * (`ArmSmmuDevice`, kernel: struct arm_smmu_device) with its stream-map and context-bank shadows and
 * its register accessors, a domain (`ArmSmmuDomain`, kernel: struct arm_smmu_domain), the context
 * bank configuration a domain owns (`ArmSmmuCfg`) and the per-master record (`ArmSmmuMasterCfg`).
 *
 * Register access goes through `readl/writel/readq/writeq(page, offset)` exactly as Linux's
 * arm_smmu_readl() and friends, so an implementation can redirect it (`impl.readReg` …): page 0 is
 * GR0, page 1 GR1, and context bank n lives at page `numpage + n`.
 */
import type { Device } from '../../bus/device.js';
import { KernelError } from '../../bus/errno.js';
import type { IoMem } from '../../bus/io.js';
import type { IrqAction, IrqSpec } from '../../bus/irq.js';
import type { PlatformDevice } from '../../bus/platform.js';
import type { IoPgtable } from '../../core/io-pgtable.js';
import type { IommuDevice } from '../../core/iommu-device.js';
import { IommuDomain, type IommuDomainInit } from '../../core/iommu-domain.js';
import type { IommuGroup } from '../../core/iommu-group.js';
import { Mutex } from '../../core/mutex.js';
import PQueue from 'p-queue';
import type { ArmSmmuImpl } from './arm-smmu-impl.js';
import {
  ARM_SMMU_GR0,
  ARM_SMMU_GR1,
  S2CR_PRIVCFG_DEFAULT,
  S2CR_TYPE_BYPASS,
  S2CR_TYPE_FAULT,
  type CbarType,
  type S2crType,
} from './arm-smmu-regs.js';

// (kernel: ARM_SMMU_FEAT_* (smmu->features))
export const ARM_SMMU_FEAT_COHERENT_WALK = 1 << 0;
export const ARM_SMMU_FEAT_STREAM_MATCH = 1 << 1;
export const ARM_SMMU_FEAT_TRANS_S1 = 1 << 2;
export const ARM_SMMU_FEAT_TRANS_S2 = 1 << 3;
export const ARM_SMMU_FEAT_TRANS_NESTED = 1 << 4;
export const ARM_SMMU_FEAT_TRANS_OPS = 1 << 5;
export const ARM_SMMU_FEAT_VMID16 = 1 << 6;
export const ARM_SMMU_FEAT_FMT_AARCH64_4K = 1 << 7;
export const ARM_SMMU_FEAT_FMT_AARCH64_16K = 1 << 8;
export const ARM_SMMU_FEAT_FMT_AARCH64_64K = 1 << 9;
export const ARM_SMMU_FEAT_FMT_AARCH32_L = 1 << 10;
export const ARM_SMMU_FEAT_FMT_AARCH32_S = 1 << 11;
export const ARM_SMMU_FEAT_EXIDS = 1 << 12;

/** The kernel's enum arm_smmu_arch_version (ordered: `version < ARM_SMMU_V2` means SMMUv1). */
export const ARM_SMMU_V1 = 0;
export const ARM_SMMU_V1_64K = 1;
export const ARM_SMMU_V2 = 2;
export type ArmSmmuArchVersion = typeof ARM_SMMU_V1 | typeof ARM_SMMU_V1_64K | typeof ARM_SMMU_V2;

/** The kernel's enum arm_smmu_implementation */
export type ArmSmmuImplementation = 'GENERIC_SMMU' | 'ARM_MMU500' | 'CAVIUM_SMMUV2' | 'QCOM_SMMUV2';

/** The kernel's enum arm_smmu_context_fmt */
export type ArmSmmuContextFmt = 'NONE' | 'AARCH64' | 'AARCH32_L' | 'AARCH32_S';

/** The kernel's enum arm_smmu_domain_stage */
export type ArmSmmuDomainStage = 'S1' | 'S2' | 'NESTED';

/** The kernel's ARM_SMMU_INVALID_IRPTNDX */
export const ARM_SMMU_INVALID_IRPTNDX = 0xff;
/** The kernel's INVALID_SMENDX */
export const INVALID_SMENDX = -1;

/** What `.shutdown` leaves behind (the `arm-smmu.shutdown_policy` parameter). */
export type ArmSmmuShutdownPolicy = 'bypass' | 'abort-unmatched' | 'abort-all' | 'translate';

/**
 * The module parameters the driver reads, named as on the kernel command line (a kernel's parsed
 * parameters fit this shape as they are).
 */
export interface ArmSmmuParams {
  /** Unmatched streams fault (sCR0.USFCFG) and unused stream-map entries fault instead of bypassing. */
  readonly 'arm-smmu.disable_bypass': boolean;
  readonly 'arm-smmu.shutdown_policy': ArmSmmuShutdownPolicy;
  /** Keep the global and context fault interrupts enabled across `.shutdown`. */
  readonly 'arm-smmu.shutdown_fault_irqs': boolean;
  /** After a stalled fault, stop stalling on that context bank until the fault is answered. */
  readonly 'arm-smmu.stall_storm_guard': boolean;
}

export const ARM_SMMU_DEFAULT_PARAMS: ArmSmmuParams = {
  'arm-smmu.disable_bypass': true,
  'arm-smmu.shutdown_policy': 'bypass',
  'arm-smmu.shutdown_fault_irqs': false,
  'arm-smmu.stall_storm_guard': false,
};

/** The kernel's struct arm_smmu_smr — the shadow of one SMR. */
export interface ArmSmmuSmr {
  mask: number;
  id: number;
  valid: boolean;
}

/** The kernel's struct arm_smmu_s2cr — the shadow of one S2CR, with its users. */
export interface ArmSmmuS2cr {
  /** The group of the masters using this entry (kernel: s2cr->group). */
  group: IommuGroup | null;
  /** Stream IDs (of any master) sharing this entry. */
  count: number;
  type: S2crType;
  privcfg: number;
  cbndx: number;
}

/** The kernel's struct arm_smmu_cfg — a domain's context bank configuration. */
export interface ArmSmmuCfg {
  cbndx: number;
  irptndx: number;
  /** Stage 1: ASID = cbndx. Stage 2: VMID = cbndx + 1. */
  asid: number;
  vmid: number;
  cbar: CbarType;
  fmt: ArmSmmuContextFmt;
  /** Invalidate a walk by ASID rather than by VA range (the Qualcomm choice). */
  flushWalkPreferTlbiasid: boolean;
  /** SCTLR.CFCFG: faults stall. Set only while every master on the bank can stall. */
  stall: boolean;
  /** Stall is suspended after a fault until it is answered (`arm-smmu.stall_storm_guard`). */
  stallSuspended: boolean;
  /** SCTLR.HUPCF: other transactions keep being translated while one has faulted. */
  hupcf: boolean;
}

/** The kernel's struct arm_smmu_cb — the register values of one context bank. */
export interface ArmSmmuCb {
  ttbr: [bigint, bigint];
  tcr: [number, number];
  mair: [number, number];
  cfg: ArmSmmuCfg | null;
  /** The domain using the bank (to find masters and handlers from a fault). */
  domain: ArmSmmuDomain | null;
}

export interface ArmSmmuInit {
  dev: PlatformDevice;
  base: IoMem;
  /** Physical base of the register space (kernel: smmu->ioaddr). */
  ioaddr: number;
  version: ArmSmmuArchVersion;
  model: ArmSmmuImplementation;
  params: ArmSmmuParams;
}

/** Outcome counters of an SMMU's TLB syncs a test or report can read (armSmmuTlbStats()). */
export interface ArmSmmuTlbStats {
  syncs: number;
  syncTimeouts: number;
}

/** One probed SMMU (kernel: struct arm_smmu_device). */
export class ArmSmmuDevice {
  readonly dev: PlatformDevice;
  readonly base: IoMem;
  readonly ioaddr: number;
  readonly version: ArmSmmuArchVersion;
  readonly model: ArmSmmuImplementation;
  readonly params: ArmSmmuParams;
  impl: ArmSmmuImpl | null = null;

  /** Register pages in the global half: context bank n is page numpage + n. */
  numpage = 0;
  pgshift = 12;
  features = 0;

  numContextBanks = 0;
  numS2ContextBanks = 0;
  /** The kernel's smmu->context_map */
  readonly contextMap: boolean[] = [];
  cbs: ArmSmmuCb[] = [];
  /** Round-robin interrupt index for SMMUv1 banks (kernel: smmu->irptndx). */
  irptndx = 0;

  numMappingGroups = 0;
  streamidMask = 0;
  smrMaskMask = 0;
  /** Null with stream indexing (kernel: smmu->smrs). */
  smrs: ArmSmmuSmr[] | null = null;
  s2crs: ArmSmmuS2cr[] = [];
  /** The kernel's smmu->stream_map_mutex */
  readonly streamMapMutex = new Mutex('arm-smmu stream map');

  vaSize = 0;
  ipaSize = 0;
  paSize = 0;
  pgsizeBitmap = 0;

  numGlobalIrqs = 0;
  numContextIrqs = 0;
  /** Context interrupts (kernel: smmu->irqs). */
  irqs: IrqSpec[] = [];
  globalIrqActions: IrqAction[] = [];

  /** The instance registered with the iommu core (kernel: smmu->iommu). */
  iommu: IommuDevice | null = null;
  /** Where context faults (stalled or not) are handled, off the interrupt path: an unbound workqueue. */
  readonly faultQueue: PQueue = new PQueue();
  /** Set by shutdown/remove: fault work still running terminates stalls and reports nothing more. */
  quiesced = false;
  /** The kernel was torn down (kexec): nothing of it may touch the hardware any more. */
  gone = false;
  /** TLB sync counters, kept here rather than in a side table: a strict unmap bumps one per sync. */
  readonly tlbStats: ArmSmmuTlbStats = { syncs: 0, syncTimeouts: 0 };

  constructor(init: ArmSmmuInit) {
    this.dev = init.dev;
    this.base = init.base;
    this.ioaddr = init.ioaddr;
    this.version = init.version;
    this.model = init.model;
    this.params = init.params;
  }

  get name(): string {
    return this.dev.name;
  }

  /** Byte offset of register page `n` (kernel: arm_smmu_page()). */
  page(n: number): number {
    return n << this.pgshift;
  }

  /** The page of context bank `n` (kernel: ARM_SMMU_CB()). */
  cbPage(n: number): number {
    return this.numpage + n;
  }

  /** The kernel's s2cr_init_val — an unused entry faults with disable_bypass, else bypasses. */
  s2crInitVal(): ArmSmmuS2cr {
    return {
      group: null,
      count: 0,
      type: this.params['arm-smmu.disable_bypass'] ? S2CR_TYPE_FAULT : S2CR_TYPE_BYPASS,
      privcfg: S2CR_PRIVCFG_DEFAULT,
      cbndx: 0,
    };
  }

  // ---- register accessors (kernel: arm_smmu_readl() … arm_smmu_cb_writeq()) ----------------------

  readl(page: number, offset: number): number {
    if (this.impl?.readReg) return this.impl.readReg(this, page, offset);
    return this.base.readlRelaxed(this.page(page) + offset);
  }

  writel(page: number, offset: number, val: number): void {
    if (this.impl?.writeReg) this.impl.writeReg(this, page, offset, val);
    else this.base.writelRelaxed(val >>> 0, this.page(page) + offset);
  }

  readq(page: number, offset: number): bigint {
    if (this.impl?.readReg64) return this.impl.readReg64(this, page, offset);
    return this.base.readqRelaxed(this.page(page) + offset);
  }

  writeq(page: number, offset: number, val: bigint): void {
    if (this.impl?.writeReg64) this.impl.writeReg64(this, page, offset, val);
    else this.base.writeqRelaxed(val, this.page(page) + offset);
  }

  gr0Read(offset: number): number {
    return this.readl(ARM_SMMU_GR0, offset);
  }

  gr0Write(offset: number, val: number): void {
    this.writel(ARM_SMMU_GR0, offset, val);
  }

  gr1Read(offset: number): number {
    return this.readl(ARM_SMMU_GR1, offset);
  }

  gr1Write(offset: number, val: number): void {
    this.writel(ARM_SMMU_GR1, offset, val);
  }

  cbRead(n: number, offset: number): number {
    return this.readl(this.cbPage(n), offset);
  }

  cbWrite(n: number, offset: number, val: number): void {
    this.writel(this.cbPage(n), offset, val);
  }

  cbReadq(n: number, offset: number): bigint {
    return this.readq(this.cbPage(n), offset);
  }

  cbWriteq(n: number, offset: number, val: bigint): void {
    this.writeq(this.cbPage(n), offset, val);
  }
}

/** The master record of a device behind an SMMU (kernel: struct arm_smmu_master_cfg). */
export class ArmSmmuMasterCfg {
  /** Stream-map entry index per fwspec ID (INVALID_SMENDX until allocated). */
  readonly smendx: number[];
  /** The paging domain the master is attached to (null: identity, blocked or none). */
  domain: ArmSmmuDomain | null = null;

  constructor(
    readonly smmu: ArmSmmuDevice,
    numIds: number,
  ) {
    this.smendx = new Array<number>(numIds).fill(INVALID_SMENDX);
  }
}

/** A translation domain of this driver (kernel: struct arm_smmu_domain). */
export class ArmSmmuDomain extends IommuDomain {
  /** The SMMU the domain was finalised on (null until its first attach). */
  smmu: ArmSmmuDevice | null = null;
  pgtbl: IoPgtable | null = null;
  stage: ArmSmmuDomainStage = 'S1';
  readonly cfg: ArmSmmuCfg = {
    cbndx: -1,
    irptndx: ARM_SMMU_INVALID_IRPTNDX,
    asid: 0,
    vmid: 0,
    cbar: 0,
    fmt: 'NONE',
    flushWalkPreferTlbiasid: false,
    stall: false,
    stallSuspended: false,
    hupcf: false,
  };
  /** IO_PGTABLE_QUIRK_* asked for before the domain is finalised (kernel: pgtbl_quirks). */
  pgtblQuirks = 0;
  /** Forced HUPCF choice for the bank (null: the implementation's default). */
  hupcfRequest: boolean | null = null;
  /** The kernel's smmu_domain->init_mutex */
  readonly initMutex = new Mutex('arm-smmu domain init');
  /** Devices attached to the domain (every one of them must be able to stall for CFCFG). */
  readonly masters = new Set<Device>();
  /** The context fault interrupt requested for the bank. */
  contextIrq: IrqAction | null = null;
  /** A context fault of the bank is queued or being handled. */
  faultPending = false;

  constructor(init: IommuDomainInit = {}) {
    super(init);
  }

  /** The SMMU, or EINVAL when the domain was never attached. */
  requireSmmu(what: string): ArmSmmuDevice {
    if (!this.smmu) throw new KernelError('EINVAL', `${what}: the arm-smmu domain is not attached to any SMMU yet`);
    return this.smmu;
  }
}

// kernel: to_smmu_domain() [arm-smmu.c]
export function toSmmuDomain(domain: IommuDomain): ArmSmmuDomain {
  if (!(domain instanceof ArmSmmuDomain)) throw new KernelError('EINVAL', 'not an arm-smmu domain');
  return domain;
}
