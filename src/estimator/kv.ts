import { NexusQuantError, invalidArgument } from "../errors.js";
import { asymptoticBytesPerTokenLayer, compressedLayout, type LayoutBytes } from "../format/index.js";
import { cacheValuesPerTokenLayer, fullAttentionLayers, type Architecture } from "./architecture.js";
import { NUMBER_FORMAT_BITS, resolveNumberFormat, resolvePrecision, type NumberFormat, type Precision } from "./precision.js";
import { byteAmount, BYTES_PER_GIB, memoryAmountBytes, type ByteAmount, type MemoryAmount } from "./units.js";

/** Cache-sizing options used by capacity planning (tensor parallelism splits KV heads). */
export interface KvShardOptions {
  /** KV heads this cache holds (one GPU's share); defaults to all of the architecture's. */
  kvHeads?: number;
}

function checkArch(arch: Architecture): Architecture {
  if (arch === null || typeof arch !== "object" || !Number.isSafeInteger(arch.layers)) {
    throw invalidArgument("arch", "an Architecture (from ARCHITECTURES or architectureFromHfConfig)", arch);
  }
  return arch;
}

function checkTokens(tokens: number, arg = "tokens"): number {
  if (typeof tokens !== "number" || !Number.isSafeInteger(tokens) || tokens < 0) throw invalidArgument(arg, "an integer >= 0", tokens);
  return tokens;
}

function unsupportedMla(arch: Architecture, preset: string): NexusQuantError {
  return new NexusQuantError(
    "UNSUPPORTED",
    `Preset ${JSON.stringify(preset)} cannot size ${arch.id}: its MLA cache holds one latent vector per token, and the compressed format describes K and V head vectors. Use a number format (fp16, fp8, ...) for this model.`,
    { arch: arch.id, preset },
  );
}

/** Bytes one token adds to one full-attention layer in a plain number format (whole bytes per layer). */
function formatBytesPerTokenLayer(arch: Architecture, bits: number, kvHeads: number): number {
  const values = arch.mla ? cacheValuesPerTokenLayer(arch) : 2 * kvHeads * arch.headDim;
  return Math.ceil((values * bits) / 8);
}

/**
 * KV-cache bytes per token: `layers × 2 × kvHeads × headDim × bytes` (MLA: `layers × (kv_lora_rank +
 * qk_rope_head_dim) × bytes`). Every layer counts, sliding or not: this is the cost of a token while
 * the context is within the window; kvCacheForContext applies the windows.
 *
 * For a preset the figure is the long-context (asymptotic) bytes per token from the format's
 * asymptoticBytesPerTokenLayer, and may be fractional; exact per-context bytes come from
 * kvCacheForContext.
 */
export function kvBytesPerToken(arch: Architecture, precision: Precision = "fp16"): number {
  checkArch(arch);
  const p = resolvePrecision(precision);
  if (p.kind === "format") return arch.layers * formatBytesPerTokenLayer(arch, p.bits, arch.kvHeads);
  if (arch.mla) throw unsupportedMla(arch, p.name);
  return arch.layers * asymptoticBytesPerTokenLayer(arch.kvHeads, arch.headDim, p.preset.spec);
}

/** Exact integer bytes of one sequence's cache at `tokens` tokens. */
export function kvCacheBytes(arch: Architecture, tokens: number, precision: Precision = "fp16", shard: KvShardOptions = {}): number {
  checkArch(arch);
  checkTokens(tokens);
  const p = resolvePrecision(precision);
  if (p.kind === "format") {
    const perLayerToken = formatBytesPerTokenLayer(arch, p.bits, shard.kvHeads ?? arch.kvHeads);
    const slidingTokens = Math.min(tokens, arch.slidingWindow?.window ?? tokens);
    return perLayerToken * (fullAttentionLayers(arch) * tokens + (arch.slidingWindow?.layers ?? 0) * slidingTokens);
  }
  return presetCacheLayout(arch, tokens, p.name, shard).bytes.total;
}

/** A compressed cache as src/format lays it out, summed over full-attention and sliding layers. */
export interface PresetCacheLayout {
  preset: string;
  bytes: LayoutBytes;
  /** FP16 bytes of the same cache (sliding layers at their window). */
  baselineBytes: number;
  /** baselineBytes / bytes.total, as compressedLayout defines it. */
  ratio: number;
}

/**
 * The exact compressed layout of one sequence's cache under a preset, from compressedLayout: one
 * layout for the full-attention layers at `tokens`, one for the sliding layers at min(tokens, window).
 */
