/**
 * The IOTLB gather helpers (kernel: iommu_iotlb_gather_* in include/linux/iommu.h).
 */
import { describe, expect, it } from 'vitest';
import {
  IOMMU_GATHER_START_EMPTY,
  iommuIotlbGatherAddPage,
  iommuIotlbGatherAddRange,
  iommuIotlbGatherInit,
  iommuIotlbGatherIsDisjoint,
  iommuIotlbGatherQueued,
  type IommuIotlbGather,
} from '../../core/iommu-gather.js';

describe('iommu_iotlb_gather', () => {
  it('starts empty and re-initialises in place', () => {
    const g = iommuIotlbGatherInit();
    expect(g).toEqual({ start: IOMMU_GATHER_START_EMPTY, end: 0, pgsize: 0, freelist: [], queued: false });
    g.start = 5;
    g.end = 9;
    g.pgsize = 4096;
    g.freelist.push({ pa: 0x1000, size: 0x1000 });
    g.queued = true;
    expect(iommuIotlbGatherInit(g)).toBe(g);
    expect(g).toEqual({ start: IOMMU_GATHER_START_EMPTY, end: 0, pgsize: 0, freelist: [], queued: false });
  });

  it('widens the inclusive range and tells disjoint ranges from touching ones', () => {
    const g = iommuIotlbGatherInit();
    expect(iommuIotlbGatherIsDisjoint(g, 0x10_0000, 0x1000)).toBe(false); // empty: nothing to be disjoint from
    iommuIotlbGatherAddRange(g, 0x10_0000, 0x1000);
    expect([g.start, g.end]).toEqual([0x10_0000, 0x10_0fff]);
    expect(iommuIotlbGatherIsDisjoint(g, 0x10_1000, 0x1000)).toBe(false); // touches the end
    expect(iommuIotlbGatherIsDisjoint(g, 0xf_f000, 0x1000)).toBe(false); // touches the start
    expect(iommuIotlbGatherIsDisjoint(g, 0x10_2000, 0x1000)).toBe(true);
    expect(iommuIotlbGatherIsDisjoint(g, 0xf_e000, 0x1000)).toBe(true);
    iommuIotlbGatherAddRange(g, 0xf_f000, 0x1000);
    iommuIotlbGatherAddRange(g, 0x10_1000, 0x2000);
    expect([g.start, g.end]).toEqual([0xf_f000, 0x10_2fff]);
  });

  it('syncs before adding a page of another size or out of reach, and keeps queued', () => {
    const synced: [number, number, number, number][] = [];
    const sync = (g: IommuIotlbGather) => synced.push([g.start, g.end, g.pgsize, g.freelist.length]);
    const g = iommuIotlbGatherInit();
    g.queued = true;
    iommuIotlbGatherAddPage(g, 0x2000, 0x1000, sync);
    iommuIotlbGatherAddPage(g, 0x1000, 0x1000, sync);
    expect(synced).toEqual([]);
    g.freelist.push({ pa: 0x8000_0000, size: 0x1000 });
    iommuIotlbGatherAddPage(g, 0x20_0000, 0x20_0000, sync);
    expect(synced).toEqual([[0x1000, 0x2fff, 0x1000, 1]]);
    expect([g.start, g.end, g.pgsize, g.freelist.length, g.queued]).toEqual([0x20_0000, 0x3f_ffff, 0x20_0000, 0, true]);
    iommuIotlbGatherAddPage(g, 0x80_0000, 0x20_0000, sync);
    expect(synced[1]).toEqual([0x20_0000, 0x3f_ffff, 0x20_0000, 0]);
    expect(iommuIotlbGatherQueued(g)).toBe(true);
    expect(iommuIotlbGatherQueued(null)).toBe(false);
  });
});
