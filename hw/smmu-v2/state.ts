/**
 * The state an SMMUv1/v2 model's parts share: global registers (sCR0, sACR, the global fault
 * registers), the stream mapping table, the context banks with their held transactions, the TLB,
 * the decode environment, statistics, interrupt levels and the trace.
 *
 * Supports: decoding a bank's configuration on demand (cached until a configuration register
 * changes: `cfgGen`), the interrupt levels faults.ts turns into edges, and trace events.
 * Does not hold any behaviour of its own beyond those: the register file, the transaction engine,
 * TLB maintenance and address translation operations act on it.
 */
import type { Scheduler } from '../scheduler.js';
import type { Trace, TraceEventId } from '../trace.js';
import type { ContextConfig, DecodeEnv } from './context-bank.js';
import { ContextBank } from './context-bank.js';
import type { IrqOutputs } from './faults.js';
import { GlobalFaultRegs, SGFSR_CONFIG_FAULTS } from './faults.js';
import type { SmmuV2Options } from './options.js';
import { archVersion, isMmu500 } from './options.js';
import * as R from './regs.js';
import { StallState } from './stalls.js';
import { StreamMapTable } from './stream-match.js';
import { Tlb } from './tlb.js';

export interface SmmuV2Stats {
  /** Transactions submitted by clients. */
  transactions: number;
  /** Forwarded untranslated (CLIENTPD, S2CR bypass, unmatched with USFCFG=0, SCTLR.M=0). */
  bypassed: number;
  globalFaults: number;
  contextFaults: number;
  stalls: number;
  /** Stalls of transactions from masters the machine declared unable to stall. */
  stallsOfNonStallingMasters: number;
  resumesAccepted: number;
  resumesIgnored: number;
  /** Terminated on arrival because a fault was outstanding with HUPCF=0 (terminate mode). */
  terminatedBehindFault: number;
  /** Held behind a stall with HUPCF=0. */
  waitedBehindStall: number;
}

export class SmmuV2State {
  readonly version: 1 | 2;
  readonly tlb: Tlb;
  readonly streams: StreamMapTable;
  readonly banks: ContextBank[] = [];
  readonly stallStates: StallState[] = [];
  readonly gfault = new GlobalFaultRegs();
  readonly env: DecodeEnv;
  readonly stats: SmmuV2Stats = {
    transactions: 0,
    bypassed: 0,
    globalFaults: 0,
    contextFaults: 0,
    stalls: 0,
    stallsOfNonStallingMasters: 0,
    resumesAccepted: 0,
    resumesIgnored: 0,
    terminatedBehindFault: 0,
    waitedBehindStall: 0,
  };
  /** The interrupt outputs (set once by the SMMU, which builds them over this state's levels). */
  irq!: IrqOutputs;

  scr0 = 0;
  sacr = 0;
  /** Bumped by every write that can change a bank's decoded configuration. */
  cfgGen = 0;

  constructor(
    readonly name: string,
    readonly options: SmmuV2Options,
    readonly scheduler: Scheduler,
    readonly trace: Trace | null,
  ) {
    const o = options;
    this.version = archVersion(o.model);
    this.tlb = new Tlb(o.tlbEntries);
    this.streams = new StreamMapTable({
      streamMatch: o.streamMatch,
      groups: o.numSmr,
      numSidBits: o.numSidBits,
      exids: o.exids,
      s2crResetType:
        o.s2crTypeAtReset === 'fault' ? R.S2CR_TYPE_FAULT : o.s2crTypeAtReset === 'bypass' ? R.S2CR_TYPE_BYPASS : R.S2CR_TYPE_TRANSLATE,
      qcomS2crBypassQuirk: o.qcomS2crBypassQuirk,
    });
    const actlrReset = isMmu500(o.model) ? R.ACTLR.CPRE.mask | R.ACTLR.CMTLB.mask : 0;
    for (let i = 0; i < o.numCb; i++) {
      this.banks.push(new ContextBank(i, actlrReset));
      this.stallStates.push(new StallState());
    }
    const banks = this.banks;
    this.env = {
      version: this.version,
      stage1: o.stage1,
      stage2: o.stage2,
      nested: o.nested,
      numS2Cb: o.numS2Cb,
      numCb: o.numCb,
      oas: o.oas,
      ias: o.ias,
      ubs: o.ubs,
      granules: o.granules,
      v1Aarch64Format: o.v1Aarch64Format,
      vmid16Enabled: () => o.vmid16 && R.sCR0.VMID16EN.isSet(this.scr0),
      tlb: this.tlb,
      bank: (n: number) => banks[n],
    };
  }

  /** Bank `b`'s configuration as its registers say now. */
  decoded(b: ContextBank): ContextConfig {
    return b.decoded(this.env, this.cfgGen);
  }

  /** The VMID a bank's registers hold (CBA2R.VMID16 with sCR0.VMID16EN, else CBAR.VMID). */
  vmidOf(b: ContextBank): number {
    return this.env.vmid16Enabled() ? R.CBA2R.VMID16.get(b.cba2r) : R.CBAR.VMID.get(b.cbar);
  }

  /** The context interrupt a bank signals: SMMUv2 bank n on line n, SMMUv1 CBAR.IRPTNDX. */
  contextLineOf(b: ContextBank): number {
    return this.version === 2 ? b.index : R.CBAR.IRPTNDX.get(b.cbar);
  }

  globalIrqLevel(): boolean {
    const f = this.gfault.sgfsr;
    const scr0 = this.scr0;
    const gfie = R.sCR0.GFIE.isSet(scr0);
    const cfgIe = this.options.globalConfigFaultControls ? R.sCR0.GCFGFIE.isSet(scr0) : gfie;
    const transaction = f & R.SGFSR_FAULT_BITS & ~SGFSR_CONFIG_FAULTS;
    const config = f & SGFSR_CONFIG_FAULTS;
    return (gfie && (transaction !== 0 || R.sGFSR.MULTI.isSet(f))) || (cfgIe && config !== 0);
  }

  contextIrqLevel(line: number): boolean {
    for (const b of this.banks) {
      if (this.contextLineOf(b) !== line) continue;
      if (R.SCTLR.CFIE.isSet(b.sctlr) && (b.fsr & (R.FSR_FAULT_BITS | R.FSR.MULTI.mask)) !== 0) return true;
    }
    return false;
  }

  /** Someone records trace events (build an event's arguments only then on hot paths). */
  get tracing(): boolean {
    const tr = this.trace;
    return tr !== null && tr.active;
  }

  emit(name: TraceEventId, args: Record<string, unknown>): void {
    const tr = this.trace;
    if (tr !== null && tr.active) tr.emit({ kind: 'custom', time: this.scheduler.now, track: this.name, name, args });
  }
}
