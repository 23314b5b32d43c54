/**
 * An ECAM window with PCI functions laid out as the PCI / PCIe specifications say: a type 0 or 1
 * header, a capability list (PCI Express, MSI), and extended capabilities ATS, PRI and PASID with
 * their register semantics (read-only fields, writable control bits, write-1-to-clear status).
 * Absent functions read as all ones.
 */
import type { FakePort } from '../core/fake-port.js';

export interface FakeFunctionSpec {
  vendor: number;
  device: number;
  classCode: number;
  revision?: number;
  bridge?: boolean;
  multifunction?: boolean;
  /** Without it the function is conventional PCI: no capabilities at all. */
  pcie?: boolean;
  ats?: { qdep: number; pageAligned?: boolean };
  pri?: { maxRequests: number; prgRespPasid?: boolean };
  pasid?: { width: number; exec?: boolean; priv?: boolean };
}

export const CAP_PCIE = 0x40;
export const CAP_MSI = 0x50;

export class FakeFunction {
  readonly space = new Uint32Array(1024);
  private readonly writable = new Uint32Array(1024);
  private readonly rw1c = new Uint32Array(1024);
  readonly ext: { ats?: number; pri?: number; pasid?: number } = {};
  /** Dword writes as they arrived (offset, value). */
  readonly writes: [number, number][] = [];

  constructor(spec: FakeFunctionSpec) {
    const hdrType = (spec.bridge ? 1 : 0) | (spec.multifunction ? 0x80 : 0);
    this.set(0x00, ((spec.device << 16) | spec.vendor) >>> 0);
    this.set(0x04, 0, 0x0000_0006, 0xf900_0000); // COMMAND: MEMORY, MASTER writable; STATUS errors RW1C
    this.set(0x08, ((spec.classCode << 8) | (spec.revision ?? 0)) >>> 0);
    this.set(0x0c, hdrType << 16);
    if (spec.bridge) this.set(0x18, 0, 0x00ff_ffff);
    if (!spec.pcie) return;
    this.space[1] = (this.space[1] | (0x0010 << 16)) >>> 0; // STATUS.CAP_LIST
    this.set(0x34, CAP_PCIE);
    this.set(CAP_PCIE, 0x0002_0010 | (CAP_MSI << 8)); // PCIe cap v2, next -> MSI
    this.set(CAP_MSI, 0x0000_0005);
    const ext: [number, (at: number) => void][] = [];
    if (spec.ats) {
      const a = spec.ats;
      ext.push([0x000f, (at) => this.set(at + 4, (a.qdep & 0x1f) | (a.pageAligned ? 0x20 : 0), 0x801f_0000)]);
    }
    if (spec.pri) {
      const p = spec.pri;
      ext.push([
        0x0013,
        (at) => {
          // CTRL (low half): ENABLE, RESET; STATUS (high half): RF, UPRGI RW1C; STOPPED, PASID read-only.
          this.set(at + 4, (0x0100 | (p.prgRespPasid ? 0x8000 : 0)) << 16, 0x0000_0003, 0x0003_0000);
          this.set(at + 8, p.maxRequests);
          this.set(at + 0xc, 0, 0xffff_ffff);
        },
      ]);
    }
    if (spec.pasid) {
      const s = spec.pasid;
      ext.push([0x001b, (at) => this.set(at + 4, ((s.width & 0x1f) << 8) | (s.exec ? 2 : 0) | (s.priv ? 4 : 0), 0x0007_0000)]);
    }
    let at = 0x100;
    ext.forEach(([id, fill], i) => {
      const next = i + 1 < ext.length ? at + 0x10 : 0;
      this.set(at, (id | (1 << 16) | (next << 20)) >>> 0);
      fill(at);
      if (id === 0x000f) this.ext.ats = at;
      if (id === 0x0013) this.ext.pri = at;
      if (id === 0x001b) this.ext.pasid = at;
      at += 0x10;
    });
  }

  private set(where: number, value: number, writable = 0, rw1c = 0): void {
    this.space[where >> 2] = value >>> 0;
    this.writable[where >> 2] = writable >>> 0;
    this.rw1c[where >> 2] = rw1c >>> 0;
  }

  read32(where: number): number {
    return this.space[where >> 2];
  }

  /** The 16-bit register at `where` (for assertions). */
  read16(where: number): number {
    return (this.space[where >> 2] >>> (8 * (where & 2))) & 0xffff;
  }

  write32(where: number, value: number): void {
    const i = where >> 2;
    this.writes.push([where, value >>> 0]);
    const old = this.space[i];
    let next = (old & ~this.writable[i]) | (value & this.writable[i]);
    next &= ~(value & this.rw1c[i]);
    this.space[i] = next >>> 0;
    const pri = this.ext.pri;
    if (pri !== undefined && where === pri + 4) {
      const enabled = (next & 1) !== 0;
      let status = next >>> 16;
      if (value & 2) status &= ~0x3; // PRI reset clears the error status
      status = enabled ? status & ~0x0100 : status | 0x0100; // STOPPED while disabled (no requests pending)
      this.space[i] = (((status << 16) | (next & 0xffff & ~2)) >>> 0);
    }
  }
}

export class FakeEcam {
  readonly functions = new Map<string, FakeFunction>();

  constructor(
    port: FakePort,
    readonly base: number,
    readonly busStart: number,
    readonly buses: number,
  ) {
    port.addRegion({
      base,
      size: buses << 20,
      read32: (off) => this.at(off)?.read32(off & 0xffc) ?? 0xffffffff,
      write32: (off, v) => this.at(off)?.write32(off & 0xffc, v),
    });
  }

  private key(bus: number, devfn: number): string {
    return `${bus}:${devfn}`;
  }

  private at(off: number): FakeFunction | undefined {
    return this.functions.get(this.key(this.busStart + Math.floor(off / (1 << 20)), (off >>> 12) & 0xff));
  }

  add(bus: number, slot: number, fn: number, spec: FakeFunctionSpec): FakeFunction {
    const f = new FakeFunction(spec);
    this.functions.set(this.key(bus, (slot << 3) | fn), f);
    return f;
  }
}
