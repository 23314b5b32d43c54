/** The scenario catalogue: `iommu-sim run` runs these in order. */
import type { Scenario } from './scenario.js';
import { scenario as bootVirt } from './boot-virt.js';

export const scenarios: readonly Scenario[] = [bootVirt];

export function findScenario(name: string): Scenario | undefined {
  return scenarios.find((s) => s.name === name);
}
