/**
 * Device Tree addresses: a node's `reg` read with its bus's cell counts and translated, level by
 * level, through each ancestor bus's `ranges` to a CPU physical address, as the kernel's
 * of_address does. Supported bus kinds are the kernel's: PCI (fixed 3/2 cells, space-code
 * matching, addresses from `assigned-addresses`), ISA (2/1 cells, I/O-vs-memory bit),
 * "default with flags" (3 address cells whose first is a flags cell) and the default bus.
 * Not supported: the kernel's logic-PIO indirect I/O hosts (an LPC bus without `ranges`), whose
 * children are reported as not translatable.
 *
 * Addresses are JS numbers; a translated address or size at or above 2^53 is a FirmwareError.
 */
import { FirmwareError } from '../firmware-error.js';
import type { DeviceTree, DtNode } from './tree.js';

export interface OfAddressRange {
  /** CPU physical address. */
  address: number;
  size: number;
}

/** The kernel's OF_MAX_ADDR_CELLS. */
const MAX_ADDR_CELLS = 4;
/** Sizes wider than a u64 make no sense either. */
const MAX_SIZE_CELLS = 4;
/** Cell counts when no ancestor says (the kernel's OF_ROOT_NODE_{ADDR,SIZE}_CELLS_DEFAULT). */
const ROOT_ADDR_CELLS_DEFAULT = 1;
const ROOT_SIZE_CELLS_DEFAULT = 1;
const U64_MASK = (1n << 64n) - 1n;

function fail(reason: string, node: DtNode, prop?: string): never {
  throw new FirmwareError('dtb', reason, prop ? node.propOffset(prop) : node.offset, node.path);
}

/** #address-cells of `np`, else of its nearest ancestor that has one, else 1. */
// kernel: of_bus_n_addr_cells() [address.c]
function busAddrCells(np: DtNode): number {
  for (let n: DtNode | null = np; n; n = n.parent) {
    const v = n.u32('#address-cells');
    if (v !== undefined) return v;
  }
  return ROOT_ADDR_CELLS_DEFAULT;
}

// kernel: of_bus_n_size_cells() [address.c]
function busSizeCells(np: DtNode): number {
  for (let n: DtNode | null = np; n; n = n.parent) {
    const v = n.u32('#size-cells');
    if (v !== undefined) return v;
  }
  return ROOT_SIZE_CELLS_DEFAULT;
}

/** Address cells of `node`'s own `reg`: its parent's #address-cells (inherited upwards, default 1). */
// kernel: of_n_addr_cells() [base.c]
export function ofNAddrCells(node: DtNode): number {
  return busAddrCells(node.parent ?? node);
}

/** Size cells of `node`'s own `reg`: its parent's #size-cells (inherited upwards, default 1). */
// kernel: of_n_size_cells() [base.c]
export function ofNSizeCells(node: DtNode): number {
  return busSizeCells(node.parent ?? node);
}

/** Cells [start, start+count) as an unsigned number truncated to 64 bits, as of_read_number() does. */
// kernel: of_read_number() [of.h]
function readNumber(cells: readonly number[], start: number, count: number): bigint {
  let r = 0n;
  for (let i = 0; i < count; i++) r = ((r << 32n) | BigInt(cells[start + i] >>> 0)) & U64_MASK;
  return r;
}

