/**
 * The in-memory device tree: nodes with raw property bytes, as the FDT carries them, and the
 * accessors the kernel's `of_*` helpers provide. Values are big-endian cells. A property that is
 * present but has the wrong size for what is asked raises FirmwareError naming the node.
 */
import { FirmwareError } from '../firmware-error.js';

export interface MemReserve {
  address: number;
  size: number;
}

/** One entry of a phandle list: the node it names and the argument cells after the phandle. */
export interface OfPhandleArgs {
  node: DtNode;
  args: number[];
}

/** The kernel's MAX_PHANDLE_ARGS: no specifier may have more argument cells than this. */
export const MAX_PHANDLE_ARGS = 16;

export class DtNode {
  readonly children: DtNode[] = [];
  readonly properties = new Map<string, Uint8Array>();
  /** Byte offset of the node's BEGIN_NODE token in the blob it came from (null when built). */
  offset: number | null = null;
  /** Byte offset of each property's FDT_PROP token in the blob it came from (empty when built). */
  readonly propertyOffsets = new Map<string, number>();

  constructor(
    /** Node name with unit address, e.g. "iommu@2b400000"; "" for the root. */
    readonly name: string,
    readonly parent: DtNode | null,
  ) {}

  /** Full path as dtc prints it: "/", "/soc/dma@1000". */
  get path(): string {
    if (!this.parent) return '/';
    const p = this.parent.path;
    return p === '/' ? `/${this.name}` : `${p}/${this.name}`;
  }

  /** The name before '@'. */
  get baseName(): string {
    const at = this.name.indexOf('@');
    return at < 0 ? this.name : this.name.slice(0, at);
  }

  /** The unit address after '@', or null. */
  get unitAddress(): string | null {
    const at = this.name.indexOf('@');
    return at < 0 ? null : this.name.slice(at + 1);
  }

  /** Where a property came from in the blob (its FDT_PROP token), else the node's offset. */
  propOffset(name: string): number | null {
    return this.propertyOffsets.get(name) ?? this.offset;
  }

  has(name: string): boolean {
    return this.properties.has(name);
  }

  prop(name: string): Uint8Array | undefined {
    return this.properties.get(name);
  }

  child(name: string): DtNode | undefined {
    return this.children.find((c) => c.name === name);
  }

  /** The property as big-endian u32 cells; undefined if absent. */
  cells(name: string): number[] | undefined {
    const v = this.properties.get(name);
    if (v === undefined) return undefined;
    if (v.length % 4 !== 0) {
      throw new FirmwareError('dtb', `property "${name}" is ${v.length} bytes, not a whole number of cells`, this.propOffset(name), this.path);
    }
    const out: number[] = new Array(v.length / 4);
    const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
    for (let i = 0; i < out.length; i++) out[i] = dv.getUint32(i * 4, false);
    return out;
  }

  /** A one-cell property; undefined if absent. */
  u32(name: string): number | undefined {
    const c = this.cells(name);
    if (c === undefined) return undefined;
    if (c.length !== 1) {
      throw new FirmwareError('dtb', `property "${name}" has ${c.length} cells, expected 1`, this.propOffset(name), this.path);
    }
    return c[0];
  }

  /** A list of NUL-terminated strings; undefined if absent. */
  strings(name: string): string[] | undefined {
    const v = this.properties.get(name);
    if (v === undefined) return undefined;
    if (v.length === 0) return [];
    if (v[v.length - 1] !== 0) {
      throw new FirmwareError('dtb', `property "${name}" is not a NUL-terminated string list`, this.propOffset(name), this.path);
    }
    const out: string[] = [];
    let start = 0;
    for (let i = 0; i < v.length; i++) {
      if (v[i] === 0) {
        out.push(latin1(v.subarray(start, i)));
        start = i + 1;
      }
    }
    return out;
  }

  /** A single string property (the first of a list); undefined if absent. */
  string(name: string): string | undefined {
    return this.strings(name)?.[0];
  }

  get compatible(): string[] {
    return this.strings('compatible') ?? [];
  }

  isCompatible(c: string): boolean {
    return this.compatible.includes(c);
  }

  get phandle(): number | undefined {
    return this.u32('phandle') ?? this.u32('linux,phandle');
  }

  /** status is "okay"/"ok" or absent, on this node and on every ancestor. */
  get available(): boolean {
    for (let n: DtNode | null = this; n; n = n.parent) {
      const s = n.has('status') ? n.string('status') : undefined;
      if (s !== undefined && s !== 'okay' && s !== 'ok') return false;
    }
    return true;
  }

