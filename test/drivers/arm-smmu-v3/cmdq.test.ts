/**
 * The command queue against the SMMUv3 model: CMD_SYNC completion (MSI write into the SYNC entry),
 * timeouts, what a sync costs in scheduler steps and timers, recovery from CERROR_ATC_INV_SYNC and
 * CERROR_ABT (CERROR_ILL is the smmu-v3-cerror scenario), batching (64 per batch, one CMD_SYNC per submit; one per 63 with the MMU-700 erratum),
 * a queue too small for what is inserted (backlog), and the TLBIs an unmap produces with and without
 * range invalidation.
 */
import { describe, expect, it } from 'vitest';
import { IOMMU_READ, IOMMU_WRITE } from '../../../core/io-pgtable.js';
import { iommuMap, iommuUnmap } from '../../../core/iommu-map.js';
import { ArmSmmuCmdqBatch, armSmmuCmdqBuildCmd, tlbiEnt } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-cmdq.js';
import type { ArmSmmuDomain } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-domain.js';
import { pciSetMaster } from '../../../bus/pci/command.js';
import type { PciDevice } from '../../../bus/pci/pci-device.js';
import { FIELD_GET } from '../../../bus/bitfield.js';
import {
  ARM_SMMU_CMDQ_BASE,
  ARM_SMMU_CMDQ_CONS,
  ARM_SMMU_CR0,
  ARM_SMMU_GERROR,
  ARM_SMMU_GERRORN,
  CMDQ_0_OP,
  CMDQ_CONS_ERR,
  CMDQ_OP_CMD_SYNC,
  CMDQ_OP_TLBI_NH_ASID,
  CMDQ_OP_TLBI_NH_VA,
  CMDQ_OP_TLBI_NSNH_ALL,
  CMDQ_SYNC_0_CS,
  CMDQ_SYNC_0_CS_IRQ,
  CMDQ_TLBI_0_ASID,
  CMDQ_TLBI_0_NUM,
  CMDQ_TLBI_0_SCALE,
  CMDQ_TLBI_1_TG,
  CMDQ_TLBI_1_TTL,
  CMDQ_TLBI_1_VA_MASK,
  CR0_CMDQEN,
  CR0_SMMUEN,
} from '../../../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { allocPages, bootSmmuV3, deviceOf, engineJob, mapRange, ownDomain, runIn, settle, unmapRange, V3, type SmmuV3Lab } from '../../../scenarios/smmu-v3-lab.js';

interface Seen {
  op: number;
  asid: number;
  va: number;
  num: number;
  scale: number;
  tg: number;
  ttl: number;
}

function record(lab: SmmuV3Lab): Seen[] {
  const seen: Seen[] = [];
  lab.smmu.cmdq.onCommand = (w, off) => {
    seen.push({
      op: CMDQ_0_OP.get(w, off),
      asid: CMDQ_TLBI_0_ASID.get(w, off),
      va: CMDQ_TLBI_1_VA_MASK.get(w, off),
      num: CMDQ_TLBI_0_NUM.get(w, off),
      scale: CMDQ_TLBI_0_SCALE.get(w, off),
      tg: CMDQ_TLBI_1_TG.get(w, off),
      ttl: CMDQ_TLBI_1_TTL.get(w, off),
    });
  };
  return seen;
}

function asidBatch(lab: SmmuV3Lab, n: number): ArmSmmuCmdqBatch {
  const batch = new ArmSmmuCmdqBatch(lab.smmu.cmdq, lab.smmu);
  for (let i = 0; i < n; i++) batch.add({ opcode: CMDQ_OP_TLBI_NH_ASID, tlbi: { ...tlbiEnt(), asid: i + 1 } });
  return batch;
}

