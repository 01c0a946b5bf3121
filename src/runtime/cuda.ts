/**
 * The CUDA backend's building blocks on typed arrays: encode, decode, decode attention on codes (and
 * its dense FP16 reference), eviction scores and selection, device buffers/arenas for memory
 * verification, and kernel timings. Data is copied to the GPU and back on every call; these are for
 * parity tests, bench/gpu and the GPU cache that builds on them — not a fast path by themselves.
 *
 * Every function throws BACKEND_UNAVAILABLE (with the reason) when this build or machine has no
 * usable CUDA device; device allocation failures are OUT_OF_MEMORY with `details.requestedBytes`
 * and `details.freeBytes`. Nothing GPU-side here has run on a GPU yet: see docs/cuda.md.
 */
import { NexusQuantError, invalidArgument } from "../errors.js";
import { CODE_BITS, SCORER_IDS, codeBytesPerVector, type CodeBits } from "../format/index.js";
import { backendInfo } from "./backend.js";
import type { MemoryCategory } from "./memory.js";
import type { BindingModule } from "./binding.js";
import { callNative, native } from "./native.js";
import { checkBoolean, checkInt, checkKVData, checkObject, checkOneOf, checkOptionKeys, checkSeed, type KVData } from "./validate.js";

function binding(): BindingModule {
  const info = backendInfo();
  if (!info.cuda.available) {
    throw new NexusQuantError("BACKEND_UNAVAILABLE", `CUDA is not available: ${info.cuda.reason ?? "unknown reason"}`, { reason: info.cuda.reason });
  }
  return native();
}

/** Why the CUDA functions cannot run here, or undefined when they can. */
export function cudaUnavailableReason(): string | undefined {
  const info = backendInfo();
  return info.cuda.available ? undefined : (info.cuda.reason ?? "unknown reason");
}

export interface CudaSupport {
  /** encode/decode: headDim a multiple of 8 up to this. */
  maxCodecHeadDim: number;
  /** attention on codes and the FP16 reference: headDim a multiple of 8 up to this. */
  maxAttentionHeadDim: number;
  bits: CodeBits[];
  scorers: string[];
}

/** The support list of the CUDA backend (read by the tests to skip, not fail). */
export function cudaSupport(): CudaSupport {
  const s = callNative(() => binding().cudaSupport());
  return { maxCodecHeadDim: s.maxCodecHeadDim, maxAttentionHeadDim: s.maxAttentionHeadDim, bits: s.bits as CodeBits[], scorers: s.scorers.split(",") };
}

export interface CudaCodecOptions {
  headDim: number;
  bits: CodeBits;
  rotate?: boolean;
  seed?: number;
}

function codecOptions(o: CudaCodecOptions): Required<CudaCodecOptions> {
  checkObject("options", o, "{ headDim, bits }");
  checkOptionKeys("options", o, ["headDim", "bits", "rotate", "seed"]);
  // The CUDA encoder's own ceiling (one thread block per vector), below FORMAT_LIMITS.maxHeadDim.
  checkInt("options.headDim", o.headDim, { min: 8, max: 1024, maxName: "the CUDA codec's limit" });
  if (o.headDim % 8 !== 0) throw invalidArgument("options.headDim", "a multiple of 8", o.headDim);
  checkOneOf("options.bits", o.bits, CODE_BITS, "2, 3 or 4");
  const rotate = checkBoolean("options.rotate", o.rotate ?? true);
  const seed = checkSeed("options.seed", o.seed ?? 0);
  return { headDim: o.headDim, bits: o.bits, rotate, seed };
}

/** GPU encode of head vectors (f32 or FP16 bits): same codes and scales as the CPU quantize(). */
export function cudaEncode(data: KVData, options: CudaCodecOptions): { codes: Uint8Array; scales: Uint16Array } {
  const o = codecOptions(options);
  checkKVData("data", data);
  if (data.length % o.headDim !== 0) throw invalidArgument("data.length", `a multiple of headDim (${o.headDim})`, data.length);
  return callNative(() => binding().cudaEncode(data, o.headDim, o.bits, o.rotate, o.seed));
}

