/**
 * One SMMUv3 instance as the driver holds it (kernel: struct arm_smmu_device) and the parts of
 * arm-smmu-v3.c that bring the hardware up and down: firmware and ID-register probing, the in-memory
 * structures (queues, stream table), the reset sequence, interrupt and MSI setup, GBPA updates and
 * disabling.
 *
 * Register accesses, their order and their timeouts follow the kernel: every CR0 / IRQ_CTRL write is
 * followed by a poll of its ACK register (1 µs steps, ARM_SMMU_POLL_TIMEOUT_US), GBPA updates use the
 * Update handshake, and an SMMU found enabled (a kexec) gets GBPA.ABORT before it is disabled.
 *
 * One file over ~700 lines on purpose: it is one class, the kernel's struct arm_smmu_device, whose
 * methods are the probe/reset/IRQ/shutdown functions of arm-smmu-v3.c that act on it; its domain,
 * master, queue and table work is already in the sibling files arm-smmu-v3.ts lists.
 */
import type { Device } from '../../bus/device.js';
import { isKernelError, KernelError } from '../../bus/errno.js';
import { FirmwareError } from '../../bus/firmware-error.js';
import { devmIoremap, readlPollTimeout, type IoMem } from '../../bus/io.js';
import { devmRequestIrq, devmRequestThreadedIrq, type IrqSpec } from '../../bus/irq.js';
import type { KernelLog } from '../../bus/log.js';
import { msiAllocVectors, msiControllerOf, type MsiVector } from '../../bus/msi.js';
import { itsMsiAllocVectors, itsOf } from '../../bus/its-msi.js';
import { platformGetIrqByNameOptional, platformGetResource, type PlatformDevice } from '../../bus/platform.js';
import { Ida } from '../../core/ida.js';
import { IommuDevice } from '../../core/iommu-device.js';
import type { IommufdViommu, IommufdViommuOps, IommuHwInfo } from '../../core/iommufd.js';
import type { CpuPort, RamAccess } from '../../hw/cpu-port.js';
import { dmaAllocCoherent, dmaFreeCoherent, type CoherentBuffer } from '../../mm/dma-coherent.js';
import type { PageAllocator } from '../../mm/page-alloc.js';
import type { Errno } from '../../bus/errno.js';
import { armSmmuIortHttu } from './arm-smmu-v3-acpi.js';
import { ArmSmmuCmdq, armSmmuCmdqForList, type ArmSmmuCmdqEnt, type CmdqBatchHost } from './arm-smmu-v3-cmdq.js';
import type { ArmSmmuEventReport, ArmSmmuEventStats } from './arm-smmu-v3-events.js';
import {
  armSmmuCombinedIrqHandler,
  armSmmuCombinedIrqThread,
  armSmmuEvtqThread,
  armSmmuGerrorHandler,
  armSmmuPriqThread,
  newEventStats,
} from './arm-smmu-v3-events.js';
import type { ArmSmmuMaster } from './arm-smmu-v3-master.js';
import { ArmSmmuQueue } from './arm-smmu-v3-queue.js';
import { FIELD_GET, FIELD_PREP } from '../../bus/bitfield.js';
import {
  ARM_SMMU_CMDQ_CONS,
  ARM_SMMU_CMDQ_PROD,
  ARM_SMMU_CMDQ_BASE,
  ARM_SMMU_CR0,
  ARM_SMMU_CR0ACK,
  ARM_SMMU_CR1,
  ARM_SMMU_CR2,
  ARM_SMMU_EVTQ_BASE,
  ARM_SMMU_EVTQ_CONS,
  ARM_SMMU_EVTQ_IRQ_CFG0,
  ARM_SMMU_EVTQ_IRQ_CFG1,
  ARM_SMMU_EVTQ_IRQ_CFG2,
  ARM_SMMU_EVTQ_PROD,
  ARM_SMMU_FEAT_2_LVL_CDTAB,
  ARM_SMMU_FEAT_2_LVL_STRTAB,
  ARM_SMMU_FEAT_ATS,
  ARM_SMMU_FEAT_ATTR_TYPES_OVR,
  ARM_SMMU_FEAT_BBML2,
  ARM_SMMU_FEAT_BTM,
  ARM_SMMU_FEAT_COHERENCY,
  ARM_SMMU_FEAT_E2H,
  ARM_SMMU_FEAT_HA,
  ARM_SMMU_FEAT_HD,
  ARM_SMMU_FEAT_HYP,
  ARM_SMMU_FEAT_MSI,
  ARM_SMMU_FEAT_NAMES,
  ARM_SMMU_FEAT_NESTING,
  ARM_SMMU_FEAT_PRI,
  ARM_SMMU_FEAT_RANGE_INV,
  ARM_SMMU_FEAT_SEV,
  ARM_SMMU_FEAT_STALL_FORCE,
  ARM_SMMU_FEAT_STALLS,
  ARM_SMMU_FEAT_TRANS_S1,
  ARM_SMMU_FEAT_TRANS_S2,
  ARM_SMMU_FEAT_TT_BE,
  ARM_SMMU_FEAT_TT_LE,
  ARM_SMMU_FEAT_VAX,
  ARM_SMMU_GBPA,
  ARM_SMMU_GERROR_IRQ_CFG0,
  ARM_SMMU_GERROR_IRQ_CFG1,
  ARM_SMMU_GERROR_IRQ_CFG2,
  ARM_SMMU_IDR0,
  ARM_SMMU_IDR1,
  ARM_SMMU_IDR3,
  ARM_SMMU_IDR5,
  ARM_SMMU_IIDR,
  ARM_SMMU_IRQ_CTRL,
  ARM_SMMU_IRQ_CTRLACK,
  ARM_SMMU_MEMATTR_DEVICE_nGnRE,
  ARM_SMMU_OPT_CMDQ_FORCE_SYNC,
  ARM_SMMU_OPT_MSIPOLL,
  ARM_SMMU_OPT_PAGE0_REGS_ONLY,
  ARM_SMMU_OPT_SKIP_PREFETCH,
  ARM_SMMU_PAGE1_OFFSET,
  ARM_SMMU_POLL_TIMEOUT_US,
  ARM_SMMU_PRIQ_BASE,
  ARM_SMMU_PRIQ_CONS,
  ARM_SMMU_PRIQ_IRQ_CFG0,
  ARM_SMMU_PRIQ_IRQ_CFG1,
  ARM_SMMU_PRIQ_IRQ_CFG2,
  ARM_SMMU_PRIQ_PROD,
  ARM_SMMU_REG_SZ,
  ARM_SMMU_SH_ISH,
  ARM_SMMU_STRTAB_BASE,
  ARM_SMMU_STRTAB_BASE_CFG,
  CMDQ_BATCH_ENTRIES,
  CMDQ_ENT_DWORDS,
  CMDQ_ENT_SZ_SHIFT,
  CONFIG_CMA_ALIGNMENT,
  CMDQ_OP_CFGI_ALL,
  CMDQ_OP_STALL_TERM,
  CMDQ_OP_TLBI_EL2_ALL,
  CMDQ_OP_TLBI_NSNH_ALL,
  CR0_ATSCHK,
  CR0_CMDQEN,
  CR0_EVTQEN,
  CR0_PRIQEN,
  CR0_SMMUEN,
  CR1_CACHE_WB,
  CR1_QUEUE_IC,
  CR1_QUEUE_OC,
  CR1_QUEUE_SH,
  CR1_TABLE_IC,
  CR1_TABLE_OC,
  CR1_TABLE_SH,
  CR2_E2H,
  CR2_PTM,
  CR2_RECINVSID,
  EVTQ_ENT_DWORDS,
  EVTQ_ENT_SZ_SHIFT,
  GBPA_ABORT,
  GBPA_UPDATE,
  IDR0_ASID16,
  IDR0_ATS,
  IDR0_CD2L,
  IDR0_COHACC,
  IDR0_HTTU,
  IDR0_HTTU_ACCESS,
  IDR0_HTTU_ACCESS_DIRTY,
  IDR0_HYP,
  IDR0_MSI,
  IDR0_PRI,
  IDR0_S1P,
  IDR0_S2P,
  IDR0_SEV,
  IDR0_STALL_MODEL,
  IDR0_STALL_MODEL_FORCE,
  IDR0_STALL_MODEL_STALL,
  IDR0_ST_LVL,
  IDR0_ST_LVL_2LVL,
  IDR0_TTENDIAN,
  IDR0_TTENDIAN_LE,
  IDR0_TTENDIAN_MIXED,
  IDR0_TTF,
  IDR0_TTF_AARCH32_64,
  IDR0_TTF_AARCH64,
  IDR0_VMID16,
  IDR1_ATTR_TYPES_OVR,
  IDR1_CMDQS,
  IDR1_EVTQS,
  IDR1_PRIQS,
  IDR1_QUEUES_PRESET,
  IDR1_REL,
  IDR1_SIDSIZE,
  IDR1_SSIDSIZE,
  IDR1_TABLES_PRESET,
  IDR3_BBM,
  IDR3_RIL,
  IDR5_GRAN16K,
  IDR5_GRAN4K,
  IDR5_GRAN64K,
  IDR5_OAS,
  IDR5_OAS_BITS,
  IDR5_STALL_MAX,
  IDR5_VAX,
  IDR5_VAX_52_BIT,
  IIDR_IMPLEMENTER,
  IIDR_IMPLEMENTER_ARM,
  IIDR_PRODUCTID,
  IIDR_PRODUCTID_ARM_MMU_600,
  IIDR_PRODUCTID_ARM_MMU_700,
  IIDR_REVISION,
  IIDR_VARIANT,
  IRQ_CTRL_EVTQ_IRQEN,
  IRQ_CTRL_GERROR_IRQEN,
  IRQ_CTRL_PRIQ_IRQEN,
  LOG_NS,
  PAGE_SHIFT,
  PRIQ_ENT_DWORDS,
  PRIQ_ENT_SZ_SHIFT,
  qMaxSzShift,
  SZ_128K,
  SZ_64K,
  STRTAB_SPLIT,
} from './arm-smmu-v3-regs.js';
import { armSmmuMakeAbortSte, armSmmuMakeBypassSte } from './arm-smmu-v3-ste.js';
import { ArmSmmuStrtab } from './arm-smmu-v3-strtab.js';

