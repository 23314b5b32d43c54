/**
 * A platform DMA master: a device on the SoC interconnect (a DMA engine, a GPU, a video block)
 * that the device tree gives `iommus` stream IDs. `canStall` (from `dma-can-stall`) says it
 * tolerates a transaction held by its IOMMU until software resumes it; the master model keeps
 * stalled transactions outstanding for as long as the IOMMU holds them, whatever it says.
 */
import type { MasterContext, StreamRoute } from './dma-master.js';
import { DmaMaster } from './dma-master.js';

export interface PlatformMasterOptions {
  canStall?: boolean;
  pasidBits?: number;
}

export class PlatformDmaMaster extends DmaMaster {
  readonly canStall: boolean;

  constructor(name: string, routes: readonly StreamRoute[], ctx: MasterContext, opts: PlatformMasterOptions = {}) {
    super(name, routes, ctx, opts.pasidBits ?? 0);
    this.canStall = opts.canStall ?? false;
  }
}
