/**
 * SMMUv3 in-memory formats, as the model reads and writes them: Stream Table Entries and level-1
 * stream table descriptors, Context Descriptors and level-1 CD descriptors, commands, event
 * records and PRI queue entries. Fields are declared by absolute bit position in the structure,
 * the way the Arm SMMUv3 specification writes them (STE.S1DSS is bits [65:64]).
 *
 * Supports: every field the model acts on, plus the attribute fields a driver writes (so tests and
 * traces can name them). Address fields are limited to 53 bits (JS numbers).
 * Does not support: VMSAv9-128 layouts, Secure/Realm-only fields, MPAM and PBHA fields.
 */
import { AddrField, StructField } from '../bitfield.js';

const f = (name: string, hi: number, lo: number): StructField => new StructField(name, hi, lo);
const b = (name: string, n: number): StructField => new StructField(name, n, n);

// ---- Level-1 Stream Table Descriptor (8 bytes) ---------------------------------------------
export const L1STD_BYTES = 8;
export const L1STD_SPAN = f('L1STD.Span', 4, 0);
export const L1STD_L2PTR = new AddrField('L1STD.L2Ptr', 51, 6);

// ---- Stream Table Entry (64 bytes) ---------------------------------------------------------
export const STE_BYTES = 64;
export const STE_WORDS = 16;
export const STE_V = b('STE.V', 0);
export const STE_CONFIG = f('STE.Config', 3, 1);
export const STE_CONFIG_ABORT = 0b000;
export const STE_CONFIG_BYPASS = 0b100;
export const STE_CONFIG_S1_TRANS = 0b101;
export const STE_CONFIG_S2_TRANS = 0b110;
export const STE_CONFIG_NESTED = 0b111;
export const STE_S1FMT = f('STE.S1Fmt', 5, 4);
export const S1FMT_LINEAR = 0;
export const S1FMT_4K_L2 = 1;
export const S1FMT_64K_L2 = 2;
export const STE_S1CONTEXTPTR = new AddrField('STE.S1ContextPtr', 51, 6);
export const STE_S1CDMAX = f('STE.S1CDMax', 63, 59);
export const STE_S1DSS = f('STE.S1DSS', 65, 64);
export const S1DSS_TERMINATE = 0;
export const S1DSS_BYPASS = 1;
export const S1DSS_SSID0 = 2;
export const STE_S1CIR = f('STE.S1CIR', 67, 66);
export const STE_S1COR = f('STE.S1COR', 69, 68);
export const STE_S1CSH = f('STE.S1CSH', 71, 70);
export const STE_CONT = f('STE.CONT', 80, 77);
export const STE_PPAR = b('STE.PPAR', 82);
export const STE_MEV = b('STE.MEV', 83);
export const STE_S2FWB = b('STE.S2FWB', 89);
export const STE_S1STALLD = b('STE.S1STALLD', 91);
export const STE_EATS = f('STE.EATS', 93, 92);
export const EATS_ABT = 0;
export const EATS_TRANS = 1;
export const EATS_S1CHK = 2;
export const STE_STRW = f('STE.STRW', 95, 94);
export const STRW_NSEL1 = 0;
export const STRW_EL2 = 2;
export const STE_MEMATTR = f('STE.MemAttr', 99, 96);
export const STE_MTCFG = b('STE.MTCFG', 100);
export const STE_ALLOCCFG = f('STE.ALLOCCFG', 104, 101);
export const STE_SHCFG = f('STE.SHCFG', 109, 108);
export const STE_NSCFG = f('STE.NSCFG', 111, 110);
export const STE_PRIVCFG = f('STE.PRIVCFG', 113, 112);
export const STE_INSTCFG = f('STE.INSTCFG', 115, 114);
export const STE_S2VMID = f('STE.S2VMID', 143, 128);
export const STE_S2T0SZ = f('STE.S2T0SZ', 165, 160);
export const STE_S2SL0 = f('STE.S2SL0', 167, 166);
export const STE_S2IR0 = f('STE.S2IR0', 169, 168);
export const STE_S2OR0 = f('STE.S2OR0', 171, 170);
export const STE_S2SH0 = f('STE.S2SH0', 173, 172);
export const STE_S2TG = f('STE.S2TG', 175, 174);
export const STE_S2PS = f('STE.S2PS', 178, 176);
export const STE_S2AA64 = b('STE.S2AA64', 179);
export const STE_S2ENDI = b('STE.S2ENDI', 180);
export const STE_S2AFFD = b('STE.S2AFFD', 181);
export const STE_S2PTW = b('STE.S2PTW', 182);
export const STE_S2HD = b('STE.S2HD', 183);
export const STE_S2HA = b('STE.S2HA', 184);
export const STE_S2S = b('STE.S2S', 185);
export const STE_S2R = b('STE.S2R', 186);
export const STE_S2TTB = new AddrField('STE.S2TTB', 243, 196, 4);

