/**
 * The MMIO address map: which device answers a physical address.
 *
 * Regions never overlap (mapping one that would throws MmioOverlapError naming both). Dispatch is a
 * one-entry last-hit cache in front of a binary search over the regions sorted by base. Accesses
 * are naturally aligned 32- or 64-bit; a 64-bit access to a device without `read64`/`write64` is
 * split into two 32-bit accesses, low word first, as a 32-bit interconnect would. An access to an
 * address no device covers (or a misaligned one) throws MmioAccessError naming the address: for a
 * CPU that is an external abort. Every access emits an `mmio` trace event while the trace is active,
 * and a line on the `iommu:hw:mmio` debug namespace while that is enabled.
 */
import createDebug from 'debug';
import type { MmioWindow } from './cpu-port.js';
import { DebugGate } from './debug-gate.js';
import type { Trace } from './trace.js';
import { vtime } from './vtime.js';

const log = createDebug('iommu:hw:mmio');
const logGate = new DebugGate(log);

/** A device's register file as the interconnect sees it; offsets are relative to its region base. */
export interface MmioDevice {
  /** Names the device in errors and traces (a DT path for firmware-made devices). */
  readonly name: string;
  read32(offset: number): number;
  write32(offset: number, value: number): void;
  read64?(offset: number): bigint;
  write64?(offset: number, value: bigint): void;
  /** Read without side effects (for tests and debuggers). */
  peek32?(offset: number): number;
  /**
   * A 32-bit write arriving from a DMA master rather than the CPU, with the master's name (the bus
   * sideband an ITS reads its DeviceID from). Devices without it get write32.
   */
  dmaWrite32?(offset: number, value: number, master: string): void;
  /** The register's name as the device's spec writes it, for traces; null (or absent) when unnamed. */
  registerName?(offset: number): string | null;
}

export interface MmioRegion {
  readonly base: number;
  readonly size: number;
  readonly device: MmioDevice;
  /**
   * The device's 32-bit accessors bound to it when mapped: every region has the same shape, so an
   * access loads them without the method lookup on the device (many device classes share the path).
   */
  readonly read32: (offset: number) => number;
  readonly write32: (offset: number, value: number) => void;
  /** False once unmapped (a window onto it then goes through the map again). */
  mapped: boolean;
}

const hex = (v: number): string => `0x${v.toString(16)}`;

function describe(r: MmioRegion): string {
  return `${r.device.name} [${hex(r.base)}, ${hex(r.base + r.size)})`;
}

export class MmioOverlapError extends Error {
  constructor(
    readonly added: MmioRegion,
    readonly existing: MmioRegion,
  ) {
    super(`MMIO region ${describe(added)} overlaps ${describe(existing)}`);
    this.name = 'MmioOverlapError';
  }
}

/** A CPU or bus access that no device can take: unmapped, misaligned, or running off a region. */
export class MmioAccessError extends Error {
  constructor(
    readonly pa: number,
    readonly width: 32 | 64,
    readonly op: 'read' | 'write',
    reason: string,
  ) {
    super(`MMIO ${op}${width} at PA ${hex(pa)}: ${reason}`);
    this.name = 'MmioAccessError';
  }
}

export class MmioMap {
  private sorted: MmioRegion[] = [];
  private last: MmioRegion | null = null;

  constructor(
    private readonly trace: Trace,
    private readonly now: () => number,
  ) {}

