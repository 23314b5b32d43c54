/**
 * The hardware walker against tables written here descriptor by descriptor (no io-pgtable involved):
 * configuration decode, every fault kind and level, permissions, attributes, granules, 52-bit output,
 * stage 2 concatenation and nested walks.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { PhysicalMemory } from '../../hw/memory.js';
import {
  compileStage1,
  compileStage2,
  decodeAddressSize,
  decodeS2SL0,
  decodeTG0,
  stage1StartLevel,
  WalkConfigError,
  type Granule,
} from '../../hw/walker/config.js';
import { ACCESS_INSTR, ACCESS_PRIV, ACCESS_WRITE, PERM_R, PERM_W, PERM_X, WalkResult } from '../../hw/walker/result.js';
import { TranslationTableWalker } from '../../hw/walker/walker.js';

// Descriptor fields (Arm ARM VMSAv8-64 long descriptors), as BigInt for readability.
const VALID = 1n;
const TABLE = 3n;
const PAGE = 3n;
const BLOCK = 1n;
const AF = 1n << 10n;
const NG = 1n << 11n;
const NS = 1n << 5n;
const ap = (v: number) => BigInt(v) << 6n; // AP[2:1] at stage 1, S2AP at stage 2
const sh = (v: number) => BigInt(v) << 8n;
const attrIndx = (v: number) => BigInt(v) << 2n;
const memAttr = (v: number) => BigInt(v) << 2n;
const PXN = 1n << 53n;
const UXN = 1n << 54n; // XN at stage 2
const PXN_TABLE = 1n << 59n;
const UXN_TABLE = 1n << 60n;
const AP_TABLE_NO_EL0 = 1n << 61n;
const AP_TABLE_RO = 2n << 61n;
const NS_TABLE = 1n << 63n;

const RAM = 0x8000_0000;
const RAM_SIZE = 0x1000_0000;
const T0 = RAM;
const T1 = RAM + 0x1000;
const T2 = RAM + 0x2000;
const T3 = RAM + 0x3000;

let mem: PhysicalMemory;
let walker: TranslationTableWalker;
let out: WalkResult;

function put(pa: number, desc: bigint): void {
  mem.write64(pa, desc);
}

function idx(va: number, shift: number, bits: number): number {
  return Number((BigInt(va) >> BigInt(shift)) & ((1n << BigInt(bits)) - 1n));
}

/** Entry address for `va` in the 4K-granule table at `table` for `level`. */
function entry4k(table: number, va: number, level: number): number {
  return table + idx(va, 39 - 9 * level, 9) * 8;
}

beforeEach(() => {
  mem = new PhysicalMemory();
  mem.addRegion(RAM, RAM_SIZE);
  walker = new TranslationTableWalker(mem);
  out = new WalkResult();
});

