/**
 * Mapping and unmapping through a paging domain (kernel: iommu_map(), iommu_unmap(),
 * iommu_unmap_fast(), iommu_iotlb_sync(), iommu_map_sg() in iommu.c).
 *
 * A range is cut into runs of one page size, each handed to the driver's `mapPages` / `unmapPages`:
 * the largest supported size no bigger than what is left and no bigger than the alignment of both
 * iova and paddr; a run stops early where the next larger size becomes usable. Page-table updates
 * are synchronous; making them visible to the hardware (`iotlbSyncMap`, `iotlbSync`) is awaited.
 *
 * Addresses are JS numbers (exact to 2^53), so page sizes above 2^31 are handled arithmetically.
 */
import { KernelError } from '../bus/errno.js';
import { IOMMU_GATHER_START_EMPTY, iommuIotlbGatherInit, type IommuFreedPages, type IommuIotlbGather } from './iommu-gather.js';
import { __IOMMU_DOMAIN_DMA_API, __IOMMU_DOMAIN_PAGING, iommuDomainTypeStr, type IommuDomain } from './iommu-domain.js';
import type { DomainOps, Gfp, IotlbSyncDone, MaybePromise } from './iommu-ops.js';
import { hex } from './io-pgtable.js';

// Addresses and sizes are safe integers, often above 2^32 (IOVAs, large sizes): `%` on such a number is
// a floating-point remainder, far slower than the bit operations and power-of-two divisions below,
// which are exact for every safe integer.

/** The lowest power of two dividing `x` (Infinity for 0). */
function alignmentOf(x: number): number {
  if (x === 0) return Infinity;
  // (`x >>> 0` is x mod 2^32.)
  const lo = x >>> 0;
  if (lo !== 0) return (lo & -lo) >>> 0;
  const hi = Math.floor(x / 0x1_0000_0000);
  return ((hi & -hi) >>> 0) * 0x1_0000_0000;
}

/** `x mod m` for a safe integer x ≥ 0 and a power of two m. */
function modPow2(x: number, m: number): number {
  return m <= 0x8000_0000 ? (x >>> 0) & (m - 1) : x - Math.floor(x / m) * m;
}

/**
 * True if the safe integers a, b, c ≥ 0 are all multiples of the power of two m: for m ≤ 2^31 one test
 * of their low 32 bits together (a map and an unmap check three and two values each; IOVAs above 2^31
 * are doubles, which a call per value would box).
 */
function allAligned(a: number, b: number, c: number, m: number): boolean {
  if (m <= 0x8000_0000) return (((a >>> 0) | (b >>> 0) | (c >>> 0)) & (m - 1)) === 0;
  return modPow2(a, m) === 0 && modPow2(b, m) === 0 && modPow2(c, m) === 0;
}

/** Result of `iommuPgsize`: reused, so the map loop allocates nothing. */
export interface PgsizeChoice {
  pgsize: number;
  count: number;
}

/**
 * The page size and count of the next run of [iova, iova + size) → paddr.
 * `out` is filled and returned.
 */
// kernel: iommu_pgsize() [iommu.c]
export function iommuPgsize(domain: IommuDomain, iova: number, paddr: number, size: number, out: PgsizeChoice): PgsizeChoice {
  const sizes = domain.pgsizes;
  // One page of the smallest size, both addresses aligned to it (a 4K map or unmap): what the search
  // below finds, without it.
  const min = sizes[0];
  if (size === min && allAligned(iova, paddr, 0, min)) {
    out.pgsize = min;
    out.count = 1;
    return out;
  }
  const align = Math.min(alignmentOf(iova), alignmentOf(paddr));
  let idx = sizes.length - 1;
  while (idx >= 0 && (sizes[idx] > size || sizes[idx] > align)) idx--;
  if (idx < 0) {
    throw new KernelError('EINVAL', `iommu_pgsize: no page size of ${hex(domain.pgsizeBitmap)} fits iova ${hex(iova)} pa ${hex(paddr)} size ${hex(size)}`);
  }
  const pgsize = sizes[idx];
  let runSize = size;
  const next = sizes[idx + 1];
  // A bigger page is only usable where iova and paddr have the same offset into it.
  if (next !== undefined && modPow2(iova, next) === modPow2(paddr, next)) {
    const toBoundary = next - modPow2(iova, next);
    if (toBoundary + next <= size) runSize = toBoundary;
  }
  out.pgsize = pgsize;
  out.count = Math.floor(runSize / pgsize);
  return out;
}

