import { describe, expect, it } from 'vitest';
import { DriverCore } from '../../../bus/driver-core.js';
import { KernelError } from '../../../bus/errno.js';
import { msiAllocVectors, msiControllerOf } from '../../../bus/msi.js';
import { reg, type DtProps } from '../../../bus/of/dt-builder.js';
import { ofPlatformPopulate, platformBus } from '../../../bus/platform.js';
import {
  pciAtsQueueDepth,
  pciAtsSupported,
  pciDisableAts,
  pciDisablePasid,
  pciDisablePri,
  pciEnableAts,
  pciEnablePasid,
  pciEnablePri,
  pciMaxPasids,
  pciPasidFeatures,
  pciPrgRespPasidRequired,
  pciResetPri,
} from '../../../bus/pci/ats.js';
import { pciIsBusMaster, pciSetMaster } from '../../../bus/pci/command.js';
import { pciHostBridgeOf, pciHostGenericDriver } from '../../../bus/pci/host-generic.js';
import { pciBus, PciDevice } from '../../../bus/pci/pci-device.js';
import type { PciDriver } from '../../../bus/pci/pci-driver.js';
import { PCI_PASID_CTRL_EXEC, PCI_PASID_CTRL_PRIV } from '../../../bus/pci/regs.js';
import { addGicV2mFrame, FakePort } from '../core/fake-port.js';
import { CAP_PCIE, FakeEcam, type FakeFunction } from './fake-ecam.js';
import { board } from '../../lib/board.js';
import { expectErrno } from '../../lib/errno.js';

const ECAM = 0x4000_0000;
const GIC = '/intc@2c001000';
const V2M = 0x2c1c_0000;

interface Rig {
  port: FakePort;
  core: DriverCore;
  ecam: FakeEcam;
  ep: FakeFunction;
  bridge: FakeFunction;
}

/**
 * A host bridge with bus-range <0 1> over a 2-bus ECAM window: an endpoint with ATS/PRI/PASID at
 * 00:00.0, a two-function device at 00:02.{0,3}, an unconfigured bridge at 00:03.0 with an endpoint
 * behind it, and a lone function 1 at slot 5 (no function 0, so not found).
 */
function pciRig(hostProps: DtProps = {}, ecamBuses = 2): Rig {
  const port = new FakePort();
  port.addController(GIC);
  addGicV2mFrame(port, V2M, GIC, 128, 8);
  const ecam = new FakeEcam(port, ECAM, 0, ecamBuses);
  const ep = ecam.add(0, 0, 0, {
    vendor: 0x13b5,
    device: 0xff80,
    classCode: 0xff0000,
    pcie: true,
    ats: { qdep: 0, pageAligned: true },
    pri: { maxRequests: 32, prgRespPasid: true },
    pasid: { width: 16, exec: true },
  });
  ecam.add(0, 2, 0, { vendor: 0x8086, device: 0x1533, classCode: 0x020000, multifunction: true, pcie: true });
  ecam.add(0, 2, 3, { vendor: 0x8086, device: 0x1534, classCode: 0x020000, pcie: true });
  const bridge = ecam.add(0, 3, 0, { vendor: 0x1b36, device: 0x000c, classCode: 0x060400, bridge: true, pcie: true });
  ecam.add(1, 0, 0, { vendor: 0x1af4, device: 0x1041, classCode: 0x020000, pcie: true });
  ecam.add(0, 5, 1, { vendor: 0x1af4, device: 0x1042, classCode: 0x010000 });

  const { b, gic } = board({ compatible: null, ram: [], gic: { reg: [[0x2c00_1000, 0x1000]], children: { cells: 2, ranges: true } } });
  const v2m = gic.node('v2m@2c1c0000', { compatible: 'arm,gic-v2m-frame', 'msi-controller': true, reg: reg([V2M, 0x1000]) });
  const smmu = b.node('/iommu@2b400000', { compatible: 'arm,smmu-v3', '#iommu-cells': 1, reg: reg([0x2b40_0000, 0x20000]) });
  b.node('/pcie@40000000', {
    compatible: 'pci-host-ecam-generic',
    device_type: 'pci',
    '#address-cells': 3,
    '#size-cells': 2,
    reg: reg([ECAM, 0x20_0000]),
    'bus-range': [0, 1],
    'iommu-map': [0, smmu, 0x10000, 0x10000],
    'msi-map': [0, v2m, 0, 0x10000],
    'dma-coherent': true,
    ...hostProps,
  });
  const core = new DriverCore({ port, dt: b.build() });
  return { port, core, ecam, ep, bridge };
}

