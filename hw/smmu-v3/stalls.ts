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

export class StallTracker {
  private readonly held = new Map<number, StalledTransaction>();
  private next = 0;

  constructor(readonly capacity: number) {}

  get count(): number {
    return this.held.size;
  }

  /** Hold a transaction; returns its STAG, or -1 when the SMMU cannot hold another one. */
  hold(sid: number, req: DmaRequest, done: DmaDone, now: number): number {
    if (this.held.size >= this.capacity) return -1;
    let stag = this.next;
    while (this.held.has(stag)) stag = (stag + 1) & 0xffff;
    this.next = (stag + 1) & 0xffff;
    this.held.set(stag, { sid, stag, req, done, since: now });
    return stag;
  }

  /** Release the transaction with this STAG if it belongs to `sid`. */
  take(sid: number, stag: number): StalledTransaction | undefined {
    const t = this.held.get(stag);
    if (t === undefined || t.sid !== sid) return undefined;
    this.held.delete(stag);
    return t;
  }

  /** Release every transaction of `sid` (CMD_STALL_TERM). */
  takeStream(sid: number): StalledTransaction[] {
    const out: StalledTransaction[] = [];
    for (const [stag, t] of this.held) {
      if (t.sid === sid) {
        out.push(t);
        this.held.delete(stag);
      }
    }
    return out;
  }

  /** Release everything (the SMMU being disabled). */
  takeAll(): StalledTransaction[] {
    const out = [...this.held.values()];
    this.held.clear();
    return out;
  }

  /** The held transactions (tests, reports). */
  list(): StalledTransaction[] {
    return [...this.held.values()];
  }
}
