/**
 * NVIDIA Tegra241 (Grace) CMDQV hardware model: public exports, and the firmware binding through
 * which the machine builds one next to an SMMUv3.
 *
 * Supports (firmware, this project's binding): an `arm,smmu-v3` node with `nvidia,cmdqv = <&cmdqv>`
 * names a node with compatible `nvidia,tegra241-cmdqv`, whose first `reg` region is the CMDQV
 * aperture (at least 0x30000 + 0x20000 per VINTF; a smaller region limits the VINTFs the model
 * offers to what fits) and whose first interrupt is the CMDQV's one error interrupt. The CMDQV is
 * modelled as part of its SMMU (same IommuEntry; the node is not listed as skipped). Construction
 * options come from the SMMU's options under the key `cmdqv`.
 * From ACPI the machine's firmware tree (hw/acpi.ts) describes a DSDT NVDA200C device whose _UID
 * is a generic IORT SMMUv3 node's Identifier as that SMMU's CMDQV companion in the same shape, so
 * this builds it the same way.
 * Does not support: a CMDQV node no SMMU names (it is listed as skipped, "no model").
 */
import { isCompatible } from '../firmware.js';
import type { IommuCompanion } from '../iommu-models.js';
import type { Machine } from '../machine.js';
import type { SmmuV3 } from '../smmu-v3/smmu-v3.js';
import { Tegra241Cmdqv } from './cmdqv.js';
import { resolveCmdqvOptions, type Tegra241CmdqvOptions } from './options.js';
import { VINTF_PAGE0_BASE, VINTF_PAGE_STRIDE } from './regs.js';

export { Tegra241Cmdqv, Vcmdq, Vintf } from './cmdqv.js';
export type { Tegra241CmdqvDeps, Tegra241CmdqvStats } from './cmdqv.js';
export { CMDQV_OPTION_KEYS, DEFAULT_CONFIG_RESET, DEFAULT_GUEST_COMMANDS, resolveCmdqvOptions } from './options.js';
export type { ResolvedCmdqvOptions, Tegra241CmdqvOptions } from './options.js';
export { cmdqvRegionSize } from './regs.js';

export const TEGRA241_CMDQV_COMPATIBLE = 'nvidia,tegra241-cmdqv';
/** The SMMUv3 node's property naming its CMDQV. */
export const TEGRA241_CMDQV_PHANDLE_PROP = 'nvidia,cmdqv';

/** Build the CMDQV a firmware node describes, next to `smmu`; returns it and its MMIO mapping. */
export function createCmdqvForNode(
  machine: Machine,
  smmu: SmmuV3,
  c: IommuCompanion,
  options: Tegra241CmdqvOptions,
): { cmdqv: Tegra241Cmdqv; base: number; size: number } {
  if (!isCompatible(c.node, TEGRA241_CMDQV_COMPATIBLE)) {
    throw new Error(`${c.node.path}: named by ${TEGRA241_CMDQV_PHANDLE_PROP} but not compatible with "${TEGRA241_CMDQV_COMPATIBLE}"`);
  }
  const reg = c.regions[0];
  if (reg === undefined) throw new Error(`${c.node.path}: ${TEGRA241_CMDQV_COMPATIBLE} node has no reg region`);
  const wanted = resolveCmdqvOptions(options);
  // The region decides how many VINTF apertures exist: never more than firmware gave room for.
  let vintfsLog2 = wanted.vintfsLog2;
  while (vintfsLog2 > 0 && VINTF_PAGE0_BASE + VINTF_PAGE_STRIDE * 2 ** vintfsLog2 > reg.size) vintfsLog2--;
  if (VINTF_PAGE0_BASE + VINTF_PAGE_STRIDE > reg.size) {
    throw new Error(`${c.node.path}: reg region of 0x${reg.size.toString(16)} bytes cannot hold one VINTF (needs 0x${(VINTF_PAGE0_BASE + VINTF_PAGE_STRIDE).toString(16)})`);
  }
  const cmdqv = new Tegra241Cmdqv(
    { scheduler: machine.scheduler, smmu, irq: c.interrupts[0] ?? null },
    { name: c.node.path, ...options, vintfsLog2, vcmdqsLog2: Math.max(wanted.vcmdqsLog2, vintfsLog2) },
  );
  return { cmdqv, base: reg.base, size: cmdqv.regionSize };
}
