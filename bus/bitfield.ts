/**
 * Bit fields on the kernel side: the kernel's include/linux/bits.h and include/linux/bitfield.h, and
 * the qword-structure fields the arm-smmu-v3 driver builds its STEs, CDs, commands and records with.
 * Every kernel-side register and format file (both arm-smmu drivers, tegra241-cmdqv) uses this one
 * library; it lives in `bus/`, the lowest kernel layer, so that `core/` and `drivers/` may both
 * import it. The hardware models have their own (hw/bitfield.ts): the two sides share no definition.
 *
 * Supports:
 * - 32-bit register fields as masks, as the kernel headers declare them: `BIT(n)`, `GENMASK(h, l)`,
 *   used with `FIELD_PREP(mask, val)`, `FIELD_GET(mask, reg)` and `FIELD_FIT(mask, val)`;
 * - fields of little-endian structures of 64-bit qwords held as u32 words (word 2q is bits [31:0] of
 *   qword q): `QField(name, qword, hi, lo)` for values (a field may straddle the two words of its
 *   qword) and `QAddr(name, qword, hi, lo)` for address fields that keep their bits in place, as
 *   the kernel's `*_MASK` address fields do.
 * Does not support: GENMASK_ULL as a number (a 64-bit register is two u32 halves or a bigint at its
 * one use), fields wider than 32 bits in a QField.
 *
 * One argument order: [hi:lo], high bit first, as GENMASK(h, l) and the kernel headers write them.
 *
 * One error rule: a value too wide for its field is a bug in the code that builds the register. In
 * the kernel, FIELD_PREP() of an out-of-range constant fails the build and a variable is truncated
 * silently; here both throw `RangeError` naming the field (its bits, or the QField's name) and the
 * value, since a silent truncation would hide the very bug the independent definitions on the two
 * sides exist to catch. A value that comes from a caller, firmware or user space is checked at that
 * boundary first (`FIELD_FIT`, or the range the hardware reported) and refused there with
 * `KernelError('EINVAL')` (or the errno the kernel function returns), naming what and where; a
 * RangeError out of this module therefore always means a kernel-side bug, never bad input.
 */

const hex = (v: number): string => (Number.isFinite(v) ? `0x${Math.max(0, Math.trunc(v)).toString(16)}` : String(v));

// kernel: BIT() [bits.h]
export function BIT(n: number): number {
  if (!(Number.isInteger(n) && n >= 0 && n <= 31)) throw new RangeError(`BIT(${n}): not a bit of a 32-bit register`);
  return (1 << n) >>> 0;
}

// kernel: GENMASK() [bits.h]
export function GENMASK(h: number, l: number): number {
  if (!(Number.isInteger(h) && Number.isInteger(l) && h >= l && l >= 0 && h <= 31)) {
    throw new RangeError(`GENMASK(${h}, ${l}): not a 32-bit range`);
  }
  return ((h === 31 ? 0xffff_ffff : (1 << (h + 1)) - 1) & ~((1 << l) - 1)) >>> 0;
}

/** The bit position of a mask's lowest set bit (the kernel's __bf_shf()). */
function maskShift(mask: number): number {
  return 31 - Math.clz32(mask & -mask);
}

/** "GENMASK(h, l)" for a contiguous mask, for error messages. */
function describeMask(mask: number): string {
  if (mask === 0) return 'an empty mask';
  const l = maskShift(mask);
  const h = 31 - Math.clz32(mask);
  return `GENMASK(${h}, ${l})`;
}

// kernel: FIELD_GET() [bitfield.h]
export function FIELD_GET(mask: number, reg: number): number {
  return ((reg & mask) >>> 0) >>> maskShift(mask);
}

/** `value` shifted into the field `mask`; a value too wide for the field throws RangeError. */
// kernel: FIELD_PREP() [bitfield.h]
export function FIELD_PREP(mask: number, value: number): number {
  const shift = maskShift(mask);
  const max = mask >>> shift;
  if (!Number.isInteger(value) || value < 0 || value > max || mask === 0) {
    throw new RangeError(`FIELD_PREP: value ${value} (${hex(value)}) does not fit ${describeMask(mask)} (max ${hex(max)})`);
  }
  return (value << shift) >>> 0;
}

/** Whether `value` fits the field `mask`: the check a caller-facing boundary makes before FIELD_PREP. */
// kernel: FIELD_FIT() [bitfield.h]
export function FIELD_FIT(mask: number, value: number): boolean {
  if (mask === 0) return false;
  return Number.isInteger(value) && value >= 0 && value <= mask >>> maskShift(mask);
}

// ---- 64-bit structure fields ------------------------------------------------------------------

const TWO_32 = 0x1_0000_0000;

/**
 * A field [hi:lo] of qword `qword` of a little-endian structure held as u32 words (the kernel's
 * `GENMASK_ULL(hi, lo)` in `cpu_to_le64(...)` qword `qword`). Up to 32 bits wide; it may straddle
 * the two words of its qword.
 */
export class QField {
  /** Index of the u32 word holding the field's low bit, relative to the structure. */
  private readonly word: number;
  private readonly shift: number;
  /** Bits in the low word / in the next word (a field may straddle two words). */
  private readonly loBits: number;
  private readonly hiBits: number;
  /** The field's bits in its low word / in the next word. */
  private readonly loMask: number;
  private readonly hiMask: number;
  /** 2^loBits: splits a straddling value. */
  private readonly loSpan: number;
  readonly width: number;
  readonly max: number;

