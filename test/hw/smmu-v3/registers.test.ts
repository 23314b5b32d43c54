import { describe, expect, it } from 'vitest';
import { CMD, CR0_CMDQEN, CR0_EVTQEN, CR0_SMMUEN, GBPA_ABORT, GBPA_UPDATE, GERROR_CMDQ_ERR, IRQ_EVTQ, IRQ_GERROR, REG, Rig, SMMU_BASE } from './rig.js';

describe('SMMUv3 model: identification registers', () => {
  it('advertises the construction options in IDR0/IDR1/IDR3/IDR5', () => {
    const rig = new Rig({ stallModel: 2, sidBits: 20, ssidBits: 10, cmdqLog2: 12, evtqLog2: 9, priqLog2: 7, oasBits: 44, granules: { '16k': false }, pri: true });
    const idr0 = rig.r32(REG.IDR0);
    expect(idr0 & 3).toBe(3); // S1P | S2P
    expect((idr0 >>> 2) & 3).toBe(2); // TTF AArch64
    expect((idr0 >>> 24) & 3).toBe(2); // STALL_MODEL forced
    expect((idr0 >>> 27) & 3).toBe(1); // 2-level stream table
    expect((idr0 >>> 10) & 1).toBe(1); // ATS
    expect((idr0 >>> 16) & 1).toBe(1); // PRI
    expect((idr0 >>> 19) & 1).toBe(1); // CD2L
    expect((idr0 >>> 13) & 1).toBe(1); // MSI
    const idr1 = rig.r32(REG.IDR1);
    expect(idr1 & 0x3f).toBe(20);
    expect((idr1 >>> 6) & 0x1f).toBe(10);
    expect((idr1 >>> 11) & 0x1f).toBe(7);
    expect((idr1 >>> 16) & 0x1f).toBe(9);
    expect((idr1 >>> 21) & 0x1f).toBe(12);
    expect((idr1 >>> 28) & 7).toBe(0); // no REL / QUEUES_PRESET / TABLES_PRESET
    expect((rig.r32(REG.IDR3) >>> 10) & 1).toBe(1); // RIL
    const idr5 = rig.r32(REG.IDR5);
    expect(idr5 & 7).toBe(4); // 44 bits
    expect((idr5 >>> 4) & 7).toBe(0b101); // 4K and 64K, no 16K
  });

  it('advertises every feature option, on and off', () => {
    const bit = (v: number, n: number): number => (v >>> n) & 1;
    const on = new Rig({ stallMax: 40 });
    const idr0 = on.r32(REG.IDR0);
    // COHACC, Hyp, ASID16, SEV, VMID16; TERM_MODEL clear; STALL_MODEL 0 (stall and terminate).
    expect([4, 9, 12, 14, 18, 26].map((n) => bit(idr0, n))).toEqual([1, 1, 1, 1, 1, 0]);
    expect((idr0 >>> 24) & 3).toBe(0);
    expect(bit(on.r32(REG.IDR3), 5)).toBe(1); // PPS
    expect(on.r32(REG.IDR5) >>> 16).toBe(40); // STALL_MAX
    const off = new Rig({
      stage2: false, coherent: false, hyp: false, ats: false, pri: false, asid16: false, msi: false, sev: false, cd2l: false,
      twoLevelStreamTable: false, stallModel: 1, abortOnlyTermination: true, rangeInvalidation: false, stallMax: 40,
    });
    const idr0off = off.r32(REG.IDR0);
    // S2P, COHACC, Hyp, ATS, ASID16, MSI, SEV, PRI, VMID16, CD2L all clear; S1P set; TERM_MODEL set.
    expect([0, 4, 9, 10, 12, 13, 14, 16, 18, 19].map((n) => bit(idr0off, n))).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect([bit(idr0off, 1), bit(idr0off, 26)]).toEqual([1, 1]);
    expect((idr0off >>> 24) & 3).toBe(1); // terminate model only
    expect((idr0off >>> 27) & 3).toBe(0); // linear stream table only
    expect((off.r32(REG.IDR1) >>> 11) & 0x1f).toBe(0); // no PRI queue
    expect([bit(off.r32(REG.IDR3), 5), bit(off.r32(REG.IDR3), 10)]).toEqual([0, 0]); // PPS, RIL
    expect(off.r32(REG.IDR5) >>> 16).toBe(0); // no stalls to hold
  });

  it('rejects bad options with an error naming them', () => {
    expect(() => new Rig({ sidBits: 33 })).toThrow(/sidBits/);
    expect(() => new Rig({ oasBits: 47 })).toThrow(/oasBits/);
    expect(() => new Rig({ stage1: false, stage2: false })).toThrow(/stage1\/stage2/);
  });

  it('reads unknown offsets as zero, ignores writes to them, and answers ID registers', () => {
    const rig = new Rig();
    rig.w32(0x400, 0xdead_beef);
    expect(rig.r32(0x400)).toBe(0);
    expect(rig.r32(0x10020)).toBe(0); // CR0 is not a page 1 register
    expect(rig.r32(0xfe0)).toBe(0x83); // PIDR0
    rig.w32(REG.IDR0, 0);
    expect(rig.r32(REG.IDR0)).not.toBe(0);
  });
});

