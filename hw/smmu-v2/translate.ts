/**
 * Translation of one input address through a decoded context bank: TLB first, then a table walk
 * that fills the TLB, then the permission check of the access.
 *
 * Supports: stage 1 (TTBR0/TTBR1 regions), stage 2 only, nested stage 1 + stage 2 (stage 1 table
 * walks translated by stage 2), stage 1 with stage 2 fault (CBAR.TYPE=2: every access that stage 1
 * maps takes a stage 2 translation fault), SCTLR.WXN (writable memory is never executable),
 * global (nG=0) stage 1 entries, and the attributes ATS1* reports in PAR. TLB entries hold the
 * permissions for both privilege levels, so a hit needs no walk whatever the access.
 * Does not support: SCTLR.UWXN and TRE (AArch32 short-descriptor controls), AFE/AFFD
 * (long-descriptor tables always fault on AF=0, as the walker implements), the memory-type and
 * shareability overrides of S2CR/CBAR/SCTLR.
 *
 * A hit allocates nothing: the caller owns the Translation it passes in.
 */
import type { ContextBank, ContextConfig } from './context-bank.js';
import { selectRegion } from './context-bank.js';
import { CBAR_TYPE_S1_TRANS_S2_FAULT } from './regs.js';
import type { Tlb, TlbSet } from './tlb.js';
import { TlbEntry } from './tlb.js';
import type { WalkFaultKind } from '../walker/index.js';
import {
  ACCESS_INSTR,
  ACCESS_PRIV,
  ACCESS_WRITE,
  PERM_R,
  PERM_W,
  PERM_X,
  TranslationTableWalker,
  WalkResult,
} from '../walker/index.js';

const PERM_ALL = PERM_R | PERM_W | PERM_X;

/** The outcome of translating one address; reused by its owner. */
export class Translation {
  ok = false;
  /** Output address of the input address. */
  pa = 0;
  /** First input address past the block that maps it (the mapping is contiguous up to there). */
  blockEnd = 0;
  /** PAR attributes: MAIR attribute byte, shareability, non-secure. */
  attr = 0;
  sh = 0;
  ns = false;
  /** True when the result came from the TLB. */
  hit = false;

  // Fault (ok = false).
  kind: WalkFaultKind = 'translation';
  stage = 1;
  level = 0;
  /** FSYNR0.PTWF: the fault happened fetching a descriptor (external abort, or stage 2 of a table fetch). */
  ptwf = false;
  /** The IPA involved in a stage 2 fault (for FAR/IPAFAR of the stage 2 bank), -1 if none. */
  ipa = -1;
  /** The bank that records the fault (the stage 2 bank of a nested translation for stage 2 faults). */
  faultCb = 0;

  fault(kind: WalkFaultKind, stage: number, level: number, cb: number): void {
    this.ok = false;
    this.kind = kind;
    this.stage = stage;
    this.level = level;
    this.ptwf = false;
    this.ipa = -1;
    this.faultCb = cb;
  }
}

/** The PERM_* bit an access needs. */
export function neededPerm(access: number): number {
  return access & ACCESS_WRITE ? PERM_W : access & ACCESS_INSTR ? PERM_X : PERM_R;
}

export class Translator {
  private readonly walk = new WalkResult();

  constructor(
    private readonly walker: TranslationTableWalker,
    private readonly tlb: Tlb,
  ) {}

  /**
   * Translate `va` through bank `bank` (decoded as `cfg`, status CFG_OK) for `access` (ACCESS_*).
   * `fill` false: look up and walk without caching the result (address translation operations).
   */
  translate(bank: ContextBank, cfg: ContextConfig, va: number, access: number, out: Translation, fill = true): void {
    const set = cfg.tlbSet!;
    let e = set.lookup(va);
    if (e === null && cfg.tlbGlobal !== null) e = cfg.tlbGlobal.lookup(va);
    if (e !== null) {
      this.tlb.stats.hits++;
      out.hit = true;
      this.fromEntry(e, va, access, bank.index, cfg, out);
      return;
    }
    this.tlb.stats.misses++;
    out.hit = false;
    this.walkAndFill(bank, cfg, va, access, out, fill);
  }

