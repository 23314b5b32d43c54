/**
 * The guest's Tegra241 CMDQV (the VMM's half, in the shape of QEMU's hw/arm/tegra241-cmdqv.c): one
 * VINTF (VINTF0 in the guest's numbering) backed by a host user VINTF of an iommufd vIOMMU of type
 * TEGRA241_CMDQV.
 *
 * Guest aperture (0x50000 bytes): config page, direct VCMDQ page0/page1, VINTF0 page0, VINTF0 page1.
 * - Trapped and emulated: the config page (CONFIG/STATUS, PARAM from the host's hw_info with one
 *   VINTF, VI_ERR_MAP, VI_INT_MASK, CMDQ_ERR_MAP, CMDQ_ALLOC, VINTF0 CONFIG/STATUS, SID_MATCH/
 *   SID_REPLACE, LVCMDQ_ERR_MAP), both page1 windows (BASE, CONS_INDX_BASE: the guest writes guest
 *   physical addresses, which the host never sees as such) and the direct page0 (an alias of VINTF0's).
 * - VINTF0 page0 is the host VINTF's page0 (the vIOMMU's mmap) passed through with no exits while the
 *   guest has VINTF0 enabled; while it is disabled, page0 traps to a register cache.
 * - HYP_OWN is wired to 0 on every guest write (the uAPI's requirement), the guest's VMID is ignored
 *   (the host VINTF has the VM's), and SID_MATCH/SID_REPLACE writes are only cached: the host programs
 *   the real pairs per vDEVICE, the guest can never name a physical StreamID.
 * - LVCMDQ `lidx` becomes a HW queue (IOMMU_HW_QUEUE_ALLOC, index lidx, the guest's BASE as nesting
 *   parent IOVA, 2^(LOG2SIZE+4) bytes) once CMDQV and VINTF0 are enabled, CMDQ_ALLOC(lidx) has
 *   ALLOCATED and BASE is not 0 (whichever comes last triggers it). An allocation that fails leaves
 *   the slot unmapped (the guest's enable times out) and GERROR.CMDQ_INIT_ERR in the trapped view.
 *   ALLOCATED 1→0, VINTF0 or CMDQV disable free the HW queues, highest index first. A BASE of 0
 *   (the guest driver's deinit) keeps the HW queue; a different non-zero BASE re-creates it.
 * - Errors: a TEGRA241_CMDQV vEVENT (the host VINTF's LVCMDQ_ERR_MAP) latches into the emulated
 *   LVCMDQ_ERR_MAP, CMDQ_ERR_MAP and VI_ERR_MAP bit 0, and injects the guest's CMDQV interrupt unless
 *   VI_INT_MASK bit 0 is set. A latched bit reads as set while that queue's error is active in the
 *   host page0 (GERROR ≠ GERRORN, read through the mmap): the guest's acknowledge clears it. (QEMU
 *   never clears its VI_ERR_MAP; this VMM's choice, since the sources leave it open.)
 * - Queue size: QEMU caps the vSMMU's IDR1.CMDQS so a guest queue fits one host backing page; here
 *   the guest driver's queues are at most 1 MiB (Q_MAX_SZ_SHIFT), naturally aligned, and guest RAM is
 *   host-contiguous in 2 MiB chunks, so the host's IDR1.CMDQS stands (a queue across chunks would be
 *   refused by IOMMU_HW_QUEUE_ALLOC with EFAULT).
 * - HW queues being freed (asynchronously: the host disables each queue and waits) hold back any new
 *   allocation until they are gone, so a guest kexec's reset re-creates its queues cleanly.
 * Not done: CONS_INDX_BASE (cached only); page0 writes the guest makes to an LVCMDQ whose HW queue is
 * held back that way reach an unmapped slot (dropped) and are not replayed.
 */
import { BIT, FIELD_PREP, GENMASK } from '../bus/bitfield.js';
import type { IommufdCtx, IommufdVevent } from '../core/iommufd.js';
import { IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV, IOMMU_VEVENTQ_FLAG_LOST_EVENTS } from '../core/iommufd.js';

