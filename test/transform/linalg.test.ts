import { describe, expect, it } from "vitest";
import { hadamard, orthonormalityError, symmetricEigen } from "../../src/transform/index.js";
import { expectCode } from "../helpers.js";
import { randomOrthogonal, randomSymmetric } from "./synthetic.js";

/** max |A − V·diag(λ)·Vᵀ| */
function reconstructionError(a: Float64Array, values: Float64Array, vectors: Float64Array, d: number): number {
  let worst = 0;
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += vectors[i * d + k]! * values[k]! * vectors[j * d + k]!;
      worst = Math.max(worst, Math.abs(s - a[i * d + j]!));
    }
  }
  return worst;
}

const transpose = (m: Float64Array, d: number): Float64Array => {
  const t = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) t[j * d + i] = m[i * d + j]!;
  return t;
};

describe("symmetricEigen", () => {
  for (const d of [1, 2, 5, 8, 17, 33, 64]) {
    it(`reconstructs a random symmetric ${d}×${d} matrix with orthonormal eigenvectors, largest first`, () => {
      const a = randomSymmetric(d, 100 + d);
      const { values, vectors } = symmetricEigen(a, d);
      let scale = 0;
      for (const x of a) scale = Math.max(scale, Math.abs(x));
      expect(reconstructionError(a, values, vectors, d)).toBeLessThan(1e-12 * d * scale);
      expect(orthonormalityError(transpose(vectors, d), d)).toBeLessThan(1e-12);
      for (let i = 1; i < d; i++) expect(values[i]!).toBeLessThanOrEqual(values[i - 1]!);
    });
  }

  it("handles d = 128 well under a second, and is deterministic with a fixed eigenvector sign", () => {
    const d = 128;
    const a = randomSymmetric(d, 7);
    const start = performance.now();
    const first = symmetricEigen(a, d);
    expect(performance.now() - start).toBeLessThan(1000);
    expect(reconstructionError(a, first.values, first.vectors, d)).toBeLessThan(1e-10);
    const again = symmetricEigen(a, d);
    expect(again.values).toEqual(first.values);
    expect(again.vectors).toEqual(first.vectors);
    for (let j = 0; j < d; j++) {
      let pivot = 0;
      for (let k = 0; k < d; k++) if (Math.abs(first.vectors[k * d + j]!) > Math.abs(first.vectors[pivot * d + j]!)) pivot = k;
      expect(first.vectors[pivot * d + j]!).toBeGreaterThan(0);
    }
  });

  it("recovers a known spectrum, repeated and zero eigenvalues included", () => {
    const d = 16;
    const spectrum = [9, 9, 9, 4, 4, 1, 0.5, 0.25, 0, 0, 0, 0, 0, 0, 0, 0];
    const q = randomOrthogonal(d, 3); // rows orthonormal: A = Qᵀ diag Q
    const a = new Float64Array(d * d);
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) for (let k = 0; k < d; k++) a[i * d + j] += q[k * d + i]! * spectrum[k]! * q[k * d + j]!;
    const { values, vectors } = symmetricEigen(a, d);
    values.forEach((v, i) => expect(v).toBeCloseTo(spectrum[i]!, 12));
    expect(reconstructionError(a, values, vectors, d)).toBeLessThan(1e-12);
  });

  it("returns the identity basis for a zero or diagonal matrix", () => {
    const { values, vectors } = symmetricEigen(new Float64Array(9), 3);
    expect([...values]).toEqual([0, 0, 0]);
    expect(orthonormalityError(vectors, 3)).toBe(0);
    const diag = symmetricEigen(Float64Array.from([1, 0, 0, 0, 3, 0, 0, 0, 2]), 3);
    expect([...diag.values]).toEqual([3, 2, 1]);
  });

  it("refuses a wrong size", () => {
    expectCode(() => symmetricEigen(new Float64Array(8), 3), "INVALID_ARGUMENT", /d\*d = 9/);
    expectCode(() => symmetricEigen(new Float64Array(0), 0), "INVALID_ARGUMENT");
    expectCode(() => symmetricEigen(new Float64Array(257 * 257), 257), "INVALID_ARGUMENT");
  });
});

describe("hadamard", () => {
  it("is the normalized Sylvester matrix: orthonormal, first row constant, entries ±1/√n", () => {
    for (const n of [1, 2, 8, 64]) {
      const h = hadamard(n);
      expect(orthonormalityError(h, n)).toBeLessThan(1e-14);
      for (let j = 0; j < n; j++) expect(h[j]).toBe(1 / Math.sqrt(n));
      for (const x of h) expect(Math.abs(x)).toBe(1 / Math.sqrt(n));
    }
    // Sylvester order: row 1 of H8 alternates signs.
    expect([...hadamard(8).subarray(8, 16)].map(Math.sign)).toEqual([1, -1, 1, -1, 1, -1, 1, -1]);
    expectCode(() => hadamard(6), "INVALID_ARGUMENT");
  });

  it("orthonormalityError sees NaN as the worst error", () => {
    expect(orthonormalityError([NaN, 0, 0, 1], 2)).toBe(Infinity);
  });
});
