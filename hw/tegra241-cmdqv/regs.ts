/**
 * NVIDIA Tegra241 (Grace) CMDQ-Virtualization register map, named as NVIDIA's register manual and
 * QEMU's model name them (the model side's own definitions; the driver keeps the kernel's).
 *
 * Supports: the 64 KiB pages of the aperture (config page, direct VCMDQ page0/page1, per-VINTF
 * logical page0/page1), the global, per-VINTF and per-VCMDQ registers and their fields.
 * Does not support: GLB_FILT_CFG/DATA field meanings (the registers are storage only).
 */
import { bit, field } from '../bitfield.js';

export const CMDQV_PAGE_SIZE = 0x1_0000;

// ---- Apertures ---------------------------------------------------------------------------------
export const CMDQV_CONFIG_PAGE = 0x0_0000;
export const VCMDQ_PAGE0_BASE = 0x1_0000;
export const VCMDQ_PAGE1_BASE = 0x2_0000;
/** VINTF i's logical page0 at 0x30000 + 0x20000·i, its page1 one page above. */
export const VINTF_PAGE0_BASE = 0x3_0000;
export const VINTF_PAGE_STRIDE = 0x2_0000;
/** Per-VCMDQ register block stride inside page0/page1 (direct and logical). */
export const VCMDQ_STRIDE = 0x80;

/** Size of the aperture for `vintfs` VINTFs. */
export function cmdqvRegionSize(vintfs: number): number {
  return VINTF_PAGE0_BASE + VINTF_PAGE_STRIDE * vintfs;
}

// ---- Global registers (config page) ------------------------------------------------------------
export const CONFIG = 0x000;
export const CONFIG_CMDQV_EN = bit('CONFIG.CMDQV_EN', 0);
export const CONFIG_PER_CMD_OFFSET = field('CONFIG.CMDQV_PER_CMD_OFFSET', 3, 1);
export const CONFIG_MAX_CLK_BATCH = field('CONFIG.CMDQ_MAX_CLK_BATCH', 11, 4);
export const CONFIG_MAX_CMD_BATCH = field('CONFIG.CMDQ_MAX_CMD_BATCH', 19, 12);
export const CONFIG_CONS_DRAM_EN = bit('CONFIG.CONS_DRAM_EN', 20);
export const CONFIG_WRITABLE = 0x001f_ffff;

export const PARAM = 0x004;
export const PARAM_CMDQV_VER = field('PARAM.CMDQV_VER', 3, 0);
export const PARAM_NUM_VCMDQ_LOG2 = field('PARAM.CMDQV_NUM_CMDQ_LOG2', 7, 4);
export const PARAM_NUM_VINTF_LOG2 = field('PARAM.CMDQV_NUM_VI_LOG2', 11, 8);
export const PARAM_NUM_SID_PER_VM_LOG2 = field('PARAM.CMDQV_NUM_SID_PER_VM_LOG2', 15, 12);

export const STATUS = 0x008;
export const STATUS_CMDQV_ENABLED = bit('STATUS.CMDQV_ENABLED', 0);

export const VI_ERR_MAP_0 = 0x014;
export const VI_ERR_MAP_1 = 0x018;
export const VI_INT_MASK_0 = 0x01c;
export const VI_INT_MASK_1 = 0x020;
/** CMDQ_ERR_MAP_m, m = 0..3: one bit per global VCMDQ. */
export const CMDQ_ERR_MAP_0 = 0x024;
export const CMDQ_ERR_MAP_COUNT = 4;

/** CMDQ_ALLOC_MAP_q: assignment of global VCMDQ q to (VINTF, LVCMDQ). */
export const CMDQ_ALLOC_MAP_0 = 0x200;
export const CMDQ_ALLOC_ALLOCATED = bit('CMDQ_ALLOC_MAP.ALLOC', 0);
export const CMDQ_ALLOC_LVCMDQ = field('CMDQ_ALLOC_MAP.LVCMDQ', 7, 1);
export const CMDQ_ALLOC_VINTF = field('CMDQ_ALLOC_MAP.VIRT_INTF_INDX', 20, 15);
export const CMDQ_ALLOC_WRITABLE = CMDQ_ALLOC_ALLOCATED.mask | CMDQ_ALLOC_LVCMDQ.mask | CMDQ_ALLOC_VINTF.mask;

