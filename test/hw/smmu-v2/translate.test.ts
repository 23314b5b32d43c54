import { describe, expect, it } from 'vitest';
import {
  ASIDPNE,
  Rig,
  CBA2R,
  CBAR,
  CBAR_NESTED,
  CBAR_S1,
  CFIE,
  CFRE,
  FSR,
  M,
  RAM_BASE,
  SCTLR,
  TCR,
  TCR2,
  TLBIALL,
  TLBIASID,
  TLBIALLNSNH,
  TLBIIPAS2,
  TLBIVA,
  TLBIVMID,
  TLBSTATUS,
  TLBSYNC,
  TTBR0,
  TTBR1,
  Tables,
  sTLBGSTATUS,
  sTLBGSYNC,
} from './rig.js';

const PA1 = RAM_BASE + 0x20_0000;
const PA2 = RAM_BASE + 0x40_0000;

function s1Rig(model: 'mmu-500' | 'smmu-v2' = 'mmu-500'): { b: Rig; t: Tables } {
  const b = new Rig({ model, numSmr: 8, numCb: 8, numPageNdxb: 3 });
  const t = Tables.stage1(b);
  b.stage1Bank(0, t.root, 5);
  b.mapStream(0, 0x40, 0);
  b.enable();
  return { b, t };
}

