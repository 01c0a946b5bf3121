/**
 * The native path under concurrency and limits: two handles over one loaded model at once, a handle
 * in a worker thread, a prompt refused before prefill when its cache cannot fit, dispose() during a
 * running generate(), and bad inputs (token ids out of the vocabulary, empty prompts, maxNewTokens 0)
 * in every mode.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withNexusQuant, type NativeModelSession } from "../../src/integrations/index.js";
import { prefillBytes } from "../../src/integrations/prefill-memory.js";
import { getPreset } from "../../src/format/index.js";
import { loadModel, writeModelDir, type LlamaModel } from "../../src/model/index.js";
import { memoryStats, setHostMemoryLimit } from "../../src/runtime/index.js";
import { ort, promptTokens, tinyModel, tinySession } from "./helpers.js";
import { rejectionOf, TIME_SCALE } from "../helpers.js";


let root: string;
let dir: string;
let model: LlamaModel;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "nq-native-limits-"));
  dir = join(root, "tiny");
  await writeModelDir(dir, tinyModel(5));
  model = await loadModel(dir);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("concurrency", () => {
  it("two handles over one loaded model generate at the same time, each as it would alone", async () => {
    const prompts = [promptTokens(150, 1), promptTokens(90, 2)];
    const presets = ["balanced", "quant"];
    const alone: number[][] = [];
    for (let i = 0; i < 2; i++) {
      await using lm = await withNexusQuant(model, { preset: presets[i], ort, prefillChunk: 32, compressEvery: 8 });
      alone.push((await lm.generate(prompts[i]!, { maxNewTokens: 24 })).tokens[0]!);
    }
    await using a = await withNexusQuant(model, { preset: presets[0], ort, prefillChunk: 32, compressEvery: 8 });
    await using b = await withNexusQuant(model, { preset: presets[1], ort, prefillChunk: 32, compressEvery: 8 });
    // Interleaved on the event loop: each awaits ORT runs and compress() (native async work).
    const order: string[] = [];
    const [ra, rb] = await Promise.all([
      a.generate(prompts[0]!, { maxNewTokens: 24, onToken: () => order.push("a") }),
      b.generate(prompts[1]!, { maxNewTokens: 24, onToken: () => order.push("b") }),
    ]);
    expect([ra.tokens[0], rb.tokens[0]]).toEqual(alone);
    expect(a.cache).not.toBe(b.cache);
    // They really ran at the same time: the token streams interleave.
    expect(order.join("")).not.toBe("a".repeat(24) + "b".repeat(24));
    expect(order.join("")).not.toBe("b".repeat(24) + "a".repeat(24));
  });

  it("one handle is one conversation: a second call while one runs is BUSY, the running one is unaffected", async () => {
    await using lm = await withNexusQuant(model, { preset: "balanced", ort });
    const alone = await withNexusQuant(model, { preset: "balanced", ort }, (w) => w.generate(promptTokens(60), { maxNewTokens: 10 }));
    const running = lm.generate(promptTokens(60), { maxNewTokens: 10 });
    for (const call of [() => lm.generate([1, 2]), () => lm.step([1])]) await expect(call()).rejects.toMatchObject({ code: "BUSY" });
    expect(() => lm.reset()).toThrow(expect.objectContaining({ code: "BUSY" }));
    expect((await running).tokens).toEqual(alone.tokens);
  });

  it(
    "a handle created and used inside a worker thread gives the main thread's tokens",
    async () => {
      const prompt = promptTokens(40, 3);
      const main = await withNexusQuant(model, { preset: "balanced", ort }, (w) => w.generate(prompt, { maxNewTokens: 12 }));
      const run = () =>
        new Promise<Record<string, unknown>>((resolve, reject) => {
          // A .mjs entry that registers tsx, then imports the TypeScript worker (workers start without the test's loader).
          const w = new Worker(new URL("./fixtures/native-worker.mjs", import.meta.url), { workerData: { dir, preset: "balanced", prompt, maxNewTokens: 12 } });
          w.once("message", (m) => {
            void w.terminate();
            resolve(m as Record<string, unknown>);
          });
          w.once("error", reject);
        });
      // Two workers at once, and the main thread generating beside them.
      const [one, two, here] = await Promise.all([run(), run(), withNexusQuant(model, { preset: "balanced", ort }, (w) => w.generate(prompt, { maxNewTokens: 12 }))]);
      for (const r of [one, two]) expect(r).toEqual({ ok: true, tokens: main.tokens[0], position: 40 + 11 });
      expect(here.tokens).toEqual(main.tokens);
    },
    60_000 * TIME_SCALE,
  );
});

describe("memory limits: a prompt whose cache cannot fit is refused before its prefill", () => {
  const prompt = promptTokens(300, 4);
  const need = () =>
    prefillBytes({
      layers: model.config.numLayers,
      kvHeads: model.config.numKvHeads,
      headDim: model.config.headDim,
      spec: getPreset("balanced").spec,
      tokensAfter: [300],
      chunkTokens: 64,
      heldBytes: 0,
      memoryLimitBytes: 0,
      preset: "balanced",
    });

  it("options.memoryLimitBytes: OUT_OF_MEMORY naming the bytes, nothing run, the handle still usable", async () => {
    const { neededBytes, heldAfterBytes } = need();
    await using lm = await withNexusQuant(model, { preset: "balanced", ort, prefillChunk: 64, memoryLimitBytes: neededBytes - 1 });
    const e = await rejectionOf(lm.generate(prompt, { maxNewTokens: 4 }));
    expect(e.code).toBe("OUT_OF_MEMORY");
    expect(e.message).toContain(`needs ${neededBytes} bytes`);
    expect(e.details).toMatchObject({ neededBytes, heldAfterBytes, source: "options.memoryLimitBytes", availableBytes: neededBytes - 1 });
    // Before prefill: no segment ran, no conversation was started.
    expect(lm.timings()).toMatchObject({ steps: 0, segmentSeconds: 0 });
    expect(lm.position()).toBe(0);
    expect(lm.cache).toBeUndefined();
    // A prompt that fits still runs on the same handle.
    expect((await lm.generate(promptTokens(20), { maxNewTokens: 2 })).tokens[0]).toHaveLength(2);
  });

  it("at exactly the bytes it names, the same prompt runs (the allocator's own limit is not hit)", async () => {
    const { neededBytes, heldAfterBytes } = need();
    await using lm = await withNexusQuant(model, { preset: "balanced", ort, prefillChunk: 64, memoryLimitBytes: neededBytes });
    await lm.step(prompt);
    expect(lm.stats().compressedKvBytes).toBe(heldAfterBytes);
  });

  it("the process-wide setHostMemoryLimit is honoured the same way", async () => {
    const { neededBytes } = need();
    await using lm = await withNexusQuant(model, { preset: "balanced", ort, prefillChunk: 64 });
    setHostMemoryLimit(memoryStats().host.totalBytes + neededBytes - 1);
    try {
      const e = await rejectionOf(lm.step(prompt));
      expect(e).toMatchObject({ code: "OUT_OF_MEMORY", details: { neededBytes, source: "setHostMemoryLimit" } });
      expect(lm.position()).toBe(0);
    } finally {
      setHostMemoryLimit(null);
    }
  });

  it("a later turn that cannot fit is refused before it runs, and the conversation stays as it was", async () => {
    await using lm = await withNexusQuant(model, { preset: "quant", ort, prefillChunk: 64, memoryLimitBytes: 200_000 });
    await lm.generate(promptTokens(100), { maxNewTokens: 3 });
    const position = lm.position();
    const stats = lm.stats();
    const e = await rejectionOf(lm.generate(promptTokens(900, 5), { maxNewTokens: 3, continue: true }));
    expect(e).toMatchObject({ code: "OUT_OF_MEMORY", details: { source: "options.memoryLimitBytes", heldBytes: stats.compressedKvBytes } });
    expect(lm.position()).toBe(position);
    expect(lm.stats()).toEqual(stats);
  });

  it("decode steps that outgrow the limit get the allocator's OUT_OF_MEMORY; the half-run step drops the conversation", async () => {
    // "none" holds every token in FP16: 3 layers... of the tiny model, 256 B per token and layer.
    const { numLayers, numKvHeads, headDim } = model.config;
    const perToken = numLayers * 2 * numKvHeads * headDim * 2;
    await using lm = await withNexusQuant(model, { preset: "none", ort, memoryLimitBytes: 60 * perToken });
    const e = await rejectionOf(lm.generate(promptTokens(20), { maxNewTokens: 200 }));
    expect(e.code).toBe("OUT_OF_MEMORY");
    expect(lm.position()).toBe(0);
    expect(lm.cache).toBeUndefined();
    expect((await lm.generate(promptTokens(10), { maxNewTokens: 2 })).tokens[0]).toHaveLength(2);
  });
});

describe("dispose() during a running generate()", () => {
  it("stops at the next step: the call rejects with DISPOSED and every byte of its cache is freed", async () => {
    const before = memoryStats().host.totalBytes;
    const lm = await withNexusQuant(model, { preset: "balanced", ort, compressEvery: 4 });
    const seen: number[] = [];
    const running = lm.generate(promptTokens(120), {
      maxNewTokens: 200,
      onToken: (_t, { index }) => {
        seen.push(index);
        if (index === 5) lm.dispose();
      },
    });
    await expect(running).rejects.toMatchObject({ code: "DISPOSED" });
    expect(seen).toEqual([0, 1, 2, 3, 4, 5]); // no step after dispose()
    expect(memoryStats().host.totalBytes).toBe(before);
    await expect(lm.generate([1])).rejects.toMatchObject({ code: "DISPOSED" });
  });

  it("await [Symbol.asyncDispose]() while generate() runs resolves after the call has stopped and all is freed", async () => {
    const before = memoryStats().host.totalBytes;
    const lm = await withNexusQuant(model, { preset: "quant", ort });
    let tokens = 0;
    const running = lm.generate(promptTokens(200), { maxNewTokens: 100, onToken: () => tokens++ });
    running.catch(() => undefined);
    while (tokens < 3) await new Promise((r) => setTimeout(r, 1));
    await lm[Symbol.asyncDispose]();
    // Resolved once the running call stopped (no token after this point) and its cache was freed.
    const at = tokens;
    expect(memoryStats().host.totalBytes).toBe(before);
    await expect(running).rejects.toMatchObject({ code: "DISPOSED" });
    expect(tokens).toBe(at);
    expect(tokens).toBeLessThan(100);
    await lm[Symbol.asyncDispose](); // twice: a no-op
  });
});

describe("bad input in every mode: typed errors, state unchanged", () => {
  type Handle = NativeModelSession | Awaited<ReturnType<typeof withNexusQuant<Awaited<ReturnType<typeof tinySession>>>>>;
  const modes: [string, () => Promise<Handle>][] = [
    ...["none", "quant", "balanced"].map((preset): [string, () => Promise<Handle>] => [`native ${preset}`, () => withNexusQuant(model, { preset, ort })]),
    ...["none", "balanced"].map((preset): [string, () => Promise<Handle>] => [`onnxruntime session ${preset}`, async () => withNexusQuant(await tinySession(tinyModel(5)), { preset, ort })]),
  ];

  it.each(modes)("%s: token ids outside the vocabulary, empty prompts, maxNewTokens 0", async (_mode, open) => {
    const lm = await open();
    try {
      // Out of the vocabulary (256), before any conversation and in the middle of one.
      for (const ids of [[1, 2, 256], [[3], [1000]]] as unknown as number[][]) {
        await expect(lm.generate(ids, { maxNewTokens: 2 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/token id in \[0, 256\)/) });
      }
      await lm.generate(promptTokens(30), { maxNewTokens: 3 });
      const position = lm.position();
      const stats = lm.stats();
      for (const bad of [[300], [-1], [1.5], [Number.NaN]]) {
        await expect(lm.step(bad)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
        await expect(lm.generate(bad, { continue: true })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
      }
      // Empty prompts: no tokens at all, or only empty rows (a new conversation would replace the held one).
      for (const empty of [[], [[]], [[], []]] as unknown as number[][]) {
        await expect(lm.step(empty)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
        await expect(lm.generate(empty)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
      }
      // Out of the vocabulary in a new conversation: refused before the held one is dropped.
      await expect(lm.generate([7, 256])).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
      expect(lm.position()).toBe(position);
      expect(lm.stats()).toEqual(stats);
      // maxNewTokens 0: the prompt goes in (a prefill), nothing is sampled; a later turn continues it.
      const zero = await lm.generate(promptTokens(17, 2), { maxNewTokens: 0 });
      expect(zero.tokens).toEqual([[]]);
      expect(lm.position()).toBe(17);
      const next = await lm.generate([5, 6], { maxNewTokens: 2, continue: true });
      expect(next.tokens[0]).toHaveLength(2);
      expect(lm.position()).toBe(17 + 2 + 1);
      await expect(lm.generate([1], { maxNewTokens: -1 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
      await expect(lm.generate([1], { maxNewTokens: 1.5 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    } finally {
      await lm[Symbol.asyncDispose]();
    }
  });
});
