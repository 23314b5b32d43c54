/**
 * stray-dma-mappings: the stray-DMA monitor knows every mapping the kernel made for a master, not
 * only the DMA API's. A VFIO-style user maps a kernel page into a master's UNMANAGED domain with
 * iommu_map, and a process is bound to another master (SVA): writes through those mappings are not
 * stray. The same frames written by a master they were not mapped for are; a page the user unmapped
 * is no longer the master's.
 */
import { iommuAttachDevice } from '../core/iommu-attach.js';
import { devPhysIsReachable } from '../core/dma-mapping.js';
import { iommuPagingDomainAlloc } from '../core/iommu-domain.js';
import { iommuMap, iommuUnmap } from '../core/iommu-map.js';
import { IOMMU_READ, IOMMU_WRITE } from '../core/io-pgtable.js';
import { iommuSvaBindDevice, iommuSvaUnbindDevice } from '../core/iommu-sva.js';
import { iommuDevEnableFeature } from '../core/iommu.js';
import { findTestEngine } from '../drivers/misc/dma-test-engine.js';
import { PROT_READ, PROT_WRITE } from '../mm/prot.js';
import { boot, run, virtMachine } from './lib/lab.js';
import { StrayDmaMonitor } from './lib/stray-dma.js';
import { Checks, type Scenario } from './scenario.js';

/** Behind the SMMUv3: a plain engine, and one that can stall and has 8 PASID bits; and one with no IOMMU. */
const VFIO_ENGINE = '/dma@c010000';
const SVA_ENGINE = '/dma@c000000';
const NO_IOMMU = '/dma@c040000';
const IOVA = 0x5000_0000;

export const scenario: Scenario = {
  name: 'stray-dma-mappings',
  shows: 'writes through iommu_map (UNMANAGED domain) and SVA are not stray; the same frames written by another master are',
  async run(ctx) {
    const c = new Checks();
    const machine = virtMachine({ seed: ctx.seed });
    const kernel = await boot(machine);
    const monitor = new StrayDmaMonitor(machine);
    const vfio = findTestEngine(kernel.core, VFIO_ENGINE);
    const sva = findTestEngine(kernel.core, SVA_ENGINE);
    const direct = findTestEngine(kernel.core, NO_IOMMU);

    // A VFIO-style user: its own UNMANAGED domain, a kernel page mapped with iommu_map.
    const domain = iommuPagingDomainAlloc(vfio.dev);
    await run(machine, iommuAttachDevice(domain, vfio.dev));
    const page = kernel.alloc.allocPages(0, { kind: 'kernel', what: 'vfio buffer' }, { zero: true });
    await run(machine, iommuMap(domain, IOVA, page, 0x1000, IOMMU_READ | IOMMU_WRITE));
    const w1 = await run(machine, vfio.run({ op: 'fill', dst: IOVA, len: 0x1000, byte: 0x11 }));
    c.equal('the write through iommu_map lands', [w1.state, machine.memory.read8(page + 0xfff)], ['done', 0x11]);
    c.equal('…and is not stray', monitor.strays.length, 0);

    // SVA: a process bound to the other engine, which writes the process's pages through its PASID.
    await run(machine, iommuDevEnableFeature(sva.dev, 'IOPF'));
    await run(machine, iommuDevEnableFeature(sva.dev, 'SVA'));
    const proc = kernel.processes.spawn();
    const va = proc.mm.mmap(0x2000, PROT_READ | PROT_WRITE);
    proc.mm.write(va, new Uint8Array(0x2000).fill(1));
    const bond = await run(machine, iommuSvaBindDevice(sva.dev, proc.mm));
    const f = sva.start({ op: 'fill', dst: va, len: 0x2000, byte: 0x22 }, { ssid: bond.pasid });
    const w2 = await run(machine, sva.wait(f));
    sva.release(f);
    c.equal('the write through the SVA bond lands in the process', [w2.state, proc.mm.read(va + 0x1fff, 1)[0]], ['done', 0x22]);
    c.equal('…and is not stray', monitor.strays.length, 0);

    // The same frames, written by a master they were not mapped for.
    const procPage = proc.mm.translate(va)!;
    await run(machine, direct.run({ op: 'fill', dst: page, len: 0x40, byte: 0x33 }));
    await run(machine, direct.run({ op: 'fill', dst: procPage, len: 0x40, byte: 0x44 }));
    c.equal(
      'another master writing them strays, named with their owners',
      monitor.strays.map((w) => [w.master, w.pa, w.owner]),
      [
        [NO_IOMMU, page, 'kernel:vfio buffer'],
        [NO_IOMMU, procPage, `process:${proc.pid}`],
      ],
    );

    // Unmapped and unbound: no longer the masters'.
    await run(machine, iommuUnmap(domain, IOVA, 0x1000));
    await run(machine, iommuSvaUnbindDevice(bond));
    c.equal('after unmap and unbind the frames are nobody\'s mappings', [devPhysIsReachable(vfio.dev, page), devPhysIsReachable(sva.dev, procPage)], [false, false]);
    monitor.dispose();
    return c.result({ 'stray writes': monitor.strays.length, 'SVA PASID': bond.pasid });
  },
};