  /** #address-cells this node gives its children (default 2, as the kernel assumes). */
  get addressCells(): number {
    return this.u32('#address-cells') ?? 2;
  }

  /** #size-cells this node gives its children (default 1). */
  get sizeCells(): number {
    return this.u32('#size-cells') ?? 1;
  }

  /** Depth-first walk of this node and its descendants, in tree order. */
  *walk(): IterableIterator<DtNode> {
    yield this;
    for (const c of this.children) yield* c.walk();
  }
}

export class DeviceTree {
  /** Memory reservation map entries. */
  readonly reservations: MemReserve[] = [];
  bootCpuId = 0;
  private phandles: Map<number, DtNode> | null = null;

  constructor(
    readonly root: DtNode,
    /** The blob this tree was read from, or null for a tree built in memory. */
    readonly blob: Uint8Array | null = null,
  ) {}

  /** Look up a node by full path ("/soc/iommu@1000"); undefined if absent. */
  byPath(path: string): DtNode | undefined {
    if (path === '/') return this.root;
    let n: DtNode | undefined = this.root;
    for (const part of path.split('/').filter((p) => p.length > 0)) {
      n = n.child(part) ?? n.children.find((c) => c.baseName === part && !part.includes('@'));
      if (!n) return undefined;
    }
    return n;
  }

  /**
   * The node with this phandle; undefined if none. Phandle 0 names no node, and when two nodes
   * claim one phandle the first in tree order wins, as of_find_node_by_phandle() finds it.
   */
  // kernel: of_find_node_by_phandle() [base.c]
  byPhandle(ph: number): DtNode | undefined {
    if (ph === 0) return undefined;
    if (!this.phandles) {
      const map = new Map<number, DtNode>();
      for (const n of this.root.walk()) {
        const p = n.phandle;
        if (p !== undefined && !map.has(p)) map.set(p, n);
      }
      this.phandles = map;
    }
    return this.phandles.get(ph);
  }

  /** Resolve a phandle or raise FirmwareError naming the property that used it. */
  resolvePhandle(ph: number, from: DtNode, prop: string): DtNode {
    const n = this.byPhandle(ph);
    if (!n) {
      throw new FirmwareError('dtb', `property "${prop}" references phandle ${ph}, which no node has`, from.propOffset(prop), from.path);
    }
    return n;
  }

  /**
   * Decode a phandle list such as `iommus`, `interrupts-extended` or `msi-parent`: each entry is
   * a phandle followed by as many cells as the named node's `cellsName` property says. When that
   * property is absent, `defaultCells` is used if given, else it is a FirmwareError. A zero
   * phandle is an empty entry with no arguments; it is returned as null, as the kernel's
   * iterator reports it. Dangling phandles and lists that end mid-entry raise FirmwareError.
   */
  // kernel: of_parse_phandle_with_args() [base.c]
  phandleArgs(from: DtNode, listName: string, cellsName: string, defaultCells?: number): (OfPhandleArgs | null)[] {
    const list = from.cells(listName);
    if (list === undefined) return [];
    const out: (OfPhandleArgs | null)[] = [];
    let i = 0;
    while (i < list.length) {
      const ph = list[i++];
      if (ph === 0) {
        out.push(null);
        continue;
      }
      const node = this.resolvePhandle(ph, from, listName);
      let count = node.u32(cellsName);
      if (count === undefined) {
        if (defaultCells === undefined) {
          throw new FirmwareError('dtb', `property "${listName}" names ${node.path}, which has no "${cellsName}"`, from.propOffset(listName), from.path);
        }
        count = defaultCells;
      }
      if (count > MAX_PHANDLE_ARGS) {
        throw new FirmwareError('dtb', `"${cellsName}" of ${node.path} is ${count}, more than ${MAX_PHANDLE_ARGS}`, node.propOffset(cellsName), node.path);
      }
      if (i + count > list.length) {
        throw new FirmwareError(
          'dtb',
          `property "${listName}": ${node.path} takes ${count} cells (${cellsName}) but only ${list.length - i} remain`,
          from.propOffset(listName),
          from.path,
        );
      }
      out.push({ node, args: list.slice(i, i + count) });
      i += count;
    }
    return out;
  }

  /** Forget cached lookups after the tree was edited. */
  invalidate(): void {
    this.phandles = null;
  }

  *nodes(): IterableIterator<DtNode> {
    yield* this.root.walk();
  }
}

function latin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
  return s;
}
