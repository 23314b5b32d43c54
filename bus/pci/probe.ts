/**
 * Enumeration of a PCI hierarchy by configuration reads (kernel: drivers/pci/probe.c,
 * pci_scan_child_bus(), pci_scan_slot(), pci_scan_single_device(), pci_setup_device(),
 * pci_scan_bridge()), and the capability walks (kernel: pci_find_capability(),
 * pci_find_ext_capability()).
 *
 * Every slot of a bus is probed at function 0; functions 1..7 only when function 0 says it is
 * multi-function. A vendor/device dword of all ones or all zeros (or either half all ones / zeros)
 * means nothing answers. A bridge whose bus numbers firmware already set is followed to its secondary
 * bus; an unconfigured one gets the next free bus number (its subordinate is written once what is
 * behind it is known), within the host's `bus-range`.
 *
 * Extended capabilities are only looked for on PCI Express functions (those with the PCIe
 * capability), whose configuration space is 4 KiB. Walks are bounded, so a looping list in broken
 * hardware ends the walk instead of hanging it.
 *
 * A function found is tied to the DT child of its bus node whose `reg` names its devfn, if any.
 *
 * Not done: BAR sizing and assignment, ARI, SR-IOV, Configuration Request Retry Status waits.
 */
import type { Device } from '../device.js';
import { FirmwareError } from '../firmware-error.js';
import type { KernelLog } from '../log.js';
import type { DtNode } from '../of/tree.js';
import { PciConfig } from './config.js';
import { PciDevice, type PciHostBridge } from './pci-device.js';
import {
  PCI_CAP_ID_EXP,
  PCI_CAP_LIST_ID,
  PCI_CAP_LIST_NEXT,
  PCI_CAPABILITY_LIST,
  PCI_CFG_SPACE_EXP_SIZE,
  PCI_CFG_SPACE_SIZE,
  PCI_CLASS_REVISION,
  PCI_EXT_CAP_START,
  PCI_FIND_CAP_TTL,
  PCI_HEADER_TYPE,
  PCI_HEADER_TYPE_BRIDGE,
  PCI_HEADER_TYPE_MASK,
  PCI_HEADER_TYPE_MFD,
  PCI_HEADER_TYPE_NORMAL,
  PCI_PRIMARY_BUS,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  PCI_STD_HEADER_SIZEOF,
  PCI_VENDOR_ID,
  pciDevfn,
  pciExtCapId,
  pciExtCapNext,
} from './regs.js';

const LOG_NS = 'iommu:bus:pci';

/** As the kernel's pci_find_capability() walk — every standard capability, first instance of each ID. */
export function readCapabilities(cfg: PciConfig): Map<number, number> {
  const caps = new Map<number, number>();
  if ((cfg.read16(PCI_STATUS) & PCI_STATUS_CAP_LIST) === 0) return caps;
  let pos = cfg.read8(PCI_CAPABILITY_LIST) & ~3;
  for (let ttl = PCI_FIND_CAP_TTL; ttl > 0 && pos >= PCI_STD_HEADER_SIZEOF && pos < PCI_CFG_SPACE_SIZE; ttl--) {
    const id = cfg.read8(pos + PCI_CAP_LIST_ID);
    if (id === 0xff) break;
    if (!caps.has(id)) caps.set(id, pos);
    pos = cfg.read8(pos + PCI_CAP_LIST_NEXT) & ~3;
  }
  return caps;
}

/** As the kernel's pci_find_ext_capability() walk — every extended capability, first instance of each ID. */
export function readExtCapabilities(cfg: PciConfig): Map<number, number> {
  const caps = new Map<number, number>();
  let pos = PCI_EXT_CAP_START;
  // Minimum 8 bytes per capability: a bound on how many a 4 KiB space can hold.
  for (let ttl = (PCI_CFG_SPACE_EXP_SIZE - PCI_CFG_SPACE_SIZE) / 8; ttl > 0; ttl--) {
    const header = cfg.read32(pos);
    // No extended capabilities at all: the first header is zero (or the space reads as all ones).
    if (header === 0 || header === 0xffffffff) break;
    const id = pciExtCapId(header);
    if (!caps.has(id)) caps.set(id, pos);
    pos = pciExtCapNext(header);
    if (pos < PCI_EXT_CAP_START) break;
  }
  return caps;
}

/** Does a function answer at this address? */
// kernel: pci_bus_generic_read_dev_vendor_id() [probe.c]
function functionPresent(idDword: number): boolean {
  const l = idDword >>> 0;
  return !(l === 0xffffffff || l === 0 || l === 0x0000ffff || l === 0xffff0000);
}

interface ScanContext {
  readonly host: PciHostBridge;
  readonly log: KernelLog;
  readonly dmaCoherent: boolean;
  readonly scannedBuses: Set<number>;
}

/**
 * Enumerate everything below `host`, starting at its first bus.
 * Returns the functions found (also appended to `host.devices`), parents before children.
 */
// kernel: pci_scan_root_bus_bridge() [probe.c]
export function pciScanHostBridge(host: PciHostBridge, log: KernelLog, dmaCoherent: boolean): PciDevice[] {
  const ctx: ScanContext = { host, log, dmaCoherent, scannedBuses: new Set() };
  const start = host.devices.length;
  scanChildBus(ctx, host.busStart, host.dev, host.busStart);
  return host.devices.slice(start);
}

