import {defineConfig} from 'vitest/config'

export default defineConfig({
  test: {
    disableConsoleIntercept: true,
    include: ['test/**/*.test.ts'],
    // Three files at once on two cores: most files wait on child processes, servers and timers, not the CPU, and
    // the suite takes a third of the time it takes one file at a time; a test gets the room that sharing costs.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 3,
    // The JSON report lets .ci/run print one plain "N passed, N failed" line.
    reporters: ['default', 'json'],
    outputFile: {json: 'test-results/vitest.json'},
  },
})
