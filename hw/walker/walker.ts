/**
 * The hardware translation table walker: stage 1, stage 2 and nested (stage 1 then stage 2, with every
 * stage 1 descriptor fetch translated by stage 2) walks of VMSAv8-64 tables in physical memory. This is
 * the machine's own reading of the Arm ARM and shares nothing with the kernel's io-pgtable.
 *
 * Faults, in the order a walk meets them:
 * - translation: input address beyond the stage's input size (level 0), an invalid descriptor, a
 *   level 3 descriptor with bit[1] clear, or a block at a level that cannot hold one;
 * - address-size: the table base, a next-level table address or the output address does not fit the
 *   stage's output size (the base is reported at level 0);
 * - external-abort-on-walk: a descriptor read that hits no memory (BusError);
 * - access-flag: a leaf with AF = 0, unless the stage says otherwise (StageConfig.accessFlag: treat
 *   AF = 0 as 1, or set AF in the descriptor in memory: a hardware Access flag update);
 * - permission: the leaf does not grant the access.
 * Stage 1 is resolved (permission included) before its output goes through stage 2.
 *
 * Permissions follow the EL1&0 regime: stage 1 AP[2:1] with APTable, UXN/PXN with UXNTable/PXNTable,
 * and memory writable by unprivileged accesses is never executable by privileged ones; stage 2 S2AP
 * and XN (bit 54). Execute permission does not need read permission. Stage 2 table walks for stage 1
 * descriptors are data reads.
 *
 * Walk caches: a caller may pass a TableWalkCache per stage. The walk then starts below the deepest
 * cached table descriptor covering the input address (skipping the reads above it) and records every
 * valid table descriptor it reads, whatever the walk's outcome, as an SMMU or PE walk cache may
 * (Arm ARM D8.16 "Translation Lookaside Buffers", intermediate-level caching; SMMUv3 spec 4.4 for
 * the invalidation side). In a nested walk the stage 1 cache holds the IPA of the next stage 1
 * table; its fetch still goes through stage 2 (and the stage 2 cache).
 *
 * Every walk writes a caller-owned WalkResult and allocates nothing (a walk cache recording an entry
 * may, until its ring of entries is populated).
 */
import { BusError } from '../memory.js';
import { AF_FAULT, AF_UPDATE, type StageConfig } from './config.js';
import {
  ACCESS_INSTR,
  ACCESS_PRIV,
  ACCESS_WRITE,
  PERM_R,
  PERM_W,
  PERM_X,
  WalkResult,
  type WalkFaultKind,
} from './result.js';

/** What the walker reads tables from: physical memory, or an interconnect in front of it. */
export interface WalkMemory {
  /** Little-endian 32-bit load; throws BusError where nothing answers. */
  read32(pa: number): number;
  /** Little-endian 32-bit store (hardware Access flag update); throws BusError where nothing answers. */
  write32?(pa: number, value: number): void;
}

/**
 * Cached intermediate (table) descriptors of one stage's walks for one translation context. The
 * walker asks for the deepest one covering an input address and reports each one it reads.
 */
export interface TableWalkCache {
  /**
   * The deepest cached table descriptor of `st`'s tables covering `ia`, at a level >= `minLevel`:
   * returns the level of the next lookup (the cached descriptor's level + 1) with the next table's
   * address in `hitTable` and the OR of the hi words of the table descriptors above it (this one
   * included) in `hitAttrs`; or -1.
   */
  findTable(st: StageConfig, ia: number, minLevel: number): number;
  readonly hitTable: number;
  readonly hitAttrs: number;
  /** A valid table descriptor read at `level` for `ia`, pointing at `table`; `attrs` as for hitAttrs. */
  recordTable(st: StageConfig, level: number, ia: number, table: number, attrs: number): void;
}

const TWO_31 = 0x8000_0000;
const TWO_32 = 0x1_0000_0000;
const TWO_48 = 2 ** 48;

