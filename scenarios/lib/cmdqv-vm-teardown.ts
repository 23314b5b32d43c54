/**
 * VM teardown with an ATC invalidation still pending on the guest's VCMDQ (issue 13, deliverable 4):
 * the guest puts an ATC_INV for its ATS-capable PCIe function on its LVCMDQ0 with no CMD_SYNC after
 * it, the function does not answer (or answers late), and the VM is killed. The host's teardown of
 * the vIOMMU (tegra241_vintf_destroy_lvcmdq_user → tegra241_vcmdq_hw_deinit: disable the VCMDQ, a
 * CMD_SYNC on the main queue to flush the pending timeout, clear PROD/CONS/BASE, acknowledge any
 * error; unmap the LVCMDQs in descending order; VINTF disabled; SID pairs cleared) must leave
 * nothing enabled or pending, the host's main queue idle, and the VINTF's registers as a freshly
 * reset CMDQV shows them; a second VM then gets the same VINTF and its VCMDQs work without a false
 * ATC_INV timeout.
 */
import { dmaMapSingle, dmaUnmapSingle } from '../../core/dma-mapping.js';
import { armSmmuCmdqBuildCmd } from '../../drivers/arm-smmu-v3/arm-smmu-v3-cmdq.js';
import { findArmSmmuV3 } from '../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { CMDQ_ENT_WORDS, CMDQ_OP_ATC_INV } from '../../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { tegra241CmdqvOf } from '../../drivers/arm-smmu-v3/tegra241-cmdqv.js';
import { findTestEngine } from '../../drivers/misc/dma-test-engine.js';
import { bootKernel } from '../../kernel/kernel.js';
import { GUEST_LAYOUT } from '../../vmm/vm.js';
import { bootCmdqv, cmdqvModelOf } from '../cmdqv-lab.js';
import { runIn, settle } from '../smmu-v3-lab.js';
import { bootHostAndGuest, buildVm, GUEST_ENGINE_PATH, GUEST_PCI_FN } from './vm-lab.js';

const GUEST_SMMU = `/iommu@${GUEST_LAYOUT.vsmmu.toString(16)}`;

/** Host CMDQV offsets a teardown must leave at their reset values: the VM's VINTF (1) and its VCMDQs (4..7). */
function vintfRegisterOffsets(): { name: string; off: number }[] {
  const out: { name: string; off: number }[] = [];
  const v = 0x1000 + 0x100 * 1;
  out.push({ name: 'VINTF1_CONFIG', off: v }, { name: 'VINTF1_STATUS', off: v + 0x4 });
  for (let s = 0; s < 16; s++) out.push({ name: `VINTF1_SID_MATCH_${s}`, off: v + 0x40 + 4 * s }, { name: `VINTF1_SID_REPLACE_${s}`, off: v + 0x80 + 4 * s });
  for (let m = 0; m < 4; m++) out.push({ name: `VINTF1_LVCMDQ_ERR_MAP_${m}`, off: v + 0xc0 + 4 * m });
  out.push({ name: 'VI_ERR_MAP_0', off: 0x14 });
  for (let m = 0; m < 4; m++) out.push({ name: `CMDQ_ERR_MAP_${m}`, off: 0x24 + 4 * m });
  for (let q = 4; q < 8; q++) {
    out.push({ name: `CMDQ_ALLOC_MAP_${q}`, off: 0x200 + 4 * q });
    const p0 = 0x1_0000 + 0x80 * q;
    const p1 = 0x2_0000 + 0x80 * q;
    for (const [n, o] of [['CONS', 0], ['PROD', 4], ['CONFIG', 8], ['STATUS', 0xc], ['GERROR', 0x10], ['GERRORN', 0x14]] as const) out.push({ name: `VCMDQ${q}_${n}`, off: p0 + o });
    for (const [n, o] of [['BASE_L', 0], ['BASE_H', 4], ['CONS_INDX_BASE_L', 8], ['CONS_INDX_BASE_H', 0xc]] as const) out.push({ name: `VCMDQ${q}_${n}`, off: p1 + o });
  }
  return out;
}

export interface TeardownResult {
  /** The VCMDQ had consumed the ATC_INV and was waiting for the answer when the VM was killed. */
  pendingAtKill: number;
  /**
   * ATC invalidation timeouts and command errors on the host's own queues (the main queue and
   * VINTF0's VCMDQs) during the teardown: the orphaned invalidation's timeout is reported to the
   * next CMD_SYNC any host queue executes (the flush's on the main queue, or an earlier one of the
   * teardown's own invalidations), and the host recovers it.
   */
  hostAtcTimeouts: number;
  hostErrors: number;
  /** The host queues that reported an ATC invalidation timeout during the teardown. */
  timeoutQueues: string[];
  /** Main-queue CMD_SYNCs during the teardown. */
  mainSyncs: number;
  /** After the teardown: main queue CONS = PROD, no GERROR active, no ATC invalidation pending anywhere. */
  mainIdle: boolean;
  atcPendingAfter: number;
  /** Registers (name → [after teardown, fresh CMDQV]) that differ from a freshly reset CMDQV's. */
  notReset: Record<string, [string, string]>;
  /** The host driver's VINTF1 slot after the teardown (null: released). */
  vintf1Released: boolean;
  /** VM2: got VINTF1 again, its VCMDQs enabled, a strict unmap on its VCMDQ without error or timeout. */
  secondVintf: number;
  secondQueuesEnabled: boolean;
  secondVcmdqCommands: number;
  secondVcmdqErrors: number;
  secondVcmdqAtcTimeouts: number;
}

