/**
 * What Linux's drivers/acpi/arm64/iort.c decides from an IORT: ID translation through the node
 * graph (single and range mappings, the off-by-one "id_count" workaround for touching ranges, the
 * SMMUv3/PMCG DeviceID mapping that is never used to translate the IDs of devices behind them),
 * which IOMMU and StreamIDs a named component or a PCI requester ID gets, MSI DeviceIDs, and RMR
 * nodes as reserved regions and bypass StreamIDs (table revision >= 5, E.d, only).
 *
 * Firmware bugs Linux logs and survives (FW_BUG) are reported through `warn` and handled as Linux
 * handles them. A mapping cycle, on which Linux would loop forever, is a FirmwareError.
 */
import { FirmwareError } from '../firmware-error.js';
import {
  ACPI_IORT_ID_SINGLE_MAPPING,
  ACPI_IORT_NODE_ITS_GROUP,
  ACPI_IORT_NODE_NAMED_COMPONENT,
  ACPI_IORT_NODE_PCI_ROOT_COMPLEX,
  ACPI_IORT_NODE_PMCG,
  ACPI_IORT_NODE_SMMU,
  ACPI_IORT_NODE_SMMU_V3,
  ACPI_IORT_RMR_ACCESS_ATTRIBUTES_SHIFT,
  ACPI_IORT_RMR_ACCESS_PRIVILEGE,
  ACPI_IORT_RMR_REMAP_PERMITTED,
  ACPI_IORT_SMMU_V3_DEVICEID_VALID,
  IORT_REV_ED,
  type IortIdMapping,
  type IortNode,
  type IortTable,
  iortNodeName,
} from './iort.js';
import { acpiPathEqual } from './aml.js';

export type IortWarn = (message: string) => void;

/** The kernel's IORT_IOMMU_TYPE */
export const IORT_IOMMU_TYPE = (1 << ACPI_IORT_NODE_SMMU) | (1 << ACPI_IORT_NODE_SMMU_V3);
/** The kernel's IORT_MSI_TYPE */
export const IORT_MSI_TYPE = 1 << ACPI_IORT_NODE_ITS_GROUP;

const ENXIO = -6;
const EAGAIN = -11;

/** Result of one mapping: 0 (hit), EAGAIN (hit on the range's last ID), ENXIO (miss). */
// kernel: iort_id_map() [iort.c]
export function iortIdMap(map: IortIdMapping, type: number, ridIn: number, checkOverlap: boolean, warn: IortWarn): { rc: number; out: number } {
  if (map.flags & ACPI_IORT_ID_SINGLE_MAPPING) {
    if (type === ACPI_IORT_NODE_NAMED_COMPONENT || type === ACPI_IORT_NODE_PCI_ROOT_COMPLEX) return { rc: 0, out: map.outputBase };
    warn(`FW_BUG: [map at 0x${map.offset.toString(16)}] SINGLE MAPPING flag not allowed for node type ${type}, skipping ID map`);
    return { rc: ENXIO, out: ridIn };
  }
  if (ridIn < map.inputBase || ridIn > map.inputBase + map.idCount) return { rc: ENXIO, out: ridIn };
  if (checkOverlap) {
    warn(`FW_BUG: [map at 0x${map.offset.toString(16)}] conflicting mapping for input ID 0x${ridIn.toString(16)}`);
    if (ridIn !== map.inputBase) return { rc: ENXIO, out: ridIn };
    warn('FW_BUG: applying workaround.');
  }
  const out = (map.outputBase + (ridIn - map.inputBase)) >>> 0;
  return { rc: ridIn === map.inputBase + map.idCount ? EAGAIN : 0, out };
}

/** Index of the node's own DeviceID mapping, or -1. */
// kernel: iort_get_id_mapping_index() [iort.c]
export function iortGetIdMappingIndex(node: IortNode, warn: IortWarn): number {
  if (node.kind === 'smmuv3') {
    if (node.revision < 1) return -1;
    if (node.revision < 5) {
      if (node.eventGsiv && node.priGsiv && node.gerrGsiv && node.syncGsiv) return -1;
    } else if (!(node.flags & ACPI_IORT_SMMU_V3_DEVICEID_VALID)) return -1;
    if (node.deviceIdMappingIndex >= node.mappings.length) {
      warn(`FW_BUG: [${iortNodeName(node.type, node.offset)}] ID mapping index overflows valid mappings`);
      return -1;
    }
    return node.deviceIdMappingIndex;
  }
  if (node.kind === 'pmcg') return node.overflowGsiv || node.mappings.length === 0 ? -1 : 0;
  return -1;
}

