/**
 * Peak memory of the withNexusQuant wrappers of foreign runtimes vs the plain loop they replace: each
 * case in its own child process, peak RSS from the OS (/usr/bin/time's maximum resident set size,
 * i.e. getrusage). The wrappers hold the cache compressed between steps but rebuild the dense past
 * for every step, so this is what a user of them sees at the peak.
 *
 *   npx tsx bench/wrapper-peak.ts [--context 4096] [--steps 16] [--chunk 512] [--cases a,b] [--out bench/results/wrapper-peak-cpu.json]
 *
 * Model: a built random-weight Llama (src/model/tiny.ts) with Llama-3.2-1B's KV shape (16 layers,
 * 8 KV heads, head_dim 64) but a narrow body (hidden 256), float32 graph, so the KV cache is a large
 * share of the process. Cases, each at the long context and at 256 tokens (KV share = the
 * difference):
 *   ort-plain         onnxruntime-node loop written out here, present fed back as past (no nexusquant)
 *   ort-none/quant/balanced  withNexusQuant(session, { preset }), same chunks and steps
 *   tjs-plain         transformers.js model.generate(), unwrapped (whole prompt at once, as generate does)
 *   tjs-balanced      the same generate() call under withNexusQuant(model, { preset: "balanced" })
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildLlamaOnnx, createTinyLlama, pastKeyName, pastValueName, presentKeyName, presentValueName, writeModelDir, type TinyLlamaOptions } from "../src/model/index.js";

const SHAPE: TinyLlamaOptions = { seed: 5, layers: 16, hidden: 256, heads: 8, kvHeads: 8, headDim: 64, intermediate: 512, vocab: 256 };
const SHORT = 256;
const CASES = ["ort-plain", "ort-none", "ort-quant", "ort-balanced", "tjs-plain", "tjs-balanced"] as const;
type CaseName = (typeof CASES)[number];

interface ChildReport {
  case: CaseName;
  context: number;
  /** RSS after the model is loaded, before the prompt. */
  loadedRssBytes: number;
  /** ort-* cases: chunked prefill, then decode. */
  prefillSeconds?: number;
  decodeTokensPerSecond?: number;
  /** tjs-* cases: the whole generate() call. */
  generateSeconds?: number;
  /** The wrapper's stats() at the end (undefined for the plain loops). */
  stats?: Record<string, unknown>;
  /** getrusage(RUSAGE_SELF).ru_maxrss of the child, bytes (a cross-check of /usr/bin/time's figure). */
  selfMaxRssBytes: number;
}

const flag = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1]! : fallback;
};

function prompt(length: number): number[] {
  const text = "A key-value cache remembers every token a language model has read, two vectors per token per layer. ";
  return Array.from({ length }, (_, i) => text.charCodeAt(i % text.length) % 256);
}

