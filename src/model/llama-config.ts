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
  /** Hugging Face model_type: "llama" (also Llama 2/3, SmolLM, TinyLlama), "mistral" or "qwen2". */
  modelType: LlamaModelType;
  /** q/k/v projections carry biases (Qwen2 always; Llama with attention_bias). */
  qkvBias: boolean;
  /** o_proj carries a bias (Llama with attention_bias). */
  oBias: boolean;
  /** Llama 3.1-style RoPE frequency scaling (rope_scaling.rope_type "llama3"), or null. */
  ropeScaling: Llama3RopeScaling | null;
  /**
   * config.json's `bos_token_id` (the first when it is a list), when it is a token id of the
   * vocabulary: what starts a document, and the separator of the reconstruct scorer's re-read.
   */
  bosTokenId?: number;
  /**
   * The end-of-text token id(s) where generate() stops by default: generation_config.json's
   * `eos_token_id` when the model directory has one (model-dir.ts), else config.json's; a number or a
   * list (ids outside the vocabulary are dropped). Absent when neither names one.
   */
  eosTokenIds?: number[];
}

export type LlamaModelType = "llama" | "mistral" | "qwen2";

export interface Llama3RopeScaling {
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

const REQUIRED_KEYS = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"] as const;
const SUPPORTED_MODEL_TYPES: readonly LlamaModelType[] = ["llama", "mistral", "qwen2"];

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
  // The architecture first: another family (GPT-2's n_embd, n_layer, ...) lacks Llama's keys, and
  // "missing hidden_size" would send its user looking for a broken file instead of a supported model.
  if (raw.model_type !== undefined && !SUPPORTED_MODEL_TYPES.includes(raw.model_type as LlamaModelType)) {
    const name = typeof raw.model_type === "string" ? raw.model_type : JSON.stringify(raw.model_type);
    throw new NexusQuantError(
      "UNSUPPORTED",
      `config.json: model_type: ${name} is not supported: the native path loads Llama-family checkpoints (model_type: ${SUPPORTED_MODEL_TYPES.join(", ")}). ` +
        "An ONNX export of another decoder may still be wrapped as an onnxruntime-node session or a transformers.js model (docs/integrations.md).",
      { modelType: raw.model_type, architectures: raw.architectures },
    );
  }
  const missing = REQUIRED_KEYS.filter((key) => raw[key] === undefined || raw[key] === null);
  if (missing.length > 0) {
    throw configError(`missing required key${missing.length > 1 ? "s" : ""} ${missing.map((k) => `"${k}"`).join(", ")}`, { missing });
  }
  const modelType = (raw.model_type ?? "llama") as LlamaModelType;
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
    modelType,
    // Qwen2 attention always has q/k/v biases and none on o_proj; Llama's attention_bias puts one on all four.
    qkvBias: modelType === "qwen2" || raw.attention_bias === true,
    oBias: modelType !== "qwen2" && raw.attention_bias === true,
    ropeScaling: parseRopeScaling(raw),
    ...optionalTokenIds(raw, raw.vocab_size as number), // checked by vocabSize above
  };
}

/**
 * The token ids a config's `bos_token_id` / `eos_token_id` value names (an integer or a list of them),
 * keeping those inside the vocabulary; both keys are optional, so anything else names none.
 */
export function tokenIdList(value: unknown, vocabSize: number): number[] {
  const values = Array.isArray(value) ? value : [value];
  return values.filter((v): v is number => Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) < vocabSize);
}

/** `{ bosTokenId, eosTokenIds }` from config.json, each only when it names a token of the vocabulary. */
function optionalTokenIds(raw: Record<string, unknown>, vocabSize: number): Pick<LlamaConfig, "bosTokenId" | "eosTokenIds"> {
  // A list of BOS ids keeps its first, as before (a document starts with one token).
  const bos = tokenIdList(Array.isArray(raw.bos_token_id) ? raw.bos_token_id.slice(0, 1) : raw.bos_token_id, vocabSize);
  const eos = tokenIdList(raw.eos_token_id, vocabSize);
  return { ...(bos.length > 0 ? { bosTokenId: bos[0] } : {}), ...(eos.length > 0 ? { eosTokenIds: eos } : {}) };
}

