/**
 * Arm LPAE page tables for IOMMUs (kernel: drivers/iommu/io-pgtable-arm.c), the VMSAv8-64 long
 * descriptor format as the Linux kernel writes it.
 *
 * Supported: ARM_64_LPAE_S1 and ARM_64_LPAE_S2 with 4K, 16K and 64K granules, ias 32–48 (up to 52
 * with 64K), oas 32–48 (52 with 64K; PA[51:48] then live in descriptor bits [15:12]); the AArch32
 * LPAE formats ARM_32_LPAE_S1/S2 (4K only, ias ≤ 32 / ≤ 40, oas ≤ 40); stage 2 concatenated top-level
 * tables exactly where the kernel uses them (where the architecture makes them mandatory); quirks
 * ARM_NS, ARM_OUTER_WBWA, ARM_HD, ARM_S2FWB and NO_WARN.
 *
 * Behaviour follows the kernel of the 6.x series:
 * - no contiguous hint, no block splitting: unmapping part of a larger block unmaps nothing;
 * - tables are freed when an unmap covers a whole table entry (its range is flushed with
 *   tlbFlushWalk first), and when a block is mapped over a table entry whose subtree maps nothing.
 *   Emptying a table page by page does not free it;
 * - map over a live leaf is EEXIST. Differences from the kernel: a block mapped over a table that still
 *   maps something is EEXIST too (the kernel would silently unmap it); out-of-range iova/paddr is
 *   EINVAL (the kernel says ERANGE); a prot granting neither read nor write is EINVAL (the kernel
 *   returns success having mapped nothing, which would leave the core's map loop without progress);
 *   a whole request is mapped or unmapped in one call, across tables (the kernel stops at a table
 *   boundary and lets the core loop). ARM_TTBR1 is refused: upper-half IOVAs do not fit a JS number.
 *
 * Descriptors are handled as two u32 halves (lo = bits 31:0, hi = bits 63:32): no BigInt per PTE.
 * An entry whose lo word is zero is empty: this code writes every descriptor with a type in the lo
 * word and clears both halves, so the hi word need not be read to tell (the kernel tests all 64 bits).
 *
 * One file over ~700 lines on purpose: it mirrors one kernel file, io-pgtable-arm.c (both formats
 * and all granules share the walk, map and unmap code).
 */
import { KernelError } from '../bus/errno.js';
import type { RamAccess } from '../hw/cpu-port.js';
import { iommuIotlbGatherQueued, type IommuIotlbGather } from './iommu-gather.js';
import {
  hex,
  IO_PGTABLE_QUIRK_ARM_HD,
  IO_PGTABLE_QUIRK_ARM_NS,
  IO_PGTABLE_QUIRK_ARM_OUTER_WBWA,
  IO_PGTABLE_QUIRK_ARM_S2FWB,
  IO_PGTABLE_QUIRK_ARM_TTBR1,
  IO_PGTABLE_QUIRK_NO_WARN,
  IOMMU_CACHE,
  IOMMU_MMIO,
  IOMMU_NOEXEC,
  IOMMU_PRIV,
  IOMMU_READ,
  IOMMU_WRITE,
  IoPgtableMapError,
  type ArmLpaeS1Cfg,
  type ArmLpaeS2Cfg,
  type IommuFlushOps,
  type IoPgtable,
  type IoPgtableAllocator,
  type IoPgtableCfg,
  type IoPgtableEffectiveCfg,
  type IoPgtableFmt,
} from './io-pgtable.js';

const SZ_4K = 0x1000;
const SZ_16K = 0x4000;
const SZ_64K = 0x10000;
const SZ_2M = 0x20_0000;
const SZ_32M = 0x200_0000;
const SZ_512M = 0x2000_0000;
const SZ_1G = 0x4000_0000;
const SZ_4T = 2 ** 42;
const TWO_32 = 0x1_0000_0000;
const TWO_48 = 2 ** 48;
/** Multiplying by these is dividing by 2^32 / 2^48 exactly (powers of two), without a float division. */
const INV_TWO_32 = 2 ** -32;
const INV_TWO_48 = 2 ** -48;
/** Byte offset bits of a descriptor address within its 4 KiB frame (descriptors never straddle frames). */
const PTEP_IN_FRAME = 0xfff;

/** The CPU page size of the kernel: the granule preferred when the IOMMU offers several. */
const PAGE_SIZE = SZ_4K;

const ARM_LPAE_MAX_LEVELS = 4;
const ARM_LPAE_S2_MAX_CONCAT_PAGES = 16;

