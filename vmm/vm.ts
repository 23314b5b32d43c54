/**
 * A virtual machine as host user space runs it (the VMM, in the role QEMU plays with KVM and
 * iommufd): guest RAM, a generated guest Device Tree, trapped and passed-through MMIO, injected
 * interrupts, and the `CpuPort` a guest kernel boots on (`bootKernel({ cpu: vm.port })`).
 *
 * - Guest RAM: host frames (from `host.memory`, in 2 MiB chunks) at guest physical addresses
 *   (IPAs) from `ramIpa`; the same frames are mapped IPA → PA in an IOAS, whose nest-parent HWPT
 *   is the stage 2 every assigned device's DMA goes through. The guest's CPU reaches them through
 *   the port's `ram`, translated chunk by chunk.
 * - MMIO: each region either traps (a handler the VMM runs: the vSMMUv3) or passes through to host
 *   MMIO (an assigned device's registers at the same address; with `cmdqv`, the host VINTF page0 at
 *   the guest CMDQV's VINTF0 page0, vmm/vcmdqv.ts). Anything else is absent (a guest oops).
 * - Interrupts: the guest's GIC is virtual: handlers attach to it by specifier; the VMM injects SPIs
 *   (after `trapCosts.irqInjectNs`). An assigned device's host SPI is forwarded to the same guest SPI.
 * - iommufd: the assigned devices are bound (taken from their host drivers), get vDEVICEs with their
 *   virtual StreamIDs on one ARM_SMMUV3 vIOMMU over the nest-parent HWPT, an abort and a bypass
 *   nested HWPT (the vSMMU's GBPA states) and a vEVENTQ whose records go to the vSMMU's event queue.
 * - Time is the host's virtual time; the trace stream is the host's.
 *
 * `destroy()` undoes everything in order (iommufd objects, so the devices return to the host's
 * blocking then default domain with the VMID freed; forwarded interrupts; guest RAM).
 */
import type { Device } from '../bus/device.js';
import { KernelError } from '../bus/errno.js';
import { rawSmpProcessorId } from '../bus/smp.js';
import { DtBuilder, reg, type DtProps } from '../bus/of/dt-builder.js';
import { writeFdt } from '../bus/of/fdt.js';
import { madtGicPath } from '../bus/acpi/acpi-boot.js';
import type { BootFirmware, BootMemoryMap, CpuPort, CpuTimer, IrqHandler, RamAccess } from '../hw/cpu-port.js';
import {
  IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_DATA_ARM_SMMUV3,
  IOMMU_VEVENTQ_TYPE_ARM_SMMUV3,
  IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV,
  IOMMU_VIOMMU_TYPE_ARM_SMMUV3,
  IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV,
  IommufdCtx,
} from '../core/iommufd.js';
import { buildGuestAcpi } from './guest-acpi.js';
import { VCmdqv, VCMDQV_PAGE0, VCMDQV_PAGE_SIZE, VCMDQV_REGION_SIZE } from './vcmdqv.js';
import { DEFAULT_TRAP_COSTS, type TrapCosts } from './trap-costs.js';
import { VSmmuV3, VSMMU_REGION_SIZE } from './vsmmu-v3.js';

/** PCIe PRI extended capability (PCI Express Base Specification §7.8.10): ID, Control/Status bits. */
const PCI_EXT_CAP_ID_PRI = 0x13;
const PCI_PRI_CTRL_ENABLE = 1 << 0;
const PCI_PRI_STATUS_STOPPED = 1 << 8;
/** Status bits that are the function's (PRG Response PASID Required). */
const PCI_PRI_STATUS_RO = 1 << 15;

/** Guest RAM comes in chunks of this size (host frames are contiguous inside a chunk). */
export const GUEST_RAM_CHUNK = 0x20_0000;

/** Host memory for guest RAM (the VMM's pinned pages): `alloc` returns a chunk's host PA. */
export interface HostMemory {
  alloc(bytes: number): number;
  free(pa: number, bytes: number): void;
}

/** A host device given to the guest. */
export interface AssignedDevice {
  /** The host's device (it is unbound from its host driver). */
  readonly dev: Device;
  /** The StreamID the guest sees. */
  readonly vsid: number;
  readonly compatible: string;
  /** Host MMIO regions passed through at the same guest address. */
  readonly mmio: readonly { base: number; size: number }[];
  /** Host GIC SPIs forwarded to the same guest SPI (specifier cells: type, number, flags). */
  readonly irqs: readonly (readonly number[])[];
  /** More properties for the guest's node (dma-can-stall, pasid-num-bits). */
  readonly props?: DtProps;
  /** The device stalls: its nested HWPTs report faults to the VM's fault queue. */
  readonly stall?: boolean;
}

