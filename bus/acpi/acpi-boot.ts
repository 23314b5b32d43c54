/**
 * The kernel's reading of an ACPI machine: the tables the boot loader left (by signature, as
 * /sys/firmware/acpi/tables holds them) and the UEFI memory map become the kernel's device
 * description, so the same drivers probe as on a Device Tree machine:
 *
 * - RAM and reserved ranges from the memory map (ACPI carries no RAM);
 * - the GIC from the MADT GICD (version 2 → a GICv2 node, 3/4 → GICv3; 0 → v3 when a GICR
 *   structure exists), GICv2m frames from GIC MSI frames, ITSes from GIC ITS structures;
 * - an `arm-smmu-v3` device per IORT SMMUv3 node (IRQs "eventq", "priq", "gerror", "cmdq-sync" for
 *   each non-zero GSIV, or one "combined" for a Cavium CN99xx with four equal GSIVs; COHACC →
 *   coherent; model CN99xx / Hi161x → the driver's page-0-only / skip-prefetch options), and an
 *   `arm-smmu` device per SMMUv1/v2 node, its compatible from the IORT Model field (SMMUv1,
 *   SMMUv2, MMU-400, MMU-500, MMU-401, Cavium ThunderX), one global and every context interrupt;
 * - a generic ECAM host bridge per MCFG entry, PCI domain = segment, whose functions get their
 *   IOMMU and StreamID from the IORT root complex of that segment (iortPciIommuMap per requester
 *   ID, consulted by the host bridge driver through `acpiIortRootComplexOf`); ATS from the RC;
 * - a platform device for every DSDT/SSDT Device with a _HID that is not a PCI host bridge, below
 *   one, or a processor: resources from _CRS, coherent from _CCA, and, when an IORT named
 *   component carries its path, the StreamIDs iort_iommu_configure_id() gives it (single mappings
 *   through to an SMMU), `dma-can-stall` and `pasid-num-bits` from the node flags.
 *
 * Device names: DSDT devices by their full ACPI path ("\\_SB_.DMA0"), SMMUs by IORT node offset
 * ("IORT:smmuv3@0x48"), GIC parts by MADT structure ("MADT:gicd@0x8000000"), host bridges by their
 * DSDT path when one with a matching _SEG exists, else "MCFG:seg0@0x3f000000". hw/acpi.ts names
 * the machine's parts the same way.
 *
 * - a generic SMMUv3 whose Identifier is the _UID of a DSDT NVDA200C device gets that device as its
 *   Grace CMDQV (the driver's `nvidia,cmdqv` discovery then finds it).
 *
 * ACPI IDs that name a model of this simulator: ISIM0001 = the DMA test engine.
 */
import { FirmwareError } from '../firmware-error.js';
import { DtBuilder, DtBuilderError, type DtBuilderNode, type DtProps, ranges, reg } from '../of/dt-builder.js';
import type { DeviceTree, DtNode } from '../of/tree.js';
import { type AcpiDeviceNode, type AcpiNamespace, parseAcpiNamespace } from './aml.js';
import {
  ACPI_IORT_ATS_SUPPORTED,
  ACPI_IORT_NC_PASID_BITS_MASK,
  ACPI_IORT_NC_PASID_BITS_SHIFT,
  ACPI_IORT_NC_STALL_SUPPORTED,
  ACPI_IORT_NODE_COHERENT,
  ACPI_IORT_SMMU_COHERENT_WALK,
  ACPI_IORT_SMMU_V3_CAVIUM_CN99XX,
  ACPI_IORT_SMMU_V3_COHACC_OVERRIDE,
  ACPI_IORT_SMMU_V3_HISILICON_HI161X,
  type IortNode,
  type IortTable,
  parseIort,
} from './iort.js';
import { iortFindNamedComponent, iortFindRootComplex, iortGetIdMappingIndex, iortNcIommuMap, iortNodeGetId, type IortWarn } from './iort-walk.js';
import { type MadtTable, parseMadt } from './madt.js';
import { type McfgTable, parseMcfg } from './mcfg.js';

