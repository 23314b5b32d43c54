/**
 * SMMUv3 construction options: the implementation choices the ID registers advertise (features,
 * table/queue sizes, stall model, address sizes, granules), the reset value firmware leaves in
 * GBPA, and the virtual-time costs of the hardware's work.
 *
 * Supports: validating every option with an error naming it, and computing IDR0-5/IIDR/AIDR.
 * IDR1.ATTR_TYPES_OVR defaults to 0 because the model does not apply STE.SHCFG/MTCFG/MemAttr to the
 * transactions it forwards (SMMUv3 spec 6.3.2 SMMU_IDR1, 5.2 STE.SHCFG); it can be set to mimic a
 * part that has them. IDR3.BBML (6.3.4; 3.21.1.3 "Translation table entry changes without break-
 * before-make") defaults to 2: the TLB never raises F_TLB_CONFLICT, a lookup returns either the old
 * or the new translation until the TLBI, and with BBML 1 or 2 a leaf with nT (descriptor bit 16) set
 * is not cached.
 * `QEMU_VIRT_SMMUV3_OPTIONS` gives the ID registers of QEMU's `virt` SMMUv3 (hw/arm/smmuv3.c
 * smmuv3_init_regs() of the QEMU 7/8 era that Linux 6.1 probe traces were taken on).
 * IDR0.HTTU is 0 or 1 (Access flag update only).
 * Does not support: VMSAv8-32 (AArch32) table formats (IDR0.TTF is always AArch64), dirty state
 * update (HTTU 2), BTM,
 * VATOS, MPAM, Secure/Realm state: those ID fields read as zero.
 */
import {
  ADDRESS_SIZE_BITS,
  GBPA_SHCFG,
  IDR0_ASID16,
  IDR0_ATS,
  IDR0_CD2L,
  IDR0_COHACC,
  IDR0_HTTU,
  IDR0_HYP,
  IDR0_MSI,
  IDR0_PRI,
  IDR0_S1P,
  IDR0_S2P,
  IDR0_SEV,
  IDR0_STALL_MODEL,
  IDR0_ST_LEVEL,
  IDR0_TERM_MODEL,
  IDR0_TTENDIAN,
  IDR0_TTF,
  IDR0_VMID16,
  IDR1_ATTR_PERMS_OVR,
  IDR1_ATTR_TYPES_OVR,
  IDR1_CMDQS,
  IDR1_EVENTQS,
  IDR1_PRIQS,
  IDR1_SIDSIZE,
  IDR1_SSIDSIZE,
  IDR3_BBML,
  IDR3_HAD,
  IDR3_PPS,
  IDR3_RIL,
  IDR3_XNX,
  IDR5_GRAN16K,
  IDR5_GRAN4K,
  IDR5_GRAN64K,
  IDR5_OAS,
  IDR5_STALL_MAX,
  ST_LEVEL_2LVL,
  ST_LEVEL_LINEAR,
  TTENDIAN_LE,
  TTF_AARCH64,
} from './regs.js';

export type StallModel = 0 | 1 | 2;

/** Virtual-time costs, in nanoseconds. */
export interface SmmuV3Timing {
  /** A CR0, IRQ_CTRL or GBPA update is acknowledged this long after the write. */
  regAckNs: number;
  /** Cost of consuming one command. */
  commandNs: number;
  /** Commands consumed per scheduler step. */
  commandsPerStep: number;
  /** From a fault (or page request) to its record being written and the interrupt raised. */
  eventNs: number;
  /** An ATS Translation Request's round trip through the SMMU. */
  atsNs: number;
  /** How long a CMD_SYNC waits for an unanswered ATC invalidation before CERROR_ATC_INV_SYNC. */
  atcInvTimeoutNs: number;
  /** From CMD_RESUME(retry) being consumed to the transaction being replayed. */
  resumeNs: number;
}

