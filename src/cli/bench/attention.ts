import { writeFile } from "node:fs/promises";
import { CompressedKVCache } from "../../runtime/cache.js";
import { floatsToHalfBits } from "../../runtime/half.js";
import { native } from "../../runtime/native.js";
import { gaussian } from "../../runtime/synthetic.js";
import { seededRandom } from "../../shared/prng.js";
import { PRESETS, type CompressionSpec } from "../../format/index.js";
import { TransformCalibrator } from "../../transform/calibrator.js";
import { buildTransformProfile, type TransformProfile } from "../../transform/profile.js";
import { parseContext, parseFlags, parseOutputPath, parsePositiveInt } from "../args.js";
import { contextPlotSpec, renderSvg } from "../plot.js";
import { renderTable, toJson } from "../table.js";
import type { CliCommand } from "../types.js";

const USAGE = `nexusquant bench attention [--contexts 1k,4k,16k,64k] [--prefill-contexts 1k,4k] [--head-dims 64,128]
                           [--prefill 256] [--repeats 5] [--plot FILE.svg] [--json]
  Time per call of softmax attention, batch 1, 8 KV heads, GQA 4:1 (32 query heads), side by side in
  one run: decode (1 query per head) at every context, and a causal prefill chunk (--prefill queries
  at the end of the context) at --prefill-contexts. Cases: dense FP32 and dense FP16 rows through the
  same fused kernels and SIMD level as the codes (the fair baselines); onnxruntime-node's CPU
  MatMul/Softmax/MatMul graph on FP32 (what a user would run instead); attention on the codes of
  K2V2, K3V2, K4V4 (no eviction), K2V2 and K2V1 under a calibrated transform (docs/transform.md), K3V2
  with 35% evicted and the eviction presets balanced and max; in decode also
  onnxruntime's com.microsoft.GroupQueryAttention on an FP32 and an int8 (k_quant_type PER_TENSOR,
  kv_cache_bit_width 8) past cache. Reports the
  median time, the bytes of KV the call reads, effective GB/s and the speed ratio to dense FP16.
  --plot writes decode time per call against context for the largest head_dim (SVG).
`;

const KV_HEADS = 8;
const GROUP = 4;

export interface AttentionBenchRow {
  context: number;
  headDim: number;
  mode: "decode" | "prefill";
  queries: number;
  case: string;
  medianMs: number | null;
  bytesRead: number;
  gbPerSec: number | null;
  vsDenseF16: number | null;
  note?: string;
}