/** Run the teardown experiment; `answerNs`: the function's ATC invalidation latency (Infinity: never answers). */
export async function vmTeardownWithPendingAtcInv(seed: number, answerNs: number): Promise<TeardownResult> {
  const lab = await bootHostAndGuest({ seed, cmdqv: true, pci: true, guestBootargs: 'iommu.strict=1' });
  const model = cmdqvModelOf(lab.machine);
  const hostCmdqv = tegra241CmdqvOf(lab.smmu)!;
  const ep = lab.machine.endpoint(GUEST_PCI_FN.node);
  if (!ep) throw new Error(`no endpoint model ${GUEST_PCI_FN.node}`);
  ep.atcInvalidateLatencyNs = answerNs;
  const g1 = tegra241CmdqvOf(findArmSmmuV3(lab.guest.core, GUEST_SMMU));
  if (!g1) throw new Error('the guest did not take its CMDQV');
  // The guest's last words: an ATC_INV of its PCIe function (its vSID, matched by its SID pair), no sync.
  const cmd = new Uint32Array(CMDQ_ENT_WORDS);
  armSmmuCmdqBuildCmd(cmd, 0, { opcode: CMDQ_OP_ATC_INV, atc: { sid: GUEST_PCI_FN.vsid, ssid: 0, size: 52, addr: 0, global: false } });
  await runIn(lab, g1.vintfs[0]!.lvcmdqs[0]!.cmdq.issueCmdlist(cmd, 1, false));
  await settle(lab, 5_000);
  // Only that invalidation goes unanswered: the host's own, at teardown, are answered.
  ep.atcInvalidateLatencyNs = 200;
  const hostQ = model.vcmdqs[4];
  const pendingAtKill = hostQ.cq.atcPendingCount;
  const main = lab.model.cmdq;
  const hostQueues = [main, ...model.vcmdqs.slice(0, 4).map((q) => q.cq)];
  const sum = (f: (q: typeof main) => number): number => hostQueues.reduce((n, q) => n + f(q), 0);
  const before = { t: sum((q) => q.stats.atcTimeouts), e: sum((q) => q.stats.errors), s: main.stats.syncs };
  const beforeEach = hostQueues.map((q) => q.stats.atcTimeouts);
  // The VM is killed: no guest shutdown.
  lab.guest.discard();
  await runIn(lab, lab.vm.destroy());
  await settle(lab, 200_000);
  // CONS.ERR keeps the code of the last error; what matters is no active error and nothing left.
  const mainIdle = (main.consRegister & 0xf_ffff) === (main.q.prod & 0xf_ffff) && lab.model.peek32(0x60) === lab.model.peek32(0x64);
  const atcPendingAfter = main.atcPendingCount + model.vcmdqs.reduce((n, q) => n + q.cq.atcPendingCount, 0);

  // The same registers of a CMDQV that was only reset by a host kernel.
  const fresh = await bootCmdqv({ seed });
  const read = (port: typeof lab.machine.cpu, base: number, off: number): string => `0x${port.mmioRead32(base + off).toString(16)}`;
  const notReset: TeardownResult['notReset'] = {};
  for (const { name, off } of vintfRegisterOffsets()) {
    const a = read(lab.machine.cpu, hostCmdqv.basePhys, off);
    const b = read(fresh.machine.cpu, fresh.cmdqv.basePhys, off);
    if (a !== b) notReset[name] = [a, b];
  }
  const vintf1Released = hostCmdqv.vintfs[1] === null || hostCmdqv.vintfs[1] === undefined;
  await runIn(lab, lab.vm.releaseDevices());

  // VM2 on the same host: VINTF1 again.
  const vm2 = await buildVm(lab, { cmdqv: true, pci: true, guestBootargs: 'iommu.strict=1' });
  const guest2 = await runIn(lab, bootKernel({ cpu: vm2.port }, { instance: 1 }), 'second guest');
  const g2 = tegra241CmdqvOf(findArmSmmuV3(guest2.core, GUEST_SMMU))!;
  const eng = findTestEngine(guest2.core, GUEST_ENGINE_PATH);
  const q2Before = { c: hostQ.cq.stats.total, e: hostQ.cq.stats.errors, t: hostQ.cq.stats.atcTimeouts };
  const page = guest2.alloc.allocPages(0, { kind: 'dma', device: eng.dev.name }, { zero: true });
  const iova = await runIn(lab, dmaMapSingle(eng.dev, page, 4096, 'bidirectional'));
  await runIn(lab, dmaUnmapSingle(eng.dev, iova, 4096, 'bidirectional'));
  await settle(lab, 200_000);
  return {
    pendingAtKill,
    hostAtcTimeouts: sum((q) => q.stats.atcTimeouts) - before.t,
    hostErrors: sum((q) => q.stats.errors) - before.e,
    timeoutQueues: hostQueues.flatMap((q, i) => (q.stats.atcTimeouts - beforeEach[i] > 0 ? [i === 0 ? 'main' : `vcmdq${i - 1}`] : [])),
    mainSyncs: main.stats.syncs - before.s,
    mainIdle,
    atcPendingAfter,
    notReset,
    vintf1Released,
    secondVintf: hostCmdqv.vintfs.findIndex((v, i) => i > 0 && v !== null && v !== undefined && v.enabled),
    secondQueuesEnabled: g2.vintfs[0]!.lvcmdqs.every((q) => q?.enabled === true),
    secondVcmdqCommands: hostQ.cq.stats.total - q2Before.c,
    secondVcmdqErrors: hostQ.cq.stats.errors - q2Before.e,
    secondVcmdqAtcTimeouts: hostQ.cq.stats.atcTimeouts - q2Before.t,
  };
}
