/**
 * Global and context fault handling of the arm-smmu driver (kernel: arm_smmu_global_fault(),
 * arm_smmu_context_fault() and the fault-info helpers of arm-smmu.c), with stall support as the
 * 2017 stall thread converged on it.
 *
 * Global faults are handled in the interrupt: the syndrome is logged ("Blocked unknown Stream ID"
 * for an unmatched stream under disable_bypass) and sGFSR cleared.
 *
 * Context faults are split in two, so the domain's fault handler may sleep:
 * - the hard interrupt handler reads the fault registers (FSR, FSYNR0/1, FAR, CBFRSYNRA) and queues a
 *   work item on the SMMU's fault workqueue (a p-queue) with a copy of that syndrome. A fault that did
 *   not stall (SCTLR.CFCFG=0: the transaction was already terminated, nothing waits on a RESUME) has
 *   its FSR cleared right there (write-1-to-clear, the value read), as Linux clears it before its
 *   handler returns: with HUPCF=0 a fault left recorded in FSR terminates every other transaction of
 *   the bank, so a slow handler must not keep it there. A stalled fault (FSR.SS) stays latched until
 *   it is answered; with `arm-smmu.stall_storm_guard` the interrupt also clears SCTLR.CFCFG at once,
 *   so further faults terminate rather than stall until this one is answered;
 * - the work item reports the copy to the iommu core's common path (`reportIommuFault`: the domain's
 *   fault handler, which may be async and may inspect the master while a stalled transaction is
 *   frozen) and logs it when nobody handled it. For a stalled fault it then clears FSR and writes
 *   RESUME with the verdict, by the kernel's rule (the RESUME write of arm_smmu_context_fault(), and
 *   qcom_smmu_context_fault()'s): only -EAGAIN retries (TnR=0); 0 means "handled" and, like any other
 *   errno, terminates (TnR=1). A handler that only records the fault (the 2017 thread's debugfs use)
 *   is thus called once per fault and its master sees the transaction terminated. FSR must be clear
 *   first: MMU-500 ignores RESUME while it records a fault. The FSR written back is re-read just
 *   before, so a MULTI latched while the handler ran is cleared too and cannot make the SMMU ignore
 *   the RESUME.
 * A bank has at most one stalled fault in flight (`faultPending`): the interrupt of a stall being
 * handled is not queued twice. Faults that did not stall are each handed on (one handler call per
 * interrupt), as Linux calls its handler once per interrupt.
 *
 * Kernel versions: v6.17 (the baseline) resumes from arm_smmu_context_fault() as above; v6.1's
 * generic handler never wrote RESUME (only the Adreno GPU driver did, through its
 * resume_translation hook). The Qualcomm debug handler with TBUs (CONFIG_ARM_SMMU_QCOM_DEBUG, where
 * -EBUSY leaves the fault latched for the client) is not modelled: no TBU is.
 *
 * Masters whose faults go to the I/O page-fault core (on an IOPF queue, or with a device fault
 * handler) get their stalled faults reported there as page requests of one (group index = the
 * context bank); the core's answer comes back through the `pageResponse` op, which is
 * `armSmmuContextFaultResume` with SUCCESS as retry and anything else as terminate.
 */
