/**
 * The arm-smmu driver's own register definitions (kernel: drivers/iommu/arm/arm-smmu/arm-smmu.h).
 *
 * Deliberately independent of the hardware model: the driver carries its header as Linux does, so a
 * wrong offset or field on either side shows up as wrong hardware behaviour instead of hiding in a
 * shared definition. Each register offset is followed by its fields, in the order the header has
 * them, as masks (`BIT`, `GENMASK`) used with `FIELD_PREP`/`FIELD_GET` from the kernel side's one
 * bit-field library (bus/bitfield.ts), as the kernel's arm-smmu.h and bitfield.h are used.
 */
import { BIT, GENMASK } from '../../bus/bitfield.js';

// ---- Register pages ---------------------------------------------------------------------------

/** The kernel's ARM_SMMU_GR0 — the global register page 0. */
export const ARM_SMMU_GR0 = 0;
/** The kernel's ARM_SMMU_GR1 — the global register page 1 (per-bank CBAR/CBFRSYNRA/CBA2R). */
export const ARM_SMMU_GR1 = 1;

// ---- GR0 -------------------------------------------------------------------------------------

export const ARM_SMMU_GR0_sCR0 = 0x0;
export const sCR0_VMID16EN = BIT(31);
export const sCR0_BSU = GENMASK(15, 14);
export const sCR0_FB = BIT(13);
export const sCR0_PTM = BIT(12);
export const sCR0_VMIDPNE = BIT(11);
export const sCR0_USFCFG = BIT(10);
export const sCR0_GCFGFIE = BIT(5);
export const sCR0_GCFGFRE = BIT(4);
export const sCR0_EXIDENABLE = BIT(3);
export const sCR0_GFIE = BIT(2);
export const sCR0_GFRE = BIT(1);
export const sCR0_CLIENTPD = BIT(0);

/** Auxiliary configuration (implementation defined; MMU-500's bits are in arm-smmu-impl.ts). */
export const ARM_SMMU_GR0_sACR = 0x10;

export const ARM_SMMU_GR0_ID0 = 0x20;
export const ID0_S1TS = BIT(30);
export const ID0_S2TS = BIT(29);
export const ID0_NTS = BIT(28);
export const ID0_SMS = BIT(27);
export const ID0_ATOSNS = BIT(26);
export const ID0_PTFS_NO_AARCH32 = BIT(25);
export const ID0_PTFS_NO_AARCH32S = BIT(24);
export const ID0_NUMIRPT = GENMASK(23, 16);
export const ID0_CTTW = BIT(14);
export const ID0_NUMSIDB = GENMASK(12, 9);
export const ID0_EXIDS = BIT(8);
export const ID0_NUMSMRG = GENMASK(7, 0);

export const ARM_SMMU_GR0_ID1 = 0x24;
export const ID1_PAGESIZE = BIT(31);
export const ID1_NUMPAGENDXB = GENMASK(30, 28);
export const ID1_NUMS2CB = GENMASK(23, 16);
export const ID1_NUMCB = GENMASK(7, 0);

export const ARM_SMMU_GR0_ID2 = 0x28;
export const ID2_VMID16 = BIT(15);
export const ID2_PTFS_64K = BIT(14);
export const ID2_PTFS_16K = BIT(13);
export const ID2_PTFS_4K = BIT(12);
export const ID2_UBS = GENMASK(11, 8);
export const ID2_OAS = GENMASK(7, 4);
export const ID2_IAS = GENMASK(3, 0);

export const ARM_SMMU_GR0_ID3 = 0x2c;
export const ARM_SMMU_GR0_ID4 = 0x30;
export const ARM_SMMU_GR0_ID5 = 0x34;
export const ARM_SMMU_GR0_ID6 = 0x38;

export const ARM_SMMU_GR0_ID7 = 0x3c;
export const ID7_MAJOR = GENMASK(7, 4);
export const ID7_MINOR = GENMASK(3, 0);

export const ARM_SMMU_GR0_sGFSR = 0x48;
export const sGFSR_USF = BIT(1);

export const ARM_SMMU_GR0_sGFSYNR0 = 0x50;
export const ARM_SMMU_GR0_sGFSYNR1 = 0x54;
export const ARM_SMMU_GR0_sGFSYNR2 = 0x58;
/** The StreamID of a global fault lives in sGFSYNR1[15:0]. */
export const sGFSYNR1_STREAMID = GENMASK(15, 0);

// Global TLB invalidation.
export const ARM_SMMU_GR0_TLBIVMID = 0x64;
export const ARM_SMMU_GR0_TLBIALLNSNH = 0x68;
export const ARM_SMMU_GR0_TLBIALLH = 0x6c;
export const ARM_SMMU_GR0_sTLBGSYNC = 0x70;

