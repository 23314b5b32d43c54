/**
 * The Arm SMMUv3 driver (kernel: drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c): the platform driver
 * for `arm,smmu-v3` nodes and the iommu_ops it registers with the iommu core.
 *
 * The work is split by job, as the porting map below says:
 * - arm-smmu-v3-regs.ts    the kernel header: registers, STE/CD/command/record fields
 * - arm-smmu-v3-queue.ts   queue pointers (arm_smmu_queue / ll_queue)
 * - arm-smmu-v3-cmdq.ts    building and issuing commands, CMD_SYNC, batches, CERROR recovery
 * - arm-smmu-v3-entry.ts   the hitless STE/CD writer (arm_smmu_write_entry)
 * - arm-smmu-v3-ste.ts / -cd.ts   pure STE / CD builders and their used-bits functions
 * - arm-smmu-v3-strtab.ts / -cdtab.ts   stream table and CD table memory
 * - arm-smmu-v3-device.ts  probe from firmware and ID registers, reset, IRQs, GBPA, shutdown
 * - arm-smmu-v3-domain.ts  domains, io-pgtable flush ops, TLB/ATC invalidation
 * - arm-smmu-v3-asid.ts    the kernel-wide stage 1 ASID space and its lock
 * - arm-smmu-v3-master.ts  masters, attach/detach, PASIDs, ATS
 * - arm-smmu-v3-events.ts  event/PRI threads, GERROR, fault reports and page responses
 * - tegra241-cmdqv.ts      the NVIDIA Grace CMDQV implementation (impl ops: secondary queues)
 *
 * One driver object per kernel (kernel/drivers.ts builds it with the kernel's parameters and page
 * allocator); it keeps that kernel's SMMU instances by firmware node and its iommu_ops, whose static
 * identity and blocked domains every instance shares, as in Linux.
 */
import type { Device } from '../../bus/device.js';
import type { DriverCore } from '../../bus/driver-core.js';
import { isKernelError, KernelError } from '../../bus/errno.js';
import type { IommuFwspec } from '../../bus/iommu-fwspec.js';
import type { DtNode } from '../../bus/of/tree.js';
import { PciDevice } from '../../bus/pci/pci-device.js';
import { platformBus, type PlatformDevice, type PlatformDriver } from '../../bus/platform.js';
import { IOMMU_MMIO, IOMMU_NOEXEC, IOMMU_WRITE } from '../../core/io-pgtable.js';
import { devIommu, devIommuPrivGet, devIommuPrivSet } from '../../core/iommu-device.js';
import {
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
  IommuDomain,
} from '../../core/iommu-domain.js';
import { genericDeviceGroup, pciDeviceGroup, type IommuGroup } from '../../core/iommu-group.js';
import type { DomainOps, IommuCap, IommuDevFeature, IommuOps, IommuResvRegion } from '../../core/iommu-ops.js';
import { iommuDeviceRegister, iommuDeviceUnregister } from '../../core/iommu.js';
import type { PageAllocator } from '../../mm/page-alloc.js';
import { ArmSmmuDevice, LOG_NS, type ArmSmmuShutdownPolicy } from './arm-smmu-v3-device.js';
import {
  ARM_SMMU_PAGING_FLAGS,
  ArmSmmuDomain,
  armSmmuDomainFinalise,
  armSmmuDomainFreePaging,
  armSmmuFlushIotlbAll,
  armSmmuIotlbSync,
  armSmmuIotlbSyncMap,
  armSmmuIovaToPhys,
  armSmmuMapPages,
  armSmmuUnmapPages,
} from './arm-smmu-v3-domain.js';
import { armSmmuIortResvRegions, armSmmuRmrInstallBypassSte } from './arm-smmu-v3-acpi.js';
import { armSmmuAnswerDomainStalls, armSmmuPageResponse } from './arm-smmu-v3-events.js';
import {
  ArmSmmuMaster,
  armSmmuAttachDev,
  armSmmuAttachDevBlocked,
  armSmmuAttachDevIdentity,
  armSmmuDisablePri,
  armSmmuEnablePri,
  armSmmuPriSupported,
  armSmmuProbeMaster,
  armSmmuReleaseMaster,
  armSmmuRemoveDevPasid,
  armSmmuS1SetDevPasid,
  masterOf,
} from './arm-smmu-v3-master.js';
import { armSmmuSvaDomainAlloc } from './arm-smmu-v3-sva.js';
import { armSmmuHwInfo, armSmmuNestedOps, armVsmmuAlloc } from './arm-smmu-v3-iommufd.js';
import { ARM_SMMU_FEAT_COHERENCY, ARM_SMMU_FEAT_HD, ARM_SMMU_OPT_TEGRA241_CMDQV, CONFIG_CMA_ALIGNMENT, MSI_IOVA_BASE, MSI_IOVA_LENGTH } from './arm-smmu-v3-regs.js';
import { armSmmuDtProbeTegra241Cmdqv, tegra241CmdqvProbe } from './tegra241-cmdqv.js';

