/**
 * SMMUv3 configuration: locating, fetching and decoding Stream Table Entries and Context
 * Descriptors into one translation configuration each, and the configuration caches that keep those
 * decoded copies until the right CMD_CFGI_* removes them (a stale STE or CD is what hardware uses).
 * The walker and the TLB only ever see the decoded form (StreamConfig / ContextConfig).
 *
 * Supports: linear and 2-level stream tables (L1STD.Span checks, C_BAD_STREAMID with
 * CR2.RECINVSID), STE.Config abort/bypass/stage 1/stage 2/nested, S1Fmt linear and 2-level CD
 * tables with 4KB or 64KB leaves, S1CDMax, S1DSS, S1STALLD, EATS (with CR0.ATSCHK), STRW (with
 * CR2.E2H), S2VMID, the stage 2 VTCR fields, PRIVCFG/INSTCFG overrides; CD V/AA64/T0SZ/TG0/IPS/
 * EPD0/ENDI/HA/HD/S/R/A/ASET/ASID/TTB0; the ILLEGAL configurations of the spec's field
 * descriptions that apply to the features modelled (C_BAD_STE / C_BAD_CD); aborts on fetches
 * (F_STE_FETCH / F_CD_FETCH); CD and L1CD fetches through stage 2 in nested configurations (stage 2
 * faults with CLASS == CD). Caches: STEs by StreamID, L1STDs by L1 index, CDs and L1CDs per STE;
 * invalid or ILLEGAL structures are never cached.
 * Does not support: VMSAv8-32 (CD.AA64 == 0 / STE.S2AA64 == 0 are ILLEGAL since IDR0.TTF says
 * AArch64 only), TTB1 (addresses are JS numbers below 2^53, so the TTB1 half is unreachable),
 * HTTU dirty state (HD/S2HD are ILLEGAL), STE.CONT, MPAM, VMS, Secure streams.
 * Access flag (SMMUv3 spec 3.13 "Translation table entries and Access/Dirty flags", 5.2 STE.S2AFFD/
 * S2HA, 5.4 CD.AFFD/HA): with HA (S2HA) == 1 and IDR0.HTTU != 0 the walker sets AF in the descriptor
 * and AFFD is ignored; otherwise AFFD (S2AFFD) == 1 uses an AF == 0 leaf as if AF were 1 and 0 raises
 * F_ACCESS. HA/S2HA set while IDR0.HTTU == 0 is treated as ILLEGAL (C_BAD_CD / C_BAD_STE).
 */
import { BusError } from '../memory.js';
import {
  AF_FAULT,
  AF_IGNORE,
  AF_UPDATE,
  type AccessFlagMode,
  compileStage1,
  compileStage2,
  decodeAddressSize,
  decodeS2SL0,
  decodeTG0,
  type Granule,
  type StageConfig,
  WalkConfigError,
} from '../walker/config.js';
import { WalkResult } from '../walker/result.js';
import type { TranslationTableWalker, WalkMemory } from '../walker/walker.js';
import { join64 } from '../bitfield.js';
import * as F from './formats.js';
import type { ResolvedOptions } from './options.js';
import { OUT_FAULT, type Outcome } from './outcome.js';
import {
  ADDRESS_SIZE_BITS,
  CR0_ATSCHK,
  CR2_E2H,
  CR2_RECINVSID,
  STALL_MODEL_STALL_FORCED,
  STALL_MODEL_STALL_TERMINATE,
  STALL_MODEL_TERMINATE,
  STRTAB_BASE_ADDR_HI_MASK,
  STRTAB_BASE_ADDR_LO_MASK,
  STRTAB_BASE_CFG_FMT,
  STRTAB_BASE_CFG_LOG2SIZE,
  STRTAB_BASE_CFG_SPLIT,
  STRTAB_FMT_2LVL,
} from './regs.js';
import {
  KIND_S1,
  KIND_S12,
  KIND_S2,
  type Tlb,
  type TlbContext,
  WORLD_NS_EL1,
  WORLD_NS_EL2,
  WORLD_NS_EL2_E2H,
} from './tlb.js';

const hex = (v: number): string => `0x${v.toString(16)}`;

/** The registers configuration lookup depends on, as the SMMU currently holds them. */
export interface ConfigRegisters {
  strtabBaseLo: number;
  strtabBaseHi: number;
  strtabBaseCfg: number;
  cr2: number;
  /** CR0ACK: the effective enables (ATSCHK is read from it). */
  cr0ack: number;
}

