/**
 * IORT (IO Remapping Table, Arm DEN 0049) reader and writer: table revisions 0 (issue D and
 * earlier, "E" as ACPICA knows it) through 7 (E.f/E.g), every node type: ITS group, named component,
 * PCI root complex, SMMUv1/v2, SMMUv3, PMCG, RMR and IWB, with their ID mappings (Single-mapping
 * flag) and memory access properties.
 *
 * Choices where the fact sheet marks a (?):
 * - The node Identifier (header word +4) is read for table revision >= 3 (E.b); below it is
 *   "Reserved" and reported as 0.
 * - IWB nodes (type 7) are decoded in table revision >= 7; in older tables a type-7 node is kept as
 *   `unknown` (Linux ignores node types it does not know, and so does the machine).
 * - The RC node is 36 bytes of data (ACPICA's layout; coreboot's extra flags word is not read).
 * - RMR nodes are decoded in any table revision (Linux only *uses* them from revision 5, E.d:
 *   see iort-walk.ts).
 * - An ID mapping's Output Reference must be 0 (a firmware bug Linux logs and skips, kept as is so
 *   the walk can do the same) or the offset of a node of this table; anything else is a dangling
 *   reference and a FirmwareError.
 *
 * Every field is bounds-checked against the node's Length and the table's Length: malformed input
 * is a FirmwareError("IORT", 'field "…": …', byte offset, node), nothing else.
 */
import { FirmwareError } from '../firmware-error.js';
import { ACPI_HEADER_SIZE, AcpiReader, type AcpiOemInfo, type AcpiTableHeader, acpiTableWriter, finishAcpiTable, readAcpiHeader } from './table.js';

// Node types (Linux: enum acpi_iort_node_type).
export const ACPI_IORT_NODE_ITS_GROUP = 0;
export const ACPI_IORT_NODE_NAMED_COMPONENT = 1;
export const ACPI_IORT_NODE_PCI_ROOT_COMPLEX = 2;
export const ACPI_IORT_NODE_SMMU = 3;
export const ACPI_IORT_NODE_SMMU_V3 = 4;
export const ACPI_IORT_NODE_PMCG = 5;
export const ACPI_IORT_NODE_RMR = 6;
export const ACPI_IORT_NODE_IWB = 7;

export const ACPI_IORT_ID_SINGLE_MAPPING = 1 << 0;

/** SMMUv1/v2 model field. */
export const ACPI_IORT_SMMU_V1 = 0;
export const ACPI_IORT_SMMU_V2 = 1;
export const ACPI_IORT_SMMU_CORELINK_MMU400 = 2;
export const ACPI_IORT_SMMU_CORELINK_MMU500 = 3;
export const ACPI_IORT_SMMU_CORELINK_MMU401 = 4;
export const ACPI_IORT_SMMU_CAVIUM_THUNDERX = 5;
export const ACPI_IORT_SMMU_DVM_SUPPORTED = 1 << 0;
export const ACPI_IORT_SMMU_COHERENT_WALK = 1 << 1;

/** SMMUv3 model and flags. */
export const ACPI_IORT_SMMU_V3_GENERIC = 0;
export const ACPI_IORT_SMMU_V3_HISILICON_HI161X = 1;
export const ACPI_IORT_SMMU_V3_CAVIUM_CN99XX = 2;
export const ACPI_IORT_SMMU_V3_COHACC_OVERRIDE = 1 << 0;
export const ACPI_IORT_SMMU_V3_HTTU_OVERRIDE = 3 << 1;
export const ACPI_IORT_SMMU_V3_PXM_VALID = 1 << 3;
export const ACPI_IORT_SMMU_V3_DEVICEID_VALID = 1 << 4;

/** Named component node flags. */
export const ACPI_IORT_NC_STALL_SUPPORTED = 1 << 0;
export const ACPI_IORT_NC_PASID_BITS_SHIFT = 1;
export const ACPI_IORT_NC_PASID_BITS_MASK = 0x1f << 1;