export const ARM_SMMU_V3_DRIVER_NAME = 'arm-smmu-v3';
export const ARM_SMMU_V3_COMPATIBLE = 'arm,smmu-v3';

/** HiSilicon PCIe tune-and-trace: identity mapping only (kernel: IS_HISI_PTT_DEVICE). */
const PCI_VENDOR_ID_HUAWEI = 0x19e5;
const HISI_PTT_DEVICE_ID = 0xa12e;

export interface ArmSmmuV3DriverOptions {
  /** The kernel's page allocator (queues, tables, page tables). */
  pageAllocator: (dev: Device) => PageAllocator;
  /** arm-smmu-v3.disable_bypass (default true). */
  disableBypass?: boolean;
  /** arm-smmu-v3.shutdown_policy (default 'disable', as Linux does it today). */
  shutdownPolicy?: ArmSmmuShutdownPolicy;
  /** Poll CMDQ_CONS for CMD_SYNC completion even when MSI polling is possible (kernel: disable_msipolling). */
  disableMsipolling?: boolean;
  /**
   * CONFIG_CMA_ALIGNMENT of the kernel build (2..12, default 8; null: built without CMA), which caps
   * the queue sizes as Q_MAX_SZ_SHIFT does.
   */
  cmaAlignment?: number | null;
  /** Driver name (default "arm-smmu-v3"). */
  name?: string;
  /** is_kdump_kernel(): the kernel is a crash kernel (the event and PRI queues stay off). */
  kdump?: boolean;
  /** arm-smmu-v3.disable_cmdqv: leave a Grace CMDQV disabled (default false). */
  disableCmdqv?: boolean;
  /** arm-smmu-v3.bypass_vcmdq: issue every command to the main queue even with a CMDQV (default false). */
  bypassVcmdq?: boolean;
}

/** The SMMU a bound `arm,smmu-v3` device drives; ENODEV otherwise. */
export function armSmmuV3Of(dev: Device): ArmSmmuDevice {
  if (dev.driverData instanceof ArmSmmuDevice) return dev.driverData;
  throw new KernelError('ENODEV', `${dev.name} is not an SMMUv3 bound to ${ARM_SMMU_V3_DRIVER_NAME} (driver: ${dev.driver?.name ?? 'none'})`);
}

/** The SMMU whose device is named `name` (its DT path) in a kernel. */
export function findArmSmmuV3(core: DriverCore, name: string): ArmSmmuDevice {
  const dev = core.findDevice(name);
  if (!dev) throw new KernelError('ENODEV', `no device ${name} in kernel ${core.instance}`);
  return armSmmuV3Of(dev);
}

/** The master a device became when probed into an SMMUv3, or null. */
export function armSmmuV3MasterOf(dev: Device): ArmSmmuMaster | null {
  const param = devIommu(dev);
  return param?.priv instanceof ArmSmmuMaster ? param.priv : null;
}

/** One driver instance: the SMMUs of one kernel and the iommu_ops they register. */
class ArmSmmuV3Driver {
  /** SMMUs by firmware node (kernel: arm_smmu_get_by_fwnode()). */
  readonly smmus = new Map<DtNode, ArmSmmuDevice>();
  readonly domainOps: DomainOps;
  readonly identityDomain: IommuDomain;
  readonly blockedDomain: IommuDomain;
  readonly ops: IommuOps;

