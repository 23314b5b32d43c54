/**
 * The SMMUv3 PMCG part of `iommu-sim boot`: each IORT PMCG node the kernel made a platform device
 * of (`IORT:pmcg@0x…`, compatible `arm,smmu-v3-pmcg`), its pages, its overflow interrupt, the SMMU
 * its Node Reference names, and what became of the device. No driver of this simulator consumes a
 * PMCG (there is no SMMUv3 PMU driver and no PMCG model), so `status` is `no-driver` on every boot
 * that gets this far. And each IORT IWB node (GICv5 interrupt wire bridge, table revision 7): not a
 * device of its own, as in Linux, where the IWB device is the DSDT object the node names and the
 * node only carries its ID mappings; reported with that DSDT device and what became of it. The
 * shapes are documented in the README (boot --json, keys `pmcgs` and `iwbs`); keep them stable.
 */
import { ARM_SMMU_V3_PMCG_COMPATIBLE, acpiFirmwareOf, acpiIortNodeOf, iortNodePath } from '../../bus/acpi/acpi-boot.js';
import { acpiPathEqual } from '../../bus/acpi/aml.js';
import type { Kernel } from '../../kernel/kernel.js';

export interface PmcgBootReport {
  node: string;
  /** The node its Node Reference names (the SMMUv3 it counts for), or null. */
  smmu: string | null;
  page0: number;
  /** Page 1 (node revision 1 and later), or null. */
  page1: number | null;
  /** The overflow interrupt's GSIV, or null (MSI-signalled, or none). */
  overflowGsiv: number | null;
  /** The platform device's state: `no-driver` (nothing binds it), or what the driver core says. */
  status: string;
  driver: string | null;
}

export function pmcgReport(kernel: Kernel): PmcgBootReport[] {
  const out: PmcgBootReport[] = [];
  for (const node of kernel.dt.nodes()) {
    if (!node.has('compatible') || !node.isCompatible(ARM_SMMU_V3_PMCG_COMPATIBLE)) continue;
    const a = acpiIortNodeOf(node);
    if (!a || a.node.kind !== 'pmcg') continue;
    const n = a.node;
    const dev = kernel.core.findDeviceByOfNode(node);
    out.push({
      node: node.path,
      smmu: n.nodeReference ? (a.fw.nodeOfIort.get(n.nodeReference)?.path ?? null) : null,
      page0: n.page0Base,
      page1: n.revision > 0 ? n.page1Base : null,
      overflowGsiv: n.overflowGsiv || null,
      status: dev ? (dev.driver ? 'bound' : dev.status) : 'absent',
      driver: dev?.driver?.name ?? null,
    });
  }
  return out;
}

/** The text form: one line per PMCG. Empty when there is none. */
export function formatPmcgReport(pmcgs: readonly PmcgBootReport[] | undefined): string[] {
  if (!pmcgs || pmcgs.length === 0) return [];
  const out = ['', 'SMMUv3 PMCGs (platform devices; no PMU driver)'];
  for (const p of pmcgs) {
    const pages = `page 0 at 0x${p.page0.toString(16)}${p.page1 !== null ? `, page 1 at 0x${p.page1.toString(16)}` : ''}`;
    out.push(`${p.node} (SMMU ${p.smmu ?? '-'}): ${pages}, overflow ${p.overflowGsiv !== null ? `GSIV ${p.overflowGsiv}` : '-'}: ${p.status}${p.driver ? ` (${p.driver})` : ''}`);
  }
  return out;
}

export interface IwbBootReport {
  /** The IORT node, `IORT:iwb@0x…`. */
  node: string;
  configFrame: number;
  index: number;
  /** The namespace path the node names. */
  deviceName: string;
  /** That DSDT device's platform device, or null when the DSDT has none (or it is not a device here). */
  device: string | null;
  /** The platform device's state, or `absent`. */
  status: string;
}

export function iwbReport(kernel: Kernel): IwbBootReport[] {
  const fw = acpiFirmwareOf(kernel.dt);
  const out: IwbBootReport[] = [];
  for (const n of fw?.tables.iort?.nodes ?? []) {
    if (n.kind !== 'iwb') continue;
    const d = kernel.core.devices.find((x) => acpiPathEqual(x.name, n.deviceName));
    out.push({ node: iortNodePath(n), configFrame: n.configFrameBase, index: n.iwbIndex, deviceName: n.deviceName, device: d?.name ?? null, status: d ? d.status : 'absent' });
  }
  return out;
}

/** The text form: one line per IWB. Empty when there is none. */
export function formatIwbReport(iwbs: readonly IwbBootReport[] | undefined): string[] {
  if (!iwbs || iwbs.length === 0) return [];
  const out = ['', 'IORT IWBs (the device is the DSDT object the node names)'];
  for (const w of iwbs) out.push(`${w.node}: IWB ${w.index}, config frame at 0x${w.configFrame.toString(16)}, ${w.deviceName} → ${w.device ?? '-'}: ${w.status}`);
  return out;
}
