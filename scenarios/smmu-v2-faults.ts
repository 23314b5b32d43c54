/**
 * smmu-v2-faults: what the SMMU records and what the driver reports. A terminate-mode context fault
 * (a master without `dma-can-stall`) latches FSR/FAR/FSYNR0/CBFRSYNRA and the master gets an error;
 * the driver's interrupt handler takes a copy of the syndrome and clears FSR at once (nothing waits
 * on a RESUME, and a fault left in FSR would abort the bank's other transactions under HUPCF=0), so
 * the domain's fault handler, run later on the workqueue, finds FSR clear and FAR/FSYNR0/CBFRSYNRA
 * still holding the syndrome. With a second master on the bank and HUPCF=0, a slow handler does not
 * stop that master: the bank is not left faulted while the handler sleeps. An unmatched stream (a
 * master the kernel does not know) is aborted with a "Blocked unknown Stream ID" report under
 * `arm-smmu.disable_bypass=1` (sCR0.USFCFG=1) and passes untranslated with `disable_bypass=0`.
 */
import { iommuAttachDevice } from '../core/iommu-attach.js';
import { iommuPagingDomainAlloc, iommuSetFaultHandler, IOMMU_FAULT_WRITE } from '../core/iommu-domain.js';
import { iommuMap } from '../core/iommu-map.js';
import { IOMMU_READ, IOMMU_WRITE } from '../core/io-pgtable.js';
import { armSmmuDomainContextBank, armSmmuDomainSetHupcf } from '../drivers/arm-smmu/arm-smmu-domain.js';
import { boot, run } from './lib/lab.js';
import { Checks, type Scenario } from './scenario.js';
import { SMMU_V2_LAB as L, cbReg, cbRegAddr, deviceOf, kernelPage, masterOf, smmuReg, smmuV2Machine } from './smmu-v2-lab.js';

const FSR_TF = 1 << 1;
const FSR_FORMAT_AARCH64 = 2 << 9;
const FSYNR0_WNR = 1 << 4;