async function child(name: CaseName, context: number, steps: number, chunk: number, dir: string): Promise<ChildReport> {
  const ids = prompt(context);
  const c = SHAPE as Required<TinyLlamaOptions>;
  if (name.startsWith("ort-")) {
    const ort = await import("onnxruntime-node");
    const session = await ort.InferenceSession.create(join(dir, "onnx", "model.onnx"));
    const loadedRssBytes = process.memoryUsage().rss;
    const chunks: number[][] = [];
    for (let i = 0; i < ids.length; i += chunk) chunks.push(ids.slice(i, i + chunk));
    const decode = Array.from({ length: steps }, (_, i) => (i * 13 + 1) % 256);
    let prefillSeconds = 0;
    let decodeSeconds = 0;
    let stats: Record<string, unknown> | undefined;
    if (name === "ort-plain") {
      // What a user writes without nexusquant: present fed back as past, chunked prefill.
      let past: Record<string, import("onnxruntime-node").Tensor> = {};
      for (let l = 0; l < c.layers; l++) {
        for (const name of [pastKeyName(l), pastValueName(l)]) past[name] = new ort.Tensor("float32", new Float32Array(0), [1, c.kvHeads, 0, c.headDim]);
      }
      let position = 0;
      for (const [i, part] of [...chunks, ...decode.map((t) => [t])].entries()) {
        const start = performance.now();
        const total = position + part.length;
        const out = await session.run({
          input_ids: new ort.Tensor("int64", BigInt64Array.from(part, BigInt), [1, part.length]),
          attention_mask: new ort.Tensor("int64", new BigInt64Array(total).fill(1n), [1, total]),
          position_ids: new ort.Tensor("int64", BigInt64Array.from(part, (_, j) => BigInt(position + j)), [1, part.length]),
          ...past,
        });
        past = {};
        for (let l = 0; l < c.layers; l++) {
          past[pastKeyName(l)] = out[presentKeyName(l)]!;
          past[pastValueName(l)] = out[presentValueName(l)]!;
        }
        position = total;
        const seconds = (performance.now() - start) / 1000;
        if (i < chunks.length) prefillSeconds += seconds;
        else decodeSeconds += seconds;
      }
    } else {
      const { withNexusQuant } = await import("../src/integrations/index.js");
      const preset = name.slice("ort-".length);
      await withNexusQuant(session, { preset, ort }, async (w) => {
        let start = performance.now();
        for (const part of chunks) await w.step(part);
        prefillSeconds = (performance.now() - start) / 1000;
        start = performance.now();
        for (const t of decode) await w.step([t]);
        decodeSeconds = (performance.now() - start) / 1000;
        stats = { ...w.stats() };
      });
    }
    return { case: name, context, loadedRssBytes, prefillSeconds, decodeTokensPerSecond: steps / decodeSeconds, ...(stats ? { stats } : {}), selfMaxRssBytes: process.resourceUsage().maxRSS * 1024 };
  }
  const tjs = await import("@huggingface/transformers");
  tjs.env.localModelPath = dirname(dir);
  tjs.env.allowRemoteModels = false;
  const lm = await tjs.AutoModelForCausalLM.from_pretrained(dir.split("/").at(-1)!, { dtype: "fp32" });
  const loadedRssBytes = process.memoryUsage().rss;
  const inputs = { input_ids: new tjs.Tensor("int64", BigInt64Array.from(ids, BigInt), [1, ids.length]), attention_mask: new tjs.Tensor("int64", new BigInt64Array(ids.length).fill(1n), [1, ids.length]) };
  // generate() prefills the whole prompt in one forward, then decodes: only the total is timed.
  let stats: Record<string, unknown> | undefined;
  const run = async () => {
    const start = performance.now();
    await lm.generate({ ...inputs, max_new_tokens: steps + 1, do_sample: false });
    return { start, end: performance.now() };
  };
  let times: { start: number; end: number };
  if (name === "tjs-plain") times = await run();
  else {
    const { withNexusQuant } = await import("../src/integrations/index.js");
    times = await withNexusQuant(lm, { preset: "balanced" }, async (h) => {
      const t = await run();
      stats = { ...h.stats() };
      return t;
    });
  }
  await lm.dispose();
  return { case: name, context, loadedRssBytes, generateSeconds: (times.end - times.start) / 1000, ...(stats ? { stats } : {}), selfMaxRssBytes: process.resourceUsage().maxRSS * 1024 };
}

