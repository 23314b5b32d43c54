/**
 * The iommu core of one kernel (kernel: drivers/iommu/iommu.c): registered IOMMU instances, probing
 * devices behind them into groups, default domains, and the hooks the driver core calls.
 *
 * There is no global state: each booted kernel creates one `IommuSubsystem` for its DriverCore
 * (`new IommuSubsystem({ core, pageAllocator, passthrough, strict })`), and everything finds it from a
 * device's kernel (`iommuSubsystemOf(dev.core)`). A kexec'd kernel starts with an empty one.
 *
 * Default domain type: IDENTITY with `iommu.passthrough`, else DMA with `iommu.strict`, else DMA_FQ.
 * Per group, a driver's `defDomainType` wins (IDENTITY over DMA on conflict); a legacy static
 * `defaultDomain` always wins; if the global type cannot be allocated the core falls back to DMA.
 *
 * Driver core hooks (the driver core must call them; kernel: the bus notifier and dma_configure):
 * - `iommuDmaConfigure(dev)` before a driver's probe: probes the device into the IOMMU core if its
 *   IOMMU is registered, throws EPROBE_DEFER if the IOMMU named by its firmware is not (yet), and
 *   counts the driver as a DMA API user of the group (EBUSY if the group is taken);
 * - `iommuDmaCleanup(dev)` after the driver is gone (or its probe failed);
 * - `iommuBusNotify(dev, 'add' | 'removed')` when a device is registered / unregistered.
 *
 * The rest of iommu.c and include/linux/iommu.h is split by job:
 * - iommu-ops.ts           the driver interface (struct iommu_ops, iommu_domain_ops)
 * - iommu-device.ts        struct iommu_device (a registered IOMMU) and struct dev_iommu
 * - iommu-group.ts         groups and the device_group policies
 * - iommu-domain.ts        domains: allocation, types, report_iommu_fault()
 * - iommu-attach.ts        attach/detach, set-domain, DMA ownership of a group
 * - iommu-pasid.ts         attaching domains to PASIDs, the global PASID space
 * - iommu-map.ts           iommu_map()/iommu_unmap()/iommu_iotlb_sync()/iommu_map_sg()
 * - iommu-gather.ts        the IOTLB gather (struct iommu_iotlb_gather)
 * - iommu-resv.ts          reserved regions
 * - iommu-sva.ts           SVA bind/unbind (iommu-sva.c) and the device feature API
 * - iommu-fault.ts         fault reporting: iommu_report_device_fault(), device release, shutdown
 * - iommu-fault-types.ts   struct iommu_fault, iopf_fault, iommu_page_response
 * - iommu-fault-legacy.ts  the 2019 device fault-handler API and its uAPI, kept on purpose (why: there)
 * Beside them: io-pgfault.ts (the IOPF queue), iommufd.ts (the user-space objects and fault queue),
 * io-pgtable*.ts (page table formats), dma-iommu.ts / dma-mapping.ts / iova.ts (the DMA API).
 *
 * Over ~700 lines with this index: registration, probe and default domains are one path of iommu.c
 * (each step calls the next); everything else is in the files listed.
 */
import type { Device } from '../bus/device.js';
import type { DriverCore } from '../bus/driver-core.js';
import { isKernelError, KernelError } from '../bus/errno.js';
import type { KernelLog } from '../bus/log.js';
import type { DtNode } from '../bus/of/tree.js';
import { PciDevice } from '../bus/pci/pci-device.js';
import type { CpuPort } from '../hw/cpu-port.js';
import type { PageAllocator } from '../mm/page-alloc.js';
import { DmaDebug } from './dma-debug.js';
import { iommuDmaInitFq, iommuGetDmaCookie, iommuSetupDmaOps } from './dma-iommu.js';
import {
  __iommuDeviceSetDomain,
  __iommuGroupSetDomain,
  __iommuGroupSetDomainMustSucceed,
  iommuDeviceUnuseDefaultDomain,
  iommuDeviceUseDefaultDomain,
} from './iommu-attach.js';
import { devIommu, devIommuFree, devIommuGet, devIommuOps, type IommuDevice } from './iommu-device.js';
import {
  __IOMMU_DOMAIN_PAGING,
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_DMA_FQ,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_HWPT_ALLOC_PASID,
  iommuAllocIdentityDomain,
  iommuDomainFree,
  iommuDomainSysfsType,
  iommuDomainTypeStr,
  iommuIovaToPhys,
  iommuIsDmaDomain,
  iommuPagingDomainAllocType,
  type IommuDomain,
} from './iommu-domain.js';
import { iommuFaultDeviceRelease } from './iommu-fault.js';
import { IommuGroup } from './iommu-group.js';
import { iommuFlushIotlbAll, iommuMap } from './iommu-map.js';
import type { IommuOps } from './iommu-ops.js';
import { iommuGetResvRegions } from './iommu-resv.js';
import { Ida } from './ida.js';
import { Mutex } from './mutex.js';
import { pciMaxPasids } from './pci-acs.js';

