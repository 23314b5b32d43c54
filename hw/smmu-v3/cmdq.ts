/**
 * The SMMUv3 Command queue: commands fetched from memory and executed in scheduler steps (a batch
 * per step, each command costing `timing.commandNs` of virtual time; a step consumes only the batch
 * its delay paid for), never inside the PROD write that announced them, and never while
 * CR0ACK.CMDQEN is clear.
 *
 * Supports: CMD_PREFETCH_CONFIG/ADDR, CMD_CFGI_STE/STE_RANGE/CD/CD_ALL/ALL, CMD_TLBI_NH_ALL/ASID/
 * VA/VAA, CMD_TLBI_EL2_ALL/ASID/VA/VAA (per CR2.E2H), CMD_TLBI_S12_VMALL, CMD_TLBI_S2_IPA,
 * CMD_TLBI_NSNH_ALL, range invalidation (TG/NUM/SCALE and the TTL hint, with IDR3.RIL), CMD_ATC_INV
 * (sent to the endpoint bound to the StreamID; its completion is awaited by the next CMD_SYNC; those
 * a queue still had outstanding when it stopped are awaited by the next CMD_SYNC of any of the SMMU's
 * queues, AtcTracker),
 * CMD_PRI_RESP, CMD_RESUME, CMD_STALL_TERM, CMD_SYNC with CS = NONE / IRQ / SEV and the "prior
 * events visible" guarantee. CS = SIG_IRQ signals completion once: an MSI when IDR0.MSI == 1 and
 * MSIAddr != 0, otherwise the wired `cmdq-sync` line (spec: CMD_SYNC in chapter 4, 3.18 "Interrupts and
 * notifications": a zero MSI address selects the wired interrupt, as for the *_IRQ_CFG0 sources).
 * TLBI by address (NH_VA/VAA, EL2_VA/VAA, S2_IPA) removes walk-cache entries covering the range only
 * when Leaf == 0 (spec 4.4; see tlb.ts). Errors stop the queue with CMDQ_CONS.ERR set, CONS left on
 * the command, and GERROR.CMDQ_ERR activated: CERROR_ILL (unknown opcode, a command for an
 * unimplemented feature, SSec on the Non-secure queue, Reserved field encodings), CERROR_ABT (the
 * command read aborted), CERROR_ATC_INV_SYNC (a CMD_SYNC found an ATC invalidation unanswered after
 * `timing.atcInvTimeoutNs`). Consumption resumes when software acknowledges GERRORN.
 * Does not support: the Secure Command queue and its commands (CMD_TLBI_EL3_* are CERROR_ILL),
 * CMD_CFGI_VMS_PIDM (no MPAM: CERROR_ILL), CMD_PREFETCH_ADDR filling the TLB (it is accepted and
 * does nothing).
 */
import { vtime } from '../vtime.js';
import createDebug from 'debug';
import type { AtcInvalidation, AtsEndpoint, PageResponseCode } from '../dma.js';
import { BusError } from '../memory.js';
import type { RecurringEvent, Scheduler } from '../scheduler.js';
import type { Trace } from '../trace.js';
import type { WalkMemory } from '../walker/walker.js';
import type { ConfigCache } from './config.js';
import type { EventQueue } from './events.js';
import * as F from './formats.js';
import type { Interrupts } from './interrupts.js';
import type { ResolvedOptions } from './options.js';
import type { PriQueue } from './priq.js';
import { SmmuQueue } from './queue.js';
import {
  CERROR_ABT,
  CERROR_ATC_INV_SYNC,
  CERROR_ILL,
  CMDQ_CONS_ERR,
  GERROR_CMDQ_ERR,
  STALL_MODEL_TERMINATE,
} from './regs.js';
import {
  KIND_MASK_ALL,
  KIND_MASK_S1,
  KIND_MASK_S12,
  KIND_MASK_S2,
  type Tlb,
  type TlbScope,
  WORLD_NS_EL1,
  WORLD_NS_EL2,
  WORLD_NS_EL2_E2H,
} from './tlb.js';

const log = createDebug('iommu:hw:smmu-v3:cmdq');

