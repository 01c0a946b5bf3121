/**
 * The one step adapter between a KV state nexusquant holds and a decoder exported in the KV-cache
 * convention (convention.ts). In: the new tokens of a step (ids, which slots are real), the state's
 * past → the runtime's feeds (attention_mask over held + new slots, true position_ids, past K/V).
 * Out: the runtime's outputs → logits, and the new slots of `present` into the state.
 *
 * Every path that runs such a decoder goes through it: the onnxruntime-node wrapper
 * (ConventionStepEngine below), the transformers.js forward hook, the quality harness and the
 * benchmarks. The functions are runtime-neutral: typed arrays in, and a TensorFactory that builds
 * whatever tensor class the runtime takes.
 *
 * `StepEngine` is what a withNexusQuant handle drives (DecodeHandle adds generate() on top). An engine
 * that does not go through an exported graph (the native path) implements the same interface.
 */
import { NexusQuantError, invalidArgument } from "../errors.js";
import { pastKeyName, pastValueName, presentKeyName, presentValueName } from "../model/kv-names.js";
import { halfBitsToFloats, type CompressedKVCache } from "../runtime/index.js";
import type { ModelConvention } from "./convention.js";
import { descriptionFingerprint, type ModelFingerprint } from "../model/fingerprint.js";
import { checkStateOptions, resumedCache, type EngineConversation, type StateKind } from "./conversation-state.js";
import { checkConversationRows, emptyKvStats, type CompressExtras, type KvStats } from "./conversation-cache.js";
import { createKvState, resumeKvState, type KvArray, type KvLayout, type KvState, type KvStateOptions, type PastKv } from "./kv-state.js";

/** New tokens of a step: one array (batch 1) or one array per row (rows of any lengths). */
export type TokenRows = readonly number[] | readonly (readonly number[])[];

/** The result of one step. */
export interface StepResult {
  /** [batch, tokens, vocab] logits of the chunk (FP16 logits converted to float32). */
  logits: Float32Array;
  dims: [number, number, number];
  /** The logits of row `row`'s last position: what predicts its next token. */
  last(row?: number): Float32Array;
}

/** Where the time of the steps went (seconds, cumulative since the last reset()). */
export interface StepTimings {
  steps: number;
  /** Inside the runtime's forward (session.run, or the native engine's model work). */
  runSeconds: number;
  /** Materializing dense past from the cache and building feeds. */
  pastSeconds: number;
  /** Copying new slots out of present.* into the cache (and building ids). */
  absorbSeconds: number;
  compressSeconds: number;
  totalSeconds: number;
}

export const zeroTimings = (): StepTimings => ({ steps: 0, runSeconds: 0, pastSeconds: 0, absorbSeconds: 0, compressSeconds: 0, totalSeconds: 0 });

/**
 * What a withNexusQuant handle needs from whatever runs the model, one conversation at a time. The
 * handle (DecodeHandle) validates nothing twice, serializes calls and owns generate(); an engine owns
 * the model, the KV state and the step. Implemented by ConventionStepEngine (an exported graph through
 * a runtime) and by the native path.
 */
export interface StepEngine {
  /**
   * Runs one chunk: `rows[b]` are the new tokens of row b (shorter rows are left-padded). Starts a
   * conversation of `rows.length` rows if none is held. Validates its input before changing state.
   */
  step(rows: TokenRows): Promise<StepResult>;
  /** True length of a row of the current conversation: the position its next token gets (0 before the first step). */
  position(row: number): number;
  /** Memory and time of the current conversation (emptyKvStats before the first step). */
  stats(): KvStats;
  timings(): StepTimings;
  /** Rows of the conversation held now; undefined when none is (before the first step, after reset()). */
  readonly batch: number | undefined;
  /** The model's vocabulary size when known (token ids are checked against it before anything changes). */
  readonly vocabSize?: number | undefined;
  /** The compressed cache of the current conversation, if the engine holds one. */
  readonly cache: CompressedKVCache | undefined;
  /** Drops the conversation and frees its cache; the next step starts a new one. */
  reset(): void;
  /** Frees everything the engine owns (not the caller's model or session). */
  dispose(): void;
  /** dispose(), waiting for what is released asynchronously; optional (DecodeHandle's asyncDispose uses it when present). */
  disposeAsync?(): Promise<void>;
  /**
   * Saved states (DecodeHandle.saveState/restoreState), optional: the model's fingerprint, the held
   * conversation (undefined when none), and taking a saved one back in its place (checked first).
   */
  fingerprint?(): Promise<ModelFingerprint>;
  /** Which engine's states this one saves and resumes. */
  readonly stateKind?: StateKind;
  saveConversation?(): EngineConversation | undefined;
  restoreConversation?(saved: EngineConversation): void;
}

