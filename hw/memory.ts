/**
 * Sparse physical memory. RAM regions are declared up front; a 4 KiB frame is allocated the first
 * time it is touched (reads of untouched RAM return zero without allocating), so a 48-bit machine
 * costs only what it uses. An access outside every RAM region throws BusError, which the
 * interconnect turns into a bus error reported to the master (never an exception that escapes the
 * simulator).
 *
 * Addresses are JS numbers (exact below 2^53). 64-bit values are BigInt at this API's edge; hot
 * paths use `read32` on the two halves.
 */

export const FRAME_SHIFT = 12;
export const FRAME_SIZE = 1 << FRAME_SHIFT;
const FRAME_MASK = FRAME_SIZE - 1;
/** Multiplying by it divides by FRAME_SIZE exactly (a power of two), cheaper than a float division. */
const INV_FRAME_SIZE = 1 / FRAME_SIZE;
const FRAME_CACHE_SIZE = 256;
const FRAME_CACHE_MASK = FRAME_CACHE_SIZE - 1;
/** Frames dropped by a whole-frame zeroing kept for reuse (demand paging zeroes and refills pages). */
const SPARE_FRAMES = 64;

export class BusError extends Error {
  constructor(
    readonly pa: number,
    readonly len: number,
    readonly op: 'read' | 'write',
  ) {
    super(`bus error: ${op} of ${len} byte(s) at PA 0x${pa.toString(16)} hits no memory or device`);
    this.name = 'BusError';
  }
}

export interface RamRegion {
  base: number;
  size: number;
}

/** A resident frame: its bytes and views made once, so a frame switch allocates nothing. */
interface Frame {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly words: Uint32Array;
}

/** `words32` hands out host-order 32-bit views of frames: they are the little-endian words only on a little-endian host. */
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

export class PhysicalMemory {
  private readonly frames = new Map<number, Frame>();
  private readonly regions: RamRegion[] = [];
  // A direct-mapped cache of resident frames (pfn modulo its size): page-table walks and map/unmap
  // alternate between a handful of tables, which a one-entry cache would miss on every access.
  private readonly cachePfn = new Float64Array(FRAME_CACHE_SIZE).fill(-1);
  private readonly cacheFrame: (Uint8Array | null)[] = new Array<Uint8Array | null>(FRAME_CACHE_SIZE).fill(null);
  private readonly cacheView: (DataView | null)[] = new Array<DataView | null>(FRAME_CACHE_SIZE).fill(null);
  private readonly cacheWords: (Uint32Array | null)[] = new Array<Uint32Array | null>(FRAME_CACHE_SIZE).fill(null);
  private lastView: DataView | null = null;
  /**
   * Frames dropped by a whole-frame zeroing, made resident again by the next first touch (zeroed
   * then) instead of allocating a new buffer: a frame is 4 KiB of off-heap memory the GC must track.
   */
  private readonly spare: Frame[] = [];
  private static readonly ZERO = new Uint8Array(FRAME_SIZE);

  addRegion(base: number, size: number): void {
    if (base % FRAME_SIZE !== 0 || size % FRAME_SIZE !== 0 || size <= 0) {
      throw new RangeError(`RAM region 0x${base.toString(16)}+0x${size.toString(16)} is not 4 KiB aligned`);
    }
    if (base + size > Number.MAX_SAFE_INTEGER) throw new RangeError(`RAM region beyond 2^53`);
    for (const r of this.regions) {
      if (base < r.base + r.size && r.base < base + size) {
        throw new RangeError(
          `RAM region 0x${base.toString(16)}+0x${size.toString(16)} overlaps 0x${r.base.toString(16)}+0x${r.size.toString(16)}`,
        );
      }
    }
    this.regions.push({ base, size });
    this.regions.sort((a, b) => a.base - b.base);
  }

  get ramRegions(): readonly RamRegion[] {
    return this.regions;
  }

  /** True if [pa, pa+len) lies entirely inside one RAM region. */
  isRam(pa: number, len = 1): boolean {
    for (const r of this.regions) {
      if (pa >= r.base && pa + len <= r.base + r.size) return true;
    }
    return false;
  }

  /** Frames that have been touched (allocated), for accounting. */
  get residentFrames(): number {
    return this.frames.size;
  }

