/**
 * TLB maintenance operations and their synchronisation.
 *
 * Supports: the context bank's TLBIVA, TLBIVAL, TLBIVAA, TLBIVAAL (VA[55:12] and ASID[63:48] in
 * the AArch64 format, VA[31:12] and ASID[7:0] in AArch32), TLBIASID, TLBIALL, TLBIIPAS2,
 * TLBIIPAS2L (IPA[51:12]) with TLBSYNC/TLBSTATUS.SACTIVE, and GR0's TLBIVMID, TLBIALLNSNH,
 * TLBIALLH with sTLBGSYNC/sTLBGSTATUS.GSACTIVE. Operations queue until the sync of their register
 * space is written; that sync completes `timing.tlbSyncNs` later, in a scheduled step, and only
 * then do the queued operations take effect. A bank's sync does not complete global operations, nor
 * the other way round. The namespace a bank operation applies to is the bank's VMID, or the bank
 * itself when SCTLR.ASIDPNE is set. A reset loses the syncs in flight: they complete nothing and
 * leave the status of later syncs alone.
 * Does not support: broadcast maintenance, hypervisor entries (TLBIALLH invalidates nothing).
 */
import { vtime } from '../vtime.js';
import createDebug from 'debug';
import type { ContextBank } from './context-bank.js';
import { CFG_OK } from './context-bank.js';
import * as R from './regs.js';
import type { SmmuV2State } from './state.js';
import { Tlb, TlbiBatch } from './tlb.js';

const log = createDebug('iommu:hw:smmu-v2');
const TWO_32 = 0x1_0000_0000;

/** A sync in flight: the batch it completes and the register space whose status it holds active. */
class SyncInFlight {
  batch: TlbiBatch | null = null;
  /** Null: the global sync (sTLBGSYNC). */
  bank: ContextBank | null = null;
  epoch = 0;
  /** The step that completes it, made once per object (they are reused). */
  readonly complete: () => void;

  constructor(owner: TlbMaintenance) {
    this.complete = () => owner.complete(this);
  }
}

export class TlbMaintenance {
  private pendingGlobal = new TlbiBatch();
  private globalSyncsInFlight = 0;
  /** Bumped by reset: a sync written before it completes nothing (the reset lost it). */
  private epoch = 0;
  /** Empty batches and finished syncs, reused: a TLBI + TLBSYNC allocates only its scheduler event. */
  private readonly freeBatches: TlbiBatch[] = [];
  private readonly freeSyncs: SyncInFlight[] = [];

  /** Pages of the upstream bus's address space: 2^(UBS - 12). */
  private readonly vaPages: number;

  constructor(private readonly s: SmmuV2State) {
    this.vaPages = 2 ** Math.max(s.options.ubs - 12, 0);
  }

  reset(): void {
    this.pendingGlobal.length = 0;
    this.globalSyncsInFlight = 0;
    this.epoch++;
  }

  /** sTLBGSTATUS.GSACTIVE. */
  get globalSyncActive(): boolean {
    return this.globalSyncsInFlight > 0;
  }

  // GR0

  tlbiVmid(v: number): void {
    const vmid = this.s.env.vmid16Enabled() ? R.TLBIVMID_F.VMID.get(v) : v & 0xff;
    this.pendingGlobal.add().set('vmid', 0, 0, 0, vmid);
  }

  tlbiAllNsNh(): void {
    this.pendingGlobal.add().set('all', 0, 0, 0, 0);
  }

  tlbiAllH(): void {
    if (log.enabled) log('%s %s: TLBIALLH: no hypervisor contexts are modelled, nothing to invalidate', vtime(this.s.scheduler.now), this.s.name);
  }

  globalSync(): void {
    this.globalSyncsInFlight++;
    this.startSync(this.takeBatch(this.pendingGlobal, null), null, (this.globalSyncLabel ??= `${this.s.name} sTLBGSYNC`));
  }

  private globalSyncLabel: string | null = null;

  // Context bank

  tlbiAsid(b: ContextBank, v: number): void {
    b.pendingTlbi.add().set('asid', this.namespaceOf(b), this.asidOperand(b, v), 0, 0);
  }

  tlbiAll(b: ContextBank): void {
    b.pendingTlbi.add().set('namespace', this.namespaceOf(b), 0, 0, 0);
  }

