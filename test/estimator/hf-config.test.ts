import { describe, expect, it } from "vitest";
import { ARCHITECTURES, architectureFromHfConfig, kvBytesPerToken, kvCacheBytes } from "../../src/estimator/index.js";
import { fixture, thrown } from "./helpers.js";

describe("architectureFromHfConfig on published configs", () => {
  it("Llama-3.1-70B: 80 layers, 8 KV heads, head_dim 8192/64, no window", () => {
    const a = architectureFromHfConfig(fixture("llama-3.1-70b"), { id: "x" });
    expect([a.layers, a.attentionHeads, a.kvHeads, a.headDim, a.attention, a.maxContext]).toEqual([80, 64, 8, 128, "gqa", 131072]);
    expect(a.slidingWindow).toBeUndefined();
    expect(kvBytesPerToken(a, "bf16")).toBe(327_680);
  });

  it("matches the registry entries built from the same keys", () => {
    const pairs: [string, string][] = [
      ["llama-3.1-70b", "llama-3.1-70b"], ["mistral-7b-v0.3", "mistral-7b"], ["gemma-2-9b", "gemma-2-9b"],
      ["phi-3-mini-4k-instruct", "phi-3-mini"], ["gpt2", "gpt2"], ["deepseek-v3", "deepseek-v3"],
    ];
    for (const [file, id] of pairs) {
      const parsed = architectureFromHfConfig(fixture(file));
      const reg = ARCHITECTURES[id]!;
      expect({ ...parsed, id: reg.id, name: reg.name, source: reg.source, parameters: reg.parameters }, file).toEqual(reg);
    }
  });

  it("GPT-2 names (n_layer, n_head, n_embd, n_positions) and MHA by default", () => {
    const a = architectureFromHfConfig(fixture("gpt2"));
    expect([a.layers, a.attentionHeads, a.kvHeads, a.headDim, a.attention, a.maxContext]).toEqual([12, 12, 12, 64, "mha", 1024]);
    expect(a.notes.join(" ")).toMatch(/multi-head attention assumed/);
  });

  it("multi_query (Falcon-7B) means one KV head", () => {
    const a = architectureFromHfConfig(fixture("falcon-7b"));
    expect([a.kvHeads, a.headDim, a.attention]).toEqual([1, 64, "mqa"]);
    expect(kvBytesPerToken(a, "fp16")).toBe(32 * 2 * 1 * 64 * 2);
  });

  it("ChatGLM-style multi_query_attention with multi_query_group_num uses the group count", () => {
    const a = architectureFromHfConfig({ num_layers: 28, num_attention_heads: 32, hidden_size: 4096, multi_query_attention: true, multi_query_group_num: 2 });
    expect([a.layers, a.kvHeads, a.attention]).toEqual([28, 2, "gqa"]);
  });

  it("Mistral-7B-v0.1: a non-null sliding_window on a mistral config applies to every layer", () => {
    const a = architectureFromHfConfig(fixture("mistral-7b-v0.1"));
    expect(a.slidingWindow).toEqual({ window: 4096, layers: 32 });
    // The cache stops growing at the window.
    expect(kvCacheBytes(a, 100_000)).toBe(kvCacheBytes(a, 4096));
    expect(kvCacheBytes(a, 4096)).toBe(131_072 * 4096);
  });

  it("Mistral-7B-v0.3: sliding_window null means no window", () => {
    expect(architectureFromHfConfig(fixture("mistral-7b-v0.3")).slidingWindow).toBeUndefined();
  });

  it("Qwen2.5: sliding_window with use_sliding_window false does not count", () => {
    const a = architectureFromHfConfig(fixture("qwen2.5-7b-instruct"));
    expect(a.slidingWindow).toBeUndefined();
    expect(a.notes.join(" ")).toMatch(/use_sliding_window is false/);
    expect(kvBytesPerToken(a)).toBe(28 * 2 * 4 * 128 * 2);
  });

  it("Qwen2 with use_sliding_window true: layers >= max_window_layers slide", () => {
    const cfg = { ...fixture("qwen2.5-7b-instruct"), use_sliding_window: true, sliding_window: 4096, max_window_layers: 20 };
    expect(architectureFromHfConfig(cfg).slidingWindow).toEqual({ window: 4096, layers: 8 });
  });

  it("Phi-3-mini: a bare sliding_window (2047) that the config does not enable is ignored, with a note", () => {
    const a = architectureFromHfConfig(fixture("phi-3-mini-4k-instruct"));
    expect(a.slidingWindow).toBeUndefined();
    expect(a.headDim).toBe(96);
    expect(a.notes.join(" ")).toMatch(/sliding_window 2047 ignored/);
  });

  it("Gemma-2: alternating local/global layers, 21 of 42 slide with window 4096; explicit head_dim 256", () => {
    const a = architectureFromHfConfig(fixture("gemma-2-9b"));
    expect(a.headDim).toBe(256);
    expect(a.slidingWindow).toEqual({ window: 4096, layers: 21 });
    const perLayerToken = 2 * 8 * 256 * 2;
    expect(kvCacheBytes(a, 8192)).toBe(perLayerToken * (21 * 8192 + 21 * 4096));
    expect(kvCacheBytes(a, 1000)).toBe(perLayerToken * 42 * 1000);
  });

  it("Gemma-3 (nested text_config, sliding_window_pattern 6): 52 of 62 layers slide with window 1024", () => {
    const a = architectureFromHfConfig(fixture("gemma-3-27b-it"));
    expect([a.layers, a.kvHeads, a.headDim, a.maxContext]).toEqual([62, 16, 128, 131072]);
    expect(a.slidingWindow).toEqual({ window: 1024, layers: 62 - Math.floor(62 / 6) });
  });

  it("layer_types (gpt-oss-20b) counts the sliding_attention entries", () => {
    const a = architectureFromHfConfig(fixture("gpt-oss-20b"));
    expect(a.slidingWindow).toEqual({ window: 128, layers: 12 });
    expect(a.headDim).toBe(64);
  });

  it("DeepSeek-V3 MLA: one 512 + 64 vector per token per layer, not K and V per head", () => {
    const a = architectureFromHfConfig(fixture("deepseek-v3"));
    expect(a.attention).toBe("mla");
    expect(a.mla).toEqual({ kvLoraRank: 512, qkRopeHeadDim: 64 });
    expect(kvBytesPerToken(a, "bf16")).toBe(61 * 576 * 2);
    // 128 heads × (K + V) would have been 57x larger.
    expect(kvBytesPerToken(a, "bf16")).toBeLessThan(61 * 2 * 128 * 128 * 2);
  });
});

