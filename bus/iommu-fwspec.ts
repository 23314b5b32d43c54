/**
 * What firmware says about a device's place behind an IOMMU: which IOMMU, the raw specifiers
 * naming the device to it, and the DMA properties the IOMMU driver needs. Built by of_iommu
 * (Device Tree) at device configuration time and handed to the IOMMU driver's ofXlate, which
 * may rewrite `ids` (arm-smmu folds an SMR mask into them, for example).
 */
import type { DtNode } from './of/tree.js';

export interface IommuFwspec {
  /** The IOMMU's firmware node. */
  iommuNode: DtNode;
  /** Raw specifier cells after the phandle, one array per `iommus` entry or mapped PCI alias. */
  specifiers: number[][];
  /** Default: first cell of each specifier (none for a 0-cell specifier); ofXlate may rewrite. */
  ids: number[];
  /** `dma-can-stall`: the master tolerates stalled transactions. */
  canStall: boolean;
  /** `pasid-num-bits`: width of the master's substream IDs (0: no PASID). */
  pasidBits: number;
  /** DMA is cache-coherent (`dma-coherent` on the node or an ancestor). */
  dmaCoherent: boolean;
  /** The PCI host bridge says its root complex supports ATS (`ats-supported`). */
  atsSupported: boolean;
}

/** A fwspec for a device behind `iommuNode`, with no IDs yet. */
// kernel: iommu_fwspec_init() [iommu.c]
export function iommuFwspecInit(
  iommuNode: DtNode,
  props: Pick<IommuFwspec, 'canStall' | 'pasidBits' | 'dmaCoherent' | 'atsSupported'>,
): IommuFwspec {
  return { iommuNode, specifiers: [], ids: [], ...props };
}

/** Record one firmware specifier; its first cell becomes the default ID. */
// kernel: iommu_fwspec_add_ids() [iommu.c]
export function iommuFwspecAddSpecifier(fwspec: IommuFwspec, specifier: readonly number[]): void {
  fwspec.specifiers.push([...specifier]);
  if (specifier.length > 0) fwspec.ids.push(specifier[0]);
}
