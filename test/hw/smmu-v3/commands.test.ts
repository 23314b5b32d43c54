/**
 * SMMUv3 model conformance for the commands the other suites leave out, driven only through MMIO and
 * memory: configuration invalidation by range and for all CDs of a stream, CMD_PREFETCH_CONFIG,
 * TLBI_NH_VAA, the EL2 invalidations (with and without CR2.E2H), and the three CMD_SYNC completion
 * signals.
 */
import { describe, expect, it } from 'vitest';
import { CMD, PageTable, Rig, cd, ste } from './rig.js';

const IOVA = 0x1_0000;
const BYPASS_PA = 0x4080_0000;
const CR2_E2H = 1 << 0;
const CR2_RECINVSID = 1 << 1;

const status = (rig: Rig, sid: number, addr = BYPASS_PA): string | undefined => rig.dma({ streamId: sid, addr }).c?.status;

describe('SMMUv3 model: configuration invalidation', () => {
  it('CMD_CFGI_STE_RANGE drops the aligned block of 2^(Range+1) StreamIDs it names; CMD_CFGI_ALL drops every STE', () => {
    const rig = new Rig();
    rig.init();
    const sids = [3, 4, 5, 7, 8];
    for (const sid of sids) rig.writeSte(sid, ste({ config: 0b100 }));
    expect(sids.map((sid) => status(rig, sid))).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
    // Every STE becomes abort in memory; the SMMU keeps using its cached bypass copies.
    for (const sid of sids) rig.writeSte(sid, ste({ config: 0b000 }));
    expect(sids.map((sid) => status(rig, sid))).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
    // Range 1: four StreamIDs, aligned: 4..7 (StreamID 5 names the block it is in).
    rig.issue(CMD.cfgiSteRange(5, 1), CMD.sync());
    expect(sids.map((sid) => status(rig, sid))).toEqual(['ok', 'abort', 'abort', 'abort', 'ok']);
    rig.issue(CMD.cfgiAll(), CMD.sync());
    expect(sids.map((sid) => status(rig, sid))).toEqual(['abort', 'abort', 'abort', 'abort', 'abort']);
    expect(rig.events()).toEqual([]); // an abort STE terminates silently
  });

  it('CMD_CFGI_CD_ALL drops every CD cached for its StreamID and no other', () => {
    const rig = new Rig();
    rig.init();
    const { pt, cdAddr } = rig.s1Context(7, 5);
    const buf = rig.alloc(0x1000);
    pt.map(IOVA, buf, 0x1000);
    expect(rig.dma({ streamId: 7, addr: IOVA }).c?.pa).toBe(buf);
    // A new CD (other ASID, empty tables) in memory, and the old ASID's TLB entries gone.
    rig.writeDwords(cdAddr, cd({ asid: 6, ttb0: new PageTable(rig, 1).root }));
    rig.issue(CMD.tlbiNhAsid(0, 5), CMD.sync());
    expect(rig.dma({ streamId: 7, addr: IOVA }).c?.pa).toBe(buf); // walked through the cached CD
    rig.issue(CMD.cfgiCdAll(8), CMD.sync());
    expect(rig.dma({ streamId: 7, addr: IOVA }).c?.pa).toBe(buf);
    rig.issue(CMD.cfgiCdAll(7), CMD.sync());
    expect(rig.dma({ streamId: 7, addr: IOVA }).c?.status).toBe('fault');
    expect(rig.events()).toMatchObject([{ id: 0x10, sid: 7, addr: IOVA }]);
  });

  it('CMD_PREFETCH_CONFIG loads an STE into the cache without an access, and reports nothing for a bad one', () => {
    const rig = new Rig();
    rig.init();
    rig.writeSte(9, ste({ config: 0b100 }));
    rig.writeSte(10, ste({ v: false, config: 0b100 }));
    rig.issue(CMD.prefetchConfig(9), CMD.prefetchConfig(10), CMD.sync());
    expect(rig.events()).toEqual([]);
    // The prefetched copy is what the SMMU uses, even after memory changes under it.
    rig.writeSte(9, ste({ config: 0b000 }));
    expect(status(rig, 9)).toBe('ok');
    // An invalid STE was not cached: the transaction fetches it and reports it.
    expect(status(rig, 10)).toBe('abort');
    expect(rig.events()).toMatchObject([{ id: 0x04, sid: 10 }]);
    // Without the prefetch the new (abort) STE is fetched at first use.
    rig.writeSte(11, ste({ config: 0b100 }));
    rig.writeSte(11, ste({ config: 0b000 }));
    expect(status(rig, 11)).toBe('abort');
  });
});

