/**
 * A bus type (kernel: struct bus_type): a family of devices and drivers with its own rule for which
 * driver fits which device. The platform bus matches by firmware compatible / ACPI HID; the PCI bus
 * by vendor/device ID or class.
 */
import type { Device } from './device.js';
import type { Driver } from './driver.js';

export interface Bus {
  readonly name: string;
  /** The kernel's bus_type.match() — true if `drv` can drive `dev`. Only called with a device and driver of this bus. */
  match(dev: Device, drv: Driver): boolean;
}
