/**
 * SMMUv1/v2 register map, as the Arm SMMU architecture specification (v1/v2) names it.
 *
 * Supports: the non-secure view of GR0 (sCR0, sACR, ID0-ID7, sGFAR/sGFSR/sGFSYNR0-2, the global TLB
 * maintenance registers, SMR/S2CR), GR1 (CBAR, CBFRSYNRA, CBA2R) and the translation context bank
 * page (SCTLR … ATSR). Each register's offset is followed by its fields, in spec order.
 * Does not declare: secure-only registers (sCR1, sCR2, STLBIALL, the NS alias block at 0x400 used by
 * the Calxeda quirk), the GATS global address translation block, the PMU and SSD pages.
 *
 * Fields are the model side's one bit-field library (hw/bitfield.ts), declared [hi:lo] as the
 * specification writes them; encoding a value too wide for its field is a model bug and throws
 * RangeError instead of corrupting a neighbouring field. 64-bit registers are two 32-bit halves (the
 * high half at offset + 4).
 */
import { field } from '../bitfield.js';

/** Short for the tables below: `f(name, hi, lo = hi)`. */
const f = field;

// ---------------------------------------------------------------------------------------------
// Global register space 0 (page 0)
// ---------------------------------------------------------------------------------------------

export const SCR0 = 0x000;
export const sCR0 = {
  CLIENTPD: f('sCR0.CLIENTPD', 0),
  GFRE: f('sCR0.GFRE', 1),
  GFIE: f('sCR0.GFIE', 2),
  EXIDENABLE: f('sCR0.EXIDENABLE', 3),
  GCFGFRE: f('sCR0.GCFGFRE', 4),
  GCFGFIE: f('sCR0.GCFGFIE', 5),
  TRANSIENTCFG: f('sCR0.TRANSIENTCFG', 7, 6),
  STALLD: f('sCR0.STALLD', 8),
  GSE: f('sCR0.GSE', 9),
  USFCFG: f('sCR0.USFCFG', 10),
  VMIDPNE: f('sCR0.VMIDPNE', 11),
  PTM: f('sCR0.PTM', 12),
  FB: f('sCR0.FB', 13),
  BSU: f('sCR0.BSU', 15, 14),
  MemAttr: f('sCR0.MemAttr', 19, 16),
  MTCFG: f('sCR0.MTCFG', 20),
  SMCFCFG: f('sCR0.SMCFCFG', 21),
  SHCFG: f('sCR0.SHCFG', 23, 22),
  RACFG: f('sCR0.RACFG', 25, 24),
  WACFG: f('sCR0.WACFG', 27, 26),
  NSCFG: f('sCR0.NSCFG', 29, 28),
  VMID16EN: f('sCR0.VMID16EN', 31),
} as const;

export const SACR = 0x010;
/** sACR as MMU-500 implements it (the architecture leaves sACR implementation defined). */
export const sACR = {
  SMTNMB_TLBEN: f('sACR.SMTNMB_TLBEN', 8),
  MMUDISB_TLBEN: f('sACR.MMUDISB_TLBEN', 9),
  S2CRB_TLBEN: f('sACR.S2CRB_TLBEN', 10),
  CACHE_LOCK: f('sACR.CACHE_LOCK', 26),
} as const;

export const IDR0 = 0x020;
export const ID0 = {
  NUMSMRG: f('ID0.NUMSMRG', 7, 0),
  EXIDS: f('ID0.EXIDS', 8),
  NUMSIDB: f('ID0.NUMSIDB', 12, 9),
  BTM: f('ID0.BTM', 13),
  CTTW: f('ID0.CTTW', 14),
  NUMIRPT: f('ID0.NUMIRPT', 23, 16),
  PTFS: f('ID0.PTFS', 25, 24),
  ATOSNS: f('ID0.ATOSNS', 26),
  SMS: f('ID0.SMS', 27),
  NTS: f('ID0.NTS', 28),
  S2TS: f('ID0.S2TS', 29),
  S1TS: f('ID0.S1TS', 30),
  SES: f('ID0.SES', 31),
} as const;
/** ID0.PTFS values: which AArch32 table formats exist besides AArch64. */
export const PTFS_AARCH32_S_AND_L = 0;
export const PTFS_AARCH32_L_ONLY = 1;
export const PTFS_NO_AARCH32 = 2;

