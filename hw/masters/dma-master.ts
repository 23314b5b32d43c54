/**
 * A DMA master: a device that issues memory transactions upstream.
 *
 * Each of its stream IDs is routed to a DmaPort: the IOMMU model its firmware names, or the
 * interconnect when there is none. Transactions carry the SSID (PASID) and the read/write/exec/
 * privileged attributes; the answer is a DmaCompletion, through a callback (which the port may run
 * synchronously, or later when the transaction stalls) or a Promise. A failure is a status, never
 * an exception; only a request the master itself could never make (an unknown stream ID, an SSID
 * wider than the master supports) throws, synchronously, as a programming error.
 *
 * The master emits one `dma` trace event per transaction when it completes: the address it issued,
 * the outcome, and the physical address it landed at (and a line on `iommu:hw:dma` when enabled).
 */
import createDebug from 'debug';
import { DmaRequestRecord, type DmaCompletion, type DmaDone, type DmaPort, type DmaRequest, type DmaStatus } from '../dma.js';
import type { Trace } from '../trace.js';
import { vtime } from '../vtime.js';

const log = createDebug('iommu:hw:dma');

/** Where one stream ID of a master goes. */
export interface StreamRoute {
  streamId: number;
  port: DmaPort;
  /** DT path of the IOMMU whose port this is, or null when the stream reaches memory directly. */
  iommu: string | null;
}

export interface DmaOptions {
  /** Substream ID (PASID); absent: a transaction without one. */
  ssid?: number;
  exec?: boolean;
  priv?: boolean;
  /** Which of the master's stream IDs to use (default: its first). */
  streamId?: number;
}

/** What a master needs of the machine. */
export interface MasterContext {
  readonly trace: Trace;
  now(): number;
}

export interface DmaMasterStats {
  issued: number;
  ok: number;
  failed: number;
  /** Issued and not completed yet (stalled, or waiting for a page response). */
  outstanding: number;
  /** Failed transactions by completion status. */
  failedBy: Record<Exclude<DmaStatus, 'ok'>, number>;
}

/** Sees every transaction of a master when it completes: what was asked, the answer, when. */
export type TransactionObserver = (req: DmaRequest, c: DmaCompletion, time: number) => void;

export class DmaMaster {
  private readonly routes: StreamRoute[];
  private observers: TransactionObserver[] = [];
  /** The route `route` found last (routes are changed in place, never replaced). */
  private lastRoute: StreamRoute | null = null;
  /** SSIDs the master can issue are below this (2^pasidBits). */
  private readonly ssidLimit: number;
  readonly stats: DmaMasterStats = {
    issued: 0,
    ok: 0,
    failed: 0,
    outstanding: 0,
    failedBy: { 'bus-error': 0, abort: 0, fault: 0, terminated: 0, 'not-issued': 0 },
  };

  constructor(
    /** The master's DT path. */
    readonly name: string,
    routes: readonly StreamRoute[],
    protected readonly ctx: MasterContext,
    /** Width of the SSIDs the master can issue (0: none). */
    readonly pasidBits = 0,
  ) {
    if (routes.length === 0) throw new Error(`DMA master ${name} needs at least one stream`);
    if (!Number.isInteger(pasidBits) || pasidBits < 0 || pasidBits > 20) {
      throw new RangeError(`DMA master ${name}: pasid bits ${pasidBits} outside 0..20`);
    }
    this.routes = routes.map((r) => ({ ...r }));
    this.ssidLimit = 2 ** pasidBits;
  }

  get streamIds(): number[] {
    return this.routes.map((r) => r.streamId);
  }

  get streams(): readonly StreamRoute[] {
    return this.routes;
  }

  /** The port of the first stream. */
  get port(): DmaPort {
    return this.routes[0].port;
  }

  /** Observe every completed transaction (accounting); returns the function that stops observing. */
  onTransaction(observer: TransactionObserver): () => void {
    this.observers = [...this.observers, observer];
    return () => {
      this.observers = this.observers.filter((o) => o !== observer);
    };
  }

  /** Re-route a stream (the machine does it when it puts an IOMMU model in front of the master). */
  setRoute(streamId: number, port: DmaPort, iommu: string | null): void {
    const r = this.route(streamId);
    r.port = port;
    r.iommu = iommu;
  }

