/**
 * Arm SMMU architecture v1/v2 model (MMU-401, MMU-500, Qualcomm SMMU-500, generic v1/v2): the MMIO
 * register file and the DMA port its masters submit to.
 *
 * Supports:
 * - the register space laid out by ID1.PAGESIZE and NUMPAGENDXB: GR0 (page 0), GR1 (page 1), context
 *   bank n at page NUMPAGE + n; 32- and 64-bit accesses (a 64-bit command register also takes its
 *   high word then its low word as two 32-bit writes); unknown offsets read as zero and ignore
 *   writes (logged under `iommu:hw:smmu-v2`), never throw; `peek32` reads without side effects;
 * - sCR0 with its reset state (CLIENTPD from the construction options; SMCFCFG reads 1 on SMMUv2;
 *   GCFGFRE/GCFGFIE only where implemented; EXIDENABLE/VMID16EN only with EXIDS/VMID16), ID0-ID2
 *   and ID7 from the construction options (read-only), sACR and ACTLR storage with the MMU-500
 *   reset values, sGFSR/FSR write-1-to-clear and their RESTORE registers, GR1 CBAR (TYPE fixed to
 *   stage 2 for the NUMS2CB stage-2-only banks, IRPTNDX on SMMUv1 only), CBFRSYNRA (read-only),
 *   CBA2R (SMMUv2 only), TCR2 (SMMUv2 only);
 * - the parts: stream matching (stream-match.ts), bank decode (context-bank.ts), translation and
 *   TLB (translate.ts, tlb.ts), TLB maintenance (maintenance.ts), ATS1* (ats.ts), faults and
 *   interrupts (faults.ts), stall and RESUME (stalls.ts), the DMA path (transactions.ts).
 * Does not support: the secure interface and its aliases (including the Calxeda secure-alias
 * registers at GR0 + 0x400), the GATS block, the PMU and SSD pages (read as zero), broadcast TLB
 * maintenance from CPUs (sCR0.PTM/VMIDPNE/FB/BSU are stored without effect), memory attribute and
 * shareability overrides.
 */
import { vtime } from '../vtime.js';
import createDebug from 'debug';
import type { DmaDone, DmaPort, DmaRequest } from '../dma.js';
import type { MmioDevice } from '../mmio.js';
import type { Scheduler } from '../scheduler.js';
import type { Trace } from '../trace.js';
import type { WalkMemory } from '../walker/index.js';
import { TranslationTableWalker } from '../walker/index.js';
import { AddressTranslationOps } from './ats.js';
import type { ContextBank } from './context-bank.js';
import type { IrqLevels, SmmuV2Irqs } from './faults.js';
import { IrqOutputs } from './faults.js';
import { TlbMaintenance } from './maintenance.js';
import type { IdRegisters, SmmuV2Options, SmmuV2OptionsInput } from './options.js';
import { idRegisters, isMmu500, resolveOptions } from './options.js';
import * as R from './regs.js';
import { SmmuLayout } from './regs.js';
import type { SmmuV2Stats } from './state.js';
import { SmmuV2State } from './state.js';
import type { Tlb } from './tlb.js';
import { TransactionEngine } from './transactions.js';
import { Translator } from './translate.js';

export type { SmmuV2Stats } from './state.js';

const log = createDebug('iommu:hw:smmu-v2');

/** A 64-bit register value and its two 32-bit words (the low one first on a little-endian host). */
const SCRATCH64 = new BigUint64Array(1);
const SCRATCH32 = new Uint32Array(SCRATCH64.buffer);
const WORD_LO = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1 ? 0 : 1;
const hex = (v: number): string => `0x${v.toString(16)}`;

/** What the machine gives the model. */
export interface SmmuV2Deps {
  /** DT path of the SMMU node (names it in traces, logs and errors). */
  name: string;
  scheduler: Scheduler;
  /** Where table walks read descriptors (physical memory). */
  memory: WalkMemory;
  /** Where translated and bypassed transactions go (the interconnect). */
  downstream: DmaPort;
  /** Interrupt outputs; omitted lines are simply not signalled. */
  irqs?: SmmuV2Irqs;
  trace?: Trace;
}

