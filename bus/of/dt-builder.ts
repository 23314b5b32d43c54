/**
 * A typed builder for writing machines as Device Trees in code.
 *
 *   const b = new DtBuilder({ compatible: 'iommu-sim,virt', '#address-cells': 2, '#size-cells': 2 });
 *   const gic = b.node('/intc@8000000', {
 *     compatible: 'arm,gic-v3', 'interrupt-controller': true, '#interrupt-cells': 3,
 *     reg: reg([0x800_0000, 0x1_0000], [0x80a_0000, 0xf6_0000]),
 *   });
 *   b.root.set({ 'interrupt-parent': gic });
 *   const smmu = b.node('/iommu@9050000', { compatible: 'arm,smmu-v3', '#iommu-cells': 1, ... });
 *   b.node('/dma@a000000', { iommus: [smmu, 0x10], 'dma-can-stall': true });
 *   const tree = b.build();          // DeviceTree; b.blob() gives the DTB
 *
 * Property values are typed:
 *   true                  empty (boolean) property; false leaves the property out
 *   number                one u32 cell
 *   bigint / u64(...)     64-bit values, two cells each
 *   string / string[]     NUL-terminated string / string list
 *   (number | node)[]     u32 cells; a node handle becomes that node's phandle
 *   node                  a one-cell phandle reference (e.g. `interrupt-parent`)
 *   Uint8Array            raw bytes
 *   reg(...) / ranges(...) address lists encoded with the right #address-cells/#size-cells
 * Phandles are assigned at build time, in tree order, to referenced nodes only (a `phandle`
 * given explicitly is kept). Mistakes (unknown parent, duplicate node, a value too wide for
 * its cells, a reference to a node of another builder) raise DtBuilderError naming the node.
 */
import { writeFdt } from './fdt.js';
import { DeviceTree, DtNode } from './tree.js';

export class DtBuilderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DtBuilderError';
  }
}

/** An address given as a number, a bigint, or raw cells (most significant first). */
export type DtAddress = number | bigint | readonly number[];

const REG = Symbol('reg');
const RANGES = Symbol('ranges');
const U64 = Symbol('u64');

/** `reg` entries, encoded with the parent's #address-cells and #size-cells. */
export interface DtRegValue {
  readonly kind: typeof REG;
  readonly entries: readonly (readonly [address: DtAddress, size: DtAddress])[];
}

/** `ranges` entries, encoded with the node's own and its parent's cell counts. */
export interface DtRangesValue {
  readonly kind: typeof RANGES;
  readonly entries: readonly (readonly [childAddress: DtAddress, parentAddress: DtAddress, size: DtAddress])[];
}

/** 64-bit values, two cells each. */
export interface DtU64Value {
  readonly kind: typeof U64;
  readonly values: readonly (number | bigint)[];
}

export type DtCell = number | DtBuilderNode;

export type DtValue =
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | DtBuilderNode
  | readonly string[]
  | readonly DtCell[]
  | DtRegValue
  | DtRangesValue
  | DtU64Value;

export type DtProps = Record<string, DtValue>;

/** `reg = <address size>...` with the parent's cell counts. */
export function reg(...entries: (readonly [address: DtAddress, size: DtAddress])[]): DtRegValue {
  return { kind: REG, entries };
}

/** `ranges = <child-address parent-address size>...`; `ranges()` with no entries is the identity. */
export function ranges(...entries: (readonly [childAddress: DtAddress, parentAddress: DtAddress, size: DtAddress])[]): DtRangesValue {
  return { kind: RANGES, entries };
}

/** 64-bit cells pairs, e.g. `u64(0x8_0000_0000)`. */
export function u64(...values: (number | bigint)[]): DtU64Value {
  return { kind: U64, values };
}

/** A node being built; pass it as a property value to reference it by phandle. */
export class DtBuilderNode {
  readonly children: DtBuilderNode[] = [];
  readonly props = new Map<string, DtValue>();