// Descriptor bits, lo word (bits 31:0).
const PTE_TYPE_MASK = 0x3;
const PTE_TYPE_BLOCK = 1;
const PTE_TYPE_TABLE = 3;
const PTE_TYPE_PAGE = 3;
const PTE_ATTRINDX_SHIFT = 2;
const PTE_NS = 1 << 5;
const PTE_AP_UNPRIV = 1 << 6; // stage 1 AP[1]
const PTE_AP_RDONLY = 1 << 7; // stage 1 AP[2]
const PTE_HAP_READ = 1 << 6; // stage 2 S2AP[0]
const PTE_HAP_WRITE = 1 << 7; // stage 2 S2AP[1]
const PTE_SH_OS = 2 << 8;
const PTE_SH_IS = 3 << 8;
const PTE_AF = 1 << 10;
const PTE_NG = 1 << 11;
const PTE_MEMATTR_DEV = 0x1 << 2;
const PTE_MEMATTR_NC = 0x5 << 2;
const PTE_MEMATTR_FWB_WB = 0x6 << 2;
const PTE_MEMATTR_OIWB = 0xf << 2;
// Descriptor bits, hi word (bits 63:32), as bit numbers minus 32.
const PTE_HI_DBM = 1 << (51 - 32);
const PTE_HI_XN = 3 << (53 - 32); // PXN|UXN at stage 1, XN (and XN[0]) at stage 2
const PTE_HI_NSTABLE = 1 << (63 - 32);

// MAIR attribute indices the stage 1 leaves use, and the MAIR built from them.
export const MAIR_ATTR_IDX_NC = 0;
export const MAIR_ATTR_IDX_CACHE = 1;
export const MAIR_ATTR_IDX_DEV = 2;
export const MAIR_ATTR_IDX_INC_OCACHE = 3;
const MAIR_ATTR_NC = 0x44n;
const MAIR_ATTR_WBRWA = 0xffn;
const MAIR_ATTR_DEVICE = 0x04n;
const MAIR_ATTR_INC_OWBRWA = 0xf4n;

// TCR / VTCR field encodings.
export const TCR_TG0_4K = 0;
export const TCR_TG0_64K = 1;
export const TCR_TG0_16K = 2;
export const TCR_SH_NS = 0;
export const TCR_SH_OS = 2;
export const TCR_SH_IS = 3;
export const TCR_RGN_NC = 0;
export const TCR_RGN_WBWA = 1;
export const TCR_RGN_WT = 2;
export const TCR_RGN_WB = 3;

/** TCR.IPS / VTCR.PS encoding of an address size, or -1 if the size has none. */
export function arm64AddressSizeEncoding(bits: number): number {
  switch (bits) {
    case 32: return 0;
    case 36: return 1;
    case 40: return 2;
    case 42: return 3;
    case 44: return 4;
    case 48: return 5;
    case 52: return 6;
    default: return -1;
  }
}

const S1_QUIRKS =
  IO_PGTABLE_QUIRK_ARM_NS | IO_PGTABLE_QUIRK_ARM_OUTER_WBWA | IO_PGTABLE_QUIRK_ARM_HD | IO_PGTABLE_QUIRK_NO_WARN;
const S2_QUIRKS = IO_PGTABLE_QUIRK_ARM_S2FWB | IO_PGTABLE_QUIRK_NO_WARN;

/** True if the power-of-two `size` is one of the sizes in `bitmap` (a sum of powers of two up to 2^52). */
function bitmapHas(bitmap: number, size: number): boolean {
  return Math.floor(bitmap / size) % 2 === 1;
}

/** `a % m === 0` for a power of two `m`: low-word bit test where it suffices (no float modulo on the hot path). */
function isAligned(a: number, m: number): boolean {
  return m <= 0x4000_0000 ? ((a >>> 0) & (m - 1)) === 0 : a % m === 0;
}

function log2(size: number): number {
  return Math.round(Math.log2(size));
}

function cfgError(fmt: string, what: string): KernelError {
  return new KernelError('EINVAL', `io-pgtable ${fmt}: ${what}`);
}

/**
 * The kernel picks one granule out of the sizes the IOMMU offers: the CPU page size if offered,
 * else the largest smaller one, else the smallest larger one; then keeps only that granule's block
 * sizes and clamps ias/oas to what the granule can address.
 */
// kernel: arm_lpae_restrict_pgsizes() [io-pgtable-arm.c]
function restrictPgsizes(pgsizeBitmap: number, ias: number, oas: number): { bitmap: number; ias: number; oas: number } {
  let granule = 0;
  if (bitmapHas(pgsizeBitmap, PAGE_SIZE)) {
    granule = PAGE_SIZE;
  } else {
    const below = pgsizeBitmap % PAGE_SIZE;
    if (below !== 0) granule = 2 ** Math.floor(Math.log2(below));
    else if (pgsizeBitmap !== 0) {
      const above = pgsizeBitmap - below;
      for (let s = PAGE_SIZE; s <= above; s *= 2) {
        if (bitmapHas(above, s)) {
          granule = s;
          break;
        }
      }
    }
  }
  let maxAddrBits = 48;
  let pageSizes: number[];
  switch (granule) {
    case SZ_4K:
      pageSizes = [SZ_4K, SZ_2M, SZ_1G];
      break;
    case SZ_16K:
      pageSizes = [SZ_16K, SZ_32M];
      break;
    case SZ_64K:
      maxAddrBits = 52;
      pageSizes = oas > 48 ? [SZ_64K, SZ_512M, SZ_4T] : [SZ_64K, SZ_512M];
      break;
    default:
      pageSizes = [];
  }
  let bitmap = 0;
  for (const s of pageSizes) if (bitmapHas(pgsizeBitmap, s)) bitmap += s;
  return { bitmap, ias: Math.min(ias, maxAddrBits), oas: Math.min(oas, maxAddrBits) };
}

