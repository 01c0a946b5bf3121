import { BENCH_SUITES, findSuite } from "../bench/index.js";
import type { CliCommand } from "../types.js";

function usage(): string {
  const width = Math.max(...BENCH_SUITES.map((s) => s.name.length));
  return [
    "Usage: nexusquant bench <suite> [options]",
    "",
    "Suites:",
    ...BENCH_SUITES.map((s) => `  ${s.name.padEnd(width)}  ${s.summary}`),
    "",
    "Every suite takes --json. Options of each suite:",
    "",
    ...BENCH_SUITES.map((s) => s.usage),
  ].join("\n");
}

/** Dispatches to the suites registered in src/cli/bench/index.ts. */
export const benchCommand: CliCommand = {
  name: "bench",
  summary: "benchmark suites (integration, …); --json for machine-readable results",
  get usage() {
    return usage();
  },
  async run(args, io) {
    const [name, ...rest] = args;
    const suite = name === undefined ? undefined : findSuite(name);
    if (suite === undefined) {
      io.stderr(`nexusquant bench: ${name === undefined ? "name a suite" : `unknown suite ${JSON.stringify(name)}`}\n\n${usage()}`);
      return 2;
    }
    return suite.run(rest, io);
  },
};