  constructor(
    readonly builder: DtBuilder,
    readonly name: string,
    readonly parent: DtBuilderNode | null,
  ) {}

  get path(): string {
    if (!this.parent) return '/';
    const p = this.parent.path;
    return p === '/' ? `/${this.name}` : `${p}/${this.name}`;
  }

  /** Add or replace properties; `false` removes one. Returns this node. */
  set(props: DtProps): this {
    for (const [k, v] of Object.entries(props)) {
      if (k === '') throw new DtBuilderError(`${this.path}: property with an empty name`);
      if (v === false) this.props.delete(k);
      else this.props.set(k, v);
    }
    return this;
  }

  /** Add a child node by name ("dma@1000"). */
  node(name: string, props: DtProps = {}): DtBuilderNode {
    checkNodeName(name, this.path);
    if (this.children.some((c) => c.name === name)) {
      throw new DtBuilderError(`duplicate node: ${this.path === '/' ? '' : this.path}/${name} already exists`);
    }
    const child = new DtBuilderNode(this.builder, name, this);
    this.children.push(child);
    return child.set(props);
  }

  *walk(): IterableIterator<DtBuilderNode> {
    yield this;
    for (const c of this.children) yield* c.walk();
  }
}

function checkNodeName(name: string, parentPath: string): void {
  if (name === '' || name.includes('/')) {
    throw new DtBuilderError(`bad node name "${name}" under ${parentPath}: names are non-empty and contain no '/'`);
  }
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 0 || c > 0xff) throw new DtBuilderError(`bad node name "${name}" under ${parentPath}: character code ${c}`);
  }
}

export class DtBuilder {
  readonly root: DtBuilderNode;
  /** Memory reservation map entries. */
  readonly reservations: { address: number; size: number }[] = [];
  bootCpuId = 0;

  constructor(rootProps: DtProps = {}) {
    this.root = new DtBuilderNode(this, '', null);
    this.root.set(rootProps);
  }

  /** Add a node by full path ("/soc/dma@1000"); its parent must already exist. */
  node(path: string, props: DtProps = {}): DtBuilderNode {
    if (!path.startsWith('/') || path === '/') {
      throw new DtBuilderError(`node path "${path}" must be absolute and not "/" (set root properties with root.set())`);
    }
    const cut = path.lastIndexOf('/');
    const parentPath = cut === 0 ? '/' : path.slice(0, cut);
    const parent = this.find(parentPath);
    if (!parent) throw new DtBuilderError(`cannot add ${path}: parent ${parentPath} does not exist`);
    return parent.node(path.slice(cut + 1), props);
  }

  /** The node at `path`; DtBuilderError if there is none. */
  get(path: string): DtBuilderNode {
    const n = this.find(path);
    if (!n) throw new DtBuilderError(`no node ${path}`);
    return n;
  }

  private find(path: string): DtBuilderNode | undefined {
    let n: DtBuilderNode | undefined = this.root;
    for (const part of path.split('/').filter((p) => p !== '')) {
      n = n.children.find((c) => c.name === part);
      if (!n) return undefined;
    }
    return n;
  }

  /** Add a `/memreserve/` entry. */
  memreserve(address: number, size: number): this {
    for (const [what, v] of [['address', address], ['size', size]] as const) {
      if (!Number.isSafeInteger(v) || v < 0) throw new DtBuilderError(`memreserve ${what} ${v} is not an integer in [0, 2^53)`);
    }
    this.reservations.push({ address, size });
    return this;
  }

