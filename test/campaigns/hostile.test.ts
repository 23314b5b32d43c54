/** The hostile MMIO/memory campaign's fixed-seed slice: every model, a few programs each. */
import { describe, expect, it } from 'vitest';
import { runCampaign } from './campaign.js';
import { HOSTILE_TARGETS, hostileCase } from './hostile.js';

describe('hostile MMIO and memory campaign (slice)', () => {
  for (const target of HOSTILE_TARGETS) {
    it(`${target.name}: no exception escapes, no livelock`, async () => {
      let dma = 0;
      await runCampaign(`hostile-${target.name}`, 2026, 20, async (seed) => hostileCase(target, seed, 150), (s) => (dma += s.dma));
      expect(dma).toBeGreaterThan(0);
    });
  }
});
