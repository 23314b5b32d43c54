/**
 * A translation context bank: its registers (GR1 CBAR/CBFRSYNRA/CBA2R and the bank's own page) and
 * their decode into one translation configuration the walker and TLB use.
 *
 * Supports: CBAR.TYPE stage 2 only, stage 1 with stage 2 bypass, stage 1 with stage 2 fault, and
 * nested (stage 1 here, stage 2 in the bank CBAR.CBNDX names); the AArch64 format (CBA2R.VA64 on
 * SMMUv2, TCR.EAE=0 on an SMMUv1 built with `v1Aarch64Format`) with 4K/16K/64K granules, TTBR0 and
 * TTBR1 regions split at the sign-extension position (TCR2.SEP = upstream bus size), EPD0/EPD1,
 * TCR.A1 ASID selection, 8/16-bit ASIDs (TCR2.AS) and output size TCR2.PASIZE capped at ID2.OAS; the
 * AArch32 long-descriptor format (TCR.EAE=1: 32-bit input, T0SZ/T1SZ, 4K granule, 40-bit output);
 * stage 2 from the VTCR fields (T0SZ, SL0, TG0, PS; the 4-bit signed T0SZ of an AArch32 stage 2);
 * VMIDs from CBAR.VMID or CBA2R.VMID16 (sCR0.VMID16EN); SCTLR.M=0 as "translation disabled: the
 * transaction passes untranslated". A configuration the architecture forbids (say an input size no
 * start level fits) decodes as invalid and translates as a level-0 translation fault.
 * Does not support: the AArch32 short-descriptor format (decodes as unsupported, which translates as
 * a translation fault with FSR.FORMAT=0), TCR2.SEP values other than "upstream" (treated as upstream),
 * top-byte ignore, big-endian tables (SCTLR.E), hypervisor contexts (CBAR.HYPC), memory attributes
 * and shareability overrides (they have no effect on this machine's memory).
 */
import type { TlbSet } from './tlb.js';
import { TlbiBatch } from './tlb.js';
import { Tlb } from './tlb.js';
import {
  CBA2R,
  CBAR,
  CBAR_TYPE_S1_TRANS_S2_BYPASS,
  CBAR_TYPE_S1_TRANS_S2_FAULT,
  CBAR_TYPE_S1_TRANS_S2_TRANS,
  CBAR_TYPE_S2_TRANS,
  FSR_FORMAT_AARCH32_L,
  FSR_FORMAT_AARCH32_S,
  FSR_FORMAT_AARCH64,
  SCTLR,
  TCR,
  TCR2,
  TG1_16K,
  TG1_4K,
  TG1_64K,
  TTBR_HI,
  VTCR,
  decodeAddressSize,
} from './regs.js';
import type { StageConfig, Granule } from '../walker/index.js';
import { WalkConfigError, compileStage1, compileStage2, decodeS2SL0, decodeTG0 } from '../walker/index.js';

const TWO_32 = 0x1_0000_0000;

/** What the SMMU as a whole tells a bank's decode. */
export interface DecodeEnv {
  version: 1 | 2;
  stage1: boolean;
  stage2: boolean;
  nested: boolean;
  numS2Cb: number;
  numCb: number;
  /** ID2.OAS / IAS / UBS in bits (UBS = IAS on SMMUv1). */
  oas: number;
  ias: number;
  ubs: number;
  granules: { '4K': boolean; '16K': boolean; '64K': boolean };
  v1Aarch64Format: boolean;
  /** sCR0.VMID16EN with ID2.VMID16: VMIDs come from CBA2R.VMID16. */
  vmid16Enabled(): boolean;
  tlb: Tlb;
  /** The bank a nested stage 1 bank names for its stage 2. */
  bank(n: number): ContextBank;
}

/** Outcome of a decode. */
export const CFG_OK = 0;
/** SCTLR.M = 0: the bank does not translate. */
export const CFG_DISABLED = 1;
/** A format the model does not implement: translation fault. */
export const CFG_UNSUPPORTED = 2;
/** A configuration the architecture forbids: translation fault at level 0. */
export const CFG_INVALID = 3;
/** CBAR.TYPE names a stage (or nesting) the SMMU does not implement: global ICF. */
export const CFG_BAD_TYPE = 4;

