/**
 * Test rig for SMMUv3 model conformance tests: a machine slice (scheduler, RAM, MMIO map,
 * interconnect) with one SMMUv3 mapped at SMMU_BASE, driven only through MMIO and memory.
 *
 * The register offsets and the STE/CD/descriptor/command/event encodings here are the tests' own,
 * written from the Arm SMMUv3 specification independently of hw/smmu-v3: a wrong field position in
 * the model shows up as a failing test instead of agreeing with itself.
 */
import type { AtcInvalidation, AtsEndpoint, DmaCompletion, DmaRequest, PageResponse } from '../../../hw/dma.js';
import { SmmuV3 } from '../../../hw/smmu-v3/smmu-v3.js';
import type { SmmuV3Options } from '../../../hw/smmu-v3/options.js';
import { MachineSlice } from '../../lib/machine-slice.js';

export const RAM_BASE = 0x4000_0000;
export const RAM_SIZE = 0x1000_0000;
export const SMMU_BASE = 0x0900_0000;

/** Register offsets (SMMUv3 spec, chapter 6). */
export const REG = {
  IDR0: 0x00, IDR1: 0x04, IDR2: 0x08, IDR3: 0x0c, IDR4: 0x10, IDR5: 0x14, IIDR: 0x18, AIDR: 0x1c,
  CR0: 0x20, CR0ACK: 0x24, CR1: 0x28, CR2: 0x2c, STATUSR: 0x40, GBPA: 0x44,
  IRQ_CTRL: 0x50, IRQ_CTRLACK: 0x54, GERROR: 0x60, GERRORN: 0x64,
  GERROR_IRQ_CFG0: 0x68, GERROR_IRQ_CFG1: 0x70, GERROR_IRQ_CFG2: 0x74,
  STRTAB_BASE: 0x80, STRTAB_BASE_CFG: 0x88,
  CMDQ_BASE: 0x90, CMDQ_PROD: 0x98, CMDQ_CONS: 0x9c,
  EVENTQ_BASE: 0xa0, EVENTQ_PROD: 0x100a8, EVENTQ_CONS: 0x100ac,
  EVENTQ_IRQ_CFG0: 0xb0, EVENTQ_IRQ_CFG1: 0xb8, EVENTQ_IRQ_CFG2: 0xbc,
  PRIQ_BASE: 0xc0, PRIQ_PROD: 0x100c8, PRIQ_CONS: 0x100cc,
  PRIQ_IRQ_CFG0: 0xd0, PRIQ_IRQ_CFG1: 0xd8, PRIQ_IRQ_CFG2: 0xdc,
} as const;

export const CR0_SMMUEN = 1 << 0;
export const CR0_PRIQEN = 1 << 1;
export const CR0_EVTQEN = 1 << 2;
export const CR0_CMDQEN = 1 << 3;
export const CR0_ATSCHK = 1 << 4;
export const GBPA_ABORT = 1 << 20;
export const GBPA_UPDATE = 0x8000_0000;
export const GERROR_CMDQ_ERR = 1 << 0;
export const GERROR_EVTQ_ABT = 1 << 2;
export const GERROR_MSI_CMDQ_ABT = 1 << 4;
export const CR2_RECINVSID = 1 << 1;
export const IRQ_GERROR = 1 << 0;
export const IRQ_PRIQ = 1 << 1;
export const IRQ_EVTQ = 1 << 2;

// Event IDs.
export const EVT = {
  F_UUT: 0x01, C_BAD_STREAMID: 0x02, F_STE_FETCH: 0x03, C_BAD_STE: 0x04, F_BAD_ATS_TREQ: 0x05,
  F_STREAM_DISABLED: 0x06, F_TRANSL_FORBIDDEN: 0x07, C_BAD_SUBSTREAMID: 0x08, F_CD_FETCH: 0x09,
  C_BAD_CD: 0x0a, F_WALK_EABT: 0x0b, F_TRANSLATION: 0x10, F_ADDR_SIZE: 0x11, F_ACCESS: 0x12, F_PERMISSION: 0x13,
} as const;

