/**
 * Driver for the DMA test engine (`iommu-sim,dma-test-engine`): a platform driver that maps the
 * engine's 64 KiB of register frames, requests its interrupt, and gives scenarios an API to run DMA
 * jobs on it: allocate DMA buffers, start a frame (copy, fill, checksum, periodic write) on their
 * DMA addresses, wait for completion (on the interrupt, with a virtual-time timeout), read status
 * and checksum, stop frames.
 *
 * `.shutdown` stops every running frame and waits until the engine reports it idle, as a real
 * driver quiesces its DMA before a reboot or kexec. `createDmaTestEngineDriver({ shutdown: false })`
 * builds the same driver with no `.shutdown` at all, so "a driver that forgot .shutdown" is a real
 * driver: its periodic frames keep writing into memory after its kernel is gone.
 *
 * DMA buffers come from the DMA API (`dmaAllocCoherent`): behind a DMA domain the engine is given
 * an IOVA its IOMMU maps to the buffer; with no IOMMU or an identity domain, the physical address.
 *
 * The engine's register layout is declared here again from the model's documented table (a driver
 * carries its own header): frames 0..14 at n * 0x1000, the global page at 0xF000.
 */
import type { Device } from '../../bus/device.js';
import type { DriverCore } from '../../bus/driver-core.js';
import { KernelError } from '../../bus/errno.js';
import { readlPollTimeout, type IoMem } from '../../bus/io.js';
import { devmRequestIrq, type IrqAction, type IrqReturn } from '../../bus/irq.js';
import {
  devmPlatformIoremapResource,
  platformBus,
  platformGetIrqOptional,
  type PlatformDevice,
  type PlatformDriver,
} from '../../bus/platform.js';
import type { CpuPort } from '../../hw/cpu-port.js';
import { dmaAllocCoherent, dmaFreeCoherent } from '../../core/dma-mapping.js';

const LOG_NS = 'iommu:drivers:dma-test-engine';

export const DMA_TEST_ENGINE_DRIVER_NAME = 'dma-test-engine';

// ---- Register layout (the driver's own copy) ------------------------------------------------
const TE_FRAME_STRIDE = 0x1000;
const TE_FRAME_CMD = 0x000;
const TE_FRAME_CTRL = 0x004;
const TE_CTRL_IRQ_EN = 1 << 0;
const TE_CTRL_CONT = 1 << 1;
const TE_FRAME_STREAM = 0x008;
const TE_FRAME_SUBSTREAM = 0x00c;
const TE_SUBSTREAM_SSV = 0x8000_0000;
const TE_FRAME_SRC_LO = 0x010;
const TE_FRAME_SRC_HI = 0x014;
const TE_FRAME_DST_LO = 0x018;
const TE_FRAME_DST_HI = 0x01c;
const TE_FRAME_LENGTH = 0x020;
const TE_FRAME_PATTERN = 0x024;
const TE_FRAME_PERIOD = 0x028;
const TE_FRAME_ATTR = 0x02c;
const TE_ATTR_PRIV = 1 << 0;
const TE_ATTR_INST = 1 << 1;
const TE_FRAME_DOORBELL = 0x030;
const TE_FRAME_STATUS = 0x034;
const TE_STATUS_STATE_MASK = 0x3;
const TE_STATUS_DMA_SHIFT = 4;
const TE_STATUS_DMA_MASK = 0xf;
const TE_STATUS_FAULT_WRITE = 1 << 8;
const TE_STATUS_CFG_SHIFT = 12;
const TE_STATUS_CFG_MASK = 0xf;
const TE_FRAME_FAIL_ADDR_LO = 0x038;
const TE_FRAME_FAIL_ADDR_HI = 0x03c;
const TE_FRAME_ITERATIONS = 0x040;
const TE_FRAME_CHECKSUM = 0x044;
const TE_FRAME_BYTES_DONE = 0x048;
const TE_FRAME_FAILURES = 0x04c;

const TE_ID = 0xf000;
const TE_ID_VALUE = 0x5445_0001;
const TE_CFG = 0xf004;
const TE_IRQ_STATUS = 0xf008;
const TE_STREAMID_BASE = 0xf100;
const TE_REGION_SIZE = 0x1_0000;

const TE_OP_COPY = 1;
const TE_OP_FILL = 2;
const TE_OP_CHECKSUM = 3;
const TE_OP_PERIODIC_WRITE = 4;

