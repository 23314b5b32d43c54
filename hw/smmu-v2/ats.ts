/**
 * Address translation operations of a context bank: ATS1PR, ATS1PW, ATS1UR, ATS1UW, PAR and ATSR.
 *
 * Supports: a write of the VA (VA[63:12] in the AArch64 format, VA[31:12] in AArch32) starts a
 * stage 1 translation with the privilege and direction the register names; ATSR.ACTIVE reads 1
 * until it completes `timing.atsNs` later, in a scheduled step; PAR then holds PA[47:12] with SH,
 * NS and the MAIR attribute byte (F=0), or F=1 with the fault type (TF/AFF/PF/EF in FSR bit
 * positions; an address-size fault reports as TF), PLVL[33:32] and STAGE[35]. The TLB is consulted
 * but not filled. A bank with SCTLR.M=0 reports the VA itself. ATS1* are available when ID0.S1TS is
 * set and, on SMMUv2, ID0.ATOSNS is clear; otherwise writes are ignored (logged), as are writes
 * while ATSR.ACTIVE.
 * Does not support: recording ATS faults in FSR (FSYNR0.ATOF), the GR0 GATS* block, stage 1 + 2
 * (ATS12*) operations: a stage 2 only bank answers with a stage 2 translation fault.
 */
import { vtime } from '../vtime.js';
import createDebug from 'debug';
import type { ContextBank } from './context-bank.js';
import { CFG_DISABLED, CFG_OK } from './context-bank.js';
import { fsrBitFor } from './faults.js';
import * as R from './regs.js';
import type { SmmuV2State } from './state.js';
import type { Translator } from './translate.js';
import { Translation } from './translate.js';
import { ACCESS_PRIV, ACCESS_WRITE } from '../walker/index.js';

const log = createDebug('iommu:hw:smmu-v2');
const TWO_32 = 0x1_0000_0000;

export class AddressTranslationOps {
  private readonly t = new Translation();

  constructor(
    private readonly s: SmmuV2State,
    private readonly translator: Translator,
  ) {}

  get supported(): boolean {
    return this.s.options.stage1 && (this.s.version === 1 || !this.s.options.atosns);
  }

  /** A write of ATS1PR/PW/UR/UW (`reg`) with the 64-bit operand `lo`/`hi`. */
  start(b: ContextBank, reg: number, lo: number, hi: number): void {
    if (!this.supported) {
      if (log.enabled) log('%s %s: cb%d: address translation operations are not supported (ID0.ATOSNS): write ignored', vtime(this.s.scheduler.now), this.s.name, b.index);
      return;
    }
    if (b.atsActive) {
      if (log.enabled) log('%s %s: cb%d: ATS1* written while ATSR.ACTIVE: ignored', vtime(this.s.scheduler.now), this.s.name, b.index);
      return;
    }
    const write = reg === R.CB_ATS1PW || reg === R.CB_ATS1UW;
    const priv = reg === R.CB_ATS1PR || reg === R.CB_ATS1PW;
    // Fold the VA to the upstream bus width (a sign-extended TTBR1 VA keeps its bits up to the sign
    // bit) without ever forming the 64-bit value in a double.
    const hiBits = Math.min(this.s.options.ubs, 53) - 32;
    const va = b.isAarch64(this.s.env)
      ? (hiBits > 0 ? (hi % Math.pow(2, hiBits)) * TWO_32 : 0) + ((lo & ~0xfff) >>> 0)
      : (lo & ~0xfff) >>> 0;
    b.atsActive = true;
    this.s.scheduler.schedule(
      this.s.options.timing.atsNs,
      () => {
        b.atsActive = false;
        this.perform(b, va, (write ? ACCESS_WRITE : 0) | (priv ? ACCESS_PRIV : 0));
      },
      `${this.s.name} cb${b.index} ATS`,
    );
  }

  private perform(b: ContextBank, va: number, access: number): void {
    const cfg = this.s.decoded(b);
    if (cfg.status === CFG_DISABLED) {
      this.parOk(b, va, 0, 0, false);
      return;
    }
    const stage1 = cfg.stage1;
    if (cfg.status !== CFG_OK || !stage1) {
      this.parFault(b, R.FSR.TF.mask, 0, stage1 || cfg.status !== CFG_OK ? 1 : 2);
      return;
    }
    const t = this.t;
    this.translator.translate(b, cfg, va, access, t, false);
    if (t.ok) this.parOk(b, t.pa, t.attr, t.sh, t.ns);
    else this.parFault(b, t.kind === 'address-size' ? R.FSR.TF.mask : fsrBitFor(t.kind), t.level, t.stage);
  }

  private parOk(b: ContextBank, pa: number, attr: number, sh: number, ns: boolean): void {
    const page = pa - (pa % 4096);
    b.parLo = ((page >>> 0) & R.PAR_LO.PA_LO.mask) | R.PAR_LO.SH.encode(sh) | (ns ? R.PAR_LO.NS.mask : 0);
    b.parLo >>>= 0;
    b.parHi = (R.PAR_HI.PA_HI.encode(Math.floor(page / TWO_32) & 0xffff) | R.PAR_HI.ATTR.encode(attr & 0xff)) >>> 0;
  }

  private parFault(b: ContextBank, fsrBit: number, level: number, stage: number): void {
    b.parLo = (R.PAR_LO.F.mask | (fsrBit & 0x7e)) >>> 0;
    b.parHi = (R.PAR_HI.PLVL.encode(level & 3) | (stage === 2 ? R.PAR_HI.STAGE.mask : 0)) >>> 0;
  }
}
