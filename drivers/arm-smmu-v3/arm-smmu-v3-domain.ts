/**
 * Paging domains (kernel: struct arm_smmu_domain and the domain, TLB-invalidation and ATC parts of
 * arm-smmu-v3.c): stage 1 (ASID, CD) or stage 2 (VMID, STE) finalise with an io-pgtable, the flush
 * callbacks io-pgtable calls, range invalidation (TG/NUM/SCALE/TTL with IDR3.RIL), ATC invalidation
 * of the ATS-enabled masters attached, and the map/unmap/sync domain ops.
 *
 * io-pgtable's callbacks run inside a synchronous unmap and cannot wait for a CMD_SYNC: they insert
 * their invalidation and its CMD_SYNC without waiting (ArmSmmuCmdq.issueCmdlistNowait), and the
 * iotlb_sync that always follows an unmap waits for them. Nothing reaches the hardware until the
 * caller yields, so no transaction can slip between a cleared PTE and its queued invalidation.
 */
import { KernelError } from '../../bus/errno.js';
import { allocIoPgtableOps, freeIoPgtableOps } from '../../core/io-pgtable-arm.js';
import { IO_PGTABLE_QUIRK_ARM_HD, type IoPgtable, type IoPgtableAllocator } from '../../core/io-pgtable.js';
import { IommuDomain, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_ALLOC_PASID } from '../../core/iommu-domain.js';
import { iommuIotlbGatherAddPage, type IommuIotlbGather } from '../../core/iommu-gather.js';
import type { DomainOps, Gfp, IotlbSyncDone } from '../../core/iommu-ops.js';
import { IOMMU_NO_PASID } from '../../core/iommu-pasid.js';
import { orderForSize } from '../../mm/page-alloc.js';
import { armSmmuAsidSpace } from './arm-smmu-v3-asid.js';
import { ArmSmmuCmdqBatch, tlbiEnt, type ArmSmmuCmdqEnt } from './arm-smmu-v3-cmdq.js';
import type { ArmSmmuDevice } from './arm-smmu-v3-device.js';
import type { ArmSmmuMaster } from './arm-smmu-v3-master.js';
import {
  ARM_SMMU_FEAT_ATS,
  ARM_SMMU_FEAT_COHERENCY,
  ARM_SMMU_FEAT_E2H,
  ARM_SMMU_FEAT_HD,
  ARM_SMMU_FEAT_RANGE_INV,
  ARM_SMMU_FEAT_TRANS_S1,
  ARM_SMMU_FEAT_TRANS_S2,
  ARM_SMMU_FEAT_VAX,
  ATC_INV_SIZE_ALL,
  CMDQ_OP_ATC_INV,
  CMDQ_OP_TLBI_EL2_ASID,
  CMDQ_OP_TLBI_EL2_VA,
  CMDQ_OP_TLBI_NH_ALL,
  CMDQ_OP_TLBI_NH_ASID,
  CMDQ_OP_TLBI_NH_VA,
  CMDQ_OP_TLBI_S12_VMALL,
  CMDQ_OP_TLBI_S2_IPA,
  CMDQ_TLBI_RANGE_NUM_MAX,
} from './arm-smmu-v3-regs.js';

/** What a nested domain and the attach path need of a vSMMU (kernel: struct arm_vsmmu). */
export interface ArmVsmmuRef {
  readonly smmu: ArmSmmuDevice;
  /** The nest-parent stage 2 domain. */
  readonly s2Parent: ArmSmmuDomain;
  /** The VMID every guest STE and invalidation uses (the parent's, as in v6.17). */
  readonly vmid: number;
}

/** A master's link to its guest (kernel: struct arm_smmu_vmaster): host events go up with the vSID. */
export interface ArmSmmuVmaster {
  readonly vsmmu: ArmVsmmuRef;
  readonly vsid: number;
  /** Report one event record (EVTQ_ENT_WORDS words, SID already the vSID) to the vEVENTQ. */
  report(evt: Uint32Array): void;
}

/**
 * A guest's STE on top of a vSMMU's stage 2 (kernel: struct arm_smmu_nested_domain): qwords 0-1 of
 * the validated guest STE (EATS cleared: the host sets it) and whether the guest asked for ATS.
 */
