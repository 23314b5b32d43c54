/**
 * The arm-smmu driver's own register definitions (kernel: drivers/iommu/arm/arm-smmu/arm-smmu.h).
 *
 * Deliberately independent of the hardware model: the driver carries its header as Linux does, so a
 * wrong offset or field on either side shows up as wrong hardware behaviour instead of hiding in a
 * shared definition. Each register offset is followed by its fields, in the order the header has
 * them. Field helpers reject a value too wide for the field (FIELD_PREP would truncate it).
 */
import { KernelError } from '../../bus/errno.js';

/** A register field of bits [hi:lo] of a 32-bit register (kernel: GENMASK + FIELD_PREP/FIELD_GET). */
export class RegField {
  readonly mask: number;
  readonly max: number;

  constructor(
    readonly name: string,
    readonly hi: number,
    readonly lo: number,
  ) {
    if (!(hi >= lo && lo >= 0 && hi <= 31)) throw new RangeError(`register field ${name}: bad bit range [${hi}:${lo}]`);
    this.max = hi - lo === 31 ? 0xffff_ffff : (1 << (hi - lo + 1)) - 1;
    this.mask = (this.max * 2 ** lo) >>> 0;
  }

  /** EINVAL naming the field when `v` does not fit. */
  // kernel: FIELD_PREP() [bitfield.h]
  prep(v: number): number {
    if (!Number.isInteger(v) || v < 0 || v > this.max) {
      throw new KernelError('EINVAL', `value ${v} (0x${Math.max(0, Math.trunc(v)).toString(16)}) does not fit ${this.name} [${this.hi}:${this.lo}]`);
    }
    return (v * 2 ** this.lo) >>> 0;
  }

  // kernel: FIELD_GET() [bitfield.h]
  get(reg: number): number {
    return ((reg & this.mask) >>> 0) / 2 ** this.lo;
  }

  isSet(reg: number): boolean {
    return (reg & this.mask) !== 0;
  }
}

const bit = (name: string, n: number): RegField => new RegField(name, n, n);
const field = (name: string, hi: number, lo: number): RegField => new RegField(name, hi, lo);

// ---- Register pages ---------------------------------------------------------------------------

/** The kernel's ARM_SMMU_GR0 — the global register page 0. */
export const ARM_SMMU_GR0 = 0;
/** The kernel's ARM_SMMU_GR1 — the global register page 1 (per-bank CBAR/CBFRSYNRA/CBA2R). */
export const ARM_SMMU_GR1 = 1;

// ---- GR0 -------------------------------------------------------------------------------------

export const ARM_SMMU_GR0_sCR0 = 0x0;
export const sCR0_VMID16EN = bit('sCR0.VMID16EN', 31);
export const sCR0_BSU = field('sCR0.BSU', 15, 14);
export const sCR0_FB = bit('sCR0.FB', 13);
export const sCR0_PTM = bit('sCR0.PTM', 12);
export const sCR0_VMIDPNE = bit('sCR0.VMIDPNE', 11);
export const sCR0_USFCFG = bit('sCR0.USFCFG', 10);
export const sCR0_GCFGFIE = bit('sCR0.GCFGFIE', 5);
export const sCR0_GCFGFRE = bit('sCR0.GCFGFRE', 4);
export const sCR0_EXIDENABLE = bit('sCR0.EXIDENABLE', 3);
export const sCR0_GFIE = bit('sCR0.GFIE', 2);
export const sCR0_GFRE = bit('sCR0.GFRE', 1);
export const sCR0_CLIENTPD = bit('sCR0.CLIENTPD', 0);

/** Auxiliary configuration (implementation defined; MMU-500's bits are in arm-smmu-impl.ts). */
export const ARM_SMMU_GR0_sACR = 0x10;

