/**
 * The DMA API over an IOMMU domain (kernel: drivers/iommu/dma-iommu.c): a DMA domain's cookie holds
 * an IOVA allocator; mapping allocates IOVA below the device's DMA mask (and the domain's aperture)
 * and maps it; unmapping either invalidates at once (DMA domain: strict) or queues the IOVA on a flush
 * queue (DMA_FQ domain: lazy), where it stays unusable until a batched flush of the whole IOTLB, done
 * when the queue fills or IOVA_DEFAULT_FQ_TIMEOUT after the first entry (virtual time).
 *
 * Not modelled: the MSI cookie (software-managed MSI doorbell mappings), reserving PCI host bridge
 * windows, bounce buffers for untrusted devices, non-contiguous coherent allocations.
 */
import type { Device } from '../bus/device.js';
import { KernelError } from '../bus/errno.js';
import { PciDevice } from '../bus/pci/pci-device.js';
import type { DmaDataDirection } from './dma-direction.js';
import { DMA_ATTR_PRIVILEGED } from './dma-direction.js';
import { IOMMU_CACHE, IOMMU_PRIV, IOMMU_READ, IOMMU_WRITE } from './io-pgtable.js';
import { iommuDeferredAttach } from './iommu-attach.js';
import { deviceIommuCapable, devIommu } from './iommu-device.js';
import { IOMMU_DOMAIN_DMA, IOMMU_DOMAIN_DMA_FQ, iommuIsDmaDomain, type IommuDomain } from './iommu-domain.js';
import { iommuIotlbGatherInit, type IommuIotlbGather } from './iommu-gather.js';
import { iommuFlushIotlbAll, iommuIotlbSync, iommuMap, iommuUnmapFast } from './iommu-map.js';
import { iommuGetResvRegions } from './iommu-resv.js';
import type { IommuSubsystem } from './iommu.js';
import { IovaDomain } from './iova.js';

/** Entries per flush queue (kernel: IOVA_DEFAULT_FQ_SIZE); one slot stays empty, as in the kernel's ring. */
export const IOVA_DEFAULT_FQ_SIZE = 256;
/** Time after the first queued entry before a flush (kernel: IOVA_DEFAULT_FQ_TIMEOUT, 10 ms). */
export const IOVA_DEFAULT_FQ_TIMEOUT_NS = 10_000_000;

/**
 * Unmapped IOVAs waiting for an IOTLB flush (kernel: struct iova_fq and the fq_* functions). Each
 * entry records how many flushes had started when it was queued; it is freed once a flush that
 * started later has finished.
 */
export class FlushQueue {
  private readonly pfns: Float64Array;
  private readonly pages: Float64Array;
  private readonly counters: Float64Array;
  private head = 0;
  private tail = 0;
  private flushStartCnt = 0;
  private flushFinishCnt = 0;
  private timerOn = false;
  private dead = false;
  /** Completed batched flushes. */
  flushes = 0;

  constructor(
    private readonly domain: IommuDomain,
    private readonly iovad: IovaDomain,
    private readonly subsystem: IommuSubsystem,
    readonly size = IOVA_DEFAULT_FQ_SIZE,
    readonly timeoutNs = IOVA_DEFAULT_FQ_TIMEOUT_NS,
  ) {
    if (!Number.isInteger(size) || size < 2 || (size & (size - 1)) !== 0) throw new KernelError('EINVAL', `flush queue size ${size} is not a power of two >= 2`);
    this.pfns = new Float64Array(size);
    this.pages = new Float64Array(size);
    this.counters = new Float64Array(size);
  }

  /** Entries waiting for a flush. */
  get pending(): number {
    return (this.tail - this.head + this.size) % this.size;
  }

  private get full(): boolean {
    return (this.tail + 1) % this.size === this.head;
  }

  /** Free the entries a finished flush covers. */
  // kernel: fq_ring_free_locked() [dma-iommu.c]
  private ringFree(): void {
    while (this.head !== this.tail && this.counters[this.head] < this.flushFinishCnt) {
      this.iovad.freeIovaFast(this.pfns[this.head], this.pages[this.head]);
      this.head = (this.head + 1) % this.size;
    }
  }

