import { describe, expect, it } from 'vitest';
import { runKexecExperiment } from '../../scenarios/lib/kexec-experiment.js';
import { virtMachine } from '../../scenarios/lib/lab.js';

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
      expect(w.kernel).toBe(1);
      expect(w.owner).not.toMatch(/^dma:/);
    }
    // The bytes really are there: the sequence number word and the pattern.
    const w = r.strayWrites.at(-1)!;
    expect(machine.cpu.ram.read32(w.pa + 4)).toBe(0x5a5a_5a5a);
    // The new kernel put the engines' old buffers to use: at least one stray hits its workload.
    expect(r.strayWrites.some((s) => s.owner === 'kernel:workload')).toBe(true);
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
