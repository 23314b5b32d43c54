/**
 * Export a recorded trace as Chrome Trace Event JSON (the format Perfetto and chrome://tracing
 * open): one track (thread) per device, virtual time as timestamps (µs, as the format wants).
 *
 * Each recording is one process: `run` gives every scenario its own machine, whose virtual time
 * starts at 0 and whose devices share DT paths with the next scenario's, so putting them on one
 * set of tracks would interleave unrelated machines.
 */
import type { TraceEvent } from '../hw/trace.js';

interface ChromeEvent {
  name: string;
  cat: string;
  ph: string;
  ts: number;
  pid: number;
  tid: number;
  s?: string;
  args?: Record<string, unknown>;
}

export interface ChromeTrace {
  traceEvents: ChromeEvent[];
  /** Perfetto shows durations in this unit; virtual time is in nanoseconds. */
  displayTimeUnit: 'ns';
}

/** One process of the exported trace: a machine's recording, named in the viewer. */
export interface TraceProcess {
  name: string;
  events: readonly TraceEvent[];
}

export function toChromeTrace(events: readonly TraceEvent[], processName = 'iommu-sim'): ChromeTrace {
  return toChromeTraceProcesses([{ name: processName, events }]);
}

export function toChromeTraceProcesses(processes: readonly TraceProcess[]): ChromeTrace {
  const out: ChromeEvent[] = [];
  processes.forEach((p, i) => appendProcess(out, i + 1, p));
  return { traceEvents: out, displayTimeUnit: 'ns' };
}

function appendProcess(out: ChromeEvent[], pid: number, p: TraceProcess): void {
  const tids = new Map<string, number>();
  out.push({ name: 'process_name', cat: '__metadata', ph: 'M', ts: 0, pid, tid: 0, args: { name: p.name } });
  const tidFor = (track: string): number => {
    let t = tids.get(track);
    if (t === undefined) {
      t = tids.size + 1;
      tids.set(track, t);
      out.push({ name: 'thread_name', cat: '__metadata', ph: 'M', ts: 0, pid, tid: t, args: { name: track } });
    }
    return t;
  };
  for (const e of p.events) {
    const { kind, time, track, ...rest } = e;
    const args = jsonValue(rest) as Record<string, unknown>;
    out.push({ name: eventName(e), cat: kind, ph: 'i', s: 't', ts: time / 1000, pid, tid: tidFor(track), args });
  }
}

/** A value JSON.stringify can write: BigInts (anywhere, e.g. in `custom` args) become hex strings, bytes hex too. */
function jsonValue(v: unknown): unknown {
  if (typeof v === 'bigint') return `0x${v.toString(16)}`;
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  if (Array.isArray(v)) return v.map(jsonValue);
  if (v !== null && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = jsonValue(x);
    return o;
  }
  return v;
}

function eventName(e: TraceEvent): string {
  switch (e.kind) {
    case 'mmio':
      return `${e.op} +0x${e.offset.toString(16)}`;
    case 'dma':
      return `dma ${e.op} ${e.outcome}`;
    case 'probe':
      return `probe ${e.result}`;
    case 'irq':
      return `irq ${e.line}`;
    case 'msi':
      return 'msi';
    case 'sched':
      return e.label;
    case 'work':
      return `${e.label} ${e.phase}`;
    case 'log':
      return e.message;
    case 'custom':
      return e.name;
  }
}