/** One Arm LPAE page table in machine memory. */
class ArmLpaeIoPgtable implements IoPgtable {
  readonly cfg: IoPgtableEffectiveCfg;
  readonly armLpaeS1Cfg: ArmLpaeS1Cfg | null;
  readonly armLpaeS2Cfg: ArmLpaeS2Cfg | null;
  readonly granule: number;
  readonly startLevel: number;
  readonly pgdSize: number;

  private readonly ram: RamAccess;
  private readonly allocator: IoPgtableAllocator;
  private readonly tlb: IommuFlushOps;
  private readonly stage2: boolean;
  private readonly ptesPerTable: number;
  /** Address bits of the lo word that belong to a table or output address. */
  private readonly addrLoMask: number;
  private readonly pa52: boolean;
  /** Per level: right shift of the input address to reach the index, index mask, block size. */
  private readonly lvlShift = [0, 0, 0, 0];
  private readonly lvlMask = [0, 0, 0, 0];
  private readonly blockSize = [0, 0, 0, 0];
  /** Per level: is its block size in the effective pgsize_bitmap? */
  private readonly sizeSupported = [false, false, false, false];
  /** Per level: 1 / the input span of one table of that level (0 for the top level: the pgd spans all). */
  private readonly tableSpanInv = [0, 0, 0, 0];
  /**
   * The last table walked to: the table of level `walkLevel` that covers input span number `walkSpan`
   * (input address / span of one such table). A map or unmap at that level in that span starts there
   * instead of walking down from the pgd again. Sound because a table leaves the tree only through
   * freeSubtree, which forgets the walk (walkLevel = -1), and a new table never changes a path that
   * was walked. The kernel walks from the pgd every time; the descriptors written are the same.
   */
  private walkLevel = -1;
  private walkSpan = 0;
  private walkTable = 0;
  private readonly iasLimit: number;
  private readonly oasLimit: number;
  private readonly pgdAllocSize: number;
  private readonly pgd: number;
  private freed = false;
  /** Leaf attribute bits of the prot being mapped (set by protToPte; avoids an object per map). */
  private protLo = 0;
  private protHi = 0;
  /** The prot protLo/protHi were computed for (-1: none yet). */
  private protFor = -1;

