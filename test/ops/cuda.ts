/**
 * The CUDA backend's building blocks on typed arrays, for tests and the lab (the parity suite,
 * bench/gpu): encode, decode, decode attention on codes (and its dense FP16 reference), eviction
 * scores and selection, device buffers/arenas for memory verification. Data is copied to the GPU and
 * back on every call: not a fast path. Kernel timings are the lab's (bench/native/lab-binding.ts).
 *
 * Every function throws BACKEND_UNAVAILABLE (with the reason) when this build or machine has no
 * usable CUDA device; device allocation failures are OUT_OF_MEMORY with `details.requestedBytes`
 * and `details.freeBytes`. Arguments are checked first, on any machine. See docs/cuda.md.
 */
import { NexusQuantError, invalidArgument } from "../../src/errors.js";
import type { CodeBits } from "../../src/format/index.js";
import { backendInfo } from "../../src/runtime/backend.js";
import type { BindingModule, NativeDenseAttentionArgs, NativeDeviceArenaHandle, NativeDeviceBufferHandle } from "../../src/runtime/binding.js";
import type { MemoryCategory } from "../../src/runtime/memory.js";
import { callNative, native } from "../../src/runtime/native.js";
import type { KVData } from "../../src/runtime/validate.js";
import {
  attentionArgs,
  checkLength,
  decodeArgs,
  encodeArgs,
  posInt,
  scoreArgs,
  selectArgs,
  type AttentionOptions,
  type AttentionSequence,
  type OpCodecOptions,
  type OpScorerName,
  type ScoreOptions,
  type SelectOptions,
} from "./op-args.js";

/**
 * The CUDA kernels' own head_dim ceilings (kernels/nq_cuda_support.h, below FORMAT_LIMITS.maxHeadDim),
 * read from the binding in every build so that arguments are checked the same on a machine without CUDA.
 */
function ceilings(): { codec: number; attention: number } {
  const s = callNative(() => native().cudaSupport());
  return { codec: s.maxCodecHeadDim, attention: s.maxAttentionHeadDim };
}

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

export type CudaCodecOptions = OpCodecOptions;

/** GPU encode of head vectors (f32 or FP16 bits): same codes and scales as the CPU quantize(). */
export function cudaEncode(data: KVData, options: CudaCodecOptions): { codes: Uint8Array; scales: Uint16Array } {
  const o = encodeArgs(data, options, ceilings().codec);
  return callNative(() => binding().cudaEncode(data, o.headDim, o.bits, o.rotate, o.seed, o.transform, o.entry));
}

/** GPU decode of codes + scales into `out` (f32, or FP16 bits); `unrotate: false` stays in the rotated domain. */
export function cudaDecode<T extends Float32Array | Uint16Array>(codes: Uint8Array, scales: Uint16Array, options: CudaCodecOptions & { out: T; unrotate?: boolean }): T {
  const o = decodeArgs(codes, scales, options, ceilings().codec);
  return callNative(() => binding().cudaDecode(codes, scales, o.headDim, o.bits, o.rotate, o.seed, options.out, o.unrotate, o.transform, o.entry));
}

export type CudaAttentionSequence = AttentionSequence;
export type CudaAttentionOptions = AttentionOptions;

/**
 * Decode attention on lattice codes on the GPU (split-K, online softmax, GQA, residual window).
 * Returns one Float32Array [queryHeads][nq][headDim] per sequence.
 */
export function cudaAttention(options: CudaAttentionOptions): Float32Array[] {
  const { args, outs } = attentionArgs(options, ceilings().attention);
  callNative(() => binding().cudaAttention(args));
  return outs;
}

/** The dense reference's options: NativeDenseAttentionArgs without `out`, scale (default 1/sqrt(headDim)) and splitTokens (0) optional. */
export interface CudaDenseAttentionOptions extends Omit<NativeDenseAttentionArgs, "out" | "scale" | "splitTokens">, Partial<Pick<NativeDenseAttentionArgs, "scale" | "splitTokens">> {}

