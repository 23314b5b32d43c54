import { KernelError } from '../bus/errno.js';

/**
 * DMA transfer directions and mapping attributes (kernel: include/linux/dma-direction.h and the
 * DMA_ATTR_* of include/linux/dma-mapping.h).
 */

/** The kernel's enum dma_data_direction */
export type DmaDataDirection = 'bidirectional' | 'to-device' | 'from-device' | 'none';

/** The mapping may only be accessed by privileged (supervisor) transactions. Kernel: DMA_ATTR_PRIVILEGED */
export const DMA_ATTR_PRIVILEGED = 1 << 9;
/** Skip the CPU cache maintenance of map/unmap. Kernel: DMA_ATTR_SKIP_CPU_SYNC */
export const DMA_ATTR_SKIP_CPU_SYNC = 1 << 5;
/** Do not log a failed mapping. Kernel: DMA_ATTR_NO_WARN */
export const DMA_ATTR_NO_WARN = 1 << 8;

/** EINVAL unless `dir` is a direction a mapping can have (kernel: valid_dma_direction()). */
export function checkDirection(dir: DmaDataDirection, what: string): void {
  if (dir !== 'bidirectional' && dir !== 'to-device' && dir !== 'from-device') {
    throw new KernelError('EINVAL', `${what}: DMA direction must be bidirectional, to-device or from-device, not ${String(dir)}`);
  }
}