/** RAM and reserved ranges, as the UEFI memory map gives them. */
export interface AcpiMemoryMap {
  ram: readonly { base: number; size: number }[];
  reserved?: readonly { base: number; size: number }[];
}

export interface AcpiTables {
  iort: IortTable | null;
  madt: MadtTable | null;
  mcfg: McfgTable | null;
  namespace: AcpiNamespace;
  /** The blobs by signature. */
  blobs: ReadonlyMap<string, Uint8Array>;
}

/** Parse the tables this stack reads (IORT, APIC, MCFG, DSDT, SSDT*); others are kept as blobs. */
export function parseAcpiTables(blobs: ReadonlyMap<string, Uint8Array>): AcpiTables {
  const get = (sig: string): Uint8Array | undefined => blobs.get(sig);
  const iort = get('IORT');
  const madt = get('APIC');
  const mcfg = get('MCFG');
  const aml: Uint8Array[] = [];
  const dsdt = get('DSDT');
  if (dsdt) aml.push(dsdt);
  for (const [k, v] of [...blobs].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }))) if (/^SSDT\d*$/.test(k)) aml.push(v);
  return {
    iort: iort ? parseIort(iort) : null,
    madt: madt ? parseMadt(madt) : null,
    mcfg: mcfg ? parseMcfg(mcfg) : null,
    namespace: parseAcpiNamespace(aml),
    blobs,
  };
}

const hex = (v: number): string => `0x${v.toString(16)}`;

/** "IORT:smmuv3@0x48". */
export function iortNodePath(node: IortNode): string {
  return `IORT:${node.kind}@${hex(node.offset)}`;
}

/** The name of the GIC the MADT describes. */
export function madtGicPath(base: number): string {
  return `MADT:gicd@${hex(base)}`;
}

/** ACPI IDs of devices this simulator models, and the driver compatible they stand for. */
export const ACPI_SIM_IDS: Readonly<Record<string, string>> = { ISIM0001: 'iommu-sim,dma-test-engine', NVDA200C: 'nvidia,tegra241-cmdqv' };

/** ACPI HID of the Grace CMDQV, found as the companion of its SMMUv3 node. */
export const ACPI_HID_TEGRA241_CMDQV = 'NVDA200C';

const PCI_HOST_IDS = ['PNP0A08', 'PNP0A03'];

function isPciHost(d: AcpiDeviceNode): boolean {
  return (d.hid !== null && PCI_HOST_IDS.includes(d.hid)) || d.cids.some((c) => PCI_HOST_IDS.includes(c));
}

/** The DT compatible of an SMMUv3 PMCG (Linux's ACPI platform device name is "arm-smmu-v3-pmcg"). */
export const ARM_SMMU_V3_PMCG_COMPATIBLE = 'arm,smmu-v3-pmcg';
const SZ_4K = 0x1000;

/** What the kernel keeps about an ACPI boot, found from its device tree. */
export interface AcpiKernelFirmware {
  tables: AcpiTables;
  /** IORT node of each SMMU device node. */
  readonly iortOfNode: Map<DtNode, IortNode>;
  /** Device node of each IORT SMMU node, by offset. */
  readonly nodeOfIort: Map<number, DtNode>;
  /** IORT root complex of each host bridge node. */
  readonly rcOfHost: Map<DtNode, IortNode>;
  /** DSDT device of each platform device node. */
  readonly acpiOfNode: Map<DtNode, AcpiDeviceNode>;
  readonly warnings: string[];
}

const byTree = new WeakMap<DeviceTree, AcpiKernelFirmware>();
const byNode = new WeakMap<DtNode, AcpiKernelFirmware>();

/** The ACPI firmware a tree was made from, or null for a Device Tree boot. */
export function acpiFirmwareOf(tree: DeviceTree | null): AcpiKernelFirmware | null {
  return tree ? (byTree.get(tree) ?? null) : null;
}

/** The ACPI firmware a device node came from (null: a DT node). */
export function acpiFirmwareOfNode(node: DtNode | null): AcpiKernelFirmware | null {
  return node ? (byNode.get(node) ?? null) : null;
}

