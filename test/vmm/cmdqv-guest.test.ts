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
import { runIn } from '../../scenarios/smmu-v3-lab.js';

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
    const hv = lab.cmdqv.vintfs[1]!;
    expect(hv.enabled).toBe(true);
    expect(hv.hypOwn).toBe(false);
    expect(hv.sids.has(0)).toBe(true);
    expect(lab.vm.vcmdqv!.hwQueues.every((id) => id > 0)).toBe(true);
    const model = cmdqvModelOf(lab.machine);
    const hostQ = model.vcmdqs[4]!;
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
});
