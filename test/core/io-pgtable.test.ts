/**
 * io-pgtable-arm unit tests: configuration and register values, descriptor bits, map/unmap semantics,
 * every error path, TLB maintenance calls and table freeing back to the allocator.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { iommuIotlbGatherAddPage, iommuIotlbGatherInit, type IommuIotlbGather } from '../../core/iommu-gather.js';
import {
  IO_PGTABLE_QUIRK_ARM_HD,
  IO_PGTABLE_QUIRK_ARM_NS,
  IO_PGTABLE_QUIRK_ARM_OUTER_WBWA,
  IO_PGTABLE_QUIRK_ARM_S2FWB,
  IO_PGTABLE_QUIRK_ARM_TTBR1,
  IOMMU_CACHE,
  IOMMU_MMIO,
  IOMMU_NOEXEC,
  IOMMU_PRIV,
  IOMMU_READ,
  IOMMU_WRITE,
  IoPgtableMapError,
  type IoPgtable,
  type IoPgtableCfg,
  type IoPgtableFmt,
} from '../../core/io-pgtable.js';
import { allocIoPgtableOps, freeIoPgtableOps } from '../../core/io-pgtable-arm.js';
import type { PhysicalMemory } from '../../hw/memory.js';
import { recordingFlushOps, tableRam, TABLE_RAM_BASE, TABLE_RAM_SIZE, TestTableAllocator, type FlushCall, SZ_4K, SZ_16K, SZ_64K, SZ_2M, SZ_32M, SZ_512M, SZ_1G, SZ_4T, BITMAP_4K, BITMAP_16K, BITMAP_64K } from './io-pgtable-rig.js';
import { expectErrno } from '../lib/errno.js';

const RW = IOMMU_READ | IOMMU_WRITE;

let ram: PhysicalMemory;
let allocator: TestTableAllocator;
let tlb: ReturnType<typeof recordingFlushOps>;

beforeEach(() => {
  ({ ram, allocator } = tableRam());
  tlb = recordingFlushOps();
});

function make(fmt: IoPgtableFmt, pgsizeBitmap: number, ias: number, oas: number, extra: Partial<IoPgtableCfg> = {}): IoPgtable {
  return allocIoPgtableOps(fmt, { pgsizeBitmap, ias, oas, tlb, ram, allocator, ...extra });
}

/** Leaf descriptor address for `iova`, found by a walk written here (4K granule, 48-bit stage 1 only). */
function leafPte4k(t: IoPgtable, iova: number, leafLevel: number): number {
  let table = t.armLpaeS1Cfg!.ttbr;
  for (let l = 0; ; l++) {
    const ptep = table + Number((BigInt(iova) >> BigInt(39 - 9 * l)) & 511n) * 8;
    if (l === leafLevel) return ptep;
    table = Number(ram.read64(ptep) & 0xffff_ffff_f000n);
  }
}

