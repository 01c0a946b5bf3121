import type { CliCommand, LazyCommand } from "../types.js";

/**
 * Every `nexusquant` subcommand, in help order. Each loads its module only when run, so that
 * `nexusquant estimate` does not pay for the addon, the ONNX builder or vega. To add one, write
 * src/cli/commands/<name>.ts exporting a CliCommand and append one line here.
 */
export const COMMANDS: readonly LazyCommand[] = [
  { name: "estimate", load: () => import("./estimate.js").then((m) => m.estimateCommand) },
  { name: "presets", load: () => import("./presets.js").then((m) => m.presetsCommand) },
  { name: "models", load: () => import("./models.js").then((m) => m.modelsCommand) },
  { name: "gpus", load: () => import("./gpus.js").then((m) => m.gpusCommand) },
  { name: "verify", load: () => import("./verify.js").then((m) => m.verifyCommand) },
  { name: "calibrate", load: () => import("./calibrate.js").then((m) => m.calibrateCommand) },
  { name: "demo", load: () => import("./demo.js").then((m) => m.demoCommand) },
  { name: "bench", load: () => import("./bench.js").then((m) => m.benchCommand) },
];

export function findCommand(name: string): LazyCommand | undefined {
  return COMMANDS.find((c) => c.name === name);
}

/** Loads every command (for the help list only). */
export function loadAllCommands(): Promise<CliCommand[]> {
  return Promise.all(COMMANDS.map((c) => c.load()));
}
