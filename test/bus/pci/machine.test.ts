/**
 * The device model against the real machine: a PCIe host and endpoints the machine models from the
 * same DT, reached only through the machine's CPU port.
 */
import { describe, expect, it } from 'vitest';
import { DriverCore } from '../../../bus/driver-core.js';
import { requestIrq } from '../../../bus/irq.js';
import { msiAllocVectors } from '../../../bus/msi.js';
import { reg } from '../../../bus/of/dt-builder.js';
import type { DeviceTree } from '../../../bus/of/tree.js';
import { ofPlatformPopulate } from '../../../bus/platform.js';
import { pciEnableAts, pciEnablePasid, pciEnablePri, pciMaxPasids } from '../../../bus/pci/ats.js';
import { pciSetMaster } from '../../../bus/pci/command.js';
import { pciHostGenericDriver } from '../../../bus/pci/host-generic.js';
import { PciDevice } from '../../../bus/pci/pci-device.js';
import { Machine } from '../../../hw/machine.js';
import { PcieEndpoint } from '../../../hw/pci/endpoint.js';
import { board } from '../../lib/board.js';

const GIC = '/intc@2c001000';

function virtLike(): DeviceTree {
  const { b, gic } = board({
    compatible: 'test,virt',
    gic: { reg: [[0x2c00_1000, 0x1000], [0x2c00_2000, 0x2000]], children: { cells: 2, ranges: true } },
  });
  const v2m = gic.node('v2m@2c1c0000', {
    compatible: 'arm,gic-v2m-frame',
    'msi-controller': true,
    reg: reg([0x2c1c_0000, 0x1000]),
    'arm,msi-base-spi': 224,
    'arm,msi-num-spis': 16,
  });
  b.node('/pcie@40000000', {
    compatible: 'pci-host-ecam-generic',
    device_type: 'pci',
    '#address-cells': 3,
    '#size-cells': 2,
    reg: reg([0x4000_0000, 0x10_0000]),
    'bus-range': [0, 0],
    'msi-parent': v2m,
  });
  b.node('/pcie@40000000/ep@1,0', {
    reg: [0x0800, 0, 0, 0, 0],
    'vendor-id': 0x13b5,
    'device-id': 0xff80,
    'class-code': 0xff0000,
    'iommu-sim,ats': true,
    'iommu-sim,pri': true,
    'pasid-num-bits': 16,
  });
  b.node('/pcie@40000000/ep@2,0', { reg: [0x1000, 0, 0, 0, 0], 'vendor-id': 0x13b5, 'device-id': 0xff81 });
  return b.build();
}

/** The machine the tree describes, and a driver core with the generic PCI host driver bound over it. */
async function bootVirtLike(): Promise<{ machine: Machine; core: DriverCore }> {
  const dt = virtLike();
  const machine = Machine.fromDeviceTree(dt, { seed: 7 });
  const core = new DriverCore({ port: machine.cpu, dt });
  await core.registerDriver(pciHostGenericDriver);
  await ofPlatformPopulate(core);
  return { machine, core };
}

describe('PCI on the machine', () => {
  it('enumerates the endpoints the machine models and drives their ATS/PRI/PASID controls', async () => {
    const { machine, core } = await bootVirtLike();
    const fns = core.devices.filter((d): d is PciDevice => d instanceof PciDevice);
    expect(fns.map((d) => [d.name, d.vendor, d.device, d.ofNode?.path])).toEqual([
      ['0000:00:01.0', 0x13b5, 0xff80, '/pcie@40000000/ep@1,0'],
      ['0000:00:02.0', 0x13b5, 0xff81, '/pcie@40000000/ep@2,0'],
    ]);
    const [ep] = fns;
    const endpoint = machine.master('/pcie@40000000/ep@1,0');
    if (!(endpoint instanceof PcieEndpoint)) throw new Error('the machine has no endpoint model for ep@1,0');
    expect([endpoint.pasidEnabled, endpoint.priEnabled, endpoint.atsEnabled, endpoint.busMasterEnabled]).toEqual([false, false, false, false]);
    expect(pciMaxPasids(ep)).toBe(1 << 16);
    pciEnablePasid(ep);
    pciEnablePri(ep, 16);
    pciEnableAts(ep, 12);
    pciSetMaster(ep);
    expect([endpoint.pasidEnabled, endpoint.priEnabled, endpoint.atsEnabled, endpoint.busMasterEnabled]).toEqual([true, true, true, true]);
  });

  it('delivers an MSI written to a vector\'s doorbell to the handler requested on its SPI', async () => {
    const { machine, core } = await bootVirtLike();
    const ep = core.findDevice('0000:00:01.0')!;
    const [vec] = msiAllocVectors(ep, 1);
    expect(vec.irq).toEqual({ controller: GIC, specifier: [0, 192, 1], name: '0000:00:01.0-msi0' });
    let fired = 0;
    requestIrq(ep, vec.irq, () => (fired++, 'handled'), 'ep-msi');
    const master = machine.master('/pcie@40000000/ep@1,0')!;
    pciSetMaster(ep as PciDevice);
    const data = new Uint8Array(4);
    new DataView(data.buffer).setUint32(0, vec.data, true);
    const done = master.write(vec.address, data);
    await machine.scheduler.runUntilSettled(done);
    await machine.scheduler.runUntilIdle();
    expect(fired).toBe(1);
  });
});
