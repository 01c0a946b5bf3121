/**
 * Saved conversation states (lm.saveState(), withNexusQuant(model, { state }), lm.restoreState()):
 * a conversation saved after a turn and resumed in a fresh handle goes on with exactly the tokens and
 * logits of the uninterrupted handle, for every scorer (the native engine's own state included), and
 * every bad input is refused with its code before anything changes.
 */
import { describe, expect, it } from "vitest";
import { NexusQuantError } from "../../src/errors.js";
import { withNexusQuant, type NativeModelSession } from "../../src/integrations/index.js";
import { decodeConversationState, encodeConversationState, STATE_FORMAT_VERSION } from "../../src/integrations/conversation-state.js";
import { convertWeights, createTinyLlama, modelFingerprint, loadModel, writeModelDir, type LlamaModel } from "../../src/model/index.js";
import { crc32, tableCrc32 } from "../../src/shared/crc32.js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ort, promptTokens, tinySession, tinyModel } from "./helpers.js";

const model = (seed = 11): LlamaModel => createTinyLlama({ seed, layers: 2, hidden: 64, heads: 4, kvHeads: 2, headDim: 32, intermediate: 128, vocab: 256 });
/** Sampling, so that the tokens of a random-weight model vary and a wrong state shows. */
const SAMPLING = { temperature: 0.9, seed: 5 };
const TURNS = [
  { ids: promptTokens(150, 3), maxNewTokens: 21 },
  { ids: [5, 6, 7, 8, 9, 10, 11], maxNewTokens: 27 },
  { ids: promptTokens(40, 9), maxNewTokens: 18 },
];

/** Cases as data: every scorer, since each carries different state besides the cache. */
const CASES: { name: string; options: Record<string, unknown>; batch?: number }[] = [
  { name: "none", options: { preset: "none" } },
  { name: "quant", options: { preset: "quant" } },
  { name: "balanced (key-key)", options: { preset: "balanced" } },
  { name: "balanced + reconstruct", options: { preset: "balanced", scorer: "reconstruct" } },
  { name: "balanced + reconstruct, re-read through every layer", options: { preset: "balanced", scorer: "reconstruct", rereadLayers: "all" } },
  { name: "balanced + observed", options: { preset: "balanced", scorer: "observed" } },
  { name: "max, batch 2, rows of different lengths", options: { preset: "max" }, batch: 2 },
];

const BASE = { prefillChunk: 64, compressEvery: 16 };

function rows(ids: number[], batch: number): number[][] {
  return Array.from({ length: batch }, (_, b) => ids.slice(b * 5)); // row b is 5·b tokens shorter
}

