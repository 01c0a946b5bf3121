/**
 * The subset of a Hugging Face Llama `config.json` that fixes the graph. Defaults follow
 * transformers' LlamaConfig where HF itself has one (num_key_value_heads = num_attention_heads,
 * rms_norm_eps 1e-6, rope_theta 10000, tie_word_embeddings false, head_dim = hidden/heads); the keys
 * without a sensible default are required and all missing ones are named in one error. Features that
 * would change the math but that the builder does not implement (RoPE scaling, biases, other
 * activations) are refused rather than silently ignored.
 */
import { NexusQuantError } from "../errors.js";

export interface LlamaConfig {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
}

const REQUIRED_KEYS = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"] as const;
const SUPPORTED_MODEL_TYPES = ["llama"];

function configError(message: string, details?: Record<string, unknown>): NexusQuantError {
  return new NexusQuantError("CONFIG_ERROR", `config.json: ${message}`, details);
}

function positiveInt(json: Record<string, unknown>, key: string, fallback?: number): number {
  const value = json[key] ?? fallback;
  if (!Number.isSafeInteger(value) || (value as number) <= 0) {
    throw configError(`expected a positive integer for "${key}" but found ${JSON.stringify(json[key])}`, { key });
  }
  return value as number;
}

function positiveNumber(json: Record<string, unknown>, key: string, fallback: number): number {
  const value = json[key] ?? fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw configError(`expected a positive number for "${key}" but found ${JSON.stringify(json[key])}`, { key });
  }
  return value;
}

export function parseLlamaConfig(json: unknown): LlamaConfig {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw configError("expected a JSON object at the top level");
  }
  const raw = json as Record<string, unknown>;
  const missing = REQUIRED_KEYS.filter((key) => raw[key] === undefined || raw[key] === null);
  if (missing.length > 0) {
    throw configError(`missing required key${missing.length > 1 ? "s" : ""} ${missing.map((k) => `"${k}"`).join(", ")}`, { missing });
  }
  if (raw.model_type !== undefined && !SUPPORTED_MODEL_TYPES.includes(raw.model_type as string)) {
    throw new NexusQuantError("UNSUPPORTED", `config.json: model_type ${JSON.stringify(raw.model_type)} is not a Llama model`, {
      modelType: raw.model_type,
    });
  }
  refuseUnsupported(raw);

  const hiddenSize = positiveInt(raw, "hidden_size");
  const numHeads = positiveInt(raw, "num_attention_heads");
  const numKvHeads = positiveInt(raw, "num_key_value_heads", numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw configError(`num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`);
  }
  if (raw.head_dim === undefined && hiddenSize % numHeads !== 0) {
    throw configError(`hidden_size (${hiddenSize}) is not divisible by num_attention_heads (${numHeads}) and head_dim is not given`);
  }
  const headDim = positiveInt(raw, "head_dim", hiddenSize / numHeads);
  if (headDim % 2 !== 0) throw configError(`head_dim (${headDim}) must be even for rotary embeddings`);
  const tie = raw.tie_word_embeddings ?? false;
  if (typeof tie !== "boolean") throw configError(`expected a boolean for "tie_word_embeddings" but found ${JSON.stringify(tie)}`);

  return {
    hiddenSize,
    intermediateSize: positiveInt(raw, "intermediate_size"),
    numLayers: positiveInt(raw, "num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: positiveNumber(raw, "rms_norm_eps", 1e-6),
    ropeTheta: positiveNumber(raw, "rope_theta", 10000),
    vocabSize: positiveInt(raw, "vocab_size"),
    maxPositionEmbeddings: positiveInt(raw, "max_position_embeddings", 2048),
    tieWordEmbeddings: tie,
  };
}

function refuseUnsupported(raw: Record<string, unknown>): void {
  const unsupported = (what: string) =>
    new NexusQuantError("UNSUPPORTED", `config.json: ${what} is not supported by the Llama ONNX builder`, { key: what });
  const scaling = raw.rope_scaling as { rope_type?: unknown; type?: unknown } | null | undefined;
  if (scaling !== undefined && scaling !== null) {
    const type = scaling.rope_type ?? scaling.type;
    if (type !== "default") throw unsupported(`rope_scaling ${JSON.stringify(type)}`);
  }
  if (raw.attention_bias === true) throw unsupported("attention_bias");
  if (raw.mlp_bias === true) throw unsupported("mlp_bias");
  if (raw.hidden_act !== undefined && raw.hidden_act !== "silu") throw unsupported(`hidden_act ${JSON.stringify(raw.hidden_act)}`);
}

/** The inverse of parseLlamaConfig: a config.json object transformers can load. */
export function llamaConfigToJson(config: LlamaConfig): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_act: "silu",
    hidden_size: config.hiddenSize,
    intermediate_size: config.intermediateSize,
    num_hidden_layers: config.numLayers,
    num_attention_heads: config.numHeads,
    num_key_value_heads: config.numKvHeads,
    head_dim: config.headDim,
    rms_norm_eps: config.rmsNormEps,
    rope_theta: config.ropeTheta,
    vocab_size: config.vocabSize,
    max_position_embeddings: config.maxPositionEmbeddings,
    tie_word_embeddings: config.tieWordEmbeddings,
    attention_bias: false,
    mlp_bias: false,
    rope_scaling: null,
  };
}

/** Every parameter a Llama checkpoint holds, by HF name, with its shape ([out, in] for projections). */
export function llamaWeightShapes(config: LlamaConfig): Map<string, number[]> {
  const { hiddenSize: h, intermediateSize: ff, numHeads, numKvHeads, headDim, vocabSize } = config;
  const shapes = new Map<string, number[]>();
  shapes.set("model.embed_tokens.weight", [vocabSize, h]);
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}`;
    shapes.set(`${p}.input_layernorm.weight`, [h]);
    shapes.set(`${p}.self_attn.q_proj.weight`, [numHeads * headDim, h]);
    shapes.set(`${p}.self_attn.k_proj.weight`, [numKvHeads * headDim, h]);
    shapes.set(`${p}.self_attn.v_proj.weight`, [numKvHeads * headDim, h]);
    shapes.set(`${p}.self_attn.o_proj.weight`, [h, numHeads * headDim]);
    shapes.set(`${p}.post_attention_layernorm.weight`, [h]);
    shapes.set(`${p}.mlp.gate_proj.weight`, [ff, h]);
    shapes.set(`${p}.mlp.up_proj.weight`, [ff, h]);
    shapes.set(`${p}.mlp.down_proj.weight`, [h, ff]);
  }
  shapes.set("model.norm.weight", [h]);
  if (!config.tieWordEmbeddings) shapes.set("lm_head.weight", [vocabSize, h]);
  return shapes;
}
