/**
 * The kexec experiment: boot a kernel, start DMA test engines writing into their own DMA buffers,
 * hand the machine over to a second kernel, let it put memory to use, run on, and measure what the
 * still-running engines did.
 *
 * Hand-over is one of:
 * - `aware` / `unaware`: kexec (the old kernel's `.shutdown` calls run, SMMU shutdown policies
 *   apply) into a kernel with or without the SMMU drivers;
 * - `kdump`: the first kernel boots with `crashkernel=`, loads a crash kernel and panics: no
 *   `.shutdown` at all, SMMUs live; the crash kernel boots inside its reservation.
 *
 * Measured: every transaction the engines issued from the hand-over on, accounted once (landed in
 * memory its kernel gave the master, stray with the owner, blocked, faulted, still outstanding), the
 * stray writes, the fault storm the incoming kernel sees (failed transactions per second, interrupts,
 * IOMMU log lines, time until quiet), whether the incoming kernel booted, and for kdump the bytes of
 * the dump (the old kernel's memory) and of the crash kernel's own memory that DMA changed after the
 * panic.
 */
import { testEngines } from '../../drivers/misc/dma-test-engine.js';
import type { DmaRequest, DmaCompletion } from '../../hw/dma.js';
import type { Machine } from '../../hw/machine.js';
import type { MemoryRange } from '../../mm/page-alloc.js';
import { isKernelError } from '../../bus/errno.js';
import { ofReg } from '../../bus/of/address.js';
import { ofIrqs } from '../../bus/of/irq.js';
import type { DeviceTree } from '../../bus/of/tree.js';
import { DEFAULT_PARAMS, parseCmdline, type KernelParams } from '../../kernel/cmdline.js';
import { kexecLoadCrash, panic } from '../../kernel/kdump.js';
import type { Kernel } from '../../kernel/kernel.js';
import { kexec } from '../../kernel/kexec.js';
import { boot, BOOT_LIMIT_NS, run } from './lab.js';
import { StrayDmaMonitor, type StrayWrite } from './stray-dma.js';

export type KexecTarget = 'aware' | 'unaware' | 'kdump';
export type SmmuKind = 'v2' | 'v3';

export interface KexecExperimentOptions {
  /** The kernel handed over to: `aware` has the SMMU drivers, `unaware` has none, `kdump` is a crash kernel. */
  target: KexecTarget;
  /** `all`: the engines' driver has `.shutdown` and stops them; `none`: it has none. */
  quiesce: 'all' | 'none';
  /** Command line of the first kernel, and of the second unless `targetCmdline` is given. */
  cmdline?: string;
  /** Command line of the incoming kernel (default: `cmdline`; for kdump, `cmdline` without crashkernel=). */
  targetCmdline?: string;
  /** Only engines behind this kind of SMMU run (default: every engine). */
  smmu?: SmmuKind;
  /** Engines keep issuing after failed transactions (CTRL.CONT), as devices that ignore errors do. */
  storm?: boolean;
  /** kdump: the reservation (default `crashkernel=64M@0x60000000`, clear of the engines' IOVAs). */
  crashkernel?: string;
  /** Boot the incoming kernel refusing unknown parameters. */
  strictParams?: boolean;
  /** Period of the engines' writes (virtual ns). */
  periodNs?: number;
  /** How long the engines run before the hand-over, and after it (virtual ns). */
  runBeforeNs?: number;
  runAfterNs?: number;
  /** Memory the new kernel puts to use after booting (bytes, in 4 KiB pages). */
  workloadBytes?: number;
}

/** Every transaction issued from the hand-over on, each counted once. */
export interface TransactionAccounting {
  /** Transactions the engines issued from the hand-over on. */
  issued: number;
  /** Issued before it and still outstanding then (stalled); counted by their outcome. */
  carriedIn: number;
  /** Writes that landed in memory the running kernel had given the master (or reads). */
  landedOwned: number;
  /** Writes that landed somewhere else; by owner. */
  stray: number;
  /** Bytes those stray writes carried. */
  strayBytes: number;
  strayByOwner: Record<string, number>;
  /** Answered abort, bus error, terminated or not issued. */
  blocked: number;
  /** Answered with a translation fault. */
  faulted: number;
  /**
   * Still outstanding 1 ms after the lab stopped the engines at the end of the run: stalled with
   * nobody to answer, not merely in flight.
   */
  outstanding: number;
  /** landedOwned + stray + blocked + faulted + outstanding === issued + carriedIn */
  balanced: boolean;
}

