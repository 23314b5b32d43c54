/**
 * The SMMUv2 TLB: cached leaf translations, tagged as the architecture tags them, that stay stale
 * until software invalidates them.
 *
 * Supports: entries tagged by namespace (a VMID, or the context bank itself when SCTLR.ASIDPNE makes
 * the ASID space private to the bank) and ASID (stage 1 / nested) or stage 2 only; global (nG=0)
 * entries that match every ASID of their namespace; blocks of any size (4K … 1G, 16K/64K granule
 * sizes), looked up by probing each block size present; invalidation by VA, by VA for all ASIDs, by
 * ASID, by IPA (stage 2), by namespace, by VMID and everything. Each maintenance operation is
 * queued and takes effect when the TLBSYNC/sTLBGSYNC that follows it completes (the model's way of
 * making a missing sync observable); see `PendingTlbi`.
 * Does not support: walk caches (leaf-only TLBIVAL/TLBIIPAS2L therefore behave as their non-leaf
 * forms), TLB lockdown (FSR.TLBLKF) and match conflicts (FSR.TLBMCF), hypervisor entries
 * (TLBIALLH has nothing to invalidate). Capacity is bounded: inserting beyond it flushes everything,
 * which the architecture allows at any time.
 *
 * A hit is allocation-free: keys are small integers (the block number modulo 2^28, times four, plus
 * the block-size slot) into a Map of entry chains.
 */

/** One cached translation of an aligned block of input addresses. */
export class TlbEntry {
  /** Input block number (input address / blockSize). */
  blockNumber = 0;
  blockSize = 0;
  /** Output address of the block's first byte. */
  outBase = 0;
  /** Nested entries: the stage 2 leaf the translation used (its IPA base and size), for TLBIIPAS2. */
  s2Base = 0;
  s2Size = 0;
  /** Combined permissions (PERM_*) for privileged and unprivileged accesses. */
  permsPriv = 0;
  permsUser = 0;
  /** Stage 1 permissions alone, to say which stage a permission fault belongs to. */
  s1PermsPriv = 0;
  s1PermsUser = 0;
  /** Leaf lookup levels (stage 1 or the only stage; stage 2). */
  level = 0;
  s2Level = 0;
  /** Attributes for PAR: MAIR attribute byte, shareability, non-secure. */
  attr = 0;
  sh = 0;
  ns = false;
  next: TlbEntry | null = null;
}

export type TlbSetKind = 'stage1' | 'stage2' | 'nested';

/** The entries of one (namespace, ASID) tag. */
export class TlbSet {
  /** Distinct block sizes present, probed in order on lookup. */
  readonly sizes: number[] = [];
  readonly buckets = new Map<number, TlbEntry>();
  count = 0;

  /** The namespace (Tlb.namespace) the maintenance operations match against. */
  readonly ns: number;

  constructor(
    readonly tag: string,
    readonly kind: TlbSetKind,
    /** VMID the entries were made under (also for bank-private namespaces, for TLBIVMID). */
    readonly vmid: number,
    /** Bank index for a private (ASIDPNE) namespace, -1 for a VMID namespace. */
    readonly privateCb: number,
    /** ASID, or -1 for stage 2 only and for the global set. */
    readonly asid: number,
    readonly global: boolean,
  ) {
    this.ns = Tlb.namespace(vmid, privateCb);
  }

  lookup(addr: number): TlbEntry | null {
    const sizes = this.sizes;
    const buckets = this.buckets;
    for (let s = 0; s < sizes.length; s++) {
      const size = sizes[s];
      const bn = Math.floor(addr / size);
      let e: TlbEntry | null | undefined = buckets.get((bn % 0x1000_0000) * 4 + (s & 3));
      while (e) {
        if (e.blockNumber === bn && e.blockSize === size) return e;
        e = e.next;
      }
    }
    return null;
  }

