/** The isolation campaign's fixed-seed slice: every SMMU kind, a few hundred transactions each. */
import { describe, expect, it } from 'vitest';
import { runCampaign } from './campaign.js';
import { isolationCase, isolationDmaCase, SMMU_KINDS, type IsolationStats } from './isolation.js';

describe('isolation campaign (slice)', () => {
  for (const kind of SMMU_KINDS) {
    it(`${kind}: no DMA reaches a page it should not, none is blocked that should pass`, async () => {
      const total: IsolationStats = { transactions: 0, landed: 0, blocked: 0, raced: 0, ops: 0, collateral: 0 };
      await runCampaign(`isolation-${kind}`, 2026, 2, (seed) => isolationCase(kind, seed, 40, 8), (s) => {
        for (const k of Object.keys(total) as (keyof IsolationStats)[]) total[k] += s[k];
      });
      // The slice exercised both outcomes and raced operations.
      expect(total.landed).toBeGreaterThan(0);
      expect(total.blocked).toBeGreaterThan(0);
      expect(total.raced).toBeGreaterThan(0);
    });
    for (const lazy of [false, true]) {
      it(`${kind}, ${lazy ? 'lazy (DMA_FQ)' : 'strict'} DMA domain: nothing reaches a frame after its unmap completed`, async () => {
        let landed = 0;
        let blocked = 0;
        await runCampaign(`isolation-dma-${kind}-${lazy ? 'lazy' : 'strict'}`, 2026, 1, (seed) => isolationDmaCase(kind, seed, 40, 8, lazy), (s) => {
          landed += s.landed;
          blocked += s.blocked;
        });
        expect(landed).toBeGreaterThan(0);
        expect(blocked).toBeGreaterThan(0);
      });
    }
  }
});
