/**
 * The transaction engine of an SMMUv1/v2: what happens to a client transaction submitted to the
 * SMMU's DMA port.
 *
 * Supports: sCR0.CLIENTPD bypass; stream matching (stream-match.ts) with unmatched streams bypassed
 * (sCR0.USFCFG=0) or faulted (USF); S2CR bypass, fault (reported as USF) and translate; global
 * faults SMCF (two SMRs match), UCBF (S2CR.CBNDX beyond ID1.NUMCB) and ICF (CBAR.TYPE not
 * implemented), answered with an abort under sCR0.GFRE (GCFGFRE for configuration faults where the
 * implementation has it) and RAZ/WI otherwise; S2CR.PRIVCFG/INSTCFG overrides; translation through
 * the bank (translate.ts), the TLB-hit fast path being synchronous and allocation-free (pooled
 * downstream requests); transactions crossing a translation block split at block boundaries and
 * forwarded as several downstream accesses with one completion (the first failure, or the bytes);
 * context faults latched (faults.ts), then terminated (SCTLR.CFCFG=0: a fault with CFRE, RAZ/WI
 * without) or stalled until RESUME (stalls.ts), with HUPCF admission.
 * A nested translation's stage 2 fault is recorded in, and stalls under the SCTLR of, the stage 2
 * bank (FAR = the IPA, FSYNR0.S1CBNDX = the stage 1 bank).
 * Does not support: transaction ordering beyond what a bank's stall imposes (the downstream port
 * answers in the order it likes), SSIDs (SMMUv2 has no substreams: the SSID is ignored).
 */
import { vtime } from '../vtime.js';
import createDebug from 'debug';
import type { DmaCompletion, DmaDone, DmaPort, DmaRequest } from '../dma.js';
import { ACCESS_INSTR, ACCESS_PRIV, ACCESS_WRITE } from '../walker/index.js';
import type { ContextBank, ContextConfig } from './context-bank.js';
import { CFG_BAD_TYPE, CFG_DISABLED, CFG_INVALID, CFG_OK, CFG_UNSUPPORTED } from './context-bank.js';
import type { ContextFaultInfo } from './faults.js';
import { SGFSR_CONFIG_FAULTS, fsrBitFor, latchContextFault } from './faults.js';
import * as R from './regs.js';
import { Txn } from './stalls.js';
import type { SmmuV2State } from './state.js';
import { MATCH_CONFLICT } from './stream-match.js';
import type { Translator } from './translate.js';
import { Translation } from './translate.js';

const log = createDebug('iommu:hw:smmu-v2');

const TWO_32 = 0x1_0000_0000;
const hex = (v: number): string => `0x${v.toString(16)}`;

// Hot-path constants, taken from the declared fields once.
const CLIENTPD = R.sCR0.CLIENTPD.mask;
const S2CR_TYPE_LO = R.S2CR.TYPE.lo;
const S2CR_CBNDX_MAX = R.S2CR.CBNDX.max;
const S2CR_OVERRIDES = R.S2CR.PRIVCFG.mask | R.S2CR.INSTCFG.mask;
const FSR_FAULT_BITS = R.FSR_FAULT_BITS;

/** Forwarding slot: a reusable downstream request for the allocation-free fast path. */
class Forward {
  readonly req: DmaRequest = {
    master: '',
    streamId: 0,
    ssid: 0,
    ssidValid: false,
    addr: 0,
    len: 0,
    write: false,
    exec: false,
    priv: false,
    data: undefined,
  };
  done: DmaDone | null = null;
  readonly onDone: DmaDone;

  constructor(pool: Forward[]) {
    this.onDone = (c: DmaCompletion): void => {
      const d = this.done!;
      this.done = null;
      this.req.data = undefined;
      pool.push(this);
      d(c);
    };
  }
}

export class TransactionEngine {
  private readonly tr = new Translation();
  private readonly pool: Forward[] = [];
  private readonly canStall = new Map<string, boolean>();

  constructor(
    private readonly s: SmmuV2State,
    private readonly translator: Translator,
    private readonly downstream: DmaPort,
  ) {}

