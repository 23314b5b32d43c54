import { describe, expect, it } from 'vitest';
import { expectErrno } from '../lib/errno.js';
import { PhysicalMemory } from '../../hw/memory.js';
import { FAULT_OK, handleMmFault } from '../../mm/fault.js';
import { MMAP_BASE, MMAP_MIN_ADDR, Mm, MmContext } from '../../mm/mm.js';
import { mmuNotifierRegister } from '../../mm/mmu-notifier.js';
import { PAGE_SIZE, PageAllocator, type Allocation } from '../../mm/page-alloc.js';
import { PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE } from '../../mm/prot.js';

const MiB = 1024 * 1024;
// RAM above 4 GiB so output addresses use the descriptors' high word.
const RAM_BASE = 0x8_8000_0000;
const RAM_SIZE = 32 * MiB;
const RW = PROT_READ | PROT_WRITE;

function setup(paBits = 40) {
  const ram = new PhysicalMemory();
  ram.addRegion(RAM_BASE, RAM_SIZE);
  const alloc = new PageAllocator({ memory: [{ base: RAM_BASE, size: RAM_SIZE }], kernelInstance: 1, ram });
  const ctx = new MmContext({ alloc, ram, paBits });
  return { ram, alloc, ctx };
}

/**
 * An independent VMSAv8-64 stage-1 walk (4 KiB granule, 48-bit VA, start at level 0), decoding the
 * descriptors from RAM with BigInt, written from the architecture rather than from mm/.
 */
interface TestWalk {
  desc: bigint;
  pa: number;
  tables: number[];
}
function walk(ram: PhysicalMemory, pgd: number, va: number): TestWalk | null {
  const v = BigInt(va);
  let table = BigInt(pgd);
  const tables = [pgd];
  for (let level = 0; level <= 3; level++) {
    const idx = (v >> BigInt(39 - 9 * level)) & 0x1ffn;
    const desc = ram.read64(Number(table + idx * 8n));
    if ((desc & 1n) === 0n) return null;
    if ((desc & 2n) === 0n) throw new Error(`level ${level}: block descriptor`);
    const oa = desc & 0x0000_ffff_ffff_f000n;
    if (level === 3) return { desc, pa: Number(oa | (v & 0xfffn)), tables };
    table = oa;
    tables.push(Number(oa));
  }
  return null;
}

/** The level-3 descriptor word for `va` whether or not it is valid (0n if a table is missing). */
function rawPte(ram: PhysicalMemory, pgd: number, va: number): bigint {
  const v = BigInt(va);
  let table = BigInt(pgd);
  for (let level = 0; level < 3; level++) {
    const desc = ram.read64(Number(table + ((v >> BigInt(39 - 9 * level)) & 0x1ffn) * 8n));
    if ((desc & 3n) !== 3n) return 0n;
    table = desc & 0x0000_ffff_ffff_f000n;
  }
  return ram.read64(Number(table + ((v >> 12n) & 0x1ffn) * 8n));
}

const field = (d: bigint, lo: number, width: number) => Number((d >> BigInt(lo)) & ((1n << BigInt(width)) - 1n));



function processPages(alloc: PageAllocator, pid: number): Allocation[] {
  return alloc.allocations().filter((a) => a.owner.kind === 'process' && a.owner.pid === pid);
}

