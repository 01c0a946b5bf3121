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
import { DecodeHandle } from "./decode-handle.js";
import { CompressSchedule, emptyKvStats, type KvStats } from "./kv-state.js";
import type { ResolvedOptions } from "./options.js";
import type { OrtTensorLike } from "./ort-session.js";
import { checkPrefillFits } from "./prefill-memory.js";
import { checkVocab, stepResult, toTokenRows, zeroTimings, type StepEngine, type StepResult, type StepTimings, type TokenRows } from "./step-adapter.js";

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
  /**
   * "last" (default): logits of the last position only. "all": every position of every chunk
   * ([batch, tokens, vocab]), for tests and harnesses that score a prefill chunk position by position.
   */
  logits?: "last" | "all";
}

/**
 * Where the time of the native steps went (seconds, cumulative since the last reset()). `runSeconds`
 * is the time inside the ONNX segments (= segmentSeconds); the native path never materializes a past,
 * so `pastSeconds` and `absorbSeconds` stay 0.
 */
export interface NativeStepTimings extends StepTimings {
  /** Inside the ONNX segments (embeddings, norms, projections, RoPE, MLP, LM head). */
  segmentSeconds: number;
  /** Appending K/V to the cache and attention on the codes. */
  attentionSeconds: number;
}

const zeroNativeTimings = (): NativeStepTimings => ({ ...zeroTimings(), segmentSeconds: 0, attentionSeconds: 0 });

/**
 * The StepEngine of the native path: the segments, the cache of the current conversation and its
 * true lengths. DecodeHandle drives it (generate, BUSY/DISPOSED, lifecycle), as it drives the ORT
 * wrapper's engine.
 */
export class NativeStepEngine implements StepEngine {
  readonly config: LlamaConfig;
  readonly options: Readonly<ResolvedOptions>;
  readonly logitsMode: "last" | "all";
  readonly #ort: OrtRuntimeLike;
  #segments: SegmentSessionLike[];
  #cache: CompressedKVCache | undefined;
  #lengths: number[] = [];
  #schedule: CompressSchedule;
  #compressions = 0;
  #compressSeconds = 0;
  #timings = zeroNativeTimings();

  constructor(config: LlamaConfig, options: ResolvedOptions, ort: OrtRuntimeLike, segments: SegmentSessionLike[], logits: "last" | "all") {
    this.config = config;
    this.options = options;
    this.#schedule = new CompressSchedule(options.compressEvery);
    this.#ort = ort;
    this.#segments = segments;
    this.logitsMode = logits;
  }

  get cache(): CompressedKVCache | undefined {
    return this.#cache;
  }

  get batch(): number | undefined {
    return this.#cache?.batch;
  }

  get vocabSize(): number {
    return this.config.vocabSize;
  }

  position(row: number): number {
    return this.#lengths[row] ?? 0;
  }

