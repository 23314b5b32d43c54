/**
 * The result of handing one transaction (or one configuration lookup) to the SMMUv3 translation
 * logic: an output address, a silent abort, or a fault together with everything its event record
 * and its fault-handling decision (record? stall? abort or RAZ/WI?) need.
 *
 * One Outcome is owned by the caller and overwritten by each lookup, so the common path allocates
 * nothing. Supports every architected event the model raises on the transaction path.
 */

const hex = (v: number): string => `0x${v.toString(16)}`;

export const OUT_OK = 0;
/** Terminated with an abort; `eventType` says which event to record (0: none). */
export const OUT_ABORT = 1;
/** A Translation-related fault (F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION): A/R/S apply. */
export const OUT_FAULT = 2;

export class Outcome {
  kind = OUT_OK;
  /** Output address (OUT_OK). */
  pa = 0;
  /** OUT_OK without translation: the STE (or S1DSS) bypasses every stage. */
  bypass = false;
  /** Event type to record, 0 for none. */
  eventType = 0;
  /** Stage that faulted: true for stage 2. */
  s2 = false;
  /** CLASS of the fault: CD fetch, stage 1 table walk or input address. */
  cls = 0;
  /** IPA of a stage 2 fault, or -1. */
  ipa = -1;
  /** FetchAddr of *_FETCH / F_WALK_EABT events, or -1. */
  fetchAddr = -1;
  /** SubstreamID to report for C_BAD_SUBSTREAMID (index of the CD that could not be located). */
  reportSsid = -1;
  /** A Translation-related fault that may stall (CD.S / STE.S2S with a permitting stall model). */
  stall = false;
  /** Record the fault (CD.R / STE.S2R; stalls always record). */
  record = true;
  /** Terminate with an abort (true) or RAZ/WI (false, CD.A == 0). */
  abort = true;
  /**
   * The reason given, or null when it is a walk fault's, described by the fields below and built
   * only when read (a stalled transaction or a PRI request never reads it).
   */
  private reason: string | null = '';
  /** A walk fault's kind, level and input address, for the reason built on demand. */
  private walkFault = '';
  private walkLevel = 0;
  private walkAddr = 0;

  /** Human-readable reason, for completions and logs. */
  get detail(): string {
    if (this.reason === null) {
      const s2 = this.s2;
      this.reason = `stage ${s2 ? 2 : 1} ${this.walkFault} fault at level ${this.walkLevel} for ${hex(this.walkAddr)}${s2 ? ` (IPA ${hex(this.ipa)})` : ''}`;
    }
    return this.reason;
  }

  set detail(v: string) {
    this.reason = v;
  }

  /** The reason of a walk fault of `kind` at `level` for `addr` (stage and IPA from `s2`, `ipa`). */
  setWalkFaultDetail(kind: string, level: number, addr: number): void {
    this.reason = null;
    this.walkFault = kind;
    this.walkLevel = level;
    this.walkAddr = addr;
  }

  reset(): void {
    this.kind = OUT_OK;
    this.pa = 0;
    this.bypass = false;
    this.eventType = 0;
    this.s2 = false;
    this.cls = 0;
    this.ipa = -1;
    this.fetchAddr = -1;
    this.reportSsid = -1;
    this.stall = false;
    this.record = true;
    this.abort = true;
    this.reason = '';
  }

  /** Terminate with an abort and (when `eventType` != 0) record that event. */
  setAbort(eventType: number, detail: string): false {
    this.kind = OUT_ABORT;
    this.eventType = eventType;
    this.reason = detail;
    return false;
  }
}
