import { NexusQuantError, invalidArgument } from "../errors.js";
import {
  CODE_BITS,
  FORMAT_LIMITS,
  GROUP_SIZE,
  QUANTIZED_TENSOR_HEADER_BYTES,
  codeBytesPerVector,
  quantizedTensorBytes,
  type CodeBits,
} from "../format/index.js";
import { awaitNative, callNative, native } from "./native.js";
import {
  checkBoolean,
  checkFiniteWithin,
  checkInt,
  checkKVData,
  checkObject,
  checkOneOf,
  checkOptionKeys,
  checkSeed,
  fromTensor,
  type KVData,
  type TfjsTensorLike,
} from "./validate.js";

export interface QuantizeOptions {
  headDim: number;
  bits: CodeBits;
  /** Sign flip + Hadamard rotation before quantizing (default true). */
  rotate?: boolean;
  /** Seed of the sign flip (uint32, default 0). */
  seed?: number;
}

/**
 * Head vectors as fixed-rate E8-lattice codes: one FP16 scale per vector and headDim·bits/8 code bytes.
 * `bytes` is the whole tensor as held in memory ([32-byte header][scales][codes], docs/format.md);
 * `codes` and `scales` are views into it.
 */
export interface QuantizedTensor {
  bits: CodeBits;
  headDim: number;
  vectors: number;
  rotate: boolean;
  seed: number;
  codes: Uint8Array;
  /** FP16 bit patterns, one per vector. */
  scales: Uint16Array;
  bytes: Uint8Array;
  /** vectors × (headDim × bits / 8 + 2) + 32, equal to quantizedTensorBytes() in src/format. */
  byteLength: number;
}

/** Inputs above this many elements go to async work on the thread pool; below, sync is cheaper. */
const ASYNC_THRESHOLD = 1 << 16;

const binding = native;

const QUANTIZE_OPTION_KEYS: readonly (keyof QuantizeOptions)[] = ["headDim", "bits", "rotate", "seed"];

function checkHeadDim(arg: string, headDim: unknown): number {
  checkInt(arg, headDim, { min: GROUP_SIZE, max: FORMAT_LIMITS.maxHeadDim, maxName: "FORMAT_LIMITS.maxHeadDim" });
  if ((headDim as number) % GROUP_SIZE !== 0) throw invalidArgument(arg, "a multiple of 8 (lattice groups are 8 elements)", headDim);
  return headDim as number;
}

function checkOptions(data: unknown, options: QuantizeOptions): { headDim: number; bits: CodeBits; rotate: boolean; seed: number } {
  checkObject("options", options, "{ headDim, bits }");
  checkOptionKeys("options", options, QUANTIZE_OPTION_KEYS);
  checkKVData("data", data);
  const headDim = checkHeadDim("options.headDim", options.headDim);
  const bits = checkOneOf("options.bits", options.bits, CODE_BITS, "2, 3 or 4");
  if (data.length % headDim !== 0) throw invalidArgument("data.length", `a multiple of headDim (${headDim})`, data.length);
  const rotate = checkBoolean("options.rotate", options.rotate ?? true);
  const seed = checkSeed("options.seed", options.seed ?? 0);
  // The cache refuses values beyond the FP16 range (it holds FP16); so does quantize, whose one FP16
  // scale per vector would otherwise saturate and clamp such vectors silently. FP16 input cannot
  // exceed it; NaN/Inf in either dtype is refused by the native codec, naming the vector.
  if (data instanceof Float32Array) checkFiniteWithin("data", data, FORMAT_LIMITS.maxAbsValue, headDim);
  return { headDim, bits, rotate, seed };
}

function wrap(buffer: ArrayBuffer, vectors: number, o: ReturnType<typeof checkOptions>): QuantizedTensor {
  const bytes = new Uint8Array(buffer);
  const scales = new Uint16Array(buffer, QUANTIZED_TENSOR_HEADER_BYTES, vectors);
  const codes = new Uint8Array(buffer, QUANTIZED_TENSOR_HEADER_BYTES + vectors * 2, vectors * codeBytesPerVector(o.headDim, o.bits));
  return { ...o, vectors, codes, scales, bytes, byteLength: bytes.byteLength };
}

