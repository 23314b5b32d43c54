/**
 * Bring-up and teardown of one SMMU of the arm-smmu driver (kernel: arm_smmu_device_cfg_probe(),
 * arm_smmu_device_reset(), arm_smmu_test_smr_masks() and arm_smmu_device_shutdown() of arm-smmu.c):
 * the configuration from ID0/ID1/ID2, reset from the shadows, the SMR width probe, terminating
 * stalled transactions (shutdown, reset, bank teardown), and shutdown per
 * `arm-smmu.shutdown_policy`. The v3 driver keeps these in arm-smmu-v3-device.ts next to its
 * struct; here arm-smmu-device.ts (the structs of arm-smmu.h) is imported by the context, fault,
 * TLB and stream-map files this code calls, so it lives in its own file (no import cycles).
 */
import { FIELD_GET, FIELD_PREP } from '../../bus/bitfield.js';
import { KernelError } from '../../bus/errno.js';
import { readPollTimeout } from '../../bus/io.js';
import type { KernelLog } from '../../bus/log.js';
import { armSmmuWriteContextBank, armSmmuWriteSctlr } from './arm-smmu-context.js';
import {
  ARM_SMMU_FEAT_COHERENT_WALK,
  ARM_SMMU_FEAT_EXIDS,
  ARM_SMMU_FEAT_FMT_AARCH32_L,
  ARM_SMMU_FEAT_FMT_AARCH32_S,
  ARM_SMMU_FEAT_FMT_AARCH64_16K,
  ARM_SMMU_FEAT_FMT_AARCH64_4K,
  ARM_SMMU_FEAT_FMT_AARCH64_64K,
  ARM_SMMU_FEAT_STREAM_MATCH,
  ARM_SMMU_FEAT_TRANS_NESTED,
  ARM_SMMU_FEAT_TRANS_OPS,
  ARM_SMMU_FEAT_TRANS_S1,
  ARM_SMMU_FEAT_TRANS_S2,
  ARM_SMMU_FEAT_VMID16,
  ARM_SMMU_V1_64K,
  ARM_SMMU_V2,
  ArmSmmuDevice,
} from './arm-smmu-device.js';
import { armSmmuContextFaultResume, armSmmuPendingFault } from './arm-smmu-fault.js';
import { armSmmuWriteSme } from './arm-smmu-stream-map.js';
import {
  ARM_SMMU_CB_FSR,
  ARM_SMMU_CB_RESUME,
  ARM_SMMU_CB_SCTLR,
  SCTLR_CFCFG,
  ARM_SMMU_GR0_ID0,
  ARM_SMMU_GR0_ID1,
  ARM_SMMU_GR0_ID2,
  ARM_SMMU_GR0_SMR,
  ARM_SMMU_GR0_TLBIALLH,
  ARM_SMMU_GR0_TLBIALLNSNH,
  ARM_SMMU_GR0_sCR0,
  ARM_SMMU_GR0_sGFSR,
  CB_FSR_FAULT,
  CB_FSR_SS,
  ID0_ATOSNS,
  ID0_CTTW,
  ID0_EXIDS,
  ID0_NTS,
  ID0_NUMSIDB,
  ID0_NUMSMRG,
  ID0_PTFS_NO_AARCH32,
  ID0_PTFS_NO_AARCH32S,
  ID0_S1TS,
  ID0_S2TS,
  ID0_SMS,
  ID1_NUMCB,
  ID1_NUMPAGENDXB,
  ID1_NUMS2CB,
  ID1_PAGESIZE,
  ID2_IAS,
  ID2_OAS,
  ID2_PTFS_16K,
  ID2_PTFS_4K,
  ID2_PTFS_64K,
  ID2_UBS,
  ID2_VMID16,
  QCOM_DUMMY_VAL,
  RESUME_TERMINATE,
  S2CR_TYPE_FAULT,
  SCTLR_CFIE,
  sCR0_BSU,
  sCR0_CLIENTPD,
  sCR0_EXIDENABLE,
  sCR0_FB,
  sCR0_GCFGFIE,
  sCR0_GCFGFRE,
  sCR0_GFIE,
  sCR0_GFRE,
  sCR0_PTM,
  sCR0_USFCFG,
  sCR0_VMID16EN,
  sCR0_VMIDPNE,
  SMR_ID,
  SMR_MASK,
  armSmmuIdSizeToBits,
  type S2crType,
} from './arm-smmu-regs.js';
import { armSmmuTlbSyncGlobal } from './arm-smmu-tlb.js';

