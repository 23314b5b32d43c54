/**
 * What `run` and `merge` print: a readable report (default), the run document as JSON (`--json`,
 * versioned, echoing its inputs) or KTAP v1 (`--format ktap`, as KUnit prints it).
 */
import { relative } from 'node:path';
import type { ItemResult } from './run-work.js';
import { formatTable } from './table.js';

export type OutputFormat = 'text' | 'json' | 'ktap';

/** Identifies the JSON document; `version` changes when its shape does. */
export const RUN_FORMAT = 'iommu-sim-run';
export const RUN_FORMAT_VERSION = 1;

export interface RunInputs {
  scenarios: { name: string; module: string | null }[];
  /** Seeds from..to, both included. */
  seeds: { from: number; to: number };
  shard: { index: number; count: number } | null;
  jobs: number;
  trace: string | null;
}

export interface RunSummary {
  passed: number;
  failed: number;
  /** The first failing (scenario, seed) in run order, and the command that replays it. */
  firstFailure: { scenario: string; seed: number; replay: string } | null;
}

export interface RunDocument {
  format: typeof RUN_FORMAT;
  version: typeof RUN_FORMAT_VERSION;
  command: 'run' | 'merge';
  inputs: RunInputs;
  /** Shard documents a merge combined (merge only). */
  merged?: number;
  results: ItemResult[];
  summary: RunSummary;
}

/** The command line that runs exactly this (scenario, seed) again. */
export function replayCommand(r: Pick<ItemResult, 'scenario' | 'module' | 'seed'>): string {
  const mod = r.module ? ` --module ${quote(relative(process.cwd(), r.module) || r.module)}` : '';
  return `iommu-sim run ${quote(r.scenario)} --seed ${r.seed}${mod}`;
}

