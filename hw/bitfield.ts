/**
 * Bit fields on the model side: every register map and in-memory format of the hardware models
 * (SMMUv1/v2 registers, SMMUv3 registers, STE/CD/L1 descriptors, commands, event and PRI records,
 * the Tegra241 CMDQV registers, the test DMA engine) declares its fields with this one library. The
 * kernel side has its own (bus/bitfield.ts): a driver and a model never share a definition.
 *
 * Supports:
 * - `Field`: a field [hi:lo] of one 32-bit register or word, declared as the specification writes
 *   it (`field('CR0.SMMUEN', 0, 0)`, `field('IDR0.ST_LEVEL', 28, 27)`, `bit('CR0.SMMUEN', 0)`);
 * - `StructField`: a field of a multi-word structure declared by its absolute bit position, as the
 *   Arm specification does (STE.S1DSS is bits [65:64]), up to 32 bits inside one 32-bit word;
 * - `AddrField`: an address field of up to 53 bits spanning one or two words, whose value keeps the
 *   address bits in place ("S1ContextPtr, bits [55:6]": the pointer's bits [55:6]);
 * - `join64` / `lo32` / `hi32`: 64-bit registers and descriptors as two 32-bit halves (exact below
 *   2^53).
 * Does not support: fields wider than 53 bits or spanning more than two words.
 *
 * One argument order: [hi:lo], high bit first, as the specifications write fields.
 *
 * One error rule: encoding a value too wide for its field (or an address with bits outside its
 * field) is a bug in the model and throws `RangeError` naming the field and the value: a model that
 * silently truncated would hide the very bugs the two independent definitions exist to catch. A
 * model never throws on guest input, so what a driver or guest supplies never reaches an encode
 * unchecked: register writes are masked to their writable bits and decoded with `get` (which cannot
 * throw), and values the model writes back (IDs, record fields, queue indices) are bounded by what
 * the model itself advertised or checked first. Declaring a field with a bad bit range throws
 * RangeError too, when the module loads.
 */

const hex = (v: number): string => (Number.isFinite(v) ? `0x${Math.max(0, Math.trunc(v)).toString(16)}` : String(v));

/** A field [hi:lo] of a 32-bit register or word. */
export class Field {
  readonly width: number;
  /** The field's bits in place (unsigned). */
  readonly mask: number;
  /** The largest value the field holds (its width mask, unshifted). */
  readonly max: number;

  constructor(
    readonly name: string,
    readonly hi: number,
    readonly lo: number = hi,
  ) {
    if (!(Number.isInteger(hi) && Number.isInteger(lo) && hi >= lo && lo >= 0 && hi <= 31)) {
      throw new RangeError(`field ${name}: bits [${hi}:${lo}] do not fit a 32-bit word`);
    }
    this.width = hi - lo + 1;
    this.max = this.width === 32 ? 0xffff_ffff : 2 ** this.width - 1;
    this.mask = (this.max * 2 ** lo) >>> 0;
  }

  /** The field's value in `word`. */
  get(word: number): number {
    return (word & this.mask) >>> this.lo;
  }

  /** True when a single-bit field is set (or a multi-bit one is non-zero). */
  isSet(word: number): boolean {
    return (word & this.mask) !== 0;
  }

  /** The field's value shifted into place; RangeError if `value` does not fit. */
  encode(value: number): number {
    if (!Number.isInteger(value) || value < 0 || value > this.max) {
      throw new RangeError(`field ${this.name}[${this.hi}:${this.lo}]: value ${value} does not fit (max ${hex(this.max)})`);
    }
    return (value << this.lo) >>> 0;
  }

  /** `word` with the field replaced by `value`; RangeError if `value` does not fit. */
  set(word: number, value: number): number {
    return ((word & ~this.mask) | this.encode(value)) >>> 0;
  }
}

/** A register field [hi:lo] (`lo` defaults to `hi`: a one-bit field). */
export function field(name: string, hi: number, lo: number = hi): Field {
  return new Field(name, hi, lo);
}

/** A one-bit register field. */
export function bit(name: string, n: number): Field {
  return new Field(name, n, n);
}

/**
 * A field of a multi-word structure, declared by absolute bit position [hi:lo] (`lo` defaults to
 * `hi`). Up to 32 bits, inside one 32-bit word. The structure is held as little-endian 32-bit words
 * (word i is bits [32i+31:32i]).
 */
export class StructField {
  /** Index of the word holding the field, relative to the structure. */
  readonly word: number;
  /** The field inside its word. */
  readonly f: Field;

  constructor(
    readonly name: string,
    readonly hi: number,
    readonly lo: number = hi,
  ) {
    this.word = lo >>> 5;
    if (hi >>> 5 !== this.word) throw new RangeError(`struct field ${name} [${hi}:${lo}] crosses a 32-bit word`);
    this.f = new Field(name, hi & 31, lo & 31);
  }

  /** Read the field from `words` (the structure's 32-bit words) at `base`. */
  get(words: Uint32Array, base = 0): number {
    return this.f.get(words[base + this.word]);
  }

  isSet(words: Uint32Array, base = 0): boolean {
    return (words[base + this.word] & this.f.mask) !== 0;
  }

  /** Write the field into `words`; RangeError if `value` does not fit. */
  set(words: Uint32Array, value: number, base = 0): void {
    const i = base + this.word;
    words[i] = this.f.set(words[i], value);
  }
}

/**
 * An address field [hi:lo] of up to 53 bits spanning one or two words. The value read is the
 * address with the bits below `addrLo` zero (bits [hi:lo] placed at [addrLo + width - 1 : addrLo]),
 * which is how the spec uses them ("S1ContextPtr, bits [55:6]": the pointer's bits [55:6]).
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

  /** Store an address; RangeError if it has bits outside the field or below `addrLo`. */
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
      words[i + 1] = ((words[i + 1] & ~this.hiMask) | hiPart) >>> 0;
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