/** A PCIe function given to the guest, at the same bus/device/function as on the host. */
export interface AssignedPciFunction {
  readonly dev: Device;
  readonly bus: number;
  /** device << 3 | function */
  readonly devfn: number;
  /** It uses PRI: its nested HWPTs report page requests to the VM's fault queue. */
  readonly pri?: boolean;
}

/**
 * A `virt`-like PCIe host for assigned functions: the guest's ECAM window traps; the assigned
 * functions' configuration space is passed to the host's (at the same offset), every other function
 * reads as absent (all ones). RID → StreamID is the identity (`iommu-map`), so a function's virtual
 * StreamID is its RID.
 */
export interface VmPciHost {
  readonly ecamBase: number;
  readonly ecamSize: number;
  readonly busRange: readonly [number, number];
  readonly functions: readonly AssignedPciFunction[];
}

export interface VmOptions {
  name?: string;
  /** The host: its CPU port (MMIO pass-through, interrupt lines, time), its GIC's path, memory. */
  host: { port: CpuPort; gicPath: string; memory: HostMemory };
  /** Guest RAM base IPA (default 0x4000_0000) and size (default 32 MiB, a multiple of 2 MiB). */
  ramIpa?: number;
  ramSize?: number;
  devices: readonly AssignedDevice[];
  /** Assigned PCIe functions behind a guest PCIe host. */
  pci?: VmPciHost;
  trapCosts?: Partial<TrapCosts>;
  bootargs?: string;
  /**
   * Give the guest a Grace CMDQV: the vIOMMU is of type TEGRA241_CMDQV (a host VINTF for this VM),
   * the guest DT gains the CMDQV node its SMMU links to, and the VINTF page0 is passed through.
   * Needs a host SMMU with a CMDQV (EOPNOTSUPP otherwise).
   */
  cmdqv?: boolean;
  /**
   * How the guest's firmware describes it: 'dt' (default), a Device Tree; 'acpi', ACPI tables
   * (vmm/guest-acpi.ts: MADT, IORT, DSDT with the CMDQV as NVDA200C whose _UID is the vSMMUv3's
   * IORT node Identifier, MCFG with PCIe) and a memory map, as a Grace guest boots. ACPI carries no
   * command line: with 'acpi', `bootargs` is for the boot loader to pass (`bootKernel`'s `cmdline`).
   */
  firmware?: 'dt' | 'acpi';
}

/** Where the guest finds its vSMMU and GIC (the host virt machine's layout). */
export const GUEST_LAYOUT = {
  gic: 0x0800_0000,
  vsmmu: 0x0905_0000,
  /** vSMMU SPIs: eventq, priq, cmdq-sync, gerror. */
  vsmmuSpis: [74, 75, 76, 77],
  /** The guest CMDQV (with `cmdqv`) and its error SPI. */
  cmdqv: 0x0910_0000,
  cmdqvSpi: 78,
} as const;

interface MmioRegion {
  readonly base: number;
  readonly size: number;
  read32(pa: number): number;
  write32(pa: number, v: number): void;
  read64?(pa: number): bigint;
  write64?(pa: number, v: bigint): void;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

export class Vm {
  readonly name: string;
  readonly costs: TrapCosts;
  readonly iommufd = new IommufdCtx();
  readonly port: CpuPort;
  readonly ramIpa: number;
  readonly ramSize: number;
  private readonly chunks: number[] = [];
  private readonly regions: MmioRegion[] = [];
  private readonly irqHandlers = new Map<number, IrqHandler[]>();
  private readonly hostIrqDetach: (() => void)[] = [];
  private dtb: Uint8Array | null = null;
  /** With `firmware: 'acpi'`: the tables and memory map the guest boots from. */
  private acpi: { tables: Map<string, Uint8Array>; memory: BootMemoryMap } | null = null;
  /**
   * Per vCPU (the guest kernel thread's CPU, bus/smp.ts): virtual time it owes for exits it took
   * since it last waited. A trapped access returns at once (the port is synchronous), so its cost is
   * paid at that vCPU's next delay, and its `now()` already includes it; one vCPU never pays
   * another's exits.
   */
  private readonly exitDebtNs: number[] = [0];
  private destroyed = false;
  vsmmu!: VSmmuV3;
  /** The guest's CMDQV (with `cmdqv`), else null. */
  vcmdqv: VCmdqv | null = null;
  /** iommufd IDs the VMM holds. */
  readonly ids = { ioas: 0, s2: 0, viommu: 0, veventq: 0, cmdqvVeventq: 0, fault: 0, abort: 0, bypass: 0, devs: new Map<number, number>() };
  /** Host physical address of the VINTF page0 the vIOMMU's mmap gave (with `cmdqv`). */
  vintfPage0Phys = 0;
  /** Exits taken (trapped accesses) and interrupts injected. */
  readonly stats = { mmioTraps: 0, passthrough: 0, injected: 0 };