  /** Whether a master tolerates stalled transactions (from `dma-can-stall`). */
  setMasterCanStall(master: string, canStall: boolean): void {
    this.canStall.set(master, canStall);
  }

  /** Drop every held transaction with an abort (an SMMU reset loses them). */
  dropHeld(why: string): void {
    const held: Txn[] = [];
    for (const st of this.s.stallStates) {
      held.push(...st.stalled, ...st.waiting);
      st.clear();
    }
    for (const txn of held) txn.done({ status: 'abort', detail: why });
  }

  submit(req: DmaRequest, done: DmaDone): void {
    this.s.stats.transactions++;
    if ((this.s.scr0 & CLIENTPD) !== 0) {
      this.bypass(req, done);
      return;
    }
    const sid = req.streamId;
    const idx = this.s.streams.match(sid);
    if (idx < 0) {
      if (idx === MATCH_CONFLICT) this.globalFault(req, done, R.sGFSR.SMCF.mask, 'StreamID matches more than one SMR');
      else if (R.sCR0.USFCFG.isSet(this.s.scr0)) this.globalFault(req, done, R.sGFSR.USF.mask, 'unidentified StreamID (sCR0.USFCFG=1)');
      else this.bypass(req, done);
      return;
    }
    const s2cr = this.s.streams.s2cr[idx];
    const type = (s2cr >>> S2CR_TYPE_LO) & 3;
    if (type === R.S2CR_TYPE_BYPASS) {
      this.bypass(req, done);
      return;
    }
    if (type !== R.S2CR_TYPE_TRANSLATE) {
      this.globalFault(req, done, R.sGFSR.USF.mask, `stream mapping group ${idx} has S2CR.TYPE=fault`);
      return;
    }
    const cbndx = s2cr & S2CR_CBNDX_MAX;
    if (cbndx >= this.s.banks.length) {
      this.globalFault(req, done, R.sGFSR.UCBF.mask, `S2CR${idx}.CBNDX=${cbndx} is beyond ID1.NUMCB=${this.s.banks.length}`);
      return;
    }
    const access =
      (s2cr & S2CR_OVERRIDES) === 0
        ? (req.write ? ACCESS_WRITE : req.exec ? ACCESS_INSTR : 0) | (req.priv ? ACCESS_PRIV : 0)
        : accessOf(req, s2cr);
    const bank = this.s.banks[cbndx];
    const st = this.s.stallStates[cbndx];
    if (st.stalled.length === 0 && st.waiting.length === 0 && (bank.fsr & FSR_FAULT_BITS) === 0) {
      const cfg = this.s.decoded(bank);
      if (cfg.status === CFG_DISABLED) {
        this.bypass(req, done);
        return;
      }
      if (cfg.status === CFG_OK) {
        const t = this.tr;
        this.translator.translate(bank, cfg, req.addr, access, t);
        if (t.ok && req.addr + req.len <= t.blockEnd) {
          this.forward(req, t.pa, done);
          return;
        }
      }
    }
    this.admit(new Txn(req, done, cbndx, access));
  }

  /** Send `req` untranslated downstream. */
  private bypass(req: DmaRequest, done: DmaDone): void {
    this.s.stats.bypassed++;
    this.forward(req, req.addr, done);
  }

  /** Send `req` downstream at `pa` through a pooled slot (no allocation in steady state). */
  private forward(req: DmaRequest, pa: number, done: DmaDone): void {
    const f = this.pool.pop() ?? new Forward(this.pool);
    const r = f.req;
    r.master = req.master;
    r.streamId = req.streamId;
    r.ssid = req.ssid;
    r.ssidValid = req.ssidValid;
    r.addr = pa;
    r.len = req.len;
    r.write = req.write;
    r.exec = req.exec;
    r.priv = req.priv;
    r.data = req.data;
    f.done = done;
    this.downstream.submit(r, f.onDone);
  }