describe('Mm: creation and the stage-1 configuration', () => {
  it('allocates an ASID, a zeroed level-0 table owned as a page table, and the CD fields', () => {
    const { ram, alloc, ctx } = setup(40);
    const mm = new Mm(ctx, 7);
    const other = new Mm(ctx, 8);
    expect(mm.asid).toBeGreaterThan(0);
    expect(mm.asid).toBeLessThan(65536);
    expect(other.asid).not.toBe(mm.asid);
    expect(mm.pgd % PAGE_SIZE).toBe(0);
    expect(alloc.ownerOf(mm.pgd)!.owner).toEqual({ kind: 'page-table', what: 'mm pid 7' });
    expect(ram.read(mm.pgd, PAGE_SIZE).every((b) => b === 0)).toBe(true);

    const s1 = mm.stage1;
    expect(s1.ttb0).toBe(mm.pgd);
    expect(s1.asid).toBe(mm.asid);
    expect(s1.t0sz).toBe(16);
    expect(s1.tg0).toBe(0);
    expect(s1.irgn0).toBe(1);
    expect(s1.orgn0).toBe(1);
    expect(s1.sh0).toBe(3);
    expect(s1.ips).toBe(2); // 40-bit PA
    expect(s1.epd0).toBe(false);
    expect(s1.epd1).toBe(true);
    // MAIR attribute at the index user pages use: Normal, inner/outer write-back RW-allocate.
    expect(Number((s1.mair >> BigInt(8 * s1.attrIndx)) & 0xffn)).toBe(0xff);
    // TCR_EL1: T0SZ, IRGN0, ORGN0, SH0, TG0, EPD1, IPS, AS.
    expect(field(s1.tcr, 0, 6)).toBe(16);
    expect(field(s1.tcr, 8, 2)).toBe(1);
    expect(field(s1.tcr, 10, 2)).toBe(1);
    expect(field(s1.tcr, 12, 2)).toBe(3);
    expect(field(s1.tcr, 14, 2)).toBe(0);
    expect(field(s1.tcr, 7, 1)).toBe(0);
    expect(field(s1.tcr, 23, 1)).toBe(1);
    expect(field(s1.tcr, 32, 3)).toBe(2);
    expect(field(s1.tcr, 36, 1)).toBe(1);
    expect(s1.ttbr0).toBe((BigInt(mm.asid) << 48n) | BigInt(mm.pgd));
  });

  it('rejects a PA size the descriptors cannot express', async () => {
    const { ram, alloc } = setup();
    await expectErrno(() => new MmContext({ alloc, ram, paBits: 52 }), 'EINVAL', /52 bits/);
    expect(new MmContext({ alloc, ram, paBits: 48 }).ips).toBe(5);
  });
});