describe('configuration decode', () => {
  it('decodes TG0, IPS/PS and SL0 as the architecture encodes them', () => {
    expect([0, 1, 2, 3].map(decodeTG0)).toEqual([4096, 65536, 16384, null]);
    expect([0, 1, 2, 3, 4, 5, 6, 7].map(decodeAddressSize)).toEqual([32, 36, 40, 42, 44, 48, 52, null]);
    expect([0, 1, 2, 3].map((s) => decodeS2SL0(4096, s))).toEqual([2, 1, 0, -1]);
    expect([0, 1, 2, 3].map((s) => decodeS2SL0(16384, s))).toEqual([3, 2, 1, -1]);
    expect([0, 1, 2, 3].map((s) => decodeS2SL0(65536, s))).toEqual([3, 2, 1, -1]);
  });

  it('derives the stage 1 starting level from the input size', () => {
    const cases: [Granule, number, number][] = [
      [4096, 48, 0], [4096, 40, 0], [4096, 39, 1], [4096, 32, 1], [4096, 30, 2], [4096, 25, 2],
      [16384, 48, 0], [16384, 47, 1], [16384, 36, 2], [65536, 52, 1], [65536, 48, 1], [65536, 42, 2],
    ];
    for (const [g, ias, lvl] of cases) expect(stage1StartLevel(g, ias), `${g} ${ias}`).toBe(lvl);
  });

  it('rejects configurations the architecture does not allow', () => {
    const s1 = (granule: number, inputSize: number, outputSize: number) => () =>
      compileStage1({ granule: granule as Granule, inputSize, outputSize, tableBase: T0 });
    expect(s1(8192, 48, 48)).toThrow(/granule 8192/);
    expect(s1(4096, 48, 46)).toThrow(/output size 46/);
    expect(s1(4096, 48, 52)).toThrow(/52-bit output needs the 64K granule/);
    expect(s1(4096, 24, 48)).toThrow(/input size 24/);
    expect(s1(4096, 49, 48)).toThrow(/input size 49/);
    expect(s1(65536, 52, 52)).not.toThrow();
    expect(() => compileStage1({ granule: 4096, inputSize: 48, outputSize: 48, tableBase: -8 })).toThrow(WalkConfigError);

    const s2 = (granule: number, inputSize: number, outputSize: number, startLevel: number) => () =>
      compileStage2({ granule: granule as Granule, inputSize, outputSize, startLevel, tableBase: T0 });
    expect(s2(4096, 40, 40, 0)).toThrow(/level 0 is not permitted/);
    expect(s2(4096, 40, 44, 0)).not.toThrow();
    expect(s2(4096, 40, 40, 2)).toThrow(/does not fit/); // 19 index bits: more than 16 tables
    expect(s2(16384, 48, 48, 0)).toThrow(/not permitted/);
    expect(s2(16384, 40, 40, 1)).toThrow(/not permitted/);
    expect(s2(65536, 48, 42, 1)).toThrow(/not permitted/);
    expect(s2(4096, 40, 48, 4)).toThrow(/starting level 4/);
    expect(s2(4096, 32, 40, 0)).toThrow(/does not fit/); // no index bits left at level 0
    expect(compileStage2({ granule: 4096, inputSize: 40, outputSize: 40, startLevel: 1, tableBase: T0 }).concatenatedTables).toBe(2);
    expect(compileStage2({ granule: 16384, inputSize: 40, outputSize: 40, startLevel: 2, tableBase: T0 }).concatenatedTables).toBe(16);
    expect(compileStage2({ granule: 65536, inputSize: 48, outputSize: 48, startLevel: 1, tableBase: T0 }).concatenatedTables).toBe(1);
  });

  it('ignores table base bits below the starting table size', () => {
    expect(compileStage1({ granule: 4096, inputSize: 48, outputSize: 48, tableBase: T0 + 0x18 }).tableBase).toBe(T0);
    // ias 40 at level 0: 2 entries, a 16-byte table.
    expect(compileStage2({ granule: 4096, inputSize: 40, outputSize: 44, startLevel: 0, tableBase: T0 + 0x18 }).tableBase).toBe(T0 + 0x10);
  });
});

