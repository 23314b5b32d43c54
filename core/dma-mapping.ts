/**
 * The DMA API device drivers use (kernel: include/linux/dma-mapping.h, kernel/dma/mapping.c, with
 * dma-direct and dma-iommu behind it).
 *
 * A device whose group's default domain is a DMA domain maps through the IOMMU (IOVA allocator,
 * strict or flush-queue invalidation: dma-iommu.ts). Any other device (no IOMMU, an IDENTITY default
 * domain, no iommu core probe) uses direct DMA: the DMA address is the physical address, and a
 * buffer the device cannot reach under its DMA mask cannot be mapped (there are no bounce buffers).
 *
 * Where the kernel returns DMA_MAPPING_ERROR these throw: ERANGE for a buffer beyond a direct
 * device's mask, ENOMEM when the IOVA space below the mask is full. Every mapping is recorded
 * (dma-debug.ts), so unmapping something never mapped is EINVAL, and the stray-DMA experiments can
 * ask what a device may reach (`dmaMappings`, `dmaPhysIsMapped`, and with the IOMMU API's mappings
 * and SVA bonds too, `devPhysIsReachable`).
 *
 * The machine models no CPU caches, so the sync calls only check their arguments; they are kept so
 * drivers read as they would in the kernel.
 */
import type { Device } from '../bus/device.js';
import { KernelError } from '../bus/errno.js';
import { dmaAllocCoherent as allocCoherentPages, dmaFreeCoherent as freeCoherentPages } from '../mm/dma-coherent.js';
import { PAGE_SIZE } from '../mm/page-alloc.js';
import type { DmaMapping } from './dma-debug.js';
import { checkDirection, DMA_ATTR_NO_WARN, type DmaDataDirection } from './dma-direction.js';
import { dmaCookieOf, dmaInfoToProt, iommuDmaAllocIova, iommuDmaFreeIova, iommuDmaMap, iommuDmaUnmap } from './dma-iommu.js';
import { iommuDeferredAttach } from './iommu-attach.js';
import { devIommu } from './iommu-device.js';
import { IOMMU_DOMAIN_SVA, type IommuDomain } from './iommu-domain.js';
import { iommuDomainMapsPhys, iommuMapSg } from './iommu-map.js';
import { iommuSubsystemOf, type IommuSubsystem } from './iommu.js';

export type { DmaMapping } from './dma-debug.js';
export type { DmaDataDirection } from './dma-direction.js';
export { DMA_ATTR_NO_WARN, DMA_ATTR_PRIVILEGED, DMA_ATTR_SKIP_CPU_SYNC } from './dma-direction.js';

/** Largest DMA segment dma_map_sg merges into (kernel: dma_get_max_seg_size() default, 64 KiB). */
export const DMA_MAX_SEG_SIZE = 0x1_0000;
/** Segments never cross this boundary (kernel: dma_get_seg_boundary() default, 4 GiB). */
const DMA_SEG_BOUNDARY = 0x1_0000_0000;

/** One scatterlist entry: the buffer piece, and where dma_map_sg put it (kernel: struct scatterlist). */
export interface DmaSgEntry {
  pa: number;
  length: number;
  /** Set by dmaMapSg for the first `count` entries: the merged DMA segments. */
  dmaAddress: number;
  dmaLength: number;
}

/** A coherent buffer: CPU physical address and the device's address for it. */
export interface DmaCoherentAllocation {
  cpuAddr: number;
  dmaAddr: number;
  size: number;
}

function subsystemOf(dev: Device): IommuSubsystem {
  return iommuSubsystemOf(dev.core);
}

/** True if `dev`'s DMA goes through an IOMMU DMA domain (kernel: dev->dma_iommu). */
export function dmaUsesIommu(dev: Device): boolean {
  return devIommu(dev)?.dmaIommu === true;
}

function checkBuffer(what: string, dev: Device, pa: number, size: number): void {
  if (!Number.isSafeInteger(pa) || pa < 0 || !Number.isSafeInteger(size) || size <= 0 || !Number.isSafeInteger(pa + size)) {
    throw new KernelError('EINVAL', `${what}: ${dev.name}: bad buffer pa ${pa} size ${size}`);
  }
}

