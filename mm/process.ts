/**
 * Processes, as far as memory management cares: a pid and an address space. `exit()` is the last
 * mmput of the process's own reference; anyone else holding the mm (mmget or mmgrab) keeps it (or
 * its struct) alive past that, as in Linux.
 */
import { KernelError } from '../bus/errno.js';
import { Mm, type MmContext } from './mm.js';

/** Linux's default pid_max. */
export const PID_MAX_DEFAULT = 32768;

export type ProcessState = 'running' | 'exiting' | 'exited';

export class Process {
  private st: ProcessState = 'running';

  constructor(
    private readonly table: ProcessTable,
    readonly pid: number,
    readonly mm: Mm,
  ) {}

  get state(): ProcessState {
    return this.st;
  }

  /** Exit: drop the process's mm reference (the last one tears the address space down). → exit_mm() */
  // kernel: do_exit() [kernel/exit.c]
  async exit(): Promise<void> {
    if (this.st !== 'running') throw new KernelError('ESRCH', `exit: process ${this.pid} is already ${this.st}`);
    this.st = 'exiting';
    try {
      await this.mm.mmput();
    } finally {
      this.st = 'exited';
      this.table.reap(this);
    }
  }
}

/** One kernel's processes and pid allocator (cyclic, as Linux's alloc_pid()). */
export class ProcessTable {
  private readonly live = new Map<number, Process>();
  private nextPid = 1;

  constructor(
    readonly ctx: MmContext,
    readonly pidMax: number = PID_MAX_DEFAULT,
  ) {
    if (!Number.isSafeInteger(pidMax) || pidMax < 2) throw new KernelError('EINVAL', `process table: pid_max ${pidMax} is below 2`);
  }

  /** A new process with an empty address space. EAGAIN when every pid is taken. for a fresh mm */
  // kernel: copy_process() [kernel/fork.c]
  spawn(): Process {
    const pid = this.allocPid();
    const proc = new Process(this, pid, new Mm(this.ctx, pid));
    this.live.set(pid, proc);
    return proc;
  }

  get(pid: number): Process | undefined {
    return this.live.get(pid);
  }

  get count(): number {
    return this.live.size;
  }

  /** @internal a process that exited gives its pid back. */
  reap(proc: Process): void {
    if (this.live.get(proc.pid) === proc) this.live.delete(proc.pid);
  }

  private allocPid(): number {
    if (this.live.size >= this.pidMax - 1) throw new KernelError('EAGAIN', `fork: all ${this.pidMax - 1} pids are in use`);
    let pid = this.nextPid;
    while (this.live.has(pid)) pid = pid + 1 >= this.pidMax ? 1 : pid + 1;
    this.nextPid = pid + 1 >= this.pidMax ? 1 : pid + 1;
    return pid;
  }
}