export interface StormMeasurement {
  /** Virtual time from the hand-over to the end of the run (ns). */
  windowNs: number;
  /** Transactions answered with an error in the window, and per second of virtual time. */
  failed: number;
  failedPerSecond: number;
  /** Interrupts raised on the IOMMUs' lines once the incoming kernel had booted. */
  interrupts: number;
  /** Lines the incoming kernel's IOMMU drivers logged once it had booted. */
  iommuLogLines: number;
  /** Time from the hand-over to the last failed transaction, or null if it never went quiet. */
  quietAfterNs: number | null;
  /** Time from the hand-over until the incoming kernel finished booting (null: it did not boot). */
  bootedAfterNs: number | null;
  /** Failed transactions once the incoming kernel was up, and per second of that time. */
  failedAfterBoot: number;
  failedPerSecondAfterBoot: number;
  /** What the incoming kernel's drivers did about it (from its log). */
  driverActions: string[];
}

export interface BootOutcome {
  ok: boolean;
  instance: number | null;
  kdump: boolean;
  /** Why the boot failed. */
  error: string | null;
  devicesBound: number;
}

export interface KdumpMeasurement {
  reservation: MemoryRange;
  vmcoreSegments: number;
  /** Bytes of the crashed kernel's memory (the dump) that DMA changed after the panic. */
  vmcoreBytesChanged: number;
  /** Of those, bytes outside the DMA buffers the old kernel gave the masters. */
  vmcoreBytesChangedOutsideBuffers: number;
  /** Bytes of the crash kernel's own memory (its reservation) that DMA changed. */
  crashKernelBytesChanged: number;
}

/** The policies in force, named for the report. */
export interface PoliciesInForce {
  /** How the machine was handed over: `.shutdown` calls ran, or a panic skipped them. */
  path: 'shutdown' | 'panic';
  outgoing: Pick<KernelParams, 'arm-smmu-v3.shutdown_policy' | 'arm-smmu.shutdown_policy' | 'arm-smmu.shutdown_fault_irqs'>;
  incoming: Pick<KernelParams, 'iommu.passthrough' | 'arm-smmu.disable_bypass' | 'arm-smmu-v3.disable_bypass' | 'dma-test-engine.reset_on_probe'>;
  /** In words, one line. */
  summary: string;
}

export interface KexecExperimentResult {
  /** False when no DMA test engine ran: the experiment then had nothing to observe. */
  observable: boolean;
  /** Why there was nothing to observe (null when there was). */
  nothingToObserve: string | null;
  strayWrites: StrayWrite[];
  /** Engine transactions after the hand-over that did not reach memory (aborted, faulted, bus error). */
  blockedTransactions: number;
  /** Of those, the ones an IOMMU answered with a translation fault. */
  faults: number;
  accounting: TransactionAccounting;
  storm: StormMeasurement;
  boot: BootOutcome;
  kdump: KdumpMeasurement | null;
  policies: PoliciesInForce;
  /** Where each engine was writing: master → DMA address, buffer PA and length. */
  engines: { master: string; dma: number; pa: number; len: number }[];
  first: Kernel;
  /** The incoming kernel (null when it failed to boot). */
  second: Kernel | null;
  /** Parameters the kernels did not know. */
  unknownParams: string[];
}

const WRITE_LEN = 256;
const FRAME = 0x1000;
/** Where the lab puts the crash kernel by default: RAM the DMA API never hands out as IOVAs. */
export const DEFAULT_CRASHKERNEL = '64M@0x60000000';

/** Which kind of SMMU a master's first stream goes through, from the machine's firmware view. */
export function smmuKindOf(machine: Machine, master: string): SmmuKind | null {
  const fw = machine.mastersFirmware.get(master);
  const iommu = fw?.iommus[0]?.iommu;
  if (!iommu) return null;
  const entry = machine.iommus.get(iommu);
  if (!entry || entry.status !== 'modelled') return null;
  return entry.compatible.includes('arm,smmu-v3') ? 'v3' : 'v2';
}

