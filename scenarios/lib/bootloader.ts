/**
 * What a boot loader does to the device tree before it hands it on. Many board DTs leave RAM for
 * the boot loader to fill in (a /memory node with size 0, or none at all, as UEFI describes memory
 * instead); U-Boot's fdt_fixup_memory_banks() writes the real banks. The lab's boot loader does the
 * same so the machine and the kernel agree on the RAM they have.
 */
import { FirmwareError } from '../../bus/firmware-error.js';
import { DtNode, type DeviceTree } from '../../bus/of/tree.js';

/** RAM the boot loader reports when the DT describes none. */
export const DEFAULT_RAM_SIZE = 0x8000_0000;
const DEFAULT_RAM_BASE = 0x8000_0000;

/** libfdt's FDT_MAX_NCELLS: the most cells an address or a size may take. */
const MAX_NCELLS = 4;

/**
 * The root's #address-cells and #size-cells, validated before anything loops over them (libfdt's
 * fdt_address_cells()/fdt_size_cells() refuse a count above FDT_MAX_NCELLS): a huge count would
 * otherwise make the fix-up build a property of billions of cells.
 */
function rootCells(dt: DeviceTree): { ac: number; sc: number } {
  const ac = dt.root.addressCells;
  const sc = dt.root.sizeCells;
  for (const [prop, v] of [['#address-cells', ac], ['#size-cells', sc]] as const) {
    if (v > MAX_NCELLS) {
      throw new FirmwareError('dtb', `${prop} = ${v} of / is out of range (at most ${MAX_NCELLS})`, dt.root.propOffset(prop), '/');
    }
  }
  if (ac + sc === 0) {
    throw new FirmwareError('dtb', '#address-cells and #size-cells of / are both 0: no memory range can be described', dt.root.offset, '/');
  }
  return { ac, sc };
}

/** True if some enabled /memory node describes RAM of nonzero size. */
function describesRam(dt: DeviceTree): boolean {
  const { ac, sc } = rootCells(dt);
  for (const n of dt.root.children) {
    if (n.string('device_type') !== 'memory' || !n.available) continue;
    const reg = n.cells('reg') ?? [];
    for (let i = 0; i + ac + sc <= reg.length; i += ac + sc) {
      if (reg.slice(i + ac, i + ac + sc).some((c) => c !== 0)) return true;
    }
  }
  return false;
}

function encodeCells(value: number, cells: number): number[] {
  const out: number[] = [];
  let v = value;
  for (let i = 0; i < cells; i++) {
    out.unshift(v % 0x1_0000_0000);
    v = Math.floor(v / 0x1_0000_0000);
  }
  return out;
}

function cellsBytes(cells: number[]): Uint8Array {
  const b = new Uint8Array(cells.length * 4);
  const dv = new DataView(b.buffer);
  cells.forEach((c, i) => dv.setUint32(i * 4, c >>> 0, false));
  return b;
}

/**
 * Fill in RAM if the DT describes none: the first memory node's base (from its reg or unit address)
 * with DEFAULT_RAM_SIZE, or a new /memory@80000000. Returns true if the tree was changed.
 */
// U-Boot: fdt_fixup_memory_banks()
export function fixupMemory(dt: DeviceTree): boolean {
  if (describesRam(dt)) return false;
  const { ac, sc } = rootCells(dt);
  let node = dt.root.children.find((n) => n.string('device_type') === 'memory');
  let base = DEFAULT_RAM_BASE;
  if (node) {
    const reg = node.cells('reg');
    if (reg && reg.length >= ac) base = reg.slice(0, ac).reduce((v, c) => v * 0x1_0000_0000 + c, 0);
    else if (node.unitAddress && /^[0-9a-f]+$/i.test(node.unitAddress)) base = parseInt(node.unitAddress, 16);
    node.properties.delete('status');
  } else {
    node = new DtNode(`memory@${base.toString(16)}`, dt.root);
    dt.root.children.push(node);
    node.properties.set('device_type', new TextEncoder().encode('memory\0'));
  }
  node.properties.set('reg', cellsBytes([...encodeCells(base, ac), ...encodeCells(DEFAULT_RAM_SIZE, sc)]));
  dt.invalidate();
  return true;
}
