/**
 * RMR nodes naming PCI requester IDs (a root complex behind the SMMU): the SMMU installs bypass
 * STEs for their StreamIDs at probe in any case; the PCI function gets the RMR descriptors as
 * reserved regions (DIRECT, or DIRECT_RELAXABLE with "remapping permitted"), identity-mapped in
 * its default domain, only when its host bridge's _DSM says "preserve boot configuration" (Linux's
 * iort_rmr_has_dev(): re-enumeration could otherwise change the RIDs the RMR names).
 */
import { describe, expect, it } from 'vitest';
import { parseAcpiTables } from '../../../bus/acpi/acpi-boot.js';
import { amlEvaluate } from '../../../bus/acpi/aml-eval.js';
import { amlUuidBytes, PCI_ACPI_DSM_GUID, writeDsdt } from '../../../bus/acpi/aml.js';
import { PciDevice } from '../../../bus/pci/pci-device.js';
import { iommuIovaToPhys } from '../../../core/iommu-domain.js';
import { devIommu } from '../../../core/iommu-device.js';
import { iommuGetResvRegions } from '../../../core/iommu-resv.js';
import { armSmmuRmrSids } from '../../../drivers/arm-smmu-v3/arm-smmu-v3-acpi.js';
import { findArmSmmuV3 } from '../../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { bootFromAcpi } from '../../../scenarios/lib/lab.js';
import { type QemuTablesOptions, qemuSmmuOffset, qemuTables } from './acpi-fixture.js';

const RMR_BASE = 0x4800_0000;
// Endpoint at 00:01.0 (RID 0x8) and 00:02.0 (RID 0x10); RIDs reach the SMMU unchanged.
const opts = (o: Partial<QemuTablesOptions>): QemuTablesOptions => ({
  revision: 5,
  endpoints: [{ dev: 1 }, { dev: 2 }],
  rmrs: [
    { sid: 0x8, count: 1, base: RMR_BASE, length: 0x1_0000 },
    { sid: 0x10, count: 1, base: RMR_BASE + 0x10_0000, length: 0x2_0000, flags: 1 },
  ],
  ...o,
});

async function bootWith(o: QemuTablesOptions) {
  const { tables, memory } = qemuTables(o);
  const { kernel } = await bootFromAcpi(tables, memory, { seed: 1 });
  const smmu = findArmSmmuV3(kernel.core, `IORT:smmuv3@0x${qemuSmmuOffset(o).toString(16)}`);
  const fn = (name: string): PciDevice => {
    const d = kernel.core.findDevice(name);
    if (!(d instanceof PciDevice)) throw new Error(`${name} is not a PCI function`);
    return d;
  };
  return { kernel, smmu, ep1: fn('0000:00:01.0'), ep2: fn('0000:00:02.0') };
}

const rmrRegions = (d: PciDevice) => iommuGetResvRegions(d).filter((r) => r.type === 'DIRECT' || r.type === 'DIRECT_RELAXABLE');

describe('RMR nodes on a root complex', () => {
  it('_DSM "preserve boot configuration": each function gets its RMR as a reserved region, identity-mapped; bypass STEs were installed for both SIDs', async () => {
    const { smmu, ep1, ep2 } = await bootWith(opts({ pciBootConfig: 'preserve' }));
    expect(ep1.host.preserveConfig).toBe(true);
    expect(ep1.fwspec?.ids).toEqual([0x8]);
    expect([...armSmmuRmrSids(smmu)].sort((a, b) => a - b)).toEqual([0x8, 0x10]);
    expect(rmrRegions(ep1)).toEqual([{ start: RMR_BASE, length: 0x1_0000, prot: 1 | 2 | 16, type: 'DIRECT' }]);
    expect(rmrRegions(ep2)).toEqual([{ start: RMR_BASE + 0x10_0000, length: 0x2_0000, prot: 1 | 2 | 16, type: 'DIRECT_RELAXABLE' }]);
    const dom1 = devIommu(ep1)!.group!.defaultDomain!;
    expect(iommuIovaToPhys(dom1, RMR_BASE + 0x40)).toBe(RMR_BASE + 0x40);
    const dom2 = devIommu(ep2)!.group!.defaultDomain!;
    expect(iommuIovaToPhys(dom2, RMR_BASE + 0x11_fff0)).toBe(RMR_BASE + 0x11_fff0);
    // One function's RMR is not the other's.
    expect(iommuIovaToPhys(dom1, RMR_BASE + 0x10_0000)).toBe(0);
  });

  it('no _DSM, or one that lets the OS reassign: no reserved region for PCI functions, yet the bypass STEs are installed at probe', async () => {
    for (const pciBootConfig of [undefined, 'reassign'] as const) {
      const { smmu, ep1, ep2 } = await bootWith(opts(pciBootConfig ? { pciBootConfig } : {}));
      expect(ep1.host.preserveConfig).toBe(false);
      expect([...armSmmuRmrSids(smmu)].sort((a, b) => a - b)).toEqual([0x8, 0x10]);
      expect(rmrRegions(ep1)).toEqual([]);
      expect(rmrRegions(ep2)).toEqual([]);
      expect(iommuIovaToPhys(devIommu(ep1)!.group!.defaultDomain!, RMR_BASE + 0x40)).toBe(0);
    }
  });

  it('IORT revision 3: RMR nodes are not honoured even with preserve-config', async () => {
    const { smmu, ep1 } = await bootWith(opts({ revision: 3, pciBootConfig: 'preserve' }));
    expect(armSmmuRmrSids(smmu)).toEqual([]);
    expect(rmrRegions(ep1)).toEqual([]);
  });
});

