/**
 * An Arm SMMUv3 (Non-secure programming interface): the register file of pages 0 and 1 behind one
 * MMIO handler, the DMA port its upstream masters submit to (the work is in transactions.ts), and
 * the wiring of the units that do the work (configuration caches, TLB, walker, Command/Event/PRI
 * queues, interrupts, stalls).
 *
 * Supports:
 * - registers: IDR0-5/IIDR/AIDR from construction options; CR0 whose enables take effect (and
 *   show in CR0ACK) only in a later scheduler step; CR1; CR2; GBPA with the UPDATE handshake,
 *   its reset value a construction option, ABORT honoured while SMMUEN == 0; IRQ_CTRL/IRQ_CTRLACK;
 *   GERROR/GERRORN; the *_IRQ_CFG0/1/2 MSI registers; STRTAB_BASE/_CFG; CMDQ/EVENTQ/PRIQ
 *   BASE/PROD/CONS (PROD/CONS of the output queues also at their page 1 offsets); 32- and 64-bit
 *   access to the 64-bit registers; writes to guarded registers (STRTAB_* while SMMUEN, a queue's
 *   BASE/pointers while it is enabled, CR1.TABLE_* while SMMUEN and CR1.QUEUE_* while any queue is
 *   enabled, CR2 while SMMUEN) ignored;
 *   unknown offsets read as zero and ignore writes (logged on `iommu:hw:smmu-v3`); `peek32`.
 * - the DMA port (DmaPort.submit/translate/pageRequest): delegated to the transaction engine
 *   (transactions.ts: GBPA, translation, faults and stalls, ATS Translated transactions, ATS
 *   Translation Requests, Page Requests into the PRI queue); ATC invalidations and PRG responses
 *   back to the endpoint bound to a StreamID (DmaPort.bindEndpoint).
 * - caches: configuration caches, the TLB and per-stage, per-level walk caches (option `walkCache`,
 *   on by default; see tlb.ts); the Access flag per CD.AFFD / STE.S2AFFD, or updated by hardware
 *   with CD.HA / STE.S2HA when built with `httu: 1` (spec 3.13, 5.2, 5.4; see config.ts).
 * Does not support: the Secure/Realm interfaces, VATOS/ATOS, PMCG, MPAM, dirty state update (HTTU 2),
 * event merging, memory-attribute overrides (MTCFG/MemAttr/SHCFG are decoded but do not change the
 * access; IDR1.ATTR_TYPES_OVR reads 0 by default).
 */
import { vtime } from '../vtime.js';
import createDebug from 'debug';
import type { AtsCompletion, AtsEndpoint, AtsRequest, DmaDone, DmaPort, DmaRequest, PageRequest } from '../dma.js';
import type { MmioDevice } from '../mmio.js';
import type { Scheduler } from '../scheduler.js';
import type { Trace } from '../trace.js';
import { ACCESS_INSTR, ACCESS_PRIV, ACCESS_WRITE } from '../walker/result.js';
import { TranslationTableWalker } from '../walker/walker.js';
import { CommandQueue, type CommandContext, type CommandEngine, type CommandQueueHooks } from './cmdq.js';
import { ConfigCache } from './config.js';
import { EventQueue, type QueueMemory } from './events.js';
import { Interrupts, type IrqOutput, type SmmuV3IrqName } from './interrupts.js';
import { idRegisters, type IdRegisters, type ResolvedOptions, resolveOptions, type SmmuV3Options } from './options.js';
import { Outcome } from './outcome.js';
import { PriQueue } from './priq.js';
import { SmmuQueue } from './queue.js';
import * as R from './regs.js';
import { StallTracker } from './stalls.js';
import { Tlb } from './tlb.js';
import { TransactionEngine, type SmmuV3Stats, type TransactionRegs } from './transactions.js';
import { Translator } from './translate.js';

export type { SmmuV3Stats } from './transactions.js';

const log = createDebug('iommu:hw:smmu-v3');
/** Table descriptors the walk caches hold, all stages and levels together, before FIFO eviction. */
const WALK_CACHE_ENTRIES = 4096;
const hex = (v: number): string => `0x${v.toString(16)}`;