/** Root complex ATS attribute bits. */
export const ACPI_IORT_ATS_SUPPORTED = 1 << 0;
export const ACPI_IORT_PRI_SUPPORTED = 1 << 1;
export const ACPI_IORT_PASID_FWD_SUPPORTED = 1 << 2;

/** Memory access properties: cache coherency values and memory flags. */
export const ACPI_IORT_NODE_COHERENT = 1;
export const ACPI_IORT_MF_COHERENCY = 1 << 0;
export const ACPI_IORT_MF_ATTRIBUTES = 1 << 1;
export const ACPI_IORT_MF_CANWBS = 1 << 2;

/** RMR flags. */
export const ACPI_IORT_RMR_REMAP_PERMITTED = 1 << 0;
export const ACPI_IORT_RMR_ACCESS_PRIVILEGE = 1 << 1;
export const ACPI_IORT_RMR_ACCESS_ATTRIBUTES_SHIFT = 2;

export const IORT_NODE_HEADER_SIZE = 16;
export const IORT_ID_MAPPING_SIZE = 20;
export const IORT_MEMORY_ACCESS_SIZE = 8;
export const IORT_RMR_DESC_SIZE = 20;

/** Table revisions: 0 up to issue D / E as ACPICA calls it, 3 = E.b, 5 = E.d, 6 = E.e, 7 = E.f/E.g. */
export const IORT_REV_E = 0;
export const IORT_REV_EB = 3;
export const IORT_REV_ED = 5;
export const IORT_REV_EE = 6;
export const IORT_REV_EF = 7;
/** Highest table revision this reader knows. */
export const IORT_MAX_REVISION = 7;

/** The kernel's struct acpi_iort_id_mapping */
export interface IortIdMapping {
  inputBase: number;
  /** As stored: the number of IDs minus one. */
  idCount: number;
  outputBase: number;
  /** Offset of the target node from the table start (0: the firmware bug "NULL parent"). */
  outputReference: number;
  flags: number;
  /** Byte offset of this mapping in the table. */
  offset: number;
}

/** The kernel's struct acpi_iort_memory_access */
export interface IortMemoryAccess {
  cacheCoherency: number;
  hints: number;
  memoryFlags: number;
}

export interface IortInterrupt {
  gsiv: number;
  /** b0: edge-triggered. */
  flags: number;
}

export interface IortRmrDescriptor {
  base: number;
  length: number;
}

interface IortNodeCommon {
  /** Offset of the node from the table start: the name references use. */
  offset: number;
  type: number;
  length: number;
  revision: number;
  /** Unique node identifier (table revision >= 3), else 0. */
  identifier: number;
  mappings: IortIdMapping[];
}

export type IortNodeData =
  | { kind: 'its'; itsIds: number[] }
  | { kind: 'nc'; flags: number; memory: IortMemoryAccess; memoryAddressLimit: number; deviceName: string }
  | { kind: 'rc'; memory: IortMemoryAccess; atsAttribute: number; pciSegment: number; memoryAddressLimit: number; pasidCapabilities: number }
  | {
      kind: 'smmu';
      base: number;
      span: number;
      model: number;
      flags: number;
      globalIrqs: { nsgIrpt: number; nsgIrptFlags: number; nsgCfgIrpt: number; nsgCfgIrptFlags: number };
      contextIrqs: IortInterrupt[];
      pmuIrqs: IortInterrupt[];
    }
  | {
      kind: 'smmuv3';
      base: number;
      flags: number;
      vatosAddress: number;
      model: number;
      eventGsiv: number;
      priGsiv: number;
      gerrGsiv: number;
      syncGsiv: number;
      proximityDomain: number;
      deviceIdMappingIndex: number;
    }
  | { kind: 'pmcg'; page0Base: number; overflowGsiv: number; nodeReference: number; page1Base: number }
  | { kind: 'rmr'; flags: number; descriptors: IortRmrDescriptor[] }
  | { kind: 'iwb'; configFrameBase: number; iwbIndex: number; deviceName: string }
  | { kind: 'unknown' };

