/**
 * The isolation campaign's long run (make soak): ISOLATION_TXNS transactions in all (default 10^6),
 * spread over every SMMU kind and domain type; CAMPAIGN_SEED picks the seed.
 */
import { expect, it } from 'vitest';
import { campaignSeed, envInt, runCampaign } from './campaign.js';
import { isolationCase, isolationDmaCase, SMMU_KINDS } from './isolation.js';

it('isolation: random DMA against random map/unmap/switch on every SMMU kind', async () => {
  const target = envInt('ISOLATION_TXNS', 1_000_000);
  const seed = campaignSeed(1);
  let txns = 0;
  let landed = 0;
  let blocked = 0;
  let cases = 0;
  const t0 = performance.now();
  while (txns < target) {
    const add = (st: { transactions: number; landed: number; blocked: number }): void => {
      txns += st.transactions;
      landed += st.landed;
      blocked += st.blocked;
    };
    for (const kind of SMMU_KINDS) {
      await runCampaign(`isolation-${kind}`, seed + cases, 1, (s) => isolationCase(kind, s, 200, 16), add);
      for (const lazy of [false, true]) {
        await runCampaign(`isolation-dma-${kind}-${lazy ? 'lazy' : 'strict'}`, seed + cases, 1, (s) => isolationDmaCase(kind, s, 100, 16, lazy), add);
      }
    }
    cases++;
  }
  console.log(`isolation soak: seed ${seed}, ${cases * SMMU_KINDS.length * 3} cases, ${txns} transactions (${landed} landed, ${blocked} blocked), 0 violations, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  expect(txns).toBeGreaterThanOrEqual(target);
});
