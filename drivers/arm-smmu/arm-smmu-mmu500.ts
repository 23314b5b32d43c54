/**
 * Arm MMU-500 implementation reset (kernel: arm_mmu500_reset() in arm-smmu-impl.c), on its own so
 * both the generic impl layer and the Qualcomm flavours (MMU-500 based) can use it.
 */
import { BIT, FIELD_GET } from '../../bus/bitfield.js';
import type { ArmSmmuDevice } from './arm-smmu-device.js';
import { ARM_SMMU_CB_ACTLR, ARM_SMMU_GR0_ID7, ARM_SMMU_GR0_sACR, ID7_MAJOR } from './arm-smmu-regs.js';

export const ARM_MMU500_ACTLR_CPRE = BIT(1);
export const ARM_MMU500_ACR_CACHE_LOCK = BIT(26);
export const ARM_MMU500_ACR_S2CRB_TLBEN = BIT(10);
export const ARM_MMU500_ACR_SMTNMB_TLBEN = BIT(8);

// kernel: arm_mmu500_reset() [arm-smmu-impl.c]
export function armMmu500Reset(smmu: ArmSmmuDevice): void {
  // From r2p0 the ACTLRs only take writes once sACR.CACHE_LOCK is clear.
  const major = FIELD_GET(ID7_MAJOR, smmu.gr0Read(ARM_SMMU_GR0_ID7));
  let reg = smmu.gr0Read(ARM_SMMU_GR0_sACR);
  if (major >= 2) reg &= ~ARM_MMU500_ACR_CACHE_LOCK;
  // Unmatched and bypassed streams may allocate TLB entries.
  reg |= ARM_MMU500_ACR_SMTNMB_TLBEN | ARM_MMU500_ACR_S2CRB_TLBEN;
  smmu.gr0Write(ARM_SMMU_GR0_sACR, reg >>> 0);
  // The next-page prefetcher is off for errata 841119 and 826419.
  for (let i = 0; i < smmu.numContextBanks; i++) {
    const actlr = smmu.cbRead(i, ARM_SMMU_CB_ACTLR);
    smmu.cbWrite(i, ARM_SMMU_CB_ACTLR, (actlr & ~ARM_MMU500_ACTLR_CPRE) >>> 0);
  }
}

