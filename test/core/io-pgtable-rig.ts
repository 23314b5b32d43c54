/**
 * Test rig for io-pgtable: RAM, a checking table allocator and recording flush ops.
 */
import { KernelError } from '../../bus/errno.js';
import type { IommuIotlbGather } from '../../core/iommu-gather.js';
import type { IommuFlushOps, IoPgtableAllocator } from '../../core/io-pgtable.js';
import { PhysicalMemory } from '../../hw/memory.js';

/**
 * Bump allocator with per-size free lists over one RAM window. It zeroes what it hands out, refuses
 * frees of blocks it did not hand out (or with another size), and can be capped to provoke ENOMEM.
 */
export class TestTableAllocator implements IoPgtableAllocator {
  private next: number;
  private readonly freeLists = new Map<number, number[]>();
  /** Live blocks: pa -> size. */
  readonly live = new Map<number, number>();
  allocs = 0;
  frees = 0;
  /** Allocation fails with ENOMEM once this many blocks are live. */
  limit = Infinity;

  constructor(
    private readonly ram: PhysicalMemory,
    readonly base: number,
    readonly size: number,
  ) {
    this.next = base;
  }

  allocTable(size: number, align: number): number {
    if (this.live.size >= this.limit) throw new KernelError('ENOMEM', 'test allocator limit reached');
    const list = this.freeLists.get(size);
    let pa = list?.pop();
    if (pa === undefined || pa % align !== 0) {
      if (pa !== undefined) list!.push(pa);
      pa = Math.ceil(this.next / align) * align;
      if (pa + size > this.base + this.size) throw new KernelError('ENOMEM', 'test allocator window exhausted');
      this.next = pa + size;
    }
    this.ram.fill(pa, size, 0);
    this.live.set(pa, size);
    this.allocs++;
    return pa;
  }

  freeTable(pa: number, size: number): void {
    const had = this.live.get(pa);
    if (had !== size) throw new Error(`freeTable(0x${pa.toString(16)}, ${size}): live size is ${had}`);
    this.live.delete(pa);
    this.frees++;
    // Poison what was freed so a use after free shows up as garbage descriptors.
    this.ram.fill(pa, size, 0xa5);
    let list = this.freeLists.get(size);
    if (!list) this.freeLists.set(size, (list = []));
    list.push(pa);
  }
}

export type FlushCall =
  | { op: 'all' }
  | { op: 'walk'; iova: number; size: number; granule: number }
  | { op: 'page'; iova: number; granule: number };

/** Flush ops that record every call; `addPage` lets a test route tlbAddPage into the gather helpers. */
export function recordingFlushOps(
  addPage?: (gather: IommuIotlbGather, iova: number, granule: number) => void,
): IommuFlushOps & { calls: FlushCall[] } {
  const calls: FlushCall[] = [];
  return {
    calls,
    tlbFlushAll: () => {
      calls.push({ op: 'all' });
    },
    tlbFlushWalk: (iova, size, granule) => {
      calls.push({ op: 'walk', iova, size, granule });
    },
    tlbAddPage: (gather, iova, granule) => {
      calls.push({ op: 'page', iova, granule });
      addPage?.(gather, iova, granule);
    },
  };
}

/** RAM for tables: 64 MiB at 1 GiB (well inside every output size the tests use). */
export const TABLE_RAM_BASE = 0x4000_0000;
export const TABLE_RAM_SIZE = 0x400_0000;

export function tableRam(): { ram: PhysicalMemory; allocator: TestTableAllocator } {
  const ram = new PhysicalMemory();
  ram.addRegion(TABLE_RAM_BASE, TABLE_RAM_SIZE);
  return { ram, allocator: new TestTableAllocator(ram, TABLE_RAM_BASE, TABLE_RAM_SIZE) };
}

/** Read a descriptor as its two halves. */
export function readPte(ram: PhysicalMemory, pa: number): { lo: number; hi: number } {
  return { lo: ram.read32(pa), hi: ram.read32(pa + 4) };
}

/** Page and block sizes, and the page-size bitmaps of the three granules. */
export const SZ_4K = 0x1000;
export const SZ_16K = 0x4000;
export const SZ_64K = 0x1_0000;
export const SZ_2M = 0x20_0000;
export const SZ_32M = 0x200_0000;
export const SZ_512M = 0x2000_0000;
export const SZ_1G = 0x4000_0000;
export const SZ_4T = 2 ** 42;
export const BITMAP_4K = SZ_4K + SZ_2M + SZ_1G;
export const BITMAP_16K = SZ_16K + SZ_32M;
export const BITMAP_64K = SZ_64K + SZ_512M;
