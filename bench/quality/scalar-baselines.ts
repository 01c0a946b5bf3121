/**
 * The scalar KV-cache quantizers a user would otherwise pick, as baselines for the lattice codes at
 * (nearly) equal bits. They run in the harness only (TypeScript, quantize-then-dequantize: what the
 * model attends to is exactly what the stored codes decode to) and are charged their true storage:
 *
 * - `kivi`: KIVI (Liu et al. 2024): keys quantized per channel over groups of `group` consecutive
 *   tokens, values per token over groups of `group` channels; asymmetric (min/max) uniform codes with
 *   an FP16 scale and an FP16 zero point per group. Tokens that do not fill a whole key group yet stay
 *   FP16 (KIVI's residual), so a group is quantized once, when it is complete.
 * - `hadamard`: each head vector rotated by a fixed random-sign Walsh–Hadamard transform (QuaRot /
 *   llama.cpp's rotated KV cache), then quantized per vector with uniform asymmetric codes (FP16 scale
 *   and zero point per vector).
 * - `turbo`: TurboQuant-style MSE quantizer: the same rotation, the vector's norm kept in FP16, and
 *   every rotated unit coordinate (≈ N(0, 1/d)) replaced by the nearest Lloyd–Max level for a
 *   Gaussian. Its bits per element are the lattice codes' exactly: b + 16/d.
 */
import { invalidArgument } from "../../src/errors.js";
import { f16ArrayToF32, f32ArrayToF16 } from "../../src/shared/half.js";

export type ScalarKind = "kivi" | "hadamard" | "turbo";

export interface ScalarSpec {
  kind: ScalarKind;
  bits: 2 | 3 | 4;
  /** kivi only: tokens per key group and channels per value group (default 64). */
  group?: number;
}

export const SCALAR_KINDS: readonly ScalarKind[] = ["kivi", "hadamard", "turbo"];

/** "KIVI-2", "Had-4", "Turbo-3" (+ "/g32" for a KIVI group other than 64): the harness's row names. */
export function scalarName(spec: ScalarSpec): string {
  const base = { kivi: "KIVI", hadamard: "Had", turbo: "Turbo" }[spec.kind];
  const group = spec.kind === "kivi" && (spec.group ?? DEFAULT_GROUP) !== DEFAULT_GROUP ? `/g${spec.group}` : "";
  return `${base}-${spec.bits}${group}`;
}

/** Parses a row name of scalarName's form. */
export function parseScalarName(name: string): ScalarSpec {
  const m = /^(KIVI|Had|Turbo)-([234])(?:\/g(\d+))?$/i.exec(name);
  if (m === null || (m[3] !== undefined && m[1]!.toUpperCase() !== "KIVI")) {
    throw invalidArgument("scalar baseline", "KIVI-<2|3|4>[/g<group>], Had-<2|3|4> or Turbo-<2|3|4>", name);
  }
  const kind = ({ kivi: "kivi", had: "hadamard", turbo: "turbo" } as const)[m[1]!.toLowerCase() as "kivi" | "had" | "turbo"];
  const spec: ScalarSpec = { kind, bits: Number(m[2]) as 2 | 3 | 4 };
  if (m[3] !== undefined) spec.group = Number(m[3]);
  if (spec.group !== undefined && !(Number.isSafeInteger(spec.group) && spec.group >= 8)) throw invalidArgument("KIVI group", "an integer ≥ 8", spec.group);
  return spec;
}

export const DEFAULT_GROUP = 64;

/** Lloyd–Max reconstruction levels for N(0, 1) (Max 1960), positive half; symmetric. */
export const LLOYD_MAX_GAUSSIAN: Readonly<Record<2 | 3 | 4, readonly number[]>> = {
  2: [0.4528, 1.5104],
  3: [0.2451, 0.756, 1.344, 2.152],
  4: [0.1284, 0.3881, 0.6568, 0.9424, 1.2562, 1.618, 2.069, 2.7326],
};

const one = new Float32Array(1);
/** Rounds to the nearest FP16 value (what an FP16 scale, zero point or norm stores). */
export function roundToHalf(x: number): number {
  one[0] = x;
  return f16ArrayToF32(f32ArrayToF16(one))[0]!;
}

/** Uniform asymmetric codes of `values` (indices `at(i)`, i < n) in place: min/max → FP16 zero and scale. */
function uniformInPlace(data: Float32Array, n: number, at: (i: number) => number, bits: number): void {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < n; i++) {
    const x = data[at(i)]!;
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  const levels = 2 ** bits - 1;
  const zero = roundToHalf(lo);
  const scale = roundToHalf((hi - lo) / levels);
  for (let i = 0; i < n; i++) {
    const j = at(i);
    const q = scale > 0 ? Math.min(levels, Math.max(0, Math.round((data[j]! - zero) / scale))) : 0;
    data[j] = zero + q * scale;
  }
}

