import { describe, expect, it } from 'vitest';
import { scenario } from '../../scenarios/sva-pri.js';
import { runScenario } from './run-scenario.js';

describe('sva-pri (PCIe endpoint with PASID, PRI and ATS bound to a process)', () => {
  it('faults every untouched page once, resolves it, and the CPU reads the device bytes', async () => {
    const r = await runScenario(scenario);
    // 8 fresh pages, then one each: outside any VMA, the remapped page, the read-only page, the second
    // process's page, and that page again after its exit.
    expect(r.figures).toMatchObject({ pages: 8, 'page requests': 13, pasid: 1 });
    const names = r.checks.map((c) => c.what);
    expect(names).toContain("the CPU reads the device's bytes through the process VA");
    expect(names).toContain('the group got exactly one response');
    expect(names).toContain('a write outside any VMA fails in the device');
    expect(names).toContain("munmap invalidated the endpoint's ATC");
    expect(names).toContain("munmap became a TLBI_NH_VA of that page for the SVA domain's ASID");
    expect(names).toContain("and an ATC_INV of it for the endpoint's StreamID and PASID");
    expect(names).toContain('DMA on it fails and its page request gets Invalid');
  });

  it('replays the same way with another seed', async () => {
    await runScenario(scenario, 7);
  });
});
