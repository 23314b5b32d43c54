/**
 * The built-in `virt` machine written as ACPI tables: the same hardware as virt.ts's Device Tree,
 * described the way an Arm server's firmware does.
 *
 *   APIC (MADT)  GICv2 distributor + CPU interface, the GICv2m frame (SPIs 128-191)
 *   IORT         SMMUv3 (GSIVs 106-109: event, PRI, CMD_SYNC, GERROR; COHACC), MMU-500 (model 3,
 *                global GSIV 112, context GSIVs 113-120, coherent walk), the PCIe root complex
 *                (segment 0, ATS, RIDs 0-0xffff → SMMUv3 StreamIDs 0-0xffff) and one named component
 *                per DMA test engine behind an IOMMU (single mappings: SMMUv3 0x100 with stall and 8
 *                PASID bits, SMMUv3 0x101, MMU-500 0x400 with stall, MMU-500 0x401)
 *   MCFG         ECAM at 0x3f000000 for buses 0-15
 *   DSDT         \_SB_.DMA0-DMA4 (ISIM0001: registers, interrupt), \_SB_.PCI0 (PNP0A08) with the
 *                endpoints ACCL (00:01.0, ATS/PRI/20 PASID bits), NIC0 (00:02.0, ATS), FN30/FN31
 *                (00:03.0-1)
 * plus the memory map: 2 GiB of RAM at 0x4000_0000, firmware's range and the boot loader's kept.
 */
import { writeDsdt, type AmlDeviceSpec } from '../../bus/acpi/aml.js';
import {
  ACPI_IORT_SMMU_COHERENT_WALK,
  ACPI_IORT_SMMU_CORELINK_MMU500,
  ACPI_IORT_SMMU_V3_COHACC_OVERRIDE,
  ACPI_IORT_SMMU_V3_GENERIC,
  IORT_REV_ED,
  iortLayout,
  iortNamedComponentSpec,
  type IortNodeSpec,
  iortRootComplexSpec,
  writeIort,
} from '../../bus/acpi/iort.js';
import { writeMadt } from '../../bus/acpi/madt.js';
import { writeMcfg } from '../../bus/acpi/mcfg.js';
import type { AcpiMemoryMap } from '../../bus/acpi/acpi-boot.js';
import { VIRT } from './virt.js';

export interface VirtAcpiOptions {
  /** IORT table revision (default 5, E.d; 0 for issue-D/E-era consumers such as iasl before 2021). */
  iortRevision?: number;
  /** RAM size in bytes from VIRT.ramBase (default VIRT.ramSize). */
  ramSize?: number;
  /**
   * RMR nodes (IORT revision 5+ honours them): StreamIDs [sid, sid+count) of the SMMUv3 whose DMA
   * firmware leaves running into [base, base+length). Appended after the other nodes.
   */
  rmrs?: { sid: number; count: number; base: number; length: number; remapPermitted?: boolean }[];
  /** The Grace CMDQV of the SMMUv3 (as virt.ts's `cmdqv`): DSDT \_SB_.CMQ0, HID NVDA200C, _UID = the SMMUv3 node's Identifier. */
  cmdqv?: boolean;
}

export interface VirtAcpi {
  /** Table blobs by signature, as /sys/firmware/acpi/tables names them. */
  tables: Map<string, Uint8Array>;
  memory: AcpiMemoryMap;
}

/** SPI n of the DT description is GSIV n + 32. */
const gsiv = (spi: number): number => spi + 32;

/** Test engines of virt.ts in order: IORT target (index into the node list), StreamID, stall, PASID bits. */
const ENGINES: { iommu: 'smmuv3' | 'mmu500' | null; sid: number; stall: boolean; pasidBits: number }[] = [
  { iommu: 'smmuv3', sid: 0x100, stall: true, pasidBits: 8 },
  { iommu: 'smmuv3', sid: 0x101, stall: false, pasidBits: 0 },
  { iommu: 'mmu500', sid: 0x400, stall: true, pasidBits: 0 },
  { iommu: 'mmu500', sid: 0x401, stall: false, pasidBits: 0 },
  { iommu: null, sid: 0, stall: false, pasidBits: 0 },
];