const CODE_CASES: { name: string; preset?: string; spec?: Partial<CompressionSpec>; calibrated?: true }[] = [
  { name: "codes K2V2", spec: { keyBits: 2, valueBits: 2, evictFraction: 0 } },
  // A calibrated transform on every head (docs/transform.md): the query and the output go through
  // each head's d×d basis once per call, the codes are read band by band at their rates.
  { name: "codes K2V2, calibrated transform", spec: { keyBits: 2, valueBits: 2, evictFraction: 0 }, calibrated: true },
  { name: "codes K2V1, calibrated transform", spec: { keyBits: 2, valueBits: 1, evictFraction: 0 }, calibrated: true },
  { name: "codes K3V2", spec: { keyBits: 3, valueBits: 2, evictFraction: 0 } },
  { name: "codes K4V4", spec: { keyBits: 4, valueBits: 4, evictFraction: 0 } },
  { name: "codes K3V2, 35% evicted", spec: { keyBits: 3, valueBits: 2, evictFraction: 0.35 } },
  // The presets' specs from their definitions (they were re-chosen once already; a typed-in label went stale).
  { name: `preset balanced (${PRESETS.balanced!.description})`, preset: "balanced" },
  { name: `preset max (${PRESETS.max!.description})`, preset: "max" },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

// Rounds over the cases (one call of each per round, shuffled), so load that comes and goes on a shared
// machine hits every case alike; the median of each case's rounds is reported.
async function timeRoundRobin(fns: (() => unknown | Promise<unknown>)[], repeats: number): Promise<number[]> {
  for (const fn of fns) await fn(); // warm-up: tables, pages, thread pool
  const t = fns.map(() => [] as number[]);
  const rand = seededRandom(repeats);
  for (let i = 0; i < repeats; i++) {
    // A fresh order each round: a periodic stall (another process, a throttled time slice) must not
    // keep landing on the same case.
    const order = fns.map((_, c) => c);
    for (let k = order.length - 1; k > 0; k--) {
      const j = Math.floor(rand() * (k + 1));
      [order[k], order[j]] = [order[j]!, order[k]!];
    }
    for (const c of order) {
      const a = performance.now();
      await fns[c]!();
      t[c]!.push(performance.now() - a);
    }
  }
  return t.map(median);
}

function randomRows(count: number, seed: number): Float32Array {
  const g = gaussian(seededRandom(seed));
  const x = new Float32Array(count);
  for (let i = 0; i < x.length; i++) x[i] = g();
  return x;
}

/**
 * A profile whose every head is calibrated, for timing (speed does not depend on the data): fitted on
 * Gaussian rows with a geometric spectrum (standard deviation 0.93^i along dimension i), where the
 * fitted code pays at every budget, so the guard keeps no head flat.
 */
const benchProfiles = new Map<number, TransformProfile>();
function benchProfile(kvHeads: number, d: number): TransformProfile {
  const found = benchProfiles.get(d);
  if (found !== undefined) return found;
  const cal = new TransformCalibrator({ layers: 1, kvHeads, headDim: d });
  const rows = randomRows(8 * d * d, 7 + d);
  for (let i = 0; i < rows.length; i++) rows[i]! *= 0.93 ** (i % d);
  for (let h = 0; h < kvHeads; h++) for (const kv of [0, 1] as const) cal.add(0, h, kv, rows);
  const profile = buildTransformProfile(cal.finish(), { fingerprint: "sha256:bench-attention", source: "Gaussian rows, geometric spectrum" });
  benchProfiles.set(d, profile);
  return profile;
}

type Ort = typeof import("onnxruntime-node");

// ORT's worker threads spin after each run by default, stealing the cores from whichever case runs
// next in the round robin; without spinning every case gets the machine alike.
const ORT_SESSION = { graphOptimizationLevel: "all", extra: { session: { intra_op: { allow_spinning: "0" }, inter_op: { allow_spinning: "0" } } } } as const;

async function loadOrt(): Promise<Ort | null> {
  try {
    return await import("onnxruntime-node");
  } catch {
    return null;
  }
}

// Q [H, group*nq, d] x K^T [H, d, n] -> scores (+ causal mask) -> softmax -> x V [H, n, d].
async function ortAttention(ort: Ort, H: number, rows: number, n: number, d: number, scale: number, masked: boolean) {
  const { GraphBuilder, DataType, onnx } = await import("../../model/onnx-graph.js");
  const g = new GraphBuilder();
  const q = g.input("q", DataType.FLOAT, [H, rows, d]);
  const kt = g.input("kt", DataType.FLOAT, [H, d, n]);
  const v = g.input("v", DataType.FLOAT, [H, n, d]);
  let s = g.op("Mul", [g.op("MatMul", [q, kt]), g.float([scale], true)]);
  if (masked) s = g.op("Add", [s, g.input("mask", DataType.FLOAT, [rows, n])]);
  g.output("out", g.op("MatMul", [g.op("Softmax", [s], { axis: -1 }), v]), DataType.FLOAT, [H, rows, d]);
  const model = onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: "", version: 17 }], producerName: "nexusquant-bench", graph: g.graph("attention") });
  return ort.InferenceSession.create(onnx.ModelProto.encode(model).finish(), ORT_SESSION);
}

