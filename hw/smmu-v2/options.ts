/**
 * Construction options of an SMMUv1/v2 model and the ID registers they imply.
 *
 * Supports the flavours the Linux arm-smmu driver knows by DT compatible: a generic SMMUv1
 * (`arm,smmu-v1`), a generic SMMUv2 (`arm,smmu-v2`), Arm CoreLink MMU-401 (SMMUv1 with the AArch64
 * 64K format), MMU-500 (SMMUv2, ID7 revision, sACR/ACTLR, SMCFCFG fixed to 1, no global
 * configuration-fault controls) and the Qualcomm SMMU-500 (an MMU-500 as Qualcomm integrates it).
 * Every flavour default can be overridden; options that contradict each other or do not fit their
 * ID register field are rejected with an error naming the option.
 * Does not support: the secure programming interface (ID0.SES reads 0), stream security
 * determination, hypervisor contexts, extended SMR groups (EXSMRGS).
 */
import {
  ID0,
  ID1,
  ID2,
  ID7,
  PTFS_AARCH32_L_ONLY,
  PTFS_AARCH32_S_AND_L,
  PTFS_NO_AARCH32,
  encodeAddressSize,
  encodeUbs,
} from './regs.js';

export type SmmuV2Model = 'smmu-v1' | 'smmu-v2' | 'mmu-401' | 'mmu-500' | 'qcom-smmu-500';

export const SMMU_V2_MODELS: readonly SmmuV2Model[] = ['smmu-v1', 'smmu-v2', 'mmu-401', 'mmu-500', 'qcom-smmu-500'];

/** The DT compatible strings each flavour answers to (most specific first). */
export const SMMU_V2_COMPATIBLES: Readonly<Record<SmmuV2Model, readonly string[]>> = {
  'smmu-v1': ['arm,smmu-v1', 'arm,mmu-400'],
  'smmu-v2': ['arm,smmu-v2', 'cavium,smmu-v2', 'qcom,smmu-v2'],
  'mmu-401': ['arm,mmu-401'],
  'mmu-500': ['arm,mmu-500', 'nvidia,smmu-500'],
  'qcom-smmu-500': ['qcom,smmu-500'],
};

export interface SmmuV2Options {
  model: SmmuV2Model;
  /** ID0.SMS: stream matching with SMRs (true) or stream indexing (the StreamID selects the S2CR). */
  streamMatch: boolean;
  /** ID0.NUMSMRG: number of SMR/S2CR groups (stream matching only; with indexing it is 2^NUMSIDB). */
  numSmr: number;
  /** ID0.NUMSIDB: number of implemented StreamID bits. */
  numSidBits: number;
  /** ID0.EXIDS: 16-bit extended StreamIDs (sCR0.EXIDENABLE) are supported. */
  exids: boolean;
  /** ID1.NUMCB: number of translation context banks. */
  numCb: number;
  /** ID1.NUMS2CB: how many of them (the lowest-numbered) support stage 2 only. */
  numS2Cb: number;
  /** ID0.S1TS / S2TS / NTS: stage 1, stage 2 and nested translation support. */
  stage1: boolean;
  stage2: boolean;
  nested: boolean;
  /** ID0.ATOSNS: address translation operations (ATS1*) not supported. */
  atosns: boolean;
  /** ID0.CTTW: coherent translation table walks. */
  coherentWalk: boolean;
  /** ID0.BTM: broadcast TLB maintenance. */
  broadcastTlbMaintenance: boolean;
  /** AArch32 table formats besides AArch64 (ID0.PTFS): short+long, long only, or none. */
  aarch32Formats: 'short-and-long' | 'long-only' | 'none';
  /** ID2.PTFS_4K/16K/64K: AArch64 granules supported (SMMUv2). */
  granules: { '4K': boolean; '16K': boolean; '64K': boolean };
  /**
   * SMMUv1 only: contexts whose TCR.EAE is 0 use the AArch64 descriptor format rather than the
   * AArch32 short-descriptor one (MMU-401: what Linux calls ARM_SMMU_V1_64K).
   */
  v1Aarch64Format: boolean;
  /**
   * ID2.IAS / OAS in bits (32, 36, 40, 42, 44, 48); ID2.UBS, SMMUv2 only, in bits (32, 36, 40, 42,
   * 44, 49, 64: a 49-bit upstream bus carries 48-bit VAs plus the sign bit that selects TTBR1).
   */
  ias: number;
  oas: number;
  ubs: number;
  /** ID2.VMID16: 16-bit VMIDs (in CBA2R) supported. */
  vmid16: boolean;
  /** ID1.PAGESIZE: 64 KB register pages (true) or 4 KB. */
  pageSize64k: boolean;
  /** ID1.NUMPAGENDXB: NUMPAGE = 2^(NUMPAGENDXB + 1). */
  numPageNdxb: number;
  /** ID0.NUMIRPT: number of context interrupts implemented (SMMUv2: one per bank). */
  numIrpt: number;
  /** ID7 revision (MMU-500: r<MAJOR>p<MINOR>). */
  revision: { major: number; minor: number };
  /** sCR0.CLIENTPD at reset: client ports disabled (bypass) until software clears it. */
  clientPdAtReset: boolean;
  /** S2CR.TYPE at reset for every stream mapping group. */
  s2crTypeAtReset: 'translate' | 'bypass' | 'fault';
  /** sCR0.GCFGFRE/GCFGFIE implemented (MMU-500: read-as-zero). */
  globalConfigFaultControls: boolean;
  /**
   * Qualcomm firmware quirk seen on some SMMU-500 integrations: an S2CR write of TYPE=bypass is
   * stored as TYPE=fault and an S2CR write of TYPE=fault is ignored (arm-smmu-qcom probes for it).
   */
  qcomS2crBypassQuirk: boolean;
  /** TLB capacity in entries (inserting beyond it flushes the TLB, as the architecture permits). */
  tlbEntries: number;
  /** Virtual-time latencies, in ns, of hardware work done in scheduled steps. */
  timing: {
    /** From a TLBSYNC/sTLBGSYNC write to TLBSTATUS.SACTIVE/GSACTIVE reading 0. */
    tlbSyncNs: number;
    /** From a fault being recorded to the interrupt line changing. */
    irqNs: number;
    /** From an accepted RESUME write to the stalled transactions being retried or terminated. */
    resumeNs: number;
    /** From an ATS1* write to PAR being valid and ATSR.ACTIVE reading 0. */
    atsNs: number;
  };
}

