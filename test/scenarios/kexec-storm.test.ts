/**
 * Fault storms after kexec under the abort policies: what the incoming kernel sees (failed
 * transactions per second, interrupts, log lines, time until quiet) and what its drivers do.
 */
import { describe, expect, it } from 'vitest';
import { runKexecExperiment } from '../../scenarios/lib/kexec-experiment.js';
import { kexecLabMachine } from '../../scenarios/lib/kexec-matrix.js';
import { machineFromTree } from '../../scenarios/lib/lab.js';
import { buildVirtDeviceTree } from '../../scenarios/machines/virt.js';

const ABORT = 'arm-smmu-v3.shutdown_policy=gbpa-abort arm-smmu.shutdown_policy=abort-all';

describe('fault storms', () => {
  it('engines that ignore failures keep faulting at their own rate; the aware kernel takes interrupts, its log is rate-limited', async () => {
    const short = await runKexecExperiment(kexecLabMachine(1), { target: 'aware', quiesce: 'none', cmdline: ABORT, smmu: 'v3', storm: true, runAfterNs: 200_000 });
    const long = await runKexecExperiment(kexecLabMachine(1), { target: 'aware', quiesce: 'none', cmdline: ABORT, smmu: 'v3', storm: true, runAfterNs: 2_000_000 });
    // Two engines, one write each per 10 µs: 200 000 failed transactions per second.
    for (const r of [short, long]) {
      expect(r.storm.failedPerSecond).toBeGreaterThan(180_000);
      expect(r.storm.failedPerSecond).toBeLessThanOrEqual(200_000);
      expect(r.storm.quietAfterNs).toBeNull();
      expect(r.strayWrites).toEqual([]);
      expect(r.accounting.balanced).toBe(true);
    }
    expect(long.accounting.faulted).toBeGreaterThan(8 * short.accounting.faulted);
    expect(long.storm.failedPerSecondAfterBoot).toBeGreaterThan(180_000);
    expect(long.storm.failedAfterBoot).toBeGreaterThan(long.accounting.faulted - 5);
    // Interrupts keep coming with the faults; the event log lines stop at the rate limit's burst.
    expect(long.storm.interrupts).toBeGreaterThan(5 * short.storm.interrupts);
    expect(long.storm.iommuLogLines).toBe(short.storm.iommuLogLines);
    expect(short.storm.driverActions.some((a) => /event 0x10 received: F_TRANSLATION/.test(a))).toBe(true);
  });

  it('an unaware kernel sees a silent storm: every transaction aborted, no interrupt, no log line', async () => {
    const r = await runKexecExperiment(kexecLabMachine(2), { target: 'unaware', quiesce: 'none', cmdline: ABORT, smmu: 'v2', storm: true });
    expect(r.accounting.blocked).toBeGreaterThan(30);
    expect([r.storm.interrupts, r.storm.iommuLogLines, r.accounting.stray]).toEqual([0, 0, 0]);
    expect(r.policies.summary).toBe(
      '.shutdown with arm-smmu-v3.shutdown_policy=gbpa-abort, arm-smmu.shutdown_policy=abort-all; then an IOMMU-unaware kernel (no SMMU driver touches them)',
    );
  });

  it('a driver that resets its device at probe ends the storm: quiet soon after the hand-over', async () => {
    const cmdline = `${ABORT} dma-test-engine.reset_on_probe=1`;
    const r = await runKexecExperiment(kexecLabMachine(1), { target: 'aware', quiesce: 'none', cmdline, smmu: 'v2', storm: true });
    // Quiet by the time the incoming kernel is up (the engine driver probes during boot), and not one
    // failure after it: however long the hand-over itself took.
    expect(r.storm.quietAfterNs).not.toBeNull();
    expect(r.storm.bootedAfterNs).not.toBeNull();
    expect(r.storm.quietAfterNs!).toBeLessThanOrEqual(r.storm.bootedAfterNs!);
    expect(r.storm.failedAfterBoot).toBe(0);
    expect(r.storm.driverActions.filter((a) => a.includes('reset at probe: stopped 1 inherited frame(s)'))).toHaveLength(2);
    expect(r.policies.incoming['dma-test-engine.reset_on_probe']).toBe(true);
    for (const m of ['/dma@c020000', '/dma@c030000']) expect(r.second!.core.findDevice(m)).toBeDefined();
  });

  it('without storm mode each engine stops at its first failure', async () => {
    const r = await runKexecExperiment(kexecLabMachine(1), { target: 'unaware', quiesce: 'none', cmdline: ABORT });
    expect(r.engines).toHaveLength(5);
    // Four engines behind SMMUs fail once and stop; the fifth has no IOMMU and strays on.
    expect(r.accounting.blocked).toBe(4);
    expect(r.storm.quietAfterNs).not.toBeNull();
    expect(new Set(r.strayWrites.map((w) => w.master))).toEqual(new Set(['/dma@c040000']));
  });
});

