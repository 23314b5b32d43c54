/**
 * The io-pgtable interface (kernel: include/linux/io-pgtable.h): what an IOMMU driver hands a page
 * table format (sizes, quirks, TLB callbacks, where tables live) and what it gets back (map, unmap,
 * iova_to_phys, and the register values that point the hardware at the tables).
 *
 * Tables live in machine RAM, reached through the CPU's RamAccess, and are allocated from an
 * allocator the caller provides (the mm page allocator in a booted kernel, a simple one in tests).
 * io-pgtable knows no SMMU: invalidation goes back through the flush ops.
 *
 * The formats themselves are in io-pgtable-arm.ts, which also holds allocIoPgtableOps().
 */
import type { RamAccess } from '../hw/cpu-port.js';
import { KernelError, type Errno } from '../bus/errno.js';
import type { IommuIotlbGather } from './iommu-gather.js';

// Mapping permissions and attributes (kernel: IOMMU_* in include/linux/iommu.h).
export const IOMMU_READ = 1 << 0;
export const IOMMU_WRITE = 1 << 1;
export const IOMMU_CACHE = 1 << 2;
export const IOMMU_NOEXEC = 1 << 3;
export const IOMMU_MMIO = 1 << 4;
export const IOMMU_PRIV = 1 << 5;

export type IoPgtableFmt = 'ARM_32_LPAE_S1' | 'ARM_32_LPAE_S2' | 'ARM_64_LPAE_S1' | 'ARM_64_LPAE_S2';

// Format quirks (kernel: IO_PGTABLE_QUIRK_*). Values are this project's; only the names follow Linux.
/** Set NS in leaves and NSTable in table entries (a secure master using non-secure tables). */
export const IO_PGTABLE_QUIRK_ARM_NS = 1 << 0;
/** Tables for the upper (TTBR1) half of a split address space. Not supported: see io-pgtable-arm.ts. */
export const IO_PGTABLE_QUIRK_ARM_TTBR1 = 1 << 5;
/** Outer write-back write-allocate table walks for a non-coherent walker (system cache). */
export const IO_PGTABLE_QUIRK_ARM_OUTER_WBWA = 1 << 6;
/** Hardware dirty-bit management: writable leaves get DBM. */
export const IO_PGTABLE_QUIRK_ARM_HD = 1 << 7;
/** Stage 2 with FEAT_S2FWB: cacheable leaves use the forced write-back MemAttr encoding. */
export const IO_PGTABLE_QUIRK_ARM_S2FWB = 1 << 8;
/** Errors are expected by the caller (selftests): nothing to do here, accepted for compatibility. */
export const IO_PGTABLE_QUIRK_NO_WARN = 1 << 9;

/**
 * Where page tables come from. `allocTable` returns the physical address of `size` zeroed bytes
 * aligned to `align`, or throws KernelError ENOMEM. `freeTable` gives back exactly what was allocated.
 */
export interface IoPgtableAllocator {
  allocTable(size: number, align: number): number;
  freeTable(pa: number, size: number): void;
}

/**
 * TLB maintenance the format asks the driver for (kernel: struct iommu_flush_ops).
 * - tlbFlushAll: invalidate everything for this table (before it is freed).
 * - tlbFlushWalk: invalidate every cached entry, leaf or walk, in [iova, iova+size) and complete it
 *   before returning: the table it pointed through is about to be freed.
 * - tlbAddPage: queue the invalidation of one unmapped leaf into `gather` (optional).
 */
export interface IommuFlushOps {
  tlbFlushAll(): void;
  tlbFlushWalk(iova: number, size: number, granule: number): void;
  tlbAddPage?(gather: IommuIotlbGather, iova: number, granule: number): void;
}

/** What the driver asks for (kernel: struct io_pgtable_cfg, input half). */
export interface IoPgtableCfg {
  /** IO_PGTABLE_QUIRK_* bits. */
  quirks?: number;
  /** Page and block sizes the IOMMU supports; the format keeps those of one granule. */
  pgsizeBitmap: number;
  /** Input address size in bits. */
  ias: number;
  /** Output address size in bits. */
  oas: number;
  /** True if the table walker snoops CPU caches (sets the walk attributes in TCR/VTCR). Default true. */
  coherentWalk?: boolean;
  tlb: IommuFlushOps;
  ram: RamAccess;
  allocator: IoPgtableAllocator;
}

