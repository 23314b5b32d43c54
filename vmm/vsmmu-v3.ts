/**
 * The VMM's emulated SMMUv3 (trap-and-emulate, stage 1 only), in the shape of QEMU's accel mode
 * (hw/arm/smmuv3-accel.c): every register access of the guest traps here; queues and tables are
 * guest memory; the real work is done by the host SMMU through the host kernel's iommufd objects.
 *
 * Supports (SMMUv3 architecture, IHI 0070, §6 registers, §4 commands, §5 structures, §7 events):
 * - ID registers from the host's (IOMMU_GET_HW_INFO) with what this vSMMU does not offer cleared:
 *   IDR0.S2P, HYP, MSI, VMID16, BTM (ATS and PRI as the host has them; STALL_MODEL "no stall" unless
 *   the host SMMU stalls);
 * - CR0/CR0ACK (acknowledged at once), CR1, CR2, GBPA (UPDATE completes at once), IRQ_CTRL/ACK,
 *   GERROR/GERRORN, STRTAB_BASE/_CFG (linear and 2-level tables read from guest memory), the
 *   command queue (consumed after each CMDQ_PROD write), the event queue (page 1 PROD/CONS) fed
 *   from the vEVENTQ, wired interrupts (eventq, gerror; cmdq-sync for CMD_SYNC with CS=IRQ);
 * - CFGI_STE / CFGI_STE_RANGE / CFGI_ALL: the guest STE is read and a HWPT attached: the abort or
 *   bypass HWPT, or a new nested HWPT from the guest's stage 1 fields (bits a stage-1-only SMMU
 *   ignores are dropped); a Config using stage 2 is ILLEGAL here: abort, and C_BAD_STE in the
 *   guest's event queue. While SMMUEN=0 every device gets the GBPA HWPT (abort or bypass);
 * - CFGI_CD, CFGI_CD_ALL, TLBI_NH_ALL/ASID/VA/VAA, TLBI_NSNH_ALL: forwarded (one IOMMU_HWPT_INVALIDATE
 *   each, as QEMU does); a CFGI_CD of a StreamID without an assigned device does nothing;
 * - CMD_SYNC: completes once every earlier command has (the forwards are synchronous);
 * - PREFETCH_*: no-ops; anything else (stage 2 and EL2 TLBIs, ATC_INV, PRI_RESP, RESUME,
 *   STALL_TERM, unknown opcodes) is CERROR_ILL: CONS.ERR, GERROR.CMDQ_ERR, the queue stops until
 *   GERRORN acknowledges it.
 * - stalls (when the host SMMU stalls): a stall of a guest device arrives through the VM's fault queue
 *   and becomes a stall event in the guest's event queue whose STAG stands for the host's cookie;
 *   the guest's CMD_RESUME (or STALL_TERM) answers the host's fault queue, which resumes the host
 *   transaction: the guest never sees the host's STAG;
 * - ATS and PRI: the guest's EATS goes to the host (which turns ATS on only if the guest asked);
 *   ATC_INV is forwarded; a page request arrives through the fault queue into the guest's PRI queue
 *   with a PRG index this vSMMU made up, and the guest's CMD_PRI_RESP answers the host by cookie;
 * Does not support: MSIs (IDR0.MSI=0), SubstreamIDs beyond what
 * the host's nested STE gives, the secure and Realm pages, PMCG. Unknown offsets read as zero and
 * ignore writes (counted in `stats.unknownAccesses`).
 *
 * One file over ~700 lines on purpose: one trapped device whose register file, command consumer and
 * guest-structure reads all act on one guest-visible state (QEMU keeps them in one file too,
 * hw/arm/smmuv3.c).
 */
import { BIT, FIELD_GET, FIELD_PREP, GENMASK, QAddr, QField } from '../bus/bitfield.js';
import { KernelError } from '../bus/errno.js';
import type { RamAccess } from '../hw/cpu-port.js';
import {
  IOMMU_HWPT_DATA_ARM_SMMUV3,
  IOMMU_HWPT_FAULT_ID_VALID,
  IOMMU_PGFAULT_FLAGS_LAST_PAGE,
  IOMMU_PGFAULT_FLAGS_PASID_VALID,
  type IommuHwptPgfault,
  IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3,
  type IommufdCtx,
  type IommufdVevent,
} from '../core/iommufd.js';
import type { TrapCosts } from './trap-costs.js';

// ---- registers (IHI 0070, §6.3) -----------------------------------------------------------------
export const SMMU_IDR0 = 0x00;
export const SMMU_IDR1 = 0x04;
export const SMMU_IDR5 = 0x14;
export const SMMU_IIDR = 0x18;
export const SMMU_AIDR = 0x1c;
export const SMMU_CR0 = 0x20;
export const SMMU_CR0ACK = 0x24;
export const SMMU_CR1 = 0x28;
export const SMMU_CR2 = 0x2c;
export const SMMU_GBPA = 0x44;
export const SMMU_IRQ_CTRL = 0x50;
export const SMMU_IRQ_CTRLACK = 0x54;
export const SMMU_GERROR = 0x60;
export const SMMU_GERRORN = 0x64;
export const SMMU_STRTAB_BASE = 0x80;
export const SMMU_STRTAB_BASE_CFG = 0x88;
export const SMMU_CMDQ_BASE = 0x90;
export const SMMU_CMDQ_PROD = 0x98;
export const SMMU_CMDQ_CONS = 0x9c;
export const SMMU_EVTQ_BASE = 0xa0;
export const SMMU_PRIQ_BASE = 0xc0;
/** Page 1 holds the EVTQ/PRIQ PROD and CONS. */
export const SMMU_PAGE1 = 0x1_0000;
export const SMMU_EVTQ_PROD = SMMU_PAGE1 + 0xa8;
export const SMMU_EVTQ_CONS = SMMU_PAGE1 + 0xac;
export const SMMU_PRIQ_PROD = SMMU_PAGE1 + 0xc8;
export const SMMU_PRIQ_CONS = SMMU_PAGE1 + 0xcc;
/** The register space this vSMMU decodes (two 64 KiB pages). */
export const VSMMU_REGION_SIZE = 0x2_0000;

