/**
 * The SMMUv3 command queue (kernel: the "High-level queue accessors" and "Command queue insertion"
 * parts of arm-smmu-v3.c): building commands, inserting them, CMD_SYNC completion, batches, and the
 * recovery from a command error.
 *
 * How it maps onto the kernel's lock-free insertion: JavaScript runs one task at a time, so writing a
 * batch of commands and publishing PROD in one synchronous stretch already has the atomicity the
 * kernel's owner/valid-map dance buys. Waiting is what needs time: a CMD_SYNC completes only when the
 * SMMU consumes it in a later scheduler step, so waits are async and poll on virtual time with the
 * kernel's timeout (ARM_SMMU_POLL_TIMEOUT_US) and a doubling delay, as `queue_poll()` does after its
 * spins (a spin costs no virtual time here, so it would see nothing new).
 *
 * Completion of a CMD_SYNC is seen as the kernel sees it: with ARM_SMMU_OPT_MSIPOLL the SYNC carries
 * CS=IRQ and an MSI address pointing at its own entry, and the SMMU's MSI write zeroes the entry's
 * first word; otherwise CS=SEV and the driver polls CMDQ_CONS past the SYNC. Between checks of the MSI
 * word the kernel waits in wfe with the word in its exclusive monitor (smp_cond_load_relaxed()), so
 * the SMMU's MSI write itself wakes it: here the waiter arms the CPU port's `monitor` on the entry and
 * sleeps until the write lands, with one watchdog timer per queue enforcing the timeout. The wired
 * `cmdq-sync` interrupt is not used (Linux never requests it). Without a monitor, and when polling
 * CONS, the waiter sleeps 1, 2, 4 … µs.
 *
 * Two insertion paths:
 * - `issueCmdlist(cmds, n, sync)` (async): inserts and, with `sync`, waits for the CMD_SYNC;
 * - `issueCmdlistNowait(cmds, n)`: for callers that cannot wait (io-pgtable's flush callbacks run
 *   inside a synchronous unmap): inserts the commands plus a CMD_SYNC and returns; the sync is
 *   recorded as outstanding and `waitOutstanding()` (called by iotlb_sync, flush_iotlb_all, …) waits
 *   for it. If the queue has no room, commands are kept in order in a backlog that the next async
 *   operation pushes out as the SMMU frees entries.
 *
 * One file over ~700 lines on purpose: it is one job of arm-smmu-v3.c, the command queue (builders,
 * insertion, CMD_SYNC waits and error recovery share the queue state and its backlog).
 */
import { KernelError, type Errno } from '../../bus/errno.js';
import { rawSmpProcessorId } from '../../bus/smp.js';
import type { KernelLog } from '../../bus/log.js';
import type { CpuPort, CpuTimer } from '../../hw/cpu-port.js';
import { ArmSmmuQueue } from './arm-smmu-v3-queue.js';
import { FIELD_GET } from '../../bus/bitfield.js';
import {
  ARM_SMMU_MEMATTR_OIWB,
  ARM_SMMU_OPT_CMDQ_FORCE_SYNC,
  ARM_SMMU_OPT_MSIPOLL,
  ARM_SMMU_POLL_TIMEOUT_US,
  ARM_SMMU_SH_ISH,
  CMDQ_0_OP,
  CMDQ_0_SSV,
  CMDQ_ATC_0_GLOBAL,
  CMDQ_ATC_0_SID,
  CMDQ_ATC_0_SSID,
  CMDQ_ATC_1_ADDR_MASK,
  CMDQ_ATC_1_SIZE,
  CMDQ_BATCH_ENTRIES,
  CMDQ_CFGI_0_SID,
  CMDQ_CFGI_0_SSID,
  CMDQ_CFGI_1_LEAF,
  CMDQ_CFGI_1_RANGE,
  CMDQ_CONS_ERR,
  CMDQ_ENT_WORDS,
  CMDQ_ERR_CERROR_ABT_IDX,
  CMDQ_ERR_CERROR_ATC_INV_IDX,
  CMDQ_ERR_CERROR_ILL_IDX,
  CMDQ_ERR_CERROR_NONE_IDX,
  CMDQ_OP_ATC_INV,
  CMDQ_OP_CFGI_ALL,
  CMDQ_OP_CFGI_CD,
  CMDQ_OP_CFGI_CD_ALL,
  CMDQ_OP_CFGI_STE,
  CMDQ_OP_CMD_SYNC,
  CMDQ_OP_NAMES,
  CMDQ_OP_PREFETCH_CFG,
  CMDQ_OP_PRI_RESP,
  CMDQ_OP_RESUME,
  CMDQ_OP_STALL_TERM,
  CMDQ_STALL_TERM_0_SID,
  CMDQ_OP_TLBI_EL2_ALL,
  CMDQ_OP_TLBI_EL2_ASID,
  CMDQ_OP_TLBI_EL2_VA,
  CMDQ_OP_TLBI_NH_ASID,
  CMDQ_OP_TLBI_NH_VA,
  CMDQ_OP_TLBI_NSNH_ALL,
  CMDQ_OP_TLBI_S12_VMALL,
  CMDQ_OP_TLBI_S2_IPA,
  CMDQ_PREFETCH_0_SID,
  CMDQ_PRI_0_SID,
  CMDQ_PRI_0_SSID,
  CMDQ_PRI_1_GRPID,
  CMDQ_PRI_1_RESP,
  CMDQ_RESUME_0_RESP,
  CMDQ_RESUME_0_SID,
  CMDQ_RESUME_1_STAG,
  CMDQ_SYNC_0_CS,
  CMDQ_SYNC_0_CS_IRQ,
  CMDQ_SYNC_0_CS_NONE,
  CMDQ_SYNC_0_CS_SEV,
  CMDQ_SYNC_0_MSH,
  CMDQ_SYNC_0_MSIATTR,
  CMDQ_SYNC_1_MSIADDR_MASK,
  CMDQ_TLBI_0_ASID,
  CMDQ_TLBI_0_NUM,
  CMDQ_TLBI_0_SCALE,
  CMDQ_TLBI_0_VMID,
  CMDQ_TLBI_1_IPA_MASK,
  CMDQ_TLBI_1_LEAF,
  CMDQ_TLBI_1_TG,
  CMDQ_TLBI_1_TTL,
  CMDQ_TLBI_1_VA_MASK,
  PRI_RESP_DENY,
  PRI_RESP_FAIL,
  PRI_RESP_SUCC,
} from './arm-smmu-v3-regs.js';

