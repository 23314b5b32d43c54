/**
 * A booted kernel for iommu core tests, without a machine model: RAM, a scheduler for virtual time,
 * a CPU port (with an optional fake ECAM window for PCI configuration reads), the driver core, the
 * page allocator and the iommu core.
 */
import { DriverCore } from '../../bus/driver-core.js';
import { PciConfig, PciEcamWindow } from '../../bus/pci/config.js';
import { PciDevice, type PciHostBridge } from '../../bus/pci/pci-device.js';
import { IoMem } from '../../bus/io.js';
import { PlatformDevice } from '../../bus/platform.js';
import { PCI_CAP_ID_EXP, PCI_EXT_CAP_ID_PASID, PCI_PASID_CAP, pciDevfn, pcieEcamOffset } from '../../bus/pci/regs.js';
import type { DeviceTree, DtNode } from '../../bus/of/tree.js';
import { IommuSubsystem } from '../../core/iommu.js';
import { PCI_ACS_CAP, PCI_ACS_CTRL, PCI_EXP_FLAGS, PCI_EXT_CAP_ID_ACS } from '../../core/pci-acs.js';
import type { CpuPort } from '../../hw/cpu-port.js';
import type { PhysicalMemory } from '../../hw/memory.js';
import type { Scheduler } from '../../hw/scheduler.js';
import type { Trace } from '../../hw/trace.js';
import { PageAllocator } from '../../mm/page-alloc.js';
import { MachineSlice } from '../lib/machine-slice.js';

export const RAM_BASE = 0x4000_0000;
export const RAM_SIZE = 0x1000_0000;
export const ECAM_BASE = 0x3000_0000;
const ECAM_SIZE = 0x100_0000;

/** Configuration space of fake PCI functions: ECAM offset → 32-bit value. */
export class FakeEcam {
  readonly regs = new Map<number, number>();

  read32(off: number): number {
    return this.regs.get(off) ?? 0xffff_ffff;
  }

  set16(bus: number, devfn: number, where: number, value: number): void {
    const off = pcieEcamOffset(bus, devfn, where & ~3);
    const shift = 8 * (where & 2);
    const old = this.regs.get(off) ?? 0;
    this.regs.set(off, ((old & ~(0xffff << shift)) | ((value & 0xffff) << shift)) >>> 0);
  }
}

export interface TestKernelOptions {
  dt?: DeviceTree | null;
  passthrough?: boolean;
  strict?: boolean;
  seed?: number;
}

export interface TestKernel {
  scheduler: Scheduler;
  memory: PhysicalMemory;
  trace: Trace;
  port: CpuPort;
  ecam: FakeEcam;
  core: DriverCore;
  alloc: PageAllocator;
  iommu: IommuSubsystem;
  /** Run `p` to completion, advancing virtual time as it waits. */
  run<T>(p: Promise<T>): Promise<T>;
}

export function testKernel(opts: TestKernelOptions = {}): TestKernel {
  const { scheduler, memory, trace } = new MachineSlice({ seed: opts.seed ?? 1, ram: [{ base: RAM_BASE, size: RAM_SIZE }] });
  const ecam = new FakeEcam();
  const inEcam = (pa: number, len: number): boolean => pa >= ECAM_BASE && pa + len <= ECAM_BASE + ECAM_SIZE;
  const port: CpuPort = {
    firmware: { dtb: null, acpi: new Map() },
    ram: memory,
    mmioPresent: inEcam,
    mmioRead32: (pa) => {
      if (!inEcam(pa, 4)) throw new Error(`no MMIO at 0x${pa.toString(16)}`);
      return ecam.read32(pa - ECAM_BASE);
    },
    mmioWrite32: (pa) => {
      if (!inEcam(pa, 4)) throw new Error(`no MMIO at 0x${pa.toString(16)}`);
    },
    mmioRead64: () => {
      throw new Error('no 64-bit MMIO in the test kernel');
    },
    mmioWrite64: () => {
      throw new Error('no 64-bit MMIO in the test kernel');
    },
    requestIrq: () => {
      throw new Error('no interrupts in the test kernel');
    },
    now: () => scheduler.now,
    delay: (ns) => scheduler.delay(ns),
    startTimer: (ns, fn, label) => scheduler.startTimer(ns, fn, label),
    trace,
  };
  const core = new DriverCore({ port, dt: opts.dt ?? null });
  const alloc = new PageAllocator({ memory: [{ base: RAM_BASE, size: RAM_SIZE }], kernelInstance: 0, ram: memory });
  const iommu = new IommuSubsystem({ core, pageAllocator: alloc, passthrough: opts.passthrough ?? false, strict: opts.strict ?? false });
  return { scheduler, memory, trace, port, ecam, core, alloc, iommu, run: (p) => scheduler.runUntilSettled(p) };
}

