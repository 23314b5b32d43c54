/**
 * Flattened Device Tree (FDT, "DTB") reader and writer, per the Devicetree Specification's
 * flattened format: a header, the memory reservation map, the structure block (a token stream)
 * and the strings block (property names).
 *
 * The reader accepts header versions 16 and later whose last_comp_version is at most 17 and
 * checks every offset and size against the blob before using it, so a damaged blob ends in a
 * FirmwareError naming the byte offset (and node path, once inside a node) and nothing else.
 * Every loop advances through the blob, so none can outlive it.
 *
 * The writer emits version 17 (last_comp_version 16) laid out as dtc lays it out: header,
 * 8-byte aligned reservation map, structure block, strings block (each name stored once).
 */
import { FirmwareError } from '../firmware-error.js';
import { DeviceTree, DtNode } from './tree.js';

const FDT_MAGIC = 0xd00dfeed;
const FDT_BEGIN_NODE = 0x1;
const FDT_END_NODE = 0x2;
const FDT_PROP = 0x3;
const FDT_NOP = 0x4;
const FDT_END = 0x9;

/** Header size by version: v17 added size_dt_struct. */
const HEADER_SIZE_V16 = 36;
const HEADER_SIZE_V17 = 40;
const OLDEST_VERSION = 16;
const LAST_COMPATIBLE_VERSION = 17;
const WRITE_VERSION = 17;
const WRITE_LAST_COMP_VERSION = 16;

/** Header field offsets. */
const H_MAGIC = 0;
const H_TOTALSIZE = 4;
const H_OFF_DT_STRUCT = 8;
const H_OFF_DT_STRINGS = 12;
const H_OFF_MEM_RSVMAP = 16;
const H_VERSION = 20;
const H_LAST_COMP_VERSION = 24;
const H_BOOT_CPUID_PHYS = 28;
const H_SIZE_DT_STRINGS = 32;
const H_SIZE_DT_STRUCT = 36;

const RSV_ENTRY_SIZE = 16;
/** Deeper nesting than this is taken as damage (Linux's unflattener stops at 64 too). */
export const FDT_MAX_DEPTH = 64;
/** Largest u64 high word whose value still fits a JS number exactly (2^53 - 1). */
const MAX_SAFE_HIGH_WORD = 0x1fffff;

