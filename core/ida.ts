/**
 * An ID allocator handing out the lowest free integer of a range (kernel: lib/idr.c, the IDA).
 * Used per kernel for IOMMU group numbers and the global PASID space.
 */
import { KernelError } from '../bus/errno.js';

export class Ida {
  private readonly used = new Set<number>();

  constructor(readonly name: string) {}

  /** Lowest free ID in [min, max]; ENOSPC when the range is full. */
  // kernel: ida_alloc_range() [lib/idr.c]
  allocRange(min: number, max: number): number {
    if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || min < 0) {
      throw new KernelError('EINVAL', `${this.name}: bad ID range [${min}, ${max}]`);
    }
    for (let id = min; id <= max; id++) {
      if (!this.used.has(id)) {
        this.used.add(id);
        return id;
      }
    }
    throw new KernelError('ENOSPC', `${this.name}: every ID in [${min}, ${max}] is in use`);
  }

  // kernel: ida_alloc() [idr.h]
  alloc(): number {
    return this.allocRange(0, Number.MAX_SAFE_INTEGER);
  }

  /** Freeing an ID that is not allocated is EINVAL (the kernel WARNs). */
  // kernel: ida_free() [lib/idr.c]
  free(id: number): void {
    if (!this.used.delete(id)) throw new KernelError('EINVAL', `${this.name}: freeing ID ${id}, which is not allocated`);
  }

  has(id: number): boolean {
    return this.used.has(id);
  }

  get inUse(): number {
    return this.used.size;
  }
}