  constructor(
    readonly fmt: IoPgtableFmt,
    cfgIn: IoPgtableCfg,
  ) {
    const stage2 = fmt === 'ARM_64_LPAE_S2' || fmt === 'ARM_32_LPAE_S2';
    const quirks = cfgIn.quirks ?? 0;
    const coherentWalk = cfgIn.coherentWalk ?? true;
    for (const [name, v] of [['ias', cfgIn.ias], ['oas', cfgIn.oas], ['pgsizeBitmap', cfgIn.pgsizeBitmap]] as const) {
      if (!Number.isSafeInteger(v) || v <= 0) throw cfgError(fmt, `${name} ${v} is not a positive integer`);
    }
    if (quirks & IO_PGTABLE_QUIRK_ARM_TTBR1) {
      throw cfgError(fmt, 'quirk ARM_TTBR1 is not supported (upper-half IOVAs are not representable)');
    }
    const allowed = stage2 ? S2_QUIRKS : S1_QUIRKS;
    if (quirks & ~allowed) throw cfgError(fmt, `unsupported quirks ${hex(quirks & ~allowed)}`);

    let bitmapIn = cfgIn.pgsizeBitmap;
    if (fmt === 'ARM_32_LPAE_S1' || fmt === 'ARM_32_LPAE_S2') {
      // (kernel: arm_32_lpae_alloc_pgtable_s1/_s2())
      const iasMax = fmt === 'ARM_32_LPAE_S1' ? 32 : 40;
      if (cfgIn.ias > iasMax) throw cfgError(fmt, `ias ${cfgIn.ias} exceeds ${iasMax}`);
      if (cfgIn.oas > 40) throw cfgError(fmt, `oas ${cfgIn.oas} exceeds 40`);
      bitmapIn = (bitmapHas(bitmapIn, SZ_4K) ? SZ_4K : 0) + (bitmapHas(bitmapIn, SZ_2M) ? SZ_2M : 0) +
        (bitmapHas(bitmapIn, SZ_1G) ? SZ_1G : 0);
    }

    // kernel: arm_lpae_alloc_pgtable() [io-pgtable-arm.c]
    const r = restrictPgsizes(bitmapIn, cfgIn.ias, cfgIn.oas);
    // The bitmap now holds one granule's sizes; the granule is its smallest.
    const granule = [SZ_4K, SZ_16K, SZ_64K].find((g) => bitmapHas(r.bitmap, g));
    if (granule === undefined) {
      throw cfgError(fmt, `pgsizeBitmap ${hex(cfgIn.pgsizeBitmap)} offers no 4K, 16K or 64K granule`);
    }
    const ias = r.ias;
    const oas = r.oas;
    if (ias < 32) throw cfgError(fmt, `ias ${ias} is below 32`);
    if (arm64AddressSizeEncoding(oas) < 0) throw cfgError(fmt, `oas ${oas} has no IPS/PS encoding`);
    if ((quirks & IO_PGTABLE_QUIRK_ARM_OUTER_WBWA) && coherentWalk) {
      throw cfgError(fmt, 'quirk ARM_OUTER_WBWA only applies to a non-coherent walker');
    }

    const pgShift = log2(granule);
    const bpl = pgShift - 3;
    const vaBits = ias - pgShift;
    const levels = Math.ceil(vaBits / bpl);
    let startLevel = ARM_LPAE_MAX_LEVELS - levels;
    let pgdBits = vaBits - bpl * (levels - 1);

    if (stage2 && this.concatMandatory(granule, startLevel, ias, oas)) {
      if (2 ** pgdBits > ARM_LPAE_S2_MAX_CONCAT_PAGES) {
        throw cfgError(fmt, `ias ${ias} needs more than ${ARM_LPAE_S2_MAX_CONCAT_PAGES} concatenated tables`);
      }
      pgdBits += bpl;
      startLevel++;
    }

    this.stage2 = stage2;
    this.granule = granule;
    this.ptesPerTable = granule / 8;
    this.startLevel = startLevel;
    this.pgdSize = 8 * 2 ** pgdBits;
    this.addrLoMask = (0x1_0000_0000 - granule) | 0;
    this.pa52 = granule === SZ_64K;
    for (let l = 0; l < ARM_LPAE_MAX_LEVELS; l++) {
      this.lvlShift[l] = (ARM_LPAE_MAX_LEVELS - l) * bpl + 3;
      this.blockSize[l] = 2 ** this.lvlShift[l];
      this.lvlMask[l] = (1 << (l === startLevel ? pgdBits : bpl)) - 1;
      this.sizeSupported[l] = l >= startLevel && bitmapHas(r.bitmap, this.blockSize[l]);
      this.tableSpanInv[l] = l > startLevel ? 2 ** -((ARM_LPAE_MAX_LEVELS - l + 1) * bpl + 3) : 0;
    }
    this.iasLimit = 2 ** ias;
    this.oasLimit = 2 ** oas;
    this.cfg = { quirks, pgsizeBitmap: r.bitmap, ias, oas, coherentWalk };
    this.ram = cfgIn.ram;
    this.allocator = cfgIn.allocator;
    this.tlb = cfgIn.tlb;

    // Walk attributes for TCR/VTCR.
    let sh: number;
    let irgn: number;
    let orgn: number;
    if (coherentWalk) {
      sh = TCR_SH_IS;
      irgn = TCR_RGN_WBWA;
      orgn = TCR_RGN_WBWA;
    } else {
      sh = TCR_SH_OS;
      irgn = TCR_RGN_NC;
      orgn = !stage2 && quirks & IO_PGTABLE_QUIRK_ARM_OUTER_WBWA ? TCR_RGN_WBWA : TCR_RGN_NC;
    }
    const tg = granule === SZ_4K ? TCR_TG0_4K : granule === SZ_16K ? TCR_TG0_16K : TCR_TG0_64K;
    const ps = arm64AddressSizeEncoding(oas);

    // The hardware wants even a tiny top-level table 64-byte aligned.
    this.pgdAllocSize = Math.max(this.pgdSize, 64);
    this.pgd = this.allocTable(this.pgdAllocSize);

    if (stage2) {
      // SL0 counts levels down from a granule-dependent origin: 4K numbers one level further.
      // kernel: arm_64_lpae_alloc_pgtable_s2() [io-pgtable-arm.c]
      const sl = granule === SZ_4K ? startLevel + 1 : startLevel;
      this.armLpaeS1Cfg = null;
      this.armLpaeS2Cfg = { vttbr: this.pgd, vtcr: { ps, tg, sh, orgn, irgn, sl: ~sl & 3, tsz: 64 - ias } };
    } else {
      // kernel: arm_64_lpae_alloc_pgtable_s1() [io-pgtable-arm.c]
      const mair =
        (MAIR_ATTR_NC << BigInt(8 * MAIR_ATTR_IDX_NC)) |
        (MAIR_ATTR_WBRWA << BigInt(8 * MAIR_ATTR_IDX_CACHE)) |
        (MAIR_ATTR_DEVICE << BigInt(8 * MAIR_ATTR_IDX_DEV)) |
        (MAIR_ATTR_INC_OWBRWA << BigInt(8 * MAIR_ATTR_IDX_INC_OCACHE));
      this.armLpaeS2Cfg = null;
      this.armLpaeS1Cfg = { ttbr: this.pgd, tcr: { ips: ps, tg, sh, orgn, irgn, tsz: 64 - ias, epd1: true }, mair };
    }
  }

  /**
   * Where the architecture forbids the natural starting level for a stage 2 walk, the walk must start
   * one level lower with concatenated tables instead.
   */
  // kernel: arm_lpae_concat_mandatory() [io-pgtable-arm.c]
  private concatMandatory(granule: number, startLevel: number, ias: number, oas: number): boolean {
    if (granule === SZ_16K && startLevel === 0) return oas === 48 || ias === 48;
    if (granule === SZ_4K && startLevel === 0) return oas === 40 || oas === 42;
    return granule === SZ_16K && startLevel === 1 && oas === 40;
  }

  // ---- descriptors ----

