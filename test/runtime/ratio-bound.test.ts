// The README's short-context claim: from its first compress() on, a cache never holds more than the
// FP16 bytes of its tokens (ratio >= 1), right after compress() and between compressions while decode
// tokens wait in the FP16 residual, besides the token scores of a scorer that keeps them (reconstruct:
// 2 bytes per token and KV head, for every slot the cache has room for). One rule (format fitsFp16) decides when a short store pages and
// bounds the residual after paging (residualSlots); before it, a paged 13-token `balanced` store
// grew its residual in powers of two and held 0.60x FP16 after 33 decode tokens.
import { afterEach, describe, expect, it } from "vitest";
import { PRESETS, PRESET_ALIASES, fitsFp16, scoreBytesPerSlot, type CompressionSpec } from "../../src/format/index.js";
import { CompressedKVCache, syntheticKV, type CacheStats } from "../../src/runtime/index.js";

/**
 * The ratio of what the cache holds besides its token scores. A scorer that keeps a score per token
 * (reconstruct: FP16, 2 bytes per token and KV head) adds those on top of the FP16 bound; they are
 * checked on their own (scoresWithinBound).
 */
const ratioBesidesScores = (st: CacheStats) => (st.bytes.total === st.bytes.scores ? 1 : st.baselineBytes / (st.bytes.total - st.bytes.scores));
/**
 * The scores have room for exactly the slots the cache has room for: its compressed tokens plus its
 * residual's slots (so after compress() exactly the held tokens; in between, they follow the
 * residual's own bound).
 */
function scoresWithinBound(c: CompressedKVCache, st: CacheStats): boolean {
  const perSlot = scoreBytesPerSlot(c.spec) * c.kvHeads;
  let compressed = 0;
  for (let l = 0; l < c.layers; l++) for (let s = 0; s < c.batch; s++) compressed += c.tokens(l, s).compressed;
  const residualSlots = st.bytes.residual / (2 * c.kvHeads * c.headDim * 2);
  return st.bytes.scores === (compressed + residualSlots) * perSlot;
}

const live: CompressedKVCache[] = [];
afterEach(() => {
  for (const c of live.splice(0)) c.dispose();
});

// Every preset by its spec: the aliases S, L and XL name the specs of quant, balanced and max, so they
// are checked once under the first name that has the spec.
const bySpec = new Map<string, { names: string[]; spec: CompressionSpec }>();
for (const p of [...Object.values(PRESETS), ...Object.values(PRESET_ALIASES).map((a) => a.preset)]) {
  const key = JSON.stringify(p.spec);
  const entry = bySpec.get(key);
  if (entry) entry.names.push(p.name);
  else bySpec.set(key, { names: [p.name], spec: p.spec });
}

// Every prompt length from 1 to 40 (where a first page starts to pay, 9 to 14 tokens), then odd
// steps to 200; each followed by 200 decode tokens compressed every 64 (the wrappers' schedule).
const PROMPTS = [...Array.from({ length: 40 }, (_, i) => i + 1), ...Array.from({ length: 23 }, (_, i) => 46 + 7 * i)];
const DECODE = 200;
const COMPRESS_EVERY = 64;