// Register fields, with the kernel side's bit-field library (bus/bitfield.ts), which the VMM may
// import: masks used with FIELD_GET/FIELD_PREP, structure fields as QFields. A guest's values are
// only ever read with FIELD_GET/QField.get, which cannot throw.
const IDR0_S2P = BIT(0);
const IDR0_S1P = BIT(1);
const IDR0_BTM = BIT(5);
const IDR0_HYP = BIT(9);
const IDR0_MSI = BIT(13);
const IDR0_VMID16 = BIT(18);
const IDR0_STALL_MODEL = GENMASK(25, 24);
/** STALL_MODEL 0b01: stalls are not supported. */
const STALL_MODEL_NO_STALL = 1;

const CR0_SMMUEN = BIT(0);
const CR0_PRIQEN = BIT(1);
const CR0_EVTQEN = BIT(2);
const CR0_CMDQEN = BIT(3);
/** The CR0 bits this vSMMU keeps: SMMUEN, PRIQEN, EVTQEN, CMDQEN, ATSCHK. */
const CR0_IMPLEMENTED = GENMASK(4, 0);
const GBPA_UPDATE = BIT(31);
const GBPA_ABORT = BIT(20);
const IRQ_CTRL_GERROR_IRQEN = BIT(0);
const IRQ_CTRL_PRIQ_IRQEN = BIT(1);
const IRQ_CTRL_EVTQ_IRQEN = BIT(2);
const IRQ_CTRL_IMPLEMENTED = (IRQ_CTRL_GERROR_IRQEN | IRQ_CTRL_PRIQ_IRQEN | IRQ_CTRL_EVTQ_IRQEN) >>> 0;
const GERROR_CMDQ_ERR = BIT(0);
/** Queue PROD/CONS: the index with its wrap bit (queues of at most 2^19 entries), the overflow flag. */
const Q_WR = GENMASK(19, 0);
const Q_OVF = BIT(31);
const CMDQ_CONS_ERR = GENMASK(30, 24);
/** CERROR_ILL: an illegal command (§4.8). */
const CERROR_ILL = 1;
/** Queue bases: LOG2SIZE [4:0], ADDR [51:5] (bits [31:5] in the low word, [51:32] in the high word). */
const Q_BASE_LOG2SIZE = GENMASK(4, 0);
const Q_BASE_ADDR_LO = GENMASK(31, 5);
const BASE_ADDR_HI = GENMASK(19, 0);
/** STRTAB_BASE: ADDR [51:6]. */
const STRTAB_BASE_ADDR_LO = GENMASK(31, 6);
const STRTAB_BASE_CFG_LOG2SIZE = GENMASK(5, 0);
const STRTAB_BASE_CFG_SPLIT = GENMASK(10, 6);
const STRTAB_BASE_CFG_FMT = GENMASK(17, 16);
const STRTAB_BASE_CFG_FMT_2LVL = 1;
/** Level 1 stream table descriptor: Span [4:0], L2Ptr [51:6]. */
const L1STD_SPAN = GENMASK(4, 0);
const L1STD_L2PTR_LO = GENMASK(31, 6);

/** An address from a base register's two words: the low word's bits `loMask`, the high word's [19:0]. */
function baseAddr(lo: number, hi: number, loMask: number): number {
  return ((lo & loMask) >>> 0) + (hi & BASE_ADDR_HI) * 2 ** 32;
}

// Commands (§4.1), as qword fields.
const CMD_OP = new QField('CMD.Opcode', 0, 7, 0);
const CMD_SID = new QField('CMD.StreamID', 0, 63, 32);
const CMD_CFGI_STE_RANGE_RANGE = new QField('CMD_CFGI_STE_RANGE.Range', 1, 4, 0);
const CMD_PRI_RESP_PRGI = new QField('CMD_PRI_RESP.PRGI', 1, 8, 0);
const CMD_PRI_RESP_RESP = new QField('CMD_PRI_RESP.Resp', 1, 13, 12);
const CMD_RESUME_RESP = new QField('CMD_RESUME.Resp', 0, 13, 12);
const CMD_RESUME_STAG = new QField('CMD_RESUME.STAG', 1, 15, 0);
const CMD_SYNC_CS = new QField('CMD_SYNC.CS', 0, 13, 12);
const CMD_PREFETCH_CONFIG = 0x01;
const CMD_PREFETCH_ADDR = 0x02;
const CMD_CFGI_STE = 0x03;
const CMD_CFGI_STE_RANGE = 0x04;
const CMD_CFGI_CD = 0x05;
const CMD_CFGI_CD_ALL = 0x06;
const CMD_TLBI_NH_ALL = 0x10;
const CMD_TLBI_NH_ASID = 0x11;
const CMD_TLBI_NH_VA = 0x12;
const CMD_TLBI_NH_VAA = 0x13;
const CMD_TLBI_NSNH_ALL = 0x30;
const CMD_ATC_INV = 0x40;
const CMD_PRI_RESP = 0x41;
const CMD_RESUME = 0x44;
const CMD_STALL_TERM = 0x45;
const CMD_SYNC = 0x46;
/** CMD_RESUME.Resp: retry. */
const RESUME_RETRY = 1;
const CMD_SYNC_CS_IRQ = 1;

