/** What `iommu-sim --help` says after the command list, and `--version`. */
import { readFileSync } from 'node:fs';
import { scenarios } from '../scenarios/index.js';
import { wrapText } from './table.js';

/** The package's version (package.json beside dist/, or beside the sources). */
export function packageVersion(): string {
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'iommu-sim' && pkg.version) return pkg.version;
    } catch {
      // not at this level: try the next
    }
  }
  return 'unknown';
}

/** The `debug` namespaces the stack logs under (`DEBUG=iommu:hw:* …`). */
export const DEBUG_NAMESPACES = [
  'iommu:hw:machine', 'iommu:hw:scheduler', 'iommu:hw:mmio', 'iommu:hw:gic', 'iommu:hw:dma', 'iommu:hw:test-engine',
  'iommu:hw:smmu-v2', 'iommu:hw:smmu-v3', 'iommu:hw:smmu-v3:cmdq', 'iommu:hw:smmu-v3:evtq', 'iommu:hw:smmu-v3:priq',
  'iommu:hw:smmu-v3:irq', 'iommu:kernel', 'iommu:bus:core', 'iommu:bus:platform', 'iommu:bus:pci', 'iommu:bus:irq',
  'iommu:bus:msi', 'iommu:core', 'iommu:attach', 'iommu:core:fault', 'iommu:core:io-pgfault', 'iommu:core:sva',
  'iommu:drivers:arm-smmu', 'iommu:drivers:arm-smmu-v3', 'iommu:drivers:dma-test-engine',
];

export function helpEpilogue(): string {
  const width = Math.min(process.stdout.columns ?? 100, 100);
  const para = (text: string, indent = '  '): string => wrapText(text, width - indent.length).map((l) => indent + l).join('\n');
  return [
    '',
    'Examples:',
    '  iommu-sim run                                  the catalogue on the virt machine',
    '  iommu-sim run smmu-v3-fault --seed 7           one scenario, one seed (replays exactly)',
    '  iommu-sim run --seeds 1..200 --jobs 2          a seed sweep across worker threads',
    '  iommu-sim run --module my-scenario.ts          scenarios from your own module',
    '  iommu-sim run --format ktap                    KTAP v1 for kernel CI tooling',
    '  iommu-sim boot --dtb board.dtb --json          boot a board and report its IOMMUs',
    '  iommu-sim dump-dtb | dtc -I dtb -O dts         the virt machine as DT source',
    '',
    'Exit status:',
    '  0   success',
    '  1   a scenario failed (the run still reports every scenario)',
    '  2   malformed firmware (one stderr line: "iommu-sim: firmware error: FILE: ...")',
    '  64  usage error: an unknown option or scenario, a bad kernel parameter, an unreadable file',
    '  70  a bug in iommu-sim (the stack is printed)',
    '',
    'Debug logs (DEBUG=NAMESPACE,... e.g. DEBUG=iommu:hw:smmu-v3:*,iommu:drivers:*):',
    para(DEBUG_NAMESPACES.join(' ')),
    '',
    'Scenarios (iommu-sim list says what each shows):',
    para(scenarios.map((s) => s.name).join(' ')),
  ].join('\n');
}