describe('demand paging', () => {
  it('touch → a zeroed frame is allocated and the page table in RAM resolves VA → PA', () => {
    const { ram, alloc, ctx } = setup();
    const mm = new Mm(ctx, 5);
    // Leave dirty frames in the allocator: the fault must zero what it maps.
    const dirty: number[] = [];
    for (let i = 0; i < 8; i++) dirty.push(alloc.allocPages(0, { kind: 'kernel', what: 'scratch' }));
    for (const pa of dirty) ram.fill(pa, PAGE_SIZE, 0xcc);
    for (const pa of dirty) alloc.freePages(pa);

    const va = mm.mmap(3 * PAGE_SIZE, RW);
    expect(va % PAGE_SIZE).toBe(0);
    expect(mm.translate(va)).toBeNull();
    expect(walk(ram, mm.pgd, va)).toBeNull();
    expect(processPages(alloc, 5)).toHaveLength(0);

    mm.write(va + PAGE_SIZE + 100, new Uint8Array([1, 2, 3, 4]));
    const pages = processPages(alloc, 5);
    expect(pages).toHaveLength(1);
    expect(pages[0].owner).toEqual({ kind: 'process', pid: 5, va: va + PAGE_SIZE });
    expect(mm.rss).toBe(1);

    const w = walk(ram, mm.pgd, va + PAGE_SIZE + 100)!;
    expect(w).not.toBeNull();
    expect(w.pa).toBe(pages[0].pa + 100);
    expect(mm.translate(va + PAGE_SIZE + 100)).toBe(w.pa);
    // The frame holds the bytes, the rest of it is zero (it was dirty before).
    expect(dirty).toContain(pages[0].pa);
    expect([...ram.read(w.pa, 4)]).toEqual([1, 2, 3, 4]);
    const whole = ram.read(pages[0].pa, PAGE_SIZE);
    expect(whole.reduce((s, b) => s + b, 0)).toBe(10);
    // Every table on the way is a page-table frame of this mm.
    for (const t of w.tables) expect(alloc.ownerOf(t)!.owner).toEqual({ kind: 'page-table', what: 'mm pid 5' });
    expect(w.tables).toHaveLength(4);
    expect(w.tables[0]).toBe(mm.pgd);

    // Page descriptor fields, decoded from RAM.
    const d = w.desc;
    expect(field(d, 0, 2)).toBe(3); // valid page
    expect(field(d, 2, 3)).toBe(mm.stage1.attrIndx); // AttrIndx
    expect(field(d, 6, 1)).toBe(1); // AP[1]: EL0 access
    expect(field(d, 7, 1)).toBe(0); // AP[2]: writable
    expect(field(d, 8, 2)).toBe(3); // SH: inner shareable
    expect(field(d, 10, 1)).toBe(1); // AF
    expect(field(d, 11, 1)).toBe(1); // nG
    expect(field(d, 53, 1)).toBe(1); // PXN
    expect(field(d, 54, 1)).toBe(1); // UXN
    // Untouched neighbours are still not mapped.
    expect(walk(ram, mm.pgd, va)).toBeNull();
    expect(walk(ram, mm.pgd, va + 2 * PAGE_SIZE)).toBeNull();
    // Reads of the touched page go through the same frame.
    expect([...mm.read(va + PAGE_SIZE + 99, 6)]).toEqual([0, 1, 2, 3, 4, 0]);
  });

  it('an access spanning pages faults each page in', () => {
    const { ram, alloc, ctx } = setup();
    const mm = new Mm(ctx, 3);
    const va = mm.mmap(4 * PAGE_SIZE, RW);
    const data = new Uint8Array(2 * PAGE_SIZE + 10).map((_, i) => (i * 7) & 0xff);
    mm.write(va + PAGE_SIZE - 5, data);
    expect(processPages(alloc, 3)).toHaveLength(4);
    expect([...mm.read(va + PAGE_SIZE - 5, data.length)]).toEqual([...data]);
    // Byte by byte through an independent walk.
    for (const off of [0, 4, 5, PAGE_SIZE + 5, 2 * PAGE_SIZE + 9]) {
      expect(ram.read8(walk(ram, mm.pgd, va + PAGE_SIZE - 5 + off)!.pa)).toBe(data[off]);
    }
  });

  it('handleMmFault: maps once, and fails like SIGSEGV outside a VMA or against its protection', () => {
    const { ram, alloc, ctx } = setup();
    const mm = new Mm(ctx, 11);
    const rw = mm.mmap(2 * PAGE_SIZE, RW);
    const ro = mm.mmap(PAGE_SIZE, PROT_READ);
    const rx = mm.mmap(PAGE_SIZE, PROT_READ | PROT_EXEC);
    const none = mm.mmap(PAGE_SIZE, PROT_NONE);

    expect(handleMmFault(mm, rw + 8, 'read')).toBe(FAULT_OK);
    const before = alloc.usage().allocatedBytes;
    expect(handleMmFault(mm, rw + 16, 'write')).toEqual({ ok: true });
    expect(alloc.usage().allocatedBytes).toBe(before); // already mapped: nothing new

    expect(handleMmFault(mm, 0x1000, 'read')).toEqual({ ok: false, reason: 'no-vma' });
    // Just past the RW mapping (mmap placed the others below it).
    expect(mm.findVma(rw + 2 * PAGE_SIZE)).toBeNull();
    expect(handleMmFault(mm, rw + 2 * PAGE_SIZE, 'read')).toEqual({ ok: false, reason: 'no-vma' });
    expect(handleMmFault(mm, 2 ** 48, 'read')).toEqual({ ok: false, reason: 'no-vma' });
    expect(handleMmFault(mm, ro, 'write')).toEqual({ ok: false, reason: 'access' });
    expect(handleMmFault(mm, ro, 'exec')).toEqual({ ok: false, reason: 'access' });
    expect(handleMmFault(mm, none, 'read')).toEqual({ ok: false, reason: 'access' });
    expect(handleMmFault(mm, rw, 'exec')).toEqual({ ok: false, reason: 'access' });
    expect(walk(ram, mm.pgd, ro)).toBeNull();

    expect(handleMmFault(mm, ro + 5, 'read')).toEqual({ ok: true });
    const roDesc = walk(ram, mm.pgd, ro)!.desc;
    expect(field(roDesc, 6, 2)).toBe(0b11); // EL0 read-only
    expect(field(roDesc, 54, 1)).toBe(1);

    expect(handleMmFault(mm, rx, 'exec')).toEqual({ ok: true });
    const rxDesc = walk(ram, mm.pgd, rx)!.desc;
    expect(field(rxDesc, 6, 2)).toBe(0b11);
    expect(field(rxDesc, 54, 1)).toBe(0); // UXN clear: executable at EL0
    expect(field(rxDesc, 53, 1)).toBe(1); // never executable at EL1
  });

  it('CPU accessors fail with EFAULT where a SIGSEGV would hit, allocating nothing', async () => {
    const { alloc, ctx } = setup();
    const mm = new Mm(ctx, 12);
    const ro = mm.mmap(PAGE_SIZE, PROT_READ);
    await expectErrno(() => mm.read(0x20_0000, 4), 'EFAULT', /read at VA 0x200000 in pid 12: no-vma/);
    await expectErrno(() => mm.write(ro, new Uint8Array([1])), 'EFAULT', /write at VA .* access \(VMA \[.*\) r--\)/);
    expect(processPages(alloc, 12)).toHaveLength(0);
    expect([...mm.read(ro, 3)]).toEqual([0, 0, 0]);
    expect(processPages(alloc, 12)).toHaveLength(1);
    await expectErrno(() => mm.read(2 ** 48 - 2, 4), 'EFAULT', /not a user address range/);
    // A write that runs off the end of a VMA fails at the first unmapped page.
    const rw = mm.mmap(PAGE_SIZE, RW, { addr: 0x4000_0000, fixed: true });
    await expectErrno(() => mm.write(rw + PAGE_SIZE - 2, new Uint8Array(4)), 'EFAULT', /VA 0x40001000/);
  });

  it('reports oom (not an exception) when memory runs out during a fault', async () => {
    const ram = new PhysicalMemory();
    ram.addRegion(0x4000_0000, 8 * PAGE_SIZE);
    const alloc = new PageAllocator({ memory: [{ base: 0x4000_0000, size: 8 * PAGE_SIZE }], kernelInstance: 1, ram });
    const ctx = new MmContext({ alloc, ram });
    const mm = new Mm(ctx, 1); // pgd: 1 frame
    const va = mm.mmap(16 * PAGE_SIZE, RW);
    let mapped = 0;
    for (let i = 0; i < 16; i++) {
      const r = handleMmFault(mm, va + i * PAGE_SIZE, 'write');
      if (!r.ok) {
        expect(r).toEqual({ ok: false, reason: 'oom' });
        break;
      }
      mapped++;
    }
    expect(mapped).toBe(8 - 1 - 3); // minus the pgd and three lower tables
    await expectErrno(() => mm.write(va + 15 * PAGE_SIZE, new Uint8Array(1)), 'EFAULT', /oom/);
  });
});

