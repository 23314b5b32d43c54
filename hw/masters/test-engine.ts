/**
 * The DMA test engine (`iommu-sim,dma-test-engine`): a platform DMA master programmed through MMIO
 * frames, in the spirit of Arm's SMMUv3TestEngine. Each frame is an independent job slot: software
 * writes a command, addresses and a stream selection, rings the frame's doorbell, and the frame
 * issues DMA through the engine's upstream port (its IOMMU, or the interconnect) until it is done,
 * fails or is stopped. Nothing here knows about kernels: a frame left running keeps running when the
 * kernel that started it is gone (the kexec experiments rely on exactly that).
 *
 * Register map (64 KiB). Frames 0..14 sit at n * 0x1000; frame 15 (0xF000) is the global page.
 * All registers are 32-bit; a 64-bit access is split by the interconnect, low word first.
 *
 * | offset | name          | access | fields                                                            |
 * | ------ | ------------- | ------ | ----------------------------------------------------------------- |
 * | 0x000  | CMD           | RW     | [3:0] OPCODE: 0 NONE, 1 COPY, 2 FILL, 3 CHECKSUM, 4 PERIODIC_WRITE |
 * | 0x004  | CTRL          | RW     | [0] IRQ_EN: raise the engine interrupt when the frame ends;       |
 * |        |               |        | [1] CONT: keep issuing after a failed transaction (fault storms)  |
 * | 0x008  | STREAM        | RW     | [7:0] INDEX: which of the engine's stream IDs (see STREAMID(n))  |
 * | 0x00C  | SUBSTREAM     | RW     | [19:0] SUBSTREAMID, [31] SSV (issue with a substream ID)          |
 * | 0x010  | SRC_LO/HI     | RW     | source address [31:0] / [63:32] (COPY, CHECKSUM)                  |
 * | 0x018  | DST_LO/HI     | RW     | destination address [31:0] / [63:32] (COPY, FILL, PERIODIC_WRITE) |
 * | 0x020  | LENGTH        | RW     | bytes per pass (non-zero)                                          |
 * | 0x024  | PATTERN       | RW     | FILL: byte [7:0]; PERIODIC_WRITE: the u32 written to words 1..n   |
 * | 0x028  | PERIOD        | RW     | PERIODIC_WRITE: virtual nanoseconds between writes (non-zero)      |
 * | 0x02C  | ATTR          | RW     | [0] PRIV (privileged), [1] INST (instruction fetch, reads only)   |
 * | 0x030  | DOORBELL      | WO     | [0] RUN: 1 starts the programmed command, 0 stops (reads as 0)   |
 * | 0x034  | STATUS        | RO     | [1:0] STATE 0 IDLE 1 RUNNING 2 DONE 3 ERROR; [7:4] DMA_STATUS;    |
 * |        |               |        | [8] FAULT_WRITE; [15:12] CFG_ERR                                  |
 * | 0x038  | FAIL_ADDR_LO/HI | RO   | input address of the failing transaction [31:0] / [63:32]        |
 * | 0x040  | ITERATIONS    | RO     | completed passes (1 after a COPY/FILL/CHECKSUM, n periodic writes) |
 * | 0x044  | CHECKSUM      | RO     | CHECKSUM: CRC-32 (IEEE 802.3, reflected 0xEDB88320, init and     |
 * |        |               |        | final XOR 0xFFFFFFFF: zlib's crc32) of the LENGTH bytes at SRC   |
 * | 0x048  | BYTES_DONE    | RO     | bytes completed in the current (or last) pass                     |
 * | 0x04C  | FAILURES      | RO     | failed transactions of this run (CONT frames keep counting)       |
 * | 0xF000 | ID            | RO     | 0x54450001 ("TE", revision 1)                                     |
 * | 0xF004 | CFG           | RO     | [7:0] NUM_FRAMES (15), [15:8] NUM_STREAMS, [20:16] SSID_BITS,    |
 * |        |               |        | [24] STALL (firmware says dma-can-stall)                         |
 * | 0xF008 | IRQ_STATUS    | RW1C   | bit n: frame n ended (DONE or ERROR) with CTRL.IRQ_EN set         |
 * | 0xF100 | STREAMID(n)   | RO     | stream ID of stream index n, n < NUM_STREAMS                       |
 *
 * DMA_STATUS: 0 OK, 1 BUS_ERROR, 2 ABORT, 3 FAULT, 4 TERMINATED, 5 NOT_ISSUED (the DmaStatus of the
 * failing transaction), 15 CONFIG (the programming was rejected; CFG_ERR says why: 1 BAD_CMD,
 * 2 BAD_STREAM, 3 BAD_SSID, 4 BAD_LENGTH, 5 BAD_PERIOD, 6 BAD_ALIGN, 7 BAD_ADDR).
 *
 * Behaviour:
 * - The doorbell only latches the programming; all work happens in scheduler steps. The first step
 *   runs `startLatencyNs` after the doorbell and validates the programming (a bad one ends the frame
 *   in ERROR with DMA_STATUS=CONFIG). Then each step issues one transaction of at most 4 KiB that
 *   never crosses a 4 KiB boundary; the next step follows `transactionNs` after it completes. A
 *   transaction that stalls pauses its frame until the IOMMU completes it.
 * - COPY reads a chunk at SRC then writes it at DST; FILL writes PATTERN[7:0]; CHECKSUM reads and
 *   folds into CRC-32; PERIODIC_WRITE writes LENGTH bytes at DST (DST 4-byte aligned, LENGTH a
 *   multiple of 4) whose first word is the write's sequence number (1, 2, …) and every other word
 *   PATTERN, little-endian, starting a pass every PERIOD ns (or as soon as the last one finished, if
 *   that took longer), until stopped.
 * - A failed transaction ends the frame in ERROR with DMA_STATUS, FAULT_WRITE and FAIL_ADDR, unless
 *   CTRL.CONT is set: then the frame latches DMA_STATUS, FAULT_WRITE and FAIL_ADDR of the latest
 *   failure, counts it in FAILURES and goes on as a device that does not check its completions
 *   would: the rest of the pass is abandoned (not counted in ITERATIONS); PERIODIC_WRITE starts its
 *   next pass on its period, other commands end DONE with FAILURES > 0. No interrupt is raised per
 *   failure. DONE and
 *   ERROR set the frame's IRQ_STATUS bit and raise the interrupt when CTRL.IRQ_EN is set. The line
 *   behaves as level-sensitive: it is raised whenever a bit is set, and again after an IRQ_STATUS
 *   write that leaves bits set.
 * - DOORBELL=0 on a running frame stops it at its next step (after an outstanding transaction
 *   completes), leaving it IDLE with no interrupt (if that transaction fails, the frame ends in ERROR
 *   instead); on a DONE/ERROR frame it returns it to IDLE. The result registers keep the last run's
 *   values until the next start.
 * - Writes to a running frame's programming registers, and DOORBELL=1 on a running frame, are ignored
 *   (logged). Unknown offsets read as zero and ignore writes.
 *
 * Not modelled: MSIs (the engine has one wired interrupt), multiple outstanding transactions per
 * frame, transaction attributes beyond PRIV/INST (no cacheability, no memory type), secure streams.
 *
 * One file over ~700 lines on purpose: one MMIO device, whose register map (this header's table and
 * the declarations below it, about a third of the file) belongs next to the frame state machine it
 * describes.
 */
