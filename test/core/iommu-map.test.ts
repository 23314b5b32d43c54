import { describe, expect, it } from 'vitest';
import { IOMMU_READ, IOMMU_WRITE } from '../../core/io-pgtable.js';
import { IOMMU_GATHER_START_EMPTY, iommuIotlbGatherAddRange, iommuIotlbGatherInit } from '../../core/iommu-gather.js';
import type { DomainOps } from '../../core/iommu-ops.js';
import { KernelError } from '../../bus/errno.js';
import { IommuDomain, IOMMU_DOMAIN_BLOCKED, iommuIovaToPhys, iommuPagingDomainAlloc } from '../../core/iommu-domain.js';
import { iommuDomainMapsPhys, iommuIotlbSync, iommuMap, iommuMapSg, iommuPgsize, iommuUnmap, iommuUnmapFast } from '../../core/iommu-map.js';
import { iommuGroupGet } from '../../core/iommu-group.js';
import type { MockDomain } from './mock-iommu.js';
import { mockRig } from './mock-rig.js';
import { expectErrno } from '../lib/errno.js';

const RW = IOMMU_READ | IOMMU_WRITE;
const SZ_4K = 0x1000;
const SZ_2M = 0x20_0000;

async function setup(mock: Parameters<typeof mockRig>[0] = {}) {
  const s = await mockRig({ masters: [{ name: 'dma@1', ids: [[1]] }], ...mock });
  const dev = s.dev('dma@1');
  const dom = iommuPagingDomainAlloc(dev) as MockDomain;
  s.mock.calls.length = 0;
  return { ...s, dom };
}

describe('iommu_pgsize', () => {
  it('picks the largest size the alignment allows and stops the run where a bigger one fits', async () => {
    const { dom } = await setup();
    const out = { pgsize: 0, count: 0 };
    expect(iommuPgsize(dom, 0x1ff000, 0x401ff000, 0x404000, out)).toEqual({ pgsize: SZ_4K, count: 1 });
    expect(iommuPgsize(dom, 0x200000, 0x40200000, 0x403000, out)).toEqual({ pgsize: SZ_2M, count: 2 });
    expect(iommuPgsize(dom, 0x600000, 0x40600000, 0x3000, out)).toEqual({ pgsize: SZ_4K, count: 3 });
    // iova and paddr at different offsets into 2M: 4K pages all the way.
    expect(iommuPgsize(dom, 0x1ff000, 0x40000000, 0x404000, out)).toEqual({ pgsize: SZ_4K, count: 0x404 });
    // 1G pages above 2^32 are handled without 32-bit bit operations.
    expect(iommuPgsize(dom, 0x1_4000_0000, 0x1_0000_0000, 0x8000_0000, out)).toEqual({ pgsize: 0x4000_0000, count: 2 });
    // One smallest page: one 4K page, aligned above 2^32 or not; misaligned is still refused.
    expect(iommuPgsize(dom, 0x10_0100_0000, 0x4000_1000, SZ_4K, out)).toEqual({ pgsize: SZ_4K, count: 1 });
    expect(iommuPgsize(dom, 0, 0, SZ_4K, out)).toEqual({ pgsize: SZ_4K, count: 1 });
    expect(() => iommuPgsize(dom, 0x10_0100_0800, 0x4000_1000, SZ_4K, out)).toThrow(/iommu_pgsize/);
  });
});