// STE fields (§5.2) in words 0-3 (qwords 0-1)
const STE_V = new QField('STE.V', 0, 0, 0);
const STE_CONFIG = new QField('STE.Config', 0, 3, 1);
const STE_CFG_ABORT = 0;
const STE_CFG_BYPASS = 4;
const STE_CFG_S1 = 5;
/** Word 0: V, Config, S1Fmt, S1ContextPtr[31:6]; word 1: S1ContextPtr[51:32], S1CDMax[63:59]. */
const STE_W0_STAGE1 = GENMASK(31, 0);
const STE_W1_STAGE1 = (GENMASK(19, 0) | GENMASK(31, 27)) >>> 0;
/** Word 2: S1DSS[1:0], S1CIR[3:2], S1COR[5:4], S1CSH[7:6], S1STALLD[27], EATS[29:28]. */
const STE_W2_STAGE1 = (GENMASK(7, 0) | BIT(27) | GENMASK(29, 28)) >>> 0;

// Events (§7.3)
const EVT_C_BAD_STE = 0x04;
const EVT_F_TRANSLATION = 0x10;
const EVT_TYPE = new QField('EVT.Type', 0, 7, 0);
const EVT_SSV = new QField('EVT.SSV', 0, 11, 11);
const EVT_SSID = new QField('EVT.SubstreamID', 0, 31, 12);
const EVT_SID = new QField('EVT.StreamID', 0, 63, 32);
const EVT_STAG = new QField('EVT.STAG', 1, 15, 0);
const EVT_STALL = new QField('EVT.STALL', 1, 31, 31);
const EVT_PNU = new QField('EVT.PnU', 1, 33, 33);
const EVT_IND = new QField('EVT.InD', 1, 34, 34);
const EVT_RNW = new QField('EVT.RnW', 1, 35, 35);
const EVT_CLASS = new QField('EVT.CLASS', 1, 41, 40);
/** CLASS 0b10: the fault is on the input address. */
const EVT_CLASS_IN = 2;
const EVT_INPUT_ADDR = new QAddr('EVT.InputAddr', 2, 63, 0);
// PRI queue entries (§8.1)
const PRIQ_SID = new QField('PRIQ.StreamID', 0, 31, 0);
const PRIQ_SSID = new QField('PRIQ.SubstreamID', 0, 51, 32);
const PRIQ_PRIV = new QField('PRIQ.PRIV', 0, 58, 58);
const PRIQ_EXEC = new QField('PRIQ.EXEC', 0, 59, 59);
const PRIQ_READ = new QField('PRIQ.READ', 0, 60, 60);
const PRIQ_WRITE = new QField('PRIQ.WRITE', 0, 61, 61);
const PRIQ_LAST = new QField('PRIQ.Last', 0, 62, 62);
const PRIQ_SSV = new QField('PRIQ.SSV', 0, 63, 63);
const PRIQ_PRGI = new QField('PRIQ.PRGI', 1, 8, 0);
const PRIQ_ADDR = new QAddr('PRIQ.PageAddress', 1, 63, 12);
/** SubstreamIDs are 20 bits. */
const SSID_MASK = GENMASK(19, 0);
/** IOMMU_PGFAULT_PERM_WRITE / _EXEC / _PRIV */
const PERM_READ = 1 << 0;
const PERM_WRITE = 1 << 1;
const PERM_EXEC = 1 << 2;
const PERM_PRIV = 1 << 3;
const EVTQ_ENT_WORDS = 8;

export interface VSmmuStats {
  traps: number;
  commands: number;
  forwarded: number;
  ioctls: number;
  steInstalls: number;
  cerrorIll: number;
  eventsDelivered: number;
  eventsLost: number;
  stallsForwarded: number;
  stallsAnswered: number;
  pageRequestsForwarded: number;
  pageResponses: number;
  unknownAccesses: number;
}

/** One device the guest sees behind this vSMMU. */
export interface VSmmuDevice {
  readonly vsid: number;
  /** iommufd device ID. */
  readonly devId: number;
  /** Its nested HWPTs report stalls to the VM's fault queue. */
  readonly stall: boolean;
  /** The HWPT attached now. */
  hwptId: number;
  /** A nested HWPT this vSMMU allocated for the current guest STE (destroyed when replaced). */
  ownedHwpt: number | null;
}

export interface VSmmuHost {
  readonly iommufd: IommufdCtx;
  readonly viommuId: number;
  /** The fault queue stalls of the guest's devices arrive on. */
  readonly faultId: number;
  readonly abortHwpt: number;
  readonly bypassHwpt: number;
  /** Guest RAM as the guest sees it (IPA). */
  readonly ram: RamAccess;
  now(): number;
  delay(ns: number): Promise<void>;
  /** Inject a guest interrupt by name. */
  inject(line: 'eventq' | 'priq' | 'gerror' | 'cmdq-sync'): void;
  readonly costs: TrapCosts;
  log(msg: string): void;
}