import { vtime } from '../vtime.js';
import createDebug from 'debug';
import type { DmaCompletion, DmaStatus } from '../dma.js';
import type { IrqLine } from '../gic.js';
import type { EventHandle } from '../scheduler.js';
import type { DmaOptions, MasterContext, StreamRoute } from './dma-master.js';
import { PlatformDmaMaster } from './platform.js';
import { field } from '../bitfield.js';

const log = createDebug('iommu:hw:test-engine');

export const DMA_TEST_ENGINE_COMPATIBLE = 'iommu-sim,dma-test-engine';

// ---- Layout ----------------------------------------------------------------------------------
export const TE_REGION_SIZE = 0x1_0000;
export const TE_FRAME_SIZE = 0x1000;
export const TE_NUM_FRAMES = 15;
/** The global page (frame 15). */
export const TE_GLOBAL_BASE = 0xf000;
/** Largest transaction, and the boundary no transaction crosses. */
export const TE_MAX_TRANSACTION = 0x1000;
/** Stream IDs the STREAMID(n) table can show. */
export const TE_MAX_STREAMS = 64;

const hex = (v: number): string => `0x${v.toString(16)}`;

/** Short for the register tables below: `fld(name, hi, lo)` (hw/bitfield.ts). */
const fld = field;

// ---- Frame registers -------------------------------------------------------------------------
export const TE_CMD = 0x000;
export const TE_CMD_OPCODE = fld('CMD.OPCODE', 3, 0);
export const TE_OP_NONE = 0;
export const TE_OP_COPY = 1;
export const TE_OP_FILL = 2;
export const TE_OP_CHECKSUM = 3;
export const TE_OP_PERIODIC_WRITE = 4;

