/**
 * Seeded PRNG (xoshiro128**). Every random choice of the simulation comes from one of these so that
 * `(scenario, seed)` replays exactly; Math.random is never used.
 */
export class Prng {
  // The state words are kept as int32 (the same bits as the uint32 the algorithm speaks of): small
  // integers to V8, where uint32 values above 2^31 would be boxed doubles, one allocated per draw.
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    // splitmix32 expands the seed so that nearby seeds give unrelated streams.
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next() | 0;
    this.b = next() | 0;
    this.c = next() | 0;
    this.d = next() | 0;
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return result;
  }

  /** Uniform float in [0, 1). */
  next(): number {
    return this.nextU32() / 0x1_0000_0000;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** A child generator with its own stream, so adding a consumer does not perturb the others. */
  fork(): Prng {
    return new Prng(this.nextU32());
  }
}

/** Rotate left, as int32 bits. */
function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