/** A decoded Context Descriptor: stage 1 translation for one (StreamID, CD index). */
export interface ContextConfig {
  readonly index: number;
  /** Compiled stage 1 walk, null when CD.EPD0 disables TTB0 walks. */
  readonly s1: StageConfig | null;
  readonly asid: number;
  readonly aset: boolean;
  /** Effective stall (CD.S under the stall model and STE.S1STALLD). */
  readonly stall: boolean;
  readonly record: boolean;
  /** CD.A (forced to 1 by TERM_MODEL): terminate with an abort rather than RAZ/WI. */
  readonly abort: boolean;
  /** TLB context the CD's translations are tagged with. */
  readonly tlb: TlbContext;
  /** The raw descriptor words, for tests and traces. */
  readonly words: Uint32Array;
}

/** A decoded Stream Table Entry. */
export interface StreamConfig {
  readonly sid: number;
  readonly config: number;
  /** STE.Config[2] == 0: every transaction is aborted without an event. */
  readonly abort: boolean;
  readonly s1: boolean;
  readonly s2: boolean;
  readonly world: number;
  /** VMID the translations are tagged with (0 when the regime has none). */
  readonly vmid: number;
  readonly s1Fmt: number;
  readonly s1ContextPtr: number;
  /** Effective S1CDMax (0 when substreams are disabled or unsupported). */
  readonly s1CdMax: number;
  readonly s1dss: number;
  readonly s1StallDisabled: boolean;
  /** Effective EATS after Config, ATSCHK and DPT support are taken into account. */
  readonly eats: number;
  readonly s2cfg: StageConfig | null;
  readonly s2Stall: boolean;
  readonly s2Record: boolean;
  /** TLB context of stage 2-only translations (stage 2 enabled), else null. */
  readonly s2Tlb: TlbContext | null;
  readonly ppar: boolean;
  /** STE.PRIVCFG / INSTCFG overrides: 0 use incoming, 2 force off, 3 force on. */
  readonly privCfg: number;
  readonly instCfg: number;
  /** Cached CDs by CD table index, and cached L1CDs (L2 table base) by L1 index. */
  readonly cds: Map<number, ContextConfig>;
  readonly l1cds: Map<number, number>;
  readonly words: Uint32Array;
}

export interface ConfigCacheStats {
  steFetches: number;
  cdFetches: number;
  steHits: number;
  cdHits: number;
}

/** A cached level-1 stream table descriptor. */
interface L1Std {
  l2ptr: number;
  span: number;
}

/**
 * Fetch, decode and cache STEs and CDs. Every failing lookup fills the caller's Outcome with the
 * abort or fault (and the event to record) and returns null.
 */
export class ConfigCache {
  private readonly stes = new Map<number, StreamConfig>();
  private readonly l1stds = new Map<number, L1Std>();
  readonly stats: ConfigCacheStats = { steFetches: 0, cdFetches: 0, steHits: 0, cdHits: 0 };
  private readonly s2res = new WalkResult();

  constructor(
    private readonly opts: ResolvedOptions,
    private readonly regs: ConfigRegisters,
    private readonly mem: WalkMemory,
    private readonly walker: TranslationTableWalker,
    private readonly tlb: Tlb,
  ) {}

  /** The cached STE for `sid`, or undefined (no fetch). The hot path's first step. */
  cachedSte(sid: number): StreamConfig | undefined {
    return this.stes.get(sid);
  }

  /** Number of cached STEs / CDs (tests). */
  get cachedSteCount(): number {
    return this.stes.size;
  }

  // ---- stream table ------------------------------------------------------------------------

  /** The STE for `sid`: from the cache, or fetched, validated, decoded and cached. */
  ste(sid: number, out: Outcome): StreamConfig | null {
    const hit = this.stes.get(sid);
    if (hit !== undefined) {
      this.stats.steHits++;
      return hit;
    }
    const addr = this.locateSte(sid, out);
    if (addr < 0) return null;
    const words = new Uint32Array(F.STE_WORDS);
    if (!this.readWords(addr, words, F.STE_WORDS)) {
      out.fetchAddr = addr;
      out.setAbort(F.F_STE_FETCH, `fetch of STE ${sid} at PA ${hex(addr)} aborted`);
      return null;
    }
    this.stats.steFetches++;
    const ste = this.decodeSte(sid, words, out);
    if (ste !== null) this.stes.set(sid, ste);
    return ste;
  }

