/**
 * A small helper for hw tests: build device trees out of bus/of/tree.ts DtNode objects, with
 * property values written the way a .dts writes them.
 *
 *   const root = dtRoot({ '#address-cells': 2, '#size-cells': 2 });
 *   const gic = dtNode(root, 'intc@8000000', { compatible: 'arm,gic-v3', phandle: 1, ... });
 *
 * Values: a string or string[] is a string list; a number one u32 cell; number[] u32 cells;
 * true an empty property; a Uint8Array raw bytes. Phandles are given explicitly.
 */
import { DeviceTree, DtNode } from '../../bus/of/tree.js';

export type PropValue = string | readonly string[] | number | readonly number[] | true | Uint8Array;

export function encode(v: PropValue): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (v === true) return new Uint8Array(0);
  if (typeof v === 'number') return u32cells([v]);
  if (typeof v === 'string') return strings([v]);
  if (v.length > 0 && typeof v[0] === 'string') return strings(v as readonly string[]);
  return u32cells(v as readonly number[]);
}

export function u32cells(values: readonly number[]): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const dv = new DataView(out.buffer);
  values.forEach((x, i) => dv.setUint32(i * 4, x >>> 0, false));
  return out;
}

function strings(list: readonly string[]): Uint8Array {
  const bytes: number[] = [];
  for (const s of list) {
    for (let i = 0; i < s.length; i++) bytes.push(s.charCodeAt(i));
    bytes.push(0);
  }
  return Uint8Array.from(bytes);
}

export function dtRoot(props: Record<string, PropValue> = {}): DtNode {
  const root = new DtNode('', null);
  setProps(root, props);
  return root;
}

export function dtNode(parent: DtNode, name: string, props: Record<string, PropValue> = {}): DtNode {
  const n = new DtNode(name, parent);
  parent.children.push(n);
  setProps(n, props);
  return n;
}

export function setProps(n: DtNode, props: Record<string, PropValue>): void {
  for (const [k, v] of Object.entries(props)) n.properties.set(k, encode(v));
}

export function tree(root: DtNode): DeviceTree {
  return new DeviceTree(root, null);
}

/** Split a 64-bit value into two cells, high first. */
export function c64(v: number): [number, number] {
  return [Math.floor(v / 2 ** 32), v >>> 0];
}