  private tableAddr(lo: number, hi: number): number {
    let pa = (hi & 0xffff) * TWO_32 + ((lo & this.addrLoMask) >>> 0);
    if (this.pa52) pa += ((lo >>> 12) & 0xf) * TWO_48;
    return pa;
  }

  /** lo word address bits of `pa` (with PA[51:48] packed into [15:12] for 64K). */
  private addrLo(pa: number): number {
    let lo = (pa >>> 0) & this.addrLoMask;
    if (this.pa52) lo |= (Math.floor(pa * INV_TWO_48) & 0xf) << 12;
    return lo;
  }

  private addrHi(pa: number): number {
    return Math.floor(pa * INV_TWO_32) & 0xffff;
  }

  private isLeaf(lo: number, lvl: number): boolean {
    return (lo & PTE_TYPE_MASK) === (lvl === ARM_LPAE_MAX_LEVELS - 1 ? PTE_TYPE_PAGE : PTE_TYPE_BLOCK);
  }

  private isTable(lo: number, lvl: number): boolean {
    return lvl < ARM_LPAE_MAX_LEVELS - 1 && (lo & PTE_TYPE_MASK) === PTE_TYPE_TABLE;
  }

  /** Index of the input address (split as lo/hi u32) at level `lvl`. */
  private index(iovaLo: number, iovaHi: number, lvl: number): number {
    const s = this.lvlShift[lvl];
    const v = s >= 32 ? iovaHi >>> (s - 32) : (iovaLo >>> s) | (iovaHi << (32 - s));
    return v & this.lvlMask[lvl];
  }

  /** Write a descriptor: the half without the valid bit first, so a walker never sees half of one. */
  private setPte(ptep: number, lo: number, hi: number): void {
    this.ram.write32(ptep + 4, hi);
    this.ram.write32(ptep, lo);
  }

  private clearPte(ptep: number): void {
    this.ram.write32(ptep, 0);
    this.ram.write32(ptep + 4, 0);
  }

  // kernel: arm_lpae_prot_to_pte() [io-pgtable-arm.c]
  private protToPte(prot: number): void {
    const quirks = this.cfg.quirks;
    let lo: number;
    let hi = 0;
    if (!this.stage2) {
      lo = PTE_NG;
      if (!(prot & IOMMU_WRITE) && prot & IOMMU_READ) lo |= PTE_AP_RDONLY;
      else if (quirks & IO_PGTABLE_QUIRK_ARM_HD) hi |= PTE_HI_DBM;
      if (!(prot & IOMMU_PRIV)) lo |= PTE_AP_UNPRIV;
      if (prot & IOMMU_MMIO) lo |= MAIR_ATTR_IDX_DEV << PTE_ATTRINDX_SHIFT;
      else if (prot & IOMMU_CACHE) lo |= MAIR_ATTR_IDX_CACHE << PTE_ATTRINDX_SHIFT;
    } else {
      lo = 0;
      if (prot & IOMMU_READ) lo |= PTE_HAP_READ;
      if (prot & IOMMU_WRITE) lo |= PTE_HAP_WRITE;
      if (prot & IOMMU_MMIO) lo |= PTE_MEMATTR_DEV;
      else if (prot & IOMMU_CACHE) lo |= quirks & IO_PGTABLE_QUIRK_ARM_S2FWB ? PTE_MEMATTR_FWB_WB : PTE_MEMATTR_OIWB;
      else lo |= PTE_MEMATTR_NC;
    }
    lo |= prot & IOMMU_CACHE ? PTE_SH_IS : PTE_SH_OS;
    if (prot & IOMMU_NOEXEC) hi |= PTE_HI_XN;
    if (quirks & IO_PGTABLE_QUIRK_ARM_NS) lo |= PTE_NS;
    lo |= PTE_AF;
    this.protLo = lo;
    this.protHi = hi;
  }

  // ---- tables ----

  private allocTable(size: number): number {
    const pa = this.allocator.allocTable(size, size);
    if (!Number.isSafeInteger(pa) || pa < 0 || pa % size !== 0) {
      throw new KernelError('EINVAL', `io-pgtable ${this.fmt}: allocator returned ${pa} for a ${hex(size)}-byte table`);
    }
    if (pa + size > this.oasLimit) {
      this.allocator.freeTable(pa, size);
      throw new KernelError('ENOMEM', `io-pgtable ${this.fmt}: table at ${hex(pa)} is beyond the ${this.cfg.oas}-bit output size`);
    }
    return pa;
  }

  /** Free a table and every table below it (kernel: __arm_lpae_free_pgtable()). */
  private freeSubtree(lvl: number, table: number): void {
    this.walkLevel = -1;
    const size = lvl === this.startLevel ? this.pgdAllocSize : this.granule;
    if (lvl < ARM_LPAE_MAX_LEVELS - 1) {
      const entries = (lvl === this.startLevel ? this.pgdSize : this.granule) / 8;
      for (let i = 0; i < entries; i++) {
        const lo = this.ram.read32(table + i * 8);
        if (this.isTable(lo, lvl)) this.freeSubtree(lvl + 1, this.tableAddr(lo, this.ram.read32(table + i * 8 + 4)));
      }
    }
    this.allocator.freeTable(table, size);
  }

