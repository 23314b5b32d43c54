/**
 * Configuration space access through an ECAM window (kernel: drivers/pci/ecam.c and
 * pci_generic_config_read32()/write32()).
 *
 * The CPU port offers 32- and 64-bit MMIO only, so byte and halfword accesses are done on the
 * enclosing dword: reads extract the bytes, writes read-modify-write the dword. A read-modify-write
 * would write back write-1-to-clear status bits that happen to be set in the other half (and clear
 * them), so a halfword write next to such a register (COMMAND next to STATUS, PRI control next to PRI
 * status) passes `rw1cNeighbour`, which writes zeros there instead.
 *
 * A bus outside the window reads as all ones and ignores writes, as a master abort does.
 */
import { KernelError } from '../errno.js';
import type { IoMem } from '../io.js';
import { PCI_CFG_SPACE_EXP_SIZE, pcieEcamOffset } from './regs.js';

export type CfgWidth = 1 | 2 | 4;

/** The kernel's struct pci_config_window */
export class PciEcamWindow {
  constructor(
    readonly io: IoMem,
    /** First and last bus number the window decodes (`bus-range`). */
    readonly busStart: number,
    readonly busEnd: number,
  ) {}

  /** Offset of the dword holding `where`, or null outside the window. */
  // kernel: pci_ecam_map_bus() [ecam.c]
  private map(bus: number, devfn: number, where: number): number | null {
    if (bus < this.busStart || bus > this.busEnd) return null;
    return pcieEcamOffset(bus - this.busStart, devfn, where & ~3);
  }

  read(bus: number, devfn: number, where: number, width: CfgWidth): number {
    checkAccess(bus, devfn, where, width, 'read');
    const off = this.map(bus, devfn, where);
    if (off === null) return width === 4 ? 0xffffffff : (1 << (8 * width)) - 1;
    const dword = this.io.readl(off);
    if (width === 4) return dword >>> 0;
    const shift = 8 * (where & 3);
    return (dword >>> shift) & ((1 << (8 * width)) - 1);
  }

  write(bus: number, devfn: number, where: number, width: CfgWidth, value: number, rw1cNeighbour = false): void {
    checkAccess(bus, devfn, where, width, 'write');
    const off = this.map(bus, devfn, where);
    if (off === null) return;
    if (width === 4) {
      this.io.writel(value >>> 0, off);
      return;
    }
    const shift = 8 * (where & 3);
    const mask = ((1 << (8 * width)) - 1) << shift;
    const others = rw1cNeighbour ? 0 : this.io.readl(off) & ~mask;
    this.io.writel((others | ((value << shift) & mask)) >>> 0, off);
  }
}

function checkAccess(bus: number, devfn: number, where: number, width: CfgWidth, op: string): void {
  if (!Number.isInteger(where) || where < 0 || where + width > PCI_CFG_SPACE_EXP_SIZE || where % width !== 0) {
    throw new KernelError('EINVAL', `PCI config ${op} of ${width} byte(s) at offset ${where} (bus ${bus}, devfn ${devfn}): bad register offset`);
  }
  if (!Number.isInteger(bus) || bus < 0 || bus > 255 || !Number.isInteger(devfn) || devfn < 0 || devfn > 255) {
    throw new KernelError('EINVAL', `PCI config ${op}: bus ${bus} / devfn ${devfn} out of range`);
  }
}

/** One function's configuration space (kernel: pci_read_config_*() / pci_write_config_*()). */
export class PciConfig {
  constructor(
    readonly window: PciEcamWindow,
    readonly bus: number,
    readonly devfn: number,
  ) {}

  read8(where: number): number {
    return this.window.read(this.bus, this.devfn, where, 1);
  }

  read16(where: number): number {
    return this.window.read(this.bus, this.devfn, where, 2);
  }

  read32(where: number): number {
    return this.window.read(this.bus, this.devfn, where, 4);
  }

  write8(where: number, value: number, rw1cNeighbour = false): void {
    this.window.write(this.bus, this.devfn, where, 1, value, rw1cNeighbour);
  }

  /** `rw1cNeighbour`: the other half of the dword is a write-1-to-clear status register. */
  write16(where: number, value: number, rw1cNeighbour = false): void {
    this.window.write(this.bus, this.devfn, where, 2, value, rw1cNeighbour);
  }

  write32(where: number, value: number): void {
    this.window.write(this.bus, this.devfn, where, 4, value);
  }
}
