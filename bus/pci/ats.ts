/**
 * ATS, PRI and PASID on a PCI function (kernel: drivers/pci/ats.c): each is turned on and off by
 * writing its extended capability's control register, after checking what the capability supports.
 * The IOMMU driver calls these: PASID before ATS, PRI only with ATS.
 *
 * Errors follow the kernel: EINVAL for a missing capability or an unsupported request, EBUSY for
 * enabling what is already enabled (the kernel WARNs there too) or PRI while it has not stopped.
 * Not modelled: SR-IOV PF/VF sharing, the End-End TLP prefix and ACS path checks of pci_enable_pasid().
 */
import { KernelError } from '../errno.js';
import type { PciDevice } from './pci-device.js';
import {
  PCI_ATS_CAP,
  PCI_ATS_CAP_PAGE_ALIGNED,
  PCI_ATS_CAP_QDEP_MASK,
  PCI_ATS_CTRL,
  PCI_ATS_CTRL_ENABLE,
  PCI_ATS_CTRL_STU_MASK,
  PCI_ATS_MAX_QDEP,
  PCI_ATS_MIN_STU,
  PCI_EXT_CAP_ID_ATS,
  PCI_EXT_CAP_ID_PASID,
  PCI_EXT_CAP_ID_PRI,
  PCI_PASID_CAP,
  PCI_PASID_CAP_EXEC,
  PCI_PASID_CAP_PRIV,
  PCI_PASID_CAP_WIDTH_MASK,
  PCI_PASID_CAP_WIDTH_SHIFT,
  PCI_PASID_CTRL,
  PCI_PASID_CTRL_ENABLE,
  PCI_PRI_ALLOC_REQ,
  PCI_PRI_CTRL,
  PCI_PRI_CTRL_ENABLE,
  PCI_PRI_CTRL_RESET,
  PCI_PRI_MAX_REQ,
  PCI_PRI_STATUS,
  PCI_PRI_STATUS_PASID,
  PCI_PRI_STATUS_STOPPED,
} from './regs.js';

function capOrThrow(pdev: PciDevice, id: number, what: string, op: string): number {
  const pos = pdev.findExtCapability(id);
  if (!pos) throw new KernelError('EINVAL', `${op}: ${pdev.name} has no ${what} capability`);
  return pos;
}

// ---- ATS -----------------------------------------------------------------------------------------

// kernel: pci_ats_supported() [ats.c]
export function pciAtsSupported(pdev: PciDevice): boolean {
  return pdev.findExtCapability(PCI_EXT_CAP_ID_ATS) !== 0;
}

/** Enable ATS with Smallest Translation Unit 2^ps bytes. */
// kernel: pci_enable_ats() [ats.c]
export function pciEnableAts(pdev: PciDevice, ps: number): void {
  const pos = capOrThrow(pdev, PCI_EXT_CAP_ID_ATS, 'ATS', 'pci_enable_ats');
  if (pdev.features.atsEnabled) throw new KernelError('EBUSY', `pci_enable_ats: ATS is already enabled on ${pdev.name}`);
  if (!Number.isInteger(ps) || ps < PCI_ATS_MIN_STU || ps - PCI_ATS_MIN_STU > PCI_ATS_CTRL_STU_MASK) {
    throw new KernelError('EINVAL', `pci_enable_ats: page shift ${ps} of ${pdev.name} is not an STU (${PCI_ATS_MIN_STU}..${PCI_ATS_MIN_STU + PCI_ATS_CTRL_STU_MASK})`);
  }
  pdev.cfg.write16(pos + PCI_ATS_CTRL, PCI_ATS_CTRL_ENABLE | (ps - PCI_ATS_MIN_STU));
  pdev.features.atsEnabled = true;
  pdev.features.atsStu = ps;
}

