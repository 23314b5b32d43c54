/**
 * What a CPU sees of the machine: the one hw module the kernel side may import.
 *
 * A kernel reaches hardware only through this port: loads and stores to RAM, MMIO register reads and
 * writes, interrupt lines it can attach handlers to, the firmware blobs the boot loader handed over,
 * and the passage of (virtual) time. It never sees an SMMU model, a master model or the scheduler.
 */
import type { Trace, TraceEvent, TraceEventId, TraceKind, TraceRecording } from './trace.js';

export type { Trace, TraceEvent, TraceEventId, TraceKind, TraceRecording };
export { vtime } from './vtime.js';

/** CPU loads and stores to RAM by physical address. Touching a hole throws (a kernel oops). */
export interface RamAccess {
  read8(pa: number): number;
  write8(pa: number, v: number): void;
  read16(pa: number): number;
  write16(pa: number, v: number): void;
  read32(pa: number): number;
  write32(pa: number, v: number): void;
  read64(pa: number): bigint;
  write64(pa: number, v: bigint): void;
  read(pa: number, len: number): Uint8Array;
  write(pa: number, data: Uint8Array): void;
  fill(pa: number, len: number, byte: number): void;
  /**
   * The 4 KiB frame holding `pa` as 32-bit little-endian words, made resident if it was not: a page the
   * kernel owns, reached through the linear map (phys_to_virt()), for descriptors read and written in
   * place. Valid until the frame is zeroed whole with `fill`; take it again per operation.
   */
  words32(pa: number): Uint32Array;
}

/** Firmware tables as the boot loader leaves them for the kernel. */
export interface BootFirmware {
  /** The flattened device tree blob, if the machine was described by one. */
  readonly dtb: Uint8Array | null;
  /** ACPI tables by signature ("IORT", …), if the machine was described by ACPI. */
  readonly acpi: ReadonlyMap<string, Uint8Array>;
  /**
   * The UEFI memory map an ACPI machine's boot loader passes (ACPI tables carry no RAM): RAM ranges
   * and, within them, ranges firmware keeps. Null for a Device Tree machine.
   */
  readonly memoryMap?: BootMemoryMap | null;
}

/** RAM and firmware-reserved ranges, as a UEFI memory map gives them. */
export interface BootMemoryMap {
  readonly ram: readonly { readonly base: number; readonly size: number }[];
  readonly reserved: readonly { readonly base: number; readonly size: number }[];
}

/** An interrupt handler: called by the interrupt controller, outside any software context. */
export type IrqHandler = () => void;

export interface CpuTimer {
  /** Stop the timer; a no-op once it fired. Returns true if it was still pending. */
  cancel(): boolean;
}

/**
 * What the machine's CPUs take for the memory operations kernel code pays for in virtual time
 * (kernel code otherwise runs in zero virtual time). Both default to 0: a machine without them
 * charges nothing, as before they existed.
 */
export interface CpuCosts {
  /**
   * An atomic read-modify-write (cmpxchg, fetch-add) on a cache line this CPU already holds,
   * together with the plain stores around it.
   */
  atomicNs: number;
  /**
   * Bringing a cache line another CPU last wrote into this CPU's cache before an atomic on it: what
   * a contended atomic costs on top of `atomicNs`.
   */
  lineTransferNs: number;
}

/** Register accessors bound to one device's MMIO (see CpuPort.mmioWindow); offsets from the window's base. */
export interface MmioWindow {
  read32(offset: number): number;
  write32(offset: number, value: number): void;
}

export const ZERO_CPU_COSTS: Readonly<CpuCosts> = Object.freeze({ atomicNs: 0, lineTransferNs: 0 });

export interface CpuPort {
  readonly firmware: BootFirmware;
  /** The CPUs' memory-operation costs (absent: ZERO_CPU_COSTS). */
  readonly costs?: Readonly<CpuCosts>;
  readonly ram: RamAccess;

  /** True if [pa, pa+len) is covered by one device's MMIO region. */
  mmioPresent(pa: number, len: number): boolean;
  mmioRead32(pa: number): number;
  mmioWrite32(pa: number, value: number): void;
  mmioRead64(pa: number): bigint;
  mmioWrite64(pa: number, value: bigint): void;
  /**
   * The 32-bit accessors of [pa, pa + size), which one device's region covers (what ioremap() keeps):
   * the same accesses as mmioRead32/mmioWrite32 at pa + offset (traced alike, an error where those
   * throw), without finding the device each time. Null when no one device covers the range.
   * Optional: a port that traps every access (a guest's) has none, and its mappings go through
   * mmioRead32/mmioWrite32.
   */
  mmioWindow?(pa: number, size: number): MmioWindow | null;

  /**
   * Attach a handler to an interrupt line, named as firmware names it: the controller's DT path and
   * the specifier cells (for a GIC: type, number, flags). Returns a function that detaches it.
   * Throws if no such controller exists or the specifier is not valid for it.
   */
  requestIrq(controller: string, specifier: readonly number[], handler: IrqHandler): () => void;

  /** Virtual time in nanoseconds. */
  now(): number;
  /** Resolve after `ns` of virtual time: how kernel code sleeps and polls. */
  delay(ns: number): Promise<void>;
  /**
   * Call `fn` once after `ns` of virtual time unless cancelled first (kernel: hrtimer/timer_list).
   * A cancelled timer leaves nothing scheduled, so it never keeps the machine busy. `label` names the
   * step in traces ('cpu timer' by default; a busy-wait's udelay() split into timers says 'cpu delay',
   * as `delay` does).
   */
  startTimer(ns: number, fn: () => void, label?: string): CpuTimer;

  /**
   * The exclusive monitor a wfe after a load-exclusive waits on (kernel: smp_cond_load_relaxed() on
   * arm64): call `fn(pa)` once, when a write by another agent (a DMA master, an SMMU's MSI) lands in
   * the 4 bytes at `pa`. `unmonitor(pa, fn)` disarms it. Optional (both or neither): without them a
   * waiter polls. Nothing is allocated per arm: a waiter sleeps once per command it waits for.
   */
  monitor?(pa: number, fn: (pa: number) => void): void;
  /** Disarm one monitor armed with this `pa` and `fn`; a no-op if it already fired. */
  unmonitor?(pa: number, fn: (pa: number) => void): void;

  /** The machine's trace stream: the kernel emits probe, work and log events into it. */
  readonly trace: Trace;
}
