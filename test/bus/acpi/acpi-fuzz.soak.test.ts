/** The long run of the mutated-ACPI property (make soak): 10^4 table sets by default. */
import fc from 'fast-check';
import { it } from 'vitest';
import { acpiBootOutcome, acpiCase } from './acpi-mutate.js';

it('10^4 mutated ACPI table sets boot or raise a firmware error', async () => {
  await fc.assert(
    fc.asyncProperty(acpiCase, async (c) => {
      await acpiBootOutcome(c);
    }),
    { seed: Number(process.env.SOAK_SEED ?? 1), numRuns: Number(process.env.SOAK_RUNS ?? 10_000) },
  );
});