export interface FakePciFunction {
  /** Bus number (default 0) and the bridge the bus sits behind (default: the host bridge, a root bus). */
  bus?: number;
  behind?: PciDevice;
  slot: number;
  fn: number;
  multifunction?: boolean;
  /** PCIe device/port type (PCI_EXP_TYPE_*); default Root Complex Integrated Endpoint. */
  pcieType?: number;
  /** ACS capability and control registers; absent: no ACS capability. */
  acs?: { cap: number; ctrl: number };
  /** Max PASID Width; absent: no PASID capability. */
  pasidWidth?: number;
}

const EXP_CAP = 0x40;
const ACS_POS = 0x100;
const PASID_POS = 0x110;

/** A host bridge (a platform device for DT node `node`) for fake PCI functions on buses 0-15 of the fake ECAM. */
export async function fakePciHost(k: TestKernel, node: DtNode): Promise<PciHostBridge> {
  const hostDev = new PlatformDevice({ name: node.path, ofNode: node });
  await k.core.addDevice(hostDev, { probe: false });
  const window = new PciEcamWindow(new IoMem(k.port, ECAM_BASE, ECAM_SIZE), 0, 15);
  return { dev: hostDev, node, domain: 0, busStart: 0, busEnd: 15, window, preserveConfig: false, devices: [] };
}

/** A PCI function with the capabilities asked for (a bridge: any PCIe port type), registered (not probed) in the kernel. */
export async function fakePciFunction(k: TestKernel, host: PciHostBridge, f: FakePciFunction): Promise<PciDevice> {
  const devfn = pciDevfn(f.slot, f.fn);
  const bus = f.bus ?? 0;
  const caps = new Map<number, number>([[PCI_CAP_ID_EXP, EXP_CAP]]);
  const extCaps = new Map<number, number>();
  k.ecam.set16(bus, devfn, EXP_CAP + PCI_EXP_FLAGS, ((f.pcieType ?? 0x9) << 4) | 2);
  if (f.acs) {
    extCaps.set(PCI_EXT_CAP_ID_ACS, ACS_POS);
    k.ecam.set16(bus, devfn, ACS_POS + PCI_ACS_CAP, f.acs.cap);
    k.ecam.set16(bus, devfn, ACS_POS + PCI_ACS_CTRL, f.acs.ctrl);
  }
  if (f.pasidWidth !== undefined) {
    extCaps.set(PCI_EXT_CAP_ID_PASID, PASID_POS);
    k.ecam.set16(bus, devfn, PASID_POS + PCI_PASID_CAP, f.pasidWidth << 8);
  }
  const dev = new PciDevice({
    host,
    parent: f.behind ?? host.dev,
    cfg: new PciConfig(host.window, bus, devfn),
    busNumber: bus,
    devfn,
    vendor: 0x1af4,
    device: 0x1000,
    classCode: 0x020000,
    revision: 0,
    headerType: f.multifunction ? 0x80 : 0,
    multifunction: f.multifunction ?? false,
    caps,
    extCaps,
    dmaCoherent: true,
  });
  await k.core.addDevice(dev, { probe: false });
  host.devices.push(dev);
  return dev;
}
