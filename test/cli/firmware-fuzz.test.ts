/**
 * Mutated DTBs (truncations, byte flips, overwritten header and token words) either boot or end in a
 * firmware error — never another exception, never a hang — and the CLI keeps its exit-2 contract.
 * A fixed seed keeps the slice deterministic; `make soak` runs many more.
 */
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bootOutcome, mutate, mutation, seedBlobs } from './mutate.js';
import { runCli } from './run-cli.js';

describe('mutated firmware', () => {
  it('boots or raises a firmware error, nothing else', async () => {
    const outcomes = { booted: 0, 'firmware-error': 0 };
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: seedBlobs.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 3 }), async (which, muts) => {
        outcomes[await bootOutcome(mutate(seedBlobs[which], muts))]++;
      }),
      { seed: 20261121, numRuns: 300 },
    );
    // Both outcomes happen: the slice exercises the error paths and the harmless-damage path.
    expect(outcomes.booted).toBeGreaterThan(0);
    expect(outcomes['firmware-error']).toBeGreaterThan(0);
  });

  it('the CLI answers exit 0 or exit 2 with one "firmware error" line', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'iommu-sim-fuzz-'));
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 2 }), async (muts) => {
        const file = join(dir, 'm.dtb');
        writeFileSync(file, mutate(seedBlobs[0], muts));
        const r = await runCli(['boot', '--dtb', file, '--json']);
        if (r.status === 0) {
          expect(Object.keys(JSON.parse(r.stdout))).toEqual(['format', 'version', 'command', 'inputs', 'iommus', 'masters', 'pciHosts']);
        } else {
          expect(r.status).toBe(2);
          const lines = r.stderr.split('\n').filter((l) => l.length > 0);
          expect(lines).toHaveLength(1);
          expect(lines[0]).toMatch(/^iommu-sim: firmware error: /);
        }
      }),
      { seed: 7, numRuns: 60 },
    );
  });
});
