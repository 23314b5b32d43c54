/**
 * The hitless STE/CD writer, tested as the kernel's KUnit suite (arm-smmu-v3-test.c) tests it: run
 * `armSmmuWriteEntry` on a copy of an entry with a sync hook that records every state the hardware
 * could observe, and check that
 * - a hitless transition never shows qword 0 cleared (V=0), and every observed state equals either the
 *   initial or the target entry in the bits the observed state itself uses;
 * - a disruptive transition does clear it;
 * - the number of syncs is what each transition needs;
 * - the final entry is the target, word for word.
 * The transitions are the ones the driver performs: abort/bypass/CD-table/S2 STEs, S1DSS and EATS
 * changes, stall variants, and CD install/clear, ASID change and the SVA "quiet" CD.
 */
import { describe, expect, it } from 'vitest';
import { armSmmuGetCdUsed, armSmmuMakeQuietCd, armSmmuMakeS1Cd } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-cd.js';
import { armSmmuEntryQwordDiff, armSmmuWriteEntry, newEntry, type ArmSmmuEntryWriter } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-entry.js';
import {
  ARM_SMMU_FEAT_ATTR_TYPES_OVR,
  ARM_SMMU_FEAT_STALLS,
  STRTAB_STE_0_S1FMT_64K_L2,
  STRTAB_STE_1_S1DSS_BYPASS,
  STRTAB_STE_1_S1DSS_SSID0,
  STRTAB_STE_1_S1DSS_TERMINATE,
  STRTAB_STE_1_S1STALLD,
  STRTAB_STE_1_EATS,
  STRTAB_STE_1_EATS_S1CHK,
  STRTAB_STE_1_EATS_TRANS,
  STRTAB_STE_1_MEV,
  STRTAB_STE_0_CFG,
  STRTAB_STE_0_CFG_NESTED,
  STRTAB_STE_2_S2S,
} from '../../../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import {
  armSmmuGetSteUpdateSafe,
  armSmmuGetSteUsed,
  armSmmuMakeAbortSte,
  armSmmuMakeBypassSte,
  armSmmuMakeCdtableSte,
  armSmmuMakeS2DomainSte,
  type SteMaster,
} from '../../../drivers/arm-smmu-v3/arm-smmu-v3-ste.js';

const FEATURES = ARM_SMMU_FEAT_STALLS | ARM_SMMU_FEAT_ATTR_TYPES_OVR;
const CDTAB = 0xf0f0_f0f0_f000;

/** The writer hooks of one entry type: STE (used + update-safe bits) or CD (used bits only). */
type Getter = Pick<ArmSmmuEntryWriter, 'getUsed' | 'getUpdateSafe'>;
const STE: Getter = { getUsed: armSmmuGetSteUsed, getUpdateSafe: armSmmuGetSteUpdateSafe };
const CD: Getter = { getUsed: armSmmuGetCdUsed };

/**
 * Bits of `entry` selected by `used`, less the update-safe ones, differ from `target` (as the kernel
 * test compares).
 */
function differsInUsedBits(entry: Uint32Array, used: Uint32Array, target: Uint32Array, safe: Uint32Array): boolean {
  for (let w = 0; w < 16; w++) {
    const u = (used[w]! & ~safe[w]!) >>> 0;
    if (((entry[w]! & u) >>> 0) !== ((target[w]! & u) >>> 0)) return true;
  }
  return false;
}

interface Outcome {
  syncs: number;
  invalidWritten: boolean;
  /** Observed states that were neither the old nor the new configuration. */
  torn: number;
  final: Uint32Array;
}

async function transition(getUsed: Getter, cur: Uint32Array, target: Uint32Array): Promise<Outcome> {
  const entry = cur.slice();
  const out: Outcome = { syncs: 0, invalidWritten: false, torn: 0, final: entry };
  const writer: ArmSmmuEntryWriter = {
    ...getUsed,
    sync: () => {
      out.syncs++;
      if (entry[0] === 0 && entry[1] === 0) {
        out.invalidWritten = true;
        return;
      }
      const used = newEntry();
      const safeInit = newEntry();
      const safeTarget = newEntry();
      getUsed.getUsed(entry, used);
      getUsed.getUpdateSafe?.(entry, cur, safeInit);
      getUsed.getUpdateSafe?.(entry, target, safeTarget);
      if (differsInUsedBits(entry, used, cur, safeInit) && differsInUsedBits(entry, used, target, safeTarget)) out.torn++;
    },
  };
  await armSmmuWriteEntry(writer, entry, target);
  return out;
}

