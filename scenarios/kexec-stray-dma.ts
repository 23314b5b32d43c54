/**
 * kexec-stray-dma: the kexec discussion's problem, measured. DMA engines whose driver forgot
 * `.shutdown` keep writing through a kexec into memory the new kernel hands out; with `.shutdown`
 * nothing strays.
 */
import { runKexecExperiment } from './lib/kexec-experiment.js';
import { virtMachine } from './lib/lab.js';
import { Checks, type Scenario } from './scenario.js';

export const scenario: Scenario = {
  name: 'kexec-stray-dma',
  shows: 'engines left running by a driver without .shutdown write into the next kernel\'s memory',
  async run(ctx) {
    const c = new Checks();
    const unquiesced = virtMachine({ seed: ctx.seed });
    const bad = await runKexecExperiment(unquiesced, { target: 'unaware', quiesce: 'none' });
    const quiesced = await runKexecExperiment(virtMachine({ seed: ctx.seed }), { target: 'unaware', quiesce: 'all' });
    const targets = new Map(bad.engines.map((e) => [e.master, e]));
    c.ok('without .shutdown, running engines write into the new kernel\'s memory', bad.strayWrites.length > 0);
    c.ok(
      'every stray write is an engine\'s periodic write into its old buffer',
      bad.strayWrites.every((w) => targets.get(w.master)?.dma === w.pa && w.len === targets.get(w.master)?.len),
    );
    c.ok('the new kernel had handed that memory out', bad.strayWrites.some((w) => w.owner === 'kernel:workload'));
    c.equal('with .shutdown, stray writes', quiesced.strayWrites.length, 0);
    return c.result({
      'stray writes (no .shutdown)': bad.strayWrites.length,
      'masters straying': new Set(bad.strayWrites.map((w) => w.master)).size,
      'stray writes (.shutdown)': quiesced.strayWrites.length,
    });
  },
};