describe('stage 1, 4K granule, 48-bit', () => {
  const va = 0x1234_5678_9abc;
  const s1 = () => compileStage1({ granule: 4096, inputSize: 48, outputSize: 48, tableBase: T0 });

  function chain(): void {
    put(entry4k(T0, va, 0), BigInt(T1) | TABLE);
    put(entry4k(T1, va, 1), BigInt(T2) | TABLE);
    put(entry4k(T2, va, 2), BigInt(T3) | TABLE);
  }

  it('translates a page through four levels', () => {
    chain();
    put(entry4k(T3, va, 3), 0xabc_def0_1000n | PAGE | AF | NG | sh(3) | attrIndx(1) | ap(1));
    expect(walker.walkStage1(s1(), va, 0, out)).toBe(true);
    expect(out.ok).toBe(true);
    expect(out.pa).toBe(0xabc_def0_1abc);
    expect(out.ipa).toBe(out.pa);
    expect(out.input).toBe(va);
    expect(out.level).toBe(3);
    expect(out.blockSize).toBe(0x1000);
    expect(out.attrIndx).toBe(1);
    expect(out.sh).toBe(3);
    expect(out.nG).toBe(true);
    expect(out.ns).toBe(false);
    expect(out.ap).toBe(1);
  });

  it('translates 2M and 1G blocks, ignoring output bits below the block size', () => {
    put(entry4k(T0, va, 0), BigInt(T1) | TABLE);
    put(entry4k(T1, va, 1), BigInt(T2) | TABLE);
    put(entry4k(T2, va, 2), 0x40_0020_0000n | 0x1000n | BLOCK | AF);
    expect(walker.walkStage1(s1(), va, ACCESS_PRIV, out)).toBe(true);
    expect(out.pa).toBe(0x40_0020_0000 + (va % 0x20_0000));
    expect([out.level, out.blockSize]).toEqual([2, 0x20_0000]);

    put(entry4k(T1, va, 1), 0x7_4000_0000n | BLOCK | AF);
    expect(walker.walkStage1(s1(), va, ACCESS_PRIV, out)).toBe(true);
    expect(out.pa).toBe(0x7_4000_0000 + (va % 0x4000_0000));
    expect([out.level, out.blockSize]).toEqual([1, 0x4000_0000]);
  });

  it('reports translation faults with their level', () => {
    expect(walker.walkStage1(s1(), va, 0, out)).toBe(false);
    expect([out.fault, out.faultStage, out.faultLevel]).toEqual(['translation', 1, 0]);

    put(entry4k(T0, va, 0), BigInt(T1) | TABLE);
    put(entry4k(T1, va, 1), BigInt(T2) | TABLE);
    walker.walkStage1(s1(), va, 0, out);
    expect([out.fault, out.faultLevel]).toEqual(['translation', 2]);

    // A level 0 block does not exist with 4K.
    put(entry4k(T0, va, 0), 0n | BLOCK | AF);
    walker.walkStage1(s1(), va, 0, out);
    expect([out.fault, out.faultLevel]).toEqual(['translation', 0]);

    // bit[1] clear at level 3 is reserved.
    chain();
    put(entry4k(T3, va, 3), 0x1000n | BLOCK | AF);
    walker.walkStage1(s1(), va, 0, out);
    expect([out.fault, out.faultLevel]).toEqual(['translation', 3]);

    // Beyond the input size.
    walker.walkStage1(s1(), 2 ** 48 + 0x1000, 0, out);
    expect([out.fault, out.faultLevel]).toEqual(['translation', 0]);
    const s1small = compileStage1({ granule: 4096, inputSize: 39, outputSize: 48, tableBase: T1 });
    walker.walkStage1(s1small, 2 ** 39, 0, out);
    expect([out.fault, out.faultLevel]).toEqual(['translation', 0]);
  });

  it('reports an access flag fault for AF = 0', () => {
    chain();
    put(entry4k(T3, va, 3), 0x1000n | PAGE);
    walker.walkStage1(s1(), va, 0, out);
    expect([out.fault, out.faultStage, out.faultLevel]).toEqual(['access-flag', 1, 3]);
    put(entry4k(T2, va, 2), 0x20_0000n | BLOCK);
    walker.walkStage1(s1(), va, 0, out);
    expect([out.fault, out.faultLevel]).toEqual(['access-flag', 2]);
  });

  it('applies AP[2:1], UXN/PXN and the implicit PXN of unprivileged-writable memory', () => {
    chain();
    // [AP, UXN, PXN] -> expected perms [unprivileged, privileged]
    const cases: [number, boolean, boolean, number, number][] = [
      [0, false, false, PERM_X, PERM_R | PERM_W | PERM_X],
      [1, false, false, PERM_R | PERM_W | PERM_X, PERM_R | PERM_W],
      [2, false, false, PERM_X, PERM_R | PERM_X],
      [3, false, false, PERM_R | PERM_X, PERM_R | PERM_X],
      [3, true, false, PERM_R, PERM_R | PERM_X],
      [3, false, true, PERM_R | PERM_X, PERM_R],
      [1, true, true, PERM_R | PERM_W, PERM_R | PERM_W],
    ];
    for (const [apv, uxn, pxn, unpriv, priv] of cases) {
      put(entry4k(T3, va, 3), 0x1000n | PAGE | AF | ap(apv) | (uxn ? UXN : 0n) | (pxn ? PXN : 0n));
      const what = `AP=${apv} UXN=${uxn} PXN=${pxn}`;
      walker.walkStage1(s1(), va, 0, out);
      expect(out.s1Perms, `${what} unpriv`).toBe(unpriv);
      walker.walkStage1(s1(), va, ACCESS_PRIV, out);
      expect(out.s1Perms, `${what} priv`).toBe(priv);
      // Each access succeeds exactly when the permission is there, else a level 3 permission fault.
      for (const [acc, bit] of [[0, PERM_R], [ACCESS_WRITE, PERM_W], [ACCESS_INSTR, PERM_X]] as const) {
        for (const [p, perms] of [[0, unpriv], [ACCESS_PRIV, priv]] as const) {
          const okay = walker.walkStage1(s1(), va, acc | p, out);
          expect(okay, `${what} access ${acc | p}`).toBe((perms & bit) !== 0);
          if (!okay) expect([out.fault, out.faultStage, out.faultLevel]).toEqual(['permission', 1, 3]);
        }
      }
    }
    expect(out.pxn).toBe(true);
    expect(out.uxn).toBe(true);
  });

  it('applies the hierarchical APTable, UXNTable, PXNTable and NSTable', () => {
    chain();
    put(entry4k(T3, va, 3), 0x1000n | PAGE | AF | ap(1) | NS);
    put(entry4k(T1, va, 1), BigInt(T2) | TABLE | AP_TABLE_NO_EL0);
    walker.walkStage1(s1(), va, 0, out);
    expect(out.s1Perms).toBe(PERM_X);
    expect(out.ap).toBe(0);
    expect(walker.walkStage1(s1(), va, 0, out)).toBe(false);
    expect(out.fault).toBe('permission');

    put(entry4k(T1, va, 1), BigInt(T2) | TABLE | AP_TABLE_RO | UXN_TABLE);
    walker.walkStage1(s1(), va, ACCESS_PRIV, out);
    expect(out.s1Perms).toBe(PERM_R | PERM_X); // read-only, and no longer unprivileged-writable
    walker.walkStage1(s1(), va, 0, out);
    expect(out.s1Perms).toBe(PERM_R);
    expect(out.uxn).toBe(true);

    put(entry4k(T0, va, 0), BigInt(T1) | TABLE | PXN_TABLE | NS_TABLE);
    put(entry4k(T1, va, 1), BigInt(T2) | TABLE);
    put(entry4k(T3, va, 3), 0x1000n | PAGE | AF | ap(0));
    walker.walkStage1(s1(), va, ACCESS_PRIV, out);
    expect(out.s1Perms).toBe(PERM_R | PERM_W);
    expect(out.pxn).toBe(true);
    expect(out.ns).toBe(true);
  });

  it('reports address size faults for the base, a table address and an output address', () => {
    const s140 = (base: number) => compileStage1({ granule: 4096, inputSize: 48, outputSize: 40, tableBase: base });
    walker.walkStage1(s140(2 ** 41), va, 0, out);
    expect([out.fault, out.faultLevel]).toEqual(['address-size', 0]);

    put(entry4k(T0, va, 0), BigInt(T1) | TABLE);
    put(entry4k(T1, va, 1), BigInt(2 ** 40) | TABLE);
    walker.walkStage1(s140(T0), va, 0, out);
    expect([out.fault, out.faultLevel]).toEqual(['address-size', 1]);

    put(entry4k(T1, va, 1), BigInt(T2) | TABLE);
    put(entry4k(T2, va, 2), BigInt(T3) | TABLE);
    put(entry4k(T3, va, 3), BigInt(2 ** 40 + 0x1000) | PAGE | AF | ap(1));
    walker.walkStage1(s140(T0), va, 0, out);
    expect([out.fault, out.faultLevel]).toEqual(['address-size', 3]);
    // The same tables with a 48-bit output size translate.
    expect(walker.walkStage1(s1(), va, 0, out)).toBe(true);
    expect(out.pa).toBe(2 ** 40 + 0x1abc);
    // Descriptor bits [51:48] are not output address bits with 4K (bit 51 is DBM).
    put(entry4k(T3, va, 3), (1n << 51n) | 0x5000n | PAGE | AF | ap(1));
    expect(walker.walkStage1(s1(), va, 0, out)).toBe(true);
    expect(out.pa).toBe(0x5abc);
  });

  it('reports an external abort when a descriptor read hits no memory', () => {
    put(entry4k(T0, va, 0), BigInt(T1) | TABLE);
    put(entry4k(T1, va, 1), 0x1000n | TABLE); // no RAM at 0x1000
    walker.walkStage1(s1(), va, 0, out);
    expect([out.fault, out.faultStage, out.faultLevel]).toEqual(['external-abort-on-walk', 1, 2]);
    expect(out.walkPa).toBe(entry4k(0x1000, va, 2));
    walker.walkStage1(compileStage1({ granule: 4096, inputSize: 48, outputSize: 48, tableBase: 0x2000 }), va, 0, out);
    expect([out.fault, out.faultLevel, out.walkPa]).toEqual(['external-abort-on-walk', 0, entry4k(0x2000, va, 0)]);
  });

  it('resets the caller-owned result on every walk', () => {
    walker.walkStage1(s1(), va, 0, out);
    expect(out.fault).toBe('translation');
    chain();
    put(entry4k(T3, va, 3), 0x1000n | PAGE | AF | ap(1));
    expect(walker.walkStage1(s1(), va, 0, out)).toBe(true);
    expect([out.fault, out.faultStage, out.faultLevel, out.walkPa]).toEqual([null, 0, 0, -1]);
  });
});

