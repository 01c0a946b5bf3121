import { describe, expect, it } from "vitest";
import { CompressedKVCache, syntheticKV, memoryStats, measureMemory, type CacheStats } from "../../src/runtime/index.js";
import { compressedLayout, fp16BytesPerTokenLayer, keptTokenCount, getPreset, pagingPays, residualBytes, residualCapacity, residualSlots, scoreBytesPerSlot } from "../../src/format/index.js";
import { NexusQuantError } from "../../src/errors.js";
import { expectCode } from "../helpers.js";
import { trackedCaches } from "./tracked-caches.js";
import { callNative, native } from "../../src/runtime/native.js";
import { floatsToHalfBits, halfBitsToFloats } from "../../src/runtime/half.js";
import { denseAttention, keyKeyScores, keyNormScores, relativeError, roundKeys, selectKept } from "./reference.js";

const cache = trackedCaches();

/**
 * The ratio of what a cache holds besides its token scores (reconstruct keeps one FP16 score per
 * token and KV head, for every slot the store has room for): the short-context bound is on the rest.
 */
const ratioBesidesScores = (st: CacheStats) => (st.bytes.total === st.bytes.scores ? 1 : st.baselineBytes / (st.bytes.total - st.bytes.scores));


/** Attention on codes vs dense attention over the dequantized tokens (materialize()). */
function checkAttentionMatchesDense(c: CompressedKVCache, layer: number, seq: number, nq: number, seed: number): number {
  const d = c.headDim;
  const q = syntheticKV({ kvHeads: c.queryHeads, headDim: d, tokens: nq, seed }).values;
  const m = c.materialize(layer, { sequence: seq });
  const appended = c.tokens(layer, seq).appended;
  const qpos = Array.from({ length: nq }, (_, j) => appended - nq + j);
  const got = c.attention(layer, q, { sequence: seq });
  const want = denseAttention(q, c.queryHeads, nq, qpos, m.keys, m.values, m.positions, c.kvHeads, m.tokens, d, 1 / Math.sqrt(d));
  return relativeError(got, want);
}

describe("CompressedKVCache: attention on codes", () => {
  for (const preset of ["quant", "balanced", "max"]) {
    for (const headDim of [64, 96, 128]) {
      it(`${preset}, head_dim ${headDim}: equals dequantize-then-dense attention (rel. error <= 1e-5)`, () => {
        const c = cache({ layers: 2, kvHeads: 2, queryHeads: 4, headDim, preset, spec: { residualWindow: 16 } });
        for (let l = 0; l < 2; l++) {
          const kv = syntheticKV({ kvHeads: 2, headDim, tokens: 301, seed: 10 + l });
          c.append(l, kv.keys, kv.values);
        }
        c.compressSync();
        // then a few decode tokens land in the FP16 residual window
        for (let t = 0; t < 5; t++) {
          const kv = syntheticKV({ kvHeads: 2, headDim, tokens: 1, startPosition: 301 + t, seed: 99 + t });
          c.append(0, kv.keys, kv.values);
        }
        expect(checkAttentionMatchesDense(c, 0, 0, 1, 5)).toBeLessThanOrEqual(1e-5);
        expect(checkAttentionMatchesDense(c, 0, 0, 3, 6)).toBeLessThanOrEqual(1e-5); // causal: 3 queries
        expect(checkAttentionMatchesDense(c, 1, 0, 1, 7)).toBeLessThanOrEqual(1e-5);
      });
    }
  }

  it("is close to exact FP32 attention on the original KV for quant (the codec's error, not a bug)", () => {
    const d = 128;
    const c = cache({ layers: 1, kvHeads: 2, queryHeads: 4, headDim: d, preset: "quant" });
    const kv = syntheticKV({ kvHeads: 2, headDim: d, tokens: 512, seed: 3 });
    c.append(0, kv.keys, kv.values);
    c.compressSync();
    // Queries of realistic scale (logits of a few units), not keys with their 20x outlier channels.
    const q = syntheticKV({ kvHeads: 4, headDim: d, tokens: 1, seed: 4, outlierChannels: 0 }).values.map((x) => x * 0.3);
    const pos = Int32Array.from({ length: 2 * 512 }, (_, i) => i % 512);
    const exact = denseAttention(q, 4, 1, [511], kv.keys, kv.values, pos, 2, 512, d, 1 / Math.sqrt(d));
    const err = relativeError(c.attention(0, q), exact);
    expect(err).toBeGreaterThan(0); // it is lossy
    expect(err).toBeLessThan(0.15);
  });
});

