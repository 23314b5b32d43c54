import { describe, expect, it } from 'vitest';
import { KernelError } from '../../../bus/errno.js';
import { ioremap, POLL_SPIN_NS, readlPollTimeout, readqPollTimeout } from '../../../bus/io.js';
import { FakePort } from './fake-port.js';
import { expectErrno } from '../../lib/errno.js';

const BASE = 0x2b40_0000;

function portWithDevice(): { port: FakePort; regs: Map<number, number> } {
  const port = new FakePort();
  const { regs } = port.addRegisterFile(BASE, 0x1000);
  return { port, regs };
}

describe('ioremap', () => {
  it('refuses a range no device covers, naming the range', () => {
    const { port } = portWithDevice();
    expect(() => ioremap(port, 0x1000_0000, 0x1000)).toThrow(new KernelError('ENXIO', 'ioremap: no device MMIO covers [0x10000000-0x10000fff]'));
  });

  it('refuses a range that runs past the end of the device', async () => {
    const { port } = portWithDevice();
    await expectErrno(() => ioremap(port, BASE + 0x800, 0x1000), 'ENXIO', /ENXIO: ioremap: no device MMIO covers \[0x2b400800-0x2b4017ff\]/);
    await expectErrno(() => ioremap(port, BASE, 0), 'EINVAL');
  });

  it('reads and writes registers of the device at their offsets, 32 and 64 bits', () => {
    const { port, regs } = portWithDevice();
    const io = ioremap(port, BASE, 0x1000);
    io.writel(0xdeadbeef, 0x20);
    expect(regs.get(0x20)).toBe(0xdeadbeef);
    regs.set(0x24, 0x8000_0001);
    expect(io.readl(0x24)).toBe(0x8000_0001);
    io.writeq(0x1122_3344_5566_7788n, 0x40);
    expect(regs.get(0x40)).toBe(0x5566_7788);
    expect(regs.get(0x44)).toBe(0x1122_3344);
    expect(io.readq(0x40)).toBe(0x1122_3344_5566_7788n);
    expect(port.mmioLog.slice(0, 2)).toEqual([
      { op: 'write', pa: BASE + 0x20, value: 0xdeadbeef },
      { op: 'read', pa: BASE + 0x24, value: 0x8000_0001 },
    ]);
  });

  it('rejects accesses outside the mapping, misaligned, or after iounmap, naming the offset', async () => {
    const { port } = portWithDevice();
    const io = ioremap(port, BASE, 0x100);
    await expectErrno(() => io.readl(0x100), 'EFAULT', 'EFAULT: readl at offset 0x100 is outside the 0x100-byte mapping [0x2b400000-0x2b4000ff]');
    expect(() => io.writeq(0n, 0xfc)).toThrow(/writeq at offset 0xfc is outside/);
    expect(() => io.readl(-4)).toThrow(/readl at offset -4 is outside/);
    await expectErrno(() => io.readl(0x12), 'EFAULT', 'EFAULT: readl at offset 0x12 of [0x2b400000-0x2b4000ff] is not 4-byte aligned');
    io.unmap();
    expect(() => io.readl(0)).toThrow(/the mapping was unmapped/);
    expect(port.mmioLog).toEqual([]);
  });
});

describe('readlPollTimeout', () => {
  it('returns the value once the condition holds, polling on virtual time', async () => {
    const { port, regs } = portWithDevice();
    const io = ioremap(port, BASE, 0x1000);
    regs.set(0x24, 0);
    port.scheduler.schedule(7_500, () => regs.set(0x24, 0x1), 'device acks');
    const v = await port.run(readlPollTimeout(io, 0x24, (x) => (x & 1) === 1, 1, 1000));
    expect(v).toBe(1);
    // Polled every 1 us: the first read after the ack at 7.5 us is at 8 us.
    expect(port.now()).toBe(8_000);
  });

  it('times out after exactly the timeout with ETIMEDOUT naming the register and its last value', async () => {
    const { port, regs } = portWithDevice();
    const io = ioremap(port, BASE, 0x1000);
    regs.set(0x24, 0xabc0);
    const start = port.now();
    const err = await expectErrno(port.run(readlPollTimeout(io, 0x24, (x) => (x & 1) === 1, 10, 100)), 'ETIMEDOUT');
    expect(err.message).toBe(
      'ETIMEDOUT: readl poll of offset 0x24 of [0x2b400000-0x2b400fff]: condition not met after 100 us (last value 0xabc0)',
    );
    // Reads at 0, 10, ..., 100 us are within the deadline; the one at 110 us is past it.
    expect(port.now() - start).toBe(110_000);
  });

  it('still lets time pass with a zero delay, and polls 64-bit registers', async () => {
    const { port, regs } = portWithDevice();
    const io = ioremap(port, BASE, 0x1000);
    port.scheduler.schedule(3_200, () => regs.set(0x84, 0x1), 'high word set');
    const v = await port.run(readqPollTimeout(io, 0x80, (x) => x >> 32n === 1n, 0, 50));
    expect(v).toBe(0x1_0000_0000n);
    expect(port.now()).toBe(4 * POLL_SPIN_NS);
  });

  it('refuses an unbounded poll', async () => {
    const { port } = portWithDevice();
    const io = ioremap(port, BASE, 0x1000);
    await expect(readlPollTimeout(io, 0, () => false, 1, 0)).rejects.toThrow(/must be finite and > 0/);
  });
});
