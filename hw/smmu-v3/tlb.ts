/**
 * The SMMUv3 TLB: cached leaf translations tagged the way the architecture tags them (translation
 * regime/StreamWorld, VMID, ASID, stage), never by StreamID, so two streams sharing an ASID/VMID
 * share entries and a mapping stays usable until the matching CMD_TLBI_* removes it.
 *
 * Supports: stage 1, stage 2 and nested (combined) entries of any block size; global (nG == 0)
 * stage 1 entries matched under every ASID; invalidation by context (ALL/ASID/VMID), by address
 * (one address, any entry covering it) and by range with the TG granule and TTL level filters of
 * range invalidation; a fixed capacity with FIFO replacement (architecturally the TLB may drop
 * non-locked entries at any time).
 * Walk caches (SMMUv3 spec 3.17 for the tagging, 4.4 "TLB invalidation" for what each command
 * removes, the Leaf field in particular): each context also caches the valid table descriptors its
 * walks read, per stage (the context's kind) and per level, keyed by the input-address span the
 * descriptor covers and tagged
 * like the leaves (a stage 1 table descriptor by ASID and VMID, a stage 2 one by VMID), never global.
 * Context-wide invalidations (NH_ALL, NH_ASID, S12_VMALL, NSNH_ALL, EL2_ALL/ASID) remove them with the
 * leaves; a by-address invalidation removes those covering the range only when Leaf == 0, so a
 * Leaf == 1 TLBI after a table was unhooked leaves the walk through the freed table in place, as the
 * architecture permits. TG and TTL never narrow what a Leaf == 0 invalidation removes from the walk
 * cache (removing more is always allowed). CMD_TLBI_S2_IPA removes stage 2 walk entries only; stage 1
 * walk entries of a nested context hold IPAs and stay until a stage 1 invalidation.
 * Does not support: contiguous-hint merging; Secure/Realm/EL3 regimes.
 *
 * Lookups and inserts are synchronous and allocation-free once the entry ring is populated: a
 * context keeps one Map per block size in use, keyed by input address / block size, and entries
 * are recycled from a ring of `capacity` slots.
 */
import type { StageConfig } from '../walker/config.js';
import type { TableWalkCache } from '../walker/walker.js';

/** Translation regimes (StreamWorld) the model tags entries with. */
export const WORLD_NS_EL1 = 0;
export const WORLD_NS_EL2 = 1;
export const WORLD_NS_EL2_E2H = 2;
export const WORLD_NAMES = ['NS-EL1', 'NS-EL2', 'NS-EL2-E2H'] as const;

/** Which stages produced an entry. */
export const KIND_S1 = 0;
export const KIND_S2 = 1;
export const KIND_S12 = 2;
export const KIND_MASK_S1 = 1 << KIND_S1;
export const KIND_MASK_S2 = 1 << KIND_S2;
export const KIND_MASK_S12 = 1 << KIND_S12;
export const KIND_MASK_ALL = KIND_MASK_S1 | KIND_MASK_S2 | KIND_MASK_S12;

/** ASID value of the context holding global entries. */
const GLOBAL_ASID = 0x1_0000;

/** A cached table descriptor: the next-level table of one input-address span at one level. */
export class WalkEntry {
  live = false;
  ctx: TlbContext | null = null;
  map: Map<number, WalkEntry> | null = null;
  key = 0;
  /** Level of the table descriptor (0-2). */
  level = 0;
  granuleShift = 0;
  /** Input address of the start of the span the descriptor covers, and its size. */
  base = 0;
  span = 0;
  /** Address of the next-level table (an IPA for stage 1 tables of a nested walk). */
  table = 0;
  /** OR of the hi words of the table descriptors from the start level to this one. */
  attrs = 0;
}

/** Walk-cache map index: 3 levels (0-2) per granule (4K, 16K, 64K). */
function walkMapIndex(granuleShift: number, level: number): number {
  return ((granuleShift - 12) >> 1) * 3 + level;
}

/** Where a context records the walk entries it is given (the Tlb's ring). */
interface WalkRecorder {
  recordWalk(ctx: TlbContext, granuleShift: number, level: number, base: number, span: number, table: number, attrs: number): void;
}

export class TlbEntry {
  /** False once invalidated or evicted (the slot is then free for reuse). */
  live = false;
  ctx: TlbContext | null = null;
  map: Map<number, TlbEntry> | null = null;
  key = 0;
  /** Input address (VA, or IPA for stage 2 only) of the start of the mapped block. */
  base = 0;
  /** Block size in bytes (a power of two). */
  size = 0;
  /** Output PA of the start of the block. */
  pa = 0;
  /** PERM_R/W/X granted to privileged accesses (all stages combined). */
  permsPriv = 0;
  /** PERM_R/W/X granted to unprivileged accesses. */
  permsUnpriv = 0;
  /** Granule shift (12/14/16) of the table the leaf came from. */
  granuleShift = 0;
  /** Lookup level of the leaf. */
  level = 0;
}

