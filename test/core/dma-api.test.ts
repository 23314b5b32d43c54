import { describe, expect, it } from 'vitest';
import { dmaBitMask } from '../../bus/device.js';
import { iommuFwspecAddSpecifier, iommuFwspecInit } from '../../bus/iommu-fwspec.js';
import { DtBuilder } from '../../bus/of/dt-builder.js';
import { dmaCookieOf, IOVA_DEFAULT_FQ_SIZE, IOVA_DEFAULT_FQ_TIMEOUT_NS } from '../../core/dma-iommu.js';
import {
  dmaAllocCoherent,
  dmaFreeCoherent,
  dmaMappings,
  dmaMapSg,
  dmaMapSingle,
  dmaPhysIsMapped,
  dmaSetMask,
  dmaSetMaskAndCoherent,
  dmaSyncSingleForCpu,
  dmaSyncSingleForDevice,
  dmaUnmapSg,
  dmaUnmapSingle,
  dmaUsesIommu,
  type DmaSgEntry,
} from '../../core/dma-mapping.js';
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE } from '../../core/io-pgtable.js';
import { iommuIovaToPhys } from '../../core/iommu-domain.js';
import { iommuGroupGet } from '../../core/iommu-group.js';
import type { IommuResvRegion } from '../../core/iommu-ops.js';
import { compileStage1, decodeAddressSize, decodeTG0 } from '../../hw/walker/config.js';
import { ACCESS_WRITE, WalkResult } from '../../hw/walker/result.js';
import { TranslationTableWalker } from '../../hw/walker/walker.js';
import type { PhysicalMemory } from '../../hw/memory.js';
import { fakePciFunction, fakePciHost } from './kernel-rig.js';
import type { MockDomain } from './mock-iommu.js';
import { mockRig } from './mock-rig.js';
import { expectErrno } from '../lib/errno.js';

const DEV = 'dev@1';
const DIRECT = 'direct@2';
const SZ_4K = 0x1000;

async function setup(opts: { strict?: boolean; passthrough?: boolean; resv?: IommuResvRegion[] } = {}) {
  const s = await mockRig({
    masters: [{ name: DEV, ids: [[1]], props: { 'dma-coherent': true } }, { name: DIRECT }],
    kernel: { strict: opts.strict ?? false, passthrough: opts.passthrough ?? false },
    mock: { resvRegions: opts.resv ? () => opts.resv! : undefined },
  });
  const dev = s.dev(DEV);
  const dom = iommuGroupGet(dev)!.defaultDomain as MockDomain;
  s.mock.calls.length = 0;
  const buffer = (pages: number): number => s.k.alloc.allocPages(Math.log2(pages), { kind: 'kernel', what: 'test buffer' });
  return { ...s, dev, dom, direct: s.dev(DIRECT), buffer };
}

/** A master writing through its IOMMU: the hardware walker resolves every page of the transfer. */
function deviceWrite(ram: PhysicalMemory, dom: MockDomain, iova: number, data: Uint8Array): void {
  const s1 = dom.pgtable.armLpaeS1Cfg!;
  const cfg = compileStage1({ granule: decodeTG0(s1.tcr.tg)!, inputSize: 64 - s1.tcr.tsz, outputSize: decodeAddressSize(s1.tcr.ips)!, tableBase: s1.ttbr });
  const walker = new TranslationTableWalker(ram);
  const out = new WalkResult();
  for (let i = 0; i < data.length; ) {
    const va = iova + i;
    if (!walker.walkStage1(cfg, va, ACCESS_WRITE, out)) throw new Error(`${out.fault} fault at 0x${va.toString(16)}`);
    const chunk = Math.min(data.length - i, SZ_4K - (va % SZ_4K));
    ram.write(out.pa, data.subarray(i, i + chunk));
    i += chunk;
  }
}

function pattern(len: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: len }, (_, i) => (i * 31 + seed) & 0xff);
}

