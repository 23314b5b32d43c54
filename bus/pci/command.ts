/**
 * The COMMAND register switches a function drives (kernel: pci_set_master(), pci_clear_master(),
 * pci_enable_device_mem()). A PCI function issues DMA only with Bus Master Enable set.
 */
import type { PciDevice } from './pci-device.js';
import { PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY } from './regs.js';

function updateCommand(pdev: PciDevice, set: number, clear: number): void {
  const cmd = pdev.cfg.read16(PCI_COMMAND);
  const next = (cmd | set) & ~clear;
  // STATUS shares the dword and is write-1-to-clear: write zeros there.
  if (next !== cmd) pdev.cfg.write16(PCI_COMMAND, next, true);
}

// kernel: pci_set_master() [drivers/pci/pci.c]
export function pciSetMaster(pdev: PciDevice): void {
  updateCommand(pdev, PCI_COMMAND_MASTER, 0);
}

// kernel: pci_clear_master() [drivers/pci/pci.c]
export function pciClearMaster(pdev: PciDevice): void {
  updateCommand(pdev, 0, PCI_COMMAND_MASTER);
}

/** Let the function decode memory accesses. */
// kernel: pci_enable_device_mem() [drivers/pci/pci.c]
export function pciEnableDeviceMem(pdev: PciDevice): void {
  updateCommand(pdev, PCI_COMMAND_MEMORY, 0);
}

/** True if Bus Master Enable is set. */
export function pciIsBusMaster(pdev: PciDevice): boolean {
  return (pdev.cfg.read16(PCI_COMMAND) & PCI_COMMAND_MASTER) !== 0;
}
