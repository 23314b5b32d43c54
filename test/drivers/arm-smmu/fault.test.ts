/**
 * Context and global faults through the driver: what the SMMU latches (FSR, FAR, FSYNR0,
 * CBFRSYNRA) and that the interrupt clears FSR of a fault that did not stall, the readable report of
 * an unhandled fault, stalled faults answered from the workqueue by the handler's result (only
 * EAGAIN retries: the handler maps the page, the bytes land; 0 "handled" and errnos terminate, the
 * handler called once), the Adreno flavour, the frozen master while the handler runs, HUPCF with a
 * second master on the bank (a slow handler in terminate mode does not stop it), the storm guard,
 * the stall rule on attach, the page-response path, unmatched streams.
 */
import { describe, expect, it } from 'vitest';
import { iommuAttachDevice } from '../../../core/iommu-attach.js';
import { iommuSetFaultHandler, IOMMU_FAULT_WRITE, type IommuDomain } from '../../../core/iommu-domain.js';
import { devIommuOps } from '../../../core/iommu-device.js';
import { IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE, IOMMU_FAULT_PERM_WRITE, IOMMU_PAGE_RESP_INVALID, IOMMU_PAGE_RESP_SUCCESS, type IommuFaultRecord } from '../../../core/iommu-fault-types.js';
import { iopfGroupResponse } from '../../../core/io-pgfault.js';
import { iommuPageResponse, iommuRegisterDeviceFaultHandler, IOMMU_PAGE_RESP_VERSION_1 } from '../../../core/iommu-fault-legacy.js';
import { iommuDevEnableFeature } from '../../../core/iommu-sva.js';
import { iommuMap } from '../../../core/iommu-map.js';
import type { SmmuV2 } from '../../../hw/smmu-v2/index.js';
import type { Device } from '../../../bus/device.js';
import { armSmmuDomainContextBank, armSmmuDomainSetHupcf } from '../../../drivers/arm-smmu/arm-smmu-domain.js';
import { armSmmuFaultStats } from '../../../drivers/arm-smmu/arm-smmu-fault.js';
import type { DmaCompletion } from '../../../hw/dma.js';
import { attachNew, rig, bytes, L, map, type Rig } from './rig.js';
import { expectErrno } from '../../lib/errno.js';

const FSR = 0x58;
const FAR = 0x60;
const FSYNR0 = 0x68;
const SCTLR = 0;
const FSR_TF = 1 << 1;
const FSR_SS = 1 << 30;
const FSR_FORMAT_AARCH64 = 2 << 9;
const FSYNR0_WNR = 1 << 4;
const FSYNR0_NSATTR = 1 << 8;
const SCTLR_CFCFG = 1 << 7;
const SCTLR_HUPCF = 1 << 8;

/** Start a DMA write and collect its completion (without waiting). */
function startWrite(b: Rig, path: string, iova: number, data: Uint8Array): { done: DmaCompletion | null; at: number } {
  const rec: { done: DmaCompletion | null; at: number } = { done: null, at: -1 };
  b.master(path).submitWrite(iova, data, {}, (c) => {
    rec.done = c;
    rec.at = b.machine.scheduler.now;
  });
  return rec;
}

function model(b: Rig): SmmuV2 {
  return b.machine.iommus.get(L.smmuPath)!.instance!.mmio[0].device as SmmuV2;
}

async function settle(b: Rig, ns = 100_000): Promise<void> {
  await b.run(b.machine.cpu.delay(ns));
}

const fsrWatch = new WeakMap<Rig, { addr: number; values: number[] }>();

/** Record the values the driver writes to context bank `cbndx`'s FSR from now on. */
function watchFsrWrites(b: Rig, cbndx: number): void {
  const addr = L.smmu + ((b.smmu.numpage + cbndx) << b.smmu.pgshift) + FSR;
  const w = { addr, values: [] as number[] };
  fsrWatch.set(b, w);
  b.machine.trace.subscribe((e) => {
    if (e.kind === 'mmio' && e.op === 'write' && e.pa === w.addr) w.values.push(Number(e.value));
  });
}

