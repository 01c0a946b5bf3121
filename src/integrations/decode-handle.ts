/**
 * The handle withNexusQuant returns for a model it runs itself (an onnxruntime-node session, or the
 * native path): generate() with sampling and multi-turn, step(), stats(), dispose(), over any
 * StepEngine. One conversation at a time: a call that arrives while another runs is refused with
 * BUSY, and nothing of the running one changes.
 */
import { NexusQuantError, invalidArgument } from "../errors.js";
import { checkTokenIds } from "../validate.js";
import type { CompressedKVCache } from "../runtime/index.js";
import { checkFiniteLogits } from "./finite-logits.js";
import type { ModelFingerprint } from "../model/fingerprint.js";
import type { KvStats } from "./conversation-cache.js";
import { checkStateKind, decodeConversationState, encodeConversationState } from "./conversation-state.js";
import { createSampler, type SamplingOptions } from "./sampling.js";
import { checkVocab, toTokenRows, type StepEngine, type StepResult, type TokenRows } from "./step-adapter.js";

export interface GenerateOptions extends SamplingOptions {
  /** Tokens to generate per row (default 32). */
  maxNewTokens?: number;
  /**
   * Token id(s) that end a row. Default: the handle's `eos` (a loaded checkpoint's end-of-text ids,
   * or withNexusQuant's `eos` option); `[]` generates exactly `maxNewTokens`.
   */
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

export class DecodeHandle<E extends StepEngine = StepEngine> {
  /** Where generate() stops a row unless the call passes its own `eos` (empty: never before maxNewTokens). */
  readonly eos: readonly number[];
  readonly #engine: E;
  /** What this handle wraps, for error messages ("native path", "onnxruntime-node session"). */
  readonly #wrapper: string;
  /** Steps run in the current conversation (the first is 1). */
  #steps = 0;
  /** Per row: the last generated token, not yet fed to the model (fed first by generate({ continue })). */
  #pending: (number | undefined)[] = [];
  /** What runs now (a step or a generate), for the BUSY message; undefined when idle. */
  #running: string | undefined;
  /** Settles when the call in flight has ended and, had dispose() come meanwhile, the engine is released. */
  #settled: Promise<void> = Promise.resolve();
  #disposed = false;

  constructor(engine: E, wrapper = "withNexusQuant", eos: readonly number[] = []) {
    this.#engine = engine;
    this.#wrapper = wrapper;
    this.eos = Object.freeze([...eos]);
  }

  /** The compressed cache of the current conversation (undefined before the first step or for preset "none"). */
  get cache(): CompressedKVCache | undefined {
    return this.#engine.cache;
  }

  /** True length of a row of the current conversation: the position its next token gets. */
  position(row = 0): number {
    return this.#engine.position(row);
  }