export const IDR1 = 0x024;
export const ID1 = {
  NUMCB: f('ID1.NUMCB', 7, 0),
  NUMSSDNDXB: f('ID1.NUMSSDNDXB', 11, 8),
  SSDTP: f('ID1.SSDTP', 12),
  SMCD: f('ID1.SMCD', 15),
  NUMS2CB: f('ID1.NUMS2CB', 23, 16),
  NUMPAGENDXB: f('ID1.NUMPAGENDXB', 30, 28),
  PAGESIZE: f('ID1.PAGESIZE', 31),
} as const;

export const IDR2 = 0x028;
export const ID2 = {
  IAS: f('ID2.IAS', 3, 0),
  OAS: f('ID2.OAS', 7, 4),
  UBS: f('ID2.UBS', 11, 8),
  PTFS_4K: f('ID2.PTFS_4K', 12),
  PTFS_16K: f('ID2.PTFS_16K', 13),
  PTFS_64K: f('ID2.PTFS_64K', 14),
  VMID16: f('ID2.VMID16', 15),
} as const;
/** Address-size encoding shared by ID2.IAS/OAS/UBS, TCR2.PASIZE and VTCR.PS. */
export const ADDRESS_SIZE_BITS = [32, 36, 40, 42, 44, 48, 52] as const;

/** Encode an address width in bits as ID2.IAS/OAS/UBS and TCR2.PASIZE do. */
export function encodeAddressSize(bits: number): number {
  const i = (ADDRESS_SIZE_BITS as readonly number[]).indexOf(bits);
  if (i < 0) throw new RangeError(`address size ${bits} bits is not one of ${ADDRESS_SIZE_BITS.join('/')}`);
  return i;
}

/** Decode an address-size field; reserved encodings read as the largest size the SMMU supports. */
export function decodeAddressSize(enc: number, maxBits: number): number {
  const bits = enc < ADDRESS_SIZE_BITS.length ? ADDRESS_SIZE_BITS[enc] : maxBits;
  return Math.min(bits, maxBits);
}

/** ID2.UBS encodes the upstream bus width differently: 0b0101 is 49 bits (a sign bit above 48), 0b1111 is 64. */
const UBS_BITS: Readonly<Record<number, number>> = { 0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 49, 15: 64 };

export function encodeUbs(bits: number): number {
  for (const [enc, b] of Object.entries(UBS_BITS)) if (b === bits) return Number(enc);
  throw new RangeError(`upstream bus size ${bits} bits is not one of ${Object.values(UBS_BITS).join('/')}`);
}

export function decodeUbs(enc: number): number {
  return UBS_BITS[enc] ?? 49;
}

export const IDR3 = 0x02c;
export const IDR4 = 0x030;
export const IDR5 = 0x034;
export const IDR6 = 0x038;
export const IDR7 = 0x03c;
export const ID7 = {
  MINOR: f('ID7.MINOR', 3, 0),
  MAJOR: f('ID7.MAJOR', 7, 4),
} as const;

/** sGFAR: faulting address of a global fault (64-bit). */
export const SGFAR = 0x040;

export const SGFSR = 0x048;
export const sGFSR = {
  ICF: f('sGFSR.ICF', 0),
  USF: f('sGFSR.USF', 1),
  SMCF: f('sGFSR.SMCF', 2),
  UCBF: f('sGFSR.UCBF', 3),
  UCIF: f('sGFSR.UCIF', 4),
  CAF: f('sGFSR.CAF', 5),
  EF: f('sGFSR.EF', 6),
  PF: f('sGFSR.PF', 7),
  UUT: f('sGFSR.UUT', 8),
  MULTI: f('sGFSR.MULTI', 31),
} as const;
/** The sGFSR bits that record a fault (everything but MULTI). */
export const SGFSR_FAULT_BITS = 0x1ff;

export const SGFSRRESTORE = 0x04c;

