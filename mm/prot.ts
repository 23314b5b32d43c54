/**
 * Memory protections of a mapping (the mmap/mprotect `prot` argument) and the kinds of access a
 * fault reports. Values are Linux's PROT_* bits.
 */
import { KernelError } from '../bus/errno.js';

export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;

const PROT_ALL = PROT_READ | PROT_WRITE | PROT_EXEC;

export type Access = 'read' | 'write' | 'exec';

/** True if a mapping with `prot` permits `access` (what the VMA allows, not what the PTE encodes). */
export function protAllows(prot: number, access: Access): boolean {
  switch (access) {
    case 'read':
      return (prot & PROT_READ) !== 0;
    case 'write':
      return (prot & PROT_WRITE) !== 0;
    case 'exec':
      return (prot & PROT_EXEC) !== 0;
  }
}

/** EINVAL unless `prot` is a combination of PROT_READ, PROT_WRITE and PROT_EXEC. */
export function checkProt(fn: string, prot: number): void {
  if (!Number.isInteger(prot) || prot < 0 || (prot & ~PROT_ALL) !== 0) {
    throw new KernelError('EINVAL', `${fn}: prot ${prot} is not a combination of PROT_READ|PROT_WRITE|PROT_EXEC`);
  }
}

/** "rwx" style text for messages. */
export function protString(prot: number): string {
  return `${prot & PROT_READ ? 'r' : '-'}${prot & PROT_WRITE ? 'w' : '-'}${prot & PROT_EXEC ? 'x' : '-'}`;
}
