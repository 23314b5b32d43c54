import { describe, expect, it } from 'vitest';
import { CMD, CR0_CMDQEN, CR0_EVTQEN, CR0_PRIQEN, CR0_SMMUEN, EVT, IRQ_EVTQ, IRQ_GERROR, PageTable, REG, Rig, cd, ste } from './rig.js';

const IOVA = 0x1_0000;
const HOLE = 0x2000_0000; // no RAM and no device there

describe('SMMUv3 model: event records', () => {
  it('F_UUT for a malformed transaction', () => {
    const rig = new Rig();
    rig.init();
    expect(rig.dma({ streamId: 4, addr: 0x1000, len: 0 }).c?.status).toBe('abort');
    expect(rig.events()).toMatchObject([{ id: EVT.F_UUT, sid: 4, addr: 0x1000, rnw: true }]);
  });

  it('C_BAD_STREAMID only when CR2.RECINVSID is set', () => {
    const rig = new Rig();
    rig.init({ strtab: { linear: 4 } });
    expect(rig.dma({ streamId: 16, addr: 0x1000 }).c?.status).toBe('abort');
    expect(rig.events()).toMatchObject([{ id: EVT.C_BAD_STREAMID, sid: 16 }]);
    const quiet = new Rig();
    quiet.init({ strtab: { linear: 4 }, cr2: 0 });
    expect(quiet.dma({ streamId: 16, addr: 0x1000 }).c?.status).toBe('abort');
    expect(quiet.events()).toEqual([]);
  });

  it('F_STE_FETCH with the fetch address when the stream table read aborts', () => {
    const rig = new Rig();
    rig.init();
    rig.setCr0(CR0_CMDQEN | CR0_EVTQEN | CR0_PRIQEN);
    rig.w64(REG.STRTAB_BASE, HOLE);
    rig.setCr0(CR0_CMDQEN | CR0_EVTQEN | CR0_PRIQEN | CR0_SMMUEN);
    expect(rig.dma({ streamId: 3, addr: 0x1000 }).c?.status).toBe('abort');
    expect(rig.events()).toMatchObject([{ id: EVT.F_STE_FETCH, sid: 3, d3: HOLE + 3 * 64 }]);
  });

  it('C_BAD_STE / C_BAD_CD / F_CD_FETCH / F_WALK_EABT', () => {
    const rig = new Rig();
    rig.init();
    rig.writeSte(1, ste({ v: false, config: 0b101 }));
    rig.s1Context(2, 1, {}, { v: false });
    rig.writeSte(3, ste({ config: 0b101, s1ContextPtr: HOLE }));
    const { pt } = rig.s1Context(4, 2);
    pt.poisonLevel0(IOVA, HOLE);
    for (const sid of [1, 2, 3, 4]) expect(rig.dma({ streamId: sid, addr: IOVA }).c?.status).toBe('abort');
    const ev = rig.events();
    expect(ev.map((e) => [e.id, e.sid])).toEqual([
      [EVT.C_BAD_STE, 1],
      [EVT.C_BAD_CD, 2],
      [EVT.F_CD_FETCH, 3],
      [EVT.F_WALK_EABT, 4],
    ]);
    expect(ev[2].d3).toBe(HOLE);
    expect(ev[3]).toMatchObject({ s2: false, cls: 1, addr: IOVA, d3: HOLE + Math.floor(IOVA / 2 ** 30) % 512 * 8 });
  });

  it('F_TRANSLATION / F_ACCESS / F_PERMISSION / F_ADDR_SIZE with RnW, PnU, InD and the input address', () => {
    const rig = new Rig();
    rig.init();
    const { pt } = rig.s1Context(5, 3, {}, { ips: 0 }); // 32-bit IPS
    pt.map(IOVA, rig.alloc(0x1000), 0x1000, { write: false });
    pt.map(IOVA + 0x1000, rig.alloc(0x1000), 0x1000, { noAf: true });
    pt.map(IOVA + 0x2000, 0x1_0000_0000, 0x1000); // output beyond 32 bits
    pt.map(IOVA + 0x3000, rig.alloc(0x1000), 0x1000, { exec: false });
    rig.dma({ streamId: 5, addr: IOVA + 0x10, write: true, priv: true });
    rig.dma({ streamId: 5, addr: IOVA + 0x1000 });
    rig.dma({ streamId: 5, addr: IOVA + 0x2000 });
    rig.dma({ streamId: 5, addr: IOVA + 0x3000, exec: true });
    rig.dma({ streamId: 5, addr: IOVA + 0x9000 });
    const ev = rig.events();
    expect(ev.map((e) => e.id)).toEqual([EVT.F_PERMISSION, EVT.F_ACCESS, EVT.F_ADDR_SIZE, EVT.F_PERMISSION, EVT.F_TRANSLATION]);
    expect(ev[0]).toMatchObject({ sid: 5, addr: IOVA + 0x10, rnw: false, pnu: true, ind: false, s2: false, cls: 2 });
    expect(ev[1]).toMatchObject({ rnw: true, pnu: false, addr: IOVA + 0x1000 });
    expect(ev[3]).toMatchObject({ rnw: true, ind: true, addr: IOVA + 0x3000 });
  });

  it('stage 2 faults while fetching a CD (CLASS CD) and walking stage 1 tables (CLASS TT) carry the IPA', () => {
    const rig = new Rig();
    rig.init();
    const s2 = new PageTable(rig, 2);
    const s2ste = { config: 0b111, vmid: 2, s2t0sz: 16, s2sl0: 2, s2ps: 5, s2ttb: s2.root };
    rig.writeSte(1, ste({ ...s2ste, s1ContextPtr: 0x5000_0000 })); // CD IPA not mapped
    const cdPa = rig.alloc(0x1000);
    s2.map(0x6000_0000, cdPa, 0x1000);
    rig.writeDwords(cdPa, cd({ asid: 1, ttb0: 0x7000_0000 })); // stage 1 tables at an unmapped IPA
    rig.writeSte(2, ste({ ...s2ste, s1ContextPtr: 0x6000_0000 }));
    expect(rig.dma({ streamId: 1, addr: IOVA }).c?.status).toBe('fault');
    expect(rig.dma({ streamId: 2, addr: IOVA }).c?.status).toBe('fault');
    const ev = rig.events();
    expect(ev[0]).toMatchObject({ id: EVT.F_TRANSLATION, sid: 1, s2: true, cls: 0, ipa: 0x5000_0000 });
    expect(ev[1]).toMatchObject({ id: EVT.F_TRANSLATION, sid: 2, s2: true, cls: 1, ipa: 0x7000_0000, addr: IOVA });
  });

  it('CD.R == 0 suppresses the record; CD.A == 0 terminates with RAZ/WI', () => {
    const rig = new Rig();
    rig.init();
    rig.s1Context(5, 3, {}, { r: false, a: false });
    const r = rig.dma({ streamId: 5, addr: IOVA, len: 8 });
    expect(r.c?.status).toBe('terminated');
    expect([...r.c!.data!]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(rig.events()).toEqual([]);
  });

  it('delivers the Event queue interrupt as an MSI when EVENTQ_IRQ_CFG0 is set', () => {
    const rig = new Rig();
    rig.init();
    const doorbell = rig.alloc(0x1000);
    rig.w32(REG.IRQ_CTRL, IRQ_GERROR);
    rig.settle();
    rig.w64(REG.EVENTQ_IRQ_CFG0, doorbell);
    rig.w32(REG.EVENTQ_IRQ_CFG1, 0x1234);
    rig.w32(REG.IRQ_CTRL, IRQ_GERROR | IRQ_EVTQ);
    rig.settle();
    rig.writeSte(1, ste({ v: false, config: 0 }));
    rig.dma({ streamId: 1, addr: 0 });
    expect(rig.memory.read32(doorbell)).toBe(0x1234);
    expect(rig.irqs.eventq).toBe(0); // an MSI instead of the wired line
  });
});

describe('SMMUv3 model: Event queue overflow', () => {
  it('writes nothing past a full queue, toggles OVFLG once and counts the lost records', () => {
    const rig = new Rig();
    rig.init({ evtqLog2: 1 }); // two entries
    rig.writeSte(1, ste({ v: false, config: 0 }));
    for (let i = 0; i < 5; i++) rig.dma({ streamId: 1, addr: i * 0x1000 });
    const prod = rig.r32(REG.EVENTQ_PROD);
    expect(prod >>> 31).toBe(1); // OVFLG
    expect(prod & 3).toBe(0b10); // index 0, wrap 1: full
    expect(rig.smmu.events.stats).toMatchObject({ written: 2, overflowed: 3 });
    // The memory after the queue was not touched.
    expect(rig.memory.read64(rig.evtq.base + 64)).toBe(0n);
    const ev = rig.events(); // consumes both; acknowledges nothing yet
    expect(ev.map((e) => e.addr)).toEqual([0, 0x1000]);
    // Still unacknowledged: a new overflow cannot be signalled again, but records are written.
    rig.dma({ streamId: 1, addr: 0x9000 });
    expect(rig.r32(REG.EVENTQ_PROD) >>> 31).toBe(1);
    // Acknowledge: CONS.OVACKFLG = PROD.OVFLG.
    rig.evtq.cons |= 0x8000_0000;
    const ev2 = rig.events();
    expect(ev2.map((e) => e.addr)).toEqual([0x9000]);
    expect((rig.r32(REG.EVENTQ_PROD) ^ rig.r32(REG.EVENTQ_CONS)) >>> 31).toBe(0);
  });

  it('raises GERROR.EVENTQ_ABT_ERR when writing a record aborts, and writes nothing until it is acknowledged', () => {
    const rig = new Rig();
    rig.init();
    rig.setCr0(CR0_CMDQEN | CR0_PRIQEN | CR0_SMMUEN);
    rig.w64(REG.EVENTQ_BASE, BigInt(HOLE) | 4n);
    rig.setCr0(CR0_CMDQEN | CR0_EVTQEN | CR0_PRIQEN | CR0_SMMUEN);
    rig.writeSte(1, ste({ v: false, config: 0 }));
    rig.dma({ streamId: 1, addr: 0 });
    expect(rig.r32(REG.GERROR) & (1 << 2)).toBe(1 << 2);
    expect(rig.smmu.events.stats).toMatchObject({ writeAborts: 1, written: 0 });
    rig.dma({ streamId: 1, addr: 0x1000 });
    expect(rig.smmu.events.stats).toMatchObject({ writeAborts: 1, dropped: 1 });
  });

  it('drops records while EVENTQEN is clear', () => {
    const rig = new Rig();
    rig.init();
    rig.setCr0(CR0_CMDQEN | CR0_SMMUEN);
    rig.writeSte(1, ste({ v: false, config: 0 }));
    rig.dma({ streamId: 1, addr: 0 });
    expect(rig.smmu.events.stats.dropped).toBe(1);
    expect(rig.r32(REG.EVENTQ_PROD)).toBe(0);
    rig.issue(CMD.sync());
  });
});