export { LOG_NS };

/** What `.shutdown` leaves behind (the kernel's arm-smmu-v3.shutdown_policy values). */
export type ArmSmmuShutdownPolicy = 'disable' | 'gbpa-abort' | 'ste-abort';
const hex = (v: number): string => `0x${v.toString(16)}`;

/** What the kernel hands the driver (command-line parameters and its page allocator). */
export interface ArmSmmuDriverParams {
  /** arm-smmu-v3.disable_bypass: StreamIDs nobody attached abort rather than bypass. */
  disableBypass: boolean;
  /** arm-smmu-v3.shutdown_policy */
  shutdownPolicy: ArmSmmuShutdownPolicy;
  /** arm-smmu-v3.disable_msipolling: CMD_SYNC completion by CONS polling even when MSIs could be used. */
  disableMsipolling: boolean;
  /**
   * is_kdump_kernel(): a crash kernel leaves CR0.EVTQEN and CR0.PRIQEN clear when it enables the
   * SMMU (it can neither serve page requests nor afford an event storm from devices it inherited).
   */
  kdump: boolean;
  /**
   * CONFIG_CMA_ALIGNMENT of the kernel build (2..12, default 8), or null for a kernel without the
   * contiguous allocator; it caps the queue sizes (Q_MAX_SZ_SHIFT).
   */
  cmaAlignment?: number | null;
  /** Where queues, tables and page tables come from. */
  pageAllocator: PageAllocator;
}

/**
 * An implementation's hooks into the generic driver (kernel: struct arm_smmu_impl_ops). The iommufd
 * ones (hw_info, get_viommu_size, vsmmu_init) come with the vIOMMU support.
 */
export interface ArmSmmuImplOps {
  /** Run at the end of arm_smmu_device_reset(). */
  deviceReset?(smmu: ArmSmmuDevice): Promise<void>;
  /** Run when the SMMU driver unbinds. */
  deviceRemove?(smmu: ArmSmmuDevice): Promise<void>;
  /** Run at the end of arm_smmu_init_structures(). */
  initStructures?(smmu: ArmSmmuDevice): void;
  /** A queue other than the main one for this command, or null for the main one. */
  getSecondaryCmdq?(smmu: ArmSmmuDevice, ent: ArmSmmuCmdqEnt): ArmSmmuCmdq | null;
  /**
   * The vIOMMU types the implementation adds (kernel: get_viommu_size() returning non-zero), and
   * their set-up on top of the vSMMU (kernel: vsmmu_init()): the ops it returns replace or add to
   * the vSMMU's; `data` is the type's user structure (in and out).
   */
  viommuTypes?: readonly number[];
  /** Hardware information of a type the implementation adds (kernel: impl_ops->hw_info), or null. */
  hwInfo?(smmu: ArmSmmuDevice, type: number): IommuHwInfo | null;
  vsmmuInit?(smmu: ArmSmmuDevice, viommu: IommufdViommu, vmid: number, data: Uint32Array | null): Promise<Partial<IommufdViommuOps>>;
}

