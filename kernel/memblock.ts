/**
 * Early memory discovery (kernel: early_init_dt_scan_memory(), early_init_fdt_scan_reserved_mem(),
 * fdt_init_reserved_mem()): the RAM the device tree describes and the ranges the kernel must never
 * hand out — the memory reservation map and /reserved-memory, static (`reg`) and dynamic (`size`,
 * placed at boot as memblock would). A crash kernel's /chosen narrows RAM to
 * `linux,usable-memory-range` and reserves `linux,elfcorehdr`.
 */
import { FirmwareError } from '../bus/firmware-error.js';
import { ofReg } from '../bus/of/address.js';
import type { DeviceTree, DtNode } from '../bus/of/tree.js';
import type { MemoryRange, ReservedRange } from '../mm/page-alloc.js';
import { CRASH_IMAGE_SIZE } from './crash-dump.js';

export interface FirmwareMemory {
  memory: MemoryRange[];
  /** /chosen/linux,elfcorehdr: where a crash kernel finds the dump's ELF core header (reserved). */
  elfcorehdr: MemoryRange | null;
  /** /chosen/linux,usable-memory-range: the only RAM a crash kernel may use, when given. */
  usable: MemoryRange | null;
  reserved: ReservedRange[];
  /** Dynamic reservations that found no room (kernel: "failed to allocate memory for node"); boot goes on. */
  unplaced: { node: string; size: number }[];
  /** Ranges (or parts of ranges) dropped because they reach past what a physical address can be. */
  ignored: { node: string; base: number; end: number }[];
}

const PAGE = 0x1000;

/**
 * The end (exclusive) of what a physical address can be here: addresses are JS numbers, exact below
 * 2^53, and the page allocator works in whole pages (the kernel's MAX_MEMBLOCK_ADDR plays this role).
 */
export const MAX_PHYS_END = 2 ** 53 - PAGE;

/**
 * A range as the kernel keeps it: whole if it ends in reach, clipped at MAX_PHYS_END if it starts in
 * reach and ends beyond, dropped if it starts beyond; the dropped part is reported.
 */
// kernel: early_init_dt_add_memory_arch() [fdt.c]
function clipRange(base: number, size: number, node: string, ignored: FirmwareMemory['ignored']): { base: number; size: number } | null {
  const end = base + size;
  if (base >= MAX_PHYS_END) {
    ignored.push({ node, base, end });
    return null;
  }
  if (end > MAX_PHYS_END) {
    ignored.push({ node, base: MAX_PHYS_END, end });
    return { base, size: MAX_PHYS_END - base };
  }
  return { base, size };
}

function cellsToNumber(cells: readonly number[], node: DtNode, prop: string): number {
  let v = 0;
  for (const c of cells) v = v * 0x1_0000_0000 + c;
  if (!Number.isSafeInteger(v)) throw new FirmwareError('dtb', `"${prop}" value does not fit 53 bits`, null, node.path);
  return v;
}

