/**
 * tegra241-cmdqv driver + model: probe and reset as an arm-smmu-v3 implementation, per-CPU VCMDQ
 * choice, the error ISR's recovery, guest mode (HYP_OWN reads 0), the user VINTF API.
 */
import { describe, expect, it } from 'vitest';
import { runOnCpu } from '../../../bus/smp.js';
import { iommuMap, iommuUnmap } from '../../../core/iommu-map.js';
import { IOMMU_READ, IOMMU_WRITE } from '../../../core/io-pgtable.js';
import { armSmmuCmdqBuildCmd } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-cmdq.js';
import {
  CMDQ_OP_ATC_INV,
  CMDQ_OP_CFGI_STE,
  CMDQ_OP_TLBI_NH_ASID,
} from '../../../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import {
  tegra241CmdqvAllocUserVintf,
  tegra241CmdqvFreeUserVintf,
  tegra241CmdqvReport,
  tegra241VintfAllocLvcmdqUser,
  tegra241VintfInitVsid,
} from '../../../drivers/arm-smmu-v3/tegra241-cmdqv.js';
import { bootCmdqv, onCpus, queueCounts, type CmdqvLab } from '../../../scenarios/cmdqv-lab.js';
import { bootSmmuV3, allocPages, engineJob, ownDomain, runIn, V3 } from '../../../scenarios/smmu-v3-lab.js';

const SID = 0x101;
const vq = (lab: CmdqvLab, name: string): { commands: number; syncs: number; errors: number } => queueCounts(lab).find((q) => q.queue === name)!;

describe('tegra241-cmdqv: probe and reset', () => {
  it('takes the CMDQV the SMMU node names, enables it and VINTF0 (host-owned) with all its VCMDQs', async () => {
    const lab = await bootCmdqv({ seed: 1 });
    const m = lab.cmdqvModel;
    expect(lab.cmdqv.numVintfs).toBe(4);
    expect(lab.cmdqv.numLvcmdqsPerVintf).toBe(4);
    expect(m.cmdqvEnabled).toBe(true);
    const v0 = m.vintfs[0];
    expect(v0.enableOk).toBe(true);
    expect(v0.hypOwn).toBe(true);
    for (let q = 0; q < 4; q++) expect(m.vcmdqInfo(q)).toMatchObject({ enabled: true, mapped: true, vintf: 0, lidx: q, error: 0 });
    // Other VINTFs' VCMDQs are assigned but not mapped.
    expect(m.vcmdqInfo(4)).toMatchObject({ enabled: false, mapped: false });
    expect(lab.smmu.implOps?.getSecondaryCmdq).toBeDefined();
    const rep = tegra241CmdqvReport(lab.cmdqv);
    expect(rep.vintfs).toMatchObject([{ idx: 0, enabled: true, hypOwn: true, vcmdqs: [{ lidx: 0 }, { lidx: 1 }, { lidx: 2 }, { lidx: 3 }] }]);
    expect(lab.kernel.core.log.lines('info').some((l) => l.message.includes('found companion CMDQV device'))).toBe(true);
  });

  it('the plain virt machine has no CMDQV and the SMMU has no implementation', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    expect(lab.smmu.implOps).toBeNull();
    expect(lab.machine.iommus.get(V3.smmu)!.instance!.mmio).toHaveLength(1);
  });

  it('arm-smmu-v3.disable_cmdqv leaves the CMDQV disabled and the SMMU on its own queue', async () => {
    await expect(bootCmdqv({ seed: 1, bootargs: 'arm-smmu-v3.disable_cmdqv=1' })).rejects.toThrow(/did not take the CMDQV/);
  });
});

