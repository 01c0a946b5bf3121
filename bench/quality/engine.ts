/**
 * The decode loop the harness measures with: an onnxruntime-node session of the model (FP16 K/V in
 * and out, so the uncompressed baseline is a true FP16 cache), one prefill shared by every cache
 * variant, then one token per step through a KvState: the dense FP16 pass-through (preset "none"), a
 * CompressedKVCache, or a scalar baseline (scalar-state.ts).
 *
 * Every forward goes through withNexusQuant's step adapter (src/integrations/step-adapter.ts:
 * runStateStep plans the feeds, runs, absorbs the new slots of present, compresses when due), so the
 * harness measures exactly the wrapper's loop; a test checks the logits agree with it bit for bit.
 * It adds one thing the wrapper cannot do: it feeds the observed scorer the model's own queries, read
 * from extra graph outputs (queries.ts).
 */
import { NexusQuantError } from "../../src/errors.js";
import { SCORER_DEFAULTS } from "../../src/format/index.js";
import { resolveOptions } from "../../src/integrations/options.js";
import { inspectConvention, type ModelConvention } from "../../src/integrations/convention.js";
import type { CompressExtras } from "../../src/integrations/conversation-cache.js";
import { createKvState, type KvArray, type KvLayout, type KvState } from "../../src/integrations/kv-state.js";
import { logitsToFloat32, padTokenRows, runStateStep, stepResult, toTokenRows, type OutputLike, type StateStepHooks, type TensorFactory } from "../../src/integrations/step-adapter.js";
import { buildLlamaOnnx, type LlamaConfig, type LlamaModel } from "../../src/model/index.js";
import type { BackendName } from "../../src/runtime/index.js";
import { exposeQueries, lastQueries } from "./queries.js";
import { runStats, type CacheSetup, type KvRun, type QualityPath, type RunStats, type Started } from "./path.js";
import { ScalarKvState } from "./scalar-state.js";
import { BASELINE } from "./variants.js";

type Ort = typeof import("onnxruntime-node");
type OrtTensor = import("onnxruntime-node").Tensor;

/** SnapKV's observation window: the last 32 queries, the cache's default scorer window. */
export const OBSERVED_WINDOW = SCORER_DEFAULTS.scorerWindow;

/** The result of running a prompt once; every variant starts from it. */
export interface Prefill {
  length: number;
  /** Per layer, [1, kvHeads, length, headDim] FP16 bits (what the model's present holds). */
  keys: KvArray[];
  values: KvArray[];
  /** Logits of the last prompt position (they predict the first token after the prompt). */
  lastLogits: Float32Array;
  /** Per layer, the last min(OBSERVED_WINDOW, length) queries [queryHeads, w, headDim]; null without query outputs. */
  queries: Float32Array[] | null;
}

export type { CacheSetup, KvRun, RunStats } from "./path.js";

/** What one forward returned: the runtime's outputs by name, and the logits as float32 [tokens, vocab]. */
interface Forwarded {
  outputs: Record<string, unknown>;
  logits: Float32Array;
}

export class QualityEngine implements QualityPath {
  readonly name = "ort" as const;
  readonly config: LlamaConfig;
  /** Output names of the queries per layer, or null when the graph does not give them. */
  readonly queryOutputs: string[] | null;
  /** Why queryOutputs is null ("" otherwise). */
  readonly queryNote: string;
  readonly #session: import("onnxruntime-node").InferenceSession;
  readonly #convention: ModelConvention;
  /** One sequence, in the convention's layout, with the query heads for the observed scorer. */
  readonly #layout: KvLayout;
  readonly #tensor: TensorFactory<OrtTensor>;
  /** The last prompt's prefill (every variant of a prompt starts from the same one) and its time. */
  #memo: { key: string; prefill: Prefill; seconds: number } | undefined;

  private constructor(ort: Ort, session: import("onnxruntime-node").InferenceSession, config: LlamaConfig, queryOutputs: string[] | null, queryNote: string) {
    this.#session = session;
    this.config = config;
    this.queryOutputs = queryOutputs;
    this.queryNote = queryNote;
    // Layers, heads and dtypes read off the session, as withNexusQuant reads them.
    this.#convention = inspectConvention(session);
    const { layers, kvHeads, headDim, kvDtype } = this.#convention;
    this.#layout = { layers, kvHeads, headDim, batch: 1, dtype: kvDtype, queryHeads: config.numHeads };
    const { Tensor } = ort;
    this.#tensor = (type, data, dims) => new Tensor(type, data, dims);
  }

  static async create(model: LlamaModel, options: { exposeQueries?: boolean } = {}): Promise<QualityEngine> {
    const ort = await loadOrt();
    const built = buildLlamaOnnx({ ...model, dtype: "f16" });
    const exposure = options.exposeQueries === false ? { onnx: built, outputs: null, reason: "query outputs disabled" } : exposeQueries(built, model.config.numLayers);
    const session = await ort.InferenceSession.create(exposure.onnx);
    return new QualityEngine(ort, session, model.config, exposure.outputs, exposure.reason);
  }

