/**
 * The IOVA allocator (kernel: drivers/iommu/iova.c): ranges of page frames of one IOVA space,
 * allocated top-down below a limit, with per-size caches of freed ranges so that the common
 * map/unmap cycle never searches the tree.
 *
 * - `allocIova` finds the highest free range of `size` frames ending at or below `limitPfn`, aligned
 *   to the next power of two of its size when asked (the DMA API always asks), never below `startPfn`.
 * - `allocIovaFast` rounds cacheable sizes (below 2^(IOVA_RANGE_CACHE_MAX_SIZE-1) frames) up to a
 *   power of two and serves them from the cache of that order first; when the tree is full it may
 *   flush the caches back and retry.
 * - `freeIovaFast` puts the range in its order's cache; a full cache hands a magazine's worth of
 *   ranges back to the tree. Cached ranges stay allocated in the tree until then.
 *
 * Differences from the kernel, neither visible to the DMA API: the per-CPU magazines and depot
 * collapse into one bounded cache per order (one CPU runs kernel code), with the kernel's bounds (two
 * magazines of IOVA_MAG_SIZE plus a depot); and the tree search is highest-fit from the limit down
 * rather than next-fit from the last allocation, so a gap freed above the last allocation is reused
 * at once. Allocated ranges live in an array sorted by start, highest first.
 */
import { KernelError } from '../bus/errno.js';

/** log2 of the largest cached range size in frames, plus one (kernel: IOVA_RANGE_CACHE_MAX_SIZE). */
export const IOVA_RANGE_CACHE_MAX_SIZE = 6;
/** The kernel's IOVA_MAG_SIZE */
export const IOVA_MAG_SIZE = 127;
/** Magazines kept per order beyond the loaded and previous ones (kernel: MAX_GLOBAL_MAGS). */
export const IOVA_DEPOT_MAGS = 32;
const RCACHE_CAPACITY = IOVA_MAG_SIZE * (2 + IOVA_DEPOT_MAGS);

export interface IovaRange {
  readonly pfnLo: number;
  readonly pfnHi: number;
}

// kernel: order_base_2() [log2.h]
function orderBase2(n: number): number {
  return n <= 1 ? 0 : Math.ceil(Math.log2(n));
}

export class IovaDomain {
  /** Bytes per IOVA frame: the domain's smallest page size. */
  readonly granule: number;
  /** Lowest frame ever handed out (kernel: start_pfn). */
  readonly startPfn: number;
  /** First frame at or above 4 GiB (kernel: dma_32bit_pfn). */
  readonly dma32bitPfn: number;

  // Allocated ranges, sorted by pfnLo descending.
  private lo: number[] = [];
  private hi: number[] = [];
  private readonly rcaches: number[][] = [];
  private live = true;

  // kernel: init_iova_domain() [iova.c]
  constructor(granule: number, startPfn: number) {
    if (!Number.isSafeInteger(granule) || granule <= 0 || (granule & (granule - 1)) !== 0) {
      throw new KernelError('EINVAL', `IOVA domain: granule ${granule} is not a power of two`);
    }
    if (!Number.isSafeInteger(startPfn) || startPfn < 1) throw new KernelError('EINVAL', `IOVA domain: start pfn ${startPfn} must be >= 1`);
    this.granule = granule;
    this.startPfn = startPfn;
    this.dma32bitPfn = Math.floor(0x1_0000_0000 / granule);
    for (let i = 0; i < IOVA_RANGE_CACHE_MAX_SIZE; i++) this.rcaches.push([]);
  }

  // kernel: iova_pfn() [iova.h]
  pfn(iova: number): number {
    return Math.floor(iova / this.granule);
  }

  /** Index of the first range (descending order) with pfnLo <= pfn, or length. */
  private firstAtOrBelow(pfn: number): number {
    let a = 0;
    let b = this.lo.length;
    while (a < b) {
      const m = (a + b) >> 1;
      if (this.lo[m] > pfn) a = m + 1;
      else b = m;
    }
    return a;
  }

  private insert(pfnLo: number, pfnHi: number): void {
    const at = this.firstAtOrBelow(pfnLo);
    this.lo.splice(at, 0, pfnLo);
    this.hi.splice(at, 0, pfnHi);
  }

  /**
   * Allocate `size` frames ending at or below `limitPfn`, as high as possible; aligned to the next
   * power of two of `size` when `sizeAligned`. Returns the first frame, or 0 if nothing fits.
   */
  // kernel: alloc_iova() [iova.c]
  allocIova(size: number, limitPfn: number, sizeAligned: boolean): number {
    this.checkLive();
    if (!Number.isSafeInteger(size) || size <= 0) throw new KernelError('EINVAL', `alloc_iova: bad size ${size}`);
    const align = sizeAligned ? 2 ** orderBase2(size) : 1;
    let high = limitPfn + 1; // exclusive upper bound of the gap being tried
    for (let i = this.firstAtOrBelow(limitPfn); i <= this.lo.length; i++) {
      const gapLow = i < this.lo.length ? this.hi[i] + 1 : this.startPfn;
      const candidate = Math.floor((high - size) / align) * align;
      if (candidate >= gapLow && candidate >= this.startPfn) {
        this.insert(candidate, candidate + size - 1);
        return candidate;
      }
      if (i < this.lo.length) high = Math.min(high, this.lo[i]);
      if (high - size < this.startPfn) return 0;
    }
    return 0;
  }