/** The translation regime of one bank, decoded from its registers. Reused in place. */
export class ContextConfig {
  status = CFG_OK;
  reason = '';
  type = 0;
  /** FSR.FORMAT of faults recorded for this bank. */
  format = FSR_FORMAT_AARCH64;
  /**
   * The bank translates with a stage 1 (stage 1 only, or nested with stage 1 enabled), whether or not
   * EPDn left it a region to walk: with both disabled, every TLB miss is a translation fault.
   */
  stage1 = false;
  /** Stage 1 region tables (null: region disabled by EPDn or absent). */
  ttbr0: StageConfig | null = null;
  ttbr1: StageConfig | null = null;
  /** Stage 1 inputs below this may use TTBR0 (the walker input is the address itself). */
  ttbr0Limit = 0;
  /** Stage 1 inputs at or above this use TTBR1 (Infinity: no TTBR1 region). */
  ttbr1Start = Infinity;
  /** Subtracted from an input in the TTBR1 region to give the walker's input. */
  ttbr1Offset = 0;
  /** First address above the upstream bus (inputs at or above it cannot be translated). */
  inputLimit = 0;
  /** Bit that selects the TTBR1 region (the sign-extension position), -1 when none. */
  sepBit = -1;
  /** 2^sepBit: inputs at or above it are in the TTBR1 half (Infinity when no sign bit). */
  sepLimit = Infinity;
  /** Stage 2 table (stage 2 only, or the stage 2 of a nested bank; null if that bank has M=0). */
  s2: StageConfig | null = null;
  /** Bank holding stage 2 of a nested translation (-1 when none). */
  s2Cb = -1;
  vmid = 0;
  asid = 0;
  /** Bank index when SCTLR.ASIDPNE makes the ASID space private, else -1. */
  privateCb = -1;
  /** TLB sets: entries for (namespace, ASID) and the namespace's global entries (stage 1). */
  tlbSet: TlbSet | null = null;
  tlbGlobal: TlbSet | null = null;
  wxn = false;
  /** Which of `ttbr0`/`ttbr1` the last `selectRegion` chose, with the walker input it computed. */
  regionInput = 0;
}

export class ContextBank {
  // GR1
  cbar = 0;
  cbfrsynra = 0;
  cba2r = 0;
  // Bank page
  sctlr = 0;
  actlr = 0;
  tcr2 = 0;
  ttbr0Lo = 0;
  ttbr0Hi = 0;
  ttbr1Lo = 0;
  ttbr1Hi = 0;
  tcr = 0;
  contextidr = 0;
  mair0 = 0;
  mair1 = 0;
  parLo = 0;
  parHi = 0;
  fsr = 0;
  farLo = 0;
  farHi = 0;
  fsynr0 = 0;
  fsynr1 = 0;
  ipafarLo = 0;
  ipafarHi = 0;
  /** High half latched by a 32-bit write to the upper word of a 64-bit command register. */
  cmdHi = 0;

  /** TLB maintenance written to this bank and not yet completed by a TLBSYNC. */
  pendingTlbi = new TlbiBatch();
  /** TLBSYNCs in flight: TLBSTATUS.SACTIVE reads 1 while any is. */
  syncsInFlight = 0;
  /** An ATS1* operation in flight: ATSR.ACTIVE. */
  atsActive = false;

  readonly config = new ContextConfig();
  private decodedGen = -1;

  constructor(
    readonly index: number,
    private readonly actlrReset: number,
  ) {
    this.reset();
  }

  reset(): void {
    this.cbar = 0;
    this.cbfrsynra = 0;
    this.cba2r = 0;
    this.sctlr = 0;
    this.actlr = this.actlrReset;
    this.tcr2 = 0;
    this.ttbr0Lo = this.ttbr0Hi = this.ttbr1Lo = this.ttbr1Hi = 0;
    this.tcr = 0;
    this.contextidr = 0;
    this.mair0 = this.mair1 = 0;
    this.parLo = this.parHi = 0;
    this.fsr = 0;
    this.farLo = this.farHi = 0;
    this.fsynr0 = this.fsynr1 = 0;
    this.ipafarLo = this.ipafarHi = 0;
    this.cmdHi = 0;
    this.pendingTlbi.length = 0;
    this.syncsInFlight = 0;
    this.atsActive = false;
    this.decodedGen = -1;
  }

  /** The decoded configuration, re-decoded when any configuration register changed (`gen`). */
  decoded(env: DecodeEnv, gen: number): ContextConfig {
    if (this.decodedGen !== gen) {
      this.decodedGen = gen;
      decodeContext(this, env, this.config);
    }
    return this.config;
  }

  /** The MAIR attribute byte for AttrIndx n. */
  mairAttr(n: number): number {
    const w = n < 4 ? this.mair0 : this.mair1;
    return (w >>> ((n & 3) * 8)) & 0xff;
  }

