/**
 * MMU notifiers: how a secondary MMU that shares a process's page tables (an SMMU doing SVA) hears
 * that they changed. `invalidateRange(start, end)` fires after PTEs in [start, end) were cleared or
 * changed and before any frame they pointed at is freed (the point where Linux calls
 * arch_invalidate_secondary_tlbs()); `release(mm)` fires once when the address space exits, before
 * its pages are unmapped, after which the subscription gets no more callbacks.
 *
 * Callbacks may return a promise (an SMMU waits for CMD_SYNC in virtual time); the mm waits for all
 * of them before freeing the frames. A registration holds an mm_count reference (mmgrab), dropped
 * by unregister/put.
 */
import { KernelError } from '../bus/errno.js';
import type { Mm } from './mm.js';

export interface MmuNotifierOps {
  /** PTEs in [start, end) (end exclusive, page aligned) changed; drop cached translations. */
  invalidateRange?(start: number, end: number): void | Promise<void>;
  /** The address space is going away; stop using its page tables. */
  release?(mm: Mm): void | Promise<void>;
}

export class MmuNotifier {
  /** Holding its mm_count reference: not yet unregistered or put. */
  private holding = true;

  constructor(
    readonly mm: Mm,
    readonly ops: MmuNotifierOps,
  ) {}

  get registered(): boolean {
    return this.holding;
  }

  /** @internal unregister/put bookkeeping */
  dropReference(): void {
    this.holding = false;
  }
}

/** An mm's subscriptions. */
export class MmuNotifierList {
  private subs: MmuNotifier[] = [];

  get count(): number {
    return this.subs.length;
  }

  add(sub: MmuNotifier): void {
    this.subs.push(sub);
  }

  /** Take `sub` off the list; false if it was not on it. */
  remove(sub: MmuNotifier): boolean {
    const i = this.subs.indexOf(sub);
    if (i < 0) return false;
    this.subs.splice(i, 1);
    return true;
  }

  /**
   * Tell every subscriber that [start, end) changed; resolves when all are done. Every subscriber
   * is called even if one throws; the first failure is reported after all have finished.
   */
  invalidateRange(start: number, end: number): Promise<void> | undefined {
    if (this.subs.length === 0) return undefined;
    return settleAll([...this.subs].map((sub) => () => sub.ops.invalidateRange?.(start, end)));
  }

  /** Exit: release every subscriber once and empty the list. */
  // kernel: __mmu_notifier_release() [mmu_notifier.c]
  release(mm: Mm): Promise<void> {
    const subs = this.subs;
    this.subs = [];
    return settleAll(subs.map((sub) => () => sub.ops.release?.(mm)));
  }
}

/** Run every callback, wait for those that return promises, then throw the first failure if any. */
async function settleAll(calls: (() => void | Promise<void> | undefined)[]): Promise<void> {
  const pending: Promise<void>[] = [];
  let failed = false;
  let first: unknown;
  for (const call of calls) {
    try {
      const r = call();
      if (r) pending.push(r);
    } catch (e) {
      if (!failed) first = e;
      failed = true;
    }
  }
  for (const r of await Promise.allSettled(pending)) {
    if (r.status === 'rejected' && !failed) {
      first = r.reason;
      failed = true;
    }
  }
  if (failed) throw first;
}

/**
 * Subscribe to `mm`'s page-table changes. The mm must still have users (EINVAL after exit).
 */
// kernel: mmu_notifier_register() [mmu_notifier.c]
export function mmuNotifierRegister(mm: Mm, ops: MmuNotifierOps): MmuNotifier {
  if (mm.users === 0) {
    throw new KernelError('EINVAL', `mmu_notifier_register: mm of pid ${mm.pid} has exited`);
  }
  mm.mmgrab();
  const sub = new MmuNotifier(mm, ops);
  mm.notifiers.add(sub);
  return sub;
}

/**
 * Unsubscribe. As in Linux, if the mm has not exited yet the subscriber's `release` is called
 * first, so it tears its use of the page tables down. Drops the registration's mm reference.
 */
// kernel: mmu_notifier_unregister() [mmu_notifier.c]
export async function mmuNotifierUnregister(sub: MmuNotifier): Promise<void> {
  if (!sub.registered) throw new KernelError('EINVAL', `mmu_notifier_unregister: notifier on pid ${sub.mm.pid} is not registered`);
  try {
    if (sub.mm.notifiers.remove(sub)) await sub.ops.release?.(sub.mm);
  } finally {
    sub.dropReference();
    sub.mm.mmdrop();
  }
}

/**
 * Unsubscribe without calling `release` (the subscriber has already stopped using the tables).
 * Drops the registration's mm reference.
 */
// kernel: mmu_notifier_put() [mmu_notifier.c]
export function mmuNotifierPut(sub: MmuNotifier): void {
  if (!sub.registered) throw new KernelError('EINVAL', `mmu_notifier_put: notifier on pid ${sub.mm.pid} is not registered`);
  sub.mm.notifiers.remove(sub);
  sub.dropReference();
  sub.mm.mmdrop();
}