/** GPU decode of codes + scales into `out` (f32, or FP16 bits); `unrotate: false` stays in the rotated domain. */
export function cudaDecode<T extends Float32Array | Uint16Array>(codes: Uint8Array, scales: Uint16Array, options: CudaCodecOptions & { out: T; unrotate?: boolean }): T {
  const o = codecOptions(options);
  if (!(codes instanceof Uint8Array)) throw invalidArgument("codes", "a Uint8Array", codes);
  if (!(scales instanceof Uint16Array)) throw invalidArgument("scales", "a Uint16Array of FP16 bits", scales);
  if (codes.length !== scales.length * codeBytesPerVector(o.headDim, o.bits)) {
    throw invalidArgument("codes.length", `scales.length × ${codeBytesPerVector(o.headDim, o.bits)}`, codes.length);
  }
  const out = options.out;
  if (!(out instanceof Float32Array) && !(out instanceof Uint16Array)) throw invalidArgument("options.out", "a Float32Array or Uint16Array", out);
  if (out.length !== scales.length * o.headDim) throw invalidArgument("options.out.length", `${scales.length * o.headDim}`, out.length);
  return callNative(() => binding().cudaDecode(codes, scales, o.headDim, o.bits, o.rotate, o.seed, out, options.unrotate ?? true));
}

/** One sequence of a CUDA attention call: codes per KV head, the FP16 residual, the queries. */
export interface CudaAttentionSequence {
  /** Tokens held as codes (per KV head). */
  compressed: number;
  /** [kvHeads][compressed][headDim·keyBits/8] */
  keyCodes?: Uint8Array;
  /** [kvHeads][compressed] FP16 bits */
  keyScales?: Uint16Array;
  valueCodes?: Uint8Array;
  valueScales?: Uint16Array;
  /** [kvHeads][compressed] true positions (after eviction); omitted: slot index = position. */
  positions?: Int32Array;
  /** FP16 rows after the codes, [kvHeads][residual][headDim]. */
  residual?: number;
  residualKeys?: Uint16Array;
  residualValues?: Uint16Array;
  /** Position of residual row 0 (default: compressed). */
  firstResidualPos?: number;
  /** [queryHeads][nq][headDim], un-rotated. */
  queries: Float32Array;
  /** [nq]: query j sees positions <= queryPositions[j]. */
  queryPositions: Int32Array;
  /** In/out [kvHeads][compressed + residual]: softmax mass is added here when given (H2O scorer). */
  accumulated?: Float32Array;
}

export interface CudaAttentionOptions {
  kvHeads: number;
  queryHeads: number;
  headDim: number;
  keyBits: CodeBits;
  valueBits: CodeBits;
  /** Queries per sequence (decode: 1). */
  nq?: number;
  pageTokens?: number;
  /** The rotation seed the codes were encoded with. */
  seed?: number;
  /** Default 1/sqrt(headDim). */
  scale?: number;
  /** Tokens per split-K chunk (default: chosen from the SM count). */
  splitTokens?: number;
  sequences: CudaAttentionSequence[];
}

const posInt = (arg: string, v: unknown, min = 1): number => checkInt(arg, v, { min });

function checkLength(arg: string, a: ArrayLike<unknown> | undefined, n: number, what: string): void {
  if (a === undefined || a.length !== n) throw invalidArgument(arg, `${what} of length ${n}`, a);
}

/**
 * Decode attention on lattice codes on the GPU (split-K, online softmax, GQA, residual window).
 * Returns one Float32Array [queryHeads][nq][headDim] per sequence.
 */
