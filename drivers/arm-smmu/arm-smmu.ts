/**
 * The Arm SMMU v1/v2 driver (kernel: drivers/iommu/arm/arm-smmu/arm-smmu.c): MMU-400/401, MMU-500,
 * the Qualcomm SMMU-500/v2 flavours and generic SMMUv1/v2, driven only through their registers.
 * This file is the platform driver (match table, probe, remove) and the iommu_ops it registers.
 *
 * The work is split by job, as arm-smmu-v3 is:
 * - arm-smmu-regs.ts        the kernel header: registers and fields (arm-smmu.h)
 * - arm-smmu-device.ts      the structs of arm-smmu.h: device, domain, bank and master records
 * - arm-smmu-probe.ts       bring-up and teardown: ID-register probe, reset, SMR widths, shutdown
 * - arm-smmu-domain.ts      domains: context bank finalise/destroy, attach, stall mode, domain ops
 * - arm-smmu-context.ts     context bank programming (TCR, TTBRs, MAIRs, SCTLR)
 * - arm-smmu-stream-map.ts  SMR/S2CR stream mapping
 * - arm-smmu-tlb.ts         TLB maintenance and the io-pgtable flush ops
 * - arm-smmu-fault.ts       global and context faults, stall and RESUME, IOPF reports
 * - arm-smmu-impl.ts, arm-smmu-mmu500.ts, arm-smmu-qcom.ts   implementation hooks and flavours
 *
 * Probe: `#global-interrupts` and the interrupt list from DT, the register space from `reg`, the
 * implementation hooks picked once (arm-smmu-impl.ts), the configuration from ID0/ID1/ID2 (stages,
 * stream matching or indexing, SMR groups, context banks, address sizes, table formats, page sizes),
 * global fault interrupts, reset (stream map and banks from the shadows, TLBs invalidated, sCR0 with
 * fault reporting on, CLIENTPD clear and USFCFG = `arm-smmu.disable_bypass`), the SMR width probe,
 * then registration with the iommu core, which probes the masters.
 *
 * Masters: `iommus` with one cell (stream ID; the SMMU node's `stream-match-mask` as mask) or two
 * (stream ID, SMR mask); `ofXlate` packs SID | MASK << 16. Each ID gets a stream-map entry; an entry
 * that already covers the ID (same or wider mask) is shared, a partial overlap is refused (EINVAL),
 * none left is ENOSPC. Groups: masters sharing an entry share a group.
 * Domains: stage 1 (ASID = bank) unless the SMMU lacks it or the domain asked to be a nesting
 * parent (IOMMU_HWPT_ALLOC_NEST_PARENT, or `armSmmuEnableNesting`), then stage 2 (VMID = bank + 1);
 * the AArch64 format when the SMMU has one, else AArch32 LPAE; a context bank is taken at first
 * attach (stage-2-only banks are the lowest) and programmed, and its fault interrupt requested.
 * Identity and blocked domains point the master's S2CRs at BYPASS and FAULT.
 * Stall: SCTLR.CFCFG is set for a bank only when every master attached to it has `dma-can-stall`
 * (never because a client asks); attaching a master that cannot stall to a stalling bank used by
 * other masters is refused with EINVAL; a bank that stopped stalling for a master does not start
 * again when that master leaves. Faults are handled on a workqueue (arm-smmu-fault.ts): reported to
 * the domain's fault handler, or for masters with IOPF on (stall-capable ones only) to the I/O
 * page-fault core, whose answer comes back through `pageResponse` (group index = context bank).
 * Shutdown follows `arm-smmu.shutdown_policy`: `bypass` (sCR0 = CLIENTPD, Linux today),
 * `abort-unmatched` (SMRs invalidated, USFCFG = 1), `abort-all` (also every S2CR = FAULT),
 * `translate` (stays enabled with the stream map reset to its boot state); fault interrupts stay on
 * only with `arm-smmu.shutdown_fault_irqs`. First every bank stops stalling (CFCFG = 0), every
 * stalled transaction is terminated, and shutdown polls until the stalls have retired, so no master is
 * left waiting: transactions queued behind a stall fault (visibly: CFRE) instead of stalling again.
 *
 * Differences from Linux: the legacy `mmu-masters` binding, ACPI/IORT, clocks and runtime PM are not
 * supported; the iova_to_phys op walks the tables in software (the core's op is synchronous and the
 * ATS1PR poll waits on virtual time: `armSmmuIovaToPhysHard` is the hardware walk, async); the
 * hardware is reset before registering with the core (so masters never see a half-set-up SMMU);
 * destroying a bank with a stalled transaction terminates it (and waits for it) first; reset
 * terminates stalls a previous kernel left (a crash kernel's case); freeing a domain masters are
 * still attached to blocks them first.
 */
