import { NexusQuantError, invalidArgument } from "../errors.js";
import { CODE_BITS, QUANTIZED_TENSOR_HEADER_BYTES, codeBytesPerVector, quantizedTensorBytes, type CodeBits } from "../format/index.js";
import { awaitNative, callNative, native } from "./native.js";
import { checkKVData, fromTensor, type KVData, type TfjsTensorLike } from "./validate.js";

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

function checkOptions(data: unknown, options: QuantizeOptions): { headDim: number; bits: CodeBits; rotate: boolean; seed: number } {
  if (options === null || typeof options !== "object") throw invalidArgument("options", "{ headDim, bits }", options);
  checkKVData("data", data);
  const { headDim, bits } = options;
  if (typeof headDim !== "number" || !Number.isInteger(headDim) || headDim < 8 || headDim % 8 !== 0 || headDim > 8192) {
    throw invalidArgument("options.headDim", "a multiple of 8 between 8 and 8192", headDim);
  }
  if (!CODE_BITS.includes(bits)) throw invalidArgument("options.bits", "2, 3 or 4", bits);
  if (data.length % headDim !== 0) throw invalidArgument("data.length", `a multiple of headDim (${headDim})`, data.length);
  const rotate = options.rotate ?? true;
  if (typeof rotate !== "boolean") throw invalidArgument("options.rotate", "a boolean", rotate);
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw invalidArgument("options.seed", "a uint32", seed);
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
  if (!CODE_BITS.includes(q.bits)) throw invalidArgument("q.bits", "2, 3 or 4", q.bits);
  if (q.scales.length !== q.vectors || q.codes.length !== q.vectors * codeBytesPerVector(q.headDim, q.bits)) {
    throw new NexusQuantError("INVALID_ARGUMENT", "q.codes/q.scales lengths do not match q.vectors, q.headDim and q.bits");
  }
}

function outputFor<T extends Float32Array | Uint16Array>(q: QuantizedTensor, options: DequantizeOptions<T>): T {
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
