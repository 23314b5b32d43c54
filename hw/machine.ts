/**
 * The machine: RAM, the MMIO map, interrupt controllers and MSI doorbells, the interconnect, IOMMU
 * models, DMA masters and PCIe hosts, all on one virtual-time scheduler with one trace stream, and
 * the CpuPort through which a kernel sees it.
 *
 * `Machine.fromDeviceTree` and `Machine.fromAcpi` build it the way firmware describes it; the
 * instantiation (which node becomes which part, what is skipped and why) is in hw/machine-of.ts,
 * the ACPI tables' translation into that firmware tree in hw/acpi.ts.
 */
import { vtime } from './vtime.js';
import createDebug from 'debug';
import { type BootFirmware, type BootMemoryMap, type CpuCosts, type CpuPort, type IrqHandler, ZERO_CPU_COSTS } from './cpu-port.js';
import type { MachineAcpiTables, MachineMemoryMap } from './acpi.js';
import { acpiFirmwareTree } from './acpi.js';
import type { DmaPort } from './dma.js';
import type { FirmwareNode, PhysRange } from './firmware.js';
import type { InterruptController, IrqLine } from './gic.js';
import { GicController, GicV2mFrame, ItsDoorbell } from './gic.js';
import { GicIts } from './gic-its.js';
import type { IommuMasterInfo, IommuModelInstance } from './iommu-models.js';
import { Interconnect } from './interconnect.js';
import { DeviceTreeInstantiator } from './machine-of.js';
import type { DmaMaster, StreamRoute } from './masters/dma-master.js';
import { PlatformDmaMaster } from './masters/platform.js';
import { DmaTestEngine, TE_REGION_SIZE } from './masters/test-engine.js';
import { PhysicalMemory } from './memory.js';
import type { MmioDevice, MmioRegion } from './mmio.js';
import { MmioMap } from './mmio.js';
import type { EndpointContext, PcieEndpointConfig } from './pci/endpoint.js';
import { PcieEndpoint, requesterId } from './pci/endpoint.js';
import type { RidMapEntry } from './pci/root-complex.js';
import { PcieRootComplex } from './pci/root-complex.js';
import { Scheduler } from './scheduler.js';
import { Trace } from './trace.js';

// Built-in IOMMU models register themselves when imported; add their modules here.
import './smmu-v2/index.js';
import './smmu-v3/index.js';

const log = createDebug('iommu:hw:machine');

export interface MachineOptions {
  /** Seed of the scheduler's PRNG: (scenario, seed) replays exactly. */
  seed: number;
  /** Virtual time from an interrupt being raised to its handlers running (default 100 ns). */
  irqLatencyNs?: number;
  /** First INTID of GICv2m frame k's SPI block when firmware gives none: base + k * count (default 448). */
  v2mBaseSpi?: number;
  /** SPIs per GICv2m frame when firmware gives none (default 64). */
  v2mSpisPerFrame?: number;
  /**
   * RAM to assume when firmware describes none (kernel DTBs often carry a size-0 memory node for
   * the boot loader to fill in): this many bytes at the first memory node's base, or at the first
   * of 0x80000000, 0x880000000, 0x4000000000 clear of MMIO (default 1 GiB; 0 for none).
   */
  fallbackRamSize?: number;
  /** PCIe endpoints issue nothing while Command.Bus Master is clear (default true). */
  pciEnforceBusMaster?: boolean;
  /** Instantiate registered IOMMU models (default true; false: every SMMU is a `no-model` placeholder). */
  iommuModels?: boolean;
  /** Options handed to IOMMU model factories, keyed by node path or by model name. */
  iommuOptions?: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  /** The CPUs' memory-operation costs kernel code is charged (CpuPort.costs; default all 0). */
  cpuCosts?: Partial<CpuCosts>;
}

/** A device tree as the machine reads it (bus/of/tree.ts's DeviceTree fits this shape). */
export interface MachineTree {
  readonly root: FirmwareNode;
  readonly blob: Uint8Array | null;
}