import { FIELD_GET } from '../../bus/bitfield.js';
import type { Device } from '../../bus/device.js';
import { KernelError } from '../../bus/errno.js';
import { devmIoremap } from '../../bus/io.js';
import type { KernelLog } from '../../bus/log.js';
import { devmRequestIrq } from '../../bus/irq.js';
import { PciDevice } from '../../bus/pci/pci-device.js';
import {
  platformBus,
  platformGetIrq,
  platformGetResource,
  platformIrqCount,
  type PlatformDevice,
  type PlatformDriver,
} from '../../bus/platform.js';
import { IOMMU_MMIO, IOMMU_NOEXEC, IOMMU_WRITE } from '../../core/io-pgtable.js';
import { devIommuPrivGet, devIommuPrivSet, devIommu, IommuDevice } from '../../core/iommu-device.js';
import {
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IommuDomain,
} from '../../core/iommu-domain.js';
import { IOMMU_PAGE_RESP_SUCCESS } from '../../core/iommu-fault-types.js';
import { genericDeviceGroup, pciDeviceGroup, type IommuGroup } from '../../core/iommu-group.js';
import type { IommuOps, IommuResvRegion } from '../../core/iommu-ops.js';
import { iommuDeviceRegister, iommuDeviceUnregister } from '../../core/iommu.js';
import {
  ARM_SMMU_DEFAULT_PARAMS,
  ARM_SMMU_FEAT_COHERENT_WALK,
  ARM_SMMU_FEAT_TRANS_S2,
  ARM_SMMU_V1,
  ARM_SMMU_V1_64K,
  ARM_SMMU_V2,
  ArmSmmuDevice,
  ArmSmmuDomain,
  ArmSmmuMasterCfg,
  type ArmSmmuArchVersion,
  type ArmSmmuImplementation,
  type ArmSmmuParams,
} from './arm-smmu-device.js';
import { armSmmuContextFaultResume, armSmmuGlobalFault, armSmmuPendingFault } from './arm-smmu-fault.js';
import { armSmmuImplInit } from './arm-smmu-impl.js';
import { armSmmuAttachDevType, armSmmuDomainOps, armSmmuMasterLeaveDomain, masterCfgOf } from './arm-smmu-domain.js';
import { armSmmuDeviceCfgProbe, armSmmuDeviceReset, armSmmuDeviceShutdown, armSmmuTestSmrMasks } from './arm-smmu-probe.js';
import { armSmmuFwidPrep, armSmmuMasterAllocSmes, armSmmuMasterFreeSmes, fwspecOf } from './arm-smmu-stream-map.js';

export { armSmmuFindSme } from './arm-smmu-stream-map.js';
import { QCOM_SMMU_500_SOCS, QCOM_SMMU_V2_SOCS } from './arm-smmu-qcom.js';
import { S2CR_TYPE_BYPASS, S2CR_TYPE_FAULT, SMR_ID, SMR_MASK } from './arm-smmu-regs.js';

const LOG_NS = 'iommu:drivers:arm-smmu';
export const ARM_SMMU_DRIVER_NAME = 'arm-smmu';

const hex = (v: number): string => `0x${v.toString(16)}`;

/** The kernel's MSI_IOVA_BASE / MSI_IOVA_LENGTH — the software-managed MSI window. */
export const MSI_IOVA_BASE = 0x800_0000;
export const MSI_IOVA_LENGTH = 0x10_0000;

/** The kernel's struct arm_smmu_match_data */
interface ArmSmmuMatchData {
  version: ArmSmmuArchVersion;
  model: ArmSmmuImplementation;
}

