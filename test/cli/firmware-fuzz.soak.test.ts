/** The long run of the mutated-firmware property (make soak): every fixture, many mutations. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { it } from 'vitest';
import { bootOutcome, mutate, mutation, seedBlobs } from './mutate.js';

const dir = join(__dirname, '..', 'fixtures', 'dtb');
const blobs = [...seedBlobs, ...readdirSync(dir).filter((f) => f.endsWith('.dtb')).map((f) => new Uint8Array(readFileSync(join(dir, f))))];

it('thousands of mutated blobs boot or raise a firmware error', async () => {
  const seed = Number(process.env.SOAK_SEED ?? 1);
  await fc.assert(
    fc.asyncProperty(fc.nat({ max: blobs.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 4 }), async (which, muts) => {
      await bootOutcome(mutate(blobs[which], muts));
    }),
    { seed, numRuns: Number(process.env.SOAK_RUNS ?? 5000) },
  );
});
