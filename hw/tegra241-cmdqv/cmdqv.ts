/**
 * NVIDIA Tegra241 (Grace) CMDQ-Virtualization: extra SMMUv3 command queues (VCMDQs) grouped into
 * virtual interfaces (VINTFs), next to the SMMUv3 whose command execution they feed.
 *
 * Supports:
 * - the config page: CONFIG with the CMDQV_EN → STATUS.CMDQV_ENABLED handshake (a later scheduler
 *   step), PARAM from the options, VI_ERR_MAP, VI_INT_MASK, CMDQ_ERR_MAP_0..3, CMDQ_ALLOC_MAP_q;
 * - per VINTF: VINTF_CONFIG (ENABLE/VMID/HYP_OWN; VMID and HYP_OWN latch only while the VINTF is
 *   disabled or by the write that disables it) with the ENABLE → VINTF_STATUS.ENABLE_OK handshake, VI_NUM_LVCMDQ and the error
 *   STATUS, SID_MATCH/SID_REPLACE pairs, LVCMDQ_ERR_MAP, GLB_FILT_CFG/DATA as storage;
 * - per VCMDQ: page0 (CONS with ERR, PROD, CONFIG.CMDQ_EN → STATUS.CMDQ_EN_OK, GERROR/GERRORN
 *   toggles) and page1 (BASE, CONS_INDX_BASE as storage), reachable in the direct apertures (by
 *   global index) and in each VINTF's logical apertures (by LVCMDQ index through CMDQ_ALLOC_MAP;
 *   accesses to a logical slot nothing is mapped to read zero and are dropped);
 * - CMDQ_ALLOC_MAP rules: a VCMDQ's map is ignored while it is enabled; map in ascending and unmap
 *   in descending LVCMDQ order (option `allocOrder`); one VCMDQ per (VINTF, LVCMDQ);
 * - each VCMDQ is an SMMUv3 command queue (hw/smmu-v3/cmdq.ts, the SMMU's own executor): it
 *   consumes while the CMDQV, its VINTF and the queue are enabled and it is mapped, in scheduler
 *   steps, each command costing the SMMU's `timing.commandNs`, in parallel with the other queues
 *   or behind one arbiter (option `vcmdqService`); a CMD_SYNC completes once every earlier command
 *   of its own queue is consumed; errors set CONS.ERR and toggle GERROR.CMDQ_ERR, and consumption
 *   resumes once GERRORN acknowledges it;
 * - a HYP_OWN=0 VINTF: only the guest command set executes (option `guestCommands`), the VMID of
 *   TLBI commands is replaced by VINTF_CONFIG.VMID, the StreamID of SID-bearing commands is matched
 *   against the enabled SID_MATCH pairs and replaced by SID_REPLACE (no match: an error);
 * - one wired interrupt, pulsed when a VCMDQ enters error unless its VINTF's VI_INT_MASK bit is set;
 *   the error maps show the queues whose error is active (they clear on the GERRORN acknowledge (?));
 * - option `hypOwnWiredZero`: HYP_OWN reads 0 whatever is written (the CMDQV as seen from a guest);
 * - `vintfPage0(i)`: VINTF i's logical page0 as an MMIO device of its own, for a VMM to pass through;
 * - a side-effect-free `peek32`.
 * Does not support: CONS_DRAM_EN (CONS write-back to memory), GLB_FILT_* filtering, the
 * PER_CMD_OFFSET and the MAX_*_BATCH automatic sync insertion, GERROR.CONS_DRAM_WR_ABT_ERR and
 * CMDQ_INIT_ERR (never raised).
 * Register map: the fact sheet §1 (the kernel's tegra241-cmdqv.c and QEMU's model); no public
 * NVIDIA manual.
 */
import { vtime } from '../vtime.js';
import createDebug from 'debug';
import type { MmioDevice } from '../mmio.js';
import type { Scheduler } from '../scheduler.js';
import { join64 } from '../bitfield.js';
import type { CommandQueue } from '../smmu-v3/cmdq.js';
import * as F from '../smmu-v3/formats.js';
import type { IrqOutput } from '../smmu-v3/interrupts.js';
import type { SmmuV3 } from '../smmu-v3/smmu-v3.js';
import { type ResolvedCmdqvOptions, resolveCmdqvOptions, type Tegra241CmdqvOptions } from './options.js';
import * as R from './regs.js';

const log = createDebug('iommu:hw:tegra241-cmdqv');
const hex = (v: number): string => `0x${v.toString(16)}`;

/** One global VCMDQ. */
export class Vcmdq {
  /** VCMDQ_CONFIG as written. */
  config = 0;
  /** VCMDQ_STATUS.CMDQ_EN_OK. */
  enOk = false;
  gerror = 0;
  gerrorn = 0;
  consIndxBaseLo = 0;
  consIndxBaseHi = 0;
  /** CMDQ_ALLOC_MAP_q. */
  alloc = 0;
  ackEvent: { cancel(): void } | null = null;

