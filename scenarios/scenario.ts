/**
 * A scenario: one experiment on the lab bench. It builds (or takes) a machine, boots kernels, does
 * things, and returns a verdict with the figures that matter. `iommu-sim run NAME` runs it, and a
 * vitest test can run the same module and assert on its result. Tracing is the lab's business: every
 * machine built through scenarios/lib/lab.ts is recorded while `recordTraces` runs.
 */

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

  equal<T>(what: string, seen: T, expected: T): boolean {
    const ok = JSON.stringify(seen) === JSON.stringify(expected);
    return this.ok(what, ok, ok ? undefined : `expected ${JSON.stringify(expected)}, saw ${JSON.stringify(seen)}`);
  }

  result(figures: ScenarioResult['figures']): ScenarioResult {
    return { verdict: this.list.every((c) => c.ok) ? 'pass' : 'fail', figures, checks: this.list };
  }
}