describe("CompressedKVCache: eviction", () => {
  const heads = 2, d = 64, T = 400;
  for (const scorer of ["keynorm", "key-key"] as const) {
    it(`${scorer}: keeps exactly the sinks, the recent window and the top-k per head`, () => {
      const spec = { scorer, evictFraction: 0.6, sinkTokens: 4, recentWindow: 32, residualWindow: 16 };
      const c = cache({ layers: 1, kvHeads: heads, headDim: d, preset: "balanced", spec, scorerWindow: 16 });
      const kv = syntheticKV({ kvHeads: heads, headDim: d, tokens: T, seed: 21 });
      c.append(0, kv.keys, kv.values);
      c.compressSync();
      const keys = roundKeys(kv.keys);
      const scores = scorer === "keynorm" ? keyNormScores(keys, heads, T, d) : keyKeyScores(keys, heads, T, d, 16);
      const target = keptTokenCount(T, c.spec);
      const want = selectKept(scores, heads, T, target, 4, 32);
      const m = c.materialize(0);
      expect(m.tokens).toBe(target);
      for (let h = 0; h < heads; h++) {
        const got = Array.from(m.positions.subarray(h * target, (h + 1) * target));
        // Scores are computed in f32 natively and f64 here: allow differences only between near-tied tokens.
        const cutoff = [...want[h]!].filter((t) => t >= 4 && t < T - 32).map((t) => scores[h * T + t]!).sort((a, b) => a - b)[0]!;
        const differ = got.filter((t) => !want[h]!.includes(t)).concat(want[h]!.filter((t) => !got.includes(t)));
        for (const t of differ) expect(Math.abs(scores[h * T + t]! - cutoff)).toBeLessThan(1e-4 * Math.max(1, Math.abs(cutoff)));
        expect(differ.length).toBeLessThanOrEqual(2);
        for (let t = 0; t < 4; t++) expect(got).toContain(t);
        for (let t = T - 32; t < T; t++) expect(got).toContain(t);
      }
    });
  }

  it("heads evict independently but keep the same count (rectangular storage)", () => {
    const c = cache({ layers: 1, kvHeads: 4, headDim: 64, preset: "max" });
    const kv = syntheticKV({ kvHeads: 4, headDim: 64, tokens: 600, seed: 8 });
    c.append(0, kv.keys, kv.values);
    c.compressSync();
    const m = c.materialize(0);
    const sets = [0, 1, 2, 3].map((h) => Array.from(m.positions.subarray(h * m.tokens, (h + 1) * m.tokens)).join(","));
    expect(new Set(sets).size).toBeGreaterThan(1);
    for (let h = 0; h < 4; h++) {
      const p = m.positions.subarray(h * m.tokens, (h + 1) * m.tokens);
      for (let i = 1; i < p.length; i++) expect(p[i]!).toBeGreaterThan(p[i - 1]!); // in order, no duplicates
    }
  });

  it("evicted tokens are physically gone: bytes shrink with the kept count", () => {
    const shape = { layers: 1, kvHeads: 2, headDim: 128 };
    const a = cache({ ...shape, preset: "quant" });
    const b = cache({ ...shape, preset: "max" });
    const kv = syntheticKV({ kvHeads: 2, headDim: 128, tokens: 2000, seed: 2 });
    for (const c of [a, b]) {
      c.append(0, kv.keys, kv.values);
      c.compressSync();
    }
    expect(b.stats().bytes.codes).toBeLessThan(a.stats().bytes.codes * 0.35);
    expect(b.tokens(0).held).toBe(keptTokenCount(2000, b.spec));
  });

  it("random, observed and accumulated scorers run and keep the protected tokens", () => {
    for (const scorer of ["random", "observed", "accumulated"] as const) {
      const c = cache({ layers: 2, kvHeads: 2, queryHeads: 4, headDim: 64, preset: "balanced", spec: { scorer, recentWindow: 8, sinkTokens: 2 } });
      const kv = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 200, seed: 5 });
      c.append(0, kv.keys, kv.values);
      c.append(1, kv.keys, kv.values);
      if (scorer === "accumulated") c.attention(0, syntheticKV({ kvHeads: 4, headDim: 64, tokens: 4, seed: 6 }).keys);
      const observed = scorer === "observed" ? [syntheticKV({ kvHeads: 4, headDim: 64, tokens: 8, seed: 7 }).keys, null] : undefined;
      c.compressSync({ sequence: 0, observedQueries: observed });
      const m = c.materialize(0);
      for (let h = 0; h < 2; h++) {
        const p = Array.from(m.positions.subarray(h * m.tokens, (h + 1) * m.tokens));
        expect(p.slice(0, 2)).toEqual([0, 1]);
        expect(p.slice(-8)).toEqual([192, 193, 194, 195, 196, 197, 198, 199]);
      }
    }
  });
});