const LOG_NS = 'iommu:drivers:arm-smmu-v3';
const hex = (v: number): string => `0x${v.toString(16)}`;
const hex8 = (v: number): string => `0x${(v >>> 0).toString(16).padStart(8, '0')}`;

/**
 * A command before encoding (kernel: struct arm_smmu_cmdq_ent). Only the part named by the opcode is
 * read; hot paths reuse one object and change its fields, so building costs no allocation.
 */
export interface ArmSmmuCmdqEnt {
  opcode: number;
  substreamValid?: boolean;
  prefetch?: { sid: number };
  cfgi?: { sid: number; ssid: number; leaf: boolean };
  tlbi?: { num: number; scale: number; asid: number; vmid: number; leaf: boolean; ttl: number; tg: number; addr: number };
  atc?: { sid: number; ssid: number; size: number; addr: number; global: boolean };
  pri?: { sid: number; ssid: number; grpid: number; resp: number };
  resume?: { sid: number; stag: number; resp: number };
  stallTerm?: { sid: number };
  sync?: { msiaddr: number };
}

/** A fresh TLBI part of a command entry. */
export function tlbiEnt(): NonNullable<ArmSmmuCmdqEnt['tlbi']> {
  return { num: 0, scale: 0, asid: 0, vmid: 0, leaf: false, ttl: 0, tg: 0, addr: 0 };
}

/** `addr` rounded down to 4 KiB (a power-of-two division: exact, and cheaper than `%` above 2^31). */
function pageDown(addr: number): number {
  return Math.floor(addr / 4096) * 4096;
}

function need<T>(part: T | undefined, ent: ArmSmmuCmdqEnt, what: string): T {
  if (part === undefined) throw new KernelError('EINVAL', `CMDQ opcode ${hex(ent.opcode)} needs its ${what} fields`);
  return part;
}

/**
 * The last TLBI by VA encoded: its fields other than the address, and its first three words without
 * the address bits. A domain's unmaps repeat the same fields with a new address, so those are
 * encoded (and checked) once and the words copied, as the CMD_SYNC is (`buildSyncCmd`).
 */
const tlbiVaMemo = { nh: false, vmid: -1, num: 0, scale: 0, asid: 0, leaf: false, ttl: 0, tg: 0, w0: 0, w1: 0, w2: 0 };

/** The range fields (NUM, SCALE, TTL, TG) and Leaf of a TLBI by address, by VA or by IPA. */
function prepTlbiRange(cmd: Uint32Array, off: number, t: NonNullable<ArmSmmuCmdqEnt['tlbi']>): void {
  CMDQ_TLBI_0_NUM.prep(cmd, t.num, off);
  CMDQ_TLBI_0_SCALE.prep(cmd, t.scale, off);
  if (t.leaf) CMDQ_TLBI_1_LEAF.prep(cmd, 1, off);
  CMDQ_TLBI_1_TTL.prep(cmd, t.ttl, off);
  CMDQ_TLBI_1_TG.prep(cmd, t.tg, off);
}

/** The fields of a TLBI by VA (NH_VA with its VMID, EL2_VA without): the command of every unmap. */
function buildTlbiVa(cmd: Uint32Array, off: number, nh: boolean, t: NonNullable<ArmSmmuCmdqEnt['tlbi']>): void {
  const m = tlbiVaMemo;
  if (m.nh === nh && m.vmid === t.vmid && m.asid === t.asid && m.num === t.num && m.scale === t.scale && m.leaf === t.leaf && m.ttl === t.ttl && m.tg === t.tg) {
    cmd[off] = m.w0;
    cmd[off + 1] = m.w1;
    cmd[off + 2] = m.w2;
  } else {
    if (nh) CMDQ_TLBI_0_VMID.prep(cmd, t.vmid, off);
    CMDQ_TLBI_0_ASID.prep(cmd, t.asid, off);
    prepTlbiRange(cmd, off, t);
    // (Recorded only once every field was accepted: a value that throws is never remembered.)
    m.nh = nh;
    m.vmid = t.vmid;
    m.asid = t.asid;
    m.num = t.num;
    m.scale = t.scale;
    m.leaf = t.leaf;
    m.ttl = t.ttl;
    m.tg = t.tg;
    m.w0 = cmd[off];
    m.w1 = cmd[off + 1];
    m.w2 = cmd[off + 2];
  }
  CMDQ_TLBI_1_VA_MASK.prep(cmd, pageDown(t.addr), off);
}

/**
 * Encode `ent` into the 4 words at `cmd[off..off+3]`. Returns 0, EINVAL for a bad PRI response code,
 * ENOENT for an opcode the driver does not know.
 */
