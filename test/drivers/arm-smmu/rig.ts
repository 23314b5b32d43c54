/**
 * The arm-smmu test rig: the SMMUv2 lab machine booted with the driver, plus lab-side access to
 * the SMMU's registers (through the CPU's MMIO view, reads without side effects) and to masters.
 */
import type { Device } from '../../../bus/device.js';
import { iommuAttachDevice } from '../../../core/iommu-attach.js';
import { IOMMU_HWPT_ALLOC_NEST_PARENT, iommuPagingDomainAlloc, iommuPagingDomainAllocFlags, type IommuDomain } from '../../../core/iommu-domain.js';
import { iommuMap } from '../../../core/iommu-map.js';
import { IOMMU_READ, IOMMU_WRITE } from '../../../core/io-pgtable.js';
import { ArmSmmuDevice } from '../../../drivers/arm-smmu/arm-smmu-device.js';
import type { DmaMaster } from '../../../hw/masters/dma-master.js';
import type { Machine } from '../../../hw/machine.js';
import type { Kernel } from '../../../kernel/kernel.js';
import { boot, run } from '../../../scenarios/lib/lab.js';
import { SMMU_V2_LAB, deviceOf, smmuV2Machine, type SmmuV2MachineOptions } from '../../../scenarios/smmu-v2-lab.js';

export { SMMU_V2_LAB as L };

export interface Rig {
  machine: Machine;
  kernel: Kernel;
  smmu: ArmSmmuDevice;
  /** 32-bit register of the SMMU at byte offset `off`. */
  reg(off: number): number;
  /** Context bank `n`'s register at offset `off` (4K pages, NUMPAGE 16 on the lab MMU-500). */
  cb(n: number, off: number): number;
  dev(path: string): Device;
  master(path: string): DmaMaster;
  /** Run kernel code to completion in virtual time. */
  run<T>(p: Promise<T>): Promise<T>;
  /** A 4K page of RAM owned by the kernel. */
  page(): number;
}

export async function rig(opts: SmmuV2MachineOptions & { cmdline?: string } = {}): Promise<Rig> {
  const machine = smmuV2Machine({ seed: 1, ...opts });
  const kernel = await boot(machine, opts.cmdline !== undefined ? { cmdline: opts.cmdline } : {});
  const smmuDev = deviceOf(kernel, SMMU_V2_LAB.smmuPath);
  const smmu = smmuDev.driverData;
  if (!(smmu instanceof ArmSmmuDevice)) throw new Error(`SMMU not probed: ${smmuDev.probeError ?? smmuDev.status}`);
  const base = SMMU_V2_LAB.smmu;
  return {
    machine,
    kernel,
    smmu,
    reg: (off) => machine.cpu.mmioRead32(base + off),
    cb: (n, off) => machine.cpu.mmioRead32(base + ((smmu.numpage + n) << smmu.pgshift) + off),
    dev: (path) => deviceOf(kernel, path),
    master: (path) => {
      const m = machine.masters.get(path);
      if (!m) throw new Error(`no master ${path}`);
      return m;
    },
    run: (p) => run(machine, p),
    page: () => kernel.alloc.allocPages(0, { kind: 'kernel', what: 'arm-smmu test page' }, { zero: true }),
  };
}

/** A fresh UNMANAGED domain (stage 1, or stage 2 with `stage2`) attached to the device at `path`. */
export async function attachNew(b: Rig, path: string, stage2 = false): Promise<IommuDomain> {
  const dev = b.dev(path);
  const domain = stage2 ? iommuPagingDomainAllocFlags(dev, IOMMU_HWPT_ALLOC_NEST_PARENT) : iommuPagingDomainAlloc(dev);
  await b.run(iommuAttachDevice(domain, dev));
  return domain;
}

export function map(b: Rig, domain: IommuDomain, iova: number, pa: number, size = 0x1000, prot = IOMMU_READ | IOMMU_WRITE): Promise<void> {
  return b.run(iommuMap(domain, iova, pa, size, prot));
}

export const bytes = (...v: number[]): Uint8Array => Uint8Array.from(v);
