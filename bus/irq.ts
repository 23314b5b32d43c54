/**
 * Interrupt requests (kernel: kernel/irq/manage.c, request_irq() / request_threaded_irq() /
 * free_irq()) on top of the CPU port's interrupt lines.
 *
 * An interrupt is named as firmware names it: the controller's DT path and the specifier cells. Each
 * kernel keeps its own table of requested lines and attaches one dispatcher per line to the port, so
 * sharing rules (IRQF_SHARED) are the kernel's, and discarding the kernel (kexec) detaches everything.
 *
 * Handlers:
 * - the hard handler runs in the interrupt controller's delivery step, synchronously, and returns
 *   'handled', 'none' (not mine: spurious), or 'wake-thread';
 * - a threaded handler runs as an async kernel task, started after the hard handler returns, never
 *   inside it. While it runs the line is masked (IRQF_ONESHOT): a new interrupt on the line is latched
 *   and delivered once the thread finishes, so a thread never runs twice at once. The latch is one
 *   bit, like the controller's pending bit; whether a level line would still be asserted then is not
 *   known to this layer, so the replay may find nothing to do ('none').
 */
import type { Device } from './device.js';
import type { DriverCore } from './driver-core.js';
import { KernelError } from './errno.js';

const LOG_NS = 'iommu:bus:irq';

/** An interrupt as firmware describes it (what platformGetIrq and MSI allocation return). */
export interface IrqSpec {
  /** DT path of the interrupt controller. */
  readonly controller: string;
  /** Specifier cells in the controller's format (GIC: type, number, flags). */
  readonly specifier: readonly number[];
  /** `interrupt-names` entry (or a name given by MSI allocation), if any. */
  readonly name?: string | null;
}

/** The kernel's irqreturn_t */
export type IrqReturn = 'none' | 'handled' | 'wake-thread';

/** A hard-IRQ handler: runs synchronously in the interrupt delivery. */
export type IrqHandlerFn = () => IrqReturn;

/** A threaded handler: an async kernel task. */
export type IrqThreadFn = () => Promise<IrqReturn | void>;

export interface IrqRequestOptions {
  /** The kernel's IRQF_SHARED — every action on the line must agree to share it. */
  shared?: boolean;
}

export interface IrqActionStats {
  /** Deliveries that reached this action's hard handler (or default primary handler). */
  hard: number;
  handled: number;
  /** Deliveries the handler said were not its own. */
  none: number;
  /** Thread runs started. */
  threadRuns: number;
  /** Hard handler or thread threw. */
  errors: number;
}

/** One requested interrupt (kernel: struct irqaction). */
export class IrqAction {
  readonly stats: IrqActionStats = { hard: 0, handled: 0, none: 0, threadRuns: 0, errors: 0 };
  /** @internal */ threadBusy = false;
  /** @internal */ idleWaiters: (() => void)[] = [];
  /** @internal */ freed = false;

  constructor(
    readonly dev: Device,
    readonly irq: IrqSpec,
    readonly name: string,
    /** @internal */ readonly hard: IrqHandlerFn | null,
    /** @internal */ readonly thread: IrqThreadFn | null,
    readonly shared: boolean,
    /** @internal */ readonly line: IrqLineState,
  ) {}

  get threaded(): boolean {
    return this.thread !== null;
  }

  /** True while the threaded handler runs. */
  get threadRunning(): boolean {
    return this.threadBusy;
  }
}

/** @internal A requested line of one kernel. */
interface IrqLineState {
  readonly key: string;
  readonly label: string;
  readonly actions: IrqAction[];
  detach: (() => void) | null;
  /** Threads (IRQF_ONESHOT) currently holding the line masked. */
  masked: number;
  /** An interrupt arrived while masked. */
  latched: boolean;
}

interface IrqTable {
  readonly core: DriverCore;
  readonly lines: Map<string, IrqLineState>;
}

const tables = new WeakMap<DriverCore, IrqTable>();

