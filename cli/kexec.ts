/**
 * `iommu-sim kexec`: one kexec (or kdump) experiment, or with `--matrix` the policy matrix, with a
 * progress bar, a table, a JSON report and a self-contained HTML report.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import cliProgress from 'cli-progress';
import type { Machine } from '../hw/machine.js';
import type { TraceEvent } from '../hw/trace.js';
import { misspeltParamHints, unknownParamsLine } from '../kernel/cmdline.js';
import { runKexecExperiment, type KexecExperimentResult, type KexecTarget } from '../scenarios/lib/kexec-experiment.js';
import {
  cellName,
  defaultMatrixInputs,
  kexecLabMachine,
  matrixCells,
  MATRIX_SMMU_KINDS,
  MATRIX_TARGETS,
  runKexecMatrix,
  type MatrixCell,
  type MatrixInputs,
  type MatrixReport,
} from '../scenarios/lib/kexec-matrix.js';
import { machineFromDtb } from '../scenarios/lib/lab.js';
import { UsageError } from './errors.js';
import { matrixHtml } from './kexec-report-html.js';
import { formatTable } from './table.js';

/** Version of `kexec --json`'s shape. */
export const KEXEC_JSON_FORMAT = 2;

export interface KexecCmdOptions {
  dtb?: string;
  seed: number;
  target: KexecTarget;
  quiesce: 'all' | 'none';
  cmdline?: string;
  targetCmdline?: string;
  strictParams?: boolean;
  storm?: boolean;
  json?: boolean;
  trace?: string;
  matrix?: boolean;
  kinds?: string;
  policies?: string;
  targets?: string;
  out?: string;
  progress?: boolean;
  /** Set by the registration: --quiesce / --target were given on the command line (they narrow the matrix). */
  quiesceGiven?: boolean;
  targetGiven?: boolean;
}

export interface KexecCliDeps {
  /** The machine from --dtb (or the built-in one when `file` is undefined). */
  readDtb(file: string | undefined): Uint8Array;
  /** Run `work` and write what the machine traced to `file`. */
  withTrace<T>(file: string | undefined, processes: { name: string; events: TraceEvent[] }[], work: () => Promise<T>): Promise<T>;
  writeOut(file: string, data: string | Uint8Array): void;
}

/** The kernel's own warning lines about unknown parameters, for stderr. */
function paramWarnings(unknown: readonly string[]): string[] {
  const line = unknownParamsLine(unknown);
  return line ? [`iommu-sim: kernel: ${line}`, ...misspeltParamHints(unknown).map((h) => `iommu-sim: kernel: ${h}`)] : [];
}

/** Write the kernel's unknown-parameter lines to stderr (every command that boots does). */
export function printParamWarnings(unknown: readonly string[]): void {
  for (const l of paramWarnings(unknown)) process.stderr.write(l + '\n');
}

function hex(v: number): string {
  return `0x${v.toString(16)}`;
}

function ns(v: number | null): string {
  return v === null ? 'never (still failing at the end)' : `${(v / 1000).toFixed(1)} µs`;
}

/** The machine a kexec runs on: --dtb, or the lab machine (virt with RAM up to 4 GiB). */
function buildMachine(o: KexecCmdOptions, deps: KexecCliDeps, seed: number): Machine {
  return o.dtb ? machineFromDtb(deps.readDtb(o.dtb), { seed }) : kexecLabMachine(seed);
}

export async function kexecCommand(o: KexecCmdOptions, deps: KexecCliDeps): Promise<void> {
  if (o.matrix) {
    for (const [given, flag] of [[o.trace, '--trace'], [o.targetCmdline, '--target-cmdline'], [o.strictParams, '--strict-params']] as const) {
      if (given !== undefined && given !== false) throw new UsageError(`${flag} is not supported with --matrix (each cell boots its own kernels; the matrix always runs in storm mode)`);
    }
    return kexecMatrixCommand(o, deps);
  }
  for (const [given, flag] of [[o.kinds, '--kinds'], [o.policies, '--policies'], [o.targets, '--targets']] as const) {
    if (given !== undefined) throw new UsageError(`${flag} only applies to --matrix`);
  }
  const machine = buildMachine(o, deps, o.seed);
  const events: TraceEvent[] = [];
  const stop = o.trace ? machine.trace.subscribe((e) => events.push(e)) : null;
  const r = await deps.withTrace(o.trace, [{ name: `kexec ${o.dtb ?? 'virt'}`, events }], async () => {
    try {
      return await runKexecExperiment(machine, {
        target: o.target,
        quiesce: o.quiesce,
        ...(o.cmdline !== undefined ? { cmdline: o.cmdline } : {}),
        ...(o.targetCmdline !== undefined ? { targetCmdline: o.targetCmdline } : {}),
        ...(o.strictParams ? { strictParams: true } : {}),
        ...(o.storm ? { storm: true } : {}),
      });
    } finally {
      stop?.();
    }
  });
  printParamWarnings(r.unknownParams);
  if (!r.observable) process.stderr.write(`iommu-sim: ${r.nothingToObserve}\n`);
  if (o.json) {
    process.stdout.write(JSON.stringify(kexecJson(o, r), null, 2) + '\n');
    return;
  }
  process.stdout.write(kexecText(o, r) + '\n');
}

