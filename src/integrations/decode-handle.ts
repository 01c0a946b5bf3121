/**
 * The handle withNexusQuant returns for a model it runs itself (an onnxruntime-node session, or the
 * native path): generate() with sampling and multi-turn, step(), stats(), dispose(), over any
 * StepEngine. One conversation at a time: a call that arrives while another runs is refused with
 * BUSY, and nothing of the running one changes.
 */
import { NexusQuantError, invalidArgument } from "../errors.js";
import type { CompressedKVCache } from "../runtime/index.js";
import { checkFiniteLogits } from "./finite-logits.js";
import type { KvStats } from "./conversation-cache.js";
import { createSampler, type SamplingOptions } from "./sampling.js";
import { checkVocab, toTokenRows, type StepEngine, type StepResult, type TokenRows } from "./step-adapter.js";

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

export class DecodeHandle<E extends StepEngine = StepEngine> {
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

  constructor(engine: E, wrapper = "withNexusQuant") {
    this.#engine = engine;
    this.#wrapper = wrapper;
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
      const eos = new Set(options.eos === undefined ? [] : typeof options.eos === "number" ? [options.eos] : options.eos);
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
