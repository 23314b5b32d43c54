/**
 * SMMUv3 model benchmarks (the hardware model alone, programmed through its registers and memory
 * the way a driver would, with the bench's own encodings):
 * - v3.translate_hit: TLB-hit translations through `translateFast` (stage 1, 4K pages, 1024 pages
 *   resident in the TLB, visited in a scrambled order), transactions/s.
 * - v3.translate_walk: cold translations, configuration cached but every access a TLB miss (a 4-level
 *   stage 1 walk, over 64K mapped pages, visited in a scrambled order), transactions/s.
 * - v3.cmdq_tlbi_model: CMD_TLBI_NH_VA commands consumed by the model in batches of 64 followed by a
 *   CMD_SYNC (written to the queue, doorbell, scheduler run to completion), TLBI commands/s.
 */
import type { DmaPort } from '../hw/dma.js';
import { PhysicalMemory } from '../hw/memory.js';
import { Scheduler } from '../hw/scheduler.js';
import { Outcome } from '../hw/smmu-v3/outcome.js';
import { SmmuV3 } from '../hw/smmu-v3/smmu-v3.js';
import { throughput, type Bench } from './harness.js';

const RAM_BASE = 0x8000_0000;
const RAM_SIZE = 0x2000_0000;
const SID = 3;
const ASID = 7;
const IOVA_BASE = 0x10_0000_0000;

// Register offsets and fields (SMMUv3 spec), independent of the model's own definitions.
const CR0 = 0x20;
const CR0_SMMUEN = 1;
const CR0_CMDQEN = 8;
const STRTAB_BASE = 0x80;
const STRTAB_BASE_CFG = 0x88;
const CMDQ_BASE = 0x90;
const CMDQ_PROD = 0x98;
const CMDQ_CONS = 0x9c;
const CMDQ_LOG2 = 10;

class Machine {
  readonly sched = new Scheduler(1);
  readonly ram = new PhysicalMemory();
  readonly smmu: SmmuV3;
  private next = RAM_BASE;
  private pt = 0;
  readonly cmdq: number;
  prod = 0;

  constructor(tlbEntries: number) {
    this.ram.addRegion(RAM_BASE, RAM_SIZE);
    const sink: DmaPort = { submit: (_req, done) => done({ status: 'ok' }) };
    this.smmu = new SmmuV3({ scheduler: this.sched, memory: this.ram, downstream: sink }, { name: 'bench-smmu', tlbEntries });
    const strtab = this.alloc(64 * 16);
    this.smmu.write64(STRTAB_BASE, BigInt(strtab));
    this.smmu.write32(STRTAB_BASE_CFG, 4);
    this.cmdq = this.alloc(16 << CMDQ_LOG2);
    this.smmu.write64(CMDQ_BASE, BigInt(this.cmdq) | BigInt(CMDQ_LOG2));
    this.smmu.write32(CMDQ_PROD, 0);
    this.smmu.write32(CMDQ_CONS, 0);
    this.pt = this.alloc(4096);
    const cd = this.alloc(64);
    // CD: T0SZ 16, TG0 4K, EPD1, V, IPS 48, AA64, R, A, ASID.
    this.ram.write64(cd, 16n | (1n << 30n) | (1n << 31n) | (5n << 32n) | (1n << 41n) | (1n << 45n) | (1n << 46n) | (BigInt(ASID) << 48n));
    this.ram.write64(cd + 8, BigInt(this.pt));
    // STE: V, Config S1 translate, S1ContextPtr.
    this.ram.write64(strtab + SID * 64, 1n | (0b101n << 1n) | BigInt(cd));
    this.smmu.write32(CR0, CR0_CMDQEN | CR0_SMMUEN);
    this.sched.runSyncUntilIdle();
  }

  /** Allocate RAM aligned to its size (queues and tables must be naturally aligned), at least 4K. */
  alloc(size: number): number {
    const align = Math.max(4096, 2 ** Math.ceil(Math.log2(size)));
    const a = Math.ceil(this.next / align) * align;
    this.next = a + size;
    return a;
  }

  /** Map `pages` 4K pages from IOVA_BASE onto a 1 MiB data buffer (page i to buffer page i % 256). */
  map(pages: number): void {
    const data = this.alloc(256 * 4096);
    for (let i = 0; i < pages; i++) {
      const va = IOVA_BASE + i * 4096;
      let table = this.pt;
      for (let level = 0; level < 3; level++) {
        const slot = table + (Math.floor(va / 2 ** (39 - 9 * level)) % 512) * 8;
        const cur = this.ram.read32(slot);
        if ((cur & 3) === 3) table = this.ram.read32(slot) - 3 + this.ram.read32(slot + 4) * 2 ** 32;
        else {
          const t = this.alloc(4096);
          this.ram.write32(slot, (t % 2 ** 32) + 3);
          this.ram.write32(slot + 4, Math.floor(t / 2 ** 32));
          table = t;
        }
      }
      const pa = data + (i % 256) * 4096;
      // Page descriptor: valid, page, AttrIndx 1, AP[1] (EL0), SH inner, AF, nG.
      this.ram.write32(table + (Math.floor(va / 4096) % 512) * 8, (pa % 2 ** 32) + 0b11 + (1 << 2) + (1 << 6) + (3 << 8) + (1 << 10) + (1 << 11));
      this.ram.write32(table + (Math.floor(va / 4096) % 512) * 8 + 4, Math.floor(pa / 2 ** 32));
    }
  }

