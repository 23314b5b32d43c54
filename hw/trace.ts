/**
 * The one structured trace stream. Every layer emits typed events into the machine's trace; scenarios
 * and tests record and assert on it, and the CLI exports it as Chrome Trace Event JSON.
 *
 * Emitting is cheap when nobody listens: callers test `trace.active` before building an event, so a
 * hot path (TLB-hit translation) allocates nothing while tracing is off.
 */
import { EventEmitter } from 'eventemitter3';

/** Fields every event carries. `time` is virtual nanoseconds; `track` names the device (a DT path). */
interface TraceBase {
  time: number;
  track: string;
}

export type TraceEvent =
  | (TraceBase & { kind: 'mmio'; op: 'read' | 'write'; pa: number; offset: number; width: 32 | 64; value: bigint })
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
    })
  | (TraceBase & { kind: 'probe'; driver: string | null; result: 'bound' | 'deferred' | 'failed' | 'no-driver'; error: string | null })
  | (TraceBase & { kind: 'sched'; label: string })
  | (TraceBase & { kind: 'work'; label: string; phase: 'queued' | 'start' | 'end' })
  | (TraceBase & { kind: 'log'; level: 'info' | 'warn' | 'err'; message: string })
  | (TraceBase & { kind: 'custom'; name: string; args: Record<string, unknown> });

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