export type IommuStatus = 'modelled' | 'no-model' | 'disabled' | 'failed';

export interface IommuEntry {
  node: string;
  compatible: string[];
  status: IommuStatus;
  /** Model name when modelled. */
  model: string | null;
  regions: PhysRange[];
  instance: IommuModelInstance | null;
  error: string | null;
}

/** A platform master as firmware describes it. */
export interface MasterFirmwareInfo {
  node: string;
  iommus: { iommu: string; cells: number[] }[];
  canStall: boolean;
  pasidBits: number;
}

export interface SkippedNode {
  path: string;
  compatible: string[];
  reason: string;
}

export interface MachineDescription {
  ram: PhysRange[];
  interruptControllers: { node: string; compatible: string | null; kind: 'gic-v2' | 'gic-v3' | 'generic' }[];
  iommus: { node: string; compatible: string[]; status: IommuStatus; model: string | null; regions: PhysRange[]; error: string | null }[];
  masters: {
    node: string;
    iommus: { iommu: string; cells: number[] }[];
    streams: { streamId: number; iommu: string | null }[];
    canStall: boolean;
    pasidBits: number;
  }[];
  pciHosts: {
    node: string;
    ecam: PhysRange | null;
    busRange: [number, number];
    iommuMap: RidMapEntry[];
    iommuMapMask: number;
    atsSupported: boolean;
    endpoints: {
      node: string;
      bdf: string;
      rid: number;
      streamId: number;
      iommu: string | null;
      ats: boolean;
      pri: boolean;
      pasidBits: number;
    }[];
  }[];
  skipped: SkippedNode[];
  warnings: string[];
}

const hex = (v: number): string => `0x${v.toString(16)}`;

export class Machine {
  readonly scheduler: Scheduler;
  readonly trace = new Trace();
  readonly memory = new PhysicalMemory();
  readonly mmio: MmioMap;
  readonly interconnect: Interconnect;
  readonly cpu: CpuPort;
  readonly interruptControllers = new Map<string, InterruptController>();
  readonly msiFrames: (GicV2mFrame | ItsDoorbell | GicIts)[] = [];
  readonly iommus = new Map<string, IommuEntry>();
  /** Platform DMA masters by DT path. */
  readonly masters = new Map<string, PlatformDmaMaster>();
  /** DMA test engines by DT path (each is also in `masters`). */
  readonly testEngines = new Map<string, DmaTestEngine>();
  readonly mastersFirmware = new Map<string, MasterFirmwareInfo>();
  readonly pciHosts = new Map<string, PcieRootComplex>();
  readonly skippedNodes: SkippedNode[] = [];
  readonly warnings: string[] = [];
  readonly options: Readonly<Required<Omit<MachineOptions, 'iommuOptions' | 'cpuCosts'>>> & Pick<MachineOptions, 'iommuOptions'>;
  /** The CPUs' memory-operation costs (MachineOptions.cpuCosts over zeros). */
  readonly cpuCosts: Readonly<CpuCosts>;

  private dtb: Uint8Array | null = null;
  private readonly acpi = new Map<string, Uint8Array>();
  private memoryMap: BootMemoryMap | null = null;
  private readonly pciEcam = new Map<string, PhysRange | null>();
  private readonly endpointCtx: EndpointContext;

  constructor(opts: MachineOptions) {
    this.options = {
      irqLatencyNs: 100,
      v2mBaseSpi: 448,
      v2mSpisPerFrame: 64,
      pciEnforceBusMaster: true,
      fallbackRamSize: 0x4000_0000,
      iommuModels: true,
      ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
      seed: opts.seed,
    };
    const costs: CpuCosts = { ...ZERO_CPU_COSTS, ...(opts.cpuCosts ?? {}) };
    for (const [k, v] of Object.entries(costs)) {
      if (!(Number.isFinite(v) && v >= 0)) throw new RangeError(`machine option cpuCosts.${k}: ${String(v)} is not a finite number >= 0`);
    }
    this.cpuCosts = Object.freeze(costs);
    this.scheduler = new Scheduler(opts.seed);
    const now = (): number => this.scheduler.now;
    this.mmio = new MmioMap(this.trace, now);
    this.interconnect = new Interconnect(this.memory, this.mmio, now);
    this.scheduler.onStep = (label, time) => {
      if (this.trace.active) this.trace.emit({ kind: 'sched', time, track: 'scheduler', label });
    };
    this.endpointCtx = {
      trace: this.trace,
      now,
      schedule: (delayNs, fn, label) => {
        this.scheduler.schedule(delayNs, fn, label);
      },
    };
    this.cpu = this.makeCpuPort();
  }

