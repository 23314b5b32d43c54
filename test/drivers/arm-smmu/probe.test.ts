/**
 * Probe and reset: the configuration read from the ID registers, the register state reset leaves
 * (sCR0, SMR/S2CR from the shadows, MMU-500 sACR/ACTLR), the SMR width probe, default domains, the
 * implementation flavours (MMU-401 AArch64 on SMMUv1, SMMUv1 AArch32 LPAE, stage-2-only, Qualcomm
 * bypass quirk and Adreno), and firmware errors.
 */
import { describe, expect, it } from 'vitest';
import { iommuAttachDevice, iommuGetDomainForDev } from '../../../core/iommu-attach.js';
import { armSmmuDomainContextBank } from '../../../drivers/arm-smmu/arm-smmu-domain.js';
import {
  ARM_SMMU_FEAT_COHERENT_WALK,
  ARM_SMMU_FEAT_FMT_AARCH32_L,
  ARM_SMMU_FEAT_FMT_AARCH64_4K,
  ARM_SMMU_FEAT_STREAM_MATCH,
  ARM_SMMU_FEAT_TRANS_OPS,
  ARM_SMMU_FEAT_TRANS_S1,
  ARM_SMMU_FEAT_TRANS_S2,
  ARM_SMMU_V1_64K,
  ARM_SMMU_V2,
} from '../../../drivers/arm-smmu/arm-smmu-device.js';
import { boot } from '../../../scenarios/lib/lab.js';
import { deviceOf, groupIdOf, smmuV2Machine } from '../../../scenarios/smmu-v2-lab.js';
import { attachNew, rig, bytes, L, map } from './rig.js';

const SCR0 = 0x0;
const SACR = 0x10;
const smr = (i: number): number => 0x800 + 4 * i;
const s2cr = (i: number): number => 0xc00 + 4 * i;
const GR1 = 0x1000;

