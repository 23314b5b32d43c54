/**
 * TLB maintenance of the arm-smmu driver (kernel: the arm_smmu_tlb_* functions and the three
 * iommu_flush_ops tables of arm-smmu.c).
 *
 * Invalidations are register writes (TLBIASID, TLBIVA(L), TLBIIPAS2(L) in the context bank, TLBIVMID
 * in GR0) that the SMMU only carries out once a TLBSYNC (or sTLBGSYNC) is written; a sync completes
 * when TLBSTATUS.SACTIVE (sTLBGSTATUS.GSACTIVE) reads 0, polled in virtual time as Linux polls it:
 * ten reads, then a delay doubling from 1 µs, for up to a second.
 *
 * io-pgtable's flush callbacks are synchronous (it cannot wait), so the ones that must complete
 * before a table is freed (`tlbFlushWalk`, `tlbFlushAll`) issue the invalidation and start its sync
 * here; every TLBSYNC written later, and the poll that follows it, covers them too (TLBSTATUS stays
 * active while any sync is in flight). The domain's `iotlbSync` and `free` are the points that wait.
 */
import type { IommuFlushOps } from '../../core/io-pgtable.js';
import type { IotlbSyncDone } from '../../core/iommu-ops.js';
import type { ArmSmmuDevice, ArmSmmuDomain, ArmSmmuTlbStats } from './arm-smmu-device.js';
import { ARM_SMMU_V2 } from './arm-smmu-device.js';
import {
  ARM_SMMU_CB_S1_TLBIASID,
  ARM_SMMU_CB_S1_TLBIVA,
  ARM_SMMU_CB_S1_TLBIVAL,
  ARM_SMMU_CB_S2_TLBIIPAS2,
  ARM_SMMU_CB_S2_TLBIIPAS2L,
  ARM_SMMU_CB_TLBSTATUS,
  ARM_SMMU_CB_TLBSYNC,
  ARM_SMMU_GR0,
  ARM_SMMU_GR0_sTLBGSTATUS,
  ARM_SMMU_GR0_sTLBGSYNC,
  ARM_SMMU_GR0_TLBIVMID,
  QCOM_DUMMY_VAL,
  sTLBGSTATUS_GSACTIVE,
  TTBRn_ASID_SHIFT,
} from './arm-smmu-regs.js';

const LOG_NS = 'iommu:drivers:arm-smmu';
/** The poll's delays are the kernel's udelay(): traced as the port's own delays are. */
const UDELAY_LABEL = 'cpu delay';

/** The kernel's TLB_LOOP_TIMEOUT — 1 s, in µs. */
export const TLB_LOOP_TIMEOUT_US = 1_000_000;
/** The kernel's TLB_SPIN_COUNT */
export const TLB_SPIN_COUNT = 10;

export type { ArmSmmuTlbStats } from './arm-smmu-device.js';

/** The TLB counters of an SMMU. */
export function armSmmuTlbStats(smmu: ArmSmmuDevice): ArmSmmuTlbStats {
  return smmu.tlbStats;
}

/** TLB_SPIN_COUNT reads of the status register (cpu_relax() between them); true once ACTIVE is clear. */
function armSmmuTlbSyncSpin(smmu: ArmSmmuDevice, page: number, status: number): boolean {
  for (let spin = TLB_SPIN_COUNT; spin > 0; spin--) {
    // GSACTIVE and SACTIVE are both bit 0.
    if ((smmu.readl(page, status) & sTLBGSTATUS_GSACTIVE) === 0) return true;
  }
  return false;
}

/**
 * Poll a sync status register until its ACTIVE bit clears, as Linux does, in virtual time: the spins,
 * then a delay doubling from 1 µs, spins after each but the last; then call `done` (with the error of a
 * register read that failed). The first spins run at once, so a wait that finds the sync complete
 * calls `done` before it returns.
 */
function armSmmuTlbSyncWait(smmu: ArmSmmuDevice, page: number, status: number, done: IotlbSyncDone): void {
  if (armSmmuTlbSyncSpin(smmu, page, status)) done();
  else (freePolls.pop() ?? new TlbSyncPoll()).start(smmu, page, status, done);
}

/**
 * The delays of one sync wait (kernel: the udelay() loop of __arm_smmu_tlb_sync()). Each delay is a
 * CPU timer whose callback runs the spins that follow it, at the instant the delay ends, and answers
 * the waiter: one timer event per delay, no async frame and no promise (a strict unmap waits here once
 * per unmap, and hands its caller's callback in). Polls are reused once answered.
 */
