/**
 * Hostile MMIO and memory campaign: random register writes (named offsets and anywhere in the
 * frame), random bytes in the memory the model reads (queues, stream tables, descriptors, page
 * tables), random queue bases and doorbells, and random DMA, against each SMMU model on its own.
 * Judged: no exception ever escapes the model, and the model never livelocks (every burst of hardware
 * work ends within a bounded number of scheduler steps).
 *
 * Targets are a list: the SMMUv3 model, every SMMUv1/v2 flavour and the Grace CMDQV (in front of an
 * SMMUv3 model); another model joins as one more HostileTarget with its frame, its named offsets, its
 * DMA entry and, optionally, a structured set-up.
 */
import { Prng } from '../../hw/prng.js';
import { TimeLimitError } from '../../hw/scheduler.js';
import { SMMU_V2_MODELS } from '../../hw/smmu-v2/options.js';
import { Rig as SmmuV2Rig } from '../hw/smmu-v2/rig.js';
import { CmdqvRig, CV, Q } from '../hw/tegra241-cmdqv/rig.js';
import { REG, Rig, RAM_BASE as V3_RAM } from '../hw/smmu-v3/rig.js';
import { GicIts, GITS_BASER0, GITS_CBASER, GITS_CREADR, GITS_CTLR, GITS_CWRITER, GITS_IIDR, GITS_TYPER } from '../../hw/gic-its.js';
import { machineFromAcpi, virtAcpiMachine } from '../../scenarios/lib/lab.js';
import { QEMU, qemuTables } from '../bus/acpi/acpi-fixture.js';
import { virtIortOffsets } from '../../scenarios/machines/virt-acpi.js';
import { VIRT } from '../../scenarios/machines/virt.js';
import { CampaignFailure } from './campaign.js';

/** One model instance under attack. */
export interface Hostile {
  /** Size of the register frame. */
  readonly mmioSize: number;
  /** Offsets worth hitting more often (the architected registers). */
  readonly named: readonly number[];
  w32(off: number, v: number): void;
  r32(off: number): number;
  /** RAM the model may read: where hostile bytes go. */
  readonly ram: { base: number; size: number };
  writeRam(pa: number, bytes: Uint8Array): void;
  /** Issue a DMA from stream `sid`; completion is not awaited. */
  dma(sid: number, addr: number, len: number, write: boolean): void;
  /** Run the hardware until idle, at most `maxSteps` events (TimeLimitError beyond). */
  settle(maxSteps: number): void;
  /**
   * Program a plausible configuration with random field values (a stream routed to a context bank
   * that translates, with random TCR/SCTLR/CBAR bits), so random DMA reaches the deep paths; returns
   * a description. Models without one get only unstructured programs.
   */
  structured?(prng: Prng): string;
}

export interface HostileTarget {
  readonly name: string;
  build(seed: number): Hostile;
}

const smmuV3Target: HostileTarget = {
  name: 'smmu-v3',
  build(seed) {
    const rig = new Rig({}, seed);
    return {
      mmioSize: 0x20000,
      named: Object.values(REG),
      w32: (off, v) => rig.w32(off, v),
      r32: (off) => rig.r32(off),
      ram: { base: V3_RAM, size: 0x40_0000 },
      writeRam: (pa, b) => rig.memory.write(pa, b),
      dma: (sid, addr, len, write) => void rig.dma({ streamId: sid, addr, len, write }, false),
      settle: (maxSteps) => void rig.scheduler.runSyncUntilIdle(Number.POSITIVE_INFINITY, maxSteps),
    };
  },
};

