/**
 * Register sequences, read off the machine's MMIO trace: the reset order of arm_smmu_device_reset(),
 * the context bank programming order of arm_smmu_write_context_bank(), the TLBI + TLBSYNC + poll of
 * an unmap, and FSR cleared before RESUME on a stalled fault (MMU-500 ignores a RESUME while FSR
 * still records the fault; the model counts such ignored RESUMEs).
 */
import { describe, expect, it } from 'vitest';
import { iommuSetFaultHandler } from '../../../core/iommu-domain.js';
import { iommuUnmap } from '../../../core/iommu-map.js';
import { armSmmuDomainContextBank } from '../../../drivers/arm-smmu/arm-smmu-domain.js';
import { armSmmuTlbStats } from '../../../drivers/arm-smmu/arm-smmu-tlb.js';
import type { SmmuV2 } from '../../../hw/smmu-v2/index.js';
import type { TraceEvent } from '../../../hw/trace.js';
import { boot } from '../../../scenarios/lib/lab.js';
import { smmuV2Machine } from '../../../scenarios/smmu-v2-lab.js';
import { attachNew, rig, bytes, L, map, type Rig } from './rig.js';

type Mmio = Extract<TraceEvent, { kind: 'mmio' }>;

const writes = (events: readonly TraceEvent[], track = L.smmuPath): Mmio[] =>
  events.filter((e): e is Mmio => e.kind === 'mmio' && e.op === 'write' && e.track === track);

/** The register offset within a context bank page, or -1 when `off` is not in bank `n`. */
function cbOff(b: Rig, n: number, off: number): number {
  const base = (b.smmu.numpage + n) << b.smmu.pgshift;
  return off >= base && off < base + (1 << b.smmu.pgshift) ? off - base : -1;
}

function model(b: Rig): SmmuV2 {
  return b.machine.iommus.get(L.smmuPath)!.instance!.mmio[0].device as SmmuV2;
}