describe('SMMUv2 translation through context banks', () => {
  it('stage 1: DMA writes land at the translated address and reads return the bytes', () => {
    const { b, t } = s1Rig();
    t.map(0x1234_5000, PA1);
    const w = b.write(0x40, 0x1234_5010, [0xde, 0xad, 0xbe, 0xef]);
    expect(w.c).toMatchObject({ status: 'ok', pa: PA1 + 0x10 });
    expect(Array.from(b.memory.read(PA1 + 0x10, 4))).toEqual([0xde, 0xad, 0xbe, 0xef]);
    const r = b.read(0x40, 0x1234_5010, 4);
    expect(b.dataOf(r)).toEqual([0xde, 0xad, 0xbe, 0xef]);
    expect(b.smmu.tlb.stats.hits).toBeGreaterThan(0);
  });

  it('stage 1 blocks and transactions that cross pages', () => {
    const { b, t } = s1Rig();
    t.map(0x4000_0000, PA2, { level: 2 }); // 2M block
    expect(b.write(0x40, 0x4001_2340, [1]).c).toMatchObject({ status: 'ok', pa: PA2 + 0x1_2340 });
    // Two pages mapped to non-contiguous frames: one 16-byte transaction across the boundary.
    t.map(0x8000, PA1 + 0x3000);
    t.map(0x9000, PA1 + 0x1000);
    const bytes = Array.from({ length: 16 }, (_, i) => i + 1);
    const w = b.write(0x40, 0x8ff8, bytes);
    expect(w.c?.status).toBe('ok');
    expect(Array.from(b.memory.read(PA1 + 0x3ff8, 8))).toEqual(bytes.slice(0, 8));
    expect(Array.from(b.memory.read(PA1 + 0x1000, 8))).toEqual(bytes.slice(8));
    expect(b.dataOf(b.read(0x40, 0x8ff8, 16))).toEqual(bytes);
  });

  it('stage 1 permissions: read-only pages fault writes, privileged-only pages fault unprivileged accesses', () => {
    const { b, t } = s1Rig();
    t.map(0x1000, PA1, { ro: true });
    t.map(0x2000, PA1 + 0x1000, { privOnly: true });
    expect(b.read(0x40, 0x1000, 4).c?.status).toBe('ok');
    expect(b.write(0x40, 0x1000, [1]).c?.status).toBe('fault');
    b.setCb(0, FSR, 0xffff_ffff);
    expect(b.read(0x40, 0x2000, 4).c?.status).toBe('fault');
    b.setCb(0, FSR, 0xffff_ffff);
    expect(b.read(0x40, 0x2000, 4, { priv: true }).c?.status).toBe('ok');
  });

  it('stage 2: IPA to PA with VTCR, concatenated level 1 tables', () => {
    const b = new Rig({ model: 'mmu-500', numCb: 4, numPageNdxb: 2 });
    const t = Tables.stage2(b);
    t.map(0x80_1234_5000, PA1); // bit 39 set: lives in the second concatenated table
    t.map(0x3000, PA2, { nowrite: true });
    b.stage2Bank(1, t.root, 9);
    b.mapStream(0, 7, 1);
    b.enable();
    expect(b.write(7, 0x80_1234_5008, [3, 4]).c).toMatchObject({ status: 'ok', pa: PA1 + 8 });
    expect(Array.from(b.memory.read(PA1 + 8, 2))).toEqual([3, 4]);
    expect(b.read(7, 0x3000, 4).c?.status).toBe('ok');
    expect(b.write(7, 0x3000, [1]).c?.status).toBe('fault');
  });

  it('nested: stage 1 in one bank, stage 2 in the bank CBAR.CBNDX names', () => {
    const b = new Rig({ model: 'mmu-500', numCb: 4, numPageNdxb: 2 });
    const s2 = Tables.stage2(b);
    const s1 = new Tables(b, b.alloc(), 1, 0);
    // Stage 1 tables live at IPAs equal to their PAs (identity-map them in stage 2).
    const ipaOut = 0x5_0000_0000;
    s1.map(0x7000, ipaOut);
    for (let pa = RAM_BASE + 0x0800_0000; pa < RAM_BASE + 0x0801_0000; pa += 0x1000) s2.map(pa, pa);
    s2.map(ipaOut, PA2);
    b.stage2Bank(2, s2.root, 3);
    b.stage1Bank(1, s1.root, 4);
    b.setGr1(CBAR(1), CBAR_NESTED | (2 << 8));
    b.mapStream(0, 9, 1);
    b.enable();
    expect(b.write(9, 0x7004, [0x5a]).c).toMatchObject({ status: 'ok', pa: PA2 + 4 });
    expect(b.memory.read8(PA2 + 4)).toBe(0x5a);
  });

  it('TTBR1 region: with a 49-bit upstream bus, bit 48 selects TTBR1', () => {
    const b = new Rig({ model: 'mmu-500', numCb: 2, numPageNdxb: 1 });
    const t0 = Tables.stage1(b);
    const t1 = Tables.stage1(b);
    t0.map(0x1000, PA1);
    t1.map(0xffff_f000_0000, PA2); // VA 0xffff_ffff_f000_0000: TTBR1 tables index VA[47:0]
    b.stage1Bank(0, t0.root, 1);
    // T1SZ = 16, TG1 = 4K, EPD1 clear.
    b.setCb(0, TCR, (2 << 30) | (16 << 16) | 16);
    b.setCb64(0, TTBR1, BigInt(t1.root));
    b.mapStream(0, 1, 0);
    b.enable();
    expect(b.write(1, 0x1000, [1]).c).toMatchObject({ status: 'ok', pa: PA1 });
    // 0xffff_ffff_f000_0000 sign-extended arrives on the 49-bit bus as 0x1_ffff_f000_0000.
    expect(b.write(1, 0x1_ffff_f000_0000, [2]).c).toMatchObject({ status: 'ok', pa: PA2 });
    // The FAR of a TTBR1-region fault reads sign-extended.
    expect(b.read(1, 0x1_ffff_e000_0000, 4).c?.status).toBe('fault');
    expect(b.cb64(0, 0x060)).toBe(0xffff_ffff_e000_0000n);
  });

  it('the TLB stays stale until TLBIVA is completed by TLBSYNC', () => {
    const { b, t } = s1Rig();
    t.map(0x6000, PA1);
    expect(b.write(0x40, 0x6000, [1]).c?.pa).toBe(PA1);
    t.map(0x6000, PA2); // software changes the PTE
    expect(b.write(0x40, 0x6000, [2]).c?.pa).toBe(PA1); // stale
    b.setCb64(0, TLBIVA, (5n << 48n) | BigInt(0x6000 >> 12));
    expect(b.write(0x40, 0x6000, [3]).c?.pa).toBe(PA1); // not synced yet
    b.setCb(0, TLBSYNC, 0);
    expect(b.cb(0, TLBSTATUS) & 1).toBe(1);
    b.run();
    expect(b.cb(0, TLBSTATUS) & 1).toBe(0);
    expect(b.write(0x40, 0x6000, [4]).c?.pa).toBe(PA2);
  });

  it('TLBIVA for another ASID or another page leaves the entry alone; TLBIASID and TLBIALL remove it', () => {
    const { b, t } = s1Rig();
    t.map(0x6000, PA1);
    b.write(0x40, 0x6000, [1]);
    t.map(0x6000, PA2);
    b.setCb64(0, TLBIVA, (6n << 48n) | 6n); // wrong ASID
    b.setCb64(0, TLBIVA, (5n << 48n) | 7n); // wrong page
    b.setCb(0, TLBSYNC, 0);
    b.run();
    expect(b.write(0x40, 0x6000, [1]).c?.pa).toBe(PA1);
    b.setCb(0, TLBIASID, 5);
    b.setCb(0, TLBSYNC, 0);
    b.run();
    expect(b.write(0x40, 0x6000, [1]).c?.pa).toBe(PA2);
    t.map(0x6000, PA1);
    b.setCb(0, TLBIALL, 0);
    b.setCb(0, TLBSYNC, 0);
    b.run();
    expect(b.write(0x40, 0x6000, [1]).c?.pa).toBe(PA1);
  });

  it('TLBIVAA ignores the ASID; TLBIVA of any ASID removes a global (nG=0) entry for its VA', () => {
    const TLBIVAA = 0x608;
    const { b, t } = s1Rig();
    t.map(0x6000, PA1);
    t.map(0x7000, PA1, { global: true });
    expect(b.write(0x40, 0x6000, [1]).c?.pa).toBe(PA1);
    expect(b.write(0x40, 0x7000, [1]).c?.pa).toBe(PA1);
    t.map(0x6000, PA2);
    t.map(0x7000, PA2, { global: true });
    b.setCb64(0, TLBIVAA, (9n << 48n) | 6n); // the ASID field is not looked at
    b.setCb64(0, TLBIVA, (6n << 48n) | 7n); // another ASID: only the global entry of 0x7000 goes
    b.setCb(0, TLBSYNC, 0);
    b.run();
    expect(b.write(0x40, 0x6000, [1]).c?.pa).toBe(PA2);
    expect(b.write(0x40, 0x7000, [1]).c?.pa).toBe(PA2);
  });

  it('a 32-bit TLBIVA pair (high word first) works like one 64-bit write', () => {
    const { b, t } = s1Rig();
    t.map(0x6000, PA1);
    b.write(0x40, 0x6000, [1]);
    t.map(0x6000, PA2);
    b.setCb(0, TLBIVA + 4, 5 << 16);
    b.setCb(0, TLBIVA, 6);
    b.setCb(0, TLBSYNC, 0);
    b.run();
    expect(b.write(0x40, 0x6000, [1]).c?.pa).toBe(PA2);
  });

  it('stage 2: TLBIIPAS2 + TLBSYNC, and GR0 TLBIVMID needs the global sync, not the bank sync', () => {
    const b = new Rig({ model: 'mmu-500', numCb: 4, numPageNdxb: 2 });
    const t = Tables.stage2(b);
    t.map(0x3000, PA1);
    b.stage2Bank(1, t.root, 9);
    b.mapStream(0, 7, 1);
    b.enable();
    expect(b.write(7, 0x3000, [1]).c?.pa).toBe(PA1);
    t.map(0x3000, PA2);
    b.setCb64(1, TLBIIPAS2, 3n);
    b.setCb(1, TLBSYNC, 0);
    b.run();
    expect(b.write(7, 0x3000, [1]).c?.pa).toBe(PA2);
    t.map(0x3000, PA1);
    b.setGr0(TLBIVMID, 9);
    b.setCb(1, TLBSYNC, 0); // the wrong sync
    b.run();
    expect(b.write(7, 0x3000, [1]).c?.pa).toBe(PA2);
    b.setGr0(sTLBGSYNC, 0);
    expect(b.gr0(sTLBGSTATUS) & 1).toBe(1);
    b.run();
    expect(b.gr0(sTLBGSTATUS) & 1).toBe(0);
    expect(b.write(7, 0x3000, [1]).c?.pa).toBe(PA1);
  });

  it('each TLBSYNC completes the invalidations written before it, and only those, when several are in flight', () => {
    const { b, t } = s1Rig();
    const at = (ns: number): void => {
      b.scheduler.schedule(ns - b.scheduler.now, () => {});
      b.scheduler.runSyncUntilIdle(ns - b.scheduler.now);
    };
    const pages = [0x6000, 0x7000, 0x8000];
    for (let round = 0; round < 3; round++) {
      // Cache the three pages, then point them elsewhere (stale until invalidated).
      for (const va of pages) t.map(va, PA1);
      b.setCb(0, TLBIASID, 5);
      b.setCb(0, TLBSYNC, 0);
      b.run();
      for (const va of pages) expect(b.write(0x40, va, [1]).c?.pa).toBe(PA1);
      for (const va of pages) t.map(va, PA2);
      const t0 = b.scheduler.now;
      b.setCb64(0, TLBIVA, (5n << 48n) | BigInt(0x6000 >> 12));
      b.setCb(0, TLBSYNC, 0); // completes at t0 + 200
      at(t0 + 100);
      b.setCb64(0, TLBIVA, (5n << 48n) | BigInt(0x7000 >> 12));
      b.setCb64(0, TLBIVA, (5n << 48n) | BigInt(0x8000 >> 12));
      b.setCb(0, TLBSYNC, 0); // completes at t0 + 300
      at(t0 + 250);
      expect(b.cb(0, TLBSTATUS) & 1).toBe(1);
      expect(b.write(0x40, 0x6000, [2]).c?.pa).toBe(PA2);
      expect(b.write(0x40, 0x7000, [2]).c?.pa).toBe(PA1);
      expect(b.write(0x40, 0x8000, [2]).c?.pa).toBe(PA1);
      b.run();
      expect(b.cb(0, TLBSTATUS) & 1).toBe(0);
      for (const va of pages) expect(b.write(0x40, va, [3]).c?.pa).toBe(PA2);
    }
  });

  it('a sync written before a reset does not complete (or clear the status of) one written after it', () => {
    const { b } = s1Rig();
    const at = (ns: number): void => {
      b.scheduler.schedule(ns - b.scheduler.now, () => {});
      b.scheduler.runSyncUntilIdle(ns - b.scheduler.now);
    };
    b.setCb(0, TLBSYNC, 0);
    b.setGr0(sTLBGSYNC, 0);
    at(100);
    b.smmu.reset();
    b.setCb(0, TLBSYNC, 0);
    b.setGr0(sTLBGSYNC, 0);
    // Past the first pair's completion (200 ns after it was written), before the second pair's.
    at(250);
    expect(b.cb(0, TLBSTATUS) & 1).toBe(1);
    expect(b.gr0(sTLBGSTATUS) & 1).toBe(1);
    b.run();
    expect(b.cb(0, TLBSTATUS) & 1).toBe(0);
    expect(b.gr0(sTLBGSTATUS) & 1).toBe(0);
  });

  it('TLBIALLNSNH drops everything after sTLBGSYNC', () => {
    const { b, t } = s1Rig();
    t.map(0x6000, PA1);
    b.write(0x40, 0x6000, [1]);
    t.map(0x6000, PA2);
    b.setGr0(TLBIALLNSNH, 0);
    b.setGr0(sTLBGSYNC, 0);
    b.run();
    expect(b.write(0x40, 0x6000, [1]).c?.pa).toBe(PA2);
  });

  it('banks sharing a VMID and ASID share TLB entries unless SCTLR.ASIDPNE makes the ASID private', () => {
    const b = new Rig({ model: 'mmu-500', numCb: 4, numPageNdxb: 2 });
    const ta = Tables.stage1(b);
    const tb = Tables.stage1(b);
    ta.map(0x6000, PA1);
    tb.map(0x6000, PA2);
    b.stage1Bank(0, ta.root, 3, M | CFRE);
    b.stage1Bank(1, tb.root, 3, M | CFRE);
    b.mapStream(0, 1, 0);
    b.mapStream(1, 2, 1);
    b.enable();
    expect(b.write(1, 0x6000, [1]).c?.pa).toBe(PA1);
    expect(b.write(2, 0x6000, [1]).c?.pa).toBe(PA1); // the ASID conflict a driver must avoid
    b.setCb(0, SCTLR, M | CFRE | ASIDPNE);
    b.setCb(1, SCTLR, M | CFRE | ASIDPNE);
    b.setGr0(TLBIALLNSNH, 0);
    b.setGr0(sTLBGSYNC, 0);
    b.run();
    expect(b.write(1, 0x6000, [1]).c?.pa).toBe(PA1);
    expect(b.write(2, 0x6000, [1]).c?.pa).toBe(PA2);
  });

  it('SCTLR.M=0 passes the bank\'s transactions untranslated', () => {
    const { b } = s1Rig();
    b.setCb(0, SCTLR, CFIE | CFRE);
    expect(b.write(0x40, PA1 + 0x20, [9]).c).toMatchObject({ status: 'ok', pa: PA1 + 0x20 });
  });

  it('a CBAR.TYPE the SMMU does not implement is a global invalid-context fault', () => {
    const b = new Rig({ model: 'mmu-401' }); // stage 1 only
    b.setGr1(CBAR(0), 0); // stage 2
    b.setCb(0, SCTLR, M | CFRE);
    b.mapStream(0, 1, 0);
    b.enable((1 << 1) | (1 << 2)); // GFRE, GFIE only: configuration faults follow GCFGFRE here
    expect(b.read(1, 0x1000, 4).c?.detail).toMatch(/RAZ\/WI.*GCFGFRE=0/);
    expect(b.gr0(0x048)).toBe(1); // sGFSR.ICF
    b.setGr0(0x048, 1);
    b.enable((1 << 1) | (1 << 2) | (1 << 4) | (1 << 5)); // + GCFGFRE, GCFGFIE
    expect(b.read(1, 0x1000, 4).c?.status).toBe('abort');
    expect(b.gr0(0x048)).toBe(1);
  });

  it('AArch32 long-descriptor contexts (CBA2R.VA64=0, TCR.EAE=1) translate 32-bit inputs', () => {
    const b = new Rig({ model: 'smmu-v2', numCb: 2, numPageNdxb: 1 });
    const t = new Tables(b, b.alloc(), 1, 1); // 32-bit input starts at level 1
    t.map(0x8765_4000, PA1);
    b.setGr1(CBA2R(0), 0);
    b.setGr1(CBAR(0), CBAR_S1);
    b.setCb(0, TCR, 0x8000_0000 | (1 << 23)); // EAE, EPD1, T0SZ = 0
    b.setCb64(0, TTBR0, BigInt(t.root));
    b.setCb(0, TCR2, 0);
    b.setCb(0, SCTLR, M | CFRE);
    b.mapStream(0, 2, 0);
    b.enable();
    expect(b.write(2, 0x8765_4321, [7]).c).toMatchObject({ status: 'ok', pa: PA1 + 0x321 });
    expect(b.cb(0, TCR2)).toBe(0);
  });

  it('MMU-401 (SMMUv1) translates with the AArch64 64K-granule format Linux uses on it', () => {
    const b = new Rig({ model: 'mmu-401' });
    // One level-2 64K table (42-bit input would start at level 2 with 13 index bits per level).
    const root = b.alloc(0x10000);
    const l3 = b.alloc(0x10000);
    const va = 0x12_3456_0000;
    const idx2 = Math.floor(va / 2 ** 29) % 8192;
    const idx3 = Math.floor(va / 2 ** 16) % 8192;
    b.memory.write32(root + 8 * idx2, (l3 | 3) >>> 0);
    b.memory.write32(root + 8 * idx2 + 4, 0);
    b.memory.write32(l3 + 8 * idx3, ((PA2 & 0xffff_0000) | (1 << 10) | (1 << 6) | 3) >>> 0);
    b.setGr1(CBAR(0), CBAR_S1);
    b.setCb(0, TCR, (1 << 23) | (1 << 14) | 24); // EPD1, TG0 = 64K, T0SZ = 24 (40 bits)
    b.setCb64(0, TTBR0, BigInt(root));
    b.setCb(0, SCTLR, M | CFRE);
    b.mapStream(0, 3, 0);
    b.enable();
    expect(b.write(3, va + 0x1234, [1]).c).toMatchObject({ status: 'ok', pa: PA2 + 0x1234 });
  });

  it('TCR2.PASIZE caps the output: an output beyond it is an address size fault', () => {
    const { b, t } = s1Rig();
    t.map(0x1000, 0x10_0000_0000); // 2^36: beyond a 32-bit output
    b.setCb(0, TCR2, (7 << 15) | 0); // PASIZE = 32 bits
    expect(b.read(0x40, 0x1000, 4).c?.status).toBe('fault');
    expect(b.cb(0, FSR) & (1 << 7)).toBe(1 << 7); // ASF
    expect(b.cb(0, TCR2)).toBe(7 << 15);
  });
});