export const SGFSYNR0 = 0x050;
export const sGFSYNR0 = {
  Nested: f('sGFSYNR0.Nested', 0),
  WNR: f('sGFSYNR0.WNR', 1),
  PNU: f('sGFSYNR0.PNU', 2),
  IND: f('sGFSYNR0.IND', 3),
  NSSTATE: f('sGFSYNR0.NSSTATE', 4),
  NSATTR: f('sGFSYNR0.NSATTR', 5),
} as const;

export const SGFSYNR1 = 0x054;
export const sGFSYNR1 = {
  StreamID: f('sGFSYNR1.StreamID', 15, 0),
  SSD_Index: f('sGFSYNR1.SSD_Index', 31, 16),
} as const;

export const SGFSYNR2 = 0x058;

export const TLBIVMID = 0x064;
export const TLBIVMID_F = { VMID: f('TLBIVMID.VMID', 15, 0) } as const;
export const TLBIALLNSNH = 0x068;
export const TLBIALLH = 0x06c;
export const STLBGSYNC = 0x070;
export const STLBGSTATUS = 0x074;
export const sTLBGSTATUS = { GSACTIVE: f('sTLBGSTATUS.GSACTIVE', 0) } as const;

/** SMR(n): stream match register n. */
export const SMR_BASE = 0x800;
export const SMR = {
  ID: f('SMR.ID', 15, 0),
  MASK: f('SMR.MASK', 31, 16),
  VALID: f('SMR.VALID', 31),
} as const;

/** S2CR(n): stream-to-context register n. */
export const S2CR_BASE = 0xc00;
export const S2CR = {
  CBNDX: f('S2CR.CBNDX', 7, 0),
  SHCFG: f('S2CR.SHCFG', 9, 8),
  EXIDVALID: f('S2CR.EXIDVALID', 10),
  MTCFG: f('S2CR.MTCFG', 11),
  MemAttr: f('S2CR.MemAttr', 15, 12),
  TYPE: f('S2CR.TYPE', 17, 16),
  NSCFG: f('S2CR.NSCFG', 19, 18),
  RACFG: f('S2CR.RACFG', 21, 20),
  WACFG: f('S2CR.WACFG', 23, 22),
  PRIVCFG: f('S2CR.PRIVCFG', 25, 24),
  INSTCFG: f('S2CR.INSTCFG', 27, 26),
  TRANSIENTCFG: f('S2CR.TRANSIENTCFG', 29, 28),
} as const;
export const S2CR_TYPE_TRANSLATE = 0;
export const S2CR_TYPE_BYPASS = 1;
export const S2CR_TYPE_FAULT = 2;
export const S2CR_PRIVCFG_DEFAULT = 0;
export const S2CR_PRIVCFG_UNPRIV = 2;
export const S2CR_PRIVCFG_PRIV = 3;
export const S2CR_INSTCFG_DEFAULT = 0;
export const S2CR_INSTCFG_DATA = 2;
export const S2CR_INSTCFG_INSTRUCTION = 3;

// ---------------------------------------------------------------------------------------------
// Global register space 1 (page 1)
// ---------------------------------------------------------------------------------------------

export const CBAR_BASE = 0x000;
export const CBAR = {
  VMID: f('CBAR.VMID', 7, 0),
  BPSHCFG: f('CBAR.BPSHCFG', 9, 8),
  HYPC: f('CBAR.HYPC', 10),
  FB: f('CBAR.FB', 11),
  MemAttr: f('CBAR.MemAttr', 15, 12),
  /** TYPE = S1 translate + S2 translate only: the stage-2 context bank (overlays BPSHCFG…MemAttr). */
  CBNDX: f('CBAR.CBNDX', 15, 8),
  TYPE: f('CBAR.TYPE', 17, 16),
  BSU: f('CBAR.BSU', 19, 18),
  RACFG: f('CBAR.RACFG', 21, 20),
  WACFG: f('CBAR.WACFG', 23, 22),
  /** SMMUv1: the context interrupt this bank signals (SMMUv2 uses interrupt n for bank n). */
  IRPTNDX: f('CBAR.IRPTNDX', 31, 24),
} as const;
export const CBAR_TYPE_S2_TRANS = 0;
export const CBAR_TYPE_S1_TRANS_S2_BYPASS = 1;
export const CBAR_TYPE_S1_TRANS_S2_FAULT = 2;
export const CBAR_TYPE_S1_TRANS_S2_TRANS = 3;