/** The kernel's arm_smmu_of_match[] (plus the Qualcomm strings, claimed directly). */
const ARM_SMMU_MATCH: ReadonlyMap<string, ArmSmmuMatchData> = new Map<string, ArmSmmuMatchData>([
  ['arm,smmu-v1', { version: ARM_SMMU_V1, model: 'GENERIC_SMMU' }],
  ['arm,smmu-v2', { version: ARM_SMMU_V2, model: 'GENERIC_SMMU' }],
  ['arm,mmu-400', { version: ARM_SMMU_V1, model: 'GENERIC_SMMU' }],
  ['arm,mmu-401', { version: ARM_SMMU_V1_64K, model: 'GENERIC_SMMU' }],
  ['arm,mmu-500', { version: ARM_SMMU_V2, model: 'ARM_MMU500' }],
  ['cavium,smmu-v2', { version: ARM_SMMU_V2, model: 'CAVIUM_SMMUV2' }],
  ['nvidia,smmu-500', { version: ARM_SMMU_V2, model: 'ARM_MMU500' }],
  ['qcom,smmu-v2', { version: ARM_SMMU_V2, model: 'QCOM_SMMUV2' }],
  ...QCOM_SMMU_500_SOCS.map((s): [string, ArmSmmuMatchData] => [`qcom,${s}-smmu-500`, { version: ARM_SMMU_V2, model: 'ARM_MMU500' }]),
  ['qcom,smmu-500', { version: ARM_SMMU_V2, model: 'ARM_MMU500' }],
  ...QCOM_SMMU_V2_SOCS.map((s): [string, ArmSmmuMatchData] => [`qcom,${s}-smmu-v2`, { version: ARM_SMMU_V2, model: 'QCOM_SMMUV2' }]),
]);

/** Every DT compatible the driver claims. */
export const ARM_SMMU_COMPATIBLES: readonly string[] = [...ARM_SMMU_MATCH.keys()];

function log(smmu: ArmSmmuDevice): KernelLog {
  return smmu.dev.core.log;
}

/** The SMMU behind `dev`, or null when `dev` is not an arm-smmu master. */
export function armSmmuOfMaster(dev: Device): ArmSmmuDevice | null {
  const cfg = devIommu(dev) ? devIommuPrivGet<unknown>(dev) : null;
  return cfg instanceof ArmSmmuMasterCfg ? cfg.smmu : null;
}

// ---- the iommu ops -----------------------------------------------------------------------------

/** The SMMU a device's firmware names (kernel: arm_smmu_get_by_fwnode()). */
function armSmmuGetByFwnode(dev: Device): ArmSmmuDevice | null {
  const node = dev.fwspec?.iommuNode;
  if (!node) return null;
  const smmuDev = dev.core.findDeviceByOfNode(node);
  const smmu = smmuDev?.driverData;
  return smmu instanceof ArmSmmuDevice ? smmu : null;
}

