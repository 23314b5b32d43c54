/**
 * smmu-v2-dma: DMA through an MMU-500 driven by the arm-smmu driver. A stage 1 domain (ASID = bank)
 * and a stage 2 domain (VMID = bank + 1) are attached to two masters, pages are mapped, the masters
 * write, and the bytes land where the page tables say; an unmap is invalidated with TLBI + TLBSYNC,
 * so the next access faults instead of hitting a stale TLB entry. SMR masks from 2-cell `iommus`
 * are in the SMRs.
 */
import { iommuAttachDevice } from '../core/iommu-attach.js';
import { IOMMU_HWPT_ALLOC_NEST_PARENT, iommuPagingDomainAlloc, iommuPagingDomainAllocFlags } from '../core/iommu-domain.js';
import { iommuMap, iommuUnmap } from '../core/iommu-map.js';
import { IOMMU_READ, IOMMU_WRITE } from '../core/io-pgtable.js';
import { armSmmuDomainContextBank } from '../drivers/arm-smmu/arm-smmu-domain.js';
import { boot, run } from './lib/lab.js';
import { Checks, type Scenario } from './scenario.js';
import { SMMU_V2_LAB as L, cbReg, deviceOf, kernelPage, masterOf, smmuReg, smmuV2Machine } from './smmu-v2-lab.js';

export const scenario: Scenario = {
  name: 'smmu-v2-dma',
  shows: 'DMA through MMU-500 stage 1 and stage 2 context banks; unmap invalidates the TLB',
  async run(ctx) {
    const machine = smmuV2Machine({ seed: ctx.seed });
    const kernel = await boot(machine);
    const c = new Checks();
    const smmuDev = deviceOf(kernel, L.smmuPath);
    c.equal('MMU-500 probed by', smmuDev.driver?.name ?? smmuDev.probeError, 'arm-smmu');

    const smrs = Array.from({ length: 48 }, (_, i) => smmuReg(machine, 0x800 + 4 * i));
    c.ok('the 2-cell specifier <0x420 0x3> is SMR VALID|MASK 0x3|ID 0x420', smrs.includes(0x8003_0420));

    // Stage 1.
    const devA = deviceOf(kernel, L.masterA);
    const s1 = iommuPagingDomainAlloc(devA);
    await run(machine, iommuAttachDevice(s1, devA));
    const cb1 = armSmmuDomainContextBank(s1);
    const pa1 = kernelPage(kernel);
    await run(machine, iommuMap(s1, 0x1000_0000, pa1, 0x1000, IOMMU_READ | IOMMU_WRITE));
    const w1 = await run(machine, masterOf(machine, L.masterA).write(0x1000_0040, Uint8Array.of(0xde, 0xad)));
    c.equal('stage 1 write completes', w1.status, 'ok');
    c.equal('stage 1 bytes land at the mapped PA', [...machine.memory.read(pa1 + 0x40, 2)], [0xde, 0xad]);
    c.equal('stage 1 bank: CBAR.TYPE = S1 translate, S2 bypass', (smmuReg(machine, 0x1000 + 4 * cb1) >>> 16) & 3, 1);
    c.equal('stage 1 bank: TTBR0.ASID = bank index', cbReg(machine, cb1, 0x24) >>> 16, cb1);

    // Stage 2.
    const devC = deviceOf(kernel, L.masterNoStall);
    const s2 = iommuPagingDomainAllocFlags(devC, IOMMU_HWPT_ALLOC_NEST_PARENT);
    await run(machine, iommuAttachDevice(s2, devC));
    const cb2 = armSmmuDomainContextBank(s2);
    const pa2 = kernelPage(kernel);
    await run(machine, iommuMap(s2, 0x2_0000_0000, pa2, 0x1000, IOMMU_READ | IOMMU_WRITE));
    const w2 = await run(machine, masterOf(machine, L.masterNoStall).write(0x2_0000_0080, Uint8Array.of(0xbe, 0xef)));
    c.equal('stage 2 write completes', w2.status, 'ok');
    c.equal('stage 2 bytes land at the mapped PA', [...machine.memory.read(pa2 + 0x80, 2)], [0xbe, 0xef]);
    c.equal('stage 2 bank: CBAR = TYPE S2, VMID bank + 1', smmuReg(machine, 0x1000 + 4 * cb2), cb2 + 1);

    // Unmap: TLBIVAL + TLBSYNC; the stale entry must not be used.
    await run(machine, iommuUnmap(s1, 0x1000_0000, 0x1000));
    const w3 = await run(machine, masterOf(machine, L.masterA).read(0x1000_0040, 2));
    c.ok('after unmap the access no longer translates', w3.status !== 'ok', `saw ${w3.status}`);
    return c.result({
      'stage 1 bank': cb1,
      'stage 2 bank': cb2,
      'SMRs in use': smrs.filter((v) => v >>> 31).length,
      'virtual time (µs)': Math.round(machine.scheduler.now / 1000),
    });
  },
};