describe('tegra241-cmdqv: queue choice', () => {
  it('unmaps from threads on CPUs 0-3 invalidate on VCMDQs 0-3, each with its CMD_SYNC; DMA faults after', async () => {
    const lab = await bootCmdqv({ seed: 2 });
    const domain = await ownDomain(lab, V3.engine);
    const pa = allocPages(lab, 4 * 4096);
    await runIn(lab, iommuMap(domain, 0x6000_0000, pa, 4 * 4096, IOMMU_READ | IOMMU_WRITE), 'map');
    expect((await engineJob(lab, V3.engine, { op: 'checksum', src: 0x6000_3000, len: 64 })).state).toBe('done');
    const before = queueCounts(lab);
    await runIn(lab, onCpus(4, (cpu) => iommuUnmap(domain, 0x6000_0000 + cpu * 4096, 4096)), 'unmaps');
    const after = queueCounts(lab);
    for (let q = 0; q < 4; q++) {
      const d = { commands: after[q + 1].commands - before[q + 1].commands, syncs: after[q + 1].syncs - before[q + 1].syncs };
      expect([q, d.syncs >= 1, d.commands >= 2]).toEqual([q, true, true]);
    }
    expect(after[0].commands).toBe(before[0].commands);
    expect((await engineJob(lab, V3.engine, { op: 'checksum', src: 0x6000_3000, len: 64 })).state).toBe('error');
  });

  it('the trace shows each command with the queue it was consumed from, and the CMD_SYNCs per queue', async () => {
    const lab = await bootCmdqv({ seed: 2 });
    const domain = await ownDomain(lab, V3.engine);
    const pa = allocPages(lab, 2 * 4096);
    await runIn(lab, iommuMap(domain, 0x6000_0000, pa, 2 * 4096, IOMMU_READ), 'map');
    const seen: { command: unknown; queue: unknown }[] = [];
    const stop = lab.machine.trace.subscribe((e) => {
      if (e.kind === 'custom' && e.name === 'smmu-v3 command') seen.push({ command: e.args.command, queue: e.args.queue ?? 'main' });
    });
    await runIn(lab, onCpus(2, (cpu) => iommuUnmap(domain, 0x6000_0000 + cpu * 4096, 4096)), 'unmaps');
    stop();
    // (A PREFETCH_CONFIG the attach issued without waiting may be consumed in this window too.)
    const inv = seen.filter((e) => e.command !== 'CMD_PREFETCH_CONFIG');
    for (const q of ['vcmdq0', 'vcmdq1']) {
      expect(inv.filter((e) => e.queue === q).map((e) => e.command)).toEqual(['CMD_TLBI_NH_VA', 'CMD_SYNC']);
    }
    expect(inv.filter((e) => e.queue === 'main')).toEqual([]);
  });

  it('arm-smmu-v3.bypass_vcmdq: everything on the main queue', async () => {
    const lab = await bootCmdqv({ seed: 2, bootargs: 'arm-smmu-v3.bypass_vcmdq=1' });
    const domain = await ownDomain(lab, V3.engine);
    const pa = allocPages(lab, 4096);
    await runIn(lab, iommuMap(domain, 0x6000_0000, pa, 4096, IOMMU_READ), 'map');
    await runIn(lab, runOnCpu(2, () => iommuUnmap(domain, 0x6000_0000, 4096)), 'unmap');
    for (let q = 0; q < 4; q++) expect(vq(lab, `vcmdq${q}`).commands).toBe(0);
  });
});

