import { NexusQuantError, invalidArgument } from "../errors.js";
import {
  DEFAULT_PRESET,
  SCORER_IDS,
  scorerFromId,
  getPreset,
  isValidatedSpec,
  specWithOverrides,
  fp16BytesPerTokenLayer,
  FORMAT_LIMITS,
  SCORER_DEFAULTS,
  SERIALIZED_CACHE_HEADER,
  type SpecBits,
  type CompressionSpec,
} from "../format/index.js";
import { resolveBackend, type BackendName, type BackendRequest } from "./backend.js";
import { awaitNative, callNative, native } from "./native.js";
import type { NativeCacheHandle, NativeCacheOptions } from "./binding.js";
import { sharedTransformTables } from "./transform-tables.js";
import { validateProfileOnce, type TransformProfile } from "../transform/profile.js";
import {
  checkFinite,
  checkFiniteNumber,
  checkFloat32,
  checkIndex,
  checkInt,
  checkKVData,
  checkObject,
  checkOneOf,
  checkOptionKeys,
  checkSeed,
  fromTensor,
  type KVData,
  type TfjsTensorLike,
} from "./validate.js";

export interface CompressedKVCacheOptions {
  layers: number;
  kvHeads: number;
  headDim: number;
  /** Independent sequences (of any lengths). Default 1. */
  batch?: number;
  /** Query heads per layer (GQA: a multiple of kvHeads). Default kvHeads. */
  queryHeads?: number;
  /**
   * A preset name (default "balanced"); `spec` fields override it. Without a preset, a complete spec
   * that validateSpec returned (a preset's, or withNexusQuant's resolved one) is taken as it is.
   */
  preset?: string;
  spec?: Partial<CompressionSpec>;
  /**
   * "cpu", or "cuda" for the GPU cache (same compress policy, CUDA kernels; pages in device memory).
   * "auto" (default) is what `backendInfo().auto` says: today the CPU, even with a GPU (docs/cache.md,
   * "Backend"). "cuda" without a usable GPU is BACKEND_UNAVAILABLE.
   */
  backend?: BackendRequest;
  /** Seed of the Hadamard sign flips (and of the random scorer). */
  seed?: number;
  /** Proxy/observation window of the key-key and observed scorers. Default 32. */
  scorerWindow?: number;
  /** Max-pool width of the observed scorer (odd). Default 7. */
  poolKernel?: number;
  /** Budget mode: keep at most this many tokens per sequence and layer as the cache grows. */
  budgetTokens?: number;
  /**
   * "as-is" (default): keys are stored as they come (RoPE applied), so attention rotates the query
   * once. "unrope": RoPE is removed before quantizing (needs `ropeTheta`; rotate-half convention over
   * the whole head) and re-applied per key on the way out: ~14% lower key NMSE, slower attention
   * (docs/cache.md).
   */
  keyStorage?: "as-is" | "unrope";
  ropeTheta?: number;
  /**
   * The most bytes this cache may hold (codes, scales, positions, residual, scratch). An append or
   * compress that would pass it fails with OUT_OF_MEMORY naming the bytes needed, and leaves the
   * cache as it was. Default: no per-cache limit (the process-wide one and the system's still apply).
   * Host bytes: the CUDA cache's device memory is not limited by it.
   */
  memoryLimitBytes?: number;
  /**
   * A calibrated transform profile (`nexusquant calibrate DIR`, `readProfile`; docs/transform.md):
   * each head's K and V are coded in a basis fitted to the model, with more bits where their energy
   * is, at the same bytes per vector as without it. Made for this cache's layers, kvHeads and
   * headDim, else PROFILE_MISMATCH. Both backends: the CPU cache shares the tables with every cache
   * made with the same profile; the CUDA cache keeps its own device copy (stats().bytes.transform
   * lists the tables either way). serialize() records the tables' id, not the tables.
   */
  profile?: TransformProfile;
}

/**
 * The shared tables `profile` gives a serialized cache, from the shape and bits its header records
 * (SERIALIZED_CACHE_HEADER; the native reader checks the rest). Undefined for bytes that are not a
 * version-2 cache (one coded without a profile needs none; corrupt bytes are the reader's to judge).
 */
