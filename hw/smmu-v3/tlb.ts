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
 * Does not support: caching of intermediate (table) walk entries, so Leaf-only invalidation and
 * full invalidation behave alike; contiguous-hint merging; Secure/Realm/EL3 regimes.
 *
 * Lookups and inserts are synchronous and allocation-free once the entry ring is populated: a
 * context keeps one Map per block size in use, keyed by input address / block size, and entries
 * are recycled from a ring of `capacity` slots.
 */

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

export class TlbContext {
  /** log2 block sizes that have (or had) entries, with their sizes and maps. */
  readonly shifts: number[] = [];
  /** 2^shift for each entry of `shifts` (kept to avoid exponentiation on lookups). */
  readonly sizes: number[] = [];
  readonly maps: Map<number, TlbEntry>[] = [];
  count = 0;
  /** For a non-global stage 1 context: the context holding global entries of the same regime. */
  globalCtx: TlbContext | null = null;

  constructor(
    readonly key: number,
    readonly world: number,
    readonly vmid: number,
    /** ASID, or GLOBAL_ASID for the global-entries context. */
    readonly asid: number,
    readonly kind: number,
  ) {}

  get isGlobal(): boolean {
    return this.asid === GLOBAL_ASID;
  }

  /** The entry covering `addr`, or null. */
  find(addr: number): TlbEntry | null {
    const sizes = this.sizes;
    const maps = this.maps;
    for (let i = 0; i < sizes.length; i++) {
      const e = maps[i]!.get(Math.floor(addr / sizes[i]!));
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
    if (i >= 0) return this.maps[i]!;
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

export class Tlb {
  private readonly contexts = new Map<number, TlbContext>();
  private readonly ring: TlbEntry[] = [];
  private head = 0;
  private total = 0;
  readonly stats: TlbStats = { hits: 0, misses: 0, inserts: 0, invalidated: 0, evictions: 0 };

  constructor(readonly capacity: number) {}

  /** Number of cached entries. */
  get size(): number {
    return this.total;
  }

  private static keyOf(world: number, vmid: number, asid: number, kind: number): number {
    return ((world * 4 + kind) * 0x1_0000 + vmid) * 0x2_0000 + asid;
  }

  /** The context for a regime/VMID/ASID/stage tag (created on first use). */
  context(world: number, vmid: number, asid: number, kind: number): TlbContext {
    const key = Tlb.keyOf(world, vmid, asid, kind);
    let c = this.contexts.get(key);
    if (c === undefined) {
      c = new TlbContext(key, world, vmid, asid, kind);
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
    const base = inputAddr - (inputAddr % blockSize);
    const m = target.mapFor(Math.log2(blockSize));
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
    e.pa = outputAddr - (outputAddr % blockSize);
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

  /** Invalidate every entry in scope. Returns the number removed. */
  invalidateScope(s: TlbScope): number {
    let n = 0;
    for (const c of this.contexts.values()) {
      if (c.count > 0 && this.inScope(c, s)) n += this.clearContext(c);
    }
    this.stats.invalidated += n;
    return n;
  }

  /** Invalidate everything. */
  invalidateAll(): number {
    let n = 0;
    for (const c of this.contexts.values()) if (c.count > 0) n += this.clearContext(c);
    this.stats.invalidated += n;
    return n;
  }

  /**
   * Invalidate the entries in scope that overlap [lo, hi). `granuleShift` (0: any) and `level`
   * (0: any) restrict it to entries inserted from tables of that granule / leaves at that level, as
   * CMD_TLBI_* TG and TTL do.
   */
  invalidateRange(s: TlbScope, lo: number, hi: number, granuleShift: number, level: number): number {
    let n = 0;
    for (const c of this.contexts.values()) {
      if (c.count === 0 || !this.inScope(c, s)) continue;
      for (let i = 0; i < c.sizes.length; i++) {
        const m = c.maps[i]!;
        if (m.size === 0) continue;
        const size = c.sizes[i]!;
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

  /** Every cached entry (for tests and debugging). */
  entries(): TlbEntry[] {
    const out: TlbEntry[] = [];
    for (const c of this.contexts.values()) for (const m of c.maps) for (const e of m.values()) out.push(e);
    return out;
  }
}
