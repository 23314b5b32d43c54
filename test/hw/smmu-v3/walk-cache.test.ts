/**
 * SMMUv3 model conformance, through MMIO and memory only: walk caches (table descriptors cached per
 * stage and level, tagged like the TLB, removed by a TLBI by address only when Leaf == 0), the Access
 * flag (CD.AFFD / STE.S2AFFD, hardware update with CD.HA / STE.S2HA when IDR0.HTTU says so), FEAT_BBM's
 * nT bit, and the ID register options that go with them.
 */
import { describe, expect, it } from 'vitest';
import { CMD, type Cmd, cd, EVT, PageTable, REG, Rig, ste } from './rig.js';

const A = 0x8000_0000; // a 4 KiB page at VA/IPA 2 GiB: level 0 index 0, level 1 index 2
const ADDR_MASK = 0x0000_ffff_ffff_f000n;
const AF = 1n << 10n;
const B = BigInt;

function word(d: Uint8Array | undefined): number {
  return d === undefined ? -1 : new DataView(d.buffer, d.byteOffset, 4).getUint32(0, true);
}

/** A stage 1 page descriptor as software writes it (AttrIndx 1, ISH, EL0 access, AF, nG). */
function s1Page(pa: number): bigint {
  return 0b11n | (B(pa) & ADDR_MASK) | (1n << 2n) | (1n << 6n) | (3n << 8n) | AF | (1n << 11n);
}

/** A stage 2 page descriptor (MemAttr normal WB, S2AP read/write, ISH, AF). */
function s2Page(pa: number): bigint {
  return 0b11n | (B(pa) & ADDR_MASK) | (0xfn << 2n) | (3n << 6n) | (3n << 8n) | AF;
}

interface Unhooked {
  rig: Rig;
  pt: PageTable;
  /** The freed level 3 table page, now holding someone else's descriptor for A's slot. */
  table: number;
  secret: number;
}

/**
 * Stage 1 stream 7 (ASID 5) translates A; the walk fills the TLB and the walk cache. Then the level 3
 * table is unhooked (its level 2 descriptor cleared) and `cmds` are issued; then the table page is
 * reused: A's slot in it now maps a page nobody mapped at A.
 */
function unhookS1(cmds: Cmd[], opts: ConstructorParameters<typeof Rig>[0] = {}): Unhooked {
  const rig = new Rig(opts);
  rig.init();
  const { pt } = rig.s1Context(7, 5);
  const buf = rig.alloc(0x1000);
  rig.memory.write32(buf, 0xaaaa);
  pt.map(A, buf, 0x1000);
  expect(word(rig.dma({ streamId: 7, addr: A }).c?.data)).toBe(0xaaaa);
  const l2 = pt.slot(A, 2);
  const table = Number(rig.memory.read64(l2) & ADDR_MASK);
  rig.memory.write64(l2, 0n);
  rig.issue(...cmds, CMD.sync());
  const secret = rig.alloc(0x1000);
  rig.memory.write32(secret, 0x5ec7);
  rig.memory.write64(table + ((A / 0x1000) % 512) * 8, s1Page(secret));
  return { rig, pt, table, secret };
}

