/**
 * One conversation's KV cache, for every wrapper: the ORT-session state (kv-state.ts), the
 * transformers.js hook (through that state), the native step engine (native-model.ts) and the
 * quality harness. It owns what they used to build each on its own:
 *
 * - the CompressedKVCache, built from the spec resolveOptions decided (or none: see below);
 * - the true length of every row (the position its next token gets; eviction does not change it);
 * - the compress schedule (a prompt chunk at once, decode tokens every `compressEvery`);
 * - `compress()`, and the stats record (KvStats) every handle reports.
 *
 * Preset "none" (spec null) is a conversation that is never compressed. Its K/V live either in a
 * CompressedKVCache that only ever holds them in its FP16 residual (the native path, whose attention
 * reads the cache; `store: "cache"`), or with the caller (the ORT pass-through feeds the model's own
 * present back unchanged; `store: "caller"`, no cache at all).
 *
 * What a later save/resume needs is exposed, not built: `snapshot()` (spec, true lengths, schedule
 * position, counters) next to `cache.serialize()`, and `ConversationCache.resume(cache, snapshot)`
 * builds a conversation around an existing (e.g. deserialized) cache.
 */
import { invalidArgument } from "../errors.js";
import { DEFAULT_SPEC, fp16BytesPerTokenLayer, validateSpec, type CompressionSpec } from "../format/index.js";
import { CompressedKVCache, type BackendName } from "../runtime/index.js";
import type { ResolvedOptions } from "./options.js";

/** The shape of a conversation: the model's K/V heads and the rows (independent sequences). */
export interface ConversationShape {
  layers: number;
  kvHeads: number;
  headDim: number;
  /** Rows of the conversation. */
  batch: number;
  /** Query heads, for attention and the observed scorer's queries (default kvHeads). */
  queryHeads?: number;
}

/** The parts of withNexusQuant's resolved options a conversation is made from. */
export type ConversationOptions = Pick<ResolvedOptions, "preset" | "spec" | "backend" | "compressEvery" | "seed"> &
  Partial<Pick<ResolvedOptions, "memoryLimitBytes" | "profile">>;

/**
 * Where a conversation that is never compressed (spec null) keeps its K/V: "cache", in a
 * CompressedKVCache as FP16 (the native path); "caller", outside (the ORT pass-through), so no cache.
 */
export type UncompressedStore = "cache" | "caller";

/** What a compression may get beyond the cache itself. */
export interface CompressExtras {
  /**
   * Observed scorer (SnapKV): per row, per layer, the last queries [queryHeads, window, headDim]. A
   * runtime that can read the model's queries passes them (the quality harness does); without them
   * the cache falls back to key-key.
   */
  observedQueries?: readonly (readonly Float32Array[] | undefined)[];
}

/** What `stats()` reports. Token counts are per sequence position (not multiplied by layers). */
export interface KvStats {
  preset: string;
  /** "none" when no cache holds the K/V (the ORT pass-through), else where the cache lives. */
  backend: BackendName | "none";
  /** Tokens of text the conversation holds, summed over rows (the true length; padding excluded). */
  tokens: number;
  /** Tokens still held after eviction, summed over rows. */
  heldTokens: number;
  tokensEvicted: number;
  /** What an FP16 cache of every token would hold: tokens × layers × kvHeads × headDim × 2 (K, V) × 2 bytes. */
  baselineKvBytes: number;
  /** Bytes the cache holds, measured by its accounting allocator (= baseline when no cache holds them). */
  compressedKvBytes: number;
  ratio: number;
  /** Bytes of dense K/V arrays the wrapper holds between steps (the pass-through cache, or the denseMirror; else 0). */
  denseKvBytes: number;
  compressions: number;
  compressSeconds: number;
}

/** The stats of a wrapper that has not run a step yet (no tokens, so no shape is needed). */
export function emptyKvStats(preset: string): KvStats {
  return uncompressedKvStats(preset, { layers: 0, kvHeads: 0, headDim: 0 }, 0, 0);
}

/**
 * The stats of K/V held uncompressed outside any cache (the ORT and transformers.js pass-through):
 * the FP16 baseline counts as what is held, ratio 1.
 */
export function uncompressedKvStats(preset: string, shape: Pick<ConversationShape, "layers" | "kvHeads" | "headDim">, tokens: number, denseKvBytes: number): KvStats {
  const baseline = tokens * shape.layers * fp16BytesPerTokenLayer(shape.kvHeads, shape.headDim);
  return {
    preset,
    backend: "none",
    tokens,
    heldTokens: tokens,
    tokensEvicted: 0,
    baselineKvBytes: baseline,
    compressedKvBytes: baseline,
    ratio: 1,
    denseKvBytes,
    compressions: 0,
    compressSeconds: 0,
  };
}

/** Where a compress schedule stands: the interval, and the decode tokens counted since the last compression. */
export interface ScheduleSnapshot {
  every: number;
  since: number;
}

