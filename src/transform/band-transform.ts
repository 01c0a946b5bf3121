/**
 * The calibrated transform T = B8 · Uᵀ: the covariance's eigenvectors U (strongest first), cut into
 * bands of 8, each band mixed by a sign-flipped 8-point Hadamard B8_b = H8 · diag(s_b). Mixing gives
 * the 8 coordinates one lattice group sees equal variance (each is ±1/√8 of all 8 eigen-directions,
 * so its variance is the band's mean eigenvalue), which is what the E8 codec is tuned for; the
 * random signs keep the mix from lining up with structure in U.
 */
import { Mulberry32, deriveSeed } from "../shared/prng.js";
import { hadamard } from "./linalg.js";

/** Coordinates per lattice group, hence per band. */
export const GROUP_SIZE = 8;

const H8 = hadamard(GROUP_SIZE);

/**
 * ±1 signs for every band of one (layer, head, K|V) tensor: bands × 8, from a Mulberry32 seeded by
 * (seed, tensorIndex), so each tensor gets its own signs and the profile is reproducible from its seed.
 */
export function bandSigns(seed: number, tensorIndex: number, bands: number): Int8Array {
  const rng = new Mulberry32(deriveSeed(seed, tensorIndex));
  const signs = new Int8Array(bands * GROUP_SIZE);
  for (let i = 0; i < signs.length; i++) signs[i] = rng.nextUint32() >= 0x80000000 ? -1 : 1;
  return signs;
}

/**
 * T (d×d row-major, Float32) with rows 8b..8b+7 = H8 · diag(s_b) · (U[:, 8b..8b+7])ᵀ, computed in
 * Float64 and rounded once. `eigenvectors` is d×d row-major with the eigenvectors as columns.
 */
export function bandTransform(eigenvectors: Float64Array, d: number, signs: Int8Array): Float32Array {
  const t = new Float32Array(d * d);
  for (let band = 0; band < d / GROUP_SIZE; band++) {
    const first = band * GROUP_SIZE;
    for (let i = 0; i < GROUP_SIZE; i++) {
      for (let k = 0; k < d; k++) {
        let sum = 0;
        for (let j = 0; j < GROUP_SIZE; j++) sum += H8[i * GROUP_SIZE + j]! * signs[first + j]! * eigenvectors[k * d + first + j]!;
        t[(first + i) * d + k] = sum;
      }
    }
  }
  return t;
}
