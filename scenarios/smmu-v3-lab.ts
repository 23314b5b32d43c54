/**
 * Lab helpers for the SMMUv3 scenarios and tests: boot a machine with an SMMUv3, reach the model and
 * the driver's instance, give a master a domain of its own (an UNMANAGED domain through the iommu
 * core's API, as a VFIO-style user would), map buffers into it, and run DMA through the DMA test
 * engines. The lab may hold the hardware model in one hand and the kernel in the other; the driver
 * never sees the model.
 */
import type { Device } from '../bus/device.js';
import { DtBuilder, reg, type DtProps } from '../bus/of/dt-builder.js';
import type { DeviceTree } from '../bus/of/tree.js';
import { iommuAttachDevice } from '../core/iommu-attach.js';
import { IOMMU_HWPT_ALLOC_NEST_PARENT, iommuPagingDomainAlloc, iommuPagingDomainAllocFlags, type IommuDomain } from '../core/iommu-domain.js';
import { iommuMap, iommuUnmap } from '../core/iommu-map.js';
import { IOMMU_READ, IOMMU_WRITE } from '../core/io-pgtable.js';
import { findArmSmmuV3, type ArmSmmuDevice } from '../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { findTestEngine, type FrameStatus, type TestEngine, type TestEngineCommand } from '../drivers/misc/dma-test-engine.js';
import type { Machine } from '../hw/machine.js';
import type { SmmuV3 } from '../hw/smmu-v3/smmu-v3.js';
import type { SmmuV3Options } from '../hw/smmu-v3/options.js';
import { orderForSize, PAGE_SIZE } from '../mm/page-alloc.js';
import type { Kernel } from '../kernel/kernel.js';
import { boot, machineFromTree, run, virtMachine } from './lib/lab.js';

/** The virt machine's SMMUv3 and the masters behind it. */
export const V3 = {
  smmu: '/iommu@9050000',
  /** StreamID 0x100, can stall, 8 PASID bits. */
  stallEngine: '/dma@c000000',
  /** StreamID 0x101. */
  engine: '/dma@c010000',
  /** PCI endpoint with ATS, PRI and 20 PASID bits (RID 0x08). */
  accel: '0000:00:01.0',
  /** PCI endpoint with ATS only (RID 0x10). */
  nic: '0000:00:02.0',
} as const;

/** The SMMUv3 model of the node at `path`. */
export function smmuModel(machine: Machine, path: string = V3.smmu): SmmuV3 {
  const entry = machine.iommus.get(path);
  const dev = entry?.instance?.mmio[0]?.device;
  if (!dev || entry.model !== 'smmu-v3') throw new Error(`${path} is not a modelled SMMUv3`);
  return dev as SmmuV3;
}

export interface SmmuV3Lab {
  machine: Machine;
  kernel: Kernel;
  /** The driver's instance. */
  smmu: ArmSmmuDevice;
  /** The hardware model. */
  model: SmmuV3;
}

export interface SmmuV3LabOptions {
  seed: number;
  /** Kernel command line. */
  bootargs?: string;
  /** SMMUv3 model options. */
  smmu?: SmmuV3Options;
  /** A machine description other than `virt` (its SMMUv3 must be at `smmuPath`). */
  tree?: DeviceTree;
  smmuPath?: string;
}

/** Build the machine, boot a kernel, and find the SMMUv3 on both sides. */
export async function bootSmmuV3(opts: SmmuV3LabOptions): Promise<SmmuV3Lab> {
  const path = opts.smmuPath ?? V3.smmu;
  const iommuOptions = opts.smmu ? { [path]: opts.smmu as Record<string, unknown> } : undefined;
  const machine = opts.tree
    ? machineFromTree(opts.tree, { seed: opts.seed, iommuOptions })
    : virtMachine({ seed: opts.seed, iommuOptions, bootargs: opts.bootargs });
  const kernel = await boot(machine, opts.tree && opts.bootargs !== undefined ? { cmdline: opts.bootargs } : {});
  return { machine, kernel, smmu: findArmSmmuV3(kernel.core, path), model: smmuModel(machine, path) };
}