const choice: PgsizeChoice = { pgsize: 0, count: 0 };

function checkRange(what: string, iova: number, paddr: number, size: number): void {
  if (!Number.isSafeInteger(iova) || iova < 0 || !Number.isSafeInteger(paddr) || paddr < 0 || !Number.isSafeInteger(size) || size < 0 || !Number.isSafeInteger(iova + size)) {
    throw new KernelError('EINVAL', `${what}: bad range iova ${iova} pa ${paddr} size ${size}`);
  }
}

function mappedBy(e: unknown): number {
  const mapped = (e as { mapped?: unknown } | null)?.mapped;
  return typeof mapped === 'number' && mapped > 0 ? mapped : 0;
}

/** Bytes the last `mapRuns` call mapped (read right after it throws; it is synchronous). */
let runsMapped = 0;

/** Hand the range to the driver run by run; throws the driver's error with `runsMapped` set. */
function mapRuns(domain: IommuDomain, ops: DomainOps, iova: number, paddr: number, size: number, prot: number, gfp: Gfp): void {
  const mapPages = ops.mapPages!;
  runsMapped = 0;
  let left = size;
  while (left > 0) {
    iommuPgsize(domain, iova, paddr, left, choice);
    let mapped: number;
    try {
      mapped = mapPages.call(ops, domain, iova, paddr, choice.pgsize, choice.count, prot, gfp);
    } catch (e) {
      runsMapped += mappedBy(e);
      throw e;
    }
    if (!(mapped > 0)) throw new KernelError('EINVAL', `iommu_map: map_pages mapped nothing at ${hex(iova)} (driver bug)`);
    runsMapped += mapped;
    left -= mapped;
    iova += mapped;
    paddr += mapped;
  }
}

// ---- what a domain maps, by physical address ---------------------------------------------------

/** One range `iommuMap` mapped: [iova, iova + size) onto [pa, pa + size); size 0: unmapped since. */
interface MappedRange {
  iova: number;
  pa: number;
  size: number;
}

/**
 * The ranges of one domain, keyed by IOVA (mapped ranges never overlap in IOVA). The usual unmap is
 * exactly what one map made: its entry is left in place with size 0 and reused by the next map at that
 * IOVA, because deleting and re-adding a key costs a Map far more than the map/unmap pair it records.
 * Spent entries are swept once they outnumber the live ones.
 */
interface DomainMappings {
  readonly ranges: Map<number, MappedRange>;
  /** Entries with size 0. */
  spent: number;
  /**
   * The entry last looked up (still in `ranges` under its IOVA; null after a split or a sweep): a map
   * and its unmap find it without hashing the IOVA (a double above 2^31) twice.
   */
  last: MappedRange | null;
}

/** The entry at `iova`, if any. */
function rangeAt(m: DomainMappings, iova: number): MappedRange | undefined {
  const l = m.last;
  if (l !== null && l.iova === iova) return l;
  const r = m.ranges.get(iova);
  if (r !== undefined) m.last = r;
  return r;
}

/** Spent entries tolerated before a sweep regardless of the live count. */
const SPENT_SLACK = 64;

/**
 * The ranges mapped through `iommuMap` into domains the DMA API does not own (UNMANAGED and other
 * user paging domains; the DMA API's own mappings are in dma-debug). Kept so the lab's stray-DMA
 * monitor can ask which physical frames a master reaches: the page table answers IOVA → PA only.
 */
const userMappings = new WeakMap<IommuDomain, DomainMappings>();

/** The domain last recorded for and its ranges: a thread maps and unmaps in one domain at a time. */
let lastDomain: IommuDomain | null = null;
let lastMappings: DomainMappings | undefined;

function mappingsOf(domain: IommuDomain): DomainMappings | undefined {
  if (domain === lastDomain) return lastMappings;
  const m = userMappings.get(domain);
  if (m !== undefined) {
    lastDomain = domain;
    lastMappings = m;
  }
  return m;
}

function recordMapped(domain: IommuDomain, iova: number, pa: number, size: number): void {
  if ((domain.type & __IOMMU_DOMAIN_DMA_API) !== 0 || size === 0) return;
  let m = mappingsOf(domain);
  if (!m) userMappings.set(domain, (m = { ranges: new Map(), spent: 0, last: null }));
  const r = rangeAt(m, iova);
  if (r === undefined) {
    m.ranges.set(iova, (m.last = { iova, pa, size }));
    return;
  }
  if (r.size === 0) m.spent--;
  r.pa = pa;
  r.size = size;
}