export function presetCacheLayout(arch: Architecture, tokens: number, preset: string, shard: KvShardOptions = {}): PresetCacheLayout {
  checkArch(arch);
  checkTokens(tokens);
  const p = resolvePrecision(preset, "preset");
  if (p.kind !== "preset") throw invalidArgument("preset", "a compression preset name", preset);
  if (arch.mla) throw unsupportedMla(arch, p.name);
  const kvHeads = shard.kvHeads ?? arch.kvHeads;
  const groups: [number, number][] = [
    [fullAttentionLayers(arch), tokens],
    [arch.slidingWindow?.layers ?? 0, Math.min(tokens, arch.slidingWindow?.window ?? tokens)],
  ];
  const bytes: LayoutBytes = { codes: 0, scales: 0, positions: 0, residual: 0, headers: 0, scores: 0, transform: 0, total: 0 };
  let baselineBytes = 0;
  for (const [layers, groupTokens] of groups) {
    if (layers === 0) continue;
    const layout = compressedLayout({ layers, kvHeads, headDim: arch.headDim, tokens: groupTokens }, p.preset.spec);
    for (const k of Object.keys(bytes) as (keyof LayoutBytes)[]) bytes[k] += layout.bytes[k];
    baselineBytes += layout.baselineBytes;
  }
  return { preset: p.name, bytes, baselineBytes, ratio: bytes.total === 0 ? 1 : baselineBytes / bytes.total };
}

/** The cache of one sequence of `tokens` tokens, in bytes, GB (1e9) and GiB (2^30). */
export function kvCacheForContext(arch: Architecture, tokens: number, precision: Precision = "fp16"): ByteAmount {
  return byteAmount(kvCacheBytes(arch, tokens, precision));
}

/** Beyond this the search stops: 2^50 tokens is far past any model and still exact in a double. */
const MAX_SEARCH_TOKENS = 2 ** 50;

/**
 * The longest context whose cache fits in `memory`, found by bisection on the exact byte count (the
 * cache grows monotonically with tokens, also for presets). Infinity when every layer slides, since
 * the cache then stops growing.
 *
 * A bare number is GiB (2^30 bytes), as in the published function this one is named after (so
 * `maxContextForMemory(llama70b, 20, "bf16")` is 65,536); pass `{ gb }`, `{ gib }` or `{ bytes }`
 * to be explicit. 0 when not even an empty cache fits (a preset's FP16 residual buffer is allocated
 * with the sequence).
 */
export function maxContextForMemory(arch: Architecture, memory: number | MemoryAmount, precision: Precision = "fp16", shard: KvShardOptions = {}): number {
  checkArch(arch);
  const budget = typeof memory === "number" ? Math.floor(memory * BYTES_PER_GIB) : memoryAmountBytes(memory);
  if (typeof budget !== "number" || !Number.isFinite(budget) || budget < 0) {
    throw invalidArgument("memory", "a non-negative number of GiB or { bytes | gb | gib }", memory);
  }
  const allSliding = arch.slidingWindow && arch.slidingWindow.layers === arch.layers ? arch.slidingWindow.window : undefined;
  return Math.max(0, maxTokensWithin(budget, (t) => kvCacheBytes(arch, t, precision, shard), allSliding));
}

/** Largest t with bytesAt(t) <= budget (bytesAt non-decreasing); -1 when even 0 tokens do not fit. */
export function maxTokensWithin(budget: number, bytesAt: (tokens: number) => number, boundedAfter?: number): number {
  if (bytesAt(0) > budget) return -1;
  if (boundedAfter !== undefined && bytesAt(boundedAfter) <= budget) return Number.POSITIVE_INFINITY;
  let lo = 0; // fits
  let hi = 1;
  while (bytesAt(hi) <= budget) {
    lo = hi;
    hi *= 2;
    if (hi > MAX_SEARCH_TOKENS) return lo;
  }
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (bytesAt(mid) <= budget) lo = mid;
    else hi = mid;
  }
  return lo;
}

/**
 * Memory of the weights: parameters × bits / 8 (MoE: every expert, since all are resident). No
 * quantization scales are added for int8/int4, as in the published figures this is checked against.
 */
export function weightMemory(arch: Architecture, precision: NumberFormat = "bf16"): ByteAmount {
  checkArch(arch);
  const format = resolveNumberFormat(precision, "precision");
  if (arch.parameters === undefined) {
    throw new NexusQuantError("CONFIG_ERROR", `The parameter count of ${arch.id} is unknown (config.json does not state it); set arch.parameters.`, { key: "parameters" });
  }
  return byteAmount(Math.ceil((arch.parameters * NUMBER_FORMAT_BITS[format]) / 8));
}
