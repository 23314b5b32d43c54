/**
 * The benchmark harness. Each bench module exports `benches`; `run.ts` lists the modules. A bench
 * measures wall-clock throughput of the simulator itself (this is the one place real time is read:
 * it measures the program, it never drives the simulation).
 */
import { performance } from 'node:perf_hooks';

export interface Bench {
  /** Metric name, e.g. "mem.u64_read". */
  name: string;
  /** Unit of the value, e.g. "ops/s", "bytes/s", "pairs/s". */
  unit: string;
  /** Prepare state, run the workload, and return the measured value. */
  run(): number | Promise<number>;
}

export interface BenchResult {
  name: string;
  unit: string;
  /** The median of `runs` repeated runs. */
  value: number;
  min: number;
  max: number;
  runs: number;
  /** The native reference's figure for the same work, and value / native, where there is one. */
  native?: number;
  ratioToNative?: number;
}

/**
 * Wall time a body runs untimed before it is measured. The JIT keeps optimizing a long path (a strict
 * unmap runs through the core, a driver, the scheduler and a model) for tens of thousands of calls:
 * a measurement that starts after one small call counts that in. Steady state is what is reported.
 */
export const WARM_UP_MS = 200;

/**
 * Run `body(iterations)` untimed, growing the count, until `warmMs` have passed; then time it
 * repeatedly until at least `minMs` of wall time has been spent in one call, and return units per
 * second where each iteration is `unitsPerIteration` units.
 */
export function throughput(body: (iterations: number) => void, unitsPerIteration = 1, minMs = 300, warmMs = WARM_UP_MS): number {
  let n = 1000;
  const warmEnd = performance.now() + warmMs;
  do {
    const t0 = performance.now();
    body(n);
    if (performance.now() - t0 < minMs / 10) n *= 2;
  } while (performance.now() < warmEnd);
  for (;;) {
    const t0 = performance.now();
    body(n);
    const dt = performance.now() - t0;
    if (dt >= minMs) return (n * unitsPerIteration) / (dt / 1000);
    n = dt < 1 ? n * 10 : Math.ceil((n * minMs * 1.2) / dt);
  }
}

/** As `throughput`, for an async body (work that goes through the scheduler). */
export async function throughputAsync(
  body: (iterations: number) => Promise<void>,
  unitsPerIteration = 1,
  minMs = 300,
  warmMs = WARM_UP_MS,
): Promise<number> {
  let n = 100;
  const warmEnd = performance.now() + warmMs;
  do {
    const t0 = performance.now();
    await body(n);
    if (performance.now() - t0 < minMs / 10) n *= 2;
  } while (performance.now() < warmEnd);
  for (;;) {
    const t0 = performance.now();
    await body(n);
    const dt = performance.now() - t0;
    if (dt >= minMs) return (n * unitsPerIteration) / (dt / 1000);
    n = dt < 1 ? n * 10 : Math.ceil((n * minMs * 1.2) / dt);
  }
}
