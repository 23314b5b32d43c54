/**
 * Firmware the kernel cannot use is warned about and dropped, or refused with a FirmwareError naming
 * the node; never a kernel bug (a KernelError out of the page allocator, exit 70 in the CLI), never a
 * hang. Cell counts are validated before anything loops over them, and every firmware path is linear
 * in the size of the blob.
 */
import { describe, expect, it } from 'vitest';
import { writeFdt } from '../../bus/of/fdt.js';
import { DtNode } from '../../bus/of/tree.js';
import { isFirmwareError } from '../../cli/errors.js';
import { boot, machineFromDtb } from '../../scenarios/lib/lab.js';
import { buildVirtDeviceTree } from '../../scenarios/machines/virt.js';
import { runCli } from '../cli/run-cli.js';

const TWO53 = 2 ** 53;

function u32s(...cells: number[]): Uint8Array {
  const b = new Uint8Array(cells.length * 4);
  const dv = new DataView(b.buffer);
  cells.forEach((c, i) => dv.setUint32(i * 4, c >>> 0, false));
  return b;
}

function cells2(v: number): number[] {
  return [Math.floor(v / 2 ** 32), v % 2 ** 32];
}

/** The virt DT with one more /memory node, or one more /reserved-memory child, at [base, base+size). */
function virtWith(kind: 'memory' | 'reserved', base: number, size: number): Uint8Array {
  const dt = buildVirtDeviceTree();
  const reg = u32s(...cells2(base), ...cells2(size));
  if (kind === 'memory') {
    const n = new DtNode(`memory@${base.toString(16)}`, dt.root);
    n.properties.set('device_type', new TextEncoder().encode('memory\0'));
    n.properties.set('reg', reg);
    dt.root.children.push(n);
  } else {
    const rmem = dt.root.child('reserved-memory')!;
    const n = new DtNode(`high@${base.toString(16)}`, rmem);
    n.properties.set('reg', reg);
    n.properties.set('no-map', new Uint8Array(0));
    rmem.children.push(n);
  }
  dt.invalidate();
  return writeFdt(dt);
}

async function outcome(blob: Uint8Array): Promise<{ kind: 'booted' | 'firmware-error'; log: string[]; message?: string }> {
  try {
    const m = machineFromDtb(blob, { seed: 1 });
    const k = await boot(m);
    return { kind: 'booted', log: k.log.lines().map((l) => l.message) };
  } catch (e) {
    if (isFirmwareError(e)) return { kind: 'firmware-error', log: [], message: (e as Error).message };
    throw e;
  }
}

describe('memory ranges crossing 2^53', () => {
  for (const kind of ['memory', 'reserved'] as const) {
    it(`a ${kind} range from below 2^53 to beyond it is clipped with a warning, or refused naming the node`, async () => {
      const base = TWO53 - 0x10_0000;
      const r = await outcome(virtWith(kind, base, 0x20_0000));
      if (r.kind === 'booted') {
        expect(r.log.some((l) => /ignoring memory range/i.test(l) && l.includes(kind === 'memory' ? 'memory@' : 'high@'))).toBe(true);
      } else {
        expect(r.message).toMatch(kind === 'memory' ? /memory@/ : /high@/);
      }
    });
  }

  it('the CLI answers exit 0 or 2 for them, never 70', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'iommu-sim-2e53-'));
    for (const kind of ['memory', 'reserved'] as const) {
      const file = join(dir, `${kind}.dtb`);
      writeFileSync(file, virtWith(kind, TWO53 - 0x1000, 0x2000));
      const r = await runCli(['boot', '--dtb', file, '--json']);
      expect([0, 2]).toContain(r.status);
    }
  });
});

describe('huge root cell counts', () => {
  for (const prop of ['#address-cells', '#size-cells']) {
    for (const value of [5, 0x10_0000, 0xffff_ffff]) {
      it(`${prop} = ${value} is a firmware error naming it, found at once`, async () => {
        const dt = buildVirtDeviceTree();
        dt.root.properties.set(prop, u32s(value));
        // Make the boot loader fill in RAM: the memory node describes none.
        const mem = dt.root.children.find((n) => n.string('device_type') === 'memory')!;
        mem.properties.set('reg', u32s(0, 0x4000_0000, 0, 0));
        dt.invalidate();
        const t0 = performance.now();
        const r = await outcome(writeFdt(dt));
        expect(performance.now() - t0).toBeLessThan(2000);
        expect(r.kind).toBe('firmware-error');
        expect(r.message).toContain(prop);
      });
    }
  }

  it('#address-cells = #size-cells = 0 at the root is a firmware error, found at once', async () => {
    const dt = buildVirtDeviceTree();
    dt.root.properties.set('#address-cells', u32s(0));
    dt.root.properties.set('#size-cells', u32s(0));
    dt.invalidate();
    const r = await outcome(writeFdt(dt));
    expect(r.kind).toBe('firmware-error');
    expect(r.message).toMatch(/#address-cells|#size-cells/);
  });
});