function lo(v: number): number {
  return v >>> 0;
}

/** The emulated SMMUv3 of one VM. */
export class VSmmuV3 {
  readonly devices = new Map<number, VSmmuDevice>();
  readonly stats: VSmmuStats = { traps: 0, commands: 0, forwarded: 0, ioctls: 0, steInstalls: 0, cerrorIll: 0, eventsDelivered: 0, eventsLost: 0, stallsForwarded: 0, stallsAnswered: 0, pageRequestsForwarded: 0, pageResponses: 0, unknownAccesses: 0 };
  private readonly idr: Uint32Array;
  private cr0 = 0;
  private cr1 = 0;
  private cr2 = 0;
  private gbpa = GBPA_ABORT;
  private irqCtrl = 0;
  private gerror = 0;
  private gerrorn = 0;
  private strtabBase = [0, 0];
  private strtabBaseCfg = 0;
  private cmdqBase = [0, 0];
  private cmdqProd = 0;
  private cmdqCons = 0;
  private evtqBase = [0, 0];
  private evtqProd = 0;
  private evtqCons = 0;
  private priqProd = 0;
  private priqCons = 0;
  /** Other registers the guest may write and read back (IRQ_CFG, PRIQ base): stored only. */
  private readonly plain = new Map<number, number>();
  private consuming = false;
  /** Bumped when the guest disables the command queue: a batch in flight stops where it is. */
  private cmdqGeneration = 0;
  /** Work that must finish before the next command batch (STE installs on CR0/GBPA changes). */
  private pending: Promise<void> = Promise.resolve();

  constructor(
    private readonly host: VSmmuHost,
    hostIdr: Uint32Array,
  ) {
    this.idr = hostIdr.slice(0, 8);
    let idr0 = this.idr[0];
    // Stalls: offered when the host's SMMU stalls (STALL_MODEL 0b00), never forced on the guest.
    const hostStall = FIELD_GET(IDR0_STALL_MODEL, idr0);
    idr0 &= ~(IDR0_S2P | IDR0_HYP | IDR0_MSI | IDR0_VMID16 | IDR0_BTM | IDR0_STALL_MODEL);
    idr0 |= IDR0_S1P | FIELD_PREP(IDR0_STALL_MODEL, hostStall === 0 ? 0 : STALL_MODEL_NO_STALL);
    this.idr[0] = idr0 >>> 0;
  }

  /** The ID registers the guest sees (IDR0-5, IIDR, AIDR). */
  get idRegisters(): Uint32Array {
    return this.idr.slice();
  }

  addDevice(vsid: number, devId: number, hwptId: number, stall = false): void {
    this.devices.set(vsid, { vsid, devId, stall, hwptId, ownedHwpt: null });
  }

  // ---- MMIO ----

  read32(off: number): number {
    this.stats.traps++;
    switch (off) {
      case SMMU_IDR0:
      case SMMU_IDR0 + 4:
      case SMMU_IDR0 + 8:
      case SMMU_IDR0 + 12:
      case SMMU_IDR0 + 16:
      case SMMU_IDR5:
      case SMMU_IIDR:
      case SMMU_AIDR:
        return this.idr[off / 4];
      case SMMU_CR0:
      case SMMU_CR0ACK:
        return this.cr0;
      case SMMU_CR1:
        return this.cr1;
      case SMMU_CR2:
        return this.cr2;
      case SMMU_GBPA:
        return this.gbpa;
      case SMMU_IRQ_CTRL:
      case SMMU_IRQ_CTRLACK:
        return this.irqCtrl;
      case SMMU_GERROR:
        return this.gerror;
      case SMMU_GERRORN:
        return this.gerrorn;
      case SMMU_STRTAB_BASE:
        return this.strtabBase[0];
      case SMMU_STRTAB_BASE + 4:
        return this.strtabBase[1];
      case SMMU_STRTAB_BASE_CFG:
        return this.strtabBaseCfg;
      case SMMU_CMDQ_BASE:
        return this.cmdqBase[0];
      case SMMU_CMDQ_BASE + 4:
        return this.cmdqBase[1];
      case SMMU_CMDQ_PROD:
        return this.cmdqProd;
      case SMMU_CMDQ_CONS:
        return this.cmdqCons;
      case SMMU_EVTQ_BASE:
        return this.evtqBase[0];
      case SMMU_EVTQ_BASE + 4:
        return this.evtqBase[1];
      case SMMU_EVTQ_PROD:
        return this.evtqProd;
      case SMMU_EVTQ_CONS:
        return this.evtqCons;
      case SMMU_PRIQ_PROD:
        return this.priqProd;
      case SMMU_PRIQ_CONS:
        return this.priqCons;
      default:
        if (this.plain.has(off)) return this.plain.get(off)!;
        this.stats.unknownAccesses++;
        this.host.log(`read of unknown offset 0x${off.toString(16)} (RAZ)`);
        return 0;
    }
  }

