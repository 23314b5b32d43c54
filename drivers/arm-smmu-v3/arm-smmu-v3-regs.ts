/**
 * The driver's own SMMUv3 definitions (kernel: drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.h): register
 * offsets and fields, queue pointer encodings, Stream Table Entries, Context Descriptors, commands,
 * event and PRI records, and the sizing constants the Linux driver uses.
 *
 * Written from the architecture specification and the kernel header's layout, independently of the
 * hardware model (hw/smmu-v3), which carries its own: a wrong offset shows up as a failing test
 * instead of agreeing with itself.
 *
 * Fields come from the kernel side's one bit-field library (bus/bitfield.ts):
 * - 32-bit register fields are masks (`GENMASK`, `BIT`), used with `FIELD_GET` / `FIELD_PREP` as in
 *   the kernel;
 * - fields of 64-bit in-memory structures (STE, CD, commands, records) are `QField`s naming their
 *   qword and bit range ("STRTAB_STE_1_S1DSS is qword 1, bits [1:0]"); address fields (`QAddr`)
 *   keep their bits where they are, as the kernel's `_MASK` address fields do.
 */
import { BIT, GENMASK, QAddr, QField } from '../../bus/bitfield.js';
import { MAX_ORDER } from '../../mm/page-alloc.js';

/** The driver's `debug` namespace and kernel-log tag. */
export const LOG_NS = 'iommu:drivers:arm-smmu-v3';

const q = (name: string, qword: number, hi: number, lo: number): QField => new QField(name, qword, hi, lo);
const qb = (name: string, qword: number, bit: number): QField => new QField(name, qword, bit, bit);

// ---- MMIO registers (page 0 unless noted) -----------------------------------------------------

export const ARM_SMMU_IDR0 = 0x0;
export const IDR0_ST_LVL = GENMASK(28, 27);
export const IDR0_ST_LVL_2LVL = 1;
export const IDR0_STALL_MODEL = GENMASK(25, 24);
export const IDR0_STALL_MODEL_STALL = 0;
export const IDR0_STALL_MODEL_FORCE = 2;
export const IDR0_TTENDIAN = GENMASK(22, 21);
export const IDR0_TTENDIAN_MIXED = 0;
export const IDR0_TTENDIAN_LE = 2;
export const IDR0_TTENDIAN_BE = 3;
export const IDR0_CD2L = BIT(19);
export const IDR0_VMID16 = BIT(18);
export const IDR0_PRI = BIT(16);
export const IDR0_SEV = BIT(14);
export const IDR0_MSI = BIT(13);
export const IDR0_ASID16 = BIT(12);
export const IDR0_ATS = BIT(10);
export const IDR0_HYP = BIT(9);
export const IDR0_HTTU = GENMASK(7, 6);
export const IDR0_HTTU_ACCESS = 1;
export const IDR0_HTTU_ACCESS_DIRTY = 2;
export const IDR0_COHACC = BIT(4);
export const IDR0_TTF = GENMASK(3, 2);
export const IDR0_TTF_AARCH64 = 2;
export const IDR0_TTF_AARCH32_64 = 3;
export const IDR0_S1P = BIT(1);
export const IDR0_S2P = BIT(0);

export const ARM_SMMU_IDR1 = 0x4;
export const IDR1_TABLES_PRESET = BIT(30);
export const IDR1_QUEUES_PRESET = BIT(29);
export const IDR1_REL = BIT(28);
export const IDR1_ATTR_TYPES_OVR = BIT(27);
export const IDR1_CMDQS = GENMASK(25, 21);
export const IDR1_EVTQS = GENMASK(20, 16);
export const IDR1_PRIQS = GENMASK(15, 11);
export const IDR1_SSIDSIZE = GENMASK(10, 6);
export const IDR1_SIDSIZE = GENMASK(5, 0);

export const ARM_SMMU_IDR3 = 0xc;
export const IDR3_RIL = BIT(10);
export const IDR3_BBM = GENMASK(12, 11);

export const ARM_SMMU_IDR5 = 0x14;
export const IDR5_STALL_MAX = GENMASK(31, 16);
export const IDR5_GRAN64K = BIT(6);
export const IDR5_GRAN16K = BIT(5);
export const IDR5_GRAN4K = BIT(4);
export const IDR5_OAS = GENMASK(2, 0);
export const IDR5_VAX = GENMASK(11, 10);
export const IDR5_VAX_52_BIT = 1;
/** IDR5.OAS encodings → bits. */
export const IDR5_OAS_BITS: readonly number[] = [32, 36, 40, 42, 44, 48, 52];

export const ARM_SMMU_IIDR = 0x18;
/** The kernel's ARM_SMMU_AIDR */
export const ARM_SMMU_AIDR = 0x1c;
export const IIDR_PRODUCTID = GENMASK(31, 20);
export const IIDR_VARIANT = GENMASK(19, 16);
export const IIDR_REVISION = GENMASK(15, 12);
export const IIDR_IMPLEMENTER = GENMASK(11, 0);
export const IIDR_IMPLEMENTER_ARM = 0x43b;
export const IIDR_PRODUCTID_ARM_MMU_600 = 0x483;
export const IIDR_PRODUCTID_ARM_MMU_700 = 0x487;

export const ARM_SMMU_CR0 = 0x20;
export const CR0_ATSCHK = BIT(4);
export const CR0_CMDQEN = BIT(3);
export const CR0_EVTQEN = BIT(2);
export const CR0_PRIQEN = BIT(1);
export const CR0_SMMUEN = BIT(0);

