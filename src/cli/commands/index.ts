import type { CliCommand } from "../types.js";
import { estimateCommand } from "./estimate.js";
import { gpusCommand } from "./gpus.js";
import { modelsCommand } from "./models.js";
import { presetsCommand } from "./presets.js";

/**
 * Every `nexusquant` subcommand, in help order. To add one (verify, bench, demo), write
 * src/cli/commands/<name>.ts exporting a CliCommand and append it here.
 */
export const COMMANDS: readonly CliCommand[] = [estimateCommand, presetsCommand, modelsCommand, gpusCommand];

export function findCommand(name: string): CliCommand | undefined {
  return COMMANDS.find((c) => c.name === name);
}