describe("CompressedKVCache: batches, appends, budget, bytes", () => {
  it("batch > 1 holds independent sequences of different lengths", () => {
    const c = cache({ layers: 1, kvHeads: 2, headDim: 64, batch: 3, preset: "balanced" });
    const lengths = [100, 257, 33];
    lengths.forEach((T, s) => {
      const kv = syntheticKV({ kvHeads: 2, headDim: 64, tokens: T, seed: s });
      c.append(0, kv.keys, kv.values, { sequence: s });
    });
    c.compressSync();
    lengths.forEach((T, s) => {
      expect(c.tokens(0, s)).toMatchObject({ appended: T, held: keptTokenCount(T, c.spec) });
      expect(checkAttentionMatchesDense(c, 0, s, 1, 40 + s)).toBeLessThanOrEqual(1e-5);
    });
  });

  it("append after compress: the residual fills, flushes to pages in blocks, positions continue", () => {
    const c = cache({ layers: 1, kvHeads: 2, headDim: 64, preset: "quant", spec: { residualWindow: 8 } });
    const kv = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 50, seed: 1 });
    c.append(0, kv.keys, kv.values);
    c.compressSync();
    for (let t = 0; t < 20; t++) {
      const one = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 1, startPosition: 50 + t, seed: 100 + t });
      c.append(0, one.keys, one.values);
    }
    expect(c.tokens(0)).toMatchObject({ appended: 70, held: 70, compressed: 66 }); // 50 + two blocks of 8; 4 in the residual
    const m = c.materialize(0);
    expect(Array.from(m.positions.subarray(0, 70))).toEqual(Array.from({ length: 70 }, (_, i) => i));
    expect(checkAttentionMatchesDense(c, 0, 0, 1, 3)).toBeLessThanOrEqual(1e-5);
  });

  it("a second compress keeps the preset's count for the true length (the ratio stays stable)", () => {
    const c = cache({ layers: 1, kvHeads: 2, headDim: 64, preset: "balanced" });
    const kv = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 500, seed: 1 });
    c.append(0, kv.keys, kv.values);
    c.compressSync();
    const more = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 300, startPosition: 500, seed: 2 });
    c.append(0, more.keys, more.values);
    c.compressSync();
    expect(c.tokens(0).held).toBe(keptTokenCount(800, c.spec));
  });

  it("budget mode never holds more than the budget", () => {
    const c = cache({ layers: 1, kvHeads: 2, headDim: 64, preset: "balanced", budgetTokens: 100, spec: { residualWindow: 16, recentWindow: 16 } });
    const kv = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 90, seed: 1 });
    c.append(0, kv.keys, kv.values);
    c.compressSync();
    for (let t = 0; t < 200; t++) {
      const one = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 1, startPosition: 90 + t, seed: t });
      c.append(0, one.keys, one.values);
      expect(c.tokens(0).held).toBeLessThanOrEqual(100 + 16);
      expect(c.tokens(0).compressed).toBeLessThanOrEqual(100);
    }
    expect(c.tokens(0).appended).toBe(290);
  });

  it("FP16 input gives the same cache as the equivalent f32 input", () => {
    const kv = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 120, seed: 4 });
    const a = cache({ layers: 1, kvHeads: 2, headDim: 64, preset: "balanced" });
    const b = cache({ layers: 1, kvHeads: 2, headDim: 64, preset: "balanced" });
    a.append(0, kv.keys, kv.values);
    b.append(0, floatsToHalfBits(kv.keys), floatsToHalfBits(kv.values));
    a.compressSync();
    b.compressSync();
    expect(Buffer.from(a.serialize()).equals(Buffer.from(b.serialize()))).toBe(true);
  });

  for (const preset of ["quant", "high", "asym", "balanced", "max", "S", "M", "XL"]) {
    it(`${preset}: allocator bytes equal compressedLayout exactly (batch 2, different lengths)`, async () => {
      const shape = { layers: 3, kvHeads: 2, headDim: 96 };
      const lengths = [700, 1201];
      const m = await measureMemory(() => {
        const c = new CompressedKVCache({ ...shape, batch: 2, preset });
        lengths.forEach((T, s) => {
          for (let l = 0; l < 3; l++) {
            const kv = syntheticKV({ kvHeads: 2, headDim: 96, tokens: T, seed: l + 10 * s });
            c.append(l, kv.keys, kv.values, { sequence: s });
          }
        });
        c.compressSync();
        return c;
      });
      const layout = compressedLayout({ ...shape, tokens: lengths }, getPreset(preset).spec);
      expect(m.delta).toBe(layout.bytes.total);
      expect(m.result.stats().bytes.total).toBe(layout.bytes.total);
      expect(m.byCategory.codes).toBe(layout.bytes.codes);
      expect(m.byCategory.positions).toBe(layout.bytes.positions);
      const before = memoryStats().host.totalBytes;
      m.result.dispose();
      expect(memoryStats().host.totalBytes).toBe(before - layout.bytes.total);
    });
  }

  for (const scorer of ["reconstruct", "accumulated", "key-key"] as const) {
    it(`scorer ${scorer}: the scores it keeps are in compressedLayout too, after every compress (batch 2)`, async () => {
      const shape = { layers: 2, kvHeads: 2, headDim: 64, queryHeads: 4 };
      const spec = { ...getPreset("balanced").spec, scorer };
      const m = await measureMemory(async () => {
        const c = new CompressedKVCache({ ...shape, batch: 2, spec });
        for (const [round, lengths] of [[0, [300, 170]], [1, [90, 260]]] as const) {
          lengths.forEach((T, s) => {
            const start = round === 0 ? 0 : [300, 170][s]!;
            for (let l = 0; l < 2; l++) {
              const kv = syntheticKV({ kvHeads: 2, headDim: 64, tokens: T, startPosition: start, seed: l + 10 * s + 100 * round });
              c.append(l, kv.keys, kv.values, { sequence: s });
              if (scorer === "reconstruct") {
                const q = syntheticKV({ kvHeads: 4, headDim: 64, tokens: 8, seed: 7 + l }).keys;
                const own = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 8, seed: 9 + l });
                c.reconstructionAttention(l, q, own.keys, own.values, { sequence: s, positions: Int32Array.from({ length: 8 }, (_, j) => start + T + j), recentTokens: T });
              }
              if (scorer === "accumulated") c.attention(l, syntheticKV({ kvHeads: 4, headDim: 64, tokens: 1, seed: 5 }).keys, { sequence: s });
            }
          });
          c.compressSync();
        }
        return c;
      });
      const layout = compressedLayout({ layers: 2, kvHeads: 2, headDim: 64, tokens: [390, 430] }, spec);
      expect(layout.bytes.scores).toBe(scorer === "key-key" ? 0 : 2 * 2 * (layout.keptTokens[0]! + layout.keptTokens[1]!) * (scorer === "reconstruct" ? 2 : 4));
      expect(m.delta).toBe(layout.bytes.total);
      expect(m.byCategory.scores).toBe(layout.bytes.scores);
      expect(m.result.stats().bytes.scores).toBe(layout.bytes.scores);
      m.result.dispose();
    });
  }
});

