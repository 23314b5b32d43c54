/**
 * The DMA API through the real SMMUs of the `virt` machine, not the mock: a DMA test engine behind the
 * SMMUv3 (/dma@c010000, StreamID 0x101) and one behind the MMU-500 (/dma@c030000, StreamID 0x401)
 * read and write through mappings made with dma_map_single, dma_map_sg and dma_alloc_coherent; the
 * bytes a master writes land in the buffer the CPU reads, and the bytes the CPU wrote are what the
 * master reads. The IOVAs are not the physical addresses, so the SMMU translated every transaction.
 * After a strict unmap the IOVA faults at the SMMU; after a lazy unmap the stale IOTLB entry lives
 * until the flush queue's batched flush, then the IOVA faults. Default domain types follow the
 * command line (iommu.strict, iommu.passthrough). Stray-DMA detection counts a mapped buffer as the
 * master's own, and a write through a stale IOTLB entry after the unmap as stray.
 */
import { describe, expect, it } from 'vitest';
import { dmaCookieOf, IOVA_DEFAULT_FQ_TIMEOUT_NS } from '../../core/dma-iommu.js';
import {
  dmaAllocCoherent,
  dmaFreeCoherent,
  dmaMapSg,
  dmaMapSingle,
  dmaUnmapSg,
  dmaUnmapSingle,
  dmaUsesIommu,
  type DmaSgEntry,
} from '../../core/dma-mapping.js';
import { IOMMU_DOMAIN_DMA, IOMMU_DOMAIN_DMA_FQ, IOMMU_DOMAIN_IDENTITY, iommuIovaToPhys } from '../../core/iommu-domain.js';
import { iommuGroupGet } from '../../core/iommu-group.js';
import { findTestEngine, type FrameStatus, type TestEngine, type TestEngineCommand } from '../../drivers/misc/dma-test-engine.js';
import type { Machine } from '../../hw/machine.js';
import type { Kernel } from '../../kernel/kernel.js';
import { boot, run, virtMachine } from '../../scenarios/lib/lab.js';
import { StrayDmaMonitor } from '../../scenarios/lib/stray-dma.js';

const SZ_4K = 0x1000;

/** The engines that cannot stall, one behind each SMMU of `virt`. */
const ENGINES = [
  { smmu: 'SMMUv3', engine: '/dma@c010000', iommu: '/iommu@9050000' },
  { smmu: 'MMU-500', engine: '/dma@c030000', iommu: '/iommu@b000000' },
] as const;

interface Rig {
  machine: Machine;
  kernel: Kernel;
  engine: TestEngine;
}

async function bootVirt(engine: string, bootargs?: string): Promise<Rig> {
  const machine = virtMachine({ seed: 7, bootargs });
  const kernel = await boot(machine);
  return { machine, kernel, engine: findTestEngine(kernel.core, engine) };
}

/** `pages` zeroed pages of kernel memory (not a DMA buffer: only a mapping makes them the device's). */
function kernelPages(r: Rig, pages: number): number {
  const pa = r.kernel.alloc.allocPages(Math.log2(pages), { kind: 'kernel', what: 'dma-api test buffer' });
  r.machine.memory.fill(pa, pages * SZ_4K, 0);
  return pa;
}

/** Run one engine job to its end and return the frame's status, failed or not. */
async function job(r: Rig, cmd: TestEngineCommand): Promise<FrameStatus> {
  const frame = r.engine.start(cmd);
  const st = await run(r.machine, r.engine.wait(frame));
  r.engine.release(frame);
  return st;
}

function pattern(len: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: len }, (_, i) => (i * 13 + seed) & 0xff);
}

function domainOf(r: Rig) {
  return iommuGroupGet(r.engine.dev)!.defaultDomain!;
}

