import { NexusQuantError } from "../../errors.js";
import { BENCH_SUITES } from "../bench/index.js";
import { loadLabSuites } from "../bench/lab.js";
import type { CliCommand, CliIo, LazyCommand } from "../types.js";

const SHORT_USAGE = `Usage: nexusquant bench <suite> [options]
  Run \`nexusquant bench --help\` for the suites and their options.
`;

/** The package's suites, then the lab's when this is a clone of the repository. */
async function allSuites(): Promise<{ suites: LazyCommand[]; labReason?: string }> {
  const lab = await loadLabSuites();
  return lab.available ? { suites: [...BENCH_SUITES, ...lab.suites] } : { suites: [...BENCH_SUITES], labReason: lab.reason };
}

async function usage(): Promise<string> {
  const { suites, labReason } = await allSuites();
  const loaded = await Promise.all(suites.map((s) => s.load()));
  const width = Math.max(...loaded.map((s) => s.name.length));
  return [
    "Usage: nexusquant bench <suite> [options]",
    "",
    "Suites:",
    ...loaded.map((s) => `  ${s.name.padEnd(width)}  ${s.summary}`),
    ...(labReason ? ["", `Lab suites (codec, quality, integration) run from a clone of the repository: ${labReason}.`] : []),
    "",
    "Every suite takes --json. Options of each suite:",
    "",
    ...loaded.map((s) => s.usage),
  ].join("\n");
}

async function suiteUsage(args: string[]): Promise<string> {
  const name = args[0];
  const suite = name === undefined ? undefined : (await allSuites()).suites.find((s) => s.name === name);
  return suite ? (await suite.load()).usage : usage();
}

async function run(args: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined) {
    io.stderr(`nexusquant bench: name a suite\n\n${await usage()}`);
    return 2;
  }
  const { suites, labReason } = await allSuites();
  const suite = suites.find((s) => s.name === name);
  if (suite === undefined) {
    if (labReason !== undefined) {
      throw new NexusQuantError(
        "LAB_ONLY",
        `bench suite ${JSON.stringify(name)} is not one of this package's suites (${BENCH_SUITES.map((s) => s.name).join(", ")}). ` +
          `The lab suites live in the repository's bench/ folder, and ${labReason}: clone the repository, run npm ci, and run it there.`,
        { suite: name },
      );
    }
    io.stderr(`nexusquant bench: unknown suite ${JSON.stringify(name)}\n\n${await usage()}`);
    return 2;
  }
  return (await suite.load()).run(rest, io);
}

/** Dispatches to the suites registered in src/cli/bench/index.ts and bench/suites/index.ts. */
export const benchCommand: CliCommand = {
  name: "bench",
  summary: "benchmark suites (cache, attention, memory; lab suites from a repository clone); --json for machine-readable results",
  usage: SHORT_USAGE,
  loadUsage: suiteUsage,
  run,
};