describe("CompressedKVCache: short contexts (the FP16 residual grows with the tokens)", () => {
  // One 64-slot page is a fixed cost: below ~9-13 tokens (head_dim 128) it outweighs FP16, so such
  // stores stay FP16 (pagingPays, tested below); from 16 tokens every preset pages.
  for (const preset of ["quant", "high", "asym", "balanced", "max", "S", "M", "XL"]) {
    it(`${preset}: ratio >= 1 from 16 tokens, and allocator == layout + residualSlots while decode appends grow the residual`, () => {
      const shape = { layers: 1, kvHeads: 2, headDim: 128 };
      const c = cache({ ...shape, preset });
      const kv = syntheticKV({ kvHeads: 2, headDim: 128, tokens: 16, seed: 3 });
      c.append(0, kv.keys, kv.values);
      c.compressSync();
      const st = c.stats();
      expect(ratioBesidesScores(st)).toBeGreaterThanOrEqual(1);
      const layout = compressedLayout({ ...shape, tokens: 16 }, c.spec);
      expect(st.bytes.total).toBe(layout.bytes.total);
      for (let t = 1; t <= 40; t++) {
        const one = syntheticKV({ kvHeads: 2, headDim: 128, tokens: 1, startPosition: 15 + t, seed: t });
        c.append(0, one.keys, one.values);
        // Powers of two as far as the pages leave room within FP16 (residualSlots), so the ratio stays
        // >= 1; the scores (if the scorer keeps them) have room for the same slots.
        const slots = residualSlots(2, 128, c.spec, layout.pagesPerLayer[0]!, t, 16 + t);
        expect(slots).toBeLessThanOrEqual(residualCapacity(t, c.spec) || t);
        expect(c.stats().bytes.residual).toBe(slots * fp16BytesPerTokenLayer(2, 128));
        expect(c.stats().bytes.total).toBe(layout.bytes.total + slots * (fp16BytesPerTokenLayer(2, 128) + 2 * scoreBytesPerSlot(c.spec)));
        expect(ratioBesidesScores(c.stats())).toBeGreaterThanOrEqual(1);
      }
    });
  }

  it("an uncompressed cache holds at most 1.25x its FP16 bytes, from the first token", () => {
    const c = cache({ layers: 1, kvHeads: 2, headDim: 64, preset: "balanced" });
    for (let t = 0; t < 300; t++) {
      const one = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 1, startPosition: t, seed: t });
      c.append(0, one.keys, one.values);
      const st = c.stats();
      expect(st.bytes.total - st.bytes.scores).toBeLessThanOrEqual(1.25 * st.baselineBytes + 2 * 2 * 64 * 2);
    }
  });
});