  /** `whole`: the caller is about to write all of the frame, so a reused spare need not be zeroed first. */
  private frameFor(pa: number, len: number, op: 'read' | 'write', create: boolean, whole = false): Uint8Array | null {
    const pfn = Math.floor(pa * INV_FRAME_SIZE);
    const slot = pfn & FRAME_CACHE_MASK;
    if (this.cachePfn[slot] === pfn) {
      this.lastView = this.cacheView[slot]!;
      return this.cacheFrame[slot]!;
    }
    let f = this.frames.get(pfn);
    if (!f) {
      if (!this.isRam(pa, len)) throw new BusError(pa, len, op);
      if (!create) return null;
      f = this.spare.pop();
      if (f === undefined) {
        const bytes = new Uint8Array(FRAME_SIZE);
        f = { bytes, view: new DataView(bytes.buffer), words: new Uint32Array(bytes.buffer) };
      } else if (!whole) {
        f.bytes.fill(0);
      }
      this.frames.set(pfn, f);
    }
    this.cachePfn[slot] = pfn;
    this.cacheFrame[slot] = f.bytes;
    this.cacheView[slot] = f.view;
    this.cacheWords[slot] = f.words;
    this.lastView = f.view;
    return f.bytes;
  }

  /**
   * The 4 KiB frame holding `pa` as 32-bit little-endian words (word i is bytes 4i..4i+3 of the frame),
   * made resident if it was not: how kernel code reaches a page it owns through the linear map, for
   * page-table code that reads and writes descriptors in place. Throws BusError outside RAM. The view
   * is valid until the frame is zeroed whole through `fill` (which drops it, and may hand its buffer to
   * another frame later): take it again after that.
   */
  words32(pa: number): Uint32Array {
    const pfn = Math.floor(pa * INV_FRAME_SIZE);
    const slot = pfn & FRAME_CACHE_MASK;
    if (this.cachePfn[slot] === pfn) return this.cacheWords[slot]!;
    if (!HOST_LITTLE_ENDIAN) throw new Error('PhysicalMemory.words32 needs a little-endian host');
    this.frameFor(pa, 4, 'write', true);
    return this.cacheWords[slot]!;
  }

  private viewFor(pa: number, len: number, op: 'read' | 'write', create: boolean): DataView | null {
    const f = this.frameFor(pa, len, op, create);
    return f ? this.lastView : null;
  }

  read8(pa: number): number {
    const f = this.frameFor(pa, 1, 'read', false);
    return f ? f[pa & FRAME_MASK] : 0;
  }

  write8(pa: number, v: number): void {
    this.frameFor(pa, 1, 'write', true)![pa & FRAME_MASK] = v & 0xff;
  }

  read16(pa: number): number {
    if ((pa & FRAME_MASK) > FRAME_SIZE - 2) return this.read8(pa) | (this.read8(pa + 1) << 8);
    const v = this.viewFor(pa, 2, 'read', false);
    return v ? v.getUint16(pa & FRAME_MASK, true) : 0;
  }

  write16(pa: number, val: number): void {
    if ((pa & FRAME_MASK) > FRAME_SIZE - 2) {
      this.write8(pa, val);
      this.write8(pa + 1, val >>> 8);
      return;
    }
    this.viewFor(pa, 2, 'write', true)!.setUint16(pa & FRAME_MASK, val & 0xffff, true);
  }

  read32(pa: number): number {
    if ((pa & 3) === 0 && HOST_LITTLE_ENDIAN) {
      // An aligned word of a frame in the lookup cache: read from its word view (as readWords does).
      const pfn = Math.floor(pa * INV_FRAME_SIZE);
      const slot = pfn & FRAME_CACHE_MASK;
      if (this.cachePfn[slot] === pfn) return this.cacheWords[slot]![(pa & FRAME_MASK) >>> 2];
    }
    if ((pa & FRAME_MASK) > FRAME_SIZE - 4) return (this.read16(pa) | (this.read16(pa + 2) << 16)) >>> 0;
    const v = this.viewFor(pa, 4, 'read', false);
    return v ? v.getUint32(pa & FRAME_MASK, true) : 0;
  }

  write32(pa: number, val: number): void {
    if ((pa & FRAME_MASK) > FRAME_SIZE - 4) {
      this.write16(pa, val & 0xffff);
      this.write16(pa + 2, val >>> 16);
      return;
    }
    this.viewFor(pa, 4, 'write', true)!.setUint32(pa & FRAME_MASK, val >>> 0, true);
  }