/** The iommu ops of one SMMU instance (kernel: arm_smmu_ops). */
function armSmmuOps(smmu: ArmSmmuDevice): IommuOps {
  const identityDomain = new IommuDomain({
    type: IOMMU_DOMAIN_IDENTITY,
    // kernel: arm_smmu_attach_dev_identity() [arm-smmu.c]
    ops: { attachDev: (_d, dev) => armSmmuAttachDevType(dev, S2CR_TYPE_BYPASS) },
  });
  const blockedDomain = new IommuDomain({
    type: IOMMU_DOMAIN_BLOCKED,
    // kernel: arm_smmu_attach_dev_blocked() [arm-smmu.c]
    ops: { attachDev: (_d, dev) => armSmmuAttachDevType(dev, S2CR_TYPE_FAULT) },
  });
  const newDomain = (stage: 'S1' | 'NESTED'): ArmSmmuDomain => {
    const d = new ArmSmmuDomain({ ops: armSmmuDomainOps, pgsizeBitmap: smmu.pgsizeBitmap });
    d.stage = stage;
    return d;
  };
  return {
    name: ARM_SMMU_DRIVER_NAME,
    pgsizeBitmap: smmu.pgsizeBitmap,
    identityDomain,
    blockedDomain,
    defaultDomainOps: armSmmuDomainOps,
    // kernel: arm_smmu_capable() [arm-smmu.c]
    capable(_dev, cap) {
      switch (cap) {
        case 'CACHE_COHERENCY':
          // A coherent walker implies coherent TBUs.
          return (smmu.features & ARM_SMMU_FEAT_COHERENT_WALK) !== 0;
        case 'NOEXEC':
        case 'DEFERRED_FLUSH':
          return true;
        default:
          return false;
      }
    },
    // kernel: arm_smmu_of_xlate() [arm-smmu.c]
    ofXlate(dev, fwspec, args) {
      let fwid = 0;
      if (args.length > 0) fwid |= armSmmuFwidPrep(dev, 'SMR.ID', args[0]);
      if (args.length > 1) fwid |= armSmmuFwidPrep(dev, 'SMR.MASK', args[1]);
      else {
        const mask = fwspec.iommuNode.u32('stream-match-mask');
        if (mask !== undefined) fwid |= armSmmuFwidPrep(dev, 'SMR.MASK', mask);
      }
      fwspec.ids.push(fwid >>> 0);
    },
    // kernel: arm_smmu_probe_device() [arm-smmu.c]
    async probeDevice(dev) {
      if (armSmmuGetByFwnode(dev) !== smmu) throw new KernelError('ENODEV', `${dev.name} is not behind ${smmu.name}`);
      const fwspec = fwspecOf(dev);
      for (const fwid of fwspec.ids) {
        const sid = FIELD_GET(SMR_ID, fwid);
        const mask = FIELD_GET(SMR_MASK, fwid);
        if (sid & ~smmu.streamidMask) {
          log(smmu).err(dev.name, `stream ID ${hex(sid)} out of range for SMMU (${hex(smmu.streamidMask)})`, LOG_NS);
          throw new KernelError('EINVAL', `${dev.name}: stream ID ${hex(sid)} out of range for ${smmu.name} (${hex(smmu.streamidMask)})`);
        }
        if (mask & ~smmu.smrMaskMask) {
          log(smmu).err(dev.name, `SMR mask ${hex(mask)} out of range for SMMU (${hex(smmu.smrMaskMask)})`, LOG_NS);
          throw new KernelError('EINVAL', `${dev.name}: SMR mask ${hex(mask)} out of range for ${smmu.name} (${hex(smmu.smrMaskMask)})`);
        }
      }
      const cfg = new ArmSmmuMasterCfg(smmu, fwspec.ids.length);
      devIommuPrivSet(dev, cfg);
      try {
        await armSmmuMasterAllocSmes(dev, cfg);
      } catch (e) {
        devIommuPrivSet(dev, null);
        log(smmu).err(dev.name, `${smmu.name}: ${e instanceof Error ? e.message : String(e)}`, LOG_NS);
        throw e;
      }
      return smmu.iommu!;
    },
    // kernel: arm_smmu_release_device() [arm-smmu.c]
    async releaseDevice(dev) {
      const cfg = masterCfgOf(dev);
      armSmmuMasterLeaveDomain(cfg, dev, null);
      await armSmmuMasterFreeSmes(cfg);
      devIommuPrivSet(dev, null);
    },
    // kernel: arm_smmu_device_group() [arm-smmu.c]
    deviceGroup(dev) {
      const cfg = masterCfgOf(dev);
      let group: IommuGroup | null = null;
      for (const idx of cfg.smendx) {
        const g = smmu.s2crs[idx].group;
        if (group && g && group !== g) {
          throw new KernelError('EINVAL', `${dev.name}: its stream IDs are shared with masters of two different groups`);
        }
        group = g ?? group;
      }
      if (group) return group;
      group = dev instanceof PciDevice ? pciDeviceGroup(dev) : genericDeviceGroup(dev);
      // Remember the group for the masters that share these entries.
      for (const idx of cfg.smendx) smmu.s2crs[idx].group = group;
      return group;
    },
    // the software MSI window.
    // kernel: arm_smmu_get_resv_regions() [arm-smmu.c]
    getResvRegions(): IommuResvRegion[] {
      return [{ start: MSI_IOVA_BASE, length: MSI_IOVA_LENGTH, prot: IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_MMIO, type: 'SW_MSI' }];
    },
    // kernel: arm_smmu_def_domain_type() [arm-smmu.c]
    defDomainType(dev) {
      return smmu.impl?.defDomainType ? smmu.impl.defDomainType(dev) : 0;
    },
    // kernel: arm_smmu_domain_alloc_paging() [arm-smmu.c]
    domainAllocPaging() {
      return newDomain('S1');
    },
    /** NEST_PARENT asks for a stage 2 domain (what iommu_enable_nesting() used to ask for). */
    domainAllocPagingFlags(_dev, flags) {
      if (flags & ~IOMMU_HWPT_ALLOC_NEST_PARENT) throw new KernelError('EOPNOTSUPP', `${smmu.name}: paging domain flags ${hex(flags)} are not supported`);
      if (flags & IOMMU_HWPT_ALLOC_NEST_PARENT) {
        if (!(smmu.features & ARM_SMMU_FEAT_TRANS_S2)) throw new KernelError('EOPNOTSUPP', `${smmu.name} has no stage 2 for a nesting parent`);
        return newDomain('NESTED');
      }
      return newDomain('S1');
    },
    /**
     * Answer a stalled context fault reported through the I/O page-fault path: SUCCESS retries the
     * transaction, anything else terminates it. `evt`'s group index is the context bank. An answer for
     * a stall that is no longer pending (terminated by a shutdown or a domain teardown) is ignored.
     */
    pageResponse(dev, evt, msg) {
      const smmuDomain = masterCfgOf(dev).domain;
      if (!smmuDomain || smmuDomain.cfg.cbndx !== evt.fault.prm.grpid || !armSmmuPendingFault(smmuDomain)) {
        log(smmu).debug(dev.name, `arm-smmu: page response for context bank ${evt.fault.prm.grpid} with no stall pending: ignored`, LOG_NS);
        return;
      }
      armSmmuContextFaultResume(smmuDomain, msg.code === IOMMU_PAGE_RESP_SUCCESS ? 'retry' : 'terminate');
    },
    /**
     * IOPF for a master whose firmware says it can stall (its stalled faults then go to the I/O
     * page-fault core); an SMMUv2 has no PASIDs, so no SVA. (Linux's arm-smmu has no such op: its
     * stalls go only to report_iommu_fault.)
     */
    devEnableFeat(dev, feat) {
      masterCfgOf(dev);
      if (feat === 'SVA') throw new KernelError('ENODEV', `${dev.name}: ${smmu.name} has no PASIDs: no SVA`);
      if (!(dev.fwspec?.canStall ?? false)) {
        throw new KernelError('EINVAL', `${dev.name} cannot stall (no dma-can-stall): no I/O page faults on ${smmu.name}`);
      }
    },
    /** IOPF off needs nothing of the hardware: stall stays as firmware allows it. */
    devDisableFeat(dev, feat) {
      masterCfgOf(dev);
      if (feat === 'SVA') throw new KernelError('EINVAL', `${dev.name}: SVA is not enabled`);
    },
  };
}

