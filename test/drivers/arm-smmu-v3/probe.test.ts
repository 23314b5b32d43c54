/**
 * Probe from firmware and ID registers, the reset sequence's visible results (and its order for an SMMU
 * found enabled after a kexec), DT quirks, hardware
 * variants the model can be built as, and probe failures (each named in the kernel log).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { armSmmuV3MasterOf, findArmSmmuV3 } from '../../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import {
  ARM_SMMU_CR0,
  ARM_SMMU_CR0ACK,
  ARM_SMMU_CR1,
  ARM_SMMU_CR2,
  ARM_SMMU_FEAT_2_LVL_STRTAB,
  ARM_SMMU_FEAT_SEV,
  ARM_SMMU_FEAT_TRANS_S1,
  ARM_SMMU_GBPA,
  ARM_SMMU_IRQ_CTRLACK,
  ARM_SMMU_OPT_CMDQ_FORCE_SYNC,
  ARM_SMMU_OPT_MSIPOLL,
  ARM_SMMU_OPT_PAGE0_REGS_ONLY,
  ARM_SMMU_OPT_SKIP_PREFETCH,
  ARM_SMMU_STRTAB_BASE_CFG,
  CMDQ_0_OP,
  CMDQ_OP_PREFETCH_CFG,
  CR0_SMMUEN,
  GBPA_ABORT,
  GBPA_UPDATE,
} from '../../../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { armSmmuSteConfigName } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-ste.js';
import { bootReport } from '../../../scenarios/lib/boot-report.js';
import { bootKernel } from '../../../kernel/kernel.js';
import { kexec } from '../../../kernel/kexec.js';
import { boot, machineFromDtb, machineFromTree, run, virtMachine } from '../../../scenarios/lib/lab.js';
import { iommuGroupGet } from '../../../core/iommu-group.js';
import type { ArmSmmuDomain } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-domain.js';
import {
  bootSmmuV3,
  copyThrough,
  deviceOf,
  ownDomain,
  settle,
  SMALL_SMMU_PATH,
  smallSmmuV3Tree,
  runIn,
  V3,
  type SmmuV3Lab,
  smmuModel,
} from '../../../scenarios/smmu-v3-lab.js';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dtb');

async function copyWorks(lab: SmmuV3Lab, engine: string, stage: 'S1' | 'S2' = 'S1'): Promise<boolean> {
  const r = await copyThrough(lab, engine, stage, 0x6b);
  return r.status.startsWith('done/') && r.landed;
}

/** Boot `virt` recording every command the SMMUv3 consumes: [name, SID of CFGI_STE/CFGI_CD, ASID of TLBI_NH_ASID]. */
async function bootRecordingCommands(bootargs?: string): Promise<{ lab: Awaited<ReturnType<typeof bootSmmuV3>>; cmds: [string, number][] }> {
  const machine = virtMachine({ seed: 1, bootargs });
  const cmds: [string, number][] = [];
  smmuModel(machine).cmdq.onCommand = (op, w) => {
    const name = op === 0x03 ? 'CFGI_STE' : op === 0x05 ? 'CFGI_CD' : op === 0x11 ? 'TLBI_NH_ASID' : op === 0x46 ? 'CMD_SYNC' : op === 0x40 ? 'ATC_INV' : `op ${op}`;
    cmds.push([name, op === 0x11 ? w[1] >>> 16 : op === 0x03 || op === 0x05 ? w[1] : 0]);
  };
  const kernel = await boot(machine);
  return { lab: { machine, kernel, smmu: findArmSmmuV3(kernel.core, V3.smmu), model: smmuModel(machine) }, cmds };
}

