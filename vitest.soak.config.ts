import { defineConfig } from 'vitest/config';

// Long fuzz and soak runs: `make soak`. A short deterministic slice of each runs in `make test`.
export default defineConfig({
  test: {
    include: ['test/**/*.soak.test.ts'],
    testTimeout: 3_600_000,
    pool: 'forks',
  },
});
