import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { FidelityMeter } from "../../integrations/fidelity.js";
import { withNexusQuant, type KvStats, type OrtModuleLike, type OrtSessionLike } from "../../integrations/index.js";
import { argmax } from "../../integrations/sampling.js";
import { NexusQuantError } from "../../errors.js";
import { availableMemory } from "../../runtime/available-memory.js";
import { DEFAULT_PRESET } from "../../format/index.js";
import { resolveOptions } from "../../integrations/options.js";
import { memoryStats } from "../../runtime/index.js";
import { native } from "../../runtime/native.js";
import { parseFlags, parseContext, parsePositiveInt } from "../args.js";
import {
  BUILT_IN_TEXT,
  DEMO_TINY,
  REFERENCE_MODEL_DIR,
  builtModel,
  builtNativeModel,
  byteTokens,
  hasOnnxGraph,
  modelFromDir,
  nativeModelFromDir,
  referenceModelAvailable,
  type DemoModel,
  type NativeDemoModel,
} from "../demo-model.js";
import { formatRatio, renderTable, toJson } from "../table.js";
import type { CliCommand } from "../types.js";

export interface DemoOptions {
  /** A checkpoint directory, or "built" for the built random-weight model. Default: models/sotu-llama when present, else built. */
  modelDir?: string;
  preset: string;
  prompt: string;
  contextTokens: number;
  maxNewTokens: number;
}

export interface DemoResult {
  model: string;
  weights: string;
  preset: string;
  backend: string;
  contextTokens: number;
  newTokens: number;
  /** FP16 bytes of every token of the compressed run (what an uncompressed FP16 cache would hold). */
  baselineKvBytes: number;
  /** Bytes the compressed cache holds at the end, measured by its accounting allocator. */
  compressedKvBytes: number;
  /**
   * Of compressedKvBytes, the transform profile's tables (docs/transform.md; 0 without one): model
   * data held once per process and shared by its conversations, counted here for this one.
   */
  transformBytes: number;
  ratio: number;
  heldTokens: number;
  tokensEvicted: number;
  /** Decode tokens per second of the compressed run (teacher-forced; one model step per token). */
  tokensPerSecond: number;
  /** The same for the uncompressed run. */
  baselineTokensPerSecond: number;
  prefillSeconds: number;
  compressSeconds: number;
  /** Mean KL(uncompressed ‖ compressed) of the next-token distributions, nats, at the same positions. */
  klDivergence: number;
  maxKlDivergence: number;
  top1Agreement: number;
  positions: number;
  /** "native": segments + attention on the compressed cache; "ort-session": the wrapper around a whole ONNX graph. */
  path: "native" | "ort-session";
  /** Native path: peak bytes of nexusquant's accounting allocator during each run (the KV cache and its scratch). */
  peakKvBytes?: { baseline: number; compressed: number };
  /** With a tokenizer: the prompt's start and the continuations generated with FP16 K/V and with the compressed cache. */
  text?: { tokenizer: string; reference: string; compressed: string };
}

async function loadOrt(): Promise<OrtModuleLike & { InferenceSession: { create(bytes: Uint8Array): Promise<OrtSessionLike> } }> {
  try {
    const specifier = "onnxruntime-node";
    return (await import(specifier)) as never;
  } catch (e) {
    throw new NexusQuantError("BACKEND_UNAVAILABLE", `The demo runs models with onnxruntime-node, which could not be loaded (${e instanceof Error ? e.message : String(e)}). Install it with ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node.`);
  }
}

/**
 * A lower bound of the bytes onnxruntime allocates to prefill `tokens` prompt tokens in one step: the
 * f32 attention scores of one layer, heads × tokens × tokens (a 64k-token prompt of the built model
 * asked for 68,719,476,736 bytes in one allocation), plus the f32 logits of every position.
 */
export function demoPrefillBytes(heads: number, tokens: number, vocab: number): number {
  return heads * tokens * tokens * 4 + tokens * vocab * 4;
}

