/**
 * Firmware campaign: mutated firmware, structure-aware and byte-level, each input deterministic from
 * (kind, seed, index), judged by one rule: boot, or a firmware error (FirmwareError /
 * MachineFirmwareError, the CLI's exit 2). Any other exception, or a hang, is a failure.
 *
 * Firmware kinds are a list: `dtb` (Device Tree blobs) and `acpi` (ACPI table sets: the built-in
 * virt machine's, QEMU-shaped ones with RMR nodes and a host bridge _DSM, and the real boards'
 * iasl-compiled fixtures), each one more FirmwareKind with its seeds, its mutator and its boot.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AcpiMemoryMap } from '../../bus/acpi/acpi-boot.js';
import { acpiChecksum } from '../../bus/acpi/table.js';
import { parseFdt, writeFdt } from '../../bus/of/fdt.js';
import type { DeviceTree, DtNode } from '../../bus/of/tree.js';
import { isFirmwareError } from '../../cli/errors.js';
import { Prng } from '../../hw/prng.js';
import { bootKernel } from '../../kernel/kernel.js';
import { BOOT_LIMIT_NS, machineFromAcpi, machineFromDtb, run } from '../../scenarios/lib/lab.js';
import { buildVirtAcpi } from '../../scenarios/machines/virt-acpi.js';
import { qemuTables } from '../bus/acpi/acpi-fixture.js';

/**
 * Virtual time a campaign boot may take before it counts as hung (60 s). A boot slower than the lab's
 * own BOOT_LIMIT_NS (1 s, what `boot` and the CLI allow) still finishes here and is counted as slow.
 */
export const SLOW_BOOT_LIMIT_NS = 60_000_000_000;
import { buildSmmuV2DeviceTree } from '../../scenarios/smmu-v2-lab.js';
import { buildVirtDeviceTree } from '../../scenarios/machines/virt.js';

/** `slow-boot`: booted, but took longer than the lab's boot limit (BOOT_LIMIT_NS) of virtual time. */
export type FirmwareOutcome = 'booted' | 'slow-boot' | 'firmware-error';

export interface FirmwareKind {
  readonly name: string;
  /** Well-formed inputs the mutations start from. */
  seeds(): Uint8Array[];
  /** The `index`-th input of `seed`: a deterministic mutation of one of the seeds. */
  mutate(seeds: readonly Uint8Array[], prng: Prng): Uint8Array;
  /**
   * Build a machine from the input and boot it (within a generous virtual-time limit); returns the
   * virtual time the boot took; throws what the system throws.
   */
  boot(input: Uint8Array): Promise<number>;
}

const u32 = (v: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, false);
  return b;
};

/** Values a hostile firmware writer would pick for a cell. */
function nastyCell(prng: Prng): number {
  const pick = [0, 1, 2, 3, 4, 5, 0xffff_ffff, 0x8000_0000, 0x1f_ffff, 0x20_0000, 0x7fff_ffff, 0x10_0000];
  return prng.int(3) === 0 ? prng.nextU32() : pick[prng.int(pick.length)];
}

function allNodes(dt: DeviceTree): DtNode[] {
  const out: DtNode[] = [];
  const walk = (n: DtNode): void => {
    out.push(n);
    for (const c of n.children) walk(c);
  };
  walk(dt.root);
  return out;
}

/** One structure-aware change: a property's cells, a cell count, a removed or duplicated node. */
function mutateTree(dt: DeviceTree, prng: Prng): void {
  const nodes = allNodes(dt);
  const n = nodes[prng.int(nodes.length)];
  const props = [...n.properties.keys()];
  switch (prng.int(6)) {
    case 0: {
      // A cell count, anywhere.
      const which = ['#address-cells', '#size-cells', '#iommu-cells', '#interrupt-cells', '#msi-cells'][prng.int(5)];
      n.properties.set(which, u32(nastyCell(prng)));
      break;
    }
    case 1: {
      // One cell of an existing property.
      if (props.length === 0) return;
      const p = props[prng.int(props.length)];
      const v = n.properties.get(p)!.slice();
      if (v.length >= 4) new DataView(v.buffer).setUint32((prng.int(v.length >> 2)) * 4, nastyCell(prng), false);
      n.properties.set(p, v);
      break;
    }
    case 2: {
      // A property cut or grown to an odd length.
      if (props.length === 0) return;
      const p = props[prng.int(props.length)];
      const v = n.properties.get(p)!;
      const len = prng.int(2) === 0 ? prng.int(v.length + 1) : v.length + 1 + prng.int(9);
      const out = new Uint8Array(len);
      out.set(v.subarray(0, Math.min(len, v.length)));
      n.properties.set(p, out);
      break;
    }
    case 3: {
      // A reg / ranges of huge or crossing values.
      const p = ['reg', 'ranges', 'dma-ranges', 'iommu-map', 'iommus', 'interrupts', 'msi-map'][prng.int(7)];
      const cells = 1 + prng.int(12);
      const v = new Uint8Array(cells * 4);
      for (let i = 0; i < cells; i++) new DataView(v.buffer).setUint32(i * 4, nastyCell(prng), false);
      n.properties.set(p, v);
      break;
    }
    case 4: {
      // A node removed.
      if (n.parent && n.parent.children.length > 0) n.parent.children.splice(n.parent.children.indexOf(n), 1);
      break;
    }
    default: {
      // status toggled.
      n.properties.set('status', new TextEncoder().encode(prng.int(2) ? 'disabled\0' : 'okay\0'));
    }
  }
  dt.invalidate();
}