const STATES = ['idle', 'running', 'done', 'error'] as const;
const DMA_STATUSES: Readonly<Record<number, FrameDmaStatus>> = {
  0: 'ok',
  1: 'bus-error',
  2: 'abort',
  3: 'fault',
  4: 'terminated',
  5: 'not-issued',
  15: 'config',
};
const CONFIG_ERRORS: Readonly<Record<number, string>> = {
  1: 'bad command',
  2: 'bad stream index',
  3: 'bad substream ID',
  4: 'bad length',
  5: 'bad period',
  6: 'misaligned periodic write',
  7: 'bad address',
};

/** How long `wait` waits for a frame by default: 10 ms of virtual time. */
export const TE_WAIT_TIMEOUT_NS = 10_000_000;
/** How long stopping a frame may take before it is an error (µs), and the poll interval. */
const TE_STOP_TIMEOUT_US = 1000;
const TE_STOP_POLL_US = 1;

const hex = (v: number): string => `0x${v.toString(16)}`;

// ---- Public types ----------------------------------------------------------------------------

/** A job for one frame. Addresses are DMA addresses (what the engine issues). */
export type TestEngineCommand =
  | { op: 'copy'; src: number; dst: number; len: number }
  | { op: 'fill'; dst: number; len: number; byte: number }
  | { op: 'checksum'; src: number; len: number }
  /** Every `periodNs`: `len` bytes at `dst`, first word the write's sequence number (1, 2, …), the rest `pattern`. */
  | { op: 'periodic'; dst: number; len: number; pattern: number; periodNs: number };

export interface FrameOptions {
  /** Which frame (default: the first idle one). */
  frame?: number;
  /** Index into the engine's stream IDs (default 0). */
  stream?: number;
  /** Issue with this substream ID (PASID). */
  ssid?: number;
  priv?: boolean;
  /** Reads are instruction fetches. */
  exec?: boolean;
  /** Interrupt when the frame ends (default true; `wait` polls otherwise). */
  irq?: boolean;
  /**
   * Keep issuing after a failed transaction (CTRL.CONT), as a device that never checks its
   * completions does: the failed pass is abandoned and the next one starts on time. Fault storms.
   */
  continueOnError?: boolean;
}

export type FrameState = (typeof STATES)[number];
export type FrameDmaStatus = 'ok' | 'bus-error' | 'abort' | 'fault' | 'terminated' | 'not-issued' | 'config';

export interface FrameStatus {
  frame: number;
  state: FrameState;
  /** The failing transaction's outcome ('config': the engine rejected the programming). */
  dmaStatus: FrameDmaStatus;
  /** Why the programming was rejected, when dmaStatus is 'config'. */
  configError: string | null;
  /** The failing transaction was a write. */
  faultWrite: boolean;
  /** Address the failing transaction was issued at. */
  faultAddr: number;
  /** Completed passes: 1 after a one-shot command, the number of periodic writes so far. */
  iterations: number;
  /** CRC-32 of the source after a checksum. */
  checksum: number;
  bytesDone: number;
  /** Failed transactions of this run (a `continueOnError` frame keeps counting while it runs). */
  failures: number;
}

/** A DMA buffer: the CPU reaches it at `cpuAddr` (the linear map), the engine at `dma`. */
export interface DmaBuffer {
  readonly dma: number;
  readonly cpuAddr: number;
  readonly size: number;
  readonly what: string;
}

export interface DmaTestEngineDriverOptions {
  /** Build the driver with `.shutdown` (default true); false builds one that has none. */
  shutdown?: boolean;
  /** Driver name (default "dma-test-engine"). */
  name?: string;
  /**
   * Stop frames a previous kernel left running when the driver probes (the `dma-test-engine.
   * reset_on_probe` parameter), as drivers that reset their device at probe do; default false:
   * they are reported and left alone.
   */
  resetOnProbe?: boolean;
}

// ---- The per-device state ------------------------------------------------------------------

type LiveBuffer = DmaBuffer;

/** One bound engine (kernel: the driver's drvdata). */
export class TestEngine {
  readonly numFrames: number;
  readonly streamIds: readonly number[];
  readonly ssidBits: number;
  readonly canStall: boolean;
  /** Interrupts handled (IRQ_STATUS non-zero). */
  irqCount = 0;

