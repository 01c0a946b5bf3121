// The reconstruct scorer's re-read pass (CompressedKVCache.reconstructionAttention): its output is
// attention over the held tokens plus the re-read's transient K/V, each held token's score is the most
// attention it received, compress() keeps the best-scored tokens, and the pass leaves the cache as it
// was apart from those scores.
import { describe, expect, it } from "vitest";
import { CompressedKVCache, syntheticKV } from "../../src/runtime/index.js";
import { keptTokenCount } from "../../src/format/index.js";
import { expectCode } from "../helpers.js";
import { trackedCaches } from "./tracked-caches.js";
import { denseAttention, relativeError } from "./reference.js";

const cache = trackedCaches();

const H = 2, QH = 4, D = 64;
const SPEC = { keyBits: 3, valueBits: 3, evictFraction: 0.5, sinkTokens: 4, recentWindow: 16, scorer: "reconstruct", residualWindow: 64, pageTokens: 64 } as const;

interface Reread {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  positions: Int32Array;
}
function reread(nq: number, firstPosition: number, seed: number): Reread {
  const q = syntheticKV({ kvHeads: QH, headDim: D, tokens: nq, seed }).keys;
  const kv = syntheticKV({ kvHeads: H, headDim: D, tokens: nq, seed: seed + 1 });
  // Queries a little smaller than the keys keep the softmax from saturating on one token.
  for (let i = 0; i < q.length; i++) q[i]! *= 0.3;
  return { q, k: kv.keys, v: kv.values, positions: Int32Array.from({ length: nq }, (_, j) => firstPosition + j) };
}

/**
 * The reference: softmax over the held tokens (materialize) and the re-read's rows, for every query of
 * a KV head's group; per held token the largest probability. Held slots outside `attended` get none.
 */
function referenceScores(c: CompressedKVCache, r: Reread, attended?: (slot: number, held: number) => boolean): { scores: Float64Array[]; positions: Int32Array; held: number } {
  const m = c.materialize(0);
  const n = m.tokens, nq = r.positions.length, group = QH / H;
  const scores = Array.from({ length: H }, () => new Float64Array(n));
  for (let qh = 0; qh < QH; qh++) {
    const h = Math.floor(qh / group);
    for (let j = 0; j < nq; j++) {
      const logits: number[] = [];
      const dot = (keys: Float32Array, row: number) => {
        let s = 0;
        for (let e = 0; e < D; e++) s += r.q[(qh * nq + j) * D + e]! * keys[row * D + e]!;
        return s / Math.sqrt(D);
      };
      for (let t = 0; t < n; t++) logits.push(attended && !attended(t, n) ? -Infinity : dot(m.keys, h * n + t));
      for (let i = 0; i < nq; i++) logits.push(r.positions[i]! <= r.positions[j]! ? dot(r.k, h * nq + i) : -Infinity);
      const mx = Math.max(...logits);
      const e = logits.map((l) => (l === -Infinity ? 0 : Math.exp(l - mx)));
      const sum = e.reduce((a, b) => a + b, 0);
      for (let t = 0; t < n; t++) scores[h]![t] = Math.max(scores[h]![t]!, e[t]! / sum);
    }
  }
  return { scores, positions: m.positions, held: n };
}

/** Positions each head keeps under the selection rule, given reference scores (ties within `tol` are not decided). */
function checkKeptAgrees(c: CompressedKVCache, ref: ReturnType<typeof referenceScores>, target: number): void {
  const after = c.materialize(0);
  expect(after.tokens).toBe(target);
  for (let h = 0; h < H; h++) {
    const kept = new Set(Array.from(after.positions.subarray(h * target, (h + 1) * target)));
    const n = ref.held;
    let worstKept = Infinity, bestEvicted = -Infinity;
    for (let t = 0; t < n; t++) {
      const pos = ref.positions[h * n + t]!;
      const protectedSlot = pos < SPEC.sinkTokens || t >= n - SPEC.recentWindow;
      if (protectedSlot) {
        expect(kept.has(pos)).toBe(true);
        continue;
      }
      const s = ref.scores[h]![t]!;
      if (kept.has(pos)) worstKept = Math.min(worstKept, s);
      else bestEvicted = Math.max(bestEvicted, s);
    }
    // Every kept candidate scored at least as high as every evicted one (the cache keeps FP16 scores:
    // candidates within FP16 rounding of each other are not decided here).
    expect(worstKept).toBeGreaterThanOrEqual(bestEvicted * (1 - 2e-3) - 1e-6);
  }
}