const LOG_NS = 'iommu:drivers:arm-smmu';

const hex = (v: number): string => `0x${v.toString(16)}`;
const SZ_4K = 0x1000;
const SZ_16K = 0x4000;
const SZ_64K = 0x1_0000;
const SZ_1M = 0x10_0000;
const SZ_2M = 0x20_0000;
const SZ_16M = 0x100_0000;
const SZ_32M = 0x200_0000;
const SZ_512M = 0x2000_0000;
const SZ_1G = 0x4000_0000;

function log(smmu: ArmSmmuDevice): KernelLog {
  return smmu.dev.core.log;
}


/**
 * Read the configuration from the ID registers.
 */
// kernel: arm_smmu_device_cfg_probe() [arm-smmu.c]
export function armSmmuDeviceCfgProbe(smmu: ArmSmmuDevice): void {
  const lg = log(smmu);
  const note = (m: string): void => lg.info(smmu.name, m, LOG_NS);
  const cttwFw = (smmu.features & ARM_SMMU_FEAT_COHERENT_WALK) !== 0;
  note('probing hardware configuration...');
  note(`SMMUv${smmu.version === ARM_SMMU_V2 ? 2 : 1} with:`);

  // ID0
  let id = smmu.gr0Read(ARM_SMMU_GR0_ID0);
  if ((id & ID0_S1TS) !== 0) {
    smmu.features |= ARM_SMMU_FEAT_TRANS_S1;
    note('\tstage 1 translation');
  }
  if ((id & ID0_S2TS) !== 0) {
    smmu.features |= ARM_SMMU_FEAT_TRANS_S2;
    note('\tstage 2 translation');
  }
  if ((id & ID0_NTS) !== 0) {
    smmu.features |= ARM_SMMU_FEAT_TRANS_NESTED;
    note('\tnested translation');
  }
  if (!(smmu.features & (ARM_SMMU_FEAT_TRANS_S1 | ARM_SMMU_FEAT_TRANS_S2))) {
    lg.err(smmu.name, '\tno translation support!', LOG_NS);
    throw new KernelError('ENODEV', `${smmu.name}: ID0 reports no translation stage`);
  }
  if ((id & ID0_S1TS) !== 0 && (smmu.version < ARM_SMMU_V2 || (id & ID0_ATOSNS) === 0)) {
    smmu.features |= ARM_SMMU_FEAT_TRANS_OPS;
    note('\taddress translation ops');
  }
  // Firmware's dma-coherent wins over what ID0.CTTW says.
  const cttwReg = (id & ID0_CTTW) !== 0;
  if (cttwFw || cttwReg) note(`\t${cttwFw ? '' : 'non-'}coherent table walk`);
  if (cttwFw !== cttwReg) note('\t(IDR0.CTTW overridden by FW configuration)');

  let size: number;
  if (smmu.version === ARM_SMMU_V2 && (id & ID0_EXIDS) !== 0) {
    smmu.features |= ARM_SMMU_FEAT_EXIDS;
    size = 1 << 16;
  } else {
    size = 1 << FIELD_GET(ID0_NUMSIDB, id);
  }
  smmu.streamidMask = size - 1;
  if ((id & ID0_SMS) !== 0) {
    smmu.features |= ARM_SMMU_FEAT_STREAM_MATCH;
    size = FIELD_GET(ID0_NUMSMRG, id);
    if (size === 0) {
      lg.err(smmu.name, 'stream-matching supported, but no SMRs present!', LOG_NS);
      throw new KernelError('ENODEV', `${smmu.name}: stream matching with no SMRs`);
    }
    smmu.smrs = Array.from({ length: size }, () => ({ id: 0, mask: 0, valid: false }));
    note(`\tstream matching with ${size} register groups`);
  }
  smmu.s2crs = Array.from({ length: size }, () => smmu.s2crInitVal());
  smmu.numMappingGroups = size;
  if (smmu.version < ARM_SMMU_V2 || (id & ID0_PTFS_NO_AARCH32) === 0) {
    smmu.features |= ARM_SMMU_FEAT_FMT_AARCH32_L;
    if ((id & ID0_PTFS_NO_AARCH32S) === 0) smmu.features |= ARM_SMMU_FEAT_FMT_AARCH32_S;
  }

  // ID1
  id = smmu.gr0Read(ARM_SMMU_GR0_ID1);
  smmu.pgshift = (id & ID1_PAGESIZE) !== 0 ? 16 : 12;
  size = 1 << (FIELD_GET(ID1_NUMPAGENDXB, id) + 1);
  const spaceSize = (2 * size) << smmu.pgshift;
  if (smmu.numpage !== spaceSize) {
    lg.warn(smmu.name, `SMMU address space size (${hex(spaceSize)}) differs from mapped region size (${hex(smmu.numpage)})!`, LOG_NS);
  }
  if (spaceSize > smmu.base.size) {
    throw new KernelError('ENODEV', `${smmu.name}: the register space (${hex(spaceSize)} bytes) is larger than the mapped region (${hex(smmu.base.size)})`);
  }
  // From now on numpage is NUMPAGE, so context bank n is at page numpage + n.
  smmu.numpage = size;
  smmu.numS2ContextBanks = FIELD_GET(ID1_NUMS2CB, id);
  smmu.numContextBanks = FIELD_GET(ID1_NUMCB, id);
  if (smmu.numS2ContextBanks > smmu.numContextBanks) {
    lg.err(smmu.name, 'impossible number of S2 context banks!', LOG_NS);
    throw new KernelError('ENODEV', `${smmu.name}: ${smmu.numS2ContextBanks} stage-2-only banks of ${smmu.numContextBanks}`);
  }
  note(`\t${smmu.numContextBanks} context banks (${smmu.numS2ContextBanks} stage-2 only)`);
  smmu.cbs = Array.from({ length: smmu.numContextBanks }, () => ({ ttbr: [0n, 0n], tcr: [0, 0], mair: [0, 0], cfg: null, domain: null }));
  smmu.contextMap.length = 0;
  for (let i = 0; i < smmu.numContextBanks; i++) smmu.contextMap.push(false);

  // ID2
  id = smmu.gr0Read(ARM_SMMU_GR0_ID2);
  smmu.ipaSize = armSmmuIdSizeToBits(FIELD_GET(ID2_IAS, id));
  smmu.paSize = armSmmuIdSizeToBits(FIELD_GET(ID2_OAS, id));
  if ((id & ID2_VMID16) !== 0) smmu.features |= ARM_SMMU_FEAT_VMID16;
  if (smmu.version < ARM_SMMU_V2) {
    smmu.vaSize = smmu.ipaSize;
    if (smmu.version === ARM_SMMU_V1_64K) smmu.features |= ARM_SMMU_FEAT_FMT_AARCH64_64K;
  } else {
    smmu.vaSize = armSmmuIdSizeToBits(FIELD_GET(ID2_UBS, id));
    if ((id & ID2_PTFS_4K) !== 0) smmu.features |= ARM_SMMU_FEAT_FMT_AARCH64_4K;
    if ((id & ID2_PTFS_16K) !== 0) smmu.features |= ARM_SMMU_FEAT_FMT_AARCH64_16K;
    if ((id & ID2_PTFS_64K) !== 0) smmu.features |= ARM_SMMU_FEAT_FMT_AARCH64_64K;
  }

  smmu.impl?.cfgProbe?.(smmu);

  // What the formats add up to.
  smmu.pgsizeBitmap = 0;
  if (smmu.features & ARM_SMMU_FEAT_FMT_AARCH32_S) smmu.pgsizeBitmap += SZ_4K + SZ_64K + SZ_1M + SZ_16M;
  if (smmu.features & (ARM_SMMU_FEAT_FMT_AARCH32_L | ARM_SMMU_FEAT_FMT_AARCH64_4K)) {
    for (const s of [SZ_4K, SZ_2M, SZ_1G]) if (Math.floor(smmu.pgsizeBitmap / s) % 2 === 0) smmu.pgsizeBitmap += s;
  }
  if (smmu.features & ARM_SMMU_FEAT_FMT_AARCH64_16K) smmu.pgsizeBitmap += SZ_16K + SZ_32M;
  if (smmu.features & ARM_SMMU_FEAT_FMT_AARCH64_64K) {
    for (const s of [SZ_64K, SZ_512M]) if (Math.floor(smmu.pgsizeBitmap / s) % 2 === 0) smmu.pgsizeBitmap += s;
  }
  note(`\tSupported page sizes: 0x${smmu.pgsizeBitmap.toString(16).padStart(8, '0')}`);
  if (smmu.features & ARM_SMMU_FEAT_TRANS_S1) note(`\tStage-1: ${smmu.vaSize}-bit VA -> ${smmu.ipaSize}-bit IPA`);
  if (smmu.features & ARM_SMMU_FEAT_TRANS_S2) note(`\tStage-2: ${smmu.ipaSize}-bit IPA -> ${smmu.paSize}-bit PA`);
}