/** The guest CMDQV aperture: config, direct page0, direct page1, VINTF0 page0, VINTF0 page1. */
export const VCMDQV_REGION_SIZE = 0x5_0000;
export const VCMDQV_PAGE0 = 0x3_0000;
export const VCMDQV_PAGE_SIZE = 0x1_0000;

// Register offsets (NVIDIA's names, as QEMU's tegra241-cmdqv.h spells them).
const CONFIG = 0x000;
const PARAM = 0x004;
const STATUS = 0x008;
const VI_ERR_MAP_0 = 0x014;
const VI_ERR_MAP_1 = 0x018;
const VI_INT_MASK_0 = 0x01c;
const VI_INT_MASK_1 = 0x020;
const CMDQ_ERR_MAP_0 = 0x024;
const CMDQ_ALLOC_MAP_0 = 0x200;
const VINTF0 = 0x1000;
const VINTF_CONFIG = 0x00;
const VINTF_STATUS = 0x04;
const VINTF_SID_MATCH = 0x40;
const VINTF_SID_REPLACE = 0x80;
const VINTF_LVCMDQ_ERR_MAP = 0xc0;
const DIRECT_PAGE0 = 0x1_0000;
const DIRECT_PAGE1 = 0x2_0000;
const VINTF0_PAGE1 = 0x4_0000;
const VCMDQ_STRIDE = 0x80;
// page0
const VCMDQ_CONS = 0x00;
const VCMDQ_PROD = 0x04;
const VCMDQ_CONFIG = 0x08;
const VCMDQ_STATUS = 0x0c;
const VCMDQ_GERROR = 0x10;
const VCMDQ_GERRORN = 0x14;
// page1
const VCMDQ_BASE_L = 0x00;
const VCMDQ_BASE_H = 0x04;
const VCMDQ_CONS_INDX_BASE_L = 0x08;
const VCMDQ_CONS_INDX_BASE_H = 0x0c;

const CMDQV_EN = BIT(0);
const PARAM_CMDQV_VER = GENMASK(3, 0);
const PARAM_NUM_VCMDQ_LOG2 = GENMASK(7, 4);
const PARAM_NUM_VINTF_LOG2 = GENMASK(11, 8);
const PARAM_NUM_SID_PER_VM_LOG2 = GENMASK(15, 12);
const VINTF_EN = BIT(0);
const VINTF_HYP_OWN = BIT(17);
const VINTF_STATUS_NUM_LVCMDQ = GENMASK(23, 16);
const CMDQ_ALLOCATED = BIT(0);
const VCMDQ_EN = BIT(0);
const GERROR_CMDQ_INIT_ERR = BIT(2);
/** CONFIG at reset (QEMU's V_CONFIG_RESET). */
const CONFIG_RESET = 0x0002_0083;
const BASE_ADDR_MASK = 0x0000_ffff_ffff_ffe0n;
const BASE_LOG2SIZE_MASK = 0x1fn;

/** The host CMDQV's shape (IOMMU_GET_HW_INFO type TEGRA241_CMDQV). */
export interface VCmdqvParams {
  version: number;
  log2vcmdqs: number;
  log2vsids: number;
}

export interface VCmdqvHost {
  readonly iommufd: IommufdCtx;
  readonly viommuId: number;
  /** Read a 32-bit register of the host VINTF page0 through the VMM's mmap (offset in the page). */
  readPage0(off: number): number;
  /** Map (true) or unmap (false) the host page0 into the guest at the VINTF0 page0 window. */
  mapPage0(on: boolean): void;
  /** Raise the guest's CMDQV interrupt. */
  inject(): void;
  log(msg: string): void;
}

interface Lvcmdq {
  /** page0 register cache (while page0 is not mapped). */
  cons: number;
  prod: number;
  config: number;
  gerror: number;
  gerrorn: number;
  base: bigint;
  consIndxBase: bigint;
  /** The HW queue's iommufd ID, or 0. */
  hwq: number;
  /** The BASE it was created with. */
  hwqBase: bigint;
}