// com.microsoft.GroupQueryAttention decode: one new token on a past cache of n - 1 tokens (BNSH),
// FP32, or int8 with one scale per tensor (k_quant_type / kv_cache_bit_width). Past and present are
// separate buffers, as a plain session.run() gives them: ORT copies the past into the present.
async function ortGqaDecode(ort: Ort, H: number, qHeads: number, past: number, d: number, int8: boolean) {
  const { GraphBuilder, DataType, onnx } = await import("../../model/onnx-graph.js");
  const g = new GraphBuilder();
  const INT8 = onnx.TensorProto.DataType.INT8 as number, INT32 = onnx.TensorProto.DataType.INT32 as number;
  const cache = (int8 ? INT8 : DataType.FLOAT) as typeof DataType.FLOAT;
  const inputs = [
    g.input("q", DataType.FLOAT, [1, 1, qHeads * d]),
    g.input("k", DataType.FLOAT, [1, 1, H * d]),
    g.input("v", DataType.FLOAT, [1, 1, H * d]),
    g.input("past_k", cache, [1, H, past, d]),
    g.input("past_v", cache, [1, H, past, d]),
    g.input("seqlens_k", INT32 as typeof DataType.FLOAT, [1]),
    g.input("total_len", INT32 as typeof DataType.FLOAT, []),
  ];
  if (int8) inputs.push("", "", "", "", "", g.input("k_scale", DataType.FLOAT, [1]), g.input("v_scale", DataType.FLOAT, [1]));
  const [out] = g.opN("GroupQueryAttention", inputs, 3, { num_heads: qHeads, kv_num_heads: H, scale: { float: 1 / Math.sqrt(d) } });
  const graph = g.graph("gqa");
  const node = graph.node[graph.node.length - 1]!;
  node.domain = "com.microsoft";
  if (int8) {
    const T = onnx.AttributeProto.AttributeType;
    node.attribute ??= [];
    for (const side of ["k", "v"]) node.attribute!.push(onnx.AttributeProto.create({ name: `${side}_quant_type`, type: T.STRING, s: new TextEncoder().encode("PER_TENSOR") }));
    node.attribute!.push(onnx.AttributeProto.create({ name: "kv_cache_bit_width", type: T.INT, i: 8 }));
  }
  graph.output.push(
    onnx.ValueInfoProto.create({ name: out!, type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: [{ dimValue: 1 }, { dimValue: 1 }, { dimValue: qHeads * d }] } } } }),
  );
  const model = onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: "", version: 17 }, { domain: "com.microsoft", version: 1 }], producerName: "nexusquant-bench", graph });
  return ort.InferenceSession.create(onnx.ModelProto.encode(model).finish(), ORT_SESSION);
}

