/**
 * iommufd-style objects for host user space (kernel: drivers/iommu/iommufd/ and the uAPI of
 * include/uapi/linux/iommufd.h): what a VMM uses to give a guest a device, as QEMU does on Linux.
 *
 * One `IommufdCtx` is one open /dev/iommu. Every object gets an ID from one table, and every call
 * takes IDs, as the ioctls do:
 * - IOAS (IOMMU_IOAS_ALLOC / _MAP / _UNMAP): an I/O address space of user memory. User memory is
 *   given as the host physical range backing it (the VMM's pinned pages); every paging HWPT made
 *   from the IOAS maps it.
 * - device (VFIO cdev bind): `bindDevice` takes the device from its host driver (unbinds it) and
 *   claims its group's DMA ownership, so the group sits on its blocking domain until attached.
 * - HWPT (IOMMU_HWPT_ALLOC): a paging domain over an IOAS (flags NEST_PARENT for a stage 2, PASID,
 *   DIRTY_TRACKING), or a nested domain over a vIOMMU from driver data (ARM_SMMUV3: a guest STE).
 *   FAULT_ID_VALID makes the HWPT's I/O page faults go to a fault object.
 * - attach / replace / detach (IOMMU_DEVICE_ATTACH/REPLACE/DETACH): the RID of a bound device.
 * - vIOMMU (IOMMU_VIOMMU_ALLOC): the driver's virtual IOMMU over a nest-parent HWPT; its `type`
 *   selects the driver object (ARM_SMMUV3, and later TEGRA241_CMDQV).
 * - vDEVICE (IOMMU_VDEVICE_ALLOC): virtual ID (the guest's StreamID) of a bound device on a vIOMMU.
 * - invalidation (IOMMU_HWPT_INVALIDATE on a vIOMMU): driver-format entries, `entryNum` says how
 *   many were handled.
 * - vEVENTQ (IOMMU_VEVENTQ_ALLOC): driver-format event records the vIOMMU reports, each with a
 *   sequence number; on overflow the tail is dropped and a LOST_EVENTS header marks it.
 * - fault object (IOMMU_FAULT_QUEUE_ALLOC): page-request groups of the HWPTs that name it. Each
 *   record carries a cookie the kernel generated; a response names the cookie, never the hardware's
 *   PRGI or private data. A stale (already answered), unknown or forged cookie is EINVAL.
 *
 * Errors are the kernel's: ENOENT for an unknown ID or a wrong object type, EINVAL for bad
 * arguments, EBUSY for an object still in use, EOPNOTSUPP for what the driver cannot do, EEXIST for
 * an overlapping map.
 *
 * One file over ~700 lines on purpose: the objects are small classes and every call is a method of
 * the one context (`IommufdCtx`) that owns the object table and its ID space, as the kernel's ioctls
 * all dispatch through one iommufd_ctx.
 */
import type { Device } from '../bus/device.js';
import { KernelError } from '../bus/errno.js';
import { IOMMU_READ, IOMMU_WRITE } from './io-pgtable.js';
import { iopfGroupResponse } from './io-pgfault.js';
import {
  iommuAttachGroupHandle,
  iommuDetachGroupHandle,
  iommuDeviceClaimDmaOwner,
  iommuDeviceReleaseDmaOwner,
  iommuReplaceGroupHandle,
  IommuAttachHandle,
} from './iommu-attach.js';
import { devIommu, devIommuOps, hasIommu } from './iommu-device.js';
import {
  IOMMU_DOMAIN_NESTED,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
  iommuDomainFree,
  iommuDomainInit,
  iommuPagingDomainAllocFlags,
  type IommuDomain,
} from './iommu-domain.js';
import { IOMMU_PAGE_RESP_FAILURE, IOMMU_PAGE_RESP_SUCCESS, type IopfGroup, type IommuPageResponseCode } from './iommu-fault-types.js';
import { iommuGroupGet } from './iommu-group.js';
import { iommuMap, iommuUnmap } from './iommu-map.js';
import { iommuDevDisableFeature, iommuDevEnableFeature } from './iommu.js';

// ---- uAPI numbers (include/uapi/linux/iommufd.h) ------------------------------------------------

/** The kernel's IOMMU_HWPT_FAULT_ID_VALID */
export const IOMMU_HWPT_FAULT_ID_VALID = 1 << 2;
const HWPT_ALLOC_FLAGS = IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID;

/** The kernel's enum iommu_hwpt_data_type */
export const IOMMU_HWPT_DATA_NONE = 0;
export const IOMMU_HWPT_DATA_ARM_SMMUV3 = 2;
/** The kernel's enum iommu_hwpt_invalidate_data_type */
export const IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 = 1;
/** The kernel's enum iommu_viommu_type */
export const IOMMU_VIOMMU_TYPE_DEFAULT = 0;
export const IOMMU_VIOMMU_TYPE_ARM_SMMUV3 = 1;
export const IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV = 2;
/** The kernel's enum iommu_veventq_type */
export const IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 = 1;
export const IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV = 2;
/** The kernel's enum iommu_hw_queue_type */
export const IOMMU_HW_QUEUE_TYPE_DEFAULT = 0;
export const IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV = 1;
/** The kernel's enum iommu_hw_info_type */
export const IOMMU_HW_INFO_TYPE_DEFAULT = 0;
export const IOMMU_HW_INFO_TYPE_ARM_SMMUV3 = 2;
export const IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV = 3;
/** The kernel's IOMMU_VEVENTQ_FLAG_LOST_EVENTS */
export const IOMMU_VEVENTQ_FLAG_LOST_EVENTS = 1 << 0;
/** The kernel's IOMMU_IOAS_MAP_* */
export const IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
export const IOMMU_IOAS_MAP_READABLE = 1 << 2;
/** The kernel's IOMMU_PGFAULT_FLAGS_* */
export const IOMMU_PGFAULT_FLAGS_PASID_VALID = 1 << 0;
export const IOMMU_PGFAULT_FLAGS_LAST_PAGE = 1 << 1;

