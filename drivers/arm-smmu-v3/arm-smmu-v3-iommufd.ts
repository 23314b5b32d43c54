/**
 * The SMMUv3 side of iommufd (kernel: drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c, v6.17):
 * what a VMM gets when it gives a guest an SMMUv3 device.
 *
 * - hw_info: IDR0-5, IIDR and AIDR as the hardware has them, for the VMM to derive its vSMMU's.
 * - vSMMU (vIOMMU type ARM_SMMUV3): bound to a nest-parent stage 2 domain of the same SMMU; its VMID
 *   is the parent's (v6.17 copies it; later kernels allocate one per vSMMU). Needs nesting (S1P and
 *   S2P) and a coherent SMMU (the stand-in here for canwbs / S2FWB, which the model does not have).
 * - nested domains from a guest STE: only V, Config (abort, bypass, S1 translate), S1Fmt,
 *   S1ContextPtr, S1CDMax, S1DSS, S1CIR/COR/CSH, S1STALLD and EATS (ABT or TRANS) may be set; any
 *   other bit, Config or EATS value is EIO. The physical STE is the parent's stage 2 STE with
 *   Config=nested, the guest's fields and MEV; EATS is the host's choice (on only if the guest asked).
 * - invalidation: TLBI_NH_{VA,VAA,ASID,ALL} get the vSMMU's VMID; TLBI_NSNH_ALL becomes TLBI_NH_ALL of
 *   that VMID; ATC_INV, CFGI_CD and CFGI_CD_ALL get the physical SID of the vDEVICE the vSID names
 *   (EIO for an unknown vSID); any other command is EIO. Up to CMDQ_BATCH_ENTRIES-1 commands per
 *   batch, each batch ending with a CMD_SYNC on the main queue.
 * - events: a nested master's events that are not stage 2 or stalls go to the vEVENTQ with the vSID
 *   (arm-smmu-v3-events.ts calls the vmaster).
 */
import type { Device } from '../../bus/device.js';
import { KernelError } from '../../bus/errno.js';
import { IOMMU_DOMAIN_NESTED, type IommuDomain } from '../../core/iommu-domain.js';
import {
  IOMMU_HW_INFO_TYPE_ARM_SMMUV3,
  IOMMU_HW_INFO_TYPE_DEFAULT,
  IOMMU_HWPT_DATA_ARM_SMMUV3,
  IOMMU_VEVENTQ_TYPE_ARM_SMMUV3,
  IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3,
  IOMMU_VIOMMU_TYPE_ARM_SMMUV3,
  type IommufdViommu,
  type IommufdViommuOps,
  type IommuHwInfo,
  type IommuUserData,
  type IommuUserDataArray,
} from '../../core/iommufd.js';
import { IOMMU_NO_PASID } from '../../core/iommu-pasid.js';
import type { DomainOps } from '../../core/iommu-ops.js';
import type { ArmSmmuDevice } from './arm-smmu-v3-device.js';
import { ArmSmmuDomain, ArmSmmuNestedDomain, type ArmSmmuVmaster, type ArmVsmmuRef } from './arm-smmu-v3-domain.js';
import { newEntry } from './arm-smmu-v3-entry.js';
import {
  armSmmuAttachCommit,
  armSmmuAttachPrepare,
  armSmmuInstallSteForDev,
  armSmmuSsidsInUse,
  asidLocked,
  masterOf,
  type ArmSmmuMaster,
  type AttachState,
} from './arm-smmu-v3-master.js';
import {
  ARM_SMMU_AIDR,
  ARM_SMMU_FEAT_COHERENCY,
  ARM_SMMU_FEAT_NESTING,
  ARM_SMMU_IDR0,
  ARM_SMMU_IIDR,
  CMDQ_0_OP,
  CMDQ_BATCH_ENTRIES,
  CMDQ_CFGI_0_SID,
  CMDQ_ENT_WORDS,
  CMDQ_OP_ATC_INV,
  CMDQ_OP_CFGI_CD,
  CMDQ_OP_CFGI_CD_ALL,
  CMDQ_OP_TLBI_NH_ALL,
  CMDQ_OP_TLBI_NH_ASID,
  CMDQ_OP_TLBI_NH_VA,
  CMDQ_OP_TLBI_NH_VAA,
  CMDQ_OP_TLBI_NSNH_ALL,
  CMDQ_TLBI_0_VMID,
  STRTAB_STE_0_CFG,
  STRTAB_STE_0_CFG_ABORT,
  STRTAB_STE_0_CFG_BYPASS,
  STRTAB_STE_0_CFG_NESTED,
  STRTAB_STE_0_CFG_S1_TRANS,
  STRTAB_STE_0_S1CDMAX,
  STRTAB_STE_0_S1CTXPTR_MASK,
  STRTAB_STE_0_S1FMT,
  STRTAB_STE_0_V,
  STRTAB_STE_1_EATS,
  STRTAB_STE_1_EATS_ABT,
  STRTAB_STE_1_EATS_TRANS,
  STRTAB_STE_1_MEV,
  STRTAB_STE_1_S1CIR,
  STRTAB_STE_1_S1COR,
  STRTAB_STE_1_S1CSH,
  STRTAB_STE_1_S1DSS,
  STRTAB_STE_1_S1STALLD,
} from './arm-smmu-v3-regs.js';
import { armSmmuMakeAbortSte, armSmmuMakeS2DomainSte, type S2Config } from './arm-smmu-v3-ste.js';