describe('SMMUv3 model: stage 1 walk cache', () => {
  it('a Leaf=1 TLBI after the table was unhooked leaves the walk through it: DMA reaches the reused page', () => {
    const { rig } = unhookS1([CMD.tlbiNhVa(0, 5, A, { leaf: true })]);
    const stale = rig.dma({ streamId: 7, addr: A });
    expect(stale.c?.status).toBe('ok');
    expect(word(stale.c?.data)).toBe(0x5ec7);
    expect(rig.events()).toEqual([]);
    // The Leaf=0 invalidation the table needed: the next walk reads the cleared level 2 descriptor.
    rig.issue(CMD.tlbiNhVa(0, 5, A), CMD.sync());
    expect(rig.dma({ streamId: 7, addr: A }).c?.status).toBe('fault');
    expect(rig.events().map((e) => ({ id: e.id, addr: e.addr, s2: e.s2 }))).toEqual([{ id: EVT.F_TRANSLATION, addr: A, s2: false }]);
  });

  it('with the walk cache off (walkCache: false) the same Leaf=1 TLBI is enough', () => {
    const { rig } = unhookS1([CMD.tlbiNhVa(0, 5, A, { leaf: true })], { walkCache: false });
    expect(rig.dma({ streamId: 7, addr: A }).c?.status).toBe('fault');
  });

  const removes: [string, Cmd][] = [
    ['TLBI_NH_VA Leaf=0', CMD.tlbiNhVa(0, 5, A)],
    ['TLBI_NH_VAA Leaf=0', CMD.tlbiNhVaa(0, A)],
    ['TLBI_NH_VA Leaf=0 by range with TTL 3 (the hint describes leaves only)', CMD.tlbiNhVa(0, 5, A, { tg: 1, num: 0, scale: 0, ttl: 3 })],
    ['TLBI_NH_ASID', CMD.tlbiNhAsid(0, 5)],
    ['TLBI_NH_ALL', CMD.tlbiNhAll(0)],
    ['TLBI_S12_VMALL', CMD.tlbiS12Vmall(0)],
    ['TLBI_NSNH_ALL', CMD.tlbiNsnhAll()],
  ];
  it.each(removes)('%s removes the walk: the next DMA faults', (_name, cmd) => {
    const { rig } = unhookS1([cmd]);
    expect(rig.dma({ streamId: 7, addr: A }).c?.status).toBe('fault');
    expect(rig.events().map((e) => e.id)).toEqual([EVT.F_TRANSLATION]);
  });

  const keeps: [string, Cmd][] = [
    ['TLBI_NH_VA Leaf=1', CMD.tlbiNhVa(0, 5, A, { leaf: true })],
    ['TLBI_NH_VAA Leaf=1', CMD.tlbiNhVaa(0, A, true)],
    ['TLBI_NH_VA Leaf=0 of another ASID', CMD.tlbiNhVa(0, 6, A)],
    ['TLBI_NH_VA Leaf=0 of another 2 MiB range', CMD.tlbiNhVa(0, 5, A + 0x20_0000)],
    ['TLBI_NH_ASID of another ASID', CMD.tlbiNhAsid(0, 6)],
    ['TLBI_S2_IPA Leaf=0 (stage 2 entries only)', CMD.tlbiS2Ipa(0, A)],
    ['TLBI_EL2_ALL (another translation regime)', CMD.tlbiEl2All()],
  ];
  it.each(keeps)('%s leaves the stale walk in place', (_name, cmd) => {
    // The leaf itself goes with a Leaf=1 TLBI first, so only the walk cache can still translate A.
    const { rig } = unhookS1([CMD.tlbiNhVa(0, 5, A, { leaf: true }), cmd]);
    expect(word(rig.dma({ streamId: 7, addr: A }).c?.data)).toBe(0x5ec7);
  });

  it('walk-cache entries are tagged by ASID: a stream of another ASID on the same tables walks afresh', () => {
    const { rig, pt } = unhookS1([CMD.tlbiNhVa(0, 5, A, { leaf: true })]);
    // A second CD: the same words as ASID 5's (same TTB0), ASID 6.
    const cd5 = cdOf(rig, 7);
    const cd6 = rig.alloc(64, 64);
    const words = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => rig.memory.read64(cd5 + i * 8));
    words[0] = (words[0] & ~(0xffffn << 48n)) | (6n << 48n);
    rig.writeDwords(cd6, words);
    expect(rig.memory.read64(cd6 + 8) & ADDR_MASK).toBe(B(pt.root));
    rig.writeSte(8, ste({ config: 0b101, s1ContextPtr: cd6 }));
    expect(rig.dma({ streamId: 8, addr: A }).c?.status).toBe('fault');
    expect(word(rig.dma({ streamId: 7, addr: A }).c?.data)).toBe(0x5ec7);
  });

  it('a TLB miss in a table the walk cache knows reads only the last-level descriptor', () => {
    for (const walkCache of [true, false]) {
      const rig = new Rig({ walkCache });
      rig.init();
      const { pt } = rig.s1Context(7, 5);
      pt.map(A, rig.alloc(0x2000), 0x2000);
      expect(rig.dma({ streamId: 7, addr: A }).c?.status).toBe('ok');
      const tables = new Set<number>([pt.root, pt.slot(A, 1) & ~0xfff, pt.slot(A, 2) & ~0xfff, pt.slot(A, 3) & ~0xfff]);
      const reads: number[] = [];
      const read32 = rig.memory.read32.bind(rig.memory);
      rig.memory.read32 = (pa: number): number => {
        if (tables.has(pa - (pa % 4096))) reads.push(pa);
        return read32(pa);
      };
      expect(rig.dma({ streamId: 7, addr: A + 0x1000 }).c?.status).toBe('ok');
      rig.memory.read32 = read32;
      // Two 32-bit reads per descriptor.
      expect(reads.length).toBe(walkCache ? 2 : 8);
      expect(reads[reads.length - 2]).toBe(pt.slot(A + 0x1000, 3));
      if (walkCache) expect(reads[0]).toBe(pt.slot(A + 0x1000, 3));
      else expect(reads[0]).toBe(pt.slot(A, 0));
    }
  });
});

