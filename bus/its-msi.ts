/**
 * Platform MSIs through a GICv3 ITS (kernel: drivers/irqchip/irq-gic-v3-its.c and
 * irq-gic-v3-its-msi-parent.c), the subset a platform device such as an SMMUv3 needs.
 *
 * A device's ITS and DeviceID come from firmware: its `msi-parent = <&its DeviceID>` (on an ACPI
 * machine the kernel's tree carries the IORT DeviceID mapping of the node there:
 * iort_pmsi_get_dev_id()). The first allocation probes the ITS: a 64 KiB command queue from the
 * caller's page allocator (GITS_CBASER), the ITS enabled, collection 0 mapped to the boot CPU's
 * redistributor (MAPC, SYNC). Each device is mapped once (MAPD with an ITT page and enough EventID
 * bits for its vectors); each vector is EventID i mapped to a fresh LPI in collection 0 (MAPTI); a
 * SYNC ends the batch and the allocation waits for GITS_CREADR to reach it. The device then writes
 * EventID i to GITS_TRANSLATER, and the ITS raises the LPI, named to requestIrq as the GIC's
 * specifier type 4 (LPI number - 8192).
 *
 * Not done: GITS_BASER tables (the ITS this simulator models keeps its tables itself and reports
 * none), the LPI property and pending tables, several collections or CPUs, PCI MSI through the ITS
 * (PCI functions here use INTx or a GICv2m frame).
 */
import type { RamAccess } from '../hw/cpu-port.js';
import type { Device } from './device.js';
import type { DriverCore } from './driver-core.js';
import { KernelError } from './errno.js';
import { FirmwareError } from './firmware-error.js';
import { type IoMem, ioremap, readlPollTimeout } from './io.js';
import type { MsiVector } from './msi.js';
import { ofReg } from './of/address.js';
import { ofMsiParent } from './of/irq.js';
import type { DtNode } from './of/tree.js';

export const GIC_V3_ITS_COMPATIBLE = 'arm,gic-v3-its';

// GITS_* registers (kernel: include/linux/irqchip/arm-gic-v3.h).
const GITS_CTLR = 0x0000;
const GITS_TYPER = 0x0008;
const GITS_CBASER = 0x0080;
const GITS_CWRITER = 0x0088;
const GITS_CREADR = 0x0090;
export const GITS_TRANSLATER = 0x10040;
const GITS_CTLR_ENABLE = 1 << 0;
const GITS_TYPER_PLPIS = 1n << 0n;
const GITS_CBASER_VALID = 1n << 63n;

const GITS_CMD_MAPD = 0x08n;
const GITS_CMD_MAPC = 0x09n;
const GITS_CMD_MAPTI = 0x0an;
const GITS_CMD_DISCARD = 0x0fn;
const GITS_CMD_SYNC = 0x05n;
const ITS_CMD_QUEUE_SZ = 0x1_0000;
const ITS_CMD_SIZE = 32;
/** The ITS's own frame and its translation frame. */
const ITS_REGION = 0x2_0000;

/** LPIs start at INTID 8192; the GIC specifier type this simulator names them with. */
const GIC_LPI_BASE = 8192;
const GIC_LPI = 4;
const IRQ_TYPE_EDGE_RISING = 1;
const ITS_POLL_TIMEOUT_US = 1_000_000;
/** An ITT has room for at least 32 events (kernel: its_create_device() rounds up to an LPI chunk). */
const ITS_MIN_EVENT_BITS = 5;

/** Memory the ITS layer takes its queue and ITTs from (the caller's kernel). */
export interface ItsMemory {
  allocPages(order: number, owner: { kind: 'dma'; device: string; what: string }, options?: { zero?: boolean }): number;
  freePages(pa: number, order: number): void;
  readonly ram: RamAccess;
}

/** One ITS as this kernel drives it (kernel: struct its_node). */
interface ItsNode {
  readonly node: DtNode;
  readonly base: number;
  readonly io: IoMem;
  readonly cmdPa: number;
  cwriter: number;
  readonly gicPath: string;
  readonly mem: ItsMemory;
  /** DeviceID → its ITT and which EventIDs are taken (kernel: struct its_device and its event_map). */
  readonly devices: Map<number, { ittPa: number; bits: number; used: Set<number> }>;
}

interface ItsState {
  readonly its: Map<DtNode, ItsNode>;
  nextLpi: number;
  readonly vectors: Map<Device, { its: ItsNode; deviceId: number; vectors: MsiVector[] }>;
}

const states = new WeakMap<DriverCore, ItsState>();

