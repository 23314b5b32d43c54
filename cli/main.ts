/**
 * iommu-sim: the lab bench's command line.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { writeFdt } from '../bus/of/fdt.js';
import type { TraceEvent } from '../hw/trace.js';
import { bootReport } from '../scenarios/lib/boot-report.js';
import { formatCmdqvReport } from '../scenarios/lib/cmdqv-report.js';
import { boot, machineFromDtb, recordTraces } from '../scenarios/lib/lab.js';
import { buildVirtDeviceTree } from '../scenarios/machines/virt.js';
import { scenarios, findScenario } from '../scenarios/index.js';
import type { ScenarioResult } from '../scenarios/scenario.js';
import { acpiBootMachine, checkDtbInput, DEFAULT_ACPI_MEMORY } from './acpi.js';
import { toChromeTraceProcesses, type TraceProcess } from './chrome-trace.js';
import { registerDumpAcpi } from './dump-acpi.js';
import { EXIT_FAILED, reportError, UsageError } from './errors.js';
import { kexecCommand, printParamWarnings, type KexecCmdOptions } from './kexec.js';
import { formatTable } from './table.js';
import { registerVmCommand } from './vm.js';

function parseSeed(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) > 0xffff_ffff) throw new InvalidArgumentError('a seed is an integer in [0, 2^32)');
  return Number(v);
}

function readDtb(file: string | undefined, cmdqv = false): Uint8Array {
  if (!file) return writeFdt(buildVirtDeviceTree({ cmdqv }));
  let blob: Uint8Array;
  try {
    blob = new Uint8Array(readFileSync(file));
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as Error).message}`);
  }
  checkDtbInput(file, blob);
  return blob;
}

/** Write recordings as Chrome Trace Event JSON, one process each; an unwritable file is a usage error. */
function writeTrace(file: string | undefined, processes: readonly TraceProcess[]): void {
  if (file) writeOut(file, JSON.stringify(toChromeTraceProcesses(processes)));
}

/**
 * Run `work`, then write the trace. A failed run still writes what it recorded (that is when a
 * trace is most wanted), but the run's own error is the one reported.
 */
async function withTrace<T>(file: string | undefined, processes: readonly TraceProcess[], work: () => Promise<T>): Promise<T> {
  let value: T;
  try {
    value = await work();
  } catch (e) {
    try {
      writeTrace(file, processes);
    } catch {
      // the run's error is what the exit status and stderr report
    }
    throw e;
  }
  writeTrace(file, processes);
  return value;
}

function writeOut(file: string, data: string | Uint8Array): void {
  try {
    writeFileSync(file, data);
  } catch (e) {
    throw new UsageError(`cannot write ${file}: ${(e as Error).message}`);
  }
}

interface BootCmdOptions {
  dtb?: string;
  acpi?: string;
  memory?: string;
  seed: number;
  cmdline?: string;
  json?: boolean;
  trace?: string;
  cmdqv?: boolean;
}