  constructor(readonly opts: ArmSmmuV3DriverOptions) {
    this.domainOps = {
      attachDev: armSmmuAttachDev,
      setDevPasid: armSmmuS1SetDevPasid,
      mapPages: armSmmuMapPages,
      unmapPages: armSmmuUnmapPages,
      flushIotlbAll: armSmmuFlushIotlbAll,
      iotlbSync: armSmmuIotlbSync,
      iotlbSyncMap: (domain) => armSmmuIotlbSyncMap(domain),
      iovaToPhys: armSmmuIovaToPhys,
      free: (domain) => {
        armSmmuAnswerDomainStalls(domain);
        return armSmmuDomainFreePaging(domain as ArmSmmuDomain);
      },
    };
    // kernel: arm_smmu_identity_domain / arm_smmu_blocked_domain
    this.identityDomain = new IommuDomain({ type: IOMMU_DOMAIN_IDENTITY, ops: { attachDev: armSmmuAttachDevIdentity } });
    this.blockedDomain = new IommuDomain({ type: IOMMU_DOMAIN_BLOCKED, ops: { attachDev: armSmmuAttachDevBlocked, setDevPasid: armSmmuRemoveDevPasid } });
    const self = this;
    this.ops = {
      name: opts.name ?? ARM_SMMU_V3_DRIVER_NAME,
      // Restricted per domain at finalise; the union of the instances' sizes here.
      get pgsizeBitmap(): number {
        let bitmap = 0;
        for (const s of self.smmus.values()) {
          for (let size = 1; size <= s.pgsizeBitmap; size *= 2) {
            if (Math.floor(s.pgsizeBitmap / size) % 2 === 1 && Math.floor(bitmap / size) % 2 === 0) bitmap += size;
          }
        }
        return bitmap;
      },
      capable: (dev, cap) => this.capable(dev, cap),
      ofXlate: (dev, fwspec, args) => this.ofXlate(dev, fwspec, args),
      probeDevice: (dev) => this.probeDevice(dev),
      releaseDevice: (dev) => this.releaseDevice(dev),
      deviceGroup: (dev) => this.deviceGroup(dev),
      getResvRegions: (dev) => this.getResvRegions(dev),
      defDomainType: (dev) => this.defDomainType(dev),
      domainAllocPaging: (dev) => this.domainAllocPagingFlags(dev, 0),
      domainAllocPagingFlags: (dev, flags) => this.domainAllocPagingFlags(dev, flags),
      domainAllocSva: (dev, mm) => armSmmuSvaDomainAlloc(dev, mm),
      identityDomain: this.identityDomain,
      blockedDomain: this.blockedDomain,
      defaultDomainOps: this.domainOps,
      pageResponse: (dev, evt, msg) => armSmmuPageResponse(masterOf(dev), evt, msg),
      devEnableFeat: (dev, feat) => this.devEnableFeat(dev, feat),
      devDisableFeat: (dev, feat) => this.devDisableFeat(dev, feat),
      hwInfo: armSmmuHwInfo,
      // kernel: user_pasid_table — a guest owns the CD table of a nested STE and its PASIDs.
      userPasidTable: true,
      viommuAlloc: (dev, type, parent, viommu, data) => armVsmmuAlloc(dev, type, parent, viommu, data, armSmmuNestedOps),
    };
  }

  /** kernel: arm_smmu_capable() */
  private capable(dev: Device, cap: IommuCap): boolean {
    const master = masterOf(dev);
    switch (cap) {
      case 'CACHE_COHERENCY':
        // A coherent TCU implies coherent TBUs.
        return (master.smmu.features & ARM_SMMU_FEAT_COHERENCY) !== 0;
      case 'NOEXEC':
      case 'DEFERRED_FLUSH':
        return true;
      case 'DIRTY_TRACKING':
        // kernel: arm_smmu_dbm_capable()
        return (master.smmu.features & (ARM_SMMU_FEAT_HD | ARM_SMMU_FEAT_COHERENCY)) === (ARM_SMMU_FEAT_HD | ARM_SMMU_FEAT_COHERENCY);
      default:
        return false;
    }
  }

  /** kernel: arm_smmu_of_xlate() — one cell: the StreamID. */
  private ofXlate(dev: Device, fwspec: IommuFwspec, args: readonly number[]): void {
    const sid = args[0];
    if (sid === undefined) throw new KernelError('EINVAL', `${dev.name}: an SMMUv3 specifier needs one cell (the StreamID)`);
    fwspec.ids.push(sid);
  }

