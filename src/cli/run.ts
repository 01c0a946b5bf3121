import { NexusQuantError } from "../errors.js";
import { findCommand, loadAllCommands } from "./commands/index.js";
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, type CliCommand, type CliIo } from "./types.js";

export type { CliIo, CliCommand } from "./types.js";

/** Error codes that mean "the user asked for something that does not exist or is malformed". */
const USAGE_CODES = new Set(["INVALID_ARGUMENT", "UNKNOWN_MODEL", "UNKNOWN_GPU", "UNKNOWN_PRESET"]);

async function mainUsage(): Promise<string> {
  const commands = await loadAllCommands();
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    "Usage: nexusquant <command> [options]",
    "",
    "Commands:",
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "Run `nexusquant <command> --help` for a command's options. Every command takes --json.",
    "",
  ].join("\n");
}

function commandUsage(command: CliCommand, args: string[]): Promise<string> {
  return command.loadUsage ? command.loadUsage(args) : Promise.resolve(command.usage);
}

/**
 * By name and code, not instanceof: lab suites (bench/, loaded through tsx) import src/errors.ts,
 * a different module instance from dist/errors.js.
 */
function isNexusQuantError(e: unknown): e is NexusQuantError {
  return e instanceof NexusQuantError || (e instanceof Error && e.name === "NexusQuantError" && typeof (e as { code?: unknown }).code === "string");
}

/**
 * The whole CLI as a function, so tests run it in-process. Returns the exit code: 0 ok, 1 failure,
 * 2 usage error (unknown command, flag, model, GPU or preset; a malformed number).
 */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    const topic = name === "help" && rest[0] ? findCommand(rest[0]) : undefined;
    io.stdout(topic ? await commandUsage(await topic.load(), rest.slice(1)) : await mainUsage());
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const entry = findCommand(name);
  if (!entry) {
    io.stderr(`nexusquant: unknown command ${JSON.stringify(name)}\n\n${await mainUsage()}`);
    return EXIT_USAGE;
  }
  const command = await entry.load();
  // --help is answered here, so every command gets it without declaring it.
  if (rest.includes("--help") || rest.includes("-h")) {
    io.stdout(await commandUsage(command, rest.filter((a) => a !== "--help" && a !== "-h")));
    return EXIT_OK;
  }
  try {
    return await command.run(rest, io);
  } catch (e) {
    if (isNexusQuantError(e)) {
      const usage = USAGE_CODES.has(e.code);
      io.stderr(`nexusquant ${command.name}: ${e.message}\n${usage ? `Run \`nexusquant ${command.name} --help\` for usage.\n` : ""}`);
      return usage ? EXIT_USAGE : EXIT_FAILURE;
    }
    io.stderr(`nexusquant ${command.name}: ${e instanceof Error ? e.message : String(e)}\n`);
    return EXIT_FAILURE;
  }
}