  /** Map `device` at [base, base+size). Throws MmioOverlapError if any mapped region intersects it. */
  map(base: number, size: number, device: MmioDevice): MmioRegion {
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(size) || base < 0 || size <= 0 || base + size > Number.MAX_SAFE_INTEGER) {
      throw new RangeError(`MMIO region for ${device.name}: bad base ${base} / size ${size}`);
    }
    const region: MmioRegion = { base, size, device, read32: device.read32.bind(device), write32: device.write32.bind(device), mapped: true };
    const clash = this.firstOverlap(base, size);
    if (clash) throw new MmioOverlapError(region, clash);
    const i = this.lowerBound(base);
    this.sorted.splice(i, 0, region);
    return region;
  }

  /** Remove a region previously returned by `map`. */
  unmap(region: MmioRegion): void {
    const i = this.sorted.indexOf(region);
    if (i < 0) throw new Error(`MMIO region ${describe(region)} is not mapped`);
    this.sorted.splice(i, 1);
    region.mapped = false;
    if (this.last === region) this.last = null;
  }

  /**
   * The 32-bit accessors of [pa, pa + size) inside one region (CpuPort.mmioWindow): an access within
   * the window that is aligned goes to the region's device directly while the region stays mapped;
   * any other (outside, misaligned, after an unmap) goes through `read32`/`write32` at its address,
   * as it would without the window. Null if no one region covers the range.
   */
  window(pa: number, size: number): MmioWindow | null {
    const r = this.find(pa);
    if (r === null || !(size > 0) || pa + size > r.base + r.size) return null;
    return new RegionWindow(this, r, pa, size);
  }

  /** A mapped region intersecting [base, base+size), or null. */
  firstOverlap(base: number, size: number): MmioRegion | null {
    const i = this.lowerBound(base);
    // Only the predecessor and the regions starting before base+size can intersect.
    if (i > 0) {
      const p = this.sorted[i - 1];
      if (p.base + p.size > base) return p;
    }
    const n = this.sorted[i];
    if (n && n.base < base + size) return n;
    return null;
  }

  get regions(): readonly MmioRegion[] {
    return this.sorted;
  }

  /** The region containing `pa`, or null. */
  find(pa: number): MmioRegion | null {
    const l = this.last;
    if (l && pa >= l.base && pa < l.base + l.size) return l;
    const s = this.sorted;
    let lo = 0;
    let hi = s.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = s[mid];
      if (pa < r.base) hi = mid - 1;
      else if (pa >= r.base + r.size) lo = mid + 1;
      else {
        this.last = r;
        return r;
      }
    }
    return null;
  }

  /** True if [pa, pa+len) lies inside one region. */
  covers(pa: number, len: number): boolean {
    const r = this.find(pa);
    return r !== null && len > 0 && pa + len <= r.base + r.size;
  }

  read32(pa: number): number {
    const r = this.region(pa, 32, 'read');
    const v = r.read32(pa - r.base) >>> 0;
    if (this.observed) this.emit(r, 'read', pa, 32, BigInt(v));
    return v;
  }

  write32(pa: number, value: number): void {
    const r = this.region(pa, 32, 'write');
    r.write32(pa - r.base, value >>> 0);
    if (this.observed) this.emit(r, 'write', pa, 32, BigInt(value >>> 0));
  }

  read64(pa: number): bigint {
    const r = this.region(pa, 64, 'read');
    const off = pa - r.base;
    let v: bigint;
    if (r.device.read64) {
      v = BigInt.asUintN(64, r.device.read64(off));
    } else {
      const lo = r.device.read32(off) >>> 0;
      const hi = r.device.read32(off + 4) >>> 0;
      v = (BigInt(hi) << 32n) | BigInt(lo);
    }
    if (this.observed) this.emit(r, 'read', pa, 64, v);
    return v;
  }

  write64(pa: number, value: bigint): void {
    const r = this.region(pa, 64, 'write');
    const off = pa - r.base;
    const v = BigInt.asUintN(64, value);
    if (r.device.write64) {
      r.device.write64(off, v);
    } else {
      r.device.write32(off, Number(v & 0xffff_ffffn));
      r.device.write32(off + 4, Number(v >> 32n));
    }
    if (this.observed) this.emit(r, 'write', pa, 64, v);
  }

  /** Side-effect-free read for tests: the device's peek32, or 0 if it has none. Not traced. */
  peek32(pa: number): number {
    const r = this.region(pa, 32, 'read');
    return r.device.peek32 ? r.device.peek32(pa - r.base) >>> 0 : 0;
  }

  private region(pa: number, width: 32 | 64, op: 'read' | 'write'): MmioRegion {
    const bytes = width >> 3;
    // (Low bits by `&`, exact for any safe integer: `%` by a width not known at compile time is a
    // division per access. A fraction is misaligned too.)
    if ((pa & (bytes - 1)) !== 0 || Math.floor(pa) !== pa) throw new MmioAccessError(pa, width, op, `not ${bytes}-byte aligned`);
    const r = this.find(pa);
    if (!r) throw new MmioAccessError(pa, width, op, 'no device is mapped there');
    if (pa + bytes > r.base + r.size) throw new MmioAccessError(pa, width, op, `runs off the end of ${describe(r)}`);
    return r;
  }

  /** Someone wants to see accesses: the trace, or `DEBUG=iommu:hw:mmio`. */
  get observed(): boolean {
    return this.trace.active || logGate.enabled;
  }

  /** @internal An access to show the trace and the debug log (this map's and its windows'). */
  emit(r: MmioRegion, op: 'read' | 'write', pa: number, width: 32 | 64, value: bigint): void {
    if (log.enabled) log('%s %s %s%d +0x%s = 0x%s', vtime(this.now()), r.device.name, op, width, (pa - r.base).toString(16), value.toString(16));
    if (!this.trace.active) return;
    const offset = pa - r.base;
    this.trace.emit({ kind: 'mmio', time: this.now(), track: r.device.name, op, pa, offset, width, value, reg: r.device.registerName?.(offset) ?? null });
  }

  private lowerBound(base: number): number {
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.sorted[mid].base < base) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** A region that reads as zero and ignores writes: what an unmodelled device's registers look like. */
export class ZeroDevice implements MmioDevice {
  constructor(readonly name: string) {}
  read32(): number {
    return 0;
  }
  write32(): void {}
  peek32(): number {
    return 0;
  }
}

/** See MmioMap.window. */
class RegionWindow implements MmioWindow {
  /** The window's base within the region. */
  private readonly delta: number;

  constructor(
    private readonly map: MmioMap,
    private readonly region: MmioRegion,
    private readonly pa: number,
    private readonly size: number,
  ) {
    this.delta = pa - region.base;
  }

  /** `offset` is an aligned 32-bit access inside the window, and the region is still mapped. */
  private direct(offset: number): boolean {
    return this.region.mapped && (offset & 3) === 0 && offset >= 0 && offset + 4 <= this.size;
  }

  read32(offset: number): number {
    if (!this.direct(offset)) return this.map.read32(this.pa + offset);
    const r = this.region;
    const v = r.read32(this.delta + offset) >>> 0;
    if (this.map.observed) this.map.emit(r, 'read', this.pa + offset, 32, BigInt(v));
    return v;
  }

  write32(offset: number, value: number): void {
    if (!this.direct(offset)) {
      this.map.write32(this.pa + offset, value);
      return;
    }
    const r = this.region;
    r.write32(this.delta + offset, value >>> 0);
    if (this.map.observed) this.map.emit(r, 'write', this.pa + offset, 32, BigInt(value >>> 0));
  }
}
