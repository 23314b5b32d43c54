/**
 * The record of every live DMA mapping per device (kernel: kernel/dma/debug.c, always on here).
 *
 * It checks what drivers hand back (unmapping or syncing something never mapped, with another size or
 * direction, is EINVAL naming the mapping), and it answers what the stray-DMA experiments ask: which
 * device addresses a device may use right now, and whether a physical frame is reachable by it
 * through a mapping. An IOMMU mapping makes whole IOMMU pages reachable, so its "span" is the
 * page-aligned range around the buffer; a direct mapping reaches exactly the buffer.
 */
import type { Device } from '../bus/device.js';
import { KernelError } from '../bus/errno.js';
import type { CoherentBuffer } from '../mm/dma-coherent.js';
import type { DmaDataDirection } from './dma-direction.js';

export type DmaMappingKind = 'single' | 'sg' | 'coherent';

export interface DmaMapping {
  readonly dev: Device;
  readonly kind: DmaMappingKind;
  /** The address the driver was given (an IOVA, or the physical address for direct DMA). */
  readonly dmaAddr: number;
  /** Bytes the driver asked for. */
  readonly size: number;
  /** CPU physical address of the buffer. */
  readonly phys: number;
  readonly dir: DmaDataDirection;
  /** Translated by the device's DMA domain (false: dma address = physical address). */
  readonly viaIommu: boolean;
  /** Device-visible range: first address and length (IOMMU-page aligned for IOMMU mappings). */
  readonly spanDma: number;
  readonly spanSize: number;
  /** Physical address the span starts at. */
  readonly spanPhys: number;
  /** The pages behind a coherent allocation. */
  readonly buffer?: CoherentBuffer;
}

const FRAME = 4096;

export class DmaDebug {
  // Per device, per DMA address: direct DMA may map one buffer several times at the same address.
  private readonly byDev = new Map<Device, Map<number, DmaMapping[]>>();

  // kernel: add_dma_entry() [kernel/dma/debug.c]
  add(m: DmaMapping): void {
    let map = this.byDev.get(m.dev);
    if (!map) this.byDev.set(m.dev, (map = new Map()));
    const at = map.get(m.dmaAddr);
    if (at) at.push(m);
    else map.set(m.dmaAddr, [m]);
  }

  /**
   * The mapping at `dmaAddr` that matches what the driver says it unmaps; EINVAL naming the mismatch
   * otherwise.
   */
  // kernel: check_unmap() [kernel/dma/debug.c]
  checkUnmap(dev: Device, dmaAddr: number, size: number, dir: DmaDataDirection, kind: DmaMappingKind): DmaMapping {
    const at = this.byDev.get(dev)?.get(dmaAddr);
    const what = `${dev.name}: unmapping DMA address 0x${dmaAddr.toString(16)}`;
    if (!at) throw new KernelError('EINVAL', `${what}: nothing is mapped there (never mapped, or already unmapped)`);
    const exact = at.find((m) => m.kind === kind && m.size === size && m.dir === dir);
    if (exact) return exact;
    const m = at[0];
    if (m.kind !== kind) throw new KernelError('EINVAL', `${what}: it was mapped as ${m.kind}, freed as ${kind}`);
    if (m.size !== size) throw new KernelError('EINVAL', `${what}: it was mapped with size ${m.size}, unmapped with ${size}`);
    throw new KernelError('EINVAL', `${what}: it was mapped ${m.dir}, unmapped ${dir}`);
  }

  /** Forget one mapping. Kernel: remove_dma_entry() */
  delete(m: DmaMapping): void {
    const map = this.byDev.get(m.dev);
    const at = map?.get(m.dmaAddr);
    const i = at ? at.indexOf(m) : -1;
    if (i < 0) return;
    at!.splice(i, 1);
    if (at!.length === 0) map!.delete(m.dmaAddr);
    if (map!.size === 0) this.byDev.delete(m.dev);
  }

  /** The mapping whose buffer contains [dmaAddr, dmaAddr + size), or undefined. */
  // kernel: check_sync() [kernel/dma/debug.c]
  containing(dev: Device, dmaAddr: number, size: number): DmaMapping | undefined {
    for (const m of this.all(dev)) {
      if (dmaAddr >= m.dmaAddr && dmaAddr + size <= m.dmaAddr + m.size) return m;
    }
    return undefined;
  }

  private *all(dev: Device): Iterable<DmaMapping> {
    const map = this.byDev.get(dev);
    if (!map) return;
    for (const at of map.values()) yield* at;
  }

  /** Live mappings of `dev`, lowest device address first. */
  mappings(dev: Device): DmaMapping[] {
    return [...this.all(dev)].sort((a, b) => a.dmaAddr - b.dmaAddr);
  }

  /** True if some mapping of `dev` makes (part of) the 4 KiB frame holding `pa` reachable by it. */
  physMapped(dev: Device, pa: number): boolean {
    const frame = Math.floor(pa / FRAME) * FRAME;
    for (const m of this.all(dev)) {
      if (m.spanPhys < frame + FRAME && m.spanPhys + m.spanSize > frame) return true;
    }
    return false;
  }

  /** Devices with at least one live mapping. */
  devices(): Device[] {
    return [...this.byDev.keys()];
  }
}
