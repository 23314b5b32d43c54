/**
 * The board a Device Tree test starts from, written with the project's builder (bus/of/dt-builder.ts):
 * a root with `#address-cells` = `#size-cells` = 2, RAM as `/memory@<base>` nodes, and a GIC that is
 * the root's `interrupt-parent`. The test adds its own devices to `b` and builds:
 *
 *   const { b, gic } = board();                       // 256 MiB at 0x8000_0000, GIC-400 at /intc@8000000
 *   const smmu = b.node('/iommu@9050000', { compatible: 'arm,smmu-v3', '#iommu-cells': 1, reg: reg([...]) });
 *   b.node('/dma@a000000', { iommus: [smmu, 0x10] });
 *   const m = Machine.fromDeviceTree(b.build(), { seed: 1 });
 *
 * Options change only what a test is about (where the GIC sits, its compatible, RAM banks, MSI
 * frames under the GIC); everything else is the same for every test.
 */
import { DtBuilder, reg, type DtBuilderNode, type DtProps, type DtRangesValue } from '../../bus/of/dt-builder.js';

export interface RamBank {
  base: number;
  size: number;
  /** `status = "disabled"`: a bank the firmware lists but turns off. */
  disabled?: boolean;
}

export interface GicOptions {
  /** Node name before the unit address: `intc` (default) or `interrupt-controller`. */
  name?: string;
  /** `compatible` (default `arm,gic-400`). */
  compatible?: string | readonly string[];
  /** `reg` entries; the first base is the unit address. Default: distributor and CPU interface at 0x800_0000. */
  reg?: readonly (readonly [base: number, size: number])[];
  /** A child bus for MSI frames (GICv2m): the GIC's own `#address-cells`/`#size-cells`, and its `ranges` if any. */
  children?: { cells: 1 | 2; ranges?: DtRangesValue | true };
}

export interface BoardOptions {
  /** The root's `compatible` (default `iommu-sim,test`); null leaves it out. */
  compatible?: string | readonly string[] | null;
  model?: string;
  /** The root's `#address-cells` and `#size-cells` (default 2). */
  cells?: 1 | 2;
  /** RAM banks (default one of 256 MiB at 0x8000_0000). */
  ram?: readonly RamBank[];
  gic?: GicOptions;
}

export interface Board {
  readonly b: DtBuilder;
  /** The GIC node: the root's interrupt-parent; MSI frames go under it. */
  readonly gic: DtBuilderNode;
}

export const BOARD_RAM: RamBank = { base: 0x8000_0000, size: 0x1000_0000 };
export const BOARD_GIC_REG = [[0x800_0000, 0x1000], [0x801_0000, 0x2000]] as const;

export function board(opts: BoardOptions = {}): Board {
  const cells = opts.cells ?? 2;
  const root: DtProps = {};
  const compatible = opts.compatible === undefined ? 'iommu-sim,test' : opts.compatible;
  if (compatible !== null) root.compatible = compatible;
  if (opts.model !== undefined) root.model = opts.model;
  root['#address-cells'] = cells;
  root['#size-cells'] = cells;
  const b = new DtBuilder(root);
  for (const bank of opts.ram ?? [BOARD_RAM]) {
    b.node(`/memory@${bank.base.toString(16)}`, {
      device_type: 'memory',
      reg: reg([bank.base, bank.size]),
      ...(bank.disabled ? { status: 'disabled' } : {}),
    });
  }
  const g = opts.gic ?? {};
  const gicReg = g.reg ?? BOARD_GIC_REG;
  const gicProps: DtProps = {
    compatible: g.compatible ?? 'arm,gic-400',
    reg: reg(...gicReg),
    'interrupt-controller': true,
    '#interrupt-cells': 3,
  };
  if (g.children) {
    gicProps['#address-cells'] = g.children.cells;
    gicProps['#size-cells'] = g.children.cells;
    if (g.children.ranges !== undefined) gicProps.ranges = g.children.ranges;
  }
  const gic = b.node(`/${g.name ?? 'intc'}@${gicReg[0][0].toString(16)}`, gicProps);
  b.root.set({ 'interrupt-parent': gic });
  return { b, gic };
}
