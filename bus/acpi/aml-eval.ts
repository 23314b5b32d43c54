/**
 * Evaluation of small AML control methods: what the kernel needs to run a host bridge's `_DSM`
 * (the PCI firmware "preserve boot configuration" function) the way ACPICA's interpreter would.
 *
 * Supported: Arg0-6 and Local0-7; integer, string, Buffer and Package data; Name objects declared
 * in the method (iasl's Switch temporaries); Store, ToInteger, LEqual/LGreater/LLess, LNot, LAnd,
 * LOr, And, Or, Add, Subtract; If/Else, While, Break, Noop and Return. Integers are 64-bit
 * (DSDT revision 2 and up). Anything else (a method call, a field, an operation region access, an
 * opcode outside this list) makes the evaluation "unsupported" with the opcode and its byte
 * offset: the caller treats that as a method that did not return, as Linux treats a _DSM ACPICA
 * failed to run. Malformed bytes (a PkgLength past its method) are a FirmwareError naming the
 * table, method, offset and field. Loops are bounded (MAX_STEPS terms), so no method can hang.
 */
import { FirmwareError } from '../firmware-error.js';
import { type AmlMethod, amlIntegerConst, amlPkgLength } from './aml.js';

/** A value during evaluation: integers as bigint (64-bit), strings, buffers, packages. */
export type AmlEvalValue = bigint | string | Uint8Array | AmlEvalValue[];

export type AmlEvalResult = { kind: 'value'; value: AmlEvalValue } | { kind: 'none' } | { kind: 'unsupported'; reason: string };

const MAX_STEPS = 100_000;
const U64 = (1n << 64n) - 1n;

class Unsupported {
  constructor(readonly reason: string) {}
}

/** Control flow out of a term list. */
type Flow = { kind: 'next' } | { kind: 'break' } | { kind: 'return'; value: AmlEvalValue };

class Evaluator {
  private readonly locals: AmlEvalValue[] = [0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n];
  private readonly names = new Map<string, AmlEvalValue>();
  private steps = 0;
  private readonly where: string;

  constructor(
    private readonly m: AmlMethod,
    private readonly args: AmlEvalValue[],
  ) {
    this.where = `Method ${m.path}`;
  }

  private get b(): Uint8Array {
    return this.m.body;
  }

  private fail(reason: string, p: number, field: string): never {
    throw new FirmwareError(this.m.table, `field "${field}": ${reason}`, this.m.offset + p, this.where);
  }

  private byte(p: number, end: number, field: string): number {
    if (p >= end) this.fail(`needs a byte at 0x${p.toString(16)}, past the end of its object`, p, field);
    return this.b[p];
  }

  private unsupported(op: number, p: number): never {
    throw new Unsupported(`opcode 0x${op.toString(16)} at offset 0x${(this.m.offset + p).toString(16)} of ${this.where} is outside the evaluated subset`);
  }

  private pkgLength(p: number, end: number): [number, number] {
    return amlPkgLength(this.b, p, end, (reason, at) => this.fail(reason, at, 'PkgLength'));
  }

  private nameSeg(p: number, end: number): [string, number] {
    let c = this.byte(p, end, 'NameString');
    let prefix = '';
    while (c === 0x5c || c === 0x5e) {
      prefix += String.fromCharCode(c);
      c = this.byte(++p, end, 'NameString');
    }
    if (c === 0x2e || c === 0x2f || c === 0x00) this.unsupported(c, p);
    let s = '';
    for (let i = 0; i < 4; i++) s += String.fromCharCode(this.byte(p + i, end, 'NameSeg'));
    return [prefix + s, p + 4];
  }

  private isNameStart(c: number): boolean {
    return c === 0x5c || c === 0x5e || c === 0x5f || (c >= 0x41 && c <= 0x5a);
  }