export function scanFirmwareMemory(dt: DeviceTree): FirmwareMemory {
  const ignored: FirmwareMemory['ignored'] = [];
  const memory: MemoryRange[] = [];
  for (const n of dt.root.children) {
    if (n.string('device_type') !== 'memory' || !n.available) continue;
    for (const r of ofReg(dt, n)) {
      const c = r.size > 0 ? clipRange(r.address, r.size, n.path, ignored) : null;
      if (c) memory.push(c);
    }
  }
  if (memory.length === 0) throw new FirmwareError('dtb', 'no /memory node describes any usable RAM', null, '/');

  // A crash kernel's RAM is what kexec handed it, nothing else (kernel: memblock_cap_memory_range()).
  const usable = chosenRange(dt, 'linux,usable-memory-range');
  if (usable) {
    const capped: MemoryRange[] = [];
    for (const m of memory) {
      const lo = Math.max(m.base, usable.base);
      const hi = Math.min(m.base + m.size, usable.base + usable.size);
      if (hi > lo) capped.push({ base: lo, size: hi - lo });
    }
    if (capped.length === 0) {
      throw new FirmwareError('dtb', `linux,usable-memory-range [0x${usable.base.toString(16)}, +0x${usable.size.toString(16)}) covers no RAM`, null, '/chosen');
    }
    memory.length = 0;
    memory.push(...capped);
  }
  const elfcorehdr = chosenRange(dt, 'linux,elfcorehdr');
  // The crash kernel runs from the start of its range, where kexec loaded it (kernel text, data).
  const image: ReservedRange[] = usable ? [{ base: usable.base, size: CRASH_IMAGE_SIZE, name: 'kernel image' }] : [];

  const reserved: ReservedRange[] = [];
  for (const r of image) {
    const c = clipRange(r.base, r.size, r.name, ignored);
    if (c) reserved.push({ ...c, name: r.name });
  }
  dt.reservations.forEach((r, i) => {
    const name = `memreserve[${i}]`;
    const c = r.size > 0 ? clipRange(r.address, r.size, name, ignored) : null;
    if (c) reserved.push({ ...c, name });
  });

  const unplaced: FirmwareMemory['unplaced'] = [];
  const rmem = dt.root.child('reserved-memory');
  if (rmem && rmem.available) {
    const dynamic: DtNode[] = [];
    for (const child of rmem.children) {
      if (!child.available) continue;
      if (child.has('reg')) {
        for (const r of ofReg(dt, child)) {
          const c = clipRange(r.address, r.size, child.path, ignored);
          if (c) reserved.push({ ...c, name: child.path });
        }
      } else if (child.has('size')) {
        dynamic.push(child);
      }
    }
    for (const child of dynamic) {
      const r = placeDynamic(rmem, child, memory, reserved);
      if ('base' in r) reserved.push(r);
      else unplaced.push(r);
    }
  }
  const hdr = elfcorehdr ? clipRange(elfcorehdr.base, Math.ceil(elfcorehdr.size / PAGE) * PAGE, '/chosen/linux,elfcorehdr', ignored) : null;
  if (hdr) reserved.push({ ...hdr, name: 'elfcorehdr' });
  return { memory, reserved, unplaced, ignored, elfcorehdr, usable };
}

/** A <base size> pair in /chosen, in the root's cells. */
// kernel: early_init_dt_check_for_usable_mem_range() [fdt.c]
function chosenRange(dt: DeviceTree, prop: string): MemoryRange | null {
  const chosen = dt.byPath('/chosen');
  const c = chosen?.cells(prop);
  if (!chosen || !c) return null;
  const ac = dt.root.addressCells;
  const sc = dt.root.sizeCells;
  if (c.length !== ac + sc) throw new FirmwareError('dtb', `"${prop}" has ${c.length} cells, expected ${ac + sc}`, null, '/chosen');
  const r = { base: cellsToNumber(c.slice(0, ac), chosen, prop), size: cellsToNumber(c.slice(ac), chosen, prop) };
  if (r.size === 0) throw new FirmwareError('dtb', `"${prop}" has size 0`, null, '/chosen');
  return r;
}

/** kernel: __reserved_mem_alloc_size(): highest aligned fit inside `alloc-ranges` (or all RAM). */
function placeDynamic(
  rmem: DtNode,
  node: DtNode,
  memory: MemoryRange[],
  taken: ReservedRange[],
): ReservedRange | FirmwareMemory['unplaced'][number] {
  const ac = rmem.addressCells;
  const sc = rmem.sizeCells;
  const size = cellsToNumber(node.cells('size')!, node, 'size');
  const alignCells = node.cells('alignment');
  const align = Math.max(PAGE, alignCells ? cellsToNumber(alignCells, node, 'alignment') : PAGE);
  let windows: MemoryRange[] = memory;
  const ar = node.cells('alloc-ranges');
  if (ar) {
    const step = ac + sc;
    if (ar.length % step !== 0) throw new FirmwareError('dtb', '"alloc-ranges" has a partial entry', null, node.path);
    windows = [];
    for (let i = 0; i < ar.length; i += step) {
      windows.push({
        base: cellsToNumber(ar.slice(i, i + ac), node, 'alloc-ranges'),
        size: cellsToNumber(ar.slice(i + ac, i + step), node, 'alloc-ranges'),
      });
    }
  }
  const overlaps = (b: number): boolean => taken.some((t) => b < t.base + t.size && t.base < b + size);
  for (const w of [...windows].sort((a, b) => b.base - a.base)) {
    for (const m of memory) {
      const lo = Math.max(w.base, m.base);
      const hi = Math.min(w.base + w.size, m.base + m.size);
      for (let b = Math.floor((hi - size) / align) * align; b >= lo; b -= align) {
        if (!overlaps(b)) return { base: b, size, name: node.path };
      }
    }
  }
  return { node: node.path, size };
}
