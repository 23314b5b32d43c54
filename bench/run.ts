/**
 * Runs the benchmarks: `npm run bench` prints a table; `-- --json` prints one line per metric,
 * {"name", "unit", "value" (the median), "min", "max", "runs", and "native"/"ratioToNative" where the
 * native reference does the same work}; `-- --filter SUBSTR` runs only the metrics whose name contains
 * SUBSTR; `-- --repeat N` runs each metric N times (default 3); `-- --no-native` skips the C reference;
 * `-- --scale` measures the cost curves instead (bench/scale.ts; `--large` adds the top sizes,
 * `--filter` picks curves, `--repeat` runs each point N times and keeps the median, `--out DIR` where scale.json and scale.html go, default out/bench).
 * Each run of a metric is a process of its own (the same node and flags, `--metric NAME`), so its
 * figure does not depend on which metrics ran before it in the process (a heap left by earlier labs
 * and the JIT's state from other paths moved e.g. the strict unmap by 10-15 %), and the repeats are
 * independent: what one process's JIT and memory layout make of a path moves a figure by several
 * percent, and runs in one process share that. `-- --in-process` runs everything in this process.
 * Every process runs with the CLI's V8 settings (cli/v8-tuning.ts); `-- --no-v8-tuning` measures
 * without them.
 * The modules are a fixed list: a new bench module is added here.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Bench, BenchResult } from './harness.js';
import { formatScale, machineLine, runScale } from './scale.js';
import { NATIVE_COUNTERPART, runNativeReference, type NativeFigures } from './native.js';
import { benches as dma } from './dma.bench.js';
import { benches as iopf } from './iopf.bench.js';
import { benches as memory } from './memory.bench.js';
import { benches as pgtable } from './pgtable.bench.js';
import { benches as smmuV2Model } from './smmu-v2-model.bench.js';
import { benches as smmuV2 } from './smmu-v2.bench.js';
import { benches as smmuV3Model } from './smmu-v3-model.bench.js';
import { benches as smmuV3 } from './smmu-v3.bench.js';
import { benches as vm } from './vm.bench.js';
import { benches as cmdqv } from './cmdqv.bench.js';
import { benches as cmdqvGuest } from './cmdqv-guest.bench.js';
import { benches as sweep } from './sweep.bench.js';
import { tuneV8, V8_FLAGS } from '../cli/v8-tuning.js';

const ALL: readonly Bench[] = [...memory, ...pgtable, ...dma, ...smmuV2Model, ...smmuV3Model, ...smmuV2, ...smmuV3, ...iopf, ...cmdqv, ...cmdqvGuest, ...vm, ...sweep];

interface Args {
  json: boolean;
  scale: boolean;
  large: boolean;
  out: string;
  filter: string | null;
  repeat: number;
  native: boolean;
  inProcess: boolean;
  /** Run with the CLI's V8 settings (cli/v8-tuning.ts); --no-v8-tuning: node's defaults. */
  v8Tuning: boolean;
  /** Child mode: run exactly this metric and print its result as one JSON line. */
  metric: string | null;
}

const USAGE = 'usage: run [--json] [--filter SUBSTR] [--repeat N] [--no-native] [--in-process] [--no-v8-tuning] | --scale [--large] [--filter CURVE] [--repeat N] [--out DIR]';

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { json: false, scale: false, large: false, out: 'out/bench', filter: null, repeat: 3, native: true, inProcess: false, v8Tuning: true, metric: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (name: string): string => {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (v === undefined) throw new Error(`${name} needs a value (${USAGE})`);
      return v;
    };
    if (a === '--json') args.json = true;
    else if (a === '--no-native') args.native = false;
    else if (a === '--in-process') args.inProcess = true;
    else if (a === '--no-v8-tuning') args.v8Tuning = false;
    else if (a === '--metric' || a.startsWith('--metric=')) args.metric = value('--metric');
    else if (a === '--scale') args.scale = true;
    else if (a === '--large') args.large = true;
    else if (a === '--out' || a.startsWith('--out=')) args.out = value('--out');
    else if (a === '--filter' || a.startsWith('--filter=')) args.filter = value('--filter');
    else if (a === '--repeat' || a.startsWith('--repeat=')) {
      const n = Number(value('--repeat'));
      if (!Number.isInteger(n) || n < 1) throw new Error(`--repeat takes a whole number ≥ 1 (${USAGE})`);
      args.repeat = n;
    } else throw new Error(`unknown argument ${a} (${USAGE})`);
  }
  return args;
}

