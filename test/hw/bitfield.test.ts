/**
 * The model side's bit-field library (hw/bitfield.ts): register fields declared [hi:lo] as the
 * specifications write them, structure fields by absolute bit position, address fields, and the one
 * error rule (a value too wide for its field is a RangeError naming the field and the value).
 */
import { describe, expect, it } from 'vitest';
import { AddrField, bit, Field, field, hi32, join64, lo32, StructField } from '../../hw/bitfield.js';

describe('model bit fields', () => {
  it('extracts, inserts and rejects values too wide for the field', () => {
    const f = new Field('X.F', 17, 16);
    expect(f.get(0x0003_0000)).toBe(3);
    expect(f.set(0xffff_ffff, 1)).toBe(0xfffd_ffff);
    expect(f.encode(2)).toBe(0x0002_0000);
    expect(() => f.encode(4)).toThrowError(/X\.F\[17:16\].*4 does not fit/);
    expect(() => f.encode(-1)).toThrowError(RangeError);
    expect(() => f.encode(1.5)).toThrowError(RangeError);
    const top = new Field('X.TOP', 31);
    expect(top.encode(1)).toBe(0x8000_0000);
    expect(top.isSet(0x8000_0000)).toBe(true);
  });

  it('field(name, hi, lo) and bit(name, n) declare [hi:lo] as the spec writes it, whole words included', () => {
    const st = field('IDR0.ST_LEVEL', 28, 27);
    expect([st.hi, st.lo, st.width, st.mask, st.max]).toEqual([28, 27, 2, 0x1800_0000, 3]);
    expect(bit('CR0.SMMUEN', 0).mask).toBe(1);
    const all = field('W', 31, 0);
    expect(all.get(0xdead_beef)).toBe(0xdead_beef);
    expect(all.encode(0xffff_ffff)).toBe(0xffff_ffff);
    expect(() => field('BAD', 32, 0)).toThrowError(/BAD: bits \[32:0\] do not fit a 32-bit word/);
    expect(() => field('BAD', 3, 4)).toThrowError(RangeError);
  });

  it('a structure field by absolute bit position, and one that crosses a word is refused', () => {
    const s1dss = new StructField('STE.S1DSS', 65, 64);
    const w = new Uint32Array(4);
    s1dss.set(w, 2);
    expect([...w]).toEqual([0, 0, 2, 0]);
    expect(s1dss.get(w)).toBe(2);
    expect(s1dss.isSet(w)).toBe(true);
    expect(s1dss.get(new Uint32Array([0, 0, 0, 0, 0, 0, 3, 0]), 4)).toBe(3);
    expect(() => s1dss.set(w, 4)).toThrowError(/STE\.S1DSS\[1:0\].*4 does not fit/);
    expect(() => new StructField('X', 33, 30)).toThrowError(/crosses a 32-bit word/);
  });

  it('an address field keeps the address bits in place, across two words', () => {
    const ptr = new AddrField('STE.S1ContextPtr', 51, 6); // [51:6] of a structure: the pointer's bits [51:6]
    const w = new Uint32Array(2);
    ptr.set(w, 0x8_1234_5640);
    expect([...w]).toEqual([0x1234_5640, 0x8]);
    expect(ptr.get(w)).toBe(0x8_1234_5640);
    expect(() => ptr.set(w, 0x8_1234_5641)).toThrowError(/STE\.S1ContextPtr: 0x812345641 is not encodable/);
  });

  it('64-bit values as two 32-bit halves', () => {
    expect(join64(0x9abc_def0, 0x0012_3456)).toBe(0x0012_3456_9abc_def0);
    expect(lo32(0x0012_3456_9abc_def0)).toBe(0x9abc_def0);
    expect(hi32(0x0012_3456_9abc_def0)).toBe(0x0012_3456);
  });
});