/** KIVI keys: one head's tokens [tokens, d] (row-major), complete groups of `group` tokens, per channel. */
export function kiviKeysInPlace(keys: Float32Array, tokens: number, d: number, bits: number, group: number): void {
  if (tokens % group !== 0) throw invalidArgument("tokens", `a multiple of the group (${group})`, tokens);
  for (let g = 0; g < tokens; g += group) {
    for (let c = 0; c < d; c++) uniformInPlace(keys, group, (i) => (g + i) * d + c, bits);
  }
}

/** KIVI values: per token, groups of `group` channels (the whole vector when group ≥ d). */
export function kiviValuesInPlace(values: Float32Array, tokens: number, d: number, bits: number, group: number): void {
  const g = Math.min(group, d);
  if (d % g !== 0) throw invalidArgument("group", `a divisor of head_dim ${d} or ≥ it`, group);
  for (let t = 0; t < tokens; t++) for (let c = 0; c < d; c += g) uniformInPlace(values, g, (i) => t * d + c + i, bits);
}

/** Fixed ±1 signs for the rotation (a seeded xorshift, so every run and test uses the same rotation). */
export function rotationSigns(d: number, seed = 0x9e3779b9): Float32Array {
  const out = new Float32Array(d);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < d; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = s & 1 ? 1 : -1;
  }
  return out;
}

/** In-place orthonormal Walsh–Hadamard transform of v[off, off + d) (d a power of two). */
export function walshHadamard(v: Float32Array, off: number, d: number): void {
  for (let h = 1; h < d; h *= 2) {
    for (let i = 0; i < d; i += 2 * h) {
      for (let j = i; j < i + h; j++) {
        const a = v[off + j]!;
        const b = v[off + j + h]!;
        v[off + j] = a + b;
        v[off + j + h] = a - b;
      }
    }
  }
  const norm = 1 / Math.sqrt(d);
  for (let i = 0; i < d; i++) v[off + i]! *= norm;
}

function checkPowerOfTwo(d: number): void {
  if (!(Number.isSafeInteger(d) && d >= 2 && (d & (d - 1)) === 0)) throw invalidArgument("headDim", "a power of two for the Hadamard rotation", d);
}

/** Rotated per-vector quantization of `vectors` [count, d] in place (kind hadamard or turbo). */
export function rotatedInPlace(vectors: Float32Array, count: number, d: number, bits: 2 | 3 | 4, kind: "hadamard" | "turbo", signs: Float32Array): void {
  checkPowerOfTwo(d);
  const levels = LLOYD_MAX_GAUSSIAN[bits].map((x) => x / Math.sqrt(d));
  for (let t = 0; t < count; t++) {
    const off = t * d;
    for (let i = 0; i < d; i++) vectors[off + i]! *= signs[i]!;
    walshHadamard(vectors, off, d);
    if (kind === "hadamard") {
      uniformInPlace(vectors, d, (i) => off + i, bits);
    } else {
      let sq = 0;
      for (let i = 0; i < d; i++) sq += vectors[off + i]! ** 2;
      const norm = Math.sqrt(sq);
      const stored = roundToHalf(norm);
      for (let i = 0; i < d; i++) {
        const u = norm > 0 ? vectors[off + i]! / norm : 0;
        const a = Math.abs(u);
        let best = levels[0]!;
        for (const l of levels) if (Math.abs(a - l) < Math.abs(a - best)) best = l;
        vectors[off + i] = Math.sign(u) * best * stored;
      }
    }
    walshHadamard(vectors, off, d); // the transform is its own inverse (orthonormal, symmetric)
    for (let i = 0; i < d; i++) vectors[off + i]! *= signs[i]!;
  }
}

/**
 * Storage of `tokens` quantized tokens of one head (keys and values together), in bits: the codes plus
 * every FP16 scale, zero point or norm the format keeps. FP16 tokens are counted by the caller.
 */
export function scalarBitsPerHead(spec: ScalarSpec, tokens: number, d: number): number {
  const codes = 2 * tokens * d * spec.bits;
  switch (spec.kind) {
    case "kivi": {
      const group = spec.group ?? DEFAULT_GROUP;
      const keyGroups = (tokens / group) * d; // one (scale, zero) per channel per token group
      const valueGroups = tokens * Math.ceil(d / Math.min(group, d));
      return codes + 32 * (keyGroups + valueGroups);
    }
    case "hadamard":
      return codes + 2 * tokens * 32; // scale + zero per vector
    case "turbo":
      return codes + 2 * tokens * 16; // the norm per vector
  }
}

/** Bits per stored element of the quantized part (codes + side data), e.g. 2.5 for KIVI-2 at d = 64. */
export function scalarBitsPerElement(spec: ScalarSpec, d: number): number {
  const group = spec.kind === "kivi" ? spec.group ?? DEFAULT_GROUP : 1;
  return scalarBitsPerHead(spec, group, d) / (2 * group * d);
}
