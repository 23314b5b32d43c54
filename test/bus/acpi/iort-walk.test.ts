import { describe, expect, it } from 'vitest';
import { type IortMappingSpec, type IortNodeSpec, parseIort, writeIort } from '../../../bus/acpi/iort.js';
import {
  IORT_IOMMU_TYPE,
  iortFindNamedComponent,
  iortFindRmrs,
  iortGetIdMappingIndex,
  iortGetRmrSids,
  iortIommuGetRmrs,
  iortMsiMapId,
  iortNcIommuMap,
  iortNodeMapId,
  iortPciIommuMap,
  iortPmsiGetDevId,
} from '../../../bus/acpi/iort-walk.js';
import { fwError } from '../of/dt-test-utils.js';

const mem = { cacheCoherency: 1, hints: 0, memoryFlags: 3 };
const its: IortNodeSpec = { kind: 'its', itsIds: [0] };
const v3 = (over: Partial<IortNodeSpec & { kind: 'smmuv3' }> = {}, mappings: IortMappingSpec[] = []): IortNodeSpec => ({
  kind: 'smmuv3',
  base: 0x900_0000,
  flags: 0,
  vatosAddress: 0,
  model: 0,
  eventGsiv: 100,
  priGsiv: 101,
  gerrGsiv: 102,
  syncGsiv: 103,
  proximityDomain: 0,
  deviceIdMappingIndex: 0,
  ...over,
  mappings,
});
const rc = (mappings: IortMappingSpec[], segment = 0): IortNodeSpec => ({ kind: 'rc', memory: mem, atsAttribute: 1, pciSegment: segment, memoryAddressLimit: 64, pasidCapabilities: 0, mappings });
const nc = (name: string, mappings: IortMappingSpec[]): IortNodeSpec => ({ kind: 'nc', flags: 0, memory: mem, memoryAddressLimit: 48, deviceName: name, mappings });

function table(nodes: IortNodeSpec[], revision = 5) {
  const warnings: string[] = [];
  return { iort: parseIort(writeIort({ revision, nodes })), warnings, warn: (m: string) => warnings.push(m) };
}