export interface SmmuV3Options {
  /** Names the device in traces and logs (a DT path for firmware-made devices). */
  name?: string;
  /** IDR0.S1P (default true). */
  stage1?: boolean;
  /** IDR0.S2P (default true). */
  stage2?: boolean;
  /** IDR0.COHACC: coherent table/queue walks (default true). */
  coherent?: boolean;
  /** IDR0.Hyp: EL2 StreamWorlds and TLBI_EL2_* (default true). */
  hyp?: boolean;
  /** IDR0.ATS (default true). */
  ats?: boolean;
  /** IDR0.PRI (default true). */
  pri?: boolean;
  /** IDR0.ASID16 (default true). */
  asid16?: boolean;
  /** IDR0.VMID16 (default true). */
  vmid16?: boolean;
  /** IDR0.MSI (default true). */
  msi?: boolean;
  /** IDR0.SEV (default true). */
  sev?: boolean;
  /** IDR0.CD2L: two-level CD tables (default true). */
  cd2l?: boolean;
  /** IDR0.ST_LEVEL: two-level stream tables (default true). */
  twoLevelStreamTable?: boolean;
  /** IDR0.STALL_MODEL: 0 stall+terminate, 1 terminate only, 2 stall forced (default 0). */
  stallModel?: StallModel;
  /** IDR0.TERM_MODEL: terminated transactions always abort, no RAZ/WI (default false). */
  abortOnlyTermination?: boolean;
  /** IDR1.SIDSIZE: StreamID bits, 0..32 (default 16). */
  sidBits?: number;
  /** IDR1.SSIDSIZE: SubstreamID bits, 0..20 (default 20). */
  ssidBits?: number;
  /** IDR1.CMDQS / EVENTQS / PRIQS: log2 of the maximum queue entries, 0..19 (default 19). */
  cmdqLog2?: number;
  evtqLog2?: number;
  priqLog2?: number;
  /** IDR1.ATTR_PERMS_OVR: STE.PRIVCFG/INSTCFG honoured (default true). */
  attrPermsOverride?: boolean;
  /**
   * IDR1.ATTR_TYPES_OVR: STE.SHCFG/MTCFG/MemAttr/ALLOCCFG overrides (default false: the model does
   * not apply memory attributes, so it does not claim the overrides).
   */
  attrTypesOverride?: boolean;
  /**
   * IDR0.HTTU: 0 none, 1 hardware Access flag update (CD.HA / STE.S2HA honoured). Dirty state
   * update (2) is not modelled (default 0).
   */
  httu?: 0 | 1;
  /** IDR3.BBML: break-before-make level 0, 1 or 2 (default 2, see the header). */
  bbml?: 0 | 1 | 2;
  /** Cache intermediate (table) descriptors of stage 1 and stage 2 walks, 4096 of them (default true). */
  walkCache?: boolean;
  /** IDR3.RIL: range invalidation and TTL hints (default true). */
  rangeInvalidation?: boolean;
  /** IDR3.PPS: PRI overflow auto-responses carry the request's PASID (default true). */
  priPasidAutoResponse?: boolean;
  /** IDR5.OAS in bits: 32, 36, 40, 42, 44, 48 or 52 (default 48). */
  oasBits?: number;
  /** IDR5.GRAN4K/16K/64K (default all). */
  granules?: { '4k'?: boolean; '16k'?: boolean; '64k'?: boolean };
  /** IDR5.STALL_MAX: stalled transactions the SMMU can hold (default 64). */
  stallMax?: number;
  /** GBPA value at reset: what firmware leaves (default 0x1000: bypass, SHCFG = use incoming). */
  gbpaReset?: number;
  /** IIDR value (default 0: not claiming to be a part with known errata). */
  iidr?: number;
  /** AIDR value (default 0x02: SMMUv3.2). */
  aidr?: number;
  /** TLB capacity in entries before the model evicts (default 16384). */
  tlbEntries?: number;
  timing?: Partial<SmmuV3Timing>;
}

export const DEFAULT_TIMING: SmmuV3Timing = {
  regAckNs: 100,
  commandNs: 20,
  commandsPerStep: 64,
  eventNs: 40,
  atsNs: 400,
  atcInvTimeoutNs: 100_000,
  resumeNs: 50,
};

/** The options with every default filled in and checked. */
export interface ResolvedOptions {
  name: string;
  stage1: boolean;
  stage2: boolean;
  coherent: boolean;
  hyp: boolean;
  ats: boolean;
  pri: boolean;
  asid16: boolean;
  vmid16: boolean;
  msi: boolean;
  sev: boolean;
  cd2l: boolean;
  twoLevelStreamTable: boolean;
  stallModel: StallModel;
  abortOnlyTermination: boolean;
  sidBits: number;
  ssidBits: number;
  cmdqLog2: number;
  evtqLog2: number;
  priqLog2: number;
  attrPermsOverride: boolean;
  attrTypesOverride: boolean;
  bbml: 0 | 1 | 2;
  httu: 0 | 1;
  walkCache: boolean;
  rangeInvalidation: boolean;
  priPasidAutoResponse: boolean;
  oasBits: number;
  gran4k: boolean;
  gran16k: boolean;
  gran64k: boolean;
  stallMax: number;
  gbpaReset: number;
  iidr: number;
  aidr: number;
  tlbEntries: number;
  timing: SmmuV3Timing;
}

function intIn(name: string, v: number | undefined, dflt: number, lo: number, hi: number): number {
  const x = v ?? dflt;
  if (!Number.isInteger(x) || x < lo || x > hi) {
    throw new RangeError(`SMMUv3 option ${name}: ${x} is not an integer in [${lo}, ${hi}]`);
  }
  return x;
}