/** The IORT root complex behind a host bridge node, when the machine was booted from ACPI. */
export function acpiIortRootComplexOf(node: DtNode): { iort: IortTable; rc: IortNode; fw: AcpiKernelFirmware } | null {
  const fw = byNode.get(node);
  const rc = fw?.rcOfHost.get(node);
  return fw?.tables.iort && rc ? { iort: fw.tables.iort, rc, fw } : null;
}

/** The IORT node behind an SMMU device node. */
export function acpiIortNodeOf(node: DtNode | null): { iort: IortTable; node: IortNode; fw: AcpiKernelFirmware } | null {
  if (!node) return null;
  const fw = byNode.get(node);
  const n = fw?.iortOfNode.get(node);
  return fw?.tables.iort && n ? { iort: fw.tables.iort, node: n, fw } : null;
}

/** The DSDT/SSDT devices of the ACPI boot, in table order (empty for a DT boot). */
export function acpiDevices(tree: DeviceTree | null): readonly AcpiDeviceNode[] {
  return acpiFirmwareOf(tree)?.tables.namespace.devices ?? [];
}

/**
 * The DSDT/SSDT device with this _HID (or _CID) and _UID, or null: how a driver finds its ACPI
 * companion (kernel: acpi_dev_get_first_match_dev(hid, uid, -1)). `uid` compares as a string.
 */
// kernel: acpi_dev_get_first_match_dev() [utils.c]
export function acpiFindDevice(tree: DeviceTree | null, hid: string, uid?: number | string): AcpiDeviceNode | null {
  for (const d of acpiDevices(tree)) {
    if (d.hid !== hid && !d.cids.includes(hid)) continue;
    if (uid === undefined || (d.uid !== null && String(d.uid) === String(uid))) return d;
  }
  return null;
}

/**
 * The DSDT/SSDT companion of an IORT SMMU node: the device with this _HID whose _UID equals the
 * node's Identifier (how Linux finds a Tegra241 CMDQV, HID NVDA200C, for an SMMUv3 node).
 * `smmuNode` is the SMMU's device node; null on a DT boot or when there is none.
 */
export function acpiIortSmmuCompanion(smmuNode: DtNode | null, hid: string): AcpiDeviceNode | null {
  const fw = acpiFirmwareOfNode(smmuNode);
  const n = smmuNode ? fw?.iortOfNode.get(smmuNode) : undefined;
  if (!fw || !n) return null;
  return fw.tables.namespace.devices.find((d) => (d.hid === hid || d.cids.includes(hid)) && d.uid !== null && Number(d.uid) === n.identifier) ?? null;
}

/** GIC interrupt specifier for a GSIV: SPIs from 32, PPIs 16-31. */
function gicSpecifier(gsiv: number, edge: boolean): number[] | null {
  if (gsiv >= 32) return [0, gsiv - 32, edge ? 1 : 4];
  if (gsiv >= 16) return [1, gsiv - 16, edge ? 1 : 4];
  return null;
}

const SMMU_COMPATIBLES: Record<number, string> = {
  0: 'arm,smmu-v1',
  1: 'arm,smmu-v2',
  2: 'arm,mmu-400',
  3: 'arm,mmu-500',
  4: 'arm,mmu-401',
  5: 'cavium,smmu-v2',
};

/** Build the kernel's device tree from ACPI tables and a memory map (see the file header). */
// kernel: iort_init_platform_devices() [iort.c]
export function acpiBuildDeviceTree(tables: AcpiTables, memory: AcpiMemoryMap, opts: { bootargs?: string } = {}): { tree: DeviceTree; firmware: AcpiKernelFirmware } {
  try {
    return buildTree(tables, memory, opts);
  } catch (e) {
    // Values the tables passed the parsers with but no device description can hold (a name or an
    // address the tree refuses): still bad firmware, reported as such.
    if (e instanceof DtBuilderError) throw new FirmwareError('ACPI', e.message, null, null);
    throw e;
  }
}

