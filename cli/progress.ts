/**
 * A one-line progress bar on stderr for sweeps, drawn only on a terminal (never in a pipe or a CI
 * log, where it would be noise). Counts what finished, not how long it took: nothing here reads a
 * clock.
 */
export class Progress {
  private doneCount = 0;
  private failed = 0;
  private readonly draw: boolean;

  constructor(
    private readonly total: number,
    enabled: boolean,
  ) {
    this.draw = enabled && process.stderr.isTTY === true;
  }

  tick(passed: boolean): void {
    this.doneCount++;
    if (!passed) this.failed++;
    if (this.draw) process.stderr.write(`\r${this.line()}`);
  }

  line(width = process.stderr.columns ?? 80): string {
    const tail = ` ${this.doneCount}/${this.total}  ${this.failed} failed`;
    const barWidth = Math.max(10, Math.min(50, width - tail.length - 3));
    const filled = Math.round((barWidth * this.doneCount) / Math.max(1, this.total));
    return `[${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}]${tail}`;
  }

  done(): void {
    if (this.draw && this.doneCount > 0) process.stderr.write('\r\x1b[K');
  }
}
