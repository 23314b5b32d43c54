import { describe, expect, it } from 'vitest';
import { scenario } from '../../scenarios/sva-stall.js';
import { runScenario } from './run-scenario.js';

describe('sva-stall (a stall-capable platform master on the SMMUv3 bound to a process)', () => {
  it('resolves stalled writes through the mm, aborts outside any VMA, and survives mm exit mid-DMA', async () => {
    const r = await runScenario(scenario);
    // Four copy pages, the periodic write's first page, and the write outside any VMA.
    expect(r.figures).toMatchObject({ stalls: 6, 'RESUME retry': 5, 'RESUME abort': 1 });
    const names = r.checks.map((c) => c.what);
    expect(names).toContain('the CPU reads the copy through the process VA');
    expect(names).toContain('nothing is stalled');
    expect(names).toContain('after unbind the mm is gone and its PASID free');
  });
});