export const CBFRSYNRA_BASE = 0x400;
export const CBFRSYNRA = {
  StreamID: f('CBFRSYNRA.StreamID', 15, 0),
  SSD_Index: f('CBFRSYNRA.SSD_Index', 31, 16),
} as const;

export const CBA2R_BASE = 0x800;
export const CBA2R = {
  VA64: f('CBA2R.VA64', 0),
  MONC: f('CBA2R.MONC', 1),
  VMID16: f('CBA2R.VMID16', 31, 16),
} as const;

// ---------------------------------------------------------------------------------------------
// Translation context bank (page NUMPAGE + n)
// ---------------------------------------------------------------------------------------------

export const CB_SCTLR = 0x000;
export const SCTLR = {
  M: f('SCTLR.M', 0),
  TRE: f('SCTLR.TRE', 1),
  AFE: f('SCTLR.AFE', 2),
  AFFD: f('SCTLR.AFFD', 3),
  E: f('SCTLR.E', 4),
  CFRE: f('SCTLR.CFRE', 5),
  CFIE: f('SCTLR.CFIE', 6),
  CFCFG: f('SCTLR.CFCFG', 7),
  HUPCF: f('SCTLR.HUPCF', 8),
  WXN: f('SCTLR.WXN', 9),
  UWXN: f('SCTLR.UWXN', 10),
  ASIDPNE: f('SCTLR.ASIDPNE', 12),
  TRANSIENTCFG: f('SCTLR.TRANSIENTCFG', 15, 14),
  MemAttr: f('SCTLR.MemAttr', 19, 16),
  MTCFG: f('SCTLR.MTCFG', 20),
  FB: f('SCTLR.FB', 21),
  SHCFG: f('SCTLR.SHCFG', 23, 22),
  RACFG: f('SCTLR.RACFG', 25, 24),
  WACFG: f('SCTLR.WACFG', 27, 26),
  NSCFG: f('SCTLR.NSCFG', 29, 28),
} as const;

export const CB_ACTLR = 0x004;
/** ACTLR as MMU-500 implements it. */
export const ACTLR = {
  CMTLB: f('ACTLR.CMTLB', 0),
  CPRE: f('ACTLR.CPRE', 1),
} as const;

export const CB_RESUME = 0x008;
export const RESUME = { TnR: f('RESUME.TnR', 0) } as const;

export const CB_TCR2 = 0x010;
export const TCR2 = {
  PASIZE: f('TCR2.PASIZE', 3, 0),
  AS: f('TCR2.AS', 4),
  TBI0: f('TCR2.TBI0', 5),
  TBI1: f('TCR2.TBI1', 6),
  NSCFG0: f('TCR2.NSCFG0', 14),
  SEP: f('TCR2.SEP', 17, 15),
  NSCFG1: f('TCR2.NSCFG1', 30),
} as const;
/** TCR2.SEP: sign-extend from the upstream bus size (ID2.UBS). */
export const SEP_UPSTREAM = 7;

export const CB_TTBR0 = 0x020;
export const CB_TTBR1 = 0x028;
/** TTBRn high word (offset + 4): ASID[63:48] is bits [31:16] of the high half. */
export const TTBR_HI = { ASID: f('TTBRn.ASID', 31, 16) } as const;