describe('stage 1 with both translation table walks disabled (TCR.EPD0 = EPD1 = 1)', () => {
  for (const model of ['smmu-v1', 'mmu-401', 'smmu-v2', 'mmu-500', 'qcom-smmu-500'] as const) {
    it(`${model}: a TLB miss is a translation fault without a walk, and the port does not throw`, () => {
      const b = new Rig({ model, numSmr: 8, numCb: 8, numPageNdxb: 3 });
      const t = Tables.stage1(b);
      t.map(0x1000, PA1);
      b.stage1Bank(0, t.root, 5);
      // EAE keeps the long-descriptor format on the SMMUv1 flavours; EPD0 and EPD1 disable both regions.
      b.setCb(0, TCR, (b.cb(0, TCR) | 0x8000_0000 | (1 << 7) | (1 << 23)) >>> 0);
      b.mapStream(0, 0x40, 0);
      b.enable();
      const reads = b.smmu.tlb.stats.misses;
      let w: ReturnType<Rig['write']> | undefined;
      expect(() => {
        w = b.write(0x40, 0x1000, [1, 2, 3, 4]);
      }).not.toThrow();
      expect(w!.c?.status).toBe('fault');
      expect(b.cb(0, FSR) & 0x2).toBe(0x2); // FSR.TF
      expect(Array.from(b.memory.read(PA1, 4))).toEqual([0, 0, 0, 0]);
      expect(b.smmu.tlb.stats.misses).toBeGreaterThan(reads);
    });
  }
});
