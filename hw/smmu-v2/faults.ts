/**
 * Fault recording and interrupt outputs of an SMMUv1/v2.
 *
 * Supports: the global fault registers (sGFSR with MULTI, sGFSYNR0-2, sGFAR; write-1-to-clear and
 * sGFSRRESTORE), context fault latching into a bank (FSR with FORMAT, FAR, FSYNR0, FSYNR1,
 * IPAFAR and GR1 CBFRSYNRA; a fault while one is latched only sets FSR.MULTI), and the interrupt
 * outputs: every global line carries the combined global fault level (sGFSR with GFIE, or GCFGFIE
 * for configuration faults on implementations that have it), and a context line is high while a
 * bank signalling it (SMMUv2: bank n on line n; SMMUv1: CBAR.IRPTNDX) has a fault recorded in FSR and
 * SCTLR.CFIE set. FSR.SS alone does not hold a line high: the stall is reported with the fault
 * that caused it, so software may clear FSR and RESUME later.
 * Lines are edge-signalled to the interrupt controller: the model raises a line when its level goes
 * high and, to behave as a level-sensitive line would, again when software writes a status register
 * (FSR, sGFSR) and the level is still high. Level changes are evaluated in a scheduler step
 * `timing.irqNs` after the event that caused them.
 * Does not support: secure global faults, the PMU interrupt, per-fault-type interrupt routing.
 */
import type { Scheduler } from '../scheduler.js';
import type { ContextBank } from './context-bank.js';
import {
  FSR,
  FSR_FAULT_BITS,
  FSYNR0,
  SGFSR_FAULT_BITS,
  sGFSR,
  sGFSYNR0,
  sGFSYNR1,
} from './regs.js';
import type { WalkFaultKind } from '../walker/index.js';

const TWO_32 = 0x1_0000_0000;

/** An interrupt output the machine wires to its controller (hw/gic.ts IrqLine fits). */
export interface IrqOutput {
  raise(): void;
}

export interface SmmuV2Irqs {
  /** The `#global-interrupts` lines. */
  global: readonly IrqOutput[];
  /** The context interrupts, in `interrupts` order after the global ones. */
  context: readonly IrqOutput[];
}

/** The FSR bit for a walk fault kind. */
export function fsrBitFor(kind: WalkFaultKind): number {
  switch (kind) {
    case 'translation':
      return FSR.TF.mask;
    case 'access-flag':
      return FSR.AFF.mask;
    case 'permission':
      return FSR.PF.mask;
    case 'address-size':
      return FSR.ASF.mask;
    case 'external-abort-on-walk':
      return FSR.EF.mask;
  }
}

/** Global faults that report configuration errors (GCFGFRE/GCFGFIE govern them where implemented). */
export const SGFSR_CONFIG_FAULTS = sGFSR.ICF.mask | sGFSR.SMCF.mask | sGFSR.UCBF.mask | sGFSR.UCIF.mask | sGFSR.CAF.mask;

/** sGFSR/sGFSYNR0-2/sGFAR. */
export class GlobalFaultRegs {
  sgfsr = 0;
  sgfsynr0 = 0;
  sgfsynr1 = 0;
  sgfsynr2 = 0;
  sgfarLo = 0;
  sgfarHi = 0;

  reset(): void {
    this.sgfsr = this.sgfsynr0 = this.sgfsynr1 = this.sgfsynr2 = this.sgfarLo = this.sgfarHi = 0;
  }

  /**
   * Record a global fault (`bit`: an sGFSR fault bit). Returns true if the syndrome was latched,
   * false if a fault was already recorded (then only MULTI is set).
   */
  record(bit: number, sid: number, addr: number, write: boolean, priv: boolean, instr: boolean): boolean {
    if (this.sgfsr & SGFSR_FAULT_BITS) {
      this.sgfsr = (this.sgfsr | sGFSR.MULTI.mask) >>> 0;
      return false;
    }
    this.sgfsr = (this.sgfsr | bit) >>> 0;
    // Clients of this machine are non-secure: NSSTATE and NSATTR are set.
    this.sgfsynr0 =
      (write ? sGFSYNR0.WNR.mask : 0) |
      (priv ? sGFSYNR0.PNU.mask : 0) |
      (instr && !write ? sGFSYNR0.IND.mask : 0) |
      sGFSYNR0.NSSTATE.mask |
      sGFSYNR0.NSATTR.mask;
    this.sgfsynr1 = sGFSYNR1.StreamID.encode(sid & 0xffff);
    this.sgfsynr2 = 0;
    this.sgfarLo = addr >>> 0;
    this.sgfarHi = Math.floor(addr / TWO_32) >>> 0;
    return true;
  }
}