  private constructor(readonly opts: VmOptions) {
    this.name = opts.name ?? 'vm0';
    this.costs = { ...DEFAULT_TRAP_COSTS, ...opts.trapCosts };
    this.ramIpa = opts.ramIpa ?? 0x4000_0000;
    this.ramSize = opts.ramSize ?? 0x200_0000;
    if (this.ramSize <= 0 || this.ramSize % GUEST_RAM_CHUNK !== 0) throw new KernelError('EINVAL', `${this.name}: guest RAM of ${hex(this.ramSize)} bytes is not a multiple of 2 MiB`);
    this.port = this.makePort();
  }

  /** Build the VM: guest RAM, iommufd objects, the vSMMU, the guest DT. */
  static async create(opts: VmOptions): Promise<Vm> {
    const vm = new Vm(opts);
    try {
      await vm.setup();
    } catch (e) {
      await vm.destroy();
      throw e;
    }
    return vm;
  }

  private async setup(): Promise<void> {
    const ctx = this.iommufd;
    const devices: { dev: Device; vsid: number; stall?: boolean }[] = [...this.opts.devices];
    for (const f of this.opts.pci?.functions ?? []) devices.push({ dev: f.dev, vsid: (f.bus << 8) | f.devfn, stall: f.pri ?? false });
    if (devices.length === 0) throw new KernelError('EINVAL', `${this.name}: a VM with a vSMMU needs at least one assigned device`);
    for (const a of devices) {
      if (this.ids.devs.has(a.vsid)) throw new KernelError('EEXIST', `${this.name}: virtual StreamID 0x${a.vsid.toString(16)} is given twice`);
      this.ids.devs.set(a.vsid, await ctx.bindDevice(a.dev));
    }
    const firstDev = this.ids.devs.get(devices[0].vsid)!;
    this.ids.ioas = ctx.ioasAlloc();
    this.ids.s2 = await ctx.hwptAlloc({ devId: firstDev, ptId: this.ids.ioas, flags: IOMMU_HWPT_ALLOC_NEST_PARENT });
    for (let off = 0; off < this.ramSize; off += GUEST_RAM_CHUNK) {
      const pa = this.opts.host.memory.alloc(GUEST_RAM_CHUNK);
      this.chunks.push(pa);
      await ctx.ioasMap(this.ids.ioas, this.ramIpa + off, pa, GUEST_RAM_CHUNK);
    }
    let vintfMmap: { offset: number; length: number } | null = null;
    if (this.opts.cmdqv) {
      // (kernel: struct iommu_viommu_tegra241_cmdqv — the page0 mmap offset and length come back.)
      const data = new Uint32Array(4);
      this.ids.viommu = await ctx.viommuAlloc(firstDev, this.ids.s2, IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV, data);
      vintfMmap = { offset: data[0] + data[1] * 0x1_0000_0000, length: data[2] + data[3] * 0x1_0000_0000 };
    } else {
      this.ids.viommu = await ctx.viommuAlloc(firstDev, this.ids.s2, IOMMU_VIOMMU_TYPE_ARM_SMMUV3);
    }
    for (const a of devices) ctx.vdeviceAlloc(this.ids.viommu, this.ids.devs.get(a.vsid)!, a.vsid);
    const vste = (cfg: number): Uint32Array => Uint32Array.of(1 | (cfg << 1), 0, 0, 0);
    this.ids.abort = await ctx.hwptAlloc({ devId: firstDev, ptId: this.ids.viommu, data: { type: IOMMU_HWPT_DATA_ARM_SMMUV3, words: vste(0) } });
    this.ids.bypass = await ctx.hwptAlloc({ devId: firstDev, ptId: this.ids.viommu, data: { type: IOMMU_HWPT_DATA_ARM_SMMUV3, words: vste(4) } });
    this.ids.veventq = ctx.veventqAlloc(this.ids.viommu, IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, 64);
    this.ids.fault = ctx.faultQueueAlloc();

    const host = this.opts.host;
    const info = ctx.getHwInfo(firstDev);
    this.vsmmu = new VSmmuV3(
      {
        iommufd: ctx,
        viommuId: this.ids.viommu,
        faultId: this.ids.fault,
        abortHwpt: this.ids.abort,
        bypassHwpt: this.ids.bypass,
        ram: this.port.ram,
        now: () => host.port.now(),
        delay: (ns) => host.port.delay(ns),
        inject: (line) => this.inject(GUEST_LAYOUT.vsmmuSpis[['eventq', 'priq', 'cmdq-sync', 'gerror'].indexOf(line)]),
        costs: this.costs,
        log: (msg) => host.port.trace.active && host.port.trace.emit({ kind: 'log', time: host.port.now(), track: `${this.name} vSMMU`, level: 'warn', message: msg }),
      },
      info.data,
    );
    for (const a of devices) {
      const devId = this.ids.devs.get(a.vsid)!;
      // Until the guest enables its vSMMU, GBPA (abort at reset) decides.
      await ctx.attach(devId, this.ids.abort);
      this.vsmmu.addDevice(a.vsid, devId, this.ids.abort, a.stall ?? false);
    }
    const vsidOf = new Map([...this.ids.devs].map(([vsid, devId]) => [devId, vsid]));
    const pciVsids = new Set((this.opts.pci?.functions ?? []).map((f) => (f.bus << 8) | f.devfn));
    const fault = ctx.fault(this.ids.fault);
    fault.onFault = () => {
      host.port.startTimer(this.costs.irqInjectNs, () => {
        for (let r = fault.read(); r; r = fault.read()) {
          const vsid = vsidOf.get(r.devId)!;
          if (pciVsids.has(vsid)) this.vsmmu.deliverPageRequest(r, vsid);
          else this.vsmmu.deliverStall(r, vsid);
        }
      });
    };
    const veventq = ctx.veventq(this.ids.veventq);
    veventq.onEvent = () => {
      // The VMM reads its vEVENTQ fd from its main loop: after the injection latency.
      host.port.startTimer(this.costs.irqInjectNs, () => {
        for (let ev = veventq.read(); ev; ev = veventq.read()) this.vsmmu.deliver(ev);
      });
    };
    const vsmmu = this.vsmmu;
    this.addTrap(GUEST_LAYOUT.vsmmu, VSMMU_REGION_SIZE, {
      read32: (off) => vsmmu.read32(off),
      write32: (off, v) => vsmmu.write32(off, v),
    });
    if (vintfMmap) this.setupCmdqv(firstDev, vintfMmap);
    const pci = this.opts.pci;
    if (pci) {
      const assigned = new Set(pci.functions.map((f) => (f.bus << 8) | f.devfn));
      const hp = host.port;
      // The host kernel owns PRI of an assigned function (it answers page requests); the guest gets
      // a shadow of the PRI Control/Status and Allocation registers, as VFIO virtualizes them.
      const priShadow = new Map<number, { cap: number; ctrl: number; alloc: number }>();
      for (const f of pci.functions) {
        const cfg = pci.ecamBase + (((f.bus << 8) | f.devfn) << 12);
        for (let off = 0x100, n = 0; off !== 0 && n < 64; n++) {
          const hdr = hp.mmioRead32(cfg + off);
          if ((hdr & 0xffff) === PCI_EXT_CAP_ID_PRI) {
            priShadow.set((f.bus << 8) | f.devfn, { cap: off, ctrl: 0, alloc: 0 });
            break;
          }
          off = (hdr >>> 20) & 0xffc;
        }
      }
      this.addTrap(pci.ecamBase, pci.ecamSize, {
        // ECAM: bus [27:20], devfn [19:12], register [11:0].
        read32: (off) => {
          const fn = off >>> 12;
          if (!assigned.has(fn)) return 0xffff_ffff;
          const pri = priShadow.get(fn);
          const reg = off & 0xffc;
          if (pri && reg === pri.cap + 4) {
            // Status keeps the host's read-only bits; Stopped follows the guest's Enable.
            const status = (hp.mmioRead32(pci.ecamBase + off) >>> 16) & PCI_PRI_STATUS_RO;
            return ((pri.ctrl & PCI_PRI_CTRL_ENABLE) | ((status | ((pri.ctrl & PCI_PRI_CTRL_ENABLE) === 0 ? PCI_PRI_STATUS_STOPPED : 0)) << 16)) >>> 0;
          }
          if (pri && reg === pri.cap + 0xc) return pri.alloc;
          return hp.mmioRead32(pci.ecamBase + off);
        },
        write32: (off, v) => {
          const fn = off >>> 12;
          if (!assigned.has(fn)) return;
          const pri = priShadow.get(fn);
          const reg = off & 0xffc;
          if (pri && reg === pri.cap + 4) {
            pri.ctrl = v & PCI_PRI_CTRL_ENABLE;
            return;
          }
          if (pri && reg === pri.cap + 0xc) {
            pri.alloc = v >>> 0;
            return;
          }
          hp.mmioWrite32(pci.ecamBase + off, v);
        },
      });
    }
    for (const a of this.opts.devices) {
      for (const r of a.mmio) this.addPassthrough(r.base, r.size);
      for (const spec of a.irqs) {
        this.hostIrqDetach.push(host.port.requestIrq(host.gicPath, spec, () => this.inject(spec[1])));
      }
    }
    if (this.opts.firmware === 'acpi') this.acpi = this.buildAcpi();
    else this.dtb = writeFdt(this.buildDeviceTree());
  }