const SCTLR_IMPLEMENTED =
  R.SCTLR.M.mask |
  R.SCTLR.TRE.mask |
  R.SCTLR.AFE.mask |
  R.SCTLR.AFFD.mask |
  R.SCTLR.E.mask |
  R.SCTLR.CFRE.mask |
  R.SCTLR.CFIE.mask |
  R.SCTLR.CFCFG.mask |
  R.SCTLR.HUPCF.mask |
  R.SCTLR.WXN.mask |
  R.SCTLR.UWXN.mask |
  R.SCTLR.ASIDPNE.mask |
  R.SCTLR.TRANSIENTCFG.mask |
  R.SCTLR.MemAttr.mask |
  R.SCTLR.MTCFG.mask |
  R.SCTLR.FB.mask |
  R.SCTLR.SHCFG.mask |
  R.SCTLR.RACFG.mask |
  R.SCTLR.WACFG.mask |
  R.SCTLR.NSCFG.mask;

export class SmmuV2 implements MmioDevice, DmaPort {
  readonly name: string;
  readonly options: SmmuV2Options;
  readonly layout: SmmuLayout;
  readonly ids: IdRegisters;
  readonly version: 1 | 2;

  private readonly s: SmmuV2State;
  private readonly engine: TransactionEngine;
  private readonly maintenance: TlbMaintenance;
  private readonly ats: AddressTranslationOps;
  private readonly scr0Writable: number;
  private readonly scr0Fixed: number;
  // The layout's figures the register dispatch uses on every access.
  private readonly pageSize: number;
  private readonly pgshift: number;
  private readonly pageMask: number;
  private readonly cbBase: number;
  private readonly regSize: number;

  constructor(deps: SmmuV2Deps, options: SmmuV2OptionsInput) {
    const o = resolveOptions(options);
    this.options = o;
    this.name = deps.name;
    this.layout = new SmmuLayout(o.pageSize64k, o.numPageNdxb);
    this.pageSize = this.layout.pageSize;
    this.pgshift = this.layout.pgshift;
    this.pageMask = this.layout.pageSize - 1;
    this.cbBase = this.layout.cbBase;
    this.regSize = this.layout.size;
    this.ids = idRegisters(o);
    const s = new SmmuV2State(deps.name, o, deps.scheduler, deps.trace ?? null);
    this.s = s;
    this.version = s.version;
    const levels: IrqLevels = {
      global: () => s.globalIrqLevel(),
      context: (line: number) => s.contextIrqLevel(line),
    };
    s.irq = new IrqOutputs(deps.scheduler, deps.irqs ?? { global: [], context: [] }, o.timing.irqNs, levels, deps.name);
    const translator = new Translator(new TranslationTableWalker(deps.memory), s.tlb);
    this.engine = new TransactionEngine(s, translator, deps.downstream);
    this.maintenance = new TlbMaintenance(s);
    this.ats = new AddressTranslationOps(s, translator);

    let writable =
      R.sCR0.CLIENTPD.mask |
      R.sCR0.GFRE.mask |
      R.sCR0.GFIE.mask |
      R.sCR0.TRANSIENTCFG.mask |
      R.sCR0.USFCFG.mask |
      R.sCR0.VMIDPNE.mask |
      R.sCR0.PTM.mask |
      R.sCR0.FB.mask |
      R.sCR0.BSU.mask |
      R.sCR0.MemAttr.mask |
      R.sCR0.MTCFG.mask |
      R.sCR0.SHCFG.mask |
      R.sCR0.RACFG.mask |
      R.sCR0.WACFG.mask |
      R.sCR0.NSCFG.mask;
    if (o.exids) writable |= R.sCR0.EXIDENABLE.mask;
    if (o.globalConfigFaultControls) writable |= R.sCR0.GCFGFRE.mask | R.sCR0.GCFGFIE.mask;
    if (o.vmid16) writable |= R.sCR0.VMID16EN.mask;
    this.scr0Writable = writable >>> 0;
    // Two SMRs matching one StreamID always raise SMCF here: SMCFCFG reads as 1 (fixed on MMU-500).
    this.scr0Fixed = this.version === 2 ? R.sCR0.SMCFCFG.mask : 0;
    this.reset();
  }

