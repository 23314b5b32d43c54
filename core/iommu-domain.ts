/**
 * IOMMU domains (kernel: struct iommu_domain in include/linux/iommu.h, and the domain parts of
 * iommu.c): an address space a group of devices can be attached to.
 *
 * A driver allocates the object (usually a subclass holding its page table and hardware context),
 * sets `pgsizeBitmap` and `geometry`, and returns it from one of its `domainAlloc*` ops; the core then
 * stamps the type and owner (`iommuDomainInit`) and attaches cookies (DMA IOVA, fault handler, SVA).
 * Static domains (a driver's identity or blocked domain shared by every device) are built once with
 * their type and have no owner.
 */
import type { Device } from '../bus/device.js';
import { KernelError, type Errno } from '../bus/errno.js';
import type { Mm } from '../mm/mm.js';
import type { IommuDmaCookie } from './dma-iommu.js';
import { iopfAnswerDomainFaults } from './io-pgfault.js';
import { devIommu, devIommuOps, hasIommu } from './iommu-device.js';
import type { IopfGroup } from './iommu-fault-types.js';
import type { DomainOps, IommuOps } from './iommu-ops.js';

// Domain type bits (kernel: __IOMMU_DOMAIN_*).
/** The domain translates through page tables (map/unmap work). */
export const __IOMMU_DOMAIN_PAGING = 1 << 0;
/** The DMA API owns the address space (IOVA allocator, cookie). */
export const __IOMMU_DOMAIN_DMA_API = 1 << 1;
/** IOVA = physical address. */
export const __IOMMU_DOMAIN_PT = 1 << 2;
/** Invalidation is batched through a flush queue. */
export const __IOMMU_DOMAIN_DMA_FQ = 1 << 3;
export const __IOMMU_DOMAIN_SVA = 1 << 4;
export const __IOMMU_DOMAIN_PLATFORM = 1 << 5;
export const __IOMMU_DOMAIN_NESTED = 1 << 6;

// Domain types (kernel: IOMMU_DOMAIN_*).
export const IOMMU_DOMAIN_BLOCKED = 0;
export const IOMMU_DOMAIN_IDENTITY = __IOMMU_DOMAIN_PT;
export const IOMMU_DOMAIN_UNMANAGED = __IOMMU_DOMAIN_PAGING;
export const IOMMU_DOMAIN_DMA = __IOMMU_DOMAIN_PAGING | __IOMMU_DOMAIN_DMA_API;
export const IOMMU_DOMAIN_DMA_FQ = __IOMMU_DOMAIN_PAGING | __IOMMU_DOMAIN_DMA_API | __IOMMU_DOMAIN_DMA_FQ;
export const IOMMU_DOMAIN_SVA = __IOMMU_DOMAIN_SVA;
export const IOMMU_DOMAIN_PLATFORM = __IOMMU_DOMAIN_PLATFORM;
export const IOMMU_DOMAIN_NESTED = __IOMMU_DOMAIN_NESTED;

// report_iommu_fault() flags (kernel: IOMMU_FAULT_READ / IOMMU_FAULT_WRITE).
export const IOMMU_FAULT_READ = 0x0;
export const IOMMU_FAULT_WRITE = 0x1;

/** kernel: struct iommu_domain_geometry — the IOVA range the domain can translate. */
export interface IommuDomainGeometry {
  apertureStart: number;
  /** Last translatable IOVA (inclusive). */
  apertureEnd: number;
  /** DMA outside the aperture is impossible, so the DMA API must stay inside it. */
  forceAperture: boolean;
}

/**
 * A domain fault handler (kernel: iommu_fault_handler_t): 0 when it handled the fault, an errno
 * otherwise ('ENOSYS' asks the driver for its default behaviour: the readable report). For a stalled
 * transaction only 'EAGAIN' means "retry it" (after the handler fixed the mapping); 0, like any other
 * errno, terminates it, so a handler that only records faults is called once per fault and its master
 * sees an error. It may be async: drivers call it off the interrupt path, from a workqueue.
 */
export type IommuFaultHandler = (domain: IommuDomain, dev: Device | null, iova: number, flags: number, token: unknown) => 0 | Errno | Promise<0 | Errno>;

/** Handles a page-request group for this domain (kernel: iommu_domain.iopf_handler); throws to refuse it. */
export type IommuIopfHandler = (group: IopfGroup) => void | Promise<void>;