export const ARM_SMMU_GR0_ID0 = 0x20;
export const ID0_S1TS = bit('ID0.S1TS', 30);
export const ID0_S2TS = bit('ID0.S2TS', 29);
export const ID0_NTS = bit('ID0.NTS', 28);
export const ID0_SMS = bit('ID0.SMS', 27);
export const ID0_ATOSNS = bit('ID0.ATOSNS', 26);
export const ID0_PTFS_NO_AARCH32 = bit('ID0.PTFS_NO_AARCH32', 25);
export const ID0_PTFS_NO_AARCH32S = bit('ID0.PTFS_NO_AARCH32S', 24);
export const ID0_NUMIRPT = field('ID0.NUMIRPT', 23, 16);
export const ID0_CTTW = bit('ID0.CTTW', 14);
export const ID0_NUMSIDB = field('ID0.NUMSIDB', 12, 9);
export const ID0_EXIDS = bit('ID0.EXIDS', 8);
export const ID0_NUMSMRG = field('ID0.NUMSMRG', 7, 0);

export const ARM_SMMU_GR0_ID1 = 0x24;
export const ID1_PAGESIZE = bit('ID1.PAGESIZE', 31);
export const ID1_NUMPAGENDXB = field('ID1.NUMPAGENDXB', 30, 28);
export const ID1_NUMS2CB = field('ID1.NUMS2CB', 23, 16);
export const ID1_NUMCB = field('ID1.NUMCB', 7, 0);

export const ARM_SMMU_GR0_ID2 = 0x28;
export const ID2_VMID16 = bit('ID2.VMID16', 15);
export const ID2_PTFS_64K = bit('ID2.PTFS_64K', 14);
export const ID2_PTFS_16K = bit('ID2.PTFS_16K', 13);
export const ID2_PTFS_4K = bit('ID2.PTFS_4K', 12);
export const ID2_UBS = field('ID2.UBS', 11, 8);
export const ID2_OAS = field('ID2.OAS', 7, 4);
export const ID2_IAS = field('ID2.IAS', 3, 0);

export const ARM_SMMU_GR0_ID3 = 0x2c;
export const ARM_SMMU_GR0_ID4 = 0x30;
export const ARM_SMMU_GR0_ID5 = 0x34;
export const ARM_SMMU_GR0_ID6 = 0x38;

export const ARM_SMMU_GR0_ID7 = 0x3c;
export const ID7_MAJOR = field('ID7.MAJOR', 7, 4);
export const ID7_MINOR = field('ID7.MINOR', 3, 0);

export const ARM_SMMU_GR0_sGFSR = 0x48;
export const sGFSR_USF = bit('sGFSR.USF', 1);

export const ARM_SMMU_GR0_sGFSYNR0 = 0x50;
export const ARM_SMMU_GR0_sGFSYNR1 = 0x54;
export const ARM_SMMU_GR0_sGFSYNR2 = 0x58;
/** The StreamID of a global fault lives in sGFSYNR1[15:0]. */
export const sGFSYNR1_STREAMID = field('sGFSYNR1.StreamID', 15, 0);

// Global TLB invalidation.
export const ARM_SMMU_GR0_TLBIVMID = 0x64;
export const ARM_SMMU_GR0_TLBIALLNSNH = 0x68;
export const ARM_SMMU_GR0_TLBIALLH = 0x6c;
export const ARM_SMMU_GR0_sTLBGSYNC = 0x70;

export const ARM_SMMU_GR0_sTLBGSTATUS = 0x74;
export const sTLBGSTATUS_GSACTIVE = bit('sTLBGSTATUS.GSACTIVE', 0);

// Stream mapping registers.
/** The kernel's ARM_SMMU_GR0_SMR(n) */
export function ARM_SMMU_GR0_SMR(n: number): number {
  return 0x800 + (n << 2);
}
export const SMR_VALID = bit('SMR.VALID', 31);
export const SMR_MASK = field('SMR.MASK', 31, 16);
export const SMR_ID = field('SMR.ID', 15, 0);

