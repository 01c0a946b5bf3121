import { describe, expect, it } from "vitest";
import {
  GROUP_NMSE,
  TransformCalibrator,
  buildTransformProfile,
  encodeProfile,
  orthonormalityError,
  validateProfile,
  type TransformProfileHeads,
} from "../../src/transform/index.js";
import { expectCode } from "../helpers.js";
import { gaussianVectors } from "./synthetic.js";

const db = (flat: number, calibrated: number): number => 10 * Math.log10(flat / calibrated);

function calibrate(d: number, rows: Float32Array, seed?: number): TransformProfileHeads {
  const cal = new TransformCalibrator({ layers: 1, kvHeads: 1, headDim: d, ...(seed === undefined ? {} : { seed }) });
  cal.add(0, 0, 0, rows);
  cal.add(0, 0, 1, rows);
  return cal.finish();
}

const geometric = (d: number, ratio: number): number[] => Array.from({ length: d }, (_, i) => ratio ** i);

describe("TransformCalibrator on synthetic data", () => {
  const d = 64;
  const mean = Array.from({ length: d }, (_, i) => (i % 3) - 1);
  const anisotropic = gaussianVectors(4000, geometric(d, 0.9), 1, mean);

  it("beats flat by more than 3 dB at 2 bits on a geometrically decaying spectrum, and keeps the calibrated code", () => {
    const [keys] = calibrate(d, anisotropic).heads;
    const p = keys!.predictedNmse;
    expect(p[2].flat).toBe(GROUP_NMSE[2]);
    expect(db(p[2].flat, p[2].calibrated)).toBeGreaterThan(3);
    for (const bits of [2, 3, 4] as const) {
      expect(keys!.calibrated[bits]).toBe(true);
      expect(keys!.rates[bits].reduce((s, r) => s + r, 0)).toBe((d / 8) * bits);
    }
    // The strongest band gets the most bits, the weakest the fewest.
    expect(keys!.rates[2][0]).toBe(4);
    expect(keys!.rates[2][d / 8 - 1]).toBe(0);
  });

  it("fits the mean, an orthonormal T, and band scales equal to the variance T gives each coordinate", () => {
    const { heads } = calibrate(d, anisotropic);
    const h = heads[0]!;
    expect(orthonormalityError(h.matrix, d)).toBeLessThan(1e-5);
    const n = anisotropic.length / d;
    const empiricalMean = new Float64Array(d);
    for (let r = 0; r < n; r++) for (let k = 0; k < d; k++) empiricalMean[k] += anisotropic[r * d + k]! / n;
    h.mean.forEach((m, k) => expect(m).toBeCloseTo(empiricalMean[k]!, 5));
    // var(y_i) over the calibration data, y = T·(x − μ): every coordinate of band b has variance σ_b².
    const variance = new Float64Array(d);
    for (let r = 0; r < n; r++) {
      for (let i = 0; i < d; i++) {
        let y = 0;
        for (let k = 0; k < d; k++) y += h.matrix[i * d + k]! * (anisotropic[r * d + k]! - h.mean[k]!);
        variance[i] += (y * y) / n;
      }
    }
    variance.forEach((v, i) => expect(v / h.bandRms[Math.floor(i / 8)]! ** 2).toBeCloseTo(1, 3));
    for (let b = 1; b < d / 8; b++) expect(h.bandRms[b]!).toBeLessThanOrEqual(h.bandRms[b - 1]!);
  });

  it("keeps the flat code on isotropic data (the guard)", () => {
    const isotropic = gaussianVectors(4000, new Array(d).fill(1), 2);
    for (const h of calibrate(d, isotropic).heads) {
      for (const bits of [2, 3, 4] as const) {
        expect(h.calibrated[bits]).toBe(false);
        expect(Math.abs(db(h.predictedNmse[bits].flat, h.predictedNmse[bits].calibrated))).toBeLessThan(0.25);
        expect([...h.rates[bits]]).toEqual(new Array(d / 8).fill(bits));
      }
    }
  });

  it("floors the scale of a band calibration saw as empty and gives it 0 bits", () => {
    // Rank 48 of 64: the last two bands are empty.
    const lowRank = gaussianVectors(1000, [...new Array(48).fill(1), ...new Array(16).fill(0)], 3);
    const h = calibrate(d, lowRank).heads[0]!;
    expect(h.bandRms[7]!).toBeGreaterThan(0);
    expect(h.bandRms[7]! / h.bandRms[0]!).toBeCloseTo(1e-3, 4);
    expect([...h.rates[2]]).toEqual([3, 3, 3, 3, 2, 2, 0, 0]);
  });

  it("gives all-zero data positive scales and keeps the flat code", () => {
    const h = calibrate(16, new Float32Array(16 * 32)).heads[0]!;
    expect([...h.mean]).toEqual(new Array(16).fill(0));
    for (const s of h.bandRms) expect(s).toBeGreaterThan(0);
    expect(h.calibrated[2]).toBe(false);
    expect(orthonormalityError(h.matrix, 16)).toBeLessThan(1e-6);
    const p = buildTransformProfile(calibrate(16, new Float32Array(16 * 32)), { fingerprint: "zeros", source: "none" });
    expect(() => validateProfile(p)).not.toThrow();
  });

  it("is deterministic for a seed: the same input gives identical bytes; another seed other signs", () => {
    const rows = gaussianVectors(300, geometric(32, 0.8), 4, new Array(32).fill(0.5));
    const meta = { fingerprint: "f", source: "synthetic", createdAt: "2026-01-01T00:00:00.000Z" };
    const a = encodeProfile(buildTransformProfile(calibrate(32, rows, 5), meta));
    const b = encodeProfile(buildTransformProfile(calibrate(32, rows, 5), meta));
    expect(Buffer.compare(a, b)).toBe(0);
    const c = encodeProfile(buildTransformProfile(calibrate(32, rows, 6), meta));
    expect(Buffer.compare(a, c)).not.toBe(0);
  });

  it("gives the same result whether the vectors come in one call or many", () => {
    const rows = gaussianVectors(200, geometric(16, 0.7), 5);
    const whole = calibrate(16, rows);
    const cal = new TransformCalibrator({ layers: 1, kvHeads: 1, headDim: 16 });
    for (let at = 0; at < rows.length; at += 16 * 50) {
      cal.add(0, 0, 0, rows.subarray(at, at + 16 * 50));
      cal.add(0, 0, 1, rows.subarray(at, at + 16 * 50));
    }
    const parts = cal.finish();
    expect(parts.tokens).toBe(200);
    expect(parts.heads[0]!.matrix).toEqual(whole.heads[0]!.matrix);
    expect(parts.heads[0]!.rates).toEqual(whole.heads[0]!.rates);
  });
});