describe('tegra241-cmdqv: error interrupt', () => {
  it('an illegal command on a VCMDQ: the ISR finds the queue, skips the command, the CMD_SYNC completes', async () => {
    const lab = await bootCmdqv({ seed: 3 });
    const vcmdq = lab.cmdqv.vintfs[0]!.lvcmdqs[1]!;
    const r = await runIn(lab, vcmdq.cmdq.issueRaw(new Uint32Array([0x7f, 0, 0, 0]), true), 'illegal');
    expect(r).toBe(0);
    expect(vcmdq.cmdq.stats.skipped).toBe(1);
    expect(lab.cmdqv.stats.vintf0Errors).toBe(1);
    expect(lab.cmdqvModel.vcmdqs[1].errorActive).toBe(false);
    expect(vq(lab, 'vcmdq1').errors).toBe(1);
    expect(lab.kernel.core.log.lines('warn').some((l) => /unexpected error reported\. vintf_map: 0+1, vcmdq_map 00000000:00000000:00000000:00000002/i.test(l.message))).toBe(true);
    // The queue works on.
    const ok = await runIn(lab, vcmdq.cmdq.issueCmdWithSync({ opcode: CMDQ_OP_TLBI_NH_ASID, tlbi: { num: 0, scale: 0, asid: 1, vmid: 0, leaf: false, ttl: 0, tg: 0, addr: 0 } }), 'after');
    expect(ok).toBe(0);
  });
});

/**
 * In a guest the host programs VINTF0's SID pairs (vSID → pSID) when the VMM creates vDEVICEs; here,
 * on the host machine with HYP_OWN wired to zero, the test plays that part: identity pairs for the
 * StreamIDs of virt's masters, through the CMDQV config page.
 */
function hostSidPairs(lab: CmdqvLab): void {
  const cpu = lab.machine.cpu;
  const base = lab.cmdqv.basePhys;
  [0x08, 0x10, 0x18, 0x19, 0x100, 0x101].forEach((sid, s) => {
    cpu.mmioWrite32(base + 0x1080 + 4 * s, sid);
    cpu.mmioWrite32(base + 0x1040 + 4 * s, (sid << 1) | 1);
  });
}

