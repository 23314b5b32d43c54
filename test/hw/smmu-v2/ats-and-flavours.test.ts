import { describe, expect, it } from 'vitest';
import {
  ATS1PR,
  ATS1PW,
  ATSR,
  Rig,
  CBAR,
  CBAR_S1,
  CFIE,
  CFRE,
  FSR,
  M,
  PAR,
  RAM_BASE,
  S2CR,
  S2CR_BYPASS,
  S2CR_FAULT,
  SCTLR,
  SMR,
  SMR_VALID,
  TCR,
  TTBR0,
  Tables,
} from './rig.js';

const PA1 = RAM_BASE + 0x20_0000;

describe('SMMUv2 address translation operations (ATS1PR/ATS1PW + PAR)', () => {
  function rig(): { b: Rig; t: Tables } {
    const b = new Rig({ model: 'mmu-500', atosns: false, numCb: 4, numPageNdxb: 2 });
    const t = Tables.stage1(b);
    t.map(0x4000_0000, PA1 + 0x5000);
    t.map(0x4000_1000, PA1, { ro: true });
    b.stage1Bank(1, t.root, 2);
    b.mapStream(0, 1, 1);
    b.enable();
    return { b, t };
  }

  it('translates a VA into PAR after ATSR.ACTIVE clears', () => {
    const { b } = rig();
    b.setCb64(1, ATS1PR, 0x4000_0000n);
    expect(b.cb(1, ATSR) & 1).toBe(1);
    b.run();
    expect(b.cb(1, ATSR) & 1).toBe(0);
    const par = b.cb64(1, PAR);
    expect(par & 1n).toBe(0n); // F
    expect(par & 0xff_ffff_f000n).toBe(BigInt(PA1 + 0x5000)); // PA[39:12], as Linux reads it
    expect(par >> 56n).toBe(0xffn); // MAIR0 attribute 0
  });

  it('reports a fault in PAR (F=1) without touching FSR; ATS1PW sees write permission', () => {
    const { b } = rig();
    b.setCb64(1, ATS1PR, 0x5000_0000n);
    b.run();
    let par = b.cb64(1, PAR);
    expect(par & 1n).toBe(1n);
    expect(par & 2n).toBe(2n); // TF
    expect(b.cb(1, FSR)).toBe(0);
    b.setCb64(1, ATS1PR, 0x4000_1000n);
    b.run();
    expect(b.cb64(1, PAR) & 1n).toBe(0n);
    b.setCb64(1, ATS1PW, 0x4000_1000n);
    b.run();
    par = b.cb64(1, PAR);
    expect(par & 1n).toBe(1n);
    expect(par & 8n).toBe(8n); // PF
    expect((par >> 32n) & 3n).toBe(3n); // PLVL
  });

  it('takes a sign-extended 64-bit VA for the TTBR1 region', () => {
    const b = new Rig({ model: 'smmu-v2', numCb: 2, numPageNdxb: 1 });
    const t0 = Tables.stage1(b);
    const t1 = Tables.stage1(b);
    t1.map(0xffff_f000_0000, PA1 + 0x7000);
    b.stage1Bank(0, t0.root, 1);
    b.setCb(0, TCR, (2 << 30) | (16 << 16) | 16); // TG1 4K, T1SZ 16, T0SZ 16
    b.setCb64(0, 0x028, BigInt(t1.root));
    b.setCb64(0, ATS1PR, 0xffff_ffff_f000_0000n);
    b.run();
    const par = b.cb64(0, PAR);
    expect(par & 1n).toBe(0n);
    expect(par & 0xff_ffff_f000n).toBe(BigInt(PA1 + 0x7000));
  });

  it('is ignored where ID0.ATOSNS says address translation operations are not supported', () => {
    const b = new Rig({ model: 'mmu-500', numCb: 4, numPageNdxb: 2 }); // MMU-500 default: ATOSNS = 1
    expect((b.gr0(0x020) >>> 26) & 1).toBe(1);
    b.setCb64(1, ATS1PR, 0x4000_0000n);
    expect(b.cb(1, ATSR)).toBe(0);
    b.run();
    expect(b.cb64(1, PAR)).toBe(0n);
  });
});

describe('SMMUv2 flavours', () => {
  it('Qualcomm SMMU-500 with the firmware S2CR quirk: bypass writes read back as fault, fault writes are dropped', () => {
    const b = new Rig({ model: 'qcom-smmu-500', qcomS2crBypassQuirk: true, s2crTypeAtReset: 'bypass' });
    const last = 63;
    b.setGr0(S2CR(last), S2CR_BYPASS | 0xff);
    expect((b.gr0(S2CR(last)) >>> 16) & 3).toBe(2); // what arm-smmu-qcom probes for
    b.setGr0(S2CR(0), S2CR_FAULT);
    expect((b.gr0(S2CR(0)) >>> 16) & 3).toBe(1); // unchanged from reset
  });

  it('Qualcomm SMMU-500 without the quirk keeps what is written, and its probe-time accesses work', () => {
    const b = new Rig({ model: 'qcom-smmu-500' });
    b.setGr0(S2CR(63), S2CR_BYPASS | 0xff);
    expect(b.gr0(S2CR(63))).toBe(S2CR_BYPASS | 0xff);
    expect(b.gr0(SMR(5))).toBe(0);
    b.setCb(31, SCTLR, 0);
    b.setGr1(CBAR(31), CBAR_S1);
    expect(b.gr1(CBAR(31))).toBe(CBAR_S1);
    b.setCb(4, 0x004, 0x303); // ACTLR prefetch settings
    expect(b.cb(4, 0x004)).toBe(0x303);
  });

  it('MMU-401 (SMMUv1) signals a bank\'s faults on the context interrupt CBAR.IRPTNDX names', () => {
    const b = new Rig({ model: 'mmu-401' });
    const root = b.alloc(0x10000);
    b.setGr1(CBAR(2), CBAR_S1 | (1 << 24)); // IRPTNDX 1
    b.setCb(2, TCR, (1 << 23) | (1 << 14) | 24);
    b.setCb64(2, TTBR0, BigInt(root));
    b.setCb(2, SCTLR, M | CFRE | CFIE);
    b.setGr0(S2CR(0), 2);
    b.setGr0(SMR(0), SMR_VALID | 4);
    b.enable();
    expect(b.read(4, 0x1_0000, 4).c?.status).toBe('fault');
    b.run();
    expect(b.contextLines[1].raised).toBe(1);
    expect(b.contextLines[2].raised).toBe(0);
  });
});