// kernel: pci_disable_ats() [ats.c]
export function pciDisableAts(pdev: PciDevice): void {
  const pos = capOrThrow(pdev, PCI_EXT_CAP_ID_ATS, 'ATS', 'pci_disable_ats');
  if (!pdev.features.atsEnabled) throw new KernelError('EINVAL', `pci_disable_ats: ATS is not enabled on ${pdev.name}`);
  const ctrl = pdev.cfg.read16(pos + PCI_ATS_CTRL);
  pdev.cfg.write16(pos + PCI_ATS_CTRL, ctrl & ~PCI_ATS_CTRL_ENABLE);
  pdev.features.atsEnabled = false;
}

/** Invalidation requests the function accepts at once (1..32). */
// kernel: pci_ats_queue_depth() [ats.c]
export function pciAtsQueueDepth(pdev: PciDevice): number {
  const pos = capOrThrow(pdev, PCI_EXT_CAP_ID_ATS, 'ATS', 'pci_ats_queue_depth');
  const qdep = pdev.cfg.read16(pos + PCI_ATS_CAP) & PCI_ATS_CAP_QDEP_MASK;
  return qdep === 0 ? PCI_ATS_MAX_QDEP : qdep;
}

/** The function only sends page-aligned untranslated addresses. */
// kernel: pci_ats_page_aligned() [ats.c]
export function pciAtsPageAligned(pdev: PciDevice): boolean {
  const pos = pdev.findExtCapability(PCI_EXT_CAP_ID_ATS);
  return pos !== 0 && (pdev.cfg.read16(pos + PCI_ATS_CAP) & PCI_ATS_CAP_PAGE_ALIGNED) !== 0;
}

// ---- PRI -----------------------------------------------------------------------------------------

/**
 * Allocate min(reqs, capacity) outstanding page requests and enable PRI.
 * EBUSY if it is enabled or has not stopped (outstanding requests from an earlier enable).
 */
// kernel: pci_enable_pri() [ats.c]
export function pciEnablePri(pdev: PciDevice, reqs: number): void {
  const pos = capOrThrow(pdev, PCI_EXT_CAP_ID_PRI, 'PRI', 'pci_enable_pri');
  if (pdev.features.priEnabled) throw new KernelError('EBUSY', `pci_enable_pri: PRI is already enabled on ${pdev.name}`);
  if (!Number.isInteger(reqs) || reqs < 0) throw new KernelError('EINVAL', `pci_enable_pri: ${reqs} is not a request count`);
  const control = pdev.cfg.read16(pos + PCI_PRI_CTRL);
  const status = pdev.cfg.read16(pos + PCI_PRI_STATUS);
  if ((control & PCI_PRI_CTRL_ENABLE) !== 0 || (status & PCI_PRI_STATUS_STOPPED) === 0) {
    throw new KernelError('EBUSY', `pci_enable_pri: PRI of ${pdev.name} has not stopped (control 0x${control.toString(16)}, status 0x${status.toString(16)})`);
  }
  const capacity = pdev.cfg.read32(pos + PCI_PRI_MAX_REQ) >>> 0;
  const alloc = Math.min(capacity, reqs);
  pdev.cfg.write32(pos + PCI_PRI_ALLOC_REQ, alloc);
  // PRI status shares the dword and has write-1-to-clear bits: write zeros there.
  pdev.cfg.write16(pos + PCI_PRI_CTRL, control | PCI_PRI_CTRL_ENABLE, true);
  pdev.features.priEnabled = true;
  pdev.features.priReqsAlloc = alloc;
}

// kernel: pci_disable_pri() [ats.c]
export function pciDisablePri(pdev: PciDevice): void {
  const pos = capOrThrow(pdev, PCI_EXT_CAP_ID_PRI, 'PRI', 'pci_disable_pri');
  if (!pdev.features.priEnabled) throw new KernelError('EINVAL', `pci_disable_pri: PRI is not enabled on ${pdev.name}`);
  const control = pdev.cfg.read16(pos + PCI_PRI_CTRL);
  pdev.cfg.write16(pos + PCI_PRI_CTRL, control & ~PCI_PRI_CTRL_ENABLE, true);
  pdev.features.priEnabled = false;
}

