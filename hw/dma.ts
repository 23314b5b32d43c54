/**
 * DMA transactions and the ports they travel through.
 *
 * A master hands a DmaRequest to its upstream DmaPort: an IOMMU model's port, or the interconnect
 * (physical memory) when nothing translates. The port answers through `done`, synchronously when it
 * can (a TLB hit, a direct RAM access) or later (a stalled transaction, a page request). Nothing is
 * thrown across a port: every outcome is a DmaCompletion status.
 *
 * PCIe endpoints also speak ATS (translation requests answered into the endpoint's ATC) and PRI
 * (page requests answered by a page response); ports that implement those say so with the optional
 * methods, and an IOMMU model sends ATC invalidations and page responses back down through the
 * AtsEndpoint the machine binds to it.
 */

export interface DmaRequest {
  /** Name of the issuing master (its DT path), or the IOMMU/device that issues on its own behalf. */
  master: string;
  streamId: number;
  /** Substream (PASID) ID, meaningful when ssidValid. */
  ssid: number;
  ssidValid: boolean;
  /** Input address: an IOVA upstream of an IOMMU, a PA at the interconnect. */
  addr: number;
  len: number;
  write: boolean;
  /** Instruction fetch (only meaningful for reads). */
  exec: boolean;
  /** Privileged access. */
  priv: boolean;
  /** PCIe AT = translated: the address came from the endpoint's ATC and is already a PA. */
  translated?: boolean;
  /** Bytes to write (length `len`); absent for reads. */
  data?: Uint8Array;
}

/**
 * A DmaRequest made with `new` (same fields). Requests made per transaction on the fault paths are
 * made this way rather than as object literals: V8 may decide, after a burst in which every object
 * of a literal survived a young collection, to allocate that literal straight into the old
 * generation (allocation-site pretenuring), where the requests, dead, keep everything they reference
 * alive until the next full collection.
 */
export class DmaRequestRecord implements DmaRequest {
  constructor(
    public master: string,
    public streamId: number,
    public ssid: number,
    public ssidValid: boolean,
    public addr: number,
    public len: number,
    public write: boolean,
    public exec: boolean,
    public priv: boolean,
    public translated: boolean | undefined,
    public data: Uint8Array | undefined,
  ) {}
}

/** An AtsRequest made with `new` (see DmaRequestRecord for why). */
export class AtsRequestRecord implements AtsRequest {
  constructor(
    public master: string,
    public streamId: number,
    public ssid: number,
    public ssidValid: boolean,
    public addr: number,
    public write: boolean,
    public exec: boolean,
    public priv: boolean,
  ) {}
}

/**
 * - ok: done; `data` holds the bytes read, `pa` where the access landed.
 * - bus-error: reached no memory or device (or the device refused it).
 * - abort: an IOMMU refused it without a translation fault (abort config, GBPA.ABORT, USF, …).
 * - fault: translation or permission fault; nothing was accessed.
 * - terminated: a stalled transaction that software terminated.
 * - not-issued: the master could not issue it (bus mastering or PASID disabled in its config space).
 */
export type DmaStatus = 'ok' | 'bus-error' | 'abort' | 'fault' | 'terminated' | 'not-issued';

export interface DmaCompletion {
  status: DmaStatus;
  data?: Uint8Array;
  pa?: number;
  /** Why it failed, for reports. */
  detail?: string;
}

export type DmaDone = (c: DmaCompletion) => void;

/** ATS translation request from a PCIe endpoint (an untranslated address, with the access wanted). */
export interface AtsRequest {
  master: string;
  streamId: number;
  ssid: number;
  ssidValid: boolean;
  /** Page-aligned untranslated address. */
  addr: number;
  /** The endpoint asks for write permission too (a translation request with No-Write clear). */
  write: boolean;
  exec: boolean;
  priv: boolean;
}

/**
 * Translation completion. `ok` with read/write both false is the PCIe "no access" answer (the
 * endpoint may then ask for the page through PRI); `unsupported` is UR, `abort` is CA.
 */
export interface AtsCompletion {
  status: 'ok' | 'unsupported' | 'abort';
  /** Translated address of the start of the translated range. */
  pa?: number;
  /** Size of the translated range in bytes (a power of two, the range aligned to it). */
  size?: number;
  read?: boolean;
  write?: boolean;
  exec?: boolean;
  priv?: boolean;
  detail?: string;
}

/** PRI page request message. */
export interface PageRequest {
  master: string;
  streamId: number;
  ssid: number;
  ssidValid: boolean;
  /** Page-aligned address. */
  addr: number;
  read: boolean;
  write: boolean;
  exec: boolean;
  priv: boolean;
  /** Page Request Group index (9 bits). */
  prgIndex: number;
  /** Last request of its group: the host answers the group when it sees it. */
  last: boolean;
}

/** PRG response codes (PCIe): Success, Invalid Request, Response Failure. */
export type PageResponseCode = 'success' | 'invalid' | 'failure';

export interface PageResponse {
  prgIndex: number;
  ssid: number;
  ssidValid: boolean;
  code: PageResponseCode;
}

/** ATC invalidation request sent to an endpoint. */
export interface AtcInvalidation {
  /** PASID the invalidation applies to; null for entries without a PASID. */
  ssid: number | null;
  /** Applies to every PASID (the Global Invalidate bit). */
  global: boolean;
  addr: number;
  /** Bytes covered (a power of two); Infinity for everything. */
  size: number;
}

/** What an IOMMU can send back down to an ATS/PRI-capable endpoint. */
export interface AtsEndpoint {
  readonly name: string;
  /** Invalidate matching ATC entries; `done` runs when the endpoint's completion message arrives. */
  invalidateAtc(inv: AtcInvalidation, done: () => void): void;
  /** Deliver a PRG response. */
  pageResponse(resp: PageResponse): void;
}

/** The upstream port of a master: an IOMMU model implements it, and so does the interconnect. */
export interface DmaPort {
  submit(req: DmaRequest, done: DmaDone): void;
  /** ATS translation request; ports without it answer every ATS request as unsupported. */
  translate?(req: AtsRequest, done: (c: AtsCompletion) => void): void;
  /** PRI page request; ports without it drop page requests (the endpoint sees no response). */
  pageRequest?(req: PageRequest): void;
  /** Tell the port which endpoint issues a stream, so invalidations and page responses can reach it. */
  bindEndpoint?(streamId: number, endpoint: AtsEndpoint): void;
  /**
   * A posted 32-bit write to aligned RAM (an MSI), answered with a shared completion; null when the
   * address is not aligned RAM (submit the write then). Ports without it take every write by `submit`.
   */
  postRam32?(master: string, addr: number, value: number): DmaCompletion | null;
}

/** An observer of every write that lands in RAM (stray-DMA detection builds on it). */
export type RamWriteObserver = (master: string, pa: number, len: number, time: number) => void;