describe('arm-smmu probe', () => {
  it('reads the configuration of an MMU-500 from its ID registers', async () => {
    const b = await rig();
    const s = b.smmu;
    expect(s.version).toBe(ARM_SMMU_V2);
    expect(s.impl?.name).toBe('arm-mmu500');
    for (const f of [ARM_SMMU_FEAT_TRANS_S1, ARM_SMMU_FEAT_TRANS_S2, ARM_SMMU_FEAT_STREAM_MATCH, ARM_SMMU_FEAT_COHERENT_WALK, ARM_SMMU_FEAT_FMT_AARCH64_4K]) {
      expect(s.features & f).toBe(f);
    }
    // MMU-500 reports ATOSNS: no ATS1PR translation ops.
    expect(s.features & ARM_SMMU_FEAT_TRANS_OPS).toBe(0);
    expect(s.numMappingGroups).toBe(48);
    expect(s.numContextBanks).toBe(8);
    expect(s.numpage).toBe(16);
    expect(s.pgshift).toBe(12);
    expect([s.vaSize, s.ipaSize, s.paSize]).toEqual([48, 48, 48]);
    // The SMR probe: 15 StreamID bits, 15 mask bits (no EXIDS).
    expect(s.streamidMask).toBe(0x7fff);
    expect(s.smrMaskMask).toBe(0x7fff);
    expect(b.kernel.log.lines('info').some((e) => e.message === '\tstream matching with 48 register groups')).toBe(true);
  });

  it('leaves sCR0 enabled with fault reporting, unmatched streams faulting, and MMU-500 tuned', async () => {
    const b = await rig();
    const scr0 = b.reg(SCR0);
    expect(scr0 & 1).toBe(0); // CLIENTPD clear
    for (const bit of [1, 2, 10, 11, 12]) expect((scr0 >>> bit) & 1).toBe(1); // GFRE GFIE USFCFG VMIDPNE PTM
    expect((scr0 >>> 13) & 1).toBe(0); // FB
    // MMU-500 r2p1: CACHE_LOCK cleared, SMTNMB_TLBEN and S2CRB_TLBEN set, ACTLR.CPRE cleared everywhere.
    const sacr = b.reg(SACR);
    expect((sacr >>> 26) & 1).toBe(0);
    expect((sacr >>> 10) & 1).toBe(1);
    expect((sacr >>> 8) & 1).toBe(1);
    for (let i = 0; i < b.smmu.numContextBanks; i++) expect(b.cb(i, 0x4) & 2).toBe(0);
  });

  it('programs an SMR per stream ID with the mask of 2-cell specifiers, unused entries FAULT', async () => {
    const b = await rig();
    const smrs = Array.from({ length: b.smmu.numMappingGroups }, (_, i) => b.reg(smr(i)));
    expect(smrs).toContain((0x8000_0000 | L.sidA) >>> 0);
    expect(smrs).toContain((0x8000_0000 | L.sidB) >>> 0);
    expect(smrs).toContain((0x8000_0000 | L.sidNoStall) >>> 0);
    expect(smrs).toContain((0x8000_0000 | (L.maskMasked << 16) | L.sidMasked) >>> 0);
    // The stray master is not known to the kernel: no SMR matches its stream.
    expect(smrs.some((v) => v >>> 31 && (v & 0x7fff) === L.sidStray)).toBe(false);
    const used = smrs.filter((v) => v >>> 31).length;
    expect(used).toBe(4);
    const unused = smrs.findIndex((v) => !(v >>> 31));
    expect(b.reg(s2cr(unused))).toBe(2 << 16);
    // Every master has a group and a translated default domain, its S2CRs pointing at a bank.
    const idx = smrs.indexOf((0x8000_0000 | L.sidA) >>> 0);
    expect(b.reg(s2cr(idx)) >>> 16).toBe(0);
    for (const m of [L.masterA, L.masterB, L.masterNoStall, L.masterMasked]) expect(groupIdOf(b.kernel, m)).not.toBeNull();
  });

  it('translates a masked stream: every SID under the SMR mask reaches the master\'s bank', async () => {
    const b = await rig();
    const domain = await attachNew(b, L.masterMasked);
    const pa = b.page();
    await map(b, domain, 0x7000, pa);
    expect((await b.master(L.masterMasked).write(0x7000, bytes(0x33))).status).toBe('ok');
    expect(b.machine.memory.read(pa, 1)[0]).toBe(0x33);
  });

  it('leaves unused entries in BYPASS with disable_bypass=0', async () => {
    const b = await rig({ cmdline: 'arm-smmu.disable_bypass=0' });
    const unused = Array.from({ length: 48 }, (_, i) => i).find((i) => !(b.reg(smr(i)) >>> 31))!;
    expect(b.reg(s2cr(unused))).toBe(1 << 16);
    expect(b.reg(SCR0) & (1 << 10)).toBe(0);
  });

  it('drives an MMU-401 (SMMUv1 with the AArch64 format) with CBAR.IRPTNDX and no EAE', async () => {
    // Eight banks: the four default domains take four.
    const b = await rig({ compatible: ['arm,mmu-401', 'arm,smmu-v1'], iommuOptions: { 'smmu-v2': { numCb: 8 } } });
    expect(b.smmu.version).toBe(ARM_SMMU_V1_64K);
    const domain = await attachNew(b, L.masterNoStall);
    const cbndx = armSmmuDomainContextBank(domain);
    const cbar = b.reg(GR1 + 4 * cbndx);
    expect((cbar >>> 16) & 3).toBe(1);
    expect(cbar >>> 24).toBe(domainIrptndx(b.smmu, domain));
    expect(b.cb(cbndx, 0x30) >>> 31).toBe(0); // TCR.EAE clear: AArch64 format on SMMUv1
    const pa = b.page();
    await map(b, domain, 0x1_0000, pa);
    expect((await b.master(L.masterNoStall).write(0x1_0004, bytes(0x44))).status).toBe('ok');
    expect(b.machine.memory.read(pa + 4, 1)[0]).toBe(0x44);
  });

  it('drives a generic SMMUv1 with AArch32 LPAE tables (TCR.EAE set, 32-bit VA)', async () => {
    const b = await rig({ compatible: ['arm,smmu-v1'] });
    expect(b.smmu.features & ARM_SMMU_FEAT_FMT_AARCH32_L).toBe(ARM_SMMU_FEAT_FMT_AARCH32_L);
    const domain = await attachNew(b, L.masterNoStall);
    const cbndx = armSmmuDomainContextBank(domain);
    expect(b.cb(cbndx, 0x30) >>> 31).toBe(1);
    expect(domain.geometry.apertureEnd).toBe(0xffff_ffff);
    const pa = b.page();
    await map(b, domain, 0xfff0_0000, pa);
    expect((await b.master(L.masterNoStall).write(0xfff0_0008, bytes(0x45))).status).toBe('ok');
    expect(b.machine.memory.read(pa + 8, 1)[0]).toBe(0x45);
  });

  it('makes every domain stage 2 on an SMMU without stage 1', async () => {
    const b = await rig({ iommuOptions: { 'smmu-v2': { stage1: false, nested: false } } });
    expect(b.smmu.features & ARM_SMMU_FEAT_TRANS_S1).toBe(0);
    const domain = await attachNew(b, L.masterNoStall);
    const cbndx = armSmmuDomainContextBank(domain);
    expect(b.reg(GR1 + 4 * cbndx)).toBe(cbndx + 1); // TYPE 0 (stage 2), VMID bank + 1
    const pa = b.page();
    await map(b, domain, 0x2000, pa);
    expect((await b.master(L.masterNoStall).write(0x2000, bytes(0x46))).status).toBe('ok');
    expect(b.machine.memory.read(pa, 1)[0]).toBe(0x46);
  });

  it('emulates bypass with a reserved bank on Qualcomm firmware that turns BYPASS into FAULT', async () => {
    const b = await rig({
      compatible: ['qcom,sm8250-smmu-500', 'qcom,smmu-500', 'arm,mmu-500'],
      iommuOptions: { 'smmu-v2': { qcomS2crBypassQuirk: true } },
      cmdline: 'iommu.passthrough=1',
    });
    expect(b.smmu.impl?.name).toBe('qcom-smmu-500');
    const last = b.smmu.numContextBanks - 1;
    expect(b.smmu.contextMap[last]).toBe(true);
    expect(b.cb(last, 0)).toBe(0);
    expect((b.reg(GR1 + 4 * last) >>> 16) & 3).toBe(1);
    // The identity default domain is a TRANS entry to that bank, and DMA passes untranslated.
    const smrs = Array.from({ length: b.smmu.numMappingGroups }, (_, i) => b.reg(smr(i)));
    const idx = smrs.indexOf((0x8000_0000 | L.sidNoStall) >>> 0);
    expect(b.reg(s2cr(idx))).toBe(last);
    const pa = b.page();
    expect((await b.master(L.masterNoStall).write(pa + 12, bytes(0x47))).status).toBe('ok');
    expect(b.machine.memory.read(pa + 12, 1)[0]).toBe(0x47);
    // Unused entries still fault (written as BYPASS, stored as FAULT by the firmware).
    const unused = smrs.findIndex((v) => !(v >>> 31));
    expect((b.reg(s2cr(unused)) >>> 16) & 3).toBe(2);
  });

  it('gives the Adreno GPU (stream ID 0) bank 0, everyone else later banks, with HUPCF set', async () => {
    const b = await rig({ compatible: ['qcom,sm8250-smmu-500', 'qcom,adreno-smmu', 'qcom,smmu-500', 'arm,mmu-500'], gpuMaster: true });
    expect(b.smmu.impl?.name).toBe('qcom-adreno-smmu-500');
    const dev = b.dev(L.gpu);
    const gpuDefault = iommuGetDomainForDev(dev)!;
    expect(armSmmuDomainContextBank(gpuDefault)).toBe(0);
    const other = await attachNew(b, L.masterNoStall);
    expect(armSmmuDomainContextBank(other)).toBeGreaterThan(0);
    expect(b.cb(armSmmuDomainContextBank(other), 0) & (1 << 8)).toBe(1 << 8);
    // Bank 0 is the GPU's only: a second GPU domain finds none free.
    const again = (await import('../../../core/iommu-domain.js')).iommuPagingDomainAlloc(dev);
    const err = await b.run(iommuAttachDevice(again, dev)).catch((e: unknown) => e);
    expect(String(err)).toMatch(/ENOSPC/);
  });

  it('fails probe clearly without #global-interrupts, or with fewer context interrupts than banks', async () => {
    for (const [opts, msg] of [
      [{ globalInterrupts: null }, 'missing #global-interrupts property'],
      [{ iommuOptions: { 'smmu-v2': { numCb: 8 } }, contextInterrupts: 4 }, 'found only 4 context irq(s) but 8 required'],
    ] as const) {
      const m = smmuV2Machine({ seed: 1, ...opts });
      const k = await boot(m);
      const dev = deviceOf(k, L.smmuPath);
      expect(dev.status).toBe('failed');
      expect(dev.probeError).toContain(msg);
    }
  });
});

function domainIrptndx(smmu: { cbs: { domain: unknown; cfg: { irptndx: number } | null }[] }, domain: unknown): number {
  const cb = smmu.cbs.find((c) => c.domain === domain);
  if (!cb?.cfg) throw new Error('domain has no bank');
  return cb.cfg.irptndx;
}