/** Only while PRI is disabled (EBUSY otherwise). */
// kernel: pci_reset_pri() [ats.c]
export function pciResetPri(pdev: PciDevice): void {
  const pos = capOrThrow(pdev, PCI_EXT_CAP_ID_PRI, 'PRI', 'pci_reset_pri');
  const control = pdev.cfg.read16(pos + PCI_PRI_CTRL);
  if ((control & PCI_PRI_CTRL_ENABLE) !== 0) throw new KernelError('EBUSY', `pci_reset_pri: PRI of ${pdev.name} is enabled`);
  pdev.cfg.write16(pos + PCI_PRI_CTRL, control | PCI_PRI_CTRL_RESET, true);
}

// kernel: pci_pri_supported() [ats.c]
export function pciPriSupported(pdev: PciDevice): boolean {
  return pdev.findExtCapability(PCI_EXT_CAP_ID_PRI) !== 0;
}

/** Page responses must carry the PASID of the request. */
// kernel: pci_prg_resp_pasid_required() [ats.c]
export function pciPrgRespPasidRequired(pdev: PciDevice): boolean {
  const pos = pdev.findExtCapability(PCI_EXT_CAP_ID_PRI);
  return pos !== 0 && (pdev.cfg.read16(pos + PCI_PRI_STATUS) & PCI_PRI_STATUS_PASID) !== 0;
}

// ---- PASID ---------------------------------------------------------------------------------------

/**
 * Enable PASID with `features` (PCI_PASID_CTRL_EXEC / _PRIV), each of
 * which the capability must support.
 */
// kernel: pci_enable_pasid() [ats.c]
export function pciEnablePasid(pdev: PciDevice, features = 0): void {
  const pos = capOrThrow(pdev, PCI_EXT_CAP_ID_PASID, 'PASID', 'pci_enable_pasid');
  if (pdev.features.pasidEnabled) throw new KernelError('EBUSY', `pci_enable_pasid: PASID is already enabled on ${pdev.name}`);
  const supported = pdev.cfg.read16(pos + PCI_PASID_CAP) & (PCI_PASID_CAP_EXEC | PCI_PASID_CAP_PRIV);
  if ((supported & features) !== features) {
    throw new KernelError(
      'EINVAL',
      `pci_enable_pasid: ${pdev.name} supports PASID features 0x${supported.toString(16)}, not 0x${features.toString(16)}`,
    );
  }
  pdev.cfg.write16(pos + PCI_PASID_CTRL, PCI_PASID_CTRL_ENABLE | features);
  pdev.features.pasidEnabled = true;
  pdev.features.pasidFeatures = features;
}

// kernel: pci_disable_pasid() [ats.c]
export function pciDisablePasid(pdev: PciDevice): void {
  const pos = capOrThrow(pdev, PCI_EXT_CAP_ID_PASID, 'PASID', 'pci_disable_pasid');
  if (!pdev.features.pasidEnabled) throw new KernelError('EINVAL', `pci_disable_pasid: PASID is not enabled on ${pdev.name}`);
  pdev.cfg.write16(pos + PCI_PASID_CTRL, 0);
  pdev.features.pasidEnabled = false;
  pdev.features.pasidFeatures = 0;
}

/** PCI_PASID_CAP_EXEC / _PRIV the function supports. */
// kernel: pci_pasid_features() [ats.c]
export function pciPasidFeatures(pdev: PciDevice): number {
  const pos = capOrThrow(pdev, PCI_EXT_CAP_ID_PASID, 'PASID', 'pci_pasid_features');
  return pdev.cfg.read16(pos + PCI_PASID_CAP) & (PCI_PASID_CAP_EXEC | PCI_PASID_CAP_PRIV);
}

/** 2^(Max PASID Width). */
// kernel: pci_max_pasids() [ats.c]
export function pciMaxPasids(pdev: PciDevice): number {
  const pos = capOrThrow(pdev, PCI_EXT_CAP_ID_PASID, 'PASID', 'pci_max_pasids');
  const width = (pdev.cfg.read16(pos + PCI_PASID_CAP) & PCI_PASID_CAP_WIDTH_MASK) >> PCI_PASID_CAP_WIDTH_SHIFT;
  return 2 ** width;
}
