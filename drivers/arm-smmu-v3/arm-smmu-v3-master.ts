/**
 * Masters and attaching them (kernel: struct arm_smmu_master and arm_smmu_probe_device(),
 * arm_smmu_release_device(), arm_smmu_attach_prepare()/_commit(), arm_smmu_attach_dev(),
 * arm_smmu_attach_dev_ste(), arm_smmu_set_pasid(), arm_smmu_remove_dev_pasid(), the CD writes, and
 * ATS/PASID/PRI enabling on PCI functions).
 *
 * Every STE and CD change goes through the entry writer with a sync hook that issues CFGI_STE /
 * CFGI_CD + CMD_SYNC, so a live entry is never seen torn. ATS follows the kernel's order: disabled in
 * the PCI function before an STE stops allowing it, enabled after an STE allows it, with the ATC
 * invalidated whenever the translation behind it changes.
 */
import type { Device } from '../../bus/device.js';
import { isKernelError, KernelError } from '../../bus/errno.js';
import { pciAtsSupported, pciDisableAts, pciDisablePasid, pciDisablePri, pciEnableAts, pciEnablePasid, pciEnablePri, pciMaxPasids, pciPasidFeatures, pciPriSupported } from '../../bus/pci/ats.js';
import { PciDevice } from '../../bus/pci/pci-device.js';
import { devIommu, devIommuPrivGet } from '../../core/iommu-device.js';
import { IOMMU_DOMAIN_BLOCKED, IOMMU_DOMAIN_IDENTITY, IOMMU_DOMAIN_SVA, __IOMMU_DOMAIN_PAGING, type IommuDomain } from '../../core/iommu-domain.js';
import { IOMMU_NO_PASID } from '../../core/iommu-pasid.js';
import { armSmmuGetCdUsed, armSmmuMakeS1Cd } from './arm-smmu-v3-cd.js';
import { armSmmuAsidSpace } from './arm-smmu-v3-asid.js';
import { ArmSmmuCdTable } from './arm-smmu-v3-cdtab.js';
import { ArmSmmuCmdqBatch, type ArmSmmuCmdqEnt } from './arm-smmu-v3-cmdq.js';
import { ArmSmmuDomain, ArmSmmuNestedDomain, armSmmuAtcInvMaster, armSmmuDomainFinalise, type ArmSmmuVmaster } from './arm-smmu-v3-domain.js';
import { LOG_NS, type ArmSmmuDevice } from './arm-smmu-v3-device.js';
import { armSmmuWriteEntry, newEntry, type ArmSmmuEntryWriter } from './arm-smmu-v3-entry.js';
import {
  ARM_SMMU_FEAT_2_LVL_CDTAB,
  ARM_SMMU_FEAT_ATS,
  ARM_SMMU_FEAT_PRI,
  ARM_SMMU_FEAT_STALL_FORCE,
  ARM_SMMU_FEAT_STALLS,
  ARM_SMMU_OPT_SKIP_PREFETCH,
  CMDQ_OP_CFGI_CD,
  CMDQ_OP_CFGI_STE,
  CMDQ_OP_PREFETCH_CFG,
  CTXDESC_CD_0_ASID,
  CTXDESC_CD_0_V,
  CTXDESC_LINEAR_CDMAX,
  STRTAB_STE_0_CFG,
  STRTAB_STE_0_CFG_S1_TRANS,
  STRTAB_STE_1_EATS,
  STRTAB_STE_1_EATS_TRANS,
  STRTAB_STE_1_S1DSS_BYPASS,
  STRTAB_STE_1_S1DSS_SSID0,
  STRTAB_STE_1_S1DSS_TERMINATE,
} from './arm-smmu-v3-regs.js';
import {
  armSmmuMakeAbortSte,
  armSmmuMakeBypassSte,
  armSmmuMakeCdtableSte,
  armSmmuMakeS2DomainSte,
  type SteMaster,
} from './arm-smmu-v3-ste.js';

/** Outstanding page requests a PRI-capable function is allowed (kernel: the PRI_REQS of the 5.x PRI patches). */
export const ARM_SMMU_PRI_REQS = 32;