function fsrWrites(b: Rig, cbndx: number): number[] {
  const w = fsrWatch.get(b);
  if (!w || w.addr !== L.smmu + ((b.smmu.numpage + cbndx) << b.smmu.pgshift) + FSR) throw new Error('watchFsrWrites first');
  return w.values;
}

describe('arm-smmu context faults', () => {
  it('latches FSR/FAR/FSYNR0/CBFRSYNRA for a terminate-mode fault; the interrupt clears FSR before the handler runs', async () => {
    const b = await rig();
    const domain = await attachNew(b, L.masterNoStall);
    const cbndx = armSmmuDomainContextBank(domain);
    await map(b, domain, 0x4000, b.page());
    watchFsrWrites(b, cbndx);
    const seen: { fsr: number; far: number; fsynr0: number; cbfrsynra: number; iova: number; flags: number; dev: string | null }[] = [];
    iommuSetFaultHandler(domain, (_d, dev, iova, flags) => {
      seen.push({
        fsr: b.cb(cbndx, FSR),
        far: b.cb(cbndx, FAR),
        fsynr0: b.cb(cbndx, FSYNR0),
        cbfrsynra: b.reg(0x1000 + 0x400 + 4 * cbndx),
        iova,
        flags,
        dev: dev?.name ?? null,
      });
      return 0 as const;
    });
    const c = await b.run(b.master(L.masterNoStall).write(0x5008, bytes(1)));
    expect(c.status).toBe('fault');
    await settle(b);
    expect(seen).toHaveLength(1);
    const s = seen[0];
    // Nothing waits on a RESUME: FSR was cleared in the interrupt (with the value read, TF and FORMAT).
    expect(s.fsr).toBe(0);
    expect(fsrWrites(b, cbndx)).toEqual([FSR_TF | FSR_FORMAT_AARCH64]);
    expect(s.far).toBe(0x5008);
    expect(s.fsynr0 & 3).toBe(3); // the level 3 table exists (0x4000 is mapped): the fault is at level 3
    expect(s.fsynr0 & FSYNR0_WNR).toBe(FSYNR0_WNR);
    expect(s.fsynr0 & FSYNR0_NSATTR).toBe(FSYNR0_NSATTR);
    expect(s.cbfrsynra & 0xffff).toBe(L.sidNoStall);
    expect(s.iova).toBe(0x5008);
    expect(s.flags).toBe(IOMMU_FAULT_WRITE);
    expect(s.dev).toBe(L.masterNoStall);
    expect(b.cb(cbndx, FSR)).toBe(0);
  });

  it('reports an unhandled fault readably (rate limited) and terminates it', async () => {
    const b = await rig();
    const domain = await attachNew(b, L.masterNoStall);
    const cbndx = armSmmuDomainContextBank(domain);
    expect((await b.run(b.master(L.masterNoStall).read(0x9_0000, 4))).status).toBe('fault');
    await settle(b);
    const lines = b.kernel.log.lines('err').map((e) => e.message);
    expect(lines).toContain(`Unhandled context fault: fsr=0x402, iova=0x00090000, fsynr=0x100, cbfrsynra=0x402, cb=${cbndx} (${L.masterNoStall})`);
    expect(lines).toContain('FSR    = 00000402 [TF Format=2]');
    expect(lines.some((l) => l.startsWith('FSYNR0 = 00000100 [S1CBNDX=0 NSATTR PLVL=0]'))).toBe(true);
    expect(armSmmuFaultStats(b.smmu).unhandled).toBe(1);
    expect(b.cb(cbndx, FSR)).toBe(0);
  });

  it('retries a stalled transaction after the handler maps the page: the bytes land', async () => {
    const b = await rig();
    const domain = await attachNew(b, L.masterA);
    const cbndx = armSmmuDomainContextBank(domain);
    expect(b.cb(cbndx, SCTLR) & SCTLR_CFCFG).toBe(SCTLR_CFCFG);
    const pa = b.page();
    let fsrInHandler = 0;
    let outstanding = -1;
    iommuSetFaultHandler(domain, async (d, _dev, iova) => {
      fsrInHandler = b.cb(cbndx, FSR);
      // The master is frozen on its stalled transaction while we look at it.
      outstanding = b.master(L.masterA).stats.outstanding;
      await b.machine.cpu.delay(5_000);
      await (await import('../../../core/iommu-map.js')).iommuMap(d, iova & ~0xfff, pa, 0x1000, 3);
      return 'EAGAIN' as const;
    });
    const c = await b.run(b.master(L.masterA).write(0x7_7070, bytes(5, 6, 7)));
    expect(c.status).toBe('ok');
    expect([...b.machine.memory.read(pa + 0x070, 3)]).toEqual([5, 6, 7]);
    expect(fsrInHandler & (FSR_TF | FSR_SS)).toBe(FSR_TF | FSR_SS);
    expect(outstanding).toBe(1);
    const st = armSmmuFaultStats(b.smmu);
    expect(st.stalls).toBe(1);
    expect(st.retried).toBe(1);
    expect(b.cb(cbndx, FSR)).toBe(0);
  });

  it('runs the fault handler on the workqueue after the interrupt handler has returned', async () => {
    const b = await rig();
    const domain = await attachNew(b, L.masterA);
    const cbndx = armSmmuDomainContextBank(domain);
    const label = `arm-smmu cb${cbndx} context fault`;
    const rec = b.machine.trace.record(['irq', 'work']);
    let seenInHandler: string[] = [];
    iommuSetFaultHandler(domain, () => {
      seenInHandler = rec.events.map((e) => (e.kind === 'work' ? `${e.label} ${e.phase}` : 'irq'));
      return 'EFAULT' as const;
    });
    expect((await b.run(b.master(L.masterA).write(0x7_7000, bytes(1)))).status).toBe('terminated');
    rec.stop();
    // The context interrupt only queued the work; the handler ran in the work item, once started.
    expect(seenInHandler).toEqual(['irq', `${label} queued`, `${label} start`]);
    const all = rec.events.map((e) => (e.kind === 'work' ? `${e.label} ${e.phase}` : 'irq'));
    expect(all.slice(0, 4)).toEqual(['irq', `${label} queued`, `${label} start`, `${label} end`]);
  });

  it('terminates a stalled transaction the handler refuses: the master sees an error', async () => {
    const b = await rig();
    const domain = await attachNew(b, L.masterA);
    iommuSetFaultHandler(domain, () => 'EFAULT');
    const c = await b.run(b.master(L.masterA).write(0x7_7000, bytes(1)));
    expect(c.status).toBe('terminated');
    expect(armSmmuFaultStats(b.smmu).terminated).toBe(1);
    expect(armSmmuFaultStats(b.smmu).retried).toBe(0);
  });

  it('terminates a stalled transaction nobody handles', async () => {
    const b = await rig();
    await attachNew(b, L.masterA);
    const c = await b.run(b.master(L.masterA).read(0x7_7000, 4));
    expect(c.status).toBe('terminated');
    expect(armSmmuFaultStats(b.smmu).unhandled).toBe(1);
  });

  it('a handler that reports the stall and returns 0 ("handled") is called once; the transaction is terminated, not retried', async () => {
    const b = await rig();
    const domain = await attachNew(b, L.masterA);
    const cbndx = armSmmuDomainContextBank(domain);
    const calls: number[] = [];
    iommuSetFaultHandler(domain, (_d, _dev, iova) => {
      calls.push(iova);
      return 0 as const;
    });
    const c = await b.run(b.master(L.masterA).write(0x7_8000, bytes(1)));
    await settle(b);
    expect(c.status).toBe('terminated');
    expect(calls).toEqual([0x7_8000]);
    expect(model(b).stats.resumesAccepted).toBe(1);
    const st = armSmmuFaultStats(b.smmu);
    expect({ stalls: st.stalls, retried: st.retried, terminated: st.terminated }).toEqual({ stalls: 1, retried: 0, terminated: 1 });
    expect(b.cb(cbndx, FSR)).toBe(0);
    expect(b.master(L.masterA).stats.outstanding).toBe(0);
  });

  it('handler results on a stalled fault: only EAGAIN retries; 0, EFAULT, EBUSY and ENOSYS (no handler) terminate', async () => {
    const outcome: Record<string, { status: string; calls: number; retried: number; terminated: number }> = {};
    for (const ret of ['EAGAIN', 0, 'EFAULT', 'EBUSY', null] as const) {
      const b = await rig();
      const domain = await attachNew(b, L.masterA);
      const pa = b.page();
      let calls = 0;
      if (ret !== null) {
        iommuSetFaultHandler(domain, async (d, _dev, iova) => {
          calls++;
          // Every handler maps the page: only the verdict decides whether the write is replayed.
          await (await import('../../../core/iommu-map.js')).iommuMap(d, iova & ~0xfff, pa, 0x1000, 3);
          return ret;
        });
      }
      const c = await b.run(b.master(L.masterA).write(0x7_9000, bytes(0x5a)));
      await settle(b);
      const st = armSmmuFaultStats(b.smmu);
      outcome[String(ret ?? 'no handler')] = { status: c.status, calls, retried: st.retried, terminated: st.terminated };
    }
    expect(outcome).toEqual({
      EAGAIN: { status: 'ok', calls: 1, retried: 1, terminated: 0 },
      '0': { status: 'terminated', calls: 1, retried: 0, terminated: 1 },
      EFAULT: { status: 'terminated', calls: 1, retried: 0, terminated: 1 },
      EBUSY: { status: 'terminated', calls: 1, retried: 0, terminated: 1 },
      'no handler': { status: 'terminated', calls: 0, retried: 0, terminated: 1 },
    });
  });

  it('Qualcomm Adreno SMMU (HUPCF forced on): a report-only handler terminates the GPU\'s stalled write once; EAGAIN retries it', async () => {
    // Identity default domains (as the Adreno's clients get), so bank 0 is free for the GPU's own domain.
    const b = await rig({ compatible: ['qcom,sm8250-smmu-500', 'qcom,adreno-smmu', 'qcom,smmu-500', 'arm,mmu-500'], gpuMaster: true, cmdline: 'iommu.passthrough=1' });
    expect(b.smmu.impl?.name).toBe('qcom-adreno-smmu-500');
    const domain = await attachNew(b, L.gpu);
    const cbndx = armSmmuDomainContextBank(domain);
    expect(b.cb(cbndx, SCTLR) & (SCTLR_CFCFG | SCTLR_HUPCF)).toBe(SCTLR_CFCFG | SCTLR_HUPCF);
    const pa = b.page();
    let verdict: 0 | 'EAGAIN' = 0;
    const calls: number[] = [];
    iommuSetFaultHandler(domain, async (d, _dev, iova) => {
      calls.push(iova);
      if (verdict === 'EAGAIN') await (await import('../../../core/iommu-map.js')).iommuMap(d, iova & ~0xfff, pa, 0x1000, 3);
      return verdict;
    });
    const reported = await b.run(b.master(L.gpu).write(0x1_0000, bytes(1)));
    await settle(b);
    expect(reported.status).toBe('terminated');
    expect(calls).toEqual([0x1_0000]);
    verdict = 'EAGAIN';
    const retried = await b.run(b.master(L.gpu).write(0x2_0040, bytes(0x66)));
    await settle(b);
    expect(retried.status).toBe('ok');
    expect(b.machine.memory.read(pa + 0x40, 1)[0]).toBe(0x66);
    expect(calls).toEqual([0x1_0000, 0x2_0040]);
  });

  it('terminate mode, HUPCF=0, two masters on one bank: a slow handler does not stop the other master, and each fault reaches it once', async () => {
    const b = await rig();
    // A bank that does not stall: the master that cannot stall first, a stall-capable one joins it.
    const domain = await attachNew(b, L.masterNoStall);
    await b.run(iommuAttachDevice(domain, b.dev(L.masterA)));
    armSmmuDomainSetHupcf(domain, false);
    const cbndx = armSmmuDomainContextBank(domain);
    expect(b.cb(cbndx, SCTLR) & (SCTLR_CFCFG | SCTLR_HUPCF)).toBe(0);
    watchFsrWrites(b, cbndx);
    const pages = [b.page(), b.page(), b.page(), b.page()];
    for (const [i, pa] of pages.entries()) await map(b, domain, 0x20_0000 + i * 0x1000, pa);
    const calls: number[] = [];
    const during: { fsr: number; status: string; at: number }[] = [];
    let handlerEnd = -1;
    iommuSetFaultHandler(domain, async (_d, _dev, iova) => {
      calls.push(iova);
      // The other master keeps translating through the bank while this handler sleeps.
      for (let i = 0; i < 4; i++) {
        const fsr = b.cb(cbndx, FSR);
        const c = await b.master(L.masterA).write(0x20_0000 + i * 0x1000, bytes(0xa0 + i));
        during.push({ fsr, status: c.status, at: b.machine.scheduler.now });
        await b.machine.cpu.delay(10_000);
      }
      handlerEnd = b.machine.scheduler.now;
      return 0 as const;
    });
    const c = await b.run(b.master(L.masterNoStall).write(0x90_0000, bytes(1)));
    expect(c.status).toBe('fault');
    await settle(b);
    expect(calls).toEqual([0x90_0000]);
    expect(during.map((d) => [d.fsr, d.status])).toEqual([
      [0, 'ok'],
      [0, 'ok'],
      [0, 'ok'],
      [0, 'ok'],
    ]);
    expect(during.every((d) => d.at < handlerEnd)).toBe(true);
    expect(pages.map((pa) => b.machine.memory.read(pa, 1)[0])).toEqual([0xa0, 0xa1, 0xa2, 0xa3]);
    // FSR was written once, by the interrupt, with the syndrome it read; no RESUME was written.
    expect(fsrWrites(b, cbndx)).toEqual([FSR_TF | FSR_FORMAT_AARCH64]);
    expect(model(b).stats.terminatedBehindFault).toBe(0);

    // Two faults back to back: each is reported once, with its own address (no latched fault in between).
    calls.length = 0;
    const f1 = await b.run(b.master(L.masterNoStall).write(0x91_0000, bytes(2)));
    // (Until the interrupt has cleared FSR, HUPCF=0 still terminates the bank's transactions.)
    await settle(b, 1_000);
    const f2 = await b.run(b.master(L.masterNoStall).write(0x92_0000, bytes(3)));
    await settle(b, 200_000);
    expect([f1.status, f2.status]).toEqual(['fault', 'fault']);
    expect(calls.sort((x, y) => x - y)).toEqual([0x91_0000, 0x92_0000]);
  });

  async function sharedBank(hupcf: boolean): Promise<{ b: Rig; domain: IommuDomain; bDone: () => DmaCompletion | null; bAt: () => number; resumedAt: number }> {
    const b = await rig();
    const domain = await attachNew(b, L.masterA);
    await b.run(iommuAttachDevice(domain, b.dev(L.masterB)));
    armSmmuDomainSetHupcf(domain, hupcf);
    const cbndx = armSmmuDomainContextBank(domain);
    expect(b.cb(cbndx, SCTLR) & SCTLR_HUPCF).toBe(hupcf ? SCTLR_HUPCF : 0);
    const paA = b.page();
    const paB = b.page();
    await map(b, domain, 0x20_0000, paB);
    let rec: { done: DmaCompletion | null; at: number } = { done: null, at: -1 };
    let resumedAt = -1;
    iommuSetFaultHandler(domain, async (d, _dev, iova) => {
      // While A is stalled, B writes to a mapped page of the same bank.
      rec = startWrite(b, L.masterB, 0x20_0000, bytes(0xbb));
      await b.machine.cpu.delay(20_000);
      await (await import('../../../core/iommu-map.js')).iommuMap(d, iova & ~0xfff, paA, 0x1000, 3);
      resumedAt = b.machine.scheduler.now;
      return 'EAGAIN' as const;
    });
    const cA = await b.run(b.master(L.masterA).write(0x30_0000, bytes(0xaa)));
    expect(cA.status).toBe('ok');
    await settle(b);
    expect(b.machine.memory.read(paA, 1)[0]).toBe(0xaa);
    expect(b.machine.memory.read(paB, 1)[0]).toBe(0xbb);
    return { b, domain, bDone: () => rec.done, bAt: () => rec.at, resumedAt };
  }

  it('with HUPCF=1 a second master on the bank proceeds while the first is stalled', async () => {
    const r = await sharedBank(true);
    expect(r.bDone()?.status).toBe('ok');
    expect(r.bAt()).toBeLessThan(r.resumedAt);
  });

  it('with HUPCF=0 a second master on the bank waits until the stall is resumed', async () => {
    const r = await sharedBank(false);
    expect(r.bDone()?.status).toBe('ok');
    expect(r.bAt()).toBeGreaterThan(r.resumedAt);
    expect(r.b.machine.iommus.get(L.smmuPath)).toBeDefined();
  });

  it('storm guard: stall is off while a fault is being handled, a second fault terminates, stall comes back', async () => {
    for (const guard of [true, false]) {
      const b = await rig({ cmdline: `arm-smmu.stall_storm_guard=${guard ? 1 : 0}` });
      const domain = await attachNew(b, L.masterA);
      await b.run(iommuAttachDevice(domain, b.dev(L.masterB)));
      armSmmuDomainSetHupcf(domain, true);
      const cbndx = armSmmuDomainContextBank(domain);
      let second: { done: DmaCompletion | null; at: number } = { done: null, at: -1 };
      let sctlrDuring = 0;
      let calls = 0;
      iommuSetFaultHandler(domain, async () => {
        calls++;
        if (calls > 1) return 'EFAULT' as const;
        sctlrDuring = b.cb(cbndx, SCTLR);
        second = startWrite(b, L.masterB, 0x50_0000, bytes(2));
        await b.machine.cpu.delay(20_000);
        return 'EFAULT' as const;
      });
      const first = await b.run(b.master(L.masterA).write(0x40_0000, bytes(1)));
      await settle(b);
      expect(first.status).toBe('terminated');
      if (guard) {
        expect(sctlrDuring & SCTLR_CFCFG).toBe(0);
        // The second fault was not stalled: it terminated (CFRE) before the first was answered.
        expect(second.done?.status).toBe('fault');
        expect(armSmmuFaultStats(b.smmu).stormGuardTrips).toBe(1);
      } else {
        expect(sctlrDuring & SCTLR_CFCFG).toBe(SCTLR_CFCFG);
        // It stalled too, behind the first, and was answered by the same RESUME.
        expect(second.done?.status).toBe('terminated');
      }
      expect(b.cb(cbndx, SCTLR) & SCTLR_CFCFG).toBe(SCTLR_CFCFG);
    }
  });

  it('answers a stall through pageResponse (the I/O page-fault path)', async () => {
    const b = await rig();
    const domain = await attachNew(b, L.masterA);
    const cbndx = armSmmuDomainContextBank(domain);
    const pa = b.page();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    iommuSetFaultHandler(domain, async () => {
      await gate;
      return 'EFAULT' as const;
    });
    const rec = startWrite(b, L.masterA, 0x60_0000, bytes(0x77));
    await settle(b, 10_000);
    expect(rec.done).toBeNull();
    await map(b, domain, 0x60_0000, pa);
    const dev: Device = b.dev(L.masterA);
    const ops = devIommuOps(dev);
    const evt = { fault: { type: 'page-req' as const, prm: { flags: 0, pasid: 0, grpid: cbndx, perm: 2, addr: 0x60_0000, privateData: [0, 0] as [number, number] } } };
    await ops.pageResponse!(dev, evt, { pasid: 0, grpid: cbndx, code: IOMMU_PAGE_RESP_SUCCESS });
    await settle(b, 10_000);
    expect(rec.done?.status).toBe('ok');
    expect(b.machine.memory.read(pa, 1)[0]).toBe(0x77);
    release();
    await settle(b, 10_000);
    // The handler's late verdict does not answer twice, nor does a stale page response.
    expect(armSmmuFaultStats(b.smmu).terminated).toBe(0);
    void ops.pageResponse!(dev, evt, { pasid: 0, grpid: cbndx, code: IOMMU_PAGE_RESP_INVALID });
    expect(armSmmuFaultStats(b.smmu).terminated).toBe(0);
    expect(model(b).stats.resumesAccepted).toBe(1);
  });
});

