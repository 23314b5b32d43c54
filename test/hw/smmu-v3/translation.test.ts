import { describe, expect, it } from 'vitest';
import { ACCESS_PRIV, ACCESS_WRITE } from '../../../hw/walker/result.js';
import { CMD, EVT, PageTable, Rig, cd, ste } from './rig.js';

const IOVA = 0x1_0000;
const word = (b: Uint8Array | undefined): number => new DataView(b!.buffer, b!.byteOffset).getUint32(0, true);

describe('SMMUv3 model: STE configurations', () => {
  it('bypass STE passes addresses through; abort STE terminates silently', () => {
    const rig = new Rig();
    rig.init();
    rig.writeSte(1, ste({ config: 0b100 }));
    rig.writeSte(2, ste({ config: 0b000 }));
    rig.memory.write32(0x4080_0000, 0xcafe);
    const r = rig.dma({ streamId: 1, addr: 0x4080_0000 });
    expect(r.c?.status).toBe('ok');
    expect(r.c?.pa).toBe(0x4080_0000);
    expect(word(r.c?.data)).toBe(0xcafe);
    const a = rig.dma({ streamId: 2, addr: 0x4080_0000, write: true });
    expect(a.c?.status).toBe('abort');
    expect(rig.memory.read32(0x4080_0000)).toBe(0xcafe);
    expect(rig.events()).toEqual([]);
  });

  it('translates through stage 1 (reads and writes land at the mapped PA)', () => {
    const rig = new Rig();
    rig.init();
    const { pt } = rig.s1Context(7, 5);
    const buf = rig.alloc(0x2000);
    pt.map(IOVA, buf, 0x2000);
    rig.memory.write32(buf + 0x1004, 0x1122_3344);
    const r = rig.dma({ streamId: 7, addr: IOVA + 0x1004 });
    expect(r.c?.status).toBe('ok');
    expect(r.c?.pa).toBe(buf + 0x1004);
    expect(word(r.c?.data)).toBe(0x1122_3344);
    const w = rig.dma({ streamId: 7, addr: IOVA + 8, write: true, data: new Uint8Array([9, 8, 7, 6]) });
    expect(w.c?.status).toBe('ok');
    expect(rig.memory.read32(buf + 8)).toBe(0x0607_0809);
    expect(rig.smmu.stats.translated).toBe(2);
  });

  it('a TLB miss walks once and caches: probes and transactions that follow hit without walking', () => {
    const rig = new Rig();
    rig.init();
    const { pt } = rig.s1Context(7, 5);
    const buf = rig.alloc(0x2000);
    pt.map(IOVA, buf, 0x2000);
    const walks = (): number => rig.smmu.translator.stats.walks;
    // A TLB-hit probe that misses, then the transaction: one miss counted, one walk.
    expect(rig.smmu.translateFast(7, -1, IOVA, 0)).toBe(-1);
    expect(rig.dma({ streamId: 7, addr: IOVA }).c?.pa).toBe(buf);
    expect([walks(), rig.smmu.tlb.stats.misses]).toEqual([1, 1]);
    expect(rig.smmu.translateFast(7, -1, IOVA + 4, 0)).toBe(buf + 4);
    // The other page: the transaction's own probe misses, its walk caches it; then both pages hit.
    expect(rig.dma({ streamId: 7, addr: IOVA + 0x1000 }).c?.pa).toBe(buf + 0x1000);
    expect(rig.dma({ streamId: 7, addr: IOVA + 0x10 }).c?.pa).toBe(buf + 0x10);
    expect(rig.dma({ streamId: 7, addr: IOVA + 0x1010 }).c?.pa).toBe(buf + 0x1010);
    expect([walks(), rig.smmu.tlb.stats.misses]).toEqual([2, 2]);
  });

  it('a 2 MiB block above 4 GiB of IOVA translates every offset to its place, from the walk and from the TLB', () => {
    const rig = new Rig();
    rig.init();
    const { pt } = rig.s1Context(7, 5);
    const block = rig.alloc(0x20_0000, 0x20_0000);
    const va = 0x3_4560_0000;
    pt.map(va, block, 0x20_0000, {}, true);
    expect(rig.dma({ streamId: 7, addr: va + 0x1_2344 }).c?.pa).toBe(block + 0x1_2344);
    expect(rig.dma({ streamId: 7, addr: va + 0x1f_f000 }).c?.pa).toBe(block + 0x1f_f000);
    expect(rig.smmu.translateFast(7, -1, va + 8, 0)).toBe(block + 8);
    expect(rig.smmu.translator.stats.walks).toBe(1);
  });

  it('faults on an unmapped IOVA with exactly one F_TRANSLATION and writes nothing', () => {
    const rig = new Rig();
    rig.init();
    const { pt } = rig.s1Context(7, 5);
    pt.map(IOVA, rig.alloc(0x1000), 0x1000);
    const ramWrites: number[] = [];
    rig.interconnect.onRamWrite((_m, pa) => ramWrites.push(pa));
    const w = rig.dma({ streamId: 7, addr: 0x80_0000, write: true, len: 8, data: new Uint8Array(8).fill(0xff) });
    expect(w.c?.status).toBe('fault');
    const ev = rig.events();
    expect(ev).toHaveLength(1);
    expect(ev[0]).toMatchObject({ id: EVT.F_TRANSLATION, sid: 7, addr: 0x80_0000, rnw: false, s2: false, cls: 2, stall: false, ssv: false });
    expect(ramWrites).toEqual([]);
    expect(rig.irqs.eventq).toBe(1);
  });

  it('translates through stage 2 and through nested stage 1 + stage 2', () => {
    const rig = new Rig();
    rig.init();
    const s2 = new PageTable(rig, 2);
    const data = rig.alloc(0x1000);
    rig.memory.write32(data, 0x5151);
    s2.map(0x2000_0000, data, 0x1000);
    rig.writeSte(3, ste({ config: 0b110, vmid: 9, s2t0sz: 16, s2sl0: 2, s2tg: 0, s2ps: 5, s2ttb: s2.root }));
    const r = rig.dma({ streamId: 3, addr: 0x2000_0000 });
    expect(r.c?.status).toBe('ok');
    expect(word(r.c?.data)).toBe(0x5151);

    // Nested: the CD and the stage 1 tables live in IPA space, mapped by the same stage 2.
    const s1 = new PageTable(rig, 1);
    const cdPa = rig.alloc(0x1000);
    s2.map(0x3000_0000, cdPa, 0x1000); // CD at IPA 0x3000_0000
    // Stage 1 tables are allocated at PAs; identity-map that region in stage 2.
    s2.map(0x4000_0000, 0x4000_0000, 0x40_0000, {}, true);
    s2.map(0x4040_0000, 0x4040_0000, 0x40_0000, {}, true);
    s1.map(0x7000, 0x2000_0000, 0x1000); // VA 0x7000 -> IPA 0x2000_0000 -> data
    rig.writeDwords(cdPa, cd({ asid: 3, ttb0: s1.root }));
    rig.writeSte(4, ste({ config: 0b111, s1ContextPtr: 0x3000_0000, vmid: 9, s2t0sz: 16, s2sl0: 2, s2ps: 5, s2ttb: s2.root }));
    const n = rig.dma({ streamId: 4, addr: 0x7000 });
    expect(n.c?.status).toBe('ok');
    expect(n.c?.pa).toBe(data);
    expect(word(n.c?.data)).toBe(0x5151);
  });

  it('reports C_BAD_STE for an invalid STE, and uses a corrected one without CFGI (invalid STEs are not cached)', () => {
    const rig = new Rig();
    rig.init();
    rig.writeSte(6, ste({ v: false, config: 0b100 }));
    expect(rig.dma({ streamId: 6, addr: 0x4080_0000 }).c?.status).toBe('abort');
    expect(rig.events()).toMatchObject([{ id: EVT.C_BAD_STE, sid: 6 }]);
    rig.writeSte(6, ste({ config: 0b100 }));
    expect(rig.dma({ streamId: 6, addr: 0x4080_0000 }).c?.status).toBe('ok');
  });

  it('treats ILLEGAL STE configurations as C_BAD_STE', () => {
    const rig = new Rig({ stallModel: 1 });
    rig.init();
    const s2 = new PageTable(rig, 2);
    rig.writeSte(1, ste({ config: 0b110, s2t0sz: 16, s2sl0: 2, s2tg: 3, s2ttb: s2.root })); // reserved granule
    rig.writeSte(2, ste({ config: 0b110, s2t0sz: 16, s2sl0: 2, s2ttb: s2.root, s2s: true })); // S2S with terminate model
    rig.writeSte(3, ste({ config: 0b110, s2t0sz: 16, s2sl0: 0, s2ttb: s2.root })); // SL0 inconsistent with T0SZ
    rig.writeSte(4, ste({ config: 0b101, strw: 1 })); // STRW reserved
    for (const sid of [1, 2, 3, 4]) expect(rig.dma({ streamId: sid, addr: 0x1000 }).c?.status).toBe('abort');
    expect(rig.events().map((e) => [e.id, e.sid])).toEqual([[4, 1], [4, 2], [4, 3], [4, 4]]);
  });
});