  /** kernel: arm_smmu_probe_device() */
  private probeDevice(dev: Device) {
    if (devIommuPrivGet<unknown>(dev) !== null) throw new KernelError('EBUSY', `${dev.name} was already probed by an IOMMU driver`);
    const node = dev.fwspec?.iommuNode;
    const smmu = node ? this.smmus.get(node) : undefined;
    if (!smmu) throw new KernelError('ENODEV', `${dev.name}: its SMMUv3 is not bound to this driver`);
    const master = armSmmuProbeMaster(smmu, dev);
    devIommuPrivSet(dev, master);
    return smmu.iommu;
  }

  /** kernel: arm_smmu_release_device() */
  private async releaseDevice(dev: Device): Promise<void> {
    const master = masterOf(dev);
    await armSmmuReleaseMaster(master, this.identityDomain, this.blockedDomain);
    devIommuPrivSet(dev, null);
  }

  /**
   * PCI functions by the PCI rules; anything else gets its own group (StreamIDs shared across
   * devices, other than PCI aliases, are not supported). // kernel: arm_smmu_device_group()
   */
  private deviceGroup(dev: Device): IommuGroup {
    return dev instanceof PciDevice ? pciDeviceGroup(dev) : genericDeviceGroup(dev);
  }

  /** The software-managed MSI window, and on ACPI machines the IORT RMRs naming the device. // kernel: arm_smmu_get_resv_regions() */
  private getResvRegions(dev: Device): IommuResvRegion[] {
    return [
      { start: MSI_IOVA_BASE, length: MSI_IOVA_LENGTH, prot: IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_MMIO, type: 'SW_MSI' },
      ...armSmmuIortResvRegions(masterOf(dev).smmu, dev),
    ];
  }

  /** kernel: arm_smmu_def_domain_type() */
  private defDomainType(dev: Device): number {
    if (dev instanceof PciDevice && dev.vendor === PCI_VENDOR_ID_HUAWEI && dev.device === HISI_PTT_DEVICE_ID) return IOMMU_DOMAIN_IDENTITY;
    return 0;
  }

