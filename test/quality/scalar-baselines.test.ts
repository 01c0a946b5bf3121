/**
 * The scalar baselines of the quality table: their bit counts (what their ratios are computed from),
 * and their error against references — uniform codes stay within half a step of the group's range,
 * the rotation is orthonormal, and the TurboQuant-style quantizer reaches the Lloyd–Max distortion of
 * a Gaussian (Max 1960) on random vectors, as it should once the rotation has made coordinates Gaussian.
 */
import { describe, expect, it } from "vitest";
import { Mulberry32 } from "../../src/shared/prng.js";
import {
  kiviKeysInPlace,
  kiviValuesInPlace,
  parseScalarName,
  rotatedInPlace,
  rotationSigns,
  roundToHalf,
  scalarBitsPerElement,
  scalarBitsPerHead,
  scalarName,
  walshHadamard,
} from "../../bench/quality/scalar-baselines.js";

function gaussian(n: number, seed: number): Float32Array {
  const rng = new Mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(rng.nextFloat(), 1e-12);
    const v = rng.nextFloat();
    const r = Math.sqrt(-2 * Math.log(u));
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

const mse = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + (x - b[i]!) ** 2, 0) / a.length;

describe("bit counts", () => {
  it("charges codes plus every FP16 scale, zero point or norm", () => {
    // KIVI-2, group 64, d 64, 128 tokens: codes 2·128·64·2; keys 2 groups × 64 channels, values 128 tokens × 1 group, 32 bits each.
    expect(scalarBitsPerHead({ kind: "kivi", bits: 2 }, 128, 64)).toBe(2 * 128 * 64 * 2 + 32 * (2 * 64 + 128));
    expect(scalarBitsPerElement({ kind: "kivi", bits: 2 }, 64)).toBe(2.5);
    expect(scalarBitsPerElement({ kind: "kivi", bits: 4, group: 128 }, 128)).toBe(4.25);
    expect(scalarBitsPerElement({ kind: "hadamard", bits: 4 }, 64)).toBe(4.5);
    // The lattice codes' budget exactly: b bits + one FP16 per head vector.
    expect(scalarBitsPerElement({ kind: "turbo", bits: 3 }, 64)).toBe(3 + 16 / 64);
  });

  it("names round-trip and bad names are refused", () => {
    for (const n of ["KIVI-2", "KIVI-4/g32", "Had-4", "Turbo-3"]) expect(scalarName(parseScalarName(n))).toBe(n);
    for (const n of ["KIVI-5", "Had-2/g32", "turbo", "KIVI-2/g4"]) expect(() => parseScalarName(n), n).toThrow(/scalar baseline|KIVI group/);
  });
});

describe("quantizers", () => {
  it("KIVI keys are quantized per channel: an outlier channel does not spoil the others", () => {
    const tokens = 64;
    const d = 8;
    const keys = gaussian(tokens * d, 1);
    for (let t = 0; t < tokens; t++) keys[t * d + 3]! += 40; // a channel with a large offset, as real keys have
    const q = keys.slice();
    kiviKeysInPlace(q, tokens, d, 2, 64);
    for (let c = 0; c < d; c++) {
      let lo = Infinity;
      let hi = -Infinity;
      for (let t = 0; t < tokens; t++) (lo = Math.min(lo, keys[t * d + c]!)), (hi = Math.max(hi, keys[t * d + c]!));
      const step = roundToHalf((hi - lo) / 3);
      for (let t = 0; t < tokens; t++) expect(Math.abs(q[t * d + c]! - keys[t * d + c]!), `channel ${c}`).toBeLessThanOrEqual(step / 2 + 0.05);
    }
    expect(() => kiviKeysInPlace(q, 60, d, 2, 64)).toThrow(/multiple of the group/);
  });

  it("KIVI values are quantized per token; 4 bits err ~16× less (MSE) than 2 bits", () => {
    const x = gaussian(256 * 64, 2);
    const q2 = x.slice();
    const q4 = x.slice();
    kiviValuesInPlace(q2, 256, 64, 2, 64);
    kiviValuesInPlace(q4, 256, 64, 4, 64);
    // A uniform quantizer's error is step²/12 with step = range / (2^b − 1): 3 vs 15 levels → 25× apart.
    const ratio = mse(q2, x) / mse(q4, x);
    expect(ratio).toBeGreaterThan(15);
    expect(ratio).toBeLessThan(35);
  });

  it("the Walsh–Hadamard transform with signs is orthonormal and its own inverse", () => {
    const x = gaussian(64, 3);
    const y = x.slice();
    walshHadamard(y, 0, 64);
    const norm = (v: Float32Array) => Math.sqrt(v.reduce((s, a) => s + a * a, 0));
    expect(norm(y)).toBeCloseTo(norm(x), 4);
    walshHadamard(y, 0, 64);
    for (let i = 0; i < 64; i++) expect(y[i]).toBeCloseTo(x[i]!, 5);
    const signs = rotationSigns(64);
    expect(new Set(signs)).toEqual(new Set([1, -1]));
    expect(rotationSigns(64)).toEqual(signs); // fixed: every run uses the same rotation
  });

  it("TurboQuant-style codes reach the Gaussian Lloyd–Max distortion (relative MSE 0.1175 / 0.03454 / 0.009497)", () => {
    const d = 64;
    const count = 1500;
    const x = gaussian(count * d, 4);
    for (let t = 0; t < count; t++) x[t * d]! *= 8; // an outlier coordinate: the rotation spreads it out
    const energy = x.reduce((s, a) => s + a * a, 0) / x.length;
    const reference = { 2: 0.1175, 3: 0.03454, 4: 0.009497 } as const;
    for (const bits of [2, 3, 4] as const) {
      const q = x.slice();
      rotatedInPlace(q, count, d, bits, "turbo", rotationSigns(d));
      const relative = mse(q, x) / energy;
      expect(relative, `${bits} bits`).toBeGreaterThan(reference[bits] * 0.8);
      expect(relative, `${bits} bits`).toBeLessThan(reference[bits] * 1.25);
    }
  });

  it("rotated uniform codes beat unrotated ones on vectors with an outlier coordinate", () => {
    const d = 64;
    const count = 200;
    const x = gaussian(count * d, 5);
    for (let t = 0; t < count; t++) x[t * d + 7]! += 30;
    const rotated = x.slice();
    rotatedInPlace(rotated, count, d, 4, "hadamard", rotationSigns(d));
    const plain = x.slice();
    kiviValuesInPlace(plain, count, d, 4, 64); // per-vector uniform without the rotation
    expect(mse(rotated, x)).toBeLessThan(mse(plain, x) / 2);
  });
});
