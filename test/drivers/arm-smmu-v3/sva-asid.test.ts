/**
 * SVA shares the process's CPU ASID (kernel: arm_smmu_share_asid(), Linux ≤ 6.9): the PASID's CD in
 * memory carries mm.asid; a paging domain that held that ASID moves to a fresh one (its CDs rewritten,
 * TLBI_NH_ASID of the old one) and keeps translating; the mm's invalidations are TLBIs of that ASID;
 * SVA domains of one mm on two SMMUs share one reservation, which the last unbind gives back; an SMMU
 * with 8-bit ASIDs refuses an mm whose ASID does not fit.
 */
import { describe, expect, it } from 'vitest';
import type { Device } from '../../../bus/device.js';
import { reg, type DtBuilder } from '../../../bus/of/dt-builder.js';
import { iommuPagingDomainAlloc } from '../../../core/iommu-domain.js';
import { iommuAttachDevicePasid, iommuDetachDevicePasid } from '../../../core/iommu-pasid.js';
import { iommuSvaBindDevice, iommuSvaUnbindDevice, type IommuSva } from '../../../core/iommu-sva.js';
import { ArmSmmuSharedAsid, armSmmuAsidSpace } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-asid.js';
import type { ArmSmmuDomain } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-domain.js';
import {
  CMDQ_0_OP,
  CMDQ_CFGI_0_SID,
  CMDQ_CFGI_0_SSID,
  CMDQ_OP_CFGI_CD,
  CMDQ_OP_CMD_SYNC,
  CMDQ_OP_NAMES,
  CMDQ_OP_TLBI_NH_ASID,
  CMDQ_OP_TLBI_NH_VA,
  CMDQ_TLBI_0_ASID,
  CMDQ_TLBI_1_VA_MASK,
  CTXDESC_CD_0_ASID,
  CTXDESC_CD_0_V,
} from '../../../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { armSmmuV3MasterOf, findArmSmmuV3, type ArmSmmuDevice } from '../../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import type { Process } from '../../../mm/process.js';
import { PROT_READ, PROT_WRITE } from '../../../mm/prot.js';
import { allocPages, bootSmmuV3, deviceOf, engineJob, fillPhys, mapRange, ownDomain, readPhys, runIn, settle, V3, type SmmuV3Lab } from '../../../scenarios/smmu-v3-lab.js';
import { accel, enableIopf, PAGE } from '../../../scenarios/sva-lab.js';
import { board } from '../../lib/board.js';
import { expectErrno } from '../../lib/errno.js';

/** A command as the SMMU's queue carries it. */
interface Cmd {
  op: string;
  asid?: number;
  va?: number;
  sid?: number;
  ssid?: number;
}

/** Record every command the driver inserts into `smmu`'s queue until `stop()`. */
function recordCommands(smmu: ArmSmmuDevice): { list: Cmd[]; stop(): void } {
  const list: Cmd[] = [];
  const prev = smmu.cmdq.onCommand;
  smmu.cmdq.onCommand = (w, off) => {
    prev?.(w, off);
    const opcode = CMDQ_0_OP.get(w, off);
    const op = CMDQ_OP_NAMES.get(opcode) ?? `0x${opcode.toString(16)}`;
    if (opcode === CMDQ_OP_TLBI_NH_ASID) list.push({ op, asid: CMDQ_TLBI_0_ASID.get(w, off) });
    else if (opcode === CMDQ_OP_TLBI_NH_VA) list.push({ op, asid: CMDQ_TLBI_0_ASID.get(w, off), va: CMDQ_TLBI_1_VA_MASK.get(w, off) });
    else if (opcode === CMDQ_OP_CFGI_CD) list.push({ op, sid: CMDQ_CFGI_0_SID.get(w, off), ssid: CMDQ_CFGI_0_SSID.get(w, off) });
    else list.push({ op: opcode === CMDQ_OP_CMD_SYNC ? 'CMD_SYNC' : op });
  };
  return {
    list,
    stop: () => {
      smmu.cmdq.onCommand = prev;
    },
  };
}