/** PA of the CD stream `sid`'s STE points at. */
function cdOf(rig: Rig, sid: number): number {
  return Number(rig.memory.read64(rig.steAddr(sid)) & 0x000f_ffff_ffff_ffc0n);
}

describe('SMMUv3 model: stage 2 walk cache', () => {
  function s2Setup(leafTlbi: Cmd): { rig: Rig; secret: number } {
    const rig = new Rig();
    rig.init();
    const s2 = new PageTable(rig, 2);
    const buf = rig.alloc(0x1000);
    rig.memory.write32(buf, 0xbbbb);
    s2.map(A, buf, 0x1000);
    rig.writeSte(3, ste({ config: 0b110, vmid: 9, s2t0sz: 16, s2sl0: 2, s2tg: 0, s2ps: 5, s2ttb: s2.root }));
    expect(word(rig.dma({ streamId: 3, addr: A }).c?.data)).toBe(0xbbbb);
    const l2 = s2.slot(A, 2);
    const table = Number(rig.memory.read64(l2) & ADDR_MASK);
    rig.memory.write64(l2, 0n);
    rig.issue(leafTlbi, CMD.sync());
    const secret = rig.alloc(0x1000);
    rig.memory.write32(secret, 0x5ec7);
    rig.memory.write64(table + ((A / 0x1000) % 512) * 8, s2Page(secret));
    return { rig, secret };
  }

  it('TLBI_S2_IPA Leaf=1 keeps the stage 2 walk; Leaf=0 removes it and the fault says S2', () => {
    const { rig } = s2Setup(CMD.tlbiS2Ipa(9, A, { leaf: true }));
    expect(word(rig.dma({ streamId: 3, addr: A }).c?.data)).toBe(0x5ec7);
    rig.issue(CMD.tlbiS2Ipa(9, A), CMD.sync());
    expect(rig.dma({ streamId: 3, addr: A }).c?.status).toBe('fault');
    expect(rig.events().map((e) => ({ id: e.id, s2: e.s2, ipa: e.ipa }))).toEqual([{ id: EVT.F_TRANSLATION, s2: true, ipa: A }]);
  });

  it('the stage 2 walk cache is tagged by VMID: TLBI_S12_VMALL of another VMID keeps it, of its own removes it', () => {
    const { rig } = s2Setup(CMD.tlbiS2Ipa(9, A, { leaf: true }));
    rig.issue(CMD.tlbiS12Vmall(8), CMD.tlbiNhAll(9), CMD.sync());
    expect(word(rig.dma({ streamId: 3, addr: A }).c?.data)).toBe(0x5ec7);
    rig.issue(CMD.tlbiS12Vmall(9), CMD.sync());
    expect(rig.dma({ streamId: 3, addr: A }).c?.status).toBe('fault');
  });
});