describe('SMMUv3 model: stale caches until the right invalidation', () => {
  it('keeps a stale stage 1 TLB entry usable until TLBI_NH_VA', () => {
    const rig = new Rig();
    rig.init();
    const { pt } = rig.s1Context(7, 5);
    const buf = rig.alloc(0x1000);
    rig.memory.write32(buf, 0xabcd);
    pt.map(IOVA, buf, 0x1000);
    expect(rig.dma({ streamId: 7, addr: IOVA }).c?.status).toBe('ok');
    pt.unmap(IOVA);
    const stale = rig.dma({ streamId: 7, addr: IOVA });
    expect(stale.c?.status).toBe('ok');
    expect(word(stale.c?.data)).toBe(0xabcd);
    rig.issue(CMD.tlbiNhVa(0, 4, IOVA), CMD.sync()); // wrong ASID: no effect
    expect(rig.dma({ streamId: 7, addr: IOVA }).c?.status).toBe('ok');
    rig.issue(CMD.tlbiNhVa(0, 5, IOVA, { leaf: true }), CMD.sync());
    expect(rig.dma({ streamId: 7, addr: IOVA }).c?.status).toBe('fault');
  });

  it('shares TLB entries between streams with the same ASID/VMID and invalidates them by ASID', () => {
    const rig = new Rig();
    rig.init();
    const { pt, cdAddr } = rig.s1Context(7, 5);
    rig.writeSte(8, ste({ config: 0b101, s1ContextPtr: cdAddr }));
    const buf = rig.alloc(0x1000);
    pt.map(IOVA, buf, 0x1000);
    expect(rig.dma({ streamId: 7, addr: IOVA }).c?.status).toBe('ok');
    pt.unmap(IOVA);
    // Stream 8 hits the entry stream 7 filled: the TLB is tagged by ASID, not StreamID.
    expect(rig.dma({ streamId: 8, addr: IOVA }).c?.status).toBe('ok');
    rig.issue(CMD.tlbiNhAsid(0, 5), CMD.sync());
    expect(rig.dma({ streamId: 8, addr: IOVA }).c?.status).toBe('fault');
  });

  it('invalidates exactly the range given by TG/NUM/SCALE, and honours the TTL level hint', () => {
    const rig = new Rig();
    rig.init();
    const { pt } = rig.s1Context(7, 5);
    const buf = rig.alloc(0x8000);
    pt.map(IOVA, buf, 0x8000);
    for (let i = 0; i < 8; i++) expect(rig.dma({ streamId: 7, addr: IOVA + i * 0x1000 }).c?.status).toBe('ok');
    for (let i = 0; i < 8; i++) pt.unmap(IOVA + i * 0x1000);
    // TTL 2 (level 2 leaves) does not reach the level 3 pages: all stay usable.
    rig.issue(CMD.tlbiNhVa(0, 5, IOVA, { tg: 1, num: 7, scale: 0, ttl: 2 }), CMD.sync());
    expect(rig.dma({ streamId: 7, addr: IOVA }).c?.status).toBe('ok');
    // (NUM + 1) * 2^SCALE = 2 * 2 = 4 pages from IOVA + 0x2000.
    rig.issue(CMD.tlbiNhVa(0, 5, IOVA + 0x2000, { tg: 1, num: 1, scale: 1, ttl: 3 }), CMD.sync());
    const st = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => rig.dma({ streamId: 7, addr: IOVA + i * 0x1000 }).c?.status);
    expect(st).toEqual(['ok', 'ok', 'fault', 'fault', 'fault', 'fault', 'ok', 'ok']);
  });

  it('tags EL2 StreamWorld translations apart from EL1 ones (TLBI_NH_ALL misses them, TLBI_EL2_ALL hits)', () => {
    const rig = new Rig();
    rig.init();
    const { pt } = rig.s1Context(7, 5, { strw: 2 });
    pt.map(IOVA, rig.alloc(0x1000), 0x1000);
    expect(rig.dma({ streamId: 7, addr: IOVA }).c?.status).toBe('ok');
    pt.unmap(IOVA);
    rig.issue(CMD.tlbiNhAll(0), CMD.tlbiNsnhAll(), CMD.sync());
    expect(rig.dma({ streamId: 7, addr: IOVA }).c?.status).toBe('ok');
    rig.issue(CMD.tlbiEl2All(), CMD.sync());
    expect(rig.dma({ streamId: 7, addr: IOVA }).c?.status).toBe('fault');
  });

  it('matches global (nG == 0) entries under every ASID; by-ASID invalidation spares them, by-VA does not', () => {
    const rig = new Rig();
    rig.init();
    const { pt } = rig.s1Context(7, 5);
    rig.s1Context(8, 6, {}, {}, pt);
    const buf = rig.alloc(0x1000);
    pt.map(IOVA, buf, 0x1000, { global: true });
    expect(rig.dma({ streamId: 7, addr: IOVA }).c?.status).toBe('ok');
    pt.unmap(IOVA);
    expect(rig.dma({ streamId: 8, addr: IOVA }).c?.pa).toBe(buf); // ASID 6 hits ASID 5's global entry
    rig.issue(CMD.tlbiNhAsid(0, 5), CMD.tlbiNhAsid(0, 6), CMD.sync());
    expect(rig.dma({ streamId: 8, addr: IOVA }).c?.status).toBe('ok');
    rig.issue(CMD.tlbiNhVa(0, 6, IOVA), CMD.sync());
    expect(rig.dma({ streamId: 7, addr: IOVA }).c?.status).toBe('fault');
  });

  it('keeps stage 2 entries until TLBI_S2_IPA / TLBI_S12_VMALL for that VMID', () => {
    const rig = new Rig();
    rig.init();
    const s2 = new PageTable(rig, 2);
    const data = rig.alloc(0x2000);
    s2.map(0x2000_0000, data, 0x2000);
    rig.writeSte(3, ste({ config: 0b110, vmid: 9, s2t0sz: 16, s2sl0: 2, s2ps: 5, s2ttb: s2.root }));
    expect(rig.dma({ streamId: 3, addr: 0x2000_0000 }).c?.status).toBe('ok');
    expect(rig.dma({ streamId: 3, addr: 0x2000_1000 }).c?.status).toBe('ok');
    s2.unmap(0x2000_0000);
    s2.unmap(0x2000_1000);
    rig.issue(CMD.tlbiNhAll(9), CMD.tlbiS2Ipa(8, 0x2000_0000), CMD.sync()); // stage 1 scope / other VMID
    expect(rig.dma({ streamId: 3, addr: 0x2000_0000 }).c?.status).toBe('ok');
    rig.issue(CMD.tlbiS2Ipa(9, 0x2000_0000), CMD.sync());
    expect(rig.dma({ streamId: 3, addr: 0x2000_0000 }).c?.status).toBe('fault');
    expect(rig.dma({ streamId: 3, addr: 0x2000_1000 }).c?.status).toBe('ok');
    rig.issue(CMD.tlbiS12Vmall(9), CMD.sync());
    expect(rig.dma({ streamId: 3, addr: 0x2000_1000 }).c?.status).toBe('fault');
    const ev = rig.events();
    expect(ev).toHaveLength(2);
    expect(ev[0]).toMatchObject({ id: EVT.F_TRANSLATION, s2: true, cls: 2, ipa: 0x2000_0000 });
  });

  it('keeps a stale STE until CMD_CFGI_STE and a stale CD until CMD_CFGI_CD', () => {
    const rig = new Rig();
    rig.init();
    rig.writeSte(1, ste({ config: 0b100 }));
    expect(rig.dma({ streamId: 1, addr: 0x4080_0000 }).c?.status).toBe('ok');
    rig.writeSte(1, ste({ config: 0b000 }));
    expect(rig.dma({ streamId: 1, addr: 0x4080_0000 }).c?.status).toBe('ok');
    rig.issue(CMD.cfgiSte(1), CMD.sync());
    expect(rig.dma({ streamId: 1, addr: 0x4080_0000 }).c?.status).toBe('abort');

    const { pt, cdAddr } = rig.s1Context(7, 5);
    const buf = rig.alloc(0x1000);
    pt.map(IOVA, buf, 0x1000);
    expect(rig.dma({ streamId: 7, addr: IOVA }).c?.status).toBe('ok');
    const pt2 = new PageTable(rig, 1);
    rig.writeDwords(cdAddr, cd({ asid: 6, ttb0: pt2.root }));
    rig.issue(CMD.tlbiNhAsid(0, 5), CMD.sync());
    // The cached CD still says ASID 5 / old tables: the walk succeeds through them.
    expect(rig.dma({ streamId: 7, addr: IOVA }).c?.status).toBe('ok');
    rig.issue(CMD.cfgiCd(7, 0), CMD.sync());
    expect(rig.dma({ streamId: 7, addr: IOVA }).c?.status).toBe('fault');
  });
});