  /** True when this bank holds a VMSAv8-64 (AArch64) format context. */
  isAarch64(env: DecodeEnv): boolean {
    if (env.version === 2) return CBA2R.VA64.isSet(this.cba2r);
    return env.v1Aarch64Format && !TCR.EAE.isSet(this.tcr);
  }
}

function setStatus(c: ContextConfig, status: number, reason: string): ContextConfig {
  c.status = status;
  c.reason = reason;
  return c;
}

function vmidOf(bank: ContextBank, env: DecodeEnv): number {
  return env.vmid16Enabled() ? CBA2R.VMID16.get(bank.cba2r) : CBAR.VMID.get(bank.cbar);
}

/** Decode bank `b` into `c` (overwriting every field). */
export function decodeContext(b: ContextBank, env: DecodeEnv, c: ContextConfig): ContextConfig {
  c.status = CFG_OK;
  c.reason = '';
  c.stage1 = false;
  c.ttbr0 = c.ttbr1 = c.s2 = null;
  c.ttbr0Limit = 0;
  c.ttbr1Start = Infinity;
  c.ttbr1Offset = 0;
  c.sepBit = -1;
  c.sepLimit = Infinity;
  c.inputLimit = 0;
  c.s2Cb = -1;
  c.vmid = 0;
  c.asid = 0;
  c.privateCb = -1;
  c.tlbSet = c.tlbGlobal = null;
  c.wxn = SCTLR.WXN.isSet(b.sctlr);
  const type = b.index < env.numS2Cb ? CBAR_TYPE_S2_TRANS : CBAR.TYPE.get(b.cbar);
  c.type = type;
  c.format = b.isAarch64(env) ? FSR_FORMAT_AARCH64 : TCR.EAE.isSet(b.tcr) ? FSR_FORMAT_AARCH32_L : FSR_FORMAT_AARCH32_S;

  switch (type) {
    case CBAR_TYPE_S2_TRANS: {
      if (!env.stage2) return setStatus(c, CFG_BAD_TYPE, 'CBAR.TYPE is stage 2 but ID0.S2TS is 0');
      if (!SCTLR.M.isSet(b.sctlr)) return setStatus(c, CFG_DISABLED, 'SCTLR.M=0');
      c.vmid = vmidOf(b, env);
      if (!decodeStage2(b, env, c)) return c;
      c.tlbSet = env.tlb.set('stage2', c.vmid, -1, -1, false);
      return c;
    }
    case CBAR_TYPE_S1_TRANS_S2_BYPASS:
    case CBAR_TYPE_S1_TRANS_S2_FAULT: {
      if (!env.stage1) return setStatus(c, CFG_BAD_TYPE, 'CBAR.TYPE is stage 1 but ID0.S1TS is 0');
      if (!SCTLR.M.isSet(b.sctlr)) return setStatus(c, CFG_DISABLED, 'SCTLR.M=0');
      c.vmid = vmidOf(b, env);
      c.stage1 = true;
      if (!decodeStage1(b, env, c)) return c;
      attachStage1Sets(b, env, c, 'stage1');
      return c;
    }
    case CBAR_TYPE_S1_TRANS_S2_TRANS: {
      if (!env.nested) return setStatus(c, CFG_BAD_TYPE, 'CBAR.TYPE is nested but ID0.NTS is 0');
      const s2n = CBAR.CBNDX.get(b.cbar);
      if (s2n >= env.numCb || s2n === b.index) {
        return setStatus(c, CFG_BAD_TYPE, `CBAR.CBNDX=${s2n} names no other context bank`);
      }
      const s2b = env.bank(s2n);
      const s2type = s2n < env.numS2Cb ? CBAR_TYPE_S2_TRANS : CBAR.TYPE.get(s2b.cbar);
      if (s2type !== CBAR_TYPE_S2_TRANS) {
        return setStatus(c, CFG_BAD_TYPE, `nested stage 2 bank ${s2n} is not a stage 2 bank (CBAR.TYPE=${s2type})`);
      }
      c.s2Cb = s2n;
      c.vmid = vmidOf(s2b, env);
      if (SCTLR.M.isSet(s2b.sctlr) && !decodeStage2(s2b, env, c)) return c;
      if (!SCTLR.M.isSet(b.sctlr)) {
        // Stage 1 disabled: the bank translates through its stage 2 alone.
        if (c.s2 === null) return setStatus(c, CFG_DISABLED, 'SCTLR.M=0 in both stages');
        c.tlbSet = env.tlb.set('stage2', c.vmid, -1, -1, false);
        c.ttbr0 = null;
        c.ttbr0Limit = 0;
        return setStatus(c, CFG_OK, 'stage 1 disabled (SCTLR.M=0)');
      }
      c.stage1 = true;
      if (!decodeStage1(b, env, c)) return c;
      attachStage1Sets(b, env, c, c.s2 === null ? 'stage1' : 'nested');
      return c;
    }
    default:
      return setStatus(c, CFG_BAD_TYPE, `CBAR.TYPE=${type}`);
  }
}