/** The configuration in effect after the format restricted it (sizes of one granule, clamped ias/oas). */
export interface IoPgtableEffectiveCfg {
  readonly quirks: number;
  readonly pgsizeBitmap: number;
  readonly ias: number;
  readonly oas: number;
  readonly coherentWalk: boolean;
}

/** Stage 1 register values (kernel: io_pgtable_cfg.arm_lpae_s1_cfg). Each driver packs them itself. */
export interface ArmLpaeS1Cfg {
  /** Physical address of the top-level table (TTBR0 / CD.TTB0 address bits). */
  readonly ttbr: number;
  readonly tcr: {
    /** Intermediate/physical address size encoding (TCR.IPS / CD.IPS): 0=32 … 5=48, 6=52 bits. */
    readonly ips: number;
    /** TCR.TG0 encoding: 0 = 4K, 1 = 64K, 2 = 16K. */
    readonly tg: number;
    /** TCR.SH0: 0 non-shareable, 2 outer, 3 inner. */
    readonly sh: number;
    /** TCR.ORGN0 / IRGN0: 0 non-cacheable, 1 write-back write-allocate, 2 write-through, 3 write-back. */
    readonly orgn: number;
    readonly irgn: number;
    /** TCR.T0SZ = 64 - ias. */
    readonly tsz: number;
    /** TTBR1 walks are never used by these tables: drivers set TCR.EPD1. */
    readonly epd1: boolean;
  };
  /** MAIR value for the AttrIndx values the leaves use (see MAIR_ATTR_IDX_*). */
  readonly mair: bigint;
}

/** Stage 2 register values (kernel: io_pgtable_cfg.arm_lpae_s2_cfg). */
export interface ArmLpaeS2Cfg {
  /** Physical address of the (possibly concatenated) top-level table. */
  readonly vttbr: number;
  readonly vtcr: {
    /** VTCR.PS encoding: 0=32 … 5=48, 6=52 bits. */
    readonly ps: number;
    /** VTCR.TG0: 0 = 4K, 1 = 64K, 2 = 16K. */
    readonly tg: number;
    readonly sh: number;
    readonly orgn: number;
    readonly irgn: number;
    /** VTCR.SL0 (encoding depends on the granule). */
    readonly sl: number;
    /** VTCR.T0SZ = 64 - ias. */
    readonly tsz: number;
  };
}

/** The operations on one page table (kernel: struct io_pgtable_ops). */
export interface IoPgtableOps {
  /**
   * Map `pgcount` pages of `pgsize` bytes from `iova` to `paddr` with IOMMU_* `prot`; returns the
   * bytes mapped (always pgsize * pgcount). Throws IoPgtableMapError (EEXIST, ENOMEM) carrying the bytes
   * already mapped by this call, which the caller unmaps, or KernelError EINVAL for bad arguments.
   */
  mapPages(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): number;
  /**
   * Unmap up to `pgcount` pages of `pgsize` from `iova`; returns the bytes unmapped. Stops at the first
   * hole (0 if `iova` itself is unmapped) and at a larger block it would have to split (returns 0 for
   * it: a block is unmapped whole or not at all). Invalidations are queued into `gather` through the
   * flush ops' tlbAddPage unless the gather is `queued`.
   */
  unmapPages(iova: number, pgsize: number, pgcount: number, gather: IommuIotlbGather | null): number;
  /** Physical address `iova` maps to, or 0 if it is not mapped. */
  iovaToPhys(iova: number): number;
}

/** A live page table: its ops, the effective configuration and the register values for its format. */
export interface IoPgtable extends IoPgtableOps {
  readonly fmt: IoPgtableFmt;
  readonly cfg: IoPgtableEffectiveCfg;
  /** Set for the stage 1 formats. */
  readonly armLpaeS1Cfg: ArmLpaeS1Cfg | null;
  /** Set for the stage 2 formats. */
  readonly armLpaeS2Cfg: ArmLpaeS2Cfg | null;
  /** Translation granule in bytes (the smallest page size). */
  readonly granule: number;
  /** Lookup level the walk starts at (0-3) and the size in bytes of that top-level table. */
  readonly startLevel: number;
  readonly pgdSize: number;
}

/** A map that failed part-way: `mapped` bytes from the start of the request were mapped and stay so. */
export class IoPgtableMapError extends KernelError {
  constructor(
    errno: Errno,
    message: string,
    readonly mapped: number,
  ) {
    super(errno, message);
    this.name = 'IoPgtableMapError';
  }
}

/** Hex for messages. */
export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