function toSafeNumber(v: bigint, what: string, node: DtNode, prop: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} 0x${v.toString(16)} does not fit below 2^53`, node, prop);
  return Number(v);
}

const PCI_SPACE_IO = 1;
const PCI_SPACE_MEM = 2;

/** The kernel's per-bus translators (struct of_bus). */
interface OfBus {
  name: string;
  /** Which property holds the addresses of this bus's children. */
  addresses: string;
  countCells(child: DtNode): { na: number; ns: number };
  /** Offset of `addr` inside the range entry, or null if outside it. */
  map(addr: readonly number[], range: readonly number[], na: number, ns: number, pna: number): bigint | null;
  /** Add `offset` to the address in `addr` (na cells), in place. */
  translate(addr: number[], offset: bigint, na: number): void;
  flagCells: number;
}

function defaultMap(addr: readonly number[], range: readonly number[], na: number, ns: number, pna: number, fna: number): bigint | null {
  const cp = readNumber(range, fna, na - fna);
  const s = readNumber(range, na + pna, ns);
  const da = readNumber(addr, fna, na - fna);
  if (da < cp || da >= ((cp + s) & U64_MASK)) return null;
  return da - cp;
}

// kernel: of_bus_default_translate() [address.c]
function defaultTranslate(addr: number[], offset: bigint, na: number, from = 0): void {
  if (na <= 0) return;
  const a = (readNumber(addr, from, na) + offset) & U64_MASK;
  for (let i = 0; i < na; i++) addr[from + i] = 0;
  if (na > 1) addr[from + na - 2] = Number(a >> 32n);
  addr[from + na - 1] = Number(a & 0xffffffffn);
}

function flagsTranslate(addr: number[], offset: bigint, na: number): void {
  // keep the flags (first) cell as it is
  defaultTranslate(addr, offset, na - 1, 1);
}

/** PCI address space class of a phys.hi cell: I/O, memory, or neither (configuration space). */
function pciSpaceClass(hi: number): number {
  const ss = (hi >>> 24) & 3;
  if (ss === 1) return PCI_SPACE_IO;
  if (ss >= 2) return PCI_SPACE_MEM;
  return 0;
}

function isType(np: DtNode, type: string): boolean {
  return np.string('device_type') === type;
}

const PCI_BUS: OfBus = {
  name: 'pci',
  addresses: 'assigned-addresses',
  countCells: () => ({ na: 3, ns: 2 }),
  map: (addr, range, na, ns, pna) =>
    pciSpaceClass(addr[0]) !== pciSpaceClass(range[0]) ? null : defaultMap(addr, range, na, ns, pna, 1),
  translate: flagsTranslate,
  flagCells: 1,
};

const ISA_BUS: OfBus = {
  name: 'isa',
  addresses: 'reg',
  countCells: () => ({ na: 2, ns: 1 }),
  map: (addr, range, na, ns, pna) => (((addr[0] ^ range[0]) & 1) !== 0 ? null : defaultMap(addr, range, na, ns, pna, 1)),
  translate: flagsTranslate,
  flagCells: 1,
};

const DEFAULT_FLAGS_BUS: OfBus = {
  name: 'default-flags',
  addresses: 'reg',
  countCells: (child) => ({ na: ofNAddrCells(child), ns: ofNSizeCells(child) }),
  map: (addr, range, na, ns, pna) => (addr[0] !== range[0] ? null : defaultMap(addr, range, na, ns, pna, 1)),
  translate: flagsTranslate,
  flagCells: 1,
};

const DEFAULT_BUS: OfBus = {
  name: 'default',
  addresses: 'reg',
  countCells: (child) => ({ na: ofNAddrCells(child), ns: ofNSizeCells(child) }),
  map: (addr, range, na, ns, pna) => defaultMap(addr, range, na, ns, pna, 0),
  translate: (addr, offset, na) => defaultTranslate(addr, offset, na),
  flagCells: 0,
};

/** Which kind of bus `np` is, for the addresses of its children. */
// kernel: of_match_bus() [address.c]
function matchBus(np: DtNode): OfBus {
  if (isType(np, 'pci') || isType(np, 'pciex') || isType(np, 'vci') || isType(np, 'ht') || np.baseName === 'pcie') {
    return PCI_BUS;
  }
  if (np.baseName === 'isa') return ISA_BUS;
  if (busAddrCells(np) === 3) return DEFAULT_FLAGS_BUS;
  return DEFAULT_BUS;
}

function checkCounts(na: number, ns: number, node: DtNode, bus: DtNode): void {
  if (ns === 0) {
    fail(`bus ${bus.path} has #size-cells = 0: addresses on it (CPU ids, I2C/SPI addresses, …) are not CPU physical addresses`, node);
  }
  if (na < 1 || na > MAX_ADDR_CELLS || ns < 1 || ns > MAX_SIZE_CELLS) {
    fail(`bus ${bus.path} gives its children ${na} address and ${ns} size cells; addresses need 1..${MAX_ADDR_CELLS} and 1..${MAX_SIZE_CELLS}`, node);
  }
}

/**
 * Carry `addr` (na cells of `dev`'s parent bus `busNode`) across `busNode`'s `ranges` into the
 * address space of its own parent (pna cells). Raises FirmwareError when no translation exists.
 */