export const ARM_SMMU_GR0_sTLBGSTATUS = 0x74;
export const sTLBGSTATUS_GSACTIVE = BIT(0);

// Stream mapping registers.
/** The kernel's ARM_SMMU_GR0_SMR(n) */
export function ARM_SMMU_GR0_SMR(n: number): number {
  return 0x800 + (n << 2);
}
export const SMR_VALID = BIT(31);
export const SMR_MASK = GENMASK(31, 16);
export const SMR_ID = GENMASK(15, 0);

/** The kernel's ARM_SMMU_GR0_S2CR(n) */
export function ARM_SMMU_GR0_S2CR(n: number): number {
  return 0xc00 + (n << 2);
}
export const S2CR_PRIVCFG = GENMASK(25, 24);
export const S2CR_TYPE = GENMASK(17, 16);
export const S2CR_EXIDVALID = BIT(10);
export const S2CR_CBNDX = GENMASK(7, 0);

/** The kernel's enum arm_smmu_s2cr_type */
export const S2CR_TYPE_TRANS = 0;
export const S2CR_TYPE_BYPASS = 1;
export const S2CR_TYPE_FAULT = 2;
export type S2crType = typeof S2CR_TYPE_TRANS | typeof S2CR_TYPE_BYPASS | typeof S2CR_TYPE_FAULT;

/** The kernel's enum arm_smmu_s2cr_privcfg */
export const S2CR_PRIVCFG_DEFAULT = 0;
export const S2CR_PRIVCFG_DIPAN = 1;
export const S2CR_PRIVCFG_UNPRIV = 2;
export const S2CR_PRIVCFG_PRIV = 3;

// ---- GR1: per context bank attributes ------------------------------------------------------------

/** The kernel's ARM_SMMU_GR1_CBAR(n) */
export function ARM_SMMU_GR1_CBAR(n: number): number {
  return n << 2;
}
export const CBAR_IRPTNDX = GENMASK(31, 24);
export const CBAR_TYPE = GENMASK(17, 16);
export const CBAR_S1_MEMATTR = GENMASK(15, 12);
export const CBAR_S1_BPSHCFG = GENMASK(9, 8);
export const CBAR_VMID = GENMASK(7, 0);

/** The kernel's enum arm_smmu_cbar_type */
export const CBAR_TYPE_S2_TRANS = 0;
export const CBAR_TYPE_S1_TRANS_S2_BYPASS = 1;
export const CBAR_TYPE_S1_TRANS_S2_FAULT = 2;
export const CBAR_TYPE_S1_TRANS_S2_TRANS = 3;
export type CbarType = 0 | 1 | 2 | 3;

export const CBAR_S1_BPSHCFG_NSH = 3;
export const CBAR_S1_MEMATTR_WB = 0xf;

/** The kernel's ARM_SMMU_GR1_CBFRSYNRA(n) */
export function ARM_SMMU_GR1_CBFRSYNRA(n: number): number {
  return 0x400 + (n << 2);
}
export const CBFRSYNRA_SID = GENMASK(15, 0);

/** The kernel's ARM_SMMU_GR1_CBA2R(n) */
export function ARM_SMMU_GR1_CBA2R(n: number): number {
  return 0x800 + (n << 2);
}
export const CBA2R_VMID16 = GENMASK(31, 16);
export const CBA2R_VA64 = BIT(0);

// ---- Translation context bank ---------------------------------------------------------------------

export const ARM_SMMU_CB_SCTLR = 0x0;
export const SCTLR_S1_ASIDPNE = BIT(12);
export const SCTLR_HUPCF = BIT(8);
export const SCTLR_CFCFG = BIT(7);
export const SCTLR_CFIE = BIT(6);
export const SCTLR_CFRE = BIT(5);
export const SCTLR_E = BIT(4);
export const SCTLR_AFE = BIT(2);
export const SCTLR_TRE = BIT(1);
export const SCTLR_M = BIT(0);

export const ARM_SMMU_CB_ACTLR = 0x4;

export const ARM_SMMU_CB_RESUME = 0x8;
export const RESUME_TERMINATE = BIT(0);

export const ARM_SMMU_CB_TCR2 = 0x10;
export const TCR2_SEP = GENMASK(17, 15);
export const TCR2_SEP_UPSTREAM = 0x7;
export const TCR2_AS = BIT(4);
export const TCR2_PASIZE = GENMASK(3, 0);

/** 64-bit; the ASID of an LPAE/AArch64 stage 1 context is TTBRn[63:48]. */
export const ARM_SMMU_CB_TTBR0 = 0x20;
export const ARM_SMMU_CB_TTBR1 = 0x28;
export const TTBRn_ASID_SHIFT = 48n;