/** The kernel's struct arm_smmu_device */
export class ArmSmmuDevice implements CmdqBatchHost {
  readonly name: string;
  readonly port: CpuPort;
  readonly ram: RamAccess;
  readonly log: KernelLog;
  base!: IoMem;
  page1!: IoMem;
  /** ARM_SMMU_FEAT_* */
  features = 0;
  /** ARM_SMMU_OPT_* */
  options = 0;
  ias = 0;
  oas = 0;
  asidBits = 8;
  vmidBits = 8;
  sidBits = 0;
  ssidBits = 0;
  pgsizeBitmap = 0;
  iidr = 0;
  cmdqShift = 0;
  evtqShift = 0;
  priqShift = 0;
  /** IDR5.STALL_MAX (kernel: evtq.max_stalls). */
  maxStalls = 0;
  cmdq!: ArmSmmuCmdq;
  /** Queues an implementation adds (Grace VCMDQs); waits for outstanding commands cover them too. */
  readonly secondaryCmdqs = new Set<ArmSmmuCmdq>();
  /** The implementation's companion device (kernel: smmu->impl_dev), its hooks and its state. */
  implDev: Device | null = null;
  implOps: ArmSmmuImplOps | null = null;
  impl: unknown = null;
  evtq!: ArmSmmuQueue;
  priq: ArmSmmuQueue | null = null;
  strtab!: ArmSmmuStrtab;
  /** The kernel's vmid_map — VMID 0 is kept for stage 1 STEs. */
  readonly vmidMap = new Ida('arm-smmu-v3 VMID');
  /** StreamID → master (kernel: the streams rb-tree). */
  readonly streams = new Map<number, ArmSmmuMaster>();
  /** The instance the iommu core knows (created by hwProbe, which learns the PASID width). */
  iommu!: IommuDevice;
  evtqIrq: IrqSpec | null = null;
  priqIrq: IrqSpec | null = null;
  gerrIrq: IrqSpec | null = null;
  /** The CMD_SYNC completion line, if wired (Linux leaves it unused, and so does this driver). */
  cmdqSyncIrq: IrqSpec | null = null;
  combinedIrq: IrqSpec | null = null;
  msiVectors: readonly MsiVector[] = [];
  /** Every decoded event and page request, newest last (bounded): for reports and tests. */
  readonly events: ArmSmmuEventReport[] = [];
  readonly eventStats: ArmSmmuEventStats = newEventStats();
  /** CR0 as the driver last programmed it (after reset). */
  enables = 0;
  /** The SMMU was found enabled at probe (a previous kernel left it running). */
  foundEnabled = false;
  private readonly buffers: CoherentBuffer[] = [];

  constructor(
    readonly dev: PlatformDevice,
    readonly params: ArmSmmuDriverParams,
  ) {
    this.name = dev.name;
    this.port = dev.port;
    this.ram = dev.port.ram;
    this.log = dev.core.log;
  }

  info(msg: string): void {
    this.log.info(this.name, msg, LOG_NS);
  }

  warn(msg: string): void {
    this.log.warn(this.name, msg, LOG_NS);
  }

  err(msg: string): void {
    this.log.err(this.name, msg, LOG_NS);
  }

  /** Zeroed coherent memory for the SMMU's own structures, freed when the driver unbinds. */
  allocCoherent(size: number, what: string): CoherentBuffer {
    const buf = dmaAllocCoherent(this.params.pageAllocator, this.ram, size, this.name, what);
    this.buffers.push(buf);
    return buf;
  }

  freeCoherent(buf: CoherentBuffer): void {
    const i = this.buffers.indexOf(buf);
    if (i < 0) return;
    this.buffers.splice(i, 1);
    dmaFreeCoherent(this.params.pageAllocator, buf);
  }

  /** Release every structure (after the SMMU stopped using them). */
  freeAllCoherent(): void {
    for (const buf of this.buffers.splice(0).reverse()) dmaFreeCoherent(this.params.pageAllocator, buf);
  }

  /** The STE every StreamID nobody attached gets. */
  initialSte(target: Uint32Array): void {
    if (this.params.disableBypass) armSmmuMakeAbortSte(target);
    else armSmmuMakeBypassSte(this.features, target);
  }

  // ---- firmware ---------------------------------------------------------------------------------

  // kernel: parse_driver_options() [arm-smmu-v3.c]
  parseDriverOptions(): void {
    const node = this.dev.ofNode;
    if (!node) return;
    const table: [number, string][] = [
      [ARM_SMMU_OPT_SKIP_PREFETCH, 'hisilicon,broken-prefetch-cmd'],
      [ARM_SMMU_OPT_PAGE0_REGS_ONLY, 'cavium,cn9900-broken-page1-regspace'],
    ];
    for (const [opt, prop] of table) {
      if (node.has(prop)) {
        this.options |= opt;
        this.log.info(this.name, `option ${prop}`, LOG_NS);
      }
    }
  }

  // kernel: arm_smmu_device_dt_probe() [arm-smmu-v3.c]
  dtProbe(): void {
    const node = this.dev.ofNode;
    if (!node) throw new KernelError('ENODEV', `${this.name}: no device tree node`);
    const cells = node.u32('#iommu-cells');
    let error: string | null = null;
    if (cells === undefined) error = 'missing #iommu-cells property';
    else if (cells !== 1) error = `invalid #iommu-cells value (${cells})`;
    if (error) this.err(error);
    this.parseDriverOptions();
    if (this.dev.dmaCoherent) this.features |= ARM_SMMU_FEAT_COHERENCY;
    if (error) throw new KernelError('EINVAL', `${this.name}: ${error}`);
  }

  // kernel: arm_smmu_resource_size() [arm-smmu-v3.c]
  resourceSize(): number {
    return (this.options & ARM_SMMU_OPT_PAGE0_REGS_ONLY) !== 0 ? SZ_64K : SZ_128K;
  }

