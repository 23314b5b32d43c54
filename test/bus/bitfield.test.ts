/**
 * The kernel side's bit-field library (bus/bitfield.ts): GENMASK/BIT/FIELD_PREP/FIELD_GET/FIELD_FIT
 * on 32-bit registers and the qword structure fields, with its one error rule (a value too wide for
 * its field is a RangeError naming the field and the value, never a silent truncation).
 */
import { describe, expect, it } from 'vitest';
import { BIT, FIELD_FIT, FIELD_GET, FIELD_PREP, GENMASK, QAddr, QField } from '../../bus/bitfield.js';

describe('field helpers', () => {
  it('GENMASK / FIELD_PREP / FIELD_GET on 32-bit registers', () => {
    expect(GENMASK(31, 0)).toBe(0xffff_ffff);
    expect(GENMASK(30, 24)).toBe(0x7f00_0000);
    expect(FIELD_PREP(GENMASK(17, 16), 1)).toBe(0x1_0000);
    expect(FIELD_GET(GENMASK(30, 24), 0x0300_0005)).toBe(3);
    expect(() => FIELD_PREP(GENMASK(1, 0), 4)).toThrow(/does not fit/);
  });

  it('names the field bits and the value when a value does not fit, and rejects malformed masks', () => {
    expect(() => FIELD_PREP(GENMASK(15, 8), 0x100)).toThrow(/value 256 \(0x100\) does not fit GENMASK\(15, 8\) \(max 0xff\)/);
    expect(() => FIELD_PREP(GENMASK(15, 8), -1)).toThrow(RangeError);
    expect(() => FIELD_PREP(GENMASK(15, 8), 1.5)).toThrow(RangeError);
    expect(() => GENMASK(32, 0)).toThrow(/GENMASK\(32, 0\): not a 32-bit range/);
    expect(() => GENMASK(3, 4)).toThrow(RangeError);
    expect(() => BIT(32)).toThrow(/BIT\(32\)/);
  });

  it('BIT and FIELD_FIT, the check a caller-facing boundary makes before FIELD_PREP', () => {
    expect(BIT(31)).toBe(0x8000_0000);
    expect(BIT(0)).toBe(1);
    expect(FIELD_FIT(GENMASK(15, 0), 0xffff)).toBe(true);
    expect(FIELD_FIT(GENMASK(15, 0), 0x1_0000)).toBe(false);
    expect(FIELD_FIT(GENMASK(31, 16), -1)).toBe(false);
    expect(FIELD_FIT(GENMASK(31, 0), 0xffff_ffff)).toBe(true);
    expect(FIELD_PREP(GENMASK(31, 0), 0xffff_ffff)).toBe(0xffff_ffff);
    expect(FIELD_GET(GENMASK(31, 31), 0x8000_0000)).toBe(1);
  });

  it('a QField straddling the two words of a qword', () => {
    const f = new QField('X', 1, 35, 28); // qword 1 bits [35:28]: word 2 bits 31:28, word 3 bits 3:0
    const w = new Uint32Array(8);
    f.prep(w, 0xa5);
    expect([...w]).toEqual([0, 0, 0x5000_0000, 0xa, 0, 0, 0, 0]);
    expect(f.get(w)).toBe(0xa5);
    f.set(w, 0x3c);
    expect(f.get(w)).toBe(0x3c);
    const used = new Uint32Array(8);
    f.mark(used);
    expect([...used]).toEqual([0, 0, 0xf000_0000, 0xf, 0, 0, 0, 0]);
    expect(() => f.prep(w, 0x100)).toThrow(/X: 256 does not fit/);
  });

  it('a QAddr refuses an address with bits outside its mask instead of truncating it', () => {
    const a = new QAddr('ADDR', 0, 51, 6);
    const w = new Uint32Array(2);
    a.prep(w, 0x8_1234_5640);
    expect([...w]).toEqual([0x1234_5640, 0x8]);
    expect(a.get(w)).toBe(0x8_1234_5640);
    expect(() => a.prep(new Uint32Array(2), 0x1234_5641)).toThrow(/outside \[51:6\]/);
    const used = new Uint32Array([0xffff_ffff, 0xffff_ffff]);
    a.clear(used);
    expect([...used]).toEqual([0x3f, 0xfff0_0000]);
  });
});