const MAX_JS_ADDRESS = BigInt(Number.MAX_SAFE_INTEGER);

function maskLimit(mask: bigint): number {
  return Number(mask < MAX_JS_ADDRESS ? mask : MAX_JS_ADDRESS);
}

/** kernel: dma_capable() for direct DMA: ERANGE if [pa, pa + size) is beyond the mask. */
function directCheck(what: string, dev: Device, pa: number, size: number, mask: bigint, attrs: number): void {
  if (pa + size - 1 <= maskLimit(mask)) return;
  const msg = `${what}: DMA addr 0x${pa.toString(16)}+0x${size.toString(16)} overflow mask 0x${mask.toString(16)}`;
  if ((attrs & DMA_ATTR_NO_WARN) === 0) subsystemOf(dev).log.err(dev.name, msg);
  throw new KernelError('ERANGE', `${dev.name}: ${msg}`);
}

function granuleOf(dev: Device): number {
  const domain = devIommu(dev)!.group!.defaultDomain!;
  return dmaCookieOf(domain)!.iovad!.granule;
}

/** Map a buffer for one DMA transfer; returns the device address. // kernel: dma_map_single_attrs() */
export async function dmaMapSingle(dev: Device, pa: number, size: number, dir: DmaDataDirection, attrs = 0): Promise<number> {
  checkDirection(dir, 'dma_map_single');
  checkBuffer('dma_map_single', dev, pa, size);
  const debug = subsystemOf(dev).dmaDebug;
  if (!dmaUsesIommu(dev)) {
    directCheck('dma_map_single', dev, pa, size, dev.dmaMask, attrs);
    debug.add({ dev, kind: 'single', dmaAddr: pa, size, phys: pa, dir, viaIommu: false, spanDma: pa, spanSize: size, spanPhys: pa });
    return pa;
  }
  const addr = await iommuDmaMap(dev, pa, size, dmaInfoToProt(dir, dev.dmaCoherent, attrs), dev.dmaMask);
  const g = granuleOf(dev);
  const off = pa % g;
  debug.add({ dev, kind: 'single', dmaAddr: addr, size, phys: pa, dir, viaIommu: true, spanDma: addr - off, spanSize: Math.ceil((size + off) / g) * g, spanPhys: pa - off });
  return addr;
}

/** kernel: dma_map_page_attrs() */
export function dmaMapPage(dev: Device, pagePa: number, offset: number, size: number, dir: DmaDataDirection, attrs = 0): Promise<number> {
  return dmaMapSingle(dev, pagePa + offset, size, dir, attrs);
}

/** kernel: dma_unmap_single_attrs() */
export async function dmaUnmapSingle(dev: Device, dmaAddr: number, size: number, dir: DmaDataDirection, _attrs = 0): Promise<void> {
  checkDirection(dir, 'dma_unmap_single');
  const debug = subsystemOf(dev).dmaDebug;
  const m = debug.checkUnmap(dev, dmaAddr, size, dir, 'single');
  if (m.viaIommu) await iommuDmaUnmap(dev, dmaAddr, size);
  debug.delete(m);
}

/** kernel: dma_unmap_page_attrs() */
export function dmaUnmapPage(dev: Device, dmaAddr: number, size: number, dir: DmaDataDirection, attrs = 0): Promise<void> {
  return dmaUnmapSingle(dev, dmaAddr, size, dir, attrs);
}

/**
 * Map a scatterlist; returns the number of DMA segments written to the first entries (direct: one per
 * entry; IOMMU: one contiguous IOVA range, merged into segments of at most DMA_MAX_SEG_SIZE).
 * // kernel: dma_map_sg_attrs()
 */
