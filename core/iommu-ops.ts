/**
 * The interface between the iommu core and an IOMMU driver (kernel: struct iommu_ops and
 * struct iommu_domain_ops in include/linux/iommu.h).
 *
 * How a driver plugs in
 * ---------------------
 * 1. Probe the hardware, then describe the instance with an `IommuDevice` (its own Device, the PASID
 *    width it supports) and call `iommuDeviceRegister(iommu, ops, hwdev)`. The core looks up every
 *    device of that kernel whose firmware names this IOMMU (`dev.fwspec.iommuNode`), lets the driver
 *    translate the raw specifier cells (`ofXlate`), probes each (`probeDevice`, `deviceGroup`), gives
 *    every group its default domain and attaches it (`attachDev`). Devices added later are probed when
 *    the driver core asks (`iommuDmaConfigure`, before their driver's probe).
 * 2. Groups: return one from `deviceGroup`; the core has the usual policies (`pciDeviceGroup`,
 *    `genericDeviceGroup`, `genericSingleDeviceGroup`, `fwspecSharedDeviceGroup`).
 * 3. Domains: allocate a subclass of `IommuDomain` in `domainAllocPaging*` (set its pgsizeBitmap and
 *    geometry); give static `identityDomain` / `blockedDomain` objects built with their type. The
 *    core stamps type and owner and decides DMA vs DMA-FQ vs IDENTITY from the command line, the
 *    driver's `defDomainType` and `capable('DEFERRED_FLUSH')`.
 * 4. Per-device driver data goes in `devIommuPrivSet(dev, …)` (kernel: dev_iommu_priv_set()).
 *
 * What fits where, for the Arm SMMUs
 * ----------------------------------
 * - arm-smmu (v1/v2): `ofXlate` packs SID | MASK << 16; `probeDevice` allocates stream-map entries;
 *   `attachDev` finalises the domain into a context bank (stage 1 or 2) and writes SMR/S2CR;
 *   context faults go to `reportIommuFault(domain, …)` (a stalled transaction is resumed with the
 *   handler's verdict). It has no PASIDs (`maxPasids` 0), so no `setDevPasid`.
 * - arm-smmu-v3: `probeDevice` builds the master (STEs, ATS/PRI/PASID from the PCI capabilities);
 *   `attachDev` writes the STE (bypass, abort, CD table, S2); `setDevPasid` writes a CD per SSID
 *   and `blockedDomain.setDevPasid` clears one; `domainAllocSva` shares an mm; `pageResponse`
 *   issues PRI_RESP or RESUME.
 *
 * Waiting on hardware
 * -------------------
 * Anything that must wait for the hardware (a CMD_SYNC, a TLBSYNC poll) may return a Promise, which
 * the core awaits: attach, set_dev_pasid, iotlb_sync, iotlb_sync_map, flush_iotlb_all, probe/release,
 * free. Page-table updates (`mapPages` / `unmapPages`) are synchronous, as in the kernel; the wait is
 * in the sync that follows. Inside `unmapPages` a driver's io-pgtable `tlbAddPage` calls
 * `iommuIotlbGatherAddPage(gather, iova, size, issue)`; when the gather must be flushed early, `issue`
 * only queues the invalidation for what was gathered (it cannot wait), and the core's `iotlbSync` at
 * the end waits for everything queued before it.
 *
 * Page-table pages put on `gather.freelist` are the driver's to free, in its `iotlbSync`. A driver
 * whose domains may be DMA_FQ must not use the freelist for a `queued` gather (io-pgtable-arm frees
 * tables itself, after tlbFlushWalk): the flush queue frees IOVAs, not page-table pages.
 *
 * Errors: throw KernelError with the kernel's errno. From `attachDev`, EINVAL means "this domain is
 * incompatible, try another"; ENOMEM, ENOSPC, EBUSY and ENODEV pass through; other errnos reach the
 * caller as ENODEV.
 */
import type { Device } from '../bus/device.js';
import type { IommuFwspec } from '../bus/iommu-fwspec.js';
import type { IommuIotlbGather } from './iommu-gather.js';
import type { Mm } from '../mm/mm.js';
import type { IommuDevice } from './iommu-device.js';
import type { IommuDomain } from './iommu-domain.js';
import type { IopfFault, IommuPageResponse } from './iommu-fault-types.js';
import type { IommuGroup } from './iommu-group.js';
import type { IommufdViommu, IommufdViommuOps, IommuHwInfo } from './iommufd.js';

