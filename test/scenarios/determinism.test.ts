/**
 * (machine, seed) replays exactly: a whole boot of the virt machine (drivers, SMMU models, GIC,
 * scheduler) emits the same trace, event for event and at the same virtual times, for the same
 * seed; another seed may order simultaneous events differently but boots to the same result.
 */
import { describe, expect, it } from 'vitest';
import type { TraceEvent } from '../../hw/trace.js';
import { bootReport } from '../../scenarios/lib/boot-report.js';
import { boot, virtMachine } from '../../scenarios/lib/lab.js';

async function bootTrace(seed: number): Promise<{ events: TraceEvent[]; report: unknown; steps: number; now: number }> {
  const machine = virtMachine({ seed });
  const rec = machine.trace.record();
  const kernel = await boot(machine);
  rec.stop();
  return { events: rec.events, report: bootReport(machine, kernel), steps: machine.scheduler.steps, now: machine.scheduler.now };
}

/** The order events ran in, as text (BigInt values and all). */
const lines = (events: readonly TraceEvent[]): string[] =>
  events.map((e) => JSON.stringify(e, (_k, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v)));

describe('boot determinism', () => {
  it('the same seed gives the same trace, step for step', async () => {
    const a = await bootTrace(11);
    const b = await bootTrace(11);
    expect(a.events.length).toBeGreaterThan(100);
    expect(new Set(a.events.map((e) => e.kind))).toEqual(new Set(b.events.map((e) => e.kind)));
    expect(lines(b.events)).toEqual(lines(a.events));
    expect(b.steps).toBe(a.steps);
    expect(b.now).toBe(a.now);
  });

  it('other seeds boot to the same report', async () => {
    const first = await bootTrace(1);
    for (const seed of [2, 3, 4]) expect((await bootTrace(seed)).report).toEqual(first.report);
  });
});