const LOG_NS = 'iommu:core';

export interface IommuSubsystemOptions {
  /** The kernel this core belongs to. */
  core: DriverCore;
  /** The kernel's page allocator (DMA API buffers). */
  pageAllocator: PageAllocator;
  /** `iommu.passthrough`: default domains are IDENTITY. */
  passthrough: boolean;
  /** `iommu.strict`: DMA domains invalidate on every unmap instead of through a flush queue. */
  strict: boolean;
}

const subsystems = new WeakMap<DriverCore, IommuSubsystem>();

/** The iommu core of a kernel; ENODEV if that kernel never created one. */
export function iommuSubsystemOf(core: DriverCore): IommuSubsystem {
  const s = subsystems.get(core);
  if (!s) throw new KernelError('ENODEV', `kernel ${core.instance} has no iommu core`);
  return s;
}

/** Domains nobody allocated (a driver's static identity or blocked domain) are never freed. */
async function putDomain(domain: IommuDomain): Promise<void> {
  if (domain.owner !== null && !domain.isFreed) await iommuDomainFree(domain);
}

export class IommuSubsystem {
  readonly core: DriverCore;
  readonly port: CpuPort;
  readonly log: KernelLog;
  readonly pageAllocator: PageAllocator;
  /** Every live DMA API mapping of this kernel's devices. */
  readonly dmaDebug = new DmaDebug();
  /** The kernel's iommu_global_pasid_ida */
  readonly globalPasids = new Ida('global PASID');
  /** Live groups, oldest first. */
  readonly groups = new Set<IommuGroup>();

  private readonly iommuList: IommuDevice[] = [];
  private readonly groupIds = new Ida('iommu group');
  /** The kernel's iommu_probe_device_lock */
  private readonly probeLock = new Mutex('iommu probe');
  private defType: number;
  private dmaStrict: boolean;
  private dead = false;

  constructor(opts: IommuSubsystemOptions) {
    if (subsystems.has(opts.core)) throw new KernelError('EEXIST', `kernel ${opts.core.instance} already has an iommu core`);
    this.core = opts.core;
    this.port = opts.core.port;
    this.log = opts.core.log;
    this.pageAllocator = opts.pageAllocator;
    this.dmaStrict = opts.strict;
    // (kernel: iommu_subsys_init())
    this.defType = opts.passthrough ? IOMMU_DOMAIN_IDENTITY : opts.strict ? IOMMU_DOMAIN_DMA : IOMMU_DOMAIN_DMA_FQ;
    subsystems.set(opts.core, this);
    opts.core.onTeardown('iommu core', () => {
      this.dead = true;
    });
    this.log.info('iommu', `Default domain type: ${iommuDomainTypeStr(this.defType)}`, LOG_NS);
    if (!opts.passthrough) this.log.info('iommu', `DMA domain TLB invalidation policy: ${opts.strict ? 'strict' : 'lazy'} mode`, LOG_NS);
  }

  /** The global default domain type (kernel: iommu_def_domain_type). */
  get defaultDomainType(): number {
    return this.defType;
  }

  /** The kernel's iommu_dma_strict */
  get strict(): boolean {
    return this.dmaStrict;
  }

  /** True once the kernel was torn down (kexec): timers stop touching the machine. */
  get tornDown(): boolean {
    return this.dead;
  }

  /** Registered IOMMU instances. */
  get iommus(): readonly IommuDevice[] {
    return this.iommuList;
  }