import { FIELD_GET } from '../../bus/bitfield.js';
import type { Device } from '../../bus/device.js';
import type { Errno } from '../../bus/errno.js';
import type { IrqReturn } from '../../bus/irq.js';
import { devFaultParam } from '../../core/io-pgfault.js';
import { IOMMU_FAULT_READ, IOMMU_FAULT_WRITE, reportIommuFault } from '../../core/iommu-domain.js';
import { iommuReportDeviceFault } from '../../core/iommu-fault.js';
import {
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_FAULT_REASON_ACCESS,
  IOMMU_FAULT_REASON_OOR_ADDRESS,
  IOMMU_FAULT_REASON_PERMISSION,
  IOMMU_FAULT_REASON_UNKNOWN,
  IOMMU_FAULT_REASON_WALK_EABT,
  IOMMU_FAULT_UNRECOV_ADDR_VALID,
  type IommuFaultEvent,
  type IopfFault,
} from '../../core/iommu-fault-types.js';
import { armSmmuWriteSctlr } from './arm-smmu-context.js';
import type { ArmSmmuDevice, ArmSmmuDomain } from './arm-smmu-device.js';
import {
  ARM_SMMU_CB_CONTEXTIDR,
  ARM_SMMU_CB_FAR,
  ARM_SMMU_CB_FSR,
  ARM_SMMU_CB_FSYNR0,
  ARM_SMMU_CB_FSYNR1,
  ARM_SMMU_CB_RESUME,
  ARM_SMMU_GR0_sGFSR,
  ARM_SMMU_GR0_sGFSYNR0,
  ARM_SMMU_GR0_sGFSYNR1,
  ARM_SMMU_GR0_sGFSYNR2,
  ARM_SMMU_GR1_CBFRSYNRA,
  CB_FSR_AFF,
  CB_FSR_ASF,
  CB_FSR_EF,
  CB_FSR_FAULT,
  CB_FSR_FORMAT,
  CB_FSR_MULTI,
  CB_FSR_PF,
  CB_FSR_SS,
  CB_FSR_TF,
  CB_FSR_TLBLKF,
  CB_FSR_TLBMCF,
  CB_FSR_UUT,
  CBFRSYNRA_SID,
  FSYNR0_AFR,
  FSYNR0_IND,
  FSYNR0_NSATTR,
  FSYNR0_PLVL,
  FSYNR0_PNU,
  FSYNR0_PTWF,
  FSYNR0_S1CBNDX,
  FSYNR0_WNR,
  RESUME_TERMINATE,
  sGFSR_USF,
  sGFSYNR1_STREAMID,
  SMR_ID,
  SMR_MASK,
} from './arm-smmu-regs.js';

const LOG_NS = 'iommu:drivers:arm-smmu';
const hex = (v: number | bigint): string => `0x${v.toString(16)}`;
const hex8 = (v: number): string => v.toString(16).padStart(8, '0');

/** The kernel's struct arm_smmu_context_fault_info */
export interface ArmSmmuContextFaultInfo {
  fsr: number;
  fsynr0: number;
  fsynr1: number;
  /** FAR: the faulting input address. */
  far: bigint;
  cbfrsynra: number;
  contextidr: number;
}

/** What a fault handler decided for a stalled transaction. */
export type StallVerdict = 'retry' | 'terminate';

/** Counters of an SMMU's fault handling (for tests, reports and benches). */
export interface ArmSmmuFaultStats {
  globalFaults: number;
  contextFaults: number;
  /** Context faults whose transaction had stalled (FSR.SS). */
  stalls: number;
  retried: number;
  terminated: number;
  /** Faults nobody handled (the domain had no handler: ENOSYS). */
  unhandled: number;
  /** Times the storm guard turned stall off on a bank. */
  stormGuardTrips: number;
  /** Stalled faults handed to the I/O page-fault core. */
  reportedIopf: number;
}

const statsOf = new WeakMap<ArmSmmuDevice, ArmSmmuFaultStats>();

export function armSmmuFaultStats(smmu: ArmSmmuDevice): ArmSmmuFaultStats {
  let s = statsOf.get(smmu);
  if (!s) {
    s = { globalFaults: 0, contextFaults: 0, stalls: 0, retried: 0, terminated: 0, unhandled: 0, stormGuardTrips: 0, reportedIopf: 0 };
    statsOf.set(smmu, s);
  }
  return s;
}

/**
 * A printk ratelimit in virtual time (kernel: DEFINE_RATELIMIT_STATE with the default 5 s / 10).
 */
export class Ratelimit {
  private windowStart = -Infinity;
  private printed = 0;
  missed = 0;

  constructor(
    private readonly intervalNs = 5_000_000_000,
    private readonly burst = 10,
  ) {}

  // kernel: __ratelimit() [lib/ratelimit.c]
  ok(now: number): boolean {
    if (now - this.windowStart >= this.intervalNs) {
      this.windowStart = now;
      this.printed = 0;
    }
    if (this.printed < this.burst) {
      this.printed++;
      return true;
    }
    this.missed++;
    return false;
  }
}

const globalRatelimit = new WeakMap<ArmSmmuDevice, Ratelimit>();
const contextRatelimit = new WeakMap<ArmSmmuDevice, Ratelimit>();

function ratelimitOf(map: WeakMap<ArmSmmuDevice, Ratelimit>, smmu: ArmSmmuDevice): Ratelimit {
  let r = map.get(smmu);
  if (!r) {
    r = new Ratelimit();
    map.set(smmu, r);
  }
  return r;
}

// ---- global faults -------------------------------------------------------------------------------

