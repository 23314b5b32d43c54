/**
 * A PCI Express root complex of the `pci-host-ecam-generic` kind: an ECAM window through which
 * software reaches every function's configuration space, and the requester-ID to stream-ID map
 * its firmware describes with `iommu-map` / `iommu-map-mask`.
 *
 * ECAM: the function at (bus, device, function) has its 4 KiB of configuration space at
 * ((bus - first bus) << 20 | device << 15 | function << 12) from the window base; a function that
 * does not exist reads all ones and ignores writes.
 *
 * RID to stream ID (kernel: of_map_id()): the RID is masked with `iommu-map-mask`, and the entry
 * whose [rid-base, rid-base + length) contains it gives stream ID = sid-base + (RID - rid-base) at
 * that entry's IOMMU. Without an `iommu-map` (or for a RID no entry covers) the function's traffic
 * has no IOMMU in its path and reaches memory directly, with its RID as stream ID.
 */
import type { MmioDevice } from '../mmio.js';
import type { PcieEndpoint } from './endpoint.js';
import { requesterId } from './endpoint.js';

export interface RidMapEntry {
  ridBase: number;
  /** DT path of the IOMMU. */
  iommu: string;
  sidBase: number;
  length: number;
}

export interface StreamMapping {
  /** DT path of the IOMMU in front of the RID, or null when none is. */
  iommu: string | null;
  streamId: number;
}

export interface PcieRootComplexConfig {
  /** DT path of the host bridge node. */
  name: string;
  /** First and last bus numbers (DT `bus-range`). */
  busStart: number;
  busEnd: number;
  iommuMap: readonly RidMapEntry[];
  iommuMapMask: number;
  /** The host bridge forwards ATS (DT `ats-supported`). */
  atsSupported: boolean;
}

/** ECAM offset of a function's configuration register (bus relative to the window's first bus). */
export function ecamOffset(busRel: number, device: number, fn: number, reg: number): number {
  return busRel * 0x10_0000 + ((device & 0x1f) << 15) + ((fn & 0x7) << 12) + (reg & 0xfff);
}

export class PcieRootComplex implements MmioDevice {
  readonly name: string;
  readonly busStart: number;
  readonly busEnd: number;
  readonly iommuMap: readonly RidMapEntry[];
  readonly iommuMapMask: number;
  readonly atsSupported: boolean;
  private readonly byRid = new Map<number, PcieEndpoint>();

  constructor(config: PcieRootComplexConfig) {
    if (config.busStart < 0 || config.busEnd > 255 || config.busStart > config.busEnd) {
      throw new RangeError(`PCIe host ${config.name}: bus range ${config.busStart}..${config.busEnd} is invalid`);
    }
    this.name = config.name;
    this.busStart = config.busStart;
    this.busEnd = config.busEnd;
    this.iommuMap = config.iommuMap.map((e) => ({ ...e }));
    this.iommuMapMask = config.iommuMapMask >>> 0;
    this.atsSupported = config.atsSupported;
  }

  /** Endpoints in RID order. */
  get endpoints(): PcieEndpoint[] {
    return [...this.byRid.values()].sort((a, b) => a.rid - b.rid);
  }

  endpoint(bus: number, device: number, fn: number): PcieEndpoint | undefined {
    return this.byRid.get(requesterId(bus, device, fn));
  }

  /** Where a RID's transactions go (kernel: of_map_id()). */
  streamFor(rid: number): StreamMapping {
    if (this.iommuMap.length === 0) return { iommu: null, streamId: rid };
    const masked = (rid & this.iommuMapMask) >>> 0;
    for (const e of this.iommuMap) {
      if (masked >= e.ridBase && masked - e.ridBase < e.length) {
        return { iommu: e.iommu, streamId: e.sidBase + (masked - e.ridBase) };
      }
    }
    return { iommu: null, streamId: rid };
  }

  /** Attach a function below this host. */
  addEndpoint(ep: PcieEndpoint): void {
    if (ep.bus < this.busStart || ep.bus > this.busEnd) {
      throw new RangeError(`PCIe host ${this.name}: ${ep.name} is on bus ${ep.bus}, outside ${this.busStart}..${this.busEnd}`);
    }
    const other = this.byRid.get(ep.rid);
    if (other) throw new Error(`PCIe host ${this.name}: ${ep.name} and ${other.name} both claim ${ep.bus}:${ep.device}.${ep.fn}`);
    this.byRid.set(ep.rid, ep);
    const siblings = [...this.byRid.values()].filter((e) => e.bus === ep.bus && e.device === ep.device);
    for (const s of siblings) s.setMultiFunction(siblings.length > 1);
  }

  read32(offset: number): number {
    const ep = this.decode(offset);
    return ep ? ep.configRead32(offset & 0xfff) : 0xffff_ffff;
  }

  peek32(offset: number): number {
    const ep = this.decode(offset);
    return ep ? ep.config.get32(offset & 0xffc) : 0xffff_ffff;
  }

  write32(offset: number, value: number): void {
    this.decode(offset)?.configWrite32(offset & 0xfff, value);
  }

  private decode(offset: number): PcieEndpoint | undefined {
    const bus = this.busStart + Math.floor(offset / 0x10_0000);
    if (bus > this.busEnd) return undefined;
    return this.endpoint(bus, (offset >>> 15) & 0x1f, (offset >>> 12) & 0x7);
  }
}
