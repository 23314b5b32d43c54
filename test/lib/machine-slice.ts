/**
 * The part of a Machine (hw/machine.ts) a model test needs, under Machine's own field names:
 * `scheduler` (virtual time, seeded), `trace`, `memory` (RAM at the given ranges), `mmio` and
 * `interconnect`, wired as Machine wires them. No firmware, interrupt controllers or masters: a
 * rig maps its model into `mmio` and drives it through MMIO and memory only.
 *
 *   class Rig extends MachineSlice {
 *     constructor() {
 *       super({ seed: 1, ram: [{ base: RAM_BASE, size: RAM_SIZE }] });
 *       this.mmio.map(SMMU_BASE, this.smmu.size, this.smmu);
 *     }
 *   }
 */
import { Interconnect } from '../../hw/interconnect.js';
import { PhysicalMemory } from '../../hw/memory.js';
import { MmioMap } from '../../hw/mmio.js';
import { Scheduler } from '../../hw/scheduler.js';
import { Trace } from '../../hw/trace.js';

export interface MachineSliceOptions {
  seed: number;
  /** RAM regions (none by default). */
  ram?: readonly { base: number; size: number }[];
}

export class MachineSlice {
  readonly scheduler: Scheduler;
  readonly trace = new Trace();
  readonly memory = new PhysicalMemory();
  readonly mmio: MmioMap;
  readonly interconnect: Interconnect;

  constructor(opts: MachineSliceOptions) {
    this.scheduler = new Scheduler(opts.seed);
    for (const r of opts.ram ?? []) this.memory.addRegion(r.base, r.size);
    const now = (): number => this.scheduler.now;
    this.mmio = new MmioMap(this.trace, now);
    this.interconnect = new Interconnect(this.memory, this.mmio, now);
  }
}
