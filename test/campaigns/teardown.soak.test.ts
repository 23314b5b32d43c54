/**
 * The teardown campaign's long run (make soak): TEARDOWN_CASES cases per (SMMU, teardown, policy)
 * (default 50), storms of TEARDOWN_STORM transactions (default 32); CAMPAIGN_SEED picks the seed.
 */
import { it } from 'vitest';
import { campaignSeed, envInt, runCampaign } from './campaign.js';
import { POLICIES, TEARDOWNS, teardownCase, type TeardownSmmu } from './teardown.js';

it('teardown with stall storms: every teardown kind under every policy', async () => {
  const cases = envInt('TEARDOWN_CASES', 50);
  const storm = envInt('TEARDOWN_STORM', 32);
  const seed = campaignSeed(1);
  let txns = 0;
  let failed = 0;
  let n = 0;
  const t0 = performance.now();
  for (const smmu of Object.keys(POLICIES) as TeardownSmmu[]) {
    for (const teardown of TEARDOWNS) {
      for (const policy of POLICIES[smmu]) {
        await runCampaign(`teardown-${smmu}-${teardown}-${policy}`, seed, cases, (s) => teardownCase(smmu, teardown, policy, s, storm), (r) => {
          txns += r.transactions;
          failed += r.failed;
          n++;
        });
      }
    }
  }
  console.log(`teardown soak: seed ${seed}, ${n} cases, ${txns} transactions (${failed} ended in a visible failure), 0 stalled forever, 0 handler calls after unregistration, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
});