  private readonly waiters: (() => boolean)[][];
  private readonly irqEnabled: boolean[];
  private readonly buffers = new Set<LiveBuffer>();
  private irqAction: IrqAction | null = null;

  constructor(
    readonly dev: Device,
    private readonly io: IoMem,
  ) {
    const id = io.readl(TE_ID);
    if (id !== TE_ID_VALUE) throw new KernelError('ENODEV', `${dev.name}: ID register reads ${hex(id)}, not a DMA test engine (${hex(TE_ID_VALUE)})`);
    const cfg = io.readl(TE_CFG);
    this.numFrames = cfg & 0xff;
    const numStreams = (cfg >>> 8) & 0xff;
    this.ssidBits = (cfg >>> 16) & 0x1f;
    this.canStall = ((cfg >>> 24) & 1) === 1;
    if (this.numFrames === 0 || this.numFrames * TE_FRAME_STRIDE > TE_ID) {
      throw new KernelError('ENODEV', `${dev.name}: CFG reports ${this.numFrames} frames, expected 1..15`);
    }
    const ids: number[] = [];
    for (let i = 0; i < numStreams; i++) ids.push(io.readl(TE_STREAMID_BASE + 4 * i));
    this.streamIds = ids;
    this.waiters = Array.from({ length: this.numFrames }, () => []);
    this.irqEnabled = new Array<boolean>(this.numFrames).fill(false);
  }

  private get port(): CpuPort {
    return this.dev.port;
  }

  /** @internal probe: route the engine's interrupt here. */
  _attachIrq(action: IrqAction): void {
    this.irqAction = action;
  }

  // ---- buffers -------------------------------------------------------------------------------

  /** A zeroed, physically contiguous DMA buffer of `size` bytes (at most 2 MiB). // kernel: dma_alloc_coherent() */
  async allocBuffer(size: number, what = 'test-engine buffer'): Promise<DmaBuffer> {
    const a = await dmaAllocCoherent(this.dev, size);
    const buf: LiveBuffer = Object.freeze({ dma: a.dmaAddr, cpuAddr: a.cpuAddr, size, what });
    this.buffers.add(buf);
    return buf;
  }

  /** // kernel: dma_free_coherent() */
  async freeBuffer(buf: DmaBuffer): Promise<void> {
    if (!this.buffers.has(buf)) throw new KernelError('EINVAL', `${this.dev.name}: buffer at DMA ${hex(buf.dma)} is not a live buffer of this engine`);
    this.buffers.delete(buf);
    await dmaFreeCoherent(this.dev, buf.size, buf.cpuAddr, buf.dma);
  }

  /** Live buffers of this engine. */
  get liveBuffers(): readonly DmaBuffer[] {
    return [...this.buffers];
  }

  /** CPU read of a buffer's bytes. */
  readBuffer(buf: DmaBuffer, offset = 0, len = buf.size - offset): Uint8Array {
    this.checkRange(buf, offset, len);
    return this.port.ram.read(buf.cpuAddr + offset, len);
  }

  /** CPU write into a buffer. */
  writeBuffer(buf: DmaBuffer, offset: number, data: Uint8Array): void {
    this.checkRange(buf, offset, data.length);
    this.port.ram.write(buf.cpuAddr + offset, data);
  }

  // ---- frames --------------------------------------------------------------------------------