describe("a compressed cache never holds more than FP16 (ratio >= 1), prompts and decode 1..200", () => {
  it("covers every preset name", () => {
    const names = [...bySpec.values()].flatMap((e) => e.names).sort();
    expect(names).toEqual([...Object.keys(PRESETS), ...Object.keys(PRESET_ALIASES)].sort());
  });

  for (const { names, spec } of bySpec.values()) {
    for (const headDim of [64, 128]) {
      it(`${names.join(" = ")}, head_dim ${headDim}`, () => {
        // One KV head: the 16-byte page header weighs most there, the tightest case for the bound.
        const all = syntheticKV({ kvHeads: 1, headDim, tokens: 200 + DECODE, seed: headDim });
        const rows = (from: number, to: number) => ({ keys: all.keys.subarray(from * headDim, to * headDim), values: all.values.subarray(from * headDim, to * headDim) });
        let checks = 0;
        let worst = { ratio: Infinity, at: "" };
        for (const prompt of PROMPTS) {
          const c = new CompressedKVCache({ layers: 1, kvHeads: 1, headDim, preset: names[0]! });
          live.push(c);
          const p = rows(0, prompt);
          c.append(0, p.keys, p.values);
          c.compressSync();
          for (let t = 1; t <= DECODE; t++) {
            const one = rows(prompt + t - 1, prompt + t);
            c.append(0, one.keys, one.values);
            if (t % COMPRESS_EVERY === 0) c.compressSync();
            const st = c.stats();
            const ratio = ratioBesidesScores(st);
            if (ratio < worst.ratio) worst = { ratio, at: `prompt ${prompt}, decode ${t}: ${st.bytes.total - st.bytes.scores} B held (+ ${st.bytes.scores} B scores) vs ${st.baselineBytes} B FP16` };
            if (!scoresWithinBound(c, st)) worst = { ratio: 0, at: `prompt ${prompt}, decode ${t}: ${st.bytes.scores} B of scores` };
            checks++;
          }
          // The store's own accounting says the same: its pages and residual fit the FP16 bytes.
          const held = c.tokens(0);
          expect(fitsFp16(1, headDim, spec, Math.ceil(held.compressed / spec.pageTokens), c.stats().bytes.residual / (4 * headDim), held.appended)).toBe(true);
          c.dispose();
          live.pop();
        }
        expect(checks).toBe(PROMPTS.length * DECODE);
        expect(worst.ratio, worst.at).toBeGreaterThanOrEqual(1);
      });
    }
  }

  it("the issue's case: a 13-token balanced prompt, then 33 decode tokens (was 0.60x)", () => {
    for (const kvHeads of [1, 2, 8]) {
      const c = new CompressedKVCache({ layers: 3, kvHeads, headDim: 64, preset: "balanced" });
      live.push(c);
      for (let l = 0; l < 3; l++) {
        const kv = syntheticKV({ kvHeads, headDim: 64, tokens: 13, seed: l });
        c.append(l, kv.keys, kv.values);
      }
      c.compressSync();
      for (let t = 0; t < 33; t++)
        for (let l = 0; l < 3; l++) {
          const kv = syntheticKV({ kvHeads, headDim: 64, tokens: 1, startPosition: 13 + t, seed: 100 + t });
          c.append(l, kv.keys, kv.values);
          expect(ratioBesidesScores(c.stats())).toBeGreaterThanOrEqual(1);
          expect(scoresWithinBound(c, c.stats())).toBe(true);
        }
      expect(c.tokens(0).compressed).toBe(13); // paged: a page pays at 13 tokens
    }
  });

  it("multi-token appends after compress() (later turns, prefill chunks) stay within FP16 too", () => {
    for (const preset of ["quant", "high", "balanced"]) {
      for (const headDim of [64, 128]) {
        const all = syntheticKV({ kvHeads: 2, headDim, tokens: 600, seed: 5 });
        const c = new CompressedKVCache({ layers: 1, kvHeads: 2, headDim, preset });
        live.push(c);
        let at = 0;
        let compressed = false; // before the first compress() the cache is not compressed yet (<= 1.25x FP16)
        // Turns of odd sizes, each compressed, with single decode tokens in between.
        for (const turn of [3, 11, 1, 29, 70, 5, 130, 2, 90]) {
          const slice = (n: number) => {
            const pick = (x: Float32Array) => {
              const out = new Float32Array(2 * n * headDim);
              for (let h = 0; h < 2; h++) out.set(x.subarray((h * 600 + at) * headDim, (h * 600 + at + n) * headDim), h * n * headDim);
              return out;
            };
            const r = { keys: pick(all.keys), values: pick(all.values) };
            at += n;
            return r;
          };
          const chunk = slice(turn);
          c.append(0, chunk.keys, chunk.values);
          if (compressed) expect([preset, headDim, at, ratioBesidesScores(c.stats()) >= 1 && scoresWithinBound(c, c.stats())]).toEqual([preset, headDim, at, true]);
          c.compressSync();
          compressed = true;
          for (let t = 0; t < 7; t++) {
            const one = slice(1);
            c.append(0, one.keys, one.values);
            expect([preset, headDim, at, ratioBesidesScores(c.stats()) >= 1 && scoresWithinBound(c, c.stats())]).toEqual([preset, headDim, at, true]);
          }
        }
      }
    }
  });
});