describe("architectureFromHfConfig errors name the key", () => {
  const base = fixture("llama-3.1-70b");

  it.each([
    ["num_hidden_layers", { ...base, num_hidden_layers: undefined }],
    ["num_attention_heads", { ...base, num_attention_heads: undefined }],
    ["hidden_size", { ...base, hidden_size: undefined }],
  ])("missing %s", (key, cfg) => {
    const e = thrown(() => architectureFromHfConfig(cfg));
    expect(e.code).toBe("CONFIG_ERROR");
    expect(e.details?.key).toBe(key);
    expect(e.message).toContain(key);
  });

  it("a key that is not a positive integer", () => {
    const e = thrown(() => architectureFromHfConfig({ ...base, num_key_value_heads: "8" }));
    expect([e.code, e.details?.key]).toEqual(["CONFIG_ERROR", "num_key_value_heads"]);
  });

  it("contradictory synonyms (num_hidden_layers vs n_layer)", () => {
    const e = thrown(() => architectureFromHfConfig({ ...base, n_layer: 81 }));
    expect(e.details?.key).toBe("n_layer");
    expect(e.message).toMatch(/contradicts num_hidden_layers/);
  });

  it("KV heads that do not divide the attention heads", () => {
    const e = thrown(() => architectureFromHfConfig({ ...base, num_key_value_heads: 7 }));
    expect(e.details?.key).toBe("num_key_value_heads");
  });

  it("multi_query next to a different KV-head count", () => {
    const e = thrown(() => architectureFromHfConfig({ ...base, multi_query: true }));
    expect(e.details?.key).toBe("multi_query");
  });

  it("hidden_size not divisible by heads and no head_dim", () => {
    const e = thrown(() => architectureFromHfConfig({ ...base, hidden_size: 8100 }));
    expect(e.details?.key).toBe("head_dim");
  });

  it("a sliding configuration without sliding_window", () => {
    const e = thrown(() => architectureFromHfConfig({ ...fixture("gemma-2-9b"), sliding_window: null }));
    expect(e.details?.key).toBe("sliding_window");
  });

  it("layer_types of the wrong length, an unknown layer type, or contradicting use_sliding_window", () => {
    const gptOss = fixture("gpt-oss-20b");
    const types = gptOss.layer_types as string[];
    expect(thrown(() => architectureFromHfConfig({ ...gptOss, layer_types: types.slice(1) })).details?.key).toBe("layer_types");
    expect(thrown(() => architectureFromHfConfig({ ...gptOss, layer_types: ["linear_attention", ...types.slice(1)] })).details?.key).toBe("layer_types[0]");
    expect(thrown(() => architectureFromHfConfig({ ...gptOss, use_sliding_window: false })).details?.key).toBe("use_sliding_window");
  });

  it("MLA without qk_rope_head_dim", () => {
    const e = thrown(() => architectureFromHfConfig({ ...fixture("deepseek-v3"), qk_rope_head_dim: undefined }));
    expect(e.details?.key).toBe("qk_rope_head_dim");
  });

  it("not an object", () => {
    expect(thrown(() => architectureFromHfConfig([1, 2])).code).toBe("CONFIG_ERROR");
    expect(thrown(() => architectureFromHfConfig(null)).code).toBe("CONFIG_ERROR");
  });
});
