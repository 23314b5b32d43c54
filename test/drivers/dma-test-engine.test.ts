/**
 * The DMA test engine driver on the virt machine: buffers, jobs, interrupts, and what `.shutdown`
 * (or its absence) leaves running when the kernel goes away.
 */
import { describe, expect, it } from 'vitest';
import { KernelError } from '../../bus/errno.js';
import {
  createDmaTestEngineDriver,
  findTestEngine,
  testEngineOf,
  testEngines,
  type TestEngine,
} from '../../drivers/misc/dma-test-engine.js';
import type { Machine } from '../../hw/machine.js';
import type { Kernel } from '../../kernel/kernel.js';
import { kexec } from '../../kernel/kexec.js';
import { boot, run, virtMachine } from '../../scenarios/lib/lab.js';
import { VIRT } from '../../scenarios/machines/virt.js';
import { expectErrno } from '../lib/errno.js';

const ENGINES = [0, 1, 2, 3, 4].map((i) => `/dma@${(VIRT.testEngineBase + i * VIRT.testEngineSize).toString(16)}`);
/** The engine with no IOMMU: its DMA addresses are physical addresses whatever the SMMUs do. */
const DIRECT = '/dma@c040000';
const STATUS = 0x034;

/** STATE of every frame of every engine, read from the machine's registers. */
function frameStates(m: Machine): number[] {
  const out: number[] = [];
  for (let e = 0; e < ENGINES.length; e++) {
    for (let f = 0; f < 15; f++) out.push(m.cpu.mmioRead32(VIRT.testEngineBase + e * VIRT.testEngineSize + f * 0x1000 + STATUS) & 3);
  }
  return out;
}

async function bootVirt(seed = 1): Promise<{ machine: Machine; kernel: Kernel; engine: TestEngine }> {
  const machine = virtMachine({ seed });
  const kernel = await boot(machine);
  return { machine, kernel, engine: findTestEngine(kernel.core, DIRECT) };
}

/** A kernel whose engine driver has no `.shutdown` (its allocator is the kernel's, found once booted). */
async function bootForgetful(machine: Machine): Promise<Kernel> {
  return boot(machine, { drivers: [createDmaTestEngineDriver({ shutdown: false })] });
}