/** Forget [iova, iova + size): ranges are trimmed or split where they overlap it. */
function recordUnmapped(domain: IommuDomain, iova: number, size: number): void {
  const m = mappingsOf(domain);
  if (!m || size === 0) return;
  const ranges = m.ranges;
  const end = iova + size;
  // The usual case: exactly what one iommuMap call mapped.
  const exact = rangeAt(m, iova);
  if (exact !== undefined && exact.size === size) {
    exact.size = 0;
    if (++m.spent > SPENT_SLACK && m.spent > ranges.size - m.spent) sweepSpent(m);
    return;
  }
  m.last = null;
  for (const r of [...ranges.values()]) {
    const rEnd = r.iova + r.size;
    if (r.size === 0 || rEnd <= iova || r.iova >= end) continue;
    ranges.delete(r.iova);
    if (r.iova < iova) ranges.set(r.iova, { iova: r.iova, pa: r.pa, size: iova - r.iova });
    if (rEnd > end) {
      // The tail's key may hold a spent entry: the new range replaces it.
      if (ranges.get(end)?.size === 0) m.spent--;
      ranges.set(end, { iova: end, pa: r.pa + (end - r.iova), size: rEnd - end });
    }
  }
}

function sweepSpent(m: DomainMappings): void {
  for (const [iova, r] of m.ranges) if (r.size === 0) m.ranges.delete(iova);
  m.spent = 0;
  m.last = null;
}

/**
 * True if `iommuMap` mapped (part of) the 4 KiB frame holding `pa` into `domain` and it is still
 * mapped. Only domains the DMA API does not own are tracked (false for the others).
 */
export function iommuDomainMapsPhys(domain: IommuDomain, pa: number): boolean {
  const m = mappingsOf(domain);
  if (!m) return false;
  const frame = Math.floor(pa / 4096) * 4096;
  for (const r of m.ranges.values()) {
    if (r.size !== 0 && r.pa < frame + 4096 && r.pa + r.size > frame) return true;
  }
  return false;
}

/**
 * Map [iova, iova + size) to paddr without making it visible yet; on failure everything this call
 * mapped is unmapped again (and invalidated). EINVAL: not a paging domain or misaligned; ENODEV: the
 * domain cannot map.
 */
// kernel: iommu_map_nosync() [iommu.c]
export async function iommuMapNosync(domain: IommuDomain, iova: number, paddr: number, size: number, prot: number, gfp: Gfp = 'GFP_KERNEL'): Promise<void> {
  const ops = checkMappable(domain, iova, paddr, size);
  try {
    mapRuns(domain, ops, iova, paddr, size, prot, gfp);
  } catch (e) {
    const done = runsMapped;
    if (done > 0) await iommuUnmap(domain, iova, done);
    throw e;
  }
  recordMapped(domain, iova, paddr, size);
}

/** Returns the domain's ops (read once per map: the getter checks each time). */
function checkMappable(domain: IommuDomain, iova: number, paddr: number, size: number): DomainOps {
  if ((domain.type & __IOMMU_DOMAIN_PAGING) === 0) {
    throw new KernelError('EINVAL', `iommu_map: cannot map in a ${iommuDomainTypeStr(domain.type)} domain`);
  }
  const ops = domain.ops;
  if (!ops.mapPages || domain.pgsizeBitmap === 0) throw new KernelError('ENODEV', 'iommu_map: the domain has no map_pages op or no page sizes');
  checkRange('iommu_map', iova, paddr, size);
  const min = domain.minPageSize;
  if (!allAligned(iova, paddr, size, min)) {
    throw new KernelError('EINVAL', `iommu_map: unaligned: iova ${hex(iova)} pa ${hex(paddr)} size ${hex(size)} min_pagesz ${hex(min)}`);
  }
  return ops;
}

// kernel: iommu_sync_map() [iommu.c]
export async function iommuSyncMap(domain: IommuDomain, iova: number, size: number): Promise<void> {
  const op = domain.ops.iotlbSyncMap;
  if (op) await op.call(domain.ops, domain, iova, size);
}

/** One settled promise for the operations that finish without waiting (no allocation per call). */
const DONE: Promise<void> = Promise.resolve();

/**
 * Map and make the mapping visible; a failed sync unmaps the range.
 * The page-table work is synchronous: a map whose driver has nothing to wait for costs no promise
 * beyond the settled one it returns (errors still arrive as rejections).
 */
