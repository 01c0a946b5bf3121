/**
 * The harness's decode loop against independent computations: perplexity against LlamaReference's
 * one-pass forward, compressed decoding against withNexusQuant's ORT path, and the exposed queries
 * against layer 0 computed by hand.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { f16ArrayToF32, f32ArrayToF16, LlamaReference, buildLlamaOnnx, toFloat32 } from "../../src/model/index.js";
import { withNexusQuant } from "../../src/integrations/index.js";
import {
  QualityEngine,
  OBSERVED_WINDOW,
  documentIds,
  exposeQueries,
  measurePerplexity,
  negativeLogLikelihood,
  planVariants,
} from "../../bench/quality/index.js";
import { heldOutCorpus, tinyQualityModel } from "./fixtures.js";

const quality = tinyQualityModel();
const { config, weights } = quality.model;
let engine: QualityEngine;

beforeAll(async () => {
  engine = await QualityEngine.create(quality.model);
});
afterAll(async () => {
  await engine.dispose();
});

describe("perplexity", () => {
  it("matches a one-pass LlamaReference forward over the same tokens (preset none)", async () => {
    const corpus = heldOutCorpus(1);
    const P = 24;
    const S = 16;
    const result = await measurePerplexity(engine, quality.tokenizer, corpus, planVariants({ presets: [], quantOnly: [], scorers: [] }), {
      prefixes: [P],
      scoreTokens: S,
      texts: 1,
      compressEvery: 64,
    });
    const row = result.rows.find((r) => r.variant === "none" && r.prefix === P)!;
    expect(row.tokens).toBe(S);

    // Independent: float64 reference, one chunk, K/V rounded to FP16 like the f16 graph; the tokens
    // P+1 .. P+S are predicted by positions P .. P+S-1.
    const ids = documentIds(quality.tokenizer, corpus[0]!.text).slice(0, P + S + 1);
    const reference = new LlamaReference(config, weights, { kvPrecision: "f16" });
    const n = ids.length;
    const out = reference.forward({
      inputIds: BigInt64Array.from(ids, BigInt),
      attentionMask: new BigInt64Array(n).fill(1n),
      positionIds: BigInt64Array.from({ length: n }, (_, i) => BigInt(i)),
      batch: 1,
      seq: n,
      pastLength: 0,
    });
    const V = config.vocabSize;
    let nll = 0;
    for (let t = P; t < P + S; t++) nll += negativeLogLikelihood(out.logits.subarray(t * V, (t + 1) * V), ids[t + 1]!);
    const referencePpl = Math.exp(nll / S);
    // The graph returns FP16 logits (rounding ~5e-4 relative per logit); everything else is exact.
    expect(Math.abs(row.ppl / referencePpl - 1)).toBeLessThan(2e-3);
    expect(row.deltaPplPercent).toBe(0);
    expect(row.top1Agreement).toBe(1);
    expect(row.klMean).toBe(0);
  });
});

describe("decode loop", () => {
  it("a compressed run gives withNexusQuant's logits step for step (prompt compression and every 64 tokens)", async () => {
    const ort = await import("onnxruntime-node");
    const ids = documentIds(quality.tokenizer, heldOutCorpus(1)[0]!.text).slice(0, 300);
    const P = 200;
    const steps = 80; // crosses one scheduled compression after the prompt's
    const prefill = await engine.prefill(ids.slice(0, P));
    const run = await engine.startRun(prefill, { preset: "balanced", compressEvery: 64 });
    const session = await ort.InferenceSession.create(buildLlamaOnnx({ ...quality.model, dtype: "f16" }));
    const wrapped = await withNexusQuant(session, { preset: "balanced", compressEvery: 64, ort });
    try {
      const first = await wrapped.step(ids.slice(0, P));
      expect(Array.from(first.last())).toEqual(Array.from(prefill.lastLogits));
      let maxDiff = 0;
      for (let i = 0; i < steps; i++) {
        const ours = await run.step(ids[P + i]!);
        const theirs = (await wrapped.step([ids[P + i]!])).last();
        for (let j = 0; j < ours.length; j++) maxDiff = Math.max(maxDiff, Math.abs(ours[j]! - theirs[j]!));
      }
      expect(maxDiff).toBe(0); // one step adapter and one KV state: the same numbers, not just close ones
      const s = run.stats();
      const w = wrapped.stats();
      expect(s.heldTokens).toBe(w.heldTokens);
      expect(s.ratio).toBeCloseTo(w.ratio, 10);
      expect(s.compressions).toBe(2);
      expect(s.ratio).toBeGreaterThan(1);
    } finally {
      run.dispose();
      wrapped.dispose();
      await session.release();
    }
  });

  it("a bad token is INVALID_ARGUMENT and leaves the run as it was", async () => {
    await expect(engine.prefill([])).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    const ids = documentIds(quality.tokenizer, heldOutCorpus(1)[0]!.text).slice(0, 40);
    const prefill = await engine.prefill(ids);
    const run = await engine.startRun(prefill, { preset: "quant", compressEvery: 64 });
    const fresh = await engine.startRun(prefill, { preset: "quant", compressEvery: 64 });
    try {
      for (const bad of [-1, 1.5, Number.NaN]) await expect(run.step(bad)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
      expect(run.stats().tokens).toBe(40);
      expect(Array.from(await run.step(ids[0]!))).toEqual(Array.from(await fresh.step(ids[0]!)));
    } finally {
      run.dispose();
      fresh.dispose();
    }
  });

  it("exposes each layer's rotated queries: layer 0 equals RoPE(W_q · RMSNorm(embedding)) computed here", async () => {
    expect(engine.queryOutputs).toEqual(["query.0", "query.1"]);
    const ids = documentIds(quality.tokenizer, "Fellow citizens of the Senate and House of Representatives: a few more words here.");
    const prefill = await engine.prefill(ids);
    const w = Math.min(OBSERVED_WINDOW, ids.length);
    const q0 = prefill.queries![0]!;
    expect(q0.length).toBe(config.numHeads * w * config.headDim);

    // The f16 graph stores weights as FP16: round them the same way.
    const fp16 = (a: Float32Array) => f16ArrayToF32(f32ArrayToF16(a));
    const embed = fp16(toFloat32(weights.get("model.embed_tokens.weight")!));
    const gain = fp16(toFloat32(weights.get("model.layers.0.input_layernorm.weight")!));
    const wq = fp16(toFloat32(weights.get("model.layers.0.self_attn.q_proj.weight")!));
    const { hiddenSize: h, headDim: d, numHeads } = config;
    let maxDiff = 0;
    let maxAbs = 0;
    for (const row of [0, w - 1]) {
      const pos = ids.length - w + row;
      const x = embed.subarray(ids[pos]! * h, (ids[pos]! + 1) * h);
      const rms = Math.sqrt(x.reduce((s, v) => s + v * v, 0) / h + config.rmsNormEps);
      const normed = Array.from(x, (v, i) => (v / rms) * gain[i]!);
      for (let head = 0; head < numHeads; head++) {
        const q = Array.from({ length: d }, (_, i) => normed.reduce((s, v, c) => s + v * wq[(head * d + i) * h + c]!, 0));
        for (let i = 0; i < d; i++) {
          const j = i % (d / 2);
          const angle = pos / config.ropeTheta ** ((2 * j) / d);
          const rotated = i < d / 2 ? -q[i + d / 2]! : q[i - d / 2]!;
          const expected = q[i]! * Math.cos(angle) + rotated * Math.sin(angle);
          const got = q0[(head * w + row) * d + i]!;
          maxDiff = Math.max(maxDiff, Math.abs(got - expected));
          maxAbs = Math.max(maxAbs, Math.abs(expected));
        }
      }
    }
    expect(maxAbs).toBeGreaterThan(0.1);
    expect(maxDiff).toBeLessThan(1e-4 * Math.max(1, maxAbs));
  });

  it("leaves graphs it does not know alone (observed then falls back to key-key)", () => {
    const graph = buildLlamaOnnx({ ...quality.model, dtype: "f16" });
    expect(exposeQueries(graph, config.numLayers + 1).outputs).toBeNull(); // a layer the graph lacks
    const exposed = exposeQueries(graph, config.numLayers);
    expect(exposed.outputs).toHaveLength(config.numLayers);
  });
});
