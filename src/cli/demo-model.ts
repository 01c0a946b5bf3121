/**
 * The model the demo and the integration benchmark run: a directory the user names, or a tiny
 * random-weight Llama built on the spot (until the trained reference model exists).
 */
import { access, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { NexusQuantError } from "../errors.js";
import { buildLlamaOnnx, createTinyLlama, loadModel, loadModelDir, loadTokenizer, type LlamaModel, type TextTokenizer, type TinyLlamaOptions } from "../model/index.js";

export interface DemoModel {
  /** What the output calls the model. */
  label: string;
  /** "random weights (no trained reference model yet)" for the built model; "checkpoint" otherwise. */
  weights: string;
  onnx: Uint8Array;
  vocab: number;
}

export const RANDOM_WEIGHTS = "random weights (no trained reference model yet)";

/** The demo's built model: head_dim 64 and GQA like real models, small enough for 2 CPU cores. */
export const DEMO_TINY: TinyLlamaOptions = { seed: 1, layers: 4, hidden: 256, heads: 4, kvHeads: 2, headDim: 64, intermediate: 512, vocab: 256 };

export function builtModel(options: TinyLlamaOptions = DEMO_TINY): DemoModel {
  const model = createTinyLlama(options);
  const c = model.config;
  return {
    label: `built tiny Llama (layers ${c.numLayers}, hidden ${c.hiddenSize}, heads ${c.numHeads}/${c.numKvHeads} kv, head_dim ${c.headDim}, vocab ${c.vocabSize})`,
    weights: RANDOM_WEIGHTS,
    onnx: buildLlamaOnnx({ ...model, dtype: "f32" }),
    vocab: c.vocabSize,
  };
}

const exists = (path: string) => access(path).then(() => true, () => false);

/** The trained reference model (bench/model/, trained into models/sotu-llama/), when it is there. */
export const REFERENCE_MODEL_DIR = fileURLToPath(new URL("../../models/sotu-llama/", import.meta.url));

/** A checkpoint for the native path: weights in memory, its tokenizer when the directory has one. */
export interface NativeDemoModel {
  label: string;
  weights: string;
  model: LlamaModel;
  tokenizer: TextTokenizer | undefined;
}

/** True when DIR holds an exported ONNX graph (run through the ORT-session wrapper), not only safetensors. */
export async function hasOnnxGraph(dir: string): Promise<boolean> {
  return (await exists(join(dir, "onnx", "model.onnx"))) || (await exists(join(dir, "model.onnx")));
}

/** Whether the trained reference model is complete enough to load (config.json + weights). */
export async function referenceModelAvailable(dir = REFERENCE_MODEL_DIR): Promise<boolean> {
  return (await exists(join(dir, "config.json"))) && ((await exists(join(dir, "model.safetensors"))) || (await exists(join(dir, "model.safetensors.index.json"))));
}

export async function nativeModelFromDir(dir: string, label = dir): Promise<NativeDemoModel> {
  const model = await loadModel(dir);
  return { label, weights: "checkpoint", model, tokenizer: await loadTokenizer(dir) };
}

export function builtNativeModel(options: TinyLlamaOptions = DEMO_TINY): NativeDemoModel {
  const model = createTinyLlama(options);
  const c = model.config;
  return {
    label: `built tiny Llama (layers ${c.numLayers}, hidden ${c.hiddenSize}, heads ${c.numHeads}/${c.numKvHeads} kv, head_dim ${c.headDim}, vocab ${c.vocabSize})`,
    weights: RANDOM_WEIGHTS,
    model,
    tokenizer: undefined,
  };
}

/** DIR/onnx/model.onnx or DIR/model.onnx as is; otherwise config.json + safetensors through the builder. */
export async function modelFromDir(dir: string): Promise<DemoModel> {
  const config = JSON.parse(await readFile(join(dir, "config.json"), "utf8").catch(() => "null")) as { vocab_size?: number } | null;
  for (const candidate of [join(dir, "onnx", "model.onnx"), join(dir, "model.onnx")]) {
    if (await exists(candidate)) {
      if (typeof config?.vocab_size !== "number") throw new NexusQuantError("CONFIG_ERROR", `${join(dir, "config.json")} with vocab_size is needed next to ${candidate}.`);
      return { label: candidate, weights: "checkpoint", onnx: new Uint8Array(await readFile(candidate)), vocab: config.vocab_size };
    }
  }
  const model = await loadModelDir(dir);
  return { label: dir, weights: "checkpoint", onnx: buildLlamaOnnx({ ...model, dtype: "f32" }), vocab: model.config.vocabSize };
}

export const BUILT_IN_TEXT =
  "A key-value cache remembers every token a language model has read, two vectors per token per layer. " +
  "Long conversations make it the largest thing in memory. Eviction keeps the first tokens, a recent " +
  "window and the tokens attention relies on; lattice codes store what is kept in two or three bits. ";

/**
 * Byte-level tokens (UTF-8) of the text, repeated up to `length` tokens. No tokenizer is loaded, so
 * the model needs vocab >= 256 (the built model's vocabulary is exactly the 256 bytes).
 */
export function byteTokens(text: string, length: number, vocab: number): number[] {
  if (vocab < 256) throw new NexusQuantError("UNSUPPORTED", `The demo feeds UTF-8 bytes as tokens and needs vocab_size >= 256; this model has ${vocab}.`);
  const bytes = new TextEncoder().encode(text.length > 0 ? text : BUILT_IN_TEXT);
  return Array.from({ length }, (_, i) => bytes[i % bytes.length]!);
}
