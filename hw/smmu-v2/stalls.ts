/**
 * Transactions the SMMU holds: stalled on a context fault, or waiting behind one.
 *
 * Supports, per context bank:
 * - stall (SCTLR.CFCFG=1): a faulting transaction is held, FSR.SS set, until RESUME; every
 *   transaction stalled in the bank is retried (TnR=0: translated again, so it may stall again) or
 *   terminated (TnR=1) by one RESUME, in the order they stalled;
 * - the MMU-500 rule that a RESUME write is ignored while FSR still records a fault (TF … UUT or
 *   MULTI): software must clear FSR first; a RESUME with nothing stalled, or while a previous one
 *   is still being carried out, is ignored too;
 * - hit under previous context fault: with SCTLR.HUPCF=1 other transactions of the bank are
 *   translated as usual while one is stalled (a second fault stalls as well and sets MULTI if the
 *   first is still recorded); with HUPCF=0 they wait, in arrival order, behind the stall and are
 *   admitted again once RESUME has been carried out; in terminate mode (CFCFG=0) with HUPCF=0 a
 *   transaction arriving while FSR still records a fault is terminated without being translated;
 * - masters that cannot stall (`dma-can-stall` absent): the SMMU stalls them all the same, as the
 *   hardware does (nothing in the architecture knows what a master tolerates); the model counts
 *   such stalls and reports them in its trace.
 * Does not support: stall timeouts, SCTLR.HUPCF/CFCFG changes taking effect on transactions already
 * held (they keep waiting for RESUME).
 */
import type { DmaDone, DmaRequest } from '../dma.js';

/** A transaction on the slow path: crossing blocks, faulting, stalled or waiting. */
export class Txn {
  /** Bytes of the request translated so far (the next input address is req.addr + offset). */
  offset = 0;
  /** Translated pieces: output address and length pairs. */
  readonly pieces: number[] = [];
  /** Bank the transaction is stalled in (-1 when not stalled). */
  stalledIn = -1;

  constructor(
    readonly req: DmaRequest,
    readonly done: DmaDone,
    /** The bank its stream maps to (whose HUPCF/CFCFG govern its admission). */
    readonly cbndx: number,
    /** ACCESS_* bits after S2CR.PRIVCFG/INSTCFG. */
    readonly access: number,
  ) {}
}

export class StallState {
  /** Transactions stalled in this bank, in fault order. */
  readonly stalled: Txn[] = [];
  /** Transactions of this bank waiting behind a stall (HUPCF=0), in arrival order. */
  readonly waiting: Txn[] = [];
  /** A RESUME has been accepted and is being carried out. */
  resumePending = false;

  get holding(): boolean {
    return this.stalled.length > 0 || this.waiting.length > 0;
  }

  clear(): void {
    this.stalled.length = 0;
    this.waiting.length = 0;
    this.resumePending = false;
  }
}