/** Counts each transaction of the watched masters once, by outcome. */
class Accountant {
  private readonly stops: (() => void)[] = [];
  landedOwned = 0;
  stray = 0;
  strayBytes = 0;
  readonly strayByOwner: Record<string, number> = {};
  blocked = 0;
  faulted = 0;
  failedTimes: number[] = [];
  private readonly issuedAtStart: number;
  readonly carriedIn: number;

  constructor(
    private readonly machine: Machine,
    private readonly masters: string[],
    private readonly classify: (master: string, pa: number, len: number) => string | null,
  ) {
    let issued = 0;
    let outstanding = 0;
    for (const name of masters) {
      const m = machine.testEngines.get(name)!;
      issued += m.stats.issued;
      outstanding += m.stats.outstanding;
      this.stops.push(m.onTransaction((req, c, t) => this.count(req, c, t)));
    }
    this.issuedAtStart = issued;
    this.carriedIn = outstanding;
  }

  private count(req: DmaRequest, c: DmaCompletion, time: number): void {
    if (c.status === 'ok') {
      const owner = req.write && c.pa !== undefined ? this.classify(req.master, c.pa, req.len) : null;
      if (owner === null) this.landedOwned++;
      else {
        this.stray++;
        this.strayBytes += req.len;
        this.strayByOwner[owner] = (this.strayByOwner[owner] ?? 0) + 1;
      }
      return;
    }
    this.failedTimes.push(time);
    if (c.status === 'fault') this.faulted++;
    else this.blocked++;
  }

  finish(): TransactionAccounting {
    for (const s of this.stops) s();
    let issued = 0;
    let outstanding = 0;
    for (const name of this.masters) {
      const m = this.machine.testEngines.get(name)!;
      issued += m.stats.issued;
      outstanding += m.stats.outstanding;
    }
    issued -= this.issuedAtStart;
    const sum = this.landedOwned + this.stray + this.blocked + this.faulted + outstanding;
    return {
      issued,
      carriedIn: this.carriedIn,
      landedOwned: this.landedOwned,
      stray: this.stray,
      strayBytes: this.strayBytes,
      strayByOwner: { ...this.strayByOwner },
      blocked: this.blocked,
      faulted: this.faulted,
      outstanding,
      balanced: sum === issued + this.carriedIn,
    };
  }
}

/**
 * Remembers, for every byte DMA writes after `start`, what it held before the first such write, so
 * that "bytes changed" compares memory with what it was at the panic, not with what was written.
 */
class ChangeTracker {
  private readonly before = new Map<number, Uint8Array>();
  private readonly touched = new Map<number, Uint8Array>();
  private readonly stop: () => void;

  constructor(
    private readonly machine: Machine,
    masters: readonly string[],
  ) {
    const watched = new Set(masters);
    this.stop = machine.interconnect.onRamWillWrite((m, pa, len) => {
      if (watched.has(m)) this.note(pa, len);
    });
  }

  private note(pa: number, len: number): void {
    const mem = this.machine.memory;
    for (let f = Math.floor(pa / FRAME) * FRAME; f < pa + len; f += FRAME) {
      if (!this.before.has(f)) {
        this.before.set(f, mem.read(f, FRAME));
        this.touched.set(f, new Uint8Array(FRAME));
      }
      const mark = this.touched.get(f)!;
      const lo = Math.max(pa, f) - f;
      const hi = Math.min(pa + len, f + FRAME) - f;
      mark.fill(1, lo, hi);
    }
  }

  /** Bytes DMA wrote that now differ from before, split by `inside(pa)`. */
  changed(inside: (pa: number) => 'a' | 'b' | 'c'): { a: number; b: number; c: number } {
    this.stop();
    const out = { a: 0, b: 0, c: 0 };
    for (const [f, old] of this.before) {
      const now = this.machine.memory.read(f, FRAME);
      const mark = this.touched.get(f)!;
      for (let i = 0; i < FRAME; i++) if (mark[i] && now[i] !== old[i]) out[inside(f + i)]++;
    }
    return out;
  }
}

