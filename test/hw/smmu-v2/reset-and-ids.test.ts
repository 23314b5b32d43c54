import { describe, expect, it } from 'vitest';
import { SmmuLayout, numPageNdxbForRegion } from '../../../hw/smmu-v2/regs.js';
import { optionsForNode, resolveOptions, smmuV2ModelForCompatible } from '../../../hw/smmu-v2/index.js';
import {
  ACTLR,
  Rig,
  CBA2R,
  CBAR,
  CLIENTPD,
  FSR,
  GFRE,
  ID0,
  ID1,
  ID2,
  ID7,
  S2CR,
  SCTLR,
  SMCFCFG,
  SMMU_BASE,
  SMR,
  sACR,
  sCR0,
  sGFSR,
  TCR2,
  USFCFG,
} from './rig.js';

describe('SMMUv2 register layout', () => {
  it('lays the register space out by page size and NUMPAGENDXB', () => {
    const l = new SmmuLayout(false, 3);
    expect(l.numPage).toBe(16);
    expect(l.size).toBe(0x20000);
    expect(l.cbBase).toBe(0x10000);
    const l64 = new SmmuLayout(true, 0);
    expect(l64.size).toBe(4 * 0x10000);
    expect(numPageNdxbForRegion(0x10000, false)).toBe(2); // Juno's MMU-401
    expect(numPageNdxbForRegion(0x100000, false)).toBe(6); // SM8250's apps SMMU
    expect(() => numPageNdxbForRegion(0x3000, false)).toThrowError(/not 2 x NUMPAGE/);
  });

  it('names the flavour from DT compatibles and rejects impossible options', () => {
    expect(smmuV2ModelForCompatible(['qcom,sm8250-smmu-500', 'qcom,smmu-500', 'arm,mmu-500'])).toBe('qcom-smmu-500');
    expect(smmuV2ModelForCompatible(['arm,mmu-401'])).toBe('mmu-401');
    expect(smmuV2ModelForCompatible(['arm,mmu-500'])).toBe('mmu-500');
    expect(smmuV2ModelForCompatible(['arm,smmu-v3'])).toBeNull();
    expect(() => resolveOptions({ model: 'mmu-500', numCb: 64, numPageNdxb: 3 })).toThrowError(/numCb.*NUMPAGE = 16/);
    expect(() => resolveOptions({ model: 'mmu-401', vmid16: true })).toThrowError(/vmid16/);
    expect(() => resolveOptions({ model: 'smmu-v2', ias: 47 })).toThrowError(/option ias/);
    expect(() => resolveOptions({ model: 'smmu-v2', nested: true, stage2: false })).toThrowError(/nested/);
  });

  it('derives options from a DT node: NUMPAGENDXB from reg, no more v2 banks than context interrupts', () => {
    // Juno's MMU-401: reg 0x10000, one context interrupt (v1: interrupts are routed by IRPTNDX).
    expect(optionsForNode({ compatible: ['arm,mmu-401'], regSize: 0x10000, contextInterrupts: 1 })).toMatchObject({
      model: 'mmu-401',
      numPageNdxb: 2,
      numCb: 4,
      numIrpt: 1,
    });
    // SM8250's apps SMMU: 1 MB of registers, many context interrupts.
    expect(
      optionsForNode({ compatible: ['qcom,sm8250-smmu-500', 'arm,mmu-500'], regSize: 0x100000, contextInterrupts: 96 }),
    ).toMatchObject({ model: 'qcom-smmu-500', numPageNdxb: 6, numCb: 32 });
    // SM8250's Adreno SMMU: 64K of registers hold only 8 banks.
    expect(
      optionsForNode({
        compatible: ['qcom,sm8250-smmu-500', 'qcom,adreno-smmu', 'qcom,smmu-500', 'arm,mmu-500'],
        regSize: 0x10000,
        contextInterrupts: 24,
      }),
    ).toMatchObject({ model: 'qcom-smmu-500', numPageNdxb: 2, numCb: 8 });
    // ZynqMP's MMU-500 with 16 context interrupts in 128K.
    expect(optionsForNode({ compatible: ['arm,mmu-500'], regSize: 0x20000, contextInterrupts: 8 })).toMatchObject({
      numPageNdxb: 3,
      numCb: 8,
      numIrpt: 8,
    });
    expect(optionsForNode({ compatible: ['arm,smmu-v3'], regSize: 0x20000, contextInterrupts: 0 })).toBeNull();
    expect(() => optionsForNode({ compatible: ['arm,mmu-500'], regSize: 0x1000, contextInterrupts: 1 })).toThrowError(/smaller/);
  });
});