export interface VCmdqvStats {
  hwQueuesAllocated: number;
  hwQueuesFreed: number;
  hwQueueFailures: number;
  /** vEVENTs received and interrupts injected for them. */
  errorEvents: number;
  injected: number;
}

export class VCmdqv {
  private config = CONFIG_RESET;
  private readonly viIntMask = [0, 0];
  private readonly cmdqAlloc: number[];
  private vintfConfig = 0;
  private readonly sidMatch: number[];
  private readonly sidReplace: number[];
  private readonly q: Lvcmdq[];
  /** LVCMDQ error bits latched from vEVENTs (bit = lidx). */
  private latched = 0n;
  private page0Mapped = false;
  /** Frees run one after another (each disables a queue and waits for the hardware). */
  private work: Promise<void> = Promise.resolve();
  private pendingFrees = 0;
  private dead = false;
  readonly stats: VCmdqvStats = { hwQueuesAllocated: 0, hwQueuesFreed: 0, hwQueueFailures: 0, errorEvents: 0, injected: 0 };

  constructor(
    private readonly host: VCmdqvHost,
    readonly params: VCmdqvParams,
  ) {
    const n = 1 << params.log2vcmdqs;
    this.cmdqAlloc = new Array<number>(n).fill(0);
    this.sidMatch = new Array<number>(1 << params.log2vsids).fill(0);
    this.sidReplace = new Array<number>(1 << params.log2vsids).fill(0);
    this.q = Array.from({ length: n }, () => ({ cons: 0, prod: 0, config: 0, gerror: 0, gerrorn: 0, base: 0n, consIndxBase: 0n, hwq: 0, hwqBase: 0n }));
  }

  /** LVCMDQs of the guest's VINTF0. */
  get numLvcmdqs(): number {
    return this.q.length;
  }

  /** PARAM as the guest reads it: the host's version, queues and SID pairs, one VINTF. */
  get param(): number {
    const p = this.params;
    return (
      FIELD_PREP(PARAM_CMDQV_VER, p.version & PARAM_CMDQV_VER) |
      FIELD_PREP(PARAM_NUM_VCMDQ_LOG2, p.log2vcmdqs & 0xf) |
      FIELD_PREP(PARAM_NUM_VINTF_LOG2, 0) |
      FIELD_PREP(PARAM_NUM_SID_PER_VM_LOG2, p.log2vsids & 0xf)
    ) >>> 0;
  }

  /** The HW queue IDs by LVCMDQ (0: none). */
  get hwQueues(): readonly number[] {
    return this.q.map((l) => l.hwq);
  }

  /** Whether VINTF0 page0 is passed through now. */
  get page0PassedThrough(): boolean {
    return this.page0Mapped;
  }

  /** Pending HW queue frees are done. */
  settled(): Promise<void> {
    return this.work;
  }

  // ---- MMIO (offsets in the guest aperture) ----

  read32(off: number): number {
    if (off >= VINTF0_PAGE1) return this.page1Read(off - VINTF0_PAGE1);
    if (off >= VCMDQV_PAGE0) return this.page0CacheRead(off - VCMDQV_PAGE0);
    if (off >= DIRECT_PAGE1) return this.page1Read(off - DIRECT_PAGE1);
    if (off >= DIRECT_PAGE0) return this.page0Read(off - DIRECT_PAGE0);
    return this.configRead(off);
  }

  write32(off: number, v: number): void {
    v >>>= 0;
    if (off >= VINTF0_PAGE1) return this.page1Write(off - VINTF0_PAGE1, v);
    if (off >= VCMDQV_PAGE0) return this.page0CacheWrite(off - VCMDQV_PAGE0, v);
    if (off >= DIRECT_PAGE1) return this.page1Write(off - DIRECT_PAGE1, v);
    if (off >= DIRECT_PAGE0) return this.page0Write(off - DIRECT_PAGE0, v);
    this.configWrite(off, v);
  }