/** The kernel's ARM_SMMU_GR0_S2CR(n) */
export function ARM_SMMU_GR0_S2CR(n: number): number {
  return 0xc00 + (n << 2);
}
export const S2CR_PRIVCFG = field('S2CR.PRIVCFG', 25, 24);
export const S2CR_TYPE = field('S2CR.TYPE', 17, 16);
export const S2CR_EXIDVALID = bit('S2CR.EXIDVALID', 10);
export const S2CR_CBNDX = field('S2CR.CBNDX', 7, 0);

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
export const CBAR_IRPTNDX = field('CBAR.IRPTNDX', 31, 24);
export const CBAR_TYPE = field('CBAR.TYPE', 17, 16);
export const CBAR_S1_MEMATTR = field('CBAR.S1_MEMATTR', 15, 12);
export const CBAR_S1_BPSHCFG = field('CBAR.S1_BPSHCFG', 9, 8);
export const CBAR_VMID = field('CBAR.VMID', 7, 0);

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
export const CBFRSYNRA_SID = field('CBFRSYNRA.SID', 15, 0);

/** The kernel's ARM_SMMU_GR1_CBA2R(n) */
export function ARM_SMMU_GR1_CBA2R(n: number): number {
  return 0x800 + (n << 2);
}
export const CBA2R_VMID16 = field('CBA2R.VMID16', 31, 16);
export const CBA2R_VA64 = bit('CBA2R.VA64', 0);

// ---- Translation context bank ---------------------------------------------------------------------

export const ARM_SMMU_CB_SCTLR = 0x0;
export const SCTLR_S1_ASIDPNE = bit('SCTLR.ASIDPNE', 12);
export const SCTLR_HUPCF = bit('SCTLR.HUPCF', 8);
export const SCTLR_CFCFG = bit('SCTLR.CFCFG', 7);
export const SCTLR_CFIE = bit('SCTLR.CFIE', 6);
export const SCTLR_CFRE = bit('SCTLR.CFRE', 5);
export const SCTLR_E = bit('SCTLR.E', 4);
export const SCTLR_AFE = bit('SCTLR.AFE', 2);
export const SCTLR_TRE = bit('SCTLR.TRE', 1);
export const SCTLR_M = bit('SCTLR.M', 0);

export const ARM_SMMU_CB_ACTLR = 0x4;

export const ARM_SMMU_CB_RESUME = 0x8;
export const RESUME_TERMINATE = bit('RESUME.TnR', 0);

export const ARM_SMMU_CB_TCR2 = 0x10;
export const TCR2_SEP = field('TCR2.SEP', 17, 15);
export const TCR2_SEP_UPSTREAM = 0x7;
export const TCR2_AS = bit('TCR2.AS', 4);
export const TCR2_PASIZE = field('TCR2.PASIZE', 3, 0);

/** 64-bit; the ASID of an LPAE/AArch64 stage 1 context is TTBRn[63:48]. */
export const ARM_SMMU_CB_TTBR0 = 0x20;
export const ARM_SMMU_CB_TTBR1 = 0x28;
export const TTBRn_ASID_SHIFT = 48n;

export const ARM_SMMU_CB_TCR = 0x30;
export const TCR_EAE = bit('TCR.EAE', 31);
export const TCR_EPD1 = bit('TCR.EPD1', 23);
export const TCR_A1 = bit('TCR.A1', 22);
export const TCR_TG0 = field('TCR.TG0', 15, 14);
export const TCR_SH0 = field('TCR.SH0', 13, 12);
export const TCR_ORGN0 = field('TCR.ORGN0', 11, 10);
export const TCR_IRGN0 = field('TCR.IRGN0', 9, 8);
export const TCR_EPD0 = bit('TCR.EPD0', 7);
export const TCR_T0SZ = field('TCR.T0SZ', 5, 0);

// The same register as the stage 2 VTCR.
export const VTCR_RES1 = bit('VTCR.RES1', 31);
export const VTCR_PS = field('VTCR.PS', 18, 16);
export const VTCR_TG0 = TCR_TG0;
export const VTCR_SH0 = TCR_SH0;
export const VTCR_ORGN0 = TCR_ORGN0;
export const VTCR_IRGN0 = TCR_IRGN0;
export const VTCR_SL0 = field('VTCR.SL0', 7, 6);
export const VTCR_T0SZ = TCR_T0SZ;

