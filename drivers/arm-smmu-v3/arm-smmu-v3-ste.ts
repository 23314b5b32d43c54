/**
 * Stream Table Entries: pure builders of the STEs the driver installs, the used-bits function the
 * entry writer needs, and the level-1 descriptor (kernel: arm_smmu_make_*_ste(),
 * arm_smmu_get_ste_used(), arm_smmu_write_strtab_l1_desc()).
 *
 * Builders take plain descriptions (SMMU feature bits, the master's CD table, a stage 2 config) and
 * fill a zeroed 16-word entry; they touch no hardware, so tests can build every transition.
 */
import type { ArmLpaeS2Cfg } from '../../core/io-pgtable.js';
import { FIELD_PREP } from '../../bus/bitfield.js';
import {
  ARM_SMMU_FEAT_ATTR_TYPES_OVR,
  ARM_SMMU_FEAT_E2H,
  ARM_SMMU_FEAT_STALLS,
  ARM_SMMU_SH_ISH,
  STRTAB_L1_DESC_L2PTR_MASK,
  STRTAB_L1_DESC_SPAN,
  STRTAB_SPLIT,
  STRTAB_STE_0_CFG,
  STRTAB_STE_0_CFG_ABORT,
  STRTAB_STE_0_CFG_BYPASS,
  STRTAB_STE_0_CFG_S1_TRANS,
  STRTAB_STE_0_CFG_S2_TRANS,
  STRTAB_STE_0_S1CDMAX,
  STRTAB_STE_0_S1CTXPTR_MASK,
  STRTAB_STE_0_S1FMT,
  STRTAB_STE_0_V,
  STRTAB_STE_1_EATS,
  STRTAB_STE_1_EATS_S1CHK,
  STRTAB_STE_1_EATS_TRANS,
  STRTAB_STE_1_MEV,
  STRTAB_STE_1_S2FWB,
  STRTAB_STE_1_S1C_CACHE_WBRA,
  STRTAB_STE_1_S1CIR,
  STRTAB_STE_1_S1COR,
  STRTAB_STE_1_S1CSH,
  STRTAB_STE_1_S1DSS,
  STRTAB_STE_1_S1DSS_BYPASS,
  STRTAB_STE_1_S1STALLD,
  STRTAB_STE_1_SHCFG,
  STRTAB_STE_1_SHCFG_INCOMING,
  STRTAB_STE_1_STRW,
  STRTAB_STE_1_STRW_EL2,
  STRTAB_STE_1_STRW_NSEL1,
  STRTAB_STE_2_S2AA64,
  STRTAB_STE_2_S2ENDI,
  STRTAB_STE_2_S2PTW,
  STRTAB_STE_2_S2R,
  STRTAB_STE_2_S2S,
  STRTAB_STE_2_S2VMID,
  STRTAB_STE_2_VTCR,
  STRTAB_STE_2_VTCR_S2IR0,
  STRTAB_STE_2_VTCR_S2OR0,
  STRTAB_STE_2_VTCR_S2PS,
  STRTAB_STE_2_VTCR_S2SH0,
  STRTAB_STE_2_VTCR_S2SL0,
  STRTAB_STE_2_VTCR_S2T0SZ,
  STRTAB_STE_2_VTCR_S2TG,
  STRTAB_STE_3_S2TTB_MASK,
} from './arm-smmu-v3-regs.js';

/** The master's CD table as an STE points at it (kernel: struct arm_smmu_ctx_desc_cfg). */
export interface CdTableRef {
  /** PA of the CD table (linear) or its L1 table. */
  readonly cdtabDma: number;
  /** STRTAB_STE_0_S1FMT_* */
  readonly s1fmt: number;
  /** log2 of the number of CDs. */
  readonly s1cdmax: number;
}

/** What an STE builder needs to know about the master. */
export interface SteMaster {
  /** ARM_SMMU_FEAT_* of its SMMU. */
  readonly features: number;
  readonly stallEnabled: boolean;
  readonly cdTable: CdTableRef | null;
}

/** Stage 2 settings of a domain (kernel: arm_smmu_s2_cfg + io-pgtable's arm_lpae_s2_cfg). */
export interface S2Config {
  readonly vmid: number;
  readonly vttbr: number;
  readonly vtcr: ArmLpaeS2Cfg['vtcr'];
}

// kernel: arm_smmu_make_abort_ste() [arm-smmu-v3.c]
export function armSmmuMakeAbortSte(target: Uint32Array): void {
  target.fill(0);
  STRTAB_STE_0_V.prep(target, 1);
  STRTAB_STE_0_CFG.prep(target, STRTAB_STE_0_CFG_ABORT);
}

// kernel: arm_smmu_make_bypass_ste() [arm-smmu-v3.c]
export function armSmmuMakeBypassSte(features: number, target: Uint32Array): void {
  target.fill(0);
  STRTAB_STE_0_V.prep(target, 1);
  STRTAB_STE_0_CFG.prep(target, STRTAB_STE_0_CFG_BYPASS);
  if ((features & ARM_SMMU_FEAT_ATTR_TYPES_OVR) !== 0) STRTAB_STE_1_SHCFG.prep(target, STRTAB_STE_1_SHCFG_INCOMING);
}

