/**
 * arm-smmu driver + SMMUv2 model benchmarks, on the SMMUv2 lab machine booted with the driver:
 * - v2.translate_hit: TLB-hit DMA writes through a stage 1 bank the driver programmed (an MMU-500,
 *   one 4K page mapped through the iommu core), submitted on the master's port and completed in
 *   memory, transactions/s;
 * - v2.stall_roundtrip: stalled faults resolved by retry, per second, through the whole path: the
 *   master's write to an unmapped IOVA stalls, the context interrupt queues the fault on the
 *   driver's workqueue, the domain's fault handler maps the page (iommu core + io-pgtable), the
 *   driver clears FSR and writes RESUME, the SMMU retries and the write completes. Eight
 *   stall-capable masters, each on its own bank, keep eight faults in flight;
 * - v2.map_unmap_strict: iommu_map + iommu_unmap of a 4 KiB page through core + arm-smmu driver by one
 *   kernel thread, each unmap waiting for its TLBIVA + TLBSYNC in virtual time (the SMMUv3 figure's
 *   counterpart), pairs/s.
 */
import { iommuAttachDevice } from '../core/iommu-attach.js';
import { iommuPagingDomainAlloc, iommuSetFaultHandler } from '../core/iommu-domain.js';
import { iommuMap, iommuUnmap } from '../core/iommu-map.js';
import { IOMMU_READ, IOMMU_WRITE } from '../core/io-pgtable.js';
import { armSmmuFaultStats } from '../drivers/arm-smmu/arm-smmu-fault.js';
import { ArmSmmuDevice } from '../drivers/arm-smmu/arm-smmu-device.js';
import type { DmaDone, DmaRequest } from '../hw/dma.js';
import { boot, run } from '../scenarios/lib/lab.js';
import { SMMU_V2_LAB as L, deviceOf, kernelPage, masterOf, smmuV2Machine } from '../scenarios/smmu-v2-lab.js';
import { throughput, throughputAsync, type Bench } from './harness.js';

const RW = IOMMU_READ | IOMMU_WRITE;

async function translateHit(): Promise<number> {
  const machine = smmuV2Machine({ seed: 1 });
  const kernel = await boot(machine);
  const dev = deviceOf(kernel, L.masterNoStall);
  const domain = iommuPagingDomainAlloc(dev);
  await run(machine, iommuAttachDevice(domain, dev));
  await run(machine, iommuMap(domain, 0x10_0000, kernelPage(kernel), 0x1000, RW));
  const master = masterOf(machine, L.masterNoStall);
  const port = master.port;
  const req: DmaRequest = {
    master: L.masterNoStall,
    streamId: L.sidNoStall,
    ssid: 0,
    ssidValid: false,
    addr: 0x10_0040,
    len: 8,
    write: true,
    exec: false,
    priv: false,
    data: new Uint8Array(8),
  };
  let ok = 0;
  const done: DmaDone = (c) => {
    if (c.status === 'ok') ok++;
  };
  const value = throughput((n) => {
    for (let i = 0; i < n; i++) port.submit(req, done);
  });
  if (ok === 0) throw new Error('v2.translate_hit: no transaction completed');
  return value;
}

const STALL_MASTERS = 8;

async function stallRoundtrip(): Promise<number> {
  const extra = Array.from({ length: STALL_MASTERS }, (_, i) => ({ path: `/dma@d0${i}0000`, cells: [0x500 + i, 0], stall: true }));
  // Identity default domains keep the banks free for the eight faulting domains.
  const machine = smmuV2Machine({ seed: 1, extraMasters: extra, contextInterrupts: 16, bootargs: 'iommu.passthrough=1' });
  const kernel = await boot(machine);
  const smmu = deviceOf(kernel, L.smmuPath).driverData;
  if (!(smmu instanceof ArmSmmuDevice)) throw new Error('v2.stall_roundtrip: the SMMU did not probe');
  const pa = kernelPage(kernel);
  const rigs = await Promise.all(
    extra.map(async (m) => {
      const dev = deviceOf(kernel, m.path);
      const domain = iommuPagingDomainAlloc(dev);
      await run(machine, iommuAttachDevice(domain, dev));
      // The handler maps the faulting page and asks for a retry.
      iommuSetFaultHandler(domain, async (d, _dev, iova) => {
        await iommuMap(d, iova - (iova % 0x1000), pa, 0x1000, RW);
        return 'EAGAIN' as const;
      });
      return { master: masterOf(machine, m.path), next: 0x100_0000 };
    }),
  );
  const data = Uint8Array.of(1, 2, 3, 4);
  const before = armSmmuFaultStats(smmu).retried;
  let failures = 0;
  const body = async (n: number): Promise<void> => {
    const loops = rigs.map(async (r, k) => {
      const per = Math.floor(n / STALL_MASTERS) + (k < n % STALL_MASTERS ? 1 : 0);
      for (let i = 0; i < per; i++) {
        const iova = r.next;
        r.next += 0x1000;
        const c = await r.master.write(iova, data);
        if (c.status !== 'ok') failures++;
      }
    });
    await run(machine, Promise.all(loops), 'stall roundtrips');
  };
  // The whole fault path (driver, workqueue, io-pgtable, model) needs a few thousand round trips before
  // the JIT settles; without them a busy machine lets a cold batch reach the timed minimum first and
  // the figure swings tenfold from run to run.
  await body(8000);
  const value = await throughputAsync(body, 1);
  if (failures > 0) throw new Error(`v2.stall_roundtrip: ${failures} stalled writes did not complete ok`);
  if (armSmmuFaultStats(smmu).retried - before === 0) throw new Error('v2.stall_roundtrip: no fault was retried');
  return value;
}

async function mapUnmapStrict(): Promise<number> {
  const machine = smmuV2Machine({ seed: 1 });
  const kernel = await boot(machine);
  const dev = deviceOf(kernel, L.masterNoStall);
  const domain = iommuPagingDomainAlloc(dev);
  await run(machine, iommuAttachDevice(domain, dev));
  const pa = kernelPage(kernel);
  const pairs = (n: number): Promise<void> =>
    run(machine, (async () => {
      for (let i = 0; i < n; i++) {
        await iommuMap(domain, 0x20_0000, pa, 0x1000, RW);
        if ((await iommuUnmap(domain, 0x20_0000, 0x1000)) !== 0x1000) throw new Error('v2.map_unmap_strict: unmap failed');
      }
    })());
  await pairs(5_000);
  return throughputAsync(pairs);
}

export const benches: readonly Bench[] = [
  { name: 'v2.translate_hit', unit: 'transactions/s', run: translateHit },
  { name: 'v2.stall_roundtrip', unit: 'faults/s', run: stallRoundtrip },
  { name: 'v2.map_unmap_strict', unit: 'pairs/s', run: mapUnmapStrict },
];
