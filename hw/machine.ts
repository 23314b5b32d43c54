/**
 * The machine: RAM, the MMIO map, interrupt controllers and MSI doorbells, the interconnect, IOMMU
 * models, DMA masters and PCIe hosts, all on one virtual-time scheduler with one trace stream, and
 * the CpuPort through which a kernel sees it.
 *
 * `Machine.fromDeviceTree` builds it the way firmware describes it:
 * - RAM from every enabled root `memory` node (device_type "memory"), trimmed to 4 KiB frames;
 * - an interrupt controller for every enabled node with `interrupt-controller` (a GIC model for the
 *   GIC compatibles, a generic one otherwise), GICv2m frames and ITS doorbells below GIC nodes;
 * - an IOMMU for every node a registered model matches (hw/iommu-models.ts) and a `no-model`
 *   placeholder for every other SMMU node; disabled ones are listed as `disabled` and get nothing;
 * - a PCIe root complex for every outermost node with `iommu-map` or device_type "pci" (ECAM when
 *   it is `pci-host-ecam-generic`), with an endpoint for each PCI child node;
 * - a platform DMA master for every enabled node with `iommus`, each stream routed to its IOMMU's
 *   port, or straight to the interconnect when that IOMMU has no model or is disabled;
 * - a DMA test engine (hw/masters/test-engine.ts) for every enabled `iommu-sim,dma-test-engine`
 *   node: registers at its first `reg` region, its first interrupt, streams from `iommus` as for any
 *   platform master (first cell of each specifier), or one stream (ID 0) straight to the
 *   interconnect when it has no `iommus`. Engines are platform masters too (in `masters`).
 * Enabled nodes with a compatible that none of this covers are listed in `skippedNodes`. Problems
 * a real board's firmware can have (overlapping regions, an address no `ranges` translates, a
 * value out of range) are reported in `warnings` and the device is skipped; structurally malformed
 * properties throw MachineFirmwareError.
 */
import { vtime } from './vtime.js';
import createDebug from 'debug';
import type { BootFirmware, BootMemoryMap, CpuPort, IrqHandler } from './cpu-port.js';
import type { MachineAcpiTables, MachineMemoryMap } from './acpi.js';
import { acpiFirmwareTree } from './acpi.js';
import type { DmaPort } from './dma.js';
import type { FirmwareNode, InterruptRef, PhysRange } from './firmware.js';
import {
  FirmwareIndex,
  MachineFirmwareError,
  UntranslatableAddressError,
  addressCells,
  compatibles,
  hasProp,
  isCompatible,
  isEnabled,
  malformed,
  propCells,
  propString,
  propU32,
  readInterrupts,
  readIommuMap,
  readIommuMapMask,
  readIommus,
  readRawReg,
  readRegions,
  walk,
} from './firmware.js';
import type { InterruptController, IrqLine } from './gic.js';
import {
  GIC_V2_COMPATIBLES,
  GIC_V3_COMPATIBLES,
  GITS_TRANSLATER,
  GenericInterruptController,
  GicController,
  GicV2mFrame,
  ItsDoorbell,
} from './gic.js';
import { GicIts } from './gic-its.js';
import type { IommuCompanion, IommuMasterInfo, IommuModelInstance } from './iommu-models.js';
import { findIommuModel, isSmmuNode } from './iommu-models.js';
import { Interconnect } from './interconnect.js';
import type { DmaMaster, StreamRoute } from './masters/dma-master.js';
import { PlatformDmaMaster } from './masters/platform.js';
import { DMA_TEST_ENGINE_COMPATIBLE, DmaTestEngine, TE_REGION_SIZE } from './masters/test-engine.js';
import { FRAME_SIZE, PhysicalMemory } from './memory.js';
import type { MmioDevice, MmioRegion } from './mmio.js';
import { MmioMap, MmioOverlapError, ZeroDevice } from './mmio.js';
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
  readonly options: Readonly<Required<Omit<MachineOptions, 'iommuOptions'>>> & Pick<MachineOptions, 'iommuOptions'>;

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
      requestIrq: (controller: string, specifier: readonly number[], handler: IrqHandler) => {
        const c = this.interruptControllers.get(controller);
        if (!c) throw new Error(`requestIrq: no interrupt controller at ${controller}`);
        return c.attach(specifier, handler);
      },
      now: () => scheduler.now,
      delay: (ns) => scheduler.delay(ns, 'cpu delay'),
      startTimer: (ns, fn) => scheduler.startTimer(ns, fn, 'cpu timer'),
      monitor: (pa, fn) => this.armMonitor(pa, fn),
    };
  }

  /** Armed exclusive monitors (CpuPort.monitor), checked against every write that lands in RAM. */
  private readonly monitors: { pa: number; fn: () => void }[] = [];
  private monitorObserver: (() => void) | null = null;

  private armMonitor(pa: number, fn: () => void): () => void {
    const m = { pa, fn };
    this.monitors.push(m);
    this.monitorObserver ??= this.interconnect.onRamWrite((_master, wpa, len) => {
      const list = this.monitors;
      for (let i = list.length - 1; i >= 0; i--) {
        const a = list[i];
        if (wpa < a.pa + 4 && a.pa < wpa + len) {
          list.splice(i, 1);
          a.fn();
        }
      }
    });
    return () => {
      const i = this.monitors.indexOf(m);
      if (i >= 0) this.monitors.splice(i, 1);
    };
  }
}

