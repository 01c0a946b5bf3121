/** Where a command writes; tests pass a recorder, main.ts passes process.stdout/stderr. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

/**
 * One `nexusquant <name>` subcommand. Commands live in src/cli/commands/<name>.ts and are listed in
 * src/cli/commands/index.ts. `run` returns the exit code (0 ok, 1 failure, 2 usage error) or throws:
 * runCli turns a thrown NexusQuantError into a message and the matching exit code.
 */
export interface CliCommand {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** Full help text, printed by `nexusquant <name> --help`. */
  usage: string;
  /** Help that needs loading (the bench suites' options); `--help` prints it instead of `usage`. */
  loadUsage?(args: string[]): Promise<string>;
  run(args: string[], io: CliIo): Promise<number>;
}

/**
 * A command or bench suite in a registry: its name, and its module loaded on demand (the module's
 * imports are what makes a CLI start slowly, and lab suites exist only in the repository).
 */
export interface LazyCommand {
  name: string;
  load(): Promise<CliCommand>;
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
