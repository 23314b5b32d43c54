import { describe, expect, it } from 'vitest';
import { CMD, cd, FakeEndpoint, PageTable, REG, ste } from '../smmu-v3/rig.js';
import { alloc, CmdqvRig, consErr, CV, HYP_OWN, Q, vmidField, VINTF_EN } from './rig.js';

const word = (d: Uint8Array | undefined): number => (d ? new DataView(d.buffer, d.byteOffset).getUint32(0, true) : -1);

/** A rig with the SMMU up, the CMDQV enabled and VINTF `v` enabled. */
function up(opts: ConstructorParameters<typeof CmdqvRig>[0] = {}): CmdqvRig {
  const rig = new CmdqvRig(opts);
  rig.init();
  rig.enableCmdqv();
  return rig;
}

describe('Tegra241 CMDQV model: config page', () => {
  it('PARAM advertises the configured numbers of VINTFs, VCMDQs and SID pairs', () => {
    const rig = new CmdqvRig({ vintfsLog2: 1, vcmdqsLog2: 3, sidPairsLog2: 3 });
    expect(rig.cr(CV.PARAM)).toBe(0x3 << 12 | 1 << 8 | 3 << 4 | 1);
    const dflt = new CmdqvRig();
    expect(dflt.cr(CV.PARAM)).toBe(0x4 << 12 | 2 << 8 | 4 << 4 | 1);
  });

  it('STATUS follows CONFIG.CMDQV_EN only in a later scheduler step', () => {
    const rig = new CmdqvRig({ configReset: 0x20082 });
    expect(rig.cr(CV.STATUS) & 1).toBe(0);
    rig.cw(CV.CONFIG, 0x20083);
    expect(rig.cr(CV.CONFIG)).toBe(0x20083);
    expect(rig.cr(CV.STATUS) & 1).toBe(0);
    rig.settle();
    expect(rig.cr(CV.STATUS) & 1).toBe(1);
    rig.cw(CV.CONFIG, 0x20082);
    rig.settle();
    expect(rig.cr(CV.STATUS) & 1).toBe(0);
  });

  it('read-only registers ignore writes; unknown offsets read zero and ignore writes', () => {
    const rig = new CmdqvRig();
    const param = rig.cr(CV.PARAM);
    rig.cw(CV.PARAM, 0);
    rig.cw(CV.STATUS, 0);
    rig.cw(CV.VI_ERR_MAP0, 0xffff_ffff);
    expect(rig.cr(CV.PARAM)).toBe(param);
    expect(rig.cr(CV.VI_ERR_MAP0)).toBe(0);
    rig.cw(0x800, 0x1234);
    expect(rig.cr(0x800)).toBe(0);
  });

  it('VINTF_CONFIG: ENABLE shows in VINTF_STATUS a step later; VMID and HYP_OWN latch only while disabled', () => {
    const rig = up();
    rig.cw(CV.VINTF_CONFIG(1), vmidField(5) | HYP_OWN | VINTF_EN);
    expect(rig.cr(CV.VINTF_STATUS(1)) & 1).toBe(0);
    rig.settle();
    expect(rig.cr(CV.VINTF_STATUS(1)) & 1).toBe(1);
    // Enabled: a different VMID, or HYP_OWN cleared, does not take.
    rig.cw(CV.VINTF_CONFIG(1), vmidField(6) | VINTF_EN);
    expect(rig.cr(CV.VINTF_CONFIG(1))).toBe(vmidField(5) | HYP_OWN | VINTF_EN);
    rig.cw(CV.VINTF_CONFIG(1), vmidField(5) | HYP_OWN);
    rig.settle();
    expect(rig.cr(CV.VINTF_STATUS(1)) & 1).toBe(0);
    rig.cw(CV.VINTF_CONFIG(1), vmidField(6));
    expect(rig.cr(CV.VINTF_CONFIG(1))).toBe(vmidField(6));
    // The write that disables it (the kernel's deinit writes 0) clears VMID and HYP_OWN too.
    rig.cw(CV.VINTF_CONFIG(1), vmidField(7) | HYP_OWN | VINTF_EN);
    rig.settle();
    rig.cw(CV.VINTF_CONFIG(1), 0);
    expect(rig.cr(CV.VINTF_CONFIG(1))).toBe(0);
  });
});