  /** PA of the STE for `sid`, or -1 with `out` describing why it cannot be located. */
  private locateSte(sid: number, out: Outcome): number {
    const r = this.regs;
    const base = join64(r.strtabBaseLo & STRTAB_BASE_ADDR_LO_MASK, r.strtabBaseHi & STRTAB_BASE_ADDR_HI_MASK);
    let log2size = STRTAB_BASE_CFG_LOG2SIZE.get(r.strtabBaseCfg);
    if (log2size > this.opts.sidBits) log2size = this.opts.sidBits;
    const badSid = (why: string): number => {
      out.setAbort(CR2_RECINVSID.isSet(r.cr2) ? F.C_BAD_STREAMID : 0, `StreamID ${sid}: ${why}`);
      return -1;
    };
    if (sid >= 2 ** log2size) return badSid(`beyond the stream table (STRTAB_BASE_CFG.LOG2SIZE ${log2size})`);
    const twoLevel = this.opts.twoLevelStreamTable && STRTAB_BASE_CFG_FMT.get(r.strtabBaseCfg) === STRTAB_FMT_2LVL;
    if (!twoLevel) return base + sid * F.STE_BYTES;
    let split = STRTAB_BASE_CFG_SPLIT.get(r.strtabBaseCfg);
    if (split !== 6 && split !== 8 && split !== 10) split = 6; // Reserved values behave as 6.
    if (split > log2size) split = log2size;
    const l1idx = Math.floor(sid / 2 ** split);
    let l1 = this.l1stds.get(l1idx);
    if (l1 === undefined) {
      const l1Addr = base + l1idx * F.L1STD_BYTES;
      const w = new Uint32Array(2);
      if (!this.readWords(l1Addr, w, 2)) {
        out.fetchAddr = l1Addr;
        out.setAbort(F.F_STE_FETCH, `fetch of L1STD ${l1idx} at PA ${hex(l1Addr)} aborted`);
        return -1;
      }
      const span = F.L1STD_SPAN.get(w);
      if (span === 0 || span > 12 || span > split + 1) return badSid(`L1STD ${l1idx} has Span ${span} (invalid)`);
      l1 = { l2ptr: F.L1STD_L2PTR.get(w), span };
      this.l1stds.set(l1idx, l1);
    }
    const l2idx = sid % 2 ** split;
    if (l2idx >= 2 ** (l1.span - 1)) return badSid(`beyond the ${2 ** (l1.span - 1)} STEs of L1STD ${l1idx}`);
    return l1.l2ptr + l2idx * F.STE_BYTES;
  }

