import { describe, expect, it } from 'vitest';
import { scenario } from '../../scenarios/iopf-smmu-v2-stall.js';
import { runScenario } from './run-scenario.js';

describe('iopf-smmu-v2-stall (a stall-capable platform master on the MMU-500, no PASIDs)', () => {
  it('resolves every stalled page through the IOPF queue and a user fault queue, then terminates an access outside any VMA', async () => {
    const r = await runScenario(scenario);
    expect(r.figures).toMatchObject({ 'stalled faults': 9, retried: 8, terminated: 1, records: 9 });
  });
});