  /** The guest ACPI tables (vmm/guest-acpi.ts) for the same layout as the Device Tree. */
  private buildAcpi(): { tables: Map<string, Uint8Array>; memory: BootMemoryMap } {
    const num = (v: unknown): number => (typeof v === 'number' ? v : Array.isArray(v) && typeof v[0] === 'number' ? v[0] : 0);
    const { tables, memory } = buildGuestAcpi({
      gic: { dist: GUEST_LAYOUT.gic, cpu: GUEST_LAYOUT.gic + 0x1_0000 },
      vsmmu: { base: GUEST_LAYOUT.vsmmu, spis: GUEST_LAYOUT.vsmmuSpis },
      cmdqv: this.vcmdqv ? { base: GUEST_LAYOUT.cmdqv, size: VCMDQV_REGION_SIZE, spi: GUEST_LAYOUT.cmdqvSpi } : null,
      ram: { base: this.ramIpa, size: this.ramSize },
      devices: this.opts.devices.map((a) => ({
        compatible: a.compatible,
        vsid: a.vsid,
        mmio: a.mmio,
        irqs: a.irqs,
        stall: a.props?.['dma-can-stall'] === true,
        pasidBits: num(a.props?.['pasid-num-bits']),
      })),
      pci: this.opts.pci ? { ecamBase: this.opts.pci.ecamBase, busRange: this.opts.pci.busRange } : null,
    });
    return { tables, memory: { ram: memory.ram, reserved: memory.reserved ?? [] } };
  }

