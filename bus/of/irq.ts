/**
 * Device Tree interrupts and ID maps, as the kernel's of_irq and of_map_id read them:
 * `interrupts` with the interrupt parent (`interrupt-parent`, else the nearest ancestor with
 * `#interrupt-cells`), `interrupts-extended`, `interrupt-names`, interrupt nexus nodes
 * (`interrupt-map` / `interrupt-map-mask`), `msi-parent`, and `msi-map` / `iommu-map`
 * (with `-mask`) translation of a requester ID.
 *
 * Everything malformed (dangling phandles, wrong cell counts, loops in the interrupt tree) is a
 * FirmwareError naming the node; an ID that no map entry covers is simply "not mapped" (null).
 */
import { FirmwareError } from '../firmware-error.js';
import { type DeviceTree, type DtNode, type OfPhandleArgs, MAX_PHANDLE_ARGS } from './tree.js';

export interface OfIrq {
  /** The interrupt controller (a node with `interrupt-controller`) the interrupt arrives at. */
  controller: DtNode;
  /** The specifier in that controller's `#interrupt-cells` format. */
  specifier: number[];
  /** The matching `interrupt-names` entry, or null. */
  name: string | null;
}

/** The kernel's default when no #address-cells is found above an interrupt parent. */
const IRQ_DEFAULT_ADDR_CELLS = 2;

function fail(reason: string, node: DtNode, prop?: string): never {
  throw new FirmwareError('dtb', reason, prop ? node.propOffset(prop) : node.offset, node.path);
}

/**
 * The interrupt parent of `child`: follow `interrupt-parent` (or, without one, the tree parent)
 * until a node with `#interrupt-cells`. Null when the chain ends (or interrupt-parent is 0).
 */
// kernel: of_irq_find_parent() [irq.c]
export function ofIrqFindParent(tree: DeviceTree, child: DtNode): DtNode | null {
  const seen = new Set<DtNode>([child]);
  let n = child;
  for (;;) {
    const ph = n.u32('interrupt-parent');
    const p = ph === undefined ? n.parent : ph === 0 ? null : tree.resolvePhandle(ph, n, 'interrupt-parent');
    if (p === null || p.has('#interrupt-cells')) return p;
    if (seen.has(p)) fail(`the interrupt-parent chain loops back to ${p.path}`, child, 'interrupt-parent');
    seen.add(p);
    n = p;
  }
}

/** The unit address cells of `device` for interrupt-map matching, read lazily from `reg`. */
type UnitAddress = () => number[] | undefined;

function unitAddressOf(device: DtNode): UnitAddress {
  return () => {
    const reg = device.prop('reg');
    if (reg === undefined) return undefined;
    const dv = new DataView(reg.buffer, reg.byteOffset, reg.byteLength);
    const out: number[] = [];
    for (let i = 0; i + 4 <= reg.length; i += 4) out.push(dv.getUint32(i, false));
    return out;
  };
}

/**
 * Walk a raw specifier (given against `start`) up the interrupt tree, through any interrupt
 * nexus (`interrupt-map`), to the interrupt controller that receives it.
 */