/** The ASID field of `dev`'s CD for `ssid`, as it is in memory (0 if the CD is not valid). */
function cdAsid(dev: Device, ssid: number): number {
  const cd = armSmmuV3MasterOf(dev)!.cdTable!.readCd(ssid);
  return CTXDESC_CD_0_V.isSet(cd) ? CTXDESC_CD_0_ASID.get(cd) : 0;
}

/** Spawn processes until one gets CPU ASID `asid` (the allocator is next-fit). */
function spawnWithAsid(lab: SmmuV3Lab, asid: number): Process {
  for (let i = 0; i < 1024; i++) {
    const p = lab.kernel.processes.spawn();
    if (p.mm.asid === asid) return p;
  }
  throw new Error(`no process got ASID ${asid}`);
}

const IOVA = 0x1000_0000;
const IOVA_DST = 0x2000_0000;

describe('SVA shares the CPU ASID', () => {
  it('the PASID CD carries mm.asid, two devices of the mm share it, munmap is a TLBI_NH_VA of it, the last unbind frees it', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const space = armSmmuAsidSpace(lab.kernel.core);
    const stall = deviceOf(lab, V3.stallEngine);
    const { pdev } = accel(lab);
    await enableIopf(lab, stall);
    await enableIopf(lab, pdev);
    const proc = lab.kernel.processes.spawn();
    const mm = proc.mm;
    const buf = mm.mmap(4 * PAGE, PROT_READ | PROT_WRITE);
    mm.write(buf, new Uint8Array(4 * PAGE).fill(0x11));

    const a = await runIn(lab, iommuSvaBindDevice(stall, mm), 'bind stall engine');
    expect(cdAsid(stall, a.pasid)).toBe(mm.asid);
    const shared = space.owner(mm.asid);
    expect(shared).toBeInstanceOf(ArmSmmuSharedAsid);
    expect((shared as ArmSmmuSharedAsid).mm).toBe(mm);
    expect((a.domain as ArmSmmuDomain).asid).toBe(mm.asid);

    const b = await runIn(lab, iommuSvaBindDevice(pdev, mm), 'bind accelerator');
    expect(b.pasid).toBe(a.pasid);
    expect(cdAsid(pdev, b.pasid)).toBe(mm.asid);
    // One SMMU: one SVA domain, one reference on the mm's ASID.
    expect(b.domain).toBe(a.domain);
    expect(space.owner(mm.asid)).toBe(shared);
    expect((shared as ArmSmmuSharedAsid).refs).toBe(1);

    // The SMMU walks the process's tables under its ASID: the engine reads what the CPU wrote.
    const dst = mm.mmap(PAGE, PROT_READ | PROT_WRITE);
    mm.write(dst, new Uint8Array(PAGE));
    const copy = await engineJob(lab, V3.stallEngine, { op: 'copy', src: buf + PAGE, dst, len: PAGE }, { ssid: a.pasid });
    expect(copy.state).toBe('done');
    expect(mm.read(dst, PAGE).every((x) => x === 0x11)).toBe(true);

    // munmap through the mmu notifier: TLBI by VA of the page, for the mm's ASID.
    const rec = recordCommands(lab.smmu);
    await runIn(lab, mm.munmap(buf + 2 * PAGE, PAGE), 'munmap');
    rec.stop();
    const tlbis = rec.list.filter((c) => c.op === 'TLBI_NH_VA' || c.op === 'TLBI_NH_ASID');
    expect(tlbis).toEqual([{ op: 'TLBI_NH_VA', asid: mm.asid, va: buf + 2 * PAGE }]);

    await runIn(lab, iommuSvaUnbindDevice(a), 'unbind stall engine');
    expect(space.owner(mm.asid)).toBe(shared);
    expect(cdAsid(pdev, b.pasid)).toBe(mm.asid);
    await runIn(lab, iommuSvaUnbindDevice(b), 'unbind accelerator');
    expect(space.has(mm.asid)).toBe(false);
    expect(cdAsid(pdev, b.pasid)).toBe(0);
  });

  it('a paging domain holding the mm\'s ASID moves: CD rewritten, TLBI_NH_ASID of the old ASID, and DMA through it still works', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const space = armSmmuAsidSpace(lab.kernel.core);
    const engine = deviceOf(lab, V3.engine);
    const stall = deviceOf(lab, V3.stallEngine);
    await enableIopf(lab, stall);

    // A paging domain for the plain engine, and DMA through it, so its ASID has TLB entries at IOVA.
    const paging = (await ownDomain(lab, V3.engine)) as ArmSmmuDomain;
    const old = paging.asid;
    expect(space.owner(old)).toBe(paging);
    expect(cdAsid(engine, 0)).toBe(old);
    const src = allocPages(lab, PAGE);
    const dstPa = allocPages(lab, PAGE);
    fillPhys(lab, src, PAGE, 0xaa);
    await mapRange(lab, paging, IOVA, src, PAGE);
    await mapRange(lab, paging, IOVA_DST, dstPa, PAGE);
    expect((await engineJob(lab, V3.engine, { op: 'copy', src: IOVA, dst: IOVA_DST, len: PAGE })).state).toBe('done');
    expect(readPhys(lab, dstPa, PAGE).every((x) => x === 0xaa)).toBe(true);

    // A process whose CPU ASID is that one, with its own bytes at the same address.
    const proc = spawnWithAsid(lab, old);
    const mm = proc.mm;
    expect(mm.mmap(PAGE, PROT_READ | PROT_WRITE, { addr: IOVA, fixed: true })).toBe(IOVA);
    mm.write(IOVA, new Uint8Array(PAGE).fill(0x5a));
    const out = mm.mmap(PAGE, PROT_READ | PROT_WRITE);
    mm.write(out, new Uint8Array(PAGE));

    const rec = recordCommands(lab.smmu);
    const bond = await runIn(lab, iommuSvaBindDevice(stall, mm), 'bind');
    rec.stop();
    const moved = paging.asid;
    expect(moved).not.toBe(old);
    expect(space.owner(moved)).toBe(paging);
    expect(space.owner(old)).toBeInstanceOf(ArmSmmuSharedAsid);
    // What the hardware reads: the paging CD has the new ASID, the PASID CD the mm's.
    expect(cdAsid(engine, 0)).toBe(moved);
    expect(cdAsid(stall, bond.pasid)).toBe(old);
    // In the queue: the paging CD rewritten and synced, then TLBI_NH_ASID of the old ASID with its
    // CMD_SYNC, all before the PASID CD goes live.
    const cmds = rec.list;
    const engineSid = armSmmuV3MasterOf(engine)!.streams[0];
    const stallSid = armSmmuV3MasterOf(stall)!.streams[0];
    const cfgiPaging = cmds.findIndex((c) => c.op === 'CFGI_CD' && c.sid === engineSid && c.ssid === 0);
    const tlbiOld = cmds.findIndex((c) => c.op === 'TLBI_NH_ASID' && c.asid === old);
    const cfgiSva = cmds.findIndex((c) => c.op === 'CFGI_CD' && c.sid === stallSid && c.ssid === bond.pasid);
    expect(cfgiPaging).toBeGreaterThanOrEqual(0);
    expect(tlbiOld).toBeGreaterThan(cfgiPaging);
    expect(cmds[tlbiOld + 1]).toEqual({ op: 'CMD_SYNC' });
    expect(cfgiSva).toBeGreaterThan(tlbiOld);
    expect(cmds.filter((c) => c.op === 'TLBI_NH_ASID')).toEqual([{ op: 'TLBI_NH_ASID', asid: old }]);

    // The moved domain still translates.
    fillPhys(lab, dstPa, PAGE, 0);
    expect((await engineJob(lab, V3.engine, { op: 'copy', src: IOVA, dst: IOVA_DST, len: PAGE })).state).toBe('done');
    expect(readPhys(lab, dstPa, PAGE).every((x) => x === 0xaa)).toBe(true);
    // The process's VA equal to the domain's IOVA: the SMMU walks the mm, it finds no stale entry
    // of the domain under the reused ASID.
    const sva = await engineJob(lab, V3.stallEngine, { op: 'copy', src: IOVA, dst: out, len: PAGE }, { ssid: bond.pasid });
    await settle(lab);
    expect(sva.state).toBe('done');
    expect(mm.read(out, PAGE).every((x) => x === 0x5a)).toBe(true);

    // Unbind gives the ASID back; the paging domain keeps its new one.
    await runIn(lab, iommuSvaUnbindDevice(bond), 'unbind');
    expect(space.has(old)).toBe(false);
    expect(space.owner(moved)).toBe(paging);
  });

  it('a PASID attach of the paging domain racing with the bind still ends with the new ASID in its CD', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const stall = deviceOf(lab, V3.stallEngine);
    const { pdev } = accel(lab);
    await enableIopf(lab, stall);
    const paging = iommuPagingDomainAlloc(pdev) as ArmSmmuDomain;
    const old = paging.asid;
    const mm = spawnWithAsid(lab, old).mm;
    // The bind starts while the PASID attach waits for the CFGI_CD of its half-written CD: the attach
    // has read the domain's ASID and the CD is not valid yet, so the move would skip it. The ASID lock
    // holds the move until the attach is done; the move then rewrites the CD.
    const accelSid = armSmmuV3MasterOf(pdev)!.streams[0];
    let bind: Promise<IommuSva> | null = null;
    const prev = lab.smmu.cmdq.onCommand;
    lab.smmu.cmdq.onCommand = (w, off) => {
      prev?.(w, off);
      if (!bind && CMDQ_0_OP.get(w, off) === CMDQ_OP_CFGI_CD && CMDQ_CFGI_0_SID.get(w, off) === accelSid && CMDQ_CFGI_0_SSID.get(w, off) === 7) {
        bind = iommuSvaBindDevice(stall, mm);
      }
    };
    await runIn(lab, iommuAttachDevicePasid(paging, pdev, 7), 'attach PASID');
    lab.smmu.cmdq.onCommand = prev;
    expect(bind).not.toBeNull();
    const bond = await runIn(lab, bind!, 'bind');
    expect(paging.asid).not.toBe(old);
    expect([cdAsid(pdev, 7), cdAsid(stall, bond.pasid)]).toEqual([paging.asid, old]);
    await runIn(lab, iommuDetachDevicePasid(paging, pdev, 7), 'detach');
    await runIn(lab, iommuSvaUnbindDevice(bond), 'unbind');
  });

  it('SVA domains of one mm on two SMMUs share the reservation; the last unbind frees it', async () => {
    const lab = await bootSmmuV3({ seed: 1, tree: twoSmmuTree(), smmuPath: SMMU_A });
    const smmuB = findArmSmmuV3(lab.kernel.core, SMMU_B);
    const space = armSmmuAsidSpace(lab.kernel.core);
    const devA = deviceOf(lab, ENGINE_A);
    const devB = deviceOf(lab, ENGINE_B);
    expect(armSmmuV3MasterOf(devB)!.smmu).toBe(smmuB);
    await enableIopf(lab, devA);
    await enableIopf(lab, devB);
    const mm = lab.kernel.processes.spawn().mm;

    const a = await runIn(lab, iommuSvaBindDevice(devA, mm), 'bind A');
    const b = await runIn(lab, iommuSvaBindDevice(devB, mm), 'bind B');
    expect(a.domain).not.toBe(b.domain);
    expect([cdAsid(devA, a.pasid), cdAsid(devB, b.pasid)]).toEqual([mm.asid, mm.asid]);
    const shared = space.owner(mm.asid) as ArmSmmuSharedAsid;
    expect(shared).toBeInstanceOf(ArmSmmuSharedAsid);
    expect(shared.refs).toBe(2);

    // The first unbind cleans its SMMU's TLB of the ASID and keeps the reservation.
    const recA = recordCommands(lab.smmu);
    await runIn(lab, iommuSvaUnbindDevice(a), 'unbind A');
    recA.stop();
    expect(recA.list.filter((c) => c.op === 'TLBI_NH_ASID')).toEqual([{ op: 'TLBI_NH_ASID', asid: mm.asid }]);
    expect(space.owner(mm.asid)).toBe(shared);
    expect(shared.refs).toBe(1);
    expect(cdAsid(devB, b.pasid)).toBe(mm.asid);

    await runIn(lab, iommuSvaUnbindDevice(b), 'unbind B');
    expect(shared.refs).toBe(0);
    expect(space.has(mm.asid)).toBe(false);
  });

  it('an SMMU with 8-bit ASIDs refuses an mm whose ASID is above 255, and takes one that fits', async () => {
    const lab = await bootSmmuV3({ seed: 1, smmu: { asid16: false } });
    expect(lab.smmu.asidBits).toBe(8);
    const stall = deviceOf(lab, V3.stallEngine);
    await enableIopf(lab, stall);
    const small = lab.kernel.processes.spawn();
    const big = spawnWithAsid(lab, 256);
    const space = armSmmuAsidSpace(lab.kernel.core);

    await expectErrno(runIn(lab, iommuSvaBindDevice(stall, big.mm), 'bind'), 'EOPNOTSUPP', /^EOPNOTSUPP: .*8-bit ASIDs \(IDR0\.ASID16 clear\) cannot carry CPU ASID 256/);
    expect(space.has(256)).toBe(false);

    const bond = await runIn(lab, iommuSvaBindDevice(stall, small.mm), 'bind small');
    expect(cdAsid(stall, bond.pasid)).toBe(small.mm.asid);
    const buf = small.mm.mmap(PAGE, PROT_READ | PROT_WRITE);
    const job = await engineJob(lab, V3.stallEngine, { op: 'fill', dst: buf, len: 64, byte: 0x3e }, { ssid: bond.pasid });
    await settle(lab);
    expect(job.state).toBe('done');
    expect(small.mm.read(buf, 64).every((x) => x === 0x3e)).toBe(true);
    expect(lab.smmu.events.filter((e) => e.name === 'C_BAD_CD')).toEqual([]);
    await runIn(lab, iommuSvaUnbindDevice(bond), 'unbind');
  });
});

