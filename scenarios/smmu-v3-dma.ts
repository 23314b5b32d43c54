/**
 * smmu-v3-dma: DMA through a stage 1 and a stage 2 domain of the arm-smmu-v3 driver on the virt
 * machine. A DMA test engine copies a page between two IOVAs of an UNMANAGED domain; the bytes must
 * land at the physical page the destination IOVA maps to, and the STE must say what the driver chose
 * (a CD table with the domain's ASID for stage 1, the domain's VMID and page table for stage 2).
 */
import { ArmSmmuDomain } from '../drivers/arm-smmu-v3/arm-smmu-v3-domain.js';
import { STRTAB_STE_2_S2VMID, STRTAB_STE_3_S2TTB_MASK, CTXDESC_CD_0_ASID } from '../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { armSmmuSteConfigName } from '../drivers/arm-smmu-v3/arm-smmu-v3-ste.js';
import { armSmmuV3MasterOf } from '../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { Checks, type Scenario } from './scenario.js';
import { bootSmmuV3, copyThrough, deviceOf, V3 } from './smmu-v3-lab.js';

export const scenario: Scenario = {
  name: 'smmu-v3-dma',
  shows: 'DMA through an arm-smmu-v3 stage 1 (CD, ASID) and stage 2 (VMID) domain lands where the IOVA maps',
  async run(ctx) {
    const lab = await bootSmmuV3({ seed: ctx.seed });
    const c = new Checks();
    const before = lab.model.stats.translated;

    const s1 = await copyThrough(lab, V3.engine, 'S1', 0x5a);
    const s1domain = s1.domain as ArmSmmuDomain;
    const m1 = armSmmuV3MasterOf(deviceOf(lab, V3.engine))!;
    const ste1 = lab.smmu.strtab.readSte(m1.streams[0]);
    const cd = m1.cdTable!.readCd(0);
    c.equal('stage 1 domain: the copy completes', s1.status, 'done/ok');
    c.ok('stage 1 domain: the destination page holds the source bytes', s1.landed);
    c.equal('stage 1 domain: the STE points at a CD table', armSmmuSteConfigName(ste1), 's1');
    c.equal("stage 1 domain: CD 0 carries the domain's ASID", CTXDESC_CD_0_ASID.get(cd), s1domain.asid);

    const s2 = await copyThrough(lab, V3.stallEngine, 'S2', 0xc3);
    const s2domain = s2.domain as ArmSmmuDomain;
    const m2 = armSmmuV3MasterOf(deviceOf(lab, V3.stallEngine))!;
    const ste2 = lab.smmu.strtab.readSte(m2.streams[0]);
    c.equal('stage 2 domain: the copy completes', s2.status, 'done/ok');
    c.ok('stage 2 domain: the destination page holds the source bytes', s2.landed);
    c.equal('stage 2 domain: the STE translates at stage 2', armSmmuSteConfigName(ste2), 's2');
    c.equal("stage 2 domain: STE.S2VMID is the domain's VMID", STRTAB_STE_2_S2VMID.get(ste2), s2domain.vmid);
    c.equal("stage 2 domain: STE.S2TTB is the domain's table", STRTAB_STE_3_S2TTB_MASK.get(ste2), s2domain.pgtblOps.armLpaeS2Cfg!.vttbr);
    c.ok('no event was reported', lab.smmu.events.length === 0, lab.smmu.events.map((e) => e.name).join(', '));
    return c.result({
      'S1 ASID': s1domain.asid,
      'S2 VMID': s2domain.vmid,
      'transactions translated': lab.model.stats.translated - before,
    });
  },
};