async function bootHost(rig: Rig): Promise<void> {
  await rig.core.registerDriver(pciHostGenericDriver);
  await ofPlatformPopulate(rig.core);
}

function pci(core: DriverCore, name: string): PciDevice {
  const d = core.findDevice(name);
  if (!(d instanceof PciDevice)) throw new Error(`${name} is not a PCI device`);
  return d;
}

describe('PCI enumeration (pci-host-ecam-generic)', () => {
  it('finds every function by configuration reads, following multi-function devices and bridges', async () => {
    const rig = pciRig();
    await bootHost(rig);
    const host = rig.core.findDevice('/pcie@40000000')!;
    expect(host.status).toBe('bound');
    const found = pciHostBridgeOf(host)!.devices;
    expect(found.map((d) => d.name)).toEqual(['0000:00:00.0', '0000:00:02.0', '0000:00:02.3', '0000:00:03.0', '0000:01:00.0']);
    expect(found.map((d) => d.parent?.name)).toEqual(['/pcie@40000000', '/pcie@40000000', '/pcie@40000000', '/pcie@40000000', '0000:00:03.0']);
    expect(found.map((d) => d.rid)).toEqual([0x000, 0x010, 0x013, 0x018, 0x100]);
    const ep = pci(rig.core, '0000:00:00.0');
    expect([ep.vendor, ep.device, ep.classCode, ep.headerType, ep.multifunction]).toEqual([0x13b5, 0xff80, 0xff0000, 0, false]);
    expect(pci(rig.core, '0000:00:02.0').multifunction).toBe(true);
    expect(pci(rig.core, '0000:00:03.0').headerType).toBe(1);
    // The unconfigured bridge got bus 1 as secondary and subordinate, primary 0.
    expect(rig.bridge.read32(0x18) & 0xffffff).toBe(0x01_01_00);
  });

  it('parses the capability list and the PCIe extended capabilities', async () => {
    const rig = pciRig();
    await bootHost(rig);
    const ep = pci(rig.core, '0000:00:00.0');
    expect(ep.capabilities).toEqual([
      [0x10, CAP_PCIE],
      [0x05, 0x50],
    ]);
    expect(ep.extCapabilities).toEqual([
      [0x000f, 0x100],
      [0x0013, 0x110],
      [0x001b, 0x120],
    ]);
    expect(pciAtsSupported(ep)).toBe(true);
    expect(pciAtsSupported(pci(rig.core, '0000:00:02.0'))).toBe(false);
  });

  it('gives each function its fwspec from the host iommu-map at its RID, and links it to the IOMMU', async () => {
    const rig = pciRig();
    const journal: string[] = [];
    const epDriver: PciDriver = {
      name: 'ep',
      bus: pciBus,
      idTable: [{ vendor: 0x13b5, device: 0xff80 }],
      probe: async (d) => void journal.push(d.name),
    };
    await rig.core.registerDriver(epDriver);
    await bootHost(rig);
    const ep = pci(rig.core, '0000:00:00.0');
    expect(ep.fwspec?.iommuNode.path).toBe('/iommu@2b400000');
    expect(pci(rig.core, '0000:01:00.0').fwspec?.ids).toEqual([0x10100]);
    expect(ep.fwspec?.ids).toEqual([0x10000]);
    expect(ep.fwspec?.dmaCoherent).toBe(true);
    expect(ep.dmaCoherent).toBe(true);
    // The SMMU has no driver yet: the endpoint waits for it.
    expect(ep.status).toBe('deferred');
    expect(ep.probeError).toBe('supplier /iommu@2b400000 not ready');
    await rig.core.registerDriver({ name: 'smmu', bus: platformBus, ofMatchTable: ['arm,smmu-v3'], probe: async (d) => void journal.push(d.name) });
    expect(journal).toEqual(['/iommu@2b400000', '0000:00:00.0']);
    expect(ep.status).toBe('bound');
  });

  it('binds PCI drivers by vendor/device ID or by class', async () => {
    const rig = pciRig();
    const bound: string[] = [];
    const byId: PciDriver = {
      name: 'e1000e',
      bus: pciBus,
      idTable: [{ vendor: 0x8086, device: 0x1533 }],
      probe: async (d) => void bound.push(`e1000e ${d.name}`),
    };
    const byClass: PciDriver = {
      name: 'any-ethernet',
      bus: pciBus,
      idTable: [{ class: 0x020000, classMask: 0xffff00 }],
      probe: async (d) => void bound.push(`any-ethernet ${d.name}`),
    };
    await rig.core.registerDriver(byId);
    await rig.core.registerDriver(byClass);
    await bootHost(rig);
    await rig.core.settle(); // the SMMU has no driver: let the functions probe without it
    expect(bound).toEqual(['e1000e 0000:00:02.0', 'any-ethernet 0000:00:02.3', 'any-ethernet 0000:01:00.0']);
    expect(pci(rig.core, '0000:00:03.0').status).toBe('no-driver');
  });

  it('cuts the bus range down to what the ECAM window holds', async () => {
    const rig = pciRig({ 'bus-range': [0, 7] });
    await bootHost(rig);
    expect(pciHostBridgeOf(rig.core.findDevice('/pcie@40000000')!)?.busEnd).toBe(1);
    expect(rig.core.log.lines('warn').map((l) => l.message)).toContain(
      'ECAM window can only hold [bus 00-01] (reduced from [bus 00-07])',
    );
  });

  it('fails the host probe, naming the range, when no device backs the ECAM window', async () => {
    const rig = pciRig({ reg: reg([0x5000_0000, 0x20_0000]) });
    await bootHost(rig);
    const host = rig.core.findDevice('/pcie@40000000')!;
    expect(host.status).toBe('failed');
    expect(host.probeError).toBe('ENXIO: ioremap: no device MMIO covers [0x50000000-0x501fffff]');
    expect(rig.core.devices.some((d) => d instanceof PciDevice)).toBe(false);
  });

  it('removes the functions when the host bridge goes away', async () => {
    const rig = pciRig();
    await bootHost(rig);
    const host = rig.core.findDevice('/pcie@40000000')!;
    await rig.core.unbind(host);
    expect(rig.core.devices.filter((d) => d instanceof PciDevice)).toEqual([]);
    await rig.core.attach(host);
    expect(rig.core.devices.filter((d) => d instanceof PciDevice).length).toBe(5);
  });

  it('finds a function\'s MSI frame through the host msi-map and allocates its vectors there', async () => {
    const rig = pciRig();
    await bootHost(rig);
    const ep = pci(rig.core, '0000:01:00.0');
    expect(msiControllerOf(ep)?.path).toBe('/intc@2c001000/v2m@2c1c0000');
    expect(msiAllocVectors(ep, 2).map((v) => [v.address, v.data])).toEqual([
      [V2M + 0x40, 128],
      [V2M + 0x40, 129],
    ]);
  });
});

