/**
 * Firmware → machine: one pass over a firmware tree (hw/firmware.ts's FirmwareNode) that fills a
 * Machine with the parts the tree describes. Named as Linux names its Device Tree code (of_*, Open
 * Firmware): the tree is a Device Tree, either read from a DTB (`Machine.fromDeviceTree`) or the one
 * hw/acpi.ts builds from ACPI tables (`Machine.fromAcpi`), so both routes end here and build alike.
 * hw/machine.ts holds the machine itself and its building blocks, which this file only calls.
 *
 * What is built:
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
import type { IrqLine } from './gic.js';
import { GIC_V2_COMPATIBLES, GIC_V3_COMPATIBLES, GITS_TRANSLATER, GenericInterruptController, GicController } from './gic.js';
import { GicIts } from './gic-its.js';
import type { IommuCompanion } from './iommu-models.js';
import { findIommuModel, isSmmuNode } from './iommu-models.js';
import { DMA_TEST_ENGINE_COMPATIBLE } from './masters/test-engine.js';
import { FRAME_SIZE } from './memory.js';
import type { MmioDevice } from './mmio.js';
import { MmioOverlapError, ZeroDevice } from './mmio.js';
import type { RidMapEntry } from './pci/root-complex.js';
import { PcieRootComplex } from './pci/root-complex.js';
import type { IommuEntry, Machine } from './machine.js';

const hex = (v: number): string => `0x${v.toString(16)}`;

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
export class DeviceTreeInstantiator {
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