export const ARM_SMMU_CR0ACK = 0x24;

export const ARM_SMMU_CR1 = 0x28;
export const CR1_TABLE_SH = GENMASK(11, 10);
export const CR1_TABLE_OC = GENMASK(9, 8);
export const CR1_TABLE_IC = GENMASK(7, 6);
export const CR1_QUEUE_SH = GENMASK(5, 4);
export const CR1_QUEUE_OC = GENMASK(3, 2);
export const CR1_QUEUE_IC = GENMASK(1, 0);
export const CR1_CACHE_NC = 0;
export const CR1_CACHE_WB = 1;
export const CR1_CACHE_WT = 2;

export const ARM_SMMU_CR2 = 0x2c;
export const CR2_PTM = BIT(2);
export const CR2_RECINVSID = BIT(1);
export const CR2_E2H = BIT(0);

export const ARM_SMMU_GBPA = 0x44;
export const GBPA_UPDATE = BIT(31);
export const GBPA_ABORT = BIT(20);

export const ARM_SMMU_IRQ_CTRL = 0x50;
export const IRQ_CTRL_EVTQ_IRQEN = BIT(2);
export const IRQ_CTRL_PRIQ_IRQEN = BIT(1);
export const IRQ_CTRL_GERROR_IRQEN = BIT(0);

export const ARM_SMMU_IRQ_CTRLACK = 0x54;

export const ARM_SMMU_GERROR = 0x60;
export const GERROR_SFM_ERR = BIT(8);
export const GERROR_MSI_GERROR_ABT_ERR = BIT(7);
export const GERROR_MSI_PRIQ_ABT_ERR = BIT(6);
export const GERROR_MSI_EVTQ_ABT_ERR = BIT(5);
export const GERROR_MSI_CMDQ_ABT_ERR = BIT(4);
export const GERROR_PRIQ_ABT_ERR = BIT(3);
export const GERROR_EVTQ_ABT_ERR = BIT(2);
export const GERROR_CMDQ_ERR = BIT(0);
export const GERROR_ERR_MASK = 0x1fd;

export const ARM_SMMU_GERRORN = 0x64;

export const ARM_SMMU_GERROR_IRQ_CFG0 = 0x68;
export const ARM_SMMU_GERROR_IRQ_CFG1 = 0x70;
export const ARM_SMMU_GERROR_IRQ_CFG2 = 0x74;

export const ARM_SMMU_STRTAB_BASE = 0x80;
/** STRTAB_BASE.RA is bit 62: bit 30 of the high word. */
export const STRTAB_BASE_RA_HI = BIT(30);
export const STRTAB_BASE_ADDR_ALIGN = 64;

export const ARM_SMMU_STRTAB_BASE_CFG = 0x88;
export const STRTAB_BASE_CFG_FMT = GENMASK(17, 16);
export const STRTAB_BASE_CFG_FMT_LINEAR = 0;
export const STRTAB_BASE_CFG_FMT_2LVL = 1;
export const STRTAB_BASE_CFG_SPLIT = GENMASK(10, 6);
export const STRTAB_BASE_CFG_LOG2SIZE = GENMASK(5, 0);

export const ARM_SMMU_CMDQ_BASE = 0x90;
export const ARM_SMMU_CMDQ_PROD = 0x98;
export const ARM_SMMU_CMDQ_CONS = 0x9c;

export const ARM_SMMU_EVTQ_BASE = 0xa0;
/** EVTQ/PRIQ PROD and CONS are accessed through page 1 (ARM_SMMU_PAGE1 + offset). */
export const ARM_SMMU_EVTQ_PROD = 0xa8;
export const ARM_SMMU_EVTQ_CONS = 0xac;
export const ARM_SMMU_EVTQ_IRQ_CFG0 = 0xb0;
export const ARM_SMMU_EVTQ_IRQ_CFG1 = 0xb8;
export const ARM_SMMU_EVTQ_IRQ_CFG2 = 0xbc;

export const ARM_SMMU_PRIQ_BASE = 0xc0;
export const ARM_SMMU_PRIQ_PROD = 0xc8;
export const ARM_SMMU_PRIQ_CONS = 0xcc;
export const ARM_SMMU_PRIQ_IRQ_CFG0 = 0xd0;
export const ARM_SMMU_PRIQ_IRQ_CFG1 = 0xd8;
export const ARM_SMMU_PRIQ_IRQ_CFG2 = 0xdc;

/** Bytes of each register page the driver maps (kernel: ARM_SMMU_REG_SZ). */
export const ARM_SMMU_REG_SZ = 0xe00;
export const ARM_SMMU_PAGE1_OFFSET = 0x1_0000;
export const SZ_64K = 0x1_0000;
export const SZ_128K = 0x2_0000;

/** *_IRQ_CFG0.ADDR is bits [51:2]. */
export const MSI_CFG0_ADDR_ALIGN = 4;
/** *_IRQ_CFG2.MemAttr: Device-nGnRE. */
export const ARM_SMMU_MEMATTR_DEVICE_nGnRE = 0x1;
export const ARM_SMMU_MEMATTR_OIWB = 0xf;

// Common memory attribute values.
export const ARM_SMMU_SH_NSH = 0;
export const ARM_SMMU_SH_OSH = 2;
export const ARM_SMMU_SH_ISH = 3;

