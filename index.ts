/**
 * iommu-sim as a library: the API a scenario test in another repository uses.
 *
 * Build a machine (the built-in `virt`, or from a DTB), boot a kernel on it, and drive it with the
 * lab helpers the catalogue's own scenarios use: give a master a domain of its own, map buffers,
 * run DMA from a test engine, let virtual time pass, read the SMMU's events and faults. A scenario
 * is a {@link Scenario} returning a {@link ScenarioResult} built with {@link Checks}; the same module
 * runs under vitest and from `iommu-sim run --module FILE`. {@link recordTraces} records every
 * machine built while it runs, and {@link toChromeTrace} turns the recording into a file Perfetto
 * opens.
 *
 * Everything else in the package is internal: import only from `iommu-sim`.
 *
 * @packageDocumentation
 */

// Machines and kernels.
export { boot, machineFromDtb, run, virtMachine, BOOT_LIMIT_NS, type MachineBuildOptions } from './scenarios/lib/lab.js';
export { machineFromFile } from './scenarios/lib/firmware-file.js';
export type { VirtOptions } from './scenarios/machines/virt.js';
export type { Machine } from './hw/machine.js';
export type { Kernel, BootOptions } from './kernel/kernel.js';
export { bootReport, type BootReport } from './scenarios/lib/boot-report.js';

// The SMMUv3 lab: what the catalogue's scenarios use.
export {
  V3,
  bootSmmuV3,
  ownDomain,
  allocPages,
  mapRange,
  unmapRange,
  engineJob,
  readPhys,
  fillPhys,
  settle,
  runIn,
  type SmmuV3Lab,
  type SmmuV3LabOptions,
} from './scenarios/smmu-v3-lab.js';
export { smmuEvents, smmuFaults } from './scenarios/lib/events.js';
export type { ArmSmmuEventReport } from './drivers/arm-smmu-v3/arm-smmu-v3-events.js';
export type { TestEngineCommand, FrameStatus, FrameState, FrameDmaStatus } from './drivers/misc/dma-test-engine.js';
export type { IommuDomain } from './core/iommu-domain.js';
export { IOMMU_READ, IOMMU_WRITE } from './core/io-pgtable.js';

// Scenarios.
export { Checks, type Scenario, type ScenarioContext, type ScenarioResult, type Verdict } from './scenarios/scenario.js';

// Traces.
export { recordTraces } from './scenarios/lib/lab.js';
export type { TraceEvent, TraceKind } from './hw/trace.js';
export { toChromeTrace, toChromeTraceProcesses, type ChromeTrace, type TraceProcess } from './cli/chrome-trace.js';

// Speed: the V8 settings the CLI and the bench run with (call tuneV8() at start-up to get them).
export { tuneV8, V8_FLAGS } from './cli/v8-tuning.js';
