/**
 * The native path (withNexusQuant(loadedCheckpoint)): segments without attention + attention on the
 * compressed cache, compared with the whole-model ORT graph fed its own dense past.
 */
import { describe, expect, it } from "vitest";
import { withNexusQuant, type NativeModelSession } from "../../src/integrations/index.js";
import { klDivergence } from "../../src/integrations/fidelity.js";
import { resolveOptions } from "../../src/integrations/options.js";
import { NativeModelSession as Native } from "../../src/integrations/native-model.js";
import { createTinyLlama, type LlamaModel } from "../../src/model/index.js";
import { native } from "../../src/runtime/native.js";
import { memoryStats } from "../../src/runtime/index.js";
import { ort, plainGreedy, promptTokens } from "./helpers.js";
import { buildLlamaOnnx } from "../../src/model/index.js";

function model(): LlamaModel {
  return createTinyLlama({ seed: 11, layers: 2, hidden: 64, heads: 4, kvHeads: 2, headDim: 32, intermediate: 128, vocab: 256 });
}

function relDiff(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(a[i]!));
  }
  return num / den;
}

async function nativeSession(m: LlamaModel, preset: string, extra: Record<string, unknown> = {}, logits: "last" | "all" = "last"): Promise<NativeModelSession> {
  return Native.create(m, resolveOptions({ preset, ...extra }), ort as never, { logits });
}

describe("native path", () => {
  it('matches the whole-model ORT graph with preset "none" (prompt + 50 decode steps)', async () => {
    const m = model();
    const { layers, kvHeads, headDim } = { layers: m.config.numLayers, kvHeads: m.config.numKvHeads, headDim: m.config.headDim };
    const prompt = promptTokens(40);
    // The plain graph rounds new K/V through FP16 (I/O and compute FP32): what an FP16 cache holds.
    const session = await ort.InferenceSession.create(buildLlamaOnnx({ ...m, roundKvToF16: true }));
    const plain = await plainGreedy(session, layers, kvHeads, headDim, prompt, 50);
    const s = await nativeSession(m, "none", { prefillChunk: 16 });
    let worst = 0;
    let r = await s.step(prompt);
    worst = Math.max(worst, relDiff(plain.logits[0]!, r.last()));
    for (let i = 0; i < 50; i++) {
      r = await s.step([plain.tokens[i]!]);
      worst = Math.max(worst, relDiff(plain.logits[i + 1]!, r.last()));
    }
    console.log("none vs plain worst rel", worst);
    expect(worst).toBeLessThan(1e-4);
    expect(s.stats().tokens).toBe(90);
    s.dispose();
  });
});
