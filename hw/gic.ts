/**
 * Interrupt controllers: the GIC (v2: `arm,gic-400`, `arm,cortex-a15-gic`, …; v3: `arm,gic-v3`), a
 * generic controller for any other DT node with `interrupt-controller`, and the MSI doorbells.
 *
 * A line is addressed as firmware addresses it: (controller DT path, specifier cells). For a GIC
 * the cells are (type, number, flags): type 0 is an SPI (INTID = number + 32), 1 a PPI (INTID =
 * number + 16); a GICv3 also takes 2, an extended SPI (INTID = number + 4096), and 3, an extended
 * PPI (INTID = number + 1056). The flags cell (trigger, CPU mask) is not modelled. A generic
 * controller keys its lines by the whole specifier.
 *
 * Raising a line never runs a handler inside the raising call: it marks the line pending (a second
 * raise while pending is latched into the same delivery, as the GIC's pending bit does) and the
 * handlers run in a scheduler step `latencyNs` later. A delivery that finds no handler attached is
 * counted as unhandled (per line and per controller) and logged.
 *
 * What is not modelled: the distributor/redistributor/CPU-interface registers (the kernel attaches
 * handlers through the CPU port rather than programming a GIC), priorities, affinity, masking, SGIs,
 * and the LPI configuration and pending tables (an LPI is raised only by an ITS).
 *
 * MSI doorbells:
 * - GICv2m frame (`arm,gic-v2m-frame`, a child of the GIC node): MSI_TYPER at 0x008 reports the SPI
 *   block ([25:16] base INTID, [9:0] count) from `arm,msi-base-spi`/`arm,msi-num-spis` or from the
 *   machine's defaults; a 32-bit write of INTID N to MSI_SETSPI_NS (0x040) raises SPI N on the parent
 *   GIC when N is inside the frame's block (otherwise the write is dropped and counted).
 * - GICv3 ITS (`arm,gic-v3-its`) below a GICv3: hw/gic-its.ts (command queue, DeviceID/EventID
 *   translation, LPIs raised here: specifier type 4, `GIC_LPI`, names LPI number + 8192). Below a
 *   GICv2 (no LPIs) an ITS is reduced to ItsDoorbell: GITS_TRANSLATER (0x10040) counts writes and
 *   remembers the EventIDs written; every other register reads as zero and ignores writes.
 */
import { field } from './bitfield.js';
import { vtime } from './vtime.js';
import createDebug from 'debug';
import type { MmioDevice } from './mmio.js';
import type { Scheduler } from './scheduler.js';
import type { Trace } from './trace.js';

const log = createDebug('iommu:hw:gic');

export type IrqHandler = () => void;

/** Per-line (and per-controller) counters, visible to tests. */
export interface IrqStats {
  /** raise() calls */
  raised: number;
  /** raises that found the line already pending and were merged into its delivery */
  coalesced: number;
  /** deliveries that ran at least one handler */
  delivered: number;
  /** deliveries that found no handler attached (spurious/unhandled) */
  unhandled: number;
}

/** A line a device model holds to signal its interrupt. */
export interface IrqLine {
  /** DT path of the controller. */
  readonly controller: string;
  readonly specifier: readonly number[];
  /** From `interrupt-names`, when firmware gives one. */
  readonly name: string | null;
  raise(): void;
}

interface LineState {
  readonly label: string;
  readonly handlers: IrqHandler[];
  pending: boolean;
  readonly stats: IrqStats;
  deliver: () => void;
}

const zeroStats = (): IrqStats => ({ raised: 0, coalesced: 0, delivered: 0, unhandled: 0 });

/**
 * The common part of every controller: lines by numeric key, pending latch, delivery through the
 * scheduler, counters. Subclasses say how a specifier names a key.
 */
export abstract class InterruptController {
  private readonly lines = new Map<number, LineState>();
  readonly totals: IrqStats = zeroStats();

  constructor(
    /** DT path of the controller node. */
    readonly path: string,
    readonly compatible: string | null,
    protected readonly scheduler: Scheduler,
    protected readonly trace: Trace,
    /** Virtual time between a raise and the handlers running. */
    readonly latencyNs: number,
  ) {}

  /** The key of the line a specifier names; throws an Error saying why a specifier is invalid. */
  abstract keyOf(specifier: readonly number[]): number;

  /** A human-readable name of a line, e.g. "SPI 42 (INTID 74)". */
  protected abstract labelOf(key: number): string;

  /** Attach a handler to the line a specifier names; returns the detach function. */
  attach(specifier: readonly number[], handler: IrqHandler): () => void {
    const st = this.state(this.keyOf(specifier));
    st.handlers.push(handler);
    let attached = true;
    return () => {
      if (!attached) return;
      attached = false;
      const i = st.handlers.indexOf(handler);
      if (i >= 0) st.handlers.splice(i, 1);
    };
  }