async function code(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (e) {
    if (e instanceof NexusQuantError) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error("expected a NexusQuantError");
}

/** Runs TURNS on one handle; returns the tokens of each turn and the logits of one step after them. */
async function uninterrupted(m: LlamaModel, options: Record<string, unknown>, batch: number): Promise<{ tokens: number[][][]; logits: Float32Array }> {
  const lm = await withNexusQuant(m, { ort, ...BASE, ...options });
  const tokens: number[][][] = [];
  for (const [i, t] of TURNS.entries()) tokens.push((await lm.generate(rows(t.ids, batch), { maxNewTokens: t.maxNewTokens, continue: i > 0, ...SAMPLING })).tokens);
  const logits = (await lm.step(rows([3], batch))).logits.slice();
  lm.dispose();
  return { tokens, logits };
}

/** The same turns, each on a fresh handle resumed from the state the previous one saved. */
async function hopping(m: LlamaModel, options: Record<string, unknown>, batch: number, edit?: (state: Uint8Array) => Uint8Array): Promise<{ tokens: number[][][]; logits: Float32Array; sizes: number[] }> {
  let state: Uint8Array | undefined;
  const tokens: number[][][] = [];
  const sizes: number[] = [];
  let lm: NativeModelSession | undefined;
  for (const [i, t] of TURNS.entries()) {
    lm = state === undefined ? await withNexusQuant(m, { ort, ...BASE, ...options }) : await withNexusQuant(m, { ort, state });
    tokens.push((await lm.generate(rows(t.ids, batch), { maxNewTokens: t.maxNewTokens, continue: i > 0, ...SAMPLING })).tokens);
    state = await lm.saveState();
    sizes.push(state.byteLength);
    if (edit !== undefined) state = edit(state);
    if (i + 1 < TURNS.length) lm.dispose();
  }
  const logits = (await lm!.step(rows([3], batch))).logits.slice();
  lm!.dispose();
  return { tokens, logits, sizes };
}

describe("saveState / resume (native path)", () => {
  it.each(CASES)("$name: a conversation resumed in a fresh handle at every turn gives the uninterrupted tokens and logits", async ({ options, batch = 1 }) => {
    const m = model();
    const straight = await uninterrupted(m, options, batch);
    const hopped = await hopping(m, options, batch);
    expect(hopped.tokens).toEqual(straight.tokens);
    expect(Array.from(hopped.logits)).toEqual(Array.from(straight.logits));
    // The tokens vary (sampling), so equal tokens say something.
    expect(new Set(straight.tokens.flat(2)).size).toBeGreaterThan(5);
  });

  it.each([
    { scorer: "reconstruct", drop: (s: ReturnType<typeof decodeConversationState>) => s.native!.sinceCompression.forEach((t) => (t.length = 0)) },
    { scorer: "observed", drop: (s: ReturnType<typeof decodeConversationState>) => s.native!.observed.fill(undefined) },
  ])("$scorer: without the engine state it carries, the resumed conversation differs (the state is needed, and this test sees it)", async ({ scorer, drop }) => {
    const m = model();
    const options = { preset: "balanced", scorer };
    const straight = await uninterrupted(m, options, 1);
    const withoutEngine = await hopping(m, options, 1, (bytes) => {
      const s = decodeConversationState(bytes);
      expect(s.native!.sinceCompression[0]!.length + (s.native!.observed[0]?.count ?? 0)).toBeGreaterThan(0);
      drop(s);
      return encodeConversationState(s);
    });
    expect(Array.from(withoutEngine.logits)).not.toEqual(Array.from(straight.logits));
  });

  it("restoreState on a live handle replaces its conversation (a worker serving many); the saving handle goes on unchanged", async () => {
    const m = model();
    const options = { ort, ...BASE, preset: "balanced" };
    const a = await withNexusQuant(m, options);
    const worker = await withNexusQuant(m, options);
    await a.generate(TURNS[0]!.ids, { maxNewTokens: 10 });
    await worker.generate(promptTokens(90, 1), { maxNewTokens: 4 }); // another conversation, dropped by restoreState
    const state = await a.saveState();
    await worker.restoreState(state);
    expect(worker.position()).toBe(a.position());
    const fromWorker = await worker.generate([1, 2, 3], { maxNewTokens: 15, continue: true, ...SAMPLING });
    const fromSaver = await a.generate([1, 2, 3], { maxNewTokens: 15, continue: true, ...SAMPLING });
    expect(fromWorker.tokens).toEqual(fromSaver.tokens);
    expect(worker.stats()).toMatchObject({ tokens: a.stats().tokens, heldTokens: a.stats().heldTokens, compressedKvBytes: a.stats().compressedKvBytes });
    a.dispose();
    worker.dispose();
  });

  it("the state carries the preset, spec, schedule and pending tokens; the wire format adds a small header to the cache's bytes", async () => {
    const m = model();
    const lm = await withNexusQuant(m, { ort, ...BASE, preset: "balanced" });
    const out = await lm.generate(TURNS[0]!.ids, { maxNewTokens: 21 });
    const state = await lm.saveState();
    const s = decodeConversationState(state);
    expect(s).toMatchObject({ version: STATE_FORMAT_VERSION, kind: "native", prefillChunk: 64, pending: [out.tokens[0]!.at(-1)] });
    expect(s.conversation).toMatchObject({ preset: "balanced", lengths: [150 + 20], schedule: { every: 16, since: 20 - 16 } });
    expect(s.conversation.spec).toEqual(lm.options.spec);
    expect(s.model).toEqual(await modelFingerprint(m));
    expect(Array.from(s.cache)).toEqual(Array.from(lm.cache!.serialize()));
    // Besides the cache: preamble, JSON header, CRC, and the 4 tokens since the last compression.
    const overhead = state.byteLength - s.cache.byteLength;
    expect(overhead).toBeLessThan(1024);
    lm.dispose();
  });

  it("withNexusQuant(model, { state }) takes the preset from the state; agreeing options are accepted, conflicting ones refused by name", async () => {
    const m = model();
    const lm = await withNexusQuant(m, { ort, ...BASE, preset: "balanced" });
    await lm.generate(TURNS[0]!.ids, { maxNewTokens: 3 });
    const state = await lm.saveState();
    const resumed = await withNexusQuant(m, { ort, state, preset: "L", compressEvery: 16, prefillChunk: 64, rereadLayers: "half", backend: "cpu" });
    expect(resumed.options).toMatchObject({ preset: "balanced", compressEvery: 16, prefillChunk: 64, rereadLayers: "half" });
    expect(resumed.position()).toBe(lm.position());
    resumed.dispose();
    for (const [conflict, arg] of [
      [{ preset: "quant" }, "options.preset"],
      [{ scorer: "observed" }, "options.scorer"],
      [{ spec: { evictFraction: 0.5 } }, "options.spec"],
      [{ compressEvery: 8 }, "options.compressEvery"],
      [{ prefillChunk: 32 }, "options.prefillChunk"],
      [{ rereadLayers: "all" }, "options.rereadLayers"],
    ] as const) {
      const e = await code(withNexusQuant(m, { ort, state, ...conflict }));
      expect(e.code).toBe("INVALID_ARGUMENT");
      expect(e.message).toContain(arg);
      expect(e.message).toContain("conflicts with the saved state");
    }
    lm.dispose();
  });

  it("fingerprint: config and every weight byte; equal for the same checkpoint loaded twice, different for another seed or dtype; computed once per model", async () => {
    const m = model();
    const dir = await mkdtemp(join(tmpdir(), "nq-fp-"));
    try {
      await writeModelDir(dir, m);
      const loaded = await loadModel(dir);
      const f = await modelFingerprint(m);
      expect(f.id).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect((await modelFingerprint(loaded)).id).toBe(f.id);
      expect((await modelFingerprint(model(12))).id).not.toBe(f.id);
      expect((await modelFingerprint({ ...m, weights: convertWeights(m.weights, "F16") })).id).not.toBe(f.id);
      expect((await modelFingerprint({ ...m, config: { ...m.config, rmsNormEps: 1e-5 } })).id).not.toBe(f.id);
      expect(modelFingerprint(m)).toBe(modelFingerprint(m));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("CRC-32: the portable table gives zlib's values", () => {
    const data = new Uint8Array(10_007).map((_, i) => (i * 2654435761) >>> 24);
    for (const n of [0, 1, 7, 4096, data.length]) expect(tableCrc32(data.subarray(0, n))).toBe(crc32(data.subarray(0, n)));
    expect(crc32(new TextEncoder().encode("123456789"))).toBe(0xcbf43926);
  });
});

describe("saveState / resume: bad input and faults", () => {
  async function saved(): Promise<{ m: LlamaModel; lm: NativeModelSession; state: Uint8Array }> {
    const m = model();
    const lm = await withNexusQuant(m, { ort, ...BASE, preset: "balanced", scorer: "reconstruct" });
    await lm.generate(TURNS[0]!.ids, { maxNewTokens: 21 });
    return { m, lm, state: await lm.saveState() };
  }

  /** A state whose header is edited and whose CRC is recomputed: only the field check can catch it. */
  function withHeader(state: Uint8Array, edit: (h: Record<string, unknown>) => void): Uint8Array {
    const view = new DataView(state.buffer, state.byteOffset, state.byteLength);
    const len = view.getUint32(8, true);
    const header = JSON.parse(new TextDecoder().decode(state.subarray(12, 12 + len))) as Record<string, unknown>;
    edit(header);
    const json = new TextEncoder().encode(JSON.stringify(header));
    const out = new Uint8Array(12 + json.length + state.length - 12 - len);
    out.set(state.subarray(0, 12));
    new DataView(out.buffer).setUint32(8, json.length, true);
    out.set(json, 12);
    out.set(state.subarray(12 + len), 12 + json.length);
    return recrc(out);
  }
  function recrc(bytes: Uint8Array): Uint8Array {
    const out = bytes.slice();
    new DataView(out.buffer).setUint32(out.length - 4, crc32(out.subarray(0, out.length - 4)), true);
    return out;
  }

  it("truncated, corrupted or foreign bytes → CORRUPT_DATA naming what failed; the handle keeps its conversation", async () => {
    const { m, lm, state } = await saved();
    const position = lm.position();
    const cases: [string, Uint8Array, RegExp][] = [
      ["empty", new Uint8Array(0), /truncated/],
      ["the preamble only", state.slice(0, 12), /truncated/],
      ["cut in the cache", state.slice(0, Math.floor(state.length / 2)), /checksum mismatch/],
      ["last byte missing", state.slice(0, -1), /checksum mismatch/],
      ["a flipped bit in the cache", (() => { const s = state.slice(); s[s.length - 100]! ^= 4; return s; })(), /checksum mismatch/],
      ["foreign bytes", new TextEncoder().encode('{"hello": "world"} and some more bytes'), /bad magic/],
      ["a CompressedKVCache's bytes", lm.cache!.serialize(), /CompressedKVCache\.deserialize/],
      ["a header that is not JSON", (() => { const s = state.slice(); s[13] = 0x7b; s[14] = 0x7b; return recrc(s); })(), /not valid JSON/],
      ["a header longer than the data", (() => { const s = state.slice(); new DataView(s.buffer).setUint32(8, 1e9, true); return recrc(s); })(), /header length/],
      ["lengths of another row count", withHeader(state, (h) => (h.lengths = [1, 2])), /"pending"|"engine"/],
      ["a negative length", withHeader(state, (h) => (h.lengths = [-3])), /"lengths"/],
      ["a bad spec", withHeader(state, (h) => ((h.spec as Record<string, unknown>).keyBits = 5)), /"spec"/],
      ["a cache size beyond the data", withHeader(state, (h) => (h.cacheBytes = (h.cacheBytes as number) + 8)), /declares/],
      ["a length the cache does not hold", withHeader(state, (h) => (h.lengths = [(h.lengths as number[])[0]! + 1])), /does not fit its cache/],
      ["a corrupt cache section under a valid CRC", (() => { const s = state.slice(); const v = new DataView(s.buffer); const at = 12 + v.getUint32(8, true) + 40; s[at]! ^= 0xff; return recrc(s); })(), /cache section/],
    ];
    for (const [name, bytes, pattern] of cases) {
      const e = await code(lm.restoreState(bytes));
      expect(e.code, name).toBe("CORRUPT_DATA");
      expect(e.message, name).toMatch(pattern);
      expect((await code(withNexusQuant(m, { ort, state: bytes }))).code, name).toBe("CORRUPT_DATA");
      expect(lm.position(), name).toBe(position);
    }
    expect((await code(lm.restoreState("not bytes" as never))).code).toBe("INVALID_ARGUMENT");
    // Still the same conversation: the next turn runs as it would have.
    const fresh = await withNexusQuant(m, { ort, state });
    const a = await lm.generate([4, 5], { maxNewTokens: 8, continue: true });
    const b = await fresh.generate([4, 5], { maxNewTokens: 8, continue: true });
    expect(a.tokens).toEqual(b.tokens);
    lm.dispose();
    fresh.dispose();
  });

  it("a newer format version → UNSUPPORTED saying to upgrade", async () => {
    const { m, lm, state } = await saved();
    const newer = state.slice();
    new DataView(newer.buffer).setUint32(4, STATE_FORMAT_VERSION + 1, true);
    for (const bytes of [newer, recrc(newer)]) {
      const e = await code(withNexusQuant(m, { ort, state: bytes }));
      expect(e.code).toBe("UNSUPPORTED");
      expect(e.message).toContain(`version ${STATE_FORMAT_VERSION + 1}`);
      expect(e.message).toContain("Upgrade nexusquant");
    }
    lm.dispose();
  });

  it("a state from another model → MODEL_MISMATCH naming both fingerprints", async () => {
    const { m, lm, state } = await saved();
    const other = model(12);
    const e = await code(withNexusQuant(other, { ort, state }));
    expect(e.code).toBe("MODEL_MISMATCH");
    expect(e.message).toContain((await modelFingerprint(m)).id);
    expect(e.message).toContain((await modelFingerprint(other)).id);
    // A different shape under a forged fingerprint is still caught, by the cache's shape.
    const big = createTinyLlama({ seed: 11, layers: 3, hidden: 64, heads: 4, kvHeads: 2, headDim: 32, intermediate: 128, vocab: 256 });
    const forged = withHeader(state, (h) => (h.model = { ...(h.model as object), id: "x" }));
    const bigLm = await withNexusQuant(big, { ort, ...BASE, preset: "balanced", scorer: "reconstruct" });
    const id = (await modelFingerprint(big)).id;
    const e2 = await code(bigLm.restoreState(withHeader(forged, (h) => (h.model = { id, covers: "forged" }))));
    expect(e2.code).toBe("MODEL_MISMATCH");
    expect(e2.message).toContain("3 × 2 × 32");
    bigLm.dispose();
    lm.dispose();
  });

  it("restoreState on a handle with other options → INVALID_ARGUMENT naming them; saveState with no conversation → UNSUPPORTED", async () => {
    const { m, lm, state } = await saved();
    const quant = await withNexusQuant(m, { ort, ...BASE, preset: "quant" });
    const e = await code(quant.restoreState(state));
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.message).toMatch(/spec .* vs /);
    const chunk = await withNexusQuant(m, { ort, ...BASE, prefillChunk: 32, preset: "balanced", scorer: "reconstruct" });
    expect((await code(chunk.restoreState(state))).message).toContain("prefillChunk 64 vs 32");
    const s = await code(quant.saveState());
    expect(s.code).toBe("UNSUPPORTED");
    expect(s.message).toContain("run generate() or step() first");
    quant.dispose();
    chunk.dispose();
    lm.dispose();
  });

  it("saveState and restoreState wait for nothing: a call during generate() is BUSY", async () => {
    const { lm, state } = await saved();
    const running = lm.generate([1, 2], { maxNewTokens: 5, continue: true });
    expect((await code(lm.saveState())).code).toBe("BUSY");
    expect((await code(lm.restoreState(state))).code).toBe("BUSY");
    await running;
    lm.dispose();
  });
});

describe("saveState / resume (onnxruntime-node session wrapper)", () => {
  it("a compressing preset resumes with the uninterrupted tokens; a native state is refused there, and preset none cannot be saved", async () => {
    const session = await tinySession(tinyModel(7));
    const options = { preset: "balanced", compressEvery: 16 };
    const straight = await withNexusQuant(session, options);
    const first = await straight.generate(promptTokens(120, 2), { maxNewTokens: 20, ...SAMPLING });
    const state = await straight.saveState();
    const second = await straight.generate([9, 8, 7], { maxNewTokens: 25, continue: true, ...SAMPLING });
    const resumed = await withNexusQuant(session, { state });
    expect(resumed.stats().tokens).toBe(120 + 19);
    const again = await resumed.generate([9, 8, 7], { maxNewTokens: 25, continue: true, ...SAMPLING });
    expect(again.tokens).toEqual(second.tokens);
    expect(first.tokens[0]!.length).toBe(20);
    expect(decodeConversationState(state)).toMatchObject({ kind: "ort", model: { covers: expect.stringContaining("ONNX graph") } });

    const native = await withNexusQuant(model(), { ort, ...BASE, preset: "balanced" });
    await native.generate([1, 2, 3], { maxNewTokens: 2 });
    const e = await code(withNexusQuant(session, { state: await native.saveState() }));
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.message).toContain("native path");
    const none = await withNexusQuant(session, { preset: "none" });
    await none.generate([1, 2, 3], { maxNewTokens: 2 });
    expect((await code(none.saveState())).code).toBe("UNSUPPORTED");
    for (const h of [straight, resumed, native, none]) h.dispose();
  });
});