function fail(reason: string, offset: number | null, where: string | null = null): never {
  throw new FirmwareError('dtb', reason, offset, where);
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

function latin1(b: Uint8Array, start: number, end: number): string {
  let s = '';
  for (let i = start; i < end; i++) s += String.fromCharCode(b[i]);
  return s;
}

interface Block {
  name: string;
  start: number;
  end: number;
}

function overlaps(a: Block, b: Block): boolean {
  return a.start < a.end && b.start < b.end && a.start < b.end && b.start < a.end;
}

/** Read a DTB into a DeviceTree. Raises FirmwareError, and only that, on any damage. */
export function parseFdt(blob: Uint8Array): DeviceTree {
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const len = blob.length;

  // --- header ---
  if (len < 4) fail(`blob is ${len} bytes, too short for the FDT magic`, 0);
  const magic = dv.getUint32(H_MAGIC);
  if (magic !== FDT_MAGIC) fail(`bad magic ${hex(magic)}, expected ${hex(FDT_MAGIC)}`, H_MAGIC);
  if (len < H_LAST_COMP_VERSION + 4) fail(`blob is ${len} bytes, truncated inside the header`, len);
  const version = dv.getUint32(H_VERSION);
  const lastComp = dv.getUint32(H_LAST_COMP_VERSION);
  if (version < OLDEST_VERSION) fail(`FDT version ${version} is older than ${OLDEST_VERSION}, not supported`, H_VERSION);
  if (lastComp > LAST_COMPATIBLE_VERSION) {
    fail(`last_comp_version ${lastComp} is newer than ${LAST_COMPATIBLE_VERSION}, not readable`, H_LAST_COMP_VERSION);
  }
  if (lastComp > version) fail(`last_comp_version ${lastComp} is greater than version ${version}`, H_LAST_COMP_VERSION);
  const headerSize = version >= 17 ? HEADER_SIZE_V17 : HEADER_SIZE_V16;
  if (len < headerSize) fail(`blob is ${len} bytes, truncated inside the ${headerSize}-byte header`, len);

  const totalSize = dv.getUint32(H_TOTALSIZE);
  if (totalSize < headerSize) fail(`totalsize ${totalSize} is smaller than the header`, H_TOTALSIZE);
  if (totalSize > len) fail(`totalsize ${totalSize} exceeds the blob's ${len} bytes (truncated blob?)`, H_TOTALSIZE);

  const structOff = dv.getUint32(H_OFF_DT_STRUCT);
  const stringsOff = dv.getUint32(H_OFF_DT_STRINGS);
  const rsvOff = dv.getUint32(H_OFF_MEM_RSVMAP);
  const stringsSize = dv.getUint32(H_SIZE_DT_STRINGS);
  checkBlockStart('off_dt_struct', structOff, H_OFF_DT_STRUCT, headerSize, totalSize);
  checkBlockStart('off_dt_strings', stringsOff, H_OFF_DT_STRINGS, headerSize, totalSize);
  checkBlockStart('off_mem_rsvmap', rsvOff, H_OFF_MEM_RSVMAP, headerSize, totalSize);
  // v16 has no size_dt_struct: the block may run to the end of the blob.
  const structSize = version >= 17 ? dv.getUint32(H_SIZE_DT_STRUCT) : totalSize - structOff;
  if (structSize > totalSize - structOff) {
    fail(`structure block (${hex(structOff)} + ${structSize}) runs past totalsize ${totalSize}`, H_SIZE_DT_STRUCT);
  }
  if (stringsSize > totalSize - stringsOff) {
    fail(`strings block (${hex(stringsOff)} + ${stringsSize}) runs past totalsize ${totalSize}`, H_SIZE_DT_STRINGS);
  }
  const structBlock: Block = { name: 'structure block', start: structOff, end: structOff + structSize };
  const stringsBlock: Block = { name: 'strings block', start: stringsOff, end: stringsOff + stringsSize };
  if (version >= 17 && overlaps(structBlock, stringsBlock)) {
    fail('structure block and strings block overlap', H_OFF_DT_STRINGS);
  }

  // --- memory reservation map ---
  const reservations: { address: number; size: number }[] = [];
  let rsv = rsvOff;
  for (;;) {
    if (rsv + RSV_ENTRY_SIZE > totalSize) fail('memory reservation map runs past totalsize without its terminating entry', rsv);
    const address = readU64(dv, rsv, 'reservation address');
    const size = readU64(dv, rsv + 8, 'reservation size');
    rsv += RSV_ENTRY_SIZE;
    if (address === 0 && size === 0) break;
    reservations.push({ address, size });
  }
  const rsvBlock: Block = { name: 'memory reservation map', start: rsvOff, end: rsv };
  for (const b of [structBlock, stringsBlock]) {
    if (overlaps(rsvBlock, b)) fail(`memory reservation map overlaps the ${b.name}`, rsvOff);
  }

  // --- structure block ---
  const structEnd = structBlock.end;
  const stringsEnd = stringsBlock.end;
  const stack: DtNode[] = [];
  let root: DtNode | null = null;
  let off = structOff;
  const where = (): string | null => (stack.length ? stack[stack.length - 1].path : null);
  const next = (n: number): number => structOff + align4(n - structOff);

  for (;;) {
    if (off + 4 > structEnd) fail('structure block ends without FDT_END (truncated?)', off, where());
    const tokenOff = off;
    const token = dv.getUint32(off);
    off += 4;
    switch (token) {
      case FDT_BEGIN_NODE: {
        const nameEnd = findNul(blob, off, structEnd);
        if (nameEnd < 0) fail('node name runs past the end of the structure block (unterminated)', off, where());
        const name = latin1(blob, off, nameEnd);
        off = next(nameEnd + 1);
        const parent = stack.length ? stack[stack.length - 1] : null;
        let node: DtNode;
        if (parent === null) {
          if (root !== null) fail('a second top-level node follows the root node', tokenOff);
          if (name !== '') fail(`root node has a name ("${name}"); it must be empty`, tokenOff, '/');
          node = new DtNode('', null);
          root = node;
        } else {
          if (stack.length >= FDT_MAX_DEPTH) fail(`nodes nested deeper than ${FDT_MAX_DEPTH} levels`, tokenOff, parent.path);
          if (name === '') fail('node with an empty name', tokenOff, parent.path);
          if (name.includes('/')) fail(`node name "${name}" contains '/'`, tokenOff, parent.path);
          node = new DtNode(name, parent);
          parent.children.push(node);
        }
        node.offset = tokenOff;
        stack.push(node);
        break;
      }
      case FDT_END_NODE:
        if (!stack.length) fail('FDT_END_NODE with no node open', tokenOff);
        stack.pop();
        break;
      case FDT_PROP: {
        const node = stack.length ? stack[stack.length - 1] : null;
        if (node === null) fail('FDT_PROP outside any node', tokenOff);
        if (off + 8 > structEnd) fail('property header runs past the end of the structure block', tokenOff, node.path);
        const valueLen = dv.getUint32(off);
        const nameOff = dv.getUint32(off + 4);
        off += 8;
        if (valueLen > structEnd - off) {
          fail(`property value of ${valueLen} bytes runs past the end of the structure block`, tokenOff, node.path);
        }
        if (nameOff >= stringsSize) {
          fail(`property name offset ${hex(nameOff)} is outside the ${stringsSize}-byte strings block`, tokenOff, node.path);
        }
        const nameStart = stringsOff + nameOff;
        const nameEnd = findNul(blob, nameStart, stringsEnd);
        if (nameEnd < 0) fail('property name runs past the end of the strings block (unterminated)', tokenOff, node.path);
        if (nameEnd === nameStart) fail('property with an empty name', tokenOff, node.path);
        const name = latin1(blob, nameStart, nameEnd);
        if (node.properties.has(name)) fail(`property "${name}" appears twice`, tokenOff, node.path);
        node.properties.set(name, blob.slice(off, off + valueLen));
        node.propertyOffsets.set(name, tokenOff);
        off = next(off + valueLen);
        break;
      }
      case FDT_NOP:
        break;
      case FDT_END: {
        if (stack.length) fail(`FDT_END while node ${stack[stack.length - 1].path} is still open`, tokenOff, where());
        if (root === null) fail('structure block has no root node', tokenOff);
        const tree = new DeviceTree(root, blob);
        tree.bootCpuId = dv.getUint32(H_BOOT_CPUID_PHYS);
        tree.reservations.push(...reservations);
        return tree;
      }
      default:
        fail(`unknown structure token ${hex(token)}`, tokenOff, where());
    }
  }
}

function checkBlockStart(field: string, off: number, fieldOff: number, headerSize: number, totalSize: number): void {
  if (off < headerSize) fail(`${field} ${hex(off)} points into the header`, fieldOff);
  if (off > totalSize) fail(`${field} ${hex(off)} is beyond totalsize ${totalSize}`, fieldOff);
}

function readU64(dv: DataView, off: number, what: string): number {
  const hi = dv.getUint32(off);
  const lo = dv.getUint32(off + 4);
  if (hi > MAX_SAFE_HIGH_WORD) fail(`${what} ${hex(hi)}_${lo.toString(16).padStart(8, '0')} exceeds 2^53`, off);
  return hi * 0x1_0000_0000 + lo;
}

/** Index of the first NUL in [start, end), or -1. */
function findNul(b: Uint8Array, start: number, end: number): number {
  for (let i = start; i < end; i++) if (b[i] === 0) return i;
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Writer

class ByteSink {
  private buf = new Uint8Array(4096);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.buf.subarray(0, this.length));
    this.buf = nb;
    this.view = new DataView(nb.buffer);
  }

  u32(v: number): void {
    this.reserve(4);
    this.view.setUint32(this.length, v >>> 0);
    this.length += 4;
  }

  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }

  /** Zero-pad to a multiple of `n` bytes. */
  pad(n: number): void {
    const target = Math.ceil(this.length / n) * n;
    this.reserve(target - this.length);
    this.buf.fill(0, this.length, target);
    this.length = target;
  }

  take(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function encodeName(s: string, what: string, path: string): Uint8Array {
  const out = new Uint8Array(s.length + 1);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0 || c > 0xff) fail(`${what} "${s}" has a character (code ${c}) that a DTB cannot carry`, null, path);
    out[i] = c;
  }
  return out;
}