export class TlbContext implements TableWalkCache {
  /** log2 block sizes that have (or had) entries, with their sizes and maps. */
  readonly shifts: number[] = [];
  /** 2^shift for each entry of `shifts` (kept to avoid exponentiation on lookups). */
  readonly sizes: number[] = [];
  readonly maps: Map<number, TlbEntry>[] = [];
  count = 0;
  /** For a non-global stage 1 context: the context holding global entries of the same regime. */
  globalCtx: TlbContext | null = null;
  /** Walk-cache entries by walkMapIndex(granule, level), created on first use. */
  readonly walkMaps: (Map<number, WalkEntry> | undefined)[] = [];
  walkCount = 0;
  hitTable = 0;
  hitAttrs = 0;

  constructor(
    readonly key: number,
    readonly world: number,
    readonly vmid: number,
    /** ASID, or GLOBAL_ASID for the global-entries context. */
    readonly asid: number,
    readonly kind: number,
    private readonly recorder: WalkRecorder | null = null,
  ) {}

  // TableWalkCache (hw/walker/walker.ts): this context's walk cache.
  findTable(st: StageConfig, ia: number, minLevel: number): number {
    if (this.walkCount === 0) return -1;
    const base = walkMapIndex(st.granuleShift, 0);
    for (let l = 2; l >= minLevel; l--) {
      const m = this.walkMaps[base + l];
      if (m === undefined || m.size === 0) continue;
      const e = m.get(Math.floor(ia / st.levelBlockSize[l]));
      if (e !== undefined) {
        this.hitTable = e.table;
        this.hitAttrs = e.attrs;
        return l + 1;
      }
    }
    return -1;
  }

  recordTable(st: StageConfig, level: number, ia: number, table: number, attrs: number): void {
    if (this.recorder === null || level > 2) return;
    const span = st.levelBlockSize[level];
    this.recorder.recordWalk(this, st.granuleShift, level, ia - (ia % span), span, table, attrs);
  }

  walkMapFor(granuleShift: number, level: number): Map<number, WalkEntry> {
    const i = walkMapIndex(granuleShift, level);
    let m = this.walkMaps[i];
    if (m === undefined) {
      m = new Map();
      this.walkMaps[i] = m;
    }
    return m;
  }

  get isGlobal(): boolean {
    return this.asid === GLOBAL_ASID;
  }

  /** The entry covering `addr`, or null. */
  find(addr: number): TlbEntry | null {
    const sizes = this.sizes;
    const maps = this.maps;
    for (let i = 0; i < sizes.length; i++) {
      const e = maps[i].get(Math.floor(addr / sizes[i]));
      if (e !== undefined) return e;
    }
    return null;
  }

  /** The entry covering `addr` here or among the regime's global entries. */
  lookup(addr: number): TlbEntry | null {
    const e = this.find(addr);
    if (e !== null) return e;
    const g = this.globalCtx;
    return g !== null && g.count > 0 ? g.find(addr) : null;
  }

  mapFor(shift: number): Map<number, TlbEntry> {
    const i = this.shifts.indexOf(shift);
    if (i >= 0) return this.maps[i];
    const m = new Map<number, TlbEntry>();
    this.shifts.push(shift);
    this.sizes.push(2 ** shift);
    this.maps.push(m);
    return m;
  }
}

export interface TlbStats {
  hits: number;
  misses: number;
  inserts: number;
  invalidated: number;
  /** Live entries replaced because the TLB was full. */
  evictions: number;
  /** Walk-cache (table descriptor) entries recorded / removed by invalidations / evicted. */
  walkInserts: number;
  walkInvalidated: number;
  walkEvictions: number;
}

/** Scope of an invalidation: which contexts it reaches. -1 in vmid/asid means "any". */
export interface TlbScope {
  world: number;
  vmid: number;
  asid: number;
  kinds: number;
  /** Also reach the regime's global entries (by-VA invalidations with an ASID do). */
  globals: boolean;
  /** Only non-global entries (by-ASID invalidations leave global entries alone). */
  nonGlobalOnly: boolean;
}

// A block size is a power of two; addresses go above 2^32, where `%` is a floating-point remainder and
// Math.log2 a call: blocks up to 2 GiB use integer bits (x & (size - 1) is x mod size, as 2^32 is a
// multiple of size), bigger ones the arithmetic.

/** `addr % size` for a non-negative safe integer `addr` and a power-of-two block `size`. */
export function blockOffset(addr: number, size: number): number {
  return size <= 0x8000_0000 ? (addr & (size - 1)) >>> 0 : addr % size;
}