export class ArmSmmuNestedDomain extends IommuDomain {
  constructor(
    ops: DomainOps,
    readonly vsmmu: ArmVsmmuRef,
    /** Guest STE qwords 0 and 1 as 4 little-endian words. */
    readonly ste: Uint32Array,
    readonly enableAts: boolean,
  ) {
    super({ ops });
  }
}

/** The kernel's VA_BITS: the largest stage 1 input size a domain gets. */
const VA_BITS = 48;

export type ArmSmmuStage = 'S1' | 'S2';

/** One (master, SubstreamID) a domain is attached to (kernel: struct arm_smmu_master_domain). */
export interface ArmSmmuMasterDomain {
  readonly master: ArmSmmuMaster;
  readonly ssid: number;
}

/** The kernel's struct arm_smmu_domain */
export class ArmSmmuDomain extends IommuDomain {
  smmu: ArmSmmuDevice | null = null;
  stage: ArmSmmuStage = 'S1';
  pgtbl: IoPgtable | null = null;
  /** Stage 1: the CD's ASID. */
  asid = 0;
  /** Stage 2: the STE's VMID. */
  vmid = 0;
  /** Allocated with IOMMU_HWPT_ALLOC_NEST_PARENT: guest stage 1 tables nest on it (kernel: nest_parent). */
  nestParent = false;
  /** Masters (and SubstreamIDs) attached: who needs ATC invalidations (kernel: devices list). */
  readonly devices: ArmSmmuMasterDomain[] = [];
  /** Attached masters with ATS on (kernel: nr_ats_masters). */
  nrAtsMasters = 0;
  /** IO_PGTABLE_QUIRK_ARM_HD: dirty tracking. */
  dirtyTracking = false;
  /** Reused command entry for this domain's invalidations (filled and inserted synchronously). */
  readonly tlbiCmd: ArmSmmuCmdqEnt = { opcode: 0, tlbi: tlbiEnt() };

  constructor(ops: DomainOps) {
    super({ ops });
  }

  get pgtblOps(): IoPgtable {
    if (!this.pgtbl) throw new KernelError('ENODEV', 'arm-smmu-v3: the domain has no page table (not finalised)');
    return this.pgtbl;
  }
}

/** Lowest set bit of a safe integer (kernel: __ffs()). */
function ffs(n: number): number {
  if (n <= 0x7fff_ffff) return 31 - Math.clz32(n & -n);
  const lo = n % 0x1_0000_0000;
  if (lo !== 0) return 31 - Math.clz32(lo & -lo);
  const hi = Math.floor(n / 0x1_0000_0000);
  return 32 + 31 - Math.clz32(hi & -hi);
}

/** 2^i for the shifts of addresses and sizes (a table: `2 ** i` is a Math.pow call). */
const POW2: readonly number[] = Array.from({ length: 64 }, (_, i) => 2 ** i);

/** The kernel's fls_long(a ^ b) — 1-based index of the highest bit where two safe integers differ. */
function flsXor(a: number, b: number): number {
  const hi = (Math.floor(a / 0x1_0000_0000) ^ Math.floor(b / 0x1_0000_0000)) >>> 0;
  if (hi !== 0) return 64 - Math.clz32(hi);
  const lo = ((a % 0x1_0000_0000) ^ (b % 0x1_0000_0000)) >>> 0;
  return 32 - Math.clz32(lo);
}

/** Scratch batch of an SMMU: filled and inserted within one synchronous stretch. */
const batches = new WeakMap<ArmSmmuDevice, ArmSmmuCmdqBatch>();
/** The last SMMU asked for and its batch (machines mostly have one SMMU: no WeakMap lookup per unmap). */
let lastSmmu: ArmSmmuDevice | null = null;
let lastBatch: ArmSmmuCmdqBatch | null = null;
function scratchBatch(smmu: ArmSmmuDevice): ArmSmmuCmdqBatch {
  if (smmu === lastSmmu) return lastBatch!.init();
  let b = batches.get(smmu);
  if (!b) {
    b = new ArmSmmuCmdqBatch(smmu.cmdq, smmu);
    batches.set(smmu, b);
  }
  lastSmmu = smmu;
  lastBatch = b;
  return b.init();
}

// ---- ATC invalidation ---------------------------------------------------------------------------

/**
 * An ATC_INV covering [iova, iova + size) for `ssid` (size 0: everything). ATS invalidations are
 * power-of-two ranges aligned to their size, so the smallest such range covering the request is used.
 */
