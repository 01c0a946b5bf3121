import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// The codebook's exhaustive checks live in the standalone C++ driver (bench/native/codec_check.cc, lab
// code built with g++ by bench/native/build.sh, not part of the addon):
// every 2-bit code decodes and encode(decode(c)) == c for all 65,536 codes, the encoder's choice is
// the true nearest codeword against brute-force search on random inputs (each stage for 3/4 bits),
// API edge cases, FP16 conversion against all 2^32 floats. This test builds it with g++ and runs it.
const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

describe("codec_check (C++ codebook and encoder checks)", () => {
  it("builds and passes `codec_check check`", () => {
    execFileSync("sh", [join(root, "bench/native/build.sh")], { stdio: "pipe" });
    let output = "";
    try {
      output = execFileSync(join(root, "bench/native/build/codec_check"), ["check"], { encoding: "utf8", stdio: "pipe", maxBuffer: 16 << 20 });
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string; status?: number };
      throw new Error(`codec_check check failed (exit ${err.status}):\n${err.stdout ?? ""}\n${err.stderr ?? ""}`);
    }
    expect(output).toMatch(/\w/);
    expect(output.toLowerCase()).not.toMatch(/\bfail(ed)?\b/);
  }, 300_000);
});
