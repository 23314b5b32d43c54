/**
 * smmu-v3-shutdown: what the arm-smmu-v3 `.shutdown` leaves behind for whatever runs next, under each
 * `arm-smmu-v3.shutdown_policy`:
 * - `disable` (Linux today): CR0 cleared, GBPA left as firmware set it — bypass or abort, whichever
 *   the firmware chose, decides what DMA still in flight does;
 * - `gbpa-abort`: GBPA.ABORT first, then CR0 cleared: DMA aborts while the SMMU is off;
 * - `ste-abort`: the SMMU stays enabled with every STE aborting; the next kernel finds it enabled,
 *   says so, aborts through GBPA while it resets it, and takes over.
 */
import { ARM_SMMU_CR0, ARM_SMMU_CR0ACK, ARM_SMMU_GBPA, CR0_SMMUEN, GBPA_ABORT } from '../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { armSmmuSteConfigName } from '../drivers/arm-smmu-v3/arm-smmu-v3-ste.js';
import { kexec } from '../kernel/kexec.js';
import { Checks, type Scenario } from './scenario.js';
import { findArmSmmuV3 } from '../drivers/arm-smmu-v3/arm-smmu-v3.js';
import { bootSmmuV3, runIn, V3, type SmmuV3Lab } from './smmu-v3-lab.js';

/** GBPA reset values: SHCFG = use incoming, with and without ABORT. */
const GBPA_FW_BYPASS = 0x1000;
const GBPA_FW_ABORT = 0x1000 | GBPA_ABORT;
const PROBE_IOVA = 0x4000_1000;

async function shutdownOf(seed: number, policy: string, gbpaReset: number): Promise<{ lab: SmmuV3Lab; cr0: number; cr0ack: number; gbpa: number; dma: string }> {
  const lab = await bootSmmuV3({ seed, bootargs: `arm-smmu-v3.shutdown_policy=${policy}`, smmu: { gbpaReset } });
  await runIn(lab, lab.kernel.shutdown(), 'shutdown');
  const dma = await runIn(lab, lab.machine.master(V3.engine)!.read(PROBE_IOVA, 8), 'DMA after shutdown');
  return {
    lab,
    cr0: lab.model.peek32(ARM_SMMU_CR0),
    cr0ack: lab.model.peek32(ARM_SMMU_CR0ACK),
    gbpa: lab.model.peek32(ARM_SMMU_GBPA),
    dma: dma.status,
  };
}

export const scenario: Scenario = {
  name: 'smmu-v3-shutdown',
  shows: 'shutdown clears CR0.SMMUEN and leaves GBPA as firmware left it; gbpa-abort and ste-abort compared',
  async run(ctx) {
    const c = new Checks();
    const figures: Record<string, string> = {};

    for (const [fw, gbpa] of [['bypass', GBPA_FW_BYPASS], ['abort', GBPA_FW_ABORT]] as const) {
      const r = await shutdownOf(ctx.seed, 'disable', gbpa);
      c.equal(`disable, firmware GBPA ${fw}: CR0 and CR0ACK are 0`, { cr0: r.cr0, ack: r.cr0ack }, { cr0: 0, ack: 0 });
      c.equal(`disable, firmware GBPA ${fw}: GBPA is what firmware left`, r.gbpa, gbpa);
      c.equal(`disable, firmware GBPA ${fw}: DMA afterwards ${fw === 'bypass' ? 'bypasses' : 'aborts'}`, r.dma, fw === 'bypass' ? 'ok' : 'abort');
      figures[`disable/${fw}`] = `GBPA 0x${r.gbpa.toString(16)}, DMA ${r.dma}`;
    }

    const ga = await shutdownOf(ctx.seed, 'gbpa-abort', GBPA_FW_BYPASS);
    c.equal('gbpa-abort: CR0 is 0', ga.cr0, 0);
    c.equal('gbpa-abort: GBPA.ABORT is set', ga.gbpa & GBPA_ABORT, GBPA_ABORT);
    c.equal('gbpa-abort: DMA afterwards aborts', ga.dma, 'abort');
    figures['gbpa-abort'] = `GBPA 0x${ga.gbpa.toString(16)}, DMA ${ga.dma}`;

    const sa = await shutdownOf(ctx.seed, 'ste-abort', GBPA_FW_BYPASS);
    const sids = [...sa.lab.smmu.strtab.allocatedSids()];
    c.equal('ste-abort: the SMMU stays enabled', sa.cr0ack & CR0_SMMUEN, CR0_SMMUEN);
    c.ok('ste-abort: every STE aborts', sids.every((sid) => armSmmuSteConfigName(sa.lab.smmu.strtab.readSte(sid)) === 'abort'));
    c.equal('ste-abort: DMA afterwards aborts', sa.dma, 'abort');
    c.equal('ste-abort: GBPA untouched', sa.gbpa, GBPA_FW_BYPASS);
    figures['ste-abort'] = `SMMUEN ${sa.cr0ack & CR0_SMMUEN}, ${sids.length} STEs abort, DMA ${sa.dma}`;

    // The next kernel finds the SMMU running.
    const next = await runIn(sa.lab, kexec(sa.lab.machine), 'kexec');
    const smmu2 = findArmSmmuV3(next.core, V3.smmu);
    c.ok('kexec: the new kernel warns it found the SMMU enabled', smmu2.foundEnabled && next.log.lines('warn').some((l) => l.message === 'SMMU currently enabled! Resetting...'));
    c.equal('kexec: and leaves GBPA.ABORT set while it owns the SMMU', sa.lab.model.peek32(ARM_SMMU_GBPA) & GBPA_ABORT, GBPA_ABORT);
    c.equal('kexec: the new kernel enabled it again with its own tables', sa.lab.model.peek32(ARM_SMMU_CR0ACK) & CR0_SMMUEN, CR0_SMMUEN);
    return c.result(figures);
  },
};