describe('CMD_SYNC', () => {
  it('completes through the MSI write into its own entry', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const q = lab.smmu.cmdq.q;
    const syncAbs = q.prodAbs + 1;
    const r = await runIn(lab, lab.smmu.cmdq.issueCmdWithSync({ opcode: CMDQ_OP_TLBI_NSNH_ALL }));
    expect(r).toBe(0);
    expect(lab.machine.cpu.ram.read32(q.absAddr(syncAbs))).toBe(0);
    expect(q.consAbs).toBe(syncAbs + 1);
  });

  it('times out after ARM_SMMU_POLL_TIMEOUT_US when the SMMU is not consuming (CMDQEN clear)', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    await runIn(lab, lab.kernel.shutdown());
    const t0 = lab.machine.scheduler.now;
    const r = await runIn(lab, lab.smmu.cmdq.issueCmdWithSync({ opcode: CMDQ_OP_TLBI_NSNH_ALL }));
    expect(r).toBe('ETIMEDOUT');
    expect(lab.machine.scheduler.now - t0).toBeGreaterThanOrEqual(1_000_000_000);
    expect(lab.smmu.cmdq.stats.syncTimeouts).toBe(1);
    expect(lab.kernel.log.lines('err').some((l) => /^CMD_SYNC timeout at 0x[0-9a-f]{8} \[hwprod 0x[0-9a-f]{8}, hwcons 0x[0-9a-f]{8}\]$/.test(l.message))).toBe(true);
  });

  it('a strict unmap costs one scheduler step (the SMMU consuming; its MSI write wakes the waiter) and no timer of its own', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const domain = await ownDomain(lab, V3.engine);
    const pa = allocPages(lab, 4096);
    const port = lab.smmu.port;
    const startTimer = port.startTimer.bind(port);
    let timers = 0;
    port.startTimer = (ns, fn) => {
      timers++;
      return startTimer(ns, fn);
    };
    const sched = lab.machine.scheduler;
    // Nothing of the boot left pending: a step scheduled for earlier commands consumes only those.
    await settle(lab, 1_000);
    const steps0 = sched.steps;
    const consumed0 = lab.model.cmdq.stats.syncs;
    const PAIRS = 100;
    await runIn(lab, (async () => {
      for (let i = 0; i < PAIRS; i++) {
        await iommuMap(domain, 0x5000_0000, pa, 4096, IOMMU_READ | IOMMU_WRITE);
        expect(await iommuUnmap(domain, 0x5000_0000, 4096)).toBe(4096);
      }
    })());
    port.startTimer = startTimer;
    // Every unmap's TLBI + CMD_SYNC was consumed by the SMMU in a step of its own and waited for: the
    // MSI write into the CMD_SYNC entry wakes the waiter (its exclusive monitor), no interrupt step.
    expect(lab.model.cmdq.stats.syncs - consumed0).toBe(PAIRS);
    expect(sched.steps - steps0).toBe(PAIRS);
    expect(lab.model.irq.stats.wired['cmdq-sync']).toBe(0);
    // The CMD_SYNC waits share one watchdog tick rather than arming and cancelling one each.
    expect(timers).toBeLessThanOrEqual(1);
  });
});

