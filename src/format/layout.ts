import { invalidArgument } from "../errors.js";
import { checkInt, checkObject, checkOptionKeys } from "../validate.js";
import { FORMAT_LIMITS } from "./limits.js";
import type { CodeBits, CompressionSpec, SpecBits } from "./spec.js";
import { validateSpec } from "./spec.js";

/**
 * The one definition of the compressed byte layout. The native allocator, the CUDA backend and the
 * estimator all size memory with these functions (kernels/nq_format.h mirrors them in C++;
 * test/format/native-agreement.test.ts asserts they agree byte for byte), so a ratio printed from here
 * is the ratio of what is really allocated.
 *
 * Storage of one (sequence, layer):
 *   pages of `pageTokens` tokens, each page one allocation laid out as
 *     [header 16 B][K codes H·P·kc][V codes H·P·vc][K scales H·P·2][V scales H·P·2][positions H·P·4]?
 *   (H = kvHeads, P = pageTokens, kc = headDim·keyBits/8, vc = headDim·valueBits/8; positions only
 *   when the spec evicts, since without eviction a slot's position is its index)
 *   plus an FP16 residual buffer for K and V of the tokens appended since the last compression, which
 *   grows with them (residualSlots: powers of two up to `residualWindow`, as far as the store stays
 *   within the FP16 bytes of its tokens) and is empty right after a compression, so a short prompt
 *   does not carry a whole empty window; except that a store too short for a page to pay (pagingPays)
 *   keeps its tokens there, in exactly their slots, instead.
 */
export const PAGE_HEADER_BYTES = 16;
export const SCALE_BYTES = 2; // one FP16 scale per head vector
export const POSITION_BYTES = 4; // int32 token position per kept slot per KV head
export const FP16_BYTES = 2;
/** A standalone QuantizedTensor carries this fixed header (see docs/format.md). */
export const QUANTIZED_TENSOR_HEADER_BYTES = 32;
/** Elements per lattice group; a group's code takes `bits` bytes. */
export const GROUP_SIZE = 8;

/** The page header: four uint32 fields at these byte offsets (format::PageHeader). */
export const PAGE_HEADER_FIELDS = Object.freeze({ slotsUsed: 0, layer: 4, sequence: 8, index: 12 });

/**
 * The standalone QuantizedTensor header (format::QuantizedTensorHeader, docs/format.md): magic,
 * version and the byte offset of each field; scales follow the header, then the codes.
 */
export const QUANTIZED_TENSOR_HEADER = Object.freeze({
  magic: "NQQT",
  version: 1,
  versionOffset: 4,
  bitsOffset: 6,
  flagsOffset: 7,
  headDimOffset: 8,
  seedOffset: 12,
  vectorsOffset: 16,
});

/**
 * A serialized CompressedKVCache starts with this header (format::SerializedCacheHeader): magic,
 * version and the options the cache was created with; the native reader returns those options.
 * `transformVersion`: a cache coded with a transform profile, which records the tables' id after the
 * header (docs/transform.md). Offsets of the fields a reader needs before loading (uint32 but the bits, uint8).
 */
export const SERIALIZED_CACHE_HEADER = Object.freeze({
  magic: "NQKV",
  version: 1,
  transformVersion: 2,
  bytes: 84,
  layersOffset: 12,
  kvHeadsOffset: 16,
  headDimOffset: 20,
  keyBitsOffset: 24,
  valueBitsOffset: 25,
});

/**
 * The encoder's scale per vector is ENCODER_SCALE_FACTORS[bits] × the RMS of the rotated vector,
 * rounded to FP16 (kernels/nq_scale.h; tuned in docs/format.md). Decoders need only the stored scale.
 */
export const ENCODER_SCALE_FACTORS: Readonly<Record<CodeBits, number>> = Object.freeze({ 2: 0.95, 3: 1.05, 4: 1.15 });

export interface CacheShape {
  layers: number;
  kvHeads: number;
  headDim: number;
  /** Tokens per sequence: one number for every sequence of the batch, or one entry per sequence. */
  tokens: number | readonly number[];
  /** Sequences; defaults to tokens.length when tokens is an array, else 1. */
  batch?: number;
}

export interface LayoutBytes {
  codes: number;
  scales: number;
  positions: number;
  residual: number;
  headers: number;
  /** Per held token and KV head, the scorer's score (scoreBytesPerSlot), kept beside the pages. */
  scores: number;
  /** A calibrated transform's tables (transformTableBytes), held once per cache; 0 without a profile. */
  transform: number;
  total: number;
}