describe('dma-test-engine driver', () => {
  it('binds every engine of the virt machine and reads what each has', async () => {
    const { kernel, engine } = await bootVirt();
    expect(testEngines(kernel.core).map((e) => e.dev.name).sort()).toEqual([...ENGINES].sort());
    for (const name of ENGINES) expect(kernel.core.findDevice(name)!.status).toBe('bound');
    expect(engine.numFrames).toBe(15);
    expect(engine.streamIds).toEqual([0]);
    const stall = findTestEngine(kernel.core, '/dma@c000000');
    expect([stall.streamIds, stall.ssidBits, stall.canStall]).toEqual([[0x100], 8, true]);
    expect(findTestEngine(kernel.core, '/dma@c020000').streamIds).toEqual([0x400]);
    await expectErrno(() => testEngineOf(kernel.core.findDevice('/pcie@3f000000')!), 'ENODEV', /ENODEV.*not a DMA test engine/);
  });

  it('fills a buffer on the engine without an IOMMU, and the CPU sees the bytes', async () => {
    const { machine, kernel, engine } = await bootVirt();
    const buf = await run(machine, engine.allocBuffer(0x3000, 'fill target'));
    expect(kernel.alloc.ownerOf(buf.cpuAddr)?.owner).toEqual({ kind: 'dma', device: DIRECT, what: 'dma_alloc_coherent' });
    const irqs = engine.irqCount;
    const st = await run(machine, engine.run({ op: 'fill', dst: buf.dma + 0x10, len: 0x2100, byte: 0x6b }));
    expect(st).toMatchObject({ state: 'done', dmaStatus: 'ok', iterations: 1, bytesDone: 0x2100 });
    expect(engine.irqCount).toBe(irqs + 1); // completion came through the interrupt
    const bytes = engine.readBuffer(buf);
    expect(bytes[0x0f]).toBe(0);
    expect(bytes.subarray(0x10, 0x2110).every((b) => b === 0x6b)).toBe(true);
    expect(bytes[0x2110]).toBe(0);
    expect(machine.memory.read8(buf.cpuAddr + 0x2000)).toBe(0x6b);
    expect(engine.activeFrames()).toEqual([]); // run() released the frame
  });

  it('copies and checksums through the DMA addresses of its buffers', async () => {
    const { machine, engine } = await bootVirt();
    const src = await run(machine, engine.allocBuffer(0x1000, 'src'));
    const dst = await run(machine, engine.allocBuffer(0x1000, 'dst'));
    engine.writeBuffer(src, 0, new TextEncoder().encode('123456789'));
    await run(machine, engine.run({ op: 'copy', src: src.dma, dst: dst.dma + 7, len: 9 }));
    expect(new TextDecoder().decode(engine.readBuffer(dst, 7, 9))).toBe('123456789');
    const st = await run(machine, engine.run({ op: 'checksum', src: dst.dma + 7, len: 9 }));
    expect(st.checksum).toBe(0xcbf4_3926);
  });

  it('reports a failed job as EIO naming the status and address, and rejects bad requests up front', async () => {
    const { machine, engine } = await bootVirt();
    const hole = 0x2000_0000; // neither RAM nor a device
    await expectErrno(run(machine, engine.run({ op: 'fill', dst: hole, len: 64, byte: 1 })), 'EIO', /EIO: \/dma@c040000: frame 0 fill failed: bus-error on a write at 0x20000000 after 0 bytes/);
    expect(engine.activeFrames()).toEqual([]);
    await expectErrno(() => engine.start({ op: 'fill', dst: 0x4000_0000, len: 4, byte: 256 }), 'EINVAL', /EINVAL.*fill byte 256/);
    await expectErrno(() => engine.start({ op: 'fill', dst: 0x4000_0000, len: 4, byte: 1 }, { stream: 1 }), 'EINVAL', /EINVAL.*stream index 1/);
    await expectErrno(() => engine.start({ op: 'fill', dst: 0x4000_0000, len: 4, byte: 1 }, { ssid: 1 }), 'EINVAL', /EINVAL.*0 SSID bits/);
    expect(() => engine.start({ op: 'periodic', dst: 0x4000_0002, len: 8, pattern: 1, periodNs: 10 })).toThrow(/multiples of 4/);
    expect(() => engine.start({ op: 'copy', src: 0, dst: 0, len: 0 })).toThrow(/length 0/);
    expect(() => engine.status(15)).toThrow(/frame 15 outside 0..14/);
  });

  it('keeps a periodic write running, numbered, until stopped; wait() times out on it', async () => {
    const { machine, engine } = await bootVirt();
    const buf = await run(machine, engine.allocBuffer(0x1000, 'periodic'));
    const frame = engine.start({ op: 'periodic', dst: buf.dma, len: 32, pattern: 0xfeed_f00d, periodNs: 10_000 });
    await expectErrno(run(machine, engine.wait(frame, 55_000)), 'ETIMEDOUT', /ETIMEDOUT.*frame 0 still running after 55000 ns/);
    const seq1 = machine.memory.read32(buf.cpuAddr);
    expect(seq1).toBeGreaterThanOrEqual(5);
    expect(machine.memory.read32(buf.cpuAddr + 28)).toBe(0xfeed_f00d);
    await machine.scheduler.runFor(100_000);
    const seq2 = machine.memory.read32(buf.cpuAddr);
    expect(seq2).toBe(seq1 + 10);
    expect(engine.status(frame)).toMatchObject({ state: 'running', iterations: seq2 });
    const st = await run(machine, engine.stop(frame));
    expect(st.state).toBe('idle');
    expect(engine.runningFrames()).toEqual([]);
    await machine.scheduler.runFor(100_000);
    expect(machine.memory.read32(buf.cpuAddr)).toBe(st.iterations);
  });

  it('with .shutdown: kernel shutdown leaves every frame of every engine idle, and the writes stop', async () => {
    const { machine, kernel } = await bootVirt();
    const bufs = [];
    for (const e of testEngines(kernel.core)) {
      const buf = await run(machine, e.allocBuffer(0x1000, 'periodic'));
      e.start({ op: 'periodic', dst: buf.dma, len: 16, pattern: 0x1111_1111, periodNs: 5_000 });
      e.start({ op: 'fill', dst: buf.dma + 0x800, len: 0x800, byte: 9 }, { frame: 14 });
      bufs.push({ e, buf });
    }
    await machine.scheduler.runFor(50_000);
    const direct = bufs.find((b) => b.e.dev.name === DIRECT)!;
    expect(machine.memory.read32(direct.buf.cpuAddr)).toBeGreaterThan(5);
    expect(frameStates(machine).some((s) => s === 1)).toBe(true);

    const report = await run(machine, kernel.shutdown());
    for (const name of ENGINES) expect(report.called).toContain(name);
    expect(frameStates(machine)).toEqual(new Array<number>(75).fill(0));
    const seq = machine.memory.read32(direct.buf.cpuAddr);
    await machine.scheduler.runFor(1_000_000);
    expect(machine.memory.read32(direct.buf.cpuAddr)).toBe(seq);
  });

  it('without .shutdown: the engine keeps writing after kernel shutdown and across a kexec', async () => {
    const plain = createDmaTestEngineDriver({ shutdown: false });
    expect('shutdown' in plain).toBe(false);
    expect(typeof createDmaTestEngineDriver().shutdown).toBe('function');

    const machine = virtMachine({ seed: 2 });
    const kernel = await bootForgetful(machine);
    const engine = findTestEngine(kernel.core, DIRECT);
    const buf = await run(machine, engine.allocBuffer(0x1000, 'periodic'));
    engine.start({ op: 'periodic', dst: buf.dma, len: 8, pattern: 0xdead_beef, periodNs: 10_000 });
    await machine.scheduler.runFor(30_000);

    const report = await run(machine, kernel.shutdown());
    expect(report.skipped).toContain(DIRECT);
    expect(report.called).not.toContain(DIRECT);
    const seq = machine.memory.read32(buf.cpuAddr);
    await machine.scheduler.runFor(100_000);
    expect(machine.memory.read32(buf.cpuAddr)).toBe(seq + 10);
    expect(machine.memory.read32(buf.cpuAddr + 4)).toBe(0xdead_beef);

    // A new kernel finds the frame still running, and it keeps going under it.
    const next = await run(machine, kexec(machine, { drivers: [createDmaTestEngineDriver()] }));
    expect(next.log.entries.some((e) => e.level === 'warn' && e.source === DIRECT && e.message === 'running frames left by a previous kernel: 0')).toBe(true);
    const after = machine.memory.read32(buf.cpuAddr);
    await machine.scheduler.runFor(50_000);
    expect(machine.memory.read32(buf.cpuAddr)).toBe(after + 5);
    expect(findTestEngine(next.core, DIRECT).runningFrames()).toEqual([0]);
  });

  it('unbinding stops the frames and frees the buffers', async () => {
    const { machine, kernel, engine } = await bootVirt();
    const buf = await run(machine, engine.allocBuffer(0x2000, 'x'));
    engine.start({ op: 'periodic', dst: buf.dma, len: 4, pattern: 0, periodNs: 1_000 });
    await machine.scheduler.runFor(10_000);
    await run(machine, kernel.core.unbind(kernel.core.findDevice(DIRECT)!));
    expect(kernel.alloc.ownerOf(buf.cpuAddr)?.owner).toEqual({ kind: 'free' });
    const seq = machine.memory.read32(buf.cpuAddr);
    await machine.scheduler.runFor(10_000);
    expect(machine.memory.read32(buf.cpuAddr)).toBe(seq);
    expect(() => testEngineOf(kernel.core.findDevice(DIRECT)!)).toThrow(KernelError);
    await expectErrno(run(machine, engine.freeBuffer(buf)), 'EINVAL', /EINVAL.*not a live buffer/);
  });
});