describe('iommu_map', () => {
  it('splits a range into runs of one page size', async () => {
    const { k, mock, dom } = await setup();
    await k.run(iommuMap(dom, 0x1ff000, 0x401ff000, 0x404000, RW));
    expect(mock.callsOf('map').map((c) => [c.iova, c.paddr, c.pgsize, c.pgcount])).toEqual([
      [0x1ff000, 0x401ff000, SZ_4K, 1],
      [0x200000, 0x40200000, SZ_2M, 2],
      [0x600000, 0x40600000, SZ_4K, 3],
    ]);
    expect(iommuIovaToPhys(dom, 0x1ff123)).toBe(0x401ff123);
    expect(iommuIovaToPhys(dom, 0x3abcde)).toBe(0x403abcde);
    expect(iommuIovaToPhys(dom, 0x602fff)).toBe(0x40602fff);
    expect(iommuIovaToPhys(dom, 0x603000)).toBe(0);
  });

  it('rejects misaligned ranges and domains that cannot map', async () => {
    const { k, dom, mock } = await setup();
    await expectErrno(iommuMap(dom, 0x1000, 0x4000_0800, 0x1000, RW), 'EINVAL', /EINVAL: iommu_map: unaligned/);
    await expectErrno(iommuMap(dom, 0x1000, 0x4000_0000, 0x800, RW), 'EINVAL');
    await expectErrno(iommuMap(mock.identityDomain!, 0x1000, 0x1000, 0x1000, RW), 'EINVAL', /EINVAL.*Passthrough/);
    const noSizes = iommuPagingDomainAlloc(k.core.findDevice('/dma@1')!);
    noSizes.pgsizeBitmap = 0;
    await expectErrno(iommuMap(noSizes, 0x1000, 0x4000_0000, 0x1000, RW), 'ENODEV');
    expect(mock.callsOf('map')).toEqual([]);
  });

  it('undoes what it mapped when the driver fails part-way', async () => {
    const { mock, dom } = await setup();
    mock.failMapAfter = 1;
    await expectErrno(iommuMap(dom, 0x1ff000, 0x401ff000, 0x404000, RW), 'ENOMEM');
    expect(iommuIovaToPhys(dom, 0x1ff000)).toBe(0);
    expect(mock.callsOf('unmap').map((c) => [c.iova, c.unmapped])).toEqual([[0x1ff000, SZ_4K]]);
    expect(mock.callsOf('iotlb-sync')).toHaveLength(1);
  });

  it('undoes the pages io-pgtable mapped before hitting an existing mapping', async () => {
    const { k, dom } = await setup();
    await k.run(iommuMap(dom, 0x2000, 0x4800_0000, 0x1000, RW));
    await expectErrno(iommuMap(dom, 0x0, 0x4900_0000, 0x4000, RW), 'EEXIST');
    expect(iommuIovaToPhys(dom, 0x0)).toBe(0);
    expect(iommuIovaToPhys(dom, 0x1000)).toBe(0);
    expect(iommuIovaToPhys(dom, 0x2000)).toBe(0x4800_0000);
    expect(iommuIovaToPhys(dom, 0x3000)).toBe(0);
  });

  it('syncs new mappings once, and unmaps them if the sync fails', async () => {
    const { k, mock, dom } = await setup({ mock: { syncMap: true } });
    await k.run(iommuMap(dom, 0x10000, 0x4001_0000, 0x3000, RW));
    expect(mock.callsOf('sync-map')).toEqual([{ op: 'sync-map', domain: dom.label, iova: 0x10000, size: 0x3000 }]);
    mock.syncMapError = 'EIO';
    await expect(iommuMap(dom, 0x20000, 0x4002_0000, 0x1000, RW)).rejects.toThrow(/sync_map refused/);
    expect(iommuIovaToPhys(dom, 0x20000)).toBe(0);
    expect(iommuIovaToPhys(dom, 0x10000)).toBe(0x4001_0000);
  });

  it('maps a scatter list merging physically contiguous pieces, with one sync', async () => {
    const { k, mock, dom } = await setup({ mock: { syncMap: true } });
    const mapped = await k.run(
      iommuMapSg(dom, 0x100000, [
        { pa: 0x4100_0000, length: 0x1000 },
        { pa: 0x4100_1000, length: 0x1000 },
        { pa: 0x4300_0000, length: 0x2000 },
      ], RW),
    );
    expect(mapped).toBe(0x4000);
    expect(mock.callsOf('map').map((c) => [c.iova, c.paddr, c.pgcount])).toEqual([
      [0x100000, 0x4100_0000, 2],
      [0x102000, 0x4300_0000, 2],
    ]);
    expect(mock.callsOf('sync-map')).toHaveLength(1);
    expect(iommuIovaToPhys(dom, 0x103004)).toBe(0x4300_1004);
  });
});

