/**
 * One case of `nexusquant bench memory`, run in its own process so that the OS's peak RSS
 * (getrusage maxRSS) belongs to that case alone. Invoked as `node memory-case.js '<json spec>'`; prints
 * one JSON line (MemoryCaseResult) on stdout. Cases:
 *   ort-plain     whole-model graph (FP16 past I/O) with its own dense past, prefilled in the same chunks
 *   ort-wrapper   withNexusQuant(session, { preset }) on that graph: compressed between steps, dense during one
 *   native-<p>    the native path (segments + attention on the codes), preset p ("none" = FP16, no eviction)
 * (Lab cases, llama.cpp through node-llama-cpp, run from bench/peer/memory-case.ts with the same spec
 * and result, reusing the helpers exported here.)
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { withNexusQuant } from "../../integrations/index.js";
import { argmax } from "../../integrations/sampling.js";
import { buildLlamaOnnx, createTinyLlama, pastKeyName, pastValueName, presentKeyName, presentValueName, type TinyLlamaOptions } from "../../model/index.js";
import { halfBitsToFloats, memoryStats } from "../../runtime/index.js";
import { fp16BytesPerTokenLayer } from "../../format/index.js";

export interface MemoryCaseSpec {
  case: string;
  prompt: number;
  decode: number;
  chunk: number;
  model: TinyLlamaOptions;
  /** The ORT wrapper's preset. */
  wrapperPreset: string;
  /**
   * CPU threads for every engine of the case: onnxruntime's intra-op pool here (the parent sets
   * NEXUSQUANT_THREADS for the addon, bench/peer sets llama.cpp's). Default: each engine's own.
   */
  threads?: number;
}

export interface MemoryCaseResult {
  case: string;
  prompt: number;
  decode: number;
  peakRssBytes: number;
  /**
   * Peak RSS of the run itself: the OS's high-water mark (VmHWM) reset once the model is loaded and
   * its build garbage collected, read after the last decode step. Null where Linux's
   * /proc/self/clear_refs is unavailable. Loading peaks (the ONNX build, weights in JS) vary by tens
   * of MB between runs and hide a small cache's share in the whole-process peak; this does not.
   */
  runPeakRssBytes: number | null;
  /** Peak of nexusquant's accounting allocator over the whole run (cache + scratch); null for a case without it (llama.cpp). */
  allocatorPeakBytes: number | null;
  /**
   * KV bytes held at the end: allocator bytes of the cache, the dense past's bytes for plain ORT, the
   * context's K/V buffers for llama.cpp (it allocates every cell of its context up front).
   */
  heldKvBytes: number;
  /** What FP16 K/V of every token would take. */
  fp16KvBytes: number;
  prefillSeconds: number;
  decodeTokensPerSecond: number;
  /** Greedy tokens generated (a sanity check that cases agree roughly). */
  tokens: number[];
}

/** The prompt every case reads: a repeated sentence as byte ids (the bench models have a 256-token vocabulary). */
export function promptIds(length: number, vocab: number): number[] {
  const text = "A key-value cache remembers every token a language model has read, two vectors per token per layer. ";
  return Array.from({ length }, (_, i) => text.charCodeAt(i % text.length) % vocab);
}

type Ort = typeof import("onnxruntime-node");

/** onnxruntime-node with `intraOpNumThreads` set on every session it creates (the native path creates its own). */
function withThreads(ort: Ort, threads: number | undefined): Ort {
  if (threads === undefined) return ort;
  const create = (bytes: Uint8Array, options: object = {}) => ort.InferenceSession.create(bytes, { ...options, intraOpNumThreads: threads, interOpNumThreads: 1 });
  return { ...ort, Tensor: ort.Tensor, InferenceSession: { ...ort.InferenceSession, create } } as unknown as Ort;
}