/** What the node says; the match data of its compatible. */
// kernel: arm_smmu_device_dt_probe() [arm-smmu.c]
function armSmmuDeviceDtProbe(dev: PlatformDevice): { data: ArmSmmuMatchData; globalIrqs: number; pmuIrqs: number } {
  const np = dev.ofNode;
  if (!np) throw new KernelError('ENODEV', `${dev.name}: arm-smmu needs a device tree node`);
  const compat = dev.matchedCompatible ?? np.compatible.find((c) => ARM_SMMU_MATCH.has(c));
  const data = compat !== undefined ? ARM_SMMU_MATCH.get(compat) : undefined;
  if (!data) throw new KernelError('ENODEV', `${dev.name}: no arm-smmu match for compatible ${np.compatible.join(', ')}`);
  const globalIrqs = np.u32('#global-interrupts');
  if (globalIrqs === undefined) throw new KernelError('ENODEV', `${dev.name}: missing #global-interrupts property`);
  // The DT binding has no PMU interrupts: everything after the global ones is a context interrupt
  // (only IORT describes PMU lines), as the machine wires them.
  const pmuIrqs = 0;
  if (np.has('mmu-masters')) {
    throw new KernelError('ENODEV', `${dev.name}: the deprecated "mmu-masters" binding is not supported; use "iommus"`);
  }
  return { data, globalIrqs, pmuIrqs };
}