export interface SmallMachineOptions {
  /** Extra properties of the SMMUv3 node (quirks). */
  smmuProps?: DtProps;
  /** Size of the SMMUv3 register region (default 128 KiB). */
  smmuRegSize?: number;
  /** DMA test engines behind the SMMU, by StreamID. */
  engines: { sid: number; canStall?: boolean; pasidBits?: number }[];
  bootargs?: string;
  /** Where the 1 GiB of RAM starts (default 0x4000_0000). */
  ramBase?: number;
}

export const SMALL_SMMU_PATH = '/iommu@9050000';

/**
 * A small machine: GIC, 1 GiB of RAM (at `ramBase`), one SMMUv3 (wired interrupts) and DMA test engines with the
 * StreamIDs asked for, at 0x0c00_0000 + n * 64 KiB.
 */
export function smallSmmuV3Tree(opts: SmallMachineOptions): DeviceTree {
  const b = new DtBuilder({ compatible: ['iommu-sim,smmuv3-lab'], model: 'SMMUv3 lab', '#address-cells': 2, '#size-cells': 2 });
  if (opts.bootargs !== undefined) b.node('/chosen', { bootargs: opts.bootargs });
  const ramBase = opts.ramBase ?? 0x4000_0000;
  b.node(`/memory@${ramBase.toString(16)}`, { device_type: 'memory', reg: reg([ramBase, 0x4000_0000]) });
  const gic = b.node('/intc@8000000', {
    compatible: ['arm,cortex-a15-gic'],
    'interrupt-controller': true,
    '#interrupt-cells': 3,
    reg: reg([0x0800_0000, 0x1_0000], [0x0801_0000, 0x1_0000]),
  });
  b.root.set({ 'interrupt-parent': gic });
  const spi = (n: number): number[] => [0, n, 1];
  const smmu = b.node(SMALL_SMMU_PATH, {
    compatible: 'arm,smmu-v3',
    reg: reg([0x0905_0000, opts.smmuRegSize ?? 0x2_0000]),
    interrupts: [...spi(74), ...spi(75), ...spi(76), ...spi(77)],
    'interrupt-names': ['eventq', 'priq', 'cmdq-sync', 'gerror'],
    'dma-coherent': true,
    '#iommu-cells': 1,
    ...opts.smmuProps,
  });
  opts.engines.forEach((e, i) => {
    const base = 0x0c00_0000 + i * 0x1_0000;
    const props: DtProps = {
      compatible: 'iommu-sim,dma-test-engine',
      reg: reg([base, 0x1_0000]),
      interrupts: [0, 96 + i, 4],
      'dma-coherent': true,
      iommus: [smmu, e.sid],
    };
    if (e.canStall) props['dma-can-stall'] = true;
    if (e.pasidBits) props['pasid-num-bits'] = e.pasidBits;
    b.node(`/dma@${base.toString(16)}`, props);
  });
  return b.build();
}

/** The engine driver's handle for a master. */
export function engineOf(lab: SmmuV3Lab, path: string): TestEngine {
  return findTestEngine(lab.kernel.core, path);
}

export function deviceOf(lab: SmmuV3Lab, name: string): Device {
  const dev = lab.kernel.core.findDevice(name);
  if (!dev) throw new Error(`no device ${name}`);
  return dev;
}

/** Run kernel-side work to completion in virtual time. */
export function runIn<T>(lab: SmmuV3Lab, p: Promise<T>, what = 'task'): Promise<T> {
  return run(lab.machine, p, what, 10_000_000_000);
}

/**
 * Give `dev` an UNMANAGED domain of its own: stage 1, or stage 2 (a nesting parent).
 * // what VFIO does with iommu_paging_domain_alloc() + iommu_attach_device()
 */
