/**
 * The one stamp debug logs put on virtual time, on both sides of the machine/kernel boundary:
 * printk's `[seconds.fraction]`, to the nanosecond the scheduler keeps (`[0.000014250]` is
 * 14.25 µs into the run).
 */
export function vtime(ns: number): string {
  const s = Math.floor(ns / 1e9);
  return `[${s}.${String(Math.floor(ns - s * 1e9)).padStart(9, '0')}]`;
}
