/**
 * Construction options of an SMMUv1/v2 from what firmware says of it: the flavour a DT `compatible`
 * list names, NUMPAGENDXB from the `reg` size, and a number of context banks the interrupts can
 * serve.
 *
 * Supports: the compatibles Linux's arm-smmu matches (arm,smmu-v1/-v2, arm,mmu-400/-401/-500,
 * cavium,smmu-v2, nvidia,smmu-500, qcom,smmu-v2, qcom,smmu-500 and the SoC-specific
 * "qcom,<soc>-smmu-500" strings).
 * Does not support: ACPI IORT model codes.
 */
import { SMMU_V2_COMPATIBLES, SMMU_V2_MODELS, archVersion, flavourDefaults } from './options.js';
import type { SmmuV2Model, SmmuV2OptionsInput } from './options.js';

/** The flavour a DT `compatible` list names (first match wins, as of_match does), or null. */
export function smmuV2ModelForCompatible(compatibles: readonly string[]): SmmuV2Model | null {
  for (const c of compatibles) {
    for (const m of SMMU_V2_MODELS) if (SMMU_V2_COMPATIBLES[m].includes(c)) return m;
    // Qualcomm SoC-specific strings ("qcom,sm8250-smmu-500") precede the generic ones.
    if (/^qcom,.+-smmu-500$/.test(c)) return 'qcom-smmu-500';
  }
  return null;
}

/** What the machine reads off an SMMU's DT node. */
export interface SmmuV2FirmwareNode {
  compatible: readonly string[];
  /** Size of the node's first `reg` entry. */
  regSize: number;
  /** Number of context interrupts: the `interrupts` after the first `#global-interrupts`. */
  contextInterrupts: number;
}

/**
 * Construction options for a DT node: the flavour from `compatible`, the register page size and
 * NUMPAGENDXB from the `reg` size (the largest NUMPAGE whose 2 x NUMPAGE pages fit it; 64K pages when
 * the region is larger than 256 x 2 4K pages can fill, as NXP's 8 MiB MMU-500s), and on SMMUv2 no more context banks
 * than context interrupts (Linux refuses an SMMUv2 with fewer context interrupts than banks).
 * Returns null when no compatible names an SMMUv1/v2; `overrides` win over everything derived.
 */
export function optionsForNode(node: SmmuV2FirmwareNode, overrides: Partial<SmmuV2OptionsInput> = {}): SmmuV2OptionsInput | null {
  const model = smmuV2ModelForCompatible(node.compatible);
  if (model === null) return null;
  if (!Number.isSafeInteger(node.regSize) || node.regSize < 0x4000) {
    throw new RangeError(`SMMU register region of ${node.regSize} bytes is smaller than the smallest SMMU (4 x 4K pages)`);
  }
  const pageSize64k = node.regSize > 2 * 256 * 0x1000;
  const page = pageSize64k ? 0x1_0000 : 0x1000;
  let numPageNdxb = 0;
  while (numPageNdxb < 7 && 2 * (1 << (numPageNdxb + 2)) * page <= node.regSize) numPageNdxb++;
  const defaults = flavourDefaults(model);
  let numCb = Math.min(defaults.numCb, 1 << (numPageNdxb + 1));
  if (archVersion(model) === 2 && node.contextInterrupts > 0) numCb = Math.min(numCb, node.contextInterrupts);
  const numIrpt = Math.min(255, Math.max(node.contextInterrupts, archVersion(model) === 2 ? numCb : 0));
  return {
    model,
    ...(pageSize64k ? { pageSize64k } : {}),
    numPageNdxb,
    numCb,
    numS2Cb: Math.min(defaults.numS2Cb, numCb),
    numIrpt,
    ...overrides,
  };
}
