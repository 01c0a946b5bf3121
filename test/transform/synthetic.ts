// Seeded synthetic data for the transform tests: Gaussian vectors with a chosen spectrum in a random basis.
import { seededRandom } from "../../src/shared/prng.js";
import { gaussian } from "../../src/runtime/synthetic.js";

/** A standard normal stream on the project's seeded generator (src/runtime/synthetic.ts gaussian). */
export const gaussianStream = (seed: number): (() => number) => gaussian(seededRandom(seed));

/** A random d×d orthogonal matrix (row-major), by Gram–Schmidt on Gaussian rows. */
export function randomOrthogonal(d: number, seed: number): Float64Array {
  const g = gaussianStream(seed);
  const q = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let k = 0; k < d; k++) q[i * d + k] = g();
    for (let pass = 0; pass < 2; pass++) {
      for (let j = 0; j < i; j++) {
        let dot = 0;
        for (let k = 0; k < d; k++) dot += q[i * d + k]! * q[j * d + k]!;
        for (let k = 0; k < d; k++) q[i * d + k] -= dot * q[j * d + k]!;
      }
    }
    let norm = 0;
    for (let k = 0; k < d; k++) norm += q[i * d + k]! ** 2;
    for (let k = 0; k < d; k++) q[i * d + k] /= Math.sqrt(norm);
  }
  return q;
}

/**
 * n vectors x = mean + Qᵀ·(√λ ⊙ z), z standard normal: covariance Qᵀ·diag(λ)·Q, row-major Float32.
 */
export function gaussianVectors(n: number, eigenvalues: ArrayLike<number>, seed: number, mean?: ArrayLike<number>): Float32Array {
  const d = eigenvalues.length;
  const q = randomOrthogonal(d, seed + 1);
  const g = gaussianStream(seed);
  const out = new Float32Array(n * d);
  const z = new Float64Array(d);
  for (let row = 0; row < n; row++) {
    for (let i = 0; i < d; i++) z[i] = Math.sqrt(eigenvalues[i]!) * g();
    for (let k = 0; k < d; k++) {
      let x = mean?.[k] ?? 0;
      for (let i = 0; i < d; i++) x += q[i * d + k]! * z[i]!;
      out[row * d + k] = x;
    }
  }
  return out;
}

/** A random symmetric d×d matrix with entries of either sign. */
export function randomSymmetric(d: number, seed: number): Float64Array {
  const g = gaussianStream(seed);
  const m = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = i; j < d; j++) m[i * d + j] = m[j * d + i] = g();
  return m;
}
