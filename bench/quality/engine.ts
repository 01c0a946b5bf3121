/**
 * The decode loop the harness measures with: an onnxruntime-node session of the model (FP16 K/V in
 * and out, so the uncompressed baseline is a true FP16 cache), one prefill shared by every cache
 * variant, then one token per step through either a dense FP16 cache (preset "none") or a
 * CompressedKVCache.
 *
 * Its steps go through withNexusQuant's step adapter (src/integrations/step-adapter.ts) and KV state,
 * so masks, true position_ids, the present → cache path and the compression schedule (after the
 * prompt and every `compressEvery` decode tokens) are the wrapper's own; a test checks the logits
 * agree with it. It adds what the wrapper cannot do: one prefill shared by every variant, and the
 * observed scorer fed the model's own queries, read from extra graph outputs (queries.ts).
 */
import { NexusQuantError } from "../../src/errors.js";
import type { CompressionSpec } from "../../src/format/index.js";
import { buildLlamaOnnx, type LlamaConfig, type LlamaModel } from "../../src/model/index.js";
import type { BackendName } from "../../src/runtime/index.js";
import { createKvState, type KvLayout, type KvState } from "../../src/integrations/kv-state.js";
import { absorbPresent, logitsToFloat32, planStep, stepFeeds, type StepPlan } from "../../src/integrations/step-adapter.js";
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

  /** The KV layout of this model's graph (batch 1, FP16 K/V). */
  layout(): KvLayout {
    const { numLayers, numKvHeads, headDim, numHeads } = this.config;
    return { layers: numLayers, kvHeads: numKvHeads, headDim, batch: 1, dtype: "float16", queryHeads: numHeads };
  }

  /** Runs `ids` from position 0 with an empty cache. */
  async prefill(ids: readonly number[]): Promise<Prefill> {
    const { numLayers, headDim, numHeads } = this.config;
    const n = ids.length;
    if (n === 0) throw new NexusQuantError("INVALID_ARGUMENT", "prefill needs at least one token", { arg: "ids" });
    const empty = createKvState(this.layout(), kvOptions({ preset: "none", compressEvery: 1 }));
    const plan = planStep(empty, new Uint8Array(n).fill(1), n);
    const out = await this.run(plan, ids, true);
    const keys: Uint16Array[] = [];
    const values: Uint16Array[] = [];
    for (let l = 0; l < numLayers; l++) {
      // [1, kvHeads, n, headDim] is already [kvHeads, n, headDim].
      keys.push(out[`present.${l}.key`]!.data as Uint16Array);
      values.push(out[`present.${l}.value`]!.data as Uint16Array);
    }
    const logits = logitsToFloat32(out.logits!.data, "float16");
    const vocab = this.config.vocabSize;
    const queries = this.queryOutputs?.map((name) => lastQueries(out[name]!.data as Float32Array, numHeads, n, headDim, OBSERVED_WINDOW)) ?? null;
    return { length: n, keys, values, lastLogits: logits.slice((n - 1) * vocab, n * vocab), queries };
  }

  /** A conversation that continues `prefill` with the given cache. */
  async startRun(prefill: Prefill, setup: CacheSetup): Promise<KvRun> {
    const run = new EngineRun(this, prefill, setup);
    await run.compressPrompt();
    return run;
  }

  /** @internal one session call through the step adapter: `ids` (batch 1) with the plan's past, mask and positions. */
  async run(plan: StepPlan, ids: readonly number[], withQueries: boolean): Promise<Record<string, OrtTensor>> {
    const { Tensor } = this.#ort;
    const feeds = stepFeeds(this.layout(), plan, BigInt64Array.from(ids, BigInt), (type, data, dims) => new Tensor(type, data, dims));
    const fetches = withQueries && this.queryOutputs !== null ? [...this.#kvOutputs, ...this.queryOutputs] : this.#kvOutputs;
    return this.#session.run(feeds, fetches);
  }

  async dispose(): Promise<void> {
    await this.#session.release();
  }
}

function kvOptions(setup: CacheSetup) {
  return {
    preset: setup.preset,
    passThrough: setup.preset === "none",
    backend: "auto" as const,
    compressEvery: setup.compressEvery,
    spec: setup.spec ?? {},
    seed: setup.seed,
    denseMirror: false,
  };
}

/**
 * One variant continuing a prefill: a dense FP16 cache fed back as is (preset "none", exactly an
 * unwrapped decode loop) or a CompressedKVCache, both withNexusQuant's KV state.
 */
class EngineRun implements KvRun {
  readonly #state: KvState;
  /** Observed scorer only: per layer, a sliding window of the latest queries [queryHeads, w, headDim]. */
  readonly #queries: Float32Array[] | null;

  constructor(
    private readonly engine: QualityEngine,
    prefill: Prefill,
    setup: CacheSetup,
  ) {
    this.#state = createKvState(engine.layout(), kvOptions(setup));
    // Without query outputs the observed scorer gets none and the cache falls back to key-key.
    this.#queries = this.#state.cache?.spec.scorer === "observed" && prefill.queries !== null ? prefill.queries.map((q) => q.slice()) : null;
    const P = prefill.length;
    this.#state.absorb({ slots: P, keys: prefill.keys, values: prefill.values }, new Uint8Array(P).fill(1), P);
  }

  async compressPrompt(): Promise<void> {
    await this.#state.compress(this.#extras());
  }

  #extras() {
    return this.#queries === null ? {} : { observedQueries: [this.#queries] };
  }

  async step(token: number): Promise<Float32Array> {
    const plan = planStep(this.#state, new Uint8Array([1]), 1);
    const out = await this.engine.run(plan, [token], this.#queries !== null);
    absorbPresent(this.#state, plan, out);
    if (this.#queries !== null) {
      const c = this.engine.config;
      for (let l = 0; l < c.numLayers; l++) slideIn(this.#queries[l]!, out[this.engine.queryOutputs![l]!]!.data as Float32Array, c.numHeads, c.headDim);
    }
    await this.#state.compressIfDue(1, this.#extras());
    return logitsToFloat32(out.logits!.data, "float16");
  }

  stats(): RunStats {
    const s = this.#state.stats();
    return {
      backend: s.backend,
      tokens: s.tokens,
      heldTokens: s.heldTokens,
      baselineBytes: s.baselineKvBytes,
      bytes: s.compressedKvBytes,
      ratio: s.ratio,
      compressions: s.compressions,
      observedQueries: this.#queries !== null,
    };
  }

  dispose(): void {
    this.#state.dispose();
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