describe('honest inputs', () => {
  it('a machine with no DMA test engine says the experiment has nothing to observe', async () => {
    const tree = buildVirtDeviceTree();
    tree.root.children.splice(0, tree.root.children.length, ...tree.root.children.filter((n) => !n.name.startsWith('dma@')));
    tree.invalidate();
    const r = await runKexecExperiment(machineFromTree(tree, { seed: 1 }), { target: 'unaware', quiesce: 'none' });
    expect(r.observable).toBe(false);
    expect(r.nothingToObserve).toBe('this machine has no DMA test engine: the experiment has nothing to observe');
    expect(r.engines).toEqual([]);
    expect(r.accounting.issued).toBe(0);
  });

  it('unknown parameters are collected from both kernels; in strict mode the incoming kernel refuses to boot', async () => {
    const r = await runKexecExperiment(kexecLabMachine(1), { target: 'aware', quiesce: 'all', cmdline: 'arm-smmu.shutdown_polcy=abort-all' });
    expect(r.unknownParams).toEqual(['arm-smmu.shutdown_polcy=abort-all']);
    // The misspelt policy did nothing: Linux's default is in force, and the report says so.
    expect(r.policies.outgoing['arm-smmu.shutdown_policy']).toBe('bypass');
    const strict = await runKexecExperiment(kexecLabMachine(1), {
      target: 'aware',
      quiesce: 'none',
      targetCmdline: 'iommu.strct=1',
      strictParams: true,
    });
    expect(strict.boot.ok).toBe(false);
    expect(strict.boot.error).toBe('EINVAL: kernel command line: unknown parameter(s) "iommu.strct=1" ("iommu.strct=1": did you mean iommu.strict?)');
    expect(strict.accounting.balanced).toBe(true);
  });
});

describe('kdump accounting', () => {
  it('stray records and the accounting agree: a master writing its own old buffer is not a stray, the rest of the dump is', async () => {
    const common = { target: 'kdump', quiesce: 'none', storm: true } as const;
    const abort = await runKexecExperiment(kexecLabMachine(4), common);
    expect(abort.strayWrites).toEqual([]);
    expect(abort.accounting.stray).toBe(0);
    expect(abort.accounting.landedOwned).toBeGreaterThan(0); // the engine without an IOMMU, into its old buffer
    const bypass = await runKexecExperiment(kexecLabMachine(4), { ...common, targetCmdline: 'iommu.passthrough=1' });
    expect(bypass.strayWrites.length).toBe(bypass.accounting.stray);
    expect(new Set(bypass.strayWrites.map((w) => w.owner))).toEqual(new Set(['vmcore (crashed kernel memory)']));
    expect(bypass.strayWrites.every((w) => w.pa === 0xffff_f000)).toBe(true);
    expect(bypass.accounting.strayByOwner).toEqual({ 'vmcore (crashed kernel memory)': bypass.accounting.stray });
  });
});

describe('stray records and accounting', () => {
  it('list the same stray writes, whatever the target and policy', async () => {
    for (const [target, cmdline] of [
      ['aware', ''],
      ['unaware', ''],
      ['aware', 'arm-smmu-v3.shutdown_policy=ste-abort arm-smmu.shutdown_policy=translate'],
      ['kdump', ''],
    ] as const) {
      const r = await runKexecExperiment(kexecLabMachine(6), { target, quiesce: 'none', cmdline, storm: true });
      expect(r.strayWrites.length, `${target} ${cmdline}`).toBe(r.accounting.stray);
      expect(r.accounting.balanced, `${target} ${cmdline}`).toBe(true);
    }
  });
});
