#!/usr/bin/env node
// The build: transpile every TypeScript source to dist/ with esbuild (no type-check: that is
// `npm run typecheck`, done separately), with source maps. `--types` also writes the .d.ts files
// the package ships (tsc, slower; `npm pack` runs it). Importable: bin/iommu-sim rebuilds a stale
// checkout with `build()`, and `isStale()` tells whether a source is newer than the last build.
import { mkdirSync, readdirSync, renameSync, statSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Source folders and files that are built (test/ too: the benchmarks use its helpers; the package leaves both out). */
export const SOURCES = ['index.ts', 'hw', 'bus', 'mm', 'core', 'drivers', 'kernel', 'vmm', 'scenarios', 'cli', 'bench', 'test'];
const STAMP = join(root, 'dist', '.build-stamp');

function walk(p, out) {
  const st = statSync(p, { throwIfNoEntry: false });
  if (!st) return out;
  if (st.isDirectory()) {
    for (const e of readdirSync(p)) walk(join(p, e), out);
  } else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) {
    out.push({ path: p, mtime: st.mtimeMs });
  }
  return out;
}

export function sourceFiles() {
  return SOURCES.flatMap((s) => walk(join(root, s), []));
}

/** Null when dist is up to date; else the first source newer than the last build (or 'no build'). */
export function isStale() {
  const stamp = statSync(STAMP, { throwIfNoEntry: false });
  if (!stamp) return 'no build';
  const newer = sourceFiles().find((f) => f.mtime > stamp.mtimeMs);
  return newer ? newer.path.slice(root.length + 1) : null;
}

export async function build() {
  const { build: esbuild } = await import('esbuild');
  const files = sourceFiles().map((f) => f.path);
  const started = Date.now();
  const result = await esbuild({
    write: false,
    entryPoints: files,
    outdir: join(root, 'dist'),
    outbase: root,
    bundle: false,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    sourcemap: true,
    sourcesContent: true,
    logLevel: 'warning',
    tsconfig: join(root, 'tsconfig.json'),
  });
  // Each file is replaced whole (write, then rename), so a CLI running from dist/ while another
  // process rebuilds never reads a half-written module.
  for (const f of result.outputFiles) {
    mkdirSync(dirname(f.path), { recursive: true });
    const tmp = `${f.path}.${process.pid}.tmp`;
    writeFileSync(tmp, f.contents);
    renameSync(tmp, f.path);
  }
  writeFileSync(STAMP, new Date().toISOString() + '\n');
  return { files: files.length, ms: Date.now() - started };
}

async function types() {
  const { spawnSync } = await import('node:child_process');
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.types.json')], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv.includes('--clean') && existsSync(join(root, 'dist'))) rmSync(join(root, 'dist'), { recursive: true, force: true });
  await build();
  if (process.argv.includes('--types')) await types();
}