/** What a context fault records. */
export interface ContextFaultInfo {
  fsrBit: number;
  level: number;
  /** FAR value: low and high words (the high word carries a sign-extended VA for TTBR1 faults). */
  farLo: number;
  farHi: number;
  write: boolean;
  priv: boolean;
  instr: boolean;
  ptwf: boolean;
  /** FSYNR0.S1CBNDX for a stage 2 fault of a nested translation, -1 otherwise. */
  s1Cbndx: number;
  /** IPAFAR, -1 when not a stage 2 fault. */
  ipa: number;
  sid: number;
  format: number;
}

/**
 * Latch a context fault into `bank`. Returns true if its syndrome was latched, false when a fault
 * was already recorded (FSR.MULTI set, the first fault's syndrome kept).
 */
export function latchContextFault(bank: ContextBank, f: ContextFaultInfo): boolean {
  if (bank.fsr & FSR_FAULT_BITS) {
    bank.fsr = (bank.fsr | FSR.MULTI.mask) >>> 0;
    return false;
  }
  bank.fsr = (bank.fsr & ~FSR.FORMAT.mask) | f.fsrBit | FSR.FORMAT.encode(f.format);
  bank.fsr >>>= 0;
  bank.farLo = f.farLo >>> 0;
  bank.farHi = f.farHi >>> 0;
  bank.fsynr0 =
    (FSYNR0.PLVL.encode(f.level & 3) |
      (f.write ? FSYNR0.WNR.mask : 0) |
      (f.priv ? FSYNR0.PNU.mask : 0) |
      (f.instr && !f.write ? FSYNR0.IND.mask : 0) |
      FSYNR0.NSATTR.mask |
      (f.ptwf ? FSYNR0.PTWF.mask : 0) |
      (f.s1Cbndx >= 0 ? FSYNR0.S1CBNDX.encode(f.s1Cbndx) : 0)) >>>
    0;
  bank.fsynr1 = 0;
  if (f.ipa >= 0) {
    bank.ipafarLo = f.ipa >>> 0;
    bank.ipafarHi = Math.floor(f.ipa / TWO_32) >>> 0;
  }
  bank.cbfrsynra = f.sid & 0xffff;
  return true;
}

/** Levels the interrupt outputs follow, computed from register state by the SMMU. */
export interface IrqLevels {
  global(): boolean;
  /** Context line `line` (some bank signalling it has a fault recorded and CFIE). */
  context(line: number): boolean;
}

export interface IrqStats {
  globalRaised: number;
  contextRaised: number[];
}

/** Turns levels into edges on the machine's interrupt lines, in scheduled steps. */
export class IrqOutputs {
  private prevGlobal = false;
  private readonly prevContext: boolean[];
  private kickGlobalPending = false;
  private readonly kickContextPending: boolean[];
  private scheduled = false;
  readonly stats: IrqStats;

  constructor(
    private readonly scheduler: Scheduler,
    private readonly lines: SmmuV2Irqs,
    private readonly latencyNs: number,
    private readonly levels: IrqLevels,
    private readonly label: string,
  ) {
    this.prevContext = lines.context.map(() => false);
    this.kickContextPending = lines.context.map(() => false);
    this.stats = { globalRaised: 0, contextRaised: lines.context.map(() => 0) };
  }

  get numContextLines(): number {
    return this.lines.context.length;
  }

  /** Something that may change a level happened: evaluate the lines in a scheduled step. */
  update(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.scheduler.schedule(this.latencyNs, () => this.evaluate(), `${this.label} irq`);
  }

  /** Software wrote sGFSR: if the global level stays high, signal it again. */
  kickGlobal(): void {
    this.kickGlobalPending = true;
    this.update();
  }

  /** Software wrote a bank's FSR: if its line stays high, signal it again. */
  kickContext(line: number): void {
    if (line >= 0 && line < this.kickContextPending.length) this.kickContextPending[line] = true;
    this.update();
  }

  /** Forget every level (SMMU reset). */
  reset(): void {
    this.prevGlobal = false;
    this.prevContext.fill(false);
    this.kickGlobalPending = false;
    this.kickContextPending.fill(false);
  }

  private evaluate(): void {
    this.scheduled = false;
    const g = this.levels.global();
    if (g && (!this.prevGlobal || this.kickGlobalPending)) {
      for (const l of this.lines.global) l.raise();
      this.stats.globalRaised++;
    }
    this.prevGlobal = g;
    this.kickGlobalPending = false;
    for (let i = 0; i < this.lines.context.length; i++) {
      const lv = this.levels.context(i);
      if (lv && (!this.prevContext[i] || this.kickContextPending[i])) {
        this.lines.context[i].raise();
        this.stats.contextRaised[i]++;
      }
      this.prevContext[i] = lv;
      this.kickContextPending[i] = false;
    }
  }
}