/** STE.S2TG and CD.TG0 encodings: 0 = 4KB, 1 = 64KB, 2 = 16KB, 3 = Reserved. */
export const TG0_GRANULE_SHIFT = [12, 16, 14, 0] as const;
/** CD.TG1 encodings: 0 = Reserved, 1 = 16KB, 2 = 4KB, 3 = 64KB. */
export const TG1_GRANULE_SHIFT = [0, 14, 12, 16] as const;

// ---- Level-1 Context Descriptor (8 bytes) --------------------------------------------------
export const L1CD_BYTES = 8;
export const L1CD_V = b('L1CD.V', 0);
export const L1CD_L2PTR = new AddrField('L1CD.L2Ptr', 51, 12);

// ---- Context Descriptor (64 bytes) ---------------------------------------------------------
export const CD_BYTES = 64;
export const CD_WORDS = 16;
export const CD_T0SZ = f('CD.T0SZ', 5, 0);
export const CD_TG0 = f('CD.TG0', 7, 6);
export const CD_IR0 = f('CD.IR0', 9, 8);
export const CD_OR0 = f('CD.OR0', 11, 10);
export const CD_SH0 = f('CD.SH0', 13, 12);
export const CD_EPD0 = b('CD.EPD0', 14);
export const CD_ENDI = b('CD.ENDI', 15);
export const CD_T1SZ = f('CD.T1SZ', 21, 16);
export const CD_TG1 = f('CD.TG1', 23, 22);
export const CD_IR1 = f('CD.IR1', 25, 24);
export const CD_OR1 = f('CD.OR1', 27, 26);
export const CD_SH1 = f('CD.SH1', 29, 28);
export const CD_EPD1 = b('CD.EPD1', 30);
export const CD_V = b('CD.V', 31);
export const CD_IPS = f('CD.IPS', 34, 32);
export const CD_AFFD = b('CD.AFFD', 35);
export const CD_WXN = b('CD.WXN', 36);
export const CD_UWXN = b('CD.UWXN', 37);
export const CD_TBI0 = b('CD.TBI0', 38);
export const CD_TBI1 = b('CD.TBI1', 39);
export const CD_PAN = b('CD.PAN', 40);
export const CD_AA64 = b('CD.AA64', 41);
export const CD_HD = b('CD.HD', 42);
export const CD_HA = b('CD.HA', 43);
export const CD_S = b('CD.S', 44);
export const CD_R = b('CD.R', 45);
export const CD_A = b('CD.A', 46);
export const CD_ASET = b('CD.ASET', 47);
export const CD_ASID = f('CD.ASID', 63, 48);
export const CD_NSCFG0 = b('CD.NSCFG0', 64);
export const CD_HAD0 = b('CD.HAD0', 65);
export const CD_TTB0 = new AddrField('CD.TTB0', 115, 68, 4);
export const CD_NSCFG1 = b('CD.NSCFG1', 128);
export const CD_HAD1 = b('CD.HAD1', 129);
export const CD_TTB1 = new AddrField('CD.TTB1', 179, 132, 4);
export const CD_MAIR0 = f('CD.MAIR0', 223, 192);
export const CD_MAIR1 = f('CD.MAIR1', 255, 224);

