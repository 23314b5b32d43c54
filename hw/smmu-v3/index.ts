/**
 * Arm SMMUv3 hardware model: public exports, and the model registration that makes the machine
 * instantiate an SmmuV3 for every enabled `arm,smmu-v3` Device Tree node.
 *
 * Supports (firmware): the node's first `reg` region (128 KiB for pages 0 and 1; a 64 KiB region,
 * as on Cavium CN99xx, maps page 0 only, where the model also answers the page 1 queue registers);
 * interrupts by `interrupt-names` (`eventq`, `priq`, `cmdq-sync`, `gerror`, `combined`; a single
 * unnamed interrupt is taken as `combined`); `dma-coherent` (IDR0.COHACC); construction options from
 * MachineOptions.iommuOptions (by node path, else by model name "smmu-v3"), whose unknown keys are
 * rejected with an error naming them.
 * A node with `nvidia,cmdqv` gets the Grace CMDQV it names built with it (hw/tegra241-cmdqv).
 * Does not support: ACPI IORT-described SMMUs (the machine builds from DT), `msi-parent` (MSIs are
 * configured by software through *_IRQ_CFG0 and reach whatever the address decodes to).
 * Importing this module registers the model (hw/machine.ts lists the built-in model modules).
 */
import { hasProp } from '../firmware.js';
import type { IommuMmioMapping, IommuModelContext, IommuModelInstance } from '../iommu-models.js';
import { createCmdqvForNode, TEGRA241_CMDQV_PHANDLE_PROP, type Tegra241CmdqvOptions } from '../tegra241-cmdqv/index.js';
import { registerIommuModel } from '../iommu-models.js';
import { SMMU_V3_IRQ_NAMES, type IrqOutput, type SmmuV3IrqName } from './interrupts.js';
import type { SmmuV3Options } from './options.js';
import { PAGE1, SMMU_V3_REGION_SIZE } from './regs.js';
import { SmmuV3 } from './smmu-v3.js';

export { SmmuV3 } from './smmu-v3.js';
export type { CommandEngine, CommandQueue, CommandQueueHooks } from './cmdq.js';
export type { SmmuV3Deps, SmmuV3Stats } from './smmu-v3.js';
export { idRegisters, resolveOptions, DEFAULT_TIMING, QEMU_VIRT_SMMUV3_OPTIONS } from './options.js';
export type { IdRegisters, ResolvedOptions, SmmuV3Options, SmmuV3Timing, StallModel } from './options.js';
export { SMMU_V3_IRQ_NAMES } from './interrupts.js';
export type { IrqOutput, SmmuV3IrqName } from './interrupts.js';
export { SMMU_V3_REGION_SIZE } from './regs.js';
export { ACCESS_INSTR, ACCESS_PRIV, ACCESS_WRITE } from './translate.js';

export const SMMU_V3_COMPATIBLE = 'arm,smmu-v3';
export const SMMU_V3_MODEL_NAME = 'smmu-v3';

/** Option keys a machine may pass (MachineOptions.iommuOptions). */
const OPTION_KEYS: ReadonlySet<string> = new Set<keyof SmmuV3Options>([
  'name', 'stage1', 'stage2', 'coherent', 'hyp', 'ats', 'pri', 'asid16', 'vmid16', 'msi', 'sev', 'cd2l',
  'twoLevelStreamTable', 'stallModel', 'abortOnlyTermination', 'sidBits', 'ssidBits', 'cmdqLog2', 'evtqLog2',
  'priqLog2', 'attrPermsOverride', 'rangeInvalidation', 'priPasidAutoResponse', 'oasBits', 'granules', 'stallMax',
  'gbpaReset', 'iidr', 'aidr', 'tlbEntries', 'timing', 'attrTypesOverride', 'bbml', 'httu', 'walkCache',
]);
/** Besides the SMMUv3's own: options of the Grace CMDQV the node names (see hw/tegra241-cmdqv). */
const CMDQV_KEY = 'cmdqv';

/** Build the SMMUv3 for a DT node (the registered model factory). */
export function createSmmuV3ForNode(ctx: IommuModelContext): IommuModelInstance {
  const { node, regions, interrupts, machine } = ctx;
  const reg = regions[0];
  if (reg === undefined) throw new Error(`${node.path}: ${SMMU_V3_COMPATIBLE} node has no reg region`);
  if (reg.size < PAGE1) {
    throw new Error(`${node.path}: ${SMMU_V3_COMPATIBLE} reg region of 0x${reg.size.toString(16)} bytes is smaller than one 64 KiB register page`);
  }
  for (const k of Object.keys(ctx.options)) {
    if (!OPTION_KEYS.has(k) && k !== CMDQV_KEY) throw new Error(`${node.path}: unknown SMMUv3 model option "${k}"`);
  }
  const irqs: Partial<Record<SmmuV3IrqName, IrqOutput>> = {};
  const named = interrupts.filter((l) => l !== null && l.name !== null);
  if (named.length === 0 && interrupts.length === 1 && interrupts[0]) irqs.combined = interrupts[0];
  for (const line of interrupts) {
    if (line === null || line.name === null) continue;
    if ((SMMU_V3_IRQ_NAMES as readonly string[]).includes(line.name)) irqs[line.name as SmmuV3IrqName] = line;
  }
  const { cmdqv: cmdqvOptions, ...smmuOptions } = ctx.options as SmmuV3Options & { cmdqv?: Tegra241CmdqvOptions };
  const options: SmmuV3Options = { name: node.path, coherent: hasProp(node, 'dma-coherent'), ...smmuOptions };
  const smmu = new SmmuV3(
    { scheduler: machine.scheduler, memory: machine.memory, downstream: machine.interconnect, irqs, trace: machine.trace },
    options,
  );
  const mmio: IommuMmioMapping[] = [{ base: reg.base, size: Math.min(reg.size, SMMU_V3_REGION_SIZE), device: smmu }];
  // A Grace CMDQV the node names is modelled with it (its aperture is the second mapping).
  const companion = ctx.companion(TEGRA241_CMDQV_PHANDLE_PROP);
  if (companion !== null) {
    const { cmdqv, base, size } = createCmdqvForNode(machine, smmu, companion, cmdqvOptions ?? {});
    mmio.push({ base, size, device: cmdqv });
  } else if (cmdqvOptions !== undefined && !hasProp(node, TEGRA241_CMDQV_PHANDLE_PROP)) {
    throw new Error(`${node.path}: CMDQV options given but the node names no CMDQV (${TEGRA241_CMDQV_PHANDLE_PROP})`);
  }
  return {
    status: 'modelled',
    model: SMMU_V3_MODEL_NAME,
    mmio,
    portFor: () => smmu,
  };
}

registerIommuModel([SMMU_V3_COMPATIBLE], createSmmuV3ForNode, SMMU_V3_MODEL_NAME);
