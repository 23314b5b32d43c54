/**
 * The native reference (bench/native/reference.c): compiled with the system C compiler when one is
 * installed, run once per bench invocation, its figures keyed by the project metric they mirror.
 * Without a compiler the ratios are skipped with a note, never faked.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Project metric → the reference line that does the same minimal work. */
export const NATIVE_COUNTERPART: Readonly<Record<string, string>> = {
  'walk.4level': 'walk.4level',
  'v3.translate_hit': 'translate_hit',
  'v3.translate_hit_model': 'translate_hit',
  'v2.translate_hit': 'translate_hit',
  'pgtable.map_unmap_4k': 'pgtable.map_unmap_4k',
};

export interface NativeFigures {
  /** Reference line name → value, in the unit of the project metric it mirrors. */
  values: Map<string, number>;
  /** Why there are no figures, when there are none. */
  skipped: string | null;
  compiler: string | null;
}

function findSource(): string {
  // Run from dist/bench/ (built) or bench/ (sources): the C file stays in the source tree.
  const here = dirname(fileURLToPath(import.meta.url));
  for (const c of [join(here, 'native/reference.c'), resolve(here, '../../bench/native/reference.c')]) {
    if (existsSync(c)) return c;
  }
  throw new Error('bench/native/reference.c not found');
}

function findCompiler(): string | null {
  for (const cc of [process.env.CC, 'cc', 'gcc', 'clang']) {
    if (!cc) continue;
    if (spawnSync(cc, ['--version'], { stdio: 'ignore' }).status === 0) return cc;
  }
  return null;
}

export function runNativeReference(log: (line: string) => void): NativeFigures {
  const cc = findCompiler();
  if (!cc) return { values: new Map(), skipped: 'no C compiler (set CC or install gcc): ratios to C skipped', compiler: null };
  const src = findSource();
  const outDir = resolve(dirname(src), '../../.cache/bench-native');
  mkdirSync(outDir, { recursive: true });
  const bin = join(outDir, 'reference');
  if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(src).mtimeMs) {
    log(`bench: compiling the native reference with ${cc} -O2`);
    execFileSync(cc, ['-O2', '-o', bin, src], { stdio: ['ignore', 'inherit', 'inherit'] });
  }
  const out = execFileSync(bin, { encoding: 'utf8' });
  const values = new Map<string, number>();
  for (const line of out.split('\n')) {
    const m = /^(\S+) (\d+(?:\.\d+)?) /.exec(line);
    if (m) values.set(m[1]!, Number(m[2]));
  }
  return { values, skipped: null, compiler: cc };
}
