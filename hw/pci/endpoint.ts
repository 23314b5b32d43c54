/**
 * A PCI Express endpoint function: a DMA master with a requester ID, a type-0 configuration
 * header and, as configured, the ATS, PRI and PASID extended capabilities (PCI Express Base
 * Specification, chapter 10 and §7.8/§7.9 register layouts).
 *
 * Configuration space (what the kernel reads through ECAM):
 * - 0x00 header: vendor/device ID, Command (Memory Space, Bus Master, Parity, SERR, INTx Disable
 *   writable), Status.CAP_LIST, revision/class code, header type (bit 7: multi-function), no BARs,
 *   subsystem IDs, capabilities pointer 0x40, interrupt line.
 * - 0x40 PCI Express capability v2: Root Complex Integrated Endpoint on the host's first bus,
 *   Endpoint on other buses; Device Capabilities advertises Function Level Reset, and writing
 *   Device Control.BCR_FLR resets the function (config state, ATC, outstanding page requests).
 * - 0x100 onwards, chained in this order when present: ATS (0x000F: Invalidate Queue Depth, Page
 *   Aligned Request, Global Invalidate; Control: STU and Enable), PRI (0x0013: Control Enable and
 *   Reset, Status RF/UPRGI (RW1C), Stopped, PRG Response PASID Required; Outstanding Page Request
 *   Capacity and Allocation), PASID (0x001B: Exec/Privileged supported, Max PASID Width; Control
 *   Enable/Exec/Privileged).
 *
 * Transactions follow what the function has been allowed to do: nothing is issued while
 * Command.Bus Master is clear; an SSID needs PASID Enable (and exec/priv attributes need the PASID
 * Control Exec/Privileged enables, since only the PASID prefix carries them). With ATS Enable set,
 * requests go through the endpoint's ATC: a miss sends an ATS translation request upstream, a
 * translation without the needed permission sends a PRI page request (when PRI is enabled) and
 * retries once the response arrives; the access itself is then issued as a translated (AT)
 * request. The IOMMU sends ATC invalidations and page responses back through `AtsEndpoint`.
 *
 * DT vendor properties read by the machine for a PCI child node: `pasid-num-bits` (u32),
 * `iommu-sim,ats` and `iommu-sim,pri` (booleans: the function has the capability), and the
 * standard `vendor-id`, `device-id`, `class-code`, `revision-id`.
 */
import {
  AtsRequestRecord,
  DmaRequestRecord,
  type AtcInvalidation,
  type AtsCompletion,
  type AtsRequest,
  type AtsEndpoint,
  type DmaCompletion,
  type DmaDone,
  type DmaRequest,
  type PageResponse,
  type PageResponseCode,
} from '../dma.js';
import type { DmaOptions, MasterContext, StreamRoute } from '../masters/dma-master.js';
import { DmaMaster } from '../masters/dma-master.js';
import { ConfigSpace } from './config-space.js';

// Type-0 header (offsets and bits as the PCI specification names them).
export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_COMMAND_MEMORY = 0x0002;
export const PCI_COMMAND_MASTER = 0x0004;
export const PCI_COMMAND_PARITY = 0x0040;
export const PCI_COMMAND_SERR = 0x0100;
export const PCI_COMMAND_INTX_DISABLE = 0x0400;
export const PCI_STATUS = 0x06;
export const PCI_STATUS_CAP_LIST = 0x0010;
export const PCI_CLASS_REVISION = 0x08;
export const PCI_CACHE_LINE_SIZE = 0x0c;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_HEADER_TYPE_MFD = 0x80;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_INTERRUPT_LINE = 0x3c;

// PCI Express capability.
export const PCI_CAP_ID_EXP = 0x10;
export const PCI_EXP_FLAGS = 0x02;
export const PCI_EXP_FLAGS_VERS2 = 0x0002;
export const PCI_EXP_TYPE_ENDPOINT = 0x0;
export const PCI_EXP_TYPE_RC_END = 0x9;
export const PCI_EXP_DEVCAP = 0x04;
export const PCI_EXP_DEVCAP_FLR = 0x1000_0000;
export const PCI_EXP_DEVCTL = 0x08;
export const PCI_EXP_DEVCTL_BCR_FLR = 0x8000;
export const PCI_EXP_DEVSTA = 0x0a;
export const PCI_EXP_LNKCAP = 0x0c;
export const PCI_EXP_LNKCTL = 0x10;
export const PCI_EXP_LNKSTA = 0x12;
export const PCI_EXP_DEVCAP2 = 0x24;
export const PCI_EXP_DEVCTL2 = 0x28;

// Extended capabilities.
export const PCI_CFG_SPACE_SIZE = 0x100;
export const PCI_EXT_CAP_ID_ATS = 0x000f;
export const PCI_EXT_CAP_ID_PRI = 0x0013;
export const PCI_EXT_CAP_ID_PASID = 0x001b;

export const PCI_ATS_CAP = 0x04;
export const PCI_ATS_CAP_PAGE_ALIGNED = 0x0020;
export const PCI_ATS_CAP_GLOBAL_INV = 0x0040;
export const PCI_ATS_CTRL = 0x06;
export const PCI_ATS_CTRL_ENABLE = 0x8000;
export const PCI_ATS_CTRL_STU_MASK = 0x001f;