  /** The tree as a DeviceTree (fresh nodes on every call). */
  build(): DeviceTree {
    const phandles = this.assignPhandles();
    const build = (b: DtBuilderNode, parent: DtNode | null): DtNode => {
      const n = new DtNode(b.name, parent);
      const enc = new Encoder(b, n, phandles);
      // cell-count-dependent values need this node's own #address-cells/#size-cells first
      const deferred: [string, DtValue][] = [];
      for (const [k, v] of b.props) {
        if (isTagged(v, REG) || isTagged(v, RANGES)) {
          n.properties.set(k, new Uint8Array(0)); // keep declaration order
          deferred.push([k, v]);
        } else {
          n.properties.set(k, enc.value(k, v));
        }
      }
      for (const [k, v] of deferred) n.properties.set(k, enc.value(k, v));
      const ph = phandles.get(b);
      if (ph !== undefined && !b.props.has('phandle')) n.properties.set('phandle', cellBytes([ph]));
      for (const c of b.children) n.children.push(build(c, n));
      return n;
    };
    const tree = new DeviceTree(build(this.root, null));
    tree.reservations.push(...this.reservations.map((r) => ({ ...r })));
    tree.bootCpuId = this.bootCpuId;
    return tree;
  }

  /** The tree as a DTB. */
  blob(): Uint8Array {
    return writeFdt(this.build());
  }

  /** Phandles of referenced nodes: explicit `phandle` values kept, the rest numbered in tree order. */
  private assignPhandles(): Map<DtBuilderNode, number> {
    const referenced = new Set<DtBuilderNode>();
    const explicit = new Map<DtBuilderNode, number>();
    const used = new Set<number>();
    for (const n of this.root.walk()) {
      for (const [k, v] of n.props) {
        for (const r of refsIn(v)) {
          if (r.builder !== this) throw new DtBuilderError(`${n.path}: property "${k}" references ${r.path} of another builder`);
          if (!isAttached(r, this.root)) throw new DtBuilderError(`${n.path}: property "${k}" references ${r.path}, which is not in the tree`);
          referenced.add(r);
        }
      }
      const p = n.props.get('phandle');
      if (p !== undefined) {
        if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p >= 0xffffffff) {
          throw new DtBuilderError(`${n.path}: explicit "phandle" must be a number in [1, 0xfffffffe]`);
        }
        if (used.has(p)) throw new DtBuilderError(`${n.path}: phandle ${p} is already used by another node`);
        used.add(p);
        explicit.set(n, p);
      }
    }
    const out = new Map<DtBuilderNode, number>(explicit);
    let next = 1;
    for (const n of this.root.walk()) {
      if (!referenced.has(n) || out.has(n)) continue;
      while (used.has(next)) next++;
      out.set(n, next);
      used.add(next);
    }
    return out;
  }
}

function isAttached(n: DtBuilderNode, root: DtBuilderNode): boolean {
  let r: DtBuilderNode = n;
  while (r.parent) {
    if (!r.parent.children.includes(r)) return false;
    r = r.parent;
  }
  return r === root;
}

function isTagged<K extends symbol>(v: DtValue, kind: K): v is Extract<DtValue, { kind: K }> {
  return typeof v === 'object' && v !== null && !(v instanceof Uint8Array) && !(v instanceof DtBuilderNode) && !Array.isArray(v) && (v as { kind?: symbol }).kind === kind;
}

function refsIn(v: DtValue): DtBuilderNode[] {
  if (v instanceof DtBuilderNode) return [v];
  if (Array.isArray(v)) return (v as readonly unknown[]).filter((x): x is DtBuilderNode => x instanceof DtBuilderNode);
  return [];
}

function cellBytes(cells: readonly number[]): Uint8Array {
  const out = new Uint8Array(cells.length * 4);
  const dv = new DataView(out.buffer);
  cells.forEach((c, i) => dv.setUint32(i * 4, c));
  return out;
}

const U32_MAX = 0xffffffff;

/** Encodes one node's property values. */
class Encoder {
  constructor(
    private readonly b: DtBuilderNode,
    private readonly n: DtNode,
    private readonly phandles: Map<DtBuilderNode, number>,
  ) {}

  private err(prop: string, msg: string): never {
    throw new DtBuilderError(`${this.b.path}: property "${prop}": ${msg}`);
  }

