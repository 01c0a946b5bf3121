/**
 * transformers.js: the user's own model.generate() runs wrapped (cache compressed between steps) and
 * unwrapped, and dispose() restores the model.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildLlamaOnnx, writeModelDir } from "../../src/model/index.js";
import { withNexusQuant, type TransformersJsHandle } from "../../src/integrations/index.js";
import { promptTokens, tinyModel, withNaN } from "./fixtures.js";

type Tjs = typeof import("@huggingface/transformers");
type CausalLM = Awaited<ReturnType<Tjs["AutoModelForCausalLM"]["from_pretrained"]>>;

let root: string;
let tjs: Tjs;
let lm: CausalLM;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "nexusquant-int-tjs-"));
  const dir = join(root, "tiny");
  const model = tinyModel(7);
  await writeModelDir(dir, model);
  await mkdir(join(dir, "onnx"), { recursive: true });
  await writeFile(join(dir, "onnx", "model.onnx"), buildLlamaOnnx(model));
  tjs = await import("@huggingface/transformers");
  tjs.env.localModelPath = root;
  tjs.env.allowRemoteModels = false;
  lm = await tjs.AutoModelForCausalLM.from_pretrained("tiny", { dtype: "fp32" });
});

afterAll(async () => {
  await lm?.dispose();
  if (root !== undefined) await rm(root, { recursive: true, force: true });
});

const ids = (rows: number[][]) => {
  const width = Math.max(...rows.map((r) => r.length));
  const data = new BigInt64Array(rows.length * width);
  const mask = new BigInt64Array(rows.length * width);
  rows.forEach((row, b) => {
    const pad = width - row.length;
    row.forEach((t, j) => {
      data[b * width + pad + j] = BigInt(t);
      mask[b * width + pad + j] = 1n;
    });
  });
  return { input_ids: new tjs.Tensor("int64", data, [rows.length, width]), attention_mask: new tjs.Tensor("int64", mask, [rows.length, width]) };
};

async function greedy(inputs: ReturnType<typeof ids>, maxNewTokens: number): Promise<number[][]> {
  const out = (await lm.generate({ ...inputs, max_new_tokens: maxNewTokens, do_sample: false })) as InstanceType<Tjs["Tensor"]>;
  const [batch, width] = out.dims as [number, number];
  const start = inputs.input_ids.dims[1]!;
  return Array.from({ length: batch }, (_, b) => Array.from((out.data as BigInt64Array).subarray(b * width + start, (b + 1) * width), Number));
}

describe("withNexusQuant(transformers.js model)", () => {
  it("generate() works unwrapped, wrapped, and again after dispose()", async () => {
    const inputs = ids([promptTokens(300, 7)]);
    const plain = await greedy(inputs, 16);
    const none = await withNexusQuant(lm, { preset: "none" }, () => greedy(inputs, 16));
    expect(none).toEqual(plain);

    const handle: TransformersJsHandle = await withNexusQuant(lm, { preset: "balanced", compressEvery: 8 });
    // Spy on what reaches onnxruntime: after eviction the past is shorter than the text, the mask
    // covers the held slots only, and position_ids keep counting true positions.
    const session = (lm as unknown as { sessions: { model: { run: (feeds: Record<string, { dims: number[]; data: unknown }>) => Promise<unknown> } } }).sessions.model;
    const run = session.run;
    const seen: { position: number; maskLength: number; pastLength: number }[] = [];
    session.run = function (feeds) {
      seen.push({
        position: Number((feeds["position_ids"]!.data as BigInt64Array).at(-1)),
        maskLength: feeds["attention_mask"]!.dims[1]!,
        pastLength: feeds["past_key_values.0.key"]!.dims[2]!,
      });
      return run.call(this, feeds);
    };
    let compressed: number[][];
    try {
      compressed = await greedy(inputs, 16);
    } finally {
      session.run = run;
    }
    expect(seen.map((s) => s.position)).toEqual([299, ...Array.from({ length: 15 }, (_, i) => 300 + i)]);
    for (const s of seen.slice(1)) {
      expect(s.maskLength).toBe(s.pastLength + 1);
      expect(s.pastLength).toBeLessThan(s.position);
    }
    const stats = handle.stats();
    expect(compressed[0]!.length).toBe(16);
    expect(stats.tokens).toBe(300 + 15);
    expect(stats.tokensEvicted).toBeGreaterThan(0);
    expect(stats.compressedKvBytes).toBeLessThan(stats.baselineKvBytes);
    expect(stats.compressions).toBe(1 + 1); // prefill, then after 8 decode steps
    handle.dispose();

    expect(Object.getOwnPropertyNames(lm)).not.toContain("forward");
    expect(Object.getOwnPropertyNames(lm)).not.toContain("generate");
    expect(await greedy(inputs, 16)).toEqual(plain);
  });

  it("generate() stops at the model's generation_config eos_token_id, wrapped as unwrapped; options.eos is refused", async () => {
    const inputs = ids([promptTokens(300, 7)]);
    const free = (await greedy(inputs, 16))[0]!;
    const stopAt = free.findIndex((t, i) => i >= 1 && free.indexOf(t) === i);
    expect(stopAt).toBeGreaterThan(0);
    // The same weights with an end-of-text token that greedy decoding reaches at stopAt.
    const dir = join(root, "tiny-eos");
    await writeModelDir(dir, tinyModel(7));
    await writeFile(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: free[stopAt] }));
    await mkdir(join(dir, "onnx"), { recursive: true });
    await writeFile(join(dir, "onnx", "model.onnx"), buildLlamaOnnx(tinyModel(7)));
    const withEos = await tjs.AutoModelForCausalLM.from_pretrained("tiny-eos", { dtype: "fp32" });
    try {
      const run = async () => {
        const out = (await withEos.generate({ ...inputs, max_new_tokens: 16, do_sample: false })) as InstanceType<Tjs["Tensor"]>;
        return Array.from(out.data as BigInt64Array, Number).slice(inputs.input_ids.dims[1]!);
      };
      expect(await run()).toEqual(free.slice(0, stopAt + 1));
      expect(await withNexusQuant(withEos, { preset: "none" }, run)).toEqual(free.slice(0, stopAt + 1));
      await expect(withNexusQuant(withEos, { preset: "none", eos: [1] })).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringContaining("options.eos") });
    } finally {
      await withEos.dispose();
    }
  });

  it("quant keeps greedy tokens close to the uncompressed ones", async () => {
    const inputs = ids([promptTokens(300, 7)]);
    const plain = await greedy(inputs, 12);
    const quant = await withNexusQuant(lm, { preset: "quant" }, () => greedy(inputs, 12));
    // Teacher-forced KL is checked on the ORT path; here: the first token (prefill logits, exact
    // positions) must agree, which fails if the compressed past were fed with wrong masks.
    expect(quant[0]![0]).toBe(plain[0]![0]);
  });

  it("batch 2 with different prompt lengths (left padding)", async () => {
    const a = promptTokens(300, 3);
    const b = promptTokens(180, 9);
    const plain = await greedy(ids([a, b]), 8);
    expect(await withNexusQuant(lm, { preset: "none" }, () => greedy(ids([a, b]), 8))).toEqual(plain);
    const together = await withNexusQuant(lm, { preset: "balanced" }, () => greedy(ids([a, b]), 8));
    const alone = [await withNexusQuant(lm, { preset: "balanced" }, () => greedy(ids([a]), 8)), await withNexusQuant(lm, { preset: "balanced" }, () => greedy(ids([b]), 8))];
    expect(together).toEqual([alone[0]![0], alone[1]![0]]);
  });

  it("multi-turn through a returned past_key_values, then release()", async () => {
    const first = promptTokens(300, 4);
    const second = promptTokens(30, 8);
    const conversation = async () => {
      const one = (await lm.generate({ ...ids([first]), max_new_tokens: 10, do_sample: false, return_dict_in_generate: true })) as {
        sequences: InstanceType<Tjs["Tensor"]>;
        past_key_values: { get_seq_length(): number };
      };
      // transformers.js trims input_ids by get_seq_length(): the placeholders must report the true length.
      expect(one.past_key_values.get_seq_length()).toBe(300 + 9);
      const full = [...Array.from(one.sequences.data as BigInt64Array, Number), ...second];
      const two = await greedy({ ...ids([full]), past_key_values: one.past_key_values } as never, 10);
      return { two: two[0]!, cache: one.past_key_values };
    };
    const plain = await conversation();
    const none = await withNexusQuant(lm, { preset: "none" }, () => conversation());
    expect(none.two).toEqual(plain.two);
    await withNexusQuant(lm, { preset: "balanced", compressEvery: 4 }, async (handle) => {
      const { two, cache } = await conversation();
      expect(two.length).toBe(10);
      const stats = handle.stats();
      expect(stats.tokens).toBe(300 + 10 + 30 + 9);
      expect(stats.tokensEvicted).toBeGreaterThan(0);
      expect(handle.release(cache)).toBe(true);
      expect(handle.release(cache)).toBe(false);
      // A released cache is refused with a typed error instead of feeding empty tensors.
      await expect(greedy({ ...ids([[1, 2, 3]]), past_key_values: cache } as never, 2)).rejects.toMatchObject({ code: "DISPOSED" });
    });
  });

  it.each(["norm", "down"] as const)("NaN in %s: generate() refuses NaN logits with MODEL_OUTPUT instead of sampling them", async (where) => {
    const dir = join(root, `nan-${where}`);
    const broken = withNaN(tinyModel(7), where);
    await writeModelDir(dir, broken);
    await mkdir(join(dir, "onnx"), { recursive: true });
    await writeFile(join(dir, "onnx", "model.onnx"), buildLlamaOnnx(broken));
    const bad = await tjs.AutoModelForCausalLM.from_pretrained(`nan-${where}`, { dtype: "fp32" });
    try {
      const inputs = { input_ids: new tjs.Tensor("int64", BigInt64Array.from(promptTokens(20).map(BigInt)), [1, 20]), attention_mask: new tjs.Tensor("int64", new BigInt64Array(20).fill(1n), [1, 20]) };
      for (const preset of ["balanced", "none"]) {
        const error = await withNexusQuant(bad, { preset }, () => bad.generate({ ...inputs, max_new_tokens: 4, do_sample: false })).catch((e: unknown) => e);
        // The prefill returns logits for every position: the first bad one is the prompt's first token.
        expect([preset, error]).toMatchObject([preset, { code: "MODEL_OUTPUT", details: { row: 0, position: 0, nonFinite: 20 * 256, wrapper: "transformers.js model" } }]);
        if (preset !== "none") expect((error as Error).message).toContain("step 1 of the conversation (row 0, position 0)");
      }
    } finally {
      await bad.dispose();
    }
  });

  describe("lifecycle", () => {
    const ownPatches = () => Object.getOwnPropertyNames(lm).filter((n) => n === "forward" || n === "generate");

    it("a second wrap of the same model is refused with BUSY; the first keeps working", async () => {
      const inputs = ids([promptTokens(120, 5)]);
      const plain = await greedy(inputs, 6);
      const first = await withNexusQuant(lm, { preset: "none" });
      try {
        const error = await withNexusQuant(lm, { preset: "balanced" }).catch((e: unknown) => e);
        expect(error).toMatchObject({ code: "BUSY", name: "NexusQuantError" });
        expect((error as Error).message).toContain("already wrapped");
        expect(await greedy(inputs, 6)).toEqual(plain);
        expect(first.stats().tokens).toBe(120 + 5);
      } finally {
        first.dispose();
      }
      expect(ownPatches()).toEqual([]);
    });

    it("disposing handles in any order leaves the model's own forward() and generate()", async () => {
      const inputs = ids([promptTokens(120, 6)]);
      const plain = await greedy(inputs, 6);
      const forward = lm.forward;
      for (const order of ["first-then-second", "second-then-first"]) {
        // Two wraps at once: the second is refused, so whichever order they are disposed in, no
        // handle's forward is left behind.
        const first = await withNexusQuant(lm, { preset: "balanced" });
        const refused = await withNexusQuant(lm, { preset: "quant" }).catch((e: unknown) => e);
        const both = [first, refused].filter((h): h is TransformersJsHandle => typeof (h as TransformersJsHandle).dispose === "function");
        for (const h of order === "first-then-second" ? both : [...both].reverse()) h.dispose();
        expect(ownPatches()).toEqual([]);
        expect(await greedy(inputs, 6)).toEqual(plain);

        // One after the other: a stale handle's dispose() must neither undo the live one's patch nor
        // put its own back.
        first.dispose();
        const second = await withNexusQuant(lm, { preset: "quant" });
        if (order === "first-then-second") first.dispose();
        expect(ownPatches()).toEqual(["forward", "generate"]);
        await greedy(inputs, 2);
        second.dispose();
        if (order === "second-then-first") first.dispose();
        expect(ownPatches()).toEqual([]);
        expect(lm.forward).toBe(forward);
        expect(await greedy(inputs, 6)).toEqual(plain);
      }
    });

    it("a disposed handle's past_key_values given to the restored model is DISPOSED, not an onnxruntime error", async () => {
      const handle = await withNexusQuant(lm, { preset: "balanced" });
      const one = (await lm.generate({ ...ids([promptTokens(200, 2)]), max_new_tokens: 4, do_sample: false, return_dict_in_generate: true })) as {
        past_key_values: { get_seq_length(): number };
      };
      expect(one.past_key_values.get_seq_length()).toBe(203);
      handle.dispose();
      await expect(greedy({ ...ids([[1, 2, 3]]), past_key_values: one.past_key_values } as never, 2)).rejects.toMatchObject({ code: "DISPOSED" });
      // Wrapped again: still refused, by name.
      await withNexusQuant(lm, { preset: "balanced" }, async () => {
        await expect(greedy({ ...ids([[1, 2, 3]]), past_key_values: one.past_key_values } as never, 2)).rejects.toMatchObject({ code: "DISPOSED" });
      });
    });
  });
});