  /** The path under which the guest kernel names its GIC (its firmware decides). */
  private get gicPath(): string {
    return this.opts.firmware === 'acpi' ? madtGicPath(GUEST_LAYOUT.gic) : guestGicPath();
  }

  /** The guest CMDQV: its trapped pages, the VINTF page0 mmap, the TEGRA241_CMDQV vEVENTQ. */
  private setupCmdqv(firstDev: number, mmap: { offset: number; length: number }): void {
    const ctx = this.iommufd;
    const host = this.opts.host;
    const info = ctx.getHwInfo(firstDev, IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV).data;
    const params = { version: info[1] & 0xff, log2vcmdqs: (info[1] >>> 8) & 0xff, log2vsids: (info[1] >>> 16) & 0xff };
    if (params.version !== 1 || params.log2vcmdqs < 1 || params.log2vsids < 4) {
      throw new KernelError('EOPNOTSUPP', `${this.name}: host CMDQV v${params.version} with 2^${params.log2vcmdqs} VCMDQs and 2^${params.log2vsids} SID pairs per VINTF cannot back a guest CMDQV`);
    }
    const page0Phys = ctx.mmap(mmap.offset, mmap.length);
    this.vintfPage0Phys = page0Phys;
    this.ids.cmdqvVeventq = ctx.veventqAlloc(this.ids.viommu, IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV, 64);
    const base = GUEST_LAYOUT.cmdqv;
    const page0 = base + VCMDQV_PAGE0;
    let vc: VCmdqv;
    const trapPage0 = (): void =>
      this.addTrap(page0, VCMDQV_PAGE_SIZE, {
        read32: (off) => vc.read32(VCMDQV_PAGE0 + off),
        write32: (off, v) => vc.write32(VCMDQV_PAGE0 + off, v),
      });
    vc = new VCmdqv(
      {
        iommufd: ctx,
        viommuId: this.ids.viommu,
        readPage0: (off) => host.port.mmioRead32(page0Phys + off),
        mapPage0: (on) => {
          if (this.destroyed) return;
          this.removeRegion(page0);
          if (on) this.addPassthrough(page0, VCMDQV_PAGE_SIZE, page0Phys);
          else trapPage0();
        },
        inject: () => this.inject(GUEST_LAYOUT.cmdqvSpi),
        log: (msg) => host.port.trace.active && host.port.trace.emit({ kind: 'log', time: host.port.now(), track: `${this.name} vCMDQV`, level: 'warn', message: msg }),
      },
      params,
    );
    this.vcmdqv = vc;
    const trap = { read32: (off: number) => vc.read32(off), write32: (off: number, v: number) => vc.write32(off, v) };
    this.addTrap(base, VCMDQV_PAGE0, trap);
    trapPage0();
    this.addTrap(page0 + VCMDQV_PAGE_SIZE, VCMDQV_REGION_SIZE - VCMDQV_PAGE0 - VCMDQV_PAGE_SIZE, {
      read32: (off) => vc.read32(VCMDQV_PAGE0 + VCMDQV_PAGE_SIZE + off),
      write32: (off, v) => vc.write32(VCMDQV_PAGE0 + VCMDQV_PAGE_SIZE + off, v),
    });
    const q = ctx.veventq(this.ids.cmdqvVeventq);
    q.onEvent = () => {
      // The VMM reads its vEVENTQ fd from its main loop.
      host.port.startTimer(this.costs.irqInjectNs, () => {
        for (let ev = q.read(); ev; ev = q.read()) vc.deliver(ev);
      });
    };
  }