function serializedTransform(buffer: Uint8Array, profile: TransformProfile) {
  validateProfileOnce(profile);
  if (buffer.length < SERIALIZED_CACHE_HEADER.bytes) return undefined;
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const H = SERIALIZED_CACHE_HEADER;
  if (view.getUint32(4, true) !== H.transformVersion) return undefined;
  const shape = { layers: view.getUint32(H.layersOffset, true), kvHeads: view.getUint32(H.kvHeadsOffset, true), headDim: view.getUint32(H.headDimOffset, true) };
  const keyBits = buffer[H.keyBitsOffset]!, valueBits = buffer[H.valueBitsOffset]!;
  if (![1, 2, 3, 4].includes(keyBits) || ![1, 2, 3, 4].includes(valueBits)) return undefined;
  return sharedTransformTables(profile, shape, keyBits as SpecBits, valueBits as SpecBits);
}

/** Every key of CompressedKVCacheOptions: others are refused (strict options). */
const CACHE_OPTION_KEYS: readonly (keyof CompressedKVCacheOptions)[] = [
  "layers", "kvHeads", "headDim", "batch", "queryHeads", "preset", "spec", "backend", "seed", "scorerWindow",
  "poolKernel", "budgetTokens", "keyStorage", "ropeTheta", "memoryLimitBytes", "profile",
];
const COMPRESS_OPTION_KEYS: readonly (keyof CompressOptions)[] = ["sequence", "layer", "observedQueries"];
const ATTENTION_OPTION_KEYS = ["sequence", "scale", "positions"] as const;

/** Options of `attention()` (and of `reconstructionAttention()`, which adds its own). */
export interface AttentionOptions {
  /** The sequence of the batch (default 0). */
  sequence?: number;
  /** Logit scale (default 1/sqrt(headDim)). */
  scale?: number;
  /** Position of each query (default: the last nq appended positions); a query sees tokens at or before it. */
  positions?: Int32Array;
}

/** Finite inputs can still overflow the logits (scale · q·k beyond the float range): say so rather than hand back NaN. */
function checkAttentionOutput(out: Float32Array, scale: number): Float32Array {
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i]!)) {
      throw new NexusQuantError("INVALID_DATA", `attention overflowed (scale ${scale} × q·k beyond the float range); use the model's scale (default 1/sqrt(headDim))`, { arg: "options.scale" });
    }
  }
  return out;
}

export interface CacheStats {
  backend: BackendName;
  /** Bytes the cache holds now, by component, from the accounting allocator. */
  bytes: { codes: number; scales: number; positions: number; residual: number; headers: number; scores: number; scratch: number; transform: number; total: number };
  /** What an FP16 cache of every appended token would hold. */
  baselineBytes: number;
  /** baselineBytes / bytes.total (1 when empty). */
  ratio: number;
  tokens: { appended: number; held: number; evicted: number };
}

export interface DenseLayer<T extends Float32Array | Uint16Array = Float32Array | Uint16Array> {
  tokens: number;
  /** [kvHeads, tokens, headDim] */
  keys: T;
  values: T;
  /** [kvHeads, tokens]: each kept token's true position (per head, since heads evict differently). */
  positions: Int32Array;
}

/**
 * The options a cache was created with, every default resolved: `new CompressedKVCache(c.options)`
 * builds a cache of the same format, and `CompressedKVCache.deserialize(c.serialize()).options`
 * equals `c.options` (memoryLimitBytes aside: a limit of the process, not of the data).
 */
export interface ResolvedCacheOptions {
  layers: number;
  kvHeads: number;
  headDim: number;
  batch: number;
  queryHeads: number;
  /** The full spec (the preset's, with any overrides applied). */
  spec: Readonly<CompressionSpec>;
  seed: number;
  scorerWindow: number;
  poolKernel: number;
  /** 0: no budget. */
  budgetTokens: number;
  keyStorage: "as-is" | "unrope";
  /** 0 unless keyStorage is "unrope". */
  ropeTheta: number;
  /** Present when the cache was created with a per-cache limit (not serialized). */
  memoryLimitBytes?: number;
  /**
   * "calibrated" when the cache codes with a profile's transforms (held and serialized with it),
   * "hadamard" otherwise. Rebuilding such a cache from `options` needs the profile passed again.
   */
  transform: "hadamard" | "calibrated";
}

