import { readFile } from "node:fs/promises";
import { NexusQuantError, invalidArgument } from "../../errors.js";
import { PRESETS } from "../../format/index.js";
import { decodeSafetensors, toFloat32 } from "../../model/index.js";
import { CompressedKVCache } from "../../runtime/cache.js";
import { native } from "../../runtime/native.js";
import { seededRandom } from "../../shared/prng.js";
import { gaussian, syntheticKV } from "../../runtime/synthetic.js";
import { parseContext, parseFlags, parsePositiveInt } from "../args.js";
import { formatRatio, renderTable, toJson } from "../table.js";
import type { CliCommand } from "../types.js";

const USAGE = `nexusquant bench cache [--context N] [--head-dim D] [--kv-heads H] [--query-heads Q]
                      [--presets a,b] [--queries N] [--kv FILE.safetensors] [--seed N] [--json]
  Per preset, on one layer of synthetic KV (or a KV dump: a safetensors file with "keys" and
  "values" [kvHeads, tokens, headDim], optionally "queries" [queryHeads, n, headDim]):
  attention-output relative error and top-32 agreement against exact FP32 attention on the
  original KV, the measured compression ratio, compress throughput (score + evict + quantize),
  and decode-attention time on the codes against dense FP32 attention over all original tokens.
  Defaults: context 4k, head_dim 128, 8 KV heads, 32 query heads, every preset, 16 queries.
`;

export interface CacheBenchRow {
  preset: string;
  ratio: number;
  heldTokens: number;
  relError: number;
  top32Agreement: number;
  compressMElemPerSec: number;
  attentionCodesMs: number;
  attentionDenseMs: number;
  speedupVsDense: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function timeMs(fn: () => unknown, reps: number): number {
  fn(); // warm
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const s = performance.now();
    fn();
    t.push(performance.now() - s);
  }
  return median(t);
}

/**
 * Probe queries: per query head, a key of its KV head at a random position plus Gaussian noise of the
 * same RMS, rescaled so that the exact logits over the context have a standard deviation of 2 —
 * a peaked but not one-hot attention, as decode queries typically produce.
 */
function probeQueries(keys: Float32Array, kvHeads: number, qHeads: number, n: number, d: number, count: number, seed: number): Float32Array[] {
  const rand = seededRandom(seed);
  const g = gaussian(rand);
  const group = qHeads / kvHeads;
  const out: Float32Array[] = [];
  for (let c = 0; c < count; c++) {
    const q = new Float32Array(qHeads * d);
    for (let qh = 0; qh < qHeads; qh++) {
      const h = Math.floor(qh / group);
      const j = Math.floor(rand() * n);
      let rms = 0;
      for (let i = 0; i < d; i++) rms += keys[(h * n + j) * d + i]! ** 2;
      rms = Math.sqrt(rms / d);
      for (let i = 0; i < d; i++) q[qh * d + i] = keys[(h * n + j) * d + i]! + rms * g();
      // logits std over the context -> 2
      const logits = new Float64Array(n);
      let mean = 0;
      for (let t = 0; t < n; t++) {
        let dot = 0;
        for (let i = 0; i < d; i++) dot += q[qh * d + i]! * keys[(h * n + t) * d + i]!;
        logits[t] = dot / Math.sqrt(d);
        mean += logits[t]! / n;
      }
      let sd = 0;
      for (let t = 0; t < n; t++) sd += (logits[t]! - mean) ** 2 / n;
      const f = 2 / Math.sqrt(sd);
      for (let i = 0; i < d; i++) q[qh * d + i]! *= f;
    }
    out.push(q);
  }
  return out;
}

/** Attention weights of one query head over tokens (positions in `pos`), in f64. */
function weights(q: Float32Array, qh: number, keys: Float32Array, h: number, n: number, d: number): Float64Array {
  const w = new Float64Array(n);
  let mx = -Infinity;
  for (let t = 0; t < n; t++) {
    let dot = 0;
    for (let i = 0; i < d; i++) dot += q[qh * d + i]! * keys[(h * n + t) * d + i]!;
    w[t] = dot / Math.sqrt(d);
    mx = Math.max(mx, w[t]!);
  }
  let sum = 0;
  for (let t = 0; t < n; t++) sum += w[t] = Math.exp(w[t]! - mx);
  for (let t = 0; t < n; t++) w[t]! /= sum;
  return w;
}

function topK(scoreOf: Map<number, number>, k: number): Set<number> {
  return new Set([...scoreOf.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, k).map((e) => e[0]));
}

async function loadDump(path: string): Promise<{ keys: Float32Array; values: Float32Array; kvHeads: number; tokens: number; headDim: number; queries?: Float32Array }> {
  const { tensors } = decodeSafetensors(new Uint8Array(await readFile(path)));
  const k = tensors.get("keys"), v = tensors.get("values");
  if (!k || !v) throw new NexusQuantError("INVALID_ARGUMENT", `${path} must hold tensors "keys" and "values" [kvHeads, tokens, headDim]; found ${[...tensors.keys()].join(", ")}`);
  if (k.shape.length !== 3 || v.shape.join() !== k.shape.join()) throw invalidArgument("--kv", "keys and values of the same shape [kvHeads, tokens, headDim]", k.shape);
  const q = tensors.get("queries");
  return { keys: toFloat32(k), values: toFloat32(v), kvHeads: k.shape[0]!, tokens: k.shape[1]!, headDim: k.shape[2]!, ...(q ? { queries: toFloat32(q) } : {}) };
}

