/**
 * The drivers built into a kernel. A kernel can be built without the IOMMU drivers (the kexec
 * discussion's "IOMMU-unaware" target), or with an explicit list for a focused experiment.
 */
import type { Driver } from '../bus/driver.js';
import { pciHostGenericDriver } from '../bus/pci/host-generic.js';
import type { Kernel } from './kernel.js';

export type DriverSelection = 'all' | 'iommu-unaware' | readonly Driver[];

/** IOMMU drivers, in registration order. */
function iommuDrivers(_kernel: Kernel): Driver[] {
  return [];
}

/** Drivers every kernel has: bus infrastructure and device drivers. */
function baseDrivers(_kernel: Kernel): Driver[] {
  return [pciHostGenericDriver];
}

export function builtinDrivers(selection: DriverSelection, kernel: Kernel): Driver[] {
  if (selection === 'all') return [...iommuDrivers(kernel), ...baseDrivers(kernel)];
  if (selection === 'iommu-unaware') return baseDrivers(kernel);
  return [...selection];
}