describe('SMMUv2 reset state and ID registers', () => {
  it('MMU-500: CLIENTPD and SMCFCFG set, S2CRs fault, IDs from the options', () => {
    const b = new Rig({ model: 'mmu-500', numSmr: 24, numCb: 8, numPageNdxb: 3, atosns: false });
    expect(b.gr0(sCR0)).toBe(CLIENTPD | SMCFCFG);
    const id0 = b.gr0(ID0);
    expect(id0 & 0xff).toBe(24); // NUMSMRG
    expect((id0 >>> 9) & 0xf).toBe(15); // NUMSIDB
    expect((id0 >>> 27) & 1).toBe(1); // SMS
    expect((id0 >>> 30) & 1).toBe(1); // S1TS
    expect((id0 >>> 29) & 1).toBe(1); // S2TS
    expect((id0 >>> 28) & 1).toBe(1); // NTS
    expect((id0 >>> 26) & 1).toBe(0); // ATOSNS as asked
    const id1 = b.gr0(ID1);
    expect(id1 & 0xff).toBe(8); // NUMCB
    expect((id1 >>> 28) & 7).toBe(3); // NUMPAGENDXB
    expect(id1 >>> 31).toBe(0); // 4K pages
    const id2 = b.gr0(ID2);
    expect(id2 & 0xf).toBe(5); // IAS 48
    expect((id2 >>> 4) & 0xf).toBe(5); // OAS 48
    expect((id2 >>> 8) & 0xf).toBe(5); // UBS 49
    expect((id2 >>> 12) & 1).toBe(1); // 4K granule
    expect((id2 >>> 14) & 1).toBe(1); // 64K granule
    expect(b.gr0(ID7)).toBe(0x21); // r2p1
    expect(b.gr0(sACR) & (1 << 26)).not.toBe(0); // CACHE_LOCK
    for (let n = 0; n < 24; n++) {
      expect(b.gr0(S2CR(n))).toBe(2 << 16);
      expect(b.gr0(SMR(n))).toBe(0);
    }
    for (let n = 0; n < 8; n++) {
      expect(b.cb(n, SCTLR)).toBe(0);
      expect(b.cb(n, FSR)).toBe(0);
      expect(b.cb(n, ACTLR)).toBe(3); // CPRE | CMTLB
      expect(b.gr1(CBAR(n))).toBe(0);
    }
    expect(b.gr0(sGFSR)).toBe(0);
  });

  it('CLIENTPD at reset is a construction option', () => {
    const b = new Rig({ model: 'smmu-v2', clientPdAtReset: false });
    expect(b.gr0(sCR0) & CLIENTPD).toBe(0);
  });

  it('ID registers are read-only and unknown offsets read zero without throwing', () => {
    const b = new Rig({ model: 'smmu-v2', numCb: 4, numPageNdxb: 2 });
    const id0 = b.gr0(ID0);
    b.setGr0(ID0, 0);
    expect(b.gr0(ID0)).toBe(id0);
    expect(b.gr0(0x3f0)).toBe(0);
    b.setGr0(0x3f0, 0x1234);
    expect(b.gr0(0x3f0)).toBe(0);
    // A bank beyond NUMCB (page NUMPAGE + 5 of 8) and the implementation-defined pages.
    expect(b.mmio.read32(SMMU_BASE + ((8 + 5) << 12))).toBe(0);
    expect(b.mmio.read32(SMMU_BASE + (3 << 12))).toBe(0);
    b.mmio.write32(SMMU_BASE + ((8 + 5) << 12), 1);
    expect(b.mmio.peek32(SMMU_BASE + ID0)).toBe(id0);
  });

  it('places context bank n at page NUMPAGE + n, with 64K pages too', () => {
    const b = new Rig({ model: 'mmu-500', numCb: 4, numPageNdxb: 1, pageSize64k: true });
    expect(b.smmu.size).toBe(2 * 4 * 0x10000);
    b.mmio.write32(SMMU_BASE + (4 + 2) * 0x10000 + 0x030, 0x1234_5678); // CB2 TCR
    expect(b.cb(2, 0x030)).toBe(0x1234_5678);
    expect(b.cb(1, 0x030)).toBe(0);
    b.mmio.write32(SMMU_BASE + 0x10000 + 4 * 3, 0x0001_0005); // GR1 CBAR3
    expect(b.gr1(CBAR(3))).toBe(0x0001_0005);
  });

  it('SMRs read back only the implemented StreamID bits (as Linux probes them)', () => {
    const b = new Rig({ model: 'mmu-500', numSidBits: 10 });
    b.setGr0(SMR(0), 0x0000_ffff);
    expect(b.gr0(SMR(0))).toBe(0x3ff);
    b.setGr0(SMR(0), 0xffff_0000);
    expect(b.gr0(SMR(0))).toBe(0x83ff_0000);
  });

  it('SMMUv1 has no CBA2R or TCR2 and keeps CBAR.IRPTNDX', () => {
    const b = new Rig({ model: 'mmu-401' });
    b.setGr1(CBA2R(0), 1);
    expect(b.gr1(CBA2R(0))).toBe(0);
    b.setCb(0, TCR2, 5);
    expect(b.cb(0, TCR2)).toBe(0);
    b.setGr1(CBAR(1), (2 << 24) | (1 << 16));
    expect(b.gr1(CBAR(1))).toBe((2 << 24) | (1 << 16));
    expect((b.gr0(ID0) >>> 29) & 1).toBe(0); // MMU-401: stage 1 only
  });
});

