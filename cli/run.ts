/**
 * `iommu-sim run`: scenarios (the catalogue's, or modules from anywhere) over one seed or a range
 * of seeds, in this thread or across worker threads, the whole run or one shard of it. A scenario
 * that throws is a failed result; the run always goes on to its summary.
 */
import { InvalidArgumentError } from 'commander';
import type { TraceEvent } from '../hw/trace.js';
import { recordTraces } from '../scenarios/lib/lab.js';
import type { TraceProcess } from './chrome-trace.js';
import { EXIT_FAILED, UsageError } from './errors.js';
import { formatRun, type OutputFormat, type RunDocument, type RunInputs, RUN_FORMAT, RUN_FORMAT_VERSION, scenarioBlock, summarize } from './run-output.js';
import { runWorkItem, type ItemResult, type WorkItem } from './run-work.js';
import { chooseScenarios, type LoadedScenario } from './scenario-modules.js';
import { Progress } from './progress.js';

export interface RunCmdOptions {
  seed: number;
  seeds?: { from: number; to: number };
  jobs: number;
  shard?: { index: number; count: number };
  module?: string[];
  json?: boolean;
  format?: OutputFormat;
  trace?: string;
  traceFilter?: string[];
}

export function parseSeedRange(v: string): { from: number; to: number } {
  const m = /^(\d+)\.\.(\d+)$/.exec(v);
  if (!m) throw new InvalidArgumentError('a seed range is A..B (both included), e.g. 1..100');
  const from = Number(m[1]);
  const to = Number(m[2]);
  if (to < from || to > 0xffff_ffff) throw new InvalidArgumentError('a seed range A..B needs A <= B < 2^32');
  return { from, to };
}

export function parseShard(v: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(v);
  const index = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (!m || count < 1 || index < 1 || index > count) throw new InvalidArgumentError('a shard is I/N with 1 <= I <= N, e.g. 2/4');
  return { index, count };
}

export function parseJobs(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 256) throw new InvalidArgumentError('jobs is an integer in [1, 256]');
  return Number(v);
}

/** Every (scenario, seed) of the run in order; a shard keeps every count-th item from its own. */
export function workList(chosen: readonly LoadedScenario[], seeds: { from: number; to: number }, shard?: { index: number; count: number }): WorkItem[] {
  const items: WorkItem[] = [];
  for (const { scenario, module } of chosen) {
    for (let seed = seeds.from; seed <= seeds.to; seed++) items.push({ index: items.length, scenario: scenario.name, module, seed });
  }
  return shard ? items.filter((it) => it.index % shard.count === shard.index - 1) : items;
}

async function runSerial(
  chosen: readonly LoadedScenario[],
  items: readonly WorkItem[],
  onResult: (r: ItemResult) => void,
  traces: TraceProcess[] | null,
  keep: ((e: TraceEvent) => boolean) | null,
): Promise<void> {
  for (const item of items) {
    const s = chosen.find((c) => c.scenario.name === item.scenario && c.module === item.module)!.scenario;
    let result: ItemResult;
    if (traces) {
      const machines: TraceProcess[] = [];
      const label = items.length > 1 && items.some((i) => i.seed !== item.seed) ? `${item.scenario} (seed ${item.seed})` : item.scenario;
      result = await recordTraces(
        (e, m) => {
          if (keep && !keep(e)) return;
          let p = machines[m];
          if (!p) {
            p = { name: `${label}: machine ${m + 1}`, events: [] };
            machines[m] = p;
          }
          (p.events as TraceEvent[]).push(e);
        },
        () => runWorkItem(s, item),
      );
      traces.push(...machines.filter((p) => p !== undefined));
    } else {
      result = await runWorkItem(s, item);
    }
    onResult(result);
  }
}

async function runPool(items: readonly WorkItem[], jobs: number, onResult: (r: ItemResult) => void): Promise<void> {
  const { default: Tinypool } = await import('tinypool');
  const pool = new Tinypool({
    filename: new URL('./run-worker.js', import.meta.url).href,
    minThreads: jobs,
    maxThreads: jobs,
  });
  try {
    await Promise.all(items.map((item) => (pool.run(item) as Promise<ItemResult>).then(onResult)));
  } finally {
    await pool.destroy();
  }
}

/** Run, print, and return the exit status. Traces (when asked for) go to `traces`. */
export async function runCommand(names: string[], o: RunCmdOptions, traces: TraceProcess[], keep: ((e: TraceEvent) => boolean) | null): Promise<number> {
  const format: OutputFormat = o.json ? 'json' : (o.format ?? 'text');
  if (o.json && o.format && o.format !== 'json') throw new UsageError('--json and --format ' + o.format + ' contradict each other');
  const modules = o.module ?? [];
  const chosen = await chooseScenarios(names, modules);
  const seeds = o.seeds ?? { from: o.seed, to: o.seed };
  const items = workList(chosen, seeds, o.shard);
  if (o.trace && o.jobs > 1) throw new UsageError('--trace records in this thread: use it without --jobs');
  const inputs: RunInputs = {
    scenarios: chosen.map((c) => ({ name: c.scenario.name, module: c.module })),
    seeds,
    shard: o.shard ?? null,
    jobs: o.jobs,
    trace: o.trace ?? null,
  };
  const results: ItemResult[] = [];
  const pooled = o.jobs > 1 && items.length > 1;
  // One seed in this thread: each scenario's checks print as it finishes, so a run that hangs or
  // is interrupted has shown everything before it.
  const stream = format === 'text' && !pooled && seeds.from === seeds.to;
  const progress = new Progress(items.length, format === 'text' && items.length > 1 && !stream);
  const onResult = (r: ItemResult): void => {
    results.push(r);
    progress.tick(r.verdict === 'pass');
    if (stream) process.stdout.write(scenarioBlock(r));
  };
  try {
    if (pooled) await runPool(items, o.jobs, onResult);
    else await runSerial(chosen, items, onResult, o.trace ? traces : null, keep);
  } finally {
    progress.done();
  }
  results.sort((a, b) => a.index - b.index);
  const doc: RunDocument = { format: RUN_FORMAT, version: RUN_FORMAT_VERSION, command: 'run', inputs, results, summary: summarize(results) };
  process.stdout.write(formatRun(doc, format, stream));
  return doc.summary.failed > 0 ? EXIT_FAILED : 0;
}