describe('arm-smmu stall rule', () => {
  it('refuses to attach a master that cannot stall to a stalling bank', async () => {
    const b = await rig();
    const domain = await attachNew(b, L.masterA);
    const cbndx = armSmmuDomainContextBank(domain);
    const err = await expectErrno(b.run(iommuAttachDevice(domain, b.dev(L.masterNoStall))), 'EINVAL');
    expect(String(err)).toContain(`${L.masterNoStall} cannot stall (its firmware node has no dma-can-stall), but context bank ${cbndx} stalls on faults`);
    expect(b.cb(cbndx, SCTLR) & SCTLR_CFCFG).toBe(SCTLR_CFCFG);
  });

  it('lets a stalling master join a bank that does not stall, which stays non-stalling', async () => {
    const b = await rig();
    const domain = await attachNew(b, L.masterNoStall);
    const cbndx = armSmmuDomainContextBank(domain);
    await b.run(iommuAttachDevice(domain, b.dev(L.masterA)));
    expect(b.cb(cbndx, SCTLR) & SCTLR_CFCFG).toBe(0);
    // A fault of the stall-capable master terminates: no master of a mixed bank is ever stalled.
    expect((await b.run(b.master(L.masterA).write(0x1000, bytes(1)))).status).toBe('fault');
    // The master that cannot stall leaves: the bank does not start stalling, so it can come back.
    const { iommuDetachDevice } = await import('../../../core/iommu-attach.js');
    await b.run(iommuDetachDevice(domain, b.dev(L.masterNoStall)));
    expect(b.cb(cbndx, SCTLR) & SCTLR_CFCFG).toBe(0);
    await b.run(iommuAttachDevice(domain, b.dev(L.masterNoStall)));
    expect(b.cb(cbndx, SCTLR) & SCTLR_CFCFG).toBe(0);
  });
});