describe('Tegra241 CMDQV model: register names in MMIO traces', () => {
  it('names global, per-VINTF, direct and logical VCMDQ registers as NVIDIA does (no +0xOFF)', () => {
    const rig = up();
    rig.enableVintf(1, 3, false);
    rig.setupQueue(4, 1, 0);
    const regs: (string | null)[] = [];
    const stop = rig.trace.subscribe((e) => {
      if (e.kind === 'mmio') regs.push(e.reg ?? null);
    });
    for (const off of [CV.CONFIG, CV.PARAM, CV.CMDQ_ALLOC(5), CV.VINTF_CONFIG(1), CV.SID_MATCH(1, 2), CV.SID_REPLACE(1, 15), CV.Q0(4) + Q.PROD, CV.Q1(4) + Q.BASE, CV.L0(1, 0) + Q.CONS, CV.L1(1, 0) + Q.BASE + 4, 0x0f00]) rig.cr(off);
    stop();
    expect(regs).toEqual([
      'CONFIG', 'PARAM', 'CMDQ_ALLOC_MAP_5', 'VINTF1_CONFIG', 'VINTF1_SID_MATCH_2', 'VINTF1_SID_REPLACE_15', 'VCMDQ4_PROD_INDX', 'VCMDQ4_BASE_L',
      'VINTF1_LVCMDQ0_CONS_INDX', 'VINTF1_LVCMDQ0_BASE_H', null,
    ]);
    const page0 = rig.cmdqv.vintfPage0(1);
    expect(page0.registerName?.(Q.GERRORN)).toBe('VINTF1_LVCMDQ0_GERRORN');
  });
});

describe('Tegra241 CMDQV model: CMDQ_ALLOC_MAP and the apertures', () => {
  it('maps LVCMDQs in ascending order only, unmaps in descending order only, one VCMDQ per slot', () => {
    const rig = up();
    rig.cw(CV.CMDQ_ALLOC(5), alloc(1, 1));
    expect(rig.cr(CV.CMDQ_ALLOC(5)) & 1).toBe(0); // LVCMDQ0 of VINTF1 not mapped yet
    rig.cw(CV.CMDQ_ALLOC(4), alloc(1, 0));
    rig.cw(CV.CMDQ_ALLOC(5), alloc(1, 1));
    expect(rig.cr(CV.CMDQ_ALLOC(4))).toBe(alloc(1, 0));
    expect(rig.cr(CV.CMDQ_ALLOC(5))).toBe(alloc(1, 1));
    expect(rig.cr(CV.VINTF_STATUS(1)) >>> 16 & 0xff).toBe(2);
    rig.cw(CV.CMDQ_ALLOC(6), alloc(1, 1));
    expect(rig.cr(CV.CMDQ_ALLOC(6)) & 1).toBe(0); // slot taken
    rig.cw(CV.CMDQ_ALLOC(4), alloc(1, 0, false));
    expect(rig.cr(CV.CMDQ_ALLOC(4)) & 1).toBe(1); // LVCMDQ1 still mapped
    rig.cw(CV.CMDQ_ALLOC(5), alloc(1, 1, false));
    rig.cw(CV.CMDQ_ALLOC(4), alloc(1, 0, false));
    expect(rig.cr(CV.CMDQ_ALLOC(4)) & 1).toBe(0);
    expect(rig.cr(CV.VINTF_STATUS(1)) >>> 16 & 0xff).toBe(0);
  });

  it('allocOrder "free" accepts any order', () => {
    const rig = new CmdqvRig({ allocOrder: 'free' });
    rig.cw(CV.CMDQ_ALLOC(3), alloc(0, 2));
    expect(rig.cr(CV.CMDQ_ALLOC(3))).toBe(alloc(0, 2));
  });

  it('the logical aperture aliases the direct one; a logical slot with nothing mapped reads zero and drops writes', () => {
    const rig = up();
    rig.cw(CV.CMDQ_ALLOC(6), alloc(1, 0));
    rig.cw64(CV.L1(1, 0) + Q.BASE, 0x4800_0000n | 5n);
    expect(rig.cr(CV.Q1(6) + Q.BASE)).toBe(0x4800_0005);
    rig.cw(CV.Q0(6) + Q.PROD, 3);
    expect(rig.cr(CV.L0(1, 0) + Q.PROD)).toBe(3);
    rig.cw(CV.L0(1, 1) + Q.PROD, 7);
    rig.cw64(CV.L1(1, 1) + Q.BASE, 0x4900_0000n | 5n);
    expect(rig.cr(CV.L0(1, 1) + Q.PROD)).toBe(0);
    for (let q = 0; q < 16; q++) expect([q, rig.cr(CV.Q1(q) + Q.BASE)]).toEqual([q, q === 6 ? 0x4800_0005 : 0]);
  });

  it('an enabled VCMDQ ignores BASE, CONS and CMDQ_ALLOC_MAP writes', () => {
    const rig = up();
    rig.enableVintf(0, 0, true);
    rig.setupQueue(0, 0, 0);
    const base = rig.cr(CV.Q1(0) + Q.BASE);
    rig.cw64(CV.Q1(0) + Q.BASE, 0x4a00_0000n | 4n);
    rig.cw(CV.Q0(0) + Q.CONS, 5);
    rig.cw(CV.CMDQ_ALLOC(0), alloc(0, 0, false));
    expect(rig.cr(CV.Q1(0) + Q.BASE)).toBe(base);
    expect(rig.cr(CV.Q0(0) + Q.CONS)).toBe(0);
    expect(rig.cr(CV.CMDQ_ALLOC(0))).toBe(alloc(0, 0));
  });
});