const B = BigInt;
/** Put `v` at bits [lo + width - 1 : lo] of a 64-bit dword, checking it fits. */
export function bits(v: number | bigint, lo: number, width = 1): bigint {
  const x = B(v);
  if (x < 0n || x >= 1n << B(width)) throw new RangeError(`${x} does not fit ${width} bits`);
  return x << B(lo);
}

// ---- STE ---------------------------------------------------------------------------------------

export interface SteSpec {
  v?: boolean;
  config: number; // 0b000 abort, 0b100 bypass, 0b101 S1, 0b110 S2, 0b111 nested
  s1Fmt?: number;
  s1ContextPtr?: number;
  s1CdMax?: number;
  s1dss?: number;
  s1stalld?: boolean;
  eats?: number;
  strw?: number;
  privcfg?: number;
  ppar?: boolean;
  vmid?: number;
  s2t0sz?: number;
  s2sl0?: number;
  s2tg?: number;
  s2ps?: number;
  s2aa64?: boolean;
  s2s?: boolean;
  s2r?: boolean;
  s2ttb?: number;
}

export function ste(s: SteSpec): bigint[] {
  const d = [0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n];
  d[0] = bits(s.v === false ? 0 : 1, 0) | bits(s.config, 1, 3) | bits(s.s1Fmt ?? 0, 4, 2) |
    (B(s.s1ContextPtr ?? 0) & 0x000f_ffff_ffff_ffc0n) | bits(s.s1CdMax ?? 0, 59, 5);
  d[1] = bits(s.s1dss ?? 0, 0, 2) | bits(1, 2, 2) | bits(1, 4, 2) | bits(3, 6, 2) |
    bits(s.s1stalld ? 1 : 0, 27) | bits(s.eats ?? 0, 28, 2) | bits(s.strw ?? 0, 30, 2) |
    bits(s.ppar ? 1 : 0, 18) | bits(s.privcfg ?? 0, 48, 2);
  d[2] = bits(s.vmid ?? 0, 0, 16) | bits(s.s2t0sz ?? 0, 32, 6) | bits(s.s2sl0 ?? 0, 38, 2) |
    bits(1, 40, 2) | bits(1, 42, 2) | bits(3, 44, 2) | bits(s.s2tg ?? 0, 46, 2) | bits(s.s2ps ?? 0, 48, 3) |
    bits(s.s2aa64 === false ? 0 : 1, 51) | bits(s.s2s ? 1 : 0, 57) | bits(s.s2r === false ? 0 : 1, 58);
  d[3] = B(s.s2ttb ?? 0) & 0x000f_ffff_ffff_fff0n;
  return d;
}

// ---- CD ----------------------------------------------------------------------------------------

export interface CdSpec {
  v?: boolean;
  t0sz?: number;
  tg0?: number;
  epd0?: boolean;
  ips?: number;
  aa64?: boolean;
  s?: boolean;
  r?: boolean;
  a?: boolean;
  asid: number;
  ttb0: number;
}

export function cd(c: CdSpec): bigint[] {
  const d = [0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n];
  d[0] = bits(c.t0sz ?? 16, 0, 6) | bits(c.tg0 ?? 0, 6, 2) | bits(1, 8, 2) | bits(1, 10, 2) | bits(3, 12, 2) |
    bits(c.epd0 ? 1 : 0, 14) | bits(1, 30) /* EPD1 */ | bits(c.v === false ? 0 : 1, 31) | bits(c.ips ?? 5, 32, 3) |
    bits(c.aa64 === false ? 0 : 1, 41) | bits(c.s ? 1 : 0, 44) | bits(c.r === false ? 0 : 1, 45) |
    bits(c.a === false ? 0 : 1, 46) | bits(1, 47) /* ASET */ | bits(c.asid, 48, 16);
  d[1] = B(c.ttb0) & 0x000f_ffff_ffff_fff0n;
  d[3] = 0x0000_0000_0404_ff44n; // MAIR
  return d;
}

// ---- Commands ----------------------------------------------------------------------------------