  /** Map the register pages from resource 0 (EINVAL if it is too small). */
  mapRegisters(): void {
    const res = platformGetResource(this.dev, 0);
    if (!res) throw new KernelError('EINVAL', `${this.name}: no MMIO resource`);
    if (res.size < this.resourceSize()) {
      this.err(`MMIO region too small ([0x${res.start.toString(16)}-0x${(res.start + res.size - 1).toString(16)}])`);
      throw new KernelError('EINVAL', `${this.name}: MMIO region of 0x${res.size.toString(16)} bytes is smaller than 0x${this.resourceSize().toString(16)}`);
    }
    // Only the architected registers: the IMPLEMENTATION DEFINED space may hold a PMCG.
    this.base = devmIoremap(this.dev, res.start, ARM_SMMU_REG_SZ);
    this.page1 = this.resourceSize() > SZ_64K ? devmIoremap(this.dev, res.start + ARM_SMMU_PAGE1_OFFSET, ARM_SMMU_REG_SZ) : this.base;
  }

  /** The kernel's interrupt-line part of arm_smmu_device_probe() */
  findIrqs(): void {
    const combined = platformGetIrqByNameOptional(this.dev, 'combined');
    if (combined) {
      this.combinedIrq = combined;
      return;
    }
    this.evtqIrq = platformGetIrqByNameOptional(this.dev, 'eventq');
    this.priqIrq = platformGetIrqByNameOptional(this.dev, 'priq');
    this.gerrIrq = platformGetIrqByNameOptional(this.dev, 'gerror');
    this.cmdqSyncIrq = platformGetIrqByNameOptional(this.dev, 'cmdq-sync');
  }

  // ---- ID registers -----------------------------------------------------------------------------

  // kernel: arm_smmu_device_hw_probe() [arm-smmu-v3.c]
  hwProbe(): void {
    const coherent = (this.features & ARM_SMMU_FEAT_COHERENCY) !== 0;
    let reg = this.base.readl(ARM_SMMU_IDR0);

    if (FIELD_GET(IDR0_ST_LVL, reg) === IDR0_ST_LVL_2LVL) this.features |= ARM_SMMU_FEAT_2_LVL_STRTAB;
    if (reg & IDR0_CD2L) this.features |= ARM_SMMU_FEAT_2_LVL_CDTAB;

    // Translation tables must be in the CPU's (little-endian) byte order.
    switch (FIELD_GET(IDR0_TTENDIAN, reg)) {
      case IDR0_TTENDIAN_MIXED:
        this.features |= ARM_SMMU_FEAT_TT_LE | ARM_SMMU_FEAT_TT_BE;
        break;
      case IDR0_TTENDIAN_LE:
        this.features |= ARM_SMMU_FEAT_TT_LE;
        break;
      default:
        this.err('unknown/unsupported TT endianness!');
        throw new KernelError('ENXIO', `${this.name}: IDR0.TTENDIAN ${FIELD_GET(IDR0_TTENDIAN, reg)} is not usable by a little-endian kernel`);
    }

    if (reg & IDR0_PRI) this.features |= ARM_SMMU_FEAT_PRI;
    if (reg & IDR0_ATS) this.features |= ARM_SMMU_FEAT_ATS;
    if (reg & IDR0_SEV) this.features |= ARM_SMMU_FEAT_SEV;
    if (reg & IDR0_MSI) {
      this.features |= ARM_SMMU_FEAT_MSI;
      if (coherent && !this.params.disableMsipolling) this.options |= ARM_SMMU_OPT_MSIPOLL;
    }
    // The kernel runs at EL1 (no VHE), so E2H stays off.
    if (reg & IDR0_HYP) this.features |= ARM_SMMU_FEAT_HYP;

    // from the ID register with a DT-described SMMU; an IORT node's
    // HTTU override field wins over it (with a warning when they differ).
    // kernel: arm_smmu_get_httu() [arm-smmu-v3.c]
    const httu = FIELD_GET(IDR0_HTTU, reg);
    const hwHttu = httu === IDR0_HTTU_ACCESS_DIRTY ? ARM_SMMU_FEAT_HD | ARM_SMMU_FEAT_HA : httu === IDR0_HTTU_ACCESS ? ARM_SMMU_FEAT_HA : 0;
    const fwHttu = armSmmuIortHttu(this);
    if (fwHttu === null) this.features |= hwHttu;
    else {
      this.features |= fwHttu;
      if (fwHttu !== hwHttu) this.warn(`IDR0.HTTU features(0x${hwHttu.toString(16)}) overridden by FW configuration (0x${fwHttu.toString(16)})`);
    }

    // Firmware's coherency wins over IDR0.COHACC; a mismatch is worth a warning.
    if (((reg & IDR0_COHACC) !== 0) !== coherent) this.warn(`IDR0.COHACC overridden by FW configuration (${coherent})`);

    const stallModel = FIELD_GET(IDR0_STALL_MODEL, reg);
    if (stallModel === IDR0_STALL_MODEL_FORCE) this.features |= ARM_SMMU_FEAT_STALL_FORCE | ARM_SMMU_FEAT_STALLS;
    else if (stallModel === IDR0_STALL_MODEL_STALL) this.features |= ARM_SMMU_FEAT_STALLS;

    if (reg & IDR0_S1P) this.features |= ARM_SMMU_FEAT_TRANS_S1;
    if (reg & IDR0_S2P) this.features |= ARM_SMMU_FEAT_TRANS_S2;
    if (!(reg & (IDR0_S1P | IDR0_S2P))) {
      this.err('no translation support!');
      throw new KernelError('ENXIO', `${this.name}: neither stage 1 nor stage 2 is implemented`);
    }

    switch (FIELD_GET(IDR0_TTF, reg)) {
      case IDR0_TTF_AARCH32_64:
        this.ias = 40;
        break;
      case IDR0_TTF_AARCH64:
        break;
      default:
        this.err('AArch64 table format not supported!');
        throw new KernelError('ENXIO', `${this.name}: IDR0.TTF ${FIELD_GET(IDR0_TTF, reg)} lacks the AArch64 table format`);
    }

    this.asidBits = reg & IDR0_ASID16 ? 16 : 8;
    this.vmidBits = reg & IDR0_VMID16 ? 16 : 8;

    // IDR1
    reg = this.base.readl(ARM_SMMU_IDR1);
    if (reg & (IDR1_TABLES_PRESET | IDR1_QUEUES_PRESET | IDR1_REL)) {
      this.err('embedded implementation not supported');
      throw new KernelError('ENXIO', `${this.name}: IDR1 reports preset tables/queues (0x${reg.toString(16)})`);
    }
    if (reg & IDR1_ATTR_TYPES_OVR) this.features |= ARM_SMMU_FEAT_ATTR_TYPES_OVR;

    // Queue sizes, capped so each queue is one naturally aligned allocation.
    const qMax = qMaxSzShift(this.params.cmaAlignment === undefined ? CONFIG_CMA_ALIGNMENT : this.params.cmaAlignment);
    this.cmdqShift = Math.min(qMax - CMDQ_ENT_SZ_SHIFT, FIELD_GET(IDR1_CMDQS, reg));
    if (this.cmdqShift <= Math.log2(CMDQ_BATCH_ENTRIES)) {
      // One batch plus its CMD_SYNC must fit.
      this.err(`command queue size <= ${CMDQ_BATCH_ENTRIES} entries not supported`);
      throw new KernelError('ENXIO', `${this.name}: IDR1.CMDQS ${FIELD_GET(IDR1_CMDQS, reg)} is too small`);
    }
    this.evtqShift = Math.min(qMax - EVTQ_ENT_SZ_SHIFT, FIELD_GET(IDR1_EVTQS, reg));
    this.priqShift = Math.min(qMax - PRIQ_ENT_SZ_SHIFT, FIELD_GET(IDR1_PRIQS, reg));

    this.ssidBits = FIELD_GET(IDR1_SSIDSIZE, reg);
    this.sidBits = FIELD_GET(IDR1_SIDSIZE, reg);
    this.iommu = new IommuDevice({ dev: this.dev, maxPasids: 2 ** this.ssidBits });

    // Fewer SID bits than one L2 table covers: a linear table is smaller.
    if (this.sidBits <= STRTAB_SPLIT) this.features &= ~ARM_SMMU_FEAT_2_LVL_STRTAB;

    // IDR3
    reg = this.base.readl(ARM_SMMU_IDR3);
    if (reg & IDR3_RIL) this.features |= ARM_SMMU_FEAT_RANGE_INV;
    // Only level 2 is a feature, as in mainline (ARM_SMMU_FEAT_BBML2, added in 2025; v6.1 ignores the
    // field). Its consumer there, arm_smmu_sva_supported() on a CPU that changes block sizes without
    // BBM, has no counterpart: this kernel's CPU page tables never hold blocks.
    if (FIELD_GET(IDR3_BBM, reg) === 2) this.features |= ARM_SMMU_FEAT_BBML2;

    // IDR5
    reg = this.base.readl(ARM_SMMU_IDR5);
    this.maxStalls = FIELD_GET(IDR5_STALL_MAX, reg);
    if (reg & IDR5_GRAN64K) this.pgsizeBitmap += 0x1_0000 + 0x2000_0000;
    if (reg & IDR5_GRAN16K) this.pgsizeBitmap += 0x4000 + 0x200_0000;
    if (reg & IDR5_GRAN4K) this.pgsizeBitmap += 0x1000 + 0x20_0000 + 0x4000_0000;
    if (FIELD_GET(IDR5_VAX, reg) === IDR5_VAX_52_BIT) this.features |= ARM_SMMU_FEAT_VAX;

    const oasIdx = FIELD_GET(IDR5_OAS, reg);
    if (oasIdx < IDR5_OAS_BITS.length) {
      this.oas = IDR5_OAS_BITS[oasIdx];
      if (this.oas === 52) this.pgsizeBitmap += 2 ** 42; // 4 TiB blocks
    } else {
      this.info('unknown output address size. Truncating to 48-bit');
      this.oas = 48;
    }

    this.ias = Math.max(this.ias, this.oas);
    if ((this.features & ARM_SMMU_FEAT_TRANS_S1) !== 0 && (this.features & ARM_SMMU_FEAT_TRANS_S2) !== 0) this.features |= ARM_SMMU_FEAT_NESTING;

    this.iidrProbe();
    const names = ARM_SMMU_FEAT_NAMES.filter(([f]) => (this.features & f) !== 0).map(([, n]) => n);
    this.info(`ias ${this.ias}-bit, oas ${this.oas}-bit (features 0x${this.features.toString(16).padStart(8, '0')}: ${names.join(' ')})`);
  }

