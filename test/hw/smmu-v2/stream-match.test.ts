import { describe, expect, it } from 'vitest';
import {
  Rig,
  CLIENTPD,
  GFIE,
  GFRE,
  GFSR_MULTI,
  GFSR_SMCF,
  GFSR_UCBF,
  GFSR_USF,
  RAM_BASE,
  S2CR,
  S2CR_BYPASS,
  S2CR_FAULT,
  SMR,
  SMR_VALID,
  Tables,
  USFCFG,
  sCR0,
  sGFAR,
  sGFSR,
  sGFSYNR0,
  sGFSYNR1,
} from './rig.js';

const DATA = RAM_BASE + 0x10_0000;

/** A rig with bank 0 translating IOVA 0x1000 to DATA. */
function translatingRig(): { b: Rig } {
  const b = new Rig({ model: 'mmu-500', numSmr: 8, numCb: 4, numPageNdxb: 2 });
  const t = Tables.stage1(b);
  t.map(0x1000, DATA);
  b.stage1Bank(0, t.root, 1);
  return { b };
}

describe('SMMUv2 stream mapping', () => {
  it('CLIENTPD=1 bypasses everything, even a stream mapped to fault', () => {
    const b = new Rig({ model: 'mmu-500' });
    b.setGr0(S2CR(0), S2CR_FAULT);
    b.setGr0(SMR(0), SMR_VALID | 5);
    expect(b.gr0(sCR0) & CLIENTPD).toBe(CLIENTPD);
    const w = b.write(5, DATA + 8, [1, 2, 3, 4]);
    expect(w.c).toMatchObject({ status: 'ok', pa: DATA + 8 });
    expect(Array.from(b.memory.read(DATA + 8, 4))).toEqual([1, 2, 3, 4]);
    expect(b.gr0(sGFSR)).toBe(0);
  });

  it('matches StreamIDs through SMR masks', () => {
    const { b } = translatingRig();
    b.mapStream(0, 0x10, 0, 0x3); // SIDs 0x10-0x13
    b.enable();
    for (const sid of [0x10, 0x11, 0x12, 0x13]) {
      const r = b.write(sid, 0x1000 + sid, [sid]);
      expect(r.c).toMatchObject({ status: 'ok', pa: DATA + sid });
    }
    // 0x14 differs in an unmasked bit: unmatched, and USFCFG=0 lets it through untranslated.
    const r = b.write(0x14, DATA + 0x40, [9]);
    expect(r.c).toMatchObject({ status: 'ok', pa: DATA + 0x40 });
    expect(b.gr0(sGFSR)).toBe(0);
  });

  it('unmatched streams fault with USFCFG=1: sGFSR.USF and its syndrome, abort, global interrupt', () => {
    const { b } = translatingRig();
    b.mapStream(0, 0x10, 0);
    b.enable(GFRE | GFIE | USFCFG);
    const r = b.write(0x22, 0x3456_7000, [1], { priv: true });
    expect(r.c?.status).toBe('abort');
    expect(b.gr0(sGFSR)).toBe(GFSR_USF);
    expect(b.gr0(sGFSYNR1) & 0xffff).toBe(0x22);
    const syn0 = b.gr0(sGFSYNR0);
    expect(syn0 & 2).toBe(2); // WNR
    expect(syn0 & 4).toBe(4); // PNU (privileged)
    expect(b.gr0(sGFAR)).toBe(0x3456_7000);
    expect(b.globalLines[0].raised).toBe(0); // raised in a scheduled step
    b.run();
    expect(b.globalLines[0].raised).toBe(1);
    // A second one while USF is recorded only sets MULTI.
    b.read(0x23, 0x1000, 4);
    expect(b.gr0(sGFSR)).toBe((GFSR_USF | GFSR_MULTI) >>> 0);
    expect(b.gr0(sGFSYNR1) & 0xffff).toBe(0x22);
    // Write-1-to-clear.
    b.setGr0(sGFSR, b.gr0(sGFSR));
    expect(b.gr0(sGFSR)).toBe(0);
  });

  it('without GFRE a global fault reads as zero and drops writes', () => {
    const { b } = translatingRig();
    b.enable(USFCFG);
    b.memory.write(DATA, Uint8Array.from([7, 7]));
    const w = b.write(0x30, DATA, [1, 1]);
    expect(w.c?.status).toBe('ok');
    expect(w.c?.detail).toMatch(/RAZ\/WI/);
    expect(Array.from(b.memory.read(DATA, 2))).toEqual([7, 7]);
    const r = b.read(0x30, DATA, 2);
    expect(b.dataOf(r)).toEqual([0, 0]);
    expect(b.gr0(sGFSR)).toBe((GFSR_USF | GFSR_MULTI) >>> 0);
  });

  it('a StreamID matching two valid SMRs is a stream match conflict', () => {
    const { b } = translatingRig();
    b.mapStream(0, 0x10, 0, 0xf);
    b.mapStream(1, 0x12, 0);
    b.enable();
    const r = b.read(0x12, 0x1000, 4);
    expect(r.c?.status).toBe('abort');
    expect(b.gr0(sGFSR)).toBe(GFSR_SMCF);
    expect(b.gr0(sGFSYNR1) & 0xffff).toBe(0x12);
    // 0x11 matches only the first group.
    b.setGr0(sGFSR, GFSR_SMCF);
    expect(b.read(0x11, 0x1000, 4).c?.status).toBe('ok');
    // Invalidating the second SMR resolves the conflict.
    b.setGr0(SMR(1), 0x12);
    expect(b.read(0x12, 0x1000, 4).c).toMatchObject({ status: 'ok', pa: DATA });
  });

  it('S2CR types: bypass passes untranslated, fault is an unidentified stream, CBNDX beyond NUMCB is UCBF', () => {
    const { b } = translatingRig();
    b.setGr0(S2CR(0), S2CR_BYPASS);
    b.setGr0(SMR(0), SMR_VALID | 1);
    b.setGr0(S2CR(1), S2CR_FAULT);
    b.setGr0(SMR(1), SMR_VALID | 2);
    b.setGr0(S2CR(2), 7); // translate, CBNDX 7 of 4
    b.setGr0(SMR(2), SMR_VALID | 3);
    b.enable();
    expect(b.write(1, DATA + 4, [5]).c).toMatchObject({ status: 'ok', pa: DATA + 4 });
    expect(b.read(2, 0x1000, 4).c?.status).toBe('abort');
    expect(b.gr0(sGFSR)).toBe(GFSR_USF);
    b.setGr0(sGFSR, 0xffff_ffff);
    expect(b.read(3, 0x1000, 4).c?.status).toBe('abort');
    expect(b.gr0(sGFSR)).toBe(GFSR_UCBF);
  });

  it('stream indexing: the StreamID selects its S2CR directly', () => {
    const b = new Rig({ model: 'smmu-v2', streamMatch: false, numSidBits: 4, numCb: 2, numPageNdxb: 1 });
    expect(b.gr0(0x020) & 0xff).toBe(0); // NUMSMRG
    const t = Tables.stage1(b);
    t.map(0x1000, DATA);
    b.stage1Bank(1, t.root, 1);
    b.setGr0(S2CR(9), 1); // SID 9 -> bank 1
    b.setGr0(S2CR(3), S2CR_FAULT);
    b.enable();
    expect(b.read(9, 0x1000, 4).c).toMatchObject({ status: 'ok', pa: DATA });
    expect(b.read(3, 0x1000, 4).c?.status).toBe('abort');
    // A StreamID wider than NUMSIDB is unidentified.
    b.setGr0(sGFSR, 0xffff_ffff);
    b.setGr0(sCR0, b.gr0(sCR0) | USFCFG);
    expect(b.read(0x10, 0x1000, 4).c?.status).toBe('abort');
    expect(b.gr0(sGFSR)).toBe(GFSR_USF);
  });

  it('extended StreamIDs: 16-bit ID/MASK with the valid bit in S2CR.EXIDVALID', () => {
    const b = new Rig({ model: 'smmu-v2', exids: true, numCb: 2, numPageNdxb: 1 });
    expect((b.gr0(0x020) >>> 8) & 1).toBe(1); // ID0.EXIDS
    const t = Tables.stage1(b);
    t.map(0x1000, DATA);
    b.stage1Bank(0, t.root, 1);
    b.setGr0(sCR0, (b.gr0(sCR0) & ~CLIENTPD) | (1 << 3) | GFRE | USFCFG); // EXIDENABLE
    b.setGr0(SMR(0), 0xc000); // ID 0xc000, MASK 0
    expect(b.read(0xc000, 0x1000, 4).c?.status).toBe('abort'); // not valid yet
    b.setGr0(sGFSR, 0xffff_ffff);
    b.setGr0(S2CR(0), (1 << 10) | 0); // EXIDVALID, translate to bank 0
    expect(b.read(0xc000, 0x1000, 4).c).toMatchObject({ status: 'ok', pa: DATA });
  });
});
