/**
 * cmdqv-vm-hostile: the 2021 thread's hostile cases, asked by a guest kernel of its own VINTF (the
 * host-side version, a VINTF page0 driven by hand, is cmdqv-guest-vintf-hostile). Two VMs on one
 * Grace host, each with a VINTF (VM1: VINTF1, host VCMDQs 4-7; VM2: VINTF2, host VCMDQs 8-11). A
 * hostile guest 1 puts on its own VCMDQ, bypassing its driver's command filter:
 * - a batch mixing allowed TLBI_NH_ASIDs and a forbidden CFGI_STE: the TLBI before it runs, the
 *   queue stops at the CFGI_STE (ILL), the host posts a vEVENT, the VMM injects it, the guest's ISR
 *   turns the bad entry into a CMD_SYNC and the rest of the batch runs; the CFGI_STE never executes;
 * - an ATC_INV naming a StreamID no SID pair matches: illegal, recovered the same way; an ATC_INV
 *   with its own virtual StreamID (matched by the pair the vDEVICE programmed) invalidates the ATC;
 * - CMD_SYNC: every batch of its driver ends with a CS=NONE CMD_SYNC on the VCMDQ itself (no trap);
 *   a CS=IRQ CMD_SYNC is illegal (the model's default `syncCs: 'ill'`);
 * - writes of HYP_OWN to its VINTF0 CONFIG: they read back 0 and never reach the host VINTF;
 * - through all of it, VM2's unmaps run on its VCMDQ with no error and no interrupt, and the host's
 *   VINTF0 sees no error.
 */
import { findArmSmmuV3 } from '../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { armSmmuCmdqBuildCmd, tlbiEnt, type ArmSmmuCmdqEnt } from '../drivers/arm-smmu-v3/arm-smmu-v3-cmdq.js';
import { CMDQ_ENT_WORDS, CMDQ_OP_ATC_INV, CMDQ_OP_CFGI_STE, CMDQ_OP_TLBI_NH_ASID } from '../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { tegra241CmdqvOf, type Tegra241Cmdqv } from '../drivers/arm-smmu-v3/tegra241-cmdqv.js';
import { findTestEngine } from '../drivers/misc/dma-test-engine.js';
import { dmaMapSingle, dmaUnmapSingle } from '../core/dma-mapping.js';
import { bootKernel } from '../kernel/kernel.js';
import { GUEST_LAYOUT, Vm } from '../vmm/vm.js';
import { BOOT_LIMIT_NS, run } from './lib/lab.js';
import { bootHostAndGuest, GUEST_PCI_FN, GUEST_STALL_ENGINE, GUEST_VSID, hostMemoryFor } from './lib/vm-lab.js';
import { cmdqvModelOf } from './cmdqv-lab.js';
import { Checks, type Scenario } from './scenario.js';
import { deviceOf, runIn, settle } from './smmu-v3-lab.js';

const GUEST_SMMU = `/iommu@${GUEST_LAYOUT.vsmmu.toString(16)}`;
const VINTF0_CONFIG = 0x1000;
const HYP_OWN = 1 << 17;
const SYNC_CS_IRQ = 0x46 | (1 << 12);

function cmds(...ents: (ArmSmmuCmdqEnt | number)[]): Uint32Array {
  const out = new Uint32Array(ents.length * CMDQ_ENT_WORDS);
  ents.forEach((e, i) => {
    if (typeof e === 'number') out[i * CMDQ_ENT_WORDS] = e;
    else armSmmuCmdqBuildCmd(out, i * CMDQ_ENT_WORDS, e);
  });
  return out;
}

const tlbiAsid = (asid: number): ArmSmmuCmdqEnt => ({ opcode: CMDQ_OP_TLBI_NH_ASID, tlbi: { ...tlbiEnt(), asid } });
const cfgiSte = (sid: number): ArmSmmuCmdqEnt => ({ opcode: CMDQ_OP_CFGI_STE, cfgi: { sid, ssid: 0, leaf: true } });
const atcInv = (sid: number): ArmSmmuCmdqEnt => ({ opcode: CMDQ_OP_ATC_INV, atc: { sid, ssid: 0, size: 52, addr: 0, global: false } });