const PAGE = 4096;

// ---- the driver side ----------------------------------------------------------------------------

/** Driver data of a nested HWPT or an invalidation array (kernel: struct iommu_user_data(_array)). */
export interface IommuUserData {
  readonly type: number;
  /** The driver structure as little-endian u32 words. */
  readonly words: Uint32Array;
}

/** The kernel's struct iommu_user_data_array — `entryNum` comes back as the number handled. */
export interface IommuUserDataArray {
  readonly type: number;
  /** Entries, each a driver structure as little-endian u32 words. */
  readonly entries: readonly Uint32Array[];
  entryNum: number;
}

/** The kernel's struct iommufd_viommu_ops — what a driver's vIOMMU does. */
export interface IommufdViommuOps {
  /** A nested domain from driver data (EOPNOTSUPP for flags; the driver's errno for bad data). */
  allocDomainNested(viommu: IommufdViommu, flags: number, data: IommuUserData): IommuDomain;
  /** Run the invalidation entries; set `array.entryNum` to those handled, throw at the first failure. */
  cacheInvalidate(viommu: IommufdViommu, array: IommuUserDataArray): Promise<void>;
  /** Release the driver's state (kernel: viommu->ops->destroy). */
  destroy?(viommu: IommufdViommu): Promise<void>;
  /** Program the hardware for a new vDEVICE (kernel: viommu->ops->vdevice_init); throw to refuse it. */
  vdeviceInit?(vdev: IommufdVdevice): void;
  /** Undo vdeviceInit (kernel: vdev->destroy). */
  vdeviceDestroy?(vdev: IommufdVdevice): void;
  /**
   * Give the hardware a queue at host physical `basePa` (kernel: viommu->ops->hw_queue_init_phys);
   * EOPNOTSUPP for a queue type the driver lacks, its errno for a bad index, order or size.
   */
  hwQueueInitPhys?(hwq: IommufdHwQueue, basePa: number): void;
  /** Take the queue back from the hardware (kernel: hw_queue->destroy). */
  hwQueueDestroy?(hwq: IommufdHwQueue): Promise<void>;
}

/** The kernel's iommu_ops.hw_info — the IOMMU's ID registers for user space. */
export interface IommuHwInfo {
  readonly type: number;
  readonly data: Uint32Array;
}

// ---- objects ------------------------------------------------------------------------------------

type ObjType = 'ioas' | 'device' | 'hwpt-paging' | 'hwpt-nested' | 'viommu' | 'vdevice' | 'veventq' | 'fault' | 'hw-queue';

abstract class IommufdObject {
  abstract readonly type: ObjType;
  /** Objects that depend on this one (kernel: users refcount). */
  users = 0;
  constructor(readonly id: number) {}
}

interface IoasArea {
  readonly iova: number;
  readonly length: number;
  readonly pa: number;
  readonly prot: number;
  /** HW queues pinning it (kernel: the internal access of iommufd_hw_queue_alloc_phys()). */
  pins: number;
}

/** The kernel's struct iommufd_ioas */
export class IommufdIoas extends IommufdObject {
  readonly type = 'ioas';
  readonly areas: IoasArea[] = [];
  readonly hwpts = new Set<IommufdHwptPaging>();
}

/** The kernel's struct iommufd_device */
export class IommufdDevice extends IommufdObject {
  readonly type = 'device';
  readonly handle = new IommuAttachHandle();
  /** The HWPT its RID is attached to, or null (blocking domain). */
  hwpt: IommufdHwpt | null = null;
  /** I/O page faults were enabled for a fault-capable HWPT (kernel: iopf_enabled). */
  iopfEnabled = false;
  constructor(
    id: number,
    readonly dev: Device,
  ) {
    super(id);
  }
}

/** The kernel's struct iommufd_hwpt_paging */
export class IommufdHwptPaging extends IommufdObject {
  readonly type = 'hwpt-paging';
  constructor(
    id: number,
    readonly domain: IommuDomain,
    readonly ioas: IommufdIoas,
    readonly nestParent: boolean,
    readonly fault: IommufdFault | null,
  ) {
    super(id);
  }
}

/** The kernel's struct iommufd_hwpt_nested */
export class IommufdHwptNested extends IommufdObject {
  readonly type = 'hwpt-nested';
  constructor(
    id: number,
    readonly domain: IommuDomain,
    readonly viommu: IommufdViommu,
    readonly fault: IommufdFault | null,
  ) {
    super(id);
  }
}

export type IommufdHwpt = IommufdHwptPaging | IommufdHwptNested;