export function cudaAttention(options: CudaAttentionOptions): Float32Array[] {
  if (options === null || typeof options !== "object") throw invalidArgument("options", "a CudaAttentionOptions object", options);
  const H = posInt("options.kvHeads", options.kvHeads);
  const QH = posInt("options.queryHeads", options.queryHeads);
  if (QH % H !== 0) throw invalidArgument("options.queryHeads", `a multiple of kvHeads (${H})`, QH);
  const d = posInt("options.headDim", options.headDim, 8);
  if (d % 8 !== 0 || d > 256) throw invalidArgument("options.headDim", "a multiple of 8 up to 256", d);
  if (!CODE_BITS.includes(options.keyBits)) throw invalidArgument("options.keyBits", "2, 3 or 4", options.keyBits);
  if (!CODE_BITS.includes(options.valueBits)) throw invalidArgument("options.valueBits", "2, 3 or 4", options.valueBits);
  const nq = posInt("options.nq", options.nq ?? 1);
  const pageTokens = posInt("options.pageTokens", options.pageTokens ?? 64, 8);
  if (!Array.isArray(options.sequences) || options.sequences.length === 0) throw invalidArgument("options.sequences", "a non-empty array", options.sequences);
  const kc = codeBytesPerVector(d, options.keyBits), vc = codeBytesPerVector(d, options.valueBits);
  const storesPositions = options.sequences.some((s) => s.positions !== undefined);
  const outs: Float32Array[] = [];
  const sequences = options.sequences.map((s, i) => {
    const at = `options.sequences[${i}]`;
    const n = posInt(`${at}.compressed`, s.compressed, 0);
    const r = posInt(`${at}.residual`, s.residual ?? 0, 0);
    if (n > 0) {
      checkLength(`${at}.keyCodes`, s.keyCodes, H * n * kc, "a Uint8Array");
      checkLength(`${at}.valueCodes`, s.valueCodes, H * n * vc, "a Uint8Array");
      checkLength(`${at}.keyScales`, s.keyScales, H * n, "a Uint16Array");
      checkLength(`${at}.valueScales`, s.valueScales, H * n, "a Uint16Array");
      if (storesPositions) checkLength(`${at}.positions`, s.positions, H * n, "an Int32Array (give positions for every sequence or none)");
    }
    if (r > 0) {
      checkLength(`${at}.residualKeys`, s.residualKeys, H * r * d, "a Uint16Array");
      checkLength(`${at}.residualValues`, s.residualValues, H * r * d, "a Uint16Array");
    }
    if (!(s.queries instanceof Float32Array)) throw invalidArgument(`${at}.queries`, "a Float32Array", s.queries);
    checkLength(`${at}.queries`, s.queries, QH * nq * d, "a Float32Array");
    if (!(s.queryPositions instanceof Int32Array)) throw invalidArgument(`${at}.queryPositions`, "an Int32Array", s.queryPositions);
    checkLength(`${at}.queryPositions`, s.queryPositions, nq, "an Int32Array");
    if (s.accumulated !== undefined) checkLength(`${at}.accumulated`, s.accumulated, H * (n + r), "a Float32Array");
    const out = new Float32Array(QH * nq * d);
    outs.push(out);
    return { ...s, compressed: n, residual: r, firstResidualPos: s.firstResidualPos ?? n, out };
  });
  const scale = options.scale ?? 1 / Math.sqrt(d);
  callNative(() =>
    binding().cudaAttention({
      kvHeads: H,
      queryHeads: QH,
      headDim: d,
      nq,
      keyBits: options.keyBits,
      valueBits: options.valueBits,
      pageTokens,
      seed: options.seed ?? 0,
      scale,
      splitTokens: options.splitTokens ?? 0,
      storesPositions,
      sequences,
    }),
  );
  return outs;
}

export interface CudaDenseAttentionOptions {
  batch: number;
  kvHeads: number;
  queryHeads: number;
  headDim: number;
  /** Row pitch of keys/values in tokens. */
  maxTokens: number;
  /** [batch][kvHeads][maxTokens][headDim] FP16 bits. */
  keys: Uint16Array;
  values: Uint16Array;
  /** [batch] tokens of each sequence; its query sits at the last one. */
  lengths: Int32Array;
  /** [batch][queryHeads][headDim] */
  queries: Float32Array;
  scale?: number;
  splitTokens?: number;
}