async function bootCommand(o: BootCmdOptions): Promise<void> {
  if (o.acpi && o.dtb) throw new UsageError('--acpi and --dtb describe the machine twice: give one');
  if (o.memory && !o.acpi) throw new UsageError('--memory gives the RAM of an --acpi machine (a DTB describes its own)');
  const machine = o.acpi ? acpiBootMachine({ acpi: o.acpi, memory: o.memory, seed: o.seed }) : machineFromDtb(readDtb(o.dtb, o.cmdqv), { seed: o.seed });
  const events: TraceEvent[] = [];
  const stop = o.trace ? machine.trace.subscribe((e) => events.push(e)) : null;
  const kernel = await withTrace(o.trace, [{ name: `boot ${o.acpi ?? o.dtb ?? 'virt'}`, events }], async () => {
    try {
      return await boot(machine, o.cmdline !== undefined ? { cmdline: o.cmdline } : {});
    } finally {
      stop?.();
    }
  });
  printParamWarnings(kernel.unknownParams);
  const report = bootReport(machine, kernel);
  if (o.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return;
  }
  const out: string[] = [];
  out.push('IOMMUs');
  out.push(
    formatTable(
      ['node', 'compatible', 'status', 'driver', 'error'],
      report.iommus.map((i) => [i.node, i.compatible.join(', '), i.status, i.driver ?? '-', i.error ?? '']),
    ),
  );
  out.push('', 'Masters');
  out.push(
    formatTable(
      ['node', 'iommus', 'stall', 'pasid bits', 'group', 'domain'],
      report.masters.map((m) => [
        m.node,
        m.iommus.map((s) => `${s.iommu} <${s.cells.map((c) => `0x${c.toString(16)}`).join(' ')}>`).join('; '),
        m.canStall ? 'yes' : 'no',
        String(m.pasidBits),
        m.group === null ? '-' : String(m.group),
        m.domain ?? '-',
      ]),
    ),
  );
  out.push('', 'PCI hosts');
  out.push(
    formatTable(
      ['node', 'rid base', 'iommu', 'sid base', 'length'],
      report.pciHosts.flatMap((h) =>
        h.iommuMap.map((e) => [h.node, `0x${e.ridBase.toString(16)}`, e.iommu, `0x${e.sidBase.toString(16)}`, String(e.length)]),
      ),
    ),
  );
  out.push(...formatCmdqvReport(report.cmdqvs));
  const skipped = machine.skippedNodes;
  out.push('', `Skipped nodes (no model): ${skipped.length}`);
  if (skipped.length) out.push(formatTable(['node', 'compatible', 'reason'], skipped.map((s) => [s.path, s.compatible.join(', '), s.reason])));
  process.stdout.write(out.join('\n') + '\n');
}

interface RunCmdOptions {
  seed: number;
  json?: boolean;
  trace?: string;
}

async function runCommand(names: string[], o: RunCmdOptions): Promise<number> {
  const chosen = names.length === 0 ? [...scenarios] : names.map((n) => findScenario(n) ?? unknownScenario(n));
  // Each scenario builds its own machine: its trace is a process of its own.
  const traces: TraceProcess[] = [];
  const results: { name: string; shows: string; result: ScenarioResult }[] = [];
  await withTrace(o.trace, traces, async () => {
    for (const s of chosen) {
      const events: TraceEvent[] = [];
      traces.push({ name: s.name, events });
      const result = o.trace ? await recordTraces((e) => events.push(e), () => s.run({ seed: o.seed })) : await s.run({ seed: o.seed });
      results.push({ name: s.name, shows: s.shows, result });
      if (!o.json) printScenario(s.name, s.shows, result);
    }
  });
  const failed = results.filter((r) => r.result.verdict === 'fail').length;
  if (o.json) {
    process.stdout.write(JSON.stringify({ seed: o.seed, scenarios: results.map((r) => ({ name: r.name, shows: r.shows, ...r.result })) }, null, 2) + '\n');
  } else {
    process.stdout.write(
      '\n' +
        formatTable(
          ['scenario', 'shows', 'verdict', 'figures'],
          results.map((r) => [r.name, r.shows, r.result.verdict.toUpperCase(), figuresText(r.result.figures)]),
        ) +
        `\n\n${results.length - failed} passed, ${failed} failed (seed ${o.seed})\n`,
    );
  }
  return failed > 0 ? EXIT_FAILED : 0;
}

function unknownScenario(name: string): never {
  throw new UsageError(`no scenario named "${name}" (iommu-sim list shows them)`);
}

function figuresText(f: ScenarioResult['figures']): string {
  return Object.entries(f)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(', ');
}

function printScenario(name: string, shows: string, r: ScenarioResult): void {
  const lines = [`== ${name}: ${shows}`];
  for (const c of r.checks) lines.push(`  [${c.ok ? 'ok' : 'FAIL'}] ${c.what}${c.detail ? `: ${c.detail}` : ''}`);
  process.stdout.write(lines.join('\n') + '\n');
}