function parseRopeScaling(raw: Record<string, unknown>): Llama3RopeScaling | null {
  const scaling = raw.rope_scaling as Record<string, unknown> | null | undefined;
  if (scaling === undefined || scaling === null) return null;
  const type = scaling.rope_type ?? scaling.type;
  if (type === "default") return null;
  const sub = scaling as Record<string, unknown>;
  return {
    factor: positiveNumber(sub, "factor", 8),
    lowFreqFactor: positiveNumber(sub, "low_freq_factor", 1),
    highFreqFactor: positiveNumber(sub, "high_freq_factor", 4),
    originalMaxPositionEmbeddings: positiveInt(sub, "original_max_position_embeddings", 8192),
  };
}

/**
 * RoPE inverse frequencies, with Llama 3.1's scaling when the config has it (transformers'
 * `_compute_llama3_parameters`): long wavelengths divided by `factor`, short ones kept, a smooth blend between.
 */
export function ropeInverseFrequencies(config: LlamaConfig): number[] {
  const half = config.headDim / 2;
  const inv = Array.from({ length: half }, (_, j) => 1 / config.ropeTheta ** ((2 * j) / config.headDim));
  const s = config.ropeScaling;
  if (s === null) return inv;
  const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / s.factor;
    const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}

function refuseUnsupported(raw: Record<string, unknown>): void {
  const unsupported = (what: string) =>
    new NexusQuantError("UNSUPPORTED", `config.json: ${what} is not supported by the Llama ONNX builder`, { key: what });
  const scaling = raw.rope_scaling as { rope_type?: unknown; type?: unknown } | null | undefined;
  if (scaling !== undefined && scaling !== null) {
    const type = scaling.rope_type ?? scaling.type;
    if (type !== "default" && type !== "llama3") throw unsupported(`rope_scaling ${JSON.stringify(type)}`);
  }
  if (raw.mlp_bias === true) throw unsupported("mlp_bias");
  if (raw.hidden_act !== undefined && raw.hidden_act !== "silu") throw unsupported(`hidden_act ${JSON.stringify(raw.hidden_act)}`);
}

/** The inverse of parseLlamaConfig: a config.json object transformers can load. */
export function llamaConfigToJson(config: LlamaConfig): Record<string, unknown> {
  const architecture = { llama: "LlamaForCausalLM", mistral: "MistralForCausalLM", qwen2: "Qwen2ForCausalLM" }[config.modelType];
  return {
    architectures: [architecture],
    model_type: config.modelType,
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
    ...(config.modelType === "qwen2" ? {} : { attention_bias: config.oBias }),
    mlp_bias: false,
    ...(config.bosTokenId !== undefined ? { bos_token_id: config.bosTokenId } : {}),
    ...(config.eosTokenIds !== undefined ? { eos_token_id: config.eosTokenIds.length === 1 ? config.eosTokenIds[0] : config.eosTokenIds } : {}),
    rope_scaling:
      config.ropeScaling === null
        ? null
        : {
            rope_type: "llama3",
            factor: config.ropeScaling.factor,
            low_freq_factor: config.ropeScaling.lowFreqFactor,
            high_freq_factor: config.ropeScaling.highFreqFactor,
            original_max_position_embeddings: config.ropeScaling.originalMaxPositionEmbeddings,
          },
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
    if (config.qkvBias) {
      shapes.set(`${p}.self_attn.q_proj.bias`, [numHeads * headDim]);
      shapes.set(`${p}.self_attn.k_proj.bias`, [numKvHeads * headDim]);
      shapes.set(`${p}.self_attn.v_proj.bias`, [numKvHeads * headDim]);
    }
    if (config.oBias) shapes.set(`${p}.self_attn.o_proj.bias`, [h]);
    shapes.set(`${p}.post_attention_layernorm.weight`, [h]);
    shapes.set(`${p}.mlp.gate_proj.weight`, [ff, h]);
    shapes.set(`${p}.mlp.up_proj.weight`, [ff, h]);
    shapes.set(`${p}.mlp.down_proj.weight`, [h, ff]);
  }
  shapes.set("model.norm.weight", [h]);
  if (!config.tieWordEmbeddings) shapes.set("lm_head.weight", [vocabSize, h]);
  return shapes;
}
