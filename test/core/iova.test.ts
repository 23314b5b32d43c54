import { describe, expect, it } from 'vitest';
import { IOVA_DEPOT_MAGS, IOVA_MAG_SIZE, IovaDomain } from '../../core/iova.js';
import { expectErrno } from '../lib/errno.js';

const G = 0x1000;
const LIMIT32 = 0xfffff; // last 4K frame below 4 GiB

describe('IOVA allocator', () => {
  it('allocates top-down below the limit, size-aligned', () => {
    const iovad = new IovaDomain(G, 1);
    expect(iovad.allocIova(1, LIMIT32, true)).toBe(0xfffff);
    expect(iovad.allocIova(1, LIMIT32, true)).toBe(0xffffe);
    // 3 frames aligned to 4: the highest aligned start whose end fits below 0xffffe.
    expect(iovad.allocIova(3, LIMIT32, true)).toBe(0xffff8);
    // Unaligned, the highest gap that fits is the one alignment left at 0xffffb..0xffffd.
    expect(iovad.allocIova(3, LIMIT32, false)).toBe(0xffffb);
    expect(iovad.allocIova(2, LIMIT32, true)).toBe(0xffff6);
    expect(iovad.ranges()).toEqual([
      { pfnLo: 0xffff6, pfnHi: 0xffff7 },
      { pfnLo: 0xffff8, pfnHi: 0xffffa },
      { pfnLo: 0xffffb, pfnHi: 0xffffd },
      { pfnLo: 0xffffe, pfnHi: 0xffffe },
      { pfnLo: 0xfffff, pfnHi: 0xfffff },
    ]);
  });

  it('never goes below the start frame, and returns 0 when full', () => {
    const iovad = new IovaDomain(G, 4);
    expect(iovad.allocIova(2, 7, true)).toBe(6);
    expect(iovad.allocIova(2, 7, true)).toBe(4);
    expect(iovad.allocIova(1, 7, true)).toBe(0);
    expect(() => new IovaDomain(G, 0)).toThrow(/start pfn/);
  });

  it('keeps reserved ranges out and merges overlapping reservations', () => {
    const iovad = new IovaDomain(G, 1);
    iovad.reserveIova(0xffff0, 0xfffff);
    iovad.reserveIova(0xfffe8, 0xffff4);
    expect(iovad.ranges()).toEqual([{ pfnLo: 0xfffe8, pfnHi: 0xfffff }]);
    expect(iovad.allocIova(1, LIMIT32, true)).toBe(0xfffe7);
    expect(iovad.findIova(0xffff3)).toEqual({ pfnLo: 0xfffe8, pfnHi: 0xfffff });
    expect(iovad.findIova(0x10)).toBeNull();
  });

  it('serves freed ranges from the cache of their order, within the limit', () => {
    const iovad = new IovaDomain(G, 1);
    const a = iovad.allocIovaFast(3, LIMIT32, true);
    expect(a).toBe(0xffffc); // rounded up to 4 frames, aligned to 4
    iovad.freeIovaFast(a, 3);
    expect(iovad.cachedCount).toBe(1);
    // Still allocated in the tree while cached.
    expect(iovad.findIova(a)).toEqual({ pfnLo: 0xffffc, pfnHi: 0xfffff });
    expect(iovad.allocIovaFast(4, LIMIT32, true)).toBe(a);
    iovad.freeIovaFast(a, 4);
    // A cached range above a lower limit is not handed out.
    expect(iovad.allocIovaFast(4, 0x7ffff, true)).toBe(0x7fffc);
    iovad.freeCachedIovas();
    expect(iovad.findIova(a)).toBeNull();
  });

  it('does not cache ranges of 32 frames or more', () => {
    const iovad = new IovaDomain(G, 1);
    const a = iovad.allocIovaFast(33, LIMIT32, true);
    expect(a % 64).toBe(0);
    expect(iovad.ranges()).toEqual([{ pfnLo: a, pfnHi: a + 32 }]);
    iovad.freeIovaFast(a, 33);
    expect(iovad.cachedCount).toBe(0);
    expect(iovad.ranges()).toEqual([]);
  });

  it('hands a magazine back to the tree when the cache is full', () => {
    const iovad = new IovaDomain(G, 1);
    const capacity = IOVA_MAG_SIZE * (2 + IOVA_DEPOT_MAGS);
    const pfns: number[] = [];
    for (let i = 0; i <= capacity; i++) pfns.push(iovad.allocIovaFast(1, LIMIT32, true));
    for (const p of pfns) iovad.freeIovaFast(p, 1);
    expect(iovad.cachedCount).toBe(capacity + 1 - IOVA_MAG_SIZE);
    expect(iovad.ranges()).toHaveLength(capacity + 1 - IOVA_MAG_SIZE);
    // The oldest frees went back: the first IOVA allocated is free in the tree again.
    expect(iovad.findIova(pfns[0])).toBeNull();
  });

  it('flushes the caches when the tree is full, if allowed', () => {
    const iovad = new IovaDomain(G, 1);
    const one: number[] = [];
    for (let p = 0; p < 15; p++) one.push(iovad.allocIovaFast(1, 15, true));
    expect(iovad.allocIovaFast(1, 15, false)).toBe(0);
    for (const p of one.slice(0, 8)) iovad.freeIovaFast(p, 1);
    // 2 frames: the order-1 cache is empty, the tree is full of cached order-0 ranges.
    expect(iovad.allocIovaFast(2, 15, false)).toBe(0);
    expect(iovad.allocIovaFast(2, 15, true)).not.toBe(0);
    expect(iovad.cachedCount).toBe(0);
  });

  it('refuses to free what it did not allocate, and use after put', async () => {
    const iovad = new IovaDomain(G, 1);
    await expectErrno(() => iovad.freeIova(0x1234), 'EINVAL', /EINVAL.*0x1234/);
    iovad.put();
    expect(() => iovad.allocIova(1, LIMIT32, true)).toThrow(/after put/);
  });
});
