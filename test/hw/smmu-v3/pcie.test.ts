import { describe, expect, it } from 'vitest';
import type { AtsCompletion, AtsRequest, PageRequest } from '../../../hw/dma.js';
import { CMD, CR0_CMDQEN, CR0_EVTQEN, CR0_SMMUEN, EVT, FakeEndpoint, PageTable, REG, Rig, ste } from './rig.js';

const IOVA = 0x1_0000;
const consIndex = (rig: Rig): number => rig.r32(REG.CMDQ_CONS) & 0xfffff;

function ats(rig: Rig, req: Partial<AtsRequest> & { streamId: number; addr: number }): AtsCompletion | null {
  let out: AtsCompletion | null = null;
  rig.smmu.translate({ master: 'ep', ssid: 0, ssidValid: false, write: false, exec: false, priv: false, ...req }, (c) => {
    out = c;
  });
  rig.settle();
  return out;
}

function pr(sid: number, prgIndex: number, over: Partial<PageRequest> = {}): PageRequest {
  return { master: 'ep', streamId: sid, ssid: 0, ssidValid: false, addr: 0x5000, read: true, write: false, exec: false, priv: false, prgIndex, last: true, ...over };
}

interface PriEntry {
  sid: number;
  ssid: number;
  ssv: boolean;
  priv: boolean;
  exec: boolean;
  read: boolean;
  write: boolean;
  last: boolean;
  prg: number;
  addr: number;
}

function priEntries(rig: Rig): PriEntry[] {
  const out: PriEntry[] = [];
  const mask = (1 << (rig.priq.log2 + 1)) - 1;
  const prod = rig.r32(REG.PRIQ_PROD);
  let cons = rig.priq.cons & mask;
  while (cons !== (prod & mask)) {
    const a = rig.priq.base + (cons & ((1 << rig.priq.log2) - 1)) * 16;
    const d0 = rig.memory.read64(a);
    const d1 = rig.memory.read64(a + 8);
    const b = (n: bigint): boolean => ((d0 >> n) & 1n) === 1n;
    out.push({
      sid: Number(d0 & 0xffff_ffffn),
      ssid: Number((d0 >> 32n) & 0xf_ffffn),
      priv: b(58n), exec: b(59n), read: b(60n), write: b(61n), last: b(62n), ssv: b(63n),
      prg: Number(d1 & 0x1ffn),
      addr: Number(d1 & ~0xfffn),
    });
    cons = (cons + 1) & mask;
  }
  rig.priq.cons = cons | (rig.priq.cons & 0x8000_0000);
  rig.w32(REG.PRIQ_CONS, rig.priq.cons);
  return out;
}