/** log2 of a power-of-two block `size`. */
function blockShift(size: number): number {
  return size <= 0x8000_0000 ? 31 - Math.clz32(size) : Math.log2(size);
}

export class Tlb implements WalkRecorder {
  private readonly contexts = new Map<number, TlbContext>();
  private readonly ring: TlbEntry[] = [];
  private head = 0;
  private total = 0;
  private readonly walkRing: WalkEntry[] = [];
  private walkHead = 0;
  private walkTotal = 0;
  readonly stats: TlbStats = { hits: 0, misses: 0, inserts: 0, invalidated: 0, evictions: 0, walkInserts: 0, walkInvalidated: 0, walkEvictions: 0 };

  /** `walkCapacity` 0: no walk cache (contexts record nothing). */
  constructor(
    readonly capacity: number,
    readonly walkCapacity = 0,
  ) {}

  /** Number of cached entries. */
  get size(): number {
    return this.total;
  }

  /** Number of cached table descriptors (walk-cache entries). */
  get walkSize(): number {
    return this.walkTotal;
  }

  private static keyOf(world: number, vmid: number, asid: number, kind: number): number {
    return ((world * 4 + kind) * 0x1_0000 + vmid) * 0x2_0000 + asid;
  }

  /** The context for a regime/VMID/ASID/stage tag (created on first use). */
  context(world: number, vmid: number, asid: number, kind: number): TlbContext {
    const key = Tlb.keyOf(world, vmid, asid, kind);
    let c = this.contexts.get(key);
    if (c === undefined) {
      c = new TlbContext(key, world, vmid, asid, kind, asid === GLOBAL_ASID || this.walkCapacity === 0 ? null : this);
      if (kind !== KIND_S2 && asid !== GLOBAL_ASID) c.globalCtx = this.context(world, vmid, GLOBAL_ASID, kind);
      this.contexts.set(key, c);
    }
    return c;
  }

  /** Remove a live entry from its context. */
  private kill(e: TlbEntry): void {
    e.map!.delete(e.key);
    e.live = false;
    e.ctx!.count--;
    this.total--;
  }

  private killWalk(e: WalkEntry): void {
    e.map!.delete(e.key);
    e.live = false;
    e.ctx!.walkCount--;
    this.walkTotal--;
  }

  /** Cache a table descriptor for `ctx` (TlbContext.recordTable). */
  recordWalk(ctx: TlbContext, granuleShift: number, level: number, base: number, span: number, table: number, attrs: number): void {
    const m = ctx.walkMapFor(granuleShift, level);
    const key = base / span;
    const old = m.get(key);
    if (old !== undefined) {
      old.table = table;
      old.attrs = attrs;
      return;
    }
    let e = this.walkRing[this.walkHead];
    if (e === undefined) {
      e = new WalkEntry();
      this.walkRing.push(e);
    } else if (e.live) {
      this.killWalk(e);
      this.stats.walkEvictions++;
    }
    this.walkHead = this.walkHead + 1 === this.walkCapacity ? 0 : this.walkHead + 1;
    e.live = true;
    e.ctx = ctx;
    e.map = m;
    e.key = key;
    e.level = level;
    e.granuleShift = granuleShift;
    e.base = base;
    e.span = span;
    e.table = table;
    e.attrs = attrs;
    m.set(key, e);
    ctx.walkCount++;
    this.walkTotal++;
    this.stats.walkInserts++;
  }

  /** Cache a translation. `global` entries (nG == 0) go to the regime's global context. */
  insert(
    ctx: TlbContext,
    global: boolean,
    inputAddr: number,
    blockSize: number,
    outputAddr: number,
    permsPriv: number,
    permsUnpriv: number,
    granuleShift: number,
    level: number,
  ): TlbEntry {
    const target = global && ctx.globalCtx !== null ? ctx.globalCtx : ctx;
    const base = inputAddr - blockOffset(inputAddr, blockSize);
    const m = target.mapFor(blockShift(blockSize));
    const key = base / blockSize;
    const old = m.get(key);
    if (old !== undefined) this.kill(old);
    let e = this.ring[this.head];
    if (e === undefined) {
      e = new TlbEntry();
      this.ring.push(e);
    } else if (e.live) {
      this.kill(e);
      this.stats.evictions++;
    }
    this.head = this.head + 1 === this.capacity ? 0 : this.head + 1;
    e.live = true;
    e.ctx = target;
    e.map = m;
    e.key = key;
    e.base = base;
    e.size = blockSize;
    e.pa = outputAddr - blockOffset(outputAddr, blockSize);
    e.permsPriv = permsPriv;
    e.permsUnpriv = permsUnpriv;
    e.granuleShift = granuleShift;
    e.level = level;
    m.set(key, e);
    target.count++;
    this.total++;
    this.stats.inserts++;
    return e;
  }

