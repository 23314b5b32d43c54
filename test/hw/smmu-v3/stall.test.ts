import { describe, expect, it } from 'vitest';
import { CMD, CR0_CMDQEN, CR0_EVTQEN, EVT, Rig, ste } from './rig.js';

const IOVA = 0x1_0000;

function stallRig(opts: { evtqLog2?: number } = {}): { rig: Rig; pt: import('./rig.js').PageTable; buf: number } {
  const rig = new Rig();
  rig.init({ evtqLog2: opts.evtqLog2 ?? 6 });
  const { pt } = rig.s1Context(7, 5, {}, { s: true });
  const buf = rig.alloc(0x1000);
  rig.memory.write32(buf, 0x600d);
  return { rig, pt, buf };
}

describe('SMMUv3 model: stalls', () => {
  it('holds a faulting transaction with a STAG until CMD_RESUME(retry) replays it', () => {
    const { rig, pt, buf } = stallRig();
    const t = rig.dma({ streamId: 7, addr: IOVA, priv: true });
    expect(t.c).toBeNull();
    const [ev] = rig.events();
    expect(ev).toMatchObject({ id: EVT.F_TRANSLATION, sid: 7, stall: true, addr: IOVA, rnw: true, pnu: true });
    expect(rig.smmu.stalls.count).toBe(1);
    pt.map(IOVA, buf, 0x1000);
    rig.issue(CMD.resume(8, ev.stag, 1)); // wrong StreamID: no effect
    expect(t.c).toBeNull();
    rig.issue(CMD.resume(7, ev.stag, 1));
    expect(t.c?.status).toBe('ok');
    expect(new DataView(t.c!.data!.buffer).getUint32(0, true)).toBe(0x600d);
    expect(rig.smmu.stalls.count).toBe(0);
  });

  it('a retry that faults again stalls again with a new record', () => {
    const { rig } = stallRig();
    const t = rig.dma({ streamId: 7, addr: IOVA });
    const [first] = rig.events();
    rig.issue(CMD.resume(7, first.stag, 1));
    expect(t.c).toBeNull();
    const [second] = rig.events();
    expect(second).toMatchObject({ stall: true, addr: IOVA });
    rig.issue(CMD.resume(7, second.stag, 2));
    expect(t.c?.status).toBe('abort');
  });

  it('terminates with an abort (Resp ABORT), RAZ/WI (Resp TERM) or CMD_STALL_TERM', () => {
    const { rig } = stallRig();
    const a = rig.dma({ streamId: 7, addr: IOVA });
    const b = rig.dma({ streamId: 7, addr: IOVA + 0x1000, len: 8 });
    const c = rig.dma({ streamId: 7, addr: IOVA + 0x2000, write: true });
    const [ea, eb] = rig.events();
    rig.issue(CMD.resume(7, ea.stag, 2), CMD.resume(7, eb.stag, 0));
    expect(a.c?.status).toBe('abort');
    expect(b.c?.status).toBe('terminated');
    expect([...b.c!.data!]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(c.c).toBeNull();
    rig.issue(CMD.stallTerm(7));
    expect(c.c?.status).toBe('abort');
  });

  it('never discards a stall record: it waits for room in a full Event queue', () => {
    const { rig } = stallRig({ evtqLog2: 1 });
    rig.writeSte(1, ste({ v: false, config: 0 }));
    rig.dma({ streamId: 1, addr: 0 });
    rig.dma({ streamId: 1, addr: 0x1000 }); // queue now full
    const t = rig.dma({ streamId: 7, addr: IOVA });
    expect(t.c).toBeNull();
    expect(rig.smmu.events.heldCount).toBe(1);
    expect(rig.smmu.events.stats.overflowed).toBe(0);
    const drained = rig.events();
    expect(drained.map((e) => e.id)).toEqual([EVT.C_BAD_STE, EVT.C_BAD_STE]);
    rig.settle();
    const [stallEv] = rig.events();
    expect(stallEv).toMatchObject({ stall: true, sid: 7 });
    rig.issue(CMD.resume(7, stallEv.stag, 2));
    expect(t.c?.status).toBe('abort');
  });

  it('aborts held transactions when SMMUEN is cleared', () => {
    const { rig } = stallRig();
    const t = rig.dma({ streamId: 7, addr: IOVA });
    expect(t.c).toBeNull();
    rig.setCr0(CR0_CMDQEN | CR0_EVTQEN);
    expect(t.c?.status).toBe('abort');
  });

  it('checks CD.S against the stall model and STE.S1STALLD', () => {
    const rig = new Rig();
    rig.init();
    rig.s1Context(1, 1, { s1stalld: true }, { s: true });
    expect(rig.dma({ streamId: 1, addr: IOVA }).c?.status).toBe('abort');
    expect(rig.events()).toMatchObject([{ id: EVT.C_BAD_CD, sid: 1 }]);
    const forced = new Rig({ stallModel: 2 });
    forced.init();
    forced.s1Context(1, 1, {}, { s: false });
    expect(forced.dma({ streamId: 1, addr: IOVA }).c?.status).toBe('abort');
    expect(forced.events()).toMatchObject([{ id: EVT.C_BAD_CD }]);
    const none = new Rig({ stallModel: 1 });
    none.init();
    none.s1Context(1, 1, {}, { s: true });
    expect(none.dma({ streamId: 1, addr: IOVA }).c?.status).toBe('abort');
    expect(none.events()).toMatchObject([{ id: EVT.C_BAD_CD }]);
  });

  it('stalls a stage 2 fault with STE.S2S', () => {
    const rig = new Rig();
    rig.init();
    const s2root = rig.alloc(0x1000);
    rig.writeSte(2, ste({ config: 0b110, vmid: 1, s2t0sz: 16, s2sl0: 2, s2ps: 5, s2ttb: s2root, s2s: true }));
    const t = rig.dma({ streamId: 2, addr: 0x3000 });
    expect(t.c).toBeNull();
    const [ev] = rig.events();
    expect(ev).toMatchObject({ id: EVT.F_TRANSLATION, s2: true, stall: true, ipa: 0x3000 });
    rig.issue(CMD.resume(2, ev.stag, 2));
    expect(t.c?.status).toBe('abort');
  });
});
