/**
 * The model the quality harness measures: a model directory (config.json + model.safetensors, with
 * tokenizer.json for the trained reference model), or, until that model is trained, a tiny
 * random-weight Llama built on the spot and labelled as such in every output.
 */
import { access } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createTinyLlama, loadModelDir, type LlamaModel, type TinyLlamaOptions } from "../../src/model/index.js";
import { byteTokenizer, loadTokenizerJson, type QualityTokenizer } from "./tokenizer.js";

export interface QualityModel {
  /** What the report calls the model. */
  label: string;
  /** The directory it came from, or null for the built model. */
  dir: string | null;
  /** False for the built random-weight model: its quality numbers say nothing about compression. */
  trained: boolean;
  model: LlamaModel;
  tokenizer: QualityTokenizer;
}

export const RANDOM_WEIGHTS_NOTE =
  "random weights: no trained reference model yet (models/sotu-llama/). Perplexities are those of noise (hundreds for a " +
  "256-token vocabulary) and recall is ~0 for every cache, so these numbers check the harness, not the compression.";

/**
 * The built stand-in: head_dim 128 and GQA 2:1 like the reference model (so measured ratios carry
 * the same per-vector overheads), two thin layers so a run fits in about a minute on 2 CPU cores.
 * Vocabulary 256 = UTF-8 bytes. An untied head (std 1/sqrt(hidden)) keeps the logits soft: a tied
 * random head makes them so peaked that perplexity runs far above the vocabulary size.
 */
export const QUALITY_TINY: TinyLlamaOptions = { seed: 8, layers: 2, hidden: 128, heads: 4, kvHeads: 2, headDim: 128, intermediate: 256, vocab: 256, tie: false };

/** The trained reference model's directory (bench/model/README.md), relative to the working directory. */
export const REFERENCE_MODEL_DIR = join("models", "sotu-llama");

const exists = (path: string) => access(path).then(() => true, () => false);

/** models/sotu-llama under the working directory or the package root, when it has been committed. */
export async function findReferenceModel(): Promise<string | undefined> {
  const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
  for (const dir of [resolve(REFERENCE_MODEL_DIR), join(packageRoot, REFERENCE_MODEL_DIR)]) {
    if (await exists(join(dir, "config.json"))) return dir;
  }
  return undefined;
}

export function builtQualityModel(options: TinyLlamaOptions = QUALITY_TINY): QualityModel {
  const model = createTinyLlama(options);
  const c = model.config;
  return {
    label: `built tiny Llama, random weights (layers ${c.numLayers}, hidden ${c.hiddenSize}, heads ${c.numHeads}/${c.numKvHeads} kv, head_dim ${c.headDim}, vocab ${c.vocabSize})`,
    dir: null,
    trained: false,
    model,
    tokenizer: byteTokenizer(c.vocabSize),
  };
}

/** A model directory; `trained` is assumed (a directory is a checkpoint someone chose to measure). */
export async function qualityModelFromDir(dir: string): Promise<QualityModel> {
  const model = await loadModelDir(dir);
  const tokenizer = (await loadTokenizerJson(dir)) ?? byteTokenizer(model.config.vocabSize);
  const c = model.config;
  return {
    label: `${dir} (layers ${c.numLayers}, hidden ${c.hiddenSize}, heads ${c.numHeads}/${c.numKvHeads} kv, head_dim ${c.headDim}, vocab ${c.vocabSize})`,
    dir,
    trained: true,
    model,
    tokenizer,
  };
}

/** --model DIR, else the reference model when present, else the built random-weight model. */
export async function resolveQualityModel(dir: string | undefined): Promise<QualityModel> {
  if (dir !== undefined) return qualityModelFromDir(dir);
  const reference = await findReferenceModel();
  return reference === undefined ? builtQualityModel() : qualityModelFromDir(reference);
}
