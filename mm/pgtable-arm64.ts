/**
 * CPU page tables of a user address space in the Armv8-A VMSAv8-64 stage-1 format, stored in machine
 * RAM so an SMMU's own walker can walk them for SVA (shared virtual addressing).
 *
 * Supported: 4 KiB granule, 48-bit VA (TCR_EL1.T0SZ = 16, walk starts at level 0), four levels,
 * table descriptors at levels 0–2, page descriptors at level 3, 48-bit output addresses.
 * Not produced: block descriptors, the contiguous hint, hierarchical table attributes (APTable,
 * UXNTable, PXNTable all 0), DBM/hardware dirty state, 52-bit PA (LPA/LPA2).
 *
 * Page descriptors for user memory: AF=1 (no access-flag faults), SH=inner shareable,
 * AttrIndx=MT_NORMAL (write-back, see MAIR_EL1_VALUE), nG=1 (tagged with the mm's ASID),
 * AP[1]=1 (EL0 accessible), AP[2]=1 unless writable, PXN=1 always, UXN=1 unless executable.
 * A PROT_NONE page keeps its frame in an invalid descriptor marked with a software bit, as Linux's
 * PTE_PROT_NONE does, so mprotect can restore access without losing the data. As on arm64 without
 * permission overlays, write-only and execute-only pages are readable through their descriptor;
 * the VMA's protection (what faults check) stays the authority.
 *
 * Descriptors are handled as two u32 halves ("lo" = bits [31:0], "hi" = bits [63:32]); BigInt only at
 * the edges (MAIR/TCR values).
 */
import { KernelError } from '../bus/errno.js';
import type { RamAccess } from '../hw/cpu-port.js';
import { PAGE_SIZE, type PageAllocator } from './page-alloc.js';
import { PROT_EXEC, PROT_NONE, PROT_WRITE, type Access } from './prot.js';

/** User VA bits: TTBR0 covers [0, 2^48). */
export const VA_BITS = 48;
export const TASK_SIZE = 2 ** VA_BITS;
export const TCR_T0SZ = 64 - VA_BITS;
export const PTRS_PER_TABLE = 512;
const DESC_SIZE = 8;

// ---- descriptor fields, low word (descriptor bits 31:0) ---------------------------------------
/** bit 0: the descriptor is valid. */
export const DESC_VALID = 1 << 0;
/** bit 1: table descriptor at levels 0–2, page descriptor at level 3 (0 would be a block / reserved). */
export const DESC_TABLE_OR_PAGE = 1 << 1;
/** AttrIndx[2:0], bits [4:2]: index into MAIR_EL1. */
export const DESC_ATTRINDX_SHIFT = 2;
/** AP[1], bit 6: accessible from EL0. */
export const DESC_AP1_USER = 1 << 6;
/** AP[2], bit 7: read-only. */
export const DESC_AP2_RDONLY = 1 << 7;
/** SH[1:0], bits [9:8]. */
export const DESC_SH_SHIFT = 8;
export const SH_INNER_SHAREABLE = 3;
/** AF, bit 10: access flag. */
export const DESC_AF = 1 << 10;
/** nG, bit 11: not global (ASID-tagged). */
export const DESC_NG = 1 << 11;
/** Output address bits [31:12] live in the low word. */
const OA_LO_MASK = 0xfffff000;

// ---- descriptor fields, high word (descriptor bit n is bit n−32 here) --------------------------
/** Output address bits [47:32] are bits [15:0] of the high word. */
const OA_HI_MASK = 0xffff;
/** PXN, bit 53. */
export const DESC_HI_PXN = 1 << (53 - 32);
/** UXN, bit 54. */
export const DESC_HI_UXN = 1 << (54 - 32);
/** Software bit 58: an invalid descriptor that still holds a PROT_NONE page's frame. */
export const DESC_HI_SW_PROT_NONE = 1 << (58 - 32);

