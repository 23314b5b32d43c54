/**
 * Lab helpers for the Grace CMDQV scenarios and tests: boot the `virt` machine with its CMDQV (the
 * `cmdqv` option), reach the CMDQV model and the driver's state, run kernel threads on chosen CPUs,
 * and drive a VINTF page0 as a guest would (plain MMIO to the 64 KiB window a VMM would map).
 */
import { runOnCpu } from '../bus/smp.js';
import { tegra241CmdqvOf, type Tegra241Cmdqv } from '../drivers/arm-smmu-v3/tegra241-cmdqv.js';
import type { CpuCosts } from '../hw/cpu-port.js';
import type { Machine } from '../hw/machine.js';
import type { SmmuV3Options } from '../hw/smmu-v3/options.js';
import type { Tegra241Cmdqv as Tegra241CmdqvModel } from '../hw/tegra241-cmdqv/cmdqv.js';
import type { Tegra241CmdqvOptions } from '../hw/tegra241-cmdqv/options.js';
import { findArmSmmuV3 } from '../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { boot, virtMachine } from './lib/lab.js';
import { smmuModel, V3, type SmmuV3Lab } from './smmu-v3-lab.js';
import { VIRT } from './machines/virt.js';

export interface CmdqvLab extends SmmuV3Lab {
  /** The CMDQV model. */
  cmdqvModel: Tegra241CmdqvModel;
  /** The driver's CMDQV state. */
  cmdqv: Tegra241Cmdqv;
}

export interface CmdqvLabOptions {
  seed: number;
  bootargs?: string;
  /** SMMUv3 options; `timing.commandNs` defaults to GRACE_SMMU_COMMAND_NS. */
  smmu?: SmmuV3Options;
  cmdqv?: Tegra241CmdqvOptions;
  /** The CPUs' costs (default GRACE_CPU_COSTS). */
  cpuCosts?: Partial<CpuCosts>;
}

/**
 * The CPU costs a Grace machine runs with here (the machine's default is zero):
 * - lineTransferNs 50: a cache line bouncing between two Neoverse V2 cores over a CMN-700 mesh
 *   takes 30-60 ns (Chips and Cheese, "Arm's Neoverse V2, in AWS's Graviton 4", 2024; Grace's
 *   cores are Neoverse V2 on a mesh too);
 * - atomicNs 20: an uncontended LSE CAS on a line the core holds plus the stores of two 16-byte
 *   entries and the PROD write (an estimate: tens of cycles at 3 GHz).
 */
export const GRACE_CPU_COSTS: Readonly<CpuCosts> = Object.freeze({ atomicNs: 20, lineTransferNs: 50 });

/**
 * What one command costs the Grace SMMU, ns: the slope of NVIDIA's published VCMDQ unmap column
 * (facts sheet §6: 5.3 µs at 4 KiB to 18.0 µs at 256 KiB, one thread), (18.0 - 5.3) µs / 63 more
 * 4 KiB TLBIs = 0.2 µs per command. The plain SMMUv3 model's default stays 20 ns.
 */
export const GRACE_SMMU_COMMAND_NS = 200;

/** The CMDQV model built with the SMMUv3 at `path`. */
export function cmdqvModelOf(machine: Machine, path: string = V3.smmu): Tegra241CmdqvModel {
  const entry = machine.iommus.get(path);
  const m = entry?.instance?.mmio.find((r) => r.base === VIRT.cmdqv)?.device ?? entry?.instance?.mmio[1]?.device;
  if (!m || !('vintfPage0' in m)) throw new Error(`${path} has no CMDQV`);
  return m as Tegra241CmdqvModel;
}

/** Boot `virt` with a CMDQV. */
export async function bootCmdqv(opts: CmdqvLabOptions): Promise<CmdqvLab> {
  const nodeOpts: Record<string, unknown> = { ...(opts.smmu ?? {}), timing: { commandNs: GRACE_SMMU_COMMAND_NS, ...(opts.smmu?.timing ?? {}) } };
  if (opts.cmdqv) nodeOpts.cmdqv = opts.cmdqv;
  const machine = virtMachine({
    seed: opts.seed,
    cmdqv: true,
    bootargs: opts.bootargs,
    iommuOptions: { [V3.smmu]: nodeOpts },
    cpuCosts: { ...GRACE_CPU_COSTS, ...(opts.cpuCosts ?? {}) },
  });
  const kernel = await boot(machine);
  const smmu = findArmSmmuV3(kernel.core, V3.smmu);
  const cmdqv = tegra241CmdqvOf(smmu);
  if (!cmdqv) throw new Error(`${V3.smmu}: the driver did not take the CMDQV (log: ${kernel.core.log.lines('warn').map((l) => l.message).join('; ')})`);
  return { machine, kernel, smmu, model: smmuModel(machine), cmdqvModel: cmdqvModelOf(machine), cmdqv };
}

/** Start `n` kernel threads, thread i on CPU i, and wait for all. */
export function onCpus<T>(n: number, fn: (cpu: number) => Promise<T>): Promise<T[]> {
  return Promise.all(Array.from({ length: n }, (_, cpu) => runOnCpu(cpu, () => fn(cpu))));
}

/** Per-queue command and sync counts the model consumed: the main queue and each VCMDQ. */
export function queueCounts(lab: CmdqvLab): { queue: string; commands: number; syncs: number; errors: number }[] {
  const out = [{ queue: 'main', commands: lab.model.cmdq.stats.total, syncs: lab.model.cmdq.stats.syncs, errors: lab.model.cmdq.stats.errors }];
  lab.cmdqvModel.vcmdqs.forEach((q, i) => out.push({ queue: `vcmdq${i}`, commands: q.cq.stats.total, syncs: q.cq.stats.syncs, errors: q.cq.stats.errors }));
  return out;
}
