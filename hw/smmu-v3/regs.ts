/**
 * SMMUv3 register file declaration: the offsets of the SMMUv3_PAGE_0 and SMMUv3_PAGE_1 registers
 * and their fields, in the order the Arm SMMUv3 architecture specification lists them.
 *
 * Supports: the Non-secure programming interface registers a kernel driver uses (IDR0-5, IIDR,
 * AIDR, CR0/CR0ACK, CR1, CR2, STATUSR, GBPA, IRQ_CTRL/ACK, GERROR/GERRORN, the *_IRQ_CFG MSI
 * registers, STRTAB_BASE/_CFG, CMDQ/EVTQ/PRIQ BASE/PROD/CONS) and the PrimeCell ID registers.
 * Does not support: the Secure, Realm and Root register pages, the PMCG, VATOS, MPAM and
 * DPT registers (their offsets read as zero).
 *
 * This file is the model's own definition. The driver carries its own, as the kernel header does:
 * a shared definition would hide a wrong offset from both sides.
 */
import { bit, field } from '../bitfield.js';

/** Each register page is 64 KiB; page 1 starts at 0x10000. */
export const PAGE_SIZE = 0x1_0000;
export const PAGE1 = 0x1_0000;
/** The MMIO region an SMMUv3 occupies: pages 0 and 1. */
export const SMMU_V3_REGION_SIZE = 0x2_0000;

// ---- SMMU_IDR0 ----------------------------------------------------------------------------
export const IDR0 = 0x0000;
export const IDR0_S2P = bit('IDR0.S2P', 0);
export const IDR0_S1P = bit('IDR0.S1P', 1);
export const IDR0_TTF = field('IDR0.TTF', 3, 2);
export const TTF_AARCH32 = 1;
export const TTF_AARCH64 = 2;
export const TTF_AARCH32_64 = 3;
export const IDR0_COHACC = bit('IDR0.COHACC', 4);
export const IDR0_BTM = bit('IDR0.BTM', 5);
export const IDR0_HTTU = field('IDR0.HTTU', 7, 6);
export const IDR0_DORMHINT = bit('IDR0.DORMHINT', 8);
export const IDR0_HYP = bit('IDR0.Hyp', 9);
export const IDR0_ATS = bit('IDR0.ATS', 10);
export const IDR0_NS1ATS = bit('IDR0.NS1ATS', 11);
export const IDR0_ASID16 = bit('IDR0.ASID16', 12);
export const IDR0_MSI = bit('IDR0.MSI', 13);
export const IDR0_SEV = bit('IDR0.SEV', 14);
export const IDR0_ATOS = bit('IDR0.ATOS', 15);
export const IDR0_PRI = bit('IDR0.PRI', 16);
export const IDR0_VMW = bit('IDR0.VMW', 17);
export const IDR0_VMID16 = bit('IDR0.VMID16', 18);
export const IDR0_CD2L = bit('IDR0.CD2L', 19);
export const IDR0_VATOS = bit('IDR0.VATOS', 20);
export const IDR0_TTENDIAN = field('IDR0.TTENDIAN', 22, 21);
export const TTENDIAN_MIXED = 0;
export const TTENDIAN_LE = 2;
export const TTENDIAN_BE = 3;
export const IDR0_STALL_MODEL = field('IDR0.STALL_MODEL', 25, 24);
/** Stall and terminate models both supported (CD.S / STE.S2S choose). */
export const STALL_MODEL_STALL_TERMINATE = 0;
/** Terminate model only: stalls are not supported. */
export const STALL_MODEL_TERMINATE = 1;
/** Stall model forced: CD.S / STE.S2S must be 1. */
export const STALL_MODEL_STALL_FORCED = 2;
export const IDR0_TERM_MODEL = bit('IDR0.TERM_MODEL', 26);
export const IDR0_ST_LEVEL = field('IDR0.ST_LEVEL', 28, 27);
export const ST_LEVEL_LINEAR = 0;
export const ST_LEVEL_2LVL = 1;

