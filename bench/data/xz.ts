import { spawnSync } from "node:child_process";
import { NexusQuantError } from "../../src/errors.js";

/**
 * Node's zlib has no xz, so the system `xz` binary does the work. xz is chosen because the GPU machine
 * (no Node) reads the same files with Python's built-in lzma module.
 */
export function hasXz(): boolean {
  const r = spawnSync("xz", ["--version"], { encoding: "utf8" });
  return r.status === 0;
}

/** `xz -9 -T1`: single-threaded so the same input gives the same bytes on every run. */
export function xzCompress(data: Uint8Array | string, level = 9): Buffer {
  return runXz(["-z", "-c", `-${level}`, "-T1", "--check=crc64"], data);
}

export function xzDecompress(data: Uint8Array): Buffer {
  return runXz(["-d", "-c"], data);
}

function runXz(args: string[], input: Uint8Array | string): Buffer {
  const r = spawnSync("xz", args, { input, maxBuffer: 1 << 30 });
  if (r.error !== undefined) {
    throw new NexusQuantError(
      "UNSUPPORTED",
      `The xz binary could not be run (${r.error.message}); install xz-utils (apt-get install xz-utils).`,
    );
  }
  if (r.status !== 0) {
    throw new NexusQuantError("CORRUPT_DATA", `xz ${args.join(" ")} failed: ${r.stderr.toString().trim()}`);
  }
  return r.stdout;
}
