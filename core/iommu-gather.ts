/**
 * The IOTLB gather: what an unmap has removed and must still be invalidated, collected so that one
 * invalidation covers a run of pages (kernel: struct iommu_iotlb_gather in include/linux/iommu.h).
 *
 * io-pgtable reports each unmapped leaf through the driver's `tlbAddPage` flush op; the driver calls
 * `iommuIotlbGatherAddPage` which widens the range, or first syncs what is gathered when the new page
 * has a different size or does not touch the range. The iommu core then syncs once at the end of the
 * unmap and frees the freelist after that sync.
 */

/** "Nothing gathered yet" value of `start` (the kernel's ULONG_MAX). */
export const IOMMU_GATHER_START_EMPTY = Number.MAX_SAFE_INTEGER;

/** A block of memory that may only be freed after the invalidation covering it has completed. */
export interface IommuFreedPages {
  pa: number;
  size: number;
}

export interface IommuIotlbGather {
  /** First IOVA gathered (inclusive); IOMMU_GATHER_START_EMPTY when empty. */
  start: number;
  /** Last IOVA gathered (inclusive); 0 when empty. */
  end: number;
  /** Size of the pages gathered; 0 when empty. All pages of one gather have the same size. */
  pgsize: number;
  /** Pages to free once the invalidation has been synced. */
  freelist: IommuFreedPages[];
  /** True when a flush queue will invalidate everything later (DMA_FQ): leaves need not be gathered. */
  queued: boolean;
}

/** Performs the invalidation for what `gather` holds (the driver's iotlb_sync through the core). */
export type IommuIotlbSync = (gather: IommuIotlbGather) => void;

// kernel: iommu_iotlb_gather_init() [iommu.h]
export function iommuIotlbGatherInit(gather?: IommuIotlbGather): IommuIotlbGather {
  if (!gather) {
    return { start: IOMMU_GATHER_START_EMPTY, end: 0, pgsize: 0, freelist: [], queued: false };
  }
  gather.start = IOMMU_GATHER_START_EMPTY;
  gather.end = 0;
  gather.pgsize = 0;
  // (An empty list is kept: no array per re-initialisation.)
  if (gather.freelist.length !== 0) gather.freelist = [];
  gather.queued = false;
  return gather;
}

// kernel: iommu_iotlb_gather_is_disjoint() [iommu.h]
export function iommuIotlbGatherIsDisjoint(gather: IommuIotlbGather, iova: number, size: number): boolean {
  const end = iova + size - 1;
  return gather.end !== 0 && (end + 1 < gather.start || iova > gather.end + 1);
}

// kernel: iommu_iotlb_gather_add_range() [iommu.h]
export function iommuIotlbGatherAddRange(gather: IommuIotlbGather, iova: number, size: number): void {
  const end = iova + size - 1;
  if (gather.start > iova) gather.start = iova;
  if (gather.end < end) gather.end = end;
}

/**
 * Add one unmapped page. If the page cannot join the gathered range (another page size, or a gap),
 * what is gathered so far is synced first through `sync`, and the gather restarts empty.
 * `sync` must perform the invalidation and release `gather.freelist`; the gather is re-initialised
 * (keeping `queued`) after it returns.
 */
// kernel: iommu_iotlb_gather_add_page() [iommu.h]
export function iommuIotlbGatherAddPage(
  gather: IommuIotlbGather,
  iova: number,
  size: number,
  sync: IommuIotlbSync,
): void {
  if ((gather.pgsize !== 0 && gather.pgsize !== size) || iommuIotlbGatherIsDisjoint(gather, iova, size)) {
    const queued = gather.queued;
    sync(gather);
    iommuIotlbGatherInit(gather);
    gather.queued = queued;
  }
  gather.pgsize = size;
  iommuIotlbGatherAddRange(gather, iova, size);
}

// kernel: iommu_iotlb_gather_queued() [iommu.h]
export function iommuIotlbGatherQueued(gather: IommuIotlbGather | null): boolean {
  return gather !== null && gather.queued;
}
