/**
 * Firmware campaign worker: runs inputs [from, to) of (kind, seed) and reports progress before each
 * boot (so the parent can name the input that hung), then the outcome counts or the first failure.
 */
import { parentPort } from 'node:worker_threads';
import { firmwareInput, firmwareKind, firmwareOutcome } from './firmware.js';

interface Job {
  kind: string;
  seed: number;
  from: number;
  to: number;
}

parentPort!.on('message', (job: Job) => {
  const kind = firmwareKind(job.kind);
  const seeds = kind.seeds();
  const counts = { booted: 0, 'slow-boot': 0, 'firmware-error': 0 };
  void (async () => {
    for (let i = job.from; i < job.to; i++) {
      parentPort!.postMessage({ type: 'progress', index: i });
      const input = firmwareInput(kind, seeds, job.seed, i);
      try {
        counts[await firmwareOutcome(kind, input)]++;
      } catch (e) {
        parentPort!.postMessage({ type: 'failure', index: i, error: e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ''}` : String(e) });
        return;
      }
    }
    parentPort!.postMessage({ type: 'done', counts });
  })();
});
