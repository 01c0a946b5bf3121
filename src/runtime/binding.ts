/**
 * @internal The native module's whole surface, declared by hand in one place (as node-llama-cpp's
 * AddonTypes.ts does) so that every call site is typed without casts. One section per binding file
 * in native/binding/; a function added there is added here. Stripped from the published types
 * (tsconfig stripInternal).
 */
import type { BackendInfo } from "./backend.js";
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
    spec: object,
    kvHeads: number,
    headDim: number,
    tokens: number,
    waiting?: number,
  ): { keptTokens: number; pages: number; pageBytes: number; pageEnd: number; residualBytes: number; residualCapacity: number; pagingPays: boolean; residualSlots: number; quantizedTensorBytesKey: number };
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
  scaleFactors: Record<string, number>;
  limits: { maxHeadDim: number; maxHeads: number; maxSequenceTokens: number; maxAbsValue: number };
  /** What native code accepts where FORMAT_LIMITS is stricter (test/format/native-agreement.test.ts). */
  nativeBounds: { maxPageTokens: number; maxResidualWindow: number; maxWindowTokens: number; maxQueryHeads: number; maxStores: number };
}

/** @internal native/binding/codec_binding.cc: the CPU codec, its support list and the codec benchmark. */
export interface CodecBinding {
  quantizeSync(data: KVData, headDim: number, bits: number, rotate: boolean, seed: number): ArrayBuffer;
  quantizeAsync(data: KVData, headDim: number, bits: number, rotate: boolean, seed: number): Promise<ArrayBuffer>;
  dequantizeSync<T extends Float32Array | Uint16Array>(codes: Uint8Array, scales: Uint16Array, headDim: number, bits: number, rotate: boolean, seed: number, out: T): T;
  dequantizeAsync<T extends Float32Array | Uint16Array>(codes: Uint8Array, scales: Uint16Array, headDim: number, bits: number, rotate: boolean, seed: number, out: T): Promise<T>;
  codecInfo(): { scaleFactors: Record<string, number>; maxHeadDim: number; supports(headDim: number, bits: number): boolean };
  codecBenchmark(
    quantizer: "e8" | "uniform" | "lloyd-max",
    data: Float32Array,
    headDim: number,
    bits: number,
    rotate: boolean,
    seed: number,
  ): { reconstruction: Float32Array; encodeSeconds: number; decodeSeconds: number };
}

/** @internal One NativeCache object (native/binding/cache_binding.cc). */
export interface NativeCacheHandle {
  append(seq: number, layer: number, k: KVData, v: KVData, tokens: number): void;
  compress(seq: number, layer: number, observed?: (Float32Array | null)[], queryHeads?: number, window?: number): void;
  compressAsync(seq: number, layer: number, observed?: (Float32Array | null)[], queryHeads?: number, window?: number): Promise<void>;
  attention(seq: number, layer: number, q: Float32Array, qHeads: number, nq: number, pos: Int32Array | null, scale: number): Float32Array;
  materialize(seq: number, layer: number, f16: boolean): { tokens: number; keys: Float32Array | Uint16Array; values: Float32Array | Uint16Array; positions: Int32Array };
  counts(seq: number, layer: number): { tokens: number; appended: number; compressedTokens: number; compressed: boolean };
  bytes(): { codes: number; scales: number; positions: number; residual: number; headers: number; scratch: number; total: number };
  serialize(): Uint8Array;
  /** The options the cache was created with (for a deserialized one: read from its header), scorer as its id. */
  options(): NativeCacheOptions;
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

/** @internal native/binding/cache_binding.cc: the cache class and the dense FP32 attention reference. */
export interface CacheBinding {
  NativeCache: {
    new (options: object): NativeCacheHandle;
    deserialize(buf: Uint8Array, memoryLimitBytes?: number): NativeCacheHandle;
  };
  /** Exact attention over dense FP32 K/V ([kvHeads, n, d]); the bench's reference. */
  denseAttentionF32(k: Float32Array, v: Float32Array, kvHeads: number, n: number, d: number, q: Float32Array, qHeads: number, scale: number): Float32Array;
  /** Dense causal attention [kvHeads][n][d] (FP32 or FP16 bits) with the same fused kernels and ISA as attention on codes (bench baselines). */
  denseAttention(keys: Float32Array | Uint16Array, values: Float32Array | Uint16Array, kvHeads: number, n: number, d: number, q: Float32Array, qHeads: number, nq: number, scale: number): Float32Array;
}

/** @internal native/binding/cpu_ops_binding.cc: the CPU ops, with the arguments of their cuda* twins. */
export interface CpuOpsBinding {
  cpuEncode(data: KVData, headDim: number, bits: number, rotate: boolean, seed: number): { codes: Uint8Array; scales: Uint16Array };
  cpuDecode<T extends Float32Array | Uint16Array>(codes: Uint8Array, scales: Uint16Array, headDim: number, bits: number, rotate: boolean, seed: number, out: T, unrotate: boolean): T;
  cpuAttention(options: object): void;
  cpuScore(options: object): Float32Array;
  cpuSelect(options: object): Uint32Array;
}

/** @internal native/binding/cuda_binding.cc (every function throws BACKEND_UNAVAILABLE without CUDA). */
export interface CudaBinding {
  cudaSupport(): { maxCodecHeadDim: number; maxAttentionHeadDim: number; bits: number[]; scorers: string };
  cudaEncode(data: KVData, headDim: number, bits: number, rotate: boolean, seed: number): { codes: Uint8Array; scales: Uint16Array };
  cudaDecode<T extends Float32Array | Uint16Array>(codes: Uint8Array, scales: Uint16Array, headDim: number, bits: number, rotate: boolean, seed: number, out: T, unrotate: boolean): T;
  cudaAttention(options: object): void;
  cudaDenseAttention(options: object): Float32Array;
  cudaScore(options: object): Float32Array;
  cudaSelect(options: object): Uint32Array;
  cudaBench(kind: string, options: object): { ms: number[]; bytesRead: number; bytesWritten: number };
  cudaBufferCreate(bytes: number, category: string, fill?: number): object;
  cudaBufferDispose(handle: object): void;
  cudaArenaCreate(bytes: number): object;
  cudaArenaCarve(handle: object, bytes: number, category: string, count?: number): number;
  cudaArenaDispose(handle: object): void;
}

/** @internal Everything the addon exports. */
export interface BindingModule extends BackendBinding, CodecBinding, CacheBinding, CpuOpsBinding, CudaBinding {}