// kernel: of_irq_parse_raw() [irq.c]
function irqParseRaw(tree: DeviceTree, device: DtNode, start: DtNode, spec: number[], unitAddress: UnitAddress): { controller: DtNode; specifier: number[] } {
  let ipar: DtNode | null = start;
  while (ipar !== null && !ipar.has('#interrupt-cells')) ipar = ofIrqFindParent(tree, ipar);
  if (ipar === null) fail(`no interrupt parent with "#interrupt-cells" above ${start.path}`, device);
  let intsize = ipar.u32('#interrupt-cells')!;
  if (spec.length !== intsize) {
    fail(`interrupt specifier has ${spec.length} cells but ${ipar.path} has #interrupt-cells = ${intsize}`, device);
  }
  let addrsize = IRQ_DEFAULT_ADDR_CELLS;
  for (let n: DtNode | null = ipar; n; n = n.parent) {
    const v = n.u32('#address-cells');
    if (v !== undefined) {
      addrsize = v;
      break;
    }
  }
  if (addrsize + intsize > MAX_PHANDLE_ARGS) {
    fail(`#address-cells (${addrsize}) + #interrupt-cells (${intsize}) of ${ipar.path} exceed ${MAX_PHANDLE_ARGS}`, device);
  }
  let args = spec;
  let matchArray: number[] | null = null; // built on first need: it depends on `reg`
  const seen = new Set<DtNode>();

  while (ipar !== null) {
    if (ipar.has('interrupt-controller')) {
      const cells = ipar.u32('#interrupt-cells');
      if (cells !== args.length) {
        fail(`interrupt reaches ${ipar.path} with ${args.length} cells but it has #interrupt-cells = ${cells ?? 'none'}`, device);
      }
      return { controller: ipar, specifier: args };
    }
    if (seen.has(ipar)) fail(`the interrupt tree loops back to ${ipar.path}`, device);
    seen.add(ipar);
    const imap = ipar.cells('interrupt-map');
    if (imap === undefined) {
      ipar = ofIrqFindParent(tree, ipar);
      continue;
    }
    if (matchArray === null) {
      let unit: number[] = new Array<number>(addrsize).fill(0);
      if (addrsize > 0) {
        const reg = unitAddress();
        if (reg === undefined) fail(`interrupt-map of ${ipar.path} needs the device's "reg", which it lacks`, device);
        if (reg.length < addrsize) fail(`"reg" has ${reg.length} cells; interrupt-map of ${ipar.path} matches ${addrsize}`, device, 'reg');
        unit = reg.slice(0, addrsize);
      }
      matchArray = [...unit, ...args];
    }
    const keyLen = addrsize + intsize;
    const imask = ipar.cells('interrupt-map-mask') ?? new Array<number>(keyLen).fill(0xffffffff);
    if (imask.length < keyLen) fail(`"interrupt-map-mask" has ${imask.length} cells, needs ${keyLen}`, ipar, 'interrupt-map-mask');
    let found: { par: DtNode; addr: number; ints: number; at: number } | null = null;
    let i = 0;
    while (i < imap.length && found === null) {
      if (imap.length - i < keyLen + 1) fail(`"interrupt-map" ends inside an entry (cell ${i})`, ipar, 'interrupt-map');
      let match = true;
      for (let j = 0; j < keyLen; j++) {
        if (((matchArray[j] ^ imap[i + j]) & imask[j]) !== 0) match = false;
      }
      i += keyLen;
      const newpar = tree.resolvePhandle(imap[i++], ipar, 'interrupt-map');
      if (!newpar.available) match = false;
      const newints = newpar.u32('#interrupt-cells');
      if (newints === undefined) fail(`"interrupt-map" names ${newpar.path}, which has no "#interrupt-cells"`, ipar, 'interrupt-map');
      const newaddr = newpar.u32('#address-cells') ?? 0;
      if (newaddr + newints > MAX_PHANDLE_ARGS || imap.length - i < newaddr + newints) {
        fail(`"interrupt-map" entry for ${newpar.path} is cut short or too wide (cell ${i})`, ipar, 'interrupt-map');
      }
      if (match) found = { par: newpar, addr: newaddr, ints: newints, at: i };
      i += newaddr + newints;
    }
    if (found === null) fail(`no "interrupt-map" entry of ${ipar.path} matches the interrupt`, device);
    matchArray = imap.slice(found.at, found.at + found.addr + found.ints);
    args = imap.slice(found.at + found.addr, found.at + found.addr + found.ints);
    intsize = found.ints;
    addrsize = found.addr;
    ipar = found.par;
  }
  fail(`interrupt specifier reaches no interrupt controller`, device);
}