function tableOf(core: DriverCore): IrqTable {
  let t = tables.get(core);
  if (!t) {
    const table: IrqTable = { core, lines: new Map() };
    tables.set(core, table);
    core.onTeardown('interrupt handlers', () => {
      // (kernel: machine_kexec_mask_interrupts() — nothing of this kernel may run on a later interrupt.)
      for (const line of table.lines.values()) {
        line.detach?.();
        line.detach = null;
        for (const a of line.actions) a.freed = true;
        line.actions.length = 0;
      }
      table.lines.clear();
    });
    t = table;
  }
  return t;
}

/** How an interrupt is written in messages: "/intc@2c001000 <0 42 4>". */
export function irqLabel(irq: IrqSpec): string {
  return `${irq.controller} <${irq.specifier.join(' ')}>`;
}

function checkSpec(irq: IrqSpec, name: string): void {
  if (typeof irq.controller !== 'string' || irq.controller.length === 0) {
    throw new KernelError('EINVAL', `request_irq ${name}: no interrupt controller given`);
  }
  for (const c of irq.specifier) {
    if (!Number.isInteger(c) || c < 0 || c > 0xffffffff) {
      throw new KernelError('EINVAL', `request_irq ${name}: specifier cell ${c} of ${irqLabel(irq)} is not a u32`);
    }
  }
}

