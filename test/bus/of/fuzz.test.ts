/**
 * Property test: thousands of damaged DTBs (truncations, byte flips, u32 overwrites in the
 * header, in tokens and in property values, bad offsets), from real board blobs and from a
 * builder-made machine. Reading each one, then walking every node through the of_* helpers,
 * must end in success or FirmwareError: never another exception and never a hang. Blobs that
 * still parse must also survive writeFdt → parseFdt unchanged. Seeded, so every run is the same.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FirmwareError } from '../../../bus/firmware-error.js';
import { parseFdt } from '../../../bus/of/fdt.js';
import { exercise, mutate, mutation, SOURCES } from './dt-fuzz.js';

describe('damaged DTBs never escape FirmwareError', () => {
  it.each(SOURCES.map((s) => [s.name, s] as const))('%s', (_name, src) => {
    const outcomes = { rejected: 0, read: 0 };
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (muts) => {
        outcomes[exercise(mutate(src, muts))]++;
      }),
      { seed: 42, numRuns: 900 },
    );
    // both outcomes must actually occur, or the damage is not reaching the interesting paths
    expect(outcomes.rejected).toBeGreaterThan(50);
    expect(outcomes.read).toBeGreaterThan(50);
  }, 60_000);

  it('every single-byte truncation of the builder machine is rejected with an offset', () => {
    const blob = SOURCES[0].blob;
    for (let cut = 0; cut < blob.length; cut++) {
      try {
        parseFdt(blob.subarray(0, cut));
        throw new Error(`truncation at ${cut} was accepted`);
      } catch (e) {
        expect(e).toBeInstanceOf(FirmwareError);
        expect((e as FirmwareError).offset).not.toBeNull();
      }
    }
  });
});