// ---- Queues -----------------------------------------------------------------------------------

/** *Q_BASE.RA/WA is bit 62: bit 30 of the high word. */
export const Q_BASE_RWA_HI = BIT(30);
export const Q_BASE_ADDR_ALIGN = 32;
export const Q_BASE_LOG2SIZE = GENMASK(4, 0);
/** EVTQ/PRIQ PROD.OVFLG, CONS.OVACKFLG; also the software "owned" flag of a shadow CMDQ prod. */
export const Q_OVERFLOW_FLAG = 0x8000_0000;
export const CMDQ_PROD_OWNED_FLAG = Q_OVERFLOW_FLAG;

export const PAGE_SHIFT = 12;
/** The kernel's MAX_PAGE_ORDER: the page allocator's largest order (2^9 pages here). */
export const MAX_PAGE_ORDER = MAX_ORDER;
/**
 * The kernel's CONFIG_CMA_ALIGNMENT, its Kconfig default (8): a DMA allocation is naturally aligned only
 * up to 2^8 pages when the contiguous allocator serves it (arm64 kernels build with DMA_CMA).
 */
export const CONFIG_CMA_ALIGNMENT = 8;

/**
 * The kernel's Q_MAX_SZ_SHIFT: a queue must be one naturally aligned DMA allocation: with CONFIG_CMA_ALIGNMENT
 * (`cmaAlignment` not null) PAGE_SHIFT + CONFIG_CMA_ALIGNMENT, otherwise the largest buddy order
 * (v6.1 spells it PAGE_SHIFT + MAX_ORDER - 1, v6.8+ PAGE_SHIFT + MAX_PAGE_ORDER: the same size).
 */
export function qMaxSzShift(cmaAlignment: number | null): number {
  return PAGE_SHIFT + (cmaAlignment ?? MAX_PAGE_ORDER);
}

/** Q_MAX_SZ_SHIFT of the default configuration: 20 (1 MiB queues). */
export const Q_MAX_SZ_SHIFT = qMaxSzShift(CONFIG_CMA_ALIGNMENT);

export const CMDQ_ENT_SZ_SHIFT = 4;
export const CMDQ_ENT_DWORDS = (1 << CMDQ_ENT_SZ_SHIFT) >> 3;
export const CMDQ_ENT_WORDS = CMDQ_ENT_DWORDS * 2;
export const CMDQ_MAX_SZ_SHIFT = Q_MAX_SZ_SHIFT - CMDQ_ENT_SZ_SHIFT;
export const CMDQ_CONS_ERR = GENMASK(30, 24);
export const CMDQ_ERR_CERROR_NONE_IDX = 0;
export const CMDQ_ERR_CERROR_ILL_IDX = 1;
export const CMDQ_ERR_CERROR_ABT_IDX = 2;
export const CMDQ_ERR_CERROR_ATC_INV_IDX = 3;

export const EVTQ_ENT_SZ_SHIFT = 5;
export const EVTQ_ENT_DWORDS = (1 << EVTQ_ENT_SZ_SHIFT) >> 3;
export const EVTQ_ENT_WORDS = EVTQ_ENT_DWORDS * 2;
export const EVTQ_MAX_SZ_SHIFT = Q_MAX_SZ_SHIFT - EVTQ_ENT_SZ_SHIFT;

export const PRIQ_ENT_SZ_SHIFT = 4;
export const PRIQ_ENT_DWORDS = (1 << PRIQ_ENT_SZ_SHIFT) >> 3;
export const PRIQ_ENT_WORDS = PRIQ_ENT_DWORDS * 2;
export const PRIQ_MAX_SZ_SHIFT = Q_MAX_SZ_SHIFT - PRIQ_ENT_SZ_SHIFT;

/** Commands per batch (kernel: CMDQ_BATCH_ENTRIES = BITS_PER_LONG). */
export const CMDQ_BATCH_ENTRIES = 64;

/** The kernel's ARM_SMMU_POLL_TIMEOUT_US — 1 s. */
export const ARM_SMMU_POLL_TIMEOUT_US = 1_000_000;

/** The kernel's MSI_IOVA_BASE / MSI_IOVA_LENGTH — the software MSI window every master gets. */
export const MSI_IOVA_BASE = 0x800_0000;
export const MSI_IOVA_LENGTH = 0x10_0000;

// ---- Stream table -----------------------------------------------------------------------------

/** The kernel's STRTAB_L1_SZ_SHIFT — the L1 table is at most 1 MiB. */
export const STRTAB_L1_SZ_SHIFT = 20;
/** The kernel's STRTAB_SPLIT — each L2 table covers 256 StreamIDs (one PCI bus). */
export const STRTAB_SPLIT = 8;
export const STRTAB_L1_DESC_DWORDS = 1;
export const STRTAB_L1_DESC_SPAN = q('STRTAB_L1_DESC_SPAN', 0, 4, 0);
export const STRTAB_L1_DESC_L2PTR_MASK = new QAddr('STRTAB_L1_DESC_L2PTR', 0, 51, 6);

export const STRTAB_STE_DWORDS = 8;
export const STRTAB_STE_WORDS = 16;
export const STRTAB_STE_BYTES = 64;