  /** Post commands ([d0 lo, d0 hi, d1 lo, d1 hi] words) and ring the doorbell. */
  post(words: number[][]): void {
    const mask = (1 << (CMDQ_LOG2 + 1)) - 1;
    for (const w of words) {
      const at = this.cmdq + (this.prod & ((1 << CMDQ_LOG2) - 1)) * 16;
      this.ram.write32(at, w[0]);
      this.ram.write32(at + 4, w[1]);
      this.ram.write32(at + 8, w[2]);
      this.ram.write32(at + 12, w[3]);
      this.prod = (this.prod + 1) & mask;
    }
    this.smmu.write32(CMDQ_PROD, this.prod);
  }
}

/** A permutation of 0..n-1 that scatters consecutive indexes (n a power of two). */
function scramble(n: number): Uint32Array {
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.imul(i, 0x9e37_79b1) >>> 0;
  for (let i = 0; i < n; i++) out[i] = out[i] % n;
  const seen = new Uint8Array(n);
  let k = 0;
  for (let i = 0; i < n; i++) {
    let v = out[i];
    while (seen[v]) v = (v + 1) % n;
    seen[v] = 1;
    out[k++] = v;
  }
  return out;
}

function translateHit(): number {
  const pages = 1024;
  const m = new Machine(16384);
  m.map(pages);
  const order = scramble(pages);
  const smmu = m.smmu;
  // Fill the TLB through the slow path once.
  for (let i = 0; i < pages; i++) smmu.submit({ master: 'bench', streamId: SID, ssid: 0, ssidValid: false, addr: IOVA_BASE + i * 4096, len: 4, write: false, exec: false, priv: false }, () => {});
  let sink = 0;
  const rate = throughput((n) => {
    for (let i = 0; i < n; i++) {
      const pa = smmu.translateFast(SID, -1, IOVA_BASE + order[i & (pages - 1)] * 4096 + 0x18, 0);
      if (pa < 0) throw new Error('v3.translate_hit: unexpected TLB miss');
      sink += pa & 1;
    }
  });
  if (sink < 0) throw new Error('unreachable');
  return rate;
}

function translateWalk(): number {
  const pages = 65536;
  // A one-entry TLB: every translation of a new page misses and walks.
  const m = new Machine(1);
  m.map(pages);
  const order = scramble(pages);
  const out = new Outcome();
  const tr = m.smmu.translator;
  const walksBefore = tr.stats.walks;
  let calls = 0;
  const rate = throughput((n) => {
    for (let i = 0; i < n; i++) {
      if (!tr.translate(SID, false, 0, IOVA_BASE + order[i & (pages - 1)] * 4096, 0, out)) throw new Error(`v3.translate_walk: ${out.detail}`);
    }
    calls += n;
  });
  if (tr.stats.walks - walksBefore < calls * 0.99) throw new Error('v3.translate_walk: translations were not cold');
  return rate;
}

function cmdqTlbi(): number {
  const m = new Machine(16384);
  m.map(256);
  const batch = 64;
  const cmds: number[][] = [];
  for (let i = 0; i < batch; i++) {
    // CMD_TLBI_NH_VA: opcode 0x12, VMID 0, ASID; Leaf, address.
    const va = IOVA_BASE + i * 4096;
    cmds.push([0x12, ASID << 16, 1 + (va % 2 ** 32), Math.floor(va / 2 ** 32)]);
  }
  cmds.push([0x46, 0, 0, 0]); // CMD_SYNC, CS = NONE
  const consumedBefore = m.smmu.cmdq.stats.total;
  let batches = 0;
  const rate = throughput((n) => {
    for (let b = 0; b < n; b++) {
      m.post(cmds);
      m.sched.runSyncUntilIdle();
    }
    batches += n;
  }, batch);
  if (m.smmu.cmdq.stats.total - consumedBefore !== batches * (batch + 1)) throw new Error('v3.cmdq_tlbi_model: commands were not all consumed');
  return rate;
}

export const benches: Bench[] = [
  { name: 'v3.translate_hit_model', unit: 'transactions/s', run: translateHit },
  { name: 'v3.translate_walk_model', unit: 'transactions/s', run: translateWalk },
  { name: 'v3.cmdq_tlbi_model', unit: 'commands/s', run: cmdqTlbi },
];