export async function runAttentionBench(opts: {
  contexts: number[];
  prefillContexts: number[];
  headDims: number[];
  prefill: number;
  repeats: number;
  progress?: (line: string) => void;
}): Promise<{ rows: AttentionBenchRow[]; ortNote: string }> {
  const N = native();
  const ort = await loadOrt();
  const rows: AttentionBenchRow[] = [];
  const H = KV_HEADS, qHeads = KV_HEADS * GROUP;
  const ortNote = ort
    ? "onnxruntime-node: MatMul/Softmax/MatMul on FP32, K given pre-transposed. com.microsoft.GroupQueryAttention decode on an FP32 and an int8 (per-tensor scale) past cache, past and present in separate buffers (a plain session.run copies the past every call)."
    : "onnxruntime-node could not be loaded: no ORT baseline";
  for (const d of opts.headDims) {
    for (const n of [...new Set([...opts.contexts, ...opts.prefillContexts])].sort((a, b) => a - b)) {
      const keys = randomRows(H * n * d, 1 + n + d);
      const values = randomRows(H * n * d, 2 + n + d);
      const keysF16 = floatsToHalfBits(keys), valuesF16 = floatsToHalfBits(values);
      const modes: ("decode" | "prefill")[] = [];
      if (opts.contexts.includes(n)) modes.push("decode");
      if (opts.prefillContexts.includes(n) && opts.prefill <= n) modes.push("prefill");
      const caches: { name: string; cache: CompressedKVCache }[] = [];
      for (const c of CODE_CASES) {
        const profile = c.calibrated ? benchProfile(H, d) : undefined;
        const cache = new CompressedKVCache({ layers: 1, kvHeads: H, headDim: d, queryHeads: qHeads, preset: c.preset ?? "quant", spec: c.spec, ...(profile ? { profile } : {}) });
        cache.append(0, keys, values);
        await cache.compress();
        caches.push({ name: c.name, cache });
      }
      let kt: Float32Array | null = null;
      for (const mode of modes) {
        const nq = mode === "decode" ? 1 : opts.prefill;
        const q = randomRows(qHeads * nq * d, 3 + n);
        const scale = 1 / Math.sqrt(d);
        const repeats = mode === "decode" ? opts.repeats : Math.max(3, Math.floor(opts.repeats / 2));
        const cases: { name: string; bytesRead: number; fn: (() => unknown) | null; note?: string; release?: () => Promise<void> }[] = [];
        const add = (name: string, fn: (() => unknown) | null, bytesRead: number, note?: string, release?: () => Promise<void>) => {
          cases.push({ name, fn, bytesRead, note, release });
        };
        const denseBytes = 2 * H * n * d;
        add("dense FP32", () => N.denseAttention(keys, values, H, n, d, q, qHeads, nq, scale), 2 * denseBytes * 2);
        add("dense FP16", () => N.denseAttention(keysF16, valuesF16, H, n, d, q, qHeads, nq, scale), denseBytes * 2);
        const scoreBytes = H * GROUP * nq * n * 4;
        if (!ort) add("onnxruntime FP32 (MatMul/Softmax/MatMul)", null, 0, "onnxruntime-node unavailable");
        else if (scoreBytes > 1 << 30) add("onnxruntime FP32 (MatMul/Softmax/MatMul)", null, 0, `skipped: its score matrix would take ${(scoreBytes / 2 ** 30).toFixed(1)} GiB`);
        else {
          if (!kt) {
            kt = new Float32Array(H * d * n);
            for (let h = 0; h < H; h++) for (let t = 0; t < n; t++) for (let i = 0; i < d; i++) kt[(h * d + i) * n + t] = keys[(h * n + t) * d + i]!;
          }
          const session = await ortAttention(ort, H, GROUP * nq, n, d, scale, nq > 1);
          const feeds: Record<string, InstanceType<Ort["Tensor"]>> = {
            // [qHeads][nq][d] is [H][group * nq][d]: a KV head's query heads are consecutive
            q: new ort.Tensor("float32", q, [H, GROUP * nq, d]),
            kt: new ort.Tensor("float32", kt, [H, d, n]),
            v: new ort.Tensor("float32", values, [H, n, d]),
          };
          if (nq > 1) {
            const mask = new Float32Array(GROUP * nq * n);
            for (let r = 0; r < GROUP * nq; r++) for (let t = n - nq + (r % nq) + 1; t < n; t++) mask[r * n + t] = -Infinity;
            feeds.mask = new ort.Tensor("float32", mask, [GROUP * nq, n]);
          }
          add("onnxruntime FP32 (MatMul/Softmax/MatMul)", () => session.run(feeds), 2 * denseBytes * 2, undefined, () => session.release());
        }
        if (ort && mode === "decode") {
          for (const int8 of [false, true]) {
            const name = int8 ? "onnxruntime GroupQueryAttention int8 KV (per-tensor)" : "onnxruntime GroupQueryAttention FP32 KV";
            try {
              const session = await ortGqaDecode(ort, H, qHeads, n - 1, d, int8);
              const pastK = int8 ? new Int8Array(H * (n - 1) * d).map((_, i) => Math.round(keys[i]! * 32)) : keys.subarray(0, H * (n - 1) * d);
              const pastV = int8 ? new Int8Array(H * (n - 1) * d).map((_, i) => Math.round(values[i]! * 32)) : values.subarray(0, H * (n - 1) * d);
              const feeds: Record<string, InstanceType<Ort["Tensor"]>> = {
                q: new ort.Tensor("float32", q, [1, 1, qHeads * d]),
                k: new ort.Tensor("float32", keys.subarray(0, H * d), [1, 1, H * d]),
                v: new ort.Tensor("float32", values.subarray(0, H * d), [1, 1, H * d]),
                past_k: new ort.Tensor(int8 ? "int8" : "float32", pastK, [1, H, n - 1, d]),
                past_v: new ort.Tensor(int8 ? "int8" : "float32", pastV, [1, H, n - 1, d]),
                seqlens_k: new ort.Tensor("int32", Int32Array.of(n - 1), [1]),
                total_len: new ort.Tensor("int32", Int32Array.of(n), []),
              };
              if (int8) {
                feeds.k_scale = new ort.Tensor("float32", Float32Array.of(1 / 32), [1]);
                feeds.v_scale = new ort.Tensor("float32", Float32Array.of(1 / 32), [1]);
              }
              add(name, () => session.run(feeds), (int8 ? 1 : 4) * denseBytes, undefined, () => session.release());
            } catch (e) {
              add(name, null, 0, `not available: ${String((e as Error).message).split("\n")[0]!.slice(0, 160)}`);
            }
          }
        }
        for (const { name, cache } of caches) {
          const b = cache.stats().bytes;
          const positions = Int32Array.from({ length: nq }, (_, j) => n - nq + j);
          add(name, () => cache.attention(0, q, { positions }), b.codes + b.scales + b.positions + b.residual);
        }
        const live = cases.filter((c) => c.fn !== null);
        const times = await timeRoundRobin(live.map((c) => c.fn!), repeats);
        for (const c of cases) {
          const ms = c.fn ? times[live.indexOf(c)]! : null;
          rows.push({ context: n, headDim: d, mode, queries: nq, case: c.name, medianMs: ms, bytesRead: c.bytesRead, gbPerSec: ms === null ? null : c.bytesRead / (ms * 1e6), vsDenseF16: null, note: c.note });
          opts.progress?.(`${mode} n=${n} d=${d} ${c.name}: ${ms === null ? c.note : ms.toFixed(2) + " ms"}`);
          await c.release?.();
        }
      }
      for (const { cache } of caches) cache.dispose();
    }
  }
  for (const r of rows) {
    const base = rows.find((x) => x.context === r.context && x.headDim === r.headDim && x.mode === r.mode && x.case === "dense FP16");
    if (base?.medianMs && r.medianMs) r.vsDenseF16 = base.medianMs / r.medianMs;
  }
  return { rows, ortNote };
}

