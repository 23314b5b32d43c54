/**
 * An independent reading of an IORT blob for the fixture tests: `iasl -d` (ACPICA's own
 * disassembler) turns the blob into labelled fields, and this helper groups them into nodes and ID
 * mappings. Nothing here uses the project's IORT parser, so boot output compared with it is
 * compared with what ACPICA reads in the table.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface IaslIortMapping {
  inputBase: number;
  idCount: number;
  outputBase: number;
  outputReference: number;
  flags: number;
}

export interface IaslIortNode {
  offset: number;
  type: number;
  /** Every "Label : value" line of the node before its ID mappings (hex values as numbers; repeated labels keep the first). */
  fields: Map<string, number | string>;
  /** Repeated fields (ITS identifiers, interrupts) in order. */
  lists: Map<string, (number | string)[]>;
  mappings: IaslIortMapping[];
}

/** Whether iasl is installed, and its version (yyyymmdd). */
export function iaslVersion(): number | null {
  const r = spawnSync('iasl', ['-v'], { encoding: 'utf8' });
  if (r.status === null || r.error) return null;
  const m = /version (\d{8})/.exec(r.stdout + r.stderr);
  return m ? Number(m[1]) : 0;
}

/** Disassemble `blob` (an IORT) with `iasl -d` and group the fields into nodes. */
export function iaslReadIort(blob: Uint8Array): IaslIortNode[] {
  const dir = mkdtempSync(join(tmpdir(), 'iasl-iort-'));
  writeFileSync(join(dir, 'iort.aml'), blob);
  const d = spawnSync('iasl', ['-d', 'iort.aml'], { cwd: dir, encoding: 'utf8' });
  if (d.status !== 0) throw new Error(`iasl -d failed: ${d.stdout}${d.stderr}`);
  const dsl = readFileSync(join(dir, 'iort.dsl'), 'latin1');
  const nodes: IaslIortNode[] = [];
  let node: IaslIortNode | null = null;
  let map: Partial<IaslIortMapping> | null = null;
  for (const line of dsl.split('\n')) {
    const m = /^\[([0-9A-F]+)h \d+\s+\d+h?\]\s+(.+?)\s+:\s+(.*?)\s*$/.exec(line);
    if (!m) continue;
    const offset = parseInt(m[1], 16);
    const label = m[2];
    const raw = m[3];
    const value: number | string = raw.startsWith('"') ? raw.slice(1, raw.indexOf('"', 1)) : /^[0-9A-F]+(\s|$)/.test(raw) ? parseInt(raw, 16) : raw;
    if (label === 'Type' && offset >= 0x30) {
      node = { offset, type: value as number, fields: new Map(), lists: new Map(), mappings: [] };
      nodes.push(node);
      map = null;
      continue;
    }
    if (!node) continue;
    if (label === 'Input base') {
      map = { inputBase: value as number };
      continue;
    }
    if (map) {
      if (label === 'ID Count') map.idCount = value as number;
      else if (label === 'Output Base') map.outputBase = value as number;
      else if (label === 'Output Reference') map.outputReference = value as number;
      else if (label.startsWith('Flags')) {
        map.flags = value as number;
        node.mappings.push(map as IaslIortMapping);
        map = null;
      }
      continue;
    }
    if (!node.fields.has(label)) node.fields.set(label, value);
    const l = node.lists.get(label) ?? [];
    l.push(value);
    node.lists.set(label, l);
  }
  return nodes;
}
