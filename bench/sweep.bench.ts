/**
 * Seed sweeps: the catalogue over a range of seeds, run by the CLI in this thread (`--jobs 1`) and
 * in worker threads (`--jobs 2`), as wall-clock (scenario, seed) runs per second, and the speed-up
 * of the pool. `SWEEP_SEEDS` sets how many seeds (default 3; the catalogue is 20 scenarios).
 */
import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { Bench } from './harness.js';

const bin = fileURLToPath(new URL('../../bin/iommu-sim', import.meta.url));
const seeds = Number(process.env['SWEEP_SEEDS'] ?? 3);

function sweep(jobs: number): { items: number; ms: number } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [bin, 'run', '--seeds', `1..${seeds}`, '--jobs', String(jobs), '--json'], { encoding: 'utf8', maxBuffer: 256 << 20 });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`sweep --jobs ${jobs} failed (${String(r.status)}): ${r.stderr}`);
  return { items: (JSON.parse(r.stdout) as { results: unknown[] }).results.length, ms };
}

let serialMs = 0;
let pooledMs = 0;

export const benches: Bench[] = [
  {
    name: 'sweep: catalogue x seeds, --jobs 1',
    unit: 'runs/s',
    async run() {
      const s = sweep(1);
      serialMs = s.ms;
      return (s.items * 1000) / s.ms;
    },
  },
  {
    name: 'sweep: catalogue x seeds, --jobs 2',
    unit: 'runs/s',
    async run() {
      const s = sweep(2);
      pooledMs = s.ms;
      return (s.items * 1000) / s.ms;
    },
  },
  {
    name: 'sweep: speed-up of --jobs 2 over --jobs 1',
    unit: 'x',
    async run() {
      if (serialMs === 0) serialMs = sweep(1).ms;
      if (pooledMs === 0) pooledMs = sweep(2).ms;
      return serialMs / pooledMs;
    },
  },
];
