/**
 * withNexusQuant for a transformers.js (@huggingface/transformers v4) causal LM, so that the user's
 * own `model.generate(...)` runs unchanged while the KV cache lives compressed between steps.
 *
 * The hook: transformers.js' generate() loop calls `model.forward(model_inputs)` once per step and
 * keeps whatever `present.*` tensors come back in its DynamicCache (renamed `past_key_values.*`).
 * We shadow `forward` on the instance: it materializes dense past from our cache, calls the original
 * forward with the shortened past, the eviction-aware attention_mask and the true position_ids,
 * appends the new slots to the cache, and returns *placeholder* present tensors instead of the dense
 * ones. A placeholder holds no data; its dims claim the true sequence length so that
 * `DynamicCache.get_seq_length()` (used to trim input_ids on multi-turn calls) stays right. It is also
 * the key under which we find the compressed state on the next step.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { NexusQuantError } from "../errors.js";
import { PAST_PREFIX, PRESENT_PREFIX, pastKeyName, pastValueName, presentKeyName, presentValueName } from "../model/kv-names.js";
import { fp16BytesPerTokenLayer } from "../format/index.js";
import { checkFiniteLogits } from "./finite-logits.js";
import { inspectConvention, type ModelConvention, type SessionMetadataLike } from "./convention.js";
import { emptyKvStats, uncompressedKvStats, type KvStats } from "./conversation-cache.js";
import { createKvState, type KvArray, type KvDtype, type KvState } from "./kv-state.js";
import type { ResolvedOptions } from "./options.js";
import { runStateStep, type PaddedTokens, type TensorFactory } from "./step-adapter.js";

/** The parts of a transformers.js Tensor the hook reads (it is a Proxy over an ORT tensor). */
interface TjsTensor {
  readonly dims: number[];
  readonly type: string;
  readonly data: unknown;
}
type TjsTensorCtor = new (type: string, data: unknown, dims: number[]) => TjsTensor;
type ModelInputs = Record<string, unknown> & { past_key_values?: Record<string, TjsTensor> | null };

/** The parts of a transformers.js PreTrainedModel the hook uses. */
export interface TransformersJsModelLike {
  sessions: Record<string, SessionMetadataLike>;
  forward(inputs: Record<string, unknown>): Promise<Record<string, unknown>>;
  generate(...args: unknown[]): Promise<unknown>;
}

export function isTransformersJsModel(model: unknown): model is TransformersJsModelLike {
  const m = model as Partial<TransformersJsModelLike> | null;
  // transformers.js models extend its Callable class: instances are functions.
  return (typeof m === "object" || typeof m === "function") && m !== null && typeof m.forward === "function" && typeof m.generate === "function" && typeof m.sessions === "object" && m.sessions !== null;
}

/** One conversation held compressed, found again through its placeholder tensors. */
interface Conversation {
  state: KvState;
  placeholders: Map<string, TjsTensor>;
  /** The transformers.js caches (DynamicCache) handed to the user that hold its placeholders. */
  caches: Set<object>;
  /** forward() steps run on it (the first is 1), for error messages. */
  steps: number;
}

/** The handle that has patched each model now: a model is wrapped by one handle at a time. */
const wrappedBy = new WeakMap<object, TransformersJsHandle>();

export class TransformersJsHandle<M extends TransformersJsModelLike = TransformersJsModelLike> {
  /** The wrapped model (the same object the user passed; its generate()/forward() are patched until dispose()). */
  readonly model: M;
  readonly convention: ModelConvention;
  readonly options: Readonly<ResolvedOptions>;
  readonly #saved: { forward?: PropertyDescriptor; generate?: PropertyDescriptor };
  readonly #originalForward: (inputs: Record<string, unknown>) => Promise<Record<string, unknown>>;
  readonly #byPlaceholder = new WeakMap<object, Conversation>();
  /** Conversations alive now: the running generate()'s, and those handed to the user in a returned cache. */
  readonly #live = new Set<Conversation>();
  readonly #calls = new AsyncLocalStorage<Set<Conversation>>();
  #last: Conversation | undefined;
  #lastStats: KvStats | undefined;
  #disposed = false;

