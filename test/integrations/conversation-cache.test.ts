/**
 * ConversationCache: the one conversation every wrapper holds. The spec resolved once reaches the
 * cache unchanged; "none" is an explicit no-compression conversation; the schedule, the stats record
 * and snapshot()/resume() (what a later save/resume builds on).
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_PRESET, DEFAULT_SPEC, PRESETS, getPreset, isValidatedSpec, validateSpec } from "../../src/format/index.js";
import { ConversationCache, CompressSchedule, type ConversationShape } from "../../src/integrations/conversation-cache.js";
import { resolveOptions } from "../../src/integrations/options.js";
import { CompressedKVCache, syntheticKV } from "../../src/runtime/index.js";
import { expectCode } from "../helpers.js";

const shape: ConversationShape = { layers: 2, kvHeads: 2, headDim: 32, batch: 2 };

/** Appends `tokens` synthetic tokens to every layer of `row` and advances its true length. */
function feed(c: ConversationCache, row: number, tokens: number, seed: number): void {
  for (let l = 0; l < shape.layers; l++) {
    const { keys, values } = syntheticKV({ kvHeads: shape.kvHeads, headDim: shape.headDim, tokens, startPosition: c.length(row), seed: seed + l });
    c.cache!.append(l, keys, values, { sequence: row });
  }
  c.advance(row, tokens);
}

describe("resolveOptions decides the spec once", () => {
  it("returns the final validated spec: the preset's with options.spec and options.scorer applied", () => {
    const r = resolveOptions({ preset: "max", spec: { residualWindow: 64 }, scorer: "keynorm" });
    expect(r.spec).toEqual(validateSpec({ ...DEFAULT_SPEC, ...getPreset("max").spec, residualWindow: 64, scorer: "keynorm" }));
    expect(isValidatedSpec(r.spec)).toBe(true);
    // No overrides: the preset's own (validated) spec; no preset: the default one.
    expect(resolveOptions({ preset: "quant" }).spec).toBe(PRESETS.quant!.spec);
    expect(resolveOptions({}).spec).toBe(getPreset(DEFAULT_PRESET).spec);
  });

  it('"none" is an explicit no-compression spec (null), whatever its case and overrides', () => {
    for (const preset of ["none", "NONE"]) expect(resolveOptions({ preset, spec: { keyBits: 4 } }).spec).toBeNull();
  });

  it("the cache takes a validated spec as it is, and still checks anything else", () => {
    const spec = resolveOptions({ preset: "max", spec: { recentWindow: 32 } }).spec!;
    const cache = new CompressedKVCache({ layers: 1, kvHeads: 1, headDim: 8, spec });
    expect(cache.spec).toBe(spec);
    cache.dispose();
    // A plain object with the same fields is validated (and a bad one refused) as before.
    const copy = new CompressedKVCache({ layers: 1, kvHeads: 1, headDim: 8, spec: { ...spec } });
    expect(copy.spec).toEqual(spec);
    copy.dispose();
    expectCode(() => new CompressedKVCache({ layers: 1, kvHeads: 1, headDim: 8, spec: { ...spec, pageTokens: 12 } }), "INVALID_ARGUMENT", /spec\.pageTokens/);
    // With a preset named, the spec is an override of that preset, as documented.
    const over = new CompressedKVCache({ layers: 1, kvHeads: 1, headDim: 8, preset: "quant", spec: { recentWindow: 32 } });
    expect(over.spec).toEqual(validateSpec({ ...PRESETS.quant!.spec, recentWindow: 32 }));
    over.dispose();
  });
});

