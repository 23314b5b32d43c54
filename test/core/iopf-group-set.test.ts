/**
 * The set the IOPF core keeps pending groups in (per device and per domain): insertion order, as the
 * Set it replaces, through deletes, re-adds, emptying and compaction.
 */
import { describe, expect, it } from 'vitest';
import { PlatformDevice } from '../../bus/platform.js';
import { DevFaultParam, GroupSet, IopfGroupImpl } from '../../core/io-pgfault.js';

function groups(n: number): IopfGroupImpl[] {
  const param = new DevFaultParam(new PlatformDevice({ name: '/dev@1' }));
  return Array.from({ length: n }, () => new IopfGroupImpl(param, [], 'iopf', null, null));
}

describe('GroupSet', () => {
  it('keeps insertion order through deletes and re-adds, as a Set does', () => {
    const g = groups(5);
    const set = new GroupSet('pendingSlot');
    const ref = new Set<IopfGroupImpl>();
    for (const x of g) {
      set.add(x);
      ref.add(x);
    }
    for (const x of [g[1], g[3]]) {
      expect(set.delete(x)).toBe(true);
      ref.delete(x);
    }
    expect(set.delete(g[1])).toBe(false);
    set.add(g[1]).add(g[0]); // g[0] is in already: stays where it is
    ref.add(g[1]).add(g[0]);
    expect([...set]).toEqual([...ref]);
    expect(set.size).toBe(4);
    expect(set.has(g[3])).toBe(false);
    expect(set.has(g[2])).toBe(true);
  });

  it('a group may sit in two sets (its device and its domain) at different places', () => {
    const g = groups(3);
    const byDev = new GroupSet('pendingSlot');
    const byDomain = new GroupSet('domainSlot');
    for (const x of g) byDev.add(x);
    for (const x of [...g].reverse()) byDomain.add(x);
    byDev.delete(g[0]);
    expect([...byDev]).toEqual([g[1], g[2]]);
    expect([...byDomain]).toEqual([g[2], g[1], g[0]]);
    // Another set never mistakes a group for one of its own.
    expect(new GroupSet('pendingSlot').has(g[1])).toBe(false);
  });

  it('emptied, it starts over; with many gaps, it closes them and keeps the order', () => {
    const g = groups(300);
    const set = new GroupSet('pendingSlot');
    for (const x of g.slice(0, 10)) set.add(x);
    for (const x of g.slice(0, 10)) set.delete(x);
    expect(set.size).toBe(0);
    expect([...set]).toEqual([]);
    for (const x of g) set.add(x);
    // Delete every group but each third: compaction runs on the way.
    const kept = g.filter((_, i) => i % 3 === 0);
    for (const [i, x] of g.entries()) if (i % 3 !== 0) set.delete(x);
    expect(set.size).toBe(kept.length);
    expect([...set]).toEqual(kept);
    for (const x of kept) expect(set.has(x)).toBe(true);
    // Deleting each group as it is visited (compaction included) does not disturb the walk.
    const seen: IopfGroupImpl[] = [];
    for (const x of set) {
      seen.push(x);
      set.delete(x);
    }
    expect(seen).toEqual(kept);
    expect(set.size).toBe(0);
  });
});
