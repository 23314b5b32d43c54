import { describe, expect, it } from 'vitest';
import { DriverCore } from '../../../bus/driver-core.js';
import { KernelError } from '../../../bus/errno.js';
import { requestIrq } from '../../../bus/irq.js';
import { msiAllocVectors, msiFreeCount, msiFreeVectors, msiVectors } from '../../../bus/msi.js';
import { DtBuilder, reg } from '../../../bus/of/dt-builder.js';
import { ofPlatformPopulate, platformBus } from '../../../bus/platform.js';
import { board } from '../../lib/board.js';
import { addGicV2mFrame, FakePort } from './fake-port.js';
import { expectErrno } from '../../lib/errno.js';

const GIC = '/interrupt-controller@2c001000';
const V2M_BASE = 0x2c1c_0000;

function tree(frameProps: Record<string, number> = {}, parentCompatible = 'arm,gic-v2m-frame'): DtBuilder {
  const { b, gic } = board({
    compatible: null,
    cells: 1,
    ram: [],
    gic: { name: 'interrupt-controller', reg: [[0x2c00_1000, 0x1000]], children: { cells: 1, ranges: true } },
  });
  const v2m = gic.node('v2m@2c1c0000', {
    compatible: parentCompatible,
    'msi-controller': true,
    reg: reg([V2M_BASE, 0x1000]),
    ...frameProps,
  });
  b.node('/engine@10000000', { compatible: 'test,engine', 'msi-parent': v2m });
  b.node('/engine@10010000', { compatible: 'test,engine', 'msi-parent': v2m });
  b.node('/no-msi@10020000', { compatible: 'test,engine' });
  return b;
}

async function boot(b: DtBuilder, frame: { base: number; count: number } | null = { base: 96, count: 4 }): Promise<{ port: FakePort; core: DriverCore }> {
  const port = new FakePort();
  port.addController(GIC);
  if (frame) addGicV2mFrame(port, V2M_BASE, GIC, frame.base, frame.count);
  const core = new DriverCore({ port, dt: b.build() });
  await ofPlatformPopulate(core);
  return { port, core };
}

describe('MSI on a GICv2m frame', () => {
  it('allocates vectors from the SPI block MSI_TYPER reports, each usable with requestIrq', async () => {
    const { port, core } = await boot(tree());
    const dev = core.findDevice('/engine@10000000')!;
    const vectors = msiAllocVectors(dev, 3);
    expect(vectors.map((v) => [v.index, v.address, v.data])).toEqual([
      [0, V2M_BASE + 0x40, 96],
      [1, V2M_BASE + 0x40, 97],
      [2, V2M_BASE + 0x40, 98],
    ]);
    expect(vectors[1].irq).toEqual({ controller: GIC, specifier: [0, 65, 1], name: '/engine@10000000-msi1' });
    let fired = 0;
    requestIrq(dev, vectors[1].irq, () => (fired++, 'handled'), 'engine-done');
    // The device signals vector 1 the way a master does: a 32-bit write of its data to its address.
    port.mmioWrite32(vectors[1].address, vectors[1].data);
    await port.scheduler.runUntilIdle();
    expect(fired).toBe(1);
    expect(msiVectors(dev)).toEqual(vectors);
    expect(core.log.lines('info').map((l) => l.message)).toContain('GICv2m range [SPI 96:99] at 0x2c1c0000');
  });

  it('takes the SPI block from arm,msi-base-spi / arm,msi-num-spis when firmware gives both', async () => {
    const { port, core } = await boot(tree({ 'arm,msi-base-spi': 200, 'arm,msi-num-spis': 2 }), null);
    const dev = core.findDevice('/engine@10000000')!;
    expect(msiAllocVectors(dev, 2).map((v) => v.data)).toEqual([200, 201]);
    expect(port.mmioLog).toEqual([]); // MSI_TYPER was not read
  });

  it('fails with ENOSPC, allocating nothing, when the frame has too few free SPIs', async () => {
    const { core } = await boot(tree());
    const a = core.findDevice('/engine@10000000')!;
    const b = core.findDevice('/engine@10010000')!;
    msiAllocVectors(a, 3);
    expect(() => msiAllocVectors(b, 2)).toThrow(
      new KernelError('ENOSPC', '/engine@10010000: GICv2m frame /interrupt-controller@2c001000/v2m@2c1c0000 has 1 free SPIs of 4, 2 MSI vectors wanted'),
    );
    expect(msiFreeCount(b)).toBe(1);
    msiFreeVectors(a);
    expect(msiAllocVectors(b, 2).map((v) => v.data)).toEqual([96, 97]);
  });

  it('frees a driver\'s vectors when it unbinds', async () => {
    const b = tree();
    const port = new FakePort();
    port.addController(GIC);
    addGicV2mFrame(port, V2M_BASE, GIC, 96, 4);
    const core = new DriverCore({ port, dt: b.build() });
    await core.registerDriver({
      name: 'engine',
      bus: platformBus,
      ofMatchTable: ['test,engine'],
      probe: async (dev) => {
        if (dev.name === '/no-msi@10020000') return;
        msiAllocVectors(dev, 2);
      },
    });
    await ofPlatformPopulate(core);
    const a = core.findDevice('/engine@10000000')!;
    expect(msiFreeCount(a)).toBe(0);
    await core.unbind(a);
    expect(msiVectors(a)).toEqual([]);
    expect(msiFreeCount(a)).toBe(2);
  });

  it('names what is missing or unsupported', async () => {
    const { core } = await boot(tree());
    await expectErrno(() => msiAllocVectors(core.findDevice('/no-msi@10020000')!, 1), 'ENODEV', 'ENODEV: /no-msi@10020000: firmware names no MSI controller (no msi-parent or msi-map)');
    const its = await boot(tree({}, 'arm,gic-v3-its'), null);
    await expectErrno(() => msiAllocVectors(its.core.findDevice('/engine@10000000')!, 1), 'EOPNOTSUPP', /EOPNOTSUPP: .*only arm,gic-v2m-frame frames are/);
    const bad = await boot(tree(), { base: 8, count: 4 });
    await expectErrno(() => msiAllocVectors(bad.core.findDevice('/engine@10000000')!, 1), 'EINVAL', /EINVAL: GICv2m frame .*: invalid SPI block base 8, count 4 from MSI_TYPER \(0x80004\)/);
  });
});
