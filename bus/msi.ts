/**
 * Platform and PCI MSI on a GICv2m frame (kernel: drivers/irqchip/irq-gic-v2m.c and the generic MSI
 * layer, msi_domain_alloc_irqs()).
 *
 * A GICv2m frame turns a 32-bit write of an SPI number to its MSI_SETSPI_NS register into that SPI on
 * the parent GIC. A device's frame is found the way the kernel finds its MSI domain: its own
 * `msi-parent`, or, walking up its parents, an `msi-map` that translates its requester ID (PCI RID),
 * or a parent's `msi-parent`. The frame's SPI block comes from `arm,msi-base-spi` + `arm,msi-num-spis`
 * when firmware gives both, else from the frame's MSI_TYPER register.
 *
 * Each vector is one SPI: the device writes `data` (the SPI's INTID) to `address`, and `irq` names the
 * SPI for requestIrq. Vectors are allocated all-or-nothing (ENOSPC when the frame has too few free
 * SPIs) and freed when the driver unbinds. Allocation state is per kernel.
 */
import type { Device } from './device.js';
import type { DriverCore } from './driver-core.js';
import { KernelError } from './errno.js';
import { FirmwareError } from './firmware-error.js';
import { ioremap } from './io.js';
import type { IrqSpec } from './irq.js';
import { ofReg } from './of/address.js';
import { ofMapId, ofMsiParent } from './of/irq.js';
import type { DeviceTree, DtNode } from './of/tree.js';

export const GICV2M_COMPATIBLE = 'arm,gic-v2m-frame';

// GICv2m frame registers (Arm GICv2m specification).
/** MSI_TYPER: the frame's SPI block. */
export const V2M_MSI_TYPER = 0x008;
export const V2M_MSI_TYPER_BASE_SHIFT = 16;
export const V2M_MSI_TYPER_BASE_MASK = 0x3ff;
export const V2M_MSI_TYPER_NUM_MASK = 0x3ff;
/** MSI_SETSPI_NS: the doorbell; a write of an INTID raises that SPI. */
export const V2M_MSI_SETSPI_NS = 0x040;
const V2M_FRAME_SIZE = 0x1000;
/** SPIs are INTIDs 32..1019. */
const V2M_MIN_SPI = 32;
const V2M_MAX_SPI = 1019;

// GIC DT binding: first specifier cell, and the trigger flags an MSI-driven SPI uses.
const GIC_SPI = 0;
const IRQ_TYPE_EDGE_RISING = 1;

export interface MsiVector {
  /** Vector index within the device (0-based). */
  readonly index: number;
  /** Physical address the device writes to signal this vector (the frame's MSI_SETSPI_NS). */
  readonly address: number;
  /** The value it writes: the SPI's INTID. */
  readonly data: number;
  /** The SPI, for requestIrq. */
  readonly irq: IrqSpec;
}

/** A GICv2m frame as this kernel drives it (kernel: struct v2m_data). */
interface V2mFrame {
  readonly node: DtNode;
  readonly base: number;
  readonly spiStart: number;
  readonly nrSpis: number;
  /** Device owning each SPI of the block, or null when free. */
  readonly owners: (Device | null)[];
  readonly gic: DtNode;
  readonly gicCells: number;
}

interface MsiState {
  readonly frames: Map<DtNode, V2mFrame>;
  readonly vectors: Map<Device, { frame: V2mFrame; vectors: MsiVector[] }>;
}

const states = new WeakMap<DriverCore, MsiState>();

function stateOf(core: DriverCore): MsiState {
  let s = states.get(core);
  if (!s) {
    s = { frames: new Map(), vectors: new Map() };
    states.set(core, s);
  }
  return s;
}

function treeOf(dev: Device): DeviceTree {
  const dt = dev.core.dt;
  if (!dt) throw new KernelError('ENODEV', `${dev.name}: no device tree, so no MSI controller can be found`);
  return dt;
}

/**
 * The MSI controller node serving `dev` (kernel: of_msi_map_get_device_domain() and
 * of_msi_get_domain()): its own `msi-parent`; else, up its parents, the first `msi-map` that maps the
 * device's requester ID, or the first `msi-parent`. Null when firmware names none.
 */
export function msiControllerOf(dev: Device): DtNode | null {
  const tree = treeOf(dev);
  const rid = dev.requesterId;
  for (let d: Device | null = dev; d; d = d.parent) {
    const np = d.ofNode;
    if (!np) continue;
    if (d !== dev && rid !== null && np.has('msi-map')) {
      const m = ofMapId(tree, np, rid, 'msi-map', 'msi-map-mask');
      if (m) return m.target;
    }
    const parents = ofMsiParent(tree, np);
    if (parents.length > 0) return parents[0].node;
  }
  return null;
}