describe('other granules', () => {
  it('walks 16K tables: pages, 32M blocks, and no level 1 blocks', () => {
    // ias 47: start at level 1 with 2048 entries; L1 [46:36], L2 [35:25], L3 [24:14].
    const s1 = compileStage1({ granule: 16384, inputSize: 47, outputSize: 48, tableBase: RAM });
    const L2 = RAM + 0x4000;
    const L3 = RAM + 0x8000;
    const va = 0x5678_9abc_def0;
    put(RAM + idx(va, 36, 11) * 8, BigInt(L2) | TABLE);
    put(L2 + idx(va, 25, 11) * 8, BigInt(L3) | TABLE);
    put(L3 + idx(va, 14, 11) * 8, 0x12_3456_c000n | PAGE | AF | ap(1));
    expect(walker.walkStage1(s1, va, 0, out)).toBe(true);
    expect(out.pa).toBe(0x12_3456_c000 + (va % 0x4000));
    expect([out.level, out.blockSize]).toEqual([3, 0x4000]);

    put(L2 + idx(va, 25, 11) * 8, 0x40_0200_0000n | BLOCK | AF | ap(1));
    expect(walker.walkStage1(s1, va, 0, out)).toBe(true);
    expect(out.pa).toBe(0x40_0200_0000 + (va % 0x200_0000));
    expect([out.level, out.blockSize]).toEqual([2, 0x200_0000]);

    put(RAM + idx(va, 36, 11) * 8, 0n | BLOCK | AF);
    walker.walkStage1(s1, va, 0, out);
    expect([out.fault, out.faultLevel]).toEqual(['translation', 1]);
  });

  it('walks 64K tables with a 52-bit output: OA[51:48] in bits [15:12], 4TB level 1 blocks', () => {
    // ias 48: start at level 1 with 64 entries; L1 [47:42], L2 [41:29], L3 [28:16].
    const s152 = compileStage1({ granule: 65536, inputSize: 48, outputSize: 52, tableBase: RAM });
    const s148 = compileStage1({ granule: 65536, inputSize: 48, outputSize: 48, tableBase: RAM });
    const L2 = RAM + 0x10000;
    const L3 = RAM + 0x20000;
    const va = 0xfedc_ba98_7654;
    put(RAM + idx(va, 42, 6) * 8, BigInt(L2) | TABLE);
    put(L2 + idx(va, 29, 13) * 8, BigInt(L3) | TABLE);
    // PA 0xA_BCDE_F012_0000: bits [47:16] in place, [51:48] = 0xA in descriptor bits [15:12].
    put(L3 + idx(va, 16, 13) * 8, 0xbcde_f012_0000n | (0xan << 12n) | PAGE | AF | ap(1));
    expect(walker.walkStage1(s152, va, 0, out)).toBe(true);
    expect(out.pa).toBe(0xa_bcde_f012_0000 + (va % 0x10000));
    walker.walkStage1(s148, va, 0, out);
    expect([out.fault, out.faultLevel]).toEqual(['address-size', 3]);

    put(RAM + idx(va, 42, 6) * 8, 0xc00_0000_0000n | (0x1n << 12n) | BLOCK | AF | ap(1));
    expect(walker.walkStage1(s152, va, 0, out)).toBe(true);
    expect(out.pa).toBe(2 ** 48 + 0xc00_0000_0000 + (va % 2 ** 42));
    expect([out.level, out.blockSize]).toEqual([1, 2 ** 42]);
    walker.walkStage1(s148, va, 0, out);
    expect([out.fault, out.faultLevel]).toEqual(['translation', 1]);
  });
});

