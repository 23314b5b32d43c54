/**
 * One SMMUv3 circular queue as the driver sees it (kernel: struct arm_smmu_queue / arm_smmu_ll_queue
 * and the queue_* helpers of arm-smmu-v3.c): the entries in coherent memory, the PROD/CONS registers,
 * and the pointer arithmetic (index + wrap bit, and the overflow flag of the output queues).
 *
 * Besides the register encoding, the queue keeps absolute counts of entries produced and consumed
 * (`prodAbs` / `consAbs`), so "has the entry at position p been consumed?" has one answer however
 * often the queue wrapped in between. The kernel gets the same guarantee from the command queue's
 * shared lock (the queue cannot wrap twice under a waiter); here it is arithmetic.
 */
import type { IoMem } from '../../bus/io.js';
import type { RamAccess } from '../../hw/cpu-port.js';
import type { CoherentBuffer } from '../../mm/dma-coherent.js';
import { FIELD_PREP } from '../../bus/bitfield.js';
import { Q_BASE_ADDR_ALIGN, Q_BASE_LOG2SIZE, Q_BASE_RWA_HI, Q_OVERFLOW_FLAG } from './arm-smmu-v3-regs.js';

export class ArmSmmuQueue {
  /** log2 of the number of entries (kernel: llq.max_n_shift). */
  readonly maxNShift: number;
  readonly entries: number;
  /** Bytes per entry. */
  readonly entBytes: number;
  /** Index + wrap bits of a pointer register. */
  readonly ptrMask: number;
  /** The *Q_BASE value, as two halves (kernel: q->q_base). */
  readonly qBaseLo: number;
  readonly qBaseHi: number;
  /** Software copies of PROD and CONS as the registers encode them (kernel: llq.prod / llq.cons). */
  prod = 0;
  cons = 0;
  /** Entries ever produced / known consumed. */
  prodAbs = 0;
  consAbs = 0;

  constructor(
    readonly name: string,
    readonly ram: RamAccess,
    readonly buf: CoherentBuffer,
    maxNShift: number,
    entDwords: number,
    /** Where PROD and CONS live (page 0 for the command queue, page 1 for the others). */
    readonly page: IoMem,
    readonly prodOff: number,
    readonly consOff: number,
  ) {
    this.maxNShift = maxNShift;
    this.entries = 1 << maxNShift;
    this.entBytes = entDwords * 8;
    this.ptrMask = (1 << (maxNShift + 1)) - 1;
    if (buf.pa % Math.max(Q_BASE_ADDR_ALIGN, this.entries * this.entBytes) !== 0) {
      throw new RangeError(`${name}: queue at 0x${buf.pa.toString(16)} is not aligned to its size`);
    }
    // (kernel: arm_smmu_init_one_queue() — q_base = RWA | base | LOG2SIZE.)
    this.qBaseLo = ((buf.pa >>> 0) | FIELD_PREP(Q_BASE_LOG2SIZE, maxNShift)) >>> 0;
    this.qBaseHi = (Math.floor(buf.pa / 0x1_0000_0000) | Q_BASE_RWA_HI) >>> 0;
  }

  get base(): number {
    return this.buf.pa;
  }

  // kernel: Q_IDX() [arm-smmu-v3.h]
  idx(p: number): number {
    return p & (this.entries - 1);
  }

  // kernel: Q_WRP() [arm-smmu-v3.h]
  wrp(p: number): number {
    return p & this.entries;
  }

  // kernel: Q_OVF() [arm-smmu-v3.h]
  static ovf(p: number): number {
    return (p & Q_OVERFLOW_FLAG) >>> 0;
  }

  /** PA of the entry a pointer designates (kernel: Q_ENT()). */
  entAddr(p: number): number {
    return this.buf.pa + this.idx(p) * this.entBytes;
  }

  /** PA of the entry at absolute position `abs`. */
  absAddr(abs: number): number {
    return this.buf.pa + (abs % this.entries) * this.entBytes;
  }

  /** Free entries, from the absolute counts (kernel: queue_has_space()). */
  space(): number {
    return this.entries - (this.prodAbs - this.consAbs);
  }

  // kernel: queue_full() [arm-smmu-v3.c]
  full(): boolean {
    return this.idx(this.prod) === this.idx(this.cons) && this.wrp(this.prod) !== this.wrp(this.cons);
  }

