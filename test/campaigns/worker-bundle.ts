/**
 * Worker threads for the campaigns and the embedder tests: a worker cannot load the TypeScript
 * sources vitest runs, so its entry is bundled (with everything it imports) into one CommonJS file
 * under `.cache/workers/` first. esbuild is the bundler vitest itself ships with.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { buildSync } from 'esbuild';

const root = join(__dirname, '..', '..');
const built = new Map<string, string>();

/** Bundle `entry` (a path relative to the repository root) once per process; returns the file to run. */
export function bundleWorker(entry: string): string {
  const done = built.get(entry);
  if (done) return done;
  const dir = join(root, '.cache', 'workers');
  mkdirSync(dir, { recursive: true });
  const outfile = join(dir, `${basename(entry, '.ts')}.cjs`);
  const out = buildSync({
    entryPoints: [join(root, entry)],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    write: false,
    logLevel: 'error',
    // Node's built-in modules stay imports.
    external: ['node:*'],
  });
  // Written aside and renamed into place: test processes bundling the same entry at once never see
  // a half-written file.
  const tmp = `${outfile}.${process.pid}.tmp`;
  writeFileSync(tmp, out.outputFiles[0]!.contents);
  renameSync(tmp, outfile);
  built.set(entry, outfile);
  return outfile;
}