/** The plain FP16 decode-attention reference kernel. Returns [batch][queryHeads][headDim]. */
export function cudaDenseAttention(o: CudaDenseAttentionOptions): Float32Array {
  const B = posInt("options.batch", o.batch), H = posInt("options.kvHeads", o.kvHeads), QH = posInt("options.queryHeads", o.queryHeads);
  const d = posInt("options.headDim", o.headDim, 8), T = posInt("options.maxTokens", o.maxTokens);
  if (QH % H !== 0) throw invalidArgument("options.queryHeads", `a multiple of kvHeads (${H})`, QH);
  if (d % 8 !== 0 || d > 256) throw invalidArgument("options.headDim", "a multiple of 8 up to 256", d);
  checkLength("options.keys", o.keys, B * H * T * d, "a Uint16Array");
  checkLength("options.values", o.values, B * H * T * d, "a Uint16Array");
  checkLength("options.lengths", o.lengths, B, "an Int32Array");
  for (const [i, n] of o.lengths.entries()) if (n < 0 || n > T) throw invalidArgument(`options.lengths[${i}]`, `an integer in [0, ${T}]`, n);
  checkLength("options.queries", o.queries, B * QH * d, "a Float32Array");
  const out = new Float32Array(B * QH * d);
  return callNative(() => binding().cudaDenseAttention({ ...o, scale: o.scale ?? 1 / Math.sqrt(d), splitTokens: o.splitTokens ?? 0, out }));
}

/** The scorers the CUDA backend implements, by their native ids (SCORER_IDS in src/format). */
const CUDA_SCORERS = { keynorm: SCORER_IDS.keynorm, "key-key": SCORER_IDS["key-key"], observed: SCORER_IDS.observed } as const;
export type CudaScorerName = keyof typeof CUDA_SCORERS;

export interface CudaScoreOptions {
  scorer: CudaScorerName;
  kvHeads: number;
  tokens: number;
  headDim: number;
  /** [kvHeads][tokens][headDim], original (un-rotated) domain. */
  keys: Float32Array;
  /** observed: [queryHeads][window][headDim] */
  queries?: Float32Array;
  queryHeads?: number;
  window?: number;
  pool?: number;
}

/** Eviction scores [kvHeads][tokens] on the GPU (higher = keep), as native/cpu/scoring.h. */
export function cudaScore(o: CudaScoreOptions): Float32Array {
  if (!(o.scorer in CUDA_SCORERS)) throw invalidArgument("options.scorer", Object.keys(CUDA_SCORERS).join(", "), o.scorer);
  const H = posInt("options.kvHeads", o.kvHeads), T = posInt("options.tokens", o.tokens), d = posInt("options.headDim", o.headDim);
  checkLength("options.keys", o.keys, H * T * d, "a Float32Array");
  const window = posInt("options.window", o.window ?? 32);
  const queryHeads = posInt("options.queryHeads", o.queryHeads ?? H);
  if (o.scorer === "observed") {
    if (queryHeads % H !== 0) throw invalidArgument("options.queryHeads", `a multiple of kvHeads (${H})`, queryHeads);
    checkLength("options.queries", o.queries, queryHeads * window * d, "a Float32Array");
  }
  return callNative(() =>
    binding().cudaScore({ scorer: CUDA_SCORERS[o.scorer], kvHeads: H, tokens: T, headDim: d, keys: o.keys, queries: o.queries, queryHeads, window, pool: o.pool ?? 7 }),
  );
}

export interface CudaSelectOptions {
  kvHeads: number;
  tokens: number;
  target: number;
  sinkTokens: number;
  recentWindow: number;
  scores: Float32Array;
  positions: Int32Array;
}