function buildTree(tables: AcpiTables, memory: AcpiMemoryMap, opts: { bootargs?: string }): { tree: DeviceTree; firmware: AcpiKernelFirmware } {
  const warnings: string[] = [];
  const b = new DtBuilder({ compatible: 'iommu-sim,acpi', model: 'ACPI machine', '#address-cells': 2, '#size-cells': 2 });
  b.node('/chosen', opts.bootargs ? { bootargs: opts.bootargs } : {});
  for (const r of memory.ram) b.node(`/memory@${r.base.toString(16)}`, { device_type: 'memory', reg: reg([r.base, r.size]) });
  if (memory.reserved?.length) {
    b.node('/reserved-memory', { '#address-cells': 2, '#size-cells': 2, ranges: ranges() });
    for (const r of memory.reserved) b.node(`/reserved-memory/reserved@${r.base.toString(16)}`, { reg: reg([r.base, r.size]), 'no-map': true });
  }
  const named = new Map<DtBuilderNode, string>();
  const add = (name: string, props: DtProps, parent: DtBuilderNode = b.root): DtBuilderNode => {
    const n = parent.node(name, props);
    named.set(n, name);
    return n;
  };

  // -- GIC ----------------------------------------------------------------------------------
  const madt = tables.madt;
  // Linux's ACPI GICv2m driver serves PCI MSIs from the first frame (gicv2m_acpi_init()).
  let firstMsiFrame: DtBuilderNode | null = null;
  const itsById = new Map<number, DtBuilderNode>();
  const gicd = madt?.gicd[0];
  if (madt && gicd) {
    const v3 = gicd.version >= 3 || (gicd.version === 0 && madt.gicr.length > 0);
    const regs: [number, number][] = [[gicd.baseAddress, 0x1_0000]];
    if (v3) for (const r of madt.gicr) regs.push([r.baseAddress, r.length]);
    else if (madt.gicc[0]) regs.push([madt.gicc[0].baseAddress, 0x2000]);
    const gic = add(madtGicPath(gicd.baseAddress), {
      compatible: v3 ? 'arm,gic-v3' : 'arm,cortex-a15-gic',
      'interrupt-controller': true,
      '#interrupt-cells': 3,
      '#address-cells': 2,
      '#size-cells': 2,
      ranges: ranges(),
      reg: reg(...regs),
    });
    b.root.set({ 'interrupt-parent': gic });
    for (const f of madt.msiFrames) {
      const props: DtProps = { compatible: 'arm,gic-v2m-frame', 'msi-controller': true, reg: reg([f.baseAddress, 0x1000]) };
      if (f.flags & 1) Object.assign(props, { 'arm,msi-base-spi': f.spiBase, 'arm,msi-num-spis': f.spiCount });
      const fr = add(`MADT:msi-frame@${hex(f.baseAddress)}`, props, gic);
      firstMsiFrame ??= fr;
    }
    for (const i of madt.its) {
      const itsNode = add(`MADT:its@${hex(i.baseAddress)}`, { compatible: 'arm,gic-v3-its', 'msi-controller': true, '#msi-cells': 1, reg: reg([i.baseAddress, 0x2_0000]) }, gic);
      if (!itsById.has(i.translationId)) itsById.set(i.translationId, itsNode);
    }
  }

  // -- SMMUs --------------------------------------------------------------------------------
  const iort = tables.iort;
  const smmuNodes = new Map<number, DtBuilderNode>();
  const iortOfBuilder = new Map<DtBuilderNode, IortNode>();
  const irqProps = (list: { gsiv: number; edge: boolean; name?: string }[], where: string): DtProps => {
    // Without a MADT GIC there is no controller to name: the devices get no interrupts.
    if (!gicd) return {};
    const cells: number[] = [];
    const names: string[] = [];
    for (const i of list) {
      const s = gicSpecifier(i.gsiv, i.edge);
      if (!s) {
        warnings.push(`${where}: GSIV ${i.gsiv} is not an SPI or PPI; interrupt dropped`);
        continue;
      }
      cells.push(...s);
      if (i.name) names.push(i.name);
    }
    const p: DtProps = {};
    if (cells.length) p.interrupts = cells;
    if (names.length) p['interrupt-names'] = names;
    return p;
  };
  for (const n of iort?.nodes ?? []) {
    if (n.kind === 'smmuv3') {
      const irqs: { gsiv: number; edge: boolean; name: string }[] = [];
      // As Linux's arm_smmu_v3_set_irqs(): a combined interrupt for CN99xx with four equal GSIVs.
      if (n.model === ACPI_IORT_SMMU_V3_CAVIUM_CN99XX && n.eventGsiv && n.eventGsiv === n.priGsiv && n.eventGsiv === n.gerrGsiv && n.eventGsiv === n.syncGsiv) {
        irqs.push({ gsiv: n.eventGsiv, edge: true, name: 'combined' });
      } else {
        if (n.eventGsiv) irqs.push({ gsiv: n.eventGsiv, edge: true, name: 'eventq' });
        if (n.priGsiv) irqs.push({ gsiv: n.priGsiv, edge: true, name: 'priq' });
        if (n.gerrGsiv) irqs.push({ gsiv: n.gerrGsiv, edge: true, name: 'gerror' });
        if (n.syncGsiv) irqs.push({ gsiv: n.syncGsiv, edge: true, name: 'cmdq-sync' });
      }
      const props: DtProps = {
        compatible: 'arm,smmu-v3',
        reg: reg([n.base, n.model === ACPI_IORT_SMMU_V3_CAVIUM_CN99XX ? 0x1_0000 : 0x2_0000]),
        '#iommu-cells': 1,
        ...irqProps(irqs, iortNodePath(n)),
      };
      if (n.flags & ACPI_IORT_SMMU_V3_COHACC_OVERRIDE) props['dma-coherent'] = true;
      // Its own MSIs go to the ITS of its DeviceID mapping (kernel: iort_set_device_domain()).
      const devId = iort ? iortDeviceMsiId(iort, n, (m) => warnings.push(`${iortNodePath(n)}: ${m}`)) : null;
      const itsNode = devId?.its.kind === 'its' ? itsById.get(devId.its.itsIds[0]) : undefined;
      if (devId && itsNode) props['msi-parent'] = [itsNode, devId.deviceId];
      if (n.model === ACPI_IORT_SMMU_V3_CAVIUM_CN99XX) props['cavium,cn9900-broken-page1-regspace'] = true;
      if (n.model === ACPI_IORT_SMMU_V3_HISILICON_HI161X) props['hisilicon,broken-prefetch-cmd'] = true;
      const dn = add(iortNodePath(n), props);
      smmuNodes.set(n.offset, dn);
      iortOfBuilder.set(dn, n);
    } else if (n.kind === 'smmu') {
      const compatible = SMMU_COMPATIBLES[n.model];
      if (compatible === undefined) {
        warnings.push(`${iortNodePath(n)}: unknown SMMU model ${n.model}; not created`);
        continue;
      }
      const irqs = [
        { gsiv: n.globalIrqs.nsgIrpt, edge: (n.globalIrqs.nsgIrptFlags & 1) !== 0 },
        ...n.contextIrqs.map((c) => ({ gsiv: c.gsiv, edge: (c.flags & 1) !== 0 })),
      ];
      const props: DtProps = {
        compatible,
        reg: reg([n.base, n.span]),
        '#global-interrupts': 1,
        '#iommu-cells': 1,
        ...irqProps(irqs, iortNodePath(n)),
      };
      if (n.flags & ACPI_IORT_SMMU_COHERENT_WALK) props['dma-coherent'] = true;
      const dn = add(iortNodePath(n), props);
      smmuNodes.set(n.offset, dn);
      iortOfBuilder.set(dn, n);
    }
  }

  // -- PCI host bridges ----------------------------------------------------------------------
  const devices = tables.namespace.devices;
  const rcOfBuilder = new Map<DtBuilderNode, IortNode>();
  const hostPaths = new Set<string>();
  for (const e of tables.mcfg?.entries ?? []) {
    const host = devices.find((d) => isPciHost(d) && (d.seg ?? 0) === e.segment);
    const name = host ? host.path : `MCFG:seg${e.segment}@${hex(e.baseAddress)}`;
    if (host) hostPaths.add(host.path);
    const rc = iort ? iortFindRootComplex(iort, e.segment) : null;
    const props: DtProps = {
      compatible: 'pci-host-ecam-generic',
      device_type: 'pci',
      '#address-cells': 3,
      '#size-cells': 2,
      reg: reg([e.baseAddress + e.startBus * 0x10_0000, (e.endBus - e.startBus + 1) * 0x10_0000]),
      'bus-range': [e.startBus, e.endBus],
      'linux,pci-domain': e.segment,
    };
    if (firstMsiFrame && !madt?.its.length) props['msi-parent'] = firstMsiFrame;
    if (rc && rc.kind === 'rc') {
      if (rc.memory.cacheCoherency === ACPI_IORT_NODE_COHERENT) props['dma-coherent'] = true;
      if (rc.atsAttribute & ACPI_IORT_ATS_SUPPORTED) props['ats-supported'] = true;
    }
    if (b.root.children.some((c) => c.name === name)) {
      warnings.push(`MCFG: a second entry for segment ${e.segment} is ignored`);
      continue;
    }
    const dn = add(name, props);
    if (rc) rcOfBuilder.set(dn, rc);
  }

  // -- DSDT devices ---------------------------------------------------------------------------
  const acpiOfBuilder = new Map<DtBuilderNode, AcpiDeviceNode>();
  const builderOfPath = new Map<string, DtBuilderNode>();
  const ncUsed = new Set<IortNode>();
  const seen = new Set<string>();
  for (const d of devices) {
    if (!d.hid || isPciHost(d) || d.hid === 'ACPI0007' || d.hid === 'ACPI0010') continue;
    if (d.parent && (hostPaths.has(d.parent) || devices.some((p) => p.path === d.parent && isPciHost(p)))) continue;
    if (seen.has(d.path)) {
      warnings.push(`${d.path}: defined twice; the second definition is ignored`);
      continue;
    }
    seen.add(d.path);
    const props: DtProps = { compatible: ACPI_SIM_IDS[d.hid] ?? `acpi,${d.hid}` };
    if (d.resources.memory.length) props.reg = reg(...d.resources.memory.map((m) => [m.base, m.size] as [number, number]));
    Object.assign(props, irqProps(d.resources.interrupts.map((i) => ({ gsiv: i.gsiv, edge: i.edge })), d.path));
    const nc = iort ? iortFindNamedComponent(iort, d.path) : null;
    if (d.cca === 1 || (d.cca === null && nc?.kind === 'nc' && nc.memory.cacheCoherency === ACPI_IORT_NODE_COHERENT)) props['dma-coherent'] = true;
    if (iort && nc && nc.kind === 'nc') {
      ncUsed.add(nc);
      const refs = iortNcIommuMap(iort, nc, (m) => warnings.push(`${d.path}: ${m}`));
      const target = refs[0] ? smmuNodes.get(refs[0].iommu.offset) : undefined;
      if (target) props.iommus = refs.flatMap((r) => [target, r.streamId]);
      if (nc.flags & ACPI_IORT_NC_STALL_SUPPORTED) props['dma-can-stall'] = true;
      const pasid = (nc.flags & ACPI_IORT_NC_PASID_BITS_MASK) >>> ACPI_IORT_NC_PASID_BITS_SHIFT;
      if (pasid) props['pasid-num-bits'] = pasid;
    }
    const dn = add(d.path, props);
    acpiOfBuilder.set(dn, d);
    builderOfPath.set(d.path, dn);
  }
  // A generic SMMUv3 with a DSDT NVDA200C companion (_UID = its node Identifier) has a Grace CMDQV:
  // named to the driver the way its DT binding does (kernel: acpi_smmu_dsdt_probe_tegra241_cmdqv()).
  for (const [offset, sn] of smmuNodes) {
    const n = iort?.byOffset.get(offset);
    if (!n || n.kind !== 'smmuv3' || n.model !== 0) continue;
    const comp = devices.find((d) => d.hid === ACPI_HID_TEGRA241_CMDQV && d.uid !== null && Number(d.uid) === n.identifier);
    const cn = comp ? builderOfPath.get(comp.path) : undefined;
    if (cn) sn.set({ 'nvidia,cmdqv': cn });
  }
  // SMMUv3 PMU counter groups: a platform device per PMCG node, as iort_add_platform_device() makes
  // them ("arm-smmu-v3-pmcg": page 0, page 1 from node revision 1, the "overflow" interrupt when
  // its GSIV is set), named by node offset. No driver of this kernel binds them.
  for (const n of iort?.nodes ?? []) {
    if (n.kind !== 'pmcg') continue;
    const regs: [number, number][] = [[n.page0Base, SZ_4K]];
    if (n.revision > 0) regs.push([n.page1Base, SZ_4K]);
    const props: DtProps = { compatible: ARM_SMMU_V3_PMCG_COMPATIBLE, reg: reg(...regs) };
    if (n.overflowGsiv) Object.assign(props, irqProps([{ gsiv: n.overflowGsiv, edge: true, name: 'overflow' }], iortNodePath(n)));
    const dn = add(iortNodePath(n), props);
    iortOfBuilder.set(dn, n);
  }
  for (const n of iort?.nodes ?? []) {
    if (n.kind === 'nc' && !ncUsed.has(n)) warnings.push(`${iortNodePath(n)}: named component "${n.deviceName}" has no DSDT device`);
  }

  // -- build and index -----------------------------------------------------------------------
  const tree = b.build();
  const firmware: AcpiKernelFirmware = {
    tables,
    iortOfNode: new Map(),
    nodeOfIort: new Map(),
    rcOfHost: new Map(),
    acpiOfNode: new Map(),
    warnings,
  };
  const walkBoth = (bn: DtBuilderNode, dn: DtNode): void => {
    const name = named.get(bn);
    if (name !== undefined) {
      // ACPI-described parts are named by ACPI path or table position, not by a DT path.
      Object.defineProperty(dn, 'path', { value: name, enumerable: true });
      byNode.set(dn, firmware);
    }
    const io = iortOfBuilder.get(bn);
    if (io) {
      firmware.iortOfNode.set(dn, io);
      firmware.nodeOfIort.set(io.offset, dn);
    }
    const rc = rcOfBuilder.get(bn);
    if (rc) firmware.rcOfHost.set(dn, rc);
    const ad = acpiOfBuilder.get(bn);
    if (ad) firmware.acpiOfNode.set(dn, ad);
    bn.children.forEach((c, i) => walkBoth(c, dn.children[i]));
  };
  walkBoth(b.root, tree.root);
  byTree.set(tree, firmware);
  return { tree, firmware };
}

/**
 * The ITS group and DeviceID an IORT platform device (SMMUv3, PMCG) signals its own MSIs with: the
 * single mapping at its DeviceID mapping index, which must lead to an ITS group; null without one
 * (the device then has no MSI domain and uses its wired interrupts).
 */
// kernel: iort_set_device_domain() [iort.c]
function iortDeviceMsiId(iort: IortTable, node: IortNode, warn: IortWarn): { its: IortNode; deviceId: number } | null {
  const index = iortGetIdMappingIndex(node, warn);
  if (index < 0) return null;
  const r = iortNodeGetId(iort, node, index, warn);
  if (r && r.node.kind === 'its') return { its: r.node, deviceId: r.id };
  warn(`Invalid MSI mapping`);
  return null;
}

/** The error for a boot with neither a DTB nor the ACPI tables it needs. */
export function acpiMissingTable(sig: string): FirmwareError {
  return new FirmwareError(sig, `the boot loader passed no ${sig} table`, null, null);
}
