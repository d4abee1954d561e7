import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two-core CI machine: keep worker count bounded so hashing workers inside tests get a core.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
  },
});
