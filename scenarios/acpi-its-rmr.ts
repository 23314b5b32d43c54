/**
 * acpi-its-rmr: an Arm server's ACPI description in the shape of Arm's Neoverse N1 reference design
 * (GICv3 with an ITS; the SMMUv3 with no PRI GSIV, so its IORT DeviceID mapping is valid and its own
 * interrupts are MSIs as DeviceID 0x10000), a PCIe endpoint at 00:01.0 and an IORT RMR node (E.d)
 * for its RID, the host bridge's _DSM asking the OS to preserve the boot configuration.
 * The SMMU's vectors are mapped through the ITS command queue; a stray transaction's event reaches
 * the kernel as the LPI its EventID was mapped to; the endpoint gets the RMR range as a reserved
 * region, identity-mapped. Booted again without the _DSM: the bypass STE is still installed, the
 * reserved region is not given.
 */
import { writeDsdt } from '../bus/acpi/aml.js';
import { writeIort } from '../bus/acpi/iort.js';
import { writeMadt } from '../bus/acpi/madt.js';
import { writeMcfg } from '../bus/acpi/mcfg.js';
import type { PciDevice } from '../bus/pci/pci-device.js';
import { devIommu } from '../core/iommu-device.js';
import { iommuIovaToPhys } from '../core/iommu-domain.js';
import { iommuGetResvRegions } from '../core/iommu-resv.js';
import { armSmmuRmrSids } from '../drivers/arm-smmu-v3/arm-smmu-v3-acpi.js';
import { findArmSmmuV3 } from '../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { GicIts } from '../hw/gic-its.js';
import { bootFromAcpi, run } from './lib/lab.js';
import { Checks, type Scenario } from './scenario.js';

const GICD = 0x3000_0000;
const ITS = 0x3004_0000;
const SMMU = 0x4f00_0000;
const ECAM = 0x6000_0000;
const RAM = { base: 0x8000_0000, size: 0x4000_0000 };
const RMR_BASE = 0x9000_0000;
const SMMU_DEVICE_ID = 0x1_0000;

function tables(preserve: boolean): Map<string, Uint8Array> {
  const t = new Map<string, Uint8Array>();
  t.set('APIC', writeMadt({ gicc: [{ cpuInterfaceNumber: 0, uid: 0, baseAddress: 0, gicrBaseAddress: 0, mpidr: 0 }], gicd: { baseAddress: GICD, version: 3 }, gicr: [{ baseAddress: 0x300c_0000, length: 0x10_0000 }], its: [{ translationId: 0, baseAddress: ITS }] }));
  t.set(
    'IORT',
    writeIort({
      revision: 5,
      nodes: [
        { kind: 'its', itsIds: [0] },
        {
          kind: 'smmuv3',
          revision: 4,
          base: SMMU,
          flags: 1,
          vatosAddress: 0,
          model: 0,
          eventGsiv: 260,
          priGsiv: 0,
          gerrGsiv: 262,
          syncGsiv: 261,
          proximityDomain: 0,
          deviceIdMappingIndex: 1,
          mappings: [
            { inputBase: 0, count: 0x1_0000, outputBase: 0, output: 0 },
            { inputBase: 0, count: 1, outputBase: SMMU_DEVICE_ID, output: 0, single: true },
          ],
        },
        { kind: 'rc', memory: { cacheCoherency: 1, hints: 0, memoryFlags: 0 }, atsAttribute: 0, pciSegment: 0, memoryAddressLimit: 48, pasidCapabilities: 0, mappings: [{ inputBase: 0, count: 0x1_0000, outputBase: 0, output: 1 }] },
        { kind: 'rmr', flags: 0, descriptors: [{ base: RMR_BASE, length: 0x1_0000 }], mappings: [{ inputBase: 0x8, count: 1, outputBase: 0x8, output: 1, single: true }] },
      ],
    }),
  );
  t.set('MCFG', writeMcfg({ entries: [{ baseAddress: ECAM, segment: 0, startBus: 0, endBus: 0xff }] }));
  t.set('DSDT', writeDsdt({ devices: [{ name: 'PCI0', hid: 'PNP0A08', cid: 'PNP0A03', seg: 0, uid: 0, cca: 1, ...(preserve ? { pciBootConfig: 'preserve' as const } : {}), children: [{ name: 'EP01', adr: 1 << 16 }] }] }));
  return t;
}

