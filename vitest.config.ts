import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests start servers and child processes; run files one at a time on 2 cores.
    fileParallelism: false,
    // No time limit in a test (0 disables vitest's): a loaded or slow machine makes a test slow,
    // not wrong. A hang is caught by CI's own limit on the whole run.
    testTimeout: 0,
    hookTimeout: 0,
  },
});