describe('iommu_unmap and the gather', () => {
  it('returns the bytes unmapped, stopping at the first hole', async () => {
    const { k, dom } = await setup();
    await k.run(iommuMap(dom, 0x0, 0x4000_0000, 0x2000, RW));
    await k.run(iommuMap(dom, 0x4000, 0x4000_4000, 0x1000, RW));
    expect(await k.run(iommuUnmap(dom, 0x0, 0x5000))).toBe(0x2000);
    expect(iommuIovaToPhys(dom, 0x4000)).toBe(0x4000_4000);
    expect(await k.run(iommuUnmap(dom, 0x4800, 0x1000))).toBe(0);
    expect(await k.run(iommuUnmap(dom, 0x4000, 0x1000))).toBe(0x1000);
  });

  it('cannot split a block map made as one', async () => {
    const { k, dom } = await setup();
    await k.run(iommuMap(dom, SZ_2M, 0x4020_0000, SZ_2M, RW));
    expect(await k.run(iommuUnmap(dom, SZ_2M, SZ_4K))).toBe(0);
    expect(iommuIovaToPhys(dom, SZ_2M + 0x1234)).toBe(0x4020_1234);
    expect(await k.run(iommuUnmap(dom, SZ_2M, SZ_2M))).toBe(SZ_2M);
  });

  it('unmaps nothing in a domain that does not page', async () => {
    const { k, mock } = await setup();
    expect(await k.run(iommuUnmap(mock.identityDomain!, 0, SZ_4K))).toBe(0);
  });

  it('gathers contiguous pages into one sync', async () => {
    const { k, mock, dom } = await setup();
    await k.run(iommuMap(dom, 0x10000, 0x4001_0000, 0x3000, RW));
    mock.calls.length = 0;
    await k.run(iommuUnmap(dom, 0x10000, 0x3000));
    expect(mock.callsOf('gather-sync')).toEqual([]);
    expect(mock.callsOf('iotlb-sync')).toEqual([{ op: 'iotlb-sync', domain: dom.label, start: 0x10000, end: 0x12fff, pgsize: SZ_4K }]);
  });

  it('syncs early when the page size changes', async () => {
    const { k, mock, dom } = await setup();
    await k.run(iommuMap(dom, 0x1ff000, 0x401ff000, 0x404000, RW));
    mock.calls.length = 0;
    expect(await k.run(iommuUnmap(dom, 0x1ff000, 0x404000))).toBe(0x404000);
    expect(mock.callsOf('gather-sync').map((c) => [c.start, c.end, c.pgsize])).toEqual([
      [0x1ff000, 0x1fffff, SZ_4K],
      [0x200000, 0x5fffff, SZ_2M],
    ]);
    expect(mock.callsOf('iotlb-sync').map((c) => [c.start, c.end, c.pgsize])).toEqual([[0x600000, 0x602fff, SZ_4K]]);
  });

  it('syncs early when a page does not touch the gathered range, and starts over after iotlb_sync', async () => {
    const { k, mock, dom } = await setup();
    await k.run(iommuMap(dom, 0x10000, 0x4001_0000, 0x1000, RW));
    await k.run(iommuMap(dom, 0x30000, 0x4003_0000, 0x1000, RW));
    mock.calls.length = 0;
    const gather = iommuIotlbGatherInit();
    gather.queued = false;
    expect(iommuUnmapFast(dom, 0x10000, 0x1000, gather)).toBe(0x1000);
    expect(iommuUnmapFast(dom, 0x30000, 0x1000, gather)).toBe(0x1000);
    expect(mock.callsOf('gather-sync').map((c) => [c.start, c.end])).toEqual([[0x10000, 0x10fff]]);
    expect([gather.start, gather.end]).toEqual([0x30000, 0x30fff]);
    await k.run(iommuIotlbSync(dom, gather));
    expect(mock.callsOf('iotlb-sync').map((c) => [c.start, c.end])).toEqual([[0x30000, 0x30fff]]);
    expect([gather.start, gather.end, gather.pgsize]).toEqual([IOMMU_GATHER_START_EMPTY, 0, 0]);
  });

  it('leaves a queued gather to the flush queue', async () => {
    const { k, mock, dom } = await setup();
    await k.run(iommuMap(dom, 0x10000, 0x4001_0000, 0x2000, RW));
    mock.calls.length = 0;
    const gather = iommuIotlbGatherInit();
    gather.queued = true;
    expect(iommuUnmapFast(dom, 0x10000, 0x2000, gather)).toBe(0x2000);
    expect(mock.callsOf('gather-sync')).toEqual([]);
    expect(gather.start).toBe(IOMMU_GATHER_START_EMPTY);
    await k.run(iommuIotlbSync(dom, gather));
    expect(gather.queued).toBe(true);
  });
});

