/**
 * Real arm64 DTBs (from Debian's linux-image-arm64 package) against expectations generated from
 * `dtc -I dtb -O dts` output by test/fixtures/dtb/make-expected.py, which parses dtc's text,
 * not our reader.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ofReg } from '../../../bus/of/address.js';
import { parseFdt, writeFdt } from '../../../bus/of/fdt.js';
import { ofIrqByName, ofIrqs, ofMapId } from '../../../bus/of/irq.js';
import { ofIommuConfigure, ofIommuMapEntries, ofIommuSpecs, ofPciIommuConfigure } from '../../../bus/of/of-iommu.js';
import type { DeviceTree } from '../../../bus/of/tree.js';
import { canonical, dtcDecompile, FIXTURE_DIR, fixture, hasDtc } from './dt-test-utils.js';

/** The same SMMU compatibles make-expected.py matches. */
const SMMU_COMPATIBLE = [/^arm,smmu-v[123]$/, /^arm,mmu-40[01]$/, /^arm,mmu-500$/, /^cavium,smmu-v2$/, /^qcom,.*smmu-(v2|500)$/, /^nvidia,.*smmu.*$/, /^marvell,.*smmu-500$/];

const FIXTURES = readdirSync(FIXTURE_DIR)
  .filter((f) => f.endsWith('.dtb'))
  .map((f) => f.slice(0, -4))
  .sort();

/** What make-expected.py computes, computed with our reader and of_* helpers. */
function ours(tree: DeviceTree, source: string) {
  const smmus = [];
  const masters = [];
  const iommuMaps = [];
  let nodeCount = 0;
  for (const n of tree.nodes()) {
    nodeCount++;
    if (n.compatible.some((c) => SMMU_COMPATIBLE.some((r) => r.test(c)))) {
      smmus.push({ path: n.path, compatible: n.compatible, status: n.has('status') ? n.string('status')! : null, available: n.available });
    }
    if (n.has('iommus')) {
      masters.push({ path: n.path, available: n.available, iommus: ofIommuSpecs(tree, n).map((s) => ({ iommu: s.iommu.path, cells: s.cells })) });
    }
    if (n.has('iommu-map')) {
      iommuMaps.push({
        path: n.path,
        available: n.available,
        mask: n.u32('iommu-map-mask') ?? null,
        entries: ofIommuMapEntries(tree, n).map((e) => ({ ridBase: e.ridBase, iommu: e.iommu.path, outBase: e.outBase, length: e.length })),
      });
    }
  }
  return { source, nodeCount, memreserve: tree.reservations, smmus, masters, iommuMaps };
}

describe.each(FIXTURES)('%s.dtb', (name) => {
  const blob = fixture(`${name}.dtb`);
  const expected = JSON.parse(readFileSync(`${FIXTURE_DIR}${name}.expected.json`, 'utf8'));
  const tree = parseFdt(blob);

  it('matches the dtc-derived expectation exactly (SMMUs, masters, iommu-maps)', () => {
    expect(ours(tree, `${name}.dtb`)).toEqual(expected);
  });

  it('round-trips through writeFdt', () => {
    const again = parseFdt(writeFdt(tree));
    expect(canonical(again)).toEqual(canonical(tree));
    expect(Buffer.compare(writeFdt(again), writeFdt(tree))).toBe(0);
  });

  it.skipIf(!hasDtc)('decompiles with dtc to the same text and warnings after writeFdt (skipped when dtc is not on PATH)', () => {
    const original = dtcDecompile(blob);
    const rewritten = dtcDecompile(writeFdt(tree));
    expect(rewritten.status).toBe(0);
    expect(rewritten.dts).toBe(original.dts);
    expect(rewritten.warnings).toEqual(original.warnings);
  });

  it('configures every available master exactly as its iommus say', () => {
    for (const m of expected.masters as { path: string; available: boolean; iommus: { iommu: string; cells: number[] }[] }[]) {
      if (!m.available) continue;
      const node = tree.byPath(m.path)!;
      const fw = ofIommuConfigure(tree, node);
      const allOn = m.iommus.every((s) => tree.byPath(s.iommu)!.available);
      if (!allOn || m.iommus.length === 0) {
        expect(fw, m.path).toBeNull();
        continue;
      }
      expect(fw!.iommuNode.path).toBe(m.iommus[0].iommu);
      expect(fw!.specifiers).toEqual(m.iommus.map((s) => s.cells));
      expect(fw!.ids).toEqual(m.iommus.filter((s) => s.cells.length > 0).map((s) => s.cells[0]));
    }
  });

  it('resolves reg and interrupts of every SMMU', () => {
    for (const s of expected.smmus as { path: string }[]) {
      const node = tree.byPath(s.path)!;
      const regs = ofReg(tree, node);
      expect(regs.length, s.path).toBeGreaterThan(0);
      for (const irq of ofIrqs(tree, node)) {
        expect(irq.controller.has('interrupt-controller')).toBe(true);
        expect(irq.specifier.length).toBe(irq.controller.u32('#interrupt-cells'));
      }
    }
  });
});

