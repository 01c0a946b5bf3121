// Measured compression ratio of short prompts: append T tokens, compress(), read stats() (the bytes the
// accounting allocator holds). Shows where a store leaves FP16 for pages (format pagingPays) and that
// the ratio never drops below 1. Run: nice -n 19 npx tsx bench/short-context-ratio.ts
import { CompressedKVCache, syntheticKV } from "../src/runtime/index.js";

const PRESETS = ["quant", "high", "asym", "balanced", "max", "S", "M", "XL"];
const TOKENS = Array.from({ length: 24 }, (_, i) => i + 1).concat([32, 64]);
const kvHeads = 8;

console.log(`kvHeads ${kvHeads}, 1 layer, CPU, ${new Date().toISOString().slice(0, 10)}; ratio = stats().ratio after append + compress()`);
console.log("| preset | head_dim | 1 token | last FP16 | first paged (ratio) | 16 | 24 | 64 | min over 1..24, 32, 64 |");
console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
for (const preset of PRESETS) {
  for (const headDim of [64, 128]) {
    const ratio = new Map<number, number>();
    let lastFp16 = 0, firstPaged = 0;
    for (const T of TOKENS) {
      const c = new CompressedKVCache({ layers: 1, kvHeads, headDim, preset });
      const kv = syntheticKV({ kvHeads, headDim, tokens: T, seed: T });
      c.append(0, kv.keys, kv.values);
      c.compressSync();
      ratio.set(T, c.stats().ratio);
      if (c.tokens(0).compressed === 0) lastFp16 = T;
      else if (firstPaged === 0) firstPaged = T;
      c.dispose();
    }
    const f = (t: number) => `${ratio.get(t)!.toFixed(2)}×`;
    const min = Math.min(...ratio.values());
    console.log(`| ${preset} | ${headDim} | ${f(1)} | ${lastFp16 || "-"} | ${firstPaged} (${f(firstPaged)}) | ${f(16)} | ${f(24)} | ${f(64)} | ${min.toFixed(2)}× |`);
  }
}