// ---- Commands (16 bytes) -------------------------------------------------------------------
export const CMD_BYTES = 16;
export const CMD_OPCODE = f('CMD.Opcode', 7, 0);
export const CMD_SSEC = b('CMD.SSec', 10);
export const CMD_SSV = b('CMD.SSV', 11);
export const CMD_SUBSTREAMID = f('CMD.SubstreamID', 31, 12);
export const CMD_STREAMID = f('CMD.StreamID', 63, 32);
// CMD_PREFETCH_ADDR
export const CMD_PREFETCH_SIZE = f('CMD_PREFETCH_ADDR.Size', 68, 64);
// CMD_CFGI_*
export const CMD_CFGI_LEAF = b('CMD_CFGI.Leaf', 64);
export const CMD_CFGI_RANGE = f('CMD_CFGI_STE_RANGE.Range', 68, 64);
// CMD_TLBI_*
export const CMD_TLBI_NUM = f('CMD_TLBI.NUM', 16, 12);
export const CMD_TLBI_SCALE = f('CMD_TLBI.SCALE', 24, 20);
export const CMD_TLBI_VMID = f('CMD_TLBI.VMID', 47, 32);
export const CMD_TLBI_ASID = f('CMD_TLBI.ASID', 63, 48);
export const CMD_TLBI_LEAF = b('CMD_TLBI.Leaf', 64);
export const CMD_TLBI_TTL = f('CMD_TLBI.TTL', 73, 72);
export const CMD_TLBI_TG = f('CMD_TLBI.TG', 75, 74);
/** Address[63:12]; the model keeps bits [52:12] (IOVAs are JS numbers). */
export const CMD_TLBI_ADDR = new AddrField('CMD_TLBI.Address', 116, 76, 12);
/** Address bits [63:53], which the model only checks for being zero. */
export const CMD_TLBI_ADDR_TOP = f('CMD_TLBI.Address[63:53]', 127, 117);
export const CMD_TLBI_IPA = new AddrField('CMD_TLBI_S2_IPA.Address', 115, 76, 12);
// CMD_ATC_INV
export const CMD_ATC_GLOBAL = b('CMD_ATC_INV.Global', 9);
export const CMD_ATC_SIZE = f('CMD_ATC_INV.Size', 69, 64);
export const CMD_ATC_ADDR = new AddrField('CMD_ATC_INV.Address', 116, 76, 12);
export const CMD_ATC_ADDR_TOP = f('CMD_ATC_INV.Address[63:53]', 127, 117);
// CMD_PRI_RESP
export const CMD_PRI_PRGINDEX = f('CMD_PRI_RESP.PRGIndex', 72, 64);
export const CMD_PRI_RESP_CODE = f('CMD_PRI_RESP.Resp', 77, 76);
export const PRI_RESP_DENY = 0;
export const PRI_RESP_FAIL = 1;
export const PRI_RESP_SUCC = 2;
// CMD_RESUME
export const CMD_RESUME_AC = b('CMD_RESUME.Ac', 12);
export const CMD_RESUME_AB = b('CMD_RESUME.Ab', 13);
export const CMD_RESUME_STAG = f('CMD_RESUME.STAG', 79, 64);
// CMD_SYNC
export const CMD_SYNC_CS = f('CMD_SYNC.CS', 13, 12);
export const SYNC_CS_NONE = 0;
export const SYNC_CS_IRQ = 1;
export const SYNC_CS_SEV = 2;
export const CMD_SYNC_MSH = f('CMD_SYNC.MSH', 23, 22);
export const CMD_SYNC_MSIATTR = f('CMD_SYNC.MSIAttr', 27, 24);
export const CMD_SYNC_MSIDATA = f('CMD_SYNC.MSIData', 63, 32);
export const CMD_SYNC_MSIADDR = new AddrField('CMD_SYNC.MSIAddress', 115, 66, 2);