/** The kernel's struct iommufd_viommu */
export class IommufdViommu extends IommufdObject {
  readonly type = 'viommu';
  /** Virtual ID → vDEVICE (kernel: vdevs xarray). */
  readonly vdevs = new Map<number, IommufdVdevice>();
  readonly veventqs = new Map<number, IommufdVeventq>();
  readonly hwQueues = new Set<IommufdHwQueue>();
  /** Regions user space may mmap, by offset (kernel: iommufd_viommu_alloc_mmap()). */
  readonly mmaps = new Map<number, { readonly phys: number; readonly length: number }>();
  ops: IommufdViommuOps | null = null;
  /** The driver's object (kernel: the structure that embeds iommufd_viommu). */
  driverData: unknown = null;
  constructor(
    id: number,
    /** IOMMU_VIOMMU_TYPE_* */
    readonly viommuType: number,
    /** The device it was allocated for; its IOMMU is the vIOMMU's. */
    readonly dev: Device,
    readonly parent: IommufdHwptPaging,
  ) {
    super(id);
  }

  /** The device behind a virtual ID, or null. */
  // kernel: iommufd_viommu_find_dev() [driver.c]
  findDev(virtId: number): Device | null {
    return this.vdevs.get(virtId)?.idev.dev ?? null;
  }

  /** The virtual ID of `dev` on this vIOMMU. ENOENT if it has none. */
  // kernel: iommufd_viommu_get_vdev_id() [driver.c]
  getVdevId(dev: Device): number {
    for (const v of this.vdevs.values()) if (v.idev.dev === dev) return v.virtId;
    throw new KernelError('ENOENT', `${dev.name} has no vDEVICE on vIOMMU ${this.id}`);
  }

  /**
   * Offer `length` bytes of host MMIO at `phys` to user space; returns the mmap offset.
   */
  // kernel: iommufd_viommu_alloc_mmap() [driver.c]
  allocMmap(phys: number, length: number): number {
    const offset = this.id * 0x1_0000_0000 + this.mmaps.size * 0x1_0000;
    this.mmaps.set(offset, { phys, length });
    return offset;
  }

  // kernel: iommufd_viommu_destroy_mmap() [driver.c]
  destroyMmap(offset: number): void {
    this.mmaps.delete(offset);
  }

  /** Queue a driver event record to the vEVENTQ of `type`; EOPNOTSUPP when there is none. */
  // kernel: iommufd_viommu_report_event() [driver.c]
  reportEvent(type: number, data: Uint32Array): void {
    for (const q of this.veventqs.values()) {
      if (q.veventqType === type) {
        q.push(data);
        return;
      }
    }
    throw new KernelError('EOPNOTSUPP', `vIOMMU ${this.id} has no vEVENTQ of type ${type}`);
  }
}

/** The kernel's struct iommufd_vdevice */
export class IommufdVdevice extends IommufdObject {
  readonly type = 'vdevice';
  /** The driver's state for it (a SID pair slot). */
  driverData: unknown = null;
  constructor(
    id: number,
    readonly viommu: IommufdViommu,
    readonly idev: IommufdDevice,
    readonly virtId: number,
  ) {
    super(id);
  }
}

/** The kernel's struct iommufd_hw_queue — a queue of the guest's memory the hardware reads directly. */
export class IommufdHwQueue extends IommufdObject {
  readonly type = 'hw-queue';
  /** The host physical address the driver gave the hardware. */
  basePa = 0;
  /** The queue this one must outlive (kernel: iommufd_hw_queue_depend()). */
  dependsOn: IommufdHwQueue | null = null;
  /** The driver's object. */
  driverData: unknown = null;
  constructor(
    id: number,
    readonly viommu: IommufdViommu,
    /** IOMMU_HW_QUEUE_TYPE_* */
    readonly hwQueueType: number,
    readonly index: number,
    readonly iova: number,
    readonly length: number,
    readonly pinned: readonly IoasArea[],
  ) {
    super(id);
  }

  /** Make `prev` undestroyable while this queue exists. */
  // kernel: iommufd_hw_queue_depend() [iommufd.h]
  depend(prev: IommufdHwQueue): void {
    this.dependsOn = prev;
    prev.users++;
  }
}

/** One record read from a vEVENTQ (kernel: struct iommufd_vevent_header + data). */
export interface IommufdVevent {
  /** IOMMU_VEVENTQ_FLAG_* */
  readonly flags: number;
  readonly sequence: number;
  /** The driver record (empty for a LOST_EVENTS header). */
  readonly data: Uint32Array;
}

/** The kernel's struct iommufd_veventq */
export class IommufdVeventq extends IommufdObject {
  readonly type = 'veventq';
  private readonly records: IommufdVevent[] = [];
  private sequence = 0;
  private lost = false;
  /** Called when a record is queued (the fd becomes readable). */
  onEvent: (() => void) | null = null;
  constructor(
    id: number,
    readonly viommu: IommufdViommu,
    readonly veventqType: number,
    readonly depth: number,
  ) {
    super(id);
  }

  get length(): number {
    return this.records.length;
  }

  /** As the kernel's iommufd_viommu_report_event()'s queueing (overflow: drop, mark LOST_EVENTS). */
  push(data: Uint32Array): void {
    const seq = this.sequence;
    this.sequence = (this.sequence + 1) >>> 0;
    if (this.records.length >= this.depth) {
      this.lost = true;
      return;
    }
    this.records.push({ flags: 0, sequence: seq, data: data.slice() });
    this.onEvent?.();
  }

