import { beforeAll, describe, expect, it } from "vitest";
import { NexusQuantError } from "../../src/errors.js";
import { withNexusQuant, type NexusQuantSession } from "../../src/integrations/index.js";
import { maxAbsDiff, nonConventionSession, ort, plainGreedy, promptTokens, teacherForced, tinyModel, tinySession, type PlainRun } from "./helpers.js";

const LAYERS = 2;
const KV_HEADS = 2;
const HEAD_DIM = 32;

/**
 * KL(uncompressed ‖ quant) on the tiny random-weight model (seed 7, 400-token prompt, 64 teacher-forced
 * steps), measured: mean 0.18 nats, max 0.28 (seeds 8 and 9 give 0.044 and 0.012). Random weights
 * make attention unusually sensitive; the bound guards against regressions (a wrong position, a
 * stale past), not a quality claim for trained models. See docs/integrations.md.
 */
const QUANT_MEAN_KL_BOUND = 0.25;
const QUANT_MAX_KL_BOUND = 0.5;

let session: ort.InferenceSession;
let prompt: number[];
let baseline: PlainRun;

beforeAll(async () => {
  session = await tinySession(tinyModel(7));
  prompt = promptTokens(400, 7);
  baseline = await plainGreedy(session, LAYERS, KV_HEADS, HEAD_DIM, prompt, 64);
});

