import { describe, expect, it } from 'vitest';
import { runKexecExperiment } from '../../scenarios/lib/kexec-experiment.js';
import { virtMachine } from '../../scenarios/lib/lab.js';

/** The virt machine's DMA test engine with no IOMMU. */
const DIRECT = '/dma@c040000';

describe('kexec with DMA left running', () => {
  it('a driver without .shutdown: its engines write into memory the new kernel handed out, at exact addresses', async () => {
    const machine = virtMachine({ seed: 11 });
    const r = await runKexecExperiment(machine, { target: 'unaware', quiesce: 'none' });
    expect(r.engines.length).toBe(5);
    expect(r.strayWrites.length).toBeGreaterThan(0);
    const targets = new Map(r.engines.map((e) => [e.master, e]));
    for (const w of r.strayWrites) {
      const e = targets.get(w.master)!;
      // Every stray write is one of the engine's periodic writes into its old buffer, whole.
      expect(w.pa).toBe(e.dma);
      expect(w.len).toBe(e.len);
      // Into the incoming kernel's memory, or between kernels while a hand-over takes time.
      expect([1, -1]).toContain(w.kernel);
      expect(w.owner).not.toMatch(/^dma:/);
    }
    // The bytes really are there: the sequence number word and the pattern.
    const w = r.strayWrites.at(-1)!;
    expect(machine.cpu.ram.read32(w.pa + 4)).toBe(0x5a5a_5a5a);
    // The new kernel put the engines' old buffers to use: at least one stray hits its workload.
    expect(r.strayWrites.some((s) => s.owner === 'kernel:workload')).toBe(true);
  });

  it('the stray address is exactly the old kernel\'s DMA buffer of that engine, now the new kernel\'s workload page', async () => {
    const machine = virtMachine({ seed: 11 });
    const periodNs = 10_000;
    const r = await runKexecExperiment(machine, { target: 'unaware', quiesce: 'none', periodNs, runAfterNs: 200_000 });
    // Only the engine without an IOMMU strays: the four behind the SMMUs were given IOVAs (below
    // 4 GiB, above this machine's RAM) that, once the SMMUs are off, hit no memory and fail.
    expect(new Set(r.strayWrites.map((w) => w.master))).toEqual(new Set([DIRECT]));
    expect(r.blockedTransactions).toBe(4);
    expect(r.faults).toBe(0);
    const pa = r.engines.find((e) => e.master === DIRECT)!.dma;
    expect(r.first.alloc.ownerOf(pa)?.owner).toEqual({ kind: 'dma', device: DIRECT, what: 'dma_alloc_coherent' });
    expect(r.first.alloc.ownerOf(pa)?.kernelInstance).toBe(0);
    const reuse = r.second!.alloc.allocationAt(pa)!;
    expect([reuse.pa, reuse.order, reuse.owner, reuse.kernelInstance]).toEqual([pa, 0, { kind: 'kernel', what: 'workload' }, 1]);
    // One record per periodic write after the kexec, exactly one period apart, each 256 bytes at `pa`.
    const incoming = r.strayWrites.filter((w) => w.kernel === 1);
    expect(incoming.length).toBeGreaterThanOrEqual(200_000 / periodNs - 1);
    r.strayWrites.forEach((w, i) => {
      expect([w.pa, w.len]).toEqual([pa, 256]);
      if (i > 0) expect(w.time - r.strayWrites[i - 1]!.time).toBe(periodNs);
    });
    expect(r.strayWrites.at(-1)!.owner).toBe('kernel:workload');
    // The stale write's bytes are in the new kernel's page: sequence number, then the pattern.
    const seq = machine.cpu.ram.read32(pa);
    expect(seq).toBeGreaterThan(incoming.length);
    expect(machine.cpu.ram.read32(pa + 252)).toBe(0x5a5a_5a5a);
    expect(machine.cpu.ram.read32(pa + 256)).toBe(0);
  });

  it('with .shutdown the engines are stopped and nothing strays', async () => {
    const machine = virtMachine({ seed: 11 });
    const r = await runKexecExperiment(machine, { target: 'unaware', quiesce: 'all' });
    expect(r.strayWrites).toEqual([]);
    expect(r.blockedTransactions).toBe(0);
    for (const m of machine.testEngines.values()) expect(m.runningFrames).toEqual([]);
  });

  it('replays exactly for the same seed', async () => {
    const a = await runKexecExperiment(virtMachine({ seed: 4 }), { target: 'unaware', quiesce: 'none' });
    const b = await runKexecExperiment(virtMachine({ seed: 4 }), { target: 'unaware', quiesce: 'none' });
    expect(b.strayWrites).toEqual(a.strayWrites);
  });
});
