/**
 * DMA test engine conformance: driven only through MMIO, memory and the interrupt line, never
 * through the model's methods. A fake IOMMU model in front of one engine records the transactions,
 * holds (stalls) those the test asks it to, and faults a chosen page.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DmaDone, DmaRequest } from '../../hw/dma.js';
import { registerIommuModel } from '../../hw/iommu-models.js';
import { Machine } from '../../hw/machine.js';
import { reg as dtReg, type DtBuilder } from '../../bus/of/dt-builder.js';
import { board } from '../lib/board.js';

const RAM = 0x8000_0000;
const RAM_SIZE = 0x100_0000;
/** An engine straight on the interconnect (no `iommus`). */
const DIRECT = 0x1000_0000;
/** An engine behind the fake IOMMU, two streams, 4 SSID bits, can stall. */
const BEHIND = 0x1001_0000;
const DIRECT_SPI = 10;
const BEHIND_SPI = 11;

// The register map, written out again from the documented table (not imported from the model).
const FRAME = 0x1000;
const CMD = 0x000;
const CTRL = 0x004;
const STREAM = 0x008;
const SUBSTREAM = 0x00c;
const SRC_LO = 0x010;
const SRC_HI = 0x014;
const DST_LO = 0x018;
const DST_HI = 0x01c;
const LENGTH = 0x020;
const PATTERN = 0x024;
const PERIOD = 0x028;
const ATTR = 0x02c;
const DOORBELL = 0x030;
const STATUS = 0x034;
const FAIL_ADDR_LO = 0x038;
const FAIL_ADDR_HI = 0x03c;
const ITERATIONS = 0x040;
const CHECKSUM = 0x044;
const BYTES_DONE = 0x048;
const FAILURES = 0x04c;
const CTRL_IRQ_EN = 1 << 0;
const CTRL_CONT = 1 << 1;
const ID = 0xf000;
const CFG = 0xf004;
const IRQ_STATUS = 0xf008;
const STREAMID0 = 0xf100;
const OP = { NONE: 0, COPY: 1, FILL: 2, CHECKSUM: 3, PERIODIC: 4 } as const;
const STATE = { IDLE: 0, RUNNING: 1, DONE: 2, ERROR: 3 } as const;

function engineBoard(): DtBuilder {
  const { b } = board({ ram: [{ base: RAM, size: RAM_SIZE }] });
  const iommu = b.node('/iommu@9000000', { compatible: 'test,te-iommu', reg: dtReg([0x900_0000, 0x1000]), '#iommu-cells': 1 });
  b.node('/dma@10000000', {
    compatible: 'iommu-sim,dma-test-engine',
    reg: dtReg([DIRECT, 0x1_0000]),
    interrupts: [0, DIRECT_SPI, 4],
  });
  b.node('/dma@10010000', {
    compatible: 'iommu-sim,dma-test-engine',
    reg: dtReg([BEHIND, 0x1_0000]),
    interrupts: [0, BEHIND_SPI, 4],
    iommus: [iommu, 0x42, iommu, 0x43],
    'dma-can-stall': true,
    'pasid-num-bits': 4,
  });
  return b;
}

/** The fake IOMMU's state: what it saw, which page it faults, which transactions it holds. */
interface FakeIommu {
  requests: DmaRequest[];
  faultPage: number | null;
  holdWrites: boolean;
  held: { req: DmaRequest; done: DmaDone }[];
}

let iommu: FakeIommu;
let unregister: () => void;

beforeEach(() => {
  iommu = { requests: [], faultPage: null, holdWrites: false, held: [] };
  unregister = registerIommuModel(
    ['test,te-iommu'],
    (ctx) => ({
      status: 'modelled',
      model: 'te-iommu',
      mmio: [],
      portFor: () => ({
        submit: (req: DmaRequest, done: DmaDone) => {
          iommu.requests.push({ ...req, data: req.data ? req.data.slice() : undefined });
          if (iommu.faultPage !== null && Math.floor(req.addr / 0x1000) === iommu.faultPage / 0x1000) {
            done({ status: 'fault', detail: 'test fault' });
            return;
          }
          if (req.write && iommu.holdWrites) {
            iommu.held.push({ req, done });
            return;
          }
          done(ctx.machine.interconnect.access(req));
        },
      }),
    }),
    'te-iommu',
  );
});