// kernel: arm_smmu_cmdq_build_cmd() [arm-smmu-v3.c]
export function armSmmuCmdqBuildCmd(cmd: Uint32Array, off: number, ent: ArmSmmuCmdqEnt): 0 | 'EINVAL' | 'ENOENT' {
  cmd[off] = 0;
  cmd[off + 1] = 0;
  cmd[off + 2] = 0;
  cmd[off + 3] = 0;
  CMDQ_0_OP.prep(cmd, ent.opcode & 0xff, off);
  // (Cases are compared in order: the TLBI by VA of every unmap first.)
  switch (ent.opcode) {
    case CMDQ_OP_TLBI_NH_VA:
    case CMDQ_OP_TLBI_EL2_VA:
      buildTlbiVa(cmd, off, ent.opcode === CMDQ_OP_TLBI_NH_VA, need(ent.tlbi, ent, 'tlbi'));
      break;
    case CMDQ_OP_TLBI_EL2_ALL:
    case CMDQ_OP_TLBI_NSNH_ALL:
      break;
    case CMDQ_OP_PREFETCH_CFG:
      CMDQ_PREFETCH_0_SID.prep(cmd, need(ent.prefetch, ent, 'prefetch').sid, off);
      break;
    case CMDQ_OP_CFGI_CD:
    case CMDQ_OP_CFGI_STE: {
      const c = need(ent.cfgi, ent, 'cfgi');
      if (ent.opcode === CMDQ_OP_CFGI_CD) CMDQ_CFGI_0_SSID.prep(cmd, c.ssid, off);
      CMDQ_CFGI_0_SID.prep(cmd, c.sid, off);
      if (c.leaf) CMDQ_CFGI_1_LEAF.prep(cmd, 1, off);
      break;
    }
    case CMDQ_OP_CFGI_CD_ALL:
      CMDQ_CFGI_0_SID.prep(cmd, need(ent.cfgi, ent, 'cfgi').sid, off);
      break;
    case CMDQ_OP_CFGI_ALL:
      // Cover the entire SID range.
      CMDQ_CFGI_1_RANGE.prep(cmd, 31, off);
      break;
    case CMDQ_OP_TLBI_S2_IPA: {
      const t = need(ent.tlbi, ent, 'tlbi');
      CMDQ_TLBI_0_VMID.prep(cmd, t.vmid, off);
      prepTlbiRange(cmd, off, t);
      CMDQ_TLBI_1_IPA_MASK.prep(cmd, pageDown(t.addr), off);
      break;
    }
    case CMDQ_OP_TLBI_NH_ASID:
    case CMDQ_OP_TLBI_S12_VMALL: {
      const t = need(ent.tlbi, ent, 'tlbi');
      if (ent.opcode === CMDQ_OP_TLBI_NH_ASID) CMDQ_TLBI_0_ASID.prep(cmd, t.asid, off);
      CMDQ_TLBI_0_VMID.prep(cmd, t.vmid, off);
      break;
    }
    case CMDQ_OP_TLBI_EL2_ASID:
      CMDQ_TLBI_0_ASID.prep(cmd, need(ent.tlbi, ent, 'tlbi').asid, off);
      break;
    case CMDQ_OP_ATC_INV: {
      const a = need(ent.atc, ent, 'atc');
      if (ent.substreamValid) CMDQ_0_SSV.prep(cmd, 1, off);
      if (a.global) CMDQ_ATC_0_GLOBAL.prep(cmd, 1, off);
      CMDQ_ATC_0_SSID.prep(cmd, a.ssid, off);
      CMDQ_ATC_0_SID.prep(cmd, a.sid, off);
      CMDQ_ATC_1_SIZE.prep(cmd, a.size, off);
      CMDQ_ATC_1_ADDR_MASK.prep(cmd, pageDown(a.addr), off);
      break;
    }
    case CMDQ_OP_PRI_RESP: {
      const p = need(ent.pri, ent, 'pri');
      if (ent.substreamValid) CMDQ_0_SSV.prep(cmd, 1, off);
      CMDQ_PRI_0_SSID.prep(cmd, p.ssid, off);
      CMDQ_PRI_0_SID.prep(cmd, p.sid, off);
      CMDQ_PRI_1_GRPID.prep(cmd, p.grpid, off);
      if (p.resp !== PRI_RESP_DENY && p.resp !== PRI_RESP_FAIL && p.resp !== PRI_RESP_SUCC) return 'EINVAL';
      CMDQ_PRI_1_RESP.prep(cmd, p.resp, off);
      break;
    }
    case CMDQ_OP_RESUME: {
      const r = need(ent.resume, ent, 'resume');
      CMDQ_RESUME_0_SID.prep(cmd, r.sid, off);
      CMDQ_RESUME_0_RESP.prep(cmd, r.resp, off);
      CMDQ_RESUME_1_STAG.prep(cmd, r.stag, off);
      break;
    }
    case CMDQ_OP_STALL_TERM:
      CMDQ_STALL_TERM_0_SID.prep(cmd, need(ent.stallTerm, ent, 'stallTerm').sid, off);
      break;
    case CMDQ_OP_CMD_SYNC:
      if (ent.sync && ent.sync.msiaddr) {
        CMDQ_SYNC_0_CS.prep(cmd, CMDQ_SYNC_0_CS_IRQ, off);
        CMDQ_SYNC_1_MSIADDR_MASK.prep(cmd, Math.floor(ent.sync.msiaddr / 4) * 4, off);
      } else {
        CMDQ_SYNC_0_CS.prep(cmd, CMDQ_SYNC_0_CS_SEV, off);
      }
      CMDQ_SYNC_0_MSH.prep(cmd, ARM_SMMU_SH_ISH, off);
      CMDQ_SYNC_0_MSIATTR.prep(cmd, ARM_SMMU_MEMATTR_OIWB, off);
      break;
    default:
      return 'ENOENT';
  }
  return 0;
}

/** What the command queue needs from its SMMU (PROD/CONS are reached through the queue's own page). */
export interface CmdqHost {
  /** Device name for messages. */
  readonly name: string;
  readonly port: CpuPort;
  readonly log: KernelLog;
  /** ARM_SMMU_OPT_* */
  readonly options: number;
}

/** What a batch needs from its SMMU: the queue a command goes to (absent: always the main queue). */
export interface CmdqBatchHost extends CmdqHost {
  // kernel: arm_smmu_get_cmdq() [arm-smmu-v3.c]
  getCmdq?(ent: ArmSmmuCmdqEnt): ArmSmmuCmdq;
}

export interface CmdqStats {
  /** Commands written to the queue, CMD_SYNCs included. */
  commands: number;
  syncs: number;
  /** CMD_SYNC waits that gave up after ARM_SMMU_POLL_TIMEOUT_US. */
  syncTimeouts: number;
  /** Commands skipped after CERROR_ILL. */
  skipped: number;
  /** Command errors seen, by CMDQ_CONS.ERR. */
  errors: number;
  /** Times the queue was full and commands waited in the backlog. */
  backlogged: number;
}

/** Commands that found no room, kept in order until the SMMU frees entries. */
interface BacklogItem {
  words: Uint32Array;
  n: number;
  sync: boolean;
  /** Called with the absolute position of the item's CMD_SYNC (or -1) once written. */
  written: (syncAbs: number) => void;
  /** Called if it can never be written (the queue stopped). */
  failed: (e: Errno) => void;
}

/** The kernel's ARM_SMMU_POLL_SPIN_COUNT — cpu_relax() spins between the udelay()s of a busy poll. */
const ARM_SMMU_POLL_SPIN_COUNT = 10;
/**
 * Virtual time one busy-poll spin costs (a cpu_relax() and an uncached CONS read). An input of the
 * model, not a kernel constant: only busy-polled queues (Grace VCMDQs) spin.
 */
export const CMDQ_POLL_SPIN_NS = 50;

/**
 * Cache lines of a queue's shared state that every insertion writes (kernel:
 * arm_smmu_cmdq_issue_cmdlist(): the cmpxchg on cmdq->q.llq that reserves the slots, the
 * valid_map bits, the shared lock count a CMD_SYNC takes, the owner's owner_prod): when the previous
 * insertion came from another CPU, each is first fetched from that CPU's cache.
 */
