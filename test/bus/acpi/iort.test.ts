import { describe, expect, it } from 'vitest';
import {
  ACPI_IORT_NODE_IWB,
  ACPI_IORT_SMMU_V3_DEVICEID_VALID,
  type IortNodeSpec,
  type IortSpec,
  iortLayout,
  parseIort,
  writeIort,
} from '../../../bus/acpi/iort.js';
import { acpiChecksum } from '../../../bus/acpi/table.js';
import { fwError } from '../of/dt-test-utils.js';

const mem = { cacheCoherency: 1, hints: 0, memoryFlags: 3 };

/** One node of every type (IWB only where the revision has it). */
function allNodes(rev: number): IortNodeSpec[] {
  const nodes: IortNodeSpec[] = [
    { kind: 'its', itsIds: [0, 7] },
    { kind: 'nc', flags: 1 | (8 << 1), memory: mem, memoryAddressLimit: 48, deviceName: '\\_SB_.DMA0', mappings: [{ inputBase: 0, count: 1, outputBase: 0x20, output: 4, single: true }] },
    { kind: 'rc', memory: mem, atsAttribute: 1, pciSegment: 2, memoryAddressLimit: 64, pasidCapabilities: 0, mappings: [{ inputBase: 0, count: 0x100, outputBase: 0x1000, output: 4 }] },
    {
      kind: 'smmu',
      base: 0x2b40_0000,
      span: 0x1_0000,
      model: 3,
      flags: 2,
      globalIrqs: { nsgIrpt: 100, nsgIrptFlags: 1, nsgCfgIrpt: 101, nsgCfgIrptFlags: 0 },
      contextIrqs: [{ gsiv: 102, flags: 0 }, { gsiv: 103, flags: 1 }],
      pmuIrqs: [{ gsiv: 104, flags: 0 }],
      mappings: [{ inputBase: 0, count: 0x10, outputBase: 0, output: 0 }],
    },
    {
      kind: 'smmuv3',
      base: 0x4_0000_0000,
      flags: 1 | ACPI_IORT_SMMU_V3_DEVICEID_VALID,
      vatosAddress: 0,
      model: 0,
      eventGsiv: 0,
      priGsiv: 0,
      gerrGsiv: 0,
      syncGsiv: 0,
      proximityDomain: 0,
      deviceIdMappingIndex: 0,
      mappings: [{ inputBase: 0, count: 1, outputBase: 0x55, output: 0, single: true }],
    },
    { kind: 'pmcg', page0Base: 0x5000_0000, overflowGsiv: 0, nodeReference: 0, page1Base: 0x5001_0000, mappings: [{ inputBase: 0, count: 1, outputBase: 0x66, output: 0, single: true }] },
    { kind: 'rmr', flags: 1 | (5 << 2), descriptors: [{ base: 0x8000_0000, length: 0x1_0000 }, { base: 0x9000_0000, length: 0x2_0000 }], mappings: [{ inputBase: 0x20, count: 1, outputBase: 0x20, output: 4, single: true }] },
  ];
  if (rev >= 7) nodes.push({ kind: 'iwb', configFrameBase: 0x6000_0000, iwbIndex: 3, deviceName: '\\_SB_.IWB0' });
  return nodes;
}