  /** HUPCF admission of a slow-path transaction into its bank. */
  private admit(txn: Txn): void {
    const bank = this.s.banks[txn.cbndx];
    const st = this.s.stallStates[txn.cbndx];
    if (!R.SCTLR.HUPCF.isSet(bank.sctlr)) {
      if (st.holding) {
        st.waiting.push(txn);
        this.s.stats.waitedBehindStall++;
        this.s.emit('smmu-v2.wait', { cb: bank.index, master: txn.req.master, addr: txn.req.addr });
        return;
      }
      if (!R.SCTLR.CFCFG.isSet(bank.sctlr) && (bank.fsr & R.FSR_FAULT_BITS) !== 0) {
        this.s.stats.terminatedBehindFault++;
        this.terminate(txn, bank, 'abort', `context bank ${bank.index} has a fault outstanding (SCTLR.HUPCF=0)`);
        return;
      }
    }
    this.process(txn);
  }

  /** Translate the rest of a transaction; issue it, or stall/terminate it on a fault. */
  private process(txn: Txn): void {
    const req = txn.req;
    const bank = this.s.banks[txn.cbndx];
    const t = this.tr;
    while (txn.offset < req.len) {
      const va = req.addr + txn.offset;
      const cfg = this.s.decoded(bank);
      if (cfg.status === CFG_DISABLED) {
        txn.pieces.push(va, req.len - txn.offset);
        txn.offset = req.len;
        break;
      }
      if (cfg.status === CFG_BAD_TYPE) {
        this.globalFault(req, txn.done, R.sGFSR.ICF.mask, `context bank ${bank.index}: ${cfg.reason}`);
        return;
      }
      if (cfg.status === CFG_UNSUPPORTED || cfg.status === CFG_INVALID) {
        if (log.enabled) log('%s %s: cb%d: %s', vtime(this.s.scheduler.now), this.s.name, bank.index, cfg.reason);
        t.fault('translation', 1, 0, bank.index);
      } else {
        this.translator.translate(bank, cfg, va, txn.access, t);
      }
      if (!t.ok) {
        this.contextFault(txn, va, cfg);
        return;
      }
      const n = Math.min(req.len - txn.offset, t.blockEnd - va);
      txn.pieces.push(t.pa, n);
      txn.offset += n;
    }
    this.issue(txn);
  }

  /** Record the fault `this.tr` describes, then stall or terminate the transaction. */
  private contextFault(txn: Txn, va: number, cfg: ContextConfig): void {
    const t = this.tr;
    const fb = this.s.banks[t.faultCb];
    const s2Bank = t.faultCb !== txn.cbndx;
    const farAddr = s2Bank ? t.ipa : va;
    let farLo = farAddr >>> 0;
    let farHi = Math.floor(farAddr / TWO_32) >>> 0;
    if (!s2Bank && cfg.sepBit >= 0 && va >= cfg.sepLimit && va < cfg.inputLimit) {
      // A TTBR1-region VA: FAR holds it sign-extended to 64 bits.
      const full = BigInt.asUintN(64, BigInt(va) - (1n << BigInt(cfg.sepBit + 1)));
      farLo = Number(full & 0xffff_ffffn);
      farHi = Number(full >> 32n);
    }
    const info: ContextFaultInfo = {
      fsrBit: fsrBitFor(t.kind),
      level: t.level,
      farLo,
      farHi,
      write: (txn.access & ACCESS_WRITE) !== 0,
      priv: (txn.access & ACCESS_PRIV) !== 0,
      instr: (txn.access & ACCESS_INSTR) !== 0,
      ptwf: t.ptwf,
      s1Cbndx: s2Bank ? txn.cbndx : -1,
      ipa: t.stage === 2 ? t.ipa : -1,
      sid: txn.req.streamId,
      format: this.s.decoded(fb).format,
    };
    const latched = latchContextFault(fb, info);
    this.s.stats.contextFaults++;
    this.s.irq.update();
    const stall = R.SCTLR.CFCFG.isSet(fb.sctlr);
    if (log.enabled) {
      log(
        '%s: cb%d: %s fault (stage %d, level %d) at %s for %s sid %s%s: %s',
        this.s.name, fb.index, t.kind, t.stage, t.level, hex(va), txn.req.master, hex(txn.req.streamId),
        latched ? '' : ' (FSR.MULTI)', stall ? 'stalled' : 'terminated',
      );
    }
    // The event's arguments only when someone records them (a fault round trip is a hot path).
    if (this.s.tracing) {
      this.s.emit('smmu-v2.context-fault', {
        cb: fb.index, kind: t.kind, stage: t.stage, level: t.level, addr: va, master: txn.req.master,
        streamId: txn.req.streamId, write: info.write, multi: !latched, stall,
      });
    }
    if (stall) {
      fb.fsr = (fb.fsr | R.FSR.SS.mask) >>> 0;
      txn.stalledIn = fb.index;
      this.s.stallStates[fb.index].stalled.push(txn);
      this.s.stats.stalls++;
      if (this.canStall.get(txn.req.master) === false) {
        this.s.stats.stallsOfNonStallingMasters++;
        if (log.enabled) log('%s %s: cb%d: stalled a transaction of %s, which cannot stall (no dma-can-stall)', vtime(this.s.scheduler.now), this.s.name, fb.index, txn.req.master);
        this.s.emit('smmu-v2.stall-of-non-stalling-master', { cb: fb.index, master: txn.req.master, addr: va });
      }
      return;
    }
    this.terminate(txn, fb, 'fault', `context fault in bank ${fb.index}: ${t.kind} (stage ${t.stage}, level ${t.level}) at ${hex(va)}`);
  }