afterEach(() => unregister());

/** Release the transactions the fake IOMMU holds, performing them now. */
function releaseHeld(m: Machine): void {
  for (const h of iommu.held.splice(0)) h.done(m.interconnect.access(h.req));
}

const machine = (): Machine => Machine.fromDeviceTree(engineBoard().build(), { seed: 7, irqLatencyNs: 20 });

interface Program {
  cmd: number;
  src?: number;
  dst?: number;
  length: number;
  pattern?: number;
  period?: number;
  irq?: boolean;
  stream?: number;
  substream?: number;
  attr?: number;
}

function program(m: Machine, engine: number, frame: number, p: Program): void {
  const w = (reg: number, v: number): void => m.cpu.mmioWrite32(engine + frame * FRAME + reg, v);
  w(CMD, p.cmd);
  w(CTRL, p.irq === false ? 0 : 1);
  w(STREAM, p.stream ?? 0);
  w(SUBSTREAM, p.substream ?? 0);
  w(SRC_LO, (p.src ?? 0) >>> 0);
  w(SRC_HI, Math.floor((p.src ?? 0) / 2 ** 32));
  w(DST_LO, (p.dst ?? 0) >>> 0);
  w(DST_HI, Math.floor((p.dst ?? 0) / 2 ** 32));
  w(LENGTH, p.length);
  w(PATTERN, p.pattern ?? 0);
  w(PERIOD, p.period ?? 0);
  w(ATTR, p.attr ?? 0);
}

const reg = (m: Machine, engine: number, frame: number, r: number): number => m.cpu.mmioRead32(engine + frame * FRAME + r);
const ring = (m: Machine, engine: number, frame: number, run: 0 | 1): void => m.cpu.mmioWrite32(engine + frame * FRAME + DOORBELL, run);
const state = (m: Machine, engine: number, frame: number): number => reg(m, engine, frame, STATUS) & 0x3;
const dmaStatus = (m: Machine, engine: number, frame: number): number => (reg(m, engine, frame, STATUS) >>> 4) & 0xf;
const cfgErr = (m: Machine, engine: number, frame: number): number => (reg(m, engine, frame, STATUS) >>> 12) & 0xf;
const settle = (m: Machine): number => m.scheduler.runSyncUntilIdle();

/** Bitwise CRC-32 (IEEE, reflected): an independent reference for the engine's CHECKSUM. */
function crc32(data: Uint8Array): number {
  let c = 0xffff_ffff;
  for (const b of data) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb8_8320 : c >>> 1;
  }
  return (c ^ 0xffff_ffff) >>> 0;
}

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

describe('DMA test engine: firmware and identification', () => {
  it('is made for every engine node, with and without an IOMMU, and identifies itself', () => {
    const m = machine();
    expect([...m.testEngines.keys()]).toEqual(['/dma@10000000', '/dma@10010000']);
    expect(m.masters.get('/dma@10010000')).toBe(m.testEngines.get('/dma@10010000'));
    const direct = m.testEngines.get('/dma@10000000')!;
    expect(direct.streams.map((s) => [s.streamId, s.iommu])).toEqual([[0, null]]);
    expect(direct.port).toBe(m.interconnect);
    const behind = m.testEngines.get('/dma@10010000')!;
    expect(behind.streams.map((s) => [s.streamId, s.iommu])).toEqual([
      [0x42, '/iommu@9000000'],
      [0x43, '/iommu@9000000'],
    ]);
    expect(m.cpu.mmioRead32(DIRECT + ID)).toBe(0x5445_0001);
    // CFG: NUM_FRAMES 15, NUM_STREAMS, SSID_BITS, STALL.
    expect(m.cpu.mmioRead32(DIRECT + CFG)).toBe(15 | (1 << 8));
    expect(m.cpu.mmioRead32(BEHIND + CFG)).toBe(15 | (2 << 8) | (4 << 16) | (1 << 24));
    expect(m.cpu.mmioRead32(BEHIND + STREAMID0)).toBe(0x42);
    expect(m.cpu.mmioRead32(BEHIND + STREAMID0 + 4)).toBe(0x43);
    expect(m.cpu.mmioRead32(BEHIND + STREAMID0 + 8)).toBe(0);
    expect(m.describe().masters.find((x) => x.node === '/dma@10000000')).toEqual({
      node: '/dma@10000000',
      iommus: [],
      streams: [{ streamId: 0, iommu: null }],
      canStall: false,
      pasidBits: 0,
    });
    expect(m.skippedNodes).toEqual([]);
  });

  it('skips an engine whose register region is too small, with a warning', () => {
    const b = engineBoard();
    b.node('/dma@20000000', { compatible: 'iommu-sim,dma-test-engine', reg: dtReg([0x2000_0000, 0x1000]) });
    const m = Machine.fromDeviceTree(b.build(), { seed: 1 });
    expect(m.testEngines.has('/dma@20000000')).toBe(false);
    expect(m.warnings.some((w) => w.includes('/dma@20000000') && w.includes('smaller than'))).toBe(true);
    expect(m.skippedNodes.map((s) => s.path)).toEqual(['/dma@20000000']);
  });
});

