/** Run a scenario for an end-to-end test: every check must pass (failures are shown by what they say). */
import { expect } from 'vitest';
import type { Scenario, ScenarioResult } from '../../scenarios/scenario.js';

export async function runScenario(s: Scenario, seed = 1): Promise<ScenarioResult> {
  const r = await s.run({ seed });
  expect(r.checks.filter((c) => !c.ok)).toEqual([]);
  expect(r.checks.length).toBeGreaterThan(0);
  expect(r.verdict).toBe('pass');
  return r;
}
