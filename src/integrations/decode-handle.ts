/**
 * The handle withNexusQuant returns for a model it runs itself (an onnxruntime-node session, or the
 * native path): generate() with sampling and multi-turn, step(), stats(), dispose(), over any
 * StepEngine. One conversation at a time: a call that arrives while another runs is refused with
 * BUSY, and nothing of the running one changes.
 */
import { NexusQuantError, invalidArgument } from "../errors.js";
import { checkTokenIds } from "../validate.js";
import type { CompressedKVCache } from "../runtime/index.js";
import type { KvStats } from "./conversation-cache.js";
import { createSampler, type SamplingOptions } from "./sampling.js";
import { toTokenRows, type StepEngine, type StepResult, type TokenRows } from "./step-adapter.js";

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
  /** Per row: the last generated token, not yet fed to the model (fed first by generate({ continue })). */
  #pending: (number | undefined)[] = [];
  /** What runs now (a step or a generate), for the BUSY message; undefined when idle. */
  #running: string | undefined;
  #disposed = false;

  constructor(engine: E, eos: readonly number[] = []) {
    this.#engine = engine;
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
      const result = await this.#engine.step(rows);
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
      if (options.continue && this.#engine.batch !== undefined) {
        // The previous turn's last token was sampled but never fed: it goes in front of the new prompt.
        prompt = prompt.map((row, b) => (this.#pending[b] === undefined ? row : [this.#pending[b]!, ...row]));
      } else {
        this.#resetNow();
      }
      const generated: number[][] = prompt.map(() => []);
      const done = prompt.map(() => maxNewTokens === 0);
      let result = await this.#engine.step(prompt);
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
        result = await this.#engine.step(next);
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
   * runs, the cache is freed as soon as that step returns (which then rejects with DISPOSED).
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#running === undefined) this.#engine.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Like dispose(), and waits for what the engine releases asynchronously (e.g. the native path's ONNX sessions). */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#running === undefined) await this.#releaseEngine();
  }

  async #releaseEngine(): Promise<void> {
    if (this.#engine.disposeAsync !== undefined) await this.#engine.disposeAsync();
    else this.#engine.dispose();
  }

  #resetNow(): void {
    this.#engine.reset();
    this.#pending = [];
  }

  /** The one not-disposed / not-busy guard: runs `work` as the only call in flight. */
  async #exclusive<R>(what: string, work: () => Promise<R>): Promise<R> {
    this.#live();
    if (this.#running !== undefined) throw busy(this.#running, what);
    this.#running = what;
    try {
      const result = await work();
      this.#live();
      return result;
    } finally {
      this.#running = undefined;
      if (this.#disposed) this.#engine.dispose();
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
