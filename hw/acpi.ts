/**
 * The machine's own reading of ACPI tables.
 *
 * `hw/` may not import the kernel's ACPI code (bus/acpi), so the caller hands the parsed tables in
 * through the structural interfaces below (bus/acpi's parsed IORT, MADT, MCFG and name space fit
 * them), together with a memory map (ACPI carries no RAM). This module turns them into the
 * firmware tree the machine already knows how to instantiate (hw/firmware.ts's FirmwareNode, with
 * properties encoded as a Device Tree would carry them), so one instantiator builds DT and ACPI
 * machines alike:
 *
 * - RAM from the memory map; reserved ranges are the kernel's business (they stay RAM here);
 * - a GIC from the MADT GICD (version 2 → GICv2, 3/4 → GICv3, 0 → GICv3 when a GICR exists),
 *   GICv2m frames from GIC MSI frames (SPI base/count when the override flag says so), ITS
 *   doorbells from GIC ITS structures;
 * - an SMMUv3 model per IORT SMMUv3 node (GSIVs edge-triggered), an SMMUv1/v2 model per SMMU node
 *   with the compatible its Model field names;
 * - a PCIe root complex per MCFG entry, RID → StreamID from the IORT root complex of that segment:
 *   each range mapping that targets an SMMU (a range whose last ID starts another mapping is cut
 *   by one, as Linux's id_count workaround reads it), or, when the first mapping is a single
 *   mapping to an SMMU, that one StreamID for every RID; RIDs mapped elsewhere (an ITS) bypass;
 *   endpoints from the DSDT Device objects below the host bridge with an _ADR (device << 16 |
 *   function, bus 0) and these integer names: IATS (ATS), IPRI (PRI), IPAS (PASID bits),
 *   IVID / IDID (vendor / device ID), ICLS (class code);
 * - a Grace CMDQV (hw/tegra241-cmdqv) for a DSDT NVDA200C device whose _UID is a generic SMMUv3
 *   node's Identifier, built with that SMMU (registers and error interrupt from _CRS);
 * - a DMA test engine per DSDT device with _HID ISIM0001 (registers and interrupt from _CRS);
 *   a platform DMA master per other DSDT device that an IORT named component maps to an SMMU.
 *   Their StreamIDs are the named component's leading single mappings that target an SMMU
 *   (iort_nc_iommu_map's rule); stall and PASID bits from the node flags.
 *
 * Names: DSDT devices by full ACPI path ("\\_SB_.DMA0"), SMMUs "IORT:smmuv3@0x48" (node offset),
 * GIC parts "MADT:gicd@0x8000000", host bridges by DSDT path (matching _SEG) or
 * "MCFG:seg0@0x3f000000": the same names bus/acpi gives the kernel's devices.
 */
import type { FirmwareNode, PhysRange } from './firmware.js';

// ---------------------------------------------------------------------------------------------
// What the machine reads (bus/acpi's parsed tables fit these shapes)
// ---------------------------------------------------------------------------------------------

export interface HwIortMapping {
  readonly inputBase: number;
  readonly idCount: number;
  readonly outputBase: number;
  readonly outputReference: number;
  readonly flags: number;
}

interface HwIortCommon {
  readonly offset: number;
  readonly revision: number;
  readonly identifier: number;
  readonly type: number;
  readonly mappings: readonly HwIortMapping[];
}

export type HwIortNode = HwIortCommon &
  (
    | { readonly kind: 'nc'; readonly flags: number; readonly deviceName: string; readonly memory: { readonly cacheCoherency: number } }
    | { readonly kind: 'rc'; readonly pciSegment: number; readonly atsAttribute: number; readonly memory: { readonly cacheCoherency: number } }
    | {
        readonly kind: 'smmu';
        readonly base: number;
        readonly span: number;
        readonly model: number;
        readonly flags: number;
        readonly globalIrqs: { readonly nsgIrpt: number; readonly nsgIrptFlags: number };
        readonly contextIrqs: readonly { readonly gsiv: number; readonly flags: number }[];
      }
    | {
        readonly kind: 'smmuv3';
        readonly base: number;
        readonly flags: number;
        readonly model: number;
        readonly deviceIdMappingIndex: number;
        readonly eventGsiv: number;
        readonly priGsiv: number;
        readonly gerrGsiv: number;
        readonly syncGsiv: number;
      }
    | { readonly kind: 'its'; readonly itsIds: readonly number[] }
    | { readonly kind: 'pmcg' | 'rmr' | 'iwb' | 'unknown' }
  );

