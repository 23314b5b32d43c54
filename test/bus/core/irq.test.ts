import { describe, expect, it } from 'vitest';
import { Device } from '../../../bus/device.js';
import { DriverCore } from '../../../bus/driver-core.js';
import { devmRequestIrq, freeIrq, requestIrq, requestThreadedIrq, synchronizeIrq, type IrqSpec } from '../../../bus/irq.js';
import { platformBus } from '../../../bus/platform.js';
import { FAKE_IRQ_LATENCY_NS, FakePort } from './fake-port.js';
import { expectErrno } from '../../lib/errno.js';

const GIC = '/interrupt-controller@2c001000';
const SPI_42: IrqSpec = { controller: GIC, specifier: [0, 42, 4] };

async function setup(): Promise<{ port: FakePort; core: DriverCore; dev: Device }> {
  const port = new FakePort();
  port.addController(GIC);
  const core = new DriverCore({ port });
  const dev = new Device({ name: '/smmu@2b400000', bus: platformBus });
  await core.addDevice(dev);
  return { port, core, dev };
}

describe('requestIrq', () => {
  it('runs the handler when the line fires, and not after freeIrq', async () => {
    const { port, dev } = await setup();
    let calls = 0;
    const action = requestIrq(dev, SPI_42, () => {
      calls++;
      return 'handled';
    }, 'smmu-gerror');
    port.raise(GIC, [0, 42, 4]);
    await port.scheduler.runUntilIdle();
    expect(calls).toBe(1);
    expect(port.now()).toBe(FAKE_IRQ_LATENCY_NS);
    expect(action.stats).toMatchObject({ hard: 1, handled: 1, none: 0 });
    await freeIrq(action);
    expect(port.handlerCount(GIC, [0, 42])).toBe(0);
    port.raise(GIC, [0, 42, 4]);
    await port.scheduler.runUntilIdle();
    expect(calls).toBe(1);
    await expect(freeIrq(action)).rejects.toThrow(/already free/);
  });

  it('refuses a second owner of a line unless both share it, and shares it when they do', async () => {
    const { port, core, dev } = await setup();
    const other = new Device({ name: '/pmu', bus: platformBus });
    await core.addDevice(other);
    requestIrq(dev, SPI_42, () => 'handled', 'first');
    await expectErrno(() => requestIrq(other, SPI_42, () => 'handled', 'second', { shared: true }), 'EBUSY', /EBUSY: request_irq second \(\/pmu\): \/interrupt-controller@2c001000 <0 42 4> is already requested by first/);
    const spi43: IrqSpec = { controller: GIC, specifier: [0, 43, 4] };
    const seen: string[] = [];
    const a = requestIrq(dev, spi43, () => (seen.push('a'), 'none'), 'a', { shared: true });
    const b = requestIrq(other, spi43, () => (seen.push('b'), 'handled'), 'b', { shared: true });
    expect(port.handlerCount(GIC, [0, 43])).toBe(1); // one dispatcher per line
    port.raise(GIC, [0, 43, 4]);
    await port.scheduler.runUntilIdle();
    expect(seen).toEqual(['a', 'b']);
    expect(a.stats.none).toBe(1);
    expect(b.stats.handled).toBe(1);
  });

  it('turns a controller the machine does not have into EINVAL naming the interrupt', async () => {
    const { dev } = await setup();
    await expectErrno(() => requestIrq(dev, { controller: '/nope', specifier: [0, 1, 4] }, () => 'handled', 'x'), 'EINVAL', /EINVAL: request_irq x \(\/smmu@2b400000\): \/nope <0 1 4>: no interrupt controller \/nope/);
  });

  it('contains a throwing handler: logged, counted, the simulation goes on', async () => {
    const { port, core, dev } = await setup();
    const action = requestIrq(dev, SPI_42, () => {
      throw new Error('boom');
    }, 'bad');
    port.raise(GIC, [0, 42, 4]);
    await port.scheduler.runUntilIdle();
    expect(action.stats.errors).toBe(1);
    expect(core.log.lines('err').map((l) => l.message)).toEqual(['irq handler bad threw: boom']);
  });
});

