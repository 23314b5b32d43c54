/**
 * ACPI system description tables: the common 36-byte header with its checksum, a bounds-checked
 * little-endian reader that turns every overrun into a FirmwareError naming the table, the node,
 * the byte offset and the field, and the writer side (header, checksum, a growable byte buffer).
 *
 * Errors: `FirmwareError(format = signature, reason = 'field "X": …', offset, where = node)`.
 * Nothing else escapes a parser built on this reader; every loop it drives advances by at least one
 * byte, so parsing is linear in the blob size.
 */
import { FirmwareError } from '../firmware-error.js';

export const ACPI_HEADER_SIZE = 36;

/** kernel: struct acpi_table_header */
export interface AcpiTableHeader {
  signature: string;
  length: number;
  revision: number;
  checksum: number;
  oemId: string;
  oemTableId: string;
  oemRevision: number;
  creatorId: string;
  creatorRevision: number;
}

/** OEM fields a writer fills in (defaults identify this simulator). */
export interface AcpiOemInfo {
  oemId?: string;
  oemTableId?: string;
  oemRevision?: number;
  creatorId?: string;
  creatorRevision?: number;
}

/** Bounds-checked little-endian reads from one table; every failure names where it happened. */
export class AcpiReader {
  readonly dv: DataView;
  constructor(
    readonly blob: Uint8Array,
    /** Table signature, the FirmwareError format. */
    readonly table: string,
    /** Bytes of the table that may be read (the header's Length once checked). */
    readonly limit: number = blob.length,
  ) {
    this.dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  }

  fail(reason: string, offset: number | null, where: string | null, field?: string): never {
    throw new FirmwareError(this.table, field ? `field "${field}": ${reason}` : reason, offset, where);
  }

  check(off: number, size: number, field: string, where: string | null): void {
    if (!Number.isInteger(off) || off < 0 || off + size > this.limit) {
      this.fail(`${size} byte(s) at 0x${off.toString(16)} run past the end of the table (length 0x${this.limit.toString(16)})`, off, where, field);
    }
  }

  u8(off: number, field: string, where: string | null = null): number {
    this.check(off, 1, field, where);
    return this.dv.getUint8(off);
  }

  u16(off: number, field: string, where: string | null = null): number {
    this.check(off, 2, field, where);
    return this.dv.getUint16(off, true);
  }

  u32(off: number, field: string, where: string | null = null): number {
    this.check(off, 4, field, where);
    return this.dv.getUint32(off, true);
  }

  /** A u64 as a JS number; above 2^53 is a FirmwareError (the machine cannot address it). */
  u64(off: number, field: string, where: string | null = null): number {
    this.check(off, 8, field, where);
    const lo = this.dv.getUint32(off, true);
    const hi = this.dv.getUint32(off + 4, true);
    if (hi >= 0x20_0000) this.fail(`value 0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')} is beyond 2^53`, off, where, field);
    return hi * 0x1_0000_0000 + lo;
  }

  /** Fixed-width ASCII, trailing NULs dropped. */
  chars(off: number, len: number, field: string, where: string | null = null): string {
    this.check(off, len, field, where);
    let s = '';
    for (let i = 0; i < len; i++) {
      const c = this.blob[off + i]!;
      if (c === 0) break;
      s += String.fromCharCode(c);
    }
    return s;
  }

  /** A NUL-terminated string that must end before `end`. */
  cstring(off: number, end: number, field: string, where: string | null = null): string {
    this.check(off, 1, field, where);
    let s = '';
    for (let i = off; i < Math.min(end, this.limit); i++) {
      const c = this.blob[i]!;
      if (c === 0) return s;
      s += String.fromCharCode(c);
    }
    this.fail(`string starting at 0x${off.toString(16)} has no NUL terminator before 0x${end.toString(16)}`, off, where, field);
  }
}

/** Sum of all bytes mod 256 (0 for a valid table). */
export function acpiChecksum(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let s = 0;
  for (let i = start; i < end; i++) s = (s + bytes[i]!) & 0xff;
  return s;
}

/**
 * Read and check the header: the signature (when `expect` is given), Length within the blob and
 * at least the header, the checksum over Length bytes. Returns the header and a reader limited to
 * the table's Length.
 */
