/**
 * Process address spaces: an `Mm` is one process's user VA space: anonymous VMAs, CPU page tables in
 * machine RAM (Arm64PageTable), an ASID, MMU notifiers, and Linux's two reference counts.
 *
 * - `users` (mm_users, mmget/mmput): the address space is alive while it is > 0. The last mmput is
 *   exit: notifiers are released, every page is unmapped and freed, the lower page tables go.
 * - `count` (mm_count, mmgrab/mmdrop): the struct (pid, ASID, level-0 table, the PASID an SVA user
 *   attached) outlives exit while someone, e.g. a device bound for SVA, holds it. All users together
 *   hold one count reference. The last mmdrop runs the teardown hooks, then frees the pgd and ASID.
 *
 * munmap, mprotect and mmput are async because MMU-notifier subscribers may have to wait for their
 * hardware (an SMMU's CMD_SYNC) before the frames can be reused. There is no mmap lock: the parts
 * that change the VMAs and PTEs run synchronously, and freed frames are held privately until the
 * invalidations finished, so a concurrent operation never sees a half-done change.
 */
import { KernelError } from '../bus/errno.js';
import type { RamAccess } from '../hw/cpu-port.js';
import { AsidAllocator } from './asid.js';
import { handleMmFault } from './fault.js';
import { MmuNotifierList } from './mmu-notifier.js';
import { PAGE_SIZE, type PageAllocator } from './page-alloc.js';
import {
  Arm64PageTable,
  MAIR_EL1_VALUE,
  MT_NORMAL,
  RGN_WBWA,
  SH_INNER_SHAREABLE,
  TASK_SIZE,
  TCR_T0SZ,
  TG0_4K,
  descOutputAddress,
  ipsForPaBits,
  pageDescHi,
  pageDescLo,
  tcrEl1Value,
} from './pgtable-arm64.js';
import { checkProt, protString, type Access } from './prot.js';

/** Lowest address mmap hands out or accepts (Linux's mmap_min_addr). */
export const MMAP_MIN_ADDR = 0x10000;
/** Top-down mmap searches start below this address. */
export const MMAP_BASE = TASK_SIZE - 2 ** 32;

export interface MmContextOptions {
  readonly alloc: PageAllocator;
  readonly ram: RamAccess;
  /** The machine's physical address size (ID_AA64MMFR0_EL1.PARange); 48 if not given. */
  readonly paBits?: number;
  readonly asidBits?: 8 | 16;
}

/** One kernel's memory-management state shared by all its address spaces. */
export class MmContext {
  readonly alloc: PageAllocator;
  readonly ram: RamAccess;
  readonly paBits: number;
  /** IPS encoding of `paBits`, for TCR_EL1.IPS and CD.IPS. */
  readonly ips: number;
  readonly asids: AsidAllocator;
  /** TCR_EL1 value every user address space runs with. */
  readonly tcrEl1: bigint;

  constructor(options: MmContextOptions) {
    this.alloc = options.alloc;
    this.ram = options.ram;
    this.paBits = options.paBits ?? 48;
    this.ips = ipsForPaBits(this.paBits);
    this.asids = new AsidAllocator(options.asidBits ?? 16);
    this.tcrEl1 = tcrEl1Value(this.ips);
  }
}

/**
 * What a stage-1 context (an SMMUv3 CD, an SMMUv2 context bank) needs to walk this mm's tables,
 * as the kernel's arm_smmu_make_sva_cd() gathers it from the mm and the CPU's registers.
 */
