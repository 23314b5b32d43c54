/**
 * The SMMUv3 driver's ACPI side: RMR (reserved memory range) nodes of the IORT. At probe, every
 * StreamID an RMR names gets a bypass STE in the fresh stream table before the SMMU is enabled, so
 * DMA firmware left running keeps flowing; each master then gets the RMR descriptors naming its
 * StreamIDs as reserved regions (DIRECT, or DIRECT_RELAXABLE with "remapping permitted"), which the
 * iommu core identity-maps in its default domain. Linux honours RMRs from IORT revision 5 (E.d).
 */
import type { Device } from '../../bus/device.js';
import { acpiIortNodeOf } from '../../bus/acpi/acpi-boot.js';
import { iortGetRmrSids, iortIommuGetRmrs } from '../../bus/acpi/iort-walk.js';
import { PciDevice } from '../../bus/pci/pci-device.js';
import { IOMMU_CACHE, IOMMU_MMIO, IOMMU_PRIV, IOMMU_READ, IOMMU_WRITE } from '../../core/io-pgtable.js';
import type { IommuResvRegion } from '../../core/iommu-ops.js';
import type { ArmSmmuDevice } from './arm-smmu-v3-device.js';
import { newEntry, NUM_ENTRY_WORDS } from './arm-smmu-v3-entry.js';
import { armSmmuMakeBypassSte } from './arm-smmu-v3-ste.js';

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
    for (let w = NUM_ENTRY_WORDS - 1; w >= 0; w--) smmu.ram.write32(pa + w * 4, ste[w]!);
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
  const regions = iortIommuGetRmrs(a.iort, a.node, dev.fwspec.ids, dev instanceof PciDevice, false, (m) => smmu.warn(m));
  return regions.map((r) => ({
    start: r.start,
    length: r.length,
    prot: IOMMU_READ | IOMMU_WRITE | (r.priv ? IOMMU_PRIV : 0) | (r.mmio ? IOMMU_MMIO : 0) | (r.cache ? IOMMU_CACHE : 0),
    type: r.type,
  }));
}
