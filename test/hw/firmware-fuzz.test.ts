/**
 * Damaged real DTBs: whatever the FDT reader accepts, building the machine ends in a machine or a
 * MachineFirmwareError, never another exception.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FirmwareError } from '../../bus/firmware-error.js';
import { parseFdt } from '../../bus/of/fdt.js';
import { MachineFirmwareError } from '../../hw/firmware.js';
import { Machine } from '../../hw/machine.js';

const DIR = new URL('../fixtures/dtb/', import.meta.url);
const blobs = ['juno-r2', 'fvp-base-revc', 'amd-overdrive-rev-b1'].map((b) => new Uint8Array(readFileSync(new URL(`${b}.dtb`, DIR))));

function buildOrFirmwareError(blob: Uint8Array): 'built' | 'firmware-error' | 'unparsed' {
  let tree;
  try {
    tree = parseFdt(blob);
  } catch (e) {
    if (e instanceof FirmwareError) return 'unparsed';
    throw e;
  }
  try {
    Machine.fromDeviceTree(tree, { seed: 1 });
    return 'built';
  } catch (e) {
    if (e instanceof MachineFirmwareError) return 'firmware-error';
    throw e;
  }
}

describe('machine from damaged firmware', () => {
  it('builds or reports MachineFirmwareError for byte-flipped blobs', () => {
    const outcomes = new Map<string, number>();
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: blobs.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 8 }),
        (which, flips) => {
          const blob = blobs[which].slice();
          // Flip bytes in the structure and strings blocks, past the header.
          for (const [pos, x] of flips) blob[64 + (pos % (blob.length - 64))] ^= x;
          const o = buildOrFirmwareError(blob);
          outcomes.set(o, (outcomes.get(o) ?? 0) + 1);
        },
      ),
      { numRuns: 400, seed: 20240611 },
    );
    // The property must have exercised the machine, not just the reader.
    expect(outcomes.get('built') ?? 0).toBeGreaterThan(0);
  });
});