describe('known facts of the real boards', () => {
  const load = (n: string) => parseFdt(fixture(`${n}.dtb`));

  it('Juno r2: the PCIe iommu-map-mask of 0 sends every RID to stream 0 of the MMU-401', () => {
    const t = load('juno-r2');
    const smmu = t.byPath('/iommu@2b500000')!;
    expect(smmu.compatible).toEqual(['arm,mmu-401', 'arm,smmu-v1']);
    expect(ofReg(t, smmu)).toEqual([{ address: 0x2b50_0000, size: 0x1_0000 }]);
    const irqs = ofIrqs(t, smmu);
    expect(irqs.map((i) => [i.controller.path, i.specifier])).toEqual([
      ['/interrupt-controller@2c010000', [0, 40, 4]],
      ['/interrupt-controller@2c010000', [0, 40, 4]],
    ]);
    const host = t.byPath('/pcie@40000000')!;
    for (const rid of [0, 0x100, 0xffff]) {
      const fw = ofPciIommuConfigure(t, host, rid)!;
      expect(fw.iommuNode).toBe(smmu);
      expect(fw.specifiers).toEqual([[0]]);
    }
    // the MMU-400 is disabled; the others are okay (or have no status)
    expect(t.byPath('/iommu@2b400000')!.available).toBe(false);
    const dma = ofIommuConfigure(t, t.byPath('/dma-controller@7ff00000')!)!;
    expect(dma.ids).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('FVP Base RevC: SMMUv3 behind PCIe iommu-map and msi-map, ATS supported', () => {
    const t = load('fvp-base-revc');
    const smmu = t.byPath('/iommu@2b400000')!;
    expect(smmu.compatible).toEqual(['arm,smmu-v3']);
    expect(ofReg(t, smmu)).toEqual([{ address: 0x2b40_0000, size: 0x10_0000 }]);
    expect(ofIrqByName(t, smmu, 'gerror')!.specifier).toEqual([0, 79, 1]);
    expect(ofIrqByName(t, smmu, 'nonexistent')).toBeNull();
    const host = t.byPath('/pci@40000000')!;
    const fw = ofPciIommuConfigure(t, host, 0x108)!;
    expect(fw.iommuNode).toBe(smmu);
    expect(fw.ids).toEqual([0x108]);
    expect(fw.atsSupported).toBe(true);
    expect(ofPciIommuConfigure(t, host, 0x1_0000)).toBeNull(); // beyond the 64K-entry map
    const msi = ofMapId(t, host, 0x108, 'msi-map', 'msi-map-mask')!;
    expect(msi.target.path).toBe('/interrupt-controller@2f000000/msi-controller@2f020000');
    expect(msi.args).toEqual([0x108]);
  });

  it('SM8250: MMU-500 with 2-cell specifiers, and the legacy 1-cell PCIe iommu-map', () => {
    const t = load('sm8250-mtp');
    const smmu = t.byPath('/soc@0/iommu@15000000')!;
    expect(smmu.u32('#iommu-cells')).toBe(2);
    expect(ofReg(t, smmu)).toEqual([{ address: 0x1500_0000, size: 0x10_0000 }]);
    const ufs = ofIommuConfigure(t, t.byPath('/soc@0/ufshc@1d84000')!)!;
    expect(ufs.specifiers).toEqual([[0xe0, 0], [0x4e0, 0]]);
    expect(ufs.ids).toEqual([0xe0, 0x4e0]);
    const pcie = t.byPath('/soc@0/pcie@1c00000')!;
    expect(ofIommuMapEntries(t, pcie).map((e) => [e.ridBase, e.sidBase, e.length])).toEqual([
      [0, 0x1c00, 1],
      [0x100, 0x1c01, 1],
    ]);
    expect(ofPciIommuConfigure(t, pcie, 0x100)!.specifiers).toEqual([[0x1c01]]);
    expect(ofPciIommuConfigure(t, pcie, 0x200)).toBeNull();
  });

  it('Hip07 D05: five SMMUv3s, some above 4 GiB, wired through mbigen interrupt controllers', () => {
    const t = load('hip07-d05');
    const smmus = [...t.nodes()].filter((n) => n.isCompatible('arm,smmu-v3'));
    expect(smmus.map((n) => ofReg(t, n)[0].address)).toEqual([0xa004_0000, 0xd004_0000, 0x8_d004_0000, 0x400_d004_0000, 0x408_d004_0000]);
    const irqs = ofIrqs(t, t.byPath('/iommu@d0040000')!);
    expect(irqs.map((i) => [i.name, i.specifier])).toEqual([
      ['eventq', [733, 1]],
      ['gerror', [734, 1]],
      ['priq', [735, 1]],
    ]);
    expect(irqs[0].controller.path).toBe('/interrupt-controller@d0080000/intc_smmu_alg');
    const crypto = ofIommuConfigure(t, t.byPath('/soc/crypto@d0000000')!)!;
    expect(crypto.iommuNode.path).toBe('/iommu@d0040000');
    expect(crypto.ids).toEqual([0x600]);
    expect(crypto.dmaCoherent).toBe(true);
  });

  it('J721E: the SMMUv3 address is translated through two nested buses', () => {
    const t = load('k3-j721e-evm');
    const smmu = t.byPath('/bus@100000/bus@30000000/iommu@36600000')!;
    expect(ofReg(t, smmu)).toEqual([{ address: 0x3660_0000, size: 0x10_0000 }]);
    const msi = ofMapId(t, t.byPath('/bus@100000/pcie@2910000')!, 0x100, 'msi-map', 'msi-map-mask')!;
    expect(msi.args).toEqual([0x1_0100]);
  });
});