/** Heads and vocabulary of the model the demo will run, read before anything is built or loaded. */
async function demoModelSize(modelDir: string | undefined): Promise<{ heads: number; vocab: number } | undefined> {
  if (modelDir === undefined) return { heads: DEMO_TINY.heads!, vocab: DEMO_TINY.vocab! };
  const config = JSON.parse(await readFile(join(modelDir, "config.json"), "utf8").catch(() => "null")) as { num_attention_heads?: unknown; vocab_size?: unknown } | null;
  const heads = config?.num_attention_heads;
  const vocab = config?.vocab_size;
  return typeof heads === "number" && typeof vocab === "number" ? { heads, vocab } : undefined; // modelFromDir reports what is missing
}

/** OUT_OF_MEMORY at once when the prompt's prefill cannot fit, naming the bytes and the largest context that does. */
async function checkDemoFits(options: DemoOptions): Promise<void> {
  const size = await demoModelSize(options.modelDir);
  if (size === undefined) return;
  const need = demoPrefillBytes(size.heads, options.contextTokens, size.vocab);
  const available = availableMemory();
  if (need <= available.bytes) return;
  let lo = 0;
  let hi = options.contextTokens;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (demoPrefillBytes(size.heads, mid, size.vocab) <= available.bytes) lo = mid;
    else hi = mid;
  }
  throw new NexusQuantError(
    "OUT_OF_MEMORY",
    `A ${options.contextTokens}-token prompt needs at least ${need} bytes to prefill (the attention scores of ${size.heads} heads, ${size.heads} × ${options.contextTokens}² × 4 bytes, ` +
      `and the logits) but ${available.bytes} bytes are available (${available.source}). The largest context that fits is ${lo} tokens; lower --context.`,
    { neededBytes: need, availableBytes: available.bytes, source: available.source, largestContext: lo },
  );
}

/**
 * The native path prefills in chunks, so what grows with the context is the FP16 K/V of the baseline
 * run (preset "none"): layers × kvHeads × headDim × (K, V) × 2 bytes per token. OUT_OF_MEMORY at once
 * when that cannot fit, naming the bytes and the largest context that does.
 */
function checkNativeDemoFits(options: DemoOptions, demo: NativeDemoModel): void {
  const c = demo.model.config;
  const perToken = c.numLayers * c.numKvHeads * c.headDim * 2 * 2;
  const tokens = options.contextTokens + options.maxNewTokens;
  const need = perToken * tokens;
  const available = availableMemory();
  if (need <= available.bytes) return;
  const largest = Math.max(0, Math.floor(available.bytes / perToken) - options.maxNewTokens);
  throw new NexusQuantError(
    "OUT_OF_MEMORY",
    `A ${options.contextTokens}-token prompt needs at least ${need} bytes for the FP16 baseline run's K/V (${perToken} bytes per token) ` +
      `but ${available.bytes} bytes are available (${available.source}). The largest context that fits is ${largest} tokens; lower --context.`,
    { neededBytes: need, availableBytes: available.bytes, source: available.source, largestContext: largest },
  );
}

/**
 * Generates greedily without compression, then replays the same tokens through the compressed cache
 * (teacher forcing) so every next-token distribution is compared at the same position.
 */
export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  resolveOptions({ preset: options.preset }); // UNKNOWN_PRESET before any model work ("none" included, any case)
  const dir = options.modelDir;
  if (dir !== undefined && dir !== "built" && (await hasOnnxGraph(dir))) {
    await checkDemoFits(options); // OUT_OF_MEMORY in milliseconds, not onnxruntime's "Failed to allocate" later
    const ort = await loadOrt();
    return runOrtDemo(options, await modelFromDir(dir), ort);
  }
  const ort = await loadOrt();
  let model: NativeDemoModel;
  if (dir === "built") model = builtNativeModel();
  else if (dir !== undefined) model = await nativeModelFromDir(dir);
  else if (await referenceModelAvailable()) model = await nativeModelFromDir(REFERENCE_MODEL_DIR, "models/sotu-llama (trained reference model)");
  else model = builtNativeModel();
  return runNativeDemo(options, model, ort);
}