export type MaybePromise<T> = T | Promise<T>;

/**
 * How a driver's `iotlbSync` answers: called once, with nothing when the invalidation is complete, or
 * with an Error when it could not be carried out. After that call the gather and `done` are the core's
 * again (it reuses both for later unmaps): a driver keeps neither. Any other argument also means complete: a driver may
 * hand `done` straight to a waiter that passes its own status (the SMMUv3 CMD_SYNC waiter passes 0,
 * or ETIMEDOUT after logging the timeout, as the kernel's iotlb_sync returns nothing either way).
 *
 * A callback, not a returned promise: a strict unmap waits here once per call, and `iommu_unmap`
 * answers its caller from `done` itself, so the unmap costs one promise (its own) rather than the
 * driver's and a second one chained after it to carry the unmapped size.
 */
export type IotlbSyncDone = (failure?: unknown) => void;

/** The kernel's enum iommu_cap */
export type IommuCap =
  | 'CACHE_COHERENCY'
  | 'NOEXEC'
  | 'PRE_BOOT_PROTECTION'
  | 'ENFORCE_CACHE_COHERENCY'
  | 'DEFERRED_FLUSH'
  | 'DIRTY_TRACKING';

/** The kernel's enum iommu_dev_features (the per-device feature API, removed in 6.16). */
export type IommuDevFeature = 'IOPF' | 'SVA';

/** The kernel's enum iommu_resv_type */
export type IommuResvType = 'DIRECT' | 'DIRECT_RELAXABLE' | 'RESERVED' | 'MSI' | 'SW_MSI';

/** The kernel's struct iommu_resv_region — an IOVA range with a fixed meaning for a device. */
export interface IommuResvRegion {
  start: number;
  length: number;
  /** IOMMU_* prot for DIRECT regions. */
  prot: number;
  type: IommuResvType;
}

/** Allocation context of a map (kernel: gfp_t); only recorded, allocation never sleeps here. */
export type Gfp = 'GFP_KERNEL' | 'GFP_ATOMIC';

/** The kernel's struct iommu_domain_ops */
export interface DomainOps {
  /**
   * Make `dev`'s RID translate through `domain`; `old` is what it was attached to (null on first
   * attach). Must not fail for a domain that was attached before (the core relies on it to roll back).
   */
  attachDev(domain: IommuDomain, dev: Device, old: IommuDomain | null): MaybePromise<void>;
  /**
   * Make `pasid` of `dev` translate through `domain`, replacing `old` (null: the PASID was unused).
   * The blocked domain's op removes a PASID attachment.
   */
  setDevPasid?(domain: IommuDomain, dev: Device, pasid: number, old: IommuDomain | null): MaybePromise<void>;
  /**
   * Map `pgcount` pages of `pgsize` (a size of the domain's bitmap) from `iova` to `paddr`. Returns
   * the bytes mapped. On failure, throw a KernelError; if some pages were mapped, give their byte
   * count as a numeric `mapped` property of the error (as IoPgtableMapError does) so the core can
   * unmap them.
   */
  mapPages?(domain: IommuDomain, iova: number, paddr: number, pgsize: number, pgcount: number, prot: number, gfp: Gfp): number;
  /** Unmap up to `pgcount` pages of `pgsize`; returns the bytes unmapped (0 at a hole). */
  unmapPages?(domain: IommuDomain, iova: number, pgsize: number, pgcount: number, gather: IommuIotlbGather): number;
  /** Invalidate every TLB entry of the domain and wait for it (the flush queue's batch flush). */
  flushIotlbAll?(domain: IommuDomain): MaybePromise<void>;
  /** Make new mappings visible (for IOMMUs that cache invalid entries). */
  iotlbSyncMap?(domain: IommuDomain, iova: number, size: number): MaybePromise<void>;
  /**
   * Invalidate what `gather` holds, release `gather.freelist` if used, and call `done` once the
   * invalidation is complete (from within this call when there is nothing to wait for). See
   * IotlbSyncDone. A throw before `done` is called fails the sync as `done(error)` does.
   */
  iotlbSync?(domain: IommuDomain, gather: IommuIotlbGather, done: IotlbSyncDone): void;
  /** Physical address `iova` maps to, 0 if unmapped. */
  iovaToPhys?(domain: IommuDomain, iova: number): number;
  /** Make the domain ignore no-snoop; false if the hardware cannot. */
  enforceCacheCoherency?(domain: IommuDomain): boolean;
  /** Release the driver's resources (page tables, context bank, ASID). */
  free?(domain: IommuDomain): MaybePromise<void>;
}