describe('DMA API through a DMA domain', () => {
  it('maps a buffer so that a device write through the IOVA lands in it (strict)', async () => {
    const { k, mock, dev, dom, buffer } = await setup({ strict: true });
    expect(dmaUsesIommu(dev)).toBe(true);
    const buf = buffer(2);
    const addr = await k.run(dmaMapSingle(dev, buf + 0x123, 0x1800, 'bidirectional'));
    // Top-down below the 32-bit mask, the buffer's offset into its page kept.
    expect(addr).toBe(0xffff_e123);
    expect(mock.callsOf('map').map((c) => [c.iova, c.paddr, c.pgsize, c.pgcount, c.prot])).toEqual([
      [0xffff_e000, buf, SZ_4K, 2, IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE],
    ]);
    expect(iommuIovaToPhys(dom, addr)).toBe(buf + 0x123);
    const data = pattern(0x1800, 7);
    deviceWrite(k.memory, dom, addr, data);
    expect(k.memory.read(buf + 0x123, 0x1800)).toEqual(data);

    expect(dmaPhysIsMapped(dev, buf)).toBe(true);
    expect(dmaPhysIsMapped(dev, buf + 0x1fff)).toBe(true);
    expect(dmaPhysIsMapped(dev, buf + 0x2000)).toBe(false);
    expect(dmaMappings(dev).map((m) => [m.dmaAddr, m.size, m.phys, m.spanDma, m.spanSize])).toEqual([[addr, 0x1800, buf + 0x123, 0xffff_e000, 0x2000]]);

    await k.run(dmaUnmapSingle(dev, addr, 0x1800, 'bidirectional'));
    expect(mock.callsOf('iotlb-sync').map((c) => [c.start, c.end])).toEqual([[0xffff_e000, 0xffff_ffff]]);
    expect(mock.callsOf('flush-all')).toEqual([]);
    expect(() => deviceWrite(k.memory, dom, addr, data)).toThrow(/translation fault/);
    expect(dmaMappings(dev)).toEqual([]);
    expect(dmaPhysIsMapped(dev, buf)).toBe(false);
  });

  it('strict mode invalidates on every unmap and reuses the IOVA at once', async () => {
    const { k, mock, dev, buffer } = await setup({ strict: true });
    const buf = buffer(1);
    const seen = new Set<number>();
    for (let i = 0; i < 10; i++) {
      const addr = await k.run(dmaMapSingle(dev, buf, SZ_4K, 'to-device'));
      seen.add(addr);
      await k.run(dmaUnmapSingle(dev, addr, SZ_4K, 'to-device'));
    }
    expect([...seen]).toEqual([0xffff_f000]);
    expect(mock.callsOf('iotlb-sync')).toHaveLength(10);
    expect(mock.callsOf('flush-all')).toHaveLength(0);
    expect(mock.callsOf('map')[0].prot).toBe(IOMMU_READ | IOMMU_CACHE);
  });

  it('lazy mode queues unmapped IOVAs, never reusing one before the batched flush', async () => {
    const { k, mock, dev, dom, buffer } = await setup();
    const fq = dmaCookieOf(dom)!.fq!;
    const buf = buffer(1);
    const capacity = IOVA_DEFAULT_FQ_SIZE - 1;
    const iovas: number[] = [];
    for (let i = 0; i < capacity; i++) {
      const addr = await k.run(dmaMapSingle(dev, buf, SZ_4K, 'from-device'));
      iovas.push(addr);
      await k.run(dmaUnmapSingle(dev, addr, SZ_4K, 'from-device'));
    }
    expect(new Set(iovas).size).toBe(capacity);
    expect(fq.pending).toBe(capacity);
    expect(mock.callsOf('iotlb-sync')).toHaveLength(0);
    expect(mock.callsOf('flush-all')).toHaveLength(0);
    // The page tables are already clear; only the IOTLB may still hold the old entries.
    expect(iommuIovaToPhys(dom, iovas[0])).toBe(0);

    const last = await k.run(dmaMapSingle(dev, buf, SZ_4K, 'from-device'));
    expect(iovas).not.toContain(last);
    await k.run(dmaUnmapSingle(dev, last, SZ_4K, 'from-device'));
    // The queue was full: one flush of everything, then the old IOVAs are free again.
    expect(mock.callsOf('flush-all')).toHaveLength(1);
    expect(fq.pending).toBe(1);
    const again = await k.run(dmaMapSingle(dev, buf, SZ_4K, 'from-device'));
    expect(iovas).toContain(again);
  });

  it('lazy mode flushes IOVA_DEFAULT_FQ_TIMEOUT after the first queued unmap (virtual time)', async () => {
    const { k, mock, dev, dom, buffer } = await setup();
    const fq = dmaCookieOf(dom)!.fq!;
    const buf = buffer(1);
    for (let i = 0; i < 3; i++) {
      const addr = await dmaMapSingle(dev, buf, SZ_4K, 'bidirectional');
      await dmaUnmapSingle(dev, addr, SZ_4K, 'bidirectional');
    }
    expect(fq.pending).toBe(3);
    await k.scheduler.runFor(IOVA_DEFAULT_FQ_TIMEOUT_NS - 1);
    expect(mock.callsOf('flush-all')).toHaveLength(0);
    await k.scheduler.runFor(1);
    expect(mock.callsOf('flush-all')).toHaveLength(1);
    expect(fq.pending).toBe(0);
    expect(k.scheduler.now).toBe(IOVA_DEFAULT_FQ_TIMEOUT_NS);
  });

  it('a torn-down kernel\'s flush-queue timer does not touch the IOMMU', async () => {
    const { k, mock, dev, buffer } = await setup();
    const buf = buffer(1);
    const addr = await dmaMapSingle(dev, buf, SZ_4K, 'bidirectional');
    await dmaUnmapSingle(dev, addr, SZ_4K, 'bidirectional');
    k.core.teardown();
    await k.scheduler.runFor(2 * IOVA_DEFAULT_FQ_TIMEOUT_NS);
    expect(mock.callsOf('flush-all')).toHaveLength(0);
  });

  it('allocates below the DMA mask, and fails with ENOMEM when nothing fits', async () => {
    const { k, dev, buffer } = await setup({ strict: true });
    dmaSetMask(dev, dmaBitMask(13));
    const buf = buffer(2);
    // IOVA 0 is never handed out: below 8 KiB only the page at 0x1000 is left.
    expect(await k.run(dmaMapSingle(dev, buf, SZ_4K, 'bidirectional'))).toBe(0x1000);
    await expectErrno(dmaMapSingle(dev, buf + SZ_4K, SZ_4K, 'bidirectional'), 'ENOMEM', /ENOMEM.*below mask 0x1fff/);
  });

  it('stays inside the aperture with a 64-bit mask, and tries 32-bit IOVAs first for PCI', async () => {
    const { k, dev, buffer, iommuNode } = await setup({ strict: true });
    dmaSetMaskAndCoherent(dev, dmaBitMask(64));
    const buf = buffer(1);
    expect(await k.run(dmaMapSingle(dev, buf, SZ_4K, 'bidirectional'))).toBe(2 ** 48 - SZ_4K);

    const b = new DtBuilder({ '#address-cells': 2, '#size-cells': 2 });
    b.node('/pcie@30000000', { compatible: 'pci-host-ecam-generic' });
    const host = await fakePciHost(k, b.build().byPath('/pcie@30000000')!);
    const pdev = await fakePciFunction(k, host, { slot: 1, fn: 0 });
    pdev.fwspec = iommuFwspecInit(iommuNode, { canStall: false, pasidBits: 0, dmaCoherent: true, atsSupported: false });
    iommuFwspecAddSpecifier(pdev.fwspec, [pdev.rid]);
    await k.run(k.iommu.probeDevice(pdev));
    dmaSetMaskAndCoherent(pdev, dmaBitMask(64));
    expect(await k.run(dmaMapSingle(pdev, buf, SZ_4K, 'bidirectional'))).toBe(0xffff_f000);
  });

  it('keeps reserved regions out of the IOVA space, but not software MSI windows', async () => {
    const reserved = await setup({ strict: true, resv: [{ start: 0xfff0_0000, length: 0x10_0000, prot: 0, type: 'RESERVED' }] });
    expect(await reserved.k.run(dmaMapSingle(reserved.dev, reserved.buffer(1), SZ_4K, 'bidirectional'))).toBe(0xffef_f000);
    const msi = await setup({ strict: true, resv: [{ start: 0xfff0_0000, length: 0x10_0000, prot: 0, type: 'SW_MSI' }] });
    expect(await msi.k.run(dmaMapSingle(msi.dev, msi.buffer(1), SZ_4K, 'bidirectional'))).toBe(0xffff_f000);
  });

  it('maps a scatterlist into one IOVA range, merging pieces into DMA segments', async () => {
    const { k, mock, dev, dom, buffer } = await setup({ strict: true });
    const p1 = buffer(1);
    const p2 = buffer(1);
    const p3 = buffer(1);
    const sg: DmaSgEntry[] = [
      { pa: p1, length: SZ_4K, dmaAddress: 0, dmaLength: 0 },
      { pa: p2, length: SZ_4K, dmaAddress: 0, dmaLength: 0 },
      { pa: p3 + 0x10, length: 0x100, dmaAddress: 0, dmaLength: 0 },
    ];
    const count = await k.run(dmaMapSg(dev, sg, 'bidirectional'));
    expect(count).toBe(2);
    // Three IOMMU pages, rounded up to four (a cacheable size) and aligned to them.
    const iova = 0xffff_c000;
    expect(sg.map((s) => [s.dmaAddress, s.dmaLength])).toEqual([
      [iova, 0x2000],
      [iova + 0x2010, 0x100],
      [0, 0],
    ]);
    const data = pattern(0x100, 3);
    deviceWrite(k.memory, dom, sg[1].dmaAddress, data);
    expect(k.memory.read(p3 + 0x10, 0x100)).toEqual(data);
    expect(dmaMappings(dev)).toHaveLength(3);
    await k.run(dmaUnmapSg(dev, sg, 'bidirectional'));
    expect(dmaMappings(dev)).toEqual([]);
    expect(mock.callsOf('iotlb-sync').map((c) => [c.start, c.end])).toEqual([[iova, iova + 0x2fff]]);
  });

  it('splits merged scatterlist segments at the maximum segment size', async () => {
    const { k, dev } = await setup({ strict: true });
    const base = k.alloc.allocPages(5, { kind: 'kernel', what: 'sg' });
    const sg: DmaSgEntry[] = Array.from({ length: 17 }, (_, i) => ({ pa: base + i * SZ_4K, length: SZ_4K, dmaAddress: 0, dmaLength: 0 }));
    expect(await k.run(dmaMapSg(dev, sg, 'to-device'))).toBe(2);
    expect([sg[0].dmaLength, sg[1].dmaLength, sg[1].dmaAddress - sg[0].dmaAddress]).toEqual([0x10000, SZ_4K, 0x10000]);
  });

  it('allocates zeroed coherent memory the device reaches through its IOVA', async () => {
    const { k, dev, dom } = await setup();
    const c = await k.run(dmaAllocCoherent(dev, 0x1800));
    expect(c.cpuAddr % SZ_4K).toBe(0);
    expect(k.alloc.ownerOf(c.cpuAddr)!.owner).toEqual({ kind: 'dma', device: dev.name, what: 'dma_alloc_coherent' });
    expect(k.memory.read(c.cpuAddr, 0x1800).every((b) => b === 0)).toBe(true);
    expect(iommuIovaToPhys(dom, c.dmaAddr + 0x1234)).toBe(c.cpuAddr + 0x1234);
    await expectErrno(dmaFreeCoherent(dev, 0x1800, c.cpuAddr + SZ_4K, c.dmaAddr), 'EINVAL', /EINVAL.*belongs to CPU address/);
    await k.run(dmaFreeCoherent(dev, 0x1800, c.cpuAddr, c.dmaAddr));
    expect(k.alloc.ownerOf(c.cpuAddr)!.owner.kind).toBe('free');
    expect(dmaMappings(dev)).toEqual([]);
  });
});