describe('DMA test engine: commands', () => {
  it('FILL writes the pattern byte over exactly the range, in <=4 KiB transactions that cross no 4 KiB line', () => {
    const m = machine();
    const writes: [number, number][] = [];
    m.interconnect.onRamWrite((_master, pa, len) => writes.push([pa, len]));
    const dst = RAM + 0x1ffd;
    const len = 0x2009;
    program(m, DIRECT, 0, { cmd: OP.FILL, dst, length: len, pattern: 0x1234_56c3 });
    ring(m, DIRECT, 0, 1);
    // The doorbell write did no work.
    expect(state(m, DIRECT, 0)).toBe(STATE.RUNNING);
    expect(writes).toEqual([]);
    expect(m.memory.read8(dst)).toBe(0);
    settle(m);
    expect(state(m, DIRECT, 0)).toBe(STATE.DONE);
    expect(dmaStatus(m, DIRECT, 0)).toBe(0);
    expect(reg(m, DIRECT, 0, ITERATIONS)).toBe(1);
    expect(reg(m, DIRECT, 0, BYTES_DONE)).toBe(len);
    expect(m.memory.read8(dst - 1)).toBe(0);
    expect(m.memory.read8(dst + len)).toBe(0);
    expect([...m.memory.read(dst, len)].every((b) => b === 0xc3)).toBe(true);
    expect(writes).toEqual([
      [RAM + 0x1ffd, 3],
      [RAM + 0x2000, 0x1000],
      [RAM + 0x3000, 0x1000],
      [RAM + 0x4000, 6],
    ]);
  });

  it('COPY moves the source bytes to the destination', () => {
    const m = machine();
    const src = RAM + 0x10_0100;
    const dst = RAM + 0x20_0e00;
    const data = bytes(0x3333, 42);
    m.memory.write(src, data);
    program(m, DIRECT, 2, { cmd: OP.COPY, src, dst, length: data.length });
    ring(m, DIRECT, 2, 1);
    settle(m);
    expect(state(m, DIRECT, 2)).toBe(STATE.DONE);
    expect(m.memory.read(dst, data.length)).toEqual(data);
    expect(m.memory.read8(dst + data.length)).toBe(0);
  });

  it('CHECKSUM leaves the CRC-32 of the source in CHECKSUM', () => {
    const m = machine();
    const src = RAM + 0x30_0000;
    m.memory.write(src, new TextEncoder().encode('123456789'));
    program(m, DIRECT, 1, { cmd: OP.CHECKSUM, src, length: 9 });
    ring(m, DIRECT, 1, 1);
    settle(m);
    expect(reg(m, DIRECT, 1, CHECKSUM)).toBe(0xcbf4_3926); // the standard CRC-32 check value
    const data = bytes(0x2345, 9);
    m.memory.write(src + 0x801, data);
    program(m, DIRECT, 1, { cmd: OP.CHECKSUM, src: src + 0x801, length: data.length });
    ring(m, DIRECT, 1, 1);
    expect(reg(m, DIRECT, 1, CHECKSUM)).toBe(0); // reset at the start, not yet computed
    settle(m);
    expect(state(m, DIRECT, 1)).toBe(STATE.DONE);
    expect(reg(m, DIRECT, 1, CHECKSUM)).toBe(crc32(data));
  });

  it('traces each frame start and end, and each transaction as a dma event', () => {
    const m = machine();
    const events: { kind: string; name?: string; op?: string; len?: number; args?: Record<string, unknown> }[] = [];
    m.trace.subscribe((e) => events.push(e));
    program(m, DIRECT, 9, { cmd: OP.FILL, dst: RAM + 0x800, length: 0x1000, pattern: 4 });
    ring(m, DIRECT, 9, 1);
    settle(m);
    expect(events.filter((e) => e.kind === 'custom').map((e) => [e.name, e.args?.frame])).toEqual([
      ['test-engine start', 9],
      ['test-engine done', 9],
    ]);
    expect(events.filter((e) => e.kind === 'dma').map((e) => [e.op, e.len])).toEqual([
      ['write', 0x800],
      ['write', 0x800],
    ]);
  });

  it('NONE completes without issuing anything', () => {
    const m = machine();
    const before = m.testEngines.get('/dma@10000000')!.stats.issued;
    program(m, DIRECT, 0, { cmd: OP.NONE, length: 0 });
    ring(m, DIRECT, 0, 1);
    settle(m);
    expect(state(m, DIRECT, 0)).toBe(STATE.DONE);
    expect(m.testEngines.get('/dma@10000000')!.stats.issued).toBe(before);
  });

  it('PERIODIC_WRITE writes sequence number + pattern every PERIOD ns until stopped', () => {
    const m = machine();
    const dst = RAM + 0x40_0000;
    const times: number[] = [];
    m.interconnect.onRamWrite((_master, pa) => {
      if (pa === dst) times.push(m.scheduler.now);
    });
    program(m, DIRECT, 4, { cmd: OP.PERIODIC, dst, length: 16, pattern: 0xa5a5_0f0f, period: 10_000 });
    ring(m, DIRECT, 4, 1);
    m.scheduler.runSyncUntilIdle(35_000);
    expect(times).toHaveLength(4);
    expect(times.slice(1).map((t, i) => t - times[i])).toEqual([10_000, 10_000, 10_000]);
    expect(reg(m, DIRECT, 4, ITERATIONS)).toBe(4);
    expect(m.memory.read32(dst)).toBe(4);
    for (const k of [4, 8, 12]) expect(m.memory.read32(dst + k)).toBe(0xa5a5_0f0f);
    expect(m.memory.read32(dst + 16)).toBe(0);
    m.scheduler.runSyncUntilIdle(10_000);
    expect(m.memory.read32(dst)).toBe(5);
    expect(state(m, DIRECT, 4)).toBe(STATE.RUNNING);

    // Stop: takes effect in a later step, leaves the frame IDLE, raises nothing.
    ring(m, DIRECT, 4, 0);
    expect(state(m, DIRECT, 4)).toBe(STATE.RUNNING);
    m.scheduler.runSyncUntilIdle(1_000);
    expect(state(m, DIRECT, 4)).toBe(STATE.IDLE);
    expect(m.cpu.mmioRead32(DIRECT + IRQ_STATUS)).toBe(0);
    const n = times.length;
    m.scheduler.runSyncUntilIdle(100_000);
    expect(times).toHaveLength(n);
    expect(m.scheduler.pending).toBe(0);
    expect(reg(m, DIRECT, 4, ITERATIONS)).toBe(5);
  });

  it('one frame running FILL, PERIODIC_WRITE, then FILL again writes each run its own bytes', () => {
    const m = machine();
    const fill = (dst: number, pattern: number): void => {
      program(m, DIRECT, 5, { cmd: OP.FILL, dst, length: 0x1000, pattern });
      ring(m, DIRECT, 5, 1);
      settle(m);
      ring(m, DIRECT, 5, 0);
    };
    fill(RAM + 0x60_0000, 0x5a);
    fill(RAM + 0x60_1000, 0x5a);
    fill(RAM + 0x60_2000, 0x3c);
    program(m, DIRECT, 5, { cmd: OP.PERIODIC, dst: RAM + 0x60_3000, length: 0x1000, pattern: 0x1122_3344, period: 1_000_000 });
    ring(m, DIRECT, 5, 1);
    m.scheduler.runSyncUntilIdle(10_000);
    ring(m, DIRECT, 5, 0);
    settle(m);
    fill(RAM + 0x60_4000, 0x3c);
    const every = (pa: number, b: number): boolean => [...m.memory.read(pa, 0x1000)].every((x) => x === b);
    expect(every(RAM + 0x60_0000, 0x5a)).toBe(true);
    expect(every(RAM + 0x60_1000, 0x5a)).toBe(true);
    expect(every(RAM + 0x60_2000, 0x3c)).toBe(true);
    expect(m.memory.read32(RAM + 0x60_3000)).toBe(1);
    expect(m.memory.read32(RAM + 0x60_3ffc)).toBe(0x1122_3344);
    // The periodic run's words are gone from the transfer buffer: the last FILL wrote its pattern only.
    expect(every(RAM + 0x60_4000, 0x3c)).toBe(true);
  });

  it('PERIODIC_WRITE splits a long buffer and numbers each pass once', () => {
    const m = machine();
    const dst = RAM + 0x50_0800;
    program(m, DIRECT, 0, { cmd: OP.PERIODIC, dst, length: 0x1800, pattern: 7, period: 50_000 });
    ring(m, DIRECT, 0, 1);
    m.scheduler.runSyncUntilIdle(60_000);
    expect(m.memory.read32(dst)).toBe(2);
    expect(m.memory.read32(dst + 0x800)).toBe(7); // first word of the second transaction: pattern, not a sequence
    expect(m.memory.read32(dst + 0x17fc)).toBe(7);
    expect(m.memory.read32(dst + 0x1800)).toBe(0);
  });
});