// ---- SMMU_IDR1 ----------------------------------------------------------------------------
export const IDR1 = 0x0004;
export const IDR1_SIDSIZE = field('IDR1.SIDSIZE', 5, 0);
export const IDR1_SSIDSIZE = field('IDR1.SSIDSIZE', 10, 6);
export const IDR1_PRIQS = field('IDR1.PRIQS', 15, 11);
export const IDR1_EVENTQS = field('IDR1.EVENTQS', 20, 16);
export const IDR1_CMDQS = field('IDR1.CMDQS', 25, 21);
export const IDR1_ATTR_PERMS_OVR = bit('IDR1.ATTR_PERMS_OVR', 26);
export const IDR1_ATTR_TYPES_OVR = bit('IDR1.ATTR_TYPES_OVR', 27);
export const IDR1_REL = bit('IDR1.REL', 28);
export const IDR1_QUEUES_PRESET = bit('IDR1.QUEUES_PRESET', 29);
export const IDR1_TABLES_PRESET = bit('IDR1.TABLES_PRESET', 30);

// ---- SMMU_IDR2 (VATOS page base; not implemented) -------------------------------------------
export const IDR2 = 0x0008;

// ---- SMMU_IDR3 ----------------------------------------------------------------------------
export const IDR3 = 0x000c;
export const IDR3_HAD = bit('IDR3.HAD', 2);
export const IDR3_PBHA = bit('IDR3.PBHA', 3);
export const IDR3_XNX = bit('IDR3.XNX', 4);
export const IDR3_PPS = bit('IDR3.PPS', 5);
export const IDR3_MPAM = bit('IDR3.MPAM', 7);
export const IDR3_FWB = bit('IDR3.FWB', 8);
export const IDR3_STT = bit('IDR3.STT', 9);
export const IDR3_RIL = bit('IDR3.RIL', 10);
export const IDR3_BBML = field('IDR3.BBML', 12, 11);
export const IDR3_E0PD = bit('IDR3.E0PD', 13);
export const IDR3_PTWNNC = bit('IDR3.PTWNNC', 14);

// ---- SMMU_IDR4 (IMPLEMENTATION DEFINED) ---------------------------------------------------
export const IDR4 = 0x0010;

// ---- SMMU_IDR5 ----------------------------------------------------------------------------
export const IDR5 = 0x0014;
export const IDR5_OAS = field('IDR5.OAS', 2, 0);
export const IDR5_GRAN4K = bit('IDR5.GRAN4K', 4);
export const IDR5_GRAN16K = bit('IDR5.GRAN16K', 5);
export const IDR5_GRAN64K = bit('IDR5.GRAN64K', 6);
export const IDR5_DS = bit('IDR5.DS', 7);
export const IDR5_VAX = field('IDR5.VAX', 11, 10);
export const IDR5_STALL_MAX = field('IDR5.STALL_MAX', 31, 16);

/** Encodings of IDR5.OAS, CD.IPS and STE.S2PS, indexed by field value. */
export const ADDRESS_SIZE_BITS = [32, 36, 40, 42, 44, 48, 52] as const;

// ---- SMMU_IIDR, SMMU_AIDR -----------------------------------------------------------------
export const IIDR = 0x0018;
export const IIDR_IMPLEMENTER = field('IIDR.Implementer', 11, 0);
export const IIDR_REVISION = field('IIDR.Revision', 15, 12);
export const IIDR_VARIANT = field('IIDR.Variant', 19, 16);
export const IIDR_PRODUCTID = field('IIDR.ProductID', 31, 20);
export const AIDR = 0x001c;
export const AIDR_ARCH_MINOR_REV = field('AIDR.ArchMinorRev', 3, 0);
export const AIDR_ARCH_MAJOR_REV = field('AIDR.ArchMajorRev', 7, 4);

// ---- SMMU_CR0 / SMMU_CR0ACK ---------------------------------------------------------------
export const CR0 = 0x0020;
export const CR0_SMMUEN = bit('CR0.SMMUEN', 0);
export const CR0_PRIQEN = bit('CR0.PRIQEN', 1);
export const CR0_EVENTQEN = bit('CR0.EVENTQEN', 2);
export const CR0_CMDQEN = bit('CR0.CMDQEN', 3);
export const CR0_ATSCHK = bit('CR0.ATSCHK', 4);
export const CR0_VMW = field('CR0.VMW', 8, 6);
export const CR0ACK = 0x0024;

