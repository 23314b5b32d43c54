/**
 * The hostile campaign's long run (make soak): HOSTILE_PROGRAMS programs per model (default 1500) of
 * HOSTILE_ACTIONS actions each (default 300); CAMPAIGN_SEED picks the seed.
 */
import { it } from 'vitest';
import { campaignSeed, envInt, runCampaign } from './campaign.js';
import { HOSTILE_TARGETS, hostileCase } from './hostile.js';

it('hostile MMIO and memory against every model', async () => {
  const programs = envInt('HOSTILE_PROGRAMS', 1500);
  const actions = envInt('HOSTILE_ACTIONS', 300);
  const seed = campaignSeed(1);
  const t0 = performance.now();
  for (const target of HOSTILE_TARGETS) await runCampaign(`hostile-${target.name}`, seed, programs, async (s) => hostileCase(target, s, actions));
  console.log(`hostile soak: seed ${seed}, ${programs} programs x ${actions} actions on ${HOSTILE_TARGETS.map((t) => t.name).join(', ')}: 0 exceptions, 0 livelocks, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
});