describe('arm-smmu register sequences', () => {
  it('resets as Linux does: sGFSR, stream map, banks and FSRs, TLBIALLH/NSNH, sACR, sync, sCR0 last', async () => {
    const machine = smmuV2Machine({ seed: 1 });
    const rec = machine.trace.record(['mmio']);
    await boot(machine);
    rec.stop();
    const w = writes(rec.events).map((e) => e.offset);
    const scr0 = w.indexOf(0x0);
    expect(scr0).toBeGreaterThan(0);
    const before = w.slice(0, scr0);
    expect(before[0]).toBe(0x48); // sGFSR write-back first
    const firstS2cr = before.indexOf(0xc00);
    expect(before[firstS2cr + 1]).toBe(0x800); // S2CR then SMR of entry 0
    const tlbiallh = before.indexOf(0x6c);
    const tlbiallnsnh = before.indexOf(0x68);
    const sacr = before.indexOf(0x10);
    const gsync = before.lastIndexOf(0x70);
    expect(firstS2cr).toBeLessThan(tlbiallh);
    expect(tlbiallh).toBeLessThan(tlbiallnsnh);
    expect(tlbiallnsnh).toBeLessThan(sacr);
    expect(sacr).toBeLessThan(gsync);
    expect(gsync).toBe(scr0 - 1);
  });

  it('programs a bank CBA2R, CBAR, TCR2, TCR, TTBR0, TTBR1, MAIR0, MAIR1, SCTLR', async () => {
    const b = await rig();
    const rec = b.machine.trace.record(['mmio']);
    const domain = await attachNew(b, L.masterNoStall);
    rec.stop();
    const n = armSmmuDomainContextBank(domain);
    const seq = writes(rec.events)
      .map((e) => {
        if (e.offset === 0x1000 + 0x800 + 4 * n) return 'CBA2R';
        if (e.offset === 0x1000 + 4 * n) return 'CBAR';
        const names: Record<number, string> = { 0x10: 'TCR2', 0x30: 'TCR', 0x20: 'TTBR0', 0x28: 'TTBR1', 0x38: 'MAIR0', 0x3c: 'MAIR1', 0x0: 'SCTLR' };
        return names[cbOff(b, n, e.offset)] ?? null;
      })
      .filter((x) => x !== null);
    expect(seq).toEqual(['CBA2R', 'CBAR', 'TCR2', 'TCR', 'TTBR0', 'TTBR1', 'MAIR0', 'MAIR1', 'SCTLR']);
  });

  it('unmaps with TLBIVAL (VA >> 12 | ASID << 48), then TLBSYNC, then polls TLBSTATUS', async () => {
    const b = await rig();
    const domain = await attachNew(b, L.masterNoStall);
    const n = armSmmuDomainContextBank(domain);
    await map(b, domain, 0x12_3000, b.page());
    const rec = b.machine.trace.record(['mmio']);
    await b.run(iommuUnmap(domain, 0x12_3000, 0x1000));
    rec.stop();
    const ev = rec.events.filter((e): e is Mmio => e.kind === 'mmio' && cbOff(b, n, e.offset) >= 0);
    const ops = ev.map((e) => `${e.op} ${cbOff(b, n, e.offset).toString(16)}`);
    const tlbival = ops.indexOf('write 620');
    expect(tlbival).toBeGreaterThanOrEqual(0);
    expect(ev[tlbival].width).toBe(64);
    expect(ev[tlbival].value).toBe((BigInt(n) << 48n) | BigInt(0x12_3000 >> 12));
    expect(ops[tlbival + 1]).toBe('write 7f0');
    expect(ops.slice(tlbival + 2).every((o) => o === 'read 7f4')).toBe(true);
    expect(ops.length).toBeGreaterThan(tlbival + 2);
  });

  it('polls a slow TLBSYNC as Linux does: ten reads, then ten after each delay doubling from 1 us', async () => {
    // The sync completes 5 us after it is written: the reads after the 1 and 2 us delays still see
    // SACTIVE, the first one after the 4 us delay (7 us in) sees it clear.
    const b = await rig({ iommuOptions: { 'smmu-v2': { timing: { tlbSyncNs: 5000 } } } });
    const domain = await attachNew(b, L.masterNoStall);
    const n = armSmmuDomainContextBank(domain);
    await map(b, domain, 0x12_3000, b.page());
    const rec = b.machine.trace.record(['mmio']);
    expect(await b.run(iommuUnmap(domain, 0x12_3000, 0x1000))).toBe(0x1000);
    rec.stop();
    const ev = rec.events.filter((e): e is Mmio => e.kind === 'mmio' && cbOff(b, n, e.offset) >= 0);
    const sync = ev.findIndex((e) => e.op === 'write' && cbOff(b, n, e.offset) === 0x7f0);
    const reads = ev.slice(sync + 1);
    expect(reads.every((e) => e.op === 'read' && cbOff(b, n, e.offset) === 0x7f4)).toBe(true);
    const t0 = ev[sync].time;
    expect(reads.map((e) => (e.time - t0) / 1000)).toEqual([...Array<number>(10).fill(0), ...Array<number>(10).fill(1), ...Array<number>(10).fill(3), 7]);
    expect(reads.map((e) => Number(e.value & 1n))).toEqual([...Array<number>(30).fill(1), 0]);
  });

  it('gives up on a TLBSYNC that never completes after the kernel\'s second, counting and logging the timeout', async () => {
    const b = await rig();
    const domain = await attachNew(b, L.masterNoStall);
    const n = armSmmuDomainContextBank(domain);
    await map(b, domain, 0x12_3000, b.page());
    // From now on the SMMU takes 2 s to complete a sync.
    model(b).options.timing.tlbSyncNs = 2_000_000_000;
    const before = armSmmuTlbStats(b.smmu).syncTimeouts;
    const rec = b.machine.trace.record(['mmio', 'log']);
    const t0 = b.machine.scheduler.now;
    expect(await b.run(iommuUnmap(domain, 0x12_3000, 0x1000))).toBe(0x1000);
    rec.stop();
    // Twenty delays (1 us ... 2^19 us), ten reads before each but none after the last.
    expect(b.machine.scheduler.now - t0).toBe((2 ** 20 - 1) * 1000);
    expect(rec.events.filter((e) => e.kind === 'mmio' && e.op === 'read' && cbOff(b, n, e.offset) === 0x7f4)).toHaveLength(200);
    expect(armSmmuTlbStats(b.smmu).syncTimeouts).toBe(before + 1);
    expect(rec.events.some((e) => e.kind === 'log' && /TLB sync timed out/.test(JSON.stringify(e)))).toBe(true);
  });

  it('two strict unmaps on two banks wait for their own syncs at once', async () => {
    const b = await rig({ iommuOptions: { 'smmu-v2': { timing: { tlbSyncNs: 2500 } } } });
    const d1 = await attachNew(b, L.masterNoStall);
    const d2 = await attachNew(b, L.masterMasked);
    const p1 = b.page();
    const p2 = b.page();
    await map(b, d1, 0x4000, p1);
    await map(b, d2, 0x4000, p2);
    expect((await b.master(L.masterNoStall).write(0x4000, bytes(1))).status).toBe('ok');
    expect((await b.master(L.masterMasked).write(0x4000, bytes(2))).status).toBe('ok');
    const t0 = b.machine.scheduler.now;
    expect(await b.run(Promise.all([iommuUnmap(d1, 0x4000, 0x1000), iommuUnmap(d2, 0x4000, 0x1000)]))).toEqual([0x1000, 0x1000]);
    // Both syncs complete 2.5 us in: each waiter's read after the 1 + 2 us delays sees it done.
    expect(b.machine.scheduler.now - t0).toBe(3000);
    expect((await b.master(L.masterNoStall).write(0x4000, bytes(3))).status).toBe('fault');
    expect((await b.master(L.masterMasked).write(0x4000, bytes(4))).status).toBe('fault');
  });

  it('clears FSR before writing RESUME, so the SMMU never ignores it', async () => {
    const b = await rig();
    const domain = await attachNew(b, L.masterA);
    const n = armSmmuDomainContextBank(domain);
    iommuSetFaultHandler(domain, () => 'EFAULT' as const);
    const rec = b.machine.trace.record(['mmio']);
    expect((await b.run(b.master(L.masterA).write(0x8000, bytes(1)))).status).toBe('terminated');
    rec.stop();
    const ops = writes(rec.events).map((e) => [cbOff(b, n, e.offset), Number(e.value)] as const).filter(([o]) => o === 0x58 || o === 0x8);
    expect(ops).toEqual([
      [0x58, (1 << 30) | (2 << 9) | 2],
      [0x8, 1],
    ]);
    expect(model(b).stats.resumesIgnored).toBe(0);
    expect(model(b).stats.resumesAccepted).toBe(1);
  });
});