  private fromEntry(e: TlbEntry, va: number, access: number, cb: number, cfg: ContextConfig, out: Translation): void {
    const need = neededPerm(access);
    const priv = (access & ACCESS_PRIV) !== 0;
    const perms = priv ? e.permsPriv : e.permsUser;
    if ((perms & need) === 0) {
      const s1 = priv ? e.s1PermsPriv : e.s1PermsUser;
      if (s1 & need) {
        out.fault('permission', 2, e.s2Level, cfg.s2Cb >= 0 ? cfg.s2Cb : cb);
        out.ipa = e.s2Base + (va % e.blockSize);
      } else {
        out.fault('permission', 1, e.level, cb);
      }
      return;
    }
    const base = e.blockNumber * e.blockSize;
    out.ok = true;
    out.pa = e.outBase + (va - base);
    out.blockEnd = base + e.blockSize;
    out.attr = e.attr;
    out.sh = e.sh;
    out.ns = e.ns;
  }

  private walkAndFill(bank: ContextBank, cfg: ContextConfig, va: number, access: number, out: Translation, fill: boolean): void {
    const w = this.walk;
    const cb = bank.index;
    const s1 = cfg.stage1;
    let ok: boolean;
    if (!s1) {
      // Stage 2 only (or a nested bank with stage 1 disabled: decode left it a stage 2).
      ok = this.walker.walkStage2(cfg.s2!, va, access, w);
    } else {
      // No region for the input (out of range, or disabled by TCR.EPDn): a translation fault, no walk.
      const region = selectRegion(cfg, va);
      if (region === null) {
        out.fault('translation', 1, 0, cb);
        return;
      }
      const input = cfg.regionInput;
      ok = cfg.s2 !== null
        ? this.walker.walkNested(region, cfg.s2, input, access, w)
        : this.walker.walkStage1(region, input, access, w);
    }
    if (!ok) {
      const stage = w.faultStage;
      out.fault(w.fault!, stage, w.faultLevel, stage === 2 && cfg.s2Cb >= 0 ? cfg.s2Cb : cb);
      out.ptwf = w.fault === 'external-abort-on-walk' || w.s1ptw;
      if (stage === 2) out.ipa = w.ipa >= 0 ? w.ipa : va;
      return;
    }
    if (s1 && cfg.type === CBAR_TYPE_S1_TRANS_S2_FAULT) {
      out.fault('translation', 2, 0, cb);
      out.ipa = w.pa;
      return;
    }

    // Permissions for both privilege levels, so the entry serves any later access.
    let s1Priv = PERM_ALL;
    let s1User = PERM_ALL;
    if (s1) {
      const ro = (w.ap & 2) !== 0;
      const el0 = (w.ap & 1) !== 0;
      s1Priv = PERM_R | (ro ? 0 : PERM_W) | (w.pxn || (el0 && !ro) ? 0 : PERM_X);
      s1User = (el0 ? PERM_R : 0) | (el0 && !ro ? PERM_W : 0) | (w.uxn ? 0 : PERM_X);
      if (cfg.wxn) {
        if (s1Priv & PERM_W) s1Priv &= ~PERM_X;
        if (s1User & PERM_W) s1User &= ~PERM_X;
      }
    }
    const s2 = cfg.s2 !== null ? w.s2Perms : PERM_ALL;
    const blockSize = w.blockSize;
    const e = new TlbEntry();
    e.blockSize = blockSize;
    e.blockNumber = Math.floor(va / blockSize);
    e.outBase = w.pa - (va % blockSize);
    e.s1PermsPriv = s1Priv;
    e.s1PermsUser = s1User;
    e.permsPriv = s1Priv & s2;
    e.permsUser = s1User & s2;
    e.level = s1 ? w.level : w.s2Level;
    e.s2Level = w.s2Level;
    if (cfg.s2 !== null) {
      const ipa = s1 ? w.ipa : va;
      e.s2Base = ipa - (ipa % w.s2BlockSize);
      e.s2Size = w.s2BlockSize;
    }
    e.attr = s1 ? bank.mairAttr(w.attrIndx) : w.memAttr;
    e.sh = s1 ? w.sh : w.s2Sh;
    e.ns = w.ns;
    // The walker checked the access without SCTLR.WXN; the entry's permissions have the last word.
    this.fromEntry(e, va, access, cb, cfg, out);
    if (fill) {
      const set: TlbSet = s1 && !w.nG && cfg.tlbGlobal !== null ? cfg.tlbGlobal : cfg.tlbSet!;
      this.tlb.insert(set, e);
    }
  }
}
