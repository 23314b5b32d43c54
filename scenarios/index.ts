/** The scenario catalogue: `iommu-sim run` runs these in order. */
import type { Scenario } from './scenario.js';
import { scenario as bootVirt } from './boot-virt.js';
import { scenario as kexecStrayDma } from './kexec-stray-dma.js';

export const scenarios: readonly Scenario[] = [bootVirt, kexecStrayDma];

export function findScenario(name: string): Scenario | undefined {
  return scenarios.find((s) => s.name === name);
}