class TlbSyncPoll {
  private smmu: ArmSmmuDevice | null = null;
  private page = 0;
  private status = 0;
  private delay = 1;
  private done: IotlbSyncDone | null = null;
  private readonly expired = (): void => this.afterDelay();

  start(smmu: ArmSmmuDevice, page: number, status: number, done: IotlbSyncDone): void {
    this.smmu = smmu;
    this.page = page;
    this.status = status;
    this.delay = 1;
    this.done = done;
    smmu.dev.port.startTimer(1000, this.expired, UDELAY_LABEL);
  }

  private afterDelay(): void {
    const smmu = this.smmu!;
    try {
      if (this.delay * 2 < TLB_LOOP_TIMEOUT_US && armSmmuTlbSyncSpin(smmu, this.page, this.status)) {
        this.settle(undefined);
        return;
      }
      this.delay *= 2;
      if (this.delay < TLB_LOOP_TIMEOUT_US) {
        smmu.dev.port.startTimer(this.delay * 1000, this.expired, UDELAY_LABEL);
        return;
      }
      smmu.tlbStats.syncTimeouts++;
      smmu.dev.core.log.err(smmu.name, 'TLB sync timed out -- SMMU may be deadlocked', LOG_NS);
      this.settle(undefined);
    } catch (e) {
      // A register read that failed (the mapping is gone): the waiter sees the error.
      this.settle(e instanceof Error ? e : new Error(String(e)));
    }
  }

  private settle(failure: Error | undefined): void {
    const done = this.done!;
    this.smmu = null;
    this.done = null;
    freePolls.push(this);
    done(failure);
  }
}

const freePolls: TlbSyncPoll[] = [];

/** __armSmmuTlbSync answering through `done` (see IotlbSyncDone): a strict unmap's wait. */
function armSmmuTlbSyncThen(smmu: ArmSmmuDevice, page: number, sync: number, status: number, done: IotlbSyncDone): void {
  smmu.tlbStats.syncs++;
  if (smmu.impl?.tlbSync) {
    smmu.impl.tlbSync(smmu, page, sync, status).then(
      () => done(),
      (e: unknown) => done(e instanceof Error ? e : new Error(String(e))),
    );
    return;
  }
  smmu.writel(page, sync, QCOM_DUMMY_VAL);
  armSmmuTlbSyncWait(smmu, page, status, done);
}

/** Write a sync register and wait for it. */
// kernel: __arm_smmu_tlb_sync() [arm-smmu.c]
export function __armSmmuTlbSync(smmu: ArmSmmuDevice, page: number, sync: number, status: number): Promise<void> {
  return new Promise((resolve, reject) => {
    armSmmuTlbSyncThen(smmu, page, sync, status, (failure) => (failure instanceof Error ? reject(failure) : resolve()));
  });
}

// kernel: arm_smmu_tlb_sync_global() [arm-smmu.c]
export function armSmmuTlbSyncGlobal(smmu: ArmSmmuDevice): Promise<void> {
  return __armSmmuTlbSync(smmu, ARM_SMMU_GR0, ARM_SMMU_GR0_sTLBGSYNC, ARM_SMMU_GR0_sTLBGSTATUS);
}

// kernel: arm_smmu_tlb_sync_context() [arm-smmu.c]
export function armSmmuTlbSyncContext(smmuDomain: ArmSmmuDomain): Promise<void> {
  const smmu = smmuDomain.requireSmmu('arm_smmu_tlb_sync_context');
  return __armSmmuTlbSync(smmu, smmu.cbPage(smmuDomain.cfg.cbndx), ARM_SMMU_CB_TLBSYNC, ARM_SMMU_CB_TLBSTATUS);
}

/** Start a context bank sync without waiting (for io-pgtable's synchronous callbacks). */
function armSmmuTlbSyncContextStart(smmuDomain: ArmSmmuDomain): void {
  const smmu = smmuDomain.smmu!;
  smmu.tlbStats.syncs++;
  smmu.cbWrite(smmuDomain.cfg.cbndx, ARM_SMMU_CB_TLBSYNC, QCOM_DUMMY_VAL);
}