export interface Stage1Config {
  /** Physical address of the level-0 table (TTB0). */
  readonly ttb0: number;
  readonly asid: number;
  /** 16: a 48-bit input range. */
  readonly t0sz: number;
  /** 0: 4 KiB granule. */
  readonly tg0: number;
  /** 1: inner write-back write-allocate walks. */
  readonly irgn0: number;
  /** 1: outer write-back write-allocate walks. */
  readonly orgn0: number;
  /** 3: inner shareable. */
  readonly sh0: number;
  /** Output size encoding from the machine's PA size. */
  readonly ips: number;
  /** TTB0 walks enabled. */
  readonly epd0: false;
  /** TTB1 walks disabled: a process has no upper half. */
  readonly epd1: true;
  /** MAIR_EL1 (the CD's MAIR word). */
  readonly mair: bigint;
  /** The MAIR index user pages use (Normal write-back). */
  readonly attrIndx: number;
  /** TCR_EL1 value, for consumers that take the register whole. */
  readonly tcr: bigint;
  /** TTBR0_EL1: ASID in [63:48], table address below. */
  readonly ttbr0: bigint;
}

export type MmState = 'live' | 'exiting' | 'exited' | 'freed';

/** One anonymous mapping [start, end) with `prot`. */
export class Vma {
  constructor(
    readonly start: number,
    readonly end: number,
    readonly prot: number,
  ) {}

  get size(): number {
    return this.end - this.start;
  }

  contains(va: number): boolean {
    return va >= this.start && va < this.end;
  }
}

export interface MmapOptions {
  /** Where to place the mapping: a hint, or the exact address with `fixed`. */
  readonly addr?: number;
  /** Map exactly at `addr`; EEXIST if that overlaps a mapping (MAP_FIXED_NOREPLACE semantics). */
  readonly fixed?: boolean;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function pageAlignUp(n: number): number {
  return Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;
}

export class Mm {
  readonly pid: number;
  readonly asid: number;
  readonly ctx: MmContext;
  /** The CPU page tables in machine RAM. */
  readonly pgtable: Arm64PageTable;
  readonly notifiers = new MmuNotifierList();
  readonly stage1: Stage1Config;

  private vmaList: Vma[] = [];
  private usersCount = 1;
  /** mmgrab references, not counting the one all users share. */
  private grabs = 0;
  private st: MmState = 'live';
  private resident = 0;
  private readonly teardownHooks: ((mm: Mm) => void)[] = [];

  /** A fresh address space for `pid`: ASID, empty level-0 table, no VMAs. */
  // kernel: mm_alloc() [kernel/fork.c]
  constructor(ctx: MmContext, pid: number) {
    if (!Number.isSafeInteger(pid) || pid <= 0) throw new KernelError('EINVAL', `mm_alloc: pid ${pid} is not a positive integer`);
    this.ctx = ctx;
    this.pid = pid;
    this.asid = ctx.asids.alloc();
    try {
      this.pgtable = new Arm64PageTable(ctx.ram, ctx.alloc, `mm pid ${pid}`);
    } catch (e) {
      ctx.asids.free(this.asid);
      throw e;
    }
    const pgd = this.pgtable.pgd;
    this.stage1 = Object.freeze({
      ttb0: pgd,
      asid: this.asid,
      t0sz: TCR_T0SZ,
      tg0: TG0_4K,
      irgn0: RGN_WBWA,
      orgn0: RGN_WBWA,
      sh0: SH_INNER_SHAREABLE,
      ips: ctx.ips,
      epd0: false,
      epd1: true,
      mair: MAIR_EL1_VALUE,
      attrIndx: MT_NORMAL,
      tcr: ctx.tcrEl1,
      ttbr0: (BigInt(this.asid) << 48n) | BigInt(pgd),
    } as const);
  }

  /** Physical address of the level-0 table. */
  get pgd(): number {
    return this.pgtable.pgd;
  }

  get state(): MmState {
    return this.st;
  }

  /** mm_users. */
  get users(): number {
    return this.usersCount;
  }

  /** mm_count: mmgrab references plus one held by all users together. */
  get count(): number {
    return this.grabs + (this.st === 'live' || this.st === 'exiting' ? 1 : 0);
  }

  /** Pages currently mapped (RSS). */
  get rss(): number {
    return this.resident;
  }

  /** @internal the fault path accounts the pages it maps. */
  addRss(pages: number): void {
    this.resident += pages;
  }

  /** A snapshot of the VMAs, ascending. */
  vmas(): readonly Vma[] {
    return [...this.vmaList];
  }

