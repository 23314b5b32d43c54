/**
 * The subset of AML (DSDT/SSDT definition blocks) the IOMMU code needs: the name space's Device
 * objects, named by their full ACPI path ("\\_SB_.DMA0"), with _HID and _CID (strings or EISA IDs),
 * _UID, _ADR, _SEG, _CCA and _CRS (memory and extended-interrupt resource descriptors), plus every
 * other integer, string or buffer Name in a device's scope.
 *
 * What is parsed: Scope, Device (nested), Name with integer/string/buffer/package data, Method
 * bodies of the simple shape firmware uses for _CRS/_HID/_UID ("Return (data)", or "Name (RBUF,
 * …) Return (RBUF)"), External, Alias, Mutex, Event, and OperationRegion with constant arguments.
 * Objects with a PkgLength that are not needed (If/Else/While, Field, Processor, PowerResource,
 * ThermalZone, Buffer, Package, other Methods) are skipped by their PkgLength. An opcode this
 * parser does not know cannot be sized, so the rest of its enclosing scope is skipped (recorded in
 * `skipped` with its byte offset) and parsing resumes after that scope: never a guess.
 *
 * Malformed AML (a PkgLength past its enclosing object, a bad NameSeg, a descriptor running past
 * its buffer) is a FirmwareError naming the table, the enclosing object, the byte offset and the
 * field. Every step consumes at least one byte and nesting is capped, so time is linear in the blob.
 */
import { FirmwareError } from '../firmware-error.js';
import { type AcpiOemInfo, type AcpiTableHeader, AcpiWriter, acpiTableWriter, finishAcpiTable, readAcpiHeader } from './table.js';

export type AmlValue = number | string | Uint8Array | AmlValue[] | { ref: string };

export interface AcpiMemoryResource {
  base: number;
  size: number;
}

export interface AcpiInterruptResource {
  gsiv: number;
  edge: boolean;
  activeLow: boolean;
  shared: boolean;
}

export interface AcpiResources {
  memory: AcpiMemoryResource[];
  interrupts: AcpiInterruptResource[];
}

/** A Device object of the name space. */
export interface AcpiDeviceNode {
  /** Full path with 4-character segments, e.g. "\\_SB_.PCI0". */
  path: string;
  /** Path of the enclosing Device, or null. */
  parent: string | null;
  hid: string | null;
  cids: string[];
  uid: number | string | null;
  adr: number | null;
  seg: number | null;
  cca: number | null;
  resources: AcpiResources;
  /** Every Name in the device's own scope (4-character names). */
  names: Map<string, AmlValue>;
  /** Every Method in the device's own scope (4-character names), kept for evaluation (aml-eval.ts). */
  methods: Map<string, AmlMethod>;
  /** Table signature and byte offset of the Device op. */
  table: string;
  offset: number;
}

/** A control method: its TermList bytes, to be run by aml-eval.ts. */
export interface AmlMethod {
  /** Full path, e.g. "\\_SB_.PCI0._DSM". */
  path: string;
  argCount: number;
  body: Uint8Array;
  /** Table signature and byte offset of the body. */
  table: string;
  offset: number;
}

export interface AcpiNamespace {
  devices: AcpiDeviceNode[];
  /** Where a scope was cut short at an opcode this parser does not size. */
  skipped: { table: string; offset: number; opcode: number }[];
}

const MAX_DEPTH = 128;

/**
 * The PkgLength at `p` in `b`, for an object that must end by `end`: [end of the object, position
 * after the encoding]. A malformed encoding calls `fail` (which throws) with the reason and offset.
 */