  /** A driver that cannot defer flushes safely forces strict mode. */
  // kernel: iommu_set_dma_strict() [iommu.c]
  iommuSetDmaStrict(): void {
    this.dmaStrict = true;
    if (this.defType === IOMMU_DOMAIN_DMA_FQ) this.defType = IOMMU_DOMAIN_DMA;
  }

  // kernel: iommu_default_passthrough() [iommu.c]
  get defaultPassthrough(): boolean {
    return this.defType === IOMMU_DOMAIN_IDENTITY;
  }

  /** A new empty group. */
  // kernel: iommu_group_alloc() [iommu.c]
  allocGroup(): IommuGroup {
    const group = new IommuGroup(this, this.groupIds.alloc());
    this.groups.add(group);
    return group;
  }

  /** Drop a group nothing uses any more. */
  // kernel: iommu_group_release() [iommu.c]
  private putGroupIfUnused(group: IommuGroup): void {
    if (group.devices.length > 0 || this.iommuList.some((i) => i.singletonGroup === group)) return;
    if (!this.groups.delete(group)) return;
    this.groupIds.free(group.id);
  }

  /** The registered IOMMU with firmware node `node`. */
  // kernel: iommu_from_fwnode() [iommu.c]
  iommuFromFwnode(node: DtNode): IommuDevice | null {
    return this.iommuList.find((i) => i.fwnode === node) ?? null;
  }

  // ---- registration ------------------------------------------------------------------------------

  // kernel: iommu_device_register() [iommu.c]
  async register(iommu: IommuDevice, ops: IommuOps, hwdev: Device): Promise<void> {
    if (this.iommuList.includes(iommu)) throw new KernelError('EEXIST', `IOMMU ${iommu.name} is already registered`);
    iommu.ops = ops;
    iommu.fwnode = hwdev.ofNode ?? hwdev.fwnode;
    this.iommuList.push(iommu);
    try {
      await this.busIommuProbe(iommu);
    } catch (e) {
      await this.unregister(iommu);
      throw e;
    }
    iommu.ready = true;
    this.log.info(iommu.name, `registered with the iommu core (${ops.name})`, LOG_NS);
  }

  /** Release every device the instance serves, then forget it. */
  // kernel: iommu_device_unregister() [iommu.c]
  async unregister(iommu: IommuDevice): Promise<void> {
    for (const dev of [...this.core.devices]) {
      if (devIommu(dev)?.iommuDev === iommu) await this.releaseDevice(dev);
    }
    const i = this.iommuList.indexOf(iommu);
    if (i >= 0) this.iommuList.splice(i, 1);
    iommu.ready = false;
    const single = iommu.singletonGroup;
    iommu.singletonGroup = null;
    if (single) this.putGroupIfUnused(single);
  }

  /**
   * Probe every device of this kernel that firmware puts behind `iommu`, then set up the default
   * domains of the new groups together (so a group's devices agree on its type).
   */
  // kernel: bus_iommu_probe() [iommu.c]
  private async busIommuProbe(iommu: IommuDevice): Promise<void> {
    const groupList: IommuGroup[] = [];
    for (const dev of [...this.core.devices]) {
      if (!dev.registered || dev.fwspec?.iommuNode !== iommu.fwnode) continue;
      try {
        await this.probeLock.run(() => this.__probeDevice(dev, groupList));
      } catch (e) {
        if (!isKernelError(e, 'ENODEV')) throw e;
      }
    }
    for (const group of groupList) {
      await group.mutex.run(async () => {
        await this.setupDefaultDomain(group, 0);
        for (const dev of group.devices) iommuSetupDmaOps(dev);
        // v6.1 met these devices one by one (their firmware IDs were read when their driver probed),
        // so each had the flush after its attach; see createDeviceDirectMappings.
        for (const dev of group.devices) await this.directMappingsAfterAttach(group, dev);
      });
      for (const dev of group.devices) devIommuOps(dev).probeFinalize?.(dev);
    }
  }

  // ---- probe and release ---------------------------------------------------------------------------

  // kernel: iommu_probe_device() [iommu.c]
  async probeDevice(dev: Device): Promise<void> {
    await this.probeLock.run(() => this.__probeDevice(dev, null));
    devIommuOps(dev).probeFinalize?.(dev);
  }