  /** Insert `e` (its blockNumber/blockSize set); replaces an entry for the same block. */
  insert(e: TlbEntry): void {
    let s = this.sizes.indexOf(e.blockSize);
    if (s < 0) {
      this.sizes.push(e.blockSize);
      this.sizes.sort((a, b) => a - b);
      this.rekey();
      s = this.sizes.indexOf(e.blockSize);
    }
    this.removeBlock(e.blockNumber, s);
    const key = bucketKey(e.blockNumber, s);
    e.next = this.buckets.get(key) ?? null;
    this.buckets.set(key, e);
    this.count++;
  }

  /** Remove every entry whose block contains `addr`; returns how many. */
  invalidateAddr(addr: number): number {
    let n = 0;
    for (let s = 0; s < this.sizes.length; s++) n += this.removeBlock(Math.floor(addr / this.sizes[s]), s);
    return n;
  }

  /** Remove every entry for which `pred` holds; returns how many. */
  invalidateWhere(pred: (e: TlbEntry) => boolean): number {
    let n = 0;
    for (const [key, head] of [...this.buckets]) {
      let keep: TlbEntry | null = null;
      let e: TlbEntry | null = head;
      while (e) {
        const next: TlbEntry | null = e.next;
        if (pred(e)) n++;
        else {
          e.next = keep;
          keep = e;
        }
        e = next;
      }
      if (keep) this.buckets.set(key, keep);
      else this.buckets.delete(key);
    }
    this.count -= n;
    return n;
  }

  clear(): number {
    const n = this.count;
    this.buckets.clear();
    this.sizes.length = 0;
    this.count = 0;
    return n;
  }

  private removeBlock(bn: number, slot: number): number {
    const size = this.sizes[slot];
    const key = bucketKey(bn, slot);
    let e = this.buckets.get(key) ?? null;
    let prev: TlbEntry | null = null;
    let n = 0;
    while (e) {
      const next: TlbEntry | null = e.next;
      if (e.blockNumber === bn && e.blockSize === size) {
        if (prev) prev.next = next;
        else if (next) this.buckets.set(key, next);
        else this.buckets.delete(key);
        n++;
      } else {
        prev = e;
      }
      e = next;
    }
    this.count -= n;
    return n;
  }

  /** The slot of each size changed: rebuild the buckets under their new keys. */
  private rekey(): void {
    const all: TlbEntry[] = [];
    for (const head of this.buckets.values()) {
      for (let e: TlbEntry | null = head; e; e = e.next) all.push(e);
    }
    this.buckets.clear();
    for (const e of all) {
      const key = bucketKey(e.blockNumber, this.sizes.indexOf(e.blockSize));
      e.next = this.buckets.get(key) ?? null;
      this.buckets.set(key, e);
    }
  }
}

function bucketKey(blockNumber: number, slot: number): number {
  return (blockNumber % 0x1000_0000) * 4 + (slot & 3);
}

export type TlbiOp = 'va' | 'vaa' | 'asid' | 'namespace' | 'ipa' | 'vmid' | 'all';

/**
 * A TLB maintenance operation waiting for the sync that completes it. One shape for every kind, so a
 * batch can reuse its operations once applied. The fields an operation uses:
 * - `va`: namespace, ASID, address; `vaa`: namespace, address; `asid`: namespace, ASID;
 * - `namespace`: namespace; `ipa`: VMID, address; `vmid`: VMID; `all`: none.
 */
export class PendingTlbi {
  op: TlbiOp = 'all';
  namespace = 0;
  asid = 0;
  addr = 0;
  vmid = 0;

  set(op: TlbiOp, namespace: number, asid: number, addr: number, vmid: number): void {
    this.op = op;
    this.namespace = namespace;
    this.asid = asid;
    this.addr = addr;
    this.vmid = vmid;
  }
}

/**
 * The operations written to one register space (a bank, or GR0) before its next sync, in order. A
 * sync takes the batch and completes it later; applied batches and their operations are reused, so
 * a TLBI then TLBSYNC allocates nothing once the pool holds what the traffic needs.
 */
export class TlbiBatch {
  private readonly ops: PendingTlbi[] = [];
  length = 0;

  /** The next operation slot (fill it with `set`). */
  add(): PendingTlbi {
    let op = this.ops[this.length];
    if (op === undefined) this.ops.push((op = new PendingTlbi()));
    this.length++;
    return op;
  }

