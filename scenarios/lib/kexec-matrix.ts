/**
 * The policy matrix: the kexec-bypass discussion's question ("Which is better?") answered with
 * numbers for every case it names. Each cell is one kexec experiment on a fresh machine:
 *
 *   SMMU kind (v2: the MMU-500's engines, v3: the SMMUv3's engines)
 *   × shutdown policy of that kind's driver
 *   × target (IOMMU-aware kernel, IOMMU-unaware kernel, kdump crash kernel)
 *   × quiesce (the engines' driver has `.shutdown` or not).
 *
 * The engines run in storm mode (they keep issuing after failed transactions, as a device that
 * does not look at its completions would), so abort policies show their storms and bypass policies
 * their corruption. A panic runs no `.shutdown`, so for the kdump target a policy cannot act on the
 * way out; its stance is applied where a crash kernel can apply it, on the crash kernel's own command
 * line: a bypass policy boots it with `iommu.passthrough=1` and `disable_bypass=0`, an abort policy
 * with the defaults (DMA domains, unattached streams abort).
 *
 * The default machine is `virt` with RAM up to 4 GiB (`KEXEC_LAB_RAM_SIZE`): the IOVAs the DMA API
 * hands out (top-down below 4 GiB) are then physical addresses of RAM, so bypass has somewhere to
 * write and every policy shows its effect.
 */
import type { Machine } from '../../hw/machine.js';
import { SMMU_V2_SHUTDOWN_POLICIES, SMMU_V3_SHUTDOWN_POLICIES } from '../../kernel/cmdline.js';
import { runKexecExperiment, DEFAULT_CRASHKERNEL, type KexecExperimentResult, type KexecTarget, type SmmuKind } from './kexec-experiment.js';
import { virtMachine } from './lab.js';

/** Version of the JSON report's shape; bumped when a field changes meaning or goes away. */
export const MATRIX_REPORT_FORMAT = 1;

/** RAM of the matrix's default machine: from 1 GiB up to 4 GiB. */
export const KEXEC_LAB_RAM_SIZE = 0xc000_0000;

export const MATRIX_SMMU_KINDS: readonly SmmuKind[] = ['v2', 'v3'];
export const MATRIX_TARGETS: readonly KexecTarget[] = ['aware', 'unaware', 'kdump'];
export const MATRIX_QUIESCE = ['all', 'none'] as const;

/** Does a policy leave streams bypassing (the thread's "bypass") or blocked ("abort")? */
export type PolicyStance = 'bypass' | 'abort';

export function policiesOf(kind: SmmuKind): readonly string[] {
  return kind === 'v3' ? SMMU_V3_SHUTDOWN_POLICIES : SMMU_V2_SHUTDOWN_POLICIES;
}

/** v3 `disable` leaves GBPA as firmware set it (bypass), v2 `bypass` sets CLIENTPD; the rest block. */
export function stanceOf(kind: SmmuKind, policy: string): PolicyStance {
  return (kind === 'v3' && policy === 'disable') || (kind === 'v2' && policy === 'bypass') ? 'bypass' : 'abort';
}

/** The kernel parameter that selects a kind's shutdown policy. */
export function policyParam(kind: SmmuKind): string {
  return kind === 'v3' ? 'arm-smmu-v3.shutdown_policy' : 'arm-smmu.shutdown_policy';
}

/** What a crash kernel's command line adds for a stance. */
export const KDUMP_BYPASS_CMDLINE = 'iommu.passthrough=1 arm-smmu.disable_bypass=0 arm-smmu-v3.disable_bypass=0';

export interface MatrixInputs {
  seed: number;
  kinds: readonly SmmuKind[];
  /** Policies per kind (default: all of that kind's). */
  policies: Partial<Record<SmmuKind, readonly string[]>>;
  targets: readonly KexecTarget[];
  quiesce: readonly ('all' | 'none')[];
  /** Extra command line given to every kernel (before the cell's own parameters). */
  cmdline: string;
  periodNs: number;
  runBeforeNs: number;
  runAfterNs: number;
  crashkernel: string;
  /** What machine: "virt (RAM to 4 GiB)" or the DTB file given. */
  machine: string;
}

export interface MatrixCell {
  kind: SmmuKind;
  policy: string;
  stance: PolicyStance;
  target: KexecTarget;
  quiesce: 'all' | 'none';
  /** The command lines the two kernels booted with. */
  cmdline: { outgoing: string; incoming: string };
  policies: KexecExperimentResult['policies'];
  observable: boolean;
  nothingToObserve: string | null;
  engines: string[];
  strayWrites: number;
  strayBytes: number;
  strayByOwner: Record<string, number>;
  blocked: number;
  faulted: number;
  accounting: KexecExperimentResult['accounting'];
  storm: KexecExperimentResult['storm'];
  boot: KexecExperimentResult['boot'];
  kdump: KexecExperimentResult['kdump'];
  unknownParams: string[];
}

