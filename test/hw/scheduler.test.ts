import { describe, expect, it } from 'vitest';
import { Scheduler } from '../../hw/scheduler.js';

/** Schedule `n` events at the same instant (and a few later) and return the order they ran in. */
function order(seed: number, n = 12): string[] {
  const s = new Scheduler(seed);
  const ran: string[] = [];
  for (let i = 0; i < n; i++) s.schedule(100, () => ran.push(`a${i}`));
  s.schedule(50, () => ran.push('early'));
  s.schedule(200, () => ran.push('late'));
  s.runSyncUntilIdle();
  return ran;
}

describe('scheduler determinism', () => {
  it('runs simultaneous events in the same order for the same seed', () => {
    expect(order(42)).toEqual(order(42));
    expect(order(7)).toEqual(order(7));
  });

  it('orders simultaneous events differently for different seeds', () => {
    const orders = new Set([1, 2, 3, 4, 5, 6].map((seed) => order(seed).join(',')));
    expect(orders.size).toBeGreaterThan(1);
  });

  it('keeps time order whatever the seed: earlier events first, later events last', () => {
    for (const seed of [1, 2, 3]) {
      const o = order(seed);
      expect(o[0]).toBe('early');
      expect(o[o.length - 1]).toBe('late');
      expect(o.slice(1, -1).sort()).toEqual(Array.from({ length: 12 }, (_, i) => `a${i}`).sort());
    }
  });

  it('advances virtual time only by running events', () => {
    const s = new Scheduler(1);
    const at: number[] = [];
    s.schedule(30, () => at.push(s.now));
    s.schedule(10, () => s.schedule(5, () => at.push(s.now)));
    expect(s.now).toBe(0);
    s.runSyncUntilIdle();
    expect(at).toEqual([15, 30]);
    expect(s.now).toBe(30);
  });
});

describe('timers', () => {
  it('fire once at their time, and a cancelled one leaves nothing scheduled', () => {
    const s = new Scheduler(1);
    const fired: number[] = [];
    const a = s.startTimer(100, () => fired.push(s.now));
    const b = s.startTimer(50, () => fired.push(-s.now));
    expect(b.cancel()).toBe(true);
    expect(b.cancel()).toBe(false);
    expect(s.pending).toBe(1);
    s.runSyncUntilIdle();
    expect(fired).toEqual([100]);
    expect(a.cancel()).toBe(false);
  });
});

describe('cancellation', () => {
  it('removes events from anywhere in the heap and keeps the order of the rest', () => {
    const s = new Scheduler(3);
    const ran: number[] = [];
    const handles = Array.from({ length: 200 }, (_, i) => s.schedule((i * 37) % 101, () => ran.push(i)));
    const cancelled = new Set<number>();
    for (let i = 0; i < 200; i += 3) {
      expect(handles[i].cancel()).toBe(true);
      cancelled.add(i);
    }
    expect(handles[0].cancel()).toBe(false);
    expect(s.pending).toBe(200 - cancelled.size);
    s.runSyncUntilIdle();
    expect(ran.length).toBe(200 - cancelled.size);
    expect(ran.some((i) => cancelled.has(i))).toBe(false);
    const times = ran.map((i) => (i * 37) % 101);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(handles[1].cancel()).toBe(false);
  });
});

describe('recurring events', () => {
  it('are armed, moved and cancelled like fresh events, and run in the order fresh events would', () => {
    // The same program twice: once re-arming one recurring event, once cancelling and scheduling.
    const run = (recurring: boolean): string[] => {
      const s = new Scheduler(9);
      const ran: string[] = [];
      const fn = (): void => {
        ran.push(`r@${s.now}`);
      };
      const ev = s.recurring(fn, 'r');
      let fresh: { cancel(): boolean } | null = null;
      const arm = (d: number): void => {
        if (recurring) ev.arm(d);
        else {
          fresh?.cancel();
          fresh = s.schedule(d, fn, 'r');
        }
      };
      for (let i = 0; i < 6; i++) s.schedule(100, () => ran.push(`a${i}`));
      arm(100);
      arm(50); // moved earlier: runs once, at 50
      s.runSyncUntilIdle(60);
      for (let i = 0; i < 6; i++) s.schedule(40, () => ran.push(`b${i}`));
      arm(40);
      s.runSyncUntilIdle();
      return ran;
    };
    const withRecurring = run(true);
    expect(withRecurring).toEqual(run(false));
    expect(withRecurring.filter((x) => x.startsWith('r@'))).toEqual(['r@50', 'r@90']);
  });

  it('report whether they are pending, and cancel only while they are', () => {
    const s = new Scheduler(1);
    let runs = 0;
    const ev = s.recurring(() => runs++, 'r');
    expect(ev.pending).toBe(false);
    expect(ev.cancel()).toBe(false);
    ev.arm(10);
    expect(ev.pending).toBe(true);
    expect(ev.time).toBe(10);
    expect(ev.cancel()).toBe(true);
    expect(s.pending).toBe(0);
    ev.arm(5);
    s.runSyncUntilIdle();
    expect(runs).toBe(1);
    expect(ev.pending).toBe(false);
    expect(() => ev.arm(-1)).toThrow(RangeError);
  });
});
