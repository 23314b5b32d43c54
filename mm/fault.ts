/**
 * Demand paging: resolving a fault on a user address the way handle_mm_fault() does for anonymous
 * memory. The CPU accessors of `Mm` and the I/O page-fault path (SVA) both come here.
 *
 * The result is a value, not an exception: a SIGSEGV-like failure is what the IOPF path turns into
 * an INVALID page response, and what the CPU accessors turn into EFAULT.
 */
import { KernelError, isKernelError } from '../bus/errno.js';
import type { Mm } from './mm.js';
import { PAGE_SIZE } from './page-alloc.js';
import { TASK_SIZE, descOutputAddress, pageDescAllows, pageDescHi, pageDescLo } from './pgtable-arm64.js';
import { protAllows, type Access } from './prot.js';

/** Why a fault could not be resolved: no VMA holds the address (or the mm is gone), the VMA forbids the access, or memory ran out. */
export type FaultFailure = 'no-vma' | 'access' | 'oom';

export type FaultResult = { readonly ok: true } | { readonly ok: false; readonly reason: FaultFailure };

// Shared results: the fault path allocates nothing it does not map.
export const FAULT_OK: FaultResult = Object.freeze({ ok: true });
export const FAULT_NO_VMA: FaultResult = Object.freeze({ ok: false, reason: 'no-vma' });
export const FAULT_ACCESS: FaultResult = Object.freeze({ ok: false, reason: 'access' });
export const FAULT_OOM: FaultResult = Object.freeze({ ok: false, reason: 'oom' });

/**
 * Make `va` accessible for `access` in `mm`: find the VMA, check its protection, and if the page is
 * not mapped yet allocate a zeroed frame (owner `{kind:'process', pid, va}`) and map it. A page
 * already mapped with the right permission costs nothing.
 * (with the vma_lookup() and VM_READ/VM_WRITE/VM_EXEC checks before it)
 */
// kernel: handle_mm_fault() [mm/memory.c]
export function handleMmFault(mm: Mm, va: number, access: Access): FaultResult {
  if (access !== 'read' && access !== 'write' && access !== 'exec') {
    throw new KernelError('EINVAL', `handle_mm_fault: unknown access '${String(access)}' at VA ${va} in pid ${mm.pid}`);
  }
  // An exiting or exited address space has no VMAs to fault into (mmget_not_zero fails).
  if (mm.state !== 'live' || mm.users === 0) return FAULT_NO_VMA;
  if (!Number.isSafeInteger(va) || va < 0 || va >= TASK_SIZE) return FAULT_NO_VMA;
  const vma = mm.findVma(va);
  if (vma === null) return FAULT_NO_VMA;
  if (!protAllows(vma.prot, access)) return FAULT_ACCESS;

  const { alloc, ram } = mm.ctx;
  const pt = mm.pgtable;
  let slot: number;
  try {
    slot = pt.pteSlot(va, true);
  } catch (e) {
    if (isKernelError(e, 'ENOMEM')) return FAULT_OOM;
    throw e;
  }
  const lo = ram.read32(slot);
  const hi = ram.read32(slot + 4);
  if (lo !== 0 || hi !== 0) {
    if (pageDescAllows(lo, hi, access)) return FAULT_OK;
    // The frame is there but its descriptor lags the VMA: bring it in line (a spurious fault).
    const pa = descOutputAddress(lo, hi);
    pt.writePte(slot, pageDescLo(pa, vma.prot), pageDescHi(pa, vma.prot));
    return FAULT_OK;
  }

  // kernel: do_anonymous_page() [mm/memory.c]
  const pageVa = va - (va % PAGE_SIZE);
  let pa: number;
  try {
    pa = alloc.allocPages(0, { kind: 'process', pid: mm.pid, va: pageVa });
  } catch (e) {
    if (isKernelError(e, 'ENOMEM')) return FAULT_OOM;
    throw e;
  }
  ram.fill(pa, PAGE_SIZE, 0);
  pt.writePte(slot, pageDescLo(pa, vma.prot), pageDescHi(pa, vma.prot));
  mm.addRss(1);
  return FAULT_OK;
}
