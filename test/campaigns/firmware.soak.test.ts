/**
 * The firmware campaign's long run (make soak): FIRMWARE_INPUTS inputs per firmware kind (default
 * 10^4) over FIRMWARE_WORKERS worker threads (default 2); CAMPAIGN_SEED picks the seed.
 */
import { expect, it } from 'vitest';
import { campaignSeed, envInt } from './campaign.js';
import { runFirmwareCampaign } from './firmware-pool.js';
import { FIRMWARE_KINDS } from './firmware.js';

it('firmware: mutated inputs of every kind boot or end in a firmware error', async () => {
  const count = envInt('FIRMWARE_INPUTS', 10_000);
  const seed = campaignSeed(1);
  for (const kind of FIRMWARE_KINDS) {
    const t0 = performance.now();
    const r = await runFirmwareCampaign({ kind: kind.name, seed, count, workers: envInt('FIRMWARE_WORKERS', 2), hangMs: 30_000 });
    console.log(`firmware soak (${kind.name}): seed ${seed}, ${count} inputs: ${r.booted} booted, ${r.slowBoots} booted slower than 1 s of virtual time, ${r.firmwareErrors} firmware errors, 0 other outcomes, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    expect(r.booted + r.slowBoots + r.firmwareErrors).toBe(count);
  }
});