export type SmmuV2OptionsInput = Partial<Omit<SmmuV2Options, 'model' | 'timing' | 'granules' | 'revision'>> & {
  model: SmmuV2Model;
  timing?: Partial<SmmuV2Options['timing']>;
  granules?: Partial<SmmuV2Options['granules']>;
  revision?: Partial<SmmuV2Options['revision']>;
};

/** SMMU architecture version implied by the flavour. */
export function archVersion(model: SmmuV2Model): 1 | 2 {
  return model === 'smmu-v1' || model === 'mmu-401' ? 1 : 2;
}

/** True for the MMU-500 family (Arm's and Qualcomm's integration of it). */
export function isMmu500(model: SmmuV2Model): boolean {
  return model === 'mmu-500' || model === 'qcom-smmu-500';
}

const DEFAULT_TIMING: SmmuV2Options['timing'] = { tlbSyncNs: 200, irqNs: 50, resumeNs: 100, atsNs: 300 };

/** A flavour's defaults, before the caller's options and before validation. */
export function flavourDefaults(model: SmmuV2Model): Omit<SmmuV2Options, 'timing'> {
  const common = {
    model,
    streamMatch: true,
    numSidBits: 15,
    exids: false,
    numS2Cb: 0,
    coherentWalk: true,
    broadcastTlbMaintenance: false,
    clientPdAtReset: true,
    globalConfigFaultControls: true,
    qcomS2crBypassQuirk: false,
    pageSize64k: false,
    v1Aarch64Format: false,
    tlbEntries: 4096,
    revision: { major: 0, minor: 0 },
  };
  switch (model) {
    case 'smmu-v1':
      return {
        ...common,
        numSmr: 16,
        numCb: 8,
        stage1: true,
        stage2: true,
        nested: false,
        atosns: false,
        aarch32Formats: 'short-and-long',
        granules: { '4K': false, '16K': false, '64K': false },
        ias: 40,
        oas: 40,
        ubs: 32,
        vmid16: false,
        numPageNdxb: 2,
        numIrpt: 8,
        s2crTypeAtReset: 'bypass',
      };
    case 'mmu-401':
      // Stage 1 only, as on Juno; Linux drives it as ARM_SMMU_V1_64K with the AArch64 format. 16 SMR
      // groups: the integrations boards ship need that many (Juno's DMA-330 alone has 9 stream IDs).
      return {
        ...common,
        numSmr: 16,
        numCb: 4,
        stage1: true,
        stage2: false,
        nested: false,
        atosns: false,
        aarch32Formats: 'long-only',
        granules: { '4K': false, '16K': false, '64K': false },
        v1Aarch64Format: true,
        ias: 40,
        oas: 40,
        ubs: 32,
        vmid16: false,
        numPageNdxb: 2,
        numIrpt: 4,
        s2crTypeAtReset: 'bypass',
      };
    case 'smmu-v2':
      return {
        ...common,
        numSmr: 32,
        numCb: 16,
        stage1: true,
        stage2: true,
        nested: true,
        atosns: false,
        aarch32Formats: 'long-only',
        granules: { '4K': true, '16K': true, '64K': true },
        ias: 48,
        oas: 48,
        ubs: 49,
        vmid16: true,
        numPageNdxb: 3,
        numIrpt: 16,
        s2crTypeAtReset: 'bypass',
      };
    case 'mmu-500':
    case 'qcom-smmu-500':
      // MMU-500 r2p1 as integrated on Stratix 10 / ZynqMP: S2CR and CB reset values from their
      // register references (S2CR.TYPE resets to fault; ATOSNS is set; no GCFGFRE/GCFGFIE).
      return {
        ...common,
        numSmr: model === 'qcom-smmu-500' ? 64 : 48,
        numCb: model === 'qcom-smmu-500' ? 32 : 16,
        stage1: true,
        stage2: true,
        nested: true,
        atosns: true,
        aarch32Formats: 'short-and-long',
        granules: { '4K': true, '16K': false, '64K': true },
        ias: 48,
        oas: 48,
        ubs: 49,
        vmid16: false,
        numPageNdxb: model === 'qcom-smmu-500' ? 6 : 4,
        numIrpt: model === 'qcom-smmu-500' ? 32 : 16,
        s2crTypeAtReset: 'fault',
        globalConfigFaultControls: false,
        broadcastTlbMaintenance: true,
        revision: { major: 2, minor: 1 },
      };
  }
}