  // ---- MMIO ----

  /** The running vCPU owes `ns` of exit time. */
  private owe(ns: number): void {
    const cpu = rawSmpProcessorId();
    while (this.exitDebtNs.length <= cpu) this.exitDebtNs.push(0);
    this.exitDebtNs[cpu] += ns;
  }

  /** A region whose accesses the VMM handles (offsets from `base`). */
  addTrap(base: number, size: number, h: { read32(off: number): number; write32(off: number, v: number): void }): void {
    this.addRegion({
      base,
      size,
      read32: (pa) => {
        this.stats.mmioTraps++;
        this.owe(this.costs.vmExitNs);
        return h.read32(pa - base);
      },
      write32: (pa, v) => {
        this.stats.mmioTraps++;
        this.owe(this.costs.vmExitNs);
        h.write32(pa - base, v);
      },
    });
  }

  /** Host MMIO [base, base+size) at the same guest address, without exits (the stage 2 maps it). */
  addPassthrough(base: number, size: number, hostBase = base): void {
    const hp = this.opts.host.port;
    if (!hp.mmioPresent(hostBase, size)) throw new KernelError('EINVAL', `${this.name}: no host MMIO at ${hex(hostBase)}+${hex(size)} to pass through`);
    const d = hostBase - base;
    this.addRegion({
      base,
      size,
      read32: (pa) => {
        this.stats.passthrough++;
        return hp.mmioRead32(pa + d);
      },
      write32: (pa, v) => {
        this.stats.passthrough++;
        hp.mmioWrite32(pa + d, v);
      },
      read64: (pa) => hp.mmioRead64(pa + d),
      write64: (pa, v) => hp.mmioWrite64(pa + d, v),
    });
  }

  /** Stop passing [base, …) through (a VINTF page unmapped when the guest disables it). */
  removeRegion(base: number): void {
    const i = this.regions.findIndex((r) => r.base === base);
    if (i >= 0) this.regions.splice(i, 1);
  }

  private addRegion(r: MmioRegion): void {
    for (const o of this.regions) {
      if (r.base < o.base + o.size && o.base < r.base + r.size) throw new KernelError('EEXIST', `${this.name}: MMIO ${hex(r.base)}+${hex(r.size)} overlaps ${hex(o.base)}`);
    }
    this.regions.push(r);
  }

  private region(pa: number, len: number): MmioRegion {
    for (const r of this.regions) if (pa >= r.base && pa + len <= r.base + r.size) return r;
    throw new Error(`${this.name}: guest MMIO access at ${hex(pa)} hits no device`);
  }

  // ---- interrupts ----

  /** Raise guest SPI `spi` (after the injection latency). */
  inject(spi: number): void {
    this.stats.injected++;
    this.opts.host.port.startTimer(this.costs.irqInjectNs, () => {
      for (const h of (this.irqHandlers.get(spi) ?? []).slice()) h();
    });
  }

  // ---- guest RAM ----

  /** Host PA of guest physical `ipa`; a hole throws (a guest oops). */
  ipaToPa(ipa: number): number {
    const off = ipa - this.ramIpa;
    if (!(off >= 0 && off < this.ramSize)) throw new Error(`${this.name}: guest physical address ${hex(ipa)} is not RAM`);
    return this.chunks[Math.floor(off / GUEST_RAM_CHUNK)] + (off % GUEST_RAM_CHUNK);
  }

