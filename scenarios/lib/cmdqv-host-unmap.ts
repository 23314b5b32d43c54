/**
 * The host-side CMDQV experiment: N kernel threads, one per CPU, each mapping and unmapping a 4 KiB
 * page of one UNMANAGED domain (strict: every unmap waits for its TLBI + CMD_SYNC), with the SMMU's
 * main queue only (arm-smmu-v3.bypass_vcmdq=1) or with VINTF0's VCMDQs (thread i on VCMDQ i mod 4).
 *
 * Measured: virtual time per unmap (from the call to its return, averaged over all threads' unmaps),
 * the makespan, and how the commands spread over the queues. What shapes it is the mechanism only:
 * commands are consumed by one command processor shared by every queue (20 ns per command, the SMMU
 * model's default), a CMD_SYNC on the main queue completes by the SMMU's MSI write into the entry,
 * which wakes the waiter (the wfe monitor), a CMD_SYNC on a VCMDQ is CS=NONE and busy-polled on CONS (cpu_relax spins of
 * CMDQ_POLL_SPIN_NS, then 1, 2, 4 … µs sleeps, as queue_poll() does). Insertion itself costs no
 * virtual time: the kernel's cmpxchg contention on one queue, which is what VCMDQs relieve on real
 * hardware, is not modelled, so the virtual-time figures show only the hardware side of the trade.
 */
import { iommuMap, iommuUnmap } from '../../core/iommu-map.js';
import { IOMMU_READ, IOMMU_WRITE } from '../../core/io-pgtable.js';
import { bootCmdqv, onCpus, queueCounts, type CmdqvLab } from '../cmdqv-lab.js';
import { allocPages, ownDomain, runIn, V3 } from '../smmu-v3-lab.js';

export interface HostUnmapResult {
  threads: number;
  mode: 'main' | 'vcmdq';
  unmaps: number;
  /** Mean virtual time of one unmap call, ns. */
  nsPerUnmap: number;
  /** Virtual time from the first map to the last unmap, ns. */
  makespanNs: number;
  /** Commands consumed during the run, per queue (queues with none left out). */
  perQueue: Record<string, { commands: number; syncs: number }>;
  /** Commands consumed during the run on all queues. */
  commands: number;
  lab: CmdqvLab;
}

export interface HostUnmapBench {
  lab: CmdqvLab;
  /** Run `unmapsPerThread` map+unmap pairs on every thread; returns the figures of this run. */
  run(unmapsPerThread: number): Promise<Omit<HostUnmapResult, 'lab'>>;
}

/** Boot the machine and give each thread its IOVA in one shared UNMANAGED domain. */
export async function prepareHostUnmap(opts: { seed: number; threads: number; mode: 'main' | 'vcmdq' }): Promise<HostUnmapBench> {
  const lab = await bootCmdqv({ seed: opts.seed, bootargs: opts.mode === 'main' ? 'arm-smmu-v3.bypass_vcmdq=1' : undefined });
  const domain = await ownDomain(lab, V3.engine);
  const pa = allocPages(lab, 4096);
  const sched = lab.machine.scheduler;
  const run = async (unmapsPerThread: number): Promise<Omit<HostUnmapResult, 'lab'>> => {
    const before = queueCounts(lab);
    let unmapNs = 0;
    let unmaps = 0;
    const t0 = sched.now;
    await runIn(lab, onCpus(opts.threads, async (cpu) => {
      const iova = 0x6000_0000 + cpu * 0x10_0000;
      for (let i = 0; i < unmapsPerThread; i++) {
        await iommuMap(domain, iova, pa, 4096, IOMMU_READ | IOMMU_WRITE);
        const s = sched.now;
        if ((await iommuUnmap(domain, iova, 4096)) !== 4096) throw new Error(`cpu${cpu}: unmap failed`);
        unmapNs += sched.now - s;
        unmaps++;
      }
    }), 'unmap threads');
    const makespanNs = sched.now - t0;
    const after = queueCounts(lab);
    const perQueue: HostUnmapResult['perQueue'] = {};
    let commands = 0;
    after.forEach((q, i) => {
      const d = { commands: q.commands - before[i]!.commands, syncs: q.syncs - before[i]!.syncs };
      if (d.commands > 0) perQueue[q.queue] = d;
      commands += d.commands;
    });
    return { threads: opts.threads, mode: opts.mode, unmaps, nsPerUnmap: unmapNs / unmaps, makespanNs, perQueue, commands };
  };
  return { lab, run };
}

export async function hostUnmapRun(opts: { seed: number; threads: number; unmapsPerThread: number; mode: 'main' | 'vcmdq' }): Promise<HostUnmapResult> {
  const b = await prepareHostUnmap(opts);
  return { ...(await b.run(opts.unmapsPerThread)), lab: b.lab };
}