  /** A raisable handle for the line a specifier names (validated now, not at raise time). */
  line(specifier: readonly number[], name: string | null = null): IrqLine {
    const key = this.keyOf(specifier);
    const spec = specifier.slice();
    return { controller: this.path, specifier: spec, name, raise: () => this.raiseKey(key) };
  }

  /** Detach every handler (what a freshly booted kernel, e.g. after kexec, starts from). */
  detachAll(): void {
    for (const st of this.lines.values()) st.handlers.length = 0;
  }

  /** Number of handlers attached to a line. */
  handlerCount(specifier: readonly number[]): number {
    return this.lines.get(this.keyOf(specifier))?.handlers.length ?? 0;
  }

  /** Counters of one line (all zero if it was never used). */
  stats(specifier: readonly number[]): IrqStats {
    const st = this.lines.get(this.keyOf(specifier));
    return st ? { ...st.stats } : zeroStats();
  }

  /** True while a raise of the line waits for its delivery step. */
  isPending(specifier: readonly number[]): boolean {
    return this.lines.get(this.keyOf(specifier))?.pending ?? false;
  }

  protected raiseKey(key: number): void {
    const st = this.state(key);
    st.stats.raised++;
    this.totals.raised++;
    if (this.trace.active) this.trace.emit({ kind: 'irq', time: this.scheduler.now, track: this.path, line: st.label });
    if (st.pending) {
      st.stats.coalesced++;
      this.totals.coalesced++;
      return;
    }
    st.pending = true;
    this.scheduler.schedule(this.latencyNs, st.deliver, `irq ${this.path} ${st.label}`);
  }

  private state(key: number): LineState {
    let st = this.lines.get(key);
    if (!st) {
      const s: LineState = {
        label: this.labelOf(key),
        handlers: [],
        pending: false,
        stats: zeroStats(),
        deliver: () => this.deliver(s),
      };
      st = s;
      this.lines.set(key, st);
    }
    return st;
  }

  private deliver(st: LineState): void {
    st.pending = false;
    if (st.handlers.length === 0) {
      st.stats.unhandled++;
      this.totals.unhandled++;
      if (log.enabled) log('%s %s: %s raised with no handler attached', vtime(this.scheduler.now), this.path, st.label);
      if (this.trace.active) {
        this.trace.emit({
          kind: 'log',
          time: this.scheduler.now,
          track: this.path,
          level: 'warn',
          message: `unhandled interrupt ${st.label}`,
        });
      }
      return;
    }
    st.stats.delivered++;
    this.totals.delivered++;
    // A handler may detach itself (or another) while running: iterate over a snapshot.
    for (const h of st.handlers.slice()) h();
  }
}

/** Interrupt ID ranges of the GIC architecture. */
export const GIC_PPI_BASE = 16;
export const GIC_SPI_BASE = 32;
export const GIC_SPI_MAX = 1019;
export const GIC_EPPI_BASE = 1056;
export const GIC_EPPI_COUNT = 64;
export const GIC_ESPI_BASE = 4096;
export const GIC_ESPI_COUNT = 1024;

/** GIC specifier types (first cell). */
export const GIC_SPI = 0;
export const GIC_PPI = 1;
export const GIC_ESPI = 2;
export const GIC_EPPI = 3;
/**
 * LPIs (INTID = number + 8192, up to 64Ki of them). Not a Device Tree binding type: firmware never
 * names an LPI; this is how the kernel's ITS MSI domain names the ones it allocated.
 */
export const GIC_LPI = 4;
export const GIC_LPI_BASE = 8192;
export const GIC_LPI_COUNT = 0x1_0000;

/** DT compatibles of the GICv2 family (same 3-cell binding) and of GICv3. */
export const GIC_V2_COMPATIBLES: readonly string[] = [
  'arm,gic-400',
  'arm,cortex-a15-gic',
  'arm,cortex-a9-gic',
  'arm,cortex-a7-gic',
  'arm,arm11mp-gic',
  'arm,arm1176jzf-devchip-gic',
  'arm,eb11mp-gic',
  'arm,pl390',
  'arm,tc11mp-gic',
  'brcm,brahma-b15-gic',
  'nvidia,tegra210-agic',
  'qcom,msm-8660-qgic',
  'qcom,msm-qgic2',
];
export const GIC_V3_COMPATIBLES: readonly string[] = ['arm,gic-v3'];

export class GicController extends InterruptController {
  constructor(
    path: string,
    compatible: string | null,
    readonly version: 2 | 3,
    scheduler: Scheduler,
    trace: Trace,
    latencyNs: number,
  ) {
    super(path, compatible, scheduler, trace, latencyNs);
  }