  private configRead(off: number): number {
    switch (off) {
      case CONFIG:
        return this.config;
      case PARAM:
        return this.param;
      case STATUS:
        return this.config & CMDQV_EN;
      case VI_ERR_MAP_0:
        return this.activeErrors() !== 0n ? 1 : 0;
      case VI_ERR_MAP_1:
        return 0;
      case VI_INT_MASK_0:
      case VI_INT_MASK_1:
        return this.viIntMask[(off - VI_INT_MASK_0) / 4];
      case VINTF0 + VINTF_CONFIG:
        return this.vintfConfig;
      case VINTF0 + VINTF_STATUS:
        return ((this.vintfConfig & VINTF_EN) | FIELD_PREP(VINTF_STATUS_NUM_LVCMDQ, this.q.length)) >>> 0;
    }
    if (off >= CMDQ_ERR_MAP_0 && off < CMDQ_ERR_MAP_0 + 16) return this.errWord((off - CMDQ_ERR_MAP_0) / 4);
    if (off >= VINTF0 + VINTF_LVCMDQ_ERR_MAP && off < VINTF0 + VINTF_LVCMDQ_ERR_MAP + 16) return this.errWord((off - VINTF0 - VINTF_LVCMDQ_ERR_MAP) / 4);
    if (off >= CMDQ_ALLOC_MAP_0 && off < CMDQ_ALLOC_MAP_0 + 4 * this.q.length) return this.cmdqAlloc[(off - CMDQ_ALLOC_MAP_0) / 4];
    const s = this.sidIndex(off);
    if (s) return s.replace ? this.sidReplace[s.i] : this.sidMatch[s.i];
    this.host.log(`vCMDQV: read of unknown offset 0x${off.toString(16)} (RAZ)`);
    return 0;
  }

  private configWrite(off: number, v: number): void {
    switch (off) {
      case CONFIG: {
        const was = this.config & CMDQV_EN;
        this.config = v;
        if (was && !(v & CMDQV_EN)) this.freeFrom(0);
        if (!was && v & CMDQV_EN) this.setupAll();
        return;
      }
      case VI_INT_MASK_0:
      case VI_INT_MASK_1:
        this.viIntMask[(off - VI_INT_MASK_0) / 4] = v;
        return;
      case VINTF0 + VINTF_CONFIG: {
        const was = this.vintfConfig & VINTF_EN;
        // The host VINTF is HYP_OWN=0 with the VM's VMID: the guest's bits only show.
        this.vintfConfig = (v & ~VINTF_HYP_OWN) >>> 0;
        if (was && !(v & VINTF_EN)) {
          this.setPage0(false);
          this.freeFrom(0);
        }
        if (!was && v & VINTF_EN) {
          this.setPage0(true);
          this.setupAll();
        }
        return;
      }
    }
    if (off >= CMDQ_ALLOC_MAP_0 && off < CMDQ_ALLOC_MAP_0 + 4 * this.q.length) {
      const i = (off - CMDQ_ALLOC_MAP_0) / 4;
      const was = this.cmdqAlloc[i] & CMDQ_ALLOCATED;
      this.cmdqAlloc[i] = v;
      if (was && !(v & CMDQ_ALLOCATED)) this.freeFrom(i);
      if (!was && v & CMDQ_ALLOCATED) this.setup(i);
      return;
    }
    const s = this.sidIndex(off);
    if (s) {
      // Cached only: the host programs the real pairs when the VMM creates a vDEVICE.
      if (s.replace) this.sidReplace[s.i] = v;
      else this.sidMatch[s.i] = v;
      return;
    }
    this.host.log(`vCMDQV: write 0x${v.toString(16)} to unknown or read-only offset 0x${off.toString(16)} (ignored)`);
  }

  private sidIndex(off: number): { i: number; replace: boolean } | null {
    const n = this.sidMatch.length;
    for (const [base, replace] of [
      [VINTF0 + VINTF_SID_MATCH, false],
      [VINTF0 + VINTF_SID_REPLACE, true],
    ] as const) {
      if (off >= base && off < base + 4 * n) return { i: (off - base) / 4, replace };
    }
    return null;
  }

  // ---- page0 ----