describe('IORT ID walks (iort_node_map_id)', () => {
  it('maps an RC requester ID through a range to SMMUv3 StreamIDs, and on to the ITS for MSIs', () => {
    const { iort, warn } = table([its, v3({}, [{ inputBase: 0, count: 0x1_0000, outputBase: 0, output: 0 }]), rc([{ inputBase: 0, count: 0x100, outputBase: 0x2000, output: 1 }])]);
    const r = iort.nodes[2];
    expect(iortPciIommuMap(iort, r, 0x18, warn)).toMatchObject({ iommu: { kind: 'smmuv3' }, streamId: 0x2018 });
    expect(iortPciIommuMap(iort, r, 0xff, warn)?.streamId).toBe(0x20ff);
    // Out of range: not behind the SMMU.
    expect(iortPciIommuMap(iort, r, 0x100, warn)).toBeNull();
    expect(iortMsiMapId(iort, r, 0x18, warn)).toMatchObject({ its: { kind: 'its' }, deviceId: 0x2018 });
  });

  it('resolves touching ranges written with a plain count as Linux does (the later range wins its first ID)', () => {
    // Both ranges claim 0x100: the first wrote count 0x101 (id_count 0x100), a firmware bug Linux works around.
    const { iort, warn, warnings } = table([
      its,
      v3({}, []),
      v3({ base: 0xa00_0000 }, []),
      rc([
        { inputBase: 0, count: 0x101, outputBase: 0, output: 1 },
        { inputBase: 0x100, count: 0x100, outputBase: 0x5000, output: 2 },
      ]),
    ]);
    const r = iort.nodes[3];
    expect(iortPciIommuMap(iort, r, 0xff, warn)).toMatchObject({ iommu: iort.nodes[1], streamId: 0xff });
    const hit = iortPciIommuMap(iort, r, 0x100, warn);
    expect(hit).toMatchObject({ iommu: iort.nodes[2], streamId: 0x5000 });
    expect(warnings).toContain('FW_BUG: applying workaround.');
  });

  it('takes a last-ID hit when no later range starts there', () => {
    const { iort, warn } = table([its, v3(), rc([{ inputBase: 0, count: 0x10, outputBase: 0x40, output: 1 }])]);
    expect(iortPciIommuMap(iort, iort.nodes[2], 0xf, warn)?.streamId).toBe(0x4f);
  });

  it('ignores a conflicting overlap that does not start at the provisional ID', () => {
    const { iort, warn, warnings } = table([
      its,
      v3(),
      v3({ base: 0xa00_0000 }),
      rc([
        { inputBase: 0, count: 0x11, outputBase: 0, output: 1 },
        { inputBase: 0x8, count: 0x20, outputBase: 0x900, output: 2 },
      ]),
    ]);
    // 0x10 is the first range's last ID (provisional); the second range contains it but does not start there.
    expect(iortPciIommuMap(iort, iort.nodes[3], 0x10, warn)).toMatchObject({ iommu: iort.nodes[1], streamId: 0x10 });
    expect(warnings.some((w) => w.includes('conflicting mapping for input ID 0x10'))).toBe(true);
  });

  it('a single mapping on an RC maps every RID to its output; on an SMMU it is a firmware bug and skipped', () => {
    const a = table([its, v3({}, [{ inputBase: 0, count: 1, outputBase: 7, output: 0, single: true }]), rc([{ inputBase: 0, count: 1, outputBase: 0x33, output: 1, single: true }])]);
    expect(iortPciIommuMap(a.iort, a.iort.nodes[2], 0x1234, a.warn)?.streamId).toBe(0x33);
    // The SMMU's single mapping is not its DeviceID index here (four GSIVs, rev 4 node... rev 5 node without DEVICEID_VALID): skipped with FW_BUG.
    const msi = iortNodeMapId(a.iort, a.iort.nodes[1], 0x33, 1 << 0, a.warn);
    expect(msi).toBeNull();
    expect(a.warnings.some((w) => w.includes('SINGLE MAPPING flag not allowed for node type 4'))).toBe(true);
  });

  it('never uses the SMMUv3 DeviceID mapping to translate the IDs of devices behind it', () => {
    const { iort, warn } = table([
      its,
      v3({ eventGsiv: 0, priGsiv: 0, gerrGsiv: 0, syncGsiv: 0, flags: 0x10, deviceIdMappingIndex: 1 }, [
        { inputBase: 0, count: 0x1_0000, outputBase: 0, output: 0 },
        { inputBase: 0, count: 1, outputBase: 0x9999, output: 0, single: true },
      ]),
      rc([{ inputBase: 0, count: 0x1_0000, outputBase: 0, output: 1 }]),
    ]);
    const smmu = iort.nodes[1];
    expect(iortGetIdMappingIndex(smmu, warn)).toBe(1);
    expect(iortMsiMapId(iort, iort.nodes[2], 0x42, warn).deviceId).toBe(0x42);
    expect(iortPmsiGetDevId(iort, smmu, warn)).toMatchObject({ its: iort.nodes[0], deviceId: 0x9999 });
  });

  it('decides the DeviceID index by node revision: GSIVs below rev 5, the DeviceID-valid flag from rev 5', () => {
    const w = (): void => undefined;
    const mk = (revision: number, flags: number, gsivs: number) =>
      parseIort(writeIort({ revision: 6, nodes: [its, { ...v3({ flags, eventGsiv: gsivs, priGsiv: gsivs, gerrGsiv: gsivs, syncGsiv: gsivs }, [{ inputBase: 0, count: 1, outputBase: 1, output: 0, single: true }]), revision }] })).nodes[1];
    expect(iortGetIdMappingIndex(mk(0, 0, 0), w)).toBe(-1);
    expect(iortGetIdMappingIndex(mk(4, 0, 0), w)).toBe(0);
    expect(iortGetIdMappingIndex(mk(4, 0, 100), w)).toBe(-1);
    expect(iortGetIdMappingIndex(mk(5, 0, 0), w)).toBe(-1);
    expect(iortGetIdMappingIndex(mk(5, 0x10, 100), w)).toBe(0);
    const warnings: string[] = [];
    const over = parseIort(writeIort({ revision: 6, nodes: [its, v3({ flags: 0x10, deviceIdMappingIndex: 3 }, [{ inputBase: 0, count: 1, outputBase: 1, output: 0, single: true }])] })).nodes[1];
    expect(iortGetIdMappingIndex(over, (m) => warnings.push(m))).toBe(-1);
    expect(warnings[0]).toMatch(/ID mapping index overflows/);
  });

  it('a PMCG uses mapping 0 for its MSIs only without an overflow GSIV', () => {
    const w = (): void => undefined;
    const t = parseIort(
      writeIort({
        revision: 5,
        nodes: [
          its,
          { kind: 'pmcg', page0Base: 0x1000, overflowGsiv: 0, nodeReference: 0, page1Base: 0, mappings: [{ inputBase: 0, count: 1, outputBase: 0x77, output: 0, single: true }] },
          { kind: 'pmcg', page0Base: 0x2000, overflowGsiv: 50, nodeReference: 0, page1Base: 0, mappings: [{ inputBase: 0, count: 1, outputBase: 0x78, output: 0, single: true }] },
        ],
      }),
    );
    expect(iortGetIdMappingIndex(t.nodes[1], w)).toBe(0);
    expect(iortPmsiGetDevId(t, t.nodes[1], w)?.deviceId).toBe(0x77);
    expect(iortGetIdMappingIndex(t.nodes[2], w)).toBe(-1);
  });

  it('a NULL output reference fails the walk with FW_BUG; a cycle is a FirmwareError', () => {
    const a = table([its, v3(), rc([{ inputBase: 0, count: 0x10, outputBase: 0, output: 1 }])]);
    // Patch the RC mapping's reference to 0 (the parser keeps NULL references for the walk to refuse).
    const blob = writeIort({ revision: 5, nodes: [its, v3(), rc([{ inputBase: 0, count: 0x10, outputBase: 0, output: 1 }])] });
    const rcOff = a.iort.nodes[2].offset;
    new DataView(blob.buffer).setUint32(rcOff + 36 + 12, 0, true);
    blob[9] = 0;
    let s = 0;
    for (const b of blob) s = (s + b) & 0xff;
    blob[9] = (0x100 - s) & 0xff;
    const t = parseIort(blob);
    const warnings: string[] = [];
    expect(iortPciIommuMap(t, t.nodes[2], 1, (m) => warnings.push(m))).toBeNull();
    expect(warnings[0]).toMatch(/ID map has NULL parent reference/);

    // Two named components mapping into each other forever.
    const cyc = parseIort(
      writeIort({
        revision: 5,
        nodes: [nc('\\_SB_.AAAA', [{ inputBase: 0, count: 0x10, outputBase: 0, output: 1 }]), nc('\\_SB_.BBBB', [{ inputBase: 0, count: 0x10, outputBase: 0, output: 0 }])],
      }),
    );
    const e = fwError(() => iortNodeMapId(cyc, cyc.nodes[0], 3, IORT_IOMMU_TYPE, () => undefined));
    expect(e.message).toMatch(/form a cycle/);
  });

  it('named components: by ACPI path (segment padding ignored), StreamIDs from leading single mappings, through an intermediate node', () => {
    const { iort, warn } = table([
      its,
      v3({}, [{ inputBase: 0, count: 0x1_0000, outputBase: 0, output: 0 }]),
      nc('\\_SB.DMA0', [
        { inputBase: 0, count: 1, outputBase: 0x10, output: 1, single: true },
        { inputBase: 0, count: 1, outputBase: 0x11, output: 1, single: true },
        { inputBase: 0, count: 0x10, outputBase: 0x20, output: 1 },
        { inputBase: 0, count: 1, outputBase: 0x12, output: 1, single: true },
      ]),
      // An RC-less bridge: NC → NC → SMMU with an ID translation on the way.
      nc('\\_SB_.BRG0', [{ inputBase: 0, count: 0x100, outputBase: 0x300, output: 1 }]),
      nc('\\_SB_.DEV1', [{ inputBase: 0, count: 1, outputBase: 0x5, output: 3, single: true }]),
    ]);
    const dma = iortFindNamedComponent(iort, '\\_SB_.DMA0');
    expect(dma).toBe(iort.nodes[2]);
    // The range mapping ends the list: a named component without input ID uses single mappings only.
    expect(iortNcIommuMap(iort, dma!, warn).map((r) => r.streamId)).toEqual([0x10, 0x11]);
    expect(iortNcIommuMap(iort, iortFindNamedComponent(iort, '\\_SB.DEV1')!, warn).map((r) => r.streamId)).toEqual([0x305]);
    expect(iortFindNamedComponent(iort, '\\_SB_.NONE')).toBeNull();
  });
});

