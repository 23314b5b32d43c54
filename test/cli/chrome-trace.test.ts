/**
 * The trace export: Chrome Trace Event JSON as Perfetto reads it. One process per recording, one
 * thread (track) per device named by its DT path, instant events at virtual time in microseconds.
 */
import { describe, expect, it } from 'vitest';
import { toChromeTrace, toChromeTraceProcesses } from '../../cli/chrome-trace.js';
import type { TraceEvent } from '../../hw/trace.js';

const mmio: TraceEvent = { kind: 'mmio', time: 1500, track: '/iommu@9050000', op: 'write', pa: 0x905_0020, offset: 0x20, width: 64, value: 0x1_0000_0003n };
const irq: TraceEvent = { kind: 'irq', time: 2000, track: '/intc@8000000', line: 'SPI 74 (INTID 106)' };
const dma: TraceEvent = {
  kind: 'dma',
  time: 2500,
  track: '/dma@c000000',
  op: 'read',
  streamId: 0x100,
  ssid: null,
  addr: 0x1000,
  len: 64,
  outcome: 'fault',
  pa: null,
};
const custom: TraceEvent = { kind: 'custom', time: 3000, track: '/iommu@9050000', name: 'smmu-v3 command', args: { command: 'CMD_SYNC', words: [1n, 0xffn], raw: Uint8Array.of(0xab, 0x01) } };

describe('Chrome trace export', () => {
  it('puts each device on its own named thread and timestamps events with virtual time in µs', () => {
    const t = toChromeTrace([mmio, irq, dma, custom], 'boot virt');
    expect(t.displayTimeUnit).toBe('ns');
    const meta = t.traceEvents.filter((e) => e.ph === 'M');
    expect(meta).toEqual([
      { name: 'process_name', cat: '__metadata', ph: 'M', ts: 0, pid: 1, tid: 0, args: { name: 'boot virt' } },
      { name: 'thread_name', cat: '__metadata', ph: 'M', ts: 0, pid: 1, tid: 1, args: { name: '/iommu@9050000' } },
      { name: 'thread_name', cat: '__metadata', ph: 'M', ts: 0, pid: 1, tid: 2, args: { name: '/intc@8000000' } },
      { name: 'thread_name', cat: '__metadata', ph: 'M', ts: 0, pid: 1, tid: 3, args: { name: '/dma@c000000' } },
    ]);
    const inst = t.traceEvents.filter((e) => e.ph === 'i');
    expect(inst.map((e) => [e.name, e.cat, e.ts, e.tid, e.s])).toEqual([
      ['+0x20', 'mmio', 1.5, 1, 't'],
      ['IRQ SPI 74 (INTID 106)', 'irq', 2, 2, 't'],
      ['DMA_READ', 'dma', 2.5, 3, 't'],
      ['CMD_SYNC', 'smmu-v3', 3, 1, 't'],
    ]);
    // The event's own fields become args, 64-bit values as hex (JSON has no BigInt).
    expect(inst[0].args).toEqual({ op: 'write', pa: 0x905_0020, offset: 0x20, width: 64, value: '0x100000003' });
    expect(inst[2].args).toMatchObject({ streamId: 0x100, ssid: null, outcome: 'fault', pa: null });
    expect(inst[3].args).toEqual({ name: 'smmu-v3 command', args: { command: 'CMD_SYNC', words: ['0x1', '0xff'], raw: 'ab01' } });
    // What is written to the file must survive JSON (a nested BigInt would make stringify throw).
    expect(JSON.parse(JSON.stringify(t))).toEqual(t);
  });

  it('gives every recording its own process, so machines that share DT paths do not share tracks', () => {
    const t = toChromeTraceProcesses([
      { name: 'scenario-a', events: [mmio, irq] },
      { name: 'scenario-b', events: [{ ...mmio, time: 10 }] },
    ]);
    const procs = t.traceEvents.filter((e) => e.name === 'process_name').map((e) => [e.pid, e.args?.name]);
    expect(procs).toEqual([
      [1, 'scenario-a'],
      [2, 'scenario-b'],
    ]);
    const threads = t.traceEvents.filter((e) => e.name === 'thread_name').map((e) => [e.pid, e.tid, e.args?.name]);
    expect(threads).toEqual([
      [1, 1, '/iommu@9050000'],
      [1, 2, '/intc@8000000'],
      [2, 1, '/iommu@9050000'],
    ]);
    const b = t.traceEvents.filter((e) => e.ph === 'i' && e.pid === 2);
    expect(b.map((e) => [e.tid, e.ts])).toEqual([[1, 0.01]]);
  });

  it('names MMIO accesses by the register the model names, and draws DMA, work items and stalls as slices', () => {
    const t = toChromeTrace([
      { ...mmio, reg: 'CMDQ_PROD' },
      { ...dma, start: 2000, time: 2600 },
      { kind: 'work', time: 100, track: 'k', label: 'arm-smmu-v3 evtq thread', phase: 'start' },
      { kind: 'work', time: 900, track: 'k', label: 'arm-smmu-v3 evtq thread', phase: 'end' },
      { kind: 'custom', time: 1000, track: '/iommu@2b500000', name: 'smmu-v2.wait', args: { cb: 1, master: '/dma', addr: 0 } },
      { kind: 'custom', time: 4000, track: '/iommu@2b500000', name: 'smmu-v2.resume', args: { cb: 1, terminate: false, transactions: 1 } },
      { kind: 'counter', time: 50, track: '/iommu@9050000', name: 'CMDQ occupancy', value: 3 },
    ]);
    const body = t.traceEvents.filter((e) => e.ph !== 'M');
    expect(body.find((e) => e.cat === 'mmio')?.name).toBe('CMDQ_PROD');
    expect(body.filter((e) => e.ph === 'X').map((e) => [e.name, e.ts, e.dur])).toEqual([
      ['arm-smmu-v3 evtq thread', 0.1, 0.8],
      ['stalled until RESUME (CB1)', 1, 3],
      ['DMA_READ', 2, 0.6],
    ]);
    expect(body.filter((e) => e.ph === 'C').map((e) => [e.name, e.args])).toEqual([['CMDQ occupancy', { value: 3 }]]);
    // Written in time order within the process.
    const ts = body.map((e) => e.ts);
    expect(ts).toEqual([...ts].sort((a, b) => a - b));
  });
});
