/**
 * Peak bytes the CPU backend needs to fill and compress a cache one (sequence, layer) at a time, as
 * verifyCompression does: the finished layout (src/format compressedLayout) plus the working set of
 * the layer being compressed. Known before any allocation, so a request that cannot fit is refused
 * in milliseconds instead of running into the OOM killer. It mirrors native/cpu/kv_cache.cc:
 *   - the FP16 staging of one layer grows by doubling from 64 tokens (growResidual), and holds the old
 *     and the new buffer while it grows;
 *   - compress() then allocates scores and positions (int32/f32 per held token per head), the
 *     residual's codes and scales, one f32 row buffer of the layer per worker thread, and the new pages;
 *   - the caller's f32 chunk (keys and values) of at most `chunkBytes`, twice over while the next is made.
 * test/runtime/working-set.test.ts checks it against the allocator's measured peak.
 */
import { FP16_BYTES, codeBytesPerVector, compressedLayout, type CompressionSpec } from "../format/index.js";

export interface WorkingSetShape {
  layers: number;
  kvHeads: number;
  headDim: number;
  tokens: number;
  batch: number;
}

/** f32 bytes of one append chunk in verifyCompression (keys or values). */
export const VERIFY_CHUNK_BYTES = 64 << 20;

/** Tokens per append chunk: at most VERIFY_CHUNK_BYTES of f32 per array. */
export function verifyChunkTokens(kvHeads: number, headDim: number, tokens: number): number {
  return Math.max(1, Math.min(tokens, Math.floor(VERIFY_CHUNK_BYTES / (kvHeads * headDim * 4))));
}

/** Capacity the staging buffer reaches for `tokens` (64, doubled until it holds them). */
function stagingCapacity(tokens: number): number {
  let cap = 64;
  while (cap < tokens) cap *= 2;
  return cap;
}

export interface WorkingSet {
  /** The compressed cache once every layer is done (compressedLayout's total). */
  layoutBytes: number;
  /** Transient native bytes (accounting allocator) while one layer is staged and compressed. */
  transientBytes: number;
  /** The caller's f32 input chunks (JS memory, outside the allocator). */
  inputBytes: number;
  /** layoutBytes + transientBytes + inputBytes. */
  totalBytes: number;
}

/**
 * Scratch of one (sequence, layer) compress() over `tokens` held tokens on the CPU backend: scores,
 * positions and kept slots per head, the residual's codes and scales, and an f32 row buffer and key
 * buffer per worker thread (native/cpu/cpu_store_steps.cc).
 */
export function compressScratchBytes(kvHeads: number, headDim: number, tokens: number, spec: CompressionSpec, threads: number): number {
  const workers = Math.max(1, Math.min(threads, 2 * kvHeads));
  const perToken = codeBytesPerVector(headDim, spec.keyBits) + codeBytesPerVector(headDim, spec.valueBits) + 2 * 2; // codes + scales
  return kvHeads * tokens * (4 + 4 + 4) /* scores, positions, kept */ + kvHeads * tokens * perToken + workers * tokens * headDim * 4 * 2 /* rows, keys */;
}

/** Peak bytes of filling and compressing a cache of this shape layer by layer; `threads`: native workers. */
export function verifyWorkingSet(shape: WorkingSetShape, spec: CompressionSpec, threads: number): WorkingSet {
  const { kvHeads: H, headDim: d, tokens: T } = shape;
  const layout = compressedLayout(shape, spec);
  const fp16Row = 2 * H * d * FP16_BYTES; // K and V of one token, all heads
  const cap = stagingCapacity(T);
  const growing = (cap + cap / 2) * fp16Row;
  const compressing = cap * fp16Row + compressScratchBytes(H, d, T, spec, threads);
  const chunk = verifyChunkTokens(H, d, T) * H * d * 4 * 2 /* keys and values */ * 2; /* the next one while the last awaits GC */
  const transientBytes = Math.max(growing, compressing);
  return { layoutBytes: layout.bytes.total, transientBytes, inputBytes: chunk, totalBytes: layout.bytes.total + transientBytes + chunk };
}

/**
 * The largest context (tokens per sequence) whose working set fits in `budget` bytes, or 0 when not
 * even one token fits. The working set grows with the context, so a binary search finds it.
 */
export function largestFittingContext(shape: Omit<WorkingSetShape, "tokens">, spec: CompressionSpec, threads: number, budget: number, upper: number): number {
  const fits = (tokens: number) => verifyWorkingSet({ ...shape, tokens }, spec, threads).totalBytes <= budget;
  if (!fits(1)) return 0;
  let lo = 1;
  let hi = upper;
  if (fits(hi)) return hi;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}