export const STRTAB_STE_0_V = qb('STRTAB_STE_0_V', 0, 0);
export const STRTAB_STE_0_CFG = q('STRTAB_STE_0_CFG', 0, 3, 1);
export const STRTAB_STE_0_CFG_ABORT = 0;
export const STRTAB_STE_0_CFG_BYPASS = 4;
export const STRTAB_STE_0_CFG_S1_TRANS = 5;
export const STRTAB_STE_0_CFG_S2_TRANS = 6;
export const STRTAB_STE_0_CFG_NESTED = 7;
export const STRTAB_STE_0_S1FMT = q('STRTAB_STE_0_S1FMT', 0, 5, 4);
export const STRTAB_STE_0_S1FMT_LINEAR = 0;
export const STRTAB_STE_0_S1FMT_64K_L2 = 2;
export const STRTAB_STE_0_S1CTXPTR_MASK = new QAddr('STRTAB_STE_0_S1CTXPTR', 0, 51, 6);
export const STRTAB_STE_0_S1CDMAX = q('STRTAB_STE_0_S1CDMAX', 0, 63, 59);

export const STRTAB_STE_1_S1DSS = q('STRTAB_STE_1_S1DSS', 1, 1, 0);
export const STRTAB_STE_1_S1DSS_TERMINATE = 0;
export const STRTAB_STE_1_S1DSS_BYPASS = 1;
export const STRTAB_STE_1_S1DSS_SSID0 = 2;
export const STRTAB_STE_1_S1C_CACHE_NC = 0;
export const STRTAB_STE_1_S1C_CACHE_WBRA = 1;
export const STRTAB_STE_1_S1C_CACHE_WT = 2;
export const STRTAB_STE_1_S1C_CACHE_WB = 3;
export const STRTAB_STE_1_S1CIR = q('STRTAB_STE_1_S1CIR', 1, 3, 2);
export const STRTAB_STE_1_S1COR = q('STRTAB_STE_1_S1COR', 1, 5, 4);
export const STRTAB_STE_1_S1CSH = q('STRTAB_STE_1_S1CSH', 1, 7, 6);
export const STRTAB_STE_1_MEV = qb('STRTAB_STE_1_MEV', 1, 19);
export const STRTAB_STE_1_S2FWB = qb('STRTAB_STE_1_S2FWB', 1, 25);
export const STRTAB_STE_1_S1STALLD = qb('STRTAB_STE_1_S1STALLD', 1, 27);
export const STRTAB_STE_1_EATS = q('STRTAB_STE_1_EATS', 1, 29, 28);
export const STRTAB_STE_1_EATS_ABT = 0;
export const STRTAB_STE_1_EATS_TRANS = 1;
export const STRTAB_STE_1_EATS_S1CHK = 2;
export const STRTAB_STE_1_STRW = q('STRTAB_STE_1_STRW', 1, 31, 30);
export const STRTAB_STE_1_STRW_NSEL1 = 0;
export const STRTAB_STE_1_STRW_EL2 = 2;
export const STRTAB_STE_1_SHCFG = q('STRTAB_STE_1_SHCFG', 1, 45, 44);
export const STRTAB_STE_1_SHCFG_INCOMING = 1;

export const STRTAB_STE_2_S2VMID = q('STRTAB_STE_2_S2VMID', 2, 15, 0);
/** The VTCR fields as one block (kernel: STRTAB_STE_2_VTCR, bits [50:32]). */
export const STRTAB_STE_2_VTCR = q('STRTAB_STE_2_VTCR', 2, 50, 32);
// VTCR layout within STRTAB_STE_2_VTCR (kernel: STRTAB_STE_2_VTCR_S2*), relative to bit 32.
export const STRTAB_STE_2_VTCR_S2T0SZ = GENMASK(5, 0);
export const STRTAB_STE_2_VTCR_S2SL0 = GENMASK(7, 6);
export const STRTAB_STE_2_VTCR_S2IR0 = GENMASK(9, 8);
export const STRTAB_STE_2_VTCR_S2OR0 = GENMASK(11, 10);
export const STRTAB_STE_2_VTCR_S2SH0 = GENMASK(13, 12);
export const STRTAB_STE_2_VTCR_S2TG = GENMASK(15, 14);
export const STRTAB_STE_2_VTCR_S2PS = GENMASK(18, 16);
export const STRTAB_STE_2_S2AA64 = qb('STRTAB_STE_2_S2AA64', 2, 51);
export const STRTAB_STE_2_S2ENDI = qb('STRTAB_STE_2_S2ENDI', 2, 52);
export const STRTAB_STE_2_S2PTW = qb('STRTAB_STE_2_S2PTW', 2, 54);
export const STRTAB_STE_2_S2S = qb('STRTAB_STE_2_S2S', 2, 57);
export const STRTAB_STE_2_S2R = qb('STRTAB_STE_2_S2R', 2, 58);

export const STRTAB_STE_3_S2TTB_MASK = new QAddr('STRTAB_STE_3_S2TTB', 3, 51, 4);

// ---- Context descriptors ----------------------------------------------------------------------

/** The kernel's CTXDESC_L2_ENTRIES — CDs per 64 KiB leaf table. */
export const CTXDESC_L2_ENTRIES = 1024;
export const CTXDESC_L1_DESC_DWORDS = 1;
export const CTXDESC_L1_DESC_V = qb('CTXDESC_L1_DESC_V', 0, 0);
export const CTXDESC_L1_DESC_L2PTR_MASK = new QAddr('CTXDESC_L1_DESC_L2PTR', 0, 51, 12);