async function expectHitless(getUsed: Getter, cur: Uint32Array, target: Uint32Array, syncs: number): Promise<void> {
  const o = await transition(getUsed, cur, target);
  expect(o.invalidWritten).toBe(false);
  expect(o.torn).toBe(0);
  expect(o.syncs).toBe(syncs);
  expect([...o.final]).toEqual([...target]);
}

async function expectDisruptive(getUsed: Getter, cur: Uint32Array, target: Uint32Array, syncs: number): Promise<void> {
  const o = await transition(getUsed, cur, target);
  expect(o.invalidWritten).toBe(true);
  expect(o.syncs).toBe(syncs);
  expect([...o.final]).toEqual([...target]);
}

function abortSte(): Uint32Array {
  const t = newEntry();
  armSmmuMakeAbortSte(t);
  return t;
}

function bypassSte(): Uint32Array {
  const t = newEntry();
  armSmmuMakeBypassSte(FEATURES, t);
  return t;
}

function master(stall = false, cdtabDma = CDTAB): SteMaster {
  return { features: FEATURES, stallEnabled: stall, cdTable: { cdtabDma, s1fmt: STRTAB_STE_0_S1FMT_64K_L2, s1cdmax: 8 } };
}

function cdtableSte(s1dss: number, ats = true, stall = false, cdtabDma = CDTAB): Uint32Array {
  const t = newEntry();
  armSmmuMakeCdtableSte(t, master(stall, cdtabDma), ats, s1dss);
  return t;
}

function s2Ste(ats = true, stall = false, vmid = 0): Uint32Array {
  const t = newEntry();
  armSmmuMakeS2DomainSte(t, master(stall), { vmid, vttbr: 0xdead_beef_000, vtcr: { ps: 1, tg: 2, sh: 3, orgn: 1, irgn: 2, sl: 3, tsz: 4 } }, ats);
  return t;
}

/**
 * A nested STE as the kernel test builds one: the CD-table STE with Config=nested and MEV, over
 * qwords 2..7 of the stage-2 STE (same ATS setting).
 */
function nestedSte(s1dss: number, ats: boolean): Uint32Array {
  const t = cdtableSte(s1dss, ats);
  STRTAB_STE_0_CFG.set(t, STRTAB_STE_0_CFG_NESTED);
  STRTAB_STE_1_MEV.prep(t, 1);
  const s2 = s2Ste(ats);
  for (let w = 4; w < 16; w++) t[w] = s2[w]!;
  return t;
}

function s1Cd(asid: number, stall = false): Uint32Array {
  const t = newEntry();
  armSmmuMakeS1Cd(t, stall, {
    asid,
    s1: { ttbr: 0xdead_beef_000, tcr: { ips: 1, tg: 2, sh: 3, orgn: 1, irgn: 2, tsz: 4, epd1: true }, mair: 0xabcdef012345678n },
  });
  return t;
}