  /** The allocated range containing `pfn`, or null. */
  // kernel: find_iova() [iova.c]
  findIova(pfn: number): IovaRange | null {
    const i = this.firstAtOrBelow(pfn);
    if (i < this.lo.length && this.hi[i] >= pfn) return { pfnLo: this.lo[i], pfnHi: this.hi[i] };
    return null;
  }

  /** Free the range starting at `pfn` to the tree; EINVAL if no allocated range starts there. */
  // kernel: free_iova() [iova.c]
  freeIova(pfn: number): void {
    this.checkLive();
    const i = this.firstAtOrBelow(pfn);
    if (i >= this.lo.length || this.lo[i] !== pfn) throw new KernelError('EINVAL', `free_iova: no allocated IOVA range starts at pfn 0x${pfn.toString(16)}`);
    this.lo.splice(i, 1);
    this.hi.splice(i, 1);
  }

  /**
   * Keep [pfnLo, pfnHi] from ever being allocated (merging with what is already reserved or
   * allocated there).
   */
  // kernel: reserve_iova() [iova.c]
  reserveIova(pfnLo: number, pfnHi: number): void {
    this.checkLive();
    if (!(pfnLo <= pfnHi)) throw new KernelError('EINVAL', `reserve_iova: empty range [${pfnLo}, ${pfnHi}]`);
    let lo = pfnLo;
    let hi = pfnHi;
    // Absorb every overlapping range.
    for (let i = this.firstAtOrBelow(hi); i < this.lo.length && this.hi[i] >= lo; ) {
      lo = Math.min(lo, this.lo[i]);
      hi = Math.max(hi, this.hi[i]);
      this.lo.splice(i, 1);
      this.hi.splice(i, 1);
    }
    this.insert(lo, hi);
  }

  /**
   * Allocate through the caches (size-aligned, as the DMA API needs). Returns the first frame, or 0
   * if nothing fits even after flushing the caches when `flushRcache`.
   */
  // kernel: alloc_iova_fast() [iova.c]
  allocIovaFast(size: number, limitPfn: number, flushRcache: boolean): number {
    this.checkLive();
    // A cacheable range must come back to the cache of the same order, so round it up.
    if (size < 2 ** (IOVA_RANGE_CACHE_MAX_SIZE - 1)) size = 2 ** orderBase2(size);
    const cached = this.rcacheGet(size, limitPfn);
    if (cached !== 0) return cached;
    let pfn = this.allocIova(size, limitPfn, true);
    if (pfn === 0 && flushRcache) {
      this.freeCachedIovas();
      pfn = this.allocIova(size, limitPfn, true);
    }
    return pfn;
  }

  /** Free a range from allocIovaFast, giving the same `size` it was asked with. */
  // kernel: free_iova_fast() [iova.c]
  freeIovaFast(pfn: number, size: number): void {
    this.checkLive();
    if (this.rcacheInsert(pfn, size)) return;
    this.freeIova(pfn);
  }

  /** A cached range of this size order lying wholly at or below `limitPfn`. */
  // kernel: iova_rcache_get() [iova.c]
  private rcacheGet(size: number, limitPfn: number): number {
    const order = orderBase2(size);
    if (order >= IOVA_RANGE_CACHE_MAX_SIZE) return 0;
    const cache = this.rcaches[order];
    const highest = limitPfn + 1 - size;
    for (let i = cache.length - 1; i >= 0; i--) {
      const pfn = cache[i];
      if (pfn <= highest) {
        cache[i] = cache[cache.length - 1];
        cache.pop();
        return pfn;
      }
    }
    return 0;
  }

  /** False when the size is not cached. */
  // kernel: iova_rcache_insert() [iova.c]
  private rcacheInsert(pfn: number, size: number): boolean {
    const order = orderBase2(size);
    if (order >= IOVA_RANGE_CACHE_MAX_SIZE) return false;
    const cache = this.rcaches[order];
    if (cache.length >= RCACHE_CAPACITY) {
      // The depot is full: the oldest magazine goes back to the tree.
      for (const old of cache.splice(0, IOVA_MAG_SIZE)) this.freeIova(old);
    }
    cache.push(pfn);
    return true;
  }

  /** Hand every cached range back to the tree. + free_global_cached_iovas() */
  // kernel: free_cpu_cached_iovas() [iova.c]
  freeCachedIovas(): void {
    for (const cache of this.rcaches) {
      for (const pfn of cache) this.freeIova(pfn);
      cache.length = 0;
    }
  }

  /** Allocated ranges (cached ones included), lowest first. */
  ranges(): IovaRange[] {
    const out: IovaRange[] = [];
    for (let i = this.lo.length - 1; i >= 0; i--) out.push({ pfnLo: this.lo[i], pfnHi: this.hi[i] });
    return out;
  }

  /** Ranges sitting in the caches. */
  get cachedCount(): number {
    let n = 0;
    for (const c of this.rcaches) n += c.length;
    return n;
  }

  // kernel: put_iova_domain() [iova.c]
  put(): void {
    this.live = false;
    this.lo = [];
    this.hi = [];
    for (const c of this.rcaches) c.length = 0;
  }

  private checkLive(): void {
    if (!this.live) throw new KernelError('EINVAL', 'IOVA domain used after put_iova_domain');
  }
}