/**
 * Bring the SMMU to the driver's state: stream map and banks from the shadows, TLBs invalidated,
 * sCR0 with fault reporting on and client access enabled.
 */
// kernel: arm_smmu_device_reset() [arm-smmu.c]
export async function armSmmuDeviceReset(smmu: ArmSmmuDevice): Promise<void> {
  // Not in Linux: a crash kernel (or anything booted without the previous kernel's shutdown) may find
  // transactions still stalled in the banks. Terminate them before the banks are rewritten (SCTLR = 0
  // would turn the terminate into a silent RAZ/WI), so no master waits forever on a kernel that is gone.
  await armSmmuTerminateStalls(smmu, Array.from({ length: smmu.numContextBanks }, (_, i) => i));
  // Clear the global FSR.
  smmu.gr0Write(ARM_SMMU_GR0_sGFSR, smmu.gr0Read(ARM_SMMU_GR0_sGFSR));
  // Stream mapping groups from the shadows: invalid SMRs, S2CRs at their initial type.
  for (let i = 0; i < smmu.numMappingGroups; i++) armSmmuWriteSme(smmu, i);
  // Every bank as configured (unassigned ones disabled), its FSR clear.
  for (let i = 0; i < smmu.numContextBanks; i++) {
    armSmmuWriteContextBank(smmu, i);
    smmu.cbWrite(i, ARM_SMMU_CB_FSR, CB_FSR_FAULT);
  }
  // Invalidate the TLB, just in case.
  smmu.gr0Write(ARM_SMMU_GR0_TLBIALLH, QCOM_DUMMY_VAL);
  smmu.gr0Write(ARM_SMMU_GR0_TLBIALLNSNH, QCOM_DUMMY_VAL);
  let reg = smmu.gr0Read(ARM_SMMU_GR0_sCR0);
  // Fault reporting on; TLB broadcast off.
  reg |= sCR0_GFRE | sCR0_GFIE | sCR0_GCFGFRE | sCR0_GCFGFIE;
  reg |= sCR0_VMIDPNE | sCR0_PTM;
  // Client access on, unmatched streams as disable_bypass says.
  reg &= ~sCR0_CLIENTPD;
  if (smmu.params['arm-smmu.disable_bypass']) reg |= sCR0_USFCFG;
  else reg &= ~sCR0_USFCFG;
  // No forced broadcast, no barrier upgrade.
  reg &= ~sCR0_FB;
  reg &= ~sCR0_BSU;
  if (smmu.features & ARM_SMMU_FEAT_VMID16) reg |= sCR0_VMID16EN;
  if (smmu.features & ARM_SMMU_FEAT_EXIDS) reg |= sCR0_EXIDENABLE;
  smmu.impl?.reset?.(smmu);
  // Push the button.
  await armSmmuTlbSyncGlobal(smmu);
  smmu.gr0Write(ARM_SMMU_GR0_sCR0, reg >>> 0);
}

