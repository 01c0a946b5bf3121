/**
 * NaN/Inf logits never turn into tokens: a checkpoint with NaN in a weight after the last attention
 * (model.norm.weight, the last layer's mlp.down_proj.weight) keeps K/V finite, so only the logits show
 * it. Each wrapper refuses them with MODEL_OUTPUT naming the step (transformers.js: transformers-js.test.ts).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NexusQuantError } from "../../src/errors.js";
import { withNexusQuant } from "../../src/integrations/index.js";
import { checkFiniteLogits } from "../../src/integrations/finite-logits.js";
import { buildLlamaOnnx, loadModel, writeModelDir } from "../../src/model/index.js";
import { ort, promptTokens, tinyModel } from "./helpers.js";
import { withNaN } from "./fixtures.js";
import { rejectionOf } from "../helpers.js";

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "nq-broken-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe.each(["norm", "down"] as const)("NaN in %s: no token comes out of NaN logits", (where) => {
  it("native path (a checkpoint on disk): generate() and step() refuse with MODEL_OUTPUT at step 1", async () => {
    const dir = join(root, `native-${where}`);
    await writeModelDir(dir, withNaN(tinyModel(), where));
    const model = await loadModel(dir);
    for (const preset of ["none", "quant", "balanced"]) {
      await using lm = await withNexusQuant(model, { preset, ort });
      const e = await rejectionOf(lm.generate(promptTokens(20), { maxNewTokens: 8 }));
      expect([preset, e.code]).toEqual([preset, "MODEL_OUTPUT"]);
      expect(e.message).toContain("step 1 of the conversation (row 0, position 19)");
      expect(e.message).toContain("native path");
      expect(e.details).toMatchObject({ step: 1, row: 0, position: 19, wrapper: "native path" });
      // step() too: it continues the conversation (20 tokens held), and each step is named by its number.
      const s = await rejectionOf(lm.step([1, 2, 3]));
      expect(s.code).toBe("MODEL_OUTPUT");
      expect(s.details).toMatchObject({ step: 2, position: 22 });
      await expect(lm.step([4])).rejects.toMatchObject({ code: "MODEL_OUTPUT", details: { step: 3, position: 23 } });
    }
  });

  it("onnxruntime-node session wrapper: generate() refuses with MODEL_OUTPUT", async () => {
    const session = await ort.InferenceSession.create(buildLlamaOnnx(withNaN(tinyModel(), where)));
    for (const preset of ["none", "balanced"]) {
      await using lm = await withNexusQuant(session, { preset });
      const tokens: number[] = [];
      const e = await rejectionOf(lm.generate([promptTokens(12), promptTokens(7, 3)], { maxNewTokens: 4, onToken: (t) => tokens.push(t) }));
      expect(e.code).toBe("MODEL_OUTPUT");
      // The session returns logits of every position: the first bad one is the prompt's first token.
      expect(e.message).toContain("onnxruntime-node session, step 1 of the conversation (row 0, position 0)");
      expect(e.details).toMatchObject({ step: 1, row: 0, column: 0, nonFinite: 19 * 256 });
      expect(tokens).toEqual([]);
    }
  });
});

it("a healthy model's logits pass the check (the same wrappers generate)", async () => {
  const session = await ort.InferenceSession.create(buildLlamaOnnx(tinyModel()));
  await using lm = await withNexusQuant(session, { preset: "balanced" });
  expect((await lm.generate(promptTokens(12), { maxNewTokens: 4 })).tokens[0]).toHaveLength(4);
});

describe("checkFiniteLogits", () => {
  const vocab = 4;
  it("ignores padding columns and finished rows, reads FP16 bits, counts what is bad", () => {
    // [2, 3, 4]: row 1 has one real column (its last); its padding holds NaN.
    const logits = new Float32Array(2 * 3 * vocab).fill(0.5);
    logits.fill(Number.NaN, 3 * vocab, 5 * vocab);
    expect(() => checkFiniteLogits(logits, [2, 3, vocab], { wrapper: "t", step: 1, realColumns: (r) => (r === 0 ? 3 : 1) })).not.toThrow();
    logits[5 * vocab + 2] = Number.POSITIVE_INFINITY;
    const e = (() => {
      try {
        checkFiniteLogits(logits, [2, 3, vocab], { wrapper: "t", step: 4, realColumns: (r) => (r === 0 ? 3 : 1), position: (_r, c) => 10 + c });
      } catch (error) {
        return error as NexusQuantError;
      }
    })();
    expect(e).toMatchObject({ code: "MODEL_OUTPUT", details: { step: 4, row: 1, column: 2, position: 12, nonFinite: 1 } });
    // FP16 bits: 0x7e00 is NaN, 0xfc00 -Inf, 0x7bff the largest finite value.
    expect(() => checkFiniteLogits(Uint16Array.from([0x7bff, 0x3c00]), [1, 1, 2], { wrapper: "t" })).not.toThrow();
    expect(() => checkFiniteLogits(Uint16Array.from([0x3c00, 0xfc00]), [1, 1, 2], { wrapper: "t" })).toThrow(/1 NaN\/Inf \(t, a forward\(\) step/);
  });
});
