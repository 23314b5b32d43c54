/**
 * The errno assertion every test uses: `action` fails with a KernelError carrying `errno` (and a
 * message matching `message` when given: a RegExp, or a string the message contains). `action` is a promise, or a function that throws or
 * returns a promise; the call is always awaited:
 *
 *   await expectErrno(k.run(iommuMap(domain, 0x1001, pa, SZ_4K, prot)), 'EINVAL', /unaligned/);
 *   const e = await expectErrno(() => alloc.freePages(pa, 0), 'EINVAL');
 *
 * Anything else fails the test: no error at all, another error class, another errno.
 */
import { expect } from 'vitest';
import { isKernelError, type Errno, type KernelError } from '../../bus/errno.js';

export async function expectErrno(action: Promise<unknown> | (() => unknown), errno: Errno, message?: RegExp | string): Promise<KernelError> {
  let caught: unknown = undefined;
  let threw = false;
  try {
    await (typeof action === 'function' ? action() : action);
  } catch (e) {
    caught = e;
    threw = true;
  }
  expect(threw, `expected a KernelError ${errno}, but nothing was thrown`).toBe(true);
  expect(isKernelError(caught, errno), `expected a KernelError ${errno}, got ${String(caught)}`).toBe(true);
  if (message) expect((caught as Error).message).toMatch(message);
  return caught as KernelError;
}
