import { describe, expect, it } from 'vitest';
import { DriverCore } from '../../../bus/driver-core.js';
import { FirmwareError } from '../../../bus/firmware-error.js';
import { DtBuilder, ranges, reg } from '../../../bus/of/dt-builder.js';
import {
  devmPlatformIoremapResource,
  ofPlatformPopulate,
  platformBus,
  platformGetIrq,
  platformGetIrqByName,
  platformGetResource,
  platformGetResourceByName,
  platformIrqCount,
  type PlatformDevice,
  type PlatformDriver,
} from '../../../bus/platform.js';
import { board } from '../../lib/board.js';
import { FakePort } from './fake-port.js';
import { expectErrno } from '../../lib/errno.js';

const GIC = '/interrupt-controller@2c001000';

function machineTree(): DtBuilder {
  const { b } = board({
    compatible: 'test,board',
    ram: [],
    gic: { name: 'interrupt-controller', reg: [[0x2c00_1000, 0x1000]], children: { cells: 2 } },
  });
  const smmu = b.node('/iommu@2b400000', { compatible: 'arm,smmu-v3', '#iommu-cells': 1, reg: reg([0x2b40_0000, 0x20000]) });
  b.node('/soc', { compatible: 'simple-bus', '#address-cells': 1, '#size-cells': 1, ranges: ranges([0, 0x1000_0000, 0x100_0000]) });
  b.node('/soc/dma@100000', {
    compatible: ['test,dma-v2', 'test,dma'],
    reg: reg([0x10_0000, 0x1000], [0x20_0000, 0x100]),
    'reg-names': ['regs', 'extra'],
    interrupts: [0, 10, 4, 0, 11, 4],
    'interrupt-names': ['done', 'error'],
    iommus: [smmu, 0x42],
    'dma-coherent': true,
  });
  b.node('/soc/disabled@300000', { compatible: 'test,dma', status: 'disabled', reg: reg([0x30_0000, 0x1000]) });
  b.node('/soc/nocompat@400000', { reg: reg([0x40_0000, 0x1000]) });
  b.node('/soc/mfd@500000', { compatible: 'test,mfd', reg: reg([0x50_0000, 0x1000]) });
  b.node('/soc/mfd@500000/sub', { compatible: 'test,sub' });
  b.node('/soc/bus2', { compatible: 'simple-mfd', '#address-cells': 1, '#size-cells': 1, ranges: true });
  b.node('/soc/bus2/leaf@600000', { compatible: 'test,leaf', reg: reg([0x60_0000, 0x100]) });
  b.node('/cpus', { '#address-cells': 1, '#size-cells': 0 });
  b.node('/cpus/cpu@0', { compatible: 'arm,cortex-a57', device_type: 'cpu', reg: 0 });
  b.node('/firmware');
  b.node('/firmware/scmi', { compatible: 'arm,scmi' });
  b.node('/broken@5', { compatible: 'test,broken', interrupts: [0, 20] });
  return b;
}

function recorder(name: string, compatible: string, journal: string[]): PlatformDriver {
  return {
    name,
    bus: platformBus,
    ofMatchTable: [compatible],
    probe: async (dev) => {
      journal.push(dev.name);
      platformGetIrq(dev, 0);
    },
  };
}