export function amlPkgLength(b: Uint8Array, p: number, end: number, fail: (reason: string, at: number) => never): [number, number] {
  const byte = (at: number): number => (at < end ? b[at] : fail(`needs a byte at 0x${at.toString(16)}, past the end of its object (0x${end.toString(16)})`, at));
  const lead = byte(p);
  const n = lead >>> 6;
  let len: number;
  if (n === 0) len = lead & 0x3f;
  else {
    if (lead & 0x30) fail(`lead byte 0x${lead.toString(16)} has bits 5:4 set with ${n} following bytes`, p);
    len = lead & 0x0f;
    for (let i = 0; i < n; i++) len |= byte(p + 1 + i) << (4 + 8 * i);
    len >>>= 0;
  }
  if (len < n + 1) fail(`${len} is shorter than its own ${n + 1}-byte encoding`, p);
  const objEnd = p + len;
  if (objEnd > end) fail(`object ends at 0x${objEnd.toString(16)}, past its enclosing object (0x${end.toString(16)})`, p);
  return [objEnd, p + n + 1];
}

/**
 * An integer constant at `p` (Zero, One, Ones, Byte/Word/DWord/QWordPrefix data): [value, position
 * after], or null for any other opcode. Bytes past `end` call `fail` (which throws).
 */
export function amlIntegerConst(b: Uint8Array, p: number, end: number, fail: (reason: string, at: number) => never): [bigint, number] | null {
  const le = (at: number, n: number): bigint => {
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(at + i < end ? b[at + i] : fail(`integer needs a byte at 0x${(at + i).toString(16)}, past the end of its object`, at + i));
    return v;
  };
  switch (p < end ? b[p] : -1) {
    case 0x00:
      return [0n, p + 1];
    case 0x01:
      return [1n, p + 1];
    case 0xff:
      return [(1n << 64n) - 1n, p + 1];
    case 0x0a:
      return [le(p + 1, 1), p + 2];
    case 0x0b:
      return [le(p + 1, 2), p + 3];
    case 0x0c:
      return [le(p + 1, 4), p + 5];
    case 0x0e:
      return [le(p + 1, 8), p + 9];
    default:
      return null;
  }
}

/** Compare two ACPI paths, ignoring each segment's trailing '_' padding. */
export function acpiPathEqual(a: string, b: string): boolean {
  const norm = (p: string): string =>
    (p.startsWith('\\') ? p.slice(1) : p)
      .split('.')
      .map((s) => s.padEnd(4, '_'))
      .join('.');
  return norm(a) === norm(b);
}

// kernel: acpi_ex_eisa_id_to_string() [exutils.c]
export function eisaIdToString(v: number): string {
  const s = ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | ((v >>> 24) & 0xff);
  const c = (n: number): string => String.fromCharCode(0x40 + (n & 0x1f));
  const h = (n: number): string => (n & 0xf).toString(16).toUpperCase();
  return c(s >>> 26) + c(s >>> 21) + c(s >>> 16) + h(s >>> 12) + h(s >>> 8) + h(s >>> 4) + h(s);
}

/** "PNP0A08" → the compressed EISA ID integer ASL's EisaId() makes. */
export function eisaIdFromString(id: string): number {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) throw new FirmwareError('AML', `"${id}" is not an EISA ID (three letters, four hex digits)`, null, null);
  const l = (i: number): number => id.charCodeAt(i) - 0x40;
  const s = ((l(0) << 26) | (l(1) << 21) | (l(2) << 16) | parseInt(id.slice(3), 16)) >>> 0;
  return (((s & 0xff) << 24) | ((s & 0xff00) << 8) | ((s >>> 8) & 0xff00) | ((s >>> 24) & 0xff)) >>> 0;
}

class AmlParser {
  readonly ns: AcpiNamespace = { devices: [], skipped: [] };
  constructor(
    readonly b: Uint8Array,
    readonly table: string,
  ) {}

  fail(reason: string, offset: number, where: string, field: string): never {
    throw new FirmwareError(this.table, `field "${field}": ${reason}`, offset, where);
  }

  byte(p: number, end: number, field: string, where: string): number {
    if (p >= end) this.fail(`needs a byte at 0x${p.toString(16)}, past the end of its object (0x${end.toString(16)})`, p, where, field);
    return this.b[p];
  }