/** Read the frame's firmware description and SPI block. */
// kernel: gicv2m_init_one() [irq-gic-v2m.c]
function probeFrame(dev: Device, node: DtNode): V2mFrame {
  const tree = treeOf(dev);
  if (!node.isCompatible(GICV2M_COMPATIBLE)) {
    throw new KernelError(
      'EOPNOTSUPP',
      `${dev.name}: MSI controller ${node.path} (compatible ${JSON.stringify(node.compatible)}) is not supported: only ${GICV2M_COMPATIBLE} frames are`,
    );
  }
  if (!node.available) throw new KernelError('ENODEV', `${dev.name}: MSI controller ${node.path} is disabled`);
  const gic = node.parent;
  if (!gic || !gic.has('interrupt-controller')) {
    throw new FirmwareError('dtb', 'GICv2m frame is not a child of an interrupt controller', node.offset, node.path);
  }
  const gicCells = gic.u32('#interrupt-cells');
  if (gicCells === undefined || gicCells < 3) {
    throw new FirmwareError('dtb', `parent GIC ${gic.path} has #interrupt-cells ${gicCells ?? 'absent'}, needs at least 3`, gic.offset, gic.path);
  }
  const reg = ofReg(tree, node)[0];
  if (!reg) throw new FirmwareError('dtb', 'GICv2m frame has no "reg"', node.offset, node.path);

  let spiStart: number;
  let nrSpis: number;
  const baseProp = node.u32('arm,msi-base-spi');
  const numProp = node.u32('arm,msi-num-spis');
  let source: string;
  if (baseProp !== undefined && numProp !== undefined) {
    spiStart = baseProp;
    nrSpis = numProp;
    source = '"arm,msi-base-spi"/"arm,msi-num-spis"';
  } else {
    const io = ioremap(dev.port, reg.address, Math.min(reg.size, V2M_FRAME_SIZE));
    const typer = io.readl(V2M_MSI_TYPER);
    io.unmap();
    spiStart = (typer >>> V2M_MSI_TYPER_BASE_SHIFT) & V2M_MSI_TYPER_BASE_MASK;
    nrSpis = typer & V2M_MSI_TYPER_NUM_MASK;
    source = `MSI_TYPER (0x${typer.toString(16)})`;
  }
  if (spiStart < V2M_MIN_SPI || nrSpis < 1 || spiStart + nrSpis - 1 > V2M_MAX_SPI) {
    throw new KernelError(
      'EINVAL',
      `GICv2m frame ${node.path}: invalid SPI block base ${spiStart}, count ${nrSpis} from ${source} (SPIs are ${V2M_MIN_SPI}..${V2M_MAX_SPI})`,
    );
  }
  dev.core.log.info(node.path, `GICv2m range [SPI ${spiStart}:${spiStart + nrSpis - 1}] at 0x${reg.address.toString(16)}`, 'iommu:bus:msi');
  return { node, base: reg.address, spiStart, nrSpis, owners: new Array<Device | null>(nrSpis).fill(null), gic, gicCells };
}

function frameFor(dev: Device): V2mFrame {
  const node = msiControllerOf(dev);
  if (!node) throw new KernelError('ENODEV', `${dev.name}: firmware names no MSI controller (no msi-parent or msi-map)`);
  const state = stateOf(dev.core);
  let frame = state.frames.get(node);
  if (!frame) {
    frame = probeFrame(dev, node);
    state.frames.set(node, frame);
  }
  return frame;
}

/**
 * / pci_alloc_irq_vectors(PCI_IRQ_MSI…): allocate
 * `n` MSI vectors for `dev`, all or none. The vectors are freed when the device's driver unbinds.
 */
// kernel: platform_device_msi_init_and_alloc_irqs() [platform-msi.c]
export function msiAllocVectors(dev: Device, n: number): MsiVector[] {
  if (!Number.isInteger(n) || n < 1) throw new KernelError('EINVAL', `${dev.name}: cannot allocate ${n} MSI vectors`);
  const state = stateOf(dev.core);
  if (state.vectors.has(dev)) throw new KernelError('EBUSY', `${dev.name} already has MSI vectors; free them first`);
  const frame = frameFor(dev);
  const free: number[] = [];
  for (let i = 0; i < frame.nrSpis && free.length < n; i++) if (frame.owners[i] === null) free.push(i);
  if (free.length < n) {
    const available = frame.owners.filter((o) => o === null).length;
    throw new KernelError(
      'ENOSPC',
      `${dev.name}: GICv2m frame ${frame.node.path} has ${available} free SPIs of ${frame.nrSpis}, ${n} MSI vectors wanted`,
    );
  }
  const vectors = free.map((slot, index): MsiVector => {
    frame.owners[slot] = dev;
    const intid = frame.spiStart + slot;
    const specifier = [GIC_SPI, intid - V2M_MIN_SPI, IRQ_TYPE_EDGE_RISING];
    while (specifier.length < frame.gicCells) specifier.push(0);
    return {
      index,
      address: frame.base + V2M_MSI_SETSPI_NS,
      data: intid,
      irq: { controller: frame.gic.path, specifier, name: `${dev.name}-msi${index}` },
    };
  });
  state.vectors.set(dev, { frame, vectors });
  dev.devres.add('msi vectors', () => {
    if (state.vectors.has(dev)) msiFreeVectors(dev);
  });
  return vectors;
}

/** The vectors `dev` holds (empty if none). */
export function msiVectors(dev: Device): readonly MsiVector[] {
  return stateOf(dev.core).vectors.get(dev)?.vectors ?? [];
}

/** Return the device's SPIs to its frame. Free the IRQs first. */
// kernel: msi_domain_free_irqs() [kernel/irq/msi.c]
export function msiFreeVectors(dev: Device): void {
  const state = stateOf(dev.core);
  const held = state.vectors.get(dev);
  if (!held) throw new KernelError('EINVAL', `${dev.name} holds no MSI vectors`);
  for (const v of held.vectors) held.frame.owners[v.data - held.frame.spiStart] = null;
  state.vectors.delete(dev);
}

/** Free SPIs left in the frame serving `dev` (for reports and tests). */
export function msiFreeCount(dev: Device): number {
  return frameFor(dev).owners.filter((o) => o === null).length;
}
