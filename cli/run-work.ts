/**
 * One unit of a run: a scenario with a seed. The same code runs it in the CLI's own thread and in
 * a sweep's worker threads, so a result does not depend on where it ran: a scenario that throws is
 * a failed result carrying its error (with the stack up to the scenario's own frames, source-mapped),
 * never an escaped exception.
 */
import type { Scenario, ScenarioResult } from '../scenarios/scenario.js';

export interface WorkItem {
  /** Position in the whole (unsharded) run: scenarios in order, each over the seeds in order. */
  index: number;
  scenario: string;
  /** Absolute path of the module the scenario came from; null for the catalogue. */
  module: string | null;
  seed: number;
}

export interface ItemResult extends ScenarioResult {
  index: number;
  scenario: string;
  module: string | null;
  seed: number;
  shows: string;
  /** Set when the scenario threw: its verdict is then `fail`. */
  error: { name: string; message: string; stack: string } | null;
}

/** The stack of an error a scenario threw, without the frames of the runner around it. */
function scenarioStack(e: Error): string {
  const lines = (e.stack ?? `${e.name}: ${e.message}`).split('\n');
  const cut = lines.findIndex((l) => l.includes('runWorkItem'));
  return (cut > 0 ? lines.slice(0, cut) : lines).join('\n');
}

export async function runWorkItem(s: Scenario, item: WorkItem): Promise<ItemResult> {
  const base = { index: item.index, scenario: item.scenario, module: item.module, seed: item.seed, shows: s.shows };
  try {
    const r = await s.run({ seed: item.seed });
    return { ...base, verdict: r.verdict, figures: r.figures, checks: r.checks, error: null };
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    return {
      ...base,
      verdict: 'fail',
      figures: {},
      checks: [{ what: 'the scenario ran to its end', ok: false, detail: `threw ${err.name}: ${err.message}` }],
      error: { name: err.name, message: err.message, stack: scenarioStack(err) },
    };
  }
}