/** Checks token rows and returns them as a list of rows (a flat array is batch 1). */
export function toTokenRows(rows: TokenRows): (readonly number[])[] {
  if (!Array.isArray(rows) || rows.length === 0) throw invalidArgument("inputIds", "a non-empty array of token ids, or an array of such rows", rows);
  const list: (readonly number[])[] = typeof rows[0] === "number" ? [rows as readonly number[]] : [...(rows as readonly (readonly number[])[])];
  list.forEach((row, b) => {
    if (!Array.isArray(row)) throw invalidArgument(`inputIds[${b}]`, "an array of token ids", row);
    row.forEach((t, j) => {
      if (!Number.isSafeInteger(t) || t < 0) throw invalidArgument(`inputIds[${b}][${j}]`, "a token id (integer >= 0)", t);
    });
  });
  return list;
}

/**
 * Refuses token ids outside the vocabulary before anything runs (a runtime's embedding Gather would
 * fail with an untyped error, or read past the table). `vocab` undefined: not known yet, not checked.
 */
export function checkVocab(rows: readonly (readonly number[])[], vocab: number | undefined): void {
  if (vocab === undefined) return;
  rows.forEach((row, b) =>
    row.forEach((t, j) => {
      if (t >= vocab) throw invalidArgument(`inputIds[${b}][${j}]`, `a token id in [0, ${vocab}) (the model's vocabulary)`, t);
    }),
  );
}

/** input_ids of a step, rows left-padded with `padTokenId` to the longest, and which slots are real. */
export interface PaddedTokens {
  batch: number;
  /** Slots per row (the longest row). */
  n: number;
  /** [batch, n] */
  ids: BigInt64Array;
  /** [batch, n]: 1 at a real token, 0 at padding. */
  newMask: Uint8Array;
}

export function padTokenRows(rows: readonly (readonly number[])[], padTokenId: number): PaddedTokens {
  const batch = rows.length;
  const n = Math.max(...rows.map((r) => r.length));
  const ids = new BigInt64Array(batch * n);
  const newMask = new Uint8Array(batch * n);
  const pad = BigInt(padTokenId);
  rows.forEach((row, b) => {
    const padding = n - row.length;
    for (let j = 0; j < n; j++) {
      const at = b * n + j;
      if (j < padding) ids[at] = pad;
      else {
        ids[at] = BigInt(row[j - padding]!);
        newMask[at] = 1;
      }
    }
  });
  return { batch, n, ids, newMask };
}

/** Everything a step feeds besides input_ids, as plain arrays. */
export interface StepPlan {
  batch: number;
  /** New slots per row. */
  n: number;
  /** [batch, n]: 1 at a real new token. */
  newMask: Uint8Array;
  /** [batch, n]: true positions of the real tokens; 1 at padding (HF's masked_fill(mask == 0, 1)). */
  positionIds: BigInt64Array;
  /** [batch, past.slots + n]: the held past's mask, then newMask. Eviction shortens the past, not the mask. */
  attentionMask: BigInt64Array;
  /** What the state holds, in the export layout (materialized from the compressed cache, or dense). */
  past: PastKv;
}

/**
 * Plans a step of `n` new slots per row over the state's past. Positions count each row's real
 * tokens on from the state's true length, so they stay right after eviction.
 */
export function planStep(state: KvState, newMask: Uint8Array, n: number): StepPlan {
  const { batch } = state.layout;
  const positionIds = new BigInt64Array(batch * n);
  for (let b = 0; b < batch; b++) {
    let next = state.realTokens(b);
    for (let j = 0; j < n; j++) positionIds[b * n + j] = newMask[b * n + j] ? BigInt(next++) : 1n;
  }
  const past = state.past();
  const total = past.slots + n;
  const attentionMask = new BigInt64Array(batch * total);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < past.slots; t++) attentionMask[b * total + t] = past.mask[b * past.slots + t] ? 1n : 0n;
    for (let j = 0; j < n; j++) attentionMask[b * total + past.slots + j] = newMask[b * n + j] ? 1n : 0n;
  }
  return { batch, n, newMask, positionIds, attentionMask, past };
}

/** Builds one tensor of the runtime's own class (onnxruntime-node's Tensor, transformers.js' Tensor, …). */
export type TensorFactory<T> = (type: "int64" | "float32" | "float16", data: BigInt64Array | KvArray, dims: number[]) => T;

/** past_key_values.{l}.key/.value of the plan, [batch, kvHeads, past slots, headDim] each. */
export function pastFeeds<T>(layout: KvLayout, plan: StepPlan, tensor: TensorFactory<T>): Record<string, T> {
  const { layers, kvHeads, headDim, dtype } = layout;
  const dims = [plan.batch, kvHeads, plan.past.slots, headDim];
  const feeds: Record<string, T> = {};
  for (let l = 0; l < layers; l++) {
    feeds[pastKeyName(l)] = tensor(dtype, plan.past.keys[l]!, dims);
    feeds[pastValueName(l)] = tensor(dtype, plan.past.values[l]!, dims);
  }
  return feeds;
}