export const CTXDESC_CD_DWORDS = 8;
export const CTXDESC_CD_WORDS = 16;
export const CTXDESC_CD_BYTES = 64;
/** The kernel's CTXDESC_LINEAR_CDMAX — a linear CD table is at most 64 KiB. */
export const CTXDESC_LINEAR_CDMAX = 10;

export const CTXDESC_CD_0_TCR_T0SZ = q('CTXDESC_CD_0_TCR_T0SZ', 0, 5, 0);
export const CTXDESC_CD_0_TCR_TG0 = q('CTXDESC_CD_0_TCR_TG0', 0, 7, 6);
export const CTXDESC_CD_0_TCR_IRGN0 = q('CTXDESC_CD_0_TCR_IRGN0', 0, 9, 8);
export const CTXDESC_CD_0_TCR_ORGN0 = q('CTXDESC_CD_0_TCR_ORGN0', 0, 11, 10);
export const CTXDESC_CD_0_TCR_SH0 = q('CTXDESC_CD_0_TCR_SH0', 0, 13, 12);
export const CTXDESC_CD_0_TCR_EPD0 = qb('CTXDESC_CD_0_TCR_EPD0', 0, 14);
export const CTXDESC_CD_0_ENDI = qb('CTXDESC_CD_0_ENDI', 0, 15);
export const CTXDESC_CD_0_TCR_EPD1 = qb('CTXDESC_CD_0_TCR_EPD1', 0, 30);
export const CTXDESC_CD_0_V = qb('CTXDESC_CD_0_V', 0, 31);
export const CTXDESC_CD_0_TCR_IPS = q('CTXDESC_CD_0_TCR_IPS', 0, 34, 32);
export const CTXDESC_CD_0_TCR_TBI0 = qb('CTXDESC_CD_0_TCR_TBI0', 0, 38);
export const CTXDESC_CD_0_AA64 = qb('CTXDESC_CD_0_AA64', 0, 41);
export const CTXDESC_CD_0_TCR_HD = qb('CTXDESC_CD_0_TCR_HD', 0, 42);
export const CTXDESC_CD_0_TCR_HA = qb('CTXDESC_CD_0_TCR_HA', 0, 43);
export const CTXDESC_CD_0_S = qb('CTXDESC_CD_0_S', 0, 44);
export const CTXDESC_CD_0_R = qb('CTXDESC_CD_0_R', 0, 45);
export const CTXDESC_CD_0_A = qb('CTXDESC_CD_0_A', 0, 46);
export const CTXDESC_CD_0_ASET = qb('CTXDESC_CD_0_ASET', 0, 47);
export const CTXDESC_CD_0_ASID = q('CTXDESC_CD_0_ASID', 0, 63, 48);
export const CTXDESC_CD_1_TTB0_MASK = new QAddr('CTXDESC_CD_1_TTB0', 1, 51, 4);
/** MAIR: all of qword 3, as two 32-bit halves (MAIR0 low, MAIR1 high). */
export const CTXDESC_CD_3_MAIR_LO = q('CTXDESC_CD_3_MAIR[31:0]', 3, 31, 0);
export const CTXDESC_CD_3_MAIR_HI = q('CTXDESC_CD_3_MAIR[63:32]', 3, 63, 32);

// ---- Commands ---------------------------------------------------------------------------------

export const CMDQ_0_OP = q('CMDQ_0_OP', 0, 7, 0);
export const CMDQ_0_SSV = qb('CMDQ_0_SSV', 0, 11);

export const CMDQ_PREFETCH_0_SID = q('CMDQ_PREFETCH_0_SID', 0, 63, 32);
export const CMDQ_PREFETCH_1_SIZE = q('CMDQ_PREFETCH_1_SIZE', 1, 4, 0);

export const CMDQ_CFGI_0_SSID = q('CMDQ_CFGI_0_SSID', 0, 31, 12);
export const CMDQ_CFGI_0_SID = q('CMDQ_CFGI_0_SID', 0, 63, 32);
export const CMDQ_CFGI_1_LEAF = qb('CMDQ_CFGI_1_LEAF', 1, 0);
export const CMDQ_CFGI_1_RANGE = q('CMDQ_CFGI_1_RANGE', 1, 4, 0);

export const CMDQ_TLBI_0_NUM = q('CMDQ_TLBI_0_NUM', 0, 16, 12);
export const CMDQ_TLBI_RANGE_NUM_MAX = 31;
export const CMDQ_TLBI_0_SCALE = q('CMDQ_TLBI_0_SCALE', 0, 24, 20);
export const CMDQ_TLBI_0_VMID = q('CMDQ_TLBI_0_VMID', 0, 47, 32);
export const CMDQ_TLBI_0_ASID = q('CMDQ_TLBI_0_ASID', 0, 63, 48);
export const CMDQ_TLBI_1_LEAF = qb('CMDQ_TLBI_1_LEAF', 1, 0);
export const CMDQ_TLBI_1_TTL = q('CMDQ_TLBI_1_TTL', 1, 9, 8);
export const CMDQ_TLBI_1_TG = q('CMDQ_TLBI_1_TG', 1, 11, 10);
export const CMDQ_TLBI_1_VA_MASK = new QAddr('CMDQ_TLBI_1_VA', 1, 63, 12);
export const CMDQ_TLBI_1_IPA_MASK = new QAddr('CMDQ_TLBI_1_IPA', 1, 51, 12);

