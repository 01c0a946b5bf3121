/**
 * The native decode path: withNexusQuant(await loadModel(dir), { preset }). The decoder runs as ONNX
 * segments without attention (src/model/segment-builder.ts); between two segments the new K/V go into
 * the CompressedKVCache and attention is computed by the addon from the codes, the FP16 residual
 * window and the kept positions. No dense past K/V exists at any time, in JS or in ORT.
 *
 * Prompts are prefilled in chunks (`prefillChunk`, default 256): each chunk's queries attend to what
 * the cache holds plus the chunk itself (causally, by true position), then the chunk is compressed, so
 * the prefill peak is bounded by one chunk. Preset "none" never compresses (its spec is null): K/V
 * stay in the cache's FP16 residual with no eviction, the baseline every comparison uses.
 *
 * Scorers that need the model's queries get them here, where attention runs in our own kernel:
 * - "reconstruct" (query-agnostic, KVzip-style): before each compression the tokens appended since the
 *   last one are re-read (teacher-forced, behind the model's BOS token as a separator, at the positions
 *   after the context); each held token's score is the most attention the re-read's queries give it.
 *   The re-read attends only to the sinks and the tokens it re-reads (work bounded by the chunk), its
 *   own K/V are never kept, and it runs through the first `rereadLayers` layers only (default half;
 *   the layers it does not reach evict by the best score of those it does: CompressedKVCache.shareScores).
 * - "observed" (SnapKV): the last `scorerWindow` queries of each layer, as the model computed them.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { NexusQuantError, invalidArgument } from "../errors.js";
import { buildDecoderSegments, SEGMENT_NAMES } from "../model/segment-builder.js";
import type { LlamaConfig } from "../model/llama-config.js";
import type { LlamaModel } from "../model/model-dir.js";
import { modelFingerprint, type ModelFingerprint } from "../model/fingerprint.js";
import type { CompressedKVCache } from "../runtime/index.js";
import { checkConversationRows, ConversationCache, emptyKvStats, type KvStats } from "./conversation-cache.js";
import { checkStateOptions, resumedCache, type EngineConversation, type NativeEngineSnapshot, type ObservedWindow } from "./conversation-state.js";
import { DecodeHandle } from "./decode-handle.js";
import type { ResolvedOptions } from "./options.js";
import { checkProfileFor, type TransformProfile } from "../transform/profile.js";
import { PROFILE_FILE_NAME, readProfile } from "../transform/profile-file.js";
import type { OrtTensorLike } from "./ort-session.js";
import { checkPrefillFits } from "./prefill-memory.js";
import { checkVocab, stepResult, toTokenRows, zeroTimings, type StepEngine, type StepResult, type StepTimings, type TokenRows } from "./step-adapter.js";

/** The parts of onnxruntime-node the native path uses: Tensor and InferenceSession.create. */
export interface OrtRuntimeLike {
  Tensor: new (type: string, data: unknown, dims: readonly number[]) => OrtTensorLike;
  InferenceSession: { create(bytes: Uint8Array, options?: object): Promise<SegmentSessionLike> };
}
/**
 * Options of every segment session. Spinning is off: a step alternates between onnxruntime (the
 * segments) and the addon's attention pool twice per layer, and an intra-op pool that spins after
 * each run keeps the cores from the attention threads. On the 2-core dev VM decode was about 10×
 * slower with spinning on (8.6 against 96.8 tokens/s at 256 tokens, `nexusquant bench memory
 * --prompts 1k --cases native-quant`, 2026-12-08).
 */
export const SEGMENT_SESSION_OPTIONS = Object.freeze({
  extra: { session: { intra_op: { allow_spinning: "0" }, inter_op: { allow_spinning: "0" } } },
});

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
  /** The "reconstruct" scorer's re-reads (segments and attention together; not in the two above). */
  rereadSeconds: number;
  /** Tokens re-read by the "reconstruct" scorer (separators included). */
  rereadTokens: number;
}

