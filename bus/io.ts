/**
 * Kernel-side MMIO accessors (kernel: ioremap(), readl()/writel(), readq()/writeq(), their _relaxed
 * forms, and readl_relaxed_poll_timeout()).
 *
 * `ioremap` refuses a range no device's MMIO region covers, with an error naming the range: on a real
 * board that mistake is an external abort at the first access, here it is caught where it is made.
 * Every access is checked against the mapping (offset inside it, naturally aligned) and a bad one is
 * an error naming the offset. There are no barriers to model: the machine completes MMIO in program
 * order, so the `_relaxed` forms are the same accessors under their kernel names.
 *
 * Polling waits on virtual time (the CPU port's `delay`), so a register that never changes makes a
 * poll time out after exactly the kernel's timeout, never hang the simulation.
 */
import type { CpuPort, MmioWindow } from '../hw/cpu-port.js';
import type { Device } from './device.js';
import { KernelError } from './errno.js';

const hex = (n: number): string => `0x${n.toString(16)}`;

export class IoMem {
  private live = true;
  /** The port's accessors for this mapping, where it has them: no device lookup per access. */
  private readonly window: MmioWindow | null;

  constructor(
    private readonly port: CpuPort,
    /** Physical base of the mapping. */
    readonly base: number,
    /** Size of the mapping in bytes. */
    readonly size: number,
  ) {
    this.window = port.mmioWindow?.(base, size) ?? null;
  }

  /** False once `iounmap` was called. */
  get mapped(): boolean {
    return this.live;
  }

  /** The CPU port this mapping goes through (pollers need its clock). */
  get cpu(): CpuPort {
    return this.port;
  }

  readl(offset: number): number {
    this.check(offset, 4, 'readl');
    const w = this.window;
    return (w !== null ? w.read32(offset) : this.port.mmioRead32(this.base + offset)) >>> 0;
  }

  writel(value: number, offset: number): void {
    this.check(offset, 4, 'writel');
    const w = this.window;
    if (w !== null) w.write32(offset, value >>> 0);
    else this.port.mmioWrite32(this.base + offset, value >>> 0);
  }

  readq(offset: number): bigint {
    this.check(offset, 8, 'readq');
    return this.port.mmioRead64(this.base + offset);
  }

  writeq(value: bigint, offset: number): void {
    this.check(offset, 8, 'writeq');
    this.port.mmioWrite64(this.base + offset, BigInt.asUintN(64, value));
  }

  // kernel: readl_relaxed() [asm/io.h]
  readlRelaxed(offset: number): number {
    return this.readl(offset);
  }

  // kernel: writel_relaxed() [asm/io.h]
  writelRelaxed(value: number, offset: number): void {
    this.writel(value, offset);
  }

  // kernel: readq_relaxed() [asm/io.h]
  readqRelaxed(offset: number): bigint {
    return this.readq(offset);
  }

  // kernel: writeq_relaxed() [asm/io.h]
  writeqRelaxed(value: bigint, offset: number): void {
    this.writeq(value, offset);
  }

  /** Later accesses are errors. */
  // kernel: iounmap() [asm/io.h]
  unmap(): void {
    this.live = false;
  }

  toString(): string {
    return `[${hex(this.base)}-${hex(this.base + this.size - 1)}]`;
  }

  private check(offset: number, width: 4 | 8, op: string): void {
    // (Alignment by `&` on the low bits, exact for a safe integer; a fraction fails the floor test.)
    if (this.live && offset >= 0 && offset + width <= this.size && (offset & (width - 1)) === 0 && Math.floor(offset) === offset) return;
    throw this.accessError(offset, width, op);
  }

  private accessError(offset: number, width: number, op: string): KernelError {
    if (!this.live) return new KernelError('EFAULT', `${op} at offset ${fmtOffset(offset)} of ${this.toString()}: the mapping was unmapped`);
    if (!Number.isInteger(offset) || offset < 0 || offset + width > this.size) {
      return new KernelError(
        'EFAULT',
        `${op} at offset ${fmtOffset(offset)} is outside the ${hex(this.size)}-byte mapping ${this.toString()}`,
      );
    }
    return new KernelError('EFAULT', `${op} at offset ${fmtOffset(offset)} of ${this.toString()} is not ${width}-byte aligned`);
  }
}

function fmtOffset(offset: number): string {
  return Number.isInteger(offset) && offset >= 0 ? hex(offset) : String(offset);
}