  /**
   * Reset: every register to its reset value and the TLB empty. Transactions held (stalled or
   * waiting) are dropped with an abort, as a reset of the SMMU loses them.
   */
  reset(): void {
    const s = this.s;
    s.scr0 = ((this.options.clientPdAtReset ? R.sCR0.CLIENTPD.mask : 0) | this.scr0Fixed) >>> 0;
    s.sacr = isMmu500(this.options.model) ? R.sACR.CACHE_LOCK.mask : 0;
    s.gfault.reset();
    s.streams.reset();
    for (const b of s.banks) b.reset();
    this.maintenance.reset();
    s.tlb.flushAll();
    s.irq.reset();
    s.cfgGen++;
    this.engine.dropHeld(`${this.name} was reset while it held the transaction`);
  }

  /** The DMA port: a client transaction enters the SMMU. */
  submit(req: DmaRequest, done: DmaDone): void {
    this.engine.submit(req, done);
  }

  /** Tell the model whether a master tolerates stalled transactions (from `dma-can-stall`). */
  setMasterCanStall(master: string, canStall: boolean): void {
    this.engine.setMasterCanStall(master, canStall);
  }

  /** Size of the register space (2 x NUMPAGE pages). */
  get size(): number {
    return this.layout.size;
  }

  get tlb(): Tlb {
    return this.s.tlb;
  }

  get stats(): SmmuV2Stats {
    return this.s.stats;
  }

  /** Transactions currently stalled in bank `n` (for tests and reports). */
  stalledCount(n: number): number {
    return this.s.stallStates[n]?.stalled.length ?? 0;
  }

  /** Transactions of bank `n` waiting behind a stall. */
  waitingCount(n: number): number {
    return this.s.stallStates[n]?.waiting.length ?? 0;
  }

  // ------------------------------------------------------------------------------------------
  // MMIO
  // ------------------------------------------------------------------------------------------

  /** The spec's name of a register, for traces (MmioDevice). */
  registerName(offset: number): string | null {
    return R.registerName(offset, this.layout.pageSize, this.layout.cbBase);
  }

  read32(offset: number): number {
    return this.readReg(offset, true);
  }

  peek32(offset: number): number {
    return this.readReg(offset, false);
  }