function checkU64(v: number, what: string): void {
  if (!Number.isSafeInteger(v) || v < 0) fail(`${what} ${v} is not an integer in [0, 2^53)`, null);
}

/** Serialise a DeviceTree as a version 17 DTB that dtc reads back without complaint. */
export function writeFdt(tree: DeviceTree): Uint8Array {
  const struct = new ByteSink();
  const strings = new ByteSink();
  const stringOffsets = new Map<string, number>();

  const nameOffset = (name: string, path: string): number => {
    let o = stringOffsets.get(name);
    if (o === undefined) {
      o = strings.length;
      strings.bytes(encodeName(name, 'property name', path));
      stringOffsets.set(name, o);
    }
    return o;
  };

  const emit = (node: DtNode, depth: number): void => {
    const path = node.path;
    if (depth > FDT_MAX_DEPTH) fail(`nodes nested deeper than ${FDT_MAX_DEPTH} levels`, null, path);
    if (node.parent === null) {
      if (node.name !== '') fail(`root node has a name ("${node.name}"); it must be empty`, null, '/');
    } else if (node.name === '' || node.name.includes('/')) {
      fail(`node name "${node.name}" is empty or contains '/'`, null, path);
    }
    struct.u32(FDT_BEGIN_NODE);
    struct.bytes(encodeName(node.name, 'node name', path));
    struct.pad(4);
    for (const [name, value] of node.properties) {
      if (name === '') fail('property with an empty name', null, path);
      struct.u32(FDT_PROP);
      struct.u32(value.length);
      struct.u32(nameOffset(name, path));
      struct.bytes(value);
      struct.pad(4);
    }
    const seen = new Set<string>();
    for (const child of node.children) {
      if (child.parent !== node) fail(`child "${child.name}" does not name this node as its parent`, null, path);
      if (seen.has(child.name)) fail(`two children named "${child.name}"`, null, path);
      seen.add(child.name);
      emit(child, depth + 1);
    }
    struct.u32(FDT_END_NODE);
  };
  emit(tree.root, 0);
  struct.u32(FDT_END);

  for (const r of tree.reservations) {
    checkU64(r.address, 'reservation address');
    checkU64(r.size, 'reservation size');
  }
  if (!Number.isInteger(tree.bootCpuId) || tree.bootCpuId < 0 || tree.bootCpuId > 0xffffffff) {
    fail(`boot CPU id ${tree.bootCpuId} is not a u32`, null);
  }

  const rsvOff = HEADER_SIZE_V17; // already 8-byte aligned
  const structOff = rsvOff + (tree.reservations.length + 1) * RSV_ENTRY_SIZE;
  const stringsOff = structOff + struct.length;
  const totalSize = stringsOff + strings.length;

  const out = new Uint8Array(totalSize);
  const dv = new DataView(out.buffer);
  dv.setUint32(H_MAGIC, FDT_MAGIC);
  dv.setUint32(H_TOTALSIZE, totalSize);
  dv.setUint32(H_OFF_DT_STRUCT, structOff);
  dv.setUint32(H_OFF_DT_STRINGS, stringsOff);
  dv.setUint32(H_OFF_MEM_RSVMAP, rsvOff);
  dv.setUint32(H_VERSION, WRITE_VERSION);
  dv.setUint32(H_LAST_COMP_VERSION, WRITE_LAST_COMP_VERSION);
  dv.setUint32(H_BOOT_CPUID_PHYS, tree.bootCpuId);
  dv.setUint32(H_SIZE_DT_STRINGS, strings.length);
  dv.setUint32(H_SIZE_DT_STRUCT, struct.length);
  let o = rsvOff;
  for (const r of tree.reservations) {
    writeU64(dv, o, r.address);
    writeU64(dv, o + 8, r.size);
    o += RSV_ENTRY_SIZE;
  }
  // the terminating entry is already zero
  out.set(struct.take(), structOff);
  out.set(strings.take(), stringsOff);
  return out;
}

function writeU64(dv: DataView, off: number, v: number): void {
  dv.setUint32(off, Math.floor(v / 0x1_0000_0000));
  dv.setUint32(off + 4, v >>> 0);
}