/** The full feed set of the convention: input_ids, attention_mask, position_ids and the past. */
export function stepFeeds<T>(layout: KvLayout, plan: StepPlan, inputIds: BigInt64Array, tensor: TensorFactory<T>): Record<string, T> {
  return {
    input_ids: tensor("int64", inputIds, [plan.batch, plan.n]),
    attention_mask: tensor("int64", plan.attentionMask, [plan.batch, plan.past.slots + plan.n]),
    position_ids: tensor("int64", plan.positionIds, [plan.batch, plan.n]),
    ...pastFeeds(layout, plan, tensor),
  };
}

/** What the adapter reads of an output tensor. */
export interface OutputLike {
  readonly data: unknown;
  readonly dims?: readonly number[];
}

/** Keeps the new slots of the outputs' present.{l}.key/.value in the state (the dense arrays go no further). */
export function absorbPresent(state: KvState, plan: StepPlan, outputs: Record<string, unknown>): void {
  const keys: KvArray[] = [];
  const values: KvArray[] = [];
  for (let l = 0; l < state.layout.layers; l++) {
    keys.push((outputs[presentKeyName(l)] as OutputLike | undefined)?.data as KvArray);
    values.push((outputs[presentValueName(l)] as OutputLike | undefined)?.data as KvArray);
  }
  state.absorb({ slots: plan.past.slots + plan.n, keys, values }, plan.newMask, plan.n);
}

/** The logits output as float32 (FP16 logits arrive as FP16 bits). */
export function logitsToFloat32(data: unknown, dtype: "float32" | "float16"): Float32Array {
  return dtype === "float16" ? halfBitsToFloats(data as Uint16Array) : (data as Float32Array);
}

/** A StepResult over [batch, n, vocab] logits. */
export function stepResult(logits: Float32Array, batch: number, n: number, vocab: number): StepResult {
  return {
    logits,
    dims: [batch, n, vocab],
    last: (row = 0) => logits.subarray((row * n + n - 1) * vocab, (row * n + n) * vocab),
  };
}

/** Runs one forward of the exported decoder: feeds in, outputs (by name) out. */
export type RunDecoder<T> = (feeds: Record<string, T>) => Promise<Record<string, unknown>>;

/** What a caller may add to a step over a KV state. */
export interface StateStepHooks {
  /**
   * Called after the new slots are absorbed and before the state compresses: what that compression
   * gets. The quality harness reads the observed scorer's queries off the outputs here.
   */
  extras?: (outputs: Record<string, unknown>) => CompressExtras | undefined;
  /** Adds the phases' seconds (past, run, absorb, compress) here; steps and totals are the caller's. */
  timings?: StepTimings;
}

/**
 * One step of the convention over a KV state: plan, feeds, `run`, the new slots of present into the
 * state, compression when due. Returns the runtime's outputs (logits and whatever else `run` fetched).
 * ConventionStepEngine and the quality harness both step through here.
 */
export async function runStateStep<T>(state: KvState, tokens: PaddedTokens, tensor: TensorFactory<T>, run: RunDecoder<T>, hooks: StateStepHooks = {}): Promise<Record<string, unknown>> {
  const t0 = performance.now();
  const plan = planStep(state, tokens.newMask, tokens.n);
  const feeds = stepFeeds(state.layout, plan, tokens.ids, tensor);
  const t1 = performance.now();
  const outputs = await run(feeds);
  const t2 = performance.now();
  absorbPresent(state, plan, outputs);
  const extras = hooks.extras?.(outputs);
  const t3 = performance.now();
  await state.compressIfDue(tokens.n, extras);
  const t4 = performance.now();
  const tm = hooks.timings;
  if (tm !== undefined) {
    tm.pastSeconds += (t1 - t0) / 1000;
    tm.runSeconds += (t2 - t1) / 1000;
    tm.absorbSeconds += (t3 - t2) / 1000;
    tm.compressSeconds += (t4 - t3) / 1000;
  }
  return outputs;
}

export interface ConventionStepEngineOptions<T> {
  convention: ModelConvention;
  /** What the graph's fingerprint describes (its inputs and outputs); default: the convention alone. */
  describe?: unknown;
  options: KvStateOptions & { padTokenId: number };
  tensor: TensorFactory<T>;
  run: RunDecoder<T>;
}

/**
 * A StepEngine over a decoder exported in the convention: the KV state lives in nexusquant (dense for
 * preset "none", else compressed), and each step feeds its materialized past to `run`.
 */
