/**
 * The generic ECAM host bridge driver (kernel: drivers/pci/controller/pci-host-generic.c and
 * pci-host-common.c, pci_host_common_probe()).
 *
 * Probe maps the ECAM window from the node's first `reg` for the buses of `bus-range` (default 0-255,
 * cut down to what the window can hold), takes the domain from `linux,pci-domain` or the next free
 * one, enumerates the hierarchy, gives each function its IOMMU fwspec (the host's `iommu-map` at the
 * function's requester ID) and a link to that IOMMU's device, then registers the functions so PCI
 * drivers can bind them. Remove takes the functions away again.
 */
import type { Device } from '../device.js';
import type { DriverCore } from '../driver-core.js';
import { KernelError } from '../errno.js';
import { FirmwareError } from '../firmware-error.js';
import { devmIoremap } from '../io.js';
import { ofDmaIsCoherent } from '../of/address.js';
import { acpiIortRootComplexOf } from '../acpi/acpi-boot.js';
import { iortPciIommuConfigure } from '../acpi/iort-iommu.js';
import { ofPciIommuConfigure } from '../of/of-iommu.js';
import type { DeviceTree, DtNode } from '../of/tree.js';
import { pciAcpiPreserveConfig } from '../acpi/pci-acpi.js';
import { linkIommuMasters, platformBus, platformGetResource, type PlatformDevice, type PlatformDriver } from '../platform.js';
import { PciEcamWindow } from './config.js';
import type { PciHostBridge } from './pci-device.js';
import { pciScanHostBridge } from './probe.js';
import { PCIE_ECAM_BUS_SHIFT } from './regs.js';

const LOG_NS = 'iommu:bus:pci';
const ECAM_BUS_SIZE = 1 << PCIE_ECAM_BUS_SHIFT;

const hosts = new WeakMap<Device, PciHostBridge>();
const domainsInUse = new WeakMap<DriverCore, Set<number>>();

/** The host bridge a bound `pci-host-generic` device drives, or null. */
export function pciHostBridgeOf(dev: Device): PciHostBridge | null {
  return hosts.get(dev) ?? null;
}

/** [start, end], or null when the node has no `bus-range`. */
// kernel: of_pci_parse_bus_range() [drivers/pci/of.c]
function parseBusRange(node: DtNode): [number, number] | null {
  const cells = node.cells('bus-range');
  if (cells === undefined) return null;
  const [start, end] = cells;
  if (cells.length !== 2 || start === undefined || end === undefined || start > end || end > 0xff) {
    throw new FirmwareError('dtb', `"bus-range" must be <start end> with start <= end <= 255, got <${cells.join(' ')}>`, node.propOffset('bus-range'), node.path);
  }
  return [start, end];
}

/** / pci_bus_find_domain_nr() */
// kernel: of_get_pci_domain_nr() [drivers/pci/of.c]
function claimDomain(core: DriverCore, node: DtNode): number {
  let used = domainsInUse.get(core);
  if (!used) {
    used = new Set();
    domainsInUse.set(core, used);
  }
  const fixed = node.u32('linux,pci-domain');
  if (fixed !== undefined) {
    if (used.has(fixed)) throw new KernelError('EEXIST', `${node.path}: PCI domain ${fixed} ("linux,pci-domain") is already in use`);
    used.add(fixed);
    return fixed;
  }
  let d = 0;
  while (used.has(d)) d++;
  used.add(d);
  return d;
}

