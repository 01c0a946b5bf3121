/**
 * What the estimator needs to know about a model to size its KV cache and weights. Entries of the
 * registry are built from published Hugging Face `config.json` keys (see architectures.ts), so the
 * numbers here always come from a config, never from memory.
 */
export type AttentionKind = "mha" | "gqa" | "mqa" | "mla";

export interface Architecture {
  /** Lowercase registry id, e.g. `llama-3.1-70b`. */
  id: string;
  name: string;
  /** Where the numbers come from: the Hugging Face repo whose config.json they were read from. */
  source: string;
  layers: number;
  attentionHeads: number;
  /** KV heads per layer (for MLA: the config's value, which the cache does not use). */
  kvHeads: number;
  headDim: number;
  hiddenSize: number;
  attention: AttentionKind;
  /** Total parameters (all experts for MoE, since all are resident); undefined when unknown. */
  parameters?: number;
  /** Longest context the config declares (max_position_embeddings); undefined when absent. */
  maxContext?: number;
  /** Sliding-window attention: `layers` of the model attend to (and cache) at most `window` tokens. */
  slidingWindow?: { window: number; layers: number };
  /**
   * Multi-head latent attention (DeepSeek-V2/V3): each layer caches ONE vector of
   * kvLoraRank + qkRopeHeadDim values per token (the compressed latent and the shared RoPE key),
   * instead of K and V per head.
   */
  mla?: { kvLoraRank: number; qkRopeHeadDim: number };
  /** Decisions the parser made that a reader should know about (ignored keys, defaults). */
  notes: string[];
  /**
   * Things in a config.json that are probably mistakes, such as a misspelt key (`num_key_value_head`)
   * whose absence changed the result. The CLI prints them on stderr and returns them in --json.
   */
  warnings?: string[];
}

/** Values one token adds to the cache of one (full-attention) layer. */
export function cacheValuesPerTokenLayer(arch: Architecture): number {
  if (arch.mla) return arch.mla.kvLoraRank + arch.mla.qkRopeHeadDim;
  return 2 * arch.kvHeads * arch.headDim;
}

/** Layers that hold every token (the others hold at most slidingWindow.window). */
export function fullAttentionLayers(arch: Architecture): number {
  return arch.layers - (arch.slidingWindow?.layers ?? 0);
}
