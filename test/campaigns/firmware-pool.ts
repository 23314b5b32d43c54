/**
 * Runs the firmware campaign across worker threads: each worker takes a slice of the input indices.
 * A worker that reports no progress for `hangMs` of wall-clock time (the one place a wall clock is
 * used: a hang cannot be seen from inside the simulation) is stopped, and its current input is the
 * failure. Failing inputs are regenerated here from (kind, seed, index) and saved.
 */
import { Worker } from 'node:worker_threads';
import { saveFailure } from './campaign.js';
import { firmwareInput, firmwareKind } from './firmware.js';
import { bundleWorker } from './worker-bundle.js';

export interface FirmwareRun {
  kind: string;
  seed: number;
  count: number;
  workers: number;
  hangMs: number;
}

export interface FirmwareResult {
  booted: number;
  /** Booted, but slower than the lab's 1 s boot limit (see SLOW_BOOT_LIMIT_NS). */
  slowBoots: number;
  firmwareErrors: number;
}

type Msg = { type: 'progress'; index: number } | { type: 'failure'; index: number; error: string } | { type: 'done'; counts: { booted: number; 'slow-boot': number; 'firmware-error': number } };

function fail(run: FirmwareRun, index: number, why: string): Error {
  const kind = firmwareKind(run.kind);
  const input = firmwareInput(kind, kind.seeds(), run.seed, index);
  const file = saveFailure(`firmware-${run.kind}`, run.seed, index, { kind: run.kind, seed: run.seed, index, base64: Buffer.from(input).toString('base64') }, why);
  return new Error(`firmware campaign (${run.kind}, seed ${run.seed}): input ${index}: ${why}\n  input saved to ${file}`);
}

export async function runFirmwareCampaign(run: FirmwareRun): Promise<FirmwareResult> {
  const entry = bundleWorker('test/campaigns/firmware.worker.ts');
  const per = Math.ceil(run.count / run.workers);
  const slices = Array.from({ length: run.workers }, (_, w) => ({ from: w * per, to: Math.min(run.count, (w + 1) * per) })).filter((s) => s.to > s.from);
  const results = await Promise.all(
    slices.map(
      (slice) =>
        new Promise<FirmwareResult>((resolve, reject) => {
          const worker = new Worker(entry);
          let current = slice.from;
          let timer: NodeJS.Timeout | null = null;
          const arm = (): void => {
            if (timer) clearTimeout(timer);
            timer = setTimeout(() => {
              void worker.terminate();
              reject(fail(run, current, `no result after ${run.hangMs} ms (hang)`));
            }, run.hangMs);
          };
          const finish = (): void => {
            if (timer) clearTimeout(timer);
            void worker.terminate();
          };
          worker.on('message', (m: Msg) => {
            if (m.type === 'progress') {
              current = m.index;
              arm();
            } else if (m.type === 'failure') {
              finish();
              reject(fail(run, m.index, m.error));
            } else {
              finish();
              resolve({ booted: m.counts.booted, slowBoots: m.counts['slow-boot'], firmwareErrors: m.counts['firmware-error'] });
            }
          });
          worker.on('error', (e) => {
            finish();
            reject(fail(run, current, `worker died: ${e.message}`));
          });
          arm();
          worker.postMessage({ kind: run.kind, seed: run.seed, ...slice });
        }),
    ),
  );
  return results.reduce(
    (a, r) => ({ booted: a.booted + r.booted, slowBoots: a.slowBoots + r.slowBoots, firmwareErrors: a.firmwareErrors + r.firmwareErrors }),
    { booted: 0, slowBoots: 0, firmwareErrors: 0 },
  );
}