  /** Invalidate the domain's whole IOTLB. */
  // kernel: fq_flush_iotlb() [dma-iommu.c]
  async flushIotlb(): Promise<void> {
    const mine = ++this.flushStartCnt;
    await iommuFlushIotlbAll(this.domain);
    this.flushFinishCnt = Math.max(this.flushFinishCnt, mine);
    this.flushes++;
  }

  /** Queue an unmapped range; flushes first when the queue is full. */
  // kernel: queue_iova() [dma-iommu.c]
  async queueIova(pfn: number, pages: number): Promise<void> {
    if (this.dead) throw new KernelError('EINVAL', 'queue_iova on a flush queue that was destroyed');
    this.ringFree();
    while (this.full) {
      await this.flushIotlb();
      this.ringFree();
    }
    this.pfns[this.tail] = pfn;
    this.pages[this.tail] = pages;
    this.counters[this.tail] = this.flushStartCnt;
    this.tail = (this.tail + 1) % this.size;
    if (!this.timerOn) {
      this.timerOn = true;
      void this.timer();
    }
  }

  // kernel: fq_flush_timeout() [dma-iommu.c]
  private async timer(): Promise<void> {
    await this.subsystem.port.delay(this.timeoutNs);
    this.timerOn = false;
    if (this.dead || this.subsystem.tornDown) return;
    try {
      await this.flushIotlb();
      this.ringFree();
    } catch (e) {
      this.subsystem.log.err('iommu', `flush queue timeout flush failed, IOVAs stay queued: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /** The domain is going away: forget the entries (their IOVA space goes with it). */
  // kernel: iommu_dma_free_fq() [dma-iommu.c]
  destroy(): void {
    this.dead = true;
    this.head = this.tail = 0;
  }
}

/** What a DMA domain's cookie holds (kernel: struct iommu_dma_cookie). */
export class IommuDmaCookie {
  iovad: IovaDomain | null = null;
  /** Non-null for a DMA_FQ domain (kernel: cookie->fq_domain). */
  fq: FlushQueue | null = null;

  // kernel: iommu_put_dma_cookie() [dma-iommu.c]
  put(): void {
    this.fq?.destroy();
    this.fq = null;
    this.iovad?.put();
    this.iovad = null;
  }
}

/** Give a DMA domain its cookie; EEXIST if it has one. */
// kernel: iommu_get_dma_cookie() [dma-iommu.c] @v6.14
export function iommuGetDmaCookie(domain: IommuDomain): IommuDmaCookie {
  if (domain.cookie.type !== 'none') throw new KernelError('EEXIST', `the domain already has a ${domain.cookie.type} cookie`);
  const dma = new IommuDmaCookie();
  domain.cookie = { type: 'dma-iova', dma };
  return dma;
}

/** The DMA cookie of `domain`, or null. */
export function dmaCookieOf(domain: IommuDomain): IommuDmaCookie | null {
  return domain.cookie.type === 'dma-iova' ? domain.cookie.dma : null;
}

/** Start a flush queue on a DMA domain's cookie. */
// kernel: iommu_dma_init_fq() [dma-iommu.c]
export function iommuDmaInitFq(domain: IommuDomain, subsystem: IommuSubsystem): void {
  const cookie = dmaCookieOf(domain);
  if (!cookie?.iovad) throw new KernelError('EINVAL', 'iommu_dma_init_fq: the domain has no initialised DMA cookie');
  cookie.fq ??= new FlushQueue(domain, cookie.iovad, subsystem);
}

/**
 * Set up the IOVA space of a DMA domain for `dev`: granule = smallest page, first frame at the
 * aperture start (never IOVA 0), the device's reserved regions kept out; a DMA_FQ domain whose
 * IOMMU cannot defer flushes falls back to strict DMA. A second device of the same domain finds it
 * set up (EFAULT if its view would differ).
 */
// kernel: iommu_dma_init_domain() [dma-iommu.c]
export function iommuDmaInitDomain(domain: IommuDomain, dev: Device): void {
  const cookie = dmaCookieOf(domain);
  if (!cookie) throw new KernelError('EINVAL', `${dev.name}: the DMA domain has no DMA cookie`);
  const granule = domain.minPageSize;
  if (granule === 0) throw new KernelError('EINVAL', `${dev.name}: the DMA domain has no page sizes`);
  const basePfn = Math.max(1, Math.floor(domain.geometry.apertureStart / granule));
  if (cookie.iovad) {
    if (cookie.iovad.granule !== granule || cookie.iovad.startPfn !== basePfn) {
      throw new KernelError('EFAULT', `${dev.name}: incompatible range for DMA domain`);
    }
    return;
  }
  const param = devIommu(dev)!;
  cookie.iovad = new IovaDomain(granule, basePfn);
  if (domain.type === IOMMU_DOMAIN_DMA_FQ) {
    if (deviceIommuCapable(dev, 'DEFERRED_FLUSH')) iommuDmaInitFq(domain, param.subsystem);
    else domain.type = IOMMU_DOMAIN_DMA;
  }
  // (kernel: iova_reserve_iommu_regions() — software-managed MSI windows are ours to use.)
  for (const r of iommuGetResvRegions(dev)) {
    if (r.type === 'SW_MSI' || r.length === 0) continue;
    cookie.iovad.reserveIova(cookie.iovad.pfn(r.start), cookie.iovad.pfn(r.start + r.length - 1));
  }
}

/**
 * Decide whether `dev` uses the IOMMU DMA path (its group's domain is a DMA domain) and set up that
 * domain's IOVA space. A failure leaves the device on direct DMA, logged.
 */
// kernel: iommu_setup_dma_ops() [dma-iommu.c]
export function iommuSetupDmaOps(dev: Device): void {
  const param = devIommu(dev);
  const domain = param?.group?.domain;
  if (!param || !domain) return;
  if (dev instanceof PciDevice) param.pci32bitWorkaround = true;
  param.dmaIommu = iommuIsDmaDomain(domain);
  if (!param.dmaIommu) return;
  try {
    iommuDmaInitDomain(domain, dev);
  } catch (e) {
    param.dmaIommu = false;
    param.subsystem.log.warn(dev.name, `Failed to set up IOMMU for device; retaining platform DMA ops: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** IOMMU_* prot for a DMA direction. */
// kernel: dma_info_to_prot() [dma-iommu.c]
export function dmaInfoToProt(dir: DmaDataDirection, coherent: boolean, attrs: number): number {
  let prot = coherent ? IOMMU_CACHE : 0;
  if ((attrs & DMA_ATTR_PRIVILEGED) !== 0) prot |= IOMMU_PRIV;
  switch (dir) {
    case 'bidirectional':
      return prot | IOMMU_READ | IOMMU_WRITE;
    case 'to-device':
      return prot | IOMMU_READ;
    case 'from-device':
      return prot | IOMMU_WRITE;
    default:
      return 0;
  }
}

const MAX_JS_ADDRESS = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * IOVA for `size` bytes below `dmaLimit` (a mask); 0 if there is none. PCI devices try below 4 GiB
 * first, once.
 */
// kernel: iommu_dma_alloc_iova() [dma-iommu.c]
export function iommuDmaAllocIova(domain: IommuDomain, size: number, dmaLimit: bigint, dev: Device): number {
  const iovad = dmaCookieOf(domain)?.iovad;
  if (!iovad) throw new KernelError('EINVAL', `${dev.name}: the DMA domain is not initialised`);
  const param = devIommu(dev)!;
  let limit = Number(dmaLimit < MAX_JS_ADDRESS ? dmaLimit : MAX_JS_ADDRESS);
  if (domain.geometry.forceAperture) limit = Math.min(limit, domain.geometry.apertureEnd);
  const pages = size / iovad.granule;
  if (limit > 0xffff_ffff && param.pci32bitWorkaround) {
    const pfn = iovad.allocIovaFast(pages, Math.floor(0xffff_ffff / iovad.granule), false);
    if (pfn !== 0) return pfn * iovad.granule;
    param.pci32bitWorkaround = false;
    param.subsystem.log.info(dev.name, `Using ${Math.ceil(Math.log2(limit + 1))}-bit DMA addresses`);
  }
  return iovad.allocIovaFast(pages, Math.floor(limit / iovad.granule), true) * iovad.granule;
}

/**
 * Give back an IOVA range; with a queued gather it waits on the flush queue instead.
 */
// kernel: iommu_dma_free_iova() [dma-iommu.c]
export async function iommuDmaFreeIova(domain: IommuDomain, iova: number, size: number, gather: IommuIotlbGather | null): Promise<void> {
  const cookie = dmaCookieOf(domain)!;
  const iovad = cookie.iovad!;
  const pfn = iovad.pfn(iova);
  const pages = size / iovad.granule;
  if (gather?.queued && cookie.fq) {
    if (gather.freelist.length > 0) {
      throw new Error('iommu_dma_free_iova: the driver put page-table pages on a queued gather; the flush queue does not free them');
    }
    await cookie.fq.queueIova(pfn, pages);
  } else {
    iovad.freeIovaFast(pfn, pages);
  }
}

function dmaDomainOf(dev: Device): { domain: IommuDomain; iovad: IovaDomain; cookie: IommuDmaCookie } {
  const domain = devIommu(dev)?.group?.defaultDomain;
  const cookie = domain ? dmaCookieOf(domain) : null;
  if (!domain || !cookie?.iovad) throw new KernelError('ENODEV', `${dev.name} has no DMA domain`);
  return { domain, iovad: cookie.iovad, cookie };
}

/**
 * Map `size` bytes at `phys` for `dev`: the IOVA keeps the buffer's offset into its IOMMU page.
 * ENOMEM when no IOVA fits below `dmaMask`.
 */
// kernel: __iommu_dma_map() [dma-iommu.c]
export async function iommuDmaMap(dev: Device, phys: number, size: number, prot: number, dmaMask: bigint): Promise<number> {
  const { domain, iovad } = dmaDomainOf(dev);
  const param = devIommu(dev)!;
  if (param.attachDeferred) await iommuDeferredAttach(dev, domain);
  const off = phys % iovad.granule;
  const len = Math.ceil((size + off) / iovad.granule) * iovad.granule;
  const iova = iommuDmaAllocIova(domain, len, dmaMask, dev);
  if (iova === 0) {
    throw new KernelError('ENOMEM', `${dev.name}: no IOVA space for ${len} bytes below mask 0x${dmaMask.toString(16)}`);
  }
  try {
    await iommuMap(domain, iova, phys - off, len, prot, 'GFP_ATOMIC');
  } catch (e) {
    await iommuDmaFreeIova(domain, iova, len, null);
    throw e;
  }
  return iova + off;
}

/** Unmap what iommuDmaMap returned, strictly or through the flush queue. */
// kernel: __iommu_dma_unmap() [dma-iommu.c]
export async function iommuDmaUnmap(dev: Device, dmaAddr: number, size: number): Promise<void> {
  const { domain, iovad, cookie } = dmaDomainOf(dev);
  const off = dmaAddr % iovad.granule;
  const iova = dmaAddr - off;
  const len = Math.ceil((size + off) / iovad.granule) * iovad.granule;
  const gather = iommuIotlbGatherInit();
  gather.queued = cookie.fq !== null;
  const unmapped = iommuUnmapFast(domain, iova, len, gather);
  if (unmapped !== len) {
    devIommu(dev)!.subsystem.log.warn(dev.name, `WARNING: DMA unmap of 0x${iova.toString(16)}+0x${len.toString(16)} removed only 0x${unmapped.toString(16)} bytes`);
  }
  if (!gather.queued) await iommuIotlbSync(domain, gather);
  await iommuDmaFreeIova(domain, iova, len, gather);
}