/** Returns the highest bus number used below `bus`. */
// kernel: pci_scan_child_bus_extend() [probe.c]
function scanChildBus(ctx: ScanContext, bus: number, parent: Device, maxIn: number): number {
  ctx.scannedBuses.add(bus);
  const found: PciDevice[] = [];
  for (let slot = 0; slot < 32; slot++) found.push(...scanSlot(ctx, bus, slot, parent));
  let max = Math.max(maxIn, bus);
  for (const dev of found) {
    if (dev.headerType === PCI_HEADER_TYPE_BRIDGE) max = scanBridge(ctx, dev, bus, max);
  }
  return max;
}

// kernel: pci_scan_slot() [probe.c]
function scanSlot(ctx: ScanContext, bus: number, slot: number, parent: Device): PciDevice[] {
  const fn0 = scanSingleDevice(ctx, bus, pciDevfn(slot, 0), parent);
  if (!fn0) return [];
  const out = [fn0];
  if (fn0.multifunction) {
    for (let fn = 1; fn < 8; fn++) {
      const d = scanSingleDevice(ctx, bus, pciDevfn(slot, fn), parent);
      if (d) out.push(d);
    }
  }
  return out;
}

/** + pci_setup_device() */
// kernel: pci_scan_single_device() [probe.c]
function scanSingleDevice(ctx: ScanContext, bus: number, devfn: number, parent: Device): PciDevice | null {
  const cfg = new PciConfig(ctx.host.window, bus, devfn);
  const id = cfg.read32(PCI_VENDOR_ID);
  if (!functionPresent(id)) return null;
  const hdr = cfg.read8(PCI_HEADER_TYPE);
  const headerType = hdr & PCI_HEADER_TYPE_MASK;
  const classRev = cfg.read32(PCI_CLASS_REVISION);
  const where = `${ctx.host.node.path} bus ${bus} devfn ${devfn}`;
  if (headerType !== PCI_HEADER_TYPE_NORMAL && headerType !== PCI_HEADER_TYPE_BRIDGE) {
    ctx.log.warn(ctx.host.dev.name, `${where}: ignoring function with unknown header type ${headerType}`, LOG_NS);
    return null;
  }
  const caps = readCapabilities(cfg);
  const extCaps = caps.has(PCI_CAP_ID_EXP) ? readExtCapabilities(cfg) : new Map<number, number>();
  const dev = new PciDevice({
    host: ctx.host,
    parent,
    ofNode: ofPciFindChild(ctx, parent.ofNode, devfn),
    cfg,
    busNumber: bus,
    devfn,
    vendor: id & 0xffff,
    device: id >>> 16,
    classCode: classRev >>> 8,
    revision: classRev & 0xff,
    headerType,
    multifunction: (hdr & PCI_HEADER_TYPE_MFD) !== 0,
    caps,
    extCaps,
    dmaCoherent: ctx.dmaCoherent,
  });
  ctx.host.devices.push(dev);
  ctx.log.debug(dev.name, `[${hex4(dev.vendor)}:${hex4(dev.device)}] type ${hex2(headerType)} class 0x${dev.classCode.toString(16).padStart(6, '0')}`, LOG_NS);
  return dev;
}

/**
 * The DT child of the bus's node (the host bridge's, or a
 * bridge's) whose `reg` names this devfn, so drivers can read the function's firmware properties.
 */
// kernel: of_pci_find_child_device() [drivers/pci/of.c]
function ofPciFindChild(ctx: ScanContext, busNode: DtNode | null, devfn: number): DtNode | null {
  if (!busNode) return null;
  for (const child of busNode.children) {
    try {
      const hi = child.cells('reg')?.[0];
      if (hi !== undefined && ((hi >>> 8) & 0xff) === devfn && child.available) return child;
    } catch (e) {
      if (!(e instanceof FirmwareError)) throw e;
      ctx.log.warn(child.path, `not matched to a PCI function: ${e.message}`, LOG_NS);
    }
  }
  return null;
}

/** Follow (or number) the bus behind a bridge. */
// kernel: pci_scan_bridge_extend() [probe.c]
function scanBridge(ctx: ScanContext, bridge: PciDevice, bus: number, max: number): number {
  const { host, log } = ctx;
  const busses = bridge.cfg.read32(PCI_PRIMARY_BUS);
  const primary = busses & 0xff;
  const secondary = (busses >>> 8) & 0xff;
  const subordinate = (busses >>> 16) & 0xff;
  const keep = busses & 0xff000000;
  const configured = primary === bus && secondary > bus && subordinate >= secondary && subordinate <= host.busEnd;
  if (configured) {
    if (ctx.scannedBuses.has(secondary)) {
      log.warn(bridge.name, `bridge claims bus ${secondary}, which was already scanned; not following it`, LOG_NS);
      return max;
    }
    const childMax = scanChildBus(ctx, secondary, bridge, secondary);
    return Math.max(max, subordinate, childMax);
  }
  const next = max + 1;
  if (next > host.busEnd) {
    log.warn(bridge.name, `no bus number left in [${host.busStart}-${host.busEnd}] for the bus behind this bridge`, LOG_NS);
    return max;
  }
  // Open the window to the end of the range while scanning, then close it to what was found.
  bridge.cfg.write32(PCI_PRIMARY_BUS, (keep | bus | (next << 8) | (host.busEnd << 16)) >>> 0);
  const childMax = scanChildBus(ctx, next, bridge, next);
  bridge.cfg.write32(PCI_PRIMARY_BUS, (keep | bus | (next << 8) | (childMax << 16)) >>> 0);
  return childMax;
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}
