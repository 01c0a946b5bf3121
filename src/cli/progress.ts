import type { CliIo } from "./types.js";

/**
 * Progress of a long run on stderr (stdout stays clean for --json consumers): a one-line bar on a
 * terminal; plain lines elsewhere (CI logs, pipes, a supervisor), so that a long run is never silent.
 * Plain lines come at the first step, then at most one every `everyMs`, and at the end.
 */
export function progressBar(io: CliIo, label: string, tty = process.stderr.isTTY === true, everyMs = 2000): (done: number, total: number) => void {
  const started = Date.now();
  let lastLine = -Infinity;
  return (done, total) => {
    const now = Date.now();
    const secs = ((now - started) / 1000).toFixed(1);
    if (tty) {
      const width = 30;
      const filled = Math.round((done / total) * width);
      io.stderr(`\r${label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${done}/${total} ${secs}s${done === total ? "\n" : ""}`);
      return;
    }
    if (done === 1 || done === total || now - lastLine >= everyMs) {
      lastLine = now;
      io.stderr(`${label} ${done}/${total} ${secs}s\n`);
    }
  };
}