/** kernel: the cookie union of struct iommu_domain, tagged by cookie_type. */
export type IommuDomainCookie =
  | { readonly type: 'none' }
  | { readonly type: 'dma-iova'; readonly dma: IommuDmaCookie }
  | { readonly type: 'fault-handler'; readonly handler: IommuFaultHandler; readonly token: unknown }
  | { readonly type: 'sva'; readonly mm: Mm; users: number };

const NO_COOKIE: IommuDomainCookie = Object.freeze({ type: 'none' });

export interface IommuDomainInit {
  /** The domain's ops; may be left out when the IOMMU ops give `defaultDomainOps`. */
  ops?: DomainOps;
  /** Only for static domains (BLOCKED, IDENTITY); the core sets the type of allocated ones. */
  type?: number;
  pgsizeBitmap?: number;
  geometry?: Partial<IommuDomainGeometry>;
}

export class IommuDomain {
  /** IOMMU_DOMAIN_* */
  type: number;
  /** The IOMMU ops that allocated it; null for a static domain (kernel: iommu_domain.owner). */
  owner: IommuOps | null = null;
  geometry: IommuDomainGeometry;
  cookie: IommuDomainCookie = NO_COOKIE;
  /** Non-null: the domain can take I/O page faults (kernel: iommu_domain.iopf_handler). */
  iopfHandler: IommuIopfHandler | null = null;

  private domainOps: DomainOps | null;
  private bitmap = 0;
  private sizes: number[] = [];
  private freed = false;
  /** Where the domain is attached: device → PASIDs (IOMMU_NO_PASID, 0, is the RID). */
  private readonly users = new Map<Device, Set<number>>();

  constructor(init: IommuDomainInit = {}) {
    this.domainOps = init.ops ?? null;
    this.type = init.type ?? IOMMU_DOMAIN_BLOCKED;
    this.pgsizeBitmap = init.pgsizeBitmap ?? 0;
    this.geometry = { apertureStart: 0, apertureEnd: 0, forceAperture: false, ...init.geometry };
  }

  get ops(): DomainOps {
    if (!this.domainOps) throw new KernelError('EINVAL', `${iommuDomainTypeStr(this.type)} domain has no domain ops`);
    return this.domainOps;
  }

  set ops(ops: DomainOps) {
    this.domainOps = ops;
  }

  get hasOps(): boolean {
    return this.domainOps !== null;
  }

  /** Page and block sizes the domain maps with (kernel: iommu_domain.pgsize_bitmap); up to 2^52. */
  get pgsizeBitmap(): number {
    return this.bitmap;
  }

  set pgsizeBitmap(bitmap: number) {
    if (!Number.isSafeInteger(bitmap) || bitmap < 0) throw new KernelError('EINVAL', `pgsize_bitmap ${bitmap} is not a bitmap of page sizes`);
    this.bitmap = bitmap;
    this.sizes = [];
    for (let size = 1; size <= bitmap; size *= 2) {
      if (Math.floor(bitmap / size) % 2 === 1) this.sizes.push(size);
    }
  }

  /** The supported page sizes, smallest first. */
  get pgsizes(): readonly number[] {
    return this.sizes;
  }

  /** Smallest supported page size; 0 when none is set. */
  get minPageSize(): number {
    return this.sizes[0] ?? 0;
  }

  get isFreed(): boolean {
    return this.freed;
  }

  /** A short description for logs and test output (the domain reaches all of machine RAM otherwise). */
  toJSON(): Record<string, unknown> {
    return { type: iommuDomainTypeStr(this.type), owner: this.owner?.name ?? null, cookie: this.cookie.type, pgsizeBitmap: this.bitmap };
  }

  /** Devices (and their PASIDs; 0 is the RID) the domain is attached to now. */
  get attachments(): ReadonlyMap<Device, ReadonlySet<number>> {
    return this.users;
  }

  /** @internal the attach paths: `dev` (at `pasid`, 0 for the RID) now translates through this domain. */
  _noteAttach(dev: Device, pasid: number): void {
    let set = this.users.get(dev);
    if (!set) this.users.set(dev, (set = new Set()));
    set.add(pasid);
  }

  /** @internal the detach paths. */
  _noteDetach(dev: Device, pasid: number): void {
    const set = this.users.get(dev);
    if (!set) return;
    set.delete(pasid);
    if (set.size === 0) this.users.delete(dev);
  }

