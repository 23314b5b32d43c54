/**
 * kexec-smmu-policies: the kexec-bypass discussion as an experiment. DMA engines behind both SMMUs
 * keep running (their driver has no `.shutdown`) while the kernel kexecs; each SMMU shutdown policy
 * decides what their writes do afterwards. Linux today (arm-smmu-v3 clears SMMUEN with GBPA left in
 * bypass; arm-smmu sets CLIENTPD) lets the writes through untranslated: their IOVAs become physical
 * addresses in the next kernel's RAM. The alternatives block them.
 *
 * RAM reaches up to 4 GiB here, so the DMA API's IOVAs (allocated top-down below 4 GiB) are also
 * physical addresses of RAM: exactly the situation in which bypass corrupts memory.
 */
import { runKexecExperiment, type KexecExperimentResult } from './lib/kexec-experiment.js';
import { virtMachine } from './lib/lab.js';
import { Checks, type Scenario } from './scenario.js';

/** Engines behind an SMMU on the virt machine (the fifth, /dma@c040000, has none). */
const BEHIND_SMMU = ['/dma@c000000', '/dma@c010000', '/dma@c020000', '/dma@c030000'];

const TODAY = 'arm-smmu-v3.shutdown_policy=disable arm-smmu.shutdown_policy=bypass';
const POLICIES = [
  // Into an IOMMU-aware kernel the window lasts until its SMMU drivers take over; into an unaware
  // one (the discussion's case) it never closes.
  { label: 'linux-today', cmdline: TODAY, target: 'aware' },
  { label: 'linux-today-unaware', cmdline: TODAY, target: 'unaware' },
  { label: 'abort', cmdline: 'arm-smmu-v3.shutdown_policy=gbpa-abort arm-smmu.shutdown_policy=abort-all', target: 'unaware' },
  { label: 'stay-enabled', cmdline: 'arm-smmu-v3.shutdown_policy=ste-abort arm-smmu.shutdown_policy=translate', target: 'unaware' },
] as const;

function strayBehindSmmu(r: KexecExperimentResult): KexecExperimentResult['strayWrites'] {
  return r.strayWrites.filter((w) => BEHIND_SMMU.includes(w.master));
}

export const scenario: Scenario = {
  name: 'kexec-smmu-policies',
  shows: 'after kexec with DMA running: bypass lets IOVAs land as physical addresses; abort policies block them',
  async run(ctx) {
    const c = new Checks();
    const figures: Record<string, string> = {};
    const results = new Map<string, KexecExperimentResult>();
    for (const p of POLICIES) {
      const machine = virtMachine({ seed: ctx.seed, ramSize: 0xc000_0000 });
      // The aware kernel's SMMUv3 reset takes a few microseconds of virtual time (its CMD_SYNC waits
      // end when the completion MSI lands): engines writing every 2 µs sample that window.
      const r = await runKexecExperiment(machine, { target: p.target, quiesce: 'none', cmdline: p.cmdline, periodNs: 2_000 });
      results.set(p.label, r);
      figures[p.label] = `stray=${strayBehindSmmu(r).length} blocked=${r.blockedTransactions}`;
    }
    const today = results.get('linux-today-unaware')!;
    const engines = new Map(today.engines.map((e) => [e.master, e]));
    const todayStrays = strayBehindSmmu(today);
    c.ok('Linux today: writes of engines behind the SMMUs land untranslated in the new kernel\'s RAM', todayStrays.length > 0);
    c.ok(
      'each such write lands at the physical address equal to the IOVA its old kernel gave the engine',
      todayStrays.every((w) => engines.get(w.master)?.dma === w.pa),
    );
    const aware = strayBehindSmmu(results.get('linux-today')!).length;
    c.ok('an IOMMU-aware next kernel shortens the window but does not close it', aware > 0 && aware < todayStrays.length);
    for (const label of ['abort', 'stay-enabled'] as const) {
      const r = results.get(label)!;
      c.equal(`${label}: no write of an engine behind an SMMU reaches memory`, strayBehindSmmu(r).length, 0);
      c.ok(`${label}: the engines' transactions are blocked instead`, r.blockedTransactions > 0);
    }
    return c.result(figures);
  },
};
