/**
 * The transaction engine of an SMMUv3: what happens to a transaction, ATS Translation Request or
 * Page Request an upstream master submits to the SMMU's DMA port. The register file (smmu-v3.ts)
 * owns the state it reads (CR0ACK, the effective GBPA) and the units it drives; this file holds
 * the work, as hw/smmu-v2/transactions.ts does for the v1/v2 model.
 *
 * Supports: GBPA bypass/abort while CR0ACK.SMMUEN == 0 (so in-flight DMA follows GBPA from the
 * moment CR0ACK changes); TLB hits translated synchronously without allocation; misses through the
 * walker; accesses crossing a 4KB page split into pages; faults terminated (abort, or RAZ/WI with
 * CD.A == 0), recorded, or stalled until CMD_RESUME / CMD_STALL_TERM (stalls.ts holds them);
 * F_UUT for malformed transactions; ATS Translated transactions checked against STE.EATS when
 * CR0.ATSCHK == 1 (F_TRANSL_FORBIDDEN), with stage 2 applied for split-stage ATS; ATS Translation
 * Requests per STE.EATS with F_BAD_ATS_TREQ; Page Requests into the PRI queue.
 * Does not support: transaction ordering beyond what a stall imposes, memory-attribute overrides.
 */
import { vtime } from '../vtime.js';
import createDebug from 'debug';
import { DmaRequestRecord, type AtsCompletion, type AtsRequest, type DmaCompletion, type DmaDone, type DmaPort, type DmaRequest, type PageRequest } from '../dma.js';
import type { Scheduler } from '../scheduler.js';
import { ACCESS_INSTR, ACCESS_PRIV, ACCESS_WRITE } from '../walker/result.js';
import type { ConfigCache } from './config.js';
import { EventRecord, type EventQueue } from './events.js';
import * as F from './formats.js';
import type { ResolvedOptions } from './options.js';
import { OUT_ABORT, Outcome } from './outcome.js';
import type { PriQueue } from './priq.js';
import * as R from './regs.js';
import type { StallTracker } from './stalls.js';
import { effectiveAccess, type Translator } from './translate.js';

const log = createDebug('iommu:hw:smmu-v3');

/** No ACCESS_* flag: an unprivileged data read. */
const ACCESS_NONE = 0;

export interface SmmuV3Stats {
  /** Transactions submitted (each 4KB piece of a split one counts once). */
  transactions: number;
  /** Passed through untranslated (GBPA bypass, bypass STE, ATS Translated). */
  bypassed: number;
  /** Translated and forwarded. */
  translated: number;
  aborted: number;
  /** Terminated by a Translation-related fault (abort or RAZ/WI). */
  faulted: number;
  stalled: number;
  resumed: number;
  atsRequests: number;
  pageRequests: number;
}

/** The register state transactions follow, kept current by the register file. */
export interface TransactionRegs {
  cr0ack: number;
  /** GBPA as it applies to traffic (an update takes effect when the UPDATE handshake completes). */
  gbpaEffective: number;
}

/** What the register file gives the transaction engine. */
export interface TransactionEngineDeps {
  name: string;
  opts: ResolvedOptions;
  regs: TransactionRegs;
  scheduler: Scheduler;
  downstream: DmaPort;
  translator: Translator;
  configCache: ConfigCache;
  events: EventQueue;
  priq: PriQueue;
  stalls: StallTracker;
  stats: SmmuV3Stats;
}

export class TransactionEngine {
  private readonly name: string;
  private readonly opts: ResolvedOptions;
  private readonly regs: TransactionRegs;
  private readonly scheduler: Scheduler;
  private readonly downstream: DmaPort;
  private readonly translator: Translator;
  private readonly configCache: ConfigCache;
  private readonly events: EventQueue;
  private readonly priq: PriQueue;
  private readonly stalls: StallTracker;
  private readonly stats: SmmuV3Stats;
  private readonly out = new Outcome();
  /** Step labels, made once (a label built per event would be a string per transaction). */
  private readonly atsLabel: string;
  private readonly resumeLabel: string;

  constructor(deps: TransactionEngineDeps) {
    this.name = deps.name;
    this.opts = deps.opts;
    this.regs = deps.regs;
    this.scheduler = deps.scheduler;
    this.downstream = deps.downstream;
    this.translator = deps.translator;
    this.configCache = deps.configCache;
    this.events = deps.events;
    this.priq = deps.priq;
    this.stalls = deps.stalls;
    this.stats = deps.stats;
    this.atsLabel = `${this.name} ATS TR`;
    this.resumeLabel = `${this.name} RESUME retry`;
  }