  /** The VMA containing `va`, or null. */
  // kernel: vma_lookup() [mm.h]
  findVma(va: number): Vma | null {
    const list = this.vmaList;
    let lo = 0;
    let hi = list.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = list[mid];
      if (va < v.start) hi = mid - 1;
      else if (va >= v.end) lo = mid + 1;
      else return v;
    }
    return null;
  }

  private assertLive(fn: string): void {
    if (this.st !== 'live') throw new KernelError('EINVAL', `${fn}: address space of pid ${this.pid} is ${this.st}`);
  }

  // ---- mappings ------------------------------------------------------------------------------

  /**
   * Map `len` bytes (rounded up to pages) of anonymous memory with `prot`. Pages are allocated on
   * first touch. Returns the start address. (MAP_PRIVATE|MAP_ANONYMOUS)
   */
  // kernel: do_mmap() [mm/mmap.c]
  mmap(len: number, prot: number, options: MmapOptions = {}): number {
    this.assertLive('mmap');
    checkProt('mmap', prot);
    if (!Number.isSafeInteger(len) || len <= 0) throw new KernelError('EINVAL', `mmap: length ${len} is not a positive integer`);
    const size = pageAlignUp(len);
    if (size > TASK_SIZE - MMAP_MIN_ADDR) throw new KernelError('ENOMEM', `mmap: ${len} bytes exceed the user address space`);
    const { addr, fixed } = options;
    if (addr !== undefined && (!Number.isSafeInteger(addr) || addr < 0)) {
      throw new KernelError('EINVAL', `mmap: address ${addr} is not a non-negative integer`);
    }
    let start: number;
    if (fixed) {
      if (addr === undefined) throw new KernelError('EINVAL', `mmap: fixed mapping without an address`);
      if (addr % PAGE_SIZE !== 0) throw new KernelError('EINVAL', `mmap: fixed address ${hex(addr)} is not page aligned`);
      if (addr < MMAP_MIN_ADDR) throw new KernelError('EPERM', `mmap: fixed address ${hex(addr)} is below mmap_min_addr ${hex(MMAP_MIN_ADDR)}`);
      if (addr + size > TASK_SIZE) throw new KernelError('ENOMEM', `mmap: [${hex(addr)}, ${hex(addr + size)}) ends beyond the user address space`);
      if (this.overlaps(addr, addr + size)) {
        throw new KernelError('EEXIST', `mmap: fixed range [${hex(addr)}, ${hex(addr + size)}) overlaps an existing mapping of pid ${this.pid}`);
      }
      start = addr;
    } else {
      const hint = addr === undefined ? -1 : pageAlignUp(addr);
      if (hint >= MMAP_MIN_ADDR && hint + size <= TASK_SIZE && !this.overlaps(hint, hint + size)) start = hint;
      else start = this.findFreeArea(size);
      if (start < 0) throw new KernelError('ENOMEM', `mmap: no free range of ${size} bytes in pid ${this.pid}`);
    }
    this.insertVma(new Vma(start, start + size, prot));
    return start;
  }

  /**
   * Unmap [addr, addr+len): split VMAs, clear PTEs, tell notifiers, then free the frames.
   * Unmapping a hole is not an error.
   */
  // kernel: do_munmap() [mm/mmap.c]
  async munmap(addr: number, len: number): Promise<void> {
    this.assertLive('munmap');
    if (!Number.isSafeInteger(len) || len <= 0) throw new KernelError('EINVAL', `munmap: length ${len} is not a positive integer`);
    const [start, end] = this.checkRange('munmap', addr, len, 'EINVAL');
    this.vmaList = this.vmaList.flatMap((v) => {
      if (v.end <= start || v.start >= end) return [v];
      const keep: Vma[] = [];
      if (v.start < start) keep.push(new Vma(v.start, start, v.prot));
      if (v.end > end) keep.push(new Vma(end, v.end, v.prot));
      return keep;
    });
    await this.zapRange(start, end);
  }

