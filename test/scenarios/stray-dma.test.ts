/**
 * The stray-DMA monitor on its own: which writes count as stray (owner and DMA API mappings), what a
 * record says, and that the trace stream carries each one.
 */
import { describe, expect, it } from 'vitest';
import { dmaMapSingle, dmaUnmapSingle, dmaUsesIommu } from '../../core/dma-mapping.js';
import { findTestEngine } from '../../drivers/misc/dma-test-engine.js';
import type { TraceEvent } from '../../hw/trace.js';
import { boot, run, virtMachine } from '../../scenarios/lib/lab.js';
import { StrayDmaMonitor } from '../../scenarios/lib/stray-dma.js';

/** The engine with no IOMMU (DMA address = physical address) and one behind the SMMUv3. */
const DIRECT = '/dma@c040000';
const BEHIND_SMMU = '/dma@c010000';

describe('stray-DMA monitor', () => {
  it('a write into a frame the kernel owns is stray, with its exact address, length, owner and kernel', async () => {
    const machine = virtMachine({ seed: 2 });
    const kernel = await boot(machine);
    const monitor = new StrayDmaMonitor(machine);
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
    const machine = virtMachine({ seed: 3 });
    const kernel = await boot(machine);
    const monitor = new StrayDmaMonitor(machine);

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
    const e = strayEvents[0]!;
    expect(e).toMatchObject({ kind: 'custom', track: DIRECT, time: monitor.strays[0]!.time });
    expect(e.kind === 'custom' ? e.args : null).toEqual({ ...monitor.strays[0]!, owner: 'page-table:somebody', pa: victim, len: 0x200 });
    monitor.dispose();
  });

  it('stops watching once disposed', async () => {
    const machine = virtMachine({ seed: 5 });
    const kernel = await boot(machine);
    const monitor = new StrayDmaMonitor(machine);
    monitor.dispose();
    const engine = findTestEngine(kernel.core, DIRECT);
    const victim = kernel.alloc.allocPages(0, { kind: 'kernel', what: 'victim' });
    await run(machine, engine.run({ op: 'fill', dst: victim, len: 0x100, byte: 7 }));
    expect(monitor.strays).toEqual([]);
  });
});