// kernel: acpi_tb_verify_temp_table() [tbdata.c]
export function readAcpiHeader(blob: Uint8Array, expect: string | null, minLength = ACPI_HEADER_SIZE): { header: AcpiTableHeader; r: AcpiReader } {
  const sigGuess = expect ?? (blob.length >= 4 ? String.fromCharCode(...blob.subarray(0, 4)).replace(/[^\x20-\x7e]/g, '?') : 'ACPI');
  const r0 = new AcpiReader(blob, sigGuess);
  if (blob.length < ACPI_HEADER_SIZE) r0.fail(`blob of ${blob.length} bytes is shorter than the ${ACPI_HEADER_SIZE}-byte ACPI header`, 0, null, 'Length');
  const signature = r0.chars(0, 4, 'Signature');
  if (expect !== null && signature !== expect) r0.fail(`is "${signature}", expected "${expect}"`, 0, null, 'Signature');
  const length = r0.u32(4, 'Length');
  if (length < minLength) r0.fail(`${length} is shorter than this table's fixed part (${minLength} bytes)`, 4, null, 'Length');
  if (length > blob.length) r0.fail(`${length} is longer than the ${blob.length} bytes given`, 4, null, 'Length');
  const sum = acpiChecksum(blob, 0, length);
  if (sum !== 0) r0.fail(`bytes sum to 0x${sum.toString(16)} mod 256, not 0`, 9, null, 'Checksum');
  const header: AcpiTableHeader = {
    signature,
    length,
    revision: r0.u8(8, 'Revision'),
    checksum: r0.u8(9, 'Checksum'),
    oemId: r0.chars(10, 6, 'OEM ID'),
    oemTableId: r0.chars(16, 8, 'OEM Table ID'),
    oemRevision: r0.u32(24, 'OEM Revision'),
    creatorId: r0.chars(28, 4, 'Creator ID'),
    creatorRevision: r0.u32(32, 'Creator Revision'),
  };
  return { header, r: new AcpiReader(blob, signature, length) };
}

/** A growable little-endian byte buffer for writers. */
export class AcpiWriter {
  private buf = new Uint8Array(256);
  private dv = new DataView(this.buf.buffer);
  length = 0;

  private ensure(n: number): void {
    if (n <= this.buf.length) return;
    let size = this.buf.length;
    while (size < n) size *= 2;
    const nb = new Uint8Array(size);
    nb.set(this.buf);
    this.buf = nb;
    this.dv = new DataView(nb.buffer);
  }

  /** Make the buffer at least `n` bytes long (zero-filled). */
  reserve(n: number): void {
    this.ensure(n);
    if (n > this.length) this.length = n;
  }

  u8(v: number, at = this.length): void {
    this.reserve(at + 1);
    this.dv.setUint8(at, v & 0xff);
  }
  u16(v: number, at = this.length): void {
    this.reserve(at + 2);
    this.dv.setUint16(at, v & 0xffff, true);
  }
  u32(v: number, at = this.length): void {
    this.reserve(at + 4);
    this.dv.setUint32(at, v >>> 0, true);
  }
  u64(v: number, at = this.length): void {
    this.reserve(at + 8);
    this.dv.setUint32(at, v % 0x1_0000_0000, true);
    this.dv.setUint32(at + 4, Math.floor(v / 0x1_0000_0000), true);
  }
  bytes(b: Uint8Array, at = this.length): void {
    this.reserve(at + b.length);
    this.buf.set(b, at);
  }
  /** Fixed-width ASCII, NUL-padded. */
  chars(s: string, width: number, at = this.length): void {
    this.reserve(at + width);
    for (let i = 0; i < width; i++) this.buf[at + i] = i < s.length ? s.charCodeAt(i) & 0xff : 0;
  }
  /** NUL-terminated ASCII, padded with NULs to a multiple of `align`. */
  cstring(s: string, align = 1, at = this.length): number {
    let n = s.length + 1;
    n = Math.ceil(n / align) * align;
    this.chars(s, n, at);
    return n;
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

/** Prepend-free finishing: fill the header of a table whose body starts at offset 36 of `w`. */
export function finishAcpiTable(w: AcpiWriter, signature: string, revision: number, oem: AcpiOemInfo = {}): Uint8Array {
  w.reserve(ACPI_HEADER_SIZE);
  w.chars(signature, 4, 0);
  w.u32(w.length, 4);
  w.u8(revision, 8);
  w.u8(0, 9);
  w.chars(oem.oemId ?? 'IOMSIM', 6, 10);
  w.chars(oem.oemTableId ?? `IOMSIM${signature.slice(0, 2)}`, 8, 16);
  w.u32(oem.oemRevision ?? 1, 24);
  w.chars(oem.creatorId ?? 'IOMS', 4, 28);
  w.u32(oem.creatorRevision ?? 1, 32);
  const out = w.result();
  out[9] = (0x100 - acpiChecksum(out)) & 0xff;
  return out;
}

/** A new writer with room for the header. */
export function acpiTableWriter(): AcpiWriter {
  const w = new AcpiWriter();
  w.reserve(ACPI_HEADER_SIZE);
  return w;
}

/** The signature of a blob, or null if it is too short to have one. */
export function acpiSignature(blob: Uint8Array): string | null {
  if (blob.length < 4) return null;
  return String.fromCharCode(blob[0]!, blob[1]!, blob[2]!, blob[3]!);
}
