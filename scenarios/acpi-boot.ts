/**
 * acpi-boot: the virt machine booted from ACPI tables (MADT, IORT, MCFG, DSDT) instead of its
 * Device Tree: the same SMMUs probe, every master gets the same StreamIDs and a group, PCI functions
 * take theirs through the IORT root complex. Then an IORT RMR node (E.d) for DMA engine 0's StreamID
 * and a second, device-less StreamID: both get bypass STEs before the SMMU is enabled, and the
 * engine's default domain identity-maps the RMR range, so DMA firmware left running there keeps
 * landing at IOVA = PA.
 */
import { devIommu } from '../core/iommu-device.js';
import { iommuIovaToPhys } from '../core/iommu-domain.js';
import { armSmmuRmrSids } from '../drivers/arm-smmu-v3/arm-smmu-v3-acpi.js';
import { findArmSmmuV3 } from '../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { armSmmuSteConfigName } from '../drivers/arm-smmu-v3/arm-smmu-v3-ste.js';
import { boot, virtAcpiMachine, virtMachine } from './lib/lab.js';
import { virtIortOffsets } from './machines/virt-acpi.js';
import { VIRT } from './machines/virt.js';
import { Checks, type Scenario } from './scenario.js';
import { engineJob, fillPhys, readPhys, smmuModel, type SmmuV3Lab } from './smmu-v3-lab.js';

const RMR_BASE = VIRT.ramBase + 0x1000_0000;
const RMR_LEN = 0x1_0000;

export const scenario: Scenario = {
  name: 'acpi-boot',
  shows: 'virt booted from ACPI IORT/MADT/MCFG/DSDT matches its DT boot; RMR StreamIDs keep bypassing and their ranges stay identity-mapped',
  async run(ctx) {
    const c = new Checks();
    const dtKernel = await boot(virtMachine({ seed: ctx.seed }));
    const acpiKernel = await boot(virtAcpiMachine({ seed: ctx.seed }));
    const smmuPath = `IORT:smmuv3@0x${virtIortOffsets().smmuv3.toString(16)}`;
    const ids = (k: typeof dtKernel, name: string): number[] => k.core.findDevice(name)?.fwspec?.ids ?? [];
    c.equal('the SMMUv3 is bound by arm-smmu-v3', acpiKernel.core.findDevice(smmuPath)?.driver?.name ?? null, 'arm-smmu-v3');
    c.equal('DMA engine 0 has the StreamID its DT node gives', ids(acpiKernel, '\\_SB_.DMA0'), ids(dtKernel, '/dma@c000000'));
    c.equal('the MMU-500 master has the StreamID its DT node gives', ids(acpiKernel, '\\_SB_.DMA2'), ids(dtKernel, '/dma@c020000'));
    c.equal('PCI 00:01.0 takes its StreamID through the IORT root complex', ids(acpiKernel, '0000:00:01.0'), ids(dtKernel, '0000:00:01.0'));
    const groups = (k: typeof dtKernel): number => new Set(k.core.devices.map((d) => devIommu(d)?.group?.id).filter((g) => g !== undefined)).size;
    c.equal('as many IOMMU groups as the DT boot', groups(acpiKernel), groups(dtKernel));

    // RMR: firmware left engine 0 (SID 0x100) and an undescribed agent (SID 0x300) doing DMA.
    const machine = virtAcpiMachine({ seed: ctx.seed, rmrs: [{ sid: 0x100, count: 1, base: RMR_BASE, length: RMR_LEN }, { sid: 0x300, count: 1, base: RMR_BASE, length: RMR_LEN }] });
    const kernel = await boot(machine);
    const lab: SmmuV3Lab = { machine, kernel, smmu: findArmSmmuV3(kernel.core, smmuPath), model: smmuModel(machine, smmuPath) };
    c.equal('bypass STEs were installed for the RMR StreamIDs', [...armSmmuRmrSids(lab.smmu)].sort((a, b) => a - b), [0x100, 0x300]);
    c.equal('the device-less RMR StreamID still bypasses', armSmmuSteConfigName(lab.smmu.strtab.readSte(0x300)), 'bypass');
    const dev = kernel.core.findDevice('\\_SB_.DMA0')!;
    const dom = devIommu(dev)!.group!.defaultDomain!;
    c.equal("the RMR range is identity-mapped in engine 0's default domain", iommuIovaToPhys(dom, RMR_BASE + 0x40), RMR_BASE + 0x40);
    fillPhys(lab, RMR_BASE, 0x1000, 0xa5);
    const st = await engineJob(lab, '\\_SB_.DMA0', { op: 'copy', src: RMR_BASE, dst: RMR_BASE + 0x8000, len: 0x1000 });
    c.equal('DMA at IOVA = PA inside the RMR completes', `${st.state}/${st.dmaStatus}`, 'done/ok');
    c.ok('and lands where firmware expects', readPhys(lab, RMR_BASE + 0x8000, 0x1000).every((b) => b === 0xa5));
    return c.result({ 'RMR SIDs': armSmmuRmrSids(lab.smmu).length, 'groups': groups(acpiKernel), 'translated': lab.model.stats.translated });
  },
};
