/**
 * Stream mapping of the arm-smmu driver (kernel: the SMR/S2CR functions of arm-smmu.c): the SMR and
 * S2CR shadows written to the hardware, stream-map entry allocation with sharing (an entry that
 * already covers a new stream ID and mask serves it too; a partial overlap is refused, since some
 * stream would then match two entries), and pointing a master's entries at a bank, BYPASS or FAULT.
 */
import { FIELD_FIT, FIELD_GET, FIELD_PREP } from '../../bus/bitfield.js';
import type { Device } from '../../bus/device.js';
import { KernelError } from '../../bus/errno.js';
import type { IommuFwspec } from '../../bus/iommu-fwspec.js';
import { ARM_SMMU_FEAT_EXIDS, INVALID_SMENDX, type ArmSmmuDevice, type ArmSmmuMasterCfg } from './arm-smmu-device.js';
import {
  ARM_SMMU_GR0_S2CR,
  ARM_SMMU_GR0_SMR,
  S2CR_CBNDX,
  S2CR_EXIDVALID,
  S2CR_PRIVCFG,
  S2CR_PRIVCFG_DEFAULT,
  S2CR_TYPE,
  SMR_ID,
  SMR_MASK,
  SMR_VALID,
  type S2crType,
} from './arm-smmu-regs.js';

const hex = (v: number): string => `0x${v.toString(16)}`;

/**
 * A firmware-supplied value (an `iommus` specifier cell, `stream-match-mask`) in its field of a
 * fwspec ID (SMR layout: ID in [15:0], MASK in [31:16]). The kernel's arm_smmu_of_xlate() lets
 * FIELD_PREP() truncate it; a value too wide for the field is bad firmware, refused here at the
 * boundary with EINVAL naming the device, the value and the field.
 */
export function armSmmuFwidPrep(dev: Device, field: 'SMR.ID' | 'SMR.MASK', value: number): number {
  const mask = field === 'SMR.ID' ? SMR_ID : SMR_MASK;
  if (!FIELD_FIT(mask, value)) {
    throw new KernelError('EINVAL', `${dev.name}: firmware value ${value} (${hex(Math.max(0, Math.trunc(value)))}) does not fit ${field} (max ${hex(FIELD_GET(mask, mask))})`);
  }
  return FIELD_PREP(mask, value);
}

// kernel: arm_smmu_write_smr() [arm-smmu.c]
export function armSmmuWriteSmr(smmu: ArmSmmuDevice, idx: number): void {
  const smr = smmu.smrs![idx];
  let reg = FIELD_PREP(SMR_ID, smr.id) | FIELD_PREP(SMR_MASK, smr.mask);
  if (!(smmu.features & ARM_SMMU_FEAT_EXIDS) && smr.valid) reg |= SMR_VALID;
  smmu.gr0Write(ARM_SMMU_GR0_SMR(idx), reg >>> 0);
}

// kernel: arm_smmu_write_s2cr() [arm-smmu.c]
export function armSmmuWriteS2cr(smmu: ArmSmmuDevice, idx: number): void {
  if (smmu.impl?.writeS2cr) {
    smmu.impl.writeS2cr(smmu, idx);
    return;
  }
  const s2cr = smmu.s2crs[idx];
  let reg = FIELD_PREP(S2CR_TYPE, s2cr.type) | FIELD_PREP(S2CR_CBNDX, s2cr.cbndx) | FIELD_PREP(S2CR_PRIVCFG, s2cr.privcfg);
  if (smmu.features & ARM_SMMU_FEAT_EXIDS && smmu.smrs && smmu.smrs[idx].valid) reg |= S2CR_EXIDVALID;
  smmu.gr0Write(ARM_SMMU_GR0_S2CR(idx), reg >>> 0);
}

/** S2CR first, so a newly valid SMR points where it should. */
// kernel: arm_smmu_write_sme() [arm-smmu.c]
export function armSmmuWriteSme(smmu: ArmSmmuDevice, idx: number): void {
  armSmmuWriteS2cr(smmu, idx);
  if (smmu.smrs) armSmmuWriteSmr(smmu, idx);
}

/**
 * The stream-map entry for (id, mask): an existing one that covers it entirely, else the first free
 * one; EINVAL for a partial overlap (some stream would match two entries), ENOSPC when full.
 */