describe('stage 2', () => {
  it('starts at level 1 with two concatenated tables and applies S2AP, XN and MemAttr', () => {
    // 4K, ias 40, oas 40: level 0 is not allowed, so level 1 indexes 1024 entries over two tables.
    const s2 = compileStage2({ granule: 4096, inputSize: 40, outputSize: 40, startLevel: 1, tableBase: RAM });
    const ipa = 0x80_4000_1234; // L1 index 513: the second table's entry 1
    const ptep = RAM + 0x1000 + 8;
    const cases: [number, boolean, number][] = [
      [0, false, PERM_X],
      [1, false, PERM_R | PERM_X],
      [2, false, PERM_W | PERM_X],
      [3, false, PERM_R | PERM_W | PERM_X],
      [3, true, PERM_R | PERM_W],
    ];
    for (const [s2ap, xn, perms] of cases) {
      put(ptep, 0x23_4000_0000n | BLOCK | AF | ap(s2ap) | memAttr(0xf) | sh(3) | (xn ? UXN : 0n));
      walker.walkStage2(s2, ipa, 0, out);
      expect(out.s2Perms, `S2AP=${s2ap} XN=${xn}`).toBe(perms);
      for (const [acc, bit] of [[0, PERM_R], [ACCESS_WRITE, PERM_W], [ACCESS_INSTR, PERM_X]] as const) {
        const okay = walker.walkStage2(s2, ipa, acc, out);
        expect(okay).toBe((perms & bit) !== 0);
        if (!okay) expect([out.fault, out.faultStage, out.faultLevel]).toEqual(['permission', 2, 1]);
      }
    }
    walker.walkStage2(s2, ipa, 0, out);
    expect(out.pa).toBe(0x23_4000_1234);
    expect(out.ipa).toBe(ipa);
    expect([out.level, out.blockSize, out.s2Level, out.s2BlockSize]).toEqual([1, 2 ** 30, 1, 2 ** 30]);
    expect([out.memAttr, out.s2Sh, out.s2ap, out.s2xn]).toEqual([0xf, 3, 3, true]);

    walker.walkStage2(s2, 2 ** 40, 0, out);
    expect([out.fault, out.faultStage, out.faultLevel]).toEqual(['translation', 2, 0]);
  });
});