describe('configuration and register values', () => {
  it('builds a stage 1 4K 48-bit table with the kernel TCR fields and MAIR', () => {
    const t = make('ARM_64_LPAE_S1', BITMAP_4K | SZ_16K | SZ_64K, 48, 48);
    expect(t.cfg).toEqual({ quirks: 0, pgsizeBitmap: BITMAP_4K, ias: 48, oas: 48, coherentWalk: true });
    expect([t.granule, t.startLevel, t.pgdSize]).toEqual([SZ_4K, 0, SZ_4K]);
    const s1 = t.armLpaeS1Cfg!;
    expect(s1.tcr).toEqual({ ips: 5, tg: 0, sh: 3, orgn: 1, irgn: 1, tsz: 16, epd1: true });
    expect(s1.mair).toBe(0xf404ff44n);
    expect(s1.ttbr % SZ_4K).toBe(0);
    expect(allocator.live.get(s1.ttbr)).toBe(SZ_4K);
    expect(t.armLpaeS2Cfg).toBeNull();
  });

  it('sets walk attributes for a non-coherent walker, with the outer write-back quirk', () => {
    expect(make('ARM_64_LPAE_S1', BITMAP_4K, 48, 48, { coherentWalk: false }).armLpaeS1Cfg!.tcr).toMatchObject({ sh: 2, irgn: 0, orgn: 0 });
    const t = make('ARM_64_LPAE_S1', BITMAP_4K, 48, 48, { coherentWalk: false, quirks: IO_PGTABLE_QUIRK_ARM_OUTER_WBWA });
    expect(t.armLpaeS1Cfg!.tcr).toMatchObject({ sh: 2, irgn: 0, orgn: 1 });
    expect(make('ARM_64_LPAE_S2', BITMAP_4K, 40, 40, { coherentWalk: false }).armLpaeS2Cfg!.vtcr).toMatchObject({ sh: 2, irgn: 0, orgn: 0 });
  });

  it('computes stage 2 start levels, concatenation and VTCR fields', () => {
    // [bitmap, ias, oas] -> [startLevel, pgdSize, vtcr.tg, vtcr.sl, vtcr.ps, vtcr.tsz]
    const cases: [number, number, number, number[]][] = [
      [BITMAP_4K, 40, 40, [1, 2 * SZ_4K, 0, 1, 2, 24]], // level 0 not allowed: 2 concatenated tables
      [BITMAP_4K, 42, 42, [1, 8 * SZ_4K, 0, 1, 3, 22]],
      [BITMAP_4K, 40, 48, [0, 16, 0, 2, 5, 24]], // 2 entries at level 0
      [BITMAP_4K, 48, 48, [0, SZ_4K, 0, 2, 5, 16]],
      [BITMAP_4K, 32, 32, [1, 32, 0, 1, 0, 32]],
      [BITMAP_16K, 48, 48, [1, 2 * SZ_16K, 2, 2, 5, 16]],
      [BITMAP_16K, 40, 40, [2, 16 * SZ_16K, 2, 1, 2, 24]],
      [BITMAP_16K, 40, 42, [1, 128, 2, 2, 3, 24]],
      [BITMAP_64K, 48, 48, [1, 512, 1, 2, 5, 16]],
      [BITMAP_64K, 52, 52, [1, 8192, 1, 2, 6, 12]],
      [BITMAP_64K, 40, 40, [2, 16 * 1024, 1, 1, 2, 24]],
    ];
    for (const [bitmap, ias, oas, want] of cases) {
      const t = make('ARM_64_LPAE_S2', bitmap, ias, oas);
      const v = t.armLpaeS2Cfg!.vtcr;
      expect([t.startLevel, t.pgdSize, v.tg, v.sl, v.ps, v.tsz], `${bitmap.toString(16)} ${ias}/${oas}`).toEqual(want);
      expect(v).toMatchObject({ sh: 3, irgn: 1, orgn: 1 });
      expect(t.armLpaeS2Cfg!.vttbr % Math.max(t.pgdSize, 64)).toBe(0);
      expect(t.armLpaeS1Cfg).toBeNull();
    }
  });

  it('keeps one granule of the offered page sizes and clamps ias/oas', () => {
    expect(make('ARM_64_LPAE_S1', BITMAP_16K | BITMAP_64K, 48, 48).cfg.pgsizeBitmap).toBe(BITMAP_16K);
    expect(make('ARM_64_LPAE_S1', BITMAP_64K + SZ_4T, 48, 52).cfg.pgsizeBitmap).toBe(BITMAP_64K + SZ_4T);
    expect(make('ARM_64_LPAE_S1', BITMAP_64K + SZ_4T, 48, 48).cfg.pgsizeBitmap).toBe(BITMAP_64K);
    expect(make('ARM_64_LPAE_S1', SZ_4K | SZ_2M, 52, 52).cfg).toMatchObject({ pgsizeBitmap: SZ_4K + SZ_2M, ias: 48, oas: 48 });
    expect(make('ARM_32_LPAE_S1', BITMAP_4K | BITMAP_64K, 32, 40).cfg.pgsizeBitmap).toBe(BITMAP_4K);
    expect(make('ARM_32_LPAE_S2', BITMAP_4K, 40, 40).startLevel).toBe(1);
  });

  it('rejects configurations the format cannot honour with EINVAL', async () => {
    await expectErrno(() => make('ARM_64_LPAE_S3' as IoPgtableFmt, BITMAP_4K, 48, 48), 'EINVAL', /unknown format/);
    await expectErrno(() => make('ARM_64_LPAE_S1', BITMAP_4K, 48, 48, { quirks: IO_PGTABLE_QUIRK_ARM_TTBR1 }), 'EINVAL', /ARM_TTBR1/);
    await expectErrno(() => make('ARM_64_LPAE_S2', BITMAP_4K, 48, 48, { quirks: IO_PGTABLE_QUIRK_ARM_NS }), 'EINVAL', /unsupported quirks/);
    await expectErrno(() => make('ARM_64_LPAE_S1', BITMAP_4K, 48, 48, { quirks: IO_PGTABLE_QUIRK_ARM_S2FWB }), 'EINVAL', /unsupported quirks/);
    await expectErrno(() => make('ARM_64_LPAE_S1', BITMAP_4K, 48, 48, { quirks: IO_PGTABLE_QUIRK_ARM_OUTER_WBWA }), 'EINVAL', /non-coherent/);
    await expectErrno(() => make('ARM_64_LPAE_S1', BITMAP_4K, 48, 46), 'EINVAL', /oas 46/);
    await expectErrno(() => make('ARM_64_LPAE_S1', BITMAP_4K, 31, 48), 'EINVAL', /ias 31/);
    await expectErrno(() => make('ARM_64_LPAE_S1', SZ_2M, 48, 48), 'EINVAL', /no 4K, 16K or 64K granule/);
    await expectErrno(() => make('ARM_64_LPAE_S1', 0, 48, 48), 'EINVAL', /pgsizeBitmap 0/);
    await expectErrno(() => make('ARM_32_LPAE_S1', BITMAP_4K, 40, 40), 'EINVAL', /ias 40 exceeds 32/);
    await expectErrno(() => make('ARM_32_LPAE_S2', BITMAP_4K, 40, 44), 'EINVAL', /oas 44 exceeds 40/);
    expect(allocator.live.size).toBe(0);
  });

  it('fails with ENOMEM when the top-level table cannot be allocated', async () => {
    allocator.limit = 0;
    await expectErrno(() => make('ARM_64_LPAE_S1', BITMAP_4K, 48, 48), 'ENOMEM');
  });
});

