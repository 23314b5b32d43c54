/**
 * smmu-v3-cerror: an illegal command in the command queue. The SMMU stops the queue at it with
 * CMDQ_CONS.ERR = CERROR_ILL and raises GERROR.CMDQ_ERR; the driver's GERROR handler reports it,
 * overwrites the command with a CMD_SYNC (as Linux does), acknowledges through GERRORN, and the queue
 * goes on: the CMD_SYNC queued behind the bad command completes, and later commands work.
 */
import { FIELD_GET } from '../bus/bitfield.js';
import { ARM_SMMU_CMDQ_CONS, ARM_SMMU_GERROR, ARM_SMMU_GERRORN, CMDQ_0_OP, CMDQ_CONS_ERR, CMDQ_OP_CMD_SYNC, CMDQ_OP_TLBI_NSNH_ALL } from '../drivers/arm-smmu-v3/arm-smmu-v3-regs.js';
import { Checks, type Scenario } from './scenario.js';
import { bootSmmuV3, runIn, settle } from './smmu-v3-lab.js';

/** An opcode no SMMUv3 defines. */
const ILLEGAL_OPCODE = 0x7f;

export const scenario: Scenario = {
  name: 'smmu-v3-cerror',
  shows: 'an illegal command stops the queue with CERROR_ILL; the driver skips it as Linux does and the queue goes on',
  async run(ctx) {
    const lab = await bootSmmuV3({ seed: ctx.seed });
    const c = new Checks();
    const cmdq = lab.smmu.cmdq;
    const q = cmdq.q;
    const badAbs = q.prodAbs;
    const badPa = q.absAddr(badAbs);
    const before = lab.model.cmdq.stats.errors;
    const res = await runIn(lab, cmdq.issueRaw(new Uint32Array([ILLEGAL_OPCODE, 0, 0, 0]), true), 'illegal command + sync');
    await settle(lab);

    const cons = lab.model.peek32(ARM_SMMU_CMDQ_CONS);
    const log = lab.kernel.log.lines().map((l) => l.message);
    c.equal('the SMMU reported one command error', lab.model.cmdq.stats.errors - before, 1);
    c.equal('CMDQ_CONS.ERR says CERROR_ILL', FIELD_GET(CMDQ_CONS_ERR, cons), 1);
    c.ok('the driver logged the error', log.some((m) => m.includes('CMDQ error') && m.includes('Illegal command')));
    c.ok('and the command it skipped', log.some((m) => m.includes('skipping command in error state')));
    c.equal('the bad entry was rewritten as a CMD_SYNC', CMDQ_0_OP.get(new Uint32Array([lab.machine.cpu.ram.read32(badPa)])), CMDQ_OP_CMD_SYNC);
    c.equal('the CMD_SYNC behind it completed', res, 0);
    c.equal('the global error was acknowledged', lab.model.peek32(ARM_SMMU_GERROR) ^ lab.model.peek32(ARM_SMMU_GERRORN), 0);
    const consumed = lab.model.cmdq.stats.total;
    const next = await runIn(lab, cmdq.issueCmdWithSync({ opcode: CMDQ_OP_TLBI_NSNH_ALL }), 'TLBI after recovery');
    c.equal('a later command with a sync completes', next, 0);
    c.equal('and the SMMU consumed it (TLBI + CMD_SYNC)', lab.model.cmdq.stats.total - consumed, 2);
    c.equal('the driver skipped exactly one command', cmdq.stats.skipped, 1);
    return c.result({ 'CONS.ERR': FIELD_GET(CMDQ_CONS_ERR, cons), skipped: cmdq.stats.skipped, 'sync timeouts': cmdq.stats.syncTimeouts });
  },
};
