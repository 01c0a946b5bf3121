/** A tiny byte-level model and a held-out text, shared by the quality tests. */
import { heldOutSpeeches } from "../../bench/data/index.js";
import { createTinyLlama } from "../../src/model/index.js";
import { byteTokenizer, type QualityModel } from "../../bench/quality/index.js";

/** head_dim 64 (a multiple of the lattice's 8), GQA 2:1, untied head: small enough for fast decode steps. */
export function tinyQualityModel(): QualityModel {
  const model = createTinyLlama({ seed: 3, layers: 2, hidden: 64, heads: 4, kvHeads: 2, headDim: 64, intermediate: 128, vocab: 256, tie: false });
  return { label: "test model", dir: null, trained: false, model, tokenizer: byteTokenizer(256) };
}

/** The first held-out speeches as the harness names them. */
export function heldOutCorpus(count = 3): { title: string; text: string }[] {
  return heldOutSpeeches()
    .slice(0, count)
    .map((s) => ({ title: `${s.year} ${s.president}`, text: s.text }));
}
