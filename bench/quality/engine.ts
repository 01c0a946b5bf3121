/**
 * The decode loop the harness measures with: an onnxruntime-node session of the model (FP16 K/V in
 * and out, so the uncompressed baseline is a true FP16 cache), one prefill shared by every cache
 * variant, then one token per step through either a dense FP16 cache (preset "none") or a
 * CompressedKVCache.
 *
 * It follows withNexusQuant's ORT path step for step (materialized past, an all-ones mask of held +
 * new slots, true position_ids, compression after the prompt and every `compressEvery` decode tokens;
 * a test checks the logits agree with it) and adds one thing the wrapper cannot do: it feeds the
 * observed scorer the model's own queries, read from extra graph outputs (queries.ts).
 */
import { NexusQuantError } from "../../src/errors.js";
import type { CompressionSpec } from "../../src/format/index.js";
import { fp16BytesPerTokenLayer } from "../../src/format/index.js";
import { buildLlamaOnnx, type LlamaConfig, type LlamaModel } from "../../src/model/index.js";
import { CompressedKVCache, halfBitsToFloats, type BackendName } from "../../src/runtime/index.js";
import { exposeQueries, lastQueries, queryOutputName } from "./queries.js";

type Ort = typeof import("onnxruntime-node");
type OrtTensor = import("onnxruntime-node").Tensor;

/** SnapKV's observation window: the last 32 queries, the cache's default scorer window. */
export const OBSERVED_WINDOW = 32;

/** The result of running a prompt once; every variant starts from it. */
export interface Prefill {
  length: number;
  /** Per layer, [kvHeads, length, headDim] FP16 bits (what the model's present holds). */
  keys: Uint16Array[];
  values: Uint16Array[];
  /** Logits of the last prompt position (they predict the first token after the prompt). */
  lastLogits: Float32Array;
  /** Per layer, the last min(OBSERVED_WINDOW, length) queries [queryHeads, w, headDim]; null without query outputs. */
  queries: Float32Array[] | null;
}

/** How one variant holds the cache. `preset: "none"` is the dense FP16 baseline. */
export interface CacheSetup {
  preset: string;
  spec?: Partial<CompressionSpec>;
  compressEvery: number;
  seed?: number;
}

export interface RunStats {
  backend: BackendName | "none";
  tokens: number;
  heldTokens: number;
  baselineBytes: number;
  bytes: number;
  /** baselineBytes / bytes, from the cache's accounting allocator (1 for the dense baseline). */
  ratio: number;
  compressions: number;
  /** True when the observed scorer got the model's queries at every compression. */
  observedQueries: boolean;
}

/** One conversation continuing from a prefill. */
export interface KvRun {
  /** Feeds one token at the next true position; returns the logits that predict the token after it. */
  step(token: number): Promise<Float32Array>;
  stats(): RunStats;
  dispose(): void;
}

export class QualityEngine {
  readonly config: LlamaConfig;
  /** Output names of the queries per layer, or null when the graph does not give them. */
  readonly queryOutputs: string[] | null;
  /** Why queryOutputs is null ("" otherwise). */
  readonly queryNote: string;
  readonly #ort: Ort;
  readonly #session: import("onnxruntime-node").InferenceSession;
  readonly #kvOutputs: string[];

  private constructor(ort: Ort, session: import("onnxruntime-node").InferenceSession, config: LlamaConfig, queryOutputs: string[] | null, queryNote: string) {
    this.#ort = ort;
    this.#session = session;
    this.config = config;
    this.queryOutputs = queryOutputs;
    this.queryNote = queryNote;
    this.#kvOutputs = ["logits"];
    for (let l = 0; l < config.numLayers; l++) this.#kvOutputs.push(`present.${l}.key`, `present.${l}.value`);
  }

  static async create(model: LlamaModel, options: { exposeQueries?: boolean } = {}): Promise<QualityEngine> {
    const ort = await loadOrt();
    const built = buildLlamaOnnx({ ...model, dtype: "f16" });
    const exposure = options.exposeQueries === false ? { onnx: built, outputs: null, reason: "query outputs disabled" } : exposeQueries(built, model.config.numLayers);
    const session = await ort.InferenceSession.create(exposure.onnx);
    return new QualityEngine(ort, session, model.config, exposure.outputs, exposure.reason);
  }

