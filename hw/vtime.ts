/**
 * The one stamp debug logs put on virtual time, on both sides of the machine/kernel boundary:
 * printk's `[seconds.microseconds]` (`[0.000014]` is 14 µs into the run).
 */
export function vtime(ns: number): string {
  const us = Math.floor(ns / 1000);
  const s = Math.floor(us / 1_000_000);
  return `[${s}.${String(us % 1_000_000).padStart(6, '0')}]`;
}
