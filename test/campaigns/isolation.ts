/**
 * Isolation campaign: random DMA interleaved with random map / unmap / domain switches, on every SMMU
 * kind and domain type, judged by an oracle that knows nothing of the kernel's page tables: a shadow of
 * what each domain maps when, and a shadow of the bytes of every page DMA could reach.
 *
 * - A DMA issued after the operation that mapped its page completed must succeed and land at the
 *   mapped frame; one issued after its unmap (or a switch away) completed must fail and change nothing.
 * - A DMA issued while an operation on its page is in flight may go either way, but only to the page's
 *   old or new frame.
 * - Every page that DMA could reach (the target frames, and the pages whose physical addresses the
 *   IOVAs equal, where an untranslated write would land) is compared with its shadow after each round:
 *   a byte anywhere else is a stray write.
 * Domain types: UNMANAGED (two of them, switched between), IDENTITY, BLOCKED (`isolationCase`), and
 * the DMA-API default domain, strict and lazy (`isolationDmaCase`).
 */
import type { Device } from '../../bus/device.js';
import { isKernelError } from '../../bus/errno.js';
import { iommuAttachDevice, iommuDetachDevice } from '../../core/iommu-attach.js';
import { iommuDomainFree, iommuPagingDomainAlloc, type IommuDomain } from '../../core/iommu-domain.js';
import { devIommuOps } from '../../core/iommu-device.js';
import { dmaMapSingle, dmaUnmapSingle } from '../../core/dma-mapping.js';
import { iommuMap, iommuUnmap } from '../../core/iommu-map.js';
import { IOMMU_READ, IOMMU_WRITE } from '../../core/io-pgtable.js';
import type { DmaCompletion } from '../../hw/dma.js';
import type { Machine } from '../../hw/machine.js';
import { Prng } from '../../hw/prng.js';
import type { Kernel } from '../../kernel/kernel.js';
import { boot, virtAcpiMachine, virtMachine } from '../../scenarios/lib/lab.js';
import { SMMU_V2_LAB, smmuV2Machine } from '../../scenarios/smmu-v2-lab.js';
import { CampaignFailure } from './campaign.js';

/**
 * SMMU kinds, each on the machine that carries it: the built-in virt machine (SMMUv3) or the
 * SMMUv1/v2 lab from their Device Trees, and the virt machine described by its ACPI tables
 * (`…-acpi`: the SMMUv3 and the MMU-500 of its IORT, the masters named components).
 */
export const SMMU_KINDS = ['smmu-v3', 'mmu-500', 'smmu-v2', 'smmu-v1', 'smmu-v3-acpi', 'mmu-500-acpi'] as const;
export type SmmuKind = (typeof SMMU_KINDS)[number];

/** The machine of `kind` and the path of the non-stalling master the campaign drives. */
function campaignMachine(kind: SmmuKind, seed: number, bootargs?: string): { machine: Machine; path: string; cmdline?: string } {
  if (kind === 'smmu-v3') return { machine: virtMachine({ seed, bootargs }), path: '/dma@c010000' };
  // virt-acpi.ts's engines: DMA1 behind the SMMUv3 (StreamID 0x101), DMA3 behind the MMU-500 (0x401), neither stalls.
  if (kind === 'smmu-v3-acpi') return { machine: virtAcpiMachine({ seed }), path: '\\_SB_.DMA1', cmdline: bootargs };
  if (kind === 'mmu-500-acpi') return { machine: virtAcpiMachine({ seed }), path: '\\_SB_.DMA3', cmdline: bootargs };
  const compatible = kind === 'mmu-500' ? ['arm,mmu-500', 'arm,smmu-v2'] : kind === 'smmu-v2' ? ['arm,smmu-v2'] : ['arm,smmu-v1'];
  return { machine: smmuV2Machine({ seed, compatible, bootargs }), path: SMMU_V2_LAB.masterNoStall };
}

