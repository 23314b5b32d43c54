import { describe, expect, it } from 'vitest';
import { CMD, CR0_CMDQEN, CR0_EVTQEN, CR0_PRIQEN, CR0_SMMUEN, GERROR_CMDQ_ERR, GERROR_MSI_CMDQ_ABT, REG, Rig, bits } from './rig.js';

const consIndex = (rig: Rig): number => rig.r32(REG.CMDQ_CONS) & 0xfffff;
const consErr = (rig: Rig): number => (rig.r32(REG.CMDQ_CONS) >>> 24) & 0x7f;

describe('SMMUv3 model: command consumption', () => {
  it('consumes commands in scheduler steps, not in the PROD write, at a per-command cost', () => {
    const rig = new Rig();
    rig.init();
    const t0 = rig.scheduler.now;
    const start = consIndex(rig);
    const cmds = Array.from({ length: 100 }, (_, i) => CMD.tlbiNhVa(0, 1, i * 0x1000));
    rig.post(...cmds, CMD.sync());
    expect(consIndex(rig)).toBe(start);
    rig.settle();
    expect(consIndex(rig)).toBe((start + 101) & 0x1ff);
    expect(rig.scheduler.now - t0).toBeGreaterThanOrEqual(101 * 20);
    expect(rig.smmu.cmdq.stats.consumed.CMD_TLBI_NH_VA).toBe(100);
  });

  it('never completes a CMD_SYNC while CMDQEN is clear', () => {
    const rig = new Rig();
    rig.init();
    rig.setCr0(CR0_EVTQEN | CR0_PRIQEN | CR0_SMMUEN);
    const start = consIndex(rig);
    rig.post(CMD.sync());
    rig.settle();
    rig.scheduler.schedule(1_000_000, () => {});
    rig.settle();
    expect(consIndex(rig)).toBe(start);
    rig.setCr0(CR0_CMDQEN | CR0_EVTQEN | CR0_PRIQEN | CR0_SMMUEN);
    rig.settle();
    expect(consIndex(rig)).toBe(start + 1);
  });

  it('signals CMD_SYNC completion with an MSI write (Linux polls the entry itself)', () => {
    const rig = new Rig();
    rig.init();
    const idx = rig.cmdq.prod & 0xff;
    const entry = rig.cmdq.base + idx * 16;
    rig.issue(CMD.sync(1, entry, 0));
    expect(rig.memory.read32(entry)).toBe(0); // the opcode word overwritten with MSIData 0
    const flag = rig.alloc(0x1000);
    rig.issue(CMD.sync(1, flag, 0xfeed));
    expect(rig.memory.read32(flag)).toBe(0xfeed);
    // The MSI is the completion interrupt: the wired line stays quiet (spec CMD_SYNC, 3.18).
    expect(rig.irqs['cmdq-sync'] ?? 0).toBe(0);
    expect(rig.irqs.combined ?? 0).toBe(0);
  });

  it('CMD_SYNC CS=SIG_IRQ with MSIAddr 0 raises the wired cmdq-sync line once, and writes nothing', () => {
    const rig = new Rig();
    rig.init();
    const entry = rig.cmdq.base + (rig.cmdq.prod & 0xff) * 16;
    rig.issue(CMD.sync(1, 0, 0));
    expect(rig.irqs['cmdq-sync']).toBe(1);
    expect(rig.memory.read32(entry) & 0xff).toBe(0x46); // the entry is left as written
  });

  it('CMD_SYNC CS=SIG_IRQ on an SMMU without MSIs (IDR0.MSI == 0) raises the wired line only', () => {
    const rig = new Rig({ msi: false });
    rig.init();
    const flag = rig.alloc(0x1000);
    rig.memory.write32(flag, 0x1234);
    rig.issue(CMD.sync(1, flag, 0xfeed));
    expect(rig.memory.read32(flag)).toBe(0x1234);
    expect(rig.irqs['cmdq-sync']).toBe(1);
  });

  it('CMD_SYNC CS=SIG_SEV and CS=NONE raise no interrupt', () => {
    const rig = new Rig();
    rig.init();
    rig.issue(CMD.sync(2), CMD.sync(0));
    expect(rig.irqs['cmdq-sync'] ?? 0).toBe(0);
  });

  it('reports an aborted sync MSI in GERROR.MSI_CMDQ_ABT_ERR', () => {
    const rig = new Rig();
    rig.init();
    rig.issue(CMD.sync(1, 0x2000_0000, 1));
    expect(rig.r32(REG.GERROR) & GERROR_MSI_CMDQ_ABT).toBe(GERROR_MSI_CMDQ_ABT);
  });
});