  /** INTID of a (type, number, flags) specifier (kernel: gic_irq_domain_translate()). */
  keyOf(specifier: readonly number[]): number {
    if (specifier.length < 3) {
      throw new Error(`${this.path}: GIC interrupt specifier needs 3 cells (type, number, flags), got [${specifier.join(', ')}]`);
    }
    const [type, num] = specifier as [number, number];
    switch (type) {
      case GIC_SPI:
        if (num <= GIC_SPI_MAX - GIC_SPI_BASE) return num + GIC_SPI_BASE;
        throw new Error(`${this.path}: SPI number ${num} is out of range (0..${GIC_SPI_MAX - GIC_SPI_BASE})`);
      case GIC_PPI:
        if (num < 16) return num + GIC_PPI_BASE;
        throw new Error(`${this.path}: PPI number ${num} is out of range (0..15)`);
      case GIC_ESPI:
        if (this.version === 3 && num < GIC_ESPI_COUNT) return num + GIC_ESPI_BASE;
        break;
      case GIC_EPPI:
        if (this.version === 3 && num < GIC_EPPI_COUNT) return num + GIC_EPPI_BASE;
        break;
      case GIC_LPI:
        if (this.version === 3 && num < GIC_LPI_COUNT) return num + GIC_LPI_BASE;
        break;
    }
    throw new Error(`${this.path}: GICv${this.version} has no interrupt of type ${type} number ${num}`);
  }

  /** Raise an interrupt by INTID: what a wired SPI/PPI or an MSI frame does. */
  raise(intid: number): void {
    if (!this.validIntid(intid)) throw new RangeError(`${this.path}: INTID ${intid} is not an SPI or PPI of this GICv${this.version}`);
    this.raiseKey(intid);
  }

  /** Raise an LPI (what an ITS translation does): GICv3 only, INTIDs 8192 up. */
  raiseLpi(intid: number): void {
    if (this.version !== 3 || !Number.isInteger(intid) || intid < GIC_LPI_BASE || intid >= GIC_LPI_BASE + GIC_LPI_COUNT) {
      throw new RangeError(`${this.path}: INTID ${intid} is not an LPI of this GICv${this.version}`);
    }
    this.raiseKey(intid);
  }

  /** Counters of one INTID. */
  statsOf(intid: number): IrqStats {
    return this.stats(this.specifierOf(intid));
  }

  /** The specifier firmware would write for an INTID. */
  specifierOf(intid: number): number[] {
    if (intid >= GIC_LPI_BASE) return [GIC_LPI, intid - GIC_LPI_BASE, 1];
    if (intid >= GIC_ESPI_BASE) return [GIC_ESPI, intid - GIC_ESPI_BASE, 4];
    if (intid >= GIC_EPPI_BASE) return [GIC_EPPI, intid - GIC_EPPI_BASE, 4];
    if (intid >= GIC_SPI_BASE) return [GIC_SPI, intid - GIC_SPI_BASE, 4];
    return [GIC_PPI, intid - GIC_PPI_BASE, 4];
  }

  validIntid(intid: number): boolean {
    if (!Number.isInteger(intid)) return false;
    if (intid >= GIC_PPI_BASE && intid <= GIC_SPI_MAX) return true;
    if (this.version !== 3) return false;
    return (
      (intid >= GIC_EPPI_BASE && intid < GIC_EPPI_BASE + GIC_EPPI_COUNT) ||
      (intid >= GIC_ESPI_BASE && intid < GIC_ESPI_BASE + GIC_ESPI_COUNT)
    );
  }

  protected labelOf(intid: number): string {
    if (intid >= GIC_LPI_BASE) return `LPI ${intid}`;
    if (intid >= GIC_ESPI_BASE) return `ESPI ${intid - GIC_ESPI_BASE} (INTID ${intid})`;
    if (intid >= GIC_EPPI_BASE) return `EPPI ${intid - GIC_EPPI_BASE} (INTID ${intid})`;
    if (intid >= GIC_SPI_BASE) return `SPI ${intid - GIC_SPI_BASE} (INTID ${intid})`;
    return `PPI ${intid - GIC_PPI_BASE} (INTID ${intid})`;
  }
}

/**
 * Any other interrupt controller (GPIO blocks, PDCs, wake-up controllers, …): a line per distinct
 * specifier, with `#interrupt-cells` checked.
 */
export class GenericInterruptController extends InterruptController {
  private readonly keys = new Map<string, number>();
  private readonly specs: string[] = [];

  constructor(
    path: string,
    compatible: string | null,
    readonly interruptCells: number,
    scheduler: Scheduler,
    trace: Trace,
    latencyNs: number,
  ) {
    super(path, compatible, scheduler, trace, latencyNs);
  }