describe('_DSM evaluation', () => {
  const dsmOf = (mode: 'preserve' | 'reassign') => {
    const dsdt = writeDsdt({ devices: [{ name: 'PCI0', hid: 'PNP0A08', seg: 0, pciBootConfig: mode }] });
    const t = parseAcpiTables(new Map([['DSDT', dsdt]]));
    return t.namespace.devices[0].methods.get('_DSM')!;
  };
  const uuid = amlUuidBytes(PCI_ACPI_DSM_GUID);

  it('the written _DSM answers function 0 (supported functions 0 and 5) and function 5 (0 = preserve, 1 = reassign); another GUID gets Buffer {0}', () => {
    const dsm = dsmOf('preserve');
    expect(dsm).toMatchObject({ path: '\\_SB_.PCI0._DSM', argCount: 4 });
    expect(amlEvaluate(dsm, [uuid, 1n, 0n, []])).toEqual({ kind: 'value', value: Uint8Array.of(0x21) });
    expect(amlEvaluate(dsm, [uuid, 1n, 5n, []])).toEqual({ kind: 'value', value: 0n });
    expect(amlEvaluate(dsmOf('reassign'), [uuid, 1n, 5n, []])).toEqual({ kind: 'value', value: 1n });
    expect(amlEvaluate(dsm, [amlUuidBytes('33DB4D5B-1FF7-401C-9657-7441C03DD766'), 1n, 5n, []])).toEqual({ kind: 'value', value: Uint8Array.of(0) });
  });

  it("iasl's Switch form (While/Name/Store/ToInteger/Break) evaluates; a method call is reported as outside the subset", () => {
    // What iasl 20200925 compiles `Switch (ToInteger (Arg2)) { Case (5) { Return (Zero) } Default
    // { Return (One) } }` to: Name (_T_0, Zero) While (One) { Store (ToInteger (Arg2), _T_0)
    // If (LEqual (_T_0, 5)) { Return (Zero) } Else { Return (One) } Break }.
    const body = Uint8Array.of(
      0x08, 0x5f, 0x54, 0x5f, 0x30, 0x00, // Name (_T_0, Zero)
      0xa2, 0x1a, 0x01, // While (One) {
      0x70, 0x99, 0x6a, 0x00, 0x5f, 0x54, 0x5f, 0x30, // Store (ToInteger (Arg2), _T_0)
      0xa0, 0x0a, 0x93, 0x5f, 0x54, 0x5f, 0x30, 0x0a, 0x05, 0xa4, 0x00, // If (_T_0 == 5) { Return (Zero) }
      0xa1, 0x03, 0xa4, 0x01, // Else { Return (One) }
      0xa5, // Break }
    );
    const m = { path: '\\_SB_.PCI0._DSM', argCount: 4, body, table: 'DSDT', offset: 0 };
    expect(amlEvaluate(m, [uuid, 1n, 5n, []])).toEqual({ kind: 'value', value: 0n });
    expect(amlEvaluate(m, [uuid, 1n, 3n, []])).toEqual({ kind: 'value', value: 1n });
    const call = { ...m, body: Uint8Array.of(0xa4, 0x46, 0x4f, 0x4f, 0x5f) }; // Return (FOO_)
    expect(amlEvaluate(call, [])).toMatchObject({ kind: 'unsupported', reason: expect.stringMatching(/"FOO_".*not a name of the method/) });
    // An endless loop is cut off, not run for ever.
    const loop = { ...m, body: Uint8Array.of(0xa2, 0x02, 0x01) };
    expect(amlEvaluate(loop, [])).toMatchObject({ kind: 'unsupported', reason: expect.stringMatching(/more than/) });
    // A PkgLength past the method is malformed firmware.
    expect(() => amlEvaluate({ ...m, body: Uint8Array.of(0xa0, 0x3f, 0x01) }, [])).toThrow(/DSDT.*PkgLength/);
  });
});
