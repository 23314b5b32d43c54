/**
 * Test rig for the SMMUv2 model: a machine slice (test/lib/machine-slice.ts) with the model mapped into its MMIO map, interrupt
 * lines that count raises, and a small LPAE table encoder of the test's own. Tests reach the model
 * only through MMIO (absolute physical addresses), memory and DMA requests on its port.
 *
 * Register offsets and field positions here are written out from the architecture specification,
 * independently of hw/smmu-v2/regs.ts, so a wrong offset on either side shows up.
 */
import type { DmaCompletion, DmaRequest } from '../../../hw/dma.js';
import { SmmuV2 } from '../../../hw/smmu-v2/index.js';
import type { SmmuV2OptionsInput } from '../../../hw/smmu-v2/index.js';
import { MachineSlice } from '../../lib/machine-slice.js';

export const SMMU_BASE = 0x2b40_0000;
export const RAM_BASE = 0x8000_0000;
export const RAM_SIZE = 0x1000_0000;

// GR0
export const sCR0 = 0x000;
export const sACR = 0x010;
export const ID0 = 0x020;
export const ID1 = 0x024;
export const ID2 = 0x028;
export const ID7 = 0x03c;
export const sGFAR = 0x040;
export const sGFSR = 0x048;
export const sGFSYNR0 = 0x050;
export const sGFSYNR1 = 0x054;
export const TLBIVMID = 0x064;
export const TLBIALLNSNH = 0x068;
export const sTLBGSYNC = 0x070;
export const sTLBGSTATUS = 0x074;
export const SMR = (n: number): number => 0x800 + 4 * n;
export const S2CR = (n: number): number => 0xc00 + 4 * n;
// GR1
export const CBAR = (n: number): number => 4 * n;
export const CBFRSYNRA = (n: number): number => 0x400 + 4 * n;
export const CBA2R = (n: number): number => 0x800 + 4 * n;
// Context bank
export const SCTLR = 0x000;
export const ACTLR = 0x004;
export const RESUME = 0x008;
export const TCR2 = 0x010;
export const TTBR0 = 0x020;
export const TTBR1 = 0x028;
export const TCR = 0x030;
export const MAIR0 = 0x038;
export const PAR = 0x050;
export const FSR = 0x058;
export const FAR = 0x060;
export const FSYNR0 = 0x068;
export const IPAFAR = 0x070;
export const TLBIVA = 0x600;
export const TLBIASID = 0x610;
export const TLBIALL = 0x618;
export const TLBIIPAS2 = 0x630;
export const TLBSYNC = 0x7f0;
export const TLBSTATUS = 0x7f4;
export const ATS1PR = 0x800;
export const ATS1PW = 0x808;
export const ATSR = 0x8f0;

// sCR0 bits
export const CLIENTPD = 1 << 0;
export const GFRE = 1 << 1;
export const GFIE = 1 << 2;
export const USFCFG = 1 << 10;
export const SMCFCFG = 1 << 21;
// sGFSR bits
export const GFSR_ICF = 1 << 0;
export const GFSR_USF = 1 << 1;
export const GFSR_SMCF = 1 << 2;
export const GFSR_UCBF = 1 << 3;
export const GFSR_MULTI = 0x8000_0000;
// SMR / S2CR
export const SMR_VALID = 0x8000_0000;
export const S2CR_TRANS = 0 << 16;
export const S2CR_BYPASS = 1 << 16;
export const S2CR_FAULT = 2 << 16;
// CBAR types
export const CBAR_S2 = 0 << 16;
export const CBAR_S1 = 1 << 16;
export const CBAR_NESTED = 3 << 16;
// SCTLR bits
export const M = 1 << 0;
export const TRE = 1 << 1;
export const AFE = 1 << 2;
export const CFRE = 1 << 5;
export const CFIE = 1 << 6;
export const CFCFG = 1 << 7;
export const HUPCF = 1 << 8;
export const ASIDPNE = 1 << 12;
// FSR bits
export const TF = 1 << 1;
export const AFF = 1 << 2;
export const PF = 1 << 3;
export const EF = 1 << 4;
export const SS = 1 << 30;
export const MULTI = 0x8000_0000;
export const FSR_FAULT = 0xc000_01fe;

export interface Completion {
  c: DmaCompletion | null;
}

export class CountingLine {
  raised = 0;
  raise(): void {
    this.raised++;
  }
}

export class Rig extends MachineSlice {
  readonly smmu: SmmuV2;
  readonly globalLines = [new CountingLine()];
  readonly contextLines: CountingLine[];
  private nextFrame = RAM_BASE + 0x0800_0000;