  constructor(model: M, options: ResolvedOptions) {
    const session = model.sessions["model"];
    if (session === undefined) {
      throw new NexusQuantError(
        "UNSUPPORTED",
        `This transformers.js model has no "model" session (it has ${Object.keys(model.sessions).join(", ") || "none"}); only decoder-only causal LMs are supported.`,
        { sessions: Object.keys(model.sessions) },
      );
    }
    this.convention = inspectConvention(session);
    if (wrappedBy.has(model)) {
      // A second hook over the first would feed the first's placeholders to onnxruntime as dense past.
      throw new NexusQuantError(
        "BUSY",
        "This transformers.js model is already wrapped by a withNexusQuant handle that is not disposed. Dispose that handle first (its dispose() restores the model), or keep using it.",
        { reason: "already-wrapped" },
      );
    }
    wrappedBy.set(model, this as TransformersJsHandle);
    this.model = model;
    this.options = options;
    this.#saved = {
      ...own(model, "forward"),
      ...own(model, "generate"),
    };
    const originalForward = model.forward;
    const originalGenerate = model.generate;
    this.#originalForward = (inputs) => originalForward.call(model, inputs);
    const forward = (inputs: Record<string, unknown>) => this.#forward(inputs as ModelInputs);
    const generate = (...args: unknown[]) => this.#generate(() => originalGenerate.apply(model, args), args[0]);
    Object.defineProperty(model, "forward", { value: forward, configurable: true, writable: true });
    Object.defineProperty(model, "generate", { value: generate, configurable: true, writable: true });
  }

  /** KV memory of the most recent conversation (live, or as it was when its generate() ended). */
  stats(): KvStats {
    if (this.#last !== undefined && this.#live.has(this.#last)) return this.#last.state.stats();
    if (this.#lastStats !== undefined) return this.#lastStats;
    return emptyKvStats(this.options.preset);
  }

  /**
   * Frees the compressed state behind a cache returned by generate({ return_dict_in_generate: true })
   * or passed as `past_key_values` (such caches stay alive for multi-turn use until released or disposed).
   */
  release(pastKeyValues: unknown): boolean {
    const conversation = this.#conversationOf(pastKeyValues);
    if (conversation === undefined) return false;
    this.#end(conversation);
    return true;
  }

  /** Restores the model's own forward() and generate() and frees every compressed cache. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const name of ["forward", "generate"] as const) {
      const saved = this.#saved[name];
      if (saved) Object.defineProperty(this.model, name, saved);
      else delete (this.model as Record<string, unknown>)[name];
    }
    if (wrappedBy.get(this.model) === this) wrappedBy.delete(this.model);
    for (const c of [...this.#live]) this.#end(c);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }

  async #generate(run: () => Promise<unknown>, kwargs: unknown): Promise<unknown> {
    const created = new Set<Conversation>();
    let result: unknown;
    try {
      result = await this.#calls.run(created, run);
    } catch (e) {
      for (const c of created) this.#end(c);
      throw e;
    }
    // Keep what the user can reach (a returned or passed-in cache); free the rest now rather than at GC.
    const keep = new Set<Conversation>();
    for (const cache of [(result as { past_key_values?: unknown } | null)?.past_key_values, (kwargs as { past_key_values?: unknown } | null)?.past_key_values]) {
      const c = this.#conversationOf(cache);
      if (c === undefined) continue;
      keep.add(c);
      c.caches.add(cache as object);
    }
    for (const c of created) if (!keep.has(c)) this.#end(c);
    return result;
  }

  async #forward(inputs: ModelInputs): Promise<Record<string, unknown>> {
    if (this.options.spec === null) return this.#passThrough(inputs);
    const ids = (inputs["input_ids"] ?? inputs["inputs_embeds"]) as TjsTensor | undefined;
    const fullMask = inputs["attention_mask"] as TjsTensor | undefined;
    if (ids === undefined || fullMask === undefined) {
      throw new NexusQuantError("UNSUPPORTED", "withNexusQuant needs input_ids and attention_mask in every forward() call (generate() always passes both).");
    }
    const TensorCtor = ids.constructor as TjsTensorCtor;
    const [batch, n] = ids.dims as [number, number];
    const total = fullMask.dims[1]!;
    const pkv = inputs.past_key_values;
    let conversation = this.#conversationOf(pkv);
    if (conversation === undefined) {
      conversation = this.#start(batch);
      // A dense cache from an unwrapped run (or a DynamicCache the user filled): take it in.
      const pastSlots = pkv ? denseSlots(pkv) : 0;
      if (pkv && pastSlots > 0) this.#importDense(conversation, pkv, fullMask, pastSlots, batch);
    }
    const { state } = conversation;
    if (state.layout.batch !== batch) {
      throw new NexusQuantError("INVALID_ARGUMENT", `This cache holds ${state.layout.batch} sequences; the call has ${batch}.`);
    }
    const maskData = nonzero(fullMask.data);
    const newMask = new Uint8Array(batch * n);
    for (let b = 0; b < batch; b++) newMask.set(maskData.subarray(b * total + total - n, (b + 1) * total), b * n);

    // The same step as every other wrapper (runStateStep): plan, feeds, forward, absorb, compress.
    // transformers.js takes its own input_ids/inputs_embeds (passed through) and the past as one
    // object; the positions are the true ones (what transformers.js would compute from the full
    // mask: cumsum - 1, 1 at padding), unless the caller gave its own.
    const tokens: PaddedTokens = { batch, n, ids: ids.data instanceof BigInt64Array ? ids.data : new BigInt64Array(batch * n), newMask };
    const tensor: TensorFactory<TjsTensor> = (type, data, dims) => new TensorCtor(type, data, dims);
    const outputs = await runStateStep(state, tokens, tensor, (feeds) => {
      const past: Record<string, TjsTensor> = {};
      for (const [name, t] of Object.entries(feeds)) if (name.startsWith(PAST_PREFIX)) past[name] = t;
      const pastSlots = feeds[pastKeyName(0)]?.dims[2] ?? 0;
      return this.#originalForward({
        ...inputs,
        attention_mask: feeds["attention_mask"],
        position_ids: inputs["position_ids"] ?? feeds["position_ids"],
        // No past at all on the first step, as transformers.js itself feeds it.
        past_key_values: pastSlots > 0 ? past : null,
      });
    });

    conversation.steps += 1;
    checkLogits(outputs, maskData, total, newMask, n, conversation.steps);
    const { layers, kvHeads, headDim, kvDtype } = this.convention;
    // Dense presents go no further: generate() keeps placeholders that carry the true length.
    for (let l = 0; l < layers; l++) {
      for (const name of [presentKeyName(l), presentValueName(l)]) {
        outputs[name] = this.#placeholder(conversation, name, TensorCtor, kvDtype, [batch, kvHeads, total, headDim]);
      }
    }
    return outputs;
  }

  /** preset "none": the original forward, untouched; only the memory it holds is recorded. */
  async #passThrough(inputs: ModelInputs): Promise<Record<string, unknown>> {
    const outputs = await this.#originalForward(inputs);
    const mask = inputs["attention_mask"] as TjsTensor | undefined;
    const n = (inputs["input_ids"] as TjsTensor | undefined)?.dims[1];
    if (mask !== undefined && n !== undefined) {
      const full = nonzero(mask.data);
      const total = mask.dims[1]!;
      const newMask = new Uint8Array(mask.dims[0]! * n);
      for (let b = 0; b < mask.dims[0]!; b++) newMask.set(full.subarray(b * total + total - n, (b + 1) * total), b * n);
      checkLogits(outputs, full, total, newMask, n, undefined);
    }
    if (mask !== undefined) {
      const tokens = nonzero(mask.data).reduce((a, b) => a + b, 0);
      let dense = 0;
      for (const [name, t] of Object.entries(outputs)) if (name.startsWith(PRESENT_PREFIX)) dense += (t as { data: ArrayBufferView }).data.byteLength;
      this.#lastStats = uncompressedKvStats(this.options.preset, this.convention, tokens, dense);
    }
    return outputs;
  }

  #start(batch: number): Conversation {
    if (this.#disposed) throw new NexusQuantError("DISPOSED", "This withNexusQuant handle has been disposed.");
    const { layers, kvHeads, headDim, kvDtype } = this.convention;
    const conversation: Conversation = {
      state: createKvState({ layers, kvHeads, headDim, batch, dtype: kvDtype }, this.options),
      placeholders: new Map(),
      caches: new Set(),
      steps: 0,
    };
    this.#live.add(conversation);
    this.#calls.getStore()?.add(conversation);
    this.#last = conversation;
    return conversation;
  }

  #importDense(conversation: Conversation, pkv: Record<string, TjsTensor>, fullMask: TjsTensor, pastSlots: number, batch: number): void {
    const { layers } = this.convention;
    const total = fullMask.dims[1]!;
    const maskData = nonzero(fullMask.data);
    const pastMask = new Uint8Array(batch * pastSlots);
    for (let b = 0; b < batch; b++) pastMask.set(maskData.subarray(b * total, b * total + pastSlots), b * pastSlots);
    const keys: KvArray[] = [];
    const values: KvArray[] = [];
    for (let l = 0; l < layers; l++) {
      keys.push(pkv[pastKeyName(l)]!.data as KvArray);
      values.push(pkv[pastValueName(l)]!.data as KvArray);
    }
    conversation.state.absorb({ slots: pastSlots, keys, values }, pastMask, pastSlots);
  }

  #placeholder(conversation: Conversation, name: string, TensorCtor: TjsTensorCtor, dtype: KvDtype, dims: number[]): TjsTensor {
    let t = conversation.placeholders.get(name);
    if (t === undefined) {
      t = new TensorCtor(dtype, dtype === "float16" ? new Uint16Array(0) : new Float32Array(0), [dims[0]!, dims[1]!, 0, dims[3]!]);
      conversation.placeholders.set(name, t);
      if (name === presentKeyName(0)) this.#byPlaceholder.set(t, conversation);
    }
    // transformers.js' Tensor forwards `dims` to the ORT tensor; only the length axis changes.
    (t as { dims: number[] }).dims = dims;
    return t;
  }

  #conversationOf(pkv: unknown): Conversation | undefined {
    if (pkv === null || typeof pkv !== "object") return undefined;
    const first = (pkv as Record<string, unknown>)[pastKeyName(0)];
    if (first === null || typeof first !== "object") return undefined;
    const c = this.#byPlaceholder.get(first);
    return c !== undefined && this.#live.has(c) ? c : undefined;
  }

  #end(conversation: Conversation): void {
    if (!this.#live.delete(conversation)) return;
    if (conversation === this.#last) this.#lastStats = conversation.state.stats();
    conversation.state.dispose();
    // Its caches now hold placeholders with nothing behind them. transformers.js reads a passed cache's
    // length first (get_seq_length) in every generate(), wrapped or not: refuse there, before
    // onnxruntime sees the empty tensors.
    for (const cache of conversation.caches) Object.defineProperty(cache, "get_seq_length", { value: disposedCache, configurable: true, writable: true });
  }
}