describe('IORT reader and writer', () => {
  for (const rev of [0, 3, 5, 6, 7]) {
    it(`round-trips every node type at table revision ${rev}`, () => {
      const spec: IortSpec = { revision: rev, nodes: allNodes(rev) };
      const blob = writeIort(spec);
      expect(acpiChecksum(blob)).toBe(0);
      const t = parseIort(blob);
      expect(t.revision).toBe(rev);
      expect(t.nodes.map((n) => n.kind)).toEqual(spec.nodes.map((n) => n.kind));
      const offs = iortLayout(spec);
      expect(t.nodes.map((n) => n.offset)).toEqual(offs);
      // Identifiers only from E.b (3).
      expect(t.nodes.map((n) => n.identifier)).toEqual(spec.nodes.map((_, i) => (rev >= 3 ? i : 0)));
      const [its, nc, rc, smmu, v3, pmcg, rmr] = t.nodes;
      expect(its).toMatchObject({ kind: 'its', itsIds: [0, 7] });
      expect(nc).toMatchObject({ kind: 'nc', flags: 17, deviceName: '\\_SB_.DMA0', memoryAddressLimit: 48, memory: mem });
      expect(nc.mappings[0]).toMatchObject({ inputBase: 0, idCount: 0, outputBase: 0x20, outputReference: offs[4], flags: 1 });
      expect(rc).toMatchObject({ kind: 'rc', atsAttribute: 1, pciSegment: 2, memoryAddressLimit: 64 });
      expect(rc.mappings[0]).toMatchObject({ idCount: 0xff, outputBase: 0x1000 });
      expect(smmu).toMatchObject({
        kind: 'smmu',
        base: 0x2b40_0000,
        span: 0x1_0000,
        model: 3,
        flags: 2,
        globalIrqs: { nsgIrpt: 100, nsgIrptFlags: 1, nsgCfgIrpt: 101, nsgCfgIrptFlags: 0 },
        contextIrqs: [{ gsiv: 102, flags: 0 }, { gsiv: 103, flags: 1 }],
        pmuIrqs: [{ gsiv: 104, flags: 0 }],
      });
      expect(v3).toMatchObject({ kind: 'smmuv3', base: 0x4_0000_0000, flags: 0x11, deviceIdMappingIndex: 0 });
      expect(pmcg).toMatchObject({ kind: 'pmcg', page0Base: 0x5000_0000, page1Base: 0x5001_0000 });
      expect(rmr).toMatchObject({ kind: 'rmr', flags: 0x15, descriptors: [{ base: 0x8000_0000, length: 0x1_0000 }, { base: 0x9000_0000, length: 0x2_0000 }] });
      if (rev >= 7) expect(t.nodes[7]).toMatchObject({ kind: 'iwb', configFrameBase: 0x6000_0000, iwbIndex: 3, deviceName: '\\_SB_.IWB0' });
    });
  }

  it('keeps a type-7 node of a table older than E.f as an unknown node, and refuses to write one', () => {
    const blob = writeIort({ revision: 7, nodes: [{ kind: 'iwb', configFrameBase: 0x1000, iwbIndex: 0, deviceName: 'X' }] });
    const old = blob.slice();
    old[8] = 5;
    old[9] = 0;
    old[9] = (0x100 - acpiChecksum(old)) & 0xff;
    const t = parseIort(old);
    expect(t.nodes[0]).toMatchObject({ kind: 'unknown', type: ACPI_IORT_NODE_IWB });
    expect(() => writeIort({ revision: 5, nodes: [{ kind: 'iwb', configFrameBase: 0, iwbIndex: 0, deviceName: 'X' }] })).toThrow(/IWB nodes need table revision 7/);
  });

  it('reads a PMCG node revision 0 without page 1, an RC node revision 0 without a memory limit', () => {
    const t = parseIort(
      writeIort({
        revision: 0,
        nodes: [
          { kind: 'pmcg', revision: 0, page0Base: 0x1000, overflowGsiv: 40, nodeReference: 0, page1Base: 0x2000 },
          { kind: 'rc', revision: 0, memory: mem, atsAttribute: 0, pciSegment: 0, memoryAddressLimit: 44, pasidCapabilities: 0 },
        ],
      }),
    );
    expect(t.nodes[0]).toMatchObject({ kind: 'pmcg', page1Base: 0, overflowGsiv: 40 });
    expect(t.nodes[1]).toMatchObject({ kind: 'rc', memoryAddressLimit: 0 });
  });
});

