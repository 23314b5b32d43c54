/**
 * Teardown campaign: a random stall storm on a stall-capable master, then a random teardown under a
 * random policy. Judged: zero transactions stalled forever (every one completes within a bounded
 * virtual time after the teardown), zero fault-handler calls after the handler's domain or kernel is
 * gone, and every transaction's outcome accounted (ok before the teardown, or a visible failure).
 *
 * SMMUs: MMU-500 (policies bypass, abort-unmatched, abort-all, translate) and SMMUv3 (disable,
 * gbpa-abort, ste-abort). Teardowns: kernel shutdown, kexec, kdump (no shutdown), detach + free,
 * unbind of the master's driver then detach + free, removal of the master device then free, and
 * (the master's faults going to an I/O page-fault queue nobody serves) detach + IOPF disable + free.
 * On the SMMUv3 every teardown also runs with the IOPF path (a PASID domain whose user fault queue is
 * never read): zero groups queued to it after the teardown.
 */
import { iommuAttachDevice, iommuDetachDevice } from '../../core/iommu-attach.js';
import { IOMMU_HWPT_ALLOC_PASID, iommuDomainFree, iommuPagingDomainAlloc, iommuPagingDomainAllocFlags, iommuSetFaultHandler } from '../../core/iommu-domain.js';
import { iommuUserFaultQueueForDomain, type IommuUserFaultQueue } from '../../core/iommu-fault-legacy.js';
import { iommuAttachDevicePasid, iommuDetachDevicePasid } from '../../core/iommu-pasid.js';
import { iommuDevDisableFeature, iommuDevEnableFeature } from '../../core/iommu.js';
import type { DmaCompletion } from '../../hw/dma.js';
import { Prng } from '../../hw/prng.js';
import { kexec } from '../../kernel/kexec.js';
import { boot, virtMachine } from '../../scenarios/lib/lab.js';
import { SMMU_V2_LAB, smmuV2Machine } from '../../scenarios/smmu-v2-lab.js';
import { CampaignFailure } from './campaign.js';

export const TEARDOWNS = ['shutdown', 'kexec', 'kdump', 'detach-free', 'unbind', 'remove', 'iopf-disable'] as const;
export type Teardown = (typeof TEARDOWNS)[number];
export const POLICIES = {
  'mmu-500': ['bypass', 'abort-unmatched', 'abort-all', 'translate'],
  'smmu-v3': ['disable', 'gbpa-abort', 'ste-abort'],
} as const;
export type TeardownSmmu = keyof typeof POLICIES;

export interface TeardownStats {
  transactions: number;
  ok: number;
  failed: number;
  handlerCalls: number;
}

