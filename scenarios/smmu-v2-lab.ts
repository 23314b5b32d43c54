/**
 * Bench helpers of the SMMUv2 (arm-smmu) scenarios and tests: a machine with an MMU-500 (or another
 * v1/v2 flavour) in front of masters that can and cannot stall, and small helpers to find kernel
 * devices and masters and to read the SMMU's registers from the lab side (the lab may look at the
 * hardware; the kernel never does).
 *
 * Machine layout (`smmuV2Machine`):
 *   0x0800_0000  GICv2
 *   0x0b00_0000  the SMMU: one global interrupt (SPI 80) and eight context interrupts (SPI 81-88)
 *   0x0c00_0000+ masters (platform DMA masters the lab drives through `machine.masters`):
 *                /dma@c000000 SID 0x400, dma-can-stall        (stall master A)
 *                /dma@c010000 SID 0x401, dma-can-stall        (stall master B)
 *                /dma@c020000 SID 0x402                       (cannot stall)
 *                /dma@c030000 SID 0x420 mask 0x3 (2-cell)     (an SMR mask from firmware)
 *                /gpu@c040000 SID 0 (option `gpuMaster`), more masters with `extraMasters`
 *   /stray-dma   SID 0x7f0, no `compatible`: hardware the kernel never learns about (its stream is
 *                unmatched, so sCR0.USFCFG decides its fate)
 *   0x4000_0000  RAM (1 GiB)
 */
import { DtBuilder, ranges, reg } from '../bus/of/dt-builder.js';
import type { DeviceTree } from '../bus/of/tree.js';
import { devIommu } from '../core/iommu-device.js';
import type { Machine } from '../hw/machine.js';
import type { Kernel } from '../kernel/kernel.js';
import { machineFromTree, type MachineBuildOptions } from './lib/lab.js';

export const SMMU_V2_LAB = {
  gicDist: 0x0800_0000,
  gicCpu: 0x0801_0000,
  smmu: 0x0b00_0000,
  smmuSize: 0x2_0000,
  ramBase: 0x4000_0000,
  ramSize: 0x4000_0000,
  masterA: '/dma@c000000',
  masterB: '/dma@c010000',
  masterNoStall: '/dma@c020000',
  masterMasked: '/dma@c030000',
  stray: '/stray-dma',
  gpu: '/gpu@c040000',
  smmuPath: '/iommu@b000000',
  sidA: 0x400,
  sidB: 0x401,
  sidNoStall: 0x402,
  sidMasked: 0x420,
  maskMasked: 0x3,
  sidStray: 0x7f0,
} as const;

export interface SmmuV2MachineOptions extends MachineBuildOptions {
  /** The SMMU node's compatible list (default MMU-500). */
  compatible?: string[];
  bootargs?: string;
  /** `#global-interrupts` (default 1; null leaves the property out). */
  globalInterrupts?: number | null;
  /** Context interrupts after the global one (default 8: SPIs 81-88). */
  contextInterrupts?: number;
  /** A master with stream ID 0 at /gpu@c040000 (what the Qualcomm Adreno flavour calls the GPU). */
  gpuMaster?: boolean;
  /** `#iommu-cells` of the SMMU (default 2); with 1, masters give only their stream ID. */
  iommuCells?: 1 | 2;
  /** The SMMU node's `stream-match-mask` (the SMR mask of 1-cell specifiers). */
  streamMatchMask?: number;
  /** More masters behind the SMMU: DT path, `iommus` cells (stream ID, mask), dma-can-stall. */
  extraMasters?: readonly { path: string; cells: readonly number[]; stall?: boolean }[];
}

const spi = (n: number): number[] => [0, n, 4];