/**
 * ENXIO naming the range if no single device's MMIO region covers all of
 * [pa, pa + size); EINVAL for a malformed range.
 */
// kernel: ioremap() [asm/io.h]
export function ioremap(port: CpuPort, pa: number, size: number): IoMem {
  if (!Number.isSafeInteger(pa) || pa < 0 || !Number.isSafeInteger(size) || size <= 0 || !Number.isSafeInteger(pa + size)) {
    throw new KernelError('EINVAL', `ioremap: bad range: base ${pa}, size ${size}`);
  }
  if (!port.mmioPresent(pa, size)) {
    throw new KernelError('ENXIO', `ioremap: no device MMIO covers [${hex(pa)}-${hex(pa + size - 1)}]`);
  }
  return new IoMem(port, pa, size);
}

/** A mapping unmapped when the device's driver unbinds. */
// kernel: devm_ioremap() [lib/devres.c]
export function devmIoremap(dev: Device, pa: number, size: number): IoMem {
  const io = ioremap(dev.port, pa, size);
  dev.devres.add(`ioremap ${io.toString()}`, () => io.unmap());
  return io;
}

/** As the kernel's iounmap() */
export function iounmap(io: IoMem): void {
  io.unmap();
}

/** How long a poll with a zero delay waits between reads: the simulation cannot spin without time passing. */
export const POLL_SPIN_NS = 1000;

/**
 * Read until `cond` holds, sleeping `delayUs` of virtual time between
 * reads; after `timeoutUs` one last read decides, then KernelError('ETIMEDOUT') naming `what` and the
 * last value. Returns the value that satisfied `cond`.
 */
// kernel: read_poll_timeout() [iopoll.h]
export function readPollTimeout<T>(
  port: CpuPort,
  read: () => T,
  cond: (value: T) => boolean,
  delayUs: number,
  timeoutUs: number,
  what: string,
): Promise<T> {
  return pollTimeout(port, read, cond, delayUs, timeoutUs, what);
}

/** readPollTimeout naming the poll by a string or, for the MMIO forms, by a function called only for an error. */
async function pollTimeout<T>(
  port: CpuPort,
  read: () => T,
  cond: (value: T) => boolean,
  delayUs: number,
  timeoutUs: number,
  name: string | (() => string),
): Promise<T> {
  const what = (): string => (typeof name === 'string' ? name : name());
  if (!(delayUs >= 0) || !Number.isFinite(delayUs)) throw new KernelError('EINVAL', `${what()}: poll delay ${delayUs} us is not a finite number >= 0`);
  if (!(timeoutUs > 0) || !Number.isFinite(timeoutUs)) {
    throw new KernelError('EINVAL', `${what()}: poll timeout ${timeoutUs} us must be finite and > 0 (an unbounded poll could hang)`);
  }
  const deadline = port.now() + timeoutUs * 1000;
  const stepNs = delayUs > 0 ? delayUs * 1000 : POLL_SPIN_NS;
  for (;;) {
    let v = read();
    if (cond(v)) return v;
    if (port.now() > deadline) {
      v = read();
      if (cond(v)) return v;
      throw new KernelError('ETIMEDOUT', `${what()}: condition not met after ${timeoutUs} us (last value ${fmtValue(v)})`);
    }
    await port.delay(stepNs);
  }
}

// kernel: readl_relaxed_poll_timeout() [iopoll.h]
export function readlPollTimeout(
  io: IoMem,
  offset: number,
  cond: (value: number) => boolean,
  delayUs: number,
  timeoutUs: number,
): Promise<number> {
  // (The name is built only for an error: a poll per DMA job would format it every time.)
  return pollTimeout(io.cpu, () => io.readl(offset), cond, delayUs, timeoutUs, () => `readl poll of offset ${hex(offset)} of ${io.toString()}`);
}

// kernel: readq_relaxed_poll_timeout() [iopoll.h]
export function readqPollTimeout(
  io: IoMem,
  offset: number,
  cond: (value: bigint) => boolean,
  delayUs: number,
  timeoutUs: number,
): Promise<bigint> {
  return pollTimeout(io.cpu, () => io.readq(offset), cond, delayUs, timeoutUs, () => `readq poll of offset ${hex(offset)} of ${io.toString()}`);
}

function fmtValue(v: unknown): string {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return hex(v);
  if (typeof v === 'bigint') return `0x${v.toString(16)}`;
  return String(v);
}
