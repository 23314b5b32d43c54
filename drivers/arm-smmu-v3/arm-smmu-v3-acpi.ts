/**
 * The SMMUv3 driver's ACPI side: the IORT node's HTTU override, and RMR (reserved memory range) nodes of the IORT. At probe, every
 * StreamID an RMR names gets a bypass STE in the fresh stream table before the SMMU is enabled, so
 * DMA firmware left running keeps flowing; each master then gets the RMR descriptors naming its
 * StreamIDs as reserved regions (DIRECT, or DIRECT_RELAXABLE with "remapping permitted"), which the
 * iommu core identity-maps in its default domain. Linux honours RMRs from IORT revision 5 (E.d).
 */
import type { Device } from '../../bus/device.js';
import { acpiIortNodeOf } from '../../bus/acpi/acpi-boot.js';
import { ACPI_IORT_SMMU_V3_HTTU_OVERRIDE } from '../../bus/acpi/iort.js';
import { iortGetRmrSids, iortIommuGetRmrs } from '../../bus/acpi/iort-walk.js';
import { PciDevice } from '../../bus/pci/pci-device.js';
import { IOMMU_CACHE, IOMMU_MMIO, IOMMU_PRIV, IOMMU_READ, IOMMU_WRITE } from '../../core/io-pgtable.js';
import type { IommuResvRegion } from '../../core/iommu-ops.js';
import type { ArmSmmuDevice } from './arm-smmu-v3-device.js';
import { newEntry, NUM_ENTRY_WORDS } from './arm-smmu-v3-entry.js';
import { ARM_SMMU_FEAT_HA, ARM_SMMU_FEAT_HD } from './arm-smmu-v3-regs.js';
import { armSmmuMakeBypassSte } from './arm-smmu-v3-ste.js';

/**
 * The HA/HD features an IORT SMMUv3 node's HTTU override field grants (flags bits 2:1: 1 = access
 * flag, 2 = access and dirty); null for an SMMU not described by an IORT.
 */
// kernel: arm_smmu_device_acpi_probe() [arm-smmu-v3.c]
export function armSmmuIortHttu(smmu: ArmSmmuDevice): number | null {
  const a = acpiIortNodeOf(smmu.dev.ofNode);
  if (!a || a.node.kind !== 'smmuv3') return null;
  const field = (a.node.flags & ACPI_IORT_SMMU_V3_HTTU_OVERRIDE) >>> 1;
  return field === 2 ? ARM_SMMU_FEAT_HD | ARM_SMMU_FEAT_HA : field === 1 ? ARM_SMMU_FEAT_HA : 0;
}

/** StreamIDs that got a bypass STE at probe, per SMMU (for tests and reports). */
const installed = new WeakMap<ArmSmmuDevice, number[]>();

/** The RMR StreamIDs `smmu` installed bypass STEs for at probe. */
export function armSmmuRmrSids(smmu: ArmSmmuDevice): readonly number[] {
  return installed.get(smmu) ?? [];
}

/** Bypass STEs for every RMR StreamID, written before the stream table is live. */
// kernel: arm_smmu_rmr_install_bypass_ste() [arm-smmu-v3.c]
export function armSmmuRmrInstallBypassSte(smmu: ArmSmmuDevice): void {
  const a = acpiIortNodeOf(smmu.dev.ofNode);
  if (!a) return;
  const sids = iortGetRmrSids(a.iort, a.node, (m) => smmu.warn(m));
  const done: number[] = [];
  for (const sid of sids) {
    try {
      smmu.strtab.initSid(sid);
    } catch {
      smmu.err(`RMR SID(0x${sid.toString(16)}) bypass failed`);
      continue;
    }
    const ste = newEntry();
    armSmmuMakeBypassSte(smmu.features, ste);
    const pa = smmu.strtab.stePa(sid);
    // The table is not live yet: plain stores, no sync.
    for (let w = NUM_ENTRY_WORDS - 1; w >= 0; w--) smmu.ram.write32(pa + w * 4, ste[w]);
    done.push(sid);
  }
  if (done.length) smmu.info(`RMR: bypass STEs for SIDs ${done.map((s) => `0x${s.toString(16)}`).join(' ')}`);
  installed.set(smmu, done);
}

/** The RMR regions naming one of `dev`'s StreamIDs. */
// kernel: iort_iommu_get_resv_regions() [iort.c]
export function armSmmuIortResvRegions(smmu: ArmSmmuDevice, dev: Device): IommuResvRegion[] {
  const a = acpiIortNodeOf(smmu.dev.ofNode);
  if (!a || !dev.fwspec) return [];
  const pci = dev instanceof PciDevice;
  const regions = iortIommuGetRmrs(a.iort, a.node, dev.fwspec.ids, pci, pci && dev.host.preserveConfig, (m) => smmu.warn(m));
  return regions.map((r) => ({
    start: r.start,
    length: r.length,
    prot: IOMMU_READ | IOMMU_WRITE | (r.priv ? IOMMU_PRIV : 0) | (r.mmio ? IOMMU_MMIO : 0) | (r.cache ? IOMMU_CACHE : 0),
    type: r.type,
  }));
}
