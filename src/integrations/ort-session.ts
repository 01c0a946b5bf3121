/**
 * withNexusQuant for an onnxruntime-node InferenceSession: a generation loop that keeps the KV cache
 * compressed between steps. onnxruntime-node hands back host tensors every step (no IO binding in
 * Node), so each step materializes dense past from the cache, runs the session, and appends only the
 * new slots of `present.*` to the cache.
 */
import { NexusQuantError, invalidArgument } from "../errors.js";
import { halfBitsToFloats, type CompressedKVCache } from "../runtime/index.js";
import { inspectConvention, type ModelConvention, type SessionMetadataLike } from "./convention.js";
import { createKvState, emptyKvStats, type KvArray, type KvState, type KvStats } from "./kv-state.js";
import type { ResolvedOptions } from "./options.js";
import { createSampler, type SamplingOptions } from "./sampling.js";

/** The parts of an onnxruntime-node tensor the wrapper reads. */
export interface OrtTensorLike {
  readonly dims: readonly number[];
  readonly type: string;
  readonly data: unknown;
}
/** The parts of an onnxruntime-node InferenceSession the wrapper uses. */
export interface OrtSessionLike extends SessionMetadataLike {
  run(feeds: Record<string, OrtTensorLike>): Promise<Record<string, OrtTensorLike>>;
}
/** The parts of the onnxruntime-node module the wrapper uses (its Tensor class). */
export interface OrtModuleLike {
  Tensor: new (type: string, data: unknown, dims: readonly number[]) => OrtTensorLike;
}

export function isOrtSession(model: unknown): model is OrtSessionLike {
  const m = model as Partial<OrtSessionLike> | null;
  return typeof m === "object" && m !== null && typeof m.run === "function" && Array.isArray(m.inputNames) && Array.isArray(m.outputNames);
}

export interface StepResult {
  /** [batch, tokens, vocab] logits of the chunk (FP16 logits converted to float32). */
  logits: Float32Array;
  dims: [number, number, number];
  /** The logits of row `row`'s last position: what predicts its next token. */
  last(row?: number): Float32Array;
}

export interface GenerateOptions extends SamplingOptions {
  /** Tokens to generate per row (default 32). */
  maxNewTokens?: number;
  /** Token id(s) that end a row. */
  eos?: number | readonly number[];
  /** Called for every generated token, in order. */
  onToken?: (token: number, info: { row: number; index: number }) => void;
  /**
   * Append this prompt to the conversation the cache holds (multi-turn) instead of starting over.
   * The last token generated before is fed first, so nothing is lost between turns.
   */
  continue?: boolean;
}

export interface GenerateResult {
  /** Generated tokens per row (prompt excluded; an eos token is included). */
  tokens: number[][];
  stats: KvStats;
}

/** Where the time of the wrapped steps went (seconds, cumulative since the last reset()). */
export interface StepTimings {
  steps: number;
  /** Inside session.run. */
  runSeconds: number;
  /** Materializing dense past from the cache and building feeds. */
  pastSeconds: number;
  /** Copying new slots out of present.* into the cache. */
  absorbSeconds: number;
  compressSeconds: number;
  totalSeconds: number;
}

const zeroTimings = (): StepTimings => ({ steps: 0, runSeconds: 0, pastSeconds: 0, absorbSeconds: 0, compressSeconds: 0, totalSeconds: 0 });

export class NexusQuantSession {
  readonly session: OrtSessionLike;
  readonly convention: ModelConvention;
  readonly options: Readonly<ResolvedOptions>;
  readonly #ort: OrtModuleLike;
  #state: KvState | undefined;
  /** Per row: the last generated token, not yet fed to the model (fed first by generate({ continue })). */
  #pending: (number | undefined)[] = [];
  #timings = zeroTimings();
  #disposed = false;

  constructor(session: OrtSessionLike, options: ResolvedOptions, ort: OrtModuleLike) {
    this.session = session;
    this.convention = inspectConvention(session);
    if (this.convention.extraInputs.length > 0) {
      throw new NexusQuantError(
        "UNSUPPORTED",
        `This model has inputs nexusquant does not know how to feed: ${this.convention.extraInputs.join(", ")}. ` +
          `It has inputs [${session.inputNames.join(", ")}]. Export it without them (e.g. a non-merged decoder), or wrap it through transformers.js.`,
        { inputs: [...session.inputNames], outputs: [...session.outputNames], extra: this.convention.extraInputs },
      );
    }
    this.options = options;
    this.#ort = ort;
  }

  /** The compressed cache of the current conversation (undefined before the first step or for preset "none"). */
  get cache(): CompressedKVCache | undefined {
    return this.#state?.cache;
  }

  /** True length of a row of the current conversation: the position its next token gets. */
  position(row = 0): number {
    return this.#state?.realTokens(row) ?? 0;
  }

