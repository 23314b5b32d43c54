/**
 * PCI drivers (kernel: struct pci_driver, struct pci_device_id, pci_match_id()). A PCI driver claims
 * functions by vendor/device ID or by class code under a mask.
 */
import type { Driver } from '../driver.js';
import type { PciDevice } from './pci-device.js';

/** The kernel's PCI_ANY_ID */
export const PCI_ANY_ID = -1;

/** The kernel's struct pci_device_id */
export interface PciDeviceId {
  /** Vendor ID, or PCI_ANY_ID (default). */
  vendor?: number;
  /** Device ID, or PCI_ANY_ID (default). */
  device?: number;
  /** 24-bit class code compared under `classMask` (default mask 0: any class). */
  class?: number;
  classMask?: number;
}

/** A PCI driver: `bus` is `pciBus`; probe/remove/shutdown receive the PciDevice. */
export interface PciDriver extends Driver<PciDevice> {
  readonly idTable: readonly PciDeviceId[];
}

export function isPciDriver(drv: Driver): drv is Driver & PciDriver {
  return Array.isArray((drv as Partial<PciDriver>).idTable);
}

// kernel: pci_match_one_device() [pci-driver.c]
export function pciMatchOne(id: PciDeviceId, dev: Pick<PciDevice, 'vendor' | 'device' | 'classCode'>): boolean {
  const vendor = id.vendor ?? PCI_ANY_ID;
  const device = id.device ?? PCI_ANY_ID;
  if (vendor !== PCI_ANY_ID && vendor !== dev.vendor) return false;
  if (device !== PCI_ANY_ID && device !== dev.device) return false;
  return (((id.class ?? 0) ^ dev.classCode) & (id.classMask ?? 0)) === 0;
}

/** The first entry of `table` matching the function, or null. */
// kernel: pci_match_id() [pci-driver.c]
export function pciMatchId(table: readonly PciDeviceId[], dev: Pick<PciDevice, 'vendor' | 'device' | 'classCode'>): PciDeviceId | null {
  return table.find((id) => pciMatchOne(id, dev)) ?? null;
}