const CMDQ_INSERT_SHARED_LINES = 4;

/** How often sleeping CMD_SYNC waiters check their timeout when no interrupt comes (1/16 of it). */
const CMDQ_WATCHDOG_NS = (ARM_SMMU_POLL_TIMEOUT_US * 1000) / 16;

const answerZero = (): 0 => 0;

/** The settled answer of a CMD_SYNC wait that found its SYNC already complete. */
const SYNC_DONE: Promise<0> = Promise.resolve(0);

const CERROR_STR = ['No error', 'Illegal command', 'Abort on command fetch', 'ATC invalidate timeout'];

/** The kernel's struct arm_smmu_cmdq */
export class ArmSmmuCmdq {
  readonly stats: CmdqStats = { commands: 0, syncs: 0, syncTimeouts: 0, skipped: 0, errors: 0, backlogged: 0 };
  /** Absolute position of the newest CMD_SYNC inserted without a waiter, or -1. */
  private outstandingSync = -1;
  private backlog: BacklogItem[] = [];
  private draining: Promise<void> | null = null;
  private readonly syncWords = new Uint32Array(CMDQ_ENT_WORDS);
  private readonly syncEnt: ArmSmmuCmdqEnt = { opcode: CMDQ_OP_CMD_SYNC, sync: { msiaddr: 0 } };
  /** What `syncWords` holds: -1 nothing yet, 0 CS=SEV, 1 CS=IRQ with an MSI address, 2 CS=NONE. */
  private syncMode = -1;
  private readonly oneCmd = new Uint32Array(CMDQ_ENT_WORDS);
  /** Tests may observe every command as it is written (opcode + the 4 words). */
  onCommand: ((words: Uint32Array, off: number) => void) | null = null;
  /**
   * The commands this queue takes, null for all (kernel: cmdq->supports_cmd). A Grace VCMDQ of a
   * guest-owned VINTF takes only invalidations.
   */
  supportsCmd: ((ent: ArmSmmuCmdqEnt) => boolean) | null = null;
  /**
   * CMD_SYNC completion is polled on CONS with CS=NONE, never signalled (kernel:
   * arm_smmu_cmdq_needs_busy_polling(), true for a Grace VCMDQ).
   */
  busyPolling = false;
  /**
   * CMD_SYNC waiters asleep in wfe, in the order they went to sleep, as the first `sleepers` slots of
   * parallel arrays that only grow (no object or array operation per wait): the SYNC's absolute
   * position, the deadline, and the function that ends the wait (the monitor on its entry is armed
   * with `wakeUp`).
   */
  private sleepers = 0;
  private readonly sleepSync: number[] = [];
  private readonly sleepDeadline: number[] = [];
  private readonly sleepResolve: (((r: 0 | Errno) => void) | null)[] = [];
  /** Armed while someone sleeps, so a CMD_SYNC that never completes still times out. */
  private watchdog: CpuTimer | null = null;
  /**
   * Insertions serialise on the queue's shared cache lines: the virtual time the last one ends, and
   * the CPU that made it (-1: none yet). Charged only where the machine's CPUs have costs
   * (CpuPort.costs); see `insertionEnd`.
   */
  private insertFreeAt = 0;
  private insertCpu = -1;
  /** Per CPU: the virtual time its last insertion into this queue ends (it owes the wait until then). */
  private readonly cpuBusyUntil: number[] = [];
  /** Insertions made and the virtual ns CPUs spent in them (waiting for the lane included). */
  readonly insertion = { count: 0, contended: 0, ns: 0 };

  constructor(
    private readonly host: CmdqHost,
    readonly q: ArmSmmuQueue,
  ) {}

  /**
   * A CMD_SYNC for the entry at absolute position `abs`, in `syncWords`. Encoded once per completion
   * mode (MSI / SEV / busy-polled) and then only given its entry's MSI address.
   */
  // kernel: arm_smmu_cmdq_build_sync_cmd() [arm-smmu-v3.c]
  private buildSyncCmd(abs: number): void {
    const w = this.syncWords;
    const msiaddr = this.msiPoll ? this.q.absAddr(abs) : 0;
    const mode = msiaddr !== 0 ? 1 : this.busyPolling ? 2 : 0;
    if (mode !== this.syncMode) {
      this.syncEnt.sync!.msiaddr = msiaddr;
      armSmmuCmdqBuildCmd(w, 0, this.syncEnt);
      if (this.busyPolling) CMDQ_SYNC_0_CS.set(w, CMDQ_SYNC_0_CS_NONE, 0);
      this.syncMode = mode;
      return;
    }
    if (mode === 1) {
      // Qword 1 is the MSI address alone.
      w[2] = 0;
      w[3] = 0;
      CMDQ_SYNC_1_MSIADDR_MASK.prep(w, Math.floor(msiaddr / 4) * 4);
    }
  }

  /** CMD_SYNC completion is seen by the SMMU's MSI write into the entry. */
  private get msiPoll(): boolean {
    return !this.busyPolling && (this.host.options & ARM_SMMU_OPT_MSIPOLL) !== 0;
  }

  /** The queue's CONS register. */
  private readCons(): number {
    return this.q.page.readl(this.q.consOff);
  }

  private readProd(): number {
    return this.q.page.readl(this.q.prodOff);
  }

  /** Room for `n` entries, refreshing CONS from the hardware if the cached value says no. */
  private hasSpace(n: number): boolean {
    if (this.q.space() >= n) return true;
    this.q.noteHwCons(this.readCons());
    return this.q.space() >= n;
  }

  /** Write `n` commands (+ a CMD_SYNC) and publish PROD; returns the SYNC's absolute position or -1. */
  private insert(cmds: Uint32Array, n: number, sync: boolean): number {
    const q = this.q;
    for (let i = 0; i < n; i++) {
      q.writeEntry(q.prodAbs + i, cmds, i * CMDQ_ENT_WORDS, CMDQ_ENT_WORDS);
      this.onCommand?.(cmds, i * CMDQ_ENT_WORDS);
    }
    let syncAbs = -1;
    if (sync) {
      syncAbs = q.prodAbs + n;
      this.buildSyncCmd(syncAbs);
      q.writeEntry(syncAbs, this.syncWords, 0, CMDQ_ENT_WORDS);
      this.onCommand?.(this.syncWords, 0);
      this.stats.syncs++;
    }
    const total = n + (sync ? 1 : 0);
    q.advanceProd(total);
    this.stats.commands += total;
    this.insertionEnd();
    q.page.writel(q.prod & q.ptrMask, q.prodOff);
    return syncAbs;
  }