// kernel: iommu_map() [iommu.c]
export function iommuMap(domain: IommuDomain, iova: number, paddr: number, size: number, prot: number, gfp: Gfp = 'GFP_KERNEL'): Promise<void> {
  let ops: DomainOps;
  try {
    ops = checkMappable(domain, iova, paddr, size);
  } catch (e) {
    return Promise.reject(e);
  }
  try {
    mapRuns(domain, ops, iova, paddr, size, prot, gfp);
  } catch (e) {
    return unmapAfterFailure(domain, iova, runsMapped, e);
  }
  recordMapped(domain, iova, paddr, size);
  const op = ops.iotlbSyncMap;
  if (!op) return DONE;
  let r: MaybePromise<void>;
  try {
    r = op.call(ops, domain, iova, size);
  } catch (e) {
    return unmapAfterFailure(domain, iova, size, e);
  }
  return r instanceof Promise ? unmapIfSyncFails(r, domain, iova, size) : DONE;
}

// (Its own function: a closure over iommuMap's parameters would allocate their context on every map.)
function unmapIfSyncFails(r: Promise<void>, domain: IommuDomain, iova: number, size: number): Promise<void> {
  return r.catch((e: unknown) => unmapAfterFailure(domain, iova, size, e));
}

/** Undo the `done` bytes a failed iommuMap mapped, then fail with its error. */
async function unmapAfterFailure(domain: IommuDomain, iova: number, done: number, e: unknown): Promise<never> {
  if (done > 0) await iommuUnmap(domain, iova, done);
  throw e;
}

// kernel: __iommu_unmap() [iommu.c]
function __iommuUnmap(domain: IommuDomain, iova: number, size: number, gather: IommuIotlbGather): number {
  if ((domain.type & __IOMMU_DOMAIN_PAGING) === 0) return 0;
  const ops = domain.ops;
  const unmapPages = ops.unmapPages;
  if (!unmapPages || domain.pgsizeBitmap === 0) return 0;
  const min = domain.minPageSize;
  if (!Number.isSafeInteger(iova) || !Number.isSafeInteger(size) || iova < 0 || size < 0 || !allAligned(iova, size, 0, min)) return 0;
  let unmapped = 0;
  const start = iova;
  while (unmapped < size) {
    iommuPgsize(domain, iova, iova, size - unmapped, choice);
    const done = unmapPages.call(ops, domain, iova, choice.pgsize, choice.count, gather);
    if (done === 0) break;
    iova += done;
    unmapped += done;
  }
  recordUnmapped(domain, start, unmapped);
  return unmapped;
}

/**
 * Unmap [iova, iova + size) and wait for the invalidation. Returns the bytes unmapped: 0 for a domain
 * that cannot unmap or a misaligned range; it stops at the first hole, and never splits a mapping
 * that `iommuMap` made as one block.
 */
// kernel: iommu_unmap() [iommu.c]
export function iommuUnmap(domain: IommuDomain, iova: number, size: number): Promise<number> {
  const gather = unmapGatherPool.pop() ?? new UnmapGather();
  iommuIotlbGatherInit(gather);
  let ops: DomainOps;
  try {
    gather.unmapped = __iommuUnmap(domain, iova, size, gather);
    ops = domain.ops;
  } catch (e) {
    unmapGatherPool.push(gather);
    return Promise.reject(e);
  }
  if (!ops.iotlbSync) {
    unmapGatherPool.push(gather);
    return Promise.resolve(gather.unmapped);
  }
  const answer = new Promise<number>(gather.capture);
  try {
    const r: unknown = ops.iotlbSync.call(ops, domain, gather, gather.done);
    if (r !== undefined) throw notAnswering(r);
  } catch (e) {
    // (Thrown before `done`: the unmap fails with what was thrown, whatever it is.)
    gather.answer(true, e);
  }
  return answer;
}

/**
 * The gather of an iommuUnmap call and the answer of its promise. Reused once the unmap is answered:
 * the driver's iotlb_sync is finished with the gather and its `done` then (IotlbSyncDone: called once).
 * `capture` and `done` are made once per gather: an unmap allocates its promise and nothing else (a
 * function per unmap, which could tell a stale call from a driver apart, costs about 2 % of a strict
 * unmap: the allocation and the first call of each new closure).
 */
