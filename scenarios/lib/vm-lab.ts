/**
 * The guest lab: a host kernel on `virt`, a VM with the SMMUv3's second DMA test engine (StreamID
 * 0x101, not stall-capable) assigned under a virtual StreamID, and a guest kernel booted on the VM's
 * port. The lab holds host, VMM and guest in one hand, as scenarios need.
 */
import { dmaMapSingle, dmaUnmapSingle } from '../../core/dma-mapping.js';
import { bootKernel, type Kernel } from '../../kernel/kernel.js';
import { orderForSize } from '../../mm/page-alloc.js';
import { findTestEngine, type TestEngine } from '../../drivers/misc/dma-test-engine.js';
import type { TrapCosts } from '../../vmm/trap-costs.js';
import { Vm, type HostMemory } from '../../vmm/vm.js';
import { BOOT_LIMIT_NS, run } from './lab.js';
import { bootSmmuV3, deviceOf, V3, type SmmuV3Lab } from '../smmu-v3-lab.js';
import { bootCmdqv } from '../cmdqv-lab.js';
import type { CpuCosts } from '../../hw/cpu-port.js';
import type { SmmuV3Options } from '../../hw/smmu-v3/options.js';

/** The virtual StreamID the guest sees for the assigned engine. */
export const GUEST_VSID = 0x10;
/** The engine's MMIO and SPI on the host, passed through / forwarded at the same place. */
export const ENGINE_MMIO = { base: 0x0c01_0000, size: 0x1_0000 };
export const ENGINE_SPI = [0, 97, 4] as const;
/** Where the guest finds the engine. */
export const GUEST_ENGINE_PATH = `/dev@${ENGINE_MMIO.base.toString(16)}`;

export interface VmLab extends SmmuV3Lab {
  vm: Vm;
  guest: Kernel;
}

export interface VmLabOptions {
  seed: number;
  trapCosts?: Partial<TrapCosts>;
  /** Guest RAM bytes (default 32 MiB). */
  ramSize?: number;
  /** Guest RAM base IPA (default 0x4000_0000). */
  ramIpa?: number;
  guestBootargs?: string;
  /** Also assign the PCIe function 00:01.0 (vSID = its RID, 0x8) behind a guest PCIe host. */
  pci?: boolean;
  /** Also assign the stall-capable engine (host SID 0x100, 8 PASID bits) as vSID 0x11. */
  stall?: boolean;
  /** Grace: the host has a CMDQV and the VM a guest-owned VINTF (vIOMMU type TEGRA241_CMDQV). */
  cmdqv?: boolean;
  /** Host kernel command line and SMMUv3 model options (with `cmdqv`). */
  hostBootargs?: string;
  hostSmmu?: SmmuV3Options;
  /** With `cmdqv`: the CPUs' costs (default GRACE_CPU_COSTS, scenarios/cmdqv-lab.ts). */
  cpuCosts?: Partial<CpuCosts>;
  /** The guest's firmware: a Device Tree (default) or ACPI tables. */
  guestFirmware?: 'dt' | 'acpi';
}

/** The stall-capable engine as host and guest see it. */
export const GUEST_STALL_ENGINE = { host: '/dma@c000000', guest: '/dev@c000000', vsid: 0x11, mmio: { base: 0x0c00_0000, size: 0x1_0000 }, spi: [0, 96, 4] } as const;

/** The assigned PCIe function, as host and guest both name it, and its virtual StreamID (its RID). */
export const GUEST_PCI_FN = { name: '0000:00:01.0', node: '/pcie@3f000000/accel@1,0', bus: 0, devfn: 1 << 3, vsid: 0x8 } as const;

/** Guest RAM from the host kernel's page allocator, owned as the assigned device's DMA memory. */
export function hostMemoryFor(lab: SmmuV3Lab, owner: string): HostMemory {
  return {
    alloc: (bytes) => lab.kernel.alloc.allocPages(orderForSize(bytes), { kind: 'dma', device: owner, what: 'guest RAM' }, { zero: true }),
    free: (pa, bytes) => lab.kernel.alloc.freePages(pa, orderForSize(bytes)),
  };
}

