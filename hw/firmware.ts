/**
 * The machine's own reading of the device tree.
 *
 * `hw/` may not import the kernel's DT code (bus/), so it reads the tree through a structural
 * interface that bus/of/tree.ts's DtNode satisfies, with its own small decoders: strings, u32 cells,
 * `reg` translated to CPU physical addresses through every ancestor's `ranges`, `interrupts` /
 * `interrupts-extended` with the `interrupt-parent` walk, `iommus`, `iommu-map`, phandles and
 * `status` (the node and all its ancestors).
 *
 * Errors here mean the firmware is malformed (a property of the wrong size, a dangling phandle, a
 * missing `#…-cells`): they throw MachineFirmwareError naming the node (and, for a tree read from a
 * blob, the property's byte offset), which the CLI reports as it does the kernel's FirmwareError.
 * An address that simply cannot be translated (a bus with no `ranges`) throws the subclass
 * UntranslatableAddressError, which the machine reports as a warning.
 */

/** A device-tree node as the machine sees it (bus/of/tree.ts's DtNode fits this shape). */
export interface FirmwareNode {
  readonly name: string;
  readonly path: string;
  readonly parent: FirmwareNode | null;
  readonly children: readonly FirmwareNode[];
  readonly properties: ReadonlyMap<string, Uint8Array>;
  /** Byte offset of the node in the blob the tree was read from, when it was read from one. */
  readonly offset?: number | null;
  /** Byte offset of each property in that blob. */
  readonly propertyOffsets?: ReadonlyMap<string, number>;
}

/** Malformed firmware, found while building the machine. Shaped like the kernel's FirmwareError. */
export class MachineFirmwareError extends Error {
  readonly format = 'dtb';
  constructor(
    readonly reason: string,
    /** Path of the node the problem belongs to. */
    readonly where: string | null,
    /** Byte offset in the blob (the property's, else the node's), when the tree came from a blob. */
    readonly offset: number | null = null,
  ) {
    const at = [offset !== null ? `offset 0x${offset.toString(16)}` : null, where !== null ? `node ${where}` : null].filter((x) => x !== null);
    super(`dtb: ${reason}${at.length ? ` (${at.join(', ')})` : ''}`);
    this.name = 'MachineFirmwareError';
  }
}

/** A `reg` entry that no chain of `ranges` maps to the CPU's physical address space. */
export class UntranslatableAddressError extends MachineFirmwareError {
  constructor(reason: string, where: string, offset: number | null = null) {
    super(reason, where, offset);
    this.name = 'UntranslatableAddressError';
  }
}

/** Where in the blob a property of a node is (the node itself when the property is absent). */
function propOffset(node: FirmwareNode, prop: string | null): number | null {
  return (prop !== null ? node.propertyOffsets?.get(prop) : undefined) ?? node.offset ?? null;
}

/** The error for a malformed property: names the node and the property's byte offset. */
export function malformed(node: FirmwareNode, prop: string | null, reason: string): MachineFirmwareError {
  return new MachineFirmwareError(reason, node.path, propOffset(node, prop));
}

/** A CPU-physical address range. */
export interface PhysRange {
  base: number;
  size: number;
}

// ---------------------------------------------------------------------------------------------
// Plain property decoders
// ---------------------------------------------------------------------------------------------

export function hasProp(node: FirmwareNode, name: string): boolean {
  return node.properties.has(name);
}

/** The property as big-endian u32 cells; undefined if absent. */
export function propCells(node: FirmwareNode, name: string): number[] | undefined {
  const v = node.properties.get(name);
  if (v === undefined) return undefined;
  if (v.length % 4 !== 0) {
    throw malformed(node, name, `property "${name}" is ${v.length} bytes, not a whole number of cells`);
  }
  const out: number[] = new Array<number>(v.length / 4);
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  for (let i = 0; i < out.length; i++) out[i] = dv.getUint32(i * 4, false);
  return out;
}

/** A one-cell property; undefined if absent. */
export function propU32(node: FirmwareNode, name: string): number | undefined {
  const c = propCells(node, name);
  if (c === undefined) return undefined;
  if (c.length !== 1) throw malformed(node, name, `property "${name}" has ${c.length} cells, expected 1`);
  return c[0];
}

/** A list of NUL-terminated strings; undefined if absent. */
export function propStrings(node: FirmwareNode, name: string): string[] | undefined {
  const v = node.properties.get(name);
  if (v === undefined) return undefined;
  if (v.length === 0) return [];
  if (v[v.length - 1] !== 0) {
    throw malformed(node, name, `property "${name}" is not a NUL-terminated string list`);
  }
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < v.length; i++) {
    if (v[i] === 0) {
      let s = '';
      for (let j = start; j < i; j++) s += String.fromCharCode(v[j]);
      out.push(s);
      start = i + 1;
    }
  }
  return out;
}