// ---- memory attributes -------------------------------------------------------------------------
/** MAIR_EL1 indexes, as Linux numbers them. */
export const MT_NORMAL = 0;
export const MT_NORMAL_TAGGED = 1;
export const MT_NORMAL_NC = 2;
export const MT_DEVICE_nGnRnE = 3;
export const MT_DEVICE_nGnRE = 4;
/** Attr encodings: Normal inner/outer write-back read/write-allocate, tagged, non-cacheable; Device. */
const MAIR_ATTRS: readonly [number, number][] = [
  [MT_NORMAL, 0xff],
  [MT_NORMAL_TAGGED, 0xf0],
  [MT_NORMAL_NC, 0x44],
  [MT_DEVICE_nGnRnE, 0x00],
  [MT_DEVICE_nGnRE, 0x04],
];
export const MAIR_EL1_VALUE: bigint = MAIR_ATTRS.reduce((acc, [idx, attr]) => acc | (BigInt(attr) << BigInt(8 * idx)), 0n);

// ---- translation control -----------------------------------------------------------------------
/** TG0 encoding for a 4 KiB granule (TCR_EL1.TG0 and CD.TG0 agree). */
export const TG0_4K = 0;
/** TG1 encoding for a 4 KiB granule (TCR_EL1.TG1 numbers granules differently from TG0). */
export const TG1_4K = 2;
/** IRGN/ORGN: Normal memory, write-back read-allocate write-allocate cacheable. */
export const RGN_WBWA = 1;

const IPS_BY_PA_BITS: ReadonlyMap<number, number> = new Map([
  [32, 0],
  [36, 1],
  [40, 2],
  [42, 3],
  [44, 4],
  [48, 5],
]);

/** The IPS/PS encoding of a physical address size. EINVAL for sizes this format cannot hold. */
export function ipsForPaBits(paBits: number): number {
  const ips = IPS_BY_PA_BITS.get(paBits);
  if (ips === undefined) {
    throw new KernelError('EINVAL', `PA size of ${paBits} bits has no 48-bit-descriptor IPS encoding (32, 36, 40, 42, 44 or 48)`);
  }
  return ips;
}

/** Build TCR_EL1 for a user address space: TTBR0 walks, TTBR1 walks disabled (EPD1). */
export function tcrEl1Value(ips: number): bigint {
  let v = 0n;
  v |= BigInt(TCR_T0SZ); // T0SZ [5:0]
  v |= BigInt(RGN_WBWA) << 8n; // IRGN0
  v |= BigInt(RGN_WBWA) << 10n; // ORGN0
  v |= BigInt(SH_INNER_SHAREABLE) << 12n; // SH0
  v |= BigInt(TG0_4K) << 14n; // TG0
  v |= BigInt(TCR_T0SZ) << 16n; // T1SZ
  v |= 1n << 23n; // EPD1
  v |= BigInt(TG1_4K) << 30n; // TG1
  v |= BigInt(ips) << 32n; // IPS [34:32]
  v |= 1n << 36n; // AS: 16-bit ASIDs
  return v;
}

// ---- descriptor helpers --------------------------------------------------------------------------

/** Bytes of VA one entry covers at each level. */
const LEVEL_SPAN = [2 ** 39, 2 ** 30, 2 ** 21, 2 ** 12] as const;

const TWO_32 = 2 ** 32;

/**
 * Index into the level-`level` table for `va` (a non-negative safe integer): VA bits [47:39],
 * [38:30], [29:21], [20:12], taken from its two 32-bit halves with integer shifts (no floating-point
 * division and remainder per level: every page fault walks all four).
 */
export function levelIndex(va: number, level: number): number {
  const lo = va >>> 0;
  switch (level) {
    case 3:
      return (lo >>> 12) & (PTRS_PER_TABLE - 1);
    case 2:
      return (lo >>> 21) & (PTRS_PER_TABLE - 1);
    case 1:
      return ((lo >>> 30) | (((va - lo) / TWO_32) << 2)) & (PTRS_PER_TABLE - 1);
    default:
      return (((va - lo) / TWO_32) >>> 7) & (PTRS_PER_TABLE - 1);
  }
}

/** The output address (bits [47:12]) of a table or page descriptor. */
export function descOutputAddress(lo: number, hi: number): number {
  return (hi & OA_HI_MASK) * 2 ** 32 + ((lo & OA_LO_MASK) >>> 0);
}

