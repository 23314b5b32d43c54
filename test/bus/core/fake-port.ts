/**
 * A small CPU port for device-model tests: RAM from hw/memory, MMIO regions as callbacks, and
 * interrupt controllers whose lines deliver through the scheduler (a raise while pending is merged,
 * like a GIC pending bit). Tests drive time with `port.scheduler`.
 */
import type { BootFirmware, CpuPort, CpuTimer, IrqHandler } from '../../../hw/cpu-port.js';
import { PhysicalMemory } from '../../../hw/memory.js';
import { Scheduler } from '../../../hw/scheduler.js';
import { Trace } from '../../../hw/trace.js';

export interface FakeRegion {
  readonly base: number;
  readonly size: number;
  read32(offset: number): number;
  write32(offset: number, value: number): void;
  read64?(offset: number): bigint;
  write64?(offset: number, value: bigint): void;
}

interface FakeLine {
  readonly handlers: IrqHandler[];
  pending: boolean;
  raised: number;
  delivered: number;
}

/** Interrupt latency of the fake controllers. */
export const FAKE_IRQ_LATENCY_NS = 100;

export class FakePort implements CpuPort {
  readonly scheduler: Scheduler;
  readonly trace = new Trace();
  readonly firmware: BootFirmware = { dtb: null, acpi: new Map() };
  readonly ram = new PhysicalMemory();
  readonly mmioLog: { op: 'read' | 'write'; pa: number; value: number | bigint }[] = [];
  /** Called after each delivery step returns (tests check what ran inside it). */
  onDelivered: ((controller: string, specifier: readonly number[]) => void) | null = null;
  private readonly regions: FakeRegion[] = [];
  private readonly controllers = new Set<string>();
  private readonly lines = new Map<string, FakeLine>();

  constructor(seed = 1) {
    this.scheduler = new Scheduler(seed);
  }

  addRegion(region: FakeRegion): FakeRegion {
    for (const r of this.regions) {
      if (region.base < r.base + r.size && r.base < region.base + region.size) throw new Error('fake MMIO regions overlap');
    }
    this.regions.push(region);
    return region;
  }

  /** A region of plain 32-bit registers backed by a Map (unwritten registers read as `fill`). */
  addRegisterFile(base: number, size: number, fill = 0): { regs: Map<number, number>; region: FakeRegion } {
    const regs = new Map<number, number>();
    const region = this.addRegion({
      base,
      size,
      read32: (off) => regs.get(off) ?? fill,
      write32: (off, v) => {
        regs.set(off, v >>> 0);
      },
      read64: (off) => (BigInt(regs.get(off + 4) ?? fill) << 32n) | BigInt(regs.get(off) ?? fill),
      write64: (off, v) => {
        regs.set(off, Number(v & 0xffffffffn));
        regs.set(off + 4, Number(v >> 32n));
      },
    });
    return { regs, region };
  }

  addController(path: string): void {
    this.controllers.add(path);
  }

  mmioPresent(pa: number, len: number): boolean {
    return this.regions.some((r) => pa >= r.base && pa + len <= r.base + r.size);
  }

  private regionAt(pa: number, width: number): FakeRegion {
    const r = this.regions.find((x) => pa >= x.base && pa + width <= x.base + x.size);
    if (!r) throw new Error(`fake port: no MMIO at 0x${pa.toString(16)}`);
    return r;
  }

  mmioRead32(pa: number): number {
    const r = this.regionAt(pa, 4);
    const v = r.read32(pa - r.base) >>> 0;
    this.mmioLog.push({ op: 'read', pa, value: v });
    return v;
  }

  mmioWrite32(pa: number, value: number): void {
    const r = this.regionAt(pa, 4);
    this.mmioLog.push({ op: 'write', pa, value: value >>> 0 });
    r.write32(pa - r.base, value >>> 0);
  }

  mmioRead64(pa: number): bigint {
    const r = this.regionAt(pa, 8);
    const v = r.read64 ? r.read64(pa - r.base) : (BigInt(r.read32(pa - r.base + 4) >>> 0) << 32n) | BigInt(r.read32(pa - r.base) >>> 0);
    this.mmioLog.push({ op: 'read', pa, value: v });
    return v;
  }

  mmioWrite64(pa: number, value: bigint): void {
    const r = this.regionAt(pa, 8);
    this.mmioLog.push({ op: 'write', pa, value });
    if (r.write64) r.write64(pa - r.base, value);
    else {
      r.write32(pa - r.base, Number(value & 0xffffffffn));
      r.write32(pa - r.base + 4, Number(value >> 32n));
    }
  }

  private key(controller: string, specifier: readonly number[]): string {
    // Like a GIC: the flags cell does not name the line.
    return `${controller}|${specifier.slice(0, 2).join(',')}`;
  }

  private line(controller: string, specifier: readonly number[]): FakeLine {
    if (!this.controllers.has(controller)) throw new Error(`no interrupt controller ${controller}`);
    const k = this.key(controller, specifier);
    let l = this.lines.get(k);
    if (!l) {
      l = { handlers: [], pending: false, raised: 0, delivered: 0 };
      this.lines.set(k, l);
    }
    return l;
  }

  requestIrq(controller: string, specifier: readonly number[], handler: IrqHandler): () => void {
    const l = this.line(controller, specifier);
    l.handlers.push(handler);
    return () => {
      const i = l.handlers.indexOf(handler);
      if (i >= 0) l.handlers.splice(i, 1);
    };
  }

  /** Raise a line: delivered FAKE_IRQ_LATENCY_NS later in a scheduler step. */
  raise(controller: string, specifier: readonly number[]): void {
    const l = this.line(controller, specifier);
    l.raised++;
    if (l.pending) return;
    l.pending = true;
    this.scheduler.schedule(
      FAKE_IRQ_LATENCY_NS,
      () => {
        l.pending = false;
        l.delivered++;
        for (const h of l.handlers.slice()) h();
        this.onDelivered?.(controller, specifier);
      },
      `irq ${controller}`,
    );
  }

  handlerCount(controller: string, specifier: readonly number[]): number {
    return this.lines.get(this.key(controller, specifier))?.handlers.length ?? 0;
  }

  now(): number {
    return this.scheduler.now;
  }

  startTimer(ns: number, fn: () => void, label?: string): CpuTimer {
    return this.scheduler.startTimer(ns, fn, label);
  }

  delay(ns: number): Promise<void> {
    return this.scheduler.delay(ns);
  }

  /** Run `task` to completion on virtual time. */
  run<T>(task: Promise<T>, limitNs = 10_000_000_000): Promise<T> {
    return this.scheduler.runUntilSettled(task, 'test task', limitNs);
  }
}

/**
 * A GICv2m frame: MSI_TYPER at 0x008 reports [base, base+count) and a 32-bit write of an INTID to
 * MSI_SETSPI_NS (0x040) raises that SPI on `gicPath`.
 */
export function addGicV2mFrame(port: FakePort, base: number, gicPath: string, spiBase: number, count: number): { setspiWrites: number[] } {
  const writes: number[] = [];
  port.addRegion({
    base,
    size: 0x1000,
    read32: (off) => (off === 0x008 ? ((spiBase << 16) | count) >>> 0 : 0),
    write32: (off, v) => {
      if (off !== 0x040) return;
      writes.push(v);
      if (v >= spiBase && v < spiBase + count) port.raise(gicPath, [0, v - 32, 1]);
    },
  });
  return { setspiWrites: writes };
}
