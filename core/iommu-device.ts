/**
 * The two per-device records of the iommu core:
 * - `IommuDevice` (kernel: struct iommu_device): one registered IOMMU instance, created by its driver;
 * - `DevIommu` (kernel: struct dev_iommu plus dev->iommu_group): what the core keeps for a device
 *   behind an IOMMU, in the `Device.iommu` slot the device model reserves for the core.
 */
import type { AcpiFwnode, Device } from '../bus/device.js';
import { KernelError } from '../bus/errno.js';
import type { IommuFwspec } from '../bus/iommu-fwspec.js';
import type { DtNode } from '../bus/of/tree.js';
import type { IommuFaultParam } from './iommu-fault-types.js';
import type { IommuGroup } from './iommu-group.js';
import type { IommuCap, IommuOps } from './iommu-ops.js';
import type { IommuSubsystem } from './iommu.js';

export interface IommuDeviceInit {
  /** The IOMMU's own device (its platform device). */
  dev: Device;
  /** PASIDs the IOMMU can tell apart (SMMUv3: 1 << SSIDSIZE); 0 without PASID support. */
  maxPasids?: number;
}

/** One IOMMU instance (kernel: struct iommu_device). */
export class IommuDevice {
  readonly dev: Device;
  readonly maxPasids: number;
  /** Set by iommuDeviceRegister. */
  ops: IommuOps | null = null;
  /** The firmware node masters name it by (kernel: iommu_device.fwnode). */
  fwnode: DtNode | AcpiFwnode | null = null;
  /** Registered and its existing masters probed (kernel: iommu_device.ready). */
  ready = false;
  /** The group genericSingleDeviceGroup hands every device of this IOMMU. */
  singletonGroup: IommuGroup | null = null;

  constructor(init: IommuDeviceInit) {
    const maxPasids = init.maxPasids ?? 0;
    if (!Number.isSafeInteger(maxPasids) || maxPasids < 0) {
      throw new KernelError('EINVAL', `IOMMU ${init.dev.name}: max_pasids ${maxPasids} is not a non-negative integer`);
    }
    this.dev = init.dev;
    this.maxPasids = maxPasids;
  }

  get name(): string {
    return this.dev.name;
  }

  /** A short description for logs and test output. */
  toJSON(): Record<string, unknown> {
    return { iommu: this.name, driver: this.ops?.name ?? null, ready: this.ready };
  }
}

/** What the core keeps for a device behind an IOMMU (kernel: struct dev_iommu). */
export class DevIommu {
  constructor(
    /** The iommu core of the device's kernel. */
    readonly subsystem: IommuSubsystem,
  ) {}

  /** The IOMMU serving the device, once probed (kernel: dev_iommu.iommu_dev). */
  iommuDev: IommuDevice | null = null;
  /** The device's group (kernel: dev->iommu_group). */
  group: IommuGroup | null = null;
  /** Driver-private per-device data (kernel: dev_iommu_priv_get/set()). */
  priv: unknown = null;
  /** The driver has translated the fwspec (ofXlate ran). */
  fwspecTranslated = false;
  /** min(device PASIDs, IOMMU PASIDs); 0 without PASID support. */
  maxPasids = 0;
  /** The first attach waits for the device driver's first DMA API use. */
  attachDeferred = false;
  /** Firmware asked for a 1:1 mapping (IOMMU_RESV_DIRECT): the blocking domain is refused. */
  requireDirect = false;
  /** PCI: try 32-bit IOVAs first. */
  pci32bitWorkaround = false;
  /** The DMA API goes through the default domain's IOVA allocator (kernel: dev->dma_iommu). */
  dmaIommu = false;
  /** The fault reporting state io-pgfault fills (kernel: dev_iommu.fault_param). */
  faultParam: IommuFaultParam | null = null;

  /** A short description for logs and test output. */
  toJSON(): Record<string, unknown> {
    return { iommu: this.iommuDev?.name ?? null, group: this.group?.id ?? null, maxPasids: this.maxPasids, dmaIommu: this.dmaIommu };
  }
}

/** The core's record of `dev`, or null if it has none. */
export function devIommu(dev: Device): DevIommu | null {
  return dev.iommu instanceof DevIommu ? dev.iommu : null;
}

/** The record of `dev`, created when missing (kernel: dev_iommu_get()). */
export function devIommuGet(dev: Device, subsystem: IommuSubsystem): DevIommu {
  const existing = devIommu(dev);
  if (existing) return existing;
  if (dev.iommu !== null) throw new KernelError('EINVAL', `${dev.name}: the iommu slot holds something that is not the core's`);
  const param = new DevIommu(subsystem);
  dev.iommu = param;
  return param;
}

// kernel: dev_iommu_free() [iommu.c]
export function devIommuFree(dev: Device): void {
  dev.iommu = null;
}

/** True if `dev` is served by a registered IOMMU (kernel: dev_has_iommu()). */
export function hasIommu(dev: Device): boolean {
  return devIommu(dev)?.iommuDev != null;
}

/** The ops of the IOMMU serving `dev` (kernel: dev_iommu_ops()); ENODEV if none. */
export function devIommuOps(dev: Device): IommuOps {
  const ops = devIommu(dev)?.iommuDev?.ops;
  if (!ops) throw new KernelError('ENODEV', `${dev.name} is not behind a registered IOMMU`);
  return ops;
}

// kernel: dev_iommu_priv_get() [iommu.h]
export function devIommuPrivGet<T>(dev: Device): T {
  const param = devIommu(dev);
  if (!param) throw new KernelError('ENODEV', `${dev.name} has no IOMMU data`);
  return param.priv as T;
}

/** Only while the device is being probed or is probed. */
// kernel: dev_iommu_priv_set() [iommu.c]
export function devIommuPrivSet(dev: Device, priv: unknown): void {
  const param = devIommu(dev);
  if (!param) throw new KernelError('ENODEV', `${dev.name} has no IOMMU data to hold driver data`);
  param.priv = priv;
}

// kernel: dev_iommu_fwspec_get() [iommu.h]
export function devIommuFwspecGet(dev: Device): IommuFwspec | null {
  return dev.fwspec;
}

/** True if `dev` sits behind an IOMMU with capability `cap`. */
// kernel: device_iommu_capable() [iommu.c]
export function deviceIommuCapable(dev: Device, cap: IommuCap): boolean {
  if (!hasIommu(dev)) return false;
  const ops = devIommuOps(dev);
  return ops.capable ? ops.capable(dev, cap) : false;
}
