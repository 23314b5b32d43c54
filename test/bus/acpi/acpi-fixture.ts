/**
 * ACPI table sets for tests: the shape QEMU's `virt` machine builds with `iommu=smmuv3`
 * (hw/arm/virt-acpi-build.c build_iort: an ITS group, one SMMUv3 node with its GSIVs and an ID
 * mapping to the ITS, the root complex mapping every RID to the SMMU; table revision 3 in the old
 * form, 5 with RMR nodes in the new one), GICv3 with an ITS in the MADT, ECAM in the MCFG, and a
 * DSDT with the PCI host bridge, a UART and optionally DMA test engines behind the SMMU.
 */
import type { AcpiMemoryMap } from '../../../bus/acpi/acpi-boot.js';
import { type AmlDeviceSpec, writeDsdt } from '../../../bus/acpi/aml.js';
import { type IortNodeSpec, iortLayout, writeIort } from '../../../bus/acpi/iort.js';
import { writeMadt } from '../../../bus/acpi/madt.js';
import { writeMcfg } from '../../../bus/acpi/mcfg.js';

export const QEMU = {
  gicd: 0x0800_0000,
  its: 0x0808_0000,
  gicr: 0x080a_0000,
  smmu: 0x0905_0000,
  smmuIrq: 74 + 32,
  ecam: 0x40_1000_0000,
  engine: 0x0c00_0000,
  ram: { base: 0x4000_0000, size: 0x4000_0000 },
} as const;

export interface QemuTablesOptions {
  /** IORT table revision: 3 (E.b, old QEMU) or 5 (E.d, new QEMU with RMR). Default 5. */
  revision?: number;
  /** RMR nodes (new form): StreamIDs [sid, sid+count) → the SMMU, one descriptor each. */
  rmrs?: { sid: number; count: number; base: number; length: number; flags?: number }[];
  /** DMA test engines behind the SMMU (platform devices \_SB_.DMAn with a named component). */
  engines?: { sid: number; stall?: boolean; pasidBits?: number }[];
  /** ID mappings of the RC (default: every RID → the SMMU). `output`: 'smmu' | 'its'. */
  rcMappings?: { inputBase: number; count: number; outputBase: number; output: 'smmu' | 'its'; single?: boolean }[];
  /** The host bridge's _DSM "preserve boot configuration" answer (absent: no _DSM). */
  pciBootConfig?: 'preserve' | 'reassign';
  /** Endpoints below the host bridge: device number → IATS/IPRI/IPAS. */
  endpoints?: { dev: number; fn?: number; ats?: boolean; pri?: boolean; pasidBits?: number }[];
}

export function qemuIortNodes(o: QemuTablesOptions = {}): IortNodeSpec[] {
  const nodes: IortNodeSpec[] = [
    { kind: 'its', revision: 1, itsIds: [0] },
    {
      kind: 'smmuv3',
      revision: 4,
      base: QEMU.smmu,
      flags: 1,
      vatosAddress: 0,
      model: 0,
      eventGsiv: QEMU.smmuIrq,
      priGsiv: QEMU.smmuIrq + 1,
      syncGsiv: QEMU.smmuIrq + 2,
      gerrGsiv: QEMU.smmuIrq + 3,
      proximityDomain: 0,
      deviceIdMappingIndex: 0,
      mappings: [{ inputBase: 0, count: 0x1_0000, outputBase: 0, output: 0 }],
    },
    {
      kind: 'rc',
      revision: 3,
      memory: { cacheCoherency: 1, hints: 0, memoryFlags: 3 },
      atsAttribute: 0,
      pciSegment: 0,
      memoryAddressLimit: 64,
      pasidCapabilities: 0,
      mappings: (o.rcMappings ?? [{ inputBase: 0, count: 0x1_0000, outputBase: 0, output: 'smmu' }]).map((m) => ({
        inputBase: m.inputBase,
        count: m.count,
        outputBase: m.outputBase,
        output: m.output === 'smmu' ? 1 : 0,
        single: m.single,
      })),
    },
  ];
  for (const r of o.rmrs ?? []) {
    nodes.push({
      kind: 'rmr',
      revision: 3,
      flags: r.flags ?? 0,
      descriptors: [{ base: r.base, length: r.length }],
      mappings: [{ inputBase: r.sid, count: r.count, outputBase: r.sid, output: 1, single: true }],
    });
  }
  (o.engines ?? []).forEach((e, i) => {
    nodes.push({
      kind: 'nc',
      flags: (e.stall ? 1 : 0) | ((e.pasidBits ?? 0) << 1),
      memory: { cacheCoherency: 1, hints: 0, memoryFlags: 3 },
      memoryAddressLimit: 48,
      deviceName: `\\_SB_.DMA${i}`,
      mappings: [{ inputBase: 0, count: 1, outputBase: e.sid, output: 1, single: true }],
    });
  });
  return nodes;
}

/** Offset of the SMMUv3 node (second node, after the ITS group) for a revision. */
export function qemuSmmuOffset(o: QemuTablesOptions = {}): number {
  return iortLayout({ revision: o.revision ?? 5, nodes: qemuIortNodes(o) })[1];
}

export function qemuTables(o: QemuTablesOptions = {}): { tables: Map<string, Uint8Array>; memory: AcpiMemoryMap } {
  const tables = new Map<string, Uint8Array>();
  tables.set(
    'APIC',
    writeMadt({
      oemId: 'BOCHS ',
      gicc: [{ cpuInterfaceNumber: 0, uid: 0, baseAddress: 0, gicrBaseAddress: 0, mpidr: 0 }],
      gicd: { baseAddress: QEMU.gicd, version: 3 },
      gicr: [{ baseAddress: QEMU.gicr, length: 0xf6_0000 }],
      its: [{ translationId: 0, baseAddress: QEMU.its }],
    }),
  );
  tables.set('IORT', writeIort({ oemId: 'BOCHS ', revision: o.revision ?? 5, nodes: qemuIortNodes(o) }));
  tables.set('MCFG', writeMcfg({ entries: [{ baseAddress: QEMU.ecam, segment: 0, startBus: 0, endBus: 0xff }] }));
  const devices: AmlDeviceSpec[] = [
    { name: 'COM0', hid: 'ARMH0011', uid: 0, memory: [{ base: 0x0900_0000, size: 0x1000 }], interrupts: [{ gsiv: 33 }] },
    ...(o.engines ?? []).map((_, i) => ({
      name: `DMA${i}`,
      hid: 'ISIM0001',
      uid: i,
      cca: 1,
      memory: [{ base: QEMU.engine + i * 0x1_0000, size: 0x1_0000 }],
      interrupts: [{ gsiv: 128 + i }],
    })),
    {
      name: 'PCI0',
      hid: 'PNP0A08',
      cid: 'PNP0A03',
      seg: 0,
      uid: 0,
      cca: 1,
      ...(o.pciBootConfig ? { pciBootConfig: o.pciBootConfig } : {}),
      children: (o.endpoints ?? []).map((e) => ({
        name: `EP${e.dev.toString(16).padStart(2, '0').toUpperCase()}`,
        adr: (e.dev << 16) | (e.fn ?? 0),
        integers: { ...(e.ats ? { IATS: 1 } : {}), ...(e.pri ? { IPRI: 1 } : {}), ...(e.pasidBits ? { IPAS: e.pasidBits } : {}) },
      })),
    },
  ];
  tables.set('DSDT', writeDsdt({ oemId: 'BOCHS ', devices }));
  return { tables, memory: { ram: [QEMU.ram] } };
}
