/**
 * A PCI function as the kernel knows it after enumeration (kernel: struct pci_dev): its address
 * (domain, bus, devfn), IDs and class from the configuration header, the capabilities found, and
 * the configuration-space accessor. Its requester ID is what `iommu-map` and `msi-map` translate.
 */
import type { Bus } from '../bus.js';
import { Device } from '../device.js';
import type { Driver } from '../driver.js';
import type { DtNode } from '../of/tree.js';
import type { PlatformDevice } from '../platform.js';
import type { PciConfig, PciEcamWindow } from './config.js';
import { isPciDriver, pciMatchId } from './pci-driver.js';
import { pciFunc, pciSlot } from './regs.js';

/** A host bridge and the hierarchy below it (kernel: struct pci_host_bridge + its root bus). */
export interface PciHostBridge {
  /** The platform device of the host bridge node. */
  readonly dev: PlatformDevice;
  readonly node: DtNode;
  /** PCI domain (segment) number. */
  readonly domain: number;
  readonly busStart: number;
  readonly busEnd: number;
  readonly window: PciEcamWindow;
  /**
   * Firmware's configuration (resources, bus numbers, so requester IDs) must be kept (kernel:
   * pci_host_bridge.preserve_config): the ACPI _DSM "preserve boot configuration", or
   * `linux,pci-probe-only` on a Device Tree host bridge or /chosen.
   */
  readonly preserveConfig: boolean;
  /** Functions found, in enumeration order (parents before what sits behind them). */
  readonly devices: PciDevice[];
}

/** Which of the ATS / PRI / PASID features the kernel turned on (kept by bus/pci/ats.ts). */
export interface PciFeatureState {
  atsEnabled: boolean;
  /** Smallest Translation Unit programmed, as a page shift (12 = 4 KiB). */
  atsStu: number;
  priEnabled: boolean;
  /** Outstanding page requests allocated to the function. */
  priReqsAlloc: number;
  pasidEnabled: boolean;
  /** PCI_PASID_CTRL_EXEC / _PRIV bits enabled with PASID. */
  pasidFeatures: number;
}

export interface PciDeviceInit {
  host: PciHostBridge;
  parent: Device;
  cfg: PciConfig;
  busNumber: number;
  devfn: number;
  vendor: number;
  device: number;
  /** 24-bit class code: base class, subclass, programming interface. */
  classCode: number;
  revision: number;
  headerType: number;
  multifunction: boolean;
  /** Capability ID → offset of its first instance. */
  caps: ReadonlyMap<number, number>;
  /** Extended capability ID → offset of its first instance. */
  extCaps: ReadonlyMap<number, number>;
  dmaCoherent: boolean;
  ofNode?: DtNode | null;
}

/** "dddd:bb:ss.f" */
// kernel: pci_name() [pci.h]
export function pciName(domain: number, busNumber: number, devfn: number): string {
  const h = (n: number, w: number): string => n.toString(16).padStart(w, '0');
  return `${h(domain, 4)}:${h(busNumber, 2)}:${h(pciSlot(devfn), 2)}.${pciFunc(devfn)}`;
}

export class PciDevice extends Device {
  readonly host: PciHostBridge;
  readonly cfg: PciConfig;
  readonly domain: number;
  /** The PCI bus number (not to be confused with `bus`, the bus type). */
  readonly busNumber: number;
  readonly devfn: number;
  readonly vendor: number;
  readonly device: number;
  readonly classCode: number;
  readonly revision: number;
  readonly headerType: number;
  readonly multifunction: boolean;
  readonly features: PciFeatureState = {
    atsEnabled: false,
    atsStu: 0,
    priEnabled: false,
    priReqsAlloc: 0,
    pasidEnabled: false,
    pasidFeatures: 0,
  };
  private readonly caps: ReadonlyMap<number, number>;
  private readonly extCaps: ReadonlyMap<number, number>;

  constructor(init: PciDeviceInit) {
    super({
      name: pciName(init.host.domain, init.busNumber, init.devfn),
      bus: pciBus,
      parent: init.parent,
      ofNode: init.ofNode ?? null,
      dmaCoherent: init.dmaCoherent,
    });
    this.host = init.host;
    this.cfg = init.cfg;
    this.domain = init.host.domain;
    this.busNumber = init.busNumber;
    this.devfn = init.devfn;
    this.vendor = init.vendor;
    this.device = init.device;
    this.classCode = init.classCode;
    this.revision = init.revision;
    this.headerType = init.headerType;
    this.multifunction = init.multifunction;
    this.caps = init.caps;
    this.extCaps = init.extCaps;
  }

  /** Requester ID: bus << 8 | devfn (kernel: pci_dev_id()). */
  get rid(): number {
    return (this.busNumber << 8) | this.devfn;
  }

  override get requesterId(): number {
    return this.rid;
  }

  get slot(): number {
    return pciSlot(this.devfn);
  }

  get func(): number {
    return pciFunc(this.devfn);
  }

  /** Offset of the capability, 0 if absent. */
  // kernel: pci_find_capability() [drivers/pci/pci.c]
  findCapability(id: number): number {
    return this.caps.get(id) ?? 0;
  }

  /** Offset of the extended capability, 0 if absent. */
  // kernel: pci_find_ext_capability() [drivers/pci/pci.c]
  findExtCapability(id: number): number {
    return this.extCaps.get(id) ?? 0;
  }

  /** Every capability found, as [id, offset], in list order. */
  get capabilities(): [number, number][] {
    return [...this.caps.entries()];
  }

  get extCapabilities(): [number, number][] {
    return [...this.extCaps.entries()];
  }
}

/** The kernel's pci_bus_type — a PCI driver binds a function its ID table matches. */
export const pciBus: Bus = {
  name: 'pci',
  match(dev: Device, drv: Driver): boolean {
    return dev instanceof PciDevice && isPciDriver(drv) && pciMatchId(drv.idTable, dev) !== null;
  },
};