/** A range TLBI's fields (TG != 0) are not one of the Reserved encodings that raise CERROR_ILL. */
function rangeEncodingLegal(tg: number, num: number, scale: number, ttl: number): boolean {
  if (num === 0 && scale === 0 && ttl === 0) return false;
  return !(tg === 2 && ttl === 1); // 16K level 1 needs IDR5.DS
}

/**
 * Where commands are fetched from: 32-bit loads, and (PhysicalMemory) a command's four words in one
 * frame lookup.
 */
export type CommandMemory = WalkMemory & { readWords?(pa: number, out: Uint32Array, n: number): void };

/** What command execution needs from the rest of the SMMU. */
export interface CommandContext {
  /** CR2.E2H as currently programmed. */
  e2h(): boolean;
  /** The endpoint bound to a StreamID. */
  endpoint(sid: number): AtsEndpoint | undefined;
  /** CMD_PREFETCH_CONFIG: load the STE (and CD) into the configuration cache, silently. */
  prefetchConfig(sid: number, ssidValid: boolean, ssid: number): void;
  /** CMD_RESUME: retry or terminate the stalled transaction (sid, stag). */
  resume(sid: number, stag: number, retry: boolean, abort: boolean): void;
  /** CMD_STALL_TERM: terminate every stalled transaction of `sid`. */
  stallTerm(sid: number): void;
  /** The SMMU's ATC invalidation tracking, shared by all its command queues. */
  readonly atc: AtcTracker;
}

/**
 * ATC invalidations are tracked by the SMMU, not by the queue that sent them: ids are unique per
 * SMMU, and those a queue still had outstanding when it stopped (a VCMDQ disabled) stay tracked
 * here until the next CMD_SYNC any of the SMMU's queues executes, which waits for them or reports
 * their timeout (CERROR_ATC_INV_SYNC) on its own queue. Hence the kernel's
 * tegra241_vcmdq_hw_flush_timeout(): a CMD_SYNC on the main queue when a guest VCMDQ is disabled,
 * so that the timeout is the host's and not a false alarm in the next VM owning the VCMDQ.
 */
export interface AtcTracker {
  nextId: number;
  /** id → deadline (virtual ns) of the invalidations of stopped queues. */
  readonly orphans: Map<number, number>;
  /** id → the queue whose CMD_SYNC took over an orphan (where its answer must go). */
  readonly adopted: Map<number, { atcAnswered(id: number): void }>;
}

export interface CommandQueueStats {
  /** Commands consumed, by opcode name (computed when read). */
  readonly consumed: Record<string, number>;
  total: number;
  syncs: number;
  errors: number;
  /** ATC invalidations sent to endpoints / that timed out. */
  atcInvalidations: number;
  atcTimeouts: number;
}

/**
 * Stats whose `consumed` names the per-opcode counts when read. A class, not an object literal with
 * a getter: V8 keeps such a literal in dictionary mode, and `total`/`syncs` are counted per command.
 */
class QueueStats implements CommandQueueStats {
  total = 0;
  syncs = 0;
  errors = 0;
  atcInvalidations = 0;
  atcTimeouts = 0;
  readonly #byOpcode: Float64Array;

  constructor(byOpcode: Float64Array) {
    this.#byOpcode = byOpcode;
  }

  get consumed(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [op, name] of F.COMMAND_NAMES) if (this.#byOpcode[op] > 0) out[name] = this.#byOpcode[op];
    return out;
  }
}

/**
 * The virtual-time budget of the SMMU's one command processor, shared by every queue that feeds it
 * (the main Command queue and, on a Grace, the CMDQV's VCMDQs): a queue's batch starts when the
 * processor is free (`freeAt`) and keeps it busy for the batch's cost.
 */
export interface CommandEngine {
  freeAt: number;
}

/**
 * What distinguishes a queue other than the SMMU's own Command queue (a CMDQV VCMDQ): where its
 * errors are signalled, which commands it admits (and how it rewrites them), and how CMD_SYNC's
 * completion signal is treated. The command execution itself is the same.
 */
