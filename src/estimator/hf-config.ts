import { NexusQuantError, describeValue } from "../errors.js";
import { editDistance } from "../validate.js";
import type { Architecture, AttentionKind } from "./architecture.js";

/** Identity of a parsed config; everything optional, since a bare config.json carries none of it. */
export interface HfConfigMeta {
  id?: string;
  name?: string;
  source?: string;
  parameters?: number;
}

type Json = Record<string, unknown>;

function configError(key: string, message: string): NexusQuantError {
  return new NexusQuantError("CONFIG_ERROR", `config.json key ${key}: ${message}`, { key });
}

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A key counts as present only with a non-null value: HF writes `null` for "not used". */
function present(cfg: Json, key: string): boolean {
  return cfg[key] !== undefined && cfg[key] !== null;
}

function positiveInt(cfg: Json, key: string): number {
  const v = cfg[key];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) {
    throw configError(key, `expected a positive integer but found ${describeValue(v)}`);
  }
  return v;
}

/**
 * Reads the first present key of a group of synonyms (Llama names, GPT-2 names, ...). Two synonyms
 * with different values contradict each other and are an error naming both.
 */
function readInt(cfg: Json, keys: readonly string[], required: true): { key: string; value: number };
function readInt(cfg: Json, keys: readonly string[], required: false): { key: string; value: number } | undefined;
function readInt(cfg: Json, keys: readonly string[], required: boolean): { key: string; value: number } | undefined {
  let found: { key: string; value: number } | undefined;
  for (const key of keys) {
    if (!present(cfg, key)) continue;
    const value = positiveInt(cfg, key);
    if (found && found.value !== value) {
      throw configError(key, `contradicts ${found.key} (${value} vs ${found.value})`);
    }
    found ??= { key, value };
  }
  if (!found && required) {
    const typo = misspeltKey(cfg, keys);
    throw configError(keys[0]!, `missing (also looked for ${keys.slice(1).join(", ") || "no synonyms"})${typo ? `; the config has ${typo.found}: did you mean ${typo.meant}?` : ""}`);
  }
  return found;
}

const LAYER_KEYS = ["num_hidden_layers", "n_layer", "num_layers"] as const;
const HEAD_KEYS = ["num_attention_heads", "n_head"] as const;
const HIDDEN_KEYS = ["hidden_size", "n_embd", "d_model"] as const;
/** Explicit KV-head counts (Llama/Mistral/Qwen/Gemma/Phi; Falcon; ChatGLM). */
const KV_HEAD_KEYS = ["num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num"] as const;
const CONTEXT_KEYS = ["max_position_embeddings", "n_positions", "n_ctx", "seq_length"] as const;

/**
 * A key of the config that looks like a misspelling of one of `keys` (none of which is present): edit
 * distance 1, or 2 for keys of 16+ characters, so that real neighbours such as DeepSeek's v_head_dim
 * (2 from head_dim) are not flagged.
 */
function misspeltKey(cfg: Json, keys: readonly string[]): { found: string; meant: string } | undefined {
  if (keys.some((k) => present(cfg, k))) return undefined;
  for (const found of Object.keys(cfg)) {
    for (const meant of keys) {
      const d = editDistance(found, meant);
      if (d > 0 && d <= (meant.length >= 16 ? 2 : 1)) return { found, meant };
    }
  }
  return undefined;
}

/** Optional keys whose absence changes the result, and what the parser does without them. */
const OPTIONAL_KEY_GROUPS: readonly { keys: readonly string[]; without: string }[] = [
  { keys: KV_HEAD_KEYS, without: "multi-head attention is assumed (KV heads = attention heads), which overstates the cache of a GQA/MQA model" },
  { keys: ["head_dim"], without: "head_dim is taken as hidden_size / num_attention_heads" },
  { keys: CONTEXT_KEYS, without: "the model's maximum context is unknown" },
  { keys: ["sliding_window", "use_sliding_window", "layer_types", "sliding_window_pattern"], without: "no sliding-window layers are counted" },
  { keys: ["kv_lora_rank"], without: "the model is not treated as multi-head latent attention" },
];