describe('SMMUv3 model: ATS', () => {
  it('answers Translation Requests per STE.EATS, with the permissions of the mapping', () => {
    const rig = new Rig();
    rig.init({ strtab: { linear: 9 } });
    const { pt } = rig.s1Context(0x100, 4, { eats: 1 });
    const buf = rig.alloc(0x2000);
    pt.map(IOVA, buf, 0x1000, { write: false });
    pt.map(IOVA + 0x1000, buf + 0x1000, 0x1000);
    expect(ats(rig, { streamId: 0x100, addr: IOVA, write: true })).toMatchObject({ status: 'ok', pa: buf, size: 4096, read: true, write: false });
    expect(ats(rig, { streamId: 0x100, addr: IOVA + 0x1000, write: true })).toMatchObject({ status: 'ok', pa: buf + 0x1000, read: true, write: true });
    // A translation fault answers "no access" and records nothing.
    expect(ats(rig, { streamId: 0x100, addr: 0x90_0000 })).toMatchObject({ status: 'ok', read: false, write: false });
    expect(rig.events()).toEqual([]);
    // EATS == 0: Unsupported Request and F_BAD_ATS_TREQ.
    rig.s1Context(0x101, 4, { eats: 0 });
    expect(ats(rig, { streamId: 0x101, addr: IOVA })?.status).toBe('unsupported');
    expect(rig.events()).toMatchObject([{ id: EVT.F_BAD_ATS_TREQ, sid: 0x101, addr: IOVA }]);
    // Configuration errors complete with Completer Abort and no event.
    rig.writeSte(0x102, ste({ v: false, config: 0b101 }));
    expect(ats(rig, { streamId: 0x102, addr: IOVA })?.status).toBe('abort');
    expect(rig.events()).toEqual([]);
  });

  it('rejects Translation Requests while SMMUEN is clear with F_BAD_ATS_TREQ', () => {
    const rig = new Rig();
    rig.init();
    rig.setCr0(CR0_CMDQEN | CR0_EVTQEN);
    expect(ats(rig, { streamId: 1, addr: IOVA })?.status).toBe('unsupported');
    expect(rig.events()).toMatchObject([{ id: EVT.F_BAD_ATS_TREQ, sid: 1 }]);
  });

  it('checks Translated transactions against EATS when CR0.ATSCHK is set', () => {
    const rig = new Rig();
    rig.init({ atschk: true });
    rig.s1Context(1, 1, { eats: 0 });
    rig.s1Context(2, 1, { eats: 1 });
    const pa = rig.alloc(0x1000);
    expect(rig.dma({ streamId: 1, addr: pa, translated: true }).c?.status).toBe('abort');
    expect(rig.dma({ streamId: 2, addr: pa, translated: true }).c?.status).toBe('ok');
    expect(rig.events()).toMatchObject([{ id: EVT.F_TRANSL_FORBIDDEN, sid: 1, addr: pa }]);
    const open = new Rig();
    open.init();
    open.s1Context(1, 1, { eats: 0 });
    expect(open.dma({ streamId: 1, addr: pa, translated: true }).c?.status).toBe('ok');
  });

  it('split-stage ATS returns the IPA and applies stage 2 to the Translated transaction', () => {
    const rig = new Rig();
    rig.init({ atschk: true });
    const s2 = new PageTable(rig, 2);
    const s1 = new PageTable(rig, 1);
    const cdPa = rig.alloc(0x1000);
    const data = rig.alloc(0x1000);
    rig.memory.write32(data, 0x5b5b);
    s2.map(0x4000_0000, 0x4000_0000, 0x80_0000, {}, true); // identity for tables and the CD
    s2.map(0x3000_0000, data, 0x1000);
    s1.map(IOVA, 0x3000_0000, 0x1000);
    rig.writeDwords(cdPa, handMadeCd(s1.root));
    rig.writeSte(5, ste({ config: 0b111, s1ContextPtr: cdPa, eats: 2, vmid: 3, s2t0sz: 16, s2sl0: 2, s2ps: 5, s2ttb: s2.root }));
    const c = ats(rig, { streamId: 5, addr: IOVA });
    expect(c).toMatchObject({ status: 'ok', pa: 0x3000_0000, read: true });
    const t = rig.dma({ streamId: 5, addr: 0x3000_0000, translated: true });
    expect(t.c?.status).toBe('ok');
    expect(t.c?.pa).toBe(data);
  });
});

function handMadeCd(ttb0: number): bigint[] {
  // A CD built by hand: T0SZ 16, TG0 4K, EPD1, V, IPS 48, AA64, R, A, ASID 9.
  const d0 = 16n | (1n << 30n) | (1n << 31n) | (5n << 32n) | (1n << 41n) | (1n << 45n) | (1n << 46n) | (9n << 48n);
  return [d0, BigInt(ttb0), 0n, 0n, 0n, 0n, 0n, 0n];
}

describe('SMMUv3 model: ATC invalidation', () => {
  it('sends CMD_ATC_INV to the endpoint and completes the CMD_SYNC only when it answers', () => {
    const rig = new Rig();
    rig.init();
    const ep = new FakeEndpoint('ep', rig, 5_000);
    rig.smmu.bindEndpoint(0x100, ep);
    const start = consIndex(rig);
    rig.post(CMD.atcInv(0x100, 0x12_3000, 2, 7), CMD.sync());
    rig.scheduler.runSyncUntilIdle(3_000);
    expect(ep.invalidations).toEqual([{ ssid: 7, global: false, addr: 0x12_0000, size: 0x4000 }]);
    expect(consIndex(rig)).toBe(start + 1); // the sync waits
    rig.settle();
    expect(consIndex(rig)).toBe(start + 2);
    rig.issue(CMD.atcInv(0x100, 0, 52));
    expect(ep.invalidations[1]).toEqual({ ssid: null, global: false, addr: 0, size: Infinity });
  });

  it('fails the CMD_SYNC with CERROR_ATC_INV_SYNC when the endpoint never answers, then recovers', () => {
    const rig = new Rig({ timing: { atcInvTimeoutNs: 50_000 } });
    rig.init();
    const ep = new FakeEndpoint('ep', rig);
    ep.answers = false;
    rig.smmu.bindEndpoint(0x100, ep);
    const start = consIndex(rig);
    const t0 = rig.scheduler.now;
    rig.issue(CMD.atcInv(0x100, 0x1000, 0), CMD.sync());
    expect(consIndex(rig)).toBe(start + 1);
    expect((rig.r32(REG.CMDQ_CONS) >>> 24) & 0x7f).toBe(3);
    expect(rig.scheduler.now - t0).toBeGreaterThanOrEqual(50_000);
    // The kernel acknowledges; the CMD_SYNC is retried and now completes.
    rig.w32(REG.GERRORN, rig.r32(REG.GERROR));
    rig.settle();
    expect(consIndex(rig)).toBe(start + 2);
  });
});