describe("ConversationCache", () => {
  it("builds its cache from the resolved spec and compresses on the schedule", async () => {
    const c = ConversationCache.create(shape, resolveOptions({ preset: "balanced", compressEvery: 3 }));
    try {
      expect(c.cache!.spec).toBe(c.spec);
      feed(c, 0, 200, 1);
      feed(c, 1, 150, 2);
      expect(c.due(200)).toBe(true); // a prompt chunk compresses at once
      await c.compress();
      expect(c.cache!.tokens(0, 0).held).toBeLessThan(200); // balanced evicts
      const due = [c.due(1), c.due(1), c.due(1)];
      expect(due).toEqual([false, false, true]);
      const s = c.stats();
      expect(s).toMatchObject({ preset: "balanced", backend: "cpu", tokens: 350, compressions: 1, denseKvBytes: 0 });
      expect(s.heldTokens).toBe(c.cache!.tokens(0, 0).held + c.cache!.tokens(0, 1).held);
      expect(s.tokensEvicted).toBe(350 - s.heldTokens);
      expect(s.baselineKvBytes).toBe(350 * shape.layers * 2 * shape.kvHeads * shape.headDim * 2);
    } finally {
      c.dispose();
    }
  });

  it("compresses only rows that hold tokens (an empty row stays as a fresh one)", async () => {
    const c = ConversationCache.create(shape, resolveOptions({ preset: "quant" }));
    try {
      feed(c, 0, 100, 3);
      await c.compress();
      expect(c.cache!.tokens(0, 0).compressed).toBeGreaterThan(0);
      // Row 1 was never compressed: what it gets now goes where a first prompt goes (all in the FP16
      // residual, past the 128-token window; a compressed store would have paged full windows).
      feed(c, 1, 200, 4);
      expect(c.cache!.tokens(0, 1).compressed).toBe(0);
      const fresh = ConversationCache.create({ ...shape, batch: 1 }, resolveOptions({ preset: "quant" }));
      feed(fresh, 0, 200, 4);
      expect(c.cache!.materialize(0, { sequence: 1 }).keys).toEqual(fresh.cache!.materialize(0).keys);
      fresh.dispose();
    } finally {
      c.dispose();
    }
  });

  it('"none" keeps FP16 K/V in a cache that is never compressed, with no preset\'s spec', async () => {
    const c = ConversationCache.create(shape, resolveOptions({ preset: "none", spec: { evictFraction: 0.5 } }), "cache");
    try {
      expect(c.spec).toBeNull();
      expect(c.cache!.spec).toEqual(DEFAULT_SPEC); // never applied: no eviction, not "balanced"
      feed(c, 0, 300, 5);
      expect(await c.compress()).toBe(0);
      expect(c.due(300)).toBe(true);
      expect(await c.compressIfDue(300)).toBe(0);
      expect(c.cache!.tokens(0, 0)).toMatchObject({ held: 300, compressed: 0, evicted: 0 });
      expect(c.stats()).toMatchObject({ preset: "none", backend: "cpu", tokens: 300, heldTokens: 300, compressions: 0 });
    } finally {
      c.dispose();
    }
    const caller = ConversationCache.create(shape, resolveOptions({ preset: "none" }), "caller");
    expect(caller.cache).toBeUndefined();
    caller.advance(1, 7);
    expect(caller.stats(123)).toMatchObject({ preset: "none", backend: "none", tokens: 7, ratio: 1, denseKvBytes: 123, baselineKvBytes: 7 * 2 * 2 * 2 * 32 * 2 });
  });

  it("snapshot() + serialize() resume into a conversation that goes on exactly as the original", async () => {
    const options = resolveOptions({ preset: "balanced", compressEvery: 4 });
    const a = ConversationCache.create(shape, options);
    let b: ConversationCache | undefined;
    try {
      feed(a, 0, 180, 6);
      feed(a, 1, 90, 7);
      await a.compressIfDue(180);
      for (let i = 0; i < 2; i++) {
        feed(a, 0, 1, 100 + i);
        feed(a, 1, 1, 200 + i);
        await a.compressIfDue(1);
      }
      const snap = a.snapshot();
      expect(snap).toMatchObject({ preset: "balanced", lengths: [182, 92], schedule: { every: 4, since: 2 }, compressions: 1 });
      b = ConversationCache.resume(CompressedKVCache.deserialize(a.cache!.serialize()), JSON.parse(JSON.stringify(snap)));
      expect(b.spec).toEqual(a.spec);
      for (let i = 2; i < 6; i++) {
        for (const c of [a, b]) {
          feed(c, 0, 1, 100 + i);
          feed(c, 1, 1, 200 + i);
          await c.compressIfDue(1);
        }
      }
      // Compressed at the same step (since 2 + 2 = every) and holding the same bytes.
      expect(b.stats().compressions).toBe(2);
      expect(a.stats().compressions).toBe(2);
      expect(b.cache!.serialize()).toEqual(a.cache!.serialize());
      expect([b.length(0), b.length(1)]).toEqual([186, 96]);
    } finally {
      a.dispose();
      b?.dispose();
    }
  });

  it("resume refuses a snapshot that does not fit the cache", () => {
    const c = ConversationCache.create(shape, resolveOptions({ preset: "quant" }));
    feed(c, 0, 20, 8);
    const snap = c.snapshot();
    const cache = c.cache!;
    expectCode(() => ConversationCache.resume(cache, { ...snap, lengths: [20] }), "INVALID_ARGUMENT", /snapshot\.lengths/);
    expectCode(() => ConversationCache.resume(cache, { ...snap, lengths: [21, 0] }), "INVALID_ARGUMENT", /snapshot\.lengths\[0\]/);
    expectCode(() => ConversationCache.resume(cache, { ...snap, spec: PRESETS.max!.spec }), "INVALID_ARGUMENT", /snapshot\.spec/);
    expectCode(() => ConversationCache.resume(cache, { ...snap, schedule: { every: 0, since: 0 } }), "INVALID_ARGUMENT", /snapshot\.schedule/);
    expectCode(() => ConversationCache.resume({} as CompressedKVCache, snap), "INVALID_ARGUMENT", /cache/);
    c.dispose();
  });

  it("CompressSchedule: a chunk is due at once, decode tokens every `every`, from a saved position too", () => {
    const s = new CompressSchedule(3, 1);
    expect([s.due(1), s.due(1)]).toEqual([false, true]);
    s.restart();
    expect(s.snapshot()).toEqual({ every: 3, since: 0 });
    expect(s.due(5)).toBe(true);
  });
});