const zeroNativeTimings = (): NativeStepTimings => ({ ...zeroTimings(), segmentSeconds: 0, attentionSeconds: 0, rereadSeconds: 0, rereadTokens: 0 });

/** One pass of tokens through the segments: the model's forward step, or a re-read for the reconstruct scorer. */
type PassKind = "forward" | "reread";

/**
 * The StepEngine of the native path: the segments and the current conversation (its cache, true
 * lengths, schedule and stats: a ConversationCache). DecodeHandle drives it (generate, BUSY/DISPOSED,
 * lifecycle), as it drives the ORT wrapper's engine.
 */
export class NativeStepEngine implements StepEngine {
  readonly config: LlamaConfig;
  readonly options: Readonly<ResolvedOptions>;
  readonly logitsMode: "last" | "all";
  readonly #ort: OrtRuntimeLike;
  #segments: SegmentSessionLike[];
  #conversation: ConversationCache | undefined;
  #timings = zeroNativeTimings();
  /** Per row: the tokens appended since the last compression (what a reconstruct re-read reads again). */
  #sinceCompression: number[][] = [];
  /** Per row and layer: the last queries [queryHeads, window, headDim] (observed scorer), and how many it holds. */
  #observed: { queries: Float32Array[]; count: number }[] = [];

  readonly stateKind = "native";
  /** What identifies the model, for saved states (see fingerprint()). */
  readonly #fingerprint: (() => Promise<ModelFingerprint>) | undefined;

  constructor(config: LlamaConfig, options: ResolvedOptions, ort: OrtRuntimeLike, segments: SegmentSessionLike[], logits: "last" | "all", fingerprint?: () => Promise<ModelFingerprint>) {
    this.config = config;
    this.options = options;
    this.#ort = ort;
    this.#segments = segments;
    this.logitsMode = logits;
    this.#fingerprint = fingerprint;
  }

  get cache(): CompressedKVCache | undefined {
    return this.#conversation?.cache;
  }

  get batch(): number | undefined {
    return this.#conversation?.shape.batch;
  }

  get vocabSize(): number {
    return this.config.vocabSize;
  }

