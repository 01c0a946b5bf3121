/**
 * The native decode path: withNexusQuant(await loadModel(dir), { preset }). The decoder runs as ONNX
 * segments without attention (src/model/segment-builder.ts); between two segments the new K/V go into
 * the CompressedKVCache and attention is computed by the addon from the codes, the FP16 residual
 * window and the kept positions. No dense past K/V exists at any time, in JS or in ORT.
 *
 * Prompts are prefilled in chunks (`prefillChunk`, default 256): each chunk's queries attend to what
 * the cache holds plus the chunk itself (causally, by true position), then the chunk is compressed, so
 * the prefill peak is bounded by one chunk. Preset "none" never compresses: K/V stay in the FP16
 * residual with no eviction, the baseline every comparison uses.
 */
import { NexusQuantError, invalidArgument } from "../errors.js";
import { fp16BytesPerTokenLayer } from "../format/index.js";
import { buildDecoderSegments, SEGMENT_NAMES } from "../model/segment-builder.js";
import type { LlamaConfig } from "../model/llama-config.js";
import type { LlamaModel } from "../model/model-dir.js";
import { CompressedKVCache } from "../runtime/index.js";
import type { KvStats } from "./kv-state.js";
import type { ResolvedOptions } from "./options.js";
import type { GenerateOptions, GenerateResult, OrtTensorLike, StepResult } from "./ort-session.js";
import { createSampler } from "./sampling.js";

/** The parts of onnxruntime-node the native path uses: Tensor and InferenceSession.create. */
export interface OrtRuntimeLike {
  Tensor: new (type: string, data: unknown, dims: readonly number[]) => OrtTensorLike;
  InferenceSession: { create(bytes: Uint8Array, options?: object): Promise<SegmentSessionLike> };
}
interface SegmentSessionLike {
  run(feeds: Record<string, OrtTensorLike>): Promise<Record<string, OrtTensorLike>>;
  release?(): Promise<void>;
}

export interface NativeModelOptions {
  /** "last" (default): logits of the last position only. "all": every position (tests, quality harness). */
  logits?: "last" | "all";
}

/** Where the time of the native steps went (seconds, cumulative since the last reset()). */
export interface NativeStepTimings {
  steps: number;
  /** Inside the ONNX segments (embeddings, norms, projections, RoPE, MLP, LM head). */
  segmentSeconds: number;
  /** Appending K/V to the cache and attention on the codes. */
  attentionSeconds: number;
  compressSeconds: number;
  totalSeconds: number;
}

const zeroTimings = (): NativeStepTimings => ({ steps: 0, segmentSeconds: 0, attentionSeconds: 0, compressSeconds: 0, totalSeconds: 0 });

/** A loaded checkpoint whose decoder reads the compressed cache directly. Same handle shape as the ORT wrapper. */
export class NativeModelSession {
  readonly config: LlamaConfig;
  readonly options: Readonly<ResolvedOptions>;
  readonly logitsMode: "last" | "all";
  readonly #ort: OrtRuntimeLike;
  #segments: SegmentSessionLike[];
  #cache: CompressedKVCache | undefined;
  #lengths: number[] = [];
  #pending: (number | undefined)[] = [];
  #sinceCompress = 0;
  #compressions = 0;
  #compressSeconds = 0;
  #timings = zeroTimings();
  #disposed = false;

  private constructor(config: LlamaConfig, options: ResolvedOptions, ort: OrtRuntimeLike, segments: SegmentSessionLike[], logits: "last" | "all") {
    this.config = config;
    this.options = options;
    this.#ort = ort;
    this.#segments = segments;
    this.logitsMode = logits;
  }

  /** Builds the segments and loads them into onnxruntime (the weights are copied into the sessions). */
  static async create(model: LlamaModel, options: ResolvedOptions, ort: OrtRuntimeLike, native: NativeModelOptions = {}): Promise<NativeModelSession> {
    if (typeof ort?.InferenceSession?.create !== "function") {
      throw new NexusQuantError("INVALID_ARGUMENT", "The native path needs the onnxruntime-node module (with InferenceSession) for options.ort", { arg: "options.ort" });
    }
    const { config } = model;
    if (config.headDim % 8 !== 0) {
      throw new NexusQuantError("UNSUPPORTED", `head_dim ${config.headDim} is not a multiple of 8; the compressed cache needs 8-element lattice groups`, { headDim: config.headDim });
    }
    const built = buildDecoderSegments({ config, weights: model.weights, logits: native.logits ?? "last" });
    const sessions: SegmentSessionLike[] = [];
    for (const bytes of built.segments) sessions.push(await ort.InferenceSession.create(bytes));
    return new NativeModelSession(config, options, ort, sessions, built.logits);
  }