  /** Runs `ids` from position 0 with an empty cache. */
  async prefill(ids: readonly number[]): Promise<Prefill> {
    const { numLayers, headDim, numHeads } = this.config;
    const n = ids.length;
    if (n === 0) throw new NexusQuantError("INVALID_ARGUMENT", "prefill needs at least one token", { arg: "ids" });
    const empty = Array.from({ length: numLayers }, () => new Uint16Array(0));
    const out = await this.#run(ids, 0, empty, empty, true);
    const keys: Uint16Array[] = [];
    const values: Uint16Array[] = [];
    for (let l = 0; l < numLayers; l++) {
      // [1, kvHeads, n, headDim] is already [kvHeads, n, headDim].
      keys.push(out[`present.${l}.key`]!.data as Uint16Array);
      values.push(out[`present.${l}.value`]!.data as Uint16Array);
    }
    const logits = halfBitsToFloats(out.logits!.data as Uint16Array);
    const vocab = this.config.vocabSize;
    const queries = this.queryOutputs?.map((name) => lastQueries(out[name]!.data as Float32Array, numHeads, n, headDim, OBSERVED_WINDOW)) ?? null;
    return { length: n, keys, values, lastLogits: logits.slice((n - 1) * vocab, n * vocab), queries };
  }

  /** A conversation that continues `prefill` with the given cache. */
  async startRun(prefill: Prefill, setup: CacheSetup): Promise<KvRun> {
    if (setup.preset === "none") return new DenseRun(this, prefill);
    const run = new CompressedRun(this, prefill, setup);
    await run.compressPrompt();
    return run;
  }

  /** @internal one session call: `ids` at positions start.., past [kvHeads, slots, headDim] per layer. */
  async #run(ids: readonly number[], start: number, keys: Uint16Array[], values: Uint16Array[], withQueries: boolean): Promise<Record<string, OrtTensor>> {
    const { Tensor } = this.#ort;
    const { numLayers, numKvHeads, headDim } = this.config;
    const n = ids.length;
    const slots = keys[0]!.length / (numKvHeads * headDim);
    const feeds: Record<string, OrtTensor> = {
      input_ids: new Tensor("int64", BigInt64Array.from(ids, BigInt), [1, n]),
      // Every held slot and every new token is visible; eviction shortened the past, not the mask.
      attention_mask: new Tensor("int64", new BigInt64Array(slots + n).fill(1n), [1, slots + n]),
      position_ids: new Tensor("int64", BigInt64Array.from({ length: n }, (_, j) => BigInt(start + j)), [1, n]),
    };
    for (let l = 0; l < numLayers; l++) {
      feeds[`past_key_values.${l}.key`] = new Tensor("float16", keys[l]!, [1, numKvHeads, slots, headDim]);
      feeds[`past_key_values.${l}.value`] = new Tensor("float16", values[l]!, [1, numKvHeads, slots, headDim]);
    }
    const fetches = withQueries && this.queryOutputs !== null ? [...this.#kvOutputs, ...this.queryOutputs] : this.#kvOutputs;
    return this.#session.run(feeds, fetches);
  }

  /** @internal used by the runs. */
  runStep = (token: number, position: number, keys: Uint16Array[], values: Uint16Array[], withQueries: boolean) => this.#run([token], position, keys, values, withQueries);

  async dispose(): Promise<void> {
    await this.#session.release();
  }
}

/** The uncompressed baseline: present fed back as the next past, exactly an unwrapped decode loop. */
class DenseRun implements KvRun {
  #keys: Uint16Array[];
  #values: Uint16Array[];
  #length: number;

  constructor(
    private readonly engine: QualityEngine,
    prefill: Prefill,
  ) {
    this.#keys = prefill.keys;
    this.#values = prefill.values;
    this.#length = prefill.length;
  }