function smmuV2Target(model: (typeof SMMU_V2_MODELS)[number]): HostileTarget {
  return {
    name: model,
    build() {
      const b = new SmmuV2Rig({ model, numSmr: 8, numCb: 8, numPageNdxb: 3 });
      const named: number[] = [];
      for (let off = 0; off < 0x100; off += 4) named.push(b.gr0Addr(off) - b.gr0Addr(0));
      for (let i = 0; i < 8; i++) named.push(0x800 + 4 * i, 0xc00 + 4 * i, b.gr1Addr(4 * i) - b.gr0Addr(0), b.gr1Addr(0x800 + 4 * i) - b.gr0Addr(0));
      for (let n = 0; n < 8; n++) {
        for (const off of [0, 4, 8, 0x10, 0x20, 0x24, 0x28, 0x2c, 0x30, 0x38, 0x58, 0x600, 0x610, 0x618, 0x630, 0x7f0, 0x800, 0x808]) named.push(b.cbAddr(n, off) - b.gr0Addr(0));
      }
      const base = b.gr0Addr(0);
      const size = b.cbAddr(8, 0) - base;
      return {
        mmioSize: size,
        named,
        w32: (off, v) => b.mmio.write32(base + off, v >>> 0),
        r32: (off) => b.mmio.read32(base + off),
        ram: { base: 0x8000_0000, size: 0x40_0000 },
        writeRam: (pa, bytes) => b.memory.write(pa, bytes),
        dma: (sid, addr, len, write) => void (write ? b.write(sid, addr, new Uint8Array(len).fill(0x5a)) : b.read(sid, addr, len)),
        settle: (maxSteps) => void b.scheduler.runSyncUntilIdle(Number.POSITIVE_INFINITY, maxSteps),
        structured(prng) {
          const n = prng.int(8);
          const cb = prng.int(8);
          const sid = prng.int(8);
          const root = 0x8000_0000 + prng.int(0x400) * 0x1000;
          const tcr = prng.int(2) ? prng.nextU32() : (prng.nextU32() & ~0x0080_0080) | (prng.int(2) << 7) | (prng.int(2) << 23) | (prng.int(2) << 31);
          const sctlr = 1 | (prng.nextU32() & 0x1ff);
          b.setGr0(0x800 + 4 * n, (0x8000_0000 | sid) >>> 0); // SMR: valid, this stream
          b.setGr0(0xc00 + 4 * n, cb); // S2CR: translate through bank cb
          b.setGr1(0x800 + 4 * cb, prng.int(2)); // CBA2R.VA64
          b.setGr1(4 * cb, ((prng.int(4) << 16) | (prng.int(8) << 8) | prng.int(256)) >>> 0); // CBAR: type, CBNDX, VMID
          b.setCb(cb, 0x10, prng.nextU32()); // TCR2
          b.setCb(cb, 0x30, tcr >>> 0); // TCR
          b.setCb(cb, 0x20, root); // TTBR0
          b.setCb(cb, 0x28, root + 0x1000); // TTBR1
          b.setCb(cb, 0x00, sctlr); // SCTLR (M=1)
          b.setGr0(0, b.gr0(0) & ~1); // sCR0.CLIENTPD = 0
          return `bank ${cb} for sid ${sid}: TCR 0x${(tcr >>> 0).toString(16)}, SCTLR 0x${sctlr.toString(16)}`;
        },
      };
    },
  };
}

/** The Grace CMDQV model in front of an SMMUv3 model: its config page, VINTF pages and VCMDQs. */
const cmdqvTarget: HostileTarget = {
  name: 'tegra241-cmdqv',
  build(seed) {
    const rig = new CmdqvRig({}, {}, seed);
    rig.init();
    const named: number[] = [CV.CONFIG, CV.PARAM, CV.STATUS, CV.VI_ERR_MAP0, CV.VI_ERR_MAP1, CV.VI_INT_MASK0, CV.VI_INT_MASK1];
    for (let i = 0; i < 4; i++) named.push(CV.CMDQ_ERR_MAP(i % 2), CV.CMDQ_ALLOC(i), CV.VINTF_CONFIG(i % 2), CV.VINTF_STATUS(i % 2), CV.SID_MATCH(i % 2, i), CV.SID_REPLACE(i % 2, i));
    for (let q = 0; q < 4; q++) {
      for (const off of [Q.CONS, Q.PROD, Q.CONFIG, Q.STATUS, Q.GERROR, Q.GERRORN]) named.push(CV.Q0(q) + off, CV.L0(q % 2, q >> 1) + off);
      for (const off of [Q.BASE, Q.BASE + 4, Q.CONS_INDX_BASE, Q.CONS_INDX_BASE + 4]) named.push(CV.Q1(q) + off, CV.L1(q % 2, q >> 1) + off);
    }
    return {
      mmioSize: rig.cmdqv.regionSize,
      named,
      w32: (off, v) => rig.cw(off, v),
      r32: (off) => rig.cr(off),
      ram: { base: V3_RAM, size: 0x40_0000 },
      writeRam: (pa, b) => rig.memory.write(pa, b),
      dma: (sid, addr, len, write) => void rig.dma({ streamId: sid, addr, len, write }, false),
      settle: (maxSteps) => void rig.scheduler.runSyncUntilIdle(Number.POSITIVE_INFINITY, maxSteps),
      structured(prng) {
        // A plausible set-up (the rig's handshakes), then garbage into the queue the model will read.
        const q = prng.int(4);
        const v = prng.int(2);
        try {
          rig.enableCmdqv();
          rig.enableVintf(v, prng.int(4), prng.int(2) === 0);
          rig.setupQueue(q, v, prng.int(2), 2 + prng.int(6));
        } catch (e) {
          return `set-up refused (${e instanceof Error ? e.message : String(e)})`;
        }
        const base = rig.queues.get(q)!.base;
        const words = new Uint8Array(16 * (1 + prng.int(8)));
        for (let k = 0; k < words.length; k++) words[k] = prng.int(256);
        rig.memory.write(base, words);
        rig.cw(CV.Q0(q) + Q.PROD, prng.int(2) ? words.length / 16 : prng.nextU32());
        return `VCMDQ ${q} of VINTF ${v}: ${words.length / 16} random commands`;
      },
    };
  },
};