export type Cmd = [bigint, bigint];
export const CMD = {
  prefetchConfig: (sid: number): Cmd => [0x01n | bits(sid, 32, 32), 0n],
  cfgiSte: (sid: number, leaf = true): Cmd => [0x03n | bits(sid, 32, 32), bits(leaf ? 1 : 0, 0)],
  cfgiAll: (): Cmd => [0x04n, bits(31, 0, 5)],
  cfgiSteRange: (sid: number, range: number): Cmd => [0x04n | bits(sid, 32, 32), bits(range, 0, 5)],
  cfgiCd: (sid: number, ssid: number, leaf = true): Cmd => [0x05n | bits(ssid, 12, 20) | bits(sid, 32, 32), bits(leaf ? 1 : 0, 0)],
  cfgiCdAll: (sid: number): Cmd => [0x06n | bits(sid, 32, 32), 0n],
  tlbiNhAll: (vmid: number): Cmd => [0x10n | bits(vmid, 32, 16), 0n],
  tlbiNhAsid: (vmid: number, asid: number): Cmd => [0x11n | bits(vmid, 32, 16) | bits(asid, 48, 16), 0n],
  tlbiNhVa: (vmid: number, asid: number, va: number, r: { leaf?: boolean; tg?: number; num?: number; scale?: number; ttl?: number } = {}): Cmd => [
    0x12n | bits(r.num ?? 0, 12, 5) | bits(r.scale ?? 0, 20, 5) | bits(vmid, 32, 16) | bits(asid, 48, 16),
    bits(r.leaf ? 1 : 0, 0) | bits(r.ttl ?? 0, 8, 2) | bits(r.tg ?? 0, 10, 2) | (B(va) & ~0xfffn),
  ],
  tlbiNhVaa: (vmid: number, va: number, leaf = false): Cmd => [0x13n | bits(vmid, 32, 16), bits(leaf ? 1 : 0, 0) | (B(va) & ~0xfffn)],
  tlbiEl2All: (): Cmd => [0x20n, 0n],
  tlbiEl2Asid: (asid: number): Cmd => [0x21n | bits(asid, 48, 16), 0n],
  tlbiEl2Va: (asid: number, va: number, leaf = false): Cmd => [0x22n | bits(asid, 48, 16), bits(leaf ? 1 : 0, 0) | (B(va) & ~0xfffn)],
  tlbiEl2Vaa: (va: number): Cmd => [0x23n, B(va) & ~0xfffn],
  tlbiS12Vmall: (vmid: number): Cmd => [0x28n | bits(vmid, 32, 16), 0n],
  tlbiS2Ipa: (vmid: number, ipa: number, r: { leaf?: boolean; tg?: number; num?: number; scale?: number; ttl?: number } = {}): Cmd => [
    0x2an | bits(r.num ?? 0, 12, 5) | bits(r.scale ?? 0, 20, 5) | bits(vmid, 32, 16),
    bits(r.leaf ? 1 : 0, 0) | bits(r.ttl ?? 0, 8, 2) | bits(r.tg ?? 0, 10, 2) | (B(ipa) & 0x000f_ffff_ffff_f000n),
  ],
  tlbiNsnhAll: (): Cmd => [0x30n, 0n],
  atcInv: (sid: number, addr: number, size: number, ssid?: number, global = false): Cmd => [
    0x40n | bits(ssid !== undefined ? 1 : 0, 11) | bits(global ? 1 : 0, 9) | bits(ssid ?? 0, 12, 20) | bits(sid, 32, 32),
    bits(size, 0, 6) | (B(addr) & ~0xfffn),
  ],
  priResp: (sid: number, prgIndex: number, resp: number, ssid?: number): Cmd => [
    0x41n | bits(ssid !== undefined ? 1 : 0, 11) | bits(ssid ?? 0, 12, 20) | bits(sid, 32, 32),
    bits(prgIndex, 0, 9) | bits(resp, 12, 2),
  ],
  /** resp: 0 terminate (RAZ/WI), 1 retry, 2 abort. */
  resume: (sid: number, stag: number, resp: number): Cmd => [0x44n | bits(resp, 12, 2) | bits(sid, 32, 32), bits(stag, 0, 16)],
  stallTerm: (sid: number): Cmd => [0x45n | bits(sid, 32, 32), 0n],
  /** cs: 0 none, 1 IRQ, 2 SEV. */
  sync: (cs = 0, msiAddr = 0, msiData = 0): Cmd => [0x46n | bits(cs, 12, 2) | bits(msiData, 32, 32), B(msiAddr) & 0x000f_ffff_ffff_fffcn],
  raw: (d0: bigint, d1: bigint): Cmd => [d0, d1],
};

