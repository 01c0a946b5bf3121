// The cache under a calibrated transform profile (issue 26): codes, attention on codes, bytes,
// serialization and the profile checks, on the CPU cache.
import { describe, expect, it } from "vitest";
import { CompressedKVCache, syntheticKV } from "../../src/runtime/index.js";
import { gaussian } from "../../src/runtime/synthetic.js";
import { seededRandom } from "../../src/shared/prng.js";
import { compressedLayout, transformTableBytes, type CompressionSpec } from "../../src/format/index.js";
import { TransformCalibrator, buildTransformProfile, type TransformProfile, type HeadTensorTransform } from "../../src/transform/index.js";
import { expectCode, nmse } from "../helpers.js";
import { trackedCaches } from "../runtime/tracked-caches.js";
import { denseAttention, relativeError } from "../runtime/reference.js";

const cache = trackedCaches();

/** Calibration on the first `tokens` of each layer's synthetic stream (the test data comes later in it). */
function syntheticProfile(layers: number, kvHeads: number, headDim: number, tokens = 1024): TransformProfile {
  const cal = new TransformCalibrator({ layers, kvHeads, headDim, seed: 3 });
  for (let l = 0; l < layers; l++) {
    const kv = syntheticKV({ kvHeads, headDim, tokens, seed: 40 + l });
    const per = tokens * headDim;
    for (let h = 0; h < kvHeads; h++) {
      cal.add(l, h, 0, kv.keys.subarray(h * per, (h + 1) * per));
      cal.add(l, h, 1, kv.values.subarray(h * per, (h + 1) * per));
    }
  }
  return buildTransformProfile(cal.finish(), { fingerprint: "sha256:synthetic", source: "syntheticKV" });
}

/** Later tokens of the same streams the profile was calibrated on. */
function testKV(layer: number, kvHeads: number, headDim: number, tokens: number) {
  return syntheticKV({ kvHeads, headDim, tokens, seed: 40 + layer, startPosition: 4096 });
}


const K2V2: Partial<CompressionSpec> = { keyBits: 2, valueBits: 2, residualWindow: 16 };