const PAGE = 0x1000;

interface Rig {
  machine: Machine;
  kernel: Kernel;
  dev: Device;
  master: NonNullable<ReturnType<Machine['masters']['get']>>;
}

async function rig(kind: SmmuKind, seed: number): Promise<Rig> {
  const { machine, path, cmdline } = campaignMachine(kind, seed);
  const kernel = await boot(machine, cmdline === undefined ? {} : { cmdline });
  const dev = kernel.core.findDevice(path);
  const master = machine.masters.get(path);
  if (!dev || !master) throw new Error(`${kind}: no master ${path}`);
  return { machine, kernel, dev, master };
}

export interface IsolationStats {
  transactions: number;
  landed: number;
  blocked: number;
  raced: number;
  ops: number;
  /** SMMUv1/v2 transactions aborted while an earlier fault of the same batch was latched (HUPCF=0). */
  collateral: number;
}

/** A DMA the campaign issued and will judge. */
interface Pending {
  iova: number;
  off: number;
  write: boolean;
  data: Uint8Array;
  /** Frames it may reach (null: it may fail). */
  allowed: (number | null)[];
  c: DmaCompletion | null;
}

/**
 * Issue one 8-byte DMA to `iova` at a random offset no other transaction of the batch uses (a later
 * write must not hide an earlier one), reading or writing random bytes.
 */
function issueDma(prng: Prng, master: Rig['master'], busy: Set<number>, iova: number, allowedFor: (iova: number, write: boolean) => (number | null)[]): Pending {
  let off = prng.int(PAGE / 8) * 8;
  while (busy.has(iova + off)) off = (off + 8) % PAGE;
  busy.add(iova + off);
  const write = prng.int(3) !== 0;
  const data = new Uint8Array(8);
  for (let i = 0; i < 8; i++) data[i] = 1 + prng.int(255);
  const p: Pending = { iova, off, write, data, allowed: allowedFor(iova, write), c: null };
  if (write) master.submitWrite(iova + off, data, {}, (c) => (p.c = c));
  else master.submitRead(iova + off, 8, {}, (c) => (p.c = c));
  return p;
}

/** The first byte of the watched pages that differs from the oracle's shadow, or null. */
function strayByte(machine: Machine, shadowMem: ReadonlyMap<number, Uint8Array>): string | null {
  for (const [pa, sh] of shadowMem) {
    const b = machine.memory.read(pa, PAGE);
    for (let i = 0; i < PAGE; i++) {
      if (b[i] !== sh[i]) return `stray write: byte 0x${(pa + i).toString(16)} is ${b[i]}, the oracle says ${sh[i]}`;
    }
  }
  return null;
}

type DomKind = 'A' | 'B' | 'identity' | 'blocked';