export type IortNode = IortNodeCommon & IortNodeData;

export interface IortTable {
  header: AcpiTableHeader;
  revision: number;
  nodes: IortNode[];
  /** Node by its offset. */
  byOffset: Map<number, IortNode>;
}

const KIND_NAMES: Record<number, string> = {
  0: 'ITS group',
  1: 'named component',
  2: 'root complex',
  3: 'SMMUv1/v2',
  4: 'SMMUv3',
  5: 'PMCG',
  6: 'RMR',
  7: 'IWB',
};

/** "SMMUv3 node at 0x48": how errors and reports name an IORT node. */
export function iortNodeName(type: number, offset: number): string {
  return `${KIND_NAMES[type] ?? `type ${type}`} node at 0x${offset.toString(16)}`;
}

function readMemoryAccess(r: AcpiReader, at: number, where: string): IortMemoryAccess {
  return {
    cacheCoherency: r.u32(at, 'Cache Coherency', where),
    hints: r.u8(at + 4, 'Hints', where),
    memoryFlags: r.u8(at + 7, 'Memory Flags', where),
  };
}

/** Parse an IORT blob. */
// kernel: acpi_iort_init() [iort.c]
export function parseIort(blob: Uint8Array): IortTable {
  const { header, r } = readAcpiHeader(blob, 'IORT', ACPI_HEADER_SIZE + 12);
  const revision = header.revision;
  const nodeCount = r.u32(36, 'Node Count');
  const nodeOffset = r.u32(40, 'Node Offset');
  if (nodeCount > 0 && (nodeOffset < ACPI_HEADER_SIZE + 12 || nodeOffset >= header.length)) {
    r.fail(`0x${nodeOffset.toString(16)} is outside the table body [0x30, 0x${header.length.toString(16)})`, 40, null, 'Node Offset');
  }
  // Each node takes at least 16 bytes, so a count the table cannot hold is rejected up front.
  if (nodeCount > Math.floor((header.length - Math.min(nodeOffset, header.length)) / IORT_NODE_HEADER_SIZE)) {
    r.fail(`${nodeCount} nodes of at least 16 bytes do not fit in the table`, 36, null, 'Node Count');
  }
  const nodes: IortNode[] = [];
  let off = nodeOffset;
  for (let i = 0; i < nodeCount; i++) {
    // Linux: "IORT node pointer overflows, bad table!"
    if (off + IORT_NODE_HEADER_SIZE > header.length) r.fail(`node ${i} of ${nodeCount} starts at 0x${off.toString(16)}, past the table end`, off, null, 'Node Count');
    const type = r.u8(off, 'Type', `node ${i} at 0x${off.toString(16)}`);
    const where = iortNodeName(type, off);
    const length = r.u16(off + 1, 'Length', where);
    if (length < IORT_NODE_HEADER_SIZE) r.fail(`${length} is shorter than the 16-byte node header`, off + 1, where, 'Length');
    if (off + length > header.length) r.fail(`node of ${length} bytes runs past the table end (0x${header.length.toString(16)})`, off + 1, where, 'Length');
    nodes.push(parseNode(new AcpiReader(blob, 'IORT', off + length), revision, off, type, length, where));
    off += length;
  }
  const byOffset = new Map(nodes.map((n) => [n.offset, n]));
  for (const n of nodes) {
    for (const m of n.mappings) {
      if (m.outputReference !== 0 && !byOffset.has(m.outputReference)) {
        r.fail(`0x${m.outputReference.toString(16)} is not the offset of any node (dangling reference)`, m.offset + 12, iortNodeName(n.type, n.offset), 'Output Reference');
      }
    }
    if (n.kind === 'pmcg' && n.nodeReference !== 0 && !byOffset.has(n.nodeReference)) {
      r.fail(`0x${n.nodeReference.toString(16)} is not the offset of any node (dangling reference)`, n.offset + 28, iortNodeName(n.type, n.offset), 'Node Reference');
    }
  }
  return { header, revision, nodes, byOffset };
}

