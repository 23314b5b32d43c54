/**
 * The platform bus (kernel: drivers/base/platform.c) and its population from the Device Tree
 * (kernel: drivers/of/platform.c, of_platform_populate()).
 *
 * Population creates a platform device for every child of the root that has a `compatible` and is
 * enabled, and descends into nodes that are buses (`simple-bus`, `simple-mfd`, `isa`,
 * `arm,amba-bus`); `/firmware` children are populated too. Devices are named by their DT path.
 * Memory resources come from `reg` (translated to CPU physical addresses), interrupts from
 * `interrupts` / `interrupts-extended`, the IOMMU fwspec from `iommus`.
 *
 * Firmware errors found while reading a node's resources do not stop the boot: they are returned
 * with the node, and raised again when the driver asks for the broken resource, so the device's probe
 * fails naming the problem while the rest of the machine comes up.
 *
 * Like fw_devlink, population links each device to the device of the IOMMU its `iommus` names, before
 * anything probes, so the IOMMU binds before its masters.
 */
import type { Bus } from './bus.js';
import { Device, type DeviceInit } from './device.js';
import type { Driver } from './driver.js';
import { firmwareMatch } from './driver.js';
import type { DriverCore } from './driver-core.js';
import { KernelError } from './errno.js';
import { FirmwareError } from './firmware-error.js';
import { devmIoremap, type IoMem } from './io.js';
import type { IrqSpec } from './irq.js';
import { ofDmaIsCoherent, ofReg } from './of/address.js';
import { ofIommuConfigure } from './of/of-iommu.js';
import { ofIrqs } from './of/irq.js';
import type { DeviceTree, DtNode } from './of/tree.js';

const LOG_NS = 'iommu:bus:platform';

/** The kernel's platform_bus_type — matches by DT compatible or ACPI ID. */
export const platformBus: Bus = {
  name: 'platform',
  match: (dev, drv) => firmwareMatch(dev, drv) !== null,
};

/** A platform driver: probe/remove/shutdown receive the PlatformDevice. */
export type PlatformDriver = Driver<PlatformDevice>;

/** The kernel's of_default_bus_match_table — nodes whose children are populated too. */
export const OF_DEFAULT_BUS_MATCH: readonly string[] = ['simple-bus', 'simple-mfd', 'isa', 'arm,amba-bus'];

/** The kernel's of_skipped_node_table — compatible nodes that are not devices. */
const OF_SKIPPED_NODES: readonly string[] = ['operating-points-v2'];

/** The kernel's struct resource (IORESOURCE_MEM) */
export interface MemResource {
  readonly start: number;
  readonly size: number;
  /** `reg-names` entry, if any. */
  readonly name: string | null;
}

export interface PlatformDeviceInit extends Omit<DeviceInit, 'bus'> {
  resources?: readonly MemResource[];
  irqs?: readonly IrqSpec[];
  /** Why `reg` could not be read (raised by the resource accessors). */
  resourceError?: FirmwareError | null;
  /** Why the interrupts could not be read (raised by the IRQ accessors). */
  irqError?: FirmwareError | null;
}

export class PlatformDevice extends Device {
  readonly resources: readonly MemResource[];
  readonly irqs: readonly IrqSpec[];
  readonly resourceError: FirmwareError | null;
  readonly irqError: FirmwareError | null;

  constructor(init: PlatformDeviceInit) {
    super({ ...init, bus: platformBus });
    this.resources = init.resources ?? [];
    this.irqs = init.irqs ?? [];
    this.resourceError = init.resourceError ?? null;
    this.irqError = init.irqError ?? null;
  }
}

function asPlatform(dev: Device, what: string): PlatformDevice {
  if (!(dev instanceof PlatformDevice)) throw new KernelError('EINVAL', `${what}: ${dev.name} is not a platform device`);
  return dev;
}

/** The kernel's platform_get_resource(dev, IORESOURCE_MEM, index) — null if there is no such resource. */
export function platformGetResource(dev: Device, index: number): MemResource | null {
  const pdev = asPlatform(dev, 'platform_get_resource');
  if (pdev.resourceError) throw pdev.resourceError;
  return pdev.resources[index] ?? null;
}

