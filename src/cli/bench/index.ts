import type { LazyCommand } from "../types.js";

/**
 * A `nexusquant bench <suite>` suite: a CliCommand whose name is the suite name.
 *
 * The suites here ship with the package: they measure the runtime on the user's own machine. Lab
 * suites (trained-model quality, the integration benchmark: they need the repository's dev
 * dependencies and data) are registered in bench/suites/index.ts instead. To add a suite, write
 * src/cli/bench/<suite>.ts (or bench/suites/<suite>.ts) exporting a BenchSuite and append one line
 * to the matching list. Each suite's module loads only when that suite runs.
 */
export type { CliCommand as BenchSuite } from "../types.js";

export const BENCH_SUITES: readonly LazyCommand[] = [
  { name: "cache", load: () => import("./cache.js").then((m) => m.cacheSuite) },
  { name: "attention", load: () => import("./attention.js").then((m) => m.attentionSuite) },
  { name: "memory", load: () => import("./memory.js").then((m) => m.memorySuite) },
  { name: "resume", load: () => import("./resume.js").then((m) => m.resumeSuite) },
];