  constructor(
    readonly index: number,
    readonly cq: CommandQueue,
  ) {}

  get mapped(): boolean {
    return R.CMDQ_ALLOC_ALLOCATED.isSet(this.alloc);
  }

  get vintf(): number {
    return R.CMDQ_ALLOC_VINTF.get(this.alloc);
  }

  get lidx(): number {
    return R.CMDQ_ALLOC_LVCMDQ.get(this.alloc);
  }

  get errorActive(): boolean {
    return ((this.gerror ^ this.gerrorn) & R.VCMDQ_GERROR_CMDQ_ERR.mask) !== 0;
  }
}

/** One VINTF. */
export class Vintf {
  /** VINTF_CONFIG as latched. */
  config = 0;
  /** VINTF_STATUS.ENABLE_OK. */
  enableOk = false;
  glbFiltCfg = 0;
  glbFiltData = 0;
  readonly sidMatch: Uint32Array;
  readonly sidReplace: Uint32Array;
  /** Global VCMDQ index by LVCMDQ index, -1 where nothing is mapped. */
  readonly lvcmdq: Int16Array;
  ackEvent: { cancel(): void } | null = null;

  constructor(
    readonly index: number,
    sidPairs: number,
    lvcmdqSlots: number,
  ) {
    this.sidMatch = new Uint32Array(sidPairs);
    this.sidReplace = new Uint32Array(sidPairs);
    this.lvcmdq = new Int16Array(lvcmdqSlots).fill(-1);
  }

  get hypOwn(): boolean {
    return R.VINTF_CONFIG_HYP_OWN.isSet(this.config);
  }

  get vmid(): number {
    return R.VINTF_CONFIG_VMID.get(this.config);
  }

  /** The physical StreamID a virtual one maps to through the enabled pairs, or -1. */
  replaceSid(vsid: number): number {
    for (let s = 0; s < this.sidMatch.length; s++) {
      const m = this.sidMatch[s];
      if (R.SID_MATCH_ENABLE.isSet(m) && R.SID_MATCH_VIRT_SID.get(m) === vsid) return R.SID_REPLACE_PHYS_SID.get(this.sidReplace[s]);
    }
    return -1;
  }
}

export interface Tegra241CmdqvStats {
  /** Interrupts raised on the CMDQV line. */
  irqs: number;
  /** VCMDQ errors, by CONS.ERR code. */
  errors: Record<number, number>;
  /** Commands a HYP_OWN=0 VINTF refused (opcode outside the guest set, or unmatched StreamID). */
  refused: number;
  /** Writes dropped: logical slots with nothing mapped, guarded registers, ALLOC order violations. */
  dropped: number;
}

/** Opcodes whose VMID field a HYP_OWN=0 VINTF replaces. */
const VMID_OPCODES = new Uint8Array(256);
for (const op of [F.CMD_TLBI_NH_ALL, F.CMD_TLBI_NH_ASID, F.CMD_TLBI_NH_VA, F.CMD_TLBI_NH_VAA, F.CMD_TLBI_S12_VMALL, F.CMD_TLBI_S2_IPA]) VMID_OPCODES[op] = 1;
/** Opcodes whose StreamID field a HYP_OWN=0 VINTF matches and replaces. */
const SID_OPCODES = new Uint8Array(256);
for (const op of [F.CMD_PREFETCH_CONFIG, F.CMD_PREFETCH_ADDR, F.CMD_CFGI_STE, F.CMD_CFGI_STE_RANGE, F.CMD_CFGI_CD, F.CMD_CFGI_CD_ALL, F.CMD_ATC_INV, F.CMD_PRI_RESP, F.CMD_RESUME, F.CMD_STALL_TERM]) SID_OPCODES[op] = 1;

export interface Tegra241CmdqvDeps {
  scheduler: Scheduler;
  /** The SMMUv3 whose command execution the VCMDQs use. */
  smmu: SmmuV3;
  /** The CMDQV's one wired interrupt. */
  irq?: IrqOutput | null;
}

export class Tegra241Cmdqv implements MmioDevice {
  readonly name: string;
  readonly opts: ResolvedCmdqvOptions;
  readonly numVintfs: number;
  readonly numVcmdqs: number;
  readonly lvcmdqsPerVintf: number;
  readonly sidPairs: number;
  /** Size of the MMIO aperture. */
  readonly regionSize: number;
  readonly vintfs: readonly Vintf[];
  readonly vcmdqs: readonly Vcmdq[];
  readonly stats: Tegra241CmdqvStats = { irqs: 0, errors: {}, refused: 0, dropped: 0 };
  private config: number;
  private enabled: boolean;
  private viIntMask0 = 0;
  private viIntMask1 = 0;
  private configEvent: { cancel(): void } | null = null;
  private readonly scheduler: Scheduler;
  private irq: IrqOutput | null;
  private readonly regAckNs: number;
  private readonly page0Views = new Map<number, MmioDevice>();

