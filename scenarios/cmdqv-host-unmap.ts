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

export const scenario: Scenario = {
  name: 'cmdqv-host-unmap',
  shows: 'N threads unmapping in parallel: one main queue vs one VCMDQ per CPU (queue choice, syncs, virtual ns per unmap)',
  async run(ctx) {
    const c = new Checks();
    const figures: Record<string, number | string> = {};
    for (const threads of [1, 2, 4]) {
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
    return c.result(figures);
  },
};
