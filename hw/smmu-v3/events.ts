/**
 * The SMMUv3 Event queue: event records as the architecture lays them out, written into the queue
 * in memory in scheduler steps, with the Event queue interrupt.
 *
 * Supports: every record field the model produces (Type, SSV, SubstreamID, StreamID, STAG, Stall,
 * PnU, InD, RnW, S2, CLASS, TTRnW, InputAddr, IPA, FetchAddr); overflow (a record that finds the
 * queue full is discarded, counted, and PROD.OVFLG toggles unless an overflow is already
 * unacknowledged); stall records never discarded but held until the queue has room again; records
 * lost while EVENTQEN == 0 (stall records kept until it is enabled); an abort writing the queue
 * (GERROR.EVENTQ_ABT_ERR, after which nothing is written until it is acknowledged); CMD_SYNC's
 * "prior events visible" guarantee (flush()).
 * Does not support: event merging (STE.MEV is ignored: every record is written), the Secure queue.
 */
import { vtime } from '../vtime.js';
import createDebug from 'debug';
import { BusError } from '../memory.js';
import type { Scheduler } from '../scheduler.js';
import type { Trace } from '../trace.js';
import type { WalkMemory } from '../walker/walker.js';
import { hi32, lo32 } from '../bitfield.js';
import * as F from './formats.js';
import type { Interrupts } from './interrupts.js';
import type { ResolvedOptions } from './options.js';
import { SmmuQueue } from './queue.js';
import { GERROR_EVENTQ_ABT_ERR, Q_OVFLG } from './regs.js';

const log = createDebug('iommu:hw:smmu-v3:evtq');

/** Where records are written: memory that can also be stored to. */
export interface QueueMemory extends WalkMemory {
  write32(pa: number, v: number): void;
  /** The 4 KiB frame holding `pa` as little-endian words, made resident; throws BusError outside RAM. */
  words32(pa: number): Uint32Array;
}

/** One event record, before encoding. */
export class EventRecord {
  stag = 0;
  stall = false;
  ssv = false;
  ssid = 0;
  pnu = false;
  ind = false;
  rnw = false;
  s2 = false;
  cls = 0;
  ttrnw = false;
  inputAddr = 0;
  ipa = -1;
  fetchAddr = -1;

  constructor(
    readonly type: number,
    readonly sid: number,
  ) {}

  get name(): string {
    return F.EVENT_NAMES.get(this.type) ?? `event 0x${this.type.toString(16)}`;
  }

  /** Encode into 8 words (little-endian order of the 32-byte record). */
  encode(w: Uint32Array): void {
    w.fill(0);
    F.EVT_TYPE.set(w, this.type);
    F.EVT_STREAMID.set(w, this.sid >>> 0);
    if (this.ssv) F.EVT_SSV.set(w, 1);
    if (this.ssv || this.type === F.C_BAD_SUBSTREAMID) F.EVT_SUBSTREAMID.set(w, this.ssid);
    F.EVT_STAG.set(w, this.stag);
    if (this.stall) F.EVT_STALL.set(w, 1);
    if (this.pnu) F.EVT_PNU.set(w, 1);
    if (this.ind) F.EVT_IND.set(w, 1);
    if (this.rnw) F.EVT_RNW.set(w, 1);
    if (this.s2) F.EVT_S2.set(w, 1);
    F.EVT_CLASS.set(w, this.cls);
    if (this.ttrnw) F.EVT_TTRNW.set(w, 1);
    w[F.EVT_INPUTADDR_WORD] = lo32(this.inputAddr);
    w[F.EVT_INPUTADDR_WORD + 1] = hi32(this.inputAddr);
    if (this.fetchAddr >= 0) F.EVT_FETCHADDR.set(w, this.fetchAddr - (this.fetchAddr % 8));
    else if (this.ipa >= 0) F.EVT_IPA.set(w, this.ipa - (this.ipa % 4096));
  }
}

/** Remove the stall records of (sid, stag) from `recs`, in place (a CMD_RESUME makes no new array). */
function dropStall(recs: EventRecord[], sid: number, stag: number): void {
  let keep = 0;
  for (let i = 0; i < recs.length; i++) {
    const r = recs[i];
    if (!(r.stall && r.sid === sid && r.stag === stag)) recs[keep++] = r;
  }
  recs.length = keep;
}

