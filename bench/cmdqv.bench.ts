/**
 * Grace CMDQV host benefit, `cmdqv.host_unmap_Nq`: N kernel threads (one per CPU) each unmapping a
 * 4 KiB page of one strict UNMANAGED domain, with the SMMU's main queue only (bypass_vcmdq) or with
 * N VCMDQs of VINTF0, N = 1, 2, 4, 8 (scenarios/lib/cmdqv-host-unmap.ts describes the mechanism, its
 * inputs and what is not modelled). Per N: the mean virtual time of one unmap on each path (ns of virtual time), and the
 * simulator's wall-clock throughput on each path (commands consumed per second of real time).
 * BENCH_CMDQV_UNMAPS sets the unmaps per thread of the virtual-time runs (default 200).
 */
import { performance } from 'node:perf_hooks';
import type { Bench } from './harness.js';
import { prepareHostUnmap } from '../scenarios/lib/cmdqv-host-unmap.js';

const UNMAPS = Number(process.env.BENCH_CMDQV_UNMAPS ?? 200);

async function nsPerUnmap(threads: number, mode: 'main' | 'vcmdq'): Promise<number> {
  const b = await prepareHostUnmap({ seed: 1, threads, mode });
  await b.run(10); // warm the caches of the domain's tables
  return (await b.run(UNMAPS)).nsPerUnmap;
}

async function commandsPerSecond(threads: number, mode: 'main' | 'vcmdq'): Promise<number> {
  const b = await prepareHostUnmap({ seed: 1, threads, mode });
  await b.run(20);
  let n = 20;
  for (;;) {
    const t0 = performance.now();
    const r = await b.run(n);
    const dt = performance.now() - t0;
    if (dt >= 300) return r.commands / (dt / 1000);
    n = dt < 1 ? n * 10 : Math.ceil((n * 300 * 1.2) / dt);
  }
}

export const benches: Bench[] = [1, 2, 4, 8].flatMap((n): Bench[] => [
  { name: `cmdqv.host_unmap_${n}q.ns_per_unmap.main`, unit: 'ns (virtual)', run: () => nsPerUnmap(n, 'main') },
  { name: `cmdqv.host_unmap_${n}q.ns_per_unmap.vcmdq`, unit: 'ns (virtual)', run: () => nsPerUnmap(n, 'vcmdq') },
  { name: `cmdqv.host_unmap_${n}q.commands_per_s.main`, unit: 'commands/s', run: () => commandsPerSecond(n, 'main') },
  { name: `cmdqv.host_unmap_${n}q.commands_per_s.vcmdq`, unit: 'commands/s', run: () => commandsPerSecond(n, 'vcmdq') },
]);