/** A valid blob with bytes changed and the checksum fixed, so the parser looks past the header. */
function patched(blob: Uint8Array, edits: [number, number, number][]): Uint8Array {
  const b = blob.slice();
  const dv = new DataView(b.buffer);
  for (const [off, size, v] of edits) {
    if (size === 1) dv.setUint8(off, v);
    else if (size === 2) dv.setUint16(off, v, true);
    else dv.setUint32(off, v, true);
  }
  b[9] = 0;
  b[9] = (0x100 - acpiChecksum(b)) & 0xff;
  return b;
}

describe('IORT errors name table, node, offset and field', () => {
  const spec: IortSpec = { revision: 5, nodes: allNodes(5) };
  const blob = writeIort(spec);
  const offs = iortLayout(spec);

  it('a bad checksum', () => {
    const b = blob.slice();
    b[50] ^= 1;
    const e = fwError(() => parseIort(b));
    expect(e.format).toBe('IORT');
    expect(e.offset).toBe(9);
    expect(e.message).toMatch(/field "Checksum"/);
  });

  it('a wrong signature and a Length beyond the blob', () => {
    expect(fwError(() => parseIort(patched(blob, [[0, 1, 0x41]]))).message).toMatch(/field "Signature": is "AORT", expected "IORT"/);
    expect(fwError(() => parseIort(blob.subarray(0, 100))).message).toMatch(/field "Length".*longer than the 100 bytes/);
  });

  it('a node whose Length runs past the table', () => {
    const e = fwError(() => parseIort(patched(blob, [[offs[6] + 1, 2, 0xfff0]])));
    expect(e.where).toBe(`RMR node at 0x${offs[6].toString(16)}`);
    expect(e.offset).toBe(offs[6] + 1);
    expect(e.message).toMatch(/field "Length"/);
  });

  it('a node shorter than its header', () => {
    const e = fwError(() => parseIort(patched(blob, [[offs[0] + 1, 2, 4]])));
    expect(e.message).toMatch(/field "Length": 4 is shorter than the 16-byte node header/);
  });

  it('a Node Count the table cannot hold', () => {
    expect(fwError(() => parseIort(patched(blob, [[36, 4, 0xffff_ffff]]))).message).toMatch(/field "Node Count"/);
  });

  it('a dangling Output Reference', () => {
    const mapAt = offs[2] + 36 + 12;
    const e = fwError(() => parseIort(patched(blob, [[mapAt, 4, offs[2] + 4]])));
    expect(e.message).toMatch(/field "Output Reference".*dangling/);
    expect(e.where).toBe(`root complex node at 0x${offs[2].toString(16)}`);
    expect(e.offset).toBe(mapAt);
  });

  it('a Mapping Count running past the node', () => {
    const e = fwError(() => parseIort(patched(blob, [[offs[2] + 8, 4, 9]])));
    expect(e.message).toMatch(/field "Mapping Count": 9 mappings/);
  });

  it('an unterminated device name', () => {
    const nc = writeIort({ revision: 0, nodes: [{ kind: 'nc', flags: 0, memory: mem, memoryAddressLimit: 0, deviceName: 'ABC' }] });
    // Overwrite the name's NUL and padding with letters.
    const e = fwError(() => parseIort(patched(nc, [[48 + 32, 4, 0x41414141]])));
    expect(e.message).toMatch(/field "Device Name": string .* has no NUL terminator/);
  });

  it('an SMMU interrupt array past the node', () => {
    const e = fwError(() => parseIort(patched(blob, [[offs[3] + 44, 4, 1000]])));
    expect(e.message).toMatch(/field "Context Interrupt"/);
  });

  it('an RMR descriptor array past the node', () => {
    const e = fwError(() => parseIort(patched(blob, [[offs[6] + 20, 4, 50]])));
    expect(e.message).toMatch(/field "RMR Descriptor Offset"/);
  });

  it('a 64-bit address beyond 2^53', () => {
    const e = fwError(() => parseIort(patched(blob, [[offs[4] + 20, 4, 0xffff_ffff]])));
    expect(e.message).toMatch(/field "Base Address": value .* beyond 2\^53/);
  });
});