describe('direct DMA', () => {
  it('uses physical addresses for a device without an IOMMU, within its mask', async () => {
    const { k, direct, buffer } = await setup();
    expect(dmaUsesIommu(direct)).toBe(false);
    const buf = buffer(1);
    expect(await dmaMapSingle(direct, buf + 8, 64, 'to-device')).toBe(buf + 8);
    expect(dmaPhysIsMapped(direct, buf)).toBe(true);
    await dmaUnmapSingle(direct, buf + 8, 64, 'to-device');
    dmaSetMask(direct, dmaBitMask(30));
    await expectErrno(dmaMapSingle(direct, buf, 64, 'to-device'), 'ERANGE', /ERANGE.*overflow mask 0x3fffffff/);
    expect(k.core.log.lines('err').at(-1)!.message).toMatch(/overflow mask/);
    const sg: DmaSgEntry[] = [{ pa: buf, length: 16, dmaAddress: 0, dmaLength: 0 }];
    await expectErrno(dmaMapSg(direct, sg, 'to-device'), 'ERANGE');
    dmaSetMask(direct, dmaBitMask(32));
    expect(await dmaMapSg(direct, sg, 'to-device')).toBe(1);
    expect(sg[0].dmaAddress).toBe(buf);
  });

  it('lets a direct device map one buffer twice and unmap each mapping', async () => {
    const { direct, buffer } = await setup();
    const buf = buffer(1);
    expect(await dmaMapSingle(direct, buf, 64, 'to-device')).toBe(buf);
    expect(await dmaMapSingle(direct, buf, 128, 'from-device')).toBe(buf);
    expect(dmaMappings(direct).map((m) => [m.size, m.dir])).toEqual([
      [64, 'to-device'],
      [128, 'from-device'],
    ]);
    await dmaUnmapSingle(direct, buf, 128, 'from-device');
    expect(dmaMappings(direct).map((m) => m.size)).toEqual([64]);
    await expectErrno(dmaUnmapSingle(direct, buf, 128, 'from-device'), 'EINVAL', /EINVAL.*size 64, unmapped with 128/);
    await dmaUnmapSingle(direct, buf, 64, 'to-device');
    expect(dmaPhysIsMapped(direct, buf)).toBe(false);
  });

  it('uses physical addresses behind an IDENTITY domain (iommu.passthrough)', async () => {
    const { k, mock, dev, buffer } = await setup({ passthrough: true });
    expect(dmaUsesIommu(dev)).toBe(false);
    const buf = buffer(1);
    expect(await k.run(dmaMapSingle(dev, buf, SZ_4K, 'bidirectional'))).toBe(buf);
    const c = await k.run(dmaAllocCoherent(dev, 100));
    expect(c.dmaAddr).toBe(c.cpuAddr);
    expect(mock.callsOf('map')).toEqual([]);
  });

  it('refuses coherent memory the device cannot reach', async () => {
    const { k, direct } = await setup();
    direct.coherentDmaMask = dmaBitMask(29);
    await expectErrno(dmaAllocCoherent(direct, SZ_4K), 'ENOMEM', /ENOMEM.*coherent mask/);
    expect(k.alloc.usage().byKind.dma ?? 0).toBe(0);
  });
});