function fail(model: SmmuV2Model, option: string, why: string): never {
  throw new RangeError(`smmu-v2 (${model}): option ${option}: ${why}`);
}

function checkInt(model: SmmuV2Model, name: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) fail(model, name, `must be an integer in ${min}..${max}, got ${v}`);
}

/** Fill in flavour defaults and validate the result. */
export function resolveOptions(input: SmmuV2OptionsInput): SmmuV2Options {
  if (!SMMU_V2_MODELS.includes(input.model)) {
    throw new RangeError(`smmu-v2: unknown model "${String(input.model)}" (known: ${SMMU_V2_MODELS.join(', ')})`);
  }
  const d = flavourDefaults(input.model);
  const o: SmmuV2Options = {
    ...d,
    ...input,
    granules: { ...d.granules, ...input.granules },
    revision: { ...d.revision, ...input.revision },
    timing: { ...DEFAULT_TIMING, ...input.timing },
  };
  const m = o.model;
  const v = archVersion(m);
  checkInt(m, 'numSidBits', o.numSidBits, 0, 15);
  if (o.streamMatch) {
    checkInt(m, 'numSmr', o.numSmr, 1, 128);
  } else {
    // With indexing there is one S2CR per StreamID, and the S2CR block holds 256.
    checkInt(m, 'numSidBits (stream indexing)', o.numSidBits, 0, 8);
    o.numSmr = 1 << o.numSidBits;
  }
  checkInt(m, 'numCb', o.numCb, 0, 128);
  checkInt(m, 'numS2Cb', o.numS2Cb, 0, o.numCb);
  checkInt(m, 'numPageNdxb', o.numPageNdxb, 0, 7);
  if (o.numCb > 1 << (o.numPageNdxb + 1)) {
    fail(m, 'numCb', `${o.numCb} context banks do not fit NUMPAGE = ${1 << (o.numPageNdxb + 1)} pages`);
  }
  checkInt(m, 'numIrpt', o.numIrpt, 0, 255);
  checkInt(m, 'tlbEntries', o.tlbEntries, 1, 1 << 24);
  checkInt(m, 'revision.major', o.revision.major, 0, 15);
  checkInt(m, 'revision.minor', o.revision.minor, 0, 15);
  if (!o.stage1 && !o.stage2) fail(m, 'stage1/stage2', 'at least one translation stage is required');
  if (o.nested && !(o.stage1 && o.stage2)) fail(m, 'nested', 'nesting needs both stages');
  if (o.numS2Cb > 0 && !o.stage2) fail(m, 'numS2Cb', 'stage-2-only banks need stage 2 support');
  if (o.exids && v === 1) fail(m, 'exids', 'extended StreamIDs are an SMMUv2 feature');
  if (o.exids && !o.streamMatch) fail(m, 'exids', 'extended StreamIDs need stream matching');
  if (o.vmid16 && v === 1) fail(m, 'vmid16', '16-bit VMIDs are an SMMUv2 feature');
  if (o.v1Aarch64Format && v === 2) fail(m, 'v1Aarch64Format', 'only meaningful on SMMUv1');
  if (o.qcomS2crBypassQuirk && m !== 'qcom-smmu-500') fail(m, 'qcomS2crBypassQuirk', 'only a Qualcomm integration has it');
  for (const [name, bits] of [['ias', o.ias], ['oas', o.oas]] as const) {
    try {
      if (encodeAddressSize(bits) > 5) throw new RangeError('52-bit sizes are SMMUv3 only');
    } catch (e) {
      fail(m, name, (e as Error).message);
    }
  }
  if (v === 1) o.ubs = o.ias; // SMMUv1: the VA size is the IAS
  else {
    try {
      encodeUbs(o.ubs);
    } catch (e) {
      fail(m, 'ubs', (e as Error).message);
    }
  }
  if (v === 2 && !o.granules['4K'] && !o.granules['16K'] && !o.granules['64K'] && o.aarch32Formats === 'none') {
    fail(m, 'granules', 'an SMMUv2 with no AArch64 granule and no AArch32 format cannot translate');
  }
  for (const [k, ns] of Object.entries(o.timing)) checkInt(m, `timing.${k}`, ns, 0, 1e12);
  return o;
}