function own(target: object, name: "forward" | "generate"): { forward?: PropertyDescriptor; generate?: PropertyDescriptor } {
  const d = Object.getOwnPropertyDescriptor(target, name);
  return d ? { [name]: d } : {};
}

function disposedCache(): never {
  throw new NexusQuantError(
    "DISPOSED",
    "This past_key_values belongs to a compressed conversation that was released, or whose withNexusQuant handle was disposed: its K/V are gone. Start a new generate() without it.",
  );
}

function denseSlots(pkv: Record<string, TjsTensor>): number {
  const t = pkv[pastKeyName(0)];
  if (!t || !Array.isArray(t.dims)) return 0;
  const expected = t.dims.reduce((a, b) => a * b, 1);
  if ((t.data as ArrayLike<unknown>).length !== expected) {
    // One of our placeholders whose conversation was released or belongs to another handle.
    throw new NexusQuantError("DISPOSED", "This past_key_values belongs to a compressed conversation that was released (or to another withNexusQuant handle); start a new generate() without it.");
  }
  return t.dims[2] ?? 0;
}

/** The step's logits (float32, or FP16 bits) must be finite before transformers.js samples from them. */
function checkLogits(outputs: Record<string, unknown>, mask: Uint8Array, total: number, newMask: Uint8Array, n: number, step: number | undefined): void {
  const logits = outputs["logits"] as TjsTensor | undefined;
  if (logits === undefined) return;
  const width = logits.dims[1]!;
  checkFiniteLogits(logits.data as ArrayLike<number>, logits.dims, {
    wrapper: "transformers.js model",
    ...(step !== undefined ? { step } : {}),
    // Padding is on the left: a row's real new tokens are its last ones (logits may cover the last position only).
    realColumns: (row) => Math.min(width, newMask.subarray(row * n, (row + 1) * n).reduce((a, b) => a + b, 0)),
    // The mask covers the whole text of each row: its last real token is at (real tokens - 1).
    position: (row, column) => mask.subarray(row * total, (row + 1) * total).reduce((a, b) => a + b, 0) - (width - column),
  });
}

/** 1 where a mask tensor's entry (int64 → bigint, or number) is nonzero. */
function nonzero(data: unknown): Uint8Array {
  const a = data as ArrayLike<number | bigint>;
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = Number(a[i]) !== 0 ? 1 : 0;
  return out;
}