/** The allocator's peak while `fn` runs (nexusquant's own bytes: the cache and its scratch). */
async function allocatorPeak<T>(fn: () => Promise<T>): Promise<[T, number]> {
  native().resetPeakMemory();
  const result = await fn();
  return [result, memoryStats().host.peakBytes];
}

/**
 * The native path, twice: greedy generation with preset "none" (FP16 K/V, no eviction), then the same
 * tokens teacher-forced through the compressed cache, comparing every next-token distribution; with
 * a tokenizer, a third run generates freely from the compressed cache so its text can be read.
 */
async function runNativeDemo(options: DemoOptions, demo: NativeDemoModel, ort: unknown): Promise<DemoResult> {
  checkNativeDemoFits(options, demo);
  const vocab = demo.model.config.vocabSize;
  const tokenizer = demo.tokenizer;
  let prompt: number[];
  if (tokenizer) {
    const ids = tokenizer.encode(options.prompt.length > 0 ? options.prompt : BUILT_IN_TEXT);
    if (ids.length === 0) throw new NexusQuantError("INVALID_ARGUMENT", "The prompt encodes to no tokens; give a non-empty --prompt.", { arg: "--prompt" });
    const body = Array.from({ length: options.contextTokens - (tokenizer.bosId === null ? 0 : 1) }, (_, i) => ids[i % ids.length]!);
    prompt = tokenizer.bosId === null ? body : [tokenizer.bosId, ...body];
  } else {
    prompt = byteTokens(options.prompt, options.contextTokens, vocab);
  }
  const [reference, baselinePeak] = await allocatorPeak(() =>
    withNexusQuant(demo.model, { preset: "none", ort }, (w) => referenceRun(w, prompt, options.maxNewTokens)),
  );
  const [result, compressedPeak] = await allocatorPeak(() =>
    withNexusQuant(demo.model, { preset: options.preset, ort }, (w) => comparedRun(w, prompt, reference)),
  );
  let text: DemoResult["text"];
  if (tokenizer) {
    const free = await withNexusQuant(demo.model, { preset: options.preset, ort }, (w) => w.generate(prompt, { maxNewTokens: options.maxNewTokens }));
    text = { tokenizer: tokenizer.description, reference: tokenizer.decode(reference.tokens), compressed: tokenizer.decode(free.tokens[0]!) };
  }
  return {
    ...demoResult(demo, options, prompt.length, reference, result),
    path: "native",
    peakKvBytes: { baseline: baselinePeak, compressed: compressedPeak },
    ...(text ? { text } : {}),
  };
}

/** A directory with an exported ONNX graph: the ORT-session wrapper (dense past during each step). */
async function runOrtDemo(options: DemoOptions, model: DemoModel, ort: Awaited<ReturnType<typeof loadOrt>>): Promise<DemoResult> {
  const session = await ort.InferenceSession.create(model.onnx);
  const prompt = byteTokens(options.prompt, options.contextTokens, model.vocab);

  const reference = await withNexusQuant(session, { preset: "none", ort }, (w) => referenceRun(w, prompt, options.maxNewTokens));
  const result = await withNexusQuant(session, { preset: options.preset, ort }, (w) => comparedRun(w, prompt, reference));
  return { ...demoResult(model, options, prompt.length, reference, result), path: "ort-session" };
}