  /** Decode and validate an STE; null (with C_BAD_STE in `out`) when it is invalid or ILLEGAL. */
  decodeSte(sid: number, w: Uint32Array, out: Outcome): StreamConfig | null {
    const o = this.opts;
    const bad = (why: string): null => {
      out.setAbort(F.C_BAD_STE, `STE ${sid}: ${why}`);
      return null;
    };
    if (!F.STE_V.isSet(w)) return bad('V == 0');
    const config = F.STE_CONFIG.get(w);
    const abort = (config & 0b100) === 0;
    const s1 = !abort && (config & 1) !== 0;
    const s2 = !abort && (config & 2) !== 0;
    if (s1 && !o.stage1) return bad(`Config ${config.toString(2)} enables stage 1, which is not implemented`);
    if (s2 && !o.stage2) return bad(`Config ${config.toString(2)} enables stage 2, which is not implemented`);

    // Stage 1 / CD table fields.
    let s1CdMax = 0;
    let s1Fmt = 0;
    let s1dss = 0;
    let s1StallDisabled = false;
    let s1ContextPtr = 0;
    if (s1) {
      s1CdMax = o.ssidBits === 0 ? 0 : F.STE_S1CDMAX.get(w);
      if (s1CdMax > o.ssidBits) return bad(`S1CDMax ${s1CdMax} exceeds IDR1.SSIDSIZE ${o.ssidBits}`);
      if (s1CdMax > 0) {
        s1Fmt = F.STE_S1FMT.get(w);
        if (s1Fmt === 3) s1Fmt = F.S1FMT_LINEAR; // Reserved, behaves as linear.
        if (s1Fmt !== F.S1FMT_LINEAR && !o.cd2l) return bad(`S1Fmt ${s1Fmt} needs IDR0.CD2L`);
        s1dss = F.STE_S1DSS.get(w);
        if (s1dss === 3) s1dss = F.S1DSS_TERMINATE; // Reserved, behaves as terminate.
      }
      s1StallDisabled = F.STE_S1STALLD.isSet(w);
      if (s1StallDisabled && o.stallModel !== STALL_MODEL_STALL_TERMINATE) {
        return bad(`S1STALLD == 1 with IDR0.STALL_MODEL ${o.stallModel}`);
      }
      s1ContextPtr = F.STE_S1CONTEXTPTR.get(w);
    }

    // StreamWorld.
    let world = WORLD_NS_EL1;
    if (s1 && !s2 && o.hyp) {
      const strw = F.STE_STRW.get(w);
      if ((strw & 1) !== 0) return bad(`STRW ${strw} is Reserved`);
      if (strw === F.STRW_EL2) world = CR2_E2H.isSet(this.regs.cr2) ? WORLD_NS_EL2_E2H : WORLD_NS_EL2;
    }

    // Stage 2.
    const s2Stall = s2 && F.STE_S2S.isSet(w);
    let s2cfg: StageConfig | null = null;
    if (s2) {
      if (!F.STE_S2AA64.isSet(w)) return bad('S2AA64 == 0 selects VMSAv8-32 LPAE, which is not implemented');
      const granule = decodeTG0(F.STE_S2TG.get(w));
      if (granule === null || !this.granuleSupported(granule)) return bad(`S2TG ${F.STE_S2TG.get(w)} selects an unsupported granule`);
      const t0sz = F.STE_S2T0SZ.get(w);
      const minT0sz = Math.max(16, 64 - o.oasBits);
      if (t0sz < minT0sz || t0sz > 39) return bad(`S2T0SZ ${t0sz} is outside [${minT0sz}, 39]`);
      const startLevel = decodeS2SL0(granule, F.STE_S2SL0.get(w));
      if (startLevel < 0) return bad(`S2SL0 ${F.STE_S2SL0.get(w)} is not valid for a ${granule / 1024}K granule`);
      if (F.STE_S2ENDI.isSet(w)) return bad('S2ENDI selects big-endian tables; IDR0.TTENDIAN is little-endian only');
      if (F.STE_S2HD.isSet(w)) return bad('S2HD set but IDR0.HTTU does not include dirty state');
      if (F.STE_S2HA.isSet(w) && o.httu === 0) return bad('S2HA set but IDR0.HTTU is 0');
      if (s2Stall && o.stallModel === STALL_MODEL_TERMINATE) return bad('S2S == 1 with IDR0.STALL_MODEL terminate-only');
      if (!s2Stall && o.stallModel === STALL_MODEL_STALL_FORCED) return bad('S2S == 0 with IDR0.STALL_MODEL stall-forced');
      const ps = Math.min(F.STE_S2PS.get(w), ADDRESS_SIZE_BITS.indexOf(o.oasBits as (typeof ADDRESS_SIZE_BITS)[number]));
      try {
        s2cfg = compileStage2({
          granule,
          inputSize: 64 - t0sz,
          outputSize: decodeAddressSize(ps)!,
          startLevel,
          tableBase: F.STE_S2TTB.get(w),
          accessFlag: accessFlagMode(F.STE_S2HA.isSet(w), F.STE_S2AFFD.isSet(w)),
        });
      } catch (e) {
        if (e instanceof WalkConfigError) return bad(e.reason);
        throw e;
      }
    }

    // VMID tagging: NS-EL1 translations are tagged when stage 2 is implemented.
    let vmid = 0;
    if (o.stage2 && world === WORLD_NS_EL1 && (s1 || s2)) {
      vmid = F.STE_S2VMID.get(w);
      if (vmid > 0xff && !o.vmid16) return bad(`S2VMID ${hex(vmid)} needs IDR0.VMID16`);
    }

    // ATS.
    let eats = 0;
    if (o.ats && !abort && (config & 0b11) !== 0) {
      const raw = F.STE_EATS.get(w);
      if (raw === F.EATS_TRANS && s2 && s2Stall) return bad('EATS == 0b01 with stage 2 and S2S == 1');
      if (raw === F.EATS_S1CHK && (config !== F.STE_CONFIG_NESTED || s2Stall)) {
        return bad('EATS == 0b10 (split-stage) needs Config == 0b111 and S2S == 0');
      }
      eats = raw === 3 ? 0 : raw; // 0b11 (DPT) is not implemented: behaves as 0b00.
      if (eats === F.EATS_S1CHK && !CR0_ATSCHK.isSet(this.regs.cr0ack)) eats = 0;
    }

    const privCfg = o.attrPermsOverride ? F.STE_PRIVCFG.get(w) : 0;
    const instCfg = o.attrPermsOverride ? F.STE_INSTCFG.get(w) : 0;
    return {
      sid,
      config,
      abort,
      s1,
      s2,
      world,
      vmid,
      s1Fmt,
      s1ContextPtr,
      s1CdMax,
      s1dss,
      s1StallDisabled,
      eats,
      s2cfg,
      s2Stall,
      s2Record: s2 && F.STE_S2R.isSet(w),
      s2Tlb: s2 ? this.tlb.context(WORLD_NS_EL1, vmid, 0, KIND_S2) : null,
      ppar: F.STE_PPAR.isSet(w),
      privCfg: privCfg === 1 ? 0 : privCfg,
      instCfg: instCfg === 1 ? 0 : instCfg,
      cds: new Map(),
      l1cds: new Map(),
      words: w,
    };
  }