/** What the machine gives an SMMUv3 model. */
export interface SmmuV3Deps {
  scheduler: Scheduler;
  /**
   * Memory the SMMU fetches stream tables, CDs, translation tables and commands from and writes
   * event/PRI records to; an access that hits nothing throws BusError (PhysicalMemory does).
   */
  memory: QueueMemory;
  /** Where translated transactions and MSIs go (the interconnect). */
  downstream: DmaPort;
  /** Wired interrupt outputs by name. */
  irqs?: Partial<Record<SmmuV3IrqName, IrqOutput>>;
  trace?: Trace;
}

export class SmmuV3 implements MmioDevice, DmaPort {
  readonly name: string;
  readonly opts: ResolvedOptions;
  readonly idr: IdRegisters;
  readonly tlb: Tlb;
  readonly configCache: ConfigCache;
  readonly walker: TranslationTableWalker;
  readonly translator: Translator;
  readonly irq: Interrupts;
  readonly events: EventQueue;
  readonly priq: PriQueue;
  readonly cmdq: CommandQueue;
  /** The one command processor the Command queue and any extra queues (CMDQV VCMDQs) share. */
  readonly commandEngine: CommandEngine = { freeAt: 0 };
  readonly stalls: StallTracker;
  readonly stats: SmmuV3Stats = {
    transactions: 0, bypassed: 0, translated: 0, aborted: 0, faulted: 0, stalled: 0, resumed: 0, atsRequests: 0, pageRequests: 0,
  };

  // Register state (the rest lives in the units that own it).
  private cr0 = 0;
  private cr0ack = 0;
  private cr1 = 0;
  private cr2 = 0;
  private gbpa: number;
  private strtabBaseLo = 0;
  private strtabBaseHi = 0;
  private strtabBaseCfg = 0;
  private cr0Event: { cancel(): void } | null = null;
  private readonly cfgRegs: { strtabBaseLo: number; strtabBaseHi: number; strtabBaseCfg: number; cr2: number; cr0ack: number };
  private readonly endpoints = new Map<number, AtsEndpoint>();
  /** CR0ACK and the effective GBPA, as the transaction engine reads them. */
  private readonly txRegs: TransactionRegs;
  private readonly engine: TransactionEngine;
  private readonly scheduler: Scheduler;
  private readonly downstream: DmaPort;
  private readonly trace: Trace | null;
  private readonly memory: QueueMemory;
  private readonly commandContext: CommandContext;

  constructor(deps: SmmuV3Deps, options: SmmuV3Options = {}) {
    this.opts = resolveOptions(options);
    this.name = this.opts.name;
    this.idr = idRegisters(this.opts);
    this.scheduler = deps.scheduler;
    this.downstream = deps.downstream;
    this.trace = deps.trace ?? null;
    this.gbpa = this.opts.gbpaReset & R.GBPA_STATE_BITS;
    this.txRegs = { cr0ack: 0, gbpaEffective: this.gbpa };
    this.cfgRegs = { strtabBaseLo: 0, strtabBaseHi: 0, strtabBaseCfg: 0, cr2: 0, cr0ack: 0 };
    this.tlb = new Tlb(this.opts.tlbEntries, this.opts.walkCache ? WALK_CACHE_ENTRIES : 0);
    this.walker = new TranslationTableWalker(deps.memory);
    this.configCache = new ConfigCache(this.opts, this.cfgRegs, deps.memory, this.walker, this.tlb);
    this.translator = new Translator(this.configCache, this.tlb, this.walker, this.opts);
    this.irq = new Interrupts(this.opts, this.scheduler, this.downstream, this.trace);
    for (const [n, line] of Object.entries(deps.irqs ?? {})) this.irq.connect(n as SmmuV3IrqName, line ?? null);
    this.events = new EventQueue(this.opts, this.scheduler, deps.memory, this.irq, this.trace);
    this.priq = new PriQueue(
      this.opts,
      this.scheduler,
      deps.memory,
      this.irq,
      {
        endpoint: (sid) => this.endpoints.get(sid),
        ppar: (sid) => {
          if (!R.CR0_SMMUEN.isSet(this.cr0ack)) return null;
          const o = new Outcome();
          return this.configCache.ste(sid, o)?.ppar ?? null;
        },
      },
      this.trace,
    );
    this.stalls = new StallTracker(this.opts.stallModel === R.STALL_MODEL_TERMINATE ? 0 : this.opts.stallMax);
    this.engine = new TransactionEngine({
      name: this.name,
      opts: this.opts,
      regs: this.txRegs,
      scheduler: this.scheduler,
      downstream: this.downstream,
      translator: this.translator,
      configCache: this.configCache,
      events: this.events,
      priq: this.priq,
      stalls: this.stalls,
      stats: this.stats,
    });
    this.memory = deps.memory;
    this.commandContext = {
      e2h: () => R.CR2_E2H.isSet(this.cr2),
      endpoint: (sid) => this.endpoints.get(sid),
      prefetchConfig: (sid, ssidValid, ssid) => this.prefetchConfig(sid, ssidValid, ssid),
      resume: (sid, stag, retry, abort) => this.engine.resume(sid, stag, retry, abort),
      stallTerm: (sid) => this.engine.stallTerm(sid),
      atc: { nextId: 0, orphans: new Map(), adopted: new Map() },
    };
    this.cmdq = new CommandQueue(
      this.opts,
      this.scheduler,
      deps.memory,
      this.configCache,
      this.tlb,
      this.events,
      this.priq,
      this.irq,
      this.commandContext,
      this.trace,
      this.commandEngine,
    );
    this.irq.onGerrorAck = (acked) => {
      if (acked & R.GERROR_CMDQ_ERR.mask) this.cmdq.resumeAfterError();
      if (acked & R.GERROR_EVENTQ_ABT_ERR.mask) this.events.kick();
    };
  }