// ---- Per-VINTF registers (config page, 0x1000 + 0x100·v) -----------------------------------------
export const VINTF_BASE = 0x1000;
export const VINTF_STRIDE = 0x100;
export const VINTF_CONFIG = 0x00;
export const VINTF_CONFIG_ENABLE = bit('VINTF_CONFIG.ENABLE', 0);
export const VINTF_CONFIG_VMID = field('VINTF_CONFIG.VMID', 16, 1);
export const VINTF_CONFIG_HYP_OWN = bit('VINTF_CONFIG.HYP_OWN', 17);
export const VINTF_CONFIG_WRITABLE = VINTF_CONFIG_ENABLE.mask | VINTF_CONFIG_VMID.mask | VINTF_CONFIG_HYP_OWN.mask;
export const VINTF_STATUS = 0x04;
export const VINTF_STATUS_ENABLE_OK = bit('VINTF_STATUS.ENABLE_OK', 0);
export const VINTF_STATUS_STATUS = field('VINTF_STATUS.STATUS', 3, 1);
/** VINTF_STATUS.STATUS: one of the VINTF's VCMDQs is in error. */
export const VINTF_STATUS_VCMDQ_ERR = 1;
export const VINTF_STATUS_NUM_LVCMDQ = field('VINTF_STATUS.VI_NUM_LVCMDQ', 23, 16);
export const VINTF_GLB_FILT_CFG = 0x0c;
export const VINTF_GLB_FILT_DATA = 0x10;
/** SID_MATCH_s at +0x40 + 4·s, SID_REPLACE_s at +0x80 + 4·s (at most 16 pairs fit). */
export const VINTF_SID_MATCH_0 = 0x40;
export const VINTF_SID_REPLACE_0 = 0x80;
export const VINTF_SID_PAIRS_MAX = 16;
export const SID_MATCH_ENABLE = bit('SID_MATCH.ENABLE', 0);
export const SID_MATCH_VIRT_SID = field('SID_MATCH.VIRT_SID', 20, 1);
export const SID_MATCH_WRITABLE = SID_MATCH_ENABLE.mask | SID_MATCH_VIRT_SID.mask;
export const SID_REPLACE_PHYS_SID = field('SID_REPLACE.PHYS_SID', 19, 0);
/** LVCMDQ_ERR_MAP: 128 bits at +0xC0..+0xCF, one per logical VCMDQ of the VINTF. */
export const VINTF_LVCMDQ_ERR_MAP_0 = 0xc0;

// ---- Per-VCMDQ page0 (stride 0x80) ---------------------------------------------------------------
export const VCMDQ_CONS = 0x00;
export const VCMDQ_CONS_RD = field('VCMDQ_CONS_INDX.RD', 19, 0);
export const VCMDQ_CONS_ERR = field('VCMDQ_CONS_INDX.ERR', 30, 24);
export const VCMDQ_PROD = 0x04;
export const VCMDQ_PROD_WR = field('VCMDQ_PROD_INDX.WR', 19, 0);
export const VCMDQ_CONFIG = 0x08;
export const VCMDQ_CONFIG_CMDQ_EN = bit('VCMDQ_CONFIG.CMDQ_EN', 0);
export const VCMDQ_STATUS = 0x0c;
export const VCMDQ_STATUS_CMDQ_EN_OK = bit('VCMDQ_STATUS.CMDQ_EN_OK', 0);
export const VCMDQ_GERROR = 0x10;
export const VCMDQ_GERRORN = 0x14;
export const VCMDQ_GERROR_CMDQ_ERR = bit('VCMDQ_GERROR.CMDQ_ERR', 0);
export const VCMDQ_GERROR_CONS_DRAM_WR_ABT_ERR = bit('VCMDQ_GERROR.CONS_DRAM_WR_ABT_ERR', 1);
export const VCMDQ_GERROR_CMDQ_INIT_ERR = bit('VCMDQ_GERROR.CMDQ_INIT_ERR', 2);
export const VCMDQ_GERROR_BITS = 0x7;

/** VCMDQ CONS.ERR codes (the SMMUv3 CERROR codes, plus ILL_ACCESS). */
export const VCMDQ_ERR_NONE = 0;
export const VCMDQ_ERR_ILL_OPCODE = 1;
export const VCMDQ_ERR_ABT = 2;
export const VCMDQ_ERR_ATC_INV_SYNC = 3;
export const VCMDQ_ERR_ILL_ACCESS = 4;

// ---- Per-VCMDQ page1 (stride 0x80) ---------------------------------------------------------------
/** VCMDQ_BASE: LOG2SIZE [4:0], ADDR [47:5]. */
export const VCMDQ_BASE = 0x00;
export const VCMDQ_BASE_LOG2SIZE = field('VCMDQ_BASE.LOG2SIZE', 4, 0);
export const VCMDQ_BASE_ADDR_LO_MASK = 0xffff_ffe0;
export const VCMDQ_BASE_ADDR_HI_MASK = 0x0000_ffff;
/** VCMDQ_CONS_INDX_BASE (DRAM_L/H): a 48-bit address, stored. */
export const VCMDQ_CONS_INDX_BASE = 0x08;
export const VCMDQ_CONS_INDX_BASE_HI_MASK = 0x0000_ffff;