describe('DMA API argument checks (dma-debug)', () => {
  it('rejects unmapping what was not mapped like that', async () => {
    const { k, dev, buffer } = await setup({ strict: true });
    const buf = buffer(1);
    await expectErrno(dmaUnmapSingle(dev, 0x1000, 16, 'to-device'), 'EINVAL', /EINVAL.*nothing is mapped/);
    const addr = await k.run(dmaMapSingle(dev, buf, 256, 'to-device'));
    await expectErrno(dmaUnmapSingle(dev, addr, 128, 'to-device'), 'EINVAL', /EINVAL.*size 256, unmapped with 128/);
    await expectErrno(dmaUnmapSingle(dev, addr, 256, 'from-device'), 'EINVAL', /EINVAL.*mapped to-device, unmapped from-device/);
    dmaSyncSingleForCpu(dev, addr + 16, 32, 'to-device');
    dmaSyncSingleForDevice(dev, addr, 256, 'to-device');
    await expectErrno(() => dmaSyncSingleForCpu(dev, addr + 250, 32, 'to-device'), 'EINVAL', /EINVAL.*not inside a mapping/);
    await expectErrno(() => dmaSyncSingleForCpu(dev, addr, 32, 'from-device'), 'EINVAL', /EINVAL.*mapping is to-device/);
    await k.run(dmaUnmapSingle(dev, addr, 256, 'to-device'));
    await expectErrno(dmaUnmapSingle(dev, addr, 256, 'to-device'), 'EINVAL', /EINVAL.*already unmapped/);
    await expectErrno(dmaMapSingle(dev, buf, 0, 'to-device'), 'EINVAL');
  });
});
