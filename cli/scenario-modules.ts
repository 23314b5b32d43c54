/**
 * Scenarios from anywhere: `iommu-sim run --module FILE...` loads scenario modules (JavaScript, or
 * TypeScript transpiled on load) and runs them like the catalogue's. A module exports `scenario`
 * (one), `scenarios` (a list) or a default export of either.
 */
import { register } from 'node:module';
import { resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { scenarios as catalogue } from '../scenarios/index.js';
import type { Scenario } from '../scenarios/scenario.js';
import { UsageError } from './errors.js';

/** A scenario and where it came from (null: the catalogue). */
export interface LoadedScenario {
  scenario: Scenario;
  module: string | null;
}

let hooked = false;

/** Install the TypeScript hooks once per thread. */
export function registerTsHooks(): void {
  if (hooked) return;
  hooked = true;
  const self = new URL('../index.js', import.meta.url).href;
  register(new URL('./ts-hooks.js', import.meta.url).href, { data: { self } });
}

function isScenario(v: unknown): v is Scenario {
  const s = v as Partial<Scenario> | null;
  return typeof s === 'object' && s !== null && typeof s.name === 'string' && typeof s.run === 'function';
}

function scenariosOf(mod: Record<string, unknown>, file: string): Scenario[] {
  const found: Scenario[] = [];
  const take = (v: unknown): void => {
    if (isScenario(v)) found.push(v);
    else if (Array.isArray(v)) v.forEach(take);
  };
  take(mod['scenario']);
  take(mod['scenarios']);
  if (found.length === 0) take(mod['default']);
  if (found.length === 0) throw new UsageError(`${file}: exports no scenario (export \`scenario\`, \`scenarios\` or a default scenario)`);
  return found;
}

/** Load the scenarios of each module file (absolute paths in the result). */
export async function loadModules(files: readonly string[]): Promise<LoadedScenario[]> {
  const out: LoadedScenario[] = [];
  for (const f of files) {
    const abs = resolvePath(f);
    if (/\.[cm]?ts$/.test(abs)) registerTsHooks();
    let mod: Record<string, unknown>;
    try {
      mod = (await import(pathToFileURL(abs).href)) as Record<string, unknown>;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ERR_MODULE_NOT_FOUND' && String((e as Error).message).includes(abs)) throw new UsageError(`cannot read ${f}: no such file`);
      throw new UsageError(`cannot load ${f}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    }
    for (const s of scenariosOf(mod, f)) out.push({ scenario: s, module: abs });
  }
  return out;
}

/**
 * The scenarios a run names: catalogue names and every scenario of the modules, in that order.
 * No names and no modules: the whole catalogue. Names may also pick scenarios out of the modules.
 */
export async function chooseScenarios(names: readonly string[], modules: readonly string[]): Promise<LoadedScenario[]> {
  const fromModules = await loadModules(modules);
  if (names.length === 0) return modules.length ? fromModules : catalogue.map((s) => ({ scenario: s, module: null }));
  const pool = [...catalogue.map((s) => ({ scenario: s, module: null as string | null })), ...fromModules];
  const chosen = names.map((n) => {
    const s = fromModules.find((m) => m.scenario.name === n) ?? pool.find((m) => m.scenario.name === n);
    if (!s) throw new UsageError(`no scenario named "${n}" (iommu-sim list shows them${modules.length ? ', with those of the --module files' : ''})`);
    return s;
  });
  return chosen;
}
