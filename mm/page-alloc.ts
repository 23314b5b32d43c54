/**
 * The page allocator: a binary buddy allocator over the RAM firmware describes, in orders 0..9
 * (4 KiB … 2 MiB, naturally aligned and physically contiguous), with an owner tag on every frame.
 *
 * Why owners: a stray DMA write is detected by asking, for every write that lands in RAM, who owns
 * the frame (`ownerOf`), and after a kexec the new kernel's allocator starts over (a new
 * `kernelInstance`) without knowing what the old one handed out, exactly as a real kernel does.
 *
 * Reserved ranges (the DTB memory reservation map, /reserved-memory) are never handed out; a frame
 * a reservation only partly covers is excluded too. Frames outside RAM have no owner (`null`).
 *
 * Frame metadata is kept per 2 MiB block (one max-order block), created only for blocks that are
 * split, partly RAM or partly reserved, so a large sparse machine costs only what it uses. Whole
 * max-order blocks that were never split are handed out from "pristine" spans, so a machine with a
 * lot of RAM does not pay for a free list entry per block up front.
 */
import { KernelError } from '../bus/errno.js';
import type { RamAccess } from '../hw/cpu-port.js';

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
/** Largest order: 2^9 pages = 2 MiB. */
export const MAX_ORDER = 9;

const BLOCK_FRAMES = 1 << MAX_ORDER;

/** Who a frame belongs to. `reserved` and `free` are states the allocator reports, never requests. */
export type FrameOwner =
  | { readonly kind: 'kernel'; readonly what: string }
  | { readonly kind: 'dma'; readonly device: string; readonly what?: string }
  | { readonly kind: 'process'; readonly pid: number; readonly va?: number }
  | { readonly kind: 'page-table'; readonly what: string }
  | { readonly kind: 'reserved'; readonly name: string }
  | { readonly kind: 'free' };

/** Owners a caller may allocate for. */
export type AllocOwner = Exclude<FrameOwner, { kind: 'reserved' | 'free' }>;

export type FrameOwnerKind = FrameOwner['kind'];

/** What `ownerOf` answers: the owner and which kernel's allocator says so. */
export interface FrameOwnership {
  readonly owner: FrameOwner;
  readonly kernelInstance: number;
}

/** One live allocation: `2^order` frames from `pa`. */
export class Allocation implements FrameOwnership {
  /** @internal Its index in the allocator's live list, -1 once freed. */
  liveSlot = -1;

  constructor(
    readonly pa: number,
    readonly order: number,
    readonly owner: AllocOwner,
    readonly kernelInstance: number,
  ) {}

  get size(): number {
    return PAGE_SIZE * 2 ** this.order;
  }
}

/** One reserved range as firmware named it (clipped to RAM, widened to whole frames). */
export class Reservation implements FrameOwnership {
  readonly owner: FrameOwner;
  constructor(
    readonly name: string,
    readonly base: number,
    readonly size: number,
    readonly kernelInstance: number,
  ) {
    this.owner = Object.freeze({ kind: 'reserved', name });
  }
}

export interface MemoryRange {
  readonly base: number;
  readonly size: number;
}

export interface ReservedRange extends MemoryRange {
  readonly name: string;
}

export interface PageAllocatorOptions {
  /** RAM regions from firmware (/memory reg, UEFI map). Overlapping or adjacent ones are merged. */
  readonly memory: readonly MemoryRange[];
  /** Ranges never handed out: /memreserve/ entries and /reserved-memory nodes. */
  readonly reserved?: readonly ReservedRange[];
  /** Which kernel booted this allocator; a kexec'd kernel gets a new number. */
  readonly kernelInstance: number;
  /** Needed for `{ zero: true }` allocations. */
  readonly ram?: RamAccess;
}

export interface AllocOptions {
  /** Zero the pages through the CPU before returning them. */
  readonly zero?: boolean;
}

export interface OwnerUsage {
  /** `describeOwner` of the owner (process pages grouped per pid). */
  readonly owner: string;
  readonly kind: FrameOwnerKind;
  readonly bytes: number;
  readonly allocations: number;
}

export interface MemoryUsage {
  readonly kernelInstance: number;
  /** RAM the allocator manages, reserved frames included. */
  readonly totalBytes: number;
  readonly reservedBytes: number;
  readonly allocatedBytes: number;
  readonly freeBytes: number;
  /** Allocated bytes per owner kind (kinds with nothing allocated are absent). */
  readonly byKind: Readonly<Partial<Record<FrameOwnerKind, number>>>;
  /** Allocated bytes per owner, largest first. */
  readonly byOwner: readonly OwnerUsage[];
  readonly reserved: readonly { readonly name: string; readonly base: number; readonly size: number }[];
}

