/**
 * kexec: shut the running kernel down and boot a fresh one on the same machine (kernel:
 * kernel_kexec() → kernel_restart_prepare() → machine_kexec()). Memory contents, device registers
 * and DMA masters that nobody stopped carry over; every object of the old kernel is dropped, and the
 * new kernel's page allocator starts over knowing nothing of what the old one gave out.
 */
import { KernelError } from '../bus/errno.js';
import { bootKernel, runningKernel, type BootOptions, type BootTarget, type Kernel } from './kernel.js';

export interface KexecOptions extends Omit<BootOptions, 'instance'> {
  /** Skip the old kernel's device shutdown (a crash kernel's path: kernel_crash_kexec()). */
  skipShutdown?: boolean;
}

export async function kexec(machine: BootTarget, opts: KexecOptions = {}): Promise<Kernel> {
  const old = runningKernel(machine.cpu);
  if (!old) throw new KernelError('ESRCH', 'kexec: no kernel is running on this machine');
  if (old.state === 'running' && !opts.skipShutdown) await old.shutdown();
  else if (old.state === 'booting') throw new KernelError('EBUSY', `kexec: kernel ${old.instance} is still booting`);
  old.log.info('kernel', `kexec: starting kernel ${old.instance + 1}`, 'iommu:kernel');
  old.discard();
  const { skipShutdown: _skip, ...boot } = opts;
  return bootKernel(machine, { ...boot, instance: old.instance + 1 });
}