export async function ownDomain(lab: SmmuV3Lab, name: string, stage: 'S1' | 'S2' = 'S1'): Promise<IommuDomain> {
  const dev = deviceOf(lab, name);
  const domain = stage === 'S1' ? iommuPagingDomainAlloc(dev) : iommuPagingDomainAllocFlags(dev, IOMMU_HWPT_ALLOC_NEST_PARENT);
  await runIn(lab, iommuAttachDevice(domain, dev), 'attach');
  return domain;
}

/** Physical pages the lab owns for DMA (zeroed). */
export function allocPages(lab: SmmuV3Lab, size: number, what = 'smmu-v3 lab buffer'): number {
  return lab.kernel.alloc.allocPages(orderForSize(size), { kind: 'dma', device: 'smmu-v3 lab', what }, { zero: true });
}

/** Map `size` bytes of physical `pa` at `iova` (read + write) and wait for the map to be visible. */
export function mapRange(lab: SmmuV3Lab, domain: IommuDomain, iova: number, pa: number, size: number, prot = IOMMU_READ | IOMMU_WRITE): Promise<void> {
  return runIn(lab, iommuMap(domain, iova, pa, size, prot), 'map');
}

export function unmapRange(lab: SmmuV3Lab, domain: IommuDomain, iova: number, size: number): Promise<number> {
  return runIn(lab, iommuUnmap(domain, iova, size), 'unmap');
}

/** Run one engine job and return its final status (never throws for a DMA failure). */
export async function engineJob(lab: SmmuV3Lab, path: string, cmd: TestEngineCommand, opts: { ssid?: number } = {}): Promise<FrameStatus> {
  const engine = engineOf(lab, path);
  const frame = engine.start(cmd, opts.ssid === undefined ? {} : { ssid: opts.ssid });
  const status = await runIn(lab, engine.wait(frame), 'engine job');
  engine.release(frame);
  return status;
}

/** Bytes of physical memory, as the CPU reads them. */
export function readPhys(lab: SmmuV3Lab, pa: number, len: number): Uint8Array {
  return lab.machine.cpu.ram.read(pa, len);
}

export function fillPhys(lab: SmmuV3Lab, pa: number, len: number, byte: number): void {
  lab.machine.cpu.ram.fill(pa, len, byte);
}

/** What `copyThrough` found: the job's outcome and where the bytes were. */
export interface CopyResult {
  /** The engine's final state and DMA status, "done/ok" when the copy completed. */
  status: string;
  /** The destination page holds `pattern` in every byte. */
  landed: boolean;
  domain: IommuDomain;
  src: number;
  dst: number;
}

/**
 * The lab's basic DMA check: attach `engine` to its own domain (stage 1 or 2), map a source page
 * filled with `pattern` at 0x1000_0000 and an empty page at 0x2000_0000, have the engine copy one to
 * the other, and read what landed.
 */
export async function copyThrough(lab: SmmuV3Lab, engine: string, stage: 'S1' | 'S2', pattern: number): Promise<CopyResult> {
  const domain = await ownDomain(lab, engine, stage);
  const src = allocPages(lab, 4096);
  const dst = allocPages(lab, 4096);
  fillPhys(lab, src, 4096, pattern);
  await mapRange(lab, domain, COPY_SRC_IOVA, src, 4096);
  await mapRange(lab, domain, COPY_DST_IOVA, dst, 4096);
  const st = await engineJob(lab, engine, { op: 'copy', src: COPY_SRC_IOVA, dst: COPY_DST_IOVA, len: 4096 });
  const landed = readPhys(lab, dst, 4096).every((b) => b === pattern);
  return { status: `${st.state}/${st.dmaStatus}`, landed, domain, src, dst };
}

export const COPY_SRC_IOVA = 0x1000_0000;
export const COPY_DST_IOVA = 0x2000_0000;

/** Advance virtual time (let interrupt threads and queued hardware work finish). */
export function settle(lab: SmmuV3Lab, ns = 100_000): Promise<void> {
  return lab.machine.scheduler.runFor(ns);
}

export { PAGE_SIZE };