  private inScope(c: TlbContext, s: TlbScope): boolean {
    if (c.world !== s.world || ((1 << c.kind) & s.kinds) === 0) return false;
    if (s.vmid >= 0 && c.vmid !== s.vmid) return false;
    if (c.isGlobal) return !s.nonGlobalOnly && (s.asid < 0 || s.globals);
    return s.asid < 0 || c.asid === s.asid;
  }

  private clearContext(c: TlbContext): number {
    const n = c.count;
    for (const m of c.maps) {
      for (const e of m.values()) e.live = false;
      m.clear();
    }
    c.count = 0;
    this.total -= n;
    return n;
  }

  private clearWalk(c: TlbContext): void {
    if (c.walkCount === 0) return;
    for (const m of c.walkMaps) {
      if (m === undefined) continue;
      for (const e of m.values()) e.live = false;
      m.clear();
    }
    this.stats.walkInvalidated += c.walkCount;
    this.walkTotal -= c.walkCount;
    c.walkCount = 0;
  }

  /** Invalidate every entry in scope, leaf and walk. Returns the number of leaf entries removed. */
  invalidateScope(s: TlbScope): number {
    let n = 0;
    for (const c of this.contexts.values()) {
      if ((c.count > 0 || c.walkCount > 0) && this.inScope(c, s)) {
        n += this.clearContext(c);
        this.clearWalk(c);
      }
    }
    this.stats.invalidated += n;
    return n;
  }

  /** Invalidate everything, leaf and walk. */
  invalidateAll(): number {
    let n = 0;
    for (const c of this.contexts.values()) {
      if (c.count > 0) n += this.clearContext(c);
      this.clearWalk(c);
    }
    this.stats.invalidated += n;
    return n;
  }

  /** Remove the walk-cache entries in scope whose span overlaps [lo, hi). */
  invalidateWalkRange(s: TlbScope, lo: number, hi: number): number {
    if (this.walkTotal === 0) return 0;
    let n = 0;
    for (const c of this.contexts.values()) {
      if (c.walkCount === 0 || !this.inScope(c, s)) continue;
      for (const m of c.walkMaps) {
        if (m === undefined || m.size === 0) continue;
        for (const e of m.values()) {
          if (e.base < hi && lo < e.base + e.span) {
            this.killWalk(e);
            n++;
          }
        }
      }
    }
    this.stats.walkInvalidated += n;
    return n;
  }

  /**
   * Invalidate the entries in scope that overlap [lo, hi). `granuleShift` (0: any) and `level`
   * (0: any) restrict it to entries inserted from tables of that granule / leaves at that level, as
   * CMD_TLBI_* TG and TTL do.
   */
  invalidateRange(s: TlbScope, lo: number, hi: number, granuleShift: number, level: number): number {
    // Nothing cached: no context to visit (a strict unmap of a page no transaction used).
    if (this.total === 0) return 0;
    let n = 0;
    for (const c of this.contexts.values()) {
      if (c.count === 0 || !this.inScope(c, s)) continue;
      for (let i = 0; i < c.sizes.length; i++) {
        const m = c.maps[i];
        if (m.size === 0) continue;
        const size = c.sizes[i];
        const first = Math.floor(lo / size);
        const last = Math.floor((hi - 1) / size);
        if (last - first + 1 <= m.size) {
          for (let k = first; k <= last; k++) {
            const e = m.get(k);
            if (e !== undefined && this.matches(e, granuleShift, level)) {
              this.kill(e);
              n++;
            }
          }
        } else {
          for (const e of m.values()) {
            if (e.base < hi && lo < e.base + e.size && this.matches(e, granuleShift, level)) {
              this.kill(e);
              n++;
            }
          }
        }
      }
    }
    this.stats.invalidated += n;
    return n;
  }

  private matches(e: TlbEntry, granuleShift: number, level: number): boolean {
    return (granuleShift === 0 || e.granuleShift === granuleShift) && (level === 0 || e.level === level);
  }

  /** Every cached table descriptor (for tests and debugging). */
  walkEntries(): WalkEntry[] {
    const out: WalkEntry[] = [];
    for (const c of this.contexts.values()) for (const m of c.walkMaps) if (m !== undefined) for (const e of m.values()) out.push(e);
    return out;
  }

  /** Every cached entry (for tests and debugging). */
  entries(): TlbEntry[] {
    const out: TlbEntry[] = [];
    for (const c of this.contexts.values()) for (const m of c.maps) for (const e of m.values()) out.push(e);
    return out;
  }
}
