/**
 * One SMMUv3 circular queue (Command, Event or PRI queue) as its three registers describe it:
 * *_BASE (address and LOG2SIZE), *_PROD and *_CONS with index + wrap bit encoding.
 *
 * Supports: the architected pointer arithmetic (empty/full by comparing index and wrap bit,
 * wrap-bit toggling), LOG2SIZE capped at the IDR1 maximum, the base aligned to the queue size (or
 * 32 bytes), and the overflow flag bit 31 of the output queues' PROD/CONS.
 * Does not support: QUEUES_PRESET (bases are always software-programmed).
 *
 * Pointer registers are stored as written (masked to the implemented bits); the helpers below
 * interpret them with the current LOG2SIZE, as the hardware does.
 */
import { join64 } from '../bitfield.js';
import { Q_BASE_ADDR_HI_MASK, Q_BASE_ADDR_LO_MASK, Q_BASE_LOG2SIZE, Q_INDEX_MASK } from './regs.js';

export class SmmuQueue {
  private lo = 0;
  private hi = 0;
  /** *_PROD and *_CONS register values as written/updated (index, wrap, flags). */
  prod = 0;
  cons = 0;
  // The geometry the BASE halves describe, derived when a half is written (the consumption path reads
  // it per command).
  private log2 = 0;
  private mask = 1;
  private base = 0;

  constructor(
    readonly name: string,
    /** entry size in bytes: 16 (CMDQ, PRIQ) or 32 (EVTQ) */
    readonly entryBytes: number,
    /** IDR1.CMDQS / EVENTQS / PRIQS */
    readonly maxLog2: number,
  ) {
    this.derive();
  }

  /** *_BASE register halves as written. */
  get baseLo(): number {
    return this.lo;
  }

  set baseLo(v: number) {
    this.lo = v;
    this.derive();
  }

  get baseHi(): number {
    return this.hi;
  }

  set baseHi(v: number) {
    this.hi = v;
    this.derive();
  }

  private derive(): void {
    const l = Q_BASE_LOG2SIZE.get(this.lo);
    this.log2 = l > this.maxLog2 ? this.maxLog2 : l;
    this.mask = (1 << (this.log2 + 1)) - 1;
    // ADDR[51:5] aligned down to the larger of the queue size and 32 bytes (a power of two).
    const raw = join64(this.lo & Q_BASE_ADDR_LO_MASK, this.hi & Q_BASE_ADDR_HI_MASK);
    const bytes = Math.max(32, (1 << this.log2) * this.entryBytes);
    this.base = raw - (raw % bytes);
  }

  /** Effective LOG2SIZE: the programmed value capped at the implemented maximum. */
  get log2size(): number {
    return this.log2;
  }

  get entries(): number {
    return 1 << this.log2;
  }

  /** Effective base PA: ADDR[51:5] aligned down to the larger of the queue size and 32 bytes. */
  get baseAddr(): number {
    return this.base;
  }

  /** Mask of the index plus wrap bit for the current size. */
  get ptrMask(): number {
    return this.mask;
  }

  private get wrapBit(): number {
    return 1 << this.log2;
  }

  index(ptr: number): number {
    return ptr & (this.wrapBit - 1);
  }

  wrap(ptr: number): number {
    return ptr & this.wrapBit;
  }

  /** PA of the entry a pointer designates. */
  entryAddr(ptr: number): number {
    return this.baseAddr + this.index(ptr) * this.entryBytes;
  }

  /** The pointer after `ptr` (index + 1, toggling the wrap bit at the end). */
  next(ptr: number): number {
    return (ptr + 1) & this.ptrMask;
  }

  isEmpty(): boolean {
    return ((this.prod ^ this.cons) & this.ptrMask) === 0;
  }

  isFull(): boolean {
    return ((this.prod ^ this.cons) & this.ptrMask) === this.wrapBit;
  }

  /** Number of entries between CONS and PROD. */
  occupancy(): number {
    const p = this.prod & this.ptrMask;
    const c = this.cons & this.ptrMask;
    if (this.wrap(p) === this.wrap(c)) return this.index(p) - this.index(c);
    return this.entries - this.index(c) + this.index(p);
  }

  /** Replace the index+wrap part of `reg` with `ptr`, keeping the other bits (ERR, OVFLG). */
  static withPtr(reg: number, ptr: number, ptrMask: number): number {
    return ((reg & ~ptrMask) | (ptr & ptrMask)) >>> 0;
  }

  /** Mask a software-written pointer register to the implemented pointer bits plus `extra`. */
  static maskWritten(value: number, extra: number): number {
    return (value & (Q_INDEX_MASK | extra)) >>> 0;
  }
}