  /** @internal iommuDomainFree only. */
  _markFreed(): void {
    if (this.freed) throw new KernelError('EINVAL', `${iommuDomainTypeStr(this.type)} domain freed twice`);
    this.freed = true;
  }
}

/** kernel: iommu_domain_type_str() */
export function iommuDomainTypeStr(type: number): string {
  switch (type) {
    case IOMMU_DOMAIN_BLOCKED:
      return 'Blocked';
    case IOMMU_DOMAIN_IDENTITY:
      return 'Passthrough';
    case IOMMU_DOMAIN_UNMANAGED:
      return 'Unmanaged';
    case IOMMU_DOMAIN_DMA:
    case IOMMU_DOMAIN_DMA_FQ:
      return 'Translated';
    case IOMMU_DOMAIN_SVA:
      return 'SVA';
    case IOMMU_DOMAIN_PLATFORM:
      return 'Platform';
    case IOMMU_DOMAIN_NESTED:
      return 'Nested';
    default:
      return 'Unknown';
  }
}

/** The sysfs `type` name of a default domain (kernel: iommu_group_show_type()). */
export function iommuDomainSysfsType(type: number): string {
  switch (type) {
    case IOMMU_DOMAIN_BLOCKED:
      return 'blocked';
    case IOMMU_DOMAIN_IDENTITY:
      return 'identity';
    case IOMMU_DOMAIN_UNMANAGED:
      return 'unmanaged';
    case IOMMU_DOMAIN_DMA:
      return 'DMA';
    case IOMMU_DOMAIN_DMA_FQ:
      return 'DMA-FQ';
    default:
      return 'unknown';
  }
}

/** kernel: iommu_is_dma_domain() */
export function iommuIsDmaDomain(domain: IommuDomain): boolean {
  return (domain.type & __IOMMU_DOMAIN_DMA_API) !== 0;
}

/** Stamp a freshly allocated domain with its type and owner. // kernel: iommu_domain_init() */
export function iommuDomainInit(domain: IommuDomain, type: number, ops: IommuOps): void {
  domain.type = type;
  domain.owner = ops;
  if (!domain.hasOps) {
    if (!ops.defaultDomainOps) throw new KernelError('EINVAL', `${ops.name}: allocated a domain without ops and has no defaultDomainOps`);
    domain.ops = ops.defaultDomainOps;
  }
  if (domain.pgsizeBitmap === 0 && (type & __IOMMU_DOMAIN_PAGING) !== 0) domain.pgsizeBitmap = ops.pgsizeBitmap;
}

/** Release the cookie, then the driver's part. // kernel: iommu_domain_free() */
export async function iommuDomainFree(domain: IommuDomain): Promise<void> {
  domain._markFreed();
  // Freeing a domain that is still attached is a caller bug (the kernel WARNs about it): say so, and
  // make sure nothing of it is called again: its handlers are dropped and the faults still waiting
  // on it are answered (a stalled master would otherwise wait on a freed domain forever).
  const users = [...domain.attachments];
  if (users.length > 0) {
    const where = users.map(([dev, pasids]) => `${dev.name}${[...pasids].some((p) => p !== 0) ? ` (PASID ${[...pasids].join(', ')})` : ''}`).join(', ');
    const log = devIommu(users[0]![0])?.subsystem.log;
    log?.warn(users[0]![0].name, `WARNING: ${iommuDomainTypeStr(domain.type)} domain freed while still attached to ${where}`);
  }
  domain.iopfHandler = null;
  iopfAnswerDomainFaults(domain, null, null);
  const cookie = domain.cookie;
  domain.cookie = NO_COOKIE;
  if (cookie.type === 'dma-iova') cookie.dma.put();
  else if (cookie.type === 'sva') cookie.mm.mmdrop();
  if (domain.hasOps) await domain.ops.free?.(domain);
}

/**
 * Install the handler `reportIommuFault` calls. EBUSY if the domain already has a cookie (the kernel
 * WARNs and ignores the call: a DMA or SVA domain's faults are not the caller's to handle).
 * // kernel: iommu_set_fault_handler()
 */
export function iommuSetFaultHandler(domain: IommuDomain, handler: IommuFaultHandler, token: unknown = null): void {
  if (domain.cookie.type !== 'none') {
    throw new KernelError('EBUSY', `iommu_set_fault_handler: the ${iommuDomainTypeStr(domain.type)} domain already has a ${domain.cookie.type} cookie`);
  }
  domain.cookie = { type: 'fault-handler', handler, token };
}