describe('Tegra241 CMDQV model: VCMDQ consumption', () => {
  it('a host-owned VCMDQ consumes in scheduler steps, not in the PROD write, only while everything is enabled', () => {
    const rig = up();
    rig.enableVintf(0, 0, true);
    rig.setupQueue(1, 0, 0); // VCMDQ 1 as VINTF0's LVCMDQ0
    rig.postQ(1, CMD.cfgiAll(), CMD.tlbiNsnhAll(), CMD.sync());
    expect(rig.consQ(1)).toBe(0);
    rig.settle();
    expect(rig.consQ(1)).toBe(3);
    // VINTF disabled: commands wait.
    rig.cw(CV.VINTF_CONFIG(0), HYP_OWN);
    rig.settle();
    rig.issueQ(1, CMD.tlbiNsnhAll(), CMD.sync());
    expect(rig.consQ(1)).toBe(3);
    rig.enableVintf(0, 0, true);
    expect(rig.consQ(1)).toBe(5);
    // CMDQV disabled: likewise.
    rig.enableCmdqv(false);
    rig.issueQ(1, CMD.sync());
    expect(rig.consQ(1)).toBe(5);
    rig.enableCmdqv(true);
    expect(rig.consQ(1)).toBe(6);
  });

  it('a host-owned VCMDQ executes the full command set with the SMMU (CFGI_STE takes effect)', () => {
    const rig = up();
    rig.enableVintf(0, 0, true);
    rig.setupQueue(0, 0, 0);
    const data = rig.alloc(0x1000);
    rig.memory.write32(data, 0xabcd);
    rig.writeSte(9, ste({ config: 0b100 }));
    expect(word(rig.dma({ streamId: 9, addr: data }).c?.data)).toBe(0xabcd);
    rig.writeSte(9, ste({ config: 0b000 })); // abort, but cached
    expect(rig.dma({ streamId: 9, addr: data }).c?.status).toBe('ok');
    rig.issueQ(0, CMD.cfgiSte(9), CMD.sync());
    expect(rig.dma({ streamId: 9, addr: data }).c?.status).toBe('abort');
    expect(consErr(rig.consQ(0))).toBe(0);
  });

  it.each([
    ['parallel', 20 * 20, 20 * 20 + 20],
    ['arbiter', 40 * 20, 40 * 20 + 20],
  ] as const)('vcmdqService %s: two VCMDQs of 20 commands each (20 ns per command) finish in %i ns', (service, lo, hi) => {
    const rig = up({ vcmdqService: service });
    rig.enableVintf(0, 0, true);
    rig.setupQueue(0, 0, 0);
    rig.setupQueue(1, 0, 1);
    const t0 = rig.scheduler.now;
    let done0 = -1;
    let done1 = -1;
    rig.postQ(0, ...Array.from({ length: 20 }, () => CMD.tlbiNsnhAll()));
    rig.postQ(1, ...Array.from({ length: 20 }, () => CMD.tlbiNsnhAll()));
    while (done0 < 0 || done1 < 0) {
      if (!rig.scheduler.step()) break;
      if (done0 < 0 && rig.consQ(0) === 20) done0 = rig.scheduler.now - t0;
      if (done1 < 0 && rig.consQ(1) === 20) done1 = rig.scheduler.now - t0;
    }
    // In parallel each queue takes its own 20 x 20 ns; behind one arbiter the second waits for the first.
    expect(Math.max(done0, done1)).toBeGreaterThanOrEqual(lo);
    expect(Math.max(done0, done1)).toBeLessThanOrEqual(hi);
  });

  it('commands written while a step is pending wait for a step of their own: the step consumes only what its delay paid for', () => {
    const rig = up();
    rig.enableVintf(0, 0, true);
    rig.setupQueue(0, 0, 0);
    const t0 = rig.scheduler.now;
    rig.postQ(0, CMD.tlbiNsnhAll());
    rig.postQ(0, ...Array.from({ length: 9 }, () => CMD.tlbiNsnhAll()));
    let at1 = -1;
    while (rig.consQ(0) < 10 && rig.scheduler.step()) if (at1 < 0 && rig.consQ(0) >= 1) at1 = rig.scheduler.now - t0;
    expect(at1).toBe(20);
    expect(rig.consQ(0)).toBe(10);
    expect(rig.scheduler.now - t0).toBe(20 + 9 * 20);
  });
});