describe('arm-smmu global faults', () => {
  it('aborts an unmatched stream with USFCFG=1 and logs "Blocked unknown Stream ID"', async () => {
    const b = await rig();
    expect(b.reg(0) & (1 << 10)).toBe(1 << 10);
    const target = b.page();
    const c = await b.run(b.master(L.stray).write(target, bytes(0x55)));
    expect(c.status).toBe('abort');
    await settle(b);
    expect(b.machine.memory.read(target, 1)[0]).toBe(0);
    expect(b.kernel.log.lines('err').map((e) => e.message)).toContain(
      'Blocked unknown Stream ID 0x7f0; boot with "arm-smmu.disable_bypass=0" to allow, but this may have security implications',
    );
    expect(b.reg(0x48)).toBe(0);
    expect(armSmmuFaultStats(b.smmu).globalFaults).toBe(1);
  });

  it('reports any other global fault with its syndrome (a stream match conflict made behind the driver\'s back)', async () => {
    const b = await rig();
    // A second valid SMR for master A's stream in a free entry: its next transaction matches two.
    const free = Array.from({ length: b.smmu.numMappingGroups }, (_, i) => i).find((i) => !(b.reg(0x800 + 4 * i) >>> 31))!;
    b.machine.cpu.mmioWrite32(L.smmu + 0x800 + 4 * free, (0x8000_0000 | L.sidA) >>> 0);
    const c = await b.run(b.master(L.masterA).write(0x1000, bytes(1)));
    expect(c.status).toBe('abort');
    await settle(b);
    const lines = b.kernel.log.lines('err').map((e) => e.message);
    expect(lines).toContain('Unexpected global fault, this could be serious');
    // SMCF; WNR, NSSTATE, NSATTR; the stream ID.
    expect(lines).toContain(`\tGFSR 0x00000004, GFSYNR0 0x00000032, GFSYNR1 0x00000${L.sidA.toString(16)}, GFSYNR2 0x00000000`);
    expect(b.reg(0x48)).toBe(0);
  });

  it('lets an unmatched stream through untranslated with USFCFG=0 (disable_bypass=0)', async () => {
    const b = await rig({ cmdline: 'arm-smmu.disable_bypass=0' });
    expect(b.reg(0) & (1 << 10)).toBe(0);
    const target = b.page();
    const c = await b.run(b.master(L.stray).write(target + 8, bytes(0x66)));
    expect(c.status).toBe('ok');
    expect(b.machine.memory.read(target + 8, 1)[0]).toBe(0x66);
    expect(armSmmuFaultStats(b.smmu).globalFaults).toBe(0);
  });
});