export const TE_CTRL = 0x004;
export const TE_CTRL_IRQ_EN = fld('CTRL.IRQ_EN', 0, 0);
export const TE_CTRL_CONT = fld('CTRL.CONT', 1, 1);

export const TE_STREAM = 0x008;
export const TE_STREAM_INDEX = fld('STREAM.INDEX', 7, 0);

export const TE_SUBSTREAM = 0x00c;
export const TE_SUBSTREAM_SUBSTREAMID = fld('SUBSTREAM.SUBSTREAMID', 19, 0);
export const TE_SUBSTREAM_SSV = fld('SUBSTREAM.SSV', 31, 31);

export const TE_SRC_LO = 0x010;
export const TE_SRC_HI = 0x014;
export const TE_DST_LO = 0x018;
export const TE_DST_HI = 0x01c;
export const TE_LENGTH = 0x020;
export const TE_PATTERN = 0x024;
export const TE_PERIOD = 0x028;

export const TE_ATTR = 0x02c;
export const TE_ATTR_PRIV = fld('ATTR.PRIV', 0, 0);
export const TE_ATTR_INST = fld('ATTR.INST', 1, 1);

export const TE_DOORBELL = 0x030;
export const TE_DOORBELL_RUN = fld('DOORBELL.RUN', 0, 0);

export const TE_STATUS = 0x034;
export const TE_STATUS_STATE = fld('STATUS.STATE', 1, 0);
export const TE_STATE_IDLE = 0;
export const TE_STATE_RUNNING = 1;
export const TE_STATE_DONE = 2;
export const TE_STATE_ERROR = 3;
export const TE_STATUS_DMA_STATUS = fld('STATUS.DMA_STATUS', 7, 4);
export const TE_DMA_OK = 0;
export const TE_DMA_BUS_ERROR = 1;
export const TE_DMA_ABORT = 2;
export const TE_DMA_FAULT = 3;
export const TE_DMA_TERMINATED = 4;
export const TE_DMA_NOT_ISSUED = 5;
export const TE_DMA_CONFIG = 15;
export const TE_STATUS_FAULT_WRITE = fld('STATUS.FAULT_WRITE', 8, 8);
export const TE_STATUS_CFG_ERR = fld('STATUS.CFG_ERR', 15, 12);
export const TE_CFG_ERR_NONE = 0;
export const TE_CFG_ERR_BAD_CMD = 1;
export const TE_CFG_ERR_BAD_STREAM = 2;
export const TE_CFG_ERR_BAD_SSID = 3;
export const TE_CFG_ERR_BAD_LENGTH = 4;
export const TE_CFG_ERR_BAD_PERIOD = 5;
export const TE_CFG_ERR_BAD_ALIGN = 6;
export const TE_CFG_ERR_BAD_ADDR = 7;

export const TE_FAIL_ADDR_LO = 0x038;
export const TE_FAIL_ADDR_HI = 0x03c;
export const TE_ITERATIONS = 0x040;
export const TE_CHECKSUM = 0x044;
export const TE_BYTES_DONE = 0x048;
export const TE_FAILURES = 0x04c;

// ---- Global page -----------------------------------------------------------------------------
export const TE_ID = TE_GLOBAL_BASE + 0x000;
export const TE_ID_VALUE = 0x5445_0001;
export const TE_CFG = TE_GLOBAL_BASE + 0x004;
export const TE_CFG_NUM_FRAMES = fld('CFG.NUM_FRAMES', 7, 0);
export const TE_CFG_NUM_STREAMS = fld('CFG.NUM_STREAMS', 15, 8);
export const TE_CFG_SSID_BITS = fld('CFG.SSID_BITS', 20, 16);
export const TE_CFG_STALL = fld('CFG.STALL', 24, 24);
export const TE_IRQ_STATUS = TE_GLOBAL_BASE + 0x008;
export const TE_STREAMID_BASE = TE_GLOBAL_BASE + 0x100;
/** Offset of STREAMID(n). */
export const teStreamIdReg = (n: number): number => TE_STREAMID_BASE + 4 * n;

