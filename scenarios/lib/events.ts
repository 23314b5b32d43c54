/**
 * What an SMMUv3's driver has read from the event queue, as a scenario checks it: every decoded
 * record, or only the faults.
 */
import type { ArmSmmuEventReport } from '../../drivers/arm-smmu-v3/arm-smmu-v3-events.js';
import type { SmmuV3Lab } from '../smmu-v3-lab.js';

/** Every event record and page request the driver has decoded, oldest first. */
export function smmuEvents(lab: SmmuV3Lab): readonly ArmSmmuEventReport[] {
  return [...lab.smmu.events];
}

/** The fault events (F_TRANSLATION, F_PERMISSION, …): event records, not page requests. */
export function smmuFaults(lab: SmmuV3Lab): readonly ArmSmmuEventReport[] {
  return lab.smmu.events.filter((e) => e.kind === 'event' && e.name.startsWith('F_'));
}