describe('descriptors', () => {
  it('encodes stage 1 leaves as the kernel does', () => {
    const t = make('ARM_64_LPAE_S1', BITMAP_4K, 48, 48);
    t.mapPages(0x1000, 0x8000_3000, SZ_4K, 1, RW | IOMMU_CACHE);
    // AF | SH=IS | nG | AP[1] (unprivileged) | AttrIndx=1 | page
    expect(ram.read64(leafPte4k(t, 0x1000, 3))).toBe(0x8000_3000n | 0x400n | 0x300n | 0x800n | 0x40n | 0x4n | 3n);
    t.mapPages(0x2000, 0x8000_4000, SZ_4K, 1, IOMMU_READ | IOMMU_NOEXEC | IOMMU_MMIO | IOMMU_PRIV);
    // AF | SH=OS | nG | AP[2] (read-only) | AttrIndx=2 | page, PXN|UXN
    expect(ram.read64(leafPte4k(t, 0x2000, 3))).toBe((3n << 53n) | 0x8000_4000n | 0x400n | 0x200n | 0x800n | 0x80n | 0x8n | 3n);
    t.mapPages(SZ_2M, 0x1_0020_0000, SZ_2M, 1, IOMMU_WRITE);
    // A write-only request is read-write at stage 1. Block type.
    expect(ram.read64(leafPte4k(t, SZ_2M, 2))).toBe(0x1_0020_0000n | 0x400n | 0x200n | 0x800n | 0x40n | 1n);
    // The table entries the kernel writes: address | 3, nothing else.
    expect(ram.read64(leafPte4k(t, 0x1000, 0)) & 0xfffn).toBe(3n);
  });

  it('encodes stage 2 leaves as the kernel does', () => {
    const t = make('ARM_64_LPAE_S2', BITMAP_4K, 48, 48);
    const walkTo = (iova: number, level: number) => {
      let table = t.armLpaeS2Cfg!.vttbr;
      for (let l = 0; l < level; l++) table = Number(ram.read64(table + Number((BigInt(iova) >> BigInt(39 - 9 * l)) & 511n) * 8) & 0xffff_ffff_f000n);
      return table + Number((BigInt(iova) >> BigInt(39 - 9 * level)) & 511n) * 8;
    };
    t.mapPages(0x1000, 0x8000_3000, SZ_4K, 1, RW | IOMMU_CACHE);
    // AF | SH=IS | S2AP=RW | MemAttr=0xf | page
    expect(ram.read64(walkTo(0x1000, 3))).toBe(0x8000_3000n | 0x400n | 0x300n | 0xc0n | 0x3cn | 3n);
    t.mapPages(0x2000, 0x8000_4000, SZ_4K, 1, IOMMU_WRITE | IOMMU_NOEXEC);
    // AF | SH=OS | S2AP=W | MemAttr=NC (5) | page, XN
    expect(ram.read64(walkTo(0x2000, 3))).toBe((3n << 53n) | 0x8000_4000n | 0x400n | 0x200n | 0x80n | 0x14n | 3n);
    t.mapPages(0x3000, 0x8000_5000, SZ_4K, 1, IOMMU_READ | IOMMU_MMIO);
    expect(ram.read64(walkTo(0x3000, 3))).toBe(0x8000_5000n | 0x400n | 0x200n | 0x40n | 0x4n | 3n);
  });

  it('applies the NS, HD and S2FWB quirks', () => {
    const ns = make('ARM_64_LPAE_S1', BITMAP_4K, 48, 48, { quirks: IO_PGTABLE_QUIRK_ARM_NS | IO_PGTABLE_QUIRK_ARM_HD });
    ns.mapPages(0x1000, 0x8000_3000, SZ_4K, 1, RW);
    expect(ram.read64(leafPte4k(ns, 0x1000, 0)) >> 63n).toBe(1n); // NSTable
    const leaf = ram.read64(leafPte4k(ns, 0x1000, 3));
    expect(leaf & 0x20n).toBe(0x20n); // NS
    expect(leaf & (1n << 51n)).toBe(1n << 51n); // DBM on a writable leaf
    ns.mapPages(0x2000, 0x8000_4000, SZ_4K, 1, IOMMU_READ);
    expect(ram.read64(leafPte4k(ns, 0x2000, 3)) & (1n << 51n)).toBe(0n);

    const fwb = make('ARM_64_LPAE_S2', BITMAP_4K, 32, 40, { quirks: IO_PGTABLE_QUIRK_ARM_S2FWB });
    fwb.mapPages(0x4000_0000, 0x8000_0000, SZ_1G, 1, RW | IOMMU_CACHE);
    const l1 = fwb.armLpaeS2Cfg!.vttbr + 8;
    expect(ram.read64(l1) & 0x3cn).toBe(0x18n); // MemAttr 0b0110
  });

  it('packs PA[51:48] into bits [15:12] with 64K and a 52-bit output', () => {
    const t = make('ARM_64_LPAE_S1', BITMAP_64K + SZ_4T, 48, 52);
    const pa = 0xa_bcde_f012_0000;
    expect(t.mapPages(0x3_0000, pa, SZ_64K, 1, RW)).toBe(SZ_64K);
    // ias 48: level 1 (64 entries) -> level 2 -> level 3; a fresh table has one entry in use.
    const l1 = t.armLpaeS1Cfg!.ttbr;
    const l2 = Number(ram.read64(l1) & 0xffff_ffff_0000n);
    const l3 = Number(ram.read64(l2) & 0xffff_ffff_0000n);
    const pte = ram.read64(l3 + 3 * 8);
    expect(pte & 0xffff_ffff_0000n).toBe(0xbcde_f012_0000n);
    expect((pte >> 12n) & 0xfn).toBe(0xan);
    expect(t.iovaToPhys(0x3_1234)).toBe(pa + 0x1234);
    expect(t.mapPages(SZ_4T, 0xf_fc00_0000_0000, SZ_4T, 1, RW)).toBe(SZ_4T);
    expect(t.iovaToPhys(SZ_4T + 0x123_4567_89ab)).toBe(0xf_fc00_0000_0000 + 0x123_4567_89ab);
  });
});

