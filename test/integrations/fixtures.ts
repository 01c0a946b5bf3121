/**
 * Model and prompt fixtures without onnxruntime-node: transformers.js bundles its own
 * onnxruntime-node build, and loading both native libraries in one process fails.
 */
import { createTinyLlama, type LlamaModel } from "../../src/model/index.js";

/** headDim 32 (a multiple of the lattice's 8), GQA 4:2, vocab 256 = bytes. */
export function tinyModel(seed = 7): LlamaModel {
  return createTinyLlama({ seed, layers: 2, hidden: 64, heads: 4, kvHeads: 2, headDim: 32, intermediate: 128, vocab: 256 });
}

/** Deterministic pseudo-text: bytes of a repeating sentence with a position-dependent twist. */
export function promptTokens(length: number, salt = 0): number[] {
  const text = "The quick brown fox jumps over the lazy dog while the cache keeps only what matters. ";
  return Array.from({ length }, (_, i) => (text.charCodeAt((i + salt) % text.length) + Math.floor(i / text.length) * salt) % 256);
}