/** The global fault interrupt. */
// kernel: arm_smmu_global_fault() [arm-smmu.c]
export function armSmmuGlobalFault(smmu: ArmSmmuDevice): IrqReturn {
  const gfsr = smmu.gr0Read(ARM_SMMU_GR0_sGFSR);
  const gfsynr0 = smmu.gr0Read(ARM_SMMU_GR0_sGFSYNR0);
  const gfsynr1 = smmu.gr0Read(ARM_SMMU_GR0_sGFSYNR1);
  const gfsynr2 = smmu.gr0Read(ARM_SMMU_GR0_sGFSYNR2);
  if (!gfsr) return 'none';
  armSmmuFaultStats(smmu).globalFaults++;
  const log = smmu.dev.core.log;
  if (ratelimitOf(globalRatelimit, smmu).ok(smmu.dev.port.now())) {
    if (smmu.params['arm-smmu.disable_bypass'] && (gfsr & sGFSR_USF) !== 0) {
      log.err(
        smmu.name,
        `Blocked unknown Stream ID ${hex(FIELD_GET(sGFSYNR1_STREAMID, gfsynr1))}; boot with "arm-smmu.disable_bypass=0" to allow, but this may have security implications`,
        LOG_NS,
      );
    } else {
      log.err(smmu.name, 'Unexpected global fault, this could be serious', LOG_NS);
      log.err(smmu.name, `\tGFSR 0x${hex8(gfsr)}, GFSYNR0 0x${hex8(gfsynr0)}, GFSYNR1 0x${hex8(gfsynr1)}, GFSYNR2 0x${hex8(gfsynr2)}`, LOG_NS);
    }
  }
  smmu.gr0Write(ARM_SMMU_GR0_sGFSR, gfsr);
  return 'handled';
}

// ---- context faults ------------------------------------------------------------------------------

// kernel: arm_smmu_read_context_fault_info() [arm-smmu.c]
export function armSmmuReadContextFaultInfo(smmu: ArmSmmuDevice, idx: number): ArmSmmuContextFaultInfo {
  return {
    fsr: smmu.cbRead(idx, ARM_SMMU_CB_FSR),
    fsynr0: smmu.cbRead(idx, ARM_SMMU_CB_FSYNR0),
    fsynr1: smmu.cbRead(idx, ARM_SMMU_CB_FSYNR1),
    far: smmu.cbReadq(idx, ARM_SMMU_CB_FAR),
    cbfrsynra: smmu.gr1Read(ARM_SMMU_GR1_CBFRSYNRA(idx)),
    contextidr: smmu.cbRead(idx, ARM_SMMU_CB_CONTEXTIDR),
  };
}

/** FSR decoded the way Linux prints it. */
export function armSmmuFsrString(fsr: number): string {
  const names: [number, string][] = [
    [CB_FSR_MULTI, 'MULTI'],
    [CB_FSR_SS, 'SS'],
    [CB_FSR_UUT, 'UUT'],
    [CB_FSR_ASF, 'ASF'],
    [CB_FSR_TLBLKF, 'TLBLKF'],
    [CB_FSR_TLBMCF, 'TLBMCF'],
    [CB_FSR_EF, 'EF'],
    [CB_FSR_PF, 'PF'],
    [CB_FSR_AFF, 'AFF'],
    [CB_FSR_TF, 'TF'],
  ];
  const parts = names.filter(([m]) => (fsr & m) !== 0).map(([, n]) => n);
  parts.push(`Format=${FIELD_GET(CB_FSR_FORMAT, fsr)}`);
  return parts.join(' ');
}

/** FSYNR0 decoded the way Linux prints it. */
export function armSmmuFsynr0String(fsynr0: number): string {
  const parts = [`S1CBNDX=${FIELD_GET(FSYNR0_S1CBNDX, fsynr0)}`];
  if ((fsynr0 & FSYNR0_AFR) !== 0) parts.push('AFR');
  if ((fsynr0 & FSYNR0_PTWF) !== 0) parts.push('PTWF');
  if ((fsynr0 & FSYNR0_NSATTR) !== 0) parts.push('NSATTR');
  if ((fsynr0 & FSYNR0_IND) !== 0) parts.push('IND');
  if ((fsynr0 & FSYNR0_PNU) !== 0) parts.push('PNU');
  if ((fsynr0 & FSYNR0_WNR) !== 0) parts.push('WNR');
  parts.push(`PLVL=${FIELD_GET(FSYNR0_PLVL, fsynr0)}`);
  return parts.join(' ');
}