export const CMDQ_ATC_0_SSID = q('CMDQ_ATC_0_SSID', 0, 31, 12);
export const CMDQ_ATC_0_SID = q('CMDQ_ATC_0_SID', 0, 63, 32);
export const CMDQ_ATC_0_GLOBAL = qb('CMDQ_ATC_0_GLOBAL', 0, 9);
export const CMDQ_ATC_1_SIZE = q('CMDQ_ATC_1_SIZE', 1, 5, 0);
export const CMDQ_ATC_1_ADDR_MASK = new QAddr('CMDQ_ATC_1_ADDR', 1, 63, 12);
/** The kernel's ATC_INV_SIZE_ALL — the whole ATC. */
export const ATC_INV_SIZE_ALL = 52;

export const CMDQ_PRI_0_SSID = q('CMDQ_PRI_0_SSID', 0, 31, 12);
export const CMDQ_PRI_0_SID = q('CMDQ_PRI_0_SID', 0, 63, 32);
export const CMDQ_PRI_1_GRPID = q('CMDQ_PRI_1_GRPID', 1, 8, 0);
export const CMDQ_PRI_1_RESP = q('CMDQ_PRI_1_RESP', 1, 13, 12);
export const PRI_RESP_DENY = 0;
export const PRI_RESP_FAIL = 1;
export const PRI_RESP_SUCC = 2;

export const CMDQ_RESUME_0_RESP = q('CMDQ_RESUME_0_RESP', 0, 13, 12);
export const CMDQ_RESUME_0_RESP_TERM = 0;
export const CMDQ_RESUME_0_RESP_RETRY = 1;
export const CMDQ_RESUME_0_RESP_ABORT = 2;
export const CMDQ_RESUME_0_SID = q('CMDQ_RESUME_0_SID', 0, 63, 32);
export const CMDQ_RESUME_1_STAG = q('CMDQ_RESUME_1_STAG', 1, 15, 0);

/** CMD_STALL_TERM (not in Linux: the architecture's command to terminate every stall of a StreamID). */
export const CMDQ_STALL_TERM_0_SID = q('CMDQ_STALL_TERM_0_SID', 0, 63, 32);

export const CMDQ_SYNC_0_CS = q('CMDQ_SYNC_0_CS', 0, 13, 12);
export const CMDQ_SYNC_0_CS_NONE = 0;
export const CMDQ_SYNC_0_CS_IRQ = 1;
export const CMDQ_SYNC_0_CS_SEV = 2;
export const CMDQ_SYNC_0_MSH = q('CMDQ_SYNC_0_MSH', 0, 23, 22);
export const CMDQ_SYNC_0_MSIATTR = q('CMDQ_SYNC_0_MSIATTR', 0, 27, 24);
export const CMDQ_SYNC_0_MSIDATA = q('CMDQ_SYNC_0_MSIDATA', 0, 63, 32);
export const CMDQ_SYNC_1_MSIADDR_MASK = new QAddr('CMDQ_SYNC_1_MSIADDR', 1, 51, 2);

// Command opcodes (kernel: CMDQ_OP_*).
export const CMDQ_OP_PREFETCH_CFG = 0x1;
export const CMDQ_OP_CFGI_STE = 0x3;
export const CMDQ_OP_CFGI_ALL = 0x4;
export const CMDQ_OP_CFGI_CD = 0x5;
export const CMDQ_OP_CFGI_CD_ALL = 0x6;
export const CMDQ_OP_TLBI_NH_ALL = 0x10;
export const CMDQ_OP_TLBI_NH_ASID = 0x11;
export const CMDQ_OP_TLBI_NH_VA = 0x12;
export const CMDQ_OP_TLBI_NH_VAA = 0x13;
export const CMDQ_OP_TLBI_EL2_ALL = 0x20;
export const CMDQ_OP_TLBI_EL2_ASID = 0x21;
export const CMDQ_OP_TLBI_EL2_VA = 0x22;
export const CMDQ_OP_TLBI_S12_VMALL = 0x28;
export const CMDQ_OP_TLBI_S2_IPA = 0x2a;
export const CMDQ_OP_TLBI_NSNH_ALL = 0x30;
export const CMDQ_OP_ATC_INV = 0x40;
export const CMDQ_OP_PRI_RESP = 0x41;
export const CMDQ_OP_RESUME = 0x44;
/** Not in Linux, which never terminates stalls wholesale: the spec's CMD_STALL_TERM. */
export const CMDQ_OP_STALL_TERM = 0x45;
export const CMDQ_OP_CMD_SYNC = 0x46;

