/** Worker entry: boots the built-in machine from a worker's message callback and reports the outcome. */
import { parentPort } from 'node:worker_threads';
import { boot, virtMachine } from '../../scenarios/lib/lab.js';

parentPort!.on('message', (msg: { seed: number }) => {
  // Started synchronously from the message callback, as a worker pool's task runner would.
  const machine = virtMachine({ seed: msg.seed });
  boot(machine).then(
    (k) => parentPort!.postMessage({ ok: true, bound: k.core.probeOrder.length, now: machine.scheduler.now }),
    (e: unknown) => parentPort!.postMessage({ ok: false, error: String(e) }),
  );
});
