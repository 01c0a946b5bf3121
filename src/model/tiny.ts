/**
 * Tiny random-weight Llama models for tests and demos (kilobytes, built in milliseconds), and the
 * model-directory convention shared with real checkpoints: `config.json` + `model.safetensors`
 * (or sharded `model.safetensors.index.json`).
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { NexusQuantError, invalidArgument } from "../errors.js";
import { llamaConfigToJson, llamaWeightShapes, parseLlamaConfig, type LlamaConfig } from "./llama-config.js";
import { readSafetensors, writeSafetensors } from "./safetensors.js";
import { seededRandom } from "../shared/prng.js";
import { convertWeights, elementCount, requireWeight, type WeightDtype, type WeightMap } from "./tensor.js";

export interface LlamaModel {
  config: LlamaConfig;
  weights: WeightMap;
}

export interface TinyLlamaOptions {
  seed?: number;
  layers?: number;
  hidden?: number;
  heads?: number;
  kvHeads?: number;
  headDim?: number;
  vocab?: number;
  intermediate?: number;
  tie?: boolean;
  ropeTheta?: number;
  rmsNormEps?: number;
  /** Storage dtype of the generated weights (values are drawn in FP32 and rounded). Default "F32". */
  dtype?: WeightDtype;
}

/**
 * Deterministic random weights, scaled so activations stay O(1) through the layers (std 1/sqrt(fan_in)
 * for projections, N(0, 0.25²) embeddings, norm gains near 1): attention is neither uniform nor one-hot, so
 * masking and RoPE mistakes change the logits visibly.
 */
export function createTinyLlama(options: TinyLlamaOptions = {}): LlamaModel {
  const {
    seed = 1,
    layers = 2,
    hidden = 64,
    heads = 4,
    kvHeads = 2,
    headDim = 16,
    vocab = 256,
    intermediate = 128,
    tie = true,
    ropeTheta = 10000,
    rmsNormEps = 1e-6,
    dtype = "F32",
  } = options;
  if (!Number.isSafeInteger(seed)) throw invalidArgument("seed", "an integer", seed);
  const config = parseLlamaConfig({
    hidden_size: hidden,
    intermediate_size: intermediate,
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    vocab_size: vocab,
    rms_norm_eps: rmsNormEps,
    rope_theta: ropeTheta,
    max_position_embeddings: 4096,
    tie_word_embeddings: tie,
  });
  const random = gaussian(seed);
  const weights: WeightMap = new Map();
  for (const [name, shape] of llamaWeightShapes(config)) {
    const data = new Float32Array(elementCount(shape));
    if (shape.length === 1) {
      for (let i = 0; i < data.length; i++) data[i] = 1 + 0.1 * random();
    } else {
      // Embeddings at 0.25 keep tied logits around std 2 (sqrt(hidden) * 0.25 * gain): peaked, not one-hot.
      const std = name === "model.embed_tokens.weight" ? 0.25 : 1 / Math.sqrt(shape[1]);
      for (let i = 0; i < data.length; i++) data[i] = std * random();
    }
    weights.set(name, { dtype: "F32", shape, data });
  }
  return { config, weights: dtype === "F32" ? weights : convertWeights(weights, dtype) };
}

/** Standard normal samples from a seeded mulberry32 stream (Box-Muller). */
function gaussian(seed: number): () => number {
  const uniform = seededRandom(seed);
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

export async function writeModelDir(dir: string, model: LlamaModel, metadata: Record<string, string> = {}): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "config.json"), JSON.stringify(llamaConfigToJson(model.config), null, 2) + "\n");
  await writeSafetensors(join(dir, "model.safetensors"), model.weights, { format: "pt", ...metadata });
}

/** Reads config.json and the weights, and checks every tensor the config implies is there with its shape. */
export async function loadModelDir(dir: string): Promise<LlamaModel> {
  const configText = await readOrExplain(join(dir, "config.json"), dir);
  let json: unknown;
  try {
    json = JSON.parse(configText);
  } catch (error) {
    throw new NexusQuantError("CONFIG_ERROR", `${join(dir, "config.json")} is not valid JSON (${(error as Error).message})`);
  }
  const config = parseLlamaConfig(json);
  const weights = await readWeights(dir);
  for (const [name, shape] of llamaWeightShapes(config)) requireWeight(weights, name, shape);
  return { config, weights };
}

async function readWeights(dir: string): Promise<WeightMap> {
  const single = join(dir, "model.safetensors");
  try {
    return (await readSafetensors(single)).tensors;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  // Sharded checkpoints: the index maps each tensor name to its shard file.
  const indexText = await readOrExplain(join(dir, "model.safetensors.index.json"), dir);
  const index = JSON.parse(indexText) as { weight_map?: Record<string, string> };
  if (index.weight_map === undefined) {
    throw new NexusQuantError("CORRUPT_DATA", `${join(dir, "model.safetensors.index.json")} has no "weight_map"`);
  }
  const weights: WeightMap = new Map();
  for (const shard of new Set(Object.values(index.weight_map))) {
    for (const [name, tensor] of (await readSafetensors(join(dir, shard))).tensors) weights.set(name, tensor);
  }
  return weights;
}

async function readOrExplain(path: string, dir: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      throw new NexusQuantError("CONFIG_ERROR", `${path} not found: a model directory needs config.json and model.safetensors`, { dir });
    }
    throw error;
  }
}
