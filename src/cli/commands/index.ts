import type { CliCommand } from "../types.js";
import { benchCommand } from "./bench.js";
import { demoCommand } from "./demo.js";
import { estimateCommand } from "./estimate.js";
import { gpusCommand } from "./gpus.js";
import { modelsCommand } from "./models.js";
import { presetsCommand } from "./presets.js";
import { verifyCommand } from "./verify.js";

/**
 * Every `nexusquant` subcommand, in help order. To add one (verify, bench, demo), write
 * src/cli/commands/<name>.ts exporting a CliCommand and append it here.
 */
export const COMMANDS: readonly CliCommand[] = [estimateCommand, presetsCommand, modelsCommand, gpusCommand, verifyCommand, demoCommand, benchCommand];

export function findCommand(name: string): CliCommand | undefined {
  return COMMANDS.find((c) => c.name === name);
}