function stateOf(core: DriverCore): ItsState {
  let s = states.get(core);
  if (!s) {
    s = { its: new Map(), nextLpi: GIC_LPI_BASE, vectors: new Map() };
    states.set(core, s);
  }
  return s;
}

/** Queue one command (kernel: its_send_single_command(), without the wait). */
function itsQueue(its: ItsNode, dw: readonly bigint[]): void {
  const b = new Uint8Array(ITS_CMD_SIZE);
  const v = new DataView(b.buffer);
  dw.forEach((d, i) => v.setBigUint64(i * 8, BigInt.asUintN(64, d), true));
  its.mem.ram.write(its.cmdPa + its.cwriter, b);
  its.cwriter = (its.cwriter + ITS_CMD_SIZE) % ITS_CMD_QUEUE_SZ;
  its.io.writeq(BigInt(its.cwriter), GITS_CWRITER);
}

/** Wait until the ITS has consumed every queued command. */
// kernel: its_wait_for_range_completion() [irq-gic-v3-its.c]
async function itsWait(its: ItsNode): Promise<void> {
  try {
    await readlPollTimeout(its.io, GITS_CREADR, (v) => v === its.cwriter, 1, ITS_POLL_TIMEOUT_US);
  } catch {
    throw new KernelError('ETIMEDOUT', `ITS ${its.node.path}: command queue stuck (CREADR never reached 0x${its.cwriter.toString(16)})`);
  }
}

const sync = (): bigint[] => [GITS_CMD_SYNC, 0n, 0n, 0n];

// kernel: its_probe_one() [irq-gic-v3-its.c]
async function itsProbe(dev: Device, node: DtNode, mem: ItsMemory): Promise<ItsNode> {
  const tree = dev.core.dt;
  if (!tree) throw new KernelError('ENODEV', `${dev.name}: no device tree`);
  if (!node.available) throw new KernelError('ENODEV', `${dev.name}: ITS ${node.path} is disabled`);
  const reg = ofReg(tree, node)[0];
  if (!reg) throw new FirmwareError('dtb', 'ITS node has no "reg"', node.offset, node.path);
  const gic = node.parent;
  if (!gic || !gic.has('interrupt-controller')) throw new FirmwareError('dtb', 'ITS is not a child of an interrupt controller', node.offset, node.path);
  const io = ioremap(dev.port, reg.address, Math.max(reg.size, ITS_REGION));
  const typer = io.readq(GITS_TYPER);
  if (!(typer & GITS_TYPER_PLPIS)) throw new KernelError('ENODEV', `ITS ${node.path}: no physical LPIs (GITS_TYPER 0x${typer.toString(16)})`);
  const order = Math.log2(ITS_CMD_QUEUE_SZ / 0x1000);
  const cmdPa = mem.allocPages(order, { kind: 'dma', device: node.path, what: 'ITS command queue' }, { zero: true });
  io.writel(0, GITS_CTLR);
  io.writeq(GITS_CBASER_VALID | BigInt(cmdPa) | BigInt(ITS_CMD_QUEUE_SZ / 0x1000 - 1), GITS_CBASER);
  io.writeq(0n, GITS_CWRITER);
  io.writel(GITS_CTLR_ENABLE, GITS_CTLR);
  const its: ItsNode = { node, base: reg.address, io, cmdPa, cwriter: 0, gicPath: gic.path, mem, devices: new Map() };
  // Collection 0 on the boot CPU's redistributor (kernel: its_cpu_init_collection()).
  itsQueue(its, [GITS_CMD_MAPC, 0n, (1n << 63n) | 0n, 0n]);
  itsQueue(its, sync());
  await itsWait(its);
  dev.core.log.info(node.path, `ITS at 0x${reg.address.toString(16)}: command queue at 0x${cmdPa.toString(16)}`, 'iommu:bus:msi');
  return its;
}

/** The ITS and DeviceID firmware gives `dev`: its `msi-parent` with one specifier cell; null when not an ITS. */
export function itsOf(dev: Device): { node: DtNode; deviceId: number } | null {
  const tree = dev.core.dt;
  if (!tree || !dev.ofNode) return null;
  const p = ofMsiParent(tree, dev.ofNode)[0];
  if (!p || !p.node.has('compatible') || !p.node.isCompatible(GIC_V3_ITS_COMPATIBLE)) return null;
  if (p.args.length !== 1) throw new FirmwareError('dtb', `msi-parent to ITS ${p.node.path} needs one DeviceID cell, has ${p.args.length}`, dev.ofNode.offset, dev.ofNode.path);
  return { node: p.node, deviceId: p.args[0] };
}