  /** The oldest record, a LOST_EVENTS header after an overflow once the queue drained, or null. */
  read(): IommufdVevent | null {
    const r = this.records.shift();
    if (r) return r;
    if (this.lost) {
      this.lost = false;
      return { flags: IOMMU_VEVENTQ_FLAG_LOST_EVENTS, sequence: this.sequence, data: new Uint32Array(0) };
    }
    return null;
  }
}

/** One page request as user space reads it (kernel: struct iommu_hwpt_pgfault). */
export interface IommuHwptPgfault {
  /** IOMMU_PGFAULT_FLAGS_* */
  readonly flags: number;
  readonly devId: number;
  readonly pasid: number;
  readonly grpid: number;
  /** IOMMU_PGFAULT_PERM_* (the core's IOMMU_FAULT_PERM_* values) */
  readonly perm: number;
  readonly addr: number;
  readonly length: number;
  /** The kernel's handle for the group; the response returns it. */
  readonly cookie: number;
}

/** The kernel's struct iommufd_fault */
export class IommufdFault extends IommufdObject {
  readonly type = 'fault';
  private readonly records: IommuHwptPgfault[] = [];
  /** cookie → group not answered yet (kernel: fault->response xarray). */
  private readonly response = new Map<number, IopfGroup>();
  private nextCookie = 1;
  onFault: (() => void) | null = null;
  constructor(
    id: number,
    readonly ctx: IommufdCtx,
  ) {
    super(id);
  }

  get length(): number {
    return this.records.length;
  }

  /** Groups handed out and not answered. */
  get pending(): number {
    return this.response.size;
  }

  /** A HWPT's iopf handler: queue every request of the group under one new cookie. */
  // kernel: iommufd_fault_iopf_handler() [eventq.c]
  handle(group: IopfGroup): void {
    const idev = this.ctx.idevOf(group.dev);
    if (!idev) throw new KernelError('ENODEV', `${group.dev.name} is not bound to this iommufd`);
    const cookie = this.nextCookie++;
    this.response.set(cookie, group);
    for (const f of group.faults) {
      const prm = f.fault.prm;
      this.records.push({
        flags: prm.flags & (IOMMU_PGFAULT_FLAGS_PASID_VALID | IOMMU_PGFAULT_FLAGS_LAST_PAGE),
        devId: idev.id,
        pasid: prm.pasid,
        grpid: prm.grpid,
        perm: prm.perm,
        addr: prm.addr,
        length: PAGE,
        cookie,
      });
    }
    this.onFault?.();
  }

  /** The oldest request, or null. */
  read(): IommuHwptPgfault | null {
    return this.records.shift() ?? null;
  }

  /**
   * Answer the group `cookie` names. EINVAL for a cookie this queue never gave, or already answered
   * (stale), or a bad code.
   */
  // kernel: iommufd_fault_fops_write() [eventq.c]
  respond(cookie: number, code: IommuPageResponseCode): void {
    const group = this.response.get(cookie);
    if (!group) throw new KernelError('EINVAL', `fault queue ${this.id}: no pending page request has cookie ${cookie}`);
    this.response.delete(cookie);
    iopfGroupResponse(group, code);
  }

  /** Answer everything still pending (the queue or its HWPT goes away). */
  drain(code: IommuPageResponseCode): void {
    for (const [cookie, group] of this.response) {
      this.response.delete(cookie);
      iopfGroupResponse(group, code);
    }
    this.records.length = 0;
  }
}

// ---- the context --------------------------------------------------------------------------------

/** The kernel's struct iommufd_ctx — one open /dev/iommu. */
export class IommufdCtx {
  private readonly objects = new Map<number, IommufdObject>();
  private nextId = 1;
  private closed = false;

  private add<T extends IommufdObject>(make: (id: number) => T): T {
    if (this.closed) throw new KernelError('EINVAL', 'iommufd: the context is closed');
    const obj = make(this.nextId++);
    this.objects.set(obj.id, obj);
    return obj;
  }

  private get<T extends IommufdObject>(id: number, ...types: ObjType[]): T {
    const obj = this.objects.get(id);
    if (!obj || !types.includes(obj.type)) throw new KernelError('ENOENT', `iommufd: no ${types.join('/')} object with ID ${id}`);
    return obj as T;
  }

  /** Live objects (for reports and tests). */
  get objectCount(): number {
    return this.objects.size;
  }

  /** The bound device record of `dev`, or null. */
  idevOf(dev: Device): IommufdDevice | null {
    for (const o of this.objects.values()) if (o instanceof IommufdDevice && o.dev === dev) return o;
    return null;
  }

  ioas(id: number): IommufdIoas {
    return this.get(id, 'ioas');
  }
  hwpt(id: number): IommufdHwpt {
    return this.get(id, 'hwpt-paging', 'hwpt-nested');
  }
  viommu(id: number): IommufdViommu {
    return this.get(id, 'viommu');
  }
  veventq(id: number): IommufdVeventq {
    return this.get(id, 'veventq');
  }
  fault(id: number): IommufdFault {
    return this.get(id, 'fault');
  }
  device(id: number): IommufdDevice {
    return this.get(id, 'device');
  }

  // ---- IOAS ----

  /** The kernel's IOMMU_IOAS_ALLOC */
  ioasAlloc(): number {
    return this.add((id) => new IommufdIoas(id)).id;
  }