describe('SMMUv3 model: command errors', () => {
  it('stops at an illegal command with CERROR_ILL, toggles GERROR.CMDQ_ERR, and resumes after the fix', () => {
    const rig = new Rig();
    rig.init();
    const start = consIndex(rig);
    const gerrorBefore = rig.r32(REG.GERROR);
    rig.issue(CMD.tlbiNhAll(0), CMD.raw(0x7fn, 0n), CMD.tlbiNhAll(0), CMD.sync());
    expect(consIndex(rig)).toBe(start + 1);
    expect(consErr(rig)).toBe(1);
    expect((rig.r32(REG.GERROR) ^ gerrorBefore) & GERROR_CMDQ_ERR).toBe(GERROR_CMDQ_ERR);
    expect(rig.irqs.gerror).toBe(1);
    // Nothing moves while the error is active, whatever the doorbell says.
    rig.w32(REG.CMDQ_PROD, rig.cmdq.prod);
    rig.settle();
    expect(consIndex(rig)).toBe(start + 1);
    // Linux's recovery: replace the bad command with a CMD_SYNC, then acknowledge.
    const [d0, d1] = CMD.sync();
    rig.memory.write64(rig.cmdq.base + (start + 1) * 16, d0);
    rig.memory.write64(rig.cmdq.base + (start + 1) * 16 + 8, d1);
    rig.w32(REG.GERRORN, rig.r32(REG.GERROR));
    rig.settle();
    expect(consIndex(rig)).toBe(start + 4);
  });

  it.each([
    ['SSec set on the Non-secure queue', CMD.raw(0x46n | bits(1, 10), 0n)],
    ['CMD_SYNC with CS == 0b11', CMD.sync(3)],
    ['range TLBI with NUM, SCALE and TTL all zero', CMD.tlbiNhVa(0, 1, 0x1000, { tg: 1 })],
    ['range TLBI with TG 16K and TTL 1', CMD.tlbiNhVa(0, 1, 0x1000, { tg: 2, num: 1, ttl: 1 })],
    ['CMD_PRI_RESP with a Reserved response', CMD.priResp(1, 3, 3)],
    ['CMD_TLBI_EL3_ALL on the Non-secure queue', CMD.raw(0x18n, 0n)],
    ['CMD_CFGI_VMS_PIDM without MPAM', CMD.raw(0x07n, 0n)],
  ])('raises CERROR_ILL for %s', (_what, cmd) => {
    const rig = new Rig();
    rig.init();
    const start = consIndex(rig);
    rig.issue(cmd, CMD.sync());
    expect(consIndex(rig)).toBe(start);
    expect(consErr(rig)).toBe(1);
  });

  it('raises CERROR_ILL for commands of features the SMMU does not implement', () => {
    const rig = new Rig({ stage2: false, stallModel: 1, ats: false, pri: false, hyp: false });
    rig.init({ priq: false });
    for (const cmd of [CMD.tlbiS12Vmall(1), CMD.resume(1, 0, 1), CMD.atcInv(1, 0, 52), CMD.tlbiEl2All(), CMD.priResp(1, 0, 2)]) {
      const start = consIndex(rig);
      rig.issue(cmd);
      expect(consErr(rig)).toBe(1);
      expect(consIndex(rig)).toBe(start);
      const [d0, d1] = CMD.sync();
      rig.memory.write64(rig.cmdq.base + start * 16, d0);
      rig.memory.write64(rig.cmdq.base + start * 16 + 8, d1);
      rig.w32(REG.GERRORN, rig.r32(REG.GERROR));
      rig.settle();
      expect(consIndex(rig)).toBe(start + 1);
    }
  });

  it('raises CERROR_ABT when the command read aborts', () => {
    const rig = new Rig();
    rig.init();
    rig.setCr0(CR0_EVTQEN | CR0_PRIQEN | CR0_SMMUEN);
    rig.w64(REG.CMDQ_BASE, 0x2000_0000n | 4n);
    rig.w32(REG.CMDQ_PROD, 0);
    rig.w32(REG.CMDQ_CONS, 0);
    rig.setCr0(CR0_CMDQEN | CR0_EVTQEN | CR0_PRIQEN | CR0_SMMUEN);
    rig.w32(REG.CMDQ_PROD, 1);
    rig.settle();
    expect(consErr(rig)).toBe(2);
    expect(consIndex(rig)).toBe(0);
    expect(rig.r32(REG.GERROR) & GERROR_CMDQ_ERR).toBe(GERROR_CMDQ_ERR);
  });
});