  private granuleSupported(g: Granule): boolean {
    const o = this.opts;
    return g === 4096 ? o.gran4k : g === 16384 ? o.gran16k : o.gran64k;
  }

  // ---- context descriptors -----------------------------------------------------------------

  /**
   * The CD at `index` of the STE's CD table (index 0 for the single CD). Cached, or fetched (through
   * stage 2 when the STE nests) and decoded. `reportSsid` is the SubstreamID a C_BAD_SUBSTREAMID
   * should carry.
   */
  cd(ste: StreamConfig, index: number, out: Outcome): ContextConfig | null {
    const hit = ste.cds.get(index);
    if (hit !== undefined) {
      this.stats.cdHits++;
      return hit;
    }
    const addr = this.locateCd(ste, index, out);
    if (addr < 0) return null;
    const words = new Uint32Array(F.CD_WORDS);
    const pa = this.fetchForCd(ste, addr, words, F.CD_WORDS, out);
    if (pa < 0) return null;
    this.stats.cdFetches++;
    const cd = this.decodeCd(ste, index, words, out);
    if (cd !== null) ste.cds.set(index, cd);
    return cd;
  }

  /** Address (PA, or IPA when nested) of CD `index`, or -1 with `out` set. */
  private locateCd(ste: StreamConfig, index: number, out: Outcome): number {
    const ptr = ste.s1ContextPtr;
    if (ste.s1CdMax === 0 || ste.s1Fmt === F.S1FMT_LINEAR) return ptr + index * F.CD_BYTES;
    const leafBits = ste.s1Fmt === F.S1FMT_4K_L2 ? 6 : 10;
    const l1idx = Math.floor(index / 2 ** leafBits);
    let l2 = ste.l1cds.get(l1idx);
    if (l2 === undefined) {
      const l1Addr = ptr + l1idx * F.L1CD_BYTES;
      const w = new Uint32Array(2);
      if (this.fetchForCd(ste, l1Addr, w, 2, out) < 0) return -1;
      if (!F.L1CD_V.isSet(w)) {
        out.reportSsid = index;
        out.setAbort(F.C_BAD_SUBSTREAMID, `STE ${ste.sid}: L1CD ${l1idx} for SubstreamID ${index} has V == 0`);
        return -1;
      }
      l2 = F.L1CD_L2PTR.get(w);
      if (leafBits === 10) l2 -= l2 % 0x1_0000; // L2Ptr[15:12] are RES0 for 64KB leaf tables.
      ste.l1cds.set(l1idx, l2);
    }
    return l2 + (index % 2 ** leafBits) * F.CD_BYTES;
  }