/** Words of the guest STE a nested HWPT takes (kernel: struct iommu_hwpt_arm_smmuv3, 2 qwords). */
export const IOMMU_HWPT_ARM_SMMUV3_WORDS = 4;

/** The guest-ownable bits of STE qwords 0-1 (kernel: STRTAB_STE_0/1_NESTING_ALLOWED), as 4 words. */
const NESTING_ALLOWED: Uint32Array = (() => {
  const m = new Uint32Array(IOMMU_HWPT_ARM_SMMUV3_WORDS);
  for (const f of [STRTAB_STE_0_V, STRTAB_STE_0_CFG, STRTAB_STE_0_S1FMT, STRTAB_STE_0_S1CTXPTR_MASK, STRTAB_STE_0_S1CDMAX]) f.mark(m);
  for (const f of [STRTAB_STE_1_S1DSS, STRTAB_STE_1_S1CIR, STRTAB_STE_1_S1COR, STRTAB_STE_1_S1CSH, STRTAB_STE_1_S1STALLD, STRTAB_STE_1_EATS]) f.mark(m);
  return m;
})();

/** The kernel's struct arm_vsmmu */
export class ArmVsmmu implements ArmVsmmuRef {
  constructor(
    readonly smmu: ArmSmmuDevice,
    readonly s2Parent: ArmSmmuDomain,
    readonly vmid: number,
    readonly core: IommufdViommu,
  ) {}
}

/** The vSMMU behind a vIOMMU object. */
export function armVsmmuOf(viommu: IommufdViommu): ArmVsmmu {
  if (!(viommu.driverData instanceof ArmVsmmu)) throw new KernelError('EINVAL', `vIOMMU ${viommu.id} is not an arm-smmu-v3 vSMMU`);
  return viommu.driverData;
}

// kernel: arm_smmu_hw_info() [arm-smmu-v3-iommufd.c]
export function armSmmuHwInfo(dev: Device, type: number): IommuHwInfo {
  const master = masterOf(dev);
  const implInfo = type !== IOMMU_HW_INFO_TYPE_DEFAULT && type !== IOMMU_HW_INFO_TYPE_ARM_SMMUV3 ? (master.smmu.implOps?.hwInfo?.(master.smmu, type) ?? null) : null;
  if (implInfo) return implInfo;
  if (type !== IOMMU_HW_INFO_TYPE_DEFAULT && type !== IOMMU_HW_INFO_TYPE_ARM_SMMUV3) {
    throw new KernelError('EOPNOTSUPP', `${dev.name}: arm-smmu-v3 has no hardware information of type ${type}`);
  }
  const base = master.smmu.base;
  const data = new Uint32Array(8);
  for (let i = 0; i <= 5; i++) data[i] = base.readl(ARM_SMMU_IDR0 + 4 * i);
  data[6] = base.readl(ARM_SMMU_IIDR);
  data[7] = base.readl(ARM_SMMU_AIDR);
  return { type: IOMMU_HW_INFO_TYPE_ARM_SMMUV3, data };
}

function s2ConfigOf(parent: ArmSmmuDomain, vmid: number): S2Config {
  const s2 = parent.pgtblOps.armLpaeS2Cfg!;
  return { vmid, vttbr: s2.vttbr, vtcr: s2.vtcr };
}