/** A short label for an owner, as reports print it. */
export function describeOwner(owner: FrameOwner): string {
  switch (owner.kind) {
    case 'kernel':
      return `kernel:${owner.what}`;
    case 'dma':
      return owner.what === undefined ? `dma:${owner.device}` : `dma:${owner.device}:${owner.what}`;
    case 'process':
      return `process:${owner.pid}`;
    case 'page-table':
      return `page-table:${owner.what}`;
    case 'reserved':
      return `reserved:${owner.name}`;
    case 'free':
      return 'free';
  }
}

/**
 * True if `owner` is what `by` names: same kind, and every field `by` sets is equal. So
 * `{kind:'process', pid: 7}` matches any page of pid 7 whatever its `va`.
 */
export function ownerMatches(owner: FrameOwner, by: FrameOwner): boolean {
  if (owner.kind !== by.kind) return false;
  const o = owner as unknown as Record<string, unknown>;
  const b = by as unknown as Record<string, unknown>;
  // (for-in over the own keys: Object.entries would allocate a pair per field on every free)
  for (const key in b) {
    if (!Object.prototype.hasOwnProperty.call(b, key)) continue;
    const value = b[key];
    if (value !== undefined && o[key] !== value) return false;
  }
  return true;
}

/** The order whose allocation holds `size` bytes. */
// kernel: get_order() [getorder.h]
export function orderForSize(size: number): number {
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new KernelError('EINVAL', `get_order: size ${size} is not a positive integer`);
  }
  let order = 0;
  while (PAGE_SIZE * 2 ** order < size) order++;
  return order;
}