  /**
   * Runs new tokens through the model: `rows[b]` are row b's new tokens (rows may differ in length).
   * Long inputs go in chunks of `prefillChunk`. Returns the logits of the last position of each row
   * ([batch, 1, vocab]), or of every position with `logits: "all"`.
   */
  async step(rows: TokenRows): Promise<StepResult> {
    const batchRows = toTokenRows(rows);
    const vocab = this.config.vocabSize;
    checkVocab(batchRows, vocab);
    if (this.#cache !== undefined && batchRows.length !== this.#cache.batch) {
      throw invalidArgument("rows.length", `the batch size of this conversation (${this.#cache.batch}); call reset() to start one of another size`, batchRows.length);
    }
    const n = Math.max(...batchRows.map((r) => r.length));
    if (n === 0) throw invalidArgument("rows", "at least one token in some row", rows);
    const t0 = performance.now();
    const fresh = this.#cache === undefined;
    if (fresh) {
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
        ...(this.options.memoryLimitBytes > 0 ? { memoryLimitBytes: this.options.memoryLimitBytes } : {}),
      });
      this.#lengths = new Array(batchRows.length).fill(0);
    }
    const cache = this.#cache!;
    if (n > 1 || fresh) {
      try {
        this.#checkFits(batchRows, cache);
      } catch (error) {
        if (fresh) this.reset(); // refused before anything ran: no conversation was started
        throw error;
      }
    }
    try {
      return await this.#run(batchRows, n, t0);
    } catch (error) {
      // A step that failed part way (OUT_OF_MEMORY in a layer, a segment's error) leaves layers of
      // different lengths: drop the conversation rather than let the next step read it.
      this.reset();
      throw error;
    }
  }

  /** OUT_OF_MEMORY before the step runs when the cache it needs cannot fit a limit (prefill-memory.ts). */
  #checkFits(batchRows: readonly (readonly number[])[], cache: CompressedKVCache): void {
    checkPrefillFits({
      layers: this.config.numLayers,
      kvHeads: this.config.numKvHeads,
      headDim: this.config.headDim,
      spec: this.options.passThrough ? undefined : cache.spec,
      tokensAfter: batchRows.map((row, b) => this.#lengths[b]! + row.length),
      chunkTokens: Math.min(this.options.prefillChunk, Math.max(...batchRows.map((r) => r.length))),
      heldBytes: cache.stats().bytes.total,
      memoryLimitBytes: this.options.memoryLimitBytes,
      preset: this.options.preset,
    });
  }

  async #run(batchRows: readonly (readonly number[])[], n: number, t0: number): Promise<StepResult> {
    const vocab = this.config.vocabSize;
    const batch = this.#cache!.batch;
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
    if (n === 1 && this.#schedule.due(1)) await this.#compress(); // decode: every compressEvery tokens
    this.#timings.steps += 1;
    this.#timings.totalSeconds += (performance.now() - t0) / 1000;
    return stepResult(logits, batch, all ? n : 1, vocab);
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
    this.#schedule.restart();
    if (this.options.passThrough) return; // "none": FP16 residual, no eviction, ever
    const t = performance.now();
    await this.#cache!.compress();
    const seconds = (performance.now() - t) / 1000;
    this.#compressions += 1;
    this.#compressSeconds += seconds;
    this.#timings.compressSeconds += seconds;
  }

  /** Memory of the current conversation, from the cache's accounting allocator. */
  stats(): KvStats {
    const cache = this.#cache;
    if (cache === undefined) return emptyKvStats(this.options.preset);
    const tokens = this.#lengths.reduce((a, b) => a + b, 0);
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
    return { ...this.#timings, runSeconds: this.#timings.segmentSeconds };
  }

  reset(): void {
    this.#cache?.dispose();
    this.#cache = undefined;
    this.#lengths = [];
    this.#schedule = new CompressSchedule(this.options.compressEvery);
    this.#compressions = 0;
    this.#compressSeconds = 0;
    this.#timings = zeroNativeTimings();
  }

  /** Frees the cache and releases the segment sessions (they belong to this engine). */
  dispose(): void {
    void this.disposeAsync().catch(() => undefined);
  }

  async disposeAsync(): Promise<void> {
    this.reset();
    const segments = this.#segments;
    this.#segments = [];
    await Promise.all(segments.map((s) => s.release?.()));
  }
}

/**
 * A loaded checkpoint whose decoder reads the compressed cache directly: a DecodeHandle (the same
 * handle the ORT wrapper returns: generate, step, stats, timings, reset, dispose) over a NativeStepEngine.
 */
export class NativeModelSession extends DecodeHandle<NativeStepEngine> {
  readonly config: LlamaConfig;
  readonly options: Readonly<ResolvedOptions>;
  readonly logitsMode: "last" | "all";

  private constructor(engine: NativeStepEngine) {
    super(engine, "native path");
    this.config = engine.config;
    this.options = engine.options;
    this.logitsMode = engine.logitsMode;
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
    return new NativeModelSession(new NativeStepEngine(config, options, ort, sessions, built.logits));
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
