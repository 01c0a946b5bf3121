import { defineConfig } from "vitest/config";

// NEXUSQUANT_TEST_TIMEOUT_SCALE stretches every timeout on a machine that is busy or instrumented
// (.ci/run sets 3, .ci/sanitize 4x that): timeouts catch hangs, not a slow machine (test/helpers.ts).
const scale = Math.max(1, Number(process.env.NEXUSQUANT_TEST_TIMEOUT_SCALE ?? 1) || 1);

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Native work is CPU-heavy on a 2-core machine; forks isolate addon state per file.
    pool: "forks",
    testTimeout: 60_000 * scale,
    hookTimeout: 120_000 * scale,
  },
});