describe('STE transitions (kernel KUnit cases)', () => {
  it('bypass -> abort and back: hitless, 2 syncs each', async () => {
    await expectHitless(STE, bypassSte(), abortSte(), 2);
    await expectHitless(STE, abortSte(), bypassSte(), 2);
  });

  it('CD table <-> abort: hitless, 2 syncs', async () => {
    await expectHitless(STE, cdtableSte(STRTAB_STE_1_S1DSS_SSID0), abortSte(), 2);
    await expectHitless(STE, abortSte(), cdtableSte(STRTAB_STE_1_S1DSS_SSID0), 2);
  });

  it('CD table <-> bypass: hitless, 3 syncs', async () => {
    await expectHitless(STE, cdtableSte(STRTAB_STE_1_S1DSS_SSID0), bypassSte(), 3);
    await expectHitless(STE, bypassSte(), cdtableSte(STRTAB_STE_1_S1DSS_SSID0), 3);
  });

  it('S1DSS flip on a CD-table STE: one write, one sync', async () => {
    await expectHitless(STE, cdtableSte(STRTAB_STE_1_S1DSS_SSID0), cdtableSte(STRTAB_STE_1_S1DSS_BYPASS), 1);
    await expectHitless(STE, cdtableSte(STRTAB_STE_1_S1DSS_BYPASS), cdtableSte(STRTAB_STE_1_S1DSS_SSID0), 1);
  });

  it('S1DSS bypass <-> bypass STE: hitless, 2 syncs', async () => {
    await expectHitless(STE, cdtableSte(STRTAB_STE_1_S1DSS_BYPASS), bypassSte(), 2);
    await expectHitless(STE, bypassSte(), cdtableSte(STRTAB_STE_1_S1DSS_BYPASS), 2);
  });

  it('S2 <-> abort and S2 <-> bypass: hitless, 2 syncs', async () => {
    await expectHitless(STE, s2Ste(), abortSte(), 2);
    await expectHitless(STE, abortSte(), s2Ste(), 2);
    await expectHitless(STE, s2Ste(), bypassSte(), 2);
    await expectHitless(STE, bypassSte(), s2Ste(), 2);
  });

  it('S1 (CD table) <-> S2 with VMID 0 (the KUnit fixture): hitless, 3 syncs, with and without stall', async () => {
    await expectHitless(STE, cdtableSte(STRTAB_STE_1_S1DSS_SSID0), s2Ste(), 3);
    await expectHitless(STE, s2Ste(), cdtableSte(STRTAB_STE_1_S1DSS_SSID0), 3);
    await expectHitless(STE, cdtableSte(STRTAB_STE_1_S1DSS_SSID0, false, true), s2Ste(false, true), 3);
    await expectHitless(STE, s2Ste(false, true), cdtableSte(STRTAB_STE_1_S1DSS_SSID0, false, true), 3);
  });

  it('S1 (CD table, VMID 0) <-> S2 with a real VMID: qwords 0 and 2 both change, so disruptive', async () => {
    await expectDisruptive(STE, cdtableSte(STRTAB_STE_1_S1DSS_SSID0), s2Ste(true, false, 5), 3);
    await expectDisruptive(STE, s2Ste(true, false, 5), cdtableSte(STRTAB_STE_1_S1DSS_SSID0), 3);
  });

  it('changing the CD table pointer and S1DSS together is disruptive: V=0, 3 syncs', async () => {
    await expectDisruptive(STE, cdtableSte(STRTAB_STE_1_S1DSS_SSID0), cdtableSte(STRTAB_STE_1_S1DSS_BYPASS, true, false, 0x4b_4b4b_4b40), 3);
  });

  it('ATS on/off (EATS) on a live CD-table STE: one sync', async () => {
    const off = cdtableSte(STRTAB_STE_1_S1DSS_SSID0, false);
    const on = cdtableSte(STRTAB_STE_1_S1DSS_SSID0, true);
    expect(STRTAB_STE_1_EATS.get(on)).toBe(1);
    await expectHitless(STE, off, on, 1);
    await expectHitless(STE, on, off, 1);
  });

  it('a master that cannot stall gets S1STALLD; turning stalls on is one sync', async () => {
    const noStall = cdtableSte(STRTAB_STE_1_S1DSS_TERMINATE, false, false);
    const stall = cdtableSte(STRTAB_STE_1_S1DSS_TERMINATE, false, true);
    expect(STRTAB_STE_1_S1STALLD.isSet(noStall)).toBe(true);
    expect(STRTAB_STE_1_S1STALLD.isSet(stall)).toBe(false);
    await expectHitless(STE, noStall, stall, 1);
  });

  it('rewriting an identical STE costs nothing', async () => {
    const o = await transition(STE, s2Ste(), s2Ste());
    expect(o.syncs).toBe(0);
  });

  it('every qword an abort STE does not use is free to change', () => {
    const unused = newEntry();
    // abort -> S2 changes qword 0 (Config) while qwords 1-3 are ignored by the abort STE.
    expect(armSmmuEntryQwordDiff({ ...STE, sync: () => undefined }, abortSte(), s2Ste(), unused)).toBe(0b1);
    // CD table (SSID0) -> CD table (bypass) at another address: qwords 0 and 1 both change.
    expect(armSmmuEntryQwordDiff({ ...STE, sync: () => undefined }, cdtableSte(STRTAB_STE_1_S1DSS_SSID0), cdtableSte(STRTAB_STE_1_S1DSS_BYPASS, true, false, 0x1000), unused)).toBe(0b11);
  });

  it('nested S1DSS-bypass -> S1-bypass (plain S2, ATS off): hitless, 3 syncs (the third clears EATS and MEV)', async () => {
    await expectHitless(STE, nestedSte(STRTAB_STE_1_S1DSS_BYPASS, true), s2Ste(false), 3);
  });

  it('S1-bypass (plain S2, ATS off) -> nested S1DSS-bypass: hitless, 2 syncs', async () => {
    await expectHitless(STE, s2Ste(false), nestedSte(STRTAB_STE_1_S1DSS_BYPASS, true), 2);
  });

  it('without the update-safe bits the nested transitions would break the entry (V=0)', async () => {
    const usedOnly = { getUsed: armSmmuGetSteUsed };
    const o = await transition(usedOnly, nestedSte(STRTAB_STE_1_S1DSS_BYPASS, true), s2Ste(false));
    expect(o.invalidWritten).toBe(true);
  });

  it('update-safe bits: MEV always; EATS_TRANS unless S1CHK or S2S is involved', () => {
    const safe = newEntry();
    armSmmuGetSteUpdateSafe(s2Ste(false), s2Ste(true), safe);
    expect(STRTAB_STE_1_MEV.get(safe)).toBe(1);
    expect(STRTAB_STE_1_EATS.get(safe)).toBe(STRTAB_STE_1_EATS_TRANS);
    const s1chk = s2Ste(false);
    STRTAB_STE_1_EATS.set(s1chk, STRTAB_STE_1_EATS_S1CHK);
    safe.fill(0);
    armSmmuGetSteUpdateSafe(s1chk, s2Ste(true), safe);
    expect(STRTAB_STE_1_EATS.get(safe)).toBe(0);
    expect(STRTAB_STE_1_MEV.get(safe)).toBe(1);
    const stall = s2Ste(false);
    STRTAB_STE_2_S2S.prep(stall, 1);
    safe.fill(0);
    armSmmuGetSteUpdateSafe(s2Ste(true), stall, safe);
    expect(STRTAB_STE_1_EATS.get(safe)).toBe(0);
  });

  it('a builder setting a bit its used function does not cover is refused', async () => {
    const bad = abortSte();
    bad[2] = 1; // qword 1 bit 0 (S1DSS) means nothing in an abort STE
    await expect(transition(STE, abortSte(), bad)).rejects.toThrow(/used mask/);
  });
});

describe('CD transitions', () => {
  it('install and clear of an S1 CD: disruptive (V goes 0 -> 1 / 1 -> 0), 2 syncs', async () => {
    await expectDisruptive(CD, newEntry(), s1Cd(1997), 2);
    await expectDisruptive(CD, s1Cd(1997), newEntry(), 2);
  });

  it('ASID change: hitless, 1 sync', async () => {
    await expectHitless(CD, s1Cd(778), s1Cd(1997), 1);
    await expectHitless(CD, s1Cd(1997), s1Cd(778), 1);
  });

  it('S1 CD <-> quiet CD (SVA mm release): hitless, 2 syncs', async () => {
    const quiet = newEntry();
    armSmmuMakeQuietCd(quiet, s1Cd(1997, true), false);
    await expectHitless(CD, s1Cd(1997, true), quiet, 2);
    await expectHitless(CD, quiet, s1Cd(1997, true), 2);
  });

  it('stall enable on a live CD (CD.S): hitless, 1 sync', async () => {
    await expectHitless(CD, s1Cd(5, false), s1Cd(5, true), 1);
  });
});