/** The kernel's struct arm_smmu_master */
export class ArmSmmuMaster implements SteMaster {
  /** StreamIDs, in fwspec order (kernel: streams[]). */
  readonly streams: number[] = [];
  /** SubstreamID bits the CD table covers. */
  ssidBits = 0;
  stallEnabled = false;
  /** ATS is enabled in the PCI function (kernel: ats_enabled). */
  atsEnabled = false;
  /** The installed STE allows ATS (kernel: ste_ats_enabled). */
  steAtsEnabled = false;
  cdTable: ArmSmmuCdTable | null = null;
  /** IOPF enabled through the device-feature API. */
  iopfEnabled = false;
  /** PRI enabled in the PCI function. */
  priEnabled = false;
  /** Set while the RID is attached to a nested domain with a vDEVICE (kernel: vmaster). */
  vmaster: ArmSmmuVmaster | null = null;

  constructor(
    readonly smmu: ArmSmmuDevice,
    readonly dev: Device,
  ) {}

  get features(): number {
    return this.smmu.features;
  }

  get pci(): PciDevice | null {
    return this.dev instanceof PciDevice ? this.dev : null;
  }

  toString(): string {
    return `${this.dev.name} [SID ${this.streams.map((s) => `0x${s.toString(16)}`).join(',')}]`;
  }
}

/** The master of a probed device (kernel: dev_iommu_priv_get()). */
export function masterOf(dev: Device): ArmSmmuMaster {
  const m = devIommuPrivGet<unknown>(dev);
  if (!(m instanceof ArmSmmuMaster)) throw new KernelError('ENODEV', `${dev.name} is not an arm-smmu-v3 master`);
  return m;
}

// ---- STE writes ---------------------------------------------------------------------------------

/** CFGI_STE(leaf) + CMD_SYNC for one StreamID. */
// kernel: arm_smmu_ste_writer_sync_entry() [arm-smmu-v3.c]
async function steSync(smmu: ArmSmmuDevice, sid: number): Promise<void> {
  const ent: ArmSmmuCmdqEnt = { opcode: CMDQ_OP_CFGI_STE, cfgi: { sid, ssid: 0, leaf: true } };
  await smmu.issueCmdWithSync(ent);
}

// kernel: arm_smmu_write_ste() [arm-smmu-v3.c]
export async function armSmmuWriteSte(smmu: ArmSmmuDevice, sid: number, target: Uint32Array): Promise<void> {
  await smmu.strtab.writeSte(sid, target, () => steSync(smmu, sid));
  // It's likely the new STE is wanted soon.
  if ((smmu.options & ARM_SMMU_OPT_SKIP_PREFETCH) === 0) {
    void smmu.issueCmd({ opcode: CMDQ_OP_PREFETCH_CFG, prefetch: { sid } });
  }
}

// kernel: arm_smmu_install_ste_for_dev() [arm-smmu-v3.c]
export async function armSmmuInstallSteForDev(master: ArmSmmuMaster, target: Uint32Array): Promise<void> {
  if (master.cdTable) master.cdTable.inSte = STRTAB_STE_0_CFG.get(target) === STRTAB_STE_0_CFG_S1_TRANS;
  master.steAtsEnabled = STRTAB_STE_1_EATS.get(target) === STRTAB_STE_1_EATS_TRANS;
  const seen = new Set<number>();
  for (const sid of master.streams) {
    // Bridged PCI devices may end up with duplicated IDs.
    if (seen.has(sid)) continue;
    seen.add(sid);
    await armSmmuWriteSte(master.smmu, sid, target);
  }
}

// ---- CD writes ----------------------------------------------------------------------------------

/** CFGI_CD for every stream of the master, + CMD_SYNC. */
// kernel: arm_smmu_sync_cd() [arm-smmu-v3.c]
export async function armSmmuSyncCd(master: ArmSmmuMaster, ssid: number, leaf: boolean): Promise<void> {
  const smmu = master.smmu;
  const batch = new ArmSmmuCmdqBatch(smmu.cmdq, smmu);
  const cmd: ArmSmmuCmdqEnt = { opcode: CMDQ_OP_CFGI_CD, cfgi: { sid: 0, ssid, leaf } };
  for (const sid of master.streams) {
    cmd.cfgi!.sid = sid;
    batch.add(cmd);
  }
  await batch.submit();
}

