/**
 * Real arm64 DTBs from the Linux tree boot, and `boot --json` reports every SMMU node and every
 * enabled master's `iommus` exactly as dtc shows them (the expectations were generated from
 * `dtc -I dtb -O dts` output by test/fixtures/dtb/make-expected.py, not by our parser).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bootReport } from '../../scenarios/lib/boot-report.js';
import { boot, machineFromDtb } from '../../scenarios/lib/lab.js';

const DIR = join(__dirname, '..', 'fixtures', 'dtb');
const blobs = readdirSync(DIR).filter((f) => f.endsWith('.dtb'));

interface Expected {
  smmus: { path: string; compatible: string[]; available: boolean }[];
  masters: { path: string; available: boolean; iommus: { iommu: string; cells: number[] }[] }[];
  iommuMaps: { path: string; available: boolean; entries: { ridBase: number; iommu: string; outBase: number[]; length: number }[] }[];
}

describe('real DTBs boot', () => {
  it('has the boards the acceptance names', () => {
    for (const b of ['juno-r2', 'fvp-base-revc', 'sm8250-mtp', 'hip07-d05', 'zynqmp-zcu102-rev1.0', 'amd-overdrive-rev-b1', 'k3-j721e-evm']) {
      expect(blobs).toContain(`${b}.dtb`);
    }
  });

  it('lists only enabled PCI hosts: LX2160A RDB (six disabled PCIe controllers) and SM8250 MTP (all disabled)', async () => {
    const hosts = async (name: string): Promise<string[]> => {
      const machine = machineFromDtb(new Uint8Array(readFileSync(join(DIR, `${name}.dtb`))), { seed: 1 });
      return bootReport(machine, await boot(machine)).pciHosts.map((h) => h.node);
    };
    expect(await hosts('fsl-lx2160a-rdb')).toEqual(['/soc/fsl-mc@80c000000']);
    expect(await hosts('sm8250-mtp')).toEqual([]);
  });

  for (const file of blobs) {
    it(`${file}: SMMUs and masters as dtc shows them`, async () => {
      const expected = JSON.parse(readFileSync(join(DIR, file.replace(/\.dtb$/, '.expected.json')), 'utf8')) as Expected;
      const machine = machineFromDtb(new Uint8Array(readFileSync(join(DIR, file))), { seed: 1 });
      const kernel = await boot(machine);
      const report = bootReport(machine, kernel);
      expect(report.iommus.map((i) => ({ node: i.node, compatible: i.compatible, disabled: i.status === 'disabled' }))).toEqual(
        expected.smmus.map((s) => ({ node: s.path, compatible: s.compatible, disabled: !s.available })),
      );
      expect(report.masters.map((m) => ({ node: m.node, iommus: m.iommus }))).toEqual(
        expected.masters.filter((m) => m.available).map((m) => ({ node: m.path, iommus: m.iommus })),
      );
      expect(report.pciHosts).toEqual(
        expected.iommuMaps.filter((h) => h.available).map((h) => ({
          node: h.path,
          iommuMap: h.entries.map((e) => ({ ridBase: e.ridBase, iommu: e.iommu, sidBase: e.outBase[0] ?? 0, length: e.length })),
        })),
      );
      // group and domain come together, and only once a driver put the master in the iommu core.
      for (const m of report.masters) {
        expect(m.group === null, m.node).toBe(m.domain === null);
        if (m.domain !== null) expect(['DMA', 'DMA-FQ', 'IDENTITY', 'BLOCKED', 'UNMANAGED'], m.node).toContain(m.domain);
        const behind = m.iommus.map((s) => report.iommus.find((i) => i.node === s.iommu)?.status);
        if (m.group !== null) expect(behind.every((st) => st === 'probed'), m.node).toBe(true);
      }
      // Every enabled SMMU is modelled and probed by its driver.
      for (const i of report.iommus) {
        if (i.status !== 'disabled') expect({ node: i.node, status: i.status, error: i.error }).toEqual({ node: i.node, status: 'probed', error: null });
      }
    });
  }
});
