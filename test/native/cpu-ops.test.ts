// The CPU ops (native/cpu/ops/, test/ops/cpu.ts) on their own: each against the references of the
// GPU parity suite (test/ops/parity-cases.mjs runCpuCase: quantize/dequantize, float64 scorers and
// attention, the JS selection, the CPU cache's own attention), plus the typed errors of bad input.
// The same functions are the oracle of the GPU parity suite (test/cuda/parity.test.ts).
import { describe, expect, it } from "vitest";
import { cpuAttention, cpuDecode, cpuEncode, cpuScore, cpuSelect } from "../ops/cpu.js";
import { cpuCases, runCpuCase } from "../ops/parity-cases.mjs";
import { CompressedKVCache } from "../../src/runtime/cache.js";
import { dequantizeSync, quantizeSync } from "../../src/runtime/codec.js";
import { floatsToHalfBits, halfBitsToFloats } from "../../src/runtime/half.js";
import { expectCode } from "../helpers.js";
import { transformProfileFor, transformTablesFor, transformTestKV } from "../ops/transform-fixture.js";

const api = {
  quantizeSync, dequantizeSync, floatsToHalfBits, halfBitsToFloats, CompressedKVCache, cpuEncode, cpuDecode, cpuAttention, cpuScore, cpuSelect,
  transformProfileFor, transformTablesFor, transformTestKV,
};

describe("CPU ops against the parity suite's references", () => {
  const cases = cpuCases();
  it("cover every op kind", () => {
    expect(new Set(cases.map((c) => c.kind))).toEqual(new Set(["codec", "score", "select", "attention-evicted", "attention-cache", "transform-codec", "transform-attention"]));
  });
  // The codec cases are many (every head_dim × bits × length); a stride keeps this suite quick.
  for (const c of cases.filter((x, i) => x.kind !== "codec" || i % 5 === 0)) {
    it(c.name, () => {
      const r = runCpuCase(api, c);
      expect(r.ok, r.detail).toBe(true);
    });
  }
});

