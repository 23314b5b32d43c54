/**
 * IOMMU groups (kernel: struct iommu_group and the device_group policies of iommu.c): the smallest
 * set of devices the IOMMU can isolate from each other. Every device of a group is attached to the
 * same domain; the group remembers its default domain, its blocking domain, who owns its DMA, and
 * which domains its PASIDs are attached to.
 *
 * Grouping policies a driver's `deviceGroup` can use:
 * - `pciDeviceGroup`: the kernel's PCI rule. A function shares the group of an upstream bridge that
 *   does not isolate (no ACS path to the root bus), and, when it is part of a multi-function device
 *   without ACS, the group of its sibling functions in the same slot. DMA-alias quirks and
 *   PCIe-to-PCI bridge aliasing are not modelled (the machine has neither).
 * - `fwspecSharedDeviceGroup`: platform devices get one group each, unless two name the same IOMMU
 *   with a common stream ID (the IOMMU cannot tell their traffic apart), then they share.
 * - `genericDeviceGroup`: a new group per device; `genericSingleDeviceGroup`: one group per IOMMU.
 */
import type { Device } from '../bus/device.js';
import { KernelError } from '../bus/errno.js';
import { PciDevice } from '../bus/pci/pci-device.js';
import { pciSlot } from '../bus/pci/regs.js';
import { devIommu, type DevIommu } from './iommu-device.js';
import type { IommuDomain } from './iommu-domain.js';
import type { IommuSubsystem } from './iommu.js';
import { Mutex } from './mutex.js';
import { pciAcsEnabled, pciAcsPathEnabled, pciUpstreamBridge, REQ_ACS_FLAGS } from './pci-acs.js';

/**
 * Identifies a domain attachment in a group's PASID array (kernel: struct iommu_attach_handle).
 * Users that need their own state with it (SVA, iommufd fault queues) extend it.
 */
export class IommuAttachHandle {
  /** Set by the core when the attachment is published. */
  domain: IommuDomain | null = null;
}

/** One entry of the PASID array: a bare domain or an attach handle. */
export interface PasidArrayEntry {
  readonly domain: IommuDomain;
  readonly handle: IommuAttachHandle | null;
}

export class IommuGroup {
  /** Devices in the order they joined. */
  readonly devices: Device[] = [];
  /** The kernel's group->mutex — held across every change of the group's domains. */
  readonly mutex: Mutex;
  name: string | null = null;
  /** The domain the group returns to when nobody owns its DMA. */
  defaultDomain: IommuDomain | null = null;
  /** The domain used while an owner (VFIO-style) holds the group, or a blocked domain is needed. */
  blockingDomain: IommuDomain | null = null;
  /** The domain the group's devices are attached to now. */
  domain: IommuDomain | null = null;
  /** The DMA owner's token (kernel: group->owner), null when the kernel DMA API owns it. */
  owner: unknown = null;
  /** Bound drivers using the default domain, or claims of the owner. */
  ownerCnt = 0;
  /** PASID → attachment; PASID 0 holds the RID's attach handle (kernel: group->pasid_array). */
  readonly pasidArray = new Map<number, PasidArrayEntry>();
  /** PASIDs reserved by an attach in progress: occupied, but not visible to lookups. */
  readonly pasidReserved = new Set<number>();

  constructor(
    readonly subsystem: IommuSubsystem,
    // kernel: iommu_group_id() [iommu.c]
    readonly id: number,
  ) {
    this.mutex = new Mutex(`iommu group ${id}`);
  }

  // kernel: iommu_group_first_dev() [iommu.c]
  firstDev(): Device {
    const dev = this.devices[0];
    if (!dev) throw new KernelError('ENODEV', `iommu group ${this.id} has no devices`);
    return dev;
  }

  /** True if no PASID is attached or being attached (kernel: xa_empty(&group->pasid_array)). */
  get pasidArrayEmpty(): boolean {
    return this.pasidArray.size === 0 && this.pasidReserved.size === 0;
  }

  toString(): string {
    return `iommu group ${this.id}`;
  }
}

/** The group `dev` belongs to, or null (kernel: iommu_group_get()). */
export function iommuGroupGet(dev: Device): IommuGroup | null {
  return devIommu(dev)?.group ?? null;
}