/** Command opcodes (CMD.Opcode). */
export const CMD_PREFETCH_CONFIG = 0x01;
export const CMD_PREFETCH_ADDR = 0x02;
export const CMD_CFGI_STE = 0x03;
export const CMD_CFGI_STE_RANGE = 0x04; // CMD_CFGI_ALL is CMD_CFGI_STE_RANGE with Range == 31
export const CMD_CFGI_CD = 0x05;
export const CMD_CFGI_CD_ALL = 0x06;
export const CMD_CFGI_VMS_PIDM = 0x07;
export const CMD_TLBI_NH_ALL = 0x10;
export const CMD_TLBI_NH_ASID = 0x11;
export const CMD_TLBI_NH_VA = 0x12;
export const CMD_TLBI_NH_VAA = 0x13;
export const CMD_TLBI_EL3_ALL = 0x18;
export const CMD_TLBI_EL3_VA = 0x1a;
export const CMD_TLBI_EL2_ALL = 0x20;
export const CMD_TLBI_EL2_ASID = 0x21;
export const CMD_TLBI_EL2_VA = 0x22;
export const CMD_TLBI_EL2_VAA = 0x23;
export const CMD_TLBI_S12_VMALL = 0x28;
export const CMD_TLBI_S2_IPA = 0x2a;
export const CMD_TLBI_NSNH_ALL = 0x30;
export const CMD_ATC_INV = 0x40;
export const CMD_PRI_RESP = 0x41;
export const CMD_RESUME = 0x44;
export const CMD_STALL_TERM = 0x45;
export const CMD_SYNC = 0x46;

export const COMMAND_NAMES: ReadonlyMap<number, string> = new Map<number, string>([
  [CMD_PREFETCH_CONFIG, 'CMD_PREFETCH_CONFIG'], [CMD_PREFETCH_ADDR, 'CMD_PREFETCH_ADDR'],
  [CMD_CFGI_STE, 'CMD_CFGI_STE'], [CMD_CFGI_STE_RANGE, 'CMD_CFGI_STE_RANGE'], [CMD_CFGI_CD, 'CMD_CFGI_CD'],
  [CMD_CFGI_CD_ALL, 'CMD_CFGI_CD_ALL'], [CMD_CFGI_VMS_PIDM, 'CMD_CFGI_VMS_PIDM'],
  [CMD_TLBI_NH_ALL, 'CMD_TLBI_NH_ALL'], [CMD_TLBI_NH_ASID, 'CMD_TLBI_NH_ASID'], [CMD_TLBI_NH_VA, 'CMD_TLBI_NH_VA'],
  [CMD_TLBI_NH_VAA, 'CMD_TLBI_NH_VAA'], [CMD_TLBI_EL3_ALL, 'CMD_TLBI_EL3_ALL'], [CMD_TLBI_EL3_VA, 'CMD_TLBI_EL3_VA'],
  [CMD_TLBI_EL2_ALL, 'CMD_TLBI_EL2_ALL'], [CMD_TLBI_EL2_ASID, 'CMD_TLBI_EL2_ASID'], [CMD_TLBI_EL2_VA, 'CMD_TLBI_EL2_VA'],
  [CMD_TLBI_EL2_VAA, 'CMD_TLBI_EL2_VAA'], [CMD_TLBI_S12_VMALL, 'CMD_TLBI_S12_VMALL'], [CMD_TLBI_S2_IPA, 'CMD_TLBI_S2_IPA'],
  [CMD_TLBI_NSNH_ALL, 'CMD_TLBI_NSNH_ALL'], [CMD_ATC_INV, 'CMD_ATC_INV'], [CMD_PRI_RESP, 'CMD_PRI_RESP'],
  [CMD_RESUME, 'CMD_RESUME'], [CMD_STALL_TERM, 'CMD_STALL_TERM'], [CMD_SYNC, 'CMD_SYNC'],
]);