  /**
   * TLB-hit translation of one access (ACCESS_* flags from hw/walker/result.ts; `ssid` -1 for
   * none): the output PA, or -1 when the SMMU would have to fetch configuration, walk, abort or
   * fault. While SMMUEN is clear, GBPA decides (bypass: the address itself; abort: -1).
   * Synchronous and allocation-free.
   */
  translateFast(streamId: number, ssid: number, addr: number, access: number): number {
    if (!R.CR0_SMMUEN.isSet(this.regs.cr0ack)) return R.GBPA_ABORT.isSet(this.regs.gbpaEffective) ? -1 : addr;
    return this.translator.translateFast(streamId, ssid >= 0, ssid < 0 ? 0 : ssid, addr, access);
  }

  submit(req: DmaRequest, done: DmaDone): void {
    const { addr, len } = req;
    if (!Number.isSafeInteger(addr) || addr < 0 || !Number.isSafeInteger(len) || len <= 0 ||
      (req.write && (req.data === undefined || req.data.length !== len))) {
      this.unsupported(req, done);
      return;
    }
    if (req.translated) {
      this.translatedTransaction(req, done);
      return;
    }
    if (!R.CR0_SMMUEN.isSet(this.regs.cr0ack)) {
      this.stats.transactions++;
      if (R.GBPA_ABORT.isSet(this.regs.gbpaEffective)) {
        this.stats.aborted++;
        done({ status: 'abort', detail: `${this.name}: SMMU disabled and GBPA.ABORT set` });
        return;
      }
      this.stats.bypassed++;
      this.forward(req, addr, done);
      return;
    }
    // (addr & 0xfff: the offset in its 4KB page by integer bits, exact for any safe non-negative address.)
    if ((addr & 0xfff) + len > 4096) {
      this.splitTransaction(req, done);
      return;
    }
    this.stats.transactions++;
    const access = accessOf(req);
    const pa = this.translator.translateFast(req.streamId, req.ssidValid, req.ssid, addr, access);
    if (pa >= 0) {
      this.stats.translated++;
      this.forward(req, pa, done);
      return;
    }
    this.slowPath(req, access, done);
  }

  private forward(req: DmaRequest, pa: number, done: DmaDone): void {
    if (pa === req.addr && !req.translated) {
      this.downstream.submit(req, done);
      return;
    }
    // The request as it leaves the SMMU (an object spread of a request costs several times more).
    this.downstream.submit(new DmaRequestRecord(req.master, req.streamId, req.ssid, req.ssidValid, pa, req.len, req.write, req.exec, req.priv, false, req.data), done);
  }

  private slowPath(req: DmaRequest, access: number, done: DmaDone): void {
    const out = this.out;
    if (this.translator.translate(req.streamId, req.ssidValid, req.ssid, req.addr, access, out)) {
      if (out.bypass) this.stats.bypassed++;
      else this.stats.translated++;
      this.forward(req, out.pa, done);
      return;
    }
    this.terminate(req, access, out, done);
  }

  /** A transaction the SMMU will not pass on: abort, fault (record/stall/terminate). */
  private terminate(req: DmaRequest, access: number, out: Outcome, done: DmaDone): void {
    if (out.kind === OUT_ABORT) {
      this.stats.aborted++;
      if (out.eventType !== 0) this.record(req, access, out, false, 0);
      done({ status: 'abort', detail: `${this.name}: ${out.detail}` });
      return;
    }
    if (out.stall) {
      const stag = this.stalls.hold(req.streamId, req, done, this.scheduler.now);
      if (stag >= 0) {
        this.stats.stalled++;
        this.record(req, access, out, true, stag);
        return;
      }
      if (log.enabled) log('%s %s: STALL_MAX stalled transactions held; terminating instead', vtime(this.scheduler.now), this.name);
    }
    this.stats.faulted++;
    if (out.record) this.record(req, access, out, false, 0);
    // The reason is built only for a transaction that completes with it (a stall carries none).
    const detail = `${this.name}: ${out.detail}`;
    if (out.abort) done({ status: 'fault', detail });
    else done(razWi(req, `${detail} (terminated RAZ/WI: CD.A == 0)`));
  }