  constructor(deps: Tegra241CmdqvDeps, options: Tegra241CmdqvOptions = {}) {
    this.opts = resolveCmdqvOptions(options);
    this.name = this.opts.name;
    this.scheduler = deps.scheduler;
    this.irq = deps.irq ?? null;
    this.regAckNs = deps.smmu.opts.timing.regAckNs;
    this.numVintfs = 2 ** this.opts.vintfsLog2;
    this.numVcmdqs = 2 ** this.opts.vcmdqsLog2;
    this.lvcmdqsPerVintf = this.numVcmdqs / this.numVintfs;
    this.sidPairs = 2 ** this.opts.sidPairsLog2;
    this.regionSize = R.cmdqvRegionSize(this.numVintfs);
    this.config = this.opts.configReset;
    this.enabled = R.CONFIG_CMDQV_EN.isSet(this.config);
    // A VINTF may hold any LVCMDQ index the ALLOC field can name, up to the number of VCMDQs.
    this.vintfs = Array.from({ length: this.numVintfs }, (_, i) => new Vintf(i, this.sidPairs, Math.min(this.numVcmdqs, 128)));
    const smmu = deps.smmu;
    this.vcmdqs = Array.from({ length: this.numVcmdqs }, (_, q) => {
      let vq: Vcmdq | null = null;
      const cq = smmu.createCommandQueue({
        label: `vcmdq${q}`,
        maxLog2: smmu.opts.cmdqLog2,
        errorActive: () => vq!.errorActive,
        raiseError: (code) => this.raiseError(vq!, code),
        admit: (w) => this.admit(vq!, w),
        syncCs: this.opts.syncCs,
      }, this.opts.vcmdqService === 'arbiter');
      vq = new Vcmdq(q, cq);
      return vq;
    });
  }

  /** Connect (or with null remove) the wired interrupt. */
  connectIrq(out: IrqOutput | null): void {
    this.irq = out;
  }

  get cmdqvEnabled(): boolean {
    return this.enabled;
  }

  // ===========================================================================================
  // Execution state
  // ===========================================================================================

  /** Does VCMDQ q consume now? CMDQV, its VINTF and the queue enabled, and the queue mapped. */
  private runnable(vq: Vcmdq): boolean {
    if (!this.enabled || !vq.enOk || !vq.mapped) return false;
    const v = this.vintfs[vq.vintf];
    return v !== undefined && v.enableOk;
  }

  /** Re-evaluate one queue after a state change: start (kick) or stop it. */
  private refresh(vq: Vcmdq): void {
    const run = this.runnable(vq);
    if (run === vq.cq.enabled) return;
    if (run) {
      vq.cq.enabled = true;
      vq.cq.kick();
    } else {
      vq.cq.halt();
    }
  }

  private refreshAll(): void {
    for (const vq of this.vcmdqs) this.refresh(vq);
  }

  /** Admission of a command read from VCMDQ `vq`: the HYP_OWN=0 command set and replacements. */
  private admit(vq: Vcmdq, w: Uint32Array): number {
    const v = this.vintfs[vq.vintf];
    if (v.hypOwn) return 0;
    const op = F.CMD_OPCODE.get(w);
    if (this.opts.guestOpcodes[op] !== 1) {
      this.stats.refused++;
      if (log.enabled) log('%s %s: vcmdq%d (VINTF%d, HYP_OWN=0): opcode %s is not in the guest command set', vtime(this.scheduler.now), this.name, vq.index, v.index, hex(op));
      return this.opts.forbiddenCommandError;
    }
    if (VMID_OPCODES[op] === 1) F.CMD_TLBI_VMID.set(w, v.vmid);
    if (SID_OPCODES[op] === 1) {
      const vsid = F.CMD_STREAMID.get(w);
      const psid = vsid <= R.SID_MATCH_VIRT_SID.max ? v.replaceSid(vsid) : -1;
      if (psid < 0) {
        this.stats.refused++;
        if (log.enabled) log('%s %s: vcmdq%d (VINTF%d): StreamID %d matches no enabled SID_MATCH pair', vtime(this.scheduler.now), this.name, vq.index, v.index, vsid);
        return this.opts.unmatchedSidError;
      }
      F.CMD_STREAMID.set(w, psid);
    }
    return 0;
  }

