/**
 * smmu-v2-stall: stall as the 2017 stall thread converged on it. Firmware says which masters can
 * stall (`dma-can-stall`); the driver sets SCTLR.CFCFG only for banks whose every master can, and
 * refuses to put a master that cannot stall on a stalling bank. A stalled fault goes to the domain's
 * fault handler on the driver's workqueue; the handler may look at the frozen master, then its
 * verdict becomes RESUME (after FSR is cleared) by the kernel's rule: EAGAIN retries (the handler
 * mapped the page, the bytes land); 0 ("handled", e.g. a handler that only records the fault) and
 * any other errno terminate (the master sees an error, the handler ran once). With HUPCF a second
 * master on the bank keeps going while the first is stalled; without it, it waits for the RESUME.
 */
import type { Device } from '../bus/device.js';
import { iommuAttachDevice } from '../core/iommu-attach.js';
import { iommuPagingDomainAlloc, iommuSetFaultHandler, type IommuDomain } from '../core/iommu-domain.js';
import { iommuMap } from '../core/iommu-map.js';
import { IOMMU_READ, IOMMU_WRITE } from '../core/io-pgtable.js';
import { armSmmuDomainContextBank, armSmmuDomainSetHupcf } from '../drivers/arm-smmu/arm-smmu-domain.js';
import { armSmmuFaultStats } from '../drivers/arm-smmu/arm-smmu-fault.js';
import type { DmaCompletion } from '../hw/dma.js';
import type { Machine } from '../hw/machine.js';
import type { Kernel } from '../kernel/kernel.js';
import { boot, run } from './lib/lab.js';
import { Checks, type Scenario } from './scenario.js';
import { SMMU_V2_LAB as L, cbReg, deviceOf, kernelPage, masterOf, smmuV2Machine } from './smmu-v2-lab.js';

const SCTLR_CFCFG = 1 << 7;
const RW = IOMMU_READ | IOMMU_WRITE;

async function fresh(seed: number): Promise<{ machine: Machine; kernel: Kernel }> {
  const machine = smmuV2Machine({ seed });
  return { machine, kernel: await boot(machine) };
}

async function attach(machine: Machine, kernel: Kernel, path: string, domain?: IommuDomain): Promise<IommuDomain> {
  const dev: Device = deviceOf(kernel, path);
  const d = domain ?? iommuPagingDomainAlloc(dev);
  await run(machine, iommuAttachDevice(d, dev));
  return d;
}

/** HUPCF experiment: master A stalls, master B writes a mapped page of the same bank meanwhile. */
async function hupcf(seed: number, on: boolean): Promise<{ bDoneBeforeResume: boolean; bOk: boolean }> {
  const { machine, kernel } = await fresh(seed);
  const domain = await attach(machine, kernel, L.masterA);
  await attach(machine, kernel, L.masterB, domain);
  armSmmuDomainSetHupcf(domain, on);
  await run(machine, iommuMap(domain, 0x20_0000, kernelPage(kernel), 0x1000, RW));
  const paA = kernelPage(kernel);
  let bDone: DmaCompletion | null = null;
  let bDoneBeforeResume = false;
  iommuSetFaultHandler(domain, async (d, _dev, iova) => {
    masterOf(machine, L.masterB).submitWrite(0x20_0000, Uint8Array.of(0xbb), {}, (c) => (bDone = c));
    await machine.cpu.delay(20_000);
    bDoneBeforeResume = bDone !== null;
    await iommuMap(d, iova - (iova % 0x1000), paA, 0x1000, RW);
    return 'EAGAIN' as const;
  });
  await run(machine, masterOf(machine, L.masterA).write(0x30_0000, Uint8Array.of(0xaa)));
  await run(machine, machine.cpu.delay(20_000));
  return { bDoneBeforeResume, bOk: (bDone as DmaCompletion | null)?.status === 'ok' };
}