/**
 * An SMMU of the built-in virt machine described by its ACPI tables (the model the IORT node made,
 * in a whole machine: its frame in the machine's MMIO map, the machine's RAM, DMA through the
 * machine's port for the stream), with no kernel booted: the SMMUv3 and the MMU-500 node.
 */
function acpiMachineTarget(name: string, iortPath: string, named: readonly number[]): HostileTarget {
  return {
    name,
    build(seed) {
      const machine = virtAcpiMachine({ seed, ramSize: 0x40_0000 });
      const entry = machine.iommus.get(iortPath);
      const region = entry?.regions[0];
      if (!region) throw new Error(`${name}: the ACPI virt machine has no ${iortPath}`);
      const base = region.base;
      const info = (sid: number) => ({ name: 'hostile', streamId: sid, cells: [sid], kind: 'platform' as const, canStall: false, pasidBits: 0 });
      return {
        mmioSize: region.size,
        named: named.filter((o) => o < region.size),
        w32: (off, v) => machine.mmio.write32(base + off, v >>> 0),
        r32: (off) => machine.mmio.read32(base + off),
        ram: { base: VIRT.ramBase, size: 0x40_0000 },
        writeRam: (pa, b) => machine.memory.write(pa, b),
        dma: (sid, addr, len, write) =>
          machine.portFor(iortPath, info(sid)).port.submit(
            { master: 'hostile', streamId: sid, ssid: 0, ssidValid: false, addr, len, write, exec: false, priv: false, data: write ? new Uint8Array(len).fill(0x5a) : undefined },
            () => undefined,
          ),
        settle: (maxSteps) => void machine.scheduler.runSyncUntilIdle(Number.POSITIVE_INFINITY, maxSteps),
      };
    },
  };
}

/**
 * The GICv3 ITS model inside a QEMU-shaped ACPI machine: random register writes, random commands in
 * a queue it has been pointed at, and MSI writes from masters with and without a DeviceID.
 */
const itsTarget: HostileTarget = {
  name: 'gic-its',
  build(seed) {
    const { tables, memory } = qemuTables();
    const machine = machineFromAcpi(tables, memory, { seed });
    const its = machine.msiFrames.find((f): f is GicIts => f instanceof GicIts);
    if (!its) throw new Error('gic-its: the QEMU-shaped machine has no ITS');
    for (let d = 0; d < 4; d++) its.setDeviceId(`hostile-${d}`, d * 3);
    const ram = { base: QEMU.ram.base, size: 0x40_0000 };
    return {
      mmioSize: 0x2_0000,
      named: [GITS_CTLR, GITS_IIDR, GITS_TYPER, GITS_TYPER + 4, GITS_CBASER, GITS_CBASER + 4, GITS_CWRITER, GITS_CWRITER + 4, GITS_CREADR, GITS_BASER0, 0x10040],
      w32: (off, v) => machine.mmio.write32(its.base + off, v >>> 0),
      r32: (off) => machine.mmio.read32(its.base + off),
      ram,
      writeRam: (pa, b) => machine.memory.write(pa, b),
      dma: (sid, addr) => its.dmaWrite32(0x10040, addr & 0xffff, `hostile-${sid & 7}`),
      settle: (maxSteps) => void machine.scheduler.runSyncUntilIdle(Number.POSITIVE_INFINITY, maxSteps),
      structured(prng) {
        // A queue in RAM, the ITS enabled, random commands (valid opcodes more often) and a doorbell.
        const q = ram.base + prng.int(ram.size >>> 16) * 0x1_0000;
        const n = 1 + prng.int(16);
        const b = new Uint8Array(n * 32);
        const dv = new DataView(b.buffer);
        const ops = [0x01, 0x03, 0x04, 0x05, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0f, prng.int(256)];
        for (let i = 0; i < n; i++) {
          for (let w = 0; w < 8; w++) dv.setUint32(i * 32 + w * 4, prng.int(3) === 0 ? prng.nextU32() : prng.int(16), true);
          dv.setUint8(i * 32, ops[prng.int(ops.length)]);
          if (prng.int(2)) dv.setUint32(i * 32 + 12, 8192 + prng.int(64), true);
          if (prng.int(2)) dv.setUint8(i * 32 + 23, 0x80);
        }
        machine.memory.write(q, b);
        machine.mmio.write32(its.base + GITS_CTLR, 0);
        machine.mmio.write64(its.base + GITS_CBASER, (1n << 63n) | BigInt(q) | BigInt(prng.int(16)));
        machine.mmio.write32(its.base + GITS_CTLR, 1);
        machine.mmio.write64(its.base + GITS_CWRITER, BigInt((prng.int(2) ? n : prng.int(4096)) * 32));
        return `${n} commands at 0x${q.toString(16)}`;
      },
    };
  },
};