describe('SMMUv3 model: nested walk caches', () => {
  it('stage 1 walk entries hold IPAs: TLBI_S2_IPA does not reach them, a stage 1 Leaf=0 TLBI does', () => {
    const rig = new Rig();
    rig.init();
    // Stage 2 maps the first 8 MiB of RAM IPA = PA, where the rig allocates tables and buffers.
    const s2 = new PageTable(rig, 2);
    s2.map(0x4000_0000, 0x4000_0000, 0x40_0000, {}, true);
    s2.map(0x4040_0000, 0x4040_0000, 0x40_0000, {}, true);
    const s1 = new PageTable(rig, 1);
    const data = rig.alloc(0x1000);
    rig.memory.write32(data, 0xcccc);
    s1.map(A, data, 0x1000);
    const cdPa = rig.alloc(64, 64);
    rig.writeDwords(cdPa, cd({ asid: 3, ttb0: s1.root }));
    rig.writeSte(4, ste({ config: 0b111, s1ContextPtr: cdPa, vmid: 9, s2t0sz: 16, s2sl0: 2, s2ps: 5, s2ttb: s2.root }));
    expect(word(rig.dma({ streamId: 4, addr: A }).c?.data)).toBe(0xcccc);
    const l2 = s1.slot(A, 2);
    const table = Number(rig.memory.read64(l2) & ADDR_MASK);
    rig.memory.write64(l2, 0n);
    rig.issue(CMD.tlbiNhVa(9, 3, A, { leaf: true }), CMD.tlbiS2Ipa(9, table), CMD.tlbiS2Ipa(9, l2 - (l2 % 4096)), CMD.sync());
    const secret = rig.alloc(0x1000);
    expect(secret + 0x1000).toBeLessThanOrEqual(0x4080_0000);
    rig.memory.write32(secret, 0x5ec7);
    rig.memory.write64(table + ((A / 0x1000) % 512) * 8, s1Page(secret));
    expect(word(rig.dma({ streamId: 4, addr: A }).c?.data)).toBe(0x5ec7);
    rig.issue(CMD.tlbiNhVa(9, 3, A), CMD.sync());
    expect(rig.dma({ streamId: 4, addr: A }).c?.status).toBe('fault');
    expect(rig.events().map((e) => ({ id: e.id, s2: e.s2 }))).toEqual([{ id: EVT.F_TRANSLATION, s2: false }]);
  });
});

