/**
 * The llama.cpp cases of `nexusquant bench memory` (lab): one case in-process on a tiny model, and the
 * CLI finding them from a clone (run here from the TypeScript sources, where the lab is present).
 */
import { describe, expect, it } from "vitest";
import { runMemoryCase } from "../../src/cli/bench/memory-case.js";
import { runPeerMemoryCase } from "../../bench/peer/memory-case.js";
import { llamaCppAvailability, peerKvBytes } from "../../bench/peer/llama-cpp.js";
import { cli } from "../cli/helpers.js";

const found = await llamaCppAvailability();
const tiny = { seed: 1, layers: 2, hidden: 64, heads: 4, kvHeads: 2, headDim: 32, intermediate: 64, vocab: 256 };
const spec = { prompt: 300, decode: 3, chunk: 64, model: tiny, wrapperPreset: "balanced", threads: 2 };

describe("bench memory: llama.cpp cases", () => {
  it.runIf(found.available)("a case reports its context's KV bytes, its peaks and its speed (q8_0 keys, q4_0 values)", async () => {
    const r = await runPeerMemoryCase({ ...spec, case: "llama.cpp-q8_0-q4_0" });
    // llama.cpp rounds the context (303 cells) up to a multiple of 256 and allocates all of it.
    expect(r.heldKvBytes).toBe(peerKvBytes({ layers: 2, kvHeads: 2, headDim: 32 }, "q8_0/q4_0", 512));
    expect(r.fp16KvBytes).toBe(303 * 2 * 2 * 2 * 32 * 2);
    expect(r.allocatorPeakBytes).toBeNull();
    expect(r.tokens).toHaveLength(3);
    expect(r.peakRssBytes).toBeGreaterThan(0);
    if (process.platform === "linux") expect(r.runPeakRssBytes).toBeGreaterThan(0);
    expect(r.prefillSeconds).toBeGreaterThan(0);
    expect(r.decodeTokensPerSecond).toBeGreaterThan(0);
    // Same weights (rounded to F16 in the GGUF) and prompt as the product's cases: greedy tokens agree with plain ORT's here.
    const plain = await runMemoryCase({ ...spec, case: "ort-plain" });
    const f16 = await runPeerMemoryCase({ ...spec, case: "llama.cpp-f16" });
    expect(f16.tokens).toEqual(plain.tokens);
    await expect(runPeerMemoryCase({ ...spec, case: "llama.cpp-q2_k" })).rejects.toThrow(/unknown llama.cpp memory case/);
  });

  it("the CLI knows the lab's cases from a clone, and checks --shape and --threads", async () => {
    const bad = await cli("bench", "memory", "--cases", "llama.cpp-nope");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/llama\.cpp-q4_0/);
    expect((await cli("bench", "memory", "--shape", "3b")).stderr).toMatch(/Expected 1b or 8b for --shape/);
    expect((await cli("bench", "memory", "--threads", "0")).code).toBe(2);
    expect((await cli("bench", "memory", "--help")).stdout).toMatch(/--peers adds all four/);
  });
});
