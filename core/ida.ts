/**
 * An ID allocator handing out the lowest free integer of a range (kernel: lib/idr.c, the IDA).
 * Used per kernel for IOMMU group numbers and the global PASID space, per SMMUv3 for VMIDs, and for
 * the stage 1 ASID space of the SMMUv3s.
 *
 * The kernel finds a free ID through the free marks of its tree (an xarray of bitmaps), in time
 * logarithmic in the IDs in use, not linear: a scan from the bottom of the range made allocating
 * the n-th domain cost n lookups (a thousand domains, half a million). Here the used IDs are a
 * sparse bitmap of 32-bit words in levels: bit b of word w at level l+1 says word 32w+b of level l is
 * full. Finding the lowest free ID at or above `min` looks at one word per level, up to the level
 * that has a clear bit, then back down.
 */
import { KernelError } from '../bus/errno.js';

/** 32^11 = 2^55 > Number.MAX_SAFE_INTEGER: the top level has a single word. */
const LEVELS = 11;
const FULL = -1; // a 32-bit word with every bit set, as `|` and `&` give it back

/** Index of the lowest set bit of a non-zero 32-bit word. */
function lowestBit(x: number): number {
  return 31 - Math.clz32(x & -x);
}

export class Ida {
  /** levels[l]: word index → 32 bits; a missing word is all clear. */
  private readonly levels: Map<number, number>[] = Array.from({ length: LEVELS }, () => new Map<number, number>());
  private count = 0;

  constructor(readonly name: string) {}

  /** Lowest free ID in [min, max]; ENOSPC when the range is full. */
  // kernel: ida_alloc_range() [lib/idr.c]
  allocRange(min: number, max: number): number {
    if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || min < 0) {
      throw new KernelError('EINVAL', `${this.name}: bad ID range [${min}, ${max}]`);
    }
    const id = min <= max ? this.firstClear(0, min) : -1;
    if (id < 0 || id > max) throw new KernelError('ENOSPC', `${this.name}: every ID in [${min}, ${max}] is in use`);
    this.set(id);
    return id;
  }

  // kernel: ida_alloc() [idr.h]
  alloc(): number {
    return this.allocRange(0, Number.MAX_SAFE_INTEGER);
  }

  /** Freeing an ID that is not allocated is EINVAL (the kernel WARNs). */
  // kernel: ida_free() [lib/idr.c]
  free(id: number): void {
    if (!this.has(id)) throw new KernelError('EINVAL', `${this.name}: freeing ID ${id}, which is not allocated`);
    let idx = id;
    for (let l = 0; l < LEVELS; l++) {
      const w = Math.floor(idx / 32);
      const words = this.levels[l];
      const old = words.get(w) ?? 0;
      const now = old & ~(1 << idx % 32);
      if (now === 0) words.delete(w);
      else words.set(w, now);
      // The word was not full: the levels above never counted it as full.
      if (old !== FULL) break;
      idx = w;
    }
    this.count--;
  }

  has(id: number): boolean {
    if (!Number.isSafeInteger(id) || id < 0) return false;
    return ((this.levels[0].get(Math.floor(id / 32)) ?? 0) & (1 << id % 32)) !== 0;
  }

  get inUse(): number {
    return this.count;
  }

  private set(id: number): void {
    let idx = id;
    for (let l = 0; l < LEVELS; l++) {
      const w = Math.floor(idx / 32);
      const words = this.levels[l];
      const now = (words.get(w) ?? 0) | (1 << idx % 32);
      words.set(w, now);
      if (now !== FULL) break;
      idx = w;
    }
    this.count++;
  }

  /** Lowest position at or above `from` whose bit at level `l` is clear; -1 past the top. */
  private firstClear(l: number, from: number): number {
    if (l === LEVELS) return -1;
    const w = Math.floor(from / 32);
    const words = this.levels[l];
    // The clear bits of word w at or above `from`.
    const clear = ~(words.get(w) ?? 0) & (FULL << from % 32);
    if (clear !== 0) return w * 32 + lowestBit(clear);
    // Word w has nothing free from `from` up: the next word of this level that is not full.
    const next = this.firstClear(l + 1, w + 1);
    if (next < 0) return -1;
    return next * 32 + lowestBit(~(words.get(next) ?? 0));
  }
}