  /**
   * Charge the insertion being made to its CPU. The kernel's insertion into one queue is lock-free
   * but not contention-free: it costs the CPU `atomicNs`, and when the previous insertion came from
   * another CPU, `CMDQ_INSERT_SHARED_LINES` cache-line transfers more; a CPU whose insertion
   * overlaps another's waits for it (the cmpxchg retries, the owner waits for the previous owner).
   * So N CPUs sharing the main queue serialise, while a queue per CPU (Grace VCMDQs) never pays a
   * transfer. The commands are visible to the SMMU at once (the owner publishes every CPU's
   * commands with one PROD write); the CPU pays the time before its wait for the CMD_SYNC starts
   * (`payInsertion`), or before an insertion without a sync returns.
   */
  private insertionEnd(): void {
    const c = this.host.port.costs;
    this.insertion.count++;
    if (c === undefined || (c.atomicNs === 0 && c.lineTransferNs === 0)) return;
    const now = this.host.port.now();
    const cpu = rawSmpProcessorId();
    const start = Math.max(now, this.insertFreeAt);
    const contended = this.insertCpu !== -1 && this.insertCpu !== cpu;
    if (contended) this.insertion.contended++;
    this.insertFreeAt = start + c.atomicNs + (contended ? CMDQ_INSERT_SHARED_LINES * c.lineTransferNs : 0);
    this.insertCpu = cpu;
    this.insertion.ns += this.insertFreeAt - now;
    while (this.cpuBusyUntil.length <= cpu) this.cpuBusyUntil.push(0);
    this.cpuBusyUntil[cpu] = this.insertFreeAt;
  }

  /** The current CPU's wait for the end of its last insertion into this queue (0: none owed). */
  private insertionOwed(): number {
    if (this.cpuBusyUntil.length === 0) return 0; // no CPU costs: nothing was ever charged
    const until = this.cpuBusyUntil[rawSmpProcessorId()];
    return until === undefined ? 0 : until - this.host.port.now();
  }

  /**
   * Insert without waiting: the commands and, with `sync`, a CMD_SYNC that `waitOutstanding` will wait
   * for. For callers that run synchronously (io-pgtable flush callbacks).
   */
  issueCmdlistNowait(cmds: Uint32Array, n: number, sync = true): void {
    const total = n + (sync ? 1 : 0);
    if (total === 0) return;
    if (this.backlog.length === 0 && this.hasSpace(total)) {
      const s = this.insert(cmds, n, sync);
      if (s >= 0) this.outstandingSync = s;
      return;
    }
    this.enqueueBacklog(cmds, n, sync, (s) => {
      if (s >= 0) this.outstandingSync = Math.max(this.outstandingSync, s);
    }, () => undefined);
    void this.drainBacklog();
  }

  private enqueueBacklog(cmds: Uint32Array, n: number, sync: boolean, written: (syncAbs: number) => void, failed: (e: Errno) => void): void {
    this.stats.backlogged++;
    this.backlog.push({ words: cmds.slice(0, n * CMDQ_ENT_WORDS), n, sync, written, failed });
  }

  /** Push backlogged commands out as the SMMU frees entries (in order). */
  private drainBacklog(): Promise<void> {
    if (this.backlog.length === 0) return Promise.resolve();
    this.draining ??= (async () => {
      try {
        while (this.backlog.length > 0) {
          const item = this.backlog[0];
          try {
            await this.waitForSpace(item.n + (item.sync ? 1 : 0));
          } catch (e) {
            // The SMMU stopped consuming: everything still waiting fails as a timeout.
            this.host.log.err(this.host.name, e instanceof Error ? e.message : String(e), LOG_NS);
            for (const it of this.backlog.splice(0)) it.failed('ETIMEDOUT');
            return;
          }
          this.backlog.shift();
          item.written(this.insert(item.words, item.n, item.sync));
        }
      } finally {
        this.draining = null;
      }
    })();
    return this.draining;
  }

  private async waitForSpace(n: number): Promise<void> {
    if (n > this.q.entries) throw new KernelError('EINVAL', `${this.host.name}: ${n} commands cannot fit a ${this.q.entries}-entry queue`);
    const port = this.host.port;
    const deadline = port.now() + ARM_SMMU_POLL_TIMEOUT_US * 1000;
    let delayUs = 1;
    while (!this.hasSpace(n)) {
      if (port.now() > deadline) {
        throw new KernelError('ETIMEDOUT', `${this.host.name}: CMDQ timeout waiting for ${n} free entries [hwprod ${hex8(this.readProd())}, hwcons ${hex8(this.readCons())}]`);
      }
      await port.delay(delayUs * 1000);
      delayUs *= 2;
    }
  }

  /**
   * Insert `n` encoded commands (4 words each, from `cmds[0]`) and, with `sync`, a CMD_SYNC, then wait
   * for it. The words are consumed before this returns (the caller may reuse its buffer at once).
   * Resolves 0, or ETIMEDOUT when the CMD_SYNC did not complete within the poll timeout (logged, as the
   * kernel does; the commands stay queued).
   */
  // kernel: arm_smmu_cmdq_issue_cmdlist() [arm-smmu-v3.c]
  issueCmdlist(cmds: Uint32Array, n: number, sync: boolean): Promise<0 | Errno> {
    const total = n + (sync ? 1 : 0);
    if (total === 0) return SYNC_DONE;
    if (this.backlog.length === 0 && this.hasSpace(total)) {
      const syncAbs = this.insert(cmds, n, sync);
      if (sync) return this.pollUntilSync(syncAbs);
      // The CPU is busy until its insertion ends.
      const owed = this.insertionOwed();
      return owed > 0 ? this.host.port.delay(owed).then(answerZero) : SYNC_DONE;
    }
    return this.issueViaBacklog(cmds, n, sync);
  }

  /**
   * As issueCmdlist with a CMD_SYNC, answering through `done` (0, or ETIMEDOUT already logged) instead
   * of a promise: the waiter for a strict unmap's invalidation, which hands its caller's callback here
   * (see IotlbSyncDone in the iommu core). `done` may be called before this returns.
   */
  issueCmdlistThen(cmds: Uint32Array, n: number, done: (r: 0 | Errno) => void): void {
    if (this.backlog.length === 0 && this.hasSpace(n + 1)) {
      this.whenSynced(this.insert(cmds, n, true), done);
      return;
    }
    void this.issueViaBacklog(cmds, n, true).then(done);
  }