// ---- Event records -------------------------------------------------------------------------------

export interface Event {
  id: number;
  ssv: boolean;
  ssid: number;
  sid: number;
  stag: number;
  stall: boolean;
  pnu: boolean;
  ind: boolean;
  rnw: boolean;
  s2: boolean;
  cls: number;
  addr: number;
  ipa: number;
  /** d3 as a number (FetchAddr[51:3] for fetch events). */
  d3: number;
}

export function decodeEvent(d: bigint[]): Event {
  const f = (dw: number, lo: number, w: number): number => Number((d[dw] >> B(lo)) & ((1n << B(w)) - 1n));
  return {
    id: f(0, 0, 8),
    ssv: f(0, 11, 1) === 1,
    ssid: f(0, 12, 20),
    sid: f(0, 32, 32),
    stag: f(1, 0, 16),
    stall: f(1, 31, 1) === 1,
    pnu: f(1, 33, 1) === 1,
    ind: f(1, 34, 1) === 1,
    rnw: f(1, 35, 1) === 1,
    s2: f(1, 39, 1) === 1,
    cls: f(1, 40, 2),
    addr: Number(d[2]),
    ipa: Number(d[3] & 0x000f_ffff_ffff_f000n),
    d3: Number(d[3] & 0x000f_ffff_ffff_fff8n),
  };
}

// ---- Page tables (VMSAv8-64, 4KB granule, 48-bit input, start level 0) -----------------------------

export interface MapPerms {
  read?: boolean;
  write?: boolean;
  exec?: boolean;
  /** Stage 1: accessible to unprivileged accesses (AP[1]). Default true. */
  user?: boolean;
  /** Stage 1: clear the Access flag (to provoke an Access flag fault). */
  noAf?: boolean;
  /** Stage 1: global (nG == 0). */
  global?: boolean;
}

export class PageTable {
  readonly root: number;

  constructor(
    private readonly rig: Rig,
    readonly stage: 1 | 2,
  ) {
    this.root = rig.alloc(4096, 4096);
  }

  private leafDesc(pa: number, p: MapPerms, level: number): bigint {
    const type = level === 3 ? 0b11n : 0b01n;
    let d = type | (B(pa) & 0x0000_ffff_ffff_f000n) | (p.noAf ? 0n : 1n << 10n) | (3n << 8n);
    if (this.stage === 1) {
      d |= 1n << 2n; // AttrIndx 1
      if (p.user !== false) d |= 1n << 6n;
      if (p.write === false) d |= 1n << 7n;
      if (!p.global) d |= 1n << 11n;
      if (p.exec === false) d |= (1n << 53n) | (1n << 54n);
    } else {
      d |= 0xfn << 2n; // MemAttr normal WB
      if (p.read !== false) d |= 1n << 6n;
      if (p.write !== false) d |= 1n << 7n;
      if (p.exec === false) d |= 1n << 54n;
    }
    return d;
  }

  /** Map [ia, ia + size) to [oa, ...) with 4KB pages (or 2MB blocks when `block2m`). */
  map(ia: number, oa: number, size: number, p: MapPerms = {}, block2m = false): void {
    const step = block2m ? 0x20_0000 : 0x1000;
    for (let off = 0; off < size; off += step) this.mapOne(ia + off, oa + off, p, block2m ? 2 : 3);
  }

  private mapOne(ia: number, oa: number, p: MapPerms, leafLevel: number): void {
    let table = this.root;
    for (let level = 0; level < leafLevel; level++) {
      const idx = Math.floor(ia / 2 ** (39 - 9 * level)) % 512;
      const slot = table + idx * 8;
      const cur = this.rig.memory.read64(slot);
      if ((cur & 3n) === 3n) {
        table = Number(cur & 0x0000_ffff_ffff_f000n);
      } else {
        const next = this.rig.alloc(4096, 4096);
        this.rig.memory.write64(slot, B(next) | 3n);
        table = next;
      }
    }
    const idx = Math.floor(ia / 2 ** (39 - 9 * leafLevel)) % 512;
    this.rig.memory.write64(table + idx * 8, this.leafDesc(oa, p, leafLevel));
  }

