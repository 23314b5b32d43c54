import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { isKernelError } from '../../bus/errno.js';
import { PhysicalMemory } from '../../hw/memory.js';
import {
  Allocation,
  MAX_ORDER,
  PAGE_SIZE,
  PageAllocator,
  describeOwner,
  orderForSize,
  ownerMatches,
  type AllocOwner,
} from '../../mm/page-alloc.js';
import { expectErrno } from '../lib/errno.js';

const MiB = 1024 * 1024;
const K = { kind: 'kernel', what: 'test' } as const;

/** Allocate single frames until the allocator says ENOMEM; the frames it handed out. */
function allocAll(a: PageAllocator): number[] {
  const got: number[] = [];
  for (;;) {
    try {
      got.push(a.allocPages(0, K));
    } catch (e) {
      expect(isKernelError(e, 'ENOMEM')).toBe(true);
      return got;
    }
  }
}

describe('page allocator: owners and lookups', () => {
  it('tags every frame of an allocation with its owner and the kernel instance', () => {
    const a = new PageAllocator({ memory: [{ base: 0x4000_0000, size: 8 * MiB }], kernelInstance: 3 });
    const owner: AllocOwner = { kind: 'dma', device: '/soc/dma@1000', what: 'ring' };
    const pa = a.allocPages(2, owner);
    expect(pa % (4 * PAGE_SIZE)).toBe(0);
    for (let i = 0; i < 4; i++) {
      const own = a.ownerOf(pa + i * PAGE_SIZE + 123)!;
      expect(own.owner).toBe(owner);
      expect(own.kernelInstance).toBe(3);
      expect(own).toBeInstanceOf(Allocation);
      expect((own as Allocation).pa).toBe(pa);
      expect((own as Allocation).order).toBe(2);
    }
    // Neighbouring frames are free, and say which kernel's allocator thinks so.
    const after = a.ownerOf(pa + 4 * PAGE_SIZE)!;
    expect(after.owner.kind).toBe('free');
    expect(after.kernelInstance).toBe(3);
    expect(a.allocationAt(pa + 5)).toBe(a.ownerOf(pa));
    expect(a.allocationAt(pa + 4 * PAGE_SIZE)).toBeNull();
  });

  it('answers null outside RAM and returns to free after freePages', () => {
    const a = new PageAllocator({ memory: [{ base: 0x8000_0000, size: 4 * MiB }], kernelInstance: 1 });
    expect(a.ownerOf(0x7fff_f000)).toBeNull();
    expect(a.ownerOf(0x8040_0000)).toBeNull();
    expect(a.ownerOf(-1)).toBeNull();
    expect(a.ownerOf(Number.NaN)).toBeNull();
    expect(a.ownerOf(0x8000_0000)!.owner.kind).toBe('free');
    const pa = a.allocPages(0, { kind: 'process', pid: 42, va: 0x1000 });
    expect(a.ownerOf(pa)!.owner).toEqual({ kind: 'process', pid: 42, va: 0x1000 });
    a.freePages(pa);
    expect(a.ownerOf(pa)!.owner.kind).toBe('free');
  });

  it('ownerOf does not allocate: the same record object comes back every time', () => {
    const a = new PageAllocator({ memory: [{ base: 0, size: 4 * MiB }], kernelInstance: 0 });
    const pa = a.allocPages(3, K);
    expect(a.ownerOf(pa + PAGE_SIZE)).toBe(a.ownerOf(pa + 7 * PAGE_SIZE));
    expect(a.ownerOf(3 * MiB)).toBe(a.ownerOf(3 * MiB + PAGE_SIZE));
  });

  it('handles RAM that is not 2 MiB aligned, page-misaligned edges, and merges overlapping regions', () => {
    const a = new PageAllocator({
      memory: [
        { base: 0x10_0800, size: 0x5000 }, // frames 0x101000..0x104fff usable; partial frames dropped
        { base: 0x20_0000, size: 0x3000 },
        { base: 0x20_2000, size: 0x3000 }, // overlaps the previous one: merged to 0x200000..0x205000
      ],
      kernelInstance: 0,
    });
    expect(a.ownerOf(0x10_0800)).toBeNull();
    expect(a.ownerOf(0x10_1000)!.owner.kind).toBe('free');
    expect(a.ownerOf(0x10_4fff)!.owner.kind).toBe('free');
    expect(a.ownerOf(0x10_5000)).toBeNull();
    expect(a.ownerOf(0x20_4fff)!.owner.kind).toBe('free');
    expect(a.ownerOf(0x20_5000)).toBeNull();
    expect(a.usage().totalBytes).toBe(4 * PAGE_SIZE + 5 * PAGE_SIZE);
    const got = allocAll(a);
    expect(got.sort((x, y) => x - y)).toEqual([
      0x10_1000, 0x10_2000, 0x10_3000, 0x10_4000, 0x20_0000, 0x20_1000, 0x20_2000, 0x20_3000, 0x20_4000,
    ]);
  });

  it('copes with a large sparse machine without touching every frame', () => {
    const a = new PageAllocator({
      memory: [
        { base: 0x8000_0000, size: 2 * 1024 * MiB },
        { base: 0x80_0000_0000, size: 64 * 1024 * MiB },
      ],
      kernelInstance: 0,
    });
    expect(a.usage().totalBytes).toBe(66 * 1024 * MiB);
    const big = a.allocPages(MAX_ORDER, K);
    expect(big % (2 * MiB)).toBe(0);
    expect(a.ownerOf(0x80_0000_0000 + 60 * 1024 * MiB)!.owner.kind).toBe('free');
    expect(a.ownerOf(0x80_0000_0000 + 64 * 1024 * MiB)).toBeNull();
  });

  it('starts over after a kexec: a new instance knows nothing of the old allocations', () => {
    const memory = [{ base: 0x4000_0000, size: 4 * MiB }];
    const old = new PageAllocator({ memory, kernelInstance: 1 });
    const pa = old.allocPages(0, { kind: 'dma', device: 'engine0' });
    const fresh = new PageAllocator({ memory, kernelInstance: 2 });
    const own = fresh.ownerOf(pa)!;
    expect(own.owner.kind).toBe('free');
    expect(own.kernelInstance).toBe(2);
    // The new kernel hands the same frame out again: exactly what makes a stale DMA a stray write.
    expect(fresh.allocPages(0, K)).toBe(pa);
    expect(old.ownerOf(pa)!.kernelInstance).toBe(1);
  });
});