class UnmapGather implements IommuIotlbGather {
  start = IOMMU_GATHER_START_EMPTY;
  end = 0;
  pgsize = 0;
  freelist: IommuFreedPages[] = [];
  queued = false;
  /** Bytes the unmap removed: what its promise resolves with. */
  unmapped = 0;
  private resolve: ((unmapped: number) => void) | null = null;
  private reject: ((e: unknown) => void) | null = null;

  /** The executor of the unmap's promise. */
  readonly capture = (resolve: (unmapped: number) => void, reject: (e: unknown) => void): void => {
    this.resolve = resolve;
    this.reject = reject;
  };

  /** The unmap's IotlbSyncDone. */
  readonly done: IotlbSyncDone = (failure) => this.answer(failure instanceof Error, failure);

  /** Answer the unmap (the first answer counts: a second call before the gather is reused does nothing). */
  answer(failed: boolean, failure: unknown): void {
    const resolve = this.resolve;
    if (resolve === null) return;
    const reject = this.reject!;
    this.resolve = this.reject = null;
    unmapGatherPool.push(this);
    if (failed) reject(failure);
    else resolve(this.unmapped);
  }
}

/** A driver's iotlb_sync returned something (a promise, as an older contract had it) instead of calling `done`. */
function notAnswering(r: unknown): KernelError {
  return new KernelError('EINVAL', `iotlb_sync returned ${r instanceof Promise ? 'a promise' : typeof r}: a driver answers through its done callback (IotlbSyncDone)`);
}

/** Gathers whose sync has finished (at most one per unmap in flight at once). */
const unmapGatherPool: UnmapGather[] = [];

/** As iommuUnmap, leaving the invalidation in `gather` for the caller's iommuIotlbSync. */
// kernel: iommu_unmap_fast() [iommu.c]
export function iommuUnmapFast(domain: IommuDomain, iova: number, size: number, gather: IommuIotlbGather): number {
  return __iommuUnmap(domain, iova, size, gather);
}

/** Invalidate what `gather` collected and wait; the gather starts over. */
// kernel: iommu_iotlb_sync() [iommu.h]
export function iommuIotlbSync(domain: IommuDomain, gather: IommuIotlbGather): Promise<void> {
  let ops: DomainOps;
  try {
    ops = domain.ops;
  } catch (e) {
    return Promise.reject(e);
  }
  const op = ops.iotlbSync;
  if (!op) {
    gatherStartOver(gather);
    return DONE;
  }
  return new Promise((resolve, reject) => {
    let answered = false;
    const r: unknown = op.call(ops, domain, gather, (failure?: unknown) => {
      // (Only the first call counts: a second must not start the caller's gather over again.)
      if (answered) return;
      answered = true;
      if (failure instanceof Error) {
        reject(failure);
        return;
      }
      gatherStartOver(gather);
      resolve();
    });
    if (r !== undefined) throw notAnswering(r);
  });
}

function gatherStartOver(gather: IommuIotlbGather): void {
  const queued = gather.queued;
  iommuIotlbGatherInit(gather);
  gather.queued = queued;
}

// kernel: iommu_flush_iotlb_all() [iommu.h]
export async function iommuFlushIotlbAll(domain: IommuDomain): Promise<void> {
  const op = domain.ops.flushIotlbAll;
  if (op) await op.call(domain.ops, domain);
}

/** A physically contiguous piece of a buffer to map. */
export interface IommuSgSegment {
  readonly pa: number;
  readonly length: number;
}

/**
 * Map the segments one after the other from `iova`, merging physically contiguous ones, then sync
 * once. Returns the bytes mapped; on failure everything is unmapped.
 */
// kernel: iommu_map_sg() [iommu.c]
export async function iommuMapSg(domain: IommuDomain, iova: number, segments: readonly IommuSgSegment[], prot: number, gfp: Gfp = 'GFP_KERNEL'): Promise<number> {
  let mapped = 0;
  let start = 0;
  let len = 0;
  try {
    for (const s of segments) {
      if (len > 0 && s.pa !== start + len) {
        await iommuMapNosync(domain, iova + mapped, start, len, prot, gfp);
        mapped += len;
        len = 0;
      }
      if (len > 0) {
        len += s.length;
      } else {
        start = s.pa;
        len = s.length;
      }
    }
    if (len > 0) {
      await iommuMapNosync(domain, iova + mapped, start, len, prot, gfp);
      mapped += len;
    }
    await iommuSyncMap(domain, iova, mapped);
  } catch (e) {
    if (mapped > 0) await iommuUnmap(domain, iova, mapped);
    throw e;
  }
  return mapped;
}
