/**
 * SMMUv3 translation of one transaction: STE and CD lookup through the configuration caches,
 * SubstreamID handling, the TLB, and on a miss a stage 1, stage 2 or nested walk by the machine's
 * walker, whose result is cached in the TLB and whose faults become the architected fault outcome.
 *
 * Supports: STE abort (silent) and bypass; SSV/SubstreamID checks against S1CDMax and S1DSS
 * (C_BAD_SUBSTREAMID, F_STREAM_DISABLED, stage 1 bypass for non-substream traffic); PRIVCFG and
 * INSTCFG overrides of PnU/InD; TLB hits (synchronous, allocation-free `translateFast`) and misses;
 * walker faults mapped to F_TRANSLATION / F_ADDR_SIZE / F_ACCESS / F_PERMISSION (with S2, CLASS
 * IN/TT, IPA) and external aborts to F_WALK_EABT (with FetchAddr); the CD/STE A, R, S fault
 * configuration; ATS Translation Requests (full ATS answered from the TLB like any translation,
 * so a stale entry reaches the endpoint until the TLBI that must precede CMD_ATC_INV; split-stage
 * ATS walked).
 * Walks use the TLB contexts' walk caches (stage 1: the CD's context; stage 2: the STE's stage 2
 * context). With IDR3.BBML 1 or 2 a walk whose leaf has nT set is not cached in the TLB (spec
 * 3.21.1.3, 6.3.4).
 * Does not support: a permission fault served from a cached entry whose permissions software
 * upgraded without a TLBI (the model re-walks instead of faulting on the stale entry); TBI.
 */
import { WalkResult, type WalkFaultKind, ACCESS_INSTR, ACCESS_PRIV, ACCESS_WRITE, PERM_R, PERM_W, PERM_X } from '../walker/result.js';
import type { TranslationTableWalker } from '../walker/walker.js';
import { type ConfigCache, type ContextConfig, faultEventType, type StreamConfig } from './config.js';
import * as F from './formats.js';
import { OUT_FAULT, OUT_OK, type Outcome } from './outcome.js';
import type { ResolvedOptions } from './options.js';
import { blockOffset, type Tlb, type TlbContext } from './tlb.js';

export { ACCESS_INSTR, ACCESS_PRIV, ACCESS_WRITE };

const hex = (v: number): string => `0x${v.toString(16)}`;

/** Access flags after the STE's PRIVCFG / INSTCFG overrides (InD applies to reads only). */
export function effectiveAccess(ste: StreamConfig, access: number): number {
  let a = access;
  if (ste.privCfg === 2) a &= ~ACCESS_PRIV;
  else if (ste.privCfg === 3) a |= ACCESS_PRIV;
  if ((a & ACCESS_WRITE) !== 0) a &= ~ACCESS_INSTR;
  else if (ste.instCfg === 2) a &= ~ACCESS_INSTR;
  else if (ste.instCfg === 3) a |= ACCESS_INSTR;
  return a;
}

function needPerm(access: number): number {
  return (access & ACCESS_WRITE) !== 0 ? PERM_W : (access & ACCESS_INSTR) !== 0 ? PERM_X : PERM_R;
}

/** Stage 1 permissions at each privilege from a walk result's AP/PXN/UXN (EL1&0 regime). */
function s1PermsOf(r: WalkResult, priv: boolean): number {
  const ro = (r.ap & 2) !== 0;
  const el0 = (r.ap & 1) !== 0;
  if (priv) return PERM_R | (ro ? 0 : PERM_W) | (r.pxn || (el0 && !ro) ? 0 : PERM_X);
  return (el0 ? PERM_R : 0) | (el0 && !ro ? PERM_W : 0) | (r.uxn ? 0 : PERM_X);
}

/** The reason an ATS Translation Request got no access, per walk fault (made once). */
const ATS_FAULT_DETAIL: Record<WalkFaultKind, string> = {
  translation: 'translation fault',
  'access-flag': 'access-flag fault',
  permission: 'permission fault',
  'address-size': 'address-size fault',
  'external-abort-on-walk': 'external-abort-on-walk fault',
};