describe('SMMUv3 model: substreams', () => {
  function setup(s1dss: number): { rig: Rig; bufs: number[] } {
    const rig = new Rig();
    rig.init();
    const table = rig.alloc(64 * 4, 256);
    const bufs: number[] = [];
    for (let i = 0; i < 4; i++) {
      const pt = new PageTable(rig, 1);
      const b = rig.alloc(0x1000);
      rig.memory.write32(b, 0x100 + i);
      bufs.push(b);
      pt.map(IOVA, b, 0x1000);
      rig.writeDwords(table + i * 64, cd({ asid: 20 + i, ttb0: pt.root }));
    }
    rig.writeSte(9, ste({ config: 0b101, s1ContextPtr: table, s1CdMax: 2, s1dss }));
    return { rig, bufs };
  }

  it('selects the CD by SubstreamID and rejects SubstreamIDs beyond S1CDMax', () => {
    const { rig } = setup(0);
    expect(word(rig.dma({ streamId: 9, addr: IOVA, ssidValid: true, ssid: 1 }).c?.data)).toBe(0x101);
    expect(word(rig.dma({ streamId: 9, addr: IOVA, ssidValid: true, ssid: 3 }).c?.data)).toBe(0x103);
    expect(rig.dma({ streamId: 9, addr: IOVA, ssidValid: true, ssid: 4 }).c?.status).toBe('abort');
    expect(rig.dma({ streamId: 9, addr: IOVA }).c?.status).toBe('abort'); // S1DSS terminate
    expect(rig.events().map((e) => [e.id, e.ssid])).toEqual([[EVT.C_BAD_SUBSTREAMID, 4], [EVT.F_STREAM_DISABLED, 0]]);
  });

  it('S1DSS: bypass stage 1 for non-substream traffic, or use CD 0 and reserve SubstreamID 0', () => {
    const a = setup(1);
    const r = a.rig.dma({ streamId: 9, addr: 0x4080_0000 });
    expect(r.c?.pa).toBe(0x4080_0000);
    const b = setup(2);
    expect(word(b.rig.dma({ streamId: 9, addr: IOVA }).c?.data)).toBe(0x100);
    expect(b.rig.dma({ streamId: 9, addr: IOVA, ssidValid: true, ssid: 0 }).c?.status).toBe('abort');
    expect(b.rig.events()).toMatchObject([{ id: EVT.F_STREAM_DISABLED, sid: 9, ssv: true, ssid: 0 }]);
  });

  it('locates CDs through a 2-level CD table (4KB leaves) and rejects an invalid L1CD', () => {
    const rig = new Rig();
    rig.init();
    const l1 = rig.alloc(8 * 16, 128);
    const l2 = rig.alloc(0x1000);
    rig.memory.write64(l1 + 1 * 8, BigInt(l2) | 1n); // L1CD 1 covers SubstreamIDs 64..127
    const pt = new PageTable(rig, 1);
    const b = rig.alloc(0x1000);
    rig.memory.write32(b, 0x77);
    pt.map(IOVA, b, 0x1000);
    rig.writeDwords(l2 + (100 - 64) * 64, cd({ asid: 30, ttb0: pt.root }));
    rig.writeSte(10, ste({ config: 0b101, s1ContextPtr: l1, s1CdMax: 10, s1Fmt: 1 }));
    expect(word(rig.dma({ streamId: 10, addr: IOVA, ssidValid: true, ssid: 100 }).c?.data)).toBe(0x77);
    expect(rig.dma({ streamId: 10, addr: IOVA, ssidValid: true, ssid: 200 }).c?.status).toBe('abort');
    expect(rig.events()).toMatchObject([{ id: EVT.C_BAD_SUBSTREAMID, ssid: 200 }]);
  });
});

