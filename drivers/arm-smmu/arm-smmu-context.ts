/**
 * Context bank programming of the arm-smmu driver (kernel: arm_smmu_init_context_bank(),
 * arm_smmu_write_context_bank() and the TCR helpers of arm-smmu.c/arm-smmu.h).
 *
 * `armSmmuInitContextBank` turns a domain's page table configuration into the register values of
 * its bank (the `cbs[]` shadow); `armSmmuWriteContextBank` writes them in the order Linux does:
 * CBA2R, CBAR, TCR2, TCR (before the TTBRs: it decides how their ASID bits are read), TTBR0/1,
 * MAIR0/1, and SCTLR last. An unassigned bank is only disabled (SCTLR = 0).
 *
 * SCTLR carries Linux's defaults (CFIE, CFRE, AFE, TRE, M; ASIDPNE for stage 1) plus what this
 * driver decides per bank: CFCFG (stall) only while every master of the bank can stall and the
 * storm guard has not suspended it, HUPCF when asked for (or when the implementation forces it).
 */
import { FIELD_PREP } from '../../bus/bitfield.js';
import { KernelError } from '../../bus/errno.js';
import type { ArmLpaeS1Cfg, ArmLpaeS2Cfg, IoPgtable } from '../../core/io-pgtable.js';
import { IO_PGTABLE_QUIRK_ARM_TTBR1 } from '../../core/io-pgtable.js';
import type { ArmSmmuCfg, ArmSmmuDevice, ArmSmmuDomain } from './arm-smmu-device.js';
import { ARM_SMMU_FEAT_VMID16, ARM_SMMU_V1, ARM_SMMU_V2 } from './arm-smmu-device.js';
import {
  ARM_SMMU_CB_CONTEXTIDR,
  ARM_SMMU_CB_S1_MAIR0,
  ARM_SMMU_CB_S1_MAIR1,
  ARM_SMMU_CB_SCTLR,
  ARM_SMMU_CB_TCR,
  ARM_SMMU_CB_TCR2,
  ARM_SMMU_CB_TTBR0,
  ARM_SMMU_CB_TTBR1,
  ARM_SMMU_GR1_CBA2R,
  ARM_SMMU_GR1_CBAR,
  CBA2R_VA64,
  CBA2R_VMID16,
  CBAR_IRPTNDX,
  CBAR_S1_BPSHCFG,
  CBAR_S1_BPSHCFG_NSH,
  CBAR_S1_MEMATTR,
  CBAR_S1_MEMATTR_WB,
  CBAR_TYPE,
  CBAR_TYPE_S2_TRANS,
  CBAR_VMID,
  SCTLR_AFE,
  SCTLR_CFCFG,
  SCTLR_CFIE,
  SCTLR_CFRE,
  SCTLR_HUPCF,
  SCTLR_M,
  SCTLR_S1_ASIDPNE,
  SCTLR_TRE,
  TCR2_AS,
  TCR2_PASIZE,
  TCR2_SEP,
  TCR2_SEP_UPSTREAM,
  TCR_EAE,
  TCR_EPD0,
  TCR_EPD1,
  TCR_IRGN0,
  TCR_ORGN0,
  TCR_SH0,
  TCR_T0SZ,
  TCR_TG0,
  TTBRn_ASID_SHIFT,
  VTCR_IRGN0,
  VTCR_ORGN0,
  VTCR_PS,
  VTCR_RES1,
  VTCR_SH0,
  VTCR_SL0,
  VTCR_T0SZ,
  VTCR_TG0,
} from './arm-smmu-regs.js';

/** TTBR0 only: the unused TTBR1 walk is disabled (EPD1). */
// kernel: arm_smmu_lpae_tcr() [arm-smmu.h]
export function armSmmuLpaeTcr(s1: ArmLpaeS1Cfg, quirks: number): number {
  const t = s1.tcr;
  const tcr = FIELD_PREP(TCR_TG0, t.tg) | FIELD_PREP(TCR_SH0, t.sh) | FIELD_PREP(TCR_ORGN0, t.orgn) | FIELD_PREP(TCR_IRGN0, t.irgn) | FIELD_PREP(TCR_T0SZ, t.tsz);
  if (quirks & IO_PGTABLE_QUIRK_ARM_TTBR1) return ((tcr << 16) | TCR_EPD0) >>> 0;
  return (tcr | TCR_EPD1) >>> 0;
}