  value(prop: string, v: DtValue): Uint8Array {
    if (v === true) return new Uint8Array(0);
    if (v === false) this.err(prop, 'false values are not stored');
    if (typeof v === 'number') return cellBytes([this.u32(prop, v)]);
    if (typeof v === 'bigint') return cellBytes(this.cellsOf(prop, v, 2));
    if (typeof v === 'string') return this.strings(prop, [v]);
    if (v instanceof Uint8Array) return v.slice();
    if (v instanceof DtBuilderNode) return cellBytes([this.phandles.get(v)!]);
    if (Array.isArray(v)) {
      const arr = v as readonly unknown[];
      if (arr.length > 0 && arr.every((x) => typeof x === 'string')) return this.strings(prop, arr);
      return cellBytes(
        arr.map((x) => {
          if (typeof x === 'number') return this.u32(prop, x);
          if (x instanceof DtBuilderNode) return this.phandles.get(x)!;
          return this.err(prop, 'a list mixes strings with cells, or holds something that is neither');
        }),
      );
    }
    if (isTagged(v, U64)) return cellBytes(v.values.flatMap((x) => this.cellsOf(prop, x, 2)));
    if (isTagged(v, REG)) {
      const { na, ns } = this.parentCells(prop);
      return cellBytes(v.entries.flatMap(([a, s]) => [...this.cellsOf(prop, a, na), ...this.cellsOf(prop, s, ns)]));
    }
    if (isTagged(v, RANGES)) {
      const { na: pna } = this.parentCells(prop);
      const na = this.ownCells(prop, '#address-cells');
      const ns = this.ownCells(prop, '#size-cells');
      return cellBytes(
        v.entries.flatMap(([c, p, s]) => [...this.cellsOf(prop, c, na), ...this.cellsOf(prop, p, pna), ...this.cellsOf(prop, s, ns)]),
      );
    }
    return this.err(prop, 'unsupported value');
  }

  private u32(prop: string, x: number): number {
    if (!Number.isInteger(x) || x < 0 || x > U32_MAX) this.err(prop, `${x} is not a u32 cell value`);
    return x;
  }

  private strings(prop: string, list: readonly string[]): Uint8Array {
    const bytes: number[] = [];
    for (const s of list) {
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c === 0 || c > 0xff) this.err(prop, `string "${s}" has character code ${c}`);
        bytes.push(c);
      }
      bytes.push(0);
    }
    return Uint8Array.from(bytes);
  }

  /** `x` as exactly `count` big-endian cells. */
  private cellsOf(prop: string, x: DtAddress, count: number): number[] {
    if (Array.isArray(x)) {
      const cells = x as readonly number[];
      if (cells.length !== count) this.err(prop, `address given as ${cells.length} cells where ${count} are needed`);
      return cells.map((c) => this.u32(prop, c));
    }
    let big: bigint;
    if (typeof x === 'number') {
      if (!Number.isSafeInteger(x) || x < 0) this.err(prop, `${x} is not a non-negative integer below 2^53`);
      big = BigInt(x);
    } else {
      big = x as bigint;
    }
    if (big < 0n || big >> BigInt(32 * count) !== 0n) this.err(prop, `0x${big.toString(16)} does not fit in ${count} cell(s)`);
    const out = new Array<number>(count);
    for (let i = count - 1; i >= 0; i--) {
      out[i] = Number(big & 0xffffffffn);
      big >>= 32n;
    }
    return out;
  }

  private parentCells(prop: string): { na: number; ns: number } {
    const p = this.n.parent;
    if (!p) this.err(prop, 'the root node has no parent to take #address-cells/#size-cells from');
    const na = p.properties.has('#address-cells') ? p.u32('#address-cells') : undefined;
    const ns = p.properties.has('#size-cells') ? p.u32('#size-cells') : undefined;
    if (na === undefined || ns === undefined) {
      this.err(prop, `parent ${p.path} must set #address-cells and #size-cells explicitly`);
    }
    return { na, ns };
  }

  private ownCells(prop: string, name: string): number {
    const v = this.n.properties.has(name) ? this.n.u32(name) : undefined;
    if (v === undefined) this.err(prop, `"ranges" needs ${name} on the node itself`);
    return v;
  }
}