/** TCR (stage 1, AArch64 and AArch32 long-descriptor) and its stage-2 reading (VTCR). */
export const CB_TCR = 0x030;
export const TCR = {
  T0SZ: f('TCR.T0SZ', 5, 0),
  EPD0: f('TCR.EPD0', 7),
  IRGN0: f('TCR.IRGN0', 9, 8),
  ORGN0: f('TCR.ORGN0', 11, 10),
  SH0: f('TCR.SH0', 13, 12),
  TG0: f('TCR.TG0', 15, 14),
  T1SZ: f('TCR.T1SZ', 21, 16),
  A1: f('TCR.A1', 22),
  EPD1: f('TCR.EPD1', 23),
  IRGN1: f('TCR.IRGN1', 25, 24),
  ORGN1: f('TCR.ORGN1', 27, 26),
  SH1: f('TCR.SH1', 29, 28),
  TG1: f('TCR.TG1', 31, 30),
  /** AArch32 (no CBA2R.VA64): 1 selects the long-descriptor format. Overlays TG1[1]. */
  EAE: f('TCR.EAE', 31),
} as const;
export const VTCR = {
  T0SZ: f('VTCR.T0SZ', 5, 0),
  SL0: f('VTCR.SL0', 7, 6),
  IRGN0: f('VTCR.IRGN0', 9, 8),
  ORGN0: f('VTCR.ORGN0', 11, 10),
  SH0: f('VTCR.SH0', 13, 12),
  TG0: f('VTCR.TG0', 15, 14),
  PS: f('VTCR.PS', 18, 16),
} as const;
/** TCR.TG0 / VTCR.TG0 encodings. */
export const TG0_4K = 0;
export const TG0_64K = 1;
export const TG0_16K = 2;
/** TCR.TG1 encodings (different from TG0's). */
export const TG1_16K = 1;
export const TG1_4K = 2;
export const TG1_64K = 3;

export const CB_CONTEXTIDR = 0x034;
export const CB_MAIR0 = 0x038;
export const CB_MAIR1 = 0x03c;

/** PAR (64-bit): the result of an ATS1* address translation operation. */
export const CB_PAR = 0x050;
/** PAR low word. Success: F=0, SH, NS, PA[31:12]; fault: F=1 and the FSR-style fault bits. */
export const PAR_LO = {
  F: f('PAR.F', 0),
  TF: f('PAR.TF', 1),
  AFF: f('PAR.AFF', 2),
  PF: f('PAR.PF', 3),
  EF: f('PAR.EF', 4),
  TLBMCF: f('PAR.TLBMCF', 5),
  TLBLKF: f('PAR.TLBLKF', 6),
  SH: f('PAR.SH', 8, 7),
  NS: f('PAR.NS', 9),
  PA_LO: f('PAR.PA[31:12]', 31, 12),
} as const;
/** PAR high word. Success: PA[47:32], ATTR[63:56]; fault: PLVL[33:32], STAGE[35]. */
export const PAR_HI = {
  PA_HI: f('PAR.PA[47:32]', 15, 0),
  ATTR: f('PAR.ATTR', 31, 24),
  PLVL: f('PAR.PLVL', 1, 0),
  STAGE: f('PAR.STAGE', 3),
} as const;

export const CB_FSR = 0x058;
export const FSR = {
  TF: f('FSR.TF', 1),
  AFF: f('FSR.AFF', 2),
  PF: f('FSR.PF', 3),
  EF: f('FSR.EF', 4),
  TLBMCF: f('FSR.TLBMCF', 5),
  TLBLKF: f('FSR.TLBLKF', 6),
  ASF: f('FSR.ASF', 7),
  UUT: f('FSR.UUT', 8),
  FORMAT: f('FSR.FORMAT', 10, 9),
  SS: f('FSR.SS', 30),
  MULTI: f('FSR.MULTI', 31),
} as const;
/** FSR bits that record a fault (TF … UUT). */
export const FSR_FAULT_BITS = 0x1fe;
/** FSR.FORMAT values: the translation table format of the faulting context. */
export const FSR_FORMAT_AARCH32_S = 0;
export const FSR_FORMAT_AARCH32_L = 1;
export const FSR_FORMAT_AARCH64 = 2;

export const CB_FSRRESTORE = 0x05c;
export const CB_FAR = 0x060;

