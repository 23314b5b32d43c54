/**
 * `iommu-sim merge FILE...`: combine the JSON documents of `run --shard I/N --json` (one per
 * machine of a CI matrix) into the document of the whole run, in run order, and report it like
 * `run` would. The shards must come from the same run (same scenarios and seeds), each exactly once.
 */
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { EXIT_FAILED, UsageError } from './errors.js';
import { formatRun, type OutputFormat, RUN_FORMAT, RUN_FORMAT_VERSION, type RunDocument, summarize } from './run-output.js';

function readDoc(file: string): RunDocument {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as Error).message}`);
  }
  let doc: Partial<RunDocument>;
  try {
    doc = JSON.parse(text) as Partial<RunDocument>;
  } catch (e) {
    throw new UsageError(`${file}: not JSON (${(e as Error).message}); merge reads the output of run --json`);
  }
  if (doc.format !== RUN_FORMAT || doc.version !== RUN_FORMAT_VERSION || !Array.isArray(doc.results) || !doc.inputs) {
    throw new UsageError(`${file}: not a run document (format ${RUN_FORMAT} version ${RUN_FORMAT_VERSION}); merge reads the output of run --json`);
  }
  return doc as RunDocument;
}

export function mergeDocuments(docs: readonly { file: string; doc: RunDocument }[]): RunDocument {
  if (docs.length === 0) throw new UsageError('merge needs at least one run document');
  const first = docs[0];
  const same = (d: RunDocument): boolean =>
    isDeepStrictEqual(d.inputs.scenarios, first.doc.inputs.scenarios) && isDeepStrictEqual(d.inputs.seeds, first.doc.inputs.seeds);
  const seen = new Set<number>();
  const results = [];
  for (const { file, doc } of docs) {
    if (!same(doc)) throw new UsageError(`${file}: from another run than ${first.file} (its scenarios or seeds differ)`);
    for (const r of doc.results) {
      if (seen.has(r.index)) throw new UsageError(`${file}: ${r.scenario} seed ${r.seed} is already in another document (the same shard twice?)`);
      seen.add(r.index);
      results.push(r);
    }
  }
  results.sort((a, b) => a.index - b.index);
  const counts = new Set(docs.map((d) => d.doc.inputs.shard?.count ?? 1));
  const shards = new Set(docs.map((d) => d.doc.inputs.shard?.index ?? 1));
  const whole = counts.size === 1 && shards.size === [...counts][0];
  if (!whole) {
    const n = [...counts].join('/');
    process.stderr.write(`iommu-sim: merge: ${shards.size} shard(s) of ${n}: the result covers part of the run\n`);
  }
  return {
    format: RUN_FORMAT,
    version: RUN_FORMAT_VERSION,
    command: 'merge',
    inputs: { ...first.doc.inputs, shard: null, jobs: first.doc.inputs.jobs },
    merged: docs.length,
    results,
    summary: summarize(results),
  };
}

export function mergeCommand(files: string[], o: { json?: boolean; format?: OutputFormat }): number {
  const doc = mergeDocuments(files.map((file) => ({ file, doc: readDoc(file) })));
  process.stdout.write(formatRun(doc, o.json ? 'json' : (o.format ?? 'text')));
  return doc.summary.failed > 0 ? EXIT_FAILED : 0;
}
