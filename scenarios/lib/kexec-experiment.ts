/**
 * The kexec experiment: boot a kernel, start every DMA test engine writing into its own DMA buffer,
 * kexec into a second kernel (IOMMU-aware or not; engines quiesced by their driver's `.shutdown` or
 * not), let the new kernel put memory to use, run on, and measure what the still-running engines did:
 * bytes they wrote into memory the new kernel owns (stray writes) and transactions that were blocked.
 */
import { testEngines } from '../../drivers/misc/dma-test-engine.js';
import type { Machine } from '../../hw/machine.js';
import type { Kernel } from '../../kernel/kernel.js';
import { kexec } from '../../kernel/kexec.js';
import { boot, run } from './lab.js';
import { StrayDmaMonitor, type StrayWrite } from './stray-dma.js';

export interface KexecExperimentOptions {
  /** The kernel kexec'd into: `aware` has the SMMU drivers, `unaware` has none. */
  target: 'aware' | 'unaware';
  /** `all`: the engines' driver has `.shutdown` and stops them; `none`: it has none. */
  quiesce: 'all' | 'none';
  /** Command line of both kernels (e.g. an SMMU shutdown policy). */
  cmdline?: string;
  /** Period of the engines' writes (virtual ns). */
  periodNs?: number;
  /** How long the engines run before the kexec, and after it (virtual ns). */
  runBeforeNs?: number;
  runAfterNs?: number;
  /** Memory the new kernel puts to use after booting (bytes, in 4 KiB pages). */
  workloadBytes?: number;
}

export interface KexecExperimentResult {
  strayWrites: StrayWrite[];
  /** Engine transactions after the kexec that did not reach memory (aborted, faulted, bus error). */
  blockedTransactions: number;
  /** Of those, the ones an IOMMU answered with a translation fault. */
  faults: number;
  /** Where each engine was writing, for reports: master → DMA address and length. */
  engines: { master: string; dma: number; len: number }[];
  first: Kernel;
  second: Kernel;
}

const WRITE_LEN = 256;

export async function runKexecExperiment(machine: Machine, opts: KexecExperimentOptions): Promise<KexecExperimentResult> {
  const periodNs = opts.periodNs ?? 10_000;
  const monitor = new StrayDmaMonitor(machine);
  const bootOpts = {
    ...(opts.cmdline !== undefined ? { cmdline: opts.cmdline } : {}),
    testEngineShutdown: opts.quiesce === 'all',
  };
  try {
    const first = await boot(machine, bootOpts);
    const engines: KexecExperimentResult['engines'] = [];
    for (const engine of testEngines(first.core)) {
      const buf = await run(machine, engine.allocBuffer(0x1000, 'kexec experiment target'));
      engine.start({ op: 'periodic', dst: buf.dma, len: WRITE_LEN, pattern: 0x5a5a_5a5a, periodNs });
      engines.push({ master: engine.dev.name, dma: buf.dma, len: WRITE_LEN });
    }
    await machine.scheduler.runFor(opts.runBeforeNs ?? 100_000);

    const before = new Map([...machine.testEngines].map(([path, m]) => [path, { failed: m.stats.failed, faults: m.stats.failedBy.fault }]));
    const second = await run(
      machine,
      kexec(machine, { ...bootOpts, drivers: opts.target === 'aware' ? 'all' : 'iommu-unaware', testEngineShutdown: true }),
      'kexec',
    );
    // The new kernel puts memory to use: the same frames the old one gave out come back first.
    const pages = Math.ceil((opts.workloadBytes ?? 0x40_0000) / 0x1000);
    for (let i = 0; i < pages; i++) second.alloc.allocPages(0, { kind: 'kernel', what: 'workload' });
    await machine.scheduler.runFor(opts.runAfterNs ?? 200_000);

    let blocked = 0;
    let faults = 0;
    for (const [path, m] of machine.testEngines) {
      const b = before.get(path)!;
      blocked += m.stats.failed - b.failed;
      faults += m.stats.failedBy.fault - b.faults;
    }
    return { strayWrites: monitor.strays.filter((w) => w.kernel === second.instance), blockedTransactions: blocked, faults, engines, first, second };
  } finally {
    monitor.dispose();
  }
}
