/**
 * Worker threads for the campaigns and the embedder tests: a worker cannot load the TypeScript
 * sources vitest runs, so its entry is bundled (with everything it imports) into one CommonJS file
 * under `.cache/workers/` first. esbuild is the bundler vitest itself ships with.
 */
import { mkdirSync, rmSync } from 'node:fs';
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
  const outfile = join(dir, `${basename(entry, '.ts')}-${process.pid}.cjs`);
  buildSync({
    entryPoints: [join(root, entry)],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    outfile,
    logLevel: 'error',
    // The scheduler's own modules, not a second copy of node builtins.
    external: ['node:*'],
  });
  built.set(entry, outfile);
  // One bundle per process (two test processes may bundle the same entry at once); gone with it.
  process.once('exit', () => rmSync(outfile, { force: true }));
  return outfile;
}