export interface CommandQueueHooks {
  /** Names the queue in logs and traces ("vcmdq3"). */
  readonly label: string;
  /** Maximum LOG2SIZE of the queue. */
  readonly maxLog2: number;
  /** True while the queue's error is active (it does not consume). */
  errorActive(): boolean;
  /** Signal an error: CONS.ERR is already set. */
  raiseError(code: number): void;
  /**
   * Admission check before execution: may rewrite `w` (a copy of the command, never queue memory).
   * Returns 0 to execute, or a CONS.ERR code to stop the queue with.
   */
  admit: ((w: Uint32Array) => number) | null;
  /** CMD_SYNC.CS other than NONE: 'ill' stops the queue with CERROR_ILL; 'none' completes it as CS=NONE. */
  readonly syncCs: 'ill' | 'none' | 'smmu';
}

/** 2^i, i < 64 (a table: `2 ** i` is a Math.pow call on the TLBI path). */
const POW2: readonly number[] = Array.from({ length: 64 }, (_, i) => 2 ** i);

const EXEC_OK = 0;
const EXEC_ILL = 1;
/** CMD_SYNC waiting for ATC invalidation completions: retry the same command later. */
const EXEC_WAIT = 2;
const EXEC_ATC_TIMEOUT = 3;

export class CommandQueue {
  readonly q: SmmuQueue;
  /** CR0ACK.CMDQEN. */
  enabled = false;
  /** Commands consumed per opcode (the hot path counts here; `stats.consumed` names them). */
  private readonly byOpcode = new Float64Array(256);
  readonly stats: CommandQueueStats = new QueueStats(this.byOpcode);
  private readonly words = new Uint32Array(4);
  /** The consumption step (one event re-armed per doorbell: nothing allocated per step). */
  private readonly stepEvent: RecurringEvent;
  /**
   * Commands the scheduled step may consume: the batch whose cost (`timing.commandNs` each) its delay
   * paid for when it was scheduled. Without the cap, commands written while a step was pending would
   * be consumed for free by it.
   */
  private stepBudget: number;
  private readonly stepLabel: string;
  /** Outstanding ATC invalidations: id (AtcTracker.nextId) → deadline (virtual ns). */
  private readonly atcPending = new Map<number, number>();
  private readonly scope: TlbScope = { world: 0, vmid: -1, asid: -1, kinds: 0, globals: false, nonGlobalOnly: false };
  /** Observers of every command consumed (tests, traces). */
  onCommand: ((opcode: number, words: Uint32Array) => void) | null = null;

  constructor(
    private readonly opts: ResolvedOptions,
    private readonly scheduler: Scheduler,
    private readonly mem: CommandMemory,
    private readonly cache: ConfigCache,
    private readonly tlb: Tlb,
    private readonly events: EventQueue,
    private readonly priq: PriQueue,
    private readonly irq: Interrupts,
    private readonly ctx: CommandContext,
    private readonly trace: Trace | null,
    /** The command processor this queue shares with the SMMU's other queues (null: not shared). */
    private readonly engine: CommandEngine | null = null,
    /** For a queue other than the SMMU's Command queue; null for that one. */
    private readonly hooks: CommandQueueHooks | null = null,
  ) {
    this.q = new SmmuQueue(hooks?.label ?? 'CMDQ', F.CMD_BYTES, hooks?.maxLog2 ?? opts.cmdqLog2);
    this.stepLabel = `${opts.name} ${hooks?.label ?? 'CMDQ'}`;
    this.stepEvent = scheduler.recurring(this.runStep, this.stepLabel);
    this.stepBudget = opts.timing.commandsPerStep;
  }

  /** The queue's error is active: it consumes nothing until software acknowledges it. */
  private errorActive(): boolean {
    return this.hooks !== null ? this.hooks.errorActive() : this.irq.isActive(GERROR_CMDQ_ERR.mask);
  }

  /** CONS as software reads it: index + wrap (bits above the queue size read as zero) and ERR. */
  get consRegister(): number {
    return ((this.q.cons & this.q.ptrMask) | (this.q.cons & CMDQ_CONS_ERR.mask)) >>> 0;
  }