  /**
   * Map `length` bytes of user memory (backed by host PA `pa`) at `iova` (IOMMU_IOAS_MAP with
   * FIXED_IOVA): into every HWPT of the IOAS. EINVAL unaligned or empty; EEXIST over a mapping.
   */
  async ioasMap(ioasId: number, iova: number, pa: number, length: number, flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE): Promise<void> {
    const ioas = this.ioas(ioasId);
    if (length <= 0 || iova % PAGE !== 0 || pa % PAGE !== 0 || length % PAGE !== 0) {
      throw new KernelError('EINVAL', `IOAS ${ioasId}: map of 0x${length.toString(16)} bytes at IOVA 0x${iova.toString(16)} (PA 0x${pa.toString(16)}) is not page aligned`);
    }
    if ((flags & ~(IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)) !== 0) throw new KernelError('EINVAL', `IOAS ${ioasId}: unknown map flags 0x${flags.toString(16)}`);
    for (const a of ioas.areas) {
      if (iova < a.iova + a.length && a.iova < iova + length) {
        throw new KernelError('EEXIST', `IOAS ${ioasId}: IOVA 0x${iova.toString(16)}+0x${length.toString(16)} overlaps the mapping at 0x${a.iova.toString(16)}`);
      }
    }
    const prot = ((flags & IOMMU_IOAS_MAP_READABLE) !== 0 ? IOMMU_READ : 0) | ((flags & IOMMU_IOAS_MAP_WRITEABLE) !== 0 ? IOMMU_WRITE : 0);
    const area: IoasArea = { iova, length, pa, prot, pins: 0 };
    const done: IommufdHwptPaging[] = [];
    try {
      for (const h of ioas.hwpts) {
        await iommuMap(h.domain, iova, pa, length, prot);
        done.push(h);
      }
    } catch (e) {
      for (const h of done) await iommuUnmap(h.domain, iova, length);
      throw e;
    }
    ioas.areas.push(area);
  }

  /**
   * Unmap [iova, iova+length): every mapping inside goes; ENOENT when nothing is there or a mapping
   * straddles the range (the kernel cannot split an area). Returns the bytes unmapped.
   */
  async ioasUnmap(ioasId: number, iova: number, length: number): Promise<number> {
    const ioas = this.ioas(ioasId);
    const end = iova + length;
    const hit = ioas.areas.filter((a) => a.iova < end && iova < a.iova + a.length);
    if (hit.length === 0) throw new KernelError('ENOENT', `IOAS ${ioasId}: nothing is mapped at 0x${iova.toString(16)}+0x${length.toString(16)}`);
    for (const a of hit) {
      if (a.iova < iova || a.iova + a.length > end) throw new KernelError('ENOENT', `IOAS ${ioasId}: the mapping at 0x${a.iova.toString(16)} straddles the unmap range`);
      if (a.pins > 0) throw new KernelError('EBUSY', `IOAS ${ioasId}: the mapping at 0x${a.iova.toString(16)} backs a hardware queue`);
    }
    let bytes = 0;
    for (const a of hit) {
      for (const h of ioas.hwpts) await iommuUnmap(h.domain, a.iova, a.length);
      ioas.areas.splice(ioas.areas.indexOf(a), 1);
      bytes += a.length;
    }
    return bytes;
  }

  // ---- devices ----

  /**
   * Bind `dev` (VFIO cdev bind + IOMMU_VFIO_IOAS): unbind its host driver, take its group's DMA
   * ownership (the group goes to its blocking domain). ENODEV without an IOMMU; EBUSY if bound here.
   */
  async bindDevice(dev: Device): Promise<number> {
    if (!hasIommu(dev) || !iommuGroupGet(dev)) throw new KernelError('ENODEV', `${dev.name} is not behind an IOMMU`);
    if (this.idevOf(dev)) throw new KernelError('EBUSY', `${dev.name} is already bound to this iommufd`);
    if (dev.driver) await dev.core.unbind(dev);
    await iommuDeviceClaimDmaOwner(dev, this);
    return this.add((id) => new IommufdDevice(id, dev)).id;
  }

  /** Unbind: detach, give DMA ownership back (default domain), leave the device without a driver. */
  async unbindDevice(devId: number): Promise<void> {
    const idev = this.device(devId);
    if (idev.users > 0) throw new KernelError('EBUSY', `device ${devId} (${idev.dev.name}) still has ${idev.users} vDEVICE/vIOMMU user(s)`);
    if (idev.hwpt) await this.detach(devId);
    if (idev.iopfEnabled) {
      await iommuDevDisableFeature(idev.dev, 'IOPF');
      idev.iopfEnabled = false;
    }
    await iommuDeviceReleaseDmaOwner(idev.dev);
    this.objects.delete(devId);
  }

  /** The kernel's IOMMU_GET_HW_INFO — EOPNOTSUPP when the driver has no hw_info. */
  getHwInfo(devId: number, type = IOMMU_HW_INFO_TYPE_DEFAULT): IommuHwInfo {
    const idev = this.device(devId);
    const ops = devIommuOps(idev.dev);
    if (!ops.hwInfo) throw new KernelError('EOPNOTSUPP', `${ops.name} reports no hardware information`);
    return ops.hwInfo(idev.dev, type);
  }

  // ---- HWPTs ----