/** Offset of register `reg` of frame `n`. */
export const teFrameReg = (n: number, reg: number): number => n * TE_FRAME_SIZE + reg;

/** DMA_STATUS code of a failed transaction's DmaStatus. */
export function teDmaStatusCode(s: DmaStatus): number {
  switch (s) {
    case 'ok':
      return TE_DMA_OK;
    case 'bus-error':
      return TE_DMA_BUS_ERROR;
    case 'abort':
      return TE_DMA_ABORT;
    case 'fault':
      return TE_DMA_FAULT;
    case 'terminated':
      return TE_DMA_TERMINATED;
    case 'not-issued':
      return TE_DMA_NOT_ISSUED;
  }
}

// ---- CRC-32 ----------------------------------------------------------------------------------
const CRC_TABLE = ((): Uint32Array => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb8_8320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** Fold `data` into a running (pre-inverted) CRC-32 state. */
function crc32Update(state: number, data: Uint8Array): number {
  let c = state;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return c >>> 0;
}

// ---- The model -------------------------------------------------------------------------------

/** What the engine needs of the machine: a master's context plus the scheduler. */
export interface TestEngineContext extends MasterContext {
  schedule(delayNs: number, fn: () => void, label: string): EventHandle;
}

export interface TestEngineOptions {
  canStall?: boolean;
  pasidBits?: number;
  /** The engine's interrupt, or null when firmware gives none. */
  irq?: IrqLine | null;
  /** Virtual time from a doorbell to the frame's first step (default 100 ns). */
  startLatencyNs?: number;
  /** Virtual time a transaction's step costs before the next one (default 100 ns). */
  transactionNs?: number;
  /** Virtual time from DOORBELL=0 to an idle frame when no transaction is outstanding (default 50 ns). */
  stopLatencyNs?: number;
}

/** One frame's registers and run state. */
class Frame {
  // Programming registers.
  cmd = 0;
  ctrl = 0;
  stream = 0;
  substream = 0;
  srcLo = 0;
  srcHi = 0;
  dstLo = 0;
  dstHi = 0;
  length = 0;
  pattern = 0;
  period = 0;
  attr = 0;
  // Result registers.
  state = TE_STATE_IDLE;
  dmaStatus = TE_DMA_OK;
  faultWrite = 0;
  cfgErr = TE_CFG_ERR_NONE;
  failAddr = 0;
  iterations = 0;
  crc = 0xffff_ffff;
  bytesDone = 0;
  failures = 0;
  // Run state, latched at the doorbell.
  op = TE_OP_NONE;
  src = 0;
  dst = 0;
  len = 0;
  validated = false;
  stopRequested = false;
  inflight = false;
  /** COPY: the chunk read and not yet written. */
  copyData: Uint8Array | null = null;
  /** The outstanding transaction: input address, length, direction. */
  txnAddr = 0;
  txnLen = 0;
  txnWrite = false;
  /** PERIODIC_WRITE: when the current pass started. */
  passStart = 0;
  event: EventHandle | null = null;
  readonly readOpts: DmaOptions = {};
  readonly writeOpts: DmaOptions = {};
  // A frame's transfer buffer is made on its first transfer: most frames of most engines never run,
  // and a machine with hundreds of engines would otherwise hold 60 KiB of idle buffers for each.
  private scratchBytes: Uint8Array | null = null;
  private scratchDv: DataView | null = null;
  /** The byte every byte of the transfer buffer holds (a FILL wrote it), or -1: FILL steps with the same PATTERN need not write it again. */
  scratchFill = -1;
  get scratch(): Uint8Array {
    return (this.scratchBytes ??= new Uint8Array(TE_MAX_TRANSACTION));
  }
  get scratchView(): DataView {
    return (this.scratchDv ??= new DataView(this.scratch.buffer));
  }
  readonly label: string;
  step: () => void = () => {};
  done: (c: DmaCompletion) => void = () => {};

  constructor(
    readonly index: number,
    engine: string,
  ) {
    this.label = `test-engine ${engine} frame ${index}`;
  }

  get statusWord(): number {
    return (
      (TE_STATUS_STATE.encode(this.state) |
        TE_STATUS_DMA_STATUS.encode(this.dmaStatus) |
        TE_STATUS_FAULT_WRITE.encode(this.faultWrite) |
        TE_STATUS_CFG_ERR.encode(this.cfgErr)) >>>
      0
    );
  }
}

export class DmaTestEngine extends PlatformDmaMaster {
  private readonly frames: Frame[] = [];
  private irqStatus = 0;
  private readonly irq: IrqLine | null;
  private readonly startLatencyNs: number;
  private readonly transactionNs: number;
  private readonly stopLatencyNs: number;

  constructor(
    name: string,
    routes: readonly StreamRoute[],
    protected override readonly ctx: TestEngineContext,
    opts: TestEngineOptions = {},
  ) {
    super(name, routes, ctx, { canStall: opts.canStall ?? false, pasidBits: opts.pasidBits ?? 0 });
    if (routes.length > TE_MAX_STREAMS) {
      throw new RangeError(`DMA test engine ${name}: ${routes.length} streams, at most ${TE_MAX_STREAMS} are supported`);
    }
    this.irq = opts.irq ?? null;
    this.startLatencyNs = opts.startLatencyNs ?? 100;
    this.transactionNs = opts.transactionNs ?? 100;
    this.stopLatencyNs = opts.stopLatencyNs ?? 50;
    for (const [what, v] of [
      ['startLatencyNs', this.startLatencyNs],
      ['transactionNs', this.transactionNs],
      ['stopLatencyNs', this.stopLatencyNs],
    ] as const) {
      if (!(v >= 0) || !Number.isFinite(v)) throw new RangeError(`DMA test engine ${name}: ${what} ${v} is not a finite number >= 0`);
    }
    for (let i = 0; i < TE_NUM_FRAMES; i++) {
      const f = new Frame(i, name);
      f.step = () => this.stepFrame(f);
      f.done = (c) => this.complete(f, c);
      this.frames.push(f);
    }
  }

  /** The interrupt line the engine raises, if any. */
  get irqLine(): IrqLine | null {
    return this.irq;
  }

  /** Frames currently RUNNING (for tests and reports). */
  get runningFrames(): number[] {
    return this.frames.filter((f) => f.state === TE_STATE_RUNNING).map((f) => f.index);
  }

  // ---- MMIO ----------------------------------------------------------------------------------

  read32(offset: number): number {
    return this.peek32(offset);
  }

  peek32(offset: number): number {
    if (offset >= TE_GLOBAL_BASE) return this.readGlobal(offset);
    if (offset >= TE_REGION_SIZE) return 0;
    const f = this.frames[Math.floor(offset / TE_FRAME_SIZE)];
    switch (offset % TE_FRAME_SIZE) {
      case TE_CMD:
        return f.cmd;
      case TE_CTRL:
        return f.ctrl;
      case TE_STREAM:
        return f.stream;
      case TE_SUBSTREAM:
        return f.substream;
      case TE_SRC_LO:
        return f.srcLo;
      case TE_SRC_HI:
        return f.srcHi;
      case TE_DST_LO:
        return f.dstLo;
      case TE_DST_HI:
        return f.dstHi;
      case TE_LENGTH:
        return f.length;
      case TE_PATTERN:
        return f.pattern;
      case TE_PERIOD:
        return f.period;
      case TE_ATTR:
        return f.attr;
      case TE_STATUS:
        return f.statusWord;
      case TE_FAIL_ADDR_LO:
        return f.failAddr >>> 0;
      case TE_FAIL_ADDR_HI:
        return Math.floor(f.failAddr / 2 ** 32) >>> 0;
      case TE_ITERATIONS:
        return f.iterations >>> 0;
      case TE_CHECKSUM:
        return (f.crc ^ 0xffff_ffff) >>> 0;
      case TE_BYTES_DONE:
        return f.bytesDone >>> 0;
      case TE_FAILURES:
        return f.failures >>> 0;
      default:
        return 0;
    }
  }

  write32(offset: number, value: number): void {
    const v = value >>> 0;
    if (offset >= TE_GLOBAL_BASE && offset < TE_REGION_SIZE) {
      this.writeGlobal(offset, v);
      return;
    }
    if (offset >= TE_REGION_SIZE) {
      if (log.enabled) log('%s %s: write %s to unknown offset %s ignored', vtime(this.ctx.now()), this.name, hex(v), hex(offset));
      return;
    }
    const f = this.frames[Math.floor(offset / TE_FRAME_SIZE)];
    const reg = offset % TE_FRAME_SIZE;
    if (reg === TE_DOORBELL) {
      this.doorbell(f, TE_DOORBELL_RUN.get(v) === 1);
      return;
    }
    if (isProgrammingReg(reg) && f.state === TE_STATE_RUNNING) {
      if (log.enabled) log('%s %s: frame %d is running: write %s to offset %s ignored', vtime(this.ctx.now()), this.name, f.index, hex(v), hex(reg));
      return;
    }
    switch (reg) {
      case TE_CMD:
        f.cmd = v & 0xf;
        return;
      case TE_CTRL:
        f.ctrl = v & 0x3;
        return;
      case TE_STREAM:
        f.stream = v & 0xff;
        return;
      case TE_SUBSTREAM:
        f.substream = v & 0x800f_ffff;
        return;
      case TE_SRC_LO:
        f.srcLo = v;
        return;
      case TE_SRC_HI:
        f.srcHi = v;
        return;
      case TE_DST_LO:
        f.dstLo = v;
        return;
      case TE_DST_HI:
        f.dstHi = v;
        return;
      case TE_LENGTH:
        f.length = v;
        return;
      case TE_PATTERN:
        f.pattern = v;
        return;
      case TE_PERIOD:
        f.period = v;
        return;
      case TE_ATTR:
        f.attr = v & 0x3;
        return;
      default:
        if (log.enabled) log('%s %s: write %s to read-only or unknown frame offset %s ignored', vtime(this.ctx.now()), this.name, hex(v), hex(offset));
    }
  }

  private readGlobal(offset: number): number {
    switch (offset) {
      case TE_ID:
        return TE_ID_VALUE;
      case TE_CFG:
        return (
          (TE_CFG_NUM_FRAMES.encode(TE_NUM_FRAMES) |
            TE_CFG_NUM_STREAMS.encode(this.streams.length) |
            TE_CFG_SSID_BITS.encode(this.pasidBits) |
            TE_CFG_STALL.encode(this.canStall ? 1 : 0)) >>>
          0
        );
      case TE_IRQ_STATUS:
        return this.irqStatus;
      default:
        if (offset >= TE_STREAMID_BASE && offset < teStreamIdReg(this.streams.length) && offset % 4 === 0) {
          return this.streams[(offset - TE_STREAMID_BASE) / 4].streamId >>> 0;
        }
        return 0;
    }
  }

  private writeGlobal(offset: number, v: number): void {
    if (offset !== TE_IRQ_STATUS) {
      if (log.enabled) log('%s %s: write %s to read-only or unknown global offset %s ignored', vtime(this.ctx.now()), this.name, hex(v), hex(offset));
      return;
    }
    this.irqStatus = (this.irqStatus & ~v) >>> 0;
    // Level-sensitive: still asserted while any bit stays set.
    if (this.irqStatus !== 0) this.irq?.raise();
  }

  // ---- Frame execution ---------------------------------------------------------------------

  private doorbell(f: Frame, run: boolean): void {
    if (run) {
      if (f.state === TE_STATE_RUNNING) {
        if (log.enabled) log('%s %s: frame %d is already running: DOORBELL=1 ignored', vtime(this.ctx.now()), this.name, f.index);
        return;
      }
      this.start(f);
      return;
    }
    if (f.state === TE_STATE_RUNNING) {
      if (f.stopRequested) return;
      f.stopRequested = true;
      // An outstanding transaction ends the frame when it completes; otherwise a step does.
      if (!f.inflight) {
        f.event?.cancel();
        f.event = this.ctx.schedule(this.stopLatencyNs, f.step, f.label);
      }
      return;
    }
    f.state = TE_STATE_IDLE;
  }

  /** Latch the programming and schedule the first step. */
  private start(f: Frame): void {
    f.state = TE_STATE_RUNNING;
    f.dmaStatus = TE_DMA_OK;
    f.faultWrite = 0;
    f.cfgErr = TE_CFG_ERR_NONE;
    f.failAddr = 0;
    f.iterations = 0;
    f.crc = 0xffff_ffff;
    f.bytesDone = 0;
    f.failures = 0;
    f.op = TE_CMD_OPCODE.get(f.cmd);
    f.src = f.srcHi * 2 ** 32 + f.srcLo;
    f.dst = f.dstHi * 2 ** 32 + f.dstLo;
    f.len = f.length;
    f.validated = false;
    f.stopRequested = false;
    f.inflight = false;
    f.copyData = null;
    f.passStart = 0;
    if (this.ctx.trace.active) this.traceFrame(f, 'start');
    f.event = this.ctx.schedule(this.startLatencyNs, f.step, f.label);
  }

  /** Why the latched programming cannot run (a CFG_ERR code), or NONE. */
  private validate(f: Frame): number {
    if (f.op > TE_OP_PERIODIC_WRITE) return TE_CFG_ERR_BAD_CMD;
    if (f.op === TE_OP_NONE) return TE_CFG_ERR_NONE;
    const streamIndex = TE_STREAM_INDEX.get(f.stream);
    if (streamIndex >= this.streams.length) return TE_CFG_ERR_BAD_STREAM;
    const ssv = TE_SUBSTREAM_SSV.get(f.substream) === 1;
    const ssid = TE_SUBSTREAM_SUBSTREAMID.get(f.substream);
    if (ssv && ssid >= 2 ** this.pasidBits) return TE_CFG_ERR_BAD_SSID;
    if (f.len === 0) return TE_CFG_ERR_BAD_LENGTH;
    const usesSrc = f.op === TE_OP_COPY || f.op === TE_OP_CHECKSUM;
    const usesDst = f.op !== TE_OP_CHECKSUM;
    if ((usesSrc && f.src + f.len > Number.MAX_SAFE_INTEGER) || (usesDst && f.dst + f.len > Number.MAX_SAFE_INTEGER)) {
      return TE_CFG_ERR_BAD_ADDR;
    }
    if (f.op === TE_OP_PERIODIC_WRITE) {
      if (f.period === 0) return TE_CFG_ERR_BAD_PERIOD;
      if (f.dst % 4 !== 0 || f.len % 4 !== 0) return TE_CFG_ERR_BAD_ALIGN;
    }
    const streamId = this.streams[streamIndex].streamId;
    const priv = TE_ATTR_PRIV.get(f.attr) === 1;
    for (const o of [f.readOpts, f.writeOpts]) {
      o.streamId = streamId;
      o.priv = priv;
      if (ssv) o.ssid = ssid;
      else delete o.ssid;
    }
    f.readOpts.exec = TE_ATTR_INST.get(f.attr) === 1;
    f.writeOpts.exec = false;
    return TE_CFG_ERR_NONE;
  }

  private stepFrame(f: Frame): void {
    f.event = null;
    if (f.state !== TE_STATE_RUNNING || f.inflight) return;
    if (f.stopRequested) {
      this.finish(f, TE_STATE_IDLE);
      return;
    }
    if (!f.validated) {
      const err = this.validate(f);
      if (err !== TE_CFG_ERR_NONE) {
        f.dmaStatus = TE_DMA_CONFIG;
        f.cfgErr = err;
        this.finish(f, TE_STATE_ERROR);
        return;
      }
      f.validated = true;
      if (f.op === TE_OP_NONE) {
        this.finish(f, TE_STATE_DONE);
        return;
      }
    }
    const off = f.bytesDone;
    const remaining = f.len - off;
    switch (f.op) {
      case TE_OP_COPY: {
        if (f.copyData) {
          this.issueWrite(f, f.dst + off, f.copyData);
          return;
        }
        const n = Math.min(chunk(f.src + off, remaining), chunk(f.dst + off, remaining));
        this.issueRead(f, f.src + off, n);
        return;
      }
      case TE_OP_FILL: {
        const n = chunk(f.dst + off, remaining);
        const byte = f.pattern & 0xff;
        if (f.scratchFill !== byte) {
          f.scratch.fill(byte);
          f.scratchFill = byte;
        }
        this.issueWrite(f, f.dst + off, scratchOf(f, n));
        return;
      }
      case TE_OP_CHECKSUM:
        this.issueRead(f, f.src + off, chunk(f.src + off, remaining));
        return;
      case TE_OP_PERIODIC_WRITE: {
        if (off === 0) f.passStart = this.ctx.now();
        const n = chunk(f.dst + off, remaining);
        const view = f.scratchView;
        f.scratchFill = -1;
        const seq = (f.iterations + 1) >>> 0;
        for (let i = 0; i < n; i += 4) view.setUint32(i, off + i === 0 ? seq : f.pattern, true);
        this.issueWrite(f, f.dst + off, scratchOf(f, n));
        return;
      }
    }
  }

  private issueRead(f: Frame, addr: number, len: number): void {
    f.inflight = true;
    f.txnAddr = addr;
    f.txnLen = len;
    f.txnWrite = false;
    this.submitRead(addr, len, f.readOpts, f.done);
  }

  private issueWrite(f: Frame, addr: number, data: Uint8Array): void {
    f.inflight = true;
    f.txnAddr = addr;
    f.txnLen = data.length;
    f.txnWrite = true;
    this.submitWrite(addr, data, f.writeOpts, f.done);
  }

  /** A transaction of frame `f` completed (synchronously in its step, or later after a stall). */
  private complete(f: Frame, c: DmaCompletion): void {
    f.inflight = false;
    if (f.state !== TE_STATE_RUNNING) return;
    let failedPass = false;
    if (c.status !== 'ok') {
      f.dmaStatus = teDmaStatusCode(c.status);
      f.faultWrite = f.txnWrite ? 1 : 0;
      f.failAddr = f.txnAddr;
      f.copyData = null;
      f.failures = (f.failures + 1) >>> 0;
      if (TE_CTRL_CONT.get(f.ctrl) === 0 || f.stopRequested) {
        this.finish(f, TE_STATE_ERROR, c.detail);
        return;
      }
      // CONT: the pass is abandoned; the frame carries on with the next one.
      f.bytesDone = f.len;
      failedPass = true;
    } else if (f.op === TE_OP_COPY && !f.txnWrite) {
      f.copyData = c.data ?? new Uint8Array(f.txnLen);
    } else {
      if (f.op === TE_OP_CHECKSUM && c.data) f.crc = crc32Update(f.crc, c.data);
      f.copyData = null;
      f.bytesDone += f.txnLen;
    }
    if (f.stopRequested) {
      f.event = this.ctx.schedule(this.stopLatencyNs, f.step, f.label);
      return;
    }
    if (f.bytesDone < f.len) {
      f.event = this.ctx.schedule(this.transactionNs, f.step, f.label);
      return;
    }
    if (!failedPass) f.iterations++;
    if (f.op !== TE_OP_PERIODIC_WRITE) {
      this.finish(f, TE_STATE_DONE);
      return;
    }
    f.bytesDone = 0;
    const now = this.ctx.now();
    const next = Math.max(f.passStart + f.period, now + this.transactionNs);
    f.event = this.ctx.schedule(next - now, f.step, f.label);
  }

  /** End a run: IDLE after a stop (no interrupt), DONE or ERROR (interrupt if enabled). */
  private finish(f: Frame, state: number, detail?: string): void {
    f.event?.cancel();
    f.event = null;
    f.state = state;
    f.stopRequested = false;
    if (state === TE_STATE_ERROR) {
      if (log.enabled) log('%s %s: frame %d error: DMA_STATUS %d CFG_ERR %d at %s%s', vtime(this.ctx.now()), this.name, f.index, f.dmaStatus, f.cfgErr, hex(f.failAddr), detail ? `: ${detail}` : '');
    }
    if (this.ctx.trace.active) this.traceFrame(f, state === TE_STATE_IDLE ? 'stopped' : state === TE_STATE_DONE ? 'done' : 'error');
    if (state === TE_STATE_IDLE || TE_CTRL_IRQ_EN.get(f.ctrl) === 0) return;
    this.irqStatus = (this.irqStatus | (1 << f.index)) >>> 0;
    this.irq?.raise();
  }

  /** A `custom` trace event "test-engine start|done|error|stopped" with the frame's registers. */
  private traceFrame(f: Frame, what: 'start' | 'done' | 'error' | 'stopped'): void {
    this.ctx.trace.emit({
      kind: 'custom',
      time: this.ctx.now(),
      track: this.name,
      name: `test-engine ${what}` as const,
      args: { frame: f.index, op: f.op, iterations: f.iterations, dmaStatus: f.dmaStatus, cfgErr: f.cfgErr, failAddr: f.failAddr },
    });
  }
}

/** The first `n` bytes of the frame's transfer buffer (the buffer itself for a whole-buffer transfer: no view to make). */
function scratchOf(f: Frame, n: number): Uint8Array {
  const b = f.scratch;
  return n === b.length ? b : b.subarray(0, n);
}

/** Registers software may not change while the frame runs. */
function isProgrammingReg(reg: number): boolean {
  return reg <= TE_ATTR;
}

/** Length of the next transaction at `addr`: at most `remaining`, never crossing 4 KiB. */
function chunk(addr: number, remaining: number): number {
  // (addr & 0xfff: its offset in the 4 KiB line by integer bits; validated addresses are safe non-negative integers.)
  return Math.min(remaining, TE_MAX_TRANSACTION - (addr & (TE_MAX_TRANSACTION - 1)));
}