export interface CompressOptions {
  /** Compress one sequence; default all. */
  sequence?: number;
  /** Compress one layer; default all. */
  layer?: number;
  /**
   * Observed scorer (SnapKV): per layer, the observation-window queries of `sequence`, laid out
   * [queryHeads, window, headDim] (the window's queries are the last `window` positions). Layers
   * without queries fall back to key-key.
   */
  observedQueries?: (Float32Array | TfjsTensorLike | null | undefined)[];
}

/**
 * A KV cache held compressed: lattice codes + FP16 scales in paged storage, eviction by the
 * preset's scorer, an FP16 residual window for new tokens, attention computed on the codes.
 * Every byte it holds comes from the accounting allocator and is reported by `stats()`.
 */
export class CompressedKVCache {
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly batch: number;
  readonly queryHeads: number;
  readonly spec: Readonly<CompressionSpec>;
  readonly backend: BackendName;
  readonly budgetTokens: number;
  readonly keyStorage: "as-is" | "unrope";
  readonly ropeTheta: number;
  /** Everything this cache was created with, defaults resolved (see ResolvedCacheOptions). */
  readonly options: Readonly<ResolvedCacheOptions>;
  #handle: NativeCacheHandle | undefined;
  #busy = false;
  /** The compress() in flight (settles, never rejects), for asyncDispose to wait on. */
  #running: Promise<void> | undefined;

