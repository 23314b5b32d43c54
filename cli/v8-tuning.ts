/**
 * The V8 settings the simulator's own programs run with: the `iommu-sim` CLI (and with it `make run`
 * and the sweep's worker threads: V8 flags are per process) and the bench (`--no-v8-tuning` measures
 * without them).
 *
 * The inlining budget. TurboFan inlines callees into a function it optimizes until their bytecode adds
 * up to `--max-inlined-bytecode-size-cumulative` (920 bytes in Node 20's V8, sized for web pages). An
 * operation of the simulator is a deep chain of small functions across its layers: a strict unmap goes
 * iommu core → driver → command queue → MMIO window → SMMU model → MSI → the waiter's wake-up, a
 * translation core → model → walker → memory. With the default budget those chains are cut into a call
 * every few functions, and each call boundary boxes the addresses above 2^31 that cross it; with 2000
 * most of a chain compiles as one piece. Measured on the bench's machine (alternating runs, one process
 * each): v3.map_unmap_strict +8–12 %, 8 threads +17–23 %, v2.map_unmap_strict +8–11 %, io-pgtable
 * map+unmap +11–21 %, the IOPF round trips +3–6 %; no metric slower. 1500 gives most of it, 3000 little
 * more. It changes what is compiled, never what runs: results and traces are the same either way.
 *
 * Flags are process-wide and an embedder's process is its own: a program that embeds the simulator
 * calls `tuneV8()` first thing (or passes the flags to node) if it wants the same speed.
 */
import { setFlagsFromString } from 'node:v8';

/** The flags `tuneV8` sets. */
export const V8_FLAGS: readonly string[] = ['--max-inlined-bytecode-size-cumulative=2000'];

/**
 * Set V8_FLAGS in this process. Call it before the simulator's hot paths are optimized (at start-up):
 * code already optimized keeps the budget it was compiled with until V8 optimizes it again.
 */
export function tuneV8(): void {
  for (const flag of V8_FLAGS) setFlagsFromString(flag);
}
