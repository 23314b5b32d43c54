/**
 * Context Descriptors: pure builders, the used-bits function, and the level-1 CD descriptor
 * (kernel: arm_smmu_make_s1_cd(), arm_smmu_get_cd_used(), arm_smmu_write_cd_l1_desc(), and the
 * "quiet" CD SVA installs when a process's mm goes away).
 */
import type { ArmLpaeS1Cfg } from '../../core/io-pgtable.js';
import {
  CTXDESC_CD_0_A,
  CTXDESC_CD_0_AA64,
  CTXDESC_CD_0_ASET,
  CTXDESC_CD_0_ASID,
  CTXDESC_CD_0_R,
  CTXDESC_CD_0_S,
  CTXDESC_CD_0_TCR_EPD0,
  CTXDESC_CD_0_TCR_EPD1,
  CTXDESC_CD_0_TCR_HA,
  CTXDESC_CD_0_TCR_HD,
  CTXDESC_CD_0_TCR_IPS,
  CTXDESC_CD_0_TCR_IRGN0,
  CTXDESC_CD_0_TCR_ORGN0,
  CTXDESC_CD_0_TCR_SH0,
  CTXDESC_CD_0_TCR_T0SZ,
  CTXDESC_CD_0_TCR_TG0,
  CTXDESC_CD_0_V,
  CTXDESC_CD_1_TTB0_MASK,
  CTXDESC_CD_3_MAIR_HI,
  CTXDESC_CD_3_MAIR_LO,
  CTXDESC_L1_DESC_L2PTR_MASK,
  CTXDESC_L1_DESC_V,
} from './arm-smmu-v3-regs.js';

/** A stage 1 context as a CD describes it (kernel: arm_smmu_ctx_desc + io-pgtable's s1 cfg). */
export interface S1Context {
  readonly asid: number;
  readonly s1: ArmLpaeS1Cfg;
  /** Hardware dirty-bit management (IO_PGTABLE_QUIRK_ARM_HD). */
  readonly hd?: boolean;
}

// kernel: arm_smmu_make_s1_cd() [arm-smmu-v3.c]
export function armSmmuMakeS1Cd(target: Uint32Array, stallEnabled: boolean, ctx: S1Context): void {
  const tcr = ctx.s1.tcr;
  target.fill(0);
  CTXDESC_CD_0_TCR_T0SZ.prep(target, tcr.tsz);
  CTXDESC_CD_0_TCR_TG0.prep(target, tcr.tg);
  CTXDESC_CD_0_TCR_IRGN0.prep(target, tcr.irgn);
  CTXDESC_CD_0_TCR_ORGN0.prep(target, tcr.orgn);
  CTXDESC_CD_0_TCR_SH0.prep(target, tcr.sh);
  CTXDESC_CD_0_TCR_EPD1.prep(target, 1);
  CTXDESC_CD_0_V.prep(target, 1);
  CTXDESC_CD_0_TCR_IPS.prep(target, tcr.ips);
  CTXDESC_CD_0_AA64.prep(target, 1);
  if (stallEnabled) CTXDESC_CD_0_S.prep(target, 1);
  CTXDESC_CD_0_R.prep(target, 1);
  CTXDESC_CD_0_A.prep(target, 1);
  CTXDESC_CD_0_ASET.prep(target, 1);
  CTXDESC_CD_0_ASID.prep(target, ctx.asid);
  if (ctx.hd) {
    CTXDESC_CD_0_TCR_HA.prep(target, 1);
    CTXDESC_CD_0_TCR_HD.prep(target, 1);
  }
  CTXDESC_CD_1_TTB0_MASK.prep(target, ctx.s1.ttbr);
  const mair = ctx.s1.mair;
  CTXDESC_CD_3_MAIR_LO.prep(target, Number(mair & 0xffff_ffffn));
  CTXDESC_CD_3_MAIR_HI.prep(target, Number((mair >> 32n) & 0xffff_ffffn));
}

/**
 * The "quiet" form of a live stage 1 CD: still valid (no C_BAD_CD) with the same ASID and attributes,
 * but EPD0 set so nothing is walked (TTB0 and the walk fields become ignored), and without stall and
 * record unless the SMMU forces stalls, so DMA on the SubstreamID aborts at once. The switch is hitless:
 * only qword 0's used bits change. The SVA "mm is gone" state.
 * With mm == NULL
 */
// kernel: arm_smmu_make_sva_cd() [arm-smmu-v3-sva.c]
export function armSmmuMakeQuietCd(target: Uint32Array, from: Uint32Array, stallForce: boolean): void {
  target.set(from);
  for (const f of [CTXDESC_CD_0_TCR_T0SZ, CTXDESC_CD_0_TCR_TG0, CTXDESC_CD_0_TCR_IRGN0, CTXDESC_CD_0_TCR_ORGN0, CTXDESC_CD_0_TCR_SH0]) f.clear(target);
  CTXDESC_CD_0_TCR_EPD0.set(target, 1);
  target[2] = 0;
  target[3] = 0;
  if (!stallForce) {
    CTXDESC_CD_0_S.clear(target);
    CTXDESC_CD_0_R.clear(target);
  }
}

/**
 * Bits of a CD the hardware reads: all of it once V is set, except the TTB0 walk fields when EPD0
 * disables TTB0 walks.
 */
// kernel: arm_smmu_get_cd_used() [arm-smmu-v3.c]
export function armSmmuGetCdUsed(ent: Uint32Array, used: Uint32Array): void {
  used.fill(0);
  CTXDESC_CD_0_V.mark(used);
  if (!CTXDESC_CD_0_V.isSet(ent)) return;
  used.fill(0xffff_ffff);
  if (CTXDESC_CD_0_TCR_EPD0.isSet(ent)) {
    for (const f of [CTXDESC_CD_0_TCR_T0SZ, CTXDESC_CD_0_TCR_TG0, CTXDESC_CD_0_TCR_IRGN0, CTXDESC_CD_0_TCR_ORGN0, CTXDESC_CD_0_TCR_SH0]) {
      f.clear(used);
    }
    CTXDESC_CD_1_TTB0_MASK.clear(used);
  }
}

/** A level-1 CD descriptor for a leaf table at `l2ptrDma`, as 2 words. */
// kernel: arm_smmu_write_cd_l1_desc() [arm-smmu-v3.c]
export function armSmmuMakeCdL1Desc(l2ptrDma: number): Uint32Array {
  const w = new Uint32Array(2);
  CTXDESC_L1_DESC_L2PTR_MASK.prep(w, l2ptrDma);
  CTXDESC_L1_DESC_V.prep(w, 1);
  return w;
}