  position(row: number): number {
    return this.#conversation?.length(row) ?? 0;
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
    checkConversationRows(this.batch, batchRows.length);
    const n = Math.max(...batchRows.map((r) => r.length));
    if (n === 0) throw invalidArgument("rows", "at least one token in some row", rows);
    const t0 = performance.now();
    const fresh = this.#conversation === undefined;
    // "none" keeps its K/V in the cache too (FP16, never compressed): attention reads them there.
    const conversation = (this.#conversation ??= ConversationCache.create(
      { layers: this.config.numLayers, kvHeads: this.config.numKvHeads, headDim: this.config.headDim, queryHeads: this.config.numHeads, batch: batchRows.length },
      this.options,
      "cache",
    ));
    if (n > 1 || fresh) {
      try {
        this.#checkFits(batchRows, conversation);
      } catch (error) {
        if (fresh) this.reset(); // refused before anything ran: no conversation was started
        throw error;
      }
    }
    try {
      return await this.#run(conversation, batchRows, n, t0);
    } catch (error) {
      // A step that failed part way (OUT_OF_MEMORY in a layer, a segment's error) leaves layers of
      // different lengths: drop the conversation rather than let the next step read it.
      this.reset();
      throw error;
    }
  }

  /** OUT_OF_MEMORY before the step runs when the cache it needs cannot fit a limit (prefill-memory.ts). */
  #checkFits(batchRows: readonly (readonly number[])[], conversation: ConversationCache): void {
    checkPrefillFits({
      layers: this.config.numLayers,
      kvHeads: this.config.numKvHeads,
      headDim: this.config.headDim,
      spec: conversation.spec ?? undefined,
      tokensAfter: batchRows.map((row, b) => conversation.length(b) + row.length),
      chunkTokens: Math.min(this.options.prefillChunk, Math.max(...batchRows.map((r) => r.length))),
      heldBytes: conversation.cache!.stats().bytes.total,
      memoryLimitBytes: this.options.memoryLimitBytes,
      preset: this.options.preset,
    });
  }

  async #run(conversation: ConversationCache, batchRows: readonly (readonly number[])[], n: number, t0: number): Promise<StepResult> {
    const vocab = this.config.vocabSize;
    const batch = conversation.shape.batch;
    const all = this.logitsMode === "all";
    const logits = new Float32Array(batch * (all ? n : 1) * vocab);
    const chunk = this.options.prefillChunk;
    // Left-pad to n, as the ORT wrapper does; chunks walk the padded columns.
    const padded = batchRows.map((row) => [...new Array<number>(n - row.length).fill(-1), ...row]);
    for (let start = 0; start < n; start += chunk) {
      const width = Math.min(chunk, n - start);
      const chunkLogits = await this.#runChunk(conversation, padded.map((row) => row.slice(start, start + width)));
      if (all) {
        for (let b = 0; b < batch; b++) logits.set(chunkLogits.subarray(b * width * vocab, (b + 1) * width * vocab), (b * n + start) * vocab);
      } else if (start + width === n) {
        logits.set(chunkLogits);
      }
      // The schedule: each chunk of a prompt (n > 1) as soon as it is in; decode tokens every compressEvery.
      if (conversation.due(n)) await this.#compress(conversation);
    }
    this.#timings.steps += 1;
    this.#timings.totalSeconds += (performance.now() - t0) / 1000;
    return stepResult(logits, batch, all ? n : 1, vocab);
  }

  /** Compresses the conversation, after the re-read its scorer needs (reconstruct) or with the queries it reads (observed). */
  async #compress(conversation: ConversationCache): Promise<void> {
    const spec = conversation.spec;
    if (spec !== null && spec.evictFraction > 0 && spec.scorer === "reconstruct") await this.#reread(conversation);
    const observedQueries = spec?.scorer === "observed" ? this.#observed.map((o) => (o.count === 0 ? undefined : o.queries.map((q) => windowQueries(q, o.count, this.config)))) : undefined;
    this.#timings.compressSeconds += await conversation.compress(observedQueries !== undefined ? { observedQueries } : undefined);
    this.#sinceCompression = this.#sinceCompression.map(() => []);
  }

  /**
   * The reconstruct scorer's re-read: each row's tokens since the last compression, behind the BOS
   * separator, at the positions after the context, in pieces of at most prefillChunk tokens.
   */
  async #reread(conversation: ConversationCache): Promise<void> {
    const t0 = performance.now();
    const separator = this.config.bosTokenId === undefined ? [] : [this.config.bosTokenId];
    const piece = Math.max(1, this.options.prefillChunk - separator.length);
    const longest = Math.max(0, ...this.#sinceCompression.map((r) => r.length));
    for (let start = 0; start < longest; start += piece) {
      const parts = this.#sinceCompression.map((tokens) => tokens.slice(start, start + piece));
      if (parts.every((p) => p.length === 0)) continue;
      // Rows without tokens here get no pass (all padding); the others re-read their part and attend to
      // the sinks and to what they re-read (the part is the newest held tokens, none evicted since).
      const rows = parts.map((p) => (p.length === 0 ? [] : [...separator, ...p]));
      const width = Math.max(...rows.map((r) => r.length));
      const recent = this.#sinceCompression.map((tokens) => Math.max(0, tokens.length - start));
      await this.#pass(conversation, rows.map((r) => [...new Array<number>(width - r.length).fill(-1), ...r]), "reread", recent);
      this.#timings.rereadTokens += rows.reduce((a, r) => a + r.length, 0);
    }
    this.#timings.rereadSeconds += (performance.now() - t0) / 1000;
  }

  /** One chunk through every segment. `rows` hold token ids, -1 at left padding. Returns [b, 1|w, vocab]. */
  async #runChunk(conversation: ConversationCache, rows: number[][]): Promise<Float32Array> {
    return (await this.#pass(conversation, rows, "forward"))!;
  }

  /**
   * Tokens through the segments. "forward": append their K/V, attend, return the logits. "reread":
   * attend with reconstructionAttention (each row's sinks and last `recent[b]` held tokens plus the
   * re-read's own K/V, which are not kept), score, and stop before the last layer's MLP and LM head.
   */
  async #pass(conversation: ConversationCache, rows: number[][], kind: PassKind, recent: number[] = []): Promise<Float32Array | undefined> {
    const cache = conversation.cache!;
    const forward = kind === "forward";
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
        at[j - pad] = conversation.length(b) + j - pad;
        positionIds[b * w + j] = BigInt(at[j - pad]!);
      }
      truePositions.push(at);
    });
    const positionTensor = new Tensor("int64", positionIds, [batch, w]);
    const N = SEGMENT_NAMES;
    // A re-read's time is counted apart (rereadSeconds), not as the model's own segments and attention.
    const timed = (key: "segmentSeconds" | "attentionSeconds", since: number) => {
      if (forward) this.#timings[key] += (performance.now() - since) / 1000;
    };
    let t = performance.now();
    let out = await this.#segments[0]!.run({ [N.inputIds]: new Tensor("int64", ids, [batch, w]), [N.positionIds]: positionTensor });
    timed("segmentSeconds", t);
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
        const rowK = realColumns(k, b, numKvHeads, w, headDim, pad);
        const rowV = realColumns(v, b, numKvHeads, w, headDim, pad);
        const rowQ = realColumns(q, b, numHeads, w, headDim, pad);
        let context: Float32Array;
        if (forward) {
          cache.append(layer, rowK, rowV, { sequence: b });
          context = cache.attention(layer, rowQ, { sequence: b, positions: truePositions[b]! });
          if (conversation.spec?.scorer === "observed") this.#keepQueries(b, layer, rowQ, r, cache.options.scorerWindow);
        } else {
          context = cache.reconstructionAttention(layer, rowQ, rowK, rowV, { sequence: b, positions: truePositions[b]!, recentTokens: recent[b]! });
        }
        for (let h = 0; h < numHeads; h++) {
          attention.set(context.subarray(h * r * headDim, (h + 1) * r * headDim), ((b * numHeads + h) * w + pad) * headDim);
        }
      }
      const t1 = performance.now();
      timed("attentionSeconds", t);
      // A re-read needs no output past the last layer's attention (its scores are taken there).
      if (!forward && layer + 1 === this.#rereadDepth()) {
        if (layer + 1 < numLayers) real.forEach((r, b) => r > 0 && cache.shareScores(layer + 1, { sequence: b }));
        return undefined;
      }
      const feeds: Record<string, OrtTensorLike> = {
        [N.hidden]: out[N.hiddenOut]!,
        [N.attention]: new Tensor("float32", attention, [batch, numHeads, w, headDim]),
      };
      if (layer + 1 < numLayers) feeds[N.positionIds] = positionTensor;
      out = await this.#segments[layer + 1]!.run(feeds);
      timed("segmentSeconds", t1);
    }
    rows.forEach((row, b) => {
      conversation.advance(b, real[b]!);
      (this.#sinceCompression[b] ??= []).push(...row.filter((id) => id >= 0));
    });
    return out[N.logits]!.data as Float32Array;
  }

  /** Layers a reconstruct re-read runs through (options.rereadLayers, at most the model's). */
  #rereadDepth(): number {
    const L = this.config.numLayers;
    const r = this.options.rereadLayers;
    return r === "all" ? L : r === "half" ? Math.ceil(L / 2) : Math.min(L, r);
  }

  /** Observed scorer: keeps the last `window` queries [queryHeads, r, headDim] of (row, layer). */
  #keepQueries(row: number, layer: number, q: Float32Array, r: number, window: number): void {
    const { numHeads, headDim, numLayers } = this.config;
    const o = (this.#observed[row] ??= { queries: Array.from({ length: numLayers }, () => new Float32Array(numHeads * window * headDim)), count: 0 });
    const win = o.queries[layer]!;
    const take = Math.min(r, window);
    const kept = Math.min(o.count, window - take);
    for (let h = 0; h < numHeads; h++) {
      const base = h * window * headDim;
      // Shift the newest `kept` queries to the front of the window, then add the chunk's last `take`.
      win.copyWithin(base, base + (Math.min(o.count, window) - kept) * headDim, base + Math.min(o.count, window) * headDim);
      win.set(q.subarray((h * r + r - take) * headDim, (h * r + r) * headDim), base + kept * headDim);
    }
    if (layer + 1 === numLayers) o.count = kept + take;
  }

  /** Memory of the current conversation, from the cache's accounting allocator. */
  stats(): KvStats {
    return this.#conversation?.stats() ?? emptyKvStats(this.options.preset);
  }

  /** The model's fingerprint (config and weights; src/model/fingerprint.ts), which saved states carry. */
  fingerprint(): Promise<ModelFingerprint> {
    if (this.#fingerprint === undefined) {
      return Promise.reject(new NexusQuantError("UNSUPPORTED", "This native engine was built without its checkpoint, so it has no model fingerprint to save or check; build it with NativeModelSession.create(model, …)."));
    }
    return this.#fingerprint();
  }

  /**
   * The conversation held now, for saveState(): its cache's bytes and snapshot, and this engine's own
   * state that the next steps read (the tokens since the last compression, which the reconstruct
   * scorer re-reads, and the observed scorer's query windows). Undefined before the first step.
   */
  saveConversation(): EngineConversation | undefined {
    const conversation = this.#conversation;
    if (conversation === undefined) return undefined;
    const rows = conversation.shape.batch;
    return {
      kind: "native",
      cache: conversation.cache!.serialize(),
      conversation: conversation.snapshot(),
      prefillChunk: this.options.prefillChunk,
      rereadLayers: this.options.rereadLayers,
      native: {
        sinceCompression: Array.from({ length: rows }, (_, b) => [...(this.#sinceCompression[b] ?? [])]),
        observed: Array.from({ length: rows }, (_, b) => {
          const o = this.#observed[b];
          return o === undefined ? undefined : { queries: o.queries.map((q) => q.slice()), count: o.count };
        }),
      },
    };
  }

  /**
   * Replaces the conversation with a saved one (from saveConversation(), possibly in another process).
   * Everything is checked before anything changes: the kind, the options that decide the tokens, the
   * cache against this model's shape, the engine's state; then the held conversation is dropped.
   */
  restoreConversation(saved: EngineConversation): void {
    checkStateOptions(saved, this.stateKind, this.options);
    const { numLayers, numKvHeads, headDim, numHeads } = this.config;
    const profile = this.options.profile;
    const conversation = resumedCache(saved, { layers: numLayers, kvHeads: numKvHeads, headDim, queryHeads: numHeads }, typeof profile === "object" ? profile : undefined);
    let engine: { since: number[][]; observed: ObservedWindow[] };
    try {
      engine = this.#checkedEngineState(saved.native, conversation);
    } catch (e) {
      conversation.dispose();
      throw e;
    }
    this.reset();
    this.#conversation = conversation;
    this.#sinceCompression = engine.since;
    this.#observed = engine.observed;
  }

  /** The saved engine state as this engine holds it (rows without an observed window stay holes, as #keepQueries leaves them). */
  #checkedEngineState(state: NativeEngineSnapshot | undefined, conversation: ConversationCache): { since: number[][]; observed: ObservedWindow[] } {
    const rows = conversation.shape.batch;
    const bad = (what: string) => new NexusQuantError("CORRUPT_DATA", `Not a valid nexusquant conversation state: the native engine state ${what}`);
    if (state === undefined || state.sinceCompression.length !== rows || state.observed.length !== rows) throw bad(`does not have one entry per row (${rows})`);
    const window = conversation.cache!.options.scorerWindow;
    const floats = this.config.numHeads * window * this.config.headDim;
    const observed: ObservedWindow[] = [];
    state.observed.forEach((o, b) => {
      if (o === undefined) return;
      if (o.queries.length !== this.config.numLayers || o.queries.some((q) => q.length !== floats) || o.count > window) {
        throw bad(`has an observed-query window of row ${b} that does not fit this model (${this.config.numLayers} layers of ${floats} floats, at most ${window} queries)`);
      }
      observed[b] = { queries: o.queries.map((q) => q.slice()), count: o.count };
    });
    state.sinceCompression.forEach((tokens, b) => {
      if (tokens.length > conversation.length(b) || tokens.some((t) => t >= this.config.vocabSize)) throw bad(`has tokens since the last compression of row ${b} that this conversation cannot hold`);
    });
    return { since: state.sinceCompression.map((t) => [...t]), observed };
  }

  timings(): NativeStepTimings {
    return { ...this.#timings, runSeconds: this.#timings.segmentSeconds };
  }

  reset(): void {
    this.#conversation?.dispose();
    this.#conversation = undefined;
    this.#timings = zeroNativeTimings();
    this.#sinceCompression = [];
    this.#observed = [];
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
    // generate() stops at the checkpoint's end-of-text ids unless options.eos (or the call) says otherwise.
    super(engine, "native path", engine.options.eos ?? engine.config.eosTokenIds ?? []);
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
    const profile = await resolveProfile(model, options.profile);
    options = { ...options, profile: profile ?? false };
    const built = buildDecoderSegments({ config, weights: model.weights, logits: native.logits ?? "last" });
    const sessions: SegmentSessionLike[] = [];
    for (const bytes of built.segments) sessions.push(await ort.InferenceSession.create(bytes, SEGMENT_SESSION_OPTIONS));
    return new NativeModelSession(new NativeStepEngine(config, options, ort, sessions, built.logits, () => modelFingerprint(model)));
  }
}

/**
 * The profile a conversation codes with: "auto" reads `nexusquant-profile.bin` next to the checkpoint
 * when there is one; a given or found profile must be this model's (PROFILE_MISMATCH otherwise).
 */
async function resolveProfile(model: LlamaModel, wanted: ResolvedOptions["profile"]): Promise<TransformProfile | undefined> {
  if (wanted === false) return undefined;
  let profile: TransformProfile;
  if (wanted === "auto") {
    if (model.dir === undefined) return undefined;
    const path = join(model.dir, PROFILE_FILE_NAME);
    if (!existsSync(path)) return undefined;
    profile = await readProfile(path);
  } else {
    profile = wanted;
  }
  const { config } = model;
  checkProfileFor(profile, { fingerprint: (await modelFingerprint(model)).id, layers: config.numLayers, kvHeads: config.numKvHeads, headDim: config.headDim });
  return profile;
}

/** The first `count` queries of each head of a [heads, window, d] observation window, as [heads, count, d]. */
function windowQueries(q: Float32Array, count: number, config: LlamaConfig): Float32Array {
  const { numHeads, headDim } = config;
  const window = q.length / (numHeads * headDim);
  if (count >= window) return q;
  const out = new Float32Array(numHeads * count * headDim);
  for (let h = 0; h < numHeads; h++) out.set(q.subarray(h * window * headDim, (h * window + count) * headDim), h * count * headDim);
  return out;
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