// kernel: arm_smmu_atc_inv_to_cmd() [arm-smmu-v3.c]
export function armSmmuAtcInvToCmd(ssid: number, iova: number, size: number, cmd: ArmSmmuCmdqEnt): void {
  cmd.opcode = CMDQ_OP_ATC_INV;
  cmd.substreamValid = ssid !== IOMMU_NO_PASID;
  const atc = (cmd.atc ??= { sid: 0, ssid: 0, size: 0, addr: 0, global: false });
  atc.ssid = ssid;
  atc.global = false;
  atc.addr = 0;
  if (size === 0) {
    atc.size = ATC_INV_SIZE_ALL;
    return;
  }
  const pageStart = Math.floor(iova / 4096);
  const pageEnd = Math.floor((iova + size - 1) / 4096);
  // The most significant differing bit of start and end gives the span.
  const log2Span = flsXor(pageStart, pageEnd);
  const span = 2 ** log2Span;
  atc.addr = (pageStart - (pageStart % span)) * 4096;
  atc.size = log2Span;
}

/** ATC_INV of everything `master` cached for `ssid`, and wait. */
// kernel: arm_smmu_atc_inv_master() [arm-smmu-v3.c]
export async function armSmmuAtcInvMaster(master: ArmSmmuMaster, ssid: number): Promise<void> {
  const smmu = master.smmu;
  const cmd: ArmSmmuCmdqEnt = { opcode: CMDQ_OP_ATC_INV };
  armSmmuAtcInvToCmd(ssid, 0, 0, cmd);
  const batch = scratchBatch(smmu);
  for (const sid of master.streams) {
    cmd.atc!.sid = sid;
    batch.add(cmd);
  }
  await batch.submit();
}

/** True if the domain has ATS masters whose ATCs its invalidations must reach. */
function hasAtsMasters(domain: ArmSmmuDomain): boolean {
  return (domain.smmu!.features & ARM_SMMU_FEAT_ATS) !== 0 && domain.nrAtsMasters !== 0;
}

/** Fill `batch` with ATC_INVs for every ATS master of `domain`; false if there is none. */
function fillAtcInvDomain(batch: ArmSmmuCmdqBatch, domain: ArmSmmuDomain, iova: number, size: number): boolean {
  if (!hasAtsMasters(domain)) return false;
  const cmd: ArmSmmuCmdqEnt = { opcode: CMDQ_OP_ATC_INV };
  let any = false;
  for (const md of domain.devices) {
    if (!md.master.atsEnabled) continue;
    armSmmuAtcInvToCmd(md.ssid, iova, size, cmd);
    for (const sid of md.master.streams) {
      cmd.atc!.sid = sid;
      batch.add(cmd);
      any = true;
    }
  }
  return any;
}

/** ATC invalidation of [iova, iova+size) for every ATS master of the domain. */
// kernel: arm_smmu_atc_inv_domain() [arm-smmu-v3.c]
export async function armSmmuAtcInvDomain(domain: ArmSmmuDomain, iova: number, size: number): Promise<void> {
  const batch = scratchBatch(domain.smmu!);
  if (fillAtcInvDomain(batch, domain, iova, size)) await batch.submit();
}

// ---- TLB invalidation ---------------------------------------------------------------------------

/**
 * Add the TLBI commands covering [iova, iova + size) to `batch`: range commands (pages =
 * (NUM+1) << SCALE of the leaf granule) with IDR3.RIL, else one command per `granule`.
 */
