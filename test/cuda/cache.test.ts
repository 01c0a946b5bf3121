// CompressedKVCache({ backend: "cuda" }): the CUDA cache behind the same NativeCache, driven by the
// same compress policy as the CPU cache (native/cache/compress_policy.h) with the CUDA launchers as its
// ops (native/cuda/cuda_kv_cache.cc). Without a usable GPU only the refusals run here; with one, the
// CUDA cache is compared with the CPU cache on the golden scenarios of test/runtime/fixtures.
import { describe, expect, it } from "vitest";
import { CompressedKVCache, backendInfo, syntheticKV } from "../../src/runtime/index.js";
import { native } from "../../src/runtime/native.js";
import { expectCode } from "../helpers.js";
import { transformProfileFor } from "../ops/transform-fixture.js";

const info = backendInfo();
const gpu = info.cuda.available;
const small = { residualWindow: 16, pageTokens: 16, recentWindow: 8, sinkTokens: 2 };
const base = { layers: 2, kvHeads: 2, queryHeads: 4, headDim: 64, seed: 99 };

describe("CompressedKVCache backend \"cuda\": refusals (every machine)", () => {
  it.runIf(!gpu)("is BACKEND_UNAVAILABLE with the reason when no GPU is usable", () => {
    expectCode(() => new CompressedKVCache({ ...base, backend: "cuda" }), "BACKEND_UNAVAILABLE", /cuda/i);
  });

  it("auto stays on the CPU for caches (the CUDA cache is asked for by name)", () => {
    const c = new CompressedKVCache({ ...base });
    try {
      expect(c.stats().backend).toBe("cpu");
    } finally {
      c.dispose();
    }
  });

  it("the native cache refuses an unknown backend, and cuda in a build without CUDA", () => {
    const Native = native().NativeCache;
    const opts = {
      batch: 1, layers: 1, kvHeads: 1, headDim: 64, keyBits: 2, valueBits: 2, evictFraction: 0, sinkTokens: 0, recentWindow: 0,
      residualWindow: 16, pageTokens: 16, scorer: 1, seed: 0, scorerWindow: 8, poolKernel: 7, queryHeads: 1, budgetTokens: 0, ropeTheta: 0,
    };
    expect(() => new Native({ ...opts, backend: "tpu" as "cpu" })).toThrow(/"cpu" or "cuda"/); // bad input on purpose
    if (!info.cuda.compiled) {
      try {
        new Native({ ...opts, backend: "cuda" });
        expect.unreachable("a CPU-only build created a CUDA cache");
      } catch (e) {
        expect((e as { code?: string }).code).toBe("BACKEND_UNAVAILABLE");
        expect((e as Error).message).toMatch(/no CUDA backend/);
      }
    }
  });
});