  constructor(options: CompressedKVCacheOptions);
  /** @internal `existing`: a native handle from deserialize() that already holds the state. */
  constructor(options: CompressedKVCacheOptions, existing?: NativeCacheHandle);
  constructor(options: CompressedKVCacheOptions, existing?: NativeCacheHandle) {
    checkObject("options", options, "a CompressedKVCacheOptions object");
    checkOptionKeys("options", options, CACHE_OPTION_KEYS);
    const L = FORMAT_LIMITS;
    this.layers = checkInt("options.layers", options.layers, { min: 1, max: L.maxLayers, maxName: "FORMAT_LIMITS.maxLayers" });
    this.kvHeads = checkInt("options.kvHeads", options.kvHeads, { min: 1, max: L.maxHeads, maxName: "FORMAT_LIMITS.maxHeads" });
    this.headDim = checkInt("options.headDim", options.headDim, { min: 8, max: L.maxHeadDim, maxName: "FORMAT_LIMITS.maxHeadDim" });
    if (this.headDim % 8 !== 0) throw invalidArgument("options.headDim", "a multiple of 8 (lattice groups are 8 elements)", this.headDim);
    this.batch = checkInt("options.batch", options.batch ?? 1, { min: 1, max: L.maxBatch, maxName: "FORMAT_LIMITS.maxBatch" });
    this.queryHeads = checkInt("options.queryHeads", options.queryHeads ?? this.kvHeads, { min: 1, max: L.maxHeads, maxName: "FORMAT_LIMITS.maxHeads" });
    if (this.queryHeads % this.kvHeads !== 0) throw invalidArgument("options.queryHeads", `a multiple of kvHeads (${this.kvHeads})`, this.queryHeads);
    // A spec already validated (and no preset to apply under it) is not looked up or checked again.
    const validated = options.preset === undefined && isValidatedSpec(options.spec);
    const base = validated ? undefined : getPreset(options.preset ?? DEFAULT_PRESET).spec;
    if (options.spec !== undefined) checkObject("options.spec", options.spec, "a partial CompressionSpec object");
    this.spec = base === undefined ? (options.spec as Readonly<CompressionSpec>) : specWithOverrides(base, options.spec);
    this.budgetTokens =
      options.budgetTokens === undefined ? 0 : checkInt("options.budgetTokens", options.budgetTokens, { min: 1, max: L.maxSequenceTokens, maxName: "positions are int32" });
    if (this.budgetTokens > 0) {
      if (this.spec.evictFraction === 0) {
        throw invalidArgument("options.budgetTokens", "a spec that evicts (evictFraction > 0), since a budget evicts tokens", this.budgetTokens);
      }
      if (this.budgetTokens < this.spec.sinkTokens + this.spec.recentWindow) {
        throw invalidArgument("options.budgetTokens", `at least sinkTokens + recentWindow (${this.spec.sinkTokens + this.spec.recentWindow})`, this.budgetTokens);
      }
    }
    this.keyStorage = checkOneOf("options.keyStorage", options.keyStorage ?? "as-is", ["as-is", "unrope"] as const, '"as-is" or "unrope"');
    if (this.keyStorage === "unrope") {
      const theta = options.ropeTheta;
      if (typeof theta !== "number" || !Number.isFinite(theta) || theta <= 1) throw invalidArgument("options.ropeTheta", 'the model\'s rope_theta (> 1) with keyStorage "unrope"', theta);
      this.ropeTheta = theta;
    } else {
      this.ropeTheta = 0;
    }
    const seed = checkSeed("options.seed", options.seed ?? 0x5eed);
    const poolKernel = checkInt("options.poolKernel", options.poolKernel ?? SCORER_DEFAULTS.poolKernel, { min: 1, max: L.maxPoolKernel, maxName: "FORMAT_LIMITS.maxPoolKernel" });
    if (poolKernel % 2 === 0) throw invalidArgument("options.poolKernel", "an odd integer", poolKernel);
    const scorerWindow = checkInt("options.scorerWindow", options.scorerWindow ?? SCORER_DEFAULTS.scorerWindow, { min: 1, max: L.maxScorerWindow, maxName: "FORMAT_LIMITS.maxScorerWindow" });
    this.backend = resolveBackend(options.backend ?? "auto");
    const memoryLimitBytes = checkInt("options.memoryLimitBytes", options.memoryLimitBytes ?? 0, { min: 0 }); // 0: no per-cache limit
    // A deserialized cache brings its tables (existing); a new one needs the profile for a 1-bit code.
    if (options.profile === undefined && !existing?.options().transform && (this.spec.keyBits === 1 || this.spec.valueBits === 1)) {
      throw new NexusQuantError(
        "UNSUPPORTED",
        `A 1-bit ${this.spec.keyBits === 1 ? "key" : "value"} code needs a calibrated transform profile (options.profile; \`nexusquant calibrate DIR\`): the flat code has 2, 3 or 4 bits. See docs/transform.md.`,
        { arg: "options.spec" },
      );
    }
    if (options.profile !== undefined) {
      validateProfileOnce(options.profile);
      if (this.keyStorage === "unrope") throw invalidArgument("options.keyStorage", '"as-is" with a profile (its key basis is fitted to keys as stored)', this.keyStorage);
    }
    // Built once per profile and bits, shared by every cache made with them (transform-tables.ts).
    const transform = options.profile === undefined || existing ? undefined : sharedTransformTables(options.profile, this, this.spec.keyBits, this.spec.valueBits);
    this.options = Object.freeze({
      layers: this.layers,
      kvHeads: this.kvHeads,
      headDim: this.headDim,
      batch: this.batch,
      queryHeads: this.queryHeads,
      spec: this.spec,
      seed,
      scorerWindow,
      poolKernel,
      budgetTokens: this.budgetTokens,
      keyStorage: this.keyStorage,
      ropeTheta: this.ropeTheta,
      ...(memoryLimitBytes > 0 ? { memoryLimitBytes } : {}),
      transform: (existing ? existing.options().transform : transform !== undefined) ? "calibrated" : "hadamard",
    });
    if (existing) {
      this.#handle = existing;
      return;
    }
    const Native = native().NativeCache;
    const nativeOptions: NativeCacheOptions & { memoryLimitBytes: number; backend: BackendName } = {
      batch: this.batch,
      layers: this.layers,
      kvHeads: this.kvHeads,
      headDim: this.headDim,
      keyBits: this.spec.keyBits,
      valueBits: this.spec.valueBits,
      evictFraction: this.spec.evictFraction,
      sinkTokens: this.spec.sinkTokens,
      recentWindow: this.spec.recentWindow,
      residualWindow: this.spec.residualWindow,
      pageTokens: this.spec.pageTokens,
      scorer: SCORER_IDS[this.spec.scorer],
      seed,
      scorerWindow,
      poolKernel,
      queryHeads: this.queryHeads,
      budgetTokens: this.budgetTokens,
      ropeTheta: this.ropeTheta,
      memoryLimitBytes,
      backend: this.backend,
      ...(transform ? { transform } : {}),
    };
    this.#handle = callNative(() => new Native(nativeOptions));
  }

