/**
 * The guest experiment the 2021 thread asked for: a guest's strict unmap + sync with trapped
 * invalidation vs its VCMDQ (NVIDIA measured it with `dma_map_benchmark -g <granule> -t <threads>`
 * in a Grace guest, toggling the guest's debugfs `tegra241_cmdqv/bypass_vcmdq`; facts sheet §6).
 *
 * One VM with a guest VINTF, guest kernel booted with iommu.strict=1. Each guest thread (bound to
 * guest CPU i, so the guest driver picks LVCMDQ i) maps and unmaps a buffer of `granule` bytes;
 * the virtual time of each dma_unmap is measured on the guest's clock (which includes the exits it
 * owes). Both paths run on the same VM, switched as NVIDIA did, through the guest driver's
 * `bypassVcmdq` (the debugfs knob):
 * - trapped: the guest's TLBI_NH_VA (one per 4 KiB page) and CMD_SYNC go to its vSMMU's command
 *   queue in guest memory; the CMDQ_PROD write traps, the VMM decodes each command, forwards each
 *   TLBI in its own IOMMU_HWPT_INVALIDATE (as QEMU does), the host kernel issues it with a CMD_SYNC
 *   on its SMMU's main queue and waits, and the guest polls CMDQ_CONS, each read a trap;
 * - vcmdq: the same commands go to the guest's LVCMDQ in guest memory; PROD and CONS are the host
 *   VINTF page0 passed through (no exit), the SMMU consumes the queue directly (VMID and StreamID
 *   replaced by the VINTF), and the CMD_SYNC (CS=NONE) is polled on CONS without exits.
 *
 * The inputs, all settable (`GuestExperimentInputs`), and nothing else shapes the figures:
 * - VM exit + entry per trapped access: `trapCosts.vmExitNs` (vmm/trap-costs.ts, 3.7 µs: KVM/ARM's
 *   measured I/O exit to user space, Dall et al., ISCA 2016);
 * - the VMM's emulation of one guest command: `trapCosts.vmmCommandNs`, and its ioctl into the
 *   host's iommufd: `trapCosts.ioctlNs` (estimates, vmm/trap-costs.ts);
 * - the host's own issue + sync on its main queue: the host kernel's driver on the SMMU model, at
 *   `smmuCommandNs` per command (Grace: 200 ns, the slope of the published VCMDQ column,
 *   scenarios/cmdqv-lab.ts) with the host's insertion cost;
 * - the guest's own insertion into either queue: `cpuCosts` (a vCPU is a physical CPU; Grace
 *   defaults, scenarios/cmdqv-lab.ts);
 * - the guest CPU's own work in one dma_unmap outside the invalidation (IOVA free, PTE clear, the
 *   benchmark loop), which the simulator runs in zero virtual time: `unmapCpuNs`, default 4.9 µs,
 *   the published VCMDQ 4 KiB figure (5.3 µs) less the invalidation this model gives that path
 *   (0.4 µs); it is common to both paths, so it lowers the ratio without shaping it;
 * - the SMMU's IDR3.RIL (`rangeInvalidation`, default false): with it a guest covers a 256 KiB
 *   unmap with one range TLBI; the published figures grow linearly with the pages on both paths
 *   ((18.0 - 5.3) / 63 = 0.2 µs and (187.1 - 35.7) / 63 = 2.4 µs per extra 4 KiB page), which
 *   only one TLBI per page gives, so the experiment's guest is taken to have had none (?).
 * Not modelled: QEMU's BQL beyond the vSMMU's one command consumer (both vCPUs' commands are
 * emulated one at a time), the VMM's guest-memory access costs, and any timing of the real CMDQV
 * beyond per-command consumption.
 */
import { runOnCpu } from '../../bus/smp.js';
import { dmaMapSingle, dmaUnmapSingle } from '../../core/dma-mapping.js';
import { findArmSmmuV3 } from '../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { tegra241CmdqvOf, type Tegra241Cmdqv } from '../../drivers/arm-smmu-v3/tegra241-cmdqv.js';
import { orderForSize } from '../../mm/page-alloc.js';
import type { CpuCosts } from '../../hw/cpu-port.js';
import type { SmmuV3Options } from '../../hw/smmu-v3/options.js';
import type { TrapCosts } from '../../vmm/trap-costs.js';
import { GUEST_LAYOUT } from '../../vmm/vm.js';
import { run } from './lab.js';
import { bootHostAndGuest, guestEngine, type VmLab } from './vm-lab.js';

export type GuestInvalidationPath = 'trapped' | 'vcmdq';