describe("CompressedKVCache with a calibrated transform profile", () => {
  const layers = 2, kvHeads = 2, headDim = 64;
  const profile = syntheticProfile(layers, kvHeads, headDim);

  it("codes K2V2 with lower error than the Hadamard code on data like its calibration", () => {
    const errors: Record<string, number[]> = { hadamard: [], calibrated: [] };
    for (const withProfile of [false, true]) {
      const c = cache({ layers, kvHeads, headDim, preset: "quant", spec: K2V2, ...(withProfile ? { profile } : {}) });
      for (let l = 0; l < layers; l++) {
        const kv = testKV(l, kvHeads, headDim, 512);
        c.append(l, kv.keys, kv.values);
      }
      c.compressSync();
      for (let l = 0; l < layers; l++) {
        const kv = testKV(l, kvHeads, headDim, 512);
        const m = c.materialize(l);
        errors[withProfile ? "calibrated" : "hadamard"]!.push(nmse(m.keys, kv.keys), nmse(m.values, kv.values));
      }
    }
    const db = errors.calibrated!.map((e, i) => 10 * Math.log10(errors.hadamard![i]! / e));
    // syntheticKV's key channels differ in scale and mean (outlier channels): the fitted basis pays
    // on every key tensor. Its values are nearly isotropic: the guard keeps the flat code there (the
    // prediction gains < 0.25 dB), so they are coded exactly as without a profile.
    for (let i = 0; i < db.length; i += 2) expect(db[i]).toBeGreaterThan(3);
    for (let i = 1; i < db.length; i += 2) expect(db[i]).toBeGreaterThanOrEqual(0);
  });

  it("is never worse than the Hadamard code on its own calibration data, tensor by tensor (2 and 3 bits)", () => {
    const tokens = 1024;
    for (const bits of [2, 3] as const) {
      const errors: number[][] = [[], []];
      for (const [i, withProfile] of [false, true].entries()) {
        const c = cache({ layers, kvHeads, headDim, preset: "quant", spec: { keyBits: bits, valueBits: bits, residualWindow: 16 }, ...(withProfile ? { profile } : {}) });
        for (let l = 0; l < layers; l++) {
          const kv = syntheticKV({ kvHeads, headDim, tokens, seed: 40 + l }); // exactly what syntheticProfile read
          c.append(l, kv.keys, kv.values);
        }
        c.compressSync();
        for (let l = 0; l < layers; l++) {
          const kv = syntheticKV({ kvHeads, headDim, tokens, seed: 40 + l });
          const m = c.materialize(l);
          const per = tokens * headDim;
          for (let h = 0; h < kvHeads; h++) {
            errors[i]!.push(nmse(m.keys.subarray(h * per, (h + 1) * per), kv.keys.subarray(h * per, (h + 1) * per)));
            errors[i]!.push(nmse(m.values.subarray(h * per, (h + 1) * per), kv.values.subarray(h * per, (h + 1) * per)));
          }
        }
      }
      errors[1]!.forEach((e, t) => expect(e, `bits ${bits}, tensor ${t}`).toBeLessThanOrEqual(errors[0]![t]!));
    }
  });

  it("on data without structure (isotropic Gaussian), the guard keeps the Hadamard code: identical bytes", () => {
    const gauss = gaussian(seededRandom(12345));
    const rows = (n: number) => Float32Array.from({ length: kvHeads * n * headDim }, gauss);
    const cal = new TransformCalibrator({ layers: 1, kvHeads, headDim });
    const calibration = [rows(2048), rows(2048)];
    for (let h = 0; h < kvHeads; h++)
      for (const kv of [0, 1] as const) cal.add(0, h, kv, calibration[kv]!.subarray(h * 2048 * headDim, (h + 1) * 2048 * headDim));
    const flatProfile = buildTransformProfile(cal.finish(), { fingerprint: "sha256:gaussian", source: "isotropic" });
    for (const h of flatProfile.heads) expect([h.calibrated[2], h.calibrated[3]]).toEqual([false, false]);
    const k = rows(200), v = rows(200);
    const bytes = [undefined, flatProfile].map((p) => {
      const c = cache({ layers: 1, kvHeads, headDim, preset: "quant", spec: { keyBits: 2, valueBits: 2, residualWindow: 8 }, ...(p ? { profile: p } : {}) });
      c.append(0, k, v);
      c.compressSync();
      return c.materialize(0);
    });
    expect(bytes[1]!.keys).toEqual(bytes[0]!.keys);
    expect(bytes[1]!.values).toEqual(bytes[0]!.values);
  });

  for (const preset of ["quant", "balanced", "max"]) {
    it(`${preset}: attention on the codes equals dequantize-then-dense attention (rel. error <= 1e-5)`, () => {
      const c = cache({ layers, kvHeads, queryHeads: 4, headDim, preset, spec: { residualWindow: 16 }, profile });
      for (let l = 0; l < layers; l++) {
        const kv = testKV(l, kvHeads, headDim, 301);
        c.append(l, kv.keys, kv.values);
      }
      c.compressSync();
      for (let l = 0; l < layers; l++) {
        const more = syntheticKV({ kvHeads, headDim, tokens: 5, seed: 90 + l, startPosition: 301 });
        c.append(l, more.keys, more.values); // residual rows beside the codes
        const nq = 3;
        const q = syntheticKV({ kvHeads: 4, headDim, tokens: nq, seed: 7 + l, outlierChannels: 0 }).values.map((x) => x * 0.3);
        const m = c.materialize(l);
        const appended = c.tokens(l).appended;
        const qpos = Array.from({ length: nq }, (_, j) => appended - nq + j);
        const want = denseAttention(q, 4, nq, qpos, m.keys, m.values, m.positions, kvHeads, m.tokens, headDim, 1 / Math.sqrt(headDim));
        expect(relativeError(c.attention(l, q), want)).toBeLessThanOrEqual(1e-5);
      }
    });
  }

  for (const [keyBits, valueBits] of [[2, 1], [1, 1]] as const) {
    it(`K${keyBits}V${valueBits}: a 1-bit budget (profile only) attends as dequantize-then-dense and holds what compressedLayout counts`, () => {
      const spec = { keyBits, valueBits, evictFraction: 0, residualWindow: 16 };
      expectCode(() => new CompressedKVCache({ layers, kvHeads, headDim, preset: "quant", spec }), "UNSUPPORTED", /calibrated transform profile/);
      const c = cache({ layers, kvHeads, queryHeads: 4, headDim, preset: "quant", spec, profile });
      for (let l = 0; l < layers; l++) {
        const kv = testKV(l, kvHeads, headDim, 300);
        c.append(l, kv.keys, kv.values);
      }
      c.compressSync();
      const q = syntheticKV({ kvHeads: 4, headDim, tokens: 2, seed: 9, outlierChannels: 0 }).values.map((x) => x * 0.3);
      const m = c.materialize(1);
      const want = denseAttention(q, 4, 2, [298, 299], m.keys, m.values, m.positions, kvHeads, m.tokens, headDim, 1 / Math.sqrt(headDim));
      expect(relativeError(c.attention(1, q), want)).toBeLessThanOrEqual(1e-5);
      expect(c.stats().bytes.total).toBe(compressedLayout({ layers, kvHeads, headDim, tokens: 300 }, c.spec, { transform: true }).bytes.total);
      // Round trip through the serialized form (version 2 records the tables' id; the profile reads it).
      const back = cache.track(CompressedKVCache.deserialize(c.serialize(), { profile }));
      expect(back.spec.keyBits).toBe(keyBits);
      expect(back.attention(1, q)).toEqual(c.attention(1, q));
    });
  }

  it("holds exactly what compressedLayout counts, the tables included", () => {
    for (const preset of ["quant", "balanced"]) {
      const c = cache({ layers, kvHeads, headDim, preset, profile });
      for (let l = 0; l < layers; l++) {
        const kv = testKV(l, kvHeads, headDim, 700);
        c.append(l, kv.keys, kv.values);
      }
      c.compressSync();
      const st = c.stats();
      const layout = compressedLayout({ layers, kvHeads, headDim, tokens: 700 }, c.spec, { transform: true });
      expect(st.bytes.transform).toBe(transformTableBytes(layers, kvHeads, headDim));
      expect(st.bytes.total).toBe(layout.bytes.total);
      expect(c.options.transform).toBe("calibrated");
    }
  });

  it("serializes the tables' id, not the tables: restored with the profile it attends identically, without it or with another it is refused", () => {
    const c = cache({ layers, kvHeads, headDim, preset: "balanced", profile });
    for (let l = 0; l < layers; l++) {
      const kv = testKV(l, kvHeads, headDim, 400);
      c.append(l, kv.keys, kv.values);
    }
    c.compressSync();
    const q = syntheticKV({ kvHeads, headDim, tokens: 2, seed: 5, outlierChannels: 0 }).values;
    const bytes = c.serialize();
    const plain = cache({ layers, kvHeads, headDim, preset: "balanced" });
    plain.append(0, testKV(0, kvHeads, headDim, 400).keys, testKV(0, kvHeads, headDim, 400).values);
    plain.compressSync();
    // Only the id travels: the state is as big as one without a profile, plus 32 bytes.
    expect(bytes.length).toBeLessThan(plain.serialize().length * 2 + 64);
    expectCode(() => CompressedKVCache.deserialize(bytes), "PROFILE_MISMATCH", /coded with a calibrated transform profile/);
    expectCode(() => CompressedKVCache.deserialize(bytes, { profile: syntheticProfile(layers, kvHeads, headDim, 512) }), "PROFILE_MISMATCH", /another transform profile/);
    // A cache without a profile loads with or without one.
    expect(cache.track(CompressedKVCache.deserialize(plain.serialize(), { profile })).options.transform).toBe("hadamard");
    const restored = cache.track(CompressedKVCache.deserialize(bytes, { profile }));
    expect(restored.options).toEqual(c.options);
    for (let l = 0; l < layers; l++) expect(restored.attention(l, q)).toEqual(c.attention(l, q));
    expect(restored.stats().bytes).toEqual(c.stats().bytes);
  });

  it("refuses a profile made for another shape (PROFILE_MISMATCH) and bad tables (INVALID_ARGUMENT)", () => {
    expectCode(() => new CompressedKVCache({ layers, kvHeads: 4, headDim, profile }), "PROFILE_MISMATCH", /kvHeads 2/);
    expectCode(() => new CompressedKVCache({ layers: 3, kvHeads, headDim, profile }), "PROFILE_MISMATCH", /calibrate/);
    const broken: TransformProfile = { ...profile, heads: profile.heads.map((h, i) => (i === 1 ? { ...h, bandRms: new Float32Array(h.bandRms.length).fill(-1) } : h)) };
    expectCode(() => new CompressedKVCache({ layers, kvHeads, headDim, profile: broken }), "INVALID_ARGUMENT");
  });
});