describe('SMMUv3 model: CR0 / CR0ACK', () => {
  it('acknowledges CR0 only after a scheduler step', () => {
    const rig = new Rig();
    rig.w32(REG.CR0, CR0_CMDQEN | CR0_EVTQEN);
    expect(rig.r32(REG.CR0)).toBe(CR0_CMDQEN | CR0_EVTQEN);
    expect(rig.r32(REG.CR0ACK)).toBe(0);
    rig.scheduler.step();
    expect(rig.r32(REG.CR0ACK)).toBe(CR0_CMDQEN | CR0_EVTQEN);
    expect(rig.scheduler.now).toBeGreaterThan(0);
  });

  it('keeps reserved CR0 bits clear', () => {
    const rig = new Rig({ pri: false, ats: false });
    rig.w32(REG.CR0, 0xffff_ffff);
    expect(rig.r32(REG.CR0)).toBe(0b1101);
  });
});

describe('SMMUv3 model: GBPA', () => {
  it('resets to the firmware value from the options', () => {
    expect(new Rig({ gbpaReset: GBPA_ABORT }).r32(REG.GBPA)).toBe(GBPA_ABORT);
    expect(new Rig().r32(REG.GBPA)).toBe(0x1000);
  });

  it('ignores a write without Update and runs the Update handshake in a step', () => {
    const rig = new Rig();
    rig.w32(REG.GBPA, GBPA_ABORT);
    expect(rig.r32(REG.GBPA)).toBe(0x1000);
    rig.w32(REG.GBPA, GBPA_ABORT | GBPA_UPDATE);
    expect(rig.r32(REG.GBPA) >>> 0).toBe((GBPA_ABORT | GBPA_UPDATE) >>> 0);
    rig.settle();
    expect(rig.r32(REG.GBPA)).toBe(GBPA_ABORT);
  });

  it('aborts DMA while SMMUEN is clear and GBPA.ABORT is set, bypasses otherwise', () => {
    const rig = new Rig();
    const pa = 0x4080_0000;
    rig.memory.write32(pa, 0x1234_5678);
    const r1 = rig.dma({ streamId: 3, addr: pa });
    expect(r1.c?.status).toBe('ok');
    expect(new DataView(r1.c!.data!.buffer).getUint32(0, true)).toBe(0x1234_5678);
    rig.w32(REG.GBPA, GBPA_ABORT | GBPA_UPDATE);
    // Until the update completes, DMA still bypasses.
    const early = rig.dma({ streamId: 3, addr: pa }, false);
    expect(early.c?.status).toBe('ok');
    rig.settle();
    const r2 = rig.dma({ streamId: 3, addr: pa, write: true, data: new Uint8Array([1, 2, 3, 4]) });
    expect(r2.c?.status).toBe('abort');
    expect(rig.memory.read32(pa)).toBe(0x1234_5678);
  });

  it('switches in-flight DMA to GBPA from the moment CR0ACK drops SMMUEN', () => {
    const rig = new Rig({ gbpaReset: GBPA_ABORT });
    rig.init();
    // Stream 5 bypasses through its STE while enabled.
    rig.writeSte(5, [0x9n, 0n, 0n, 0n, 0n, 0n, 0n, 0n]);
    rig.issue(CMD.cfgiSte(5), CMD.sync());
    expect(rig.dma({ streamId: 5, addr: 0x4080_0000 }).c?.status).toBe('ok');
    rig.w32(REG.CR0, CR0_CMDQEN | CR0_EVTQEN);
    // CR0 written, not yet acknowledged: still translating (bypass STE).
    expect(rig.dma({ streamId: 5, addr: 0x4080_0000 }, false).c?.status).toBe('ok');
    rig.settle();
    expect(rig.r32(REG.CR0ACK) & CR0_SMMUEN).toBe(0);
    expect(rig.dma({ streamId: 5, addr: 0x4080_0000 }).c?.status).toBe('abort');
  });
});