describe('ATS, PRI and PASID control', () => {
  async function endpoint(): Promise<{ rig: Rig; ep: PciDevice }> {
    const rig = pciRig();
    await bootHost(rig);
    return { rig, ep: pci(rig.core, '0000:00:00.0') };
  }

  it('enables ATS with the STU in the control register and disables it again', async () => {
    const { rig, ep } = await endpoint();
    const ctrl = (): number => rig.ep.read16(0x106);
    expect(pciAtsQueueDepth(ep)).toBe(32); // a depth field of 0 means 32
    pciEnableAts(ep, 12);
    expect(ctrl()).toBe(0x8000);
    await expectErrno(() => pciEnableAts(ep, 12), 'EBUSY');
    pciDisableAts(ep);
    expect(ctrl()).toBe(0x0000);
    pciEnableAts(ep, 16);
    expect(ctrl()).toBe(0x8004);
    expect(ep.features).toMatchObject({ atsEnabled: true, atsStu: 16 });
    expect(rig.ep.read16(0x104)).toBe(0x20); // the capability half is untouched
    pciDisableAts(ep);
    expect(() => pciEnableAts(ep, 11)).toThrow(new KernelError('EINVAL', 'pci_enable_ats: page shift 11 of 0000:00:00.0 is not an STU (12..43)'));
    const plain = pci(rig.core, '0000:00:02.0');
    await expectErrno(() => pciEnableAts(plain, 12), 'EINVAL', 'EINVAL: pci_enable_ats: 0000:00:02.0 has no ATS capability');
  });

  it('enables PRI with min(requested, capacity) outstanding requests, keeping write-1-to-clear status', async () => {
    const { rig, ep } = await endpoint();
    const pri = rig.ep.ext.pri!;
    // A Response Failure left over from before: set the RW1C bit.
    rig.ep.space[(pri + 4) >> 2] = (rig.ep.space[(pri + 4) >> 2] | (0x0001 << 16)) >>> 0;
    pciEnablePri(ep, 64);
    expect(rig.ep.read32(pri + 0xc)).toBe(32);
    expect(ep.features.priReqsAlloc).toBe(32);
    expect(rig.ep.read16(pri + 4) & 1).toBe(1);
    expect(rig.ep.read16(pri + 6) & 0x0001).toBe(0x0001); // RF survived the control write
    expect(rig.ep.read16(pri + 6) & 0x0100).toBe(0); // no longer stopped
    expect(pciPrgRespPasidRequired(ep)).toBe(true);
    await expectErrno(() => pciEnablePri(ep, 8), 'EBUSY', /EBUSY: pci_enable_pri: PRI is already enabled/);
    await expectErrno(() => pciResetPri(ep), 'EBUSY', /EBUSY: pci_reset_pri: PRI of 0000:00:00.0 is enabled/);
    pciDisablePri(ep);
    expect(rig.ep.read16(pri + 4) & 1).toBe(0);
    pciResetPri(ep);
    expect(rig.ep.read16(pri + 6) & 0x0003).toBe(0); // reset cleared the error status
    pciEnablePri(ep, 4);
    expect(rig.ep.read32(pri + 0xc)).toBe(4);
  });

  it('enables PASID with supported features only and reports the PASID width', async () => {
    const { rig, ep } = await endpoint();
    const pasid = rig.ep.ext.pasid!;
    expect(pciMaxPasids(ep)).toBe(1 << 16);
    expect(pciPasidFeatures(ep)).toBe(PCI_PASID_CTRL_EXEC);
    await expectErrno(() => pciEnablePasid(ep, PCI_PASID_CTRL_PRIV), 'EINVAL', 'EINVAL: pci_enable_pasid: 0000:00:00.0 supports PASID features 0x2, not 0x4');
    pciEnablePasid(ep, PCI_PASID_CTRL_EXEC);
    expect(rig.ep.read16(pasid + 6)).toBe(0x3);
    await expectErrno(() => pciEnablePasid(ep), 'EBUSY');
    pciDisablePasid(ep);
    expect(rig.ep.read16(pasid + 6)).toBe(0);
    expect(() => pciMaxPasids(pci(rig.core, '0000:01:00.0'))).toThrow(/has no PASID capability/);
  });

  it('sets bus mastering without clearing status bits', async () => {
    const { rig, ep } = await endpoint();
    rig.ep.space[1] = (rig.ep.space[1] | (0x8000 << 16)) >>> 0; // Detected Parity Error (RW1C)
    pciSetMaster(ep);
    expect(pciIsBusMaster(ep)).toBe(true);
    expect(rig.ep.read16(0x06) & 0x8000).toBe(0x8000);
  });
});