  /** Something changed that may let the queue make progress: schedule a step. */
  kick(): void {
    if (!this.enabled || this.errorActive() || this.q.isEmpty()) return;
    if (this.trace?.active) this.traceOccupancy();
    const batch = Math.min(this.q.occupancy(), this.opts.timing.commandsPerStep);
    const cost = Math.max(1, batch) * this.opts.timing.commandNs;
    // The batch runs once the shared command processor is free.
    const wait = this.engine !== null ? Math.max(0, this.engine.freeAt - this.scheduler.now) : 0;
    if (this.scheduleStep(wait + cost)) {
      // The step consumes what was paid for; commands that arrive meanwhile wait for the next one.
      this.stepBudget = Math.max(1, batch);
      if (this.engine !== null) this.engine.freeAt = this.scheduler.now + wait + cost;
    }
  }

  /** Schedule a step `delay` from now unless one is due no later; true if this one was scheduled. */
  private scheduleStep(delay: number): boolean {
    const at = this.scheduler.now + delay;
    if (this.stepEvent.pending && this.stepEvent.time <= at) return false;
    this.stepEvent.arm(delay);
    return true;
  }

  /**
   * Stop: forget a scheduled step (the queue was disabled). Its outstanding ATC invalidations stay
   * with the SMMU (AtcTracker) for the next CMD_SYNC of any queue.
   */
  halt(): void {
    this.enabled = false;
    this.stepEvent.cancel();
    if (this.atcPending.size > 0) {
      for (const [id, deadline] of this.atcPending) this.ctx.atc.orphans.set(id, deadline);
      this.atcPending.clear();
    }
  }

  /** Outstanding ATC invalidations sent by this queue (a CMD_SYNC on it would wait for them). */
  get atcPendingCount(): number {
    return this.atcPending.size;
  }

  /** The scheduled step. */
  private readonly runStep = (): void => {
    this.step();
  };

  /** Consume up to one batch of commands. */
  step(): void {
    if (!this.enabled || this.errorActive()) return;
    const q = this.q;
    const base = q.baseAddr;
    const indexMask = q.entries - 1;
    const budget = this.stepBudget;
    this.stepBudget = this.opts.timing.commandsPerStep;
    const admit = this.hooks?.admit ?? null;
    let n = 0;
    while (n < budget && !q.isEmpty()) {
      const addr = base + (q.cons & indexMask) * F.CMD_BYTES;
      try {
        if (this.mem.readWords !== undefined) this.mem.readWords(addr, this.words, 4);
        else for (let i = 0; i < 4; i++) this.words[i] = this.mem.read32(addr + i * 4);
      } catch (e) {
        if (!(e instanceof BusError)) throw e;
        this.error(CERROR_ABT, `reading the command at PA 0x${addr.toString(16)} aborted`);
        return;
      }
      if (admit !== null) {
        const code = admit(this.words);
        if (code !== 0) {
          this.error(code, `command ${this.describe(this.words)} at index ${q.index(q.cons)} refused by the queue's owner`);
          return;
        }
      }
      const r = this.execute(this.words);
      if (r === EXEC_ILL) {
        this.error(CERROR_ILL, `illegal command ${this.describe(this.words)} at index ${q.index(q.cons)}`);
        return;
      }
      if (r === EXEC_ATC_TIMEOUT) {
        this.error(CERROR_ATC_INV_SYNC, 'CMD_SYNC: an ATC invalidation was not answered in time');
        return;
      }
      if (r === EXEC_WAIT) return; // the sync reschedules itself
      q.cons = SmmuQueue.withPtr(q.cons, q.next(q.cons), q.ptrMask);
      n++;
    }
    if (n > 0 && this.trace?.active) this.traceConsumption(n);
    if (!q.isEmpty()) this.kick();
  }

  /** The queue's occupancy as a counter track. */
  private traceOccupancy(): void {
    this.trace?.emit({ kind: 'counter', time: this.scheduler.now, track: this.opts.name, name: 'CMDQ occupancy', value: this.q.occupancy() });
  }

  /** A batch of `n` commands consumed: a slice over the time the batch took, then the new occupancy. */
  private traceConsumption(n: number): void {
    const end = this.scheduler.now;
    const start = Math.max(0, end - n * this.opts.timing.commandNs);
    const track = this.opts.name;
    this.trace?.emit({ kind: 'work', time: start, track, label: 'CMDQ consume', phase: 'start' });
    this.trace?.emit({ kind: 'work', time: end, track, label: 'CMDQ consume', phase: 'end' });
    this.traceOccupancy();
  }