// kernel: arm_smmu_device_probe() [arm-smmu.c]
async function armSmmuDeviceProbe(dev: PlatformDevice, params: ArmSmmuParams): Promise<void> {
  const { data, globalIrqs, pmuIrqs } = armSmmuDeviceDtProbe(dev);
  const res = platformGetResource(dev, 0);
  if (!res) throw new KernelError('ENODEV', `${dev.name}: no register region`);
  const base = devmIoremap(dev, res.start, res.size);
  const smmu = new ArmSmmuDevice({ dev, base, ioaddr: res.start, version: data.version, model: data.model, params });
  smmu.numpage = res.size;
  if (dev.dmaCoherent) smmu.features |= ARM_SMMU_FEAT_COHERENT_WALK;
  armSmmuImplInit(smmu);

  const numIrqs = platformIrqCount(dev);
  smmu.numGlobalIrqs = globalIrqs;
  smmu.numContextIrqs = numIrqs - globalIrqs - pmuIrqs;
  if (smmu.numContextIrqs <= 0) {
    throw new KernelError('ENODEV', `${dev.name}: found ${numIrqs} interrupts but expected at least ${globalIrqs + pmuIrqs + 1}`);
  }
  for (let i = 0; i < smmu.numContextIrqs; i++) smmu.irqs.push(platformGetIrq(dev, globalIrqs + pmuIrqs + i));

  armSmmuDeviceCfgProbe(smmu);

  if (smmu.version === ARM_SMMU_V2) {
    if (smmu.numContextBanks > smmu.numContextIrqs) {
      throw new KernelError('ENODEV', `${dev.name}: found only ${smmu.numContextIrqs} context irq(s) but ${smmu.numContextBanks} required`);
    }
    // Ignore superfluous interrupts.
    smmu.numContextIrqs = smmu.numContextBanks;
    smmu.irqs.length = smmu.numContextIrqs;
  }

  for (let i = 0; i < globalIrqs; i++) {
    const irq = platformGetIrq(dev, i);
    smmu.globalIrqActions.push(devmRequestIrq(dev, irq, () => armSmmuGlobalFault(smmu), 'arm-smmu global fault', { shared: true }));
  }

  dev.core.onTeardown('arm-smmu fault work', () => {
    smmu.gone = true;
    smmu.quiesced = true;
    smmu.faultQueue.clear();
  });
  dev.driverData = smmu;
  dev.devres.add('arm-smmu drvdata', () => {
    dev.driverData = null;
  });
  await armSmmuDeviceReset(smmu);
  armSmmuTestSmrMasks(smmu);

  smmu.iommu = new IommuDevice({ dev });
  await iommuDeviceRegister(smmu.iommu, armSmmuOps(smmu), dev);
  log(smmu).info(smmu.name, `arm-smmu: ${smmu.impl?.name ?? 'generic'} SMMUv${smmu.version === ARM_SMMU_V2 ? 2 : 1} registered`, LOG_NS);
}

// kernel: arm_smmu_device_remove() [arm-smmu.c]
async function armSmmuDeviceRemove(dev: PlatformDevice): Promise<void> {
  const smmu = dev.driverData;
  if (!(smmu instanceof ArmSmmuDevice)) return;
  if (smmu.iommu) await iommuDeviceUnregister(smmu.iommu);
  await armSmmuDeviceShutdown(smmu);
}

/** The platform driver, reading the `arm-smmu.*` parameters of its kernel. */
export function createArmSmmuDriver(params: ArmSmmuParams = ARM_SMMU_DEFAULT_PARAMS): PlatformDriver {
  const p: ArmSmmuParams = {
    'arm-smmu.disable_bypass': params['arm-smmu.disable_bypass'],
    'arm-smmu.shutdown_policy': params['arm-smmu.shutdown_policy'],
    'arm-smmu.shutdown_fault_irqs': params['arm-smmu.shutdown_fault_irqs'],
    'arm-smmu.stall_storm_guard': params['arm-smmu.stall_storm_guard'],
  };
  return {
    name: ARM_SMMU_DRIVER_NAME,
    bus: platformBus,
    ofMatchTable: ARM_SMMU_COMPATIBLES,
    probe: (dev) => armSmmuDeviceProbe(dev, p),
    remove: armSmmuDeviceRemove,
    // (kernel: arm_smmu_device_shutdown())
    async shutdown(dev) {
      const smmu = dev.driverData;
      if (smmu instanceof ArmSmmuDevice) await armSmmuDeviceShutdown(smmu);
    },
  };
}

export { ArmSmmuDevice, ArmSmmuDomain };