/** 2^n for each STE.S1CDMax value n (0..31): the SubstreamIDs a CD table has room for (a table load, not a power, per transaction). */
const SSID_LIMIT: readonly number[] = Array.from({ length: 32 }, (_, n) => 2 ** n);

/** Which translation a (STE, SubstreamID) pair selects, decided before any walk. */
const SEL_BYPASS = 0;
const SEL_S2_ONLY = 1;
const SEL_CD = 2;

/** The result of an ATS Translation Request (see AtsCompletion in hw/dma.ts). */
export interface AtsResult {
  status: 'ok' | 'unsupported' | 'abort';
  pa: number;
  size: number;
  read: boolean;
  write: boolean;
  exec: boolean;
  /** Event to record (F_BAD_ATS_TREQ), or 0. */
  eventType: number;
  detail: string;
}

export interface TranslatorStats {
  walks: number;
}

export class Translator {
  private readonly res = new WalkResult();
  /** CD chosen by the last `select` (valid when it returned SEL_CD). */
  private selCd: ContextConfig | null = null;
  private readonly atsRes: AtsResult = { status: 'abort', pa: 0, size: 0, read: false, write: false, exec: false, eventType: 0, detail: '' };
  readonly stats: TranslatorStats = { walks: 0 };
  /**
   * The context and address whose TLB lookup translateFast just missed: `translate` right after it
   * (the transaction's slow path) need not look again. Cleared by every `translate` and every TLB
   * insert, so it never stands for a lookup that could now hit.
   */
  private missCtx: TlbContext | null = null;
  private missAddr = -1;

  /** IDR3.BBML != 0: leaves with nT set are not cached. */
  private readonly honourNt: boolean;

  constructor(
    private readonly cache: ConfigCache,
    private readonly tlb: Tlb,
    private readonly walker: TranslationTableWalker,
    opts: Pick<ResolvedOptions, 'bbml'> = { bbml: 0 },
  ) {
    this.honourNt = opts.bbml !== 0;
  }

  /**
   * TLB-hit translation: the output PA, or -1 when anything but a cached, permitted translation
   * (or a cached bypass STE) would be needed. Synchronous, allocation-free, no side effects other
   * than the hit counter.
   */
  translateFast(sid: number, ssidValid: boolean, ssid: number, addr: number, access: number): number {
    const ste = this.cache.cachedSte(sid);
    if (ste === undefined || ste.abort) return -1;
    const acc = ste.privCfg === 0 && ste.instCfg === 0 ? access : effectiveAccess(ste, access);
    let ctx: TlbContext;
    if (ssidValid) {
      if (!ste.s1 || ste.s1CdMax === 0 || ssid >= SSID_LIMIT[ste.s1CdMax] || (ssid === 0 && ste.s1dss === F.S1DSS_SSID0)) return -1;
      const cd = ste.cds.get(ssid);
      if (cd === undefined) return -1;
      ctx = cd.tlb;
    } else if (!ste.s1 || (ste.s1CdMax > 0 && ste.s1dss === F.S1DSS_BYPASS)) {
      if (!ste.s2) return addr;
      ctx = ste.s2Tlb!;
    } else {
      if (ste.s1CdMax > 0 && ste.s1dss === F.S1DSS_TERMINATE) return -1;
      const cd = ste.cds.get(0);
      if (cd === undefined) return -1;
      ctx = cd.tlb;
    }
    const e = ctx.lookup(addr);
    if (e === null) {
      this.missCtx = ctx;
      this.missAddr = addr;
      return -1;
    }
    const perms = (acc & ACCESS_PRIV) !== 0 ? e.permsPriv : e.permsUnpriv;
    if ((perms & needPerm(acc)) === 0) return -1;
    this.tlb.stats.hits++;
    return e.pa + (addr - e.base);
  }

