/** Mutations of DTBs for the firmware fuzz tests, and the boot outcome they are judged by. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { writeFdt } from '../../bus/of/fdt.js';
import { isFirmwareError } from '../../cli/errors.js';
import { boot, machineFromDtb } from '../../scenarios/lib/lab.js';
import { buildVirtDeviceTree } from '../../scenarios/machines/virt.js';

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