  /** Program a frame and ring its doorbell; returns the frame. The engine works in the background. */
  start(cmd: TestEngineCommand, opts: FrameOptions = {}): number {
    const frame = opts.frame ?? this.idleFrame();
    this.checkFrame(frame);
    if (this.state(frame) === 'running') throw new KernelError('EBUSY', `${this.dev.name}: frame ${frame} is running`);
    const stream = opts.stream ?? 0;
    if (!Number.isInteger(stream) || stream < 0 || stream >= this.streamIds.length) {
      throw new KernelError('EINVAL', `${this.dev.name}: stream index ${stream} outside 0..${this.streamIds.length - 1}`);
    }
    if (opts.ssid !== undefined && (!Number.isInteger(opts.ssid) || opts.ssid < 0 || opts.ssid >= 2 ** this.ssidBits)) {
      throw new KernelError('EINVAL', `${this.dev.name}: substream ID ${opts.ssid} does not fit the engine's ${this.ssidBits} SSID bits`);
    }
    const { op, src, dst, pattern, period } = this.encode(cmd);
    const irq = opts.irq ?? true;
    const base = frame * TE_FRAME_STRIDE;
    const w = (v: number, reg: number): void => this.io.writel(v, base + reg);
    w(op, TE_FRAME_CMD);
    w((irq ? TE_CTRL_IRQ_EN : 0) | (opts.continueOnError ? TE_CTRL_CONT : 0), TE_FRAME_CTRL);
    w(stream, TE_FRAME_STREAM);
    w(opts.ssid !== undefined ? (TE_SUBSTREAM_SSV | opts.ssid) >>> 0 : 0, TE_FRAME_SUBSTREAM);
    w(src >>> 0, TE_FRAME_SRC_LO);
    w(Math.floor(src / 2 ** 32), TE_FRAME_SRC_HI);
    w(dst >>> 0, TE_FRAME_DST_LO);
    w(Math.floor(dst / 2 ** 32), TE_FRAME_DST_HI);
    w(cmd.len, TE_FRAME_LENGTH);
    w(pattern, TE_FRAME_PATTERN);
    w(period, TE_FRAME_PERIOD);
    w((opts.priv ? TE_ATTR_PRIV : 0) | (opts.exec ? TE_ATTR_INST : 0), TE_FRAME_ATTR);
    this.irqEnabled[frame] = irq;
    w(1, TE_FRAME_DOORBELL);
    this.dev.core.log.debug(this.dev.name, `frame ${frame}: ${cmd.op} of ${cmd.len} bytes started`, LOG_NS);
    return frame;
  }

  /** The frame's status registers, decoded. */
  status(frame: number): FrameStatus {
    this.checkFrame(frame);
    const base = frame * TE_FRAME_STRIDE;
    const st = this.io.readl(base + TE_FRAME_STATUS);
    const dma = (st >>> TE_STATUS_DMA_SHIFT) & TE_STATUS_DMA_MASK;
    const cfgErr = (st >>> TE_STATUS_CFG_SHIFT) & TE_STATUS_CFG_MASK;
    return {
      frame,
      state: STATES[st & TE_STATUS_STATE_MASK]!,
      dmaStatus: DMA_STATUSES[dma] ?? 'config',
      configError: cfgErr !== 0 ? (CONFIG_ERRORS[cfgErr] ?? `error ${cfgErr}`) : null,
      faultWrite: (st & TE_STATUS_FAULT_WRITE) !== 0,
      faultAddr: this.io.readl(base + TE_FRAME_FAIL_ADDR_HI) * 2 ** 32 + this.io.readl(base + TE_FRAME_FAIL_ADDR_LO),
      iterations: this.io.readl(base + TE_FRAME_ITERATIONS),
      checksum: this.io.readl(base + TE_FRAME_CHECKSUM),
      bytesDone: this.io.readl(base + TE_FRAME_BYTES_DONE),
      failures: this.io.readl(base + TE_FRAME_FAILURES),
    };
  }

  /**
   * Wait until the frame is no longer running (on the interrupt, or by polling if the frame runs
   * without one) and return its status; ETIMEDOUT after `timeoutNs` of virtual time.
   */
  wait(frame: number, timeoutNs = TE_WAIT_TIMEOUT_NS): Promise<FrameStatus> {
    this.checkFrame(frame);
    if (!(timeoutNs > 0) || !Number.isFinite(timeoutNs)) {
      return Promise.reject(new KernelError('EINVAL', `${this.dev.name}: wait timeout ${timeoutNs} ns must be finite and > 0`));
    }
    const now = this.status(frame);
    if (now.state !== 'running') return Promise.resolve(now);
    if (!this.irqAction || !this.irqEnabled[frame]) {
      return readlPollTimeout(this.io, frame * TE_FRAME_STRIDE + TE_FRAME_STATUS, (v) => (v & TE_STATUS_STATE_MASK) !== 1, 1, Math.max(1, timeoutNs / 1000)).then(
        () => this.status(frame),
        (e: unknown) => Promise.reject(this.timeoutError(frame, timeoutNs, e)),
      );
    }
    return new Promise<FrameStatus>((resolve, reject) => {
      let settled = false;
      const waiter = (): boolean => {
        if (settled) return true;
        const s = this.status(frame);
        if (s.state === 'running') return false;
        settled = true;
        resolve(s);
        return true;
      };
      const timer = this.port.startTimer(timeoutNs, () => {
        if (settled) return;
        const list = this.waiters[frame]!;
        const i = list.indexOf(waiter);
        if (i >= 0) list.splice(i, 1);
        // The interrupt may be on its way: the status register decides.
        if (!waiter()) {
          settled = true;
          reject(this.timeoutError(frame, timeoutNs, null));
        }
      });
      // The interrupt path settles the wait; the timer then has nothing left to do.
      this.waiters[frame]!.push(() => {
        const done = waiter();
        if (done) timer.cancel();
        return done;
      });
    });
  }

