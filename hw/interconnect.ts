/**
 * The interconnect: the DmaPort that reaches physical memory.
 *
 * A transaction that lies entirely in RAM reads or writes it; one that lies inside one MMIO region
 * becomes naturally aligned 32-bit (or a single 64-bit) register accesses, little-endian, so a
 * device's MSI write reaches a GICv2m frame or an ITS doorbell; anything else is a bus error
 * reported in the completion. Nothing thrown by memory or a device escapes: it becomes 'bus-error'.
 *
 * Every write that lands in RAM is shown to the registered observers (master, pa, len, time), and,
 * for observers that must see memory as it was (what a write changed), to `onRamWillWrite`
 * observers just before it lands.
 * Transactions are answered synchronously. The end-to-end `dma` trace event is emitted by the
 * master that issued the transaction (it knows the address it used and where it landed).
 */
import type { DmaCompletion, DmaDone, DmaPort, DmaRequest, RamWriteObserver } from './dma.js';
import type { PhysicalMemory } from './memory.js';
import type { MmioMap } from './mmio.js';

const hex = (v: number): string => `0x${v.toString(16)}`;

/** The answer of every posted write that landed (see `postRam32`). */
const POSTED: DmaCompletion = Object.freeze({ status: 'ok' });

export class Interconnect implements DmaPort {
  private observers: RamWriteObserver[] = [];
  private preObservers: RamWriteObserver[] = [];
  /** The CPUs' exclusive monitors (see `setMonitorHook`). */
  private monitorHook: ((pa: number, len: number) => void) | null = null;

  constructor(
    readonly memory: PhysicalMemory,
    readonly mmio: MmioMap,
    private readonly now: () => number,
  ) {}

  /** Observe every write that lands in RAM; returns the function that stops observing. */
  onRamWrite(observer: RamWriteObserver): () => void {
    this.observers = [...this.observers, observer];
    return () => {
      this.observers = this.observers.filter((o) => o !== observer);
    };
  }

  /** Observe every RAM write just before it lands (memory still holds the old bytes). */
  onRamWillWrite(observer: RamWriteObserver): () => void {
    this.preObservers = [...this.preObservers, observer];
    return () => {
      this.preObservers = this.preObservers.filter((o) => o !== observer);
    };
  }

  /**
   * The machine's exclusive monitors see every write that lands in RAM, after the observers: one
   * function called with the range alone (a CMD_SYNC's MSI wakes its waiter through it: no master
   * name or time to pass).
   */
  setMonitorHook(hook: ((pa: number, len: number) => void) | null): void {
    this.monitorHook = hook;
  }

  submit(req: DmaRequest, done: DmaDone): void {
    done(this.access(req));
  }

  /** Perform a transaction at its physical address and return the outcome. */
  access(req: DmaRequest): DmaCompletion {
    const { addr, len } = req;
    if (!Number.isSafeInteger(addr) || addr < 0 || !Number.isSafeInteger(len) || len <= 0) {
      return { status: 'bus-error', detail: `malformed transaction: addr ${addr}, len ${len}` };
    }
    if (req.write && (!req.data || req.data.length !== len)) {
      return { status: 'bus-error', detail: `malformed write: ${req.data?.length ?? 'no'} data bytes for len ${len}` };
    }
    try {
      if (this.memory.isRam(addr, len)) return this.ram(req);
      if (this.mmio.covers(addr, len)) return this.device(req);
    } catch (e) {
      return { status: 'bus-error', detail: e instanceof Error ? e.message : String(e) };
    }
    return {
      status: 'bus-error',
      detail: `${req.write ? 'write' : 'read'} of ${len} byte(s) at PA ${hex(addr)} hits no memory or device`,
    };
  }

  /**
   * A posted 32-bit write by `master` (an MSI) when [addr, addr + 4) is aligned RAM: written with the
   * same observers and monitors as `submit`, answered with a shared completion (read it, do not keep
   * it). Null, writing nothing, for any other address: submit the write then. No completion object
   * per write: an SMMU sends one per CMD_SYNC completed by MSI.
   */
  postRam32(master: string, addr: number, value: number): DmaCompletion | null {
    if ((addr & 3) !== 0 || !(addr >= 0 && addr <= Number.MAX_SAFE_INTEGER) || !this.memory.isRam(addr, 4)) return null;
    try {
      this.willWrite(master, addr, 4);
      this.memory.write32(addr, value);
      this.wrote(master, addr, 4);
    } catch (e) {
      return { status: 'bus-error', detail: e instanceof Error ? e.message : String(e) };
    }
    return POSTED;
  }

  private ram(req: DmaRequest): DmaCompletion {
    if (!req.write) return { status: 'ok', data: this.memory.read(req.addr, req.len), pa: req.addr };
    this.willWrite(req.master, req.addr, req.len);
    this.memory.write(req.addr, req.data!);
    this.wrote(req.master, req.addr, req.len);
    return { status: 'ok', pa: req.addr };
  }

  /** A write is about to land in RAM: the observers of memory as it was. */
  private willWrite(master: string, addr: number, len: number): void {
    const pre = this.preObservers;
    if (pre.length === 0) return;
    const t = this.now();
    for (const o of pre) o(master, addr, len, t);
  }

  /** A write landed in RAM: the observers, then the CPUs' monitors. */
  private wrote(master: string, addr: number, len: number): void {
    const obs = this.observers;
    if (obs.length > 0) {
      const t = this.now();
      for (const o of obs) o(master, addr, len, t);
    }
    if (this.monitorHook !== null) this.monitorHook(addr, len);
  }

  private device(req: DmaRequest): DmaCompletion {
    const { addr, len } = req;
    if (addr % 4 !== 0 || len % 4 !== 0) {
      return { status: 'bus-error', detail: `device access at PA ${hex(addr)} of ${len} byte(s) is not whole aligned 32-bit words` };
    }
    const map = this.mmio;
    if (len === 8 && addr % 8 === 0) {
      if (req.write) {
        const d = req.data!;
        const lo = (d[0] | (d[1] << 8) | (d[2] << 16) | (d[3] << 24)) >>> 0;
        const hi = (d[4] | (d[5] << 8) | (d[6] << 16) | (d[7] << 24)) >>> 0;
        map.write64(addr, (BigInt(hi) << 32n) | BigInt(lo));
        return { status: 'ok', pa: addr };
      }
      const v = map.read64(addr);
      const out = new Uint8Array(8);
      new DataView(out.buffer).setBigUint64(0, v, true);
      return { status: 'ok', data: out, pa: addr };
    }
    if (req.write) {
      const d = req.data!;
      const region = len === 4 ? map.find(addr) : null;
      if (region?.device.dmaWrite32) {
        region.device.dmaWrite32(addr - region.base, (d[0] | (d[1] << 8) | (d[2] << 16) | (d[3] << 24)) >>> 0, req.master);
        return { status: 'ok', pa: addr };
      }
      for (let i = 0; i < len; i += 4) {
        map.write32(addr + i, (d[i] | (d[i + 1] << 8) | (d[i + 2] << 16) | (d[i + 3] << 24)) >>> 0);
      }
      return { status: 'ok', pa: addr };
    }
    const out = new Uint8Array(len);
    const dv = new DataView(out.buffer);
    for (let i = 0; i < len; i += 4) dv.setUint32(i, map.read32(addr + i), true);
    return { status: 'ok', data: out, pa: addr };
  }
}
