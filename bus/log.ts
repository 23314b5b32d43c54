/**
 * The kernel log (dmesg): one per booted kernel. Every line goes three ways: into this kernel's
 * ring of entries (what a boot report or a test reads back), into the machine's trace stream as a
 * `log` event (virtual time, one track per source), and to a `debug` namespace for humans
 * (`DEBUG=iommu:* …`). Debug-level lines go only to `debug`, as `dev_dbg` is compiled out by default.
 */
import createDebug from 'debug';
import type { Debugger } from 'debug';
import { vtime, type CpuPort } from '../hw/cpu-port.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'err';

export interface LogEntry {
  /** Virtual time in nanoseconds. */
  readonly time: number;
  readonly level: Exclude<LogLevel, 'debug'>;
  /** What the line is about: a device name (DT path, PCI name) or a subsystem ("bus", "pci"). */
  readonly source: string;
  readonly message: string;
}

/** How many lines the ring keeps; older lines are dropped and counted, as the printk ring does. */
const LOG_RING_ENTRIES = 65536;

// debug instances are stateless printers: sharing one per namespace across kernels is harmless.
const printers = new Map<string, Debugger>();
function printer(namespace: string): Debugger {
  let p = printers.get(namespace);
  if (!p) {
    p = createDebug(namespace);
    printers.set(namespace, p);
  }
  return p;
}

export class KernelLog {
  // A circular buffer: once full, `head` is the oldest line and each write overwrites it.
  private readonly ring: LogEntry[] = [];
  private head = 0;
  private droppedLines = 0;

  constructor(private readonly port: CpuPort) {}

  /** Lines still in the ring, oldest first. */
  get entries(): readonly LogEntry[] {
    return this.head === 0 ? this.ring : [...this.ring.slice(this.head), ...this.ring.slice(0, this.head)];
  }

  /** Lines that fell out of the ring. */
  get dropped(): number {
    return this.droppedLines;
  }

  /** Write one line. `namespace` is the debug namespace of the module that logs it. */
  write(level: LogLevel, source: string, message: string, namespace = 'iommu:kernel'): void {
    const time = this.port.now();
    printer(namespace)(`${vtime(time)} ${level === 'debug' ? '' : `${level}: `}${source}: ${message}`);
    if (level === 'debug') return;
    const entry: LogEntry = { time, level, source, message };
    if (this.ring.length < LOG_RING_ENTRIES) {
      this.ring.push(entry);
    } else {
      this.ring[this.head] = entry;
      this.head = (this.head + 1) % LOG_RING_ENTRIES;
      this.droppedLines++;
    }
    const trace = this.port.trace;
    if (trace.active) trace.emit({ kind: 'log', time, track: source, level, message });
  }

  info(source: string, message: string, namespace?: string): void {
    this.write('info', source, message, namespace);
  }

  warn(source: string, message: string, namespace?: string): void {
    this.write('warn', source, message, namespace);
  }

  err(source: string, message: string, namespace?: string): void {
    this.write('err', source, message, namespace);
  }

  debug(source: string, message: string, namespace?: string): void {
    this.write('debug', source, message, namespace);
  }

  /** Lines at a given level (or all), for reports and tests. */
  lines(level?: Exclude<LogLevel, 'debug'>): LogEntry[] {
    const all = [...this.entries];
    return level === undefined ? all : all.filter((e) => e.level === level);
  }
}

