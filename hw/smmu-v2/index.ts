/**
 * Arm SMMU v1/v2 hardware model (MMU-401, MMU-500, Qualcomm SMMU-500, generic v1/v2): public
 * exports, and the model registration that makes the machine instantiate an SmmuV2 for every
 * enabled node with an SMMUv1/v2 compatible. See smmu-v2.ts for what the model does and does not.
 *
 * Supports (firmware): the node's first `reg` region (NUMPAGENDXB from its size), `#global-interrupts`
 * (default 1) splitting `interrupts` into global and context lines (a line whose controller is
 * missing is left unconnected), no more SMMUv2 banks than context interrupts (as Linux requires),
 * `dma-coherent` (ID0.CTTW), each master's `dma-can-stall`, and construction options from
 * MachineOptions.iommuOptions (by node path, else by model name "smmu-v2"), whose unknown keys are
 * rejected with an error naming them.
 * Does not support: ACPI IORT-described SMMUs, the Calxeda secure-alias quirk.
 * Importing this module registers the model (hw/machine.ts lists the built-in model modules).
 */
import { compatibles, hasProp, propU32 } from '../firmware.js';
import type { IommuModelContext, IommuModelInstance } from '../iommu-models.js';
import { registerIommuModel } from '../iommu-models.js';
import type { IrqOutput } from './faults.js';
import { optionsForNode } from './node-options.js';
import type { SmmuV2OptionsInput } from './options.js';
import { SMMU_V2_COMPATIBLES, SMMU_V2_MODELS } from './options.js';
import { SmmuV2 } from './smmu-v2.js';

export { SmmuV2 } from './smmu-v2.js';
export type { SmmuV2Deps, SmmuV2Stats } from './smmu-v2.js';
export type { IrqOutput, SmmuV2Irqs } from './faults.js';
export {
  SMMU_V2_COMPATIBLES,
  SMMU_V2_MODELS,
  archVersion,
  idRegisters,
  isMmu500,
  resolveOptions,
} from './options.js';
export type { IdRegisters, SmmuV2Model, SmmuV2Options, SmmuV2OptionsInput } from './options.js';
export { SmmuLayout, numPageNdxbForRegion } from './regs.js';
export { optionsForNode, smmuV2ModelForCompatible } from './node-options.js';
export type { SmmuV2FirmwareNode } from './node-options.js';

export const SMMU_V2_MODEL_NAME = 'smmu-v2';

/** Option keys a machine may pass (MachineOptions.iommuOptions). */
const OPTION_KEYS: ReadonlySet<string> = new Set<keyof SmmuV2OptionsInput>([
  'model', 'streamMatch', 'numSmr', 'numSidBits', 'exids', 'numCb', 'numS2Cb', 'stage1', 'stage2', 'nested',
  'atosns', 'coherentWalk', 'broadcastTlbMaintenance', 'aarch32Formats', 'granules', 'v1Aarch64Format', 'ias',
  'oas', 'ubs', 'vmid16', 'pageSize64k', 'numPageNdxb', 'numIrpt', 'revision', 'clientPdAtReset',
  's2crTypeAtReset', 'globalConfigFaultControls', 'qcomS2crBypassQuirk', 'tlbEntries', 'timing',
]);

const UNCONNECTED: IrqOutput = { raise: () => undefined };

/** Build the SMMUv1/v2 for a DT node (the registered model factory). */
export function createSmmuV2ForNode(ctx: IommuModelContext): IommuModelInstance {
  const { node, regions, interrupts, machine } = ctx;
  const reg = regions[0];
  if (reg === undefined) throw new Error(`${node.path}: SMMUv1/v2 node has no reg region`);
  for (const k of Object.keys(ctx.options)) {
    if (!OPTION_KEYS.has(k)) throw new Error(`${node.path}: unknown SMMUv2 model option "${k}"`);
  }
  const nGlobal = propU32(node, '#global-interrupts') ?? 1;
  const lines = interrupts.map((l) => l ?? UNCONNECTED);
  const global = lines.slice(0, nGlobal);
  const context = lines.slice(nGlobal);
  const derived = optionsForNode(
    { compatible: compatibles(node), regSize: reg.size, contextInterrupts: context.length },
    { coherentWalk: hasProp(node, 'dma-coherent'), ...(ctx.options as Partial<SmmuV2OptionsInput>) },
  );
  if (derived === null) throw new Error(`${node.path}: no SMMUv1/v2 flavour for compatible ${compatibles(node).join(', ')}`);
  const smmu = new SmmuV2(
    {
      name: node.path,
      scheduler: machine.scheduler,
      memory: machine.memory,
      downstream: machine.interconnect,
      irqs: { global, context },
      trace: machine.trace,
    },
    derived,
  );
  return {
    status: 'modelled',
    model: smmu.options.model,
    mmio: [{ base: reg.base, size: Math.min(reg.size, smmu.size), device: smmu }],
    portFor: (master) => {
      smmu.setMasterCanStall(master.name, master.canStall);
      return smmu;
    },
  };
}

registerIommuModel(
  SMMU_V2_MODELS.flatMap((m) => SMMU_V2_COMPATIBLES[m]),
  createSmmuV2ForNode,
  SMMU_V2_MODEL_NAME,
);