  async step(token: number): Promise<Float32Array> {
    const out = await this.engine.runStep(token, this.#length, this.#keys, this.#values, false);
    const layers = this.engine.config.numLayers;
    this.#keys = Array.from({ length: layers }, (_, l) => out[`present.${l}.key`]!.data as Uint16Array);
    this.#values = Array.from({ length: layers }, (_, l) => out[`present.${l}.value`]!.data as Uint16Array);
    this.#length += 1;
    return halfBitsToFloats(out.logits!.data as Uint16Array);
  }

  stats(): RunStats {
    const c = this.engine.config;
    const bytes = this.#length * c.numLayers * fp16BytesPerTokenLayer(c.numKvHeads, c.headDim);
    return { backend: "none", tokens: this.#length, heldTokens: this.#length, baselineBytes: bytes, bytes, ratio: 1, compressions: 0, observedQueries: false };
  }

  dispose(): void {
    this.#keys = [];
    this.#values = [];
  }
}

class CompressedRun implements KvRun {
  readonly #cache: CompressedKVCache;
  readonly #compressEvery: number;
  /** Observed scorer only: per layer, a sliding window of the latest queries [queryHeads, w, headDim]. */
  readonly #queries: Float32Array[] | null;
  #length: number;
  #sinceCompress = 0;
  #compressions = 0;

  constructor(
    private readonly engine: QualityEngine,
    prefill: Prefill,
    setup: CacheSetup,
  ) {
    const c = engine.config;
    this.#cache = new CompressedKVCache({
      layers: c.numLayers,
      kvHeads: c.numKvHeads,
      headDim: c.headDim,
      queryHeads: c.numHeads,
      preset: setup.preset,
      spec: setup.spec ?? {},
      ...(setup.seed !== undefined ? { seed: setup.seed } : {}),
    });
    this.#compressEvery = setup.compressEvery;
    // Without query outputs the observed scorer gets none and the cache falls back to key-key.
    this.#queries = this.#cache.spec.scorer === "observed" && prefill.queries !== null ? prefill.queries.map((q) => q.slice()) : null;
    for (let l = 0; l < c.numLayers; l++) this.#cache.append(l, prefill.keys[l]!, prefill.values[l]!);
    this.#length = prefill.length;
  }

  async compressPrompt(): Promise<void> {
    await this.#compress();
  }

  async #compress(): Promise<void> {
    await this.#cache.compress(this.#queries === null ? {} : { observedQueries: this.#queries });
    this.#compressions += 1;
    this.#sinceCompress = 0;
  }

  async step(token: number): Promise<Float32Array> {
    const c = this.engine.config;
    const keys: Uint16Array[] = [];
    const values: Uint16Array[] = [];
    for (let l = 0; l < c.numLayers; l++) {
      const d = this.#cache.materialize(l, { dtype: "f16" });
      keys.push(d.keys);
      values.push(d.values);
    }
    const held = keys[0]!.length / (c.numKvHeads * c.headDim);
    const out = await this.engine.runStep(token, this.#length, keys, values, this.#queries !== null);
    const d = c.headDim;
    for (let l = 0; l < c.numLayers; l++) {
      // Only the new slot (index `held`) of each head goes into the cache.
      const k = new Uint16Array(c.numKvHeads * d);
      const v = new Uint16Array(c.numKvHeads * d);
      const pk = out[`present.${l}.key`]!.data as Uint16Array;
      const pv = out[`present.${l}.value`]!.data as Uint16Array;
      for (let h = 0; h < c.numKvHeads; h++) {
        const at = (h * (held + 1) + held) * d;
        k.set(pk.subarray(at, at + d), h * d);
        v.set(pv.subarray(at, at + d), h * d);
      }
      this.#cache.append(l, k, v);
      if (this.#queries !== null) slideIn(this.#queries[l]!, out[this.engine.queryOutputs![l]!]!.data as Float32Array, c.numHeads, d);
    }
    this.#length += 1;
    this.#sinceCompress += 1;
    if (this.#sinceCompress >= this.#compressEvery) await this.#compress();
    return halfBitsToFloats(out.logits!.data as Uint16Array);
  }

  stats(): RunStats {
    const s = this.#cache.stats();
    return {
      backend: s.backend,
      tokens: this.#length,
      heldTokens: this.#cache.tokens(0).held,
      baselineBytes: s.baselineBytes,
      bytes: s.bytes.total,
      ratio: s.ratio,
      compressions: this.#compressions,
      observedQueries: this.#queries !== null,
    };
  }

  dispose(): void {
    this.#cache.dispose();
  }
}

/** Drops the oldest query of every head's window and appends the newest ([queryHeads, 1, headDim]). */
function slideIn(window: Float32Array, newest: Float32Array, queryHeads: number, headDim: number): void {
  const w = window.length / (queryHeads * headDim);
  for (let h = 0; h < queryHeads; h++) {
    const base = h * w * headDim;
    window.copyWithin(base, base + headDim, base + w * headDim);
    window.set(newest.subarray(h * headDim, (h + 1) * headDim), base + (w - 1) * headDim);
  }
}

async function loadOrt(): Promise<Ort> {
  try {
    return await import("onnxruntime-node");
  } catch (error) {
    throw new NexusQuantError(
      "BACKEND_UNAVAILABLE",
      `The quality harness runs the model with onnxruntime-node, which could not be loaded (${(error as Error).message}). Install it with ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node.`,
    );
  }
}
