/**
 * What `iommu-sim boot` reports: the SMMUs firmware describes and what became of them, the masters
 * that name an IOMMU, and the enabled PCI hosts with an `iommu-map`. The shape is documented in the README
 * and read by checks: keep it stable.
 */
import { acpiIortRootComplexOf } from '../../bus/acpi/acpi-boot.js';
import { ofIommuMapEntries, ofIommuSpecs } from '../../bus/of/of-iommu.js';
import type { DeviceTree, DtNode } from '../../bus/of/tree.js';
import type { Machine } from '../../hw/machine.js';
import { isSmmuNode } from '../../hw/iommu-models.js';
import type { Kernel } from '../../kernel/kernel.js';
import { describeIommuAttachment } from './iommu-state.js';
import { cmdqvReport, type CmdqvBootReport } from './cmdqv-report.js';
import { iwbReport, type IwbBootReport, pmcgReport, type PmcgBootReport } from './pmcg-report.js';

export type IommuReportStatus = 'probed' | 'disabled' | 'no-driver' | 'no-model' | 'failed';

export interface BootReport {
  iommus: {
    node: string;
    compatible: string[];
    status: IommuReportStatus;
    driver: string | null;
    error: string | null;
  }[];
  masters: {
    node: string;
    iommus: { iommu: string; cells: number[] }[];
    canStall: boolean;
    pasidBits: number;
    group: number | null;
    domain: string | null;
  }[];
  pciHosts: {
    node: string;
    iommuMap: { ridBase: number; iommu: string; sidBase: number; length: number }[];
  }[];
  /** Present only when firmware describes a Grace CMDQV (see cmdqvReport). */
  cmdqvs?: CmdqvBootReport[];
  /** Present only when the IORT describes SMMUv3 PMCGs (see pmcgReport). */
  pmcgs?: PmcgBootReport[];
  /** Present only when the IORT describes IWBs (see iwbReport). */
  iwbs?: IwbBootReport[];
}

export function bootReport(machine: Machine, kernel: Kernel): BootReport {
  const dt: DeviceTree = kernel.dt;
  const report: BootReport = { iommus: [], masters: [], pciHosts: [] };
  for (const node of dt.nodes()) {
    if (node.has('compatible') && isSmmuNode(node)) report.iommus.push(iommuEntry(machine, kernel, node));
    if (node.has('iommus') && node.available) {
      const att = describeIommuAttachment(kernel, node);
      report.masters.push({
        node: node.path,
        iommus: ofIommuSpecs(dt, node).map((s) => ({ iommu: s.iommu.path, cells: s.cells })),
        canStall: node.has('dma-can-stall'),
        pasidBits: node.u32('pasid-num-bits') ?? 0,
        group: att.group,
        domain: att.domain,
      });
    }
    const acpiRc = acpiIortRootComplexOf(node);
    if (acpiRc) report.pciHosts.push({ node: node.path, iommuMap: iortRcIommuMap(acpiRc) });
    // Only enabled hosts, as `masters` lists only enabled masters: a disabled host bridge is never probed.
    else if (node.has('iommu-map') && node.available) {
      report.pciHosts.push({
        node: node.path,
        iommuMap: ofIommuMapEntries(dt, node).map((e) => ({
          ridBase: e.ridBase,
          iommu: e.iommu.path,
          sidBase: e.sidBase ?? 0,
          length: e.length,
        })),
      });
    }
  }
  const cmdqvs = cmdqvReport(machine, kernel);
  if (cmdqvs.length > 0) report.cmdqvs = cmdqvs;
  const pmcgs = pmcgReport(kernel);
  if (pmcgs.length > 0) report.pmcgs = pmcgs;
  const iwbs = iwbReport(kernel);
  if (iwbs.length > 0) report.iwbs = iwbs;
  return report;
}

/**
 * An ACPI host bridge's IORT root complex as `iommuMap` entries: its range mappings that lead to an
 * SMMU device, `length` IDs each (the stored count plus one), `iommu` the SMMU's IORT name.
 */
function iortRcIommuMap(a: NonNullable<ReturnType<typeof acpiIortRootComplexOf>>): BootReport['pciHosts'][number]['iommuMap'] {
  return a.rc.mappings.flatMap((m) => {
    const smmu = a.fw.nodeOfIort.get(m.outputReference);
    return smmu ? [{ ridBase: m.inputBase, iommu: smmu.path, sidBase: m.outputBase, length: m.idCount + 1 }] : [];
  });
}

function iommuEntry(machine: Machine, kernel: Kernel, node: DtNode): BootReport['iommus'][number] {
  const base = { node: node.path, compatible: node.compatible };
  if (!node.available) return { ...base, status: 'disabled', driver: null, error: null };
  const hwEntry = machine.iommus.get(node.path);
  if (!hwEntry || hwEntry.status === 'no-model') {
    return { ...base, status: 'no-model', driver: null, error: hwEntry?.error ?? null };
  }
  if (hwEntry.status === 'failed') return { ...base, status: 'no-model', driver: null, error: hwEntry.error };
  const dev = kernel.core.findDeviceByOfNode(node);
  if (!dev) return { ...base, status: 'no-driver', driver: null, error: null };
  switch (dev.status) {
    case 'bound':
      return { ...base, status: 'probed', driver: dev.driver?.name ?? null, error: null };
    case 'failed':
      return { ...base, status: 'failed', driver: null, error: dev.probeError };
    case 'deferred':
      return { ...base, status: 'failed', driver: null, error: `probe deferred: ${dev.probeError ?? 'unknown reason'}` };
    default:
      return { ...base, status: 'no-driver', driver: null, error: null };
  }
}
