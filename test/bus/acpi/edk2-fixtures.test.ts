/**
 * Arm's edk2-platforms tables (N1SDP; the Neoverse N1 reference design RD-N1-Edge), compiled with
 * iasl from the .asl sources in test/fixtures/acpi/<board>/, booted, and compared twice: with the
 * values the published sources give (written out below), and, where acpica-tools is installed,
 * with ACPICA's own disassembly of the IORT blob (iasl -d), node by node: every SMMU probed with
 * its base and interrupts, every root complex's ID mappings on its host bridge, every SMMU's own
 * MSI DeviceID and ITS group.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAcpiTables } from '../../../bus/acpi/acpi-boot.js';
import { iortPciIommuMap, iortPmsiGetDevId } from '../../../bus/acpi/iort-walk.js';
import { readAcpiDir } from '../../../cli/acpi.js';
import type { Kernel } from '../../../kernel/kernel.js';
import type { Machine } from '../../../hw/machine.js';
import { bootReport } from '../../../scenarios/lib/boot-report.js';
import { bootFromAcpi } from '../../../scenarios/lib/lab.js';
import { iaslReadIort, iaslVersion } from './iasl-iort-reading.js';

const FIXTURES = join(__dirname, '../../fixtures/acpi');
const RAM = { ram: [{ base: 0x8000_0000, size: 0x7f00_0000 }] };
const w = (): void => undefined;
const hasIasl = iaslVersion() !== null;

async function bootBoard(board: string): Promise<{ tables: Map<string, Uint8Array>; machine: Machine; kernel: Kernel }> {
  const tables = readAcpiDir(join(FIXTURES, board));
  const { machine, kernel } = await bootFromAcpi(tables, RAM, { seed: 1 });
  return { tables, machine, kernel };
}

/** The boot compared with ACPICA's reading of the IORT, node by node. */
function compareWithIasl(tables: Map<string, Uint8Array>, machine: Machine, kernel: Kernel): void {
  const nodes = iaslReadIort(tables.get('IORT')!);
  const parsed = parseAcpiTables(tables);
  const iort = parsed.iort!;
  const report = bootReport(machine, kernel);
  const described = machine.describe();
  const pathOf = (off: number, type: number): string => `IORT:${type === 4 ? 'smmuv3' : 'smmu'}@0x${off.toString(16)}`;
  const smmus = nodes.filter((n) => n.type === 4);
  expect(report.iommus.map((i) => i.node).sort()).toEqual(smmus.map((n) => pathOf(n.offset, 4)).sort());
  for (const n of smmus) {
    const path = pathOf(n.offset, 4);
    expect(report.iommus.find((i) => i.node === path)).toMatchObject({ status: 'probed', driver: 'arm-smmu-v3', error: null });
    expect(described.iommus.find((i) => i.node === path)?.regions[0].base).toBe(n.fields.get('Base Address'));
    // Interrupts: each non-zero GSIV, edge-triggered SPI, in Linux's order and names.
    const gsivs = [
      ['eventq', n.fields.get('Event GSIV')],
      ['priq', n.fields.get('PRI GSIV')],
      ['gerror', n.fields.get('GERR GSIV')],
      ['cmdq-sync', n.fields.get('Sync GSIV')],
    ].filter(([, g]) => g !== 0) as [string, number][];
    const dn = kernel.dt.byPath(path)!;
    expect(dn.strings('interrupt-names')).toEqual(gsivs.map(([name]) => name));
    expect(dn.cells('interrupts')).toEqual(gsivs.flatMap(([, g]) => [0, g - 32, 1]));
    // Its own MSIs: the single mapping at its DeviceID mapping index, to an ITS group.
    const idx = n.fields.get('Device ID Mapping Index') as number;
    const m = n.mappings[idx];
    const its = nodes.find((x) => x.offset === m.outputReference)!;
    expect(its.type).toBe(0);
    const node = iort.nodes.find((x) => x.offset === n.offset)!;
    const dev = iortPmsiGetDevId(iort, node, w);
    expect(dev).toMatchObject({ deviceId: m.outputBase, its: { offset: its.offset, itsIds: its.lists.get('Identifiers') } });
  }
  const rcs = nodes.filter((n) => n.type === 2);
  expect(report.pciHosts).toHaveLength(rcs.length);
  for (const n of rcs) {
    const seg = n.fields.get('PCI Segment Number');
    const host = parsed.namespace.devices.find((d) => d.hid === 'PNP0A08' && (d.seg ?? 0) === seg)!;
    const toSmmu = n.mappings.filter((m) => nodes.find((x) => x.offset === m.outputReference)?.type === 4);
    expect(report.pciHosts.find((h) => h.node === host.path)?.iommuMap).toEqual(
      toSmmu.map((m) => ({ ridBase: m.inputBase, iommu: pathOf(m.outputReference, 4), sidBase: m.outputBase, length: m.idCount + 1 })),
    );
    // A requester ID through the kernel's walk lands on the same SMMU and StreamID.
    const rc = iort.nodes.find((x) => x.offset === n.offset)!;
    for (const m of toSmmu) {
      const rid = m.inputBase + 0x108;
      expect(iortPciIommuMap(iort, rc, rid, w)).toMatchObject({ iommu: { offset: m.outputReference }, streamId: m.outputBase + 0x108 });
    }
  }
}