export const scenario: Scenario = {
  name: 'smmu-v2-stall',
  shows: 'stalled faults resumed by retry (handler maps the page, EAGAIN) or terminated (0 or an errno); HUPCF on/off; stall only for stall-capable masters',
  async run(ctx) {
    const c = new Checks();

    // Retry after the handler maps the page.
    const r = await fresh(ctx.seed);
    let handlerSawStalled = false;
    let retryStatus = '';
    const domain = await attach(r.machine, r.kernel, L.masterA);
    const cb = armSmmuDomainContextBank(domain);
    c.equal('bank of a stall-capable master has SCTLR.CFCFG', cbReg(r.machine, cb, 0) & SCTLR_CFCFG, SCTLR_CFCFG);
    const pa = kernelPage(r.kernel);
    iommuSetFaultHandler(domain, async (d, _dev, iova) => {
      // Dump the frozen state: the master's transaction is held by the SMMU.
      handlerSawStalled = masterOf(r.machine, L.masterA).stats.outstanding === 1 && (cbReg(r.machine, cb, 0x58) >>> 30) === 1;
      await iommuMap(d, iova - (iova % 0x1000), pa, 0x1000, RW);
      return 'EAGAIN' as const;
    });
    const w = await run(r.machine, masterOf(r.machine, L.masterA).write(0x7_7100, Uint8Array.of(1, 2, 3, 4)));
    retryStatus = w.status;
    c.ok('the handler ran while the master was stalled (FSR.SS, one transaction outstanding)', handlerSawStalled);
    c.equal('retry: the stalled write completes', w.status, 'ok');
    c.equal('retry: the bytes land in the page the handler mapped', [...r.machine.memory.read(pa + 0x100, 4)], [1, 2, 3, 4]);

    // Terminate.
    const domainB = await attach(r.machine, r.kernel, L.masterB);
    iommuSetFaultHandler(domainB, () => 'EFAULT');
    const t = await run(r.machine, masterOf(r.machine, L.masterB).read(0x9_9000, 4));
    c.equal('terminate: the master sees an error', t.status, 'terminated');

    // A handler that only records the fault and says "handled" (0): called once, terminated.
    const recorded: number[] = [];
    domainB.cookie = { type: 'none' };
    iommuSetFaultHandler(domainB, (_d, _dev, iova) => {
      recorded.push(iova);
      return 0;
    });
    const rep = await run(r.machine, masterOf(r.machine, L.masterB).write(0x9_a000, Uint8Array.of(9)));
    await run(r.machine, r.machine.cpu.delay(20_000));
    c.equal('handled (0): the master sees its transaction terminated', rep.status, 'terminated');
    c.equal('handled (0): the handler ran once for the fault', recorded, [0x9_a000]);
    const st = armSmmuFaultStats(deviceOf(r.kernel, L.smmuPath).driverData as Parameters<typeof armSmmuFaultStats>[0]);
    c.equal('three stalls: one retried, two terminated', [st.stalls, st.retried, st.terminated], [3, 1, 2]);

    // The stall rule.
    const refusal = await run(r.machine, iommuAttachDevice(domain, deviceOf(r.kernel, L.masterNoStall))).then(
      () => 'attached',
      (e: unknown) => String(e),
    );
    c.ok('a master that cannot stall is refused on a stalling bank (EINVAL)', refusal.includes('EINVAL') && refusal.includes('cannot stall'), refusal);
    const noStall = await attach(r.machine, r.kernel, L.masterNoStall);
    c.equal('bank of a master that cannot stall has no CFCFG', cbReg(r.machine, armSmmuDomainContextBank(noStall), 0) & SCTLR_CFCFG, 0);

    const on = await hupcf(ctx.seed, true);
    const off = await hupcf(ctx.seed, false);
    c.ok('HUPCF=1: the second master proceeds while the first is stalled', on.bDoneBeforeResume && on.bOk);
    c.ok('HUPCF=0: the second master waits for the RESUME, then completes', !off.bDoneBeforeResume && off.bOk);
    return c.result({
      'retry outcome': retryStatus,
      'HUPCF=1 second master before resume': on.bDoneBeforeResume,
      'HUPCF=0 second master before resume': off.bDoneBeforeResume,
    });
  },
};
