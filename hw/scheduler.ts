/**
 * Virtual time and the event scheduler.
 *
 * Time is a number of nanoseconds that only moves when the scheduler runs an event: there are no
 * wall-clock timers anywhere. Events due at the same instant run in an order the seeded PRNG picks
 * (drawn when the event is scheduled), so `(scenario, seed)` replays exactly and sweeping seeds
 * shakes out ordering races.
 *
 * Kernel "threads" are async functions. `runUntilSettled` alternates between letting every pending
 * promise continuation run (a macrotask boundary drains the microtask queue) and executing the next
 * due event, so software waiting on `delay()` or on an interrupt makes progress exactly as virtual
 * time advances.
 *
 * `DEBUG=iommu:hw:scheduler` prints every step (virtual time, step number, label).
 */
import createDebug from 'debug';
import { DebugGate } from './debug-gate.js';
import { vtime } from './vtime.js';
import { Prng } from './prng.js';

const log = createDebug('iommu:hw:scheduler');
const logGate = new DebugGate(log);

export type EventFn = () => void;

/**
 * A scheduled event is its own handle: scheduling allocates this one object (no handle or closure
 * beside it), and `cancel` takes it out of the heap.
 */
class ScheduledEvent implements EventHandle {
  /** Position in the heap; -1 once it ran or was cancelled. */
  index = -1;

  constructor(
    protected readonly owner: Scheduler,
    /** (Written only when a RecurringEvent is armed again.) */
    public time: number,
    public key: number,
    public seq: number,
    readonly fn: EventFn,
    readonly label: string,
  ) {}

  cancel(): boolean {
    return this.owner.remove(this);
  }
}

/**
 * An event its owner arms again and again (a model's recurring step, a queue's watchdog).
 * `arm(delayNs)` is `cancel()` + `schedule()`: the same ordering draw and sequence number, so runs
 * replay as they would with fresh events, but one object serves every arming.
 */
export interface RecurringEvent extends EventHandle {
  /** Schedule it `delayNs` from now; a pending arming is taken back first. */
  arm(delayNs: number): void;
  /** True while armed and not yet run or cancelled. */
  readonly pending: boolean;
}

class RecurringScheduledEvent extends ScheduledEvent implements RecurringEvent {
  arm(delayNs: number): void {
    this.owner.rearm(this, delayNs);
  }

  get pending(): boolean {
    return this.index >= 0;
  }
}

export interface EventHandle {
  /** Take the event back; true if it was still pending (it will not run). */
  cancel(): boolean;
  readonly time: number;
}

export class DeadlockError extends Error {
  constructor(what: string, now: number) {
    super(`${what} is waiting at t=${now}ns but no event is scheduled: nothing can wake it`);
    this.name = 'DeadlockError';
  }
}

export class TimeLimitError extends Error {
  constructor(what: string, limit: number) {
    super(`${what} did not finish within ${limit}ns of virtual time`);
    this.name = 'TimeLimitError';
  }
}

// A next-tick callback queued from a promise job runs only once V8's microtask queue is empty: every
// software continuation that was runnable has run (and queued its hardware work) before the next event
// executes. A run therefore executes each event from such a callback ("a turn"), and arms the next turn
// from a reaction on a settled promise: a promise job queued behind the continuations the event
// released, which then queues the next-tick callback. Per event that is one reaction and one next-tick
// record: no promise of its own, no async frame resumed.
//
// It holds only from inside a promise job. Called straight from a host callback (a timer, an
// immediate, a worker's message, or a next-tick callback itself), Node runs queued next-tick callbacks
// *before* the promise jobs that callback left pending, so a turn armed directly would come back with the
// kernel's continuations still queued and the run would see a deadlock at t=0. Every turn is therefore
// armed from a promise job, the first one included.
const SETTLED: Promise<void> = Promise.resolve();

// (Read once: `process` is a getter on Node's global object, called on every access.)
const nextTick = process.nextTick;

