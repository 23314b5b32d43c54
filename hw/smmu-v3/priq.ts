/**
 * The SMMUv3 PRI queue: PCIe Page Request messages recorded as PRI queue entries, and the PRG
 * responses the SMMU returns to endpoints, either because software issued CMD_PRI_RESP or
 * automatically.
 *
 * Supports: entries with StreamID, SubstreamID/SSV, Priv/Exec/Read/Write, Last, PRGIndex and page
 * address, written in scheduler steps; the PRI queue interrupt (with PRIQ_IRQ_CFG2.LO: only for
 * Last == 1 entries); overflow per the spec's "PRI queue overflow": an unacknowledged overflow (or a
 * full queue, which starts one and toggles PROD.OVFLG) discards incoming requests, and discarded
 * Last == 1 requests get an automatic Success response (carrying the PASID when IDR3.PPS == 1, or
 * STE.PPAR == 1 with a valid STE; Response Failure without PASID when the STE cannot be checked);
 * PRIQEN == 0 or an active PRIQ_ABT_ERR answers every request with Response Failure; a queue write
 * abort raises GERROR.PRIQ_ABT_ERR and auto-responds Response Failure; Stop Markers (Last, no R/W,
 * with a PASID) are never answered automatically.
 * Does not support: Secure streams.
 */
import { vtime } from '../vtime.js';
import createDebug from 'debug';
import type { AtsEndpoint, PageRequest, PageResponseCode } from '../dma.js';
import { BusError } from '../memory.js';
import type { Scheduler } from '../scheduler.js';
import type { Trace } from '../trace.js';
import type { QueueMemory } from './events.js';
import * as F from './formats.js';
import type { Interrupts } from './interrupts.js';
import type { ResolvedOptions } from './options.js';
import { SmmuQueue } from './queue.js';
import { GERROR_PRIQ_ABT_ERR, PRIQ_IRQ_CFG2_LO, Q_OVFLG } from './regs.js';

const log = createDebug('iommu:hw:smmu-v3:priq');

export interface PriQueueStats {
  /** Entries written to the PRI queue. */
  written: number;
  /** Requests discarded in an overflow condition. */
  overflowed: number;
  /** Automatic PRG responses sent. */
  autoResponses: number;
  /** Responses sent because software issued CMD_PRI_RESP. */
  responses: number;
}

/** How the PRI queue asks the rest of the SMMU about a stream (for automatic responses). */
export interface PriContext {
  /** The endpoint bound to a StreamID, if any. */
  endpoint(sid: number): AtsEndpoint | undefined;
  /** STE.PPAR of a stream, or null when its STE cannot be located or is invalid. */
  ppar(sid: number): boolean | null;
}

export class PriQueue {
  readonly q: SmmuQueue;
  /** CR0ACK.PRIQEN. */
  enabled = false;
  readonly stats: PriQueueStats = { written: 0, overflowed: 0, autoResponses: 0, responses: 0 };
  private pending: PageRequest[] = [];
  private flushScheduled = false;
  private readonly words = new Uint32Array(F.PRIQ_WORDS);

  constructor(
    private readonly opts: ResolvedOptions,
    private readonly scheduler: Scheduler,
    private readonly mem: QueueMemory,
    private readonly irq: Interrupts,
    private readonly ctx: PriContext,
    private readonly trace: Trace | null,
  ) {
    this.q = new SmmuQueue('PRIQ', F.PRIQ_BYTES, opts.priqLog2);
  }

  get overflowActive(): boolean {
    return Q_OVFLG.isSet(this.q.prod ^ this.q.cons);
  }

  /** A Page Request message arrives; it is recorded (or answered) in a scheduler step. */
  receive(req: PageRequest): void {
    this.pending.push(req);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    this.scheduler.schedule(
      this.opts.timing.eventNs,
      () => {
        this.flushScheduled = false;
        this.flush();
      },
      `${this.opts.name} PRIQ write`,
    );
  }