describe('SMMUv3 model: 2-level stream table', () => {
  it('finds sparse StreamIDs through L1 descriptors and reports C_BAD_STREAMID outside them', () => {
    const rig = new Rig();
    rig.init({ strtab: { twoLevel: { log2size: 16, split: 8 } } });
    for (const sid of [0x0001, 0x1234, 0xfe00]) {
      rig.addL2(sid);
      rig.writeSte(sid, ste({ config: 0b100 }));
    }
    for (const sid of [0x0001, 0x1234, 0xfe00]) expect(rig.dma({ streamId: sid, addr: 0x4080_0000 }).c?.status).toBe('ok');
    expect(rig.dma({ streamId: 0x1300, addr: 0x4080_0000 }).c?.status).toBe('abort'); // L1 Span 0
    expect(rig.dma({ streamId: 0x1_0000, addr: 0x4080_0000 }).c?.status).toBe('abort'); // beyond LOG2SIZE
    expect(rig.events().map((e) => [e.id, e.sid])).toEqual([[EVT.C_BAD_STREAMID, 0x1300], [EVT.C_BAD_STREAMID, 0x1_0000]]);
    // Only 2^(Span-1) STEs of an L2 are reachable.
    const l1slot = rig.strtab.base + 0x20 * 8;
    rig.memory.write64(l1slot, BigInt(rig.alloc(64 * 4)) | 3n); // Span 3: SIDs 0x2000..0x2003
    expect(rig.dma({ streamId: 0x2004, addr: 0x4080_0000 }).c?.status).toBe('abort');
    expect(rig.events()).toMatchObject([{ id: EVT.C_BAD_STREAMID, sid: 0x2004 }]);
  });
});