/** The kernel's struct iommu_ops */
export interface IommuOps {
  /** Driver name for messages (kernel: ops->owner, the module). */
  readonly name: string;
  /** Page sizes the hardware supports (kernel: ops->pgsize_bitmap); domains may narrow it. */
  readonly pgsizeBitmap: number;

  capable?(dev: Device, cap: IommuCap): boolean;

  /**
   * Translate one firmware specifier (`iommus` cells after the phandle, or the `iommu-map` output)
   * into IDs in `fwspec.ids` (kernel: of_xlate). Called once per specifier, after the core emptied
   * `ids`. Without this op the IDs of_iommu derived (the first cell) are used as they are.
   */
  ofXlate?(dev: Device, fwspec: IommuFwspec, args: readonly number[]): void;
  /** Take `dev` on; returns the IommuDevice instance that serves it. ENODEV: not ours. */
  probeDevice(dev: Device): MaybePromise<IommuDevice>;
  /** After the device has its group and default domain. */
  probeFinalize?(dev: Device): void;
  /** The device goes away: stop using any domain on it (the core attached `releaseDomain` first). */
  releaseDevice?(dev: Device): MaybePromise<void>;
  /** The device's group: a new one or one it shares (see the helpers in iommu-group.ts). */
  deviceGroup(dev: Device): IommuGroup;
  /** Reserved IOVA regions of `dev` (MSI doorbells, firmware direct mappings). */
  getResvRegions?(dev: Device): IommuResvRegion[];
  /** True if the first attach must wait until the device's driver first uses the DMA API. */
  isAttachDeferred?(dev: Device): boolean;
  /** The default domain type this device needs: IOMMU_DOMAIN_IDENTITY, IOMMU_DOMAIN_DMA, or 0 (no preference). */
  defDomainType?(dev: Device): number;

  domainAllocPaging?(dev: Device): IommuDomain;
  /** With IOMMU_HWPT_ALLOC_* flags; EOPNOTSUPP for flags it cannot honour. */
  domainAllocPagingFlags?(dev: Device, flags: number): IommuDomain;
  domainAllocIdentity?(dev: Device): IommuDomain;
  /** A domain sharing `mm`'s page tables (the core sets its type, cookie and iopf handler). */
  domainAllocSva?(dev: Device, mm: Mm): IommuDomain;

  /** A static identity domain (type IOMMU_DOMAIN_IDENTITY). */
  readonly identityDomain?: IommuDomain;
  /** A static blocked domain (type IOMMU_DOMAIN_BLOCKED); its setDevPasid removes PASID attachments. */
  readonly blockedDomain?: IommuDomain;
  /** Attached before releaseDevice (kernel: release_domain). */
  readonly releaseDomain?: IommuDomain;
  /** Legacy: the only default domain this driver supports. */
  readonly defaultDomain?: IommuDomain;
  /** Ops for allocated domains that do not carry their own. */
  readonly defaultDomainOps?: DomainOps;
  /** A PASID fault without a PASID attachment is looked up in the RID's NESTED handle. */
  readonly userPasidTable?: boolean;

  /** Answer a page request (PRI_RESP) or a stall (RESUME); `evt` is the last fault of the group. */
  pageResponse?(dev: Device, evt: IopfFault, msg: IommuPageResponse): MaybePromise<void>;

  /** The IOMMU's ID registers for user space (IOMMU_GET_HW_INFO); EOPNOTSUPP for a type it lacks. */
  hwInfo?(dev: Device, type: number): IommuHwInfo;
  /**
   * Make `viommu` a vIOMMU of `type` over the nest-parent `parent` for `dev`'s IOMMU, returning its
   * ops (kernel: get_viommu_size + viommu_init); `data` is the type's user structure (in and out).
   * EOPNOTSUPP when it cannot.
   */
  viommuAlloc?(dev: Device, type: number, parent: IommuDomain, viommu: IommufdViommu, data: Uint32Array | null): Promise<IommufdViommuOps>;

  /** The per-device feature API of 5.x–6.15 (IOPF before SVA). */
  devEnableFeat?(dev: Device, feat: IommuDevFeature): MaybePromise<void>;
  devDisableFeat?(dev: Device, feat: IommuDevFeature): MaybePromise<void>;
}