  /** Start, wait, and return the frame to idle. EIO (naming status and address) if the frame fails. */
  async run(cmd: TestEngineCommand, opts: FrameOptions = {}, timeoutNs = TE_WAIT_TIMEOUT_NS): Promise<FrameStatus> {
    if (cmd.op === 'periodic') throw new KernelError('EINVAL', `${this.dev.name}: a periodic write never completes; use start() and stop()`);
    const frame = this.start(cmd, opts);
    const st = await this.wait(frame, timeoutNs);
    this.release(frame);
    if (st.state === 'error') throw new KernelError('EIO', `${this.dev.name}: frame ${frame} ${cmd.op} failed: ${describeFailure(st)}`);
    return st;
  }

  /** Return a finished (DONE/ERROR) frame to idle so it can be reused. EBUSY while it runs. */
  release(frame: number): void {
    this.checkFrame(frame);
    if (this.state(frame) === 'running') throw new KernelError('EBUSY', `${this.dev.name}: frame ${frame} is running; stop it first`);
    this.io.writel(0, frame * TE_FRAME_STRIDE + TE_FRAME_DOORBELL);
  }

  /**
   * Stop a frame: ring DOORBELL=0, wait until it no longer runs (an outstanding transaction
   * completes first), then leave it idle. Returns its status once stopped: 'idle' with the run's
   * counters, or 'error' if the outstanding transaction failed (the frame is idle all the same).
   */
  async stop(frame: number): Promise<FrameStatus> {
    this.checkFrame(frame);
    this.io.writel(0, frame * TE_FRAME_STRIDE + TE_FRAME_DOORBELL);
    await this.pollNotRunning(frame);
    const st = this.status(frame);
    this.io.writel(0, frame * TE_FRAME_STRIDE + TE_FRAME_DOORBELL);
    return st;
  }

  /** Stop every frame that is not idle and wait until all of them are. */
  async stopAll(): Promise<void> {
    const busy = this.activeFrames();
    for (const f of busy) this.io.writel(0, f * TE_FRAME_STRIDE + TE_FRAME_DOORBELL);
    for (const f of busy) {
      await this.pollNotRunning(f);
      this.io.writel(0, f * TE_FRAME_STRIDE + TE_FRAME_DOORBELL);
    }
  }

  /** Frames that are not idle (running, or finished and not released). */
  activeFrames(): number[] {
    const out: number[] = [];
    for (let f = 0; f < this.numFrames; f++) if (this.state(f) !== 'idle') out.push(f);
    return out;
  }

  /** Frames currently running. */
  runningFrames(): number[] {
    const out: number[] = [];
    for (let f = 0; f < this.numFrames; f++) if (this.state(f) === 'running') out.push(f);
    return out;
  }

  /** @internal The interrupt handler. */
  _handleIrq(): IrqReturn {
    const pending = this.io.readl(TE_IRQ_STATUS);
    if (pending === 0) return 'none';
    this.io.writel(pending, TE_IRQ_STATUS);
    this.irqCount++;
    for (let f = 0; f < this.numFrames; f++) {
      if ((pending & (1 << f)) === 0) continue;
      const list = this.waiters[f]!;
      this.waiters[f] = list.filter((w) => !w());
    }
    return 'handled';
  }

  /** @internal remove/shutdown: stop everything, acknowledge stale interrupts. */
  async _quiesce(): Promise<void> {
    await this.stopAll();
    this.io.writel(0xffff_ffff, TE_IRQ_STATUS);
  }

  /** @internal remove: free every buffer still allocated. */
  async _freeAllBuffers(): Promise<void> {
    for (const b of [...this.buffers]) await this.freeBuffer(b);
  }