  // kernel: dev_iommu_get_max_pasids() [iommu.c]
  private devMaxPasids(dev: Device, iommu: IommuDevice): number {
    let max = 0;
    if (dev instanceof PciDevice) max = pciMaxPasids(dev);
    else if (dev.fwspec && dev.fwspec.pasidBits > 0) max = 2 ** dev.fwspec.pasidBits;
    return Math.min(max, iommu.maxPasids);
  }

  /** Let the driver turn the firmware specifiers into IDs. */
  // kernel: of_iommu_xlate() [of_iommu.c]
  private xlate(dev: Device, ops: IommuOps): void {
    const fwspec = dev.fwspec!;
    if (!ops.ofXlate) return;
    const saved = [...fwspec.ids];
    fwspec.ids.length = 0;
    try {
      for (const spec of fwspec.specifiers) ops.ofXlate(dev, fwspec, spec);
    } catch (e) {
      fwspec.ids.splice(0, fwspec.ids.length, ...saved);
      this.log.warn(dev.name, `${ops.name}: of_xlate failed: ${e instanceof Error ? e.message : String(e)}`, LOG_NS);
      throw new KernelError('ENODEV', `${dev.name}: ${ops.name} cannot translate its IOMMU specifiers`);
    }
  }

  /** Find the device's IOMMU and let its driver take the device on. */
  // kernel: iommu_init_device() [iommu.c]
  private async initDevice(dev: Device): Promise<void> {
    const iommu = dev.fwspec ? this.iommuFromFwnode(dev.fwspec.iommuNode) : null;
    const ops = iommu?.ops;
    if (!iommu || !ops) throw new KernelError('ENODEV', `${dev.name}: no registered IOMMU serves it`);
    const fresh = devIommu(dev) === null;
    const param = devIommuGet(dev, this);
    try {
      if (!param.fwspecTranslated) {
        this.xlate(dev, ops);
        param.fwspecTranslated = true;
      }
      param.iommuDev = await ops.probeDevice(dev);
    } catch (e) {
      param.iommuDev = null;
      if (fresh) devIommuFree(dev);
      throw e;
    }
    try {
      param.group = ops.deviceGroup(dev);
    } catch (e) {
      await ops.releaseDevice?.(dev);
      param.iommuDev = null;
      devIommuFree(dev);
      throw e;
    }
    param.maxPasids = this.devMaxPasids(dev, param.iommuDev);
    param.attachDeferred = ops.isAttachDeferred?.(dev) ?? false;
  }

  // kernel: __iommu_probe_device() [iommu.c]
  private async __probeDevice(dev: Device, groupList: IommuGroup[] | null): Promise<void> {
    if (devIommu(dev)?.group) return;
    await this.initDevice(dev);
    const group = devIommu(dev)!.group!;
    await group.mutex.run(async () => {
      group.devices.push(dev);
      this.log.info(dev.name, `Adding to iommu group ${group.id}`, LOG_NS);
      try {
        if (group.defaultDomain) await this.createDeviceDirectMappings(group.defaultDomain, dev).catch(() => undefined);
        if (group.domain) {
          // A device joining an attached group follows it; it was attached to nothing before.
          await __iommuDeviceSetDomain(group, dev, group.domain, null, 0);
        } else if (!group.defaultDomain && !groupList) {
          await this.setupDefaultDomain(group, 0);
        } else if (!group.defaultDomain && !groupList!.includes(group)) {
          groupList!.push(group);
        }
      } catch (e) {
        group.devices.splice(group.devices.indexOf(dev), 1);
        await this.deinitDevice(dev, group);
        this.putGroupIfUnused(group);
        throw e;
      }
      if (group.defaultDomain) iommuSetupDmaOps(dev);
      if (!groupList) await this.directMappingsAfterAttach(group, dev);
    });
  }

  /**
   * v6.1's order for a device probed on its own: attach, then the direct mappings with their IOTLB
   * flush (see createDeviceDirectMappings). Only while the group is on its default domain.
   */
  private async directMappingsAfterAttach(group: IommuGroup, dev: Device): Promise<void> {
    const def = group.defaultDomain;
    if (!def || group.domain !== def) return;
    await this.createDeviceDirectMappings(def, dev, true).catch((e: unknown) => {
      this.log.warn(dev.name, `direct mappings after attach failed: ${String(e)}`, LOG_NS);
    });
  }