// ---- SMMU_CR1 -----------------------------------------------------------------------------
export const CR1 = 0x0028;
export const CR1_QUEUE_IC = field('CR1.QUEUE_IC', 1, 0);
export const CR1_QUEUE_OC = field('CR1.QUEUE_OC', 3, 2);
export const CR1_QUEUE_SH = field('CR1.QUEUE_SH', 5, 4);
export const CR1_TABLE_IC = field('CR1.TABLE_IC', 7, 6);
export const CR1_TABLE_OC = field('CR1.TABLE_OC', 9, 8);
export const CR1_TABLE_SH = field('CR1.TABLE_SH', 11, 10);
/** Bits of CR1 that are implemented (the rest are RES0). */
export const CR1_IMPLEMENTED = 0x0000_0fff;
/** CR1.TABLE_* (guarded by SMMUEN) and CR1.QUEUE_* (guarded by the queue enables). */
export const CR1_TABLE_BITS = (CR1_TABLE_IC.mask | CR1_TABLE_OC.mask | CR1_TABLE_SH.mask) >>> 0;
export const CR1_QUEUE_BITS = (CR1_QUEUE_IC.mask | CR1_QUEUE_OC.mask | CR1_QUEUE_SH.mask) >>> 0;

// ---- SMMU_CR2 -----------------------------------------------------------------------------
export const CR2 = 0x002c;
export const CR2_E2H = bit('CR2.E2H', 0);
export const CR2_RECINVSID = bit('CR2.RECINVSID', 1);
export const CR2_PTM = bit('CR2.PTM', 2);
export const CR2_IMPLEMENTED = 0x0000_0007;

// ---- SMMU_STATUSR -------------------------------------------------------------------------
export const STATUSR = 0x0040;
export const STATUSR_DORMANT = bit('STATUSR.DORMANT', 0);

// ---- SMMU_GBPA ----------------------------------------------------------------------------
export const GBPA = 0x0044;
export const GBPA_MEMATTR = field('GBPA.MemAttr', 3, 0);
export const GBPA_MTCFG = bit('GBPA.MTCFG', 4);
export const GBPA_ALLOCCFG = field('GBPA.ALLOCCFG', 11, 8);
export const GBPA_SHCFG = field('GBPA.SHCFG', 13, 12);
export const GBPA_PRIVCFG = field('GBPA.PRIVCFG', 17, 16);
export const GBPA_INSTCFG = field('GBPA.INSTCFG', 19, 18);
export const GBPA_ABORT = bit('GBPA.ABORT', 20);
export const GBPA_UPDATE = bit('GBPA.Update', 31);
/** The GBPA bits that hold state (UPDATE is the handshake, not state). */
export const GBPA_STATE_BITS = 0x001f_3f1f;

// ---- SMMU_AGBPA (IMPLEMENTATION DEFINED) --------------------------------------------------
export const AGBPA = 0x0048;

// ---- SMMU_IRQ_CTRL / SMMU_IRQ_CTRLACK -----------------------------------------------------
export const IRQ_CTRL = 0x0050;
export const IRQ_CTRL_GERROR_IRQEN = bit('IRQ_CTRL.GERROR_IRQEN', 0);
export const IRQ_CTRL_PRIQ_IRQEN = bit('IRQ_CTRL.PRIQ_IRQEN', 1);
export const IRQ_CTRL_EVENTQ_IRQEN = bit('IRQ_CTRL.EVENTQ_IRQEN', 2);
export const IRQ_CTRLACK = 0x0054;

// ---- SMMU_GERROR / SMMU_GERRORN -----------------------------------------------------------
export const GERROR = 0x0060;
export const GERROR_CMDQ_ERR = bit('GERROR.CMDQ_ERR', 0);
export const GERROR_EVENTQ_ABT_ERR = bit('GERROR.EVENTQ_ABT_ERR', 2);
export const GERROR_PRIQ_ABT_ERR = bit('GERROR.PRIQ_ABT_ERR', 3);
export const GERROR_MSI_CMDQ_ABT_ERR = bit('GERROR.MSI_CMDQ_ABT_ERR', 4);
export const GERROR_MSI_EVENTQ_ABT_ERR = bit('GERROR.MSI_EVENTQ_ABT_ERR', 5);
export const GERROR_MSI_PRIQ_ABT_ERR = bit('GERROR.MSI_PRIQ_ABT_ERR', 6);
export const GERROR_MSI_GERROR_ABT_ERR = bit('GERROR.MSI_GERROR_ABT_ERR', 7);
export const GERROR_SFM_ERR = bit('GERROR.SFM_ERR', 8);
export const GERROR_IMPLEMENTED = 0x0000_01fd;
export const GERRORN = 0x0064;