  /**
   * Choose the translation for a transaction: bypass, stage 2 only, or a CD (left in selCd).
   * Returns -1 with `out` set when the transaction must be terminated first.
   */
  private select(ste: StreamConfig, ssidValid: boolean, ssid: number, out: Outcome): number {
    let index = 0;
    let s1Bypass = !ste.s1;
    if (ssidValid) {
      if (!ste.s1 || ste.s1CdMax === 0 || ssid >= SSID_LIMIT[ste.s1CdMax]) {
        out.reportSsid = ssid;
        out.setAbort(F.C_BAD_SUBSTREAMID, `StreamID ${ste.sid}: SubstreamID ${ssid} is not valid for this STE`);
        return -1;
      }
      if (ssid === 0 && ste.s1dss === F.S1DSS_SSID0) {
        out.setAbort(F.F_STREAM_DISABLED, `StreamID ${ste.sid}: SubstreamID 0 is reserved (S1DSS == 0b10)`);
        return -1;
      }
      index = ssid;
    } else if (ste.s1 && ste.s1CdMax > 0) {
      if (ste.s1dss === F.S1DSS_TERMINATE) {
        out.setAbort(F.F_STREAM_DISABLED, `StreamID ${ste.sid}: transactions without a SubstreamID are disabled (S1DSS == 0b00)`);
        return -1;
      }
      if (ste.s1dss === F.S1DSS_BYPASS) s1Bypass = true;
    }
    if (s1Bypass) return ste.s2 ? SEL_S2_ONLY : SEL_BYPASS;
    const cd = this.cache.cd(ste, index, out);
    if (cd === null) {
      if (out.reportSsid < 0) out.reportSsid = index;
      return -1;
    }
    this.selCd = cd;
    return SEL_CD;
  }

  /**
   * Full translation of a transaction. On success returns true with `out.pa`; otherwise `out`
   * holds the abort or fault (and the event to record).
   */
  translate(sid: number, ssidValid: boolean, ssid: number, addr: number, access: number, out: Outcome): boolean {
    out.reset();
    const missCtx = this.missCtx;
    this.missCtx = null;
    const ste = this.cache.ste(sid, out);
    if (ste === null) return false;
    if (ste.abort) return out.setAbort(0, `STE ${sid}: Config ${ste.config.toString(2)} aborts all traffic`);
    const sel = this.select(ste, ssidValid, ssid, out);
    if (sel < 0) return false;
    if (sel === SEL_BYPASS) {
      out.kind = OUT_OK;
      out.pa = addr;
      out.bypass = true;
      return true;
    }
    const acc = effectiveAccess(ste, access);
    const cd = sel === SEL_CD ? this.selCd : null;
    const ctx = cd !== null ? cd.tlb : ste.s2Tlb!;
    const e = ctx === missCtx && addr === this.missAddr ? null : ctx.lookup(addr);
    if (e !== null && ((((acc & ACCESS_PRIV) !== 0 ? e.permsPriv : e.permsUnpriv) & needPerm(acc)) !== 0)) {
      this.tlb.stats.hits++;
      out.pa = e.pa + (addr - e.base);
      return true;
    }
    this.tlb.stats.misses++;
    return this.walk(ste, cd, ctx, addr, acc, out);
  }

  /**
   * Stage 2 translation of an IPA for an ATS Translated transaction under split-stage ATS
   * (STE.EATS == 0b10): the endpoint's ATC holds stage 1 output, the SMMU applies stage 2.
   */
  translateStage2(ste: StreamConfig, ipa: number, access: number, out: Outcome): boolean {
    out.reset();
    const acc = effectiveAccess(ste, access);
    const ctx = ste.s2Tlb!;
    const e = ctx.lookup(ipa);
    if (e !== null && (((acc & ACCESS_PRIV) !== 0 ? e.permsPriv : e.permsUnpriv) & needPerm(acc)) !== 0) {
      this.tlb.stats.hits++;
      out.pa = e.pa + (ipa - e.base);
      return true;
    }
    this.tlb.stats.misses++;
    return this.walk(ste, null, ctx, ipa, acc, out);
  }