  /** Called with the group's mutex held, the device out of its list. */
  // kernel: iommu_deinit_device() [iommu.c]
  private async deinitDevice(dev: Device, group: IommuGroup): Promise<void> {
    const param = devIommu(dev)!;
    const ops = param.iommuDev!.ops!;
    if (!param.attachDeferred && ops.releaseDomain) {
      try {
        await ops.releaseDomain.ops.attachDev(ops.releaseDomain, dev, group.domain);
      } catch (e) {
        this.log.warn(dev.name, `WARNING: attaching the release domain failed: ${String(e)}`, LOG_NS);
      }
    }
    await ops.releaseDevice?.(dev);
    if (group.devices.length === 0) {
      const { defaultDomain, blockingDomain } = group;
      group.defaultDomain = null;
      group.blockingDomain = null;
      group.domain = null;
      if (defaultDomain) await putDomain(defaultDomain);
      if (blockingDomain && blockingDomain !== defaultDomain) await putDomain(blockingDomain);
    }
    param.group = null;
    param.iommuDev = null;
    devIommuFree(dev);
  }

  /** The device leaves the IOMMU core. */
  // kernel: iommu_release_device() [iommu.c]
  async releaseDevice(dev: Device): Promise<void> {
    const param = devIommu(dev);
    if (!param) return;
    const group = param.group;
    if (!group) {
      devIommuFree(dev);
      return;
    }
    await group.mutex.run(async () => {
      const i = group.devices.indexOf(dev);
      if (i >= 0) group.devices.splice(i, 1);
      this.log.info(dev.name, `Removing from iommu group ${group.id}`, LOG_NS);
      // Faults still waiting for an answer are answered now, while the driver still has the device.
      const drained = iommuFaultDeviceRelease(dev);
      if (drained > 0) this.log.info(dev.name, `answered ${drained} pending page request group(s) INVALID`, LOG_NS);
      if (group.devices.length === 0 && (group.ownerCnt > 0 || group.domain !== group.defaultDomain)) {
        this.log.warn(dev.name, `WARNING: last device leaves ${group} while it is owned or off its default domain`, LOG_NS);
      }
      await this.deinitDevice(dev, group);
    });
    this.putGroupIfUnused(group);
  }

  // ---- default domains ---------------------------------------------------------------------------

  /** Combine one device's driver preference into the group's. */
  // kernel: iommu_get_def_domain_type() [iommu.c]
  private defDomainTypeOf(group: IommuGroup, dev: Device, cur: number): number {
    const ops = devIommuOps(dev);
    let type: number;
    if (ops.defaultDomain) type = ops.defaultDomain.type;
    else if (ops.defDomainType) type = ops.defDomainType(dev);
    else return cur;
    if (!type || cur === type) return cur;
    if (!cur) return type;
    this.log.err(dev.name, `IOMMU driver error, requesting conflicting def_domain_type, ${iommuDomainTypeStr(cur)} and ${iommuDomainTypeStr(type)}, for devices in group ${group.id}.`, LOG_NS);
    return type === IOMMU_DOMAIN_IDENTITY ? type : cur;
  }

  /** The type the group needs; 0: the global default; -1: impossible. */
  // kernel: iommu_get_default_domain_type() [iommu.c]
  private defaultDomainTypeFor(group: IommuGroup, targetType: number): number {
    let driverType = 0;
    for (const dev of group.devices) driverType = this.defDomainTypeOf(group, dev, driverType);
    if (targetType) return driverType && targetType !== driverType ? -1 : targetType;
    return driverType;
  }

  // kernel: __iommu_group_alloc_default_domain() [iommu.c]
  private allocDefaultDomainOfType(group: IommuGroup, reqType: number): IommuDomain {
    const dev = group.firstDev();
    if (group.defaultDomain && group.defaultDomain.type === reqType) return group.defaultDomain;
    if ((reqType & __IOMMU_DOMAIN_PAGING) !== 0) {
      // A DMA API domain may later carry PASIDs: ask for a PASID-capable one first.
      const flags = devIommu(dev)!.maxPasids > 0 ? IOMMU_HWPT_ALLOC_PASID : 0;
      try {
        return iommuPagingDomainAllocType(dev, reqType, flags);
      } catch (e) {
        if (!isKernelError(e, 'EOPNOTSUPP')) throw e;
        return iommuPagingDomainAllocType(dev, reqType, 0);
      }
    }
    if (reqType === IOMMU_DOMAIN_IDENTITY) return iommuAllocIdentityDomain(dev);
    throw new KernelError('EINVAL', `${group}: no default domain of type ${iommuDomainTypeStr(reqType)}`);
  }