  private int(v: AmlEvalValue, p: number): bigint {
    if (typeof v === 'bigint') return v;
    if (v instanceof Uint8Array) {
      let x = 0n;
      for (let i = Math.min(v.length, 8) - 1; i >= 0; i--) x = (x << 8n) | BigInt(v[i]);
      return x;
    }
    if (typeof v === 'string') {
      const t = v.trim();
      if (/^(0x)?[0-9a-f]+$/i.test(t)) return BigInt(t.startsWith('0x') || t.startsWith('0X') ? t : `0x${t}`) & U64;
    }
    throw new Unsupported(`an operand at offset 0x${(this.m.offset + p).toString(16)} of ${this.where} does not convert to an integer`);
  }

  private equal(a: AmlEvalValue, b: AmlEvalValue, p: number): boolean {
    if (a instanceof Uint8Array || typeof a === 'string') {
      const bb = typeof b === 'bigint' ? null : b;
      if (a instanceof Uint8Array && bb instanceof Uint8Array) return a.length === bb.length && a.every((x, i) => x === bb[i]);
      if (typeof a === 'string' && typeof bb === 'string') return a === bb;
    }
    return this.int(a, p) === this.int(b, p);
  }

  /** A TermArg: [value, position after]. */
  private expr(p: number, end: number): [AmlEvalValue, number] {
    if (++this.steps > MAX_STEPS) throw new Unsupported(`${this.where} ran more than ${MAX_STEPS} terms`);
    const op = this.byte(p, end, 'TermArg');
    const k = amlIntegerConst(this.b, p, end, (reason, at) => this.fail(reason, at, 'Integer'));
    if (k) return k;
    switch (op) {
      case 0x0d: {
        let q = p + 1;
        let s = '';
        while (this.byte(q, end, 'String') !== 0) s += String.fromCharCode(this.b[q++]);
        return [s, q + 1];
      }
      case 0x11: {
        const [objEnd, q] = this.pkgLength(p + 1, end);
        const [size, r] = this.expr(q, objEnd);
        const n = Number(this.int(size, q));
        if (n > 0x10_0000) this.fail(`buffer size ${n} is implausible`, q, 'BufferSize');
        const out = new Uint8Array(n);
        out.set(this.b.subarray(r, Math.min(objEnd, r + n)));
        return [out, objEnd];
      }
      case 0x12: {
        const [objEnd, q] = this.pkgLength(p + 1, end);
        const count = this.byte(q, objEnd, 'NumElements');
        const elems: AmlEvalValue[] = [];
        let r = q + 1;
        while (r < objEnd) {
          const [v, s] = this.expr(r, objEnd);
          elems.push(v);
          r = s;
        }
        while (elems.length < count) elems.push(0n);
        return [elems, objEnd];
      }
      case 0x70: {
        const [v, q] = this.expr(p + 1, end);
        return [v, this.store(v, q, end)];
      }
      case 0x99: {
        const [v, q] = this.expr(p + 1, end);
        const i = this.int(v, p);
        return [i, this.store(i, q, end)];
      }
      case 0x92: {
        const [v, q] = this.expr(p + 1, end);
        return [this.int(v, p) === 0n ? U64 : 0n, q];
      }
      case 0x90:
      case 0x91:
      case 0x93:
      case 0x94:
      case 0x95: {
        const [a, q] = this.expr(p + 1, end);
        const [b, r] = this.expr(q, end);
        let t: boolean;
        if (op === 0x93) t = this.equal(a, b, p);
        else if (op === 0x94) t = this.int(a, p) > this.int(b, p);
        else if (op === 0x95) t = this.int(a, p) < this.int(b, p);
        else if (op === 0x90) t = this.int(a, p) !== 0n && this.int(b, p) !== 0n;
        else t = this.int(a, p) !== 0n || this.int(b, p) !== 0n;
        return [t ? U64 : 0n, r];
      }
      case 0x72:
      case 0x74:
      case 0x7b:
      case 0x7d: {
        const [a, q] = this.expr(p + 1, end);
        const [b, r] = this.expr(q, end);
        const x = this.int(a, p);
        const y = this.int(b, p);
        const v = (op === 0x72 ? x + y : op === 0x74 ? x - y : op === 0x7b ? x & y : x | y) & U64;
        return [v, this.store(v, r, end)];
      }
      default:
        if (op >= 0x60 && op <= 0x67) return [this.locals[op - 0x60], p + 1];
        if (op >= 0x68 && op <= 0x6e) return [this.args[op - 0x68] ?? 0n, p + 1];
        if (this.isNameStart(op)) {
          const [name, q] = this.nameSeg(p, end);
          const v = this.names.get(name);
          // Not a name of this method: a method call or a global object, outside the subset.
          if (v === undefined) throw new Unsupported(`"${name}" at offset 0x${(this.m.offset + p).toString(16)} of ${this.where} is not a name of the method (a call or a global object)`);
          return [v, q];
        }
        return this.unsupported(op, p);
    }
  }

