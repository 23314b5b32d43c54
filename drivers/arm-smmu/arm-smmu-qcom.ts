/**
 * The Qualcomm flavours of the arm-smmu driver (kernel: drivers/iommu/arm/arm-smmu/arm-smmu-qcom.c).
 *
 * - Application SMMUs (`qcom,<soc>-smmu-500`, the generic `qcom,smmu-500`, and `qcom,*-smmu-v2`):
 *   the firmware S2CR quirk probe (a BYPASS write read back as FAULT means bypass must be emulated
 *   with a reserved, non-translating context bank, and FAULT must be written as BYPASS), stream
 *   mappings the boot firmware left valid kept as bypass until a master claims them, walk flushes
 *   by ASID, identity default domains for the display/GPU/modem clients, MMU-500 reset.
 * - The Adreno GPU SMMU (`qcom,adreno-smmu`): context bank 0 reserved for the GPU (the master with
 *   stream ID 0) and the other banks for everyone else; SCTLR.HUPCF always set so the GPU's other
 *   transactions keep flowing past a fault.
 *
 * Stall (SCTLR.CFCFG) is not the GPU driver's to ask for here: the generic driver sets it from
 * firmware (`dma-can-stall`) for banks whose every master can stall, and the storm guard
 * (`arm-smmu.stall_storm_guard`) plays the role of the Adreno "disable stall after a fault" fix.
 * Context faults go through the generic handler (arm-smmu-fault.ts), whose answer to a stall is the
 * Qualcomm one too: only -EAGAIN retries (the GPU driver's way to ask for a replay since the
 * resume_translation hook went), 0 and other errnos terminate. The debug handler that needs TBUs
 * (qcom_smmu_context_fault(), where -EBUSY leaves the stall for the client) is not modelled.
 * Not modelled: the SCM firmware interface (probe never defers waiting for it; the SDM845
 * wait-for-safe toggle is skipped), per-process GPU page tables through TTBR1/TTBR0 switching
 * (io-pgtable refuses the TTBR1 quirk: upper-half IOVAs do not fit a JS number), TBU debug.
 */
import { FIELD_GET, FIELD_PREP } from '../../bus/bitfield.js';
import type { Device } from '../../bus/device.js';
import { IOMMU_DOMAIN_IDENTITY } from '../../core/iommu-domain.js';
import type { ArmSmmuDevice } from './arm-smmu-device.js';
import type { ArmSmmuImpl } from './arm-smmu-impl.js';
import { armMmu500Reset } from './arm-smmu-mmu500.js';
import {
  ARM_SMMU_CB_SCTLR,
  ARM_SMMU_GR0_S2CR,
  ARM_SMMU_GR0_SMR,
  ARM_SMMU_GR1_CBAR,
  CBAR_TYPE,
  CBAR_TYPE_S1_TRANS_S2_BYPASS,
  S2CR_CBNDX,
  S2CR_PRIVCFG,
  S2CR_PRIVCFG_DEFAULT,
  S2CR_TYPE,
  S2CR_TYPE_BYPASS,
  S2CR_TYPE_FAULT,
  S2CR_TYPE_TRANS,
  SCTLR_HUPCF,
  SMR_ID,
  SMR_MASK,
  SMR_VALID,
} from './arm-smmu-regs.js';

const LOG_NS = 'iommu:drivers:arm-smmu';

/** SoCs whose application SMMU is a Qualcomm MMU-500 (kernel: qcom_smmu_impl_of_match, -smmu-500). */
export const QCOM_SMMU_500_SOCS: readonly string[] = [
  'qcm2290', 'qdu1000', 'sa8775p', 'sc7180', 'sc7280', 'sc8180x', 'sc8280xp', 'sdm670', 'sdm845', 'sdx55',
  'sdx65', 'sm6115', 'sm6125', 'sm6350', 'sm6375', 'sm8150', 'sm8250', 'sm8350', 'sm8450', 'sm8550', 'sm8650',
];

/** SoCs with a Qualcomm SMMUv2 (kernel: qcom_smmu_impl_of_match, -smmu-v2). */
export const QCOM_SMMU_V2_SOCS: readonly string[] = [
  'msm8996', 'msm8998', 'sc7180', 'sdm630', 'sdm670', 'sdm845', 'sm6350', 'sm6375', 'sm7150',
];

/** The compatibles of Qualcomm SMMUs this driver claims (the generic strings last). */
export const QCOM_SMMU_COMPATIBLES: readonly string[] = [
  ...QCOM_SMMU_500_SOCS.map((s) => `qcom,${s}-smmu-500`),
  ...QCOM_SMMU_V2_SOCS.map((s) => `qcom,${s}-smmu-v2`),
  'qcom,smmu-500',
  'qcom,smmu-v2',
];

