/**
 * Machines and kernels booted from ACPI tables: QEMU-shaped IORTs (E.b and E.d), RMR bypass STEs and
 * reserved regions, SMMUv1/v2 by IORT model, interrupts, errors.
 */
import { describe, expect, it } from 'vitest';
import { acpiDevices, acpiFindDevice, acpiIortSmmuCompanion } from '../../../bus/acpi/acpi-boot.js';
import { writeDsdt } from '../../../bus/acpi/aml.js';
import { iommuGetResvRegions } from '../../../core/iommu-resv.js';
import { iommuIovaToPhys } from '../../../core/iommu-domain.js';
import { devIommu } from '../../../core/iommu-device.js';
import { armSmmuRmrSids } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-acpi.js';
import { findArmSmmuV3 } from '../../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { armSmmuSteConfigName } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-ste.js';
import { FirmwareError } from '../../../bus/firmware-error.js';
import { writeIort } from '../../../bus/acpi/iort.js';
import { boot, bootFromAcpi, machineFromAcpi } from '../../../scenarios/lib/lab.js';
import { QEMU, qemuIortNodes, qemuSmmuOffset, qemuTables } from './acpi-fixture.js';
import { buildVirtAcpi, virtIortOffsets } from '../../../scenarios/machines/virt-acpi.js';
import { ARM_SMMU_FEAT_HA, ARM_SMMU_FEAT_HD } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';

const smmuName = (o = {}): string => `IORT:smmuv3@0x${qemuSmmuOffset(o).toString(16)}`;

describe('QEMU virt-shaped tables', () => {
  for (const revision of [3, 5]) {
    it(`IORT revision ${revision}: GICv3 + ITS, the SMMUv3 with its GSIVs, endpoints behind the RC`, async () => {
      const o = { revision, endpoints: [{ dev: 1, ats: true }, { dev: 2 }] };
      const { tables, memory } = qemuTables(o);
      const { machine, kernel } = await bootFromAcpi(tables, memory, { seed: 1 });
      const d = machine.describe();
      expect(d.interruptControllers).toEqual([{ node: 'MADT:gicd@0x8000000', compatible: 'arm,gic-v3', kind: 'gic-v3' }]);
      expect(d.iommus).toMatchObject([{ node: smmuName(o), status: 'modelled', model: 'smmu-v3', regions: [{ base: QEMU.smmu, size: 0x2_0000 }] }]);
      expect(d.pciHosts[0]!.endpoints.map((e) => [e.node, e.streamId, e.iommu])).toEqual([
        ['\\_SB_.PCI0.EP01', 0x8, smmuName(o)],
        ['\\_SB_.PCI0.EP02', 0x10, smmuName(o)],
      ]);
      const smmuDev = kernel.core.findDevice(smmuName(o))!;
      expect(smmuDev.driver?.name).toBe('arm-smmu-v3');
      // Wired interrupts as the GSIVs say: eventq = 106 → SPI 74, edge.
      expect(smmuDev.status).toBe('bound');
      const fn = kernel.core.findDevice('0000:00:01.0')!;
      expect(fn.fwspec).toMatchObject({ ids: [0x8], atsSupported: false });
      expect(fn.fwspec!.iommuNode.path).toBe(smmuName(o));
      expect(devIommu(fn)?.group).toBeTruthy();
      // The UART is a platform device with no driver; its name is its ACPI path.
      expect(kernel.core.findDevice('\\_SB_.COM0')?.status).toBe('no-driver');
      expect(acpiFindDevice(kernel.dt, 'ARMH0011', 0)?.path).toBe('\\_SB_.COM0');
      expect(acpiDevices(kernel.dt).map((x) => x.path)).toContain('\\_SB_.PCI0.EP01');
    });
  }

  it('every table revision (0, E.b, E.d, E.e, E.f) boots the same SMMU, StreamIDs and engines', async () => {
    for (const revision of [0, 3, 5, 6, 7]) {
      const o = { revision, engines: [{ sid: 0x100, stall: true, pasidBits: 5 }], endpoints: [{ dev: 3 }] };
      const { tables, memory } = qemuTables(o);
      const { machine, kernel } = await bootFromAcpi(tables, memory, { seed: 1 });
      expect(machine.describe().masters).toMatchObject([{ node: '\\_SB_.DMA0', streams: [{ streamId: 0x100, iommu: smmuName(o) }], canStall: true, pasidBits: 5 }]);
      expect(kernel.core.findDevice(smmuName(o))?.status).toBe('bound');
      expect(kernel.core.findDevice('\\_SB_.DMA0')!.fwspec).toMatchObject({ ids: [0x100], canStall: true, pasidBits: 5 });
      expect(kernel.core.findDevice('0000:00:03.0')!.fwspec?.ids).toEqual([0x18]);
      expect(kernel.deferredAtBoot).toEqual([]);
    }
  });

  it('RIDs the RC maps straight to the ITS bypass the SMMU, on both sides', async () => {
    const o = {
      rcMappings: [
        { inputBase: 0, count: 0x10, outputBase: 0, output: 'smmu' as const },
        { inputBase: 0x10, count: 0xfff0, outputBase: 0x10, output: 'its' as const },
      ],
      endpoints: [{ dev: 1 }, { dev: 2 }],
    };
    const { tables, memory } = qemuTables(o);
    const { machine, kernel } = await bootFromAcpi(tables, memory, { seed: 1 });
    const eps = machine.describe().pciHosts[0]!.endpoints;
    expect(eps.map((e) => [e.rid, e.iommu])).toEqual([
      [0x8, smmuName(o)],
      [0x10, null],
    ]);
    expect(kernel.core.findDevice('0000:00:01.0')!.fwspec?.ids).toEqual([0x8]);
    expect(kernel.core.findDevice('0000:00:02.0')!.fwspec).toBeNull();
  });
});

