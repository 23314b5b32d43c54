/** The SMMUv2 scenarios pass, with every check listed when one does not. */
import { describe, expect, it } from 'vitest';
import { scenario as dma } from '../../../scenarios/smmu-v2-dma.js';
import { scenario as faults } from '../../../scenarios/smmu-v2-faults.js';
import { scenario as shutdown } from '../../../scenarios/smmu-v2-shutdown.js';
import { scenario as stall } from '../../../scenarios/smmu-v2-stall.js';

describe('smmu-v2 scenarios', () => {
  for (const s of [dma, faults, stall, shutdown]) {
    it(s.name, async () => {
      const r = await s.run({ seed: 1 });
      const failed = r.checks.filter((c) => !c.ok);
      expect(failed).toEqual([]);
      expect(r.verdict).toBe('pass');
      expect(r.checks.length).toBeGreaterThan(3);
    });
  }
});