// kernel: arm_smmu_make_nested_cd_table_ste() [arm-smmu-v3-iommufd.c]
export function armSmmuMakeNestedCdTableSte(target: Uint32Array, master: ArmSmmuMaster, nested: ArmSmmuNestedDomain, atsEnabled: boolean): void {
  armSmmuMakeS2DomainSte(target, master, s2ConfigOf(nested.vsmmu.s2Parent, nested.vsmmu.vmid), atsEnabled);
  target[0] = 0;
  target[1] = 0;
  STRTAB_STE_0_V.prep(target, 1);
  STRTAB_STE_0_CFG.prep(target, STRTAB_STE_0_CFG_NESTED);
  const guest = nested.ste.slice();
  STRTAB_STE_0_CFG.clear(guest);
  for (let w = 0; w < IOMMU_HWPT_ARM_SMMUV3_WORDS; w++) target[w] = (target[w] | guest[w]) >>> 0;
  // Merge events: a guest must not flood the host's event queue.
  STRTAB_STE_1_MEV.prep(target, 1);
}

/**
 * The physical STE for a guest STE: invalid or abort → abort (the guest sees its C_BAD_STE),
 * bypass → the plain stage 2 STE, S1 → nested.
 */
// kernel: arm_smmu_make_nested_domain_ste() [arm-smmu-v3-iommufd.c]
export function armSmmuMakeNestedDomainSte(target: Uint32Array, master: ArmSmmuMaster, nested: ArmSmmuNestedDomain, atsEnabled: boolean): void {
  let cfg = STRTAB_STE_0_CFG.get(nested.ste);
  if (!STRTAB_STE_0_V.isSet(nested.ste)) cfg = STRTAB_STE_0_CFG_ABORT;
  if (cfg === STRTAB_STE_0_CFG_S1_TRANS) armSmmuMakeNestedCdTableSte(target, master, nested, atsEnabled);
  else if (cfg === STRTAB_STE_0_CFG_BYPASS) armSmmuMakeS2DomainSte(target, master, s2ConfigOf(nested.vsmmu.s2Parent, nested.vsmmu.vmid), atsEnabled);
  else armSmmuMakeAbortSte(target);
}

/**
 * Check a guest STE (qwords 0-1 as 4 words, changed in place): V=0 is zeroed and allowed; other bits
 * than the guest's, a Config other than abort/bypass/S1, or EATS other than ABT/TRANS are EIO.
 * Returns whether the guest asked for ATS; EATS is cleared.
 */
// kernel: arm_smmu_validate_vste() [arm-smmu-v3-iommufd.c]
export function armSmmuValidateVste(ste: Uint32Array): boolean {
  if (!STRTAB_STE_0_V.isSet(ste)) {
    ste.fill(0);
    return false;
  }
  for (let w = 0; w < IOMMU_HWPT_ARM_SMMUV3_WORDS; w++) {
    const bad = (ste[w] & ~NESTING_ALLOWED[w]) >>> 0;
    if (bad !== 0) throw new KernelError('EIO', `guest STE qword ${w >> 1} sets bits 0x${bad.toString(16)} (word ${w & 1}) a guest may not own`);
  }
  const cfg = STRTAB_STE_0_CFG.get(ste);
  if (cfg !== STRTAB_STE_0_CFG_ABORT && cfg !== STRTAB_STE_0_CFG_BYPASS && cfg !== STRTAB_STE_0_CFG_S1_TRANS) {
    throw new KernelError('EIO', `guest STE Config ${cfg} is not abort, bypass or stage 1`);
  }
  const eats = STRTAB_STE_1_EATS.get(ste);
  STRTAB_STE_1_EATS.clear(ste);
  if (eats !== STRTAB_STE_1_EATS_ABT && eats !== STRTAB_STE_1_EATS_TRANS) throw new KernelError('EIO', `guest STE EATS ${eats} is not ABT or TRANS`);
  return cfg === STRTAB_STE_0_CFG_S1_TRANS && eats === STRTAB_STE_1_EATS_TRANS;
}

// kernel: arm_smmu_attach_dev_nested() [arm-smmu-v3-iommufd.c]
async function armSmmuAttachDevNested(domain: IommuDomain, dev: Device, old: IommuDomain | null): Promise<void> {
  if (!(domain instanceof ArmSmmuNestedDomain)) throw new KernelError('EINVAL', 'arm-smmu-v3: not a nested domain of this driver');
  const master = masterOf(dev);
  const vsmmu = domain.vsmmu as ArmVsmmu;
  if (vsmmu.smmu !== master.smmu) throw new KernelError('EINVAL', `${dev.name} is not behind ${vsmmu.smmu.name}`);
  if (armSmmuSsidsInUse(master)) throw new KernelError('EBUSY', `${dev.name}: the host uses PASIDs of this master`);
  await asidLocked(dev, async () => {
    const cfg = STRTAB_STE_0_CFG.get(domain.ste);
    const state: AttachState = { master, oldDomain: old, ssid: IOMMU_NO_PASID, cdNeedsAts: false, atsEnabled: false };
    // The guest forwards its own ATC invalidations: ATS is on only if the guest's STE says so.
    if (cfg === STRTAB_STE_0_CFG_S1_TRANS) state.disableAts = !domain.enableAts;
    state.vmaster = armSmmuAttachPrepareVmaster(dev, domain, vsmmu);
    armSmmuAttachPrepare(state, domain);
    const ste = newEntry();
    armSmmuMakeNestedDomainSte(ste, master, domain, state.atsEnabled);
    await armSmmuInstallSteForDev(master, ste);
    await armSmmuAttachCommit(state);
  });
}