  /**
   * Runs one chunk: `rows[b]` are the new tokens of row b (rows of different lengths are left-padded;
   * a single array is batch 1). Appends them to the cache and returns the logits.
   */
  async step(rows: readonly number[] | readonly (readonly number[])[]): Promise<StepResult> {
    this.#live();
    const batchRows = toRows(rows);
    const t0 = performance.now();
    const { layers, kvHeads, headDim, kvDtype } = this.convention;
    if (this.#state === undefined) {
      this.#state = createKvState({ layers, kvHeads, headDim, batch: batchRows.length, dtype: kvDtype }, this.options);
      this.#pending = new Array(batchRows.length).fill(undefined);
    }
    const state = this.#state;
    const batch = state.layout.batch;
    if (batchRows.length !== batch) {
      throw invalidArgument("rows.length", `the batch size of this conversation (${batch}); call reset() to start one of another size`, batchRows.length);
    }
    const n = Math.max(...batchRows.map((r) => r.length));
    if (n === 0) throw invalidArgument("rows", "at least one token in some row", rows);

    const ids = new BigInt64Array(batch * n);
    const positions = new BigInt64Array(batch * n);
    const newMask = new Uint8Array(batch * n);
    batchRows.forEach((row, b) => {
      const pad = n - row.length;
      const start = state.realTokens(b);
      for (let j = 0; j < n; j++) {
        const at = b * n + j;
        if (j < pad) {
          ids[at] = BigInt(this.options.padTokenId);
          positions[at] = 1n; // HF's masked_fill(mask == 0, 1); masked slots never influence real ones
        } else {
          ids[at] = BigInt(row[j - pad]!);
          positions[at] = BigInt(start + j - pad);
          newMask[at] = 1;
        }
      }
    });

    const t1 = performance.now();
    const past = state.past();
    const total = past.slots + n;
    const mask = new BigInt64Array(batch * total);
    for (let b = 0; b < batch; b++) {
      for (let t = 0; t < past.slots; t++) mask[b * total + t] = BigInt(past.mask[b * past.slots + t]!);
      for (let j = 0; j < n; j++) mask[b * total + past.slots + j] = BigInt(newMask[b * n + j]!);
    }
    const { Tensor } = this.#ort;
    const kvType = kvDtype;
    const pastDims = [batch, kvHeads, past.slots, headDim];
    const feeds: Record<string, OrtTensorLike> = {
      input_ids: new Tensor("int64", ids, [batch, n]),
      attention_mask: new Tensor("int64", mask, [batch, total]),
      position_ids: new Tensor("int64", positions, [batch, n]),
    };
    for (let l = 0; l < layers; l++) {
      feeds[`past_key_values.${l}.key`] = new Tensor(kvType, past.keys[l]!, pastDims);
      feeds[`past_key_values.${l}.value`] = new Tensor(kvType, past.values[l]!, pastDims);
    }

    const t2 = performance.now();
    const out = await this.session.run(feeds);
    const t3 = performance.now();

    const keys: KvArray[] = [];
    const values: KvArray[] = [];
    for (let l = 0; l < layers; l++) {
      keys.push(out[`present.${l}.key`]!.data as KvArray);
      values.push(out[`present.${l}.value`]!.data as KvArray);
    }
    state.absorb({ slots: total, keys, values }, newMask, n);
    const t4 = performance.now();
    await state.compressIfDue(n);
    const t5 = performance.now();

    const logitsTensor = out.logits!;
    const logits = this.convention.logitsDtype === "float16" ? halfBitsToFloats(logitsTensor.data as Uint16Array) : (logitsTensor.data as Float32Array);
    const vocab = logitsTensor.dims[2]!;
    this.#pending.fill(undefined);
    const tm = this.#timings;
    tm.steps += 1;
    tm.pastSeconds += (t2 - t1) / 1000;
    tm.runSeconds += (t3 - t2) / 1000;
    tm.absorbSeconds += (t4 - t3 + (t1 - t0)) / 1000;
    tm.compressSeconds += (t5 - t4) / 1000;
    tm.totalSeconds += (t5 - t0) / 1000;
    return {
      logits,
      dims: [batch, n, vocab],
      last: (row = 0) => logits.subarray((row * n + n - 1) * vocab, (row * n + n) * vocab),
    };
  }

  /**
   * Generates from a prompt (one row, or one per batch row of any lengths). Starts a new
   * conversation unless `continue: true`.
   */
  async generate(inputIds: readonly number[] | readonly (readonly number[])[], options: GenerateOptions = {}): Promise<GenerateResult> {
    this.#live();
    const maxNewTokens = options.maxNewTokens ?? 32;
    if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 0) throw invalidArgument("maxNewTokens", "an integer >= 0", maxNewTokens);
    const eos = new Set(options.eos === undefined ? [] : typeof options.eos === "number" ? [options.eos] : options.eos);
    const sample = createSampler(options);
    let prompt = toRows(inputIds).map((r) => [...r]);
    if (options.continue && this.#state !== undefined) {
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
          next.push([]); // a finished row gets a masked padding slot, so its cache stays clean
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

  /** Memory and time of the current conversation (all zero before the first step). */
  stats(): KvStats {
    if (this.#state !== undefined) return this.#state.stats();
    return emptyKvStats(this.options.preset);
  }

  timings(): StepTimings {
    return { ...this.#timings };
  }

  /** Drops the conversation (and frees its cache); the next step starts a new one. */
  reset(): void {
    this.#state?.dispose();
    this.#state = undefined;
    this.#pending = [];
    this.#timings = zeroTimings();
  }

  /** Frees the cache. The InferenceSession is the caller's: it is not released. */
  dispose(): void {
    this.reset();
    this.#disposed = true;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }

  #live(): void {
    if (this.#disposed) throw new NexusQuantError("DISPOSED", "This wrapped session has been disposed; call withNexusQuant() again.");
  }
}

function toRows(rows: readonly number[] | readonly (readonly number[])[]): (readonly number[])[] {
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
