/**
 * The SMMUv3 scenarios of the catalogue pass (each asserts its own checks), for two seeds: the order
 * of simultaneous hardware events changes with the seed, the outcome must not.
 */
import { describe, expect, it } from 'vitest';
import { scenarios } from '../../../scenarios/index.js';

const v3 = scenarios.filter((s) => s.name.startsWith('smmu-v3-'));

describe('SMMUv3 scenarios', () => {
  it('are in the catalogue', () => {
    expect(v3.map((s) => s.name).sort()).toEqual([
      'smmu-v3-2lvl-strtab',
      'smmu-v3-ats',
      'smmu-v3-cerror',
      'smmu-v3-dma',
      'smmu-v3-evtq-overflow',
      'smmu-v3-fault',
      'smmu-v3-shutdown',
      'smmu-v3-stale-tlb',
      'smmu-v3-stall',
      'smmu-v3-walk-cache',
    ]);
  });

  for (const s of v3) {
    for (const seed of [1, 7]) {
      it(`${s.name} passes (seed ${seed})`, async () => {
        const r = await s.run({ seed });
        expect(r.checks.filter((c) => !c.ok)).toEqual([]);
        expect(r.verdict).toBe('pass');
      });
    }
  }
});