  private makeRam(): RamAccess {
    const hostRam = this.opts.host.port.ram;
    const vm = this;
    /** Run `fn` on each piece of [ipa, ipa+len) that stays inside one chunk. */
    const pieces = (ipa: number, len: number, fn: (pa: number, done: number, n: number) => void): void => {
      let done = 0;
      while (done < len) {
        const here = ipa + done;
        const n = Math.min(len - done, GUEST_RAM_CHUNK - ((here - vm.ramIpa) % GUEST_RAM_CHUNK));
        fn(vm.ipaToPa(here), done, n);
        done += n;
      }
    };
    return {
      read8: (a) => hostRam.read8(vm.ipaToPa(a)),
      write8: (a, v) => hostRam.write8(vm.ipaToPa(a), v),
      read16: (a) => hostRam.read16(vm.ipaToPa(a)),
      write16: (a, v) => hostRam.write16(vm.ipaToPa(a), v),
      read32: (a) => hostRam.read32(vm.ipaToPa(a)),
      write32: (a, v) => hostRam.write32(vm.ipaToPa(a), v),
      read64: (a) => hostRam.read64(vm.ipaToPa(a)),
      write64: (a, v) => hostRam.write64(vm.ipaToPa(a), v),
      read: (a, len) => {
        const out = new Uint8Array(len);
        pieces(a, len, (pa, done, n) => out.set(hostRam.read(pa, n), done));
        return out;
      },
      write: (a, data) => pieces(a, data.length, (pa, done, n) => hostRam.write(pa, data.subarray(done, done + n))),
      fill: (a, len, byte) => pieces(a, len, (pa, _done, n) => hostRam.fill(pa, n, byte)),
      // Chunks are page-aligned in both spaces: the guest frame is the host frame its address lands in.
      words32: (a) => hostRam.words32(vm.ipaToPa(a)),
    };
  }

  // ---- the port ----

  private makePort(): CpuPort {
    const vm = this;
    const host = this.opts.host;
    const firmware: BootFirmware = {
      get dtb() {
        return vm.dtb;
      },
      get acpi() {
        return vm.acpi?.tables ?? new Map<string, Uint8Array>();
      },
      get memoryMap() {
        return vm.acpi?.memory ?? null;
      },
    };
    return {
      firmware,
      ram: this.makeRam(),
      get trace() {
        return host.port.trace;
      },
      mmioPresent: (pa, len) => {
        // Adjacent regions count as one window (the CMDQV aperture is trapped and passed-through pages).
        for (let at = pa; at < pa + len; ) {
          const r = this.regions.find((x) => at >= x.base && at < x.base + x.size);
          if (!r) return false;
          at = r.base + r.size;
        }
        return len > 0 || this.regions.some((r) => pa >= r.base && pa < r.base + r.size);
      },
      mmioRead32: (pa) => this.region(pa, 4).read32(pa),
      mmioWrite32: (pa, v) => this.region(pa, 4).write32(pa, v),
      mmioRead64: (pa) => {
        const r = this.region(pa, 8);
        if (r.read64) return r.read64(pa);
        const l = r.read32(pa);
        return (BigInt(r.read32(pa + 4)) << 32n) | BigInt(l);
      },
      mmioWrite64: (pa, v) => {
        const r = this.region(pa, 8);
        if (r.write64) return r.write64(pa, v);
        r.write32(pa, Number(v & 0xffff_ffffn));
        r.write32(pa + 4, Number(v >> 32n));
      },
      requestIrq: (controller, specifier, handler) => {
        if (controller !== this.gicPath) throw new Error(`${this.name}: requestIrq: no interrupt controller at ${controller}`);
        if (specifier.length !== 3 || specifier[0] !== 0) throw new Error(`${this.name}: requestIrq: only SPIs <0 n flags> exist in the guest, not <${specifier.join(' ')}>`);
        const spi = specifier[1];
        const list = this.irqHandlers.get(spi) ?? [];
        list.push(handler);
        this.irqHandlers.set(spi, list);
        return () => {
          const i = list.indexOf(handler);
          if (i >= 0) list.splice(i, 1);
        };
      },
      // A vCPU is a physical CPU: its memory operations cost what the host's do.
      costs: host.port.costs,
      now: () => host.port.now() + (this.exitDebtNs[rawSmpProcessorId()] ?? 0),
      delay: (ns) => {
        const cpu = rawSmpProcessorId();
        const owed = this.exitDebtNs[cpu] ?? 0;
        if (owed !== 0) this.exitDebtNs[cpu] = 0;
        return host.port.delay(ns + owed);
      },
      startTimer: (ns, fn): CpuTimer => host.port.startTimer(ns, fn),
    };
  }