export async function dmaMapSg(dev: Device, sg: DmaSgEntry[], dir: DmaDataDirection, attrs = 0): Promise<number> {
  checkDirection(dir, 'dma_map_sg');
  if (sg.length === 0) throw new KernelError('EINVAL', `dma_map_sg: ${dev.name}: empty scatterlist`);
  for (const s of sg) checkBuffer('dma_map_sg', dev, s.pa, s.length);
  const debug = subsystemOf(dev).dmaDebug;
  if (!dmaUsesIommu(dev)) {
    for (const s of sg) directCheck('dma_map_sg', dev, s.pa, s.length, dev.dmaMask, attrs);
    for (const s of sg) {
      s.dmaAddress = s.pa;
      s.dmaLength = s.length;
      debug.add({ dev, kind: 'sg', dmaAddr: s.pa, size: s.length, phys: s.pa, dir, viaIommu: false, spanDma: s.pa, spanSize: s.length, spanPhys: s.pa });
    }
    return sg.length;
  }
  // kernel: iommu_dma_map_sg(): every piece padded to whole IOMMU pages, one IOVA range for all.
  const domain = devIommu(dev)!.group!.defaultDomain!;
  await iommuDeferredAttach(dev, domain);
  const g = granuleOf(dev);
  const pieces = sg.map((s) => {
    const off = s.pa % g;
    return { pa: s.pa - off, length: Math.ceil((s.length + off) / g) * g, off };
  });
  const total = pieces.reduce((n, p) => n + p.length, 0);
  const iova = iommuDmaAllocIova(domain, total, dev.dmaMask, dev);
  if (iova === 0) throw new KernelError('ENOMEM', `dma_map_sg: ${dev.name}: no IOVA space for ${total} bytes`);
  try {
    await iommuMapSg(domain, iova, pieces, dmaInfoToProt(dir, dev.dmaCoherent, attrs));
  } catch (e) {
    await iommuDmaFreeIova(domain, iova, total, null);
    throw e;
  }
  // kernel: __finalise_sg(): merge pieces that continue each other into DMA segments.
  let count = 0;
  let cur = -1;
  let curLen = 0;
  let addr = iova;
  for (let i = 0; i < sg.length; i++) {
    const s = sg[i]!;
    const p = pieces[i]!;
    debug.add({ dev, kind: 'sg', dmaAddr: addr + p.off, size: s.length, phys: s.pa, dir, viaIommu: true, spanDma: addr, spanSize: p.length, spanPhys: p.pa });
    if (curLen > 0 && p.off === 0 && addr % DMA_SEG_BOUNDARY !== 0 && curLen + s.length <= DMA_MAX_SEG_SIZE) {
      curLen += s.length;
    } else {
      cur = count++;
      sg[cur]!.dmaAddress = addr + p.off;
      curLen = s.length;
    }
    sg[cur]!.dmaLength = curLen;
    addr += p.length;
    // A piece that does not fill its last page cannot be continued.
    if (s.length + p.off < p.length) curLen = 0;
  }
  for (let i = count; i < sg.length; i++) {
    sg[i]!.dmaAddress = 0;
    sg[i]!.dmaLength = 0;
  }
  return count;
}

/** Device addresses dma_map_sg gave each entry, recomputed from the entries themselves. */
function sgEntryAddresses(dev: Device, sg: readonly DmaSgEntry[]): { addrs: number[]; iova: number; total: number } {
  if (!dmaUsesIommu(dev)) return { addrs: sg.map((s) => s.pa), iova: 0, total: 0 };
  const g = granuleOf(dev);
  const first = sg[0]!;
  const iova = first.dmaAddress - (first.pa % g);
  const addrs: number[] = [];
  let addr = iova;
  for (const s of sg) {
    const off = s.pa % g;
    addrs.push(addr + off);
    addr += Math.ceil((s.length + off) / g) * g;
  }
  return { addrs, iova, total: addr - iova };
}

/** Unmap a scatterlist with the entries (and count) given to dmaMapSg. // kernel: dma_unmap_sg_attrs() */
export async function dmaUnmapSg(dev: Device, sg: readonly DmaSgEntry[], dir: DmaDataDirection, _attrs = 0): Promise<void> {
  checkDirection(dir, 'dma_unmap_sg');
  if (sg.length === 0) throw new KernelError('EINVAL', `dma_unmap_sg: ${dev.name}: empty scatterlist`);
  const debug = subsystemOf(dev).dmaDebug;
  const { addrs, iova, total } = sgEntryAddresses(dev, sg);
  const maps = sg.map((s, i) => debug.checkUnmap(dev, addrs[i]!, s.length, dir, 'sg'));
  if (maps[0]!.viaIommu) await iommuDmaUnmap(dev, iova, total);
  for (const m of maps) debug.delete(m);
}