describe('RMR nodes (iort_find_rmrs)', () => {
  const rmr = (flags: number, descriptors: { base: number; length: number }[], mappings: IortMappingSpec[]): IortNodeSpec => ({ kind: 'rmr', flags, descriptors, mappings });

  it('give reserved regions with type and prot from the flags, and the SIDs of their mappings to that SMMU', () => {
    const { iort, warn, warnings } = table([
      its,
      v3(),
      v3({ base: 0xa00_0000 }),
      rmr(0, [{ base: 0x8000_0000, length: 0x1_0000 }], [{ inputBase: 0x20, count: 2, outputBase: 0x20, output: 1, single: true }]),
      rmr(1 | 2 | (5 << 2), [{ base: 0x9000_1000, length: 0x800 }], [
        { inputBase: 0x30, count: 1, outputBase: 0x30, output: 1, single: true },
        { inputBase: 0x40, count: 1, outputBase: 0x40, output: 2, single: true },
      ]),
    ]);
    const smmu = iort.nodes[1];
    const regions = iortFindRmrs(iort, smmu, warn);
    expect(regions).toHaveLength(2);
    expect(regions[0]).toMatchObject({ start: 0x8000_0000, length: 0x1_0000, type: 'DIRECT', priv: false, mmio: true, cache: false, sids: [0x20, 0x21] });
    expect(regions[1]).toMatchObject({ start: 0x9000_1000, length: 0x1000, type: 'DIRECT_RELAXABLE', priv: true, mmio: false, cache: true, sids: [0x30] });
    expect(warnings.some((w) => w.includes('not aligned to 64K'))).toBe(true);
    expect(iortGetRmrSids(iort, smmu, warn).sort()).toEqual([0x20, 0x21, 0x30]);
    expect(iortGetRmrSids(iort, iort.nodes[2], warn)).toEqual([0x40]);
    // Per device: only the regions naming one of its StreamIDs; PCI devices need preserve-config.
    expect(iortIommuGetRmrs(iort, smmu, [0x21], false, false, warn)).toHaveLength(1);
    expect(iortIommuGetRmrs(iort, smmu, [0x50], false, false, warn)).toHaveLength(0);
    expect(iortIommuGetRmrs(iort, smmu, [0x21], true, false, warn)).toHaveLength(0);
    expect(iortIommuGetRmrs(iort, smmu, [0x21], true, true, warn)).toHaveLength(1);
  });

  it('are ignored below table revision 5 (E.d), and without ID mappings', () => {
    const nodes = [its, v3(), rmr(0, [{ base: 0x8000_0000, length: 0x1_0000 }], [{ inputBase: 0x20, count: 1, outputBase: 0x20, output: 1, single: true }])];
    const old = table(nodes, 3);
    expect(iortGetRmrSids(old.iort, old.iort.nodes[1], old.warn)).toEqual([]);
    const none = table([its, v3(), rmr(0, [{ base: 0x8000_0000, length: 0x1_0000 }], [])]);
    expect(iortFindRmrs(none.iort, none.iort.nodes[1], none.warn)).toEqual([]);
    expect(none.warnings[0]).toMatch(/Invalid ID mapping, skipping RMR node/);
  });
});