  /**
   * The kernel's IOMMU_HWPT_ALLOC. `ptId` an IOAS: a paging domain (flags NEST_PARENT, PASID,
   * DIRTY_TRACKING) mapping the IOAS; `ptId` a vIOMMU: a nested domain from `data`. EOPNOTSUPP for
   * flags the driver cannot honour; EINVAL for data on a paging HWPT or a fault ID without the flag.
   */
  async hwptAlloc(opts: { devId: number; ptId: number; flags?: number; data?: IommuUserData; faultId?: number }): Promise<number> {
    const flags = opts.flags ?? 0;
    const idev = this.device(opts.devId);
    if ((flags & ~HWPT_ALLOC_FLAGS) !== 0) throw new KernelError('EOPNOTSUPP', `HWPT flags 0x${flags.toString(16)} are not known`);
    let fault: IommufdFault | null = null;
    if ((flags & IOMMU_HWPT_FAULT_ID_VALID) !== 0) fault = this.fault(opts.faultId ?? 0);
    else if (opts.faultId !== undefined) throw new KernelError('EINVAL', 'a fault ID needs IOMMU_HWPT_FAULT_ID_VALID');
    const pt = this.objects.get(opts.ptId);
    if (pt instanceof IommufdIoas) {
      if (opts.data && opts.data.type !== IOMMU_HWPT_DATA_NONE) throw new KernelError('EINVAL', 'a paging HWPT takes no driver data');
      const domain = iommuPagingDomainAllocFlags(idev.dev, flags & ~IOMMU_HWPT_FAULT_ID_VALID);
      try {
        for (const a of pt.areas) await iommuMap(domain, a.iova, a.pa, a.length, a.prot);
      } catch (e) {
        await iommuDomainFree(domain);
        throw e;
      }
      const obj = this.add((id) => new IommufdHwptPaging(id, domain, pt, (flags & IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0, fault));
      pt.hwpts.add(obj);
      pt.users++;
      if (fault) this.wireFault(obj.domain, fault);
      return obj.id;
    }
    if (pt instanceof IommufdViommu) {
      if ((flags & ~IOMMU_HWPT_FAULT_ID_VALID) !== 0) throw new KernelError('EOPNOTSUPP', `a nested HWPT takes no allocation flags (0x${flags.toString(16)})`);
      if (!opts.data || !pt.ops) throw new KernelError('EINVAL', `vIOMMU ${pt.id}: a nested HWPT needs driver data`);
      const domain = pt.ops.allocDomainNested(pt, 0, opts.data);
      iommuDomainInit(domain, IOMMU_DOMAIN_NESTED, devIommuOps(pt.dev));
      const obj = this.add((id) => new IommufdHwptNested(id, domain, pt, fault));
      pt.users++;
      if (fault) this.wireFault(domain, fault);
      return obj.id;
    }
    throw new KernelError('ENOENT', `iommufd: ${opts.ptId} is neither an IOAS nor a vIOMMU`);
  }

  private wireFault(domain: IommuDomain, fault: IommufdFault): void {
    domain.iopfHandler = (group) => fault.handle(group);
    fault.users++;
  }

  /**
   * Attach (or replace: IOMMU_DEVICE_REPLACE) the RID of a bound device to a HWPT. An IOAS ID
   * attaches a new paging HWPT of it (the kernel's automatic domain).
   */
  async attach(devId: number, ptId: number): Promise<number> {
    const idev = this.device(devId);
    let hwptId = ptId;
    if (this.objects.get(ptId) instanceof IommufdIoas) hwptId = await this.hwptAlloc({ devId, ptId });
    const hwpt = this.hwpt(hwptId);
    const group = iommuGroupGet(idev.dev)!;
    if (idev.hwpt === hwpt) return hwptId;
    // A HWPT that reports page faults to user space needs the device's IOPF on (kernel 6.14:
    // iommufd_fault_iopf_enable() through the per-device feature API); EINVAL when it cannot.
    if (hwpt.fault && !idev.iopfEnabled) {
      await iommuDevEnableFeature(idev.dev, 'IOPF');
      idev.iopfEnabled = true;
    }
    if (idev.hwpt) await iommuReplaceGroupHandle(group, hwpt.domain, idev.handle);
    else await iommuAttachGroupHandle(hwpt.domain, group, idev.handle);
    if (idev.hwpt) idev.hwpt.users--;
    idev.hwpt = hwpt;
    hwpt.users++;
    return hwptId;
  }

  /** The kernel's IOMMU_DEVICE_DETACH — the RID goes back to the blocking domain. */
  async detach(devId: number): Promise<void> {
    const idev = this.device(devId);
    if (!idev.hwpt) throw new KernelError('EINVAL', `device ${devId} is not attached`);
    const group = iommuGroupGet(idev.dev)!;
    await iommuDetachGroupHandle(idev.hwpt.domain, group);
    idev.hwpt.users--;
    idev.hwpt = null;
  }

  // ---- vIOMMU ----

  /**
   * The kernel's IOMMU_VIOMMU_ALLOC — a vIOMMU of `type` over a NEST_PARENT HWPT, for `devId`'s IOMMU.
   * `data` is the type's driver structure as u32 words, in and out (TEGRA241_CMDQV: the mmap
   * offset and length of the VINTF page0 come back in it). EINVAL when the HWPT is not a nest
   * parent; EOPNOTSUPP when the driver has no such vIOMMU.
   */
  async viommuAlloc(devId: number, hwptId: number, type: number, data: Uint32Array | null = null): Promise<number> {
    const idev = this.device(devId);
    const parent = this.hwpt(hwptId);
    if (!(parent instanceof IommufdHwptPaging) || !parent.nestParent) throw new KernelError('EINVAL', `HWPT ${hwptId} is not a nesting parent`);
    const ops = devIommuOps(idev.dev);
    if (!ops.viommuAlloc || type === IOMMU_VIOMMU_TYPE_DEFAULT) throw new KernelError('EOPNOTSUPP', `${ops.name} has no vIOMMU of type ${type}`);
    const obj = this.add((id) => new IommufdViommu(id, type, idev.dev, parent));
    try {
      obj.ops = await ops.viommuAlloc(idev.dev, type, parent.domain, obj, data);
    } catch (e) {
      this.objects.delete(obj.id);
      throw e;
    }
    parent.users++;
    idev.users++;
    return obj.id;
  }

  /** The host MMIO behind an mmap of the iommufd at `offset` (ENXIO for no region of that size). */
  mmap(offset: number, length: number): number {
    for (const o of this.objects.values()) {
      if (!(o instanceof IommufdViommu)) continue;
      const r = o.mmaps.get(offset);
      if (r) {
        if (length !== r.length) throw new KernelError('EINVAL', `iommufd: mmap of 0x${length.toString(16)} bytes at offset 0x${offset.toString(16)}: the region is 0x${r.length.toString(16)} bytes`);
        return r.phys;
      }
    }
    throw new KernelError('ENXIO', `iommufd: nothing to mmap at offset 0x${offset.toString(16)}`);
  }

  /**
   * The kernel's IOMMU_HW_QUEUE_ALLOC — hand the hardware a queue the user keeps at `iova` of the
   * vIOMMU's parent IOAS (a guest physical address for a VMM): the range is pinned (IOAS_UNMAP is
   * EBUSY) and must be host-physically contiguous (EFAULT otherwise, ENOENT when unmapped).
   */
  hwQueueAlloc(viommuId: number, type: number, index: number, iova: number, length: number): number {
    const viommu = this.viommu(viommuId);
    if (type === IOMMU_HW_QUEUE_TYPE_DEFAULT || !viommu.ops?.hwQueueInitPhys) throw new KernelError('EOPNOTSUPP', `vIOMMU ${viommuId} has no hardware queue of type ${type}`);
    if (!Number.isSafeInteger(length) || length <= 0 || !Number.isSafeInteger(iova) || iova < 0 || !Number.isSafeInteger(iova + length)) {
      throw new KernelError('EINVAL', `hardware queue of 0x${length.toString(16)} bytes at IOVA 0x${iova.toString(16)} is out of range`);
    }
    const ioas = viommu.parent.ioas;
    const areas: IoasArea[] = [];
    let basePa = -1;
    for (let at = iova; at < iova + length; ) {
      const a = ioas.areas.find((x) => at >= x.iova && at < x.iova + x.length);
      if (!a) throw new KernelError('ENOENT', `hardware queue: IOVA 0x${at.toString(16)} is not mapped in IOAS ${ioas.id}`);
      const pa = a.pa + (at - a.iova);
      if (basePa < 0) basePa = pa;
      else if (pa !== basePa + (at - iova)) throw new KernelError('EFAULT', `hardware queue at IOVA 0x${iova.toString(16)}: host pages are not contiguous at 0x${at.toString(16)}`);
      areas.push(a);
      at = a.iova + a.length;
    }
    const obj = this.add((id) => new IommufdHwQueue(id, viommu, type, index, iova, length, areas));
    obj.basePa = basePa;
    try {
      viommu.ops.hwQueueInitPhys(obj, basePa);
    } catch (e) {
      if (obj.dependsOn) obj.dependsOn.users--;
      this.objects.delete(obj.id);
      throw e;
    }
    for (const a of areas) a.pins++;
    viommu.hwQueues.add(obj);
    viommu.users++;
    return obj.id;
  }

  /**
   * The kernel's IOMMU_VDEVICE_ALLOC — `virtId` (the guest's ID for the device) on a vIOMMU. EINVAL for
   * a device of another IOMMU or a virtual ID out of range; EEXIST for a virtual ID or device taken.
   */
  vdeviceAlloc(viommuId: number, devId: number, virtId: number): number {
    const viommu = this.viommu(viommuId);
    const idev = this.device(devId);
    if (!Number.isSafeInteger(virtId) || virtId < 0 || virtId > 0xffff_ffff) throw new KernelError('EINVAL', `virtual ID ${virtId} is out of range`);
    if (iommuOf(idev.dev) !== iommuOf(viommu.dev)) {
      throw new KernelError('EINVAL', `${idev.dev.name} is not behind the IOMMU of vIOMMU ${viommuId}`);
    }
    if (viommu.vdevs.has(virtId)) throw new KernelError('EEXIST', `vIOMMU ${viommuId}: virtual ID 0x${virtId.toString(16)} is taken`);
    for (const v of viommu.vdevs.values()) if (v.idev === idev) throw new KernelError('EEXIST', `${idev.dev.name} already has a vDEVICE on vIOMMU ${viommuId}`);
    const obj = this.add((id) => new IommufdVdevice(id, viommu, idev, virtId));
    try {
      viommu.ops?.vdeviceInit?.(obj);
    } catch (e) {
      this.objects.delete(obj.id);
      throw e;
    }
    viommu.vdevs.set(virtId, obj);
    viommu.users++;
    idev.users++;
    return obj.id;
  }

  /**
   * The kernel's IOMMU_HWPT_INVALIDATE. `id` is a vIOMMU (the driver's cache_invalidate); a HWPT ID is
   * EOPNOTSUPP here (no driver of this kernel invalidates per nested domain, as arm-smmu-v3 does
   * not). Returns the entries handled; on failure throws the driver's errno with `handled` on it.
   */
  async invalidate(id: number, dataType: number, entries: readonly Uint32Array[]): Promise<number> {
    const obj = this.objects.get(id);
    if (obj instanceof IommufdHwptNested || obj instanceof IommufdHwptPaging) {
      throw new KernelError('EOPNOTSUPP', `HWPT ${id}: its driver takes invalidations through the vIOMMU only`);
    }
    const viommu = this.viommu(id);
    if (!viommu.ops) throw new KernelError('EOPNOTSUPP', `vIOMMU ${id} cannot invalidate`);
    const array: IommuUserDataArray = { type: dataType, entries, entryNum: entries.length };
    try {
      await viommu.ops.cacheInvalidate(viommu, array);
    } catch (e) {
      if (e instanceof KernelError) Object.assign(e, { handled: array.entryNum });
      throw e;
    }
    return array.entryNum;
  }

  /** The kernel's IOMMU_VEVENTQ_ALLOC — EEXIST for a second queue of one type; EINVAL for a bad depth. */
  veventqAlloc(viommuId: number, type: number, depth: number): number {
    const viommu = this.viommu(viommuId);
    if (!Number.isInteger(depth) || depth < 1 || depth > 1 << 19) throw new KernelError('EINVAL', `vEVENTQ depth ${depth} is out of range`);
    for (const q of viommu.veventqs.values()) if (q.veventqType === type) throw new KernelError('EEXIST', `vIOMMU ${viommuId} already has a vEVENTQ of type ${type}`);
    const q = this.add((id) => new IommufdVeventq(id, viommu, type, depth));
    viommu.veventqs.set(q.id, q);
    viommu.users++;
    return q.id;
  }

  /** The kernel's IOMMU_FAULT_QUEUE_ALLOC */
  faultQueueAlloc(): number {
    return this.add((id) => new IommufdFault(id, this)).id;
  }

  // ---- destroy ----

  /** The kernel's IOMMU_DESTROY — EBUSY while anything depends on the object. */
  async destroy(id: number): Promise<void> {
    const obj = this.objects.get(id);
    if (!obj) throw new KernelError('ENOENT', `iommufd: no object with ID ${id}`);
    if (obj instanceof IommufdDevice) return this.unbindDevice(id);
    if (obj.users > 0) throw new KernelError('EBUSY', `iommufd: ${obj.type} ${id} is still used by ${obj.users} object(s)`);
    if (obj instanceof IommufdHwptPaging) {
      obj.ioas.hwpts.delete(obj);
      obj.ioas.users--;
      if (obj.fault) obj.fault.users--;
      await iommuDomainFree(obj.domain);
    } else if (obj instanceof IommufdHwptNested) {
      obj.viommu.users--;
      if (obj.fault) obj.fault.users--;
      await iommuDomainFree(obj.domain);
    } else if (obj instanceof IommufdViommu) {
      await obj.ops?.destroy?.(obj);
      obj.parent.users--;
      this.idevOf(obj.dev)!.users--;
    } else if (obj instanceof IommufdVdevice) {
      obj.viommu.ops?.vdeviceDestroy?.(obj);
      obj.viommu.vdevs.delete(obj.virtId);
      obj.viommu.users--;
      obj.idev.users--;
    } else if (obj instanceof IommufdVeventq) {
      obj.viommu.veventqs.delete(obj.id);
      obj.viommu.users--;
    } else if (obj instanceof IommufdHwQueue) {
      await obj.viommu.ops?.hwQueueDestroy?.(obj);
      for (const a of obj.pinned) a.pins--;
      if (obj.dependsOn) obj.dependsOn.users--;
      obj.viommu.hwQueues.delete(obj);
      obj.viommu.users--;
    } else if (obj instanceof IommufdFault) {
      obj.drain(IOMMU_PAGE_RESP_FAILURE);
    }
    this.objects.delete(id);
  }

  /** Destroy every object but the bound devices (left on their blocking domain, still owned). */
  async closeExceptDevices(): Promise<void> {
    for (const o of this.objects.values()) if (o instanceof IommufdFault) o.drain(IOMMU_PAGE_RESP_FAILURE);
    for (const o of this.objects.values()) if (o instanceof IommufdDevice && o.hwpt) await this.detach(o.id);
    // HW queues newest first: each depends on the one allocated before it.
    for (const o of [...this.objects.values()].reverse()) if (o.type === 'hw-queue') await this.destroy(o.id);
    for (const t of ['vdevice', 'veventq', 'hwpt-nested', 'viommu', 'hwpt-paging', 'fault', 'ioas'] as ObjType[]) {
      for (const o of [...this.objects.values()]) if (o.type === t) await this.destroy(o.id);
    }
  }

  /**
   * Close the fd: destroy everything in dependency order (vDEVICEs, queues, nested HWPTs, vIOMMUs,
   * attachments, paging HWPTs, IOASes, devices). Page requests still pending are answered FAILURE.
   */
  async close(): Promise<void> {
    await this.closeExceptDevices();
    for (const o of [...this.objects.values()]) if (o instanceof IommufdDevice) await this.destroy(o.id);
    this.closed = true;
  }
}

function iommuOf(dev: Device): unknown {
  return devIommu(dev)?.iommuDev ?? null;
}

export { IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_PAGE_RESP_SUCCESS };