/**
 * Find how many SMR ID and MASK bits are implemented, by writing all-ones into a free SMR and
 * reading it back.
 */
// kernel: arm_smmu_test_smr_masks() [arm-smmu.c]
export function armSmmuTestSmrMasks(smmu: ArmSmmuDevice): void {
  if (!smmu.smrs) return;
  // Live SMRs everywhere: nothing to test with, and nothing to worry about.
  const i = smmu.smrs.findIndex((s) => !s.valid);
  if (i < 0) return;
  // ID bits may be dropped where MASK bits are set: test each field on its own.
  smmu.gr0Write(ARM_SMMU_GR0_SMR(i), FIELD_PREP(SMR_ID, smmu.streamidMask & 0xffff));
  smmu.streamidMask = FIELD_GET(SMR_ID, smmu.gr0Read(ARM_SMMU_GR0_SMR(i)));
  smmu.gr0Write(ARM_SMMU_GR0_SMR(i), FIELD_PREP(SMR_MASK, smmu.streamidMask));
  smmu.smrMaskMask = FIELD_GET(SMR_MASK, smmu.gr0Read(ARM_SMMU_GR0_SMR(i)));
}


/** How long teardown waits for a terminated stall to retire (µs), polling every µs. */
export const ARM_SMMU_STALL_RETIRE_TIMEOUT_US = 10_000;