  /**
   * Runs one chunk: `rows[b]` are the new tokens of row b (rows of different lengths are left-padded;
   * a single array is batch 1). Appends them to the cache and returns the logits.
   */
  async step(rows: TokenRows): Promise<StepResult> {
    return this.#exclusive("step()", async () => {
      const result = await this.#checkedStep(rows);
      this.#pending.fill(undefined);
      return result;
    });
  }

  /**
   * Generates from a prompt (one row, or one per batch row of any lengths). Starts a new
   * conversation unless `continue: true`.
   */
  async generate(inputIds: TokenRows, options: GenerateOptions = {}): Promise<GenerateResult> {
    return this.#exclusive("generate()", async () => {
      const maxNewTokens = options.maxNewTokens ?? 32;
      if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 0) throw invalidArgument("maxNewTokens", "an integer >= 0", maxNewTokens);
      const eos = new Set(options.eos === undefined ? this.eos : checkTokenIds("eos", options.eos));
      const sample = createSampler(options);
      let prompt = toTokenRows(inputIds).map((r) => [...r]);
      // Checked before a new conversation replaces the held one: bad input leaves it as it was.
      checkVocab(prompt, this.#engine.vocabSize);
      if (options.continue && this.#engine.batch !== undefined) {
        // The previous turn's last token was sampled but never fed: it goes in front of the new prompt.
        prompt = prompt.map((row, b) => (this.#pending[b] === undefined ? row : [this.#pending[b]!, ...row]));
      } else {
        if (prompt.every((row) => row.length === 0)) throw invalidArgument("inputIds", "at least one token in some row", inputIds);
        this.#resetNow();
      }
      const generated: number[][] = prompt.map(() => []);
      const done = prompt.map(() => maxNewTokens === 0);
      let result = await this.#checkedStep(prompt);
      this.#pending = new Array(prompt.length).fill(undefined);
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
        result = await this.#checkedStep(next);
      }
      return { tokens: generated, stats: this.#engine.stats() };
    });
  }

  /**
   * The conversation held now, as bytes that another process can resume (`withNexusQuant(model, {
   * state })` or `restoreState`): the compressed cache as it is, each row's true length and pending
   * (sampled, not yet fed) token, the spec and schedule position, the engine's own state, and the
   * model's fingerprint. Format: docs/state.md. The handle is unchanged and goes on as before.
   */
  async saveState(): Promise<Uint8Array> {
    return this.#exclusive("saveState()", async () => {
      const engine = this.#engine;
      if (engine.saveConversation === undefined || engine.fingerprint === undefined) {
        throw new NexusQuantError("UNSUPPORTED", "This handle's engine cannot save its conversation (it implements no saveConversation/fingerprint).");
      }
      const conversation = engine.saveConversation();
      if (conversation === undefined) {
        throw new NexusQuantError("UNSUPPORTED", "saveState() saves a conversation, and this handle holds none yet: run generate() or step() first (or restoreState()).");
      }
      const model = await engine.fingerprint();
      return encodeConversationState({ ...conversation, model, pending: [...this.#pending] });
    });
  }

  /** The fingerprint of the model this handle runs, which its saved states carry (docs/state.md). */
  async modelFingerprint(): Promise<ModelFingerprint> {
    this.#live();
    if (this.#engine.fingerprint === undefined) throw new NexusQuantError("UNSUPPORTED", "This handle's engine has no model fingerprint (it cannot save states).");
    return this.#engine.fingerprint();
  }

  /**
   * Replaces the conversation held now with a saved one (saveState()'s bytes, from any process), so
   * that `generate(ids, { continue: true })` goes on exactly as the handle that saved it would have.
   * Checked before anything changes: the bytes (CORRUPT_DATA naming what failed; UNSUPPORTED for a
   * newer format), the model (MODEL_MISMATCH with both fingerprints), the engine kind and the options
   * that decide the tokens (INVALID_ARGUMENT). On any error the handle keeps its conversation.
   */
  async restoreState(state: Uint8Array): Promise<void> {
    return this.#exclusive("restoreState()", async () => {
      const engine = this.#engine;
      const saved = decodeConversationState(state);
      if (engine.restoreConversation === undefined || engine.fingerprint === undefined || engine.stateKind === undefined) {
        throw new NexusQuantError("UNSUPPORTED", "This handle's engine cannot resume a conversation (it implements no restoreConversation/fingerprint).");
      }
      checkStateKind(saved, engine.stateKind);
      const model = await engine.fingerprint();
      if (model.id !== saved.model.id) {
        throw new NexusQuantError(
          "MODEL_MISMATCH",
          `This conversation state was saved on another model: its fingerprint is ${saved.model.id} (${saved.model.covers}); this model's is ${model.id} (${model.covers}). Resume it on the model that saved it.`,
          { state: saved.model.id, model: model.id },
        );
      }
      engine.restoreConversation(saved);
      this.#pending = [...saved.pending];
    });
  }

  /** Memory and time of the current conversation (all zero before the first step). */
  stats(): KvStats {
    return this.#engine.stats();
  }

  /** Where the time of the steps went (the engine's breakdown; cumulative since the last reset()). */
  timings(): ReturnType<E["timings"]> {
    return this.#engine.timings() as ReturnType<E["timings"]>;
  }

  /** Drops the conversation (and frees its cache); the next step starts a new one. */
  reset(): void {
    this.#live();
    if (this.#running !== undefined) throw busy(this.#running, "reset()");
    this.#resetNow();
  }

  /**
   * Frees the cache. The model or session is the caller's: it is not released. Called while a step
   * or a generate() runs, the cache is freed as soon as the step in flight returns: a generate()
   * stops there (no further step starts) and rejects with DISPOSED.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#running === undefined) this.#engine.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /**
   * Like dispose(), and waits for what the engine releases asynchronously (e.g. the native path's ONNX
   * sessions), also when a call is in flight: it resolves once that call has stopped and all is freed.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return this.#settled;
    this.#disposed = true;
    if (this.#running === undefined) await this.#releaseEngine();
    else await this.#settled;
  }

  async #releaseEngine(): Promise<void> {
    if (this.#engine.disposeAsync !== undefined) await this.#engine.disposeAsync();
    else this.#engine.dispose();
  }

  #resetNow(): void {
    this.#engine.reset();
    this.#pending = [];
    this.#steps = 0;
  }

  /** One engine step whose logits are checked before anything samples from them (MODEL_OUTPUT on NaN/Inf). */
  async #checkedStep(rows: TokenRows): Promise<StepResult> {
    this.#live(); // dispose() during a generate(): no further step starts
    const result = await this.#engine.step(rows);
    this.#steps += 1;
    const lengths = toTokenRows(rows).map((r) => r.length);
    const n = result.dims[1];
    checkFiniteLogits(result.logits, result.dims, {
      wrapper: this.#wrapper,
      step: this.#steps,
      // "last" logits ([b, 1, vocab]) are real for every row with a token this step.
      realColumns: (row) => (n === 1 ? Math.min(1, lengths[row] ?? 0) : (lengths[row] ?? 0)),
      position: (row, column) => this.#engine.position(row) - (n - column),
    });
    return result;
  }

  /** The one not-disposed / not-busy guard: runs `work` as the only call in flight. */
  async #exclusive<R>(what: string, work: () => Promise<R>): Promise<R> {
    this.#live();
    if (this.#running !== undefined) throw busy(this.#running, what);
    this.#running = what;
    let settle = () => {};
    this.#settled = new Promise<void>((resolve) => (settle = resolve));
    try {
      const result = await work();
      this.#live();
      return result;
    } finally {
      this.#running = undefined;
      if (this.#disposed) await this.#releaseEngine().catch(() => undefined);
      settle();
    }
  }

  #live(): void {
    if (this.#disposed) throw new NexusQuantError("DISPOSED", "This wrapped model has been disposed; call withNexusQuant() again.");
  }
}

function busy(running: string, call: string): NexusQuantError {
  return new NexusQuantError(
    "BUSY",
    `${call} was called while ${running} is still running on this handle. A handle holds one conversation at a time: await the running call first, or wrap the model again (withNexusQuant) for a second conversation.`,
    { running, call },
  );
}
