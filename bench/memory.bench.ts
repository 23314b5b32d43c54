/**
 * Physical memory and direct DMA benchmarks:
 * - mem.u64_read / mem.u64_write: PhysicalMemory 64-bit accesses (ops/s) striding over 64 KiB of
 *   touched RAM, the pattern of a walker or a queue reading descriptors.
 * - dma.direct_write: 4 KiB writes (bytes/s) by a platform master with no IOMMU in front, through
 *   the interconnect into RAM, over a 1 MiB ring, using the callback form (no Promise per write).
 */
import { Machine } from '../hw/machine.js';
import { PhysicalMemory } from '../hw/memory.js';
import { throughput, type Bench } from './harness.js';

const RAM_BASE = 0x8000_0000;
const SPAN = 0x1_0000;

function touchedMemory(): PhysicalMemory {
  const mem = new PhysicalMemory();
  mem.addRegion(RAM_BASE, 0x100_0000);
  for (let off = 0; off < SPAN; off += 8) mem.write64(RAM_BASE + off, BigInt(off) * 0x9e3779b97f4a7c15n);
  return mem;
}

const u64Read: Bench = {
  name: 'mem.u64_read',
  unit: 'ops/s',
  run() {
    const mem = touchedMemory();
    let sink = 0n;
    const v = throughput((n) => {
      for (let i = 0; i < n; i++) sink ^= mem.read64(RAM_BASE + ((i * 8) & (SPAN - 1)));
    });
    if (sink === -1n) throw new Error('unreachable');
    return v;
  },
};

const u64Write: Bench = {
  name: 'mem.u64_write',
  unit: 'ops/s',
  run() {
    const mem = touchedMemory();
    return throughput((n) => {
      for (let i = 0; i < n; i++) mem.write64(RAM_BASE + ((i * 8) & (SPAN - 1)), BigInt(i));
    });
  },
};

const directWrite: Bench = {
  name: 'dma.direct_write',
  unit: 'bytes/s',
  run() {
    const m = new Machine({ seed: 1 });
    m.addRam(RAM_BASE, 0x100_0000);
    const dma = m.addPlatformMaster('/bench/dma', [{ streamId: 0, iommu: null }]);
    const page = new Uint8Array(4096).fill(0x5a);
    const ring = 0x10_0000;
    let failed = 0;
    const done = (c: { status: string }): void => {
      if (c.status !== 'ok') failed++;
    };
    const v = throughput((n) => {
      for (let i = 0; i < n; i++) dma.submitWrite(RAM_BASE + ((i * 4096) & (ring - 1)), page, {}, done);
    }, 4096);
    if (failed > 0) throw new Error(`dma.direct_write: ${failed} writes failed`);
    return v;
  },
};

export const benches: Bench[] = [u64Read, u64Write, directWrite];