function target(iort: IortTable, ref: number): IortNode {
  const n = iort.byOffset.get(ref);
  // parseIort rejects dangling references; a table built by hand may still have one.
  if (!n) throw new FirmwareError('IORT', `field "Output Reference": 0x${ref.toString(16)} is not a node`, ref, null);
  return n;
}

/** Walk `id` from `node` to the first node of a type in `typeMask`; null (ID unchanged) on failure. */
// kernel: iort_node_map_id() [iort.c]
export function iortNodeMapId(iort: IortTable, start: IortNode, idIn: number, typeMask: number, warn: IortWarn): { node: IortNode; id: number } | null {
  let node: IortNode | undefined = start;
  let id = idIn;
  for (let steps = 0; node; steps++) {
    if (steps > iort.nodes.length) {
      throw new FirmwareError('IORT', `field "Output Reference": ID mappings from ${iortNodeName(start.type, start.offset)} form a cycle`, start.offset, iortNodeName(start.type, start.offset));
    }
    if ((1 << node.type) & typeMask) return { node, id };
    if (node.mappings.length === 0) return null;
    if (node.mappings[0].outputReference === 0) {
      warn(`FW_BUG: [${iortNodeName(node.type, node.offset)}] ID map has NULL parent reference`);
      return null;
    }
    const index = iortGetIdMappingIndex(node, warn);
    const mapId = id;
    let outRef = 0;
    let rc = 0;
    let i = 0;
    for (; i < node.mappings.length; i++) {
      if (i === index) continue;
      const m: IortIdMapping = node.mappings[i];
      const r = iortIdMap(m, node.type, mapId, outRef !== 0, warn);
      rc = r.rc;
      if (rc === 0 || rc === EAGAIN) id = r.out;
      if (rc === 0) break;
      if (rc === EAGAIN) outRef = m.outputReference;
    }
    if (i === node.mappings.length && outRef === 0) return null;
    const ref: number = rc !== 0 ? outRef : node.mappings[i].outputReference;
    if (ref === 0) return null;
    node = target(iort, ref);
  }
  return null;
}

/** Mapping `index` of a node, when it is a single mapping the node type may use: its target and ID. */
// kernel: iort_node_get_id() [iort.c]
export function iortNodeGetId(iort: IortTable, node: IortNode, index: number, warn: IortWarn): { node: IortNode; id: number } | null {
  const m = node.mappings[index];
  if (!m) return null;
  if (m.outputReference === 0) {
    warn(`FW_BUG: [${iortNodeName(node.type, node.offset)}] ID map has NULL parent reference`);
    return null;
  }
  const parent = target(iort, m.outputReference);
  if (m.flags & ACPI_IORT_ID_SINGLE_MAPPING) {
    const t = node.type;
    if (t === ACPI_IORT_NODE_NAMED_COMPONENT || t === ACPI_IORT_NODE_PCI_ROOT_COMPLEX || t === ACPI_IORT_NODE_SMMU_V3 || t === ACPI_IORT_NODE_PMCG) {
      return { node: parent, id: m.outputBase };
    }
  }
  return null;
}

// kernel: iort_node_map_platform_id() [iort.c]
export function iortNodeMapPlatformId(iort: IortTable, node: IortNode, index: number, typeMask: number, warn: IortWarn): { node: IortNode; id: number } | null {
  const first = iortNodeGetId(iort, node, index, warn);
  if (!first) return null;
  if ((1 << first.node.type) & typeMask) return first;
  return iortNodeMapId(iort, first.node, first.id, typeMask, warn);
}

/** The named component whose Device Name is `path` (trailing '_' padding of segments ignored). */
// kernel: iort_match_node_callback() [iort.c]
export function iortFindNamedComponent(iort: IortTable, path: string): IortNode | null {
  return iort.nodes.find((n) => n.kind === 'nc' && acpiPathEqual(n.deviceName, path)) ?? null;
}