  read64(offset: number): bigint {
    const lo = this.readReg(offset, true);
    const hi = this.readReg(offset + 4, true);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  write32(offset: number, value: number): void {
    const v = value >>> 0;
    const cb = offset - this.cbBase;
    if (cb >= 0) {
      // Context bank pages first: the driver's per-operation traffic (TLBI, TLBSYNC) lands there.
      const n = cb >>> this.pgshift;
      if (offset < this.regSize && n < this.s.banks.length) this.cbWrite(this.s.banks[n], cb & this.pageMask, v);
      else this.unknown('write', offset, v);
    } else if (offset < this.pageSize) this.gr0Write(offset, v);
    else if (offset < 2 * this.pageSize) this.gr1Write(offset - this.pageSize, v);
    else this.unknown('write', offset, v);
  }

  write64(offset: number, value: bigint): void {
    // The halves of value mod 2^64 through the scratch view: BigInt arithmetic allocates per operation.
    SCRATCH64[0] = value;
    const lo = SCRATCH32[WORD_LO];
    const hi = SCRATCH32[WORD_LO ^ 1];
    const cb = offset - this.cbBase;
    if (cb >= 0 && offset < this.regSize) {
      const n = cb >>> this.pgshift;
      const reg = cb & this.pageMask;
      if (n < this.s.banks.length && isCommand64(reg)) {
        this.cbCommand(this.s.banks[n], reg, lo, hi);
        return;
      }
    }
    this.write32(offset, lo);
    this.write32(offset + 4, hi);
  }

  private unknown(op: 'read' | 'write', offset: number, value = 0): void {
    if (log.enabled) log('%s %s: %s of unknown offset %s%s ignored', vtime(this.s.scheduler.now), this.s.name, op, hex(offset), op === 'write' ? ` (value ${hex(value)})` : '');
  }

  private readReg(offset: number, logUnknown: boolean): number {
    let v: number | null = null;
    const cb = offset - this.cbBase;
    if (cb >= 0) {
      const n = cb >>> this.pgshift;
      if (offset < this.regSize && n < this.s.banks.length) v = this.cbRead(this.s.banks[n], cb & this.pageMask);
    } else if (offset < this.pageSize) v = this.gr0Read(offset);
    else if (offset < 2 * this.pageSize) v = this.gr1Read(offset - this.pageSize);
    if (v === null) {
      if (logUnknown) this.unknown('read', offset);
      return 0;
    }
    return v >>> 0;
  }

  private gr0Read(off: number): number | null {
    switch (off) {
      case R.SCR0:
        return this.s.scr0;
      case R.SACR:
        return this.s.sacr;
      case R.IDR0:
        return this.ids.id0;
      case R.IDR1:
        return this.ids.id1;
      case R.IDR2:
        return this.ids.id2;
      case R.IDR3:
      case R.IDR4:
      case R.IDR5:
      case R.IDR6:
        return 0;
      case R.IDR7:
        return this.ids.id7;
      case R.SGFAR:
        return this.s.gfault.sgfarLo;
      case R.SGFAR + 4:
        return this.s.gfault.sgfarHi;
      case R.SGFSR:
        return this.s.gfault.sgfsr;
      case R.SGFSYNR0:
        return this.s.gfault.sgfsynr0;
      case R.SGFSYNR1:
        return this.s.gfault.sgfsynr1;
      case R.SGFSYNR2:
        return this.s.gfault.sgfsynr2;
      case R.STLBGSTATUS:
        return this.maintenance.globalSyncActive ? R.sTLBGSTATUS.GSACTIVE.mask : 0;
      case R.SGFSRRESTORE:
      case R.TLBIVMID:
      case R.TLBIALLNSNH:
      case R.TLBIALLH:
      case R.STLBGSYNC:
        return 0; // write-only
    }
    const g = this.s.streams.groups;
    if (off >= R.SMR_BASE && off < R.SMR_BASE + 4 * g && this.s.options.streamMatch) return this.s.streams.smr[(off - R.SMR_BASE) >> 2];
    if (off >= R.S2CR_BASE && off < R.S2CR_BASE + 4 * g) return this.s.streams.s2cr[(off - R.S2CR_BASE) >> 2];
    return null;
  }

  private gr0Write(off: number, v: number): void {
    switch (off) {
      case R.SCR0:
        this.writeScr0(v);
        return;
      case R.SACR:
        this.s.sacr = v;
        return;
      case R.SGFAR:
        this.s.gfault.sgfarLo = v;
        return;
      case R.SGFAR + 4:
        this.s.gfault.sgfarHi = v;
        return;
      case R.SGFSR:
        this.s.gfault.sgfsr = (this.s.gfault.sgfsr & ~v) >>> 0;
        this.s.irq.kickGlobal();
        return;
      case R.SGFSRRESTORE:
        this.s.gfault.sgfsr = (v & (R.SGFSR_FAULT_BITS | R.sGFSR.MULTI.mask)) >>> 0;
        this.s.irq.update();
        return;
      case R.SGFSYNR0:
        this.s.gfault.sgfsynr0 = v;
        return;
      case R.SGFSYNR1:
        this.s.gfault.sgfsynr1 = v;
        return;
      case R.SGFSYNR2:
        this.s.gfault.sgfsynr2 = v;
        return;
      case R.TLBIVMID:
        this.maintenance.tlbiVmid(v);
        return;
      case R.TLBIALLNSNH:
        this.maintenance.tlbiAllNsNh();
        return;
      case R.TLBIALLH:
        this.maintenance.tlbiAllH();
        return;
      case R.STLBGSYNC:
        this.maintenance.globalSync();
        return;
      case R.IDR0:
      case R.IDR1:
      case R.IDR2:
      case R.IDR3:
      case R.IDR4:
      case R.IDR5:
      case R.IDR6:
      case R.IDR7:
      case R.STLBGSTATUS:
        if (log.enabled) log('%s %s: write %s to read-only GR0 offset %s ignored', vtime(this.s.scheduler.now), this.s.name, hex(v), hex(off));
        return;
    }
    const g = this.s.streams.groups;
    if (off >= R.SMR_BASE && off < R.SMR_BASE + 4 * g && this.s.options.streamMatch) {
      this.s.streams.writeSmr((off - R.SMR_BASE) >> 2, v);
      return;
    }
    if (off >= R.S2CR_BASE && off < R.S2CR_BASE + 4 * g) {
      this.s.streams.writeS2cr((off - R.S2CR_BASE) >> 2, v);
      return;
    }
    this.unknown('write', off, v);
  }

  private writeScr0(v: number): void {
    this.s.scr0 = ((v & this.scr0Writable) | this.scr0Fixed) >>> 0;
    this.s.streams.setExidEnable(R.sCR0.EXIDENABLE.isSet(this.s.scr0));
    this.s.cfgGen++;
    this.s.irq.update();
  }

  private gr1Read(off: number): number | null {
    const n = this.s.banks.length;
    if (off < R.CBFRSYNRA_BASE) return off >> 2 < n ? this.s.banks[off >> 2].cbar : null;
    if (off < R.CBA2R_BASE) {
      const i = (off - R.CBFRSYNRA_BASE) >> 2;
      return i < n ? this.s.banks[i].cbfrsynra : null;
    }
    if (off < R.CBA2R_BASE + 0x400 && this.s.version === 2) {
      const i = (off - R.CBA2R_BASE) >> 2;
      return i < n ? this.s.banks[i].cba2r : null;
    }
    return null;
  }

  private gr1Write(off: number, v: number): void {
    const n = this.s.banks.length;
    if (off < R.CBFRSYNRA_BASE && off >> 2 < n) {
      const b = this.s.banks[off >> 2];
      let cbar = v;
      if (b.index < this.s.options.numS2Cb) cbar = R.CBAR.TYPE.set(cbar, R.CBAR_TYPE_S2_TRANS);
      if (this.s.version === 2) cbar &= ~R.CBAR.IRPTNDX.mask;
      b.cbar = cbar >>> 0;
      this.s.cfgGen++;
      this.s.irq.update();
      return;
    }
    if (off >= R.CBFRSYNRA_BASE && off < R.CBA2R_BASE && (off - R.CBFRSYNRA_BASE) >> 2 < n) {
      if (log.enabled) log('%s %s: CBFRSYNRA is read-only: write ignored', vtime(this.s.scheduler.now), this.s.name);
      return;
    }
    if (off >= R.CBA2R_BASE && off < R.CBA2R_BASE + 0x400 && (off - R.CBA2R_BASE) >> 2 < n && this.s.version === 2) {
      const mask = R.CBA2R.VA64.mask | R.CBA2R.MONC.mask | (this.s.options.vmid16 ? R.CBA2R.VMID16.mask : 0);
      this.s.banks[(off - R.CBA2R_BASE) >> 2].cba2r = (v & mask) >>> 0;
      this.s.cfgGen++;
      return;
    }
    this.unknown('write', this.layout.pageSize + off, v);
  }

  // The switches below are compare chains in the order written: the registers a driver touches per
  // operation (TLBSTATUS polled after every TLBSYNC, the TLBIs, RESUME and FSR of the fault path) come
  // first.
  private cbRead(b: ContextBank, off: number): number | null {
    switch (off) {
      case R.CB_TLBSTATUS:
        return b.syncsInFlight > 0 ? R.TLBSTATUS.SACTIVE.mask : 0;
      case R.CB_FSR:
        return b.fsr;
      case R.CB_SCTLR:
        return b.sctlr;
      case R.CB_ACTLR:
        return b.actlr;
      case R.CB_RESUME:
        return 0;
      case R.CB_TCR2:
        return this.s.version === 2 ? b.tcr2 : 0;
      case R.CB_TTBR0:
        return b.ttbr0Lo;
      case R.CB_TTBR0 + 4:
        return b.ttbr0Hi;
      case R.CB_TTBR1:
        return b.ttbr1Lo;
      case R.CB_TTBR1 + 4:
        return b.ttbr1Hi;
      case R.CB_TCR:
        return b.tcr;
      case R.CB_CONTEXTIDR:
        return b.contextidr;
      case R.CB_MAIR0:
        return b.mair0;
      case R.CB_MAIR1:
        return b.mair1;
      case R.CB_PAR:
        return b.parLo;
      case R.CB_PAR + 4:
        return b.parHi;
      case R.CB_FAR:
        return b.farLo;
      case R.CB_FAR + 4:
        return b.farHi;
      case R.CB_FSYNR0:
        return b.fsynr0;
      case R.CB_FSYNR1:
        return b.fsynr1;
      case R.CB_IPAFAR:
        return b.ipafarLo;
      case R.CB_IPAFAR + 4:
        return b.ipafarHi;
      case R.CB_ATSR:
        return b.atsActive ? R.ATSR.ACTIVE.mask : 0;
      case R.CB_FSRRESTORE:
      case R.CB_TLBIASID:
      case R.CB_TLBIALL:
      case R.CB_TLBSYNC:
        return 0; // write-only
    }
    if (isCommand64(off) || isCommand64(off - 4)) return 0; // write-only
    return null;
  }

  private cbWrite(b: ContextBank, off: number, v: number): void {
    switch (off) {
      case R.CB_TLBSYNC:
        this.maintenance.bankSync(b);
        return;
      case R.CB_FSR:
        this.writeFsr(b, v);
        return;
      case R.CB_RESUME:
        this.engine.resume(b, R.RESUME.TnR.isSet(v));
        return;
      case R.CB_SCTLR:
        b.sctlr = (v & SCTLR_IMPLEMENTED) >>> 0;
        this.s.cfgGen++;
        this.s.irq.update();
        return;
      case R.CB_ACTLR:
        b.actlr = v;
        return;
      case R.CB_TCR2:
        if (this.s.version === 2) {
          b.tcr2 = v;
          this.s.cfgGen++;
        } else this.unknown('write', off, v);
        return;
      case R.CB_TTBR0:
        b.ttbr0Lo = v;
        this.s.cfgGen++;
        return;
      case R.CB_TTBR0 + 4:
        b.ttbr0Hi = v;
        this.s.cfgGen++;
        return;
      case R.CB_TTBR1:
        b.ttbr1Lo = v;
        this.s.cfgGen++;
        return;
      case R.CB_TTBR1 + 4:
        b.ttbr1Hi = v;
        this.s.cfgGen++;
        return;
      case R.CB_TCR:
        b.tcr = v;
        this.s.cfgGen++;
        return;
      case R.CB_CONTEXTIDR:
        b.contextidr = v;
        return;
      case R.CB_MAIR0:
        b.mair0 = v;
        return;
      case R.CB_MAIR1:
        b.mair1 = v;
        return;
      case R.CB_PAR:
        b.parLo = v;
        return;
      case R.CB_PAR + 4:
        b.parHi = v;
        return;
      case R.CB_FSRRESTORE:
        b.fsr = (v & (R.FSR_FAULT_BITS | R.FSR.MULTI.mask | R.FSR.SS.mask | R.FSR.FORMAT.mask)) >>> 0;
        this.s.irq.update();
        return;
      case R.CB_FAR:
        b.farLo = v;
        return;
      case R.CB_FAR + 4:
        b.farHi = v;
        return;
      case R.CB_FSYNR0:
        b.fsynr0 = v;
        return;
      case R.CB_FSYNR1:
        b.fsynr1 = v;
        return;
      case R.CB_IPAFAR:
        b.ipafarLo = v;
        return;
      case R.CB_IPAFAR + 4:
        b.ipafarHi = v;
        return;
      case R.CB_TLBIASID:
        this.maintenance.tlbiAsid(b, v);
        return;
      case R.CB_TLBIALL:
        this.maintenance.tlbiAll(b);
        return;
      case R.CB_TLBSTATUS:
      case R.CB_ATSR:
        if (log.enabled) log('%s %s: write to read-only context bank %d offset %s ignored', vtime(this.s.scheduler.now), this.s.name, b.index, hex(off));
        return;
    }
    if (isCommand64(off)) {
      // A 32-bit write of the low word starts the operation with the high word latched before.
      const hi = b.cmdHi;
      b.cmdHi = 0;
      this.cbCommand(b, off, v, hi);
      return;
    }
    if (isCommand64(off - 4)) {
      b.cmdHi = v;
      return;
    }
    this.unknown('write', this.layout.cbBase + b.index * this.layout.pageSize + off, v);
  }

  private writeFsr(b: ContextBank, v: number): void {
    // Write-1-to-clear. SS mirrors the stall: it clears when RESUME retires the stalled transactions.
    let fsr = b.fsr & ~(v & (R.FSR_FAULT_BITS | R.FSR.MULTI.mask));
    if (R.FSR.SS.isSet(v) && this.s.stallStates[b.index].stalled.length === 0) fsr &= ~R.FSR.SS.mask;
    if ((fsr & (R.FSR_FAULT_BITS | R.FSR.MULTI.mask)) === 0) fsr &= ~R.FSR.FORMAT.mask;
    b.fsr = fsr >>> 0;
    this.s.irq.kickContext(this.s.contextLineOf(b));
  }

  private cbCommand(b: ContextBank, reg: number, lo: number, hi: number): void {
    switch (reg) {
      case R.CB_TLBIVA:
      case R.CB_TLBIVAL:
        this.maintenance.tlbiVa(b, lo, hi);
        return;
      case R.CB_TLBIVAA:
      case R.CB_TLBIVAAL:
        this.maintenance.tlbiVaa(b, lo, hi);
        return;
      case R.CB_TLBIIPAS2:
      case R.CB_TLBIIPAS2L:
        this.maintenance.tlbiIpa(b, lo, hi);
        return;
      case R.CB_ATS1PR:
      case R.CB_ATS1PW:
      case R.CB_ATS1UR:
      case R.CB_ATS1UW:
        this.ats.start(b, reg, lo, hi);
        return;
    }
  }
}

/** The 64-bit command registers of a context bank (written as one 64-bit or two 32-bit accesses). */
function isCommand64(off: number): boolean {
  switch (off) {
    case R.CB_TLBIVAL:
    case R.CB_TLBIVA:
    case R.CB_TLBIVAA:
    case R.CB_TLBIVAAL:
    case R.CB_TLBIIPAS2:
    case R.CB_TLBIIPAS2L:
    case R.CB_ATS1PR:
    case R.CB_ATS1PW:
    case R.CB_ATS1UR:
    case R.CB_ATS1UW:
      return true;
  }
  return false;
}