export interface MatrixReport {
  format: number;
  tool: string;
  inputs: MatrixInputs;
  cells: MatrixCell[];
}

export function defaultMatrixInputs(over: Partial<MatrixInputs> = {}): MatrixInputs {
  return {
    seed: 1,
    kinds: MATRIX_SMMU_KINDS,
    policies: {},
    targets: MATRIX_TARGETS,
    quiesce: MATRIX_QUIESCE,
    cmdline: '',
    // Every 2 µs: short enough to sample an IOMMU-aware kernel's reset window, where bypass ends.
    periodNs: 2_000,
    runBeforeNs: 100_000,
    runAfterNs: 200_000,
    crashkernel: DEFAULT_CRASHKERNEL,
    machine: 'virt (RAM 0x40000000-0xffffffff)',
    ...over,
  };
}

/** Every cell the inputs name, in report order. */
export function matrixCells(inputs: MatrixInputs): { kind: SmmuKind; policy: string; target: KexecTarget; quiesce: 'all' | 'none' }[] {
  const out: { kind: SmmuKind; policy: string; target: KexecTarget; quiesce: 'all' | 'none' }[] = [];
  for (const kind of inputs.kinds) {
    const all = policiesOf(kind);
    const chosen = inputs.policies[kind] ?? all;
    for (const p of chosen) {
      if (!all.includes(p)) throw new Error(`no ${kind} shutdown policy "${p}" (one of ${all.join(', ')})`);
    }
    for (const policy of chosen) {
      for (const target of inputs.targets) for (const quiesce of inputs.quiesce) out.push({ kind, policy, target, quiesce });
    }
  }
  return out;
}

/** The matrix's default machine. */
export function kexecLabMachine(seed: number): Machine {
  return virtMachine({ seed, ramSize: KEXEC_LAB_RAM_SIZE });
}

export interface MatrixRunOptions {
  /** Builds each cell's machine (default: `kexecLabMachine`). */
  machine?: (seed: number) => Machine;
  /** Called after each cell. */
  onCell?: (cell: MatrixCell, done: number, total: number) => void;
}

export async function runKexecMatrix(inputs: MatrixInputs, opts: MatrixRunOptions = {}): Promise<MatrixReport> {
  const build = opts.machine ?? kexecLabMachine;
  const plan = matrixCells(inputs);
  const cells: MatrixCell[] = [];
  for (const c of plan) {
    const stance = stanceOf(c.kind, c.policy);
    const outgoing = `${inputs.cmdline} ${policyParam(c.kind)}=${c.policy}`.trim();
    const incoming = c.target === 'kdump' ? `${inputs.cmdline} ${stance === 'bypass' ? KDUMP_BYPASS_CMDLINE : ''}`.trim() : outgoing;
    const r = await runKexecExperiment(build(inputs.seed), {
      target: c.target,
      quiesce: c.quiesce,
      smmu: c.kind,
      storm: true,
      cmdline: outgoing,
      targetCmdline: incoming,
      crashkernel: inputs.crashkernel,
      periodNs: inputs.periodNs,
      runBeforeNs: inputs.runBeforeNs,
      runAfterNs: inputs.runAfterNs,
    });
    const cell: MatrixCell = {
      ...c,
      stance,
      cmdline: { outgoing: c.target === 'kdump' ? `${outgoing} crashkernel=${inputs.crashkernel}` : outgoing, incoming },
      policies: r.policies,
      observable: r.observable,
      nothingToObserve: r.nothingToObserve,
      engines: r.engines.map((e) => e.master),
      strayWrites: r.accounting.stray,
      strayBytes: r.accounting.strayBytes,
      strayByOwner: r.accounting.strayByOwner,
      blocked: r.accounting.blocked,
      faulted: r.accounting.faulted,
      accounting: r.accounting,
      storm: r.storm,
      boot: r.boot,
      kdump: r.kdump,
      unknownParams: r.unknownParams,
    };
    cells.push(cell);
    opts.onCell?.(cell, cells.length, plan.length);
  }
  // Echo the policies that ran, not just the ones asked for.
  const policies: MatrixInputs['policies'] = {};
  for (const k of inputs.kinds) policies[k] = [...(inputs.policies[k] ?? policiesOf(k))];
  return { format: MATRIX_REPORT_FORMAT, tool: 'iommu-sim kexec --matrix', inputs: { ...inputs, policies }, cells };
}

/** A cell's short name: "v3 gbpa-abort kdump quiesce=none". */
export function cellName(c: Pick<MatrixCell, 'kind' | 'policy' | 'target' | 'quiesce'>): string {
  return `${c.kind} ${c.policy} ${c.target} quiesce=${c.quiesce}`;
}