describe('SMMUv2 flavours: ID registers and the registers each one implements', () => {
  /** The fields Linux's arm_smmu_device_cfg_probe() reads, decoded by hand from the spec layout. */
  function ids(b: Rig) {
    const id0 = b.gr0(ID0);
    const id1 = b.gr0(ID1);
    const id2 = b.gr0(ID2);
    return {
      numSmrg: id0 & 0xff,
      numSidb: (id0 >>> 9) & 0xf,
      ptfs: (id0 >>> 24) & 3,
      atosns: (id0 >>> 26) & 1,
      sms: (id0 >>> 27) & 1,
      nts: (id0 >>> 28) & 1,
      s2ts: (id0 >>> 29) & 1,
      s1ts: (id0 >>> 30) & 1,
      numCb: id1 & 0xff,
      numPageNdxb: (id1 >>> 28) & 7,
      ias: id2 & 0xf,
      oas: (id2 >>> 4) & 0xf,
      ubs: (id2 >>> 8) & 0xf,
      granules: (id2 >>> 12) & 7,
      vmid16: (id2 >>> 15) & 1,
      id7: b.gr0(ID7),
    };
  }

  it('reports each flavour as its construction options say', () => {
    // SMMUv1: AArch32 short+long formats, 40-bit sizes, no UBS/granule/VMID16 fields in ID2.
    expect(ids(new Rig({ model: 'smmu-v1' }))).toEqual({
      numSmrg: 16, numSidb: 15, ptfs: 0, atosns: 0, sms: 1, nts: 0, s2ts: 1, s1ts: 1,
      numCb: 8, numPageNdxb: 2, ias: 2, oas: 2, ubs: 0, granules: 0, vmid16: 0, id7: 0,
    });
    // MMU-401: SMMUv1, stage 1 only, long descriptors only.
    expect(ids(new Rig({ model: 'mmu-401' }))).toEqual({
      numSmrg: 16, numSidb: 15, ptfs: 1, atosns: 0, sms: 1, nts: 0, s2ts: 0, s1ts: 1,
      numCb: 4, numPageNdxb: 2, ias: 2, oas: 2, ubs: 0, granules: 0, vmid16: 0, id7: 0,
    });
    // Generic SMMUv2: every AArch64 granule, 48-bit sizes, 49-bit upstream bus, 16-bit VMIDs.
    expect(ids(new Rig({ model: 'smmu-v2' }))).toEqual({
      numSmrg: 32, numSidb: 15, ptfs: 1, atosns: 0, sms: 1, nts: 1, s2ts: 1, s1ts: 1,
      numCb: 16, numPageNdxb: 3, ias: 5, oas: 5, ubs: 5, granules: 7, vmid16: 1, id7: 0,
    });
    // Qualcomm SMMU-500: an MMU-500 r2p1 with more groups and banks; ATOSNS set, 4K and 64K only.
    expect(ids(new Rig({ model: 'qcom-smmu-500' }))).toEqual({
      numSmrg: 64, numSidb: 15, ptfs: 0, atosns: 1, sms: 1, nts: 1, s2ts: 1, s1ts: 1,
      numCb: 32, numPageNdxb: 6, ias: 5, oas: 5, ubs: 5, granules: 5, vmid16: 0, id7: 0x21,
    });
    // Options override the flavour: stream indexing reports no SMR groups and clears SMS.
    const idx = ids(new Rig({ model: 'smmu-v2', streamMatch: false, numSidBits: 6, numCb: 4, numPageNdxb: 2 }));
    expect([idx.numSmrg, idx.sms, idx.numSidb, idx.numCb]).toEqual([0, 0, 6, 4]);
  });

  it('sCR0 fields an implementation lacks read as zero; SMCFCFG reads one on SMMUv2 only', () => {
    const GCFGFRE = 1 << 4;
    const GCFGFIE = 1 << 5;
    const EXIDENABLE = 1 << 3;
    const VMID16EN = 1 << 31;
    const all = (GCFGFRE | GCFGFIE | EXIDENABLE | VMID16EN | USFCFG | GFRE) >>> 0;
    // MMU-500: no GCFGFRE/GCFGFIE, no EXIDS, no VMID16.
    const mmu500 = new Rig({ model: 'mmu-500' });
    mmu500.setGr0(sCR0, all);
    expect(mmu500.gr0(sCR0)).toBe((USFCFG | GFRE | SMCFCFG) >>> 0);
    // A generic SMMUv2 built with EXIDS has them all.
    const v2 = new Rig({ model: 'smmu-v2', exids: true });
    v2.setGr0(sCR0, all);
    expect(v2.gr0(sCR0)).toBe((all | SMCFCFG) >>> 0);
    // SMMUv1: SMCFCFG is not fixed; CLIENTPD clears like any other writable bit.
    const v1 = new Rig({ model: 'mmu-401' });
    expect(v1.gr0(sCR0)).toBe(CLIENTPD);
    v1.setGr0(sCR0, all);
    expect(v1.gr0(sCR0)).toBe((USFCFG | GFRE | GCFGFRE | GCFGFIE) >>> 0);
  });

  it('GR1: stage-2-only banks keep CBAR.TYPE = stage 2; SMMUv2 drops CBAR.IRPTNDX; CBA2R.VMID16 only with VMID16', () => {
    const b = new Rig({ model: 'smmu-v2', numS2Cb: 2, numCb: 4, numPageNdxb: 2, vmid16: false });
    b.setGr1(CBAR(1), (1 << 16) | 5); // TYPE S1 asked of a stage-2-only bank
    expect(b.gr1(CBAR(1))).toBe(5);
    b.setGr1(CBAR(2), (7 << 24) | (1 << 16) | 5);
    expect(b.gr1(CBAR(2))).toBe((1 << 16) | 5);
    expect((b.gr0(ID1) >>> 16) & 0xff).toBe(2); // NUMS2CB
    b.setGr1(CBA2R(2), 0xabcd_0001);
    expect(b.gr1(CBA2R(2))).toBe(1); // VA64 only
    const w = new Rig({ model: 'smmu-v2', vmid16: true });
    w.setGr1(CBA2R(2), 0xabcd_0001);
    expect(w.gr1(CBA2R(2))).toBe(0xabcd_0001);
  });
});