/** Start a global sync without waiting. */
function armSmmuTlbSyncGlobalStart(smmu: ArmSmmuDevice): void {
  smmu.tlbStats.syncs++;
  smmu.gr0Write(ARM_SMMU_GR0_sTLBGSYNC, QCOM_DUMMY_VAL);
}

/** TLBIASID for the domain's ASID. */
function armSmmuTlbiAsid(smmuDomain: ArmSmmuDomain): void {
  smmuDomain.smmu!.cbWrite(smmuDomain.cfg.cbndx, ARM_SMMU_CB_S1_TLBIASID, smmuDomain.cfg.asid);
}

/** Everything of the ASID, then wait. */
// kernel: arm_smmu_tlb_inv_context_s1() [arm-smmu.c]
export async function armSmmuTlbInvContextS1(smmuDomain: ArmSmmuDomain): Promise<void> {
  armSmmuTlbiAsid(smmuDomain);
  await armSmmuTlbSyncContext(smmuDomain);
}

/** Everything of the VMID, then wait. */
// kernel: arm_smmu_tlb_inv_context_s2() [arm-smmu.c]
export async function armSmmuTlbInvContextS2(smmuDomain: ArmSmmuDomain): Promise<void> {
  const smmu = smmuDomain.requireSmmu('arm_smmu_tlb_inv_context_s2');
  smmu.gr0Write(ARM_SMMU_GR0_TLBIVMID, smmuDomain.cfg.vmid);
  await armSmmuTlbSyncGlobal(smmu);
}

/** ASID << 48 of the AArch64 TLBI operands, made once per ASID (a strict unmap writes one per page). */
const asidOperands: bigint[] = [];

function asidOperand(asid: number): bigint {
  let v = asidOperands[asid];
  if (v === undefined) asidOperands[asid] = v = BigInt(asid) << TTBRn_ASID_SHIFT;
  return v;
}

/**
 * One TLBIVA/TLBIVAL per granule of [iova, iova + size). AArch64 operand: VA >> 12 with the ASID in
 * [63:48]; AArch32: VA[31:12] with the ASID in [7:0].
 */
// kernel: arm_smmu_tlb_inv_range_s1() [arm-smmu.c]
export function armSmmuTlbInvRangeS1(smmuDomain: ArmSmmuDomain, iova: number, size: number, granule: number, reg: number): void {
  const smmu = smmuDomain.smmu!;
  const cfg = smmuDomain.cfg;
  const idx = cfg.cbndx;
  if (cfg.fmt !== 'AARCH64') {
    let v = (Math.floor(iova / 4096) * 4096 + cfg.asid) >>> 0;
    for (let left = size; left > 0; left -= granule) {
      smmu.cbWrite(idx, reg, v);
      v = (v + granule) >>> 0;
    }
    return;
  }
  const asid = asidOperand(cfg.asid);
  let page = Math.floor(iova / 4096);
  const step = granule / 4096;
  for (let left = size; left > 0; left -= granule) {
    smmu.cbWriteq(idx, reg, BigInt(page) | asid);
    page += step;
  }
}

/** One TLBIIPAS2(L) per granule, operand IPA >> 12. */
// kernel: arm_smmu_tlb_inv_range_s2() [arm-smmu.c]
export function armSmmuTlbInvRangeS2(smmuDomain: ArmSmmuDomain, iova: number, size: number, granule: number, reg: number): void {
  const smmu = smmuDomain.smmu!;
  const cfg = smmuDomain.cfg;
  const idx = cfg.cbndx;
  let page = Math.floor(iova / 4096);
  const step = granule / 4096;
  for (let left = size; left > 0; left -= granule) {
    if (cfg.fmt === 'AARCH64') smmu.cbWriteq(idx, reg, BigInt(page));
    else smmu.cbWrite(idx, reg, page >>> 0);
    page += step;
  }
}

/** Stage 1 flush ops (kernel: arm_smmu_s1_tlb_ops). */
function s1TlbOps(d: ArmSmmuDomain): IommuFlushOps {
  return {
    // (kernel: arm_smmu_tlb_inv_context_s1())
    tlbFlushAll() {
      armSmmuTlbiAsid(d);
      armSmmuTlbSyncContextStart(d);
    },
    // kernel: arm_smmu_tlb_inv_walk_s1() [arm-smmu.c]
    tlbFlushWalk(iova, size, granule) {
      if (d.cfg.flushWalkPreferTlbiasid) armSmmuTlbiAsid(d);
      else armSmmuTlbInvRangeS1(d, iova, size, granule, ARM_SMMU_CB_S1_TLBIVA);
      armSmmuTlbSyncContextStart(d);
    },
    // issued at once; the iotlb_sync that follows completes it.
    // kernel: arm_smmu_tlb_add_page_s1() [arm-smmu.c]
    tlbAddPage(_gather, iova, granule) {
      armSmmuTlbInvRangeS1(d, iova, granule, granule, ARM_SMMU_CB_S1_TLBIVAL);
    },
  };
}