// kernel: __arm_smmu_tlb_inv_range() [arm-smmu-v3.c]
export function armSmmuFillTlbInvRange(batch: ArmSmmuCmdqBatch, cmd: ArmSmmuCmdqEnt, iova: number, size: number, granule: number, domain: ArmSmmuDomain): void {
  const smmu = domain.smmu!;
  const t = cmd.tlbi!;
  const end = iova + size;
  let numPages = 0;
  let tg = 0;
  let invRange = granule;
  if (size === 0) return;
  const rangeInv = (smmu.features & ARM_SMMU_FEAT_RANGE_INV) !== 0;
  t.num = 0;
  t.scale = 0;
  t.ttl = 0;
  t.tg = 0;
  if (rangeInv) {
    // The leaf page size of the domain.
    tg = ffs(domain.pgsizeBitmap);
    numPages = size <= 0x7fff_ffff ? size >>> tg : Math.floor(size / POW2[tg]);
    // Page size 12, 14, 16 (log2) as TG 1, 2, 3.
    t.tg = (tg - 10) / 2;
    // TTL: the level of a leaf entry of `granule`. Non-leaf flushes do not know the level; they
    // still use a range command, so SCALE and NUM must not both end up 0.
    if (t.leaf) t.ttl = 4 - Math.floor((ffs(granule) - 3) / (tg - 3));
    else if ((numPages & CMDQ_TLBI_RANGE_NUM_MAX) === 1) numPages++;
  }
  while (iova < end) {
    if (rangeInv) {
      // The range is 5 bits worth of the aligned remaining size: num chunks of 2^scale pages.
      const scale = ffs(numPages);
      t.scale = scale;
      // (num_pages >> scale) & CMDQ_TLBI_RANGE_NUM_MAX: `&` keeps the low bits of any safe integer; a
      // shift where the count fits 31 bits (every range under 8 TiB of 4K pages), a division above.
      const num = (numPages <= 0x7fff_ffff ? numPages >>> scale : Math.floor(numPages / POW2[scale])) & CMDQ_TLBI_RANGE_NUM_MAX;
      t.num = num - 1;
      invRange = num * POW2[scale + tg];
      numPages -= num * POW2[scale];
    }
    t.addr = iova;
    batch.add(cmd);
    iova += invRange;
  }
}

/** The TLBI-by-address command of the domain's stage, in `domain.tlbiCmd`. */
function setupRangeCmd(domain: ArmSmmuDomain, leaf: boolean): ArmSmmuCmdqEnt {
  const smmu = domain.smmu!;
  const cmd = domain.tlbiCmd;
  const t = cmd.tlbi!;
  t.leaf = leaf;
  if (domain.stage === 'S1') {
    cmd.opcode = (smmu.features & ARM_SMMU_FEAT_E2H) !== 0 ? CMDQ_OP_TLBI_EL2_VA : CMDQ_OP_TLBI_NH_VA;
    t.asid = domain.asid;
    t.vmid = 0;
  } else {
    cmd.opcode = CMDQ_OP_TLBI_S2_IPA;
    t.vmid = domain.vmid;
    t.asid = 0;
  }
  return cmd;
}

/**
 * Invalidate [iova, iova+size) of the domain in the TLBs and the ATCs, then call `done` (with the
 * CMD_SYNC's 0 or ETIMEDOUT, already logged; with the error if the wait failed). Not leaf-only in the
 * ATC: a whole table may have gone. A callback for iotlb_sync (see IotlbSyncDone); the usual strict
 * unmap (no ATS master) hands `done` to the CMD_SYNC's waiter itself.
 */
// kernel: arm_smmu_tlb_inv_range_domain() [arm-smmu-v3.c]
export function armSmmuTlbInvRangeDomain(iova: number, size: number, granule: number, leaf: boolean, domain: ArmSmmuDomain, done: (r: unknown) => void): void {
  const smmu = domain.smmu!;
  const batch = scratchBatch(smmu);
  armSmmuFillTlbInvRange(batch, setupRangeCmd(domain, leaf), iova, size, granule, domain);
  // When a nesting parent changes, the combined entries of every guest ASID on its VMID go too.
  if (domain.nestParent) batch.add({ opcode: CMDQ_OP_TLBI_NH_ALL, tlbi: { ...tlbiEnt(), vmid: domain.vmid } });
  if (!hasAtsMasters(domain)) {
    batch.submitThen(done);
    return;
  }
  const tlbi = batch.submit();
  // Both batches are in the queue now, TLBIs first; the ATC one's CMD_SYNC completes last.
  const waited = fillAtcInvDomain(batch.init(), domain, iova, size) ? Promise.all([tlbi, batch.submit()]) : tlbi;
  waited.then(done, done);
}

/** As armSmmuTlbInvRangeDomain, as a promise. */
export function armSmmuTlbInvRangeDomainWait(iova: number, size: number, granule: number, leaf: boolean, domain: ArmSmmuDomain): Promise<unknown> {
  return new Promise((resolve, reject) => {
    armSmmuTlbInvRangeDomain(iova, size, granule, leaf, domain, (r) => (r instanceof Error ? reject(r) : resolve(r)));
  });
}