describe("iotlb_sync's done callback", () => {
  /** Let every pending promise continuation run (a macrotask boundary drains the microtasks). */
  const settleSoftware = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

  /** `dom` with its ops' iotlbSync replaced (the ops object is the mock's, shared: copy it). */
  function withSync(dom: MockDomain, iotlbSync: NonNullable<DomainOps['iotlbSync']>): void {
    dom.ops = { ...dom.ops, iotlbSync };
  }

  it('answers iommu_unmap with the bytes unmapped when the driver calls done later, and not before', async () => {
    const { k, dom } = await setup();
    await k.run(iommuMap(dom, 0x10000, 0x4001_0000, 0x2000, RW));
    let finish: (() => void) | null = null;
    withSync(dom, (_d, gather, done) => {
      expect([gather.start, gather.end]).toEqual([0x10000, 0x11fff]);
      finish = () => done(0);
    });
    let answer: number | null = null;
    const unmap = iommuUnmap(dom, 0x10000, 0x2000).then((n) => (answer = n));
    await settleSoftware();
    expect(answer).toBeNull();
    expect(iommuIovaToPhys(dom, 0x10000)).toBe(0);
    finish!();
    await unmap;
    expect(answer).toBe(0x2000);
  });

  it('fails iommu_unmap with the Error a driver passes, or with what it throws before calling done', async () => {
    const { k, dom } = await setup();
    await k.run(iommuMap(dom, 0x10000, 0x4001_0000, 0x1000, RW));
    withSync(dom, (_d, _g, done) => done(new KernelError('EIO', 'sync lost')));
    await expectErrno(iommuUnmap(dom, 0x10000, 0x1000), 'EIO', /sync lost/);
    await k.run(iommuMap(dom, 0x10000, 0x4001_0000, 0x1000, RW));
    const thrown = { not: 'an Error' };
    withSync(dom, () => {
      throw thrown;
    });
    await expect(iommuUnmap(dom, 0x10000, 0x1000)).rejects.toBe(thrown);
  });

  it('counts the first answer: a second call of done for the same unmap changes nothing', async () => {
    const { k, dom } = await setup();
    await k.run(iommuMap(dom, 0x10000, 0x4001_0000, 0x1000, RW));
    await k.run(iommuMap(dom, 0x20000, 0x4002_0000, 0x1000, RW));
    withSync(dom, (_d, _g, done) => {
      done();
      done(new KernelError('EIO', 'late'));
    });
    expect(await k.run(iommuUnmap(dom, 0x10000, 0x1000))).toBe(0x1000);
    withSync(dom, (_d, _g, done) => {
      done(new KernelError('EIO', 'first'));
      done();
    });
    await expectErrno(iommuUnmap(dom, 0x20000, 0x1000), 'EIO', /first/);
  });

  it('refuses a driver that returns a promise instead of calling done (an older contract), naming the callback', async () => {
    const { k, dom } = await setup();
    await k.run(iommuMap(dom, 0x10000, 0x4001_0000, 0x1000, RW));
    const old = (() => Promise.resolve()) as unknown as NonNullable<DomainOps['iotlbSync']>;
    withSync(dom, old);
    await expectErrno(iommuUnmap(dom, 0x10000, 0x1000), 'EINVAL', /iotlb_sync returned a promise.*IotlbSyncDone/);
    const gather = iommuIotlbGatherInit();
    await expectErrno(iommuIotlbSync(dom, gather), 'EINVAL', /IotlbSyncDone/);
  });

  it('iommu_iotlb_sync starts the gather over only once, when done is called', async () => {
    const { k, dom } = await setup();
    await k.run(iommuMap(dom, 0x30000, 0x4003_0000, 0x1000, RW));
    const gather = iommuIotlbGatherInit();
    expect(iommuUnmapFast(dom, 0x30000, 0x1000, gather)).toBe(0x1000);
    let done: ((f?: unknown) => void) | null = null;
    withSync(dom, (_d, _g, d) => {
      done = d;
    });
    const sync = iommuIotlbSync(dom, gather);
    expect([gather.start, gather.end]).toEqual([0x30000, 0x30fff]);
    done!();
    await sync;
    expect(gather.start).toBe(IOMMU_GATHER_START_EMPTY);
    // A stray second call must not start the caller's next gather over.
    iommuIotlbGatherAddRange(gather, 0x50000, 0x1000);
    done!();
    expect([gather.start, gather.end]).toEqual([0x50000, 0x50fff]);
  });
});

describe('iommu_iova_to_phys', () => {
  it('is the identity for IDENTITY domains and 0 for BLOCKED ones', async () => {
    const { mock, dom } = await setup();
    expect(iommuIovaToPhys(mock.identityDomain!, 0x1234_5678)).toBe(0x1234_5678);
    expect(iommuIovaToPhys(mock.blockedDomain, 0x1234_5678)).toBe(0);
    expect(iommuIovaToPhys(dom, 0x5000)).toBe(0);
    const bare = new IommuDomain({ type: 0x1, ops: { attachDev: () => undefined } });
    await expectErrno(() => iommuIovaToPhys(bare, 0), 'EOPNOTSUPP');
    expect(IOMMU_DOMAIN_BLOCKED).toBe(0);
  });
});