  /** Runs `ids` from position 0 with an empty cache (a dense state that only collects present). */
  async prefill(ids: readonly number[]): Promise<Prefill> {
    const { numHeads, headDim } = this.config;
    const state = createKvState(this.#layout, resolveOptions({ preset: BASELINE }));
    try {
      const { outputs: out, logits } = await this.forward(state, ids);
      const n = ids.length;
      const past = state.past();
      const lastLogits = stepResult(logits, 1, n, this.config.vocabSize).last().slice();
      const queries = this.queryOutputs?.map((name) => lastQueries((out[name] as OutputLike).data as Float32Array, numHeads, n, headDim, OBSERVED_WINDOW)) ?? null;
      return { length: n, keys: past.keys, values: past.values, lastLogits, queries };
    } finally {
      state.dispose(); // drops the state's references only; the arrays now belong to the Prefill
    }
  }

  get observedNote(): string {
    return this.queryOutputs !== null
      ? "ORT path: the observed scorer reads the model's queries from extra graph outputs, the last 32 positions at every compression"
      : `ORT path: the observed scorer falls back to key-key: ${this.queryNote}`;
  }

  /** QualityPath: the prompt's prefill (shared by every variant of the same prompt), then the variant's cache. */
  async start(prompt: readonly number[], setup: CacheSetup): Promise<Started> {
    const key = prompt.join(",");
    if (this.#memo?.key !== key) {
      const t0 = performance.now();
      const prefill = await this.prefill(prompt);
      this.#memo = { key, prefill, seconds: (performance.now() - t0) / 1000 };
    }
    const { prefill, seconds } = this.#memo;
    return { run: await this.startRun(prefill, setup), logits: prefill.lastLogits, prefillSeconds: seconds };
  }

  /** A conversation that continues `prefill` with the given cache. */
  async startRun(prefill: Prefill, setup: CacheSetup): Promise<KvRun> {
    const state: KvState =
      setup.scalar !== undefined
        ? new ScalarKvState(this.#layout, setup.scalar, setup.compressEvery)
        : createKvState(
            this.#layout,
            resolveOptions({
              preset: setup.preset,
              compressEvery: setup.compressEvery,
              ...(setup.spec !== undefined ? { spec: setup.spec } : {}),
              ...(setup.seed !== undefined ? { seed: setup.seed } : {}),
            }),
          );
    try {
      // The prefill's present, absorbed as if this state had run the prompt, then compressed as a
      // prompt chunk is (a no-op for the dense baseline).
      const n = prefill.length;
      state.absorb({ slots: n, keys: prefill.keys, values: prefill.values }, new Uint8Array(n).fill(1), n);
      // Without query outputs the observed scorer gets none and the cache falls back to key-key.
      const queries = state.cache?.spec.scorer === "observed" && prefill.queries !== null ? prefill.queries.map((q) => q.slice()) : null;
      const run = new StateRun(this, state, queries, setup.scalar !== undefined ? "harness" : undefined);
      await state.compress(run.extras());
      return run;
    } catch (error) {
      state.dispose();
      throw error;
    }
  }

  /**
   * @internal One session call through the step adapter: `ids` as the next tokens of the state's one
   * row; `extras` is the adapter's hook before compression. Every output comes back: the query
   * outputs of a decode step are one row per head, nothing worth leaving out.
   */
  async forward(state: KvState, ids: readonly number[], extras?: StateStepHooks["extras"]): Promise<Forwarded> {
    // One row is never padded, so the pad id is never fed.
    const tokens = padTokenRows(toTokenRows(ids), 0);
    const outputs = await runStateStep(state, tokens, this.#tensor, (feeds) => this.#session.run(feeds), extras !== undefined ? { extras } : {});
    return { outputs, logits: logitsToFloat32((outputs["logits"] as OutputLike).data, this.#convention.logitsDtype) };
  }

  async dispose(): Promise<void> {
    await this.#session.release();
  }
}

/**
 * One variant's conversation: a KvState stepped through the engine. For the observed scorer it keeps
 * a sliding window of the model's latest queries and hands it to every compression.
 */
class StateRun implements KvRun {
  readonly #engine: QualityEngine;
  readonly #state: KvState;
  /** Observed scorer only: per layer, a sliding window of the latest queries [queryHeads, w, headDim]. */
  readonly #queries: Float32Array[] | null;
  /** What stats() reports as the backend when the state has none of its own (the scalar baselines). */
  readonly #backend: "harness" | undefined;

  constructor(engine: QualityEngine, state: KvState, queries: Float32Array[] | null, backend: "harness" | undefined) {
    this.#engine = engine;
    this.#state = state;
    this.#queries = queries;
    this.#backend = backend;
  }

  /** What a compression gets: the query windows, when the observed scorer has them. */
  extras(): CompressExtras | undefined {
    return this.#queries === null ? undefined : { observedQueries: [this.#queries] };
  }

  async step(token: number): Promise<Float32Array> {
    const { logits } = await this.#engine.forward(this.#state, [token], this.#queries !== null ? this.#slide : undefined);
    return logits;
  }

  /**
   * A turn of several tokens as the wrapper runs it (one step, then compressed as a prompt chunk). The
   * observed scorer's window then keeps what it had: a multi-token step's queries are not slid in.
   */
  async feed(tokens: readonly number[]): Promise<Float32Array> {
    const { logits } = await this.#engine.forward(this.#state, tokens, this.#queries !== null ? () => this.extras() : undefined);
    return stepResult(logits, 1, tokens.length, this.#engine.config.vocabSize).last().slice();
  }

  /** Between absorb and compression: each layer's newest query into its window. */
  readonly #slide = (outputs: Record<string, unknown>): CompressExtras | undefined => {
    const { numHeads, headDim } = this.#engine.config;
    const names = this.#engine.queryOutputs!;
    this.#queries!.forEach((window, l) => slideIn(window, (outputs[names[l]!] as OutputLike).data as Float32Array, numHeads, headDim));
    return this.extras();
  };

  stats(): RunStats {
    return runStats(this.#state.stats(), this.#queries !== null, this.#backend);
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