/** One case: `rounds` rounds of operations with DMA around them. */
export async function isolationCase(kind: SmmuKind, seed: number, rounds: number, dmaPerRound: number): Promise<IsolationStats> {
  const prng = new Prng(seed);
  const r = await rig(kind, seed);
  const { machine, kernel, dev, master } = r;
  const runK = <T>(p: Promise<T>): Promise<T> => machine.scheduler.runUntilSettled(p, 'isolation op', 1e12);
  const owner = { kind: 'kernel' as const, what: 'isolation campaign' };
  // Target frames, and canary pages whose addresses are the IOVAs (an untranslated write lands there).
  const NPAGES = 8;
  const frames = Array.from({ length: NPAGES }, () => kernel.alloc.allocPages(0, owner, { zero: true }));
  const iovas = Array.from({ length: NPAGES }, () => kernel.alloc.allocPages(0, owner, { zero: true }));
  const watched = [...frames, ...iovas];
  const shadowMem = new Map<number, Uint8Array>(watched.map((p) => [p, new Uint8Array(PAGE)]));
  const doms: Record<'A' | 'B', IommuDomain> = { A: iommuPagingDomainAlloc(dev), B: iommuPagingDomainAlloc(dev) };
  const maps: Record<'A' | 'B', Map<number, { pa: number; prot: number }>> = { A: new Map(), B: new Map() };
  const ops = devIommuOps(dev);
  const special: Partial<Record<DomKind, IommuDomain>> = {};
  if (ops.identityDomain) special.identity = ops.identityDomain;
  if (ops.blockedDomain) special.blocked = ops.blockedDomain;
  let cur: DomKind = 'A';
  await runK(iommuAttachDevice(doms.A, dev));
  const stats: IsolationStats = { transactions: 0, landed: 0, blocked: 0, raced: 0, ops: 0, collateral: 0 };
  const log: string[] = [];
  const fail = (msg: string): never => {
    throw new CampaignFailure(`${kind}: ${msg}`, { kind, seed, rounds, dmaPerRound, log: log.slice(-40) });
  };

  /** Where a DMA to `iova` lands now, per the shadow: a frame, or null (must fail). */
  const expected = (iova: number, write: boolean): number | null => {
    if (cur === 'identity') return iova;
    if (cur === 'blocked') return null;
    const m = maps[cur].get(iova);
    if (!m) return null;
    // The LPAE formats cannot express write-only: any mapping can be read (io-pgtable-arm maps
    // IOMMU_WRITE alone as read/write).
    if (write && (m.prot & IOMMU_WRITE) === 0) return null;
    return m.pa;
  };

  const issue = (allowedFor: (iova: number, write: boolean) => (number | null)[]): Pending => {
    stats.transactions++;
    return issueDma(prng, master, busy, iovas[prng.int(NPAGES)], allowedFor);
  };
  /** Whether a transaction of the current batch was refused by a fault (a context fault latched in FSR). */
  let batchFaulted = false;
  /** (page, offset) pairs a transaction of the current batch uses. */
  const busy = new Set<number>();
  const judge = (p: Pending): void => {
    const c = p.c;
    if (!c) fail(`DMA to ${p.iova.toString(16)} never completed`);
    const ok = c!.status === 'ok';
    if (!ok) {
      // SMMUv1/v2 with HUPCF=0 in terminate mode: while a context fault is latched in FSR (until the
      // driver's interrupt clears it), the bank aborts every transaction. Collateral of a real fault.
      if (batchFaulted && /fault outstanding/.test(c!.detail ?? '')) {
        stats.collateral++;
        return;
      }
      if (p.allowed.includes(null)) batchFaulted = true;
      if (!p.allowed.includes(null)) fail(`DMA ${p.write ? 'write' : 'read'} to iova 0x${p.iova.toString(16)}+0x${p.off.toString(16)} failed (${c!.status}: ${c!.detail}) but the page is mapped (domain ${cur})`);
      stats.blocked++;
      return;
    }
    const targets = p.allowed.filter((a): a is number => a !== null);
    if (targets.length === 0) fail(`DMA ${p.write ? 'write' : 'read'} to iova 0x${p.iova.toString(16)} succeeded but nothing maps it (domain ${cur})`);
    if (p.write) {
      // It landed on exactly one allowed frame: the one whose bytes now hold the data.
      const hit = targets.find((pa) => {
        const b = machine.memory.read(pa + p.off, 8);
        return b.every((x, i) => x === p.data[i]);
      });
      if (hit === undefined) fail(`write to iova 0x${p.iova.toString(16)} succeeded but landed on none of ${targets.map((t) => t.toString(16)).join(', ')}`);
      const sh = shadowMem.get(hit!);
      if (!sh) fail(`write landed at 0x${hit!.toString(16)}, outside the watched pages`);
      sh!.set(p.data, p.off);
    } else {
      const got = c!.data!;
      const match = targets.some((pa) => shadowMem.get(pa)!.subarray(p.off, p.off + 8).every((x, i) => x === got[i]));
      if (!match) fail(`read of iova 0x${p.iova.toString(16)} returned bytes no allowed frame holds`);
    }
    stats.landed++;
  };
  const checkMemory = (): void => {
    const stray = strayByte(machine, shadowMem);
    if (stray) fail(stray);
  };


  for (let round = 0; round < rounds; round++) {
    // Pick an operation.
    const roll = prng.int(10);
    let op: () => Promise<unknown>;
    let racing: (iova: number, write: boolean) => (number | null)[];
    let commit: () => void;
    if (cur !== 'A' && cur !== 'B' || roll >= 8) {
      // Switch domain.
      const choices: DomKind[] = ['A', 'B', ...(Object.keys(special) as DomKind[])];
      const next = choices[prng.int(choices.length)];
      const from = cur;
      const fromDom = from === 'A' || from === 'B' ? doms[from] : special[from];
      const toDom = next === 'A' || next === 'B' ? doms[next] : special[next]!;
      log.push(`switch ${from} -> ${next}`);
      let refused = false;
      op = async () => {
        if (from === next) return;
        if (from === 'A' || from === 'B') await iommuDetachDevice(fromDom, dev);
        try {
          await iommuAttachDevice(toDom, dev);
        } catch (e) {
          // Refused (no context bank left on a small SMMU): back where it was, as a driver would.
          if (!isKernelError(e)) throw e;
          refused = true;
          log.push(`  refused: ${e.errno}`);
          if (from === 'A' || from === 'B') await iommuAttachDevice(fromDom, dev);
        }
      };
      racing = (iova, write) => {
        const before = expected(iova, write);
        const saved = cur;
        cur = next;
        const after = expected(iova, write);
        cur = saved;
        return [before, after, null];
      };
      commit = () => {
        if (!refused) cur = next;
      };
    } else {
      const d = cur;
      const iova = iovas[prng.int(NPAGES)];
      const m = maps[d].get(iova);
      if (m) {
        log.push(`unmap ${d} ${iova.toString(16)}`);
        op = () => iommuUnmap(doms[d], iova, PAGE);
        racing = (i, w) => (i === iova ? [expected(i, w), null] : [expected(i, w)]);
        commit = () => maps[d].delete(iova);
      } else {
        const pa = frames[prng.int(NPAGES)];
        const prot = [IOMMU_READ | IOMMU_WRITE, IOMMU_READ, IOMMU_WRITE][prng.int(3)];
        log.push(`map ${d} ${iova.toString(16)} -> ${pa.toString(16)} prot ${prot}`);
        op = () => iommuMap(doms[d], iova, pa, PAGE, prot);
        racing = (i, w) => {
          if (i !== iova) return [expected(i, w)];
          const ok = w ? (prot & IOMMU_WRITE) !== 0 : true;
          return [null, ok ? pa : null];
        };
        commit = () => maps[d].set(iova, { pa, prot });
      }
    }
    // Start the operation, race a few DMAs against it, finish it.
    stats.ops++;
    const task = op();
    busy.clear();
    const raced: Pending[] = [];
    for (let i = prng.int(4); i > 0; i--) raced.push(issue(racing));
    await runK(task);
    await machine.scheduler.runUntilIdle(1e9);
    commit();
    batchFaulted = false;
    for (const p of raced) {
      judge(p);
      stats.raced++;
    }
    // Then DMA with the state settled, judged strictly.
    busy.clear();
    const settled: Pending[] = [];
    for (let i = 0; i < dmaPerRound; i++) settled.push(issue((iova, write) => [expected(iova, write)]));
    await machine.scheduler.runUntilIdle(1e9);
    batchFaulted = false;
    for (const p of settled) judge(p);
    checkMemory();
  }
  if (cur === 'A' || cur === 'B') await runK(iommuDetachDevice(doms[cur], dev));
  else await runK(iommuDetachDevice(special[cur], dev).catch(() => undefined));
  await runK(iommuDomainFree(doms.A));
  await runK(iommuDomainFree(doms.B));
  return stats;
}

