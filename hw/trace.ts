/**
 * The one structured trace stream. Every layer emits typed events into the machine's trace; scenarios
 * and tests record and assert on it, and the CLI exports it as Chrome Trace Event JSON.
 *
 * Emitting is cheap when nobody listens: callers test `trace.active` before building an event, so a
 * hot path (TLB-hit translation) allocates nothing while tracing is off.
 */
import { EventEmitter } from 'eventemitter3';
import { traceEventDecl, type TraceEventId } from './trace-events.js';

export { TRACE_EVENTS, type TraceEventId, type TraceEventDecl } from './trace-events.js';

/** Fields every event carries. `time` is virtual nanoseconds; `track` names the device (a DT path). */
interface TraceBase {
  time: number;
  track: string;
}

export type TraceEvent =
  | (TraceBase & {
      kind: 'mmio';
      op: 'read' | 'write';
      pa: number;
      offset: number;
      width: 32 | 64;
      value: bigint;
      /** The register's name as the model calls it (SMMU_CR0, CBn_FSR, …), when the model names it. */
      reg?: string | null;
    })
  | (TraceBase & { kind: 'irq'; line: string })
  | (TraceBase & { kind: 'msi'; address: number; data: number })
  | (TraceBase & {
      kind: 'dma';
      op: 'read' | 'write';
      streamId: number;
      ssid: number | null;
      addr: number;
      len: number;
      outcome: string;
      /** physical address the access landed at, when it reached memory */
      pa: number | null;
      /** When the transaction was issued (`time` is its completion): the trace shows it as a slice. */
      start?: number;
    })
  | (TraceBase & { kind: 'probe'; driver: string | null; result: 'bound' | 'deferred' | 'failed' | 'no-driver'; error: string | null })
  | (TraceBase & { kind: 'sched'; label: string })
  | (TraceBase & { kind: 'work'; label: string; phase: 'queued' | 'start' | 'end' })
  | (TraceBase & { kind: 'log'; level: 'info' | 'warn' | 'err'; message: string })
  | (TraceBase & { kind: 'custom'; name: TraceEventId; args: Record<string, unknown> })
  /** A sampled quantity (queue occupancy, …): a counter track per `name` on the device. */
  | (TraceBase & { kind: 'counter'; name: string; value: number });

export type TraceKind = TraceEvent['kind'];

export class Trace {
  private readonly emitter = new EventEmitter();
  private listeners = 0;

  /** True while anybody is listening; check it before building an event on a hot path. */
  get active(): boolean {
    return this.listeners > 0;
  }

  emit(event: TraceEvent): void {
    if (this.listeners > 0) this.emitter.emit('event', event);
  }

  /** Subscribe to every event; returns the unsubscribe function. */
  subscribe(fn: (e: TraceEvent) => void): () => void {
    this.emitter.on('event', fn);
    this.listeners++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.emitter.off('event', fn);
      this.listeners--;
    };
  }

  /** Record events (optionally of some kinds only) until `stop()` is called. */
  record(kinds?: readonly TraceKind[]): TraceRecording {
    const events: TraceEvent[] = [];
    const filter = kinds ? new Set<string>(kinds) : null;
    const stop = this.subscribe((e) => {
      if (!filter || filter.has(e.kind)) events.push(e);
    });
    return { events, stop };
  }
}

export interface TraceRecording {
  readonly events: TraceEvent[];
  stop(): void;
}

/**
 * The name an event shows under (Perfetto, `--trace-filter`): what it is, not how it was emitted.
 * MMIO: the register name (`+0xOFF` when the model has none); DMA: `DMA_READ`/`DMA_WRITE`; a
 * catalogue event: its declared display name (`CMD_SYNC`, `F_TRANSLATION`, …).
 */
export function traceEventName(e: TraceEvent): string {
  switch (e.kind) {
    case 'mmio':
      return e.reg ?? `+0x${e.offset.toString(16)}`;
    case 'dma':
      return e.op === 'write' ? 'DMA_WRITE' : 'DMA_READ';
    case 'probe':
      return `probe ${e.result}`;
    case 'irq':
      return `IRQ ${e.line}`;
    case 'msi':
      return 'MSI';
    case 'sched':
      return e.label;
    case 'work':
      return e.label;
    case 'log':
      return e.message;
    case 'counter':
      return e.name;
    case 'custom': {
      const decl = traceEventDecl(e.name);
      return decl?.display ? decl.display(e.args) : e.name;
    }
  }
}

/** The category an event is filed under (its kind, or a catalogue event's declared category). */
export function traceEventCategory(e: TraceEvent): string {
  return e.kind === 'custom' ? (traceEventDecl(e.name)?.category ?? 'custom') : e.kind;
}
