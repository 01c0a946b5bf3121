import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Native work is CPU-heavy on a 2-core machine; forks isolate addon state per file.
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