/** Clients that need an identity default domain (kernel: qcom_smmu_client_of_match). */
const QCOM_SMMU_CLIENTS: readonly string[] = [
  'qcom,adreno', 'qcom,adreno-gmu', 'qcom,mdp4', 'qcom,mdss', 'qcom,qcm2290-mdss', 'qcom,sc7180-mdss',
  'qcom,sc7180-mss-pil', 'qcom,sc7280-mdss', 'qcom,sc7280-mss-pil', 'qcom,sc8180x-mdss', 'qcom,sc8280xp-mdss',
  'qcom,sdm670-mdss', 'qcom,sdm845-mdss', 'qcom,sdm845-mss-pil', 'qcom,sm6350-mdss', 'qcom,sm6375-mdss',
  'qcom,sm8150-mdss', 'qcom,sm8250-mdss',
];

/** The GPU always uses stream ID 0 (kernel: QCOM_ADRENO_SMMU_GPU_SID). */
const QCOM_ADRENO_SMMU_GPU_SID = 0;

/** True for a Qualcomm SMMU compatible string. */
export function isQcomSmmuCompatible(c: string): boolean {
  return QCOM_SMMU_COMPATIBLES.includes(c) || /^qcom,[a-z0-9]+-smmu-500$/.test(c);
}

// kernel: qcom_smmu_def_domain_type() [arm-smmu-qcom.c]
function qcomSmmuDefDomainType(dev: Device): number {
  const compat = dev.ofNode?.compatible ?? [];
  return compat.some((c) => QCOM_SMMU_CLIENTS.includes(c)) ? IOMMU_DOMAIN_IDENTITY : 0;
}

/** What the application SMMU impl learns at probe (kernel: struct qcom_smmu). */
export interface QcomSmmuState {
  /** S2CR writes of BYPASS are stored as FAULT by the firmware. */
  bypassQuirk: boolean;
  /** The context bank reserved to emulate bypass (valid with bypassQuirk). */
  bypassCbndx: number;
}

/** The impl for Qualcomm application SMMUs (kernel: qcom_smmu_500_impl / qcom_smmu_v2_impl). */
export function qcomSmmuImpl(mmu500: boolean): ArmSmmuImpl & { readonly qcom: QcomSmmuState } {
  const qcom: QcomSmmuState = { bypassQuirk: false, bypassCbndx: 0xff };
  return {
    name: mmu500 ? 'qcom-smmu-500' : 'qcom-smmu-v2',
    qcom,
    // kernel: qcom_smmu_init_context() [arm-smmu-qcom.c]
    initContext(smmuDomain) {
      smmuDomain.cfg.flushWalkPreferTlbiasid = true;
    },
    // kernel: qcom_smmu_cfg_probe() [arm-smmu-qcom.c]
    cfgProbe(smmu) {
      const lastS2cr = ARM_SMMU_GR0_S2CR(smmu.numMappingGroups - 1);
      // Firmware that mangles S2CR writes is found by writing BYPASS and reading it back.
      const probe = FIELD_PREP(S2CR_TYPE, S2CR_TYPE_BYPASS) | FIELD_PREP(S2CR_CBNDX, 0xff) | FIELD_PREP(S2CR_PRIVCFG, S2CR_PRIVCFG_DEFAULT);
      smmu.gr0Write(lastS2cr, probe);
      if (FIELD_GET(S2CR_TYPE, smmu.gr0Read(lastS2cr)) !== S2CR_TYPE_BYPASS) {
        qcom.bypassQuirk = true;
        qcom.bypassCbndx = smmu.numContextBanks - 1;
        smmu.contextMap[qcom.bypassCbndx] = true;
        smmu.cbWrite(qcom.bypassCbndx, ARM_SMMU_CB_SCTLR, 0);
        smmu.gr1Write(ARM_SMMU_GR1_CBAR(qcom.bypassCbndx), FIELD_PREP(CBAR_TYPE, CBAR_TYPE_S1_TRANS_S2_BYPASS));
        smmu.dev.core.log.info(smmu.name, `firmware S2CR quirk: bypass emulated with context bank ${qcom.bypassCbndx}`, LOG_NS);
      }
      // Mappings the boot firmware left valid stay in bypass until a master claims them.
      if (!smmu.smrs) return;
      for (let i = 0; i < smmu.numMappingGroups; i++) {
        const smr = smmu.gr0Read(ARM_SMMU_GR0_SMR(i));
        if ((smr & SMR_VALID) === 0) continue;
        const noValid = (smr & ~SMR_VALID) >>> 0;
        smmu.smrs[i] = { id: FIELD_GET(SMR_ID, noValid), mask: FIELD_GET(SMR_MASK, noValid), valid: true };
        const s2cr = smmu.s2crs[i];
        s2cr.type = S2CR_TYPE_BYPASS;
        s2cr.privcfg = S2CR_PRIVCFG_DEFAULT;
        s2cr.cbndx = 0xff;
      }
    },
    // kernel: qcom_smmu_write_s2cr() [arm-smmu-qcom.c]
    writeS2cr(smmu, idx) {
      const s2cr = smmu.s2crs[idx];
      let type: number = s2cr.type;
      let cbndx = s2cr.cbndx;
      if (qcom.bypassQuirk) {
        if (type === S2CR_TYPE_BYPASS) {
          // The firmware would store FAULT: translate through the reserved non-translating bank.
          type = S2CR_TYPE_TRANS;
          cbndx = qcom.bypassCbndx;
        } else if (type === S2CR_TYPE_FAULT) {
          // The firmware ignores FAULT writes but turns BYPASS into FAULT.
          type = S2CR_TYPE_BYPASS;
          cbndx = 0xff;
        }
      }
      smmu.gr0Write(ARM_SMMU_GR0_S2CR(idx), FIELD_PREP(S2CR_TYPE, type) | FIELD_PREP(S2CR_CBNDX, cbndx) | FIELD_PREP(S2CR_PRIVCFG, s2cr.privcfg));
    },
    defDomainType: qcomSmmuDefDomainType,
    reset: mmu500 ? armMmu500Reset : undefined,
  };
}