/** The readable report of an unhandled context fault. */
// kernel: arm_smmu_print_context_fault_info() [arm-smmu.c]
export function armSmmuPrintContextFaultInfo(smmu: ArmSmmuDevice, idx: number, cfi: ArmSmmuContextFaultInfo, dev: Device | null): void {
  const log = smmu.dev.core.log;
  const who = dev ? ` (${dev.name})` : '';
  log.err(
    smmu.name,
    `Unhandled context fault: fsr=${hex(cfi.fsr)}, iova=0x${cfi.far.toString(16).padStart(8, '0')}, fsynr=${hex(cfi.fsynr0)}, cbfrsynra=${hex(cfi.cbfrsynra)}, cb=${idx}${who}`,
    LOG_NS,
  );
  log.err(smmu.name, `FSR    = ${hex8(cfi.fsr)} [${armSmmuFsrString(cfi.fsr)}]`, LOG_NS);
  log.err(smmu.name, `FSYNR0 = ${hex8(cfi.fsynr0)} [${armSmmuFsynr0String(cfi.fsynr0)}]`, LOG_NS);
}

/** The master whose stream ID `sid` is, among those attached to the domain (null if none). */
export function armSmmuMasterOfStream(smmuDomain: ArmSmmuDomain, sid: number): Device | null {
  for (const dev of smmuDomain.masters) {
    for (const fwid of dev.fwspec?.ids ?? []) {
      const id = FIELD_GET(SMR_ID, fwid);
      const mask = FIELD_GET(SMR_MASK, fwid);
      if (((sid ^ id) & ~mask & 0xffff) === 0) return dev;
    }
  }
  return null;
}

/** Stalled faults of a bank the interrupt handler read and the work item has not answered yet. */
const pendingFaults = new WeakMap<ArmSmmuDomain, ArmSmmuContextFaultInfo>();

/** The stalled fault of the domain's bank waiting for an answer, if any. */
export function armSmmuPendingFault(smmuDomain: ArmSmmuDomain): ArmSmmuContextFaultInfo | null {
  return pendingFaults.get(smmuDomain) ?? null;
}

/**
 * The context fault interrupt of a domain's bank: read the syndrome, clear FSR unless a transaction
 * stalled, and hand a copy to the workqueue. (the register
 * reads and, for a fault that did not stall, the FSR write; the rest is the work item)
 */
// kernel: arm_smmu_context_fault() [arm-smmu.c]
export function armSmmuContextFault(smmuDomain: ArmSmmuDomain): IrqReturn {
  const smmu = smmuDomain.smmu;
  if (!smmu) return 'none';
  const idx = smmuDomain.cfg.cbndx;
  if (smmuDomain.faultPending) {
    // A stall already queued: the FSR it read is still latched. Another bank's fault on a shared line is not ours.
    return (smmu.cbRead(idx, ARM_SMMU_CB_FSR) & CB_FSR_FAULT) !== 0 ? 'handled' : 'none';
  }
  const cfi = armSmmuReadContextFaultInfo(smmu, idx);
  if ((cfi.fsr & CB_FSR_FAULT) === 0) return 'none';
  const stats = armSmmuFaultStats(smmu);
  stats.contextFaults++;
  if ((cfi.fsr & CB_FSR_SS) === 0) {
    // Terminated already: nothing waits on a RESUME, so the bank must not stay faulted while a
    // sleeping handler runs (with HUPCF=0 that would abort every other master of the bank).
    smmu.cbWrite(idx, ARM_SMMU_CB_FSR, cfi.fsr);
    queueFaultWork(smmu, smmuDomain, cfi);
    return 'handled';
  }
  stats.stalls++;
  const cfg = smmuDomain.cfg;
  if (smmu.params['arm-smmu.stall_storm_guard'] && cfg.stall && !cfg.stallSuspended) {
    // Stop stalling until this fault is answered, so a storm of faults cannot wedge the master.
    cfg.stallSuspended = true;
    stats.stormGuardTrips++;
    armSmmuWriteSctlr(smmu, idx);
  }
  smmuDomain.faultPending = true;
  pendingFaults.set(smmuDomain, cfi);
  queueFaultWork(smmu, smmuDomain, cfi);
  return 'handled';
}