export const CB_FSYNR0 = 0x068;
export const FSYNR0 = {
  PLVL: f('FSYNR0.PLVL', 1, 0),
  WNR: f('FSYNR0.WNR', 4),
  PNU: f('FSYNR0.PNU', 5),
  IND: f('FSYNR0.IND', 6),
  NSSTATE: f('FSYNR0.NSSTATE', 7),
  NSATTR: f('FSYNR0.NSATTR', 8),
  ATOF: f('FSYNR0.ATOF', 9),
  PTWF: f('FSYNR0.PTWF', 10),
  AFR: f('FSYNR0.AFR', 11),
  S1CBNDX: f('FSYNR0.S1CBNDX', 23, 16),
} as const;

export const CB_FSYNR1 = 0x06c;
/** IPAFAR (64-bit): the IPA of a stage-2 fault taken during a nested translation. */
export const CB_IPAFAR = 0x070;

export const CB_TLBIVA = 0x600;
export const CB_TLBIVAA = 0x608;
export const CB_TLBIASID = 0x610;
export const CB_TLBIALL = 0x618;
export const CB_TLBIVAL = 0x620;
export const CB_TLBIVAAL = 0x628;
export const CB_TLBIIPAS2 = 0x630;
export const CB_TLBIIPAS2L = 0x638;
export const CB_TLBSYNC = 0x7f0;
export const CB_TLBSTATUS = 0x7f4;
export const TLBSTATUS = { SACTIVE: f('TLBSTATUS.SACTIVE', 0) } as const;

export const CB_ATS1PR = 0x800;
export const CB_ATS1PW = 0x808;
export const CB_ATS1UR = 0x810;
export const CB_ATS1UW = 0x818;
export const CB_ATSR = 0x8f0;
export const ATSR = { ACTIVE: f('ATSR.ACTIVE', 0) } as const;

// ---------------------------------------------------------------------------------------------
// Address-space layout
// ---------------------------------------------------------------------------------------------

/**
 * Where things live in the SMMU's register space: GR0 at page 0, GR1 at page 1, the rest of the
 * global half implementation defined, then context bank n at page NUMPAGE + n.
 */
export class SmmuLayout {
  readonly pgshift: number;
  readonly pageSize: number;
  readonly numPage: number;
  /** Total size of the register space: 2 × NUMPAGE pages. */
  readonly size: number;
  readonly cbBase: number;

  constructor(pageSize64k: boolean, numPageNdxb: number) {
    if (!Number.isInteger(numPageNdxb) || numPageNdxb < 0 || numPageNdxb > 7) {
      throw new RangeError(`ID1.NUMPAGENDXB must be 0..7, got ${numPageNdxb}`);
    }
    this.pgshift = pageSize64k ? 16 : 12;
    this.pageSize = 1 << this.pgshift;
    this.numPage = 1 << (numPageNdxb + 1);
    this.size = 2 * this.numPage * this.pageSize;
    this.cbBase = this.numPage * this.pageSize;
  }
}

/** NUMPAGENDXB for a register region of `regionSize` bytes (what a DT `reg` size implies). */
export function numPageNdxbForRegion(regionSize: number, pageSize64k: boolean): number {
  const pageSize = pageSize64k ? 0x10000 : 0x1000;
  for (let ndxb = 0; ndxb <= 7; ndxb++) {
    if (2 * (1 << (ndxb + 1)) * pageSize === regionSize) return ndxb;
  }
  throw new RangeError(
    `SMMU register region of 0x${regionSize.toString(16)} bytes is not 2 x NUMPAGE x ${pageSize64k ? '64K' : '4K'} for any NUMPAGENDXB`,
  );
}

const GR0_NAMES: ReadonlyMap<number, string> = new Map<number, string>([
  [SCR0, 'sCR0'], [SACR, 'sACR'], [IDR0, 'sIDR0'], [IDR1, 'sIDR1'], [IDR2, 'sIDR2'], [IDR3, 'sIDR3'], [IDR4, 'sIDR4'],
  [IDR5, 'sIDR5'], [IDR6, 'sIDR6'], [IDR7, 'sIDR7'], [SGFAR, 'sGFAR'], [SGFSR, 'sGFSR'], [SGFSRRESTORE, 'sGFSRRESTORE'],
  [SGFSYNR0, 'sGFSYNR0'], [SGFSYNR1, 'sGFSYNR1'], [SGFSYNR2, 'sGFSYNR2'], [TLBIVMID, 'TLBIVMID'], [TLBIALLNSNH, 'TLBIALLNSNH'],
  [TLBIALLH, 'TLBIALLH'], [STLBGSYNC, 'sTLBGSYNC'], [STLBGSTATUS, 'sTLBGSTATUS'],
]);

