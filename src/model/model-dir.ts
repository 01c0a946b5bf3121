/**
 * The model-directory convention shared with real Hugging Face checkpoints: `config.json` +
 * `model.safetensors` (or sharded: `model.safetensors.index.json` naming the shard of each tensor).
 * `loadModel(dir)` is the public entry; every failure is a typed error naming the file or tensor.
 */
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { NexusQuantError } from "../errors.js";
import { llamaConfigToJson, llamaWeightShapes, parseLlamaConfig, tokenIdList, type LlamaConfig } from "./llama-config.js";
import { readSafetensors, writeSafetensors } from "./safetensors.js";
import type { WeightMap } from "./tensor.js";

export interface LlamaModel {
  config: LlamaConfig;
  weights: WeightMap;
  /** The directory it was loaded from (absent for models built in memory). */
  dir?: string;
}

export async function writeModelDir(dir: string, model: LlamaModel, metadata: Record<string, string> = {}): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "config.json"), JSON.stringify(llamaConfigToJson(model.config), null, 2) + "\n");
  await writeSafetensors(join(dir, "model.safetensors"), model.weights, { format: "pt", ...metadata });
}

/** Reads config.json and the weights, and checks every tensor the config implies is there with its shape. */
export async function loadModelDir(dir: string): Promise<LlamaModel> {
  const config = await readConfig(dir);
  const weights = await readWeights(dir);
  checkCheckpointTensors(config, weights, dir);
  return { config, weights, dir };
}

/**
 * Loads a Llama-family checkpoint directory (Llama 2/3, Mistral, Qwen2, SmolLM, TinyLlama; F32, F16
 * or BF16 weights; tied or untied embeddings) for `withNexusQuant(model, ...)`. An unsupported
 * architecture is an UNSUPPORTED error naming it; a missing or misshapen tensor is a CONFIG_ERROR naming it.
 */
export async function loadModel(dir: string): Promise<LlamaModel> {
  if (typeof dir !== "string" || dir.length === 0) {
    throw new NexusQuantError("INVALID_ARGUMENT", `Expected a model directory path for dir but received ${JSON.stringify(dir)}`, { arg: "dir" });
  }
  return loadModelDir(dir);
}

/**
 * The end-of-text token id(s) a checkpoint directory names: generation_config.json's `eos_token_id`
 * when present, else config.json's (a number or a list); undefined when neither does. What a loaded
 * checkpoint's generate() stops at by default; for an ONNX session of the same model, pass it as
 * `withNexusQuant(session, { eos })` (a session carries no config).
 */
export async function readEosTokenIds(dir: string): Promise<number[] | undefined> {
  return (await readConfig(dir)).eosTokenIds;
}

/** config.json, parsed, with generation_config.json's end-of-text ids when it has some. */
async function readConfig(dir: string): Promise<LlamaConfig> {
  const configText = await readOrExplain(join(dir, "config.json"), dir);
  let json: unknown;
  try {
    json = JSON.parse(configText);
  } catch (error) {
    throw new NexusQuantError("CONFIG_ERROR", `${join(dir, "config.json")} is not valid JSON (${(error as Error).message})`);
  }
  return withGenerationEos(parseLlamaConfig(json), await readGenerationConfig(dir));
}

/** generation_config.json as an object, or undefined when the directory has none. */
async function readGenerationConfig(dir: string): Promise<Record<string, unknown> | undefined> {
  const path = join(dir, "generation_config.json");
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new NexusQuantError("CONFIG_ERROR", `${path} is not valid JSON (${(error as Error).message})`, { dir });
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw new NexusQuantError("CONFIG_ERROR", `${path}: expected a JSON object at the top level`, { dir });
  return json as Record<string, unknown>;
}

/** generation_config.json's eos_token_id, when it names one, takes the place of config.json's (as in transformers). */
function withGenerationEos(config: LlamaConfig, generation: Record<string, unknown> | undefined): LlamaConfig {
  const eos = generation === undefined ? [] : tokenIdList(generation.eos_token_id, config.vocabSize);
  return eos.length > 0 ? { ...config, eosTokenIds: eos } : config;
}

/** A loaded checkpoint (what loadModel returns), told apart from sessions and transformers.js models. */
export function isLlamaModel(value: unknown): value is LlamaModel {
  const m = value as Partial<LlamaModel> | null;
  return typeof m === "object" && m !== null && m.weights instanceof Map && typeof m.config?.numLayers === "number" && typeof m.config.hiddenSize === "number";
}

function checkCheckpointTensors(config: LlamaConfig, weights: WeightMap, dir: string): void {
  for (const [name, shape] of llamaWeightShapes(config)) {
    const tensor = weights.get(name);
    if (tensor === undefined) {
      throw new NexusQuantError("CONFIG_ERROR", `${dir}: the checkpoint has no tensor "${name}" (shape [${shape.join(", ")}]) that its config.json implies; is it a complete Llama-family checkpoint?`, {
        tensor: name,
        dir,
      });
    }
    if (tensor.shape.length !== shape.length || tensor.shape.some((d, i) => d !== shape[i])) {
      throw new NexusQuantError("CONFIG_ERROR", `${dir}: tensor "${name}" has shape [${tensor.shape.join(", ")}] but config.json implies [${shape.join(", ")}]`, {
        tensor: name,
        dir,
      });
    }
  }
}

async function readWeights(dir: string): Promise<WeightMap> {
  const single = join(dir, "model.safetensors");
  try {
    return (await readSafetensors(single)).tensors;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  // Sharded checkpoints: the index maps each tensor name to its shard file.
  let indexText: string;
  try {
    indexText = await readFile(join(dir, "model.safetensors.index.json"), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    throw await missingWeights(dir);
  }
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

/** Neither model.safetensors nor a sharded index: say so, and name the weight files that are there instead. */
async function missingWeights(dir: string): Promise<NexusQuantError> {
  const present = (await readdir(dir).catch(() => [] as string[])).filter((f) => /\.(bin|pt|pth|gguf|onnx|h5|msgpack|safetensors)$/.test(f));
  const found = present.length > 0 ? ` It has ${present.slice(0, 5).join(", ")}${present.length > 5 ? ", ..." : ""}, which loadModel does not read: convert the weights to safetensors.` : "";
  return new NexusQuantError(
    "CONFIG_ERROR",
    `${dir}: model.safetensors is missing (and there is no model.safetensors.index.json for a sharded checkpoint): a model directory needs config.json and its weights in safetensors.${found}`,
    { dir, present },
  );
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