describe('Tegra241 CMDQV model: errors', () => {
  it('an illegal command: CONS.ERR, GERROR toggled, error maps and one interrupt; GERRORN resumes', () => {
    const rig = up();
    rig.enableVintf(0, 0, true);
    rig.setupQueue(0, 0, 0);
    rig.setupQueue(1, 0, 1);
    rig.issueQ(1, CMD.tlbiNsnhAll(), CMD.raw(0x7fn, 0n), CMD.tlbiNsnhAll(), CMD.sync());
    const cons = rig.consQ(1);
    expect(cons & 0xfffff).toBe(1);
    expect(consErr(cons)).toBe(1);
    expect(rig.cr(CV.Q0(1) + Q.GERROR) & 1).toBe(1);
    expect(rig.cr(CV.Q0(1) + Q.GERRORN) & 1).toBe(0);
    expect(rig.cr(CV.CMDQ_ERR_MAP(0))).toBe(1 << 1);
    expect(rig.cr(CV.LVCMDQ_ERR_MAP(0, 0))).toBe(1 << 1);
    expect(rig.cr(CV.VI_ERR_MAP0)).toBe(1);
    expect(rig.cr(CV.VINTF_STATUS(0)) >>> 1 & 7).toBe(1);
    expect(rig.cmdqvIrqs).toBe(1);
    // The other queue is unaffected.
    rig.issueQ(0, CMD.tlbiNsnhAll(), CMD.sync());
    expect(rig.consQ(0)).toBe(2);
    // Fix the entry (a CMD_SYNC, as the kernel does) and acknowledge.
    const s = rig.queues.get(1)!;
    rig.memory.write64(s.base + 16, 0x46n);
    rig.memory.write64(s.base + 24, 0n);
    rig.cw(CV.Q0(1) + Q.GERRORN, rig.cr(CV.Q0(1) + Q.GERROR));
    rig.settle();
    expect(rig.consQ(1) & 0xfffff).toBe(4);
    expect(rig.cr(CV.CMDQ_ERR_MAP(0))).toBe(0);
    expect(rig.cr(CV.VI_ERR_MAP0)).toBe(0);
  });

  it('VI_INT_MASK suppresses the interrupt but not the error maps', () => {
    const rig = up();
    rig.enableVintf(2, 4, false);
    rig.setupQueue(8, 2, 0);
    rig.cw(CV.VI_INT_MASK0, 1 << 2);
    rig.issueQ(8, CMD.cfgiAll(), CMD.sync());
    expect(consErr(rig.consQ(8))).toBe(1);
    expect(rig.cr(CV.VI_ERR_MAP0)).toBe(1 << 2);
    expect(rig.cmdqvIrqs).toBe(0);
  });
});