  private error(code: number, why: string): void {
    this.stats.errors++;
    if (log.enabled) log('%s %s: command queue error %d: %s', vtime(this.scheduler.now), this.opts.name, code, why);
    this.q.cons = CMDQ_CONS_ERR.set(this.q.cons, code);
    if (this.hooks !== null) this.hooks.raiseError(code);
    else this.irq.activateError(GERROR_CMDQ_ERR.mask);
  }

  private describe(w: Uint32Array): string {
    const op = F.CMD_OPCODE.get(w);
    const name = F.COMMAND_NAMES.get(op) ?? `opcode 0x${op.toString(16)}`;
    return `${name} [${[...w].map((x) => `0x${x.toString(16).padStart(8, '0')}`).join(' ')}]`;
  }

  private count(op: number): void {
    this.byOpcode[op]++;
    this.stats.total++;
  }

  /** Execute one command. */
  private execute(w: Uint32Array): number {
    const o = this.opts;
    const op = F.CMD_OPCODE.get(w);
    if (F.CMD_SSEC.isSet(w)) return EXEC_ILL; // SSec is only meaningful on the Secure queue.
    // (StreamID decoded only by the commands that carry one: not per TLBI or CMD_SYNC.)
    let sid = 0;
    // The cases are compared in order: the commands of every unmap (CMD_SYNC, the stage 1 TLBIs) first.
    switch (op) {
      case F.CMD_SYNC: {
        const r = this.sync(w);
        if (r !== EXEC_OK) return r;
        break;
      }
      case F.CMD_TLBI_NH_ALL:
      case F.CMD_TLBI_NH_ASID:
      case F.CMD_TLBI_NH_VA:
      case F.CMD_TLBI_NH_VAA:
        if (!o.stage1) return EXEC_ILL;
        if (!this.tlbiNh(op, w)) return EXEC_ILL;
        break;
      case F.CMD_PREFETCH_CONFIG:
        sid = F.CMD_STREAMID.get(w);
        this.ctx.prefetchConfig(sid, F.CMD_SSV.isSet(w), F.CMD_SUBSTREAMID.get(w));
        break;
      case F.CMD_PREFETCH_ADDR:
        break;
      case F.CMD_CFGI_STE:
        sid = F.CMD_STREAMID.get(w);
        this.cache.invalidateSte(sid, F.CMD_CFGI_LEAF.isSet(w));
        break;
      case F.CMD_CFGI_STE_RANGE:
        sid = F.CMD_STREAMID.get(w);
        this.cache.invalidateSteRange(sid, F.CMD_CFGI_RANGE.get(w));
        break;
      case F.CMD_CFGI_CD:
        if (!o.stage1) return EXEC_ILL;
        sid = F.CMD_STREAMID.get(w);
        this.cache.invalidateCd(sid, F.CMD_SUBSTREAMID.get(w), F.CMD_CFGI_LEAF.isSet(w));
        break;
      case F.CMD_CFGI_CD_ALL:
        if (!o.stage1) return EXEC_ILL;
        sid = F.CMD_STREAMID.get(w);
        this.cache.invalidateCdAll(sid);
        break;
      case F.CMD_TLBI_EL2_ALL:
      case F.CMD_TLBI_EL2_ASID:
      case F.CMD_TLBI_EL2_VA:
      case F.CMD_TLBI_EL2_VAA:
        if (!o.hyp || !o.stage1) return EXEC_ILL;
        if (!this.tlbiEl2(op, w)) return EXEC_ILL;
        break;
      case F.CMD_TLBI_S12_VMALL:
        if (!o.stage2) return EXEC_ILL;
        this.setScope(WORLD_NS_EL1, F.CMD_TLBI_VMID.get(w), -1, KIND_MASK_ALL, true, false);
        this.tlb.invalidateScope(this.scope);
        break;
      case F.CMD_TLBI_S2_IPA: {
        if (!o.stage2) return EXEC_ILL;
        this.setScope(WORLD_NS_EL1, F.CMD_TLBI_VMID.get(w), -1, KIND_MASK_S2, false, false);
        if (!this.tlbiRange(w, F.CMD_TLBI_IPA.get(w))) return EXEC_ILL;
        break;
      }
      case F.CMD_TLBI_NSNH_ALL:
        this.setScope(WORLD_NS_EL1, -1, -1, KIND_MASK_ALL, true, false);
        this.tlb.invalidateScope(this.scope);
        break;
      case F.CMD_ATC_INV:
        if (!o.ats) return EXEC_ILL;
        sid = F.CMD_STREAMID.get(w);
        this.atcInvalidate(w, sid);
        break;
      case F.CMD_PRI_RESP: {
        if (!o.pri) return EXEC_ILL;
        const resp = F.CMD_PRI_RESP_CODE.get(w);
        if (resp === 3) return EXEC_ILL;
        const code: PageResponseCode = resp === F.PRI_RESP_SUCC ? 'success' : resp === F.PRI_RESP_FAIL ? 'failure' : 'invalid';
        const ssv = F.CMD_SSV.isSet(w) && o.ssidBits > 0;
        sid = F.CMD_STREAMID.get(w);
        this.priq.respond(sid, F.CMD_PRI_PRGINDEX.get(w), ssv, ssv ? F.CMD_SUBSTREAMID.get(w) : 0, code);
        break;
      }
      case F.CMD_RESUME:
        if (o.stallModel === STALL_MODEL_TERMINATE) return EXEC_ILL;
        sid = F.CMD_STREAMID.get(w);
        this.ctx.resume(sid, F.CMD_RESUME_STAG.get(w), F.CMD_RESUME_AC.isSet(w), F.CMD_RESUME_AB.isSet(w) || o.abortOnlyTermination);
        break;
      case F.CMD_STALL_TERM:
        if (o.stallModel === STALL_MODEL_TERMINATE) return EXEC_ILL;
        sid = F.CMD_STREAMID.get(w);
        this.ctx.stallTerm(sid);
        break;
      default:
        return EXEC_ILL;
    }
    this.count(op);
    this.onCommand?.(op, w);
    if (this.trace?.active) {
      // (The trace shows every command's StreamID field, whatever the opcode puts there.)
      sid = F.CMD_STREAMID.get(w);
      this.trace.emit({
        kind: 'custom',
        time: this.scheduler.now,
        track: this.opts.name,
        name: 'smmu-v3 command',
        args: this.hooks === null ? { command: F.COMMAND_NAMES.get(op) ?? op, sid } : { command: F.COMMAND_NAMES.get(op) ?? op, sid, queue: this.hooks.label },
      });
    }
    return EXEC_OK;
  }

