/**
 * The vSMMUv3 through the guest's MMIO and memory only (no guest kernel), as the SMMUv3 model's
 * conformance tests drive the model: ID registers, CR0/CR0ACK, GBPA, write guards and RAZ/WI, the
 * command queue (CMD_SYNC completion after the VMM's work, CERROR_ILL with GERROR and the gerror
 * interrupt, resumption after GERRORN), STEs read from a guest stream table installing host HWPTs,
 * and C_BAD_STE written into the guest's event queue with the eventq interrupt.
 */
import { describe, expect, it } from 'vitest';
import { armSmmuSteConfigName } from '../../drivers/arm-smmu-v3/arm-smmu-v3-ste.js';
import { bootSmmuV3, settle, type SmmuV3Lab } from '../../scenarios/smmu-v3-lab.js';
import { buildVm, GUEST_VSID } from '../../scenarios/lib/vm-lab.js';
import type { Vm } from '../../vmm/vm.js';

const BASE = 0x0905_0000;
const IDR0 = 0x0;
const IDR1 = 0x4;
const IDR5 = 0x14;
const CR0 = 0x20;
const CR0ACK = 0x24;
const CR1 = 0x28;
const GBPA = 0x44;
const IRQ_CTRL = 0x50;
const IRQ_CTRLACK = 0x54;
const GERROR = 0x60;
const GERRORN = 0x64;
const STRTAB_BASE = 0x80;
const STRTAB_BASE_CFG = 0x88;
const CMDQ_BASE = 0x90;
const CMDQ_PROD = 0x98;
const CMDQ_CONS = 0x9c;
const EVTQ_BASE = 0xa0;
const EVTQ_PROD = 0x100a8;
const HOST_SID = 0x101;

interface Rig {
  lab: SmmuV3Lab;
  vm: Vm;
  rd(off: number): number;
  wr(off: number, v: number): void;
  irqs: Map<number, number>;
  /** Guest RAM layout: command queue (16 entries), event queue (16), linear stream table (32 STEs). */
  cmdq: number;
  evtq: number;
  strtab: number;
}

async function rig(seed: number): Promise<Rig> {
  const lab = await bootSmmuV3({ seed });
  const vm = await buildVm(lab, {});
  const irqs = new Map<number, number>();
  for (const spi of [74, 75, 76, 77]) vm.port.requestIrq('/intc@8000000', [0, spi, 1], () => irqs.set(spi, (irqs.get(spi) ?? 0) + 1));
  const r = {
    lab,
    vm,
    rd: (off: number) => vm.port.mmioRead32(BASE + off),
    wr: (off: number, v: number) => vm.port.mmioWrite32(BASE + off, v),
    irqs,
    cmdq: vm.ramIpa + 0x1_0000,
    evtq: vm.ramIpa + 0x2_0000,
    strtab: vm.ramIpa + 0x3_0000,
  };
  return r;
}

function cmd(r: Rig, index: number, words: number[]): void {
  for (let i = 0; i < 4; i++) r.vm.port.ram.write32(r.cmdq + index * 16 + 4 * i, words[i] ?? 0);
}

/** Queues and a linear stream table programmed, SMMU enabled with the command and event queues. */
function enable(r: Rig): void {
  r.wr(CMDQ_BASE, r.cmdq | 4);
  r.wr(CMDQ_BASE + 4, 0);
  r.wr(EVTQ_BASE, r.evtq | 4);
  r.wr(STRTAB_BASE, r.strtab);
  r.wr(STRTAB_BASE_CFG, 5); // linear, 32 STEs
  r.wr(IRQ_CTRL, 0x5); // gerror + eventq
  r.wr(CR0, 0xd); // SMMUEN | EVTQEN | CMDQEN
}

function ste(r: Rig, sid: number, w0: number, w1 = 0, w2 = 0): void {
  const a = r.strtab + sid * 64;
  for (let i = 0; i < 16; i++) r.vm.port.ram.write32(a + 4 * i, 0);
  r.vm.port.ram.write32(a, w0);
  r.vm.port.ram.write32(a + 4, w1);
  r.vm.port.ram.write32(a + 8, w2);
}