export const scenario: Scenario = {
  name: 'smmu-v2-faults',
  shows: 'a context fault latches FSR/FAR/FSYNR, cleared in the interrupt so a slow handler never stalls the bank (HUPCF=0); unmatched streams abort (USFCFG=1) or bypass (USFCFG=0)',
  async run(ctx) {
    const c = new Checks();
    const machine = smmuV2Machine({ seed: ctx.seed });
    let latched = { fsr: 0, far: 0, fsynr0: 0, sid: 0 };
    let strayStatus = '';
    let bypassStatus = '';
    const kernel = await boot(machine);
    const dev = deviceOf(kernel, L.masterNoStall);
    const domain = iommuPagingDomainAlloc(dev);
    await run(machine, iommuAttachDevice(domain, dev));
    const cb = armSmmuDomainContextBank(domain);
    await run(machine, iommuMap(domain, 0x4000, kernelPage(kernel), 0x1000, IOMMU_READ | IOMMU_WRITE));
    let reported: { iova: number; flags: number; dev: string | null } | null = null;
    // Every write to the bank's FSR, with the time it happened, and the time the handler ran.
    const fsrAddr = cbRegAddr(machine, cb, 0x58);
    const mmio = machine.trace.record(['mmio']);
    let handlerAt = -1;
    iommuSetFaultHandler(domain, (_d, d, iova, flags) => {
      handlerAt = machine.scheduler.now;
      latched = {
        fsr: cbReg(machine, cb, 0x58),
        far: cbReg(machine, cb, 0x60),
        fsynr0: cbReg(machine, cb, 0x68),
        sid: smmuReg(machine, 0x1000 + 0x400 + 4 * cb) & 0xffff,
      };
      reported = { iova, flags, dev: d?.name ?? null };
      return 'EFAULT';
    });
    const w = await run(machine, masterOf(machine, L.masterNoStall).write(0x5abc, Uint8Array.of(1)));
    await run(machine, machine.cpu.delay(10_000));
    mmio.stop();
    const fsrWrites = mmio.events.flatMap((e) => (e.kind === 'mmio' && e.op === 'write' && e.pa === fsrAddr ? [{ value: Number(e.value), at: e.time }] : []));
    const faultFsr = fsrWrites.length === 1 && fsrWrites[0].at <= handlerAt ? fsrWrites[0].value : -1;
    c.equal('the master sees a fault', w.status, 'fault');
    c.equal('FSR recorded TF, FORMAT AArch64 (the driver\'s copy), and was cleared before the handler ran', { copy: faultFsr, live: latched.fsr }, { copy: FSR_TF | FSR_FORMAT_AARCH64, live: 0 });
    c.equal('FAR = the faulting IOVA', latched.far, 0x5abc);
    c.equal('FSYNR0.WNR (a write)', latched.fsynr0 & FSYNR0_WNR, FSYNR0_WNR);
    c.equal('FSYNR0.PLVL = 3 (the level 3 table exists, its entry does not)', latched.fsynr0 & 3, 3);
    c.equal('CBFRSYNRA = the master\'s stream ID', latched.sid, L.sidNoStall);
    c.equal('the handler got iova, WRITE and the master', reported, { iova: 0x5abc, flags: IOMMU_FAULT_WRITE, dev: L.masterNoStall });
    c.equal('FSR is clear once handled', cbReg(machine, cb, 0x58), 0);

    // A slow handler and a second master on the bank, HUPCF=0: the bank is not faulted meanwhile.
    await run(machine, iommuAttachDevice(domain, deviceOf(kernel, L.masterA)));
    armSmmuDomainSetHupcf(domain, false);
    const other = kernelPage(kernel);
    await run(machine, iommuMap(domain, 0x8000, other, 0x1000, IOMMU_READ | IOMMU_WRITE));
    const otherDuring: string[] = [];
    let slowCalls = 0;
    domain.cookie = { type: 'none' };
    iommuSetFaultHandler(domain, async () => {
      slowCalls++;
      for (let i = 0; i < 3; i++) {
        otherDuring.push((await masterOf(machine, L.masterA).write(0x8000 + i, Uint8Array.of(0x70 + i))).status);
        await machine.cpu.delay(20_000);
      }
      return 0 as const;
    });
    const slow = await run(machine, masterOf(machine, L.masterNoStall).write(0xf000, Uint8Array.of(1)));
    await run(machine, machine.cpu.delay(100_000));
    c.equal('HUPCF=0, slow handler: the faulting master sees a fault, the handler runs once', [slow.status, slowCalls], ['fault', 1]);
    c.equal('HUPCF=0, slow handler: the other master of the bank keeps translating meanwhile', otherDuring, ['ok', 'ok', 'ok']);
    c.equal('HUPCF=0, slow handler: its bytes land', [...machine.memory.read(other, 3)], [0x70, 0x71, 0x72]);

    // Unmatched stream, disable_bypass=1.
    const target = kernelPage(kernel);
    const s = await run(machine, masterOf(machine, L.stray).write(target, Uint8Array.of(0x5a)));
    await run(machine, machine.cpu.delay(10_000));
    strayStatus = s.status;
    c.equal('USFCFG=1: the unmatched stream is aborted', s.status, 'abort');
    c.equal('USFCFG=1: nothing reached memory', machine.memory.read(target, 1)[0], 0);
    c.ok(
      'USFCFG=1: "Blocked unknown Stream ID 0x7f0" is reported',
      kernel.log.lines('err').some((e) => e.message.startsWith('Blocked unknown Stream ID 0x7f0')),
    );
    c.equal('sGFSR is clear once handled', smmuReg(machine, 0x48), 0);

    // Unmatched stream, disable_bypass=0.
    const m2 = smmuV2Machine({ seed: ctx.seed, bootargs: 'arm-smmu.disable_bypass=0' });
    const k2 = await boot(m2);
    c.equal('USFCFG=0 in sCR0', (smmuReg(m2, 0) >>> 10) & 1, 0);
    const target2 = kernelPage(k2);
    const s2 = await run(m2, masterOf(m2, L.stray).write(target2 + 4, Uint8Array.of(0xa5)));
    bypassStatus = s2.status;
    c.equal('USFCFG=0: the unmatched stream passes', s2.status, 'ok');
    c.equal('USFCFG=0: its bytes land untranslated', m2.memory.read(target2 + 4, 1)[0], 0xa5);
    return c.result({
      FSR: `0x${latched.fsr.toString(16)}`,
      FAR: `0x${latched.far.toString(16)}`,
      FSYNR0: `0x${latched.fsynr0.toString(16)}`,
      'unmatched, USFCFG=1': strayStatus,
      'unmatched, USFCFG=0': bypassStatus,
    });
  },
};
