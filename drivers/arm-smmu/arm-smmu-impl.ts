/**
 * Implementation and integration hooks of the arm-smmu driver (kernel: struct arm_smmu_impl and
 * drivers/iommu/arm/arm-smmu/arm-smmu-impl.c).
 *
 * A variant is a narrow set of hooks, chosen once at probe by `armSmmuImplInit`: first by the model
 * the compatible names (MMU-500, Cavium), then by DT quirks (Calxeda secure aliases, Marvell
 * AP806), then the Qualcomm flavours (arm-smmu-qcom.ts). The generic driver calls a hook where one
 * is set and does its own thing otherwise.
 *
 * Supported here: Arm MMU-500 (reset: sACR cache lock and TLB enables, ACTLR.CPRE off), Calxeda
 * (GR0 secure-alias offsets), Cavium CN88xx erratum 27704 (ASIDs/VMIDs unique across SMMUs of the
 * kernel), Marvell AP806 erratum 582743 (no AArch64 formats, 64-bit accesses split in two).
 * Not supported: the NVIDIA Tegra194 dual-instance SMMU (no such node is matched by this driver).
 */
import type { Device } from '../../bus/device.js';
import type { DriverCore } from '../../bus/driver-core.js';
import type { IoPgtableCfg } from '../../core/io-pgtable.js';
import type { ArmSmmuDevice, ArmSmmuDomain } from './arm-smmu-device.js';
import {
  ARM_SMMU_GR0,
  ARM_SMMU_GR0_sACR,
  ARM_SMMU_GR0_sCR0,
  ARM_SMMU_GR0_sGFSR,
  ARM_SMMU_GR0_sGFSYNR0,
  ARM_SMMU_GR0_sGFSYNR1,
  ARM_SMMU_GR0_sGFSYNR2,
} from './arm-smmu-regs.js';
import { armMmu500Reset } from './arm-smmu-mmu500.js';
import { ARM_SMMU_FEAT_FMT_AARCH64_16K, ARM_SMMU_FEAT_FMT_AARCH64_4K, ARM_SMMU_FEAT_FMT_AARCH64_64K } from './arm-smmu-device.js';
import { qcomSmmuImplInit } from './arm-smmu-qcom.js';

export { armMmu500Reset } from './arm-smmu-mmu500.js';

/** The kernel's struct arm_smmu_impl */
export interface ArmSmmuImpl {
  /** Which variant this is, for messages and reports. */
  readonly name: string;
  readReg?(smmu: ArmSmmuDevice, page: number, offset: number): number;
  writeReg?(smmu: ArmSmmuDevice, page: number, offset: number, val: number): void;
  readReg64?(smmu: ArmSmmuDevice, page: number, offset: number): bigint;
  writeReg64?(smmu: ArmSmmuDevice, page: number, offset: number, val: bigint): void;
  /** After the ID registers were read (may adjust features, reserve banks). */
  cfgProbe?(smmu: ArmSmmuDevice): void;
  /** During reset, before the global TLB sync and the sCR0 write. */
  reset?(smmu: ArmSmmuDevice): void;
  /** While a domain is finalised, before its page table is allocated. */
  initContext?(smmuDomain: ArmSmmuDomain, pgtblCfg: IoPgtableCfg, dev: Device): void;
  /** Replaces the TLBSYNC/TLBSTATUS poll. */
  tlbSync?(smmu: ArmSmmuDevice, page: number, sync: number, status: number): Promise<void>;
  defDomainType?(dev: Device): number;
  /** Pick the context bank for a domain; returns its index or throws ENOSPC. */
  allocContextBank?(smmuDomain: ArmSmmuDomain, smmu: ArmSmmuDevice, dev: Device, start: number): number;
  writeS2cr?(smmu: ArmSmmuDevice, idx: number): void;
  writeSctlr?(smmu: ArmSmmuDevice, idx: number, reg: number): void;
}

// ---- Calxeda: the non-secure GR0 registers are reached at their secure alias + 0x400 ---------------

// kernel: arm_smmu_gr0_ns() [arm-smmu.c]
function armSmmuGr0Ns(offset: number): number {
  switch (offset) {
    case ARM_SMMU_GR0_sCR0:
    case ARM_SMMU_GR0_sACR:
    case ARM_SMMU_GR0_sGFSR:
    case ARM_SMMU_GR0_sGFSYNR0:
    case ARM_SMMU_GR0_sGFSYNR1:
    case ARM_SMMU_GR0_sGFSYNR2:
      return offset + 0x400;
    default:
      return offset;
  }
}