  /** End a transaction without accessing memory: with SCTLR.CFRE an error, otherwise RAZ/WI. */
  private terminate(txn: Txn, bank: ContextBank, status: 'fault' | 'abort' | 'terminated', detail: string): void {
    if (R.SCTLR.CFRE.isSet(bank.sctlr)) txn.done({ status, detail });
    else razwi(txn.req, txn.done, `${detail} (SCTLR.CFRE=0)`);
  }

  /** Step labels of the banks' RESUMEs (not a string per RESUME). */
  private readonly resumeLabels: string[] = [];

  /** A RESUME write to bank `b` (TnR = `terminate`). */
  resume(b: ContextBank, terminate: boolean): void {
    const st = this.s.stallStates[b.index];
    if (st.stalled.length === 0 || st.resumePending) {
      this.s.stats.resumesIgnored++;
      if (log.enabled) log('%s %s: cb%d: RESUME ignored: %s', vtime(this.s.scheduler.now), this.s.name, b.index, st.resumePending ? 'a RESUME is already in progress' : 'nothing is stalled');
      return;
    }
    if ((b.fsr & (R.FSR_FAULT_BITS | R.FSR.MULTI.mask)) !== 0) {
      this.s.stats.resumesIgnored++;
      if (log.enabled) log('%s %s: cb%d: RESUME ignored: FSR %s still records a fault (clear FSR first)', vtime(this.s.scheduler.now), this.s.name, b.index, hex(b.fsr));
      this.s.emit('smmu-v2.resume-ignored', { cb: b.index, fsr: b.fsr });
      return;
    }
    st.resumePending = true;
    this.s.stats.resumesAccepted++;
    this.s.scheduler.schedule(
      this.s.options.timing.resumeNs,
      () => {
        st.resumePending = false;
        const held = st.stalled.splice(0);
        b.fsr = (b.fsr & ~R.FSR.SS.mask) >>> 0;
        if (this.s.tracing) this.s.emit('smmu-v2.resume', { cb: b.index, terminate, transactions: held.length });
        for (const txn of held) {
          txn.stalledIn = -1;
          if (terminate) this.terminate(txn, b, 'terminated', `stalled transaction terminated by RESUME.TnR=1 in bank ${b.index}`);
          else this.process(txn);
        }
        // Transactions that waited behind the stall are admitted again, in arrival order.
        this.releaseWaiters(b.index);
      },
      (this.resumeLabels[b.index] ??= `${this.s.name} cb${b.index} RESUME`),
    );
  }

  private releaseWaiters(n: number): void {
    const st = this.s.stallStates[n];
    if (st.waiting.length === 0 || st.stalled.length > 0) return;
    const waiting = st.waiting.splice(0);
    for (const txn of waiting) this.admit(txn);
  }