const SMMU_A = '/iommu@9050000';
const SMMU_B = '/iommu@9070000';
const ENGINE_A = '/dma@c000000';
const ENGINE_B = '/dma@c010000';

/** Two SMMUv3s, each with one stall-capable DMA test engine with 8 PASID bits. */
function twoSmmuTree(): ReturnType<DtBuilder['build']> {
  const { b } = board({
    compatible: ['iommu-sim,smmuv3-lab'],
    model: 'two SMMUv3s',
    ram: [{ base: 0x4000_0000, size: 0x4000_0000 }],
    gic: { compatible: ['arm,cortex-a15-gic'], reg: [[0x0800_0000, 0x1_0000], [0x0801_0000, 0x1_0000]] },
  });
  const spi = (n: number): number[] => [0, n, 1];
  [
    { path: SMMU_A, base: 0x0905_0000, irq: 74, engine: ENGINE_A, engineBase: 0x0c00_0000, sid: 0x10 },
    { path: SMMU_B, base: 0x0907_0000, irq: 80, engine: ENGINE_B, engineBase: 0x0c01_0000, sid: 0x20 },
  ].forEach((s, i) => {
    const smmu = b.node(s.path, {
      compatible: 'arm,smmu-v3',
      reg: reg([s.base, 0x2_0000]),
      interrupts: [...spi(s.irq), ...spi(s.irq + 1), ...spi(s.irq + 2), ...spi(s.irq + 3)],
      'interrupt-names': ['eventq', 'priq', 'cmdq-sync', 'gerror'],
      'dma-coherent': true,
      '#iommu-cells': 1,
    });
    b.node(s.engine, {
      compatible: 'iommu-sim,dma-test-engine',
      reg: reg([s.engineBase, 0x1_0000]),
      interrupts: [0, 96 + i, 4],
      'dma-coherent': true,
      iommus: [smmu, s.sid],
      'dma-can-stall': true,
      'pasid-num-bits': 8,
    });
  });
  return b.build();
}