  /** True if any leaf is reachable from the table at `lvl`. */
  private subtreeMapsAnything(lvl: number, table: number): boolean {
    for (let i = 0; i < this.ptesPerTable; i++) {
      const lo = this.ram.read32(table + i * 8);
      if (this.isLeaf(lo, lvl)) return true;
      if (this.isTable(lo, lvl) && this.subtreeMapsAnything(lvl + 1, this.tableAddr(lo, this.ram.read32(table + i * 8 + 4)))) {
        return true;
      }
    }
    return false;
  }

  /** Level whose entries map `pgsize` bytes, or -1 if `pgsize` is not in the effective pgsize_bitmap. */
  private levelForSize(pgsize: number): number {
    for (let l = this.startLevel; l < ARM_LPAE_MAX_LEVELS; l++) {
      if (this.blockSize[l] === pgsize) return this.sizeSupported[l] ? l : -1;
    }
    return -1;
  }

  // ---- argument checks ----

  private checkLive(op: string): void {
    if (this.freed) this.freedError(op);
  }

  private freedError(op: string): never {
    throw new KernelError('EINVAL', `io-pgtable ${this.fmt}: ${op} on a freed page table`);
  }

  /** Validate a map/unmap range; returns the level of `pgsize`. */
  private checkRange(op: string, iova: number, pgsize: number, pgcount: number): number {
    // The granule is always a supported size, at the last level: the usual case needs no search.
    const lvl = pgsize === this.granule ? ARM_LPAE_MAX_LEVELS - 1 : this.levelForSize(pgsize);
    const ok =
      lvl >= 0 &&
      Number.isSafeInteger(pgcount) && pgcount >= 1 &&
      Number.isSafeInteger(iova) && iova >= 0 && isAligned(iova, pgsize) &&
      iova + pgsize * pgcount <= this.iasLimit;
    if (!ok) this.rangeError(op, lvl, iova, pgsize, pgcount);
    return lvl;
  }

  /** Throw the error that explains why map refused its output range or prot. */
  private mapArgError(paddr: number, pgsize: number, size: number, prot: number): never {
    if (!Number.isSafeInteger(paddr) || paddr < 0 || !isAligned(paddr, pgsize)) {
      throw new KernelError('EINVAL', `io-pgtable ${this.fmt} map: paddr ${paddr} is not a ${hex(pgsize)}-aligned address`);
    }
    if (paddr + size > this.oasLimit) {
      throw new KernelError('EINVAL', `io-pgtable ${this.fmt} map: paddr range ${hex(paddr)}+${hex(size)} exceeds the ${this.cfg.oas}-bit output size`);
    }
    throw new KernelError('EINVAL', `io-pgtable ${this.fmt} map: prot ${hex(prot)} grants neither read nor write`);
  }

  /** Throw the error that explains why checkRange refused the range (kept out of the hot path). */
  private rangeError(op: string, lvl: number, iova: number, pgsize: number, pgcount: number): never {
    if (lvl < 0) {
      throw new KernelError('EINVAL', `io-pgtable ${this.fmt} ${op}: pgsize ${pgsize} is not in pgsize_bitmap ${hex(this.cfg.pgsizeBitmap)}`);
    }
    if (!Number.isSafeInteger(pgcount) || pgcount < 1) {
      throw new KernelError('EINVAL', `io-pgtable ${this.fmt} ${op}: pgcount ${pgcount} is not a positive integer`);
    }
    if (!Number.isSafeInteger(iova) || iova < 0 || !isAligned(iova, pgsize)) {
      throw new KernelError('EINVAL', `io-pgtable ${this.fmt} ${op}: iova ${iova} is not a ${hex(pgsize)}-aligned address`);
    }
    throw new KernelError('EINVAL', `io-pgtable ${this.fmt} ${op}: iova range ${hex(iova)}+${hex(pgsize * pgcount)} exceeds the ${this.cfg.ias}-bit input size`);
  }

  // ---- ops ----

  /**
   * Walk to the table of level `target` holding the entry for the input address (split as lo/hi u32),
   * and leave its address in walkTable: straight there when the last walk reached the same table.
   * `create` (map): install missing tables, EEXIST at a block in the way. Otherwise (unmap): false at a
   * hole or a block.
   */
  private walkTo(vaLo: number, vaHi: number, target: number, create: boolean, mapped: number): boolean {
    const va = vaHi * TWO_32 + vaLo;
    const span = Math.floor(va * this.tableSpanInv[target]);
    if (target === this.walkLevel && span === this.walkSpan) return true;
    let table = this.pgd;
    for (let l = this.startLevel; l < target; l++) {
      const ptep = table + this.index(vaLo, vaHi, l) * 8;
      const w = this.ram.words32(ptep);
      const o = (ptep & PTEP_IN_FRAME) >>> 2;
      const lo = w[o];
      if (this.isTable(lo, l)) {
        table = this.tableAddr(lo, w[o + 1]);
      } else if (!create) {
        return false;
      } else if (lo === 0) {
        table = this.installTable(ptep, mapped);
      } else {
        throw new IoPgtableMapError('EEXIST', `io-pgtable ${this.fmt} map: iova ${hex(va)} lies in an existing ${hex(this.blockSize[l])} mapping`, mapped);
      }
    }
    this.walkLevel = target;
    this.walkSpan = span;
    this.walkTable = table;
    return true;
  }