describe('mmap', () => {
  it('places mappings page aligned, without overlap, top-down below MMAP_BASE, and merges neighbours', () => {
    const { ctx } = setup();
    const mm = new Mm(ctx, 2);
    const a = mm.mmap(100, RW);
    const b = mm.mmap(3 * PAGE_SIZE + 1, RW);
    expect(a).toBe(MMAP_BASE - PAGE_SIZE);
    expect(b).toBe(a - 4 * PAGE_SIZE);
    // Same prot and adjacent: one VMA.
    expect(mm.vmas().map((v) => [v.start, v.end, v.prot])).toEqual([[b, a + PAGE_SIZE, RW]]);
    const c = mm.mmap(PAGE_SIZE, PROT_READ);
    expect(mm.vmas()).toHaveLength(2);
    expect(mm.findVma(c)!.prot).toBe(PROT_READ);
    expect(mm.findVma(c + PAGE_SIZE)!.start).toBe(b);
  });

  it('honours a free hint and a fixed address, and rejects bad requests', async () => {
    const { ctx } = setup();
    const mm = new Mm(ctx, 2);
    expect(mm.mmap(PAGE_SIZE, RW, { addr: 0x1234_5000 })).toBe(0x1234_5000);
    // Hint rounded up to a page; taken hint → placed elsewhere.
    expect(mm.mmap(PAGE_SIZE, RW, { addr: 0x2000_0001 })).toBe(0x2000_1000);
    const elsewhere = mm.mmap(PAGE_SIZE, RW, { addr: 0x1234_5000 });
    expect(elsewhere).not.toBe(0x1234_5000);
    expect(mm.mmap(2 * PAGE_SIZE, PROT_READ, { addr: 0x5000_0000, fixed: true })).toBe(0x5000_0000);
    await expectErrno(() => mm.mmap(PAGE_SIZE, RW, { addr: 0x5000_1000, fixed: true }), 'EEXIST', /overlaps/);
    await expectErrno(() => mm.mmap(PAGE_SIZE, RW, { addr: 0x5000_0800, fixed: true }), 'EINVAL', /not page aligned/);
    await expectErrno(() => mm.mmap(PAGE_SIZE, RW, { addr: MMAP_MIN_ADDR - PAGE_SIZE, fixed: true }), 'EPERM', /mmap_min_addr/);
    await expectErrno(() => mm.mmap(2 * PAGE_SIZE, RW, { addr: 2 ** 48 - PAGE_SIZE, fixed: true }), 'ENOMEM', /beyond/);
    await expectErrno(() => mm.mmap(0, RW), 'EINVAL', /length 0/);
    await expectErrno(() => mm.mmap(PAGE_SIZE, 8), 'EINVAL', /prot 8/);
    await expectErrno(() => mm.mmap(PAGE_SIZE, RW, { fixed: true }), 'EINVAL', /without an address/);
  });

  it('fills the space below MMAP_BASE, then goes above it, then runs out', async () => {
    const { ctx } = setup();
    const mm = new Mm(ctx, 2);
    const below = MMAP_BASE - MMAP_MIN_ADDR;
    expect(mm.mmap(below, PROT_NONE)).toBe(MMAP_MIN_ADDR);
    expect(mm.mmap(PAGE_SIZE, PROT_NONE)).toBe(MMAP_BASE);
    const rest = 2 ** 48 - MMAP_BASE - PAGE_SIZE;
    expect(mm.mmap(rest, PROT_READ)).toBe(MMAP_BASE + PAGE_SIZE);
    await expectErrno(() => mm.mmap(PAGE_SIZE, RW), 'ENOMEM', /no free range/);
  });
});