describe("CompressedKVCache: ratio >= 1 from the first token (a short store stays FP16 until paging pays)", () => {
  const PRESETS_ALL = ["quant", "high", "asym", "balanced", "max", "S", "M", "L", "XL"];
  for (const headDim of [64, 128]) {
    it(`head_dim ${headDim}, 1..20 tokens, every preset: allocator bytes == compressedLayout, ratio >= 1`, async () => {
      const shape = { layers: 2, kvHeads: 2, headDim };
      let fp16Kept = 0, paged = 0;
      for (const preset of PRESETS_ALL) {
        for (let T = 1; T <= 20; T++) {
          const m = await measureMemory(() => {
            const c = cache({ ...shape, preset });
            for (let l = 0; l < 2; l++) {
              const kv = syntheticKV({ kvHeads: 2, headDim, tokens: T, seed: T + 100 * l });
              c.append(l, kv.keys, kv.values);
            }
            c.compressSync();
            return c;
          });
          const layout = compressedLayout({ ...shape, tokens: T }, m.result.spec);
          const st = m.result.stats();
          expect([preset, T, m.delta]).toEqual([preset, T, layout.bytes.total]);
          expect(st.bytes.total).toBe(layout.bytes.total);
          expect(st.bytes.residual).toBe(layout.bytes.residual);
          expect([preset, T, ratioBesidesScores(st) >= 1]).toEqual([preset, T, true]);
          expect(m.result.tokens(1)).toEqual({ held: T, appended: T, compressed: layout.fp16Tokens[0]! > 0 ? 0 : T, evicted: 0 });
          if (layout.fp16Tokens[0]! > 0) fp16Kept++;
          else paged++;
          m.result.dispose();
        }
      }
      // Both regimes are exercised: short stores kept in FP16, and ones where a page already pays.
      expect(fp16Kept).toBeGreaterThan(0);
      expect(paged).toBeGreaterThan(0);
    });
  }

  it("a store kept in FP16 holds the tokens exactly: materialize, attention and serialize round trip", () => {
    const d = 128;
    const c = cache({ layers: 1, kvHeads: 2, queryHeads: 4, headDim: d, preset: "balanced" });
    const kv = syntheticKV({ kvHeads: 2, headDim: d, tokens: 5, seed: 21 });
    c.append(0, kv.keys, kv.values);
    c.compressSync();
    expect(c.tokens(0)).toEqual({ held: 5, appended: 5, compressed: 0, evicted: 0 });
    expect(ratioBesidesScores(c.stats())).toBe(1);
    const m = c.materialize(0);
    // FP16-exact: the values are the input rounded to FP16, not lattice codes.
    expect(Array.from(m.keys)).toEqual(Array.from(halfBitsToFloats(floatsToHalfBits(kv.keys))));
    expect(Array.from(m.values)).toEqual(Array.from(halfBitsToFloats(floatsToHalfBits(kv.values))));
    expect(Array.from(m.positions)).toEqual([0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    expect(checkAttentionMatchesDense(c, 0, 0, 1, 5)).toBeLessThanOrEqual(1e-5);
    expect(checkAttentionMatchesDense(c, 0, 0, 3, 6)).toBeLessThanOrEqual(1e-5);
    const r = CompressedKVCache.deserialize(c.serialize());
    cache.track(r);
    expect(r.tokens(0)).toEqual(c.tokens(0));
    expect(r.stats().bytes).toEqual(c.stats().bytes);
    expect(ratioBesidesScores(r.stats())).toBe(1);
    expect(Array.from(r.materialize(0).keys)).toEqual(Array.from(m.keys));
    const q = syntheticKV({ kvHeads: 4, headDim: d, tokens: 1, seed: 3 }).keys;
    expect(Array.from(r.attention(0, q))).toEqual(Array.from(c.attention(0, q)));
    // Both continue alike after the round trip.
    const more = syntheticKV({ kvHeads: 2, headDim: d, tokens: 30, startPosition: 5, seed: 22 });
    for (const x of [c, r]) {
      x.append(0, more.keys, more.values);
      x.compressSync();
    }
    expect(Buffer.from(r.serialize()).equals(Buffer.from(c.serialize()))).toBe(true);
  });

  for (const preset of ["quant", "balanced", "S"]) {
    it(`${preset}: appends + compress after each cross the break-even point into pages, same cache as one compress`, () => {
      const d = 128, spec = getPreset(preset).spec;
      const all = syntheticKV({ kvHeads: 2, headDim: d, tokens: 40, seed: 31 });
      const row = (t0: number, t1: number) => {
        // tokens [t0, t1) of every head: syntheticKV is laid out [head][token][d]
        const pick = (x: Float32Array) => Float32Array.from({ length: 2 * (t1 - t0) * d }, (_, i) => {
          const h = Math.floor(i / ((t1 - t0) * d)), r = i % ((t1 - t0) * d);
          return x[h * 40 * d + t0 * d + r]!;
        });
        return { keys: pick(all.keys), values: pick(all.values) };
      };
      const c = cache({ layers: 1, kvHeads: 2, queryHeads: 4, headDim: d, preset });
      let sawFp16 = false, sawPages = false;
      for (let t = 0; t < 40; t++) {
        const one = row(t, t + 1);
        c.append(0, one.keys, one.values);
        c.compressSync();
        const held = t + 1;
        const fp16 = !pagingPays(2, d, spec, held) && keptTokenCount(held, spec) === held;
        if (fp16) sawFp16 = true;
        else sawPages = true;
        expect([held, c.tokens(0).compressed]).toEqual([held, fp16 ? 0 : keptTokenCount(held, spec)]);
        expect(ratioBesidesScores(c.stats())).toBeGreaterThanOrEqual(1);
        expect(c.stats().bytes.total).toBe(compressedLayout({ layers: 1, kvHeads: 2, headDim: d, tokens: held }, spec).bytes.total);
        expect(checkAttentionMatchesDense(c, 0, 0, 1, 40 + t)).toBeLessThanOrEqual(1e-5);
      }
      expect(sawFp16 && sawPages).toBe(true);
      const once = cache({ layers: 1, kvHeads: 2, queryHeads: 4, headDim: d, preset });
      once.append(0, all.keys, all.values);
      once.compressSync();
      expect(Array.from(c.materialize(0).keys)).toEqual(Array.from(once.materialize(0).keys));
      expect(Array.from(c.materialize(0).values)).toEqual(Array.from(once.materialize(0).values));
    });
  }

  for (const residualWindow of [0, 4, 16]) {
    it(`residualWindow ${residualWindow}: decode appends keep a short store FP16 (even past its window), then page it once paging pays`, () => {
      const d = 128;
      const c = cache({ layers: 1, kvHeads: 2, headDim: d, preset: "balanced", spec: { residualWindow } });
      const spec = c.spec;
      const first = syntheticKV({ kvHeads: 2, headDim: d, tokens: 2, seed: 41 });
      c.append(0, first.keys, first.values);
      c.compressSync();
      expect(c.tokens(0).compressed).toBe(0);
      let pagedAt = -1;
      for (let t = 2; t < 30; t++) {
        const one = syntheticKV({ kvHeads: 2, headDim: d, tokens: 1, startPosition: t, seed: 50 + t });
        c.append(0, one.keys, one.values);
        const held = t + 1;
        expect(c.tokens(0).held).toBe(held);
        if (pagedAt < 0 && c.tokens(0).compressed > 0) pagedAt = held;
        // While page-less, the residual holds every token and grows by a quarter: <= 1.25x FP16.
        if (pagedAt < 0) expect(c.stats().bytes.total).toBeLessThanOrEqual(1.25 * c.stats().baselineBytes);
        expect(checkAttentionMatchesDense(c, 0, 0, 1, 60 + t)).toBeLessThanOrEqual(1e-5);
      }
      // The first flush at or past the window where a page pays moves every held token onto pages.
      let expected = Math.max(residualWindow, 1);
      while (!pagingPays(2, d, spec, expected)) expected++;
      expect(pagedAt).toBe(expected);
      // Once paged, the residual is back within its window.
      expect(c.stats().bytes.residual).toBeLessThanOrEqual(residualBytes(2, d, spec, Math.max(residualWindow, 1)));
    });
  }

  it("a long append after a short compressed prompt goes to pages window by window (no FP16 spike)", () => {
    const d = 128;
    const c = cache({ layers: 1, kvHeads: 2, headDim: d, preset: "quant", spec: { residualWindow: 16 } });
    const first = syntheticKV({ kvHeads: 2, headDim: d, tokens: 3, seed: 71 });
    c.append(0, first.keys, first.values);
    c.compressSync();
    expect(c.tokens(0).compressed).toBe(0);
    const long = syntheticKV({ kvHeads: 2, headDim: d, tokens: 200, startPosition: 3, seed: 72 });
    const n = native() as unknown as { resetPeakMemory(): void; memoryStats(): { host: { totalBytes: number; peakBytes: number } } };
    n.resetPeakMemory();
    const before = n.memoryStats().host.totalBytes;
    c.append(0, long.keys, long.values);
    const peak = n.memoryStats().host.peakBytes - before;
    // 3 + 13 tokens fill the window and page (a page pays at 16), then blocks of 16: 11 wait.
    expect(c.tokens(0)).toEqual({ held: 203, appended: 203, compressed: 192, evicted: 0 });
    expect(c.stats().bytes.residual).toBe(residualBytes(2, d, c.spec, 16));
    // Holding the 200 tokens in FP16 first would have peaked above their FP16 bytes (204,800 B);
    // window by window the peak is the pages plus about one window.
    expect(peak).toBeLessThan(0.5 * 2 * 2 * 200 * d * 2);
  });

  it("eviction that must happen still happens on a short store (pages, fewer tokens)", () => {
    const c = cache({ layers: 1, kvHeads: 2, headDim: 128, preset: "balanced", spec: { sinkTokens: 1, recentWindow: 0 } });
    const kv = syntheticKV({ kvHeads: 2, headDim: 128, tokens: 9, seed: 61 });
    c.append(0, kv.keys, kv.values);
    c.compressSync();
    const kept = keptTokenCount(9, c.spec);
    expect(kept).toBeLessThan(9);
    expect(c.tokens(0)).toEqual({ held: kept, appended: 9, compressed: kept, evicted: 9 - kept });
    expect(c.stats().bytes.total).toBe(compressedLayout({ layers: 1, kvHeads: 2, headDim: 128, tokens: 9 }, c.spec).bytes.total);
  });
});

describe("CompressedKVCache: serialization", () => {
  function filled(): CompressedKVCache {
    const c = cache({ layers: 2, kvHeads: 2, queryHeads: 4, headDim: 64, batch: 2, preset: "balanced", spec: { residualWindow: 8 } });
    for (let s = 0; s < 2; s++)
      for (let l = 0; l < 2; l++) {
        const kv = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 150 + 40 * s, seed: l + s });
        c.append(l, kv.keys, kv.values, { sequence: s });
      }
    c.compressSync();
    const one = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 3, startPosition: 150, seed: 9 });
    c.append(1, one.keys, one.values); // some residual tokens too
    return c;
  }

  it("round trips: same tokens, same dense view, same attention, same bytes", () => {
    const c = filled();
    const buf = c.serialize();
    const r = CompressedKVCache.deserialize(buf);
    cache.track(r);
    expect(r.queryHeads).toBe(4);
    expect(r.spec).toEqual(c.spec);
    for (let s = 0; s < 2; s++)
      for (let l = 0; l < 2; l++) {
        expect(r.tokens(l, s)).toEqual(c.tokens(l, s));
        const a = c.materialize(l, { sequence: s }), b = r.materialize(l, { sequence: s });
        expect(Array.from(b.keys)).toEqual(Array.from(a.keys));
        expect(Array.from(b.positions)).toEqual(Array.from(a.positions));
      }
    const q = syntheticKV({ kvHeads: 4, headDim: 64, tokens: 1, seed: 3 }).keys;
    expect(Array.from(r.attention(1, q))).toEqual(Array.from(c.attention(1, q)));
    expect(r.stats().bytes).toEqual(c.stats().bytes);
    expect(Buffer.from(r.serialize()).equals(Buffer.from(buf))).toBe(true);
  });

  it("a corrupted byte, a truncated buffer or garbage is a CORRUPT_DATA error", () => {
    const buf = filled().serialize();
    const flipped = buf.slice();
    flipped[200]! ^= 0x40;
    expectCode(() => CompressedKVCache.deserialize(flipped), "CORRUPT_DATA", /checksum/);
    expectCode(() => CompressedKVCache.deserialize(buf.subarray(0, buf.length - 100)), "CORRUPT_DATA");
    expectCode(() => CompressedKVCache.deserialize(buf.subarray(0, 10)), "CORRUPT_DATA");
    expectCode(() => CompressedKVCache.deserialize(new Uint8Array(5000).fill(7)), "CORRUPT_DATA", /magic/);
    const before = memoryStats().host.totalBytes;
    expectCode(() => CompressedKVCache.deserialize(flipped), "CORRUPT_DATA");
    expect(memoryStats().host.totalBytes).toBe(before);
  });
});