/** Decode time per call against context, one line per case, at the largest head_dim measured. */
export function attentionPlot(rows: AttentionBenchRow[], date: string): ReturnType<typeof contextPlotSpec> {
  const headDim = Math.max(...rows.map((r) => r.headDim));
  const decode = rows.filter((r) => r.mode === "decode" && r.headDim === headDim && r.medianMs !== null);
  return contextPlotSpec({
    title: `bench attention: decode, head_dim ${headDim}, ${KV_HEADS} KV heads, GQA ${GROUP}:1, batch 1 (${date.slice(0, 10)})`,
    yTitle: "median ms per call",
    seriesTitle: "case",
    points: decode.map((r) => ({ context: r.context, value: r.medianMs!, series: r.case })),
    series: [...new Set(decode.map((r) => r.case))],
  });
}

function parseList<T>(flag: string, text: string, parse: (flag: string, s: string) => T): T[] {
  return text.split(",").map((s) => parse(flag, s));
}

export const attentionSuite: CliCommand = {
  name: "attention",
  summary: "attention on codes vs dense FP32/FP16 and onnxruntime, decode and prefill, 1K-64K tokens",
  usage: USAGE,
  async run(args, io) {
    const { values: v } = parseFlags(args, {
      contexts: { type: "string" },
      "prefill-contexts": { type: "string" },
      "head-dims": { type: "string" },
      prefill: { type: "string" },
      repeats: { type: "string" },
      plot: { type: "string" },
      json: { type: "boolean" },
    });
    const contexts = parseList("--contexts", v.contexts ?? "1k,4k,16k,64k", parseContext);
    const prefillContexts = parseList("--prefill-contexts", v["prefill-contexts"] ?? "1k,4k", parseContext);
    const headDims = parseList("--head-dims", v["head-dims"] ?? "64,128", parsePositiveInt);
    const prefill = v.prefill ? parsePositiveInt("--prefill", v.prefill) : 256;
    const repeats = v.repeats ? parsePositiveInt("--repeats", v.repeats) : 5;
    const plot = v.plot === undefined ? undefined : parseOutputPath("--plot", v.plot);
    const { rows, ortNote } = await runAttentionBench({ contexts, prefillContexts, headDims, prefill, repeats, progress: (l) => io.stderr(l + "\n") });
    const cpu = native().backendInfo().cpu;
    const date = new Date().toISOString();
    if (plot !== undefined) await writeFile(plot, await renderSvg(attentionPlot(rows, date)));
    if (v.json) {
      io.stdout(toJson({ suite: "attention", kvHeads: KV_HEADS, queryHeads: KV_HEADS * GROUP, batch: 1, threads: cpu.threads, isa: cpu.isa, date, ortNote, results: rows }));
      return 0;
    }
    io.stdout(`batch 1, ${KV_HEADS} KV heads, GQA ${GROUP}:1, ${cpu.threads} CPU threads, ISA ${cpu.isa}\n${ortNote}\n\n`);
    io.stdout(
      renderTable(
        ["mode", "context", "head_dim", "case", "median ms", "MB read", "GB/s", "vs dense FP16"],
        rows.map((r) => [
          r.mode,
          String(r.context),
          String(r.headDim),
          r.case,
          r.medianMs === null ? (r.note ?? "-") : r.medianMs.toFixed(2),
          (r.bytesRead / 1e6).toFixed(1),
          r.gbPerSec === null ? "-" : r.gbPerSec.toFixed(2),
          r.vsDenseF16 === null ? "-" : r.vsDenseF16.toFixed(2) + "x",
        ]),
        ["left", "right", "right", "left", "right", "right", "right", "right"],
      ),
    );
    return 0;
  },
};
