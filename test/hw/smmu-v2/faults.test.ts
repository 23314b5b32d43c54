import { describe, expect, it } from 'vitest';
import {
  AFE,
  AFF,
  Rig,
  CBAR,
  CBFRSYNRA,
  CFIE,
  CFRE,
  EF,
  FAR,
  FSR,
  FSYNR0,
  HUPCF,
  IPAFAR,
  M,
  MULTI,
  PF,
  RAM_BASE,
  SCTLR,
  TF,
  TRE,
  Tables,
} from './rig.js';

const PA1 = RAM_BASE + 0x20_0000;

function rig(sctlr = M | TRE | AFE | CFRE | CFIE): { b: Rig; t: Tables } {
  const b = new Rig({ model: 'mmu-500', numSmr: 8, numCb: 8, numPageNdxb: 3 });
  const t = Tables.stage1(b);
  t.map(0x1000, PA1);
  b.stage1Bank(3, t.root, 1, sctlr);
  b.mapStream(0, 0x21, 3);
  b.mapStream(1, 0x22, 3);
  b.enable();
  return { b, t };
}

/** FSR.FORMAT of an AArch64 context. */
const FORMAT_AARCH64 = 2 << 9;

describe('SMMUv2 context faults, terminate mode (SCTLR.CFCFG=0)', () => {
  it('an unmapped address terminates with a fault and latches FSR/FAR/FSYNR0/CBFRSYNRA', () => {
    const { b } = rig();
    const w = b.write(0x21, 0x7654_3218, [1, 2], { priv: true });
    expect(w.c?.status).toBe('fault');
    expect(b.cb(3, FSR)).toBe(TF | FORMAT_AARCH64);
    expect(b.cb64(3, FAR)).toBe(0x7654_3218n);
    const syn = b.cb(3, FSYNR0);
    // Level 0 entry 0 leads to the tables of 0x1000; level 1 entry 1 is empty: PLVL 1.
    // WNR, PNU (privileged), NSATTR.
    expect(syn & 3).toBe(1);
    expect(syn & (1 << 4)).toBe(1 << 4);
    expect(syn & (1 << 5)).toBe(1 << 5);
    expect(syn & (1 << 6)).toBe(0);
    expect(syn & (1 << 8)).toBe(1 << 8);
    expect(b.gr1(CBFRSYNRA(3))).toBe(0x21);
  });

  it('PLVL names the level of the missing entry; an instruction read sets IND', () => {
    const { b, t } = rig();
    t.map(0x3000, PA1, { xn: true });
    expect(b.read(0x21, 0x2000, 4).c?.status).toBe('fault'); // level 3 entry missing (tables exist)
    expect(b.cb(3, FSR)).toBe(TF | FORMAT_AARCH64);
    expect(b.cb(3, FSYNR0) & 3).toBe(3);
    expect(b.cb(3, FSYNR0) & (1 << 4)).toBe(0);
    b.setCb(3, FSR, b.cb(3, FSR));
    expect(b.read(0x21, 0x3000, 4, { exec: true }).c?.status).toBe('fault');
    expect(b.cb(3, FSR)).toBe(PF | FORMAT_AARCH64);
    expect(b.cb(3, FSYNR0) & (1 << 6)).toBe(1 << 6);
  });

  it('access flag and external abort on the walk', () => {
    const { b, t } = rig();
    t.map(0x4000, PA1, { af: false });
    expect(b.read(0x21, 0x4000, 4).c?.status).toBe('fault');
    expect(b.cb(3, FSR)).toBe(AFF | FORMAT_AARCH64);
    b.setCb(3, FSR, 0xffff_ffff);
    // Point the level-0 table at a hole in the address map.
    b.setCb64(3, 0x020, (1n << 48n) | 0x4000_0000n);
    expect(b.read(0x21, 0x1000, 4).c?.status).toBe('fault');
    expect(b.cb(3, FSR)).toBe(EF | FORMAT_AARCH64);
    expect(b.cb(3, FSYNR0) & (1 << 10)).toBe(1 << 10); // PTWF
  });

  it('raises the context interrupt (bank 3 on line 3) in a scheduled step when CFIE is set', () => {
    const { b } = rig();
    b.read(0x21, 0x9000, 4);
    expect(b.contextLines[3].raised).toBe(0);
    b.run();
    expect(b.contextLines[3].raised).toBe(1);
    expect(b.contextLines.filter((l, i) => i !== 3 && l.raised > 0)).toEqual([]);
    // Clearing FSR lowers the line; the next fault raises it again.
    b.setCb(3, FSR, b.cb(3, FSR));
    b.run();
    b.read(0x21, 0x9000, 4);
    b.run();
    expect(b.contextLines[3].raised).toBe(2);
  });

  it('no interrupt without CFIE; no abort without CFRE (RAZ/WI)', () => {
    const { b } = rig(M | TRE | AFE);
    b.memory.write(PA1, Uint8Array.from([5]));
    const r = b.read(0x21, 0x9000, 4);
    expect(r.c?.status).toBe('ok');
    expect(b.dataOf(r)).toEqual([0, 0, 0, 0]);
    expect(r.c?.detail).toMatch(/RAZ\/WI.*CFRE=0/);
    b.run();
    expect(b.contextLines[3].raised).toBe(0);
    expect(b.cb(3, FSR)).toBe(TF | FORMAT_AARCH64);
  });

  it('a second fault while one is latched sets MULTI and keeps the first syndrome', () => {
    const { b } = rig(M | CFRE | CFIE | HUPCF);
    b.read(0x21, 0x9000, 4);
    b.write(0x22, 0xa000, [1]);
    expect(b.cb(3, FSR)).toBe((TF | MULTI | FORMAT_AARCH64) >>> 0);
    expect(b.cb64(3, FAR)).toBe(0x9000n);
    expect(b.gr1(CBFRSYNRA(3))).toBe(0x21);
    b.run();
    // Write-1-to-clear: clearing TF alone leaves MULTI and the line high, which signals again.
    b.setCb(3, FSR, TF);
    expect(b.cb(3, FSR)).toBe((MULTI | FORMAT_AARCH64) >>> 0);
    b.run();
    expect(b.contextLines[3].raised).toBe(2);
    b.setCb(3, FSR, MULTI);
    expect(b.cb(3, FSR)).toBe(0);
  });

  it('HUPCF=0: while a fault is outstanding the bank terminates other transactions; HUPCF=1 lets them through', () => {
    const { b } = rig(M | CFRE | CFIE);
    expect(b.read(0x21, 0x9000, 4).c?.status).toBe('fault');
    const other = b.read(0x22, 0x1000, 4); // mapped, from another master
    expect(other.c?.status).toBe('abort');
    expect(other.c?.detail).toMatch(/HUPCF=0/);
    expect(b.cb(3, FSR)).toBe(TF | FORMAT_AARCH64); // not a fault of its own
    b.setCb(3, FSR, TF);
    expect(b.read(0x22, 0x1000, 4).c?.status).toBe('ok');
    b.setCb(3, SCTLR, M | CFRE | CFIE | HUPCF);
    b.read(0x21, 0x9000, 4);
    expect(b.read(0x22, 0x1000, 4).c?.status).toBe('ok');
    expect(b.smmu.stats.terminatedBehindFault).toBe(1);
  });

  it('a nested stage 2 fault is recorded in the stage 2 bank with S1CBNDX and IPAFAR', () => {
    const b = new Rig({ model: 'mmu-500', numCb: 4, numPageNdxb: 2 });
    const s2 = Tables.stage2(b);
    const s1 = Tables.stage1(b);
    for (let pa = RAM_BASE + 0x0800_0000; pa < RAM_BASE + 0x0801_0000; pa += 0x1000) s2.map(pa, pa);
    s1.map(0x7000, 0x6_0000_0000); // an IPA stage 2 does not map
    b.stage2Bank(2, s2.root, 3);
    b.stage1Bank(1, s1.root, 4);
    b.setGr1(CBAR(1), (3 << 16) | (2 << 8));
    b.mapStream(0, 9, 1);
    b.enable();
    expect(b.read(9, 0x7010, 4).c?.status).toBe('fault');
    expect(b.cb(1, FSR)).toBe(0);
    expect(b.cb(2, FSR) & TF).toBe(TF);
    expect(b.cb64(2, FAR)).toBe(0x6_0000_0010n);
    expect(b.cb64(2, IPAFAR)).toBe(0x6_0000_0010n);
    expect((b.cb(2, FSYNR0) >>> 16) & 0xff).toBe(1); // S1CBNDX
    b.run();
    expect(b.contextLines[2].raised).toBe(1);
  });
});
