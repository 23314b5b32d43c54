/**
 * Bit-field helpers for the SMMUv3 model: registers, in-memory structures (STE, CD, L1 descriptors),
 * commands, event records and PRI queue entries are all declared as named fields with these.
 *
 * Supports: fields of up to 32 bits inside one 32-bit register or one 32-bit word of a structure,
 * and "wide" address fields of up to 53 bits spanning two consecutive words (JS numbers are exact
 * below 2^53). Structure fields are declared by their bit position in the whole structure, as the
 * Arm specification writes them (STE.S1DSS is bits [65:64]).
 * Does not support: fields wider than 53 bits or spanning more than two words.
 *
 * Encoding a value too wide for its field throws RangeError naming the field: a model that
 * silently truncated would hide the very bugs the two independent definitions exist to catch.
 */

const hex = (v: number): string => `0x${v.toString(16)}`;

/** A field of 1..32 bits inside one 32-bit word. `lo`/`width` are relative to that word. */
export class Field {
  readonly mask: number;
  readonly max: number;

  constructor(
    readonly name: string,
    readonly lo: number,
    readonly width: number,
  ) {
    if (!(width >= 1 && width <= 32 && lo >= 0 && lo + width <= 32)) {
      throw new RangeError(`field ${name}: bits [${lo + width - 1}:${lo}] do not fit a 32-bit word`);
    }
    this.max = width === 32 ? 0xffff_ffff : 2 ** width - 1;
    this.mask = width === 32 ? 0xffff_ffff : ((this.max << lo) >>> 0);
  }

  /** Extract the field from a word. */
  get(word: number): number {
    return this.width === 32 ? word >>> 0 : (word >>> this.lo) & this.max;
  }

  /** True when a single-bit field is set (or a multi-bit one is non-zero). */
  isSet(word: number): boolean {
    return (word & this.mask) !== 0;
  }

  /** Return `word` with the field replaced by `value`; throws if `value` does not fit. */
  set(word: number, value: number): number {
    return ((word & ~this.mask) | this.encode(value)) >>> 0;
  }

  /** The field's value shifted into place; throws if `value` does not fit. */
  encode(value: number): number {
    if (!Number.isInteger(value) || value < 0 || value > this.max) {
      throw new RangeError(`field ${this.name}: value ${value} (${hex(value)}) does not fit in ${this.width} bit(s)`);
    }
    return this.width === 32 ? value >>> 0 : ((value << this.lo) >>> 0);
  }
}

/** A register field [hi:lo]. */
export function field(name: string, hi: number, lo: number): Field {
  return new Field(name, lo, hi - lo + 1);
}

/** A one-bit register field. */
export function bit(name: string, n: number): Field {
  return new Field(name, n, 1);
}

/**
 * A field of a multi-word structure, declared by absolute bit position [hi:lo]. Fields of up to 32
 * bits that stay inside one 32-bit word.
 */
export class StructField {
  readonly word: number;
  readonly f: Field;

  constructor(
    readonly name: string,
    readonly hi: number,
    readonly lo: number,
  ) {
    this.word = lo >>> 5;
    if (hi >>> 5 !== this.word) throw new RangeError(`struct field ${name} [${hi}:${lo}] crosses a 32-bit word`);
    this.f = new Field(name, lo & 31, hi - lo + 1);
  }

  /** Read the field from `words` (the structure's 32-bit words, little-endian order) at `base`. */
  get(words: Uint32Array, base = 0): number {
    return this.f.get(words[base + this.word]);
  }

  isSet(words: Uint32Array, base = 0): boolean {
    return (words[base + this.word] & this.f.mask) !== 0;
  }

  /** Write the field into `words`; throws if `value` does not fit. */
  set(words: Uint32Array, value: number, base = 0): void {
    const i = base + this.word;
    words[i] = this.f.set(words[i], value);
  }
}

/**
 * An address field [hi:lo] of up to 53 bits spanning one or two words. The value read is the
 * address with the bits below `lo` zero (bits [hi:lo] kept in place), which is how the spec uses
 * them ("S1ContextPtr, bits [55:6]": the pointer's bits [55:6]).
 */
export class AddrField {
  private readonly loWord: number;
  private readonly loShift: number;
  private readonly loMask: number;
  private readonly hiBits: number;
  /** Precomputed for the decode path: 2^hiBits - 1, 2^(bits in the low word), 2^addrLo. */
  private readonly hiMask: number;
  private readonly loScale: number;
  private readonly unit: number;

  constructor(
    readonly name: string,
    readonly hi: number,
    readonly lo: number,
    /** bit position of the field's lowest bit inside the address it encodes */
    readonly addrLo: number = lo & 31,
  ) {
    if (hi - lo + 1 + addrLo > 53) throw new RangeError(`address field ${name} is wider than 53 bits`);
    this.loWord = lo >>> 5;
    if (hi >>> 5 > this.loWord + 1) throw new RangeError(`address field ${name} spans more than two words`);
    this.loShift = lo & 31;
    const bitsInLo = Math.min(32 - this.loShift, hi - lo + 1);
    this.loMask = bitsInLo === 32 ? 0xffff_ffff : 2 ** bitsInLo - 1;
    this.hiBits = hi - lo + 1 - bitsInLo;
    this.hiMask = this.hiBits === 32 ? 0xffff_ffff : 2 ** this.hiBits - 1;
    this.loScale = this.loMask + 1;
    this.unit = 2 ** addrLo;
  }

  get width(): number {
    return this.hi - this.lo + 1;
  }

  /** The encoded address: field bits placed at [addrLo + width - 1 : addrLo]. */
  get(words: Uint32Array, base = 0): number {
    const w0 = words[base + this.loWord];
    let v = ((w0 >>> this.loShift) & this.loMask) >>> 0;
    if (this.hiBits > 0) v += ((words[base + this.loWord + 1] & this.hiMask) >>> 0) * this.loScale;
    return v * this.unit;
  }

  /** Store an address; throws if it has bits outside the field or below `addrLo`. */
  set(words: Uint32Array, addr: number, base = 0): void {
    const unit = 2 ** this.addrLo;
    if (!Number.isSafeInteger(addr) || addr < 0 || addr % unit !== 0 || addr / unit >= 2 ** this.width) {
      throw new RangeError(`address field ${this.name}: ${hex(addr)} is not encodable (bits [${this.addrLo + this.width - 1}:${this.addrLo}])`);
    }
    const v = addr / unit;
    const lowPart = v % (this.loMask + 1);
    const i = base + this.loWord;
    const loFieldMask = this.loMask === 0xffff_ffff ? 0xffff_ffff : (this.loMask << this.loShift) >>> 0;
    words[i] = ((words[i] & ~loFieldMask) | ((lowPart << this.loShift) >>> 0)) >>> 0;
    if (this.hiBits > 0) {
      const hiPart = Math.floor(v / (this.loMask + 1));
      const hm = this.hiBits === 32 ? 0xffff_ffff : 2 ** this.hiBits - 1;
      words[i + 1] = ((words[i + 1] & ~hm) | hiPart) >>> 0;
    }
  }
}

/** Combine the two 32-bit halves of a 64-bit register or descriptor into a number (exact < 2^53). */
export function join64(lo: number, hi: number): number {
  return (hi >>> 0) * 0x1_0000_0000 + (lo >>> 0);
}

export function lo32(v: number): number {
  return v % 0x1_0000_0000 >>> 0;
}

export function hi32(v: number): number {
  return Math.floor(v / 0x1_0000_0000) >>> 0;
}