  // ---- the guest's firmware ----

  /** The guest DT: memory, GIC, the vSMMU, the assigned devices with their virtual StreamIDs. */
  buildDeviceTree() {
    const b = new DtBuilder({ compatible: ['iommu-sim,vm'], model: `iommu-sim guest ${this.name}`, '#address-cells': 2, '#size-cells': 2 });
    b.node('/chosen', this.opts.bootargs ? { bootargs: this.opts.bootargs } : {});
    b.node(`/memory@${this.ramIpa.toString(16)}`, { device_type: 'memory', reg: reg([this.ramIpa, this.ramSize]) });
    const gic = b.node(guestGicPath(), {
      compatible: ['arm,cortex-a15-gic'],
      'interrupt-controller': true,
      '#interrupt-cells': 3,
      reg: reg([GUEST_LAYOUT.gic, 0x1_0000], [GUEST_LAYOUT.gic + 0x1_0000, 0x1_0000]),
    });
    b.root.set({ 'interrupt-parent': gic });
    // The CMDQV binding on main: the SMMU node names its CMDQV (`nvidia,cmdqv`); one VINTF's aperture.
    const cmdqv = this.vcmdqv
      ? b.node(`/cmdqv@${GUEST_LAYOUT.cmdqv.toString(16)}`, {
          compatible: 'nvidia,tegra241-cmdqv',
          reg: reg([GUEST_LAYOUT.cmdqv, VCMDQV_REGION_SIZE]),
          interrupts: [0, GUEST_LAYOUT.cmdqvSpi, 1],
        })
      : null;
    const vsmmu = b.node(`/iommu@${GUEST_LAYOUT.vsmmu.toString(16)}`, {
      ...(cmdqv ? { 'nvidia,cmdqv': cmdqv } : {}),
      compatible: 'arm,smmu-v3',
      reg: reg([GUEST_LAYOUT.vsmmu, VSMMU_REGION_SIZE]),
      interrupts: GUEST_LAYOUT.vsmmuSpis.flatMap((n) => [0, n, 1]),
      'interrupt-names': ['eventq', 'priq', 'cmdq-sync', 'gerror'],
      'dma-coherent': true,
      '#iommu-cells': 1,
    });
    for (const a of this.opts.devices) {
      const base = a.mmio[0]?.base ?? 0;
      b.node(`/dev@${base.toString(16)}`, {
        compatible: a.compatible,
        reg: reg(...a.mmio.map((r) => [r.base, r.size] as const)),
        interrupts: a.irqs.flatMap((s) => [...s]),
        'dma-coherent': true,
        iommus: [vsmmu, a.vsid],
        ...a.props,
      });
    }
    const pci = this.opts.pci;
    if (pci) {
      b.node(`/pcie@${pci.ecamBase.toString(16)}`, {
        compatible: 'pci-host-ecam-generic',
        device_type: 'pci',
        '#address-cells': 3,
        '#size-cells': 2,
        reg: reg([pci.ecamBase, pci.ecamSize]),
        'bus-range': [pci.busRange[0], pci.busRange[1]],
        'iommu-map': [0, vsmmu, 0, 0x1_0000],
        'ats-supported': true,
        'dma-coherent': true,
      });
    }
    return b.build();
  }

  // ---- teardown ----

  /**
   * Tear the VM down (after its kernel shut down, or at once: a VM killed): the devices go to their
   * blocking domain (still held, as VFIO holds them), then every other iommufd object goes (nested
   * HWPTs, vDEVICEs, vEVENTQ, vIOMMU, the stage 2 and its VMID, the IOAS), the forwarded interrupts
   * and guest RAM. `releaseDevices()` then gives the devices back to the host.
   */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const d of this.hostIrqDetach.splice(0)) d();
    this.vcmdqv?.kill();
    await this.vcmdqv?.settled();
    const ctx = this.iommufd;
    for (const devId of this.ids.devs.values()) {
      if (ctx.device(devId).hwpt) await ctx.detach(devId);
    }
    await ctx.closeExceptDevices();
    for (const pa of this.chunks.splice(0)) this.opts.host.memory.free(pa, GUEST_RAM_CHUNK);
    this.regions.length = 0;
  }

  /** Unbind the assigned devices: their groups go back to the host's default domain (no driver bound). */
  async releaseDevices(): Promise<void> {
    if (!this.destroyed) await this.destroy();
    await this.iommufd.close();
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }
}

function guestGicPath(): string {
  return `/intc@${GUEST_LAYOUT.gic.toString(16)}`;
}