describe.runIf(gpu)("CompressedKVCache backend \"cuda\" against the CPU cache (GPU only)", () => {
  function both(options: ConstructorParameters<typeof CompressedKVCache>[0], run: (c: CompressedKVCache) => Float32Array[]) {
    const cpu = new CompressedKVCache({ ...options, backend: "cpu" });
    const cuda = new CompressedKVCache({ ...options, backend: "cuda" });
    try {
      return { cpu: run(cpu), cuda: run(cuda), cpuBytes: cpu.serialize(), cudaBytes: cuda.serialize(), cpuStats: cpu.stats(), cudaStats: cuda.stats() };
    } finally {
      cpu.dispose();
      cuda.dispose();
    }
  }
  const scenario = (c: CompressedKVCache) => {
    const outs: Float32Array[] = [];
    for (let l = 0; l < c.layers; l++) {
      const kv = syntheticKV({ kvHeads: c.kvHeads, headDim: c.headDim, tokens: 133, seed: 5 + l });
      c.append(l, kv.keys, kv.values);
    }
    c.compressSync();
    for (let t = 0; t < 40; t++)
      for (let l = 0; l < c.layers; l++) {
        const kv = syntheticKV({ kvHeads: c.kvHeads, headDim: c.headDim, tokens: 1, startPosition: 133 + t, seed: 300 + t });
        c.append(l, kv.keys, kv.values);
      }
    for (let l = 0; l < c.layers; l++) outs.push(c.attention(l, syntheticKV({ kvHeads: c.queryHeads, headDim: c.headDim, tokens: 2, seed: 9 }).values));
    c.compressSync();
    for (let l = 0; l < c.layers; l++) outs.push(c.attention(l, syntheticKV({ kvHeads: c.queryHeads, headDim: c.headDim, tokens: 1, seed: 10 }).values));
    return outs;
  };
  const rel = (a: Float32Array, b: Float32Array) => {
    let num = 0, den = 0;
    for (let i = 0; i < a.length; i++) {
      num += (a[i]! - b[i]!) ** 2;
      den += b[i]! ** 2;
    }
    return Math.sqrt(num / den);
  };

  for (const preset of ["quant", "S"]) {
    it(`${preset} (no eviction): the same serialized bytes, attention within 1e-3`, () => {
      const r = both({ ...base, preset, spec: small }, scenario);
      expect(Buffer.from(r.cudaBytes).equals(Buffer.from(r.cpuBytes))).toBe(true);
      r.cuda.forEach((o, i) => expect(rel(o, r.cpu[i]!)).toBeLessThan(1e-3));
      expect(r.cudaStats.bytes.total).toBe(r.cpuStats.bytes.total);
    });
  }

  // Calibrated transforms (issue 26): a profile's tables copied to the device, bands at their own rates.
  const profile = transformProfileFor({ layers: base.layers, kvHeads: base.kvHeads, headDim: base.headDim });
  for (const [keyBits, valueBits] of [[2, 2], [2, 1], [3, 2]] as const) {
    it(`quant K${keyBits}V${valueBits} with a profile (no eviction): the same serialized bytes, attention within 1e-3`, () => {
      const r = both({ ...base, preset: "quant", spec: { ...small, keyBits, valueBits }, profile }, scenario);
      expect(Buffer.from(r.cudaBytes).equals(Buffer.from(r.cpuBytes))).toBe(true);
      r.cuda.forEach((o, i) => expect(rel(o, r.cpu[i]!)).toBeLessThan(1e-3));
      // The CPU cache lists the shared host tables, the CUDA cache its own device copy (+ the entry array).
      const { transform: cudaTables, total: cudaTotal, ...cudaRest } = r.cudaStats.bytes;
      const { transform: cpuTables, total: cpuTotal, ...cpuRest } = r.cpuStats.bytes;
      expect(cudaRest).toEqual(cpuRest);
      expect(cudaTables).toBeGreaterThanOrEqual(cpuTables);
      expect(cudaTotal - cudaTables).toBe(cpuTotal - cpuTables);
    });
  }

  it("balanced key-key with a profile: the CPU cache's token counts; the serialized CUDA cache loads on the CPU with the profile", () => {
    const r = both({ ...base, preset: "balanced", spec: { ...small, scorer: "key-key" }, profile }, scenario);
    expect(r.cudaStats.tokens).toEqual(r.cpuStats.tokens);
    const loaded = CompressedKVCache.deserialize(r.cudaBytes, { profile });
    try {
      expect(loaded.stats().tokens).toEqual(r.cudaStats.tokens);
    } finally {
      loaded.dispose();
    }
  });

  for (const scorer of ["keynorm", "key-key", "random"] as const) {
    it(`balanced, ${scorer}: the CPU cache's token counts and bytes; a serialized CUDA cache loads on the CPU`, () => {
      const r = both({ ...base, preset: "balanced", spec: { ...small, scorer } }, scenario);
      expect(r.cudaStats.tokens).toEqual(r.cpuStats.tokens);
      expect(r.cudaStats.bytes.total).toBe(r.cpuStats.bytes.total);
      const loaded = CompressedKVCache.deserialize(r.cudaBytes);
      loaded.dispose();
    });
  }
});
