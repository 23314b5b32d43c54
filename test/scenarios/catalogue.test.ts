/**
 * The scenario catalogue (what `make run` runs) passes, for several seeds, and replays exactly:
 * the same (scenario, seed) gives the same checks and figures.
 */
import { describe, expect, it } from 'vitest';
import { scenarios } from '../../scenarios/index.js';

describe('scenario catalogue', () => {
  for (const s of scenarios) {
    it(`${s.name} passes for seeds 1-3 and replays exactly`, async () => {
      for (const seed of [1, 2, 3]) {
        const r = await s.run({ seed });
        expect(r.checks.filter((c) => !c.ok)).toEqual([]);
        expect(r.verdict).toBe('pass');
      }
      const a = await s.run({ seed: 7 });
      const b = await s.run({ seed: 7 });
      expect(b).toEqual(a);
    });
  }
});