/**
 * A zeroed, physically contiguous buffer both the CPU and the device use, below the device's
 * coherent DMA mask. // kernel: dma_alloc_attrs()
 */
export async function dmaAllocCoherent(dev: Device, size: number, attrs = 0): Promise<DmaCoherentAllocation> {
  if (!Number.isSafeInteger(size) || size <= 0) throw new KernelError('EINVAL', `dma_alloc_coherent: ${dev.name}: bad size ${size}`);
  const sub = subsystemOf(dev);
  const buffer = allocCoherentPages(sub.pageAllocator, sub.port.ram, size, dev.name, 'dma_alloc_coherent');
  const mapped = Math.ceil(size / PAGE_SIZE) * PAGE_SIZE;
  let dmaAddr: number;
  let viaIommu = false;
  try {
    if (dmaUsesIommu(dev)) {
      dmaAddr = await iommuDmaMap(dev, buffer.pa, mapped, dmaInfoToProt('bidirectional', dev.dmaCoherent, attrs), dev.coherentDmaMask);
      viaIommu = true;
    } else {
      if (buffer.pa + size - 1 > maskLimit(dev.coherentDmaMask)) {
        throw new KernelError('ENOMEM', `dma_alloc_coherent: ${dev.name}: no memory below coherent mask 0x${dev.coherentDmaMask.toString(16)}`);
      }
      dmaAddr = buffer.pa;
    }
  } catch (e) {
    freeCoherentPages(sub.pageAllocator, buffer);
    throw e;
  }
  const g = viaIommu ? granuleOf(dev) : 1;
  const off = viaIommu ? buffer.pa % g : 0;
  const spanSize = viaIommu ? Math.ceil((mapped + off) / g) * g : size;
  sub.dmaDebug.add({ dev, kind: 'coherent', dmaAddr, size, phys: buffer.pa, dir: 'bidirectional', viaIommu, spanDma: dmaAddr - off, spanSize, spanPhys: buffer.pa - off, buffer });
  return { cpuAddr: buffer.pa, dmaAddr, size };
}

/** kernel: dma_free_attrs() */
export async function dmaFreeCoherent(dev: Device, size: number, cpuAddr: number, dmaAddr: number): Promise<void> {
  const sub = subsystemOf(dev);
  const m = sub.dmaDebug.checkUnmap(dev, dmaAddr, size, 'bidirectional', 'coherent');
  if (m.phys !== cpuAddr) {
    throw new KernelError('EINVAL', `dma_free_coherent: ${dev.name}: DMA address 0x${dmaAddr.toString(16)} belongs to CPU address 0x${m.phys.toString(16)}, not 0x${cpuAddr.toString(16)}`);
  }
  if (m.viaIommu) await iommuDmaUnmap(dev, dmaAddr, Math.ceil(size / PAGE_SIZE) * PAGE_SIZE);
  freeCoherentPages(sub.pageAllocator, m.buffer!);
  sub.dmaDebug.delete(m);
}

function checkSync(what: string, dev: Device, dmaAddr: number, size: number, dir: DmaDataDirection): void {
  checkDirection(dir, what);
  const m = subsystemOf(dev).dmaDebug.containing(dev, dmaAddr, size);
  if (!m) throw new KernelError('EINVAL', `${what}: ${dev.name}: 0x${dmaAddr.toString(16)}+0x${size.toString(16)} is not inside a mapping`);
  if (m.dir !== 'bidirectional' && m.dir !== dir) throw new KernelError('EINVAL', `${what}: ${dev.name}: mapping is ${m.dir}, synced ${dir}`);
}

/** Hand the buffer to the CPU after the device wrote it. // kernel: dma_sync_single_for_cpu() */
export function dmaSyncSingleForCpu(dev: Device, dmaAddr: number, size: number, dir: DmaDataDirection): void {
  checkSync('dma_sync_single_for_cpu', dev, dmaAddr, size, dir);
}

