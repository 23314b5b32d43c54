/**
 * of_iommu: which IOMMU a device sits behind, from the Device Tree. Platform devices name it
 * with `iommus` (phandle + `#iommu-cells` cells per entry); PCI devices are found through their
 * host bridge's `iommu-map` / `iommu-map-mask` keyed by requester ID. The result is one
 * IommuFwspec per device, or null when the device has no (usable) IOMMU.
 *
 * As in Linux: an entry naming a disabled IOMMU leaves the device without an IOMMU (null, not
 * an error), and all entries must name the same IOMMU (else FirmwareError). Dangling phandles,
 * missing `#iommu-cells` and wrong cell counts are FirmwareErrors naming the node.
 */
import { FirmwareError } from '../firmware-error.js';
import { type IommuFwspec, iommuFwspecAddSpecifier, iommuFwspecInit } from '../iommu-fwspec.js';
import { ofDmaIsCoherent } from './address.js';
import { ofIdMapEntries, ofMapId } from './irq.js';
import type { DeviceTree, DtNode } from './tree.js';

/** One `iommus` entry. */
export interface OfIommuSpec {
  iommu: DtNode;
  /** The raw cells after the phandle. */
  cells: number[];
}

/** One `iommu-map` entry of a PCI host bridge. */
export interface OfIommuMapEntry {
  ridBase: number;
  iommu: DtNode;
  /** The output specifier for ridBase (#iommu-cells cells). */
  outBase: number[];
  /** outBase[0]: the stream ID ridBase maps to (null for a 0-cell specifier). */
  sidBase: number | null;
  length: number;
}

/** Widest substream ID the binding allows for `pasid-num-bits`. */
const MAX_PASID_BITS = 20;

function fail(reason: string, node: DtNode, prop: string): never {
  throw new FirmwareError('dtb', reason, node.propOffset(prop), node.path);
}

/** The raw `iommus` entries of `node`, whatever the IOMMUs' status. Absent → []. */
export function ofIommuSpecs(tree: DeviceTree, node: DtNode): OfIommuSpec[] {
  const out: OfIommuSpec[] = [];
  for (const e of tree.phandleArgs(node, 'iommus', '#iommu-cells')) {
    if (e === null) break; // an empty entry ends the list, as it ends the kernel's walk
    out.push({ iommu: e.node, cells: e.args });
  }
  return out;
}

/** The decoded `iommu-map` of a PCI host bridge. Absent → []. */
export function ofIommuMapEntries(tree: DeviceTree, host: DtNode): OfIommuMapEntry[] {
  return (ofIdMapEntries(tree, host, 'iommu-map') ?? []).map((e) => ({
    ridBase: e.idBase,
    iommu: e.target,
    outBase: e.outBase,
    sidBase: e.outBase[0] ?? null,
    length: e.length,
  }));
}

function masterProps(node: DtNode): { canStall: boolean; pasidBits: number } {
  const pasidBits = node.u32('pasid-num-bits') ?? 0;
  if (pasidBits > MAX_PASID_BITS) fail(`"pasid-num-bits" is ${pasidBits}, more than ${MAX_PASID_BITS}`, node, 'pasid-num-bits');
  return { canStall: node.has('dma-can-stall'), pasidBits };
}

/**
 * The fwspec of a platform device from its `iommus`. Null when it has none, when any entry
 * names a disabled IOMMU, or when the list is empty.
 */
// (platform device: of_iommu_configure_dev() + of_iommu_xlate())
// kernel: of_iommu_configure() [of_iommu.c]
export function ofIommuConfigure(tree: DeviceTree, node: DtNode): IommuFwspec | null {
  if (!node.has('iommus')) return null;
  const specs = ofIommuSpecs(tree, node);
  let fwspec: IommuFwspec | null = null;
  for (const { iommu, cells } of specs) {
    if (!iommu.available) return null;
    if (fwspec === null) {
      fwspec = iommuFwspecInit(iommu, { ...masterProps(node), dmaCoherent: ofDmaIsCoherent(node), atsSupported: false });
    } else if (fwspec.iommuNode !== iommu) {
      fail(`"iommus" names both ${fwspec.iommuNode.path} and ${iommu.path}; a device may sit behind one IOMMU only`, node, 'iommus');
    }
    iommuFwspecAddSpecifier(fwspec, cells);
  }
  return fwspec;
}

/**
 * The fwspec of the PCI device with requester ID `rid` (or every DMA alias of it) below host
 * bridge `host`, through the host's `iommu-map`. Null when there is no map, an ID is not
 * mapped, or the IOMMU it maps to is disabled.
 */
// (kernel: of_iommu_configure() (PCI device: of_pci_iommu_init() per DMA alias, of_pci_check_device_ats()))
export function ofPciIommuConfigure(tree: DeviceTree, host: DtNode, rid: number | readonly number[]): IommuFwspec | null {
  const rids = typeof rid === 'number' ? [rid] : rid;
  let fwspec: IommuFwspec | null = null;
  for (const r of rids) {
    const m = ofMapId(tree, host, r, 'iommu-map', 'iommu-map-mask');
    if (m === null || !m.target.available) return null;
    if (fwspec === null) {
      fwspec = iommuFwspecInit(m.target, {
        canStall: false,
        pasidBits: 0,
        dmaCoherent: ofDmaIsCoherent(host),
        atsSupported: host.has('ats-supported'),
      });
    } else if (fwspec.iommuNode !== m.target) {
      fail(`requester IDs of one device map to both ${fwspec.iommuNode.path} and ${m.target.path}`, host, 'iommu-map');
    }
    iommuFwspecAddSpecifier(fwspec, m.args);
  }
  return fwspec;
}
