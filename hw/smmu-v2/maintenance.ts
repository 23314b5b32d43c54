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
 * itself when SCTLR.ASIDPNE is set.
 * Does not support: broadcast maintenance, hypervisor entries (TLBIALLH invalidates nothing).
 */
import { vtime } from '../vtime.js';
import createDebug from 'debug';
import type { ContextBank } from './context-bank.js';
import { CFG_OK } from './context-bank.js';
import * as R from './regs.js';
import type { SmmuV2State } from './state.js';
import type { PendingTlbi } from './tlb.js';
import { Tlb } from './tlb.js';

const log = createDebug('iommu:hw:smmu-v2');
const TWO_32 = 0x1_0000_0000;

export class TlbMaintenance {
  private pendingGlobal: PendingTlbi[] = [];
  private globalSyncsInFlight = 0;

  /** Pages of the upstream bus's address space: 2^(UBS - 12). */
  private readonly vaPages: number;

  constructor(private readonly s: SmmuV2State) {
    this.vaPages = 2 ** Math.max(s.options.ubs - 12, 0);
  }

  reset(): void {
    this.pendingGlobal = [];
    this.globalSyncsInFlight = 0;
  }

  /** sTLBGSTATUS.GSACTIVE. */
  get globalSyncActive(): boolean {
    return this.globalSyncsInFlight > 0;
  }

  // GR0

  tlbiVmid(v: number): void {
    const vmid = this.s.env.vmid16Enabled() ? R.TLBIVMID_F.VMID.get(v) : v & 0xff;
    this.pendingGlobal.push({ op: 'vmid', vmid });
  }

  tlbiAllNsNh(): void {
    this.pendingGlobal.push({ op: 'all' });
  }

  tlbiAllH(): void {
    if (log.enabled) log('%s %s: TLBIALLH: no hypervisor contexts are modelled, nothing to invalidate', vtime(this.s.scheduler.now), this.s.name);
  }

  globalSync(): void {
    const ops = this.pendingGlobal;
    this.pendingGlobal = [];
    this.globalSyncsInFlight++;
    this.s.scheduler.schedule(
      this.s.options.timing.tlbSyncNs,
      () => {
        this.applyAll(ops);
        this.globalSyncsInFlight--;
      },
      `${this.s.name} sTLBGSYNC`,
    );
  }

  // Context bank

  tlbiAsid(b: ContextBank, v: number): void {
    b.pendingTlbi.push({ op: 'asid', namespace: this.namespaceOf(b), asid: this.asidOperand(b, v) });
  }

  tlbiAll(b: ContextBank): void {
    b.pendingTlbi.push({ op: 'namespace', namespace: this.namespaceOf(b) });
  }

  /** TLBIVA(L): by VA and ASID (global entries for the VA too). */
  tlbiVa(b: ContextBank, lo: number, hi: number): void {
    const asid = b.isAarch64(this.s.env) ? this.asidOperand(b, hi >>> 16) : lo & 0xff;
    b.pendingTlbi.push({ op: 'va', namespace: this.namespaceOf(b), asid, addr: this.vaOperand(b, lo, hi) });
  }

  /** TLBIVAA(L): by VA, every ASID. */
  tlbiVaa(b: ContextBank, lo: number, hi: number): void {
    b.pendingTlbi.push({ op: 'vaa', namespace: this.namespaceOf(b), addr: this.vaOperand(b, lo, hi) });
  }

  /** TLBIIPAS2(L): stage 2 entries of the bank's VMID by IPA. */
  tlbiIpa(b: ContextBank, lo: number, hi: number): void {
    const ipa = ((hi & 0xfffff) * TWO_32 + lo) * 4096;
    b.pendingTlbi.push({ op: 'ipa', vmid: this.s.vmidOf(b), addr: ipa });
  }

  bankSync(b: ContextBank): void {
    // The operations written before this sync (null: none; the bank's list is only replaced then).
    const ops = b.pendingTlbi.length > 0 ? b.pendingTlbi : null;
    if (ops !== null) b.pendingTlbi = [];
    b.syncsInFlight++;
    // One closure per sync (its operations and bank), the step's label made once per bank.
    this.s.scheduler.schedule(
      this.s.options.timing.tlbSyncNs,
      () => {
        if (ops !== null) this.applyAll(ops);
        b.syncsInFlight--;
      },
      (this.bankSyncLabels[b.index] ??= `${this.s.name} cb${b.index} TLBSYNC`),
    );
  }

  /** Step labels of the banks' syncs (not a string per sync). */
  private readonly bankSyncLabels: string[] = [];

  /** A sync completed: its operations take effect (its status clears after). */
  private applyAll(ops: readonly PendingTlbi[]): void {
    const tlb = this.s.tlb;
    for (let i = 0; i < ops.length; i++) tlb.apply(ops[i]);
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