function setup(
  dev: Device,
  irq: IrqSpec,
  name: string,
  hard: IrqHandlerFn | null,
  thread: IrqThreadFn | null,
  opts: IrqRequestOptions,
): IrqAction {
  checkSpec(irq, name);
  const core = dev.core;
  const table = tableOf(core);
  const key = `${irq.controller}|${irq.specifier.join(',')}`;
  const shared = opts.shared ?? false;
  let line = table.lines.get(key);
  if (line && line.actions.length > 0) {
    const other = line.actions[0];
    if (!shared || !other.shared) {
      throw new KernelError(
        'EBUSY',
        `request_irq ${name} (${dev.name}): ${line.label} is already requested by ${other.name} (${other.dev.name}) and not both are IRQF_SHARED`,
      );
    }
    if (other.threaded !== (thread !== null)) {
      throw new KernelError('EBUSY', `request_irq ${name} (${dev.name}): IRQF_ONESHOT mismatch with ${other.name} on ${line.label}`);
    }
  }
  if (!line) {
    line = { key, label: irqLabel(irq), actions: [], detach: null, masked: 0, latched: false };
    table.lines.set(key, line);
  }
  const action = new IrqAction(dev, irq, name, hard, thread, shared, line);
  if (line.detach === null) {
    const l = line;
    try {
      l.detach = core.port.requestIrq(irq.controller, irq.specifier, () => deliver(core, l));
    } catch (e) {
      table.lines.delete(key);
      throw new KernelError('EINVAL', `request_irq ${name} (${dev.name}): ${line.label}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  line.actions.push(action);
  return action;
}

/** The line's dispatcher: what the interrupt controller calls (kernel: handle_irq_event()). */
function deliver(core: DriverCore, line: IrqLineState): void {
  if (line.masked > 0) {
    line.latched = true;
    return;
  }
  for (const action of line.actions.slice()) {
    if (action.freed) continue;
    action.stats.hard++;
    let ret: IrqReturn;
    try {
      ret = action.hard ? action.hard() : 'wake-thread';
    } catch (e) {
      action.stats.errors++;
      core.log.err(action.dev.name, `irq handler ${action.name} threw: ${e instanceof Error ? e.message : String(e)}`, LOG_NS);
      continue;
    }
    if (ret === 'none') {
      action.stats.none++;
    } else if (ret === 'handled') {
      action.stats.handled++;
    } else if (action.thread) {
      action.stats.handled++;
      wakeThread(core, line, action);
    } else {
      action.stats.handled++;
      core.log.err(action.dev.name, `irq handler ${action.name} asked to wake a thread it does not have`, LOG_NS);
    }
  }
}

/** With IRQF_ONESHOT: mask the line, run the thread as a task. */
// kernel: __irq_wake_thread() [kernel/irq/handle.c]
function wakeThread(core: DriverCore, line: IrqLineState, action: IrqAction): void {
  line.masked++;
  action.threadBusy = true;
  action.stats.threadRuns++;
  // Started from a promise job, so it runs after the delivery step returns, never inside it.
  void Promise.resolve().then(() => runThread(core, line, action));
}

async function runThread(core: DriverCore, line: IrqLineState, action: IrqAction): Promise<void> {
  const trace = core.port.trace;
  const label = `irq/${action.name}`;
  if (trace.active) trace.emit({ kind: 'work', time: core.port.now(), track: action.dev.name, label, phase: 'start' });
  try {
    await action.thread!();
  } catch (e) {
    action.stats.errors++;
    core.log.err(action.dev.name, `irq thread ${action.name} threw: ${e instanceof Error ? e.message : String(e)}`, LOG_NS);
  } finally {
    if (trace.active) trace.emit({ kind: 'work', time: core.port.now(), track: action.dev.name, label, phase: 'end' });
    action.threadBusy = false;
    line.masked--;
    for (const w of action.idleWaiters.splice(0)) w();
    // (kernel: irq_finalize_oneshot() — unmask; an interrupt latched meanwhile is delivered now.)
    if (line.masked === 0 && line.latched && line.detach !== null) {
      line.latched = false;
      deliver(core, line);
    }
  }
}

/** Attach a hard handler to an interrupt. */
// kernel: request_irq() [interrupt.h]
export function requestIrq(dev: Device, irq: IrqSpec, handler: IrqHandlerFn, name: string, opts: IrqRequestOptions = {}): IrqAction {
  return setup(dev, irq, name, handler, null, opts);
}

/**
 * With IRQF_ONESHOT. With `hard` null the primary handler just wakes
 * the thread.
 */
// kernel: request_threaded_irq() [kernel/irq/manage.c]
export function requestThreadedIrq(
  dev: Device,
  irq: IrqSpec,
  hard: IrqHandlerFn | null,
  thread: IrqThreadFn,
  name: string,
  opts: IrqRequestOptions = {},
): IrqAction {
  return setup(dev, irq, name, hard, thread, opts);
}

/** Resolves once the action's thread is not running. */
// kernel: synchronize_irq() [kernel/irq/manage.c]
export function synchronizeIrq(action: IrqAction): Promise<void> {
  if (!action.threadBusy) return Promise.resolve();
  return new Promise((resolve) => action.idleWaiters.push(resolve));
}

/**
 * Detach the action now (no further deliveries reach it) and resolve once its
 * thread, if running, has finished. The line is released at the port when its last action goes.
 */
// kernel: free_irq() [kernel/irq/manage.c]
export function freeIrq(action: IrqAction): Promise<void> {
  if (action.freed) {
    return Promise.reject(new KernelError('EINVAL', `free_irq: ${action.name} (${action.dev.name}) on ${irqLabel(action.irq)} is already free`));
  }
  action.freed = true;
  const line = action.line;
  const i = line.actions.indexOf(action);
  if (i >= 0) line.actions.splice(i, 1);
  if (line.actions.length === 0) {
    line.detach?.();
    line.detach = null;
    line.latched = false;
    const table = tables.get(action.dev.core);
    if (table?.lines.get(line.key) === line) table.lines.delete(line.key);
  }
  return synchronizeIrq(action);
}

/** Freed when the driver unbinds. */
// kernel: devm_request_irq() [interrupt.h]
export function devmRequestIrq(dev: Device, irq: IrqSpec, handler: IrqHandlerFn, name: string, opts: IrqRequestOptions = {}): IrqAction {
  const action = requestIrq(dev, irq, handler, name, opts);
  dev.devres.add(`irq ${name}`, () => (action.freed ? undefined : freeIrq(action)));
  return action;
}

// kernel: devm_request_threaded_irq() [kernel/irq/devres.c]
export function devmRequestThreadedIrq(
  dev: Device,
  irq: IrqSpec,
  hard: IrqHandlerFn | null,
  thread: IrqThreadFn,
  name: string,
  opts: IrqRequestOptions = {},
): IrqAction {
  const action = requestThreadedIrq(dev, irq, hard, thread, name, opts);
  dev.devres.add(`irq ${name}`, () => (action.freed ? undefined : freeIrq(action)));
  return action;
}