  private flush(): void {
    const work = this.pending;
    this.pending = [];
    let raise = false;
    const loOnly = PRIQ_IRQ_CFG2_LO.isSet(this.irq.cfg.priq.cfg2);
    for (const req of work) {
      const stop = isStopMarker(req);
      if (!this.enabled || this.irq.isActive(GERROR_PRIQ_ABT_ERR.mask)) {
        if (!stop) this.autoRespond(req, 'failure', false);
        continue;
      }
      if (this.overflowActive || this.q.isFull()) {
        this.stats.overflowed++;
        if (!this.overflowActive) this.q.prod = (this.q.prod ^ Q_OVFLG.mask) >>> 0;
        if (log.enabled) log('%s %s: PRI queue overflow, request PRG %d from StreamID %d discarded', vtime(this.scheduler.now), this.opts.name, req.prgIndex, req.streamId);
        if (req.last && !stop) this.overflowResponse(req);
        continue;
      }
      const addr = this.q.entryAddr(this.q.prod);
      this.encode(req);
      try {
        for (let i = 0; i < F.PRIQ_WORDS; i++) this.mem.write32(addr + i * 4, this.words[i]);
      } catch (e) {
        if (!(e instanceof BusError)) throw e;
        if (log.enabled) log('%s %s: writing the PRI queue at 0x%s aborted', vtime(this.scheduler.now), this.opts.name, addr.toString(16));
        this.irq.activateError(GERROR_PRIQ_ABT_ERR.mask);
        if (!stop) this.autoRespond(req, 'failure', false);
        continue;
      }
      this.q.prod = SmmuQueue.withPtr(this.q.prod, this.q.next(this.q.prod), this.q.ptrMask);
      this.stats.written++;
      if (!loOnly || req.last) raise = true;
      if (this.trace?.active) {
        this.trace.emit({
          kind: 'custom',
          time: this.scheduler.now,
          track: this.opts.name,
          name: 'smmu-v3 page request',
          args: { sid: req.streamId, ssid: req.ssidValid ? req.ssid : null, addr: req.addr, prgIndex: req.prgIndex, last: req.last },
        });
      }
    }
    if (raise) this.irq.raise('priq');
  }

  private encode(req: PageRequest): void {
    const w = this.words;
    w.fill(0);
    F.PRIQ_STREAMID.set(w, req.streamId >>> 0);
    if (req.ssidValid) {
      F.PRIQ_SSV.set(w, 1);
      F.PRIQ_SUBSTREAMID.set(w, req.ssid);
      // Exec and Priv travel only in a PASID prefix.
      if (req.priv) F.PRIQ_PRIV.set(w, 1);
      if (req.exec) F.PRIQ_EXEC.set(w, 1);
    }
    if (req.read) F.PRIQ_READ.set(w, 1);
    if (req.write) F.PRIQ_WRITE.set(w, 1);
    if (req.last) F.PRIQ_LAST.set(w, 1);
    F.PRIQ_PRGINDEX.set(w, req.prgIndex & 0x1ff);
    F.PRIQ_ADDR.set(w, req.addr - (req.addr % 4096));
  }

  /** The automatic response to a Last == 1 request discarded in an overflow condition. */
  private overflowResponse(req: PageRequest): void {
    if (!req.ssidValid || this.opts.ssidBits === 0) {
      this.autoRespond(req, 'success', false);
      return;
    }
    if (this.opts.priPasidAutoResponse) {
      this.autoRespond(req, 'success', true);
      return;
    }
    const ppar = this.ctx.ppar(req.streamId);
    if (ppar === null) this.autoRespond(req, 'failure', false);
    else this.autoRespond(req, 'success', ppar);
  }

  private autoRespond(req: PageRequest, code: PageResponseCode, withPasid: boolean): void {
    this.stats.autoResponses++;
    this.deliver(req.streamId, req.prgIndex, withPasid && req.ssidValid ? req.ssid : 0, withPasid && req.ssidValid, code);
  }

  /** CMD_PRI_RESP: send a PRG response to the endpoint of `sid`. */
  respond(sid: number, prgIndex: number, ssidValid: boolean, ssid: number, code: PageResponseCode): void {
    this.stats.responses++;
    this.deliver(sid, prgIndex, ssid, ssidValid, code);
  }

  private deliver(sid: number, prgIndex: number, ssid: number, ssidValid: boolean, code: PageResponseCode): void {
    const ep = this.ctx.endpoint(sid);
    if (!ep) {
      if (log.enabled) log('%s %s: PRG response for StreamID %d has no endpoint to go to', vtime(this.scheduler.now), this.opts.name, sid);
      return;
    }
    ep.pageResponse({ prgIndex, ssid, ssidValid, code });
  }
}

/** A PRI Stop Marker: Last with neither read nor write, carrying a PASID. */
function isStopMarker(req: PageRequest): boolean {
  return req.ssidValid && req.last && !req.read && !req.write;
}
