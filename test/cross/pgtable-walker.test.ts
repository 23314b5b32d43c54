/**
 * Cross-check of the two independent readings of the Armv8 translation table format (the property
 * itself is in pgtable-walker-check.ts): random map/unmap sequences through the kernel's io-pgtable,
 * then the machine's walker, configured only from the register values io-pgtable produced, must
 * resolve every mapped IOVA exactly as iova_to_phys does and fault on every unmapped one. Every format
 * runs under several fixed seeds; `make soak` sweeps many more (pgtable-walker.soak.test.ts).
 *
 * Before the random sequences: every configuration io-pgtable accepts (granule, stage, ias, oas) is
 * compiled by the walker from TCR/VTCR and TTBR alone, and one page at each end of its input range is
 * mapped and walked.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IOMMU_READ, IOMMU_WRITE, type IoPgtableFmt } from '../../core/io-pgtable.js';
import { allocIoPgtableOps, freeIoPgtableOps } from '../../core/io-pgtable-arm.js';
import { WalkConfigError } from '../../hw/walker/config.js';
import { ACCESS_PRIV, WalkResult } from '../../hw/walker/result.js';
import { TranslationTableWalker } from '../../hw/walker/walker.js';
import { recordingFlushOps, tableRam } from '../core/io-pgtable-rig.js';
import { FORMATS, formatName, NESTED_PAIRS, nestedName, nestedProperty, singleStageProperty, walkerConfig } from './pgtable-walker-check.js';

/** Seeds per format, and random sequences per seed. PGTABLE_CROSS_RUNS raises the runs for a longer hunt. */
const SEEDS = 5;
const RUNS = Number(process.env.PGTABLE_CROSS_RUNS ?? 20);

describe('every configuration io-pgtable builds, the walker reads from its registers', () => {
  const BITMAPS: Record<string, number> = {
    '4K': 0x1000 + 0x20_0000 + 0x4000_0000,
    '16K': 0x4000 + 0x200_0000,
    '64K': 0x1_0000 + 0x2000_0000 + 2 ** 42,
  };
  const FMTS: IoPgtableFmt[] = ['ARM_64_LPAE_S1', 'ARM_64_LPAE_S2', 'ARM_32_LPAE_S1', 'ARM_32_LPAE_S2'];

  it('compiles each with the same start level and top-level table, and walks a page at each end of the input range', () => {
    let built = 0;
    const refused: string[] = [];
    for (const fmt of FMTS) {
      for (const [gname, bitmap] of Object.entries(BITMAPS)) {
        for (let ias = 32; ias <= 52; ias++) {
          for (const oas of [32, 36, 40, 42, 44, 48, 52]) {
            const { ram, allocator } = tableRam();
            let t;
            try {
              t = allocIoPgtableOps(fmt, { pgsizeBitmap: bitmap, ias, oas, tlb: recordingFlushOps(), ram, allocator });
            } catch {
              continue; // io-pgtable refuses it (tested in test/core/io-pgtable.test.ts)
            }
            built++;
            const what = `${fmt} ${gname} ias ${t.cfg.ias} oas ${t.cfg.oas}`;
            let cfg;
            try {
              cfg = walkerConfig(t);
            } catch (e) {
              if (!(e instanceof WalkConfigError)) throw e;
              // The kernel's stage 2 concatenation rule assumes ias <= oas; with a larger input size
              // its starting level can be one the architecture forbids for that output size, and the
              // hardware refuses it as it would refuse the kernel's tables.
              expect(t.armLpaeS2Cfg, what).not.toBeNull();
              expect(t.cfg.ias, what).toBeGreaterThan(t.cfg.oas);
              expect(e.reason, what).toMatch(/starting level \d is not permitted/);
              refused.push(what);
              freeIoPgtableOps(t);
              continue;
            }
            expect([cfg.startLevel, cfg.concatenatedTables * t.granule], what).toEqual([t.startLevel, Math.max(t.pgdSize, t.granule)]);
            const walker = new TranslationTableWalker(ram);
            const out = new WalkResult();
            const top = 2 ** t.cfg.ias - t.granule;
            const paTop = 2 ** t.cfg.oas - t.granule;
            t.mapPages(0, paTop, t.granule, 1, IOMMU_READ | IOMMU_WRITE);
            t.mapPages(top, t.granule, t.granule, 1, IOMMU_READ | IOMMU_WRITE);
            for (const [va, pa] of [[0x18, paTop + 0x18], [top + t.granule - 8, 2 * t.granule - 8]] as const) {
              const ok = cfg.stage === 1 ? walker.walkStage1(cfg, va, ACCESS_PRIV, out) : walker.walkStage2(cfg, va, 0, out);
              expect([ok, out.pa], `${what}: walk of 0x${va.toString(16)}`).toEqual([true, pa]);
            }
            const hole = t.granule;
            expect(cfg.stage === 1 ? walker.walkStage1(cfg, hole, ACCESS_PRIV, out) : walker.walkStage2(cfg, hole, 0, out)).toBe(false);
            expect([out.fault, out.faultLevel], what).toEqual(['translation', 3]);
            freeIoPgtableOps(t);
            expect(allocator.live.size, what).toBe(0);
          }
        }
      }
    }
    expect(built).toBeGreaterThan(800);
    // Only stage 2 tables with ias > oas and a starting level the kernel does not concatenate away.
    expect(refused.length).toBeLessThan(built / 5);
  });
});

describe('io-pgtable and the hardware walker agree', () => {
  it.each(FORMATS.map((f, i) => [formatName(f), f, i] as const))('%s', (_name, f, i) => {
    for (let s = 0; s < SEEDS; s++) fc.assert(singleStageProperty(f), { seed: 0x5eed_0000 + 0x100 * i + s, numRuns: RUNS });
  });
});

describe('nested: stage 1 tables and output through a stage 2 table', () => {
  it.each(NESTED_PAIRS.map(([a, b], i) => [nestedName(a, b), a, b, i] as const))('%s', (_name, s1f, s2f, i) => {
    for (let s = 0; s < SEEDS; s++) fc.assert(nestedProperty(s1f, s2f), { seed: 0x7e57_0000 + 0x100 * i + s, numRuns: Math.ceil(RUNS / 2) });
  });
});