/**
 * When a conversation compresses: a prompt chunk (more than one token) at once, since that is where
 * the bulk of the memory arrives, and the first step of a conversation whatever its size (from then
 * on the cache holds no more than FP16: format fitsFp16); decode tokens wait in the FP16 residual
 * window until `every` of them have accumulated. One definition, so every state that compresses (the
 * quality harness's scalar baselines too) does it at the same moments.
 */
export class CompressSchedule {
  #since: number;
  #first: boolean;

  /** A new conversation's schedule; with `since`, a resumed one's (its first step is long past). */
  constructor(
    readonly every: number,
    since?: number,
  ) {
    this.#since = since ?? 0;
    this.#first = since === undefined;
  }

  /** Counts a step of `n` tokens; true when the state should compress now. */
  due(n: number): boolean {
    if (n !== 1 || this.#first) {
      this.#first = false;
      return true;
    }
    this.#since += 1;
    return this.#since >= this.every;
  }

  /** A compression happened: the decode-token count starts again. */
  restart(): void {
    this.#since = 0;
    this.#first = false;
  }

  snapshot(): ScheduleSnapshot {
    return { every: this.every, since: this.#since };
  }
}

/** Everything besides the cache's own bytes (cache.serialize()) that resuming a conversation needs. */
export interface ConversationSnapshot {
  preset: string;
  /** null: never compressed ("none"). */
  spec: Readonly<CompressionSpec> | null;
  /** True length of each row. */
  lengths: number[];
  schedule: ScheduleSnapshot;
  compressions: number;
}

/**
 * The CompressedKVCache of a conversation that is never compressed (preset "none" on the native path).
 * The cache's format needs a spec, but this one is never applied: compress() is never called, so
 * every token stays in the FP16 residual, which grows with them (at most 1.25× their bytes) and is
 * never quantized or evicted. The format's defaults (no eviction), not any preset's.
 */
const FP16_STORE_SPEC = validateSpec({ ...DEFAULT_SPEC });

export class ConversationCache {
  readonly shape: Readonly<ConversationShape>;
  /** The preset name, as stats report it. */
  readonly preset: string;
  /** The spec compress() applies; null when the conversation is never compressed. */
  readonly spec: Readonly<CompressionSpec> | null;
  /** The cache holding the K/V; undefined when the caller holds them ("none" with store "caller"). */
  readonly cache: CompressedKVCache | undefined;
  readonly #lengths: number[];
  readonly #schedule: CompressSchedule;
  #compressions: number;
  #compressSeconds = 0;

  private constructor(shape: ConversationShape, preset: string, spec: Readonly<CompressionSpec> | null, cache: CompressedKVCache | undefined, lengths: number[], schedule: CompressSchedule, compressions: number) {
    const { layers, kvHeads, headDim, batch, queryHeads } = shape;
    this.shape = Object.freeze({ layers, kvHeads, headDim, batch, ...(queryHeads !== undefined ? { queryHeads } : {}) });
    this.preset = preset;
    this.spec = spec;
    this.cache = cache;
    this.#lengths = lengths;
    this.#schedule = schedule;
    this.#compressions = compressions;
  }

  /** A new, empty conversation of `shape` with the resolved options' spec (or none). */
  static create(shape: ConversationShape, options: ConversationOptions, store: UncompressedStore = "cache"): ConversationCache {
    const cache =
      options.spec === null && store === "caller"
        ? undefined
        : new CompressedKVCache({
            layers: shape.layers,
            kvHeads: shape.kvHeads,
            headDim: shape.headDim,
            batch: shape.batch,
            ...(shape.queryHeads !== undefined ? { queryHeads: shape.queryHeads } : {}),
            // A validated spec: the cache takes it as it is (no second lookup or validation).
            spec: options.spec ?? FP16_STORE_SPEC,
            backend: options.backend,
            ...(options.seed !== undefined ? { seed: options.seed } : {}),
            ...(options.memoryLimitBytes ? { memoryLimitBytes: options.memoryLimitBytes } : {}),
            // A profile codes compressed K/V; "none" keeps FP16 and has nothing to transform.
            ...(options.spec !== null && typeof options.profile === "object" ? { profile: options.profile } : {}),
          });
    return new ConversationCache(shape, options.preset, options.spec, cache, new Array<number>(shape.batch).fill(0), new CompressSchedule(options.compressEvery), 0);
  }