describe('probe on the virt machine', () => {
  it('each master\'s DMA domain is flushed right after its attach: TLBI_NH_ASID of its ASID + CMD_SYNC, as Linux 6.1 probes it', async () => {
    const { lab, cmds } = await bootRecordingCommands();
    for (const path of [V3.stallEngine, V3.engine, V3.accel, V3.nic]) {
      const dev = deviceOf(lab, path);
      const sids = armSmmuV3MasterOf(dev)!.streams;
      const domain = iommuGroupGet(dev)!.domain as ArmSmmuDomain;
      const lastSte = cmds.reduce((at, [n, sid], i) => (n === 'CFGI_STE' && sids.includes(sid) ? i : at), -1);
      expect(lastSte, path).toBeGreaterThan(0);
      // After the STE went live (and its sync, and ATC invalidation for ATS masters), before any
      // other device's configuration: the flush of the domain's ASID.
      const after = cmds.slice(lastSte + 1);
      const nextCfg = after.findIndex(([n, sid]) => (n === 'CFGI_STE' || n === 'CFGI_CD') && !sids.includes(sid));
      const window = nextCfg < 0 ? after : after.slice(0, nextCfg);
      const tlbi = window.findIndex(([n]) => n === 'TLBI_NH_ASID');
      expect(window[tlbi], path).toEqual(['TLBI_NH_ASID', domain.asid]);
      expect(window[tlbi + 1], path).toEqual(['CMD_SYNC', 0]);
      expect(window.filter(([n]) => n === 'TLBI_NH_ASID'), path).toHaveLength(1);
    }
  });

  it('no TLBI_NH_ASID during the probe when the default domains are identity (iommu.passthrough=1)', async () => {
    const { cmds } = await bootRecordingCommands('iommu.passthrough=1');
    expect(cmds.filter(([n]) => n === 'CFGI_STE').length).toBeGreaterThan(0);
    expect(cmds.filter(([n]) => n === 'TLBI_NH_ASID')).toEqual([]);
  });

  it('binds arm-smmu-v3, resets the SMMU and gives its masters groups and default domains', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const report = bootReport(lab.machine, lab.kernel);
    expect(report.iommus.find((i) => i.node === V3.smmu)).toMatchObject({ status: 'probed', driver: 'arm-smmu-v3', error: null });
    const masters = report.masters.filter((m) => m.iommus[0]?.iommu === V3.smmu);
    expect(masters.map((m) => ({ node: m.node, domain: m.domain }))).toEqual([
      { node: V3.stallEngine, domain: 'DMA-FQ' },
      { node: V3.engine, domain: 'DMA-FQ' },
    ]);
    expect(masters.every((m) => typeof m.group === 'number')).toBe(true);
    // CR0ACK: SMMUEN | PRIQEN | EVTQEN | CMDQEN | ATSCHK.
    expect(lab.model.peek32(ARM_SMMU_CR0ACK)).toBe(0x1f);
    expect(lab.model.peek32(ARM_SMMU_IRQ_CTRLACK)).toBe(0x7);
    // CR1: tables and queues inner-shareable write-back; CR2: PTM | RECINVSID.
    expect(lab.model.peek32(ARM_SMMU_CR1)).toBe(0xd75);
    expect(lab.model.peek32(ARM_SMMU_CR2)).toBe(0x6);
    // STRTAB_BASE_CFG: 2-level, SPLIT 8, LOG2SIZE 16.
    expect(lab.model.peek32(ARM_SMMU_STRTAB_BASE_CFG)).toBe(0x1_0000 | (8 << 6) | 16);
    // GBPA is left as firmware set it.
    expect(lab.model.peek32(ARM_SMMU_GBPA)).toBe(0x1000);
    expect(lab.smmu.options & ARM_SMMU_OPT_MSIPOLL).toBe(ARM_SMMU_OPT_MSIPOLL);
    expect(lab.smmu.iommu.maxPasids).toBe(1 << 20);
    expect(lab.kernel.log.lines('err')).toEqual([]);
  });

  it('PCI functions get groups by the PCI rules (a multi-function device without ACS shares one)', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const group = (name: string): number | null => {
      const m = armSmmuV3MasterOf(deviceOf(lab, name));
      return m ? (deviceOf(lab, name).iommu as { group: { id: number } }).group.id : null;
    };
    expect(group('0000:00:03.0')).toBe(group('0000:00:03.1'));
    expect(group(V3.accel)).not.toBe(group(V3.nic));
    expect(armSmmuV3MasterOf(deviceOf(lab, V3.accel))!.streams).toEqual([0x08]);
    // The accel function's PASID capability was enabled at probe: 20 SSID bits.
    expect(armSmmuV3MasterOf(deviceOf(lab, V3.accel))!.ssidBits).toBe(20);
  });

  it('initial STEs abort; with arm-smmu-v3.disable_bypass=0 they bypass', async () => {
    const strict = await bootSmmuV3({ seed: 1 });
    expect(armSmmuSteConfigName(strict.smmu.strtab.readSte(0x102))).toBe('abort');
    const loose = await bootSmmuV3({ seed: 1, bootargs: 'arm-smmu-v3.disable_bypass=0' });
    expect(armSmmuSteConfigName(loose.smmu.strtab.readSte(0x102))).toBe('bypass');
  });

  it('structures above 4 GiB: queues, stream table, CD tables and page tables work from high RAM', async () => {
    const tree = smallSmmuV3Tree({ engines: [{ sid: 0x20 }], ramBase: 0x8_8000_0000 });
    const lab = await bootSmmuV3({ seed: 1, tree, smmuPath: SMALL_SMMU_PATH });
    expect(lab.smmu.cmdq.q.base).toBeGreaterThan(2 ** 32);
    expect(lab.smmu.strtab.table.pa).toBeGreaterThan(2 ** 32);
    expect(await copyWorks(lab, '/dma@c000000')).toBe(true);
    expect(lab.smmu.cmdq.stats.syncTimeouts).toBe(0);
  });
});

