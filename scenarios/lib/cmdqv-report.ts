/**
 * The Grace CMDQV part of `iommu-sim boot`: each `nvidia,tegra241-cmdqv` node, the SMMU naming it,
 * and what the driver made of it (status, VINTFs and their VCMDQs). The shape is documented in the
 * README (boot --json, key `cmdqvs`); keep it stable.
 */
import type { DtNode } from '../../bus/of/tree.js';
import { armSmmuV3Of } from '../../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { TEGRA241_CMDQV_COMPATIBLE, TEGRA241_CMDQV_DT_PROP, tegra241CmdqvOf, tegra241CmdqvReport, type Tegra241CmdqvReport } from '../../drivers/arm-smmu-v3/tegra241-cmdqv.js';
import type { Machine } from '../../hw/machine.js';
import type { Kernel } from '../../kernel/kernel.js';

/** probed: the driver uses it; unused: the SMMU's driver did not take it; disabled: status = disabled. */
export type CmdqvReportStatus = 'probed' | 'unused' | 'disabled' | 'no-smmu';

/** The driver's report (tegra241CmdqvReport) with where the CMDQV sits and what became of it. */
export interface CmdqvBootReport extends Omit<Tegra241CmdqvReport, 'device' | 'base' | 'version'> {
  node: string;
  /** The SMMU node naming it (`nvidia,cmdqv`), or null. */
  smmu: string | null;
  status: CmdqvReportStatus;
  /** PA of the aperture (as the driver mapped it), or null. */
  base: number | null;
  version: number | null;
}

export function cmdqvReport(_machine: Machine, kernel: Kernel): CmdqvBootReport[] {
  const dt = kernel.dt;
  const out: CmdqvBootReport[] = [];
  const smmuOf = new Map<DtNode, DtNode>();
  for (const n of dt.nodes()) {
    const ph = n.has(TEGRA241_CMDQV_DT_PROP) ? n.cells(TEGRA241_CMDQV_DT_PROP)?.[0] : undefined;
    const c = ph !== undefined ? dt.byPhandle(ph) : undefined;
    if (c) smmuOf.set(c, n);
  }
  for (const node of dt.nodes()) {
    if (!node.has('compatible') || !node.isCompatible(TEGRA241_CMDQV_COMPATIBLE)) continue;
    const smmuNode = smmuOf.get(node) ?? null;
    const empty: CmdqvBootReport = {
      node: node.path, smmu: smmuNode?.path ?? null, status: 'unused', base: null, version: null, enabled: false, bypassVcmdq: false,
      numVintfs: 0, numVcmdqs: 0, lvcmdqsPerVintf: 0, sidsPerVintf: 0, vintfs: [],
    };
    if (!node.available) {
      out.push({ ...empty, status: 'disabled' });
      continue;
    }
    const dev = smmuNode ? kernel.core.findDeviceByOfNode(smmuNode) : undefined;
    if (!smmuNode) {
      out.push({ ...empty, status: 'no-smmu' });
      continue;
    }
    const cmdqv = dev?.status === 'bound' ? tegra241CmdqvOf(armSmmuV3Of(dev)) : null;
    if (!cmdqv) {
      out.push(empty);
      continue;
    }
    const r = tegra241CmdqvReport(cmdqv);
    out.push({
      node: node.path,
      smmu: smmuNode.path,
      status: 'probed',
      base: r.base,
      version: r.version,
      enabled: r.enabled,
      bypassVcmdq: r.bypassVcmdq,
      numVintfs: r.numVintfs,
      numVcmdqs: r.numVcmdqs,
      lvcmdqsPerVintf: r.lvcmdqsPerVintf,
      sidsPerVintf: r.sidsPerVintf,
      vintfs: r.vintfs,
    });
  }
  return out;
}

/** The text form: one line per CMDQV, one per VINTF, one per VCMDQ. Empty when there is none. */
export function formatCmdqvReport(cmdqvs: readonly CmdqvBootReport[] | undefined): string[] {
  if (!cmdqvs || cmdqvs.length === 0) return [];
  const out = ['', 'CMDQVs'];
  for (const c of cmdqvs) {
    const where = c.base !== null ? ` at 0x${c.base.toString(16)}` : '';
    out.push(`${c.node}${where} (SMMU ${c.smmu ?? '-'}): ${c.status}` +
      (c.status === 'probed'
        ? `, v${c.version}, CMDQV ${c.enabled ? 'enabled' : 'disabled'}, ${c.numVintfs} VINTFs, ${c.numVcmdqs} VCMDQs (${c.lvcmdqsPerVintf} per VINTF), ${c.sidsPerVintf} SID pairs per VINTF${c.bypassVcmdq ? ', bypass_vcmdq' : ''}`
        : ''));
    for (const v of c.vintfs) {
      out.push(`  VINTF${v.idx}: ${v.enabled ? 'enabled' : 'disabled'}, ${v.hypOwn ? 'HYP_OWN=1 (host)' : 'HYP_OWN=0 (guest command set)'}, VMID ${v.vmid}`);
      for (const q of v.vcmdqs) {
        out.push(`    LVCMDQ${q.lidx} = VCMDQ${q.idx}: ${q.enabled ? 'enabled' : 'disabled'}, ${q.entries} entries, ${q.commands} commands, ${q.syncs} syncs, ${q.errors} errors${q.guestFilter ? ', guest filter' : ''}`);
      }
    }
  }
  return out;
}