export const scenario: Scenario = {
  name: 'cmdqv-vm-hostile',
  shows: "a guest kernel against its own VINTF: mixed batch, unmatched ATC_INV SID, CMD_SYNC on the VCMDQ, HYP_OWN writes; another VM's queues undisturbed",
  async run(ctx) {
    const c = new Checks();
    // VM1 has the ATS-capable PCIe function (its ATC_INV has a target) besides the engine.
    const lab = await bootHostAndGuest({ seed: ctx.seed, cmdqv: true, pci: true, guestBootargs: 'iommu.strict=1' });
    const host = cmdqvModelOf(lab.machine);
    const hostCmdqv = tegra241CmdqvOf(lab.smmu)!;
    const vm2 = await run(
      lab.machine,
      Vm.create({
        name: 'vm2',
        host: { port: lab.machine.cpu, gicPath: '/intc@8000000', memory: hostMemoryFor(lab, 'vm2') },
        bootargs: 'iommu.strict=1',
        cmdqv: true,
        devices: [{ dev: deviceOf(lab, GUEST_STALL_ENGINE.host), vsid: GUEST_VSID, compatible: 'iommu-sim,dma-test-engine', mmio: [GUEST_STALL_ENGINE.mmio], irqs: [GUEST_STALL_ENGINE.spi] }],
      }),
      'VM2 creation',
      BOOT_LIMIT_NS,
    );
    const guest2 = await run(lab.machine, bootKernel({ cpu: vm2.port }, { instance: 2 }), 'guest 2 boot', BOOT_LIMIT_NS);
    const g1: Tegra241Cmdqv = tegra241CmdqvOf(findArmSmmuV3(lab.guest.core, GUEST_SMMU))!;
    const g2: Tegra241Cmdqv = tegra241CmdqvOf(findArmSmmuV3(guest2.core, GUEST_SMMU))!;
    c.ok('both guests run their VINTF0 in guest mode (HYP_OWN reads 0)', !!g1 && !!g2 && !g1.vintfs[0]!.hypOwn && !g2.vintfs[0]!.hypOwn);
    const q1 = host.vcmdqs[4];
    const vq1 = g1.vintfs[0]!.lvcmdqs[0]!.cmdq;
    const consumed = (op: string): number => q1.cq.stats.consumed[op] ?? 0;

    // VM2 keeps unmapping on its VCMDQ meanwhile.
    const eng2 = findTestEngine(guest2.core, GUEST_STALL_ENGINE.guest);
    const page2 = guest2.alloc.allocPages(0, { kind: 'dma', device: eng2.dev.name }, { zero: true });
    const vm2Unmaps = async (): Promise<void> => {
      for (let i = 0; i < 8; i++) {
        const iova = await dmaMapSingle(eng2.dev, page2, 4096, 'bidirectional');
        await dmaUnmapSingle(eng2.dev, iova, 4096, 'bidirectional');
      }
    };
    const q2Before = host.vcmdqs[8].cq.stats.total;

    // 1. Mixed batch.
    const tlbiBefore = consumed('CMD_TLBI_NH_ASID');
    const [r1] = await runIn(lab, Promise.all([vq1.issueCmdlist(cmds(tlbiAsid(1), cfgiSte(GUEST_VSID), tlbiAsid(2)), 3, true), vm2Unmaps()]));
    await settle(lab, 1_000_000);
    c.equal('mixed batch: the guest sync completed after its ISR skipped the CFGI_STE', r1, 0);
    c.equal('mixed batch: both TLBI_NH_ASIDs ran on the VCMDQ', consumed('CMD_TLBI_NH_ASID') - tlbiBefore, 2);
    c.equal('mixed batch: the CFGI_STE never executed', consumed('CMD_CFGI_STE'), 0);
    c.equal('mixed batch: one VCMDQ error, reported to VM1 as a vEVENT and handled by its ISR', [q1.cq.stats.errors, lab.vm.vcmdqv!.stats.errorEvents, g1.stats.vintf0Errors], [1, 1, 1]);

    // 2. ATC_INV with an unmatched and with its own virtual StreamID.
    const atcBefore = q1.cq.stats.atcInvalidations;
    const r2 = await runIn(lab, vq1.issueCmdlist(cmds(atcInv(0x33)), 1, true));
    await settle(lab, 1_000_000);
    c.equal('ATC_INV of a StreamID no SID pair matches: an error the guest recovers from', [r2, q1.cq.stats.errors, g1.stats.vintf0Errors], [0, 2, 2]);
    c.equal('  and no ATC was invalidated', q1.cq.stats.atcInvalidations, atcBefore);
    const r3 = await runIn(lab, vq1.issueCmdlist(cmds(atcInv(GUEST_PCI_FN.vsid)), 1, true));
    await settle(lab, 1_000_000);
    c.equal('ATC_INV of its own vSID (0x8, matched by its SID pair) invalidates the ATC', [r3, q1.cq.stats.atcInvalidations - atcBefore, q1.cq.stats.errors], [0, 1, 2]);

    // 3. CMD_SYNC on the VCMDQ.
    const syncsBefore = q1.cq.stats.syncs;
    const trapsBefore = lab.vm.stats.mmioTraps;
    await runIn(lab, vq1.issueCmdlist(cmds(tlbiAsid(3)), 1, true));
    c.ok('CMD_SYNC (CS=NONE) completes on the VCMDQ itself, with no exit', q1.cq.stats.syncs - syncsBefore === 1 && lab.vm.stats.mmioTraps === trapsBefore, `syncs ${q1.cq.stats.syncs - syncsBefore}, exits ${lab.vm.stats.mmioTraps - trapsBefore}`);
    const r4 = await runIn(lab, vq1.issueCmdlist(cmds(SYNC_CS_IRQ), 1, true));
    await settle(lab, 1_000_000);
    c.equal('a CMD_SYNC with CS=IRQ is illegal on a VCMDQ (recovered)', [r4, q1.cq.stats.errors], [0, 3]);

    // 4. HYP_OWN.
    const gcfg = GUEST_LAYOUT.cmdqv + VINTF0_CONFIG;
    lab.vm.port.mmioWrite32(gcfg, (lab.vm.port.mmioRead32(gcfg) | HYP_OWN) >>> 0);
    const hostCfg = lab.machine.cpu.mmioRead32(hostCmdqv.basePhys + 0x1000 + 0x100 * 1);
    c.equal('a guest write of HYP_OWN reads back 0 in the guest', lab.vm.port.mmioRead32(gcfg) & HYP_OWN, 0);
    c.equal('  and the host VINTF1 stays HYP_OWN=0 and enabled', [hostCfg & HYP_OWN, hostCfg & 1], [0, 1]);

    // 5. Isolation.
    await runIn(lab, vm2Unmaps());
    c.ok("VM2's unmaps ran on its VCMDQ throughout", host.vcmdqs[8].cq.stats.total - q2Before >= 32, `${host.vcmdqs[8].cq.stats.total - q2Before} commands`);
    c.equal('VM2 saw no VCMDQ error, no vEVENT, no CMDQV interrupt', [host.vcmdqs[8].cq.stats.errors, vm2.vcmdqv!.stats.errorEvents, g2.stats.irqs], [0, 0, 0]);
    c.equal("the host's VINTF0 saw no error", hostCmdqv.stats.vintf0Errors, 0);
    return c.result({ 'VM1 VCMDQ errors': q1.cq.stats.errors, 'VM1 vEVENTs': lab.vm.vcmdqv!.stats.errorEvents, 'VM2 VCMDQ commands': host.vcmdqs[8].cq.stats.total - q2Before });
  },
};