/** Opcode names for logs and reports. */
export const CMDQ_OP_NAMES: ReadonlyMap<number, string> = new Map([
  [CMDQ_OP_PREFETCH_CFG, 'PREFETCH_CFG'], [CMDQ_OP_CFGI_STE, 'CFGI_STE'], [CMDQ_OP_CFGI_ALL, 'CFGI_ALL'],
  [CMDQ_OP_CFGI_CD, 'CFGI_CD'], [CMDQ_OP_CFGI_CD_ALL, 'CFGI_CD_ALL'], [CMDQ_OP_TLBI_NH_ALL, 'TLBI_NH_ALL'],
  [CMDQ_OP_TLBI_NH_ASID, 'TLBI_NH_ASID'], [CMDQ_OP_TLBI_NH_VA, 'TLBI_NH_VA'], [CMDQ_OP_TLBI_NH_VAA, 'TLBI_NH_VAA'], [CMDQ_OP_TLBI_EL2_ALL, 'TLBI_EL2_ALL'],
  [CMDQ_OP_TLBI_EL2_ASID, 'TLBI_EL2_ASID'], [CMDQ_OP_TLBI_EL2_VA, 'TLBI_EL2_VA'], [CMDQ_OP_TLBI_S12_VMALL, 'TLBI_S12_VMALL'],
  [CMDQ_OP_TLBI_S2_IPA, 'TLBI_S2_IPA'], [CMDQ_OP_TLBI_NSNH_ALL, 'TLBI_NSNH_ALL'], [CMDQ_OP_ATC_INV, 'ATC_INV'],
  [CMDQ_OP_PRI_RESP, 'PRI_RESP'], [CMDQ_OP_RESUME, 'RESUME'], [CMDQ_OP_STALL_TERM, 'STALL_TERM'], [CMDQ_OP_CMD_SYNC, 'CMD_SYNC'],
]);

// ---- Event queue records ----------------------------------------------------------------------

export const EVTQ_0_ID = q('EVTQ_0_ID', 0, 7, 0);
export const EVTQ_0_SSV = qb('EVTQ_0_SSV', 0, 11);
export const EVTQ_0_SSID = q('EVTQ_0_SSID', 0, 31, 12);
export const EVTQ_0_SID = q('EVTQ_0_SID', 0, 63, 32);
export const EVTQ_1_STAG = q('EVTQ_1_STAG', 1, 15, 0);
export const EVTQ_1_STALL = qb('EVTQ_1_STALL', 1, 31);
export const EVTQ_1_PnU = qb('EVTQ_1_PnU', 1, 33);
export const EVTQ_1_InD = qb('EVTQ_1_InD', 1, 34);
export const EVTQ_1_RnW = qb('EVTQ_1_RnW', 1, 35);
export const EVTQ_1_S2 = qb('EVTQ_1_S2', 1, 39);
export const EVTQ_1_CLASS = q('EVTQ_1_CLASS', 1, 41, 40);
export const EVTQ_1_TT_READ = qb('EVTQ_1_TT_READ', 1, 44);
/** Input address: all of qword 2. */
export const EVTQ_2_ADDR_LO = q('EVTQ_2_ADDR[31:0]', 2, 31, 0);
export const EVTQ_2_ADDR_HI = q('EVTQ_2_ADDR[63:32]', 2, 63, 32);
export const EVTQ_3_IPA = new QAddr('EVTQ_3_IPA', 3, 51, 12);
export const EVTQ_3_FETCH_ADDR = new QAddr('EVTQ_3_FETCH_ADDR', 3, 51, 3);

// Event IDs (kernel: EVT_ID_*).
export const EVT_ID_UUT = 0x01;
export const EVT_ID_BAD_STREAMID_CONFIG = 0x02;
export const EVT_ID_STE_FETCH_FAULT = 0x03;
export const EVT_ID_BAD_STE_CONFIG = 0x04;
export const EVT_ID_STREAM_DISABLED_FAULT = 0x06;
export const EVT_ID_BAD_ATS_TREQ = 0x05;
export const EVT_ID_TRANSL_FORBIDDEN = 0x07;
export const EVT_ID_BAD_SUBSTREAMID_CONFIG = 0x08;
export const EVT_ID_CD_FETCH_FAULT = 0x09;
export const EVT_ID_BAD_CD_CONFIG = 0x0a;
export const EVT_ID_TT_FETCH_FAULT = 0x0b;
export const EVT_ID_TRANSLATION_FAULT = 0x10;
export const EVT_ID_ADDR_SIZE_FAULT = 0x11;
export const EVT_ID_ACCESS_FAULT = 0x12;
export const EVT_ID_PERMISSION_FAULT = 0x13;
export const EVT_ID_TLB_CONFLICT = 0x20;
export const EVT_ID_CFG_CONFLICT = 0x21;
export const EVT_ID_PAGE_REQUEST = 0x24;
export const EVT_ID_VMS_FETCH = 0x25;

/** Architected names of the event IDs, as the specification spells them. */
export const EVT_NAMES: ReadonlyMap<number, string> = new Map([
  [EVT_ID_UUT, 'F_UUT'], [EVT_ID_BAD_STREAMID_CONFIG, 'C_BAD_STREAMID'], [EVT_ID_STE_FETCH_FAULT, 'F_STE_FETCH'],
  [EVT_ID_BAD_STE_CONFIG, 'C_BAD_STE'], [EVT_ID_BAD_ATS_TREQ, 'F_BAD_ATS_TREQ'], [EVT_ID_STREAM_DISABLED_FAULT, 'F_STREAM_DISABLED'],
  [EVT_ID_TRANSL_FORBIDDEN, 'F_TRANSL_FORBIDDEN'], [EVT_ID_BAD_SUBSTREAMID_CONFIG, 'C_BAD_SUBSTREAMID'],
  [EVT_ID_CD_FETCH_FAULT, 'F_CD_FETCH'], [EVT_ID_BAD_CD_CONFIG, 'C_BAD_CD'], [EVT_ID_TT_FETCH_FAULT, 'F_WALK_EABT'],
  [EVT_ID_TRANSLATION_FAULT, 'F_TRANSLATION'], [EVT_ID_ADDR_SIZE_FAULT, 'F_ADDR_SIZE'], [EVT_ID_ACCESS_FAULT, 'F_ACCESS'],
  [EVT_ID_PERMISSION_FAULT, 'F_PERMISSION'], [EVT_ID_TLB_CONFLICT, 'F_TLB_CONFLICT'], [EVT_ID_CFG_CONFLICT, 'F_CFG_CONFLICT'],
  [EVT_ID_PAGE_REQUEST, 'E_PAGE_REQUEST'], [EVT_ID_VMS_FETCH, 'F_VMS_FETCH'],
]);