describe('page allocator: orders, alignment, contiguity', () => {
  it('returns naturally aligned, non-overlapping blocks for every order', () => {
    const a = new PageAllocator({ memory: [{ base: 0x4000_0000, size: 32 * MiB }], kernelInstance: 0 });
    const blocks: { pa: number; size: number }[] = [];
    for (let round = 0; round < 3; round++) {
      for (let order = 0; order <= MAX_ORDER; order++) {
        const pa = a.allocPages(order, { kind: 'kernel', what: `o${order}` });
        const size = PAGE_SIZE * 2 ** order;
        expect(pa % size, `order ${order} at 0x${pa.toString(16)}`).toBe(0);
        expect(pa).toBeGreaterThanOrEqual(0x4000_0000);
        expect(pa + size).toBeLessThanOrEqual(0x4000_0000 + 32 * MiB);
        blocks.push({ pa, size });
        // Contiguous: every frame belongs to this allocation.
        for (let off = 0; off < size; off += PAGE_SIZE) expect((a.ownerOf(pa + off) as Allocation).pa).toBe(pa);
      }
    }
    blocks.sort((x, y) => x.pa - y.pa);
    for (let i = 1; i < blocks.length; i++) expect(blocks[i].pa).toBeGreaterThanOrEqual(blocks[i - 1].pa + blocks[i - 1].size);
  });

  it('merges buddies back: after freeing everything a 2 MiB block is available again', async () => {
    const a = new PageAllocator({ memory: [{ base: 0x20_0000, size: 2 * MiB }], kernelInstance: 0 });
    const pages: number[] = [];
    for (let i = 0; i < 512; i++) pages.push(a.allocPages(0, K));
    await expectErrno(() => a.allocPages(0, K), 'ENOMEM');
    // Free in a scrambled order so merging has to happen at every level.
    for (let i = 0; i < 512; i++) a.freePages(pages[(i * 307) % 512]);
    expect(a.allocPages(MAX_ORDER, K)).toBe(0x20_0000);
  });

  it('allocates from the bottom of RAM first', () => {
    const a = new PageAllocator({ memory: [{ base: 0x4000_0000, size: 8 * MiB }], kernelInstance: 0 });
    expect(a.allocPages(0, K)).toBe(0x4000_0000);
    expect(a.allocPages(0, K)).toBe(0x4000_1000);
    expect(a.allocPages(1, K)).toBe(0x4000_2000);
  });

  it('orderForSize rounds up to a power of two of pages', async () => {
    expect(orderForSize(1)).toBe(0);
    expect(orderForSize(4096)).toBe(0);
    expect(orderForSize(4097)).toBe(1);
    expect(orderForSize(64 * 1024)).toBe(4);
    expect(orderForSize(2 * MiB)).toBe(9);
    expect(orderForSize(2 * MiB + 1)).toBe(10);
    await expectErrno(() => orderForSize(0), 'EINVAL');
  });
});

