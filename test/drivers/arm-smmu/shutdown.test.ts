/**
 * `.shutdown` under each `arm-smmu.shutdown_policy`: what sCR0, the stream map and the context banks
 * are left as, where a master that keeps doing DMA ends up, and that no master is left stalled.
 */
import { describe, expect, it } from 'vitest';
import { iommuDomainFree, iommuSetFaultHandler } from '../../../core/iommu-domain.js';
import { armSmmuDomainContextBank } from '../../../drivers/arm-smmu/arm-smmu-domain.js';
import type { DmaCompletion } from '../../../hw/dma.js';
import type { SmmuV2 } from '../../../hw/smmu-v2/smmu-v2.js';
import { kexec } from '../../../kernel/kexec.js';
import { attachNew, rig, bytes, L, map } from './rig.js';

const SCR0 = 0;
const CLIENTPD = 1;
const GFIE = 1 << 2;
const USFCFG = 1 << 10;
const smr = (i: number): number => 0x800 + 4 * i;
const s2cr = (i: number): number => 0xc00 + 4 * i;

async function translatedMaster(cmdline: string) {
  const b = await rig({ cmdline });
  const domain = await attachNew(b, L.masterNoStall);
  const iova = b.page();
  const pa = b.page();
  await map(b, domain, iova, pa);
  expect((await b.master(L.masterNoStall).write(iova, bytes(1))).status).toBe('ok');
  expect(b.machine.memory.read(pa, 1)[0]).toBe(1);
  return { b, iova, pa };
}

describe('arm-smmu shutdown', () => {
  it('bypass (Linux today): sCR0 = CLIENTPD, a running master\'s DMA reaches memory untranslated', async () => {
    const { b, iova, pa } = await translatedMaster('');
    await b.run(b.kernel.shutdown());
    expect(b.kernel.log.lines('info').some((e) => e.message === 'disabling translation')).toBe(true);
    expect(b.reg(SCR0) & (CLIENTPD | GFIE | USFCFG)).toBe(CLIENTPD);
    expect((await b.master(L.masterNoStall).write(iova, bytes(2))).status).toBe('ok');
    // Untranslated: the IOVA is taken as a physical address; the translated page is untouched.
    expect(b.machine.memory.read(iova, 1)[0]).toBe(2);
    expect(b.machine.memory.read(pa, 1)[0]).toBe(1);
  });

  it('abort-unmatched: every SMR invalid, USFCFG=1, fault interrupts off; DMA aborts', async () => {
    const { b, iova, pa } = await translatedMaster('arm-smmu.shutdown_policy=abort-unmatched');
    await b.run(b.kernel.shutdown());
    const scr0 = b.reg(SCR0);
    expect(scr0 & (CLIENTPD | USFCFG | GFIE)).toBe(USFCFG);
    for (let i = 0; i < b.smmu.numMappingGroups; i++) expect(b.reg(smr(i)) >>> 31).toBe(0);
    expect((await b.master(L.masterNoStall).write(iova, bytes(3))).status).toBe('abort');
    expect(b.machine.memory.read(iova, 1)[0]).toBe(0);
    expect(b.machine.memory.read(pa, 1)[0]).toBe(1);
    // With the fault interrupt off, nothing was reported.
    await b.run(b.machine.cpu.delay(10_000));
    expect(b.kernel.log.lines('err').some((e) => e.message.startsWith('Blocked unknown Stream ID'))).toBe(false);
  });

  it('abort-all also points every S2CR at FAULT; shutdown_fault_irqs keeps GFIE and reports', async () => {
    const { b, iova } = await translatedMaster('arm-smmu.shutdown_policy=abort-all arm-smmu.shutdown_fault_irqs=1');
    await b.run(b.kernel.shutdown());
    for (let i = 0; i < b.smmu.numMappingGroups; i++) expect((b.reg(s2cr(i)) >>> 16) & 3).toBe(2);
    expect(b.reg(SCR0) & GFIE).toBe(GFIE);
    expect((await b.master(L.masterNoStall).write(iova, bytes(3))).status).toBe('abort');
    await b.run(b.machine.cpu.delay(10_000));
    expect(b.kernel.log.lines('err').some((e) => e.message === `Blocked unknown Stream ID 0x${L.sidNoStall.toString(16)}; boot with "arm-smmu.disable_bypass=0" to allow, but this may have security implications`)).toBe(true);
  });

  it('translate: stays enabled with the stream map reset; unmatched streams follow disable_bypass', async () => {
    const { b, iova } = await translatedMaster('arm-smmu.shutdown_policy=translate arm-smmu.disable_bypass=0');
    await b.run(b.kernel.shutdown());
    expect(b.reg(SCR0) & (CLIENTPD | USFCFG)).toBe(0);
    for (let i = 0; i < b.smmu.numMappingGroups; i++) {
      expect(b.reg(smr(i)) >>> 31).toBe(0);
      expect(b.reg(s2cr(i))).toBe(1 << 16);
    }
    expect((await b.master(L.masterNoStall).write(iova, bytes(4))).status).toBe('ok');
    expect(b.machine.memory.read(iova, 1)[0]).toBe(4);
  });

  it('terminates a stalled transaction instead of leaving the master wedged', async () => {
    const b = await rig();
    const domain = await attachNew(b, L.masterA);
    let handlerRan = false;
    iommuSetFaultHandler(domain, async () => {
      handlerRan = true;
      await new Promise<void>(() => undefined); // never answers
      return 0 as const;
    });
    let done: DmaCompletion | null = null;
    b.master(L.masterA).submitWrite(0x9000, bytes(1), {}, (c) => (done = c));
    await b.run(b.machine.cpu.delay(10_000));
    expect(handlerRan).toBe(true);
    expect(done).toBeNull();
    await b.run(b.kernel.shutdown());
    await b.run(b.machine.cpu.delay(10_000));
    expect((done as DmaCompletion | null)?.status).toBe('terminated');
    expect(b.master(L.masterA).stats.outstanding).toBe(0);
  });
});

