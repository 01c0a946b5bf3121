import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { NexusQuantError } from "../../src/errors.js";
import { llamaConfigToJson, llamaWeightShapes, parseLlamaConfig, ropeInverseFrequencies } from "../../src/model/index.js";

// The shape of a real SmolLM2-135M config.json (a Llama-architecture model), trimmed.
const SMOL = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_act: "silu",
  hidden_size: 576,
  intermediate_size: 1536,
  num_hidden_layers: 30,
  num_attention_heads: 9,
  num_key_value_heads: 3,
  rms_norm_eps: 1e-5,
  rope_theta: 100000,
  rope_scaling: null,
  vocab_size: 49152,
  max_position_embeddings: 8192,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
};

function errorOf(fn: () => unknown): NexusQuantError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(NexusQuantError);
    return error as NexusQuantError;
  }
  throw new Error("expected an error");
}

describe("parseLlamaConfig", () => {
  it("reads a Hugging Face Llama config, deriving head_dim", () => {
    expect(parseLlamaConfig(SMOL)).toEqual({
      hiddenSize: 576,
      intermediateSize: 1536,
      numLayers: 30,
      numHeads: 9,
      numKvHeads: 3,
      headDim: 64,
      rmsNormEps: 1e-5,
      ropeTheta: 100000,
      vocabSize: 49152,
      maxPositionEmbeddings: 8192,
      tieWordEmbeddings: true,
      modelType: "llama",
      qkvBias: false,
      oBias: false,
      ropeScaling: null,
    });
  });

  it("applies transformers' LlamaConfig defaults for optional keys", () => {
    const config = parseLlamaConfig({ hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 10 });
    expect(config).toMatchObject({ numKvHeads: 4, headDim: 16, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 2048, tieWordEmbeddings: false });
  });

  it("honours an explicit head_dim that is not hidden/heads", () => {
    expect(parseLlamaConfig({ ...SMOL, head_dim: 32 }).headDim).toBe(32);
  });

  it("names every missing required key in one error", () => {
    const { vocab_size: _v, num_hidden_layers: _n, ...rest } = SMOL;
    const error = errorOf(() => parseLlamaConfig(rest));
    expect(error.code).toBe("CONFIG_ERROR");
    expect(error.message).toContain(`"num_hidden_layers", "vocab_size"`);
    expect(error.details).toEqual({ missing: ["num_hidden_layers", "vocab_size"] });
  });

  const invalid: [string, Record<string, unknown>, string, RegExp][] = [
    ["a non-integer size", { ...SMOL, hidden_size: 57.5 }, "CONFIG_ERROR", /positive integer for "hidden_size"/],
    ["heads not a multiple of kv heads", { ...SMOL, num_key_value_heads: 4 }, "CONFIG_ERROR", /multiple of num_key_value_heads/],
    ["hidden not divisible by heads without head_dim", { ...SMOL, hidden_size: 577 }, "CONFIG_ERROR", /not divisible/],
    ["an odd head_dim", { ...SMOL, head_dim: 63 }, "CONFIG_ERROR", /must be even/],
    ["a negative epsilon", { ...SMOL, rms_norm_eps: -1 }, "CONFIG_ERROR", /"rms_norm_eps"/],
    ["a non-boolean tie flag", { ...SMOL, tie_word_embeddings: "yes" }, "CONFIG_ERROR", /tie_word_embeddings/],
    ["yarn RoPE scaling", { ...SMOL, rope_scaling: { rope_type: "yarn", factor: 8 } }, "UNSUPPORTED", /rope_scaling "yarn"/],
    ["MLP biases", { ...SMOL, mlp_bias: true }, "UNSUPPORTED", /mlp_bias/],
    ["another activation", { ...SMOL, hidden_act: "gelu" }, "UNSUPPORTED", /hidden_act "gelu"/],
    ["another model type", { ...SMOL, model_type: "gpt2" }, "UNSUPPORTED", /model_type: gpt2 is not supported/],
  ];
  it.each(invalid)("refuses %s", (_name, json, code, message) => {
    const error = errorOf(() => parseLlamaConfig(json));
    expect(error.code).toBe(code);
    expect(error.message).toMatch(message);
  });

  it("names the architecture of a real GPT-2 config.json (UNSUPPORTED, before any missing-key check)", () => {
    const gpt2 = JSON.parse(readFileSync(fileURLToPath(new URL("../estimator/fixtures/gpt2.json", import.meta.url)), "utf8")) as Record<string, unknown>;
    const error = errorOf(() => parseLlamaConfig(gpt2));
    expect(error.code).toBe("UNSUPPORTED");
    expect(error.message).toContain("model_type: gpt2");
    expect(error.message).not.toMatch(/missing/);
    expect(error.details).toMatchObject({ modelType: "gpt2", architectures: ["GPT2LMHeadModel"] });
  });

  it("reads Qwen2 (q/k/v biases), Llama attention_bias (all four) and Mistral", () => {
    expect(parseLlamaConfig({ ...SMOL, model_type: "qwen2" })).toMatchObject({ modelType: "qwen2", qkvBias: true, oBias: false });
    expect(parseLlamaConfig({ ...SMOL, attention_bias: true })).toMatchObject({ modelType: "llama", qkvBias: true, oBias: true });
    expect(parseLlamaConfig({ ...SMOL, model_type: "mistral" })).toMatchObject({ modelType: "mistral", qkvBias: false });
    const shapes = llamaWeightShapes(parseLlamaConfig({ ...SMOL, model_type: "qwen2", num_hidden_layers: 1 }));
    expect(shapes.get("model.layers.0.self_attn.k_proj.bias")).toEqual([192]);
    expect(shapes.has("model.layers.0.self_attn.o_proj.bias")).toBe(false);
  });

  it("applies Llama 3.1 RoPE scaling: short wavelengths kept, long ones divided by the factor", () => {
    const base = parseLlamaConfig(SMOL);
    const scaled = parseLlamaConfig({
      ...SMOL,
      rope_theta: 500000,
      rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
    });
    const plain = ropeInverseFrequencies({ ...scaled, ropeScaling: null });
    const inv = ropeInverseFrequencies(scaled);
    expect(inv[0]).toBe(plain[0]); // wavelength 2π < 8192/4
    expect(inv.at(-1)! / plain.at(-1)!).toBeCloseTo(1 / 8, 12); // wavelength far beyond 8192
    expect(ropeInverseFrequencies(base)).toHaveLength(base.headDim / 2);
    expect(parseLlamaConfig(llamaConfigToJson(scaled))).toEqual(scaled);
  });

  it("refuses a non-object", () => {
    expect(errorOf(() => parseLlamaConfig([1])).code).toBe("CONFIG_ERROR");
  });

  it("round-trips through llamaConfigToJson", () => {
    const config = parseLlamaConfig(SMOL);
    expect(parseLlamaConfig(llamaConfigToJson(config))).toEqual(config);
  });
});

describe("llamaWeightShapes", () => {
  it("lists HF parameter names and [out, in] shapes; lm_head only when untied", () => {
    const config = parseLlamaConfig({ ...SMOL, num_hidden_layers: 1 });
    const shapes = llamaWeightShapes(config);
    expect(shapes.get("model.layers.0.self_attn.q_proj.weight")).toEqual([576, 576]);
    expect(shapes.get("model.layers.0.self_attn.k_proj.weight")).toEqual([192, 576]);
    expect(shapes.get("model.layers.0.mlp.down_proj.weight")).toEqual([576, 1536]);
    expect(shapes.has("lm_head.weight")).toBe(false);
    expect(shapes.size).toBe(1 + 9 + 1);
    expect(llamaWeightShapes({ ...config, tieWordEmbeddings: false }).get("lm_head.weight")).toEqual([49152, 576]);
  });
});
