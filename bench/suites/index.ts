import type { LazyCommand } from "../../src/cli/types.js";

/**
 * Lab bench suites: `nexusquant bench <suite>` finds them when run from a clone of the repository
 * (src/cli/bench/lab.ts loads this file through tsx); the published package does not contain them.
 * To add one, write bench/suites/<suite>.ts exporting a CliCommand and append one line here.
 */
export const LAB_SUITES: readonly LazyCommand[] = [
  { name: "codec", load: () => import("./codec.js").then((m) => m.codecSuite) },
  { name: "integration", load: () => import("./integration.js").then((m) => m.integrationSuite) },
  { name: "quality", load: () => import("./quality.js").then((m) => m.qualitySuite) },
];