/** One case: `storm` transactions into unmapped pages, a handler of random behaviour, a teardown. */
export async function teardownCase(smmu: TeardownSmmu, teardown: Teardown, policy: string, seed: number, storm: number): Promise<TeardownStats> {
  const prng = new Prng(seed);
  const param = smmu === 'mmu-500' ? `arm-smmu.shutdown_policy=${policy}` : `arm-smmu-v3.shutdown_policy=${policy}`;
  const machine = smmu === 'mmu-500' ? smmuV2Machine({ seed, bootargs: param }) : virtMachine({ seed, bootargs: param });
  const path = smmu === 'mmu-500' ? SMMU_V2_LAB.masterA : '/dma@c000000';
  const kernel = await boot(machine);
  const runK = <T>(p: Promise<T>): Promise<T> => machine.scheduler.runUntilSettled(p, `teardown ${teardown}`, 1e12);
  const dev = kernel.core.findDevice(path)!;
  const master = machine.masters.get(path)!;
  // The IOPF path: always for iopf-disable, half the time otherwise, on the SMMUv3 only.
  const iopf = smmu === 'smmu-v3' && (teardown === 'iopf-disable' || prng.int(2) === 0);
  const PASID = 3;
  const domain = iopf ? iommuPagingDomainAllocFlags(dev, IOMMU_HWPT_ALLOC_PASID) : iommuPagingDomainAlloc(dev);
  let queue: IommuUserFaultQueue | null = null;
  if (iopf) {
    await runK(iommuDevEnableFeature(dev, 'IOPF'));
    queue = iommuUserFaultQueueForDomain(domain);
    await runK(iommuAttachDevicePasid(domain, dev, PASID));
  } else {
    await runK(iommuAttachDevice(domain, dev));
  }
  const detach = (): Promise<void> => (iopf ? iommuDetachDevicePasid(domain, dev, PASID) : iommuDetachDevice(domain, dev));
  // The handler: never answers, answers after a while, or answers at once (0 terminates or retries
  // depending on the driver's convention; EIO terminates).
  const mode = prng.int(3);
  let unregistered = false;
  let callsAfter = 0;
  let calls = 0;
  if (!iopf) iommuSetFaultHandler(domain, async () => {
    calls++;
    if (unregistered) callsAfter++;
    if (mode === 0) await new Promise<void>(() => undefined);
    if (mode === 1) await machine.cpu.delay(1 + prng.int(200_000));
    return 'EIO' as const;
  });
  const done: (DmaCompletion | null)[] = [];
  for (let i = 0; i < storm; i++) {
    const k = done.length;
    done.push(null);
    const addr = 0x10_0000 + prng.int(64) * 0x1000;
    const o = iopf ? { ssid: PASID } : {};
    if (prng.int(2)) master.submitWrite(addr, Uint8Array.of(k & 0xff), o, (c) => (done[k] = c));
    else master.submitRead(addr, 4, o, (c) => (done[k] = c));
  }
  await machine.scheduler.runFor(prng.int(100_000));
  const input = { smmu, teardown, policy, seed, storm, mode, iopf };
  const fail = (msg: string): never => {
    throw new CampaignFailure(`${smmu} ${teardown} (${policy}): ${msg}`, input);
  };
  // The handler is unregistered when its kernel stops (shutdown, kexec, kdump), when the device left
  // its domain (detach), or when the domain is freed (remove, where nobody detaches).
  switch (teardown) {
    case 'shutdown':
    case 'kexec':
    case 'kdump':
      unregistered = true;
      break;
    default:
  }
  switch (teardown) {
    case 'shutdown':
      await runK(kernel.shutdown());
      break;
    case 'kexec':
      await runK(kexec(machine, { cmdline: param }));
      break;
    case 'kdump':
      await runK(kexec(machine, { cmdline: param, skipShutdown: true }));
      break;
    case 'detach-free':
      await runK(detach());
      unregistered = true;
      await runK(iommuDomainFree(domain));
      break;
    case 'unbind':
      if (dev.driver) await runK(kernel.core.unbind(dev));
      await runK(detach());
      unregistered = true;
      await runK(iommuDomainFree(domain));
      break;
    case 'remove':
      await runK(kernel.core.removeDevice(dev));
      await runK(iommuDomainFree(domain));
      unregistered = true;
      break;
    case 'iopf-disable':
      await runK(detach());
      unregistered = true;
      if (iopf) await runK(iommuDevDisableFeature(dev, 'IOPF'));
      await runK(iommuDomainFree(domain));
      break;
  }
  const queuedAtTeardown = queue?.stats.queued ?? 0;
  unregistered = true;
  await machine.scheduler.runFor(50_000_000);
  if (queue && queue.stats.queued > queuedAtTeardown) fail(`${queue.stats.queued - queuedAtTeardown} fault group(s) queued to the user fault queue after its domain was gone`);
  const stats: TeardownStats = { transactions: storm, ok: 0, failed: 0, handlerCalls: calls };
  const pending = done.filter((c) => c === null).length;
  if (pending > 0) fail(`${pending} of ${storm} transactions still stalled 50 ms after the teardown`);
  if (callsAfter > 0) fail(`the fault handler was called ${callsAfter} time(s) after its domain/kernel was gone`);
  for (const c of done) {
    if (c!.status === 'ok') stats.ok++;
    else stats.failed++;
  }
  // Nothing was ever mapped: no transaction may have succeeded through a translation.
  if (stats.ok > 0 && !(teardown !== 'detach-free' && smmu === 'mmu-500' && policy === 'bypass')) {
    fail(`${stats.ok} transaction(s) into unmapped pages completed OK`);
  }
  return stats;
}