  // kernel: arm_lpae_map_pages() [io-pgtable-arm.c]
  mapPages(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): number {
    this.checkLive('map');
    const target = this.checkRange('map', iova, pgsize, pgcount);
    const size = pgsize * pgcount;
    if (!(Number.isSafeInteger(paddr) && paddr >= 0 && isAligned(paddr, pgsize) && paddr + size <= this.oasLimit && prot & (IOMMU_READ | IOMMU_WRITE))) {
      this.mapArgError(paddr, pgsize, size, prot);
    }
    // The leaf bits depend on prot alone (the quirks are fixed): computed again only when it changes.
    if (prot !== this.protFor) {
      this.protToPte(prot);
      this.protFor = prot;
    }
    const leafLo = this.protLo | (target === ARM_LPAE_MAX_LEVELS - 1 ? PTE_TYPE_PAGE : PTE_TYPE_BLOCK);
    let mapped = 0;
    while (mapped < size) {
      const va = iova + mapped;
      const vaLo = va >>> 0;
      const vaHi = Math.floor(va * INV_TWO_32);
      this.walkTo(vaLo, vaHi, target, true, mapped);
      const table = this.walkTable;
      const idx = this.index(vaLo, vaHi, target);
      const n = Math.min((size - mapped) / pgsize, this.ptesPerTable - (idx & (this.ptesPerTable - 1)));
      this.initPtes(table + idx * 8, n, va, paddr + mapped, target, leafLo, mapped);
      mapped += n * pgsize;
    }
    return mapped;
  }

  private installTable(ptep: number, mapped: number): number {
    let table: number;
    try {
      table = this.allocTable(this.granule);
    } catch (e) {
      if (e instanceof KernelError && e.errno === 'ENOMEM') throw new IoPgtableMapError('ENOMEM', e.message, mapped);
      throw e;
    }
    const nsTable = this.cfg.quirks & IO_PGTABLE_QUIRK_ARM_NS ? PTE_HI_NSTABLE : 0;
    this.setPte(ptep, this.addrLo(table) | PTE_TYPE_TABLE, this.addrHi(table) | nsTable);
    return table;
  }

  /**
   * Write `n` consecutive leaves of level `lvl` from `first` (within one table). Nothing is written
   * unless every entry is free or a table that maps nothing. The frame's words are taken once per
   * frame, not per entry.
   */
  // kernel: arm_lpae_init_pte() [io-pgtable-arm.c]
  private initPtes(first: number, n: number, va: number, pa: number, lvl: number, lo: number, mapped: number): void {
    const ram = this.ram;
    let w0 = ram.words32(first);
    let w = w0;
    for (let i = 0; i < n; i++) {
      const o = ((first + i * 8) & PTEP_IN_FRAME) >>> 2;
      if (o === 0 && i !== 0) w = ram.words32(first + i * 8);
      if (w[o] !== 0) {
        this.replaceStaleTables(first, n, va, lvl, mapped);
        // Tables were freed: take the view again rather than trust one across the allocator.
        w0 = ram.words32(first);
        break;
      }
    }
    const sz = this.blockSize[lvl];
    const hi = this.protHi;
    w = w0;
    for (let i = 0; i < n; i++) {
      const o = ((first + i * 8) & PTEP_IN_FRAME) >>> 2;
      if (o === 0 && i !== 0) w = ram.words32(first + i * 8);
      const opa = pa + i * sz;
      // The half without the valid bit first, so a walker never sees half of a descriptor.
      w[o + 1] = hi | this.addrHi(opa);
      w[o] = lo | this.addrLo(opa);
    }
  }

  /**
   * Some of the `n` entries from `first` are not empty: EEXIST unless each is a table that maps nothing
   * (left behind by page-sized unmaps); those are cleared, their walks flushed and their tables freed.
   */
  private replaceStaleTables(first: number, n: number, va: number, lvl: number, mapped: number): void {
    const ram = this.ram;
    const sz = this.blockSize[lvl];
    for (let i = 0; i < n; i++) {
      const elo = ram.read32(first + i * 8);
      if (elo === 0) continue;
      if (this.isTable(elo, lvl) && !this.subtreeMapsAnything(lvl + 1, this.tableAddr(elo, ram.read32(first + i * 8 + 4)))) continue;
      throw new IoPgtableMapError('EEXIST', `io-pgtable ${this.fmt} map: iova ${hex(va + i * sz)} is already mapped`, mapped);
    }
    for (let i = 0; i < n; i++) {
      const elo = ram.read32(first + i * 8);
      if (!this.isTable(elo, lvl)) continue;
      const sub = this.tableAddr(elo, ram.read32(first + i * 8 + 4));
      this.clearPte(first + i * 8);
      this.tlb.tlbFlushWalk(va + i * sz, sz, this.granule);
      this.freeSubtree(lvl + 1, sub);
    }
  }