describe('CMD_SYNC waiters', () => {
  it('eight threads each wait for their own CMD_SYNC: every one completes in the step that consumed it, none times out', async () => {
    const lab = await bootSmmuV3({ seed: 3 });
    const cmdq = lab.smmu.cmdq;
    const sched = lab.machine.scheduler;
    const done: { t: number; at: number }[] = [];
    const before = cmdq.stats.syncTimeouts;
    await runIn(lab, Promise.all(Array.from({ length: 8 }, async (_, t) => {
      for (let i = 0; i < 20; i++) {
        expect(await cmdq.issueCmdWithSync({ opcode: CMDQ_OP_TLBI_NH_ASID, tlbi: { ...tlbiEnt(), asid: t + 1 } })).toBe(0);
        done.push({ t, at: sched.now });
      }
    })));
    expect(done).toHaveLength(160);
    expect(cmdq.stats.syncTimeouts).toBe(before);
    // Every SYNC was consumed (its MSI zeroed its entry) and the driver's view of CONS caught up.
    expect(cmdq.q.consAbs).toBe(cmdq.q.prodAbs);
    expect(lab.model.cmdq.stats.syncs).toBeGreaterThanOrEqual(160);
  });

  it('a write by another agent into a sleeping SYNC entry wakes the waiter, which sleeps on until the SMMU\'s MSI', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const cmdq = lab.smmu.cmdq;
    const q = cmdq.q;
    const sched = lab.machine.scheduler;
    const syncAbs = q.prodAbs + 1;
    const entry = q.absAddr(syncAbs);
    const t0 = sched.now;
    const wait = cmdq.issueCmdWithSync({ opcode: CMDQ_OP_TLBI_NSNH_ALL });
    // Before the SMMU's step: a master rewrites the SYNC's first word with what it already holds.
    const word = lab.machine.cpu.ram.read32(entry);
    expect(word).not.toBe(0);
    const data = new Uint8Array(4);
    new DataView(data.buffer).setUint32(0, word, true);
    const c = lab.machine.interconnect.access({ master: 'rogue', streamId: 0, ssid: 0, ssidValid: false, addr: entry, len: 4, write: true, exec: false, priv: false, data });
    expect(c.status).toBe('ok');
    expect(await runIn(lab, wait)).toBe(0);
    // Completed by the SMMU's MSI in its consumption step, not by the watchdog (a tenth of a second).
    expect(sched.now - t0).toBeLessThan(10_000);
    expect(lab.machine.cpu.ram.read32(entry)).toBe(0);
    expect(cmdq.stats.syncTimeouts).toBe(0);
  });

  it('a waiter answered through a callback may issue and wait again from inside its answer, as several waiters woken together', async () => {
    const lab = await bootSmmuV3({ seed: 2 });
    const cmdq = lab.smmu.cmdq;
    const words = new Uint32Array(4);
    expect(armSmmuCmdqBuildCmd(words, 0, { opcode: CMDQ_OP_TLBI_NSNH_ALL })).toBe(0);
    const answers: string[] = [];
    const chain = (name: string, left: number, resolve: () => void): void => {
      cmdq.issueCmdlistThen(words, 1, (r) => {
        answers.push(`${name}:${r}`);
        // Issued from inside the answer, while the queue's other sleepers are being woken.
        if (left > 1) chain(name, left - 1, resolve);
        else resolve();
      });
    };
    await runIn(lab, Promise.all(['a', 'b', 'c'].map((name) => new Promise<void>((resolve) => chain(name, 4, resolve)))));
    expect(answers.filter((a) => a.startsWith('a:'))).toEqual(['a:0', 'a:0', 'a:0', 'a:0']);
    expect(answers).toHaveLength(12);
    expect(cmdq.stats.syncTimeouts).toBe(0);
    expect(cmdq.q.consAbs).toBe(cmdq.q.prodAbs);
  });

  it('each CMD_SYNC written carries CS=IRQ and the address of its own entry, across a wrap of the queue', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const cmdq = lab.smmu.cmdq;
    const q = cmdq.q;
    const seen: { abs: number; words: number[] }[] = [];
    let abs = q.prodAbs;
    cmdq.onCommand = (w, off) => {
      seen.push({ abs, words: [w[off], w[off + 1], w[off + 2], w[off + 3]] });
      abs++;
    };
    const n = q.entries / 2 + 3;
    await runIn(lab, (async () => {
      for (let i = 0; i < n; i++) expect(await cmdq.issueCmdWithSync({ opcode: CMDQ_OP_TLBI_NSNH_ALL })).toBe(0);
    })());
    cmdq.onCommand = null;
    const syncs = seen.filter((s) => CMDQ_0_OP.get(Uint32Array.from(s.words)) === CMDQ_OP_CMD_SYNC);
    expect(syncs).toHaveLength(n);
    for (const s of syncs) {
      const fresh = new Uint32Array(4);
      armSmmuCmdqBuildCmd(fresh, 0, { opcode: CMDQ_OP_CMD_SYNC, sync: { msiaddr: q.absAddr(s.abs) } });
      expect(s.words).toEqual([...fresh]);
      expect(CMDQ_SYNC_0_CS.get(fresh)).toBe(CMDQ_SYNC_0_CS_IRQ);
    }
  });
});

