/**
 * The CPU ops of the cache (native/cpu/ops/cpu_ops.h) on typed arrays, for tests and the lab: the
 * same functions and options as the cuda* ones of cuda.ts (validated by the same op-args.ts),
 * computed by the code the CPU cache runs. They are the op-by-op oracle the GPU parity suite compares
 * CUDA against (parity-cases.mjs) and let each step of compress() and attention be tested on its own.
 * Not a fast path: arrays are packed into pages per call.
 */
import { FORMAT_LIMITS } from "../../src/format/index.js";
import { callNative, native } from "../../src/runtime/native.js";
import type { KVData } from "../../src/runtime/validate.js";
import {
  attentionArgs,
  decodeArgs,
  encodeArgs,
  scoreArgs,
  selectArgs,
  type AttentionOptions,
  type OpCodecOptions,
  type ScoreOptions,
  type SelectOptions,
} from "./op-args.js";

/** Encode of head vectors (f32 or FP16 bits): the codes and scales the cache stores. */
export function cpuEncode(data: KVData, options: OpCodecOptions): { codes: Uint8Array; scales: Uint16Array } {
  const o = encodeArgs(data, options, FORMAT_LIMITS.maxHeadDim);
  return callNative(() => native().cpuEncode(data, o.headDim, o.bits, o.rotate, o.seed, o.transform, o.entry));
}

/** Decode of codes + scales into `out` (f32, or FP16 bits); `unrotate: false` stays in the rotated domain. */
export function cpuDecode<T extends Float32Array | Uint16Array>(codes: Uint8Array, scales: Uint16Array, options: OpCodecOptions & { out: T; unrotate?: boolean }): T {
  const o = decodeArgs(codes, scales, options, FORMAT_LIMITS.maxHeadDim);
  return callNative(() => native().cpuDecode(codes, scales, o.headDim, o.bits, o.rotate, o.seed, options.out, o.unrotate, o.transform, o.entry));
}

/**
 * Attention on codes with the cache's fused CPU kernel, the codes laid out in pages as the cache lays
 * them. Returns one Float32Array [queryHeads][nq][headDim] per sequence; adds softmax mass into each
 * sequence's `accumulated` when given.
 */
export function cpuAttention(options: AttentionOptions): Float32Array[] {
  const { args, outs } = attentionArgs(options, FORMAT_LIMITS.maxHeadDim);
  callNative(() => native().cpuAttention(args));
  return outs;
}

/** Eviction scores [kvHeads][tokens] (higher = keep): keynorm, key-key or observed, as compress() scores. */
export function cpuScore(o: ScoreOptions): Float32Array {
  const args = scoreArgs(o);
  return callNative(() => native().cpuScore(args));
}

/** Kept token indices [kvHeads][target], ascending per head: compress()'s selection. */
export function cpuSelect(o: SelectOptions): Uint32Array {
  const args = selectArgs(o);
  return callNative(() => native().cpuSelect(args));
}