describe('arm-smmu shutdown and kexec with transactions waiting behind a stall', () => {
  const policies = ['bypass', 'abort-unmatched', 'abort-all', 'translate'] as const;
  for (const teardown of ['shutdown', 'kexec'] as const) {
    for (const policy of policies) {
      it(`${teardown}, policy ${policy}: the stalled transaction and every one waiting behind it end in a visible failure`, async () => {
        const b = await rig({ cmdline: `arm-smmu.shutdown_policy=${policy}` });
        const domain = await attachNew(b, L.masterA);
        let calls = 0;
        iommuSetFaultHandler(domain, async () => {
          calls++;
          await new Promise<void>(() => undefined); // never answers
          return 0 as const;
        });
        const model = b.machine.iommus.get(L.smmuPath)!.instance!.mmio[0].device as SmmuV2;
        const cbndx = armSmmuDomainContextBank(domain);
        const N = 8;
        const done: (DmaCompletion | null)[] = Array.from({ length: N }, () => null);
        for (let i = 0; i < N; i++) b.master(L.masterA).submitWrite(0x9000 + i * 0x1000, bytes(i + 1), {}, (c) => (done[i] = c));
        await b.run(b.machine.cpu.delay(10_000));
        expect(calls).toBe(1);
        expect(model.stalledCount(cbndx)).toBe(1);
        expect(model.waitingCount(cbndx)).toBe(N - 1);
        if (teardown === 'shutdown') await b.run(b.kernel.shutdown());
        else await b.run(kexec(b.machine, { cmdline: `arm-smmu.shutdown_policy=${policy}` }));
        await b.run(b.machine.cpu.delay(1_000_000));
        expect(model.stalledCount(cbndx)).toBe(0);
        expect(model.waitingCount(cbndx)).toBe(0);
        expect(done.every((c) => c !== null)).toBe(true);
        expect(done[0]!.status).toBe('terminated');
        for (const c of done) expect(['terminated', 'fault', 'abort']).toContain(c!.status);
        expect(b.master(L.masterA).stats.outstanding).toBe(0);
        expect(calls).toBe(1);
      });
    }
  }
});

describe('arm-smmu: freeing a still-attached domain', () => {
  it('warns, never calls the freed handler, and the master is blocked rather than let through untranslated', async () => {
    const b = await rig();
    const domain = await attachNew(b, L.masterNoStall);
    const iova = b.page();
    const pa = b.page();
    await map(b, domain, iova, pa);
    let calls = 0;
    iommuSetFaultHandler(domain, () => {
      calls++;
      return 'EIO';
    });
    await b.run(iommuDomainFree(domain));
    expect(b.kernel.log.lines('warn').some((l) => /freed while still attached/.test(l.message))).toBe(true);
    // The IOVA is also a physical address the kernel owns: an untranslated write would land there.
    const c = await b.master(L.masterNoStall).write(iova, bytes(7));
    await b.run(b.machine.cpu.delay(100_000));
    expect(c.status).not.toBe('ok');
    expect(b.machine.memory.read(iova, 1)[0]).toBe(0);
    expect(b.machine.memory.read(pa, 1)[0]).toBe(0);
    expect(calls).toBe(0);
  });
});
