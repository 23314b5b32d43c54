/**
 * The per-kernel ASID allocator: one address-space ID per live mm, tagged into its non-global TLB
 * entries (PTE nG=1) and, for SVA, into the SMMU context descriptor that shares its page tables.
 *
 * Next-fit over [1, 2^bits − 1] (ASID 0 is never handed out), so a just-freed ASID is not reused at
 * once. There is no generation rollover as on arm64: an ASID stays pinned until its mm is torn down,
 * which is what SVA needs anyway (the kernel pins shared ASIDs), and running out is ENOSPC.
 */
import { KernelError } from '../bus/errno.js';

export class AsidAllocator {
  readonly bits: number;
  private readonly used: Uint8Array;
  private next = 1;
  private count = 0;

  constructor(bits: 8 | 16 = 16) {
    if (bits !== 8 && bits !== 16) throw new KernelError('EINVAL', `ASID allocator: ${String(bits)}-bit ASIDs do not exist (8 or 16)`);
    this.bits = bits;
    this.used = new Uint8Array(2 ** bits);
  }

  /** Highest ASID that can be handed out. */
  get max(): number {
    return this.used.length - 1;
  }

  get inUse(): number {
    return this.count;
  }

  isAllocated(asid: number): boolean {
    return Number.isInteger(asid) && asid > 0 && asid <= this.max && this.used[asid] === 1;
  }

  alloc(): number {
    if (this.count === this.max) throw new KernelError('ENOSPC', `ASID allocator: all ${this.max} ${this.bits}-bit ASIDs are in use`);
    let asid = this.next;
    while (this.used[asid] === 1) asid = asid === this.max ? 1 : asid + 1;
    this.used[asid] = 1;
    this.count++;
    this.next = asid === this.max ? 1 : asid + 1;
    return asid;
  }

  free(asid: number): void {
    if (!this.isAllocated(asid)) throw new KernelError('EINVAL', `ASID allocator: freeing ASID ${asid}, which is not allocated`);
    this.used[asid] = 0;
    this.count--;
  }
}
