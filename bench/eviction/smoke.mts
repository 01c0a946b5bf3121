// Quick check (lab): retrieval through the native path, per preset/scorer, modes (a) and (b).
import * as ort from "onnxruntime-node";
import { withNexusQuant } from "../../src/index.js";
import { loadModel } from "../../src/model/model-dir.js";
import { loadTokenizer } from "../../src/model/tokenizer.js";
import { heldOutSpeeches, makeRetrievalSuite, isCorrectCompletion } from "../data/index.js";

const variants = (process.argv[2] ?? "none,balanced:key-key,balanced:reconstruct").split(",");
const perCell = Number(process.argv[3] ?? 1);
const model = await loadModel("models/sotu-llama");
const tok = (await loadTokenizer("models/sotu-llama"))!;
const filler = heldOutSpeeches().map((s) => s.text);
const samples = makeRetrievalSuite({ seed: 2024, filler, contexts: [1024, 2048], depths: [0.1, 0.3, 0.5, 0.7, 0.9], samplesPerCell: perCell, countTokens: (t) => tok.encode(t).length });
for (const v of variants) {
  const [preset, scorer, depth] = v.split(":");
  const lm = await withNexusQuant(model, { preset, ort, ...(scorer ? { scorer: scorer as "key-key" } : {}), ...(depth ? { rereadLayers: depth === "all" || depth === "half" ? depth : Number(depth) } : {}) });
  for (const mode of ["a", "b"]) {
    let ok = 0, ratio = 0;
    const t0 = performance.now();
    for (const s of samples) {
      const ids = [tok.bosId ?? 0, ...tok.encode(s.prompt)];
      const passage = [tok.bosId ?? 0, ...tok.encode(s.prompt.slice(0, s.prompt.lastIndexOf("\n\n")))];
      let split = 0;
      while (split < passage.length && ids[split] === passage[split]) split++;
      const answer = tok.encode(s.answer);
      let out;
      if (mode === "a") out = await lm.generate(ids, { maxNewTokens: answer.length + 1 });
      else {
        await lm.generate(ids.slice(0, split), { maxNewTokens: 0 });
        out = await lm.generate(ids.slice(split), { maxNewTokens: answer.length + 1, continue: true });
      }
      ok += isCorrectCompletion(s, tok.decode(out.tokens[0]!)) ? 1 : 0;
      ratio += out.stats.ratio;
    }
    const t = lm.timings() as { rereadSeconds?: number; segmentSeconds: number; attentionSeconds: number; compressSeconds: number; totalSeconds: number };
    console.log(`${v.padEnd(24)} mode ${mode}: recall ${ok}/${samples.length}, ratio ${(ratio / samples.length).toFixed(2)}, ${((performance.now() - t0) / 1000).toFixed(1)} s`, JSON.stringify({ reread: t.rereadSeconds?.toFixed(1), seg: t.segmentSeconds.toFixed(1), att: t.attentionSeconds.toFixed(1), comp: t.compressSeconds.toFixed(1) }));
  }
  await lm[Symbol.asyncDispose]();
}