  // (Its own method: closures over issueCmdlist's parameters would allocate their context on every
  // call there, backlog or not.)
  private issueViaBacklog(cmds: Uint32Array, n: number, sync: boolean): Promise<0 | Errno> {
    return new Promise((resolve) => {
      this.enqueueBacklog(cmds, n, sync, (s) => {
        if (s < 0) resolve(0);
        else this.pollUntilSync(s).then(resolve, () => resolve('ETIMEDOUT'));
      }, resolve);
      void this.drainBacklog();
    });
  }

  /** True if the CMD_SYNC at absolute position `syncAbs` has completed (MSI written, or CONS past it). */
  private syncDone(syncAbs: number, entry: number): boolean {
    const q = this.q;
    if (q.consAbs > syncAbs) return true;
    if (this.msiPoll) {
      if (q.ram.read32(entry) !== 0) return false;
      q.noteConsumedTo(syncAbs + 1);
      return true;
    }
    q.noteHwCons(this.readCons());
    return q.consAbs > syncAbs;
  }

  /** Count and log a CMD_SYNC that did not complete within the poll timeout. */
  private syncTimedOut(syncAbs: number): 'ETIMEDOUT' {
    const q = this.q;
    this.stats.syncTimeouts++;
    this.host.log.err(
      this.host.name,
      `CMD_SYNC timeout at ${hex8(syncAbs % (q.entries * 2))} [hwprod ${hex8(this.readProd())}, hwcons ${hex8(this.readCons())}]`,
      LOG_NS,
    );
    return 'ETIMEDOUT';
  }

  /** whenSynced as a promise (no closure per wait: the executor finds the CMD_SYNC in `waitingSync`). */
  private pollUntilSync(syncAbs: number): Promise<0 | Errno> {
    this.waitingSync = syncAbs;
    return new Promise(this.waitForWaitingSync);
  }

  private waitingSync = 0;
  private readonly waitForWaitingSync = (resolve: (r: 0 | Errno) => void): void => this.whenSynced(this.waitingSync, resolve);

  /**
   * Wait until the CMD_SYNC at absolute position `syncAbs` has completed, then call `done` with 0 (or
   * ETIMEDOUT, logged); `done` may be called before this returns. (…_poll_until_msi() /
   * …_poll_until_consumed())
   *
   * With MSI polling and a CPU monitor the wait is the kernel's smp_cond_load_relaxed(): the waiter
   * checks the entry, then sleeps in wfe until the SMMU's MSI write to it lands (or the watchdog
   * ticks); the check that follows the wake-up runs when the write lands, and the waiter's kernel
   * thread continues once the scheduler step that wrote it has finished, at the same virtual time.
   * No async frame, nothing allocated per check. A CPU still busy with its insertion (a per-command
   * CPU cost) first waits for the insertion to end.
   */
  // kernel: arm_smmu_cmdq_poll_until_sync() [arm-smmu-v3.c]
  private whenSynced(syncAbs: number, done: (r: 0 | Errno) => void): void {
    const owed = this.insertionOwed();
    if (owed > 0) void this.host.port.delay(owed).then(() => this.whenSyncedNow(syncAbs, done));
    else this.whenSyncedNow(syncAbs, done);
  }

  /** whenSynced once the CPU is free: complete already, asleep in wfe, or polling with delays. */
  private whenSyncedNow(syncAbs: number, done: (r: 0 | Errno) => void): void {
    const entry = this.q.absAddr(syncAbs);
    if (this.syncDone(syncAbs, entry)) done(0);
    else if (this.canSleep()) this.sleep(syncAbs, entry, done);
    else void this.pollUntilSyncDelay(syncAbs, entry).then(done);
  }

  /** The wait can sleep in wfe: the SYNC's MSI write lands in its entry, and the CPU has a monitor. */
  private canSleep(): boolean {
    const port = this.host.port;
    return this.msiPoll && port.monitor !== undefined && port.unmonitor !== undefined;
  }

  /** Sleep on the CMD_SYNC at `syncAbs` (its entry at `entry`) until `wake` answers `done`. */
  private sleep(syncAbs: number, entry: number, done: (r: 0 | Errno) => void): void {
    const port = this.host.port;
    // (A store at the length grows an array; the slots past `sleepers` are reused.)
    const i = this.sleepers++;
    this.sleepSync[i] = syncAbs;
    this.sleepDeadline[i] = port.now() + ARM_SMMU_POLL_TIMEOUT_US * 1000;
    this.sleepResolve[i] = done;
    port.monitor!(entry, this.wakeUp);
    this.watchdog ??= port.startTimer(CMDQ_WATCHDOG_NS, this.watchdogTick);
  }

  /** The wait without a monitor: CONS (or the MSI word) checked after sleeps of 1, 2, 4 … µs, or spins. */
  private async pollUntilSyncDelay(syncAbs: number, entry: number): Promise<0 | Errno> {
    const port = this.host.port;
    const deadline = port.now() + ARM_SMMU_POLL_TIMEOUT_US * 1000;
    let delayUs = 1;
    let spins = 0;
    for (;;) {
      if (this.syncDone(syncAbs, entry)) return 0;
      if (port.now() >= deadline) return this.syncTimedOut(syncAbs);
      if (this.busyPolling && ++spins < ARM_SMMU_POLL_SPIN_COUNT) {
        // (kernel: queue_poll() without wfe — cpu_relax() spins before each udelay().)
        await port.delay(CMDQ_POLL_SPIN_NS);
      } else {
        spins = 0;
        await port.delay(Math.min(delayUs * 1000, deadline - port.now()));
        delayUs *= 2;
      }
    }
  }

  /** A write landed on a monitored entry: the sleepers check their CMD_SYNC. */
  private readonly wakeUp = (entry: number): void => this.wake(entry);

  /** The watchdog ticked: the sleepers check their CMD_SYNC and their deadline. */
  private readonly watchdogTick = (): void => {
    this.watchdog = null;
    this.wake(-1);
  };

