/**
 * Writes the random-weight Llama models of the transform study (bench/transform/study.py) as model
 * directories: the demo's built model (`nexusquant demo --model built`, DEMO_TINY) and two models with
 * the KV shapes of Llama-3.2-1B (8 KV heads of head_dim 64, 32 query heads) and Llama-3.1-8B (8 KV
 * heads of head_dim 128), built by the same generator (createTinyLlama: std 1/sqrt(fan_in), byte
 * vocabulary) with 2 layers, since only the KV statistics matter here, not depth.
 *
 *   npx tsx bench/transform/random-models.ts OUT_DIR
 */
import { join } from "node:path";
import { DEMO_TINY } from "../../src/cli/demo-model.js";
import { createTinyLlama, writeModelDir, type TinyLlamaOptions } from "../../src/model/index.js";

export const RANDOM_MODELS: Readonly<Record<string, TinyLlamaOptions>> = {
  "built-demo": DEMO_TINY,
  "random-1b-shape": { seed: 1, layers: 2, hidden: 2048, heads: 32, kvHeads: 8, headDim: 64, intermediate: 2048, vocab: 256 },
  "random-8b-shape": { seed: 1, layers: 2, hidden: 4096, heads: 32, kvHeads: 8, headDim: 128, intermediate: 4096, vocab: 256 },
};

const out = process.argv[2];
if (!out) {
  console.error("usage: npx tsx bench/transform/random-models.ts OUT_DIR");
  process.exit(2);
}
for (const [name, options] of Object.entries(RANDOM_MODELS)) {
  await writeModelDir(join(out, name), createTinyLlama(options), { nexusquant: `random weights ${JSON.stringify(options)}` });
  console.log(`wrote ${join(out, name)}`);
}