/** A frame's words are the little-endian words of memory only on a little-endian host. */
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Store a record's words at `addr`: through the frame's words when the record lies in one frame (an
 * aligned queue entry always does: one frame lookup, not one per word), word by word otherwise. A
 * BusError leaves memory untouched either way (the first word's store is the one that throws).
 */
function writeRecord(mem: QueueMemory, addr: number, words: Uint32Array): void {
  const off = addr & 0xfff;
  if (HOST_LITTLE_ENDIAN && (off & 3) === 0 && off + words.length * 4 <= 0x1000) {
    mem.words32(addr).set(words, off >>> 2);
    return;
  }
  for (let i = 0; i < words.length; i++) mem.write32(addr + i * 4, words[i]);
}

export interface EventQueueStats {
  /** Records written to the queue. */
  written: number;
  /** Records discarded because the queue was full (the overflow condition). */
  overflowed: number;
  /** Records discarded because EVENTQEN was 0 or EVENTQ_ABT_ERR was active. */
  dropped: number;
  /** Record writes that aborted. */
  writeAborts: number;
}

export class EventQueue {
  readonly q: SmmuQueue;
  /** CR0ACK.EVENTQEN. */
  enabled = false;
  readonly stats: EventQueueStats = { written: 0, overflowed: 0, dropped: 0, writeAborts: 0 };
  private pending: EventRecord[] = [];
  /** Stall records that found the queue full or disabled: written when it can take them. */
  private held: EventRecord[] = [];
  private flushScheduled = false;
  private readonly words = new Uint32Array(F.EVT_WORDS);
  /** Observers of every record written (tests, traces). */
  onWrite: ((rec: EventRecord) => void) | null = null;
  /** The flush step's callback and label, made once (not a closure and a string per step). */
  private readonly flushStep = (): void => {
    this.flushScheduled = false;
    this.flush();
  };
  private readonly flushLabel: string;

  constructor(
    private readonly opts: ResolvedOptions,
    private readonly scheduler: Scheduler,
    private readonly mem: QueueMemory,
    private readonly irq: Interrupts,
    private readonly trace: Trace | null,
  ) {
    this.q = new SmmuQueue('EVTQ', F.EVT_BYTES, opts.evtqLog2);
    this.flushLabel = `${opts.name} EVTQ write`;
  }

  /** Queue a record; it reaches memory in a scheduler step. */
  post(rec: EventRecord): void {
    this.pending.push(rec);
    this.scheduleFlush(this.opts.timing.eventNs);
  }

  /** Stall records waiting for room (tests). */
  get heldCount(): number {
    return this.held.length;
  }

  /** Records posted and not yet written or discarded. */
  get pendingCount(): number {
    return this.pending.length + this.held.length;
  }

  /** Software moved CONS (room may have appeared) or the queue was enabled: retry held records. */
  kick(): void {
    if (this.held.length > 0) this.scheduleFlush(this.opts.timing.eventNs);
  }

  /** Drop held stall records of transactions that no longer exist (terminated by STALL_TERM etc.). */
  forgetStall(sid: number, stag: number): void {
    dropStall(this.held, sid, stag);
    dropStall(this.pending, sid, stag);
  }

  private scheduleFlush(delay: number): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    this.scheduler.schedule(delay, this.flushStep, this.flushLabel);
  }

  get overflowActive(): boolean {
    return Q_OVFLG.isSet(this.q.prod ^ this.q.cons);
  }

  /** Write every pending record now (a step, or CMD_SYNC making prior events visible). */
  flush(): void {
    if (this.pending.length === 0 && this.held.length === 0) return;
    const work = this.held.length > 0 ? [...this.held, ...this.pending] : this.pending;
    this.held = [];
    this.pending = [];
    let written = 0;
    for (const rec of work) {
      if (!this.enabled || this.irq.isActive(GERROR_EVENTQ_ABT_ERR.mask)) {
        if (rec.stall) this.held.push(rec);
        else this.stats.dropped++;
        continue;
      }
      if (this.q.isFull()) {
        if (rec.stall) {
          this.held.push(rec);
          continue;
        }
        this.stats.overflowed++;
        if (!this.overflowActive) this.q.prod = (this.q.prod ^ Q_OVFLG.mask) >>> 0;
        if (log.enabled) log('%s %s: event queue full, %s for StreamID %d lost', vtime(this.scheduler.now), this.opts.name, rec.name, rec.sid);
        continue;
      }
      const addr = this.q.entryAddr(this.q.prod);
      rec.encode(this.words);
      try {
        writeRecord(this.mem, addr, this.words);
      } catch (e) {
        if (!(e instanceof BusError)) throw e;
        this.stats.writeAborts++;
        if (log.enabled) log('%s %s: writing the event queue at 0x%s aborted', vtime(this.scheduler.now), this.opts.name, addr.toString(16));
        this.irq.activateError(GERROR_EVENTQ_ABT_ERR.mask);
        if (rec.stall) this.held.push(rec);
        continue;
      }
      this.q.prod = SmmuQueue.withPtr(this.q.prod, this.q.next(this.q.prod), this.q.ptrMask);
      this.stats.written++;
      written++;
      if (this.trace?.active) {
        this.trace.emit({
          kind: 'custom',
          time: this.scheduler.now,
          track: this.opts.name,
          name: 'smmu-v3 event',
          args: { type: rec.name, sid: rec.sid, ssid: rec.ssv ? rec.ssid : null, addr: rec.inputAddr, stall: rec.stall, stag: rec.stag },
        });
      }
      this.onWrite?.(rec);
    }
    if (written > 0) this.irq.raise('eventq');
  }
}
