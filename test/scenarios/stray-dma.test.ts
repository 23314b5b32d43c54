/**
 * The stray-DMA monitor on its own: which writes count as stray (owner, DMA API mappings, iommu_map
 * into an UNMANAGED domain, SVA bonds), what a record says, and that the trace stream carries each one.
 */
import { describe, expect, it } from 'vitest';
import { devPhysIsReachable, dmaMapSingle, dmaUnmapSingle, dmaUsesIommu } from '../../core/dma-mapping.js';
import { findTestEngine } from '../../drivers/misc/dma-test-engine.js';
import type { Machine } from '../../hw/machine.js';
import type { TraceEvent } from '../../hw/trace.js';
import type { Kernel } from '../../kernel/kernel.js';
import { boot, run, virtMachine } from '../../scenarios/lib/lab.js';
import { iommuAttachDevice } from '../../core/iommu-attach.js';
import { iommuAttachDevicePasid } from '../../core/iommu-pasid.js';
import { iommuPagingDomainAlloc } from '../../core/iommu-domain.js';
import { iommuMap, iommuUnmap } from '../../core/iommu-map.js';
import { IOMMU_READ, IOMMU_WRITE } from '../../core/io-pgtable.js';
import { iommuSvaBindDevice, iommuSvaUnbindDevice } from '../../core/iommu-sva.js';
import { iommuDevEnableFeature } from '../../core/iommu.js';
import { PROT_READ, PROT_WRITE } from '../../mm/prot.js';
import { StrayDmaMonitor } from '../../scenarios/lib/stray-dma.js';

/** The engine with no IOMMU (DMA address = physical address) and one behind the SMMUv3. */
const DIRECT = '/dma@c040000';
const BEHIND_SMMU = '/dma@c010000';

/** The virt machine booted with seed `seed`, a stray-DMA monitor watching it. */
async function watchedVirt(seed: number): Promise<{ machine: Machine; kernel: Kernel; monitor: StrayDmaMonitor }> {
  const machine = virtMachine({ seed });
  const kernel = await boot(machine);
  return { machine, kernel, monitor: new StrayDmaMonitor(machine) };
}