// kernel: arm_smmu_lpae_tcr2() [arm-smmu.h]
export function armSmmuLpaeTcr2(s1: ArmLpaeS1Cfg): number {
  return (FIELD_PREP(TCR2_PASIZE, s1.tcr.ips) | FIELD_PREP(TCR2_SEP, TCR2_SEP_UPSTREAM)) >>> 0;
}

// kernel: arm_smmu_lpae_vtcr() [arm-smmu.h]
export function armSmmuLpaeVtcr(s2: ArmLpaeS2Cfg): number {
  const v = s2.vtcr;
  return (
    (VTCR_RES1 |
      FIELD_PREP(VTCR_PS, v.ps) |
      FIELD_PREP(VTCR_TG0, v.tg) |
      FIELD_PREP(VTCR_SH0, v.sh) |
      FIELD_PREP(VTCR_ORGN0, v.orgn) |
      FIELD_PREP(VTCR_IRGN0, v.irgn) |
      FIELD_PREP(VTCR_SL0, v.sl) |
      FIELD_PREP(VTCR_T0SZ, v.tsz)) >>>
    0
  );
}

/** Fill the bank shadow of a domain from its page table. */
// kernel: arm_smmu_init_context_bank() [arm-smmu.c]
export function armSmmuInitContextBank(smmuDomain: ArmSmmuDomain, pgtbl: IoPgtable): void {
  const cfg = smmuDomain.cfg;
  const smmu = smmuDomain.requireSmmu('arm_smmu_init_context_bank');
  const cb = smmu.cbs[cfg.cbndx];
  const stage1 = cfg.cbar !== CBAR_TYPE_S2_TRANS;
  cb.cfg = cfg;
  cb.domain = smmuDomain;
  if (cfg.fmt === 'AARCH32_S' || cfg.fmt === 'NONE') {
    throw new KernelError('EINVAL', `arm-smmu: context format ${cfg.fmt} is not supported by this driver`);
  }
  if (stage1) {
    const s1 = pgtbl.armLpaeS1Cfg;
    if (!s1) throw new KernelError('EINVAL', `arm-smmu: stage 1 bank ${cfg.cbndx} got a ${pgtbl.fmt} page table`);
    cb.tcr[0] = armSmmuLpaeTcr(s1, pgtbl.cfg.quirks);
    cb.tcr[1] = armSmmuLpaeTcr2(s1);
    if (cfg.fmt === 'AARCH64') cb.tcr[1] = (cb.tcr[1] | TCR2_AS) >>> 0;
    else cb.tcr[0] = (cb.tcr[0] | TCR_EAE) >>> 0;
    const asid = BigInt(cfg.asid) << TTBRn_ASID_SHIFT;
    cb.ttbr[0] = asid;
    cb.ttbr[1] = asid;
    if (pgtbl.cfg.quirks & IO_PGTABLE_QUIRK_ARM_TTBR1) cb.ttbr[1] |= BigInt(s1.ttbr);
    else cb.ttbr[0] |= BigInt(s1.ttbr);
    cb.mair[0] = Number(s1.mair & 0xffff_ffffn);
    cb.mair[1] = Number((s1.mair >> 32n) & 0xffff_ffffn);
  } else {
    const s2 = pgtbl.armLpaeS2Cfg;
    if (!s2) throw new KernelError('EINVAL', `arm-smmu: stage 2 bank ${cfg.cbndx} got a ${pgtbl.fmt} page table`);
    cb.tcr[0] = armSmmuLpaeVtcr(s2);
    cb.tcr[1] = 0;
    cb.ttbr[0] = BigInt(s2.vttbr);
    cb.ttbr[1] = 0n;
  }
}

/** SCTLR for a bank configured with `cfg` (before any implementation hook adds its bits). */
export function armSmmuSctlrValue(cfg: ArmSmmuCfg): number {
  let reg = SCTLR_CFIE | SCTLR_CFRE | SCTLR_AFE | SCTLR_TRE | SCTLR_M;
  if (cfg.cbar !== CBAR_TYPE_S2_TRANS) reg |= SCTLR_S1_ASIDPNE;
  if (cfg.stall && !cfg.stallSuspended) reg |= SCTLR_CFCFG;
  if (cfg.hupcf) reg |= SCTLR_HUPCF;
  return reg >>> 0;
}