function parseNode(r: AcpiReader, tableRev: number, off: number, type: number, length: number, where: string): IortNode {
  const revision = r.u8(off + 3, 'Revision', where);
  const identifier = tableRev >= IORT_REV_EB ? r.u32(off + 4, 'Identifier', where) : 0;
  const mappingCount = r.u32(off + 8, 'Mapping Count', where);
  const mappingOffset = r.u32(off + 12, 'Mapping Offset', where);
  const mappings: IortIdMapping[] = [];
  if (mappingCount > 0) {
    if (mappingOffset < IORT_NODE_HEADER_SIZE || mappingOffset > length) {
      r.fail(`0x${mappingOffset.toString(16)} is outside the node (length 0x${length.toString(16)})`, off + 12, where, 'Mapping Offset');
    }
    if (mappingCount > Math.floor((length - mappingOffset) / IORT_ID_MAPPING_SIZE)) {
      r.fail(`${mappingCount} mappings of 20 bytes at +0x${mappingOffset.toString(16)} run past the node's ${length} bytes`, off + 8, where, 'Mapping Count');
    }
    for (let i = 0; i < mappingCount; i++) {
      const at = off + mappingOffset + i * IORT_ID_MAPPING_SIZE;
      mappings.push({
        inputBase: r.u32(at, 'Input base', where),
        idCount: r.u32(at + 4, 'ID Count', where),
        outputBase: r.u32(at + 8, 'Output Base', where),
        outputReference: r.u32(at + 12, 'Output Reference', where),
        flags: r.u32(at + 16, 'Flags', where),
        offset: at,
      });
    }
  }
  const common = { offset: off, type, length, revision, identifier, mappings };
  const d = off;
  switch (type) {
    case ACPI_IORT_NODE_ITS_GROUP: {
      const count = r.u32(d + 16, 'ItsCount', where);
      if (count > Math.floor((length - 20) / 4)) r.fail(`${count} identifiers do not fit in the node's ${length} bytes`, d + 16, where, 'ItsCount');
      const itsIds: number[] = [];
      for (let i = 0; i < count; i++) itsIds.push(r.u32(d + 20 + 4 * i, 'Identifiers', where));
      return { ...common, kind: 'its', itsIds };
    }
    case ACPI_IORT_NODE_NAMED_COMPONENT: {
      const end = mappingCount > 0 ? Math.min(off + mappingOffset, off + length) : off + length;
      return {
        ...common,
        kind: 'nc',
        flags: r.u32(d + 16, 'Node Flags', where),
        memory: readMemoryAccess(r, d + 20, where),
        memoryAddressLimit: r.u8(d + 28, 'Memory Size Limit', where),
        deviceName: r.cstring(d + 29, end, 'Device Name', where),
      };
    }
    case ACPI_IORT_NODE_PCI_ROOT_COMPLEX:
      return {
        ...common,
        kind: 'rc',
        memory: readMemoryAccess(r, d + 16, where),
        atsAttribute: r.u32(d + 24, 'ATS Attribute', where),
        pciSegment: r.u32(d + 28, 'PCI Segment Number', where),
        // Present from node revision 1 (kernel: iort_dma_get_ranges() checks revision < 1).
        memoryAddressLimit: revision >= 1 ? r.u8(d + 32, 'Memory Size Limit', where) : 0,
        pasidCapabilities: revision >= 1 && length >= 35 ? r.u16(d + 33, 'PASID Capabilities', where) : 0,
      };
    case ACPI_IORT_NODE_SMMU: {
      const globalOff = r.u32(d + 40, 'Global Interrupt Offset', where);
      const ctxCount = r.u32(d + 44, 'Context Interrupt Count', where);
      const ctxOff = r.u32(d + 48, 'Context Interrupt Offset', where);
      const pmuCount = r.u32(d + 52, 'PMU Interrupt Count', where);
      const pmuOff = r.u32(d + 56, 'PMU Interrupt Offset', where);
      if (globalOff + 16 > length) r.fail(`0x${globalOff.toString(16)} + 16 is outside the node`, d + 40, where, 'Global Interrupt Offset');
      const irqArray = (count: number, at: number, field: string, countAt: number): IortInterrupt[] => {
        if (count === 0) return [];
        if (at > length || count > Math.floor((length - at) / 8)) r.fail(`${count} interrupts at +0x${at.toString(16)} run past the node's ${length} bytes`, countAt, where, field);
        const out: IortInterrupt[] = [];
        for (let i = 0; i < count; i++) out.push({ gsiv: r.u32(d + at + 8 * i, field, where), flags: r.u32(d + at + 8 * i + 4, field, where) });
        return out;
      };
      return {
        ...common,
        kind: 'smmu',
        base: r.u64(d + 16, 'Base Address', where),
        span: r.u64(d + 24, 'Span', where),
        model: r.u32(d + 32, 'Model', where),
        flags: r.u32(d + 36, 'Flags', where),
        globalIrqs: {
          nsgIrpt: r.u32(d + globalOff, 'NSgIrpt', where),
          nsgIrptFlags: r.u32(d + globalOff + 4, 'NSgIrpt Flags', where),
          nsgCfgIrpt: r.u32(d + globalOff + 8, 'NSgCfgIrpt', where),
          nsgCfgIrptFlags: r.u32(d + globalOff + 12, 'NSgCfgIrpt Flags', where),
        },
        contextIrqs: irqArray(ctxCount, ctxOff, 'Context Interrupt', d + 44),
        pmuIrqs: irqArray(pmuCount, pmuOff, 'PMU Interrupt', d + 52),
      };
    }
    case ACPI_IORT_NODE_SMMU_V3:
      return {
        ...common,
        kind: 'smmuv3',
        base: r.u64(d + 16, 'Base Address', where),
        flags: r.u32(d + 24, 'Flags', where),
        vatosAddress: r.u64(d + 32, 'VATOS Address', where),
        model: r.u32(d + 40, 'Model', where),
        eventGsiv: r.u32(d + 44, 'Event GSIV', where),
        priGsiv: r.u32(d + 48, 'PRI GSIV', where),
        gerrGsiv: r.u32(d + 52, 'GERR GSIV', where),
        syncGsiv: r.u32(d + 56, 'Sync GSIV', where),
        // Node revision 0 ends before these (DEN0049 issue C).
        proximityDomain: length >= 64 ? r.u32(d + 60, 'Proximity Domain', where) : 0,
        deviceIdMappingIndex: length >= 68 ? r.u32(d + 64, 'Device ID Mapping Index', where) : 0,
      };
    case ACPI_IORT_NODE_PMCG:
      return {
        ...common,
        kind: 'pmcg',
        page0Base: r.u64(d + 16, 'Page 0 Base Address', where),
        overflowGsiv: r.u32(d + 24, 'Overflow Interrupt GSIV', where),
        nodeReference: r.u32(d + 28, 'Node Reference', where),
        // Linux reads it only if node revision > 0 ("DEN0049C lacked a way to describe page 1").
        page1Base: revision > 0 ? r.u64(d + 32, 'Page 1 Base Address', where) : 0,
      };
    case ACPI_IORT_NODE_RMR: {
      const flags = r.u32(d + 16, 'Flags', where);
      const count = r.u32(d + 20, 'Number of RMR Descriptors', where);
      const descOff = r.u32(d + 24, 'RMR Descriptor Offset', where);
      if (count > 0 && (descOff < 28 || descOff > length || count > Math.floor((length - descOff) / IORT_RMR_DESC_SIZE))) {
        r.fail(`${count} descriptors at +0x${descOff.toString(16)} run past the node's ${length} bytes`, d + 24, where, 'RMR Descriptor Offset');
      }
      const descriptors: IortRmrDescriptor[] = [];
      for (let i = 0; i < count; i++) {
        const at = d + descOff + i * IORT_RMR_DESC_SIZE;
        descriptors.push({ base: r.u64(at, 'Base Address of RMR', where), length: r.u64(at + 8, 'Length of RMR', where) });
      }
      return { ...common, kind: 'rmr', flags, descriptors };
    }
    case ACPI_IORT_NODE_IWB:
      if (tableRev < IORT_REV_EF) return { ...common, kind: 'unknown' };
      return {
        ...common,
        kind: 'iwb',
        configFrameBase: r.u64(d + 16, 'Config Frame base', where),
        iwbIndex: r.u16(d + 24, 'IWB Index', where),
        deviceName: r.cstring(d + 26, mappingCount > 0 ? Math.min(off + mappingOffset, off + length) : off + length, 'IWB Device Name', where),
      };
    default:
      return { ...common, kind: 'unknown' };
  }
}

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