/**
 * The guest link of a nested attach: a translating nested domain needs a vDEVICE (ENOENT), abort and
 * bypass may attach without one (the vSMMU's GBPA state).
 */
// kernel: arm_smmu_attach_prepare_vmaster() [arm-smmu-v3-iommufd.c]
function armSmmuAttachPrepareVmaster(dev: Device, domain: ArmSmmuNestedDomain, vsmmu: ArmVsmmu): ArmSmmuVmaster | null {
  const cfg = STRTAB_STE_0_V.isSet(domain.ste) ? STRTAB_STE_0_CFG.get(domain.ste) : STRTAB_STE_0_CFG_ABORT;
  let vsid: number;
  try {
    vsid = vsmmu.core.getVdevId(dev);
  } catch (e) {
    if (cfg === STRTAB_STE_0_CFG_ABORT || cfg === STRTAB_STE_0_CFG_BYPASS) return null;
    throw e;
  }
  const core = vsmmu.core;
  return { vsmmu, vsid, report: (evt) => core.reportEvent(IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, evt) };
}

// kernel: arm_vsmmu_alloc_domain_nested() [arm-smmu-v3-iommufd.c]
function armVsmmuAllocDomainNested(viommu: IommufdViommu, flags: number, data: IommuUserData, ops: DomainOps): IommuDomain {
  const vsmmu = armVsmmuOf(viommu);
  if (flags !== 0) throw new KernelError('EOPNOTSUPP', `nested HWPT flags 0x${flags.toString(16)} are not supported`);
  if (data.type !== IOMMU_HWPT_DATA_ARM_SMMUV3) throw new KernelError('EINVAL', `nested HWPT data type ${data.type} is not ARM_SMMUV3`);
  if (data.words.length < IOMMU_HWPT_ARM_SMMUV3_WORDS) throw new KernelError('EINVAL', `an ARM_SMMUV3 nested HWPT needs ${IOMMU_HWPT_ARM_SMMUV3_WORDS} words of STE`);
  const ste = data.words.slice(0, IOMMU_HWPT_ARM_SMMUV3_WORDS);
  const enableAts = armSmmuValidateVste(ste);
  const domain = new ArmSmmuNestedDomain(ops, vsmmu, ste, enableAts);
  domain.type = IOMMU_DOMAIN_NESTED;
  return domain;
}

/**
 * Rewrite one guest command in place for the host queue; EIO for a command a guest may not send or a
 * vSID without a vDEVICE.
 */
// kernel: arm_vsmmu_convert_user_cmd() [arm-smmu-v3-iommufd.c]
export function armVsmmuConvertUserCmd(vsmmu: ArmVsmmu, cmd: Uint32Array, off: number): void {
  const op = CMDQ_0_OP.get(cmd, off);
  switch (op) {
    case CMDQ_OP_TLBI_NSNH_ALL:
      cmd.fill(0, off, off + CMDQ_ENT_WORDS);
      CMDQ_0_OP.prep(cmd, CMDQ_OP_TLBI_NH_ALL, off);
      CMDQ_TLBI_0_VMID.prep(cmd, vsmmu.vmid, off);
      return;
    case CMDQ_OP_TLBI_NH_VA:
    case CMDQ_OP_TLBI_NH_VAA:
    case CMDQ_OP_TLBI_NH_ALL:
    case CMDQ_OP_TLBI_NH_ASID:
      CMDQ_TLBI_0_VMID.set(cmd, vsmmu.vmid, off);
      return;
    case CMDQ_OP_ATC_INV:
    case CMDQ_OP_CFGI_CD:
    case CMDQ_OP_CFGI_CD_ALL: {
      const vsid = CMDQ_CFGI_0_SID.get(cmd, off);
      const dev = vsmmu.core.findDev(vsid);
      if (!dev) throw new KernelError('EIO', `vSID 0x${vsid.toString(16)} has no vDEVICE on vIOMMU ${vsmmu.core.id}`);
      // Devices with one StreamID only, as iommufd has it.
      CMDQ_CFGI_0_SID.set(cmd, masterOf(dev).streams[0], off);
      return;
    }
    default:
      throw new KernelError('EIO', `command opcode 0x${op.toString(16)} may not be sent by a guest`);
  }
}