/** Kept token indices [kvHeads][target], ascending per head, exactly as the CPU cache selects them. */
export function cudaSelect(o: CudaSelectOptions): Uint32Array {
  const H = posInt("options.kvHeads", o.kvHeads), T = posInt("options.tokens", o.tokens);
  const target = posInt("options.target", o.target, 0);
  if (target > T) throw invalidArgument("options.target", `an integer <= tokens (${T})`, target);
  checkLength("options.scores", o.scores, H * T, "a Float32Array");
  checkLength("options.positions", o.positions, H * T, "an Int32Array");
  return callNative(() =>
    binding().cudaSelect({ kvHeads: H, tokens: T, target, sinkTokens: posInt("options.sinkTokens", o.sinkTokens, 0), recentWindow: posInt("options.recentWindow", o.recentWindow, 0), scores: o.scores, positions: o.positions }),
  );
}

export type CudaBenchKind = "copy" | "encode" | "decode" | "attention";
export interface CudaBenchResult {
  ms: number[];
  medianMs: number;
  bytesRead: number;
  bytesWritten: number;
  /** (bytesRead + bytesWritten) / median time, in GB/s (1e9 bytes). */
  gbPerSecond: number;
}

/** Kernel timings (CUDA events per repetition, rotating input buffers); options per kind in bench/gpu/driver.mjs. */
export function cudaBench(kind: CudaBenchKind, options: Record<string, number | boolean>): CudaBenchResult {
  const r = callNative(() => binding().cudaBench(kind, options));
  const sorted = [...r.ms].sort((a, b) => a - b);
  const medianMs = sorted.length === 0 ? NaN : sorted[Math.floor(sorted.length / 2)]!;
  return { ...r, medianMs, gbPerSecond: (r.bytesRead + r.bytesWritten) / (medianMs * 1e6) };
}

/** cudaMemGetInfo on device 0 (after a probe kernel). */
export function cudaMemGetInfo(): { freeBytes: number; totalBytes: number; usedBytes: number } {
  const m = callNative(() => binding().deviceMemoryInfo(0));
  return { ...m, usedBytes: m.totalBytes - m.freeBytes };
}

/** Base of the device memory handles: one dispose(), guarded once. */
abstract class DeviceHandle {
  #handle: object | undefined;
  protected constructor(handle: object) {
    this.#handle = handle;
  }
  protected get handle(): object {
    if (!this.#handle) throw new NexusQuantError("DISPOSED", `${this.constructor.name} was disposed`);
    return this.#handle;
  }
  protected abstract release(handle: object): void;
  get disposed(): boolean {
    return this.#handle === undefined;
  }
  dispose(): void {
    if (!this.#handle) return;
    this.release(this.#handle);
    this.#handle = undefined;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** One cudaMalloc through the accounting allocator (Device counters, given category). */
export class CudaDeviceBuffer extends DeviceHandle {
  readonly bytes: number;
  constructor(bytes: number, category: MemoryCategory, fillByte?: number) {
    posInt("bytes", bytes);
    super(callNative(() => binding().cudaBufferCreate(bytes, category, fillByte)));
    this.bytes = bytes;
  }
  protected release(h: object): void {
    binding().cudaBufferDispose(h);
  }
}

/** One cudaMalloc carved into pieces (pages): carved bytes count under their category, the rest as scratch. */
export class CudaDeviceArena extends DeviceHandle {
  readonly capacity: number;
  constructor(capacityBytes: number) {
    posInt("capacityBytes", capacityBytes);
    super(callNative(() => binding().cudaArenaCreate(capacityBytes)));
    this.capacity = capacityBytes;
  }
  /** Carves `count` pieces of `bytes` (16-byte aligned); OUT_OF_MEMORY when the arena is full. */
  carve(bytes: number, category: MemoryCategory, count = 1): number {
    posInt("bytes", bytes);
    posInt("count", count, 0);
    return callNative(() => binding().cudaArenaCarve(this.handle, bytes, category, count));
  }
  protected release(h: object): void {
    binding().cudaArenaDispose(h);
  }
}