export const scenario: Scenario = {
  name: 'acpi-its-rmr',
  shows: 'ACPI server shape: SMMUv3 MSIs through the GICv3 ITS with the IORT DeviceID; a PCI RMR honoured only with the host bridge _DSM',
  async run(ctx) {
    const c = new Checks();
    const { machine, kernel } = await bootFromAcpi(tables(true), { ram: [RAM] }, { seed: ctx.seed });
    const smmuPath = [...machine.iommus.keys()][0];
    const smmu = findArmSmmuV3(kernel.core, smmuPath);
    const its = machine.msiFrames.find((f): f is GicIts => f instanceof GicIts);
    c.ok('the machine has a GICv3 ITS', its !== undefined);
    if (!its) return c.result({});
    c.equal("the bus gives the SMMU's MSI writes the IORT DeviceID", its.deviceIdOf(smmuPath) ?? null, SMMU_DEVICE_ID);
    c.equal('the SMMU has its three vectors as EventIDs 0-2 of that DeviceID', smmu.msiVectors.map((v) => v.data), [0, 1, 2]);
    c.equal('the ITS consumed every command without error', its.commandErrors.length, 0);
    // A StreamID no stream-table level-2 table covers: the SMMU records an event (C_BAD_STE).
    const { port } = machine.portFor(smmuPath, { name: 'stray', streamId: 0x4200, cells: [0x4200], kind: 'platform', canStall: false, pasidBits: 0 });
    const before = smmu.events.length;
    await run(machine, new Promise((resolve) => port.submit({ master: 'stray', streamId: 0x4200, ssid: 0, ssidValid: false, addr: 0x1000, len: 4, write: false, exec: false, priv: false }, resolve)), 'stray DMA');
    await machine.scheduler.runFor(1_000_000);
    const lpi = its.lpiOf(SMMU_DEVICE_ID, 0);
    c.equal('the event MSI was translated to the LPI of EventID 0', its.translated.at(-1) ?? null, { deviceId: SMMU_DEVICE_ID, eventId: 0, lpi });
    c.equal('and the kernel reported the event', smmu.events.length, before + 1);

    const ep = kernel.core.findDevice('0000:00:01.0') as PciDevice | undefined;
    const regions = (d: PciDevice | undefined) => (d ? iommuGetResvRegions(d).filter((r) => r.type === 'DIRECT') : []);
    c.equal('with the _DSM: the endpoint has the RMR range as a DIRECT region', regions(ep).map((r) => r.start), [RMR_BASE]);
    const dom = ep ? devIommu(ep)?.group?.defaultDomain : undefined;
    c.equal('identity-mapped in its default domain', dom ? iommuIovaToPhys(dom, RMR_BASE + 0x80) : null, RMR_BASE + 0x80);

    const again = await bootFromAcpi(tables(false), { ram: [RAM] }, { seed: ctx.seed });
    const smmu2 = findArmSmmuV3(again.kernel.core, smmuPath);
    c.equal('without it: the bypass STE is still installed at probe', [...armSmmuRmrSids(smmu2)], [0x8]);
    c.equal('but the endpoint gets no reserved region', regions(again.kernel.core.findDevice('0000:00:01.0') as PciDevice | undefined).length, 0);
    return c.result({ 'SMMU DeviceID': `0x${SMMU_DEVICE_ID.toString(16)}`, 'event LPI': lpi ?? '-', 'ITS commands': its.stats.commands, 'MSI translations': its.stats.translations });
  },
};