  constructor(
    readonly name: string,
    readonly qword: number,
    readonly hi: number,
    readonly lo: number,
  ) {
    if (!(hi >= lo && lo >= 0 && hi <= 63 && hi - lo < 32)) throw new RangeError(`${name}: bad field [${hi}:${lo}]`);
    this.width = hi - lo + 1;
    this.max = this.width === 32 ? 0xffff_ffff : 2 ** this.width - 1;
    this.word = qword * 2 + (lo >= 32 ? 1 : 0);
    this.shift = lo % 32;
    this.loBits = Math.min(this.width, 32 - this.shift);
    this.hiBits = this.width - this.loBits;
    this.loMask = this.loBits === 32 ? 0xffff_ffff : (((1 << this.loBits) - 1) << this.shift) >>> 0;
    this.hiMask = this.hiBits === 0 ? 0 : (1 << this.hiBits) - 1;
    this.loSpan = 2 ** this.loBits;
  }

  /** The field's value in `w` (structure starting at word `off`). */
  get(w: Uint32Array, off = 0): number {
    const i = off + this.word;
    const lo = (w[i] & this.loMask) >>> this.shift;
    if (this.hiBits === 0) return lo;
    return lo + (w[i + 1] & this.hiMask) * this.loSpan;
  }

  /**
   * The kernel's `w |= FIELD_PREP(field, v)` (the field must be clear, as in a freshly zeroed
   * structure); a value too wide for the field throws RangeError naming it.
   */
  prep(w: Uint32Array, v: number, off = 0): void {
    // (`v >>> 0 === v`: an integer in [0, 2^32), and no field is wider than 32 bits.)
    if ((v >>> 0) !== v || v > this.max) {
      throw new RangeError(`${this.name}: ${v} does not fit [${this.hi}:${this.lo}] of qword ${this.qword}`);
    }
    const i = off + this.word;
    if (this.hiBits === 0) {
      w[i] = w[i] | (v << this.shift);
      return;
    }
    const lo = v % this.loSpan;
    w[i] = w[i] | (lo << this.shift);
    w[i + 1] = w[i + 1] | ((v - lo) / this.loSpan);
  }

  /** Clear the field, then set it. */
  set(w: Uint32Array, v: number, off = 0): void {
    this.clear(w, off);
    this.prep(w, v, off);
  }

  clear(w: Uint32Array, off = 0): void {
    const i = off + this.word;
    w[i] = w[i] & ~this.loMask;
    if (this.hiBits > 0) w[i + 1] = w[i + 1] & ~this.hiMask;
  }

  /** Set every bit of the field in `w` (a used-bits mask). */
  mark(w: Uint32Array, off = 0): void {
    const i = off + this.word;
    w[i] = w[i] | this.loMask;
    if (this.hiBits > 0) w[i + 1] = w[i + 1] | this.hiMask;
  }

  isSet(w: Uint32Array, off = 0): boolean {
    const i = off + this.word;
    return (w[i] & this.loMask) !== 0 || (this.hiBits > 0 && (w[i + 1] & this.hiMask) !== 0);
  }
}

/**
 * An address field: bits [hi:lo] of qword `qword` hold the same bits of an address (the kernel's
 * `*_ADDR_MASK`, applied as `addr & MASK`). The field spans both words of the qword.
 */
export class QAddr {
  private readonly loMask: number;
  private readonly hiMask: number;

  constructor(
    readonly name: string,
    readonly qword: number,
    readonly hi: number,
    readonly lo: number,
  ) {
    if (!(lo < 32 && hi >= 32 && hi <= 63)) throw new RangeError(`${name}: an address field spans both words`);
    this.loMask = (0xffff_ffff << lo) >>> 0;
    this.hiMask = hi === 63 ? 0xffff_ffff : (1 << (hi - 31)) - 1;
  }

  /** `w |= addr & MASK`; an address with bits outside the mask throws RangeError (it would be truncated). */
  prep(w: Uint32Array, addr: number, off = 0): void {
    if (!(addr >= 0 && addr <= Number.MAX_SAFE_INTEGER) || addr !== Math.floor(addr)) throw new RangeError(`${this.name}: ${addr} is not an address`);
    const lo = addr >>> 0;
    const hi = (addr - lo) / TWO_32;
    if ((lo & ~this.loMask) !== 0 || (hi & ~this.hiMask) !== 0) {
      throw new RangeError(`${this.name}: address 0x${addr.toString(16)} has bits outside [${this.hi}:${this.lo}]`);
    }
    const i = off + this.qword * 2;
    w[i] = w[i] | lo;
    w[i + 1] = w[i + 1] | hi;
  }

  get(w: Uint32Array, off = 0): number {
    const i = off + this.qword * 2;
    return ((w[i] & this.loMask) >>> 0) + (w[i + 1] & this.hiMask) * TWO_32;
  }

  mark(used: Uint32Array, off = 0): void {
    const i = off + this.qword * 2;
    used[i] = (used[i] | this.loMask) >>> 0;
    used[i + 1] = (used[i + 1] | this.hiMask) >>> 0;
  }

  /** `w &= ~MASK`. */
  clear(w: Uint32Array, off = 0): void {
    const i = off + this.qword * 2;
    w[i] = (w[i] & ~this.loMask) >>> 0;
    w[i + 1] = (w[i + 1] & ~this.hiMask) >>> 0;
  }
}
