import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PTRS_PER_TABLE, levelIndex } from '../../mm/pgtable-arm64.js';

describe('arm64 user page tables: table indices', () => {
  it('levelIndex is VA bits [47:39], [38:30], [29:21], [20:12] for any address, across the 32-bit halves', () => {
    const spans = [2 ** 39, 2 ** 30, 2 ** 21, 2 ** 12];
    const check = (va: number): void => {
      for (let level = 0; level < 4; level++) expect(levelIndex(va, level)).toBe(Math.floor(va / spans[level]) % PTRS_PER_TABLE);
    };
    // Edges: the 4 GiB line (level 1 takes bits from both halves), the top of the 48-bit space.
    for (const va of [0, 0xfff, 0x1000, 2 ** 32 - 0x1000, 2 ** 32, 2 ** 32 + 0x4000_0000, 3 * 2 ** 30, 2 ** 39 - 1, 2 ** 39, 2 ** 48 - 0x1000]) check(va);
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 48 - 1 }), (va) => check(va) === undefined), { numRuns: 500, seed: 17 });
  });
});