/**
 * The DMA-API domains: the device's default domain, strict (DMA) or lazy (DMA_FQ, `iommu.strict=0`),
 * driven through dma_map_single / dma_unmap_single. Lazy unmaps leave the IOVA stale (it may still
 * reach its old frame, and only it) until the flush queue's timeout has certainly passed; after that,
 * or at once in strict mode, a hit is a violation. A stale IOVA handed out again before its flush
 * would show up as a hit on the old frame after the new mapping: also a violation.
 */
export async function isolationDmaCase(kind: SmmuKind, seed: number, rounds: number, dmaPerRound: number, lazy: boolean): Promise<IsolationStats> {
  const prng = new Prng(seed);
  const bootargs = lazy ? 'iommu.strict=0' : 'iommu.strict=1';
  const { machine, path, cmdline } = campaignMachine(kind, seed, bootargs);
  const kernel = await boot(machine, cmdline === undefined ? {} : { cmdline });
  const dev = kernel.core.findDevice(path)!;
  const master = machine.masters.get(path)!;
  const runK = <T>(p: Promise<T>): Promise<T> => machine.scheduler.runUntilSettled(p, 'isolation dma op', 1e12);
  const owner = { kind: 'kernel' as const, what: 'isolation campaign' };
  const NPAGES = 8;
  const frames = Array.from({ length: NPAGES }, () => kernel.alloc.allocPages(0, owner, { zero: true }));
  const shadowMem = new Map<number, Uint8Array>(frames.map((p) => [p, new Uint8Array(PAGE)]));
  type Dir = 'bidirectional' | 'to-device' | 'from-device';
  const live = new Map<number, { pa: number; dir: Dir }>();
  /** Lazily unmapped IOVAs and the frame they may still reach. */
  const stale = new Map<number, number>();
  const gone = new Set<number>();
  const stats: IsolationStats = { transactions: 0, landed: 0, blocked: 0, raced: 0, ops: 0, collateral: 0 };
  const log: string[] = [];
  const fail = (msg: string): never => {
    throw new CampaignFailure(`${kind} ${lazy ? 'lazy' : 'strict'} DMA domain: ${msg}`, { kind, seed, rounds, dmaPerRound, lazy, log: log.slice(-40) });
  };
  const allowed = (iova: number, write: boolean): (number | null)[] => {
    const out: (number | null)[] = [];
    const m = live.get(iova);
    if (m && !(write && m.dir === 'to-device')) out.push(m.pa);
    else out.push(null);
    const s = stale.get(iova);
    if (s !== undefined && !m) out.push(s);
    return out;
  };
  let batchFaulted = false;
  const busy = new Set<number>();
  const issue = (f: (iova: number, write: boolean) => (number | null)[]): Pending | null => {
    const pool = [...live.keys(), ...stale.keys(), ...gone];
    if (pool.length === 0) return null;
    stats.transactions++;
    return issueDma(prng, master, busy, pool[prng.int(pool.length)], f);
  };
  const judge = (p: Pending): void => {
    const c = p.c;
    if (!c) fail(`DMA to 0x${p.iova.toString(16)} never completed`);
    if (c!.status !== 'ok') {
      if (batchFaulted && /fault outstanding/.test(c!.detail ?? '')) {
        stats.collateral++;
        return;
      }
      if (!p.allowed.includes(null)) fail(`DMA ${p.write ? 'write' : 'read'} to mapped iova 0x${p.iova.toString(16)} failed (${c!.status}: ${c!.detail})`);
      batchFaulted = true;
      stats.blocked++;
      return;
    }
    const targets = p.allowed.filter((a): a is number => a !== null);
    if (targets.length === 0) fail(`DMA ${p.write ? 'write' : 'read'} to iova 0x${p.iova.toString(16)} succeeded after its unmap completed`);
    if (p.write) {
      const hit = targets.find((pa) => machine.memory.read(pa + p.off, 8).every((x, i) => x === p.data[i]));
      if (hit === undefined) fail(`write to iova 0x${p.iova.toString(16)}+0x${p.off.toString(16)} (completion pa ${c!.pa?.toString(16)}) landed on none of its allowed frames ${targets.map((t) => t.toString(16)).join(", ")}`);
      shadowMem.get(hit!)!.set(p.data, p.off);
    } else {
      const got = c!.data!;
      if (!targets.some((pa) => shadowMem.get(pa)!.subarray(p.off, p.off + 8).every((x, i) => x === got[i]))) fail(`read of iova 0x${p.iova.toString(16)} returned bytes no allowed frame holds`);
    }
    stats.landed++;
  };
  const checkMemory = (): void => {
    const stray = strayByte(machine, shadowMem);
    if (stray) fail(stray);
  };

  const raced: Pending[] = [];
  for (let round = 0; round < rounds; round++) {
    let op: Promise<unknown>;
    let racing: (iova: number, write: boolean) => (number | null)[];
    let commit: (r: unknown) => void;
    const free = frames.filter((f) => ![...live.values()].some((m) => m.pa === f));
    if (live.size === 0 || (free.length > 0 && prng.int(2) === 0)) {
      const pa = free[prng.int(free.length)];
      const dir = (['bidirectional', 'to-device', 'from-device'] as const)[prng.int(3)];
      log.push(`map ${pa.toString(16)} ${dir}`);
      op = dmaMapSingle(dev, pa, PAGE, dir);
      racing = (i, w) => allowed(i, w);
      commit = (iova) => {
        const v = iova as number;
        // A DMA racing the map to the IOVA it returned may already see the new mapping.
        for (const p of raced) if (p.iova === v) p.allowed.push(p.write && dir === 'to-device' ? null : pa, null);
        if (stale.has(v) || live.has(v)) log.push(`  iova 0x${v.toString(16)} reused`);
        stale.delete(v);
        gone.delete(v);
        live.set(v, { pa, dir });
        log.push(`  -> iova 0x${v.toString(16)}`);
      };
    } else {
      const keys = [...live.keys()];
      const iova = keys[prng.int(keys.length)];
      const m = live.get(iova)!;
      log.push(`unmap 0x${iova.toString(16)}`);
      op = dmaUnmapSingle(dev, iova, PAGE, m.dir);
      racing = (i, w) => (i === iova ? [...allowed(i, w), null] : allowed(i, w));
      commit = () => {
        live.delete(iova);
        if (lazy) stale.set(iova, m.pa);
        else gone.add(iova);
      };
    }
    stats.ops++;
    raced.length = 0;
    busy.clear();
    for (let i = prng.int(4); i > 0; i--) {
      const p = issue(racing);
      if (p) raced.push(p);
    }
    const r = await runK(op);
    await machine.scheduler.runUntilIdle(1e9);
    commit(r);
    batchFaulted = false;
    for (const p of raced) {
      judge(p);
      stats.raced++;
    }
    if (lazy && prng.int(8) === 0) {
      // Past the flush queue's timeout: every stale IOVA has been flushed.
      await machine.scheduler.runFor(2 * 10_000_000 + 1);
      for (const [iova] of stale) gone.add(iova);
      stale.clear();
    }
    busy.clear();
    const settled: Pending[] = [];
    for (let i = 0; i < dmaPerRound; i++) {
      const p = issue((iova, write) => allowed(iova, write));
      if (p) settled.push(p);
    }
    await machine.scheduler.runUntilIdle(1e9);
    batchFaulted = false;
    for (const p of settled) judge(p);
    checkMemory();
  }
  for (const [iova, m] of live) await runK(dmaUnmapSingle(dev, iova, PAGE, m.dir));
  return stats;
}
