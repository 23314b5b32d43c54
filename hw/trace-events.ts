/**
 * The trace event catalogue: every `custom` event any layer emits is declared here, once, with
 * what it means, its arguments, and the name it shows under (in Perfetto, and for
 * `--trace-filter`), like QEMU's `trace-events` files. An emitter names an entry by its id; an id
 * that is not declared does not type-check.
 *
 * The built-in kinds (mmio, dma, irq, msi, probe, sched, work, log, counter) are named in
 * hw/trace.ts: an MMIO access by the register's name as the model calls it, a DMA transaction as
 * `DMA_READ`/`DMA_WRITE`, and so on.
 */

type Args = Record<string, unknown>;

export interface TraceEventDecl {
  /** Layer/device family, the Chrome trace category. */
  readonly category: string;
  /** One line: what happened. */
  readonly doc: string;
  /** The arguments it carries, by name. */
  readonly args: readonly string[];
  /** The name it shows under; by default the catalogue id. */
  readonly display?: (args: Args) => string;
}

const str = (v: unknown, fallback: string): string => (typeof v === 'string' && v.length > 0 ? v : fallback);

export const TRACE_EVENTS = {
  // SMMUv3 model
  'smmu-v3 command': {
    category: 'smmu-v3',
    doc: 'a command consumed from a command queue, named by its opcode (CMD_SYNC, CMD_CFGI_STE, …)',
    args: ['command', 'sid'],
    display: (a: Args) => str(a['command'], 'CMD_UNKNOWN'),
  },
  'smmu-v3 event': {
    category: 'smmu-v3',
    doc: 'an event record written to the event queue, named by its type (F_TRANSLATION, C_BAD_STE, …)',
    args: ['type', 'sid', 'ssid', 'addr', 'stall', 'stag'],
    display: (a: Args) => str(a['type'], 'EVT_UNKNOWN'),
  },
  'smmu-v3 page request': {
    category: 'smmu-v3',
    doc: 'a PRI page request written to the PRI queue',
    args: ['sid', 'ssid', 'addr', 'prgIndex', 'last'],
    display: () => 'PRI_PAGE_REQUEST',
  },
  // SMMU v1/v2 model
  'smmu-v2.context-fault': { category: 'smmu-v2', doc: 'a context bank fault recorded in CBn_FSR', args: ['cb', 'fsr', 'master', 'addr'], display: () => 'CONTEXT_FAULT' },
  'smmu-v2.global-fault': { category: 'smmu-v2', doc: 'a global fault recorded in sGFSR', args: ['sgfsr', 'streamId', 'master', 'addr', 'multi', 'why'], display: () => 'GLOBAL_FAULT' },
  'smmu-v2.wait': { category: 'smmu-v2', doc: 'a transaction stalled on a context bank, waiting for CBn_RESUME', args: ['cb', 'master', 'addr'], display: () => 'STALL' },
  'smmu-v2.resume': { category: 'smmu-v2', doc: 'CBn_RESUME retried or terminated the stalled transactions', args: ['cb', 'terminate', 'transactions'], display: (a: Args) => (a['terminate'] ? 'RESUME_TERMINATE' : 'RESUME_RETRY') },
  'smmu-v2.resume-ignored': { category: 'smmu-v2', doc: 'a CBn_RESUME write with no stalled fault, ignored', args: ['cb', 'fsr'], display: () => 'RESUME_IGNORED' },
  'smmu-v2.stall-of-non-stalling-master': {
    category: 'smmu-v2',
    doc: 'a context bank set to stall faulted a master that cannot stall: terminated instead',
    args: ['cb', 'master', 'addr'],
    display: () => 'STALL_OF_NON_STALLING_MASTER',
  },
  // DMA test engine
  'test-engine start': { category: 'test-engine', doc: 'a frame started', args: ['frame', 'op', 'iterations', 'dmaStatus', 'cfgErr', 'failAddr'] },
  'test-engine done': { category: 'test-engine', doc: 'a frame finished', args: ['frame', 'op', 'iterations', 'dmaStatus', 'cfgErr', 'failAddr'] },
  'test-engine error': { category: 'test-engine', doc: 'a frame stopped on an error', args: ['frame', 'op', 'iterations', 'dmaStatus', 'cfgErr', 'failAddr'] },
  'test-engine stopped': { category: 'test-engine', doc: 'a frame was stopped by software', args: ['frame', 'op', 'iterations', 'dmaStatus', 'cfgErr', 'failAddr'] },
  // Kernel
  shutdown: { category: 'driver-core', doc: "a device's driver .shutdown ran", args: ['driver'] },
  unbind: { category: 'driver-core', doc: 'a device was unbound from its driver', args: ['driver'] },
  'iommu:attach': { category: 'iommu', doc: 'a device was attached to a domain', args: ['type'] },
  'iopf.response': { category: 'iommu', doc: 'a page response for an I/O page fault group', args: ['pasid', 'grpid', 'code'] },
  // Lab bench
  'stray-write': { category: 'lab', doc: 'a DMA write landed in RAM its master does not own', args: ['master', 'pa', 'len', 'owner', 'kernel'] },
} satisfies Record<string, TraceEventDecl>;

/** Ids of the catalogue's events: the only names a `custom` trace event may carry. */
export type TraceEventId = keyof typeof TRACE_EVENTS;

export function traceEventDecl(id: string): TraceEventDecl | undefined {
  return (TRACE_EVENTS as Record<string, TraceEventDecl>)[id];
}
