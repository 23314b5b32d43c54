/**
 * A test-only IOMMU driver (like iommufd's selftest mock domain): real io-pgtable page tables
 * (ARM_64_LPAE_S1) in machine RAM, no hardware behind them. It implements the core's ops, records
 * every call in `calls` for tests to assert on, and can be told to fail or to take virtual time.
 *
 * "Hardware state" is what the attach calls leave: `rid` (device → domain) and `pasids`.
 */
import type { Device } from '../../bus/device.js';
import { KernelError, type Errno } from '../../bus/errno.js';
import type { IommuFwspec } from '../../bus/iommu-fwspec.js';
import { PciDevice } from '../../bus/pci/pci-device.js';
import { platformBus, type PlatformDevice, type PlatformDriver } from '../../bus/platform.js';
import { allocIoPgtableOps, freeIoPgtableOps } from '../../core/io-pgtable-arm.js';
import type { IoPgtable, IoPgtableAllocator } from '../../core/io-pgtable.js';
import { IommuDevice } from '../../core/iommu-device.js';
import { IOMMU_DOMAIN_BLOCKED, IOMMU_DOMAIN_IDENTITY, IOMMU_HWPT_ALLOC_PASID, IommuDomain } from '../../core/iommu-domain.js';
import { iommuIotlbGatherAddPage, IOMMU_GATHER_START_EMPTY, type IommuIotlbGather } from '../../core/iommu-gather.js';
import { fwspecSharedDeviceGroup, pciDeviceGroup, type IommuGroup } from '../../core/iommu-group.js';
import type { DomainOps, IommuCap, IommuOps, IommuResvRegion } from '../../core/iommu-ops.js';
import { iommuDeviceRegister } from '../../core/iommu.js';
import type { CpuPort } from '../../hw/cpu-port.js';
import { orderForSize, type PageAllocator } from '../../mm/page-alloc.js';

export const MOCK_IOMMU_COMPATIBLE = 'iommu-sim,mock-iommu';
/** 4K pages, 2M and 1G blocks. */
export const MOCK_PGSIZES = 0x1000 | 0x20_0000 | 0x4000_0000;

export type MockCall =
  | { op: 'probe'; dev: string }
  | { op: 'release'; dev: string }
  | { op: 'finalize'; dev: string }
  | { op: 'xlate'; dev: string; args: number[] }
  | { op: 'attach'; dev: string; domain: string; old: string | null }
  | { op: 'set-pasid'; dev: string; pasid: number; domain: string; old: string | null }
  | { op: 'alloc'; domain: string; flags: number }
  | { op: 'free'; domain: string }
  | { op: 'map'; domain: string; iova: number; paddr: number; pgsize: number; pgcount: number; prot: number }
  | { op: 'unmap'; domain: string; iova: number; pgsize: number; pgcount: number; unmapped: number }
  | { op: 'gather-sync'; domain: string; start: number; end: number; pgsize: number }
  | { op: 'iotlb-sync'; domain: string; start: number; end: number; pgsize: number }
  | { op: 'sync-map'; domain: string; iova: number; size: number }
  | { op: 'flush-all'; domain: string }
  | { op: 'pgtable-flush-all'; domain: string }
  | { op: 'walk-flush'; domain: string; iova: number; size: number };

export interface MockIommuOptions {
  pgsizeBitmap?: number;
  /** PASIDs the IOMMU supports (0: none). */
  maxPasids?: number;
  ias?: number;
  caps?: readonly IommuCap[];
  defDomainType?: (dev: Device) => number;
  resvRegions?: (dev: Device) => IommuResvRegion[];
  /** Virtual time attach, sync and flush-all take. */
  opDelayNs?: number;
  /** Offer a static identity domain (default true). */
  identity?: boolean;
  /** Accept IOMMU_HWPT_ALLOC_PASID (default true). */
  pasidDomains?: boolean;
  /** Implement iotlb_sync_map (default false). */
  syncMap?: boolean;
  /** Do not implement of_xlate (default: implemented, packing SID | MASK << 16 as arm-smmu does). */
  noXlate?: boolean;
  group?: (dev: Device) => IommuGroup;
}

/** A paging domain of the mock: one io-pgtable. */
export class MockDomain extends IommuDomain {
  constructor(
    readonly label: string,
    readonly pgtable: IoPgtable,
    ops: DomainOps,
    pgsizeBitmap: number,
    ias: number,
  ) {
    super({ ops, pgsizeBitmap, geometry: { apertureStart: 0, apertureEnd: 2 ** ias - 1, forceAperture: true } });
  }

  override toJSON(): Record<string, unknown> {
    return { mock: this.label, ...super.toJSON() };
  }
}

function label(d: IommuDomain | null): string | null {
  if (!d) return null;
  return d instanceof MockDomain ? d.label : d.type === IOMMU_DOMAIN_IDENTITY ? 'identity' : d.type === IOMMU_DOMAIN_BLOCKED ? 'blocked' : 'other';
}