/** What the demo needs of a wrapped model: the same on the native and the ORT-session paths. */
interface DemoHandle {
  step(tokens: number[]): Promise<{ last(): Float32Array }>;
  stats(): KvStats;
  readonly cache?: { stats(): { bytes: { transform: number } } } | undefined;
}
interface ReferenceRun {
  logits: Float32Array[];
  tokens: number[];
  seconds: number;
}
interface ComparedRun {
  stats: KvStats;
  /** The transform profile's tables among the compressed bytes (0 without a profile). */
  transformBytes: number;
  fidelity: ReturnType<FidelityMeter["summary"]>;
  prefillSeconds: number;
  seconds: number;
}

/** Greedy generation with the uncompressed cache: the tokens and the logits every comparison uses. */
async function referenceRun(w: DemoHandle, prompt: number[], maxNewTokens: number): Promise<ReferenceRun> {
  const logits: Float32Array[] = [(await w.step(prompt)).last().slice()];
  const tokens: number[] = [];
  const start = performance.now();
  for (let i = 0; i < maxNewTokens; i++) {
    tokens.push(argmax(logits[i]!));
    logits.push((await w.step([tokens[i]!])).last().slice());
  }
  return { logits, tokens, seconds: (performance.now() - start) / 1000 };
}

/** The same prompt and tokens through the compressed cache (teacher-forced), compared with the reference. */
async function comparedRun(w: DemoHandle, prompt: number[], reference: ReferenceRun): Promise<ComparedRun> {
  const meter = new FidelityMeter();
  const prefillStart = performance.now();
  meter.add(reference.logits[0]!, (await w.step(prompt)).last());
  const prefillSeconds = (performance.now() - prefillStart) / 1000;
  const start = performance.now();
  for (let i = 0; i < reference.tokens.length; i++) meter.add(reference.logits[i + 1]!, (await w.step([reference.tokens[i]!])).last());
  const seconds = (performance.now() - start) / 1000;
  return { stats: w.stats(), transformBytes: w.cache?.stats().bytes.transform ?? 0, fidelity: meter.summary(), prefillSeconds, seconds };
}

function demoResult(
  model: { label: string; weights: string },
  options: DemoOptions,
  contextTokens: number,
  reference: ReferenceRun,
  { stats, transformBytes, fidelity, prefillSeconds, seconds }: ComparedRun,
): Omit<DemoResult, "path"> {
  return {
    model: model.label,
    weights: model.weights,
    preset: options.preset,
    backend: stats.backend,
    contextTokens,
    newTokens: reference.tokens.length,
    baselineKvBytes: stats.baselineKvBytes,
    compressedKvBytes: stats.compressedKvBytes,
    transformBytes,
    ratio: stats.ratio,
    heldTokens: stats.heldTokens,
    tokensEvicted: stats.tokensEvicted,
    tokensPerSecond: reference.tokens.length / seconds,
    baselineTokensPerSecond: reference.tokens.length / reference.seconds,
    prefillSeconds,
    compressSeconds: stats.compressSeconds,
    klDivergence: fidelity.klDivergence,
    maxKlDivergence: fidelity.maxKlDivergence,
    top1Agreement: fidelity.top1Agreement,
    positions: fidelity.positions,
  };
}

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;