function hex2(v: number): string {
  return v.toString(16).padStart(2, '0');
}

/** 4 KiB-trimmed [base, base+size), or null if nothing whole is left. */
function trimToFrames(r: PhysRange): PhysRange | null {
  const base = Math.ceil(r.base / FRAME_SIZE) * FRAME_SIZE;
  const end = Math.floor((r.base + r.size) / FRAME_SIZE) * FRAME_SIZE;
  return end > base ? { base, size: end - base } : null;
}

/** Compatibles of plain bus containers: structure, not devices, so never "skipped". */
const BUS_COMPATIBLES: ReadonlySet<string> = new Set(['simple-bus', 'simple-pm-bus', 'simple-mfd', 'arm,amba-bus']);

/** Is any ancestor of the node a PCI bus? (Then it is a bridge or a function, not a host.) */
function underPciBus(node: FirmwareNode): boolean {
  for (let p = node.parent; p; p = p.parent) if (isPciNode(p)) return true;
  return false;
}

function isPciNode(node: FirmwareNode): boolean {
  const t = propString(node, 'device_type');
  return t === 'pci' || t === 'pciex';
}

/** One pass over a device tree, filling a machine. */
class DeviceTreeInstantiator {
  private readonly index: FirmwareIndex;
  /** Nodes something was made for (or deliberately consumed as part of a device). */
  private readonly handled = new Set<FirmwareNode>();
  private readonly enabled: FirmwareNode[] = [];
  /** Nodes whose device could not be made, and why. */
  private readonly skipReasons = new Map<FirmwareNode, string>();
  private firstMemoryBase: number | null = null;

  constructor(
    private readonly m: Machine,
    private readonly root: FirmwareNode,
  ) {
    this.index = new FirmwareIndex(root);
  }

  run(): void {
    for (const n of walk(this.root)) if (isEnabled(n)) this.enabled.push(n);
    this.ram();
    this.interruptControllers();
    this.iommus();
    this.msiDeviceIds();
    this.pciHosts();
    this.testEngines();
    this.platformMasters();
    this.fallbackRam();
    this.skipped();
  }