  /** The live native handle; the one not-disposed / not-busy guard. */
  #native(): NativeCacheHandle {
    if (!this.#handle) throw new NexusQuantError("DISPOSED", "This CompressedKVCache has been disposed; create a new one.");
    if (this.#busy) throw new NexusQuantError("BUSY", "This CompressedKVCache is busy with compress(); await it before using the cache.");
    return this.#handle;
  }

  get disposed(): boolean {
    return this.#handle === undefined;
  }

  /**
   * Appends tokens of one sequence to one layer. keys and values are [kvHeads, tokens, headDim], both
   * Float32Array or both Uint16Array (FP16 bits). Bad data (NaN/Inf, beyond FP16 range) is refused
   * and leaves the cache unchanged.
   */
  append(layer: number, keysIn: KVData | TfjsTensorLike, valuesIn: KVData | TfjsTensorLike, options: { sequence?: number } = {}): void {
    const h = this.#native();
    checkOptionKeys("options", checkObject("options", options), ["sequence"]);
    const keys = fromTensor("keys", keysIn);
    const values = fromTensor("values", valuesIn);
    checkIndex("layer", layer, this.layers);
    const seq = checkIndex("options.sequence", options.sequence ?? 0, this.batch);
    checkKVData("keys", keys);
    checkKVData("values", values);
    if (keys.constructor !== values.constructor) throw invalidArgument("values", `the same type as keys (${keys.constructor.name})`, values);
    if (keys.length !== values.length) throw invalidArgument("values.length", `keys.length (${keys.length})`, values.length);
    const row = this.kvHeads * this.headDim;
    if (keys.length % row !== 0) {
      throw invalidArgument("keys.length", `a multiple of kvHeads × headDim = ${row} (layout [kvHeads, tokens, headDim])`, keys.length);
    }
    callNative(() => h.append(seq, layer, keys, values, keys.length / row));
  }

  /** Applies the spec (score → evict → quantize) to the given sequence, or all; runs off the event loop. */
  async compress(options: CompressOptions = {}): Promise<void> {
    const h = this.#native();
    checkOptionKeys("options", checkObject("options", options), COMPRESS_OPTION_KEYS);
    const seqs = this.#compressTargets(options);
    const [observed, window] = this.#observed(options);
    const layer = this.#compressLayer(options);
    this.#busy = true;
    const run = (async () => {
      for (const seq of seqs) await awaitNative(h.compressAsync(seq, layer, observed, this.queryHeads, window));
    })();
    this.#running = run.then(
      () => undefined,
      () => undefined,
    );
    try {
      await run;
    } finally {
      this.#busy = false;
      this.#running = undefined;
    }
  }

  /** compress() on the calling thread, for small caches and tests. */
  compressSync(options: CompressOptions = {}): void {
    const h = this.#native();
    checkOptionKeys("options", checkObject("options", options), COMPRESS_OPTION_KEYS);
    const [observed, window] = this.#observed(options);
    const layer = this.#compressLayer(options);
    for (const seq of this.#compressTargets(options)) callNative(() => h.compress(seq, layer, observed, this.queryHeads, window));
  }

  #compressLayer(options: CompressOptions): number {
    return options.layer === undefined ? -1 : checkIndex("options.layer", options.layer, this.layers);
  }

