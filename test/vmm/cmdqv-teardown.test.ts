/**
 * VM teardown with an ATC_INV pending on the guest's VCMDQ: flushed by the host's main-queue
 * CMD_SYNC, nothing left enabled or pending, the VINTF's registers back to reset values, and the
 * next VM gets the VINTF clean.
 */
import { describe, expect, it } from 'vitest';
import { vmTeardownWithPendingAtcInv } from '../../scenarios/lib/cmdqv-vm-teardown.js';

describe('VM teardown with a pending ATC_INV on its VCMDQ', () => {
  it.each([
    ['never answers', Infinity, 1],
    ['answers late (50 µs)', 50_000, 0],
  ] as const)('the function %s: the teardown flushes it, leaves nothing enabled, and the next VM gets VINTF1 clean', async (_what, answerNs, timeouts) => {
    const r = await vmTeardownWithPendingAtcInv(7, answerNs);
    expect(r.pendingAtKill).toBe(1);
    // A host queue's CMD_SYNC (the flush's on the main queue, or an earlier one of the teardown)
    // took the timeout and the host recovered it, or it waited for the late answer.
    expect(r.hostAtcTimeouts).toBe(timeouts);
    expect(r.hostErrors).toBe(timeouts);
    expect(r.mainSyncs).toBeGreaterThanOrEqual(4);
    expect(r.mainIdle).toBe(true);
    expect(r.atcPendingAfter).toBe(0);
    expect(r.notReset).toEqual({});
    expect(r.vintf1Released).toBe(true);
    expect(r.secondVintf).toBe(1);
    expect(r.secondQueuesEnabled).toBe(true);
    expect(r.secondVcmdqCommands).toBeGreaterThanOrEqual(2);
    expect([r.secondVcmdqErrors, r.secondVcmdqAtcTimeouts]).toEqual([0, 0]);
  });
});