/** `kexec --json`: the figures, with every input echoed and the policies named. */
export function kexecJson(o: KexecCmdOptions, r: KexecExperimentResult): Record<string, unknown> {
  return {
    format: KEXEC_JSON_FORMAT,
    inputs: {
      machine: o.dtb ?? 'virt (RAM 0x40000000-0xffffffff)',
      seed: o.seed,
      target: o.target,
      quiesce: o.quiesce,
      cmdline: o.cmdline ?? '',
      targetCmdline: o.targetCmdline ?? null,
      strictParams: o.strictParams ?? false,
      storm: o.storm ?? false,
    },
    policies: r.policies,
    observable: r.observable,
    nothingToObserve: r.nothingToObserve,
    strayWrites: r.strayWrites,
    blockedTransactions: r.blockedTransactions,
    faults: r.faults,
    accounting: r.accounting,
    storm: r.storm,
    boot: r.boot,
    kdump: r.kdump,
    unknownParams: r.unknownParams,
  };
}

function kexecText(o: KexecCmdOptions, r: KexecExperimentResult): string {
  const a = r.accounting;
  const lines = [
    `kexec: target ${o.target}, quiesce ${o.quiesce}; ${r.engines.length} engines were writing before the hand-over`,
    `policies in force: ${r.policies.summary}`,
    `incoming kernel: ${r.boot.ok ? `booted (kernel ${r.boot.instance}${r.boot.kdump ? ', kdump' : ''}, ${r.boot.devicesBound} devices bound)` : `did not boot: ${r.boot.error}`}`,
    `stray writes: ${r.strayWrites.length}, blocked transactions: ${r.blockedTransactions}, faults: ${r.faults}`,
    `transactions from the hand-over on: issued ${a.issued} (+${a.carriedIn} outstanding before) = landed in owned memory ${a.landedOwned} + stray ${a.stray} + blocked ${a.blocked} + faulted ${a.faulted} + still outstanding ${a.outstanding}${a.balanced ? '' : '  (DOES NOT BALANCE)'}`,
    `storm seen by the incoming kernel: ${r.storm.failed} failed transactions (${r.storm.failedPerSecond}/s), ${r.storm.interrupts} interrupts, ${r.storm.iommuLogLines} IOMMU log lines, quiet after ${ns(r.storm.quietAfterNs)}`,
  ];
  if (r.storm.driverActions.length) lines.push('what the incoming kernel\'s drivers said:', ...r.storm.driverActions.map((a) => `  ${a}`));
  if (r.kdump) {
    lines.push(
      `kdump: reservation ${hex(r.kdump.reservation.base)}+${hex(r.kdump.reservation.size)}, ${r.kdump.vmcoreSegments} vmcore segment(s); bytes changed by DMA after the panic: vmcore ${r.kdump.vmcoreBytesChanged} (${r.kdump.vmcoreBytesChangedOutsideBuffers} outside the masters' own buffers), crash kernel memory ${r.kdump.crashKernelBytesChanged}`,
    );
  }
  if (r.strayWrites.length) {
    const byKey = new Map<string, { first: number; count: number; w: (typeof r.strayWrites)[number] }>();
    for (const w of r.strayWrites) {
      const key = `${w.master} ${w.pa} ${w.len} ${w.owner}`;
      const e = byKey.get(key);
      if (e) e.count++;
      else byKey.set(key, { first: w.time, count: 1, w });
    }
    lines.push(
      '',
      formatTable(
        ['master', 'pa', 'len', 'owner (new kernel)', 'writes', 'first at (µs)'],
        [...byKey.values()].map(({ w, count, first }) => [w.master, hex(w.pa), String(w.len), w.owner, String(count), (first / 1000).toFixed(1)]),
      ),
    );
  }
  return lines.join('\n');
}

function list<T extends string>(what: string, text: string | undefined, allowed: readonly T[]): T[] | undefined {
  if (text === undefined) return undefined;
  const items = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const i of items) if (!(allowed as readonly string[]).includes(i)) throw new UsageError(`--${what}: "${i}" is not one of ${allowed.join(', ')}`);
  if (items.length === 0) throw new UsageError(`--${what} names nothing`);
  return items as T[];
}