export const cacheSuite: CliCommand = {
  name: "cache",
  summary: "attention error, top-k agreement, ratio and speed of each preset on one layer",
  usage: USAGE,
  async run(args, io) {
    const { values: v } = parseFlags(args, {
      context: { type: "string" },
      "head-dim": { type: "string" },
      "kv-heads": { type: "string" },
      "query-heads": { type: "string" },
      presets: { type: "string" },
      queries: { type: "string" },
      kv: { type: "string" },
      seed: { type: "string" },
      json: { type: "boolean" },
    });
    const seed = v.seed ? parsePositiveInt("--seed", v.seed) : 1;
    let kv: { keys: Float32Array; values: Float32Array };
    let kvHeads: number, n: number, d: number, source: string;
    let dumpQueries: Float32Array | undefined;
    if (v.kv) {
      const dump = await loadDump(v.kv);
      ({ kvHeads, tokens: n, headDim: d } = dump);
      kv = dump;
      dumpQueries = dump.queries;
      source = v.kv;
    } else {
      n = v.context ? parseContext("--context", v.context) : 4096;
      d = v["head-dim"] ? parsePositiveInt("--head-dim", v["head-dim"]) : 128;
      kvHeads = v["kv-heads"] ? parsePositiveInt("--kv-heads", v["kv-heads"]) : 8;
      kv = syntheticKV({ kvHeads, headDim: d, tokens: n, seed });
      source = "synthetic (src/runtime/synthetic.ts)";
    }
    const qHeads = v["query-heads"] ? parsePositiveInt("--query-heads", v["query-heads"]) : kvHeads * 4;
    if (qHeads % kvHeads !== 0) throw invalidArgument("--query-heads", `a multiple of --kv-heads (${kvHeads})`, qHeads);
    const presets = (v.presets ?? Object.keys(PRESETS).join(",")).split(",").map((s) => s.trim());
    let queries: Float32Array[];
    if (dumpQueries) {
      const per = qHeads * d;
      queries = Array.from({ length: dumpQueries.length / per }, (_, i) => dumpQueries!.subarray(i * per, (i + 1) * per));
    } else {
      queries = probeQueries(kv.keys, kvHeads, qHeads, n, d, v.queries ? parsePositiveInt("--queries", v.queries) : 16, seed + 1);
    }
    const dense = native().denseAttentionF32;
    const scale = 1 / Math.sqrt(d);
    const exact = queries.map((q) => dense(kv.keys, kv.values, kvHeads, n, d, q, qHeads, scale));
    const denseMs = timeMs(() => dense(kv.keys, kv.values, kvHeads, n, d, queries[0]!, qHeads, scale), 10);
    const group = qHeads / kvHeads;
    const rows: CacheBenchRow[] = [];
    for (const preset of presets) {
      const cache = new CompressedKVCache({ layers: 1, kvHeads, headDim: d, queryHeads: qHeads, preset, seed });
      try {
        cache.append(0, kv.keys, kv.values);
        const t0 = performance.now();
        cache.compressSync();
        const compressMs = performance.now() - t0;
        const held = cache.tokens(0).held;
        const m = cache.materialize(0);
        let errNum = 0, errDen = 0, agree = 0, agreeTotal = 0;
        queries.forEach((q, qi) => {
          const got = cache.attention(0, q, { positions: Int32Array.of(n - 1) });
          for (let i = 0; i < got.length; i++) {
            errNum += (got[i]! - exact[qi]![i]!) ** 2;
            errDen += exact[qi]![i]! ** 2;
          }
          for (let qh = 0; qh < qHeads; qh++) {
            const h = Math.floor(qh / group);
            const w = weights(q, qh, kv.keys, h, n, d);
            const wq = weights(q, qh, m.keys, h, held, d);
            const exactTop = topK(new Map(Array.from(w, (x, t) => [t, x])), 32);
            const approx = new Map<number, number>();
            for (let t = 0; t < held; t++) approx.set(m.positions[h * held + t]!, wq[t]!);
            const approxTop = topK(approx, 32);
            for (const t of exactTop) if (approxTop.has(t)) agree++;
            agreeTotal += exactTop.size;
          }
        });
        const codesMs = timeMs(() => cache.attention(0, queries[0]!, { positions: Int32Array.of(n - 1) }), 10);
        rows.push({
          preset,
          ratio: cache.stats().ratio,
          heldTokens: held,
          relError: Math.sqrt(errNum / errDen),
          top32Agreement: agree / agreeTotal,
          compressMElemPerSec: (2 * kvHeads * n * d) / compressMs / 1e3,
          attentionCodesMs: codesMs,
          attentionDenseMs: denseMs,
          speedupVsDense: denseMs / codesMs,
        });
      } finally {
        cache.dispose();
      }
    }
    const result = { suite: "cache", source, context: n, headDim: d, kvHeads, queryHeads: qHeads, queries: queries.length, threads: native().backendInfo().cpu.threads, date: new Date().toISOString(), rows };
    if (v.json) {
      io.stdout(toJson(result));
      return 0;
    }
    io.stdout(`KV: ${source}; context ${n}, head_dim ${d}, ${kvHeads} KV heads, ${qHeads} query heads, ${queries.length} probe queries, ${result.threads} CPU threads\n\n`);
    io.stdout(
      renderTable(
        ["preset", "ratio", "held tokens", "attn rel. error", "top-32 agreement", "compress M elem/s", "attn on codes ms", "dense FP32 ms", "speedup"],
        rows.map((r) => [r.preset, formatRatio(r.ratio), String(r.heldTokens), (100 * r.relError).toFixed(2) + "%", (100 * r.top32Agreement).toFixed(1) + "%", r.compressMElemPerSec.toFixed(1), r.attentionCodesMs.toFixed(2), r.attentionDenseMs.toFixed(2), r.speedupVsDense.toFixed(2) + "x"]),
        ["left", "right", "right", "right", "right", "right", "right", "right", "right"],
      ),
    );
    return 0;
  },
};