  /** Walk, cache the result, or turn the walker's fault into the outcome. */
  private walk(ste: StreamConfig, cd: ContextConfig | null, ctx: TlbContext, addr: number, acc: number, out: Outcome): boolean {
    const r = this.res;
    this.stats.walks++;
    let ok: boolean;
    if (cd !== null) {
      if (cd.s1 === null) {
        // CD.EPD0: a TLB miss in the TTB0 region is a Translation fault without a walk.
        r.reset(addr);
        r.fault = 'translation';
        r.faultStage = 1;
        ok = false;
      } else if (ste.s2cfg !== null) ok = this.walker.walkNested(cd.s1, ste.s2cfg, addr, acc, r, cd.tlb, ste.s2Tlb);
      else ok = this.walker.walkStage1(cd.s1, addr, acc, r, cd.tlb);
    } else {
      ok = this.walker.walkStage2(ste.s2cfg!, addr, acc, r, ste.s2Tlb);
    }
    if (ok) {
      this.insert(ste, cd, ctx, addr, r);
      out.pa = r.pa;
      return true;
    }
    this.fault(ste, cd, addr, r, out);
    return false;
  }

  private insert(ste: StreamConfig, cd: ContextConfig | null, ctx: TlbContext, addr: number, r: WalkResult): void {
    this.missCtx = null;
    if (r.nT && this.honourNt) return; // FEAT_BBM nT: the translation is used but not cached
    let priv: number;
    let unpriv: number;
    if (cd !== null) {
      priv = s1PermsOf(r, true);
      unpriv = s1PermsOf(r, false);
      if (ste.s2) {
        priv &= r.s2Perms;
        unpriv &= r.s2Perms;
      }
    } else {
      priv = r.s2Perms;
      unpriv = r.s2Perms;
    }
    const granuleShift = cd !== null ? cd.s1!.granuleShift : ste.s2cfg!.granuleShift;
    this.tlb.insert(ctx, cd !== null && !r.nG, addr, r.blockSize, r.pa - blockOffset(addr, r.blockSize), priv, unpriv, granuleShift, r.level);
  }

  private fault(ste: StreamConfig, cd: ContextConfig | null, addr: number, r: WalkResult, out: Outcome): void {
    const kind = r.fault ?? 'translation';
    const s2 = r.faultStage === 2;
    out.s2 = s2;
    out.ipa = s2 ? r.ipa : -1;
    if (kind === 'external-abort-on-walk') {
      out.cls = s2 && !r.s1ptw ? F.CLASS_IN : F.CLASS_TT;
      out.fetchAddr = r.walkPa;
      out.setAbort(F.F_WALK_EABT, `${s2 ? 'stage 2' : 'stage 1'} table walk for ${hex(addr)} aborted reading PA ${hex(r.walkPa)}`);
      return;
    }
    out.kind = OUT_FAULT;
    out.eventType = faultEventType(kind);
    out.cls = s2 && r.s1ptw ? F.CLASS_TT : F.CLASS_IN;
    if (s2) {
      out.stall = ste.s2Stall;
      out.record = ste.s2Record || ste.s2Stall;
      out.abort = true;
    } else {
      out.stall = cd!.stall;
      out.record = cd!.record || cd!.stall;
      out.abort = cd!.abort;
    }
    out.setWalkFaultDetail(kind, r.faultLevel, addr);
  }