describe('SMMUv3 model: the Access flag (CD.AFFD/HA, STE.S2AFFD/S2HA)', () => {
  function s1NoAf(opts: ConstructorParameters<typeof Rig>[0], cdBits: bigint): { rig: Rig; leaf: number } {
    const rig = new Rig(opts);
    rig.init();
    const { pt, cdAddr } = rig.s1Context(7, 5);
    rig.memory.write64(cdAddr, rig.memory.read64(cdAddr) | cdBits);
    pt.map(A, rig.alloc(0x1000), 0x1000, { noAf: true });
    return { rig, leaf: pt.slot(A, 3) };
  }
  const CD_AFFD = 1n << 35n;
  const CD_HA = 1n << 43n;

  it('AFFD=0: a leaf with AF=0 is an F_ACCESS fault', () => {
    const { rig } = s1NoAf({}, 0n);
    expect(rig.dma({ streamId: 7, addr: A }).c?.status).toBe('fault');
    expect(rig.events().map((e) => e.id)).toEqual([EVT.F_ACCESS]);
  });

  it('AFFD=1 without HTTU: AF=0 is used as if set; the descriptor is not written', () => {
    const { rig, leaf } = s1NoAf({}, CD_AFFD);
    expect(rig.dma({ streamId: 7, addr: A }).c?.status).toBe('ok');
    expect(rig.memory.read64(leaf) & AF).toBe(0n);
    expect(rig.events()).toEqual([]);
  });

  it('IDR0.HTTU=1 and HA=1: the SMMU sets AF in the descriptor (AFFD is then irrelevant)', () => {
    for (const affd of [0n, CD_AFFD]) {
      const { rig, leaf } = s1NoAf({ httu: 1 }, CD_HA | affd);
      expect((rig.r32(REG.IDR0) >>> 6) & 3).toBe(1);
      expect(rig.dma({ streamId: 7, addr: A }).c?.status).toBe('ok');
      expect(rig.memory.read64(leaf) & AF).toBe(AF);
      expect(rig.events()).toEqual([]);
    }
  });

  it('HA=1 on an SMMU without HTTU is C_BAD_CD', () => {
    const { rig } = s1NoAf({}, CD_HA);
    expect((rig.r32(REG.IDR0) >>> 6) & 3).toBe(0);
    expect(rig.dma({ streamId: 7, addr: A }).c?.status).toBe('abort');
    expect(rig.events().map((e) => e.id)).toEqual([EVT.C_BAD_CD]);
  });

  function s2NoAf(opts: ConstructorParameters<typeof Rig>[0], d2Bits: bigint): { rig: Rig; leaf: number } {
    const rig = new Rig(opts);
    rig.init();
    const s2 = new PageTable(rig, 2);
    s2.map(A, rig.alloc(0x1000), 0x1000, { noAf: true });
    const d = ste({ config: 0b110, vmid: 9, s2t0sz: 16, s2sl0: 2, s2tg: 0, s2ps: 5, s2ttb: s2.root });
    d[2] = d[2] | d2Bits;
    rig.writeSte(3, d);
    return { rig, leaf: s2.slot(A, 3) };
  }
  const S2AFFD = 1n << 53n;
  const S2HA = 1n << 56n;

  it('S2AFFD=0: F_ACCESS at stage 2; S2AFFD=1: used as if AF were set; S2HA with HTTU: AF written', () => {
    const fault = s2NoAf({}, 0n);
    expect(fault.rig.dma({ streamId: 3, addr: A }).c?.status).toBe('fault');
    expect(fault.rig.events().map((e) => ({ id: e.id, s2: e.s2 }))).toEqual([{ id: EVT.F_ACCESS, s2: true }]);
    const ignore = s2NoAf({}, S2AFFD);
    expect(ignore.rig.dma({ streamId: 3, addr: A }).c?.status).toBe('ok');
    expect(ignore.rig.memory.read64(ignore.leaf) & AF).toBe(0n);
    const update = s2NoAf({ httu: 1 }, S2HA);
    expect(update.rig.dma({ streamId: 3, addr: A }).c?.status).toBe('ok');
    expect(update.rig.memory.read64(update.leaf) & AF).toBe(AF);
    const illegal = s2NoAf({}, S2HA);
    expect(illegal.rig.dma({ streamId: 3, addr: A }).c?.status).toBe('abort');
    expect(illegal.rig.events().map((e) => e.id)).toEqual([EVT.C_BAD_STE]);
  });
});

describe('SMMUv3 model: IDR3.BBML and the nT bit', () => {
  function blockWithNt(bbml: 0 | 1 | 2): Rig {
    const rig = new Rig({ bbml });
    rig.init();
    const { pt } = rig.s1Context(7, 5);
    pt.map(A, rig.alloc(0x20_0000, 0x20_0000), 0x20_0000, {}, true);
    const slot = pt.slot(A, 2);
    rig.memory.write64(slot, rig.memory.read64(slot) | (1n << 16n)); // nT
    expect(rig.dma({ streamId: 7, addr: A }).c?.status).toBe('ok');
    rig.memory.write64(slot, 0n); // gone, without a TLBI
    return rig;
  }

  it('IDR3.BBML reads the option (default 2); IDR1.ATTR_TYPES_OVR reads 0 unless asked for', () => {
    expect((new Rig().r32(REG.IDR3) >>> 11) & 3).toBe(2);
    expect((new Rig({ bbml: 1 }).r32(REG.IDR3) >>> 11) & 3).toBe(1);
    expect((new Rig().r32(REG.IDR1) >>> 27) & 1).toBe(0);
    expect((new Rig({ attrTypesOverride: true }).r32(REG.IDR1) >>> 27) & 1).toBe(1);
  });

  it('with BBML 1 or 2 a block with nT=1 is not cached: it stops translating as soon as it is cleared', () => {
    for (const bbml of [1, 2] as const) expect(blockWithNt(bbml).dma({ streamId: 7, addr: A }).c?.status).toBe('fault');
  });

  it('with BBML 0 bit 16 means nothing: the block stays in the TLB until a TLBI', () => {
    expect(blockWithNt(0).dma({ streamId: 7, addr: A }).c?.status).toBe('ok');
  });
});