  /** Build the machine a device tree describes (see the file header). */
  static fromDeviceTree(tree: MachineTree, opts: MachineOptions): Machine {
    const m = new Machine(opts);
    m.dtb = tree.blob;
    new DeviceTreeInstantiator(m, tree.root).run();
    return m;
  }

  /**
   * Build the machine ACPI tables describe, with RAM from `memory` (ACPI carries none): see
   * hw/acpi.ts for what is read and how parts are named. The blobs and the memory map are what the
   * boot loader hands a kernel.
   */
  static fromAcpi(tables: MachineAcpiTables, memory: MachineMemoryMap, opts: MachineOptions): Machine {
    const m = new Machine({ ...opts, fallbackRamSize: 0 });
    for (const [k, v] of tables.blobs) m.acpi.set(k, v);
    m.memoryMap = {
      ram: memory.ram.map((r) => ({ base: r.base, size: r.size })),
      reserved: (memory.reserved ?? []).map((r) => ({ base: r.base, size: r.size })),
    };
    const root = acpiFirmwareTree(tables, memory, (w) => m.warn(w));
    new DeviceTreeInstantiator(m, root).run();
    return m;
  }

  // -------------------------------------------------------------------------------------------
  // Building blocks (also used directly by tests and hand-made machines)
  // -------------------------------------------------------------------------------------------

  addRam(base: number, size: number): void {
    this.memory.addRegion(base, size);
  }

  /** Map a device; throws MmioOverlapError on overlap. */
  mapMmio(base: number, size: number, device: MmioDevice): MmioRegion {
    return this.mmio.map(base, size, device);
  }

  addInterruptController(ctrl: InterruptController): void {
    if (this.interruptControllers.has(ctrl.path)) throw new Error(`interrupt controller ${ctrl.path} already exists`);
    this.interruptControllers.set(ctrl.path, ctrl);
  }

  addGic(path: string, version: 2 | 3, compatible: string | null = null): GicController {
    const gic = new GicController(path, compatible, version, this.scheduler, this.trace, this.options.irqLatencyNs);
    this.addInterruptController(gic);
    return gic;
  }

  /** Add a GICv2m MSI frame at `base` raising SPIs [baseSpi, baseSpi + numSpis) on `gic`. */
  addV2mFrame(name: string, base: number, size: number, gic: GicController, baseSpi: number, numSpis: number): GicV2mFrame {
    const frame = new GicV2mFrame(name, base, gic, baseSpi, numSpis, this.trace, () => this.scheduler.now);
    this.mapMmio(base, size, frame);
    this.msiFrames.push(frame);
    return frame;
  }

  addItsDoorbell(name: string, base: number, size: number): ItsDoorbell {
    const its = new ItsDoorbell(name, base, this.trace, () => this.scheduler.now);
    this.mapMmio(base, size, its);
    this.msiFrames.push(its);
    return its;
  }

  /** A GICv3 ITS (hw/gic-its.ts) delivering LPIs to `gic`. */
  addIts(name: string, base: number, size: number, gic: GicController): GicIts {
    if (gic.version !== 3) throw new Error(`${name}: an ITS needs a GICv3 for its LPIs, ${gic.path} is a GICv${gic.version}`);
    const its = new GicIts(name, base, gic, this.memory, this.scheduler, this.trace);
    this.mapMmio(base, size, its);
    this.msiFrames.push(its);
    return its;
  }