/** The matrix's inputs from the command line. */
export function matrixInputsFrom(o: KexecCmdOptions): MatrixInputs {
  const quiesceGiven = o.quiesceGiven ?? false;
  const targetGiven = o.targetGiven ?? false;
  const kinds = list('kinds', o.kinds, MATRIX_SMMU_KINDS) ?? MATRIX_SMMU_KINDS;
  const targets = list('targets', o.targets, MATRIX_TARGETS) ?? (targetGiven ? [o.target] : MATRIX_TARGETS);
  const policies: MatrixInputs['policies'] = {};
  if (o.policies !== undefined) {
    const names = o.policies.split(',').map((s) => s.trim()).filter((s) => s !== '');
    for (const k of kinds) {
      const mine = names.filter((n) => matrixCells({ ...defaultMatrixInputs(), kinds: [k] }).some((c) => c.policy === n));
      policies[k] = mine;
    }
    for (const n of names) {
      if (!kinds.some((k) => policies[k]!.includes(n))) throw new UsageError(`--policies: "${n}" is not a shutdown policy of ${kinds.join(' or ')}`);
    }
    for (const k of kinds) if (policies[k]!.length === 0) throw new UsageError(`--policies names no ${k} policy`);
  }
  return defaultMatrixInputs({
    seed: o.seed,
    kinds,
    policies,
    targets,
    quiesce: quiesceGiven ? [o.quiesce] : ['all', 'none'],
    cmdline: o.cmdline ?? '',
    ...(o.dtb ? { machine: o.dtb } : {}),
  });
}

async function kexecMatrixCommand(o: KexecCmdOptions, deps: KexecCliDeps): Promise<void> {
  const inputs = matrixInputsFrom(o);
  const total = matrixCells(inputs).length;
  const bar = new cliProgress.SingleBar(
    { format: 'kexec matrix [{bar}] {value}/{total} cells | {cell}', stream: process.stderr, hideCursor: true, noTTYOutput: false },
    cliProgress.Presets.shades_classic,
  );
  const showBar = o.progress !== false && process.stderr.isTTY === true;
  if (showBar) bar.start(total, 0, { cell: '' });
  let report: MatrixReport;
  try {
    report = await runKexecMatrix(inputs, {
      ...(o.dtb ? { machine: (seed: number) => machineFromDtb(deps.readDtb(o.dtb), { seed }) } : {}),
      onCell: (cell, done) => {
        if (showBar) bar.update(done, { cell: cellName(cell) });
      },
    });
  } finally {
    if (showBar) bar.stop();
  }
  const unknown = [...new Set(report.cells.flatMap((c) => c.unknownParams))];
  printParamWarnings(unknown);
  const blind = report.cells.filter((c) => !c.observable);
  if (blind.length > 0) process.stderr.write(`iommu-sim: ${blind.length} cell(s) had nothing to observe: ${blind[0].nothingToObserve}\n`);
  const dir = o.out ?? 'kexec-matrix';
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new UsageError(`cannot create ${dir}: ${(e as Error).message}`);
  }
  const jsonFile = join(dir, 'kexec-matrix.json');
  const htmlFile = join(dir, 'kexec-matrix.html');
  deps.writeOut(jsonFile, JSON.stringify(report, null, 2) + '\n');
  deps.writeOut(htmlFile, matrixHtml(report));
  if (o.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return;
  }
  process.stdout.write(matrixTable(report.cells) + `\n\n${report.cells.length} cells; wrote ${jsonFile} and ${htmlFile}\n`);
}

/** The matrix as a terminal table, one row per cell. */
export function matrixTable(cells: readonly MatrixCell[]): string {
  return formatTable(
    ['smmu', 'policy', 'target', 'quiesce', 'stray writes', 'stray bytes', 'blocked', 'faulted', 'failed/s', 'irqs', 'iommu log', 'quiet after', 'vmcore Δ', 'crashk Δ', 'stalled', 'boot', 'sum'],
    cells.map((c) => [
      c.kind,
      c.policy,
      c.target,
      c.quiesce,
      String(c.strayWrites),
      String(c.strayBytes),
      String(c.blocked),
      String(c.faulted),
      String(c.storm.failedPerSecond),
      String(c.storm.interrupts),
      String(c.storm.iommuLogLines),
      c.storm.quietAfterNs === null ? 'never' : `${(c.storm.quietAfterNs / 1000).toFixed(0)}µs`,
      c.kdump ? String(c.kdump.vmcoreBytesChanged) : '-',
      c.kdump ? String(c.kdump.crashKernelBytesChanged) : '-',
      String(c.accounting.outstanding),
      c.boot.ok ? 'ok' : 'FAILED',
      c.accounting.balanced ? 'ok' : 'UNBALANCED',
    ]),
  );
}