describe('reset of an SMMU a previous kernel left enabled', () => {
  it('GBPA.ABORT through the Update handshake before CR0 is cleared, and ABORT stays while the new kernel owns it', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const writes: { off: number; value: number }[] = [];
    const stop = lab.machine.trace.subscribe((e) => {
      if (e.kind === 'mmio' && e.op === 'write' && e.track === V3.smmu) writes.push({ off: e.offset, value: Number(e.value) });
    });
    // A crash kexec: no shutdown, the SMMU is still translating when the next kernel probes it.
    // (Let the SMMU finish the old kernel's commands first: the new kernel zeroes memory it does not
    // know the old queue lives in, and a half-consumed queue would then stop on an illegal command.)
    await settle(lab);
    const next = await runIn(lab, kexec(lab.machine, { skipShutdown: true }), 'crash kexec');
    stop();
    const gbpa = writes.findIndex((w) => w.off === ARM_SMMU_GBPA);
    const cr0 = writes.findIndex((w) => w.off === ARM_SMMU_CR0);
    expect(writes[gbpa]?.value).toBe((0x1000 | GBPA_ABORT | GBPA_UPDATE) >>> 0);
    expect(cr0).toBeGreaterThan(gbpa);
    expect(writes[cr0].value).toBe(0);
    expect(writes.filter((w) => w.off === ARM_SMMU_GBPA)).toHaveLength(1);
    expect(findArmSmmuV3(next.core, V3.smmu).foundEnabled).toBe(true);
    expect(next.log.lines('warn').some((l) => l.message === 'SMMU currently enabled! Resetting...')).toBe(true);
    expect(lab.model.peek32(ARM_SMMU_GBPA)).toBe(0x1000 | GBPA_ABORT);
    expect(lab.model.peek32(ARM_SMMU_CR0ACK) & CR0_SMMUEN).toBe(CR0_SMMUEN);
    // A first boot finds it disabled and leaves GBPA alone (see 'binds arm-smmu-v3, …' above).
    expect(lab.kernel.log.lines('warn').some((l) => l.message === 'SMMU currently enabled! Resetting...')).toBe(false);
  });
});

describe('remove', () => {
  it('unbinding the SMMU releases its masters, disables it and frees its structures', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const framesBefore = lab.kernel.alloc.ownerOf(lab.smmu.cmdq.q.base);
    expect(framesBefore?.owner).toMatchObject({ kind: 'dma', device: V3.smmu });
    await runIn(lab, lab.kernel.core.unbind(deviceOf(lab, V3.smmu)));
    expect(lab.model.peek32(ARM_SMMU_CR0ACK)).toBe(0);
    expect(lab.kernel.alloc.ownerOf(lab.smmu.cmdq.q.base)?.owner.kind).toBe('free');
    expect(armSmmuV3MasterOf(deviceOf(lab, V3.engine))).toBeNull();
  });
});