  /** Forward the translated pieces of a transaction and complete it once. */
  private issue(txn: Txn): void {
    const { req, done, pieces } = txn;
    if (pieces.length === 2) {
      this.downstream.submit({ ...req, addr: pieces[0], len: pieces[1] }, done);
      return;
    }
    const count = pieces.length / 2;
    const results: DmaCompletion[] = new Array<DmaCompletion>(count);
    let remaining = count;
    let off = 0;
    for (let i = 0; i < count; i++) {
      const pa = pieces[2 * i];
      const len = pieces[2 * i + 1];
      const start = off;
      off += len;
      const sub: DmaRequest = { ...req, addr: pa, len, data: req.data ? req.data.subarray(start, start + len) : undefined };
      this.downstream.submit(sub, (c) => {
        results[i] = c;
        if (--remaining === 0) done(combine(req, pieces, results));
      });
    }
  }

  private globalFault(req: DmaRequest, done: DmaDone, bit: number, why: string): void {
    const instr = req.exec && !req.write;
    const latched = this.s.gfault.record(bit, req.streamId, req.addr, req.write, req.priv, instr);
    this.s.stats.globalFaults++;
    this.s.irq.update();
    if (log.enabled) log('%s %s: global fault %s: %s (sid %s, %s)%s', vtime(this.s.scheduler.now), this.s.name, hex(bit), why, hex(req.streamId), req.master, latched ? '' : ' (sGFSR.MULTI)');
    this.s.emit('smmu-v2.global-fault', { sgfsr: bit, streamId: req.streamId, master: req.master, addr: req.addr, multi: !latched, why });
    const config = (bit & SGFSR_CONFIG_FAULTS) !== 0 && this.s.options.globalConfigFaultControls;
    const report = config ? R.sCR0.GCFGFRE.isSet(this.s.scr0) : R.sCR0.GFRE.isSet(this.s.scr0);
    if (report) done({ status: 'abort', detail: `global fault: ${why}` });
    else razwi(req, done, `global fault: ${why} (sCR0.${config ? 'GCFGFRE' : 'GFRE'}=0)`);
  }

}

/** ACCESS_* bits of a request after the S2CR's privilege and instruction overrides. */
function accessOf(req: DmaRequest, s2cr: number): number {
  let priv = req.priv;
  const privcfg = R.S2CR.PRIVCFG.get(s2cr);
  if (privcfg === R.S2CR_PRIVCFG_UNPRIV) priv = false;
  else if (privcfg === R.S2CR_PRIVCFG_PRIV) priv = true;
  let instr = req.exec && !req.write;
  const instcfg = R.S2CR.INSTCFG.get(s2cr);
  if (instcfg === R.S2CR_INSTCFG_DATA) instr = false;
  else if (instcfg === R.S2CR_INSTCFG_INSTRUCTION && !req.write) instr = true;
  return (req.write ? ACCESS_WRITE : 0) | (instr ? ACCESS_INSTR : 0) | (priv ? ACCESS_PRIV : 0);
}

/**
 * RAZ/WI: the client gets an OKAY response, reads return zeros and writes are dropped. The status is
 * 'ok' because that is what the bus says; `detail` records why nothing was accessed.
 */
function razwi(req: DmaRequest, done: DmaDone, detail: string): void {
  done(req.write ? { status: 'ok', detail: `RAZ/WI: ${detail}` } : { status: 'ok', data: new Uint8Array(req.len), detail: `RAZ/WI: ${detail}` });
}

/** One completion for a transaction issued as several pieces. */
function combine(req: DmaRequest, pieces: number[], results: DmaCompletion[]): DmaCompletion {
  for (const r of results) if (r.status !== 'ok') return r;
  const first = pieces[0];
  if (req.write) return { status: 'ok', pa: first };
  const data = new Uint8Array(req.len);
  let off = 0;
  for (let i = 0; i < results.length; i++) {
    const d = results[i].data;
    if (d) data.set(d.subarray(0, pieces[2 * i + 1]), off);
    off += pieces[2 * i + 1];
  }
  return { status: 'ok', data, pa: first };
}