const MMU500_NAMED: number[] = [];
for (let off = 0; off < 0x100; off += 4) MMU500_NAMED.push(off);
for (let i = 0; i < 8; i++) MMU500_NAMED.push(0x800 + 4 * i, 0xc00 + 4 * i, 0x1000 + 4 * i, 0x1800 + 4 * i);

/** Every model the campaign attacks. */
export const HOSTILE_TARGETS: readonly HostileTarget[] = [
  smmuV3Target,
  ...SMMU_V2_MODELS.map(smmuV2Target),
  cmdqvTarget,
  acpiMachineTarget('smmu-v3-acpi', `IORT:smmuv3@0x${virtIortOffsets().smmuv3.toString(16)}`, Object.values(REG)),
  acpiMachineTarget('mmu-500-acpi', `IORT:smmu@0x${virtIortOffsets().mmu500.toString(16)}`, MMU500_NAMED),
  itsTarget,
];

function value(prng: Prng, h: Hostile): number {
  switch (prng.int(6)) {
    case 0:
      return prng.int(16);
    case 1:
      return 0xffff_ffff;
    case 2:
      return (h.ram.base + prng.int(h.ram.size >>> 12) * 0x1000) >>> 0;
    case 3:
      return 1 << prng.int(32);
    default:
      return prng.nextU32();
  }
}

export interface HostileStats {
  actions: number;
  dma: number;
}

/** One random program of `actions` actions against a fresh instance of `target`. */
export function hostileCase(target: HostileTarget, seed: number, actions: number): HostileStats {
  const prng = new Prng(seed);
  const trail: string[] = [];
  const fail = (msg: string): never => {
    throw new CampaignFailure(`${target.name}: ${msg}`, { target: target.name, seed, actions, trail: trail.slice(-30) });
  };
  let h: Hostile;
  try {
    h = target.build(seed);
  } catch (e) {
    return fail(`construction threw ${String(e)}`);
  }
  const stats: HostileStats = { actions, dma: 0 };
  for (let i = 0; i < actions; i++) {
    const kind = prng.int(10);
    try {
      if (kind === 9 && h.structured) {
        trail.push(`structured: ${h.structured(prng)}`);
        // and a DMA from every stream that could match
        for (let sid = 0; sid < 8; sid++) h.dma(sid, prng.int(2) ? prng.nextU32() : h.ram.base + prng.int(h.ram.size), 1 + prng.int(64), prng.int(2) === 0);
        stats.dma += 8;
      } else if (kind < 5) {
        const off = prng.int(4) === 0 ? prng.int(h.mmioSize >>> 2) * 4 : h.named[prng.int(h.named.length)];
        const v = value(prng, h);
        trail.push(`w32 0x${off.toString(16)} = 0x${(v >>> 0).toString(16)}`);
        h.w32(off, v);
      } else if (kind < 6) {
        const off = prng.int(h.mmioSize >>> 2) * 4;
        trail.push(`r32 0x${off.toString(16)}`);
        h.r32(off);
      } else if (kind < 8) {
        const pa = h.ram.base + prng.int(h.ram.size >>> 3) * 8;
        const b = new Uint8Array(8 * (1 + prng.int(8)));
        for (let k = 0; k < b.length; k++) b[k] = prng.int(256);
        trail.push(`ram 0x${pa.toString(16)} <- ${b.length} bytes`);
        h.writeRam(pa, b);
      } else {
        const sid = prng.int(4) === 0 ? prng.nextU32() & 0xffff : prng.int(8);
        const addr = prng.int(2) ? h.ram.base + prng.int(h.ram.size) : prng.nextU32() * 0x1000;
        const len = 1 + prng.int(64);
        const write = prng.int(2) === 0;
        trail.push(`dma sid 0x${sid.toString(16)} ${write ? 'write' : 'read'} 0x${addr.toString(16)}+${len}`);
        h.dma(sid, addr, len, write);
        stats.dma++;
      }
      h.settle(200_000);
    } catch (e) {
      if (e instanceof TimeLimitError) fail(`livelock: hardware work did not settle within 200000 steps after "${trail[trail.length - 1]}"`);
      fail(`exception out of the model after "${trail[trail.length - 1]}": ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    }
  }
  return stats;
}