/**
 * Stop bank `idx` stalling (SCTLR.CFCFG = 0, through the impl's hook): transactions that were waiting
 * behind its stall (HUPCF = 0) and are admitted once it is terminated then fault in terminate mode
 * instead of stalling again with nobody left to answer. The shadow agrees (stallSuspended), and a
 * quiesced SMMU's RESUME path never turns stalling back on.
 */
function armSmmuStopStalling(smmu: ArmSmmuDevice, idx: number): void {
  const cfg = smmu.cbs[idx]?.cfg ?? null;
  if (cfg) {
    if (cfg.stall && !cfg.stallSuspended) {
      cfg.stallSuspended = true;
      armSmmuWriteSctlr(smmu, idx);
    }
    return;
  }
  const sctlr = smmu.cbRead(idx, ARM_SMMU_CB_SCTLR);
  if ((sctlr & SCTLR_CFCFG) !== 0) smmu.cbWrite(idx, ARM_SMMU_CB_SCTLR, (sctlr & ~SCTLR_CFCFG) >>> 0);
}

/** Answer whatever bank `idx` has latched: clear FSR, and terminate the transaction if it stalled. */
function armSmmuTerminateBank(smmu: ArmSmmuDevice, idx: number): void {
  const domain = smmu.cbs[idx].domain;
  if (domain && (domain.faultPending || armSmmuPendingFault(domain))) {
    armSmmuContextFaultResume(domain, 'terminate');
    return;
  }
  const fsr = smmu.cbRead(idx, ARM_SMMU_CB_FSR);
  if (!(fsr & CB_FSR_FAULT)) return;
  smmu.cbWrite(idx, ARM_SMMU_CB_FSR, fsr);
  if ((fsr & CB_FSR_SS) !== 0) smmu.cbWrite(idx, ARM_SMMU_CB_RESUME, RESUME_TERMINATE);
}

/**
 * Terminate every stalled transaction of banks `banks` and wait until the stalls have retired
 * (FSR.SS clear), so no master is left waiting: stalling is stopped first, so a transaction that was
 * queued behind the stall cannot stall again once admitted. A RESUME the SMMU ignored (a fault latched
 * again meanwhile) is answered again on the next poll. Kernel-style poll with a timeout; on timeout
 * the banks still stalled are named in the log.
 */
export async function armSmmuTerminateStalls(smmu: ArmSmmuDevice, banks: readonly number[]): Promise<void> {
  // Answer first (answering a fault lets a suspended bank stall again), then stop stalling, before the
  // RESUME is carried out and the waiters are admitted.
  for (const i of banks) armSmmuTerminateBank(smmu, i);
  for (const i of banks) armSmmuStopStalling(smmu, i);
  const stalled = (): number[] => banks.filter((i) => (smmu.cbRead(i, ARM_SMMU_CB_FSR) & CB_FSR_SS) !== 0);
  try {
    await readPollTimeout(
      smmu.dev.port,
      () => {
        const left = stalled();
        // Answer again what was latched since: the RESUME is ignored while FSR records a fault.
        for (const i of left) if (smmu.cbRead(i, ARM_SMMU_CB_FSR) & CB_FSR_FAULT) armSmmuTerminateBank(smmu, i);
        return left.length;
      },
      (n) => n === 0,
      1,
      ARM_SMMU_STALL_RETIRE_TIMEOUT_US,
      `${smmu.name}: stalled transactions to retire`,
    );
  } catch (e) {
    if (!(e instanceof KernelError)) throw e;
    log(smmu).err(smmu.name, `stalled transactions did not retire in context bank(s) ${stalled().join(', ')}: ${e.message}`, LOG_NS);
  }
}

