/**
 * What the SMMU tells the driver (kernel: arm_smmu_evtq_thread(), arm_smmu_handle_evt(),
 * arm_smmu_priq_thread(), arm_smmu_handle_ppr(), arm_smmu_gerror_handler(), the combined handler, and
 * arm_smmu_page_response()).
 *
 * Event and PRI records are drained by threaded interrupt handlers, decoded into readable reports in
 * the kernel log (rate-limited as dev_info_ratelimited is) and kept in `smmu.events` for reports and
 * tests. Queue overflow is detected from PROD.OVFLG after draining and acknowledged through CONS.
 *
 * Faults a master can recover from, a stalled transaction (Stall = 1, answered by CMD_RESUME) or a PRI
 * page request (answered by CMD_PRI_RESP), are reported to the domain they hit:
 * - a domain with a fault-handler cookie (iommu_set_fault_handler) gets `reportIommuFault`; its verdict
 *   becomes the response by the arm-smmu rule (the RESUME write of arm_smmu_context_fault()): only
 *   EAGAIN retries (RESUME retry, PRI success); 0 ("handled", e.g. a handler that only records the
 *   fault) and every other errno abort (RESUME abort, PRI invalid), so a stall reaches the handler once
 *   and its master sees the transaction terminated;
 * - otherwise the fault goes to the core's iommu_report_device_fault() (core/iommu-fault.ts): partial
 *   PRI requests are buffered there until their group's last one, groups run on the IOPF queue (the
 *   SVA handler, a domain's fault queue) or reach the device's fault handler, and every answer comes
 *   back through the `pageResponse` op; nobody to resolve it: the core answers INVALID at once
 *   (RESUME abort, PRI_RESP deny).
 * Unrecoverable faults are dumped, and also passed to a fault-handler cookie if the domain has one and
 * to the master's device fault handler as an unrecoverable fault record.
 */
import { isKernelError, KernelError, type Errno } from '../../bus/errno.js';
import type { IrqReturn } from '../../bus/irq.js';
import { devIommu } from '../../core/iommu-device.js';
import { faultResult, iommuReportDeviceFault, settledFaultResult } from '../../core/iommu-fault.js';
import { IOMMU_FAULT_READ, IOMMU_FAULT_WRITE, reportIommuFault, type IommuDomain } from '../../core/iommu-domain.js';
import {
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_FAULT_REASON_ACCESS,
  IOMMU_FAULT_REASON_OOR_ADDRESS,
  IOMMU_FAULT_REASON_PERMISSION,
  IOMMU_FAULT_REASON_PTE_FETCH,
  IOMMU_FAULT_REASON_UNKNOWN,
  IOMMU_FAULT_UNRECOV_ADDR_VALID,
  IOMMU_FAULT_UNRECOV_FETCH_ADDR_VALID,
  IOMMU_FAULT_UNRECOV_PASID_VALID,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
  iopfPageRequest,
  type IommuPageResponse,
  type IopfFault,
} from '../../core/iommu-fault-types.js';
import { devFaultParam } from '../../core/io-pgfault.js';
import type { ArmSmmuCmdqEnt } from './arm-smmu-v3-cmdq.js';
import type { ArmSmmuDevice } from './arm-smmu-v3-device.js';
import type { ArmSmmuVmaster } from './arm-smmu-v3-domain.js';
import type { ArmSmmuMaster } from './arm-smmu-v3-master.js';
import {
  LOG_NS,
  ARM_SMMU_FEAT_PRI,
  ARM_SMMU_GERROR,
  ARM_SMMU_GERRORN,
  CMDQ_OP_PRI_RESP,
  CMDQ_OP_RESUME,
  CMDQ_RESUME_0_RESP_ABORT,
  CMDQ_RESUME_0_RESP_RETRY,
  EVT_ID_ACCESS_FAULT,
  EVT_ID_ADDR_SIZE_FAULT,
  EVT_ID_BAD_CD_CONFIG,
  EVT_ID_BAD_STE_CONFIG,
  EVT_ID_BAD_SUBSTREAMID_CONFIG,
  EVT_ID_CD_FETCH_FAULT,
  EVT_ID_STREAM_DISABLED_FAULT,
  EVT_ID_PERMISSION_FAULT,
  EVT_ID_STE_FETCH_FAULT,
  EVT_ID_TRANSLATION_FAULT,
  EVT_ID_TT_FETCH_FAULT,
  EVT_NAMES,
  EVTQ_0_ID,
  EVTQ_0_SID,
  EVTQ_0_SSID,
  EVTQ_0_SSV,
  EVTQ_1_CLASS,
  EVTQ_1_InD,
  EVTQ_1_PnU,
  EVTQ_1_RnW,
  EVTQ_1_S2,
  EVTQ_1_STAG,
  EVTQ_1_STALL,
  EVTQ_2_ADDR_HI,
  EVTQ_2_ADDR_LO,
  EVTQ_3_FETCH_ADDR,
  EVTQ_3_IPA,
  EVTQ_ENT_WORDS,
  GERROR_CMDQ_ERR,
  GERROR_ERR_MASK,
  GERROR_EVTQ_ABT_ERR,
  GERROR_MSI_CMDQ_ABT_ERR,
  GERROR_MSI_EVTQ_ABT_ERR,
  GERROR_MSI_GERROR_ABT_ERR,
  GERROR_MSI_PRIQ_ABT_ERR,
  GERROR_PRIQ_ABT_ERR,
  GERROR_SFM_ERR,
  PRI_RESP_DENY,
  PRI_RESP_FAIL,
  PRI_RESP_SUCC,
  PRIQ_0_PERM_EXEC,
  PRIQ_0_PERM_PRIV,
  PRIQ_0_PERM_READ,
  PRIQ_0_PERM_WRITE,
  PRIQ_0_PRG_LAST,
  PRIQ_0_SID,
  PRIQ_0_SSID,
  PRIQ_0_SSID_V,
  PRIQ_1_ADDR_MASK,
  PRIQ_1_PRG_IDX,
  PRIQ_ENT_WORDS,
} from './arm-smmu-v3-regs.js';