function queueFaultWork(smmu: ArmSmmuDevice, smmuDomain: ArmSmmuDomain, cfi: ArmSmmuContextFaultInfo): void {
  const idx = smmuDomain.cfg.cbndx;
  const trace = smmu.dev.port.trace;
  const label = `arm-smmu cb${idx} context fault`;
  if (trace.active) trace.emit({ kind: 'work', time: smmu.dev.port.now(), track: smmu.name, label, phase: 'queued' });
  const work = async (): Promise<void> => {
    if (trace.active) trace.emit({ kind: 'work', time: smmu.dev.port.now(), track: smmu.name, label, phase: 'start' });
    try {
      await armSmmuContextFaultWork(smmuDomain, cfi);
    } catch (e) {
      smmu.dev.core.log.err(smmu.name, `context fault work of cb${idx} failed: ${e instanceof Error ? e.message : String(e)}`, LOG_NS);
    } finally {
      if (trace.active) trace.emit({ kind: 'work', time: smmu.dev.port.now(), track: smmu.name, label, phase: 'end' });
    }
  };
  void smmu.faultQueue.add(work);
}

/**
 * What a domain fault handler's result does to a stalled transaction: only EAGAIN retries it; 0
 * ("handled") and every other errno terminate it. Kernel: the ARM_SMMU_CB_RESUME write of
 * arm_smmu_context_fault()
 */
export function stallVerdictOf(ret: 0 | Errno): StallVerdict {
  return ret === 'EAGAIN' ? 'retry' : 'terminate';
}

/** IOMMU_FAULT_PERM_* of the faulting access, from FSYNR0. */
function faultPerm(fsynr0: number): number {
  let perm = (fsynr0 & FSYNR0_WNR) !== 0 ? IOMMU_FAULT_PERM_WRITE : IOMMU_FAULT_PERM_READ;
  if ((fsynr0 & FSYNR0_IND) !== 0) perm |= IOMMU_FAULT_PERM_EXEC;
  if ((fsynr0 & FSYNR0_PNU) !== 0) perm |= IOMMU_FAULT_PERM_PRIV;
  return perm;
}

/** The reason code of an unrecoverable fault, from the FSR fault bit. */
function faultReason(fsr: number): number {
  if ((fsr & CB_FSR_PF) !== 0) return IOMMU_FAULT_REASON_PERMISSION;
  if ((fsr & CB_FSR_AFF) !== 0) return IOMMU_FAULT_REASON_ACCESS;
  if ((fsr & CB_FSR_ASF) !== 0) return IOMMU_FAULT_REASON_OOR_ADDRESS;
  if ((fsr & CB_FSR_EF) !== 0) return IOMMU_FAULT_REASON_WALK_EABT;
  return IOMMU_FAULT_REASON_UNKNOWN;
}

/**
 * A stalled fault as the I/O page-fault core takes it: a page request with LAST_PAGE, no PASID, the
 * context bank as its group index (a group of one, as an SMMUv3 stall is).
 */
export function armSmmuStallPageRequest(idx: number, cfi: ArmSmmuContextFaultInfo): IopfFault {
  return {
    fault: {
      type: 'page-req',
      prm: { flags: IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE, pasid: 0, grpid: idx, perm: faultPerm(cfi.fsynr0), addr: Number(cfi.far), privateData: [0, 0] },
    },
  };
}

/** A terminated (not stalled) context fault as an unrecoverable fault record. */
function armSmmuUnrecoverableFault(cfi: ArmSmmuContextFaultInfo): IommuFaultEvent {
  return {
    fault: {
      type: 'dma-unrecov',
      event: {
        reason: faultReason(cfi.fsr),
        flags: IOMMU_FAULT_UNRECOV_ADDR_VALID,
        pasid: 0,
        perm: faultPerm(cfi.fsynr0),
        addr: Number(cfi.far),
        fetchAddr: 0,
      },
    },
  };
}

/**
 * Report a context fault and, if its transaction stalled, answer it, off the interrupt path.
 * Kernel: arm_smmu_context_fault() (report_iommu_fault, the unhandled-fault print, and for a
 * stall the FSR clear and the RESUME)
 *
 * A stalled fault of a master whose faults go to the I/O page-fault core (it is on an IOPF queue, or
 * has a device fault handler) is reported there instead, as a page request; the core's answer comes
 * back through the `pageResponse` op, which resumes the bank. A terminated fault of a master with a
 * device fault handler is reported to it as an unrecoverable fault, then as usual. A fault that did
 * not stall was cleared by the interrupt: the work item only reports `cfi`, its copy of the syndrome.
 */
