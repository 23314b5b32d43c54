/**
 * Teardown with a stall pending on the SMMUv3: no transaction is left held by the SMMU once its domain
 * or its kernel is gone, and no handler of a freed domain is ever called.
 */
import { describe, expect, it } from 'vitest';
import { devFaultParam } from '../../../core/io-pgfault.js';
import { iommuAttachDevice, iommuDetachDevice } from '../../../core/iommu-attach.js';
import { IOMMU_HWPT_ALLOC_PASID, iommuDomainFree, iommuPagingDomainAlloc, iommuPagingDomainAllocFlags, iommuSetFaultHandler } from '../../../core/iommu-domain.js';
import { iommuUserFaultQueueForDomain } from '../../../core/iommu-fault-legacy.js';
import { iommuAttachDevicePasid, iommuDetachDevicePasid } from '../../../core/iommu-pasid.js';
import type { DmaCompletion } from '../../../hw/dma.js';
import { bootSmmuV3, deviceOf, runIn, settle, V3 } from '../../../scenarios/smmu-v3-lab.js';
import { enableIopf, readFaultRecords } from '../../../scenarios/sva-lab.js';

function submit(lab: Awaited<ReturnType<typeof bootSmmuV3>>, addr: number, ssid?: number): { c: DmaCompletion | null } {
  const out: { c: DmaCompletion | null } = { c: null };
  const m = lab.machine.masters.get(V3.stallEngine)!;
  m.submitWrite(addr, Uint8Array.of(0xee), ssid === undefined ? {} : { ssid }, (c) => (out.c = c));
  return out;
}

describe('SMMUv3 teardown with a stall pending', () => {
  it('detach + free of a domain whose faults go to an unserved user fault queue answers its outstanding faults', async () => {
    const lab = await bootSmmuV3({ seed: 11 });
    const dev = deviceOf(lab, V3.stallEngine);
    await enableIopf(lab, dev, { iopfOnly: true });
    const dom = iommuPagingDomainAllocFlags(dev, IOMMU_HWPT_ALLOC_PASID);
    const q = iommuUserFaultQueueForDomain(dom);
    await runIn(lab, iommuAttachDevicePasid(dom, dev, 3), 'attach PASID 3');
    const t = submit(lab, 0x5000_0000, 3);
    await settle(lab);
    expect(readFaultRecords(q)).toHaveLength(1);
    expect(lab.model.stalls.count).toBe(1);
    expect(devFaultParam(dev)!.pending.size).toBe(1);
    await runIn(lab, iommuDetachDevicePasid(dom, dev, 3), 'detach PASID 3');
    await runIn(lab, iommuDomainFree(dom), 'free');
    await settle(lab);
    expect(devFaultParam(dev)!.pending.size).toBe(0);
    expect(lab.model.stalls.count).toBe(0);
    expect(t.c?.status).toBeDefined();
    expect(t.c!.status).not.toBe('ok');
  });

  it('shutdown_policy=ste-abort terminates a stall whose handler never answers (SMMUEN stays 1)', async () => {
    const lab = await bootSmmuV3({ seed: 12, bootargs: 'arm-smmu-v3.shutdown_policy=ste-abort' });
    const dev = deviceOf(lab, V3.stallEngine);
    const dom = iommuPagingDomainAlloc(dev);
    await runIn(lab, iommuAttachDevice(dom, dev), 'attach');
    let calls = 0;
    iommuSetFaultHandler(dom, async () => {
      calls++;
      await new Promise<void>(() => undefined);
      return 0 as const;
    });
    const t = submit(lab, 0x6000_0000);
    await settle(lab);
    expect(calls).toBe(1);
    expect(lab.model.stalls.count).toBe(1);
    await runIn(lab, lab.kernel.shutdown(), 'shutdown');
    await settle(lab);
    expect(lab.model.stalls.count).toBe(0);
    expect(t.c?.status).toBeDefined();
    expect(t.c!.status).not.toBe('ok');
  });

  it('detach + free of a domain whose fault handler never answers ends its stalls (CMD_RESUME abort)', async () => {
    const lab = await bootSmmuV3({ seed: 14 });
    const dev = deviceOf(lab, V3.stallEngine);
    const dom = iommuPagingDomainAlloc(dev);
    await runIn(lab, iommuAttachDevice(dom, dev), 'attach');
    iommuSetFaultHandler(dom, async () => {
      await new Promise<void>(() => undefined);
      return 0 as const;
    });
    const ts = [submit(lab, 0x6000_0000), submit(lab, 0x6000_1000), submit(lab, 0x6000_2000)];
    await settle(lab);
    expect(lab.model.stalls.count).toBe(3);
    await runIn(lab, iommuDetachDevice(dom, dev), 'detach');
    await runIn(lab, iommuDomainFree(dom), 'free');
    await settle(lab);
    expect(lab.model.stalls.count).toBe(0);
    for (const t of ts) expect(t.c?.status).toBe('abort');
  });

  it('freeing a still-attached domain warns, and its fault handler is never called again', async () => {
    const lab = await bootSmmuV3({ seed: 13 });
    const dev = deviceOf(lab, V3.stallEngine);
    const dom = iommuPagingDomainAlloc(dev);
    await runIn(lab, iommuAttachDevice(dom, dev), 'attach');
    let calls = 0;
    iommuSetFaultHandler(dom, () => {
      calls++;
      return 'EIO';
    });
    const first = submit(lab, 0x6000_0000);
    await settle(lab);
    expect(calls).toBe(1);
    expect(first.c?.status).toBeDefined();
    let threw: unknown = null;
    try {
      await runIn(lab, iommuDomainFree(dom), 'free attached');
    } catch (e) {
      threw = e;
    }
    const warned = lab.kernel.log.lines('warn').some((l) => /still attached/.test(l.message));
    expect(threw !== null || warned).toBe(true);
    const after = submit(lab, 0x6000_1000);
    await settle(lab);
    expect(calls).toBe(1);
    expect(after.c?.status).toBeDefined();
    expect(after.c!.status).not.toBe('ok');
    expect(lab.model.stalls.count).toBe(0);
  });
});
