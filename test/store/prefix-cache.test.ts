/**
 * Conversations that move through a store: a state saved on one handle and resumed from Redis (or a
 * directory) on another; the prefix cache sharing a document between conversations, each with its
 * own copy; a store that fails leaving the handle usable.
 */
import { afterAll, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NexusQuantError } from "../../src/errors.js";
import { withNexusQuant } from "../../src/integrations/index.js";
import { createTinyLlama, type LlamaModel } from "../../src/model/index.js";
import { FileStateStore, PrefixCache, RedisStateStore, type StateStore } from "../../src/store/index.js";
import { ort, promptTokens } from "../integrations/helpers.js";
import { testRedis } from "./local-redis.js";

const redis = await testRedis();
const redisSuffix = redis.skipReason !== undefined ? ` (skipped: ${redis.skipReason})` : "";

const model = (seed = 11): LlamaModel => createTinyLlama({ seed, layers: 2, hidden: 64, heads: 4, kvHeads: 2, headDim: 32, intermediate: 128, vocab: 256 });
const OPTIONS = { preset: "balanced", scorer: "reconstruct" as const, prefillChunk: 32, compressEvery: 16 };
const SAMPLING = { temperature: 0.9, seed: 3, maxNewTokens: 24 };
const DOC = promptTokens(300, 5);
const QUESTIONS = [promptTokens(23, 1), promptTokens(17, 2)];

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function fileStore(): Promise<FileStateStore> {
  const dir = await mkdtemp(join(tmpdir(), "nq-prefix-"));
  dirs.push(dir);
  return new FileStateStore({ dir });
}

/** What one handle that reads the whole prompt itself generates. */
async function straight(m: LlamaModel, prompt: number[]): Promise<number[]> {
  const lm = await withNexusQuant(m, { ort, ...OPTIONS });
  const out = await lm.generate(prompt, SAMPLING);
  lm.dispose();
  return out.tokens[0]!;
}