describe("CompressedKVCache.reconstructionAttention", () => {
  it("returns attention over the held tokens plus the re-read's own K/V (rel. error <= 1e-5)", () => {
    const c = cache({ layers: 1, kvHeads: H, queryHeads: QH, headDim: D, spec: SPEC });
    const kv = syntheticKV({ kvHeads: H, headDim: D, tokens: 150, seed: 1 });
    c.append(0, kv.keys, kv.values);
    const r = reread(12, 150, 7);
    const got = c.reconstructionAttention(0, r.q, r.k, r.v, { positions: r.positions });
    const m = c.materialize(0);
    // Dense reference over [held | re-read] per head.
    const n = m.tokens, nq = 12;
    const keys = new Float32Array(H * (n + nq) * D), values = new Float32Array(keys.length), pos = new Int32Array(H * (n + nq));
    for (let h = 0; h < H; h++) {
      keys.set(m.keys.subarray(h * n * D, (h + 1) * n * D), h * (n + nq) * D);
      keys.set(r.k.subarray(h * nq * D, (h + 1) * nq * D), (h * (n + nq) + n) * D);
      values.set(m.values.subarray(h * n * D, (h + 1) * n * D), h * (n + nq) * D);
      values.set(r.v.subarray(h * nq * D, (h + 1) * nq * D), (h * (n + nq) + n) * D);
      pos.set(m.positions.subarray(h * n, (h + 1) * n), h * (n + nq));
      pos.set(r.positions, h * (n + nq) + n);
    }
    const want = denseAttention(r.q, QH, nq, [...r.positions], keys, values, pos, H, n + nq, D, 1 / Math.sqrt(D));
    expect(relativeError(got, want)).toBeLessThanOrEqual(1e-5);
  });

  it("compress() then keeps the tokens the re-read attended to most (every KV head, after pages and residual)", () => {
    const c = cache({ layers: 1, kvHeads: H, queryHeads: QH, headDim: D, spec: SPEC });
    const first = syntheticKV({ kvHeads: H, headDim: D, tokens: 200, seed: 2 });
    c.append(0, first.keys, first.values);
    let r = reread(24, 200, 11);
    c.reconstructionAttention(0, r.q, r.k, r.v, { positions: r.positions });
    let ref = referenceScores(c, r);
    c.compressSync();
    checkKeptAgrees(c, ref, keptTokenCount(200, SPEC));
    // A second chunk: its tokens land after the held pages; a full re-read scores old and new alike
    // (the old ones keep the higher of their two scores, so compare against a fresh pass only where it rules).
    const second = syntheticKV({ kvHeads: H, headDim: D, tokens: 90, startPosition: 200, seed: 3 });
    c.append(0, second.keys, second.values);
    r = reread(24, 290, 13);
    const before = c.materialize(0);
    c.reconstructionAttention(0, r.q, r.k, r.v, { positions: r.positions, recentTokens: 90 });
    ref = referenceScores(c, r, (t, n) => t < SPEC.sinkTokens || t >= n - 90);
    c.compressSync();
    const after = c.materialize(0);
    const target = keptTokenCount(290, SPEC);
    expect(after.tokens).toBe(target);
    // New tokens compete on the new pass's scores; every one kept outside the recent window beat every new one evicted.
    for (let h = 0; h < H; h++) {
      const kept = new Set(Array.from(after.positions.subarray(h * target, (h + 1) * target)));
      let worstKept = Infinity, bestEvicted = -Infinity;
      for (let t = before.tokens - 90; t < before.tokens - SPEC.recentWindow; t++) {
        const s = ref.scores[h]![t]!;
        if (kept.has(ref.positions[h * ref.held + t]!)) worstKept = Math.min(worstKept, s);
        else bestEvicted = Math.max(bestEvicted, s);
      }
      expect(worstKept).toBeGreaterThanOrEqual(bestEvicted * (1 - 2e-3) - 1e-6);
    }
  });

  it("with recentTokens attends only to the sinks and the last tokens (and the output says so)", () => {
    const c = cache({ layers: 1, kvHeads: H, queryHeads: QH, headDim: D, spec: SPEC });
    const kv = syntheticKV({ kvHeads: H, headDim: D, tokens: 120, seed: 4 });
    c.append(0, kv.keys, kv.values);
    const r = reread(8, 120, 17);
    const local = c.reconstructionAttention(0, r.q, r.k, r.v, { positions: r.positions, recentTokens: 30 });
    const full = c.reconstructionAttention(0, r.q, r.k, r.v, { positions: r.positions });
    expect(relativeError(local, full)).toBeGreaterThan(1e-3);
    // The local pass equals a full pass over a cache holding only the sinks and the last 30 tokens.
    const m = c.materialize(0);
    const keep = (t: number) => t < SPEC.sinkTokens || t >= 120 - 30;
    const idx = Array.from({ length: 120 }, (_, t) => t).filter(keep);
    const n = idx.length, nq = 8;
    const keys = new Float32Array(H * (n + nq) * D), values = new Float32Array(keys.length), pos = new Int32Array(H * (n + nq));
    for (let h = 0; h < H; h++) {
      idx.forEach((t, i) => {
        keys.set(m.keys.subarray((h * 120 + t) * D, (h * 120 + t + 1) * D), (h * (n + nq) + i) * D);
        values.set(m.values.subarray((h * 120 + t) * D, (h * 120 + t + 1) * D), (h * (n + nq) + i) * D);
        pos[h * (n + nq) + i] = m.positions[h * 120 + t]!;
      });
      keys.set(r.k.subarray(h * nq * D, (h + 1) * nq * D), (h * (n + nq) + n) * D);
      values.set(r.v.subarray(h * nq * D, (h + 1) * nq * D), (h * (n + nq) + n) * D);
      pos.set(r.positions, h * (n + nq) + n);
    }
    const want = denseAttention(r.q, QH, nq, [...r.positions], keys, values, pos, H, n + nq, D, 1 / Math.sqrt(D));
    expect(relativeError(local, want)).toBeLessThanOrEqual(1e-5);
  });

  it("leaves the cache as it was apart from the scores: same tokens, same bytes, same dense view", () => {
    const c = cache({ layers: 1, kvHeads: H, queryHeads: QH, headDim: D, spec: SPEC });
    const kv = syntheticKV({ kvHeads: H, headDim: D, tokens: 180, seed: 5 });
    c.append(0, kv.keys, kv.values);
    c.compressSync();
    const more = syntheticKV({ kvHeads: H, headDim: D, tokens: 40, startPosition: 180, seed: 6 });
    c.append(0, more.keys, more.values);
    const bytes = c.stats().bytes, tokens = c.tokens(0), dense = c.materialize(0);
    const r = reread(16, 220, 19);
    c.reconstructionAttention(0, r.q, r.k, r.v, { positions: r.positions, recentTokens: 40 });
    expect(c.stats().bytes).toEqual(bytes);
    expect(c.tokens(0)).toEqual(tokens);
    const again = c.materialize(0);
    expect(again.keys).toEqual(dense.keys);
    expect(again.values).toEqual(dense.values);
    expect(again.positions).toEqual(dense.positions);
  });

  it("without a pass since the last append, compress() scores key-key (the same tokens as a key-key cache)", () => {
    const kv = syntheticKV({ kvHeads: H, headDim: D, tokens: 240, seed: 8 });
    const a = cache({ layers: 1, kvHeads: H, queryHeads: QH, headDim: D, spec: SPEC });
    const b = cache({ layers: 1, kvHeads: H, queryHeads: QH, headDim: D, spec: { ...SPEC, scorer: "key-key" } });
    // No pass at all: key-key.
    a.append(0, kv.keys, kv.values);
    b.append(0, kv.keys, kv.values);
    a.compressSync();
    b.compressSync();
    expect(a.materialize(0).positions).toEqual(b.materialize(0).positions);
    // A pass, then an append: the pass's scores no longer cover every token, so key-key again.
    const c = cache({ layers: 1, kvHeads: H, queryHeads: QH, headDim: D, spec: SPEC });
    const d = cache({ layers: 1, kvHeads: H, queryHeads: QH, headDim: D, spec: { ...SPEC, scorer: "key-key" } });
    const head = syntheticKV({ kvHeads: H, headDim: D, tokens: 200, seed: 9 });
    const tail = syntheticKV({ kvHeads: H, headDim: D, tokens: 40, startPosition: 200, seed: 10 });
    for (const x of [c, d]) x.append(0, head.keys, head.values);
    const r = reread(8, 200, 23);
    c.reconstructionAttention(0, r.q, r.k, r.v, { positions: r.positions });
    for (const x of [c, d]) {
      x.append(0, tail.keys, tail.values);
      x.compressSync();
    }
    expect(c.materialize(0).positions).toEqual(d.materialize(0).positions);
  });

  it("shareScores: the layers a shorter re-read did not reach evict by the best score of those it did, per position", () => {
    const c = cache({ layers: 2, kvHeads: H, queryHeads: QH, headDim: D, spec: SPEC });
    const kv = syntheticKV({ kvHeads: H, headDim: D, tokens: 200, seed: 33 });
    for (const l of [0, 1]) c.append(l, kv.keys, kv.values);
    const r = reread(24, 200, 41);
    c.reconstructionAttention(0, r.q, r.k, r.v, { positions: r.positions });
    const ref = referenceScores(c, r);
    c.shareScores(1);
    c.compressSync();
    const target = keptTokenCount(200, SPEC);
    // Layer 0 kept its own per-head scores.
    checkKeptAgrees(c, ref, target);
    // Layer 1: every head keeps the same tokens, the best over layer 0's heads at each position.
    const best = new Float64Array(200);
    for (let h = 0; h < H; h++) for (let t = 0; t < 200; t++) best[ref.positions[h * 200 + t]!] = Math.max(best[ref.positions[h * 200 + t]!]!, ref.scores[h]![t]!);
    const m1 = c.materialize(1);
    expect(m1.tokens).toBe(target);
    const heads = Array.from({ length: H }, (_, h) => Array.from(m1.positions.subarray(h * target, (h + 1) * target)));
    expect(heads[1]).toEqual(heads[0]);
    const kept = new Set(heads[0]);
    let worstKept = Infinity, bestEvicted = -Infinity;
    for (let p = SPEC.sinkTokens; p < 200 - SPEC.recentWindow; p++) {
      if (kept.has(p)) worstKept = Math.min(worstKept, best[p]!);
      else bestEvicted = Math.max(bestEvicted, best[p]!);
    }
    // FP16 scores: ties within FP16 rounding of each other are not decided here.
    expect(worstKept).toBeGreaterThanOrEqual(bestEvicted * (1 - 2e-3) - 1e-6);
    expectCode(() => c.shareScores(0), "INVALID_ARGUMENT");
    expectCode(() => c.shareScores(3), "INVALID_ARGUMENT");
  });

  it("serializes the scores: a restored cache compresses to the same tokens and bytes", () => {
    const c = cache({ layers: 1, kvHeads: H, queryHeads: QH, headDim: D, spec: SPEC });
    const kv = syntheticKV({ kvHeads: H, headDim: D, tokens: 210, seed: 12 });
    c.append(0, kv.keys, kv.values);
    const r = reread(20, 210, 29);
    c.reconstructionAttention(0, r.q, r.k, r.v, { positions: r.positions });
    const restored = CompressedKVCache.deserialize(c.serialize());
    cache.track(restored);
    c.compressSync();
    restored.compressSync();
    expect(restored.materialize(0).positions).toEqual(c.materialize(0).positions);
    expect(Buffer.from(restored.serialize()).equals(Buffer.from(c.serialize()))).toBe(true);
  });

  it("refuses bad input with typed errors and leaves the cache unchanged", () => {
    const c = cache({ layers: 1, kvHeads: H, queryHeads: QH, headDim: D, spec: SPEC });
    const kv = syntheticKV({ kvHeads: H, headDim: D, tokens: 50, seed: 14 });
    c.append(0, kv.keys, kv.values);
    const r = reread(4, 50, 31);
    const before = Buffer.from(c.serialize());
    expectCode(() => c.reconstructionAttention(0, r.q, r.k, r.v, {} as never), "INVALID_ARGUMENT");
    expectCode(() => c.reconstructionAttention(0, r.q, r.k.subarray(1), r.v, { positions: r.positions }), "INVALID_ARGUMENT");
    const nan = r.v.slice();
    nan[3] = Number.NaN;
    expectCode(() => c.reconstructionAttention(0, r.q, r.k, nan, { positions: r.positions }), "INVALID_DATA");
    expectCode(() => c.reconstructionAttention(0, r.q, r.k, r.v, { positions: r.positions, recentTokens: -1 }), "INVALID_ARGUMENT");
    expectCode(() => c.reconstructionAttention(1, r.q, r.k, r.v, { positions: r.positions }), "INVALID_ARGUMENT");
    expect(Buffer.from(c.serialize()).equals(before)).toBe(true);
    const keyKey = cache({ layers: 1, kvHeads: H, queryHeads: QH, headDim: D, spec: { ...SPEC, scorer: "key-key" } });
    keyKey.append(0, kv.keys, kv.values);
    expectCode(() => keyKey.reconstructionAttention(0, r.q, r.k, r.v, { positions: r.positions }), "INVALID_ARGUMENT");
  });
});