  constructor(opts: SmmuV2OptionsInput, contextLines = 8) {
    super({ seed: 7, ram: [{ base: RAM_BASE, size: RAM_SIZE }] });
    this.contextLines = Array.from({ length: contextLines }, () => new CountingLine());
    this.smmu = new SmmuV2(
      {
        name: '/smmu@2b400000',
        scheduler: this.scheduler,
        memory: this.memory,
        downstream: this.interconnect,
        irqs: { global: this.globalLines, context: this.contextLines },
        trace: this.trace,
      },
      opts,
    );
    this.mmio.map(SMMU_BASE, this.smmu.size, this.smmu);
  }

  get pgshift(): number {
    return (this.gr0(ID1) >>> 31) & 1 ? 16 : 12;
  }

  get numPage(): number {
    return 1 << (((this.gr0(ID1) >>> 28) & 7) + 1);
  }

  gr0Addr(off: number): number {
    return SMMU_BASE + off;
  }
  gr1Addr(off: number): number {
    return SMMU_BASE + (1 << this.pgshift) + off;
  }
  cbAddr(n: number, off: number): number {
    return SMMU_BASE + ((this.numPage + n) << this.pgshift) + off;
  }

  gr0(off: number): number {
    return this.mmio.read32(this.gr0Addr(off));
  }
  setGr0(off: number, v: number): void {
    this.mmio.write32(this.gr0Addr(off), v >>> 0);
  }
  gr1(off: number): number {
    return this.mmio.read32(this.gr1Addr(off));
  }
  setGr1(off: number, v: number): void {
    this.mmio.write32(this.gr1Addr(off), v >>> 0);
  }
  cb(n: number, off: number): number {
    return this.mmio.read32(this.cbAddr(n, off));
  }
  cb64(n: number, off: number): bigint {
    return this.mmio.read64(this.cbAddr(n, off));
  }
  setCb(n: number, off: number, v: number): void {
    this.mmio.write32(this.cbAddr(n, off), v >>> 0);
  }
  setCb64(n: number, off: number, v: bigint): void {
    this.mmio.write64(this.cbAddr(n, off), v);
  }

  /** Run the hardware's scheduled work (syncs, interrupts, RESUME, ATS). */
  run(): void {
    this.scheduler.runSyncUntilIdle();
  }

  /** A zeroed 4K (or `size`) frame for tables or data. */
  alloc(size = 0x1000): number {
    const a = Math.ceil(this.nextFrame / size) * size;
    this.nextFrame = a + size;
    this.memory.fill(a, size, 0);
    return a;
  }

  submit(sid: number, addr: number, len: number, opts: Partial<DmaRequest> = {}): Completion {
    const box: Completion = { c: null };
    const req: DmaRequest = {
      master: opts.master ?? `/master-${sid}`,
      streamId: sid,
      ssid: 0,
      ssidValid: false,
      addr,
      len,
      write: opts.write ?? false,
      exec: opts.exec ?? false,
      priv: opts.priv ?? false,
      data: opts.data,
    };
    this.smmu.submit(req, (c) => {
      box.c = c;
    });
    return box;
  }

  write(sid: number, addr: number, bytes: number[] | Uint8Array, opts: Partial<DmaRequest> = {}): Completion {
    const data = bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes);
    return this.submit(sid, addr, data.length, { ...opts, write: true, data });
  }

  read(sid: number, addr: number, len: number, opts: Partial<DmaRequest> = {}): Completion {
    return this.submit(sid, addr, len, { ...opts, write: false });
  }

  /** Stream `sid` (mask `mask`) to context bank `cb` through SMR/S2CR group `n`. */
  mapStream(n: number, sid: number, cb: number, mask = 0): void {
    this.setGr0(S2CR(n), S2CR_TRANS | cb);
    this.setGr0(SMR(n), SMR_VALID | (mask << 16) | sid);
  }

  /** Turn the SMMU on: clear CLIENTPD, keep the rest as given. */
  enable(extra = GFRE | GFIE): void {
    this.setGr0(sCR0, (this.gr0(sCR0) & ~CLIENTPD) | extra);
  }

  /**
   * A stage 1 AArch64 context in bank `cb`: 4K granule, 48-bit input (T0SZ=16), 48-bit output,
   * TTBR1 walks disabled, ASID `asid`, SCTLR as given (M set by default).
   */
  stage1Bank(cb: number, root: number, asid: number, sctlr = M | TRE | AFE | CFRE | CFIE): void {
    this.setGr1(CBA2R(cb), 1); // VA64
    this.setGr1(CBAR(cb), CBAR_S1 | (3 << 8) | (0xf << 12));
    this.setCb(cb, TCR2, (7 << 15) | 5); // SEP = upstream, PASIZE = 48 bits
    this.setCb(cb, TCR, (1 << 23) | (3 << 12) | (1 << 10) | (1 << 8) | 16); // EPD1, SH0 IS, WBWA, T0SZ=16
    this.setCb64(cb, TTBR0, (BigInt(asid) << 48n) | BigInt(root));
    this.setCb(cb, MAIR0, 0x0000_04ff);
    this.setCb(cb, SCTLR, sctlr);
  }

  /** A stage 2 AArch64 context in bank `cb`: 4K granule, 40-bit IPA starting at level 1, VMID `vmid`. */
  stage2Bank(cb: number, root: number, vmid: number, sctlr = M | TRE | AFE | CFRE | CFIE): void {
    this.setGr1(CBA2R(cb), 1);
    this.setGr1(CBAR(cb), CBAR_S2 | vmid);
    // VTCR: RES1, PS=40 bits, TG0=4K, SH0, ORGN0/IRGN0, SL0=1 (level 1), T0SZ=24.
    this.setCb(cb, TCR, 0x8000_0000 | (2 << 16) | (3 << 12) | (1 << 10) | (1 << 8) | (1 << 6) | 24);
    this.setCb64(cb, TTBR0, BigInt(root));
    this.setCb(cb, SCTLR, sctlr);
  }

  dataOf(c: Completion): number[] {
    return Array.from(c.c?.data ?? []);
  }
}