/**
 * Every interrupt of `node`, from `interrupts-extended` if present, else `interrupts` with the
 * node's interrupt parent, each resolved to its controller. No interrupt property → [].
 */
// (for every index, as of_irq_count() walks them)
// kernel: of_irq_parse_one() [irq.c]
export function ofIrqs(tree: DeviceTree, node: DtNode): OfIrq[] {
  const names = node.has('interrupt-names') ? node.strings('interrupt-names')! : [];
  const unit = unitAddressOf(node);
  const out: OfIrq[] = [];
  const push = (start: DtNode, spec: number[]): void => {
    const { controller, specifier } = irqParseRaw(tree, node, start, spec, unit);
    out.push({ controller, specifier, name: names[out.length] ?? null });
  };
  if (node.has('interrupts-extended')) {
    for (const e of tree.phandleArgs(node, 'interrupts-extended', '#interrupt-cells')) {
      if (e === null) break; // an empty entry ends the list, as it ends of_irq_count()
      push(e.node, e.args);
    }
    return out;
  }
  const cells = node.cells('interrupts');
  if (cells === undefined || cells.length === 0) return out;
  const parent = ofIrqFindParent(tree, node);
  if (parent === null) fail('has "interrupts" but no interrupt parent', node, 'interrupts');
  const intsize = parent.u32('#interrupt-cells')!;
  if (intsize === 0 || cells.length % intsize !== 0) {
    fail(`"interrupts" has ${cells.length} cells, not a multiple of #interrupt-cells = ${intsize} of ${parent.path}`, node, 'interrupts');
  }
  for (let i = 0; i < cells.length; i += intsize) push(parent, cells.slice(i, i + intsize));
  return out;
}

/** The interrupt named `name` in `interrupt-names`, or null if no such name. */
// kernel: of_irq_get_byname() [irq.c]
export function ofIrqByName(tree: DeviceTree, node: DtNode, name: string): OfIrq | null {
  const names = node.strings('interrupt-names');
  if (names === undefined) return null;
  const idx = names.indexOf(name);
  if (idx < 0) return null;
  const irqs = ofIrqs(tree, node);
  const irq = irqs[idx];
  if (irq === undefined) {
    fail(`"interrupt-names" lists "${name}" at index ${idx} but the node has ${irqs.length} interrupts`, node, 'interrupt-names');
  }
  return irq;
}

/**
 * The MSI controllers of `node` from `msi-parent`: either a single phandle (target without
 * `#msi-cells`) or a list of phandle + `#msi-cells` specifiers. Absent → [].
 */
// kernel: of_msi_get_domain() [irq.c]
export function ofMsiParent(tree: DeviceTree, node: DtNode): OfPhandleArgs[] {
  const cells = node.cells('msi-parent');
  if (cells === undefined || cells.length === 0 || cells[0] === 0) return [];
  const first = tree.resolvePhandle(cells[0], node, 'msi-parent');
  if (!first.has('#msi-cells')) return [{ node: first, args: [] }];
  const out: OfPhandleArgs[] = [];
  for (const e of tree.phandleArgs(node, 'msi-parent', '#msi-cells', 0)) {
    if (e === null) break;
    out.push(e);
  }
  return out;
}

/** One entry of an `iommu-map` / `msi-map`. */
export interface OfIdMapEntry {
  idBase: number;
  target: DtNode;
  /** The output specifier for idBase: the target's #iommu-cells / #msi-cells cells. */
  outBase: number[];
  length: number;
}

/** A translated ID: the target node and its output specifier. */
export interface OfMappedId {
  target: DtNode;
  args: number[];
}

/** The specifier-size property a map's targets carry, and its default when absent. */
function cellsPropertyFor(mapName: string): { name: string; fallback: number | undefined } {
  const stem = mapName.endsWith('-map') ? mapName.slice(0, -4) : mapName;
  // msi-map predates #msi-cells on every MSI controller: a missing one means 1, as it always did.
  return { name: `#${stem}-cells`, fallback: mapName === 'msi-map' ? 1 : undefined };
}

