/**
 * A PCI Express function's 4 KiB configuration space: bytes plus per-bit access types.
 *
 * Bits are read-only unless declared read-write (RW) or write-1-to-clear (RW1C). A write is applied
 * through those masks, then the owner's hook sees the dword (old value, stored value, and the value
 * software wrote, for write-only triggers such as a reset bit that always reads 0), so register side
 * effects live with the function model, not here.
 */

export const PCI_CFG_SPACE_EXP_SIZE = 4096;

export type ConfigWriteHook = (offset: number, oldValue: number, newValue: number, written: number) => void;

export class ConfigSpace {
  private readonly bytes = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  private readonly rw = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  private readonly w1c = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  private readonly view = new DataView(this.bytes.buffer);

  /** Called after a 32-bit write landed. */
  onWrite: ConfigWriteHook | null = null;

  /** Forget every value and mask (before re-initialising, as a function reset does). */
  clear(): void {
    this.bytes.fill(0);
    this.rw.fill(0);
    this.w1c.fill(0);
  }

  /** Set bytes as the hardware initialises them (masks do not apply). */
  init8(off: number, v: number): void {
    this.bytes[off] = v & 0xff;
  }
  init16(off: number, v: number): void {
    this.view.setUint16(off, v & 0xffff, true);
  }
  init32(off: number, v: number): void {
    this.view.setUint32(off, v >>> 0, true);
  }

  /** Declare read-write bits. */
  rw8(off: number, mask: number): void {
    this.setMask(this.rw, off, 1, mask);
  }
  rw16(off: number, mask: number): void {
    this.setMask(this.rw, off, 2, mask);
  }
  rw32(off: number, mask: number): void {
    this.setMask(this.rw, off, 4, mask);
  }

  /** Declare write-1-to-clear bits. */
  w1c16(off: number, mask: number): void {
    this.setMask(this.w1c, off, 2, mask);
  }

  get8(off: number): number {
    return this.bytes[off];
  }
  get16(off: number): number {
    return this.view.getUint16(off, true);
  }
  get32(off: number): number {
    return this.view.getUint32(off, true);
  }

  /** Hardware-side update of bits software cannot write (status bits). */
  setBits16(off: number, bits: number, on: boolean): void {
    const v = this.get16(off);
    this.init16(off, on ? v | bits : v & ~bits);
  }

  read32(off: number): number {
    return this.get32(off & 0xffc);
  }

  write32(off: number, value: number): void {
    const base = off & 0xffc;
    const old = this.get32(base);
    for (let i = 0; i < 4; i++) {
      const b = (value >>> (8 * i)) & 0xff;
      const o = base + i;
      const rw = this.rw[o];
      const cleared = this.w1c[o] & b;
      this.bytes[o] = ((this.bytes[o] & ~rw & ~cleared) | (b & rw)) & 0xff;
    }
    this.onWrite?.(base, old, this.get32(base), value >>> 0);
  }

  private setMask(arr: Uint8Array, off: number, width: number, mask: number): void {
    for (let i = 0; i < width; i++) arr[off + i] = (mask >>> (8 * i)) & 0xff;
  }
}