  /** A VCMDQ entered error: toggle GERROR.CMDQ_ERR and interrupt unless the VINTF is masked. */
  private raiseError(vq: Vcmdq, code: number): void {
    this.stats.errors[code] = (this.stats.errors[code] ?? 0) + 1;
    if (!vq.errorActive) vq.gerror = (vq.gerror ^ R.VCMDQ_GERROR_CMDQ_ERR.mask) >>> 0;
    const v = vq.mapped ? vq.vintf : -1;
    const masked = v >= 0 && ((v < 32 ? this.viIntMask0 >>> v : this.viIntMask1 >>> (v - 32)) & 1) === 1;
    if (log.enabled) log('%s %s: vcmdq%d (VINTF%d LVCMDQ%d) error %d%s', vtime(this.scheduler.now), this.name, vq.index, v, vq.lidx, code, masked ? ' (interrupt masked)' : '');
    if (masked || this.irq === null) return;
    this.stats.irqs++;
    this.irq.raise();
  }

  // ===========================================================================================
  // MMIO
  // ===========================================================================================

  read32(offset: number): number {
    const v = this.access(offset, null);
    if (v === null) {
      if (log.enabled) log('%s %s: read of unknown offset %s reads 0', vtime(this.scheduler.now), this.name, hex(offset));
      return 0;
    }
    return v >>> 0;
  }

  write32(offset: number, value: number): void {
    if (this.access(offset, value >>> 0) === null) {
      if (log.enabled) log('%s %s: write of %s to %s ignored', vtime(this.scheduler.now), this.name, hex(value >>> 0), hex(offset));
    }
  }

  peek32(offset: number): number {
    return (this.access(offset, null) ?? 0) >>> 0;
  }