function quote(s: string): string {
  return /^[\w./@:=+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function summarize(results: readonly ItemResult[]): RunSummary {
  const failed = results.filter((r) => r.verdict === 'fail');
  const first = failed.reduce<ItemResult | null>((a, r) => (a === null || r.index < a.index ? r : a), null);
  return {
    passed: results.length - failed.length,
    failed: failed.length,
    firstFailure: first ? { scenario: first.scenario, seed: first.seed, replay: replayCommand(first) } : null,
  };
}

/**
 * The report of a finished run. `streamed`: the text report's per-scenario check lines were
 * already printed as each scenario finished (`scenarioBlock()`), so only the table and summary follow.
 */
export function formatRun(doc: RunDocument, format: OutputFormat, streamed = false): string {
  switch (format) {
    case 'json':
      return JSON.stringify(doc, null, 2) + '\n';
    case 'ktap':
      return formatKtap(doc);
    case 'text':
      return formatText(doc, streamed);
  }
}

/** One scenario's checks, as the text report prints them. */
export function scenarioBlock(r: ItemResult): string {
  return [`== ${r.scenario}: ${r.shows}`, ...checkLines(r, '  ')].join('\n') + '\n';
}

function figuresText(f: ItemResult['figures']): string {
  return Object.entries(f)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(', ');
}

function checkLines(r: ItemResult, indent: string): string[] {
  const lines = r.checks.map((c) => `${indent}[${c.ok ? 'ok' : 'FAIL'}] ${c.what}${c.detail ? `: ${c.detail}` : ''}`);
  if (r.error) lines.push(...r.error.stack.split('\n').map((l) => `${indent}  ${l}`));
  return lines;
}

function formatText(doc: RunDocument, streamed: boolean): string {
  const { results, inputs, summary } = doc;
  const sweep = inputs.seeds.to > inputs.seeds.from;
  const out: string[] = [];
  if (!sweep) {
    // One seed: every scenario's checks, then the table.
    if (!streamed) for (const r of results) out.push(scenarioBlock(r).trimEnd());
    out.push(
      '',
      formatTable(
        ['scenario', 'shows', 'verdict', 'figures'],
        results.map((r) => [r.scenario, r.shows, r.verdict.toUpperCase(), figuresText(r.figures)]),
        { wrap: [1, 3] },
      ),
    );
  } else {
    // A sweep: one row per scenario; the first failure's checks in full.
    const rows = new Map<string, { name: string; seeds: number; failed: number; firstSeed: number | null }>();
    for (const r of results) {
      const key = `${r.module ?? ''}\0${r.scenario}`;
      const row = rows.get(key) ?? { name: r.scenario, seeds: 0, failed: 0, firstSeed: null };
      row.seeds++;
      if (r.verdict === 'fail') {
        row.failed++;
        if (row.firstSeed === null) row.firstSeed = r.seed;
      }
      rows.set(key, row);
    }
    out.push(
      formatTable(
        ['scenario', 'seeds', 'passed', 'failed', 'first failing seed'],
        [...rows.values()].map((r) => [r.name, String(r.seeds), String(r.seeds - r.failed), String(r.failed), r.firstSeed === null ? '-' : String(r.firstSeed)]),
      ),
    );
    const first = results.find((r) => r.verdict === 'fail');
    if (first) out.push('', `first failure: ${first.scenario}, seed ${first.seed}`, ...checkLines(first, '  '));
  }
  const seedText = sweep ? `seeds ${inputs.seeds.from}..${inputs.seeds.to}` : `seed ${inputs.seeds.from}`;
  const shardText = inputs.shard ? `, shard ${inputs.shard.index}/${inputs.shard.count}` : '';
  out.push('', `${summary.passed} passed, ${summary.failed} failed (${seedText}${shardText})`);
  if (summary.firstFailure) out.push(`replay the first failure: ${summary.firstFailure.replay}`);
  return out.join('\n') + '\n';
}

/** A KTAP description: one line, no `#` (which would start a directive). */
function ktapName(s: string): string {
  return s.replace(/[\r\n]+/g, ' ').replace(/#/g, '%23');
}

function diagnostics(indent: string, text: string): string[] {
  return text.split('\n').map((l) => `${indent}# ${l}`);
}

/**
 * KTAP v1: a suite per scenario, and within it a test per check (one seed) or a test per seed with
 * its checks as subtests (a sweep), as KUnit nests parameterised tests. Subtests are indented four
 * spaces and open with their own version line and `# Subtest:` header.
 */
export function formatKtap(doc: RunDocument): string {
  const out: string[] = ['KTAP version 1'];
  const sweep = doc.inputs.seeds.to > doc.inputs.seeds.from;
  const suites: { key: string; name: string; module: string | null; results: ItemResult[] }[] = [];
  for (const r of doc.results) {
    const key = `${r.module ?? ''}\0${r.scenario}`;
    let s = suites.find((x) => x.key === key);
    if (!s) {
      s = { key, name: r.scenario, module: r.module, results: [] };
      suites.push(s);
    }
    s.results.push(r);
  }
  out.push(`1..${suites.length}`);
  const checksBlock = (r: ItemResult, indent: string, title: string, module: string | null): void => {
    out.push(`${indent}KTAP version 1`, `${indent}# Subtest: ${ktapName(title)}`);
    if (module) out.push(`${indent}# module: ${ktapName(module)}`);
    out.push(`${indent}1..${r.checks.length}`);
    r.checks.forEach((c, i) => {
      if (!c.ok && c.detail) out.push(...diagnostics(indent, c.detail));
      out.push(`${indent}${c.ok ? 'ok' : 'not ok'} ${i + 1} ${ktapName(c.what)}`);
    });
    if (r.error) out.push(...diagnostics(indent, r.error.stack));
  };
  suites.forEach((s, i) => {
    const ok = s.results.every((r) => r.verdict === 'pass');
    if (sweep) {
      const ind = '    ';
      out.push(`${ind}KTAP version 1`, `${ind}# Subtest: ${ktapName(s.name)}`);
      if (s.module) out.push(`${ind}# module: ${ktapName(s.module)}`);
      out.push(`${ind}1..${s.results.length}`);
      s.results.forEach((r, j) => {
        checksBlock(r, ind + ind, `seed ${r.seed}`, null);
        out.push(`${ind}${r.verdict === 'pass' ? 'ok' : 'not ok'} ${j + 1} seed ${r.seed}`);
      });
    } else {
      const r = s.results[0];
      checksBlock(r, '    ', s.name, s.module);
      out.push(`# ${ktapName(s.name)}: ${ktapName(r.shows)}`);
      if (Object.keys(r.figures).length) out.push(`# figures: ${ktapName(figuresText(r.figures))}`);
    }
    const pass = s.results.filter((r) => r.verdict === 'pass').length;
    out.push(`# ${ktapName(s.name)}: pass:${pass} fail:${s.results.length - pass} skip:0 total:${s.results.length}`);
    out.push(`${ok ? 'ok' : 'not ok'} ${i + 1} ${ktapName(s.name)}`);
  });
  const { passed, failed } = doc.summary;
  out.push(`# Totals: pass:${passed} fail:${failed} skip:0 total:${passed + failed}`);
  return out.join('\n') + '\n';
}
