/**
 * IOMMU configuration of PCI functions on an ACPI machine: the IORT root complex of the host
 * bridge's segment maps each requester ID (and DMA alias) through the node graph to an SMMU and a
 * StreamID, exactly as iort_iommu_configure_id() does, and the result is the function's fwspec.
 */
import { FirmwareError } from '../firmware-error.js';
import { type IommuFwspec, iommuFwspecAddSpecifier, iommuFwspecInit } from '../iommu-fwspec.js';
import { ofDmaIsCoherent } from '../of/address.js';
import type { DtNode } from '../of/tree.js';
import { acpiIortRootComplexOf, iortNodePath } from './acpi-boot.js';
import { ACPI_IORT_ATS_SUPPORTED } from './iort.js';
import { type IortWarn, iortPciIommuMap } from './iort-walk.js';

/**
 * The fwspec of the PCI function with requester ID(s) `rid` below `host`, from the IORT; null when
 * the host has no IORT root complex, an ID reaches no IOMMU, or the IOMMU has no device.
 */
// kernel: iort_iommu_configure_id() [iort.c]
export function iortPciIommuConfigure(host: DtNode, rid: number | readonly number[], warn: IortWarn): IommuFwspec | null {
  const a = acpiIortRootComplexOf(host);
  if (!a) return null;
  const rids = typeof rid === 'number' ? [rid] : rid;
  let fwspec: IommuFwspec | null = null;
  for (const r of rids) {
    const m = iortPciIommuMap(a.iort, a.rc, r, warn);
    if (!m) return null;
    const smmu = a.fw.nodeOfIort.get(m.iommu.offset);
    if (!smmu || !smmu.available) return null;
    if (fwspec === null) {
      fwspec = iommuFwspecInit(smmu, {
        canStall: false,
        pasidBits: 0,
        dmaCoherent: ofDmaIsCoherent(host),
        atsSupported: a.rc.kind === 'rc' && (a.rc.atsAttribute & ACPI_IORT_ATS_SUPPORTED) !== 0,
      });
    } else if (fwspec.iommuNode !== smmu) {
      throw new FirmwareError('IORT', `requester IDs of one device map to both ${fwspec.iommuNode.path} and ${iortNodePath(m.iommu)}`, a.rc.offset, iortNodePath(a.rc));
    }
    iommuFwspecAddSpecifier(fwspec, [m.streamId]);
  }
  return fwspec;
}
