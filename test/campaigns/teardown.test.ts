/** The teardown campaign's fixed-seed slice: every teardown kind under every policy, once each. */
import { describe, it } from 'vitest';
import { runCampaign } from './campaign.js';
import { POLICIES, TEARDOWNS, teardownCase, type TeardownSmmu } from './teardown.js';

describe('teardown campaign (slice)', () => {
  for (const smmu of Object.keys(POLICIES) as TeardownSmmu[]) {
    for (const teardown of TEARDOWNS) {
      it(`${smmu} ${teardown}: nothing stalled forever, no handler call after unregistration`, async () => {
        let i = 0;
        for (const policy of POLICIES[smmu]) {
          await runCampaign(`teardown-${smmu}-${teardown}-${policy}`, 2026 + i++, 1, (seed) => teardownCase(smmu, teardown, policy, seed, 12));
        }
      });
    }
  }
});