describe("TransformCalibrator bookkeeping", () => {
  it("fits every (layer, head, K|V) in profile order and reports progress", () => {
    const d = 16;
    const cal = new TransformCalibrator({ layers: 2, kvHeads: 3, headDim: d });
    for (let layer = 0; layer < 2; layer++) {
      for (let head = 0; head < 3; head++) {
        for (const kv of [0, 1] as const) {
          // Each tensor's mean tells where it went.
          cal.add(layer, head, kv, gaussianVectors(40, new Array(d).fill(1), layer * 10 + head * 2 + kv, new Array(d).fill(1000 * layer + 100 * head + 10 * kv)));
        }
      }
    }
    expect(cal.count(1, 2, 1)).toBe(40);
    const progress: [number, number][] = [];
    const result = cal.finish({ onProgress: (done, total) => progress.push([done, total]) });
    expect(progress).toEqual(Array.from({ length: 12 }, (_, i) => [i + 1, 12]));
    expect(result.heads).toHaveLength(12);
    const p = buildTransformProfile(result, { fingerprint: "x", source: "y" });
    expect(Math.round(p.heads[((1 * 3 + 2) * 2 + 1)]!.mean[0]! / 10)).toBe(121);
  });

  it("refuses too few vectors with how many it saw and needs", () => {
    const cal = new TransformCalibrator({ layers: 1, kvHeads: 2, headDim: 16 });
    for (const head of [0, 1]) for (const kv of [0, 1] as const) cal.add(0, head, kv, gaussianVectors(head === 1 && kv === 1 ? 31 : 32, new Array(16).fill(1), 1));
    expectCode(() => cal.finish(), "INVALID_ARGUMENT", /layer 0, KV head 1, values: saw 31, need at least 32.*more text/);
    const empty = new TransformCalibrator({ layers: 1, kvHeads: 1, headDim: 16 });
    expectCode(() => empty.finish(), "INVALID_ARGUMENT", /keys: saw 0, need at least 32/);
  });

  it("refuses NaN/Inf naming the tensor, and adds nothing from that call", () => {
    const cal = new TransformCalibrator({ layers: 2, kvHeads: 2, headDim: 16 });
    const rows = new Float32Array(32).fill(1);
    rows[19] = Infinity;
    expectCode(() => cal.add(1, 1, 0, rows), "INVALID_DATA", /vector 1\) of layer 1, KV head 1, keys is Infinity/);
    expect(cal.count(1, 1, 0)).toBe(0);
  });

  it("refuses wrong shapes and options", () => {
    expectCode(() => new TransformCalibrator({ layers: 1, kvHeads: 1, headDim: 12 }), "INVALID_ARGUMENT", /multiple of 8/);
    expectCode(() => new TransformCalibrator({ layers: 1, kvHeads: 1, headDim: 512 }), "INVALID_ARGUMENT");
    expectCode(() => new TransformCalibrator({ layers: 0, kvHeads: 1, headDim: 16 }), "INVALID_ARGUMENT", /options\.layers/);
    expectCode(() => new TransformCalibrator({ layers: 1, kvHeads: 1, headDim: 16, seed: -1 }), "INVALID_ARGUMENT", /options\.seed/);
    expectCode(() => new TransformCalibrator(null as never), "INVALID_ARGUMENT");
    const cal = new TransformCalibrator({ layers: 1, kvHeads: 1, headDim: 16 });
    expectCode(() => cal.add(0, 0, 0, new Float32Array(12)), "INVALID_ARGUMENT", /n \* headDim \(16\)/);
    expectCode(() => cal.add(0, 0, 0, new Float32Array(0)), "INVALID_ARGUMENT");
    expectCode(() => cal.add(0, 0, 0, new Float64Array(16) as never), "INVALID_ARGUMENT");
    expectCode(() => cal.add(1, 0, 0, new Float32Array(16)), "INVALID_ARGUMENT", /layer/);
    expectCode(() => cal.add(0, 1, 0, new Float32Array(16)), "INVALID_ARGUMENT", /head/);
    expectCode(() => cal.add(0, 0, 2 as never, new Float32Array(16)), "INVALID_ARGUMENT", /kv/);
    expect(() => cal.add(0, 0, 0, new Float32Array(16))).not.toThrow();
  });
});
