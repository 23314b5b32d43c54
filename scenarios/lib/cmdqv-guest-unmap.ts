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
 * - trapped: the guest's TLBI_NH_VA (one per 4 KiB page, or one range command with RIL) and CMD_SYNC
 *   go to its vSMMU's command queue in guest memory; the CMDQ_PROD write traps (vmExitNs), the VMM
 *   decodes each command (vmmCommandNs), forwards them in one IOMMU_HWPT_INVALIDATE (ioctlNs), the
 *   host SMMU runs them on its main queue, and the guest polls CMDQ_CONS, each read a trap;
 * - vcmdq: the same commands go to the guest's LVCMDQ in guest memory; PROD and CONS are the host
 *   VINTF page0 passed through (no exit), the SMMU consumes the queue directly (VMID and StreamID
 *   replaced by the VINTF), and the CMD_SYNC (CS=NONE) is polled on CONS without exits.
 * Nothing in the figures is fitted: the inputs are the trap costs (vmm/trap-costs.ts) and the SMMU
 * model's per-command cost (`timing.commandNs`, 20 ns by default; `smmuCommandNs` sets it); the ratio
 * comes from which path has exits. Not modelled: the guest CPU's own work in dma_unmap (page-table
 * update, IOVA free: no virtual time), the VMM's serialisation of two vCPUs' exits (QEMU's BQL).
 */
import { runOnCpu } from '../../bus/smp.js';
import { dmaMapSingle, dmaUnmapSingle } from '../../core/dma-mapping.js';
import { findArmSmmuV3 } from '../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { tegra241CmdqvOf, type Tegra241Cmdqv } from '../../drivers/arm-smmu-v3/tegra241-cmdqv.js';
import { orderForSize } from '../../mm/page-alloc.js';
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

/** Boot a Grace host and a guest with a VINTF (strict DMA in the guest). */
export async function bootCmdqvGuest(opts: { seed: number; trapCosts?: Partial<TrapCosts>; smmuCommandNs?: number }): Promise<CmdqvGuestLab> {
  const hostSmmu = opts.smmuCommandNs === undefined ? undefined : { timing: { commandNs: opts.smmuCommandNs } };
  const lab = await bootHostAndGuest({ seed: opts.seed, cmdqv: true, trapCosts: opts.trapCosts, hostSmmu, guestBootargs: 'iommu.strict=1' });
  const guestCmdqv = tegra241CmdqvOf(findArmSmmuV3(lab.guest.core, `/iommu@${GUEST_LAYOUT.vsmmu.toString(16)}`));
  if (!guestCmdqv) throw new Error(`the guest driver did not take its CMDQV (log: ${lab.guest.core.log.lines('warn').map((l) => l.message).join('; ')})`);
  return { ...lab, guestCmdqv };
}

/** `threads` guest threads (thread i on guest CPU i), each `perThread` map + timed unmap of `granule` bytes. */
export async function measureCmdqvGuestUnmap(lab: CmdqvGuestLab, path: GuestInvalidationPath, threads: number, granule: number, perThread: number): Promise<GuestUnmapRun> {
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
