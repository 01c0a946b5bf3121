/**
 * The builder's I/O convention is the one transformers.js drives: it must load a directory holding
 * our config.json + onnx/model.onnx and generate greedily the same tokens as the TS reference.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LlamaReference, buildLlamaOnnx, createTinyLlama, writeModelDir } from "../../src/model/index.js";

let root: string | undefined;
afterAll(async () => {
  if (root !== undefined) await rm(root, { recursive: true, force: true });
});

function referenceGreedy(reference: LlamaReference, prompt: number[], newTokens: number): number[] {
  const ids = [...prompt];
  const vocab = reference.config.vocabSize;
  for (let step = 0; step < newTokens; step++) {
    const out = reference.forward({
      inputIds: BigInt64Array.from(ids.map(BigInt)),
      positionIds: BigInt64Array.from(ids.map((_, i) => BigInt(i))),
      attentionMask: BigInt64Array.from(ids.map(() => 1n)),
      batch: 1,
      seq: ids.length,
      pastLength: 0,
    });
    const last = out.logits.subarray((ids.length - 1) * vocab);
    let best = 0;
    for (let v = 1; v < vocab; v++) if (last[v] > last[best]) best = v;
    ids.push(best);
  }
  return ids;
}

describe("transformers.js", () => {
  it("loads the built model and its greedy generate() matches the reference", async () => {
    const model = createTinyLlama({ seed: 21, tie: false });
    root = await mkdtemp(join(tmpdir(), "nexusquant-tjs-"));
    const dir = join(root, "tiny-llama");
    await writeModelDir(dir, model);
    await mkdir(join(dir, "onnx"), { recursive: true });
    await writeFile(join(dir, "onnx", "model.onnx"), buildLlamaOnnx(model));

    const tjs = await import("@huggingface/transformers");
    tjs.env.localModelPath = root;
    tjs.env.allowRemoteModels = false;
    const lm = await tjs.AutoModelForCausalLM.from_pretrained("tiny-llama", { dtype: "fp32" });
    const prompt = [3, 14, 15, 92, 65];
    const inputs = new tjs.Tensor("int64", BigInt64Array.from(prompt.map(BigInt)), [1, prompt.length]);
    // Greedy decoding through transformers.js' own KV-cache loop (past fed back step by step).
    const output = (await lm.generate({ inputs, max_new_tokens: 8, do_sample: false })) as InstanceType<typeof tjs.Tensor>;
    const generated = Array.from(output.data as BigInt64Array, Number);
    expect(generated).toEqual(referenceGreedy(new LlamaReference(model.config, model.weights), prompt, 8));
    await lm.dispose();
  });
});
