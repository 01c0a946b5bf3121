/**
 * Strict inputs (issue 17, items 5 and 6): every numeric option is checked against the format's
 * limits before it reaches native code, misspelt option keys are refused with the closest name, and
 * bad values are typed INVALID_ARGUMENT / INVALID_DATA errors, never NATIVE_ERROR.
 */
import { describe, expect, it } from "vitest";
import { CompressedKVCache, dequantizeSync, quantize, quantizeSync, syntheticKV } from "../../src/runtime/index.js";
import { verifyCompression } from "../../src/verify.js";
import { DEFAULT_SPEC, FORMAT_LIMITS, compressedLayout, validateSpec, type CompressionSpec } from "../../src/format/index.js";
import { NexusQuantError } from "../../src/errors.js";
import { closestName } from "../../src/validate.js";
import { expectCode, TIME_SCALE } from "../helpers.js";
import { trackedCaches } from "./tracked-caches.js";

const tracked = trackedCaches();
const base = { layers: 1, kvHeads: 2, headDim: 64 };
function make(opts: Partial<ConstructorParameters<typeof CompressedKVCache>[0]> = {}): CompressedKVCache {
  return tracked({ ...base, ...opts });
}

describe("the format's limits, checked before native code", () => {
  it("valid limits are accepted", () => {
    const c = make({ spec: { pageTokens: FORMAT_LIMITS.maxPageTokens, residualWindow: 8 } });
    expect(c.spec.pageTokens).toBe(FORMAT_LIMITS.maxPageTokens);
  });

  it("out-of-range spec values fail with INVALID_ARGUMENT naming the field and its limit", () => {
    const cases: [Partial<CompressionSpec>, RegExp][] = [
      [{ pageTokens: 2 ** 32 }, /\[8, 4096\] \(FORMAT_LIMITS\.maxPageTokens\) for spec\.pageTokens/],
      [{ pageTokens: 2 ** 31 }, /spec\.pageTokens/],
      [{ pageTokens: 2 ** 26 }, /4096.*spec\.pageTokens/],
      [{ residualWindow: 2 ** 32 }, /65536.*spec\.residualWindow/],
      [{ recentWindow: 2 ** 30 + 1 }, /1073741824\] \(FORMAT_LIMITS\.maxWindowTokens\) for spec\.recentWindow/],
      [{ sinkTokens: 2 ** 30, recentWindow: 2 ** 30 }, /int32.*spec\.sinkTokens \+ spec\.recentWindow/],
      [{ recentWindow: 2 ** 31 }, /spec\.recentWindow/],
      [{ sinkTokens: -1 }, /spec\.sinkTokens/],
      [{ evictFraction: Number.NaN }, /spec\.evictFraction/],
    ];
    for (const [spec, message] of cases) {
      expectCode(() => make({ spec }), "INVALID_ARGUMENT", message);
      // The same check guards the analytic layout (one definition).
      expectCode(() => compressedLayout({ ...base, tokens: 10 }, { ...DEFAULT_SPEC, ...spec }), "INVALID_ARGUMENT", message);
    }
    const e = (() => {
      try {
        make({ spec: { pageTokens: 2 ** 32 } });
      } catch (err) {
        return err as NexusQuantError;
      }
    })();
    expect(e?.details).toMatchObject({ arg: "spec.pageTokens", min: 8, max: FORMAT_LIMITS.maxPageTokens });
  });

  it("out-of-range shape options fail before native code (headDim 16384, huge queryHeads, layers, batch)", () => {
    expectCode(() => make({ headDim: 16384 }), "INVALID_ARGUMENT", /8192.*options\.headDim/);
    expectCode(() => make({ queryHeads: 4_294_967_288 }), "INVALID_ARGUMENT", /4096.*options\.queryHeads/);
    expectCode(() => make({ layers: 2 ** 32 }), "INVALID_ARGUMENT", /options\.layers/);
    expectCode(() => make({ batch: 1e6 }), "INVALID_ARGUMENT", /options\.batch/);
    expectCode(() => make({ budgetTokens: 2 ** 31 }), "INVALID_ARGUMENT", /options\.budgetTokens/);
    expectCode(() => make({ scorerWindow: 2 ** 32 }), "INVALID_ARGUMENT", /options\.scorerWindow/);
    expectCode(() => make({ poolKernel: 2 ** 31 + 1 }), "INVALID_ARGUMENT", /options\.poolKernel/);
    expectCode(() => make({ memoryLimitBytes: -1 }), "INVALID_ARGUMENT", /options\.memoryLimitBytes/);
    expectCode(() => quantizeSync(new Float32Array(16384), { headDim: 16384, bits: 2 }), "INVALID_ARGUMENT", /8192.*options\.headDim/);
  });
});