/** Interrupts raised so far on every line the IOMMUs' firmware nodes name. */
function iommuInterrupts(machine: Machine, dt: DeviceTree): number {
  let n = 0;
  for (const path of machine.iommus.keys()) {
    const node = dt.byPath(path);
    if (!node) continue;
    try {
      for (const irq of ofIrqs(dt, node)) n += machine.interruptControllers.get(irq.controller.path)?.stats(irq.specifier).raised ?? 0;
    } catch {
      // an IOMMU whose interrupts firmware describes badly raises none we can count
    }
  }
  return n;
}

/** How long the lab waits, after stopping the engines, for transactions in flight to finish. */
const DRAIN_NS = 1_000_000;
/** The test engine's frames and their DOORBELL register, as its documented register map has them. */
const TE_FRAMES = 15;
const TE_FRAME_SIZE = 0x1000;
const TE_DOORBELL = 0x030;

/** DOORBELL=0 on every frame of every engine, at the register addresses firmware gives them. */
function stopEngines(machine: Machine, dt: DeviceTree, engines: readonly string[]): void {
  for (const path of engines) {
    const node = dt.byPath(path);
    const base = node ? ofReg(dt, node)[0]?.address : undefined;
    if (base === undefined) continue;
    for (let f = 0; f < TE_FRAMES; f++) machine.cpu.mmioWrite32(base + f * TE_FRAME_SIZE + TE_DOORBELL, 0);
  }
}

function within(ranges: readonly MemoryRange[], pa: number): boolean {
  return ranges.some((r) => pa >= r.base && pa < r.base + r.size);
}

function describePolicies(path: 'shutdown' | 'panic', first: KernelParams, second: KernelParams, target: KexecTarget): PoliciesInForce {
  const outgoing = {
    'arm-smmu-v3.shutdown_policy': first['arm-smmu-v3.shutdown_policy'],
    'arm-smmu.shutdown_policy': first['arm-smmu.shutdown_policy'],
    'arm-smmu.shutdown_fault_irqs': first['arm-smmu.shutdown_fault_irqs'],
  };
  const incoming = {
    'iommu.passthrough': second['iommu.passthrough'],
    'arm-smmu.disable_bypass': second['arm-smmu.disable_bypass'],
    'arm-smmu-v3.disable_bypass': second['arm-smmu-v3.disable_bypass'],
    'dma-test-engine.reset_on_probe': second['dma-test-engine.reset_on_probe'],
  };
  const out =
    path === 'panic'
      ? 'panic: no .shutdown ran, the SMMUs stayed as the crashed kernel left them'
      : `.shutdown with arm-smmu-v3.shutdown_policy=${outgoing['arm-smmu-v3.shutdown_policy']}, arm-smmu.shutdown_policy=${outgoing['arm-smmu.shutdown_policy']}`;
  const inc =
    target === 'unaware'
      ? 'an IOMMU-unaware kernel (no SMMU driver touches them)'
      : `${target === 'kdump' ? 'a crash kernel' : 'an IOMMU-aware kernel'} with iommu.passthrough=${incoming['iommu.passthrough'] ? 1 : 0}, disable_bypass=${incoming['arm-smmu.disable_bypass'] ? 1 : 0}/${incoming['arm-smmu-v3.disable_bypass'] ? 1 : 0} (v2/v3)`;
  return { path, outgoing, incoming, summary: `${out}; then ${inc}` };
}

