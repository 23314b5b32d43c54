/**
 * Worker-thread entry of a seed sweep (`iommu-sim run --jobs N`): runs one (scenario, seed) item
 * and returns its result. Scenario modules are loaded once per worker.
 */
import { scenarios as catalogue } from '../scenarios/index.js';
import type { Scenario } from '../scenarios/scenario.js';
import { runWorkItem, type ItemResult, type WorkItem } from './run-work.js';
import { loadModules } from './scenario-modules.js';

process.setSourceMapsEnabled(true);
const loaded = new Map<string, Promise<Scenario[]>>();

async function scenarioFor(item: WorkItem): Promise<Scenario> {
  let list: Scenario[] = [...catalogue];
  if (item.module !== null) {
    let p = loaded.get(item.module);
    if (!p) {
      p = loadModules([item.module]).then((l) => l.map((x) => x.scenario));
      loaded.set(item.module, p);
    }
    list = await p;
  }
  const s = list.find((x) => x.name === item.scenario);
  if (!s) throw new Error(`worker: no scenario ${item.scenario}`);
  return s;
}

export default async function runInWorker(item: WorkItem): Promise<ItemResult> {
  // The pool calls this from a message callback. The virtual-time scheduler drains software work
  // with process.nextTick, and a boot started directly inside a worker's message callback can see
  // a pending task with nothing scheduled (a false DeadlockError; hw/scheduler.ts is being fixed
  // for it). Starting the run from a fresh event-loop turn gives it the footing it has on the main
  // thread, whichever way the pool delivers the call.
  await new Promise<void>((resolve) => setImmediate(resolve));
  return runWorkItem(await scenarioFor(item), item);
}