export class MockIommu {
  readonly calls: MockCall[] = [];
  /** Record calls in `calls` (benchmarks turn it off). */
  recording = true;
  /** RID attachments as the "hardware" holds them. */
  readonly rid = new Map<Device, IommuDomain>();
  /** PASID attachments: "dev:pasid" → domain. */
  readonly pasids = new Map<string, IommuDomain>();
  /** Return an errno to make the next attach of (domain, dev) fail. */
  failAttach: ((domain: IommuDomain, dev: Device) => Errno | null) | null = null;
  failSetPasid: ((domain: IommuDomain, dev: Device, pasid: number) => Errno | null) | null = null;
  /** Fail probe_device for a device. */
  failProbe: ((dev: Device) => Errno | null) | null = null;
  /** Make a map fail with this errno after mapping `failMapAfter` calls' worth. */
  failMapAfter = Infinity;
  syncMapError: Errno | null = null;

  readonly ops: IommuOps;
  readonly domainOps: DomainOps;
  readonly identityDomain: IommuDomain | undefined;
  readonly blockedDomain: IommuDomain;
  private iommu: IommuDevice | null = null;
  private domainCount = 0;
  private mapCalls = 0;

  constructor(
    private readonly port: CpuPort,
    private readonly pages: PageAllocator,
    readonly options: MockIommuOptions = {},
  ) {
    const pgsizeBitmap = options.pgsizeBitmap ?? MOCK_PGSIZES;
    const caps = new Set<IommuCap>(options.caps ?? ['CACHE_COHERENCY', 'DEFERRED_FLUSH']);
    this.domainOps = this.makeDomainOps();
    const staticOps: DomainOps = {
      attachDev: (domain, dev, old) => this.attach(domain, dev, old),
      setDevPasid: (domain, dev, pasid, old) => this.setPasid(domain, dev, pasid, old),
    };
    this.identityDomain = options.identity === false ? undefined : new IommuDomain({ type: IOMMU_DOMAIN_IDENTITY, ops: { attachDev: staticOps.attachDev } });
    this.blockedDomain = new IommuDomain({ type: IOMMU_DOMAIN_BLOCKED, ops: staticOps });
    const ops: IommuOps = {
      name: 'mock-iommu',
      pgsizeBitmap,
      capable: (_dev, cap) => caps.has(cap),
      probeDevice: (dev) => {
        const err = this.failProbe?.(dev);
        if (err) throw new KernelError(err, `mock: probe of ${dev.name} refused`);
        this.record({ op: 'probe', dev: dev.name });
        if (!this.iommu) throw new KernelError('ENODEV', 'mock IOMMU is not registered');
        return this.iommu;
      },
      probeFinalize: (dev) => {
        this.record({ op: 'finalize', dev: dev.name });
      },
      releaseDevice: (dev) => {
        this.record({ op: 'release', dev: dev.name });
        this.rid.delete(dev);
      },
      deviceGroup: options.group ?? ((dev) => (dev instanceof PciDevice ? pciDeviceGroup(dev) : fwspecSharedDeviceGroup(dev))),
      getResvRegions: options.resvRegions,
      defDomainType: options.defDomainType,
      domainAllocPagingFlags: (_dev, flags) => {
        if ((flags & ~IOMMU_HWPT_ALLOC_PASID) !== 0 || (flags !== 0 && options.pasidDomains === false)) {
          throw new KernelError('EOPNOTSUPP', `mock: allocation flags 0x${flags.toString(16)} not supported`);
        }
        return this.allocPaging(flags);
      },
      identityDomain: this.identityDomain,
      blockedDomain: this.blockedDomain,
    };
    if (!options.noXlate) {
      ops.ofXlate = (dev: Device, fwspec: IommuFwspec, args: readonly number[]) => {
        this.record({ op: 'xlate', dev: dev.name, args: [...args] });
        fwspec.ids.push((args[0] ?? 0) | ((args[1] ?? 0) << 16));
      };
    }
    this.ops = ops;
  }

  /** The IommuDevice of this instance, for `hwdev`. */
  iommuDevice(hwdev: Device): IommuDevice {
    this.iommu ??= new IommuDevice({ dev: hwdev, maxPasids: this.options.maxPasids ?? 0 });
    return this.iommu;
  }

  /** Register with the iommu core from `hwdev` (what the driver's probe does). */
  register(hwdev: Device): Promise<void> {
    return iommuDeviceRegister(this.iommuDevice(hwdev), this.ops, hwdev);
  }

  /** A platform driver binding the mock's DT node and registering it. */
  driver(): PlatformDriver {
    return {
      name: 'mock-iommu',
      bus: platformBus,
      ofMatchTable: [MOCK_IOMMU_COMPATIBLE],
      probe: (dev: PlatformDevice) => this.register(dev),
    };
  }

  private record(call: MockCall): void {
    if (this.recording) this.calls.push(call);
  }

  /** Calls of one kind. */
  callsOf<K extends MockCall['op']>(op: K): Extract<MockCall, { op: K }>[] {
    return this.calls.filter((c): c is Extract<MockCall, { op: K }> => c.op === op);
  }

