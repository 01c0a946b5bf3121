import { NexusQuantError } from "../errors.js";
import type { Architecture } from "./architecture.js";
import { closestIds } from "./closest.js";
import { architectureFromHfConfig } from "./hf-config.js";

interface RegistryEntry {
  id: string;
  name: string;
  /** Hugging Face repo whose config.json holds `config`. */
  repo: string;
  /** Total parameters as the model card states them (MoE: all experts). */
  parameters: number;
  /** The config.json keys that size the cache, copied from the published file. */
  config: Record<string, unknown>;
}

const LLAMA3_8B = { model_type: "llama", num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, hidden_size: 4096 };
const LLAMA3_70B = { model_type: "llama", num_hidden_layers: 80, num_attention_heads: 64, num_key_value_heads: 8, hidden_size: 8192 };

/**
 * Copied key by key from each repo's config.json. Running them through architectureFromHfConfig keeps
 * one parser for registry models and user configs, so a registry entry means what its config means.
 */
const ENTRIES: readonly RegistryEntry[] = [
  { id: "llama-2-7b", name: "Llama 2 7B", repo: "meta-llama/Llama-2-7b-hf", parameters: 7e9,
    config: { model_type: "llama", num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, hidden_size: 4096, max_position_embeddings: 4096 } },
  { id: "llama-2-13b", name: "Llama 2 13B", repo: "meta-llama/Llama-2-13b-hf", parameters: 13e9,
    config: { model_type: "llama", num_hidden_layers: 40, num_attention_heads: 40, num_key_value_heads: 40, hidden_size: 5120, max_position_embeddings: 4096 } },
  { id: "llama-2-70b", name: "Llama 2 70B", repo: "meta-llama/Llama-2-70b-hf", parameters: 70e9,
    config: { ...LLAMA3_70B, max_position_embeddings: 4096 } },
  { id: "llama-3-8b", name: "Llama 3 8B", repo: "meta-llama/Meta-Llama-3-8B", parameters: 8e9,
    config: { ...LLAMA3_8B, max_position_embeddings: 8192 } },
  { id: "llama-3-70b", name: "Llama 3 70B", repo: "meta-llama/Meta-Llama-3-70B", parameters: 70e9,
    config: { ...LLAMA3_70B, max_position_embeddings: 8192 } },
  { id: "llama-3.1-8b", name: "Llama 3.1 8B", repo: "meta-llama/Llama-3.1-8B", parameters: 8e9,
    config: { ...LLAMA3_8B, max_position_embeddings: 131072 } },
  { id: "llama-3.1-70b", name: "Llama 3.1 70B", repo: "meta-llama/Llama-3.1-70B", parameters: 70e9,
    config: { ...LLAMA3_70B, max_position_embeddings: 131072 } },
  { id: "llama-3.1-405b", name: "Llama 3.1 405B", repo: "meta-llama/Llama-3.1-405B", parameters: 405e9,
    config: { model_type: "llama", num_hidden_layers: 126, num_attention_heads: 128, num_key_value_heads: 8, hidden_size: 16384, max_position_embeddings: 131072 } },
  { id: "mistral-7b", name: "Mistral 7B v0.3", repo: "mistralai/Mistral-7B-v0.3", parameters: 7.3e9,
    config: { model_type: "mistral", num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, hidden_size: 4096, max_position_embeddings: 32768, sliding_window: null } },
  { id: "mixtral-8x7b", name: "Mixtral 8x7B", repo: "mistralai/Mixtral-8x7B-v0.1", parameters: 46.7e9,
    config: { model_type: "mixtral", num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, hidden_size: 4096, max_position_embeddings: 32768, sliding_window: null } },
  { id: "mixtral-8x22b", name: "Mixtral 8x22B", repo: "mistralai/Mixtral-8x22B-v0.1", parameters: 141e9,
    config: { model_type: "mixtral", num_hidden_layers: 56, num_attention_heads: 48, num_key_value_heads: 8, hidden_size: 6144, max_position_embeddings: 65536, sliding_window: null } },
  { id: "qwen2.5-7b", name: "Qwen2.5 7B", repo: "Qwen/Qwen2.5-7B", parameters: 7.61e9,
    config: { model_type: "qwen2", num_hidden_layers: 28, num_attention_heads: 28, num_key_value_heads: 4, hidden_size: 3584, max_position_embeddings: 131072, sliding_window: 131072, use_sliding_window: false, max_window_layers: 28 } },
  { id: "qwen2.5-72b", name: "Qwen2.5 72B", repo: "Qwen/Qwen2.5-72B", parameters: 72.7e9,
    config: { model_type: "qwen2", num_hidden_layers: 80, num_attention_heads: 64, num_key_value_heads: 8, hidden_size: 8192, max_position_embeddings: 131072, sliding_window: 131072, use_sliding_window: false, max_window_layers: 80 } },
  { id: "qwen3-8b", name: "Qwen3 8B", repo: "Qwen/Qwen3-8B", parameters: 8.2e9,
    config: { model_type: "qwen3", num_hidden_layers: 36, num_attention_heads: 32, num_key_value_heads: 8, hidden_size: 4096, head_dim: 128, max_position_embeddings: 40960, sliding_window: null, use_sliding_window: false, max_window_layers: 36 } },
  { id: "gemma-2-9b", name: "Gemma 2 9B", repo: "google/gemma-2-9b", parameters: 9.24e9,
    config: { model_type: "gemma2", num_hidden_layers: 42, num_attention_heads: 16, num_key_value_heads: 8, hidden_size: 3584, head_dim: 256, max_position_embeddings: 8192, sliding_window: 4096 } },
  { id: "gemma-2-27b", name: "Gemma 2 27B", repo: "google/gemma-2-27b", parameters: 27.2e9,
    config: { model_type: "gemma2", num_hidden_layers: 46, num_attention_heads: 32, num_key_value_heads: 16, hidden_size: 4608, head_dim: 128, max_position_embeddings: 8192, sliding_window: 4096 } },
  { id: "phi-3-mini", name: "Phi-3 mini 4K", repo: "microsoft/Phi-3-mini-4k-instruct", parameters: 3.8e9,
    config: { model_type: "phi3", num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, hidden_size: 3072, max_position_embeddings: 4096, sliding_window: 2047 } },
  { id: "tinyllama-1.1b", name: "TinyLlama 1.1B", repo: "TinyLlama/TinyLlama-1.1B-Chat-v1.0", parameters: 1.1e9,
    config: { model_type: "llama", num_hidden_layers: 22, num_attention_heads: 32, num_key_value_heads: 4, hidden_size: 2048, max_position_embeddings: 2048 } },
  { id: "gpt2", name: "GPT-2 (124M)", repo: "openai-community/gpt2", parameters: 124e6,
    config: { model_type: "gpt2", n_layer: 12, n_head: 12, n_embd: 768, n_positions: 1024, n_ctx: 1024 } },
  { id: "deepseek-v3", name: "DeepSeek-V3", repo: "deepseek-ai/DeepSeek-V3", parameters: 671e9,
    config: { model_type: "deepseek_v3", num_hidden_layers: 61, num_attention_heads: 128, num_key_value_heads: 128, hidden_size: 7168, kv_lora_rank: 512, qk_rope_head_dim: 64, qk_nope_head_dim: 128, v_head_dim: 128, max_position_embeddings: 163840 } },
];

function build(entry: RegistryEntry): Architecture {
  return Object.freeze(
    architectureFromHfConfig(entry.config, {
      id: entry.id,
      name: entry.name,
      source: `${entry.repo} config.json (huggingface.co/${entry.repo}); parameters from the model card`,
      parameters: entry.parameters,
    }),
  );
}

export const ARCHITECTURES: Readonly<Record<string, Architecture>> = Object.freeze(
  Object.fromEntries(ENTRIES.map((e) => [e.id, build(e)])),
);

export const ARCHITECTURE_IDS: readonly string[] = Object.keys(ARCHITECTURES);

/** A registry architecture by id (case-insensitive); UNKNOWN_MODEL lists the closest ids. */
export function getArchitecture(id: string): Architecture {
  const found = typeof id === "string" ? ARCHITECTURES[id.toLowerCase()] : undefined;
  if (found) return found;
  const closest = closestIds(String(id), ARCHITECTURE_IDS);
  throw new NexusQuantError(
    "UNKNOWN_MODEL",
    `Unknown model ${JSON.stringify(id)}. Closest ids: ${closest.join(", ")}. Run \`nexusquant models\` for the full list, or pass a config.json.`,
    { id, closest },
  );
}