export interface HwAcpiDevice {
  readonly path: string;
  readonly parent: string | null;
  readonly hid: string | null;
  readonly cids: readonly string[];
  readonly adr: number | null;
  readonly seg: number | null;
  readonly cca: number | null;
  readonly resources: {
    readonly memory: readonly { readonly base: number; readonly size: number }[];
    readonly interrupts: readonly { readonly gsiv: number; readonly edge: boolean }[];
  };
  readonly names: ReadonlyMap<string, unknown>;
}

export interface MachineAcpiTables {
  readonly iort: { readonly revision: number; readonly nodes: readonly HwIortNode[] } | null;
  readonly madt: {
    readonly gicc: readonly { readonly baseAddress: number }[];
    readonly gicd: readonly { readonly baseAddress: number; readonly version: number }[];
    readonly msiFrames: readonly { readonly baseAddress: number; readonly flags: number; readonly spiCount: number; readonly spiBase: number }[];
    readonly gicr: readonly { readonly baseAddress: number; readonly length: number }[];
    readonly its: readonly { readonly baseAddress: number; readonly translationId: number }[];
  } | null;
  readonly mcfg: { readonly entries: readonly { readonly baseAddress: number; readonly segment: number; readonly startBus: number; readonly endBus: number }[] } | null;
  readonly namespace: { readonly devices: readonly HwAcpiDevice[] };
  /** The table blobs by signature, handed to the kernel as the boot loader would. */
  readonly blobs: ReadonlyMap<string, Uint8Array>;
}

/** RAM (and the ranges firmware keeps, passed on to the kernel), as a UEFI memory map says. */
export interface MachineMemoryMap {
  ram: readonly PhysRange[];
  reserved?: readonly PhysRange[];
}

/** ACPI IDs this simulator models. */
export const ACPI_HID_DMA_TEST_ENGINE = 'ISIM0001';
/** The Grace CMDQV, a companion of the SMMUv3 node whose Identifier is its _UID. */
export const ACPI_HID_TEGRA241_CMDQV = 'NVDA200C';

const SMMU_COMPATIBLES: Record<number, string> = {
  0: 'arm,smmu-v1',
  1: 'arm,smmu-v2',
  2: 'arm,mmu-400',
  3: 'arm,mmu-500',
  4: 'arm,mmu-401',
  5: 'cavium,smmu-v2',
};
const PCI_HOST_IDS = ['PNP0A08', 'PNP0A03'];
const SINGLE = 1;

// ---------------------------------------------------------------------------------------------
// The synthesized firmware tree
// ---------------------------------------------------------------------------------------------

class Node implements FirmwareNode {
  readonly children: Node[] = [];
  readonly properties = new Map<string, Uint8Array>();
  constructor(
    readonly name: string,
    readonly path: string,
    readonly parent: Node | null,
  ) {
    parent?.children.push(this);
  }
  cells(name: string, values: readonly number[]): this {
    const b = new Uint8Array(values.length * 4);
    const dv = new DataView(b.buffer);
    values.forEach((v, i) => dv.setUint32(i * 4, v >>> 0, false));
    this.properties.set(name, b);
    return this;
  }
  strings(name: string, values: readonly string[]): this {
    const bytes: number[] = [];
    for (const s of values) {
      for (let i = 0; i < s.length; i++) bytes.push(s.charCodeAt(i) & 0xff);
      bytes.push(0);
    }
    this.properties.set(name, Uint8Array.from(bytes));
    return this;
  }
  flag(name: string, on = true): this {
    if (on) this.properties.set(name, new Uint8Array(0));
    return this;
  }
  /** reg with 2 address and 2 size cells. */
  reg(entries: readonly [number, number][]): this {
    return this.cells(
      'reg',
      entries.flatMap(([a, s]) => [Math.floor(a / 0x1_0000_0000), a >>> 0, Math.floor(s / 0x1_0000_0000), s >>> 0]),
    );
  }
}