/**
 * Quantizes head vectors (`data`: Float32Array, or Uint16Array of FP16 bits; headDim values per
 * vector) into lattice codes. Runs on the thread pool off the event loop. NaN/Inf → INVALID_DATA
 * naming the first bad vector.
 */
export async function quantize(dataIn: KVData | TfjsTensorLike, options: QuantizeOptions): Promise<QuantizedTensor> {
  const data = fromTensor("data", dataIn) as KVData;
  const o = checkOptions(data, options);
  if (data.length <= ASYNC_THRESHOLD) return quantizeSync(data, options);
  const buffer = await awaitNative(binding().quantizeAsync(data, o.headDim, o.bits, o.rotate, o.seed));
  return wrap(buffer, data.length / o.headDim, o);
}

/** quantize() on the calling thread (both cores still used for large inputs). */
export function quantizeSync(dataIn: KVData | TfjsTensorLike, options: QuantizeOptions): QuantizedTensor {
  const data = fromTensor("data", dataIn) as KVData;
  const o = checkOptions(data, options);
  const buffer = callNative(() => binding().quantizeSync(data, o.headDim, o.bits, o.rotate, o.seed));
  return wrap(buffer, data.length / o.headDim, o);
}

export interface DequantizeOptions<T extends Float32Array | Uint16Array> {
  /** "f32" (default) or "f16" (Uint16Array of FP16 bits). */
  dtype?: "f32" | "f16";
  /** Write into this array (vectors × headDim elements) instead of allocating. */
  out?: T;
}

function checkTensor(q: QuantizedTensor): void {
  if (q === null || typeof q !== "object" || !(q.codes instanceof Uint8Array) || !(q.scales instanceof Uint16Array)) {
    throw invalidArgument("q", "a QuantizedTensor from quantize()", q);
  }
  checkOneOf("q.bits", q.bits, CODE_BITS, "2, 3 or 4");
  checkHeadDim("q.headDim", q.headDim);
  checkBoolean("q.rotate", q.rotate);
  checkSeed("q.seed", q.seed);
  checkInt("q.vectors", q.vectors);
  if (q.scales.length !== q.vectors || q.codes.length !== q.vectors * codeBytesPerVector(q.headDim, q.bits)) {
    throw new NexusQuantError("INVALID_ARGUMENT", "q.codes/q.scales lengths do not match q.vectors, q.headDim and q.bits");
  }
}

function outputFor<T extends Float32Array | Uint16Array>(q: QuantizedTensor, options: DequantizeOptions<T>): T {
  checkOptionKeys("options", checkObject("options", options), ["dtype", "out"]);
  const n = q.vectors * q.headDim;
  const dtype = options.dtype ?? (options.out instanceof Uint16Array ? "f16" : "f32");
  if (dtype !== "f32" && dtype !== "f16") throw invalidArgument("options.dtype", '"f32" or "f16"', dtype);
  if (options.out !== undefined) {
    const ok = dtype === "f32" ? options.out instanceof Float32Array : options.out instanceof Uint16Array;
    if (!ok || options.out.length !== n) throw invalidArgument("options.out", `a ${dtype === "f32" ? "Float32Array" : "Uint16Array"} of length ${n}`, options.out);
    return options.out;
  }
  return (dtype === "f32" ? new Float32Array(n) : new Uint16Array(n)) as T;
}

/** Codes back to vectors (un-rotated), f32 or FP16 bits. */
export async function dequantize<T extends Float32Array | Uint16Array = Float32Array>(q: QuantizedTensor, options: DequantizeOptions<T> = {}): Promise<T> {
  checkTensor(q);
  const out = outputFor(q, options);
  if (out.length <= ASYNC_THRESHOLD) return dequantizeSync(q, { ...options, out });
  return awaitNative(binding().dequantizeAsync(q.codes, q.scales, q.headDim, q.bits, q.rotate, q.seed, out));
}

export function dequantizeSync<T extends Float32Array | Uint16Array = Float32Array>(q: QuantizedTensor, options: DequantizeOptions<T> = {}): T {
  checkTensor(q);
  const out = outputFor(q, options);
  return callNative(() => binding().dequantizeSync(q.codes, q.scales, q.headDim, q.bits, q.rotate, q.seed, out));
}

/** Exact bytes a QuantizedTensor of this shape holds (the same function src/format exports). */
export { quantizedTensorBytes };