  read64(offset: number): bigint {
    const lo = this.read32(offset);
    const hi = this.read32(offset + 4);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  write64(offset: number, value: bigint): void {
    const v = BigInt.asUintN(64, value);
    // BASE is one register: the guard is evaluated once, for the high half first.
    this.write32(offset + 4, Number(v >> 32n));
    this.write32(offset, Number(v & 0xffff_ffffn));
  }

  /** One MMIO access: a read when `value` is null. Returns the value read, 0 for a write, null if unknown. */
  private access(offset: number, value: number | null): number | null {
    if (!Number.isInteger(offset) || offset < 0 || offset >= this.regionSize || offset % 4 !== 0) return null;
    const page = Math.floor(offset / R.CMDQV_PAGE_SIZE) * R.CMDQV_PAGE_SIZE;
    const off = offset - page;
    if (page === R.CMDQV_CONFIG_PAGE) return value === null ? this.readConfigPage(off) : this.writeConfigPage(off, value);
    if (page === R.VCMDQ_PAGE0_BASE || page === R.VCMDQ_PAGE1_BASE) {
      const q = Math.floor(off / R.VCMDQ_STRIDE);
      const vq = this.vcmdqs[q];
      if (vq === undefined) return null;
      return this.vcmdqAccess(vq, page === R.VCMDQ_PAGE1_BASE, off % R.VCMDQ_STRIDE, value);
    }
    const rel = page - R.VINTF_PAGE0_BASE;
    const vintf = this.vintfs[Math.floor(rel / R.VINTF_PAGE_STRIDE)];
    if (vintf === undefined) return null;
    return this.logicalAccess(vintf, rel % R.VINTF_PAGE_STRIDE !== 0, off, value);
  }

  /** A VINTF's logical page0/page1: the VCMDQ mapped to the LVCMDQ slot, or nothing. */
  private logicalAccess(vintf: Vintf, page1: boolean, off: number, value: number | null): number | null {
    const lidx = Math.floor(off / R.VCMDQ_STRIDE);
    const q = lidx < vintf.lvcmdq.length ? vintf.lvcmdq[lidx] : -1;
    if (q < 0) {
      if (value !== null) {
        this.stats.dropped++;
        if (log.enabled) log('%s %s: VINTF%d LVCMDQ%d: write of %s dropped, no VCMDQ mapped', vtime(this.scheduler.now), this.name, vintf.index, lidx, hex(value));
      }
      return 0;
    }
    return this.vcmdqAccess(this.vcmdqs[q], page1, off % R.VCMDQ_STRIDE, value);
  }

  /** The register at `offset` by its NVIDIA name, for traces (null: none there). */
  registerName(offset: number): string | null {
    return R.registerName(offset, this.numVintfs);
  }

  /** VINTF i's logical page0 as a device of its own (what a VMM maps into a guest). */
  vintfPage0(i: number): MmioDevice {
    const vintf = this.vintfs[i];
    if (vintf === undefined) throw new RangeError(`${this.name}: no VINTF ${i} (there are ${this.numVintfs})`);
    let dev = this.page0Views.get(i);
    if (dev === undefined) {
      const self = this;
      const name = `${this.name} VINTF${i} page0`;
      dev = {
        name,
        read32: (o) => (o >= 0 && o < R.CMDQV_PAGE_SIZE ? (self.logicalAccess(vintf, false, o, null) ?? 0) >>> 0 : 0),
        write32: (o, v) => {
          if (o >= 0 && o < R.CMDQV_PAGE_SIZE && o % 4 === 0) self.logicalAccess(vintf, false, o, v >>> 0);
          else if (log.enabled) log('%s %s: write to %s outside the page ignored', vtime(this.scheduler.now), name, hex(o));
        },
        peek32: (o) => (o >= 0 && o < R.CMDQV_PAGE_SIZE ? (self.logicalAccess(vintf, false, o, null) ?? 0) >>> 0 : 0),
        registerName: (o) => (o >= 0 && o < R.CMDQV_PAGE_SIZE ? R.registerName(R.VINTF_PAGE0_BASE + R.VINTF_PAGE_STRIDE * i + o, self.numVintfs) : null),
      };
      this.page0Views.set(i, dev);
    }
    return dev;
  }

  // ---- config page -----------------------------------------------------------------------------

  private param(): number {
    return (
      R.PARAM_CMDQV_VER.encode(this.opts.version) |
      R.PARAM_NUM_VCMDQ_LOG2.encode(this.opts.vcmdqsLog2) |
      R.PARAM_NUM_VINTF_LOG2.encode(this.opts.vintfsLog2) |
      R.PARAM_NUM_SID_PER_VM_LOG2.encode(this.opts.sidPairsLog2)
    ) >>> 0;
  }

  /** Bit `v` of a 64-bit VINTF map, half `half`. */
  private viErrMap(half: 0 | 1): number {
    let m = 0;
    for (const v of this.vintfs) {
      if ((v.index >> 5) !== half) continue;
      if (this.lvcmdqErrWord(v, 0) | this.lvcmdqErrWord(v, 1) | this.lvcmdqErrWord(v, 2) | this.lvcmdqErrWord(v, 3)) m |= 1 << (v.index & 31);
    }
    return m >>> 0;
  }

  /** Word w (32 LVCMDQs) of a VINTF's LVCMDQ_ERR_MAP. */
  private lvcmdqErrWord(v: Vintf, w: number): number {
    let m = 0;
    for (let l = w * 32; l < Math.min(v.lvcmdq.length, w * 32 + 32); l++) {
      const q = v.lvcmdq[l];
      if (q >= 0 && this.vcmdqs[q].errorActive) m |= 1 << (l & 31);
    }
    return m >>> 0;
  }

  private cmdqErrWord(w: number): number {
    let m = 0;
    for (let q = w * 32; q < Math.min(this.numVcmdqs, w * 32 + 32); q++) if (this.vcmdqs[q].errorActive) m |= 1 << (q & 31);
    return m >>> 0;
  }

  private readConfigPage(off: number): number | null {
    switch (off) {
      case R.CONFIG: return this.config;
      case R.PARAM: return this.param();
      case R.STATUS: return this.enabled ? R.STATUS_CMDQV_ENABLED.mask : 0;
      case R.VI_ERR_MAP_0: return this.viErrMap(0);
      case R.VI_ERR_MAP_1: return this.viErrMap(1);
      case R.VI_INT_MASK_0: return this.viIntMask0;
      case R.VI_INT_MASK_1: return this.viIntMask1;
      default:
        break;
    }
    if (off >= R.CMDQ_ERR_MAP_0 && off < R.CMDQ_ERR_MAP_0 + 4 * R.CMDQ_ERR_MAP_COUNT) return this.cmdqErrWord((off - R.CMDQ_ERR_MAP_0) / 4);
    if (off >= R.CMDQ_ALLOC_MAP_0 && off < R.CMDQ_ALLOC_MAP_0 + 4 * this.numVcmdqs) return this.vcmdqs[(off - R.CMDQ_ALLOC_MAP_0) / 4].alloc;
    if (off >= R.VINTF_BASE && off < R.VINTF_BASE + R.VINTF_STRIDE * this.numVintfs) {
      const v = this.vintfs[Math.floor((off - R.VINTF_BASE) / R.VINTF_STRIDE)];
      return this.readVintf(v, (off - R.VINTF_BASE) % R.VINTF_STRIDE);
    }
    return null;
  }

  private writeConfigPage(off: number, value: number): number | null {
    switch (off) {
      case R.CONFIG:
        this.writeConfig(value);
        return 0;
      case R.VI_INT_MASK_0:
        this.viIntMask0 = this.numVintfs >= 32 ? value : (value & ((1 << this.numVintfs) - 1)) >>> 0;
        return 0;
      case R.VI_INT_MASK_1:
        this.viIntMask1 = this.numVintfs > 32 ? (value & (2 ** (this.numVintfs - 32) - 1)) >>> 0 : 0;
        return 0;
      default:
        break;
    }
    if (off >= R.CMDQ_ALLOC_MAP_0 && off < R.CMDQ_ALLOC_MAP_0 + 4 * this.numVcmdqs) {
      this.writeAlloc(this.vcmdqs[(off - R.CMDQ_ALLOC_MAP_0) / 4], value);
      return 0;
    }
    if (off >= R.VINTF_BASE && off < R.VINTF_BASE + R.VINTF_STRIDE * this.numVintfs) {
      const v = this.vintfs[Math.floor((off - R.VINTF_BASE) / R.VINTF_STRIDE)];
      return this.writeVintf(v, (off - R.VINTF_BASE) % R.VINTF_STRIDE, value) ? 0 : null;
    }
    return null; // PARAM, STATUS and the error maps are read-only
  }

  /** CONFIG now; CMDQV_EN takes effect, and shows in STATUS, in a later step. */
  private writeConfig(value: number): void {
    this.config = (value & R.CONFIG_WRITABLE) >>> 0;
    this.configEvent?.cancel();
    this.configEvent = this.scheduler.schedule(this.regAckNs, () => {
      this.configEvent = null;
      this.enabled = R.CONFIG_CMDQV_EN.isSet(this.config);
      if (log.enabled) log('%s %s: CMDQV %s', vtime(this.scheduler.now), this.name, this.enabled ? 'enabled' : 'disabled');
      this.refreshAll();
    }, `${this.name} STATUS`);
  }

  private writeAlloc(vq: Vcmdq, value: number): void {
    const next = (value & R.CMDQ_ALLOC_WRITABLE) >>> 0;
    const drop = (why: string): void => {
      this.stats.dropped++;
      if (log.enabled) log('%s %s: CMDQ_ALLOC_MAP_%d = %s ignored: %s', vtime(this.scheduler.now), this.name, vq.index, hex(next), why);
    };
    if (R.VCMDQ_CONFIG_CMDQ_EN.isSet(vq.config) || vq.enOk) return drop('the VCMDQ is enabled');
    const wasMapped = vq.mapped;
    const nowMapped = R.CMDQ_ALLOC_ALLOCATED.isSet(next);
    const v = R.CMDQ_ALLOC_VINTF.get(next);
    const l = R.CMDQ_ALLOC_LVCMDQ.get(next);
    if (wasMapped && nowMapped) {
      if ((next ^ vq.alloc) !== 0) return drop('remapping an allocated VCMDQ needs an unmap first');
      return;
    }
    if (!wasMapped && !nowMapped) {
      vq.alloc = next;
      return;
    }
    const enforce = this.opts.allocOrder === 'enforce';
    if (nowMapped) {
      const vintf = this.vintfs[v];
      if (vintf === undefined) return drop(`there is no VINTF ${v}`);
      if (l >= vintf.lvcmdq.length) return drop(`LVCMDQ ${l} is beyond the ${vintf.lvcmdq.length} this CMDQV has`);
      if (vintf.lvcmdq[l] >= 0) return drop(`VINTF${v} LVCMDQ${l} is already vcmdq${vintf.lvcmdq[l]}`);
      if (enforce && l > 0 && vintf.lvcmdq[l - 1] < 0) return drop(`VINTF${v} LVCMDQ${l - 1} is not mapped (LVCMDQs map in ascending order)`);
      vq.alloc = next;
      vintf.lvcmdq[l] = vq.index;
    } else {
      const vintf = this.vintfs[vq.vintf];
      const ol = vq.lidx;
      if (enforce && ol + 1 < vintf.lvcmdq.length && vintf.lvcmdq[ol + 1] >= 0) {
        return drop(`VINTF${vintf.index} LVCMDQ${ol + 1} is still mapped (LVCMDQs unmap in descending order)`);
      }
      vintf.lvcmdq[ol] = -1;
      vq.alloc = next;
    }
    this.refresh(vq);
  }

  // ---- VINTF -----------------------------------------------------------------------------------

  private readVintf(v: Vintf, off: number): number | null {
    switch (off) {
      case R.VINTF_CONFIG: return v.config;
      case R.VINTF_STATUS: {
        let n = 0;
        for (const q of v.lvcmdq) if (q >= 0) n++;
        const err = this.lvcmdqErrWord(v, 0) | this.lvcmdqErrWord(v, 1) | this.lvcmdqErrWord(v, 2) | this.lvcmdqErrWord(v, 3);
        return (
          (v.enableOk ? R.VINTF_STATUS_ENABLE_OK.mask : 0) |
          (err !== 0 ? R.VINTF_STATUS_STATUS.encode(R.VINTF_STATUS_VCMDQ_ERR) : 0) |
          R.VINTF_STATUS_NUM_LVCMDQ.encode(Math.min(n, R.VINTF_STATUS_NUM_LVCMDQ.max))
        ) >>> 0;
      }
      case R.VINTF_GLB_FILT_CFG: return v.glbFiltCfg;
      case R.VINTF_GLB_FILT_DATA: return v.glbFiltData;
      default:
        break;
    }
    if (off >= R.VINTF_SID_MATCH_0 && off < R.VINTF_SID_MATCH_0 + 4 * R.VINTF_SID_PAIRS_MAX) {
      const s = (off - R.VINTF_SID_MATCH_0) / 4;
      return s < this.sidPairs ? v.sidMatch[s] : null;
    }
    if (off >= R.VINTF_SID_REPLACE_0 && off < R.VINTF_SID_REPLACE_0 + 4 * R.VINTF_SID_PAIRS_MAX) {
      const s = (off - R.VINTF_SID_REPLACE_0) / 4;
      return s < this.sidPairs ? v.sidReplace[s] : null;
    }
    if (off >= R.VINTF_LVCMDQ_ERR_MAP_0 && off < R.VINTF_LVCMDQ_ERR_MAP_0 + 16) return this.lvcmdqErrWord(v, (off - R.VINTF_LVCMDQ_ERR_MAP_0) / 4);
    return null;
  }

  private writeVintf(v: Vintf, off: number, value: number): boolean {
    switch (off) {
      case R.VINTF_CONFIG: {
        const w = (value & R.VINTF_CONFIG_WRITABLE & (this.opts.hypOwnWiredZero ? ~R.VINTF_CONFIG_HYP_OWN.mask : ~0)) >>> 0;
        // VMID and HYP_OWN latch only while the VINTF is disabled, or by the write that disables it
        // (the kernel's deinit writes 0, and the next owner must find the reset value); ENABLE is
        // always writable. Which writes real hardware accepts is not public (?).
        const settled = (!R.VINTF_CONFIG_ENABLE.isSet(v.config) && !v.enableOk) || !R.VINTF_CONFIG_ENABLE.isSet(w);
        const keep = settled ? 0 : R.VINTF_CONFIG_VMID.mask | R.VINTF_CONFIG_HYP_OWN.mask;
        if (!settled && ((w ^ v.config) & keep) !== 0) {
          this.stats.dropped++;
          if (log.enabled) log('%s %s: VINTF%d: VMID/HYP_OWN change ignored while enabled', vtime(this.scheduler.now), this.name, v.index);
        }
        v.config = ((v.config & keep) | (w & ~keep)) >>> 0;
        v.ackEvent?.cancel();
        v.ackEvent = this.scheduler.schedule(this.regAckNs, () => {
          v.ackEvent = null;
          v.enableOk = R.VINTF_CONFIG_ENABLE.isSet(v.config);
          if (log.enabled) log('%s %s: VINTF%d %s (VMID %d, HYP_OWN %d)', vtime(this.scheduler.now), this.name, v.index, v.enableOk ? 'enabled' : 'disabled', v.vmid, v.hypOwn ? 1 : 0);
          for (const q of v.lvcmdq) if (q >= 0) this.refresh(this.vcmdqs[q]);
        }, `${this.name} VINTF${v.index} STATUS`);
        return true;
      }
      case R.VINTF_GLB_FILT_CFG:
        v.glbFiltCfg = value;
        return true;
      case R.VINTF_GLB_FILT_DATA:
        v.glbFiltData = value;
        return true;
      default:
        break;
    }
    if (off >= R.VINTF_SID_MATCH_0 && off < R.VINTF_SID_MATCH_0 + 4 * this.sidPairs) {
      v.sidMatch[(off - R.VINTF_SID_MATCH_0) / 4] = (value & R.SID_MATCH_WRITABLE) >>> 0;
      return true;
    }
    if (off >= R.VINTF_SID_REPLACE_0 && off < R.VINTF_SID_REPLACE_0 + 4 * this.sidPairs) {
      v.sidReplace[(off - R.VINTF_SID_REPLACE_0) / 4] = (value & R.SID_REPLACE_PHYS_SID.mask) >>> 0;
      return true;
    }
    return false; // STATUS and LVCMDQ_ERR_MAP are read-only
  }

  // ---- VCMDQ -----------------------------------------------------------------------------------

  private vcmdqAccess(vq: Vcmdq, page1: boolean, off: number, value: number | null): number | null {
    const q = vq.cq.q;
    if (page1) {
      const guarded = R.VCMDQ_CONFIG_CMDQ_EN.isSet(vq.config) || vq.enOk;
      switch (off) {
        case R.VCMDQ_BASE:
          if (value === null) return q.baseLo;
          if (guarded) return this.guardDrop(vq, 'VCMDQ_BASE');
          q.baseLo = (value & (R.VCMDQ_BASE_ADDR_LO_MASK | R.VCMDQ_BASE_LOG2SIZE.mask)) >>> 0;
          return 0;
        case R.VCMDQ_BASE + 4:
          if (value === null) return q.baseHi;
          if (guarded) return this.guardDrop(vq, 'VCMDQ_BASE');
          q.baseHi = (value & R.VCMDQ_BASE_ADDR_HI_MASK) >>> 0;
          return 0;
        case R.VCMDQ_CONS_INDX_BASE:
          if (value === null) return vq.consIndxBaseLo;
          vq.consIndxBaseLo = value;
          return 0;
        case R.VCMDQ_CONS_INDX_BASE + 4:
          if (value === null) return vq.consIndxBaseHi;
          vq.consIndxBaseHi = (value & R.VCMDQ_CONS_INDX_BASE_HI_MASK) >>> 0;
          return 0;
        default:
          return null;
      }
    }
    switch (off) {
      case R.VCMDQ_CONS:
        if (value === null) return vq.cq.consRegister;
        if (R.VCMDQ_CONFIG_CMDQ_EN.isSet(vq.config) || vq.enOk) return this.guardDrop(vq, 'VCMDQ_CONS');
        q.cons = (value & (R.VCMDQ_CONS_RD.mask | R.VCMDQ_CONS_ERR.mask)) >>> 0;
        return 0;
      case R.VCMDQ_PROD:
        if (value === null) return q.prod & R.VCMDQ_PROD_WR.mask;
        q.prod = (value & R.VCMDQ_PROD_WR.mask) >>> 0;
        vq.cq.kick();
        return 0;
      case R.VCMDQ_CONFIG:
        if (value === null) return vq.config;
        this.writeVcmdqConfig(vq, value);
        return 0;
      case R.VCMDQ_STATUS:
        if (value === null) return vq.enOk ? R.VCMDQ_STATUS_CMDQ_EN_OK.mask : 0;
        return null;
      case R.VCMDQ_GERROR:
        if (value === null) return vq.gerror;
        return null;
      case R.VCMDQ_GERRORN:
        if (value === null) return vq.gerrorn;
        this.writeGerrorn(vq, value);
        return 0;
      default:
        return null;
    }
  }

  private guardDrop(vq: Vcmdq, reg: string): number {
    this.stats.dropped++;
    if (log.enabled) log('%s %s: vcmdq%d: %s write ignored while the queue is enabled', vtime(this.scheduler.now), this.name, vq.index, reg);
    return 0;
  }

  private writeVcmdqConfig(vq: Vcmdq, value: number): void {
    vq.config = (value & R.VCMDQ_CONFIG_CMDQ_EN.mask) >>> 0;
    vq.ackEvent?.cancel();
    vq.ackEvent = this.scheduler.schedule(this.regAckNs, () => {
      vq.ackEvent = null;
      vq.enOk = R.VCMDQ_CONFIG_CMDQ_EN.isSet(vq.config);
      this.refresh(vq);
    }, `${this.name} vcmdq${vq.index} STATUS`);
  }

  private writeGerrorn(vq: Vcmdq, value: number): void {
    const wasActive = vq.errorActive;
    vq.gerrorn = (value & R.VCMDQ_GERROR_BITS) >>> 0;
    if (wasActive && !vq.errorActive) vq.cq.resumeAfterError();
  }

  // ===========================================================================================
  // Inspection (tests, boot reports)
  // ===========================================================================================

  /** The queue's base address and size as programmed (for reports). */
  vcmdqInfo(q: number): { base: number; log2size: number; prod: number; cons: number; enabled: boolean; mapped: boolean; vintf: number; lidx: number; error: number } {
    const vq = this.vcmdqs[q];
    if (vq === undefined) throw new RangeError(`${this.name}: no VCMDQ ${q}`);
    const sq = vq.cq.q;
    return {
      base: join64(sq.baseLo & R.VCMDQ_BASE_ADDR_LO_MASK, sq.baseHi & R.VCMDQ_BASE_ADDR_HI_MASK),
      log2size: sq.log2size,
      prod: sq.prod,
      cons: vq.cq.consRegister,
      enabled: vq.enOk,
      mapped: vq.mapped,
      vintf: vq.mapped ? vq.vintf : -1,
      lidx: vq.mapped ? vq.lidx : -1,
      error: R.VCMDQ_CONS_ERR.get(vq.cq.consRegister),
    };
  }
}
