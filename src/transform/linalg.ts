/**
 * The little dense linear algebra calibration needs, in Float64, on row-major square matrices.
 * Hand-written (no dependency) because the sizes are small (d ≤ 256) and the results must be
 * deterministic: the same covariance gives the same basis, bit for bit, on every machine, so that a
 * profile is reproducible from its calibration text and seed.
 */
import { invalidArgument } from "../errors.js";

/** Largest dimension symmetricEigen accepts: Jacobi is O(d³) per sweep, fine up to here. */
export const MAX_EIGEN_DIM = 256;

export interface SymmetricEigen {
  /** Eigenvalues, largest first. */
  values: Float64Array;
  /** d×d row-major; column j is the unit eigenvector of values[j]. */
  vectors: Float64Array;
}

// Jacobi converges quadratically: a handful of sweeps for d ≤ 256. The cap only stops a pathological
// input from looping; the result is still a valid orthonormal basis, just less diagonalizing.
const MAX_SWEEPS = 64;
// Stop once the off-diagonal mass is below rounding noise of the whole matrix.
const OFF_DIAGONAL_TOLERANCE = 1e-30;

/**
 * Eigen-decomposition of a symmetric matrix A = V·diag(values)·Vᵀ by cyclic Jacobi rotations, sorted
 * by eigenvalue descending. Each eigenvector's sign is fixed (its largest-magnitude component is
 * positive, the first such on ties), so the output depends on A alone. Reads only `matrix`; symmetry
 * is assumed (the upper triangle is mirrored down first).
 */
export function symmetricEigen(matrix: Float64Array, d: number): SymmetricEigen {
  if (!Number.isInteger(d) || d < 1 || d > MAX_EIGEN_DIM) throw invalidArgument("d", `an integer in [1, ${MAX_EIGEN_DIM}]`, d);
  if (matrix.length !== d * d) throw invalidArgument("matrix", `a Float64Array of d*d = ${d * d} elements`, matrix);
  const a = new Float64Array(matrix);
  for (let i = 0; i < d; i++) for (let j = i + 1; j < d; j++) a[j * d + i] = a[i * d + j]!;
  const v = identity(d);

  let total = 0;
  for (let i = 0; i < d * d; i++) total += a[i]! * a[i]!;
  for (let sweep = 0; sweep < MAX_SWEEPS; sweep++) {
    let off = 0;
    for (let p = 0; p < d; p++) for (let q = p + 1; q < d; q++) off += a[p * d + q]! * a[p * d + q]!;
    if (off <= OFF_DIAGONAL_TOLERANCE * total) break;
    for (let p = 0; p < d - 1; p++) {
      for (let q = p + 1; q < d; q++) rotate(a, v, d, p, q);
    }
  }

  const order = Array.from({ length: d }, (_, i) => i).sort((i, j) => a[j * d + j]! - a[i * d + i]! || i - j);
  const values = new Float64Array(d);
  const vectors = new Float64Array(d * d);
  order.forEach((from, to) => {
    values[to] = a[from * d + from]!;
    let pivot = 0;
    for (let k = 1; k < d; k++) if (Math.abs(v[k * d + from]!) > Math.abs(v[pivot * d + from]!)) pivot = k;
    const sign = v[pivot * d + from]! < 0 ? -1 : 1;
    for (let k = 0; k < d; k++) vectors[k * d + to] = sign * v[k * d + from]!;
  });
  return { values, vectors };
}

/** One Jacobi rotation in the (p, q) plane that zeroes a[p][q]: A ← JᵀAJ, V ← VJ. */
function rotate(a: Float64Array, v: Float64Array, d: number, p: number, q: number): void {
  const apq = a[p * d + q]!;
  if (apq === 0) return;
  const app = a[p * d + p]!;
  const aqq = a[q * d + q]!;
  // An element below the diagonal's rounding is zero already: rotating by it only adds noise.
  if (Math.abs(apq) < 1e-18 * (Math.abs(app) + Math.abs(aqq))) {
    a[p * d + q] = 0;
    a[q * d + p] = 0;
    return;
  }
  // The smaller of the two rotation angles (|t| ≤ 1), in the overflow-safe form.
  const theta = (aqq - app) / (2 * apq);
  const t = Math.abs(theta) > 1e150 ? 1 / (2 * theta) : Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
  const c = 1 / Math.sqrt(t * t + 1);
  const s = t * c;
  for (let k = 0; k < d; k++) {
    const akp = a[k * d + p]!;
    const akq = a[k * d + q]!;
    a[k * d + p] = c * akp - s * akq;
    a[k * d + q] = s * akp + c * akq;
  }
  for (let k = 0; k < d; k++) {
    const apk = a[p * d + k]!;
    const aqk = a[q * d + k]!;
    a[p * d + k] = c * apk - s * aqk;
    a[q * d + k] = s * apk + c * aqk;
  }
  a[p * d + q] = 0;
  a[q * d + p] = 0;
  for (let k = 0; k < d; k++) {
    const vkp = v[k * d + p]!;
    const vkq = v[k * d + q]!;
    v[k * d + p] = c * vkp - s * vkq;
    v[k * d + q] = s * vkp + c * vkq;
  }
}

export function identity(d: number): Float64Array {
  const m = new Float64Array(d * d);
  for (let i = 0; i < d; i++) m[i * d + i] = 1;
  return m;
}

/**
 * max |(M·Mᵀ − I)ᵢⱼ| of a d×d row-major matrix: 0 for an exactly orthonormal one, Infinity if any is NaN. Computes the upper
 * triangle only (the product is symmetric), d³/2 multiply-adds.
 */
export function orthonormalityError(m: ArrayLike<number>, d: number): number {
  let worst = 0;
  for (let i = 0; i < d; i++) {
    for (let j = i; j < d; j++) {
      let dot = 0;
      for (let k = 0; k < d; k++) dot += m[i * d + k]! * m[j * d + k]!;
      const err = Math.abs(dot - (i === j ? 1 : 0));
      // A NaN element must fail the check, not slip past every comparison.
      if (Number.isNaN(err)) return Infinity;
      if (err > worst) worst = err;
    }
  }
  return worst;
}

/** The normalized n-point Walsh–Hadamard matrix in Sylvester order (entries ±1/√n), n a power of 2. */
export function hadamard(n: number): Float64Array {
  if (!Number.isInteger(n) || n < 1 || (n & (n - 1)) !== 0) throw invalidArgument("n", "a power of two", n);
  const h = new Float64Array(n * n);
  const scale = 1 / Math.sqrt(n);
  for (let i = 0; i < n; i++) {
    // Sylvester: H[i][j] = (−1)^popcount(i & j).
    for (let j = 0; j < n; j++) h[i * n + j] = popcount(i & j) % 2 === 0 ? scale : -scale;
  }
  return h;
}

function popcount(x: number): number {
  let c = 0;
  for (; x !== 0; x &= x - 1) c++;
  return c;
}