describe("strict options: misspelt keys are refused with the closest name", () => {
  it("closestName suggests near misses only", () => {
    expect(closestName("prest", ["preset", "spec", "seed"])).toBe("preset");
    expect(closestName("evictFracton", Object.keys(DEFAULT_SPEC))).toBe("evictFraction");
    expect(closestName("completelyDifferent", ["preset", "spec"])).toBeUndefined();
  });

  it("cache options, spec keys, compress/attention/materialize options", () => {
    expectCode(() => make({ prest: "max" } as never), "INVALID_ARGUMENT", /Unknown option options\.prest; did you mean preset\?/);
    expectCode(() => make({ spec: { evictFracton: 0.5 } as never }), "INVALID_ARGUMENT", /Unknown option spec\.evictFracton; did you mean evictFraction\?/);
    expectCode(() => validateSpec({ ...DEFAULT_SPEC, pagetokens: 64 } as never), "INVALID_ARGUMENT", /did you mean pageTokens\?/);
    const c = make();
    const kv = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 16, seed: 1 });
    c.append(0, kv.keys, kv.values);
    expectCode(() => c.append(0, kv.keys, kv.values, { sequnce: 0 } as never), "INVALID_ARGUMENT", /did you mean sequence\?/);
    expectCode(() => c.compressSync({ layr: 0 } as never), "INVALID_ARGUMENT", /did you mean layer\?/);
    expectCode(() => c.attention(0, new Float32Array(128), { scal: 1 } as never), "INVALID_ARGUMENT", /did you mean scale\?/);
    expectCode(() => c.materialize(0, { dtyp: "f16" } as never), "INVALID_ARGUMENT", /did you mean dtype\?/);
    expect(c.tokens(0).appended).toBe(16); // refused calls left the cache unchanged
    expectCode(() => quantizeSync(new Float32Array(64), { headDim: 64, bits: 2, rotat: false } as never), "INVALID_ARGUMENT", /did you mean rotate\?/);
  });

  it("verifyCompression options", async () => {
    await expect(verifyCompression({ model: "llama-3.1-8b", context: 10, preset: "quant", memoryLimit: 5 } as never)).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/did you mean memoryLimitBytes\?/),
    });
  });
});