  /** Callback form of a read; `done` may run before this returns. */
  submitRead(addr: number, len: number, opts: DmaOptions, done: DmaDone): void {
    this.submit(this.request(addr, len, false, undefined, opts), done);
  }

  /** Callback form of a write; `done` may run before this returns. */
  submitWrite(addr: number, data: Uint8Array, opts: DmaOptions, done: DmaDone): void {
    this.submit(this.request(addr, data.length, true, data, opts), done);
  }

  read(addr: number, len: number, opts: DmaOptions = {}): Promise<DmaCompletion> {
    return new Promise((resolve) => this.submitRead(addr, len, opts, resolve));
  }

  write(addr: number, data: Uint8Array, opts: DmaOptions = {}): Promise<DmaCompletion> {
    return new Promise((resolve) => this.submitWrite(addr, data, opts, resolve));
  }

  /** Build and validate a request; throws for requests this master could never make. */
  protected request(addr: number, len: number, write: boolean, data: Uint8Array | undefined, opts: DmaOptions): DmaRequest {
    const route = opts.streamId === undefined ? this.routes[0] : this.route(opts.streamId);
    const ssidValid = opts.ssid !== undefined;
    const ssid = opts.ssid ?? 0;
    if (ssidValid && (!Number.isInteger(ssid) || ssid < 0 || ssid >= this.ssidLimit)) {
      throw new RangeError(
        `DMA master ${this.name}: SSID ${ssid} does not fit its ${this.pasidBits} PASID bit(s)`,
      );
    }
    if (!Number.isInteger(len) || len <= 0) throw new RangeError(`DMA master ${this.name}: length ${len} is not a positive integer`);
    return new DmaRequestRecord(this.name, route.streamId, ssid, ssidValid, addr, len, write, opts.exec ?? false, opts.priv ?? false, undefined, data);
  }

  /** Send a request upstream on its stream's port, counting and tracing the outcome. */
  protected submit(req: DmaRequest, done: DmaDone): void {
    this.stats.issued++;
    this.stats.outstanding++;
    const issued = this.ctx.now();
    this.issue(req, (c) => {
      this.stats.outstanding--;
      if (c.status === 'ok') this.stats.ok++;
      else {
        this.stats.failed++;
        this.stats.failedBy[c.status]++;
      }
      const obs = this.observers;
      if (obs.length > 0) {
        const t = this.ctx.now();
        for (const o of obs) o(req, c, t);
      }
      const trace = this.ctx.trace;
      if (trace.active) {
        trace.emit({
          kind: 'dma',
          time: this.ctx.now(),
          track: this.name,
          op: req.write ? 'write' : 'read',
          streamId: req.streamId,
          ssid: req.ssidValid ? req.ssid : null,
          addr: req.addr,
          len: req.len,
          outcome: c.detail ? `${c.status}: ${c.detail}` : c.status,
          pa: c.pa ?? null,
          start: issued,
        });
      }
      if (log.enabled) {
        const ssid = req.ssidValid ? ` ssid ${req.ssid}` : '';
        const pa = c.pa !== undefined ? ` -> PA 0x${c.pa.toString(16)}` : '';
        log('%s %s: %s sid 0x%s%s 0x%s+%d: %s%s', vtime(this.ctx.now()), this.name, req.write ? 'write' : 'read', req.streamId.toString(16), ssid, req.addr.toString(16), req.len, c.detail ? `${c.status}: ${c.detail}` : c.status, pa);
      }
      done(c);
    });
  }

  /** How the request travels; subclasses (a PCIe endpoint with ATS) put their own logic here. */
  protected issue(req: DmaRequest, done: DmaDone): void {
    this.portOf(req.streamId).submit(req, done);
  }

  protected portOf(streamId: number): DmaPort {
    return this.route(streamId).port;
  }

  private route(streamId: number): StreamRoute {
    // A master issues on one stream most of the time: that route is checked first.
    const last = this.lastRoute;
    if (last !== null && last.streamId === streamId) return last;
    for (const r of this.routes) {
      if (r.streamId === streamId) {
        this.lastRoute = r;
        return r;
      }
    }
    throw new RangeError(`DMA master ${this.name} has no stream ID ${streamId} (it has ${this.streamIds.join(', ')})`);
  }
}