  /** Run a device's construction; a non-structural problem becomes a warning and a skip. */
  private attempt(node: FirmwareNode, what: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      if (e instanceof MachineFirmwareError && !(e instanceof UntranslatableAddressError)) throw e;
      const msg = e instanceof Error ? e.message : String(e);
      this.m.warn(`${node.path}: ${what} not created: ${msg}`);
      this.skip(node, `${what} not created: ${msg}`);
    }
  }

  private skip(node: FirmwareNode, reason: string): void {
    this.handled.add(node);
    this.skipReasons.set(node, reason);
  }

  /** Map a region, turning an overlap into a warning. Returns false if it was not mapped. */
  private tryMap(node: FirmwareNode, r: PhysRange, device: MmioDevice): boolean {
    if (r.size <= 0) {
      this.m.warn(`${node.path}: region at ${hex(r.base)} has size 0, not mapped`);
      return false;
    }
    try {
      this.m.mapMmio(r.base, r.size, device);
    } catch (e) {
      // An overlap (duplicated nodes are common) or a region beyond what the map can hold.
      this.m.warn(`${node.path}: ${e instanceof Error ? e.message : String(e)}; not mapped`);
      return false;
    }
    for (const ram of this.m.memory.ramRegions) {
      if (r.base < ram.base + ram.size && ram.base < r.base + r.size) {
        this.m.warn(`${node.path}: MMIO region ${hex(r.base)}+${hex(r.size)} overlaps RAM; DMA there reaches RAM`);
      }
    }
    return true;
  }

  // -- RAM ----------------------------------------------------------------------------------

  private ram(): void {
    for (const n of this.root.children) {
      if (propString(n, 'device_type') !== 'memory') continue;
      this.handled.add(n);
      if (!isEnabled(n)) continue;
      for (const raw of readRegions(n)) {
        this.firstMemoryBase ??= raw.base;
        const r = trimToFrames(raw);
        if (!r) {
          if (raw.size > 0) this.m.warn(`${n.path}: RAM ${hex(raw.base)}+${hex(raw.size)} holds no whole 4 KiB frame, ignored`);
          continue;
        }
        if (r.base !== raw.base || r.size !== raw.size) {
          this.m.warn(`${n.path}: RAM ${hex(raw.base)}+${hex(raw.size)} trimmed to 4 KiB frames`);
        }
        try {
          this.m.addRam(r.base, r.size);
        } catch (e) {
          this.m.warn(`${n.path}: ${e instanceof Error ? e.message : String(e)}; ignored`);
        }
      }
    }
  }

  /** Play boot loader when firmware left the memory size for one to fill in. */
  private fallbackRam(): void {
    const size = this.m.options.fallbackRamSize;
    if (this.m.memory.ramRegions.length > 0) return;
    if (size <= 0) {
      this.m.warn('firmware describes no RAM');
      return;
    }
    const candidates = [this.firstMemoryBase, 0x8000_0000, 0x8_8000_0000, 0x40_0000_0000];
    for (const c of candidates) {
      if (c === null || c % FRAME_SIZE !== 0 || c + size > Number.MAX_SAFE_INTEGER || this.m.mmio.firstOverlap(c, size)) continue;
      this.m.addRam(c, size);
      this.m.warn(`firmware describes no RAM (a boot loader fills it in); assuming ${hex(size)} bytes at ${hex(c)}`);
      return;
    }
    this.m.warn('firmware describes no RAM, and no default place for it is free of MMIO');
  }

  // -- interrupt controllers ----------------------------------------------------------------

  private interruptControllers(): void {
    for (const n of this.enabled) {
      if (!hasProp(n, 'interrupt-controller')) continue;
      this.handled.add(n);
      const compat = compatibles(n);
      const gicV3 = compat.find((c) => GIC_V3_COMPATIBLES.includes(c));
      const gicV2 = compat.find((c) => GIC_V2_COMPATIBLES.includes(c));
      if (this.m.interruptControllers.has(n.path)) {
        this.skip(n, 'another node has the same path');
        continue;
      }
      if (gicV3 !== undefined || gicV2 !== undefined) {
        const gic = this.m.addGic(n.path, gicV3 !== undefined ? 3 : 2, gicV3 ?? gicV2 ?? null);
        this.msiFrames(n, gic);
        continue;
      }
      const cells = propU32(n, '#interrupt-cells');
      if (cells === undefined) {
        this.m.warn(`${n.path}: interrupt controller without #interrupt-cells, not created`);
        continue;
      }
      this.m.addInterruptController(
        new GenericInterruptController(n.path, compat[0] ?? null, cells, this.m.scheduler, this.m.trace, this.m.options.irqLatencyNs),
      );
    }
  }

  private msiFrames(gicNode: FirmwareNode, gic: GicController): void {
    let k = 0;
    for (const child of gicNode.children) {
      if (!isEnabled(child)) continue;
      if (isCompatible(child, 'arm,gic-v2m-frame')) {
        this.handled.add(child);
        const index = k++;
        this.attempt(child, 'GICv2m frame', () => this.v2mFrame(child, gic, index));
      } else if (isCompatible(child, 'arm,gic-v3-its')) {
        this.handled.add(child);
        this.attempt(child, 'ITS', () => this.its(child, gic));
      }
    }
  }

  private v2mFrame(node: FirmwareNode, gic: GicController, index: number): void {
    const [r] = readRegions(node);
    if (!r) throw new Error('no "reg"');
    const fwBase = propU32(node, 'arm,msi-base-spi');
    const fwNum = propU32(node, 'arm,msi-num-spis');
    const fromFirmware = fwBase !== undefined && fwNum !== undefined;
    const per = this.m.options.v2mSpisPerFrame;
    const base = fromFirmware ? fwBase : this.m.options.v2mBaseSpi + index * per;
    this.m.addV2mFrame(node.path, r.base, r.size, gic, base, fromFirmware ? fwNum : per);
  }

  private its(node: FirmwareNode, gic: GicController): void {
    const [r] = readRegions(node);
    if (!r) throw new Error('no "reg"');
    // Some firmware describes only the ITS control frame (64 KiB); the translation frame holding
    // GITS_TRANSLATER follows it. Take both when that space is free.
    const full = Math.max(r.size, 0x2_0000);
    const size = this.m.mmio.firstOverlap(r.base, full) ? r.size : full;
    if (size < GITS_TRANSLATER + 4) throw new Error(`region of ${hex(r.size)} bytes does not reach GITS_TRANSLATER and the next page is taken`);
    // LPIs need a GICv3; below anything else the ITS is only a doorbell.
    if (gic.version === 3) this.m.addIts(node.path, r.base, size, gic);
    else this.m.addItsDoorbell(node.path, r.base, size);
  }

  /**
   * The DeviceID the bus gives each master's MSI writes to an ITS: the specifier of its
   * `msi-parent` (on an ACPI machine, the IORT DeviceID mapping of an SMMUv3 node).
   */
  private msiDeviceIds(): void {
    for (const n of this.enabled) {
      const cells = propCells(n, 'msi-parent');
      if (!cells || cells.length !== 2) continue;
      let target: FirmwareNode;
      try {
        target = this.index.resolve(cells[0], n, 'msi-parent');
      } catch {
        continue;
      }
      const its = this.m.msiFrames.find((f): f is GicIts => f instanceof GicIts && f.name === target.path);
      its?.setDeviceId(n.path, cells[1]);
    }
  }

  // -- IOMMUs -------------------------------------------------------------------------------

  private iommus(): void {
    for (const n of walk(this.root)) {
      const model = this.m.options.iommuModels ? findIommuModel(n) : null;
      if (!model && !isSmmuNode(n)) continue;
      this.handled.add(n);
      if (this.m.iommus.has(n.path)) {
        this.m.warn(`${n.path}: a second node with this path is ignored`);
        continue;
      }
      const entry: IommuEntry = {
        node: n.path,
        compatible: compatibles(n),
        status: 'disabled',
        model: null,
        regions: [],
        instance: null,
        error: null,
      };
      this.m.iommus.set(n.path, entry);
      if (!isEnabled(n)) continue;
      try {
        entry.regions = readRegions(n);
      } catch (e) {
        if (!(e instanceof UntranslatableAddressError)) throw e;
        entry.status = 'failed';
        entry.error = e.message;
        this.m.warn(`${n.path}: ${e.message}`);
        continue;
      }
      if (!model) {
        entry.status = 'no-model';
        for (const r of entry.regions) this.tryMap(n, r, new ZeroDevice(n.path));
        continue;
      }
      try {
        const instance = model.factory({
          node: n,
          regions: entry.regions,
          interrupts: this.lines(n),
          machine: this.m,
          options: this.m.options.iommuOptions?.[n.path] ?? this.m.options.iommuOptions?.[model.name] ?? {},
          companion: (prop) => this.companion(n, prop),
        });
        for (const r of instance.mmio) this.tryMap(n, r, r.device);
        entry.status = 'modelled';
        entry.model = instance.model;
        entry.instance = instance;
      } catch (e) {
        if (e instanceof MachineFirmwareError && !(e instanceof UntranslatableAddressError)) throw e;
        entry.status = 'failed';
        entry.error = e instanceof Error ? e.message : String(e);
        this.m.warn(`${n.path}: IOMMU model ${model.name} failed: ${entry.error}`);
      }
    }
  }

  /** A node an IOMMU node names in `prop` (one phandle), modelled with it. */
  private companion(node: FirmwareNode, prop: string): IommuCompanion | null {
    const cells = propCells(node, prop);
    if (cells === undefined) return null;
    if (cells.length !== 1) throw malformed(node, prop, `property "${prop}" must be one phandle`);
    const c = this.index.resolve(cells[0], node, prop);
    this.handled.add(c);
    if (!isEnabled(c)) return null;
    return { node: c, regions: readRegions(c), interrupts: this.lines(c) };
  }

  /** The node's interrupt lines, null where the controller is missing or rejects the specifier. */
  private lines(node: FirmwareNode): (IrqLine | null)[] {
    return readInterrupts(this.index, node).map((ref: InterruptRef) => {
      const ctrl = this.m.interruptControllers.get(ref.controller.path);
      if (!ctrl) {
        this.m.warn(`${node.path}: interrupt parent ${ref.controller.path} is not an interrupt controller of this machine`);
        return null;
      }
      try {
        return ctrl.line(ref.cells, ref.name);
      } catch (e) {
        this.m.warn(`${node.path}: ${e instanceof Error ? e.message : String(e)}`);
        return null;
      }
    });
  }

  // -- PCI ----------------------------------------------------------------------------------

  private pciHosts(): void {
    for (const n of this.enabled) {
      if (!(hasProp(n, 'iommu-map') || isPciNode(n)) || underPciBus(n)) continue;
      this.handled.add(n);
      this.attempt(n, 'PCIe host', () => this.pciHost(n));
    }
  }

  private pciHost(n: FirmwareNode): void {
    const ecamCapable = isCompatible(n, 'pci-host-ecam-generic');
    const ecam = ecamCapable ? (readRegions(n)[0] ?? null) : null;
    const range = propCells(n, 'bus-range');
    if (range !== undefined && range.length !== 2) {
      throw malformed(n, 'bus-range', `"bus-range" has ${range.length} cells, expected 2`);
    }
    const busStart = range?.[0] ?? 0;
    let busEnd = range?.[1] ?? 255;
    if (busStart > 255 || busEnd > 255 || busStart > busEnd) throw new Error(`bus-range ${busStart}..${busEnd} is invalid`);
    if (ecam) {
      const buses = Math.floor(ecam.size / 0x10_0000);
      if (buses < 1) throw new Error(`ECAM window of ${hex(ecam.size)} bytes holds no bus`);
      if (busStart + buses - 1 < busEnd) {
        this.m.warn(`${n.path}: ECAM window covers buses ${busStart}..${busStart + buses - 1} only, not ${busEnd}`);
        busEnd = busStart + buses - 1;
      }
    }
    const iommuMap: RidMapEntry[] = readIommuMap(this.index, n).map((e) => ({
      ridBase: e.ridBase,
      iommu: e.iommu.path,
      sidBase: e.sidBase,
      length: e.length,
    }));
    const rc = new PcieRootComplex({
      name: n.path,
      busStart,
      busEnd,
      iommuMap,
      iommuMapMask: readIommuMapMask(n),
      atsSupported: hasProp(n, 'ats-supported'),
    });
    try {
      this.m.addPciHost(rc, ecam);
    } catch (e) {
      if (!(e instanceof MmioOverlapError)) throw e;
      this.m.warn(`${n.path}: ${e.message}; ECAM not mapped`);
      this.m.addPciHost(rc, null);
    }
    // PCI functions are the children with a `reg` (config-space address); others are helpers
    // such as a legacy INTx controller, or not PCI at all under a non-PCI `iommu-map` bus.
    for (const child of n.children) {
      if (!isEnabled(child) || !hasProp(child, 'reg')) continue;
      this.handled.add(child);
      this.attempt(child, 'PCIe endpoint', () => this.pciEndpoint(n, rc, child));
    }
  }

  private pciEndpoint(host: FirmwareNode, rc: PcieRootComplex, n: FirmwareNode): void {
    if (isPciNode(n)) throw new Error('PCI-to-PCI bridges are not modelled');
    if (addressCells(host) !== 3) throw new Error(`host ${host.path} has #address-cells ${addressCells(host)}, not 3`);
    const [reg] = readRawReg(n);
    if (!reg) throw new Error('no "reg" giving its bus/device/function');
    const hi = reg.address[0];
    const pasidBits = propU32(n, 'pasid-num-bits') ?? 0;
    if (pasidBits > 20) throw new Error(`pasid-num-bits ${pasidBits} exceeds PCIe's 20`);
    const classCode = propU32(n, 'class-code');
    this.m.addPcieEndpoint(rc, n.path, {
      bus: (hi >>> 16) & 0xff,
      device: (hi >>> 11) & 0x1f,
      fn: (hi >>> 8) & 0x7,
      vendorId: propU32(n, 'vendor-id'),
      deviceId: propU32(n, 'device-id'),
      classCode,
      revision: propU32(n, 'revision-id'),
      pasidBits,
      ats: hasProp(n, 'iommu-sim,ats'),
      pri: hasProp(n, 'iommu-sim,pri'),
    });
  }

  // -- platform masters ---------------------------------------------------------------------

  private platformMasters(): void {
    for (const n of this.enabled) {
      // Functions below a PCI host take their stream IDs from the host's iommu-map.
      if (!hasProp(n, 'iommus') || underPciBus(n) || isCompatible(n, DMA_TEST_ENGINE_COMPATIBLE)) continue;
      const refs = readIommus(this.index, n);
      this.handled.add(n);
      if (refs.length === 0) continue;
      const pasidBits = propU32(n, 'pasid-num-bits') ?? 0;
      if (pasidBits > 20) throw malformed(n, 'pasid-num-bits', `"pasid-num-bits" is ${pasidBits}, more than 20`);
      const canStall = hasProp(n, 'dma-can-stall');
      this.m.mastersFirmware.set(n.path, {
        node: n.path,
        iommus: refs.map((r) => ({ iommu: r.iommu.path, cells: r.cells })),
        canStall,
        pasidBits,
      });
      this.attempt(n, 'DMA master', () =>
        this.m.addPlatformMaster(
          n.path,
          refs.map((r) => ({ streamId: r.cells[0] ?? 0, iommu: r.iommu.path, cells: r.cells })),
          { canStall, pasidBits },
        ),
      );
    }
  }

  // -- DMA test engines ----------------------------------------------------------------------

  private testEngines(): void {
    for (const n of this.enabled) {
      if (!isCompatible(n, DMA_TEST_ENGINE_COMPATIBLE) || underPciBus(n)) continue;
      this.handled.add(n);
      this.attempt(n, 'DMA test engine', () => this.testEngine(n));
    }
  }

  private testEngine(n: FirmwareNode): void {
    const [region] = readRegions(n);
    if (!region) throw new Error('no "reg" for its registers');
    const refs = hasProp(n, 'iommus') ? readIommus(this.index, n) : [];
    const pasidBits = propU32(n, 'pasid-num-bits') ?? 0;
    if (pasidBits > 20) throw malformed(n, 'pasid-num-bits', `"pasid-num-bits" is ${pasidBits}, more than 20`);
    const canStall = hasProp(n, 'dma-can-stall');
    const streams =
      refs.length > 0
        ? refs.map((r) => ({ streamId: r.cells[0] ?? 0, iommu: r.iommu.path, cells: r.cells }))
        : [{ streamId: 0, iommu: null }];
    const [irq] = this.lines(n);
    this.m.addTestEngine(n.path, region, streams, { canStall, pasidBits, irq: irq ?? null });
    this.m.mastersFirmware.set(n.path, {
      node: n.path,
      iommus: refs.map((r) => ({ iommu: r.iommu.path, cells: r.cells })),
      canStall,
      pasidBits,
    });
  }

  // -- the rest -----------------------------------------------------------------------------

  /** In tree order: devices that failed, and enabled devices nothing models (buses aside). */
  private skipped(): void {
    for (const n of this.enabled) {
      const reason = this.skipReasons.get(n);
      if (reason !== undefined) {
        this.m.skippedNodes.push({ path: n.path, compatible: compatibles(n), reason });
        continue;
      }
      if (this.handled.has(n) || n === this.root || !hasProp(n, 'compatible')) continue;
      const compat = compatibles(n);
      if (compat.some((c) => BUS_COMPATIBLES.has(c))) continue;
      this.m.skippedNodes.push({ path: n.path, compatible: compat, reason: 'no model' });
    }
  }
}

/** Convenience for tests: a raisable line of the machine's controller at `path`. */
export function irqLine(m: Machine, path: string, specifier: readonly number[]): IrqLine {
  const c = m.interruptControllers.get(path);
  if (!c) throw new Error(`no interrupt controller at ${path}`);
  return c.line(specifier);
}