  #compressTargets(options: CompressOptions): number[] {
    if (options.sequence !== undefined) return [checkIndex("options.sequence", options.sequence, this.batch)];
    if (options.observedQueries !== undefined && this.batch > 1) {
      throw invalidArgument("options.sequence", "a sequence index when observedQueries are given (they belong to one sequence)", undefined);
    }
    return Array.from({ length: this.batch }, (_, i) => i);
  }

  #observed(options: CompressOptions): [(Float32Array | null)[] | undefined, number] {
    if (options.observedQueries === undefined) return [undefined, 0];
    if (!Array.isArray(options.observedQueries)) throw invalidArgument("options.observedQueries", "an array with one entry per layer", options.observedQueries);
    let window = 0;
    const list = options.observedQueries.map((qIn, layer) => {
      if (qIn === null || qIn === undefined) return null;
      const q = fromTensor(`options.observedQueries[${layer}]`, qIn);
      checkFloat32(`options.observedQueries[${layer}]`, q);
      checkFinite(`options.observedQueries[${layer}]`, q);
      const per = this.queryHeads * this.headDim;
      if (q.length % per !== 0) throw invalidArgument(`options.observedQueries[${layer}].length`, `a multiple of queryHeads × headDim = ${per}`, q.length);
      const w = q.length / per;
      if (window !== 0 && w !== window) throw invalidArgument(`options.observedQueries[${layer}]`, `the same window (${window}) as the other layers`, w);
      window = w;
      return q;
    });
    return [list, window];
  }

  /**
   * Softmax attention of `queries` ([queryHeads, nq, headDim]) over everything the sequence holds in
   * this layer, computed on the codes. Query j sits at positions[j] (default: the last nq appended
   * positions) and sees tokens at or before it. Returns [queryHeads, nq, headDim].
   */
  attention(layer: number, queriesIn: Float32Array | TfjsTensorLike, options: AttentionOptions = {}): Float32Array {
    const h = this.#native();
    checkOptionKeys("options", checkObject("options", options), ATTENTION_OPTION_KEYS);
    const { seq, queries, nq, scale, positions } = this.#attentionArgs(layer, queriesIn, options);
    return checkAttentionOutput(callNative(() => h.attention(seq, layer, queries, this.queryHeads, nq, positions, scale)), scale);
  }

  /**
   * The re-read pass of the `reconstruct` scorer (KVzip-style, query-agnostic): the queries of a
   * teacher-forced re-read of recent context attend to what the sequence holds in this layer plus
   * the re-read's own `keys`/`values` ([kvHeads, nq, headDim] at `options.positions`, which are
   * required: the re-read sits after the context). Those are attended causally and never stored.
   * Each held token's score becomes the highest attention probability any of these queries (over its
   * KV head's query heads) gives it, or stays higher if an earlier pass gave more; the next
   * `compress()` evicts by these scores. With `recentTokens: n` only the sinks and the last n held
   * tokens are attended (the re-read of a chunk just appended: work bounded by the chunk); default:
   * every held token. Returns the attention output like `attention()`, so the re-read can go on to
   * the next layer. Needs a cache whose scorer is "reconstruct"; tokens appended after the last pass
   * make the next `compress()` fall back to key-key scores.
   */
  reconstructionAttention(
    layer: number,
    queriesIn: Float32Array | TfjsTensorLike,
    keys: Float32Array,
    values: Float32Array,
    options: AttentionOptions & { positions: Int32Array; recentTokens?: number },
  ): Float32Array {
    const h = this.#native();
    checkOptionKeys("options", checkObject("options", options), [...ATTENTION_OPTION_KEYS, "recentTokens"]);
    if (this.options.spec.scorer !== "reconstruct") {
      throw invalidArgument("this cache's scorer", '"reconstruct" (a reconstruction pass scores tokens for that scorer only)', this.options.spec.scorer);
    }
    if (options.positions === undefined) throw invalidArgument("options.positions", "the positions of the re-read's queries (an Int32Array)", undefined);
    const { seq, queries, nq, scale, positions } = this.#attentionArgs(layer, queriesIn, options);
    const per = this.kvHeads * nq * this.headDim;
    for (const [name, a] of [["keys", keys], ["values", values]] as const) {
      checkFloat32(name, a);
      if (a.length !== per) throw invalidArgument(`${name}.length`, `kvHeads × nq × headDim = ${per} ([kvHeads, nq, headDim] at the query positions)`, a.length);
      checkFinite(name, a);
    }
    const recent = checkInt("options.recentTokens", options.recentTokens ?? 0, { min: 0, max: FORMAT_LIMITS.maxSequenceTokens, maxName: "positions are int32" });
    return checkAttentionOutput(callNative(() => h.reconstructionAttention(seq, layer, queries, this.queryHeads, nq, positions!, scale, keys, values, recent)), scale);
  }

  /**
   * After a reconstruction pass through the first `sourceLayers` layers only (a re-read that stops
   * early costs less): every held token of the layers the re-read did not reach, in every head, takes
   * the highest score any head of the re-read layers gives it (keeping a higher score it had), and
   * their scores count as current for the next `compress()`. The re-read layers keep their own.
   */
  shareScores(sourceLayers: number, options: { sequence?: number } = {}): void {
    const h = this.#native();
    checkOptionKeys("options", checkObject("options", options), ["sequence"]);
    const seq = checkIndex("options.sequence", options.sequence ?? 0, this.batch);
    checkInt("sourceLayers", sourceLayers, { min: 1, max: this.layers, maxName: "the cache's layers" });
    if (this.options.spec.scorer !== "reconstruct") {
      throw invalidArgument("this cache's scorer", '"reconstruct" (shared scores are reconstruction scores)', this.options.spec.scorer);
    }
    callNative(() => h.shareScores(seq, sourceLayers));
  }

  /** The checks every attention call shares: layer, sequence, queries [queryHeads, nq, headDim], scale, positions. */
  #attentionArgs(layer: number, queriesIn: Float32Array | TfjsTensorLike, options: AttentionOptions) {
    const queries = fromTensor("queries", queriesIn);
    checkIndex("layer", layer, this.layers);
    const seq = checkIndex("options.sequence", options.sequence ?? 0, this.batch);
    checkFloat32("queries", queries);
    const per = this.queryHeads * this.headDim;
    if (queries.length % per !== 0) throw invalidArgument("queries.length", `a multiple of queryHeads × headDim = ${per}`, queries.length);
    const nq = queries.length / per;
    checkFinite("queries", queries);
    const scale = checkFiniteNumber("options.scale", options.scale ?? 1 / Math.sqrt(this.headDim));
    let positions: Int32Array | null = null;
    if (options.positions !== undefined) {
      if (!(options.positions instanceof Int32Array) || options.positions.length !== nq) {
        throw invalidArgument("options.positions", `an Int32Array of length ${nq}`, options.positions);
      }
      positions = options.positions;
    }
    return { seq, queries, nq, scale, positions };
  }

  /** Dense K/V of one layer and sequence (dequantized codes + the residual), for runtimes that need dense past tensors. */
  materialize(layer: number, options?: { sequence?: number; dtype?: "f32" }): DenseLayer<Float32Array>;
  materialize(layer: number, options: { sequence?: number; dtype: "f16" }): DenseLayer<Uint16Array>;
  materialize(layer: number, options: { sequence?: number; dtype?: "f32" | "f16" } = {}): DenseLayer {
    const h = this.#native();
    checkOptionKeys("options", checkObject("options", options), ["sequence", "dtype"]);
    checkIndex("layer", layer, this.layers);
    const seq = checkIndex("options.sequence", options.sequence ?? 0, this.batch);
    const dtype = checkOneOf("options.dtype", options.dtype ?? "f32", ["f32", "f16"] as const, '"f32" or "f16"');
    return callNative(() => h.materialize(seq, layer, dtype === "f16"));
  }

  /**
   * Token counts of one sequence and layer: held now, ever appended, and how many of those are compressed
   * (on pages; a store too short for a page to pay keeps its tokens in FP16 after compress(): 0 then).
   */
  tokens(layer = 0, sequence = 0): { held: number; appended: number; compressed: number; evicted: number } {
    const h = this.#native();
    const c = callNative(() => h.counts(checkIndex("sequence", sequence, this.batch), checkIndex("layer", layer, this.layers)));
    return { held: c.tokens, appended: c.appended, compressed: c.compressedTokens, evicted: c.appended - c.tokens };
  }

  stats(): CacheStats {
    const h = this.#native();
    const bytes = callNative(() => h.bytes());
    let appended = 0;
    let held = 0;
    for (let s = 0; s < this.batch; s++) {
      for (let l = 0; l < this.layers; l++) {
        const c = h.counts(s, l);
        appended += c.appended;
        held += c.tokens;
      }
    }
    const baselineBytes = appended * fp16BytesPerTokenLayer(this.kvHeads, this.headDim);
    return {
      backend: this.backend,
      bytes,
      baselineBytes,
      ratio: bytes.total === 0 ? 1 : baselineBytes / bytes.total,
      tokens: { appended, held, evicted: appended - held },
    };
  }

  /** A self-contained copy of the cache: version, options, codes, residual, CRC32. */
  serialize(): Uint8Array {
    const h = this.#native();
    return callNative(() => h.serialize());
  }

  /**
   * Rebuilds a cache from serialize()'s bytes; corrupted or truncated input is a CORRUPT_DATA error.
   * The result's `options` are the options the original was created with (read from the header). A
   * cache coded with a transform profile records which tables it was coded with, not the tables:
   * load it with `{ profile }`, the same profile (PROFILE_MISMATCH without it or with another).
   */
  static deserialize(buffer: Uint8Array, options: { profile?: TransformProfile } = {}): CompressedKVCache {
    if (!(buffer instanceof Uint8Array)) throw invalidArgument("buffer", "a Uint8Array", buffer);
    checkObject("options", options);
    checkOptionKeys("options", options, ["profile"]);
    const transform = options.profile === undefined ? undefined : serializedTransform(buffer, options.profile);
    const Native = native().NativeCache;
    const handle = callNative(() => Native.deserialize(buffer, undefined, transform));
    try {
      return CompressedKVCache.#fromHandle(handle);
    } catch (e) {
      // The native reader checks what the TS constructor checks; should they ever disagree, corrupt
      // input is still CORRUPT_DATA (one code for it), and the handle's bytes are freed now.
      handle.dispose();
      if (e instanceof NexusQuantError && e.code === "INVALID_ARGUMENT") {
        throw new NexusQuantError("CORRUPT_DATA", `Not a valid serialized CompressedKVCache: ${e.message}`, e.details);
      }
      throw e;
    }
  }

  static #fromHandle(handle: NativeCacheHandle): CompressedKVCache {
    // The native reader returns the options from the header it checked (kernels/nq_format.h
    // SerializedCacheHeader); the constructor re-checks them against src/format.
    const o = handle.options();
    const scorer = scorerFromId(o.scorer);
    if (scorer === undefined) throw new NexusQuantError("CORRUPT_DATA", `Not a valid serialized CompressedKVCache: unknown scorer id ${o.scorer}`);
    const options: CompressedKVCacheOptions = {
      batch: o.batch,
      layers: o.layers,
      kvHeads: o.kvHeads,
      headDim: o.headDim,
      queryHeads: o.queryHeads,
      spec: {
        keyBits: o.keyBits as SpecBits,
        valueBits: o.valueBits as SpecBits,
        scorer,
        evictFraction: o.evictFraction,
        sinkTokens: o.sinkTokens,
        recentWindow: o.recentWindow,
        residualWindow: o.residualWindow,
        pageTokens: o.pageTokens,
      },
      seed: o.seed,
      scorerWindow: o.scorerWindow,
      poolKernel: o.poolKernel,
      backend: "cpu",
      ...(o.budgetTokens > 0 ? { budgetTokens: o.budgetTokens } : {}),
      ...(o.ropeTheta > 0 ? { keyStorage: "unrope" as const, ropeTheta: o.ropeTheta } : {}),
    };
    return new CompressedKVCache(options, handle);
  }

  /** Frees every byte the cache holds. Further use is a DISPOSED error; disposing twice is fine. */
  dispose(): void {
    if (this.#busy) throw new NexusQuantError("BUSY", "Cannot dispose while compress() is running; await it first.");
    this.#handle?.dispose();
    this.#handle = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** `await using cache = ...`: waits for a compress() in flight, then disposes. */
  async [Symbol.asyncDispose](): Promise<void> {
    while (this.#running) await this.#running;
    this.dispose();
  }
}