const hex = (v: number): string => `0x${v.toString(16)}`;
const TWO_32 = 0x1_0000_0000;
/**
 * Decoded records kept for reports: at least the newest EVENT_LOG_MAX; the oldest are dropped
 * EVENT_LOG_TRIM at a time once EVENT_LOG_MAX + EVENT_LOG_TRIM are held (dropping one per record
 * would move the whole log on every record of a fault stream).
 */
const EVENT_LOG_MAX = 4096;
const EVENT_LOG_TRIM = 256;
/** The kernel's DEFAULT_RATELIMIT_INTERVAL (5 s) and DEFAULT_RATELIMIT_BURST. */
const RATELIMIT_INTERVAL_NS = 5_000_000_000;
const RATELIMIT_BURST = 10;

/** One decoded event record or page request. */
export interface ArmSmmuEventReport {
  /** Virtual time the driver read it. */
  readonly time: number;
  readonly kind: 'event' | 'page-request';
  /** Event ID (0 for a page request). */
  readonly id: number;
  /** Architected name (F_TRANSLATION, …) or "PAGE_REQUEST". */
  readonly name: string;
  readonly sid: number;
  readonly ssid: number | null;
  /** Input address (events) or page address (page requests). */
  readonly addr: number;
  readonly read: boolean;
  readonly write: boolean;
  readonly exec: boolean;
  readonly priv: boolean;
  readonly stall: boolean;
  readonly stag: number;
  readonly s2: boolean;
  /** CLASS of a translation fault: CD, TT or IN. */
  readonly cls: 'CD' | 'TT' | 'IN' | null;
  readonly ipa: number | null;
  readonly fetchAddr: number | null;
  /** Page requests: PRG index and Last. */
  readonly prgIndex: number | null;
  readonly last: boolean;
  /** The master owning the StreamID, if any. */
  readonly master: string | null;
  /** What the driver did with it. */
  outcome: string;
  /** The record as qwords, hex. */
  readonly raw: readonly string[];
}

export interface ArmSmmuEventStats {
  /** Records by name. */
  byName: Record<string, number>;
  evtqOverflows: number;
  priqOverflows: number;
  gerrors: number;
  /** Recoverable faults answered, by response. */
  resumeRetry: number;
  resumeAbort: number;
  priResponses: number;
}

export function newEventStats(): ArmSmmuEventStats {
  return { byName: {}, evtqOverflows: 0, priqOverflows: 0, gerrors: 0, resumeRetry: 0, resumeAbort: 0, priResponses: 0 };
}

/** dev_*_ratelimited state, per SMMU. */
const ratelimits = new WeakMap<ArmSmmuDevice, { start: number; printed: number; missed: number }>();

/** With the default interval and burst. */
// kernel: __ratelimit() [lib/ratelimit.c]
function ratelimitOk(smmu: ArmSmmuDevice): boolean {
  const now = smmu.port.now();
  let rs = ratelimits.get(smmu);
  if (!rs) {
    rs = { start: now, printed: 0, missed: 0 };
    ratelimits.set(smmu, rs);
  }
  if (now - rs.start >= RATELIMIT_INTERVAL_NS) {
    if (rs.missed > 0) smmu.warn(`${rs.missed} callbacks suppressed`);
    rs.start = now;
    rs.printed = 0;
    rs.missed = 0;
  }
  if (rs.printed < RATELIMIT_BURST) {
    rs.printed++;
    return true;
  }
  rs.missed++;
  return false;
}

function qwordsHex(w: Uint32Array): string[] {
  const out: string[] = [];
  for (let i = 0; i < w.length; i += 2) out.push(`0x${w[i + 1].toString(16).padStart(8, '0')}${w[i].toString(16).padStart(8, '0')}`);
  return out;
}

/** Where a report's getters decode its record (one record at a time, nothing allocated). */
const decodeScratch = new Uint32Array(EVTQ_ENT_WORDS);
const CLASS_NAMES = ['CD', 'TT', 'IN'] as const;

/**
 * A decoded record as the driver keeps it (ArmSmmuEventReport): the time, the kind, the master and
 * the outcome, and the record's words as they were read, from which every other field is decoded
 * when read. The log holds thousands of these for a long time, so each is a handful of fields rather
 * than two dozen and a copy of the record in an array of its own (what each report costs in memory is
 * what the garbage collector copies while the log holds it).
 */