function attachStage1Sets(b: ContextBank, env: DecodeEnv, c: ContextConfig, kind: 'stage1' | 'nested'): void {
  c.privateCb = SCTLR.ASIDPNE.isSet(b.sctlr) ? b.index : -1;
  c.tlbSet = env.tlb.set(kind, c.vmid, c.privateCb, c.asid, false);
  c.tlbGlobal = env.tlb.set(kind, c.vmid, c.privateCb, -1, true);
}

/** Compile, turning an architecturally invalid configuration into CFG_INVALID. */
function compile(c: ContextConfig, f: () => StageConfig): StageConfig | null {
  try {
    return f();
  } catch (e) {
    if (!(e instanceof WalkConfigError)) throw e;
    setStatus(c, CFG_INVALID, e.message);
    return null;
  }
}

function granuleAllowed(env: DecodeEnv, g: Granule): boolean {
  if (env.version === 1) return true; // SMMUv1 has no PTFS granule bits
  return g === 4096 ? env.granules['4K'] : g === 16384 ? env.granules['16K'] : env.granules['64K'];
}

function decodeTG1(tg1: number): Granule | null {
  return tg1 === TG1_4K ? 4096 : tg1 === TG1_16K ? 16384 : tg1 === TG1_64K ? 65536 : null;
}

function ttbrBase(lo: number, hi: number): number {
  // BADDR[47:1]; bit 0 (CnP) and the ASID are not address bits.
  return (hi & 0xffff) * TWO_32 + ((lo & ~1) >>> 0);
}

function decodeStage1(b: ContextBank, env: DecodeEnv, c: ContextConfig): boolean {
  const tcr = b.tcr;
  const a1 = TCR.A1.isSet(tcr);
  const asidHi = a1 ? b.ttbr1Hi : b.ttbr0Hi;
  if (c.format === FSR_FORMAT_AARCH32_S) {
    setStatus(c, CFG_UNSUPPORTED, 'AArch32 short-descriptor format is not modelled');
    return false;
  }
  if (c.format === FSR_FORMAT_AARCH32_L) {
    // VMSAv7 long descriptors: 32-bit input, T0SZ/T1SZ 3 bits, 4K granule, 40-bit output.
    c.asid = TTBR_HI.ASID.get(asidHi) & 0xff;
    const t0sz = tcr & 7;
    const t1sz = (tcr >>> 16) & 7;
    const out = Math.min(40, env.oas);
    c.inputLimit = TWO_32;
    c.ttbr0Limit = Math.pow(2, 32 - t0sz);
    // TTBR1 holds the top 2^(32-T1SZ) bytes; with T1SZ = 0 (and T0SZ > 0) everything above TTBR0's
    // range, its table indexed by the whole address.
    let size1 = 0;
    if (t1sz > 0) {
      size1 = 32 - t1sz;
      c.ttbr1Start = TWO_32 - Math.pow(2, size1);
      c.ttbr1Offset = c.ttbr1Start;
    } else if (t0sz > 0) {
      size1 = 32;
      c.ttbr1Start = c.ttbr0Limit;
      c.ttbr1Offset = 0;
    }
    if (!TCR.EPD0.isSet(tcr)) {
      c.ttbr0 = compile(c, () =>
        compileStage1({ granule: 4096, inputSize: 32 - t0sz, outputSize: out, tableBase: ttbrBase(b.ttbr0Lo, b.ttbr0Hi) }),
      );
      if (c.ttbr0 === null) return false;
    }
    if (size1 > 0 && !TCR.EPD1.isSet(tcr)) {
      c.ttbr1 = compile(c, () =>
        compileStage1({ granule: 4096, inputSize: size1, outputSize: out, tableBase: ttbrBase(b.ttbr1Lo, b.ttbr1Hi) }),
      );
      if (c.ttbr1 === null) return false;
    }
    return true;
  }
  // AArch64.
  const asid16 = env.version === 2 && TCR2.AS.isSet(b.tcr2);
  const asid = TTBR_HI.ASID.get(asidHi);
  c.asid = asid16 ? asid : asid & 0xff;
  const out = env.version === 2 ? decodeAddressSize(TCR2.PASIZE.get(b.tcr2), env.oas) : env.oas;
  const ubs = env.ubs;
  c.inputLimit = Math.pow(2, ubs);
  c.sepBit = ubs - 1;
  c.sepLimit = Math.pow(2, c.sepBit);
  const t0sz = TCR.T0SZ.get(tcr);
  const t1sz = TCR.T1SZ.get(tcr);
  // Inputs with the sign bit clear are TTBR0's, up to its input size; with it set, TTBR1 holds the
  // top 2^(64-T1SZ) bytes of the sign-extended space.
  c.ttbr0Limit = Math.min(Math.pow(2, 64 - t0sz), c.sepLimit);
  const size1 = 64 - t1sz;
  c.ttbr1Offset = c.inputLimit - Math.pow(2, size1);
  c.ttbr1Start = Math.max(c.ttbr1Offset, c.sepLimit);
  if (!TCR.EPD0.isSet(tcr)) {
    const g = decodeTG0(TCR.TG0.get(tcr));
    if (g === null || !granuleAllowed(env, g)) {
      setStatus(c, CFG_INVALID, `TCR.TG0=${TCR.TG0.get(tcr)} is not a granule the SMMU supports`);
      return false;
    }
    c.ttbr0 = compile(c, () =>
      compileStage1({ granule: g, inputSize: 64 - t0sz, outputSize: out, tableBase: ttbrBase(b.ttbr0Lo, b.ttbr0Hi) }),
    );
    if (c.ttbr0 === null) return false;
  }
  if (!TCR.EPD1.isSet(tcr)) {
    const g = decodeTG1(TCR.TG1.get(tcr));
    if (g === null || !granuleAllowed(env, g)) {
      setStatus(c, CFG_INVALID, `TCR.TG1=${TCR.TG1.get(tcr)} is not a granule the SMMU supports`);
      return false;
    }
    c.ttbr1 = compile(c, () =>
      compileStage1({ granule: g, inputSize: size1, outputSize: out, tableBase: ttbrBase(b.ttbr1Lo, b.ttbr1Hi) }),
    );
    if (c.ttbr1 === null) return false;
  }
  return true;
}

