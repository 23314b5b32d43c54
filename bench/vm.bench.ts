/**
 * Guest benchmarks: a host kernel on virt, a VM with the SMMUv3's DMA test engine assigned, and a
 * guest kernel over the VMM's vSMMUv3.
 * - vm.guest_unmap_trapped: virtual time of one 4 KiB dma_unmap in the guest (iommu.strict=1: a
 *   TLBI_NH_VA and a CMD_SYNC on the trapped guest command queue, forwarded through iommufd and run by
 *   the host SMMU), one guest thread, default trap costs; µs of virtual time per unmap and sync;
 * - vm.guest_dma_nested: 8-byte DMA reads by the engine at guest IOVAs, each through the nested STE
 *   (guest stage 1 over the host's stage 2), mostly TLB hits; transactions/s of wall time.
 */
import { bootHostAndGuest, guestEngine, measureGuestUnmap } from '../scenarios/lib/vm-lab.js';
import { runIn, V3 } from '../scenarios/smmu-v3-lab.js';
import { throughputAsync, type Bench } from './harness.js';

async function guestUnmapTrapped(): Promise<number> {
  const lab = await bootHostAndGuest({ seed: 1, guestBootargs: 'iommu.strict=1' });
  return (await measureGuestUnmap(lab, 1, 64)).usPerUnmap;
}

async function guestDmaNested(): Promise<number> {
  const lab = await bootHostAndGuest({ seed: 1 });
  const eng = guestEngine(lab);
  const pages = 16;
  const buf = await runIn(lab, eng.allocBuffer(pages * 4096));
  const master = lab.machine.masters.get(V3.engine)!;
  return throughputAsync(async (n) => {
    const reads: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) reads.push(master.read(buf.dma + (i % pages) * 4096 + 8 * (i % 64), 8));
    const done = await runIn(lab, Promise.all(reads));
    if ((done as { status: string }[]).some((c) => c.status !== 'ok')) throw new Error('vm.guest_dma_nested: a transaction failed');
  });
}

export const benches: readonly Bench[] = [
  { name: 'vm.guest_unmap_trapped', unit: 'µs/unmap (virtual)', run: guestUnmapTrapped },
  { name: 'vm.guest_dma_nested', unit: 'transactions/s', run: guestDmaNested },
];