describe('DMA test engine: errors and interrupts', () => {
  it('a bus error stops the frame in ERROR with the DMA status, direction and failing address', () => {
    const m = machine();
    const gic = m.gic('/intc@8000000');
    // A FILL that runs off the end of RAM: the first transaction lands, the second hits nothing.
    const dst = RAM + RAM_SIZE - 0x800;
    program(m, DIRECT, 3, { cmd: OP.FILL, dst, length: 0x1000, pattern: 0xee });
    ring(m, DIRECT, 3, 1);
    settle(m);
    expect(state(m, DIRECT, 3)).toBe(STATE.ERROR);
    expect(dmaStatus(m, DIRECT, 3)).toBe(1); // BUS_ERROR
    expect((reg(m, DIRECT, 3, STATUS) >>> 8) & 1).toBe(1); // FAULT_WRITE
    expect(reg(m, DIRECT, 3, FAIL_ADDR_LO)).toBe((RAM + RAM_SIZE) >>> 0);
    expect(reg(m, DIRECT, 3, FAIL_ADDR_HI)).toBe(0);
    expect(reg(m, DIRECT, 3, BYTES_DONE)).toBe(0x800);
    expect(m.memory.read8(RAM + RAM_SIZE - 1)).toBe(0xee);
    expect(m.cpu.mmioRead32(DIRECT + IRQ_STATUS)).toBe(1 << 3);
    expect(gic.stats([0, DIRECT_SPI, 4]).raised).toBe(1);

    // A read from a 64-bit hole: FAULT_WRITE clear, the high address word kept.
    const src = 0x12_3456_7000;
    program(m, DIRECT, 5, { cmd: OP.CHECKSUM, src, length: 8 });
    ring(m, DIRECT, 5, 1);
    settle(m);
    expect(state(m, DIRECT, 5)).toBe(STATE.ERROR);
    expect((reg(m, DIRECT, 5, STATUS) >>> 8) & 1).toBe(0);
    expect(reg(m, DIRECT, 5, FAIL_ADDR_LO)).toBe(0x3456_7000);
    expect(reg(m, DIRECT, 5, FAIL_ADDR_HI)).toBe(0x12);
  });

  it('an IOMMU fault is reported as FAULT with the input address', () => {
    const m = machine();
    iommu.faultPage = RAM + 0x7000;
    program(m, BEHIND, 0, { cmd: OP.FILL, dst: RAM + 0x6800, length: 0x1000, pattern: 1 });
    ring(m, BEHIND, 0, 1);
    settle(m);
    expect(state(m, BEHIND, 0)).toBe(STATE.ERROR);
    expect(dmaStatus(m, BEHIND, 0)).toBe(3); // FAULT
    expect(reg(m, BEHIND, 0, FAIL_ADDR_LO)).toBe((RAM + 0x7000) >>> 0);
    expect(reg(m, BEHIND, 0, BYTES_DONE)).toBe(0x800);
    expect(m.memory.read8(RAM + 0x6fff)).toBe(1);
    expect(m.memory.read8(RAM + 0x7000)).toBe(0);
  });

  it('CTRL.CONT: a periodic frame keeps issuing after failures, counts them, skips failed passes, raises nothing', () => {
    const m = machine();
    const dst = RAM + 0x9000;
    iommu.faultPage = dst;
    program(m, BEHIND, 2, { cmd: OP.PERIODIC, dst, length: 64, pattern: 0x1111_2222, period: 10_000 });
    m.cpu.mmioWrite32(BEHIND + 2 * FRAME + CTRL, CTRL_IRQ_EN | CTRL_CONT);
    expect(reg(m, BEHIND, 2, CTRL)).toBe(CTRL_IRQ_EN | CTRL_CONT);
    ring(m, BEHIND, 2, 1);
    m.scheduler.runSyncUntilIdle(45_000);
    // Passes at ~0, 10, 20, 30, 40 µs: five transactions issued, all faulted; the frame runs on.
    expect(iommu.requests.filter((r) => r.addr === dst)).toHaveLength(5);
    expect(state(m, BEHIND, 2)).toBe(STATE.RUNNING);
    expect(reg(m, BEHIND, 2, FAILURES)).toBe(5);
    expect(dmaStatus(m, BEHIND, 2)).toBe(3); // the latest failure: FAULT
    expect(reg(m, BEHIND, 2, FAIL_ADDR_LO)).toBe(dst >>> 0);
    expect(reg(m, BEHIND, 2, ITERATIONS)).toBe(0);
    expect(m.cpu.mmioRead32(BEHIND + IRQ_STATUS)).toBe(0);
    expect(m.memory.read32(dst)).toBe(0);
    // The fault goes away: the next pass lands, numbered 1 (failed passes are not counted).
    iommu.faultPage = null;
    m.scheduler.runSyncUntilIdle(10_000);
    expect(m.memory.read32(dst)).toBe(1);
    expect(m.memory.read32(dst + 4)).toBe(0x1111_2222);
    expect(reg(m, BEHIND, 2, ITERATIONS)).toBe(1);
    expect(reg(m, BEHIND, 2, FAILURES)).toBe(5);
    // A new run clears FAILURES; without CONT the first failure ends the frame in ERROR.
    ring(m, BEHIND, 2, 0);
    m.scheduler.runSyncUntilIdle(1_000);
    iommu.faultPage = dst;
    program(m, BEHIND, 2, { cmd: OP.PERIODIC, dst, length: 64, pattern: 1, period: 10_000 });
    ring(m, BEHIND, 2, 1);
    m.scheduler.runSyncUntilIdle(45_000);
    expect(state(m, BEHIND, 2)).toBe(STATE.ERROR);
    expect(reg(m, BEHIND, 2, FAILURES)).toBe(1);
  });

  it('CTRL.CONT on a one-pass command: the failed pass is abandoned and the frame ends DONE with FAILURES', () => {
    const m = machine();
    iommu.faultPage = RAM + 0x7000;
    program(m, BEHIND, 0, { cmd: OP.FILL, dst: RAM + 0x6800, length: 0x1000, pattern: 1 });
    m.cpu.mmioWrite32(BEHIND + CTRL, CTRL_IRQ_EN | CTRL_CONT);
    ring(m, BEHIND, 0, 1);
    settle(m);
    expect(state(m, BEHIND, 0)).toBe(STATE.DONE);
    expect(reg(m, BEHIND, 0, FAILURES)).toBe(1);
    expect(dmaStatus(m, BEHIND, 0)).toBe(3);
    expect(m.memory.read8(RAM + 0x7000)).toBe(0);
    expect(m.cpu.mmioRead32(BEHIND + IRQ_STATUS)).toBe(1);
  });

  it('IRQ_STATUS is write-1-to-clear, gated by CTRL.IRQ_EN, and the line stays asserted while bits remain', () => {
    const m = machine();
    const gic = m.gic('/intc@8000000');
    const spec = [0, DIRECT_SPI, 4];
    const delivered: number[] = [];
    m.cpu.requestIrq('/intc@8000000', spec, () => delivered.push(m.cpu.mmioRead32(DIRECT + IRQ_STATUS)));
    program(m, DIRECT, 0, { cmd: OP.FILL, dst: RAM, length: 4, pattern: 1 });
    program(m, DIRECT, 6, { cmd: OP.FILL, dst: RAM + 0x1000, length: 4, pattern: 2 });
    program(m, DIRECT, 7, { cmd: OP.FILL, dst: RAM + 0x2000, length: 4, pattern: 3, irq: false });
    ring(m, DIRECT, 0, 1);
    ring(m, DIRECT, 6, 1);
    ring(m, DIRECT, 7, 1);
    settle(m);
    expect([state(m, DIRECT, 0), state(m, DIRECT, 6), state(m, DIRECT, 7)]).toEqual([STATE.DONE, STATE.DONE, STATE.DONE]);
    expect(m.cpu.mmioRead32(DIRECT + IRQ_STATUS)).toBe((1 << 0) | (1 << 6));
    expect(delivered).toEqual([(1 << 0) | (1 << 6)]); // both raises merged into one delivery
    const raised = gic.stats(spec).raised;
    m.cpu.mmioWrite32(DIRECT + IRQ_STATUS, 1 << 0);
    expect(m.cpu.mmioRead32(DIRECT + IRQ_STATUS)).toBe(1 << 6);
    expect(gic.stats(spec).raised).toBe(raised + 1); // still asserted
    settle(m);
    expect(delivered).toEqual([(1 << 0) | (1 << 6), 1 << 6]);
    m.cpu.mmioWrite32(DIRECT + IRQ_STATUS, 0xffff_ffff);
    expect(m.cpu.mmioRead32(DIRECT + IRQ_STATUS)).toBe(0);
    expect(gic.stats(spec).raised).toBe(raised + 1);
    // DOORBELL=0 returns a finished frame to IDLE, keeping its results.
    ring(m, DIRECT, 6, 0);
    expect(state(m, DIRECT, 6)).toBe(STATE.IDLE);
    expect(reg(m, DIRECT, 6, ITERATIONS)).toBe(1);
  });

  it('rejects bad programming at the first step with DMA_STATUS=CONFIG and the reason', () => {
    const m = machine();
    const cases: [number, Program, number][] = [
      [DIRECT, { cmd: 9, dst: RAM, length: 4 }, 1], // BAD_CMD
      [DIRECT, { cmd: OP.FILL, dst: RAM, length: 4, stream: 1 }, 2], // BAD_STREAM: one stream only
      [DIRECT, { cmd: OP.FILL, dst: RAM, length: 4, substream: 0x8000_0001 }, 3], // BAD_SSID: no SSID bits
      [BEHIND, { cmd: OP.FILL, dst: RAM, length: 4, substream: 0x8000_0010 }, 3], // BAD_SSID: 4 bits only
      [DIRECT, { cmd: OP.COPY, src: RAM, dst: RAM + 0x1000, length: 0 }, 4], // BAD_LENGTH
      [DIRECT, { cmd: OP.PERIODIC, dst: RAM, length: 8, period: 0 }, 5], // BAD_PERIOD
      [DIRECT, { cmd: OP.PERIODIC, dst: RAM + 2, length: 8, period: 100 }, 6], // BAD_ALIGN
      [DIRECT, { cmd: OP.PERIODIC, dst: RAM, length: 6, period: 100 }, 6], // BAD_ALIGN
      [DIRECT, { cmd: OP.FILL, dst: 0xffff_ffff_ffff_f000, length: 4 }, 7], // BAD_ADDR
    ];
    for (const [engine, p, err] of cases) {
      program(m, engine, 8, p);
      ring(m, engine, 8, 1);
      expect(state(m, engine, 8)).toBe(STATE.RUNNING);
      settle(m);
      expect([state(m, engine, 8), dmaStatus(m, engine, 8), cfgErr(m, engine, 8)]).toEqual([STATE.ERROR, 15, err]);
    }
    expect(m.testEngines.get('/dma@10000000')!.stats.issued).toBe(0);
    expect(m.testEngines.get('/dma@10010000')!.stats.issued).toBe(0);
  });

  it('ignores reprogramming and a second doorbell while a frame runs', () => {
    const m = machine();
    const dst = RAM + 0x60_0000;
    program(m, DIRECT, 0, { cmd: OP.FILL, dst, length: 0x2000, pattern: 0x11 });
    ring(m, DIRECT, 0, 1);
    m.cpu.mmioWrite32(DIRECT + DST_LO, (RAM + 0x70_0000) >>> 0);
    m.cpu.mmioWrite32(DIRECT + PATTERN, 0x22);
    ring(m, DIRECT, 0, 1);
    expect(reg(m, DIRECT, 0, DST_LO)).toBe(dst >>> 0);
    settle(m);
    expect(m.memory.read8(dst + 0x1fff)).toBe(0x11);
    expect(m.memory.read8(RAM + 0x70_0000)).toBe(0);
    expect(reg(m, DIRECT, 0, ITERATIONS)).toBe(1);
  });
});

