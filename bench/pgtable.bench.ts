/**
 * Page table benchmarks:
 * - pgtable.map_unmap_4k: io-pgtable alone (ARM_64_LPAE_S1, 4K granule, 48-bit) mapping then unmapping
 *   one 4K page, over a spread of IOVAs so the walk touches several tables; tables stay allocated.
 * - pgtable.map_unmap_1m_batched / pgtable.map_unmap_1m_per_page: 1 MiB (256 4K pages) mapped then
 *   unmapped with one map_pages/unmap_pages call each, and with one call per page; in pages/s, so the
 *   two read side by side give the batching gain (the kernel's reason for pgcount).
 * - walk.4level: the hardware walker, stage 1, 4K granule, 48-bit input, a full 4-level walk from the
 *   table base for every translation (no TLB), over 64K mapped pages in 128 level-3 tables under 32
 *   level-1 entries, visited in a scrambled order.
 */
import { KernelError } from '../bus/errno.js';
import { iommuIotlbGatherInit } from '../core/iommu-gather.js';
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE, type IoPgtableAllocator } from '../core/io-pgtable.js';
import { allocIoPgtableOps } from '../core/io-pgtable-arm.js';
import { PhysicalMemory } from '../hw/memory.js';
import { compileStage1, decodeAddressSize, decodeTG0 } from '../hw/walker/config.js';
import { WalkResult } from '../hw/walker/result.js';
import { TranslationTableWalker } from '../hw/walker/walker.js';
import { throughput, type Bench } from './harness.js';

const RAM_BASE = 0x8000_0000;
const RAM_SIZE = 0x1000_0000;

/** Bump allocator with a free list: enough for a benchmark that never runs out. */
class BumpAllocator implements IoPgtableAllocator {
  private next = RAM_BASE;
  private readonly free: number[] = [];
  constructor(private readonly ram: PhysicalMemory) {}
  allocTable(size: number, align: number): number {
    const reuse = size === 4096 ? this.free.pop() : undefined;
    if (reuse !== undefined) {
      this.ram.fill(reuse, size, 0);
      return reuse;
    }
    const pa = Math.ceil(this.next / align) * align;
    if (pa + size > RAM_BASE + RAM_SIZE) throw new KernelError('ENOMEM', 'bench allocator exhausted');
    this.next = pa + size;
    return pa;
  }
  freeTable(pa: number, size: number): void {
    if (size === 4096) this.free.push(pa);
  }
}

function setup() {
  const ram = new PhysicalMemory();
  ram.addRegion(RAM_BASE, RAM_SIZE);
  const tlb = { tlbFlushAll() {}, tlbFlushWalk() {}, tlbAddPage() {} };
  const pgtable = allocIoPgtableOps('ARM_64_LPAE_S1', {
    pgsizeBitmap: 0x4020_1000,
    ias: 48,
    oas: 48,
    tlb,
    ram,
    allocator: new BumpAllocator(ram),
  });
  return { ram, pgtable };
}

/** IOVA of the i-th page of a spread: 64 pages in each of 32 level-3 tables under different level-1 entries. */
function spreadIova(i: number): number {
  const table = i >>> 6;
  return 0x7f00_0000_0000 + table * 0x4020_0000 + (i & 63) * 0x1000 * 7;
}

const mapUnmap4k: Bench = {
  name: 'pgtable.map_unmap_4k',
  unit: 'pairs/s',
  run() {
    const { pgtable } = setup();
    const gather = iommuIotlbGatherInit();
    const N = 2048;
    const iovas = new Float64Array(N);
    for (let i = 0; i < N; i++) iovas[i] = spreadIova(i);
    // Populate the tables once so the loop measures map+unmap, not table allocation.
    for (let i = 0; i < N; i++) {
      pgtable.mapPages(iovas[i], 0x1_0000_0000 + i * 0x1000, 0x1000, 1, IOMMU_READ | IOMMU_WRITE);
      pgtable.unmapPages(iovas[i], 0x1000, 1, gather);
    }
    let k = 0;
    return throughput((n) => {
      for (let j = 0; j < n; j++) {
        const iova = iovas[k];
        k = (k + 1) & (N - 1);
        pgtable.mapPages(iova, 0x2_0000_0000 + k * 0x1000, 0x1000, 1, IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE);
        if (pgtable.unmapPages(iova, 0x1000, 1, gather) !== 0x1000) throw new Error('unmap failed');
      }
    });
  },
};