describe("CompressedKVCache: bad input leaves the cache unchanged", () => {
  const make = () => {
    const c = cache({ layers: 2, kvHeads: 2, headDim: 64, preset: "balanced" });
    const kv = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 10, seed: 1 });
    c.append(0, kv.keys, kv.values);
    return c;
  };

  it("shape, dtype, NaN, range, layer and sequence errors", () => {
    const c = make();
    const before = c.serialize();
    const good = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 2, seed: 2 });
    expectCode(() => c.append(0, good.keys.subarray(0, 100), good.values.subarray(0, 100)), "INVALID_ARGUMENT", /multiple of kvHeads/);
    expectCode(() => c.append(0, good.keys, floatsToHalfBits(good.values)), "INVALID_ARGUMENT", /same type/);
    expectCode(() => c.append(0, new Float64Array(256) as unknown as Float32Array, good.values), "INVALID_ARGUMENT", /Float32Array/);
    expectCode(() => c.append(2, good.keys, good.values), "INVALID_ARGUMENT", /layer/);
    expectCode(() => c.append(0, good.keys, good.values, { sequence: 1 }), "INVALID_ARGUMENT", /sequence/);
    expectCode(() => c.append(0, new Float32Array(0), new Float32Array(0)), "INVALID_ARGUMENT", /empty/);
    const nan = good.keys.slice();
    nan[130] = NaN;
    expectCode(() => c.append(0, nan, good.values), "INVALID_DATA", /token 0/);
    const huge = good.values.slice();
    huge[5] = 1e6;
    expectCode(() => c.append(0, good.keys, huge), "INVALID_DATA", /FP16 range/);
    const shared = new Float32Array(new SharedArrayBuffer(good.keys.byteLength));
    expectCode(() => c.append(0, shared, good.values), "INVALID_ARGUMENT", /SharedArrayBuffer/);
    const detached = good.keys.slice();
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    expectCode(() => c.append(0, detached, good.values), "INVALID_ARGUMENT", /detached/);
    expectCode(() => c.attention(0, new Float32Array(100)), "INVALID_ARGUMENT", /queries/);
    expectCode(() => c.materialize(5), "INVALID_ARGUMENT", /layer/);
    expect(Buffer.from(c.serialize()).equals(Buffer.from(before))).toBe(true);
  });

  it("bad options are typed errors", () => {
    expectCode(() => new CompressedKVCache({ layers: 1, kvHeads: 2, headDim: 60 }), "INVALID_ARGUMENT", /headDim/);
    expectCode(() => new CompressedKVCache({ layers: 1, kvHeads: 2, headDim: 64, queryHeads: 3 }), "INVALID_ARGUMENT", /queryHeads/);
    expectCode(() => new CompressedKVCache({ layers: 1, kvHeads: 2, headDim: 64, preset: "nope" }), "UNKNOWN_PRESET");
    expectCode(() => new CompressedKVCache({ layers: 1, kvHeads: 2, headDim: 64, preset: "quant", budgetTokens: 100 }), "INVALID_ARGUMENT", /evicts/);
    expectCode(() => new CompressedKVCache({ layers: 1, kvHeads: 2, headDim: 64, budgetTokens: 10 }), "INVALID_ARGUMENT", /sinkTokens/);
  });

  it("use after dispose is DISPOSED; dispose twice is fine", () => {
    const c = make();
    c.dispose();
    c.dispose();
    expectCode(() => c.append(0, new Float32Array(128), new Float32Array(128)), "DISPOSED");
    expectCode(() => c.stats(), "DISPOSED");
    expectCode(() => c.serialize(), "DISPOSED");
  });

  // "a context larger than memory is OUT_OF_MEMORY" lives in memory-limit.test.ts: it is tested
  // against a configured limit, so it no longer fills the host's RAM to find the edge.

  it("compress() runs off the event loop and the cache refuses use meanwhile", async () => {
    const c = make();
    // 40 tokens: enough for a page to pay (pagingPays), so the finished compress() is visible as pages.
    const more = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 30, startPosition: 10, seed: 2 });
    c.append(0, more.keys, more.values);
    const p = c.compress();
    expectCode(() => c.stats(), "BUSY", /busy/);
    await p;
    expect(c.tokens(0).compressed).toBeGreaterThan(0);
  });

  it("asyncDispose (await using) waits for a compress() in flight, then frees the cache", async () => {
    const c = make();
    const p = c.compress();
    expectCode(() => c.dispose(), "BUSY", /await it first/);
    await c[Symbol.asyncDispose]();
    await p;
    expectCode(() => c.stats(), "DISPOSED", /dispose/);
  });

  it("the native cache's own guard, behind the TypeScript one, says BUSY too", async () => {
    const h = new (native().NativeCache)({
      batch: 1, layers: 1, kvHeads: 1, headDim: 8, keyBits: 2, valueBits: 2, evictFraction: 0, sinkTokens: 0, recentWindow: 0,
      residualWindow: 8, pageTokens: 8, scorer: 1, seed: 0, scorerWindow: 8, poolKernel: 7, queryHeads: 1, budgetTokens: 0, ropeTheta: 0,
    });
    h.append(0, 0, new Float32Array(8 * 64).fill(0.5), new Float32Array(8 * 64).fill(0.5), 64);
    const p = h.compressAsync(0, -1);
    expectCode(() => callNative(() => h.counts(0, 0)), "BUSY", /busy/);
    expectCode(() => callNative(() => h.dispose()), "BUSY", /await it first/);
    await p;
    expect(h.counts(0, 0).compressed).toBe(true);
    h.dispose();
  });
});