/** Stage 2 flush ops of an SMMUv2 (kernel: arm_smmu_s2_tlb_ops_v2). */
function s2TlbOpsV2(d: ArmSmmuDomain): IommuFlushOps {
  return {
    // (kernel: arm_smmu_tlb_inv_context_s2())
    tlbFlushAll() {
      d.smmu!.gr0Write(ARM_SMMU_GR0_TLBIVMID, d.cfg.vmid);
      armSmmuTlbSyncGlobalStart(d.smmu!);
    },
    // kernel: arm_smmu_tlb_inv_walk_s2() [arm-smmu.c]
    tlbFlushWalk(iova, size, granule) {
      armSmmuTlbInvRangeS2(d, iova, size, granule, ARM_SMMU_CB_S2_TLBIIPAS2);
      armSmmuTlbSyncContextStart(d);
    },
    // kernel: arm_smmu_tlb_add_page_s2() [arm-smmu.c]
    tlbAddPage(_gather, iova, granule) {
      armSmmuTlbInvRangeS2(d, iova, granule, granule, ARM_SMMU_CB_S2_TLBIIPAS2L);
    },
  };
}

/** Stage 2 flush ops of an SMMUv1, which only invalidates by VMID (kernel: arm_smmu_s2_tlb_ops_v1). */
function s2TlbOpsV1(d: ArmSmmuDomain): IommuFlushOps {
  const flushVmid = (): void => {
    d.smmu!.gr0Write(ARM_SMMU_GR0_TLBIVMID, d.cfg.vmid);
    armSmmuTlbSyncGlobalStart(d.smmu!);
  };
  return {
    tlbFlushAll: flushVmid,
    // kernel: arm_smmu_tlb_inv_walk_s2_v1() [arm-smmu.c]
    tlbFlushWalk: flushVmid,
    // kernel: arm_smmu_tlb_add_page_s2_v1() [arm-smmu.c]
    tlbAddPage() {
      d.smmu!.gr0Write(ARM_SMMU_GR0_TLBIVMID, d.cfg.vmid);
    },
  };
}

/** The flush ops a finalised domain hands io-pgtable (kernel: smmu_domain->flush_ops). */
export function armSmmuFlushOps(smmuDomain: ArmSmmuDomain): IommuFlushOps {
  if (smmuDomain.stage === 'S1') return s1TlbOps(smmuDomain);
  return smmuDomain.smmu!.version === ARM_SMMU_V2 ? s2TlbOpsV2(smmuDomain) : s2TlbOpsV1(smmuDomain);
}

/** Invalidate everything of the domain and wait (kernel: smmu_domain->flush_ops->tlb_flush_all). */
export function armSmmuTlbFlushAll(smmuDomain: ArmSmmuDomain): Promise<void> {
  return smmuDomain.stage === 'S1' ? armSmmuTlbInvContextS1(smmuDomain) : armSmmuTlbInvContextS2(smmuDomain);
}

/**
 * Wait for the invalidations an unmap issued: a context sync on SMMUv2 or for stage 1, else the
 * global sync.
 */
// kernel: arm_smmu_iotlb_sync() [arm-smmu.c]
export function armSmmuIotlbSync(smmuDomain: ArmSmmuDomain, done: IotlbSyncDone): void {
  const smmu = smmuDomain.requireSmmu('arm_smmu_iotlb_sync');
  if (smmu.version === ARM_SMMU_V2 || smmuDomain.stage === 'S1') {
    armSmmuTlbSyncThen(smmu, smmu.cbPage(smmuDomain.cfg.cbndx), ARM_SMMU_CB_TLBSYNC, ARM_SMMU_CB_TLBSTATUS, done);
  } else {
    armSmmuTlbSyncThen(smmu, ARM_SMMU_GR0, ARM_SMMU_GR0_sTLBGSYNC, ARM_SMMU_GR0_sTLBGSTATUS, done);
  }
}