  write32(off: number, v: number): void {
    this.stats.traps++;
    v = lo(v);
    switch (off) {
      case SMMU_CR0:
        this.writeCr0(v);
        return;
      case SMMU_CR1:
        if ((this.cr0 & (CR0_SMMUEN | CR0_CMDQEN | CR0_EVTQEN)) === 0) this.cr1 = v;
        return;
      case SMMU_CR2:
        if ((this.cr0 & CR0_SMMUEN) === 0) this.cr2 = v;
        return;
      case SMMU_GBPA:
        if ((v & GBPA_UPDATE) !== 0) {
          this.gbpa = v & ~GBPA_UPDATE;
          if ((this.cr0 & CR0_SMMUEN) === 0) this.reinstallAll();
        }
        return;
      case SMMU_IRQ_CTRL:
        this.irqCtrl = v & IRQ_CTRL_IMPLEMENTED;
        return;
      case SMMU_GERRORN:
        this.gerrorn = v;
        // The guest acknowledged the command error (after fixing the queue): go on.
        if (((this.gerror ^ this.gerrorn) & GERROR_CMDQ_ERR) === 0 && (this.cmdqCons & CMDQ_CONS_ERR) !== 0) {
          this.cmdqCons &= ~CMDQ_CONS_ERR;
          this.kick();
        }
        return;
      case SMMU_STRTAB_BASE:
      case SMMU_STRTAB_BASE + 4:
        if ((this.cr0 & CR0_SMMUEN) === 0) this.strtabBase[(off - SMMU_STRTAB_BASE) / 4] = v;
        return;
      case SMMU_STRTAB_BASE_CFG:
        if ((this.cr0 & CR0_SMMUEN) === 0) this.strtabBaseCfg = v;
        return;
      case SMMU_CMDQ_BASE:
      case SMMU_CMDQ_BASE + 4:
        if ((this.cr0 & CR0_CMDQEN) === 0) this.cmdqBase[(off - SMMU_CMDQ_BASE) / 4] = v;
        return;
      case SMMU_CMDQ_PROD:
        this.cmdqProd = v & Q_WR;
        this.kick();
        return;
      case SMMU_CMDQ_CONS:
        if ((this.cr0 & CR0_CMDQEN) === 0) this.cmdqCons = v;
        return;
      case SMMU_EVTQ_BASE:
      case SMMU_EVTQ_BASE + 4:
        if ((this.cr0 & CR0_EVTQEN) === 0) this.evtqBase[(off - SMMU_EVTQ_BASE) / 4] = v;
        return;
      case SMMU_EVTQ_PROD:
        if ((this.cr0 & CR0_EVTQEN) === 0) this.evtqProd = v;
        return;
      case SMMU_EVTQ_CONS:
        this.evtqCons = v;
        return;
      case SMMU_PRIQ_PROD:
        if ((this.cr0 & CR0_PRIQEN) === 0) this.priqProd = v;
        return;
      case SMMU_PRIQ_CONS:
        this.priqCons = v;
        return;
      default:
        if (off >= 0x68 && off < 0x80) this.plain.set(off, v); // GERROR_IRQ_CFG*
        else if (off >= 0xb0 && off < 0xe0) this.plain.set(off, v); // EVTQ/PRIQ IRQ_CFG, PRIQ_BASE
        else {
          this.stats.unknownAccesses++;
          this.host.log(`write of 0x${v.toString(16)} to unknown offset 0x${off.toString(16)} (ignored)`);
        }
    }
  }

  private writeCr0(v: number): void {
    const was = this.cr0;
    this.cr0 = v & CR0_IMPLEMENTED;
    if ((was & CR0_CMDQEN) !== 0 && (this.cr0 & CR0_CMDQEN) === 0) this.cmdqGeneration++;
    if (((was ^ this.cr0) & CR0_SMMUEN) !== 0) this.reinstallAll();
    if ((this.cr0 & CR0_CMDQEN) !== 0 && (was & CR0_CMDQEN) === 0) this.kick();
  }

  // ---- STEs ----

  /** Re-derive every device's HWPT (SMMUEN or GBPA changed). */
  private reinstallAll(): void {
    const vsids = [...this.devices.keys()];
    this.pending = this.pending.then(async () => {
      for (const vsid of vsids) await this.installSteLogged(vsid);
    });
  }

  /** The guest STE of `vsid` (words 0-3), or null when the table has none for it. */
  private readGuestSte(vsid: number): Uint32Array | null {
    const ram = this.host.ram;
    const base = baseAddr(this.strtabBase[0], this.strtabBase[1], STRTAB_BASE_ADDR_LO);
    const log2size = FIELD_GET(STRTAB_BASE_CFG_LOG2SIZE, this.strtabBaseCfg);
    const split = FIELD_GET(STRTAB_BASE_CFG_SPLIT, this.strtabBaseCfg);
    if (vsid >= 2 ** log2size) return null;
    let steAddr: number;
    if (FIELD_GET(STRTAB_BASE_CFG_FMT, this.strtabBaseCfg) === STRTAB_BASE_CFG_FMT_2LVL) {
      const l1 = base + Math.floor(vsid / 2 ** split) * 8;
      const d0 = ram.read32(l1);
      const d1 = ram.read32(l1 + 4);
      const span = FIELD_GET(L1STD_SPAN, d0);
      if (span === 0 || (vsid % 2 ** split) >= 2 ** (span - 1)) return null;
      const l2 = baseAddr(d0, d1, L1STD_L2PTR_LO);
      steAddr = l2 + (vsid % 2 ** split) * 64;
    } else {
      steAddr = base + vsid * 64;
    }
    const ste = new Uint32Array(4);
    for (let i = 0; i < 4; i++) ste[i] = ram.read32(steAddr + 4 * i);
    return ste;
  }

