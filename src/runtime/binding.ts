/**
 * @internal The native module's whole surface, declared by hand in one place (as node-llama-cpp's
 * AddonTypes.ts does) so that every call site is typed without casts. One section per binding file
 * in native/binding/; a function added there is added here. Stripped from the published types
 * (tsconfig stripInternal).
 */
import type { CodeBits, CompressionSpec } from "../format/index.js";
import type { BackendInfo, BackendName } from "./backend.js";
import type { CacheTransformArrays } from "../transform/cache-arrays.js";
import type { KVData } from "./validate.js";

/** @internal A memory snapshot from the accounting allocator. */
export interface NativeMemorySnapshot {
  byCategory: Record<string, number>;
  totalBytes: number;
  peakBytes: number;
  allocations: number;
}

/** @internal native/binding/backend_binding.cc and memory: backend, memory accounting, layout mirror. */
export interface BackendBinding {
  /** BackendInfo without `auto`, which backend.ts derives. */
  backendInfo(): Omit<BackendInfo, "auto">;
  deviceMemoryInfo(device?: number): { freeBytes: number; totalBytes: number };
  memoryStats(): { host: NativeMemorySnapshot; device: NativeMemorySnapshot };
  resetPeakMemory(): void;
  hostAvailableBytes(): number;
  /** Process-wide cap on the allocator's host bytes (0: none). */
  setHostMemoryLimit(bytes: number): void;
  hostMemoryLimit(): number;
  nativeLayout(
    spec: Omit<CompressionSpec, "scorer">,
    kvHeads: number,
    headDim: number,
    tokens: number,
    waiting?: number,
  ): {
    keptTokens: number;
    pages: number;
    pageBytes: number;
    pageEnd: number;
    residualBytes: number;
    residualCapacity: number;
    pagingPays: boolean;
    residualSlots: number;
    quantizedTensorBytesKey: number;
    /** format::scoreBytesPerSlot for each scorer id. */
    scoreBytesByScorer: number[];
  };
  /** Every constant of kernels/nq_format.h (and nq_scale.h's scale factors), named as src/format names them. */
  formatInfo(): NativeFormatInfo;
}

/** @internal What formatInfo() returns; test/format/native-agreement.test.ts compares it with src/format. */
export interface NativeFormatInfo {
  groupSize: number;
  scaleBytes: number;
  positionBytes: number;
  fp16Bytes: number;
  pageHeader: { bytes: number; slotsUsed: number; layer: number; sequence: number; index: number };
  quantizedTensorHeader: {
    bytes: number;
    magic: string;
    version: number;
    versionOffset: number;
    bitsOffset: number;
    flagsOffset: number;
    headDimOffset: number;
    seedOffset: number;
    vectorsOffset: number;
  };
  serializedHeader: { bytes: number; magic: string; version: number };
  scorerIds: Record<string, number>;
  scorerDefaults: { scorerWindow: number; poolKernel: number };
  scaleFactors: Record<string, number>;
  limits: { maxHeadDim: number; maxHeads: number; maxSequenceTokens: number; maxAbsValue: number };
  /** What native code accepts where FORMAT_LIMITS is stricter (test/format/native-agreement.test.ts). */
  nativeBounds: { maxPageTokens: number; maxResidualWindow: number; maxWindowTokens: number; maxQueryHeads: number; maxStores: number };
}

/** @internal native/binding/codec_binding.cc: the CPU codec and its support list. */
export interface CodecBinding {
  quantizeSync(data: KVData, headDim: number, bits: number, rotate: boolean, seed: number): ArrayBuffer;
  quantizeAsync(data: KVData, headDim: number, bits: number, rotate: boolean, seed: number): Promise<ArrayBuffer>;
  dequantizeSync<T extends Float32Array | Uint16Array>(codes: Uint8Array, scales: Uint16Array, headDim: number, bits: number, rotate: boolean, seed: number, out: T): T;
  dequantizeAsync<T extends Float32Array | Uint16Array>(codes: Uint8Array, scales: Uint16Array, headDim: number, bits: number, rotate: boolean, seed: number, out: T): Promise<T>;
  codecInfo(): { scaleFactors: Record<string, number>; maxHeadDim: number; supports(headDim: number, bits: number): boolean };
}