  /**
   * A paging domain finalised on `dev`'s SMMU: stage 1, or stage 2 with IOMMU_HWPT_ALLOC_NEST_PARENT
   * (or when the SMMU has no stage 1). // kernel: arm_smmu_domain_alloc_paging_flags()
   */
  private domainAllocPagingFlags(dev: Device, flags: number): ArmSmmuDomain {
    if ((flags & ~ARM_SMMU_PAGING_FLAGS) !== 0) throw new KernelError('EOPNOTSUPP', `arm-smmu-v3: allocation flags 0x${flags.toString(16)} not supported`);
    if ((flags & IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0 && (flags & (IOMMU_HWPT_ALLOC_PASID | IOMMU_HWPT_ALLOC_DIRTY_TRACKING)) !== 0) {
      throw new KernelError('EOPNOTSUPP', 'arm-smmu-v3: a nesting parent (stage 2) domain cannot take PASIDs or dirty tracking');
    }
    const master = masterOf(dev);
    const domain = new ArmSmmuDomain(this.domainOps);
    armSmmuDomainFinalise(domain, master.smmu, flags);
    return domain;
  }

  /** kernel: arm_smmu_dev_enable_feature() (the per-device feature API of 5.x–6.15) */
  private devEnableFeat(dev: Device, feat: IommuDevFeature): void {
    const master = masterOf(dev);
    if (feat !== 'IOPF') throw new KernelError('EINVAL', `${dev.name}: arm-smmu-v3 does not support device feature ${feat}`);
    const pri = armSmmuPriSupported(master);
    if (!master.stallEnabled && !pri) throw new KernelError('EINVAL', `${dev.name}: I/O page faults need a stall-capable master or PRI`);
    if (master.iopfEnabled) throw new KernelError('EBUSY', `${dev.name}: IOPF is already enabled`);
    if (!master.stallEnabled && pri) armSmmuEnablePri(master);
    master.iopfEnabled = true;
  }

  /** kernel: arm_smmu_dev_disable_feature() */
  private devDisableFeat(dev: Device, feat: IommuDevFeature): void {
    const master = masterOf(dev);
    if (feat !== 'IOPF') throw new KernelError('EINVAL', `${dev.name}: arm-smmu-v3 does not support device feature ${feat}`);
    if (!master.iopfEnabled) throw new KernelError('EINVAL', `${dev.name}: IOPF is not enabled`);
    armSmmuDisablePri(master);
    master.iopfEnabled = false;
  }

  // ---- the platform driver ------------------------------------------------------------------

  /** kernel: arm_smmu_device_probe() */
  async probe(dev: PlatformDevice): Promise<void> {
    const node = dev.ofNode;
    if (!node) throw new KernelError('ENODEV', `${dev.name}: arm-smmu-v3 needs a device tree node (ACPI IORT is not supported)`);
    const smmu = new ArmSmmuDevice(dev, {
      disableBypass: this.opts.disableBypass ?? true,
      shutdownPolicy: this.opts.shutdownPolicy ?? 'disable',
      disableMsipolling: this.opts.disableMsipolling ?? false,
      kdump: this.opts.kdump ?? false,
      cmaAlignment: this.opts.cmaAlignment === undefined ? CONFIG_CMA_ALIGNMENT : this.opts.cmaAlignment,
      pageAllocator: this.opts.pageAllocator(dev),
    });
    smmu.dtProbe();
    armSmmuDtProbeTegra241Cmdqv(smmu);
    this.implProbe(smmu);
    smmu.mapRegisters();
    smmu.findIrqs();
    smmu.hwProbe();
    // Structures are freed when the driver unbinds, or when this probe fails (after the SMMU stopped).
    dev.devres.add('arm-smmu-v3 structures', () => smmu.freeAllCoherent());
    smmu.initStructures();
    armSmmuRmrInstallBypassSte(smmu);
    dev.driverData = smmu;
    this.smmus.set(node, smmu);
    try {
      await smmu.deviceReset();
      await iommuDeviceRegister(smmu.iommu, this.ops, dev);
    } catch (e) {
      this.smmus.delete(node);
      if (smmu.enables !== 0) await smmu.deviceDisable().catch(() => undefined);
      throw e;
    }
    smmu.info(`registered (${smmu.strtab.twoLevel ? '2-level' : 'linear'} stream table, ${smmu.sidBits}-bit SIDs, ${smmu.ssidBits}-bit SSIDs)`);
  }

  /** An implementation's probe, when firmware named a companion device. // kernel: arm_smmu_impl_probe() */
  private implProbe(smmu: ArmSmmuDevice): void {
    if (!smmu.implDev || (smmu.options & ARM_SMMU_OPT_TEGRA241_CMDQV) === 0) return;
    try {
      tegra241CmdqvProbe(smmu, { disableCmdqv: this.opts.disableCmdqv ?? false, bypassVcmdq: this.opts.bypassVcmdq ?? false });
    } catch (e) {
      // ENODEV: keep the plain SMMU.
      if (!isKernelError(e, 'ENODEV')) throw e;
      smmu.info(e.message);
    }
  }

  /** kernel: arm_smmu_device_remove() */
  async remove(dev: PlatformDevice): Promise<void> {
    const smmu = armSmmuV3Of(dev);
    await iommuDeviceUnregister(smmu.iommu);
    // kernel: arm_smmu_impl_remove(), a devm action of the probe.
    await smmu.implOps?.deviceRemove?.(smmu).catch((e: unknown) => smmu.err(String(e)));
    await smmu.deviceDisable().catch((e: unknown) => smmu.err(String(e)));
    if (dev.ofNode) this.smmus.delete(dev.ofNode);
  }

  /** kernel: arm_smmu_device_shutdown() */
  async shutdown(dev: PlatformDevice): Promise<void> {
    await armSmmuV3Of(dev).shutdown();
  }
}

/** Build the arm-smmu-v3 platform driver of one kernel. */
export function createArmSmmuV3Driver(opts: ArmSmmuV3DriverOptions): PlatformDriver {
  const cma = opts.cmaAlignment;
  if (cma !== undefined && cma !== null && !(Number.isInteger(cma) && cma >= 2 && cma <= 12)) {
    throw new KernelError('EINVAL', `arm-smmu-v3: CONFIG_CMA_ALIGNMENT ${String(cma)} is outside its Kconfig range 2..12`);
  }
  const drv = new ArmSmmuV3Driver(opts);
  return {
    name: opts.name ?? ARM_SMMU_V3_DRIVER_NAME,
    bus: platformBus,
    ofMatchTable: [ARM_SMMU_V3_COMPATIBLE],
    probe: (dev) => drv.probe(dev),
    remove: (dev) => drv.remove(dev),
    shutdown: (dev) => drv.shutdown(dev),
  };
}

export { ArmSmmuDevice, ArmSmmuDomain, ArmSmmuMaster, LOG_NS };