  /** Store into a Target (NullName, LocalX, ArgX or a method Name): position after. */
  private store(v: AmlEvalValue, p: number, end: number): number {
    const t = this.byte(p, end, 'Target');
    if (t === 0x00) return p + 1;
    if (t >= 0x60 && t <= 0x67) {
      this.locals[t - 0x60] = v;
      return p + 1;
    }
    if (t >= 0x68 && t <= 0x6e) {
      this.args[t - 0x68] = v;
      return p + 1;
    }
    if (this.isNameStart(t)) {
      const [name, q] = this.nameSeg(p, end);
      if (!this.names.has(name)) throw new Unsupported(`store to "${name}" (not a name of ${this.where})`);
      this.names.set(name, v);
      return q;
    }
    return this.unsupported(t, p);
  }

  /** Run a TermList in [p, end). */
  terms(p: number, end: number, depth: number): Flow {
    if (depth > 64) this.fail('control flow nested deeper than 64', p, 'TermList');
    while (p < end) {
      if (++this.steps > MAX_STEPS) throw new Unsupported(`${this.where} ran more than ${MAX_STEPS} terms`);
      const op = this.b[p];
      switch (op) {
        case 0x08: {
          const [name, q] = this.nameSeg(p + 1, end);
          const [v, r] = this.expr(q, end);
          this.names.set(name, v);
          p = r;
          break;
        }
        case 0xa0: {
          const [objEnd, q] = this.pkgLength(p + 1, end);
          const [pred, r] = this.expr(q, objEnd);
          let elseEnd = objEnd;
          let elseBody = -1;
          if (objEnd < end && this.b[objEnd] === 0xa1) {
            const [e, s] = this.pkgLength(objEnd + 1, end);
            elseEnd = e;
            elseBody = s;
          }
          const f = this.int(pred, q) !== 0n ? this.terms(r, objEnd, depth + 1) : elseBody >= 0 ? this.terms(elseBody, elseEnd, depth + 1) : { kind: 'next' as const };
          if (f.kind !== 'next') return f;
          p = elseEnd;
          break;
        }
        case 0xa2: {
          const [objEnd, q] = this.pkgLength(p + 1, end);
          for (;;) {
            const [pred, r] = this.expr(q, objEnd);
            if (this.int(pred, q) === 0n) break;
            const f = this.terms(r, objEnd, depth + 1);
            if (f.kind === 'break') break;
            if (f.kind === 'return') return f;
          }
          p = objEnd;
          break;
        }
        case 0xa3:
          p++;
          break;
        case 0xa4: {
          const [v] = this.expr(p + 1, end);
          return { kind: 'return', value: v };
        }
        case 0xa5:
          return { kind: 'break' };
        default:
          // An expression used as a statement (Store, ToInteger, …).
          p = this.expr(p, end)[1];
      }
    }
    return { kind: 'next' };
  }
}

/** Run `method` with `args` (Arg0…). */
export function amlEvaluate(method: AmlMethod, args: AmlEvalValue[]): AmlEvalResult {
  if (args.length > method.argCount) return { kind: 'unsupported', reason: `${method.path} takes ${method.argCount} arguments, not ${args.length}` };
  const e = new Evaluator(method, [...args]);
  try {
    const f = e.terms(0, method.body.length, 0);
    return f.kind === 'return' ? { kind: 'value', value: f.value } : { kind: 'none' };
  } catch (x) {
    if (x instanceof Unsupported) return { kind: 'unsupported', reason: x.reason };
    throw x;
  }
}