// kernel: of_translate_one() [address.c]
function translateOne(busNode: DtNode, bus: OfBus, pbus: OfBus, addr: number[], na: number, ns: number, pna: number): number[] {
  const ranges = busNode.cells('ranges');
  if (ranges === undefined) {
    fail('bus has no "ranges": addresses below it cannot be translated to CPU physical addresses', busNode);
  }
  let offset: bigint;
  let out: number[];
  if (ranges.length === 0) {
    offset = readNumber(addr, 0, na);
    out = new Array<number>(pna).fill(0);
  } else {
    const one = na + pna + ns;
    if (ranges.length % one !== 0) {
      fail(`"ranges" has ${ranges.length} cells, not a multiple of ${one} (${na} child + ${pna} parent address + ${ns} size cells)`, busNode, 'ranges');
    }
    let hit: bigint | null = null;
    let at = 0;
    for (; at < ranges.length; at += one) {
      hit = bus.map(addr, ranges.slice(at, at + one), na, ns, pna);
      if (hit !== null) break;
    }
    if (hit === null) {
      const shown = addr.slice(0, na).map((c) => `0x${c.toString(16)}`).join(' ');
      fail(`address <${shown}> lies in no "ranges" entry`, busNode, 'ranges');
    }
    offset = hit;
    out = ranges.slice(at + na, at + na + pna);
  }
  pbus.translate(out, offset, pna);
  return out;
}

/**
 * Translate a bus address (the first cells of a `reg` entry of `node`) to a CPU physical address.
 * Raises FirmwareError when some ancestor bus has no `ranges` (not translatable) or the address
 * falls outside its `ranges`.
 */
// kernel: of_translate_address() [address.c]
export function ofTranslateAddress(node: DtNode, inAddr: readonly number[]): number {
  let dev = node;
  let parent = dev.parent;
  if (parent === null) fail('the root node sits on no bus; its addresses cannot be translated', node);
  let bus = matchBus(parent);
  let { na, ns } = bus.countCells(dev);
  checkCounts(na, ns, node, parent);
  if (inAddr.length < na) fail(`address has ${inAddr.length} cells, the bus needs ${na}`, node);
  let addr = inAddr.slice(0, na);
  for (;;) {
    dev = parent;
    parent = dev.parent;
    if (parent === null) return toSafeNumber(readNumber(addr, 0, na), 'translated address', node, 'reg');
    const pbus = matchBus(parent);
    const p = pbus.countCells(dev);
    checkCounts(p.na, p.ns, dev, parent);
    addr = translateOne(dev, bus, pbus, addr, na, ns, p.na);
    na = p.na;
    ns = p.ns;
    bus = pbus;
  }
}

/**
 * The node's address ranges from `reg` (or `assigned-addresses` on a PCI bus), each translated
 * to a CPU physical address. No such property → []. A property whose length is not a whole
 * number of (address + size) entries, or an address that cannot be translated → FirmwareError.
 */
// kernel: of_address_to_resource() [address.c]
export function ofReg(_tree: DeviceTree, node: DtNode): OfAddressRange[] {
  const parent = node.parent;
  if (parent === null) {
    if (node.has('reg')) fail('the root node has a "reg" but sits on no bus to translate it', node, 'reg');
    return [];
  }
  const bus = matchBus(parent);
  const prop = bus.addresses;
  const cells = node.cells(prop);
  if (cells === undefined) return [];
  const { na, ns } = bus.countCells(node);
  checkCounts(na, ns, node, parent);
  const one = na + ns;
  if (cells.length % one !== 0) {
    fail(`"${prop}" has ${cells.length} cells, not a multiple of ${one} (${na} address + ${ns} size cells from ${parent.path})`, node, prop);
  }
  const out: OfAddressRange[] = [];
  for (let i = 0; i < cells.length; i += one) {
    const address = ofTranslateAddress(node, cells.slice(i, i + na));
    const size = toSafeNumber(readNumber(cells, i + na, ns), 'size', node, prop);
    out.push({ address, size });
  }
  return out;
}

/**
 * Whether DMA from this device is cache-coherent: the nearest `dma-coherent` or
 * `dma-noncoherent` on the node or an ancestor decides; neither means non-coherent (arm64).
 */
// kernel: of_dma_is_coherent() [address.c]
export function ofDmaIsCoherent(node: DtNode): boolean {
  for (let n: DtNode | null = node; n; n = n.parent) {
    if (n.has('dma-coherent')) return true;
    if (n.has('dma-noncoherent')) return false;
  }
  return false;
}