export interface CompressedLayout {
  bytes: LayoutBytes;
  /** What an FP16 cache of the same shape holds: batch · layers · 2 · kvHeads · tokens · headDim · 2. */
  baselineBytes: number;
  /** baselineBytes / bytes.total. */
  ratio: number;
  /** Kept tokens per sequence after eviction. */
  keptTokens: number[];
  /** Pages per sequence and layer (0 for a sequence kept in FP16: too short for paging to pay). */
  pagesPerLayer: number[];
  /** Tokens per sequence and layer kept in the FP16 residual after compression (pagingPays), else 0. */
  fp16Tokens: number[];
  pageBytes: number;
}

/** Bytes of one head vector's codes. headDim must be a multiple of 8. */
export function codeBytesPerVector(headDim: number, bits: SpecBits): number {
  return (headDim / GROUP_SIZE) * bits;
}

/** Exact bytes of a standalone QuantizedTensor: header + codes + one FP16 scale per vector. */
export function quantizedTensorBytes(vectors: number, headDim: number, bits: CodeBits): number {
  return QUANTIZED_TENSOR_HEADER_BYTES + vectors * (codeBytesPerVector(headDim, bits) + SCALE_BYTES);
}

/**
 * Tokens a sequence keeps after eviction: the sinks and the recent window always, and of the rest
 * (the evictable tokens) all but floor(evictable · evictFraction).
 */
export function keptTokenCount(tokens: number, spec: Pick<CompressionSpec, "evictFraction" | "sinkTokens" | "recentWindow">): number {
  if (spec.evictFraction === 0) return tokens;
  const protectedTokens = Math.min(tokens, spec.sinkTokens + spec.recentWindow);
  const evictable = tokens - protectedTokens;
  return tokens - Math.floor(evictable * spec.evictFraction);
}

export function storesPositions(spec: Pick<CompressionSpec, "evictFraction">): boolean {
  return spec.evictFraction > 0;
}

/**
 * Bytes of one held token's score per KV head, kept beside the pages when the scorer keeps scores and
 * the spec evicts (nothing else reads them): 2 (FP16) for "reconstruct", the most attention a token
 * received; 4 (f32) for "accumulated", the summed attention mass; 0 for the scorers that score at
 * compress time. Same rule as format::scoreBytesPerSlot.
 */
export function scoreBytesPerSlot(spec: Pick<CompressionSpec, "evictFraction" | "scorer">): number {
  if (!storesPositions(spec)) return 0;
  return spec.scorer === "reconstruct" ? 2 : spec.scorer === "accumulated" ? 4 : 0;
}

/** Bytes of one storage page (all KV heads of one layer, `pageTokens` token slots). */
export function pageBytes(kvHeads: number, headDim: number, spec: CompressionSpec): number {
  const slots = kvHeads * spec.pageTokens;
  const perSlot =
    codeBytesPerVector(headDim, spec.keyBits) +
    codeBytesPerVector(headDim, spec.valueBits) +
    2 * SCALE_BYTES +
    (storesPositions(spec) ? POSITION_BYTES : 0);
  return PAGE_HEADER_BYTES + slots * perSlot;
}

/**
 * Token slots of the FP16 residual once `tokens` have been appended since the last compression: the
 * next power of two, capped at `residualWindow` (0 when nothing waits). Appends grow it in
 * O(log window) copies and it never holds more than twice the tokens waiting in it.
 */
export function residualCapacity(tokens: number, spec: Pick<CompressionSpec, "residualWindow">): number {
  const window = spec.residualWindow;
  if (tokens <= 0 || window === 0) return 0;
  let cap = 1;
  while (cap < tokens && cap < window) cap *= 2;
  return Math.min(cap, window);
}

/**
 * FP16 residual buffer (K and V) of one sequence and layer: by default its largest size (the whole
 * window); with `tokens`, its size once that many tokens were appended since the last compression.
 */
export function residualBytes(kvHeads: number, headDim: number, spec: CompressionSpec, tokens = spec.residualWindow): number {
  return 2 * kvHeads * residualCapacity(tokens, spec) * headDim * FP16_BYTES;
}