export const PCI_PRI_CTRL = 0x04;
export const PCI_PRI_CTRL_ENABLE = 0x0001;
export const PCI_PRI_CTRL_RESET = 0x0002;
export const PCI_PRI_STATUS = 0x06;
export const PCI_PRI_STATUS_RF = 0x0001;
export const PCI_PRI_STATUS_UPRGI = 0x0002;
export const PCI_PRI_STATUS_STOPPED = 0x0100;
export const PCI_PRI_STATUS_PASID = 0x8000;
export const PCI_PRI_MAX_REQ = 0x08;
export const PCI_PRI_ALLOC_REQ = 0x0c;

export const PCI_PASID_CAP = 0x04;
export const PCI_PASID_CAP_EXEC = 0x0002;
export const PCI_PASID_CAP_PRIV = 0x0004;
export const PCI_PASID_CAP_WIDTH_SHIFT = 8;
export const PCI_PASID_CTRL = 0x06;
export const PCI_PASID_CTRL_ENABLE = 0x0001;
export const PCI_PASID_CTRL_EXEC = 0x0002;
export const PCI_PASID_CTRL_PRIV = 0x0004;

const EXP_CAP_OFFSET = 0x40;
const PAGE_SIZE = 4096;
/** PRG indexes are 9 bits. */
const PRG_INDEX_COUNT = 512;
/** A translation that keeps racing invalidations is given up after this many tries. */
const MAX_TRANSLATION_RETRIES = 8;
/** A settled promise whose reactions run the endpoint's deferred callbacks. */
const SETTLED: Promise<void> = Promise.resolve();

/** Requester ID of bus/device/function. */
export function requesterId(bus: number, device: number, fn: number): number {
  return ((bus & 0xff) << 8) | ((device & 0x1f) << 3) | (fn & 0x7);
}

export interface PcieEndpointConfig {
  bus: number;
  device: number;
  fn: number;
  vendorId?: number;
  deviceId?: number;
  /** 24-bit class code (base class, subclass, programming interface). */
  classCode?: number;
  revision?: number;
  /** Max PASID width; 0 (default) means no PASID capability. */
  pasidBits?: number;
  /** PASID capability advertises Execute / Privileged Mode support (default: true with PASID). */
  pasidExec?: boolean;
  pasidPriv?: boolean;
  ats?: boolean;
  pri?: boolean;
  /** Outstanding Page Request Capacity (default 32). */
  priCapacity?: number;
  /** ATS Invalidate Queue Depth field (0 encodes 32). */
  atsInvalidateQueueDepth?: number;
  /** Whether the root complex above forwards ATS translation requests (DT `ats-supported`). */
  rootComplexAts?: boolean;
  /** Refuse to issue DMA while Command.Bus Master is clear (default true, as hardware does). */
  enforceBusMaster?: boolean;
  /**
   * Virtual time an ATC invalidation takes to complete (default 200 ns; Infinity: the function
   * never answers). Settable later through `PcieEndpoint.atcInvalidateLatencyNs`.
   */
  atcInvalidateLatencyNs?: number;
  /** ATC capacity in entries (default 64; the oldest entry is evicted). */
  atcEntries?: number;
}

/** What an endpoint needs of the machine beyond a master's needs. */
export interface EndpointContext extends MasterContext {
  schedule(delayNs: number, fn: () => void, label: string): void;
}

/** One cached translation. */
export interface AtcEntry {
  /** PASID, or -1 for a translation without one. */
  ssid: number;
  priv: boolean;
  /** Untranslated base, aligned to size. */
  base: number;
  size: number;
  pa: number;
  read: boolean;
  write: boolean;
  exec: boolean;
}

export interface AtsStats {
  hits: number;
  misses: number;
  translationRequests: number;
  invalidations: number;
  pageRequests: number;
  pageResponses: number;
}

/**
 * A request going out through the ATC, piece by piece, and the ATC miss being resolved for its
 * current piece (translation requests, and a page request, for one page): one object for the whole
 * request, whose callbacks are made once.
 */
interface AtcAccess {
  readonly req: DmaRequest;
  readonly done: DmaDone;
  readonly port: ReturnType<PcieEndpoint['portOf']>;
  /** The data read, for a read. */
  readonly out: Uint8Array | undefined;
  firstPa: number | undefined;
  /** Bytes done so far. */
  offset: number;
  /** Bytes of the piece in flight. */
  pieceLen: number;
  /** Completion callback of every piece (made on the first). */
  pieceDone: DmaDone | null;
  // The miss: the address and page, whether the page was requested through PRI already.
  missAddr: number;
  page: number;
  pagedIn: boolean;
  /** Translation requests sent so far for this page. */
  attempt: number;
  /** ATC epoch when the last one was sent: an invalidation since makes its answer stale. */
  epoch: number;
  /** The translation request for the page (the same message for every attempt). */
  atsReq: AtsRequest | null;
  /** Completion callback of every translation request (made on the first). */
  atsDone: ((c: AtsCompletion) => void) | null;
}

