import { describe, expect, it } from 'vitest';
import { ArmSmmuAsidSpace, ArmSmmuSharedAsid } from '../../drivers/arm-smmu-v3/arm-smmu-v3-asid.js';
import { Ida } from '../../core/ida.js';
import { Prng } from '../../hw/prng.js';
import type { Mm } from '../../mm/mm.js';
import { expectErrno } from '../lib/errno.js';

/** What the IDA must answer: the lowest ID of [min, max] not in `used`, by a scan. */
function lowestFree(used: Set<number>, min: number, max: number): number {
  for (let id = min; id <= max; id++) if (!used.has(id)) return id;
  return -1;
}

describe('IDA', () => {
  it('hands out the lowest free ID of the range, across word and level boundaries', async () => {
    const ida = new Ida('test');
    // 32 * 32 + 5 IDs: the first 32-ID words and the first 1024-ID block fill up.
    for (let i = 0; i < 1029; i++) expect(ida.alloc()).toBe(i);
    expect(ida.inUse).toBe(1029);
    ida.free(31);
    ida.free(1023);
    ida.free(700);
    expect(ida.allocRange(32, 2000)).toBe(700);
    expect(ida.alloc()).toBe(31);
    expect(ida.allocRange(1000, 1030)).toBe(1023);
    expect(ida.allocRange(1000, 1030)).toBe(1029);
    await expectErrno(() => ida.allocRange(0, 1029), 'ENOSPC', /every ID in \[0, 1029\] is in use/);
    await expectErrno(() => ida.allocRange(5, 4), 'ENOSPC');
    // Far IDs take no room below them.
    expect(ida.allocRange(2 ** 40, 2 ** 41)).toBe(2 ** 40);
    expect(ida.has(2 ** 40)).toBe(true);
    expect(ida.allocRange(2 ** 40, 2 ** 41)).toBe(2 ** 40 + 1);
    expect(ida.alloc()).toBe(1030);
    expect(ida.allocRange(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)).toBe(Number.MAX_SAFE_INTEGER);
    await expectErrno(() => ida.allocRange(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER), 'ENOSPC');
    await expectErrno(() => ida.free(5000), 'EINVAL', /freeing ID 5000, which is not allocated/);
    await expectErrno(() => ida.allocRange(-1, 3), 'EINVAL', /bad ID range/);
    expect(ida.has(-1)).toBe(false);
    expect(ida.has(0.5)).toBe(false);
  });

  it('answers as a scan of the used IDs would, over a seeded run of allocations and frees', () => {
    const rng = new Prng(17);
    const ida = new Ida('test');
    const used = new Set<number>();
    for (let step = 0; step < 20_000; step++) {
      if (used.size > 0 && rng.int(3) === 0) {
        // Free one: mostly low IDs, so holes open below full words and blocks.
        const all = [...used];
        const id = all[rng.int(all.length)];
        ida.free(id);
        used.delete(id);
      } else {
        const min = rng.int(4) === 0 ? rng.int(3000) : 0;
        const max = min + rng.int(3000);
        const want = lowestFree(used, min, max);
        if (want < 0) {
          expect(() => ida.allocRange(min, max)).toThrow(/ENOSPC/);
        } else {
          expect(ida.allocRange(min, max)).toBe(want);
          used.add(want);
        }
      }
      expect(ida.inUse).toBe(used.size);
    }
    for (let id = 0; id < 7000; id++) expect(ida.has(id)).toBe(used.has(id));
  });
});

describe('arm-smmu-v3 ASID space', () => {
  it('allocates the lowest free ASID from 1, skips inserted ones, and reuses released ones', async () => {
    const space = new ArmSmmuAsidSpace();
    const mm = {} as Mm;
    const owners = Array.from({ length: 100 }, (_, i) => new ArmSmmuSharedAsid(mm, i));
    space.insert(3, owners[99]);
    const got = owners.slice(0, 60).map((o) => space.alloc(o, 255));
    expect(got.slice(0, 4)).toEqual([1, 2, 4, 5]);
    expect(space.inUse).toBe(61);
    await expectErrno(() => space.insert(40, owners[98]), 'EBUSY', /ASID 40 is already in use/);
    space.release(40, owners[98]); // not its owner: kept
    expect(space.has(40)).toBe(true);
    const owner40 = space.owner(40)!;
    space.release(40, owner40);
    space.release(3, owners[99]);
    expect(space.alloc(owners[60], 255)).toBe(3);
    expect(space.alloc(owners[61], 255)).toBe(40);
    expect(space.alloc(owners[62], 255)).toBe(62);
    await expectErrno(() => space.alloc(owners[63], 62), 'ENOSPC', /every ASID in \[1, 62\] is in use/);
  });
});