  /** Errata by implementation (kernel: arm_smmu_device_iidr_probe()). */
  private iidrProbe(): void {
    const reg = this.base.readl(ARM_SMMU_IIDR);
    this.iidr = reg;
    if (FIELD_GET(IIDR_IMPLEMENTER, reg) !== IIDR_IMPLEMENTER_ARM) return;
    const variant = FIELD_GET(IIDR_VARIANT, reg);
    const revision = FIELD_GET(IIDR_REVISION, reg);
    switch (FIELD_GET(IIDR_PRODUCTID, reg)) {
      case IIDR_PRODUCTID_ARM_MMU_600:
        // Arm erratum 1076982
        if (variant === 0 && revision <= 2) this.features &= ~ARM_SMMU_FEAT_SEV;
        // Arm erratum 1209401
        if (variant < 2) this.features &= ~ARM_SMMU_FEAT_NESTING;
        break;
      case IIDR_PRODUCTID_ARM_MMU_700:
        // Arm erratum 2812531
        this.features &= ~ARM_SMMU_FEAT_BTM;
        this.options |= ARM_SMMU_OPT_CMDQ_FORCE_SYNC;
        // Arm errata 2268618, 2812531
        this.features &= ~ARM_SMMU_FEAT_NESTING;
        break;
    }
  }

  // ---- in-memory structures ---------------------------------------------------------------------

  /**
   * A queue of 2^shift entries, halving until the allocation succeeds (down to a page).
   */
  // kernel: arm_smmu_init_one_queue() [arm-smmu-v3.c]
  private initOneQueue(name: string, shift: number, dwords: number, page: IoMem, prodOff: number, consOff: number): ArmSmmuQueue {
    let n = shift;
    for (;;) {
      const qsz = 2 ** n * dwords * 8;
      try {
        const buf = this.allocCoherent(qsz, name);
        this.info(`allocated ${2 ** n} entries for ${name}`);
        return new ArmSmmuQueue(name, this.ram, buf, n, dwords, page, prodOff, consOff);
      } catch (e) {
        if (!isKernelError(e, 'ENOMEM') || qsz < 2 ** PAGE_SHIFT) {
          this.err(`failed to allocate queue (0x${qsz.toString(16)} bytes) for ${name}`);
          throw e;
        }
        n--;
      }
    }
  }

  // kernel: arm_smmu_init_queues() [arm-smmu-v3.c]
  private initQueues(): void {
    const q = this.initOneQueue('cmdq', this.cmdqShift, CMDQ_ENT_DWORDS, this.base, ARM_SMMU_CMDQ_PROD, ARM_SMMU_CMDQ_CONS);
    this.cmdq = new ArmSmmuCmdq(this, q);
    this.evtq = this.initOneQueue('evtq', this.evtqShift, EVTQ_ENT_DWORDS, this.page1, ARM_SMMU_EVTQ_PROD, ARM_SMMU_EVTQ_CONS);
    if ((this.features & ARM_SMMU_FEAT_PRI) === 0) return;
    this.priq = this.initOneQueue('priq', this.priqShift, PRIQ_ENT_DWORDS, this.page1, ARM_SMMU_PRIQ_PROD, ARM_SMMU_PRIQ_CONS);
  }