/** Byte-level damage: flips, overwritten words (header included), truncation. */
function mutateBytes(blob: Uint8Array, prng: Prng): Uint8Array {
  let b = blob.slice();
  for (let k = 1 + prng.int(3); k > 0 && b.length > 0; k--) {
    switch (prng.int(4)) {
      case 0:
        b[prng.int(b.length)] ^= 1 + prng.int(255);
        break;
      case 1: {
        const off = prng.int(b.length) & ~3;
        if (off + 4 <= b.length) new DataView(b.buffer).setUint32(off, nastyCell(prng), false);
        break;
      }
      case 2: {
        const off = prng.int(10) * 4;
        if (off + 4 <= b.length) new DataView(b.buffer).setUint32(off, nastyCell(prng), false);
        break;
      }
      default:
        b = b.slice(0, prng.int(b.length + 1));
    }
  }
  return b;
}

export const DTB_KIND: FirmwareKind = {
  name: 'dtb',
  seeds: () => [writeFdt(buildVirtDeviceTree()), writeFdt(buildSmmuV2DeviceTree())],
  mutate(seeds, prng) {
    const base = seeds[prng.int(seeds.length)];
    if (prng.int(2) === 0) {
      const dt = parseFdt(base);
      for (let k = 1 + prng.int(3); k > 0; k--) mutateTree(dt, prng);
      const blob = writeFdt(dt);
      return prng.int(4) === 0 ? mutateBytes(blob, prng) : blob;
    }
    return mutateBytes(base, prng);
  },
  async boot(input) {
    const machine = machineFromDtb(input, { seed: 1 });
    await run(machine, bootKernel(machine), 'kernel boot', SLOW_BOOT_LIMIT_NS);
    return machine.scheduler.now;
  },
};

// ---------------------------------------------------------------------------------------------
// ACPI table sets
// ---------------------------------------------------------------------------------------------

interface AcpiSet {
  tables: Map<string, Uint8Array>;
  memory: AcpiMemoryMap;
}

/**
 * One input: a table set and its memory map in a small container ("ASET", the RAM ranges, then
 * each table's name, length and bytes). Mutations damage the tables inside; the container stays
 * whole, as the table files a boot loader hands over would.
 */
function packAcpi(set: AcpiSet): Uint8Array {
  const parts: number[] = [];
  const u32le = (v: number): void => {
    parts.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
  };
  const u64le = (v: number): void => {
    u32le(v % 0x1_0000_0000);
    u32le(Math.floor(v / 0x1_0000_0000));
  };
  for (const c of 'ASET') parts.push(c.charCodeAt(0));
  u32le(set.memory.ram.length);
  for (const r of set.memory.ram) {
    u64le(r.base);
    u64le(r.size);
  }
  const sigs = [...set.tables.keys()].sort();
  u32le(sigs.length);
  const out: Uint8Array[] = [Uint8Array.from(parts)];
  for (const sig of sigs) {
    const blob = set.tables.get(sig)!;
    const h: number[] = [];
    for (const c of sig) h.push(c.charCodeAt(0));
    h.push(blob.length & 0xff, (blob.length >>> 8) & 0xff, (blob.length >>> 16) & 0xff, (blob.length >>> 24) & 0xff);
    out.push(Uint8Array.from(h), blob);
  }
  const total = out.reduce((n, b) => n + b.length, 0);
  const packed = new Uint8Array(total);
  let o = 0;
  for (const b of out) {
    packed.set(b, o);
    o += b.length;
  }
  return packed;
}

function unpackAcpi(b: Uint8Array): AcpiSet {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let o = 4;
  const nram = dv.getUint32(o, true);
  o += 4;
  const ram = [];
  for (let i = 0; i < nram; i++) {
    ram.push({ base: dv.getUint32(o, true) + dv.getUint32(o + 4, true) * 0x1_0000_0000, size: dv.getUint32(o + 8, true) + dv.getUint32(o + 12, true) * 0x1_0000_0000 });
    o += 16;
  }
  const n = dv.getUint32(o, true);
  o += 4;
  const tables = new Map<string, Uint8Array>();
  for (let i = 0; i < n; i++) {
    const sig = String.fromCharCode(...b.subarray(o, o + 4));
    const len = dv.getUint32(o + 4, true);
    tables.set(sig, b.slice(o + 8, o + 8 + len));
    o += 8 + len;
  }
  return { tables, memory: { ram } };
}