  private lvcmdqAt(off: number): { l: Lvcmdq; lidx: number; reg: number } | null {
    const lidx = Math.floor(off / VCMDQ_STRIDE);
    const l = this.q[lidx];
    return l ? { l, lidx, reg: off % VCMDQ_STRIDE } : null;
  }

  /** Direct page0: the hardware's alias of VINTF0's (the host page while mapped). */
  private page0Read(off: number): number {
    if (this.page0Mapped) return off < VCMDQV_PAGE_SIZE ? this.host.readPage0(off) : 0;
    return this.page0CacheRead(off);
  }

  private page0Write(off: number, v: number): void {
    // The direct aperture stays trapped; while the host page is mapped the guest reaches the
    // queues through VINTF0 page0 (as its driver does), so writes here are dropped.
    if (this.page0Mapped) {
      this.host.log(`vCMDQV: write to direct page0 offset 0x${off.toString(16)} while VINTF0 page0 is mapped (dropped)`);
      return;
    }
    this.page0CacheWrite(off, v);
  }

  /** VINTF0 page0 while it is not passed through. */
  private page0CacheRead(off: number): number {
    const at = this.lvcmdqAt(off);
    if (!at) return 0;
    const { l, reg } = at;
    switch (reg) {
      case VCMDQ_CONS:
        return l.cons;
      case VCMDQ_PROD:
        return l.prod;
      case VCMDQ_CONFIG:
        return l.config;
      case VCMDQ_STATUS:
        return l.gerror & GERROR_CMDQ_INIT_ERR ? 0 : l.config & VCMDQ_EN;
      case VCMDQ_GERROR:
        return l.gerror;
      case VCMDQ_GERRORN:
        return l.gerrorn;
    }
    return 0;
  }

  private page0CacheWrite(off: number, v: number): void {
    const at = this.lvcmdqAt(off);
    if (!at) return;
    const { l, reg } = at;
    if (reg === VCMDQ_CONS) l.cons = v;
    else if (reg === VCMDQ_PROD) l.prod = v;
    else if (reg === VCMDQ_CONFIG) l.config = v;
    else if (reg === VCMDQ_GERRORN) l.gerrorn = v;
  }

  // ---- page1 ----

  private page1Read(off: number): number {
    const at = this.lvcmdqAt(off);
    if (!at) return 0;
    const { l, reg } = at;
    switch (reg) {
      case VCMDQ_BASE_L:
        return Number(l.base & 0xffff_ffffn);
      case VCMDQ_BASE_H:
        return Number(l.base >> 32n);
      case VCMDQ_CONS_INDX_BASE_L:
        return Number(l.consIndxBase & 0xffff_ffffn);
      case VCMDQ_CONS_INDX_BASE_H:
        return Number(l.consIndxBase >> 32n);
    }
    return 0;
  }

  private page1Write(off: number, v: number): void {
    const at = this.lvcmdqAt(off);
    if (!at) return;
    const { l, lidx, reg } = at;
    const lo = (x: bigint): bigint => (x & ~0xffff_ffffn) | BigInt(v);
    const hi = (x: bigint): bigint => (x & 0xffff_ffffn) | (BigInt(v) << 32n);
    if (reg === VCMDQ_BASE_L) l.base = lo(l.base);
    else if (reg === VCMDQ_BASE_H) l.base = hi(l.base);
    else if (reg === VCMDQ_CONS_INDX_BASE_L) l.consIndxBase = lo(l.consIndxBase);
    else if (reg === VCMDQ_CONS_INDX_BASE_H) l.consIndxBase = hi(l.consIndxBase);
    if (reg === VCMDQ_BASE_L || reg === VCMDQ_BASE_H) this.setup(lidx);
  }

  // ---- HW queues ----

  private setPage0(on: boolean): void {
    if (on === this.page0Mapped) return;
    this.page0Mapped = on;
    this.host.mapPage0(on);
  }

  private setupAll(): void {
    for (let i = 0; i < this.q.length; i++) this.setup(i);
  }