  // ---- internals -----------------------------------------------------------------------------

  private state(frame: number): FrameState {
    return STATES[this.io.readl(frame * TE_FRAME_STRIDE + TE_FRAME_STATUS) & TE_STATUS_STATE_MASK]!;
  }

  private idleFrame(): number {
    for (let f = 0; f < this.numFrames; f++) if (this.state(f) === 'idle') return f;
    throw new KernelError('EBUSY', `${this.dev.name}: all ${this.numFrames} frames are busy`);
  }

  private async pollNotRunning(frame: number): Promise<void> {
    try {
      await readlPollTimeout(this.io, frame * TE_FRAME_STRIDE + TE_FRAME_STATUS, (v) => (v & TE_STATUS_STATE_MASK) !== 1, TE_STOP_POLL_US, TE_STOP_TIMEOUT_US);
    } catch (e) {
      if (!(e instanceof KernelError) || e.errno !== 'ETIMEDOUT') throw e;
      throw new KernelError('ETIMEDOUT', `${this.dev.name}: frame ${frame} still running ${TE_STOP_TIMEOUT_US} us after it was told to stop`);
    }
  }

  /** A poll's own ETIMEDOUT becomes one naming the frame; anything else passes through. */
  private timeoutError(frame: number, timeoutNs: number, cause: unknown): unknown {
    if (cause !== null && !(cause instanceof KernelError && cause.errno === 'ETIMEDOUT')) return cause;
    return new KernelError('ETIMEDOUT', `${this.dev.name}: frame ${frame} still running after ${timeoutNs} ns`);
  }

  private checkFrame(frame: number): void {
    if (!Number.isInteger(frame) || frame < 0 || frame >= this.numFrames) {
      throw new KernelError('EINVAL', `${this.dev.name}: frame ${frame} outside 0..${this.numFrames - 1}`);
    }
  }

  private checkRange(buf: DmaBuffer, offset: number, len: number): void {
    if (!Number.isInteger(offset) || !Number.isInteger(len) || offset < 0 || len < 0 || offset + len > buf.size) {
      throw new KernelError('EINVAL', `${this.dev.name}: [${offset}, +${len}) is outside the ${buf.size}-byte buffer ${buf.what}`);
    }
  }

  /** Validate a command and turn it into register values. */
  private encode(cmd: TestEngineCommand): { op: number; src: number; dst: number; pattern: number; period: number } {
    const where = `${this.dev.name}: ${cmd.op}`;
    const addr = (name: string, v: number): number => {
      if (!Number.isSafeInteger(v) || v < 0) throw new KernelError('EINVAL', `${where}: ${name} address ${v} is not a DMA address`);
      return v;
    };
    if (!Number.isInteger(cmd.len) || cmd.len <= 0 || cmd.len > 0xffff_ffff) {
      throw new KernelError('EINVAL', `${where}: length ${cmd.len} outside 1..0xffffffff`);
    }
    switch (cmd.op) {
      case 'copy':
        return { op: TE_OP_COPY, src: addr('source', cmd.src), dst: addr('destination', cmd.dst), pattern: 0, period: 0 };
      case 'fill':
        if (!Number.isInteger(cmd.byte) || cmd.byte < 0 || cmd.byte > 0xff) throw new KernelError('EINVAL', `${where}: fill byte ${cmd.byte} outside 0..255`);
        return { op: TE_OP_FILL, src: 0, dst: addr('destination', cmd.dst), pattern: cmd.byte, period: 0 };
      case 'checksum':
        return { op: TE_OP_CHECKSUM, src: addr('source', cmd.src), dst: 0, pattern: 0, period: 0 };
      case 'periodic':
        if (!Number.isInteger(cmd.pattern) || cmd.pattern < 0 || cmd.pattern > 0xffff_ffff) {
          throw new KernelError('EINVAL', `${where}: pattern ${cmd.pattern} is not a u32`);
        }
        if (!Number.isInteger(cmd.periodNs) || cmd.periodNs <= 0 || cmd.periodNs > 0xffff_ffff) {
          throw new KernelError('EINVAL', `${where}: period ${cmd.periodNs} ns outside 1..0xffffffff`);
        }
        if (cmd.dst % 4 !== 0 || cmd.len % 4 !== 0) {
          throw new KernelError('EINVAL', `${where}: destination ${hex(cmd.dst)} and length ${cmd.len} must be multiples of 4`);
        }
        return { op: TE_OP_PERIODIC_WRITE, src: 0, dst: addr('destination', cmd.dst), pattern: cmd.pattern, period: cmd.periodNs };
    }
  }
}