/** The root complex node of a PCI segment. */
export function iortFindRootComplex(iort: IortTable, segment: number): IortNode | null {
  return iort.nodes.find((n) => n.kind === 'rc' && n.pciSegment === segment) ?? null;
}

export interface IortIommuRef {
  iommu: IortNode;
  streamId: number;
}

/**
 * The StreamIDs of a named component with no input ID: one per leading single mapping that reaches
 * an IOMMU, stopping at the first that does not. All must name one IOMMU (as one fwspec holds one).
 */
// kernel: iort_nc_iommu_map() [iort.c]
export function iortNcIommuMap(iort: IortTable, nc: IortNode, warn: IortWarn): IortIommuRef[] {
  const out: IortIommuRef[] = [];
  for (let i = 0; i < nc.mappings.length; i++) {
    const r = iortNodeMapPlatformId(iort, nc, i, IORT_IOMMU_TYPE, warn);
    if (!r) break;
    if (out.length > 0 && out[0].iommu !== r.node) {
      warn(`${nc.kind === 'nc' ? nc.deviceName : iortNodeName(nc.type, nc.offset)}: mapping ${i} reaches a second IOMMU (${iortNodeName(r.node.type, r.node.offset)}); ignored`);
      break;
    }
    out.push({ iommu: r.node, streamId: r.id });
  }
  return out;
}

/** The IOMMU and StreamID of one PCI requester ID below root complex `rc`; null: not behind one. */
// kernel: iort_pci_iommu_init() [iort.c]
export function iortPciIommuMap(iort: IortTable, rc: IortNode, rid: number, warn: IortWarn): IortIommuRef | null {
  const r = iortNodeMapId(iort, rc, rid, IORT_IOMMU_TYPE, warn);
  return r ? { iommu: r.node, streamId: r.id } : null;
}

/** The ITS DeviceID of an ID from `node` (unchanged when there is no ITS on the way). */
// kernel: iort_msi_map_id() [iort.c]
export function iortMsiMapId(iort: IortTable, node: IortNode, id: number, warn: IortWarn): { its: IortNode | null; deviceId: number } {
  const r = iortNodeMapId(iort, node, id, IORT_MSI_TYPE, warn);
  return r ? { its: r.node, deviceId: r.id } : { its: null, deviceId: id };
}