describe("calibrated transform: per-band rates", () => {
  it("a 0-bit band decodes to zero (the mean), a coded band to its values", () => {
    const d = 64, g = d / 8;
    const identity = new Float32Array(d * d);
    for (let i = 0; i < d; i++) identity[i * d + i] = 1;
    const rates = Uint8Array.from([4, 4, 4, 4, 0, 0, 0, 0]); // 16 bytes: the 2-bit budget
    const head: HeadTensorTransform = {
      mean: new Float32Array(d),
      matrix: identity,
      bandRms: new Float32Array(g).fill(1),
      rates: { 1: Uint8Array.from([4, 4, 0, 0, 0, 0, 0, 0]), 2: rates, 3: Uint8Array.from([4, 4, 4, 4, 4, 4, 0, 0]), 4: new Uint8Array(g).fill(4) },
      calibrated: { 1: true, 2: true, 3: true, 4: true },
      predictedNmse: { 1: { flat: 1, calibrated: 1 }, 2: { flat: 1, calibrated: 1 }, 3: { flat: 1, calibrated: 1 }, 4: { flat: 1, calibrated: 1 } },
    };
    const profile: TransformProfile = {
      version: 1,
      model: { fingerprint: "sha256:hand-made", layers: 1, kvHeads: 1, headDim: d },
      calibration: { tokens: 0, source: "by hand", seed: 0, createdAt: "2026-12-08T00:00:00.000Z" },
      heads: [head, head],
    };
    const c = cache({ layers: 1, kvHeads: 1, headDim: d, preset: "quant", spec: { keyBits: 2, valueBits: 2, residualWindow: 8 }, profile });
    const T = 64;
    const keys = new Float32Array(T * d), values = new Float32Array(T * d);
    for (let t = 0; t < T; t++)
      for (let i = 0; i < d; i++) {
        keys[t * d + i] = i < 32 ? Math.sin(t + i) : 0; // only coded bands
        values[t * d + i] = i >= 32 ? Math.cos(t * i) : 0; // only the 0-bit bands
      }
    c.append(0, keys, values);
    c.compressSync();
    const m = c.materialize(0);
    expect(m.values.every((v) => v === 0)).toBe(true);
    expect(nmse(m.keys, keys)).toBeLessThan(0.02); // 4 bits per element on the coded half
  });
});
