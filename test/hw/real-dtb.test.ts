/**
 * Real arm64 DTBs from the Linux tree: the machine builds from every one without throwing, with
 * one IOMMU entry per SMMU node (status from firmware), one master per enabled node with `iommus`
 * (specifier cells exactly as dtc shows them) and one PCI host per `iommu-map`, as recorded in
 * the fixtures' .expected.json (written from dtc's output).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseFdt } from '../../bus/of/fdt.js';
import { Machine } from '../../hw/machine.js';

const DIR = new URL('../fixtures/dtb/', import.meta.url);

interface Expected {
  smmus: { path: string; compatible: string[]; available: boolean }[];
  masters: { path: string; available: boolean; iommus: { iommu: string; cells: number[] }[] }[];
  iommuMaps: { path: string; available: boolean; mask: number | null; entries: { ridBase: number; iommu: string; outBase: number[]; length: number }[] }[];
}

const boards = readdirSync(DIR)
  .filter((f) => f.endsWith('.dtb'))
  .map((f) => f.slice(0, -4));

function build(board: string): Machine {
  const blob = new Uint8Array(readFileSync(new URL(`${board}.dtb`, DIR)));
  return Machine.fromDeviceTree(parseFdt(blob), { seed: 1 });
}

describe('machines from real DTBs', () => {
  it('has the fixtures', () => {
    expect(boards).toEqual(expect.arrayContaining(['juno-r2', 'fvp-base-revc', 'sm8250-mtp', 'hip07-d05', 'zynqmp-zcu102-rev1.0']));
  });

  for (const board of boards) {
    it(`${board}: SMMUs, masters and PCI hosts as firmware describes them`, () => {
      const expected = JSON.parse(readFileSync(new URL(`${board}.expected.json`, DIR), 'utf8')) as Expected;
      const m = build(board);
      const d = m.describe();

      expect(d.iommus.map((i) => [i.node, i.compatible, i.status === 'disabled'])).toEqual(
        expected.smmus.map((s) => [s.path, s.compatible, !s.available]),
      );
      for (const i of d.iommus) if (i.status !== 'disabled') expect(['modelled', 'no-model']).toContain(i.status);

      expect(d.masters.map((x) => ({ path: x.node, iommus: x.iommus }))).toEqual(
        expected.masters.filter((x) => x.available).map((x) => ({ path: x.path, iommus: x.iommus })),
      );

      const hosts = new Map(d.pciHosts.map((h) => [h.node, h]));
      for (const map of expected.iommuMaps.filter((x) => x.available)) {
        const h = hosts.get(map.path);
        expect(h, map.path).toBeDefined();
        expect(h!.iommuMapMask).toBe(map.mask ?? 0xffffffff);
        expect(h!.iommuMap).toEqual(map.entries.map((e) => ({ ridBase: e.ridBase, iommu: e.iommu, sidBase: e.outBase[0], length: e.length })));
      }

      // Nothing but the boot loader's missing memory size and root ports described as PCI-to-PCI
      // bridges (not modelled; their endpoints are not in the DT anyway) is worth a warning here.
      expect(d.warnings.filter((w) => !w.includes('describes no RAM') && !w.includes('PCI-to-PCI bridges are not modelled'))).toEqual([]);
      expect(d.ram.length).toBeGreaterThan(0);
    });
  }

  it('juno-r2: seven MMU-401/400 nodes, ECAM host whose RIDs all map to stream 0 of one MMU-401, GICv2m frames', () => {
    const m = build('juno-r2');
    const d = m.describe();
    expect(d.iommus).toHaveLength(7);
    expect(d.iommus.filter((i) => i.status === 'disabled').map((i) => i.node)).toEqual(['/iommu@2b400000']);
    const host = d.pciHosts.find((h) => h.node === '/pcie@40000000')!;
    expect(host.ecam).toEqual({ base: 0x4000_0000, size: 0x1000_0000 });
    expect(m.pciHosts.get('/pcie@40000000')!.streamFor(0x0123)).toEqual({ iommu: '/iommu@2b500000', streamId: 0 });
    // The four v2m frames sit at the GIC's translated child addresses.
    expect(m.msiFrames.map((f) => f.base)).toEqual([0x2c1c_0000, 0x2c1d_0000, 0x2c1e_0000, 0x2c1f_0000]);
    expect(m.cpu.mmioPresent(0x2b50_0000, 0x1_0000)).toBe(true); // the MMU-401's registers, modelled or not
    expect(m.cpu.mmioPresent(0x2b40_0000, 4)).toBe(false); // the disabled MMU-400 has none
  });

  it('sm8250-mtp: two-cell specifiers of the MMU-500 are kept whole', () => {
    const d = build('sm8250-mtp').describe();
    const gpu = d.masters.find((x) => x.iommus.some((i) => i.iommu === '/soc@0/iommu@3da0000'))!;
    expect(gpu.iommus[0].cells).toHaveLength(2);
    expect(gpu.streams[0].streamId).toBe(gpu.iommus[0].cells[0]);
  });
});