function describeFailure(st: FrameStatus): string {
  if (st.dmaStatus === 'config') return `programming rejected (${st.configError ?? 'unknown reason'})`;
  return `${st.dmaStatus} on a ${st.faultWrite ? 'write' : 'read'} at ${hex(st.faultAddr)} after ${st.bytesDone} bytes`;
}

// ---- The driver ------------------------------------------------------------------------------

/** The engine bound to `dev`; ENODEV if this driver is not bound to it. */
export function testEngineOf(dev: Device): TestEngine {
  if (dev.driverData instanceof TestEngine) return dev.driverData;
  throw new KernelError('ENODEV', `${dev.name} is not a DMA test engine bound to its driver (driver: ${dev.driver?.name ?? 'none'})`);
}

/** The engine whose device is named `name` (its DT path) in this kernel. */
export function findTestEngine(core: DriverCore, name: string): TestEngine {
  const dev = core.findDevice(name);
  if (!dev) throw new KernelError('ENODEV', `no device ${name} in kernel ${core.instance}`);
  return testEngineOf(dev);
}

/** Every bound test engine of a kernel, in probe order. */
export function testEngines(core: DriverCore): TestEngine[] {
  return core.probeOrder.filter((d) => d.driverData instanceof TestEngine).map((d) => d.driverData as TestEngine);
}

// kernel: the driver's .probe()
async function probe(dev: PlatformDevice, resetOnProbe: boolean): Promise<void> {
  const io = devmPlatformIoremapResource(dev, 0);
  if (io.size < TE_REGION_SIZE) {
    throw new KernelError('EINVAL', `${dev.name}: register region ${io.toString()} is smaller than ${hex(TE_REGION_SIZE)} bytes`);
  }
  const engine = new TestEngine(dev, io);
  // Frames a previous kernel left running: reported, and stopped only when asked to reset at probe.
  const inherited = engine.runningFrames();
  if (inherited.length > 0) {
    dev.core.log.warn(dev.name, `running frames left by a previous kernel: ${inherited.join(', ')}`, LOG_NS);
    if (resetOnProbe) {
      await engine._quiesce();
      dev.core.log.info(dev.name, `reset at probe: stopped ${inherited.length} inherited frame(s)`, LOG_NS);
    }
  }
  const irq = platformGetIrqOptional(dev, 0);
  if (irq) engine._attachIrq(devmRequestIrq(dev, irq, () => engine._handleIrq(), DMA_TEST_ENGINE_DRIVER_NAME));
  dev.driverData = engine;
  dev.core.log.info(
    dev.name,
    `DMA test engine: ${engine.numFrames} frames, stream IDs [${engine.streamIds.map(hex).join(', ')}], ${engine.ssidBits} SSID bits${irq ? '' : ', no interrupt'}`,
    LOG_NS,
  );
}

/** Build the driver; `{ shutdown: false }` builds one without `.shutdown`. */
export function createDmaTestEngineDriver(opts: DmaTestEngineDriverOptions = {}): PlatformDriver {
  const base = {
    name: opts.name ?? DMA_TEST_ENGINE_DRIVER_NAME,
    bus: platformBus,
    ofMatchTable: ['iommu-sim,dma-test-engine'],
    probe: (dev: PlatformDevice) => probe(dev, opts.resetOnProbe ?? false),
    // kernel: the driver's .remove()
    remove: async (dev: PlatformDevice) => {
      const engine = testEngineOf(dev);
      await engine._quiesce();
      await engine._freeAllBuffers();
    },
  };
  if (opts.shutdown === false) return base;
  return {
    ...base,
    // kernel: the driver's .shutdown(): no DMA may outlive the kernel.
    shutdown: async (dev: PlatformDevice) => {
      const engine = testEngineOf(dev);
      const running = engine.runningFrames();
      await engine._quiesce();
      dev.core.log.info(dev.name, `shutdown: stopped ${running.length} running frame(s)`, LOG_NS);
    },
  };
}
