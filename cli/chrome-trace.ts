/**
 * Export a recorded trace as Chrome Trace Event JSON (the format Perfetto and chrome://tracing
 * open): one process per machine (each has its own virtual clock starting at 0), one track
 * (thread) per device, virtual time as timestamps (µs, as the format wants).
 *
 * Events are named for what they are (hw/trace.ts `traceEventName()`: register names, CMD_SYNC,
 * F_TRANSLATION, DMA_WRITE). Things that take time are slices: a DMA transaction from issue to
 * completion, a kernel work item from start to end, a stalled transaction until its RESUME
 * (SMMU v2 CBn_RESUME, SMMUv3 CMD_RESUME), a command-queue batch. Counters (queue occupancy) are counter tracks. Within a process, events are written in
 * time order.
 */
import { traceEventCategory, traceEventName, type TraceEvent } from '../hw/trace.js';

export interface ChromeEvent {
  name: string;
  cat: string;
  ph: string;
  ts: number;
  pid: number;
  tid: number;
  s?: string;
  dur?: number;
  args?: Record<string, unknown>;
}

export interface ChromeTrace {
  traceEvents: ChromeEvent[];
  /** Perfetto shows durations in this unit; virtual time is in nanoseconds. */
  displayTimeUnit: 'ns';
}

/** One process of the exported trace: one machine's recording, named in the viewer. */
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

const us = (ns: number): number => ns / 1000;

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
  // Tracks in order of first appearance; then the events, sorted by time (stable).
  for (const e of p.events) tidFor(e.track);
  const body: ChromeEvent[] = [];
  // Open work items and stalls, by track and label: their end closes the oldest.
  const open = new Map<string, TraceEvent[]>();
  const begin = (key: string, e: TraceEvent): void => {
    const l = open.get(key);
    if (l) l.push(e);
    else open.set(key, [e]);
  };
  const end = (key: string): TraceEvent | undefined => open.get(key)?.shift();
  for (const e of p.events) {
    const tid = tidFor(e.track);
    const name = traceEventName(e);
    const cat = traceEventCategory(e);
    const { kind: _kind, time, track: _track, ...rest } = e;
    const args = jsonValue(rest) as Record<string, unknown>;
    if (e.kind === 'dma' && e.start !== undefined && e.start <= e.time) {
      body.push({ name, cat, ph: 'X', ts: us(e.start), dur: us(e.time - e.start), pid, tid, args });
    } else if (e.kind === 'counter') {
      body.push({ name: e.name, cat, ph: 'C', ts: us(time), pid, tid, args: { value: e.value } });
    } else if (e.kind === 'work' && e.phase === 'start') {
      begin(`${e.track}\0work\0${e.label}`, e);
    } else if (e.kind === 'work' && e.phase === 'end') {
      const s = end(`${e.track}\0work\0${e.label}`);
      if (s) body.push({ name, cat, ph: 'X', ts: us(s.time), dur: us(time - s.time), pid, tid, args });
      else body.push({ name, cat, ph: 'i', s: 't', ts: us(time), pid, tid, args });
    } else if (e.kind === 'custom' && e.name === 'smmu-v3 event' && e.args['stall'] === true) {
      begin(`${e.track}\0v3stall\0${String(e.args['sid'])}`, e);
      body.push({ name, cat, ph: 'i', s: 't', ts: us(time), pid, tid, args });
    } else if (e.kind === 'custom' && e.name === 'smmu-v3 command' && e.args['command'] === 'CMD_RESUME') {
      const s = end(`${e.track}\0v3stall\0${String(e.args['sid'])}`);
      if (s) body.push({ name: `stalled until CMD_RESUME (SID 0x${Number(e.args['sid']).toString(16)})`, cat, ph: 'X', ts: us(s.time), dur: us(time - s.time), pid, tid, args: jsonValue(s.kind === 'custom' ? s.args : {}) as Record<string, unknown> });
      body.push({ name, cat, ph: 'i', s: 't', ts: us(time), pid, tid, args });
    } else if (e.kind === 'custom' && e.name === 'smmu-v2.wait') {
      begin(`${e.track}\0stall\0${String(e.args['cb'])}`, e);
      body.push({ name, cat, ph: 'i', s: 't', ts: us(time), pid, tid, args });
    } else if (e.kind === 'custom' && e.name === 'smmu-v2.resume') {
      const key = `${e.track}\0stall\0${String(e.args['cb'])}`;
      let s = end(key);
      const first = s;
      // Every transaction held on the bank is answered by this one RESUME.
      while (s) s = end(key);
      if (first) body.push({ name: `stalled until RESUME (CB${String(e.args['cb'])})`, cat, ph: 'X', ts: us(first.time), dur: us(time - first.time), pid, tid, args });
      body.push({ name, cat, ph: 'i', s: 't', ts: us(time), pid, tid, args });
    } else {
      body.push({ name, cat, ph: 'i', s: 't', ts: us(time), pid, tid, args });
    }
  }
  body.sort((a, b) => a.ts - b.ts);
  out.push(...body);
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
