/**
 * Module hooks for `iommu-sim run --module FILE.ts`: TypeScript scenario modules load without a
 * build step. A `.ts` file is transpiled with esbuild (types are stripped, not checked) with an
 * inline source map, so stack traces point into the file as written; a relative `./x.js` import
 * finds `./x.ts` as tsc's NodeNext resolution would; `iommu-sim` always names this package, so a
 * module shares the lab (and its trace recorder) with the command running it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface ResolveContext {
  parentURL?: string;
}
interface ResolveResult {
  url: string;
  shortCircuit?: boolean;
  format?: string | null;
}
type NextResolve = (specifier: string, context?: ResolveContext) => Promise<ResolveResult>;
interface LoadResult {
  format: string;
  source?: string | ArrayBuffer | Uint8Array;
  shortCircuit?: boolean;
}
type NextLoad = (url: string, context?: unknown) => Promise<LoadResult>;

let selfUrl: string | null = null;

export function initialize(data: { self: string }): void {
  selfUrl = data.self;
}

export async function resolve(specifier: string, context: ResolveContext, next: NextResolve): Promise<ResolveResult> {
  if (specifier === 'iommu-sim' && selfUrl) return { url: selfUrl, shortCircuit: true, format: 'module' };
  const fromTs = context.parentURL?.startsWith('file:') && /\.[cm]?ts$/.test(context.parentURL);
  if (fromTs && /^\.\.?\//.test(specifier) && /\.[cm]?js$/.test(specifier)) {
    const asTs = new URL(specifier.replace(/js$/, 'ts'), context.parentURL);
    const asJs = new URL(specifier, context.parentURL);
    if (!existsSync(fileURLToPath(asJs)) && existsSync(fileURLToPath(asTs))) return { url: asTs.href, shortCircuit: true };
  }
  return next(specifier, context);
}

export async function load(url: string, context: unknown, next: NextLoad): Promise<LoadResult> {
  if (!url.startsWith('file:') || !/\.[cm]?ts$/.test(url)) return next(url, context);
  const file = fileURLToPath(url);
  const { transform } = await import('esbuild');
  const out = await transform(readFileSync(file, 'utf8'), {
    loader: 'ts',
    format: 'esm',
    target: 'node20',
    sourcemap: 'inline',
    sourcefile: file,
  });
  return { format: 'module', source: out.code, shortCircuit: true };
}
