/**
 * The driver (kernel: struct device_driver and its platform/pci wrappers): a name, the bus it serves,
 * the firmware IDs it claims, and the callbacks the driver core calls.
 *
 * `probe` may be long-running (it polls registers in virtual time) and signals "try again later" by
 * throwing KernelError('EPROBE_DEFER'). `remove` and `shutdown` are optional, as in Linux: a driver
 * without `.shutdown` leaves its hardware running across a reboot or kexec.
 */
import type { Bus } from './bus.js';
import type { Device } from './device.js';
import type { DtNode } from './of/tree.js';

export interface Driver<D extends Device = Device> {
  readonly name: string;
  readonly bus: Bus;
  /** DT compatible strings this driver claims (kernel: of_device_id[]), most specific first. */
  readonly ofMatchTable?: readonly string[];
  /** ACPI hardware IDs this driver claims (kernel: acpi_device_id[]). */
  readonly acpiMatchTable?: readonly string[];
  /** The driver manages DMA ownership itself (kernel: driver_managed_dma, as VFIO drivers set). */
  readonly driverManagedDma?: boolean;
  probe(dev: D): Promise<void>;
  remove?(dev: D): void | Promise<void>;
  shutdown?(dev: D): void | Promise<void>;
}

/**
 * The entry of `table` that best matches a node's `compatible` list, or null (kernel: of_match_node()).
 * The node's list is ordered most specific first, so an entry matching an earlier compatible wins;
 * among entries matching the same compatible, the earlier table entry wins.
 */
export function ofMatchNode(table: readonly string[] | undefined, node: DtNode | null): string | null {
  if (!table || table.length === 0 || !node) return null;
  for (const c of node.compatible) {
    if (table.includes(c)) return c;
  }
  return null;
}

/** The ACPI ID of `table` that matches the device's HID or, failing that, one of its CIDs (kernel: acpi_match_device()). */
export function acpiMatchDevice(dev: Device, table: readonly string[] | undefined): string | null {
  const fw = dev.fwnode;
  if (!table || table.length === 0 || !fw) return null;
  if (table.includes(fw.hid)) return fw.hid;
  for (const cid of fw.cids) if (table.includes(cid)) return cid;
  return null;
}

/** / acpi_driver_match_device(): the firmware ID by which `drv` claims `dev`. */
// kernel: of_driver_match_device() [of_device.h]
export function firmwareMatch(dev: Device, drv: Driver): string | null {
  return ofMatchNode(drv.ofMatchTable, dev.ofNode) ?? acpiMatchDevice(dev, drv.acpiMatchTable);
}
