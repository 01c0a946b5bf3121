/**
 * Calibration of the transform code: feed it the K and V vectors of a forward pass over some text,
 * per (layer, KV head), and it fits each tensor's mean, covariance basis, band scales and bit
 * allocation (the method of bench/transform/study.py, validated in bench/results/transform-study.md).
 */
import { NexusQuantError, invalidArgument } from "../errors.js";
import { FORMAT_LIMITS } from "../format/limits.js";
import { allocateRates, calibratedPays, predictCalibratedNmse, predictFlatNmse } from "./allocation.js";
import { GROUP_SIZE, bandSigns, bandTransform } from "./band-transform.js";
import { TRANSFORM_BUDGETS, type TransformBudget } from "./codec-distortion.js";
import { symmetricEigen } from "./linalg.js";
import { checkIndex, checkPositiveInt, checkSeed } from "../validate.js";
import { checkHeadDim, checkKv, headIndex, type HeadTensorTransform, type TransformProfileHeads } from "./profile.js";

export interface TransformCalibratorOptions {
  layers: number;
  kvHeads: number;
  /** A multiple of 8, at most 256. */
  headDim: number;
  /** Seeds the in-band sign flips (default DEFAULT_TRANSFORM_SEED); recorded in the profile. */
  seed?: number;
}

export interface FinishOptions {
  /** Called after each (layer, head, K|V) tensor is fitted: `done` of `total`. */
  onProgress?: (done: number, total: number) => void;
}

export const DEFAULT_TRANSFORM_SEED = 26;

/**
 * A covariance needs well over d samples to be more than noise in its small eigenvalues; below 2·d
 * the allocation would mostly follow that noise.
 */
export const MIN_VECTORS_PER_DIM = 2;

/** σ_b ≥ this fraction of the head's largest σ_b: a band calibration saw as (nearly) empty cannot blow up when divided by. */
export const BAND_RMS_FLOOR_FRACTION = 1e-3;
/**
 * σ_b ≥ this fraction of the data's RMS per element (mean included), which is what keeps σ_b > 0
 * when every vector is the same (all eigenvalues 0) ...
 */
export const BAND_RMS_FLOOR_OF_DATA = 1e-12;
/** ... and this absolute floor when the data is all zeros (a normal Float32, so the stored σ_b stays > 0). */
export const BAND_RMS_ABSOLUTE_FLOOR = 1e-30;

/**
 * Running sums of one tensor, in Float64, taken about the first vector seen (not about 0): the
 * covariance is then Σ(x−r)(x−r)ᵀ/n − δδᵀ with δ = mean − r small, which avoids cancelling a large
 * mean against itself (K vectors often have mean components far above their spread).
 */
interface Moments {
  count: number;
  reference: Float64Array;
  sum: Float64Array;
  /** Upper triangle (j ≥ i) of Σ (x−r)(x−r)ᵀ, d×d row-major. */
  outer: Float64Array;
}

export class TransformCalibrator {
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly seed: number;
  readonly #moments: (Moments | undefined)[];
  readonly #centered: Float64Array;

  constructor(options: TransformCalibratorOptions) {
    if (options === null || typeof options !== "object") throw invalidArgument("options", "an object { layers, kvHeads, headDim, seed? }", options);
    this.layers = checkPositiveInt("options.layers", options.layers, 1, FORMAT_LIMITS.maxLayers, "FORMAT_LIMITS.maxLayers");
    this.kvHeads = checkPositiveInt("options.kvHeads", options.kvHeads, 1, FORMAT_LIMITS.maxHeads, "FORMAT_LIMITS.maxHeads");
    this.headDim = checkHeadDim("options.headDim", options.headDim);
    this.seed = checkSeed("options.seed", options.seed ?? DEFAULT_TRANSFORM_SEED);
    this.#moments = new Array<Moments | undefined>(this.layers * this.kvHeads * 2).fill(undefined);
    this.#centered = new Float64Array(this.headDim);
  }