  private setScope(world: number, vmid: number, asid: number, kinds: number, globals: boolean, nonGlobalOnly: boolean): void {
    const s = this.scope;
    s.world = world;
    // VMID is only matched when stage 2 is implemented; otherwise entries carry VMID 0.
    s.vmid = this.opts.stage2 ? vmid : -1;
    s.asid = asid;
    s.kinds = kinds;
    s.globals = globals;
    s.nonGlobalOnly = nonGlobalOnly;
  }

  private tlbiNh(op: number, w: Uint32Array): boolean {
    // Nothing cached (the usual strict unmap of a page no transaction used): a by-VA TLBI only has its
    // encoding checked; no scope or address to decode.
    if ((op === F.CMD_TLBI_NH_VA || op === F.CMD_TLBI_NH_VAA) && this.tlb.size === 0 && this.tlb.walkSize === 0) return this.rangeFieldsLegal(w);
    const vmid = F.CMD_TLBI_VMID.get(w);
    const asid = F.CMD_TLBI_ASID.get(w);
    const s1 = KIND_MASK_S1 | KIND_MASK_S12;
    switch (op) {
      case F.CMD_TLBI_NH_ALL:
        this.setScope(WORLD_NS_EL1, vmid, -1, s1, true, false);
        this.tlb.invalidateScope(this.scope);
        return true;
      case F.CMD_TLBI_NH_ASID:
        this.setScope(WORLD_NS_EL1, vmid, asid, s1, false, true);
        this.tlb.invalidateScope(this.scope);
        return true;
      case F.CMD_TLBI_NH_VA:
        this.setScope(WORLD_NS_EL1, vmid, asid, s1, true, false);
        return this.tlbiVa(w);
      default:
        this.setScope(WORLD_NS_EL1, vmid, -1, s1, true, false);
        return this.tlbiVa(w);
    }
  }