// Descriptor bits in the hi word (bit number - 32).
const HI_PXN = 1 << (53 - 32);
const HI_UXN = 1 << (54 - 32); // UXN at stage 1, XN at stage 2
const HI_PXNTABLE = 1 << (59 - 32);
const HI_UXNTABLE = 1 << (60 - 32);
const HI_APTABLE_NO_EL0 = 1 << (61 - 32);
const HI_APTABLE_RO = 1 << (62 - 32);
const HI_NSTABLE = 1 << (63 - 32);

// Descriptor bits in the lo word.
const LO_VALID = 1 << 0;
const LO_TABLE_OR_PAGE = 1 << 1;
const LO_NS = 1 << 5;
const LO_AF = 1 << 10;
const LO_NG = 1 << 11;
/** FEAT_BBM nT (block descriptors). */
const LO_NT = 1 << 16;

export class TranslationTableWalker {
  /** hi word of the last descriptor read (keeps readDescriptor allocation-free). */
  private descHi = 0;
  /** Stage 2 results for stage 1 descriptor fetches of a nested walk. */
  private readonly ptw = new WalkResult();
  /** Privilege of the access being walked, for the stage 1 permission model. */
  private priv = false;
  /** Stage 2 walk cache of the walk in progress (used for stage 1 table fetches of a nested walk). */
  private wc2: TableWalkCache | null = null;
  /** Table descriptors read, walk-cache hits (levels skipped) and hardware AF updates, over all walks. */
  readonly stats = { descriptorReads: 0, walkCacheHits: 0, afUpdates: 0 };

  constructor(private readonly mem: WalkMemory) {}

  /** Stage 1 only: `va` to PA. Returns true on success; `out` holds the result or the fault. */
  walkStage1(s1: StageConfig, va: number, access: number, out: WalkResult, wc1: TableWalkCache | null = null): boolean {
    out.reset(va);
    this.priv = (access & ACCESS_PRIV) !== 0;
    if (!this.lookup(s1, va, null, out, wc1)) return false;
    out.ipa = out.pa;
    out.perms = out.s1Perms;
    return this.check(out, access, out.s1Perms, 1, out.level);
  }

  /** Stage 2 only: `ipa` to PA. */
  walkStage2(s2: StageConfig, ipa: number, access: number, out: WalkResult, wc2: TableWalkCache | null = null): boolean {
    out.reset(ipa);
    out.ipa = ipa;
    if (!this.lookup(s2, ipa, null, out, wc2)) return false;
    out.level = out.s2Level;
    out.blockSize = out.s2BlockSize;
    out.perms = out.s2Perms;
    return this.check(out, access, out.s2Perms, 2, out.s2Level);
  }

  /** Stage 1 then stage 2: `va` to IPA to PA, with stage 1's own table fetches through stage 2. */
  walkNested(
    s1: StageConfig,
    s2: StageConfig,
    va: number,
    access: number,
    out: WalkResult,
    wc1: TableWalkCache | null = null,
    wc2: TableWalkCache | null = null,
  ): boolean {
    out.reset(va);
    this.priv = (access & ACCESS_PRIV) !== 0;
    this.wc2 = wc2;
    if (!this.lookup(s1, va, s2, out, wc1)) return false;
    if (!this.check(out, access, out.s1Perms, 1, out.level)) return false;
    const ipa = out.pa;
    out.ipa = ipa;
    if (!this.lookup(s2, ipa, null, out, wc2)) return false;
    out.perms = out.s1Perms & out.s2Perms;
    out.blockSize = Math.min(out.blockSize, out.s2BlockSize);
    return this.check(out, access, out.s2Perms, 2, out.s2Level);
  }

  /** Does `perms` grant `access`? Otherwise record a permission fault. */
  private check(out: WalkResult, access: number, perms: number, stage: number, level: number): boolean {
    const need = access & ACCESS_WRITE ? PERM_W : access & ACCESS_INSTR ? PERM_X : PERM_R;
    if (perms & need) return true;
    return this.fault(out, 'permission', stage, level);
  }

  private fault(out: WalkResult, kind: WalkFaultKind, stage: number, level: number): false {
    out.fault = kind;
    out.faultStage = stage;
    out.faultLevel = level;
    return false;
  }