  /** Address of the descriptor that translates `ia` at `level` (the tables above must exist). */
  slot(ia: number, level: number): number {
    let table = this.root;
    for (let l = 0; l < level; l++) {
      const cur = this.rig.memory.read64(table + (Math.floor(ia / 2 ** (39 - 9 * l)) % 512) * 8);
      if ((cur & 3n) !== 3n) throw new Error(`no level ${l + 1} table for 0x${ia.toString(16)}`);
      table = Number(cur & 0x0000_ffff_ffff_f000n);
    }
    return table + (Math.floor(ia / 2 ** (39 - 9 * level)) % 512) * 8;
  }

  /** Clear the leaf for one 4KB page (invalidate the mapping, without any TLBI). */
  unmap(ia: number): void {
    let table = this.root;
    for (let level = 0; level < 3; level++) {
      const idx = Math.floor(ia / 2 ** (39 - 9 * level)) % 512;
      const cur = this.rig.memory.read64(table + idx * 8);
      if ((cur & 3n) !== 3n) return;
      table = Number(cur & 0x0000_ffff_ffff_f000n);
    }
    this.rig.memory.write64(table + (Math.floor(ia / 4096) % 512) * 8, 0n);
  }

  /** Point a level-0 entry at memory that does not exist (to provoke an external abort on walk). */
  poisonLevel0(ia: number, badPa: number): void {
    const idx = Math.floor(ia / 2 ** 39) % 512;
    this.rig.memory.write64(this.root + idx * 8, (B(badPa) & 0x0000_ffff_ffff_f000n) | 3n);
  }
}

// ---- The rig -------------------------------------------------------------------------------------

export interface QueueSetup {
  cmdqLog2?: number;
  evtqLog2?: number;
  priqLog2?: number;
  /** Linear stream table LOG2SIZE, or a 2-level one. */
  strtab?: { linear: number } | { twoLevel: { log2size: number; split: number } };
  cr2?: number;
  atschk?: boolean;
  priq?: boolean;
}

/** An ATS/PRI endpoint that records what the SMMU sends it. */
export class FakeEndpoint implements AtsEndpoint {
  readonly invalidations: AtcInvalidation[] = [];
  readonly responses: PageResponse[] = [];
  /** When false, invalidations are never completed (a device that does not answer). */
  answers = true;

  constructor(
    readonly name: string,
    private readonly rig: Rig,
    private readonly latencyNs = 500,
  ) {}

  invalidateAtc(inv: AtcInvalidation, done: () => void): void {
    this.invalidations.push(inv);
    if (this.answers) this.rig.scheduler.schedule(this.latencyNs, done, 'fake ATC inv done');
  }

  pageResponse(resp: PageResponse): void {
    this.responses.push(resp);
  }
}

export class Rig extends MachineSlice {
  readonly smmu: SmmuV3;
  readonly irqs: Record<string, number> = { eventq: 0, priq: 0, 'cmdq-sync': 0, gerror: 0, combined: 0 };
  private next = RAM_BASE + 0x10_0000;
  cmdq = { base: 0, log2: 0, prod: 0 };
  evtq = { base: 0, log2: 0, cons: 0 };
  priq = { base: 0, log2: 0, cons: 0 };
  strtab = { base: 0, twoLevel: false, split: 0 };

  constructor(options: SmmuV3Options = {}, seed = 1) {
    super({ seed, ram: [{ base: RAM_BASE, size: RAM_SIZE }] });
    const line = (n: string) => ({ raise: () => void this.irqs[n]++ });
    this.smmu = new SmmuV3(
      {
        scheduler: this.scheduler,
        memory: this.memory,
        downstream: this.interconnect,
        irqs: { eventq: line('eventq'), priq: line('priq'), 'cmdq-sync': line('cmdq-sync'), gerror: line('gerror'), combined: line('combined') },
        trace: this.trace,
      },
      { name: '/smmu@9000000', ...options },
    );
    this.mmio.map(SMMU_BASE, 0x2_0000, this.smmu);
  }