describe('SMMUv3 model: guarded registers', () => {
  it('ignores STRTAB_BASE and queue base writes while the relevant enable is set', () => {
    const rig = new Rig();
    rig.init();
    const st = rig.r64(REG.STRTAB_BASE);
    const cfg = rig.r32(REG.STRTAB_BASE_CFG);
    const cq = rig.r64(REG.CMDQ_BASE);
    const eq = rig.r64(REG.EVENTQ_BASE);
    rig.w64(REG.STRTAB_BASE, 0x4f00_0000);
    rig.w32(REG.STRTAB_BASE_CFG, 3);
    rig.w64(REG.CMDQ_BASE, 0x4f10_0000n | 4n);
    rig.w32(REG.CMDQ_CONS, 7);
    rig.w64(REG.EVENTQ_BASE, 0x4f20_0000n | 4n);
    rig.w32(REG.EVENTQ_PROD, 3);
    expect(rig.r64(REG.STRTAB_BASE)).toBe(st);
    expect(rig.r32(REG.STRTAB_BASE_CFG)).toBe(cfg);
    expect(rig.r64(REG.CMDQ_BASE)).toBe(cq);
    expect(rig.r32(REG.CMDQ_CONS) & 0xfffff).not.toBe(7);
    expect(rig.r64(REG.EVENTQ_BASE)).toBe(eq);
    expect(rig.r32(REG.EVENTQ_PROD)).toBe(0);
    // Disabled again, the writes take.
    rig.setCr0(0);
    rig.w64(REG.STRTAB_BASE, 0x4f00_0000);
    expect(rig.r64(REG.STRTAB_BASE)).toBe(0x4f00_0000n);
  });

  it('guards CR1.QUEUE_* by the queue enables, CR1.TABLE_* and CR2 by SMMUEN, and ignores GBPA during an update', () => {
    const rig = new Rig();
    rig.w32(REG.CR1, 0xd75);
    rig.w32(REG.CR2, 0x6);
    expect([rig.r32(REG.CR1), rig.r32(REG.CR2)]).toEqual([0xd75, 0x6]);
    rig.setCr0(CR0_CMDQEN);
    rig.w32(REG.CR1, 0);
    rig.w32(REG.CR2, 0x2);
    // QUEUE_* [5:0] kept while the command queue is on; TABLE_* [11:6] and CR2 still writable.
    expect([rig.r32(REG.CR1), rig.r32(REG.CR2)]).toEqual([0x035, 0x2]);
    rig.setCr0(CR0_CMDQEN | CR0_SMMUEN);
    rig.w32(REG.CR1, 0xd75);
    rig.w32(REG.CR2, 0x6);
    expect([rig.r32(REG.CR1), rig.r32(REG.CR2)]).toEqual([0x035, 0x2]);
    rig.setCr0(CR0_SMMUEN);
    rig.w32(REG.CR1, 0xd40);
    expect(rig.r32(REG.CR1)).toBe(0x000); // queues off: QUEUE_* take (cleared); TABLE_* still guarded
    // A second GBPA write while Update is still set is ignored; the first one completes.
    rig.w32(REG.GBPA, GBPA_ABORT | GBPA_UPDATE);
    rig.w32(REG.GBPA, 0x1000 | GBPA_UPDATE);
    rig.settle();
    expect(rig.r32(REG.GBPA)).toBe(GBPA_ABORT);
  });

  it('accepts 64-bit registers as two 32-bit halves and as one 64-bit access', () => {
    const rig = new Rig();
    rig.mmio.write32(SMMU_BASE + REG.CMDQ_BASE, 0x4123_4005);
    rig.mmio.write32(SMMU_BASE + REG.CMDQ_BASE + 4, 0x0000_0001);
    expect(rig.r64(REG.CMDQ_BASE)).toBe(0x1_4123_4005n);
    rig.w64(REG.CMDQ_BASE, (1n << 62n) | 0x4567_8008n);
    expect(rig.r32(REG.CMDQ_BASE)).toBe(0x4567_8008);
    expect(rig.r32(REG.CMDQ_BASE + 4)).toBe(0x4000_0000);
  });

  it('exposes the output queues PROD/CONS at page 1 and aliases them at page 0', () => {
    const rig = new Rig();
    rig.w32(REG.EVENTQ_BASE, 0x4100_0000 | 4);
    rig.w32(REG.EVENTQ_CONS, 5);
    expect(rig.r32(0xac)).toBe(5);
    expect(rig.r32(REG.EVENTQ_CONS)).toBe(5);
  });
});

