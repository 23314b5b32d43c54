/**
 * A scenario: one experiment on the lab bench. It builds (or takes) a machine, boots kernels, does
 * things, and returns a verdict with the figures that matter. `iommu-sim run NAME` runs it, and a
 * vitest test can run the same module and assert on its result. Tracing is the lab's business: every
 * machine built through scenarios/lib/lab.ts is recorded while `recordTraces` runs.
 */

import { inspect, isDeepStrictEqual } from 'node:util';

export type Verdict = 'pass' | 'fail';

export interface ScenarioContext {
  /** Seed for the machine's PRNG: (scenario, seed) replays exactly. */
  seed: number;
}

export interface ScenarioResult {
  verdict: Verdict;
  /** Key figures, shown in the catalogue table (name → value). */
  figures: Record<string, number | string | boolean>;
  /** What was checked, one line each; failures say what was expected and what was seen. */
  checks: { what: string; ok: boolean; detail?: string }[];
}

export interface Scenario {
  name: string;
  /** One line: what it shows. */
  shows: string;
  run(ctx: ScenarioContext): Promise<ScenarioResult>;
}

/** Collects checks; the verdict is pass when every check passed. */
export class Checks {
  readonly list: ScenarioResult['checks'] = [];

  ok(what: string, cond: boolean, detail?: string): boolean {
    this.list.push(detail === undefined || cond ? { what, ok: cond } : { what, ok: cond, detail });
    return cond;
  }

  /**
   * Deep strict equality (node's `util.isDeepStrictEqual`): key order does not matter, types do
   * (NaN is not null, 1 is not 1n), BigInts, Maps, Sets and typed arrays compare by content. A
   * failure shows both values in full.
   */
  equal<T>(what: string, seen: T, expected: T): boolean {
    const ok = isDeepStrictEqual(seen, expected);
    return this.ok(what, ok, ok ? undefined : `expected ${show(expected)}, saw ${show(seen)}`);
  }

  result(figures: ScenarioResult['figures']): ScenarioResult {
    return { verdict: this.list.every((c) => c.ok) ? 'pass' : 'fail', figures, checks: this.list };
  }
}

/** A value on one line, whole (no depth or length cut-off). */
function show(v: unknown): string {
  return inspect(v, { depth: null, maxArrayLength: null, maxStringLength: null, breakLength: Infinity, compact: true, sorted: true });
}
