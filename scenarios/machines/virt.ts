/**
 * The built-in `virt` machine, written as a Device Tree (the firmware makes the machine).
 *
 * Layout follows QEMU's arm `virt` where it has a counterpart:
 *   0x0800_0000  GIC-400 style GICv2 (distributor, CPU interface) with a GICv2m MSI frame
 *   0x0905_0000  SMMUv3 (eventq/priq/cmdq-sync/gerror on SPIs 74-77), in front of the PCIe root
 *                complex (`iommu-map`) and two DMA test engines (one can stall)
 *   0x0910_0000  with the `cmdqv` option (the Grace-like variant): an NVIDIA Tegra241 CMDQV of that
 *                SMMUv3 (`nvidia,cmdqv`), its error interrupt on SPI 78
 *   0x0b00_0000  MMU-500 (one global + eight context interrupts, 2-cell `iommus`: SID and SMR mask),
 *                in front of DMA test engines that can and cannot stall
 *   0x0c00_0000  DMA test engines, 64 KiB of frames each
 *   0x3f00_0000  PCIe ECAM (buses 0-15): endpoints with ATS/PRI/PASID, ATS only, and a
 *                two-function device without ATS
 *   0x4000_0000  2 GiB of RAM (sparse: costs only what is touched)
 */
import { DtBuilder, ranges, reg } from '../../bus/of/dt-builder.js';
import type { DeviceTree } from '../../bus/of/tree.js';

export const VIRT = {
  ramBase: 0x4000_0000,
  ramSize: 0x8000_0000,
  gicDist: 0x0800_0000,
  gicCpu: 0x0801_0000,
  gicV2m: 0x0802_0000,
  smmuV3: 0x0905_0000,
  /** Grace CMDQV of the SMMUv3 (with the `cmdqv` option): 4 VINTF apertures. */
  cmdqv: 0x0910_0000,
  cmdqvSize: 0xb_0000,
  mmu500: 0x0b00_0000,
  testEngineBase: 0x0c00_0000,
  testEngineSize: 0x1_0000,
  ecam: 0x3f00_0000,
  /** Firmware keeps this RAM for itself (reserved-memory, no-map). */
  firmwareReserved: { base: 0x7ff0_0000, size: 0x10_0000 },
  /** The boot loader's own memreserve entry (where it left the DTB). */
  dtbReserved: { base: 0x4000_0000, size: 0x1_0000 },
} as const;

/** GIC SPI specifier: <0 n 4> level-high, <0 n 1> edge-rising. */
const spi = (n: number, edge = false): number[] => [0, n, edge ? 1 : 4];

export interface VirtOptions {
  /** Kernel command line placed in /chosen/bootargs. */
  bootargs?: string;
  /** RAM size in bytes from VIRT.ramBase (default VIRT.ramSize, 2 GiB). */
  ramSize?: number;
  /**
   * Give the SMMUv3 a Grace (Tegra241) CMDQV (default false: the plain `virt`, whose results the
   * existing scenarios record).
   */
  cmdqv?: boolean;
}

