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
  /** *_BASE register halves as written. */
  baseLo = 0;
  baseHi = 0;
  /** *_PROD and *_CONS register values as written/updated (index, wrap, flags). */
  prod = 0;
  cons = 0;

  constructor(
    readonly name: string,
    /** entry size in bytes: 16 (CMDQ, PRIQ) or 32 (EVTQ) */
    readonly entryBytes: number,
    /** IDR1.CMDQS / EVENTQS / PRIQS */
    readonly maxLog2: number,
  ) {}

  /** Effective LOG2SIZE: the programmed value capped at the implemented maximum. */
  get log2size(): number {
    const l = Q_BASE_LOG2SIZE.get(this.baseLo);
    return l > this.maxLog2 ? this.maxLog2 : l;
  }

  get entries(): number {
    return 1 << this.log2size;
  }

  /** Effective base PA: ADDR[51:5] aligned down to the larger of the queue size and 32 bytes. */
  get baseAddr(): number {
    const raw = join64(this.baseLo & Q_BASE_ADDR_LO_MASK, this.baseHi & Q_BASE_ADDR_HI_MASK);
    const bytes = Math.max(32, this.entries * this.entryBytes);
    return raw - (raw % bytes);
  }

  /** Mask of the index plus wrap bit for the current size. */
  get ptrMask(): number {
    return (1 << (this.log2size + 1)) - 1;
  }

  private get wrapBit(): number {
    return 1 << this.log2size;
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