describe('vSMMUv3 registers', () => {
  it('ID registers: stage 1 only, no MSI/HYP/stage 2; IDR1 and IDR5 are the host\'s', async () => {
    const r = await rig(1);
    const idr0 = r.rd(IDR0);
    expect(idr0 & 1).toBe(0); // S2P
    expect(idr0 & 2).toBe(2); // S1P
    expect(idr0 & (1 << 13)).toBe(0); // MSI
    expect(idr0 & (1 << 9)).toBe(0); // HYP
    expect(r.rd(IDR1)).toBe(r.lab.model.peek32(IDR1));
    expect(r.rd(IDR5)).toBe(r.lab.model.peek32(IDR5));
  });

  it('CR0 is acknowledged in CR0ACK, GBPA.UPDATE completes, IRQ_CTRL in IRQ_CTRLACK; CR1 is guarded while queues run; unknown offsets read as zero', async () => {
    const r = await rig(2);
    r.wr(CR1, 0x55);
    expect(r.rd(CR1)).toBe(0x55);
    r.wr(GBPA, (1 << 31) | (1 << 20));
    expect(r.rd(GBPA) >>> 31).toBe(0);
    r.wr(IRQ_CTRL, 5);
    expect(r.rd(IRQ_CTRLACK)).toBe(5);
    r.wr(CR0, 0x8);
    expect(r.rd(CR0ACK)).toBe(0x8);
    r.wr(CR1, 0xaa);
    expect(r.rd(CR1)).toBe(0x55);
    r.wr(0x800, 0x1234);
    expect(r.rd(0x800)).toBe(0);
    expect(r.vm.vsmmu.stats.unknownAccesses).toBe(2);
  });
});

describe('vSMMUv3 command queue', () => {
  it('a CMD_SYNC completes (CONS passes it) only after the VMM has run, not inside the PROD write', async () => {
    const r = await rig(3);
    enable(r);
    await settle(r.lab, 100_000);
    cmd(r, 0, [0x46]);
    r.wr(CMDQ_PROD, 1);
    expect(r.rd(CMDQ_CONS)).toBe(0);
    await settle(r.lab, 100_000);
    expect(r.rd(CMDQ_CONS)).toBe(1);
  });

  it('an illegal command (TLBI_S2_IPA on a stage-1-only SMMU) is CERROR_ILL: CONS.ERR, GERROR.CMDQ_ERR, the gerror interrupt; fixed and acknowledged, the queue goes on', async () => {
    const r = await rig(4);
    enable(r);
    await settle(r.lab, 100_000);
    cmd(r, 0, [0x46]);
    cmd(r, 1, [0x2a]);
    cmd(r, 2, [0x46]);
    r.wr(CMDQ_PROD, 3);
    await settle(r.lab, 100_000);
    expect(r.rd(CMDQ_CONS)).toBe((1 << 24) | 1);
    expect((r.rd(GERROR) ^ r.rd(GERRORN)) & 1).toBe(1);
    expect(r.irqs.get(77)).toBe(1);
    cmd(r, 1, [0x46]);
    r.wr(GERRORN, r.rd(GERROR));
    await settle(r.lab, 100_000);
    expect(r.rd(CMDQ_CONS)).toBe(3);
  });
});

describe('vSMMUv3 stream table and event queue', () => {
  it('CFGI_STE reads the guest STE: stage 1 installs a nested STE on the host, bypass the plain stage 2', async () => {
    const r = await rig(5);
    enable(r);
    ste(r, GUEST_VSID, 1 | (5 << 1) | (r.vm.ramIpa + 0x4_0000), 0, 2); // S1, CD table in guest RAM, S1DSS=SSID0
    cmd(r, 0, [0x03, GUEST_VSID]);
    cmd(r, 1, [0x46]);
    r.wr(CMDQ_PROD, 2);
    await settle(r.lab, 1_000_000);
    expect(armSmmuSteConfigName(r.lab.smmu.strtab.readSte(HOST_SID))).toBe('config 7');
    ste(r, GUEST_VSID, 1 | (4 << 1));
    cmd(r, 2, [0x03, GUEST_VSID]);
    r.wr(CMDQ_PROD, 3);
    await settle(r.lab, 1_000_000);
    expect(armSmmuSteConfigName(r.lab.smmu.strtab.readSte(HOST_SID))).toBe('s2');
  });

  it('a stage 2 Config is ILLEGAL here: C_BAD_STE with the vSID in the guest event queue, the eventq interrupt, an abort STE on the host', async () => {
    const r = await rig(6);
    enable(r);
    await settle(r.lab, 100_000);
    ste(r, GUEST_VSID, 1 | (6 << 1));
    cmd(r, 0, [0x03, GUEST_VSID]);
    r.wr(CMDQ_PROD, 1);
    await settle(r.lab, 1_000_000);
    expect(r.rd(EVTQ_PROD) & 0x1f).toBe(1);
    expect(r.vm.port.ram.read32(r.evtq) & 0xff).toBe(0x04);
    expect(r.vm.port.ram.read32(r.evtq + 4)).toBe(GUEST_VSID);
    expect(r.irqs.get(74)).toBe(1);
    expect(armSmmuSteConfigName(r.lab.smmu.strtab.readSte(HOST_SID))).toBe('abort');
  });
});