  /**
   * Another command queue executed by this SMMU (a CMDQV VCMDQ): the same command execution and
   * caches as the Command queue, with the queue's own error signalling and admission. With
   * `sharedEngine` its batches wait for the one command processor the Command queue uses (an
   * arbiter serialising every queue); without, it is consumed in parallel with the other queues,
   * in order within itself.
   */
  createCommandQueue(hooks: CommandQueueHooks, sharedEngine = true): CommandQueue {
    return new CommandQueue(
      this.opts, this.scheduler, this.memory, this.configCache, this.tlb, this.events, this.priq, this.irq,
      this.commandContext, this.trace, sharedEngine ? this.commandEngine : null, hooks,
    );
  }

  /** Connect (or replace, or with null remove) a wired interrupt output. */
  connectIrq(name: SmmuV3IrqName, out: IrqOutput | null): void {
    this.irq.connect(name, out);
  }

  // ===========================================================================================
  // MMIO
  // ===========================================================================================

  /** Fold page 1 onto page 0: only the output queues' PROD/CONS live there. -1: not a register. */
  private fold(offset: number): number {
    if (offset >= R.SMMU_V3_REGION_SIZE || offset < 0) return -1;
    if (offset < R.PAGE1) return offset;
    const o = offset - R.PAGE1;
    return R.PAGE1_REGISTERS.includes(o) ? o : -1;
  }

  /** The spec's name of a register, for traces (MmioDevice). */
  registerName(offset: number): string | null {
    return R.registerName(offset);
  }

  read32(offset: number): number {
    const off = this.fold(offset);
    const v = off < 0 ? null : this.readReg(off);
    if (v === null) {
      if (log.enabled) log('%s %s: read of unknown offset %s reads 0', vtime(this.scheduler.now), this.name, hex(offset));
      return 0;
    }
    return v >>> 0;
  }

  /** Side-effect-free read (reads have no side effects here; this one does not log either). */
  peek32(offset: number): number {
    const off = this.fold(offset);
    return off < 0 ? 0 : (this.readReg(off) ?? 0) >>> 0;
  }

