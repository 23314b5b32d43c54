/**
 * The in-kernel fault structures the IOMMU ops refer to (kernel: struct iommu_fault, iopf_fault,
 * iommu_page_response in include/linux/iommu.h, as of 6.17). Drivers build these from hardware
 * records (an SMMUv3 PRI request or stall event, an SMMUv2 stalled context fault) and receive the
 * response through `IommuOps.pageResponse`.
 *
 * Only the data lives here. Reporting, the IOPF queue and the user-facing versioned records belong to
 * the fault/IOPF module (io-pgfault), which owns `IommuFaultParam` and fills the per-device slot the
 * core keeps for it (`DevIommu.faultParam`).
 */
import type { Device } from '../bus/device.js';
import type { IommuDomain } from './iommu-domain.js';
import type { IommuAttachHandle } from './iommu-group.js';

// (kernel: IOMMU_FAULT_PAGE_REQUEST_* (struct iommu_fault_page_request.flags))
export const IOMMU_FAULT_PAGE_REQUEST_PASID_VALID = 1 << 0;
export const IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE = 1 << 1;
export const IOMMU_FAULT_PAGE_REQUEST_NEEDS_PASID = 1 << 2;
/**
 * The hardware attached private data to the request and wants it back in the response (VT-d page
 * requests do; PCIe PRI and Arm SMMU stalls do not). 6.17 dropped the flag and kept the field; the
 * response matching of the page-response thread needs to know, so it is kept here.
 */
export const IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA = 1 << 3;

// (kernel: IOMMU_FAULT_PERM_* (struct iommu_fault_page_request.perm))
export const IOMMU_FAULT_PERM_READ = 1 << 0;
export const IOMMU_FAULT_PERM_WRITE = 1 << 1;
export const IOMMU_FAULT_PERM_EXEC = 1 << 2;
export const IOMMU_FAULT_PERM_PRIV = 1 << 3;

/** The kernel's struct iommu_fault_page_request */
export interface IommuFaultPageRequest {
  flags: number;
  pasid: number;
  /** Page Request Group index (PRI) or stall tag (STAG). */
  grpid: number;
  perm: number;
  addr: number;
  /** Device-specific data the response must carry back (e.g. a VT-d private data pair). */
  privateData: [number, number];
}

/** The kernel's struct iommu_fault with type IOMMU_FAULT_PAGE_REQ — a recoverable fault. */
export interface IommuFault {
  type: 'page-req';
  prm: IommuFaultPageRequest;
}

// (kernel: enum iommu_fault_reason (the 5.x UAPI, for unrecoverable faults))
export const IOMMU_FAULT_REASON_UNKNOWN = 0;
export const IOMMU_FAULT_REASON_PASID_FETCH = 1;
export const IOMMU_FAULT_REASON_BAD_PASID_ENTRY = 2;
export const IOMMU_FAULT_REASON_PASID_INVALID = 3;
export const IOMMU_FAULT_REASON_WALK_EABT = 4;
export const IOMMU_FAULT_REASON_PTE_FETCH = 5;
export const IOMMU_FAULT_REASON_PERMISSION = 6;
export const IOMMU_FAULT_REASON_ACCESS = 7;
export const IOMMU_FAULT_REASON_OOR_ADDRESS = 8;

// (kernel: IOMMU_FAULT_UNRECOV_* (struct iommu_fault_unrecoverable.flags))
export const IOMMU_FAULT_UNRECOV_PASID_VALID = 1 << 0;
export const IOMMU_FAULT_UNRECOV_ADDR_VALID = 1 << 1;
export const IOMMU_FAULT_UNRECOV_FETCH_ADDR_VALID = 1 << 2;

/** The kernel's struct iommu_fault_unrecoverable — a fault nothing can retry (the transaction was terminated). */
export interface IommuFaultUnrecoverable {
  /** IOMMU_FAULT_REASON_* */
  reason: number;
  flags: number;
  pasid: number;
  /** IOMMU_FAULT_PERM_* of the access. */
  perm: number;
  addr: number;
  /** The table entry address whose fetch failed, with FETCH_ADDR_VALID. */
  fetchAddr: number;
}

/** The kernel's struct iommu_fault with type IOMMU_FAULT_DMA_UNRECOV (the 5.x API, reported to device handlers). */
export interface IommuUnrecoverableFault {
  type: 'dma-unrecov';
  event: IommuFaultUnrecoverable;
}

/** Either kind of fault a driver reports through `iommuReportDeviceFault`. */
export type IommuFaultRecord = IommuFault | IommuUnrecoverableFault;

/** The kernel's struct iopf_fault — one page request as queued for the IOPF handler. */
export interface IopfFault {
  fault: IommuFault;
}

// A page request as a driver reports it, made with `new` at each level rather than as nested object
// literals: drivers make one per fault, and V8 may allocate a literal straight into the old
// generation after a burst whose objects all survived a young collection, where, dead, they keep
// what they reference alive until the next full collection.
class PageRequestParams implements IommuFaultPageRequest {
  privateData: [number, number] = [0, 0];
  constructor(
    public flags: number,
    public pasid: number,
    public grpid: number,
    public perm: number,
    public addr: number,
  ) {}
}

class PageRequestFault implements IommuFault {
  readonly type = 'page-req';
  constructor(public prm: IommuFaultPageRequest) {}
}

class PageRequestEvent implements IopfFault {
  constructor(public fault: IommuFault) {}
}

/** A page request (IOMMU_FAULT_PAGE_REQ) to report, with no private data. */
export function iopfPageRequest(flags: number, pasid: number, grpid: number, perm: number, addr: number): IopfFault {
  return new PageRequestEvent(new PageRequestFault(new PageRequestParams(flags, pasid, grpid, perm, addr)));
}

/** What a driver reports: a page request (an IopfFault) or an unrecoverable fault. */
export interface IommuFaultEvent {
  fault: IommuFaultRecord;
}

// (kernel: enum iommu_page_response_code)
export const IOMMU_PAGE_RESP_SUCCESS = 0;
export const IOMMU_PAGE_RESP_INVALID = 1;
export const IOMMU_PAGE_RESP_FAILURE = 2;
export type IommuPageResponseCode = typeof IOMMU_PAGE_RESP_SUCCESS | typeof IOMMU_PAGE_RESP_INVALID | typeof IOMMU_PAGE_RESP_FAILURE;

/** The kernel's struct iommu_page_response */
export interface IommuPageResponse {
  pasid: number;
  grpid: number;
  code: IommuPageResponseCode;
}

/**
 * The kernel's struct iommu_fault_param — the per-device fault state. Defined by io-pgfault; the core only
 * holds the slot (`DevIommu.faultParam`) and never looks inside.
 */
export interface IommuFaultParam {
  readonly dev: Device;
}

/**
 * The kernel's struct iopf_group — a page-request group handed to a domain's `iopfHandler` (or, as a
 * group of one, to a device fault handler). Implemented by io-pgfault; a handler reads the faults and
 * answers once with `iopfGroupResponse(group, code)`.
 */
export interface IopfGroup {
  readonly dev: Device;
  /** The request with LAST_PAGE that completed the group (a stall is its own last request). */
  readonly lastFault: IopfFault;
  /** Every request of the group, partials first, the last one at the end. */
  readonly faults: readonly IopfFault[];
  /** The domain whose handler runs it; null for a group given to a device fault handler. */
  readonly domain: IommuDomain | null;
  /** The attach handle the fault was looked up through, if any. */
  readonly attachHandle: IommuAttachHandle | null;
}