/**
 * A driver reports a fault in `domain` (flags: IOMMU_FAULT_READ/WRITE). Returns the handler's verdict,
 * or 'ENOSYS' when nobody installed one. // kernel: report_iommu_fault()
 */
export async function reportIommuFault(domain: IommuDomain, dev: Device | null, iova: number, flags: number): Promise<0 | Errno> {
  const cookie = domain.cookie;
  if (cookie.type !== 'fault-handler') return 'ENOSYS';
  return cookie.handler(domain, dev, iova, flags, cookie.token);
}

/** Physical address `iova` reaches through `domain`; 0 when unmapped. // kernel: iommu_iova_to_phys() */
export function iommuIovaToPhys(domain: IommuDomain, iova: number): number {
  if (domain.type === IOMMU_DOMAIN_IDENTITY) return iova;
  if (domain.type === IOMMU_DOMAIN_BLOCKED) return 0;
  const op = domain.ops.iovaToPhys;
  if (!op) throw new KernelError('EOPNOTSUPP', `iommu_iova_to_phys: the ${iommuDomainTypeStr(domain.type)} domain has no iova_to_phys op`);
  return op.call(domain.ops, domain, iova);
}

/** Make the domain ignore no-snoop (kernel: iommu_enforce_cache_coherency()); false if it cannot. */
export function iommuEnforceCacheCoherency(domain: IommuDomain): boolean {
  if ((domain.type & __IOMMU_DOMAIN_PAGING) === 0) return false;
  const op = domain.ops.enforceCacheCoherency;
  return op ? op.call(domain.ops, domain) : false;
}

// ---- allocation ---------------------------------------------------------------------------------

/** kernel: IOMMU_HWPT_ALLOC_NEST_PARENT — the paging domain will be a stage-2 parent. */
export const IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0;
/** kernel: IOMMU_HWPT_ALLOC_DIRTY_TRACKING */
export const IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;
/** kernel: IOMMU_HWPT_ALLOC_PASID — the domain may also be attached to PASIDs. */
export const IOMMU_HWPT_ALLOC_PASID = 1 << 3;

/**
 * A paging domain of `type` for `dev`'s IOMMU: ENODEV without one, EOPNOTSUPP when the driver has no
 * op for these flags. // kernel: __iommu_paging_domain_alloc_flags()
 */
export function iommuPagingDomainAllocType(dev: Device, type: number, flags: number): IommuDomain {
  if (!hasIommu(dev)) throw new KernelError('ENODEV', `${dev.name}: no IOMMU to allocate a paging domain from`);
  const ops = devIommuOps(dev);
  let domain: IommuDomain;
  if (ops.domainAllocPaging && flags === 0) domain = ops.domainAllocPaging(dev);
  else if (ops.domainAllocPagingFlags) domain = ops.domainAllocPagingFlags(dev, flags);
  else throw new KernelError('EOPNOTSUPP', `${ops.name}: cannot allocate a paging domain with flags ${flags}`);
  iommuDomainInit(domain, type, ops);
  return domain;
}

/** An UNMANAGED domain for a caller that maps it itself. // kernel: iommu_paging_domain_alloc_flags() */
export function iommuPagingDomainAllocFlags(dev: Device, flags: number): IommuDomain {
  return iommuPagingDomainAllocType(dev, IOMMU_DOMAIN_UNMANAGED, flags);
}

/** kernel: iommu_paging_domain_alloc() */
export function iommuPagingDomainAlloc(dev: Device): IommuDomain {
  return iommuPagingDomainAllocFlags(dev, 0);
}

/** The driver's identity domain, static or allocated. // kernel: __iommu_alloc_identity_domain() */
export function iommuAllocIdentityDomain(dev: Device): IommuDomain {
  const ops = devIommuOps(dev);
  if (ops.identityDomain) return ops.identityDomain;
  if (!ops.domainAllocIdentity) throw new KernelError('EOPNOTSUPP', `${ops.name}: no identity domain`);
  const domain = ops.domainAllocIdentity(dev);
  iommuDomainInit(domain, IOMMU_DOMAIN_IDENTITY, ops);
  return domain;
}

/** True if `domain` may be attached through `ops` (kernel: domain_iommu_ops_compatible()). */
export function domainIommuOpsCompatible(ops: IommuOps, domain: IommuDomain): boolean {
  if (domain.owner === ops) return true;
  // Static domains have no owner.
  return domain === ops.blockedDomain || domain === ops.identityDomain;
}