describe('SMMUv3 HTTU override', () => {
  it('the IORT flags decide HA/HD, warning when IDR0.HTTU says otherwise', async () => {
    const seen: Record<number, { ha: boolean; hd: boolean; warned: boolean }> = {};
    for (const field of [0, 1, 2]) {
      const { tables, memory } = qemuTables();
      const nodes = qemuIortNodes({});
      (nodes[1] as { flags: number }).flags = 1 | (field << 1);
      tables.set('IORT', writeIort({ revision: 5, nodes }));
      const { kernel } = await bootFromAcpi(tables, memory, { seed: 1 });
      const smmu = findArmSmmuV3(kernel.core, smmuName());
      seen[field] = {
        ha: (smmu.features & ARM_SMMU_FEAT_HA) !== 0,
        hd: (smmu.features & ARM_SMMU_FEAT_HD) !== 0,
        warned: kernel.log.entries.some((e) => e.message.includes('overridden by FW configuration')),
      };
    }
    expect(seen[0]).toMatchObject({ ha: false, hd: false });
    expect(seen[1]).toMatchObject({ ha: true, hd: false });
    expect(seen[2]).toMatchObject({ ha: true, hd: true });
    // The model implements one HTTU level: exactly the two other settings disagree with it.
    expect(Object.values(seen).filter((x) => x.warned)).toHaveLength(2);
  });
});

describe('DSDT companions of IORT nodes', () => {
  it('finds the NVDA200C device whose _UID is the SMMUv3 node Identifier in one call', async () => {
    const { tables, memory } = qemuTables();
    tables.set(
      'DSDT',
      writeDsdt({
        devices: [
          { name: 'CQ00', hid: 'NVDA200C', uid: 7, memory: [{ base: 0x0a00_0000, size: 0x1_0000 }] },
          { name: 'CQ01', hid: 'NVDA200C', uid: 1, memory: [{ base: 0x0a10_0000, size: 0x1_0000 }] },
        ],
      }),
    );
    const { kernel } = await bootFromAcpi(tables, memory, { seed: 1 });
    // QEMU numbers nodes from 0 in order: ITS 0, SMMUv3 1.
    const smmu = kernel.core.findDevice(smmuName())!;
    expect(acpiIortSmmuCompanion(smmu.ofNode, 'NVDA200C')?.path).toBe('\\_SB_.CQ01');
    expect(acpiIortSmmuCompanion(smmu.ofNode, 'NVDA200X')).toBeNull();
    expect(acpiIortSmmuCompanion(null, 'NVDA200C')).toBeNull();
  });
});

describe('RMR nodes at boot', () => {
  const rmrBase = 0x4800_0000;
  const o = (revision: number) => ({
    revision,
    engines: [{ sid: 0x100 }, { sid: 0x180 }],
    rmrs: [{ sid: 0x100, count: 1, base: rmrBase, length: 0x1_0000 }, { sid: 0x200, count: 2, base: 0x4900_0000, length: 0x2_0000, flags: 1 }],
  });

  it('E.d: bypass STEs for every RMR StreamID before the SMMU is enabled; the master gets its region identity-mapped', async () => {
    const { tables, memory } = qemuTables(o(5));
    const { kernel } = await bootFromAcpi(tables, memory, { seed: 1 });
    const smmu = findArmSmmuV3(kernel.core, smmuName(o(5)));
    expect([...armSmmuRmrSids(smmu)].sort((a, b) => a - b)).toEqual([0x100, 0x200, 0x201]);
    // No device owns 0x200/0x201: their STEs stay bypass; a neighbour stays abort (disable_bypass).
    expect(armSmmuSteConfigName(smmu.strtab.readSte(0x200))).toBe('bypass');
    expect(armSmmuSteConfigName(smmu.strtab.readSte(0x201))).toBe('bypass');
    expect(armSmmuSteConfigName(smmu.strtab.readSte(0x202))).toBe('abort');
    const dma0 = kernel.core.findDevice('\\_SB_.DMA0')!;
    expect(iommuGetResvRegions(dma0).filter((r) => r.type === 'DIRECT')).toEqual([{ start: rmrBase, length: 0x1_0000, prot: 1 | 2 | 16, type: 'DIRECT' }]);
    const dom = devIommu(dma0)!.group!.defaultDomain!;
    expect(iommuIovaToPhys(dom, rmrBase + 0x1234)).toBe(rmrBase + 0x1234);
    // The other engine has no RMR.
    const dma1 = kernel.core.findDevice('\\_SB_.DMA1')!;
    expect(iommuGetResvRegions(dma1).filter((r) => r.type === 'DIRECT' || r.type === 'DIRECT_RELAXABLE')).toEqual([]);
  });

  it('E.b (revision 3): Linux ignores RMR nodes, so no bypass STE and no reserved region', async () => {
    const { tables, memory } = qemuTables(o(3));
    const { kernel } = await bootFromAcpi(tables, memory, { seed: 1 });
    const smmu = findArmSmmuV3(kernel.core, smmuName(o(3)));
    expect(armSmmuRmrSids(smmu)).toEqual([]);
    // Nothing made the level-2 table of SIDs 0x200-0x2ff: no STE exists for them at all.
    expect(() => smmu.strtab.readSte(0x200)).toThrow(/no level-2 stream table/);
    expect(iommuGetResvRegions(kernel.core.findDevice('\\_SB_.DMA0')!).filter((r) => r.type === 'DIRECT')).toEqual([]);
  });
});