  private tlbiEl2(op: number, w: Uint32Array): boolean {
    const asid = F.CMD_TLBI_ASID.get(w);
    const e2h = this.ctx.e2h();
    const world = e2h ? WORLD_NS_EL2_E2H : WORLD_NS_EL2;
    switch (op) {
      case F.CMD_TLBI_EL2_ALL:
        this.setScope(WORLD_NS_EL2, -1, -1, KIND_MASK_S1, true, false);
        this.tlb.invalidateScope(this.scope);
        this.setScope(WORLD_NS_EL2_E2H, -1, -1, KIND_MASK_S1, true, false);
        this.tlb.invalidateScope(this.scope);
        return true;
      case F.CMD_TLBI_EL2_ASID:
        this.setScope(WORLD_NS_EL2_E2H, -1, asid, KIND_MASK_S1, false, true);
        this.tlb.invalidateScope(this.scope);
        return true;
      case F.CMD_TLBI_EL2_VA:
        this.setScope(world, -1, e2h ? asid : -1, KIND_MASK_S1, true, false);
        return this.tlbiVa(w);
      default:
        this.setScope(world, -1, -1, KIND_MASK_S1, true, false);
        return this.tlbiVa(w);
    }
  }

  /** A by-VA invalidation in the current scope. VAs with bits [63:53] set hit nothing we cache. */
  private tlbiVa(w: Uint32Array): boolean {
    if (F.CMD_TLBI_ADDR_TOP.get(w) !== 0) return this.rangeFieldsLegal(w);
    return this.tlbiRange(w, F.CMD_TLBI_ADDR.get(w));
  }

  /** TG/NUM/SCALE/TTL checks: the Reserved encodings raise CERROR_ILL. */
  private rangeFieldsLegal(w: Uint32Array): boolean {
    if (!this.opts.rangeInvalidation) return true; // the fields are RES0 and ignored
    const tg = F.CMD_TLBI_TG.get(w);
    return tg === 0 || rangeEncodingLegal(tg, F.CMD_TLBI_NUM.get(w), F.CMD_TLBI_SCALE.get(w), F.CMD_TLBI_TTL.get(w));
  }

  private tlbiRange(w: Uint32Array, addr: number): boolean {
    const leaf = F.CMD_TLBI_LEAF.isSet(w);
    const tg = this.opts.rangeInvalidation ? F.CMD_TLBI_TG.get(w) : 0;
    if (tg === 0) {
      this.tlb.invalidateRange(this.scope, addr, addr + 1, 0, 0);
      if (!leaf) this.tlb.invalidateWalkRange(this.scope, addr, addr + 1);
      return true;
    }
    const ttl = F.CMD_TLBI_TTL.get(w);
    const num = F.CMD_TLBI_NUM.get(w);
    const scale = F.CMD_TLBI_SCALE.get(w);
    // (The fields decoded once for the check and the invalidation: this runs for every TLBI by address.)
    if (!rangeEncodingLegal(tg, num, scale, ttl)) return false;
    const granuleShift = tg === 1 ? 12 : tg === 2 ? 14 : 16;
    const pages = (num + 1) * POW2[scale];
    const end = addr + pages * POW2[granuleShift];
    this.tlb.invalidateRange(this.scope, addr, end, granuleShift, ttl);
    // Leaf == 0 also reaches the table descriptors used to translate the range; TTL and TG only
    // describe the leaves, so they do not narrow this.
    if (!leaf) this.tlb.invalidateWalkRange(this.scope, addr, end);
    return true;
  }

  // ---- ATC invalidation ----------------------------------------------------------------------