describe('tegra241-cmdqv: guest mode (HYP_OWN reads 0)', () => {
  it('only TLBI_NH_ASID/NH_VA/ATC_INV go to the VCMDQ; CFGI and mixed lists go to the main queue', async () => {
    const lab = await bootCmdqv({ seed: 4, cmdqv: { hypOwnWiredZero: true } });
    const v0 = lab.cmdqv.vintfs[0]!;
    expect(v0.hypOwn).toBe(false);
    expect(v0.lvcmdqs[0]!.cmdq.supportsCmd).not.toBeNull();
    hostSidPairs(lab);
    const errors0 = vq(lab, 'vcmdq0').errors;
    const before = vq(lab, 'main').commands;
    const domain = await ownDomain(lab, V3.engine); // CFGI_STE etc.: main queue
    expect(vq(lab, 'main').commands).toBeGreaterThan(before);
    // Whatever reached a VCMDQ since boot is in the guest set.
    for (const q of lab.cmdqvModel.vcmdqs.slice(0, 4)) {
      for (const op of Object.keys(q.cq.stats.consumed)) expect(['CMD_TLBI_NH_ASID', 'CMD_TLBI_NH_VA', 'CMD_ATC_INV', 'CMD_SYNC']).toContain(op);
    }
    const pa = allocPages(lab, 4096);
    await runIn(lab, iommuMap(domain, 0x6000_0000, pa, 4096, IOMMU_READ), 'map');
    expect((await engineJob(lab, V3.engine, { op: 'checksum', src: 0x6000_0000, len: 64 })).state).toBe('done');
    await runIn(lab, iommuUnmap(domain, 0x6000_0000, 4096), 'unmap');
    expect(lab.cmdqvModel.vcmdqs[0].cq.stats.consumed.CMD_TLBI_NH_VA).toBeGreaterThanOrEqual(1);
    expect(vq(lab, 'vcmdq0').errors).toBe(errors0);
    expect((await engineJob(lab, V3.engine, { op: 'checksum', src: 0x6000_0000, len: 64 })).state).toBe('error');
    // A list mixing an allowed and a forbidden command goes to the main queue, whole.
    const words = new Uint32Array(8);
    armSmmuCmdqBuildCmd(words, 0, { opcode: CMDQ_OP_TLBI_NH_ASID, tlbi: { num: 0, scale: 0, asid: 1, vmid: 0, leaf: false, ttl: 0, tg: 0, addr: 0 } });
    armSmmuCmdqBuildCmd(words, 4, { opcode: CMDQ_OP_CFGI_STE, cfgi: { sid: SID, ssid: 0, leaf: true } });
    const mainBefore = vq(lab, 'main').commands;
    const vBefore = vq(lab, 'vcmdq0').commands;
    expect(await runIn(lab, lab.smmu.issueCmdlist(words, 2, true), 'mixed')).toBe(0);
    expect(vq(lab, 'main').commands - mainBefore).toBe(3);
    expect(vq(lab, 'vcmdq0').commands).toBe(vBefore);
    expect(vq(lab, 'vcmdq0').errors).toBe(errors0);
  });

  it('a batch filled with allowed then forbidden commands splits: each VCMDQ part ends with a CMD_SYNC', async () => {
    const lab = await bootCmdqv({ seed: 5, cmdqv: { hypOwnWiredZero: true } });
    const { ArmSmmuCmdqBatch } = await import('../../../drivers/arm-smmu-v3/arm-smmu-v3-cmdq.js');
    hostSidPairs(lab);
    const v0 = vq(lab, 'vcmdq0');
    const m0 = vq(lab, 'main');
    const cfgi0 = lab.model.cmdq.stats.consumed.CMD_CFGI_STE ?? 0;
    const batch = new ArmSmmuCmdqBatch(lab.smmu.cmdq, lab.smmu).init();
    const tlbi = { opcode: CMDQ_OP_TLBI_NH_ASID, tlbi: { num: 0, scale: 0, asid: 2, vmid: 0, leaf: false, ttl: 0, tg: 0, addr: 0 } };
    batch.add(tlbi);
    batch.add({ opcode: CMDQ_OP_CFGI_STE, cfgi: { sid: SID, ssid: 0, leaf: true } });
    expect(await runIn(lab, batch.submit().then(async (r) => (r === 0 ? lab.smmu.waitOutstanding() : r)), 'batch')).toBe(0);
    const v1 = vq(lab, 'vcmdq0');
    const m1 = vq(lab, 'main');
    expect({ commands: v1.commands - v0.commands, syncs: v1.syncs - v0.syncs, errors: v1.errors - v0.errors }).toEqual({ commands: 2, syncs: 1, errors: 0 });
    expect({ cfgi: (lab.model.cmdq.stats.consumed.CMD_CFGI_STE ?? 0) - cfgi0, syncs: m1.syncs - m0.syncs, errors: m1.errors - m0.errors }).toEqual({ cfgi: 1, syncs: 1, errors: 0 });
  });
});

