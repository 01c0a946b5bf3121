import type { CliIo } from "./types.js";

/**
 * A one-line progress bar on stderr for long runs; silent when stderr is not a terminal (CI, pipes,
 * --json consumers), so machine-readable output stays clean.
 */
export function progressBar(io: CliIo, label: string, enabled = process.stderr.isTTY === true): (done: number, total: number) => void {
  const started = Date.now();
  return (done, total) => {
    if (!enabled) return;
    const width = 30;
    const filled = Math.round((done / total) * width);
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    io.stderr(`\r${label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${done}/${total} ${secs}s${done === total ? "\n" : ""}`);
  };
}