  // kernel: arm_smmu_init_strtab() [arm-smmu-v3.c]
  private initStrtab(): void {
    const alloc = (size: number, what: string): CoherentBuffer => this.allocCoherent(size, what);
    const initial = (t: Uint32Array): void => this.initialSte(t);
    try {
      this.strtab =
        (this.features & ARM_SMMU_FEAT_2_LVL_STRTAB) !== 0
          ? ArmSmmuStrtab.twoLevel(this.sidBits, this.ram, alloc, initial, (m) => this.warn(m))
          : ArmSmmuStrtab.linear(this.sidBits, this.ram, alloc, initial);
    } catch (e) {
      this.err(`failed to allocate ${(this.features & ARM_SMMU_FEAT_2_LVL_STRTAB) !== 0 ? 'l1' : 'linear'} stream table: ${e instanceof Error ? e.message : String(e)}`);
      throw e;
    }
  }

  // kernel: arm_smmu_init_structures() [arm-smmu-v3.c]
  initStructures(): void {
    this.initQueues();
    this.initStrtab();
    this.implOps?.initStructures?.(this);
  }

  // ---- command queues ----------------------------------------------------------------------------

  /** As the kernel's arm_smmu_get_cmdq() */
  getCmdq(ent: ArmSmmuCmdqEnt): ArmSmmuCmdq {
    return this.implOps?.getSecondaryCmdq?.(this, ent) ?? this.cmdq;
  }

  /** One command, on the queue it belongs to. */
  // kernel: arm_smmu_cmdq_issue_cmd() [arm-smmu-v3.c]
  issueCmd(ent: ArmSmmuCmdqEnt, sync = false): Promise<0 | Errno> {
    return this.getCmdq(ent).issueCmd(ent, sync);
  }

  /** As the kernel's arm_smmu_cmdq_issue_cmd_with_sync() */
  issueCmdWithSync(ent: ArmSmmuCmdqEnt): Promise<0 | Errno> {
    return this.issueCmd(ent, true);
  }

  /** Encoded commands on the queue the whole list may go to (the main one if any command is not taken). */
  issueCmdlist(cmds: Uint32Array, n: number, sync: boolean): Promise<0 | Errno> {
    return armSmmuCmdqForList(this, this.cmdq, cmds, n).issueCmdlist(cmds, n, sync);
  }

  /** Every queue commands may have gone to: the main one first. */
  allCmdqs(): ArmSmmuCmdq[] {
    return [this.cmdq, ...this.secondaryCmdqs];
  }

  /** Wait for commands inserted without a waiter, on every queue. */
  async waitOutstanding(): Promise<0 | Errno> {
    let r: 0 | Errno = 0;
    for (const q of this.allCmdqs()) {
      if (!q.hasOutstanding) continue;
      const x = await q.waitOutstanding();
      if (x !== 0) r = x;
    }
    return r;
  }

  /** True if some queue has commands nobody waited for yet. */
  get hasOutstanding(): boolean {
    if (this.cmdq.hasOutstanding) return true;
    // (An empty set is not iterated: no iterator per map and unmap.)
    if (this.secondaryCmdqs.size === 0) return false;
    for (const q of this.secondaryCmdqs) if (q.hasOutstanding) return true;
    return false;
  }

  // ---- register handshakes ----------------------------------------------------------------------

  /** Write a register and poll its ACK until it matches. */
  // kernel: arm_smmu_write_reg_sync() [arm-smmu-v3.c]
  async writeRegSync(val: number, regOff: number, ackOff: number): Promise<void> {
    this.base.writel(val, regOff);
    await readlPollTimeout(this.base, ackOff, (v) => v === val >>> 0, 1, ARM_SMMU_POLL_TIMEOUT_US);
  }

  /** GBPA = (GBPA & ~clr) | set, through the Update handshake. */
  // kernel: arm_smmu_update_gbpa() [arm-smmu-v3.c]
  async updateGbpa(set: number, clr: number): Promise<void> {
    let reg = await readlPollTimeout(this.base, ARM_SMMU_GBPA, (v) => (v & GBPA_UPDATE) === 0, 1, ARM_SMMU_POLL_TIMEOUT_US);
    reg = (reg & ~clr) | set;
    this.base.writel((reg | GBPA_UPDATE) >>> 0, ARM_SMMU_GBPA);
    try {
      await readlPollTimeout(this.base, ARM_SMMU_GBPA, (v) => (v & GBPA_UPDATE) === 0, 1, ARM_SMMU_POLL_TIMEOUT_US);
    } catch (e) {
      this.err('GBPA not responding to update');
      throw e;
    }
  }

  /** CR0 = 0 and wait for the ACK. */
  // kernel: arm_smmu_device_disable() [arm-smmu-v3.c]
  async deviceDisable(): Promise<void> {
    try {
      await this.writeRegSync(0, ARM_SMMU_CR0, ARM_SMMU_CR0ACK);
      this.enables = 0;
    } catch (e) {
      this.err('failed to clear cr0');
      throw e;
    }
  }

  // ---- interrupts -------------------------------------------------------------------------------