// kernel: pci_host_common_probe() [pci-host-common.c]
async function pciHostCommonProbe(dev: PlatformDevice): Promise<void> {
  const core = dev.core;
  const node = dev.ofNode;
  const tree = core.dt;
  if (!node || !tree) throw new KernelError('ENODEV', `${dev.name}: a generic host bridge needs a device tree node`);
  const res = platformGetResource(dev, 0);
  if (!res) throw new KernelError('ENODEV', `${dev.name}: no "reg" for the ECAM window`);

  let range = parseBusRange(node);
  if (!range) {
    range = [0, 0xff];
    core.log.info(dev.name, 'no "bus-range": using [bus 00-ff]', LOG_NS);
  }
  let [busStart, busEnd] = range;
  const fits = Math.floor(res.size / ECAM_BUS_SIZE);
  if (fits < 1) {
    throw new KernelError('EINVAL', `${dev.name}: ECAM window of 0x${res.size.toString(16)} bytes cannot hold one bus (0x${ECAM_BUS_SIZE.toString(16)})`);
  }
  if (busEnd - busStart + 1 > fits) {
    const cut = busStart + fits - 1;
    core.log.warn(dev.name, `ECAM window can only hold [bus ${hex2(busStart)}-${hex2(cut)}] (reduced from [bus ${hex2(busStart)}-${hex2(busEnd)}])`, LOG_NS);
    busEnd = cut;
  }
  const io = devmIoremap(dev, res.start, (busEnd - busStart + 1) * ECAM_BUS_SIZE);
  const domain = claimDomain(core, node);
  dev.devres.add(`PCI domain ${domain}`, () => {
    domainsInUse.get(core)?.delete(domain);
  });

  const preserveConfig = pciPreserveConfig(tree, node, (m) => core.log.warn(dev.name, m, LOG_NS));
  const host: PciHostBridge = { dev, node, domain, busStart, busEnd, window: new PciEcamWindow(io, busStart, busEnd), preserveConfig, devices: [] };
  hosts.set(dev, host);
  dev.devres.add('host bridge', () => {
    hosts.delete(dev);
  });
  // Also on a probe that fails half-way: no function outlives its host bridge.
  dev.devres.add('PCI functions', () => removeFunctions(host));
  core.log.info(dev.name, `PCI host bridge to bus ${hex4(domain)}:${hex2(busStart)}, ECAM at 0x${res.start.toString(16)} for [bus ${hex2(busStart)}-${hex2(busEnd)}]`, LOG_NS);

  const found = pciScanHostBridge(host, core.log, ofDmaIsCoherent(node));
  for (const pdev of found) {
    try {
      pdev.fwspec = acpiIortRootComplexOf(node)
        ? iortPciIommuConfigure(node, pdev.rid, (m) => core.log.warn(pdev.name, `IORT: ${m}`, LOG_NS))
        : ofPciIommuConfigure(tree, node, pdev.rid);
    } catch (e) {
      if (!(e instanceof FirmwareError)) throw e;
      core.log.err(pdev.name, `${acpiIortRootComplexOf(node) ? 'IORT' : 'iommu-map'}: ${e.message}`, LOG_NS);
    }
  }
  // (kernel: pci_bus_add_devices() — register all, link them to their IOMMU, then let drivers bind.)
  for (const pdev of found) await core.addDevice(pdev, { probe: false });
  linkIommuMasters(core, { devices: found });
  for (const pdev of found) {
    if (pdev.registered && !pdev.driver) await core.attach(pdev);
  }
}

/** Must firmware's PCI configuration be kept? ACPI: the host bridge's _DSM; DT: `linux,pci-probe-only`. */
// kernel: pci_preserve_config() [pci.c]
function pciPreserveConfig(tree: DeviceTree, node: DtNode, warn: (msg: string) => void): boolean {
  return pciAcpiPreserveConfig(node, warn) ?? ofPciPreserveConfig(tree, node);
}

/** `linux,pci-probe-only` on the host bridge node, else on /chosen: 1 keeps firmware's configuration. */
// kernel: of_pci_preserve_config() [of.c]
function ofPciPreserveConfig(tree: DeviceTree, node: DtNode): boolean {
  const v = node.u32('linux,pci-probe-only') ?? tree.byPath('/chosen')?.u32('linux,pci-probe-only');
  return v === 1;
}

/** + pci_remove_root_bus() — remove the functions, newest first. */
// kernel: pci_stop_root_bus() [remove.c]
async function removeFunctions(host: PciHostBridge): Promise<void> {
  for (const pdev of [...host.devices].reverse()) {
    if (pdev.registered) await host.dev.core.removeDevice(pdev);
  }
  host.devices.length = 0;
}

// kernel: pci_host_common_remove() [pci-host-common.c]
async function pciHostCommonRemove(dev: PlatformDevice): Promise<void> {
  const host = hosts.get(dev);
  if (host) await removeFunctions(host);
}

/** The kernel's gen_pci_driver ("pci-host-generic") */
export const pciHostGenericDriver: PlatformDriver = {
  name: 'pci-host-generic',
  bus: platformBus,
  ofMatchTable: ['pci-host-ecam-generic'],
  probe: pciHostCommonProbe,
  remove: pciHostCommonRemove,
};

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}
