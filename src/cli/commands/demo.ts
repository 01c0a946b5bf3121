import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { FidelityMeter } from "../../integrations/fidelity.js";
import { withNexusQuant, type OrtModuleLike, type OrtSessionLike } from "../../integrations/index.js";
import { argmax } from "../../integrations/sampling.js";
import { NexusQuantError } from "../../errors.js";
import { availableMemory } from "../../runtime/available-memory.js";
import { getPreset } from "../../format/index.js";
import { parseFlags, parseContext, parsePositiveInt } from "../args.js";
import { BUILT_IN_TEXT, DEMO_TINY, builtModel, byteTokens, modelFromDir, type DemoModel } from "../demo-model.js";
import { formatRatio, renderTable, toJson } from "../table.js";
import type { CliCommand } from "../types.js";

export interface DemoOptions {
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
 * Generates greedily without compression, then replays the same tokens through the compressed cache
 * (teacher forcing) so every next-token distribution is compared at the same position.
 */
export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  if (options.preset !== "none") getPreset(options.preset); // UNKNOWN_PRESET before any model work
  await checkDemoFits(options); // OUT_OF_MEMORY in milliseconds, not onnxruntime's "Failed to allocate" later
  const ort = await loadOrt();
  const model: DemoModel = options.modelDir ? await modelFromDir(options.modelDir) : builtModel();
  const session = await ort.InferenceSession.create(model.onnx);
  const prompt = byteTokens(options.prompt, options.contextTokens, model.vocab);

  const reference = await withNexusQuant(session, { preset: "none", ort }, async (w) => {
    const logits: Float32Array[] = [(await w.step(prompt)).last().slice()];
    const tokens: number[] = [];
    const start = performance.now();
    for (let i = 0; i < options.maxNewTokens; i++) {
      tokens.push(argmax(logits[i]!));
      logits.push((await w.step([tokens[i]!])).last().slice());
    }
    return { logits, tokens, seconds: (performance.now() - start) / 1000 };
  });

  return withNexusQuant(session, { preset: options.preset, ort }, async (w) => {
    const meter = new FidelityMeter();
    const prefillStart = performance.now();
    meter.add(reference.logits[0]!, (await w.step(prompt)).last());
    const prefillSeconds = (performance.now() - prefillStart) / 1000;
    const start = performance.now();
    for (let i = 0; i < reference.tokens.length; i++) meter.add(reference.logits[i + 1]!, (await w.step([reference.tokens[i]!])).last());
    const seconds = (performance.now() - start) / 1000;
    const stats = w.stats();
    const fidelity = meter.summary();
    return {
      model: model.label,
      weights: model.weights,
      preset: options.preset,
      backend: stats.backend,
      contextTokens: prompt.length,
      newTokens: reference.tokens.length,
      baselineKvBytes: stats.baselineKvBytes,
      compressedKvBytes: stats.compressedKvBytes,
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
  });
}

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;

export const demoCommand: CliCommand = {
  name: "demo",
  summary: "generate with and without a compressed KV cache; measured memory, speed and fidelity",
  usage: `Usage: nexusquant demo [--model DIR] [--preset NAME] [--prompt TEXT] [--context N] [--max-new-tokens N] [--json]

Runs a model twice through onnxruntime-node: greedy generation with an uncompressed cache, then the
same tokens fed through withNexusQuant (teacher forcing, so both runs are compared position by
position). Prints the KV memory (FP16 baseline vs bytes the compressed cache holds, measured by its
allocator), the ratio, decode tokens/s, and fidelity: mean KL divergence of the next-token
distributions and top-1 agreement against the uncompressed run.

Without --model a tiny Llama with RANDOM WEIGHTS is built on the spot (there is no trained
reference model yet): its memory figures are real, its fidelity says little about trained models.
Text is fed as UTF-8 bytes (no tokenizer), repeated to --context tokens.

Options:
  --model DIR            config.json + model.safetensors (built to ONNX), or with onnx/model.onnx
  --preset NAME          compression preset (default balanced; see \`nexusquant presets\`)
  --prompt TEXT          text to repeat into the context (default: a built-in paragraph)
  --context N            prompt tokens (default 1536; e.g. 2k). The prompt is prefilled in one step,
                         whose attention scores grow with the square of N: a context that cannot
                         fit in the available memory is refused at once with OUT_OF_MEMORY
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
      preset: values.preset ?? "balanced",
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
        `fidelity over ${result.positions} positions: mean KL ${result.klDivergence.toFixed(4)} nats (max ${result.maxKlDivergence.toFixed(4)}), top-1 agreement ${(result.top1Agreement * 100).toFixed(1)}%`,
        `compression time: ${result.compressSeconds.toFixed(2)} s (prefill incl. compression ${result.prefillSeconds.toFixed(2)} s)`,
        "",
      ].join("\n"),
    );
    return 0;
  },
};