  // kernel: iommu_group_alloc_default_domain() [iommu.c]
  private allocDefaultDomain(group: IommuGroup, reqType: number): IommuDomain {
    const ops = devIommuOps(group.firstDev());
    if (ops.defaultDomain) {
      if (reqType !== ops.defaultDomain.type) throw new KernelError('EINVAL', `${ops.name} only supports a ${iommuDomainTypeStr(ops.defaultDomain.type)} default domain`);
      return ops.defaultDomain;
    }
    if (reqType) return this.allocDefaultDomainOfType(group, reqType);
    try {
      return this.allocDefaultDomainOfType(group, this.defType);
    } catch (e) {
      if (this.defType === IOMMU_DOMAIN_DMA) throw new KernelError('EINVAL', `${group}: cannot allocate a DMA default domain: ${String(e)}`);
    }
    const dom = this.allocDefaultDomainOfType(group, IOMMU_DOMAIN_DMA);
    this.log.warn(`iommu group ${group.id}`, `Failed to allocate default IOMMU domain of type ${iommuDomainTypeStr(this.defType)} for group ${group.id} - Falling back to IOMMU_DOMAIN_DMA`, LOG_NS);
    return dom;
  }

  /**
   * Identity-map the device's DIRECT regions into a DMA domain, so firmware DMA in flight keeps
   * working; with `attached` (the device is attached to `domain`), end with an IOTLB flush.
   *
   * Kernel versions: v6.17 calls this before the attach (iommu_setup_default_domain) and flushes
   * nothing. v6.1 called it after attaching a device probed on its own (iommu_probe_device: attach,
   * then this) and ended it with iommu_flush_iotlb_all() for a DMA domain; v6.6 to v6.16 kept the
   * flush when the device has reserved regions at all, which every arm-smmu(-v3) device does (the
   * software MSI window). Before the attach v6.1's drivers had not finalised the domain, so the flush
   * did nothing there. A real v6.1 probe trace therefore shows TLBI_NH_ASID + CMD_SYNC right after each
   * such device's attach. Here the mappings are made before the attach (v6.17: no window without
   * them), and the flush follows the attach of a device probed on its own (v6.1).
   */
  // kernel: iommu_create_device_direct_mappings() [iommu.c] @v6.1
  async createDeviceDirectMappings(domain: IommuDomain, dev: Device, attached = false): Promise<void> {
    const pg = domain.minPageSize;
    const dma = iommuIsDmaDomain(domain);
    if (dma && pg === 0) throw new KernelError('EINVAL', `${dev.name}: DMA domain without page sizes`);
    const param = devIommu(dev)!;
    const regions = iommuGetResvRegions(dev);
    for (const r of regions) {
      if (r.type === 'DIRECT') param.requireDirect = true;
      if ((r.type !== 'DIRECT' && r.type !== 'DIRECT_RELAXABLE') || !dma) continue;
      const start = Math.ceil(r.start / pg) * pg;
      const end = Math.ceil((r.start + r.length) / pg) * pg;
      let run = 0;
      for (let addr = start; addr <= end; addr += pg) {
        if (addr !== end && iommuIovaToPhys(domain, addr) === 0) {
          run += pg;
          continue;
        }
        if (run > 0) {
          await iommuMap(domain, addr - run, addr - run, run, r.prot);
          run = 0;
        }
      }
    }
    if (attached && dma && regions.length > 0) await iommuFlushIotlbAll(domain);
  }