/** Low word of the level-3 descriptor mapping `pa` with `prot` (invalid for PROT_NONE). */
export function pageDescLo(pa: number, prot: number): number {
  let lo = ((pa >>> 0) & OA_LO_MASK) | DESC_TABLE_OR_PAGE | (MT_NORMAL << DESC_ATTRINDX_SHIFT);
  lo |= DESC_AP1_USER | (SH_INNER_SHAREABLE << DESC_SH_SHIFT) | DESC_AF | DESC_NG;
  if ((prot & PROT_WRITE) === 0) lo |= DESC_AP2_RDONLY;
  if (prot !== PROT_NONE) lo |= DESC_VALID;
  return lo >>> 0;
}

/** High word of the level-3 descriptor mapping `pa` with `prot`. */
export function pageDescHi(pa: number, prot: number): number {
  let hi = Math.floor(pa / 2 ** 32) & OA_HI_MASK;
  hi |= DESC_HI_PXN;
  if ((prot & PROT_EXEC) === 0) hi |= DESC_HI_UXN;
  if (prot === PROT_NONE) hi |= DESC_HI_SW_PROT_NONE;
  return hi >>> 0;
}

/** True if a level-3 descriptor lets EL0 perform `access`. */
export function pageDescAllows(lo: number, hi: number, access: Access): boolean {
  if ((lo & (DESC_VALID | DESC_TABLE_OR_PAGE)) !== (DESC_VALID | DESC_TABLE_OR_PAGE)) return false;
  switch (access) {
    case 'read':
      return (lo & DESC_AP1_USER) !== 0;
    case 'write':
      return (lo & DESC_AP1_USER) !== 0 && (lo & DESC_AP2_RDONLY) === 0;
    case 'exec':
      return (hi & DESC_HI_UXN) === 0;
  }
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** Called for each level-3 descriptor that holds a frame (valid, or PROT_NONE). */
export type PteVisitor = (va: number, slot: number, lo: number, hi: number) => void;

/**
 * One address space's tables. Table frames come from the page allocator tagged
 * `{kind:'page-table', what}` and are zeroed before they are linked in.
 */
export class Arm64PageTable {
  /** Physical address of the level-0 table (what TTBR0_EL1 / CD.TTB0 point at). */
  readonly pgd: number;
  private tables = 1;

  constructor(
    private readonly ram: RamAccess,
    private readonly alloc: PageAllocator,
    /** Owner label of this address space's table frames. */
    readonly what: string,
  ) {
    this.pgd = this.allocTable();
  }

  /** Table frames in use, level 0 included. */
  get tableCount(): number {
    return this.tables;
  }

  private allocTable(): number {
    const pa = this.alloc.allocPages(0, { kind: 'page-table', what: this.what });
    this.ram.fill(pa, PAGE_SIZE, 0);
    return pa;
  }

  /**
   * Physical address of `va`'s level-3 descriptor. Without `create`, −1 if a table on the way is
   * missing; with it, missing tables are allocated (ENOMEM propagates, leaving what was built).
   */
  pteSlot(va: number, create: boolean): number {
    let table = this.pgd;
    for (let level = 0; level < 3; level++) {
      const slot = table + levelIndex(va, level) * DESC_SIZE;
      const lo = this.ram.read32(slot);
      if ((lo & (DESC_VALID | DESC_TABLE_OR_PAGE)) === (DESC_VALID | DESC_TABLE_OR_PAGE)) {
        table = descOutputAddress(lo, this.ram.read32(slot + 4));
        continue;
      }
      if ((lo & DESC_VALID) !== 0) {
        throw new KernelError('EINVAL', `${this.what}: level-${level} descriptor at PA ${hex(slot)} for VA ${hex(va)} is a block, which this code never writes`);
      }
      if (!create) return -1;
      const next = this.allocTable();
      this.tables++;
      // Publish the zeroed table: high word first, valid bit last.
      this.ram.write32(slot + 4, Math.floor(next / 2 ** 32) & OA_HI_MASK);
      this.ram.write32(slot, (((next >>> 0) & OA_LO_MASK) | DESC_TABLE_OR_PAGE | DESC_VALID) >>> 0);
      table = next;
    }
    return table + levelIndex(va, 3) * DESC_SIZE;
  }

  /** Write a level-3 descriptor so a walker never sees a valid half-written one. */
  writePte(slot: number, lo: number, hi: number): void {
    if ((lo & DESC_VALID) !== 0) {
      this.ram.write32(slot + 4, hi);
      this.ram.write32(slot, lo);
    } else {
      this.ram.write32(slot, lo);
      this.ram.write32(slot + 4, hi);
    }
  }

  /** Clear a level-3 descriptor. */
  clearPte(slot: number): void {
    this.writePte(slot, 0, 0);
  }

  /** Physical address `va` translates to for any valid mapping, or −1. Kernel: a software table walk */
  translate(va: number): number {
    const slot = this.pteSlot(va, false);
    if (slot < 0) return -1;
    const lo = this.ram.read32(slot);
    if ((lo & (DESC_VALID | DESC_TABLE_OR_PAGE)) !== (DESC_VALID | DESC_TABLE_OR_PAGE)) return -1;
    return descOutputAddress(lo, this.ram.read32(slot + 4)) + (va % PAGE_SIZE);
  }

  /** Physical address `va` translates to if its descriptor permits `access` from EL0, or −1. */
  translateFor(va: number, access: Access): number {
    const slot = this.pteSlot(va, false);
    if (slot < 0) return -1;
    const lo = this.ram.read32(slot);
    const hi = this.ram.read32(slot + 4);
    if (!pageDescAllows(lo, hi, access)) return -1;
    return descOutputAddress(lo, hi) + (va % PAGE_SIZE);
  }

  /** Visit every level-3 descriptor holding a frame in [start, end), skipping absent tables. */
  forEachPte(start: number, end: number, visit: PteVisitor): void {
    if (end > start) this.visitTable(this.pgd, 0, 0, start, end, visit);
  }

  private visitTable(table: number, level: number, base: number, start: number, end: number, visit: PteVisitor): void {
    const span = LEVEL_SPAN[level as 0 | 1 | 2 | 3];
    const first = Math.max(0, Math.floor((start - base) / span));
    const last = Math.min(PTRS_PER_TABLE - 1, Math.floor((end - 1 - base) / span));
    for (let i = first; i <= last; i++) {
      const slot = table + i * DESC_SIZE;
      const lo = this.ram.read32(slot);
      const hi = this.ram.read32(slot + 4);
      if (lo === 0 && hi === 0) continue;
      const va = base + i * span;
      if (level === 3) visit(va, slot, lo, hi);
      else if ((lo & (DESC_VALID | DESC_TABLE_OR_PAGE)) === (DESC_VALID | DESC_TABLE_OR_PAGE)) {
        this.visitTable(descOutputAddress(lo, hi), level + 1, va, start, end, visit);
      }
    }
  }

  /**
   * Free every table below level 0 and clear level 0. The caller has already removed the pages.
   */
  // kernel: free_pgtables() [mm/memory.c]
  freeLowerTables(): void {
    this.freeChildren(this.pgd, 0);
  }

  private freeChildren(table: number, level: number): void {
    for (let i = 0; i < PTRS_PER_TABLE; i++) {
      const slot = table + i * DESC_SIZE;
      const lo = this.ram.read32(slot);
      if ((lo & (DESC_VALID | DESC_TABLE_OR_PAGE)) !== (DESC_VALID | DESC_TABLE_OR_PAGE)) continue;
      const child = descOutputAddress(lo, this.ram.read32(slot + 4));
      if (level < 2) this.freeChildren(child, level + 1);
      this.writePte(slot, 0, 0);
      this.alloc.freePages(child, 0, { kind: 'page-table', what: this.what });
      this.tables--;
    }
  }

  /** Free the level-0 table itself: the last step of tearing an address space down. */
  // kernel: pgd_free() [arch/arm64/mm/pgd.c]
  freePgd(): void {
    this.alloc.freePages(this.pgd, 0, { kind: 'page-table', what: this.what });
    this.tables--;
  }
}