function decodeStage2(b: ContextBank, env: DecodeEnv, c: ContextConfig): boolean {
  const vtcr = b.tcr;
  const base = ttbrBase(b.ttbr0Lo, b.ttbr0Hi);
  let granule: Granule;
  let inputSize: number;
  let outputSize: number;
  if (b.isAarch64(env) || env.version === 2) {
    const g = decodeTG0(VTCR.TG0.get(vtcr));
    if (g === null || !granuleAllowed(env, g)) {
      setStatus(c, CFG_INVALID, `VTCR.TG0=${VTCR.TG0.get(vtcr)} is not a granule the SMMU supports`);
      return false;
    }
    granule = g;
    inputSize = 64 - VTCR.T0SZ.get(vtcr);
    outputSize = env.version === 2 ? decodeAddressSize(VTCR.PS.get(vtcr), env.oas) : env.oas;
  } else {
    // AArch32 stage 2: T0SZ is a 4-bit signed value, 4K granule, 40-bit output.
    const t0 = vtcr & 0xf;
    granule = 4096;
    inputSize = 32 - (t0 & 8 ? t0 - 16 : t0);
    outputSize = Math.min(40, env.oas);
  }
  if (inputSize > env.ias) {
    setStatus(c, CFG_INVALID, `stage 2 input size ${inputSize} exceeds ID2.IAS (${env.ias} bits)`);
    return false;
  }
  const startLevel = decodeS2SL0(granule, VTCR.SL0.get(vtcr));
  if (startLevel < 0) {
    setStatus(c, CFG_INVALID, `VTCR.SL0=${VTCR.SL0.get(vtcr)} is reserved`);
    return false;
  }
  c.s2 = compile(c, () => compileStage2({ granule, inputSize, outputSize, startLevel, tableBase: base }));
  return c.s2 !== null;
}

/**
 * Pick the stage 1 table for input `va` of a decoded config: returns the StageConfig (with the
 * walker's input in `c.regionInput`), or null when the address falls in no enabled region (a
 * level-0 translation fault).
 */
export function selectRegion(c: ContextConfig, va: number): StageConfig | null {
  if (va >= c.inputLimit) return null;
  if (va >= c.sepLimit || va >= c.ttbr1Start) {
    if (c.ttbr1 === null || va < c.ttbr1Start) return null;
    c.regionInput = va - c.ttbr1Offset;
    return c.ttbr1;
  }
  if (c.ttbr0 === null || va >= c.ttbr0Limit) return null;
  c.regionInput = va;
  return c.ttbr0;
}