export async function main(argv: readonly string[]): Promise<number> {
  let status = 0;
  const program = new Command()
    .name('iommu-sim')
    .description('A kernel-style IOMMU stack over an emulated Arm machine')
    .exitOverride()
    .showHelpAfterError();

  program
    .command('boot')
    .description('build the machine from a DTB (default: the built-in virt), boot, and report IOMMUs and masters')
    .option('--dtb <file>', 'flattened device tree blob to boot')
    .option('--acpi <dir>', 'boot from ACPI tables: a folder of blobs named by signature (APIC, IORT, MCFG, DSDT, SSDT1, …)')
    .option('--memory <ranges>', `RAM of an --acpi machine, BASE:SIZE[,BASE:SIZE…] (default ${DEFAULT_ACPI_MEMORY})`)
    .option('--seed <n>', 'PRNG seed', parseSeed, 1)
    .option('--cmdline <str>', 'kernel command line (default: /chosen/bootargs)')
    .option('--json', 'print the report as JSON')
    .option('--trace <file>', 'write the trace as Chrome Trace Event JSON')
    .option('--cmdqv', 'the virt machine with a Grace CMDQV (ignored with --dtb)')
    .action(async (o: BootCmdOptions) => bootCommand(o));

  program
    .command('dump-dtb')
    .description("write the virt machine's DTB")
    .option('--out <file>', 'output file (default: stdout)')
    .option('--cmdqv', 'the variant with a Grace CMDQV')
    .action((o: { out?: string; cmdqv?: boolean }) => {
      const blob = writeFdt(buildVirtDeviceTree({ cmdqv: o.cmdqv ?? false }));
      if (o.out) writeOut(o.out, blob);
      else process.stdout.write(blob);
    });

  registerDumpAcpi(program);
  program
    .command('kexec')
    .description('boot, start the DMA test engines, kexec (or panic into a kdump kernel), run a while, and report stray writes, blocked DMA, fault storms; --matrix runs every policy combination')
    .option('--dtb <file>', 'flattened device tree blob to boot (default: the built-in virt with RAM up to 4 GiB)')
    .option('--seed <n>', 'PRNG seed', parseSeed, 1)
    .addOption(new Option('--target <kind>', 'the kernel handed over to').choices(['aware', 'unaware', 'kdump']).default('aware'))
    .addOption(new Option('--quiesce <which>', "stop the engines in their driver's .shutdown").choices(['all', 'none']).default('all'))
    .option('--cmdline <str>', 'command line of both kernels (e.g. arm-smmu-v3.shutdown_policy=gbpa-abort)')
    .option('--target-cmdline <str>', 'command line of the incoming kernel only')
    .option('--strict-params', 'refuse to boot with unknown kernel parameters')
    .option('--storm', 'engines keep issuing after failed transactions')
    .option('--matrix', 'run the policy matrix: SMMU kind x shutdown policy x target x quiesce')
    .option('--kinds <list>', 'matrix: SMMU kinds (v2,v3)')
    .option('--policies <list>', 'matrix: shutdown policies (default: all of each kind)')
    .option('--targets <list>', 'matrix: targets (aware,unaware,kdump)')
    .option('--out <dir>', 'matrix: where to write kexec-matrix.json and kexec-matrix.html', 'kexec-matrix')
    .option('--no-progress', 'matrix: no progress bar')
    .option('--json', 'print the result as JSON')
    .option('--trace <file>', 'write the trace as Chrome Trace Event JSON')
    .action(async (o: KexecCmdOptions, cmd: Command) =>
      kexecCommand(
        { ...o, quiesceGiven: cmd.getOptionValueSource('quiesce') === 'cli', targetGiven: cmd.getOptionValueSource('target') === 'cli' },
        { readDtb, withTrace, writeOut },
      ),
    );

  program
    .command('run')
    .description('run scenarios (all by default) on the virt machine')
    .argument('[names...]', 'scenario names')
    .option('--seed <n>', 'PRNG seed', parseSeed, 1)
    .option('--json', 'print results as JSON')
    .option('--trace <file>', 'write the trace as Chrome Trace Event JSON')
    .action(async (names: string[], o: RunCmdOptions) => {
      status = await runCommand(names, o);
    });

  registerVmCommand(program);

  program
    .command('list')
    .description('list the scenarios')
    .action(() => {
      process.stdout.write(formatTable(['scenario', 'shows'], scenarios.map((s) => [s.name, s.shows])) + '\n');
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('commander.')) {
      const exitCode = (e as { exitCode?: number }).exitCode ?? 64;
      return code === 'commander.helpDisplayed' || code === 'commander.version' ? 0 : exitCode === 0 ? 0 : 64;
    }
    const { status: s, message } = reportError(e);
    process.stderr.write(message + '\n');
    return s;
  }
  return status;
}