describe('what an UNMANAGED domain maps, by physical frame (for the stray-DMA monitor)', () => {
  it('follows map and unmap: a range split by an unmap in its middle keeps both ends; a failed map records nothing', async () => {
    const { k, dom } = await setup();
    const frames = (pa0: number, n: number): boolean[] => Array.from({ length: n }, (_, i) => iommuDomainMapsPhys(dom, pa0 + i * SZ_4K + 0x10));
    await k.run(iommuMap(dom, 0x10_0000, 0x4010_0000, 3 * SZ_4K, RW));
    expect(frames(0x4010_0000, 4)).toEqual([true, true, true, false]);
    expect(await k.run(iommuUnmap(dom, 0x10_1000, SZ_4K))).toBe(SZ_4K);
    expect(frames(0x4010_0000, 3)).toEqual([true, false, true]);
    // Map the hole again elsewhere, then unmap everything page by page.
    await k.run(iommuMap(dom, 0x90_0000, 0x4010_1000, SZ_4K, RW));
    expect(frames(0x4010_0000, 3)).toEqual([true, true, true]);
    for (const iova of [0x10_0000, 0x10_2000, 0x90_0000]) expect(await k.run(iommuUnmap(dom, iova, SZ_4K))).toBe(SZ_4K);
    expect(frames(0x4010_0000, 3)).toEqual([false, false, false]);
    // An IOVA already mapped: EEXIST-style failure, and the physical range is not recorded.
    await k.run(iommuMap(dom, 0x20_0000, 0x4020_0000, SZ_4K, RW));
    await expect(k.run(iommuMap(dom, 0x20_0000, 0x4030_0000, SZ_4K, RW))).rejects.toThrow();
    expect(iommuDomainMapsPhys(dom, 0x4030_0000)).toBe(false);
    expect(iommuDomainMapsPhys(dom, 0x4020_0000)).toBe(true);
  });

  it('answers from what is mapped now through many map/unmap cycles: records of unmapped ranges are reused or swept', async () => {
    const { k, dom } = await setup();
    // 300 one-page maps at distinct IOVAs, each unmapped again: their records are spent, then swept.
    for (let i = 0; i < 300; i++) {
      await k.run(iommuMap(dom, 0x100_0000 + i * SZ_4K, 0x4100_0000 + i * SZ_4K, SZ_4K, RW));
      expect(iommuDomainMapsPhys(dom, 0x4100_0000 + i * SZ_4K)).toBe(true);
      expect(await k.run(iommuUnmap(dom, 0x100_0000 + i * SZ_4K, SZ_4K))).toBe(SZ_4K);
    }
    for (let i = 0; i < 300; i += 37) expect(iommuDomainMapsPhys(dom, 0x4100_0000 + i * SZ_4K)).toBe(false);
    // The same IOVA again, onto another frame: the record follows the new one.
    await k.run(iommuMap(dom, 0x100_0000, 0x4200_0000, SZ_4K, RW));
    expect(iommuDomainMapsPhys(dom, 0x4200_0000)).toBe(true);
    expect(iommuDomainMapsPhys(dom, 0x4100_0000)).toBe(false);
    // A range whose tail starts where a spent record sits: unmapping its head keeps the tail.
    await k.run(iommuMap(dom, 0x30_1000, 0x4300_0000, SZ_4K, RW));
    expect(await k.run(iommuUnmap(dom, 0x30_1000, SZ_4K))).toBe(SZ_4K);
    await k.run(iommuMap(dom, 0x30_0000, 0x4310_0000, 2 * SZ_4K, RW));
    expect(await k.run(iommuUnmap(dom, 0x30_0000, SZ_4K))).toBe(SZ_4K);
    expect([iommuDomainMapsPhys(dom, 0x4310_0000), iommuDomainMapsPhys(dom, 0x4310_1000), iommuDomainMapsPhys(dom, 0x4300_0000)]).toEqual([false, true, false]);
    expect(await k.run(iommuUnmap(dom, 0x30_1000, SZ_4K))).toBe(SZ_4K);
    expect(iommuDomainMapsPhys(dom, 0x4310_1000)).toBe(false);
  });

  it('does not track the DMA API\'s domains (dma-debug does)', async () => {
    const { k, dev } = await (async () => {
      const s = await setup();
      return { ...s, dev: s.dev('dma@1') };
    })();
    const def = iommuGroupGet(dev)!.defaultDomain!;
    await k.run(iommuMap(def, 0x7000_0000, 0x4070_0000, SZ_4K, RW));
    expect(iommuDomainMapsPhys(def, 0x4070_0000)).toBe(false);
  });
});