export async function armSmmuContextFaultWork(smmuDomain: ArmSmmuDomain, cfi: ArmSmmuContextFaultInfo): Promise<void> {
  const smmu = smmuDomain.smmu;
  const stalled = (cfi.fsr & CB_FSR_SS) !== 0;
  if (!smmu) {
    if (stalled) {
      smmuDomain.faultPending = false;
      pendingFaults.delete(smmuDomain);
    }
    return;
  }
  const idx = smmuDomain.cfg.cbndx;
  const dev = armSmmuMasterOfStream(smmuDomain, FIELD_GET(CBFRSYNRA_SID, cfi.cbfrsynra));
  let ret: 0 | Errno = 'ENOSYS';
  if (!smmu.quiesced) {
    const param = dev ? devFaultParam(dev) : null;
    if (dev && param && stalled && (param.queue || param.handler)) {
      armSmmuFaultStats(smmu).reportedIopf++;
      await iommuReportDeviceFault(dev, armSmmuStallPageRequest(idx, cfi));
      return;
    }
    if (dev && param?.handler && !stalled) await iommuReportDeviceFault(dev, armSmmuUnrecoverableFault(cfi));
    const flags = (cfi.fsynr0 & FSYNR0_WNR) !== 0 ? IOMMU_FAULT_WRITE : IOMMU_FAULT_READ;
    try {
      ret = await reportIommuFault(smmuDomain, dev, Number(cfi.far), flags);
    } catch (e) {
      smmu.dev.core.log.err(smmu.name, `context fault handler of cb${idx} threw: ${e instanceof Error ? e.message : String(e)}`, LOG_NS);
      ret = 'EIO';
    }
    if (ret === 'ENOSYS') {
      armSmmuFaultStats(smmu).unhandled++;
      if (ratelimitOf(contextRatelimit, smmu).ok(smmu.dev.port.now())) armSmmuPrintContextFaultInfo(smmu, idx, cfi, dev);
    }
  }
  // Cleared in the interrupt: nothing waits for an answer.
  if (!stalled) return;
  // The domain may have been torn down while the handler ran (then the stall was answered already),
  // or the whole kernel (kexec): the hardware is not ours to touch any more.
  if (smmu.gone || smmuDomain.smmu !== smmu || smmuDomain.cfg.cbndx !== idx || pendingFaults.get(smmuDomain) !== cfi) return;
  armSmmuContextFaultResume(smmuDomain, smmu.quiesced ? 'terminate' : stallVerdictOf(ret));
}

/**
 * Answer the fault latched in the domain's bank: clear FSR, then, if a transaction is stalled,
 * RESUME it (retry or terminate), then let the bank stall again if the storm guard had stopped it.
 */
export function armSmmuContextFaultResume(smmuDomain: ArmSmmuDomain, verdict: StallVerdict): void {
  const smmu = smmuDomain.requireSmmu('arm-smmu resume');
  // After a kexec the hardware belongs to the next kernel: a late answer of this one is dropped.
  if (smmu.gone) return;
  const idx = smmuDomain.cfg.cbndx;
  const cfi = pendingFaults.get(smmuDomain);
  pendingFaults.delete(smmuDomain);
  smmuDomain.faultPending = false;
  // Re-read: a MULTI latched since the interrupt must be cleared too, or the RESUME is ignored.
  const fsr = smmu.cbRead(idx, ARM_SMMU_CB_FSR);
  if (fsr & CB_FSR_FAULT) smmu.cbWrite(idx, ARM_SMMU_CB_FSR, fsr);
  if ((fsr & CB_FSR_SS) !== 0 || (cfi !== undefined && (cfi.fsr & CB_FSR_SS) !== 0)) {
    smmu.cbWrite(idx, ARM_SMMU_CB_RESUME, verdict === 'retry' ? 0 : RESUME_TERMINATE);
    const stats = armSmmuFaultStats(smmu);
    if (verdict === 'retry') stats.retried++;
    else stats.terminated++;
  }
  // A quiesced SMMU (shutdown, remove) has stopped stalling for good: nobody would answer.
  if (smmuDomain.cfg.stallSuspended && !smmu.quiesced) {
    smmuDomain.cfg.stallSuspended = false;
    armSmmuWriteSctlr(smmu, idx);
  }
}