export function resolveOptions(o: SmmuV3Options = {}): ResolvedOptions {
  const stage1 = o.stage1 ?? true;
  const stage2 = o.stage2 ?? true;
  if (!stage1 && !stage2) throw new RangeError('SMMUv3 options: at least one of stage1/stage2 must be implemented');
  const stallModel = o.stallModel ?? 0;
  if (stallModel !== 0 && stallModel !== 1 && stallModel !== 2) {
    throw new RangeError(`SMMUv3 option stallModel: ${String(stallModel)} is not 0, 1 or 2`);
  }
  const oasBits = o.oasBits ?? 48;
  if (!(ADDRESS_SIZE_BITS as readonly number[]).includes(oasBits)) {
    throw new RangeError(`SMMUv3 option oasBits: ${oasBits} is not one of ${ADDRESS_SIZE_BITS.join(', ')}`);
  }
  const g = o.granules ?? {};
  const gran4k = g['4k'] ?? true;
  const gran16k = g['16k'] ?? true;
  const gran64k = g['64k'] ?? true;
  if (!gran4k && !gran16k && !gran64k) throw new RangeError('SMMUv3 option granules: at least one granule must be supported');
  const gbpaReset = intIn('gbpaReset', o.gbpaReset, 0x1000, 0, 0xffff_ffff);
  const timing: SmmuV3Timing = { ...DEFAULT_TIMING, ...(o.timing ?? {}) };
  for (const [k, v] of Object.entries(timing)) {
    if (!(typeof v === 'number' && Number.isFinite(v) && v >= 0)) {
      throw new RangeError(`SMMUv3 option timing.${k}: ${String(v)} is not a finite number >= 0`);
    }
  }
  if (!(Number.isInteger(timing.commandsPerStep) && timing.commandsPerStep >= 1)) {
    throw new RangeError(`SMMUv3 option timing.commandsPerStep: ${timing.commandsPerStep} must be an integer >= 1`);
  }
  const ssidBits = intIn('ssidBits', o.ssidBits, 20, 0, 20);
  const pri = o.pri ?? true;
  const ats = o.ats ?? true;
  if (pri && !ats) throw new RangeError('SMMUv3 options: pri requires ats');
  const bbml = o.bbml ?? 2;
  if (bbml !== 0 && bbml !== 1 && bbml !== 2) throw new RangeError(`SMMUv3 option bbml: ${String(bbml)} is not 0, 1 or 2`);
  const httu = o.httu ?? 0;
  if (httu !== 0 && httu !== 1) throw new RangeError(`SMMUv3 option httu: ${String(httu)} is not 0 or 1 (dirty state update is not modelled)`);
  return {
    name: o.name ?? 'smmu-v3',
    stage1,
    stage2,
    coherent: o.coherent ?? true,
    hyp: o.hyp ?? true,
    ats,
    pri,
    asid16: o.asid16 ?? true,
    vmid16: o.vmid16 ?? true,
    msi: o.msi ?? true,
    sev: o.sev ?? true,
    cd2l: o.cd2l ?? true,
    twoLevelStreamTable: o.twoLevelStreamTable ?? true,
    stallModel,
    abortOnlyTermination: o.abortOnlyTermination ?? false,
    sidBits: intIn('sidBits', o.sidBits, 16, 0, 32),
    ssidBits,
    cmdqLog2: intIn('cmdqLog2', o.cmdqLog2, 19, 0, 19),
    evtqLog2: intIn('evtqLog2', o.evtqLog2, 19, 0, 19),
    priqLog2: intIn('priqLog2', o.priqLog2, 19, 0, 19),
    attrPermsOverride: o.attrPermsOverride ?? true,
    attrTypesOverride: o.attrTypesOverride ?? false,
    bbml,
    httu,
    walkCache: o.walkCache ?? true,
    rangeInvalidation: o.rangeInvalidation ?? true,
    priPasidAutoResponse: o.priPasidAutoResponse ?? true,
    oasBits,
    gran4k,
    gran16k,
    gran64k,
    stallMax: intIn('stallMax', o.stallMax, 64, 0, 0xffff),
    gbpaReset,
    iidr: intIn('iidr', o.iidr, 0, 0, 0xffff_ffff),
    aidr: intIn('aidr', o.aidr, 0x02, 0, 0xff),
    tlbEntries: intIn('tlbEntries', o.tlbEntries, 16384, 1, 1 << 24),
    timing,
  };
}

const flag = (f: { encode(v: number): number }, on: boolean): number => (on ? f.encode(1) : 0);