describe('Tegra241 CMDQV model: a HYP_OWN=0 VINTF (the 2021 thread\'s questions)', () => {
  /** Guest-owned VINTF `v` (VMID `vmid`) with global VCMDQ `q` as its LVCMDQ 0, vSID 3 → pSID `psid`, an endpoint on `psid`. */
  function guestVintf(rig: CmdqvRig, v: number, vmid: number, q: number, psid: number, name: string): FakeEndpoint {
    rig.enableVintf(v, vmid, false);
    rig.setupQueue(q, v, 0);
    rig.cw(CV.SID_REPLACE(v, 0), psid);
    rig.cw(CV.SID_MATCH(v, 0), (3 << 1) | 1);
    const ep = new FakeEndpoint(name, rig);
    rig.smmu.bindEndpoint(psid, ep);
    return ep;
  }

  function guest(opts: ConstructorParameters<typeof CmdqvRig>[0] = {}): { rig: CmdqvRig; ep: FakeEndpoint } {
    const rig = up(opts);
    const ep = guestVintf(rig, 1, 9, 4, 0x42, 'ep');
    return { rig, ep };
  }

  it('HYP_OWN=0 reads back 0 once written so, and a guest-owned VINTF cannot set it while enabled', () => {
    const { rig } = guest();
    expect(rig.cr(CV.VINTF_CONFIG(1)) & HYP_OWN).toBe(0);
    rig.cw(CV.VINTF_CONFIG(1), vmidField(9) | HYP_OWN | VINTF_EN);
    expect(rig.cr(CV.VINTF_CONFIG(1)) & HYP_OWN).toBe(0);
  });

  it('writes through the VINTF page0 (all a guest is given) never reach VINTF_CONFIG, SID pairs or other VINTFs', () => {
    const { rig } = guest();
    rig.enableVintf(2, 11, false);
    rig.setupQueue(8, 2, 0);
    const page0 = rig.cmdqv.vintfPage0(1);
    const before = [CV.VINTF_CONFIG(1), CV.SID_MATCH(1, 0), CV.SID_REPLACE(1, 0), CV.VINTF_CONFIG(2), CV.Q1(8) + Q.BASE, CV.Q1(4) + Q.BASE].map((o) => rig.cr(o));
    for (let off = 0x80; off < 0x1_0000; off += 4) page0.write32(off, HYP_OWN | 1);
    const after = [CV.VINTF_CONFIG(1), CV.SID_MATCH(1, 0), CV.SID_REPLACE(1, 0), CV.VINTF_CONFIG(2), CV.Q1(8) + Q.BASE, CV.Q1(4) + Q.BASE].map((o) => rig.cr(o));
    expect(after).toEqual(before);
    // Its own queue's page0 registers are its to drive.
    page0.write32(Q.PROD, 0);
    expect(page0.read32(Q.STATUS) & 1).toBe(1);
  });

  describe('an ATC_INV left pending (no CMD_SYNC after it, the function never answers) when its VCMDQ is disabled', () => {
    /** ATC_INV on VCMDQ 4 with no sync, the endpoint silent; then the VCMDQ disabled. */
    function orphan(): { rig: CmdqvRig; ep: FakeEndpoint } {
      const g = guest();
      g.ep.answers = false;
      g.rig.issueQ(4, CMD.atcInv(3, 0x10_0000, 0));
      expect(g.ep.invalidations).toHaveLength(1);
      g.rig.cw(CV.Q0(4) + Q.CONFIG, 0);
      g.rig.settle();
      expect(g.rig.cr(CV.Q0(4) + Q.STATUS) & 1).toBe(0);
      return g;
    }

    it('the next CMD_SYNC on the main queue waits for it and reports the timeout there (the kernel\'s flush), and nothing is left for the next owner', () => {
      const { rig } = orphan();
      const t0 = rig.scheduler.now;
      rig.issue(CMD.sync());
      // CERROR_ATC_INV_SYNC (3) on the main queue, after the SMMU's ATC invalidation timeout.
      expect((rig.r32(REG.CMDQ_CONS) >>> 24) & 0x7f).toBe(3);
      expect(rig.scheduler.now - t0).toBeGreaterThanOrEqual(90_000);
      expect(rig.smmu.cmdq.stats.atcTimeouts).toBe(1);
      // The host acknowledges; its repeated sync completes.
      rig.w32(REG.GERRORN, rig.r32(REG.GERROR));
      rig.settle();
      expect(rig.r32(REG.CMDQ_CONS) & 0xf_ffff).toBe(rig.r32(REG.CMDQ_PROD) & 0xf_ffff);
      // The next VM's first CMD_SYNC on the same VCMDQ completes at once, with no error.
      rig.cw(CV.Q0(4) + Q.PROD, 0);
      rig.cw(CV.Q0(4) + Q.CONS, 0);
      rig.queues.get(4)!.prod = 0;
      rig.cw(CV.Q0(4) + Q.CONFIG, 1);
      rig.settle();
      const t1 = rig.scheduler.now;
      rig.issueQ(4, CMD.sync());
      expect(consErr(rig.consQ(4))).toBe(0);
      expect(rig.consQ(4) & 0xf_ffff).toBe(1);
      expect(rig.scheduler.now - t1).toBeLessThan(1_000);
    });

    it('without that flush, the next owner\'s first CMD_SYNC on the queue inherits the timeout (the false alarm the flush prevents)', () => {
      const { rig } = orphan();
      rig.cw(CV.Q0(4) + Q.PROD, 0);
      rig.cw(CV.Q0(4) + Q.CONS, 0);
      rig.queues.get(4)!.prod = 0;
      rig.cw(CV.Q0(4) + Q.CONFIG, 1);
      rig.settle();
      rig.issueQ(4, CMD.sync());
      expect(consErr(rig.consQ(4))).toBe(3);
    });

    it('a late answer (after the queue was disabled, before any sync) leaves nothing pending', () => {
      const { rig, ep } = guest();
      const late = new FakeEndpoint('late', rig, 50_000);
      rig.smmu.bindEndpoint(0x42, late);
      rig.issueQ(4, CMD.atcInv(3, 0x10_0000, 0));
      rig.cw(CV.Q0(4) + Q.CONFIG, 0);
      rig.settle();
      expect(late.invalidations).toHaveLength(1);
      expect(ep.invalidations).toHaveLength(0);
      const t0 = rig.scheduler.now;
      rig.issue(CMD.sync());
      expect((rig.r32(REG.CMDQ_CONS) >>> 24) & 0x7f).toBe(0);
      expect(rig.scheduler.now - t0).toBeLessThan(1_000);
    });

    it('answered late while the main queue\'s CMD_SYNC waits for it: the sync completes then, without error', () => {
      const { rig } = guest();
      const late = new FakeEndpoint('late', rig, 50_000);
      rig.smmu.bindEndpoint(0x42, late);
      rig.postQ(4, CMD.atcInv(3, 0x10_0000, 0));
      // Let the VCMDQ consume it, not the answer arrive.
      for (let i = 0; i < 100 && late.invalidations.length === 0; i++) rig.scheduler.step();
      rig.cw(CV.Q0(4) + Q.CONFIG, 0);
      const t0 = rig.scheduler.now;
      rig.issue(CMD.sync());
      expect((rig.r32(REG.CMDQ_CONS) >>> 24) & 0x7f).toBe(0);
      expect(rig.scheduler.now - t0).toBeGreaterThan(40_000);
      expect(rig.scheduler.now - t0).toBeLessThan(100_000);
    });
  });

  it('ATC_INV: the StreamID is matched and replaced; an unmatched one is an illegal command', () => {
    const { rig, ep } = guest();
    rig.issueQ(4, CMD.atcInv(3, 0x10_0000, 0), CMD.sync());
    expect(ep.invalidations).toHaveLength(1);
    expect(consErr(rig.consQ(4))).toBe(0);
    expect(rig.consQ(4) & 0xfffff).toBe(2);
    rig.issueQ(4, CMD.atcInv(0x42, 0, 0), CMD.sync()); // the physical SID itself is not a guest's to name
    expect(ep.invalidations).toHaveLength(1);
    expect(consErr(rig.consQ(4))).toBe(1);
    expect(rig.consQ(4) & 0xfffff).toBe(2);
    expect(rig.cr(CV.LVCMDQ_ERR_MAP(1, 0))).toBe(1);
    expect(rig.cr(CV.VI_ERR_MAP0)).toBe(1 << 1);
    expect(rig.cmdqvIrqs).toBe(1);
  });

  it('a disabled SID pair matches nothing', () => {
    const { rig, ep } = guest();
    rig.cw(CV.SID_MATCH(1, 0), 3 << 1);
    rig.issueQ(4, CMD.atcInv(3, 0, 0), CMD.sync());
    expect(ep.invalidations).toHaveLength(0);
    expect(consErr(rig.consQ(4))).toBe(1);
  });

  it('a batch mixing allowed and forbidden commands executes up to the forbidden one and stops there', () => {
    const { rig, ep } = guest();
    rig.issueQ(4, CMD.atcInv(3, 0, 0), CMD.cfgiSte(3), CMD.atcInv(3, 0, 0), CMD.sync());
    expect(ep.invalidations).toHaveLength(1);
    expect(rig.consQ(4) & 0xfffff).toBe(1);
    expect(consErr(rig.consQ(4))).toBe(1);
  });

  it('the forbidden-command error code is a setting (ILL_ACCESS = 4)', () => {
    const { rig } = guest({ forbiddenCommandError: 'ILL_ACCESS' });
    rig.issueQ(4, CMD.tlbiS12Vmall(9), CMD.sync());
    expect(consErr(rig.consQ(4))).toBe(4);
  });

  it('CMD_SYNC is taken on the VCMDQ with CS=NONE; CS=IRQ is illegal by default, or completed silently', () => {
    const { rig } = guest();
    rig.issueQ(4, CMD.sync(0));
    expect(rig.consQ(4) & 0xfffff).toBe(1);
    const msi = rig.alloc(0x1000);
    rig.memory.write32(msi, 0x1234);
    rig.issueQ(4, CMD.sync(1, msi, 0));
    expect(consErr(rig.consQ(4))).toBe(1);
    expect(rig.memory.read32(msi)).toBe(0x1234);
    const other = guest({ syncCs: 'none' }).rig;
    const msi2 = other.alloc(0x1000);
    other.memory.write32(msi2, 0x1234);
    other.issueQ(4, CMD.sync(1, msi2, 0));
    expect(consErr(other.consQ(4))).toBe(0);
    expect(other.consQ(4) & 0xfffff).toBe(1);
    expect(other.memory.read32(msi2)).toBe(0x1234);
  });

  it('TLBI VMID is replaced by VINTF_CONFIG.VMID: a guest naming another VMID still hits only its own', () => {
    const { rig } = guest();
    // A nested stream (VMID 9, ASID 3) with a cached translation VA 0x7000 → data.
    const s2 = new PageTable(rig, 2);
    const s1 = new PageTable(rig, 1);
    const data = rig.alloc(0x1000);
    const data2 = rig.alloc(0x1000);
    rig.memory.write32(data, 0x1111);
    rig.memory.write32(data2, 0x2222);
    const cdPa = rig.alloc(0x1000);
    s2.map(0x3000_0000, cdPa, 0x1000);
    s2.map(0x4000_0000, 0x4000_0000, 0x40_0000, {}, true);
    s2.map(0x4040_0000, 0x4040_0000, 0x40_0000, {}, true);
    s2.map(0x2000_0000, data, 0x1000);
    s2.map(0x2000_1000, data2, 0x1000);
    s1.map(0x7000, 0x2000_0000, 0x1000);
    rig.writeDwords(cdPa, cd({ asid: 3, ttb0: s1.root }));
    rig.writeSte(0x42, ste({ config: 0b111, s1ContextPtr: 0x3000_0000, vmid: 9, s2t0sz: 16, s2sl0: 2, s2ps: 5, s2ttb: s2.root }));
    const read = (): number => word(rig.dma({ streamId: 0x42, addr: 0x7000 }).c?.data);
    expect(read()).toBe(0x1111);
    s1.unmap(0x7000);
    s1.map(0x7000, 0x2000_1000, 0x1000);
    expect(read()).toBe(0x1111); // stale until invalidated
    // The guest names VMID 1; the hardware uses VINTF1's VMID 9, so the entry goes.
    rig.issueQ(4, CMD.tlbiNhVa(1, 3, 0x7000), CMD.sync());
    expect(consErr(rig.consQ(4))).toBe(0);
    expect(read()).toBe(0x2222);
    // A VINTF with another VMID cannot touch VMID 9's entries, whatever VMID its guest writes.
    rig.enableVintf(2, 10, false);
    rig.setupQueue(8, 2, 0);
    s1.unmap(0x7000);
    s1.map(0x7000, 0x2000_0000, 0x1000);
    rig.issueQ(8, CMD.tlbiNhAsid(9, 3), CMD.sync());
    expect(consErr(rig.consQ(8))).toBe(0);
    expect(read()).toBe(0x2222);
  });

  it('errors on one VINTF never disturb another VINTF\'s queues', () => {
    const { rig, ep } = guest();
    const ep2 = guestVintf(rig, 2, 11, 8, 0x43, 'ep2');
    rig.postQ(4, CMD.cfgiAll(), CMD.sync());
    rig.postQ(8, CMD.atcInv(3, 0, 0), CMD.sync(), CMD.atcInv(3, 0, 0), CMD.sync());
    rig.settle();
    expect(consErr(rig.consQ(4))).toBe(1);
    expect(consErr(rig.consQ(8))).toBe(0);
    expect(rig.consQ(8) & 0xfffff).toBe(4);
    expect(ep2.invalidations).toHaveLength(2);
    expect(ep.invalidations).toHaveLength(0);
    expect(rig.cr(CV.VI_ERR_MAP0)).toBe(1 << 1);
    expect(rig.cr(CV.LVCMDQ_ERR_MAP(2, 0))).toBe(0);
    // And VINTF2 still runs while VINTF1's error is outstanding.
    rig.issueQ(8, CMD.atcInv(3, 0, 0), CMD.sync());
    expect(ep2.invalidations).toHaveLength(3);
    expect(rig.cr(CV.VINTF_STATUS(2)) >>> 1 & 7).toBe(0);
  });

  it('an extended guest command set (a setting) is accepted: TLBI_NH_VAA gets its VMID replaced', () => {
    const { rig } = guest({ guestCommands: [0x11, 0x12, 0x13, 0x40, 0x46] });
    rig.issueQ(4, CMD.tlbiNhVaa(1, 0x7000), CMD.sync());
    expect(consErr(rig.consQ(4))).toBe(0);
    expect(rig.consQ(4) & 0xfffff).toBe(2);
  });
});