describe('map, unmap and iova_to_phys', () => {
  const formats: [IoPgtableFmt, number, number, number][] = [
    ['ARM_64_LPAE_S1', BITMAP_4K, 48, 48],
    ['ARM_64_LPAE_S2', BITMAP_4K, 40, 40],
    ['ARM_64_LPAE_S1', BITMAP_16K, 47, 48],
    ['ARM_64_LPAE_S2', BITMAP_16K, 48, 48],
    ['ARM_64_LPAE_S1', BITMAP_64K, 42, 44],
    ['ARM_64_LPAE_S2', BITMAP_64K + SZ_4T, 52, 52],
    ['ARM_32_LPAE_S1', BITMAP_4K, 32, 40],
    ['ARM_32_LPAE_S2', BITMAP_4K, 40, 40],
  ];

  it.each(formats)('%s %s ias %i oas %i: maps, refuses overlaps, unmaps and remaps every size', async (fmt, bitmap, ias, oas) => {
    const t = make(fmt, bitmap, ias, oas);
    expect([t.iovaToPhys(42), t.iovaToPhys(SZ_1G + 42), t.iovaToPhys(2 * SZ_1G + 42)]).toEqual([0, 0, 0]);
    const sizes = [SZ_4K, SZ_16K, SZ_64K, SZ_2M, SZ_32M, SZ_512M, SZ_1G, SZ_4T].filter((s) => t.cfg.pgsizeBitmap % (2 * s) >= s);
    // One slot per size, a gigabyte or more apart and aligned to the size.
    const iovas: number[] = [];
    let next = 0;
    for (const size of sizes) {
      next = Math.ceil(next / size) * size;
      iovas.push(next);
      next += Math.max(SZ_1G, size);
    }
    for (const [i, size] of sizes.entries()) {
      const iova = iovas[i];
      expect(t.mapPages(iova, iova, size, 1, RW | IOMMU_NOEXEC | IOMMU_CACHE)).toBe(size);
      await expectErrno(() => t.mapPages(iova, iova + size, size, 1, IOMMU_READ | IOMMU_NOEXEC), 'EEXIST');
      expect(t.iovaToPhys(iova + 42)).toBe(iova + 42);
    }
    sizes.forEach((size, i) => {
      const iova = iovas[i];
      expect(t.unmapPages(iova, size, 1, null)).toBe(size);
      expect(t.iovaToPhys(iova + 42)).toBe(0);
      expect(t.mapPages(iova, iova, size, 1, IOMMU_WRITE)).toBe(size);
      expect(t.iovaToPhys(iova + 42)).toBe(iova + 42);
    });
    // The last largest page of the input range (a corner of concatenated tables).
    const big = sizes[sizes.length - 1];
    const top = 2 ** t.cfg.ias - big;
    if (top + big <= 2 ** t.cfg.oas) {
      expect(t.mapPages(top, top, big, 1, RW)).toBe(big);
      expect(t.iovaToPhys(top + big - 1)).toBe(top + big - 1);
      expect(t.unmapPages(top, big, 1, null)).toBe(big);
    }
    freeIoPgtableOps(t);
    expect(allocator.live.size).toBe(0);
  });

  it('maps a run of pages across several tables in one call', () => {
    const t = make('ARM_64_LPAE_S1', BITMAP_4K, 48, 48);
    const iova = SZ_2M - 16 * SZ_4K; // 16 pages in one level 3 table, 1024 in the next two
    expect(t.mapPages(iova, 0x10_0000_0000, SZ_4K, 1040, RW)).toBe(1040 * SZ_4K);
    for (const i of [0, 15, 16, 527, 528, 1039]) expect(t.iovaToPhys(iova + i * SZ_4K + 1)).toBe(0x10_0000_0000 + i * SZ_4K + 1);
    expect(t.iovaToPhys(iova + 1040 * SZ_4K)).toBe(0);
    expect(t.unmapPages(iova, SZ_4K, 1040, null)).toBe(1040 * SZ_4K);
    expect(t.iovaToPhys(iova + 600 * SZ_4K)).toBe(0);
  });

  it('rejects bad arguments with EINVAL', async () => {
    const t = make('ARM_64_LPAE_S1', BITMAP_4K, 40, 36);
    await expectErrno(() => t.mapPages(0x800, 0x1000, SZ_4K, 1, RW), 'EINVAL', /iova 2048 is not a 0x1000-aligned/);
    await expectErrno(() => t.mapPages(0x1000, 0x1800, SZ_4K, 1, RW), 'EINVAL', /paddr 6144/);
    await expectErrno(() => t.mapPages(SZ_2M, 0x1000, SZ_2M, 1, RW), 'EINVAL', /paddr/);
    await expectErrno(() => t.mapPages(0, 0, 0x2000, 1, RW), 'EINVAL', /pgsize 8192 is not in pgsize_bitmap/);
    await expectErrno(() => t.mapPages(0, 0, SZ_16K, 1, RW), 'EINVAL', /pgsize/);
    await expectErrno(() => t.mapPages(0, 0, SZ_4K, 0, RW), 'EINVAL', /pgcount 0/);
    await expectErrno(() => t.mapPages(0, 0, SZ_4K, 1.5, RW), 'EINVAL', /pgcount/);
    await expectErrno(() => t.mapPages(-SZ_4K, 0, SZ_4K, 1, RW), 'EINVAL', /iova/);
    await expectErrno(() => t.mapPages(2 ** 40 - SZ_4K, 0, SZ_4K, 2, RW), 'EINVAL', /exceeds the 40-bit input size/);
    await expectErrno(() => t.mapPages(2 ** 40, 0, SZ_4K, 1, RW), 'EINVAL', /input size/);
    await expectErrno(() => t.mapPages(0, 2 ** 36 - SZ_4K, SZ_4K, 2, RW), 'EINVAL', /exceeds the 36-bit output size/);
    await expectErrno(() => t.mapPages(0, 0, SZ_4K, 1, 0), 'EINVAL', /neither read nor write/);
    await expectErrno(() => t.mapPages(0, 0, SZ_4K, 1, IOMMU_CACHE | IOMMU_NOEXEC), 'EINVAL', /neither read nor write/);
    await expectErrno(() => t.unmapPages(0x800, SZ_4K, 1, null), 'EINVAL', /not a 0x1000-aligned/);
    await expectErrno(() => t.unmapPages(0, SZ_64K, 1, null), 'EINVAL', /pgsize/);
    await expectErrno(() => t.unmapPages(0, SZ_4K, 0, null), 'EINVAL', /pgcount/);
    await expectErrno(() => t.unmapPages(2 ** 40, SZ_4K, 1, null), 'EINVAL', /input size/);
    expect(t.iovaToPhys(2 ** 40 + 5)).toBe(0);
    expect(t.iovaToPhys(-1)).toBe(0);
    expect(allocator.live.size).toBe(1); // nothing was allocated by the failed calls
  });

  it('refuses to map over a live mapping with EEXIST, at any level', async () => {
    const t = make('ARM_64_LPAE_S1', BITMAP_4K, 48, 48);
    t.mapPages(SZ_2M + SZ_4K, 0x1000, SZ_4K, 1, RW);
    await expectErrno(() => t.mapPages(SZ_2M + SZ_4K, 0x2000, SZ_4K, 1, RW), 'EEXIST');
    await expectErrno(() => t.mapPages(SZ_2M, 0, SZ_2M, 1, RW), 'EEXIST'); // a block over a table still in use
    await expectErrno(() => t.mapPages(0, 0, SZ_1G, 1, RW), 'EEXIST');
    t.mapPages(SZ_1G, SZ_1G, SZ_2M, 1, RW);
    await expectErrno(() => t.mapPages(SZ_1G + SZ_4K, 0, SZ_4K, 1, RW), 'EEXIST', /existing 0x200000 mapping/);
    expect(t.iovaToPhys(SZ_2M + SZ_4K)).toBe(0x1000);
    expect(t.iovaToPhys(SZ_1G + SZ_4K)).toBe(SZ_1G + SZ_4K);
  });

  it('reports how much a failing map had already mapped', () => {
    const t = make('ARM_64_LPAE_S1', BITMAP_4K, 48, 48);
    t.mapPages(700 * SZ_4K, 0x5000_0000, SZ_4K, 1, RW);
    let err: unknown;
    try {
      t.mapPages(0, 0x1_0000_0000, SZ_4K, 1024, RW);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(IoPgtableMapError);
    expect((err as IoPgtableMapError).errno).toBe('EEXIST');
    // The first level 3 table's 512 pages went in; the second table was refused whole.
    expect((err as IoPgtableMapError).mapped).toBe(512 * SZ_4K);
    expect(t.iovaToPhys(511 * SZ_4K)).toBe(0x1_0000_0000 + 511 * SZ_4K);
    expect(t.iovaToPhys(512 * SZ_4K)).toBe(0);
    expect(t.iovaToPhys(700 * SZ_4K)).toBe(0x5000_0000);
  });

  it('reports ENOMEM with the bytes mapped when a table cannot be allocated', () => {
    const t = make('ARM_64_LPAE_S1', BITMAP_4K, 48, 48);
    allocator.limit = 4; // pgd + one table per level below it
    let err: unknown;
    try {
      t.mapPages(SZ_2M - SZ_4K, 0x1000, SZ_4K, 2, RW);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(IoPgtableMapError);
    expect([(err as IoPgtableMapError).errno, (err as IoPgtableMapError).mapped]).toEqual(['ENOMEM', SZ_4K]);
    expect(t.iovaToPhys(SZ_2M - SZ_4K)).toBe(0x1000);
  });

  it('unmaps up to the first hole, and nothing of a larger block', () => {
    const t = make('ARM_64_LPAE_S1', BITMAP_4K, 48, 48);
    expect(t.unmapPages(0x10_0000, SZ_4K, 1, null)).toBe(0);
    t.mapPages(0, 0x1_0000_0000, SZ_4K, 2, RW);
    t.mapPages(3 * SZ_4K, 0x2_0000_0000, SZ_4K, 1, RW);
    expect(t.unmapPages(0, SZ_4K, 4, null)).toBe(2 * SZ_4K);
    expect(t.iovaToPhys(3 * SZ_4K)).toBe(0x2_0000_0000);
    t.mapPages(SZ_1G, SZ_1G, SZ_2M, 1, RW);
    expect(t.unmapPages(SZ_1G + SZ_4K, SZ_4K, 1, null)).toBe(0);
    expect(t.unmapPages(SZ_1G, SZ_4K, 1, null)).toBe(0);
    expect(t.iovaToPhys(SZ_1G + SZ_4K)).toBe(SZ_1G + SZ_4K);
    expect(t.unmapPages(SZ_1G, SZ_2M, 2, null)).toBe(SZ_2M);
    expect(t.iovaToPhys(SZ_1G + SZ_4K)).toBe(0);
    expect(tlb.calls).toEqual([]); // no gather given, no table freed
  });
});

describe('TLB maintenance and gathering', () => {
  it('adds every unmapped leaf to the gather, unless the gather is queued', () => {
    const t = make('ARM_64_LPAE_S1', BITMAP_4K, 48, 48);
    t.mapPages(0, 0, SZ_4K, 3, RW);
    t.mapPages(SZ_1G, SZ_1G, SZ_2M, 1, RW);
    const gather = iommuIotlbGatherInit();
    expect(t.unmapPages(0, SZ_4K, 3, gather)).toBe(3 * SZ_4K);
    expect(t.unmapPages(SZ_1G, SZ_2M, 1, gather)).toBe(SZ_2M);
    expect(tlb.calls).toEqual<FlushCall[]>([
      { op: 'page', iova: 0, granule: SZ_4K },
      { op: 'page', iova: SZ_4K, granule: SZ_4K },
      { op: 'page', iova: 2 * SZ_4K, granule: SZ_4K },
      { op: 'page', iova: SZ_1G, granule: SZ_2M },
    ]);
    tlb.calls.length = 0;
    t.mapPages(0, 0, SZ_4K, 3, RW);
    gather.queued = true;
    expect(t.unmapPages(0, SZ_4K, 3, gather)).toBe(3 * SZ_4K);
    expect(tlb.calls).toEqual([]);
  });

  it('merges contiguous pages into one range and syncs on a gap or a size change', () => {
    const syncs: { start: number; end: number; pgsize: number }[] = [];
    const sync = (g: IommuIotlbGather) => syncs.push({ start: g.start, end: g.end, pgsize: g.pgsize });
    tlb = recordingFlushOps((g, iova, granule) => iommuIotlbGatherAddPage(g, iova, granule, sync));
    const t = make('ARM_64_LPAE_S1', BITMAP_4K, 48, 48);
    t.mapPages(0, 0, SZ_4K, 4, RW);
    t.mapPages(8 * SZ_4K, 0, SZ_4K, 1, RW);
    t.mapPages(SZ_2M, 0, SZ_2M, 1, RW);
    const gather = iommuIotlbGatherInit();
    t.unmapPages(0, SZ_4K, 4, gather);
    expect([gather.start, gather.end, gather.pgsize, syncs.length]).toEqual([0, 4 * SZ_4K - 1, SZ_4K, 0]);
    t.unmapPages(8 * SZ_4K, SZ_4K, 1, gather); // a gap: the first range is synced
    expect(syncs).toEqual([{ start: 0, end: 4 * SZ_4K - 1, pgsize: SZ_4K }]);
    t.unmapPages(SZ_2M, SZ_2M, 1, gather); // another size
    expect(syncs[1]).toEqual({ start: 8 * SZ_4K, end: 9 * SZ_4K - 1, pgsize: SZ_4K });
    expect([gather.start, gather.end, gather.pgsize]).toEqual([SZ_2M, 2 * SZ_2M - 1, SZ_2M]);
  });
});

describe('table freeing', () => {
  it('frees a table when an unmap covers its whole entry, after flushing walks through it', () => {
    const t = make('ARM_64_LPAE_S1', BITMAP_4K, 48, 48);
    const base = 5 * SZ_2M;
    t.mapPages(base, 0x1000, SZ_4K, 1, RW);
    t.mapPages(base + 100 * SZ_4K, 0x2000, SZ_4K, 2, RW);
    expect(allocator.live.size).toBe(4);
    const l3 = Number(ram.read64(leafPte4k(t, base, 2)) & 0xffff_ffff_f000n);
    const gather = iommuIotlbGatherInit();
    expect(t.unmapPages(base, SZ_2M, 1, gather)).toBe(SZ_2M);
    expect(tlb.calls).toEqual<FlushCall[]>([
      { op: 'walk', iova: base, size: SZ_2M, granule: SZ_4K },
      { op: 'page', iova: base, granule: SZ_2M },
    ]);
    expect(allocator.live.has(l3)).toBe(false);
    expect(allocator.live.size).toBe(3);
    expect(t.iovaToPhys(base + 100 * SZ_4K)).toBe(0);
  });

  it('keeps tables emptied page by page until a block replaces them', () => {
    const t = make('ARM_64_LPAE_S1', BITMAP_4K, 48, 48);
    t.mapPages(SZ_2M, 0x1000, SZ_4K, 2, RW);
    expect(t.unmapPages(SZ_2M, SZ_4K, 2, null)).toBe(2 * SZ_4K);
    expect(allocator.live.size).toBe(4); // the level 3 table stays
    const frees = allocator.frees;
    expect(t.mapPages(SZ_2M, 0x4000_0000, SZ_2M, 1, RW)).toBe(SZ_2M);
    expect(allocator.frees).toBe(frees + 1);
    expect(allocator.live.size).toBe(3);
    expect(tlb.calls).toEqual<FlushCall[]>([{ op: 'walk', iova: SZ_2M, size: SZ_2M, granule: SZ_4K }]);
    expect(t.iovaToPhys(SZ_2M + 0x1234)).toBe(0x4000_1234);
    // An emptied table reached through the stage 1 level 1 entry, replaced by a 1G block.
    t.mapPages(SZ_1G + SZ_2M, 0, SZ_4K, 1, RW);
    t.unmapPages(SZ_1G + SZ_2M, SZ_4K, 1, null);
    expect(t.mapPages(SZ_1G, SZ_1G, SZ_1G, 1, RW)).toBe(SZ_1G);
    expect(allocator.live.size).toBe(3); // both the level 2 and level 3 tables went back
  });

  it('maps and unmaps right when calls alternate between levels and tables (no stale walk reused)', async () => {
    const t = make('ARM_64_LPAE_S1', BITMAP_4K, 48, 48);
    const base = 7 * SZ_2M;
    t.mapPages(base, 0x1000, SZ_4K, 1, RW);
    // Span 7 at level 2 (7 GiB) right after span 7 at level 3 (14 MiB): another table entirely.
    t.mapPages(7 * SZ_1G, 0x8000_0000, SZ_2M, 1, RW);
    expect(t.iovaToPhys(7 * SZ_1G + 0x123)).toBe(0x8000_0123);
    expect(t.iovaToPhys(base)).toBe(0x1000);
    expect(t.unmapPages(base, SZ_2M, 1, null)).toBe(SZ_2M); // frees the level 3 table
    // The next page of the same 2M needs a new level 3 table, linked from level 2.
    t.mapPages(base + SZ_4K, 0x5000, SZ_4K, 1, RW);
    expect(t.iovaToPhys(base + SZ_4K + 0x10)).toBe(0x5010);
    expect(ram.read64(leafPte4k(t, base + SZ_4K, 3)) & 0xffff_ffff_f003n).toBe(0x5003n);
    // A block replaces the emptied table: pages of its range are then inside the block.
    expect(t.unmapPages(base + SZ_4K, SZ_4K, 1, null)).toBe(SZ_4K);
    t.mapPages(base, 0x4000_0000, SZ_2M, 1, RW);
    await expectErrno(() => t.mapPages(base + 2 * SZ_4K, 0x6000, SZ_4K, 1, RW), 'EEXIST');
    expect(t.unmapPages(base + SZ_4K, SZ_4K, 1, null)).toBe(0);
    expect(t.iovaToPhys(base + SZ_4K)).toBe(0x4000_1000);
  });

  it('frees every table with the page table, after a full flush', async () => {
    const t = make('ARM_64_LPAE_S2', BITMAP_16K, 40, 40);
    t.mapPages(0, 0, SZ_16K, 3000, RW);
    t.mapPages(2 ** 39, 0, SZ_32M, 4, RW);
    expect(allocator.live.size).toBeGreaterThan(2);
    freeIoPgtableOps(t);
    expect(tlb.calls[tlb.calls.length - 1]).toEqual({ op: 'all' });
    expect(allocator.live.size).toBe(0);
    await expectErrno(() => t.mapPages(0, 0, SZ_16K, 1, RW), 'EINVAL', /freed/);
    await expectErrno(() => t.unmapPages(0, SZ_16K, 1, null), 'EINVAL', /freed/);
    await expectErrno(() => t.iovaToPhys(0), 'EINVAL', /freed/);
    await expectErrno(() => freeIoPgtableOps(t), 'EINVAL', /freed twice/);
  });

  it('places tables in the allocator window it was given', () => {
    const t = make('ARM_64_LPAE_S1', BITMAP_4K, 48, 48);
    t.mapPages(0x1234_5000_0000, 0, SZ_4K, 1, RW);
    for (const [pa] of allocator.live) {
      expect(pa).toBeGreaterThanOrEqual(TABLE_RAM_BASE);
      expect(pa).toBeLessThan(TABLE_RAM_BASE + TABLE_RAM_SIZE);
    }
  });
});