  /** Read a descriptor; returns its lo word, leaves the hi word in descHi. Throws BusError. */
  private readDescriptor(pa: number): number {
    const lo = this.mem.read32(pa);
    this.descHi = this.mem.read32(pa + 4);
    return lo;
  }

  /** Output/next-table address held by a descriptor (bits [47:granule], plus [15:12] as OA[51:48] for 64K). */
  private descAddress(st: StageConfig, lo: number, hi: number): number {
    let a = (hi & 0xffff) * TWO_32 + ((lo & st.addrLoMask) >>> 0);
    if (st.oaHighInLo) a += ((lo >>> 12) & 0xf) * TWO_48;
    return a;
  }

  /**
   * Walk one stage's tables for input address `ia`. With `s2` set (stage 1 of a nested walk), each
   * descriptor address is an IPA translated through `s2` first. On success fills the stage's leaf
   * fields of `out`, `out.pa` (this stage's output) and, for stage 1, `level`/`blockSize`.
   */
  private lookup(st: StageConfig, ia: number, s2: StageConfig | null, out: WalkResult, wc: TableWalkCache | null): boolean {
    const stage = st.stage;
    if (ia >= st.inputLimit || ia < 0) return this.fault(out, 'translation', stage, 0);
    let table = st.tableBase;
    if (table >= st.outputLimit) return this.fault(out, 'address-size', stage, 0);
    const iaLo = ia >>> 0;
    const iaHi = Math.floor(ia / TWO_32);
    // Stage 1 hierarchical attributes: the OR of bits [63:59] of every table descriptor on the way.
    let tableAttrs = 0;
    let level = st.startLevel;
    let mask = st.startIndexMask;
    if (wc !== null) {
      const next = wc.findTable(st, ia, level);
      if (next > level) {
        this.stats.walkCacheHits++;
        level = next;
        table = wc.hitTable;
        tableAttrs = wc.hitAttrs;
        mask = st.indexMask;
      }
    }
    for (;;) {
      const shift = st.levelShift[level]!;
      const idx = (shift >= 32 ? iaHi >>> (shift - 32) : (iaLo >>> shift) | (iaHi << (32 - shift))) & mask;
      let descPa = table + idx * 8;
      if (s2 !== null) {
        descPa = this.translateForWalk(s2, descPa, out, level);
        if (descPa < 0) return false;
      }
      let lo: number;
      this.stats.descriptorReads++;
      try {
        lo = this.readDescriptor(descPa);
      } catch (e) {
        if (!(e instanceof BusError)) throw e;
        out.walkPa = descPa;
        return this.fault(out, 'external-abort-on-walk', stage, level);
      }
      const hi = this.descHi;
      if (!(lo & LO_VALID)) return this.fault(out, 'translation', stage, level);
      const addr = this.descAddress(st, lo, hi);
      if (level < 3 && lo & LO_TABLE_OR_PAGE) {
        if (addr >= st.outputLimit) return this.fault(out, 'address-size', stage, level);
        tableAttrs |= hi;
        table = addr;
        if (wc !== null) wc.recordTable(st, level, ia, addr, tableAttrs);
        level++;
        mask = st.indexMask;
        continue;
      }
      // A leaf: a page at level 3 (bit[1] set), a block above it (bit[1] clear) where permitted.
      if (level === 3 ? !(lo & LO_TABLE_OR_PAGE) : !st.blockAllowed[level]) {
        return this.fault(out, 'translation', stage, level);
      }
      const blockSize = st.levelBlockSize[level]!;
      // Output address bits below the block size are RES0 in a block descriptor: ignore them.
      const base = level === 3 ? addr : addr - (addr % blockSize);
      if (base >= st.outputLimit) return this.fault(out, 'address-size', stage, level);
      if (!(lo & LO_AF)) {
        if (st.accessFlag === AF_FAULT) return this.fault(out, 'access-flag', stage, level);
        if (st.accessFlag === AF_UPDATE && !this.setAccessFlag(descPa, lo)) {
          out.walkPa = descPa;
          return this.fault(out, 'external-abort-on-walk', stage, level);
        }
      }
      // nT is bit 16 of a block descriptor only (a page descriptor holds OA[16] there).
      if (level < 3 && lo & LO_NT) out.nT = true;
      out.pa = base + (blockSize <= TWO_31 ? iaLo & (blockSize - 1) : ia % blockSize);
      if (stage === 1) {
        this.stage1Leaf(out, lo, hi, tableAttrs);
        out.level = level;
        out.blockSize = blockSize;
      } else {
        this.stage2Leaf(out, lo, hi);
        out.s2Level = level;
        out.s2BlockSize = blockSize;
      }
      return true;
    }
  }