/**
 * The one rule of what a compressed (sequence, layer) store may hold: `pages` pages plus
 * `residualSlots` FP16 residual slots cost no more than its `tokens` appended tokens in FP16 (K and V,
 * every KV head). It decides when a short store goes onto pages (pagingPays) and how far the residual
 * of a compressed store grows (residualSlots), so that a cache holds no more than FP16 from its first
 * compress() on: ratio >= 1. Same rule as format::fitsFp16.
 */
export function fitsFp16(kvHeads: number, headDim: number, spec: CompressionSpec, pages: number, residualSlots: number, tokens: number): boolean {
  const row = fp16BytesPerTokenLayer(kvHeads, headDim);
  return pages * pageBytes(kvHeads, headDim, spec) + residualSlots * row <= tokens * row;
}

/**
 * Whether compress() puts `tokens` tokens of a page-less (sequence, layer) store on pages: only when
 * the pages they need fit in the tokens' FP16 bytes (fitsFp16). Below that (a few tokens against one
 * page of `pageTokens` slots) the store keeps them in its FP16 residual, trimmed to their count.
 * Stores that already have pages, or must evict, page as always. Same rule as format::pagingPays.
 */
export function pagingPays(kvHeads: number, headDim: number, spec: CompressionSpec, tokens: number): boolean {
  return fitsFp16(kvHeads, headDim, spec, Math.ceil(tokens / spec.pageTokens), 0, tokens);
}

/**
 * FP16 residual slots of a store after its first compress(), holding `pages` pages, with `waiting`
 * tokens in its residual and `tokens` appended in all: the growth rule (residualCapacity) as far as
 * fitsFp16 allows, never fewer than `waiting`. A store without pages holds exactly its tokens; a paged
 * one grows by powers of two once its pages leave room. Same rule as format::residualSlots.
 */
export function residualSlots(kvHeads: number, headDim: number, spec: CompressionSpec, pages: number, waiting: number, tokens: number): number {
  const row = fp16BytesPerTokenLayer(kvHeads, headDim);
  const affordable = Math.max(0, Math.floor((tokens * row - pages * pageBytes(kvHeads, headDim, spec)) / row));
  return Math.max(waiting, Math.min(residualCapacity(waiting, spec), affordable));
}

const SHAPE_KEYS = ["layers", "kvHeads", "headDim", "tokens", "batch"] as const;

/** Checks a CacheShape against the format's limits; returns the batch and each sequence's tokens. */
export function validateShape(shape: CacheShape): { batch: number; tokens: number[] } {
  checkObject("shape", shape, "a CacheShape object");
  checkOptionKeys("shape", shape, SHAPE_KEYS);
  const L = FORMAT_LIMITS;
  checkInt("shape.layers", shape.layers, { min: 1, max: L.maxLayers, maxName: "FORMAT_LIMITS.maxLayers" });
  checkInt("shape.kvHeads", shape.kvHeads, { min: 1, max: L.maxHeads, maxName: "FORMAT_LIMITS.maxHeads" });
  checkInt("shape.headDim", shape.headDim, { min: GROUP_SIZE, max: L.maxHeadDim, maxName: "FORMAT_LIMITS.maxHeadDim" });
  if (shape.headDim % GROUP_SIZE !== 0) throw invalidArgument("shape.headDim", "a multiple of 8", shape.headDim);
  const tokenRange = { min: 0, max: L.maxSequenceTokens, maxName: "positions are int32" };
  let tokens: number[];
  if (Array.isArray(shape.tokens)) {
    if (shape.tokens.length === 0) throw invalidArgument("shape.tokens", "a non-empty array", shape.tokens);
    if (shape.batch !== undefined && shape.batch !== shape.tokens.length) {
      throw invalidArgument("shape.batch", `${shape.tokens.length} (the length of shape.tokens)`, shape.batch);
    }
    tokens = shape.tokens.map((t, i) => checkInt(`shape.tokens[${i}]`, t, tokenRange));
  } else {
    const batch = checkInt("shape.batch", shape.batch ?? 1, { min: 1, max: L.maxBatch, maxName: "FORMAT_LIMITS.maxBatch" });
    tokens = new Array<number>(batch).fill(checkInt("shape.tokens", shape.tokens, tokenRange));
  }
  return { batch: tokens.length, tokens };
}