export function propString(node: FirmwareNode, name: string): string | undefined {
  return propStrings(node, name)?.[0];
}

export function compatibles(node: FirmwareNode): string[] {
  return propStrings(node, 'compatible') ?? [];
}

export function isCompatible(node: FirmwareNode, compatible: string): boolean {
  return compatibles(node).includes(compatible);
}

/** status is "okay"/"ok" or absent on this node and on every ancestor (kernel: of_device_is_available()). */
export function isEnabled(node: FirmwareNode): boolean {
  for (let n: FirmwareNode | null = node; n; n = n.parent) {
    const s = propString(n, 'status');
    if (s !== undefined && s !== 'okay' && s !== 'ok') return false;
  }
  return true;
}

/** #address-cells a node gives its children (2 when absent, as the DT specification says). */
export function addressCells(node: FirmwareNode): number {
  const v = propU32(node, '#address-cells') ?? 2;
  if (v > 4) throw malformed(node, '#address-cells', `#address-cells = ${v} is out of range`);
  return v;
}

/** #size-cells a node gives its children (1 when absent). */
export function sizeCells(node: FirmwareNode): number {
  const v = propU32(node, '#size-cells') ?? 1;
  if (v > 4) throw malformed(node, '#size-cells', `#size-cells = ${v} is out of range`);
  return v;
}

/** The unit address after '@', or null. */
export function unitAddress(node: FirmwareNode): string | null {
  const at = node.name.indexOf('@');
  return at < 0 ? null : node.name.slice(at + 1);
}

/** Depth-first walk in tree order. */
export function* walk(node: FirmwareNode): IterableIterator<FirmwareNode> {
  yield node;
  for (const c of node.children) yield* walk(c);
}

// ---------------------------------------------------------------------------------------------
// Phandles
// ---------------------------------------------------------------------------------------------

/** Index of one tree: phandles and paths. */
export class FirmwareIndex {
  private readonly phandles = new Map<number, FirmwareNode>();

  constructor(readonly root: FirmwareNode) {
    for (const n of walk(root)) {
      const ph = propU32(n, 'phandle') ?? propU32(n, 'linux,phandle');
      // The first node wins a duplicated phandle, as a tree walk in the kernel would find it.
      if (ph !== undefined && ph !== 0 && ph !== 0xffffffff && !this.phandles.has(ph)) this.phandles.set(ph, n);
    }
  }

  byPhandle(ph: number): FirmwareNode | undefined {
    return this.phandles.get(ph);
  }

  /** The node with this phandle, or MachineFirmwareError naming the property that used it. */
  resolve(ph: number, from: FirmwareNode, prop: string): FirmwareNode {
    const n = this.phandles.get(ph);
    if (!n) throw malformed(from, prop, `property "${prop}" references phandle ${ph}, which no node has`);
    return n;
  }

  byPath(path: string): FirmwareNode | undefined {
    let n: FirmwareNode | undefined = this.root;
    for (const part of path.split('/')) {
      if (part.length === 0) continue;
      n = n.children.find((c) => c.name === part);
      if (!n) return undefined;
    }
    return n;
  }
}

// ---------------------------------------------------------------------------------------------
// reg and ranges
// ---------------------------------------------------------------------------------------------

/** A `reg` entry as its parent bus encodes it: address cells (raw) and size. */
export interface RawReg {
  address: readonly number[];
  size: number;
}

function cellsToBig(cells: readonly number[], from: number, n: number): bigint {
  let v = 0n;
  for (let i = 0; i < n; i++) v = (v << 32n) | BigInt(cells[from + i]);
  return v;
}

function toSafe(v: bigint, what: string, node: FirmwareNode): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw malformed(node, 'reg', `${what} 0x${v.toString(16)} is beyond the 2^53 the machine can address`);
  }
  return Number(v);
}

/** The raw entries of `reg` in the parent's #address-cells / #size-cells. */
export function readRawReg(node: FirmwareNode): RawReg[] {
  const cells = propCells(node, 'reg');
  if (cells === undefined) return [];
  const parent = node.parent;
  if (!parent) throw malformed(node, 'reg', 'the root node has a "reg" property');
  const ac = addressCells(parent);
  const sc = sizeCells(parent);
  const stride = ac + sc;
  if (stride === 0 || cells.length % stride !== 0) {
    throw malformed(node, 'reg', `"reg" has ${cells.length} cells, not a multiple of #address-cells (${ac}) + #size-cells (${sc}) of ${parent.path}`);
  }
  const out: RawReg[] = [];
  for (let i = 0; i < cells.length; i += stride) {
    out.push({ address: cells.slice(i, i + ac), size: toSafe(cellsToBig(cells, i + ac, sc), 'size', node) });
  }
  return out;
}