  /**
   * Change the protection of [addr, addr+len), which must be fully mapped (ENOMEM otherwise, and
   * nothing changes). Present PTEs are rewritten and notifiers told.
   */
  // kernel: do_mprotect_pkey() [mprotect.c]
  async mprotect(addr: number, len: number, prot: number): Promise<void> {
    this.assertLive('mprotect');
    checkProt('mprotect', prot);
    if (!Number.isSafeInteger(len) || len < 0) throw new KernelError('EINVAL', `mprotect: length ${len} is not a non-negative integer`);
    if (len === 0) {
      if (!Number.isSafeInteger(addr) || addr < 0 || addr % PAGE_SIZE !== 0) {
        throw new KernelError('EINVAL', `mprotect: address ${addr} is not a page-aligned user address`);
      }
      return;
    }
    const [start, end] = this.checkRange('mprotect', addr, len, 'ENOMEM');
    let covered = start;
    for (const v of this.vmaList) {
      if (v.end <= covered) continue;
      if (v.start > covered) break;
      covered = v.end;
      if (covered >= end) break;
    }
    if (covered < end) {
      throw new KernelError('ENOMEM', `mprotect: [${hex(start)}, ${hex(end)}) of pid ${this.pid} is not fully mapped (hole at ${hex(covered)})`);
    }
    this.vmaList = this.vmaList.flatMap((v) => {
      if (v.end <= start || v.start >= end) return [v];
      const parts: Vma[] = [];
      if (v.start < start) parts.push(new Vma(v.start, start, v.prot));
      parts.push(new Vma(Math.max(v.start, start), Math.min(v.end, end), prot));
      if (v.end > end) parts.push(new Vma(end, v.end, v.prot));
      return parts;
    });
    this.mergeVmas();

    // kernel: change_protection() [mprotect.c]
    let lowest = Infinity;
    let highest = -Infinity;
    const pt = this.pgtable;
    pt.forEachPte(start, end, (va, slot, lo, hi) => {
      const pa = descOutputAddress(lo, hi);
      const newLo = pageDescLo(pa, prot);
      const newHi = pageDescHi(pa, prot);
      if (newLo === lo && newHi === hi) return;
      pt.writePte(slot, newLo, newHi);
      lowest = Math.min(lowest, va);
      highest = Math.max(highest, va);
    });
    if (highest >= lowest) await this.notifiers.invalidateRange(lowest, highest + PAGE_SIZE);
  }

  /** Validate a page-aligned range; returns [start, end). */
  private checkRange(fn: string, addr: number, len: number, tooLong: 'EINVAL' | 'ENOMEM'): [number, number] {
    if (!Number.isSafeInteger(addr) || addr < 0 || addr % PAGE_SIZE !== 0) {
      throw new KernelError('EINVAL', `${fn}: address ${addr} is not a page-aligned user address`);
    }
    const end = addr + pageAlignUp(len);
    if (addr >= TASK_SIZE || end > TASK_SIZE) {
      throw new KernelError(tooLong, `${fn}: [${hex(addr)}, ${hex(end)}) is beyond the user address space`);
    }
    return [addr, end];
  }

  private overlaps(start: number, end: number): boolean {
    for (const v of this.vmaList) if (v.start < end && start < v.end) return true;
    return false;
  }

  /** Top-down below MMAP_BASE, then bottom-up above it; −1 if nothing fits. */
  // kernel: get_unmapped_area() [mm/mmap.c]
  private findFreeArea(size: number): number {
    let top = MMAP_BASE;
    for (let i = this.vmaList.length - 1; i >= 0; i--) {
      const v = this.vmaList[i];
      if (v.start >= top) continue;
      if (v.end <= top && top - size >= Math.max(v.end, MMAP_MIN_ADDR)) return top - size;
      top = v.start;
    }
    if (top - size >= MMAP_MIN_ADDR) return top - size;
    let bottom = MMAP_BASE;
    for (const v of this.vmaList) {
      if (v.end <= bottom) continue;
      if (v.start >= bottom + size) return bottom;
      bottom = Math.max(bottom, v.end);
    }
    return bottom + size <= TASK_SIZE ? bottom : -1;
  }