export class PcieEndpoint extends DmaMaster implements AtsEndpoint {
  readonly bus: number;
  readonly device: number;
  readonly fn: number;
  readonly rid: number;
  readonly hasAts: boolean;
  readonly hasPri: boolean;
  readonly config = new ConfigSpace();
  readonly atsStats: AtsStats = { hits: 0, misses: 0, translationRequests: 0, invalidations: 0, pageRequests: 0, pageResponses: 0 };

  private readonly cfg: Required<PcieEndpointConfig>;
  private atsPos = 0;
  private priPos = 0;
  private pasidPos = 0;
  private multiFunction = false;
  private atc: AtcEntry[] = [];
  /** Bumped by every invalidation: a translation that raced one is not cached. */
  private atcEpoch = 0;
  /** Page requests sent, by PRG index: the access waiting for each. */
  private readonly outstandingPri = new PrgSlots();
  private priWaiters: (() => void)[] = [];
  private nextPrgIndex = 0;

  constructor(name: string, route: StreamRoute, protected override readonly ctx: EndpointContext, config: PcieEndpointConfig) {
    const pasidBits = config.pasidBits ?? 0;
    super(name, [route], ctx, pasidBits);
    for (const [what, v, max] of [
      ['bus', config.bus, 255],
      ['device', config.device, 31],
      ['function', config.fn, 7],
    ] as const) {
      if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`PCIe endpoint ${name}: ${what} ${v} outside 0..${max}`);
    }
    const given = Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined)) as PcieEndpointConfig;
    this.cfg = {
      vendorId: 0x13b5,
      deviceId: 0xff80,
      classCode: 0x120000,
      revision: 1,
      pasidExec: pasidBits > 0,
      pasidPriv: pasidBits > 0,
      ats: false,
      pri: false,
      priCapacity: 32,
      atsInvalidateQueueDepth: 0,
      rootComplexAts: true,
      enforceBusMaster: true,
      atcInvalidateLatencyNs: 200,
      atcEntries: 64,
      ...given,
      pasidBits,
    };
    if (this.cfg.pri && !this.cfg.ats) throw new Error(`PCIe endpoint ${name}: PRI needs ATS`);
    this.bus = config.bus;
    this.device = config.device;
    this.fn = config.fn;
    this.rid = requesterId(config.bus, config.device, config.fn);
    this.hasAts = this.cfg.ats;
    this.hasPri = this.cfg.pri;
    this.config.onWrite = (off, old, now, written) => this.configWritten(off, old, now, written);
    this.initConfig();
  }

  // -------------------------------------------------------------------------------------------
  // Configuration space
  // -------------------------------------------------------------------------------------------

  configRead32(reg: number): number {
    return this.config.read32(reg);
  }

  configWrite32(reg: number, value: number): void {
    this.config.write32(reg, value);
  }

  /** Offsets of the extended capabilities (0 when absent). */
  get capabilityOffsets(): { exp: number; ats: number; pri: number; pasid: number } {
    return { exp: EXP_CAP_OFFSET, ats: this.atsPos, pri: this.priPos, pasid: this.pasidPos };
  }

  /** Mark the function as part of a multi-function device (header type bit 7). */
  setMultiFunction(on: boolean): void {
    this.multiFunction = on;
    const ht = this.config.get8(PCI_HEADER_TYPE);
    this.config.init8(PCI_HEADER_TYPE, on ? ht | PCI_HEADER_TYPE_MFD : ht & ~PCI_HEADER_TYPE_MFD);
  }

  get busMasterEnabled(): boolean {
    return (this.config.get16(PCI_COMMAND) & PCI_COMMAND_MASTER) !== 0;
  }

  get atsEnabled(): boolean {
    return this.atsPos !== 0 && (this.config.get16(this.atsPos + PCI_ATS_CTRL) & PCI_ATS_CTRL_ENABLE) !== 0;
  }

  get priEnabled(): boolean {
    return this.priPos !== 0 && (this.config.get16(this.priPos + PCI_PRI_CTRL) & PCI_PRI_CTRL_ENABLE) !== 0;
  }

  get pasidEnabled(): boolean {
    return this.pasidPos !== 0 && (this.config.get16(this.pasidPos + PCI_PASID_CTRL) & PCI_PASID_CTRL_ENABLE) !== 0;
  }

  /** Function Level Reset: configuration back to power-on values, ATC and page requests dropped. */
  functionLevelReset(): void {
    this.initConfig();
    this.flushAtc();
    this.abandonPageRequests();
  }

  private initConfig(): void {
    const c = this.config;
    const cfg = this.cfg;
    c.clear();
    c.init16(PCI_VENDOR_ID, cfg.vendorId);
    c.init16(PCI_DEVICE_ID, cfg.deviceId);
    c.rw16(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
    c.init16(PCI_STATUS, PCI_STATUS_CAP_LIST);
    c.init32(PCI_CLASS_REVISION, ((cfg.classCode & 0xffffff) << 8) | (cfg.revision & 0xff));
    c.rw8(PCI_CACHE_LINE_SIZE, 0xff);
    c.init8(PCI_HEADER_TYPE, this.multiFunction ? PCI_HEADER_TYPE_MFD : 0);
    c.init16(PCI_SUBSYSTEM_VENDOR_ID, cfg.vendorId);
    c.init16(PCI_SUBSYSTEM_ID, cfg.deviceId);
    c.init8(PCI_CAPABILITY_LIST, EXP_CAP_OFFSET);
    c.rw8(PCI_INTERRUPT_LINE, 0xff);

    const e = EXP_CAP_OFFSET;
    c.init8(e, PCI_CAP_ID_EXP);
    c.init8(e + 1, 0); // last capability in the legacy list
    const type = this.bus === 0 ? PCI_EXP_TYPE_RC_END : PCI_EXP_TYPE_ENDPOINT;
    c.init16(e + PCI_EXP_FLAGS, PCI_EXP_FLAGS_VERS2 | (type << 4));
    c.init32(e + PCI_EXP_DEVCAP, PCI_EXP_DEVCAP_FLR);
    c.rw16(e + PCI_EXP_DEVCTL, 0x79ff);
    c.w1c16(e + PCI_EXP_DEVSTA, 0x000f);
    c.init32(e + PCI_EXP_LNKCAP, 0x0000_0011); // 2.5 GT/s, x1
    c.rw16(e + PCI_EXP_LNKCTL, 0x00c3);
    c.init16(e + PCI_EXP_LNKSTA, 0x0011);
    c.rw16(e + PCI_EXP_DEVCTL2, 0x001f);

    const caps: [number, (pos: number) => void][] = [];
    if (cfg.ats) caps.push([PCI_EXT_CAP_ID_ATS, (p) => this.initAts(p)]);
    if (cfg.pri) caps.push([PCI_EXT_CAP_ID_PRI, (p) => this.initPri(p)]);
    if (cfg.pasidBits > 0) caps.push([PCI_EXT_CAP_ID_PASID, (p) => this.initPasid(p)]);
    this.atsPos = this.priPos = this.pasidPos = 0;
    caps.forEach(([id, init], i) => {
      const pos = PCI_CFG_SPACE_SIZE + i * 0x10;
      const next = i + 1 < caps.length ? pos + 0x10 : 0;
      c.init32(pos, id | (1 << 16) | (next << 20));
      init(pos);
    });
  }

  private initAts(pos: number): void {
    this.atsPos = pos;
    const gi = this.cfg.pasidBits > 0 ? PCI_ATS_CAP_GLOBAL_INV : 0;
    this.config.init16(pos + PCI_ATS_CAP, (this.cfg.atsInvalidateQueueDepth & 0x1f) | PCI_ATS_CAP_PAGE_ALIGNED | gi);
    this.config.rw16(pos + PCI_ATS_CTRL, PCI_ATS_CTRL_ENABLE | PCI_ATS_CTRL_STU_MASK);
  }

  private initPri(pos: number): void {
    this.priPos = pos;
    const c = this.config;
    c.rw16(pos + PCI_PRI_CTRL, PCI_PRI_CTRL_ENABLE);
    c.init16(pos + PCI_PRI_STATUS, PCI_PRI_STATUS_STOPPED | (this.cfg.pasidBits > 0 ? PCI_PRI_STATUS_PASID : 0));
    c.w1c16(pos + PCI_PRI_STATUS, PCI_PRI_STATUS_RF | PCI_PRI_STATUS_UPRGI);
    c.init32(pos + PCI_PRI_MAX_REQ, this.cfg.priCapacity);
    c.rw32(pos + PCI_PRI_ALLOC_REQ, 0xffff_ffff);
  }

  private initPasid(pos: number): void {
    this.pasidPos = pos;
    const exec = this.cfg.pasidExec ? PCI_PASID_CAP_EXEC : 0;
    const priv = this.cfg.pasidPriv ? PCI_PASID_CAP_PRIV : 0;
    this.config.init16(pos + PCI_PASID_CAP, exec | priv | (this.cfg.pasidBits << PCI_PASID_CAP_WIDTH_SHIFT));
    this.config.rw16(pos + PCI_PASID_CTRL, PCI_PASID_CTRL_ENABLE | exec | priv);
  }

  private configWritten(off: number, old: number, now: number, written: number): void {
    if (off === EXP_CAP_OFFSET + PCI_EXP_DEVCTL && (written & PCI_EXP_DEVCTL_BCR_FLR) !== 0) {
      this.functionLevelReset();
      return;
    }
    // The ATS Control register is the upper half of the dword at atsPos + 4.
    if (this.atsPos !== 0 && off === this.atsPos + PCI_ATS_CAP) {
      const was = (old >>> 16) & PCI_ATS_CTRL_ENABLE;
      const is = (now >>> 16) & PCI_ATS_CTRL_ENABLE;
      if (was !== is) this.flushAtc();
    }
    if (this.priPos !== 0 && off === this.priPos + PCI_PRI_CTRL) {
      // Reset only acts while Enable is clear.
      if ((written & PCI_PRI_CTRL_RESET) !== 0 && !this.priEnabled) {
        this.abandonPageRequests();
        this.config.setBits16(this.priPos + PCI_PRI_STATUS, PCI_PRI_STATUS_RF | PCI_PRI_STATUS_UPRGI, false);
      }
      this.updatePriStopped();
    }
  }

  // -------------------------------------------------------------------------------------------
  // Transactions
  // -------------------------------------------------------------------------------------------

  /** As DmaMaster's, plus `translated` (claim the address is already translated: AT = 10b). */
  protected override request(
    addr: number,
    len: number,
    write: boolean,
    data: Uint8Array | undefined,
    opts: DmaOptions & { translated?: boolean },
  ): DmaRequest {
    const req = super.request(addr, len, write, data, opts);
    if (opts.translated) req.translated = true;
    return req;
  }

  /** Issue with AT = translated, bypassing the ATC: what a device does with an address it cached. */
  submitTranslated(addr: number, data: Uint8Array | null, len: number, opts: DmaOptions, done: DmaDone): void {
    const o = { ...opts, translated: true };
    this.submit(this.request(addr, data ? data.length : len, data !== null, data ?? undefined, o), done);
  }

  protected override issue(req: DmaRequest, done: DmaDone): void {
    const refusal = this.refusal(req);
    if (refusal !== null) {
      done({ status: 'not-issued', detail: refusal });
      return;
    }
    if (this.atsEnabled && !req.translated) {
      // Fast path: the whole access hits one ATC entry, and goes out translated right away.
      const hit = this.lookupAtc(req, req.addr);
      if (hit && req.addr + req.len <= hit.base + hit.size) {
        this.atsStats.hits++;
        this.portOf(req.streamId).submit(translatedPiece(req, hit.pa + (req.addr - hit.base), req.len, req.data), done);
        return;
      }
      const job = new AtcJob(req, done, this.portOf(req.streamId), req.write ? undefined : new Uint8Array(req.len));
      // No entry at all for the first byte: a miss without looking again.
      if (hit === null) this.atcMiss(job, req.addr);
      else this.atcNext(job);
      return;
    }
    super.issue(req, done);
  }

  /** Why the function cannot put this request on the link, or null if it can. */
  private refusal(req: DmaRequest): string | null {
    if (this.cfg.enforceBusMaster && !this.busMasterEnabled) return 'Bus Master Enable is clear in the Command register';
    if (req.translated && !this.atsEnabled) return 'a translated request needs ATS Enable';
    if (!req.ssidValid) {
      if (req.exec || req.priv) return 'exec/privileged attributes travel only in a PASID prefix';
      return null;
    }
    if (!this.pasidEnabled) return 'PASID Enable is clear in the PASID Control register';
    const ctrl = this.config.get16(this.pasidPos + PCI_PASID_CTRL);
    if (req.exec && (ctrl & PCI_PASID_CTRL_EXEC) === 0) return 'Execute Permission Enable is clear in PASID Control';
    if (req.priv && (ctrl & PCI_PASID_CTRL_PRIV) === 0) return 'Privileged Mode Enable is clear in PASID Control';
    return null;
  }

  // The ATC miss path is a chain of callbacks, each answer from upstream taken in a microtask of
  // its own (never inside the upstream call that delivered it), the order an await would give;
  // a model error on the way completes the request as a bus error (nothing escapes the model).

  /**
   * Run `fn(job, arg)` in a microtask; an exception completes the job's request as a bus error. The
   * calls queued before the microtask runs share it, in order (a promise reaction on a settled
   * promise costs less than Node's queueMicrotask, which makes an async resource per call). `fn` is
   * one of the endpoint's own handlers, so a deferred call allocates nothing.
   */
  private later<A>(job: AtcAccess, fn: (job: AtcAccess, arg: A) => void, arg: A): void {
    const i = this.laterCount++;
    this.laterFns[i] = fn as (job: AtcAccess, arg: unknown) => void;
    this.laterJobs[i] = job;
    this.laterArgs[i] = arg;
    if (i === 0) void SETTLED.then(this.runLater);
  }

  // The calls waiting for the microtask: slots [0, laterCount) of three arrays that keep their size
  // (emptied by clearing the slots, so a pass allocates nothing).
  private laterCount = 0;
  private readonly laterFns: (((job: AtcAccess, arg: unknown) => void) | null)[] = [];
  private readonly laterJobs: (AtcAccess | null)[] = [];
  private readonly laterArgs: unknown[] = [];
  private readonly runLater = (): void => {
    const fns = this.laterFns;
    const jobs = this.laterJobs;
    const args = this.laterArgs;
    // Calls queued while these run (not from inside an upstream call) join this pass.
    for (let i = 0; i < this.laterCount; i++) {
      const job = jobs[i]!;
      try {
        fns[i]!(job, args[i]);
      } catch (e) {
        job.done({ status: 'bus-error', detail: `endpoint model error: ${e instanceof Error ? e.message : String(e)}` });
      }
    }
    for (let i = 0; i < this.laterCount; i++) {
      fns[i] = null;
      jobs[i] = null;
      args[i] = null;
    }
    this.laterCount = 0;
  };

  // The deferred handlers.
  private readonly onPieceDone = (job: AtcAccess, c: DmaCompletion): void => {
    if (c.status !== 'ok') {
      job.done(c);
      return;
    }
    if (job.out && c.data) job.out.set(c.data, job.offset);
    job.firstPa ??= c.pa;
    job.offset += job.pieceLen;
    this.atcNext(job);
  };
  private readonly onTranslated = (job: AtcAccess, c: AtsCompletion): void => this.translated(job, c);
  private readonly onPageAnswer = (job: AtcAccess, code: PageResponseCode | string): void => this.pageAnswered(job, code);
  private readonly onPriSlot = (job: AtcAccess): void => {
    if (!this.priEnabled) this.pageAnswered(job, 'PRI Enable is clear');
    else this.sendPageRequest(job);
  };

  /** Issue the rest of a request as translated pieces, each covered by one ATC entry. */
  private atcNext(job: AtcAccess): void {
    const req = job.req;
    if (job.offset >= req.len) {
      job.done(job.out ? { status: 'ok', data: job.out, pa: job.firstPa } : { status: 'ok', pa: job.firstPa });
      return;
    }
    const addr = req.addr + job.offset;
    const hit = this.lookupAtc(req, addr);
    if (hit) {
      this.atsStats.hits++;
      this.atcSubmit(job, addr, hit);
      return;
    }
    this.atcMiss(job, addr);
  }

  /** The piece at `addr` is not in the ATC: translate its page. */
  private atcMiss(job: AtcAccess, addr: number): void {
    this.atsStats.misses++;
    job.missAddr = addr;
    job.page = Math.floor(addr / PAGE_SIZE) * PAGE_SIZE;
    job.pagedIn = false;
    job.attempt = 0;
    job.epoch = 0;
    job.atsReq = null;
    this.translateAttempt(job);
  }

  private atcSubmit(job: AtcAccess, addr: number, t: AtcEntry): void {
    const req = job.req;
    const done = job.offset;
    const n = Math.min(req.len - done, t.base + t.size - addr);
    // The whole request in one piece needs no view of its data.
    const data = req.data === undefined || (done === 0 && n === req.len) ? req.data : req.data.subarray(done, done + n);
    job.pieceLen = n;
    job.port.submit(translatedPiece(req, t.pa + (addr - t.base), n, data), (job.pieceDone ??= (c) => this.later(job, this.onPieceDone, c)));
  }

  /** One translation request for the page of an ATC miss (up to MAX_TRANSLATION_RETRIES of them). */
  private translateAttempt(job: AtcAccess): void {
    if (job.attempt >= MAX_TRANSLATION_RETRIES) {
      job.done({ status: 'abort', detail: `ATS translation of 0x${job.page.toString(16)} kept racing ATC invalidations` });
      return;
    }
    job.attempt++;
    job.epoch = this.atcEpoch;
    const req = job.req;
    const port = job.port;
    if (!this.cfg.rootComplexAts) {
      this.translated(job, { status: 'unsupported', detail: 'the root complex does not forward ATS' });
      return;
    }
    if (!port.translate) {
      this.translated(job, { status: 'unsupported', detail: 'no translation agent upstream' });
      return;
    }
    this.atsStats.translationRequests++;
    // A retry sends the same message again (the previous one has been answered).
    job.atsReq ??= new AtsRequestRecord(this.name, req.streamId, req.ssid, req.ssidValid, job.page, req.write, req.exec, req.priv);
    port.translate(job.atsReq, (job.atsDone ??= (c) => this.later(job, this.onTranslated, c)));
  }

  /** The completion of a translation request: use it, ask again, or page in first (PRI). */
  private translated(job: AtcAccess, c: AtsCompletion): void {
    const req = job.req;
    const page = job.page;
    if (c.status === 'unsupported') {
      job.done({ status: 'bus-error', detail: `ATS translation request: Unsupported Request${c.detail ? ` (${c.detail})` : ''}` });
      return;
    }
    if (c.status === 'abort') {
      job.done({ status: 'abort', detail: `ATS translation request: Completer Abort${c.detail ? ` (${c.detail})` : ''}` });
      return;
    }
    const malformed = malformedCompletion(c);
    if (malformed !== null) {
      job.done({ status: 'abort', detail: malformed });
      return;
    }
    if (job.epoch !== this.atcEpoch) {
      this.translateAttempt(job); // an invalidation overtook it: ask again
      return;
    }
    // A "no access" answer is neither cached nor usable: no entry to make for it.
    if (c.read === true || c.write === true) {
      const entry = this.entryFrom(req, job.missAddr, c);
      this.insertAtc(entry);
      if (permits(entry, req)) {
        this.atcSubmit(job, job.missAddr, entry);
        return;
      }
    }
    if (job.pagedIn || !this.hasPri) {
      job.done({ status: 'fault', detail: `ATS translation of 0x${page.toString(16)} grants no ${req.write ? 'write' : 'read'} access` });
      return;
    }
    this.requestPage(job);
  }

  /** The answer to the page request of an ATC miss (a response code, or why none could be sent). */
  private pageAnswered(job: AtcAccess, code: PageResponseCode | string): void {
    if (code !== 'success') {
      job.done({ status: 'fault', detail: `page request for 0x${job.page.toString(16)}: ${code}` });
      return;
    }
    job.pagedIn = true;
    this.translateAttempt(job);
  }

  /** The ATC entry a successful, well-formed completion (see malformedCompletion) makes. */
  private entryFrom(req: DmaRequest, addr: number, c: AtsCompletion): AtcEntry {
    const size = c.size ?? PAGE_SIZE;
    return {
      ssid: req.ssidValid ? req.ssid : -1,
      priv: req.priv,
      base: Math.floor(addr / size) * size,
      size,
      pa: c.pa!,
      read: c.read ?? false,
      write: c.write ?? false,
      exec: c.exec ?? false,
    };
  }

  // -------------------------------------------------------------------------------------------
  // ATC
  // -------------------------------------------------------------------------------------------

  /** Cached translations, oldest first (for tests and reports). */
  get atcContents(): readonly AtcEntry[] {
    return this.atc;
  }

  private lookupAtc(req: DmaRequest, addr: number): AtcEntry | null {
    const ssid = req.ssidValid ? req.ssid : -1;
    for (const e of this.atc) {
      if (e.ssid === ssid && e.priv === req.priv && addr >= e.base && addr < e.base + e.size && permits(e, req)) return e;
    }
    return null;
  }

  private insertAtc(e: AtcEntry): void {
    // Entries it overlaps go (in place: a miss allocates nothing but the entry).
    const atc = this.atc;
    let keep = 0;
    for (let i = 0; i < atc.length; i++) {
      const o = atc[i];
      if (!(o.ssid === e.ssid && o.priv === e.priv && o.base < e.base + e.size && e.base < o.base + o.size)) atc[keep++] = o;
    }
    atc.length = keep;
    atc.push(e);
    if (this.atc.length > this.cfg.atcEntries) this.atc.shift();
  }

  private flushAtc(): void {
    this.atcEpoch++;
    this.atc = [];
  }

  /** How long the next ATC invalidations take to complete (Infinity: never; a late or hung function). */
  get atcInvalidateLatencyNs(): number {
    return this.cfg.atcInvalidateLatencyNs;
  }

  set atcInvalidateLatencyNs(ns: number) {
    if (!(ns >= 0)) throw new RangeError(`${this.name}: ATC invalidation latency ${String(ns)} is not >= 0 (Infinity: never answers)`);
    this.cfg.atcInvalidateLatencyNs = ns;
  }

  invalidateAtc(inv: AtcInvalidation, done: () => void): void {
    this.atsStats.invalidations++;
    this.atcEpoch++;
    const end = inv.addr + inv.size;
    this.atc = this.atc.filter((e) => {
      const space = inv.global ? e.ssid >= 0 || inv.ssid === null : e.ssid === (inv.ssid ?? -1);
      return !(space && e.base < end && inv.addr < e.base + e.size);
    });
    if (this.atcInvalidateLatencyNs === Infinity) return; // a hung function: no completion message
    this.ctx.schedule(this.atcInvalidateLatencyNs, done, `atc-inv-done ${this.name}`);
  }

  // -------------------------------------------------------------------------------------------
  // PRI
  // -------------------------------------------------------------------------------------------

  /** Page requests sent and not answered yet. */
  get outstandingPageRequests(): number {
    return this.outstandingPri.size;
  }

  /** Send a page request for the job's page; `pageAnswered` gets the response code, or why none could be sent. */
  private requestPage(job: AtcAccess): void {
    const port = this.portOf(job.req.streamId);
    if (!this.priEnabled) return this.pageAnswered(job, 'PRI Enable is clear');
    if (!port.pageRequest) return this.pageAnswered(job, 'no page request interface upstream');
    const status = this.config.get16(this.priPos + PCI_PRI_STATUS);
    if ((status & PCI_PRI_STATUS_RF) !== 0) return this.pageAnswered(job, 'PRI is in Response Failure state');
    this.sendPageRequest(job);
  }

  /** Wait for a free PRG index within the allocation, then send. */
  private sendPageRequest(job: AtcAccess): void {
    if (this.outstandingPri.size >= Math.min(this.allocatedPageRequests(), PRG_INDEX_COUNT)) {
      if (this.allocatedPageRequests() === 0) return this.pageAnswered(job, 'Outstanding Page Request Allocation is 0');
      this.priWaiters.push(() => this.later(job, this.onPriSlot, undefined));
      return;
    }
    const req = job.req;
    const port = this.portOf(req.streamId);
    let prgIndex = this.nextPrgIndex;
    while (this.outstandingPri.has(prgIndex)) prgIndex = (prgIndex + 1) % PRG_INDEX_COUNT;
    this.nextPrgIndex = (prgIndex + 1) % PRG_INDEX_COUNT;
    this.outstandingPri.set(prgIndex, job);
    this.updatePriStopped();
    this.atsStats.pageRequests++;
    port.pageRequest!({
      master: this.name,
      streamId: req.streamId,
      ssid: req.ssid,
      ssidValid: req.ssidValid,
      addr: job.page,
      read: !req.write,
      write: req.write,
      exec: req.exec,
      priv: req.priv,
      prgIndex,
      last: true,
    });
  }

  private allocatedPageRequests(): number {
    return this.config.get32(this.priPos + PCI_PRI_ALLOC_REQ);
  }

  pageResponse(resp: PageResponse): void {
    this.atsStats.pageResponses++;
    const o = this.outstandingPri.get(resp.prgIndex);
    if (!o || (o.req.ssidValid && resp.ssidValid && o.req.ssid !== resp.ssid)) {
      if (this.priPos !== 0) this.config.setBits16(this.priPos + PCI_PRI_STATUS, PCI_PRI_STATUS_UPRGI, true);
      return;
    }
    this.outstandingPri.delete(resp.prgIndex);
    if (resp.code === 'failure') this.config.setBits16(this.priPos + PCI_PRI_STATUS, PCI_PRI_STATUS_RF, true);
    this.updatePriStopped();
    this.priWaiters.shift()?.();
    this.later(o, this.onPageAnswer, resp.code);
  }

  /** Forget every outstanding page request; their transactions fail. */
  private abandonPageRequests(): void {
    const pending = this.outstandingPri.takeAll();
    const waiters = this.priWaiters;
    this.priWaiters = [];
    for (const w of waiters) w();
    for (const o of pending) this.later(o, this.onPageAnswer, 'invalid');
    this.updatePriStopped();
  }

  private updatePriStopped(): void {
    if (this.priPos === 0) return;
    const stopped = !this.priEnabled && this.outstandingPri.size === 0;
    this.config.setBits16(this.priPos + PCI_PRI_STATUS, PCI_PRI_STATUS_STOPPED, stopped);
  }
}

