/**
 * cmdqv-host-unmap: the host benefit question. N kernel threads (one per CPU) unmap 4 KiB pages of one
 * strict domain in parallel, with the SMMU's main queue only (arm-smmu-v3.bypass_vcmdq=1) and with
 * VINTF0's VCMDQs. Shows that each CPU's invalidations and CMD_SYNCs go to its own VCMDQ, that every
 * unmap still ends with a completed CMD_SYNC on the queue it used, and the virtual time per unmap on
 * both paths (scenarios/lib/cmdqv-host-unmap.ts: what the figures do and do not model).
 */
import { Checks, type Scenario } from './scenario.js';
import { hostUnmapRun } from './lib/cmdqv-host-unmap.js';

const PER_THREAD = 20;

const vq8 = (figures: Record<string, number | string>): number => Number(figures['8t vcmdq ns/unmap']);

export const scenario: Scenario = {
  name: 'cmdqv-host-unmap',
  shows: 'N = 1, 2, 4, 8 threads unmapping in parallel: one main queue vs one VCMDQ per CPU (queue choice, syncs, virtual ns per unmap, what each cost input contributes)',
  async run(ctx) {
    const c = new Checks();
    const figures: Record<string, number | string> = {};
    for (const threads of [1, 2, 4, 8]) {
      const main = await hostUnmapRun({ seed: ctx.seed, threads, unmapsPerThread: PER_THREAD, mode: 'main' });
      const vq = await hostUnmapRun({ seed: ctx.seed, threads, unmapsPerThread: PER_THREAD, mode: 'vcmdq' });
      c.equal(`${threads} thread(s), bypass_vcmdq: every command on the main queue`, Object.keys(main.perQueue), ['main']);
      c.equal(`${threads} thread(s), bypass_vcmdq: one CMD_SYNC per unmap`, main.perQueue.main?.syncs, threads * PER_THREAD);
      const expected = Array.from({ length: threads }, (_, i) => `vcmdq${i}`);
      c.equal(`${threads} thread(s), VCMDQs: thread i's commands on VCMDQ i, none on the main queue`, Object.keys(vq.perQueue), expected);
      c.ok(`${threads} thread(s), VCMDQs: one CMD_SYNC per unmap on each`, expected.every((q) => vq.perQueue[q]?.syncs === PER_THREAD),
        JSON.stringify(vq.perQueue));
      c.equal(`${threads} thread(s): no VCMDQ error`, vq.lab.cmdqvModel.stats.errors, {});
      figures[`${threads}t main ns/unmap`] = Math.round(main.nsPerUnmap);
      figures[`${threads}t vcmdq ns/unmap`] = Math.round(vq.nsPerUnmap);
      figures[`${threads}t vcmdq/main`] = (vq.nsPerUnmap / main.nsPerUnmap).toFixed(2);
    }
    // Which part of the mechanism gives what, at 8 threads: with a fast SMMU (20 ns per command, the
    // plain model's default) the main queue's growth is the insertion contention (compare without
    // CPU costs); with the VCMDQs behind one arbiter their consumption serialises like the main queue's.
    const fast = await hostUnmapRun({ seed: ctx.seed, threads: 8, unmapsPerThread: PER_THREAD, mode: 'main', smmuCommandNs: 20 });
    const fastFree = await hostUnmapRun({ seed: ctx.seed, threads: 8, unmapsPerThread: PER_THREAD, mode: 'main', smmuCommandNs: 20, cpuCosts: { atomicNs: 0, lineTransferNs: 0 } });
    const fastVq = await hostUnmapRun({ seed: ctx.seed, threads: 8, unmapsPerThread: PER_THREAD, mode: 'vcmdq', smmuCommandNs: 20 });
    const arb = await hostUnmapRun({ seed: ctx.seed, threads: 8, unmapsPerThread: PER_THREAD, mode: 'vcmdq', vcmdqService: 'arbiter' });
    figures['8t SMMU 20 ns/cmd: main ns/unmap'] = Math.round(fast.nsPerUnmap);
    figures['8t SMMU 20 ns/cmd: main ns/unmap, no CPU costs'] = Math.round(fastFree.nsPerUnmap);
    figures['8t SMMU 20 ns/cmd: vcmdq ns/unmap'] = Math.round(fastVq.nsPerUnmap);
    figures['8t vcmdq ns/unmap, arbiter'] = Math.round(arb.nsPerUnmap);
    c.ok('fast SMMU, 8 threads: the insertion contention makes most of the main queue\'s time', fastFree.nsPerUnmap * 2 < fast.nsPerUnmap,
      `${Math.round(fastFree.nsPerUnmap)} without CPU costs, ${Math.round(fast.nsPerUnmap)} with`);
    c.ok('VCMDQs behind one arbiter: no longer flat', arb.nsPerUnmap > 2 * vq8(figures), `${Math.round(arb.nsPerUnmap)} vs ${vq8(figures)}`);
    const per = (t: number, k: string): number => Number(figures[`${t}t ${k} ns/unmap`]);
    c.ok('main queue: the time per unmap grows with the threads', per(1, 'main') < per(2, 'main') && per(2, 'main') < per(4, 'main') && per(4, 'main') < per(8, 'main'),
      [1, 2, 4, 8].map((t) => per(t, 'main')).join(' < '));
    c.ok('VCMDQs: the time per unmap stays within 20% of one thread\'s', [2, 4, 8].every((t) => Math.abs(per(t, 'vcmdq') - per(1, 'vcmdq')) <= 0.2 * per(1, 'vcmdq')),
      [1, 2, 4, 8].map((t) => per(t, 'vcmdq')).join(', '));
    return c.result(figures);
  },
};