  /** installSte, with a host failure logged (the guest's command still completes, as in QEMU). */
  private async installSteLogged(vsid: number): Promise<void> {
    try {
      await this.installSte(vsid);
    } catch (e) {
      this.host.log(`vSID 0x${vsid.toString(16)}: installing the STE failed on the host: ${String(e)}`);
    }
  }

  /** Give `vsid`'s device the HWPT its guest STE (or GBPA) asks for. // QEMU: smmuv3_accel_install_ste() */
  private async installSte(vsid: number): Promise<void> {
    const d = this.devices.get(vsid);
    if (!d) return;
    this.stats.steInstalls++;
    const ctx = this.host.iommufd;
    let target: number;
    let owned: number | null = null;
    if ((this.cr0 & CR0_SMMUEN) === 0) {
      target = (this.gbpa & GBPA_ABORT) !== 0 ? this.host.abortHwpt : this.host.bypassHwpt;
    } else {
      const ste = this.readGuestSte(vsid);
      const cfg = ste && STE_V.isSet(ste) ? STE_CONFIG.get(ste) : STE_CFG_ABORT;
      if (!ste || !STE_V.isSet(ste) || cfg === STE_CFG_ABORT) {
        target = this.host.abortHwpt;
      } else if (cfg === STE_CFG_BYPASS) {
        target = this.host.bypassHwpt;
      } else if (cfg === STE_CFG_S1) {
        const words = new Uint32Array([ste[0] & STE_W0_STAGE1, ste[1] & STE_W1_STAGE1, ste[2] & STE_W2_STAGE1, 0]);
        await this.ioctl();
        try {
          const data = { type: IOMMU_HWPT_DATA_ARM_SMMUV3, words };
          target = await ctx.hwptAlloc(
            d.stall ? { devId: d.devId, ptId: this.host.viommuId, data, flags: IOMMU_HWPT_FAULT_ID_VALID, faultId: this.host.faultId } : { devId: d.devId, ptId: this.host.viommuId, data },
          );
          owned = target;
        } catch (e) {
          this.host.log(`vSID 0x${vsid.toString(16)}: the host refused the nested STE: ${String(e)}`);
          target = this.host.abortHwpt;
          this.reportBadSte(vsid);
        }
      } else {
        // A Config using stage 2 is ILLEGAL on a stage-1-only SMMU.
        target = this.host.abortHwpt;
        this.reportBadSte(vsid);
      }
    }
    const previous = d.ownedHwpt;
    if (target !== d.hwptId) {
      await this.ioctl();
      await ctx.attach(d.devId, target);
      d.hwptId = target;
    }
    d.ownedHwpt = owned;
    if (previous !== null && previous !== target) {
      await this.ioctl();
      await ctx.destroy(previous);
    }
  }

  private reportBadSte(vsid: number): void {
    const evt = new Uint32Array(EVTQ_ENT_WORDS);
    EVT_TYPE.prep(evt, EVT_C_BAD_STE);
    EVT_SID.prep(evt, vsid);
    this.pushEvent(evt);
  }

  // ---- command queue ----

  private kick(): void {
    if (this.consuming || (this.cr0 & CR0_CMDQEN) === 0) return;
    this.consuming = true;
    void this.consume().finally(() => {
      this.consuming = false;
      // PROD may have moved while the last batch ran.
      if (this.hasWork()) this.kick();
    });
  }

  private hasWork(): boolean {
    return (this.cr0 & CR0_CMDQEN) !== 0 && (this.cmdqCons & CMDQ_CONS_ERR) === 0 && (this.cmdqCons & Q_WR) !== this.cmdqProd;
  }

  private async consume(): Promise<void> {
    const gen = this.cmdqGeneration;
    await this.pending;
    const ram = this.host.ram;
    const log2 = FIELD_GET(Q_BASE_LOG2SIZE, this.cmdqBase[0]);
    const base = baseAddr(this.cmdqBase[0], this.cmdqBase[1], Q_BASE_ADDR_LO);
    const mask = 2 ** (log2 + 1) - 1;
    while (this.hasWork() && gen === this.cmdqGeneration) {
      const cons = this.cmdqCons & mask;
      const idx = cons % 2 ** log2;
      const cmd = new Uint32Array(4);
      for (let i = 0; i < 4; i++) cmd[i] = ram.read32(base + idx * 16 + 4 * i);
      this.stats.commands++;
      await this.host.delay(this.host.costs.vmmCommandNs);
      const ok = await this.execute(cmd);
      // The guest turned the queue off meanwhile: its new CONS stands.
      if (gen !== this.cmdqGeneration) return;
      if (!ok) {
        this.stats.cerrorIll++;
        this.cmdqCons = ((this.cmdqCons & ~CMDQ_CONS_ERR) | FIELD_PREP(CMDQ_CONS_ERR, CERROR_ILL)) >>> 0;
        this.gerror ^= GERROR_CMDQ_ERR;
        if ((this.irqCtrl & IRQ_CTRL_GERROR_IRQEN) !== 0) this.host.inject('gerror');
        return;
      }
      this.cmdqCons = (this.cmdqCons & ~mask) | ((cons + 1) & mask);
    }
  }