/** An ID mapping to write: the target is given by its index in the node list. */
export interface IortMappingSpec {
  inputBase: number;
  /** Number of IDs (written as count - 1). */
  count: number;
  outputBase: number;
  /** Index of the target node in the spec list. */
  output: number;
  single?: boolean;
}

/** A node to write: the data of IortNodeData, without offsets or lengths. */
export type IortNodeSpec = IortNodeData & {
  /** Node revision (default: what QEMU / the ACPICA template use for the table revision). */
  revision?: number;
  /** Identifier (written for table revision >= 3; default: the node's index). */
  identifier?: number;
  mappings?: IortMappingSpec[];
};

/** Memory access properties of a fully coherent device (CCA 1, the attribute flags valid). */
export const IORT_COHERENT_MEMORY: IortMemoryAccess = Object.freeze({ cacheCoherency: ACPI_IORT_NODE_COHERENT, hints: 0, memoryFlags: ACPI_IORT_MF_COHERENCY | ACPI_IORT_MF_ATTRIBUTES });

/**
 * A coherent named component for the DSDT device `path` whose one StreamID `sid` goes to IORT node
 * `output` (a single mapping), with stall and PASID bits.
 */
export function iortNamedComponentSpec(path: string, output: number, sid: number, opts: { stall?: boolean; pasidBits?: number } = {}): IortNodeSpec {
  return {
    kind: 'nc',
    flags: (opts.stall ? ACPI_IORT_NC_STALL_SUPPORTED : 0) | ((opts.pasidBits ?? 0) << ACPI_IORT_NC_PASID_BITS_SHIFT),
    memory: IORT_COHERENT_MEMORY,
    memoryAddressLimit: 48,
    deviceName: path,
    mappings: [{ inputBase: 0, count: 1, outputBase: sid, output, single: true }],
  };
}