/** The device tree of the SMMUv2 lab machine. */
export function buildSmmuV2DeviceTree(opts: SmmuV2MachineOptions = {}): DeviceTree {
  const L = SMMU_V2_LAB;
  const b = new DtBuilder({ compatible: ['iommu-sim,smmu-v2-lab'], model: 'iommu-sim smmu-v2 lab', '#address-cells': 2, '#size-cells': 2 });
  b.node('/chosen', opts.bootargs ? { bootargs: opts.bootargs } : {});
  b.node(`/memory@${L.ramBase.toString(16)}`, { device_type: 'memory', reg: reg([L.ramBase, L.ramSize]) });
  const gic = b.node(`/intc@${L.gicDist.toString(16)}`, {
    compatible: ['arm,cortex-a15-gic'],
    'interrupt-controller': true,
    '#interrupt-cells': 3,
    '#address-cells': 2,
    '#size-cells': 2,
    ranges: ranges(),
    reg: reg([L.gicDist, 0x1_0000], [L.gicCpu, 0x1_0000]),
  });
  b.root.set({ 'interrupt-parent': gic });
  const nContext = opts.contextInterrupts ?? 8;
  const smmu = b.node(L.smmuPath, {
    compatible: opts.compatible ?? ['arm,mmu-500'],
    reg: reg([L.smmu, L.smmuSize]),
    interrupts: Array.from({ length: 1 + nContext }, (_, i) => 80 + i).flatMap(spi),
    'dma-coherent': true,
    '#iommu-cells': opts.iommuCells ?? 2,
  });
  if (opts.streamMatchMask !== undefined) smmu.set({ 'stream-match-mask': opts.streamMatchMask });
  if (opts.globalInterrupts !== null) smmu.set({ '#global-interrupts': opts.globalInterrupts ?? 1 });
  const master = (path: string, cells: number[], stall: boolean, compatible: string | null): void => {
    const props: Record<string, unknown> = { iommus: [smmu, ...cells.slice(0, opts.iommuCells ?? 2)], 'dma-coherent': true };
    if (compatible) props.compatible = compatible;
    if (stall) props['dma-can-stall'] = true;
    b.node(path, props as Parameters<typeof b.node>[1]);
  };
  master(L.masterA, [L.sidA, 0], true, 'iommu-sim,lab-dma');
  master(L.masterB, [L.sidB, 0], true, 'iommu-sim,lab-dma');
  master(L.masterNoStall, [L.sidNoStall, 0], false, 'iommu-sim,lab-dma');
  master(L.masterMasked, [L.sidMasked, L.maskMasked], false, 'iommu-sim,lab-dma');
  master(L.stray, [L.sidStray, 0], false, null);
  if (opts.gpuMaster) master(L.gpu, [0, 0], true, 'iommu-sim,lab-dma');
  for (const m of opts.extraMasters ?? []) master(m.path, [...m.cells], m.stall ?? false, 'iommu-sim,lab-dma');
  return b.build();
}

export function smmuV2Machine(opts: SmmuV2MachineOptions = {}): Machine {
  return machineFromTree(buildSmmuV2DeviceTree(opts), opts);
}

/** The kernel device of a DT path (throws if the kernel has none). */
export function deviceOf(kernel: Kernel, path: string): import('../bus/device.js').Device {
  const node = kernel.dt.byPath(path);
  const dev = node ? kernel.core.findDeviceByOfNode(node) : undefined;
  if (!dev) throw new Error(`no kernel device for ${path}`);
  return dev;
}

/** The group ID of a device in the iommu core, or null. */
export function groupIdOf(kernel: Kernel, path: string): number | null {
  return devIommu(deviceOf(kernel, path))?.group?.id ?? null;
}

/** A 32-bit register of the lab SMMU, as the CPU reads it (no side effects on these registers). */
export function smmuReg(machine: Machine, off: number): number {
  return machine.cpu.mmioRead32(SMMU_V2_LAB.smmu + off);
}

/** The physical address of a register of context bank `n` of the lab SMMU (page size and NUMPAGE from its ID1). */
export function cbRegAddr(machine: Machine, n: number, off: number): number {
  const id1 = smmuReg(machine, 0x24);
  const pgshift = id1 >>> 31 ? 16 : 12;
  const numpage = 1 << (((id1 >>> 28) & 7) + 1);
  return SMMU_V2_LAB.smmu + ((numpage + n) << pgshift) + off;
}

/** A register of context bank `n` of the lab SMMU. */
export function cbReg(machine: Machine, n: number, off: number): number {
  return machine.cpu.mmioRead32(cbRegAddr(machine, n, off));
}

/** A 4K page of RAM owned by the kernel, zeroed. */
export function kernelPage(kernel: Kernel, what = 'smmu-v2 lab page'): number {
  return kernel.alloc.allocPages(0, { kind: 'kernel', what }, { zero: true });
}

/** A platform DMA master of the machine by DT path. */
export function masterOf(machine: Machine, path: string): import('../hw/masters/dma-master.js').DmaMaster {
  const m = machine.masters.get(path);
  if (!m) throw new Error(`no DMA master ${path}`);
  return m;
}