/**
 * An STE pointing at the master's CD table; `s1dss` says what traffic without a SubstreamID does
 * (terminate, bypass, or use CD 0).
 */
// kernel: arm_smmu_make_cdtable_ste() [arm-smmu-v3.c]
export function armSmmuMakeCdtableSte(target: Uint32Array, master: SteMaster, atsEnabled: boolean, s1dss: number): void {
  const cd = master.cdTable;
  if (!cd) throw new RangeError('arm_smmu_make_cdtable_ste: the master has no CD table');
  target.fill(0);
  STRTAB_STE_0_V.prep(target, 1);
  STRTAB_STE_0_CFG.prep(target, STRTAB_STE_0_CFG_S1_TRANS);
  STRTAB_STE_0_S1FMT.prep(target, cd.s1fmt);
  STRTAB_STE_0_S1CTXPTR_MASK.prep(target, cd.cdtabDma);
  STRTAB_STE_0_S1CDMAX.prep(target, cd.s1cdmax);

  STRTAB_STE_1_S1DSS.prep(target, s1dss);
  STRTAB_STE_1_S1CIR.prep(target, STRTAB_STE_1_S1C_CACHE_WBRA);
  STRTAB_STE_1_S1COR.prep(target, STRTAB_STE_1_S1C_CACHE_WBRA);
  STRTAB_STE_1_S1CSH.prep(target, ARM_SMMU_SH_ISH);
  if ((master.features & ARM_SMMU_FEAT_STALLS) !== 0 && !master.stallEnabled) STRTAB_STE_1_S1STALLD.prep(target, 1);
  if (atsEnabled) STRTAB_STE_1_EATS.prep(target, STRTAB_STE_1_EATS_TRANS);
  if ((master.features & ARM_SMMU_FEAT_ATTR_TYPES_OVR) !== 0 && s1dss === STRTAB_STE_1_S1DSS_BYPASS) {
    STRTAB_STE_1_SHCFG.prep(target, STRTAB_STE_1_SHCFG_INCOMING);
  }
  if ((master.features & ARM_SMMU_FEAT_E2H) !== 0) {
    // BTM needs the StreamWorld to match the CPU's: EL2 with E2H (a hypervisor host).
    STRTAB_STE_1_STRW.prep(target, STRTAB_STE_1_STRW_EL2);
  } else {
    STRTAB_STE_1_STRW.prep(target, STRTAB_STE_1_STRW_NSEL1);
    // VMID 0 is reserved for stage 1 (stage 2 bypass) STEs.
    STRTAB_STE_2_S2VMID.prep(target, 0);
  }
}

/** The VTCR block of an S2 STE from io-pgtable's values. */
export function armSmmuVtcr(vtcr: ArmLpaeS2Cfg['vtcr']): number {
  return (
    FIELD_PREP(STRTAB_STE_2_VTCR_S2T0SZ, vtcr.tsz) |
    FIELD_PREP(STRTAB_STE_2_VTCR_S2SL0, vtcr.sl) |
    FIELD_PREP(STRTAB_STE_2_VTCR_S2IR0, vtcr.irgn) |
    FIELD_PREP(STRTAB_STE_2_VTCR_S2OR0, vtcr.orgn) |
    FIELD_PREP(STRTAB_STE_2_VTCR_S2SH0, vtcr.sh) |
    FIELD_PREP(STRTAB_STE_2_VTCR_S2TG, vtcr.tg) |
    FIELD_PREP(STRTAB_STE_2_VTCR_S2PS, vtcr.ps)
  ) >>> 0;
}

/** An STE translating through a stage 2 domain. */
// kernel: arm_smmu_make_s2_domain_ste() [arm-smmu-v3.c]
export function armSmmuMakeS2DomainSte(target: Uint32Array, master: SteMaster, s2: S2Config, atsEnabled: boolean): void {
  target.fill(0);
  STRTAB_STE_0_V.prep(target, 1);
  STRTAB_STE_0_CFG.prep(target, STRTAB_STE_0_CFG_S2_TRANS);
  if (atsEnabled) STRTAB_STE_1_EATS.prep(target, STRTAB_STE_1_EATS_TRANS);
  if ((master.features & ARM_SMMU_FEAT_ATTR_TYPES_OVR) !== 0) STRTAB_STE_1_SHCFG.prep(target, STRTAB_STE_1_SHCFG_INCOMING);
  STRTAB_STE_2_S2VMID.prep(target, s2.vmid);
  STRTAB_STE_2_VTCR.prep(target, armSmmuVtcr(s2.vtcr));
  STRTAB_STE_2_S2AA64.prep(target, 1);
  STRTAB_STE_2_S2PTW.prep(target, 1);
  // A stall-capable master's stage 2 faults stall, as its stage 1 faults do with CD.S.
  if (master.stallEnabled) STRTAB_STE_2_S2S.prep(target, 1);
  STRTAB_STE_2_S2R.prep(target, 1);
  STRTAB_STE_3_S2TTB_MASK.prep(target, s2.vttbr);
}