describe('Tegra241 CMDQV model: HYP_OWN wired to zero (the guest view)', () => {
  it('HYP_OWN reads 0 whatever is written, and the VINTF filters as a guest-owned one', () => {
    const rig = up({ hypOwnWiredZero: true });
    rig.enableVintf(0, 0, true);
    expect(rig.cr(CV.VINTF_CONFIG(0)) & HYP_OWN).toBe(0);
    rig.setupQueue(0, 0, 0);
    rig.issueQ(0, CMD.cfgiAll(), CMD.sync());
    expect(consErr(rig.consQ(0))).toBe(1);
  });
});

describe('Tegra241 CMDQV model: hostile MMIO', () => {
  it('random 32- and 64-bit accesses anywhere in the aperture never throw, and the hardware keeps running', async () => {
    const { Prng } = await import('../../../hw/prng.js');
    const prng = new Prng(99);
    const rig = up();
    rig.enableVintf(0, 0, true);
    rig.setupQueue(0, 0, 0);
    const size = rig.cmdqv.regionSize;
    // Offsets biased toward the registers that exist.
    const hot = [0x0, 0x14, 0x1c, 0x200, 0x204, 0x1100, 0x1104, 0x1140, 0x1180, 0x10080, 0x10088, 0x20080, 0x50000, 0x50008];
    for (let i = 0; i < 20_000; i++) {
      const r = prng.nextU32();
      const off = (i % 2 === 0 ? hot[r % hot.length] + ((r >>> 8) % 8) * 4 : (r % (size / 4)) * 4) >>> 0;
      if (off === CV.CONFIG || off === CV.VINTF_CONFIG(0) || off === CV.Q0(0) + Q.CONFIG || off === CV.CMDQ_ALLOC(0)) continue;
      if ((r >>> 20) % 4 === 0) rig.cmdqv.read32(off);
      else if ((r >>> 20) % 4 === 1 && off % 8 === 0 && off + 8 <= size) rig.cmdqv.write64(off, BigInt(prng.nextU32()) << 32n | BigInt(prng.nextU32()));
      else rig.cmdqv.write32(off, prng.nextU32());
      if (i % 1000 === 0) rig.settle();
    }
    rig.settle();
    // VCMDQ 0 of VINTF0 still works once its error (if any) is acknowledged and it is re-primed.
    rig.cw(CV.Q0(0) + Q.GERRORN, rig.cr(CV.Q0(0) + Q.GERROR));
    rig.cw(CV.Q0(0) + Q.CONFIG, 0);
    rig.settle();
    rig.cw(CV.Q0(0) + Q.PROD, 0);
    rig.cw(CV.Q0(0) + Q.CONS, 0);
    rig.queues.get(0)!.prod = 0;
    rig.cw64(CV.Q1(0) + Q.BASE, BigInt(rig.queues.get(0)!.base) | 6n);
    rig.cw(CV.Q0(0) + Q.CONFIG, 1);
    rig.settle();
    rig.issueQ(0, CMD.tlbiNsnhAll(), CMD.sync());
    expect(rig.consQ(0) & 0xfffff).toBe(2);
    expect(consErr(rig.consQ(0))).toBe(0);
  });
});
