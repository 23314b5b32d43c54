/**
 * The long DTB fuzz run (`make soak`): every fixture, many more damaged blobs per source.
 * DT_FUZZ_SEED and DT_FUZZ_RUNS pick the base seed (default 1) and runs per source (default
 * 10000). Runs go in chunks of CHUNK, each its own test with seed base + chunk index (named in
 * the test title), so no single synchronous test starves the test runner and a failure replays
 * exactly from the seed fast-check prints.
 */
import { readdirSync } from 'node:fs';
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { mutate, mutation, exercise, source, SOURCES } from './dt-fuzz.js';
import { FIXTURE_DIR, fixture } from './dt-test-utils.js';

const seed = Number(process.env['DT_FUZZ_SEED'] ?? 1);
const numRuns = Number(process.env['DT_FUZZ_RUNS'] ?? 10_000);
const known = new Set(SOURCES.map((s) => s.name));
const all = [
  ...SOURCES,
  ...readdirSync(FIXTURE_DIR)
    .filter((f) => f.endsWith('.dtb') && !known.has(f.slice(0, -4)))
    .map((f) => source(f.slice(0, -4), fixture(f))),
];

const CHUNK = 1000;
const chunks = Array.from({ length: Math.ceil(numRuns / CHUNK) }, (_, i) => ({ seed: seed + i, runs: Math.min(CHUNK, numRuns - i * CHUNK) }));

describe.each(all.map((s) => [s.name, s] as const))('damaged %s never escapes FirmwareError (soak)', (_name, src) => {
  it.each(chunks)('seed $seed, $runs runs', async ({ seed: chunkSeed, runs }) => {
    // let the runner's messages through between long synchronous chunks
    await new Promise((resolve) => setImmediate(resolve));
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 6 }), (muts) => {
        exercise(mutate(src, muts));
      }),
      { seed: chunkSeed, numRuns: runs },
    );
  });
});
