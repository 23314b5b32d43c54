/**
 * Every DTB in DTB_SWEEP_DIR (see `make dtb-sweep`, which fetches Debian's arm64 kernel DTBs) boots,
 * and `boot --json` reports SMMUs, masters and iommu-maps exactly as dtc shows them, with every
 * enabled SMMU probed.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bootReport } from '../../scenarios/lib/boot-report.js';
import { boot, machineFromDtb } from '../../scenarios/lib/lab.js';

const dir = process.env.DTB_SWEEP_DIR;

interface Expected {
  smmus: { path: string; compatible: string[]; available: boolean }[];
  masters: { path: string; available: boolean; iommus: { iommu: string; cells: number[] }[] }[];
  iommuMaps: { path: string; available: boolean; entries: { ridBase: number; iommu: string; outBase: number[]; length: number }[] }[];
}

describe.skipIf(!dir)('DTB sweep', () => {
  const files = dir ? readdirSync(dir).filter((f) => f.endsWith('.dtb')) : [];
  for (const f of files) {
    it(f, async () => {
      const exp = JSON.parse(readFileSync(join(dir!, f.replace(/\.dtb$/, '.expected.json')), 'utf8')) as Expected;
      const machine = machineFromDtb(new Uint8Array(readFileSync(join(dir!, f))), { seed: 1 });
      const report = bootReport(machine, await boot(machine));
      expect(report.iommus.map((i) => [i.node, i.compatible, i.status === 'disabled' ? 'disabled' : `${i.status}${i.error ? `: ${i.error}` : ''}`])).toEqual(
        exp.smmus.map((s) => [s.path, s.compatible, s.available ? 'probed' : 'disabled']),
      );
      expect(report.masters.map((m) => [m.node, m.iommus])).toEqual(exp.masters.filter((m) => m.available).map((m) => [m.path, m.iommus]));
      expect(report.pciHosts.map((h) => [h.node, h.iommuMap])).toEqual(
        exp.iommuMaps.filter((h) => h.available).map((h) => [h.path, h.entries.map((e) => ({ ridBase: e.ridBase, iommu: e.iommu, sidBase: e.outBase[0] ?? 0, length: e.length }))]),
      );
    });
  }
});
