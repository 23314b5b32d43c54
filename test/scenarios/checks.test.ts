/** Checks.equal: deep strict equality, and a failure that shows both values whole. */
import { describe, expect, it } from 'vitest';
import { Checks } from '../../scenarios/scenario.js';

function equal(seen: unknown, expected: unknown): { ok: boolean; detail?: string } {
  const c = new Checks();
  c.equal('x', seen, expected);
  const r = c.list[0];
  return r.detail === undefined ? { ok: r.ok } : { ok: r.ok, detail: r.detail };
}

describe('Checks.equal', () => {
  it('ignores key order', () => {
    expect(equal({ a: 1, b: { c: 2, d: 3 } }, { b: { d: 3, c: 2 }, a: 1 })).toEqual({ ok: true });
  });

  it('tells NaN from null and undefined from a missing key', () => {
    expect(equal(NaN, null).ok).toBe(false);
    expect(equal([NaN], [null]).ok).toBe(false);
    expect(equal(NaN, NaN).ok).toBe(true);
    expect(equal({ a: undefined }, {}).ok).toBe(false);
  });

  it('compares BigInts (and does not confuse them with numbers)', () => {
    expect(equal(0x1_0000_0000_0000n, 0x1_0000_0000_0000n).ok).toBe(true);
    expect(equal({ v: 1n }, { v: 2n })).toEqual({ ok: false, detail: 'expected { v: 2n }, saw { v: 1n }' });
    expect(equal(1n, 1).ok).toBe(false);
  });

  it('compares bytes, Maps and Sets by content', () => {
    expect(equal(Uint8Array.of(1, 2), Uint8Array.of(1, 2)).ok).toBe(true);
    expect(equal(new Map([[1, 'a']]), new Map([[1, 'b']])).ok).toBe(false);
    expect(equal(new Set([1, 2]), new Set([2, 1])).ok).toBe(true);
  });

  it('prints both values in full on failure, however long', () => {
    const long = Array.from({ length: 300 }, (_, i) => i);
    const r = equal({ list: long, name: 'seen' }, { list: long, name: 'expected' });
    expect(r.ok).toBe(false);
    expect(r.detail).toContain('299');
    expect(r.detail).toMatch(/^expected \{ list: \[.*\], name: 'expected' \}, saw \{ list: \[.*\], name: 'seen' \}$/);
    expect(r.detail).not.toContain('more item');
  });

  it('makes the verdict fail', () => {
    const c = new Checks();
    c.equal('same', { a: 1 }, { a: 1 });
    c.equal('different', 'x', 'y');
    expect(c.result({}).verdict).toBe('fail');
  });
});
