/**
 * Coherent DMA buffers for a device's own queues and tables (an SMMU's command queue, stream table,
 * context descriptors): zeroed, physically contiguous, aligned to their (power-of-two) size, tagged
 * as DMA memory of that device. The address handed back is the physical address: the devices using
 * these (the SMMUs themselves) are not translated by an IOMMU. Buffers for translated masters go
 * through the iommu core's DMA API instead.
 */
import { KernelError } from '../bus/errno.js';
import type { RamAccess } from '../hw/cpu-port.js';
import { MAX_ORDER, PAGE_SIZE, orderForSize, type PageAllocator } from './page-alloc.js';

export interface CoherentBuffer {
  /** Physical address; also the address the device uses. */
  readonly pa: number;
  /** Bytes the caller asked for. */
  readonly size: number;
  /** Bytes actually allocated (2^order pages). */
  readonly allocatedSize: number;
  readonly order: number;
  readonly device: string;
  readonly what: string;
}

/**
 * Allocate a zeroed buffer of at least `size` bytes for `device`, aligned to its allocated size.
 * ENOMEM beyond the largest order (2 MiB) or when memory runs out.
 */
// kernel: dma_alloc_coherent() [dma-mapping.h]
export function dmaAllocCoherent(alloc: PageAllocator, ram: RamAccess, size: number, device: string, what: string): CoherentBuffer {
  const order = orderForSize(size);
  if (order > MAX_ORDER) {
    throw new KernelError(
      'ENOMEM',
      `dma_alloc_coherent: ${size} bytes for ${device} (${what}) exceed the largest contiguous allocation (${PAGE_SIZE * 2 ** MAX_ORDER} bytes)`,
    );
  }
  const pa = alloc.allocPages(order, { kind: 'dma', device, what });
  try {
    ram.fill(pa, PAGE_SIZE * 2 ** order, 0);
  } catch (e) {
    alloc.freePages(pa, order);
    throw e;
  }
  return Object.freeze({ pa, size, allocatedSize: PAGE_SIZE * 2 ** order, order, device, what });
}

/** Free a buffer from `dmaAllocCoherent`. EINVAL if it is not live or not this device's. */
// kernel: dma_free_coherent() [dma-mapping.h]
export function dmaFreeCoherent(alloc: PageAllocator, buf: CoherentBuffer): void {
  alloc.freePages(buf.pa, buf.order, { kind: 'dma', device: buf.device, what: buf.what });
}