describe('command errors', () => {
  it('CERROR_ATC_INV_SYNC: an endpoint slower than the SMMU\'s ATC timeout; the driver retries the CMD_SYNC and the unmap completes', async () => {
    // The accel endpoint answers ATC invalidations after 200 ns; this SMMU gives up after 100 ns.
    const lab = await bootSmmuV3({ seed: 1, smmu: { timing: { atcInvTimeoutNs: 100 } } });
    const pdev = deviceOf(lab, V3.accel) as PciDevice;
    const ep = lab.machine.endpoint('/pcie@3f000000/accel@1,0')!;
    pciSetMaster(pdev);
    const domain = await ownDomain(lab, V3.accel);
    const pa = allocPages(lab, 4096);
    await mapRange(lab, domain, 0x5000_0000, pa, 4096);
    expect((await runIn(lab, ep.read(0x5000_0000, 16))).status).toBe('ok');
    expect(ep.atcContents.some((e) => e.pa === pa)).toBe(true);
    const errors0 = lab.smmu.cmdq.stats.errors;
    const log0 = lab.kernel.log.lines('err').length;
    expect(await unmapRange(lab, domain, 0x5000_0000, 4096)).toBe(4096);
    const errs = lab.kernel.log.lines('err').slice(log0).map((l) => l.message);
    expect(lab.smmu.cmdq.stats.errors - errors0).toBe(1);
    expect(errs.some((m) => /^CMDQ error \(cons 0x[0-9a-f]{8}\): ATC invalidate timeout$/.test(m))).toBe(true);
    // Nothing was skipped: CONS stayed on the CMD_SYNC, which completed when the SMMU repeated it.
    expect(lab.smmu.cmdq.stats.skipped).toBe(0);
    expect(lab.smmu.cmdq.stats.syncTimeouts).toBe(0);
    expect(lab.model.peek32(ARM_SMMU_GERROR) ^ lab.model.peek32(ARM_SMMU_GERRORN)).toBe(0);
    expect(lab.model.cmdq.q.isEmpty()).toBe(true);
    expect(ep.atcContents.some((e) => e.pa === pa)).toBe(false);
  });

  it('CERROR_ABT: a command fetch that aborts; the driver reports it, retries the fetch, and the sync completes once reads work again', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const log0 = lab.kernel.log.lines('err').length;
    const base = lab.model.read64(ARM_SMMU_CMDQ_BASE);
    // The SMMU's command reads start to abort (its CMDQ_BASE pointed at a hole behind the driver's
    // back; the queue has to be off for the base to change).
    const moveBase = async (to: bigint): Promise<void> => {
      lab.model.write32(ARM_SMMU_CR0, CR0_SMMUEN);
      await settle(lab, 1000);
      lab.model.write64(ARM_SMMU_CMDQ_BASE, to);
      lab.model.write32(ARM_SMMU_CR0, CR0_SMMUEN | CR0_CMDQEN);
      await settle(lab, 1000);
    };
    await moveBase(0x2000_0000n | (base & 0x1fn));
    const sync = lab.smmu.cmdq.issueCmdWithSync({ opcode: CMDQ_OP_TLBI_NSNH_ALL });
    while (lab.smmu.cmdq.stats.errors === 0) await settle(lab, 100);
    expect(FIELD_GET(CMDQ_CONS_ERR, lab.model.peek32(ARM_SMMU_CMDQ_CONS))).toBe(2);
    const errs = lab.kernel.log.lines('err').slice(log0).map((l) => l.message);
    expect(errs.some((m) => /^CMDQ error \(cons 0x[0-9a-f]{8}\): Abort on command fetch$/.test(m))).toBe(true);
    expect(errs).toContain('retrying command fetch');
    // Reads work again: the next retry fetches the commands and the CMD_SYNC completes.
    await moveBase(base);
    expect(await runIn(lab, sync)).toBe(0);
    expect(lab.smmu.cmdq.stats.skipped).toBe(0);
    expect(lab.model.cmdq.q.isEmpty()).toBe(true);
    expect(lab.model.peek32(ARM_SMMU_GERROR) ^ lab.model.peek32(ARM_SMMU_GERRORN)).toBe(0);
  });
});

