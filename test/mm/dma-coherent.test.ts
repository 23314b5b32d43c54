import { describe, expect, it } from 'vitest';
import { PhysicalMemory } from '../../hw/memory.js';
import { dmaAllocCoherent, dmaFreeCoherent } from '../../mm/dma-coherent.js';
import { PAGE_SIZE, PageAllocator } from '../../mm/page-alloc.js';
import { expectErrno } from '../lib/errno.js';

const MiB = 1024 * 1024;
const BASE = 0x8_0000_0000;

function setup() {
  const ram = new PhysicalMemory();
  ram.addRegion(BASE, 16 * MiB);
  const alloc = new PageAllocator({ memory: [{ base: BASE, size: 16 * MiB }], kernelInstance: 1 });
  return { ram, alloc };
}

describe('dmaAllocCoherent', () => {
  it('rounds up to an order, aligns to the size, zeroes, and tags the device', () => {
    const { ram, alloc } = setup();
    // Dirty all of RAM so zeroing is observable.
    ram.fill(BASE, 16 * MiB, 0xee);
    const buf = dmaAllocCoherent(alloc, ram, 20 * 1024, '/smmu@2b400000', 'cmdq');
    expect(buf.order).toBe(3);
    expect(buf.size).toBe(20 * 1024);
    expect(buf.allocatedSize).toBe(32 * 1024);
    expect(buf.pa % (32 * 1024)).toBe(0);
    expect(ram.read(buf.pa, 32 * 1024).every((b) => b === 0)).toBe(true);
    expect(ram.read8(buf.pa + 32 * 1024)).toBe(0xee);
    for (let off = 0; off < 32 * 1024; off += PAGE_SIZE) {
      expect(alloc.ownerOf(buf.pa + off)!.owner).toEqual({ kind: 'dma', device: '/smmu@2b400000', what: 'cmdq' });
    }
  });

  it('frees back to the allocator, once', () => {
    const { ram, alloc } = setup();
    const buf = dmaAllocCoherent(alloc, ram, 64, 'dev', 'ste');
    dmaFreeCoherent(alloc, buf);
    expect(alloc.ownerOf(buf.pa)!.owner.kind).toBe('free');
    expect(() => dmaFreeCoherent(alloc, buf)).toThrow(/double free/);
  });

  it('refuses a free on behalf of another device', () => {
    const { ram, alloc } = setup();
    const buf = dmaAllocCoherent(alloc, ram, 4096, 'devA', 'q');
    expect(() => dmaFreeCoherent(alloc, { ...buf, device: 'devB' })).toThrow(/foreign free: owned by dma:devA:q/);
    expect(alloc.ownerOf(buf.pa)!.owner).toEqual({ kind: 'dma', device: 'devA', what: 'q' });
  });

  it('is ENOMEM beyond 2 MiB and EINVAL for a zero size', async () => {
    const { ram, alloc } = setup();
    await expectErrno(() => dmaAllocCoherent(alloc, ram, 2 * MiB + 1, 'dev', 'strtab'), 'ENOMEM', /dev \(strtab\) exceed the largest contiguous allocation/);
    await expectErrno(() => dmaAllocCoherent(alloc, ram, 0, 'dev', 'x'), 'EINVAL');
    expect(dmaAllocCoherent(alloc, ram, 2 * MiB, 'dev', 'ok').order).toBe(9);
  });
});