/** True for a PCI bus node: its 3-cell addresses carry a space code in phys.hi. */
function isPciBus(bus: FirmwareNode): boolean {
  return propString(bus, 'device_type') === 'pci' || propString(bus, 'device_type') === 'pciex';
}

/**
 * Numeric value of a child-bus address for range matching, and for PCI buses its space code
 * (phys.hi bits 25:24) that must match too (kernel: of_bus_pci_map()).
 */
function busAddress(bus: FirmwareNode, cells: readonly number[], from: number, n: number): { value: bigint; space: number } {
  if (n === 3 && isPciBus(bus)) {
    return { value: cellsToBig(cells, from + 1, 2), space: (cells[from] >>> 24) & 3 };
  }
  return { value: cellsToBig(cells, from, n), space: 0 };
}

/**
 * Translate one address of a node's `reg` (given in its parent's cells) to a CPU-physical address,
 * walking up through each bus's `ranges` (kernel: of_translate_address()).
 */
export function translateAddress(node: FirmwareNode, address: readonly number[]): number {
  let bus = node.parent;
  if (!bus) throw malformed(node, 'reg', 'the root node has no parent bus to translate through');
  let cur = busAddress(bus, address, 0, address.length);
  for (let depth = 0; bus.parent; depth++) {
    if (depth > 64) throw malformed(node, 'reg', 'tree is nested too deeply to translate "reg"');
    const parentBus: FirmwareNode = bus.parent;
    const ranges = propCells(bus, 'ranges');
    if (ranges === undefined) {
      throw new UntranslatableAddressError(`"reg" cannot be translated: ${bus.path} has no "ranges"`, node.path, propOffset(node, 'reg'));
    }
    if (ranges.length > 0) {
      const cac = addressCells(bus);
      const pac = addressCells(parentBus);
      const csc = sizeCells(bus);
      const stride = cac + pac + csc;
      if (stride === 0 || ranges.length % stride !== 0) {
        throw malformed(bus, 'ranges', `"ranges" has ${ranges.length} cells, not a multiple of ${cac}+${pac}+${csc}`);
      }
      let mapped: { value: bigint; space: number } | null = null;
      for (let i = 0; i < ranges.length; i += stride) {
        const child = busAddress(bus, ranges, i, cac);
        const size = cellsToBig(ranges, i + cac + pac, csc);
        if (child.space !== cur.space || cur.value < child.value || cur.value >= child.value + size) continue;
        const parent = busAddress(parentBus, ranges, i + cac, pac);
        mapped = { value: parent.value + (cur.value - child.value), space: parent.space };
        break;
      }
      if (!mapped) {
        throw new UntranslatableAddressError(
          `"reg" address 0x${cur.value.toString(16)} lies in no "ranges" entry of ${bus.path}`,
          node.path,
          propOffset(node, 'reg'),
        );
      }
      cur = mapped;
    } else if (!isPciBus(parentBus)) {
      // An empty "ranges" is an identity mapping: the value passes up unchanged.
      cur = { value: cur.value, space: 0 };
    }
    bus = parentBus;
  }
  return toSafe(cur.value, 'address', node);
}

/** Every `reg` entry of a node as a CPU-physical range. */
export function readRegions(node: FirmwareNode): PhysRange[] {
  return readRawReg(node).map((r) => ({ base: translateAddress(node, r.address), size: r.size }));
}

// ---------------------------------------------------------------------------------------------
// Interrupts
// ---------------------------------------------------------------------------------------------

/** One interrupt of a device: the controller node and the specifier cells it gives. */
export interface InterruptRef {
  controller: FirmwareNode;
  cells: number[];
  /** From `interrupt-names`, when the node has one. */
  name: string | null;
}

/** The node's interrupt parent (kernel: of_irq_find_parent()), or null if it has none. */
export function interruptParent(index: FirmwareIndex, node: FirmwareNode): FirmwareNode | null {
  let child: FirmwareNode = node;
  for (let depth = 0; depth < 256; depth++) {
    const ph = propU32(child, 'interrupt-parent');
    const p: FirmwareNode | null = ph !== undefined ? index.resolve(ph, child, 'interrupt-parent') : child.parent;
    if (!p) return null;
    if (hasProp(p, '#interrupt-cells')) return p;
    child = p;
  }
  throw malformed(node, 'interrupt-parent', '"interrupt-parent" chain does not end (a cycle)');
}