/** A coherent, ATS-capable root complex of `segment` whose RIDs 0-0xffff are StreamIDs 0-0xffff of node `output`. */
export function iortRootComplexSpec(segment: number, output: number): IortNodeSpec {
  return {
    kind: 'rc',
    memory: IORT_COHERENT_MEMORY,
    atsAttribute: ACPI_IORT_ATS_SUPPORTED,
    pciSegment: segment,
    memoryAddressLimit: 64,
    pasidCapabilities: 0,
    mappings: [{ inputBase: 0, count: 0x1_0000, outputBase: 0, output }],
  };
}

export interface IortSpec extends AcpiOemInfo {
  /** Table revision (default 5, E.d). */
  revision?: number;
  nodes: IortNodeSpec[];
}

function defaultNodeRevision(kind: IortNodeData['kind'], tableRev: number): number {
  if (tableRev < IORT_REV_EB) {
    return { its: 0, nc: 2, rc: 1, smmu: 1, smmuv3: 2, pmcg: 1, rmr: 0, iwb: 0, unknown: 0 }[kind];
  }
  const rc = tableRev >= IORT_REV_ED ? 4 : 3;
  return { its: 1, nc: 4, rc, smmu: 3, smmuv3: tableRev >= IORT_REV_EE ? 5 : 4, pmcg: 2, rmr: tableRev >= IORT_REV_ED ? 3 : 1, iwb: 1, unknown: 0 }[kind];
}