describe('SMMUv3 model: fast path', () => {
  it('translateFast answers TLB hits and declines everything else', () => {
    const rig = new Rig();
    rig.init();
    const { pt } = rig.s1Context(7, 5);
    const buf = rig.alloc(0x1000);
    pt.map(IOVA, buf, 0x1000, { write: false });
    expect(rig.smmu.translateFast(7, -1, IOVA + 0x10, 0)).toBe(-1); // not cached yet
    rig.dma({ streamId: 7, addr: IOVA });
    expect(rig.smmu.translateFast(7, -1, IOVA + 0x10, 0)).toBe(buf + 0x10);
    expect(rig.smmu.translateFast(7, -1, IOVA + 0x10, ACCESS_PRIV)).toBe(buf + 0x10);
    expect(rig.smmu.translateFast(7, -1, IOVA + 0x10, ACCESS_WRITE)).toBe(-1); // read-only
    expect(rig.smmu.translateFast(7, 1, IOVA + 0x10, 0)).toBe(-1); // substreams disabled
    expect(rig.smmu.translateFast(7, -1, IOVA + 0x1000, 0)).toBe(-1);
  });

  it('splits an access that crosses a page into per-page translations', () => {
    const rig = new Rig();
    rig.init();
    const { pt } = rig.s1Context(7, 5);
    const a = rig.alloc(0x1000);
    const b = rig.alloc(0x3000) + 0x2000; // not contiguous with a
    pt.map(IOVA, a, 0x1000);
    pt.map(IOVA + 0x1000, b, 0x1000);
    const data = new Uint8Array(16).map((_, i) => i + 1);
    const w = rig.dma({ streamId: 7, addr: IOVA + 0xff8, len: 16, write: true, data });
    expect(w.c?.status).toBe('ok');
    expect([...rig.memory.read(a + 0xff8, 8)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect([...rig.memory.read(b, 8)]).toEqual([9, 10, 11, 12, 13, 14, 15, 16]);
    const r = rig.dma({ streamId: 7, addr: IOVA + 0xff8, len: 16 });
    expect([...r.c!.data!]).toEqual([...data]);
  });
});