describe('SMMUv3 model: PRI', () => {
  it('records page requests in the PRI queue and answers with CMD_PRI_RESP', () => {
    const rig = new Rig();
    rig.init();
    const ep = new FakeEndpoint('ep', rig);
    rig.smmu.bindEndpoint(0x100, ep);
    rig.smmu.pageRequest(pr(0x100, 5, { ssidValid: true, ssid: 3, write: true, priv: true, addr: 0x7_8000, last: false }));
    rig.smmu.pageRequest(pr(0x100, 5, { ssidValid: true, ssid: 3, addr: 0x7_9000 }));
    rig.settle();
    const e = priEntries(rig);
    expect(e).toEqual([
      { sid: 0x100, ssid: 3, ssv: true, priv: true, exec: false, read: true, write: true, last: false, prg: 5, addr: 0x7_8000 },
      { sid: 0x100, ssid: 3, ssv: true, priv: false, exec: false, read: true, write: false, last: true, prg: 5, addr: 0x7_9000 },
    ]);
    expect(rig.irqs.priq).toBe(1);
    rig.issue(CMD.priResp(0x100, 5, 2, 3), CMD.priResp(0x100, 6, 0), CMD.priResp(0x100, 7, 1));
    expect(ep.responses).toEqual([
      { prgIndex: 5, ssid: 3, ssidValid: true, code: 'success' },
      { prgIndex: 6, ssid: 0, ssidValid: false, code: 'invalid' },
      { prgIndex: 7, ssid: 0, ssidValid: false, code: 'failure' },
    ]);
  });

  it('on overflow discards requests, toggles OVFLG, and auto-responds Success to Last ones until acknowledged', () => {
    const rig = new Rig();
    rig.init({ priqLog2: 1 });
    const ep = new FakeEndpoint('ep', rig);
    rig.smmu.bindEndpoint(0x100, ep);
    for (let i = 0; i < 4; i++) rig.smmu.pageRequest(pr(0x100, i, { ssidValid: i === 2, ssid: 9, last: i !== 3 }));
    rig.settle();
    expect(rig.r32(REG.PRIQ_PROD) >>> 31).toBe(1);
    // PRG 2 (Last, with PASID) got an automatic Success carrying its PASID; PRG 3 (not Last) nothing.
    expect(ep.responses).toEqual([{ prgIndex: 2, ssid: 9, ssidValid: true, code: 'success' }]);
    expect(priEntries(rig).map((e) => e.prg)).toEqual([0, 1]);
    // Room again, but the overflow is not acknowledged: still discarded.
    rig.smmu.pageRequest(pr(0x100, 4));
    rig.settle();
    expect(ep.responses.map((r) => r.prgIndex)).toEqual([2, 4]);
    rig.priq.cons |= 0x8000_0000;
    rig.w32(REG.PRIQ_CONS, rig.priq.cons);
    rig.smmu.pageRequest(pr(0x100, 8));
    rig.settle();
    expect(priEntries(rig).map((e) => e.prg)).toEqual([8]);
    expect(rig.smmu.priq.stats.overflowed).toBe(3);
  });

  it('answers every request with Response Failure while PRIQEN is clear', () => {
    const rig = new Rig();
    rig.init();
    rig.setCr0(CR0_CMDQEN | CR0_EVTQEN | CR0_SMMUEN);
    const ep = new FakeEndpoint('ep', rig);
    rig.smmu.bindEndpoint(0x100, ep);
    rig.smmu.pageRequest(pr(0x100, 1, { ssidValid: true, ssid: 4 }));
    rig.settle();
    expect(ep.responses).toEqual([{ prgIndex: 1, ssid: 0, ssidValid: false, code: 'failure' }]);
    expect(rig.r32(REG.PRIQ_PROD)).toBe(0);
  });
});