describe('Arm N1SDP tables (edk2-platforms N1Sdp configuration manager, iasl-compiled)', () => {
  it('boot both SMMUv3s, each in front of its root complex (PCIe segment 0, CCIX segment 1), with the GSIVs and ITS groups the table gives', async () => {
    const { tables, machine, kernel } = await bootBoard('n1sdp');
    const d = machine.describe();
    expect(d.interruptControllers).toEqual([{ node: 'MADT:gicd@0x30000000', compatible: 'arm,gic-v3', kind: 'gic-v3' }]);
    expect(d.iommus.map((i) => [i.node, i.status, i.regions[0].base])).toEqual([
      ['IORT:smmuv3@0x100', 'modelled', 0x4f40_0000],
      ['IORT:smmuv3@0x16c', 'modelled', 0x4f00_0000],
    ]);
    expect(d.pciHosts.map((h) => [h.node, h.ecam?.base, h.busRange, h.atsSupported])).toEqual([
      ['\\_SB_.PCI0', 0x7000_0000, [0, 17], true],
      ['\\_SB_.PCI1', 0x6800_0000, [0, 17], true],
    ]);
    const report = bootReport(machine, kernel);
    expect(report.iommus.map((i) => [i.node, i.status, i.driver])).toEqual([
      ['IORT:smmuv3@0x100', 'probed', 'arm-smmu-v3'],
      ['IORT:smmuv3@0x16c', 'probed', 'arm-smmu-v3'],
    ]);
    expect(report.pciHosts).toEqual([
      { node: '\\_SB_.PCI0', iommuMap: [{ ridBase: 0, iommu: 'IORT:smmuv3@0x100', sidBase: 0, length: 0x1_0000 }] },
      { node: '\\_SB_.PCI1', iommuMap: [{ ridBase: 0, iommu: 'IORT:smmuv3@0x16c', sidBase: 0, length: 0x1_0000 }] },
    ]);
    expect(kernel.dt.byPath('IORT:smmuv3@0x100')!.cells('interrupts')).toEqual([0, 267 - 32, 1, 0, 269 - 32, 1, 0, 268 - 32, 1]);
    // Each SMMU's own MSIs: DeviceID 0 to its SMMU ITS group; both groups list ITS 1 (as published).
    const iort = parseAcpiTables(tables).iort!;
    const byOff = (o: number) => iort.nodes.find((n) => n.offset === o)!;
    expect(iortPmsiGetDevId(iort, byOff(0x100), w)).toMatchObject({ its: { offset: 0x48, itsIds: [1] }, deviceId: 0 });
    expect(iortPmsiGetDevId(iort, byOff(0x16c), w)).toMatchObject({ its: { offset: 0x30, itsIds: [1] }, deviceId: 0 });
    expect(parseAcpiTables(tables).madt!.its.map((i) => [i.translationId, i.baseAddress])).toEqual([
      [0, 0x3004_0000],
      [1, 0x3006_0000],
      [2, 0x3008_0000],
      [3, 0x300a_0000],
    ]);
  });

  it.skipIf(!hasIasl)('boot as ACPICA reads the IORT (iasl -d), node by node', async () => {
    const { tables, machine, kernel } = await bootBoard('n1sdp');
    compareWithIasl(tables, machine, kernel);
  });
});

describe('Arm Neoverse N1 reference design, RD-N1-Edge (edk2-platforms SgiPkg Iort.aslc, iasl-compiled)', () => {
  it('boot the SMMUv3 at 0x4F000000 in front of segment 0 (no ATS), its own MSIs as DeviceID 0x10000 to ITS 0', async () => {
    const { tables, machine, kernel } = await bootBoard('rdn1edge');
    const d = machine.describe();
    expect(d.iommus.map((i) => [i.node, i.status, i.regions[0]])).toEqual([['IORT:smmuv3@0x48', 'modelled', { base: 0x4f00_0000, size: 0x2_0000 }]]);
    expect(d.pciHosts.map((h) => [h.node, h.ecam, h.busRange, h.atsSupported])).toEqual([['\\_SB_.PCI0', { base: 0x6000_0000, size: 0x1000_0000 }, [0, 255], false]]);
    const report = bootReport(machine, kernel);
    expect(report.iommus).toEqual([{ node: 'IORT:smmuv3@0x48', compatible: ['arm,smmu-v3'], status: 'probed', driver: 'arm-smmu-v3', error: null }]);
    expect(report.pciHosts).toEqual([{ node: '\\_SB_.PCI0', iommuMap: [{ ridBase: 0, iommu: 'IORT:smmuv3@0x48', sidBase: 0, length: 0x1_0000 }] }]);
    expect(kernel.dt.byPath('IORT:smmuv3@0x48')!.strings('interrupt-names')).toEqual(['eventq', 'gerror', 'cmdq-sync']);
    const iort = parseAcpiTables(tables).iort!;
    expect(iortPmsiGetDevId(iort, iort.nodes[1], w)).toMatchObject({ its: { offset: 0x30, itsIds: [0] }, deviceId: 0x1_0000 });
    expect(kernel.core.findDevice('\\_SB_.COM0')?.status).toBe('no-driver');
  });

  it.skipIf(!hasIasl)('boot as ACPICA reads the IORT (iasl -d), node by node', async () => {
    const { tables, machine, kernel } = await bootBoard('rdn1edge');
    compareWithIasl(tables, machine, kernel);
  });
});