export function buildVirtDeviceTree(opts: VirtOptions = {}): DeviceTree {
  const b = new DtBuilder({
    compatible: ['iommu-sim,virt'],
    model: 'iommu-sim virt',
    '#address-cells': 2,
    '#size-cells': 2,
  });
  b.memreserve(VIRT.dtbReserved.base, VIRT.dtbReserved.size);

  b.node('/chosen', opts.bootargs ? { bootargs: opts.bootargs } : {});
  b.node('/cpus', { '#address-cells': 1, '#size-cells': 0 });
  b.node('/cpus/cpu@0', { device_type: 'cpu', compatible: 'arm,cortex-a57', reg: 0, 'enable-method': 'psci' });
  b.node(`/memory@${hex(VIRT.ramBase)}`, { device_type: 'memory', reg: reg([VIRT.ramBase, opts.ramSize ?? VIRT.ramSize]) });
  b.node('/reserved-memory', { '#address-cells': 2, '#size-cells': 2, ranges: ranges() });
  b.node(`/reserved-memory/firmware@${hex(VIRT.firmwareReserved.base)}`, {
    reg: reg([VIRT.firmwareReserved.base, VIRT.firmwareReserved.size]),
    'no-map': true,
  });

  const gic = b.node(`/intc@${hex(VIRT.gicDist)}`, {
    compatible: ['arm,cortex-a15-gic'],
    'interrupt-controller': true,
    '#interrupt-cells': 3,
    '#address-cells': 2,
    '#size-cells': 2,
    ranges: ranges(),
    reg: reg([VIRT.gicDist, 0x1_0000], [VIRT.gicCpu, 0x1_0000]),
  });
  const v2m = b.node(`/intc@${hex(VIRT.gicDist)}/v2m@${hex(VIRT.gicV2m)}`, {
    compatible: 'arm,gic-v2m-frame',
    'msi-controller': true,
    reg: reg([VIRT.gicV2m, 0x1000]),
    'arm,msi-base-spi': 128,
    'arm,msi-num-spis': 64,
  });
  b.root.set({ 'interrupt-parent': gic });

  const cmdqv = opts.cmdqv
    ? b.node(`/cmdqv@${hex(VIRT.cmdqv)}`, {
        compatible: 'nvidia,tegra241-cmdqv',
        reg: reg([VIRT.cmdqv, VIRT.cmdqvSize]),
        interrupts: spi(78, true),
      })
    : null;
  const smmuv3 = b.node(`/iommu@${hex(VIRT.smmuV3)}`, {
    compatible: 'arm,smmu-v3',
    reg: reg([VIRT.smmuV3, 0x2_0000]),
    interrupts: [...spi(74, true), ...spi(75, true), ...spi(76, true), ...spi(77, true)],
    'interrupt-names': ['eventq', 'priq', 'cmdq-sync', 'gerror'],
    'dma-coherent': true,
    '#iommu-cells': 1,
    ...(cmdqv ? { 'nvidia,cmdqv': cmdqv } : {}),
  });

  const mmu500 = b.node(`/iommu@${hex(VIRT.mmu500)}`, {
    compatible: 'arm,mmu-500',
    reg: reg([VIRT.mmu500, 0x2_0000]),
    '#global-interrupts': 1,
    interrupts: [80, 81, 82, 83, 84, 85, 86, 87, 88].flatMap((n) => spi(n)),
    'dma-coherent': true,
    '#iommu-cells': 2,
  });

  // DMA test engines: which IOMMU, its specifier, whether firmware says it can stall.
  const engines: { iommu: typeof smmuv3 | null; cells: number[]; stall: boolean; pasidBits?: number }[] = [
    { iommu: smmuv3, cells: [0x100], stall: true, pasidBits: 8 },
    { iommu: smmuv3, cells: [0x101], stall: false },
    { iommu: mmu500, cells: [0x400, 0x0], stall: true },
    { iommu: mmu500, cells: [0x401, 0x0], stall: false },
    { iommu: null, cells: [], stall: false },
  ];
  engines.forEach((e, i) => {
    const base = VIRT.testEngineBase + i * VIRT.testEngineSize;
    const props: Record<string, unknown> = {
      compatible: 'iommu-sim,dma-test-engine',
      reg: reg([base, VIRT.testEngineSize]),
      interrupts: spi(96 + i),
      'dma-coherent': true,
    };
    if (e.iommu) props.iommus = [e.iommu, ...e.cells];
    if (e.stall) props['dma-can-stall'] = true;
    if (e.pasidBits) props['pasid-num-bits'] = e.pasidBits;
    b.node(`/dma@${hex(base)}`, props as Parameters<typeof b.node>[1]);
  });

  b.node(`/pcie@${hex(VIRT.ecam)}`, {
    compatible: 'pci-host-ecam-generic',
    device_type: 'pci',
    '#address-cells': 3,
    '#size-cells': 2,
    reg: reg([VIRT.ecam, 0x100_0000]),
    'bus-range': [0, 15],
    ranges: ranges([[0x0200_0000, 0, 0x1000_0000], 0x1000_0000, 0x2eff_0000]),
    'iommu-map': [0, smmuv3, 0, 0x1_0000],
    'ats-supported': true,
    'msi-parent': v2m,
    'dma-coherent': true,
  });
  // PCI child nodes: unit address "dev,fn", reg phys.hi = bus<<16 | dev<<11 | fn<<8.
  const pci = (name: string, dev: number, fn: number, props: Parameters<typeof b.node>[1] = {}): void => {
    b.node(`/pcie@${hex(VIRT.ecam)}/${name}@${dev.toString(16)},${fn.toString(16)}`, {
      reg: [(dev << 11) | (fn << 8), 0, 0, 0, 0],
      ...props,
    });
  };
  pci('accel', 1, 0, { 'pasid-num-bits': 20, 'iommu-sim,ats': true, 'iommu-sim,pri': true });
  pci('nic', 2, 0, { 'iommu-sim,ats': true });
  pci('func', 3, 0);
  pci('func', 3, 1);
  return b.build();
}

function hex(n: number): string {
  return n.toString(16);
}