/**
 * The tie-break key of a draw: its bits with the sign bit flipped, as an int32. Signed order of keys is
 * the unsigned order of draws, and an int32 is a small integer to V8 (a draw above 2^31 would be a
 * boxed double, allocated per event).
 */
function orderKey(draw: number): number {
  return draw ^ 0x8000_0000;
}

function checkDelay(delayNs: number, label: string): void {
  if (!(delayNs >= 0) || !Number.isFinite(delayNs)) {
    throw new RangeError(`scheduler: delay must be a finite number >= 0, got ${delayNs} (${label})`);
  }
}

export class Scheduler {
  private heap: ScheduledEvent[] = [];
  private seq = 0;
  private _now = 0;
  private _steps = 0;
  readonly prng: Prng;
  /** Optional observer of executed events (the machine forwards it to the trace). */
  onStep: ((label: string, time: number) => void) | null = null;

  constructor(seed: number) {
    this.prng = new Prng(seed);
  }

  /** Current virtual time in nanoseconds. */
  get now(): number {
    return this._now;
  }

  /** Number of events executed so far. */
  get steps(): number {
    return this._steps;
  }

  get pending(): number {
    return this.heap.length;
  }

  /** Run `fn` after `delayNs` of virtual time (0: at the current instant, after what is running). */
  schedule(delayNs: number, fn: EventFn, label = 'event'): EventHandle {
    checkDelay(delayNs, label);
    const ev = new ScheduledEvent(this, this._now + delayNs, orderKey(this.prng.nextU32()), this.seq++, fn, label);
    this.push(ev);
    // A cancelled event leaves the heap at once: timers armed and cancelled by the million cost
    // nothing later.
    return ev;
  }

  /** An event to arm (and re-arm) later with `arm(delayNs)`: see RecurringEvent. Not pending yet. */
  recurring(fn: EventFn, label = 'event'): RecurringEvent {
    return new RecurringScheduledEvent(this, 0, 0, 0, fn, label);
  }

  /** @internal */ rearm(ev: ScheduledEvent, delayNs: number): void {
    checkDelay(delayNs, ev.label);
    this.remove(ev);
    ev.time = this._now + delayNs;
    ev.key = orderKey(this.prng.nextU32());
    ev.seq = this.seq++;
    this.push(ev);
  }

  /**
   * A one-shot timer: `fn` runs after `delayNs` unless cancelled first. `cancel()` returns true if the
   * timer was still pending (and now never fires).
   */
  startTimer(delayNs: number, fn: EventFn, label = 'timer'): { cancel(): boolean } {
    return this.schedule(delayNs, fn, label);
  }

  /** A promise that resolves after `delayNs` of virtual time. */
  delay(delayNs: number, label = 'delay'): Promise<void> {
    return new Promise((resolve) => this.schedule(delayNs, resolve, label));
  }

  /** Execute the next due event synchronously. Returns false when none is scheduled. */
  step(): boolean {
    const ev = this.pop();
    if (!ev) return false;
    this._now = ev.time;
    this._steps++;
    if (logGate.enabled) log('%s step %d: %s', vtime(ev.time), this._steps, ev.label);
    if (this.onStep) this.onStep(ev.label, ev.time);
    ev.fn();
    return true;
  }

  /** Time of the next event, or null. */
  peekTime(): number | null {
    return this.heap.length > 0 ? this.heap[0].time : null;
  }