const CB_NAMES: ReadonlyMap<number, string> = new Map<number, string>([
  [CB_SCTLR, 'SCTLR'], [CB_ACTLR, 'ACTLR'], [CB_RESUME, 'RESUME'], [CB_TCR2, 'TCR2'], [CB_TTBR0, 'TTBR0'], [CB_TTBR1, 'TTBR1'],
  [CB_TCR, 'TCR'], [CB_CONTEXTIDR, 'CONTEXTIDR'], [CB_MAIR0, 'MAIR0'], [CB_MAIR1, 'MAIR1'], [CB_PAR, 'PAR'], [CB_FSR, 'FSR'],
  [CB_FSRRESTORE, 'FSRRESTORE'], [CB_FAR, 'FAR'], [CB_FSYNR0, 'FSYNR0'], [CB_FSYNR1, 'FSYNR1'], [CB_IPAFAR, 'IPAFAR'],
  [CB_TLBIVA, 'TLBIVA'], [CB_TLBIVAA, 'TLBIVAA'], [CB_TLBIASID, 'TLBIASID'], [CB_TLBIALL, 'TLBIALL'], [CB_TLBIVAL, 'TLBIVAL'],
  [CB_TLBIVAAL, 'TLBIVAAL'], [CB_TLBIIPAS2, 'TLBIIPAS2'], [CB_TLBIIPAS2L, 'TLBIIPAS2L'], [CB_TLBSYNC, 'TLBSYNC'],
  [CB_TLBSTATUS, 'TLBSTATUS'], [CB_ATS1PR, 'ATS1PR'], [CB_ATS1PW, 'ATS1PW'], [CB_ATS1UR, 'ATS1UR'], [CB_ATS1UW, 'ATS1UW'], [CB_ATSR, 'ATSR'],
]);

/**
 * The spec's name of a register in the SMMU's space (GR0 `sCR0`, `SMR5`, `S2CR5`; GR1 `CBAR3`,
 * `CBA2R3`, `CBFRSYNRA3`; context bank `CB3_FSR`), given the layout's page size and where the
 * context banks start; null for an offset no register has.
 */
export function registerName(offset: number, pageSize: number, cbBase: number): string | null {
  const idx = (base: number, off: number): number => (off - base) >> 2;
  if (offset < pageSize) {
    if (offset >= SMR_BASE && offset < S2CR_BASE) return `SMR${idx(SMR_BASE, offset)}`;
    if (offset >= S2CR_BASE && offset < S2CR_BASE + 0x400) return `S2CR${idx(S2CR_BASE, offset)}`;
    return GR0_NAMES.get(offset) ?? null;
  }
  if (offset < 2 * pageSize) {
    const off = offset - pageSize;
    if (off >= CBFRSYNRA_BASE && off < CBA2R_BASE) return `CBFRSYNRA${idx(CBFRSYNRA_BASE, off)}`;
    if (off >= CBA2R_BASE && off < CBA2R_BASE + 0x400) return `CBA2R${idx(CBA2R_BASE, off)}`;
    if (off < CBFRSYNRA_BASE) return `CBAR${idx(CBAR_BASE, off)}`;
    return null;
  }
  if (offset < cbBase) return null;
  const n = Math.floor((offset - cbBase) / pageSize);
  const reg = offset - cbBase - n * pageSize;
  const name = CB_NAMES.get(reg) ?? (CB_NAMES.has(reg - 4) && /^(TTBR|PAR|FAR|IPAFAR|TLBI|ATS1)/.test(CB_NAMES.get(reg - 4)!) ? `${CB_NAMES.get(reg - 4)!}_HI` : null);
  return name === null ? null : `CB${n}_${name}`;
}