describe('munmap', () => {
  it('splits the VMA, clears PTEs, fires the notifier with the cleared span before freeing, then frees', async () => {
    const { ram, alloc, ctx } = setup();
    const mm = new Mm(ctx, 4);
    const va = mm.mmap(6 * PAGE_SIZE, RW);
    for (let i = 0; i < 6; i++) mm.write(va + i * PAGE_SIZE, new Uint8Array([i + 1]));
    const pas = [...Array(6).keys()].map((i) => walk(ram, mm.pgd, va + i * PAGE_SIZE)!.pa);
    const seen: { start: number; end: number; owners: string[]; mapped: (number | null)[] }[] = [];
    mmuNotifierRegister(mm, {
      invalidateRange(start, end) {
        seen.push({
          start,
          end,
          // At notification time: PTEs already cleared, frames not yet freed.
          owners: pas.slice(1, 5).map((pa) => alloc.ownerOf(pa)!.owner.kind),
          mapped: [1, 2, 3, 4].map((i) => mm.translate(va + i * PAGE_SIZE)),
        });
      },
    });
    // All six pages are mapped; unmap pages 1..4.
    await mm.munmap(va + PAGE_SIZE, 4 * PAGE_SIZE);
    expect(seen).toEqual([
      { start: va + PAGE_SIZE, end: va + 5 * PAGE_SIZE, owners: ['process', 'process', 'process', 'process'], mapped: [null, null, null, null] },
    ]);
    for (const pa of pas.slice(1, 5)) expect(alloc.ownerOf(pa)!.owner.kind).toBe('free');
    expect(alloc.ownerOf(pas[0])!.owner.kind).toBe('process');
    expect(alloc.ownerOf(pas[5])!.owner.kind).toBe('process');
    expect(mm.vmas().map((v) => [v.start, v.end])).toEqual([
      [va, va + PAGE_SIZE],
      [va + 5 * PAGE_SIZE, va + 6 * PAGE_SIZE],
    ]);
    expect(mm.rss).toBe(2);
    for (let i = 1; i < 5; i++) expect(rawPte(ram, mm.pgd, va + i * PAGE_SIZE)).toBe(0n);
    expect([...mm.read(va, 1)]).toEqual([1]);
    expect([...mm.read(va + 5 * PAGE_SIZE, 1)]).toEqual([6]);
    await expectErrno(() => mm.read(va + 2 * PAGE_SIZE, 1), 'EFAULT', /no-vma/);
  });

  it('reports only the span that had pages, and nothing for a range without pages', async () => {
    const { ctx } = setup();
    const mm = new Mm(ctx, 4);
    const va = mm.mmap(8 * PAGE_SIZE, RW);
    mm.write(va + 2 * PAGE_SIZE, new Uint8Array([9]));
    mm.write(va + 4 * PAGE_SIZE, new Uint8Array([9]));
    const ranges: [number, number][] = [];
    mmuNotifierRegister(mm, { invalidateRange: (s, e) => void ranges.push([s, e]) });
    await mm.munmap(va + 6 * PAGE_SIZE, 2 * PAGE_SIZE); // untouched pages
    await mm.munmap(0x10_0000, PAGE_SIZE); // a hole: not an error
    expect(ranges).toEqual([]);
    await mm.munmap(va, 6 * PAGE_SIZE);
    expect(ranges).toEqual([[va + 2 * PAGE_SIZE, va + 5 * PAGE_SIZE]]);
    expect(mm.vmas()).toEqual([]);
  });

  it('waits for asynchronous notifiers before the frames are reused', async () => {
    const { ram, alloc, ctx } = setup();
    const mm = new Mm(ctx, 4);
    const va = mm.mmap(PAGE_SIZE, RW);
    mm.write(va, new Uint8Array([1]));
    const pa = walk(ram, mm.pgd, va)!.pa;
    let finish!: () => void;
    mmuNotifierRegister(mm, { invalidateRange: () => new Promise<void>((r) => (finish = r)) });
    const done = mm.munmap(va, PAGE_SIZE);
    await Promise.resolve();
    expect(mm.translate(va)).toBeNull();
    expect(alloc.ownerOf(pa)!.owner.kind).toBe('process');
    finish();
    await done;
    expect(alloc.ownerOf(pa)!.owner.kind).toBe('free');
  });

  it('rejects unaligned or empty ranges', async () => {
    const { ctx } = setup();
    const mm = new Mm(ctx, 4);
    await expectErrno(mm.munmap(0x1000_0800, PAGE_SIZE), 'EINVAL', /page-aligned/);
    await expectErrno(mm.munmap(0x1000_0000, 0), 'EINVAL', /length 0/);
    await expectErrno(mm.munmap(2 ** 48 - PAGE_SIZE, 2 * PAGE_SIZE), 'EINVAL', /beyond/);
  });
});