  /**
   * Run events (draining software continuations between them) until `task` settles. Throws
   * DeadlockError if the task is still pending with nothing scheduled, TimeLimitError if virtual time
   * passes `limitNs` from now. Returns the task's value.
   */
  runUntilSettled<T>(task: Promise<T>, what = 'task', limitNs = Number.POSITIVE_INFINITY): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      let value: T | undefined;
      let error: unknown;
      let failed = false;
      task.then(
        (v) => {
          settled = true;
          value = v;
        },
        (e: unknown) => {
          settled = true;
          failed = true;
          error = e;
        },
      );
      const deadline = this._now + limitNs;
      this.drive(() => {
        if (settled) {
          if (failed) reject(error);
          else resolve(value as T);
          return true;
        }
        const next = this.peekTime();
        if (next === null) throw new DeadlockError(what, this._now);
        if (next > deadline) throw new TimeLimitError(what, limitNs);
        this.step();
        return false;
      }, reject);
    });
  }

  /** Run everything due within the next `durationNs`, then leave time at now + durationNs. */
  runFor(durationNs: number): Promise<void> {
    const end = this._now + durationNs;
    return new Promise<void>((resolve, reject) => {
      this.drive(() => {
        const next = this.peekTime();
        if (next === null || next > end) {
          this._now = end;
          resolve();
          return true;
        }
        this.step();
        return false;
      }, reject);
    });
  }

  /** Run until nothing is scheduled (or `limitNs` passes). Returns the number of events run. */
  runUntilIdle(limitNs = Number.POSITIVE_INFINITY): Promise<number> {
    const start = this._steps;
    const deadline = this._now + limitNs;
    return new Promise<number>((resolve, reject) => {
      this.drive(() => {
        const next = this.peekTime();
        if (next === null || next > deadline) {
          resolve(this._steps - start);
          return true;
        }
        this.step();
        return false;
      }, reject);
    });
  }

  /**
   * Call `turn` each time software has nothing left to run (see SETTLED) until it returns true; an
   * exception it throws (an event's included) ends the run through `fail`.
   */
  private drive(turn: () => boolean, fail: (e: unknown) => void): void {
    const tick = (): void => {
      let finished: boolean;
      try {
        finished = turn();
      } catch (e) {
        fail(e);
        return;
      }
      if (!finished) void SETTLED.then(arm);
    };
    const arm = (): void => nextTick(tick);
    void SETTLED.then(arm);
  }

  /** Synchronous variant for pure-hardware tests: runs due events without draining software. */
  runSyncUntilIdle(limitNs = Number.POSITIVE_INFINITY, maxSteps = 10_000_000): number {
    const start = this._steps;
    const deadline = this._now + limitNs;
    for (;;) {
      const next = this.peekTime();
      if (next === null || next > deadline) break;
      if (this._steps - start >= maxSteps) {
        throw new TimeLimitError(`runSyncUntilIdle (${maxSteps} steps)`, limitNs);
      }
      this.step();
    }
    return this._steps - start;
  }

  // Binary min-heap ordered by (time, key, seq); each event knows its index so it can be removed.
  private less(a: ScheduledEvent, b: ScheduledEvent): boolean {
    if (a.time !== b.time) return a.time < b.time;
    if (a.key !== b.key) return a.key < b.key;
    return a.seq < b.seq;
  }

  private place(ev: ScheduledEvent, i: number): void {
    this.heap[i] = ev;
    ev.index = i;
  }

  private siftUp(ev: ScheduledEvent, i: number): void {
    const h = this.heap;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p];
      if (!this.less(ev, parent)) break;
      this.place(parent, i);
      i = p;
    }
    this.place(ev, i);
  }

  private siftDown(ev: ScheduledEvent, i: number): void {
    const h = this.heap;
    const n = h.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.less(h[r], h[l]) ? r : l;
      const child = h[c];
      if (!this.less(child, ev)) break;
      this.place(child, i);
      i = c;
    }
    this.place(ev, i);
  }

  private push(ev: ScheduledEvent): void {
    this.heap.push(ev);
    this.siftUp(ev, this.heap.length - 1);
  }

  private pop(): ScheduledEvent | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop()!;
    if (last !== top) this.siftDown(last, 0);
    top.index = -1;
    return top;
  }

  /** Take a pending event out of the heap. Returns false if it already ran or was removed. */
  /** @internal */ remove(ev: ScheduledEvent): boolean {
    const i = ev.index;
    if (i < 0) return false;
    ev.index = -1;
    const h = this.heap;
    const last = h.pop()!;
    if (last !== ev) {
      this.place(last, i);
      if (i > 0 && this.less(last, h[(i - 1) >> 1])) this.siftUp(last, i);
      else this.siftDown(last, i);
    }
    return true;
  }
}