  private insertVma(vma: Vma): void {
    let i = 0;
    while (i < this.vmaList.length && this.vmaList[i].start < vma.start) i++;
    this.vmaList.splice(i, 0, vma);
    this.mergeVmas();
  }

  /** Merge neighbours with the same protection. */
  // kernel: vma_merge() [mm/vma.c]
  private mergeVmas(): void {
    const out: Vma[] = [];
    for (const v of this.vmaList) {
      const last = out[out.length - 1];
      if (last && last.end === v.start && last.prot === v.prot) out[out.length - 1] = new Vma(last.start, v.end, v.prot);
      else out.push(v);
    }
    this.vmaList = out;
  }

  /**
   * Clear every PTE in [start, end), tell notifiers the span that was cleared, then free the frames.
   * With the tlb gather's flush before freeing
   */
  // kernel: zap_page_range() [mm/memory.c]
  private async zapRange(start: number, end: number): Promise<void> {
    const frames: number[] = [];
    let lowest = Infinity;
    let highest = -Infinity;
    const pt = this.pgtable;
    pt.forEachPte(start, end, (va, slot, lo, hi) => {
      frames.push(descOutputAddress(lo, hi));
      pt.clearPte(slot);
      lowest = Math.min(lowest, va);
      highest = Math.max(highest, va);
    });
    if (frames.length === 0) return;
    this.resident -= frames.length;
    try {
      await this.notifiers.invalidateRange(lowest, highest + PAGE_SIZE);
    } finally {
      for (const pa of frames) this.ctx.alloc.freePages(pa, 0, { kind: 'process', pid: this.pid });
    }
  }

  // ---- CPU access ----------------------------------------------------------------------------

  /** Software walk of the CPU page tables in RAM: the PA `va` maps to, or null. */
  translate(va: number): number | null {
    if (!Number.isSafeInteger(va) || va < 0 || va >= TASK_SIZE) return null;
    const pa = this.pgtable.translate(va);
    return pa < 0 ? null : pa;
  }