describe('SMMUv3 model: IRQ_CTRL and GERROR', () => {
  it('acknowledges IRQ_CTRL in IRQ_CTRLACK after a step', () => {
    const rig = new Rig();
    rig.w32(REG.IRQ_CTRL, IRQ_GERROR | IRQ_EVTQ);
    expect(rig.r32(REG.IRQ_CTRLACK)).toBe(0);
    rig.settle();
    expect(rig.r32(REG.IRQ_CTRLACK)).toBe(IRQ_GERROR | IRQ_EVTQ);
  });

  it('toggles GERROR on an error, and the error stays active until GERRORN matches', () => {
    const rig = new Rig();
    rig.init();
    rig.issue(CMD.raw(0x7fn, 0n)); // an unknown opcode
    const g = rig.r32(REG.GERROR);
    expect(g & GERROR_CMDQ_ERR).toBe(GERROR_CMDQ_ERR);
    expect(rig.irqs.gerror).toBe(1);
    // Toggling an inactive bit is not an acknowledgement and does not create an error.
    rig.w32(REG.GERRORN, 1 << 2);
    expect(rig.r32(REG.GERRORN) & (1 << 2)).toBe(0);
    rig.w32(REG.GERRORN, g);
    expect((rig.r32(REG.GERROR) ^ rig.r32(REG.GERRORN)) & 0x1fd).toBe(0);
    expect(rig.r32(REG.GERROR) & GERROR_CMDQ_ERR).toBe(GERROR_CMDQ_ERR); // GERROR itself is not cleared
  });

  it('ignores *_IRQ_CFG writes while the interrupt is enabled', () => {
    const rig = new Rig();
    rig.w64(REG.EVENTQ_IRQ_CFG0, 0x4000_1000);
    rig.w32(REG.EVENTQ_IRQ_CFG1, 42);
    rig.w32(REG.IRQ_CTRL, IRQ_EVTQ);
    rig.settle();
    rig.w64(REG.EVENTQ_IRQ_CFG0, 0x4000_2000);
    rig.w32(REG.EVENTQ_IRQ_CFG1, 43);
    expect(rig.r64(REG.EVENTQ_IRQ_CFG0)).toBe(0x4000_1000n);
    expect(rig.r32(REG.EVENTQ_IRQ_CFG1)).toBe(42);
  });
});