/** As armSmmuTlbInvRangeDomain, inserted without waiting (io-pgtable callbacks). */
export function armSmmuTlbInvRangeDomainNowait(iova: number, size: number, granule: number, leaf: boolean, domain: ArmSmmuDomain): void {
  const smmu = domain.smmu!;
  const batch = scratchBatch(smmu);
  armSmmuFillTlbInvRange(batch, setupRangeCmd(domain, leaf), iova, size, granule, domain);
  if (domain.nestParent) batch.add({ opcode: CMDQ_OP_TLBI_NH_ALL, tlbi: { ...tlbiEnt(), vmid: domain.vmid } });
  batch.submitNowait();
  if (fillAtcInvDomain(batch, domain, iova, size)) batch.submitNowait();
}

/** Fill `batch` with the whole-context invalidation of the domain (TLBI by ASID or VMID). */
function fillInvContext(batch: ArmSmmuCmdqBatch, domain: ArmSmmuDomain): void {
  const smmu = domain.smmu!;
  if (domain.stage === 'S1') {
    // (kernel: arm_smmu_tlb_inv_asid())
    batch.add({ opcode: (smmu.features & ARM_SMMU_FEAT_E2H) !== 0 ? CMDQ_OP_TLBI_EL2_ASID : CMDQ_OP_TLBI_NH_ASID, tlbi: { ...tlbiEnt(), asid: domain.asid } });
  } else {
    batch.add({ opcode: CMDQ_OP_TLBI_S12_VMALL, tlbi: { ...tlbiEnt(), vmid: domain.vmid } });
  }
}

/** TLBI of everything cached under `asid` on `smmu`, + CMD_SYNC. */
// kernel: arm_smmu_tlb_inv_asid() [arm-smmu-v3.c]
export async function armSmmuTlbInvAsid(smmu: ArmSmmuDevice, asid: number): Promise<void> {
  const opcode = (smmu.features & ARM_SMMU_FEAT_E2H) !== 0 ? CMDQ_OP_TLBI_EL2_ASID : CMDQ_OP_TLBI_NH_ASID;
  await smmu.issueCmdWithSync({ opcode, tlbi: { ...tlbiEnt(), asid } });
}

/** Invalidate everything of the domain (TLBs and ATCs) and wait. */
// kernel: arm_smmu_tlb_inv_context() [arm-smmu-v3.c]
export async function armSmmuTlbInvContext(domain: ArmSmmuDomain): Promise<void> {
  const smmu = domain.smmu!;
  const batch = scratchBatch(smmu);
  fillInvContext(batch, domain);
  const tlbi = batch.submit();
  if (fillAtcInvDomain(batch.init(), domain, 0, 0)) await Promise.all([tlbi, batch.submit()]);
  else await tlbi;
}

/** As armSmmuTlbInvContext without waiting (io-pgtable's tlb_flush_all). */
function armSmmuTlbInvContextNowait(domain: ArmSmmuDomain): void {
  const batch = scratchBatch(domain.smmu!);
  fillInvContext(batch, domain);
  batch.submitNowait();
  if (fillAtcInvDomain(batch, domain, 0, 0)) batch.submitNowait();
}

// ---- finalise -----------------------------------------------------------------------------------

/** Page-table pages from the kernel's page allocator, owned as page tables of this domain. */
function pgtableAllocator(smmu: ArmSmmuDevice, what: string): IoPgtableAllocator {
  const pages = smmu.params.pageAllocator;
  return {
    allocTable: (size) => pages.allocPages(orderForSize(size), { kind: 'page-table', what }, { zero: true }),
    freeTable: (pa) => pages.freePages(pa),
  };
}

/**
 * Give the domain its stage, page table and ASID/VMID on `smmu`. `flags`: IOMMU_HWPT_ALLOC_* (NEST_PARENT
 * asks for stage 2; DIRTY_TRACKING for HD).
 */