// kernel: arm_vsmmu_cache_invalidate() [arm-smmu-v3-iommufd.c]
async function armVsmmuCacheInvalidate(viommu: IommufdViommu, array: IommuUserDataArray): Promise<void> {
  const vsmmu = armVsmmuOf(viommu);
  if (array.type !== IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3) {
    array.entryNum = 0;
    throw new KernelError('EINVAL', `invalidation data type ${array.type} is not ARM_SMMUV3`);
  }
  const entries = array.entries;
  const per = CMDQ_BATCH_ENTRIES - 1;
  const buf = new Uint32Array(per * CMDQ_ENT_WORDS);
  let done = 0;
  let n = 0;
  const flush = async (): Promise<void> => {
    const r = await vsmmu.smmu.cmdq.issueCmdlist(buf, n, true);
    if (r !== 0) {
      array.entryNum = done;
      throw new KernelError(r, `vIOMMU ${viommu.id}: the host command queue did not complete the batch`);
    }
    done += n;
    n = 0;
  };
  for (const e of entries) {
    if (e.length !== CMDQ_ENT_WORDS) {
      array.entryNum = done;
      throw new KernelError('EINVAL', `an ARM_SMMUV3 invalidation entry is ${CMDQ_ENT_WORDS} words, not ${e.length}`);
    }
    buf.set(e, n * CMDQ_ENT_WORDS);
    try {
      armVsmmuConvertUserCmd(vsmmu, buf, n * CMDQ_ENT_WORDS);
    } catch (err) {
      // Commands before the bad one still run.
      if (n > 0) await flush();
      array.entryNum = done;
      throw err;
    }
    n++;
    if (n === per) await flush();
  }
  if (n > 0) await flush();
  array.entryNum = done;
}

/**
 * A vSMMU of `type` over `parent` for `dev`'s SMMU (kernel: arm_smmu_get_viommu_size() +
 * arm_vsmmu_init()): EOPNOTSUPP without nesting, without coherency, or for a type this driver has no
 * vIOMMU of; EINVAL for a parent that is not a nest-parent stage 2 of the same SMMU.
 */
// kernel: arm_vsmmu_init() [arm-smmu-v3-iommufd.c]
export async function armVsmmuAlloc(dev: Device, type: number, parent: IommuDomain, viommu: IommufdViommu, data: Uint32Array | null, nestedOps: DomainOps): Promise<IommufdViommuOps> {
  const master = masterOf(dev);
  const smmu = master.smmu;
  if ((smmu.features & ARM_SMMU_FEAT_NESTING) === 0) throw new KernelError('EOPNOTSUPP', `${smmu.name} cannot nest (it lacks stage 1 or stage 2)`);
  if ((smmu.features & ARM_SMMU_FEAT_COHERENCY) === 0) throw new KernelError('EOPNOTSUPP', `${smmu.name} is not coherent: a guest could bypass the caches`);
  const impl = smmu.implOps;
  const implType = type !== IOMMU_VIOMMU_TYPE_ARM_SMMUV3 && (impl?.viommuTypes?.includes(type) ?? false) && impl?.vsmmuInit !== undefined;
  if (type !== IOMMU_VIOMMU_TYPE_ARM_SMMUV3 && !implType) throw new KernelError('EOPNOTSUPP', `${smmu.name} has no vIOMMU of type ${type}`);
  if (!(parent instanceof ArmSmmuDomain) || parent.smmu !== smmu || parent.stage !== 'S2' || !parent.nestParent) {
    throw new KernelError('EINVAL', `the parent of a vSMMU on ${smmu.name} must be a nest-parent stage 2 domain of that SMMU`);
  }
  viommu.driverData = new ArmVsmmu(smmu, parent, parent.vmid, viommu);
  const ops: IommufdViommuOps = {
    allocDomainNested: (v, flags, d) => armVsmmuAllocDomainNested(v, flags, d, nestedOps),
    cacheInvalidate: armVsmmuCacheInvalidate,
  };
  // Commands the implementation does not take directly are still the vSMMU's (trapped).
  if (implType) return { ...ops, ...(await impl.vsmmuInit!(smmu, viommu, parent.vmid, data)) };
  return ops;
}

/** The ops of nested domains (the kernel's arm_smmu_nested_ops). */
export const armSmmuNestedOps: DomainOps = {
  attachDev: armSmmuAttachDevNested,
  // Nothing to release: the domain holds only the guest's STE words.
  free: () => undefined,
};