describe('requestThreadedIrq', () => {
  it('runs the thread as a task after the hard-IRQ delivery returned, never inside it', async () => {
    const { port, dev } = await setup();
    const order: string[] = [];
    port.onDelivered = () => order.push('delivery returned');
    requestThreadedIrq(
      dev,
      SPI_42,
      () => {
        order.push('hard');
        return 'wake-thread';
      },
      async () => {
        order.push('thread start');
        await port.delay(1000);
        order.push('thread end');
        return 'handled';
      },
      'evtq',
    );
    port.raise(GIC, [0, 42, 4]);
    await port.scheduler.runUntilIdle();
    expect(order).toEqual(['hard', 'delivery returned', 'thread start', 'thread end']);
  });

  it('runs one thread at a time per IRQ: interrupts during the thread are latched and replayed once', async () => {
    const { port, dev } = await setup();
    let running = 0;
    let maxRunning = 0;
    const starts: number[] = [];
    const action = requestThreadedIrq(dev, SPI_42, null, async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      starts.push(port.now());
      await port.delay(10_000);
      running--;
    }, 'priq');
    port.raise(GIC, [0, 42, 4]);
    // Two more interrupts while the first thread runs (it runs from 100 ns to 10.1 us).
    port.scheduler.schedule(2_000, () => port.raise(GIC, [0, 42, 4]));
    port.scheduler.schedule(5_000, () => port.raise(GIC, [0, 42, 4]));
    await port.scheduler.runUntilIdle();
    expect(maxRunning).toBe(1);
    // The two merged into one latched interrupt, delivered when the first thread finished.
    expect(starts).toEqual([FAKE_IRQ_LATENCY_NS, FAKE_IRQ_LATENCY_NS + 10_000]);
    expect(action.stats).toMatchObject({ hard: 2, threadRuns: 2 });
  });

  it('freeIrq waits for a running thread to finish', async () => {
    const { port, dev } = await setup();
    let finished = false;
    const action = requestThreadedIrq(dev, SPI_42, null, async () => {
      await port.delay(5_000);
      finished = true;
    }, 'cmdq-sync');
    port.raise(GIC, [0, 42, 4]);
    await port.scheduler.runFor(FAKE_IRQ_LATENCY_NS);
    expect(action.threadRunning).toBe(true);
    await port.run(freeIrq(action));
    expect(finished).toBe(true);
    expect(port.now()).toBe(FAKE_IRQ_LATENCY_NS + 5_000);
    await synchronizeIrq(action);
  });
});

describe('IRQ lifetime', () => {
  it('frees devm IRQs when the driver unbinds', async () => {
    const port = new FakePort();
    port.addController(GIC);
    const core = new DriverCore({ port });
    const dev = new Device({ name: '/dma@1000', bus: { name: 'test', match: () => true } });
    const drv = {
      name: 'dma',
      bus: dev.bus,
      probe: async (d: Device) => {
        devmRequestIrq(d, SPI_42, () => 'handled', 'dma-done');
      },
    };
    await core.registerDriver(drv);
    await core.addDevice(dev);
    expect(dev.status).toBe('bound');
    expect(port.handlerCount(GIC, [0, 42])).toBe(1);
    await core.unbind(dev);
    expect(port.handlerCount(GIC, [0, 42])).toBe(0);
  });

  it('detaches every handler of a discarded kernel (kexec)', async () => {
    const { port, core, dev } = await setup();
    let calls = 0;
    requestIrq(dev, SPI_42, () => (calls++, 'handled'), 'old-kernel');
    core.teardown();
    expect(port.handlerCount(GIC, [0, 42])).toBe(0);
    port.raise(GIC, [0, 42, 4]);
    await port.scheduler.runUntilIdle();
    expect(calls).toBe(0);
    // The next kernel can take the same line.
    const next = new DriverCore({ port, instance: 1 });
    const dev2 = new Device({ name: '/smmu@2b400000', bus: platformBus });
    await next.addDevice(dev2);
    requestIrq(dev2, SPI_42, () => (calls++, 'handled'), 'new-kernel');
    port.raise(GIC, [0, 42, 4]);
    await port.scheduler.runUntilIdle();
    expect(calls).toBe(1);
  });
});