/** The kernel's platform_get_resource_byname(dev, IORESOURCE_MEM, name) */
export function platformGetResourceByName(dev: Device, name: string): MemResource | null {
  const pdev = asPlatform(dev, 'platform_get_resource_byname');
  if (pdev.resourceError) throw pdev.resourceError;
  return pdev.resources.find((r) => r.name === name) ?? null;
}

// kernel: platform_irq_count() [drivers/base/platform.c]
export function platformIrqCount(dev: Device): number {
  const pdev = asPlatform(dev, 'platform_irq_count');
  if (pdev.irqError) throw pdev.irqError;
  return pdev.irqs.length;
}

/** ENXIO naming the device and index if it has no such interrupt. */
// kernel: platform_get_irq() [drivers/base/platform.c]
export function platformGetIrq(dev: Device, index: number): IrqSpec {
  const pdev = asPlatform(dev, 'platform_get_irq');
  if (pdev.irqError) throw pdev.irqError;
  const irq = pdev.irqs[index];
  if (!irq) throw new KernelError('ENXIO', `${dev.name}: IRQ index ${index} not found (the device has ${pdev.irqs.length})`);
  return irq;
}

/** Null instead of an error. */
// kernel: platform_get_irq_optional() [drivers/base/platform.c]
export function platformGetIrqOptional(dev: Device, index: number): IrqSpec | null {
  const pdev = asPlatform(dev, 'platform_get_irq_optional');
  if (pdev.irqError) throw pdev.irqError;
  return pdev.irqs[index] ?? null;
}

/** ENXIO if no interrupt has that `interrupt-names` entry. */
// kernel: platform_get_irq_byname() [drivers/base/platform.c]
export function platformGetIrqByName(dev: Device, name: string): IrqSpec {
  const irq = platformGetIrqByNameOptional(dev, name);
  if (!irq) throw new KernelError('ENXIO', `${dev.name}: IRQ ${name} not found`);
  return irq;
}

// kernel: platform_get_irq_byname_optional() [drivers/base/platform.c]
export function platformGetIrqByNameOptional(dev: Device, name: string): IrqSpec | null {
  const pdev = asPlatform(dev, 'platform_get_irq_byname');
  if (pdev.irqError) throw pdev.irqError;
  return pdev.irqs.find((i) => i.name === name) ?? null;
}

/**
 * Map memory resource `index`, unmapped when the driver
 * unbinds. EINVAL if the device has no such resource, ENXIO if no device MMIO backs it.
 */
// kernel: devm_platform_ioremap_resource() [drivers/base/platform.c]
export function devmPlatformIoremapResource(dev: Device, index: number): IoMem {
  const res = platformGetResource(dev, index);
  if (!res) throw new KernelError('EINVAL', `${dev.name}: no memory resource ${index} to map`);
  return devmIoremap(dev, res.start, res.size);
}

// ---- of_platform_populate ------------------------------------------------------------------------

export interface PopulateOptions {
  /** Node whose children are populated (default: the root). */
  root?: DtNode;
  /** Compatibles of bus nodes whose children are populated too (default: OF_DEFAULT_BUS_MATCH). */
  busMatches?: readonly string[];
  /** Link devices to the device of the IOMMU their `iommus` names (default true). */
  iommuLinks?: boolean;
}

export interface PopulateResult {
  /** Devices created, in DT order. */
  devices: PlatformDevice[];
  /** Firmware problems met on the way, each naming its node (those nodes may still have a device). */
  errors: FirmwareError[];
}

/**
 * (and of_platform_default_populate_init() for `/firmware`):
 * create and register platform devices from the DT of `core`, link masters to their IOMMU, then let
 * them probe.
 */
