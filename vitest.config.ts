import { defineConfig } from 'vitest/config';

// Three levels of tests (CONVENTIONS.md, "Tests"), one vitest project each:
//   npx vitest run --project unit         pure units: encoders, parsers, allocators, firmware readers
//   npx vitest run --project model        model conformance: hardware driven through MMIO and memory only
//   npx vitest run --project integration  a kernel booted on a machine: drivers, core, scenarios, CLI
// `npx vitest run` runs all three.
const UNIT = [
  'test/bus/**/*.test.ts',
  'test/mm/**/*.test.ts',
  'test/cross/**/*.test.ts',
  'test/core/io-pgtable*.test.ts',
  'test/core/iova.test.ts',
  'test/drivers/arm-smmu-v3/cmdq-build.test.ts',
  'test/drivers/arm-smmu-v3/entry-writer.test.ts',
  'test/lib/**/*.test.ts',
];
const MODEL = ['test/hw/**/*.test.ts'];
const EXCLUDE = ['test/**/*.soak.test.ts', 'node_modules/**', 'dist/**'];
const common = { testTimeout: 60_000, hookTimeout: 60_000, pool: 'forks' as const };

export default defineConfig({
  test: {
    reporters: ['default'],
    projects: [
      { test: { ...common, name: 'unit', include: UNIT, exclude: EXCLUDE } },
      { test: { ...common, name: 'model', include: MODEL, exclude: EXCLUDE } },
      { test: { ...common, name: 'integration', include: ['test/**/*.test.ts'], exclude: [...EXCLUDE, ...UNIT, ...MODEL] } },
    ],
  },
});