  /**
   * Read `n` words of a CD-table structure at `addr` (an IPA translated by stage 2 when the STE
   * nests). Returns the PA read, or -1 with `out` holding F_CD_FETCH / a stage 2 fault (CLASS CD).
   */
  private fetchForCd(ste: StreamConfig, addr: number, words: Uint32Array, n: number, out: Outcome): number {
    let pa = addr;
    if (ste.s2 && ste.s2cfg !== null) {
      const r = this.s2res;
      if (!this.walker.walkStage2(ste.s2cfg, addr, 0, r)) {
        if (r.fault === 'external-abort-on-walk') {
          out.s2 = true;
          out.cls = F.CLASS_CD;
          out.fetchAddr = r.walkPa;
          out.setAbort(F.F_WALK_EABT, `stage 2 walk for the CD at IPA ${hex(addr)} aborted`);
          return -1;
        }
        stage2Fault(ste, r.fault ?? 'translation', addr, F.CLASS_CD, out);
        return -1;
      }
      pa = r.pa;
    }
    if (!this.readWords(pa, words, n)) {
      out.fetchAddr = pa;
      out.setAbort(F.F_CD_FETCH, `fetch of a CD structure at PA ${hex(pa)} aborted`);
      return -1;
    }
    return pa;
  }

  /** Decode and validate a CD; null (with C_BAD_CD in `out`) when it is invalid or ILLEGAL. */
  decodeCd(ste: StreamConfig, index: number, w: Uint32Array, out: Outcome): ContextConfig | null {
    const o = this.opts;
    const bad = (why: string): null => {
      out.setAbort(F.C_BAD_CD, `CD ${index} of STE ${ste.sid}: ${why}`);
      return null;
    };
    if (!F.CD_V.isSet(w)) return bad('V == 0');
    if (!F.CD_AA64.isSet(w)) return bad('AA64 == 0 selects VMSAv8-32 LPAE, which is not implemented');
    const el2 = ste.world === WORLD_NS_EL2;
    const epd0 = !el2 && F.CD_EPD0.isSet(w);
    const epd1 = !el2 && F.CD_EPD1.isSet(w);
    if (F.CD_HD.isSet(w)) return bad('HD set but IDR0.HTTU does not include dirty state');
    if (F.CD_HA.isSet(w) && o.httu === 0) return bad('HA set but IDR0.HTTU is 0');
    if (!(epd0 && epd1) && F.CD_ENDI.isSet(w)) return bad('ENDI selects big-endian tables; IDR0.TTENDIAN is little-endian only');
    let s1: StageConfig | null = null;
    if (!epd0) {
      const granule = decodeTG0(F.CD_TG0.get(w));
      if (granule === null || !this.granuleSupported(granule)) return bad(`TG0 ${F.CD_TG0.get(w)} selects an unsupported granule`);
      const t0sz = F.CD_T0SZ.get(w);
      if (t0sz < 16 || t0sz > 39) return bad(`T0SZ ${t0sz} is outside [16, 39]`);
      let ipsField = F.CD_IPS.get(w);
      if (ipsField === 7) ipsField = 6;
      const ips = Math.min(decodeAddressSize(ipsField)!, o.oasBits);
      const ttb0 = F.CD_TTB0.get(w);
      if (ttb0 >= 2 ** ips) return bad(`TTB0 ${hex(ttb0)} is outside the ${ips}-bit IPS range`);
      try {
        s1 = compileStage1({
          granule,
          inputSize: 64 - t0sz,
          outputSize: ips,
          tableBase: ttb0,
          accessFlag: accessFlagMode(F.CD_HA.isSet(w), F.CD_AFFD.isSet(w)),
        });
      } catch (e) {
        if (e instanceof WalkConfigError) return bad(e.reason);
        throw e;
      }
    }
    const s = F.CD_S.isSet(w);
    if (o.stallModel === STALL_MODEL_STALL_TERMINATE && ste.s1StallDisabled && s) return bad('S == 1 but STE.S1STALLD == 1');
    if (o.stallModel === STALL_MODEL_TERMINATE && s) return bad('S == 1 with IDR0.STALL_MODEL terminate-only');
    if (o.stallModel === STALL_MODEL_STALL_FORCED && !s) return bad('S == 0 with IDR0.STALL_MODEL stall-forced');
    const a = F.CD_A.isSet(w);
    if (!a && o.abortOnlyTermination) return bad('A == 0 but IDR0.TERM_MODEL allows abort termination only');
    let asid = F.CD_ASID.get(w);
    if (el2) asid = 0; // NS-EL2 translations carry no ASID.
    else if (asid > 0xff && !o.asid16) return bad(`ASID ${hex(asid)} needs IDR0.ASID16`);
    const kind = ste.s2 ? KIND_S12 : KIND_S1;
    return {
      index,
      s1,
      asid,
      aset: F.CD_ASET.isSet(w),
      stall: s,
      record: F.CD_R.isSet(w),
      abort: a || o.abortOnlyTermination,
      tlb: this.tlb.context(ste.world, ste.vmid, asid, kind),
      words: w,
    };
  }