  /** Run one guest command; false when it is illegal here (CERROR_ILL). */
  private async execute(cmd: Uint32Array): Promise<boolean> {
    const op = CMD_OP.get(cmd);
    switch (op) {
      case CMD_PREFETCH_CONFIG:
      case CMD_PREFETCH_ADDR:
        return true;
      case CMD_CFGI_STE:
        await this.installSteLogged(CMD_SID.get(cmd));
        return true;
      case CMD_CFGI_STE_RANGE: {
        const start = CMD_SID.get(cmd);
        const range = CMD_CFGI_STE_RANGE_RANGE.get(cmd);
        const span = 2 ** (range + 1);
        const first = start - (start % span);
        for (const vsid of [...this.devices.keys()]) if (vsid >= first && vsid < first + span) await this.installSteLogged(vsid);
        return true;
      }
      case CMD_CFGI_CD:
      case CMD_CFGI_CD_ALL:
      case CMD_ATC_INV:
        if (!this.devices.has(CMD_SID.get(cmd))) return true;
        return this.forward(cmd);
      case CMD_PRI_RESP: {
        // SID [63:32], PRGI qword 1 [8:0], Resp qword 1 [13:12]: 0 deny, 1 fail, 2 success.
        const resp = CMD_PRI_RESP_RESP.get(cmd);
        this.priResponse(CMD_SID.get(cmd), CMD_PRI_RESP_PRGI.get(cmd), resp === 2 ? 0 : resp === 1 ? 2 : 1);
        return true;
      }
      case CMD_TLBI_NH_ALL:
      case CMD_TLBI_NH_ASID:
      case CMD_TLBI_NH_VA:
      case CMD_TLBI_NH_VAA:
      case CMD_TLBI_NSNH_ALL:
        return this.forward(cmd);
      case CMD_RESUME:
        this.resume(CMD_SID.get(cmd), CMD_RESUME_STAG.get(cmd), CMD_RESUME_RESP.get(cmd) === RESUME_RETRY);
        return true;
      case CMD_STALL_TERM:
        for (const [key, cookie] of this.stalls) {
          if (Math.floor(key / 0x1_0000) !== CMD_SID.get(cmd)) continue;
          this.stalls.delete(key);
          this.answer(cookie, false);
        }
        return true;
      case CMD_SYNC:
        // Every earlier command has completed: the forwards waited for the host.
        if (CMD_SYNC_CS.get(cmd) === CMD_SYNC_CS_IRQ) this.host.inject('cmdq-sync');
        return true;
      default:
        return false;
    }
  }

  private async ioctl(): Promise<void> {
    this.stats.ioctls++;
    await this.host.delay(this.host.costs.ioctlNs);
  }

  /** One IOMMU_HWPT_INVALIDATE on the vIOMMU with the raw guest command. // QEMU: smmuv3_accel_issue_inv_cmd() */
  private async forward(cmd: Uint32Array): Promise<boolean> {
    this.stats.forwarded++;
    await this.ioctl();
    try {
      await this.host.iommufd.invalidate(this.host.viommuId, IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3, [cmd]);
      return true;
    } catch (e) {
      if (e instanceof KernelError) this.host.log(`forwarding opcode 0x${CMD_OP.get(cmd).toString(16)} failed: ${e.message}`);
      return false;
    }
  }

  // ---- stalls: the guest's page responses go back through the host's fault queue ----

  /** (vSID << 16 | guest STAG) → host fault cookie. The guest never sees the host's STAG. */
  private readonly stalls = new Map<number, number>();
  private nextStag = 0;

  /**
   * A stalled transaction of a guest device, read from the fault queue: a stall event in the guest's
   * event queue, its STAG a tag of this vSMMU's standing for the host's cookie.
   */
  deliverStall(rec: IommuHwptPgfault, vsid: number): void {
    let stag = this.nextStag;
    while (this.stalls.has(vsid * 0x1_0000 + stag)) stag = (stag + 1) & 0xffff;
    this.nextStag = (stag + 1) & 0xffff;
    this.stalls.set(vsid * 0x1_0000 + stag, rec.cookie);
    const evt = new Uint32Array(EVTQ_ENT_WORDS);
    const ssv = (rec.flags & IOMMU_PGFAULT_FLAGS_PASID_VALID) !== 0;
    EVT_TYPE.prep(evt, EVT_F_TRANSLATION);
    if (ssv) {
      EVT_SSV.prep(evt, 1);
      EVT_SSID.prep(evt, rec.pasid & SSID_MASK);
    }
    EVT_SID.prep(evt, vsid);
    EVT_STAG.prep(evt, stag);
    EVT_STALL.prep(evt, 1);
    if ((rec.perm & PERM_PRIV) !== 0) EVT_PNU.prep(evt, 1);
    if ((rec.perm & PERM_EXEC) !== 0) EVT_IND.prep(evt, 1);
    if ((rec.perm & PERM_WRITE) === 0) EVT_RNW.prep(evt, 1);
    EVT_CLASS.prep(evt, EVT_CLASS_IN);
    EVT_INPUT_ADDR.prep(evt, rec.addr);
    this.stats.stallsForwarded++;
    this.pushEvent(evt);
  }

  /** CMD_RESUME from the guest: answer the host's stall it stands for; an unknown STAG does nothing. */
  private resume(vsid: number, stag: number, retry: boolean): void {
    const key = vsid * 0x1_0000 + stag;
    const cookie = this.stalls.get(key);
    if (cookie === undefined) return;
    this.stalls.delete(key);
    this.answer(cookie, retry);
  }

  private answer(cookie: number, retry: boolean): void {
    try {
      this.host.iommufd.fault(this.host.faultId).respond(cookie, retry ? 0 : 1);
      this.stats.stallsAnswered++;
    } catch (e) {
      this.host.log(`page response for cookie ${cookie} refused: ${String(e)}`);
    }
  }

