/**
 * `make soak`: the io-pgtable / hardware walker cross-check of pgtable-walker.test.ts over many seeds.
 * SOAK_SEED is the first seed, PGTABLE_CROSS_SEEDS how many (default 200), PGTABLE_CROSS_RUNS the random
 * sequences per seed (default 25). A failure names its seed; fast-check prints the shrunk sequence.
 */
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { FORMATS, formatName, NESTED_PAIRS, nestedName, nestedProperty, singleStageProperty } from './pgtable-walker-check.js';

const FIRST = Number(process.env.SOAK_SEED ?? 1);
const SEEDS = Number(process.env.PGTABLE_CROSS_SEEDS ?? 200);
const RUNS = Number(process.env.PGTABLE_CROSS_RUNS ?? 25);

/** Run `check(seed)` for every seed, letting the worker answer its runner between seeds (a long synchronous test trips its RPC timeout). */
async function sweep(check: (seed: number) => void): Promise<void> {
  for (let seed = FIRST; seed < FIRST + SEEDS; seed++) {
    check(seed);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe('io-pgtable and the hardware walker agree, seed sweep', () => {
  it.each(FORMATS.map((f) => [formatName(f), f] as const))('%s', (_name, f) =>
    sweep((seed) => fc.assert(singleStageProperty(f), { seed, numRuns: RUNS })),
  );

  it.each(NESTED_PAIRS.map(([a, b]) => [nestedName(a, b), a, b] as const))('nested %s', (_name, s1f, s2f) =>
    sweep((seed) => fc.assert(nestedProperty(s1f, s2f), { seed, numRuns: Math.ceil(RUNS / 2) })),
  );
});