describe("withNexusQuant(InferenceSession)", () => {
  it('preset "none" reproduces the unwrapped logits exactly', async () => {
    await withNexusQuant(session, { preset: "none" }, async (wrapped) => {
      const tokens: number[] = [];
      let result = await wrapped.step(prompt);
      expect(Array.from(result.last())).toEqual(Array.from(baseline.logits[0]!));
      for (let i = 0; i < 20; i++) {
        result = await wrapped.step([baseline.tokens[i]!]);
        expect(Array.from(result.last())).toEqual(Array.from(baseline.logits[i + 1]!));
      }
      const generated = await wrapped.generate(prompt, { maxNewTokens: 20 });
      tokens.push(...generated.tokens[0]!);
      expect(tokens).toEqual(baseline.tokens.slice(0, 20));
      expect(generated.stats.ratio).toBe(1);
    });
  });

  it(`quant stays within the measured KL bound (mean < ${QUANT_MEAN_KL_BOUND} nats)`, async () => {
    const quant = await withNexusQuant(session, { preset: "quant" }, (w) => teacherForced(w, prompt, baseline));
    const high = await withNexusQuant(session, { preset: "high" }, (w) => teacherForced(w, prompt, baseline));
    expect(quant.positions).toBe(65);
    expect(quant.klDivergence).toBeLessThan(QUANT_MEAN_KL_BOUND);
    expect(quant.maxKlDivergence).toBeLessThan(QUANT_MAX_KL_BOUND);
    // Compression must actually change something, and fewer bits (high = K2V2) must not beat quant (K3V3).
    expect(quant.klDivergence).toBeGreaterThan(1e-4);
    expect(high.klDivergence).toBeGreaterThan(quant.klDivergence);
  });

  it.each(["balanced", "max"])("%s runs 200 decode steps with correct shapes and true positions", async (preset) => {
    await withNexusQuant(session, { preset, compressEvery: 32 }, async (wrapped) => {
      const start = promptTokens(300, 3);
      let result = await wrapped.step(start);
      expect(result.dims).toEqual([1, 300, 256]);
      let token = 0;
      for (let i = 0; i < 200; i++) {
        token = (token * 31 + 17) % 256;
        result = await wrapped.step([token]);
        expect(result.dims).toEqual([1, 1, 256]);
        expect(result.logits.every(Number.isFinite)).toBe(true);
      }
      expect(wrapped.position()).toBe(500);
      const stats = wrapped.stats();
      expect(stats.tokens).toBe(500);
      expect(stats.tokensEvicted).toBeGreaterThan(0);
      expect(stats.heldTokens + stats.tokensEvicted).toBe(500);
      expect(stats.compressedKvBytes).toBeLessThan(stats.baselineKvBytes);
      expect(stats.compressions).toBe(1 + Math.floor(200 / 32));
      const cache = wrapped.cache!;
      for (let layer = 0; layer < LAYERS; layer++) {
        const dense = cache.materialize(layer);
        expect(dense.tokens).toBe(stats.heldTokens);
        expect(dense.keys.length).toBe(KV_HEADS * dense.tokens * HEAD_DIM);
        for (let h = 0; h < KV_HEADS; h++) {
          const pos = Array.from(dense.positions.subarray(h * dense.tokens, (h + 1) * dense.tokens));
          expect(pos.slice(0, 4)).toEqual([0, 1, 2, 3]); // attention sinks
          expect(pos.at(-1)).toBe(499); // the newest token keeps its true position
          for (let i = 1; i < pos.length; i++) expect(pos[i]).toBeGreaterThan(pos[i - 1]!);
        }
      }
      // What the wrapper feeds, rebuilt by hand: the shortened past, a mask over held + 1 slots and
      // the TRUE position 500 (not the held count, the mistake that breaks RoPE after eviction).
      const held = stats.heldTokens;
      const feeds: Record<string, ort.Tensor> = {
        input_ids: new ort.Tensor("int64", BigInt64Array.from([42n]), [1, 1]),
        attention_mask: new ort.Tensor("int64", new BigInt64Array(held + 1).fill(1n), [1, held + 1]),
        position_ids: new ort.Tensor("int64", BigInt64Array.from([500n]), [1, 1]),
      };
      for (let layer = 0; layer < LAYERS; layer++) {
        const dense = cache.materialize(layer);
        feeds[`past_key_values.${layer}.key`] = new ort.Tensor("float32", dense.keys, [1, KV_HEADS, held, HEAD_DIM]);
        feeds[`past_key_values.${layer}.value`] = new ort.Tensor("float32", dense.values, [1, KV_HEADS, held, HEAD_DIM]);
      }
      const expected = (await session.run(feeds)).logits.data as Float32Array;
      expect(maxAbsDiff((await wrapped.step([42])).last(), expected)).toBe(0);
    });
  });

  it("denseMirror feeds the same numbers as materializing every step", async () => {
    const run = (denseMirror: boolean) =>
      withNexusQuant(session, { preset: "balanced", compressEvery: 16, denseMirror }, async (w) => {
        const out: Float32Array[] = [(await w.step(prompt)).last().slice()];
        for (let i = 0; i < 60; i++) out.push((await w.step([baseline.tokens[i]!])).last().slice());
        return { out, stats: w.stats() };
      });
    const fresh = await run(false);
    const mirrored = await run(true);
    expect(mirrored.stats.denseKvBytes).toBeGreaterThan(0);
    expect(fresh.stats.denseKvBytes).toBe(0);
    for (let i = 0; i < fresh.out.length; i++) expect(maxAbsDiff(mirrored.out[i]!, fresh.out[i]!)).toBeLessThan(1e-5);
  });

  it("batch 2 with different prompt lengths matches each row run alone", async () => {
    const a = promptTokens(300, 11);
    const b = promptTokens(220, 5);
    for (const preset of ["none", "balanced"]) {
      const together = await withNexusQuant(session, { preset }, (w) => w.generate([a, b], { maxNewTokens: 12 }));
      const alone = await Promise.all(
        [a, b].map((row) => withNexusQuant(session, { preset }, (w: NexusQuantSession) => w.generate(row, { maxNewTokens: 12 }))),
      );
      expect(together.tokens).toEqual([alone[0]!.tokens[0], alone[1]!.tokens[0]]);
      expect(together.stats.tokens).toBe(alone[0]!.stats.tokens + alone[1]!.stats.tokens);
      if (preset !== "none") expect(together.stats.tokensEvicted).toBe(alone[0]!.stats.tokensEvicted + alone[1]!.stats.tokensEvicted);
    }
    // Logits, not only tokens: left padding must be invisible to the padded row.
    await withNexusQuant(session, { preset: "balanced" }, async (w) => {
      const both = await w.step([a, b]);
      const single = await withNexusQuant(session, { preset: "balanced" }, async (s) => (await s.step(b)).last().slice());
      expect(maxAbsDiff(both.last(1), single)).toBeLessThan(1e-4);
      const next = await w.step([[1], [2]]);
      const singleNext = await withNexusQuant(session, { preset: "balanced" }, async (s) => {
        await s.step(b);
        return (await s.step([2])).last().slice();
      });
      expect(maxAbsDiff(next.last(1), singleNext)).toBeLessThan(1e-4);
    });
  });

  it("multi-turn: a second prompt is appended to a compressed cache", async () => {
    const first = promptTokens(300, 2);
    const second = promptTokens(40, 9);
    // Baseline conversation without compression, and the same with quant and with eviction.
    const turns = async (preset: string) =>
      withNexusQuant(session, { preset, compressEvery: 16 }, async (w) => {
        const one = await w.generate(first, { maxNewTokens: 20 });
        const two = await w.generate(second, { maxNewTokens: 20, continue: true });
        // 300 + 19 fed in turn one, then the pending 20th token + 40 + 19.
        expect(w.position()).toBe(300 + 20 + 40 + 19);
        return { one: one.tokens[0]!, two: two.tokens[0]!, stats: two.stats, position: w.position(), last: w.cache?.materialize(0) };
      });
    const dense = await turns("none");
    const quant = await turns("quant");
    const evicting = await turns("balanced");
    expect(quant.stats.tokens).toBe(dense.position);
    expect(evicting.stats.tokensEvicted).toBeGreaterThan(0);
    expect(evicting.last!.positions.at(-1)).toBe(dense.position - 1);
    // The conversation as one prompt (no compression) must give the same second-turn answer as two turns.
    const whole = await withNexusQuant(session, { preset: "none" }, (w) => w.generate([...first, ...dense.one, ...second], { maxNewTokens: 20 }));
    expect(whole.tokens[0]).toEqual(dense.two);
    expect(quant.one.length).toBe(20);
    expect(quant.two.length).toBe(20);
  });

  it("float16 models: past fed as FP16, pass-through exact", async () => {
    const model = tinyModel(7);
    const f16 = await tinySession(model, "f16");
    const short = prompt.slice(0, 120);
    const plain = await plainGreedy(f16, LAYERS, KV_HEADS, HEAD_DIM, short, 8, "f16");
    const none = await withNexusQuant(f16, { preset: "none" }, (w) => w.generate(short, { maxNewTokens: 8 }));
    expect(none.tokens[0]).toEqual(plain.tokens);
    const quant = await withNexusQuant(f16, { preset: "quant" }, (w) => teacherForced(w, short, plain));
    expect(quant.klDivergence).toBeLessThan(QUANT_MEAN_KL_BOUND);
  });

  it("a model that does not follow the convention is a typed error listing its inputs", async () => {
    const bad = await nonConventionSession();
    const error = await withNexusQuant(bad, { preset: "balanced" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NexusQuantError);
    expect((error as NexusQuantError).code).toBe("UNSUPPORTED");
    expect((error as NexusQuantError).message).toContain("input_ids, attention_mask, cache_k0");
    expect((error as NexusQuantError).details?.inputs).toEqual(["input_ids", "attention_mask", "cache_k0"]);
  });

  it("validates options and cleans up after the scoped form", async () => {
    await expect(withNexusQuant(session, { preset: "tiny" })).rejects.toMatchObject({ code: "UNKNOWN_PRESET" });
    await expect(withNexusQuant(session, { compressEvery: 0 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    let kept: NexusQuantSession | undefined;
    await expect(
      withNexusQuant(session, { preset: "quant" }, async (w) => {
        kept = w;
        await w.step([1, 2, 3]);
        throw new Error("user code failed");
      }),
    ).rejects.toThrow("user code failed");
    await expect(kept!.step([1])).rejects.toMatchObject({ code: "DISPOSED" });
    await expect(withNexusQuant({} as never)).rejects.toMatchObject({ code: "UNSUPPORTED" });
    {
      await using w = await withNexusQuant(session, { preset: "quant" });
      await w.step([1, 2, 3]);
      kept = w;
      expect(w.cache!.disposed).toBe(false);
    }
    await expect(kept.step([1])).rejects.toMatchObject({ code: "DISPOSED" });
  });

  it("one conversation at a time: a second generate() while one runs is BUSY, and the first is untouched", async () => {
    await withNexusQuant(session, { preset: "none" }, async (wrapped) => {
      const first = wrapped.generate(prompt, { maxNewTokens: 12 });
      const error = await wrapped.generate(promptTokens(50, 1), { maxNewTokens: 4 }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: "BUSY", name: "NexusQuantError" });
      expect((error as Error).message).toContain("one conversation at a time");
      await expect(wrapped.step([1])).rejects.toMatchObject({ code: "BUSY" });
      expect(() => wrapped.reset()).toThrow(expect.objectContaining({ code: "BUSY" }));
      expect((await first).tokens[0]).toEqual(baseline.tokens.slice(0, 12));
      // Idle again: a new conversation starts normally.
      expect((await wrapped.generate(prompt, { maxNewTokens: 3 })).tokens[0]).toEqual(baseline.tokens.slice(0, 3));
    });
  });

  it("dispose() while a generate() runs frees the cache when that step returns; the generate() rejects with DISPOSED", async () => {
    const wrapped = await withNexusQuant(session, { preset: "balanced" });
    const running = wrapped.generate(prompt, { maxNewTokens: 8 });
    const cache = await new Promise<NonNullable<typeof wrapped.cache>>((resolve) => {
      const poll = () => (wrapped.cache !== undefined ? resolve(wrapped.cache) : setImmediate(poll));
      poll();
    });
    wrapped.dispose();
    await expect(running).rejects.toMatchObject({ code: "DISPOSED" });
    expect(cache.disposed).toBe(true);
    await expect(wrapped.generate(prompt)).rejects.toMatchObject({ code: "DISPOSED" });
  });
});
