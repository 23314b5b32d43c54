/**
 * Runs the benchmarks: `npm run bench` prints a table; `-- --json` prints one line per metric,
 * {"name": "...", "unit": "...", "value": n}; `-- --filter SUBSTR` runs only the metrics whose
 * name contains SUBSTR. The modules are a fixed list: a new bench module is added here.
 */
import type { Bench, BenchResult } from './harness.js';
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
import { benches as sweep } from './sweep.bench.js';

const ALL: readonly Bench[] = [...memory, ...pgtable, ...dma, ...smmuV2Model, ...smmuV3Model, ...smmuV2, ...smmuV3, ...iopf, ...cmdqv, ...vm, ...sweep];

interface Args {
  json: boolean;
  filter: string | null;
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { json: false, filter: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') args.json = true;
    else if (a === '--filter') {
      const v = argv[++i];
      if (v === undefined) throw new Error('--filter needs a value');
      args.filter = v;
    } else if (a.startsWith('--filter=')) args.filter = a.slice('--filter='.length);
    else throw new Error(`unknown argument ${a} (usage: run [--json] [--filter SUBSTR])`);
  }
  return args;
}

function format(v: number): string {
  if (v >= 1e9) return `${(v / 1e9).toFixed(2)} G`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)} M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(2)} k`;
  return v.toFixed(2);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const selected = ALL.filter((b) => args.filter === null || b.name.includes(args.filter));
  if (selected.length === 0) throw new Error(`no benchmark matches "${args.filter}"`);
  const results: BenchResult[] = [];
  for (const b of selected) {
    const value = await b.run();
    const r = { name: b.name, unit: b.unit, value };
    results.push(r);
    if (args.json) process.stdout.write(`${JSON.stringify(r)}\n`);
  }
  if (!args.json) {
    const w = Math.max(...results.map((r) => r.name.length), 'metric'.length);
    process.stdout.write(`${'metric'.padEnd(w)}  ${'value'.padStart(12)}  unit\n`);
    for (const r of results) process.stdout.write(`${r.name.padEnd(w)}  ${format(r.value).padStart(12)}  ${r.unit}\n`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