// kernel: arm_smmu_domain_finalise() [arm-smmu-v3.c]
export function armSmmuDomainFinalise(domain: ArmSmmuDomain, smmu: ArmSmmuDevice, flags: number): void {
  const enableDirty = (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) !== 0;
  if ((flags & IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0) {
    domain.stage = 'S2';
    domain.nestParent = true;
  }
  // Restrict the stage to what the SMMU supports.
  if ((smmu.features & ARM_SMMU_FEAT_TRANS_S1) === 0) domain.stage = 'S2';
  if ((smmu.features & ARM_SMMU_FEAT_TRANS_S2) === 0) domain.stage = 'S1';

  const label = `arm-smmu-v3 ${smmu.name} ${domain.stage} domain`;
  // What a gather that must be flushed early gets: made once per domain, not per page unmapped.
  const syncGathered = (g: IommuIotlbGather): void => armSmmuTlbInvRangeDomainNowait(g.start, g.end - g.start + 1, g.pgsize, true, domain);
  const tlb = {
    // (kernel: arm_smmu_tlb_inv_context())
    tlbFlushAll: (): void => armSmmuTlbInvContextNowait(domain),
    // kernel: arm_smmu_tlb_inv_walk() [arm-smmu-v3.c]
    tlbFlushWalk: (iova: number, size: number, granule: number): void => armSmmuTlbInvRangeDomainNowait(iova, size, granule, false, domain),
    // kernel: arm_smmu_tlb_inv_page_nosync() [arm-smmu-v3.c]
    tlbAddPage: (gather: IommuIotlbGather, iova: number, granule: number): void =>
      iommuIotlbGatherAddPage(gather, iova, granule, syncGathered),
  };
  const common = {
    pgsizeBitmap: smmu.pgsizeBitmap,
    coherentWalk: (smmu.features & ARM_SMMU_FEAT_COHERENCY) !== 0,
    tlb,
    ram: smmu.ram,
    allocator: pgtableAllocator(smmu, label),
  };
  let pgtbl: IoPgtable;
  if (domain.stage === 'S1') {
    const ias = Math.min((smmu.features & ARM_SMMU_FEAT_VAX) !== 0 ? 52 : 48, VA_BITS);
    if (enableDirty && (smmu.features & ARM_SMMU_FEAT_HD) === 0) {
      throw new KernelError('EOPNOTSUPP', `${smmu.name}: dirty tracking needs IDR0.HTTU access+dirty`);
    }
    pgtbl = allocIoPgtableOps('ARM_64_LPAE_S1', { ...common, ias, oas: smmu.ias, quirks: enableDirty ? IO_PGTABLE_QUIRK_ARM_HD : 0 });
  } else {
    if (enableDirty) throw new KernelError('EOPNOTSUPP', `${smmu.name}: no dirty tracking on a stage 2 domain`);
    pgtbl = allocIoPgtableOps('ARM_64_LPAE_S2', { ...common, ias: smmu.ias, oas: smmu.oas });
  }

  domain.pgsizeBitmap = pgtbl.cfg.pgsizeBitmap;
  domain.geometry.apertureStart = 0;
  domain.geometry.apertureEnd = 2 ** pgtbl.cfg.ias - 1;
  domain.geometry.forceAperture = true;
  domain.dirtyTracking = enableDirty;

  try {
    if (domain.stage === 'S1') {
      // (kernel: arm_smmu_domain_finalise_s1())
      domain.asid = armSmmuAsidSpace(smmu.dev.core).alloc(domain, 2 ** smmu.asidBits - 1);
    } else {
      // (kernel: arm_smmu_domain_finalise_s2() — VMID 0 stays for stage 1 STEs.)
      domain.vmid = smmu.vmidMap.allocRange(1, 2 ** smmu.vmidBits - 1);
    }
  } catch (e) {
    domain.smmu = smmu;
    freeIoPgtableOps(pgtbl);
    domain.smmu = null;
    throw e;
  }
  domain.pgtbl = pgtbl;
  domain.smmu = smmu;
}

// kernel: arm_smmu_domain_free_paging() [arm-smmu-v3.c]
export async function armSmmuDomainFreePaging(domain: ArmSmmuDomain): Promise<void> {
  const smmu = domain.smmu;
  if (!smmu) return;
  if (domain.pgtbl) {
    freeIoPgtableOps(domain.pgtbl);
    domain.pgtbl = null;
    await smmu.waitOutstanding();
  }
  if (domain.stage === 'S1') {
    // Under the lock: an SVA bind may be moving the domain to another ASID.
    // kernel: arm_smmu_domain_free_id() [arm-smmu-v3.c]
    const space = armSmmuAsidSpace(smmu.dev.core);
    await space.lock.run(() => space.release(domain.asid, domain));
  } else if (domain.vmid && smmu.vmidMap.has(domain.vmid)) {
    smmu.vmidMap.free(domain.vmid);
  }
}

// ---- the map/unmap domain ops -------------------------------------------------------------------

function asSmmuDomain(domain: IommuDomain): ArmSmmuDomain {
  if (!(domain instanceof ArmSmmuDomain)) throw new KernelError('EINVAL', 'arm-smmu-v3: not an arm-smmu-v3 paging domain');
  return domain;
}

// kernel: arm_smmu_map_pages() [arm-smmu-v3.c]
export function armSmmuMapPages(domain: IommuDomain, iova: number, paddr: number, pgsize: number, pgcount: number, prot: number, _gfp: Gfp): number {
  const d = asSmmuDomain(domain);
  if (!d.pgtbl) throw new KernelError('ENODEV', 'arm-smmu-v3: map on a domain without a page table');
  return d.pgtbl.mapPages(iova, paddr, pgsize, pgcount, prot);
}

// kernel: arm_smmu_unmap_pages() [arm-smmu-v3.c]
export function armSmmuUnmapPages(domain: IommuDomain, iova: number, pgsize: number, pgcount: number, gather: IommuIotlbGather): number {
  const d = asSmmuDomain(domain);
  if (!d.pgtbl) return 0;
  return d.pgtbl.unmapPages(iova, pgsize, pgcount, gather);
}

// kernel: arm_smmu_flush_iotlb_all() [arm-smmu-v3.c]
export async function armSmmuFlushIotlbAll(domain: IommuDomain): Promise<void> {
  const d = asSmmuDomain(domain);
  if (!d.smmu) return;
  await armSmmuTlbInvContext(d);
  await d.smmu.waitOutstanding();
}

// kernel: arm_smmu_iotlb_sync() [arm-smmu-v3.c]
export function armSmmuIotlbSync(domain: IommuDomain, gather: IommuIotlbGather, done: IotlbSyncDone): void {
  const d = asSmmuDomain(domain);
  if (!d.smmu) {
    done();
    return;
  }
  const smmu = d.smmu;
  // Walk flushes io-pgtable queued during the unmap were inserted before the range TLBI: its CMD_SYNC
  // covers them on its queue, and a leftover backlog (or another queue's SYNC) is waited for after.
  if (gather.pgsize === 0) {
    if (smmu.hasOutstanding) smmu.waitOutstanding().then(done, done);
    else done();
    return;
  }
  const size = gather.end - gather.start + 1;
  // Nothing was queued before the TLBI (the usual strict unmap): its own CMD_SYNC is the whole wait.
  // What it completes with (0 or ETIMEDOUT, already logged) is not the caller's concern, as in the
  // kernel, where the sync's error stays inside the command queue.
  if (!smmu.hasOutstanding) {
    armSmmuTlbInvRangeDomain(gather.start, size, gather.pgsize, true, d, done);
    return;
  }
  armSmmuTlbInvRangeDomainWait(gather.start, size, gather.pgsize, true, d)
    .then(() => (smmu.hasOutstanding ? smmu.waitOutstanding() : undefined))
    .then(done, done);
}

/**
 * New mappings need no invalidation (the SMMU caches no invalid entries), but replacing a table with a
 * block queued walk flushes during the map: wait for those.
 */
export function armSmmuIotlbSyncMap(domain: IommuDomain): Promise<void> | void {
  const smmu = asSmmuDomain(domain).smmu;
  // Nothing queued: return at once (no promise per map).
  if (smmu?.hasOutstanding) return smmu.waitOutstanding().then(() => undefined);
}

// kernel: arm_smmu_iova_to_phys() [arm-smmu-v3.c]
export function armSmmuIovaToPhys(domain: IommuDomain, iova: number): number {
  const d = asSmmuDomain(domain);
  return d.pgtbl ? d.pgtbl.iovaToPhys(iova) : 0;
}

/** Flags domain_alloc_paging_flags accepts (kernel: the PAGING_FLAGS of arm_smmu_domain_alloc_paging_flags()). */
export const ARM_SMMU_PAGING_FLAGS = IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_PASID;