  /**
   * Give the group a default domain of `targetType` (0: chosen by policy) and attach it. Replacing an
   * existing default domain frees the old one once the new one is attached.
   */
  // kernel: iommu_setup_default_domain() [iommu.c]
  private async setupDefaultDomain(group: IommuGroup, targetType: number): Promise<void> {
    const oldDom = group.defaultDomain;
    const reqType = this.defaultDomainTypeFor(group, targetType);
    if (reqType < 0) throw new KernelError('EINVAL', `${group}: its devices' drivers do not allow a ${iommuDomainTypeStr(targetType)} default domain`);
    const dom = this.allocDefaultDomain(group, reqType);
    if (group.defaultDomain === dom) return;
    if (iommuIsDmaDomain(dom)) {
      try {
        iommuGetDmaCookie(dom);
      } catch (e) {
        await putDomain(dom);
        throw e;
      }
    }
    let directFailed = false;
    for (const dev of group.devices) {
      try {
        await this.createDeviceDirectMappings(dom, dev);
      } catch {
        directFailed = true;
        this.log.warn(dev.name, 'IOMMU driver was not able to establish FW requested direct mapping.', LOG_NS);
      }
    }
    group.defaultDomain = dom;
    if (!group.domain) {
      // The first attach must not fail; on error the domain stays as default and is freed at release.
      try {
        await __iommuGroupSetDomainMustSucceed(group, dom);
      } catch (e) {
        this.log.warn(`iommu group ${group.id}`, `WARNING: first attach of the default domain failed: ${String(e)}`, LOG_NS);
        if (oldDom) await putDomain(oldDom);
        throw e;
      }
    } else {
      try {
        await __iommuGroupSetDomain(group, dom);
      } catch (e) {
        if (oldDom) {
          await putDomain(dom);
          group.defaultDomain = oldDom;
        }
        throw e;
      }
    }
    // Drivers that only accept mappings once attached get a second try.
    if (directFailed) {
      try {
        for (const dev of group.devices) await this.createDeviceDirectMappings(dom, dev);
      } catch (e) {
        if (oldDom) {
          await __iommuGroupSetDomainMustSucceed(group, oldDom).catch(() => undefined);
          await putDomain(dom);
          group.defaultDomain = oldDom;
        }
        throw e;
      }
    }
    if (oldDom) await putDomain(oldDom);
  }

  /**
   * Change the group's default domain type as sysfs `type` does ("identity", "DMA", "DMA-FQ",
   * "auto"): DMA to DMA-FQ happens live; anything else needs devices and no bound driver (EPERM).
   */
  // kernel: iommu_group_store_type() [iommu.c]
  async groupStoreType(group: IommuGroup, type: string): Promise<void> {
    if (!group.defaultDomain) throw new KernelError('EINVAL', `${group} has no default domain`);
    const reqType =
      type === 'identity' ? IOMMU_DOMAIN_IDENTITY : type === 'DMA' ? IOMMU_DOMAIN_DMA : type === 'DMA-FQ' ? IOMMU_DOMAIN_DMA_FQ : type === 'auto' ? 0 : -1;
    if (reqType < 0) throw new KernelError('EINVAL', `${group}: unknown domain type "${type}"`);
    await group.mutex.run(async () => {
      const def = group.defaultDomain!;
      if (reqType === IOMMU_DOMAIN_DMA_FQ && def.type === IOMMU_DOMAIN_DMA) {
        iommuDmaInitFq(def, this);
        def.type = IOMMU_DOMAIN_DMA_FQ;
        return;
      }
      if (group.devices.length === 0 || group.ownerCnt > 0) {
        throw new KernelError('EPERM', `${group}: unbind its drivers before changing the default domain`);
      }
      await this.setupDefaultDomain(group, reqType);
      for (const dev of group.devices) iommuSetupDmaOps(dev);
    });
  }

  // ---- driver core hooks -------------------------------------------------------------------------

  /**
   * Before a driver probes `dev`: bring it into the IOMMU core and count the driver as a DMA API
   * user. Devices whose firmware names no IOMMU use direct DMA. +
   * of_iommu_configure() + iommu_device_use_default_domain()
   */
  // kernel: of_dma_configure_id() [drivers/of/device.c]
  async dmaConfigure(dev: Device, driverManagedDma = false): Promise<void> {
    const fwspec = dev.fwspec;
    if (!fwspec) return;
    const iommu = this.iommuFromFwnode(fwspec.iommuNode);
    if (!iommu?.ready) {
      // (kernel: driver_deferred_probe_check_state(): with every driver built in, an IOMMU that has not)
      // registered by the end of the initcalls never will; the device goes on with direct DMA.
      if (!this.core.initcallsDone) {
        throw new KernelError('EPROBE_DEFER', `${dev.name}: IOMMU ${fwspec.iommuNode.path} is not registered yet`);
      }
      this.log.warn(dev.name, `IOMMU ${fwspec.iommuNode.path} has no driver: DMA is not translated`, LOG_NS);
      return;
    }
    if (!devIommu(dev)?.group) {
      try {
        await this.probeDevice(dev);
      } catch (e) {
        if (isKernelError(e, 'EPROBE_DEFER')) throw e;
        // of_dma_configure carries on without the IOMMU: the device gets direct DMA.
        this.log.warn(dev.name, `Adding to IOMMU failed: ${e instanceof Error ? e.message : String(e)}`, LOG_NS);
        return;
      }
    }
    if (!driverManagedDma) await iommuDeviceUseDefaultDomain(dev);
  }

