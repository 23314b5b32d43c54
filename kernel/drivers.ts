/**
 * The drivers built into a kernel. A kernel can be built without the IOMMU drivers (the kexec
 * discussion's "IOMMU-unaware" target), or with an explicit list for a focused experiment.
 */
import type { Driver } from '../bus/driver.js';
import { pciHostGenericDriver } from '../bus/pci/host-generic.js';
import { createArmSmmuDriver } from '../drivers/arm-smmu/arm-smmu.js';
import { createArmSmmuV3Driver } from '../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { createDmaTestEngineDriver } from '../drivers/misc/dma-test-engine.js';
import type { Kernel } from './kernel.js';

export type DriverSelection = 'all' | 'iommu-unaware' | readonly Driver[];

/** IOMMU drivers, in registration order. */
function iommuDrivers(kernel: Kernel, opts: DriverBuildOptions): Driver[] {
  return [
    createArmSmmuDriver(kernel.params),
    createArmSmmuV3Driver({
      pageAllocator: () => kernel.alloc,
      disableBypass: kernel.params['arm-smmu-v3.disable_bypass'],
      shutdownPolicy: kernel.params['arm-smmu-v3.shutdown_policy'],
      kdump: kernel.isKdump,
      disableCmdqv: kernel.params['arm-smmu-v3.disable_cmdqv'],
      bypassVcmdq: kernel.params['arm-smmu-v3.bypass_vcmdq'],
      ...(opts.cmaAlignment !== undefined ? { cmaAlignment: opts.cmaAlignment } : {}),
    }),
  ];
}

export interface DriverBuildOptions {
  /**
   * Build the DMA test engine driver with its `.shutdown` (default). Without it, engines keep running
   * across shutdown and kexec: "a driver that forgot .shutdown".
   */
  testEngineShutdown?: boolean;
  /**
   * CONFIG_CMA_ALIGNMENT of this kernel build (default 8; null: built without the contiguous
   * allocator). It caps the SMMUv3 queue sizes (Q_MAX_SZ_SHIFT).
   */
  cmaAlignment?: number | null;
}

/** Drivers every kernel has: bus infrastructure and device drivers. */
function baseDrivers(kernel: Kernel, opts: DriverBuildOptions): Driver[] {
  return [
    pciHostGenericDriver,
    createDmaTestEngineDriver({ shutdown: opts.testEngineShutdown ?? true, resetOnProbe: kernel.params['dma-test-engine.reset_on_probe'] }),
  ];
}

export function builtinDrivers(selection: DriverSelection, kernel: Kernel, opts: DriverBuildOptions = {}): Driver[] {
  if (selection === 'all') return [...iommuDrivers(kernel, opts), ...baseDrivers(kernel, opts)];
  if (selection === 'iommu-unaware') return baseDrivers(kernel, opts);
  return [...selection];
}