/**
 * Boards point 4-cell maps (one ID out, as Linux reads every map today) at 2-cell IOMMUs: when the
 * map splits into 4-cell entries that all name the same target, it is read in that form.
 */
function isLegacyTwoCellMap(map: readonly number[]): boolean {
  if (map.length % 4 !== 0) return false;
  for (let i = 0; i < map.length; i += 4) {
    if (map[i + 1] !== map[1]) return false;
  }
  return true;
}

/**
 * Decode a whole `iommu-map` / `msi-map`: entries of (id-base, phandle, out-base[cells],
 * length) where cells is the target's #iommu-cells / #msi-cells. Absent → undefined.
 */
export function ofIdMapEntries(tree: DeviceTree, node: DtNode, mapName: string): OfIdMapEntry[] | undefined {
  const map = node.cells(mapName);
  if (map === undefined) return undefined;
  const cellsProp = cellsPropertyFor(mapName);
  const entries: OfIdMapEntry[] = [];
  let legacy = false;
  let at = 0;
  while (at < map.length) {
    if (map.length - at < 2) fail(`bad "${mapName}" length: ${map.length} cells, entry at cell ${at} is cut short`, node, mapName);
    const idBase = map[at];
    const target = tree.resolvePhandle(map[at + 1], node, mapName);
    let cells = 1;
    if (!legacy) {
      const c = target.u32(cellsProp.name) ?? cellsProp.fallback;
      if (c === undefined) fail(`"${mapName}" names ${target.path}, which has no "${cellsProp.name}"`, node, mapName);
      if (c > MAX_PHANDLE_ARGS) fail(`"${cellsProp.name}" of ${target.path} is ${c}, more than ${MAX_PHANDLE_ARGS}`, target, cellsProp.name);
      cells = c;
      if (at === 0 && cells === 2 && isLegacyTwoCellMap(map)) {
        legacy = true;
        cells = 1;
      }
    }
    if (map.length - at < 3 + cells) {
      fail(`bad "${mapName}" length: ${map.length} cells, entry at cell ${at} needs ${3 + cells} (${cellsProp.name} = ${cells})`, node, mapName);
    }
    const outBase = map.slice(at + 2, at + 2 + cells);
    const length = map[at + 2 + cells];
    if (length > 1 && cells > 1) {
      fail(`"${mapName}" maps a ${length}-ID range to a ${cells}-cell specifier, which has no defined meaning`, node, mapName);
    }
    entries.push({ idBase, target, outBase, length });
    at += 3 + cells;
  }
  return entries;
}

/**
 * Translate `id` through `node`'s `mapName` (masked by `maskName`, default all ones): the
 * target and output specifier of the first entry covering it (and targeting `filter`, if
 * given). Null when the map is absent or no entry covers the ID.
 */
// kernel: of_map_id() [base.c]
export function ofMapId(tree: DeviceTree, node: DtNode, id: number, mapName: string, maskName: string | null, filter?: DtNode): OfMappedId | null {
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) throw new RangeError(`ofMapId: id ${id} is not a u32`);
  const entries = ofIdMapEntries(tree, node, mapName);
  if (entries === undefined) return null;
  const mask = (maskName !== null ? node.u32(maskName) : undefined) ?? 0xffffffff;
  const masked = (id & mask) >>> 0;
  for (const e of entries) {
    if ((e.idBase & ~mask) >>> 0 !== 0) {
      fail(`"${maskName}" (0x${mask.toString(16)}) ignores bits of id-base 0x${e.idBase.toString(16)} in "${mapName}"`, node, mapName);
    }
    const off = masked - e.idBase;
    if (off < 0 || off >= e.length) continue;
    if (filter !== undefined && e.target !== filter) continue;
    return { target: e.target, args: e.outBase.map((c) => (c + off) >>> 0) };
  }
  return null;
}