describe("PrefixCache", () => {
  it("a second conversation over the same document starts from its stored state, with the tokens of one that read it all; each gets its own copy", async () => {
    const m = model();
    const store = await fileStore();
    const prefixes = new PrefixCache({ store, chunkTokens: 64 });
    const outputs: number[][] = [];
    let stored: Uint8Array | undefined;
    for (const [i, q] of [...QUESTIONS, QUESTIONS[0]!].entries()) {
      const prompt = [...DOC, ...q];
      const lm = await withNexusQuant(m, { ort, ...OPTIONS }); // a fresh handle: another worker
      const r = await prefixes.prefill(lm, prompt, { prefixTokens: DOC.length });
      // The last chunk boundary within the document (300 tokens): 256.
      expect(r).toMatchObject({ position: 256, reusedTokens: i === 0 ? 0 : 256, prefilledTokens: i === 0 ? 256 : 0 });
      expect(lm.position()).toBe(256);
      const out = await lm.generate(prompt.slice(r.position), { ...SAMPLING, continue: true });
      outputs.push(out.tokens[0]!);
      expect(out.tokens[0]).toEqual(await straight(m, prompt));
      const key = await prefixes.keyFor(lm, prompt, 256);
      if (stored === undefined) stored = await store.get(key);
      else expect(Buffer.from((await store.get(key))!).equals(Buffer.from(stored))).toBe(true); // nobody's turn changed it
      lm.dispose();
    }
    expect(stored).toBeDefined();
    expect(outputs[2]).toEqual(outputs[0]);
    expect(outputs[1]).not.toEqual(outputs[0]);
  });

  it("another model or other options never find the state (their key differs); bad chunkTokens and tokens are INVALID_ARGUMENT", async () => {
    const m = model();
    const store = await fileStore();
    const prefixes = new PrefixCache({ store, chunkTokens: 64 });
    const prompt = [...DOC, ...QUESTIONS[0]!];
    const first = await withNexusQuant(m, { ort, ...OPTIONS });
    await prefixes.prefill(first, prompt);
    for (const [other, options] of [
      [model(12), OPTIONS],
      [m, { ...OPTIONS, preset: "quant" }],
      [m, { ...OPTIONS, compressEvery: 8 }],
      [m, { ...OPTIONS, seed: 9 }],
      [m, { ...OPTIONS, rereadLayers: "all" }],
    ] as const) {
      const lm = await withNexusQuant(other, { ort, ...options });
      expect((await prefixes.prefill(lm, prompt)).reusedTokens).toBe(0);
      lm.dispose();
    }
    expect(() => new PrefixCache({ store, chunkTokens: 0 })).toThrow(NexusQuantError);
    const odd = new PrefixCache({ store, chunkTokens: 48 });
    await expect(odd.prefill(first, prompt)).rejects.toThrow(/multiple of the handle's prefillChunk \(32\)/);
    await expect(prefixes.prefill(first, [])).rejects.toThrow(/non-empty array/);
    first.dispose();
  });

  it("a store that fails while storing: the prefill still succeeds, reports storeError, and the conversation goes on", async () => {
    const m = model();
    const failing: StateStore = {
      get: async () => undefined,
      put: async () => {
        throw new NexusQuantError("STORE_UNAVAILABLE", "simulated");
      },
      delete: async () => false,
    };
    const lm = await withNexusQuant(m, { ort, ...OPTIONS });
    const prompt = [...DOC, ...QUESTIONS[1]!];
    const r = await new PrefixCache({ store: failing, chunkTokens: 64 }).prefill(lm, prompt);
    expect(r.storeError?.code).toBe("STORE_UNAVAILABLE");
    expect(r.storedKey).toBeUndefined();
    expect((await lm.generate(prompt.slice(r.position), { ...SAMPLING, continue: true })).tokens[0]).toEqual(await straight(m, prompt));
    lm.dispose();
  });
});

describe(`States through Redis${redisSuffix}`, () => {
  it.skipIf(redis.skipReason !== undefined)("a state saved on one handle, put in Redis, resumes on another with the uninterrupted tokens; the prefix cache works on Redis too", async () => {
    const m = model();
    const store = new RedisStateStore({ url: redis.server!.url, chunkBytes: 4096 });
    const a = await withNexusQuant(m, { ort, ...OPTIONS });
    await a.generate(DOC, SAMPLING);
    await store.put("conversation:1", await a.saveState(), { ttlSeconds: 60 });
    const b = await withNexusQuant(m, { ort, state: (await store.get("conversation:1"))! });
    const next = QUESTIONS[0]!;
    expect((await b.generate(next, { ...SAMPLING, continue: true })).tokens).toEqual((await a.generate(next, { ...SAMPLING, continue: true })).tokens);

    const prefixes = new PrefixCache({ store, chunkTokens: 64 });
    const prompt = [...DOC, ...QUESTIONS[1]!];
    await prefixes.prefill(a, prompt, { prefixTokens: DOC.length });
    const r = await prefixes.prefill(b, prompt, { prefixTokens: DOC.length });
    expect(r.reusedTokens).toBe(256);
    expect((await b.generate(prompt.slice(r.position), { ...SAMPLING, continue: true })).tokens[0]).toEqual(await straight(m, prompt));
    a.dispose();
    b.dispose();
    await store.close();
  });

  it("Redis unreachable while saving: a typed error within the timeout, and the handle goes on as if nothing happened", async () => {
    const m = model();
    const store = new RedisStateStore({ url: "redis://127.0.0.1:9", timeoutMs: 300 });
    const lm = await withNexusQuant(m, { ort, ...OPTIONS });
    const reference = await withNexusQuant(m, { ort, ...OPTIONS });
    await lm.generate(DOC, SAMPLING);
    await reference.generate(DOC, SAMPLING);
    const t0 = performance.now();
    await expect(store.put("c", await lm.saveState())).rejects.toMatchObject({ code: "STORE_UNAVAILABLE" });
    expect(performance.now() - t0).toBeLessThan(1500);
    const q = QUESTIONS[0]!;
    expect((await lm.generate(q, { ...SAMPLING, continue: true })).tokens).toEqual((await reference.generate(q, { ...SAMPLING, continue: true })).tokens);
    lm.dispose();
    reference.dispose();
    await store.close();
  });
});