describe('page allocator: error paths', () => {
  const mk = () => new PageAllocator({ memory: [{ base: 0x4000_0000, size: 4 * MiB }], kernelInstance: 7 });

  it('refuses a double free', async () => {
    const a = mk();
    const pa = a.allocPages(1, K);
    a.freePages(pa);
    await expectErrno(() => a.freePages(pa), 'EINVAL', /not allocated \(double free\?\)/);
  });

  it('refuses freeing the middle of an allocation, naming the real owner', async () => {
    const a = mk();
    const pa = a.allocPages(2, { kind: 'dma', device: '/pcie/ep0' });
    await expectErrno(() => a.freePages(pa + PAGE_SIZE), 'EINVAL', /not the head of an allocation.*order-2 allocation at 0x[0-9a-f]+ owned by dma:\/pcie\/ep0/);
    expect(a.ownerOf(pa + PAGE_SIZE)!.owner.kind).toBe('dma');
  });

  it('refuses a free by a different owner, and accepts the right one', async () => {
    const a = mk();
    const pa = a.allocPages(0, { kind: 'dma', device: 'A', what: 'cmdq' });
    await expectErrno(() => a.freePages(pa, 0, { kind: 'dma', device: 'B' }), 'EINVAL', /foreign free: owned by dma:A:cmdq, freed by dma:B/);
    await expectErrno(() => a.freePages(pa, 0, { kind: 'kernel', what: 'x' }), 'EINVAL', /foreign free/);
    expect(a.ownerOf(pa)!.owner.kind).toBe('dma');
    a.freePages(pa, 0, { kind: 'dma', device: 'A' });
    expect(a.ownerOf(pa)!.owner.kind).toBe('free');
  });

  it('refuses a free with the wrong order', async () => {
    const a = mk();
    const pa = a.allocPages(3, K);
    await expectErrno(() => a.freePages(pa, 2), 'EINVAL', /order 2 does not match the allocation's order 3/);
  });

  it('refuses bad orders, bad addresses and reserved or non-RAM frames', async () => {
    const a = new PageAllocator({
      memory: [{ base: 0x4000_0000, size: 4 * MiB }],
      reserved: [{ base: 0x4010_0000, size: 0x1000, name: 'fw' }],
      kernelInstance: 0,
    });
    for (const order of [-1, 10, 1.5, Number.NaN]) await expectErrno(() => a.allocPages(order, K), 'EINVAL', /order .* outside 0\.\.9/);
    await expectErrno(() => a.freePages(0x4000_0800), 'EINVAL', /not a page-aligned/);
    await expectErrno(() => a.freePages(0x1000), 'EINVAL', /not RAM/);
    await expectErrno(() => a.freePages(0x4010_0000), 'EINVAL', /reserved \(fw\)/);
    await expectErrno(() => a.allocPages(0, { kind: 'free' } as unknown as AllocOwner), 'EINVAL', /frame state/);
    await expectErrno(() => a.allocPages(0, { kind: 'dma' } as unknown as AllocOwner), 'EINVAL', /malformed owner/);
    await expectErrno(() => a.allocPages(0, K, { zero: true }), 'EINVAL', /no RAM access/);
  });

  it('reports ENOMEM naming the request', async () => {
    const a = new PageAllocator({ memory: [{ base: 0, size: 64 * 1024 }], kernelInstance: 0 });
    await expectErrno(() => a.allocPages(5, { kind: 'dma', device: 'big' }), 'ENOMEM', /order 5 \(131072 bytes\) for dma:big/);
    a.allocPages(4, K);
    await expectErrno(() => a.allocPages(0, K), 'ENOMEM');
  });

  it('rejects malformed firmware ranges', async () => {
    await expectErrno(() => new PageAllocator({ memory: [{ base: -4096, size: 4096 }], kernelInstance: 0 }), 'EINVAL', /memory region 0/);
    await expectErrno(
      () => new PageAllocator({ memory: [{ base: 0, size: 4096 }], reserved: [{ base: 0, size: Number.NaN, name: 'bad' }], kernelInstance: 0 }),
      'EINVAL',
      /reserved range 0 \(bad\)/,
    );
    await expectErrno(() => new PageAllocator({ memory: [], kernelInstance: -1 }), 'EINVAL', /kernel instance/);
  });
});

describe('page allocator: reservations', () => {
  it('never hands out reserved frames, partly covered ones included, even when RAM runs out', () => {
    const base = 0x4000_0000;
    const reserved = [
      { base: base + 0x3000, size: 0x2000, name: '/memreserve/ 0' }, // frames 3, 4
      { base: base + 0x7800, size: 0x1000, name: 'partial' }, // covers half of frames 7 and 8
      { base: base + 0xf000, size: 0x10_0000, name: 'beyond-ram' }, // frame 15 and past the end of RAM
    ];
    const a = new PageAllocator({ memory: [{ base, size: 0x10000 }], reserved, kernelInstance: 0 });
    const got = allocAll(a);
    const frames = got.map((pa) => (pa - base) / PAGE_SIZE).sort((x, y) => x - y);
    expect(frames).toEqual([0, 1, 2, 5, 6, 9, 10, 11, 12, 13, 14]);
    for (const f of [3, 4, 7, 8, 15]) {
      const own = a.ownerOf(base + f * PAGE_SIZE)!;
      expect(own.owner.kind).toBe('reserved');
    }
    expect(a.ownerOf(base + 0x7000)!.owner).toEqual({ kind: 'reserved', name: 'partial' });
    const u = a.usage();
    expect(u.reservedBytes).toBe(5 * PAGE_SIZE);
    expect(u.freeBytes).toBe(0);
    expect(u.reserved).toEqual([
      { name: '/memreserve/ 0', base: base + 0x3000, size: 0x2000 },
      { name: 'partial', base: base + 0x7000, size: 0x2000 },
      { name: 'beyond-ram', base: base + 0xf000, size: 0x10_0000 },
    ]);
  });

  it('keeps large reservations out of multi-order allocations', () => {
    const base = 0x8000_0000;
    const a = new PageAllocator({
      memory: [{ base, size: 16 * MiB }],
      reserved: [{ base: base + 3 * MiB + 0x5000, size: 5 * MiB, name: 'carveout' }],
      kernelInstance: 0,
    });
    const rs = base + 3 * MiB + 0x5000;
    const re = rs + 5 * MiB;
    for (;;) {
      let pa: number;
      try {
        pa = a.allocPages(MAX_ORDER, K);
      } catch {
        break;
      }
      expect(pa + 2 * MiB <= rs || pa >= re).toBe(true);
    }
    for (;;) {
      let pa: number;
      try {
        pa = a.allocPages(0, K);
      } catch {
        break;
      }
      expect(pa + PAGE_SIZE <= rs || pa >= re).toBe(true);
    }
    expect(a.usage().freeBytes).toBe(0);
    expect(a.usage().allocatedBytes).toBe(16 * MiB - 5 * MiB);
  });
});

describe('page allocator: usage and zeroing', () => {
  it('reports bytes by owner kind and by owner', () => {
    const a = new PageAllocator({ memory: [{ base: 0, size: 8 * MiB }], reserved: [{ base: 0, size: 0x10000, name: 'dtb' }], kernelInstance: 4 });
    a.allocPages(2, { kind: 'dma', device: 'smmu', what: 'cmdq' });
    a.allocPages(0, { kind: 'dma', device: 'smmu', what: 'cmdq' });
    a.allocPages(0, { kind: 'process', pid: 9, va: 0x1000 });
    a.allocPages(0, { kind: 'process', pid: 9, va: 0x2000 });
    const pt = a.allocPages(0, { kind: 'page-table', what: 'mm pid 9' });
    const u = a.usage();
    expect(u.kernelInstance).toBe(4);
    expect(u.totalBytes).toBe(8 * MiB);
    expect(u.reservedBytes).toBe(0x10000);
    expect(u.allocatedBytes).toBe(8 * PAGE_SIZE);
    expect(u.freeBytes).toBe(8 * MiB - 0x10000 - 8 * PAGE_SIZE);
    expect(u.byKind).toEqual({ dma: 5 * PAGE_SIZE, process: 2 * PAGE_SIZE, 'page-table': PAGE_SIZE });
    expect(u.byOwner).toEqual([
      { owner: 'dma:smmu:cmdq', kind: 'dma', bytes: 5 * PAGE_SIZE, allocations: 2 },
      { owner: 'process:9', kind: 'process', bytes: 2 * PAGE_SIZE, allocations: 2 },
      { owner: 'page-table:mm pid 9', kind: 'page-table', bytes: PAGE_SIZE, allocations: 1 },
    ]);
    a.freePages(pt);
    expect(a.usage().byKind['page-table']).toBeUndefined();
  });

  it('zeroes through RAM when asked, and only then', () => {
    const ram = new PhysicalMemory();
    ram.addRegion(0x4000_0000, 4 * MiB);
    const a = new PageAllocator({ memory: [{ base: 0x4000_0000, size: 4 * MiB }], kernelInstance: 0, ram });
    const dirty = a.allocPages(1, K);
    ram.fill(dirty, 2 * PAGE_SIZE, 0xa5);
    a.freePages(dirty);
    const notZeroed = a.allocPages(1, K);
    expect(notZeroed).toBe(dirty);
    expect(ram.read8(notZeroed + 100)).toBe(0xa5);
    a.freePages(notZeroed);
    const zeroed = a.allocPages(1, K, { zero: true });
    expect(zeroed).toBe(dirty);
    expect(ram.read(zeroed, 2 * PAGE_SIZE).every((b) => b === 0)).toBe(true);
  });

  it('describes and matches owners', () => {
    expect(describeOwner({ kind: 'dma', device: '/a' })).toBe('dma:/a');
    expect(describeOwner({ kind: 'reserved', name: 'tz' })).toBe('reserved:tz');
    expect(ownerMatches({ kind: 'process', pid: 3, va: 0x5000 }, { kind: 'process', pid: 3 })).toBe(true);
    expect(ownerMatches({ kind: 'process', pid: 3, va: 0x5000 }, { kind: 'process', pid: 4 })).toBe(false);
    expect(ownerMatches({ kind: 'dma', device: 'x' }, { kind: 'dma', device: 'x', what: 'q' })).toBe(false);
  });
});

describe('page allocator: random alloc/free sequences keep the books straight', () => {
  it('never overlaps, never leaks, lists exactly the live allocations, and coalesces fully', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ alloc: fc.boolean(), order: fc.integer({ min: 0, max: MAX_ORDER }), pick: fc.nat() }), { maxLength: 120 }),
        (ops) => {
          const base = 0x4000_0000;
          const size = 8 * MiB;
          const a = new PageAllocator({
            memory: [{ base, size }],
            reserved: [{ base: base + 0x12_3000, size: 0x3000, name: 'r' }],
            kernelInstance: 0,
          });
          const live: { pa: number; order: number }[] = [];
          for (const op of ops) {
            if (op.alloc || live.length === 0) {
              let pa: number;
              try {
                pa = a.allocPages(op.order, K);
              } catch (e) {
                if (isKernelError(e, 'ENOMEM')) continue;
                throw e;
              }
              const sz = PAGE_SIZE * 2 ** op.order;
              if (pa % sz !== 0) return false;
              if (pa < base + 0x12_6000 && pa + sz > base + 0x12_3000) return false;
              for (const l of live) {
                const lsz = PAGE_SIZE * 2 ** l.order;
                if (pa < l.pa + lsz && l.pa < pa + sz) return false;
              }
              live.push({ pa, order: op.order });
            } else {
              const [victim] = live.splice(op.pick % live.length, 1);
              a.freePages(victim.pa, victim.order);
            }
            const allocated = live.reduce((s, l) => s + PAGE_SIZE * 2 ** l.order, 0);
            if (a.usage().allocatedBytes !== allocated) return false;
            if (a.usage().freeBytes !== size - 0x3000 - allocated) return false;
            // The live allocations, whatever order they were freed in.
            const listed = a.allocations().map((x) => x.pa);
            if (listed.join() !== live.map((l) => l.pa).sort((x, y) => x - y).join()) return false;
            if ((a.usage().byOwner[0]?.allocations ?? 0) !== live.length) return false;
          }
          for (const l of live) a.freePages(l.pa, l.order);
          // Fully coalesced: every 2 MiB block not touching the reservation is whole again.
          let big = 0;
          for (;;) {
            try {
              a.allocPages(MAX_ORDER, K);
              big++;
            } catch {
              break;
            }
          }
          return big === 3;
        },
      ),
      { numRuns: 150, seed: 1234 },
    );
  });
});
