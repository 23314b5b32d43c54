/**
 * The PCI isolation queries IOMMU grouping needs (kernel: pci_acs_enabled(), pci_acs_path_enabled()
 * in drivers/pci/pci.c, pci_max_pasids() in drivers/pci/ats.c), read from configuration space.
 * No device-specific ACS quirks are modelled.
 */
import { PciDevice } from '../bus/pci/pci-device.js';
import { PCI_CAP_ID_EXP, PCI_EXT_CAP_ID_PASID, PCI_PASID_CAP, PCI_PASID_CAP_WIDTH_MASK, PCI_PASID_CAP_WIDTH_SHIFT } from '../bus/pci/regs.js';

// Access Control Services extended capability (PCIe Base Specification §7.7.11).
export const PCI_EXT_CAP_ID_ACS = 0x000d;
export const PCI_ACS_CAP = 0x04; // 16 bits
export const PCI_ACS_CTRL = 0x06; // 16 bits
export const PCI_ACS_SV = 0x0001; // Source Validation
export const PCI_ACS_TB = 0x0002; // Translation Blocking
export const PCI_ACS_RR = 0x0004; // P2P Request Redirect
export const PCI_ACS_CR = 0x0008; // P2P Completion Redirect
export const PCI_ACS_UF = 0x0010; // Upstream Forwarding
export const PCI_ACS_EC = 0x0020; // P2P Egress Control
export const PCI_ACS_DT = 0x0040; // Direct Translated P2P

/**
 * What makes a function isolated for IOMMU grouping: it cannot spoof its requester ID and its
 * requests and completions cannot be redirected or bypass the IOMMU (kernel: REQ_ACS_FLAGS).
 */
export const REQ_ACS_FLAGS = PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF;

// PCI Express capability: device/port type in PCI_EXP_FLAGS[7:4].
export const PCI_EXP_FLAGS = 0x02;
export const PCI_EXP_FLAGS_TYPE = 0x00f0;
export const PCI_EXP_TYPE_ENDPOINT = 0x0;
export const PCI_EXP_TYPE_LEG_END = 0x1;
export const PCI_EXP_TYPE_ROOT_PORT = 0x4;
export const PCI_EXP_TYPE_UPSTREAM = 0x5;
export const PCI_EXP_TYPE_DOWNSTREAM = 0x6;
export const PCI_EXP_TYPE_PCI_BRIDGE = 0x7;
export const PCI_EXP_TYPE_PCIE_BRIDGE = 0x8;
export const PCI_EXP_TYPE_RC_END = 0x9;
export const PCI_EXP_TYPE_RC_EC = 0xa;

/** PCIe device/port type, or null for a conventional PCI function. */
// kernel: pci_pcie_type() [pci.h]
export function pciPcieType(pdev: PciDevice): number | null {
  const pos = pdev.findCapability(PCI_CAP_ID_EXP);
  if (pos === 0) return null;
  return (pdev.cfg.read16(pos + PCI_EXP_FLAGS) & PCI_EXP_FLAGS_TYPE) >> 4;
}

/** The upstream bridge of the function's bus, or null on a root bus (kernel: pdev->bus->self). */
export function pciUpstreamBridge(pdev: PciDevice): PciDevice | null {
  return pdev.parent instanceof PciDevice ? pdev.parent : null;
}

// kernel: pci_acs_flags_enabled() [drivers/pci/pci.c]
function pciAcsFlagsEnabled(pdev: PciDevice, flags: number): boolean {
  const pos = pdev.findExtCapability(PCI_EXT_CAP_ID_ACS);
  if (pos === 0) return false;
  // Controls the capability does not offer are hard-wired on, except Egress Control.
  const cap = pdev.cfg.read16(pos + PCI_ACS_CAP);
  const wanted = flags & (cap | PCI_ACS_EC);
  const ctrl = pdev.cfg.read16(pos + PCI_ACS_CTRL);
  return (ctrl & wanted) === wanted;
}

/** True if the function enforces every ACS control in `flags`. */
// kernel: pci_acs_enabled() [drivers/pci/pci.c]
export function pciAcsEnabled(pdev: PciDevice, flags: number): boolean {
  const type = pciPcieType(pdev);
  // Conventional PCI shares a bus: anything on it can see anything else's DMA.
  if (type === null) return false;
  switch (type) {
    case PCI_EXP_TYPE_PCIE_BRIDGE:
    case PCI_EXP_TYPE_PCI_BRIDGE:
    case PCI_EXP_TYPE_RC_EC:
      return false;
    case PCI_EXP_TYPE_DOWNSTREAM:
    case PCI_EXP_TYPE_ROOT_PORT:
      return pciAcsFlagsEnabled(pdev, flags);
    case PCI_EXP_TYPE_ENDPOINT:
    case PCI_EXP_TYPE_UPSTREAM:
    case PCI_EXP_TYPE_LEG_END:
    case PCI_EXP_TYPE_RC_END:
      // ACS only applies between the functions of a multi-function device.
      if (pdev.multifunction) return pciAcsFlagsEnabled(pdev, flags);
      return true;
    default:
      return true;
  }
}

/** True if `start` and every bridge above it up to the root bus enforce `flags`. */
// kernel: pci_acs_path_enabled() [drivers/pci/pci.c]
export function pciAcsPathEnabled(start: PciDevice, flags: number): boolean {
  for (let pdev: PciDevice | null = start; pdev; pdev = pciUpstreamBridge(pdev)) {
    if (!pciAcsEnabled(pdev, flags)) return false;
  }
  return true;
}

/** PASIDs the function supports (2^Max PASID Width), 0 without the capability. */
// kernel: pci_max_pasids() [ats.c]
export function pciMaxPasids(pdev: PciDevice): number {
  const pos = pdev.findExtCapability(PCI_EXT_CAP_ID_PASID);
  if (pos === 0) return 0;
  const cap = pdev.cfg.read16(pos + PCI_PASID_CAP);
  return 2 ** ((cap & PCI_PASID_CAP_WIDTH_MASK) >> PCI_PASID_CAP_WIDTH_SHIFT);
}