describe('of_platform_populate', () => {
  it('creates devices for enabled, compatible children of the root, of simple buses and of /firmware', async () => {
    const port = new FakePort();
    const core = new DriverCore({ port, dt: machineTree().build() });
    const { devices, errors } = await ofPlatformPopulate(core);
    expect(devices.map((d) => d.name)).toEqual([
      GIC,
      '/iommu@2b400000',
      '/soc',
      '/soc/dma@100000',
      '/soc/mfd@500000',
      '/soc/bus2',
      '/soc/bus2/leaf@600000',
      '/broken@5',
      '/firmware/scmi',
    ]);
    expect(core.findDevice('/soc/dma@100000')?.parent?.name).toBe('/soc');
    expect(errors.map((e) => e.where)).toEqual(['/broken@5']);
    expect(devices.every((d) => d.status === 'no-driver')).toBe(true);
  });

  it('gives a device its translated memory resources, its interrupts, DMA coherency and IOMMU fwspec', async () => {
    const port = new FakePort();
    const core = new DriverCore({ port, dt: machineTree().build() });
    await ofPlatformPopulate(core);
    const dma = core.findDevice('/soc/dma@100000') as PlatformDevice;
    expect(platformGetResource(dma, 0)).toEqual({ start: 0x1010_0000, size: 0x1000, name: 'regs' });
    expect(platformGetResourceByName(dma, 'extra')).toEqual({ start: 0x1020_0000, size: 0x100, name: 'extra' });
    expect(platformGetResource(dma, 2)).toBeNull();
    expect(platformIrqCount(dma)).toBe(2);
    expect(platformGetIrq(dma, 1)).toEqual({ controller: GIC, specifier: [0, 11, 4], name: 'error' });
    expect(platformGetIrqByName(dma, 'done')).toEqual({ controller: GIC, specifier: [0, 10, 4], name: 'done' });
    await expectErrno(() => platformGetIrq(dma, 2), 'ENXIO', 'ENXIO: /soc/dma@100000: IRQ index 2 not found (the device has 2)');
    await expectErrno(() => platformGetIrqByName(dma, 'cmdq'), 'ENXIO', 'ENXIO: /soc/dma@100000: IRQ cmdq not found');
    expect(dma.dmaCoherent).toBe(true);
    expect(dma.fwspec?.iommuNode.path).toBe('/iommu@2b400000');
    expect(dma.fwspec?.ids).toEqual([0x42]);
  });

  it('links masters to their IOMMU so the IOMMU binds first, whatever the DT order', async () => {
    const port = new FakePort();
    const b = machineTree();
    const core = new DriverCore({ port, dt: b.build() });
    const journal: string[] = [];
    await core.registerDriver(recorder('dma', 'test,dma', journal));
    await core.registerDriver({ name: 'smmu', bus: platformBus, ofMatchTable: ['arm,smmu-v3'], probe: async (d) => void journal.push(d.name) });
    await ofPlatformPopulate(core);
    expect(journal).toEqual(['/iommu@2b400000', '/soc/dma@100000']);
    const link = core.links.all.find((l) => l.consumer.name === '/soc/dma@100000');
    expect(link?.supplier.name).toBe('/iommu@2b400000');
    expect(link?.inferred).toBe(true);
    expect((await core.shutdown()).called).toEqual([]);

    // Now with the master before its SMMU in DT order.
    const b2 = new DtBuilder({ '#address-cells': 1, '#size-cells': 1 });
    const master = b2.node('/a-master@2000', { compatible: 'test,dma' });
    const smmu2 = b2.node('/z-iommu@1000', { compatible: 'arm,smmu-v3', '#iommu-cells': 1, reg: reg([0x1000, 0x1000]) });
    master.set({ iommus: [smmu2, 7] });
    const core2 = new DriverCore({ port, dt: b2.build(), instance: 1 });
    const journal2: string[] = [];
    await core2.registerDriver({ name: 'dma', bus: platformBus, ofMatchTable: ['test,dma'], probe: async (d) => void journal2.push(d.name) });
    await core2.registerDriver({ name: 'smmu', bus: platformBus, ofMatchTable: ['arm,smmu-v3'], probe: async (d) => void journal2.push(d.name) });
    await ofPlatformPopulate(core2);
    expect(journal2).toEqual(['/z-iommu@1000', '/a-master@2000']);
    expect(core2.devices.map((d) => d.name)).toEqual(['/z-iommu@1000', '/a-master@2000']);
  });

  it('keeps a firmware error to the node it belongs to: that probe fails naming it, the rest boots', async () => {
    const port = new FakePort();
    const core = new DriverCore({ port, dt: machineTree().build() });
    const journal: string[] = [];
    await core.registerDriver(recorder('broken', 'test,broken', journal));
    await core.registerDriver(recorder('leaf', 'test,leaf', journal));
    await ofPlatformPopulate(core);
    const broken = core.findDevice('/broken@5')!;
    expect(broken.status).toBe('failed');
    expect(broken.probeError).toMatch(/^dtb: "interrupts" has 2 cells, not a multiple of #interrupt-cells = 3 of \/interrupt-controller@2c001000 \(.*node \/broken@5\)$/);
    expect(() => platformGetIrq(broken, 0)).toThrow(FirmwareError);
    // The leaf has no interrupts: its driver's platformGetIrq(0) fails with ENXIO, and nothing else is affected.
    expect(core.findDevice('/soc/bus2/leaf@600000')?.probeError).toBe('ENXIO: /soc/bus2/leaf@600000: IRQ index 0 not found (the device has 0)');
  });

  it('maps a memory resource for the driver, and refuses one no device backs', async () => {
    const port = new FakePort();
    port.addRegisterFile(0x1010_0000, 0x1000);
    const core = new DriverCore({ port, dt: machineTree().build() });
    await ofPlatformPopulate(core);
    const dma = core.findDevice('/soc/dma@100000')!;
    const io = devmPlatformIoremapResource(dma, 0);
    io.writel(5, 0x10);
    expect(io.readl(0x10)).toBe(5);
    await expectErrno(() => devmPlatformIoremapResource(dma, 1), 'ENXIO', 'ENXIO: ioremap: no device MMIO covers [0x10200000-0x102000ff]');
    await expectErrno(() => devmPlatformIoremapResource(dma, 2), 'EINVAL', 'EINVAL: /soc/dma@100000: no memory resource 2 to map');
  });
});
