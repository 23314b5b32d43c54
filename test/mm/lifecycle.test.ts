import { describe, expect, it } from 'vitest';
import { expectErrno } from '../lib/errno.js';
import { PhysicalMemory } from '../../hw/memory.js';
import { AsidAllocator } from '../../mm/asid.js';
import { handleMmFault } from '../../mm/fault.js';
import { Mm, MmContext } from '../../mm/mm.js';
import { mmuNotifierPut, mmuNotifierRegister, mmuNotifierUnregister } from '../../mm/mmu-notifier.js';
import { PAGE_SIZE, PageAllocator } from '../../mm/page-alloc.js';
import { ProcessTable } from '../../mm/process.js';
import { PROT_READ, PROT_WRITE } from '../../mm/prot.js';

const MiB = 1024 * 1024;
const RW = PROT_READ | PROT_WRITE;
const BASE = 0x4000_0000;

function setup() {
  const ram = new PhysicalMemory();
  ram.addRegion(BASE, 16 * MiB);
  const alloc = new PageAllocator({ memory: [{ base: BASE, size: 16 * MiB }], kernelInstance: 1, ram });
  const ctx = new MmContext({ alloc, ram });
  const procs = new ProcessTable(ctx);
  return { ram, alloc, ctx, procs };
}

function ownedBy(alloc: PageAllocator, pid: number) {
  const all = alloc.allocations();
  return {
    pages: all.filter((a) => a.owner.kind === 'process' && a.owner.pid === pid).length,
    tables: all.filter((a) => a.owner.kind === 'page-table' && a.owner.what === `mm pid ${pid}`).length,
  };
}



describe('exit', () => {
  it('fires release while the pages are still mapped, then frees every page and table', async () => {
    const { alloc, ctx, procs } = setup();
    const p = procs.spawn();
    const { mm } = p;
    const a = mm.mmap(4 * PAGE_SIZE, RW);
    const b = mm.mmap(PAGE_SIZE, RW, { addr: 0x1_0000_0000, fixed: true }); // another level-1 subtree
    mm.write(a, new Uint8Array(4 * PAGE_SIZE).fill(1));
    mm.write(b, new Uint8Array([2]));
    expect(ownedBy(alloc, p.pid)).toEqual({ pages: 5, tables: 1 + 2 + 2 + 2 });
    const asid = mm.asid;

    const events: string[] = [];
    mmuNotifierRegister(mm, {
      invalidateRange: (s, e) => void events.push(`inv ${s}-${e}`),
      release: (m) => {
        expect(m).toBe(mm);
        expect(mm.translate(a)).not.toBeNull();
        expect(mm.users).toBe(0);
        events.push('release');
      },
    });
    const before = alloc.usage().allocatedBytes;
    await p.exit();
    expect(events).toEqual(['release']); // no invalidations after release
    expect(p.state).toBe('exited');
    expect(procs.get(p.pid)).toBeUndefined();
    // The notifier still holds the struct (mmgrab): pgd and ASID stay until it lets go.
    expect(mm.state).toBe('exited');
    expect(ownedBy(alloc, p.pid)).toEqual({ pages: 0, tables: 1 });
    expect(alloc.usage().allocatedBytes).toBe(before - 11 * PAGE_SIZE);
    expect(ctx.asids.isAllocated(asid)).toBe(true);
    expect(mm.vmas()).toEqual([]);
    expect(mm.rss).toBe(0);
    expect(handleMmFault(mm, a, 'read')).toEqual({ ok: false, reason: 'no-vma' });
    await expectErrno(() => mm.read(a, 1), 'EFAULT');
  });

  it('with no one else holding it, exit tears everything down including the pgd and ASID', async () => {
    const { alloc, ctx, procs } = setup();
    const baseline = alloc.usage().allocatedBytes;
    const p = procs.spawn();
    const va = p.mm.mmap(PAGE_SIZE, RW);
    p.mm.write(va, new Uint8Array([1]));
    const torn: number[] = [];
    p.mm.onTeardown((m) => torn.push(m.pid));
    await p.exit();
    expect(torn).toEqual([p.pid]);
    expect(p.mm.state).toBe('freed');
    expect(alloc.usage().allocatedBytes).toBe(baseline);
    expect(ctx.asids.isAllocated(p.mm.asid)).toBe(false);
    await expectErrno(p.exit(), 'ESRCH');
  });

  it('mmget keeps the address space alive past the process exit; the last mmput exits it', async () => {
    const { alloc, procs } = setup();
    const p = procs.spawn();
    const va = p.mm.mmap(PAGE_SIZE, RW);
    p.mm.write(va, new Uint8Array([7]));
    let released = 0;
    mmuNotifierRegister(p.mm, { release: () => void released++ });
    p.mm.mmget();
    await p.exit();
    expect(released).toBe(0);
    expect(p.mm.state).toBe('live');
    expect([...p.mm.read(va, 1)]).toEqual([7]);
    await p.mm.mmput();
    expect(released).toBe(1);
    expect(ownedBy(alloc, p.pid).pages).toBe(0);
    expect(p.mm.mmgetNotZero()).toBe(false);
    await expectErrno(() => p.mm.mmget(), 'EINVAL', /mmgetNotZero/);
    await expectErrno(p.mm.mmput(), 'EINVAL', /no users left/);
  });

  it('waits for an asynchronous release before unmapping', async () => {
    const { alloc, procs } = setup();
    const p = procs.spawn();
    const va = p.mm.mmap(PAGE_SIZE, RW);
    p.mm.write(va, new Uint8Array([1]));
    let finish!: () => void;
    const sub = mmuNotifierRegister(p.mm, { release: () => new Promise<void>((r) => (finish = r)) });
    const exiting = p.exit();
    await Promise.resolve();
    expect(p.mm.state).toBe('exiting');
    expect(ownedBy(alloc, p.pid).pages).toBe(1);
    expect(handleMmFault(p.mm, va, 'read')).toEqual({ ok: false, reason: 'no-vma' });
    finish();
    await exiting;
    expect(ownedBy(alloc, p.pid).pages).toBe(0);
    mmuNotifierPut(sub);
    expect(p.mm.state).toBe('freed');
  });
});