const MIB_PAGES = 256;
const MIB_IOVA = 0x10_0000_0000;
const MIB_PA = 0x3_0000_0000;

type Pgtable = ReturnType<typeof setup>['pgtable'];
type Gather = ReturnType<typeof iommuIotlbGatherInit>;

/** Map then unmap 1 MiB of 4K pages `n` times with `body`, counted in pages. */
function mibBench(name: string, body: (pgtable: Pgtable, gather: Gather, prot: number) => void): Bench {
  return {
    name,
    unit: 'pages/s',
    run() {
      const { pgtable } = setup();
      const gather = iommuIotlbGatherInit();
      const prot = IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE;
      return throughput((n) => {
        for (let j = 0; j < n; j++) body(pgtable, gather, prot);
      }, MIB_PAGES);
    },
  };
}

// One map_pages/unmap_pages call for the whole range: the kernel's batching.
const mapUnmap1mBatched = mibBench('pgtable.map_unmap_1m_batched', (pgtable, gather, prot) => {
  pgtable.mapPages(MIB_IOVA, MIB_PA, 0x1000, MIB_PAGES, prot);
  if (pgtable.unmapPages(MIB_IOVA, 0x1000, MIB_PAGES, gather) !== MIB_PAGES * 0x1000) throw new Error('unmap failed');
});

// The same range one page per call.
const mapUnmap1mPerPage = mibBench('pgtable.map_unmap_1m_per_page', (pgtable, gather, prot) => {
  for (let i = 0; i < MIB_PAGES; i++) pgtable.mapPages(MIB_IOVA + i * 0x1000, MIB_PA + i * 0x1000, 0x1000, 1, prot);
  for (let i = 0; i < MIB_PAGES; i++) {
    if (pgtable.unmapPages(MIB_IOVA + i * 0x1000, 0x1000, 1, gather) !== 0x1000) throw new Error('unmap failed');
  }
});

const walk4Level: Bench = {
  name: 'walk.4level',
  unit: 'walks/s',
  run() {
    const { ram, pgtable } = setup();
    const N = 65536;
    const iovas = new Float64Array(N);
    for (let i = 0; i < N; i++) {
      const page = 0x7f00_0000_0000 + (i >>> 11) * 0x4020_0000 + (i & 2047) * 0x1000;
      pgtable.mapPages(page, 0x1_0000_0000 + i * 0x1000, 0x1000, 1, IOMMU_READ | IOMMU_WRITE);
      iovas[i] = page + ((i * 97) & 0xfff);
    }
    const s1 = pgtable.armLpaeS1Cfg!;
    const cfg = compileStage1({
      granule: decodeTG0(s1.tcr.tg)!,
      inputSize: 64 - s1.tcr.tsz,
      outputSize: decodeAddressSize(s1.tcr.ips)!,
      tableBase: s1.ttbr,
    });
    const walker = new TranslationTableWalker(ram);
    const out = new WalkResult();
    // Visit the pages in a scrambled order so consecutive walks use different tables.
    let k = 0;
    return throughput((n) => {
      for (let j = 0; j < n; j++) {
        k = (k + 40503) & (N - 1);
        if (!walker.walkStage1(cfg, iovas[k], 0, out)) throw new Error(`walk faulted: ${out.fault}`);
      }
    });
  },
};

export const benches: Bench[] = [mapUnmap4k, mapUnmap1mBatched, mapUnmap1mPerPage, walk4Level];
