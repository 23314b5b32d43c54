/**
 * The result of handing one transaction (or one configuration lookup) to the SMMUv3 translation
 * logic: an output address, a silent abort, or a fault together with everything its event record
 * and its fault-handling decision (record? stall? abort or RAZ/WI?) need.
 *
 * One Outcome is owned by the caller and overwritten by each lookup, so the common path allocates
 * nothing. Supports every architected event the model raises on the transaction path.
 */

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
  /** Human-readable reason, for completions and logs. */
  detail = '';

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
    this.detail = '';
  }

  /** Terminate with an abort and (when `eventType` != 0) record that event. */
  setAbort(eventType: number, detail: string): false {
    this.kind = OUT_ABORT;
    this.eventType = eventType;
    this.detail = detail;
    return false;
  }
}