  /**
   * A conversation around an existing cache (e.g. CompressedKVCache.deserialize of a saved one), at
   * the point `snapshot` describes. The conversation owns the cache from now on (dispose() frees it).
   * A snapshot that does not fit the cache (rows, lengths, spec) is an INVALID_ARGUMENT error.
   */
  static resume(cache: CompressedKVCache, snapshot: ConversationSnapshot): ConversationCache {
    if (!(cache instanceof CompressedKVCache)) throw invalidArgument("cache", "a CompressedKVCache", cache);
    const { lengths, schedule, spec } = snapshot;
    if (!Array.isArray(lengths) || lengths.length !== cache.batch) throw invalidArgument("snapshot.lengths", `one true length per row of the cache (${cache.batch})`, lengths);
    lengths.forEach((n, b) => {
      // The wrappers append exactly the true tokens of a row to every layer.
      const appended = cache.tokens(0, b).appended;
      if (n !== appended) throw invalidArgument(`snapshot.lengths[${b}]`, `the tokens row ${b} of the cache holds (${appended})`, n);
    });
    if (spec !== null && (Object.keys(cache.spec) as (keyof CompressionSpec)[]).some((k) => cache.spec[k] !== spec[k])) {
      throw invalidArgument("snapshot.spec", `the cache's spec ${JSON.stringify(cache.spec)}`, spec);
    }
    if (!Number.isSafeInteger(schedule?.every) || schedule.every < 1 || !Number.isSafeInteger(schedule.since) || schedule.since < 0) {
      throw invalidArgument("snapshot.schedule", "{ every ≥ 1, since ≥ 0 } (integers)", schedule);
    }
    const shape = { layers: cache.layers, kvHeads: cache.kvHeads, headDim: cache.headDim, batch: cache.batch, queryHeads: cache.queryHeads };
    return new ConversationCache(shape, snapshot.preset, spec === null ? null : cache.spec, cache, [...lengths], new CompressSchedule(schedule.every, schedule.since), snapshot.compressions);
  }

  /** True length of a row: the position its next token gets. */
  length(row: number): number {
    return this.#lengths[row]!;
  }

  /** True tokens of every row together. */
  get tokens(): number {
    return this.#lengths.reduce((a, b) => a + b, 0);
  }

  /** Row `row` took `count` more tokens (appended to every layer of the cache, or held by the caller). */
  advance(row: number, count: number): void {
    this.#lengths[row] = this.#lengths[row]! + count;
  }

  /** Counts a step of `n` tokens; true when the schedule says to compress now. */
  due(n: number): boolean {
    return this.#schedule.due(n);
  }

  /** Counts a step of `n` tokens and compresses when the schedule says so. Returns the seconds spent compressing. */
  async compressIfDue(n: number, extras?: CompressExtras): Promise<number> {
    return this.due(n) ? this.compress(extras) : 0;
  }

  /**
   * Compresses every row that holds tokens now and restarts the decode-token count; a no-op for a
   * conversation that is never compressed. Returns the seconds spent.
   */
  async compress(extras?: CompressExtras): Promise<number> {
    const cache = this.cache;
    if (this.spec === null || cache === undefined) {
      this.#schedule.restart(); // "none": FP16, no eviction, ever
      return 0;
    }
    const start = performance.now();
    for (let b = 0; b < this.shape.batch; b++) {
      const observedQueries = extras?.observedQueries?.[b];
      if (this.#lengths[b]! > 0) await cache.compress({ sequence: b, ...(observedQueries !== undefined ? { observedQueries: [...observedQueries] } : {}) });
    }
    const seconds = (performance.now() - start) / 1000;
    this.#compressSeconds += seconds;
    this.#compressions += 1;
    this.#schedule.restart();
    return seconds;
  }

  /** The conversation's memory; `denseKvBytes`: dense K/V the wrapper holds beside the cache. */
  stats(denseKvBytes = 0): KvStats {
    const tokens = this.tokens;
    const cache = this.cache;
    if (cache === undefined) return uncompressedKvStats(this.preset, this.shape, tokens, denseKvBytes);
    const s = cache.stats();
    let held = 0;
    for (let b = 0; b < this.shape.batch; b++) held += cache.tokens(0, b).held;
    return {
      preset: this.preset,
      backend: s.backend,
      tokens,
      heldTokens: held,
      tokensEvicted: tokens - held,
      baselineKvBytes: s.baselineBytes,
      compressedKvBytes: s.bytes.total,
      ratio: s.ratio,
      denseKvBytes,
      compressions: this.#compressions,
      compressSeconds: this.#compressSeconds,
    };
  }

  /** Where the conversation stands, besides the cache's bytes: what resume() takes back. */
  snapshot(): ConversationSnapshot {
    return { preset: this.preset, spec: this.spec, lengths: [...this.#lengths], schedule: this.#schedule.snapshot(), compressions: this.#compressions };
  }

  /** Frees the cache. */
  dispose(): void {
    this.cache?.dispose();
  }
}

/** A step's rows must match the rows of the conversation held (`held`; undefined: none yet): the check every engine makes. */
export function checkConversationRows(held: number | undefined, rows: number): void {
  if (held !== undefined && rows !== held) {
    throw invalidArgument("rows.length", `the batch size of this conversation (${held}); call reset() to start one of another size`, rows);
  }
}