  /** The GIC at a DT path (throws if there is none). */
  gic(path: string): GicController {
    const c = this.interruptControllers.get(path);
    if (!(c instanceof GicController)) throw new Error(`no GIC at ${path}`);
    return c;
  }

  /** The port a master stream uses: its IOMMU model's, or the interconnect. */
  portFor(iommu: string | null, info: IommuMasterInfo): { port: DmaPort; iommu: string | null } {
    const entry = iommu !== null ? this.iommus.get(iommu) : undefined;
    if (entry?.instance) return { port: entry.instance.portFor(info), iommu };
    return { port: this.interconnect, iommu: null };
  }

  /** Add a platform DMA master whose streams go to the named IOMMUs (null: none). */
  addPlatformMaster(
    name: string,
    streams: readonly { streamId: number; iommu: string | null; cells?: readonly number[] }[],
    opts: { canStall?: boolean; pasidBits?: number } = {},
  ): PlatformDmaMaster {
    if (this.masters.has(name)) throw new Error(`DMA master ${name} already exists`);
    const canStall = opts.canStall ?? false;
    const pasidBits = opts.pasidBits ?? 0;
    const master = new PlatformDmaMaster(name, this.platformRoutes(name, streams, canStall, pasidBits), this.endpointCtx, { canStall, pasidBits });
    this.masters.set(name, master);
    return master;
  }

  /**
   * Add a DMA test engine with its registers at [base, base+size) (at least 64 KiB; throws
   * MmioOverlapError on overlap) and its streams routed as a platform master's.
   */
  addTestEngine(
    name: string,
    region: PhysRange,
    streams: readonly { streamId: number; iommu: string | null; cells?: readonly number[] }[],
    opts: { canStall?: boolean; pasidBits?: number; irq?: IrqLine | null } = {},
  ): DmaTestEngine {
    if (this.masters.has(name)) throw new Error(`DMA master ${name} already exists`);
    if (region.size < TE_REGION_SIZE) {
      throw new Error(`register region of ${hex(region.size)} bytes is smaller than the test engine's ${hex(TE_REGION_SIZE)}`);
    }
    const canStall = opts.canStall ?? false;
    const pasidBits = opts.pasidBits ?? 0;
    const scheduler = this.scheduler;
    const ctx = {
      trace: this.trace,
      now: () => scheduler.now,
      schedule: (delayNs: number, fn: () => void, label: string) => scheduler.schedule(delayNs, fn, label),
    };
    const engine = new DmaTestEngine(name, this.platformRoutes(name, streams, canStall, pasidBits), ctx, {
      canStall,
      pasidBits,
      irq: opts.irq ?? null,
    });
    this.mapMmio(region.base, region.size, engine);
    this.masters.set(name, engine);
    this.testEngines.set(name, engine);
    return engine;
  }

  private platformRoutes(
    name: string,
    streams: readonly { streamId: number; iommu: string | null; cells?: readonly number[] }[],
    canStall: boolean,
    pasidBits: number,
  ): StreamRoute[] {
    return streams.map((s) => {
      const info: IommuMasterInfo = {
        name,
        streamId: s.streamId,
        cells: s.cells ?? [s.streamId],
        kind: 'platform',
        canStall,
        pasidBits,
      };
      return { streamId: s.streamId, ...this.portFor(s.iommu, info) };
    });
  }

  /** Add a PCIe host bridge (with its ECAM window mapped when given). */
  addPciHost(rc: PcieRootComplex, ecam: PhysRange | null): PcieRootComplex {
    if (this.pciHosts.has(rc.name)) throw new Error(`PCIe host ${rc.name} already exists`);
    if (ecam) this.mapMmio(ecam.base, ecam.size, rc);
    this.pciHosts.set(rc.name, rc);
    this.pciEcam.set(rc.name, ecam);
    return rc;
  }