async function parent(): Promise<void> {
  const context = Number(flag("--context", "4096"));
  const steps = Number(flag("--steps", "16"));
  const chunk = Number(flag("--chunk", "512"));
  const out = flag("--out", join(dirname(fileURLToPath(import.meta.url)), "results", "wrapper-peak-cpu.json"));
  const root = mkdtempSync(join(tmpdir(), "nq-wrapper-peak-"));
  const dir = join(root, "model");
  const model = createTinyLlama(SHAPE);
  await writeModelDir(dir, model);
  mkdirSync(join(dir, "onnx"), { recursive: true });
  writeFileSync(join(dir, "onnx", "model.onnx"), buildLlamaOnnx({ ...model, dtype: "f32" }));
  const cases = flag("--cases", CASES.join(",")).split(",") as CaseName[];
  const rows: (ChildReport & { peakRssBytes: number })[] = [];
  const loadBefore = loadavg();
  try {
    for (const name of cases) {
      // --long-only: skip the short-context run (when its peak is known from an earlier run).
      for (const ctx of process.argv.includes("--long-only") ? [context] : [SHORT, context]) {
        const r = spawnSync("/usr/bin/time", ["-f", "NQ_PEAK_KB=%M", process.execPath, "--import", "tsx", fileURLToPath(import.meta.url), "--child", name, "--context", String(ctx), "--steps", String(steps), "--chunk", String(chunk), "--dir", dir], {
          encoding: "utf8",
          maxBuffer: 1 << 24,
        });
        const peak = /NQ_PEAK_KB=(\d+)/.exec(r.stderr)?.[1];
        const line = r.stdout.split("\n").find((l) => l.startsWith("{"));
        if (r.status !== 0 || peak === undefined || line === undefined) throw new Error(`case ${name} @ ${ctx} failed (${r.status}): ${r.stderr.slice(-2000)}`);
        const row = { ...(JSON.parse(line) as ChildReport), peakRssBytes: Number(peak) * 1024 };
        rows.push(row);
        process.stderr.write(`${name} @ ${ctx}: peak ${(row.peakRssBytes / 2 ** 20).toFixed(0)} MiB ${line}\n`);
      }
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  const peakOf = (name: CaseName, ctx: number) => rows.find((r) => r.case === name && r.context === ctx)?.peakRssBytes ?? NaN;
  const summary = cases.map((name) => {
    const long = rows.find((r) => r.case === name && r.context === context)!;
    return {
      case: name,
      peakRssMiB: +(long.peakRssBytes / 2 ** 20).toFixed(1),
      kvShareMiB: +((long.peakRssBytes - peakOf(name, SHORT)) / 2 ** 20).toFixed(1),
      heldKvMiB: long.stats ? +((long.stats["compressedKvBytes"] as number) / 2 ** 20).toFixed(2) : undefined,
      ratio: long.stats ? +(long.stats["ratio"] as number).toFixed(2) : undefined,
      prefillSeconds: long.prefillSeconds === undefined ? undefined : +long.prefillSeconds.toFixed(2),
      decodeTokensPerSecond: long.decodeTokensPerSecond === undefined ? undefined : +long.decodeTokensPerSecond.toFixed(2),
      generateSeconds: long.generateSeconds === undefined ? undefined : +long.generateSeconds.toFixed(2),
    };
  });
  const result = {
    command: `npx tsx bench/wrapper-peak.ts --context ${context} --steps ${steps} --chunk ${chunk} --cases ${cases.join(",")}${process.argv.includes("--long-only") ? " --long-only" : ""}`,
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, totalMemGiB: +(totalmem() / 2 ** 30).toFixed(1), loadAverageBefore: loadBefore, loadAverageAfter: loadavg() },
    model: { ...SHAPE, graph: "float32", weights: "random (src/model/tiny.ts)" },
    context,
    shortContext: SHORT,
    steps,
    chunk,
    notes: [
      "peak RSS = /usr/bin/time maximum resident set size of the child process (one process per case and context)",
      `kvShare = peak at ${context} tokens minus the same case's peak at ${SHORT} tokens`,
      "ort-* cases prefill in chunks; tjs-* cases call model.generate(), which prefills the whole prompt at once",
      `dense FP32 K/V of ${context} tokens for this shape: ${((context * 16 * 8 * 64 * 2 * 4) / 2 ** 20).toFixed(0)} MiB`,
    ],
    summary,
    rows,
  };
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(result, null, 2) + "\n");
  console.log(JSON.stringify(summary, null, 2));
}

if (process.argv.includes("--child")) {
  const report = await child(flag("--child", "") as CaseName, Number(flag("--context", "0")), Number(flag("--steps", "16")), Number(flag("--chunk", "512")), flag("--dir", ""));
  console.log(JSON.stringify(report));
} else {
  await parent();
}