class EventReport implements ArmSmmuEventReport {
  readonly time: number;
  readonly kind: 'event' | 'page-request';
  readonly master: string | null;
  outcome = '';
  // The record's 32-bit words (4 for a PRI queue entry, 8 for an event record).
  readonly #w0: number;
  readonly #w1: number;
  readonly #w2: number;
  readonly #w3: number;
  readonly #w4: number;
  readonly #w5: number;
  readonly #w6: number;
  readonly #w7: number;

  constructor(kind: 'event' | 'page-request', time: number, master: string | null, w: Uint32Array) {
    this.time = time;
    this.kind = kind;
    this.master = master;
    this.#w0 = w[0];
    this.#w1 = w[1];
    this.#w2 = w[2];
    this.#w3 = w[3];
    const event = kind === 'event';
    this.#w4 = event ? w[4] : 0;
    this.#w5 = event ? w[5] : 0;
    this.#w6 = event ? w[6] : 0;
    this.#w7 = event ? w[7] : 0;
  }

  /** The record's words in the shared scratch array (valid until the next call). */
  #words(): Uint32Array {
    const w = decodeScratch;
    w[0] = this.#w0;
    w[1] = this.#w1;
    w[2] = this.#w2;
    w[3] = this.#w3;
    w[4] = this.#w4;
    w[5] = this.#w5;
    w[6] = this.#w6;
    w[7] = this.#w7;
    return w;
  }

  get #isEvent(): boolean {
    return this.kind === 'event';
  }

  get id(): number {
    return this.#isEvent ? EVTQ_0_ID.get(this.#words()) : 0;
  }

  get name(): string {
    return this.#isEvent ? eventName(this.id) : 'PAGE_REQUEST';
  }

  get sid(): number {
    return this.#isEvent ? EVTQ_0_SID.get(this.#words()) : PRIQ_0_SID.get(this.#words());
  }

  get ssid(): number | null {
    const w = this.#words();
    if (this.#isEvent) return EVTQ_0_SSV.isSet(w) ? EVTQ_0_SSID.get(w) : null;
    return PRIQ_0_SSID_V.isSet(w) ? PRIQ_0_SSID.get(w) : null;
  }

  get addr(): number {
    const w = this.#words();
    return this.#isEvent ? EVTQ_2_ADDR_LO.get(w) + EVTQ_2_ADDR_HI.get(w) * TWO_32 : PRIQ_1_ADDR_MASK.get(w);
  }

  get read(): boolean {
    return this.#isEvent ? EVTQ_1_RnW.isSet(this.#words()) : PRIQ_0_PERM_READ.isSet(this.#words());
  }

  get write(): boolean {
    return this.#isEvent ? !EVTQ_1_RnW.isSet(this.#words()) : PRIQ_0_PERM_WRITE.isSet(this.#words());
  }

  get exec(): boolean {
    return this.#isEvent ? EVTQ_1_InD.isSet(this.#words()) : PRIQ_0_PERM_EXEC.isSet(this.#words());
  }

  get priv(): boolean {
    return this.#isEvent ? EVTQ_1_PnU.isSet(this.#words()) : PRIQ_0_PERM_PRIV.isSet(this.#words());
  }

  get stall(): boolean {
    return this.#isEvent && EVTQ_1_STALL.isSet(this.#words());
  }

  get stag(): number {
    return this.#isEvent ? EVTQ_1_STAG.get(this.#words()) : 0;
  }

  get s2(): boolean {
    return this.#isEvent && EVTQ_1_S2.isSet(this.#words());
  }

  get cls(): 'CD' | 'TT' | 'IN' | null {
    if (!this.#isEvent) return null;
    const id = this.id;
    if (!isTranslationFault(id) && id !== EVT_ID_TT_FETCH_FAULT) return null;
    return CLASS_NAMES[EVTQ_1_CLASS.get(this.#words())] ?? null;
  }

  get ipa(): number | null {
    if (!this.#isEvent || !isTranslationFault(this.id)) return null;
    const w = this.#words();
    return EVTQ_1_S2.isSet(w) ? EVTQ_3_IPA.get(w) : null;
  }

  get fetchAddr(): number | null {
    if (!this.#isEvent) return null;
    const id = this.id;
    if (id !== EVT_ID_STE_FETCH_FAULT && id !== EVT_ID_CD_FETCH_FAULT && id !== EVT_ID_TT_FETCH_FAULT) return null;
    return EVTQ_3_FETCH_ADDR.get(this.#words());
  }

  get prgIndex(): number | null {
    return this.#isEvent ? null : PRIQ_1_PRG_IDX.get(this.#words());
  }

  get last(): boolean {
    return !this.#isEvent && PRIQ_0_PRG_LAST.isSet(this.#words());
  }

  /** The record as qwords, hex (made on each read: reports read it rarely). */
  get raw(): readonly string[] {
    const w = this.#words();
    return qwordsHex(this.#isEvent ? w : w.subarray(0, PRIQ_ENT_WORDS));
  }

  /** The report as a plain object with every field (what JSON output shows). */
  toJSON(): ArmSmmuEventReport {
    return {
      time: this.time,
      kind: this.kind,
      id: this.id,
      name: this.name,
      sid: this.sid,
      ssid: this.ssid,
      addr: this.addr,
      read: this.read,
      write: this.write,
      exec: this.exec,
      priv: this.priv,
      stall: this.stall,
      stag: this.stag,
      s2: this.s2,
      cls: this.cls,
      ipa: this.ipa,
      fetchAddr: this.fetchAddr,
      prgIndex: this.prgIndex,
      last: this.last,
      master: this.master,
      outcome: this.outcome,
      raw: this.raw,
    };
  }
}

/** F_TRANSLATION, F_ADDR_SIZE, F_ACCESS or F_PERMISSION. */
function isTranslationFault(id: number): boolean {
  return id === EVT_ID_TRANSLATION_FAULT || id === EVT_ID_ADDR_SIZE_FAULT || id === EVT_ID_ACCESS_FAULT || id === EVT_ID_PERMISSION_FAULT;
}

/** Log a report and count it under `name` (its name: the event thread passes the one it decoded). */
function record(smmu: ArmSmmuDevice, r: ArmSmmuEventReport, name: string = r.name): void {
  const log = smmu.events;
  log.push(r);
  if (log.length > EVENT_LOG_MAX + EVENT_LOG_TRIM) log.splice(0, log.length - EVENT_LOG_MAX);
  const byName = smmu.eventStats.byName;
  byName[name] = (byName[name] ?? 0) + 1;
}

/** An event record's name from its ID (what EventReport.name says for it). */
function eventName(id: number): string {
  return EVT_NAMES.get(id) ?? `event ${hex(id)}`;
}

/** An event record decoded for people. */
export function armSmmuDecodeEvent(evt: Uint32Array, time: number, master: string | null): ArmSmmuEventReport {
  return new EventReport('event', time, master, evt);
}

/** One line describing a report (what the log shows). */
export function armSmmuDescribeEvent(r: ArmSmmuEventReport): string {
  const parts = [`${r.name}`, `SID ${hex(r.sid)}`, r.ssid === null ? 'no SSID' : `SSID ${hex(r.ssid)}`];
  if (r.kind === 'page-request') {
    parts.push(`PRG ${r.prgIndex}${r.last ? ' (last)' : ''}`);
    parts.push(`${r.priv ? 'privileged' : 'unprivileged'} ${r.read ? 'R' : ''}${r.write ? 'W' : ''}${r.exec ? 'X' : ''} access at page ${hex(r.addr)}`);
  } else {
    parts.push(`${r.priv ? 'privileged' : 'unprivileged'} ${r.exec ? 'instruction fetch' : r.read ? 'read' : 'write'} at ${hex(r.addr)}`);
    if (r.cls) parts.push(`stage ${r.s2 ? 2 : 1}, class ${r.cls}`);
    if (r.ipa !== null) parts.push(`IPA ${hex(r.ipa)}`);
    if (r.fetchAddr !== null) parts.push(`fetch address ${hex(r.fetchAddr)}`);
    if (r.stall) parts.push(`stalled, STAG ${hex(r.stag)}`);
  }
  if (r.master) parts.push(`master ${r.master}`);
  return parts.join(', ');
}

// ---- recoverable faults -------------------------------------------------------------------------

/** The domain a fault with (or without) a PASID hits. */
function faultDomain(master: ArmSmmuMaster, fault: IopfFault): IommuDomain | null {
  const group = devIommu(master.dev)?.group;
  if (!group) return null;
  const prm = fault.fault.prm;
  if ((prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) !== 0) return group.pasidArray.get(prm.pasid)?.domain ?? null;
  return group.domain;
}

function responseFor(fault: IopfFault, code: IommuPageResponse['code']): IommuPageResponse {
  return { pasid: fault.fault.prm.pasid, grpid: fault.fault.prm.grpid, code };
}

/** Stalls handed to a domain's fault handler and not answered yet, per domain. */
const handlerStalls = new WeakMap<IommuDomain, Set<(code: IommuPageResponse['code']) => void>>();

/**
 * Answer INVALID (CMD_RESUME abort) every stall still waiting on `domain`'s fault handler: the domain
 * is being freed, and a handler that has not answered by now never will on its behalf.
 */
export function armSmmuAnswerDomainStalls(domain: IommuDomain): number {
  const set = handlerStalls.get(domain);
  if (!set) return 0;
  const all = [...set];
  for (const answer of all) answer(IOMMU_PAGE_RESP_INVALID);
  handlerStalls.delete(domain);
  return all.length;
}

/**
 * Hand a recoverable fault (stall or page request) to whoever can resolve it; returns 0 when a handler
 * took it (it answers later), or the errno after answering INVALID because nobody can.
 * As arm-smmu-v3 calls it
 */
// kernel: iommu_report_device_fault() [io-pgfault.c]
export function armSmmuReportDeviceFault(master: ArmSmmuMaster, fault: IopfFault): Promise<0 | Errno> {
  const domain = faultDomain(master, fault);
  const prm = fault.fault.prm;
  if (domain && domain.cookie.type === 'fault-handler') {
    // A fault-handler cookie answers each group on its last request.
    if ((prm.flags & IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE) === 0) return faultResult(0);
    const flags = (prm.perm & IOMMU_FAULT_PERM_WRITE) !== 0 ? IOMMU_FAULT_WRITE : IOMMU_FAULT_READ;
    // Answered once: by the handler, or INVALID when the domain is freed first (the stall must not
    // outlive the domain whose handler was to answer it).
    let pending = handlerStalls.get(domain);
    if (!pending) handlerStalls.set(domain, (pending = new Set()));
    const set = pending;
    const answer = (code: IommuPageResponse['code']): void => {
      if (!set.delete(answer)) return;
      armSmmuPageResponse(master, fault, responseFor(fault, code));
    };
    set.add(answer);
    // The handler runs off the event thread, as the IOPF workqueue would run it.
    void (async () => {
      let code: IommuPageResponse['code'] = IOMMU_PAGE_RESP_INVALID;
      try {
        const verdict = await reportIommuFault(domain, master.dev, prm.addr, flags);
        // Retry only when the handler asks for it: a "handled" stall is terminated.
        code = verdict === 'EAGAIN' ? IOMMU_PAGE_RESP_SUCCESS : IOMMU_PAGE_RESP_INVALID;
      } catch (e) {
        master.smmu.log.err(master.dev.name, `fault handler threw: ${e instanceof Error ? e.message : String(e)}`, LOG_NS);
      }
      answer(code);
    })();
    return faultResult(0);
  }
  // Everything else goes to the core's I/O page-fault path (issue 7): it buffers partial requests,
  // hands complete groups to the domain's iopf handler or the device's fault handler, and answers
  // through the pageResponse op, INVALID at once when nobody can resolve the fault.
  return iommuReportDeviceFault(master.dev, fault);
}

/**
 * Answer a recoverable fault: CMD_RESUME (retry or abort) for a stalled transaction, CMD_PRI_RESP for
 * a page request. No CMD_SYNC: neither needs one.
 */
// The commands a page response issues, filled in for each: issueCmd encodes a command before it
// returns (the queue keeps the encoded words, never the entry).
const PRI_RESP_FIELDS = { sid: 0, ssid: 0, grpid: 0, resp: 0 };
const PRI_RESP_ENT: ArmSmmuCmdqEnt = { opcode: CMDQ_OP_PRI_RESP, substreamValid: false, pri: PRI_RESP_FIELDS };
const RESUME_FIELDS = { sid: 0, stag: 0, resp: 0 };
const RESUME_ENT: ArmSmmuCmdqEnt = { opcode: CMDQ_OP_RESUME, resume: RESUME_FIELDS };

// kernel: arm_smmu_page_response() [arm-smmu-v3.c]
export function armSmmuPageResponse(master: ArmSmmuMaster, evt: IopfFault, resp: IommuPageResponse): void {
  const smmu = master.smmu;
  const sid = master.streams[0];
  if (sid === undefined) throw new KernelError('ENODEV', `${master.dev.name} has no StreamID`);
  if (master.priEnabled) {
    const prm = evt.fault.prm;
    const pasidValid = (prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) !== 0;
    const code = resp.code === IOMMU_PAGE_RESP_SUCCESS ? PRI_RESP_SUCC : resp.code === IOMMU_PAGE_RESP_FAILURE ? PRI_RESP_FAIL : PRI_RESP_DENY;
    const cmd = PRI_RESP_ENT;
    const pri = PRI_RESP_FIELDS;
    cmd.substreamValid = pasidValid;
    pri.sid = sid;
    pri.ssid = pasidValid ? resp.pasid : 0;
    pri.grpid = resp.grpid;
    pri.resp = code;
    smmu.eventStats.priResponses++;
    void smmu.issueCmd(cmd);
    return;
  }
  if (!master.stallEnabled) {
    smmu.warn(`page response for ${master.dev.name}, which neither stalls nor uses PRI`);
    return;
  }
  const retry = resp.code === IOMMU_PAGE_RESP_SUCCESS;
  if (retry) smmu.eventStats.resumeRetry++;
  else smmu.eventStats.resumeAbort++;
  const cmd = RESUME_ENT;
  RESUME_FIELDS.sid = sid;
  RESUME_FIELDS.stag = resp.grpid;
  RESUME_FIELDS.resp = retry ? CMDQ_RESUME_0_RESP_RETRY : CMDQ_RESUME_0_RESP_ABORT;
  void smmu.issueCmd(cmd);
}

// ---- event queue --------------------------------------------------------------------------------

/** Event IDs a guest sees (the uAPI's list: C_BAD_STE, F_STREAM_DISABLED, C_BAD_SUBSTREAMID, C_BAD_CD, F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION). */
const ARM_SMMU_VEVENT_IDS = new Set([
  EVT_ID_BAD_STE_CONFIG,
  EVT_ID_STREAM_DISABLED_FAULT,
  EVT_ID_BAD_SUBSTREAMID_CONFIG,
  EVT_ID_BAD_CD_CONFIG,
  EVT_ID_TRANSLATION_FAULT,
  EVT_ID_ADDR_SIZE_FAULT,
  EVT_ID_ACCESS_FAULT,
  EVT_ID_PERMISSION_FAULT,
]);

/**
 * The event with its SID replaced by the guest's, to the vIOMMU's vEVENTQ; the errno when there is
 * no vEVENTQ (the event is then dumped on the host).
 */
// kernel: arm_vmaster_report_event() [arm-smmu-v3-iommufd.c]
function armVmasterReportEvent(vmaster: ArmSmmuVmaster, evt: Uint32Array): 0 | Errno {
  const rec = evt.slice(0, EVTQ_ENT_WORDS);
  EVTQ_0_SID.set(rec, vmaster.vsid);
  try {
    vmaster.report(rec);
    return 0;
  } catch (e) {
    return isKernelError(e) ? e.errno : 'EIO';
  }
}

/** 0 when the event was handed to a handler; an errno to dump it. */
// kernel: arm_smmu_handle_evt() [arm-smmu-v3.c]
function armSmmuHandleEvt(evt: Uint32Array, report: ArmSmmuEventReport, master: ArmSmmuMaster | null): Promise<0 | Errno> {
  // The record's fields read here come from the words (the report decodes each on every read);
  // `master` is the record's StreamID's, looked up once by the thread.
  const id = EVTQ_0_ID.get(evt);
  // A nested master's events (not stage 2, not stalls) belong to its guest: up with the vSID.
  const vmaster = master?.vmaster;
  if (vmaster && !EVTQ_1_S2.isSet(evt) && !EVTQ_1_STALL.isSet(evt) && ARM_SMMU_VEVENT_IDS.has(id)) {
    report.outcome = `reported to the guest as vSID 0x${vmaster.vsid.toString(16)}`;
    return faultResult(armVmasterReportEvent(vmaster, evt));
  }
  if (id !== EVT_ID_TRANSLATION_FAULT && id !== EVT_ID_ADDR_SIZE_FAULT && id !== EVT_ID_ACCESS_FAULT && id !== EVT_ID_PERMISSION_FAULT) {
    report.outcome = id === EVT_ID_BAD_STE_CONFIG ? 'dumped (bad STE)' : 'dumped';
    return faultResult('EOPNOTSUPP');
  }
  // A stalled stage 2 fault (STE.S2S, set for stall-capable masters) is reported like a stage 1
  // stall, so that it is answered (mainline; v6.1 returned -EFAULT for every stage 2 event before
  // looking at Stall, and never set S2S). Other stage 2 faults are pinned: not recoverable.
  if (EVTQ_1_S2.isSet(evt) && !EVTQ_1_STALL.isSet(evt)) {
    report.outcome = 'dumped (stage 2 fault)';
    notifyUnrecoverable(master, report);
    return faultResult('EFAULT');
  }
  if (!EVTQ_1_STALL.isSet(evt)) {
    report.outcome = 'dumped (terminated)';
    notifyUnrecoverable(master, report);
    return faultResult('EOPNOTSUPP');
  }
  let perm = EVTQ_1_RnW.isSet(evt) ? IOMMU_FAULT_PERM_READ : IOMMU_FAULT_PERM_WRITE;
  if (EVTQ_1_InD.isSet(evt)) perm |= IOMMU_FAULT_PERM_EXEC;
  if (EVTQ_1_PnU.isSet(evt)) perm |= IOMMU_FAULT_PERM_PRIV;
  const ssv = EVTQ_0_SSV.isSet(evt);
  const fault = iopfPageRequest(
    IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE | (ssv ? IOMMU_FAULT_PAGE_REQUEST_PASID_VALID : 0),
    ssv ? EVTQ_0_SSID.get(evt) : 0,
    EVTQ_1_STAG.get(evt),
    perm,
    EVTQ_2_ADDR_LO.get(evt) + EVTQ_2_ADDR_HI.get(evt) * TWO_32,
  );
  if (!master) {
    report.outcome = 'no master for the StreamID';
    return faultResult('EINVAL');
  }
  // The event thread writes the outcome once the pass's reports settle (stallOutcome): no
  // continuation made per stall.
  return armSmmuReportDeviceFault(master, fault);
}

/** The outcome of a stall handed to armSmmuReportDeviceFault, from its result. */
function stallOutcome(r: 0 | Errno): string {
  return r === 0 ? 'stall reported to the fault handler' : 'stall aborted: no handler';
}

/** The 5.x fault reason of a terminated translation event (kernel: the reasons arm_smmu_handle_evt() gave). */
function unrecoverableReason(id: number): number {
  switch (id) {
    case EVT_ID_TRANSLATION_FAULT:
      return IOMMU_FAULT_REASON_PTE_FETCH;
    case EVT_ID_ADDR_SIZE_FAULT:
      return IOMMU_FAULT_REASON_OOR_ADDRESS;
    case EVT_ID_ACCESS_FAULT:
      return IOMMU_FAULT_REASON_ACCESS;
    case EVT_ID_PERMISSION_FAULT:
      return IOMMU_FAULT_REASON_PERMISSION;
    default:
      return IOMMU_FAULT_REASON_UNKNOWN;
  }
}

/**
 * A terminated fault still reaches a fault-handler cookie and the master's device fault handler, as
 * an unrecoverable fault record (to dump the master's state).
 */
function notifyUnrecoverable(master: ArmSmmuMaster | null, report: ArmSmmuEventReport): void {
  if (!master) return;
  if (devFaultParam(master.dev)?.handler) {
    let perm = report.read ? IOMMU_FAULT_PERM_READ : IOMMU_FAULT_PERM_WRITE;
    if (report.exec) perm |= IOMMU_FAULT_PERM_EXEC;
    if (report.priv) perm |= IOMMU_FAULT_PERM_PRIV;
    const event = {
      reason: unrecoverableReason(report.id),
      flags: IOMMU_FAULT_UNRECOV_ADDR_VALID | (report.ssid !== null ? IOMMU_FAULT_UNRECOV_PASID_VALID : 0) | (report.fetchAddr !== null ? IOMMU_FAULT_UNRECOV_FETCH_ADDR_VALID : 0),
      pasid: report.ssid ?? 0,
      perm,
      addr: report.addr,
      fetchAddr: report.fetchAddr ?? 0,
    };
    void Promise.resolve(iommuReportDeviceFault(master.dev, { fault: { type: 'dma-unrecov', event } })).catch((e: unknown) => {
      master.smmu.log.err(master.dev.name, `device fault handler threw: ${e instanceof Error ? e.message : String(e)}`, LOG_NS);
    });
  }
  const group = devIommu(master.dev)?.group;
  const domain = report.ssid !== null ? group?.pasidArray.get(report.ssid)?.domain : group?.domain;
  if (!domain || domain.cookie.type !== 'fault-handler') return;
  const flags = report.write ? IOMMU_FAULT_WRITE : IOMMU_FAULT_READ;
  void Promise.resolve(reportIommuFault(domain, master.dev, report.addr, flags)).catch((e: unknown) => {
    master.smmu.log.err(master.dev.name, `fault handler threw: ${e instanceof Error ? e.message : String(e)}`, LOG_NS);
  });
}

const PASS_TURN: Promise<void> = Promise.resolve();

/**
 * The entry the threads read into, one per queue kind for every SMMU: each entry is handled (its
 * words read into the report, the fault, the command) before the thread next waits, so no thread's
 * entry outlives its turn, and a typed array made per interrupt costs more than the entries it reads.
 */
const evtScratch = new Uint32Array(EVTQ_ENT_WORDS);
const priqScratch = new Uint32Array(PRIQ_ENT_WORDS);

/**
 * The results of a pass, as `Promise.all(results)` gives them and when: when every one is already
 * known (the common case: the core took each fault synchronously), two turns stand for Promise.all's
 * two (its reactions to the elements, then its own resolution), so the thread resumes at the same
 * point among the other jobs; `out` is filled and returned. Otherwise Promise.all itself.
 */
function passResults(results: Promise<0 | Errno>[], out: (0 | Errno)[]): Promise<(0 | Errno)[]> {
  out.length = 0;
  for (let i = 0; i < results.length; i++) {
    const v = settledFaultResult(results[i]);
    if (v === undefined) return Promise.all(results);
    out.push(v);
  }
  return afterTurn(out);
}

/** `v`, a turn from now (the caller's await takes the second). */
async function afterTurn<T>(v: T): Promise<T> {
  await PASS_TURN;
  return v;
}

// kernel: arm_smmu_evtq_thread() [arm-smmu-v3.c]
export async function armSmmuEvtqThread(smmu: ArmSmmuDevice): Promise<IrqReturn> {
  const q = smmu.evtq;
  const evt = evtScratch;
  const reports: ArmSmmuEventReport[] = [];
  const results: Promise<0 | Errno>[] = [];
  const settled: (0 | Errno)[] = [];
  do {
    // Every record of the pass is handled (each reads the record before it waits), then the pass
    // waits for them together: the faults it reported reach the IOPF queue as one batch.
    while (q.removeRaw(evt)) {
      const master = smmu.streams.get(EVTQ_0_SID.get(evt)) ?? null;
      const report = armSmmuDecodeEvent(evt, smmu.port.now(), master?.dev.name ?? null);
      record(smmu, report, eventName(EVTQ_0_ID.get(evt)));
      reports.push(report);
      results.push(armSmmuHandleEvt(evt, report, master));
    }
    if (results.length > 0) {
      const rets = await passResults(results, settled);
      // One turn for the pass where each stall's result used to take one of its own: the IOPF work
      // item the pass queued still starts before the thread reads PROD again.
      await PASS_TURN;
      for (let i = 0; i < rets.length; i++) {
        const report = reports[i];
        // Every other path of armSmmuHandleEvt wrote its outcome before returning.
        if (report.outcome === '') report.outcome = stallOutcome(rets[i]);
        if (rets[i] === 0 || !ratelimitOk(smmu)) continue;
        smmu.info(`event 0x${report.id.toString(16).padStart(2, '0')} received: ${armSmmuDescribeEvent(report)}`);
        for (const qw of report.raw) smmu.info(`\t${qw}`);
      }
      reports.length = 0;
      results.length = 0;
    }
    // Not much to do about an overflow but say so.
    if (q.syncProdIn()) {
      smmu.eventStats.evtqOverflows++;
      smmu.err('EVTQ overflow detected -- events lost');
    }
  } while (!q.empty());
  // Acknowledge the overflow: we are up to speed.
  q.syncConsOvf();
  return 'handled';
}

// ---- PRI queue ----------------------------------------------------------------------------------

// kernel: arm_smmu_handle_ppr() [arm-smmu-v3.c]
function armSmmuHandlePpr(smmu: ArmSmmuDevice, evt: Uint32Array): Promise<unknown> {
  const sid = PRIQ_0_SID.get(evt);
  const ssv = PRIQ_0_SSID_V.isSet(evt);
  const ssid = ssv ? PRIQ_0_SSID.get(evt) : 0;
  const last = PRIQ_0_PRG_LAST.isSet(evt);
  const grpid = PRIQ_1_PRG_IDX.get(evt);
  const read = PRIQ_0_PERM_READ.isSet(evt);
  const write = PRIQ_0_PERM_WRITE.isSet(evt);
  const master = smmu.streams.get(sid) ?? null;
  const report = new EventReport('page-request', smmu.port.now(), master?.dev.name ?? null, evt);
  record(smmu, report);
  // A Stop Marker (Last, no access, with a PASID) is not a request: nothing answers it.
  if (ssv && last && !read && !write) {
    report.outcome = 'stop marker discarded';
    return faultResult(0);
  }
  if (master?.iopfEnabled) {
    let perm = 0;
    if (read) perm |= IOMMU_FAULT_PERM_READ;
    if (write) perm |= IOMMU_FAULT_PERM_WRITE;
    if (PRIQ_0_PERM_EXEC.isSet(evt)) perm |= IOMMU_FAULT_PERM_EXEC;
    if (PRIQ_0_PERM_PRIV.isSet(evt)) perm |= IOMMU_FAULT_PERM_PRIV;
    const fault = iopfPageRequest(
      (ssv ? IOMMU_FAULT_PAGE_REQUEST_PASID_VALID : 0) | (last ? IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE : 0),
      ssid,
      grpid,
      perm,
      PRIQ_1_ADDR_MASK.get(evt),
    );
    // Partial requests are reported too: the core keeps them until the group's last one.
    return armSmmuReportDeviceFault(master, fault).then((r) => {
      if (!last) report.outcome = r === 0 ? 'partial request (answered with its group)' : 'partial request denied: no handler';
      else report.outcome = r === 0 ? 'reported to the fault handler' : 'denied: no handler';
    });
  }
  smmu.info(`unexpected PRI request received: ${armSmmuDescribeEvent(report)}`);
  if (last) {
    const cmd: ArmSmmuCmdqEnt = { opcode: CMDQ_OP_PRI_RESP, substreamValid: ssv, pri: { sid, ssid, grpid, resp: PRI_RESP_DENY } };
    smmu.eventStats.priResponses++;
    return smmu.issueCmd(cmd).then(() => {
      report.outcome = 'denied';
    });
  }
  report.outcome = 'ignored (not last)';
  return faultResult(0);
}

// kernel: arm_smmu_priq_thread() [arm-smmu-v3.c]
export async function armSmmuPriqThread(smmu: ArmSmmuDevice): Promise<IrqReturn> {
  const q = smmu.priq;
  if (!q) return 'none';
  const evt = priqScratch;
  const results: Promise<unknown>[] = [];
  do {
    // Every request of the pass is handled (each reads the entry before it waits), then the pass
    // waits for them together: the groups it completed reach the IOPF queue as one batch.
    while (q.removeRaw(evt)) results.push(armSmmuHandlePpr(smmu, evt));
    if (results.length > 0) {
      await Promise.all(results);
      results.length = 0;
    }
    if (q.syncProdIn()) {
      smmu.eventStats.priqOverflows++;
      smmu.err('PRIQ overflow detected -- requests lost');
    }
  } while (!q.empty());
  q.syncConsOvf();
  return 'handled';
}

// ---- global errors ------------------------------------------------------------------------------

/** (hard interrupt context) */
// kernel: arm_smmu_gerror_handler() [arm-smmu-v3.c]
export function armSmmuGerrorHandler(smmu: ArmSmmuDevice): IrqReturn {
  const gerror = smmu.base.readl(ARM_SMMU_GERROR);
  const gerrorn = smmu.base.readl(ARM_SMMU_GERRORN);
  const active = (gerror ^ gerrorn) & GERROR_ERR_MASK;
  if (active === 0) return 'none';
  smmu.eventStats.gerrors++;
  smmu.warn(`unexpected global error reported (0x${active.toString(16).padStart(8, '0')}), this could be serious`);
  if (active & GERROR_SFM_ERR) {
    smmu.err('device has entered Service Failure Mode!');
    void smmu.deviceDisable().catch(() => undefined);
  }
  if (active & GERROR_MSI_GERROR_ABT_ERR) smmu.warn('GERROR MSI write aborted');
  if (active & GERROR_MSI_PRIQ_ABT_ERR) smmu.warn('PRIQ MSI write aborted');
  if (active & GERROR_MSI_EVTQ_ABT_ERR) smmu.warn('EVTQ MSI write aborted');
  if (active & GERROR_MSI_CMDQ_ABT_ERR) smmu.warn('CMDQ MSI write aborted');
  if (active & GERROR_PRIQ_ABT_ERR) smmu.err('PRIQ write aborted -- events may have been lost');
  if (active & GERROR_EVTQ_ABT_ERR) smmu.err('EVTQ write aborted -- events may have been lost');
  if (active & GERROR_CMDQ_ERR) smmu.cmdq.skipErr();
  smmu.base.writel(gerror, ARM_SMMU_GERRORN);
  return 'handled';
}

// kernel: arm_smmu_combined_irq_handler() [arm-smmu-v3.c]
export function armSmmuCombinedIrqHandler(smmu: ArmSmmuDevice): IrqReturn {
  armSmmuGerrorHandler(smmu);
  return 'wake-thread';
}

// kernel: arm_smmu_combined_irq_thread() [arm-smmu-v3.c]
export async function armSmmuCombinedIrqThread(smmu: ArmSmmuDevice): Promise<IrqReturn> {
  await armSmmuEvtqThread(smmu);
  if ((smmu.features & ARM_SMMU_FEAT_PRI) !== 0) await armSmmuPriqThread(smmu);
  return 'handled';
}
