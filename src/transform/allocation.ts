/**
 * Which rate each band gets, and what that is predicted to cost: reverse water-filling on the
 * codec's own distortion curve (GROUP_NMSE), by exact dynamic programming, as validated in
 * bench/transform/study.py allocate(). Unlike the study, the rates must use the budget exactly:
 * every vector of a head then takes the same bytes as today's flat code, so pages stay uniform.
 */
import { NexusQuantError, invalidArgument } from "../errors.js";
import { ALLOCATION_RATES, GROUP_NMSE, type TransformBudget, type TransformRate } from "./codec-distortion.js";
import { GROUP_SIZE } from "./band-transform.js";

/**
 * Rates R_b ∈ `rates`, one per band, with Σ R_b = totalRate exactly, minimizing
 * Σ bandVariance[b] · GROUP_NMSE[R_b]. Ties go to the first solution found (bands in order, rates in
 * ascending order), so the result is deterministic.
 */
export function allocateRates(bandVariance: ArrayLike<number>, totalRate: number, rates: readonly TransformRate[] = ALLOCATION_RATES): Uint8Array {
  const bands = bandVariance.length;
  if (!Number.isSafeInteger(totalRate) || totalRate < 0) throw invalidArgument("totalRate", "an integer >= 0", totalRate);
  for (let b = 0; b < bands; b++) {
    if (!(bandVariance[b]! >= 0) || !Number.isFinite(bandVariance[b]!)) throw invalidArgument(`bandVariance[${b}]`, "a finite number >= 0", bandVariance[b]);
  }
  const width = totalRate + 1;
  // best[b][s]: least cost of bands 0..b−1 using exactly s; choice[b][s]: the rate band b−1 took.
  const best = new Float64Array((bands + 1) * width).fill(Infinity);
  const choice = new Uint8Array((bands + 1) * width);
  best[0] = 0;
  for (let b = 0; b < bands; b++) {
    for (let s = 0; s < width; s++) {
      const here = best[b * width + s]!;
      if (here === Infinity) continue;
      for (const r of rates) {
        if (s + r > totalRate) continue;
        const cost = here + bandVariance[b]! * GROUP_NMSE[r];
        const at = (b + 1) * width + s + r;
        if (cost < best[at]!) {
          best[at] = cost;
          choice[at] = r;
        }
      }
    }
  }
  if (best[bands * width + totalRate] === Infinity) {
    throw new NexusQuantError("INVALID_ARGUMENT", `A total rate of ${totalRate} cannot be split over ${bands} bands with rates ${rates.join(", ")}`, {
      arg: "totalRate",
    });
  }
  const out = new Uint8Array(bands);
  for (let b = bands, s = totalRate; b > 0; b--) {
    out[b - 1] = choice[b * width + s]!;
    s -= out[b - 1]!;
  }
  return out;
}

/**
 * Predicted NMSE of the calibrated scheme: the bands' coding error over E‖x‖² (the mean is added
 * back exactly, so it costs nothing but counts in the signal energy).
 */
export function predictCalibratedNmse(bandVariance: ArrayLike<number>, rates: ArrayLike<number>, meanSquareNorm: number): number {
  let err = 0;
  for (let b = 0; b < bandVariance.length; b++) err += bandVariance[b]! * GROUP_NMSE[rates[b] as TransformRate];
  return (GROUP_SIZE * err) / meanSquareNorm;
}

/**
 * Predicted NMSE of today's flat scheme: a Hadamard rotation spreads the energy evenly over the
 * groups, all coded at `bits`, so each loses the same fraction of it.
 */
export function predictFlatNmse(bits: TransformBudget): number {
  // No flat code has 1 bit per element: its error is the whole energy (nothing coded).
  return bits === 1 ? 1 : GROUP_NMSE[bits];
}

/**
 * The guard's margin: the calibrated code is used only where its prediction beats flat by at least
 * this much. The study found unguarded bases up to 0.6 dB worse than Hadamard on heads without
 * structure (the in-sample prediction follows noise in the eigenvalues), so a small gain is not trusted.
 */
export const GUARD_MIN_GAIN_DB = 0.25;

/** True when the calibrated prediction is at least GUARD_MIN_GAIN_DB better than flat. */
export function calibratedPays(flatNmse: number, calibratedNmse: number): boolean {
  return calibratedNmse > 0 ? 10 * Math.log10(flatNmse / calibratedNmse) >= GUARD_MIN_GAIN_DB : calibratedNmse === 0;
}
