/**
 * Export a recorded trace as Chrome Trace Event JSON (the format Perfetto and chrome://tracing
 * open): one track (thread) per device, virtual time as timestamps (µs, as the format wants).
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

export function toChromeTrace(events: readonly TraceEvent[], processName = 'iommu-sim'): { traceEvents: ChromeEvent[] } {
  const tids = new Map<string, number>();
  const out: ChromeEvent[] = [
    { name: 'process_name', cat: '__metadata', ph: 'M', ts: 0, pid: 1, tid: 0, args: { name: processName } },
  ];
  const tidFor = (track: string): number => {
    let t = tids.get(track);
    if (t === undefined) {
      t = tids.size + 1;
      tids.set(track, t);
      out.push({ name: 'thread_name', cat: '__metadata', ph: 'M', ts: 0, pid: 1, tid: t, args: { name: track } });
    }
    return t;
  };
  for (const e of events) {
    const { kind, time, track, ...rest } = e;
    const args: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(rest)) args[k] = typeof v === 'bigint' ? `0x${v.toString(16)}` : v;
    out.push({ name: eventName(e), cat: kind, ph: 'i', s: 't', ts: time / 1000, pid: 1, tid: tidFor(track), args });
  }
  return { traceEvents: out };
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
