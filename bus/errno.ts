/**
 * Kernel-side failures carry the errno name, mirroring the kernel's `-E…` returns.
 */
export type Errno =
  | 'EPERM'
  | 'ENOENT'
  | 'EIO'
  | 'ENXIO'
  | 'E2BIG'
  | 'EAGAIN'
  | 'ENOMEM'
  | 'EFAULT'
  | 'EBUSY'
  | 'EEXIST'
  | 'ENODEV'
  | 'EINVAL'
  | 'ENOSPC'
  | 'ERANGE'
  | 'EOVERFLOW'
  | 'ENOSYS'
  | 'EADDRNOTAVAIL'
  | 'EOPNOTSUPP'
  | 'ETIMEDOUT'
  | 'EPROBE_DEFER'
  | 'ESRCH';

export class KernelError extends Error {
  constructor(
    readonly errno: Errno,
    message: string,
  ) {
    super(`${errno}: ${message}`);
    this.name = 'KernelError';
  }
}

/** True if `e` is a KernelError with the given errno (or any errno when omitted). */
export function isKernelError(e: unknown, errno?: Errno): e is KernelError {
  return e instanceof KernelError && (errno === undefined || e.errno === errno);
}
