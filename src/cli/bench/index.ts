import { integrationSuite } from "../commands/bench-integration.js";
import { cacheSuite } from "./cache.js";
import { qualitySuite } from "./quality.js";
import { codecSuite } from "./codec.js";
import { memorySuite } from "./memory.js";
import type { CliCommand } from "../types.js";

/**
 * A `nexusquant bench <suite>` suite: a CliCommand whose name is the suite name. To add one (codec,
 * cache, quality), write src/cli/bench/<suite>.ts exporting a BenchSuite and append it here.
 */
export type BenchSuite = CliCommand;

export const BENCH_SUITES: readonly BenchSuite[] = [codecSuite, cacheSuite, integrationSuite, qualitySuite, memorySuite];

export function findSuite(name: string): BenchSuite | undefined {
  return BENCH_SUITES.find((s) => s.name === name);
}