/** Build the VM on a booted host (no guest kernel yet). */
export async function buildVm(lab: SmmuV3Lab, opts: Omit<VmLabOptions, 'seed' | 'guestBootargs'> & { guestBootargs?: string }): Promise<Vm> {
  const dev = deviceOf(lab, V3.engine);
  return run(
    lab.machine,
    Vm.create({
      host: { port: lab.machine.cpu, gicPath: '/intc@8000000', memory: hostMemoryFor(lab, dev.name) },
      ramSize: opts.ramSize,
      ramIpa: opts.ramIpa,
      trapCosts: opts.trapCosts,
      bootargs: opts.guestBootargs,
      cmdqv: opts.cmdqv,
      firmware: opts.guestFirmware,
      devices: [
        { dev, vsid: GUEST_VSID, compatible: 'iommu-sim,dma-test-engine', mmio: [ENGINE_MMIO], irqs: [ENGINE_SPI] },
        ...(opts.stall
          ? [
              {
                dev: deviceOf(lab, GUEST_STALL_ENGINE.host),
                vsid: GUEST_STALL_ENGINE.vsid,
                compatible: 'iommu-sim,dma-test-engine',
                mmio: [GUEST_STALL_ENGINE.mmio],
                irqs: [GUEST_STALL_ENGINE.spi],
                props: { 'dma-can-stall': true, 'pasid-num-bits': 8 },
                stall: true,
              },
            ]
          : []),
      ],
      pci: opts.pci
        ? {
            ecamBase: 0x3f00_0000,
            ecamSize: 0x100_0000,
            busRange: [0, 15],
            functions: [{ dev: deviceOf(lab, GUEST_PCI_FN.name), bus: GUEST_PCI_FN.bus, devfn: GUEST_PCI_FN.devfn, pri: true }],
          }
        : undefined,
    }),
    'VM creation',
    BOOT_LIMIT_NS,
  );
}

/** Boot the host, build the VM, boot the guest. */
export async function bootHostAndGuest(opts: VmLabOptions): Promise<VmLab> {
  const lab = opts.cmdqv ? await bootCmdqv({ seed: opts.seed, bootargs: opts.hostBootargs, smmu: opts.hostSmmu, cpuCosts: opts.cpuCosts }) : await bootSmmuV3({ seed: opts.seed });
  const vm = await buildVm(lab, opts);
  // From ACPI the command line comes from the boot loader (EFI), not the tables.
  const guest = await run(lab.machine, bootKernel({ cpu: vm.port }, opts.guestFirmware === 'acpi' ? { cmdline: opts.guestBootargs ?? '' } : {}), 'guest boot', BOOT_LIMIT_NS);
  return { ...lab, vm, guest };
}

/** The guest's driver handle for the assigned engine. */
export function guestEngine(lab: VmLab): TestEngine {
  return findTestEngine(lab.guest.core, GUEST_ENGINE_PATH);
}

export interface GuestUnmapFigures {
  threads: number;
  unmaps: number;
  /** Mean virtual time of one 4 KiB dma_unmap (strict: TLBI + CMD_SYNC, trapped) in µs. */
  usPerUnmap: number;
  /** vSMMU commands and ioctls per unmap. */
  commandsPerUnmap: number;
  ioctlsPerUnmap: number;
}

/**
 * Map and unmap 4 KiB buffers in the guest from `threads` concurrent guest threads (the guest's
 * CPUs), timing each unmap in virtual time; the guest must run with iommu.strict=1 so each unmap
 * invalidates and syncs before it returns.
 */
export async function measureGuestUnmap(lab: VmLab, threads: number, perThread: number): Promise<GuestUnmapFigures> {
  const dev = guestEngine(lab).dev;
  const port = lab.vm.port;
  const pages = Array.from({ length: threads }, () => lab.guest.alloc.allocPages(0, { kind: 'dma', device: dev.name }, { zero: true }));
  const before = { ...lab.vm.vsmmu.stats };
  let total = 0;
  let n = 0;
  const worker = async (page: number): Promise<void> => {
    for (let i = 0; i < perThread; i++) {
      const iova = await dmaMapSingle(dev, page, 4096, 'bidirectional');
      const t0 = port.now();
      await dmaUnmapSingle(dev, iova, 4096, 'bidirectional');
      total += port.now() - t0;
      n++;
    }
  };
  await run(lab.machine, Promise.all(pages.map((p) => worker(p))), 'guest unmaps', 10_000_000_000);
  const after = lab.vm.vsmmu.stats;
  return {
    threads,
    unmaps: n,
    usPerUnmap: total / n / 1000,
    commandsPerUnmap: (after.commands - before.commands) / n,
    ioctlsPerUnmap: (after.ioctls - before.ioctls) / n,
  };
}
