/**
 * The scheduler under an embedder: `runUntilSettled` started from any kind of host callback (a timer,
 * an immediate, a next-tick callback, a worker's message callback) lets every pending software
 * continuation run before it judges that nothing can wake the task. A worker pool, a server or an
 * editor host starts simulations exactly that way.
 */
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Scheduler } from '../../hw/scheduler.js';
import { boot, virtMachine } from '../../scenarios/lib/lab.js';
import { bundleWorker } from '../campaigns/worker-bundle.js';

/** A task that needs `depth` promise jobs before it schedules its first hardware event. */
async function deepTask(s: Scheduler, depth: number): Promise<number> {
  for (let i = 0; i < depth; i++) await Promise.resolve();
  await s.delay(1000);
  return s.now;
}

type Starter = (fn: () => void) => void;
const starters: Record<string, Starter> = {
  setTimeout: (fn) => void setTimeout(fn, 0),
  setImmediate: (fn) => void setImmediate(fn),
  'process.nextTick': (fn) => process.nextTick(fn),
  queueMicrotask: (fn) => queueMicrotask(fn),
};

function startFrom<T>(starter: Starter, body: () => Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => starter(() => void body().then(resolve, reject)));
}

describe('runUntilSettled started from a host callback', () => {
  for (const [name, starter] of Object.entries(starters)) {
    it(`waits for pending promise jobs when started from ${name}`, async () => {
      const s = new Scheduler(1);
      const at = await startFrom(starter, () => s.runUntilSettled(deepTask(s, 50), 'deep task'));
      expect(at).toBe(1000);
    });

    it(`boots the virt machine when started from ${name}`, async () => {
      const machine = virtMachine({ seed: 3 });
      const k = await startFrom(starter, () => boot(machine));
      expect(k.state).toBe('running');
      expect(k.core.probeOrder.length).toBeGreaterThan(0);
    });
  }

  it('still reports a real deadlock', async () => {
    const s = new Scheduler(1);
    const never = new Promise<void>(() => {});
    await expect(startFrom(starters.setTimeout, () => s.runUntilSettled(never, 'stuck'))).rejects.toThrow(/DeadlockError|nothing can wake it/);
  });

  it('boots from a worker thread message callback', async () => {
    const worker = new Worker(bundleWorker('test/hw/embedder-boot.worker.ts'));
    try {
      const reply = await new Promise<{ ok: boolean; bound?: number; error?: string }>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
        worker.postMessage({ seed: 3 });
      });
      expect(reply.error).toBeUndefined();
      expect(reply.ok).toBe(true);
      expect(reply.bound).toBeGreaterThan(0);
    } finally {
      await worker.terminate();
    }
  });
});