export async function runMemoryCase(spec: MemoryCaseSpec): Promise<MemoryCaseResult> {
  const ort = withThreads((await import("onnxruntime-node")) as Ort, spec.threads);
  const model = createTinyLlama(spec.model);
  const c = model.config;
  const ids = promptIds(spec.prompt, c.vocabSize);
  const fp16KvBytes = (spec.prompt + spec.decode) * c.numLayers * fp16BytesPerTokenLayer(c.numKvHeads, c.headDim);
  let prefillSeconds = 0;
  let decodeSeconds = 0;
  let heldKvBytes = 0;
  let resetDone = false;
  const tokens: number[] = [];

  if (spec.case === "ort-plain") {
    const session = await ort.InferenceSession.create(buildLlamaOnnx({ ...model, dtype: "f16" }));
    model.weights.clear(); // the session holds its own copy
    resetDone = resetPeakRss();
    let past: Record<string, InstanceType<Ort["Tensor"]>> = {};
    for (let l = 0; l < c.numLayers; l++) {
      for (const name of [pastKeyName(l), pastValueName(l)]) past[name] = new ort.Tensor("float16", new Uint16Array(0), [1, c.numKvHeads, 0, c.headDim]);
    }
    let position = 0;
    const run = async (chunk: number[]) => {
      const total = position + chunk.length;
      const out = await session.run({
        input_ids: new ort.Tensor("int64", BigInt64Array.from(chunk.map(BigInt)), [1, chunk.length]),
        attention_mask: new ort.Tensor("int64", new BigInt64Array(total).fill(1n), [1, total]),
        position_ids: new ort.Tensor("int64", BigInt64Array.from(chunk.map((_, j) => BigInt(position + j))), [1, chunk.length]),
        ...past,
      });
      position = total;
      past = {};
      for (let l = 0; l < c.numLayers; l++) {
        past[pastKeyName(l)] = out[presentKeyName(l)]!;
        past[pastValueName(l)] = out[presentValueName(l)]!;
      }
      const logits = out.logits!;
      const vocab = logits.dims[2]!;
      const bits = logits.data as Uint16Array;
      const last = new Float32Array(vocab);
      last.set(halfBitsToFloats(bits.subarray((chunk.length - 1) * vocab, chunk.length * vocab)));
      return last;
    };
    let t = performance.now();
    let last = new Float32Array(0);
    for (let s = 0; s < ids.length; s += spec.chunk) last = await run(ids.slice(s, s + spec.chunk));
    prefillSeconds = (performance.now() - t) / 1000;
    t = performance.now();
    for (let i = 0; i < spec.decode; i++) {
      tokens.push(argmax(last));
      last = await run([tokens.at(-1)!]);
    }
    decodeSeconds = (performance.now() - t) / 1000;
    heldKvBytes = Object.values(past).reduce((a, x) => a + (x.data as Uint16Array).byteLength, 0);
  } else if (spec.case === "ort-wrapper") {
    const session = await ort.InferenceSession.create(buildLlamaOnnx({ ...model, dtype: "f16" }));
    model.weights.clear();
    await using w = await withNexusQuant(session, { preset: spec.wrapperPreset, ort });
    resetDone = resetPeakRss();
    const t = performance.now();
    let r = await w.step(ids.slice(0, spec.chunk));
    for (let s = spec.chunk; s < ids.length; s += spec.chunk) r = await w.step(ids.slice(s, s + spec.chunk));
    prefillSeconds = (performance.now() - t) / 1000;
    decodeSeconds = await greedyDecode(w, r, spec.decode, tokens);
    const stats = w.stats();
    heldKvBytes = stats.compressedKvBytes + stats.denseKvBytes;
  } else if (spec.case.startsWith("native-")) {
    const preset = spec.case.slice("native-".length);
    await using w = await withNexusQuant(model, { preset, prefillChunk: spec.chunk, ort });
    model.weights.clear();
    resetDone = resetPeakRss();
    const t = performance.now();
    const r = await w.step(ids);
    prefillSeconds = (performance.now() - t) / 1000;
    decodeSeconds = await greedyDecode(w, r, spec.decode, tokens);
    heldKvBytes = w.stats().compressedKvBytes;
  } else {
    throw new Error(`unknown memory case ${JSON.stringify(spec.case)}`);
  }
  return caseResult(spec, { resetDone, allocatorPeakBytes: memoryStats().host.peakBytes, heldKvBytes, fp16KvBytes, prefillSeconds, decodeSeconds, tokens });
}

/** A case's result once its run is over: reads the peaks (the run's mark first, the process's last). */
export function caseResult(
  spec: MemoryCaseSpec,
  run: { resetDone: boolean; allocatorPeakBytes: number | null; heldKvBytes: number; fp16KvBytes: number; prefillSeconds: number; decodeSeconds: number; tokens: number[] },
): MemoryCaseResult {
  const runPeakRssBytes = run.resetDone ? peakRssSinceReset() : null;
  return {
    case: spec.case,
    prompt: spec.prompt,
    decode: spec.decode,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    runPeakRssBytes,
    allocatorPeakBytes: run.allocatorPeakBytes,
    heldKvBytes: run.heldKvBytes,
    fp16KvBytes: run.fp16KvBytes,
    prefillSeconds: run.prefillSeconds,
    decodeTokensPerSecond: spec.decode / run.decodeSeconds,
    tokens: run.tokens,
  };
}

/**
 * The child-process protocol of a case script (this one, and the lab's): the spec as JSON in argv[2],
 * the result as one JSON line on stdout, a failure's stack on stderr with exit code 1.
 */
export function runCaseProcess(run: (spec: MemoryCaseSpec) => Promise<MemoryCaseResult>): void {
  const spec = JSON.parse(process.argv[2]!) as MemoryCaseSpec;
  run(spec).then(
    (result) => process.stdout.write(JSON.stringify(result) + "\n"),
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) runCaseProcess(runMemoryCase);

/**
 * Collects garbage (the child runs with --expose-gc) and resets the OS's peak-RSS mark (Linux:
 * "5" to /proc/self/clear_refs resets VmHWM). False where that is unavailable.
 */
export function resetPeakRss(): boolean {
  (globalThis as { gc?: () => void }).gc?.();
  try {
    writeFileSync("/proc/self/clear_refs", "5");
    return peakRssSinceReset() !== null;
  } catch {
    return false;
  }
}

export function peakRssSinceReset(): number | null {
  const kib = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
  return kib === undefined ? null : Number(kib) * 1024;
}

/** `steps` greedy decode steps after a prefill's result `r`, appending to `tokens`; returns the seconds. */
async function greedyDecode(
  w: { step(tokens: number[]): Promise<{ last(): Float32Array }> },
  r: { last(): Float32Array },
  steps: number,
  tokens: number[],
): Promise<number> {
  const t = performance.now();
  for (let i = 0; i < steps; i++) {
    tokens.push(argmax(r.last()));
    r = await w.step([tokens.at(-1)!]);
  }
  return (performance.now() - t) / 1000;
}