describe('mprotect', () => {
  it('downgrades present PTEs in RAM, splits the VMA, notifies, and makes writes fault', async () => {
    const { ram, ctx } = setup();
    const mm = new Mm(ctx, 6);
    const va = mm.mmap(3 * PAGE_SIZE, RW);
    for (let i = 0; i < 3; i++) mm.write(va + i * PAGE_SIZE, new Uint8Array([0x40 + i]));
    const ranges: [number, number][] = [];
    mmuNotifierRegister(mm, { invalidateRange: (s, e) => void ranges.push([s, e]) });

    await mm.mprotect(va + PAGE_SIZE, PAGE_SIZE, PROT_READ);
    expect(ranges).toEqual([[va + PAGE_SIZE, va + 2 * PAGE_SIZE]]);
    expect(mm.vmas().map((v) => [v.start - va, v.end - va, v.prot])).toEqual([
      [0, PAGE_SIZE, RW],
      [PAGE_SIZE, 2 * PAGE_SIZE, PROT_READ],
      [2 * PAGE_SIZE, 3 * PAGE_SIZE, RW],
    ]);
    expect(field(walk(ram, mm.pgd, va + PAGE_SIZE)!.desc, 7, 1)).toBe(1); // AP[2]: read-only now
    expect(field(walk(ram, mm.pgd, va)!.desc, 7, 1)).toBe(0);
    await expectErrno(() => mm.write(va + PAGE_SIZE, new Uint8Array([1])), 'EFAULT', /access/);
    expect(handleMmFault(mm, va + PAGE_SIZE, 'write')).toEqual({ ok: false, reason: 'access' });
    expect([...mm.read(va + PAGE_SIZE, 1)]).toEqual([0x41]);

    // Back to RW: the VMAs merge again and the upgrade is notified too.
    await mm.mprotect(va + PAGE_SIZE, PAGE_SIZE, RW);
    expect(mm.vmas()).toHaveLength(1);
    expect(ranges).toHaveLength(2);
    mm.write(va + PAGE_SIZE, new Uint8Array([0x99]));
    expect([...mm.read(va + PAGE_SIZE, 1)]).toEqual([0x99]);
  });

  it('PROT_NONE keeps the frame in an invalid descriptor and gives it back on re-enable', async () => {
    const { ram, alloc, ctx } = setup();
    const mm = new Mm(ctx, 6);
    const va = mm.mmap(PAGE_SIZE, RW);
    mm.write(va, new Uint8Array([0xab]));
    const pa = walk(ram, mm.pgd, va)!.pa;
    await mm.mprotect(va, PAGE_SIZE, PROT_NONE);
    expect(walk(ram, mm.pgd, va)).toBeNull(); // a hardware walker sees a translation fault
    expect(mm.translate(va)).toBeNull();
    expect(rawPte(ram, mm.pgd, va) & 1n).toBe(0n);
    expect(alloc.ownerOf(pa)!.owner.kind).toBe('process');
    await expectErrno(() => mm.read(va, 1), 'EFAULT', /access/);
    await mm.mprotect(va, PAGE_SIZE, PROT_READ);
    expect(walk(ram, mm.pgd, va)!.pa).toBe(pa);
    expect([...mm.read(va, 1)]).toEqual([0xab]);
  });

  it('ENOMEM for a range with a hole, changing nothing', async () => {
    const { ctx } = setup();
    const mm = new Mm(ctx, 6);
    const a = mm.mmap(PAGE_SIZE, RW, { addr: 0x1000_0000, fixed: true });
    mm.mmap(PAGE_SIZE, RW, { addr: 0x1000_2000, fixed: true });
    await expectErrno(mm.mprotect(a, 3 * PAGE_SIZE, PROT_READ), 'ENOMEM', /hole at 0x10001000/);
    expect(mm.vmas().map((v) => v.prot)).toEqual([RW, RW]);
    await expectErrno(mm.mprotect(a + 1, PAGE_SIZE, PROT_READ), 'EINVAL');
    await mm.mprotect(a, 0, PROT_READ); // zero length: nothing to do
    expect(mm.vmas().map((v) => v.prot)).toEqual([RW, RW]);
  });
});