  // ---- invalidation ------------------------------------------------------------------------

  /** CMD_CFGI_STE: the STE (and the CDs cached through it); with leaf == false also its L1STD. */
  invalidateSte(sid: number, leaf: boolean): void {
    this.stes.delete(sid);
    if (!leaf) this.l1stds.delete(this.l1IndexOf(sid));
  }

  /** CMD_CFGI_STE_RANGE: an aligned block of 2^(range+1) StreamIDs; range 31 is CMD_CFGI_ALL. */
  invalidateSteRange(sid: number, range: number): void {
    if (range >= 31) {
      this.invalidateAll();
      return;
    }
    const n = 2 ** (range + 1);
    const lo = sid - (sid % n);
    const hi = lo + n;
    if (n > this.stes.size) {
      for (const k of [...this.stes.keys()]) if (k >= lo && k < hi) this.stes.delete(k);
    } else {
      for (let s = lo; s < hi; s++) this.stes.delete(s);
    }
    for (const k of [...this.l1stds.keys()]) {
      const split = this.split();
      const l1lo = k * 2 ** split;
      if (l1lo < hi && lo < l1lo + 2 ** split) this.l1stds.delete(k);
    }
  }

  invalidateAll(): void {
    this.stes.clear();
    this.l1stds.clear();
  }

  /** CMD_CFGI_CD: the CD at `index` cached through `sid`; with leaf == false also its L1CD. */
  invalidateCd(sid: number, index: number, leaf: boolean): void {
    const ste = this.stes.get(sid);
    if (ste === undefined) return;
    ste.cds.delete(index);
    if (!leaf && ste.s1CdMax > 0 && ste.s1Fmt !== F.S1FMT_LINEAR) {
      ste.l1cds.delete(Math.floor(index / 2 ** (ste.s1Fmt === F.S1FMT_4K_L2 ? 6 : 10)));
    }
  }

  /** CMD_CFGI_CD_ALL: every CD and L1CD cached through `sid`. */
  invalidateCdAll(sid: number): void {
    const ste = this.stes.get(sid);
    if (ste === undefined) return;
    ste.cds.clear();
    ste.l1cds.clear();
  }

  private split(): number {
    let split = STRTAB_BASE_CFG_SPLIT.get(this.regs.strtabBaseCfg);
    if (split !== 6 && split !== 8 && split !== 10) split = 6;
    return split;
  }

  private l1IndexOf(sid: number): number {
    return Math.floor(sid / 2 ** this.split());
  }

  // ---- memory ------------------------------------------------------------------------------

  /** Read `n` little-endian words at `pa`; false if the access aborts. */
  private readWords(pa: number, out: Uint32Array, n: number): boolean {
    try {
      for (let i = 0; i < n; i++) out[i] = this.mem.read32(pa + i * 4);
      return true;
    } catch (e) {
      if (e instanceof BusError) return false;
      throw e;
    }
  }
}

/** HA (hardware update, checked against IDR0.HTTU by the caller) wins over AFFD. */
function accessFlagMode(ha: boolean, affd: boolean): AccessFlagMode {
  return ha ? AF_UPDATE : affd ? AF_IGNORE : AF_FAULT;
}

/** Fill `out` with a stage 2 Translation-related fault (STE.S2R/S2S decide record and stall). */
export function stage2Fault(ste: StreamConfig, kind: string, ipa: number, cls: number, out: Outcome): void {
  out.kind = OUT_FAULT;
  out.eventType = faultEventType(kind);
  out.s2 = true;
  out.cls = cls;
  out.ipa = ipa;
  out.stall = ste.s2Stall;
  out.record = ste.s2Record || ste.s2Stall;
  out.abort = true;
  out.detail = `stage 2 ${kind} fault at IPA ${hex(ipa)}`;
}

/** Event type for a walker fault kind. */
export function faultEventType(kind: string): number {
  switch (kind) {
    case 'translation':
      return F.F_TRANSLATION;
    case 'address-size':
      return F.F_ADDR_SIZE;
    case 'access-flag':
      return F.F_ACCESS;
    case 'permission':
      return F.F_PERMISSION;
    default:
      return F.F_WALK_EABT;
  }
}

export { KIND_S1, KIND_S2, KIND_S12 };