describe("CompressedKVCache: keys stored with RoPE removed", () => {
  it("attention still equals dense attention over the dequantized (re-RoPE'd) keys, and key error drops", () => {
    const d = 128, T = 600, theta = 500000;
    const kv = syntheticKV({ kvHeads: 2, headDim: d, tokens: T, seed: 31, ropeTheta: theta });
    const asIs = cache({ layers: 1, kvHeads: 2, queryHeads: 4, headDim: d, preset: "quant", spec: { residualWindow: 8 } });
    const unrope = cache({ layers: 1, kvHeads: 2, queryHeads: 4, headDim: d, preset: "quant", spec: { residualWindow: 8 }, keyStorage: "unrope", ropeTheta: theta });
    for (const c of [asIs, unrope]) {
      c.append(0, kv.keys, kv.values);
      c.compressSync();
      for (let t = 0; t < 11; t++) {
        const one = syntheticKV({ kvHeads: 2, headDim: d, tokens: 1, startPosition: T + t, seed: 40 + t, ropeTheta: theta });
        c.append(0, one.keys, one.values); // one block flushes through the un-RoPE path
      }
      expect(checkAttentionMatchesDense(c, 0, 0, 2, 8)).toBeLessThanOrEqual(1e-5);
    }
    const err = (c: CompressedKVCache) => {
      const m = c.materialize(0);
      let a = 0, b = 0;
      for (let h = 0; h < 2; h++)
        for (let t = 0; t < T; t++)
          for (let i = 0; i < d; i++) {
            const x = kv.keys[(h * T + t) * d + i]!;
            a += (m.keys[(h * m.tokens + t) * d + i]! - x) ** 2;
            b += x * x;
          }
      return a / b;
    };
    expect(err(unrope)).toBeLessThan(err(asIs));
    const r = CompressedKVCache.deserialize(unrope.serialize());
    cache.track(r);
    expect(r.keyStorage).toBe("unrope");
    expect(Array.from(r.materialize(0).keys.subarray(0, 64))).toEqual(Array.from(unrope.materialize(0).keys.subarray(0, 64)));
  });

  it("unrope without ropeTheta is a typed error", () => {
    expectCode(() => new CompressedKVCache({ layers: 1, kvHeads: 1, headDim: 64, keyStorage: "unrope" }), "INVALID_ARGUMENT", /ropeTheta/);
  });
});

