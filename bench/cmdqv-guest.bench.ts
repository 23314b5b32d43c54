/**
 * Grace guest experiment (scenarios/lib/cmdqv-guest-unmap.ts describes the mechanism and what is not
 * modelled): virtual µs per strict 4 KiB dma_unmap + sync in a guest with a VINTF, its invalidations
 * trapped through the vSMMU (the guest's bypass_vcmdq) or on its VCMDQ, 1 and 2 guest CPUs, the
 * experiment's default inputs (GuestExperimentInputs: trap costs, Grace SMMU and CPU costs, the
 * unmap's own CPU work, no IDR3.RIL). BENCH_CMDQV_GUEST_UNMAPS sets the unmaps per
 * thread (default 64). Published (Grace, 4 KiB, 1 thread): 35.7 µs trapped, 5.3 µs VCMDQ.
 */
import type { Bench } from './harness.js';
import { bootCmdqvGuest, measureCmdqvGuestUnmap, type GuestInvalidationPath } from '../scenarios/lib/cmdqv-guest-unmap.js';

const UNMAPS = Number(process.env.BENCH_CMDQV_GUEST_UNMAPS ?? 64);

async function usPerUnmap(path: GuestInvalidationPath, threads: number): Promise<number> {
  const lab = await bootCmdqvGuest({ seed: 1 });
  return (await measureCmdqvGuestUnmap(lab, path, threads, 4096, UNMAPS)).usPerUnmap;
}

export const benches: readonly Bench[] = [
  { name: 'cmdqv.guest_unmap_trapped', unit: 'µs/unmap (virtual)', run: () => usPerUnmap('trapped', 1) },
  { name: 'cmdqv.guest_unmap_vcmdq', unit: 'µs/unmap (virtual)', run: () => usPerUnmap('vcmdq', 1) },
  { name: 'cmdqv.guest_unmap_trapped_2t', unit: 'µs/unmap (virtual)', run: () => usPerUnmap('trapped', 2) },
  { name: 'cmdqv.guest_unmap_vcmdq_2t', unit: 'µs/unmap (virtual)', run: () => usPerUnmap('vcmdq', 2) },
];