  private atcInvalidate(w: Uint32Array, sid: number): void {
    const size = F.CMD_ATC_SIZE.get(w);
    const all = size >= 52 || F.CMD_ATC_ADDR_TOP.get(w) !== 0;
    const bytes = all ? Infinity : 4096 * 2 ** size;
    const addr = F.CMD_ATC_ADDR.get(w);
    const inv: AtcInvalidation = {
      ssid: F.CMD_SSV.isSet(w) ? F.CMD_SUBSTREAMID.get(w) : null,
      global: F.CMD_ATC_GLOBAL.isSet(w),
      addr: all ? 0 : addr - (addr % bytes),
      size: bytes,
    };
    const id = this.ctx.atc.nextId++;
    this.atcPending.set(id, this.scheduler.now + this.opts.timing.atcInvTimeoutNs);
    this.stats.atcInvalidations++;
    const ep = this.ctx.endpoint(sid);
    if (ep === undefined) {
      if (log.enabled) log('%s %s: CMD_ATC_INV for StreamID %d: no endpoint answers', vtime(this.scheduler.now), this.opts.name, sid);
      return;
    }
    ep.invalidateAtc(inv, () => {
      if (this.atcPending.delete(id)) {
        if (this.atcPending.size === 0) this.kick();
      } else if (!this.ctx.atc.orphans.delete(id)) {
        // Sent by a queue since stopped, and taken over by another queue's CMD_SYNC (or answered
        // after the SMMU gave up on it: nobody is waiting).
        const q = this.ctx.atc.adopted.get(id);
        if (q !== undefined) {
          this.ctx.atc.adopted.delete(id);
          q.atcAnswered(id);
        }
      }
    });
  }

  /** An ATC invalidation this queue took over was answered. */
  atcAnswered(id: number): void {
    if (this.atcPending.delete(id) && this.atcPending.size === 0) this.kick();
  }

  // ---- CMD_SYNC --------------------------------------------------------------------------------

  private sync(w: Uint32Array): number {
    let cs = F.CMD_SYNC_CS.get(w);
    if (cs === 3) return EXEC_ILL;
    if (this.hooks !== null && this.hooks.syncCs !== 'smmu' && cs !== F.SYNC_CS_NONE) {
      if (this.hooks.syncCs === 'ill') return EXEC_ILL;
      cs = F.SYNC_CS_NONE;
    }
    const orphans = this.ctx.atc.orphans;
    if (orphans.size > 0) {
      // Invalidations of a stopped queue: this CMD_SYNC is the next one the SMMU executes.
      for (const [id, deadline] of orphans) {
        this.atcPending.set(id, deadline);
        this.ctx.atc.adopted.set(id, this);
      }
      orphans.clear();
    }
    if (this.atcPending.size > 0) {
      let earliest = Infinity;
      for (const d of this.atcPending.values()) earliest = Math.min(earliest, d);
      if (earliest <= this.scheduler.now) {
        this.stats.atcTimeouts += this.atcPending.size;
        if (this.ctx.atc.adopted.size > 0) for (const id of this.atcPending.keys()) this.ctx.atc.adopted.delete(id);
        this.atcPending.clear();
        return EXEC_ATC_TIMEOUT;
      }
      // Retry this CMD_SYNC alone then; what follows it is paid for by the kick after it.
      if (this.scheduleStep(earliest - this.scheduler.now)) this.stepBudget = 1;
      return EXEC_WAIT;
    }
    // Records of transactions terminated before the sync become visible first.
    this.events.flush();
    this.stats.syncs++;
    if (cs === F.SYNC_CS_IRQ) {
      const addr = F.CMD_SYNC_MSIADDR.get(w);
      if (this.opts.msi && addr !== 0) {
        this.irq.stats.msi['cmdq-sync']++;
        this.irq.msi('cmdq-sync', addr, F.CMD_SYNC_MSIDATA.get(w));
      } else {
        this.irq.wired('cmdq-sync');
      }
    } else if (cs === F.SYNC_CS_SEV && this.opts.sev) {
      this.irq.stats.sev++;
    }
    return EXEC_OK;
  }

  /** Software acknowledged CMDQ_ERR: clear CONS.ERR's meaning and continue from CONS. */
  resumeAfterError(): void {
    this.kick();
  }
}
