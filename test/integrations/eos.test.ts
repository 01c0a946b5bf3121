/**
 * generate() stops where users expect: at the checkpoint's end-of-text token(s) by default
 * (generation_config.json, else config.json), on the native path and, when told (`options.eos`), on an
 * ONNX session; `eos: []` turns stopping off. (The transformers.js case is in transformers-js.test.ts:
 * its own generate() stops at its generation_config.)
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withNexusQuant } from "../../src/integrations/index.js";
import { createTinyLlama, llamaConfigToJson, loadModel, readEosTokenIds, writeModelDir, type LlamaModel } from "../../src/model/index.js";
import { ort, promptTokens, tinySession } from "./helpers.js";

const model = (): LlamaModel => createTinyLlama({ seed: 7, layers: 2, hidden: 64, heads: 4, kvHeads: 2, headDim: 32, intermediate: 128, vocab: 256 });
const prompt = promptTokens(40);
const STEPS = 16;

let root: string;
/** Greedy tokens without any stop, and a token of them that first appears at `stopAt` (> 0). */
let free: number[];
let eosToken: number;
let stopAt: number;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "nq-eos-"));
  free = (await withNexusQuant(model(), { preset: "none", ort }, (w) => w.generate(prompt, { maxNewTokens: STEPS }))).tokens[0]!;
  // A token first generated somewhere in the middle: stopping there must shorten the answer.
  stopAt = free.findIndex((t, i) => i >= 2 && free.indexOf(t) === i);
  expect(stopAt).toBeGreaterThan(0);
  eosToken = free[stopAt]!;
});

afterAll(async () => {
  if (root !== undefined) await rm(root, { recursive: true, force: true });
});

async function checkpoint(name: string, config: Record<string, unknown>, generation?: unknown): Promise<string> {
  const dir = join(root, name);
  await writeModelDir(dir, model());
  await writeFile(join(dir, "config.json"), JSON.stringify({ ...llamaConfigToJson(model().config), ...config }));
  if (generation !== undefined) await writeFile(join(dir, "generation_config.json"), typeof generation === "string" ? generation : JSON.stringify(generation));
  return dir;
}

describe("end-of-text ids of a checkpoint", () => {
  it("come from generation_config.json, else config.json (a number or a list; ids outside the vocabulary dropped)", async () => {
    expect(await readEosTokenIds(await checkpoint("none", {}))).toBeUndefined();
    expect(await readEosTokenIds(await checkpoint("config-number", { eos_token_id: 5 }))).toEqual([5]);
    expect(await readEosTokenIds(await checkpoint("config-list", { eos_token_id: [5, 9999, 7] }))).toEqual([5, 7]);
    expect(await readEosTokenIds(await checkpoint("generation", { eos_token_id: 5 }, { eos_token_id: [8, 9] }))).toEqual([8, 9]);
    // A generation_config.json without eos_token_id leaves config.json's.
    expect(await readEosTokenIds(await checkpoint("generation-without", { eos_token_id: 5 }, { do_sample: false }))).toEqual([5]);
    expect((await loadModel(await checkpoint("loaded", { eos_token_id: 3 }, { eos_token_id: 4 }))).config.eosTokenIds).toEqual([4]);
  });

  it("a generation_config.json that is not a JSON object is a CONFIG_ERROR naming it", async () => {
    await expect(loadModel(await checkpoint("bad-json", {}, "{ not json"))).rejects.toMatchObject({ code: "CONFIG_ERROR", message: expect.stringContaining("generation_config.json") });
    await expect(readEosTokenIds(await checkpoint("bad-array", {}, [1, 2]))).rejects.toMatchObject({ code: "CONFIG_ERROR" });
  });
});

describe("generate() on the native path", () => {
  it("stops at the checkpoint's end-of-text token by default; eos: [] and options.eos override it", async () => {
    const loaded = await loadModel(await checkpoint("native", { eos_token_id: 0 }, { eos_token_id: eosToken }));
    await withNexusQuant(loaded, { preset: "none", ort }, async (lm) => {
      expect(lm.eos).toEqual([eosToken]);
      const stopped = (await lm.generate(prompt, { maxNewTokens: STEPS })).tokens[0]!;
      expect(stopped).toEqual(free.slice(0, stopAt + 1)); // the eos token is included, nothing after it
      expect((await lm.generate(prompt, { maxNewTokens: STEPS, eos: [] })).tokens[0]).toEqual(free);
      expect((await lm.generate(prompt, { maxNewTokens: STEPS, eos: free[1]! })).tokens[0]).toEqual(free.slice(0, 2));
    });
    // options.eos replaces the checkpoint's for every call of the handle; [] turns it off.
    await withNexusQuant(loaded, { preset: "none", ort, eos: [] }, async (lm) => {
      expect(lm.eos).toEqual([]);
      expect((await lm.generate(prompt, { maxNewTokens: STEPS })).tokens[0]).toEqual(free);
    });
    // A compressed preset stops the same way (its tokens may differ; it must end at the first eos).
    await withNexusQuant(loaded, { preset: "quant", ort }, async (lm) => {
      const tokens = (await lm.generate(prompt, { maxNewTokens: STEPS })).tokens[0]!;
      const first = tokens.indexOf(eosToken);
      expect(first === -1 ? tokens.length : first + 1).toBe(tokens.length);
    });
  });

  it("a model built in memory without eos ids generates maxNewTokens", async () => {
    await withNexusQuant(model(), { preset: "none", ort }, async (lm) => {
      expect(lm.eos).toEqual([]);
      expect((await lm.generate(prompt, { maxNewTokens: STEPS })).tokens[0]).toHaveLength(STEPS);
    });
  });

  it("refuses eos values that are not token ids, at wrap time and per call", async () => {
    await expect(withNexusQuant(model(), { preset: "none", ort, eos: [-1] })).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringContaining("options.eos[0]") });
    await expect(withNexusQuant(model(), { preset: "none", ort, eos: "2" as never })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await withNexusQuant(model(), { preset: "none", ort }, async (lm) => {
      await expect(lm.generate(prompt, { eos: [1.5] })).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringContaining("eos[0]") });
    });
  });
});

describe("generate() on an ONNX session", () => {
  it("has no config: stops only where options.eos (e.g. readEosTokenIds(dir)) or the call says", async () => {
    const session = await tinySession(model());
    const plain = await withNexusQuant(session, { preset: "none", ort }, (lm) => lm.generate(prompt, { maxNewTokens: STEPS }));
    expect(plain.tokens[0]).toEqual(free); // the session and the native path agree on this model
    const eos = await readEosTokenIds(await checkpoint("session", { eos_token_id: eosToken }));
    await withNexusQuant(session, { preset: "none", ort, eos }, async (lm) => {
      expect(lm.eos).toEqual([eosToken]);
      expect((await lm.generate(prompt, { maxNewTokens: STEPS })).tokens[0]).toEqual(free.slice(0, stopAt + 1));
      expect((await lm.generate(prompt, { maxNewTokens: STEPS, eos: [] })).tokens[0]).toEqual(free);
    });
  });
});
