/**
 * A sleeping lock for async kernel code (kernel: struct mutex). Holders run one at a time, in the
 * order they asked. Not recursive: code running under the lock must call the unlocked internals,
 * never a function that takes the same lock again (that would wait for itself forever, as a kernel
 * mutex would deadlock).
 */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  private holders = 0;

  constructor(readonly name: string) {}

  /** True while some caller holds the lock (kernel: mutex_is_locked()). */
  get locked(): boolean {
    return this.holders > 0;
  }

  /** Run `fn` with the lock held; the lock is released however `fn` ends. */
  run<T>(fn: () => T | Promise<T>): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((resolve) => {
      release = resolve;
    });
    return prev.then(async () => {
      this.holders++;
      try {
        return await fn();
      } finally {
        this.holders--;
        release();
      }
    });
  }
}