/** " by <owner>" for an error of freePages (built only when one is thrown). */
function freedBy(by: FrameOwner | undefined): string {
  return by === undefined ? '' : ` by ${describeOwner(by)}`;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/**
 * One order's free blocks: a stack plus an index, so push, pop and removing a buddy are O(1). A block
 * taken off the list keeps its index entry as a tombstone (-1) rather than being deleted: the same
 * blocks come and go all the time, and deleting would shrink and regrow the index's hash table with
 * each burst. The index is rebuilt when tombstones outnumber the free blocks.
 */
class FreeArea {
  private readonly heads: number[] = [];
  private slot = new Map<number, number>();
  private tombstones = 0;

  get count(): number {
    return this.heads.length;
  }

  push(pfn: number): void {
    if (this.slot.get(pfn) === -1) this.tombstones--;
    this.slot.set(pfn, this.heads.length);
    this.heads.push(pfn);
  }

  pop(): number {
    const pfn = this.heads.pop()!;
    this.forget(pfn);
    return pfn;
  }

  /** Take `pfn` off the list if it is there. */
  remove(pfn: number): boolean {
    const i = this.slot.get(pfn);
    if (i === undefined || i < 0) return false;
    const last = this.heads.pop()!;
    if (last !== pfn) {
      this.heads[i] = last;
      this.slot.set(last, i);
    }
    this.forget(pfn);
    return true;
  }

  private forget(pfn: number): void {
    this.slot.set(pfn, -1);
    if (++this.tombstones > 2 * this.heads.length + 64) {
      const slot = new Map<number, number>();
      for (let i = 0; i < this.heads.length; i++) slot.set(this.heads[i], i);
      this.slot = slot;
      this.tombstones = 0;
    }
  }
}

/** A run of never-split max-order blocks, consumed from the bottom. */
interface PristineSpan {
  next: number;
  readonly end: number;
}

/** Per-block metadata: one record for the whole block, or one per frame (null: not RAM). */
type BlockEntry = FrameOwnership | (FrameOwnership | null)[];

interface SmallBlock {
  readonly pfn: number;
  readonly order: number;
}

interface PfnRange {
  start: number;
  end: number;
}

const FREE_OWNER: FrameOwner = Object.freeze({ kind: 'free' });

export class PageAllocator {
  readonly kernelInstance: number;
  private readonly ram: RamAccess | null;
  /** Merged RAM regions in whole frames, ascending. */
  private readonly regions: PfnRange[] = [];
  private readonly reservations: Reservation[] = [];
  private readonly areas: FreeArea[] = [];
  private readonly pristine: PristineSpan[] = [];
  private pristineIndex = 0;
  /** Missing block: wholly free RAM, or wholly outside RAM. */
  private readonly blocks = new Map<number, BlockEntry>();
  /**
   * Live allocations, unordered (each knows its index; a free moves the last one into its place):
   * a Set here would grow and shrink its hash table as pages come and go with every burst of faults.
   */
  private readonly live: Allocation[] = [];
  private readonly freeOwnership: FrameOwnership;
  private readonly framesByKind = new Map<FrameOwnerKind, number>();
  private totalFrames = 0;
  private reservedFrames = 0;
  private allocatedFrames = 0;

  constructor(options: PageAllocatorOptions) {
    const { kernelInstance } = options;
    if (!Number.isSafeInteger(kernelInstance) || kernelInstance < 0) {
      throw new KernelError('EINVAL', `page allocator: kernel instance ${kernelInstance} is not a non-negative integer`);
    }
    this.kernelInstance = kernelInstance;
    this.ram = options.ram ?? null;
    this.freeOwnership = Object.freeze({ owner: FREE_OWNER, kernelInstance });
    for (let o = 0; o <= MAX_ORDER; o++) this.areas.push(new FreeArea());

    this.buildRegions(options.memory);
    const reserved = this.buildReservations(options.reserved ?? []);
    const small: SmallBlock[] = [];
    for (const region of this.regions) this.seedRegion(region, reserved, small);
    // Pushed highest first so the lowest addresses are popped first: allocations start at the bottom.
    for (let i = small.length - 1; i >= 0; i--) this.areas[small[i].order].push(small[i].pfn);
  }

  // ---- construction ------------------------------------------------------------------------

  private buildRegions(memory: readonly MemoryRange[]): void {
    const ranges: PfnRange[] = [];
    for (const [i, m] of memory.entries()) {
      checkRange(`memory region ${i}`, m.base, m.size);
      if (m.size === 0) continue;
      // A partial frame at either end is not usable.
      const start = Math.ceil(m.base / PAGE_SIZE);
      const end = Math.floor((m.base + m.size) / PAGE_SIZE);
      if (end > start) ranges.push({ start, end });
    }
    ranges.sort((a, b) => a.start - b.start);
    // (kernel: memblock_add() merges overlapping and adjacent regions.)
    for (const r of ranges) {
      const last = this.regions[this.regions.length - 1];
      if (last && r.start <= last.end) last.end = Math.max(last.end, r.end);
      else this.regions.push({ ...r });
    }
    for (const r of this.regions) {
      this.totalFrames += r.end - r.start;
      // Blocks RAM only partly covers get per-frame metadata so the rest reads as "not RAM".
      const firstBlock = Math.floor(r.start / BLOCK_FRAMES);
      const lastBlock = Math.floor((r.end - 1) / BLOCK_FRAMES);
      if (r.start % BLOCK_FRAMES !== 0 && !this.blocks.has(firstBlock)) {
        this.blocks.set(firstBlock, new Array<FrameOwnership | null>(BLOCK_FRAMES).fill(null));
      }
      if (r.end % BLOCK_FRAMES !== 0 && !this.blocks.has(lastBlock)) {
        this.blocks.set(lastBlock, new Array<FrameOwnership | null>(BLOCK_FRAMES).fill(null));
      }
    }
    for (const r of this.regions) {
      const firstBlock = Math.floor(r.start / BLOCK_FRAMES);
      const lastBlock = Math.floor((r.end - 1) / BLOCK_FRAMES);
      for (const b of firstBlock === lastBlock ? [firstBlock] : [firstBlock, lastBlock]) {
        const entry = this.blocks.get(b);
        if (!Array.isArray(entry)) continue;
        const from = Math.max(r.start, b * BLOCK_FRAMES);
        const to = Math.min(r.end, (b + 1) * BLOCK_FRAMES);
        entry.fill(this.freeOwnership, from - b * BLOCK_FRAMES, to - b * BLOCK_FRAMES);
      }
    }
  }

  /** Reservations in frames, clipped to RAM, merged; records their owners. */
  private buildReservations(reserved: readonly ReservedRange[]): PfnRange[] {
    const out: PfnRange[] = [];
    for (const [i, r] of reserved.entries()) {
      checkRange(`reserved range ${i} (${r.name})`, r.base, r.size);
      if (r.size === 0) continue;
      // Partly covered frames are excluded as a whole.
      const start = Math.floor(r.base / PAGE_SIZE);
      const end = Math.ceil((r.base + r.size) / PAGE_SIZE);
      let inRam = false;
      for (const region of this.regions) {
        const s = Math.max(start, region.start);
        const e = Math.min(end, region.end);
        if (s >= e) continue;
        inRam = true;
        out.push({ start: s, end: e });
      }
      if (!inRam) continue;
      const rec = new Reservation(r.name, start * PAGE_SIZE, (end - start) * PAGE_SIZE, this.kernelInstance);
      this.reservations.push(rec);
      for (const region of this.regions) {
        const s = Math.max(start, region.start);
        const e = Math.min(end, region.end);
        if (s < e) this.mark(s, e, rec);
      }
    }
    out.sort((a, b) => a.start - b.start);
    const merged: PfnRange[] = [];
    for (const r of out) {
      const last = merged[merged.length - 1];
      if (last && r.start <= last.end) last.end = Math.max(last.end, r.end);
      else merged.push({ ...r });
    }
    for (const r of merged) this.reservedFrames += r.end - r.start;
    return merged;
  }

  /** Put the free parts of a region into the buddy lists and pristine spans. */
  private seedRegion(region: PfnRange, reserved: readonly PfnRange[], small: SmallBlock[]): void {
    let cursor = region.start;
    const holes = reserved.filter((r) => r.end > region.start && r.start < region.end);
    for (const hole of [...holes, { start: region.end, end: region.end }]) {
      if (hole.start > cursor) this.seedRange(cursor, Math.min(hole.start, region.end), small);
      cursor = Math.max(cursor, hole.end);
    }
  }

  /** Split [start, end) into aligned blocks: max-order runs become pristine spans, the rest `small`. */
  private seedRange(start: number, end: number, small: SmallBlock[]): void {
    let pfn = start;
    while (pfn < end) {
      let order = 0;
      while (order < MAX_ORDER && pfn % 2 ** (order + 1) === 0 && pfn + 2 ** (order + 1) <= end) order++;
      if (order === MAX_ORDER) {
        const runEnd = pfn + Math.floor((end - pfn) / BLOCK_FRAMES) * BLOCK_FRAMES;
        this.pristine.push({ next: pfn, end: runEnd });
        pfn = runEnd;
      } else {
        small.push({ pfn, order });
        pfn += 2 ** order;
      }
    }
  }

  // ---- frame metadata ------------------------------------------------------------------------

  /** Set the owner record of frames [start, end). `free` clears whole blocks back to "no entry". */
  private mark(start: number, end: number, rec: FrameOwnership): void {
    let pfn = start;
    while (pfn < end) {
      const block = Math.floor(pfn / BLOCK_FRAMES);
      const blockStart = block * BLOCK_FRAMES;
      const to = Math.min(end, blockStart + BLOCK_FRAMES);
      if (pfn === blockStart && to === blockStart + BLOCK_FRAMES) {
        if (rec === this.freeOwnership) this.blocks.delete(block);
        else this.blocks.set(block, rec);
      } else {
        let entry = this.blocks.get(block);
        if (entry === undefined) {
          entry = new Array<FrameOwnership | null>(BLOCK_FRAMES).fill(this.freeOwnership);
          this.blocks.set(block, entry);
        } else if (!Array.isArray(entry)) {
          entry = new Array<FrameOwnership | null>(BLOCK_FRAMES).fill(entry);
          this.blocks.set(block, entry);
        }
        const from = pfn - blockStart;
        const until = to - blockStart;
        // A few frames (an order-0 page, most often) by plain stores: Array.prototype.fill's call and
        // range handling cost more than the stores themselves.
        if (until - from <= 16) for (let i = from; i < until; i++) entry[i] = rec;
        else entry.fill(rec, from, until);
      }
      pfn = to;
    }
  }

  private blockInRam(block: number): boolean {
    const pfn = block * BLOCK_FRAMES;
    for (const r of this.regions) if (pfn >= r.start && pfn < r.end) return true;
    return false;
  }

  /**
   * Who owns the frame holding `pa`, and which kernel instance says so; `null` outside RAM.
   * Allocation-free: called for every DMA write by the stray detector.
   */
  ownerOf(pa: number): FrameOwnership | null {
    if (!(pa >= 0) || pa > Number.MAX_SAFE_INTEGER) return null;
    const pfn = Math.floor(pa / PAGE_SIZE);
    const block = Math.floor(pfn / BLOCK_FRAMES);
    const entry = this.blocks.get(block);
    if (entry === undefined) return this.blockInRam(block) ? this.freeOwnership : null;
    if (Array.isArray(entry)) return entry[pfn - block * BLOCK_FRAMES];
    return entry;
  }

  /** The live allocation containing `pa`, or null. */
  allocationAt(pa: number): Allocation | null {
    const own = this.ownerOf(pa);
    return own instanceof Allocation ? own : null;
  }

  // ---- allocation ----------------------------------------------------------------------------

  /**
   * Allocate `2^order` contiguous frames, aligned to their size, for `owner`. Returns the physical
   * address. ENOMEM when no block is free, EINVAL for a bad order or owner.
   */
  // kernel: alloc_pages() [gfp.h]
  allocPages(order: number, owner: AllocOwner, options?: AllocOptions): number {
    checkOrder('allocPages', order);
    checkOwner(owner);
    if (options?.zero && !this.ram) {
      throw new KernelError('EINVAL', `allocPages: zeroing requested for ${describeOwner(owner)} but the allocator has no RAM access`);
    }
    let have = order;
    let pfn = -1;
    for (; have <= MAX_ORDER; have++) {
      const area = this.areas[have];
      if (area.count > 0) {
        pfn = area.pop();
        break;
      }
    }
    if (pfn < 0) {
      pfn = this.takePristine();
      have = MAX_ORDER;
      if (pfn < 0) {
        throw new KernelError(
          'ENOMEM',
          `out of memory: no free block of order ${order} (${PAGE_SIZE * 2 ** order} bytes) for ${describeOwner(owner)}; ` +
            `${this.freeBytes} bytes free in smaller blocks (kernel instance ${this.kernelInstance})`,
        );
      }
    }
    // (kernel: expand(): hand the upper halves back, one per order.)
    while (have > order) {
      have--;
      this.areas[have].push(pfn + 2 ** have);
    }
    const pa = pfn * PAGE_SIZE;
    if (options?.zero) {
      try {
        this.ram!.fill(pa, PAGE_SIZE * 2 ** order, 0);
      } catch (e) {
        this.releaseBlock(pfn, order);
        throw e;
      }
    }
    const a = new Allocation(pa, order, owner, this.kernelInstance);
    this.mark(pfn, pfn + 2 ** order, a);
    a.liveSlot = this.live.length;
    this.live.push(a);
    const frames = 2 ** order;
    this.allocatedFrames += frames;
    this.framesByKind.set(owner.kind, (this.framesByKind.get(owner.kind) ?? 0) + frames);
    return pa;
  }

  private takePristine(): number {
    while (this.pristineIndex < this.pristine.length) {
      const span = this.pristine[this.pristineIndex];
      if (span.next < span.end) {
        const pfn = span.next;
        span.next += BLOCK_FRAMES;
        return pfn;
      }
      this.pristineIndex++;
    }
    return -1;
  }

  /**
   * Free the allocation whose first frame is `pa`. `order`, if given, must be the allocation's;
   * `by`, if given, must match its owner (see `ownerMatches`). Freeing anything else (a free frame,
   * a reserved one, the middle of an allocation, another owner's pages) is EINVAL.
   */
  // kernel: __free_pages() [page_alloc.c]
  freePages(pa: number, order?: number, by?: FrameOwner): void {
    if (!Number.isSafeInteger(pa) || pa % PAGE_SIZE !== 0) {
      throw new KernelError('EINVAL', `freePages: ${pa} is not a page-aligned physical address`);
    }
    if (order !== undefined) checkOrder('freePages', order);
    const own = this.ownerOf(pa);
    if (own === null) throw new KernelError('EINVAL', `freePages(${hex(pa)})${freedBy(by)}: not RAM this allocator manages`);
    if (own instanceof Reservation) {
      throw new KernelError('EINVAL', `freePages(${hex(pa)})${freedBy(by)}: frame is reserved (${own.name}), never allocated`);
    }
    if (!(own instanceof Allocation)) {
      throw new KernelError('EINVAL', `freePages(${hex(pa)})${freedBy(by)}: frame is not allocated (double free?)`);
    }
    if (own.pa !== pa) {
      throw new KernelError(
        'EINVAL',
        `freePages(${hex(pa)})${freedBy(by)}: foreign free: not the head of an allocation; it lies inside the order-${own.order} ` +
          `allocation at ${hex(own.pa)} owned by ${describeOwner(own.owner)}`,
      );
    }
    if (order !== undefined && order !== own.order) {
      throw new KernelError(
        'EINVAL',
        `freePages(${hex(pa)})${freedBy(by)}: order ${order} does not match the allocation's order ${own.order} (${describeOwner(own.owner)})`,
      );
    }
    if (by !== undefined && !ownerMatches(own.owner, by)) {
      throw new KernelError('EINVAL', `freePages(${hex(pa)}): foreign free: owned by ${describeOwner(own.owner)}, freed by ${describeOwner(by)}`);
    }
    const pfn = pa / PAGE_SIZE;
    const frames = 2 ** own.order;
    this.mark(pfn, pfn + frames, this.freeOwnership);
    this.forgetLive(own);
    this.allocatedFrames -= frames;
    const left = (this.framesByKind.get(own.owner.kind) ?? 0) - frames;
    if (left > 0) this.framesByKind.set(own.owner.kind, left);
    else this.framesByKind.delete(own.owner.kind);
    this.releaseBlock(pfn, own.order);
  }

  private forgetLive(a: Allocation): void {
    const live = this.live;
    const i = a.liveSlot;
    const last = live.pop()!;
    if (last !== a) {
      live[i] = last;
      last.liveSlot = i;
    }
    a.liveSlot = -1;
  }

  /** Return a block to the free lists, merging with free buddies. */
  // kernel: __free_one_page() [page_alloc.c]
  private releaseBlock(pfn: number, order: number): void {
    while (order < MAX_ORDER) {
      const size = 2 ** order;
      const buddy = Math.floor(pfn / size) % 2 === 0 ? pfn + size : pfn - size;
      if (!this.areas[order].remove(buddy)) break;
      pfn = Math.min(pfn, buddy);
      order++;
    }
    this.areas[order].push(pfn);
  }

  // ---- reports -------------------------------------------------------------------------------

  get freeBytes(): number {
    return (this.totalFrames - this.reservedFrames - this.allocatedFrames) * PAGE_SIZE;
  }

  /** Live allocations, lowest address first. */
  allocations(): Allocation[] {
    return [...this.live].sort((a, b) => a.pa - b.pa);
  }

  /** Bytes by owner kind and by owner. */
  usage(): MemoryUsage {
    const byKind: Partial<Record<FrameOwnerKind, number>> = {};
    for (const [kind, frames] of this.framesByKind) byKind[kind] = frames * PAGE_SIZE;
    const owners = new Map<string, { owner: string; kind: FrameOwnerKind; bytes: number; allocations: number }>();
    for (const a of this.live) {
      const label = describeOwner(a.owner);
      let u = owners.get(label);
      if (!u) {
        u = { owner: label, kind: a.owner.kind, bytes: 0, allocations: 0 };
        owners.set(label, u);
      }
      u.bytes += a.size;
      u.allocations++;
    }
    const byOwner = [...owners.values()].sort((x, y) => y.bytes - x.bytes || (x.owner < y.owner ? -1 : x.owner > y.owner ? 1 : 0));
    return {
      kernelInstance: this.kernelInstance,
      totalBytes: this.totalFrames * PAGE_SIZE,
      reservedBytes: this.reservedFrames * PAGE_SIZE,
      allocatedBytes: this.allocatedFrames * PAGE_SIZE,
      freeBytes: this.freeBytes,
      byKind,
      byOwner,
      reserved: this.reservations.map((r) => ({ name: r.name, base: r.base, size: r.size })),
    };
  }
}

function checkRange(what: string, base: number, size: number): void {
  if (!Number.isSafeInteger(base) || base < 0 || !Number.isSafeInteger(size) || size < 0 || !Number.isSafeInteger(base + size)) {
    throw new KernelError('EINVAL', `page allocator: ${what} base ${base} size ${size} is not a valid physical range`);
  }
}

function checkOrder(fn: string, order: number): void {
  if (!Number.isInteger(order) || order < 0 || order > MAX_ORDER) {
    throw new KernelError('EINVAL', `${fn}: order ${order} is outside 0..${MAX_ORDER} (4 KiB … 2 MiB)`);
  }
}

function checkOwner(owner: AllocOwner): void {
  const o = owner as FrameOwner | null | undefined;
  switch (o?.kind) {
    case 'kernel':
    case 'page-table':
      if (typeof o.what === 'string') return;
      break;
    case 'dma':
      if (typeof o.device === 'string') return;
      break;
    case 'process':
      if (Number.isInteger(o.pid)) return;
      break;
    case 'reserved':
    case 'free':
      throw new KernelError('EINVAL', `allocPages: owner kind '${o.kind}' is a frame state, not an owner one can allocate for`);
  }
  throw new KernelError('EINVAL', `allocPages: malformed owner ${JSON.stringify(owner)}`);
}