describe('SMMUv1/v2 nodes by IORT model, and bad tables', () => {
  it('an MMU-500 node probes arm-smmu with its global and context interrupts; masters by named component', async () => {
    const { tables, memory } = qemuTables();
    tables.set(
      'IORT',
      writeIort({
        revision: 0,
        nodes: [
          {
            kind: 'smmu',
            base: 0x0b00_0000,
            span: 0x2_0000,
            model: 3,
            flags: 2,
            globalIrqs: { nsgIrpt: 112, nsgIrptFlags: 0, nsgCfgIrpt: 0, nsgCfgIrptFlags: 0 },
            contextIrqs: [113, 114, 115, 116].map((gsiv) => ({ gsiv, flags: 0 })),
            pmuIrqs: [],
          },
          { kind: 'nc', flags: 1, memory: { cacheCoherency: 1, hints: 0, memoryFlags: 0 }, memoryAddressLimit: 48, deviceName: '\\_SB.DMA0', mappings: [{ inputBase: 0, count: 1, outputBase: 0x400, output: 0, single: true }] },
        ],
      }),
    );
    const { tables: t2 } = qemuTables({ engines: [{ sid: 0 }] });
    tables.set('DSDT', t2.get('DSDT')!);
    const { machine, kernel } = await bootFromAcpi(tables, memory, { seed: 1 });
    expect(machine.describe().iommus).toMatchObject([{ node: 'IORT:smmu@0x30', compatible: ['arm,mmu-500'], model: 'mmu-500', status: 'modelled' }]);
    expect(machine.describe().masters[0]).toMatchObject({ node: '\\_SB_.DMA0', streams: [{ streamId: 0x400, iommu: 'IORT:smmu@0x30' }], canStall: true });
    const smmu = kernel.core.findDevice('IORT:smmu@0x30')!;
    expect(smmu.driver?.name).toBe('arm-smmu');
    const dma = kernel.core.findDevice('\\_SB_.DMA0')!;
    expect(dma.fwspec).toMatchObject({ ids: [0x400], canStall: true });
    expect(devIommu(dma)?.group).toBeTruthy();
  });

  it('a malformed table stops the machine with a FirmwareError naming it', () => {
    const { tables, memory } = qemuTables();
    const iort = tables.get('IORT')!.slice();
    iort[48 + 1] = 0xff;
    iort[48 + 2] = 0xff;
    iort[9] = (iort[9]! - 0xff - 0xff + 0x18 + 0x00) & 0xff;
    tables.set('IORT', iort);
    expect(() => machineFromAcpi(tables, memory)).toThrow(FirmwareError);
    expect(() => machineFromAcpi(tables, memory)).toThrow(/IORT: field "Length": node of 65535 bytes runs past the table end .*offset 0x31, node ITS group node at 0x30/);
  });

  it('an IORT without a MADT boots: no interrupt controller, so no SMMU interrupts (arm-smmu needs them and fails)', async () => {
    const { tables, memory } = buildVirtAcpi();
    const only = new Map([['IORT', tables.get('IORT')!]]);
    const { machine, kernel } = await bootFromAcpi(only, memory, { seed: 1 });
    expect(machine.warnings).toContain('no MADT GIC distributor: the machine has no interrupt controller');
    const off = virtIortOffsets();
    expect(kernel.core.findDevice(`IORT:smmuv3@0x${off.smmuv3.toString(16)}`)?.status).toBe('bound');
    expect(kernel.core.findDevice(`IORT:smmu@0x${off.mmu500.toString(16)}`)?.probeError).toMatch(/found 0 interrupts/);
  });

  it('the kernel refuses an ACPI boot without a memory map', async () => {
    const { tables, memory } = qemuTables();
    const m = machineFromAcpi(tables, memory);
    (m as unknown as { memoryMap: null }).memoryMap = null;
    await expect(boot(m)).rejects.toThrow(/ACPI boot without a memory map/);
  });
});