  private async delay(): Promise<void> {
    const ns = this.options.opDelayNs ?? 0;
    if (ns > 0) await this.port.delay(ns);
  }

  private async attach(domain: IommuDomain, dev: Device, old: IommuDomain | null): Promise<void> {
    await this.delay();
    const err = this.failAttach?.(domain, dev);
    if (err) throw new KernelError(err, `mock: attach of ${dev.name} to ${label(domain)} refused`);
    this.record({ op: 'attach', dev: dev.name, domain: label(domain)!, old: label(old) });
    this.rid.set(dev, domain);
  }

  private async setPasid(domain: IommuDomain, dev: Device, pasid: number, old: IommuDomain | null): Promise<void> {
    await this.delay();
    const err = this.failSetPasid?.(domain, dev, pasid);
    if (err) throw new KernelError(err, `mock: PASID ${pasid} of ${dev.name} refused`);
    this.record({ op: 'set-pasid', dev: dev.name, pasid, domain: label(domain)!, old: label(old) });
    if (domain === this.blockedDomain) this.pasids.delete(`${dev.name}:${pasid}`);
    else this.pasids.set(`${dev.name}:${pasid}`, domain);
  }

  private allocPaging(flags: number): MockDomain {
    const name = `paging${this.domainCount++}`;
    const pages = this.pages;
    const allocator: IoPgtableAllocator = {
      allocTable: (size) => pages.allocPages(orderForSize(size), { kind: 'page-table', what: `mock-iommu ${name}` }, { zero: true }),
      freeTable: (pa) => pages.freePages(pa),
    };
    const record = (c: MockCall): void => this.record(c);
    const pgtable = allocIoPgtableOps('ARM_64_LPAE_S1', {
      pgsizeBitmap: this.ops.pgsizeBitmap,
      ias: this.options.ias ?? 48,
      oas: 48,
      ram: this.port.ram,
      allocator,
      tlb: {
        tlbFlushAll: () => record({ op: 'pgtable-flush-all', domain: name }),
        tlbFlushWalk: (iova, size) => record({ op: 'walk-flush', domain: name, iova, size }),
        tlbAddPage: (gather, iova, granule) =>
          iommuIotlbGatherAddPage(gather, iova, granule, (g) => record({ op: 'gather-sync', domain: name, start: g.start, end: g.end, pgsize: g.pgsize })),
      },
    });
    this.record({ op: 'alloc', domain: name, flags });
    return new MockDomain(name, pgtable, this.domainOps, pgtable.cfg.pgsizeBitmap, pgtable.cfg.ias);
  }

  private makeDomainOps(): DomainOps {
    const asMock = (d: IommuDomain): MockDomain => {
      if (!(d instanceof MockDomain)) throw new KernelError('EINVAL', 'mock: not a mock paging domain');
      return d;
    };
    const gatherRange = (g: IommuIotlbGather) => ({ start: g.start, end: g.end, pgsize: g.pgsize });
    const ops: DomainOps = {
      attachDev: (domain, dev, old) => this.attach(domain, dev, old),
      setDevPasid: (domain, dev, pasid, old) => this.setPasid(domain, dev, pasid, old),
      mapPages: (domain, iova, paddr, pgsize, pgcount, prot) => {
        const d = asMock(domain);
        if (this.mapCalls++ >= this.failMapAfter) throw new KernelError('ENOMEM', 'mock: map refused');
        this.record({ op: 'map', domain: d.label, iova, paddr, pgsize, pgcount, prot });
        return d.pgtable.mapPages(iova, paddr, pgsize, pgcount, prot);
      },
      unmapPages: (domain, iova, pgsize, pgcount, gather) => {
        const d = asMock(domain);
        const unmapped = d.pgtable.unmapPages(iova, pgsize, pgcount, gather);
        this.record({ op: 'unmap', domain: d.label, iova, pgsize, pgcount, unmapped });
        return unmapped;
      },
      iotlbSync: (domain, gather, done) => {
        this.delay().then(() => {
          const r = gatherRange(gather);
          this.record({ op: 'iotlb-sync', domain: asMock(domain).label, ...r });
          done();
        }, done);
      },
      flushIotlbAll: async (domain) => {
        await this.delay();
        this.record({ op: 'flush-all', domain: asMock(domain).label });
      },
      iovaToPhys: (domain, iova) => asMock(domain).pgtable.iovaToPhys(iova),
      free: (domain) => {
        const d = asMock(domain);
        this.record({ op: 'free', domain: d.label });
        freeIoPgtableOps(d.pgtable);
      },
    };
    if (this.options.syncMap) {
      ops.iotlbSyncMap = async (domain, iova, size) => {
        await this.delay();
        if (this.syncMapError) throw new KernelError(this.syncMapError, 'mock: sync_map refused');
        this.record({ op: 'sync-map', domain: asMock(domain).label, iova, size });
      };
    }
    return ops;
  }
}

export { IOMMU_GATHER_START_EMPTY };