  /** PkgLength at p: [end of the object, position after the encoding]. */
  pkgLength(p: number, end: number, where: string): [number, number] {
    return amlPkgLength(this.b, p, end, (reason, at) => this.fail(reason, at, where, 'PkgLength'));
  }

  nameSeg(p: number, end: number, where: string): string {
    let s = '';
    for (let i = 0; i < 4; i++) {
      const c = this.byte(p + i, end, 'NameSeg', where);
      const ok = c === 0x5f || (c >= 0x41 && c <= 0x5a) || (i > 0 && c >= 0x30 && c <= 0x39);
      if (!ok) this.fail(`byte 0x${c.toString(16)} is not a valid name character`, p + i, where, 'NameSeg');
      s += String.fromCharCode(c);
    }
    return s;
  }

  /** NameString at p, resolved against `scope`: [absolute segments, position after]. */
  nameString(p: number, end: number, scope: readonly string[], where: string): [string[], number] {
    let segs: string[] = [...scope];
    let c = this.byte(p, end, 'NameString', where);
    if (c === 0x5c) {
      segs = [];
      p++;
    } else {
      while (c === 0x5e) {
        segs.pop();
        p++;
        c = this.byte(p, end, 'NameString', where);
      }
    }
    c = this.byte(p, end, 'NameString', where);
    if (c === 0x00) return [segs, p + 1];
    let count = 1;
    if (c === 0x2e) {
      count = 2;
      p++;
    } else if (c === 0x2f) {
      count = this.byte(p + 1, end, 'NameString', where);
      p += 2;
    }
    for (let i = 0; i < count; i++) {
      segs.push(this.nameSeg(p, end, where));
      p += 4;
    }
    return [segs, p];
  }