// kernel: of_platform_populate() [platform.c]
export async function ofPlatformPopulate(core: DriverCore, opts: PopulateOptions = {}): Promise<PopulateResult> {
  const tree = core.dt;
  if (!tree) throw new KernelError('EINVAL', 'of_platform_populate: this kernel has no device tree');
  const busMatches = opts.busMatches ?? OF_DEFAULT_BUS_MATCH;
  const result: PopulateResult = { devices: [], errors: [] };
  const roots: DtNode[] = [opts.root ?? tree.root];
  if (!opts.root) {
    const fw = tree.root.child('firmware');
    if (fw) roots.push(fw);
  }
  // Register everything first with probing held back, so links exist before any probe runs.
  for (const r of roots) {
    for (const child of r.children) await busCreate(core, tree, child, null, busMatches, result);
  }
  if (opts.iommuLinks ?? true) linkIommuMasters(core, result);
  for (const dev of result.devices) {
    if (dev.registered && !dev.driver) await core.attach(dev);
  }
  return result;
}

// kernel: of_platform_bus_create() [platform.c]
async function busCreate(
  core: DriverCore,
  tree: DeviceTree,
  node: DtNode,
  parent: PlatformDevice | null,
  busMatches: readonly string[],
  result: PopulateResult,
): Promise<void> {
  let compatible: string[];
  try {
    if (!node.has('compatible')) return;
    compatible = node.compatible;
    if (!node.available) return;
  } catch (e) {
    if (!(e instanceof FirmwareError)) throw e;
    result.errors.push(e);
    core.log.err(node.path, `skipped: ${e.message}`, LOG_NS);
    return;
  }
  if (compatible.some((c) => OF_SKIPPED_NODES.includes(c))) return;
  if (core.findDeviceByOfNode(node)) return; // Kernel: OF_POPULATED

  const dev = createPlatformDevice(core, tree, node, parent, result);
  await core.addDevice(dev, { probe: false });
  result.devices.push(dev);
  if (!compatible.some((c) => busMatches.includes(c))) return;
  for (const child of node.children) await busCreate(core, tree, child, dev, busMatches, result);
}

/** + of_dma_configure() */
// kernel: of_device_alloc() [platform.c]
function createPlatformDevice(
  core: DriverCore,
  tree: DeviceTree,
  node: DtNode,
  parent: PlatformDevice | null,
  result: PopulateResult,
): PlatformDevice {
  // Linux says nothing here (a resource it cannot read is simply absent); the driver that asks for it
  // gets the error, and the caller gets the list.
  const note = (what: string, e: unknown): FirmwareError => {
    if (!(e instanceof FirmwareError)) throw e;
    result.errors.push(e);
    core.log.debug(node.path, `${what}: ${e.message}`, LOG_NS);
    return e;
  };
  let resources: MemResource[] = [];
  let resourceError: FirmwareError | null = null;
  try {
    const names = node.has('reg-names') ? node.strings('reg-names')! : [];
    resources = ofReg(tree, node).map((r, i) => ({ start: r.address, size: r.size, name: names[i] ?? null }));
  } catch (e) {
    resourceError = note('reg', e);
  }
  let irqs: IrqSpec[] = [];
  let irqError: FirmwareError | null = null;
  try {
    irqs = ofIrqs(tree, node).map((i) => ({ controller: i.controller.path, specifier: i.specifier, name: i.name }));
  } catch (e) {
    irqError = note('interrupts', e);
  }
  let dmaCoherent = false;
  try {
    dmaCoherent = ofDmaIsCoherent(node);
  } catch (e) {
    note('dma-coherent', e);
  }
  const dev = new PlatformDevice({ name: node.path, parent, ofNode: node, dmaCoherent, resources, irqs, resourceError, irqError });
  try {
    dev.fwspec = ofIommuConfigure(tree, node);
  } catch (e) {
    note('iommus', e);
  }
  return dev;
}

/** Link every device with a fwspec to the device of its IOMMU (kernel: fw_devlink on `iommus`). */
export function linkIommuMasters(core: DriverCore, result: { devices: readonly Device[] }): void {
  for (const dev of result.devices) {
    const iommuNode = dev.fwspec?.iommuNode;
    if (!iommuNode) continue;
    const supplier = core.findDeviceByOfNode(iommuNode);
    if (!supplier || supplier === dev) continue;
    try {
      core.linkAdd(dev, supplier, { inferred: true });
    } catch (e) {
      core.log.warn(dev.name, `no link to IOMMU ${supplier.name}: ${e instanceof Error ? e.message : String(e)}`, LOG_NS);
    }
  }
}