/** An AtcAccess made with `new` (not an object literal: see DmaRequestRecord in hw/dma.ts). */
class AtcJob implements AtcAccess {
  firstPa: number | undefined = undefined;
  offset = 0;
  pieceLen = 0;
  pieceDone: DmaDone | null = null;
  missAddr = 0;
  page = 0;
  pagedIn = false;
  attempt = 0;
  epoch = 0;
  atsReq: AtsRequest | null = null;
  atsDone: ((c: AtsCompletion) => void) | null = null;

  constructor(
    readonly req: DmaRequest,
    readonly done: DmaDone,
    readonly port: AtcAccess['port'],
    readonly out: Uint8Array | undefined,
  ) {}
}

/**
 * The outstanding page requests by PRG index, in fixed slots: a Map here would grow and shrink its
 * hash table with every burst of requests, and the garbage collector keeps a long-lived Map's
 * discarded tables (and the accesses they held) alive until its next full collection.
 */
class PrgSlots {
  private readonly jobs: (AtcAccess | null)[] = new Array<AtcAccess | null>(PRG_INDEX_COUNT).fill(null);
  /** When each slot was filled: `takeAll` hands the requests back in the order they were sent. */
  private readonly filled = new Float64Array(PRG_INDEX_COUNT);
  private nextFill = 0;
  size = 0;