  /**
   * `n` little-endian 32-bit words from `pa` into `out[0..n)`, as `n` read32 calls would give them
   * (untouched RAM reads as zero; BusError outside RAM) with one frame lookup when they share a frame.
   */
  readWords(pa: number, out: Uint32Array, n: number): void {
    const off = pa & FRAME_MASK;
    if ((off & 3) !== 0 || off + n * 4 > FRAME_SIZE || !HOST_LITTLE_ENDIAN) {
      for (let i = 0; i < n; i++) out[i] = this.read32(pa + i * 4);
      return;
    }
    const pfn = Math.floor(pa * INV_FRAME_SIZE);
    const slot = pfn & FRAME_CACHE_MASK;
    let words: Uint32Array | null;
    if (this.cachePfn[slot] === pfn) {
      words = this.cacheWords[slot];
    } else {
      words = this.frameFor(pa, n * 4, 'read', false) === null ? null : this.cacheWords[slot];
    }
    const w = off >>> 2;
    if (words === null) for (let i = 0; i < n; i++) out[i] = 0;
    else for (let i = 0; i < n; i++) out[i] = words[w + i];
  }

  read64(pa: number): bigint {
    const lo = this.read32(pa);
    const hi = this.read32(pa + 4);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  write64(pa: number, val: bigint): void {
    const v = BigInt.asUintN(64, val);
    this.write32(pa, Number(v & 0xffff_ffffn));
    this.write32(pa + 4, Number(v >> 32n));
  }

  /** Copy `len` bytes out of memory. */
  read(pa: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    this.readInto(pa, out);
    return out;
  }

  readInto(pa: number, out: Uint8Array): void {
    this.check(pa, out.length, 'read');
    let done = 0;
    while (done < out.length) {
      const cur = pa + done;
      const off = cur & FRAME_MASK;
      const n = Math.min(FRAME_SIZE - off, out.length - done);
      const f = this.frameFor(cur, n, 'read', false) ?? PhysicalMemory.ZERO;
      out.set(f.subarray(off, off + n), done);
      done += n;
    }
  }

  write(pa: number, data: Uint8Array): void {
    const off0 = pa & FRAME_MASK;
    const len = data.length;
    if (off0 + len <= FRAME_SIZE && len > 0) {
      // Within one frame (an MSI, a descriptor, most DMA): no view of `data` to make, and a few bytes
      // are copied by hand (cheaper than a call into TypedArray.prototype.set). RAM regions are whole
      // frames and frames exist only inside them, so frameFor's check (made when the frame is not
      // resident) is the whole range's.
      const f = this.frameFor(pa, len, 'write', true, len === FRAME_SIZE)!;
      if (len <= 16) for (let i = 0; i < len; i++) f[off0 + i] = data[i];
      else f.set(data, off0);
      return;
    }
    this.check(pa, data.length, 'write');
    let done = 0;
    while (done < data.length) {
      const cur = pa + done;
      const off = cur & FRAME_MASK;
      const n = Math.min(FRAME_SIZE - off, data.length - done);
      this.frameFor(cur, n, 'write', true, n === FRAME_SIZE)!.set(data.subarray(done, done + n), off);
      done += n;
    }
  }

  fill(pa: number, len: number, byte: number): void {
    this.check(pa, len, 'write');
    let done = 0;
    while (done < len) {
      const cur = pa + done;
      const off = cur & FRAME_MASK;
      const n = Math.min(FRAME_SIZE - off, len - done);
      if (byte === 0 && off === 0 && n === FRAME_SIZE) {
        // Zeroing a whole frame: drop it (reads as zero) after checking it is RAM.
        if (!this.isRam(cur, n)) throw new BusError(cur, n, 'write');
        const pfn = cur / FRAME_SIZE;
        const f = this.frames.get(pfn);
        if (f) {
          this.frames.delete(pfn);
          if (this.spare.length < SPARE_FRAMES) this.spare.push(f);
        }
        const slot = pfn & FRAME_CACHE_MASK;
        if (this.cachePfn[slot] === pfn) {
          this.cachePfn[slot] = -1;
          this.cacheFrame[slot] = null;
          this.cacheView[slot] = null;
          this.cacheWords[slot] = null;
        }
      } else {
        this.frameFor(cur, n, 'write', true)!.fill(byte & 0xff, off, off + n);
      }
      done += n;
    }
  }

  /** Throws BusError unless the whole range is RAM (checked once, before a multi-frame access). */
  check(pa: number, len: number, op: 'read' | 'write'): void {
    if (!this.isRam(pa, len)) throw new BusError(pa, len, op);
  }
}