  keyOf(specifier: readonly number[]): number {
    if (specifier.length !== this.interruptCells) {
      throw new Error(
        `${this.path}: interrupt specifier [${specifier.join(', ')}] has ${specifier.length} cells, #interrupt-cells is ${this.interruptCells}`,
      );
    }
    const s = specifier.join(',');
    let k = this.keys.get(s);
    if (k === undefined) {
      k = this.specs.length;
      this.specs.push(s);
      this.keys.set(s, k);
    }
    return k;
  }

  /** Raise the line a specifier names. */
  raise(specifier: readonly number[]): void {
    this.raiseKey(this.keyOf(specifier));
  }

  protected labelOf(key: number): string {
    return `<${this.specs[key]}>`;
  }
}

// ---------------------------------------------------------------------------------------------
// MSI doorbells
// ---------------------------------------------------------------------------------------------

/** GICv2m MSI frame registers. */
export const V2M_MSI_TYPER = 0x008;
/** The first SPI of the frame's block, and how many SPIs it has. */
export const V2M_MSI_TYPER_BASE = field('MSI_TYPER.BASE', 25, 16);
export const V2M_MSI_TYPER_NUM = field('MSI_TYPER.NUMBER', 9, 0);
export const V2M_MSI_SETSPI_NS = 0x040;
export const V2M_MSI_IIDR = 0xfcc;
/** IIDR of our frame: implementer Arm (0x43b), product 0, revision 0. */
const V2M_IIDR_VALUE = 0x0000_043b;

export class GicV2mFrame implements MmioDevice {
  /** Writes to MSI_SETSPI_NS that raised an SPI. */
  accepted = 0;
  /** Writes naming an INTID outside the frame's block (dropped). */
  rejected = 0;

  constructor(
    readonly name: string,
    /** Physical address of the frame (for trace events). */
    readonly base: number,
    readonly gic: GicController,
    /** First INTID of the frame's SPI block. */
    readonly baseSpi: number,
    readonly numSpis: number,
    private readonly trace: Trace,
    private readonly now: () => number,
  ) {
    if (baseSpi < GIC_SPI_BASE || numSpis < 1 || baseSpi + numSpis - 1 > GIC_SPI_MAX || baseSpi > V2M_MSI_TYPER_BASE.max) {
      throw new RangeError(`${name}: SPI block ${baseSpi}+${numSpis} does not fit the GIC's SPIs (32..1019)`);
    }
  }

  /** The doorbell address a device writes its INTID to. */
  get doorbell(): number {
    return this.base + V2M_MSI_SETSPI_NS;
  }

  read32(offset: number): number {
    return this.peek32(offset);
  }

  peek32(offset: number): number {
    switch (offset) {
      case V2M_MSI_TYPER:
        return (V2M_MSI_TYPER_BASE.encode(this.baseSpi) | V2M_MSI_TYPER_NUM.encode(this.numSpis)) >>> 0;
      case V2M_MSI_IIDR:
        return V2M_IIDR_VALUE;
      default:
        return 0;
    }
  }

  write32(offset: number, value: number): void {
    if (offset !== V2M_MSI_SETSPI_NS) {
      if (log.enabled) log('%s %s: write 0x%s to read-only/unknown offset 0x%s ignored', vtime(this.now()), this.name, value.toString(16), offset.toString(16));
      return;
    }
    if (this.trace.active) this.trace.emit({ kind: 'msi', time: this.now(), track: this.name, address: this.doorbell, data: value });
    if (value < this.baseSpi || value >= this.baseSpi + this.numSpis) {
      this.rejected++;
      if (log.enabled) log('%s %s: MSI data %d outside SPI block %d..%d dropped', vtime(this.now()), this.name, value, this.baseSpi, this.baseSpi + this.numSpis - 1);
      return;
    }
    this.accepted++;
    this.gic.raise(value);
  }
}

export const GITS_TRANSLATER = 0x10040;

/** GICv3 ITS reduced to its doorbell: counts GITS_TRANSLATER writes (see the file header). */
export class ItsDoorbell implements MmioDevice {
  /** Number of writes to GITS_TRANSLATER. */
  writes = 0;
  /** EventIDs written, oldest first (bounded to the most recent `historyLimit`). */
  readonly eventIds: number[] = [];

  constructor(
    readonly name: string,
    readonly base: number,
    private readonly trace: Trace,
    private readonly now: () => number,
    private readonly historyLimit = 1024,
  ) {}

  get doorbell(): number {
    return this.base + GITS_TRANSLATER;
  }

  read32(): number {
    return 0;
  }

  peek32(): number {
    return 0;
  }

  write32(offset: number, value: number): void {
    if (offset !== GITS_TRANSLATER) return;
    this.writes++;
    this.eventIds.push(value);
    if (this.eventIds.length > this.historyLimit) this.eventIds.shift();
    if (this.trace.active) this.trace.emit({ kind: 'msi', time: this.now(), track: this.name, address: this.doorbell, data: value });
  }
}