function probingParam(dev: Device, what: string): DevIommu {
  const param = devIommu(dev);
  if (!param?.iommuDev) throw new KernelError('EINVAL', `${what}: ${dev.name} is not being probed by an IOMMU`);
  return param;
}

/** A new group for every device. */
// kernel: generic_device_group() [iommu.c]
export function genericDeviceGroup(dev: Device): IommuGroup {
  return probingParam(dev, 'generic_device_group').subsystem.allocGroup();
}

/** One group shared by every device of the device's IOMMU. */
// kernel: generic_single_device_group() [iommu.c]
export function genericSingleDeviceGroup(dev: Device): IommuGroup {
  const param = probingParam(dev, 'generic_single_device_group');
  const iommu = param.iommuDev!;
  iommu.singletonGroup ??= param.subsystem.allocGroup();
  return iommu.singletonGroup;
}

/**
 * Share the group of a device already probed behind the same IOMMU that has a stream ID in common
 * with `dev`; otherwise a new group.
 */
export function fwspecSharedDeviceGroup(dev: Device): IommuGroup {
  const param = probingParam(dev, 'fwspec_shared_device_group');
  const ids = dev.fwspec?.ids ?? [];
  for (const group of param.subsystem.groups) {
    for (const other of group.devices) {
      if (other === dev || devIommu(other)?.iommuDev !== param.iommuDev) continue;
      if ((other.fwspec?.ids ?? []).some((id) => ids.includes(id))) return group;
    }
  }
  return param.subsystem.allocGroup();
}

/** Other PCI functions of the same kernel on the same bus segment and bus number. */
function pciBusPeers(subsystem: IommuSubsystem, pdev: PciDevice): PciDevice[] {
  const out: PciDevice[] = [];
  for (const d of subsystem.core.devices) {
    if (d !== pdev && d instanceof PciDevice && d.domain === pdev.domain && d.busNumber === pdev.busNumber) out.push(d);
  }
  return out;
}

/** The group of `pdev` or of a DMA alias of it (none are modelled beyond the function itself). */
// kernel: get_pci_alias_group() [iommu.c]
function pciAliasGroup(pdev: PciDevice, seen: Set<number>): IommuGroup | null {
  if (seen.has(pdev.devfn)) return null;
  seen.add(pdev.devfn);
  return iommuGroupGet(pdev);
}

/** The group of a non-isolated sibling function in the same slot. */
// kernel: get_pci_function_alias_group() [iommu.c]
function pciFunctionAliasGroup(subsystem: IommuSubsystem, pdev: PciDevice, seen: Set<number>): IommuGroup | null {
  if (!pdev.multifunction || pciAcsEnabled(pdev, REQ_ACS_FLAGS)) return null;
  for (const tmp of pciBusPeers(subsystem, pdev)) {
    if (pciSlot(tmp.devfn) !== pciSlot(pdev.devfn) || pciAcsEnabled(tmp, REQ_ACS_FLAGS)) continue;
    const group = pciAliasGroup(tmp, seen);
    if (group) return group;
  }
  return null;
}

/** The PCI topology rule. */
// kernel: pci_device_group() [iommu.c]
export function pciDeviceGroup(dev: Device): IommuGroup {
  if (!(dev instanceof PciDevice)) throw new KernelError('EINVAL', `pci_device_group: ${dev.name} is not a PCI device`);
  const subsystem = probingParam(dev, 'pci_device_group').subsystem;
  const own = iommuGroupGet(dev);
  if (own) return own;
  // Walk up while the bridges do not isolate what is below them from each other.
  let pdev: PciDevice = dev;
  for (let bridge = pciUpstreamBridge(dev); bridge; bridge = pciUpstreamBridge(bridge)) {
    if (pciAcsPathEnabled(bridge, REQ_ACS_FLAGS)) break;
    pdev = bridge;
    const group = iommuGroupGet(bridge);
    if (group) return group;
  }
  const seen = new Set<number>();
  return pciAliasGroup(pdev, seen) ?? pciFunctionAliasGroup(subsystem, pdev, seen) ?? subsystem.allocGroup();
}
