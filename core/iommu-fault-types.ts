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

// kernel: IOMMU_FAULT_PAGE_REQUEST_* (struct iommu_fault_page_request.flags)
export const IOMMU_FAULT_PAGE_REQUEST_PASID_VALID = 1 << 0;
export const IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE = 1 << 1;
export const IOMMU_FAULT_PAGE_REQUEST_NEEDS_PASID = 1 << 2;

// kernel: IOMMU_FAULT_PERM_* (struct iommu_fault_page_request.perm)
export const IOMMU_FAULT_PERM_READ = 1 << 0;
export const IOMMU_FAULT_PERM_WRITE = 1 << 1;
export const IOMMU_FAULT_PERM_EXEC = 1 << 2;
export const IOMMU_FAULT_PERM_PRIV = 1 << 3;

/** kernel: struct iommu_fault_page_request */
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

/** kernel: struct iommu_fault — only page requests are reported through this path since about 6.7. */
export interface IommuFault {
  type: 'page-req';
  prm: IommuFaultPageRequest;
}

/** kernel: struct iopf_fault — one fault as queued for the IOPF handler. */
export interface IopfFault {
  fault: IommuFault;
}

// kernel: enum iommu_page_response_code
export const IOMMU_PAGE_RESP_SUCCESS = 0;
export const IOMMU_PAGE_RESP_INVALID = 1;
export const IOMMU_PAGE_RESP_FAILURE = 2;
export type IommuPageResponseCode = typeof IOMMU_PAGE_RESP_SUCCESS | typeof IOMMU_PAGE_RESP_INVALID | typeof IOMMU_PAGE_RESP_FAILURE;

/** kernel: struct iommu_page_response */
export interface IommuPageResponse {
  pasid: number;
  grpid: number;
  code: IommuPageResponseCode;
}

/**
 * kernel: struct iommu_fault_param — the per-device fault state. Defined by io-pgfault; the core only
 * holds the slot (`DevIommu.faultParam`) and never looks inside.
 */
export interface IommuFaultParam {
  readonly dev: Device;
}

/**
 * kernel: struct iopf_group — a page-request group handed to a domain's `iopfHandler`. Defined by
 * io-pgfault; the core and the domain only pass it along.
 */
export interface IopfGroup {
  readonly lastFault: IopfFault;
}