  /** Add an endpoint below a host; its stream is what the host's RID map says. */
  addPcieEndpoint(rc: PcieRootComplex, name: string, config: PcieEndpointConfig): PcieEndpoint {
    const map = rc.streamFor(requesterId(config.bus, config.device, config.fn));
    const info: IommuMasterInfo = {
      name,
      streamId: map.streamId,
      cells: [map.streamId],
      kind: 'pci',
      canStall: false,
      pasidBits: config.pasidBits ?? 0,
    };
    const route = { streamId: map.streamId, ...this.portFor(map.iommu, info) };
    const ep = new PcieEndpoint(name, route, this.endpointCtx, {
      enforceBusMaster: this.options.pciEnforceBusMaster,
      rootComplexAts: rc.atsSupported,
      ...config,
    });
    rc.addEndpoint(ep);
    if ((ep.hasAts || ep.hasPri) && route.port.bindEndpoint) route.port.bindEndpoint(map.streamId, ep);
    return ep;
  }

  /** Any DMA master by name: platform masters and PCIe endpoints. */
  master(name: string): DmaMaster | undefined {
    const m = this.masters.get(name);
    if (m) return m;
    for (const rc of this.pciHosts.values()) {
      const ep = rc.endpoints.find((e) => e.name === name);
      if (ep) return ep;
    }
    return undefined;
  }

  /** The PCIe endpoint with this DT path. */
  endpoint(name: string): PcieEndpoint | undefined {
    const m = this.master(name);
    return m instanceof PcieEndpoint ? m : undefined;
  }

  /**
   * Detach every interrupt handler of every controller: the interrupt state a new kernel finds
   * when it replaces the old one on this machine (kexec). Pending lines stay pending.
   */
  detachAllIrqHandlers(): void {
    for (const c of this.interruptControllers.values()) c.detachAll();
  }

  warn(message: string): void {
    this.warnings.push(message);
    if (log.enabled) log('%s warning: %s', vtime(this.scheduler.now), message);
    if (this.trace.active) this.trace.emit({ kind: 'log', time: this.scheduler.now, track: 'machine', level: 'warn', message });
  }

  /** What the machine is made of, for the CLI and tests. */
  describe(): MachineDescription {
    return {
      ram: this.memory.ramRegions.map((r) => ({ base: r.base, size: r.size })),
      interruptControllers: [...this.interruptControllers.values()].map((c) => ({
        node: c.path,
        compatible: c.compatible,
        kind: c instanceof GicController ? (c.version === 3 ? 'gic-v3' : 'gic-v2') : 'generic',
      })),
      iommus: [...this.iommus.values()].map((e) => ({
        node: e.node,
        compatible: [...e.compatible],
        status: e.status,
        model: e.model,
        regions: e.regions.map((r) => ({ ...r })),
        error: e.error,
      })),
      masters: [...this.masters.values()].map((m) => {
        const fw = this.mastersFirmware.get(m.name);
        return {
          node: m.name,
          iommus: fw ? fw.iommus.map((i) => ({ iommu: i.iommu, cells: [...i.cells] })) : [],
          streams: m.streams.map((s) => ({ streamId: s.streamId, iommu: s.iommu })),
          canStall: m.canStall,
          pasidBits: m.pasidBits,
        };
      }),
      pciHosts: [...this.pciHosts.values()].map((rc) => ({
        node: rc.name,
        ecam: this.pciEcam.get(rc.name) ?? null,
        busRange: [rc.busStart, rc.busEnd] as [number, number],
        iommuMap: rc.iommuMap.map((e) => ({ ...e })),
        iommuMapMask: rc.iommuMapMask,
        atsSupported: rc.atsSupported,
        endpoints: rc.endpoints.map((ep) => ({
          node: ep.name,
          bdf: `${hex2(ep.bus)}:${hex2(ep.device)}.${ep.fn}`,
          rid: ep.rid,
          streamId: ep.streams[0].streamId,
          iommu: ep.streams[0].iommu,
          ats: ep.hasAts,
          pri: ep.hasPri,
          pasidBits: ep.pasidBits,
        })),
      })),
      skipped: this.skippedNodes.map((s) => ({ ...s, compatible: [...s.compatible] })),
      warnings: [...this.warnings],
    };
  }