  // ---- PRI: page requests through the host's fault queue, with guest PRG indexes ----

  /** (vSID << 9 | guest PRGI) → host fault cookie; a cookie's requests share one guest PRGI. */
  private readonly prgs = new Map<number, number>();
  private readonly prgiOfCookie = new Map<number, number>();
  private nextPrgi = 0;

  /** A page request of a guest PCIe function, read from the fault queue, into the guest's PRI queue. */
  deliverPageRequest(rec: IommuHwptPgfault, vsid: number): void {
    let prgi = this.prgiOfCookie.get(rec.cookie);
    if (prgi === undefined) {
      prgi = this.nextPrgi;
      while (this.prgs.has(vsid * 0x200 + prgi)) prgi = (prgi + 1) & 0x1ff;
      this.nextPrgi = (prgi + 1) & 0x1ff;
      this.prgs.set(vsid * 0x200 + prgi, rec.cookie);
      this.prgiOfCookie.set(rec.cookie, prgi);
    }
    this.stats.pageRequestsForwarded++;
    if ((this.cr0 & CR0_PRIQEN) === 0) return;
    const log2 = FIELD_GET(Q_BASE_LOG2SIZE, this.plainBase(0xc0));
    const base = baseAddr(this.plainBase(0xc0), this.plainBase(0xc4), Q_BASE_ADDR_LO);
    const mask = 2 ** (log2 + 1) - 1;
    const prod = this.priqProd & mask;
    if ((prod ^ (this.priqCons & mask)) === 2 ** log2) {
      this.priqProd ^= Q_OVF;
      return;
    }
    const ssv = (rec.flags & IOMMU_PGFAULT_FLAGS_PASID_VALID) !== 0;
    const last = (rec.flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE) !== 0;
    const w = new Uint32Array(4);
    PRIQ_SID.prep(w, vsid);
    if (ssv) {
      PRIQ_SSID.prep(w, rec.pasid & SSID_MASK);
      PRIQ_SSV.prep(w, 1);
    }
    if ((rec.perm & PERM_PRIV) !== 0) PRIQ_PRIV.prep(w, 1);
    if ((rec.perm & PERM_EXEC) !== 0) PRIQ_EXEC.prep(w, 1);
    if ((rec.perm & PERM_READ) !== 0) PRIQ_READ.prep(w, 1);
    if ((rec.perm & PERM_WRITE) !== 0) PRIQ_WRITE.prep(w, 1);
    if (last) PRIQ_LAST.prep(w, 1);
    PRIQ_ADDR.prep(w, rec.addr - (rec.addr % 4096));
    PRIQ_PRGI.prep(w, prgi);
    const idx = prod % 2 ** log2;
    for (let i = 0; i < 4; i++) this.host.ram.write32(base + idx * 16 + 4 * i, w[i]);
    this.priqProd = (this.priqProd & ~mask) | ((prod + 1) & mask);
    if ((this.irqCtrl & IRQ_CTRL_PRIQ_IRQEN) !== 0) this.host.inject('priq');
  }

  private plainBase(off: number): number {
    return this.plain.get(off) ?? 0;
  }

  /** CMD_PRI_RESP from the guest: answer the host group its PRGI stands for; unknown ones do nothing. */
  private priResponse(vsid: number, prgi: number, code: 0 | 1 | 2): void {
    const key = vsid * 0x200 + prgi;
    const cookie = this.prgs.get(key);
    if (cookie === undefined) return;
    this.prgs.delete(key);
    this.prgiOfCookie.delete(cookie);
    try {
      this.host.iommufd.fault(this.host.faultId).respond(cookie, code);
      this.stats.pageResponses++;
    } catch (e) {
      this.host.log(`page response for cookie ${cookie} refused: ${String(e)}`);
    }
  }

  // ---- event queue ----

  /** Events from the vEVENTQ into the guest's event queue. // QEMU: smmuv3_accel_event_read() */
  deliver(ev: IommufdVevent): void {
    if (ev.data.length === 0) {
      this.stats.eventsLost++;
      return;
    }
    this.pushEvent(ev.data);
  }

  private pushEvent(evt: Uint32Array): void {
    if ((this.cr0 & CR0_EVTQEN) === 0) {
      this.stats.eventsLost++;
      return;
    }
    const log2 = FIELD_GET(Q_BASE_LOG2SIZE, this.evtqBase[0]);
    const base = baseAddr(this.evtqBase[0], this.evtqBase[1], Q_BASE_ADDR_LO);
    const mask = 2 ** (log2 + 1) - 1;
    const prod = this.evtqProd & mask;
    const cons = this.evtqCons & mask;
    const full = (prod ^ cons) === 2 ** log2;
    if (full) {
      this.stats.eventsLost++;
      this.evtqProd ^= Q_OVF;
    } else {
      const idx = prod % 2 ** log2;
      for (let i = 0; i < EVTQ_ENT_WORDS; i++) this.host.ram.write32(base + idx * 32 + 4 * i, evt[i] ?? 0);
      this.evtqProd = (this.evtqProd & ~mask) | ((prod + 1) & mask);
      this.stats.eventsDelivered++;
    }
    if ((this.irqCtrl & IRQ_CTRL_EVTQ_IRQEN) !== 0) this.host.inject('eventq');
  }
}
