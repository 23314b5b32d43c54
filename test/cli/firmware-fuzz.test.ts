/**
 * Mutated DTBs (truncations, byte flips, overwritten header and token words) either boot or end in a
 * firmware error — never another exception, never a hang — and the CLI keeps its exit-2 contract.
 * A fixed seed keeps the slice deterministic; `make soak` runs many more.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { writeFdt } from '../../bus/of/fdt.js';
import { isFirmwareError } from '../../cli/errors.js';
import { boot, machineFromDtb } from '../../scenarios/lib/lab.js';
import { buildVirtDeviceTree } from '../../scenarios/machines/virt.js';
import { runCli } from './run-cli.js';

export const seedBlobs: Uint8Array[] = [
  writeFdt(buildVirtDeviceTree()),
  new Uint8Array(readFileSync(join(__dirname, '..', 'fixtures', 'dtb', 'juno-r2.dtb'))),
];

/** A mutation of a blob, as fast-check values. */
export const mutation = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bits: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('word' as const), at: fc.nat(), value: fc.nat({ max: 0xffff_ffff }) }),
  fc.record({ kind: fc.constant('header' as const), field: fc.nat({ max: 9 }), value: fc.nat({ max: 0xffff_ffff }) }),
);

export type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

export function mutate(blob: Uint8Array, muts: readonly Mutation[]): Uint8Array {
  let b = blob.slice();
  for (const m of muts) {
    if (m.kind === 'truncate') {
      b = b.slice(0, m.at % (b.length + 1));
    } else if (b.length === 0) {
      continue;
    } else if (m.kind === 'flip') {
      b[m.at % b.length] ^= m.bits;
    } else {
      const off = m.kind === 'header' ? m.field * 4 : (m.at % b.length) & ~3;
      if (off + 4 <= b.length) new DataView(b.buffer, b.byteOffset).setUint32(off, m.value >>> 0, false);
    }
  }
  return b;
}

/** Boot a mutated blob; returns 'booted' or 'firmware-error', throws anything else. */
export async function bootOutcome(blob: Uint8Array): Promise<'booted' | 'firmware-error'> {
  try {
    const machine = machineFromDtb(blob, { seed: 1 });
    await boot(machine);
    return 'booted';
  } catch (e) {
    if (isFirmwareError(e)) return 'firmware-error';
    throw e;
  }
}

describe('mutated firmware', () => {
  it('boots or raises a firmware error, nothing else', async () => {
    const outcomes = { booted: 0, 'firmware-error': 0 };
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: seedBlobs.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 3 }), async (which, muts) => {
        outcomes[await bootOutcome(mutate(seedBlobs[which]!, muts))]++;
      }),
      { seed: 20261121, numRuns: 300 },
    );
    // Both outcomes happen: the slice exercises the error paths and the harmless-damage path.
    expect(outcomes.booted).toBeGreaterThan(0);
    expect(outcomes['firmware-error']).toBeGreaterThan(0);
  });

  it('the CLI answers exit 0 or exit 2 with one "firmware error" line', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'iommu-sim-fuzz-'));
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 2 }), async (muts) => {
        const file = join(dir, 'm.dtb');
        writeFileSync(file, mutate(seedBlobs[0]!, muts));
        const r = await runCli(['boot', '--dtb', file, '--json']);
        if (r.status === 0) {
          expect(Object.keys(JSON.parse(r.stdout))).toEqual(['iommus', 'masters', 'pciHosts']);
        } else {
          expect(r.status).toBe(2);
          const lines = r.stderr.split('\n').filter((l) => l.length > 0);
          expect(lines).toHaveLength(1);
          expect(lines[0]).toMatch(/^iommu-sim: firmware error: /);
        }
      }),
      { seed: 7, numRuns: 60 },
    );
  });
});