  // kernel: arm_smmu_setup_msis() [arm-smmu-v3.c]
  private async setupMsis(): Promise<void> {
    // Clear the MSI address registers: wired interrupts unless MSIs are set up below.
    this.base.writeq(0n, ARM_SMMU_GERROR_IRQ_CFG0);
    this.base.writeq(0n, ARM_SMMU_EVTQ_IRQ_CFG0);
    let nvec = 3;
    if ((this.features & ARM_SMMU_FEAT_PRI) !== 0) this.base.writeq(0n, ARM_SMMU_PRIQ_IRQ_CFG0);
    else nvec--;
    if ((this.features & ARM_SMMU_FEAT_MSI) === 0) return;

    let controller;
    try {
      controller = msiControllerOf(this.dev);
    } catch (e) {
      if (!(e instanceof FirmwareError) && !(e instanceof KernelError)) throw e;
      controller = null;
    }
    if (!controller) {
      this.info('msi_domain absent - falling back to wired irqs');
      return;
    }
    let vectors: MsiVector[];
    try {
      // An ITS (msi-parent with a DeviceID: on ACPI machines the IORT's DeviceID mapping), else a GICv2m frame.
      const pages = this.params.pageAllocator;
      vectors = itsOf(this.dev)
        ? await itsMsiAllocVectors(this.dev, nvec, { allocPages: (o, owner, opts) => pages.allocPages(o, owner, opts), freePages: (pa, o) => pages.freePages(pa, o), ram: this.ram })
        : msiAllocVectors(this.dev, nvec);
    } catch (e) {
      this.warn(`failed to allocate MSIs - falling back to wired irqs (${e instanceof Error ? e.message : String(e)})`);
      return;
    }
    // for each vector: evtq, gerror, priq.
    // kernel: arm_smmu_write_msi_msg() [arm-smmu-v3.c]
    const cfg: [number, number, number][] = [
      [ARM_SMMU_EVTQ_IRQ_CFG0, ARM_SMMU_EVTQ_IRQ_CFG1, ARM_SMMU_EVTQ_IRQ_CFG2],
      [ARM_SMMU_GERROR_IRQ_CFG0, ARM_SMMU_GERROR_IRQ_CFG1, ARM_SMMU_GERROR_IRQ_CFG2],
      [ARM_SMMU_PRIQ_IRQ_CFG0, ARM_SMMU_PRIQ_IRQ_CFG1, ARM_SMMU_PRIQ_IRQ_CFG2],
    ];
    vectors.forEach((v, i) => {
      const [c0, c1, c2] = cfg[i];
      this.base.writeq(BigInt(v.address - (v.address % 4)), c0);
      this.base.writel(v.data, c1);
      this.base.writel(ARM_SMMU_MEMATTR_DEVICE_nGnRE, c2);
    });
    this.msiVectors = vectors;
    this.evtqIrq = vectors[0].irq;
    this.gerrIrq = vectors[1].irq;
    this.priqIrq = vectors[2]?.irq ?? null;
  }

  /** Request a line, warning (as the kernel does) when it cannot be had. */
  private request(what: string, fn: () => void): boolean {
    try {
      fn();
      return true;
    } catch (e) {
      this.warn(`failed to enable ${what} irq: ${e instanceof Error ? e.message : String(e)}`);
      return false;
    }
  }

  // kernel: arm_smmu_setup_unique_irqs() [arm-smmu-v3.c]
  private async setupUniqueIrqs(): Promise<void> {
    await this.setupMsis();
    const dev: Device = this.dev;
    if (this.evtqIrq) {
      const irq = this.evtqIrq;
      this.request('evtq', () => devmRequestThreadedIrq(dev, irq, null, () => armSmmuEvtqThread(this), 'arm-smmu-v3-evtq'));
    } else {
      this.warn('no evtq irq - events will not be reported!');
    }
    if (this.gerrIrq) {
      const irq = this.gerrIrq;
      this.request('gerror', () => devmRequestIrq(dev, irq, () => armSmmuGerrorHandler(this), 'arm-smmu-v3-gerror'));
    } else {
      this.warn('no gerr irq - errors will not be reported!');
    }
    if ((this.features & ARM_SMMU_FEAT_PRI) !== 0) {
      if (this.priqIrq) {
        const irq = this.priqIrq;
        this.request('priq', () => devmRequestThreadedIrq(dev, irq, null, () => armSmmuPriqThread(this), 'arm-smmu-v3-priq'));
      } else {
        this.warn('no priq irq - PRI will be broken');
      }
    }
  }

  // kernel: arm_smmu_setup_irqs() [arm-smmu-v3.c]
  private async setupIrqs(): Promise<void> {
    let irqenFlags = IRQ_CTRL_EVTQ_IRQEN | IRQ_CTRL_GERROR_IRQEN;
    try {
      await this.writeRegSync(0, ARM_SMMU_IRQ_CTRL, ARM_SMMU_IRQ_CTRLACK);
    } catch (e) {
      this.err('failed to disable irqs');
      throw e;
    }
    if (this.combinedIrq) {
      // One line for everything (Cavium ThunderX2).
      const irq = this.combinedIrq;
      this.request('combined', () =>
        devmRequestThreadedIrq(this.dev, irq, () => armSmmuCombinedIrqHandler(this), () => armSmmuCombinedIrqThread(this), 'arm-smmu-v3-combined-irq'),
      );
    } else {
      await this.setupUniqueIrqs();
    }
    if ((this.features & ARM_SMMU_FEAT_PRI) !== 0) irqenFlags |= IRQ_CTRL_PRIQ_IRQEN;
    try {
      await this.writeRegSync(irqenFlags, ARM_SMMU_IRQ_CTRL, ARM_SMMU_IRQ_CTRLACK);
    } catch {
      this.warn('failed to enable irqs');
    }
  }

  // ---- reset ------------------------------------------------------------------------------------

  private issueWithSync(opcode: number): Promise<unknown> {
    const ent: ArmSmmuCmdqEnt = { opcode };
    return this.issueCmdWithSync(ent);
  }

  private async enable(enables: number, what: string): Promise<void> {
    try {
      await this.writeRegSync(enables, ARM_SMMU_CR0, ARM_SMMU_CR0ACK);
      this.enables = enables;
    } catch (e) {
      this.err(`failed to enable ${what}`);
      throw e;
    }
  }

