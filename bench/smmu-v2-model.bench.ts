/**
 * SMMUv2 model throughput, the model alone (a sink instead of the interconnect):
 * - v2.translate_hit_model: TLB-hit translations of a stage 1 bank, per second;
 * - v2.stall_roundtrip_model: stalled faults resolved by retry per second (fault, stall, software
 *   maps the page and clears FSR, RESUME, the scheduled retry translates and completes; then the
 *   page is unmapped and invalidated so the next round faults again).
 */
import type { Bench } from './harness.js';
import { throughput } from './harness.js';
import type { DmaCompletion, DmaDone, DmaPort, DmaRequest } from '../hw/dma.js';
import { PhysicalMemory } from '../hw/memory.js';
import { Scheduler } from '../hw/scheduler.js';
import { SmmuV2 } from '../hw/smmu-v2/index.js';

const RAM = 0x8000_0000;
const OK: DmaCompletion = { status: 'ok' };

/** Downstream that completes everything at once, so only the model is measured. */
class Sink implements DmaPort {
  submit(_req: DmaRequest, done: DmaDone): void {
    done(OK);
  }
}

// Context bank page offsets (pages of 4K, NUMPAGE = 8 with NUMPAGENDXB = 2).
const CB0 = 8 << 12;
const GR1 = 1 << 12;

interface Rig {
  smmu: SmmuV2;
  sched: Scheduler;
  mem: PhysicalMemory;
  /** PA of the level 3 table holding the PTE of `va`. */
  pteOf(va: number): number;
}

/** A stage 1 bank 0 with 4K tables for VAs below 2M, stream 1 routed to it. */
function rig(sctlr: number): Rig {
  const sched = new Scheduler(1);
  const mem = new PhysicalMemory();
  mem.addRegion(RAM, 0x1000_0000);
  const smmu = new SmmuV2({ name: '/bench-smmu', scheduler: sched, memory: mem, downstream: new Sink() }, {
    model: 'mmu-500',
    numCb: 4,
    numPageNdxb: 2,
  });
  const l0 = RAM + 0x10_0000;
  const l1 = l0 + 0x1000;
  const l2 = l0 + 0x2000;
  const l3 = l0 + 0x3000;
  mem.write32(l0, l1 | 3);
  mem.write32(l1, l2 | 3);
  mem.write32(l2, l3 | 3);
  smmu.write32(GR1 + 0x800, 1); // CBA2R0.VA64
  smmu.write32(GR1 + 0x000, 1 << 16); // CBAR0: stage 1
  smmu.write32(CB0 + 0x010, (7 << 15) | 5); // TCR2
  smmu.write32(CB0 + 0x030, (1 << 23) | 16); // TCR: EPD1, T0SZ 16
  smmu.write64(CB0 + 0x020, (1n << 48n) | BigInt(l0));
  smmu.write32(CB0 + 0x000, sctlr);
  smmu.write32(0xc00, 0); // S2CR0: translate, bank 0
  smmu.write32(0x800, 0x8000_0001); // SMR0: SID 1
  smmu.write32(0x000, 0x6); // sCR0: GFRE | GFIE, CLIENTPD clear
  return { smmu, sched, mem, pteOf: (va) => l3 + 8 * ((va >>> 12) & 511) };
}

function request(addr: number): DmaRequest {
  return { master: '/bench-master', streamId: 1, ssid: 0, ssidValid: false, addr, len: 64, write: false, exec: false, priv: false };
}

export const benches: Bench[] = [
  {
    name: 'v2.translate_hit_model',
    unit: 'translations/s',
    run(): number {
      const r = rig(0x67); // M | TRE | AFE | CFRE | CFIE
      for (let i = 0; i < 16; i++) r.mem.write32(r.pteOf(i * 0x1000), (RAM + 0x20_0000 + i * 0x1000) | 0x743);
      const reqs = Array.from({ length: 16 }, (_, i) => request(i * 0x1000 + 0x40));
      let ok = 0;
      const done: DmaDone = (c) => {
        if (c.status === 'ok') ok++;
      };
      const value = throughput((n) => {
        for (let i = 0; i < n; i++) r.smmu.submit(reqs[i & 15], done);
      });
      if (ok === 0) throw new Error('v2.translate_hit_model: no translation succeeded');
      return value;
    },
  },
  {
    name: 'v2.stall_roundtrip_model',
    unit: 'faults/s',
    run(): number {
      const r = rig(0xe7); // M | TRE | AFE | CFRE | CFIE | CFCFG
      const va = 0x5000;
      const req = request(va);
      const pte = r.pteOf(va);
      let completed = 0;
      const done: DmaDone = (c) => {
        if (c.status !== 'ok') throw new Error(`v2.stall_roundtrip_model: retry ended ${c.status}`);
        completed++;
      };
      const value = throughput((n) => {
        for (let i = 0; i < n; i++) {
          r.smmu.submit(req, done); // faults and stalls
          r.mem.write32(pte, (RAM + 0x30_0000) | 0x743); // the handler maps the page
          r.smmu.write32(CB0 + 0x058, r.smmu.read32(CB0 + 0x058)); // clear FSR
          r.smmu.write32(CB0 + 0x008, 0); // RESUME: retry
          r.sched.runSyncUntilIdle();
          r.mem.write32(pte, 0); // unmap and invalidate for the next round
          r.smmu.write64(CB0 + 0x600, (1n << 48n) | BigInt(va >>> 12));
          r.smmu.write32(CB0 + 0x7f0, 0);
          r.sched.runSyncUntilIdle();
        }
      }, 1, 300);
      if (completed === 0) throw new Error('v2.stall_roundtrip_model: nothing completed');
      return value;
    },
  },
];