  private record(req: DmaRequest, access: number, out: Outcome, stall: boolean, stag: number): void {
    const rec = new EventRecord(out.eventType, req.streamId);
    const ste = this.configCache.cachedSte(req.streamId);
    const acc = ste !== undefined ? effectiveAccess(ste, access) : access;
    rec.ssv = req.ssidValid;
    rec.ssid = out.eventType === F.C_BAD_SUBSTREAMID && out.reportSsid >= 0 ? out.reportSsid : req.ssid;
    if (out.eventType === F.C_BAD_SUBSTREAMID) rec.ssv = true;
    rec.rnw = !req.write;
    rec.pnu = (acc & ACCESS_PRIV) !== 0;
    rec.ind = !req.write && (acc & ACCESS_INSTR) !== 0;
    rec.s2 = out.s2;
    rec.cls = out.cls;
    rec.ttrnw = out.cls === F.CLASS_TT;
    rec.inputAddr = req.addr;
    rec.ipa = out.ipa;
    rec.fetchAddr = out.fetchAddr;
    rec.stall = stall;
    rec.stag = stag;
    this.events.post(rec);
  }

  /** F_UUT: a transaction the SMMU cannot make sense of. */
  private unsupported(req: DmaRequest, done: DmaDone): void {
    this.stats.transactions++;
    this.stats.aborted++;
    const rec = new EventRecord(F.F_UUT, req.streamId >>> 0);
    rec.ssv = req.ssidValid;
    rec.ssid = req.ssid;
    rec.rnw = !req.write;
    rec.pnu = req.priv;
    rec.ind = !req.write && req.exec;
    rec.inputAddr = Number.isSafeInteger(req.addr) && req.addr >= 0 ? req.addr : 0;
    this.events.post(rec);
    done({ status: 'abort', detail: `${this.name}: unsupported upstream transaction (addr ${req.addr}, len ${req.len})` });
  }

  /** A transaction crossing a 4KB boundary goes through as one access per page, in order. */
  private splitTransaction(req: DmaRequest, done: DmaDone): void {
    const out = req.write ? undefined : new Uint8Array(req.len);
    let offset = 0;
    let firstPa: number | undefined;
    const next = (): void => {
      if (offset >= req.len) {
        done(out ? { status: 'ok', data: out, pa: firstPa } : { status: 'ok', pa: firstPa });
        return;
      }
      const addr = req.addr + offset;
      const n = Math.min(req.len - offset, 4096 - (addr % 4096));
      const piece: DmaRequest = { ...req, addr, len: n, data: req.data?.subarray(offset, offset + n) };
      const start = offset;
      this.submit(piece, (c: DmaCompletion) => {
        if (c.status !== 'ok') {
          done(c);
          return;
        }
        if (out && c.data) out.set(c.data, start);
        firstPa ??= c.pa;
        offset += n;
        next();
      });
    };
    next();
  }

  /** PCIe AT == translated: checked against STE.EATS only when CR0.ATSCHK is set. */
  private translatedTransaction(req: DmaRequest, done: DmaDone): void {
    this.stats.transactions++;
    const out = this.out;
    out.reset();
    const forbid = (why: string): void => {
      this.stats.aborted++;
      out.setAbort(F.F_TRANSL_FORBIDDEN, why);
      this.record(req, accessOf(req), out, false, 0);
      done({ status: 'abort', detail: `${this.name}: ${why}` });
    };
    if (!this.opts.ats) return forbid('ATS Translated transaction but the SMMU does not implement ATS');
    if (!R.CR0_SMMUEN.isSet(this.regs.cr0ack)) return forbid('ATS Translated transaction while SMMUEN == 0');
    if (!R.CR0_ATSCHK.isSet(this.regs.cr0ack)) {
      this.stats.bypassed++;
      this.forward(req, req.addr, done);
      return;
    }
    const ste = this.configCache.ste(req.streamId, out);
    if (ste === null || ste.abort) {
      this.stats.aborted++;
      done({ status: 'abort', detail: `${this.name}: ATS Translated transaction: ${ste === null ? out.detail : 'STE aborts all traffic'}` });
      return;
    }
    if (ste.eats === F.EATS_ABT) return forbid(`StreamID ${req.streamId} does not allow ATS Translated traffic (EATS == 0b00)`);
    if (ste.eats === F.EATS_TRANS) {
      this.stats.bypassed++;
      this.forward(req, req.addr, done);
      return;
    }
    // Split-stage ATS: the address is an IPA.
    const access = accessOf(req);
    if (this.translator.translateStage2(ste, req.addr, access, out)) {
      this.stats.translated++;
      this.forward(req, out.pa, done);
      return;
    }
    this.terminate(req, access, out, done);
  }