/** The DeviceID an SMMUv3 or PMCG itself uses for its MSIs, through its DeviceID mapping. */
// kernel: iort_pmsi_get_dev_id() [iort.c]
export function iortPmsiGetDevId(iort: IortTable, node: IortNode, warn: IortWarn): { its: IortNode; deviceId: number } | null {
  const index = iortGetIdMappingIndex(node, warn);
  if (index >= 0) {
    const r = iortNodeGetId(iort, node, index, warn);
    if (r && r.node.kind === 'its') return { its: r.node, deviceId: r.id };
    warn(`FW_BUG: [${iortNodeName(node.type, node.offset)}] Invalid MSI mapping`);
    return null;
  }
  for (let i = 0; i < node.mappings.length; i++) {
    const r = iortNodeMapPlatformId(iort, node, i, IORT_MSI_TYPE, warn);
    if (r) return { its: r.node, deviceId: r.id };
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// RMR
// ---------------------------------------------------------------------------------------------

export type IortRmrType = 'DIRECT' | 'DIRECT_RELAXABLE';

/** One RMR descriptor as Linux turns it into a reserved region (kernel: struct iommu_iort_rmr_data). */
export interface IortRmrRegion {
  start: number;
  length: number;
  type: IortRmrType;
  priv: boolean;
  mmio: boolean;
  cache: boolean;
  /** StreamIDs of the SMMU this region applies to. */
  sids: number[];
  /** The RMR node it came from. */
  node: IortNode;
}

const PAGE = 0x1000;
const SZ_64K = 0x1_0000;

/** The RMR regions of the SMMU node `iommu` (all devices); empty below table revision 5. */
// kernel: iort_find_rmrs() [iort.c]
export function iortFindRmrs(iort: IortTable, iommu: IortNode, warn: IortWarn): IortRmrRegion[] {
  // Only supports ARM DEN 0049E.d onwards.
  if (iort.revision < IORT_REV_ED) return [];
  const out: IortRmrRegion[] = [];
  for (const node of iort.nodes) {
    if (node.kind !== 'rmr') continue;
    out.push(...iortNodeGetRmrInfo(node, iommu, warn));
  }
  return out;
}

// kernel: iort_node_get_rmr_info() [iort.c]
function iortNodeGetRmrInfo(node: IortNode & { kind: 'rmr' }, iommu: IortNode, warn: IortWarn): IortRmrRegion[] {
  if (node.mappings.length === 0) {
    warn(`FW_BUG: Invalid ID mapping, skipping RMR node at 0x${node.offset.toString(16)}`);
    return [];
  }
  const sids: number[] = [];
  for (const m of node.mappings) {
    // Only the mappings that point at this SMMU.
    if (m.outputReference !== iommu.offset) continue;
    // A range this large is not a list of devices; cap what is collected.
    const count = Math.min(m.idCount, 0xffff);
    for (let j = 0; j <= count; j++) sids.push((m.outputBase + j) >>> 0);
  }
  if (sids.length === 0) return [];
  return iortGetRmrs(node, sids, warn);
}

// kernel: iort_get_rmrs() [iort.c]
function iortGetRmrs(node: IortNode & { kind: 'rmr' }, sids: number[], warn: IortWarn): IortRmrRegion[] {
  const type: IortRmrType = node.flags & ACPI_IORT_RMR_REMAP_PERMITTED ? 'DIRECT_RELAXABLE' : 'DIRECT';
  const attr = (node.flags >>> ACPI_IORT_RMR_ACCESS_ATTRIBUTES_SHIFT) & 0xff;
  const out: IortRmrRegion[] = [];
  const seen: { start: number; end: number }[] = [];
  node.descriptors.forEach((d, i) => {
    if (d.length === 0) {
      warn(`FW_BUG: RMR descriptor[${i}] with zero length, continue anyway`);
      return;
    }
    if (d.base % SZ_64K !== 0 || d.length % SZ_64K !== 0) {
      warn(`FW_BUG: RMR descriptor[0x${d.base.toString(16)} - 0x${(d.base + d.length - 1).toString(16)}] not aligned to 64K, continue with [0x${(Math.floor(d.base / PAGE) * PAGE).toString(16)} - 0x${(Math.ceil((d.base + d.length) / PAGE) * PAGE - 1).toString(16)}]`);
    }
    const start = Math.floor(d.base / PAGE) * PAGE;
    const end = Math.ceil((d.base + d.length) / PAGE) * PAGE;
    for (const s of seen) {
      if (start < s.end && s.start < end) warn(`FW_BUG: RMR descriptor[0x${d.base.toString(16)}] overlaps, continue anyway`);
    }
    seen.push({ start, end });
    out.push({
      start,
      length: end - start,
      type,
      priv: (node.flags & ACPI_IORT_RMR_ACCESS_PRIVILEGE) !== 0,
      mmio: attr <= 0x03,
      cache: attr === 0x05,
      sids: [...sids],
      node,
    });
  });
  return out;
}

/** Every StreamID RMR nodes name on the SMMU `iommu` (for bypass STEs at probe). */
// kernel: iort_get_rmr_sids() [iort.c]
export function iortGetRmrSids(iort: IortTable, iommu: IortNode, warn: IortWarn): number[] {
  const set = new Set<number>();
  for (const r of iortFindRmrs(iort, iommu, warn)) for (const s of r.sids) set.add(s);
  return [...set];
}

/**
 * The RMR regions of one device: those naming one of its StreamIDs. For a PCI device only when its
 * host bridge preserves the boot configuration (the `_DSM` function 5, bus/acpi/pci-acpi.ts),
 * because re-enumeration may change RIDs.
 */
// kernel: iort_iommu_get_rmrs() [iort.c]
export function iortIommuGetRmrs(iort: IortTable, iommu: IortNode, ids: readonly number[], isPci: boolean, preserveConfig: boolean, warn: IortWarn): IortRmrRegion[] {
  if (isPci && !preserveConfig) return [];
  return iortFindRmrs(iort, iommu, warn).filter((r) => r.sids.some((s) => ids.includes(s)));
}