describe('nested', () => {
  // Stage 2: 4K, ias 39, start level 1. IPA [0x1000_0000, +2M) holds the stage 1 tables and maps to
  // PA RAM + 0x40_0000; IPA 0x2000_0000 (2M) maps to PA 0x9000_0000 read-only.
  const S2L1 = RAM;
  const S2L2 = RAM + 0x1000;
  const TABLE_IPA = 0x1000_0000;
  const TABLE_PA = RAM + 0x40_0000;
  const OUT_IPA = 0x2000_0000;
  const va = 0x0000_7654_3210_9876;
  const s1Ipa = (pa: number) => pa - TABLE_PA + TABLE_IPA;

  let s1: ReturnType<typeof compileStage1>;
  let s2: ReturnType<typeof compileStage2>;

  beforeEach(() => {
    s2 = compileStage2({ granule: 4096, inputSize: 39, outputSize: 48, startLevel: 1, tableBase: S2L1 });
    s1 = compileStage1({ granule: 4096, inputSize: 48, outputSize: 48, tableBase: TABLE_IPA });
    put(entry4k(S2L1, TABLE_IPA, 1), BigInt(S2L2) | TABLE);
    put(entry4k(S2L2, TABLE_IPA, 2), BigInt(TABLE_PA) | BLOCK | AF | ap(3));
    put(entry4k(S2L2, OUT_IPA, 2), 0x9000_0000n | BLOCK | AF | ap(1));
    const [p0, p1, p2, p3] = [TABLE_PA, TABLE_PA + 0x1000, TABLE_PA + 0x2000, TABLE_PA + 0x3000];
    put(entry4k(p0, va, 0), BigInt(s1Ipa(p1)) | TABLE);
    put(entry4k(p1, va, 1), BigInt(s1Ipa(p2)) | TABLE);
    put(entry4k(p2, va, 2), BigInt(s1Ipa(p3)) | TABLE);
    put(entry4k(p3, va, 3), BigInt(OUT_IPA + 0x5000) | PAGE | AF | ap(1));
  });

  it('translates the stage 1 tables and output through stage 2', () => {
    expect(walker.walkNested(s1, s2, va, 0, out)).toBe(true);
    expect(out.ipa).toBe(OUT_IPA + 0x5876);
    expect(out.pa).toBe(0x9000_5876);
    expect([out.level, out.s2Level, out.blockSize]).toEqual([3, 2, 0x1000]);
    expect(out.s1Perms).toBe(PERM_R | PERM_W | PERM_X);
    expect(out.s2Perms).toBe(PERM_R | PERM_X);
    expect(out.perms).toBe(PERM_R | PERM_X);
  });

  it('reports a stage 2 fault on the output with the IPA', () => {
    expect(walker.walkNested(s1, s2, va, ACCESS_WRITE, out)).toBe(false);
    expect([out.fault, out.faultStage, out.faultLevel, out.s1ptw, out.ipa]).toEqual(['permission', 2, 2, false, OUT_IPA + 0x5876]);
    put(entry4k(S2L2, OUT_IPA, 2), 0n);
    walker.walkNested(s1, s2, va, 0, out);
    expect([out.fault, out.faultStage, out.faultLevel, out.s1ptw]).toEqual(['translation', 2, 2, false]);
  });

  it('reports a stage 1 permission fault before looking at stage 2', () => {
    put(entry4k(TABLE_PA + 0x3000, va, 3), BigInt(0x3000_0000) | PAGE | AF | ap(3)); // IPA unmapped at stage 2
    walker.walkNested(s1, s2, va, ACCESS_WRITE, out);
    expect([out.fault, out.faultStage, out.faultLevel]).toEqual(['permission', 1, 3]);
  });

  it('reports stage 2 faults on stage 1 table fetches as s1ptw with the descriptor IPA', () => {
    // Move the level 2 table's IPA out of stage 2's reach.
    put(entry4k(TABLE_PA + 0x1000, va, 1), BigInt(0x3000_0000) | TABLE);
    walker.walkNested(s1, s2, va, 0, out);
    expect([out.fault, out.faultStage, out.faultLevel, out.s1ptw]).toEqual(['translation', 2, 2, true]);
    expect(out.ipa).toBe(entry4k(0x3000_0000, va, 2));
    expect(out.level).toBe(2);

    // Stage 2 grants the table region write-only: the (read) table walk faults on permission.
    put(entry4k(S2L2, TABLE_IPA, 2), BigInt(TABLE_PA) | BLOCK | AF | ap(2));
    walker.walkNested(s1, s2, va, 0, out);
    expect([out.fault, out.faultStage, out.s1ptw, out.ipa]).toEqual(['permission', 2, true, TABLE_IPA + idx(va, 39, 9) * 8]);
  });

  it('reports an external abort on a stage 2 table read during the stage 1 walk', () => {
    put(entry4k(S2L1, TABLE_IPA, 1), 0x3000n | TABLE); // no RAM there
    walker.walkNested(s1, s2, va, 0, out);
    expect([out.fault, out.faultStage, out.faultLevel, out.s1ptw]).toEqual(['external-abort-on-walk', 2, 2, true]);
    expect(out.walkPa).toBe(entry4k(0x3000, TABLE_IPA, 2));
  });
});

describe('valid bit', () => {
  it('treats a descriptor with bit[0] clear as invalid whatever else it holds', () => {
    const s1 = compileStage1({ granule: 4096, inputSize: 48, outputSize: 48, tableBase: T0 });
    put(entry4k(T0, 0, 0), (BigInt(T1) | TABLE) & ~VALID);
    walker.walkStage1(s1, 0, 0, out);
    expect([out.fault, out.faultLevel]).toEqual(['translation', 0]);
  });
});
