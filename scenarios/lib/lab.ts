/**
 * The lab bench: build a machine from firmware, boot kernels on it, and drive virtual time while
 * kernel code runs. Scenarios and tests use these; they are the only place that holds both the
 * machine (hw/) and the kernel in one hand.
 */
import { type AcpiMemoryMap, parseAcpiTables } from '../../bus/acpi/acpi-boot.js';
import { parseFdt, writeFdt } from '../../bus/of/fdt.js';
import type { DeviceTree } from '../../bus/of/tree.js';
import { Machine, type MachineOptions } from '../../hw/machine.js';
import type { TraceEvent } from '../../hw/trace.js';
import { bootKernel, type BootOptions, type Kernel } from '../../kernel/kernel.js';
import { fixupMemory } from './bootloader.js';
import { buildVirtDeviceTree, type VirtOptions } from '../machines/virt.js';
import { buildVirtAcpi, type VirtAcpiOptions } from '../machines/virt-acpi.js';

/** Receives each traced event and the machine it happened on (numbered from 0 in build order). */
export type TraceSink = (e: TraceEvent, machine: number) => void;

let recorder: { sink: TraceSink; machines: number } | null = null;

/**
 * Record the trace of every machine the lab builds while `fn` runs (from the moment each is built,
 * so boots are in it). Scenarios need not wire tracing themselves. The sink learns which machine
 * each event came from: each machine has its own virtual clock, so each is its own timeline.
 */
export async function recordTraces<T>(sink: TraceSink, fn: () => Promise<T>): Promise<T> {
  if (recorder) throw new Error('recordTraces: a recording is already running');
  const token = { sink, machines: 0 };
  recorder = token;
  try {
    return await fn();
  } finally {
    recorder = null;
  }
}

/** Virtual time a boot may take before it is declared hung (1 s). */
export const BOOT_LIMIT_NS = 1_000_000_000;

export interface MachineBuildOptions extends Omit<MachineOptions, 'seed'> {
  seed?: number;
}

/**
 * Build a machine from a DTB. The blob is parsed (FirmwareError if malformed), the machine is made from
 * the tree, and the same blob is what the boot loader hands the kernel.
 */
export function machineFromDtb(blob: Uint8Array, opts: MachineBuildOptions = {}): Machine {
  let tree = parseFdt(blob);
  // The boot loader fills in RAM the DT leaves to it, then hands on the fixed-up blob.
  if (fixupMemory(tree)) tree = parseFdt(writeFdt(tree));
  const machine = Machine.fromDeviceTree(tree, { ...opts, seed: opts.seed ?? 1 });
  const token = recorder;
  if (token) {
    const id = token.machines++;
    // Only while the recording that saw this machine built is still running.
    machine.trace.subscribe((e) => {
      if (recorder === token) token.sink(e, id);
    });
  }
  return machine;
}

/**
 * Build a machine from ACPI tables (blobs by signature, as /sys/firmware/acpi/tables holds them)
 * and a memory map. The tables are parsed (FirmwareError if malformed), the machine is made from
 * them, and the same blobs and map are what the boot loader hands the kernel.
 */
export function machineFromAcpi(tables: ReadonlyMap<string, Uint8Array>, memory: AcpiMemoryMap, opts: MachineBuildOptions = {}): Machine {
  const parsed = parseAcpiTables(tables);
  const machine = Machine.fromAcpi(parsed, memory, { ...opts, seed: opts.seed ?? 1 });
  const token = recorder;
  if (token) {
    const id = token.machines++;
    machine.trace.subscribe((e) => {
      if (recorder === token) token.sink(e, id);
    });
  }
  return machine;
}

/** The built-in `virt` machine described by ACPI tables instead of its device tree. */
export function virtAcpiMachine(opts: MachineBuildOptions & VirtAcpiOptions = {}): Machine {
  const { tables, memory } = buildVirtAcpi(opts);
  return machineFromAcpi(tables, memory, opts);
}

/**
 * Build a machine from ACPI tables and boot a kernel on it: FirmwareError for malformed tables,
 * else the booted pair (what a firmware fuzz campaign calls per input).
 */
export async function bootFromAcpi(
  tables: ReadonlyMap<string, Uint8Array>,
  memory: AcpiMemoryMap,
  opts: MachineBuildOptions & { boot?: BootOptions } = {},
): Promise<{ machine: Machine; kernel: Kernel }> {
  const machine = machineFromAcpi(tables, memory, opts);
  const kernel = await boot(machine, opts.boot ?? {});
  return { machine, kernel };
}

/** Build a machine from a device tree made in code (serialised first, as firmware would be). */
export function machineFromTree(tree: DeviceTree, opts: MachineBuildOptions = {}): Machine {
  return machineFromDtb(writeFdt(tree), opts);
}

/** The built-in `virt` machine. */
export function virtMachine(opts: MachineBuildOptions & VirtOptions = {}): Machine {
  return machineFromTree(buildVirtDeviceTree(opts), opts);
}

/** Run kernel code on the machine until it finishes, advancing virtual time as it waits. */
export function run<T>(machine: Machine, task: Promise<T>, what = 'task', limitNs = Number.POSITIVE_INFINITY): Promise<T> {
  return machine.scheduler.runUntilSettled(task, what, limitNs);
}

/** Boot a kernel on the machine and return it once boot has finished. */
export function boot(machine: Machine, opts: BootOptions = {}): Promise<Kernel> {
  return run(machine, bootKernel(machine, opts), 'kernel boot', BOOT_LIMIT_NS);
}