/** PA of CD `ssid`, creating the CD table and leaf table as needed. Kernel: arm_smmu_alloc_cd_ptr() */
export async function armSmmuAllocCdPtr(master: ArmSmmuMaster, ssid: number): Promise<number> {
  const smmu = master.smmu;
  if (!master.cdTable) {
    try {
      master.cdTable = new ArmSmmuCdTable(master.ssidBits, (smmu.features & ARM_SMMU_FEAT_2_LVL_CDTAB) !== 0, smmu.ram, (size, what) => smmu.allocCoherent(size, what));
    } catch (e) {
      smmu.warn('failed to allocate context descriptor');
      throw new KernelError('ENOMEM', `${master.dev.name}: no CD table: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const { pa, l1Written } = master.cdTable.allocCdPa(ssid);
  // An invalid L1CD may have been cached.
  if (l1Written) await armSmmuSyncCd(master, ssid, false);
  return pa;
}

// kernel: arm_smmu_write_cd_entry() [arm-smmu-v3.c]
export async function armSmmuWriteCdEntry(master: ArmSmmuMaster, ssid: number, cdPa: number, target: Uint32Array): Promise<void> {
  const table = master.cdTable!;
  const cur = table.readCd(ssid);
  const targetValid = CTXDESC_CD_0_V.isSet(target);
  const curValid = CTXDESC_CD_0_V.isSet(cur);
  if (ssid !== IOMMU_NO_PASID && curValid !== targetValid) table.usedSsids += curValid ? -1 : 1;
  const ram = master.smmu.ram;
  const writer: ArmSmmuEntryWriter = {
    getUsed: armSmmuGetCdUsed,
    sync: () => armSmmuSyncCd(master, ssid, true),
    writeQword: (entry, i) => {
      ram.write32(cdPa + i * 8 + 4, entry[2 * i + 1]);
      ram.write32(cdPa + i * 8, entry[2 * i]);
    },
  };
  await armSmmuWriteEntry(writer, cur, target);
}

// kernel: arm_smmu_clear_cd() [arm-smmu-v3.c]
export async function armSmmuClearCd(master: ArmSmmuMaster, ssid: number): Promise<void> {
  const table = master.cdTable;
  if (!table) return;
  const pa = table.cdPa(ssid);
  if (pa === null) {
    master.smmu.warn(`clearing CD ${ssid} of ${master.dev.name}, which has no leaf table`);
    return;
  }
  await armSmmuWriteCdEntry(master, ssid, pa, newEntry());
}

// kernel: arm_smmu_ssids_in_use() [arm-smmu-v3.c]
export function armSmmuSsidsInUse(master: ArmSmmuMaster): boolean {
  return (master.cdTable?.usedSsids ?? 0) > 0;
}

// ---- ATS / PASID / PRI --------------------------------------------------------------------------

// kernel: arm_smmu_ats_supported() [arm-smmu-v3.c]
export function armSmmuAtsSupported(master: ArmSmmuMaster): boolean {
  const pdev = master.pci;
  if ((master.smmu.features & ARM_SMMU_FEAT_ATS) === 0) return false;
  if (!master.dev.fwspec?.atsSupported) return false;
  return pdev !== null && pciAtsSupported(pdev);
}

/** The Smallest Translation Unit: the smallest page the SMMU maps. */
function stuOf(smmu: ArmSmmuDevice): number {
  let stu = 0;
  while (stu < 52 && Math.floor(smmu.pgsizeBitmap / 2 ** stu) % 2 === 0) stu++;
  return stu;
}

// kernel: arm_smmu_enable_ats() [arm-smmu-v3.c]
async function armSmmuEnableAts(master: ArmSmmuMaster): Promise<void> {
  const stu = stuOf(master.smmu);
  // ATC invalidation of PASID 0 flushes the whole ATC.
  await armSmmuAtcInvMaster(master, IOMMU_NO_PASID);
  try {
    pciEnableAts(master.pci!, stu);
  } catch (e) {
    master.smmu.log.err(master.dev.name, `Failed to enable ATS (STU ${stu}): ${e instanceof Error ? e.message : String(e)}`, LOG_NS);
  }
}

// kernel: arm_smmu_enable_pasid() [arm-smmu-v3.c]
function armSmmuEnablePasid(master: ArmSmmuMaster): void {
  const pdev = master.pci;
  if (!pdev) return;
  let features: number;
  let numPasids: number;
  try {
    features = pciPasidFeatures(pdev);
    numPasids = pciMaxPasids(pdev);
  } catch (e) {
    if (isKernelError(e, 'EINVAL')) return; // no PASID capability
    throw e;
  }
  if (numPasids <= 0) return;
  try {
    pciEnablePasid(pdev, features);
  } catch (e) {
    master.smmu.log.err(pdev.name, `Failed to enable PASID: ${e instanceof Error ? e.message : String(e)}`, LOG_NS);
    return;
  }
  master.ssidBits = Math.min(Math.log2(numPasids), master.smmu.ssidBits);
}

// kernel: arm_smmu_disable_pasid() [arm-smmu-v3.c]
function armSmmuDisablePasid(master: ArmSmmuMaster): void {
  const pdev = master.pci;
  if (!pdev || !pdev.features.pasidEnabled) return;
  master.ssidBits = 0;
  pciDisablePasid(pdev);
}

/** PRI for a PCI master that supports it, once IOPF is enabled (it needs ATS to be of use). */
export function armSmmuPriSupported(master: ArmSmmuMaster): boolean {
  const pdev = master.pci;
  return (master.smmu.features & ARM_SMMU_FEAT_PRI) !== 0 && pdev !== null && pciPriSupported(pdev) && armSmmuAtsSupported(master);
}

export function armSmmuEnablePri(master: ArmSmmuMaster): void {
  const pdev = master.pci!;
  pciEnablePri(pdev, ARM_SMMU_PRI_REQS);
  master.priEnabled = true;
}

export function armSmmuDisablePri(master: ArmSmmuMaster): void {
  if (!master.priEnabled) return;
  pciDisablePri(master.pci!);
  master.priEnabled = false;
}

// ---- attach -------------------------------------------------------------------------------------

/** A domain that tracks its masters for invalidation: paging (and SVA) domains. */
// kernel: to_smmu_domain_devices() [arm-smmu-v3.c]
function toSmmuDomainDevices(domain: IommuDomain | null): ArmSmmuDomain | null {
  // A nested domain's invalidations are its stage 2 parent's.
  if (domain instanceof ArmSmmuNestedDomain) return domain.vsmmu.s2Parent;
  return domain instanceof ArmSmmuDomain && ((domain.type & __IOMMU_DOMAIN_PAGING) !== 0 || domain.type === IOMMU_DOMAIN_SVA) ? domain : null;
}

// kernel: arm_smmu_remove_master_domain() [arm-smmu-v3.c]
function armSmmuRemoveMasterDomain(master: ArmSmmuMaster, domain: IommuDomain | null, ssid: number): void {
  const d = toSmmuDomainDevices(domain);
  if (!d) return;
  const i = d.devices.findIndex((md) => md.master === master && md.ssid === ssid);
  if (i < 0) return;
  d.devices.splice(i, 1);
  if (master.atsEnabled) d.nrAtsMasters--;
}

/** The kernel's struct arm_smmu_attach_state */
export interface AttachState {
  readonly master: ArmSmmuMaster;
  readonly oldDomain: IommuDomain | null;
  readonly ssid: number;
  cdNeedsAts: boolean;
  atsEnabled: boolean;
  /** A nested attach whose guest did not ask for ATS (kernel: disable_ats). */
  disableAts?: boolean;
  /** The guest link a nested attach installs; none clears the master's (kernel: vmaster). */
  vmaster?: ArmSmmuVmaster | null;
}

/**
 * First step of every attach: decide ATS, put the master on the new domain's list (so both domains
 * invalidate its ATC until the switch is done), and turn ATS off in the function before an STE stops
 * allowing it.
 */
// kernel: arm_smmu_attach_prepare() [arm-smmu-v3.c]
export function armSmmuAttachPrepare(state: AttachState, newDomain: IommuDomain): void {
  const master = state.master;
  const d = toSmmuDomainDevices(newDomain);
  // ATS only with page tables: a bypass or abort STE answers ATS with UR.
  if (d || state.cdNeedsAts) state.atsEnabled = !state.disableAts && armSmmuAtsSupported(master);
  if (d) {
    if (state.atsEnabled) d.nrAtsMasters++;
    d.devices.push({ master, ssid: state.ssid });
  }
  if (!state.atsEnabled && master.atsEnabled) pciDisableAts(master.pci!);
}

/** Last step: ATS on (or its ATC flushed), and the master off the old domain's list. */
// kernel: arm_smmu_attach_commit() [arm-smmu-v3.c]
export async function armSmmuAttachCommit(state: AttachState): Promise<void> {
  const master = state.master;
  // Only the RID's attach changes the guest link (as arm_smmu_attach_commit_vmaster() does).
  if (state.ssid === IOMMU_NO_PASID) master.vmaster = state.vmaster ?? null;
  if (state.atsEnabled && !master.atsEnabled) {
    await armSmmuEnableAts(master);
  } else if (state.atsEnabled && master.atsEnabled) {
    // The translation changed: flush what the ATC cached of it.
    await armSmmuAtcInvMaster(master, state.ssid);
  } else if (!state.atsEnabled && master.atsEnabled) {
    // ATS is being switched off: flush the whole ATC.
    await armSmmuAtcInvMaster(master, IOMMU_NO_PASID);
  }
  master.atsEnabled = state.atsEnabled;
  armSmmuRemoveMasterDomain(master, state.oldDomain, state.ssid);
}

/** Finalise on first use; EINVAL for a domain of another SMMU. */
function finaliseFor(domain: ArmSmmuDomain, smmu: ArmSmmuDevice): void {
  if (!domain.smmu) armSmmuDomainFinalise(domain, smmu, 0);
  else if (domain.smmu !== smmu) throw new KernelError('EINVAL', `domain belongs to ${domain.smmu.name}, not ${smmu.name}`);
}

/**
 * Run `fn` under the kernel's ASID lock, so no CD is written with an ASID an SVA bind is taking away
 * (see arm-smmu-v3-asid.ts). A device that is no master of this driver runs `fn` as is, for its error.
 */
export function asidLocked<T>(dev: Device, fn: () => Promise<T>): Promise<T> {
  const m = devIommuPrivGet<unknown>(dev);
  return m instanceof ArmSmmuMaster ? armSmmuAsidSpace(m.smmu.dev.core).lock.run(fn) : fn();
}

/** The RID of `dev` translates through a paging domain. */
// kernel: arm_smmu_attach_dev() [arm-smmu-v3.c]
export function armSmmuAttachDev(domain: IommuDomain, dev: Device, old: IommuDomain | null): Promise<void> {
  return asidLocked(dev, () => attachDevLocked(domain, dev, old));
}

async function attachDevLocked(domain: IommuDomain, dev: Device, old: IommuDomain | null): Promise<void> {
  if (!dev.fwspec) throw new KernelError('ENOENT', `${dev.name} has no fwspec`);
  if (!(domain instanceof ArmSmmuDomain)) throw new KernelError('EINVAL', 'arm-smmu-v3: not a paging domain of this driver');
  const master = masterOf(dev);
  const smmu = master.smmu;
  finaliseFor(domain, smmu);

  let cdPa = 0;
  if (domain.stage === 'S1') cdPa = await armSmmuAllocCdPtr(master, IOMMU_NO_PASID);
  else if (armSmmuSsidsInUse(master)) throw new KernelError('EBUSY', `${dev.name}: PASIDs are attached; a stage 2 domain cannot take the RID`);

  const state: AttachState = { master, oldDomain: old, ssid: IOMMU_NO_PASID, cdNeedsAts: false, atsEnabled: false };
  armSmmuAttachPrepare(state, domain);
  const target = newEntry();
  if (domain.stage === 'S1') {
    const cd = newEntry();
    armSmmuMakeS1Cd(cd, master.stallEnabled, { asid: domain.asid, s1: domain.pgtblOps.armLpaeS1Cfg!, hd: domain.dirtyTracking });
    await armSmmuWriteCdEntry(master, IOMMU_NO_PASID, cdPa, cd);
    armSmmuMakeCdtableSte(target, master, state.atsEnabled, STRTAB_STE_1_S1DSS_SSID0);
    await armSmmuInstallSteForDev(master, target);
  } else {
    const s2 = domain.pgtblOps.armLpaeS2Cfg!;
    armSmmuMakeS2DomainSte(target, master, { vmid: domain.vmid, vttbr: s2.vttbr, vtcr: s2.vtcr }, state.atsEnabled);
    await armSmmuInstallSteForDev(master, target);
    await armSmmuClearCd(master, IOMMU_NO_PASID);
  }
  await armSmmuAttachCommit(state);
}

/**
 * Attach an identity or blocked domain: its STE, or a CD-table STE with `s1dss` when PASIDs still use
 * the CD table.
 */
// kernel: arm_smmu_attach_dev_ste() [arm-smmu-v3.c]
function armSmmuAttachDevSte(domain: IommuDomain, dev: Device, ste: Uint32Array, s1dss: number, old: IommuDomain | null): Promise<void> {
  return asidLocked(dev, () => attachDevSteLocked(domain, dev, ste, s1dss, old));
}

async function attachDevSteLocked(domain: IommuDomain, dev: Device, ste: Uint32Array, s1dss: number, old: IommuDomain | null): Promise<void> {
  const master = masterOf(dev);
  const state: AttachState = { master, oldDomain: old, ssid: IOMMU_NO_PASID, cdNeedsAts: false, atsEnabled: false };
  if (armSmmuSsidsInUse(master)) {
    // The PASIDs need the CD table and may need ATS, though the RID will get UR for it.
    state.cdNeedsAts = true;
    armSmmuAttachPrepare(state, domain);
    armSmmuMakeCdtableSte(ste, master, state.atsEnabled, s1dss);
  } else {
    armSmmuAttachPrepare(state, domain);
  }
  await armSmmuInstallSteForDev(master, ste);
  await armSmmuAttachCommit(state);
  // After the master left the old domain's list.
  await armSmmuClearCd(master, IOMMU_NO_PASID);
}

// kernel: arm_smmu_attach_dev_identity() [arm-smmu-v3.c]
export async function armSmmuAttachDevIdentity(domain: IommuDomain, dev: Device, old: IommuDomain | null): Promise<void> {
  const master = masterOf(dev);
  const ste = newEntry();
  armSmmuMakeBypassSte(master.smmu.features, ste);
  await armSmmuAttachDevSte(domain, dev, ste, STRTAB_STE_1_S1DSS_BYPASS, old);
}

// kernel: arm_smmu_attach_dev_blocked() [arm-smmu-v3.c]
export async function armSmmuAttachDevBlocked(domain: IommuDomain, dev: Device, old: IommuDomain | null): Promise<void> {
  const ste = newEntry();
  armSmmuMakeAbortSte(ste);
  await armSmmuAttachDevSte(domain, dev, ste, STRTAB_STE_1_S1DSS_TERMINATE, old);
}

/**
 * Make the STE a CD-table STE whose RID traffic behaves as the RID's identity/blocked domain does
 * (S1DSS bypass/terminate), or only update its EATS. Hitless.
 */
// kernel: arm_smmu_update_ste() [arm-smmu-v3.c]
async function armSmmuUpdateSte(master: ArmSmmuMaster, sidDomain: IommuDomain, atsEnabled: boolean): Promise<void> {
  if (master.cdTable?.inSte && master.steAtsEnabled === atsEnabled) return;
  let s1dss = STRTAB_STE_1_S1DSS_TERMINATE;
  if (sidDomain.type === IOMMU_DOMAIN_IDENTITY) s1dss = STRTAB_STE_1_S1DSS_BYPASS;
  else if (sidDomain.type !== IOMMU_DOMAIN_BLOCKED) master.smmu.warn(`update_ste with a ${sidDomain.type} RID domain`);
  const ste = newEntry();
  armSmmuMakeCdtableSte(ste, master, atsEnabled, s1dss);
  await armSmmuInstallSteForDev(master, ste);
}

/** The domain the RID of `dev` is attached to now (kernel: iommu_get_domain_for_dev()). */
function ridDomain(dev: Device): IommuDomain | null {
  return devIommu(dev)?.group?.domain ?? null;
}

/** The caller holds the ASID lock. */
// kernel: arm_smmu_set_pasid() [arm-smmu-v3.c]
export async function armSmmuSetPasid(master: ArmSmmuMaster, domain: ArmSmmuDomain, pasid: number, cd: Uint32Array, old: IommuDomain | null): Promise<void> {
  const sidDomain = ridDomain(master.dev);
  if (domain.smmu !== master.smmu) throw new KernelError('EINVAL', `${master.dev.name}: the domain belongs to another SMMU`);
  if (!sidDomain) throw new KernelError('EINVAL', `${master.dev.name}: its RID is attached to nothing`);
  if (!master.cdTable?.inSte && sidDomain.type !== IOMMU_DOMAIN_IDENTITY && sidDomain.type !== IOMMU_DOMAIN_BLOCKED) {
    throw new KernelError('EINVAL', `${master.dev.name}: the RID's domain does not use a CD table, so PASIDs cannot be attached`);
  }
  const cdPa = await armSmmuAllocCdPtr(master, pasid);
  const state: AttachState = { master, oldDomain: old, ssid: pasid, cdNeedsAts: false, atsEnabled: false };
  armSmmuAttachPrepare(state, domain);
  CTXDESC_CD_0_ASID.set(cd, domain.asid);
  await armSmmuWriteCdEntry(master, pasid, cdPa, cd);
  await armSmmuUpdateSte(master, sidDomain, state.atsEnabled);
  await armSmmuAttachCommit(state);
}

// kernel: arm_smmu_s1_set_dev_pasid() [arm-smmu-v3.c]
export function armSmmuS1SetDevPasid(domain: IommuDomain, dev: Device, pasid: number, old: IommuDomain | null): Promise<void> {
  return asidLocked(dev, () => s1SetDevPasidLocked(domain, dev, pasid, old));
}

async function s1SetDevPasidLocked(domain: IommuDomain, dev: Device, pasid: number, old: IommuDomain | null): Promise<void> {
  if (!(domain instanceof ArmSmmuDomain)) throw new KernelError('EINVAL', 'arm-smmu-v3: not a paging domain of this driver');
  const master = masterOf(dev);
  finaliseFor(domain, master.smmu);
  if (domain.stage !== 'S1') throw new KernelError('EINVAL', `${dev.name}: PASIDs need a stage 1 domain`);
  const cd = newEntry();
  armSmmuMakeS1Cd(cd, master.stallEnabled, { asid: domain.asid, s1: domain.pgtblOps.armLpaeS1Cfg!, hd: domain.dirtyTracking });
  await armSmmuSetPasid(master, domain, pasid, cd, old);
}

/**
 * The blocked domain's set_dev_pasid: clear the PASID's CD, and drop back to a plain STE when no PASID
 * uses the CD table any more. / arm_smmu_blocking_set_dev_pasid()
 */
// kernel: arm_smmu_remove_dev_pasid() [arm-smmu-v3.c]
export async function armSmmuRemoveDevPasid(_blocked: IommuDomain, dev: Device, pasid: number, old: IommuDomain | null): Promise<void> {
  const master = masterOf(dev);
  await asidLocked(dev, async () => {
    await armSmmuClearCd(master, pasid);
    if (master.atsEnabled) await armSmmuAtcInvMaster(master, pasid);
    armSmmuRemoveMasterDomain(master, old, pasid);
  });
  // The RID's identity or blocked attach takes the lock itself.
  if (!armSmmuSsidsInUse(master)) {
    const sidDomain = ridDomain(dev);
    if (sidDomain && (sidDomain.type === IOMMU_DOMAIN_IDENTITY || sidDomain.type === IOMMU_DOMAIN_BLOCKED)) {
      await sidDomain.ops.attachDev(sidDomain, dev, sidDomain);
    }
  }
}

// ---- probe / release ----------------------------------------------------------------------------

/** Put the master's StreamIDs in the SMMU's table (ERANGE / EINVAL on a bad or duplicate ID). */
// kernel: arm_smmu_insert_master() [arm-smmu-v3.c]
function armSmmuInsertMaster(smmu: ArmSmmuDevice, master: ArmSmmuMaster): void {
  const ids = master.dev.fwspec?.ids ?? [];
  const inserted: number[] = [];
  try {
    for (const sid of ids) {
      smmu.strtab.initSid(sid);
      if (smmu.streams.has(sid)) {
        smmu.log.warn(master.dev.name, `stream ${sid} already in tree`, LOG_NS);
        throw new KernelError('EINVAL', `${master.dev.name}: StreamID 0x${sid.toString(16)} is already used by ${smmu.streams.get(sid)!.dev.name}`);
      }
      smmu.streams.set(sid, master);
      inserted.push(sid);
      master.streams.push(sid);
    }
  } catch (e) {
    for (const sid of inserted) smmu.streams.delete(sid);
    master.streams.length = 0;
    throw e;
  }
}

// kernel: arm_smmu_remove_master() [arm-smmu-v3.c]
function armSmmuRemoveMaster(master: ArmSmmuMaster): void {
  for (const sid of master.streams) {
    if (master.smmu.streams.get(sid) === master) master.smmu.streams.delete(sid);
  }
}

/** (after the SMMU was found by fwnode) */
// kernel: arm_smmu_probe_device() [arm-smmu-v3.c]
export function armSmmuProbeMaster(smmu: ArmSmmuDevice, dev: Device): ArmSmmuMaster {
  const master = new ArmSmmuMaster(smmu, dev);
  armSmmuInsertMaster(smmu, master);
  master.ssidBits = Math.min(smmu.ssidBits, dev.fwspec?.pasidBits ?? 0);
  // PASID must be enabled before, and disabled after, ATS (PCIe: ATS Control with PASID changes is undefined).
  armSmmuEnablePasid(master);
  if ((smmu.features & ARM_SMMU_FEAT_2_LVL_CDTAB) === 0) master.ssidBits = Math.min(master.ssidBits, CTXDESC_LINEAR_CDMAX);
  // Not in Linux: a crash kernel leaves the event queue off, so nothing could ever see, let alone
  // answer, a stall (an event that cannot be recorded holds its transaction, SMMUv3 3.12.2). It
  // gives masters that merely can stall a terminating context instead; a forced stall model has no
  // such choice.
  const canStall = (smmu.features & ARM_SMMU_FEAT_STALLS) !== 0 && dev.fwspec?.canStall && !smmu.params.kdump;
  if (canStall || (smmu.features & ARM_SMMU_FEAT_STALL_FORCE) !== 0) {
    master.stallEnabled = true;
  }
  return master;
}

// kernel: arm_smmu_release_device() [arm-smmu-v3.c]
export async function armSmmuReleaseMaster(master: ArmSmmuMaster, identity: IommuDomain, blocked: IommuDomain): Promise<void> {
  const dev = master.dev;
  const old = ridDomain(dev);
  // Put the STE back to what the stream table starts with (abort; bypass without disable_bypass).
  if (devIommu(dev)?.requireDirect || !master.smmu.params.disableBypass) await armSmmuAttachDevIdentity(identity, dev, old);
  else await armSmmuAttachDevBlocked(blocked, dev, old);
  armSmmuDisablePri(master);
  if (master.atsEnabled) {
    pciDisableAts(master.pci!);
    master.atsEnabled = false;
  }
  armSmmuDisablePasid(master);
  armSmmuRemoveMaster(master);
  if (master.cdTable) {
    for (const buf of master.cdTable.buffers()) master.smmu.freeCoherent(buf);
    master.cdTable = null;
  }
}
