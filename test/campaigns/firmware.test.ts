/** The firmware campaign's fixed-seed slice: mutated firmware of every kind, in two worker threads. */
import { describe, expect, it } from 'vitest';
import { runFirmwareCampaign } from './firmware-pool.js';
import { FIRMWARE_KINDS } from './firmware.js';

describe('firmware campaign (slice)', () => {
  for (const kind of FIRMWARE_KINDS) {
    it(`${kind.name}: 300 mutated inputs boot or end in a firmware error, in worker threads`, async () => {
      const r = await runFirmwareCampaign({ kind: kind.name, seed: 2026, count: 300, workers: 2, hangMs: 20_000 });
      expect(r.booted + r.slowBoots + r.firmwareErrors).toBe(300);
      expect(r.booted).toBeGreaterThan(0);
      expect(r.firmwareErrors).toBeGreaterThan(0);
    });
  }
});