  /** A data object (integer, string, buffer, package, or a name reference). Null: not one this parser sizes. */
  data(p: number, end: number, scope: readonly string[], where: string, depth: number): [AmlValue, number] | null {
    if (depth > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH}`, p, where, 'DataObject');
    const op = this.byte(p, end, 'DataObject', where);
    // Ones reads as the largest safe integer here (names hold numbers); aml-eval.ts keeps 64 bits.
    if (op === 0xff) return [Number.MAX_SAFE_INTEGER, p + 1];
    const k = amlIntegerConst(this.b, p, end, (reason, at) => this.fail(reason, at, where, 'Integer'));
    if (k) return [Number(k[0]), k[1]];
    switch (op) {
      case 0x0d: {
        let s = '';
        for (let q = p + 1; ; q++) {
          const c = this.byte(q, end, 'String', where);
          if (c === 0) return [s, q + 1];
          s += String.fromCharCode(c);
        }
      }
      case 0x11: {
        const [objEnd, q] = this.pkgLength(p + 1, end, where);
        // A size computed at run time (a name, an expression) cannot be known here: not sized.
        const size = this.data(q, objEnd, scope, where, depth + 1);
        if (!size || typeof size[0] !== 'number') return null;
        const n = size[0];
        const out = new Uint8Array(Math.min(n, 0x10_0000));
        out.set(this.b.subarray(size[1], Math.min(objEnd, size[1] + out.length)));
        return [out, objEnd];
      }
      case 0x12:
      case 0x13: {
        const [objEnd, q] = this.pkgLength(p + 1, end, where);
        let r = q;
        if (op === 0x12) r = q + 1;
        else {
          const n = this.data(q, objEnd, scope, where, depth + 1);
          if (!n) return [[], objEnd];
          r = n[1];
        }
        const elems: AmlValue[] = [];
        while (r < objEnd) {
          const c = this.b[r];
          if (c === 0x5c || c === 0x5e || c === 0x2e || c === 0x2f || c === 0x5f || (c >= 0x41 && c <= 0x5a)) {
            const [segs, nx] = this.nameString(r, objEnd, scope, where);
            elems.push({ ref: pathOf(segs) });
            r = nx;
            continue;
          }
          const e = this.data(r, objEnd, scope, where, depth + 1);
          if (!e) break;
          elems.push(e[0]);
          r = e[1];
        }
        return [elems, objEnd];
      }
      case 0x5b:
        if (this.byte(p + 1, end, 'ExtOpcode', where) === 0x30) return [0, p + 2];
        return null;
      default:
        return null;
    }
  }

  /** Parse a TermList in [p, end) of `scope`, collecting into `dev` (the enclosing Device, if any). */
  terms(p: number, end: number, scope: string[], dev: AcpiDeviceNode | null, depth: number): void {
    const where = dev ? `Device ${dev.path}` : scope.length ? `Scope ${pathOf(scope)}` : 'root scope';
    if (depth > MAX_DEPTH) this.fail(`objects nested deeper than ${MAX_DEPTH}`, p, where, 'TermList');
    while (p < end) {
      const op = this.b[p];
      const skip = (): void => {
        this.ns.skipped.push({ table: this.table, offset: p, opcode: op });
        p = end;
      };
      switch (op) {
        case 0x10: {
          const [objEnd, q] = this.pkgLength(p + 1, end, where);
          const [segs, body] = this.nameString(q, objEnd, scope, where);
          this.terms(body, objEnd, segs, null, depth + 1);
          p = objEnd;
          break;
        }
        case 0x08: {
          const [segs, q] = this.nameString(p + 1, end, scope, where);
          const d = this.data(q, end, scope, where, depth + 1);
          if (!d) {
            skip();
            break;
          }
          if (dev && segs.length === scope.length + 1) this.setName(dev, segs[segs.length - 1], d[0]);
          p = d[1];
          break;
        }
        case 0x14: {
          const [objEnd, q] = this.pkgLength(p + 1, end, where);
          const [segs, r] = this.nameString(q, objEnd, scope, where);
          if (dev && segs.length === scope.length + 1) {
            const argCount = this.byte(r, objEnd, 'MethodFlags', where) & 7;
            dev.methods.set(segs[segs.length - 1], { path: pathOf(segs), argCount, body: this.b.subarray(r + 1, objEnd), table: this.table, offset: r + 1 });
            const v = this.methodValue(r + 1, objEnd, segs, where, depth + 1);
            if (v !== null) this.setName(dev, segs[segs.length - 1], v);
          }
          p = objEnd;
          break;
        }
        case 0x11:
        case 0x12:
        case 0x13:
        case 0xa0:
        case 0xa1:
        case 0xa2: {
          p = this.pkgLength(p + 1, end, where)[0];
          break;
        }
        case 0x15: {
          const [, q] = this.nameString(p + 1, end, scope, where);
          this.byte(q + 1, end, 'External', where);
          p = q + 2;
          break;
        }
        case 0x06: {
          const [, q] = this.nameString(p + 1, end, scope, where);
          p = this.nameString(q, end, scope, where)[1];
          break;
        }
        case 0x5b: {
          const ext = this.byte(p + 1, end, 'ExtOpcode', where);
          if (ext === 0x82) {
            const [objEnd, q] = this.pkgLength(p + 2, end, where);
            const [segs, body] = this.nameString(q, objEnd, scope, where);
            const d: AcpiDeviceNode = {
              path: pathOf(segs),
              parent: dev?.path ?? null,
              hid: null,
              cids: [],
              uid: null,
              adr: null,
              seg: null,
              cca: null,
              resources: { memory: [], interrupts: [] },
              names: new Map(),
              methods: new Map(),
              table: this.table,
              offset: p,
            };
            this.ns.devices.push(d);
            this.terms(body, objEnd, segs, d, depth + 1);
            p = objEnd;
          } else if (ext === 0x81 || ext === 0x83 || ext === 0x84 || ext === 0x85 || ext === 0x86 || ext === 0x87) {
            p = this.pkgLength(p + 2, end, where)[0];
          } else if (ext === 0x01) {
            p = this.nameString(p + 2, end, scope, where)[1] + 1;
          } else if (ext === 0x02) {
            p = this.nameString(p + 2, end, scope, where)[1];
          } else if (ext === 0x80) {
            const [, q] = this.nameString(p + 2, end, scope, where);
            const a = this.data(q + 1, end, scope, where, depth + 1);
            const b = a ? this.data(a[1], end, scope, where, depth + 1) : null;
            if (!b) skip();
            else p = b[1];
          } else skip();
          break;
        }
        default:
          skip();
      }
    }
  }

  /** The value a simple method returns: "Return (data)" or "Name (X, data) … Return (X)". */
  methodValue(p: number, end: number, scope: string[], where: string, depth: number): AmlValue | null {
    const locals = new Map<string, AmlValue>();
    while (p < end) {
      const op = this.b[p];
      if (op === 0x08) {
        const [segs, q] = this.nameString(p + 1, end, scope, where);
        const d = this.data(q, end, scope, where, depth);
        if (!d) return null;
        locals.set(pathOf(segs), d[0]);
        p = d[1];
      } else if (op === 0xa4) {
        const c = this.byte(p + 1, end, 'Return', where);
        if (c === 0x5c || c === 0x5e || c === 0x5f || (c >= 0x41 && c <= 0x5a)) {
          const [segs] = this.nameString(p + 1, end, scope, where);
          return locals.get(pathOf(segs)) ?? null;
        }
        const d = this.data(p + 1, end, scope, where, depth);
        return d ? d[0] : null;
      } else return null;
    }
    return null;
  }

  setName(dev: AcpiDeviceNode, name: string, v: AmlValue): void {
    dev.names.set(name, v);
    const where = `Device ${dev.path}`;
    const id = (x: AmlValue): string | null => (typeof x === 'string' ? x : typeof x === 'number' ? eisaIdToString(x) : null);
    switch (name) {
      case '_HID':
        dev.hid = id(v);
        break;
      case '_CID':
        dev.cids = (Array.isArray(v) ? v : [v]).map(id).filter((x): x is string => x !== null);
        break;
      case '_UID':
        dev.uid = typeof v === 'number' || typeof v === 'string' ? v : null;
        break;
      case '_ADR':
        dev.adr = typeof v === 'number' ? v : null;
        break;
      case '_SEG':
        dev.seg = typeof v === 'number' ? v : null;
        break;
      case '_CCA':
        dev.cca = typeof v === 'number' ? v : null;
        break;
      case '_CRS':
        if (v instanceof Uint8Array) dev.resources = parseResourceTemplate(v, this.table, where);
        break;
    }
  }
}

function pathOf(segs: readonly string[]): string {
  return `\\${segs.join('.')}`;
}

/** Memory and extended-interrupt descriptors of a resource template; others are stepped over. */
// kernel: acpi_walk_resources() [rsxface.c]
export function parseResourceTemplate(buf: Uint8Array, table = 'AML', where = '_CRS'): AcpiResources {
  const out: AcpiResources = { memory: [], interrupts: [] };
  const fail = (reason: string, at: number): never => {
    throw new FirmwareError(table, `field "resource descriptor": ${reason}`, null, `${where} (buffer offset 0x${at.toString(16)})`);
  };
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const u64 = (at: number): number => {
    const hi = dv.getUint32(at + 4, true);
    if (hi >= 0x20_0000) fail(`64-bit value 0x${hi.toString(16)}${dv.getUint32(at, true).toString(16).padStart(8, '0')} is beyond 2^53`, at);
    return dv.getUint32(at, true) + hi * 0x1_0000_0000;
  };
  const mem = (base: number, size: number, at: number): void => {
    if (base + size > Number.MAX_SAFE_INTEGER) fail(`memory range 0x${base.toString(16)} + 0x${size.toString(16)} ends beyond 2^53`, at);
    out.memory.push({ base, size });
  };
  let p = 0;
  while (p < buf.length) {
    const tag = buf[p];
    if ((tag & 0x80) === 0) {
      const type = (tag >>> 3) & 0xf;
      const len = tag & 7;
      if (p + 1 + len > buf.length) fail(`small descriptor 0x${tag.toString(16)} of ${len} bytes runs past the buffer`, p);
      if (type === 0xf) break;
      p += 1 + len;
      continue;
    }
    if (p + 3 > buf.length) fail('large descriptor header runs past the buffer', p);
    const len = buf[p + 1] | (buf[p + 2] << 8);
    const body = p + 3;
    if (body + len > buf.length) fail(`large descriptor 0x${tag.toString(16)} of ${len} bytes runs past the buffer`, p);
    const need = (n: number): void => {
      if (len < n) fail(`descriptor 0x${tag.toString(16)} has ${len} bytes, needs ${n}`, p);
    };
    switch (tag) {
      case 0x86:
        need(9);
        mem(dv.getUint32(body + 1, true), dv.getUint32(body + 5, true), p);
        break;
      case 0x85:
        need(17);
        mem(dv.getUint32(body + 1, true), dv.getUint32(body + 13, true), p);
        break;
      case 0x87:
        need(23);
        if (buf[body] === 0) mem(dv.getUint32(body + 7, true), dv.getUint32(body + 19, true), p);
        break;
      case 0x8a:
        need(43);
        if (buf[body] === 0) mem(u64(body + 11), u64(body + 35), p);
        break;
      case 0x89: {
        need(2);
        const flags = buf[body];
        const count = buf[body + 1];
        if (2 + 4 * count > len) fail(`${count} interrupts do not fit in ${len} bytes`, p);
        for (let i = 0; i < count; i++) {
          out.interrupts.push({ gsiv: dv.getUint32(body + 2 + 4 * i, true), edge: (flags & 2) !== 0, activeLow: (flags & 4) !== 0, shared: (flags & 8) !== 0 });
        }
        break;
      }
    }
    p = body + len;
  }
  return out;
}

export interface AmlTable {
  header: AcpiTableHeader;
  namespace: AcpiNamespace;
}

/** Parse one DSDT or SSDT. */
export function parseAml(blob: Uint8Array): AmlTable {
  const sig = blob.length >= 4 ? String.fromCharCode(blob[0], blob[1], blob[2], blob[3]) : 'DSDT';
  const { header } = readAcpiHeader(blob, sig === 'SSDT' ? 'SSDT' : 'DSDT');
  const p = new AmlParser(blob, header.signature);
  p.terms(36, header.length, [], null, 0);
  return { header, namespace: p.ns };
}

/** The devices of a DSDT and its SSDTs, in table order. */
export function parseAcpiNamespace(blobs: readonly Uint8Array[]): AcpiNamespace {
  const ns: AcpiNamespace = { devices: [], skipped: [] };
  for (const b of blobs) {
    const t = parseAml(b).namespace;
    ns.devices.push(...t.devices);
    ns.skipped.push(...t.skipped);
  }
  return ns;
}

/** A GUID as ToUUID lays it out in a 16-byte buffer. */
export function amlUuidBytes(guid: string): Uint8Array {
  const h = guid.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(h)) throw new FirmwareError('AML', `"${guid}" is not a GUID`, null, null);
  const byte = (i: number): number => parseInt(h.slice(2 * i, 2 * i + 2), 16);
  const order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
  return Uint8Array.from(order.map(byte));
}

/** The PCI firmware _DSM GUID (PCI Firmware Specification, "_DSM for PCI"). */
export const PCI_ACPI_DSM_GUID = 'E5C937D0-3553-4D7A-9117-EA4D19C3434D';
/** _DSM function 5: "preserve PCI boot configuration"; returning 0 means the OS must keep it. */
export const DSM_PCI_PRESERVE_BOOT_CONFIG = 5;

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

export interface AmlDeviceSpec {
  /** Four-character name. */
  name: string;
  /** "PNP0A08"-style IDs are written as EisaId integers, others ("ISIM0001") as strings. */
  hid?: string;
  cid?: string;
  uid?: number;
  adr?: number;
  seg?: number;
  cca?: number;
  memory?: AcpiMemoryResource[];
  interrupts?: { gsiv: number; edge?: boolean; activeLow?: boolean }[];
  /** Other integer Names of the device (four-character names). */
  integers?: Record<string, number>;
  /**
   * A PCI host bridge's `_DSM` (PCI firmware GUID) offering function 5, "preserve boot
   * configuration": 'preserve' returns 0 (the OS must keep the firmware's configuration),
   * 'reassign' returns 1. Absent: no _DSM.
   */
  pciBootConfig?: 'preserve' | 'reassign';
  children?: AmlDeviceSpec[];
}

export interface DsdtSpec extends AcpiOemInfo {
  signature?: 'DSDT' | 'SSDT';
  /** Devices under \_SB_. */
  devices: AmlDeviceSpec[];
}

function amlInteger(w: AcpiWriter, v: number): void {
  if (v === 0) w.u8(0x00);
  else if (v === 1) w.u8(0x01);
  else if (v < 0x100) {
    w.u8(0x0a);
    w.u8(v);
  } else if (v < 0x1_0000) {
    w.u8(0x0b);
    w.u16(v);
  } else if (v < 0x1_0000_0000) {
    w.u8(0x0c);
    w.u32(v);
  } else {
    w.u8(0x0e);
    w.u64(v);
  }
}

function amlNameSeg(w: AcpiWriter, name: string): void {
  if (!/^[A-Z_][A-Z0-9_]{0,3}$/.test(name)) throw new FirmwareError('AML', `"${name}" is not a valid ACPI name`, null, null);
  w.chars(name.padEnd(4, '_'), 4);
}

/** Wrap `body` as op + PkgLength + body. */
function amlPkg(w: AcpiWriter, op: number[], body: Uint8Array): void {
  for (const b of op) w.u8(b);
  const l = body.length;
  const total = l + 1 < 0x40 ? l + 1 : l + 2 < 0x1000 ? l + 2 : l + 3 < 0x10_0000 ? l + 3 : l + 4;
  const n = total - l - 1;
  if (n === 0) w.u8(total);
  else {
    w.u8((n << 6) | (total & 0xf));
    for (let i = 0; i < n; i++) w.u8((total >>> (4 + 8 * i)) & 0xff);
  }
  w.bytes(body);
}

function resourceTemplate(d: AmlDeviceSpec): Uint8Array {
  const w = new AcpiWriter();
  for (const m of d.memory ?? []) {
    if (m.base + m.size <= 0x1_0000_0000) {
      w.u8(0x86);
      w.u16(9);
      w.u8(1);
      w.u32(m.base);
      w.u32(m.size);
    } else {
      // QWordMemory (ResourceConsumer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite)
      w.u8(0x8a);
      w.u16(43);
      w.u8(0);
      w.u8(0x0c);
      w.u8(0x01);
      w.u64(0);
      w.u64(m.base);
      w.u64(m.base + m.size - 1);
      w.u64(0);
      w.u64(m.size);
    }
  }
  for (const i of d.interrupts ?? []) {
    w.u8(0x89);
    w.u16(6);
    w.u8(0x01 | (i.edge ? 2 : 0) | (i.activeLow ? 4 : 0));
    w.u8(1);
    w.u32(i.gsiv);
  }
  w.u8(0x79);
  w.u8(0);
  return w.result();
}

function amlDevice(d: AmlDeviceSpec): Uint8Array {
  const w = new AcpiWriter();
  amlNameSeg(w, d.name);
  const name = (n: string): void => {
    w.u8(0x08);
    amlNameSeg(w, n);
  };
  const id = (v: string): void => {
    if (/^[A-Z]{3}[0-9A-F]{4}$/.test(v)) {
      w.u8(0x0c);
      w.u32(eisaIdFromString(v));
    } else {
      w.u8(0x0d);
      w.cstring(v);
    }
  };
  if (d.hid !== undefined) {
    name('_HID');
    id(d.hid);
  }
  if (d.cid !== undefined) {
    name('_CID');
    id(d.cid);
  }
  if (d.uid !== undefined) {
    name('_UID');
    amlInteger(w, d.uid);
  }
  if (d.adr !== undefined) {
    name('_ADR');
    amlInteger(w, d.adr);
  }
  if (d.seg !== undefined) {
    name('_SEG');
    amlInteger(w, d.seg);
  }
  if (d.cca !== undefined) {
    name('_CCA');
    amlInteger(w, d.cca);
  }
  for (const [k, v] of Object.entries(d.integers ?? {})) {
    name(k);
    amlInteger(w, v);
  }
  if ((d.memory?.length ?? 0) + (d.interrupts?.length ?? 0) > 0) {
    name('_CRS');
    const rt = resourceTemplate(d);
    const inner = new AcpiWriter();
    amlInteger(inner, rt.length);
    inner.bytes(rt);
    amlPkg(w, [0x11], inner.result());
  }
  if (d.pciBootConfig) w.bytes(pciDsm(d.pciBootConfig));
  for (const c of d.children ?? []) w.bytes(amlDevice(c));
  const out = new AcpiWriter();
  amlPkg(out, [0x5b, 0x82], w.result());
  return out.result();
}

/** `Buffer (n) { bytes }`. */
function amlBuffer(w: AcpiWriter, bytes: Uint8Array): void {
  const inner = new AcpiWriter();
  amlInteger(inner, bytes.length);
  inner.bytes(bytes);
  amlPkg(w, [0x11], inner.result());
}

/**
 * Method (_DSM, 4) { If (Arg0 == ToUUID (PCI firmware GUID)) { If (Arg2 == 0) { Return (Buffer
 * { 0x21 }) } If (Arg2 == 5) { Return (0 or 1) } } Return (Buffer { 0 }) }: functions 0 and 5.
 */
function pciDsm(mode: 'preserve' | 'reassign'): Uint8Array {
  const ifBlock = (pred: (w: AcpiWriter) => void, body: (w: AcpiWriter) => void): Uint8Array => {
    const inner = new AcpiWriter();
    pred(inner);
    body(inner);
    const w = new AcpiWriter();
    amlPkg(w, [0xa0], inner.result());
    return w.result();
  };
  const f0 = ifBlock(
    (w) => w.bytes(Uint8Array.of(0x93, 0x6a, 0x00)),
    (w) => {
      w.u8(0xa4);
      amlBuffer(w, Uint8Array.of((1 << 0) | (1 << DSM_PCI_PRESERVE_BOOT_CONFIG)));
    },
  );
  const f5 = ifBlock(
    (w) => {
      w.bytes(Uint8Array.of(0x93, 0x6a));
      amlInteger(w, DSM_PCI_PRESERVE_BOOT_CONFIG);
    },
    (w) => {
      w.u8(0xa4);
      amlInteger(w, mode === 'preserve' ? 0 : 1);
    },
  );
  const guid = ifBlock(
    (w) => {
      w.bytes(Uint8Array.of(0x93, 0x68));
      amlBuffer(w, amlUuidBytes(PCI_ACPI_DSM_GUID));
    },
    (w) => {
      w.bytes(f0);
      w.bytes(f5);
    },
  );
  const body = new AcpiWriter();
  amlNameSeg(body, '_DSM');
  body.u8(4);
  body.bytes(guid);
  body.u8(0xa4);
  amlBuffer(body, Uint8Array.of(0));
  const out = new AcpiWriter();
  amlPkg(out, [0x14], body.result());
  return out.result();
}

/** Write a DSDT (or SSDT) with `Scope (_SB) { Device (…) {…} … }`. */
export function writeDsdt(spec: DsdtSpec): Uint8Array {
  const body = new AcpiWriter();
  amlNameSeg(body, '_SB_');
  for (const d of spec.devices) body.bytes(amlDevice(d));
  const w = acpiTableWriter();
  const scope = new AcpiWriter();
  amlPkg(scope, [0x10], body.result());
  w.bytes(scope.result());
  return finishAcpiTable(w, spec.signature ?? 'DSDT', 2, spec);
}