describe('real device trees', () => {
  for (const [file, smmus] of [
    ['fvp-base-revc', ['/iommu@2b400000']],
    ['hip07-d05', ['/iommu@d0040000', '/iommu@8d0040000', '/iommu@400d0040000', '/iommu@408d0040000']],
  ] as const) {
    it(`${file}: every enabled arm,smmu-v3 is probed by arm-smmu-v3 and its masters get domains`, async () => {
      const machine = machineFromDtb(new Uint8Array(readFileSync(join(FIXTURES, `${file}.dtb`))), { seed: 1 });
      const kernel = await boot(machine);
      const report = bootReport(machine, kernel);
      const probed = report.iommus.filter((i) => i.compatible.includes('arm,smmu-v3') && i.status === 'probed');
      expect(probed.map((i) => [i.node, i.driver])).toEqual(smmus.map((s) => [s, 'arm-smmu-v3']));
      for (const m of report.masters.filter((mm) => smmus.some((s) => mm.iommus[0]?.iommu === s))) {
        expect(m.group).not.toBeNull();
        expect(m.domain).toBe('DMA-FQ');
      }
      if (file === 'hip07-d05') {
        // Every hip07 SMMU carries hisilicon,broken-prefetch-cmd.
        for (const s of smmus) expect(findArmSmmuV3(kernel.core, s).options & ARM_SMMU_OPT_SKIP_PREFETCH).toBe(ARM_SMMU_OPT_SKIP_PREFETCH);
        expect(report.masters.length).toBe(4);
      }
    });
  }
});