describe('tegra241-cmdqv: a user VINTF (the allocation API a VMM builds on)', () => {
  it('HYP_OWN=0 VINTF with a VMID, SID pairs and an LVCMDQ in user memory; its page0 is plain MMIO a guest drives', async () => {
    const lab = await bootCmdqv({ seed: 6 });
    const vintf = await runIn(lab, tegra241CmdqvAllocUserVintf(lab.cmdqv, 7), 'alloc vintf');
    expect(vintf.idx).toBe(1);
    expect(vintf.hypOwn).toBe(false);
    expect(lab.cmdqvModel.vintfs[1]).toMatchObject({ enableOk: true });
    expect(lab.cmdqvModel.vintfs[1].vmid).toBe(7);
    tegra241VintfInitVsid(vintf, 5, 0x8);
    const qpa = allocPages(lab, 4096);
    tegra241VintfAllocLvcmdqUser(vintf, 0, qpa, 4096);
    expect(() => tegra241VintfAllocLvcmdqUser(vintf, 2, qpa, 4096)).toThrow(/ascending/);
    expect(lab.cmdqvModel.vcmdqInfo(4)).toMatchObject({ mapped: true, vintf: 1, lidx: 0, base: qpa, log2size: 8, enabled: false });
    // The "guest": writes commands into its queue and drives page0 (CONFIG, PROD) by MMIO.
    const page0 = vintf.page0Phys;
    const cpu = lab.machine.cpu;
    const words = new Uint32Array(4);
    armSmmuCmdqBuildCmd(words, 0, { opcode: CMDQ_OP_ATC_INV, atc: { sid: 5, ssid: 0, size: 52, addr: 0, global: false } });
    words.forEach((w, i) => cpu.ram.write32(qpa + i * 4, w));
    cpu.ram.write32(qpa + 16, 0x46); // CMD_SYNC, CS=NONE
    cpu.mmioWrite32(page0 + 0x8, 1); // CONFIG.CMDQ_EN
    await runIn(lab, lab.machine.scheduler.delay(1000), 'enable');
    expect(cpu.mmioRead32(page0 + 0xc) & 1).toBe(1);
    cpu.mmioWrite32(page0 + 0x4, 2); // PROD
    await runIn(lab, lab.machine.scheduler.delay(10_000), 'consume');
    expect(cpu.mmioRead32(page0 + 0x0)).toBe(2);
    // An unmatched SID: an error reported to the VINTF's owner, not recovered by the host.
    const reports: (readonly [bigint, bigint])[] = [];
    vintf.onUserError = (map) => reports.push(map);
    armSmmuCmdqBuildCmd(words, 0, { opcode: CMDQ_OP_ATC_INV, atc: { sid: 6, ssid: 0, size: 52, addr: 0, global: false } });
    words.forEach((w, i) => cpu.ram.write32(qpa + 32 + i * 4, w));
    cpu.mmioWrite32(page0 + 0x4, 3);
    await runIn(lab, lab.machine.scheduler.delay(100_000), 'error');
    expect((cpu.mmioRead32(page0 + 0x0) >>> 24) & 0x7f).toBe(1);
    expect(reports).toEqual([[1n, 0n]]);
    expect(lab.cmdqvModel.vcmdqs[4].errorActive).toBe(true);
    // Host VINTF0 is not disturbed.
    expect(lab.cmdqv.stats.vintf0Errors).toBe(0);
    await runIn(lab, tegra241CmdqvFreeUserVintf(vintf), 'free vintf');
    expect(lab.cmdqvModel.vintfs[1].enableOk).toBe(false);
    expect(lab.cmdqvModel.vcmdqInfo(4)).toMatchObject({ mapped: false, enabled: false });
    expect(lab.cmdqvModel.vcmdqs[4].errorActive).toBe(false);
  });
});

describe('tegra241-cmdqv: kexec', () => {
  it('a kernel kexec\'d over a running CMDQV resets it and takes VINTF0 again; a user VINTF the old kernel left is its to find', async () => {
    const { kexec } = await import('../../../kernel/kexec.js');
    const { findArmSmmuV3 } = await import('../../../drivers/arm-smmu-v3/arm-smmu-v3.js');
    const { tegra241CmdqvOf } = await import('../../../drivers/arm-smmu-v3/tegra241-cmdqv.js');
    const lab = await bootCmdqv({ seed: 8 });
    await runIn(lab, tegra241CmdqvAllocUserVintf(lab.cmdqv, 9), 'user VINTF');
    const k2 = await runIn(lab, kexec(lab.machine), 'kexec');
    const smmu = findArmSmmuV3(k2.core, V3.smmu);
    const cmdqv = tegra241CmdqvOf(smmu)!;
    expect(cmdqv.vintfs[0]!.enabled).toBe(true);
    for (let q = 0; q < 4; q++) expect(lab.cmdqvModel.vcmdqInfo(q)).toMatchObject({ enabled: true, mapped: true, vintf: 0, lidx: q });
    expect(cmdqv.vintfs[1]).toBeNull();
    // The old kernel's VINTF1 is still enabled in the hardware: nothing in the reset sequence touches it.
    expect(lab.cmdqvModel.vintfs[1].enableOk).toBe(true);
  });
});
