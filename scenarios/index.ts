/** The scenario catalogue: `iommu-sim run` runs these in order. */
import type { Scenario } from './scenario.js';
import { scenario as acpiBoot } from './acpi-boot.js';
import { scenario as acpiItsRmr } from './acpi-its-rmr.js';
import { scenario as bootVirt } from './boot-virt.js';
import { scenario as kexecStrayDma } from './kexec-stray-dma.js';
import { scenario as kexecSmmuPolicies } from './kexec-smmu-policies.js';
import { scenario as kdumpVmcore } from './kdump-vmcore.js';
import { scenario as kexecMatrixSmall } from './kexec-matrix-small.js';
import { scenario as kexecFaultStorm } from './kexec-fault-storm.js';
import { scenario as iopfFaultRecords } from './iopf-fault-records.js';
import { scenario as iopfSmmuV2Stall } from './iopf-smmu-v2-stall.js';
import { scenario as svaPri } from './sva-pri.js';
import { scenario as svaStall } from './sva-stall.js';
import { scenario as smmuV2Dma } from './smmu-v2-dma.js';
import { scenario as smmuV2Faults } from './smmu-v2-faults.js';
import { scenario as smmuV2Shutdown } from './smmu-v2-shutdown.js';
import { scenario as smmuV2Stall } from './smmu-v2-stall.js';
import { scenario as smmuV3TwoLevel } from './smmu-v3-2lvl-strtab.js';
import { scenario as smmuV3Ats } from './smmu-v3-ats.js';
import { scenario as smmuV3Cerror } from './smmu-v3-cerror.js';
import { scenario as smmuV3Dma } from './smmu-v3-dma.js';
import { scenario as smmuV3EvtqOverflow } from './smmu-v3-evtq-overflow.js';
import { scenario as smmuV3Fault } from './smmu-v3-fault.js';
import { scenario as smmuV3Shutdown } from './smmu-v3-shutdown.js';
import { scenario as smmuV3StaleTlb } from './smmu-v3-stale-tlb.js';
import { scenario as smmuV3Stall } from './smmu-v3-stall.js';
import { scenario as smmuV3WalkCache } from './smmu-v3-walk-cache.js';
import { scenario as strayDmaMappings } from './stray-dma-mappings.js';
import { scenario as cmdqvHostUnmap } from './cmdqv-host-unmap.js';
import { scenario as cmdqvGuestVintfHostile } from './cmdqv-guest-vintf-hostile.js';
import { scenario as cmdqvGuestUnmap } from './cmdqv-guest-unmap.js';
import { scenario as cmdqvVmHostile } from './cmdqv-vm-hostile.js';
import { scenario as cmdqvVmTeardown } from './cmdqv-vm-teardown.js';
import { scenario as vmGuestDma } from './vm-guest-dma.js';
import { scenario as vmGuestFault } from './vm-guest-fault.js';
import { scenario as vmHostileGuest } from './vm-hostile-guest.js';
import { scenario as vmGuestUnmap } from './vm-guest-unmap.js';
import { scenario as vmGuestSvaStall } from './vm-guest-sva-stall.js';
import { scenario as vmGuestSvaPri } from './vm-guest-sva-pri.js';

export const scenarios: readonly Scenario[] = [
  bootVirt, kexecStrayDma,
  kexecSmmuPolicies, kdumpVmcore, kexecFaultStorm, kexecMatrixSmall, smmuV2Dma, smmuV2Faults, smmuV2Stall, smmuV2Shutdown,
  smmuV3Dma, smmuV3Fault, smmuV3StaleTlb, smmuV3WalkCache, smmuV3Cerror, smmuV3EvtqOverflow, smmuV3Stall, smmuV3Ats, smmuV3TwoLevel, smmuV3Shutdown,
  svaPri, svaStall, iopfSmmuV2Stall, iopfFaultRecords,
  strayDmaMappings,
  cmdqvHostUnmap, cmdqvGuestVintfHostile,
  cmdqvGuestUnmap, cmdqvVmHostile, cmdqvVmTeardown,
  vmGuestDma, vmGuestFault, vmHostileGuest, vmGuestUnmap, vmGuestSvaStall, vmGuestSvaPri,
  acpiBoot,
  acpiItsRmr,
];

export function findScenario(name: string): Scenario | undefined {
  return scenarios.find((s) => s.name === name);
}
