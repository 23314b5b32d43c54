/**
 * iopf-smmu-v2-stall: I/O page faults for a master with faults but no PASIDs (the common fault
 * workqueue of the 2017 stall thread). The stall-capable engine behind the MMU-500 gets an UNMANAGED
 * domain whose I/O page-fault handler is a user-facing fault queue (iommufd style) and joins the
 * IOPF queue. It copies between two buffers of a process at their process VAs (IOVA = VA), none of
 * them mapped in the IOMMU yet: each page's access stalls the context bank, the driver reports a page
 * request with no PASID (a group of one, the bank as its index), the IOPF queue hands it to the
 * domain's handler, user space (a VMM) reads the record, faults the page in the process, maps it at
 * the same IOVA and writes a SUCCESS response, and the driver writes RESUME retry. The CPU reads the
 * device's bytes through the process VA.
 *
 * Also: an access outside every VMA is answered INVALID and the RESUME terminates it; nothing stays
 * stalled.
 */
import { iommuAttachDevice } from '../core/iommu-attach.js';
import { iommuPagingDomainAlloc } from '../core/iommu-domain.js';
import { iommuUserFaultQueueForDomain } from '../core/iommu-fault-legacy.js';
import { IOMMU_FAULT_PERM_WRITE } from '../core/iommu-fault-types.js';
import { iommuMap } from '../core/iommu-map.js';
import { devFaultParam } from '../core/io-pgfault.js';
import { IOMMU_READ, IOMMU_WRITE } from '../core/io-pgtable.js';
import { iommuDevEnableFeature } from '../core/iommu.js';
import { armSmmuOfMaster } from '../drivers/arm-smmu/arm-smmu.js';
import { armSmmuDomainContextBank } from '../drivers/arm-smmu/arm-smmu-domain.js';
import { armSmmuFaultStats } from '../drivers/arm-smmu/arm-smmu-fault.js';
import { findTestEngine } from '../drivers/misc/dma-test-engine.js';
import type { SmmuV2 } from '../hw/smmu-v2/smmu-v2.js';
import { handleMmFault } from '../mm/fault.js';
import { PROT_READ, PROT_WRITE } from '../mm/prot.js';
import { boot, run, virtMachine } from './lib/lab.js';
import { Checks, type Scenario } from './scenario.js';
import { PAGE, serveFaultQueue, STALL_ENGINE_V2, type UserFaultRecord } from './sva-lab.js';

const MMU500 = '/iommu@b000000';
const PAGES = 4;
const SRC = 0x1000_0000;
const DST = 0x2000_0000;
const OUTSIDE = 0x3000_0000;

export const scenario: Scenario = {
  name: 'iopf-smmu-v2-stall',
  shows: 'IOPF without PASIDs: MMU-500 stalls go through the IOPF queue to a user fault queue that maps process pages; RESUME retries',
  async run(ctx) {
    const machine = virtMachine({ seed: ctx.seed });
    const c = new Checks();
    const kernel = await boot(machine);
    const model = machine.iommus.get(MMU500)?.instance?.mmio[0]?.device as SmmuV2 | undefined;
    if (!model) throw new Error(`${MMU500} is not modelled`);
    const dev = kernel.core.findDevice(STALL_ENGINE_V2)!;
    const smmu = armSmmuOfMaster(dev)!;
    const domain = iommuPagingDomainAlloc(dev);
    await run(machine, iommuAttachDevice(domain, dev));
    await run(machine, iommuDevEnableFeature(dev, 'IOPF'));
    c.ok('the master is on an IOPF queue', devFaultParam(dev)?.queue !== null);
    const cb = armSmmuDomainContextBank(domain);
    const queue = iommuUserFaultQueueForDomain(domain);

    const proc = kernel.processes.spawn();
    const mm = proc.mm;
    const src = mm.mmap(PAGES * PAGE, PROT_READ, { addr: SRC, fixed: true });
    const dst = mm.mmap(PAGES * PAGE, PROT_READ | PROT_WRITE, { addr: DST, fixed: true });
    const bytes = Uint8Array.from({ length: PAGES * PAGE }, (_, i) => (i * 13 + 5) & 0xff);
    // The CPU fills the source (read-only for the device: the VMA is made read-only after).
    await run(machine, mm.mprotect(src, PAGES * PAGE, PROT_READ | PROT_WRITE));
    mm.write(src, bytes);
    await run(machine, mm.mprotect(src, PAGES * PAGE, PROT_READ));

    // The VMM: fault the page in the process, map it at the same IOVA with the VMA's rights.
    const vmm = serveFaultQueue(queue, async (rec: UserFaultRecord) => {
      const write = (rec.perm & IOMMU_FAULT_PERM_WRITE) !== 0;
      const r = handleMmFault(mm, rec.addr, write ? 'write' : 'read');
      if (!r.ok) return 1; // INVALID
      const page = rec.addr - (rec.addr % PAGE);
      const vma = mm.findVma(page)!;
      const prot = ((vma.prot & PROT_READ) !== 0 ? IOMMU_READ : 0) | ((vma.prot & PROT_WRITE) !== 0 ? IOMMU_WRITE : 0);
      await iommuMap(domain, page, mm.translate(page)!, PAGE, prot);
      return 0;
    });

    const engine = findTestEngine(kernel.core, STALL_ENGINE_V2);
    const frame = engine.start({ op: 'copy', src, dst, len: PAGES * PAGE });
    const st = await run(machine, engine.wait(frame), 'copy');
    engine.release(frame);
    c.equal('the copy completes', { state: st.state, dma: st.dmaStatus }, { state: 'done', dma: 'ok' });
    const stats = armSmmuFaultStats(smmu);
    c.equal('every page of both buffers stalled once and went to the IOPF core', stats.reportedIopf, 2 * PAGES);
    c.equal('each was resumed with retry', { retried: stats.retried, terminated: stats.terminated }, { retried: 2 * PAGES, terminated: 0 });
    const pageRecs = vmm.seen.filter((r) => r.type === 2);
    // The engine reads a source page, then writes its destination page, and so on.
    c.equal('user space got one record per page', pageRecs.map((r) => r.addr - (r.addr % PAGE)).sort((a, b) => a - b), [
      ...Array.from({ length: PAGES }, (_, i) => SRC + i * PAGE),
      ...Array.from({ length: PAGES }, (_, i) => DST + i * PAGE),
    ]);
    c.ok('each a group of one without a PASID, the context bank as its index', pageRecs.every((r) => r.flags === 2 && r.grpid === cb && r.version === 1 && r.argsz === 72));
    c.equal('the IOPF queue handled each as a group', devFaultParam(dev)!.stats.groups, 2 * PAGES);
    c.ok('the CPU reads the device\'s bytes through the process VA', mm.read(dst, PAGES * PAGE).every((b, i) => b === bytes[i]));
    c.equal('no response was refused', vmm.errors, []);

    // Outside every VMA: INVALID from user space, RESUME terminate.
    const f2 = engine.start({ op: 'fill', dst: OUTSIDE, len: 64, byte: 0x11 });
    const st2 = await run(machine, engine.wait(f2), 'fill outside');
    engine.release(f2);
    c.equal('an access outside any VMA fails in the engine', st2.state, 'error');
    c.equal('the stall was terminated', stats.terminated, 1);
    c.equal('nothing is left stalled', model.stalledCount(cb), 0);
    c.equal('no group is left unanswered', queue.pendingGroups, 0);
    queue.close();
    return c.result({ 'stalled faults': stats.stalls, retried: stats.retried, terminated: stats.terminated, records: vmm.seen.length });
  },
};
