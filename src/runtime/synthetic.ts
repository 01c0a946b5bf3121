/**
 * Synthetic KV with the statistics that make KV quantization hard, for verification and benchmarks
 * when no real KV is given. Deterministic for a seed.
 *
 * Keys ([kvHeads, tokens, headDim]): per channel a Gaussian with a channel-specific std (log-uniform
 * in [0.5, 2]) and mean; `outlierChannels` channels per head are 10–20× larger (the outlier channels
 * seen in real K caches); then RoPE is applied at the token's position (rotate-half convention,
 * theta 500000, as Llama 3), so keys carry the position-dependent rotation real caches hold.
 * Values: smoother — Gaussian noise (std 1) on top of a per-channel random walk over tokens, no
 * outliers; real V caches are closer to isotropic than K.
 */
import { seededRandom } from "../shared/prng.js";

export interface SyntheticKVOptions {
  kvHeads: number;
  headDim: number;
  tokens: number;
  /** Position of the first token (RoPE). Default 0. */
  startPosition?: number;
  seed?: number;
  outlierChannels?: number;
  ropeTheta?: number;
  /** Student-t degrees of freedom for heavy tails (Infinity = Gaussian). Default Infinity. */
  tailDof?: number;
}


export function gaussian(rand: () => number): () => number {
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    let u = 0;
    while (u === 0) u = rand();
    const v = rand();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
}

/** Student-t with `dof` degrees of freedom, scaled to unit variance (dof > 2). */
export function studentT(rand: () => number, dof: number): () => number {
  const g = gaussian(rand);
  const scale = Math.sqrt((dof - 2) / dof);
  return () => {
    let chi2 = 0;
    for (let i = 0; i < dof; i++) {
      const z = g();
      chi2 += z * z;
    }
    return (g() / Math.sqrt(chi2 / dof)) * scale;
  };
}

/** theta^(-2i/headDim) for i < headDim/2: the RoPE frequencies (rotate-half convention). */
export function ropeInverseFrequencies(headDim: number, theta: number): Float64Array {
  return Float64Array.from({ length: headDim / 2 }, (_, i) => theta ** (-(2 * i) / headDim));
}

export function applyRope(row: Float32Array, offset: number, headDim: number, position: number, invFreq: Float64Array): void {
  const half = headDim / 2;
  for (let i = 0; i < half; i++) {
    const freq = position * invFreq[i]!;
    const c = Math.cos(freq), s = Math.sin(freq);
    const a = row[offset + i]!, b = row[offset + i + half]!;
    row[offset + i] = a * c - b * s;
    row[offset + i + half] = b * c + a * s;
  }
}

export function syntheticKV(options: SyntheticKVOptions): { keys: Float32Array; values: Float32Array } {
  const { kvHeads, headDim, tokens } = options;
  const start = options.startPosition ?? 0;
  const rand = seededRandom(options.seed ?? 1);
  const noise = options.tailDof !== undefined && Number.isFinite(options.tailDof) ? studentT(rand, options.tailDof) : gaussian(rand);
  const invFreq = ropeInverseFrequencies(headDim, options.ropeTheta ?? 500000);
  const outliers = Math.min(options.outlierChannels ?? 4, headDim);
  const keys = new Float32Array(kvHeads * tokens * headDim);
  const values = new Float32Array(kvHeads * tokens * headDim);
  // Per-head channel statistics come from a generator seeded by the head only, so chunks of one
  // stream (different startPosition) share them.
  for (let h = 0; h < kvHeads; h++) {
    const headRand = seededRandom((options.seed ?? 1) * 7919 + h);
    const std = new Float64Array(headDim), mean = new Float64Array(headDim), walk = new Float64Array(headDim);
    for (let c = 0; c < headDim; c++) {
      std[c] = 0.5 * 4 ** headRand();
      mean[c] = (headRand() - 0.5) * std[c]!;
      walk[c] = (headRand() - 0.5) * 2;
    }
    for (let k = 0; k < outliers; k++) std[Math.floor(headRand() * headDim)]! *= 10 + 10 * headRand();
    for (let t = 0; t < tokens; t++) {
      const o = (h * tokens + t) * headDim;
      for (let c = 0; c < headDim; c++) {
        keys[o + c] = mean[c]! + std[c]! * noise();
        walk[c] = 0.98 * walk[c]! + 0.2 * noise();
        values[o + c] = walk[c]! + noise();
      }
      applyRope(keys, o, headDim, start + t, invFreq);
    }
  }
  return { keys, values };
}