// ---- SMMU_GERROR_IRQ_CFG0/1/2 -------------------------------------------------------------
export const GERROR_IRQ_CFG0 = 0x0068;
export const GERROR_IRQ_CFG1 = 0x0070;
export const GERROR_IRQ_CFG2 = 0x0074;
/** *_IRQ_CFG0.ADDR is bits [51:2] of the 64-bit register. */
export const IRQ_CFG0_ADDR_HI_MASK = 0x000f_ffff;
export const IRQ_CFG0_ADDR_LO_MASK = 0xffff_fffc;
export const IRQ_CFG2_MEMATTR = field('IRQ_CFG2.MemAttr', 3, 0);
export const IRQ_CFG2_SH = field('IRQ_CFG2.SH', 5, 4);
export const IRQ_CFG2_IMPLEMENTED = 0x0000_003f;
/** PRIQ_IRQ_CFG2.LO: raise the PRI queue interrupt only for entries with Last == 1. */
export const PRIQ_IRQ_CFG2_LO = bit('PRIQ_IRQ_CFG2.LO', 31);

// ---- SMMU_STRTAB_BASE / SMMU_STRTAB_BASE_CFG ----------------------------------------------
export const STRTAB_BASE = 0x0080;
/** STRTAB_BASE.ADDR is bits [51:6]; RA is bit 62 (bit 30 of the high word). */
export const STRTAB_BASE_ADDR_LO_MASK = 0xffff_ffc0;
export const STRTAB_BASE_ADDR_HI_MASK = 0x000f_ffff;
export const STRTAB_BASE_RA_HI = bit('STRTAB_BASE.RA', 30);
export const STRTAB_BASE_CFG = 0x0088;
export const STRTAB_BASE_CFG_LOG2SIZE = field('STRTAB_BASE_CFG.LOG2SIZE', 5, 0);
export const STRTAB_BASE_CFG_SPLIT = field('STRTAB_BASE_CFG.SPLIT', 10, 6);
export const STRTAB_BASE_CFG_FMT = field('STRTAB_BASE_CFG.FMT', 17, 16);
export const STRTAB_FMT_LINEAR = 0;
export const STRTAB_FMT_2LVL = 1;
export const STRTAB_BASE_CFG_IMPLEMENTED = 0x0003_07ff;

// ---- Queue registers ----------------------------------------------------------------------
// *Q_BASE: ADDR [51:5], LOG2SIZE [4:0], RA/WA bit 62 (bit 30 of the high word).
export const Q_BASE_LOG2SIZE = field('Q_BASE.LOG2SIZE', 4, 0);
export const Q_BASE_ADDR_LO_MASK = 0xffff_ffe0;
export const Q_BASE_ADDR_HI_MASK = 0x000f_ffff;
export const Q_BASE_ALLOC_HINT_HI = bit('Q_BASE.RA/WA', 30);
/** PROD.WR / CONS.RD: index and wrap bit, up to bit 19. */
export const Q_INDEX_MASK = 0x000f_ffff;
/** EVENTQ/PRIQ PROD.OVFLG and CONS.OVACKFLG. */
export const Q_OVFLG = bit('Q.OVFLG', 31);
export const CMDQ_CONS_ERR = field('CMDQ_CONS.ERR', 30, 24);
export const CERROR_NONE = 0;
export const CERROR_ILL = 1;
export const CERROR_ABT = 2;
export const CERROR_ATC_INV_SYNC = 3;

export const CMDQ_BASE = 0x0090;
export const CMDQ_PROD = 0x0098;
export const CMDQ_CONS = 0x009c;
export const EVENTQ_BASE = 0x00a0;
/** Page 1 registers: architecturally at 0x100a8/0x100ac; the page 0 offsets alias them. */
export const EVENTQ_PROD = 0x00a8;
export const EVENTQ_CONS = 0x00ac;
export const EVENTQ_IRQ_CFG0 = 0x00b0;
export const EVENTQ_IRQ_CFG1 = 0x00b8;
export const EVENTQ_IRQ_CFG2 = 0x00bc;
export const PRIQ_BASE = 0x00c0;
export const PRIQ_PROD = 0x00c8;
export const PRIQ_CONS = 0x00cc;
export const PRIQ_IRQ_CFG0 = 0x00d0;
export const PRIQ_IRQ_CFG1 = 0x00d8;
export const PRIQ_IRQ_CFG2 = 0x00dc;