/** @internal One NativeCache object (native/binding/cache_binding.cc). */
export interface NativeCacheHandle {
  append(seq: number, layer: number, k: KVData, v: KVData, tokens: number): void;
  compress(seq: number, layer: number, observed?: (Float32Array | null)[], queryHeads?: number, window?: number): void;
  compressAsync(seq: number, layer: number, observed?: (Float32Array | null)[], queryHeads?: number, window?: number): Promise<void>;
  attention(seq: number, layer: number, q: Float32Array, qHeads: number, nq: number, pos: Int32Array | null, scale: number): Float32Array;
  reconstructionAttention(
    seq: number,
    layer: number,
    q: Float32Array,
    qHeads: number,
    nq: number,
    pos: Int32Array,
    scale: number,
    extraKeys: Float32Array,
    extraValues: Float32Array,
    recentSlots: number,
  ): Float32Array;
  shareScores(seq: number, sourceLayers: number): void;
  materialize(seq: number, layer: number, f16: boolean): { tokens: number; keys: Float32Array | Uint16Array; values: Float32Array | Uint16Array; positions: Int32Array };
  counts(seq: number, layer: number): { tokens: number; appended: number; compressedTokens: number; compressed: boolean };
  bytes(): { codes: number; scales: number; positions: number; residual: number; headers: number; scores: number; scratch: number; transform: number; total: number };
  serialize(): Uint8Array;
  /** The options the cache was created with (for a deserialized one: read from its header), scorer as its id. */
  options(): NativeCacheOptions & { transform: boolean };
  dispose(): void;
  /** Bytes this cache holds through the allocator, its memoryLimitBytes (0: none) and what was reported to V8. */
  heldBytes(): { live: number; limit: number; reported: number };
}

/** @internal The options object NativeCache takes and options() returns (memoryLimitBytes only goes in). */
export interface NativeCacheOptions {
  batch: number;
  layers: number;
  kvHeads: number;
  headDim: number;
  keyBits: number;
  valueBits: number;
  evictFraction: number;
  sinkTokens: number;
  recentWindow: number;
  residualWindow: number;
  pageTokens: number;
  scorer: number;
  seed: number;
  scorerWindow: number;
  poolKernel: number;
  queryHeads: number;
  budgetTokens: number;
  ropeTheta: number;
}

/** @internal What the NativeCache constructor reads: the options, a per-cache memory limit (0: none) and the resolved backend (default "cpu"). */
export interface NativeCacheCreateOptions extends NativeCacheOptions {
  memoryLimitBytes?: number;
  backend?: BackendName;
  /** The calibrated transforms (src/runtime/transform-tables.ts); absent: the Hadamard code. */
  transform?: NativeTransformHandle;
}

/** @internal A NativeTransform instance: the tables live as long as it or a cache built with it. */
export interface NativeTransformHandle {
  /** Bytes of the tables (allocator category "transform"). */
  bytes(): number;
}

/** @internal native/binding/cache_binding.cc: the cache class and the dense FP32 attention reference. */
export interface CacheBinding {
  NativeCache: {
    new (options: NativeCacheCreateOptions): NativeCacheHandle;
    deserialize(buf: Uint8Array, memoryLimitBytes?: number, transform?: NativeTransformHandle): NativeCacheHandle;
  };
  /** native/binding/transform_binding.cc: calibrated transform tables, shared by the caches built with them. */
  NativeTransform: new (options: { layers: number; kvHeads: number; headDim: number; keyBits: number; valueBits: number; id: Uint8Array } & CacheTransformArrays) => NativeTransformHandle;
  /** Exact attention over dense FP32 K/V ([kvHeads, n, d]); the bench's reference. */
  denseAttentionF32(k: Float32Array, v: Float32Array, kvHeads: number, n: number, d: number, q: Float32Array, qHeads: number, scale: number): Float32Array;
  /** Dense causal attention [kvHeads][n][d] (FP32 or FP16 bits) with the same fused kernels and ISA as attention on codes (bench baselines). */
  denseAttention(keys: Float32Array | Uint16Array, values: Float32Array | Uint16Array, kvHeads: number, n: number, d: number, q: Float32Array, qHeads: number, nq: number, scale: number): Float32Array;
}

/**
 * @internal One sequence of an op-level attention call, as native/binding/op_options.h reads it
 * (validated by test/ops/op-args.ts, whose AttentionSequence is this with defaults and without `out`).
 */
export interface NativeAttentionSequence {
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
  residual: number;
  residualKeys?: Uint16Array;
  residualValues?: Uint16Array;
  /** Position of residual row 0. */
  firstResidualPos: number;
  /** [queryHeads][nq][headDim], un-rotated. */
  queries: Float32Array;
  /** [nq]: query j sees positions <= queryPositions[j]. */
  queryPositions: Int32Array;
  /** In/out [kvHeads][compressed + residual]: softmax mass is added here when given (H2O scorer). */
  accumulated?: Float32Array;
  /** [queryHeads][nq][headDim], written by the op. */
  out: Float32Array;
}

/** @internal The options of cpuAttention/cudaAttention as op_options.h reads them. */
export interface NativeAttentionArgs {
  kvHeads: number;
  queryHeads: number;
  headDim: number;
  /** 1 only with `transform`. */
  keyBits: CodeBits | 1;
  valueBits: CodeBits | 1;
  /** Queries per sequence (decode: 1). */
  nq: number;
  pageTokens: number;
  /** The rotation seed the codes were encoded with. */
  seed: number;
  scale: number;
  /** CUDA: tokens per split-K chunk (0: chosen from the SM count); the CPU ignores it. */
  splitTokens: number;
  /** Whether the sequences carry positions (all or none). */
  storesPositions: boolean;
  sequences: NativeAttentionSequence[];
  /** Codes under calibrated transforms: these tables' entries of layer `transformLayer` (keys and values). */
  transform?: NativeTransformHandle;
  transformLayer?: number;
}