/** Invalidate every SMR (shadow and register), so every stream is unmatched. */
function armSmmuClearStreamMap(smmu: ArmSmmuDevice, s2crType: S2crType | null): void {
  for (let i = 0; i < smmu.numMappingGroups; i++) {
    const init = smmu.s2crInitVal();
    smmu.s2crs[i] = s2crType === null ? init : { ...init, type: s2crType };
    if (smmu.smrs) smmu.smrs[i] = { id: 0, mask: 0, valid: false };
    armSmmuWriteSme(smmu, i);
  }
}

/**
 * Leave the SMMU for whatever runs next (a reboot, a kexec'd kernel), as
 * `arm-smmu.shutdown_policy` says.
 */
// kernel: arm_smmu_device_shutdown() [arm-smmu.c]
export async function armSmmuDeviceShutdown(smmu: ArmSmmuDevice): Promise<void> {
  const lg = log(smmu);
  if (smmu.contextMap.some((used) => used)) lg.info(smmu.name, 'disabling translation', LOG_NS);
  smmu.quiesced = true;
  smmu.faultQueue.clear();
  await armSmmuTerminateStalls(smmu, Array.from({ length: smmu.numContextBanks }, (_, i) => i));
  const policy = smmu.params['arm-smmu.shutdown_policy'];
  const faultIrqs = smmu.params['arm-smmu.shutdown_fault_irqs'];
  const irqBits = (sCR0_GFIE | sCR0_GCFGFIE) >>> 0;
  let scr0: number;
  switch (policy) {
    case 'bypass':
      // Linux today: client ports disabled, everything passes untranslated.
      scr0 = sCR0_CLIENTPD;
      if (faultIrqs) scr0 |= sCR0_GFRE | sCR0_GCFGFRE | irqBits;
      break;
    case 'abort-unmatched':
    case 'abort-all':
      // Every stream unmatched (and every S2CR faulting for abort-all): unmatched streams abort.
      armSmmuClearStreamMap(smmu, policy === 'abort-all' ? S2CR_TYPE_FAULT : null);
      scr0 = (smmu.gr0Read(ARM_SMMU_GR0_sCR0) & ~sCR0_CLIENTPD) | sCR0_USFCFG | sCR0_GFRE | sCR0_GCFGFRE;
      scr0 = faultIrqs ? scr0 | irqBits : scr0 & ~irqBits;
      break;
    case 'translate':
      // Stay enabled with the stream map back at its boot state (USFCFG as disable_bypass says).
      armSmmuClearStreamMap(smmu, null);
      scr0 = smmu.gr0Read(ARM_SMMU_GR0_sCR0) & ~sCR0_CLIENTPD;
      scr0 = faultIrqs ? scr0 | irqBits : scr0 & ~irqBits;
      break;
  }
  if (!faultIrqs) {
    // No context fault interrupts either.
    for (let i = 0; i < smmu.numContextBanks; i++) {
      const sctlr = smmu.cbRead(i, ARM_SMMU_CB_SCTLR);
      if (sctlr & SCTLR_CFIE) smmu.cbWrite(i, ARM_SMMU_CB_SCTLR, (sctlr & ~SCTLR_CFIE) >>> 0);
    }
  }
  smmu.gr0Write(ARM_SMMU_GR0_sCR0, scr0 >>> 0);
  lg.info(smmu.name, `shutdown: policy ${policy}, fault interrupts ${faultIrqs ? 'kept' : 'disabled'}, sCR0 = ${hex(scr0 >>> 0)}`, LOG_NS);
}