/** The IORT node list of virt (also used to find node offsets: SMMUv3 is node 0, MMU-500 node 1). */
export function virtIortNodes(opts: Pick<VirtAcpiOptions, 'rmrs'> = {}): IortNodeSpec[] {
  const nodes: IortNodeSpec[] = [
    {
      kind: 'smmuv3',
      base: VIRT.smmuV3,
      flags: ACPI_IORT_SMMU_V3_COHACC_OVERRIDE,
      vatosAddress: 0,
      model: ACPI_IORT_SMMU_V3_GENERIC,
      eventGsiv: gsiv(74),
      priGsiv: gsiv(75),
      syncGsiv: gsiv(76),
      gerrGsiv: gsiv(77),
      proximityDomain: 0,
      deviceIdMappingIndex: 0,
    },
    {
      kind: 'smmu',
      base: VIRT.mmu500,
      span: 0x2_0000,
      model: ACPI_IORT_SMMU_CORELINK_MMU500,
      flags: ACPI_IORT_SMMU_COHERENT_WALK,
      globalIrqs: { nsgIrpt: gsiv(80), nsgIrptFlags: 0, nsgCfgIrpt: 0, nsgCfgIrptFlags: 0 },
      contextIrqs: [81, 82, 83, 84, 85, 86, 87, 88].map((n) => ({ gsiv: gsiv(n), flags: 0 })),
      pmuIrqs: [],
    },
    iortRootComplexSpec(0, 0),
  ];
  ENGINES.forEach((e, i) => {
    if (!e.iommu) return;
    nodes.push(iortNamedComponentSpec(`\\_SB_.DMA${i}`, e.iommu === 'smmuv3' ? 0 : 1, e.sid, { stall: e.stall, pasidBits: e.pasidBits }));
  });
  for (const r of opts.rmrs ?? []) {
    nodes.push({
      kind: 'rmr',
      flags: r.remapPermitted ? 1 : 0,
      descriptors: [{ base: r.base, length: r.length }],
      mappings: [{ inputBase: r.sid, count: r.count, outputBase: r.sid, output: 0, single: true }],
    });
  }
  return nodes;
}

/** Offsets of virt's SMMUv3 and MMU-500 IORT nodes for a table revision. */
export function virtIortOffsets(iortRevision = IORT_REV_ED): { smmuv3: number; mmu500: number; rc: number } {
  const o = iortLayout({ revision: iortRevision, nodes: virtIortNodes() });
  return { smmuv3: o[0], mmu500: o[1], rc: o[2] };
}

export function buildVirtAcpi(opts: VirtAcpiOptions = {}): VirtAcpi {
  const tables = new Map<string, Uint8Array>();
  tables.set(
    'APIC',
    writeMadt({
      gicc: [{ cpuInterfaceNumber: 0, uid: 0, baseAddress: VIRT.gicCpu, mpidr: 0 }],
      gicd: { baseAddress: VIRT.gicDist, version: 2 },
      msiFrames: [{ msiFrameId: 0, baseAddress: VIRT.gicV2m, spiBase: 128, spiCount: 64 }],
    }),
  );
  tables.set('IORT', writeIort({ revision: opts.iortRevision ?? IORT_REV_ED, nodes: virtIortNodes(opts) }));
  tables.set('MCFG', writeMcfg({ entries: [{ baseAddress: VIRT.ecam, segment: 0, startBus: 0, endBus: 15 }] }));
  const devices: AmlDeviceSpec[] = ENGINES.map((_, i) => ({
    name: `DMA${i}`,
    hid: 'ISIM0001',
    uid: i,
    cca: 1,
    memory: [{ base: VIRT.testEngineBase + i * VIRT.testEngineSize, size: VIRT.testEngineSize }],
    interrupts: [{ gsiv: gsiv(96 + i) }],
  }));
  if (opts.cmdqv) {
    devices.push({ name: 'CMQ0', hid: 'NVDA200C', uid: 0, memory: [{ base: VIRT.cmdqv, size: VIRT.cmdqvSize }], interrupts: [{ gsiv: gsiv(78), edge: true }] });
  }
  devices.push({
    name: 'PCI0',
    hid: 'PNP0A08',
    cid: 'PNP0A03',
    uid: 0,
    seg: 0,
    cca: 1,
    children: [
      { name: 'ACCL', adr: 0x0001_0000, integers: { IATS: 1, IPRI: 1, IPAS: 20 } },
      { name: 'NIC0', adr: 0x0002_0000, integers: { IATS: 1 } },
      { name: 'FN30', adr: 0x0003_0000 },
      { name: 'FN31', adr: 0x0003_0001 },
    ],
  });
  tables.set('DSDT', writeDsdt({ devices }));
  return {
    tables,
    memory: {
      ram: [{ base: VIRT.ramBase, size: opts.ramSize ?? VIRT.ramSize }],
      reserved: [VIRT.dtbReserved, VIRT.firmwareReserved].map((r) => ({ base: r.base, size: r.size })),
    },
  };
}