// kernel: qcom_adreno_smmu_is_gpu_device() [arm-smmu-qcom.c]
function qcomAdrenoSmmuIsGpuDevice(dev: Device): boolean {
  return (dev.fwspec?.ids ?? []).some((id) => (id & 0xffff) === QCOM_ADRENO_SMMU_GPU_SID);
}

/** The impl for the Adreno GPU's SMMU (kernel: qcom_adreno_smmu_500_impl). */
export function qcomAdrenoSmmuImpl(mmu500: boolean): ArmSmmuImpl {
  return {
    name: mmu500 ? 'qcom-adreno-smmu-500' : 'qcom-adreno-smmu-v2',
    // kernel: qcom_adreno_smmu_init_context() [arm-smmu-qcom.c]
    initContext(smmuDomain) {
      smmuDomain.cfg.flushWalkPreferTlbiasid = true;
    },
    // bank 0 is the GPU's, so it can switch tables.
    // kernel: qcom_adreno_smmu_alloc_context_bank() [arm-smmu-qcom.c]
    allocContextBank(_smmuDomain, smmu, dev) {
      const gpu = qcomAdrenoSmmuIsGpuDevice(dev);
      const start = gpu ? 0 : 1;
      const end = gpu ? 1 : smmu.numContextBanks;
      for (let i = start; i < end; i++) {
        if (!smmu.contextMap[i]) {
          smmu.contextMap[i] = true;
          return i;
        }
      }
      return -1;
    },
    // the GPU keeps processing other work after a fault.
    // kernel: qcom_adreno_smmu_write_sctlr() [arm-smmu-qcom.c]
    writeSctlr(smmu, idx, reg) {
      smmu.cbWrite(idx, ARM_SMMU_CB_SCTLR, (reg | SCTLR_HUPCF) >>> 0);
    },
    defDomainType: qcomSmmuDefDomainType,
    reset: mmu500 ? armMmu500Reset : undefined,
  };
}

/** Install the Qualcomm impl when the node asks for one. */
// kernel: qcom_smmu_impl_init() [arm-smmu-qcom.c]
export function qcomSmmuImplInit(smmu: ArmSmmuDevice): void {
  const np = smmu.dev.ofNode;
  if (!np) return;
  const compat = np.compatible;
  const mmu500 = compat.some((c) => c.endsWith('smmu-500')) || compat.includes('arm,mmu-500');
  // The Adreno flavour first: a GPU SMMU also lists the generic Qualcomm strings.
  if (compat.includes('qcom,adreno-smmu')) {
    smmu.impl = qcomAdrenoSmmuImpl(mmu500);
    return;
  }
  if (compat.some(isQcomSmmuCompatible)) smmu.impl = qcomSmmuImpl(mmu500);
}