function format(v: number): string {
  if (v >= 1e9) return `${(v / 1e9).toFixed(2)} G`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)} M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(2)} k`;
  return v.toFixed(2);
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Repeated runs: the median is the figure, min and max show the spread (a loaded machine widens it). */
async function measureRuns(b: Bench, repeat: number): Promise<number[]> {
  const runs: number[] = [];
  for (let i = 0; i < repeat; i++) runs.push(await b.run());
  return runs;
}

/** The runs of one metric, each measured by a fresh process of the same node with the same flags. */
function runInChildren(b: Bench, repeat: number, v8Tuning: boolean): number[] {
  const runs: number[] = [];
  for (let i = 0; i < repeat; i++) runs.push(...runInChild(b, 1, v8Tuning));
  return runs;
}

/** `repeat` runs of one metric by one fresh process of the same node with the same flags. */
function runInChild(b: Bench, repeat: number, v8Tuning: boolean): number[] {
  const script = fileURLToPath(import.meta.url);
  const args = [...process.execArgv, script, '--metric', b.name, '--repeat', String(repeat), ...(v8Tuning ? [] : ['--no-v8-tuning'])];
  const r = spawnSync(process.execPath, args, {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 16 << 20,
  });
  if (r.error) throw new Error(`${b.name}: could not start its process: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${b.name}: its process exited with ${String(r.status ?? r.signal)}`);
  const last = r.stdout.trim().split('\n').pop() ?? '';
  const runs = JSON.parse(last) as unknown;
  if (!Array.isArray(runs) || runs.length !== repeat || !runs.every((x) => typeof x === 'number')) {
    throw new Error(`${b.name}: its process answered ${JSON.stringify(last)} instead of ${repeat} figures`);
  }
  return runs;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.v8Tuning) tuneV8();
  if (args.scale) {
    const log = (line: string): void => void process.stderr.write(`${line}\n`);
    if (typeof (globalThis as { gc?: unknown }).gc !== 'function') {
      log('bench: heap per unit is a best effort without a forced GC (run node with --expose-gc for steady figures)');
    }
    const curves = await runScale({ large: args.large, only: args.filter, out: args.out, runs: args.repeat, log });
    if (args.json) for (const c of curves) process.stdout.write(`${JSON.stringify(c)}\n`);
    else process.stdout.write(`${formatScale(curves)}\n(${machineLine()})\nwritten: ${args.out}/scale.json, ${args.out}/scale.html\n`);
    return;
  }
  if (args.metric !== null) {
    const b = ALL.find((x) => x.name === args.metric);
    if (!b) throw new Error(`no benchmark is named "${args.metric}"`);
    process.stdout.write(`${JSON.stringify(await measureRuns(b, args.repeat))}\n`);
    return;
  }
  const selected = ALL.filter((b) => args.filter === null || b.name.includes(args.filter));
  if (selected.length === 0) throw new Error(`no benchmark matches "${args.filter}"`);
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  log(args.v8Tuning ? `bench: V8 settings of the CLI: ${V8_FLAGS.join(' ')} (cli/v8-tuning.ts; --no-v8-tuning runs without)` : 'bench: node\'s default V8 settings (--no-v8-tuning)');
  const needsNative = args.native && selected.some((b) => b.name in NATIVE_COUNTERPART);
  const native: NativeFigures | null = needsNative ? runNativeReference(log) : null;
  if (native?.skipped) log(`bench: ${native.skipped}`);
  if (native && !native.skipped) {
    for (const [name, value] of native.values) {
      const r = { name: `native.${name}`, unit: name === 'walk.4level' ? 'walks/s' : name === 'translate_hit' ? 'transactions/s' : 'pairs/s', value };
      if (args.json) process.stdout.write(`${JSON.stringify({ ...r, min: value, max: value, runs: 1, compiler: native.compiler })}\n`);
    }
  }
  const results: BenchResult[] = [];
  for (const b of selected) {
    const runs = args.inProcess ? await measureRuns(b, args.repeat) : runInChildren(b, args.repeat, args.v8Tuning);
    const counterpart = NATIVE_COUNTERPART[b.name];
    const c = counterpart !== undefined ? native?.values.get(counterpart) : undefined;
    const r: BenchResult = {
      name: b.name,
      unit: b.unit,
      value: median(runs),
      min: Math.min(...runs),
      max: Math.max(...runs),
      runs: runs.length,
      ...(c !== undefined ? { native: c, ratioToNative: median(runs) / c } : {}),
    };
    results.push(r);
    if (args.json) process.stdout.write(`${JSON.stringify(r)}\n`);
  }
  if (!args.json) {
    const w = Math.max(...results.map((r) => r.name.length), 'metric'.length);
    process.stdout.write(`${'metric'.padEnd(w)}  ${'median'.padStart(10)}  ${'min'.padStart(10)}  ${'max'.padStart(10)}  ${'of C'.padStart(7)}  unit\n`);
    for (const r of results) {
      const ratio = r.ratioToNative !== undefined ? r.ratioToNative.toFixed(3) : '';
      process.stdout.write(
        `${r.name.padEnd(w)}  ${format(r.value).padStart(10)}  ${format(r.min).padStart(10)}  ${format(r.max).padStart(10)}  ${ratio.padStart(7)}  ${r.unit}\n`,
      );
    }
    if (native && !native.skipped) {
      process.stdout.write(`\nnative reference (${native.compiler} -O2, bench/native/reference.c):\n`);
      for (const [name, value] of native.values) process.stdout.write(`  ${name.padEnd(w)}  ${format(value).padStart(10)}\n`);
    }
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
