/**
 * Stream mapping: SMR(n)/S2CR(n) storage and the match of an incoming StreamID to a mapping group.
 *
 * Supports: stream matching (ID0.SMS=1) with SMR.ID/MASK over the implemented StreamID bits
 * (ID0.NUMSIDB), the extended-StreamID mode (sCR0.EXIDENABLE with ID0.EXIDS: 16-bit ID/MASK, the
 * group valid bit moving to S2CR.EXIDVALID), stream indexing (ID0.SMS=0: StreamID n selects S2CR n),
 * read-back of only the implemented SMR bits (Linux probes the widths that way), and the Qualcomm
 * firmware S2CR quirk (bypass writes stored as fault, fault writes ignored) when constructed with it.
 * A StreamID that matches two valid groups is a conflict (the caller raises sGFSR.SMCF, as MMU-500's
 * fixed sCR0.SMCFCFG=1 requires); one that matches none is unidentified (sCR0.USFCFG decides).
 * A StreamID with bits above the implemented width matches nothing.
 * Does not support: SMR/S2CR security (NSCFG routing), extended SMR groups (EXSMRGS).
 *
 * Matching is memoised per StreamID and generation, so the hot path is a typed-array lookup; any
 * SMR/S2CR or sCR0.EXIDENABLE change starts a new generation.
 */
import { S2CR, S2CR_TYPE_BYPASS, S2CR_TYPE_FAULT, SMR } from './regs.js';

/** No valid group matches the StreamID. */
export const MATCH_NONE = -1;
/** Two or more valid groups match the StreamID. */
export const MATCH_CONFLICT = -2;

const S2CR_IMPLEMENTED =
  S2CR.CBNDX.mask |
  S2CR.SHCFG.mask |
  S2CR.EXIDVALID.mask |
  S2CR.MTCFG.mask |
  S2CR.MemAttr.mask |
  S2CR.TYPE.mask |
  S2CR.NSCFG.mask |
  S2CR.RACFG.mask |
  S2CR.WACFG.mask |
  S2CR.PRIVCFG.mask |
  S2CR.INSTCFG.mask |
  S2CR.TRANSIENTCFG.mask;

export interface StreamMapConfig {
  streamMatch: boolean;
  /** Number of SMR/S2CR groups. */
  groups: number;
  numSidBits: number;
  exids: boolean;
  s2crResetType: number;
  qcomS2crBypassQuirk: boolean;
}

export class StreamMapTable {
  readonly smr: Uint32Array;
  readonly s2cr: Uint32Array;
  private exidEnable = false;
  private generation = 1;
  private readonly memoGen = new Uint32Array(0x10000);
  private readonly memoResult = new Int32Array(0x10000);

  constructor(private readonly cfg: StreamMapConfig) {
    this.smr = new Uint32Array(cfg.groups);
    this.s2cr = new Uint32Array(cfg.groups);
    this.reset();
  }

  reset(): void {
    this.smr.fill(0);
    this.s2cr.fill(S2CR.TYPE.encode(this.cfg.s2crResetType));
    this.exidEnable = false;
    this.bump();
  }

  get groups(): number {
    return this.cfg.groups;
  }

  /** sCR0.EXIDENABLE changed (only effective when ID0.EXIDS is set). */
  setExidEnable(on: boolean): void {
    const v = on && this.cfg.exids;
    if (v !== this.exidEnable) {
      this.exidEnable = v;
      this.bump();
    }
  }

  /** StreamID bits the SMMU implements in the current mode. */
  get sidBits(): number {
    return this.exidEnable ? 16 : this.cfg.numSidBits;
  }

  /** The SMR bits that hold state in the current mode (the rest read as zero). */
  smrImplementedMask(): number {
    if (this.exidEnable) return 0xffff_ffff;
    const sid = Math.pow(2, this.cfg.numSidBits) - 1;
    return (SMR.VALID.mask | (sid << 16) | sid) >>> 0;
  }

  writeSmr(n: number, value: number): void {
    if (!this.cfg.streamMatch) return; // no SMRs with stream indexing
    this.smr[n] = (value & this.smrImplementedMask()) >>> 0;
    this.bump();
  }

  writeS2cr(n: number, value: number): void {
    let v = (value & S2CR_IMPLEMENTED) >>> 0;
    if (this.cfg.qcomS2crBypassQuirk) {
      const type = S2CR.TYPE.get(v);
      if (type === S2CR_TYPE_FAULT) return; // the firmware drops it
      if (type === S2CR_TYPE_BYPASS) v = S2CR.TYPE.set(v, S2CR_TYPE_FAULT);
    }
    this.s2cr[n] = v;
    this.bump();
  }

  /**
   * The mapping group `sid` selects: an index, MATCH_NONE or MATCH_CONFLICT. Allocation-free.
   */
  match(sid: number): number {
    if (sid >= 0 && sid < 0x10000) {
      if (this.memoGen[sid] === this.generation) return this.memoResult[sid];
      const r = this.compute(sid);
      this.memoGen[sid] = this.generation;
      this.memoResult[sid] = r;
      return r;
    }
    return MATCH_NONE;
  }

  private compute(sid: number): number {
    if (sid >= Math.pow(2, this.sidBits)) return MATCH_NONE;
    if (!this.cfg.streamMatch) return sid < this.cfg.groups ? sid : MATCH_NONE;
    let found = MATCH_NONE;
    for (let i = 0; i < this.cfg.groups; i++) {
      const smr = this.smr[i];
      let id: number;
      let mask: number;
      if (this.exidEnable) {
        if (!S2CR.EXIDVALID.isSet(this.s2cr[i])) continue;
        id = SMR.ID.get(smr);
        mask = SMR.MASK.get(smr);
      } else {
        if (!SMR.VALID.isSet(smr)) continue;
        id = smr & 0x7fff;
        mask = (smr >>> 16) & 0x7fff;
      }
      if (((sid ^ id) & ~mask) === 0) {
        if (found !== MATCH_NONE) return MATCH_CONFLICT;
        found = i;
      }
    }
    return found;
  }

  private bump(): void {
    this.generation = (this.generation + 1) >>> 0 || 1;
  }
}