/** Exact bytes of every component of a compressed cache of this shape after compression. */
/**
 * Bytes of a cache's calibrated transform tables (native/cache/transform_tables.h bytesFor): for each
 * (layer, K|V, KV head) the mean (f32 d), matrix (f32 d²), band RMS and band scales (f32 d/8 each),
 * code offsets (u16 d/8), rates (u8 d/8) and a flag byte. Held once per cache, whatever its length.
 */
export function transformTableBytes(layers: number, kvHeads: number, headDim: number): number {
  const g = headDim / GROUP_SIZE;
  return layers * 2 * kvHeads * (4 * headDim + 4 * headDim * headDim + 4 * g + 4 * g + 2 * g + g + 1);
}

/** Options of compressedLayout beyond the spec. */
export interface LayoutOptions {
  /** The cache codes with a calibrated transform profile: its tables are counted (transformTableBytes). */
  transform?: boolean;
}

export function compressedLayout(shape: CacheShape, spec: CompressionSpec, options: LayoutOptions = {}): CompressedLayout {
  const s = validateSpec(spec);
  const { tokens } = validateShape(shape);
  const { layers, kvHeads, headDim } = shape;
  const P = s.pageTokens;
  const slotsPerPage = kvHeads * P;
  const keptTokens = tokens.map((t) => keptTokenCount(t, s));
  // A sequence that evicts nothing and is too short for paging to pay stays in FP16 (pagingPays).
  const fp16Tokens = keptTokens.map((k, i) => (k === tokens[i] && !pagingPays(kvHeads, headDim, s, k) ? k : 0));
  const pagesPerLayer = keptTokens.map((k, i) => (fp16Tokens[i]! > 0 ? 0 : Math.ceil(k / P)));
  const pages = layers * pagesPerLayer.reduce((a, b) => a + b, 0);
  const slots = pages * slotsPerPage;
  const bytes: LayoutBytes = {
    codes: slots * (codeBytesPerVector(headDim, s.keyBits) + codeBytesPerVector(headDim, s.valueBits)),
    scales: slots * 2 * SCALE_BYTES,
    positions: storesPositions(s) ? slots * POSITION_BYTES : 0,
    // Right after compression the residual holds only the tokens kept in FP16, in exactly their
    // slots; otherwise it is empty (it grows with later appends).
    residual: layers * fp16Tokens.reduce((a, t) => a + fp16BytesPerTokenLayer(kvHeads, headDim) * t, 0),
    headers: pages * PAGE_HEADER_BYTES,
    // Exactly the held tokens' scores, every KV head (trimmed to them at the end of compress()).
    scores: layers * kvHeads * scoreBytesPerSlot(s) * keptTokens.reduce((a, b) => a + b, 0),
    transform: options.transform === true ? transformTableBytes(layers, kvHeads, headDim) : 0,
    total: 0,
  };
  bytes.total = bytes.codes + bytes.scales + bytes.positions + bytes.residual + bytes.headers + bytes.scores + bytes.transform;
  const baselineBytes = fp16CacheBytes(shape);
  return {
    bytes,
    baselineBytes,
    ratio: bytes.total === 0 ? 1 : baselineBytes / bytes.total,
    keptTokens,
    pagesPerLayer,
    fp16Tokens,
    pageBytes: pageBytes(kvHeads, headDim, s),
  };
}

/** Bytes of an uncompressed FP16 cache: batch · layers · 2 (K,V) · kvHeads · tokens · headDim · 2. */
export function fp16CacheBytes(shape: CacheShape): number {
  const { tokens } = validateShape(shape);
  const total = tokens.reduce((a, b) => a + b, 0);
  return shape.layers * 2 * shape.kvHeads * total * shape.headDim * FP16_BYTES;
}

/**
 * Long-context bytes per token of one layer (all KV heads), the limit of total/tokens as the context
 * grows: sinks, the recent window, page rounding and the residual buffer vanish, page headers are
 * spread over their slots. Used for per-token estimates and preset ratios; exact per-context figures
 * come from compressedLayout.
 */
export function asymptoticBytesPerTokenLayer(kvHeads: number, headDim: number, spec: CompressionSpec): number {
  const s = validateSpec(spec);
  return (pageBytes(kvHeads, headDim, s) / s.pageTokens + kvHeads * scoreBytesPerSlot(s)) * (1 - s.evictFraction);
}

/** FP16 bytes per token of one layer: 2 · kvHeads · headDim · 2. */
export function fp16BytesPerTokenLayer(kvHeads: number, headDim: number): number {
  return 2 * kvHeads * headDim * FP16_BYTES;
}
