/**
 * Stalled transactions: the transactions an SMMUv3 holds after a stall fault, each identified by
 * (StreamID, STAG) as the stall event record reports it, until CMD_RESUME or CMD_STALL_TERM
 * releases it.
 *
 * Supports: up to IDR5.STALL_MAX held transactions, STAG allocation that never reuses a tag still
 * held, lookup that checks the StreamID matches the STAG (a mismatch is a no-op, as the spec says).
 * Does not support: suppression of duplicate stall records (every stall gets its own STAG).
 */
import type { DmaDone, DmaRequest } from '../dma.js';

export interface StalledTransaction {
  readonly sid: number;
  readonly stag: number;
  readonly req: DmaRequest;
  readonly done: DmaDone;
  /** Virtual time it stalled. */
  readonly since: number;
}

/** A held transaction, with the order it stalled in (for the walks that must follow it). */
interface Held extends StalledTransaction {
  readonly seq: number;
}

/** A Held made with `new`, one per stall (not an object literal V8 might pretenure). */
class HeldTransaction implements Held {
  constructor(
    readonly sid: number,
    readonly stag: number,
    readonly req: DmaRequest,
    readonly done: DmaDone,
    readonly since: number,
    readonly seq: number,
  ) {}
}

/**
 * The held transactions live in a fixed open-addressing table keyed by STAG (linear probing,
 * deletion by backward shift): a Map here would grow and shrink its hash table with every burst
 * of stalls, and the garbage collector keeps the tables a long-lived Map discarded (and the
 * transactions they held) alive until its next full collection.
 */
export class StallTracker {
  private readonly slots: (Held | null)[];
  private readonly mask: number;
  private held = 0;
  private next = 0;
  private seq = 0;

  constructor(readonly capacity: number) {
    let size = 8;
    while (size < 2 * capacity) size *= 2;
    this.slots = new Array<Held | null>(size).fill(null);
    this.mask = size - 1;
  }

  get count(): number {
    return this.held;
  }

  /** Hold a transaction; returns its STAG, or -1 when the SMMU cannot hold another one. */
  hold(sid: number, req: DmaRequest, done: DmaDone, now: number): number {
    if (this.held >= this.capacity) return -1;
    let stag = this.next;
    while (this.find(stag) >= 0) stag = (stag + 1) & 0xffff;
    this.next = (stag + 1) & 0xffff;
    let i = stag & this.mask;
    while (this.slots[i] !== null) i = (i + 1) & this.mask;
    this.slots[i] = new HeldTransaction(sid, stag, req, done, now, this.seq++);
    this.held++;
    return stag;
  }

  /** Release the transaction with this STAG if it belongs to `sid`. */
  take(sid: number, stag: number): StalledTransaction | undefined {
    const i = this.find(stag);
    if (i < 0) return undefined;
    const t = this.slots[i]!;
    if (t.sid !== sid) return undefined;
    this.removeAt(i);
    return t;
  }

  /** Release every transaction of `sid` (CMD_STALL_TERM), oldest first. */
  takeStream(sid: number): StalledTransaction[] {
    const out = this.ordered().filter((t) => t.sid === sid);
    for (const t of out) this.removeAt(this.find(t.stag));
    return out;
  }

  /** Release everything (the SMMU being disabled), oldest first. */
  takeAll(): StalledTransaction[] {
    const out = this.ordered();
    this.slots.fill(null);
    this.held = 0;
    return out;
  }

  /** The held transactions, oldest first (tests, reports). */
  list(): StalledTransaction[] {
    return this.ordered();
  }

  /** The slot holding `stag`, or -1. */
  private find(stag: number): number {
    let i = stag & this.mask;
    for (;;) {
      const t = this.slots[i];
      if (t === null) return -1;
      if (t.stag === stag) return i;
      i = (i + 1) & this.mask;
    }
  }

  /** Empty slot `i`, moving back the entries of its probe run that can fill it. */
  private removeAt(i: number): void {
    const slots = this.slots;
    const mask = this.mask;
    slots[i] = null;
    this.held--;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const t = slots[j];
      if (t === null) return;
      const home = t.stag & mask;
      // t may move to i when its home is not in (i, j] (cyclically).
      if (i <= j ? home <= i || home > j : home <= i && home > j) {
        slots[i] = t;
        slots[j] = null;
        i = j;
      }
    }
  }

  /** Every held transaction, in the order it stalled. */
  private ordered(): Held[] {
    const out: Held[] = [];
    for (const t of this.slots) if (t !== null) out.push(t);
    return out.sort((a, b) => a.seq - b.seq);
  }
}