describe('DMA test engine behind an IOMMU', () => {
  it('issues on the selected stream with its SSID and attributes', () => {
    const m = machine();
    m.memory.write(RAM + 0x1000, bytes(16, 3));
    program(m, BEHIND, 0, { cmd: OP.COPY, src: RAM + 0x1000, dst: RAM + 0x2000, length: 16, stream: 1, substream: 0x8000_0005, attr: 0x3 });
    ring(m, BEHIND, 0, 1);
    settle(m);
    expect(state(m, BEHIND, 0)).toBe(STATE.DONE);
    expect(iommu.requests.map((r) => [r.master, r.streamId, r.ssidValid, r.ssid, r.write, r.exec, r.priv])).toEqual([
      ['/dma@10010000', 0x43, true, 5, false, true, true],
      ['/dma@10010000', 0x43, true, 5, true, false, true],
    ]);
    program(m, BEHIND, 1, { cmd: OP.FILL, dst: RAM + 0x3000, length: 4 });
    ring(m, BEHIND, 1, 1);
    settle(m);
    expect(iommu.requests[2]).toMatchObject({ streamId: 0x42, ssidValid: false, priv: false, exec: false });
  });

  it('a stalled transaction pauses its frame until it completes; a stop waits for it', () => {
    const m = machine();
    iommu.holdWrites = true;
    const dst = RAM + 0x80_0000;
    program(m, BEHIND, 2, { cmd: OP.FILL, dst, length: 0x3000, pattern: 0x5a });
    ring(m, BEHIND, 2, 1);
    settle(m);
    // One write is held; nothing else was issued, the frame is still running.
    expect(iommu.held).toHaveLength(1);
    expect(iommu.requests.filter((r) => r.write)).toHaveLength(1);
    expect(state(m, BEHIND, 2)).toBe(STATE.RUNNING);
    expect(m.testEngines.get('/dma@10010000')!.stats.outstanding).toBe(1);
    m.scheduler.runSyncUntilIdle(1_000_000);
    expect(iommu.requests.filter((r) => r.write)).toHaveLength(1);

    releaseHeld(m); // resume: the frame carries on
    settle(m);
    expect(iommu.held).toHaveLength(1);
    expect(reg(m, BEHIND, 2, BYTES_DONE)).toBe(0x1000);

    // A stop while a transaction is held: the frame stays RUNNING until it completes.
    ring(m, BEHIND, 2, 0);
    settle(m);
    expect(state(m, BEHIND, 2)).toBe(STATE.RUNNING);
    iommu.held.pop()!.done({ status: 'terminated' });
    settle(m);
    // The terminated transaction ends the run in ERROR (the failure wins over the stop).
    expect(state(m, BEHIND, 2)).toBe(STATE.ERROR);
    expect(dmaStatus(m, BEHIND, 2)).toBe(4); // TERMINATED
    expect(reg(m, BEHIND, 2, FAIL_ADDR_LO)).toBe((dst + 0x1000) >>> 0);

    // The same with a completion that succeeds: the stop wins, the frame goes IDLE.
    program(m, BEHIND, 3, { cmd: OP.FILL, dst, length: 0x3000, pattern: 0x5a });
    ring(m, BEHIND, 3, 1);
    settle(m);
    ring(m, BEHIND, 3, 0);
    settle(m);
    expect(state(m, BEHIND, 3)).toBe(STATE.RUNNING);
    releaseHeld(m);
    settle(m);
    expect(state(m, BEHIND, 3)).toBe(STATE.IDLE);
    expect(reg(m, BEHIND, 3, BYTES_DONE)).toBe(0x1000);
    expect(iommu.held).toHaveLength(0);
  });
});
