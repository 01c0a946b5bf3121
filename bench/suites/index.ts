import { fileURLToPath } from "node:url";
import type { LabMemoryCases } from "../../src/cli/bench/lab.js";
import type { LazyCommand } from "../../src/cli/types.js";
import { PEER_MEMORY_CASES } from "../peer/llama-cpp.js";

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

/** `nexusquant bench memory` cases of the lab: llama.cpp (node-llama-cpp) at each KV cache type (bench/peer). */
export const LAB_MEMORY_CASES: LabMemoryCases = {
  cases: Object.keys(PEER_MEMORY_CASES),
  script: fileURLToPath(new URL("../peer/memory-case.ts", import.meta.url)),
};