  has(prgIndex: number): boolean {
    return this.jobs[prgIndex] !== null;
  }

  get(prgIndex: number): AtcAccess | undefined {
    return this.jobs[prgIndex] ?? undefined;
  }

  set(prgIndex: number, job: AtcAccess): void {
    if (this.jobs[prgIndex] === null) this.size++;
    this.jobs[prgIndex] = job;
    this.filled[prgIndex] = this.nextFill++;
  }

  delete(prgIndex: number): boolean {
    if (this.jobs[prgIndex] === null) return false;
    this.jobs[prgIndex] = null;
    this.size--;
    return true;
  }

  /** Every outstanding request, oldest first; the table is left empty. */
  takeAll(): AtcAccess[] {
    const idx: number[] = [];
    for (let i = 0; i < PRG_INDEX_COUNT; i++) if (this.jobs[i] !== null) idx.push(i);
    idx.sort((a, b) => this.filled[a] - this.filled[b]);
    const out = idx.map((i) => this.jobs[i]!);
    for (const i of idx) this.jobs[i] = null;
    this.size = 0;
    return out;
  }
}

/** Why a successful translation completion is malformed, or null when it is not. */
function malformedCompletion(c: AtsCompletion): string | null {
  const size = c.size ?? PAGE_SIZE;
  const pa = c.pa;
  if (pa === undefined || !Number.isSafeInteger(pa) || pa < 0) return 'ATS translation completion without a valid address';
  if (!Number.isSafeInteger(size) || size < PAGE_SIZE || !isPowerOfTwo(size)) {
    return `ATS translation completion with size ${size}, not a power of two >= 4 KiB`;
  }
  if (pa % size !== 0) return `ATS translation completion address 0x${pa.toString(16)} is not aligned to its size 0x${size.toString(16)}`;
  return null;
}

/** Whether a positive safe integer is a power of two (bit tests, no floating-point log). */
function isPowerOfTwo(n: number): boolean {
  while (n > 0x4000_0000) {
    if (n % 2 !== 0) return false;
    n /= 2;
  }
  return (n & (n - 1)) === 0;
}

/** `req` issued as a translated (AT) piece at `pa` (cheaper than a spread). */
function translatedPiece(req: DmaRequest, pa: number, len: number, data: Uint8Array | undefined): DmaRequest {
  return new DmaRequestRecord(req.master, req.streamId, req.ssid, req.ssidValid, pa, len, req.write, req.exec, req.priv, true, data);
}

function permits(e: AtcEntry, req: DmaRequest): boolean {
  if (req.write ? !e.write : !e.read) return false;
  return !req.exec || e.exec;
}
