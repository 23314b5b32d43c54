import { describe, expect, it } from 'vitest';
import { hostUnmapRun } from '../../scenarios/lib/cmdqv-host-unmap.js';

const PER = 8;

describe('Grace host unmap experiment: where the VCMDQ benefit comes from', () => {
  it('main queue: the time per unmap grows with the threads; one VCMDQ per CPU: it stays flat', async () => {
    const main: number[] = [];
    const vq: number[] = [];
    for (const threads of [1, 2, 4, 8]) {
      main.push((await hostUnmapRun({ seed: 1, threads, unmapsPerThread: PER, mode: 'main' })).nsPerUnmap);
      vq.push((await hostUnmapRun({ seed: 1, threads, unmapsPerThread: PER, mode: 'vcmdq' })).nsPerUnmap);
    }
    for (let i = 1; i < 4; i++) expect(main[i]).toBeGreaterThan(main[i - 1] * 1.5);
    for (const v of vq) expect(Math.abs(v - vq[0])).toBeLessThanOrEqual(0.25 * vq[0]);
    expect(vq[3]).toBeLessThan(main[3] / 4);
  });

  it('insertion: CPUs sharing the main queue contend (cache-line transfers), a VCMDQ per CPU never does; without CPU costs nothing is charged', async () => {
    const main = await hostUnmapRun({ seed: 1, threads: 4, unmapsPerThread: PER, mode: 'main' });
    const vq = await hostUnmapRun({ seed: 1, threads: 4, unmapsPerThread: PER, mode: 'vcmdq' });
    expect(main.lab.smmu.cmdq.insertion.contended).toBeGreaterThan(0);
    const vcmdqs = main.lab.cmdqv.vintfs[0]!.lvcmdqs;
    expect(vcmdqs.length).toBe(8);
    for (const lq of vq.lab.cmdqv.vintfs[0]!.lvcmdqs) expect(lq!.cmdq.insertion.contended).toBe(0);
    const free = await hostUnmapRun({ seed: 1, threads: 4, unmapsPerThread: PER, mode: 'main', cpuCosts: { atomicNs: 0, lineTransferNs: 0 } });
    expect(free.lab.smmu.cmdq.insertion.ns).toBe(0);
    expect(free.lab.smmu.cmdq.insertion.count).toBeGreaterThan(0);
  });

  it('with a fast SMMU the main queue\'s growth is the insertion contention; with an arbiter the VCMDQs serialise too', async () => {
    const fast = await hostUnmapRun({ seed: 1, threads: 8, unmapsPerThread: PER, mode: 'main', smmuCommandNs: 20 });
    const fastFree = await hostUnmapRun({ seed: 1, threads: 8, unmapsPerThread: PER, mode: 'main', smmuCommandNs: 20, cpuCosts: { atomicNs: 0, lineTransferNs: 0 } });
    expect(fast.nsPerUnmap).toBeGreaterThan(2 * fastFree.nsPerUnmap);
    const par = await hostUnmapRun({ seed: 1, threads: 8, unmapsPerThread: PER, mode: 'vcmdq' });
    const arb = await hostUnmapRun({ seed: 1, threads: 8, unmapsPerThread: PER, mode: 'vcmdq', vcmdqService: 'arbiter' });
    expect(arb.nsPerUnmap).toBeGreaterThan(2 * par.nsPerUnmap);
  });
});