/** The ID registers an SMMU built with `o` reports. */
export interface IdRegisters {
  id0: number;
  id1: number;
  id2: number;
  id7: number;
}

export function idRegisters(o: SmmuV2Options): IdRegisters {
  const v = archVersion(o.model);
  const ptfs =
    o.aarch32Formats === 'short-and-long'
      ? PTFS_AARCH32_S_AND_L
      : o.aarch32Formats === 'long-only'
        ? PTFS_AARCH32_L_ONLY
        : PTFS_NO_AARCH32;
  const id0 =
    ID0.NUMSMRG.encode(o.streamMatch ? o.numSmr : 0) |
    ID0.EXIDS.encode(o.exids ? 1 : 0) |
    ID0.NUMSIDB.encode(o.numSidBits) |
    ID0.BTM.encode(o.broadcastTlbMaintenance ? 1 : 0) |
    ID0.CTTW.encode(o.coherentWalk ? 1 : 0) |
    ID0.NUMIRPT.encode(o.numIrpt) |
    ID0.PTFS.encode(ptfs) |
    ID0.ATOSNS.encode(o.atosns ? 1 : 0) |
    ID0.SMS.encode(o.streamMatch ? 1 : 0) |
    ID0.NTS.encode(o.nested ? 1 : 0) |
    ID0.S2TS.encode(o.stage2 ? 1 : 0) |
    ID0.S1TS.encode(o.stage1 ? 1 : 0);
  const id1 =
    ID1.NUMCB.encode(o.numCb) |
    ID1.NUMS2CB.encode(o.numS2Cb) |
    ID1.NUMPAGENDXB.encode(o.numPageNdxb) |
    ID1.PAGESIZE.encode(o.pageSize64k ? 1 : 0);
  let id2 = ID2.IAS.encode(encodeAddressSize(o.ias)) | ID2.OAS.encode(encodeAddressSize(o.oas));
  if (v === 2) {
    id2 |=
      ID2.UBS.encode(encodeUbs(o.ubs)) |
      ID2.PTFS_4K.encode(o.granules['4K'] ? 1 : 0) |
      ID2.PTFS_16K.encode(o.granules['16K'] ? 1 : 0) |
      ID2.PTFS_64K.encode(o.granules['64K'] ? 1 : 0) |
      ID2.VMID16.encode(o.vmid16 ? 1 : 0);
  }
  const id7 = ID7.MAJOR.encode(o.revision.major) | ID7.MINOR.encode(o.revision.minor);
  return { id0: id0 >>> 0, id1: id1 >>> 0, id2: id2 >>> 0, id7: id7 >>> 0 };
}
