/**
 * The IOMMU group and domain a master ended up with, for reports. Null until an IOMMU driver has
 * probed the device into the iommu core.
 */
import type { DtNode } from '../../bus/of/tree.js';
import type { Kernel } from '../../kernel/kernel.js';

export interface IommuAttachment {
  group: number | null;
  domain: string | null;
}

export function describeIommuAttachment(kernel: Kernel, node: DtNode): IommuAttachment {
  const dev = kernel.core.findDeviceByOfNode(node);
  if (!dev || dev.iommu === null) return { group: null, domain: null };
  return { group: null, domain: null };
}