/** The registers that live in page 1 (offsets within the page). */
export const PAGE1_REGISTERS: readonly number[] = [EVENTQ_PROD, EVENTQ_CONS, PRIQ_PROD, PRIQ_CONS];

// ---- PrimeCell / CoreLink identification registers ----------------------------------------
export const PIDR4 = 0x0fd0;
export const CIDR3 = 0x0ffc;
/** PIDR4-7, PIDR0-3, CIDR0-3 in offset order (an Arm MMU-600-like identity). */
export const ID_REGISTER_BYTES: readonly number[] = [
  0x04, 0x00, 0x00, 0x00, // PIDR4..PIDR7
  0x83, 0xb4, 0x0b, 0x00, // PIDR0..PIDR3
  0x0d, 0xf0, 0x05, 0xb1, // CIDR0..CIDR3
];

/** Register names by offset, for debug logs and traces. */
export const REGISTER_NAMES: ReadonlyMap<number, string> = new Map<number, string>([
  [IDR0, 'IDR0'], [IDR1, 'IDR1'], [IDR2, 'IDR2'], [IDR3, 'IDR3'], [IDR4, 'IDR4'], [IDR5, 'IDR5'],
  [IIDR, 'IIDR'], [AIDR, 'AIDR'], [CR0, 'CR0'], [CR0ACK, 'CR0ACK'], [CR1, 'CR1'], [CR2, 'CR2'],
  [STATUSR, 'STATUSR'], [GBPA, 'GBPA'], [AGBPA, 'AGBPA'], [IRQ_CTRL, 'IRQ_CTRL'], [IRQ_CTRLACK, 'IRQ_CTRLACK'],
  [GERROR, 'GERROR'], [GERRORN, 'GERRORN'], [GERROR_IRQ_CFG0, 'GERROR_IRQ_CFG0'],
  [GERROR_IRQ_CFG1, 'GERROR_IRQ_CFG1'], [GERROR_IRQ_CFG2, 'GERROR_IRQ_CFG2'],
  [STRTAB_BASE, 'STRTAB_BASE'], [STRTAB_BASE_CFG, 'STRTAB_BASE_CFG'],
  [CMDQ_BASE, 'CMDQ_BASE'], [CMDQ_PROD, 'CMDQ_PROD'], [CMDQ_CONS, 'CMDQ_CONS'],
  [EVENTQ_BASE, 'EVENTQ_BASE'], [EVENTQ_PROD, 'EVENTQ_PROD'], [EVENTQ_CONS, 'EVENTQ_CONS'],
  [EVENTQ_IRQ_CFG0, 'EVENTQ_IRQ_CFG0'], [EVENTQ_IRQ_CFG1, 'EVENTQ_IRQ_CFG1'], [EVENTQ_IRQ_CFG2, 'EVENTQ_IRQ_CFG2'],
  [PRIQ_BASE, 'PRIQ_BASE'], [PRIQ_PROD, 'PRIQ_PROD'], [PRIQ_CONS, 'PRIQ_CONS'],
  [PRIQ_IRQ_CFG0, 'PRIQ_IRQ_CFG0'], [PRIQ_IRQ_CFG1, 'PRIQ_IRQ_CFG1'], [PRIQ_IRQ_CFG2, 'PRIQ_IRQ_CFG2'],
]);

/** The model's name of the register at `offset` (page-1 queue pointers as their page-0 names; the upper word of a 64-bit one as NAME_HI), or null. */
export function registerName(offset: number): string | null {
  const off = offset >= PAGE1 && offset < PAGE1 + PAGE_SIZE ? offset - PAGE1 : offset;
  const n = REGISTER_NAMES.get(off);
  if (n !== undefined) return n;
  const lo = REGISTER_NAMES.get(off - 4);
  return lo !== undefined && /_BASE$|_CFG0$/.test(lo) ? `${lo}_HI` : null;
}