/** The identification registers an implementation with these options reads back. */
export interface IdRegisters {
  idr0: number;
  idr1: number;
  idr2: number;
  idr3: number;
  idr4: number;
  idr5: number;
  iidr: number;
  aidr: number;
}

export function idRegisters(o: ResolvedOptions): IdRegisters {
  const idr0 =
    (flag(IDR0_S2P, o.stage2) |
      flag(IDR0_S1P, o.stage1) |
      IDR0_TTF.encode(TTF_AARCH64) |
      flag(IDR0_COHACC, o.coherent) |
      IDR0_HTTU.encode(o.httu) |
      flag(IDR0_HYP, o.hyp && o.stage1) |
      flag(IDR0_ATS, o.ats) |
      flag(IDR0_ASID16, o.asid16 && o.stage1) |
      flag(IDR0_MSI, o.msi) |
      flag(IDR0_SEV, o.sev) |
      flag(IDR0_PRI, o.pri) |
      flag(IDR0_VMID16, o.vmid16 && o.stage2) |
      flag(IDR0_CD2L, o.cd2l && o.stage1) |
      IDR0_TTENDIAN.encode(TTENDIAN_LE) |
      IDR0_STALL_MODEL.encode(o.stallModel) |
      flag(IDR0_TERM_MODEL, o.abortOnlyTermination) |
      IDR0_ST_LEVEL.encode(o.twoLevelStreamTable ? ST_LEVEL_2LVL : ST_LEVEL_LINEAR)) >>>
    0;
  const idr1 =
    (IDR1_SIDSIZE.encode(o.sidBits) |
      IDR1_SSIDSIZE.encode(o.stage1 ? o.ssidBits : 0) |
      IDR1_PRIQS.encode(o.pri ? o.priqLog2 : 0) |
      IDR1_EVENTQS.encode(o.evtqLog2) |
      IDR1_CMDQS.encode(o.cmdqLog2) |
      flag(IDR1_ATTR_PERMS_OVR, o.attrPermsOverride) |
      flag(IDR1_ATTR_TYPES_OVR, o.attrTypesOverride)) >>>
    0;
  const idr3 =
    (flag(IDR3_HAD, o.stage1) |
      flag(IDR3_XNX, o.stage2) |
      flag(IDR3_PPS, o.pri && o.ssidBits > 0 && o.stage1 && o.priPasidAutoResponse) |
      flag(IDR3_RIL, o.rangeInvalidation) |
      IDR3_BBML.encode(o.bbml)) >>>
    0;
  const idr5 =
    (IDR5_OAS.encode(ADDRESS_SIZE_BITS.indexOf(o.oasBits as (typeof ADDRESS_SIZE_BITS)[number])) |
      flag(IDR5_GRAN4K, o.gran4k) |
      flag(IDR5_GRAN16K, o.gran16k) |
      flag(IDR5_GRAN64K, o.gran64k) |
      IDR5_STALL_MAX.encode(o.stallModel === 1 ? 0 : o.stallMax)) >>>
    0;
  return { idr0, idr1, idr2: 0, idr3, idr4: 0, idr5, iidr: o.iidr >>> 0, aidr: o.aidr };
}

/** GBPA.SHCFG = "use incoming", ABORT = 0: the bypass state QEMU-like firmware leaves. */
export const GBPA_BYPASS_RESET = GBPA_SHCFG.encode(1);

/**
 * The ID registers of QEMU's `virt` SMMUv3 (qemu hw/arm/smmuv3.c smmuv3_init_regs(),
 * hw/arm/smmuv3-internal.h): stage 1 only, AArch64 tables, coherent, 16-bit ASIDs, little-endian,
 * terminate-only stall model with abort termination, 2-level stream tables; SIDSIZE 16, no
 * SubstreamIDs, EVENTQS = CMDQS = 19; IDR3 RIL and HAD; 4K and 64K granules, 44-bit OAS; AIDR 0x1.
 * No ATS, PRI, MSI, SEV, HYP or attribute overrides.
 */
export const QEMU_VIRT_SMMUV3_OPTIONS: Readonly<SmmuV3Options> = Object.freeze({
  stage1: true,
  stage2: false,
  coherent: true,
  hyp: false,
  ats: false,
  pri: false,
  asid16: true,
  vmid16: false,
  msi: false,
  sev: false,
  cd2l: false,
  twoLevelStreamTable: true,
  stallModel: 1,
  abortOnlyTermination: true,
  sidBits: 16,
  ssidBits: 0,
  cmdqLog2: 19,
  evtqLog2: 19,
  attrPermsOverride: false,
  attrTypesOverride: false,
  bbml: 0,
  rangeInvalidation: true,
  oasBits: 44,
  granules: Object.freeze({ '4k': true, '16k': false, '64k': true }),
  aidr: 0x01,
});
