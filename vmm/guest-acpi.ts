/**
 * The guest's firmware as ACPI tables (the VMM's counterpart of QEMU's virt-acpi-build.c), for a VM
 * created with `firmware: 'acpi'`: what a Grace guest boots from.
 *
 *   APIC (MADT)  the guest's GICv2: distributor and CPU interface
 *   IORT         the vSMMUv3 (generic model, COHACC, GSIVs of its four SPIs, node Identifier
 *                GUEST_IORT_SMMU_ID), one named component per assigned platform device (single
 *                mapping to its virtual StreamID, stall and PASID bits from its `dma-can-stall` and
 *                `pasid-num-bits` properties), and with assigned PCIe functions a root complex
 *                (segment 0, ATS, RIDs → the same StreamIDs, as the DT's `iommu-map`)
 *   MCFG         the guest ECAM (with PCIe functions)
 *   DSDT         \_SB_.DEVn per platform device (registers and interrupts), \_SB_.CMQ0 (HID NVDA200C,
 *                _UID = the vSMMUv3 node's Identifier: how Linux finds the CMDQV of an SMMU,
 *                acpi_smmu_dsdt_probe_tegra241_cmdqv()) with `cmdqv`, \_SB_.PCI0 (PNP0A08) with PCIe
 * and the memory map (guest RAM; nothing reserved).
 * Does not support: devices with a compatible this simulator has no ACPI ID for (an error naming it).
 */
import { ACPI_SIM_IDS, ACPI_HID_TEGRA241_CMDQV, type AcpiMemoryMap } from '../bus/acpi/acpi-boot.js';
import { writeDsdt, type AmlDeviceSpec } from '../bus/acpi/aml.js';
import {
  ACPI_IORT_SMMU_V3_COHACC_OVERRIDE,
  ACPI_IORT_SMMU_V3_GENERIC,
  IORT_REV_ED,
  iortNamedComponentSpec,
  type IortNodeSpec,
  iortRootComplexSpec,
  writeIort,
} from '../bus/acpi/iort.js';
import { writeMadt } from '../bus/acpi/madt.js';
import { writeMcfg } from '../bus/acpi/mcfg.js';

/**
 * The guest IORT SMMUv3 node's Identifier (and so the CMDQV's _UID). Not the node's index, so that a
 * lookup by index instead of Identifier would miss.
 */
export const GUEST_IORT_SMMU_ID = 7;

export interface GuestAcpiSpec {
  gic: { dist: number; cpu: number };
  vsmmu: { base: number; spis: readonly number[] };
  cmdqv: { base: number; size: number; spi: number } | null;
  ram: { base: number; size: number };
  devices: readonly { compatible: string; vsid: number; mmio: readonly { base: number; size: number }[]; irqs: readonly (readonly number[])[]; stall: boolean; pasidBits: number }[];
  pci: { ecamBase: number; busRange: readonly [number, number] } | null;
  /** The CMDQV's _UID (default GUEST_IORT_SMMU_ID; anything else names no SMMU, for tests). */
  cmdqvUid?: number;
}

/** SPI n is GSIV n + 32. */
const gsiv = (spi: number): number => spi + 32;

/** The ACPI ID a guest device's compatible is described by. */
function hidOf(compatible: string): string {
  for (const [hid, compat] of Object.entries(ACPI_SIM_IDS)) if (compat === compatible) return hid;
  throw new RangeError(`guest ACPI firmware: no ACPI ID describes a "${compatible}" device (known: ${Object.values(ACPI_SIM_IDS).join(', ')})`);
}

export function buildGuestAcpi(spec: GuestAcpiSpec): { tables: Map<string, Uint8Array>; memory: AcpiMemoryMap } {
  const tables = new Map<string, Uint8Array>();
  tables.set('APIC', writeMadt({ gicc: [{ cpuInterfaceNumber: 0, uid: 0, baseAddress: spec.gic.cpu, mpidr: 0 }], gicd: { baseAddress: spec.gic.dist, version: 2 } }));
  const [evt, pri, sync, gerr] = spec.vsmmu.spis;
  const nodes: IortNodeSpec[] = [
    {
      kind: 'smmuv3',
      identifier: GUEST_IORT_SMMU_ID,
      base: spec.vsmmu.base,
      flags: ACPI_IORT_SMMU_V3_COHACC_OVERRIDE,
      vatosAddress: 0,
      model: ACPI_IORT_SMMU_V3_GENERIC,
      eventGsiv: gsiv(evt ?? 0),
      priGsiv: gsiv(pri ?? 0),
      syncGsiv: gsiv(sync ?? 0),
      gerrGsiv: gsiv(gerr ?? 0),
      proximityDomain: 0,
      deviceIdMappingIndex: 0,
    },
  ];
  if (spec.pci) nodes.push(iortRootComplexSpec(0, 0));
  const devices: AmlDeviceSpec[] = [];
  spec.devices.forEach((d, i) => {
    nodes.push(iortNamedComponentSpec(`\\_SB_.DEV${i}`, 0, d.vsid, { stall: d.stall, pasidBits: d.pasidBits }));
    devices.push({
      name: `DEV${i}`,
      hid: hidOf(d.compatible),
      uid: i,
      cca: 1,
      memory: d.mmio.map((r) => ({ base: r.base, size: r.size })),
      // DT interrupt cells: <type number flags>; flags 1/2 are edge-triggered.
      interrupts: d.irqs.map((s) => ({ gsiv: gsiv(s[1] ?? 0), edge: ((s[2] ?? 0) & 3) !== 0 })),
    });
  });
  tables.set('IORT', writeIort({ revision: IORT_REV_ED, nodes }));
  if (spec.cmdqv) {
    devices.push({
      name: 'CMQ0',
      hid: ACPI_HID_TEGRA241_CMDQV,
      uid: spec.cmdqvUid ?? GUEST_IORT_SMMU_ID,
      memory: [{ base: spec.cmdqv.base, size: spec.cmdqv.size }],
      interrupts: [{ gsiv: gsiv(spec.cmdqv.spi), edge: true }],
    });
  }
  if (spec.pci) {
    tables.set('MCFG', writeMcfg({ entries: [{ baseAddress: spec.pci.ecamBase, segment: 0, startBus: spec.pci.busRange[0], endBus: spec.pci.busRange[1] }] }));
    devices.push({ name: 'PCI0', hid: 'PNP0A08', cid: 'PNP0A03', uid: 0, seg: 0, cca: 1 });
  }
  tables.set('DSDT', writeDsdt({ devices }));
  return { tables, memory: { ram: [{ base: spec.ram.base, size: spec.ram.size }], reserved: [] } };
}