  // ===========================================================================================
  // Stalls
  // ===========================================================================================

  /** CMD_RESUME: retry or terminate the stalled transaction (StreamID, STAG). */
  resume(sid: number, stag: number, retry: boolean, abort: boolean): void {
    const t = this.stalls.take(sid, stag);
    if (t === undefined) {
      if (log.enabled) log('%s %s: CMD_RESUME StreamID %d STAG %d matches no stalled transaction', vtime(this.scheduler.now), this.name, sid, stag);
      return;
    }
    this.events.forgetStall(sid, stag);
    if (retry) {
      this.stats.resumed++;
      this.scheduler.schedule(this.opts.timing.resumeNs, () => this.submit(t.req, t.done), this.resumeLabel);
      return;
    }
    if (abort) t.done({ status: 'abort', detail: `${this.name}: stalled transaction terminated by CMD_RESUME (abort)` });
    else t.done(razWi(t.req, `${this.name}: stalled transaction terminated by CMD_RESUME (RAZ/WI)`));
  }

  /** CMD_STALL_TERM: terminate every stalled transaction of a StreamID. */
  stallTerm(sid: number): void {
    for (const t of this.stalls.takeStream(sid)) {
      this.events.forgetStall(t.sid, t.stag);
      t.done({ status: 'abort', detail: `${this.name}: stalled transaction terminated by CMD_STALL_TERM` });
    }
  }

  // ===========================================================================================
  // PCIe: ATS and PRI
  // ===========================================================================================

  translate(req: AtsRequest, done: (c: AtsCompletion) => void): void {
    this.stats.atsRequests++;
    this.scheduler.schedule(this.opts.timing.atsNs, () => done(this.atsRequest(req)), this.atsLabel);
  }

  private atsRequest(req: AtsRequest): AtsCompletion {
    if (!this.opts.ats) return { status: 'unsupported', detail: `${this.name} does not implement ATS` };
    if (!R.CR0_SMMUEN.isSet(this.regs.cr0ack)) return this.badTreq(req, 'ATS Translation Request while SMMUEN == 0');
    // The request is answered within this step: the engine's Outcome (and the translator's result) serve it.
    const r = this.translator.atsTranslate(req.streamId, req.ssidValid, req.ssid, req.addr, req.write, req.exec, req.priv, this.out);
    if (r.eventType === F.F_BAD_ATS_TREQ) return this.badTreq(req, r.detail);
    if (r.status !== 'ok') return { status: r.status, detail: `${this.name}: ${r.detail}` };
    return { status: 'ok', pa: r.pa, size: r.size, read: r.read, write: r.write, exec: r.exec, priv: req.priv, detail: r.detail || undefined };
  }

  /** F_BAD_ATS_TREQ recorded, the request answered Unsupported Request. */
  private badTreq(req: AtsRequest, detail: string): AtsCompletion {
    const rec = new EventRecord(F.F_BAD_ATS_TREQ, req.streamId);
    rec.ssv = req.ssidValid;
    rec.ssid = req.ssid;
    rec.rnw = !req.write;
    rec.pnu = req.priv;
    rec.ind = req.exec;
    rec.inputAddr = req.addr;
    this.events.post(rec);
    return { status: 'unsupported', detail: `${this.name}: ${detail}` };
  }

  pageRequest(req: PageRequest): void {
    this.stats.pageRequests++;
    if (!this.opts.pri) {
      if (log.enabled) log('%s %s: page request from StreamID %d dropped: no PRI support', vtime(this.scheduler.now), this.name, req.streamId);
      return;
    }
    this.priq.receive(req);
  }
}

/** ACCESS_* flags of a transaction as it arrives (before STE overrides). */
function accessOf(req: DmaRequest): number {
  return (req.write ? ACCESS_WRITE : req.exec ? ACCESS_INSTR : ACCESS_NONE) | (req.priv ? ACCESS_PRIV : 0);
}

/** A transaction terminated with RAZ/WI semantics: reads return zeros, writes are dropped. */
function razWi(req: DmaRequest, detail: string): DmaCompletion {
  return req.write ? { status: 'terminated', detail } : { status: 'terminated', data: new Uint8Array(req.len), detail };
}