/**
 * Allocate `n` MSI vectors for `dev` through its ITS, all or none; freed when its driver unbinds.
 */
// kernel: its_irq_domain_alloc() [irq-gic-v3-its.c]
export async function itsMsiAllocVectors(dev: Device, n: number, mem: ItsMemory): Promise<MsiVector[]> {
  if (!Number.isInteger(n) || n < 1 || n > 32) throw new KernelError('EINVAL', `${dev.name}: cannot allocate ${n} MSI vectors`);
  const target = itsOf(dev);
  if (!target) throw new KernelError('ENODEV', `${dev.name}: firmware names no ITS (msi-parent with a DeviceID)`);
  const state = stateOf(dev.core);
  if (state.vectors.has(dev)) throw new KernelError('EBUSY', `${dev.name} already has MSI vectors; free them first`);
  let its = state.its.get(target.node);
  if (!its) {
    its = await itsProbe(dev, target.node, mem);
    state.its.set(target.node, its);
  }
  const { deviceId } = target;
  // As its_msi_prepare() → its_create_device(): an ITT with room for at least 32 events. A
  // second device with the same DeviceID (firmware giving two devices one ID) reuses it, as Linux
  // does ("Reusing ITT for devID"), and takes the next free EventIDs.
  let d = its.devices.get(deviceId);
  if (!d) {
    const bits = Math.max(ITS_MIN_EVENT_BITS, Math.ceil(Math.log2(n)));
    const ittPa = mem.allocPages(0, { kind: 'dma', device: dev.name, what: 'ITS ITT' }, { zero: true });
    itsQueue(its, [GITS_CMD_MAPD | (BigInt(deviceId) << 32n), BigInt(bits - 1), (1n << 63n) | BigInt(ittPa), 0n]);
    d = { ittPa, bits, used: new Set() };
    its.devices.set(deviceId, d);
  } else {
    dev.core.log.info(dev.name, `ITS ${its.node.path}: reusing ITT for DeviceID 0x${deviceId.toString(16)}`, 'iommu:bus:msi');
  }
  const events: number[] = [];
  for (let e = 0; e < 2 ** d.bits && events.length < n; e++) if (!d.used.has(e)) events.push(e);
  if (events.length < n) throw new KernelError('ENOSPC', `${dev.name}: DeviceID 0x${deviceId.toString(16)} on ITS ${its.node.path} has ${events.length} free EventIDs, ${n} wanted`);
  const vectors: MsiVector[] = [];
  events.forEach((eventId, i) => {
    d.used.add(eventId);
    const lpi = state.nextLpi++;
    itsQueue(its, [GITS_CMD_MAPTI | (BigInt(deviceId) << 32n), BigInt(eventId) | (BigInt(lpi) << 32n), 0n, 0n]);
    vectors.push({
      index: i,
      address: its.base + GITS_TRANSLATER,
      data: eventId,
      irq: { controller: its.gicPath, specifier: [GIC_LPI, lpi - GIC_LPI_BASE, IRQ_TYPE_EDGE_RISING], name: `${dev.name}-msi${i}` },
    });
  });
  itsQueue(its, sync());
  await itsWait(its);
  dev.core.log.info(dev.name, `ITS ${its.node.path}: DeviceID 0x${deviceId.toString(16)}, EventIDs ${events.join(', ')} → LPIs ${vectors.map((v) => v.irq.specifier[1] + GIC_LPI_BASE).join(', ')}`, 'iommu:bus:msi');
  const mapped = its;
  state.vectors.set(dev, { its: mapped, deviceId, vectors });
  dev.devres.add('ITS msi vectors', () => itsMsiFreeVectors(dev));
  return vectors;
}

/** Unmap the device's events and the device (queued; nothing waits for them). */
// kernel: its_irq_domain_free() [irq-gic-v3-its.c]
export function itsMsiFreeVectors(dev: Device): void {
  const state = stateOf(dev.core);
  const held = state.vectors.get(dev);
  if (!held) return;
  const { its, deviceId } = held;
  const d = its.devices.get(deviceId);
  for (const v of held.vectors) {
    itsQueue(its, [GITS_CMD_DISCARD | (BigInt(deviceId) << 32n), BigInt(v.data), 0n, 0n]);
    d?.used.delete(v.data);
  }
  if (d && d.used.size === 0) {
    itsQueue(its, [GITS_CMD_MAPD | (BigInt(deviceId) << 32n), 0n, 0n, 0n]);
    its.mem.freePages(d.ittPa, 0);
    its.devices.delete(deviceId);
  }
  itsQueue(its, sync());
  state.vectors.delete(dev);
}