describe('mmgrab / mmdrop and the teardown hook', () => {
  it('keeps the struct after exit; the hook (where SVA frees its PASID) runs at the last mmdrop', async () => {
    const { alloc, ctx, procs } = setup();
    const p = procs.spawn();
    const { mm } = p;
    const pgd = mm.pgd;
    const calls: string[] = [];
    mm.onTeardown(() => calls.push(`teardown: pgd ${alloc.ownerOf(pgd)!.owner.kind}, asid ${ctx.asids.isAllocated(mm.asid)}`));
    const removed = mm.onTeardown(() => calls.push('removed hook'));
    removed();
    mm.mmgrab(); // a device bound for SVA
    mm.mmgrab(); // and a second one
    expect(mm.count).toBe(3);
    await p.exit();
    expect(calls).toEqual([]);
    expect(mm.state).toBe('exited');
    expect(mm.count).toBe(2);
    expect(alloc.ownerOf(pgd)!.owner.kind).toBe('page-table');
    mm.mmdrop();
    expect(calls).toEqual([]);
    mm.mmdrop();
    // Hooks run before the pgd and ASID are released.
    expect(calls).toEqual(['teardown: pgd page-table, asid true']);
    expect(mm.state).toBe('freed');
    expect(alloc.ownerOf(pgd)!.owner.kind).toBe('free');
    expect(ctx.asids.isAllocated(mm.asid)).toBe(false);
    await expectErrno(() => mm.mmdrop(), 'EINVAL', /no mmgrab reference/);
    await expectErrno(() => mm.mmgrab(), 'EINVAL', /already freed/);
  });

  it('a dropped grab while the address space is live does not tear it down', async () => {
    const { ctx } = setup();
    const mm = new Mm(ctx, 99);
    mm.mmgrab();
    mm.mmdrop();
    expect(mm.state).toBe('live');
    await expectErrno(() => mm.mmdrop(), 'EINVAL');
    expect(mm.mmap(PAGE_SIZE, RW)).toBeGreaterThan(0);
  });
});