  /** TLBIVA(L): by VA and ASID (global entries for the VA too). */
  tlbiVa(b: ContextBank, lo: number, hi: number): void {
    const asid = b.isAarch64(this.s.env) ? this.asidOperand(b, hi >>> 16) : lo & 0xff;
    b.pendingTlbi.add().set('va', this.namespaceOf(b), asid, this.vaOperand(b, lo, hi), 0);
  }

  /** TLBIVAA(L): by VA, every ASID. */
  tlbiVaa(b: ContextBank, lo: number, hi: number): void {
    b.pendingTlbi.add().set('vaa', this.namespaceOf(b), 0, this.vaOperand(b, lo, hi), 0);
  }

  /** TLBIIPAS2(L): stage 2 entries of the bank's VMID by IPA. */
  tlbiIpa(b: ContextBank, lo: number, hi: number): void {
    const ipa = ((hi & 0xfffff) * TWO_32 + lo) * 4096;
    b.pendingTlbi.add().set('ipa', 0, 0, ipa, this.s.vmidOf(b));
  }

  bankSync(b: ContextBank): void {
    b.syncsInFlight++;
    this.startSync(this.takeBatch(b.pendingTlbi, b), b, (this.bankSyncLabels[b.index] ??= `${this.s.name} cb${b.index} TLBSYNC`));
  }

  /** Step labels of the banks' syncs (not a string per sync). */
  private readonly bankSyncLabels: string[] = [];

  /**
   * The operations a sync completes: the register space's batch, replaced by an empty one (null
   * when nothing was written since the last sync).
   */
  private takeBatch(batch: TlbiBatch, bank: ContextBank | null): TlbiBatch | null {
    if (batch.length === 0) return null;
    const next = this.freeBatches.pop() ?? new TlbiBatch();
    if (bank) bank.pendingTlbi = next;
    else this.pendingGlobal = next;
    return batch;
  }

  /** The sync completes in a scheduled step: its operations take effect, then its status clears. */
  private startSync(batch: TlbiBatch | null, bank: ContextBank | null, label: string): void {
    const sync = this.freeSyncs.pop() ?? new SyncInFlight(this);
    sync.batch = batch;
    sync.bank = bank;
    sync.epoch = this.epoch;
    this.s.scheduler.schedule(this.s.options.timing.tlbSyncNs, sync.complete, label);
  }

  /** A sync's step (SyncInFlight.complete). */
  complete(sync: SyncInFlight): void {
    const batch = sync.batch;
    if (sync.epoch === this.epoch) {
      if (batch) batch.applyTo(this.s.tlb);
      if (sync.bank) sync.bank.syncsInFlight--;
      else this.globalSyncsInFlight--;
    } else if (batch) batch.length = 0;
    if (batch) this.freeBatches.push(batch);
    sync.batch = null;
    sync.bank = null;
    this.freeSyncs.push(sync);
  }

  /** TLB namespace a bank's maintenance applies to (its VMID, or the bank with ASIDPNE). */
  private namespaceOf(b: ContextBank): number {
    const cfg = this.s.decoded(b);
    if (cfg.status === CFG_OK) return Tlb.namespace(cfg.vmid, cfg.privateCb);
    const type = b.index < this.s.options.numS2Cb ? R.CBAR_TYPE_S2_TRANS : R.CBAR.TYPE.get(b.cbar);
    const privateCb = type !== R.CBAR_TYPE_S2_TRANS && R.SCTLR.ASIDPNE.isSet(b.sctlr) ? b.index : -1;
    return Tlb.namespace(this.s.vmidOf(b), privateCb);
  }

  private asidOperand(b: ContextBank, v: number): number {
    return this.s.version === 2 && R.TCR2.AS.isSet(b.tcr2) ? v & 0xffff : v & 0xff;
  }

  /** The input address of a VA operand, folded to the upstream bus width the TLB is keyed by. */
  private vaOperand(b: ContextBank, lo: number, hi: number): number {
    if (!b.isAarch64(this.s.env)) return (lo & ~0xfff) >>> 0;
    const page = (hi & 0xfff) * TWO_32 + lo; // VA[55:12]
    // page mod 2^(UBS - 12), as a power-of-two division (exact; no floating-point remainder).
    const span = this.vaPages;
    return (page - Math.floor(page / span) * span) * 4096;
  }
}