/** @internal The options of cpuScore/cudaScore as op_options.h reads them (scorer as its SCORER_IDS id). */
export interface NativeScoreArgs {
  scorer: number;
  kvHeads: number;
  tokens: number;
  headDim: number;
  /** [kvHeads][tokens][headDim], original (un-rotated) domain. */
  keys: Float32Array;
  /** observed: [queryHeads][window][headDim] */
  queries?: Float32Array;
  queryHeads: number;
  window: number;
  pool: number;
}

/** @internal The options of cpuSelect/cudaSelect as op_options.h reads them. */
export interface NativeSelectArgs {
  kvHeads: number;
  tokens: number;
  target: number;
  sinkTokens: number;
  recentWindow: number;
  scores: Float32Array;
  positions: Int32Array;
}

/** @internal The options of cudaDenseAttention (the plain FP16 decode-attention reference kernel). */
export interface NativeDenseAttentionArgs {
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
  scale: number;
  splitTokens: number;
  /** [batch][queryHeads][headDim], written by the kernel. */
  out: Float32Array;
}

/** @internal An N-API External owning one device buffer; only the binding reads it. */
export interface NativeDeviceBufferHandle {
  readonly __nativeHandle: "device buffer";
}
/** @internal An N-API External owning one device arena; only the binding reads it. */
export interface NativeDeviceArenaHandle {
  readonly __nativeHandle: "device arena";
}

/** @internal native/binding/cpu_ops_binding.cc: the CPU ops, with the arguments of their cuda* twins. */
export interface CpuOpsBinding {
  /** `transform` + `entry`: code with that entry of the tables ([layers][K|V][kvHeads] order) instead of the rotation. */
  cpuEncode(data: KVData, headDim: number, bits: number, rotate: boolean, seed: number, transform?: NativeTransformHandle, entry?: number): { codes: Uint8Array; scales: Uint16Array };
  cpuDecode<T extends Float32Array | Uint16Array>(
    codes: Uint8Array, scales: Uint16Array, headDim: number, bits: number, rotate: boolean, seed: number, out: T, unrotate: boolean, transform?: NativeTransformHandle, entry?: number,
  ): T;
  cpuAttention(options: NativeAttentionArgs): void;
  cpuScore(options: NativeScoreArgs): Float32Array;
  cpuSelect(options: NativeSelectArgs): Uint32Array;
}

/** @internal The CUDA support list (kernels/nq_cuda_support.h), registered in every build. */
export interface CudaSupportInfo {
  /** encode/decode: headDim a multiple of 8 up to this. */
  maxCodecHeadDim: number;
  /** attention on codes and the FP16 reference: headDim a multiple of 8 up to this. */
  maxAttentionHeadDim: number;
  bits: number[];
  /** Comma-separated scorer names. */
  scorers: string;
}

/**
 * @internal native/binding/cuda_binding.cc: cudaSupport() in every build; the rest only in CUDA
 * builds, each throwing BACKEND_UNAVAILABLE when no GPU is usable.
 */
export interface CudaBinding {
  cudaSupport(): CudaSupportInfo;
  cudaEncode(data: KVData, headDim: number, bits: number, rotate: boolean, seed: number, transform?: NativeTransformHandle, entry?: number): { codes: Uint8Array; scales: Uint16Array };
  cudaDecode<T extends Float32Array | Uint16Array>(
    codes: Uint8Array, scales: Uint16Array, headDim: number, bits: number, rotate: boolean, seed: number, out: T, unrotate: boolean, transform?: NativeTransformHandle, entry?: number,
  ): T;
  cudaAttention(options: NativeAttentionArgs): void;
  cudaDenseAttention(options: NativeDenseAttentionArgs): Float32Array;
  cudaScore(options: NativeScoreArgs): Float32Array;
  cudaSelect(options: NativeSelectArgs): Uint32Array;
  cudaBufferCreate(bytes: number, category: string, fill?: number): NativeDeviceBufferHandle;
  cudaBufferDispose(handle: NativeDeviceBufferHandle): void;
  cudaArenaCreate(bytes: number): NativeDeviceArenaHandle;
  cudaArenaCarve(handle: NativeDeviceArenaHandle, bytes: number, category: string, count?: number): number;
  cudaArenaDispose(handle: NativeDeviceArenaHandle): void;
}

/**
 * @internal Everything the addon exports. A lab build (NEXUSQUANT_LAB=ON) adds the lab's functions,
 * typed in bench/native/lab-binding.ts.
 */
export interface BindingModule extends BackendBinding, CodecBinding, CacheBinding, CpuOpsBinding, CudaBinding {}