  /**
   * Every sleeper checks its CMD_SYNC again, in the order they went to sleep: a completed one ends its
   * wait (its monitor is disarmed unless it is the one that fired: a write elsewhere woke it), one past
   * its deadline times out (on a watchdog tick, `fired` -1), the others sleep on. A monitor is
   * one-shot: those on the entry written (`fired`) re-arm if their SYNC is still pending (another agent
   * wrote the word); the others are still armed and are left as they are. The ended waits are answered
   * after the sleepers are in order again: an answer may issue commands and sleep on them at once.
   */
  private wake(fired: number): void {
    const n = this.sleepers;
    if (n === 0) return;
    const syncs = this.sleepSync;
    const tick = fired < 0;
    const deadlines = this.sleepDeadline;
    const resolves = this.sleepResolve;
    const port = this.host.port;
    const q = this.q;
    let kept = 0;
    // The ended waits: the first in locals, any others in an array made only then (8 threads
    // rarely complete two SYNCs with one write). Locals, not fields: an answer may end in a write
    // that wakes sleepers again before this pass has answered everyone.
    let first: ((r: 0 | Errno) => void) | null = null;
    let firstAnswer: 0 | Errno = 0;
    let more: [(r: 0 | Errno) => void, 0 | Errno][] | null = null;
    for (let i = 0; i < n; i++) {
      const syncAbs = syncs[i];
      const resolve = resolves[i];
      const entry = q.absAddr(syncAbs);
      let answer: 0 | Errno | -1 = -1;
      if (this.syncDone(syncAbs, entry)) {
        if (entry !== fired) port.unmonitor!(entry, this.wakeUp);
        answer = 0;
      } else if (tick && port.now() >= deadlines[i]) {
        port.unmonitor!(entry, this.wakeUp);
        answer = this.syncTimedOut(syncAbs);
      }
      if (answer !== -1) {
        if (first === null) {
          first = resolve;
          firstAnswer = answer;
        } else {
          (more ??= []).push([resolve!, answer]);
        }
        continue;
      }
      syncs[kept] = syncAbs;
      deadlines[kept] = deadlines[i];
      if (entry === fired) {
        // Re-arm the spent monitor. (Several sleepers on one entry: each disarms one of the entry's
        // monitors the write has not reached yet, or a re-armed one, and arms one, so the entry keeps
        // one monitor per sleeper.)
        port.unmonitor!(entry, this.wakeUp);
        port.monitor!(entry, this.wakeUp);
      }
      resolves[kept] = resolve;
      kept++;
    }
    // (Slots past the sleepers keep no function alive.)
    for (let i = kept; i < n; i++) resolves[i] = null;
    this.sleepers = kept;
    if (kept > 0) this.watchdog ??= port.startTimer(CMDQ_WATCHDOG_NS, this.watchdogTick);
    if (first !== null) first(firstAnswer);
    if (more !== null) for (const [resolve, answer] of more) resolve(answer);
  }

  /**
   * Wait for every command inserted so far without a waiter (the io-pgtable callbacks' invalidations):
   * push out the backlog, then wait for the newest outstanding CMD_SYNC.
   */
  async waitOutstanding(): Promise<0 | Errno> {
    if (this.backlog.length > 0) await this.drainBacklog();
    const owed = this.insertionOwed();
    if (owed > 0) await this.host.port.delay(owed);
    const s = this.outstandingSync;
    if (s < 0 || this.q.consAbs > s) return 0;
    const r = await this.pollUntilSync(s);
    if (this.outstandingSync === s) this.outstandingSync = -1;
    return r;
  }

  /** True if commands were inserted (or backlogged) that nobody has waited for yet. */
  get hasOutstanding(): boolean {
    return this.backlog.length > 0 || (this.outstandingSync >= 0 && this.q.consAbs <= this.outstandingSync);
  }

  // kernel: __arm_smmu_cmdq_issue_cmd() [arm-smmu-v3.c]
  issueCmd(ent: ArmSmmuCmdqEnt, sync = false): Promise<0 | Errno> {
    const r = armSmmuCmdqBuildCmd(this.oneCmd, 0, ent);
    if (r !== 0) {
      this.host.log.warn(this.host.name, `ignoring unknown CMDQ opcode ${hex(ent.opcode)}`, LOG_NS);
      return Promise.resolve('EINVAL');
    }
    return this.issueCmdlist(this.oneCmd, 1, sync);
  }

  // kernel: arm_smmu_cmdq_issue_cmd_with_sync() [arm-smmu-v3.c]
  issueCmdWithSync(ent: ArmSmmuCmdqEnt): Promise<0 | Errno> {
    return this.issueCmd(ent, true);
  }

  /**
   * Insert raw command words as they are, for experiments that need the hardware to see a command the
   * driver would never build (an illegal one, to exercise CERROR_ILL recovery). Not used by the driver.
   */
  issueRaw(words: Uint32Array, sync: boolean): Promise<0 | Errno> {
    if (words.length % CMDQ_ENT_WORDS !== 0) throw new KernelError('EINVAL', `raw commands must be ${CMDQ_ENT_WORDS} words each`);
    return this.issueCmdlist(words, words.length / CMDQ_ENT_WORDS, sync);
  }

  /**
   * Called from the GERROR handler with CMDQ_ERR active: report the error and, for CERROR_ILL, replace
   * the offending command with a CMD_SYNC so the queue can go on once GERRORN is written.
   */
  // kernel: __arm_smmu_cmdq_skip_err() [arm-smmu-v3.c]
  skipErr(): void {
    const q = this.q;
    const log = this.host.log;
    const cons = this.readCons();
    const idx = FIELD_GET(CMDQ_CONS_ERR, cons);
    this.stats.errors++;
    log.err(this.host.name, `CMDQ error (cons ${hex8(cons)}): ${CERROR_STR[idx] ?? 'Unknown'}`, LOG_NS);
    switch (idx) {
      case CMDQ_ERR_CERROR_ABT_IDX:
        log.err(this.host.name, 'retrying command fetch', LOG_NS);
        return;
      case CMDQ_ERR_CERROR_NONE_IDX:
        return;
      case CMDQ_ERR_CERROR_ATC_INV_IDX:
        // CONS still points at the CMD_SYNC: repeating it completes the other commands (or errors again).
        return;
      case CMDQ_ERR_CERROR_ILL_IDX:
      default:
        break;
    }
    const cmd = new Uint32Array(CMDQ_ENT_WORDS);
    q.readEntry(cons, cmd);
    const op = CMDQ_0_OP.get(cmd);
    log.err(this.host.name, `skipping command in error state (${CMDQ_OP_NAMES.get(op) ?? `opcode ${hex(op)}`}):`, LOG_NS);
    for (let i = 0; i < CMDQ_ENT_WORDS; i += 2) {
      log.err(this.host.name, `\t0x${cmd[i + 1].toString(16).padStart(8, '0')}${cmd[i].toString(16).padStart(8, '0')}`, LOG_NS);
    }
    // Convert the erroneous command into a CMD_SYNC (CS=NONE where completion is busy-polled).
    armSmmuCmdqBuildCmd(cmd, 0, { opcode: CMDQ_OP_CMD_SYNC });
    if (this.busyPolling) CMDQ_SYNC_0_CS.set(cmd, CMDQ_SYNC_0_CS_NONE, 0);
    const pa = q.entAddr(cons);
    for (let i = 0; i < CMDQ_ENT_WORDS; i++) q.ram.write32(pa + i * 4, cmd[i]);
    this.stats.skipped++;
  }

