/**
 * A guest with a Grace VINTF: the VMM allocates a TEGRA241_CMDQV vIOMMU (a host VINTF with
 * HYP_OWN=0), the guest's unchanged tegra241-cmdqv driver finds the CMDQV in its DT, enables its
 * VINTF0 through trapped config registers, gets HW queues in its own memory, and issues TLBIs on its
 * VCMDQs through the passed-through page0 with no exits.
 */
import { describe, expect, it } from 'vitest';
import { dmaMapSingle, dmaUnmapSingle } from '../../core/dma-mapping.js';
import { findArmSmmuV3 } from '../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { tegra241CmdqvOf } from '../../drivers/arm-smmu-v3/tegra241-cmdqv.js';
import { bootHostAndGuest, guestEngine } from '../../scenarios/lib/vm-lab.js';
import { cmdqvModelOf } from '../../scenarios/cmdqv-lab.js';
import { runIn, settle } from '../../scenarios/smmu-v3-lab.js';
import { armSmmuCmdqBuildCmd } from '../../drivers/arm-smmu-v3/arm-smmu-v3-cmdq.js';
import { CMDQ_OP_CFGI_STE, CMDQ_OP_TLBI_NH_ASID, CMDQ_ENT_WORDS } from '../../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { buildVm, GUEST_VSID } from '../../scenarios/lib/vm-lab.js';
import { IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV, IOMMU_HW_QUEUE_TYPE_DEFAULT, IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV } from '../../core/iommufd.js';
import { bootKernel } from '../../kernel/kernel.js';
import { findTestEngine } from '../../drivers/misc/dma-test-engine.js';
import { GUEST_ENGINE_PATH } from '../../scenarios/lib/vm-lab.js';
import { expectErrno } from '../lib/errno.js';

/** Host model offsets (the CMDQV config page) for what a teardown must leave. */
const VINTF_CONFIG = (v: number): number => 0x1000 + 0x100 * v;
const SID_MATCH = (v: number, s: number): number => 0x1040 + 0x100 * v + 4 * s;
const CMDQ_ALLOC = (q: number): number => 0x200 + 4 * q;

const GUEST_SMMU = '/iommu@9050000';