  /**
   * Adds vectors of one tensor: `rows` holds n vectors of headDim values, row-major (kv 0 = keys,
   * post-RoPE as the cache stores them; 1 = values). Nothing is added if any value is NaN/Inf.
   */
  add(layer: number, head: number, kv: 0 | 1, rows: Float32Array): void {
    const d = this.headDim;
    checkIndex("layer", layer, this.layers);
    checkIndex("head", head, this.kvHeads);
    checkKv(kv);
    if (!(rows instanceof Float32Array) || rows.length === 0 || rows.length % d !== 0) {
      throw invalidArgument("rows", `a non-empty Float32Array of n * headDim (${d}) values`, rows);
    }
    for (let i = 0; i < rows.length; i++) {
      if (!Number.isFinite(rows[i]!)) {
        const tensor = kv === 0 ? "keys" : "values";
        throw new NexusQuantError("INVALID_DATA", `rows[${i}] (vector ${Math.floor(i / d)}) of layer ${layer}, KV head ${head}, ${tensor} is ${rows[i]}; calibration needs finite values`, {
          arg: "rows",
          layer,
          head,
          kv,
          index: i,
        });
      }
    }
    const index = headIndex(this.kvHeads, layer, head, kv);
    const m = (this.#moments[index] ??= {
      count: 0,
      reference: Float64Array.from(rows.subarray(0, d)),
      sum: new Float64Array(d),
      outer: new Float64Array(d * d),
    });
    const x = this.#centered;
    for (let row = 0; row < rows.length; row += d) {
      for (let i = 0; i < d; i++) x[i] = rows[row + i]! - m.reference[i]!;
      for (let i = 0; i < d; i++) {
        const xi = x[i]!;
        m.sum[i] += xi;
        if (xi === 0) continue;
        const base = i * d;
        for (let j = i; j < d; j++) m.outer[base + j] += xi * x[j]!;
      }
    }
    m.count += rows.length / d;
  }

  /** Vectors added so far for one tensor. */
  count(layer: number, head: number, kv: 0 | 1): number {
    checkIndex("layer", layer, this.layers);
    checkIndex("head", head, this.kvHeads);
    checkKv(kv);
    return this.#moments[headIndex(this.kvHeads, layer, head, kv)]?.count ?? 0;
  }

  /**
   * Fits every tensor. Synchronous and O(d³) per tensor (~0.1 s at d = 128): report progress through
   * `onProgress`. The sums are kept, so more vectors may be added and finish() called again.
   */
  finish(options: FinishOptions = {}): TransformProfileHeads {
    const d = this.headDim;
    const needed = MIN_VECTORS_PER_DIM * d;
    let tokens = Infinity;
    this.#moments.forEach((m, index) => {
      const seen = m?.count ?? 0;
      if (seen < needed) {
        const { layer, head, kv } = this.#tensorOf(index);
        throw new NexusQuantError(
          "INVALID_ARGUMENT",
          `Too few vectors to calibrate layer ${layer}, KV head ${head}, ${kv === 0 ? "keys" : "values"}: saw ${seen}, need at least ${needed} (${MIN_VECTORS_PER_DIM} × headDim ${d}). Calibrate on more text.`,
          { arg: "rows", layer, head, kv, seen, needed },
        );
      }
      tokens = Math.min(tokens, seen);
    });
    const heads: HeadTensorTransform[] = [];
    const total = this.#moments.length;
    for (let index = 0; index < total; index++) {
      heads.push(fitTensor(this.#moments[index]!, d, bandSigns(this.seed, index, d / GROUP_SIZE)));
      options.onProgress?.(index + 1, total);
    }
    return { layers: this.layers, kvHeads: this.kvHeads, headDim: d, seed: this.seed, tokens, heads };
  }

  #tensorOf(index: number): { layer: number; head: number; kv: 0 | 1 } {
    const kv = (index % 2) as 0 | 1;
    const pair = (index - kv) / 2;
    return { layer: Math.floor(pair / this.kvHeads), head: pair % this.kvHeads, kv };
  }
}

/** Mean, basis, band scales, allocations and guard of one tensor from its running sums. */
function fitTensor(m: Moments, d: number, signs: Int8Array): HeadTensorTransform {
  const n = m.count;
  const delta = m.sum.map((s) => s / n);
  const mean = new Float64Array(d);
  for (let i = 0; i < d; i++) mean[i] = m.reference[i]! + delta[i]!;
  const covariance = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = i; j < d; j++) covariance[i * d + j] = covariance[j * d + i] = m.outer[i * d + j]! / n - delta[i]! * delta[j]!;
  }
  const { values, vectors } = symmetricEigen(covariance, d);

  // E‖x‖² = ‖μ‖² + tr C: the flat code sees the mean, the calibrated one adds it back exactly.
  let meanSquareNorm = 0;
  for (let i = 0; i < d; i++) meanSquareNorm += mean[i]! * mean[i]! + Math.max(0, values[i]!);
  const bands = d / GROUP_SIZE;
  // B8·Uᵀ gives each coordinate of band b the mean of its 8 eigenvalues as variance (exactly).
  const bandVariance = new Float64Array(bands);
  for (let b = 0; b < bands; b++) {
    let s = 0;
    for (let j = 0; j < GROUP_SIZE; j++) s += Math.max(0, values[b * GROUP_SIZE + j]!);
    bandVariance[b] = s / GROUP_SIZE;
  }
  const maxRms = Math.sqrt(Math.max(...bandVariance));
  const floor = Math.max(BAND_RMS_FLOOR_FRACTION * maxRms, BAND_RMS_FLOOR_OF_DATA * Math.sqrt(meanSquareNorm / d), BAND_RMS_ABSOLUTE_FLOOR);
  const bandRms = new Float32Array(bands);
  for (let b = 0; b < bands; b++) {
    bandRms[b] = Math.max(Math.sqrt(bandVariance[b]!), floor);
    // Allocate on the σ_b the encoder will use, so that the allocation and prediction agree with it.
    bandVariance[b] = bandRms[b]! * bandRms[b]!;
  }

  const rates = {} as Record<TransformBudget, Uint8Array>;
  const calibrated = {} as Record<TransformBudget, boolean>;
  const predictedNmse = {} as Record<TransformBudget, { flat: number; calibrated: number }>;
  for (const bits of TRANSFORM_BUDGETS) {
    rates[bits] = allocateRates(bandVariance, bands * bits);
    const flat = predictFlatNmse(bits);
    // All-zero data has no error to predict: claim no gain, keep the flat code.
    const ours = meanSquareNorm > 0 ? predictCalibratedNmse(bandVariance, rates[bits], meanSquareNorm) : flat;
    predictedNmse[bits] = { flat, calibrated: ours };
    // The 1-bit budget exists only calibrated (no flat 1-bit code): never guarded off.
    calibrated[bits] = bits === 1 || (meanSquareNorm > 0 && calibratedPays(flat, ours));
  }
  return { mean: Float32Array.from(mean), matrix: bandTransform(vectors, d, signs), bandRms, rates, calibrated, predictedNmse };
}