export const ARM_SMMU_CB_TCR = 0x30;
export const TCR_EAE = BIT(31);
export const TCR_EPD1 = BIT(23);
export const TCR_A1 = BIT(22);
export const TCR_TG0 = GENMASK(15, 14);
export const TCR_SH0 = GENMASK(13, 12);
export const TCR_ORGN0 = GENMASK(11, 10);
export const TCR_IRGN0 = GENMASK(9, 8);
export const TCR_EPD0 = BIT(7);
export const TCR_T0SZ = GENMASK(5, 0);

// The same register as the stage 2 VTCR.
export const VTCR_RES1 = BIT(31);
export const VTCR_PS = GENMASK(18, 16);
export const VTCR_TG0 = TCR_TG0;
export const VTCR_SH0 = TCR_SH0;
export const VTCR_ORGN0 = TCR_ORGN0;
export const VTCR_IRGN0 = TCR_IRGN0;
export const VTCR_SL0 = GENMASK(7, 6);
export const VTCR_T0SZ = TCR_T0SZ;

export const ARM_SMMU_CB_CONTEXTIDR = 0x34;
export const ARM_SMMU_CB_S1_MAIR0 = 0x38;
export const ARM_SMMU_CB_S1_MAIR1 = 0x3c;

/** 64-bit. */
export const ARM_SMMU_CB_PAR = 0x50;
export const CB_PAR_F = 1n;

export const ARM_SMMU_CB_FSR = 0x58;
export const CB_FSR_MULTI = BIT(31);
export const CB_FSR_SS = BIT(30);
export const CB_FSR_FORMAT = GENMASK(10, 9);
export const CB_FSR_UUT = BIT(8);
export const CB_FSR_ASF = BIT(7);
export const CB_FSR_TLBLKF = BIT(6);
export const CB_FSR_TLBMCF = BIT(5);
export const CB_FSR_EF = BIT(4);
export const CB_FSR_PF = BIT(3);
export const CB_FSR_AFF = BIT(2);
export const CB_FSR_TF = BIT(1);
/** The kernel's ARM_SMMU_CB_FSR_IGN — faults Linux reports as unexpected. */
export const CB_FSR_IGN = (CB_FSR_AFF | CB_FSR_ASF | CB_FSR_TLBMCF | CB_FSR_TLBLKF) >>> 0;
/** The kernel's ARM_SMMU_CB_FSR_FAULT — any of these means the bank has something to report. */
export const CB_FSR_FAULT =
  (CB_FSR_MULTI | CB_FSR_SS | CB_FSR_UUT | CB_FSR_EF | CB_FSR_PF | CB_FSR_TF | CB_FSR_IGN) >>> 0;

/** 64-bit. */
export const ARM_SMMU_CB_FAR = 0x60;

export const ARM_SMMU_CB_FSYNR0 = 0x68;
export const FSYNR0_S1CBNDX = GENMASK(23, 16);
export const FSYNR0_AFR = BIT(11);
export const FSYNR0_PTWF = BIT(10);
export const FSYNR0_NSATTR = BIT(8);
export const FSYNR0_IND = BIT(6);
export const FSYNR0_PNU = BIT(5);
export const FSYNR0_WNR = BIT(4);
export const FSYNR0_PLVL = GENMASK(1, 0);

export const ARM_SMMU_CB_FSYNR1 = 0x6c;

// Context bank TLB maintenance (64-bit where the operand carries an address).
export const ARM_SMMU_CB_S1_TLBIVA = 0x600;
export const ARM_SMMU_CB_S1_TLBIASID = 0x610;
export const ARM_SMMU_CB_S1_TLBIVAL = 0x620;
export const ARM_SMMU_CB_S2_TLBIIPAS2 = 0x630;
export const ARM_SMMU_CB_S2_TLBIIPAS2L = 0x638;
export const ARM_SMMU_CB_TLBSYNC = 0x7f0;
export const ARM_SMMU_CB_TLBSTATUS = 0x7f4;
export const TLBSTATUS_SACTIVE = BIT(0);

// Address translation operations.
export const ARM_SMMU_CB_ATS1PR = 0x800;
export const ARM_SMMU_CB_ATSR = 0x8f0;
export const ATSR_ACTIVE = BIT(0);

// ---- Values and encodings the driver uses -----------------------------------------------------------

/** The kernel's QCOM_DUMMY_VAL — what Linux writes to write-only trigger registers. */
export const QCOM_DUMMY_VAL = 0xffff_ffff;

/** ID2.IAS/OAS/UBS encodings; 5 and above read as 48 bits. */
// kernel: arm_smmu_id_size_to_bits() [arm-smmu.c]
export function armSmmuIdSizeToBits(size: number): number {
  switch (size) {
    case 0:
      return 32;
    case 1:
      return 36;
    case 2:
      return 40;
    case 3:
      return 42;
    case 4:
      return 44;
    default:
      return 48;
  }
}
