/**
 * The IOMMU group and domain a master ended up with, for reports, read from the iommu core (any
 * IOMMU driver). Null until an IOMMU driver has probed the device into the core.
 */
import type { Device } from '../../bus/device.js';
import type { DtNode } from '../../bus/of/tree.js';
import { devIommu } from '../../core/iommu-device.js';
import {
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_DMA_FQ,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_DOMAIN_NESTED,
  IOMMU_DOMAIN_SVA,
  IOMMU_DOMAIN_UNMANAGED,
} from '../../core/iommu-domain.js';
import type { Kernel } from '../../kernel/kernel.js';

export interface IommuAttachment {
  group: number | null;
  /** The type of the domain the group is attached to now: DMA, DMA-FQ, IDENTITY, BLOCKED, UNMANAGED (…). */
  domain: string | null;
}

/** The report's name of a domain type. */
export function domainTypeName(type: number): string {
  switch (type) {
    case IOMMU_DOMAIN_DMA:
      return 'DMA';
    case IOMMU_DOMAIN_DMA_FQ:
      return 'DMA-FQ';
    case IOMMU_DOMAIN_IDENTITY:
      return 'IDENTITY';
    case IOMMU_DOMAIN_BLOCKED:
      return 'BLOCKED';
    case IOMMU_DOMAIN_UNMANAGED:
      return 'UNMANAGED';
    case IOMMU_DOMAIN_SVA:
      return 'SVA';
    case IOMMU_DOMAIN_NESTED:
      return 'NESTED';
    default:
      return `type ${type}`;
  }
}

/** The group and current domain of a device. */
export function describeDeviceAttachment(dev: Device | null | undefined): IommuAttachment {
  const group = dev ? devIommu(dev)?.group : null;
  if (!group) return { group: null, domain: null };
  return { group: group.id, domain: group.domain ? domainTypeName(group.domain.type) : null };
}

export function describeIommuAttachment(kernel: Kernel, node: DtNode): IommuAttachment {
  return describeDeviceAttachment(kernel.core.findDeviceByOfNode(node) ?? null);
}