describe.each(ENGINES)('DMA API through the $smmu of virt', ({ engine, iommu }) => {
  it('strict: a master writes through dma_map_single and the bytes land in the buffer the CPU sees', async () => {
    const r = await bootVirt(engine, 'iommu.strict=1');
    const dev = r.engine.dev;
    expect(r.kernel.core.findDevice(iommu)!.status).toBe('bound');
    expect(dmaUsesIommu(dev)).toBe(true);
    expect(domainOf(r).type).toBe(IOMMU_DOMAIN_DMA);

    const dst = kernelPages(r, 2);
    const addr = await run(r.machine, dmaMapSingle(dev, dst + 0x80, 0x1100, 'from-device'));
    // An IOVA from the top of the 32-bit space, not the buffer's physical address.
    expect(addr).not.toBe(dst + 0x80);
    expect(addr % SZ_4K).toBe(0x80);
    expect(iommuIovaToPhys(domainOf(r), addr)).toBe(dst + 0x80);
    const st = await job(r, { op: 'fill', dst: addr, len: 0x1100, byte: 0xc3 });
    expect(st).toMatchObject({ state: 'done', dmaStatus: 'ok', bytesDone: 0x1100 });
    const seen = r.machine.memory.read(dst, 2 * SZ_4K);
    expect(seen[0x7f]).toBe(0);
    expect(seen.subarray(0x80, 0x1180).every((b) => b === 0xc3)).toBe(true);
    expect(seen[0x1180]).toBe(0);

    // The other direction: bytes the CPU put in a to-device buffer are what the master copies.
    const src = kernelPages(r, 1);
    const data = pattern(0x300, 5);
    r.machine.memory.write(src + 0x40, data);
    const srcAddr = await run(r.machine, dmaMapSingle(dev, src + 0x40, 0x300, 'to-device'));
    expect((await job(r, { op: 'copy', src: srcAddr, dst: addr + 0x10, len: 0x300 })).state).toBe('done');
    expect(r.machine.memory.read(dst + 0x90, 0x300)).toEqual(data);
    // A to-device mapping is read-only for the master.
    const ro = await job(r, { op: 'fill', dst: srcAddr, len: 4, byte: 0xee });
    expect([ro.state, ro.faultWrite, ro.faultAddr]).toEqual(['error', true, srcAddr]);
    expect(r.machine.memory.read(src + 0x40, 0x300)).toEqual(data);

    // Strict: once dma_unmap_single returns, the IOVA no longer reaches the buffer.
    await run(r.machine, dmaUnmapSingle(dev, addr, 0x1100, 'from-device'));
    const after = await job(r, { op: 'fill', dst: addr, len: 0x10, byte: 0x11 });
    expect([after.state, after.faultAddr]).toEqual(['error', addr]);
    expect(r.machine.memory.read(dst + 0x80, 0x10).every((b) => b === 0xc3)).toBe(true);
    await run(r.machine, dmaUnmapSingle(dev, srcAddr, 0x300, 'to-device'));
  });

  it('a scatterlist of separate pages is one IOVA range the master fills end to end', async () => {
    const r = await bootVirt(engine, 'iommu.strict=1');
    const dev = r.engine.dev;
    const p = [kernelPages(r, 1), kernelPages(r, 1), kernelPages(r, 1)];
    const sg: DmaSgEntry[] = [
      { pa: p[0], length: SZ_4K, dmaAddress: 0, dmaLength: 0 },
      { pa: p[1], length: SZ_4K, dmaAddress: 0, dmaLength: 0 },
      { pa: p[2] + 0x20, length: 0x200, dmaAddress: 0, dmaLength: 0 },
    ];
    expect(await run(r.machine, dmaMapSg(dev, sg, 'from-device'))).toBe(2);
    expect(sg[0].dmaLength).toBe(2 * SZ_4K);
    expect((await job(r, { op: 'fill', dst: sg[0].dmaAddress, len: 2 * SZ_4K, byte: 0x5a })).state).toBe('done');
    expect((await job(r, { op: 'fill', dst: sg[1].dmaAddress, len: 0x200, byte: 0xa5 })).state).toBe('done');
    expect(r.machine.memory.read(p[0], SZ_4K).every((b) => b === 0x5a)).toBe(true);
    expect(r.machine.memory.read(p[1], SZ_4K).every((b) => b === 0x5a)).toBe(true);
    const last = r.machine.memory.read(p[2], SZ_4K);
    expect([last[0x1f], last[0x20], last[0x21f], last[0x220]]).toEqual([0, 0xa5, 0xa5, 0]);
    await run(r.machine, dmaUnmapSg(dev, sg, 'from-device'));
    const after = await job(r, { op: 'fill', dst: sg[0].dmaAddress, len: 4, byte: 1 });
    expect(after.state).toBe('error');
  });

  it('coherent memory: the master writes through its IOVA, the CPU reads the buffer', async () => {
    const r = await bootVirt(engine);
    const dev = r.engine.dev;
    const c = await run(r.machine, dmaAllocCoherent(dev, 0x2000));
    expect(c.dmaAddr).not.toBe(c.cpuAddr);
    const data = pattern(0x2000, 9);
    r.machine.memory.write(c.cpuAddr, data);
    // The copy reads and writes the buffer only through its IOVA.
    expect((await job(r, { op: 'copy', src: c.dmaAddr, dst: c.dmaAddr + 0x1000, len: 0x800 })).state).toBe('done');
    expect(r.machine.memory.read(c.cpuAddr + 0x1000, 0x800)).toEqual(data.subarray(0, 0x800));
    await run(r.machine, dmaFreeCoherent(dev, 0x2000, c.cpuAddr, c.dmaAddr));
  });

  it('lazy (DMA-FQ, the default): the stale IOTLB entry lives until the flush queue flushes, then the IOVA faults', async () => {
    const r = await bootVirt(engine);
    const dev = r.engine.dev;
    const domain = domainOf(r);
    expect(domain.type).toBe(IOMMU_DOMAIN_DMA_FQ);
    const fq = dmaCookieOf(domain)!.fq!;
    const dst = kernelPages(r, 1);
    const addr = await run(r.machine, dmaMapSingle(dev, dst, SZ_4K, 'from-device'));
    expect((await job(r, { op: 'fill', dst: addr, len: 64, byte: 0x77 })).state).toBe('done');
    expect(r.machine.memory.read(dst, 64).every((b) => b === 0x77)).toBe(true);
    await run(r.machine, dmaUnmapSingle(dev, addr, SZ_4K, 'from-device'));
    expect(fq.pending).toBe(1);
    expect(iommuIovaToPhys(domain, addr)).toBe(0);
    // The page table no longer maps it, but nothing invalidated the IOTLB yet: the master still gets through.
    expect((await job(r, { op: 'fill', dst: addr, len: 64, byte: 0x78 })).state).toBe('done');
    expect(r.machine.memory.read(dst, 1)[0]).toBe(0x78);
    // The IOVA is not reused while it waits for the flush.
    const other = kernelPages(r, 1);
    const next = await run(r.machine, dmaMapSingle(dev, other, SZ_4K, 'from-device'));
    expect(next).not.toBe(addr);
    await r.machine.scheduler.runFor(IOVA_DEFAULT_FQ_TIMEOUT_NS + 1_000_000);
    expect(fq.pending).toBe(0);
    const st = await job(r, { op: 'fill', dst: addr, len: 64, byte: 0x79 });
    expect([st.state, st.faultAddr]).toEqual(['error', addr]);
    expect(r.machine.memory.read(dst, 1)[0]).toBe(0x78);
    await run(r.machine, dmaUnmapSingle(dev, next, SZ_4K, 'from-device'));
  });

  it('iommu.passthrough=1: an IDENTITY default domain, DMA at the physical address', async () => {
    const r = await bootVirt(engine, 'iommu.passthrough=1');
    const dev = r.engine.dev;
    expect(domainOf(r).type).toBe(IOMMU_DOMAIN_IDENTITY);
    expect(dmaUsesIommu(dev)).toBe(false);
    const dst = kernelPages(r, 1);
    const addr = await run(r.machine, dmaMapSingle(dev, dst + 8, 32, 'from-device'));
    expect(addr).toBe(dst + 8);
    expect((await job(r, { op: 'fill', dst: addr, len: 32, byte: 0x3c })).state).toBe('done');
    expect(r.machine.memory.read(dst + 8, 32).every((b) => b === 0x3c)).toBe(true);
    await run(r.machine, dmaUnmapSingle(dev, addr, 32, 'from-device'));
  });

  it('stray-DMA detection counts a mapped kernel buffer as the master\'s own, and the stale lazy write into it after unmap as stray', async () => {
    const r = await bootVirt(engine);
    const monitor = new StrayDmaMonitor(r.machine);
    const dst = kernelPages(r, 1);
    const addr = await run(r.machine, dmaMapSingle(r.engine.dev, dst, SZ_4K, 'from-device'));
    expect((await job(r, { op: 'fill', dst: addr + 0x100, len: 0x40, byte: 1 })).state).toBe('done');
    expect(monitor.strays).toEqual([]);
    await run(r.machine, dmaUnmapSingle(r.engine.dev, addr, SZ_4K, 'from-device'));
    // Before the flush queue flushes, the IOTLB still lets the write through: into memory that is no
    // longer the master's.
    expect((await job(r, { op: 'fill', dst: addr + 0x200, len: 0x40, byte: 2 })).state).toBe('done');
    expect(monitor.strays.map((w) => [w.master, w.pa, w.len, w.owner])).toEqual([[engine, dst + 0x200, 0x40, 'kernel:dma-api test buffer']]);
    monitor.dispose();
  });
});