describe("bad values are typed errors", () => {
  it("quantize and the cache agree: values beyond the FP16 range are INVALID_DATA in both", async () => {
    const data = new Float32Array(128).fill(0.5);
    data[70] = 3e38;
    expectCode(() => quantizeSync(data, { headDim: 64, bits: 2 }), "INVALID_DATA", /data\[70\] \(vector 1\).*65504/);
    await expect(quantize(data, { headDim: 64, bits: 2 })).rejects.toMatchObject({ code: "INVALID_DATA" });
    const c = make();
    expectCode(() => c.append(0, data, new Float32Array(128)), "INVALID_DATA", /FP16 range/);
    // The largest FP16 value is accepted by both and round-trips with a finite scale.
    data[70] = 65504;
    const q = quantizeSync(data, { headDim: 64, bits: 4 });
    expect(Array.from(dequantizeSync(q)).every(Number.isFinite)).toBe(true);
    c.append(0, data, data);
    expect(c.tokens(0).appended).toBe(1);
  });

  it("a non-boolean rotate is INVALID_ARGUMENT, for quantize and for a tampered QuantizedTensor", () => {
    expectCode(() => quantizeSync(new Float32Array(64), { headDim: 64, bits: 2, rotate: 1 as never }), "INVALID_ARGUMENT", /boolean.*options\.rotate/);
    const q = quantizeSync(new Float32Array(64).fill(1), { headDim: 64, bits: 2 });
    expectCode(() => dequantizeSync({ ...q, rotate: "yes" as never }), "INVALID_ARGUMENT", /q\.rotate/);
    expectCode(() => dequantizeSync({ ...q, seed: -1 }), "INVALID_ARGUMENT", /q\.seed/);
    expectCode(() => dequantizeSync({ ...q, headDim: 16384 }), "INVALID_ARGUMENT", /q\.headDim/);
  });

  it("NaN in observedQueries is INVALID_DATA and leaves the cache unchanged", () => {
    const c = make({ queryHeads: 4, spec: { scorer: "observed", evictFraction: 0.5, recentWindow: 8, sinkTokens: 2 } });
    const kv = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 64, seed: 3 });
    c.append(0, kv.keys, kv.values);
    const q = new Float32Array(4 * 4 * 64).fill(0.1);
    q[17] = Number.NaN;
    expectCode(() => c.compressSync({ sequence: 0, observedQueries: [q] }), "INVALID_DATA", /observedQueries\[0\]\[17\]/);
    expect(c.tokens(0)).toMatchObject({ held: 64, compressed: 0 });
    q[17] = 0.1;
    c.compressSync({ sequence: 0, observedQueries: [q] });
    expect(c.tokens(0).held).toBeLessThan(64);
  });

  it("an attention scale that overflows the logits is INVALID_DATA, not silent NaN", () => {
    const c = make();
    const kv = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 32, seed: 5 });
    c.append(0, kv.keys, kv.values);
    const q = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 1, seed: 6 }).keys;
    expect(Array.from(c.attention(0, q)).every(Number.isFinite)).toBe(true);
    // 3e38 is a float32, so it reaches the kernel and the logits overflow; 1e300 is not a float32 at all.
    expectCode(() => c.attention(0, q, { scale: 3e38 }), "INVALID_DATA", /overflow/);
    expectCode(() => c.attention(0, q, { scale: 1e300 }), "INVALID_ARGUMENT");
    expectCode(() => c.attention(0, q, { scale: Number.POSITIVE_INFINITY }), "INVALID_ARGUMENT", /options\.scale/);
  });
});

describe("verifyCompression refuses what cannot fit", () => {
  it("memoryLimitBytes: OUT_OF_MEMORY at once, with the bytes needed and the largest context that fits", async () => {
    const started = performance.now();
    const err = await verifyCompression({ model: "llama-3.1-70b", context: 100 * 2 ** 20, preset: "balanced", memoryLimitBytes: 2 ** 30 }).catch((e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(2000 * TIME_SCALE); // at once, not after a fill of minutes
    expect(err).toBeInstanceOf(NexusQuantError);
    const e = err as NexusQuantError;
    expect(e.code).toBe("OUT_OF_MEMORY");
    expect(e.details).toMatchObject({ availableBytes: 2 ** 30, source: "memoryLimitBytes" });
    const { neededBytes, largestContext } = e.details as { neededBytes: number; largestContext: number };
    expect(neededBytes).toBeGreaterThan(1e12);
    expect(largestContext).toBeGreaterThan(0);
    expect(e.message).toContain(`needs ${neededBytes} bytes`);
    expect(e.message).toContain(`largest context that fits is ${largestContext} tokens`);
  });

  it("a run inside the limit goes ahead", async () => {
    const arch = { id: "tiny", name: "tiny", source: "test", layers: 2, attentionHeads: 4, kvHeads: 2, headDim: 64, hiddenSize: 256, attention: "gqa" as const, notes: [] };
    const r = await verifyCompression({ model: arch, context: 200, preset: "balanced", memoryLimitBytes: 64 << 20, backend: "cpu" });
    expect(r.measuredBytes).toBeGreaterThan(0);
    expect(r.plannedPeakBytes).toBeLessThanOrEqual(64 << 20);
  });
});