describe("CPU ops: invalid input fails with a typed error", () => {
  it("cpuEncode refuses NaN (INVALID_DATA) and unknown options", () => {
    const data = new Float32Array(64 * 3);
    data[64 + 5] = NaN;
    expectCode(() => cpuEncode(data, { headDim: 64, bits: 2 }), "INVALID_DATA", /row 1/);
    expectCode(() => cpuEncode(new Float32Array(64), { headDim: 64, bits: 2, sed: 1 } as never), "INVALID_ARGUMENT", /did you mean seed/);
    expectCode(() => cpuEncode(new Float32Array(100), { headDim: 64, bits: 2 }), "INVALID_ARGUMENT", /multiple of headDim/);
  });

  it("cpuDecode checks sizes and keeps the rotated domain on request", () => {
    const x = Float32Array.from({ length: 128 }, (_, i) => Math.sin(i));
    const q = cpuEncode(x, { headDim: 64, bits: 3, seed: 7 });
    expectCode(() => cpuDecode(q.codes, q.scales, { headDim: 64, bits: 3, out: new Float32Array(64) }), "INVALID_ARGUMENT", /out\.length/);
    const a = cpuDecode(q.codes, q.scales, { headDim: 64, bits: 3, seed: 7, out: new Float32Array(128) });
    const b = cpuDecode(q.codes, q.scales, { headDim: 64, bits: 3, seed: 7, out: new Float32Array(128), unrotate: false });
    // The rotation is orthogonal: both domains hold the same norm, in different coordinates.
    const norm = (v: Float32Array) => Math.hypot(...v);
    expect(norm(b)).toBeCloseTo(norm(a), 3);
    expect(Array.from(b)).not.toEqual(Array.from(a));
  });

  it("the transform of an op: 1 bit only with one, an entry of the tables' shape and bits, attention's layer in range", () => {
    const shape = { layers: 1, kvHeads: 2, headDim: 64 };
    const tables = transformTablesFor(shape, 2, 1);
    const x = transformTestKV(shape, 0, 4).keys.subarray(0, 4 * 64);
    const at = (kv: 0 | 1, head = 0) => ({ tables, kvHeads: 2, layer: 0, kv, head });
    expectCode(() => cpuEncode(x, { headDim: 64, bits: 1 }), "INVALID_ARGUMENT", /1 only with a transform/);
    expectCode(() => cpuEncode(x, { headDim: 64, bits: 2, transform: at(1) }), "INVALID_ARGUMENT", /another head_dim or bits/);
    expectCode(() => cpuEncode(x, { headDim: 64, bits: 2, transform: at(0, 2) }), "INVALID_ARGUMENT", /head/);
    expectCode(() => cpuEncode(x, { headDim: 64, bits: 2, transform: { ...at(0), layer: 1 } }), "INVALID_ARGUMENT", /transform entry/);
    // The 1-bit value budget: d/8 code bytes per vector.
    const e = cpuEncode(x, { headDim: 64, bits: 1, transform: at(1) });
    expect(e.codes.length).toBe(4 * 8);
    const attention = (transformLayer: number) =>
      cpuAttention({
        kvHeads: 2, queryHeads: 2, headDim: 64, keyBits: 2, valueBits: 1, transform: tables, transformLayer,
        sequences: [{ compressed: 0, residual: 0, queries: new Float32Array(128), queryPositions: Int32Array.of(0) }],
      });
    expectCode(() => attention(1), "INVALID_ARGUMENT", /transformLayer/);
  });

  it("cpuScore and cpuSelect check shapes", () => {
    expectCode(() => cpuScore({ scorer: "random" as never, kvHeads: 1, tokens: 4, headDim: 8, keys: new Float32Array(32) }), "INVALID_ARGUMENT");
    expectCode(() => cpuScore({ scorer: "keynorm", kvHeads: 1, tokens: 4, headDim: 8, keys: new Float32Array(31) }), "INVALID_ARGUMENT");
    expectCode(() => cpuScore({ scorer: "observed", kvHeads: 2, tokens: 4, headDim: 8, keys: new Float32Array(64), queryHeads: 3, window: 2 }), "INVALID_ARGUMENT");
    expectCode(
      () => cpuSelect({ kvHeads: 1, tokens: 4, target: 5, sinkTokens: 0, recentWindow: 0, scores: new Float32Array(4), positions: new Int32Array(4) }),
      "INVALID_ARGUMENT",
      /<= tokens/,
    );
    // Keys-only scorers come back with one score per (head, token).
    const s = cpuScore({ scorer: "keynorm", kvHeads: 2, tokens: 3, headDim: 8, keys: Float32Array.from({ length: 48 }, (_, i) => i % 5) });
    expect(s.length).toBe(6);
  });

  it("cpuAttention checks each sequence's arrays", () => {
    expectCode(
      () => cpuAttention({ kvHeads: 2, queryHeads: 3, headDim: 64, keyBits: 2, valueBits: 2, sequences: [] }),
      "INVALID_ARGUMENT",
      /multiple of kvHeads/,
    );
    expectCode(
      () =>
        cpuAttention({
          kvHeads: 1, queryHeads: 1, headDim: 8, keyBits: 2, valueBits: 2,
          sequences: [{ compressed: 2, queries: new Float32Array(8), queryPositions: Int32Array.of(1) }],
        }),
      "INVALID_ARGUMENT",
      /keyCodes/,
    );
    // Only residual rows, no codes: plain softmax attention over FP16 rows.
    const [out] = cpuAttention({
      kvHeads: 1, queryHeads: 1, headDim: 8, keyBits: 2, valueBits: 2,
      sequences: [{
        compressed: 0, residual: 1, residualKeys: floatsToHalfBits(new Float32Array(8).fill(1)), residualValues: floatsToHalfBits(Float32Array.from({ length: 8 }, (_, i) => i)),
        queries: new Float32Array(8).fill(0.5), queryPositions: Int32Array.of(0),
      }],
    });
    expect(Array.from(out!)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });
});
