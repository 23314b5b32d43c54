/**
 * Mutated ACPI tables boot or end in a firmware error, never another exception, never a hang: a
 * fixed-seed slice here; `make soak` runs at least 10^4 (acpi-fuzz.soak.test.ts).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseAcpiTables } from '../../../bus/acpi/acpi-boot.js';
import { FirmwareError } from '../../../bus/firmware-error.js';
import { acpiBootOutcome, acpiCase, mutatedSet } from './acpi-mutate.js';

describe('mutated ACPI tables', () => {
  it('parse to tables or a FirmwareError naming the table', () => {
    fc.assert(
      fc.property(acpiCase, (c) => {
        const { tables, table } = mutatedSet(c);
        try {
          parseAcpiTables(tables);
        } catch (e) {
          expect(e).toBeInstanceOf(FirmwareError);
          // The error names a table (the damaged one, or the signature it now carries).
          expect((e as FirmwareError).format.length).toBeGreaterThan(0);
          void table;
        }
      }),
      { seed: 14, numRuns: 1000 },
    );
  });

  it('boot or raise a firmware error, nothing else', async () => {
    const outcomes = { booted: 0, 'firmware-error': 0 };
    await fc.assert(
      fc.asyncProperty(acpiCase, async (c) => {
        outcomes[await acpiBootOutcome(c)]++;
      }),
      { seed: 20261207, numRuns: 150 },
    );
    expect(outcomes.booted).toBeGreaterThan(0);
    expect(outcomes['firmware-error']).toBeGreaterThan(0);
  });
});