  /** Allocate zeroed RAM. */
  alloc(size: number, align = 4096): number {
    this.next = Math.ceil(this.next / align) * align;
    const a = this.next;
    this.next += size;
    if (this.next > RAM_BASE + RAM_SIZE) throw new Error('rig RAM exhausted');
    return a;
  }

  r32(off: number): number {
    return this.mmio.read32(SMMU_BASE + off);
  }

  w32(off: number, v: number): void {
    this.mmio.write32(SMMU_BASE + off, v >>> 0);
  }

  w64(off: number, v: number | bigint): void {
    this.mmio.write64(SMMU_BASE + off, B(v));
  }

  r64(off: number): bigint {
    return this.mmio.read64(SMMU_BASE + off);
  }

  settle(): void {
    this.scheduler.runSyncUntilIdle();
  }

  /** Write CR0 and wait (in virtual time) for CR0ACK to match. */
  setCr0(v: number): void {
    this.w32(REG.CR0, v);
    this.settle();
    if (this.r32(REG.CR0ACK) !== v) throw new Error(`CR0ACK ${this.r32(REG.CR0ACK).toString(16)} != ${v.toString(16)}`);
  }

  /** Bring the SMMU up the way a driver does: stream table, queues, invalidate, enable. */
  init(s: QueueSetup = {}): void {
    const cmdqLog2 = s.cmdqLog2 ?? 8;
    const evtqLog2 = s.evtqLog2 ?? 6;
    const priqLog2 = s.priqLog2 ?? 6;
    const st = s.strtab ?? { linear: 8 };
    if ('linear' in st) {
      this.strtab = { base: this.alloc(64 << st.linear, Math.max(4096, 64 << st.linear)), twoLevel: false, split: 0 };
      this.w64(REG.STRTAB_BASE, this.strtab.base);
      this.w32(REG.STRTAB_BASE_CFG, st.linear);
    } else {
      const { log2size, split } = st.twoLevel;
      const l1 = this.alloc(8 << (log2size - split), 4096);
      this.strtab = { base: l1, twoLevel: true, split };
      this.w64(REG.STRTAB_BASE, l1);
      this.w32(REG.STRTAB_BASE_CFG, (1 << 16) | (split << 6) | log2size);
    }
    this.cmdq = { base: this.alloc(16 << cmdqLog2, Math.max(4096, 16 << cmdqLog2)), log2: cmdqLog2, prod: 0 };
    this.w64(REG.CMDQ_BASE, B(this.cmdq.base) | B(cmdqLog2));
    this.w32(REG.CMDQ_PROD, 0);
    this.w32(REG.CMDQ_CONS, 0);
    this.evtq = { base: this.alloc(32 << evtqLog2, Math.max(4096, 32 << evtqLog2)), log2: evtqLog2, cons: 0 };
    this.w64(REG.EVENTQ_BASE, B(this.evtq.base) | B(evtqLog2));
    this.w32(REG.EVENTQ_PROD, 0);
    this.w32(REG.EVENTQ_CONS, 0);
    let cr0 = CR0_CMDQEN;
    this.setCr0(cr0);
    this.issue(CMD.cfgiAll(), CMD.sync(), CMD.tlbiNsnhAll(), CMD.sync());
    this.w32(REG.CR2, s.cr2 ?? CR2_RECINVSID);
    cr0 |= CR0_EVTQEN;
    if (s.priq ?? true) {
      this.priq = { base: this.alloc(16 << priqLog2, Math.max(4096, 16 << priqLog2)), log2: priqLog2, cons: 0 };
      this.w64(REG.PRIQ_BASE, B(this.priq.base) | B(priqLog2));
      this.w32(REG.PRIQ_PROD, 0);
      this.w32(REG.PRIQ_CONS, 0);
      cr0 |= CR0_PRIQEN;
    }
    this.setCr0(cr0);
    this.w32(REG.IRQ_CTRL, IRQ_GERROR | IRQ_EVTQ | (s.priq ?? true ? IRQ_PRIQ : 0));
    this.settle();
    if (s.atschk) cr0 |= CR0_ATSCHK;
    this.setCr0(cr0 | CR0_SMMUEN);
  }

