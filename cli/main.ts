/**
 * iommu-sim: the lab bench's command line.
 */
import { writeFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { writeFdt } from '../bus/of/fdt.js';
import type { TraceEvent } from '../hw/trace.js';
import { bootReport } from '../scenarios/lib/boot-report.js';
import { formatCmdqvReport } from '../scenarios/lib/cmdqv-report.js';
import { formatIwbReport, formatPmcgReport } from '../scenarios/lib/pmcg-report.js';
import { boot, machineFromDtb } from '../scenarios/lib/lab.js';
import { buildVirtDeviceTree } from '../scenarios/machines/virt.js';
import { scenarios } from '../scenarios/index.js';
import { firmwareBlob, namingFile } from '../scenarios/lib/firmware-file.js';
import { acpiBootMachine, checkDtbInput, DEFAULT_ACPI_MEMORY } from './acpi.js';
import { toChromeTraceProcesses, type TraceProcess } from './chrome-trace.js';
import { registerDumpAcpi } from './dump-acpi.js';
import { reportError, UsageError } from './errors.js';
import { helpEpilogue, packageVersion } from './help.js';
import { jsonDocument } from './json-output.js';
import { kexecCommand, printParamWarnings, type KexecCmdOptions } from './kexec.js';
import { mergeCommand } from './merge.js';
import { parseJobs, parseSeedRange, parseShard, runCommand, type RunCmdOptions } from './run.js';
import { keepInto, traceFilter } from './trace-filter.js';
import { formatTable } from './table.js';
import { registerVmCommand } from './vm.js';

function parseSeed(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) > 0xffff_ffff) throw new InvalidArgumentError('a seed is an integer in [0, 2^32)');
  return Number(v);
}

/**
 * The firmware blob to boot: the file's (a DTB, or DT source compiled with dtc; ACPI tables are
 * sent to --acpi), else `virt`'s.
 */
function readDtb(file: string | undefined, cmdqv = false): Uint8Array {
  return file ? firmwareBlob(file, checkDtbInput) : writeFdt(buildVirtDeviceTree({ cmdqv }));
}

/** Run `fn`; malformed firmware it finds is reported naming the file it came from. */
function fromFirmware<T>(file: string | undefined, fn: () => Promise<T> | T): Promise<T> {
  return file ? namingFile(file, fn) : Promise.resolve().then(fn);
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
  traceFilter?: string[];
  cmdqv?: boolean;
}

async function bootCommand(o: BootCmdOptions): Promise<void> {
  if (o.acpi && o.dtb) throw new UsageError('--acpi and --dtb describe the machine twice: give one');
  if (o.memory && !o.acpi) throw new UsageError('--memory gives the RAM of an --acpi machine (a DTB describes its own)');
  const machine = o.acpi
    ? acpiBootMachine({ acpi: o.acpi, memory: o.memory, seed: o.seed })
    : await fromFirmware(o.dtb, () => machineFromDtb(readDtb(o.dtb, o.cmdqv), { seed: o.seed }));
  const events: TraceEvent[] = [];
  const stop = o.trace ? machine.trace.subscribe(keepInto(events, o.traceFilter)) : null;
  const kernel = await withTrace(o.trace, [{ name: `boot ${o.acpi ?? o.dtb ?? 'virt'}`, events }], async () => {
    try {
      return await fromFirmware(o.dtb, () => boot(machine, o.cmdline !== undefined ? { cmdline: o.cmdline } : {}));
    } finally {
      stop?.();
    }
  });
  printParamWarnings(kernel.unknownParams);
  const report = bootReport(machine, kernel);
  if (o.json) {
    process.stdout.write(JSON.stringify(jsonDocument('boot', o, report), null, 2) + '\n');
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
  out.push(...formatPmcgReport(report.pmcgs));
  out.push(...formatIwbReport(report.iwbs));
  const skipped = machine.skippedNodes;
  out.push('', `Skipped nodes (no model): ${skipped.length}`);
  if (skipped.length) out.push(formatTable(['node', 'compatible', 'reason'], skipped.map((s) => [s.path, s.compatible.join(', '), s.reason])));
  process.stdout.write(out.join('\n') + '\n');
}

export async function main(argv: readonly string[]): Promise<number> {
  let status = 0;
  const program = new Command()
    .name('iommu-sim')
    .description('A kernel-style IOMMU stack over an emulated Arm machine')
    .version(packageVersion(), '-V, --version', 'print the version')
    .addHelpText('after', helpEpilogue())
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
    .option('--trace-filter <globs...>', 'keep only trace events whose name matches a glob (e.g. CMD_* F_*)')
    .option('--cmdqv', 'the virt machine with a Grace CMDQV (ignored with --dtb)')
    .action(async (o: BootCmdOptions) => bootCommand(o));

  program
    .command('dump-dtb')
    .description("write the virt machine's DTB")
    .option('--out <file>', 'output file (default: stdout)')
    .option('--cmdqv', 'the variant with a Grace CMDQV')
    .option('--force', 'write the binary blob to a terminal all the same')
    .action((o: { out?: string; cmdqv?: boolean; force?: boolean }) => {
      const blob = writeFdt(buildVirtDeviceTree({ cmdqv: o.cmdqv ?? false }));
      if (o.out) writeOut(o.out, blob);
      else if (process.stdout.isTTY && !o.force) throw new UsageError('dump-dtb writes a binary blob: redirect it (> virt.dtb), use --out FILE, or pipe it to dtc -I dtb -O dts');
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
    .description('run scenarios (all by default): the catalogue, or modules from anywhere; one seed or a sweep')
    .argument('[names...]', 'scenario names')
    .option('--seed <n>', 'PRNG seed', parseSeed, 1)
    .option('--seeds <A..B>', 'every seed from A to B (both included); overrides --seed', parseSeedRange)
    .option('--jobs <n>', 'run (scenario, seed) pairs in this many worker threads', parseJobs, 1)
    .option('--shard <I/N>', 'run only shard I of N of the work (for a CI matrix; combine with merge)', parseShard)
    .option('--module <file...>', 'scenario modules (.js, or .ts transpiled on load) to run instead of the catalogue')
    .option('--json', 'print the run document as JSON (same as --format json)')
    .addOption(new Option('--format <fmt>', 'output format').choices(['text', 'json', 'ktap']))
    .option('--trace <file>', 'write the trace as Chrome Trace Event JSON (one process per machine)')
    .option('--trace-filter <globs...>', 'keep only trace events whose name matches a glob (e.g. CMD_* F_*)')
    .action(async (names: string[], o: RunCmdOptions) => {
      const traces: TraceProcess[] = [];
      status = await withTrace(o.trace, traces, () => runCommand(names, o, traces, traceFilter(o.traceFilter)));
    });

  program
    .command('merge')
    .description('combine the JSON documents of run --shard I/N --json into the whole run, and report it')
    .argument('<files...>', 'run documents (run --json output)')
    .option('--json', 'print the merged document as JSON')
    .addOption(new Option('--format <fmt>', 'output format').choices(['text', 'json', 'ktap']))
    .action((files: string[], o: { json?: boolean; format?: 'text' | 'json' | 'ktap' }) => {
      status = mergeCommand(files, o);
    });

  registerVmCommand(program);

  program
    .command('list')
    .description('list the scenarios')
    .action(() => {
      process.stdout.write(formatTable(['scenario', 'shows'], scenarios.map((s) => [s.name, s.shows]), { wrap: [1] }) + '\n');
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