describe('mmu notifier registration', () => {
  it('holds an mm_count reference; unregister on a live mm calls release, put does not', async () => {
    const { ctx } = setup();
    const mm = new Mm(ctx, 10);
    const log: string[] = [];
    const a = mmuNotifierRegister(mm, { release: () => void log.push('a') });
    const b = mmuNotifierRegister(mm, { release: () => void log.push('b'), invalidateRange: () => void log.push('b inv') });
    expect(mm.count).toBe(3);
    await mmuNotifierUnregister(a);
    expect(log).toEqual(['a']);
    mmuNotifierPut(b);
    expect(log).toEqual(['a']);
    expect(mm.count).toBe(1);
    expect(mm.notifiers.count).toBe(0);
    // b no longer hears about changes.
    const va = mm.mmap(PAGE_SIZE, RW);
    mm.write(va, new Uint8Array([1]));
    await mm.munmap(va, PAGE_SIZE);
    expect(log).toEqual(['a']);
    await expectErrno(() => mmuNotifierPut(b), 'EINVAL', /not registered/);
    await expectErrno(mmuNotifierUnregister(a), 'EINVAL', /not registered/);
  });

  it('unregister after exit does not call release again and drops the last reference', async () => {
    const { procs } = setup();
    const p = procs.spawn();
    let released = 0;
    const sub = mmuNotifierRegister(p.mm, { release: () => void released++ });
    await p.exit();
    expect(released).toBe(1);
    expect(p.mm.state).toBe('exited');
    await mmuNotifierUnregister(sub);
    expect(released).toBe(1);
    expect(p.mm.state).toBe('freed');
    await expectErrno(() => mmuNotifierRegister(p.mm, {}), 'EINVAL', /has exited/);
  });

  it('every subscriber is told even when one throws; the frames are still freed', async () => {
    const { alloc, ctx } = setup();
    const mm = new Mm(ctx, 10);
    const va = mm.mmap(PAGE_SIZE, RW);
    mm.write(va, new Uint8Array([1]));
    const pa = mm.translate(va)!;
    const heard: string[] = [];
    mmuNotifierRegister(mm, {
      invalidateRange: () => {
        throw new Error('first subscriber broke');
      },
    });
    mmuNotifierRegister(mm, { invalidateRange: () => void heard.push('second') });
    await expect(mm.munmap(va, PAGE_SIZE)).rejects.toThrow(/first subscriber broke/);
    expect(heard).toEqual(['second']);
    expect(alloc.ownerOf(pa)!.owner.kind).toBe('free');
  });
});

describe('processes and ASIDs', () => {
  it('gives each process a distinct pid and ASID and recycles pids cyclically', async () => {
    const ram = new PhysicalMemory();
    ram.addRegion(BASE, 4 * MiB);
    const alloc = new PageAllocator({ memory: [{ base: BASE, size: 4 * MiB }], kernelInstance: 1, ram });
    const procs = new ProcessTable(new MmContext({ alloc, ram }), 4);
    const p1 = procs.spawn();
    const p2 = procs.spawn();
    const p3 = procs.spawn();
    expect([p1.pid, p2.pid, p3.pid]).toEqual([1, 2, 3]);
    expect(new Set([p1.mm.asid, p2.mm.asid, p3.mm.asid]).size).toBe(3);
    await expectErrno(() => procs.spawn(), 'EAGAIN', /pids are in use/);
    await p2.exit();
    expect(procs.spawn().pid).toBe(2);
    expect(procs.count).toBe(3);
  });

  it('ASID allocator: next-fit, never 0, ENOSPC when full, EINVAL for a bad free', async () => {
    const asids = new AsidAllocator(8);
    expect(asids.max).toBe(255);
    const got = [...Array(255).keys()].map(() => asids.alloc());
    expect(got[0]).toBe(1);
    expect(new Set(got).size).toBe(255);
    expect(got).not.toContain(0);
    await expectErrno(() => asids.alloc(), 'ENOSPC');
    asids.free(10);
    asids.free(200);
    // Next-fit: continues after the last one handed out (wrapping), so 10 comes before 200.
    expect(asids.alloc()).toBe(10);
    expect(asids.alloc()).toBe(200);
    await expectErrno(() => asids.free(0), 'EINVAL');
    asids.free(5);
    await expectErrno(() => asids.free(5), 'EINVAL', /not allocated/);
    expect(new AsidAllocator().max).toBe(65535);
  });
});