// kernel: arm_smmu_find_sme() [arm-smmu.c]
export function armSmmuFindSme(smmu: ArmSmmuDevice, id: number, mask: number): number {
  const smrs = smmu.smrs;
  // Stream indexing: the ID is the entry.
  if (!smrs) return id;
  let freeIdx = -1;
  for (let i = 0; i < smmu.numMappingGroups; i++) {
    const smr = smrs[i];
    if (!smr.valid) {
      if (freeIdx < 0) freeIdx = i;
      continue;
    }
    // Entirely covered by an existing entry: share it (no later entry can conflict then).
    if ((mask & smr.mask) === mask && ((id ^ smr.id) & ~smr.mask) === 0) return i;
    // Any other overlap means some stream ID would match two entries.
    if (((id ^ smr.id) & ~(smr.mask | mask)) === 0) {
      throw new KernelError('EINVAL', `stream ID ${hex(id)} mask ${hex(mask)} overlaps SMR${i} (ID ${hex(smr.id)} mask ${hex(smr.mask)}) without being covered by it`);
    }
  }
  if (freeIdx < 0) throw new KernelError('ENOSPC', `no free stream mapping group for stream ID ${hex(id)} mask ${hex(mask)} (all ${smmu.numMappingGroups} in use)`);
  return freeIdx;
}

/** Drop one user of an entry; true when it became free. */
// kernel: arm_smmu_free_sme() [arm-smmu.c]
export function armSmmuFreeSme(smmu: ArmSmmuDevice, idx: number): boolean {
  const s2cr = smmu.s2crs[idx];
  if (--s2cr.count > 0) return false;
  smmu.s2crs[idx] = smmu.s2crInitVal();
  if (smmu.smrs) smmu.smrs[idx].valid = false;
  return true;
}

export function fwspecOf(dev: Device): IommuFwspec {
  const fwspec = dev.fwspec;
  if (!fwspec) throw new KernelError('ENODEV', `${dev.name} has no IOMMU firmware description`);
  return fwspec;
}

// kernel: arm_smmu_master_alloc_smes() [arm-smmu.c]
export async function armSmmuMasterAllocSmes(dev: Device, cfg: ArmSmmuMasterCfg): Promise<void> {
  const smmu = cfg.smmu;
  const fwspec = fwspecOf(dev);
  await smmu.streamMapMutex.run(() => {
    let i = 0;
    try {
      // Work out the whole allocation before touching the hardware.
      for (; i < fwspec.ids.length; i++) {
        const sid = FIELD_GET(SMR_ID, fwspec.ids[i]);
        const mask = FIELD_GET(SMR_MASK, fwspec.ids[i]);
        if (cfg.smendx[i] !== INVALID_SMENDX) throw new KernelError('EEXIST', `${dev.name}: stream ID ${hex(sid)} already has a stream mapping entry`);
        const idx = armSmmuFindSme(smmu, sid, mask);
        if (smmu.smrs && smmu.s2crs[idx].count === 0) smmu.smrs[idx] = { id: sid, mask, valid: true };
        smmu.s2crs[idx].count++;
        cfg.smendx[i] = idx;
      }
    } catch (e) {
      while (i--) {
        armSmmuFreeSme(smmu, cfg.smendx[i]);
        cfg.smendx[i] = INVALID_SMENDX;
      }
      throw e;
    }
    for (const idx of cfg.smendx) armSmmuWriteSme(smmu, idx);
  });
}

// kernel: arm_smmu_master_free_smes() [arm-smmu.c]
export async function armSmmuMasterFreeSmes(cfg: ArmSmmuMasterCfg): Promise<void> {
  const smmu = cfg.smmu;
  await smmu.streamMapMutex.run(() => {
    for (let i = 0; i < cfg.smendx.length; i++) {
      const idx = cfg.smendx[i];
      if (idx === INVALID_SMENDX) continue;
      if (armSmmuFreeSme(smmu, idx)) armSmmuWriteSme(smmu, idx);
      cfg.smendx[i] = INVALID_SMENDX;
    }
  });
}

/** Point every entry of the master at `type` (and bank `cbndx`). */
// kernel: arm_smmu_master_install_s2crs() [arm-smmu.c]
export function armSmmuMasterInstallS2crs(cfg: ArmSmmuMasterCfg, type: S2crType, cbndx: number): void {
  const smmu = cfg.smmu;
  for (const idx of cfg.smendx) {
    if (idx === INVALID_SMENDX) continue;
    const s2cr = smmu.s2crs[idx];
    if (s2cr.type === type && s2cr.cbndx === cbndx) continue;
    s2cr.type = type;
    s2cr.privcfg = S2CR_PRIVCFG_DEFAULT;
    s2cr.cbndx = cbndx;
    armSmmuWriteS2cr(smmu, idx);
  }
}
