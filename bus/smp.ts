/**
 * Which CPU kernel code runs on (kernel: smp_processor_id() / raw_smp_processor_id()).
 *
 * Kernel threads are async functions; the one place they carry a CPU is here. `runOnCpu(cpu, fn)`
 * starts `fn` as a thread bound to `cpu`: everything it awaits, and every promise chain it starts,
 * keeps that CPU (async context propagation), so a driver that picks a per-CPU resource in the middle
 * of a call chain sees the CPU of the thread that made the call. Code not started by `runOnCpu` (boot,
 * interrupt handlers, tests) runs on CPU 0.
 * Does not model: migration, preemption, CPU hotplug, or how many CPUs the machine has (a CPU number
 * is whatever the caller binds).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { KernelError } from './errno.js';

const current = new AsyncLocalStorage<number>();

/** kernel: raw_smp_processor_id() */
export function rawSmpProcessorId(): number {
  return current.getStore() ?? 0;
}

/** Run `fn` as a kernel thread bound to CPU `cpu` (kernel: kthread_create_on_cpu() + wake-up). */
export function runOnCpu<T>(cpu: number, fn: () => Promise<T>): Promise<T> {
  if (!Number.isInteger(cpu) || cpu < 0 || cpu > 4095) throw new KernelError('EINVAL', `runOnCpu: CPU ${String(cpu)} is not a CPU number`);
  return current.run(cpu, fn);
}