  // kernel: arm_lpae_unmap_pages() [io-pgtable-arm.c]
  unmapPages(iova: number, pgsize: number, pgcount: number, gather: IommuIotlbGather | null): number {
    this.checkLive('unmap');
    const target = this.checkRange('unmap', iova, pgsize, pgcount);
    const size = pgsize * pgcount;
    let unmapped = 0;
    while (unmapped < size) {
      const va = iova + unmapped;
      const vaLo = va >>> 0;
      const vaHi = Math.floor(va * INV_TWO_32);
      // A hole, or a larger block that would have to be split: stop here.
      if (!this.walkTo(vaLo, vaHi, target, false, 0)) return unmapped;
      const table = this.walkTable;
      const idx = this.index(vaLo, vaHi, target);
      const n = Math.min((size - unmapped) / pgsize, this.ptesPerTable - (idx & (this.ptesPerTable - 1)));
      const cleared = this.clearPtes(table + idx * 8, n, va, target, gather);
      unmapped += cleared * pgsize;
      if (cleared < n) break;
    }
    return unmapped;
  }

  /**
   * Clear up to `n` consecutive entries of level `lvl` from `first`, stopping at the first empty one;
   * returns how many were cleared. A table entry takes its whole subtree with it.
   */
  // kernel: __arm_lpae_unmap() [io-pgtable-arm.c]
  private clearPtes(first: number, n: number, va: number, lvl: number, gather: IommuIotlbGather | null): number {
    const ram = this.ram;
    const sz = this.blockSize[lvl];
    let w = ram.words32(first);
    let i = 0;
    for (; i < n; i++) {
      const o = ((first + i * 8) & PTEP_IN_FRAME) >>> 2;
      if (o === 0 && i !== 0) w = ram.words32(first + i * 8);
      const lo = w[o];
      if (lo === 0) break;
      const hi = w[o + 1];
      w[o] = 0;
      w[o + 1] = 0;
      if (this.isTable(lo, lvl)) {
        this.freeUnlinkedTable(va + i * sz, lvl, this.tableAddr(lo, hi));
        w = ram.words32(first + i * 8);
      }
    }
    const tlb = this.tlb;
    if (gather && tlb.tlbAddPage && !iommuIotlbGatherQueued(gather)) {
      for (let j = 0; j < i; j++) tlb.tlbAddPage(gather, va + j * sz, sz);
    }
    return i;
  }

  /** A table entry of level `lvl` mapping `va` was cleared: flush walks through it, then free its subtree. */
  private freeUnlinkedTable(va: number, lvl: number, table: number): void {
    // Walks through the table may be cached: flush them before the table is reused.
    this.tlb.tlbFlushWalk(va, this.blockSize[lvl], this.granule);
    this.freeSubtree(lvl + 1, table);
  }

  // kernel: arm_lpae_iova_to_phys() [io-pgtable-arm.c]
  iovaToPhys(iova: number): number {
    this.checkLive('iova_to_phys');
    if (!Number.isSafeInteger(iova) || iova < 0 || iova >= this.iasLimit) return 0;
    const ram = this.ram;
    const vaLo = iova >>> 0;
    const vaHi = Math.floor(iova * INV_TWO_32);
    let table = this.pgd;
    for (let l = this.startLevel; l < ARM_LPAE_MAX_LEVELS; l++) {
      const ptep = table + this.index(vaLo, vaHi, l) * 8;
      const lo = ram.read32(ptep);
      const hi = ram.read32(ptep + 4);
      if (this.isLeaf(lo, l)) return this.tableAddr(lo, hi) + (iova % this.blockSize[l]);
      if (!this.isTable(lo, l)) return 0;
      table = this.tableAddr(lo, hi);
    }
    return 0;
  }

  /** Invalidate everything, then free every table (kernel: free_io_pgtable_ops()). */
  flushAllAndFree(): void {
    if (this.freed) throw new KernelError('EINVAL', `io-pgtable ${this.fmt}: freed twice`);
    this.tlb.tlbFlushAll();
    // (kernel: arm_lpae_free_pgtable())
    this.freeSubtree(this.startLevel, this.pgd);
    this.freed = true;
  }
}

/**
 * Build a page table of format `fmt`. Throws KernelError EINVAL for a configuration the format cannot
 * honour, ENOMEM if the top-level table cannot be allocated.
 */
// kernel: alloc_io_pgtable_ops() [io-pgtable.c]
export function allocIoPgtableOps(fmt: IoPgtableFmt, cfg: IoPgtableCfg): IoPgtable {
  switch (fmt) {
    case 'ARM_32_LPAE_S1':
    case 'ARM_32_LPAE_S2':
    case 'ARM_64_LPAE_S1':
    case 'ARM_64_LPAE_S2':
      return new ArmLpaeIoPgtable(fmt, cfg);
    default:
      throw new KernelError('EINVAL', `io-pgtable: unknown format ${String(fmt)}`);
  }
}

/** Invalidate everything the table may have cached, then give every table back to the allocator. */
// kernel: free_io_pgtable_ops() [io-pgtable.c]
export function freeIoPgtableOps(ops: IoPgtable): void {
  if (!(ops instanceof ArmLpaeIoPgtable)) throw new KernelError('EINVAL', 'io-pgtable: not a page table made by allocIoPgtableOps');
  ops.flushAllAndFree();
}