  /** Read process memory as the CPU would: faulting pages in, EFAULT where a SIGSEGV would hit. */
  read(va: number, len: number): Uint8Array {
    this.checkUserRange('read', va, len);
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const cur = va + done;
      const n = Math.min(PAGE_SIZE - (cur % PAGE_SIZE), len - done);
      out.set(this.ctx.ram.read(this.resolve(cur, 'read'), n), done);
      done += n;
    }
    return out;
  }

  /** Write process memory as the CPU would: faulting pages in, EFAULT where a SIGSEGV would hit. */
  write(va: number, data: Uint8Array): void {
    this.checkUserRange('write', va, data.length);
    let done = 0;
    while (done < data.length) {
      const cur = va + done;
      const n = Math.min(PAGE_SIZE - (cur % PAGE_SIZE), data.length - done);
      this.ctx.ram.write(this.resolve(cur, 'write'), data.subarray(done, done + n));
      done += n;
    }
  }

  private checkUserRange(op: string, va: number, len: number): void {
    if (!Number.isSafeInteger(va) || va < 0 || !Number.isSafeInteger(len) || len < 0 || va + len > TASK_SIZE) {
      throw new KernelError('EFAULT', `${op} of ${len} bytes at VA ${va} in pid ${this.pid}: not a user address range`);
    }
  }

  /** PA for a CPU access to `va`, taking the page fault a CPU would. */
  private resolve(va: number, access: Access): number {
    let pa = this.pgtable.translateFor(va, access);
    if (pa >= 0) return pa;
    const r = handleMmFault(this, va, access);
    if (!r.ok) throw new KernelError('EFAULT', `${access} at VA ${hex(va)} in pid ${this.pid}: ${r.reason}${this.describeVmaAt(va)}`);
    pa = this.pgtable.translateFor(va, access);
    if (pa < 0) throw new KernelError('EFAULT', `${access} at VA ${hex(va)} in pid ${this.pid}: still not mapped after the fault was handled`);
    return pa;
  }

  private describeVmaAt(va: number): string {
    const v = this.findVma(va);
    return v ? ` (VMA [${hex(v.start)}, ${hex(v.end)}) ${protString(v.prot)})` : '';
  }

  // ---- reference counting and exit ----------------------------------------------------------

  /** Take a user reference; EINVAL once the address space has exited. */
  // kernel: mmget() [sched/mm.h]
  mmget(): void {
    if (this.usersCount === 0) throw new KernelError('EINVAL', `mmget: address space of pid ${this.pid} has no users left (use mmgetNotZero)`);
    this.usersCount++;
  }

  /** Take a user reference unless the address space is exiting. */
  // kernel: mmget_not_zero() [sched/mm.h]
  mmgetNotZero(): boolean {
    if (this.usersCount === 0) return false;
    this.usersCount++;
    return true;
  }

  /** Drop a user reference; the last one exits the address space. */
  // kernel: mmput() [kernel/fork.c]
  async mmput(): Promise<void> {
    if (this.usersCount === 0) throw new KernelError('EINVAL', `mmput: address space of pid ${this.pid} has no users left`);
    if (--this.usersCount > 0) return;
    try {
      await this.exitMmap();
    } finally {
      this.st = 'exited';
      this.dropRef();
    }
  }

  /** Keep the struct (not the address space) alive. */
  // kernel: mmgrab() [sched/mm.h]
  mmgrab(): void {
    if (this.st === 'freed') throw new KernelError('EINVAL', `mmgrab: mm of pid ${this.pid} was already freed`);
    this.grabs++;
  }

  /** Drop an mmgrab reference; the last reference tears the struct down. */
  // kernel: mmdrop() [sched/mm.h]
  mmdrop(): void {
    if (this.grabs === 0) throw new KernelError('EINVAL', `mmdrop: mm of pid ${this.pid} has no mmgrab reference to drop`);
    this.grabs--;
    if (this.grabs === 0 && this.st === 'exited') this.teardown();
  }

  /**
   * Run `hook` when the struct is torn down (last mmdrop), before the pgd and ASID are freed: where
   * SVA frees the PASID it gave this mm. Returns a function that removes the hook.
   */
  onTeardown(hook: (mm: Mm) => void): () => void {
    if (this.st === 'freed') throw new KernelError('EINVAL', `mm of pid ${this.pid} was already torn down`);
    this.teardownHooks.push(hook);
    return () => {
      const i = this.teardownHooks.indexOf(hook);
      if (i >= 0) this.teardownHooks.splice(i, 1);
    };
  }

  /** The users' shared count reference goes when exit finishes. */
  private dropRef(): void {
    if (this.grabs === 0) this.teardown();
  }

  /** Release notifiers, unmap everything, free the lower tables. */
  // kernel: exit_mmap() [mm/mmap.c]
  private async exitMmap(): Promise<void> {
    this.st = 'exiting';
    let failure: unknown = undefined;
    try {
      await this.notifiers.release(this);
    } catch (e) {
      failure = e;
    }
    const frames: number[] = [];
    const pt = this.pgtable;
    pt.forEachPte(0, TASK_SIZE, (_va, slot, lo, hi) => {
      frames.push(descOutputAddress(lo, hi));
      pt.clearPte(slot);
    });
    for (const pa of frames) this.ctx.alloc.freePages(pa, 0, { kind: 'process', pid: this.pid });
    this.resident = 0;
    this.vmaList = [];
    pt.freeLowerTables();
    if (failure !== undefined) throw failure;
  }

  // kernel: __mmdrop() [kernel/fork.c]
  private teardown(): void {
    this.st = 'freed';
    let failure: unknown = undefined;
    for (const hook of this.teardownHooks.splice(0)) {
      try {
        hook(this);
      } catch (e) {
        failure ??= e;
      }
    }
    this.pgtable.freePgd();
    this.ctx.asids.free(this.asid);
    if (failure !== undefined) throw failure;
  }
}