export async function runKexecExperiment(machine: Machine, opts: KexecExperimentOptions): Promise<KexecExperimentResult> {
  const periodNs = opts.periodNs ?? 10_000;
  const kdump = opts.target === 'kdump';
  const baseCmdline = opts.cmdline ?? '';
  const firstCmdline = kdump ? `${baseCmdline} crashkernel=${opts.crashkernel ?? DEFAULT_CRASHKERNEL}`.trim() : baseCmdline;
  const monitor = new StrayDmaMonitor(machine);
  const bootOpts = { cmdline: firstCmdline, testEngineShutdown: opts.quiesce === 'all', ...(opts.strictParams ? { strictParams: true } : {}) };
  try {
    const first = await boot(machine, bootOpts);
    const engines: KexecExperimentResult['engines'] = [];
    const running: string[] = [];
    for (const engine of testEngines(first.core)) {
      const path = engine.dev.ofNode?.path ?? engine.dev.name;
      if (opts.smmu && smmuKindOf(machine, path) !== opts.smmu) continue;
      const buf = await run(machine, engine.allocBuffer(0x1000, 'kexec experiment target'));
      engine.start({ op: 'periodic', dst: buf.dma, len: WRITE_LEN, pattern: 0x5a5a_5a5a, periodNs }, { continueOnError: opts.storm ?? false });
      engines.push({ master: engine.dev.name, dma: buf.dma, pa: buf.cpuAddr, len: WRITE_LEN });
      running.push(path);
    }
    const nothingToObserve =
      running.length === 0
        ? opts.smmu
          ? `no DMA test engine sits behind an SMMU${opts.smmu === 'v3' ? 'v3' : 'v1/v2'} on this machine: the experiment has nothing to observe`
          : 'this machine has no DMA test engine: the experiment has nothing to observe'
        : null;
    await machine.scheduler.runFor(opts.runBeforeNs ?? 100_000);

    const crashImage = kdump
      ? kexecLoadCrash(first, {
          ...(opts.targetCmdline !== undefined ? { cmdline: opts.targetCmdline } : {}),
          testEngineShutdown: true,
          ...(opts.strictParams ? { strictParams: true } : {}),
        })
      : null;
    const buffers: MemoryRange[] = engines.map((e) => ({ base: Math.floor(e.pa / FRAME) * FRAME, size: FRAME }));
    const ownBuffer = new Map(engines.map((e, i) => [e.master, buffers[i]!]));
    /** A write into the buffer the crashed kernel gave this very master: its own, not a stray. */
    const intoOwnOldBuffer = (master: string, pa: number): boolean => {
      const b = ownBuffer.get(master);
      return b !== undefined && pa >= b.base && pa < b.base + b.size;
    };
    const classify = (master: string, pa: number, len: number): string | null => {
      if (crashImage && !within([crashImage.reservation], pa)) {
        // The crashed kernel's memory: the dump. A master's own buffer stays its own.
        return intoOwnOldBuffer(master, pa) ? null : 'vmcore (crashed kernel memory)';
      }
      return monitor.classify(master, pa, len);
    };
    const accountant = new Accountant(machine, running, classify);
    const changes = kdump ? new ChangeTracker(machine, running) : null;
    const start = machine.scheduler.now;

    let second: Kernel | null = null;
    let bootError: string | null = null;
    let bootDone = start;
    let irqAtBoot = iommuInterrupts(machine, first.dt);
    try {
      const task = kdump
        ? panic(machine, 'kexec lab: sysrq-triggered crash')
        : kexec(machine, {
            ...(opts.targetCmdline !== undefined ? { cmdline: opts.targetCmdline } : { cmdline: baseCmdline }),
            drivers: opts.target === 'aware' ? 'all' : 'iommu-unaware',
            testEngineShutdown: true,
            ...(opts.strictParams ? { strictParams: true } : {}),
          });
      second = await run(machine, task, kdump ? 'panic' : 'kexec', BOOT_LIMIT_NS);
      bootDone = machine.scheduler.now;
      irqAtBoot = iommuInterrupts(machine, first.dt);
      if (!second) bootError = 'no crash kernel was loaded: the machine stopped at the panic';
    } catch (e) {
      bootError = e instanceof Error ? e.message : String(e);
    }
    if (second) {
      // The new kernel puts memory to use: the same frames the old one gave out come back first.
      const pages = Math.ceil((opts.workloadBytes ?? 0x40_0000) / 0x1000);
      for (let i = 0; i < pages; i++) {
        try {
          second.alloc.allocPages(0, { kind: 'kernel', what: 'workload' });
        } catch (e) {
          if (isKernelError(e, 'ENOMEM')) break; // a crash kernel's reservation is small: it uses what it has
          throw e;
        }
      }
    }
    await machine.scheduler.runFor(opts.runAfterNs ?? 200_000);
    const end = machine.scheduler.now;
    const irqAfter = iommuInterrupts(machine, first.dt);
    // Pull the plug: stop every engine through its registers and give what is in flight time to
    // finish. A transaction still outstanding after that is stalled for good, not merely in flight.
    stopEngines(machine, first.dt, running);
    await machine.scheduler.runFor(DRAIN_NS);

    const accounting = accountant.finish();
    const windowNs = end - start;
    const failed = accountant.failedTimes.length;
    const last = failed > 0 ? accountant.failedTimes[failed - 1]! : null;
    // Still failing within the last two periods of the window: it never went quiet.
    const quietAfterNs = last === null ? 0 : end - last <= 2 * periodNs ? null : last - start;
    const failedAfterBoot = second ? accountant.failedTimes.filter((t) => t > bootDone).length : 0;
    const iommuNodes = new Set(machine.iommus.keys());
    const secondLog = second ? second.log.lines().filter((l) => l.time >= start) : [];
    const iommuLogLines = secondLog.filter((l) => iommuNodes.has(l.source) && l.time > bootDone).length;
    const driverActions = secondLog
      .filter((l) => /currently enabled|kdump kernel|left by a previous kernel|reset at probe|Unhandled context fault|event 0x|suppressed/i.test(l.message))
      .map((l) => `${l.source}: ${l.message}`)
      .filter((v, i, a) => a.indexOf(v) === i)
      .slice(0, 12);

    let kdumpResult: KdumpMeasurement | null = null;
    if (crashImage && changes) {
      const res = crashImage.reservation;
      const c = changes.changed((pa) => (within([res], pa) ? 'c' : within(buffers, pa) ? 'a' : 'b'));
      kdumpResult = {
        reservation: { base: res.base, size: res.size },
        vmcoreSegments: crashImage.segments.length,
        vmcoreBytesChanged: c.a + c.b,
        vmcoreBytesChangedOutsideBuffers: c.b,
        crashKernelBytesChanged: c.c,
      };
    }
    let blocked = 0;
    let faults = 0;
    blocked = accounting.blocked + accounting.faulted;
    faults = accounting.faulted;
    const secondParams = second?.params ?? (crashImage ? parseCmdline(crashImage.boot.cmdline ?? '').params : DEFAULT_PARAMS);
    const unknownParams = [...first.unknownParams, ...(second?.unknownParams ?? [])].filter((v, i, a) => a.indexOf(v) === i);
    return {
      observable: nothingToObserve === null,
      nothingToObserve,
      // Every stray from the hand-over on: into the outgoing kernel's memory while it shut down, while
      // no kernel ran (a hand-over that takes time, a boot that failed), into the incoming kernel's;
      // for kdump, not a master's writes into its own old buffer.
      strayWrites: monitor.strays.filter(
        (w) => w.time >= start && !(crashImage && !within([crashImage.reservation], w.pa) && intoOwnOldBuffer(w.master, w.pa)),
      ),
      blockedTransactions: blocked,
      faults,
      accounting,
      storm: {
        windowNs,
        failed,
        failedPerSecond: windowNs > 0 ? Math.round((failed * 1e9) / windowNs) : 0,
        interrupts: irqAfter - irqAtBoot,
        iommuLogLines,
        quietAfterNs,
        bootedAfterNs: second ? bootDone - start : null,
        failedAfterBoot,
        failedPerSecondAfterBoot: second && end > bootDone ? Math.round((failedAfterBoot * 1e9) / (end - bootDone)) : 0,
        driverActions,
      },
      boot: {
        ok: second !== null,
        instance: second?.instance ?? null,
        kdump: second?.isKdump ?? false,
        error: bootError,
        devicesBound: second?.core.probeOrder.length ?? 0,
      },
      kdump: kdumpResult,
      policies: describePolicies(kdump ? 'panic' : 'shutdown', first.params, secondParams, opts.target),
      engines,
      first,
      second,
      unknownParams,
    };
  } finally {
    monitor.dispose();
  }
}