/** Hand the buffer back to the device. // kernel: dma_sync_single_for_device() */
export function dmaSyncSingleForDevice(dev: Device, dmaAddr: number, size: number, dir: DmaDataDirection): void {
  checkSync('dma_sync_single_for_device', dev, dmaAddr, size, dir);
}

/** kernel: dma_sync_sg_for_cpu() */
export function dmaSyncSgForCpu(dev: Device, sg: readonly DmaSgEntry[], dir: DmaDataDirection): void {
  const { addrs } = sgEntryAddresses(dev, sg);
  sg.forEach((s, i) => checkSync('dma_sync_sg_for_cpu', dev, addrs[i]!, s.length, dir));
}

/** kernel: dma_sync_sg_for_device() */
export function dmaSyncSgForDevice(dev: Device, sg: readonly DmaSgEntry[], dir: DmaDataDirection): void {
  const { addrs } = sgEntryAddresses(dev, sg);
  sg.forEach((s, i) => checkSync('dma_sync_sg_for_device', dev, addrs[i]!, s.length, dir));
}

function checkMask(what: string, mask: bigint): void {
  if (mask < 0n || mask > 0xffff_ffff_ffff_ffffn) throw new KernelError('EIO', `${what}: mask 0x${mask.toString(16)} is not a 64-bit mask`);
}

/** kernel: dma_set_mask() */
export function dmaSetMask(dev: Device, mask: bigint): void {
  checkMask('dma_set_mask', mask);
  dev.dmaMask = mask;
}

/** kernel: dma_set_coherent_mask() */
export function dmaSetCoherentMask(dev: Device, mask: bigint): void {
  checkMask('dma_set_coherent_mask', mask);
  dev.coherentDmaMask = mask;
}

/** kernel: dma_set_mask_and_coherent() */
export function dmaSetMaskAndCoherent(dev: Device, mask: bigint): void {
  dmaSetMask(dev, mask);
  dmaSetCoherentMask(dev, mask);
}

/** Live DMA mappings of `dev`, lowest device address first: the addresses it may use now. */
export function dmaMappings(dev: Device): DmaMapping[] {
  return subsystemOf(dev).dmaDebug.mappings(dev);
}

/** True if a live mapping lets `dev` reach (part of) the 4 KiB frame holding `pa`. */
export function dmaPhysIsMapped(dev: Device, pa: number): boolean {
  return subsystemOf(dev).dmaDebug.physMapped(dev, pa);
}

/**
 * True if some mapping the kernel made for `dev` lets it reach (part of) the 4 KiB frame holding
 * `pa`: a DMA API mapping (`dmaPhysIsMapped`); an `iommuMap` into a domain the DMA API does not own
 * (an UNMANAGED domain) attached to its group, for the RID or a PASID; or a page of a process whose
 * address space is bound to it (SVA: the domain on a PASID shares the process's page tables, so what
 * the process has mapped is reachable, nothing else).
 */
export function devPhysIsReachable(dev: Device, pa: number): boolean {
  if (dmaPhysIsMapped(dev, pa)) return true;
  const group = devIommu(dev)?.group;
  if (!group) return false;
  if (group.domain && domainReaches(group.domain, pa)) return true;
  for (const entry of group.pasidArray.values()) {
    if (entry.domain !== group.domain && domainReaches(entry.domain, pa)) return true;
  }
  return false;
}

function domainReaches(domain: IommuDomain, pa: number): boolean {
  if (domain.type !== IOMMU_DOMAIN_SVA) return iommuDomainMapsPhys(domain, pa);
  const cookie = domain.cookie;
  if (cookie.type !== 'sva' || cookie.mm.state !== 'live') return false;
  const mm = cookie.mm;
  // The frame's owner says which process page it is; the process's page table says whether it is
  // still mapped there.
  const frame = Math.floor(pa / PAGE_SIZE) * PAGE_SIZE;
  const owner = mm.ctx.alloc.ownerOf(frame)?.owner;
  if (owner?.kind !== 'process' || owner.pid !== mm.pid || owner.va === undefined) return false;
  const at = mm.translate(owner.va);
  return at !== null && Math.floor(at / PAGE_SIZE) * PAGE_SIZE === frame;
}