// ---- PRI queue records ------------------------------------------------------------------------

export const PRIQ_0_SID = q('PRIQ_0_SID', 0, 31, 0);
export const PRIQ_0_SSID = q('PRIQ_0_SSID', 0, 51, 32);
export const PRIQ_0_PERM_PRIV = qb('PRIQ_0_PERM_PRIV', 0, 58);
export const PRIQ_0_PERM_EXEC = qb('PRIQ_0_PERM_EXEC', 0, 59);
export const PRIQ_0_PERM_READ = qb('PRIQ_0_PERM_READ', 0, 60);
export const PRIQ_0_PERM_WRITE = qb('PRIQ_0_PERM_WRITE', 0, 61);
export const PRIQ_0_PRG_LAST = qb('PRIQ_0_PRG_LAST', 0, 62);
export const PRIQ_0_SSID_V = qb('PRIQ_0_SSID_V', 0, 63);
export const PRIQ_1_PRG_IDX = q('PRIQ_1_PRG_IDX', 1, 8, 0);
export const PRIQ_1_ADDR_MASK = new QAddr('PRIQ_1_ADDR', 1, 63, 12);

// ---- Driver options (kernel: ARM_SMMU_OPT_*) and features (ARM_SMMU_FEAT_*) -------------------

export const ARM_SMMU_OPT_SKIP_PREFETCH = BIT(0);
export const ARM_SMMU_OPT_PAGE0_REGS_ONLY = BIT(1);
export const ARM_SMMU_OPT_MSIPOLL = BIT(2);
export const ARM_SMMU_OPT_CMDQ_FORCE_SYNC = BIT(3);
export const ARM_SMMU_OPT_TEGRA241_CMDQV = BIT(4);

export const ARM_SMMU_FEAT_2_LVL_STRTAB = BIT(0);
export const ARM_SMMU_FEAT_2_LVL_CDTAB = BIT(1);
export const ARM_SMMU_FEAT_TT_LE = BIT(2);
export const ARM_SMMU_FEAT_TT_BE = BIT(3);
export const ARM_SMMU_FEAT_PRI = BIT(4);
export const ARM_SMMU_FEAT_ATS = BIT(5);
export const ARM_SMMU_FEAT_SEV = BIT(6);
export const ARM_SMMU_FEAT_MSI = BIT(7);
export const ARM_SMMU_FEAT_COHERENCY = BIT(8);
export const ARM_SMMU_FEAT_TRANS_S1 = BIT(9);
export const ARM_SMMU_FEAT_TRANS_S2 = BIT(10);
export const ARM_SMMU_FEAT_STALLS = BIT(11);
export const ARM_SMMU_FEAT_HYP = BIT(12);
export const ARM_SMMU_FEAT_STALL_FORCE = BIT(13);
export const ARM_SMMU_FEAT_VAX = BIT(14);
export const ARM_SMMU_FEAT_RANGE_INV = BIT(15);
export const ARM_SMMU_FEAT_BTM = BIT(16);
export const ARM_SMMU_FEAT_SVA = BIT(17);
export const ARM_SMMU_FEAT_E2H = BIT(18);
export const ARM_SMMU_FEAT_NESTING = BIT(19);
export const ARM_SMMU_FEAT_ATTR_TYPES_OVR = BIT(20);
export const ARM_SMMU_FEAT_HA = BIT(21);
export const ARM_SMMU_FEAT_HD = BIT(22);
export const ARM_SMMU_FEAT_BBML2 = BIT(24);

/** Feature names for the probe log line. */
export const ARM_SMMU_FEAT_NAMES: readonly [number, string][] = [
  [ARM_SMMU_FEAT_2_LVL_STRTAB, '2lvl-strtab'], [ARM_SMMU_FEAT_2_LVL_CDTAB, '2lvl-cdtab'], [ARM_SMMU_FEAT_PRI, 'pri'],
  [ARM_SMMU_FEAT_ATS, 'ats'], [ARM_SMMU_FEAT_SEV, 'sev'], [ARM_SMMU_FEAT_MSI, 'msi'], [ARM_SMMU_FEAT_COHERENCY, 'coherent'],
  [ARM_SMMU_FEAT_TRANS_S1, 's1'], [ARM_SMMU_FEAT_TRANS_S2, 's2'], [ARM_SMMU_FEAT_STALLS, 'stalls'],
  [ARM_SMMU_FEAT_STALL_FORCE, 'stall-force'], [ARM_SMMU_FEAT_HYP, 'hyp'], [ARM_SMMU_FEAT_RANGE_INV, 'range-inv'],
  [ARM_SMMU_FEAT_NESTING, 'nesting'], [ARM_SMMU_FEAT_ATTR_TYPES_OVR, 'attr-types-ovr'], [ARM_SMMU_FEAT_BBML2, 'bbml2'],
];