/**
 * The test's own VMSAv8-64 table encoder (4K granule). Stage 1 leaves: AF, inner-shareable, AttrIndx
 * 0, AP from `ro`/`privOnly` (unprivileged
 * access allowed unless privOnly, as io-pgtable maps without IOMMU_PRIV), nG; stage 2 leaves: S2AP from `read`/`write`, MemAttr normal WB.
 */
export class Tables {
  constructor(
    private readonly rig: Rig,
    readonly root: number,
    readonly stage: 1 | 2,
    /** First lookup level (stage 1 48-bit: 0; stage 2 40-bit with SL0=1: level 1). */
    readonly startLevel: number,
  ) {}

  static stage1(rig: Rig): Tables {
    return new Tables(rig, rig.alloc(), 1, 0);
  }

  static stage2(rig: Rig): Tables {
    // A 40-bit IPA starting at level 1 needs two concatenated level 1 tables (8K, aligned).
    return new Tables(rig, rig.alloc(0x2000), 2, 1);
  }

  private index(va: number, level: number): number {
    const shift = 12 + 9 * (3 - level);
    const span = level === this.startLevel && this.stage === 2 ? 1024 : 512;
    return Math.floor(va / 2 ** shift) % span;
  }

  private writeDesc(pa: number, lo: number, hi: number): void {
    this.rig.memory.write32(pa, lo >>> 0);
    this.rig.memory.write32(pa + 4, hi >>> 0);
  }

  /** The PA of the descriptor for `va` at `level`, creating tables on the way. */
  private slot(va: number, level: number): number {
    let table = this.root;
    for (let l = this.startLevel; l < level; l++) {
      const d = table + 8 * this.index(va, l);
      const lo = this.rig.memory.read32(d);
      const hi = this.rig.memory.read32(d + 4);
      if ((lo & 3) === 3) {
        table = (hi & 0xffff) * 0x1_0000_0000 + ((lo & 0xffff_f000) >>> 0);
      } else {
        const next = this.rig.alloc();
        this.writeDesc(d, (next & 0xffff_f000) | 3, Math.floor(next / 0x1_0000_0000));
        table = next;
      }
    }
    return table + 8 * this.index(va, level);
  }

  /** Map the page (level 3) or block (level 1/2) at `va` to `pa`. */
  map(va: number, pa: number, opts: { level?: number; ro?: boolean; privOnly?: boolean; xn?: boolean; af?: boolean; global?: boolean; noread?: boolean; nowrite?: boolean } = {}): void {
    const level = opts.level ?? 3;
    const d = this.slot(va, level);
    let lo = level === 3 ? 3 : 1;
    lo |= opts.af === false ? 0 : 1 << 10;
    lo |= 3 << 8; // inner shareable
    let hi = Math.floor(pa / 0x1_0000_0000) & 0xffff;
    if (this.stage === 1) {
      lo |= opts.ro ? 1 << 7 : 0;
      lo |= opts.privOnly ? 0 : 1 << 6;
      lo |= opts.global ? 0 : 1 << 11;
      if (opts.xn) hi |= (1 << 21) | (1 << 22); // PXN, UXN
    } else {
      lo |= (opts.noread ? 0 : 1 << 6) | (opts.nowrite ? 0 : 1 << 7);
      lo |= 0xf << 2; // MemAttr: normal write-back
      if (opts.xn) hi |= 1 << 22;
    }
    lo |= (pa >>> 0) & 0xffff_f000;
    this.writeDesc(d, lo, hi);
  }

  unmap(va: number, level = 3): void {
    this.writeDesc(this.slot(va, level), 0, 0);
  }
}