  /** Write a 2-level stream table L1 descriptor covering `sid` with a fresh L2 table. */
  addL2(sid: number): number {
    const split = this.strtab.split;
    const l2 = this.alloc(64 << split, Math.max(4096, 64 << split));
    const l1idx = Math.floor(sid / 2 ** split);
    this.memory.write64(this.strtab.base + l1idx * 8, B(l2) | B(split + 1));
    return l2;
  }

  steAddr(sid: number): number {
    if (!this.strtab.twoLevel) return this.strtab.base + sid * 64;
    const split = this.strtab.split;
    const l1 = this.memory.read64(this.strtab.base + Math.floor(sid / 2 ** split) * 8);
    if ((l1 & 0x1fn) === 0n) throw new Error(`no L2 table for SID ${sid}`);
    return Number(l1 & 0x000f_ffff_ffff_ffc0n) + (sid % 2 ** split) * 64;
  }

  writeDwords(addr: number, d: bigint[]): void {
    d.forEach((x, i) => this.memory.write64(addr + i * 8, x));
  }

  writeSte(sid: number, d: bigint[]): void {
    this.writeDwords(this.steAddr(sid), d);
  }

  /** Put commands in the command queue and ring the doorbell (PROD). Does not run the scheduler. */
  post(...cmds: Cmd[]): void {
    const mask = (1 << (this.cmdq.log2 + 1)) - 1;
    for (const [d0, d1] of cmds) {
      const idx = this.cmdq.prod & ((1 << this.cmdq.log2) - 1);
      this.memory.write64(this.cmdq.base + idx * 16, d0);
      this.memory.write64(this.cmdq.base + idx * 16 + 8, d1);
      this.cmdq.prod = (this.cmdq.prod + 1) & mask;
    }
    this.w32(REG.CMDQ_PROD, this.cmdq.prod);
  }

  /** Post commands and run the scheduler until the SMMU is idle. */
  issue(...cmds: Cmd[]): void {
    this.post(...cmds);
    this.settle();
  }

  /** Read and consume the new event records, as a driver's event thread does. */
  events(): Event[] {
    const out: Event[] = [];
    const prod = this.r32(REG.EVENTQ_PROD);
    const mask = (1 << (this.evtq.log2 + 1)) - 1;
    let cons = this.evtq.cons & mask;
    while ((cons & mask) !== (prod & mask)) {
      const idx = cons & ((1 << this.evtq.log2) - 1);
      const a = this.evtq.base + idx * 32;
      out.push(decodeEvent([0, 1, 2, 3].map((i) => this.memory.read64(a + i * 8))));
      cons = (cons + 1) & mask;
    }
    this.evtq.cons = cons | (this.evtq.cons & 0x8000_0000);
    this.w32(REG.EVENTQ_CONS, this.evtq.cons);
    return out;
  }

  /** Submit a DMA transaction and run the scheduler; returns its completion (or null if held). */
  dma(req: Partial<DmaRequest> & { streamId: number; addr: number }, settle = true): { c: DmaCompletion | null } {
    const r: DmaRequest = {
      master: 'test-master',
      ssid: 0,
      ssidValid: false,
      len: 4,
      write: false,
      exec: false,
      priv: false,
      ...req,
    };
    if (r.write && !r.data) r.data = new Uint8Array(r.len).fill(0xa5);
    const box: { c: DmaCompletion | null } = { c: null };
    this.smmu.submit(r, (c) => {
      box.c = c;
    });
    if (settle) this.settle();
    return box;
  }

  /**
   * A stage 1 context: page table + CD in a linear one-entry table; returns the PageTable. `pt` given:
   * the context walks that table (another ASID or stream over the same mappings).
   */
  s1Context(sid: number, asid: number, extra: Partial<SteSpec> = {}, cdExtra: Partial<CdSpec> = {}, pt = new PageTable(this, 1)): { pt: PageTable; cdAddr: number } {
    const cdAddr = this.alloc(64, 64);
    this.writeDwords(cdAddr, cd({ asid, ttb0: pt.root, ...cdExtra }));
    this.writeSte(sid, ste({ config: 0b101, s1ContextPtr: cdAddr, ...extra }));
    return { pt, cdAddr };
  }
}
