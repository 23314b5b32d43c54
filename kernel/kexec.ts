/**
 * kexec: shut the running kernel down and boot a fresh one on the same machine (kernel:
 * kernel_kexec() → kernel_restart_prepare() → machine_kexec()). Memory contents, device registers
 * and DMA masters that nobody stopped carry over; every object of the old kernel is dropped, and the
 * new kernel's page allocator starts over knowing nothing of what the old one gave out.
 *
 * The hand-over takes virtual time: between the old kernel's last instruction and the new kernel's
 * first, purgatory checks the loaded segments and jumps to the new image, whose early boot (and, on a
 * reboot, the firmware) runs before any driver probes. `handoverDelayNs` is that window,
 * KEXEC_HANDOVER_DELAY_NS (5 ms) unless the caller says otherwise. DMA masters the old kernel left
 * running keep running through it, and every transaction a teardown terminated has retired before it.
 */
import { KernelError } from '../bus/errno.js';
import { bootKernel, runningKernel, type BootOptions, type BootTarget, type Kernel } from './kernel.js';

/**
 * Default virtual time from the old kernel's last instruction to the new kernel's boot (ns): 5 ms of
 * purgatory (SHA-256 of the segments) and firmware/early boot before the first initcall. Real
 * systems range from about a millisecond (kexec without firmware) to seconds (a firmware reboot).
 */
export const KEXEC_HANDOVER_DELAY_NS = 5_000_000;

export interface KexecOptions extends Omit<BootOptions, 'instance'> {
  /** Skip the old kernel's device shutdown (a crash kernel's path: kernel_crash_kexec()). */
  skipShutdown?: boolean;
  /**
   * Virtual time between the old kernel's end and the new kernel's boot, in ns (firmware + purgatory):
   * KEXEC_HANDOVER_DELAY_NS by default; 0 hands over at the same instant.
   */
  handoverDelayNs?: number;
}

export async function kexec(machine: BootTarget, opts: KexecOptions = {}): Promise<Kernel> {
  const old = runningKernel(machine.cpu);
  if (!old) throw new KernelError('ESRCH', 'kexec: no kernel is running on this machine');
  const delay = opts.handoverDelayNs ?? KEXEC_HANDOVER_DELAY_NS;
  if (!(delay >= 0) || !Number.isFinite(delay)) {
    throw new KernelError('EINVAL', `kexec: handoverDelayNs must be a finite number of ns >= 0, got ${delay}`);
  }
  if (old.state === 'running' && !opts.skipShutdown) await old.shutdown();
  else if (old.state === 'booting') throw new KernelError('EBUSY', `kexec: kernel ${old.instance} is still booting`);
  old.log.info('kernel', `kexec: starting kernel ${old.instance + 1} after a ${delay} ns hand-over`, 'iommu:kernel');
  old.discard();
  if (delay > 0) await machine.cpu.delay(delay);
  const { skipShutdown: _skip, handoverDelayNs: _delay, ...boot } = opts;
  return bootKernel(machine, { ...boot, instance: old.instance + 1 });
}
