/** Shared helpers for the Device Tree tests: tree comparison, fixtures, and running dtc. */
import { expect } from 'vitest';
import { FirmwareError } from '../../../bus/firmware-error.js';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { DeviceTree, DtNode } from '../../../bus/of/tree.js';

export const FIXTURE_DIR = fileURLToPath(new URL('../../fixtures/dtb/', import.meta.url));

export function fixture(name: string): Uint8Array {
  return new Uint8Array(readFileSync(`${FIXTURE_DIR}${name}`));
}

export interface CanonicalNode {
  name: string;
  props: [string, string][];
  children: CanonicalNode[];
}

/** A tree as plain data (property bytes in hex), for deep equality checks. */
export function canonical(tree: DeviceTree): { root: CanonicalNode; reservations: { address: number; size: number }[]; bootCpuId: number } {
  const node = (n: DtNode): CanonicalNode => ({
    name: n.name,
    props: [...n.properties].map(([k, v]) => [k, Buffer.from(v).toString('hex')]),
    children: n.children.map(node),
  });
  return { root: node(tree.root), reservations: [...tree.reservations], bootCpuId: tree.bootCpuId };
}

export const hasDtc = spawnSync('dtc', ['--version'], { encoding: 'utf8' }).status === 0;

/** Decompile a DTB with dtc: the DTS text and the warnings it printed. */
export function dtcDecompile(blob: Uint8Array): { status: number | null; dts: string; warnings: string[] } {
  const r = spawnSync('dtc', ['-I', 'dtb', '-O', 'dts', '-'], { input: blob, encoding: 'latin1', maxBuffer: 64 << 20 });
  const warnings = r.stderr.split('\n').filter((l) => l.trim() !== '');
  return { status: r.status, dts: r.stdout, warnings };
}

/** Run `f` and return the FirmwareError it raises (fails the test if it raises nothing or something else). */
export function fwError(f: () => unknown): FirmwareError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(FirmwareError);
    return e as FirmwareError;
  }
  throw new Error('no FirmwareError raised');
}
