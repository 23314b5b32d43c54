/**
 * vm-guest-unmap: the guest (iommu.strict=1) maps and unmaps 4 KiB buffers; each unmap is a
 * TLBI_NH_VA and CMD_SYNC on the trapped guest command queue, forwarded as one IOMMU_HWPT_INVALIDATE
 * and run by the host SMMU. Measured in virtual time per unmap from 1 and 2 guest threads, with the
 * default trap costs (vmm/trap-costs.ts). Published, for a Grace guest with trapped invalidation:
 * 35.7 µs (1 thread) and 96.9 µs (2 threads) per 4 KiB unmap.
 */
import { bootHostAndGuest, measureGuestUnmap } from './lib/vm-lab.js';
import { Checks, type Scenario } from './scenario.js';

export const scenario: Scenario = {
  name: 'vm-guest-unmap',
  shows: 'virtual time per 4 KiB guest unmap with trapped invalidation, 1 and 2 guest threads',
  async run(ctx) {
    const c = new Checks();
    const figures: Record<string, number> = {};
    for (const threads of [1, 2]) {
      const lab = await bootHostAndGuest({ seed: ctx.seed, guestBootargs: 'iommu.strict=1' });
      const f = await measureGuestUnmap(lab, threads, 16);
      c.ok(`${threads} thread(s): every unmap invalidated through one ioctl`, f.ioctlsPerUnmap === 1, `saw ${f.ioctlsPerUnmap} ioctls per unmap`);
      c.ok(`${threads} thread(s): the unmap costs at least one VM exit`, f.usPerUnmap >= 3.7, `saw ${f.usPerUnmap} µs`);
      figures[`µs per unmap, ${threads} thread(s)`] = Math.round(f.usPerUnmap * 10) / 10;
    }
    return c.result(figures);
  },
};
