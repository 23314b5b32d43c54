/**
 * Stage 2 STEs of stall-capable masters (kernel: arm_smmu_make_s2_domain_ste() sets S2S when
 * master->stall_enabled): the STE bit, its place in the used bits, and a stage 2 fault of such a
 * master stalling in the SMMU until the driver answers it.
 */
import { describe, expect, it } from 'vitest';
import { iommuSetFaultHandler } from '../../../core/iommu-domain.js';
import { armSmmuV3MasterOf } from '../../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import {
  ARM_SMMU_FEAT_STALLS,
  STRTAB_STE_0_CFG,
  STRTAB_STE_0_CFG_S2_TRANS,
  STRTAB_STE_2_S2R,
  STRTAB_STE_2_S2S,
} from '../../../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { armSmmuGetSteUsed, armSmmuMakeS2DomainSte } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-ste.js';
import { allocPages, bootSmmuV3, deviceOf, engineJob, fillPhys, mapRange, ownDomain, settle, V3 } from '../../../scenarios/smmu-v3-lab.js';

const S2: Parameters<typeof armSmmuMakeS2DomainSte>[2] = {
  vmid: 3,
  vttbr: 0x4010_0000,
  vtcr: { tsz: 16, sl: 2, irgn: 1, orgn: 1, sh: 3, tg: 0, ps: 5 },
};

describe('S2S in stage 2 STEs', () => {
  it('is set for a master with stalls enabled and clear otherwise; the writer knows the bit is used', () => {
    const stalling = new Uint32Array(16);
    armSmmuMakeS2DomainSte(stalling, { features: ARM_SMMU_FEAT_STALLS, stallEnabled: true, cdTable: null }, S2, false);
    const plain = new Uint32Array(16);
    armSmmuMakeS2DomainSte(plain, { features: ARM_SMMU_FEAT_STALLS, stallEnabled: false, cdTable: null }, S2, false);
    expect(STRTAB_STE_0_CFG.get(stalling)).toBe(STRTAB_STE_0_CFG_S2_TRANS);
    expect(STRTAB_STE_2_S2S.isSet(stalling)).toBe(true);
    expect(STRTAB_STE_2_S2R.isSet(stalling)).toBe(true);
    expect(STRTAB_STE_2_S2S.isSet(plain)).toBe(false);
    // Word 5 holds STE bits [191:160]: S2S is bit 185.
    expect(stalling[5]! ^ plain[5]!).toBe(1 << (185 - 160));
    const used = new Uint32Array(16);
    armSmmuGetSteUsed(plain, used);
    expect(STRTAB_STE_2_S2S.isSet(used)).toBe(true);
  });

  it('the stall engine attached to a stage 2 domain gets S2S; the other engine does not', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    await ownDomain(lab, V3.stallEngine, 'S2');
    await ownDomain(lab, V3.engine, 'S2');
    const stallMaster = armSmmuV3MasterOf(deviceOf(lab, V3.stallEngine))!;
    const plainMaster = armSmmuV3MasterOf(deviceOf(lab, V3.engine))!;
    expect(stallMaster.stallEnabled).toBe(true);
    const steOf = (sid: number): Uint32Array => lab.smmu.strtab.readSte(sid);
    expect(STRTAB_STE_0_CFG.get(steOf(stallMaster.streams[0]!))).toBe(STRTAB_STE_0_CFG_S2_TRANS);
    expect(STRTAB_STE_2_S2S.isSet(steOf(stallMaster.streams[0]!))).toBe(true);
    expect(STRTAB_STE_2_S2S.isSet(steOf(plainMaster.streams[0]!))).toBe(false);
    expect(lab.smmu.events.filter((e) => e.name === 'C_BAD_STE')).toEqual([]);
  });

  it('with IDR0.STALL_MODEL = 2 (stall forced) every master stalls: its stage 2 STE is legal and translates', async () => {
    const lab = await bootSmmuV3({ seed: 1, smmu: { stallModel: 2 } });
    const domain = await ownDomain(lab, V3.engine, 'S2');
    const master = armSmmuV3MasterOf(deviceOf(lab, V3.engine))!;
    expect(master.stallEnabled).toBe(true);
    expect(STRTAB_STE_2_S2S.isSet(lab.smmu.strtab.readSte(master.streams[0]!))).toBe(true);
    const pa = allocPages(lab, 4096);
    await mapRange(lab, domain, 0x1000_0000, pa, 4096);
    const st = await engineJob(lab, V3.engine, { op: 'fill', dst: 0x1000_0000, len: 64, byte: 0x77 });
    expect(st.state).toBe('done');
    expect(lab.smmu.events.filter((e) => e.name === 'C_BAD_STE')).toEqual([]);
  });
});

describe('a stage 2 fault of a stall-capable master', () => {
  const SRC = 0x1000_0000;
  const DST = 0x2000_0000;

  it('stalls (Stall = 1, S2 = 1, a STAG), reaches the fault handler and is terminated by its refusal', async () => {
    const lab = await bootSmmuV3({ seed: 1 });
    const domain = await ownDomain(lab, V3.stallEngine, 'S2');
    const src = allocPages(lab, 4096);
    fillPhys(lab, src, 4096, 0x5a);
    await mapRange(lab, domain, SRC, src, 4096);
    const seen: number[] = [];
    iommuSetFaultHandler(domain, (_d, _dev, iova) => {
      seen.push(iova);
      return Promise.resolve('EFAULT');
    });
    const stalled0 = lab.model.stats.stalled;
    const st = await engineJob(lab, V3.stallEngine, { op: 'copy', src: SRC, dst: DST, len: 4096 });
    await settle(lab);
    expect(lab.model.stats.stalled - stalled0).toBe(1);
    const ev = lab.smmu.events.find((e) => e.kind === 'event' && e.addr === DST);
    expect(ev).toMatchObject({ name: 'F_TRANSLATION', stall: true, s2: true, cls: 'IN', ipa: DST, write: true });
    expect(seen).toEqual([DST]);
    expect({ state: st.state, dma: st.dmaStatus }).toEqual({ state: 'error', dma: 'abort' });
    expect(lab.smmu.eventStats.resumeAbort).toBe(1);
    expect(lab.model.stalls.count).toBe(0);
  });

  it('without a handler the driver terminates the stalled transaction at once', async () => {
    const lab = await bootSmmuV3({ seed: 2 });
    await ownDomain(lab, V3.stallEngine, 'S2');
    const st = await engineJob(lab, V3.stallEngine, { op: 'fill', dst: DST, len: 64, byte: 0x11 });
    await settle(lab);
    expect(lab.smmu.events.filter((e) => e.stall && e.s2).map((e) => e.addr)).toEqual([DST]);
    expect(st.state).toBe('error');
    expect(lab.model.stalls.count).toBe(0);
  });

  it('a master that cannot stall only records the stage 2 fault (S2S = 0, S2R = 1)', async () => {
    const lab = await bootSmmuV3({ seed: 3 });
    await ownDomain(lab, V3.engine, 'S2');
    const stalled0 = lab.model.stats.stalled;
    const st = await engineJob(lab, V3.engine, { op: 'fill', dst: DST, len: 64, byte: 0x11 });
    await settle(lab);
    expect(lab.model.stats.stalled).toBe(stalled0);
    expect(lab.smmu.events.filter((e) => e.addr === DST).map((e) => ({ name: e.name, stall: e.stall, s2: e.s2 }))).toEqual([
      { name: 'F_TRANSLATION', stall: false, s2: true },
    ]);
    expect({ state: st.state, dma: st.dmaStatus }).toEqual({ state: 'error', dma: 'fault' });
  });
});