// ---- Event records (32 bytes) --------------------------------------------------------------
export const EVT_BYTES = 32;
export const EVT_WORDS = 8;
export const EVT_TYPE = f('EVT.Type', 7, 0);
export const EVT_SSV = b('EVT.SSV', 11);
export const EVT_SUBSTREAMID = f('EVT.SubstreamID', 31, 12);
export const EVT_STREAMID = f('EVT.StreamID', 63, 32);
export const EVT_STAG = f('EVT.STAG', 79, 64);
export const EVT_STALL = b('EVT.Stall', 95);
export const EVT_PNU = b('EVT.PnU', 97);
export const EVT_IND = b('EVT.InD', 98);
export const EVT_RNW = b('EVT.RnW', 99);
export const EVT_S2 = b('EVT.S2', 103);
export const EVT_CLASS = f('EVT.CLASS', 105, 104);
export const CLASS_CD = 0;
export const CLASS_TT = 1;
export const CLASS_IN = 2;
export const EVT_TTRNW = b('EVT.TTRnW', 108);
/** InputAddr[63:0] occupies words 4 and 5. */
export const EVT_INPUTADDR_WORD = 4;
/** IPA[51:12] of Translation-related faults. */
export const EVT_IPA = new AddrField('EVT.IPA', 243, 204, 12);
/** FetchAddr of F_STE_FETCH / F_CD_FETCH / F_WALK_EABT: bits [51:3] kept. */
export const EVT_FETCHADDR = new AddrField('EVT.FetchAddr', 243, 195, 3);

/** Event record types (EVT.Type). */
export const F_UUT = 0x01;
export const C_BAD_STREAMID = 0x02;
export const F_STE_FETCH = 0x03;
export const C_BAD_STE = 0x04;
export const F_BAD_ATS_TREQ = 0x05;
export const F_STREAM_DISABLED = 0x06;
export const F_TRANSL_FORBIDDEN = 0x07;
export const C_BAD_SUBSTREAMID = 0x08;
export const F_CD_FETCH = 0x09;
export const C_BAD_CD = 0x0a;
export const F_WALK_EABT = 0x0b;
export const F_TRANSLATION = 0x10;
export const F_ADDR_SIZE = 0x11;
export const F_ACCESS = 0x12;
export const F_PERMISSION = 0x13;
export const F_TLB_CONFLICT = 0x20;
export const F_CFG_CONFLICT = 0x21;
export const E_PAGE_REQUEST = 0x24;

export const EVENT_NAMES: ReadonlyMap<number, string> = new Map<number, string>([
  [F_UUT, 'F_UUT'], [C_BAD_STREAMID, 'C_BAD_STREAMID'], [F_STE_FETCH, 'F_STE_FETCH'], [C_BAD_STE, 'C_BAD_STE'],
  [F_BAD_ATS_TREQ, 'F_BAD_ATS_TREQ'], [F_STREAM_DISABLED, 'F_STREAM_DISABLED'], [F_TRANSL_FORBIDDEN, 'F_TRANSL_FORBIDDEN'],
  [C_BAD_SUBSTREAMID, 'C_BAD_SUBSTREAMID'], [F_CD_FETCH, 'F_CD_FETCH'], [C_BAD_CD, 'C_BAD_CD'], [F_WALK_EABT, 'F_WALK_EABT'],
  [F_TRANSLATION, 'F_TRANSLATION'], [F_ADDR_SIZE, 'F_ADDR_SIZE'], [F_ACCESS, 'F_ACCESS'], [F_PERMISSION, 'F_PERMISSION'],
  [F_TLB_CONFLICT, 'F_TLB_CONFLICT'], [F_CFG_CONFLICT, 'F_CFG_CONFLICT'], [E_PAGE_REQUEST, 'E_PAGE_REQUEST'],
]);

// ---- PRI queue entries (16 bytes) ----------------------------------------------------------
export const PRIQ_BYTES = 16;
export const PRIQ_WORDS = 4;
export const PRIQ_STREAMID = f('PRIQ.StreamID', 31, 0);
export const PRIQ_SUBSTREAMID = f('PRIQ.SubstreamID', 51, 32);
export const PRIQ_PRIV = b('PRIQ.Priv', 58);
export const PRIQ_EXEC = b('PRIQ.Exec', 59);
export const PRIQ_READ = b('PRIQ.Read', 60);
export const PRIQ_WRITE = b('PRIQ.Write', 61);
export const PRIQ_LAST = b('PRIQ.Last', 62);
export const PRIQ_SSV = b('PRIQ.SSV', 63);
export const PRIQ_PRGINDEX = f('PRIQ.PRGIndex', 72, 64);
export const PRIQ_ADDR = new AddrField('PRIQ.PageAddress', 116, 76, 12);