describe('arm-smmu and the I/O page-fault core', () => {
  it('reports a stall of an IOPF master to the domain\'s iopf handler and resumes on its answer', async () => {
    for (const code of [IOMMU_PAGE_RESP_SUCCESS, IOMMU_PAGE_RESP_INVALID] as const) {
      const b = await rig();
      const dev = b.dev(L.masterA);
      await b.run(iommuDevEnableFeature(dev, 'IOPF'));
      const domain = await attachNew(b, L.masterA);
      const cbndx = armSmmuDomainContextBank(domain);
      const pa = b.page();
      const seen: { grpid: number; flags: number; perm: number; addr: number }[] = [];
      domain.iopfHandler = async (group) => {
        const prm = group.lastFault.fault.prm;
        seen.push({ grpid: prm.grpid, flags: prm.flags, perm: prm.perm, addr: prm.addr });
        await iommuMap(domain, prm.addr - (prm.addr % 0x1000), pa, 0x1000, 3);
        iopfGroupResponse(group, code);
      };
      const c = await b.run(b.master(L.masterA).write(0x5_5010, bytes(0x5e)));
      expect(seen).toEqual([{ grpid: cbndx, flags: IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE, perm: IOMMU_FAULT_PERM_WRITE, addr: 0x5_5010 }]);
      expect(armSmmuFaultStats(b.smmu).reportedIopf).toBe(1);
      if (code === IOMMU_PAGE_RESP_SUCCESS) {
        expect(c.status).toBe('ok');
        expect(b.machine.memory.read(pa + 0x10, 1)[0]).toBe(0x5e);
      } else {
        expect(c.status).toBe('terminated');
      }
      expect(b.cb(cbndx, FSR)).toBe(0);
    }
  });

  it('refuses IOPF for a master that cannot stall', async () => {
    const b = await rig();
    const err = await expectErrno(b.run(iommuDevEnableFeature(b.dev(L.masterNoStall), 'IOPF')), 'EINVAL');
    expect(String(err)).toContain('cannot stall');
  });

  it('gives a device fault handler stalls as page requests and terminated faults as unrecoverable ones', async () => {
    const b = await rig();
    const stallDev = b.dev(L.masterA);
    const domain = await attachNew(b, L.masterA);
    const cbndx = armSmmuDomainContextBank(domain);
    const pa = b.page();
    iommuRegisterDeviceFaultHandler(stallDev, (fault) => {
      if (fault.type !== 'page-req') return 'EINVAL' as const;
      // Answer later, from outside the handler, once the page is mapped.
      void iommuMap(domain, 0x6_6000, pa, 0x1000, 3).then(() =>
        iommuPageResponse(stallDev, { version: IOMMU_PAGE_RESP_VERSION_1, flags: 0, pasid: 0, grpid: fault.prm.grpid, code: IOMMU_PAGE_RESP_SUCCESS }),
      );
      return 0 as const;
    });
    const c = await b.run(b.master(L.masterA).write(0x6_6008, bytes(0x66)));
    expect(c.status).toBe('ok');
    expect(b.machine.memory.read(pa + 8, 1)[0]).toBe(0x66);
    expect(b.cb(cbndx, FSR)).toBe(0);

    const termDev = b.dev(L.masterNoStall);
    await attachNew(b, L.masterNoStall);
    const records: IommuFaultRecord[] = [];
    iommuRegisterDeviceFaultHandler(termDev, (fault) => {
      records.push(fault);
      return 0 as const;
    });
    expect((await b.run(b.master(L.masterNoStall).write(0x7_7004, bytes(1)))).status).toBe('fault');
    await settle(b);
    expect(records).toEqual([
      { type: 'dma-unrecov', event: { reason: 0, flags: 2, pasid: 0, perm: IOMMU_FAULT_PERM_WRITE, addr: 0x7_7004, fetchAddr: 0 } },
    ]);
  });
});