const calxedaImpl: ArmSmmuImpl = {
  name: 'calxeda',
  // kernel: arm_smmu_read_ns() [arm-smmu.c]
  readReg(smmu, page, offset) {
    const off = page === ARM_SMMU_GR0 ? armSmmuGr0Ns(offset) : offset;
    return smmu.base.readlRelaxed(smmu.page(page) + off);
  },
  // kernel: arm_smmu_write_ns() [arm-smmu.c]
  writeReg(smmu, page, offset, val) {
    const off = page === ARM_SMMU_GR0 ? armSmmuGr0Ns(offset) : offset;
    smmu.base.writelRelaxed(val >>> 0, smmu.page(page) + off);
  },
};

// ---- Cavium CN88xx: ASIDs and VMIDs must be unique across every SMMU of the system -----------------

/** Context banks handed out so far, per kernel (kernel: the static context_count). */
const caviumContextCount = new WeakMap<DriverCore, number>();

function caviumImpl(): ArmSmmuImpl {
  let idBase = 0;
  return {
    name: 'cavium',
    // kernel: cavium_cfg_probe() [arm-smmu-impl.c]
    cfgProbe(smmu) {
      const core = smmu.dev.core;
      idBase = caviumContextCount.get(core) ?? 0;
      caviumContextCount.set(core, idBase + smmu.numContextBanks);
      smmu.dev.core.log.info(smmu.name, '\tenabling workaround for Cavium erratum 27704', 'iommu:drivers:arm-smmu');
    },
    // kernel: cavium_init_context() [arm-smmu-impl.c]
    initContext(smmuDomain) {
      if (smmuDomain.stage === 'S2') smmuDomain.cfg.vmid += idBase;
      else smmuDomain.cfg.asid += idBase;
    },
  };
}

// ---- Arm MMU-500 (reset in arm-smmu-mmu500.ts, shared with the Qualcomm flavours) ----------------

export const armMmu500Impl: ArmSmmuImpl = {
  name: 'arm-mmu500',
  reset: armMmu500Reset,
};

// ---- Marvell AP806: erratum 582743 ------------------------------------------------------------------

const mrvlMmu500Impl: ArmSmmuImpl = {
  name: 'marvell-ap806',
  // two 32-bit reads, high word first.
  // kernel: mrvl_mmu500_readq() [arm-smmu-impl.c]
  readReg64(smmu, page, offset) {
    const at = smmu.page(page) + offset;
    const hi = smmu.base.readlRelaxed(at + 4);
    const lo = smmu.base.readlRelaxed(at);
    return (BigInt(hi) << 32n) | BigInt(lo);
  },
  // two 32-bit writes, high word first.
  // kernel: mrvl_mmu500_writeq() [arm-smmu-impl.c]
  writeReg64(smmu, page, offset, val) {
    const at = smmu.page(page) + offset;
    smmu.base.writelRelaxed(Number(BigInt.asUintN(64, val) >> 32n), at + 4);
    smmu.base.writelRelaxed(Number(BigInt.asUintN(32, val)), at);
  },
  // hide the AArch64 formats so only 32-bit accesses are needed.
  // kernel: mrvl_mmu500_cfg_probe() [arm-smmu-impl.c]
  cfgProbe(smmu) {
    smmu.features &= ~(ARM_SMMU_FEAT_FMT_AARCH64_4K | ARM_SMMU_FEAT_FMT_AARCH64_16K | ARM_SMMU_FEAT_FMT_AARCH64_64K);
  },
  reset: armMmu500Reset,
};

/**
 * Pick the implementation hooks for a probed SMMU: the model's first, so integration quirks can
 * build on them.
 */
// kernel: arm_smmu_impl_init() [arm-smmu-impl.c]
export function armSmmuImplInit(smmu: ArmSmmuDevice): void {
  const np = smmu.dev.ofNode;
  switch (smmu.model) {
    case 'ARM_MMU500':
      smmu.impl = armMmu500Impl;
      break;
    case 'CAVIUM_SMMUV2':
      smmu.impl = caviumImpl();
      return;
    default:
      break;
  }
  // Implicitly an MMU-400.
  if (np?.has('calxeda,smmu-secure-config-access')) smmu.impl = calxedaImpl;
  qcomSmmuImplInit(smmu);
  if (np?.isCompatible('marvell,ap806-smmu-500')) smmu.impl = mrvlMmu500Impl;
}