  /** Create LVCMDQ `lidx`'s HW queue if every precondition holds now. */
  private setup(lidx: number): void {
    if (this.dead) return;
    const l = this.q[lidx];
    const addr = l.base & BASE_ADDR_MASK;
    if (!(this.config & CMDQV_EN) || !(this.vintfConfig & VINTF_EN) || !(this.cmdqAlloc[lidx] & CMDQ_ALLOCATED) || addr === 0n) return;
    if (this.pendingFrees > 0) {
      // The host still holds queues being freed (a reset in progress): decide once they are gone.
      this.work = this.work.then(() => this.setup(lidx));
      return;
    }
    if (l.hwq) {
      if (l.hwqBase === l.base) return;
      // Another queue: give the old one back first, then take the new one (deferred above).
      this.freeFrom(lidx);
      this.setup(lidx);
      return;
    }
    const length = 2 ** (Number(l.base & BASE_LOG2SIZE_MASK) + 4);
    try {
      l.hwq = this.host.iommufd.hwQueueAlloc(this.host.viommuId, IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV, lidx, Number(addr), length);
      l.hwqBase = l.base;
      l.gerror &= ~GERROR_CMDQ_INIT_ERR;
      this.stats.hwQueuesAllocated++;
    } catch (e) {
      l.gerror |= GERROR_CMDQ_INIT_ERR;
      this.stats.hwQueueFailures++;
      this.host.log(`vCMDQV: LVCMDQ${lidx}: HW queue of ${length} bytes at IPA 0x${addr.toString(16)} refused: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /** Free the HW queues of LVCMDQ `from` and above, highest first. */
  private freeFrom(from: number): void {
    for (let i = this.q.length - 1; i >= from; i--) {
      const l = this.q[i];
      if (!l.hwq) continue;
      const id = l.hwq;
      l.hwq = 0;
      l.hwqBase = 0n;
      this.pendingFrees++;
      this.work = this.work.then(async () => {
        try {
          await this.host.iommufd.destroy(id);
          this.stats.hwQueuesFreed++;
        } catch (e) {
          this.host.log(`vCMDQV: LVCMDQ${i}: freeing HW queue ${id} failed: ${e instanceof Error ? e.message : String(e)}`);
        } finally {
          this.pendingFrees--;
        }
      });
    }
  }

  // ---- errors ----

  /** A TEGRA241_CMDQV vEVENT: the host VINTF's LVCMDQ_ERR_MAP. */
  deliver(ev: IommufdVevent): void {
    if (ev.flags & IOMMU_VEVENTQ_FLAG_LOST_EVENTS) {
      this.host.log('vCMDQV: vEVENTs were lost');
      return;
    }
    const d = ev.data;
    const map = BigInt(d[0] ?? 0) | (BigInt(d[1] ?? 0) << 32n) | (BigInt(d[2] ?? 0) << 64n) | (BigInt(d[3] ?? 0) << 96n);
    if (map === 0n) return;
    this.stats.errorEvents++;
    this.latched |= map;
    if (!(this.viIntMask[0] & 1)) {
      this.stats.injected++;
      this.host.inject();
    }
  }

  /** Latched error bits whose queue still has its error active (GERROR ≠ GERRORN in the host page). */
  private activeErrors(): bigint {
    let m = this.latched;
    for (let lidx = 0; m >> BigInt(lidx) !== 0n; lidx++) {
      const bit = 1n << BigInt(lidx);
      if (!(m & bit)) continue;
      const active = this.page0Mapped && this.q[lidx]?.hwq ? this.host.readPage0(VCMDQ_STRIDE * lidx + VCMDQ_GERROR) !== this.host.readPage0(VCMDQ_STRIDE * lidx + VCMDQ_GERRORN) : false;
      if (!active) m &= ~bit;
    }
    this.latched = m;
    return m;
  }

  private errWord(w: number): number {
    return Number((this.activeErrors() >> BigInt(32 * w)) & 0xffff_ffffn);
  }

  /** The VM is going away: no more HW queues. */
  kill(): void {
    this.dead = true;
  }
}