  /**
   * An ATS Translation Request. `eats` decides full (all stages) or split-stage (stage 1 output,
   * an IPA). Translation-related faults answer "no access" (read = write = false) and record
   * nothing; configuration problems answer Completer Abort without an event; a disallowed request
   * answers Unsupported Request and records F_BAD_ATS_TREQ.
   */
  atsTranslate(sid: number, ssidValid: boolean, ssid: number, addr: number, write: boolean, exec: boolean, priv: boolean, out: Outcome): AtsResult {
    // One result, overwritten by each request: the caller reads it before the next one.
    const res = this.atsRes;
    res.status = 'abort';
    res.pa = 0;
    res.size = 0;
    res.read = false;
    res.write = false;
    res.exec = false;
    res.eventType = 0;
    res.detail = '';
    out.reset();
    const ste = this.cache.ste(sid, out);
    if (ste === null) {
      res.detail = `configuration error: ${out.detail}`;
      return res;
    }
    if (ste.abort) {
      res.status = 'unsupported';
      res.detail = `STE ${sid} aborts all traffic`;
      return res;
    }
    if (ste.eats === F.EATS_ABT) {
      res.status = 'unsupported';
      res.eventType = F.F_BAD_ATS_TREQ;
      res.detail = `STE ${sid} does not allow ATS (effective EATS == 0b00)`;
      return res;
    }
    const sel = this.select(ste, ssidValid, ssid, out);
    if (sel < 0) {
      res.detail = out.detail;
      return res;
    }
    let acc = priv ? ACCESS_PRIV : 0;
    acc = effectiveAccess(ste, acc);
    const split = ste.eats === F.EATS_S1CHK;
    const cd = sel === SEL_CD ? this.selCd : null;
    const r = this.res;
    let ok: boolean;
    if (sel === SEL_BYPASS || (split && cd === null)) {
      // Stage 1 bypassed (S1DSS) and, for split-stage, stage 2 is left to Translated traffic.
      res.status = 'ok';
      res.pa = addr - (addr % 4096);
      res.size = 4096;
      res.read = true;
      res.write = write;
      res.exec = exec;
      return res;
    }
    if (!split) {
      // Full ATS answers from the SMMU TLB like any other translation (so a stale entry is
      // handed to the endpoint until the TLBI that must precede CMD_ATC_INV).
      const e = (cd !== null ? cd.tlb : ste.s2Tlb!).lookup(addr);
      if (e !== null) {
        this.tlb.stats.hits++;
        const p = (acc & ACCESS_PRIV) !== 0 ? e.permsPriv : e.permsUnpriv;
        res.status = 'ok';
        res.size = e.size;
        res.pa = e.pa;
        res.read = (p & PERM_R) !== 0;
        res.write = write && (p & PERM_W) !== 0;
        res.exec = exec && (p & PERM_X) !== 0;
        return res;
      }
      this.tlb.stats.misses++;
    }
    this.stats.walks++;
    if (cd !== null && cd.s1 === null) {
      r.reset(addr);
      r.fault = 'translation';
      ok = false;
    } else if (cd !== null && ste.s2cfg !== null) {
      ok = this.walker.walkNested(cd.s1!, ste.s2cfg, addr, acc, r, cd.tlb, ste.s2Tlb);
      // Split-stage: stage 1 succeeded when the fault (if any) is the final stage 2 lookup.
      if (split && (ok || (r.faultStage === 2 && !r.s1ptw && r.ipa >= 0 && r.fault !== 'external-abort-on-walk'))) {
        const ipa = r.ipa;
        res.status = 'ok';
        res.size = 4096;
        res.pa = ipa - (ipa % 4096);
        const p = s1PermsOf(r, priv);
        res.read = (p & PERM_R) !== 0;
        res.write = write && (p & PERM_W) !== 0;
        res.exec = exec && (p & PERM_X) !== 0;
        return res;
      }
    } else if (cd !== null) {
      ok = this.walker.walkStage1(cd.s1!, addr, acc, r, cd.tlb);
    } else {
      ok = this.walker.walkStage2(ste.s2cfg!, addr, acc, r, ste.s2Tlb);
    }
    if (!ok) {
      if (r.fault === 'external-abort-on-walk') {
        res.detail = `table walk aborted at PA ${hex(r.walkPa)}`;
        return res;
      }
      // Translation-related fault: the request completes with no access granted.
      res.status = 'ok';
      res.pa = addr - (addr % 4096);
      res.size = 4096;
      res.detail = ATS_FAULT_DETAIL[r.fault ?? 'translation'];
      return res;
    }
    const ctx = cd !== null ? cd.tlb : ste.s2Tlb!;
    this.insert(ste, cd, ctx, addr, r);
    let p: number;
    if (cd !== null) {
      p = s1PermsOf(r, priv);
      if (ste.s2) p &= r.s2Perms;
    } else p = r.s2Perms;
    res.status = 'ok';
    res.size = r.blockSize;
    res.pa = r.pa - (r.pa % r.blockSize);
    res.read = (p & PERM_R) !== 0;
    res.write = write && (p & PERM_W) !== 0;
    res.exec = exec && (p & PERM_X) !== 0;
    return res;
  }
}