function align4(n: number): number {
  return Math.ceil(n / 4) * 4;
}

/** Size of the node data before its ID mappings, and where its arrays go. */
function nodeDataSize(n: IortNodeSpec, nodeRev: number): number {
  switch (n.kind) {
    case 'its':
      return 20 + 4 * n.itsIds.length;
    case 'nc':
      // At least one byte of padding after the name: ACPICA's disassembler (2020) stops at a
      // zero-length "Padding" field.
      return align4(29 + n.deviceName.length + 2);
    case 'rc':
      return 36;
    case 'smmu':
      return 76 + 8 * (n.contextIrqs.length + n.pmuIrqs.length);
    case 'smmuv3':
      return 68;
    case 'pmcg':
      return nodeRev > 0 ? 40 : 32;
    case 'rmr':
      return 28 + IORT_RMR_DESC_SIZE * n.descriptors.length;
    case 'iwb':
      return align4(26 + n.deviceName.length + 1);
    case 'unknown':
      return 16;
  }
}

const TYPE_OF: Record<IortNodeData['kind'], number> = { its: 0, nc: 1, rc: 2, smmu: 3, smmuv3: 4, pmcg: 5, rmr: 6, iwb: 7, unknown: 0xff };

/** Write an IORT. Nodes are laid out in order from offset 48; references are resolved in a second pass. */
export function writeIort(spec: IortSpec): Uint8Array {
  const tableRev = spec.revision ?? IORT_REV_ED;
  const w = acpiTableWriter();
  const layout: { off: number; rev: number; data: number; len: number }[] = [];
  let off = 48;
  for (const n of spec.nodes) {
    if (n.kind === 'unknown') throw new FirmwareError('IORT', 'cannot write a node of unknown type', null, null);
    if (n.kind === 'iwb' && tableRev < IORT_REV_EF) throw new FirmwareError('IORT', `IWB nodes need table revision ${IORT_REV_EF}, not ${tableRev}`, null, null);
    const rev = n.revision ?? defaultNodeRevision(n.kind, tableRev);
    const data = nodeDataSize(n, rev);
    const len = data + IORT_ID_MAPPING_SIZE * (n.mappings?.length ?? 0);
    if (len > 0xffff) throw new FirmwareError('IORT', `node of ${len} bytes exceeds the 16-bit Length`, null, null);
    layout.push({ off, rev, data, len });
    off += len;
  }
  w.u32(spec.nodes.length, 36);
  w.u32(spec.nodes.length > 0 ? 48 : 0, 40);
  w.u32(0, 44);
  spec.nodes.forEach((n, i) => {
    const { off: o, rev, data, len } = layout[i];
    const maps = n.mappings ?? [];
    w.u8(TYPE_OF[n.kind], o);
    w.u16(len, o + 1);
    w.u8(rev, o + 3);
    w.u32(tableRev >= IORT_REV_EB ? (n.identifier ?? i) : 0, o + 4);
    w.u32(maps.length, o + 8);
    w.u32(maps.length > 0 ? data : 0, o + 12);
    const mem = (m: IortMemoryAccess, at: number): void => {
      w.u32(m.cacheCoherency, at);
      w.u8(m.hints, at + 4);
      w.u16(0, at + 5);
      w.u8(m.memoryFlags, at + 7);
    };
    switch (n.kind) {
      case 'its':
        w.u32(n.itsIds.length, o + 16);
        n.itsIds.forEach((id, k) => w.u32(id, o + 20 + 4 * k));
        break;
      case 'nc':
        w.u32(n.flags, o + 16);
        mem(n.memory, o + 20);
        w.u8(n.memoryAddressLimit, o + 28);
        w.chars(n.deviceName, data - 29, o + 29);
        break;
      case 'rc':
        mem(n.memory, o + 16);
        w.u32(n.atsAttribute, o + 24);
        w.u32(n.pciSegment, o + 28);
        w.u8(n.memoryAddressLimit, o + 32);
        w.u16(n.pasidCapabilities, o + 33);
        w.u8(0, o + 35);
        break;
      case 'smmu': {
        w.u64(n.base, o + 16);
        w.u64(n.span, o + 24);
        w.u32(n.model, o + 32);
        w.u32(n.flags, o + 36);
        w.u32(60, o + 40);
        w.u32(n.contextIrqs.length, o + 44);
        // The array offsets are written even for empty arrays, as iasl computes them.
        w.u32(76, o + 48);
        w.u32(n.pmuIrqs.length, o + 52);
        w.u32(76 + 8 * n.contextIrqs.length, o + 56);
        w.u32(n.globalIrqs.nsgIrpt, o + 60);
        w.u32(n.globalIrqs.nsgIrptFlags, o + 64);
        w.u32(n.globalIrqs.nsgCfgIrpt, o + 68);
        w.u32(n.globalIrqs.nsgCfgIrptFlags, o + 72);
        [...n.contextIrqs, ...n.pmuIrqs].forEach((irq, k) => {
          w.u32(irq.gsiv, o + 76 + 8 * k);
          w.u32(irq.flags, o + 80 + 8 * k);
        });
        break;
      }
      case 'smmuv3':
        w.u64(n.base, o + 16);
        w.u32(n.flags, o + 24);
        w.u32(0, o + 28);
        w.u64(n.vatosAddress, o + 32);
        w.u32(n.model, o + 40);
        w.u32(n.eventGsiv, o + 44);
        w.u32(n.priGsiv, o + 48);
        w.u32(n.gerrGsiv, o + 52);
        w.u32(n.syncGsiv, o + 56);
        w.u32(n.proximityDomain, o + 60);
        w.u32(n.deviceIdMappingIndex, o + 64);
        break;
      case 'pmcg':
        w.u64(n.page0Base, o + 16);
        w.u32(n.overflowGsiv, o + 24);
        w.u32(n.nodeReference, o + 28);
        if (rev > 0) w.u64(n.page1Base, o + 32);
        break;
      case 'rmr':
        w.u32(n.flags, o + 16);
        w.u32(n.descriptors.length, o + 20);
        w.u32(28, o + 24);
        n.descriptors.forEach((desc, k) => {
          w.u64(desc.base, o + 28 + IORT_RMR_DESC_SIZE * k);
          w.u64(desc.length, o + 36 + IORT_RMR_DESC_SIZE * k);
          w.u32(0, o + 44 + IORT_RMR_DESC_SIZE * k);
        });
        break;
      case 'iwb':
        w.u64(n.configFrameBase, o + 16);
        w.u16(n.iwbIndex, o + 24);
        w.chars(n.deviceName, data - 26, o + 26);
        break;
    }
    maps.forEach((m, k) => {
      const at = o + data + IORT_ID_MAPPING_SIZE * k;
      const target = layout[m.output];
      if (!target) throw new FirmwareError('IORT', `mapping ${k} of node ${i} names node ${m.output}, which does not exist`, null, null);
      if (m.count < 1) throw new FirmwareError('IORT', `mapping ${k} of node ${i} covers ${m.count} IDs`, null, null);
      w.u32(m.inputBase, at);
      w.u32(m.count - 1, at + 4);
      w.u32(m.outputBase, at + 8);
      w.u32(target.off, at + 12);
      w.u32(m.single ? ACPI_IORT_ID_SINGLE_MAPPING : 0, at + 16);
    });
  });
  w.reserve(off);
  return finishAcpiTable(w, 'IORT', tableRev, spec);
}

/** Offsets the writer gives the nodes of `spec` (for tests and for tables that name nodes). */
export function iortLayout(spec: IortSpec): number[] {
  const tableRev = spec.revision ?? IORT_REV_ED;
  const out: number[] = [];
  let off = 48;
  for (const n of spec.nodes) {
    out.push(off);
    off += nodeDataSize(n, n.revision ?? defaultNodeRevision(n.kind, tableRev)) + IORT_ID_MAPPING_SIZE * (n.mappings?.length ?? 0);
  }
  return out;
}
