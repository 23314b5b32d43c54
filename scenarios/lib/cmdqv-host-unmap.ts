/**
 * The host-side CMDQV experiment: N kernel threads, one per CPU, each mapping and unmapping a 4 KiB
 * page of one UNMANAGED domain (strict: every unmap waits for its TLBI + CMD_SYNC), with the SMMU's
 * main queue only (arm-smmu-v3.bypass_vcmdq=1) or with VINTF0's VCMDQs (8 per VINTF here, so thread
 * i has VCMDQ i to itself up to 8 threads).
 *
 * Measured: virtual time per unmap (from the call to its return, averaged over all threads' unmaps),
 * the makespan, and how the commands spread over the queues. What shapes it is the mechanism, with
 * these inputs (defaults in scenarios/cmdqv-lab.ts, each settable):
 * - the SMMU consumes each queue in order at `timing.commandNs` per command (Grace: 200 ns), the
 *   VCMDQs in parallel with each other and with the main queue (CMDQV option `vcmdqService`:
 *   'parallel', or 'arbiter' for one command processor serving them all in turn); a CMD_SYNC
 *   completes once every earlier command of its own queue is consumed, so on the main queue a
 *   CPU's sync also waits for the other CPUs' commands ahead of it;
 * - the kernel's insertion into a queue (drivers/arm-smmu-v3/arm-smmu-v3-cmdq.ts, `insertionEnd`)
 *   costs the CPU `cpuCosts.atomicNs`, plus 4 cache-line transfers of `cpuCosts.lineTransferNs` when
 *   the previous insertion came from another CPU, and overlapping insertions serialise: on the
 *   main queue N CPUs contend, on a VCMDQ per CPU nobody does;
 * - a CMD_SYNC on the main queue completes by the SMMU's MSI write into the entry, which wakes the
 *   waiter (the wfe monitor); on a VCMDQ it is CS=NONE and busy-polled on CONS (cpu_relax spins of
 *   CMDQ_POLL_SPIN_NS, then 1, 2, 4 … µs sleeps, as queue_poll() does).
 * Not modelled: the CPU's own work in the unmap (page-table update: no virtual time), so the figures
 * are the invalidation's share only.
 */
import { iommuMap, iommuUnmap } from '../../core/iommu-map.js';
import { IOMMU_READ, IOMMU_WRITE } from '../../core/io-pgtable.js';
import type { CpuCosts } from '../../hw/cpu-port.js';
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
export interface HostUnmapOptions {
  seed: number;
  threads: number;
  mode: 'main' | 'vcmdq';
  /** Override the Grace CPU costs (scenarios/cmdqv-lab.ts GRACE_CPU_COSTS). */
  cpuCosts?: Partial<CpuCosts>;
  /** Override the Grace SMMU's per-command cost (GRACE_SMMU_COMMAND_NS). */
  smmuCommandNs?: number;
  /** How the SMMU serves the VCMDQs (default 'parallel'). */
  vcmdqService?: 'parallel' | 'arbiter';
}

/** LVCMDQs per VINTF in this experiment: 4 VINTFs of 8 (PARAM.NUM_VCMDQ_LOG2 = 5). */
export const HOST_UNMAP_VCMDQS_LOG2 = 5;

export async function prepareHostUnmap(opts: HostUnmapOptions): Promise<HostUnmapBench> {
  const lab = await bootCmdqv({
    seed: opts.seed,
    bootargs: opts.mode === 'main' ? 'arm-smmu-v3.bypass_vcmdq=1' : undefined,
    cmdqv: { vcmdqsLog2: HOST_UNMAP_VCMDQS_LOG2, ...(opts.vcmdqService ? { vcmdqService: opts.vcmdqService } : {}) },
    ...(opts.smmuCommandNs !== undefined ? { smmu: { timing: { commandNs: opts.smmuCommandNs } } } : {}),
    ...(opts.cpuCosts ? { cpuCosts: opts.cpuCosts } : {}),
  });
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
      const d = { commands: q.commands - before[i].commands, syncs: q.syncs - before[i].syncs };
      if (d.commands > 0) perQueue[q.queue] = d;
      commands += d.commands;
    });
    return { threads: opts.threads, mode: opts.mode, unmaps, nsPerUnmap: unmapNs / unmaps, makespanNs, perQueue, commands };
  };
  return { lab, run };
}

export async function hostUnmapRun(opts: HostUnmapOptions & { unmapsPerThread: number }): Promise<HostUnmapResult> {
  const b = await prepareHostUnmap(opts);
  return { ...(await b.run(opts.unmapsPerThread)), lab: b.lab };
}
