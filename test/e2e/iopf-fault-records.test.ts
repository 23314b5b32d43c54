import { describe, expect, it } from 'vitest';
import { scenario } from '../../scenarios/iopf-fault-records.js';
import { runScenario } from './run-scenario.js';

describe('iopf-fault-records (VFIO-style fault records with host tokens on the PCIe endpoint)', () => {
  it('maps tokens back exactly, refuses spurious/stale/late answers, EBUSY while pending, drains on removal', async () => {
    const r = await runScenario(scenario);
    // Three answered (served, by hand, reused index); three refused (spurious, late, stale).
    expect(r.figures).toMatchObject({ records: 4, responses: 3, rejected: 3, 'PRI responses': 4 });
  });
});