describe("CompressedKVCache: the peak of an eviction follows what is held", () => {
  it("compaction goes page by page: a compress() that evicts adds far less than a second copy of the layer's pages", () => {
    const H = 8, d = 128, chunk = 256;
    const c = cache({ layers: 1, kvHeads: H, queryHeads: H, headDim: d, spec: { ...getPreset("balanced").spec } });
    const q = syntheticKV({ kvHeads: H, headDim: d, tokens: 4, seed: 1 }).keys;
    let appended = 0, worst = 0, pages = 0;
    for (let n = 0; n < 24; n++) {
      const kv = syntheticKV({ kvHeads: H, headDim: d, tokens: chunk, startPosition: appended, seed: 10 + n });
      c.append(0, kv.keys, kv.values);
      appended += chunk;
      // The reconstruct scorer's pass (scores come from it, no keys are decoded to score them).
      const own = syntheticKV({ kvHeads: H, headDim: d, tokens: 4, seed: 50 + n });
      c.reconstructionAttention(0, q, own.keys, own.values, { positions: Int32Array.from({ length: 4 }, (_, j) => appended + j), recentTokens: chunk });
      const before = memoryStats().host.totalBytes;
      native().resetPeakMemory();
      c.compressSync();
      const b = c.stats().bytes;
      pages = b.codes + b.scales + b.positions + b.headers;
      if (n >= 8) worst = Math.max(worst, (memoryStats().host.peakBytes - before) / pages);
    }
    // What an eviction allocates on top: scores, positions and kept lists of the layer's tokens, the
    // chunk's encoded residual, and one new page at a time (about 0.2x the pages here). All new pages
    // at once, with the old ones still held, would add about 1x the pages (1.5 MB at the end).
    expect(pages).toBeGreaterThan(1.2e6);
    expect(worst).toBeLessThan(0.5);
  });
});
