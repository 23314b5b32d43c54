/**
 * kexec-matrix-small: a corner of the policy matrix (`iommu-sim kexec --matrix` runs all of it):
 * SMMUv3, Linux's `disable` against `gbpa-abort`, into an IOMMU-aware kernel and a crash kernel,
 * engines not quiesced. Bypass strays and corrupts, abort blocks and storms.
 */
import { cellName, defaultMatrixInputs, runKexecMatrix } from './lib/kexec-matrix.js';
import { Checks, type Scenario } from './scenario.js';

export const scenario: Scenario = {
  name: 'kexec-matrix-small',
  shows: 'four cells of the kexec policy matrix: bypass corrupts (memory or the dump), abort blocks and storms',
  async run(ctx) {
    const c = new Checks();
    const report = await runKexecMatrix(
      defaultMatrixInputs({ seed: ctx.seed, kinds: ['v3'], policies: { v3: ['disable', 'gbpa-abort'] }, targets: ['aware', 'kdump'], quiesce: ['none'] }),
    );
    c.equal('cells run', report.cells.length, 4);
    const figures: Record<string, string> = {};
    for (const cell of report.cells) {
      c.ok(`${cellName(cell)}: boots and accounts every transaction`, cell.boot.ok && cell.accounting.balanced);
      if (cell.stance === 'bypass') c.ok(`${cellName(cell)}: stray writes land`, cell.strayWrites > 0);
      else c.ok(`${cellName(cell)}: nothing strays, transactions are blocked`, cell.strayWrites === 0 && cell.blocked + cell.faulted > 0);
      figures[`${cell.policy}/${cell.target}`] = `stray=${cell.strayWrites} blocked=${cell.blocked} faulted=${cell.faulted} irqs=${cell.storm.interrupts}`;
    }
    return c.result(figures);
  },
};
