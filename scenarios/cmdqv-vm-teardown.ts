/**
 * cmdqv-vm-teardown: a VM killed while an ATC_INV it put on its VCMDQ (no CMD_SYNC after it) waits
 * for a PCIe function that never answers, or answers late (scenarios/lib/cmdqv-vm-teardown.ts).
 * The host's vIOMMU teardown flushes the pending invalidation (its timeout is the host's, recovered
 * by the host), leaves no VCMDQ, VINTF or SID pair enabled and no command or ATC invalidation
 * pending, the VINTF's registers read as a freshly reset CMDQV's, and a second VM gets the same
 * VINTF and invalidates on its VCMDQ without inheriting the timeout.
 */
import { Checks, type Scenario } from './scenario.js';
import { vmTeardownWithPendingAtcInv } from './lib/cmdqv-vm-teardown.js';

export const scenario: Scenario = {
  name: 'cmdqv-vm-teardown',
  shows: 'VM killed with an ATC_INV pending on its VCMDQ (function silent / late): flushed, nothing left enabled, next VM gets the VINTF clean',
  async run(ctx) {
    const c = new Checks();
    const figures: Record<string, number | string> = {};
    for (const [what, answerNs] of [['silent', Infinity], ['late 50 µs', 50_000]] as const) {
      const r = await vmTeardownWithPendingAtcInv(ctx.seed, answerNs);
      c.equal(`${what}: the guest's ATC_INV was pending on its VCMDQ when the VM was killed`, r.pendingAtKill, 1);
      c.equal(`${what}: the host's queues took ${answerNs === Infinity ? 'its timeout and recovered' : 'the late answer, no timeout'}`, [r.hostAtcTimeouts, r.hostErrors], answerNs === Infinity ? [1, 1] : [0, 0]);
      c.ok(`${what}: the teardown issued its flushing CMD_SYNCs on the main queue`, r.mainSyncs >= 4, `${r.mainSyncs} syncs`);
      c.ok(`${what}: main queue idle (CONS = PROD, no GERROR active), no ATC invalidation pending anywhere`, r.mainIdle && r.atcPendingAfter === 0, JSON.stringify(r));
      c.equal(`${what}: VINTF1 and its VCMDQs read as a freshly reset CMDQV's (differences listed)`, r.notReset, {});
      c.ok(`${what}: the host driver released VINTF1`, r.vintf1Released);
      c.equal(`${what}: VM2 got VINTF1, its VCMDQs enabled`, [r.secondVintf, r.secondQueuesEnabled], [1, true]);
      c.ok(`${what}: VM2's strict unmap ran on the same VCMDQ without error or inherited timeout`, r.secondVcmdqCommands >= 2 && r.secondVcmdqErrors === 0 && r.secondVcmdqAtcTimeouts === 0, JSON.stringify(r));
      figures[`${what}: timeout reported on`] = r.timeoutQueues.join(' ') || 'none';
      figures[`${what}: main-queue syncs in teardown`] = r.mainSyncs;
    }
    return c.result(figures);
  },
};