describe('SMMUv3 model: TLB invalidation by VA for every ASID, and at EL2', () => {
  it('CMD_TLBI_NH_VAA invalidates one VA under every ASID of the VMID, and nothing else', () => {
    const rig = new Rig();
    rig.init();
    const { pt } = rig.s1Context(7, 5);
    rig.s1Context(8, 6, {}, {}, pt);
    pt.map(IOVA, rig.alloc(0x1000), 0x1000);
    pt.map(IOVA + 0x1000, rig.alloc(0x1000), 0x1000);
    for (const sid of [7, 8]) for (const a of [IOVA, IOVA + 0x1000]) expect(status(rig, sid, a)).toBe('ok');
    pt.unmap(IOVA);
    pt.unmap(IOVA + 0x1000);
    rig.issue(CMD.tlbiNhVaa(1, IOVA), CMD.sync()); // another VMID: no effect
    expect(status(rig, 7, IOVA)).toBe('ok');
    rig.issue(CMD.tlbiNhVaa(0, IOVA), CMD.sync());
    expect([7, 8].map((sid) => status(rig, sid, IOVA))).toEqual(['fault', 'fault']);
    expect([7, 8].map((sid) => status(rig, sid, IOVA + 0x1000))).toEqual(['ok', 'ok']);
  });

  it('without CR2.E2H, EL2 translations carry no ASID: TLBI_EL2_VA / VAA hit by address alone', () => {
    const rig = new Rig();
    rig.init();
    const { pt } = rig.s1Context(7, 5, { strw: 2 });
    for (const a of [IOVA, IOVA + 0x1000, IOVA + 0x2000]) pt.map(a, rig.alloc(0x1000), 0x1000);
    for (const a of [IOVA, IOVA + 0x1000, IOVA + 0x2000]) expect(status(rig, 7, a)).toBe('ok');
    for (const a of [IOVA, IOVA + 0x1000, IOVA + 0x2000]) pt.unmap(a);
    // EL1 invalidations do not reach the EL2 regime.
    rig.issue(CMD.tlbiNhVaa(0, IOVA), CMD.tlbiNhAll(0), CMD.sync());
    expect(status(rig, 7, IOVA)).toBe('ok');
    rig.issue(CMD.tlbiEl2Va(9, IOVA, true), CMD.sync()); // the ASID field is ignored without E2H
    expect(status(rig, 7, IOVA)).toBe('fault');
    rig.issue(CMD.tlbiEl2Vaa(IOVA + 0x1000), CMD.sync());
    expect(status(rig, 7, IOVA + 0x1000)).toBe('fault');
    expect(status(rig, 7, IOVA + 0x2000)).toBe('ok');
  });

  it('with CR2.E2H, EL2 translations are tagged by ASID: TLBI_EL2_ASID and TLBI_EL2_VA match it', () => {
    const rig = new Rig();
    rig.init({ cr2: CR2_E2H | CR2_RECINVSID });
    const { pt } = rig.s1Context(7, 5, { strw: 2 });
    for (const a of [IOVA, IOVA + 0x1000, IOVA + 0x2000]) pt.map(a, rig.alloc(0x1000), 0x1000);
    for (const a of [IOVA, IOVA + 0x1000, IOVA + 0x2000]) expect(status(rig, 7, a)).toBe('ok');
    for (const a of [IOVA, IOVA + 0x1000, IOVA + 0x2000]) pt.unmap(a);
    rig.issue(CMD.tlbiNhAsid(0, 5), CMD.tlbiNsnhAll(), CMD.sync()); // EL1 scope: no effect
    expect(status(rig, 7, IOVA)).toBe('ok');
    rig.issue(CMD.tlbiEl2Va(6, IOVA), CMD.sync()); // another ASID: no effect
    expect(status(rig, 7, IOVA)).toBe('ok');
    rig.issue(CMD.tlbiEl2Va(5, IOVA), CMD.sync());
    expect(status(rig, 7, IOVA)).toBe('fault');
    rig.issue(CMD.tlbiEl2Vaa(IOVA + 0x1000), CMD.sync());
    expect(status(rig, 7, IOVA + 0x1000)).toBe('fault');
    rig.issue(CMD.tlbiEl2Asid(6), CMD.sync());
    expect(status(rig, 7, IOVA + 0x2000)).toBe('ok');
    rig.issue(CMD.tlbiEl2Asid(5), CMD.sync());
    expect(status(rig, 7, IOVA + 0x2000)).toBe('fault');
  });
});

describe('SMMUv3 model: CMD_SYNC completion signals', () => {
  it('CS=NONE signals nothing, CS=SEV sends an event (no interrupt), CS=IRQ without an MSI address pulses the cmdq-sync line', () => {
    const rig = new Rig();
    rig.init();
    const irq = rig.smmu.irq.stats;
    const sev0 = irq.sev;
    const msi0 = irq.msi['cmdq-sync'];
    rig.issue(CMD.sync(0));
    expect([rig.irqs['cmdq-sync'], irq.sev - sev0]).toEqual([0, 0]);
    rig.issue(CMD.sync(2));
    expect([rig.irqs['cmdq-sync'], irq.sev - sev0]).toEqual([0, 1]);
    rig.issue(CMD.sync(1));
    expect([rig.irqs['cmdq-sync'], irq.sev - sev0, irq.msi['cmdq-sync'] - msi0]).toEqual([1, 1, 0]);
    expect(rig.smmu.cmdq.stats.syncs).toBeGreaterThanOrEqual(3);
  });

  it('sends each completion MSI with its own address and data, one after another', () => {
    const rig = new Rig();
    rig.init();
    const flags = [rig.alloc(0x1000), rig.alloc(0x1000), rig.alloc(0x1000)];
    rig.issue(...flags.map((f, i) => CMD.sync(1, f, 0xa0 + i)));
    expect(flags.map((f) => rig.memory.read32(f))).toEqual([0xa0, 0xa1, 0xa2]);
  });
});