  /** Forget the pointers (the queue was reprogrammed by a reset). */
  resetPointers(): void {
    this.insertFreeAt = 0;
    this.insertCpu = -1;
    this.cpuBusyUntil.length = 0;
    this.q.resetPointers();
    this.outstandingSync = -1;
    this.backlog = [];
  }
}

/** The kernel's struct arm_smmu_cmdq_batch */
export class ArmSmmuCmdqBatch {
  readonly cmds = new Uint32Array(CMDQ_BATCH_ENTRIES * CMDQ_ENT_WORDS);
  num = 0;
  /** The queue the batch goes to, chosen by its first command (kernel: cmds->cmdq). */
  cmdq: ArmSmmuCmdq | null = null;

  constructor(
    /** The SMMU's main queue. */
    private readonly main: ArmSmmuCmdq,
    private readonly host: CmdqBatchHost,
  ) {}

  private getCmdq(ent: ArmSmmuCmdqEnt): ArmSmmuCmdq {
    return this.host.getCmdq?.(ent) ?? this.main;
  }

  /** The queue is chosen by `ent`, or by the first command added. */
  // kernel: arm_smmu_cmdq_batch_init() [arm-smmu-v3.c]
  init(ent?: ArmSmmuCmdqEnt): this {
    this.num = 0;
    this.cmdq = ent ? this.getCmdq(ent) : null;
    return this;
  }

  /**
   * Add a command. A full batch is inserted first (without a sync, as in the kernel, except on a
   * queue other than the main one, where every batch ends with a CMD_SYNC; with the CMDQ_FORCE_SYNC
   * erratum option a batch of 63 gets one), and so is the batch so far when this command is one its
   * queue does not take: every command of a batch is checked, not only the first. Never waits:
   * `submit` does.
   */
  // kernel: arm_smmu_cmdq_batch_add() [arm-smmu-v3.c]
  add(ent: ArmSmmuCmdqEnt): void {
    this.cmdq ??= this.getCmdq(ent);
    const forceSync = this.num === CMDQ_BATCH_ENTRIES - 1 && (this.host.options & ARM_SMMU_OPT_CMDQ_FORCE_SYNC) !== 0;
    const unsupported = !armSmmuCmdqSupportsCmd(this.cmdq, ent);
    if (forceSync || unsupported) {
      this.cmdq.issueCmdlistNowait(this.cmds, this.num, true);
      this.init(ent);
    }
    if (this.num === CMDQ_BATCH_ENTRIES) {
      this.cmdq.issueCmdlistNowait(this.cmds, this.num, this.cmdq.busyPolling);
      this.init(ent);
    }
    this.put(ent);
  }

  private put(ent: ArmSmmuCmdqEnt): void {
    if (armSmmuCmdqBuildCmd(this.cmds, this.num * CMDQ_ENT_WORDS, ent) !== 0) {
      this.host.log.warn(this.host.name, `ignoring unknown CMDQ opcode ${hex(ent.opcode)}`, LOG_NS);
      return;
    }
    this.num++;
  }

  private target(): ArmSmmuCmdq {
    return (this.cmdq ??= this.getCmdq(SYNC_ENT));
  }

  /** Insert the batch with a CMD_SYNC and wait for it. */
  // kernel: arm_smmu_cmdq_batch_submit() [arm-smmu-v3.c]
  submit(): Promise<0 | Errno> {
    const r = this.target().issueCmdlist(this.cmds, this.num, true);
    this.num = 0;
    return r;
  }

  /** Insert the batch with a CMD_SYNC and call `done` once it completed (see ArmSmmuCmdq.issueCmdlistThen). */
  submitThen(done: (r: 0 | Errno) => void): void {
    this.target().issueCmdlistThen(this.cmds, this.num, done);
    this.num = 0;
  }

  /** Insert the batch with a CMD_SYNC without waiting (see ArmSmmuCmdq.issueCmdlistNowait). */
  submitNowait(): void {
    this.target().issueCmdlistNowait(this.cmds, this.num, true);
    this.num = 0;
  }
}

const SYNC_ENT: ArmSmmuCmdqEnt = { opcode: CMDQ_OP_CMD_SYNC };

// kernel: arm_smmu_cmdq_supports_cmd() [arm-smmu-v3.c]
export function armSmmuCmdqSupportsCmd(cmdq: ArmSmmuCmdq, ent: ArmSmmuCmdqEnt): boolean {
  return cmdq.supportsCmd === null || cmdq.supportsCmd(ent);
}

/**
 * The queue a list of encoded commands goes to: the one the first command picks, if it takes every
 * command of the list, else the main queue (the 2021 review's "checked only cmds[0]" fixed by
 * checking the whole list).
 */
export function armSmmuCmdqForList(host: CmdqBatchHost, main: ArmSmmuCmdq, cmds: Uint32Array, n: number): ArmSmmuCmdq {
  if (n === 0) return host.getCmdq?.(SYNC_ENT) ?? main;
  const ent: ArmSmmuCmdqEnt = { opcode: CMDQ_0_OP.get(cmds, 0) };
  const cmdq = host.getCmdq?.(ent) ?? main;
  if (cmdq === main || cmdq.supportsCmd === null) return cmdq;
  for (let i = 0; i < n; i++) {
    ent.opcode = CMDQ_0_OP.get(cmds, i * CMDQ_ENT_WORDS);
    if (!cmdq.supportsCmd(ent)) return main;
  }
  return cmdq;
}