  // kernel: queue_empty() [arm-smmu-v3.c]
  empty(): boolean {
    return this.idx(this.prod) === this.idx(this.cons) && this.wrp(this.prod) === this.wrp(this.cons);
  }

  /** Advance a register-encoded pointer by n, keeping its overflow flag (kernel: queue_inc_prod_n()). */
  incPtr(p: number, n: number): number {
    const next = ((p & this.ptrMask) + n) & this.ptrMask;
    return (ArmSmmuQueue.ovf(p) | next) >>> 0;
  }

  /** Publish `n` new entries the driver wrote (producer side: command queue). */
  advanceProd(n: number): void {
    this.prod = this.incPtr(this.prod, n);
    this.prodAbs += n;
  }

  /**
   * Fold a CONS value read from the hardware into the absolute count: the hardware cannot have consumed
   * more than was produced, so the distance is unambiguous.
   */
  noteHwCons(reg: number): void {
    const ptr = reg & this.ptrMask;
    const period = this.entries * 2;
    const delta = (ptr - (this.consAbs % period) + period) % period;
    if (this.consAbs + delta <= this.prodAbs) {
      this.consAbs += delta;
      this.cons = (ArmSmmuQueue.ovf(this.cons) | ptr) >>> 0;
    }
  }

  /** Entries up to absolute position `abs` (exclusive) are known consumed. */
  noteConsumedTo(abs: number): void {
    if (abs <= this.consAbs || abs > this.prodAbs) return;
    this.consAbs = abs;
    this.cons = (ArmSmmuQueue.ovf(this.cons) | (abs % (this.entries * 2))) >>> 0;
  }

  /** `words` (u32 little-endian) at the entry of absolute position `abs`. */
  // kernel: queue_write() [arm-smmu-v3.c]
  writeEntry(abs: number, words: Uint32Array, off: number, nWords: number): void {
    const pa = this.absAddr(abs);
    const ram = this.ram;
    for (let i = 0; i < nWords; i++) ram.write32(pa + i * 4, words[off + i]);
  }

  /** The entry a register-encoded pointer designates. */
  // kernel: queue_read() [arm-smmu-v3.c]
  readEntry(p: number, out: Uint32Array): void {
    const pa = this.entAddr(p);
    const ram = this.ram;
    for (let i = 0; i < out.length; i++) out[i] = ram.read32(pa + i * 4);
  }

  // ---- output queues (EVTQ / PRIQ): the driver consumes ------------------------------------

  /** Read PROD; true if its overflow flag moved (records were lost). */
  // kernel: queue_sync_prod_in() [arm-smmu-v3.c]
  syncProdIn(): boolean {
    const prod = this.page.readl(this.prodOff);
    const overflowed = ArmSmmuQueue.ovf(prod) !== ArmSmmuQueue.ovf(this.prod);
    this.prod = prod;
    return overflowed;
  }

  // kernel: queue_sync_cons_out() [arm-smmu-v3.c]
  syncConsOut(): void {
    this.page.writel(this.cons, this.consOff);
  }

  // kernel: queue_inc_cons() [arm-smmu-v3.c]
  incCons(): void {
    const next = ((this.cons & this.ptrMask) + 1) & this.ptrMask;
    this.cons = (ArmSmmuQueue.ovf(this.cons) | next) >>> 0;
    this.consAbs++;
  }

  /** Acknowledge an overflow once the queue has been drained. */
  // kernel: queue_sync_cons_ovf() [arm-smmu-v3.c]
  syncConsOvf(): void {
    if (ArmSmmuQueue.ovf(this.prod) === ArmSmmuQueue.ovf(this.cons)) return;
    this.cons = (ArmSmmuQueue.ovf(this.prod) | (this.cons & this.ptrMask)) >>> 0;
    this.syncConsOut();
  }

  /** False when the queue is empty. */
  // kernel: queue_remove_raw() [arm-smmu-v3.c]
  removeRaw(out: Uint32Array): boolean {
    if (this.empty()) return false;
    this.readEntry(this.cons, out);
    this.incCons();
    this.syncConsOut();
    return true;
  }

  /** Reset the software pointers to what the registers are programmed with at reset. */
  resetPointers(): void {
    this.prod = 0;
    this.cons = 0;
    this.prodAbs = 0;
    this.consAbs = 0;
  }
}
