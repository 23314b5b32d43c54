/**
 * smmu-v2-shutdown: what the arm-smmu `.shutdown` leaves for a master that keeps doing DMA (its
 * driver forgot `.shutdown`), under each `arm-smmu.shutdown_policy` of the kexec thread. Linux today
 * (`bypass`) sets sCR0.CLIENTPD: the master's writes reach memory untranslated, at the IOVA taken as
 * a physical address. `abort-unmatched` / `abort-all` abort them; `translate` keeps the SMMU enabled
 * with the stream map reset, so they abort too under disable_bypass.
 */
import { iommuAttachDevice } from '../core/iommu-attach.js';
import { iommuPagingDomainAlloc } from '../core/iommu-domain.js';
import { iommuMap } from '../core/iommu-map.js';
import { IOMMU_READ, IOMMU_WRITE } from '../core/io-pgtable.js';
import { SMMU_V2_SHUTDOWN_POLICIES, type SmmuV2ShutdownPolicy } from '../kernel/cmdline.js';
import { boot, run } from './lib/lab.js';
import { Checks, type Scenario } from './scenario.js';
import { SMMU_V2_LAB as L, deviceOf, kernelPage, masterOf, smmuReg, smmuV2Machine } from './smmu-v2-lab.js';

const PERIOD_NS = 10_000;

interface Outcome {
  policy: SmmuV2ShutdownPolicy;
  scr0: number;
  /** Writes after shutdown that landed at the IOVA as a physical address. */
  untranslated: number;
  /** Writes after shutdown that still landed in the page the IOVA was mapped to. */
  translated: number;
  blocked: number;
}

async function experiment(seed: number, policy: SmmuV2ShutdownPolicy): Promise<Outcome> {
  const machine = smmuV2Machine({ seed, bootargs: `arm-smmu.shutdown_policy=${policy}` });
  const kernel = await boot(machine);
  const dev = deviceOf(kernel, L.masterNoStall);
  const domain = iommuPagingDomainAlloc(dev);
  await run(machine, iommuAttachDevice(domain, dev));
  const iova = kernelPage(kernel, 'IOVA used as PA after shutdown');
  const pa = kernelPage(kernel, 'DMA buffer');
  await run(machine, iommuMap(domain, iova, pa, 0x1000, IOMMU_READ | IOMMU_WRITE));

  // The master writes a sequence number every PERIOD_NS, whatever the kernel does.
  const master = masterOf(machine, L.masterNoStall);
  let seq = 0;
  let blocked = 0;
  let shutDown = false;
  const tick = (): void => {
    seq++;
    const n = seq;
    master.submitWrite(iova, Uint8Array.of(n & 0xff, 0xa5), {}, (c) => {
      if (c.status !== 'ok' && shutDown) blocked++;
    });
    if (seq < 20) machine.scheduler.schedule(PERIOD_NS, tick, 'lab DMA tick');
  };
  tick();
  await run(machine, machine.cpu.delay(5 * PERIOD_NS));
  const beforeShutdown = machine.memory.read(pa, 2);
  await run(machine, kernel.shutdown());
  shutDown = true;
  const markPa = machine.memory.read(pa, 1)[0];
  await run(machine, machine.cpu.delay(20 * PERIOD_NS));
  const atIova = machine.memory.read(iova, 2);
  const atPa = machine.memory.read(pa, 1)[0];
  return {
    policy,
    scr0: smmuReg(machine, 0),
    untranslated: atIova[1] === 0xa5 && beforeShutdown[1] === 0xa5 ? atIova[0] : 0,
    translated: atPa !== markPa ? 1 : 0,
    blocked,
  };
}

export const scenario: Scenario = {
  name: 'smmu-v2-shutdown',
  shows: 'arm-smmu .shutdown policies: bypass (CLIENTPD, DMA untranslated) vs abort/translate',
  async run(ctx) {
    const c = new Checks();
    const results: Outcome[] = [];
    for (const policy of SMMU_V2_SHUTDOWN_POLICIES) results.push(await experiment(ctx.seed, policy));
    const by = (p: SmmuV2ShutdownPolicy): Outcome => results.find((r) => r.policy === p)!;
    const bypass = by('bypass');
    c.equal('bypass: sCR0.CLIENTPD set', bypass.scr0 & 1, 1);
    c.ok('bypass: the running master\'s DMA reaches memory untranslated (at the IOVA)', bypass.untranslated > 0, `last sequence number at the IOVA: ${bypass.untranslated}`);
    c.equal('bypass: nothing blocked', bypass.blocked, 0);
    for (const p of ['abort-unmatched', 'abort-all', 'translate'] as const) {
      const r = by(p);
      c.equal(`${p}: sCR0.CLIENTPD clear`, r.scr0 & 1, 0);
      c.equal(`${p}: nothing untranslated`, r.untranslated, 0);
      c.ok(`${p}: the master's writes are blocked`, r.blocked > 0, `blocked ${r.blocked}`);
    }
    c.ok('no policy lets the old translation be used after shutdown', results.every((r) => r.translated === 0));
    return c.result(Object.fromEntries(results.map((r) => [r.policy, `sCR0=0x${r.scr0.toString(16)} untranslated=${r.untranslated > 0} blocked=${r.blocked}`])));
  },
};
