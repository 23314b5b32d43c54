/**
 * vm-hostile-guest: a guest writes its stream table and command queue by hand. Host-owned STE fields
 * (S2TTB, S2VMID, SHCFG) in a stage 1 STE never reach the host STE; a stage 2 Config (illegal on the
 * guest's stage-1-only SMMU) gets C_BAD_STE in the guest and an abort STE on the host; a stage 2
 * TLBI (not a command this SMMU has) is CERROR_ILL on the vSMMU, which the guest driver skips. Host
 * side, a VMM that passes forged STE bits or commands to iommufd gets EIO.
 */
import { IOMMU_HWPT_DATA_ARM_SMMUV3, IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 } from '../core/iommufd.js';
import { isKernelError } from '../bus/errno.js';
import { findArmSmmuV3 } from '../drivers/arm-smmu-v3/arm-smmu-v3.js';
import type { ArmSmmuDomain } from '../drivers/arm-smmu-v3/arm-smmu-v3-domain.js';
import { CMDQ_OP_CFGI_STE, CMDQ_OP_TLBI_S2_IPA, STRTAB_STE_0_CFG, STRTAB_STE_2_S2VMID, STRTAB_STE_3_S2TTB_MASK } from '../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { armSmmuSteConfigName } from '../drivers/arm-smmu-v3/arm-smmu-v3-ste.js';
import { bootHostAndGuest, GUEST_VSID } from './lib/vm-lab.js';
import { Checks, type Scenario } from './scenario.js';
import { runIn, settle } from './smmu-v3-lab.js';

const HOST_SID = 0x101;

async function errnoOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'none';
  } catch (e) {
    return isKernelError(e) ? e.errno : String(e);
  }
}

export const scenario: Scenario = {
  name: 'vm-hostile-guest',
  shows: 'forged guest STE fields and commands are dropped or refused (C_BAD_STE, CERROR_ILL, EIO); the host STE keeps its S2 and VMID',
  async run(ctx) {
    const lab = await bootHostAndGuest({ seed: ctx.seed });
    const c = new Checks();
    const gsmmu = findArmSmmuV3(lab.guest.core, '/iommu@9050000');
    const s2 = lab.vm.iommufd.hwpt(lab.vm.ids.s2).domain as ArmSmmuDomain;
    const forge = async (words: Uint32Array): Promise<void> => {
      const pa = gsmmu.strtab.stePa(GUEST_VSID);
      for (let w = 0; w < 16; w++) lab.vm.port.ram.write32(pa + 4 * w, words[w]!);
      await runIn(lab, gsmmu.cmdq.issueCmdWithSync({ opcode: CMDQ_OP_CFGI_STE, cfgi: { sid: GUEST_VSID, ssid: 0, leaf: true } }));
    };
    const good = gsmmu.strtab.readSte(GUEST_VSID);
    const forged = good.slice();
    forged[4] = 0x7777; // S2VMID
    forged[6] = 0xdead_0000; // S2TTB
    await forge(forged);
    let ste = lab.smmu.strtab.readSte(HOST_SID);
    c.equal('forged S2VMID does not reach the host STE', STRTAB_STE_2_S2VMID.get(ste), s2.vmid);
    c.equal('forged S2TTB does not reach the host STE', STRTAB_STE_3_S2TTB_MASK.get(ste), s2.pgtblOps.armLpaeS2Cfg!.vttbr);
    const illegal = good.slice();
    STRTAB_STE_0_CFG.set(illegal, 6);
    const n = gsmmu.events.length;
    await forge(illegal);
    await settle(lab, 2_000_000);
    ste = lab.smmu.strtab.readSte(HOST_SID);
    c.equal('a stage 2 Config gives an abort STE on the host', armSmmuSteConfigName(ste), 'abort');
    c.ok('and C_BAD_STE with the vSID in the guest', gsmmu.events.slice(n).some((e) => e.name === 'C_BAD_STE' && e.sid === GUEST_VSID));
    await forge(good);
    const raw = new Uint32Array(4);
    raw[0] = CMDQ_OP_TLBI_S2_IPA;
    await runIn(lab, gsmmu.cmdq.issueRaw(raw, true));
    c.equal('TLBI_S2_IPA is CERROR_ILL on the vSMMU', lab.vm.vsmmu.stats.cerrorIll, 1);
    c.ok('the guest driver saw the command error', gsmmu.eventStats.gerrors > 0);
    // A VMM passing forged data straight to iommufd.
    const vste = Uint32Array.of(1 | (5 << 1), 0, 0, 1 << 12); // S1, plus SHCFG
    c.equal('host iommufd: a nested HWPT with a host-owned STE bit is EIO', await errnoOf(lab.vm.iommufd.hwptAlloc({ devId: lab.vm.ids.devs.get(GUEST_VSID)!, ptId: lab.vm.ids.viommu, data: { type: IOMMU_HWPT_DATA_ARM_SMMUV3, words: vste } })), 'EIO');
    const cfgi = new Uint32Array(4);
    cfgi[0] = CMDQ_OP_CFGI_STE;
    c.equal('host iommufd: CFGI_STE from a guest is EIO', await errnoOf(lab.vm.iommufd.invalidate(lab.vm.ids.viommu, IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3, [cfgi])), 'EIO');
    return c.result({ 'CERROR_ILL': lab.vm.vsmmu.stats.cerrorIll, 'host STE': armSmmuSteConfigName(lab.smmu.strtab.readSte(HOST_SID)) });
  },
};
