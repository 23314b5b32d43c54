/**
 * Reserved IOVA regions (kernel: iommu_get_resv_regions(), iommu_get_group_resv_regions(),
 * iommu_insert_resv_region()): ranges a device's IOMMU driver says must not be handed out by the
 * DMA API (MSI doorbells, RESERVED holes) or must be identity-mapped (DIRECT, what firmware left a
 * device using).
 */
import type { Device } from '../bus/device.js';
import { devIommuOps, hasIommu } from './iommu-device.js';
import type { IommuGroup } from './iommu-group.js';
import type { IommuResvRegion, IommuResvType } from './iommu-ops.js';

const TYPE_ORDER: Record<IommuResvType, number> = { DIRECT: 0, DIRECT_RELAXABLE: 1, RESERVED: 2, MSI: 3, SW_MSI: 4 };

/** The regions of one device (a fresh list). */
// kernel: iommu_get_resv_regions() [iommu.c]
export function iommuGetResvRegions(dev: Device): IommuResvRegion[] {
  const ops = devIommuOps(dev);
  return ops.getResvRegions ? ops.getResvRegions(dev).map((r) => ({ ...r })) : [];
}

/**
 * Insert a copy of `region` into `list`, sorted by start address (then type), merging it with
 * overlapping or adjacent regions of the same type.
 */
// kernel: iommu_insert_resv_region() [iommu.c]
export function iommuInsertResvRegion(region: IommuResvRegion, list: IommuResvRegion[]): void {
  let at = 0;
  while (at < list.length) {
    const it = list[at];
    if (region.start < it.start || (region.start === it.start && TYPE_ORDER[region.type] <= TYPE_ORDER[it.type])) break;
    at++;
  }
  list.splice(at, 0, { ...region });
  const out: IommuResvRegion[] = [];
  for (const it of list) {
    if (it.type !== region.type) {
      out.push(it);
      continue;
    }
    let top: IommuResvRegion | undefined;
    for (let i = out.length - 1; i >= 0; i--) {
      if (out[i].type === it.type) {
        top = out[i];
        break;
      }
    }
    const topEnd = top ? top.start + top.length - 1 : -1;
    if (!top || it.start > topEnd + 1) {
      out.push(it);
    } else {
      top.length = Math.max(topEnd, it.start + it.length - 1) - top.start + 1;
    }
  }
  list.length = 0;
  list.push(...out);
}

/** The merged regions of every device of the group. */
// kernel: iommu_get_group_resv_regions() [iommu.c]
export function iommuGetGroupResvRegions(group: IommuGroup): IommuResvRegion[] {
  const list: IommuResvRegion[] = [];
  for (const dev of group.devices) {
    if (!hasIommu(dev)) break;
    for (const r of iommuGetResvRegions(dev)) iommuInsertResvRegion(r, list);
  }
  return list;
}