/** Warnings for misspelt optional keys (e.g. num_key_value_head), which would otherwise be silently ignored. */
function misspellingWarnings(cfg: Json): string[] {
  const warnings: string[] = [];
  for (const group of OPTIONAL_KEY_GROUPS) {
    const typo = misspeltKey(cfg, group.keys);
    if (typo) warnings.push(`config.json has ${typo.found}, which nexusquant does not read: did you mean ${typo.meant}? Without it ${group.without}.`);
  }
  return warnings;
}

/**
 * Builds an Architecture from a Hugging Face `config.json` object. Multimodal configs are read from
 * their nested `text_config`. Throws CONFIG_ERROR naming the key that is missing or contradictory.
 */
export function architectureFromHfConfig(json: unknown, meta: HfConfigMeta = {}): Architecture {
  if (!isObject(json)) throw configError("(root)", `expected a JSON object but found ${describeValue(json)}`);
  // Multimodal models (Llava, Gemma-3, Mistral-3...) keep the language model's keys in text_config.
  const cfg: Json = isObject(json.text_config) ? { model_type: json.model_type, ...json.text_config } : json;
  const notes: string[] = [];
  const modelType = typeof cfg.model_type === "string" ? cfg.model_type : undefined;

  const layers = readInt(cfg, LAYER_KEYS, true).value;
  const heads = readInt(cfg, HEAD_KEYS, true);
  const hidden = readInt(cfg, HIDDEN_KEYS, true).value;

  const kvHeads = readKvHeads(cfg, heads.value, notes);
  const isMla = present(cfg, "kv_lora_rank");
  let headDim: number;
  if (isMla && present(cfg, "qk_nope_head_dim") && present(cfg, "qk_rope_head_dim")) {
    // MLA: hidden_size / heads means nothing; report the query/key head size (nope + rope parts).
    headDim = positiveInt(cfg, "qk_nope_head_dim") + positiveInt(cfg, "qk_rope_head_dim");
  } else if (present(cfg, "head_dim")) {
    // Explicit head_dim wins: Gemma, Qwen3 and others do not use hidden_size / heads.
    headDim = positiveInt(cfg, "head_dim");
  } else {
    if (hidden % heads.value !== 0) {
      throw configError("head_dim", `missing, and ${heads.key} (${heads.value}) does not divide the hidden size (${hidden})`);
    }
    headDim = hidden / heads.value;
  }

  let attention: AttentionKind = kvHeads === heads.value ? "mha" : kvHeads === 1 ? "mqa" : "gqa";
  let mla: Architecture["mla"];
  if (isMla) {
    const kvLoraRank = positiveInt(cfg, "kv_lora_rank");
    if (!present(cfg, "qk_rope_head_dim")) throw configError("qk_rope_head_dim", "missing, but kv_lora_rank says the model uses MLA");
    mla = { kvLoraRank, qkRopeHeadDim: positiveInt(cfg, "qk_rope_head_dim") };
    attention = "mla";
    notes.push(`MLA: the cache holds kv_lora_rank + qk_rope_head_dim = ${mla.kvLoraRank + mla.qkRopeHeadDim} values per token per layer; num_key_value_heads and head_dim do not size it`);
  }

  const maxContext = readInt(cfg, CONTEXT_KEYS, false)?.value;
  const slidingWindow = readSlidingWindow(cfg, layers, modelType, notes);

  const arch: Architecture = {
    id: meta.id ?? modelType ?? "custom",
    name: meta.name ?? meta.id ?? modelType ?? "custom model",
    source: meta.source ?? "config.json",
    layers,
    attentionHeads: heads.value,
    kvHeads,
    headDim,
    hiddenSize: hidden,
    attention,
    notes,
  };
  if (meta.parameters !== undefined) arch.parameters = meta.parameters;
  if (maxContext !== undefined) arch.maxContext = maxContext;
  if (slidingWindow) arch.slidingWindow = slidingWindow;
  if (mla) arch.mla = mla;
  const warnings = misspellingWarnings(cfg);
  if (warnings.length > 0) arch.warnings = warnings;
  return arch;
}