/**
 * Every bit of an STE the hardware reads for the configuration `ent` selects; it must cover every
 * bit the builders set.
 */
// kernel: arm_smmu_get_ste_used() [arm-smmu-v3.c]
export function armSmmuGetSteUsed(ent: Uint32Array, used: Uint32Array): void {
  used.fill(0);
  STRTAB_STE_0_V.mark(used);
  if (!STRTAB_STE_0_V.isSet(ent)) return;
  STRTAB_STE_0_CFG.mark(used);
  const cfg = STRTAB_STE_0_CFG.get(ent);

  // Stage 1 translates.
  if ((cfg & 1) !== 0) {
    STRTAB_STE_0_S1FMT.mark(used);
    STRTAB_STE_0_S1CTXPTR_MASK.mark(used);
    STRTAB_STE_0_S1CDMAX.mark(used);
    for (const f of [STRTAB_STE_1_S1DSS, STRTAB_STE_1_S1CIR, STRTAB_STE_1_S1COR, STRTAB_STE_1_S1CSH, STRTAB_STE_1_S1STALLD, STRTAB_STE_1_STRW, STRTAB_STE_1_EATS, STRTAB_STE_1_MEV]) {
      f.mark(used);
    }
    STRTAB_STE_2_S2VMID.mark(used);
    // SHCFG applies to the bypassed non-SubstreamID traffic.
    if (STRTAB_STE_1_S1DSS.get(ent) === STRTAB_STE_1_S1DSS_BYPASS) STRTAB_STE_1_SHCFG.mark(used);
  }

  // Stage 2 translates.
  if ((cfg & 2) !== 0) {
    for (const f of [STRTAB_STE_1_S2FWB, STRTAB_STE_1_EATS, STRTAB_STE_1_SHCFG, STRTAB_STE_1_MEV]) f.mark(used);
    for (const f of [STRTAB_STE_2_S2VMID, STRTAB_STE_2_VTCR, STRTAB_STE_2_S2AA64, STRTAB_STE_2_S2ENDI, STRTAB_STE_2_S2PTW, STRTAB_STE_2_S2S, STRTAB_STE_2_S2R]) f.mark(used);
    STRTAB_STE_3_S2TTB_MASK.mark(used);
  }

  if (cfg === STRTAB_STE_0_CFG_BYPASS) STRTAB_STE_1_SHCFG.mark(used);
}

/**
 * Bits of an STE that may change in any order between `cur` and `target` although the hardware
 * reads them:
 * - EATS_TRANS: the attach path has already disabled ATS in the function's PCI capability when it
 *   changes EATS, so no translation request races the change. Not when either side uses EATS_S1CHK
 *   (a transient 0b11 is an illegal value) or S2S (S2S=1 with EATS=1 is an illegal STE).
 * - MEV: only merges event records, and software must cope with merged records even with MEV=0.
 */
// kernel: arm_smmu_get_ste_update_safe() [arm-smmu-v3.c]
export function armSmmuGetSteUpdateSafe(cur: Uint32Array, target: Uint32Array, safe: Uint32Array): void {
  const s1chk = (STRTAB_STE_1_EATS.get(cur) | STRTAB_STE_1_EATS.get(target)) & STRTAB_STE_1_EATS_S1CHK;
  if (s1chk === 0 && !STRTAB_STE_2_S2S.isSet(cur) && !STRTAB_STE_2_S2S.isSet(target)) {
    STRTAB_STE_1_EATS.prep(safe, STRTAB_STE_1_EATS_TRANS);
  }
  STRTAB_STE_1_MEV.mark(safe);
}

/** An STE's Config in words, for logs and reports. */
export function armSmmuSteConfigName(ent: Uint32Array): string {
  if (!STRTAB_STE_0_V.isSet(ent)) return 'invalid';
  switch (STRTAB_STE_0_CFG.get(ent)) {
    case STRTAB_STE_0_CFG_ABORT:
      return 'abort';
    case STRTAB_STE_0_CFG_BYPASS:
      return 'bypass';
    case STRTAB_STE_0_CFG_S1_TRANS:
      return 's1';
    case STRTAB_STE_0_CFG_S2_TRANS:
      return 's2';
    default:
      return `config ${STRTAB_STE_0_CFG.get(ent)}`;
  }
}

/**
 * A level-1 stream table descriptor pointing at an L2 table of 2^STRTAB_SPLIT STEs, as 2 words.
 */
// kernel: arm_smmu_write_strtab_l1_desc() [arm-smmu-v3.c]
export function armSmmuMakeStrtabL1Desc(l2ptrDma: number): Uint32Array {
  const w = new Uint32Array(2);
  STRTAB_L1_DESC_SPAN.prep(w, STRTAB_SPLIT + 1);
  STRTAB_L1_DESC_L2PTR_MASK.prep(w, l2ptrDma);
  return w;
}