export const demoCommand: CliCommand = {
  name: "demo",
  summary: "generate with and without a compressed KV cache; measured memory, speed and fidelity",
  usage: `Usage: nexusquant demo [--model DIR] [--preset NAME] [--prompt TEXT] [--context N] [--max-new-tokens N] [--json]

Runs a model twice on the native path (ONNX segments in onnxruntime-node, attention computed by
nexusquant on the compressed cache): greedy generation with preset "none" (FP16 K/V), then the same
tokens fed through the compressed cache (teacher forcing, so both runs are compared position by
position). Prints the KV memory held and the allocator's measured peak of each run, the ratio,
decode tokens/s, and fidelity: mean KL divergence of the next-token distributions and top-1
agreement against the FP16 run. With a tokenizer.json, the text both runs generate is printed too.

The model: --model DIR; else models/sotu-llama (the trained reference model) when it is there; else
a tiny Llama with RANDOM WEIGHTS built on the spot (--model built forces it): its memory figures
are real, its fidelity says little about trained models. Without a tokenizer, text is fed as UTF-8
bytes, repeated to --context tokens.

Options:
  --model DIR|built      config.json + model.safetensors (native path); a DIR with onnx/model.onnx
                         runs through the ORT-session wrapper instead (dense past during each step)
  --preset NAME          compression preset (default ${DEFAULT_PRESET}; see \`nexusquant presets\`)
  --prompt TEXT          text to repeat into the context (default: a built-in paragraph)
  --context N            prompt tokens (default 1536; e.g. 2k). A context whose FP16 baseline K/V
                         (native path) or one-step prefill scores (ORT-session path) cannot fit in
                         the available memory is refused at once with OUT_OF_MEMORY
  --max-new-tokens N     decode steps compared (default 48)
  --json                 print a JSON object
`,
  async run(args, io) {
    const { values } = parseFlags(args, {
      model: { type: "string" },
      preset: { type: "string" },
      prompt: { type: "string" },
      context: { type: "string" },
      "max-new-tokens": { type: "string" },
      json: { type: "boolean" },
    });
    const result = await runDemo({
      ...(values.model !== undefined ? { modelDir: values.model } : {}),
      preset: values.preset ?? DEFAULT_PRESET,
      prompt: values.prompt ?? BUILT_IN_TEXT,
      contextTokens: values.context !== undefined ? parseContext("--context", values.context) : 1536,
      maxNewTokens: values["max-new-tokens"] !== undefined ? parsePositiveInt("--max-new-tokens", values["max-new-tokens"]) : 48,
    });
    if (values.json) {
      io.stdout(toJson(result));
      return 0;
    }
    io.stdout(
      [
        `model:   ${result.model}`,
        `weights: ${result.weights}`,
        `preset ${result.preset} on ${result.backend}; ${result.contextTokens} prompt tokens + ${result.newTokens} decode steps`,
        "",
        renderTable(
          ["", "uncompressed (FP16)", `compressed (${result.preset})`],
          [
            ["KV memory", kib(result.baselineKvBytes), kib(result.compressedKvBytes)],
            ["ratio", "1.00x", formatRatio(result.ratio)],
            ["tokens held", String(result.heldTokens + result.tokensEvicted), `${result.heldTokens} (${result.tokensEvicted} evicted)`],
            ["decode tokens/s", result.baselineTokensPerSecond.toFixed(1), result.tokensPerSecond.toFixed(1)],
          ],
          ["left", "right", "right"],
        ),
        ...(result.peakKvBytes
          ? [`measured peak (allocator): ${kib(result.peakKvBytes.baseline)} FP16 (none) vs ${kib(result.peakKvBytes.compressed)} ${result.preset}, on the native path (attention reads the codes; no dense past)`]
          : [`path: ORT-session wrapper (the cache is compressed between steps, dense during each step)`]),
        ...(result.transformBytes > 0
          ? [
              `KV memory includes the transform profile's tables: ${kib(result.transformBytes)} (model data, held once per process and shared by every conversation; ` +
                `the tokens alone: ${formatRatio(result.baselineKvBytes / (result.compressedKvBytes - result.transformBytes))})`,
            ]
          : []),
        `fidelity over ${result.positions} positions: mean KL ${result.klDivergence.toFixed(4)} nats (max ${result.maxKlDivergence.toFixed(4)}), top-1 agreement ${(result.top1Agreement * 100).toFixed(1)}%`,
        `compression time: ${result.compressSeconds.toFixed(2)} s (prefill incl. compression ${result.prefillSeconds.toFixed(2)} s)`,
        ...(result.text ? ["", `FP16 continuation:       ${JSON.stringify(result.text.reference)}`, `${result.preset} continuation: ${JSON.stringify(result.text.compressed)}`] : []),
        "",
      ].join("\n"),
    );
    return 0;
  },
};