/** The plain FP16 decode-attention reference kernel. Returns [batch][queryHeads][headDim]. */
export function cudaDenseAttention(o: CudaDenseAttentionOptions): Float32Array {
  const B = posInt("options.batch", o.batch), H = posInt("options.kvHeads", o.kvHeads), QH = posInt("options.queryHeads", o.queryHeads);
  const d = posInt("options.headDim", o.headDim, 8), T = posInt("options.maxTokens", o.maxTokens);
  if (QH % H !== 0) throw invalidArgument("options.queryHeads", `a multiple of kvHeads (${H})`, QH);
  const maxD = ceilings().attention;
  if (d % 8 !== 0 || d > maxD) throw invalidArgument("options.headDim", `a multiple of 8 up to ${maxD}`, d);
  checkLength("options.keys", o.keys, B * H * T * d, "a Uint16Array");
  checkLength("options.values", o.values, B * H * T * d, "a Uint16Array");
  checkLength("options.lengths", o.lengths, B, "an Int32Array");
  for (const [i, n] of o.lengths.entries()) if (n < 0 || n > T) throw invalidArgument(`options.lengths[${i}]`, `an integer in [0, ${T}]`, n);
  checkLength("options.queries", o.queries, B * QH * d, "a Float32Array");
  const out = new Float32Array(B * QH * d);
  return callNative(() => binding().cudaDenseAttention({ ...o, scale: o.scale ?? 1 / Math.sqrt(d), splitTokens: o.splitTokens ?? 0, out }));
}

export type CudaScorerName = OpScorerName;
export type CudaScoreOptions = ScoreOptions;
export type CudaSelectOptions = SelectOptions;

/** Eviction scores [kvHeads][tokens] on the GPU (higher = keep), as native/cpu/scoring.h. */
export function cudaScore(o: CudaScoreOptions): Float32Array {
  const args = scoreArgs(o);
  return callNative(() => binding().cudaScore(args));
}

/** Kept token indices [kvHeads][target], ascending per head, exactly as the CPU cache selects them. */
export function cudaSelect(o: CudaSelectOptions): Uint32Array {
  const args = selectArgs(o);
  return callNative(() => binding().cudaSelect(args));
}

/** cudaMemGetInfo on device 0 (after a probe kernel). */
export function cudaMemGetInfo(): { freeBytes: number; totalBytes: number; usedBytes: number } {
  const m = callNative(() => binding().deviceMemoryInfo(0));
  return { ...m, usedBytes: m.totalBytes - m.freeBytes };
}

/** Base of the device memory handles: one dispose(), guarded once. */
abstract class DeviceHandle<H extends NativeDeviceBufferHandle | NativeDeviceArenaHandle> {
  #handle: H | undefined;
  protected constructor(handle: H) {
    this.#handle = handle;
  }
  protected get handle(): H {
    if (!this.#handle) throw new NexusQuantError("DISPOSED", `${this.constructor.name} was disposed`);
    return this.#handle;
  }
  protected abstract release(handle: H): void;
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
export class CudaDeviceBuffer extends DeviceHandle<NativeDeviceBufferHandle> {
  readonly bytes: number;
  constructor(bytes: number, category: MemoryCategory, fillByte?: number) {
    posInt("bytes", bytes);
    super(callNative(() => binding().cudaBufferCreate(bytes, category, fillByte)));
    this.bytes = bytes;
  }
  protected release(h: NativeDeviceBufferHandle): void {
    binding().cudaBufferDispose(h);
  }
}

/** One cudaMalloc carved into pieces (pages): carved bytes count under their category, the rest as scratch. */
export class CudaDeviceArena extends DeviceHandle<NativeDeviceArenaHandle> {
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
  protected release(h: NativeDeviceArenaHandle): void {
    binding().cudaArenaDispose(h);
  }
}