  private makeCpuPort(): CpuPort {
    const machine = this;
    const mmio = this.mmio;
    const scheduler = this.scheduler;
    const firmware: BootFirmware = {
      get dtb() {
        return machine.dtb;
      },
      acpi: this.acpi,
      get memoryMap() {
        return machine.memoryMap;
      },
    };
    return {
      firmware,
      ram: this.memory,
      trace: this.trace,
      mmioPresent: (pa, len) => mmio.covers(pa, len),
      mmioRead32: (pa) => mmio.read32(pa),
      mmioWrite32: (pa, v) => mmio.write32(pa, v),
      mmioRead64: (pa) => mmio.read64(pa),
      mmioWrite64: (pa, v) => mmio.write64(pa, v),
      mmioWindow: (pa, size) => mmio.window(pa, size),
      requestIrq: (controller: string, specifier: readonly number[], handler: IrqHandler) => {
        const c = this.interruptControllers.get(controller);
        if (!c) throw new Error(`requestIrq: no interrupt controller at ${controller}`);
        return c.attach(specifier, handler);
      },
      now: () => scheduler.now,
      delay: (ns) => scheduler.delay(ns, 'cpu delay'),
      startTimer: (ns, fn, label) => scheduler.startTimer(ns, fn, label ?? 'cpu timer'),
      monitor: (pa, fn) => this.armMonitor(pa, fn),
      unmonitor: (pa, fn) => this.disarmMonitor(pa, fn),
      costs: this.cpuCosts,
    };
  }

  /**
   * Armed exclusive monitors (CpuPort.monitor), checked against every write that lands in RAM: the
   * address and function of each, as parallel arrays in the order they were armed (no object per arm).
   */
  private readonly monitorPa: number[] = [];
  private readonly monitorFn: ((pa: number) => void)[] = [];
  private monitorHooked = false;

  private armMonitor(pa: number, fn: (pa: number) => void): void {
    this.monitorPa.push(pa);
    this.monitorFn.push(fn);
    if (!this.monitorHooked) {
      this.monitorHooked = true;
      this.interconnect.setMonitorHook(this.checkMonitors);
    }
  }

  /** A write landed in RAM: fire the monitors it covers. */
  private readonly checkMonitors = (wpa: number, len: number): void => {
    const pas = this.monitorPa;
    // Newest first; a monitor armed by a function called here is not checked against this write.
    for (let i = pas.length - 1; i >= 0; i--) {
      const a = pas[i];
      if (wpa < a + 4 && a < wpa + len) {
        const f = this.monitorFn[i];
        this.dropMonitor(i);
        f(a);
      }
    }
  };

  private disarmMonitor(pa: number, fn: (pa: number) => void): void {
    const pas = this.monitorPa;
    const fns = this.monitorFn;
    for (let i = pas.length - 1; i >= 0; i--) {
      if (pas[i] === pa && fns[i] === fn) {
        this.dropMonitor(i);
        return;
      }
    }
  }

  /** Remove monitor `i`, keeping the others in order (shifted in place: no array per removal). */
  private dropMonitor(i: number): void {
    const pas = this.monitorPa;
    const fns = this.monitorFn;
    const n = pas.length - 1;
    for (let j = i; j < n; j++) {
      pas[j] = pas[j + 1];
      fns[j] = fns[j + 1];
    }
    pas.pop();
    fns.pop();
  }
}

function hex2(v: number): string {
  return v.toString(16).padStart(2, '0');
}


/** Convenience for tests: a raisable line of the machine's controller at `path`. */
export function irqLine(m: Machine, path: string, specifier: readonly number[]): IrqLine {
  const c = m.interruptControllers.get(path);
  if (!c) throw new Error(`no interrupt controller at ${path}`);
  return c.line(specifier);
}