  /** Hardware Access flag update: write the descriptor's low word back with AF set. */
  private setAccessFlag(descPa: number, lo: number): boolean {
    const write = this.mem.write32;
    if (write === undefined) return false;
    try {
      write.call(this.mem, descPa, (lo | LO_AF) >>> 0);
    } catch (e) {
      if (!(e instanceof BusError)) throw e;
      return false;
    }
    this.stats.afUpdates++;
    return true;
  }

  /**
   * Stage 2 translation of a stage 1 descriptor address (a data read). Returns the PA, or -1 after
   * copying the stage 2 fault into `out` (with s1ptw and the IPA).
   */
  private translateForWalk(s2: StageConfig, ipa: number, out: WalkResult, s1Level: number): number {
    const r = this.ptw;
    r.reset(ipa);
    if (this.lookup(s2, ipa, null, r, this.wc2) && this.check(r, 0, r.s2Perms, 2, r.s2Level)) return r.pa;
    out.fault = r.fault;
    out.faultStage = 2;
    out.faultLevel = r.faultLevel;
    out.walkPa = r.walkPa;
    out.s1ptw = true;
    out.ipa = ipa;
    out.level = s1Level;
    return -1;
  }

  /** Stage 1 leaf permissions and attributes; `tableAttrs` ORs the hi words of the tables above it. */
  private stage1Leaf(out: WalkResult, lo: number, hi: number, tableAttrs: number): void {
    const ro = (lo & (1 << 7)) !== 0 || (tableAttrs & HI_APTABLE_RO) !== 0; // AP[2], APTable[1]
    const el0 = (lo & (1 << 6)) !== 0 && (tableAttrs & HI_APTABLE_NO_EL0) === 0; // AP[1], APTable[0]
    const uxn = (hi & HI_UXN) !== 0 || (tableAttrs & HI_UXNTABLE) !== 0;
    const pxn = (hi & HI_PXN) !== 0 || (tableAttrs & HI_PXNTABLE) !== 0;
    out.ap = (ro ? 2 : 0) | (el0 ? 1 : 0);
    out.uxn = uxn;
    out.pxn = pxn;
    out.attrIndx = (lo >>> 2) & 7;
    out.sh = (lo >>> 8) & 3;
    out.ns = (lo & LO_NS) !== 0 || (tableAttrs & HI_NSTABLE) !== 0;
    out.nG = (lo & LO_NG) !== 0;
    out.s1Perms = this.priv ? this.privPerms(ro, el0, pxn) : this.unprivPerms(ro, el0, uxn);
  }

  private stage2Leaf(out: WalkResult, lo: number, hi: number): void {
    const s2ap = (lo >>> 6) & 3;
    const xn = (hi & HI_UXN) !== 0;
    out.s2ap = s2ap;
    out.s2xn = xn;
    out.memAttr = (lo >>> 2) & 0xf;
    out.s2Sh = (lo >>> 8) & 3;
    out.s2Perms = (s2ap & 1 ? PERM_R : 0) | (s2ap & 2 ? PERM_W : 0) | (xn ? 0 : PERM_X);
  }

  private privPerms(ro: boolean, el0: boolean, pxn: boolean): number {
    // Memory that unprivileged accesses may write is never privileged-executable.
    const el0Writable = el0 && !ro;
    return PERM_R | (ro ? 0 : PERM_W) | (pxn || el0Writable ? 0 : PERM_X);
  }

  private unprivPerms(ro: boolean, el0: boolean, uxn: boolean): number {
    return (el0 ? PERM_R : 0) | (el0 && !ro ? PERM_W : 0) | (uxn ? 0 : PERM_X);
  }
}
