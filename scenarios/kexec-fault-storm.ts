/**
 * kexec-fault-storm: the other side of the argument. Engines that keep issuing after failures,
 * left running by a driver without `.shutdown`, meet an abort policy: nothing strays, but the
 * incoming IOMMU-aware kernel sees a fault storm (events or context faults, interrupts, log lines
 * until the rate limit bites) that lasts until a driver stops the device. With
 * `dma-test-engine.reset_on_probe=1` the engine's driver does, and the storm ends at its probe.
 */
import { runKexecExperiment } from './lib/kexec-experiment.js';
import { kexecLabMachine } from './lib/kexec-matrix.js';
import { Checks, type Scenario } from './scenario.js';

const ABORT = 'arm-smmu-v3.shutdown_policy=gbpa-abort arm-smmu.shutdown_policy=abort-all';

export const scenario: Scenario = {
  name: 'kexec-fault-storm',
  shows: 'abort policies trade corruption for a fault storm in the next kernel; a driver that resets its device at probe ends it',
  async run(ctx) {
    const c = new Checks();
    const figures: Record<string, string> = {};
    for (const smmu of ['v3', 'v2'] as const) {
      const storm = await runKexecExperiment(kexecLabMachine(ctx.seed), { target: 'aware', quiesce: 'none', cmdline: ABORT, smmu, storm: true });
      const reset = await runKexecExperiment(kexecLabMachine(ctx.seed), {
        target: 'aware',
        quiesce: 'none',
        cmdline: `${ABORT} dma-test-engine.reset_on_probe=1`,
        smmu,
        storm: true,
      });
      c.ok(`${smmu}: no stray write under abort`, storm.accounting.stray === 0);
      c.ok(`${smmu}: the storm reaches the incoming kernel as interrupts and log lines`, storm.storm.interrupts > 0 && storm.storm.iommuLogLines > 0);
      c.ok(`${smmu}: it does not stop by itself`, storm.storm.quietAfterNs === null);
      c.ok(
        `${smmu}: reset at probe makes it quiet before the incoming kernel is up`,
        reset.storm.quietAfterNs !== null && reset.storm.failedAfterBoot === 0 && storm.storm.failedAfterBoot > 0,
      );
      c.ok(`${smmu}: every transaction is accounted`, storm.accounting.balanced && reset.accounting.balanced);
      figures[smmu] =
        `${storm.storm.failedPerSecondAfterBoot} failed/s after boot, ${storm.storm.interrupts} irqs, ${storm.storm.iommuLogLines} log lines; ` +
        `reset at probe: quiet ${((reset.storm.quietAfterNs ?? 0) / 1000).toFixed(1)} µs after the hand-over (booted after ${((reset.storm.bootedAfterNs ?? 0) / 1000).toFixed(1)} µs)`;
    }
    return c.result(figures);
  },
};