describe('batches', () => {
  it('150 commands: full batches go in without a sync, the submit adds one CMD_SYNC', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const seen = record(lab);
    expect(await runIn(lab, asidBatch(lab, 150).submit())).toBe(0);
    expect(seen.filter((s) => s.op === CMDQ_OP_TLBI_NH_ASID).length).toBe(150);
    expect(seen.filter((s) => s.op === CMDQ_OP_CMD_SYNC).length).toBe(1);
    expect(seen.at(-1)!.op).toBe(CMDQ_OP_CMD_SYNC);
    // The CMD_SYNC completing means everything before it was consumed.
    expect(lab.model.cmdq.stats.total).toBe(lab.smmu.cmdq.stats.commands);
  });

  it('with the MMU-700 erratum (CMDQ_FORCE_SYNC) every 63 commands get a CMD_SYNC', async () => {
    const lab = await bootSmmuV3({ seed: 1, smmu: { iidr: (0x487 << 20) | 0x43b } });
    const seen = record(lab);
    await runIn(lab, asidBatch(lab, 150).submit());
    const syncsAt = seen.flatMap((s, i) => (s.op === CMDQ_OP_CMD_SYNC ? [i] : []));
    expect(syncsAt).toEqual([63, 127, 152]);
  });

  it('more than the queue holds: the rest waits in order and goes in as the SMMU consumes', async () => {
    const lab = await bootSmmuV3({ seed: 1, smmu: { cmdqLog2: 7 } });
    expect(lab.smmu.cmdq.q.entries).toBe(128);
    const seen = record(lab);
    const batch = new ArmSmmuCmdqBatch(lab.smmu.cmdq, lab.smmu);
    for (let b = 0; b < 5; b++) {
      for (let i = 0; i < 64; i++) batch.add({ opcode: CMDQ_OP_TLBI_NH_ASID, tlbi: { ...tlbiEnt(), asid: b * 64 + i + 1 } });
      batch.submitNowait();
    }
    expect(lab.smmu.cmdq.stats.backlogged).toBeGreaterThan(0);
    expect(lab.smmu.cmdq.hasOutstanding).toBe(true);
    expect(await runIn(lab, lab.smmu.cmdq.waitOutstanding())).toBe(0);
    expect(lab.model.cmdq.stats.total).toBe(lab.smmu.cmdq.stats.commands);
    expect(seen.length).toBe(5 * 65);
    // In order: the ASIDs come out as they were added.
    const asids = seen.filter((s) => s.op === CMDQ_OP_TLBI_NH_ASID).map((s) => s.asid);
    expect(asids).toEqual(Array.from({ length: 320 }, (_, i) => i + 1));
    expect(lab.smmu.cmdq.hasOutstanding).toBe(false);
  });
});

describe('TLB invalidation on unmap', () => {
  async function unmapSeen(lab: SmmuV3Lab, iova: number, size: number, blockMap: boolean): Promise<{ seen: Seen[]; domain: ArmSmmuDomain }> {
    const domain = (await ownDomain(lab, V3.engine)) as ArmSmmuDomain;
    const pa = allocPages(lab, blockMap ? 0x20_0000 : size);
    await mapRange(lab, domain, iova, pa, size);
    // Warm the TLB for the first page.
    await engineJob(lab, V3.engine, { op: 'checksum', src: iova, len: 64 });
    expect(lab.model.translateFast(0x101, -1, iova, 0)).toBe(pa);
    const seen = record(lab);
    expect(await unmapRange(lab, domain, iova, size)).toBe(size);
    lab.smmu.cmdq.onCommand = null;
    expect(lab.model.translateFast(0x101, -1, iova, 0)).toBe(-1);
    return { seen, domain };
  }

  it('a 2 MiB block: one range TLBI, TG 4K, TTL 2 (level 2), 512 pages', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const { seen } = await unmapSeen(lab, 0x4000_0000, 0x20_0000, true);
    const tlbi = seen.filter((s) => s.op === CMDQ_OP_TLBI_NH_VA);
    expect(tlbi.map(({ asid: _a, ...t }) => t)).toEqual([{ op: CMDQ_OP_TLBI_NH_VA, va: 0x4000_0000, num: 0, scale: 9, tg: 1, ttl: 2 }]);
  });

  it('8 pages without IDR3.RIL: one TLBI per page, no range fields', async () => {
    const lab = await bootSmmuV3({ seed: 1, smmu: { rangeInvalidation: false } });
    const { seen } = await unmapSeen(lab, 0x4000_0000, 8 * 4096, false);
    const tlbi = seen.filter((s) => s.op === CMDQ_OP_TLBI_NH_VA);
    expect(tlbi.map((s) => s.va)).toEqual(Array.from({ length: 8 }, (_, i) => 0x4000_0000 + i * 4096));
    expect(tlbi.every((s) => s.tg === 0 && s.num === 0 && s.scale === 0 && s.ttl === 0)).toBe(true);
    expect(seen.at(-1)!.op).toBe(CMDQ_OP_CMD_SYNC);
  });
});
