/** kexec on an ACPI machine: the second kernel reads the same tables and memory map and finds the same hardware. */
import { describe, expect, it } from 'vitest';
import { runKexecExperiment } from '../../../scenarios/lib/kexec-experiment.js';
import { virtAcpiMachine } from '../../../scenarios/lib/lab.js';

describe('kexec on virt booted from ACPI', () => {
  it('a quiesced kexec leaves no stray writes, as on the DT machine', async () => {
    const machine = virtAcpiMachine({ seed: 2 });
    const r = await runKexecExperiment(machine, { target: 'aware', quiesce: 'all' });
    expect(r.engines.length).toBeGreaterThan(0);
    expect(r.strayWrites).toEqual([]);
  });
});