function interruptCells(ctrl: FirmwareNode, from: FirmwareNode): number {
  const n = propU32(ctrl, '#interrupt-cells');
  if (n === undefined) {
    throw malformed(from, from.properties.has('interrupts-extended') ? 'interrupts-extended' : 'interrupts', `interrupt parent ${ctrl.path} has no "#interrupt-cells"`);
  }
  return n;
}

/** The node's interrupts from `interrupts-extended`, or `interrupts` with its interrupt parent. */
export function readInterrupts(index: FirmwareIndex, node: FirmwareNode): InterruptRef[] {
  const names = propStrings(node, 'interrupt-names') ?? [];
  const out: InterruptRef[] = [];
  const ext = propCells(node, 'interrupts-extended');
  if (ext !== undefined) {
    let i = 0;
    while (i < ext.length) {
      const ctrl = index.resolve(ext[i], node, 'interrupts-extended');
      const n = interruptCells(ctrl, node);
      if (i + 1 + n > ext.length) {
        throw malformed(node, 'interrupts-extended', `"interrupts-extended" ends inside a ${n}-cell specifier for ${ctrl.path}`);
      }
      out.push({ controller: ctrl, cells: ext.slice(i + 1, i + 1 + n), name: names[out.length] ?? null });
      i += 1 + n;
    }
    return out;
  }
  const cells = propCells(node, 'interrupts');
  if (cells === undefined || cells.length === 0) return out;
  const ctrl = interruptParent(index, node);
  if (!ctrl) throw malformed(node, 'interrupts', '"interrupts" given but no interrupt parent found');
  const n = interruptCells(ctrl, node);
  if (n === 0 || cells.length % n !== 0) {
    throw malformed(node, 'interrupts', `"interrupts" has ${cells.length} cells, not a multiple of #interrupt-cells (${n}) of ${ctrl.path}`);
  }
  for (let i = 0; i < cells.length; i += n) {
    out.push({ controller: ctrl, cells: cells.slice(i, i + n), name: names[out.length] ?? null });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// IOMMU bindings
// ---------------------------------------------------------------------------------------------

/** One `iommus` entry: the IOMMU node and the specifier cells after the phandle. */
export interface IommuRef {
  iommu: FirmwareNode;
  cells: number[];
}

/** The `iommus` property, split by each target's `#iommu-cells`. */
export function readIommus(index: FirmwareIndex, node: FirmwareNode): IommuRef[] {
  const cells = propCells(node, 'iommus');
  if (cells === undefined) return [];
  const out: IommuRef[] = [];
  let i = 0;
  while (i < cells.length) {
    const iommu = index.resolve(cells[i], node, 'iommus');
    const n = propU32(iommu, '#iommu-cells');
    if (n === undefined) throw malformed(node, 'iommus', `IOMMU ${iommu.path} named by "iommus" has no "#iommu-cells"`);
    if (i + 1 + n > cells.length) {
      throw malformed(node, 'iommus', `"iommus" ends inside a ${n}-cell specifier for ${iommu.path}`);
    }
    out.push({ iommu, cells: cells.slice(i + 1, i + 1 + n) });
    i += 1 + n;
  }
  return out;
}

/** One `iommu-map` entry: RIDs [ridBase, ridBase+length) map to stream IDs from sidBase. */
export interface IommuMapEntry {
  ridBase: number;
  iommu: FirmwareNode;
  sidBase: number;
  length: number;
}

/**
 * `iommu-map` of a PCI host: 4 cells per entry (rid-base, phandle, stream-base, length), whatever the
 * target's #iommu-cells. That is the binding's format as boards ship it (Qualcomm maps RIDs to
 * 2-cell SMMUs this way, one stream ID out); the stream ID is what the bus carries.
 */
export function readIommuMap(index: FirmwareIndex, node: FirmwareNode): IommuMapEntry[] {
  const cells = propCells(node, 'iommu-map');
  if (cells === undefined) return [];
  if (cells.length % 4 !== 0) {
    throw malformed(node, 'iommu-map', `"iommu-map" has ${cells.length} cells, not a multiple of 4`);
  }
  const out: IommuMapEntry[] = [];
  for (let i = 0; i < cells.length; i += 4) {
    const iommu = index.resolve(cells[i + 1], node, 'iommu-map');
    out.push({ ridBase: cells[i], iommu, sidBase: cells[i + 2], length: cells[i + 3] });
  }
  return out;
}

/** `iommu-map-mask` (all ones when absent). */
export function readIommuMapMask(node: FirmwareNode): number {
  return propU32(node, 'iommu-map-mask') ?? 0xffffffff;
}