describe('DT quirks', () => {
  it('hisilicon,broken-prefetch-cmd: no CMD_PREFETCH_CONFIG after an STE write', async () => {
    const count = async (quirk: boolean): Promise<number> => {
      const tree = smallSmmuV3Tree({ engines: [{ sid: 0x30 }], smmuProps: quirk ? { 'hisilicon,broken-prefetch-cmd': true } : {} });
      const lab = await bootSmmuV3({ seed: 1, tree, smmuPath: SMALL_SMMU_PATH });
      let prefetches = 0;
      lab.smmu.cmdq.onCommand = (w, off) => {
        if (CMDQ_0_OP.get(w, off) === CMDQ_OP_PREFETCH_CFG) prefetches++;
      };
      await ownDomain(lab, '/dma@c000000');
      return prefetches;
    };
    expect(await count(false)).toBeGreaterThan(0);
    expect(await count(true)).toBe(0);
  });

  it('cavium,cn9900-broken-page1-regspace: a 64 KiB region, page 1 registers reached through page 0', async () => {
    const tree = smallSmmuV3Tree({ engines: [{ sid: 0x31 }], smmuRegSize: 0x1_0000, smmuProps: { 'cavium,cn9900-broken-page1-regspace': true } });
    const lab = await bootSmmuV3({ seed: 1, tree, smmuPath: SMALL_SMMU_PATH });
    expect(lab.smmu.options & ARM_SMMU_OPT_PAGE0_REGS_ONLY).toBe(ARM_SMMU_OPT_PAGE0_REGS_ONLY);
    expect(lab.smmu.page1).toBe(lab.smmu.base);
    // The event queue works through the aliases: a fault is reported.
    await ownDomain(lab, '/dma@c000000');
    const r = await lab.machine.scheduler.runUntilSettled(lab.machine.master('/dma@c000000')!.read(0x7000_0000, 8));
    await settle(lab);
    expect(r.status).not.toBe('ok');
    expect(lab.smmu.events.map((e) => [e.name, e.sid, e.addr])).toEqual([['F_TRANSLATION', 0x31, 0x7000_0000]]);
  });

  it('a 64 KiB region without the quirk is refused: MMIO region too small', async () => {
    const machine = machineFromTree(smallSmmuV3Tree({ engines: [{ sid: 1 }], smmuRegSize: 0x1_0000 }), { seed: 1 });
    const kernel = await boot(machine);
    const dev = kernel.core.findDevice(SMALL_SMMU_PATH)!;
    expect(dev.status).toBe('failed');
    expect(dev.probeError).toMatch(/EINVAL.*smaller than 0x20000/);
    expect(kernel.log.lines('err').some((l) => l.message.startsWith('MMIO region too small'))).toBe(true);
  });

  it('#iommu-cells other than 1 is refused', async () => {
    const machine = machineFromTree(smallSmmuV3Tree({ engines: [], smmuProps: { '#iommu-cells': 2 } }), { seed: 1 });
    const kernel = await boot(machine);
    const dev = kernel.core.findDevice(SMALL_SMMU_PATH)!;
    expect(dev.status).toBe('failed');
    expect(dev.probeError).toMatch(/invalid #iommu-cells value \(2\)/);
  });
});

describe('hardware variants (from the ID registers)', () => {
  it('no 2-level stream table and 8 SID bits: a linear table of 256 STEs', async () => {
    const tree = smallSmmuV3Tree({ engines: [{ sid: 0x40 }] });
    const lab = await bootSmmuV3({ seed: 1, tree, smmuPath: SMALL_SMMU_PATH, smmu: { twoLevelStreamTable: false, sidBits: 8 } });
    expect(lab.smmu.features & ARM_SMMU_FEAT_2_LVL_STRTAB).toBe(0);
    expect(lab.model.peek32(ARM_SMMU_STRTAB_BASE_CFG)).toBe(8);
    expect(lab.smmu.strtab.numL1Ents).toBe(256);
    expect(await copyWorks(lab, '/dma@c000000')).toBe(true);
  });

  it('stage 2 only: every domain is stage 2, default domains included', async () => {
    const tree = smallSmmuV3Tree({ engines: [{ sid: 0x41 }] });
    const lab = await bootSmmuV3({ seed: 1, tree, smmuPath: SMALL_SMMU_PATH, smmu: { stage1: false } });
    expect(lab.smmu.features & ARM_SMMU_FEAT_TRANS_S1).toBe(0);
    expect(armSmmuSteConfigName(lab.smmu.strtab.readSte(0x41))).toBe('s2');
    expect(await copyWorks(lab, '/dma@c000000')).toBe(true);
    expect(armSmmuSteConfigName(lab.smmu.strtab.readSte(0x41))).toBe('s2');
  });

  it('no MSI: CMD_SYNC uses CS=SEV and completion is seen by polling CMDQ_CONS', async () => {
    const lab = await bootSmmuV3({ seed: 1, smmu: { msi: false } });
    expect(lab.smmu.options & ARM_SMMU_OPT_MSIPOLL).toBe(0);
    expect(await copyWorks(lab, V3.engine)).toBe(true);
    expect(lab.smmu.cmdq.stats.syncTimeouts).toBe(0);
    expect(lab.model.irq.stats.msi['cmdq-sync']).toBe(0);
  });

  it('IIDR errata: MMU-700 forces a sync per batch, MMU-600 r0p0 loses SEV', async () => {
    const mmu700 = await bootSmmuV3({ seed: 1, smmu: { iidr: (0x487 << 20) | 0x43b } });
    expect(mmu700.smmu.options & ARM_SMMU_OPT_CMDQ_FORCE_SYNC).toBe(ARM_SMMU_OPT_CMDQ_FORCE_SYNC);
    const mmu600 = await bootSmmuV3({ seed: 1, smmu: { iidr: (0x483 << 20) | 0x43b } });
    expect(mmu600.smmu.features & ARM_SMMU_FEAT_SEV).toBe(0);
  });

  it('a command queue of 64 entries or fewer is refused', async () => {
    const machine = machineFromTree(smallSmmuV3Tree({ engines: [] }), { seed: 1, iommuOptions: { [SMALL_SMMU_PATH]: { cmdqLog2: 6 } } });
    const kernel = await boot(machine);
    expect(kernel.core.findDevice(SMALL_SMMU_PATH)!.probeError).toMatch(/ENXIO.*CMDQS 6 is too small/);
  });

  it('CR0ACK that never follows: the reset times out after 1 s and probe fails, naming the step', async () => {
    const machine = machineFromTree(smallSmmuV3Tree({ engines: [] }), { seed: 1, iommuOptions: { [SMALL_SMMU_PATH]: { timing: { regAckNs: 5_000_000_000 } } } });
    const kernel = await run(machine, bootKernel(machine), 'slow boot', 10_000_000_000);
    const dev = kernel.core.findDevice(SMALL_SMMU_PATH)!;
    expect(dev.status).toBe('failed');
    expect(dev.probeError).toMatch(/ETIMEDOUT/);
    expect(kernel.log.lines('err').map((l) => l.message)).toContain('failed to enable command queue');
    expect(machine.scheduler.now).toBeGreaterThanOrEqual(1_000_000_000);
  });

  it('a master whose StreamID does not fit IDR1.SIDSIZE fails the registration, as bus_iommu_probe propagates ERANGE', async () => {
    const machine = machineFromTree(smallSmmuV3Tree({ engines: [{ sid: 0x1_2345 }] }), { seed: 1, iommuOptions: { [SMALL_SMMU_PATH]: { sidBits: 16 } } });
    const kernel = await boot(machine);
    expect(kernel.core.findDevice(SMALL_SMMU_PATH)!.probeError).toMatch(/ERANGE.*0x12345.*outside the stream table/);
  });
});