export class ConventionStepEngine<T> implements StepEngine {
  readonly #convention: ModelConvention;
  readonly #options: KvStateOptions & { padTokenId: number };
  readonly #tensor: TensorFactory<T>;
  readonly #run: RunDecoder<T>;
  readonly #describe: unknown;
  readonly stateKind = "ort";
  #state: KvState | undefined;
  #timings = zeroTimings();
  /** From the logits metadata, else learnt from the first step's logits. */
  #vocab: number | undefined;

  constructor(init: ConventionStepEngineOptions<T>) {
    this.#convention = init.convention;
    this.#vocab = init.convention.vocabSize;
    this.#describe = init.describe;
    this.#options = init.options;
    this.#tensor = init.tensor;
    this.#run = init.run;
  }

  get cache(): CompressedKVCache | undefined {
    return this.#state?.cache;
  }

  get batch(): number | undefined {
    return this.#state?.layout.batch;
  }

  get vocabSize(): number | undefined {
    return this.#vocab;
  }

  position(row: number): number {
    return this.#state?.realTokens(row) ?? 0;
  }

  async step(rows: TokenRows): Promise<StepResult> {
    const batchRows = toTokenRows(rows);
    const t0 = performance.now();
    checkConversationRows(this.batch, batchRows.length);
    if (batchRows.every((r) => r.length === 0)) throw invalidArgument("rows", "at least one token in some row", rows);
    checkVocab(batchRows, this.#vocab);
    const { layers, kvHeads, headDim, kvDtype } = this.#convention;
    this.#state ??= createKvState({ layers, kvHeads, headDim, batch: batchRows.length, dtype: kvDtype }, this.#options);
    const state = this.#state;
    const tokens = padTokenRows(batchRows, this.#options.padTokenId);
    const prepared = performance.now();
    const tm = this.#timings;
    const out = await runStateStep(state, tokens, this.#tensor, this.#run, { timings: tm });
    // Checking the rows and building input_ids count as absorb time (StepTimings.absorbSeconds).
    tm.absorbSeconds += (prepared - t0) / 1000;
    tm.steps += 1;
    tm.totalSeconds += (performance.now() - t0) / 1000;

    const logitsOut = out["logits"] as OutputLike;
    const logits = logitsToFloat32(logitsOut.data, this.#convention.logitsDtype);
    this.#vocab ??= logitsOut.dims![2]!;
    return stepResult(logits, tokens.batch, tokens.n, logitsOut.dims![2]!);
  }

  stats(): KvStats {
    return this.#state?.stats() ?? emptyKvStats(this.#options.preset);
  }

  timings(): StepTimings {
    return { ...this.#timings };
  }

  reset(): void {
    this.#state?.dispose();
    this.#state = undefined;
    this.#timings = zeroTimings();
  }

  dispose(): void {
    this.reset();
  }

  /**
   * An exported graph's weights are not readable through onnxruntime-node, so its fingerprint covers
   * the graph's interface (input and output names, KV shape and dtypes): a weaker check than the
   * native path's, which hashes the weights.
   */
  async fingerprint(): Promise<ModelFingerprint> {
    const { layers, kvHeads, headDim, kvDtype, logitsDtype } = this.#convention;
    return descriptionFingerprint({ graph: this.#describe ?? null, layers, kvHeads, headDim, kvDtype, logitsDtype }, "the ONNX graph's input and output names, KV shape and dtypes (onnxruntime-node does not expose the weights)");
  }

  /** The held conversation, for saveState(); preset "none" holds dense K/V outside any cache, which is not saved. */
  saveConversation(): EngineConversation | undefined {
    const state = this.#state;
    if (state === undefined) return undefined;
    if (state.cache === undefined || state.conversation === undefined) {
      throw new NexusQuantError("UNSUPPORTED", 'saveState() saves a compressed cache; with preset "none" the ONNX Runtime wrapper holds the dense K/V the model returned and no cache. Use a compressing preset, or the native path (loadModel(dir)).');
    }
    return { kind: "ort", cache: state.cache.serialize(), conversation: state.conversation.snapshot() };
  }

  restoreConversation(saved: EngineConversation): void {
    checkStateOptions(saved, this.stateKind, this.#options);
    const { layers, kvHeads, headDim, kvDtype } = this.#convention;
    const profile = this.#options.profile;
    const conversation = resumedCache(saved, { layers, kvHeads, headDim }, typeof profile === "object" ? profile : undefined);
    if (conversation.spec === null) {
      conversation.dispose();
      throw new NexusQuantError("UNSUPPORTED", 'A state of preset "none" cannot resume on the ONNX Runtime wrapper (its K/V are held dense, outside any cache).');
    }
    this.reset();
    this.#state = resumeKvState({ layers, kvHeads, headDim, batch: conversation.shape.batch, dtype: kvDtype }, this.#options, conversation);
  }
}
