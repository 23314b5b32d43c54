/**
 * The trace as a trace-processing library reads it: tracelib (DevTools' TracingModel) loads
 * `run --trace` output; each machine is a process of its own, devices are named threads, events
 * are named for what they are, slices have durations, and time never goes back on a track.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Tracelib from 'tracelib';
import { describe, expect, it, vi } from 'vitest';
import { runCli } from './run-cli.js';

interface TlEvent {
  name: string;
  startTime: number;
  duration?: number;
  phase: string;
}
interface TlThread {
  name(): string;
  events(): TlEvent[];
}
interface TlProcess {
  name(): string;
  sortedThreads(): TlThread[];
}

function load(file: string): TlProcess[] {
  const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
  try {
    const json = JSON.parse(readFileSync(file, 'utf8')) as { traceEvents: unknown[] };
    const Lib = ((Tracelib as { default?: unknown }).default ?? Tracelib) as new (events: unknown[]) => {
      _performanceModel: { tracingModel(): { sortedProcesses(): TlProcess[] } };
    };
    return new Lib(json.traceEvents)._performanceModel.tracingModel().sortedProcesses();
  } finally {
    warn.mockRestore();
  }
}

describe('run --trace, loaded by a trace processor', () => {
  const dir = mkdtempSync(join(tmpdir(), 'iommu-sim-trace-'));

  it('has a process per machine, device tracks, named events, slices and monotonic time', async () => {
    const file = join(dir, 'trace.json');
    const r = await runCli(['run', 'boot-virt', 'smmu-v3-fault', '--trace', file]);
    expect(r.status).toBe(0);
    const procs = load(file);
    expect(procs.map((p) => p.name())).toEqual(['boot-virt: machine 1', 'smmu-v3-fault: machine 1']);
    const fault = procs[1];
    const threads = new Map(fault.sortedThreads().map((t) => [t.name(), t]));
    expect([...threads.keys()]).toEqual(expect.arrayContaining(['/iommu@9050000', '/dma@c010000']));
    const smmu = threads.get('/iommu@9050000')!.events().map((e) => e.name);
    // Commands by opcode, the event by its type, registers by the model's names.
    expect(smmu).toEqual(expect.arrayContaining(['CMD_SYNC', 'CMD_CFGI_STE', 'F_TRANSLATION', 'CMDQ_PROD', 'CR0', 'CMDQ consume']));
    expect(smmu).not.toContain('smmu-v3 command');
    // A DMA transaction is a slice from issue to completion.
    const dma = threads.get('/dma@c010000')!.events().filter((e) => e.name === 'DMA_READ' || e.name === 'DMA_WRITE');
    expect(dma.length).toBeGreaterThan(0);
    expect(dma.map((e) => e.phase)).toEqual(dma.map(() => 'X'));
    expect(dma.map((e) => typeof e.duration)).toEqual(dma.map(() => 'number'));
    for (const p of procs) {
      for (const t of p.sortedThreads()) {
        const ts = t.events().map((e) => e.startTime);
        expect(ts, `${p.name()} ${t.name()}`).toEqual([...ts].sort((a, b) => a - b));
      }
    }
  });

  it('--trace-filter keeps only the events whose name matches a glob', async () => {
    const file = join(dir, 'filtered.json');
    const r = await runCli(['run', 'smmu-v3-fault', '--trace', file, '--trace-filter', 'CMD_*', 'F_*']);
    expect(r.status).toBe(0);
    const names = new Set(load(file).flatMap((p) => p.sortedThreads().flatMap((t) => t.events().map((e) => e.name))));
    names.delete('process_name');
    names.delete('thread_name');
    expect([...names].every((n) => n.startsWith('CMD_') || n.startsWith('F_'))).toBe(true);
    expect(names).toContain('F_TRANSLATION');
  });

  it('a stall is a slice until its CMD_RESUME; command-queue batches are slices; occupancy is a counter', async () => {
    const file = join(dir, 'stall.json');
    const r = await runCli(['run', 'smmu-v3-stall', '--trace', file]);
    expect(r.status).toBe(0);
    const raw = JSON.parse(readFileSync(file, 'utf8')) as { traceEvents: { name: string; ph: string; dur?: number; args?: Record<string, unknown> }[] };
    const stalls = raw.traceEvents.filter((e) => e.ph === 'X' && e.name.startsWith('stalled until CMD_RESUME'));
    expect(stalls.length).toBeGreaterThan(0);
    expect(stalls.every((e) => (e.dur ?? 0) > 0)).toBe(true);
    expect(raw.traceEvents.some((e) => e.ph === 'X' && e.name === 'CMDQ consume' && (e.dur ?? 0) > 0)).toBe(true);
    const occupancy = raw.traceEvents.filter((e) => e.ph === 'C' && e.name === 'CMDQ occupancy');
    expect(occupancy.some((e) => (e.args?.['value'] as number) > 0)).toBe(true);
    // The trace processor loads it too.
    expect(load(file).map((p) => p.name())).toEqual(['smmu-v3-stall: machine 1']);
  });

  it('boot --trace-filter: globs keep matching names, a leading ! drops them', async () => {
    const file = join(dir, 'boot.json');
    const r = await runCli(['boot', '--trace', file, '--trace-filter', 'CMD_*', '!CMD_SYNC']);
    expect(r.status).toBe(0);
    const raw = JSON.parse(readFileSync(file, 'utf8')) as { traceEvents: { name: string; ph: string }[] };
    const names = new Set(raw.traceEvents.filter((e) => e.ph !== 'M').map((e) => e.name));
    expect(names).toContain('CMD_CFGI_STE');
    expect(names).not.toContain('CMD_SYNC');
    expect([...names].every((n) => n.startsWith('CMD_'))).toBe(true);
  });
});