  /** After the driver unbound (or failed its probe). */
  // kernel: platform_dma_cleanup() [drivers/base/platform.c]
  async dmaCleanup(dev: Device, driverManagedDma = false): Promise<void> {
    if (!driverManagedDma && devIommu(dev)?.group) await iommuDeviceUnuseDefaultDomain(dev);
  }

  // kernel: iommu_bus_notifier() [iommu.c]
  async busNotify(dev: Device, action: 'add' | 'removed'): Promise<void> {
    if (action === 'removed') {
      await this.releaseDevice(dev);
      return;
    }
    const node = dev.fwspec?.iommuNode;
    if (!node || !this.iommuFromFwnode(node)?.ready) return;
    try {
      await this.probeDevice(dev);
    } catch (e) {
      this.log.debug(dev.name, `iommu probe at add failed: ${e instanceof Error ? e.message : String(e)}`, LOG_NS);
    }
  }
}

// ---- kernel-named entry points ------------------------------------------------------------------

/** Register an IOMMU instance of `hwdev`'s kernel and probe its masters. Kernel: iommu_device_register() */
export function iommuDeviceRegister(iommu: IommuDevice, ops: IommuOps, hwdev: Device): Promise<void> {
  return iommuSubsystemOf(hwdev.core).register(iommu, ops, hwdev);
}

/** As the kernel's iommu_device_unregister() */
export function iommuDeviceUnregister(iommu: IommuDevice): Promise<void> {
  return iommuSubsystemOf(iommu.dev.core).unregister(iommu);
}

/** As the kernel's iommu_probe_device() */
export function iommuProbeDevice(dev: Device): Promise<void> {
  return iommuSubsystemOf(dev.core).probeDevice(dev);
}

/** As the kernel's iommu_release_device() */
export function iommuReleaseDevice(dev: Device): Promise<void> {
  return iommuSubsystemOf(dev.core).releaseDevice(dev);
}

/** Driver core hook before a driver's probe (see IommuSubsystem.dmaConfigure). */
export function iommuDmaConfigure(dev: Device, opts: { driverManagedDma?: boolean } = {}): Promise<void> {
  return iommuSubsystemOf(dev.core).dmaConfigure(dev, opts.driverManagedDma ?? false);
}

/** Driver core hook after a driver left (see IommuSubsystem.dmaCleanup). */
export function iommuDmaCleanup(dev: Device, opts: { driverManagedDma?: boolean } = {}): Promise<void> {
  return iommuSubsystemOf(dev.core).dmaCleanup(dev, opts.driverManagedDma ?? false);
}

/** Driver core hook on device add / removal. Kernel: iommu_bus_notifier() */
export function iommuBusNotify(dev: Device, action: 'add' | 'removed'): Promise<void> {
  return iommuSubsystemOf(dev.core).busNotify(dev, action);
}

/** The sysfs `type` of a group's default domain. */
// kernel: iommu_group_show_type() [iommu.c]
export function iommuGroupShowType(group: IommuGroup): string {
  return group.defaultDomain ? iommuDomainSysfsType(group.defaultDomain.type) : 'unknown';
}

/** As the kernel's iommu_group_store_type() */
export function iommuGroupStoreType(group: IommuGroup, type: string): Promise<void> {
  return group.subsystem.groupStoreType(group, type);
}

// The per-device feature API (IOPF, SVA) lives with SVA; it is exported from here as it always was.
export { iommuDevDisableFeature, iommuDevEnableFeature, iommuDevFeatureEnabled } from './iommu-sva.js';