/** (Re)write a bank's SCTLR from its configuration, through the implementation's hook if any. */
export function armSmmuWriteSctlr(smmu: ArmSmmuDevice, idx: number): void {
  const cfg = smmu.cbs[idx]?.cfg ?? null;
  if (!cfg) {
    smmu.cbWrite(idx, ARM_SMMU_CB_SCTLR, 0);
    return;
  }
  const reg = armSmmuSctlrValue(cfg);
  if (smmu.impl?.writeSctlr) smmu.impl.writeSctlr(smmu, idx, reg);
  else smmu.cbWrite(idx, ARM_SMMU_CB_SCTLR, reg);
}

/** Program bank `idx` from its shadow. */
// kernel: arm_smmu_write_context_bank() [arm-smmu.c]
export function armSmmuWriteContextBank(smmu: ArmSmmuDevice, idx: number): void {
  const cb = smmu.cbs[idx];
  const cfg = cb.cfg;
  // Unassigned banks only need disabling.
  if (!cfg) {
    smmu.cbWrite(idx, ARM_SMMU_CB_SCTLR, 0);
    return;
  }
  const stage1 = cfg.cbar !== CBAR_TYPE_S2_TRANS;
  const vmid16 = (smmu.features & ARM_SMMU_FEAT_VMID16) !== 0;
  if (smmu.version > ARM_SMMU_V1) {
    let reg = cfg.fmt === 'AARCH64' ? CBA2R_VA64 : 0;
    // 16-bit VMIDs live in CBA2R.
    if (vmid16) reg |= FIELD_PREP(CBA2R_VMID16, cfg.vmid);
    smmu.gr1Write(ARM_SMMU_GR1_CBA2R(idx), reg >>> 0);
  }
  let cbar = FIELD_PREP(CBAR_TYPE, cfg.cbar);
  if (smmu.version < ARM_SMMU_V2) cbar |= FIELD_PREP(CBAR_IRPTNDX, cfg.irptndx);
  if (stage1) {
    // The weakest attributes, so the table's own attributes win.
    cbar |= FIELD_PREP(CBAR_S1_BPSHCFG, CBAR_S1_BPSHCFG_NSH) | FIELD_PREP(CBAR_S1_MEMATTR, CBAR_S1_MEMATTR_WB);
  } else if (!vmid16) {
    // 8-bit VMIDs live in CBAR.
    cbar |= FIELD_PREP(CBAR_VMID, cfg.vmid);
  }
  smmu.gr1Write(ARM_SMMU_GR1_CBAR(idx), cbar >>> 0);
  // TCR before the TTBRs: it decides how ASID[15:8] is read.
  if (stage1 && smmu.version > ARM_SMMU_V1) smmu.cbWrite(idx, ARM_SMMU_CB_TCR2, cb.tcr[1]);
  smmu.cbWrite(idx, ARM_SMMU_CB_TCR, cb.tcr[0]);
  if (cfg.fmt === 'AARCH32_S') {
    smmu.cbWrite(idx, ARM_SMMU_CB_CONTEXTIDR, cfg.asid);
    smmu.cbWrite(idx, ARM_SMMU_CB_TTBR0, Number(cb.ttbr[0] & 0xffff_ffffn));
    smmu.cbWrite(idx, ARM_SMMU_CB_TTBR1, Number(cb.ttbr[1] & 0xffff_ffffn));
  } else {
    smmu.cbWriteq(idx, ARM_SMMU_CB_TTBR0, cb.ttbr[0]);
    if (stage1) smmu.cbWriteq(idx, ARM_SMMU_CB_TTBR1, cb.ttbr[1]);
  }
  if (stage1) {
    smmu.cbWrite(idx, ARM_SMMU_CB_S1_MAIR0, cb.mair[0]);
    smmu.cbWrite(idx, ARM_SMMU_CB_S1_MAIR1, cb.mair[1]);
  }
  armSmmuWriteSctlr(smmu, idx);
}