  read64(offset: number): bigint {
    const lo = this.read32(offset);
    const hi = this.read32(offset + 4);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  write64(offset: number, value: bigint): void {
    const v = BigInt.asUintN(64, value);
    const lo = Number(v & 0xffff_ffffn);
    const hi = Number(v >> 32n);
    const off = this.fold(offset);
    // 64-bit registers are written as one: the guard is evaluated once for both halves.
    if (off === R.STRTAB_BASE || off === R.CMDQ_BASE || off === R.EVENTQ_BASE || off === R.PRIQ_BASE ||
      off === R.GERROR_IRQ_CFG0 || off === R.EVENTQ_IRQ_CFG0 || off === R.PRIQ_IRQ_CFG0) {
      this.write32(offset + 4, hi);
      this.write32(offset, lo);
      return;
    }
    this.write32(offset, lo);
    this.write32(offset + 4, hi);
  }

  private queueReg(q: SmmuQueue, which: 'baseLo' | 'baseHi' | 'prod' | 'cons'): number {
    switch (which) {
      case 'baseLo':
        return q.baseLo;
      case 'baseHi':
        return q.baseHi;
      case 'prod':
        return ((q.prod & q.ptrMask) | (q.prod & R.Q_OVFLG.mask)) >>> 0;
      default:
        return ((q.cons & q.ptrMask) | (q.cons & R.Q_OVFLG.mask)) >>> 0;
    }
  }

  private readReg(off: number): number | null {
    const irq = this.irq;
    switch (off) {
      case R.IDR0: return this.idr.idr0;
      case R.IDR1: return this.idr.idr1;
      case R.IDR2: return this.idr.idr2;
      case R.IDR3: return this.idr.idr3;
      case R.IDR4: return this.idr.idr4;
      case R.IDR5: return this.idr.idr5;
      case R.IIDR: return this.idr.iidr;
      case R.AIDR: return this.idr.aidr;
      case R.CR0: return this.cr0;
      case R.CR0ACK: return this.cr0ack;
      case R.CR1: return this.cr1;
      case R.CR2: return this.cr2;
      case R.STATUSR: return 0;
      case R.GBPA: return this.gbpa;
      case R.AGBPA: return 0;
      case R.IRQ_CTRL: return irq.irqCtrl;
      case R.IRQ_CTRLACK: return irq.irqCtrlAck;
      case R.GERROR: return irq.gerror;
      case R.GERRORN: return irq.gerrorn;
      case R.GERROR_IRQ_CFG0: return irq.cfg.gerror.cfg0Lo;
      case R.GERROR_IRQ_CFG0 + 4: return irq.cfg.gerror.cfg0Hi;
      case R.GERROR_IRQ_CFG1: return irq.cfg.gerror.cfg1;
      case R.GERROR_IRQ_CFG2: return irq.cfg.gerror.cfg2;
      case R.STRTAB_BASE: return this.strtabBaseLo;
      case R.STRTAB_BASE + 4: return this.strtabBaseHi;
      case R.STRTAB_BASE_CFG: return this.strtabBaseCfg;
      case R.CMDQ_BASE: return this.cmdq.q.baseLo;
      case R.CMDQ_BASE + 4: return this.cmdq.q.baseHi;
      case R.CMDQ_PROD: return this.cmdq.q.prod & R.Q_INDEX_MASK;
      case R.CMDQ_CONS: return this.cmdq.consRegister;
      case R.EVENTQ_BASE: return this.queueReg(this.events.q, 'baseLo');
      case R.EVENTQ_BASE + 4: return this.queueReg(this.events.q, 'baseHi');
      case R.EVENTQ_PROD: return this.queueReg(this.events.q, 'prod');
      case R.EVENTQ_CONS: return this.queueReg(this.events.q, 'cons');
      case R.EVENTQ_IRQ_CFG0: return irq.cfg.eventq.cfg0Lo;
      case R.EVENTQ_IRQ_CFG0 + 4: return irq.cfg.eventq.cfg0Hi;
      case R.EVENTQ_IRQ_CFG1: return irq.cfg.eventq.cfg1;
      case R.EVENTQ_IRQ_CFG2: return irq.cfg.eventq.cfg2;
      case R.PRIQ_BASE: return this.opts.pri ? this.queueReg(this.priq.q, 'baseLo') : 0;
      case R.PRIQ_BASE + 4: return this.opts.pri ? this.queueReg(this.priq.q, 'baseHi') : 0;
      case R.PRIQ_PROD: return this.opts.pri ? this.queueReg(this.priq.q, 'prod') : 0;
      case R.PRIQ_CONS: return this.opts.pri ? this.queueReg(this.priq.q, 'cons') : 0;
      case R.PRIQ_IRQ_CFG0: return irq.cfg.priq.cfg0Lo;
      case R.PRIQ_IRQ_CFG0 + 4: return irq.cfg.priq.cfg0Hi;
      case R.PRIQ_IRQ_CFG1: return irq.cfg.priq.cfg1;
      case R.PRIQ_IRQ_CFG2: return irq.cfg.priq.cfg2;
      default:
        if (off >= R.PIDR4 && off <= R.CIDR3 && off % 4 === 0) return R.ID_REGISTER_BYTES[(off - R.PIDR4) / 4];
        return null;
    }
  }

  write32(offset: number, value: number): void {
    const off = this.fold(offset);
    const v = value >>> 0;
    if (off < 0 || !this.writeReg(off, v)) {
      if (log.enabled) log('%s %s: write of %s to %s (%s) ignored', vtime(this.scheduler.now), this.name, hex(v), hex(offset), R.REGISTER_NAMES.get(off) ?? 'unknown offset');
    }
  }

  /** Is a register guarded by a CR0 enable that is (or is becoming) set? */
  private guarded(bit: number): boolean {
    return ((this.cr0 | this.cr0ack) & bit) !== 0;
  }

  /** Returns false when the write was ignored (read-only, guarded or unknown). */
  private writeReg(off: number, v: number): boolean {
    // The Command queue doorbell first: a switch compares its cases in order, and this one is rung
    // per command batch.
    if (off === R.CMDQ_PROD) {
      this.cmdq.q.prod = v & R.Q_INDEX_MASK;
      this.cmdq.kick();
      return true;
    }
    const irq = this.irq;
    switch (off) {
      case R.CR0:
        this.writeCr0(v);
        return true;
      case R.CR1: {
        // TABLE_* are guarded by SMMUEN, QUEUE_* by the queue enables (each ignored while guarded).
        let writable = 0;
        if (!this.guarded(R.CR0_SMMUEN.mask)) writable |= R.CR1_TABLE_BITS;
        if (!this.guarded(R.CR0_CMDQEN.mask | R.CR0_EVENTQEN.mask | R.CR0_PRIQEN.mask)) writable |= R.CR1_QUEUE_BITS;
        if (writable === 0) return false;
        this.cr1 = ((this.cr1 & ~writable) | (v & writable)) & R.CR1_IMPLEMENTED;
        return true;
      }
      case R.CR2:
        if (this.guarded(R.CR0_SMMUEN.mask)) return false;
        this.cr2 = v & (R.CR2_IMPLEMENTED & ~(this.opts.hyp ? 0 : R.CR2_E2H.mask));
        this.cfgRegs.cr2 = this.cr2;
        return true;
      case R.GBPA:
        return this.writeGbpa(v);
      case R.IRQ_CTRL:
        irq.writeIrqCtrl(v & (R.IRQ_CTRL_GERROR_IRQEN.mask | R.IRQ_CTRL_EVENTQ_IRQEN.mask | (this.opts.pri ? R.IRQ_CTRL_PRIQ_IRQEN.mask : 0)));
        return true;
      case R.GERRORN:
        irq.writeGerrorn(v);
        return true;
      case R.GERROR_IRQ_CFG0: return irq.writeCfg('gerror', 'cfg0Lo', v);
      case R.GERROR_IRQ_CFG0 + 4: return irq.writeCfg('gerror', 'cfg0Hi', v);
      case R.GERROR_IRQ_CFG1: return irq.writeCfg('gerror', 'cfg1', v);
      case R.GERROR_IRQ_CFG2: return irq.writeCfg('gerror', 'cfg2', v);
      case R.STRTAB_BASE:
        if (this.guarded(R.CR0_SMMUEN.mask)) return false;
        this.strtabBaseLo = v & R.STRTAB_BASE_ADDR_LO_MASK;
        this.cfgRegs.strtabBaseLo = this.strtabBaseLo;
        return true;
      case R.STRTAB_BASE + 4:
        if (this.guarded(R.CR0_SMMUEN.mask)) return false;
        this.strtabBaseHi = v & (R.STRTAB_BASE_ADDR_HI_MASK | R.STRTAB_BASE_RA_HI.mask);
        this.cfgRegs.strtabBaseHi = this.strtabBaseHi;
        return true;
      case R.STRTAB_BASE_CFG:
        if (this.guarded(R.CR0_SMMUEN.mask)) return false;
        this.strtabBaseCfg = v & R.STRTAB_BASE_CFG_IMPLEMENTED;
        this.cfgRegs.strtabBaseCfg = this.strtabBaseCfg;
        return true;
      case R.CMDQ_BASE: return this.writeQueueBase(this.cmdq.q, R.CR0_CMDQEN.mask, 'lo', v);
      case R.CMDQ_BASE + 4: return this.writeQueueBase(this.cmdq.q, R.CR0_CMDQEN.mask, 'hi', v);
      // (R.CMDQ_PROD: before the switch.)
      case R.CMDQ_CONS:
        if (this.guarded(R.CR0_CMDQEN.mask)) return false;
        this.cmdq.q.cons = v & (R.Q_INDEX_MASK | R.CMDQ_CONS_ERR.mask);
        return true;
      case R.EVENTQ_BASE: return this.writeQueueBase(this.events.q, R.CR0_EVENTQEN.mask, 'lo', v);
      case R.EVENTQ_BASE + 4: return this.writeQueueBase(this.events.q, R.CR0_EVENTQEN.mask, 'hi', v);
      case R.EVENTQ_PROD:
        if (this.guarded(R.CR0_EVENTQEN.mask)) return false;
        this.events.q.prod = SmmuQueue.maskWritten(v, R.Q_OVFLG.mask);
        return true;
      case R.EVENTQ_CONS:
        this.events.q.cons = SmmuQueue.maskWritten(v, R.Q_OVFLG.mask);
        this.events.kick();
        return true;
      case R.EVENTQ_IRQ_CFG0: return irq.writeCfg('eventq', 'cfg0Lo', v);
      case R.EVENTQ_IRQ_CFG0 + 4: return irq.writeCfg('eventq', 'cfg0Hi', v);
      case R.EVENTQ_IRQ_CFG1: return irq.writeCfg('eventq', 'cfg1', v);
      case R.EVENTQ_IRQ_CFG2: return irq.writeCfg('eventq', 'cfg2', v);
      case R.PRIQ_BASE:
        return this.opts.pri && this.writeQueueBase(this.priq.q, R.CR0_PRIQEN.mask, 'lo', v);
      case R.PRIQ_BASE + 4:
        return this.opts.pri && this.writeQueueBase(this.priq.q, R.CR0_PRIQEN.mask, 'hi', v);
      case R.PRIQ_PROD:
        if (!this.opts.pri || this.guarded(R.CR0_PRIQEN.mask)) return false;
        this.priq.q.prod = SmmuQueue.maskWritten(v, R.Q_OVFLG.mask);
        return true;
      case R.PRIQ_CONS:
        if (!this.opts.pri) return false;
        this.priq.q.cons = SmmuQueue.maskWritten(v, R.Q_OVFLG.mask);
        return true;
      case R.PRIQ_IRQ_CFG0: return this.opts.pri && irq.writeCfg('priq', 'cfg0Lo', v);
      case R.PRIQ_IRQ_CFG0 + 4: return this.opts.pri && irq.writeCfg('priq', 'cfg0Hi', v);
      case R.PRIQ_IRQ_CFG1: return this.opts.pri && irq.writeCfg('priq', 'cfg1', v);
      case R.PRIQ_IRQ_CFG2: return this.opts.pri && irq.writeCfg('priq', 'cfg2', v);
      default:
        return false; // ID registers, CR0ACK, IRQ_CTRLACK, GERROR, STATUSR are read-only
    }
  }

  private writeQueueBase(q: SmmuQueue, enable: number, half: 'lo' | 'hi', v: number): boolean {
    if (this.guarded(enable)) return false;
    if (half === 'lo') q.baseLo = v & (R.Q_BASE_ADDR_LO_MASK | R.Q_BASE_LOG2SIZE.mask);
    else q.baseHi = v & (R.Q_BASE_ADDR_HI_MASK | R.Q_BASE_ALLOC_HINT_HI.mask);
    return true;
  }

  private get cr0Implemented(): number {
    const o = this.opts;
    return (
      R.CR0_SMMUEN.mask |
      R.CR0_EVENTQEN.mask |
      R.CR0_CMDQEN.mask |
      (o.pri ? R.CR0_PRIQEN.mask : 0) |
      (o.ats ? R.CR0_ATSCHK.mask : 0)
    );
  }

  /** CR0 is written now; the new enables take effect, and show in CR0ACK, in a later step. */
  private writeCr0(v: number): void {
    this.cr0 = v & this.cr0Implemented;
    this.cr0Event?.cancel();
    this.cr0Event = this.scheduler.schedule(
      this.opts.timing.regAckNs,
      () => {
        this.cr0Event = null;
        this.applyCr0(this.cr0);
      },
      `${this.name} CR0ACK`,
    );
  }

  private applyCr0(next: number): void {
    const prev = this.cr0ack;
    this.cr0ack = next;
    this.cfgRegs.cr0ack = next;
    this.txRegs.cr0ack = next;
    const on = (b: { mask: number }): boolean => (next & b.mask) !== 0;
    const changed = (b: { mask: number }): boolean => ((prev ^ next) & b.mask) !== 0;
    if (log.enabled) log('%s %s: CR0ACK %s -> %s', vtime(this.scheduler.now), this.name, hex(prev), hex(next));
    if (changed(R.CR0_SMMUEN) && !on(R.CR0_SMMUEN)) {
      // Disabling the SMMU terminates the transactions it holds.
      for (const t of this.stalls.takeAll()) {
        this.events.forgetStall(t.sid, t.stag);
        t.done({ status: 'abort', detail: 'stalled transaction terminated: SMMU disabled (CR0.SMMUEN cleared)' });
      }
    }
    this.events.enabled = on(R.CR0_EVENTQEN);
    this.priq.enabled = on(R.CR0_PRIQEN) && on(R.CR0_SMMUEN);
    this.cmdq.enabled = on(R.CR0_CMDQEN);
    if (changed(R.CR0_EVENTQEN) && on(R.CR0_EVENTQEN)) this.events.kick();
    if (changed(R.CR0_CMDQEN) && on(R.CR0_CMDQEN)) this.cmdq.kick();
  }

  private writeGbpa(v: number): boolean {
    if (!R.GBPA_UPDATE.isSet(v)) return false; // SMMUv3.2: a write without Update is ignored
    if (R.GBPA_UPDATE.isSet(this.gbpa)) return false; // an update is already in progress
    this.gbpa = ((v & R.GBPA_STATE_BITS) | R.GBPA_UPDATE.mask) >>> 0;
    this.scheduler.schedule(
      this.opts.timing.regAckNs,
      () => {
        this.gbpa = (this.gbpa & R.GBPA_STATE_BITS) >>> 0;
        this.txRegs.gbpaEffective = this.gbpa;
        if (log.enabled) log('%s %s: GBPA now %s', vtime(this.scheduler.now), this.name, hex(this.gbpa));
      },
      `${this.name} GBPA.Update`,
    );
    return true;
  }

  // ===========================================================================================
  // DMA port: the transaction engine (transactions.ts) does the work
  // ===========================================================================================

  get enabled(): boolean {
    return R.CR0_SMMUEN.isSet(this.cr0ack);
  }

  /**
   * TLB-hit translation of one access (ACCESS_* flags from hw/walker/result.ts; `ssid` -1 for
   * none): the output PA, or -1 when the SMMU would have to fetch configuration, walk, abort or
   * fault. While SMMUEN is clear, GBPA decides (bypass: the address itself; abort: -1).
   * Synchronous and allocation-free.
   */
  translateFast(streamId: number, ssid: number, addr: number, access: number): number {
    return this.engine.translateFast(streamId, ssid, addr, access);
  }

  submit(req: DmaRequest, done: DmaDone): void {
    this.engine.submit(req, done);
  }

  translate(req: AtsRequest, done: (c: AtsCompletion) => void): void {
    this.engine.translate(req, done);
  }

  pageRequest(req: PageRequest): void {
    this.engine.pageRequest(req);
  }

  // ===========================================================================================
  // Commands and endpoints
  // ===========================================================================================

  private prefetchConfig(sid: number, ssidValid: boolean, ssid: number): void {
    const out = new Outcome();
    const ste = this.configCache.ste(sid, out);
    if (ste === null || !ste.s1 || ste.abort) return;
    const index = ssidValid ? ssid : 0;
    if (ssidValid && (ste.s1CdMax === 0 || index >= 2 ** ste.s1CdMax)) return;
    this.configCache.cd(ste, index, out);
  }

  bindEndpoint(streamId: number, endpoint: AtsEndpoint): void {
    this.endpoints.set(streamId, endpoint);
  }

  /** The endpoint bound to a StreamID (tests). */
  endpointOf(streamId: number): AtsEndpoint | undefined {
    return this.endpoints.get(streamId);
  }
}

export { ACCESS_INSTR, ACCESS_PRIV, ACCESS_WRITE };
