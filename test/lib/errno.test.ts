import { describe, expect, it } from 'vitest';
import { KernelError } from '../../bus/errno.js';
import { expectErrno } from './errno.js';

const throwing = (errno: 'EINVAL' | 'EBUSY', message: string) => (): never => {
  throw new KernelError(errno, message);
};

describe('expectErrno', () => {
  it('returns the KernelError a function throws, a promise rejects with, or a returned promise rejects with', async () => {
    const e = await expectErrno(throwing('EINVAL', 'bad size'), 'EINVAL', /bad size/);
    expect(e).toBeInstanceOf(KernelError);
    expect(e.message).toBe('EINVAL: bad size');
    expect((await expectErrno(Promise.reject(new KernelError('EBUSY', 'in use')), 'EBUSY', 'in use')).errno).toBe('EBUSY');
    expect((await expectErrno(() => Promise.reject(new KernelError('EIO', 'lost')), 'EIO')).errno).toBe('EIO');
  });

  it('fails when nothing is thrown, or the errno, the error class or the message differs', async () => {
    await expect(expectErrno(() => 1, 'EINVAL')).rejects.toThrow(/expected a KernelError EINVAL, but nothing was thrown/);
    await expect(expectErrno(Promise.resolve(1), 'EINVAL')).rejects.toThrow(/nothing was thrown/);
    await expect(expectErrno(throwing('EBUSY', 'x'), 'EINVAL')).rejects.toThrow(/expected a KernelError EINVAL, got KernelError: EBUSY: x/);
    await expect(expectErrno(() => Promise.reject(new Error('EINVAL: x')), 'EINVAL')).rejects.toThrow(/got Error: EINVAL: x/);
    await expect(expectErrno(throwing('EINVAL', 'bad size'), 'EINVAL', /bad offset/)).rejects.toThrow(/bad offset/);
    await expect(expectErrno(throwing('EINVAL', 'bad size'), 'EINVAL', 'offset')).rejects.toThrow(/offset/);
  });
});
