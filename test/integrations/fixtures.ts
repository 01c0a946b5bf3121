/**
 * Model and prompt fixtures without onnxruntime-node, so that transformers.js tests load only the
 * copy transformers.js resolves (two copies of different versions cannot load in one process:
 * src/integrations/onnxruntime.ts).
 */
import { createTinyLlama, type LlamaModel } from "../../src/model/index.js";
import { toFloat32 } from "../../src/model/tensor.js";

/** headDim 32 (a multiple of the lattice's 8), GQA 4:2, vocab 256 = bytes. */
export function tinyModel(seed = 7): LlamaModel {
  return createTinyLlama({ seed, layers: 2, hidden: 64, heads: 4, kvHeads: 2, headDim: 32, intermediate: 128, vocab: 256 });
}

/** Deterministic pseudo-text: bytes of a repeating sentence with a position-dependent twist. */
export function promptTokens(length: number, salt = 0): number[] {
  const text = "The quick brown fox jumps over the lazy dog while the cache keeps only what matters. ";
  return Array.from({ length }, (_, i) => (text.charCodeAt((i + salt) % text.length) + Math.floor(i / text.length) * salt) % 256);
}


/**
 * A copy of `model` with NaN in one tensor: "norm" = model.norm.weight, "down" = the last layer's
 * mlp.down_proj.weight. Both act after the last attention, so K/V stay finite and only the logits
 * are NaN (the cache's own NaN checks never see them).
 */
export function withNaN(model: LlamaModel, where: "norm" | "down"): LlamaModel {
  const name = where === "norm" ? "model.norm.weight" : `model.layers.${model.config.numLayers - 1}.mlp.down_proj.weight`;
  const weights = new Map(model.weights);
  const data = toFloat32(weights.get(name)!).slice();
  data[3] = Number.NaN;
  weights.set(name, { dtype: "F32", shape: weights.get(name)!.shape, data });
  return { config: model.config, weights };
}