  /** Apply the operations in the order written, then empty the batch. */
  applyTo(tlb: Tlb): void {
    const ops = this.ops;
    for (let i = 0; i < this.length; i++) tlb.apply(ops[i]);
    this.length = 0;
  }
}

const FLUSH_ALL = new PendingTlbi();

export interface TlbStats {
  hits: number;
  misses: number;
  inserts: number;
  invalidated: number;
  flushesForCapacity: number;
}

export class Tlb {
  private readonly sets = new Map<string, TlbSet>();
  /** The same sets in creation order, for maintenance to walk without an iterator. */
  private readonly setList: TlbSet[] = [];
  private total = 0;
  readonly stats: TlbStats = { hits: 0, misses: 0, inserts: 0, invalidated: 0, flushesForCapacity: 0 };

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`TLB capacity must be a positive integer, got ${capacity}`);
  }

  /**
   * Namespace of a VMID (the VMID, >= 0) or of a bank-private ASID space (-1 - bank): a number, so a
   * maintenance operation neither builds nor compares strings.
   */
  static namespace(vmid: number, privateCb: number): number {
    return privateCb >= 0 ? -1 - privateCb : vmid;
  }

  /** The namespace's name in tags: `vmid<n>` or `cb<n>`. */
  static namespaceName(ns: number): string {
    return ns < 0 ? `cb${-1 - ns}` : `vmid${ns}`;
  }

  /** The set for a tag, created on first use (configuration decode time, not the hot path). */
  set(kind: TlbSetKind, vmid: number, privateCb: number, asid: number, global: boolean): TlbSet {
    const ns = Tlb.namespaceName(Tlb.namespace(vmid, privateCb));
    const tag = kind === 'stage2' ? `${ns}/s2` : global ? `${ns}/${kind}/g` : `${ns}/${kind}/asid${asid}`;
    let s = this.sets.get(tag);
    if (!s) {
      s = new TlbSet(tag, kind, vmid, privateCb, kind === 'stage2' || global ? -1 : asid, global);
      this.sets.set(tag, s);
      this.setList.push(s);
    }
    return s;
  }

  get size(): number {
    return this.total;
  }

  insert(set: TlbSet, e: TlbEntry): void {
    if (this.total >= this.capacity) {
      this.stats.flushesForCapacity++;
      this.flushAll();
    }
    const before = set.count;
    set.insert(e);
    this.total += set.count - before;
    this.stats.inserts++;
  }

  /** Apply one completed maintenance operation. */
  apply(op: PendingTlbi): number {
    // Nothing cached, nothing to remove (a strict unmap's TLBI usually finds an empty TLB).
    if (this.total === 0) return 0;
    let n = 0;
    const sets = this.setList;
    for (let i = 0; i < sets.length; i++) {
      const s = sets[i];
      if (s.count === 0) continue;
      const ns = s.ns;
      switch (op.op) {
        case 'va':
          if (ns === op.namespace && s.kind !== 'stage2' && (s.global || s.asid === op.asid)) n += s.invalidateAddr(op.addr);
          break;
        case 'vaa':
          if (ns === op.namespace && s.kind !== 'stage2') n += s.invalidateAddr(op.addr);
          break;
        case 'asid':
          if (ns === op.namespace && s.kind !== 'stage2' && !s.global && s.asid === op.asid) n += s.clear();
          break;
        case 'namespace':
          if (ns === op.namespace) n += s.clear();
          break;
        case 'ipa':
          if (s.vmid !== op.vmid) break;
          if (s.kind === 'stage2') n += s.invalidateAddr(op.addr);
          else if (s.kind === 'nested') n += s.invalidateWhere((e) => op.addr >= e.s2Base && op.addr < e.s2Base + e.s2Size);
          break;
        case 'vmid':
          if (s.vmid === op.vmid) n += s.clear();
          break;
        case 'all':
          n += s.clear();
          break;
      }
    }
    this.total -= n;
    this.stats.invalidated += n;
    return n;
  }

  flushAll(): void {
    this.apply(FLUSH_ALL);
  }
}