export interface GuestUnmapRun {
  path: GuestInvalidationPath;
  threads: number;
  granule: number;
  unmaps: number;
  /** Mean virtual µs per dma_unmap (invalidation and sync included). */
  usPerUnmap: number;
  /** Per unmap: guest commands the vSMMU decoded, trapped accesses (exits), passed-through accesses, host iommufd invalidation ioctls. */
  trappedCommandsPerUnmap: number;
  exitsPerUnmap: number;
  passthroughPerUnmap: number;
  ioctlsPerUnmap: number;
}

export interface CmdqvGuestLab extends VmLab {
  /** The guest driver's CMDQV state. */
  guestCmdqv: Tegra241Cmdqv;
}

/** The experiment's inputs (see the header for what each stands for and its default). */
export interface GuestExperimentInputs {
  trapCosts?: Partial<TrapCosts>;
  /** The host SMMU's cost per command (default GRACE_SMMU_COMMAND_NS). */
  smmuCommandNs?: number;
  /** The CPUs' costs (default GRACE_CPU_COSTS). */
  cpuCosts?: Partial<CpuCosts>;
  /** IDR3.RIL of the host SMMU, which the vSMMU passes on (default false). */
  rangeInvalidation?: boolean;
}

/** The guest CPU's own work in one dma_unmap outside the invalidation, ns (see the header). */
export const DEFAULT_UNMAP_CPU_NS = 4_900;

/** Boot a Grace host and a guest with a VINTF (strict DMA in the guest). */
export async function bootCmdqvGuest(opts: { seed: number } & GuestExperimentInputs): Promise<CmdqvGuestLab> {
  const hostSmmu: SmmuV3Options = { rangeInvalidation: opts.rangeInvalidation ?? false };
  if (opts.smmuCommandNs !== undefined) hostSmmu.timing = { commandNs: opts.smmuCommandNs };
  const lab = await bootHostAndGuest({ seed: opts.seed, cmdqv: true, trapCosts: opts.trapCosts, hostSmmu, cpuCosts: opts.cpuCosts, guestBootargs: 'iommu.strict=1' });
  const guestCmdqv = tegra241CmdqvOf(findArmSmmuV3(lab.guest.core, `/iommu@${GUEST_LAYOUT.vsmmu.toString(16)}`));
  if (!guestCmdqv) throw new Error(`the guest driver did not take its CMDQV (log: ${lab.guest.core.log.lines('warn').map((l) => l.message).join('; ')})`);
  return { ...lab, guestCmdqv };
}

/** `threads` guest threads (thread i on guest CPU i), each `perThread` map + timed unmap of `granule` bytes. */
export async function measureCmdqvGuestUnmap(
  lab: CmdqvGuestLab,
  path: GuestInvalidationPath,
  threads: number,
  granule: number,
  perThread: number,
  unmapCpuNs: number = DEFAULT_UNMAP_CPU_NS,
): Promise<GuestUnmapRun> {
  const dev = guestEngine(lab).dev;
  const port = lab.vm.port;
  lab.guestCmdqv.bypassVcmdq = path === 'trapped';
  const order = orderForSize(granule);
  const bufs = Array.from({ length: threads }, () => lab.guest.alloc.allocPages(order, { kind: 'dma', device: dev.name }, { zero: true }));
  const vm = lab.vm;
  const before = { traps: vm.stats.mmioTraps, pass: vm.stats.passthrough, ioctls: vm.vsmmu.stats.ioctls, cmds: vm.vsmmu.stats.commands };
  let total = 0;
  let n = 0;
  const worker = (cpu: number): Promise<void> =>
    runOnCpu(cpu, async () => {
      for (let i = 0; i < perThread; i++) {
        const iova = await dmaMapSingle(dev, bufs[cpu], granule, 'bidirectional');
        const t0 = port.now();
        // The unmap's CPU work outside the invalidation (zero virtual time in the simulator).
        if (unmapCpuNs > 0) await port.delay(unmapCpuNs);
        await dmaUnmapSingle(dev, iova, granule, 'bidirectional');
        total += port.now() - t0;
        n++;
      }
    });
  await run(lab.machine, Promise.all(Array.from({ length: threads }, (_, cpu) => worker(cpu))), 'guest unmaps', 60_000_000_000);
  for (const b of bufs) lab.guest.alloc.freePages(b, order);
  return {
    path,
    threads,
    granule,
    unmaps: n,
    usPerUnmap: total / n / 1000,
    trappedCommandsPerUnmap: (vm.vsmmu.stats.commands - before.cmds) / n,
    exitsPerUnmap: (vm.stats.mmioTraps - before.traps) / n,
    passthroughPerUnmap: (vm.stats.passthrough - before.pass) / n,
    ioctlsPerUnmap: (vm.vsmmu.stats.ioctls - before.ioctls) / n,
  };
}
