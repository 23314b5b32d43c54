/**
 * IORT PMCG nodes (SMMUv3 performance monitor counter groups) become platform devices the kernel
 * sees, as Linux's iort_add_platform_device() makes "arm-smmu-v3-pmcg" devices: page 0, page 1 from
 * node revision 1, the "overflow" interrupt when its GSIV is set; `boot` reports them (no driver
 * binds them: there is no SMMUv3 PMU driver here).
 */
import { describe, expect, it } from 'vitest';
import { writeIort } from '../../../bus/acpi/iort.js';
import { bootReport } from '../../../scenarios/lib/boot-report.js';
import { bootFromAcpi } from '../../../scenarios/lib/lab.js';
import { formatIwbReport, formatPmcgReport } from '../../../scenarios/lib/pmcg-report.js';
import { writeDsdt } from '../../../bus/acpi/aml.js';
import { qemuIortNodes, qemuSmmuOffset, qemuTables } from './acpi-fixture.js';

describe('IORT PMCG nodes', () => {
  it('a platform device per node: pages, overflow interrupt, the SMMU it counts for; reported by boot, text and JSON', async () => {
    const { tables, memory } = qemuTables();
    const smmu = qemuSmmuOffset();
    tables.set(
      'IORT',
      writeIort({
        oemId: 'BOCHS ',
        revision: 5,
        nodes: [
          ...qemuIortNodes(),
          { kind: 'pmcg', page0Base: 0x0906_0000, overflowGsiv: 120, nodeReference: smmu, page1Base: 0x0907_0000 },
          // Node revision 0: page 0 only; no GSIV (its overflow would be an MSI through mapping 0).
          { kind: 'pmcg', revision: 0, page0Base: 0x0908_0000, overflowGsiv: 0, nodeReference: 0, page1Base: 0, mappings: [{ inputBase: 0, count: 1, outputBase: 0x77, output: 0, single: true }] },
        ],
      }),
    );
    const { machine, kernel } = await bootFromAcpi(tables, memory, { seed: 1 });
    const pm = [...kernel.dt.nodes()].filter((n) => n.path.startsWith('IORT:pmcg@'));
    expect(pm.map((n) => n.path)).toHaveLength(2);
    const [a, b] = pm;
    expect(a.compatible).toEqual(['arm,smmu-v3-pmcg']);
    expect(a.cells('reg')).toEqual([0, 0x0906_0000, 0, 0x1000, 0, 0x0907_0000, 0, 0x1000]);
    expect(a.strings('interrupt-names')).toEqual(['overflow']);
    expect(a.cells('interrupts')).toEqual([0, 120 - 32, 1]);
    expect(b.cells('reg')).toEqual([0, 0x0908_0000, 0, 0x1000]);
    expect(b.has('interrupts')).toBe(false);
    // The kernel has the platform devices; nothing binds them.
    expect(kernel.core.findDevice(a.path)?.status).toBe('no-driver');
    const report = bootReport(machine, kernel);
    expect(report.pmcgs).toEqual([
      { node: a.path, smmu: `IORT:smmuv3@0x${smmu.toString(16)}`, page0: 0x0906_0000, page1: 0x0907_0000, overflowGsiv: 120, status: 'no-driver', driver: null },
      { node: b.path, smmu: null, page0: 0x0908_0000, page1: null, overflowGsiv: null, status: 'no-driver', driver: null },
    ]);
    expect(JSON.parse(JSON.stringify(report)).pmcgs).toHaveLength(2);
    expect(formatPmcgReport(report.pmcgs)).toEqual([
      '',
      'SMMUv3 PMCGs (platform devices; no PMU driver)',
      `${a.path} (SMMU IORT:smmuv3@0x${smmu.toString(16)}): page 0 at 0x9060000, page 1 at 0x9070000, overflow GSIV 120: no-driver`,
      `${b.path} (SMMU -): page 0 at 0x9080000, overflow -: no-driver`,
    ]);
  });

  it('no PMCG node: no "pmcgs" key in the report', async () => {
    const { tables, memory } = qemuTables();
    const { machine, kernel } = await bootFromAcpi(tables, memory, { seed: 1 });
    expect(bootReport(machine, kernel)).not.toHaveProperty('pmcgs');
  });

  it('IWB nodes (table revision 7) are not devices of their own: boot reports each with the DSDT device it names', async () => {
    const { tables, memory } = qemuTables({ revision: 7 });
    tables.set(
      'IORT',
      writeIort({
        oemId: 'BOCHS ',
        revision: 7,
        nodes: [
          ...qemuIortNodes({ revision: 7 }),
          { kind: 'iwb', configFrameBase: 0x0910_0000, iwbIndex: 3, deviceName: '\\_SB_.IWB0', mappings: [{ inputBase: 0, count: 1, outputBase: 0x55, output: 0, single: true }] },
          { kind: 'iwb', configFrameBase: 0x0911_0000, iwbIndex: 4, deviceName: '\\_SB_.IWB9' },
        ],
      }),
    );
    tables.set('DSDT', writeDsdt({ oemId: 'BOCHS ', devices: [{ name: 'IWB0', hid: 'ARMH0003', uid: 0, memory: [{ base: 0x0910_0000, size: 0x1_0000 }] }, { name: 'PCI0', hid: 'PNP0A08', cid: 'PNP0A03', seg: 0, uid: 0 }] }));
    const { machine, kernel } = await bootFromAcpi(tables, memory, { seed: 1 });
    const report = bootReport(machine, kernel);
    expect(report.iwbs).toEqual([
      { node: expect.stringMatching(/^IORT:iwb@0x/), configFrame: 0x0910_0000, index: 3, deviceName: '\\_SB_.IWB0', device: '\\_SB_.IWB0', status: 'no-driver' },
      { node: expect.stringMatching(/^IORT:iwb@0x/), configFrame: 0x0911_0000, index: 4, deviceName: '\\_SB_.IWB9', device: null, status: 'absent' },
    ]);
    expect(report).not.toHaveProperty('pmcgs');
    expect(formatIwbReport(report.iwbs)[2]).toMatch(/IWB 3, config frame at 0x9100000, \\_SB_\.IWB0 → \\_SB_\.IWB0: no-driver$/);
  });
});
