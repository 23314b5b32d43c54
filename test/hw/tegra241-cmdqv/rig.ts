/**
 * Test rig for Tegra241 CMDQV model conformance: the SMMUv3 rig (test/hw/smmu-v3/rig.ts) with a
 * CMDQV mapped at CMDQV_BASE, driven only through MMIO and memory. The register offsets are the
 * tests' own, from the fact sheet's register map, independent of hw/tegra241-cmdqv/regs.ts.
 */
import { Tegra241Cmdqv } from '../../../hw/tegra241-cmdqv/cmdqv.js';
import type { Tegra241CmdqvOptions } from '../../../hw/tegra241-cmdqv/options.js';
import type { SmmuV3Options } from '../../../hw/smmu-v3/options.js';
import { Rig, type Cmd } from '../smmu-v3/rig.js';

export const CMDQV_BASE = 0x0a00_0000;

export const CV = {
  CONFIG: 0x000, PARAM: 0x004, STATUS: 0x008,
  VI_ERR_MAP0: 0x014, VI_ERR_MAP1: 0x018, VI_INT_MASK0: 0x01c, VI_INT_MASK1: 0x020,
  CMDQ_ERR_MAP: (m: number) => 0x024 + 4 * m,
  CMDQ_ALLOC: (q: number) => 0x200 + 4 * q,
  VINTF_CONFIG: (v: number) => 0x1000 + 0x100 * v,
  VINTF_STATUS: (v: number) => 0x1004 + 0x100 * v,
  SID_MATCH: (v: number, s: number) => 0x1040 + 0x100 * v + 4 * s,
  SID_REPLACE: (v: number, s: number) => 0x1080 + 0x100 * v + 4 * s,
  LVCMDQ_ERR_MAP: (v: number, m: number) => 0x10c0 + 0x100 * v + 4 * m,
  /** Direct page0/page1 of global VCMDQ q. */
  Q0: (q: number) => 0x1_0000 + 0x80 * q,
  Q1: (q: number) => 0x2_0000 + 0x80 * q,
  /** Logical page0/page1 of VINTF v's LVCMDQ l. */
  L0: (v: number, l: number) => 0x3_0000 + 0x2_0000 * v + 0x80 * l,
  L1: (v: number, l: number) => 0x4_0000 + 0x2_0000 * v + 0x80 * l,
} as const;
/** Page0 register offsets inside a VCMDQ block, and page1's. */
export const Q = { CONS: 0x0, PROD: 0x4, CONFIG: 0x8, STATUS: 0xc, GERROR: 0x10, GERRORN: 0x14, BASE: 0x0, CONS_INDX_BASE: 0x8 } as const;

export const VINTF_EN = 1;
export const HYP_OWN = 1 << 17;
export const vmidField = (vmid: number): number => (vmid << 1) >>> 0;
export const alloc = (v: number, l: number, allocated = true): number => ((v << 15) | (l << 1) | (allocated ? 1 : 0)) >>> 0;
export const consErr = (cons: number): number => (cons >>> 24) & 0x7f;

export class CmdqvRig extends Rig {
  readonly cmdqv: Tegra241Cmdqv;
  cmdqvIrqs = 0;
  /** Per global VCMDQ: queue memory, LOG2SIZE and the producer index software keeps. */
  readonly queues = new Map<number, { base: number; log2: number; prod: number }>();

  constructor(options: Tegra241CmdqvOptions = {}, smmuOptions: SmmuV3Options = {}, seed = 1) {
    super(smmuOptions, seed);
    this.cmdqv = new Tegra241Cmdqv(
      { scheduler: this.scheduler, smmu: this.smmu, irq: { raise: () => void this.cmdqvIrqs++ } },
      { name: '/cmdqv@a000000', ...options },
    );
    this.mmio.map(CMDQV_BASE, this.cmdqv.regionSize, this.cmdqv);
  }

  cr(off: number): number {
    return this.mmio.read32(CMDQV_BASE + off);
  }

  cw(off: number, v: number): void {
    this.mmio.write32(CMDQV_BASE + off, v >>> 0);
  }

  cw64(off: number, v: bigint): void {
    this.mmio.write64(CMDQV_BASE + off, v);
  }

  /** CMDQV_EN and the STATUS handshake. */
  enableCmdqv(on = true): void {
    this.cw(CV.CONFIG, (this.cr(CV.CONFIG) & ~1) | (on ? 1 : 0));
    this.settle();
    if ((this.cr(CV.STATUS) & 1) !== (on ? 1 : 0)) throw new Error('CMDQV STATUS did not follow CONFIG');
  }

  /** Configure and enable VINTF v (VMID, HYP_OWN) with the STATUS handshake. */
  enableVintf(v: number, vmid: number, hypOwn: boolean): void {
    const cfg = vmidField(vmid) | (hypOwn ? HYP_OWN : 0);
    this.cw(CV.VINTF_CONFIG(v), cfg);
    this.cw(CV.VINTF_CONFIG(v), cfg | VINTF_EN);
    this.settle();
    if ((this.cr(CV.VINTF_STATUS(v)) & 1) !== 1) throw new Error(`VINTF${v} did not enable`);
  }

  /** Map global VCMDQ q to (v, l), give it a queue, enable it (through the logical page). */
  setupQueue(q: number, v: number, l: number, log2 = 6): void {
    this.cw(CV.CMDQ_ALLOC(q), alloc(v, l));
    const base = this.alloc(16 << log2, Math.max(4096, 16 << log2));
    this.queues.set(q, { base, log2, prod: 0 });
    this.cw64(CV.L1(v, l) + Q.BASE, BigInt(base) | BigInt(log2));
    this.cw(CV.L0(v, l) + Q.PROD, 0);
    this.cw(CV.L0(v, l) + Q.CONS, 0);
    this.cw(CV.L0(v, l) + Q.CONFIG, 1);
    this.settle();
    if ((this.cr(CV.L0(v, l) + Q.STATUS) & 1) !== 1) throw new Error(`vcmdq${q} did not enable`);
  }

  /** Write commands into VCMDQ q's memory and ring its doorbell through the direct page0. */
  postQ(q: number, ...cmds: Cmd[]): void {
    const s = this.queues.get(q);
    if (!s) throw new Error(`vcmdq${q} not set up`);
    const mask = (1 << (s.log2 + 1)) - 1;
    for (const [d0, d1] of cmds) {
      const idx = s.prod & ((1 << s.log2) - 1);
      this.memory.write64(s.base + idx * 16, d0);
      this.memory.write64(s.base + idx * 16 + 8, d1);
      s.prod = (s.prod + 1) & mask;
    }
    this.cw(CV.Q0(q) + Q.PROD, s.prod);
  }

  issueQ(q: number, ...cmds: Cmd[]): void {
    this.postQ(q, ...cmds);
    this.settle();
  }

  consQ(q: number): number {
    return this.cr(CV.Q0(q) + Q.CONS);
  }
}