const hex = (v: number): string => `0x${v.toString(16)}`;

function gicSpecifier(gsiv: number, edge: boolean): number[] | null {
  if (gsiv >= 32) return [0, gsiv - 32, edge ? 1 : 4];
  if (gsiv >= 16) return [1, gsiv - 16, edge ? 1 : 4];
  return null;
}

function isPciHost(d: HwAcpiDevice): boolean {
  return (d.hid !== null && PCI_HOST_IDS.includes(d.hid)) || d.cids.some((c) => PCI_HOST_IDS.includes(c));
}

function samePath(a: string, b: string): boolean {
  const norm = (p: string): string =>
    (p.startsWith('\\') ? p.slice(1) : p)
      .split('.')
      .map((s) => s.padEnd(4, '_'))
      .join('.');
  return norm(a) === norm(b);
}

function intName(d: HwAcpiDevice, name: string): number | undefined {
  const v = d.names.get(name);
  return typeof v === 'number' ? v : undefined;
}

/**
 * The firmware tree an ACPI machine stands for (see the file header). `warn` gets what is skipped.
 */
export function acpiFirmwareTree(t: MachineAcpiTables, mem: MachineMemoryMap, warn: (m: string) => void): FirmwareNode {
  const root = new Node('', '/', null);
  root.cells('#address-cells', [2]).cells('#size-cells', [2]);
  let phandle = 1;
  /** ITS phandle by GIC ITS ID (the IORT ITS group's identifiers name these). */
  const itsPhandle = new Map<number, number>();
  for (const r of mem.ram) new Node(`memory@${r.base.toString(16)}`, `/memory@${r.base.toString(16)}`, root).strings('device_type', ['memory']).reg([[r.base, r.size]]);

  // GIC
  const gicd = t.madt?.gicd[0];
  if (t.madt && gicd) {
    const v3 = gicd.version >= 3 || (gicd.version === 0 && t.madt.gicr.length > 0);
    const regs: [number, number][] = [[gicd.baseAddress, 0x1_0000]];
    if (v3) for (const r of t.madt.gicr) regs.push([r.baseAddress, r.length]);
    else if (t.madt.gicc[0]) regs.push([t.madt.gicc[0].baseAddress, 0x2000]);
    const name = `MADT:gicd@${hex(gicd.baseAddress)}`;
    const gic = new Node(name, name, root)
      .strings('compatible', [v3 ? 'arm,gic-v3' : 'arm,cortex-a15-gic'])
      .flag('interrupt-controller')
      .cells('#interrupt-cells', [3])
      .cells('#address-cells', [2])
      .cells('#size-cells', [2])
      .cells('ranges', [])
      .reg(regs)
      .cells('phandle', [phandle]);
    root.cells('interrupt-parent', [phandle++]);
    for (const f of t.madt.msiFrames) {
      const n = `MADT:msi-frame@${hex(f.baseAddress)}`;
      const fr = new Node(n, n, gic).strings('compatible', ['arm,gic-v2m-frame']).flag('msi-controller').reg([[f.baseAddress, 0x1000]]);
      if (f.flags & 1) fr.cells('arm,msi-base-spi', [f.spiBase]).cells('arm,msi-num-spis', [f.spiCount]);
    }
    for (const i of t.madt.its) {
      const n = `MADT:its@${hex(i.baseAddress)}`;
      new Node(n, n, gic).strings('compatible', ['arm,gic-v3-its']).flag('msi-controller').cells('#msi-cells', [1]).reg([[i.baseAddress, 0x2_0000]]).cells('phandle', [phandle]);
      if (!itsPhandle.has(i.translationId)) itsPhandle.set(i.translationId, phandle);
      phandle++;
    }
  } else {
    warn('no MADT GIC distributor: the machine has no interrupt controller');
  }

  const haveGic = root.properties.has('interrupt-parent');
  const irqs = (node: Node, list: { gsiv: number; edge: boolean; name?: string }[]): void => {
    if (!haveGic) return;
    const cells: number[] = [];
    const names: string[] = [];
    for (const i of list) {
      const s = gicSpecifier(i.gsiv, i.edge);
      if (!s) {
        warn(`${node.path}: GSIV ${i.gsiv} is not an SPI or PPI; interrupt not wired`);
        continue;
      }
      cells.push(...s);
      if (i.name) names.push(i.name);
    }
    if (cells.length) node.cells('interrupts', cells);
    if (names.length === cells.length / 3 && names.length) node.strings('interrupt-names', names);
  };

  // SMMUs
  const iort = t.iort;
  const byOffset = new Map<number, HwIortNode>((iort?.nodes ?? []).map((n) => [n.offset, n]));
  const smmuPhandle = new Map<number, number>();
  const smmuNode = new Map<number, Node>();
  for (const n of iort?.nodes ?? []) {
    const name = `IORT:${n.kind}@${hex(n.offset)}`;
    if (n.kind === 'smmuv3') {
      const cn99xx = n.model === 2;
      const s = new Node(name, name, root).strings('compatible', ['arm,smmu-v3']).reg([[n.base, cn99xx ? 0x1_0000 : 0x2_0000]]).cells('#iommu-cells', [1]);
      const list: { gsiv: number; edge: boolean; name: string }[] = [];
      if (cn99xx && n.eventGsiv && n.eventGsiv === n.priGsiv && n.eventGsiv === n.gerrGsiv && n.eventGsiv === n.syncGsiv) list.push({ gsiv: n.eventGsiv, edge: true, name: 'combined' });
      else {
        if (n.eventGsiv) list.push({ gsiv: n.eventGsiv, edge: true, name: 'eventq' });
        if (n.priGsiv) list.push({ gsiv: n.priGsiv, edge: true, name: 'priq' });
        if (n.gerrGsiv) list.push({ gsiv: n.gerrGsiv, edge: true, name: 'gerror' });
        if (n.syncGsiv) list.push({ gsiv: n.syncGsiv, edge: true, name: 'cmdq-sync' });
      }
      irqs(s, list);
      // Its own MSIs: the DeviceID the bus gives its writes to the ITS.
      const dev = smmuV3DeviceId(n, byOffset);
      const its = dev ? itsPhandle.get(dev.itsId) : undefined;
      if (dev && its !== undefined) s.cells('msi-parent', [its, dev.deviceId]);
      s.flag('dma-coherent', (n.flags & 1) !== 0).cells('phandle', [phandle]);
      smmuPhandle.set(n.offset, phandle++);
      if (n.model === 0) smmuNode.set(n.offset, s);
    } else if (n.kind === 'smmu') {
      const compatible = SMMU_COMPATIBLES[n.model];
      if (compatible === undefined) {
        warn(`${name}: unknown SMMU model ${n.model}; no model instantiated`);
        continue;
      }
      const s = new Node(name, name, root).strings('compatible', [compatible]).reg([[n.base, n.span]]).cells('#global-interrupts', [1]).cells('#iommu-cells', [1]);
      irqs(s, [{ gsiv: n.globalIrqs.nsgIrpt, edge: (n.globalIrqs.nsgIrptFlags & 1) !== 0 }, ...n.contextIrqs.map((c) => ({ gsiv: c.gsiv, edge: (c.flags & 1) !== 0 }))]);
      s.flag('dma-coherent', (n.flags & 2) !== 0).cells('phandle', [phandle]);
      smmuPhandle.set(n.offset, phandle++);
    }
  }

  // PCI host bridges
  const devices = t.namespace.devices;
  const hostPaths = new Set<string>();
  for (const e of t.mcfg?.entries ?? []) {
    const hostDev = devices.find((d) => isPciHost(d) && (d.seg ?? 0) === e.segment);
    const name = hostDev ? hostDev.path : `MCFG:seg${e.segment}@${hex(e.baseAddress)}`;
    if (root.children.some((c) => c.name === name)) {
      warn(`MCFG: a second entry for segment ${e.segment} is ignored`);
      continue;
    }
    if (hostDev) hostPaths.add(hostDev.path);
    const h = new Node(name, name, root)
      .strings('compatible', ['pci-host-ecam-generic'])
      .strings('device_type', ['pci'])
      .cells('#address-cells', [3])
      .cells('#size-cells', [2])
      .reg([[e.baseAddress + e.startBus * 0x10_0000, (e.endBus - e.startBus + 1) * 0x10_0000]])
      .cells('bus-range', [e.startBus, e.endBus]);
    const rc = iort?.nodes.find((n) => n.kind === 'rc' && n.pciSegment === e.segment);
    if (rc && rc.kind === 'rc') {
      const map: number[] = [];
      const first = rc.mappings[0];
      const firstPh = first ? smmuPhandle.get(first.outputReference) : undefined;
      if (first && first.flags & SINGLE && firstPh !== undefined) {
        // A single mapping first: every RID becomes its output StreamID (mask 0, one entry).
        h.cells('iommu-map-mask', [0]);
        map.push(0, firstPh, first.outputBase, 1);
      } else rc.mappings.forEach((m, i) => {
        if (m.flags & SINGLE) return;
        const ph = smmuPhandle.get(m.outputReference);
        if (ph === undefined) return;
        let length = m.idCount + 1;
        const last = m.inputBase + m.idCount;
        if (rc.mappings.some((o, j) => j !== i && !(o.flags & SINGLE) && o.inputBase === last)) length -= 1;
        if (length > 0) map.push(m.inputBase, ph, m.outputBase, length);
      });
      if (map.length) h.cells('iommu-map', map);
      h.flag('ats-supported', (rc.atsAttribute & 1) !== 0).flag('dma-coherent', rc.memory.cacheCoherency === 1);
    }
    if (!hostDev) continue;
    for (const d of devices) {
      if (d.parent !== hostDev.path || d.adr === null) continue;
      const dev = (d.adr >>> 16) & 0x1f;
      const fn = d.adr & 0x7;
      const ep = new Node(d.path, d.path, h).cells('reg', [(dev << 11) | (fn << 8), 0, 0, 0, 0]);
      const pasid = intName(d, 'IPAS');
      if (pasid) ep.cells('pasid-num-bits', [pasid]);
      ep.flag('iommu-sim,ats', (intName(d, 'IATS') ?? 0) !== 0).flag('iommu-sim,pri', (intName(d, 'IPRI') ?? 0) !== 0);
      const vid = intName(d, 'IVID');
      const did = intName(d, 'IDID');
      const cls = intName(d, 'ICLS');
      if (vid !== undefined) ep.cells('vendor-id', [vid]);
      if (did !== undefined) ep.cells('device-id', [did]);
      if (cls !== undefined) ep.cells('class-code', [cls]);
    }
  }

  // Grace CMDQVs: a DSDT NVDA200C device whose _UID is a generic SMMUv3 node's Identifier.
  for (const d of devices) {
    if (d.hid !== ACPI_HID_TEGRA241_CMDQV || d.resources.memory.length === 0) continue;
    const smmu = iort?.nodes.find((n) => n.kind === 'smmuv3' && smmuNode.has(n.offset) && typeof d.names.get('_UID') === 'number' && d.names.get('_UID') === n.identifier);
    const sn = smmu ? smmuNode.get(smmu.offset) : undefined;
    if (!sn) {
      warn(`${d.path}: NVDA200C device whose _UID names no generic SMMUv3 node; not built`);
      continue;
    }
    const c = new Node(d.path, d.path, root).strings('compatible', ['nvidia,tegra241-cmdqv']).reg(d.resources.memory.map((m) => [m.base, m.size] as [number, number]));
    irqs(c, d.resources.interrupts.map((i) => ({ gsiv: i.gsiv, edge: i.edge })));
    c.cells('phandle', [phandle]);
    sn.cells('nvidia,cmdqv', [phandle++]);
  }

  // Platform devices behind IOMMUs, and DMA test engines
  const seen = new Set<string>();
  for (const d of devices) {
    if (!d.hid || isPciHost(d) || (d.parent !== null && hostPaths.has(d.parent)) || seen.has(d.path)) continue;
    seen.add(d.path);
    const nc = iort?.nodes.find((n) => n.kind === 'nc' && samePath(n.deviceName, d.path));
    const streams: number[] = [];
    let iommuOffset: number | null = null;
    if (nc && nc.kind === 'nc') {
      for (const m of nc.mappings) {
        if (!(m.flags & SINGLE)) break;
        const target = byOffset.get(m.outputReference);
        if (!target || (target.kind !== 'smmu' && target.kind !== 'smmuv3')) break;
        if (iommuOffset !== null && iommuOffset !== target.offset) break;
        iommuOffset = target.offset;
        streams.push(m.outputBase);
      }
    }
    const isEngine = d.hid === ACPI_HID_DMA_TEST_ENGINE;
    const ph = iommuOffset !== null ? smmuPhandle.get(iommuOffset) : undefined;
    if (!isEngine && ph === undefined) continue;
    const n = new Node(d.path, d.path, root).strings('compatible', [isEngine ? 'iommu-sim,dma-test-engine' : `acpi,${d.hid}`]);
    if (d.resources.memory.length) n.reg(d.resources.memory.map((m) => [m.base, m.size] as [number, number]));
    irqs(n, d.resources.interrupts.map((i) => ({ gsiv: i.gsiv, edge: i.edge })));
    if (ph !== undefined) n.cells('iommus', streams.flatMap((s) => [ph, s]));
    if (nc && nc.kind === 'nc') {
      n.flag('dma-can-stall', (nc.flags & 1) !== 0);
      const pasid = (nc.flags >>> 1) & 0x1f;
      if (pasid) n.cells('pasid-num-bits', [pasid]);
    }
    if (d.cca === 1) n.flag('dma-coherent');
  }
  return root;
}

