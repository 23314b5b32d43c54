/** Assertions on the kernel's errno-carrying errors, shared by the mm tests. */
import { expect } from 'vitest';
import { isKernelError, type Errno } from '../../bus/errno.js';

function check(caught: unknown, errno: Errno, message?: RegExp): void {
  expect(isKernelError(caught, errno), `expected ${errno}, got ${String(caught)}`).toBe(true);
  if (message) expect((caught as Error).message).toMatch(message);
}

/** `fn` throws a KernelError with `errno` (and a message matching `message`). */
export function throwsErrno(fn: () => unknown, errno: Errno, message?: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  check(caught, errno, message);
}

/** `p` rejects with a KernelError with `errno` (and a message matching `message`). */
export async function rejectsErrno(p: Promise<unknown>, errno: Errno, message?: RegExp): Promise<void> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  check(caught, errno, message);
}