export const ARM_SMMU_CB_CONTEXTIDR = 0x34;
export const ARM_SMMU_CB_S1_MAIR0 = 0x38;
export const ARM_SMMU_CB_S1_MAIR1 = 0x3c;

/** 64-bit. */
export const ARM_SMMU_CB_PAR = 0x50;
export const CB_PAR_F = 1n;

export const ARM_SMMU_CB_FSR = 0x58;
export const CB_FSR_MULTI = bit('FSR.MULTI', 31);
export const CB_FSR_SS = bit('FSR.SS', 30);
export const CB_FSR_FORMAT = field('FSR.FORMAT', 10, 9);
export const CB_FSR_UUT = bit('FSR.UUT', 8);
export const CB_FSR_ASF = bit('FSR.ASF', 7);
export const CB_FSR_TLBLKF = bit('FSR.TLBLKF', 6);
export const CB_FSR_TLBMCF = bit('FSR.TLBMCF', 5);
export const CB_FSR_EF = bit('FSR.EF', 4);
export const CB_FSR_PF = bit('FSR.PF', 3);
export const CB_FSR_AFF = bit('FSR.AFF', 2);
export const CB_FSR_TF = bit('FSR.TF', 1);
/** The kernel's ARM_SMMU_CB_FSR_IGN — faults Linux reports as unexpected. */
export const CB_FSR_IGN = (CB_FSR_AFF.mask | CB_FSR_ASF.mask | CB_FSR_TLBMCF.mask | CB_FSR_TLBLKF.mask) >>> 0;
/** The kernel's ARM_SMMU_CB_FSR_FAULT — any of these means the bank has something to report. */
export const CB_FSR_FAULT =
  (CB_FSR_MULTI.mask | CB_FSR_SS.mask | CB_FSR_UUT.mask | CB_FSR_EF.mask | CB_FSR_PF.mask | CB_FSR_TF.mask | CB_FSR_IGN) >>> 0;

/** 64-bit. */
export const ARM_SMMU_CB_FAR = 0x60;

export const ARM_SMMU_CB_FSYNR0 = 0x68;
export const FSYNR0_S1CBNDX = field('FSYNR0.S1CBNDX', 23, 16);
export const FSYNR0_AFR = bit('FSYNR0.AFR', 11);
export const FSYNR0_PTWF = bit('FSYNR0.PTWF', 10);
export const FSYNR0_NSATTR = bit('FSYNR0.NSATTR', 8);
export const FSYNR0_IND = bit('FSYNR0.IND', 6);
export const FSYNR0_PNU = bit('FSYNR0.PNU', 5);
export const FSYNR0_WNR = bit('FSYNR0.WNR', 4);
export const FSYNR0_PLVL = field('FSYNR0.PLVL', 1, 0);

export const ARM_SMMU_CB_FSYNR1 = 0x6c;

// Context bank TLB maintenance (64-bit where the operand carries an address).
export const ARM_SMMU_CB_S1_TLBIVA = 0x600;
export const ARM_SMMU_CB_S1_TLBIASID = 0x610;
export const ARM_SMMU_CB_S1_TLBIVAL = 0x620;
export const ARM_SMMU_CB_S2_TLBIIPAS2 = 0x630;
export const ARM_SMMU_CB_S2_TLBIIPAS2L = 0x638;
export const ARM_SMMU_CB_TLBSYNC = 0x7f0;
export const ARM_SMMU_CB_TLBSTATUS = 0x7f4;
export const TLBSTATUS_SACTIVE = bit('TLBSTATUS.SACTIVE', 0);

// Address translation operations.
export const ARM_SMMU_CB_ATS1PR = 0x800;
export const ARM_SMMU_CB_ATSR = 0x8f0;
export const ATSR_ACTIVE = bit('ATSR.ACTIVE', 0);

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
