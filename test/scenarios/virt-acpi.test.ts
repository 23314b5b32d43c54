/**
 * The built-in virt machine booted from its Device Tree and from its ACPI tables: the same devices,
 * StreamIDs, groups, domains, and the same results for a DMA workload through the SMMUv3.
 */
import { describe, expect, it } from 'vitest';
import type { Device } from '../../bus/device.js';
import { findArmSmmuV3 } from '../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { armSmmuSteConfigName } from '../../drivers/arm-smmu-v3/arm-smmu-v3-ste.js';
import { armSmmuV3MasterOf } from '../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { boot, virtAcpiMachine, virtMachine } from '../../scenarios/lib/lab.js';
import { describeDeviceAttachment } from '../../scenarios/lib/iommu-state.js';
import { virtIortOffsets } from '../../scenarios/machines/virt-acpi.js';
import { copyThrough, smmuModel, type SmmuV3Lab } from '../../scenarios/smmu-v3-lab.js';
import type { Machine } from '../../hw/machine.js';
import type { Kernel } from '../../kernel/kernel.js';

const off = virtIortOffsets();
/** DT name → ACPI name of every part the two descriptions name differently. */
const ACPI_NAME: Record<string, string> = {
  '/iommu@9050000': `IORT:smmuv3@0x${off.smmuv3.toString(16)}`,
  '/iommu@b000000': `IORT:smmu@0x${off.mmu500.toString(16)}`,
  '/pcie@3f000000': '\\_SB_.PCI0',
  '/intc@8000000': 'MADT:gicd@0x8000000',
  '/intc@8000000/v2m@8020000': 'MADT:msi-frame@0x8020000',
  '/pcie@3f000000/accel@1,0': '\\_SB_.PCI0.ACCL',
  '/pcie@3f000000/nic@2,0': '\\_SB_.PCI0.NIC0',
  '/pcie@3f000000/func@3,0': '\\_SB_.PCI0.FN30',
  '/pcie@3f000000/func@3,1': '\\_SB_.PCI0.FN31',
};
for (let i = 0; i < 5; i++) ACPI_NAME[`/dma@c0${i}0000`] = `\\_SB_.DMA${i}`;
const acpiName = (n: string | null): string | null => (n === null ? null : (ACPI_NAME[n] ?? n));

function kernelView(k: Kernel) {
  return k.core.devices
    .map((d: Device) => ({
      name: d.name,
      driver: d.driver?.name ?? null,
      iommu: d.fwspec?.iommuNode.path ?? null,
      ids: d.fwspec?.ids ?? [],
      ats: d.fwspec?.atsSupported ?? false,
      canStall: d.fwspec?.canStall ?? false,
      pasidBits: d.fwspec?.pasidBits ?? 0,
      ...describeDeviceAttachment(d),
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

function machineView(m: Machine) {
  const d = m.describe();
  return {
    ram: d.ram,
    gics: d.interruptControllers.map((c) => c.kind),
    iommus: d.iommus.map((i) => [i.model, i.status, i.regions]),
    masters: d.masters.map((x) => [x.streams, x.canStall, x.pasidBits]),
    endpoints: d.pciHosts.flatMap((h) => h.endpoints.map((e) => [e.bdf, e.streamId, e.ats, e.pri, e.pasidBits])),
  };
}

async function workload(machine: Machine, kernel: Kernel, smmuPath: string, engine: string) {
  const lab: SmmuV3Lab = { machine, kernel, smmu: findArmSmmuV3(kernel.core, smmuPath), model: smmuModel(machine, smmuPath) };
  const copy = await copyThrough(lab, engine, 'S1', 0x5a);
  const dev = kernel.core.findDevice(engine)!;
  const master = armSmmuV3MasterOf(dev)!;
  return {
    status: copy.status,
    landed: copy.landed,
    src: copy.src,
    dst: copy.dst,
    ste: armSmmuSteConfigName(lab.smmu.strtab.readSte(master.streams[0])),
    sids: master.streams,
    translated: lab.model.stats.translated,
    events: lab.smmu.events.length,
    now: machine.scheduler.now,
  };
}

describe('virt from DT and from ACPI', () => {
  it('builds the same machine: RAM, GIC, SMMU models, masters and their streams, PCIe endpoints', () => {
    const dt = virtMachine({ seed: 3 });
    const acpi = virtAcpiMachine({ seed: 3 });
    expect(acpi.warnings).toEqual([]);
    const a = machineView(acpi);
    const d = machineView(dt);
    const renamed = JSON.parse(JSON.stringify(d), (_k, v: unknown) => (typeof v === 'string' ? acpiName(v) : v)) as typeof d;
    expect(a).toEqual(renamed);
    expect([...acpi.iommus.keys()]).toEqual([...dt.iommus.keys()].map(acpiName));
    expect([...acpi.masters.keys()]).toEqual([...dt.masters.keys()].map(acpiName));
  });

  it('boots the same devices with the same drivers, IOMMUs, StreamIDs, groups and domains', async () => {
    const kd = await boot(virtMachine({ seed: 3 }));
    const ka = await boot(virtAcpiMachine({ seed: 3 }));
    const dv = kernelView(kd).map((x) => ({ ...x, name: acpiName(x.name)!, iommu: acpiName(x.iommu) }));
    dv.sort((a, b) => a.name.localeCompare(b.name));
    expect(kernelView(ka)).toEqual(dv);
    // The PCI functions took their StreamIDs through the IORT root complex.
    expect(kernelView(ka).find((x) => x.name === '0000:00:01.0')).toMatchObject({ ids: [0x8], ats: true });
    expect(ka.log.entries.filter((e) => e.level === 'warn' || e.level === 'err')).toEqual(kd.log.entries.filter((e) => e.level === 'warn' || e.level === 'err'));
  });

  it('a DMA workload through the SMMUv3 gives the same results, to the physical page and the nanosecond', async () => {
    const md = virtMachine({ seed: 5 });
    const ma = virtAcpiMachine({ seed: 5 });
    const rd = await workload(md, await boot(md), '/iommu@9050000', '/dma@c010000');
    const ra = await workload(ma, await boot(ma), ACPI_NAME['/iommu@9050000'], '\\_SB_.DMA1');
    expect(rd).toMatchObject({ status: 'done/ok', landed: true, ste: 's1', sids: [0x101], events: 0 });
    expect(ra).toEqual(rd);
  });
});

describe('virt with the Grace CMDQV, from DT and from ACPI', () => {
  it('the SMMUv3 finds its CMDQV either way: by `nvidia,cmdqv`, or by the NVDA200C device whose _UID is its IORT Identifier', async () => {
    const kd = await boot(virtMachine({ seed: 4, cmdqv: true }));
    const ma = virtAcpiMachine({ seed: 4, cmdqv: true });
    const ka = await boot(ma);
    const sd = findArmSmmuV3(kd.core, '/iommu@9050000');
    const sa = findArmSmmuV3(ka.core, ACPI_NAME['/iommu@9050000']);
    expect(sd.implDev?.name).toBe('/cmdqv@9100000');
    expect(sa.implDev?.name).toBe('\\_SB_.CMQ0');
    expect(sa.options).toBe(sd.options);
    expect(ma.skippedNodes).toEqual([]);
    expect(ka.log.entries.filter((e) => e.level === 'warn' || e.level === 'err').map((e) => e.message)).toEqual(
      kd.log.entries.filter((e) => e.level === 'warn' || e.level === 'err').map((e) => e.message),
    );
  });
});
