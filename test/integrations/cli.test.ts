import { describe, expect, it } from "vitest";
import { runCli } from "../../src/cli/run.js";
import { demoPrefillBytes } from "../../src/cli/commands/demo.js";
import { DEMO_TINY } from "../../src/cli/demo-model.js";
import { TIME_SCALE } from "../helpers.js";

function recorder() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { stdout: (t: string) => out.push(t), stderr: (t: string) => err.push(t) }, out, err };
}

describe("nexusquant demo", () => {
  it("--json reports measured memory, speed and fidelity, labelled as random weights", async () => {
    const r = recorder();
    const code = await runCli(["demo", "--json", "--model", "built", "--context", "600", "--max-new-tokens", "8"], r.io);
    expect(r.err.join("")).toBe("");
    expect(code).toBe(0);
    const result = JSON.parse(r.out.join(""));
    expect(result.weights).toBe("random weights (no trained reference model yet)");
    expect(result.preset).toBe("balanced");
    expect(result.contextTokens).toBe(600);
    expect(result.positions).toBe(9);
    expect(result.tokensEvicted).toBeGreaterThan(0);
    expect(result.compressedKvBytes).toBeLessThan(result.baselineKvBytes);
    expect(result.ratio).toBeCloseTo(result.baselineKvBytes / result.compressedKvBytes, 10);
    expect(result.baselineKvBytes).toBe((600 + 8) * 4 * 2 * 64 * 2 * 2); // tokens × layers × kvHeads × headDim × (K, V) × FP16
    for (const key of ["tokensPerSecond", "klDivergence", "top1Agreement"]) expect(Number.isFinite(result[key])).toBe(true);
    expect(result.klDivergence).toBeGreaterThan(0);
    // The native path by default, with the allocator's measured peak of both runs.
    expect(result.path).toBe("native");
    expect(result.peakKvBytes.compressed).toBeGreaterThan(0);
    expect(result.peakKvBytes.compressed).toBeLessThan(result.peakKvBytes.baseline);
  });

  it("a context whose prefill cannot fit is OUT_OF_MEMORY at once, naming the bytes and the largest context", async () => {
    // onnxruntime failed on exactly this allocation for a 64k prompt of the built model.
    expect(demoPrefillBytes(DEMO_TINY.heads!, 65536, DEMO_TINY.vocab!) - 65536 * DEMO_TINY.vocab! * 4).toBe(68_719_476_736);
    const r = recorder();
    const started = performance.now();
    // Native path (chunked prefill): the FP16 baseline K/V of 100M tokens, 2,048 bytes each, is 215 GB.
    expect(await runCli(["demo", "--model", "built", "--context", "100m"], r.io)).toBe(1);
    expect(performance.now() - started).toBeLessThan(5000 * TIME_SCALE);
    expect(r.err.join("")).toMatch(/needs at least \d{12} bytes for the FP16 baseline.*largest context that fits is \d+ tokens/);
    expect(r.out.join("")).toBe("");
  });

  it("an unknown preset is a usage error", async () => {
    const r = recorder();
    expect(await runCli(["demo", "--preset", "tiny"], r.io)).toBe(2);
    expect(r.err.join("")).toContain("Unknown preset");
  });

  it("bench without a suite lists the suites", async () => {
    const r = recorder();
    expect(await runCli(["bench"], r.io)).toBe(2);
    expect(r.err.join("")).toContain("integration");
  });
});
