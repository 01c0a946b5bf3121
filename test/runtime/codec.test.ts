import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { NexusQuantError } from "../../src/errors.js";
import { expectCode, nmse } from "../helpers.js";
import { quantizedTensorBytes } from "../../src/format/index.js";
import { dequantize, dequantizeSync, measureMemory, quantize, quantizeSync, floatsToHalfBits, halfBitsToFloats } from "../../src/runtime/index.js";
import { gaussian } from "../../src/runtime/synthetic.js";
import { seededRandom } from "../../src/shared/prng.js";

const here = dirname(fileURLToPath(import.meta.url));

function gaussianData(vectors: number, d: number, seed: number): Float32Array {
  const g = gaussian(seededRandom(seed));
  return Float32Array.from({ length: vectors * d }, () => g());
}

describe("quantize / dequantize", () => {
  it("golden bytes: a fixed input encodes to the checked-in codes and scales (layout cannot drift silently)", () => {
    const golden = JSON.parse(readFileSync(join(here, "fixtures", "codec-golden.json"), "utf8")) as {
      headDim: number;
      seed: number;
      input: number[];
      cases: { bits: 2 | 3 | 4; codesHex: string; scales: number[]; headerHex: string }[];
    };
    for (const c of golden.cases) {
      const q = quantizeSync(Float32Array.from(golden.input), { headDim: golden.headDim, bits: c.bits, seed: golden.seed });
      expect(Buffer.from(q.codes).toString("hex"), `bits ${c.bits}`).toBe(c.codesHex);
      expect(Array.from(q.scales)).toEqual(c.scales);
      expect(Buffer.from(q.bytes.subarray(0, 32)).toString("hex")).toBe(c.headerHex);
    }
  });

  it("NMSE on Gaussian data (fixed seed) is within 3% of the benchmark figures and beats Lloyd-Max", () => {
    const x = gaussianData(4000, 128, 7);
    // docs/format.md: E8 0.0900 / 0.0255 / 0.00734; Lloyd-Max 0.1159 / 0.0340 / 0.00933
    const expected = { 2: 0.09, 3: 0.0255, 4: 0.00734 } as const;
    const lloydMax = { 2: 0.1159, 3: 0.034, 4: 0.00933 } as const;
    for (const bits of [2, 3, 4] as const) {
      const e = nmse(dequantizeSync(quantizeSync(x, { headDim: 128, bits })), x);
      expect(e / expected[bits]).toBeGreaterThan(0.97);
      expect(e / expected[bits]).toBeLessThan(1.03);
      expect(e).toBeLessThan(lloydMax[bits]);
    }
  });

  it("byteLength is vectors x (headDim x bits / 8 + 2) + 32 and equals src/format", () => {
    for (const [d, bits, n] of [[64, 2, 10], [128, 3, 7], [256, 4, 3], [96, 2, 5], [80, 3, 9]] as const) {
      const q = quantizeSync(gaussianData(n, d, 1), { headDim: d, bits });
      expect(q.byteLength).toBe(quantizedTensorBytes(n, d, bits));
      if ((d & (d - 1)) === 0) expect(q.byteLength).toBe(n * ((d * bits) / 8 + 2) + 32);
      expect(q.codes.length).toBe((n * d * bits) / 8);
      expect(q.scales.length).toBe(n);
    }
  });

  it("is deterministic across runs, thread counts, sync/async and f32/f16 input", async () => {
    // 4,000 vectors (512k elements): above the async threshold and split across threads, small enough
    // for a loaded 2-core machine.
    const x = gaussianData(4000, 128, 3);
    const a = quantizeSync(x, { headDim: 128, bits: 2, seed: 9 });
    const b = await quantize(x, { headDim: 128, bits: 2, seed: 9 });
    const saved = process.env.NEXUSQUANT_THREADS;
    process.env.NEXUSQUANT_THREADS = "1";
    const c = quantizeSync(x, { headDim: 128, bits: 2, seed: 9 });
    if (saved === undefined) delete process.env.NEXUSQUANT_THREADS;
    else process.env.NEXUSQUANT_THREADS = saved;
    expect(Buffer.from(b.bytes).equals(Buffer.from(a.bytes))).toBe(true);
    expect(Buffer.from(c.bytes).equals(Buffer.from(a.bytes))).toBe(true);
    const h = floatsToHalfBits(x);
    const fromHalf = quantizeSync(h, { headDim: 128, bits: 3 });
    const fromRounded = quantizeSync(halfBitsToFloats(h), { headDim: 128, bits: 3 });
    expect(Buffer.from(fromHalf.bytes).equals(Buffer.from(fromRounded.bytes))).toBe(true);
    const y = await dequantize(a);
    expect(Array.from(y.subarray(0, 256))).toEqual(Array.from(dequantizeSync(a).subarray(0, 256)));
  });

  it("a different seed gives different codes; rotate=false works; all-zero vectors round trip exactly", () => {
    const x = gaussianData(50, 64, 2);
    x.fill(0, 64, 128); // vector 1 is all zeros
    const a = quantizeSync(x, { headDim: 64, bits: 2, seed: 1 });
    const b = quantizeSync(x, { headDim: 64, bits: 2, seed: 2 });
    expect(Buffer.from(a.codes).equals(Buffer.from(b.codes))).toBe(false);
    const y = dequantizeSync(a);
    expect(Array.from(y.subarray(64, 128)).every((v) => v === 0 && !Object.is(v, -0))).toBe(true);
    const n = quantizeSync(x, { headDim: 64, bits: 4, rotate: false });
    expect(nmse(dequantizeSync(n), x)).toBeLessThan(0.02);
  });

  it("dequantize to f16 equals the f32 result rounded to FP16", () => {
    const q = quantizeSync(gaussianData(30, 128, 4), { headDim: 128, bits: 3 });
    const f = dequantizeSync(q);
    const h = dequantizeSync(q, { dtype: "f16" });
    expect(Array.from(h)).toEqual(Array.from(floatsToHalfBits(f)));
  });

  it("the tensor's bytes are counted by the accounting allocator", async () => {
    const x = gaussianData(1000, 128, 5);
    const m = await measureMemory(() => quantizeSync(x, { headDim: 128, bits: 2 }));
    expect(m.byCategory.tensor).toBe(m.result.byteLength);
    expect(m.delta).toBe(m.result.byteLength);
  });

  it("bad input is a typed error", () => {
    const x = gaussianData(4, 128, 1);
    expectCode(() => quantizeSync(x.subarray(0, 100), { headDim: 128, bits: 2 }), "INVALID_ARGUMENT", /multiple of headDim/);
    expectCode(() => quantizeSync(x, { headDim: 12, bits: 2 }), "INVALID_ARGUMENT", /headDim/);
    expectCode(() => quantizeSync(x, { headDim: 128, bits: 5 as 2 }), "INVALID_ARGUMENT", /bits/);
    expectCode(() => quantizeSync(new Float32Array(0), { headDim: 128, bits: 2 }), "INVALID_ARGUMENT", /empty/);
    expectCode(() => quantizeSync([1, 2] as unknown as Float32Array, { headDim: 8, bits: 2 }), "INVALID_ARGUMENT", /Float32Array/);
    const bad = x.slice();
    bad[3 * 128 + 5] = Infinity;
    expectCode(() => quantizeSync(bad, { headDim: 128, bits: 2 }), "INVALID_DATA", /vector 3/);
    bad[3 * 128 + 5] = NaN;
    expectCode(() => quantizeSync(bad, { headDim: 128, bits: 2 }), "INVALID_DATA", /vector 3/);
    expectCode(() => quantizeSync(new Float32Array(new SharedArrayBuffer(512)), { headDim: 128, bits: 2 }), "INVALID_ARGUMENT", /SharedArrayBuffer/);
    const detached = x.slice();
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    expectCode(() => quantizeSync(detached, { headDim: 128, bits: 2 }), "INVALID_ARGUMENT", /detached/);
    const q = quantizeSync(x, { headDim: 128, bits: 2 });
    expectCode(() => dequantizeSync(q, { out: new Float32Array(3) }), "INVALID_ARGUMENT", /out/);
    expectCode(() => dequantizeSync({ ...q, vectors: 99 }), "INVALID_ARGUMENT");
  });

  it("async quantize keeps the event loop responsive", async () => {
    // 8,000 vectors: tens of milliseconds of encoding at least, many 1 ms timer ticks if the loop is free.
    const x = gaussianData(8000, 128, 6);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    await quantize(x, { headDim: 128, bits: 3 });
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(0);
  });
});