function readKvHeads(cfg: Json, heads: number, notes: string[]): number {
  const explicit = readInt(cfg, KV_HEAD_KEYS, false);
  const mqFlagKey = ["multi_query", "multi_query_attention"].find((k) => cfg[k] === true);
  let kv: number;
  if (mqFlagKey && explicit && explicit.value !== 1) {
    // ChatGLM sets multi_query_attention together with the group count, and Falcon's new decoder
    // ignores multi_query in favour of num_kv_heads: there the count is the truth. Elsewhere a flag
    // that says "one KV head" next to a different count is a contradiction.
    const countWins = explicit.key === "multi_query_group_num" || cfg.new_decoder_architecture === true;
    if (!countWins) throw configError(mqFlagKey, `is true (one KV head) but ${explicit.key} is ${explicit.value}`);
    kv = explicit.value;
  } else if (explicit) {
    kv = explicit.value;
  } else if (mqFlagKey) {
    kv = 1;
  } else {
    kv = heads;
    notes.push("no KV-head key: multi-head attention assumed (KV heads = attention heads)");
  }
  if (kv > heads || heads % kv !== 0) {
    throw configError(explicit?.key ?? "num_key_value_heads", `${kv} KV heads cannot be shared evenly by ${heads} attention heads`);
  }
  return kv;
}

const SLIDING = "sliding_attention";
const FULL = "full_attention";

/**
 * Sliding-window layers, counted only when the config really enables them: a bare `sliding_window`
 * is often a leftover (Phi-3 ships 2047 that Hugging Face does not apply; Qwen2.5 ships 131072 with
 * use_sliding_window false), and counting it would understate the cache.
 */
function readSlidingWindow(
  cfg: Json,
  layers: number,
  modelType: string | undefined,
  notes: string[],
): Architecture["slidingWindow"] {
  const windowPresent = present(cfg, "sliding_window");
  const window = () => {
    if (!windowPresent) throw configError("sliding_window", "missing, but the config enables sliding-window layers");
    return positiveInt(cfg, "sliding_window");
  };
  const result = (sliding: number) => (sliding > 0 ? { window: window(), layers: sliding } : undefined);

  if (present(cfg, "layer_types")) {
    const types = cfg.layer_types;
    if (!Array.isArray(types) || types.length !== layers) {
      throw configError("layer_types", `expected an array of ${layers} entries (one per layer) but found ${describeValue(types)}`);
    }
    types.forEach((t, i) => {
      if (t !== SLIDING && t !== FULL) throw configError(`layer_types[${i}]`, `unsupported layer type ${describeValue(t)} (expected "${FULL}" or "${SLIDING}")`);
    });
    const sliding = types.filter((t) => t === SLIDING).length;
    if (sliding > 0 && cfg.use_sliding_window === false) {
      throw configError("use_sliding_window", `is false but layer_types lists ${sliding} sliding layers`);
    }
    return result(sliding);
  }
  if (cfg.use_sliding_window === false) {
    if (windowPresent) notes.push(`sliding_window ${describeValue(cfg.sliding_window)} ignored: use_sliding_window is false`);
    return undefined;
  }
  if (cfg.use_sliding_window === true) {
    // Qwen2 convention: layers with index >= max_window_layers slide.
    const fullLayers = present(cfg, "max_window_layers") ? Math.min(layers, positiveInt(cfg, "max_window_layers")) : 0;
    return result(layers - fullLayers);
  }
  if (present(cfg, "sliding_window_pattern")) {
    // Gemma-3 convention: every Nth layer ((i + 1) % N === 0) is global, the rest slide.
    const period = positiveInt(cfg, "sliding_window_pattern");
    return result(layers - Math.floor(layers / period));
  }
  if (modelType === "gemma2") {
    // Gemma-2 alternates local and global layers, starting with a local (sliding) one.
    return result(Math.ceil(layers / 2));
  }
  if (modelType === "gemma3" || modelType === "gemma3_text") {
    return result(layers - Math.floor(layers / 6));
  }
  if (windowPresent && (modelType === "mistral" || modelType === "mixtral")) {
    // Mistral-7B-v0.1 style: a non-null window applies to every layer.
    return result(layers);
  }
  if (windowPresent) {
    notes.push(`sliding_window ${describeValue(cfg.sliding_window)} ignored: nothing in this ${modelType ? modelType + " " : ""}config enables it (no use_sliding_window, layer_types or sliding_window_pattern)`);
  }
  return undefined;
}