describe('stray-DMA monitor', () => {
  it('a write into a frame the kernel owns is stray, with its exact address, length, owner and kernel', async () => {
    const { machine, kernel, monitor } = await watchedVirt(2);
    const engine = findTestEngine(kernel.core, DIRECT);
    const own = await run(machine, engine.allocBuffer(0x1000, 'own'));
    const victim = kernel.alloc.allocPages(1, { kind: 'kernel', what: 'victim' }, { zero: true });
    await run(machine, engine.run({ op: 'fill', dst: own.dma, len: 0x1000, byte: 1 }));
    expect(monitor.strays).toEqual([]); // its own coherent buffer
    const before = machine.scheduler.now;
    await run(machine, engine.run({ op: 'fill', dst: victim + 0x800, len: 0x1000, byte: 2 }));
    // Two transactions (no transaction crosses a 4 KiB line), both into the kernel's order-1 block.
    expect(monitor.strays.map(({ time: _t, ...w }) => w)).toEqual([
      { master: DIRECT, pa: victim + 0x800, len: 0x800, owner: 'kernel:victim', kernel: 0 },
      { master: DIRECT, pa: victim + 0x1000, len: 0x800, owner: 'kernel:victim', kernel: 0 },
    ]);
    for (const w of monitor.strays) expect(w.time).toBeGreaterThan(before);
    expect(machine.memory.read8(victim + 0x800)).toBe(2);
    monitor.dispose();
  });

  it('a frame the DMA API mapped for the master is not stray, directly or through its IOMMU domain', async () => {
    const { machine, kernel, monitor } = await watchedVirt(3);

    // No IOMMU: dma_map_single of a kernel page gives its physical address.
    const direct = findTestEngine(kernel.core, DIRECT);
    const page = kernel.alloc.allocPages(0, { kind: 'kernel', what: 'rx page' }, { zero: true });
    const pdma = await run(machine, dmaMapSingle(direct.dev, page, 0x1000, 'from-device'));
    expect(pdma).toBe(page);
    await run(machine, direct.run({ op: 'fill', dst: pdma, len: 0x1000, byte: 0x11 }));
    expect(monitor.strays).toEqual([]);
    await run(machine, dmaUnmapSingle(direct.dev, pdma, 0x1000, 'from-device'));
    // Unmapped, the same write into the same kernel page is stray again.
    await run(machine, direct.run({ op: 'fill', dst: page, len: 0x100, byte: 0x12 }));
    expect(monitor.strays.map((w) => [w.master, w.pa, w.len, w.owner])).toEqual([[DIRECT, page, 0x100, 'kernel:rx page']]);

    // Behind the SMMUv3: the engine issues an IOVA, its DMA domain translates it onto the kernel page.
    const iommu = findTestEngine(kernel.core, BEHIND_SMMU);
    expect(dmaUsesIommu(iommu.dev)).toBe(true);
    const page2 = kernel.alloc.allocPages(0, { kind: 'kernel', what: 'rx page 2' }, { zero: true });
    const iova = await run(machine, dmaMapSingle(iommu.dev, page2, 0x1000, 'from-device'));
    expect(iova).not.toBe(page2);
    await run(machine, iommu.run({ op: 'fill', dst: iova, len: 0x1000, byte: 0x33 }));
    expect(machine.memory.read8(page2 + 0xfff)).toBe(0x33); // the write landed in the kernel page
    expect(monitor.strays).toHaveLength(1); // still only the direct engine's unmapped write
    // A frame mapped for one master is still stray for another.
    await run(machine, direct.run({ op: 'fill', dst: page2, len: 0x40, byte: 0x44 }));
    expect(monitor.strays.at(-1)).toMatchObject({ master: DIRECT, pa: page2, len: 0x40, owner: 'kernel:rx page 2' });
    monitor.dispose();
  });

  it('a frame iommu_map put in the master\'s UNMANAGED domain (RID or PASID) is not stray; once unmapped, or for another master, it is', async () => {
    const { machine, kernel, monitor } = await watchedVirt(6);
    const smmu = findTestEngine(kernel.core, BEHIND_SMMU);
    const direct = findTestEngine(kernel.core, DIRECT);
    const domain = iommuPagingDomainAlloc(smmu.dev);
    await run(machine, iommuAttachDevice(domain, smmu.dev));
    const pages = [0, 1, 2].map((i) => kernel.alloc.allocPages(0, { kind: 'kernel', what: `vfio page ${i}` }, { zero: true }));
    // Two pages in one iommu_map call, one more on its own.
    expect(pages[1]).toBe(pages[0] + 0x1000);
    await run(machine, iommuMap(domain, 0x5000_0000, pages[0], 0x2000, IOMMU_READ | IOMMU_WRITE));
    await run(machine, iommuMap(domain, 0x6000_0000, pages[2], 0x1000, IOMMU_READ | IOMMU_WRITE));
    await run(machine, smmu.run({ op: 'fill', dst: 0x5000_0000, len: 0x2000, byte: 0x21 }));
    await run(machine, smmu.run({ op: 'fill', dst: 0x6000_0000, len: 0x100, byte: 0x22 }));
    expect(machine.memory.read8(pages[1] + 0xfff)).toBe(0x21);
    expect(monitor.strays).toEqual([]);
    // The same frame written by another master is stray.
    await run(machine, direct.run({ op: 'fill', dst: pages[2], len: 0x40, byte: 0x23 }));
    expect(monitor.strays.map((w) => [w.master, w.pa, w.len, w.owner])).toEqual([[DIRECT, pages[2], 0x40, 'kernel:vfio page 2']]);
    // Unmap the second page of the first range only: the first stays reachable, the second does not.
    expect(await run(machine, iommuUnmap(domain, 0x5000_1000, 0x1000))).toBe(0x1000);
    expect(pages.map((pa) => devPhysIsReachable(smmu.dev, pa))).toEqual([true, false, true]);
    await run(machine, smmu.run({ op: 'fill', dst: 0x5000_0000, len: 0x1000, byte: 0x24 }));
    expect(monitor.strays).toHaveLength(1);
    // Mapped again at another IOVA, and unmapped again.
    await run(machine, iommuMap(domain, 0x7000_0000, pages[1], 0x1000, IOMMU_READ | IOMMU_WRITE));
    expect(devPhysIsReachable(smmu.dev, pages[1])).toBe(true);
    await run(machine, iommuUnmap(domain, 0x7000_0000, 0x1000));
    expect(devPhysIsReachable(smmu.dev, pages[1])).toBe(false);
    // Nor is any of it reachable for the other master.
    expect(pages.map((pa) => devPhysIsReachable(direct.dev, pa))).toEqual([false, false, false]);

    // A PASID of the same master with its own UNMANAGED domain.
    const stall = findTestEngine(kernel.core, '/dma@c000000');
    const pdomain = iommuPagingDomainAlloc(stall.dev);
    await run(machine, iommuAttachDevicePasid(pdomain, stall.dev, 3));
    const ppage = kernel.alloc.allocPages(0, { kind: 'kernel', what: 'pasid page' }, { zero: true });
    await run(machine, iommuMap(pdomain, 0x3000_0000, ppage, 0x1000, IOMMU_READ | IOMMU_WRITE));
    const f = stall.start({ op: 'fill', dst: 0x3000_0000, len: 0x80, byte: 0x31 }, { ssid: 3 });
    const st = await run(machine, stall.wait(f));
    stall.release(f);
    expect(st.state).toBe('done');
    expect(machine.memory.read8(ppage)).toBe(0x31);
    expect(monitor.strays).toHaveLength(1);
    monitor.dispose();
  });

  it('a page of a process bound to the master (SVA) is not stray; written by another master it is; unmapped or unbound, it is no longer reachable', async () => {
    const { machine, kernel, monitor } = await watchedVirt(7);
    const engine = findTestEngine(kernel.core, '/dma@c000000');
    const direct = findTestEngine(kernel.core, DIRECT);
    await run(machine, iommuDevEnableFeature(engine.dev, 'IOPF'));
    await run(machine, iommuDevEnableFeature(engine.dev, 'SVA'));
    const proc = kernel.processes.spawn();
    const mm = proc.mm;
    const va = mm.mmap(0x2000, PROT_READ | PROT_WRITE);
    mm.write(va, new Uint8Array(0x2000).fill(1));
    const bond = await run(machine, iommuSvaBindDevice(engine.dev, mm));
    const f = engine.start({ op: 'fill', dst: va, len: 0x2000, byte: 0x41 }, { ssid: bond.pasid });
    const st = await run(machine, engine.wait(f));
    engine.release(f);
    expect(st.state).toBe('done');
    expect([...mm.read(va + 0x1ff0, 2)]).toEqual([0x41, 0x41]);
    expect(monitor.strays).toEqual([]);
    // The same process page written by a master the process is not bound to: stray.
    const pa = mm.translate(va)!;
    await run(machine, direct.run({ op: 'fill', dst: pa, len: 0x20, byte: 0x42 }));
    expect(monitor.strays.map((w) => [w.master, w.pa, w.len, w.owner])).toEqual([[DIRECT, pa, 0x20, `process:${mm.pid}`]]);
    expect(devPhysIsReachable(engine.dev, pa)).toBe(true);
    // Once the process unmapped it, the page is no longer the bond's (whoever owns the frame now).
    const pa2 = mm.translate(va + 0x1000)!;
    await run(machine, mm.munmap(va + 0x1000, 0x1000));
    expect(devPhysIsReachable(engine.dev, pa2)).toBe(false);
    expect(devPhysIsReachable(engine.dev, pa)).toBe(true);
    await run(machine, iommuSvaUnbindDevice(bond));
    expect(devPhysIsReachable(engine.dev, pa)).toBe(false);
    monitor.dispose();
  });

  it('each stray write is on the trace stream as a "stray-write" event carrying the record', async () => {
    const machine = virtMachine({ seed: 4 });
    const kernel = await boot(machine);
    const events: TraceEvent[] = [];
    const stop = machine.trace.subscribe((e) => events.push(e));
    const monitor = new StrayDmaMonitor(machine);
    const engine = findTestEngine(kernel.core, DIRECT);
    const victim = kernel.alloc.allocPages(0, { kind: 'page-table', what: 'somebody' }, { zero: true });
    await run(machine, engine.run({ op: 'fill', dst: victim, len: 0x200, byte: 7 }));
    stop();
    const strayEvents = events.filter((e) => e.kind === 'custom' && e.name === 'stray-write');
    expect(monitor.strays).toHaveLength(1);
    expect(strayEvents).toHaveLength(1);
    const e = strayEvents[0];
    expect(e).toMatchObject({ kind: 'custom', track: DIRECT, time: monitor.strays[0].time });
    expect(e.kind === 'custom' ? e.args : null).toEqual({ ...monitor.strays[0], owner: 'page-table:somebody', pa: victim, len: 0x200 });
    monitor.dispose();
  });

  it('stops watching once disposed', async () => {
    const { machine, kernel, monitor } = await watchedVirt(5);
    monitor.dispose();
    const engine = findTestEngine(kernel.core, DIRECT);
    const victim = kernel.alloc.allocPages(0, { kind: 'kernel', what: 'victim' });
    await run(machine, engine.run({ op: 'fill', dst: victim, len: 0x100, byte: 7 }));
    expect(monitor.strays).toEqual([]);
  });
});