/** The real boards' iasl-compiled tables (test/fixtures/acpi/<board>) with a RAM range each. */
function acpiFixture(board: string, ram: { base: number; size: number }): AcpiSet {
  // From test/campaigns, or from the bundled worker in .cache/workers: both two levels below the root.
  const dir = join(__dirname, '..', '..', 'test', 'fixtures', 'acpi', board);
  const tables = new Map<string, Uint8Array>();
  for (const f of readdirSync(dir)) if (/^[A-Z]{4}$/.test(f)) tables.set(f, new Uint8Array(readFileSync(join(dir, f))));
  return { tables, memory: { ram: [ram] } };
}

/** One table of the set damaged (checksum and Length mostly repaired, so the damage reaches the body parsers), or dropped. */
function mutateAcpiSet(set: AcpiSet, prng: Prng): void {
  const sigs = [...set.tables.keys()].sort();
  const sig = sigs[prng.int(sigs.length)];
  if (prng.int(12) === 0) {
    set.tables.delete(sig);
    return;
  }
  let b = set.tables.get(sig)!.slice();
  for (let k = 1 + prng.int(3); k > 0 && b.length > 0; k--) {
    // Header bytes are hit less often: most damage lands in the body.
    const at = b.length > 40 && prng.int(8) !== 0 ? 36 + prng.int(b.length - 36) : prng.int(b.length);
    switch (prng.int(4)) {
      case 0:
        b[at] ^= 1 + prng.int(255);
        break;
      case 1:
        b[at] = prng.int(256);
        break;
      case 2:
        if ((at & ~3) + 4 <= b.length) new DataView(b.buffer).setUint32(at & ~3, nastyCell(prng), true);
        break;
      default:
        b = b.slice(0, prng.int(b.length + 1));
    }
  }
  if (prng.int(4) !== 0 && b.length >= 36) {
    new DataView(b.buffer).setUint32(4, b.length, true);
    b[9] = 0;
    b[9] = (0x100 - acpiChecksum(b)) & 0xff;
  }
  set.tables.set(sig, b);
}

export const ACPI_KIND: FirmwareKind = {
  name: 'acpi',
  seeds: () =>
    [
      buildVirtAcpi({ ramSize: 0x1000_0000 }),
      qemuTables({ revision: 3, endpoints: [{ dev: 1, ats: true }] }),
      qemuTables({ revision: 5, pciBootConfig: 'preserve', rmrs: [{ sid: 8, count: 2, base: 0x4800_0000, length: 0x1_0000 }], engines: [{ sid: 0x100, stall: true }], endpoints: [{ dev: 1 }] }),
      acpiFixture('juno-r2', { base: 0x8000_0000, size: 0x1000_0000 }),
      acpiFixture('hip08-nosmmu', { base: 0x20_8000_0000, size: 0x1000_0000 }),
      acpiFixture('qemu-virt-smmuv3', { base: 0x4000_0000, size: 0x1000_0000 }),
      acpiFixture('n1sdp', { base: 0x8000_0000, size: 0x1000_0000 }),
      acpiFixture('rdn1edge', { base: 0x8000_0000, size: 0x1000_0000 }),
    ].map(packAcpi),
  mutate(seeds, prng) {
    const set = unpackAcpi(seeds[prng.int(seeds.length)]);
    for (let k = 1 + prng.int(2); k > 0; k--) mutateAcpiSet(set, prng);
    return packAcpi(set);
  },
  async boot(input) {
    const { tables, memory } = unpackAcpi(input);
    const machine = machineFromAcpi(tables, memory, { seed: 1 });
    await run(machine, bootKernel(machine), 'kernel boot', SLOW_BOOT_LIMIT_NS);
    return machine.scheduler.now;
  },
};

/** The firmware kinds the campaign knows. */
export const FIRMWARE_KINDS: readonly FirmwareKind[] = [DTB_KIND, ACPI_KIND];

export function firmwareKind(name: string): FirmwareKind {
  const k = FIRMWARE_KINDS.find((f) => f.name === name);
  if (!k) throw new Error(`unknown firmware kind ${name} (known: ${FIRMWARE_KINDS.map((f) => f.name).join(', ')})`);
  return k;
}

/** The `index`-th input of (kind, seed). */
export function firmwareInput(kind: FirmwareKind, seeds: readonly Uint8Array[], seed: number, index: number): Uint8Array {
  return kind.mutate(seeds, new Prng((seed * 0x9e37_79b1 + index) >>> 0));
}

/** Judge one input: its outcome, or the exception that is not a firmware error. */
export async function firmwareOutcome(kind: FirmwareKind, input: Uint8Array): Promise<FirmwareOutcome> {
  try {
    const ns = await kind.boot(input);
    return ns > BOOT_LIMIT_NS ? 'slow-boot' : 'booted';
  } catch (e) {
    if (isFirmwareError(e)) return 'firmware-error';
    throw e;
  }
}