/**
 * An SMMUv3 node's own MSI DeviceID and the ITS it goes to: the single mapping at its DeviceID
 * mapping index into an ITS group (node revision 1-4: when not all four GSIVs are set; 5 and up:
 * when the DeviceID-valid flag says so), as the IORT specification and Linux's
 * iort_get_id_mapping_index() read it. Null when there is none.
 */
function smmuV3DeviceId(n: HwIortNode & { kind: 'smmuv3' }, byOffset: ReadonlyMap<number, HwIortNode>): { deviceId: number; itsId: number } | null {
  if (n.revision < 1) return null;
  if (n.revision < 5 && n.eventGsiv && n.priGsiv && n.gerrGsiv && n.syncGsiv) return null;
  if (n.revision >= 5 && !(n.flags & SMMU_V3_DEVICEID_VALID)) return null;
  const m = n.mappings[n.deviceIdMappingIndex];
  if (!m || !(m.flags & 1)) return null;
  const its = byOffset.get(m.outputReference);
  if (!its || its.kind !== 'its' || its.itsIds.length === 0) return null;
  return { deviceId: m.outputBase, itsId: its.itsIds[0] };
}

/** IORT SMMUv3 node flags bit 4: the DeviceID mapping index is valid (E.e and later). */
const SMMU_V3_DEVICEID_VALID = 1 << 4;
