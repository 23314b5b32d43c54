/**
 * DMA API benchmarks, through the iommu core with the test mock IOMMU (real io-pgtable tables in RAM,
 * no hardware model), one 4 KiB buffer mapped and unmapped per pair:
 * - dma.map_unmap_strict: DMA domain, an IOTLB sync per unmap;
 * - dma.map_unmap_lazy: DMA-FQ domain, unmapped IOVAs batched on the flush queue (a flush-all every
 *   255 unmaps; the 10 ms timer never fires because virtual time does not advance).
 */
import { dmaMapSingle, dmaUnmapSingle } from '../core/dma-mapping.js';
import { mockRig } from '../test/core/mock-rig.js';
import { throughputAsync, type Bench } from './harness.js';

async function mapUnmap(strict: boolean): Promise<number> {
  const s = await mockRig({ masters: [{ name: 'dma@10000000', ids: [[1]], props: { 'dma-coherent': true } }], kernel: { strict } });
  const dev = s.dev('dma@10000000');
  const buf = s.k.alloc.allocPages(0, { kind: 'kernel', what: 'bench buffer' });
  // The mock records every op for tests; not here.
  s.mock.recording = false;
  const pairs = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const addr = await dmaMapSingle(dev, buf, 0x1000, 'bidirectional');
      await dmaUnmapSingle(dev, addr, 0x1000, 'bidirectional');
    }
  };
  // Let the JIT settle on the whole path before the harness starts timing.
  await pairs(20_000);
  return throughputAsync(pairs);
}

export const benches: Bench[] = [
  { name: 'dma.map_unmap_strict', unit: 'pairs/s', run: () => mapUnmap(true) },
  { name: 'dma.map_unmap_lazy', unit: 'pairs/s', run: () => mapUnmap(false) },
];