// ---- Register names (traces) ---------------------------------------------------------------------
const GLOBAL_NAMES: ReadonlyMap<number, string> = new Map([
  [CONFIG, 'CONFIG'], [PARAM, 'PARAM'], [STATUS, 'STATUS'],
  [VI_ERR_MAP_0, 'VI_ERR_MAP_0'], [VI_ERR_MAP_1, 'VI_ERR_MAP_1'], [VI_INT_MASK_0, 'VI_INT_MASK_0'], [VI_INT_MASK_1, 'VI_INT_MASK_1'],
]);
const VINTF_NAMES: ReadonlyMap<number, string> = new Map([
  [VINTF_CONFIG, 'CONFIG'], [VINTF_STATUS, 'STATUS'], [VINTF_GLB_FILT_CFG, 'GLB_FILT_CFG'], [VINTF_GLB_FILT_DATA, 'GLB_FILT_DATA'],
]);
const PAGE0_NAMES: ReadonlyMap<number, string> = new Map([
  [VCMDQ_CONS, 'CONS_INDX'], [VCMDQ_PROD, 'PROD_INDX'], [VCMDQ_CONFIG, 'CONFIG'], [VCMDQ_STATUS, 'STATUS'],
  [VCMDQ_GERROR, 'GERROR'], [VCMDQ_GERRORN, 'GERRORN'],
]);
const PAGE1_NAMES: ReadonlyMap<number, string> = new Map([
  [VCMDQ_BASE, 'BASE_L'], [VCMDQ_BASE + 4, 'BASE_H'], [VCMDQ_CONS_INDX_BASE, 'CONS_INDX_BASE_DRAM_L'], [VCMDQ_CONS_INDX_BASE + 4, 'CONS_INDX_BASE_DRAM_H'],
]);

/** The name of a VCMDQ register at `off` inside its page (page0 or page1), prefixed by `who`, or null. */
function vcmdqRegisterName(who: string, page1: boolean, off: number): string | null {
  const n = (page1 ? PAGE1_NAMES : PAGE0_NAMES).get(off % VCMDQ_STRIDE);
  return n === undefined ? null : `${who}_${n}`;
}

/**
 * The name of the register at `offset` of a CMDQV aperture with `vintfs` VINTFs, as NVIDIA (and QEMU)
 * name them: `CONFIG`, `CMDQ_ALLOC_MAP_5`, `VINTF1_SID_MATCH_0`, `VCMDQ4_PROD_INDX` (direct
 * apertures), `VINTF1_LVCMDQ0_PROD_INDX` (logical); null for an offset that names nothing.
 */
export function registerName(offset: number, vintfs: number): string | null {
  if (offset < 0 || offset >= cmdqvRegionSize(vintfs)) return null;
  if (offset < CMDQV_PAGE_SIZE) {
    const g = GLOBAL_NAMES.get(offset);
    if (g !== undefined) return g;
    if (offset >= CMDQ_ERR_MAP_0 && offset < CMDQ_ERR_MAP_0 + 4 * CMDQ_ERR_MAP_COUNT && offset % 4 === 0) return `CMDQ_ERR_MAP_${(offset - CMDQ_ERR_MAP_0) / 4}`;
    if (offset >= CMDQ_ALLOC_MAP_0 && offset < CMDQ_ALLOC_MAP_0 + 4 * 128 && offset % 4 === 0) return `CMDQ_ALLOC_MAP_${(offset - CMDQ_ALLOC_MAP_0) / 4}`;
    if (offset < VINTF_BASE || offset >= VINTF_BASE + VINTF_STRIDE * vintfs || offset % 4 !== 0) return null;
    const v = Math.floor((offset - VINTF_BASE) / VINTF_STRIDE);
    const o = (offset - VINTF_BASE) % VINTF_STRIDE;
    const n = VINTF_NAMES.get(o);
    if (n !== undefined) return `VINTF${v}_${n}`;
    if (o >= VINTF_SID_MATCH_0 && o < VINTF_SID_MATCH_0 + 4 * VINTF_SID_PAIRS_MAX) return `VINTF${v}_SID_MATCH_${(o - VINTF_SID_MATCH_0) / 4}`;
    if (o >= VINTF_SID_REPLACE_0 && o < VINTF_SID_REPLACE_0 + 4 * VINTF_SID_PAIRS_MAX) return `VINTF${v}_SID_REPLACE_${(o - VINTF_SID_REPLACE_0) / 4}`;
    if (o >= VINTF_LVCMDQ_ERR_MAP_0 && o < VINTF_LVCMDQ_ERR_MAP_0 + 16) return `VINTF${v}_LVCMDQ_ERR_MAP_${(o - VINTF_LVCMDQ_ERR_MAP_0) / 4}`;
    return null;
  }
  if (offset < VINTF_PAGE0_BASE) {
    const page1 = offset >= VCMDQ_PAGE1_BASE;
    const o = offset - (page1 ? VCMDQ_PAGE1_BASE : VCMDQ_PAGE0_BASE);
    return vcmdqRegisterName(`VCMDQ${Math.floor(o / VCMDQ_STRIDE)}`, page1, o);
  }
  const v = Math.floor((offset - VINTF_PAGE0_BASE) / VINTF_PAGE_STRIDE);
  const inVintf = (offset - VINTF_PAGE0_BASE) % VINTF_PAGE_STRIDE;
  const page1 = inVintf >= CMDQV_PAGE_SIZE;
  const o = inVintf % CMDQV_PAGE_SIZE;
  return vcmdqRegisterName(`VINTF${v}_LVCMDQ${Math.floor(o / VCMDQ_STRIDE)}`, page1, o);
}