describe('a guest-owned VINTF', () => {
  it('the guest driver runs its VINTF0 over a host user VINTF; a guest unmap invalidates on its VCMDQ, not through the trapped queue', async () => {
    const lab = await bootHostAndGuest({ seed: 1, cmdqv: true, guestBootargs: 'iommu.strict=1' });
    const gsmmu = findArmSmmuV3(lab.guest.core, GUEST_SMMU);
    const gcmdqv = tegra241CmdqvOf(gsmmu);
    expect(gcmdqv).not.toBeNull();
    const v0 = gcmdqv!.vintfs[0]!;
    expect(v0.enabled).toBe(true);
    // HYP_OWN reads 0 in the guest: its driver runs the guest command set.
    expect(v0.hypOwn).toBe(false);
    expect(v0.lvcmdqs.every((q) => q?.enabled)).toBe(true);
    // The host: a user VINTF (index 1) for the VM, HYP_OWN=0, the VM's stage 2 VMID, one SID pair,
    // and the guest's four LVCMDQs as HW queues in guest memory.
    const hv = tegra241CmdqvOf(lab.smmu)!.vintfs[1]!;
    expect(hv.enabled).toBe(true);
    expect(hv.hypOwn).toBe(false);
    expect(hv.sids.has(0)).toBe(true);
    expect(lab.vm.vcmdqv!.hwQueues.every((id) => id > 0)).toBe(true);
    const model = cmdqvModelOf(lab.machine);
    const hostQ = model.vcmdqs[4];
    expect(hostQ.alloc & 1).toBe(1);
    const guestQueue = v0.lvcmdqs[0]!.cmdq.q.base;
    // The host VCMDQ reads the guest's own queue: BASE holds the host PA behind the guest's IPA.
    expect(hv.lvcmdqs[0]!.userBase! & ~0x1fn).toBe(BigInt(lab.vm.ipaToPa(guestQueue)));

    // A guest DMA fills the TLB; the strict unmap invalidates it through the VCMDQ.
    const eng = guestEngine(lab);
    const page = lab.guest.alloc.allocPages(0, { kind: 'dma', device: eng.dev.name }, { zero: true });
    const iova = await runIn(lab, dmaMapSingle(eng.dev, page, 4096, 'bidirectional'));
    expect((await runIn(lab, eng.wait(eng.start({ op: 'fill', dst: iova, len: 64, byte: 0x11 })))).state).toBe('done');
    const trapsBefore = lab.vm.vsmmu.stats.commands;
    const hostCmds = hostQ.cq.stats.total;
    const passBefore = lab.vm.stats.passthrough;
    await runIn(lab, dmaUnmapSingle(eng.dev, iova, 4096, 'bidirectional'));
    // TLBI_NH_VA + CMD_SYNC on the guest's LVCMDQ0 = host VCMDQ4; nothing through the vSMMU.
    expect(hostQ.cq.stats.total - hostCmds).toBe(2);
    expect(lab.vm.vsmmu.stats.commands).toBe(trapsBefore);
    expect(lab.vm.stats.passthrough).toBeGreaterThan(passBefore);
    // The invalidation reached the SMMU's TLB with the VM's VMID: the same DMA now faults.
    expect((await runIn(lab, eng.wait(eng.start({ op: 'fill', dst: iova, len: 64, byte: 0x22 })))).state).toBe('error');
    expect([...lab.machine.cpu.ram.read(lab.vm.ipaToPa(page), 2)]).toEqual([0x11, 0x11]);
  });

  it('a forbidden command on a guest VCMDQ: the host posts a TEGRA241_CMDQV vEVENT, the VMM injects it, the guest ISR skips the command and its queue runs on', async () => {
    const lab = await bootHostAndGuest({ seed: 2, cmdqv: true });
    const gcmdqv = tegra241CmdqvOf(findArmSmmuV3(lab.guest.core, GUEST_SMMU))!;
    const vq = gcmdqv.vintfs[0]!.lvcmdqs[0]!;
    // A hostile guest puts a CFGI_STE (not in the guest command set) on its VCMDQ, then a TLBI.
    const cmds = new Uint32Array(2 * CMDQ_ENT_WORDS);
    armSmmuCmdqBuildCmd(cmds, 0, { opcode: CMDQ_OP_CFGI_STE, cfgi: { sid: 0x10, ssid: 0, leaf: true } });
    armSmmuCmdqBuildCmd(cmds, CMDQ_ENT_WORDS, { opcode: CMDQ_OP_TLBI_NH_ASID, tlbi: { num: 0, scale: 0, asid: 1, vmid: 0, leaf: false, ttl: 0, tg: 0, addr: 0 } });
    const hostQ = cmdqvModelOf(lab.machine).vcmdqs[4];
    const before = { ...hostQ.cq.stats };
    const r = await runIn(lab, vq.cmdq.issueCmdlist(cmds, 2, true));
    await settle(lab, 1_000_000);
    // The sync completed: the bad entry became a CMD_SYNC, the TLBI ran.
    expect(r).toBe(0);
    expect(hostQ.cq.stats.errors - before.errors).toBe(1);
    expect(tegra241CmdqvOf(lab.smmu)!.stats.userErrors).toBe(1);
    expect(tegra241CmdqvOf(lab.smmu)!.stats.vintf0Errors).toBe(0);
    expect(lab.vm.vcmdqv!.stats.errorEvents).toBe(1);
    expect(lab.vm.vcmdqv!.stats.injected).toBe(1);
    expect(gcmdqv.stats.irqs).toBe(1);
    expect(gcmdqv.stats.vintf0Errors).toBe(1);
    // The guest's acknowledge cleared the error, so its maps read 0 again.
    expect(lab.vm.port.mmioRead32(0x0910_0000 + 0x14)).toBe(0);
    expect(lab.vm.port.mmioRead32(0x0910_0000 + 0x10c0)).toBe(0);
  });

  it('VM teardown: HW queues freed highest first (each with a flushing CMD_SYNC on the host main queue), SID pairs and VINTF cleared; the next VM gets a working VINTF', async () => {
    const lab = await bootHostAndGuest({ seed: 3, cmdqv: true, guestBootargs: 'iommu.strict=1' });
    const model = cmdqvModelOf(lab.machine);
    const mainSyncs = lab.model.cmdq.stats.syncs;
    lab.guest.discard();
    await runIn(lab, lab.vm.destroy());
    const cfg = (off: number): number => lab.machine.cpu.mmioRead32(0x0910_0000 + off);
    expect(cfg(VINTF_CONFIG(1)) & 1).toBe(0);
    expect(cfg(SID_MATCH(1, 0))).toBe(0);
    for (let q = 4; q < 8; q++) {
      expect(cfg(CMDQ_ALLOC(q)) & 1).toBe(0);
      expect(model.vcmdqs[q].cq.enabled).toBe(false);
    }
    // One main-queue CMD_SYNC per freed VCMDQ (tegra241_vcmdq_hw_flush_timeout) and at VINTF deinit.
    expect(lab.model.cmdq.stats.syncs - mainSyncs).toBeGreaterThanOrEqual(4);
    expect(tegra241CmdqvOf(lab.smmu)!.vintfs[1]).toBeNull();
    expect(lab.vm.iommufd.objectCount).toBe(1);
    await runIn(lab, lab.vm.releaseDevices());

    const vm2 = await buildVm(lab, { cmdqv: true, guestBootargs: 'iommu.strict=1' });
    const guest2 = await runIn(lab, bootKernel({ cpu: vm2.port }, { instance: 1 }), 'second guest');
    const g2 = tegra241CmdqvOf(findArmSmmuV3(guest2.core, GUEST_SMMU))!;
    expect(g2.vintfs[0]!.lvcmdqs.every((q) => q?.enabled)).toBe(true);
    expect(tegra241CmdqvOf(lab.smmu)!.vintfs[1]!.enabled).toBe(true);
    expect(model.vcmdqs[4].errorActive).toBe(false);
  });

  it('iommufd HW queue rules: slot taken EEXIST, out of order EIO, unmapped IOVA ENOENT, default type EOPNOTSUPP; a queue pins its IOAS range and outlives the one above it', async () => {
    const lab = await bootHostAndGuest({ seed: 4, cmdqv: true });
    const vm = lab.vm;
    const ctx = vm.iommufd;
    const devId = vm.ids.devs.get(GUEST_VSID)!;
    const info = ctx.getHwInfo(devId, IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV);
    // version 1, 2^2 LVCMDQs, 2^4 SID pairs per VINTF.
    expect(info.data[1]).toBe(0x04_02_01);
    const ids = vm.vcmdqv!.hwQueues;
    const q0 = ctx.viommu(vm.ids.viommu);
    const hwq0 = [...q0.hwQueues].find((q) => q.index === 0)!;
    const tryAlloc = (type: number, index: number, iova: number, len: number): unknown => ctx.hwQueueAlloc(vm.ids.viommu, type, index, iova, len);
    await expectErrno(() => tryAlloc(IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV, 0, hwq0.iova, 4096), 'EEXIST');
    await expectErrno(() => tryAlloc(IOMMU_HW_QUEUE_TYPE_DEFAULT, 0, hwq0.iova, 4096), 'EOPNOTSUPP');
    await expectErrno(() => tryAlloc(IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV, 0, 0x10_0000, 4096), 'ENOENT');
    // The guest RAM holding the queue cannot leave the IOAS while the hardware reads it.
    const chunk = hwq0.iova - (hwq0.iova % 0x20_0000);
    await expectErrno(runIn(lab, ctx.ioasUnmap(vm.ids.ioas, chunk, 0x20_0000)), 'EBUSY');
    // Descending destroy only: LVCMDQ0 outlives LVCMDQ1.
    await expectErrno(runIn(lab, ctx.destroy(ids[0])), 'EBUSY');
    await runIn(lab, ctx.destroy(ids[3]));
    await runIn(lab, ctx.destroy(ids[2]));
    await runIn(lab, ctx.destroy(ids[1]));
    // Re-allocating LVCMDQ2 before LVCMDQ1 breaks the ascending order.
    await expectErrno(() => tryAlloc(IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV, 2, hwq0.iova, hwq0.length), 'EIO');
    expect(cmdqvModelOf(lab.machine).vcmdqs[5].alloc & 1).toBe(0);
  });

  it('kexec in the guest: the next kernel resets the CMDQV (the VMM frees the old HW queues first), takes VINTF0 again and invalidates on its VCMDQ', async () => {
    const lab = await bootHostAndGuest({ seed: 5, cmdqv: true, guestBootargs: 'iommu.strict=1' });
    await runIn(lab, lab.guest.shutdown());
    lab.guest.discard();
    const second = await runIn(lab, bootKernel({ cpu: lab.vm.port }, { instance: 1 }), 'second guest');
    const g = tegra241CmdqvOf(findArmSmmuV3(second.core, GUEST_SMMU))!;
    expect(g.vintfs[0]!.lvcmdqs.every((q) => q?.enabled)).toBe(true);
    expect(lab.vm.vcmdqv!.hwQueues.every((id) => id > 0)).toBe(true);
    const eng = findTestEngine(second.core, GUEST_ENGINE_PATH);
    const hostQ = cmdqvModelOf(lab.machine).vcmdqs[4];
    const before = hostQ.cq.stats.total;
    const page = second.alloc.allocPages(0, { kind: 'dma', device: eng.dev.name }, { zero: true });
    const iova = await runIn(lab, dmaMapSingle(eng.dev, page, 4096, 'bidirectional'));
    await runIn(lab, dmaUnmapSingle(eng.dev, iova, 4096, 'bidirectional'));
    expect(hostQ.cq.stats.total - before).toBe(2);
    // The new kernel's reset (CMDQV disable) freed the old queues before new ones were created.
    expect(lab.vm.vcmdqv!.stats).toMatchObject({ hwQueuesAllocated: 8, hwQueuesFreed: 4, hwQueueFailures: 0 });
  });

  it("the guest's CMDQV registers: PARAM shows one VINTF with the host's queues and SID pairs; SID pair writes stay in the VMM; VI_INT_MASK holds the interrupt back", async () => {
    const lab = await bootHostAndGuest({ seed: 6, cmdqv: true });
    const g = lab.vm.port;
    const G = 0x0910_0000;
    // VER 1, NUM_VCMDQ_LOG2 2, NUM_VINTF_LOG2 0, NUM_SID_PER_VM_LOG2 4.
    expect(g.mmioRead32(G + 0x4)).toBe(0x4021);
    expect(g.mmioRead32(G + 0x8) & 1).toBe(1);
    // The guest names a physical StreamID in a pair: only its own view changes.
    const hostPair = (s: number): number => lab.machine.cpu.mmioRead32(tegra241CmdqvOf(lab.smmu)!.basePhys + SID_MATCH(1, s));
    const before = hostPair(1);
    g.mmioWrite32(G + 0x1040 + 4, (0x101 << 1) | 1);
    expect(g.mmioRead32(G + 0x1040 + 4)).toBe((0x101 << 1) | 1);
    expect(hostPair(1)).toBe(before);
    expect(hostPair(0)).toBe((GUEST_VSID << 1) | 1);
    // Masked: an error is latched but not injected.
    g.mmioWrite32(G + 0x1c, 1);
    const gcmdqv = tegra241CmdqvOf(findArmSmmuV3(lab.guest.core, GUEST_SMMU))!;
    const bad = new Uint32Array(CMDQ_ENT_WORDS);
    armSmmuCmdqBuildCmd(bad, 0, { opcode: CMDQ_OP_CFGI_STE, cfgi: { sid: GUEST_VSID, ssid: 0, leaf: true } });
    await runIn(lab, gcmdqv.vintfs[0]!.lvcmdqs[0]!.cmdq.issueCmdlist(bad, 1, false));
    await settle(lab, 100_000);
    expect(lab.vm.vcmdqv!.stats).toMatchObject({ errorEvents: 1, injected: 0 });
    expect(gcmdqv.stats.irqs).toBe(0);
    // The guest sees its queue's error in the maps until it acknowledges it.
    expect(g.mmioRead32(G + 0x14)).toBe(1);
    expect(g.mmioRead32(G + 0x10c0)).toBe(1);
    expect(g.mmioRead32(G + 0x24)).toBe(1);
  });
});