  // kernel: arm_smmu_device_reset() [arm-smmu-v3.c]
  async deviceReset(): Promise<void> {
    // An SMMU left enabled (kexec): let in-flight traffic abort while it is disabled.
    const cr0 = this.base.readl(ARM_SMMU_CR0);
    if (cr0 & CR0_SMMUEN) {
      this.foundEnabled = true;
      this.warn('SMMU currently enabled! Resetting...');
      await this.updateGbpa(GBPA_ABORT, 0);
    }
    await this.deviceDisable();

    // CR1: table and queue memory attributes.
    this.base.writel(
      FIELD_PREP(CR1_TABLE_SH, ARM_SMMU_SH_ISH) |
        FIELD_PREP(CR1_TABLE_OC, CR1_CACHE_WB) |
        FIELD_PREP(CR1_TABLE_IC, CR1_CACHE_WB) |
        FIELD_PREP(CR1_QUEUE_SH, ARM_SMMU_SH_ISH) |
        FIELD_PREP(CR1_QUEUE_OC, CR1_CACHE_WB) |
        FIELD_PREP(CR1_QUEUE_IC, CR1_CACHE_WB),
      ARM_SMMU_CR1,
    );
    let cr2 = CR2_PTM | CR2_RECINVSID;
    if ((this.features & ARM_SMMU_FEAT_E2H) !== 0) cr2 |= CR2_E2H;
    this.base.writel(cr2, ARM_SMMU_CR2);

    // Stream table.
    this.base.writeq((BigInt(this.strtab.baseHi) << 32n) | BigInt(this.strtab.baseLo), ARM_SMMU_STRTAB_BASE);
    this.base.writel(this.strtab.baseCfg, ARM_SMMU_STRTAB_BASE_CFG);

    // Command queue.
    const cq = this.cmdq.q;
    this.cmdq.resetPointers();
    this.base.writeq((BigInt(cq.qBaseHi) << 32n) | BigInt(cq.qBaseLo), ARM_SMMU_CMDQ_BASE);
    this.base.writel(cq.prod, ARM_SMMU_CMDQ_PROD);
    this.base.writel(cq.cons, ARM_SMMU_CMDQ_CONS);
    let enables = CR0_CMDQEN;
    await this.enable(enables, 'command queue');

    // Invalidate any cached configuration and any stale TLB entries.
    await this.issueWithSync(CMDQ_OP_CFGI_ALL);
    if ((this.features & ARM_SMMU_FEAT_HYP) !== 0) await this.issueWithSync(CMDQ_OP_TLBI_EL2_ALL);
    await this.issueWithSync(CMDQ_OP_TLBI_NSNH_ALL);

    // Event queue.
    const eq = this.evtq;
    eq.resetPointers();
    this.base.writeq((BigInt(eq.qBaseHi) << 32n) | BigInt(eq.qBaseLo), ARM_SMMU_EVTQ_BASE);
    this.page1.writel(eq.prod, ARM_SMMU_EVTQ_PROD);
    this.page1.writel(eq.cons, ARM_SMMU_EVTQ_CONS);
    enables |= CR0_EVTQEN;
    await this.enable(enables, 'event queue');

    // PRI queue.
    if (this.priq) {
      const pq = this.priq;
      pq.resetPointers();
      this.base.writeq((BigInt(pq.qBaseHi) << 32n) | BigInt(pq.qBaseLo), ARM_SMMU_PRIQ_BASE);
      this.page1.writel(pq.prod, ARM_SMMU_PRIQ_PROD);
      this.page1.writel(pq.cons, ARM_SMMU_PRIQ_CONS);
      enables |= CR0_PRIQEN;
      await this.enable(enables, 'PRI queue');
    }

    if ((this.features & ARM_SMMU_FEAT_ATS) !== 0) {
      enables |= CR0_ATSCHK;
      await this.enable(enables, 'ATS check');
    }

    try {
      await this.setupIrqs();
    } catch (e) {
      this.err('failed to setup irqs');
      throw e;
    }

    // A kdump kernel turns the event and PRI queues back off (v6.17 does it here, after the IRQs).
    if (this.params.kdump) {
      enables &= ~(CR0_EVTQEN | CR0_PRIQEN);
      this.info('kdump kernel: event and PRI queues left disabled');
    }

    // Enable the SMMU interface.
    enables |= CR0_SMMUEN;
    await this.enable(enables, 'SMMU interface');

    if (this.implOps?.deviceReset) {
      try {
        await this.implOps.deviceReset(this);
      } catch (e) {
        this.err('failed to reset impl');
        throw e;
      }
    }
  }

  // ---- shutdown policies --------------------------------------------------------------------------

  /**
   * Stay enabled with every STE aborting (the kexec discussion's "leave it translating with the stream
   * mapping cleared"): every STE becomes V=1 Config=abort with one store of its first qword (an abort
   * STE reads nothing else), the configuration caches and TLBs are invalidated, then the queues and
   * interrupts are turned off so nothing is written into memory the next kernel will reuse. CR0.SMMUEN
   * stays set and GBPA is not touched.
   */
  async steAbortAll(): Promise<void> {
    const abort = new Uint32Array(16);
    armSmmuMakeAbortSte(abort);
    for (const sid of this.strtab.allocatedSids()) {
      const pa = this.strtab.stePa(sid);
      this.ram.write32(pa + 4, abort[1]);
      this.ram.write32(pa, abort[0]);
    }
    // Invalidate cached STEs (and every L1 descriptor), then the TLBs.
    await this.issueWithSync(CMDQ_OP_CFGI_ALL);
    await this.waitOutstanding();
    await this.issueWithSync(CMDQ_OP_TLBI_NSNH_ALL);
    // SMMUEN stays 1, so nothing terminates a stall for us: end every one still held (its handler
    // may never answer, its event may still sit in the queue we are about to turn off). CMD_STALL_TERM
    // per StreamID of every stalling master; the CMD_SYNC after them means they have all retired.
    await this.terminateAllStalls();
    await this.writeRegSync(0, ARM_SMMU_IRQ_CTRL, ARM_SMMU_IRQ_CTRLACK);
    const keep = this.enables & (CR0_SMMUEN | CR0_ATSCHK);
    await this.writeRegSync(keep, ARM_SMMU_CR0, ARM_SMMU_CR0ACK);
    this.enables = keep;
  }

  /** CMD_STALL_TERM for every StreamID of a stall-capable master, then CMD_SYNC. Returns the SIDs. */
  async terminateAllStalls(): Promise<number[]> {
    const sids: number[] = [];
    for (const m of this.masters()) if (m.stallEnabled) sids.push(...m.streams);
    if (sids.length === 0) return sids;
    const ents: ArmSmmuCmdqEnt[] = sids.map((sid) => ({ opcode: CMDQ_OP_STALL_TERM, stallTerm: { sid } }));
    for (let i = 0; i < ents.length; i++) await this.cmdq.issueCmd(ents[i], i === ents.length - 1);
    this.info(`shutdown: CMD_STALL_TERM for StreamID(s) ${sids.map(hex).join(', ')}`);
    return sids;
  }

  /** With the policy the command line chose. */
  // kernel: arm_smmu_device_shutdown() [arm-smmu-v3.c]
  async shutdown(): Promise<void> {
    switch (this.params.shutdownPolicy) {
      case 'disable':
        this.info('shutdown: disabling the SMMU (CR0 = 0), GBPA left as it is');
        await this.deviceDisable();
        return;
      case 'gbpa-abort':
        this.info('shutdown: GBPA.ABORT, then disabling the SMMU');
        await this.updateGbpa(GBPA_ABORT, 0);
        await this.deviceDisable();
        return;
      case 'ste-abort':
        this.info('shutdown: every STE set to abort, SMMU left enabled');
        await this.steAbortAll();
        return;
    }
  }

  /** Masters of this SMMU, once each. */
  masters(): ArmSmmuMaster[] {
    return [...new Set(this.streams.values())];
  }

  toString(): string {
    return `SMMUv3 ${this.name} at ${hex(this.base?.base ?? 0)}`;
  }
}