  /** The compressed cache of the current conversation (undefined before the first step). */
  get cache(): CompressedKVCache | undefined {
    return this.#cache;
  }

  /** True length of a row of the current conversation: the position its next token gets. */
  position(row = 0): number {
    return this.#lengths[row] ?? 0;
  }

  /**
   * Runs new tokens through the model: `rows[b]` are row b's new tokens (rows may differ in length;
   * a single array is batch 1). Long inputs go in chunks of `prefillChunk`. Returns the logits of the
   * last position of each row ([batch, 1, vocab]), or of every position with `logits: "all"`.
   */
  async step(rows: readonly number[] | readonly (readonly number[])[]): Promise<StepResult> {
    this.#live();
    const batchRows = toRows(rows, this.config.vocabSize);
    const t0 = performance.now();
    if (this.#cache === undefined) {
      this.#cache = new CompressedKVCache({
        layers: this.config.numLayers,
        kvHeads: this.config.numKvHeads,
        headDim: this.config.headDim,
        queryHeads: this.config.numHeads,
        batch: batchRows.length,
        ...(this.options.passThrough ? {} : { preset: this.options.preset }),
        spec: this.options.spec,
        backend: this.options.backend,
        ...(this.options.seed !== undefined ? { seed: this.options.seed } : {}),
      });
      this.#lengths = new Array(batchRows.length).fill(0);
      this.#pending = new Array(batchRows.length).fill(undefined);
    }
    const batch = this.#cache.batch;
    if (batchRows.length !== batch) {
      throw invalidArgument("rows.length", `the batch size of this conversation (${batch}); call reset() to start one of another size`, batchRows.length);
    }
    const n = Math.max(...batchRows.map((r) => r.length));
    if (n === 0) throw invalidArgument("rows", "at least one token in some row", rows);
    const vocab = this.config.vocabSize;
    const all = this.logitsMode === "all";
    const logits = new Float32Array(batch * (all ? n : 1) * vocab);
    const chunk = this.options.prefillChunk;
    // Left-pad to n, as the ORT wrapper does; chunks walk the padded columns.
    const padded = batchRows.map((row) => [...new Array<number>(n - row.length).fill(-1), ...row]);
    for (let start = 0; start < n; start += chunk) {
      const width = Math.min(chunk, n - start);
      const chunkLogits = await this.#runChunk(padded.map((row) => row.slice(start, start + width)));
      if (all) {
        for (let b = 0; b < batch; b++) logits.set(chunkLogits.subarray(b * width * vocab, (b + 1) * width * vocab), (b * n + start) * vocab);
      } else if (start + width === n) {
        logits.set(chunkLogits);
      }
      if (n > 1) await this.#compress(); // a prompt chunk is compressed as soon as it is in
    }
    if (n === 1) {
      this.#sinceCompress += 1;
      if (this.#sinceCompress >= this.options.compressEvery) await this.#compress();
    }
    this.#pending.fill(undefined);
    this.#timings.steps += 1;
    this.#timings.totalSeconds += (performance.now() - t0) / 1000;
    const width = all ? n : 1;
    return {
      logits,
      dims: [batch, width, vocab],
      last: (row = 0) => logits.subarray((row * width + width - 1) * vocab, (row * width + width) * vocab),
    };
  }

  /** One chunk through every segment. `rows` hold token ids, -1 at left padding. Returns [b, 1|w, vocab]. */
  async #runChunk(rows: number[][]): Promise<Float32Array> {
    const cache = this.#cache!;
    const { numLayers, numHeads, numKvHeads, headDim } = this.config;
    const { Tensor } = this.#ort;
    const batch = rows.length;
    const w = rows[0]!.length;
    const ids = new BigInt64Array(batch * w);
    const positionIds = new BigInt64Array(batch * w);
    const real: number[] = [];
    const truePositions: Int32Array[] = [];
    rows.forEach((row, b) => {
      const pad = row.filter((t) => t < 0).length;
      real.push(w - pad);
      const at = new Int32Array(w - pad);
      for (let j = 0; j < w; j++) {
        if (j < pad) continue; // id 0 at position 0: computed and ignored (never appended, never attends)
        ids[b * w + j] = BigInt(row[j]!);
        at[j - pad] = this.#lengths[b]! + j - pad;
        positionIds[b * w + j] = BigInt(at[j - pad]!);
      }
      truePositions.push(at);
    });
    const positionTensor = new Tensor("int64", positionIds, [batch, w]);
    const N = SEGMENT_NAMES;
    let t = performance.now();
    let out = await this.#segments[0]!.run({ [N.inputIds]: new Tensor("int64", ids, [batch, w]), [N.positionIds]: positionTensor });
    this.#timings.segmentSeconds += (performance.now() - t) / 1000;
    for (let layer = 0; layer < numLayers; layer++) {
      t = performance.now();
      const q = out[N.query]!.data as Float32Array;
      const k = out[N.key]!.data as Float32Array;
      const v = out[N.value]!.data as Float32Array;
      const attention = new Float32Array(batch * numHeads * w * headDim);
      for (let b = 0; b < batch; b++) {
        const r = real[b]!;
        if (r === 0) continue;
        const pad = w - r;
        cache.append(layer, realColumns(k, b, numKvHeads, w, headDim, pad), realColumns(v, b, numKvHeads, w, headDim, pad), { sequence: b });
        const context = cache.attention(layer, realColumns(q, b, numHeads, w, headDim, pad), { sequence: b, positions: truePositions[b]! });
        for (let h = 0; h < numHeads; h++) {
          attention.set(context.subarray(h * r * headDim, (h + 1) * r * headDim), ((b * numHeads + h) * w + pad) * headDim);
        }
      }
      const t1 = performance.now();
      this.#timings.attentionSeconds += (t1 - t) / 1000;
      const feeds: Record<string, OrtTensorLike> = {
        [N.hidden]: out[N.hiddenOut]!,
        [N.attention]: new Tensor("float32", attention, [batch, numHeads, w, headDim]),
      };
      if (layer + 1 < numLayers) feeds[N.positionIds] = positionTensor;
      out = await this.#segments[layer + 1]!.run(feeds);
      this.#timings.segmentSeconds += (performance.now() - t1) / 1000;
    }
    rows.forEach((_, b) => (this.#lengths[b] = this.#lengths[b]! + real[b]!));
    return out[N.logits]!.data as Float32Array;
  }

  async #compress(): Promise<void> {
    this.#sinceCompress = 0;
    if (this.options.passThrough) return; // "none": FP16 residual, no eviction, ever
    const t = performance.now();
    await this.#cache!.compress();
    const seconds = (performance.now() - t) / 1000;
    this.#compressions += 1;
    this.#compressSeconds += seconds;
    this.#timings.compressSeconds += seconds;
  }

  /** Generates from a prompt (one row, or one per batch row of any lengths). Starts a new conversation unless `continue: true`. */
  async generate(inputIds: readonly number[] | readonly (readonly number[])[], options: GenerateOptions = {}): Promise<GenerateResult> {
    this.#live();
    const maxNewTokens = options.maxNewTokens ?? 32;
    if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 0) throw invalidArgument("maxNewTokens", "an integer >= 0", maxNewTokens);
    const eos = new Set(options.eos === undefined ? [] : typeof options.eos === "number" ? [options.eos] : options.eos);
    const sample = createSampler(options);
    let prompt = toRows(inputIds, this.config.vocabSize).map((r) => [...r]);
    if (options.continue && this.#cache !== undefined) {
      // The previous turn's last token was sampled but never fed: it goes in front of the new prompt.
      prompt = prompt.map((row, b) => (this.#pending[b] === undefined ? row : [this.#pending[b]!, ...row]));
    } else {
      this.reset();
    }
    const generated: number[][] = prompt.map(() => []);
    const done = prompt.map(() => maxNewTokens === 0);
    let result = await this.step(prompt);
    for (let index = 0; index < maxNewTokens; index++) {
      const next: number[][] = [];
      for (let b = 0; b < prompt.length; b++) {
        if (done[b]) {
          next.push([]); // a finished row gets a padding slot: nothing is appended to its cache
          continue;
        }
        const token = sample(result.last(b));
        generated[b]!.push(token);
        options.onToken?.(token, { row: b, index });
        if (eos.has(token) || generated[b]!.length >= maxNewTokens) done[b] = true;
        next.push([token]);
      }
      if (done.every(Boolean)) {
        next.forEach((row, b) => (this.#pending[b] = row[0]));
        break;
      }
      result = await this.step(next);
    }
    return { tokens: generated, stats: this.stats() };
  }

  /** Memory of the current conversation, from the cache's accounting allocator. */
  stats(): KvStats {
    const cache = this.#cache;
    const tokens = this.#lengths.reduce((a, b) => a + b, 0);
    if (cache === undefined) {
      return { preset: this.options.preset, backend: "none", tokens: 0, heldTokens: 0, tokensEvicted: 0, baselineKvBytes: 0, compressedKvBytes: 0, ratio: 1, denseKvBytes: 0, compressions: 0, compressSeconds: 0 };
    }
    const s = cache.stats();
    const baselineKvBytes = tokens * this.config.numLayers * fp16BytesPerTokenLayer(this.config.numKvHeads, this.config.headDim);
    const heldTokens = Math.round(s.tokens.held / this.config.numLayers);
    return {
      preset: this.options.preset,
      backend: s.backend,
      tokens,
      heldTokens,
      tokensEvicted: tokens - heldTokens,
      baselineKvBytes,
      compressedKvBytes: s.bytes.total,
      ratio: s.bytes.total === 0 ? 1 : baselineKvBytes / s.bytes.total,
      denseKvBytes: 0,
      compressions: this.#compressions,
      compressSeconds: this.#compressSeconds,
    };
  }

  timings(): NativeStepTimings {
    return { ...this.#timings };
  }

  /** Drops the conversation (and frees its cache); the next step starts a new one. */
  reset(): void {
    this.#cache?.dispose();
    this.#cache = undefined;
    this.#lengths = [];
    this.#pending = [];
    this.#sinceCompress = 0;
    this.#compressions = 0;
    this.#compressSeconds = 0;
    this.#timings = zeroTimings();
  }

  /** Frees the cache and releases the segment sessions (they belong to this handle). */
  dispose(): void {
    if (this.#disposed) return;
    this.reset();
    this.#disposed = true;
    for (const s of this.#segments) void s.release?.().catch(() => undefined);
    this.#segments = [];
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    this.reset();
    this.#disposed = true;
    const segments = this.#segments;
    this.#segments = [];
    await Promise.all(segments.map((s) => s.release?.()));
  }

  #live(): void {
    if (this.#disposed) throw new NexusQuantError("DISPOSED", "This model handle has been disposed; call withNexusQuant() again.");
  }
}

/** Row b of a [b, heads, w, d] tensor without its first `pad` columns: [heads, w - pad, d] (a view when pad = 0). */
function realColumns(data: Float32Array, b: number, heads: number, w: number, d: number, pad: number): Float32Array {
  const slab = data.subarray(b * heads * w * d, (b + 1) * heads * w * d);
  if (pad === 0) return slab;
  const r = w - pad;
  const out = new Float32Array(heads * r * d);
  for (let h = 0; h < heads; h++) out.set(slab.subarray((h * w + pad) * d, (h + 1) * w * d), h * r * d);
  return out;
}

function toRows(rows: readonly number[] | readonly (readonly number[])[], vocab: number): (readonly number[])[] {
  if (!Array.isArray(rows) || rows.length === 0) throw invalidArgument("inputIds", "a non-empty array of token ids, or an array of such rows", rows);
  const list: (readonly number[])[] = typeof rows[0] === "number" ? [rows as readonly number[]] : [...(rows as readonly (readonly number[])[])];
  list.forEach((row, b) => {
    if (!Array.isArray(row)) throw invalidArgument(`inputIds[${b}]`, "an array of token ids", row);
    row.forEach((t, j) => {
      if (!Number.isSafeInteger(t) || t < 0 || t >= vocab) throw invalidArgument(`inputIds[${b}][${j}]`, `a token id in [0, ${vocab})`, t);
    });
  });
  return list;
}
