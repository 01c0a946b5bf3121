import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NexusQuantError } from "../../src/errors.js";
import { rejectionOf } from "../helpers.js";
import {
  buildLlamaOnnx,
  createTinyLlama,
  encodeSafetensors,
  llamaWeightShapes,
  loadModelDir,
  writeModelDir,
  type WeightMap,
} from "../../src/model/index.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nexusquant-model-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function thrown(fn: () => unknown): NexusQuantError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(NexusQuantError);
    return error as NexusQuantError;
  }
  throw new Error("expected an error");
}

describe("createTinyLlama", () => {
  it("is deterministic per seed and different across seeds", () => {
    const a = createTinyLlama({ seed: 5 });
    const b = createTinyLlama({ seed: 5 });
    const c = createTinyLlama({ seed: 6 });
    const q = (m: typeof a) => m.weights.get("model.layers.1.self_attn.q_proj.weight")!.data;
    expect(q(a)).toEqual(q(b));
    expect(q(a)).not.toEqual(q(c));
  });

  it("holds exactly the tensors the config implies, in kilobytes", () => {
    const untied = createTinyLlama({ tie: false });
    expect([...untied.weights.keys()].sort()).toEqual([...llamaWeightShapes(untied.config).keys()].sort());
    expect(untied.weights.has("lm_head.weight")).toBe(true);
    expect(createTinyLlama({ tie: true }).weights.has("lm_head.weight")).toBe(false);
    const bytes = [...untied.weights.values()].reduce((sum, t) => sum + t.data.byteLength, 0);
    expect(bytes).toBeLessThan(512 * 1024);
  });

  it("stores F16 weights when asked", () => {
    const model = createTinyLlama({ dtype: "F16" });
    expect([...model.weights.values()].every((t) => t.dtype === "F16" && t.data instanceof Uint16Array)).toBe(true);
  });
});

describe("model directories", () => {
  it("writeModelDir then loadModelDir gives the same config and bytes", async () => {
    const model = createTinyLlama({ seed: 9, tie: false, dtype: "BF16" });
    const path = join(dir, "roundtrip");
    await writeModelDir(path, model);
    const config = JSON.parse(await readFile(join(path, "config.json"), "utf8"));
    expect(config).toMatchObject({ model_type: "llama", num_key_value_heads: 2, tie_word_embeddings: false });
    const loaded = await loadModelDir(path);
    expect(loaded.config).toEqual(model.config);
    for (const [name, tensor] of model.weights) expect(loaded.weights.get(name)).toEqual(tensor);
  });

  it("reads sharded checkpoints through model.safetensors.index.json", async () => {
    const model = createTinyLlama({ seed: 10 });
    const path = join(dir, "sharded");
    await writeModelDir(path, model);
    await rm(join(path, "model.safetensors"));
    const names = [...model.weights.keys()];
    const shards: [string, WeightMap][] = [
      ["model-00001-of-00002.safetensors", new Map(names.slice(0, 5).map((n) => [n, model.weights.get(n)!]))],
      ["model-00002-of-00002.safetensors", new Map(names.slice(5).map((n) => [n, model.weights.get(n)!]))],
    ];
    const weightMap: Record<string, string> = {};
    for (const [file, tensors] of shards) {
      await writeFile(join(path, file), encodeSafetensors(tensors));
      for (const name of tensors.keys()) weightMap[name] = file;
    }
    await writeFile(join(path, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const loaded = await loadModelDir(path);
    expect([...loaded.weights.keys()].sort()).toEqual([...names].sort());
  });

  it("says what is missing: no config.json, no weights file, or a tensor the config needs", async () => {
    const empty = join(dir, "empty");
    await writeModelDir(empty, createTinyLlama());
    await rm(join(empty, "config.json"));
    const noConfig = await rejectionOf(loadModelDir(empty));
    expect(noConfig.code).toBe("CONFIG_ERROR");
    expect(noConfig.message).toMatch(/config\.json not found/);

    // No model.safetensors and no index: the error names the weights file, not the index.
    const noWeights = join(dir, "no-weights");
    await writeModelDir(noWeights, createTinyLlama());
    await rm(join(noWeights, "model.safetensors"));
    await writeFile(join(noWeights, "pytorch_model.bin"), "");
    const weightsMissing = await rejectionOf(loadModelDir(noWeights));
    expect(weightsMissing.code).toBe("CONFIG_ERROR");
    expect(weightsMissing.message).toMatch(/model\.safetensors is missing/);
    expect(weightsMissing.message).not.toMatch(/index\.json not found/);
    expect(weightsMissing.message).toContain("pytorch_model.bin");

    const model = createTinyLlama();
    model.weights.delete("model.layers.1.mlp.up_proj.weight");
    const path = join(dir, "missing-tensor");
    await writeModelDir(path, model);
    const missing = await rejectionOf(loadModelDir(path));
    expect(missing.code).toBe("CONFIG_ERROR");
    expect(missing.message).toContain("model.layers.1.mlp.up_proj.weight");
    expect(missing.details).toMatchObject({ tensor: "model.layers.1.mlp.up_proj.weight" });
  });
});

describe("buildLlamaOnnx argument checks", () => {
  it("names a weight with the wrong shape", () => {
    const model = createTinyLlama();
    const k = model.weights.get("model.layers.0.self_attn.k_proj.weight")!;
    model.weights.set("model.layers.0.self_attn.k_proj.weight", { ...k, shape: [k.shape[1], k.shape[0]] } as typeof k);
    const error = thrown(() => buildLlamaOnnx(model));
    expect(error.code).toBe("INVALID_ARGUMENT");
    expect(error.message).toBe(`Expected [32, 64] (from config.json) for weights["model.layers.0.self_attn.k_proj.weight"].shape but received "[64, 32]"`);
  });

  it("refuses an unknown dtype", () => {
    const error = thrown(() => buildLlamaOnnx({ ...createTinyLlama(), dtype: "bf16" as "f16" }));
    expect(error.code).toBe("INVALID_ARGUMENT");
  });

  it("produces a smaller file with FP16 weights", () => {
    const model = createTinyLlama();
    const f32 = buildLlamaOnnx(model).length;
    const f16 = buildLlamaOnnx({ ...model, dtype: "f16" }).length;
    expect(f16).toBeLessThan(f32 * 0.6);
  });
});
