/**
 * Shared prefixes: the saved state of a document, found by the hash of its tokens, so that a second
 * conversation over the same document starts from it instead of reading it again (LMCache's idea,
 * with the exact compressed state instead of FP16 blocks).
 *
 * Prefixes are cut at multiples of `chunkTokens` and named by a hash chain over the chunks (so one
 * hash names a whole prefix) under an identity of the model and the options that decide the state
 * (fingerprint, spec, schedule, prefill chunk, seed): a state is only ever found by a handle that
 * would have computed the same one. Each prefill restores into the caller's handle, which gets its
 * own copy of the cache: what one conversation adds never reaches the stored state or another's.
 *
 * On the native path the result is exact: with `chunkTokens` a multiple of the handle's prefillChunk
 * the prompt is cut at the same places as in one uninterrupted generate(), so the conversation gives
 * the same tokens as one that read the whole prompt itself.
 */
import { createHash } from "node:crypto";
import { NexusQuantError, invalidArgument } from "../errors.js";
import type { DecodeHandle } from "../integrations/decode-handle.js";
import type { ResolvedOptions } from "../integrations/options.js";
import { checkFiniteNumber, checkInt } from "../validate.js";
import type { StateStore } from "./state-store.js";

/** A handle whose conversations can be saved (NativeModelSession, NexusQuantSession). */
export type PrefixHandle = DecodeHandle & { readonly options: Readonly<ResolvedOptions> };

export interface PrefixCacheOptions {
  /** Where the prefix states live (a FileStateStore, a RedisStateStore, …). */
  store: StateStore;
  /** Tokens per chunk: prefixes are stored and found at multiples of it (default 256). */
  chunkTokens?: number;
  /** Expiry of stored prefixes, in seconds (default: never). */
  ttlSeconds?: number;
  /** Prefix of the store keys (default "prefix:"). */
  namespace?: string;
}

export interface PrefillResult {
  /** Tokens that came from a stored prefix (0: none was found). */
  reusedTokens: number;
  /** Tokens the model read in this call. */
  prefilledTokens: number;
  /** The handle's position now: pass `tokens.slice(position)` to generate(…, { continue: true }). */
  position: number;
  /** The key under which the state at `position` was stored by this call, if it was. */
  storedKey?: string;
  /** A store failure while storing the new prefix (the handle is fine and at `position`). */
  storeError?: NexusQuantError;
}

export class PrefixCache {
  readonly store: StateStore;
  readonly chunkTokens: number;
  readonly ttlSeconds: number | undefined;
  readonly namespace: string;

  constructor(options: PrefixCacheOptions) {
    const store = options?.store;
    if (typeof store?.get !== "function" || typeof store.put !== "function") throw invalidArgument("options.store", "a StateStore (get, put, delete)", store);
    this.store = store;
    this.chunkTokens = checkInt("options.chunkTokens", options.chunkTokens ?? 256, { min: 1 });
    this.ttlSeconds = options.ttlSeconds === undefined ? undefined : checkFiniteNumber("options.ttlSeconds", options.ttlSeconds, { min: 0.001 });
    this.namespace = options.namespace ?? "prefix:";
  }

  /**
   * Starts a conversation of `tokens` (one row) on `lm`: restores the longest stored prefix of the
   * shared part (`tokens.slice(0, prefixTokens)`: a document, a system prompt; default all of it),
   * reads on up to the last chunk boundary within it, and stores the state there if it was not stored
   * yet. Then `lm.generate(tokens.slice(position), { continue: true })` goes on. At least one token is
   * always left for generate(). The conversation `lm` held before is dropped.
   */
  async prefill(lm: PrefixHandle, tokens: readonly number[], options: { prefixTokens?: number } = {}): Promise<PrefillResult> {
    const shared = options.prefixTokens === undefined ? tokens.length : checkInt("options.prefixTokens", options.prefixTokens, { min: 0 });
    const { keys, boundaries } = await this.#plan(lm, tokens, Math.min(shared, tokens.length - 1));
    let reused = 0;
    // Longest first: one GET per boundary until a hit (a miss costs one small read).
    for (let i = boundaries.length - 1; i >= 0 && reused === 0; i--) {
      const state = await this.store.get(keys[i]!);
      if (state !== undefined) {
        await lm.restoreState(state);
        reused = boundaries[i]!;
      }
    }
    if (reused === 0) lm.reset();
    const end = boundaries.at(-1) ?? 0;
    const result: PrefillResult = { reusedTokens: reused, prefilledTokens: end - reused, position: end };
    if (end > reused) {
      await lm.step(tokens.slice(reused, end));
      const key = keys.at(-1)!;
      try {
        await this.store.put(key, await lm.saveState(), this.ttlSeconds === undefined ? undefined : { ttlSeconds: this.ttlSeconds });
        result.storedKey = key;
      } catch (e) {
        if (!(e instanceof NexusQuantError && e.code === "STORE_UNAVAILABLE")) throw e;
        result.storeError = e;
      }
    }
    return result;
  }

  /** The store key of the prefix tokens[0, n) (n a multiple of chunkTokens) for this handle's model and options. */
  async keyFor(lm: PrefixHandle, tokens: readonly number[], n: number): Promise<string> {
    if (!Number.isSafeInteger(n) || n <= 0 || n % this.chunkTokens !== 0 || n > tokens.length) {
      throw invalidArgument("n", `a multiple of chunkTokens (${this.chunkTokens}) in [${this.chunkTokens}, ${tokens.length}]`, n);
    }
    const { keys, boundaries } = await this.#plan(lm, tokens.slice(0, n), n);
    return keys[boundaries.indexOf(n)]!;
  }

  /** The chunk boundaries below `limit` and the key of each prefix. */
  async #plan(lm: PrefixHandle, tokens: readonly number[], limit: number): Promise<{ keys: string[]; boundaries: number[] }> {
    if (!Array.isArray(tokens) || tokens.length === 0 || !tokens.every((t) => Number.isSafeInteger(t) && t >= 0 && t < 2 ** 32)) {
      throw invalidArgument("tokens", "a non-empty array of token ids (one row)", tokens);
    }
    const o = lm.options;
    if (o.prefillChunk !== undefined && this.chunkTokens % o.prefillChunk !== 0) {
      throw invalidArgument("chunkTokens", `a multiple of the handle's prefillChunk (${o.prefillChunk}), so that prompts are cut where an uninterrupted prefill cuts them`, this.chunkTokens);
    }
    const model = await lm.modelFingerprint();
    // What decides a state besides its tokens: a state is only found by a handle that computes the same one.
    const identity = createHash("sha256")
      .update(JSON.stringify({ model: model.id, spec: o.spec, compressEvery: o.compressEvery, prefillChunk: o.prefillChunk, rereadLayers: o.rereadLayers ?? null, seed: o.seed ?? null, chunk: this.chunkTokens }))
      .digest();
    const keys: string[] = [];
    const boundaries: number[] = [];
    let chain: Buffer = identity;
    for (let end = this.chunkTokens; end <= limit; end += this.chunkTokens) {
      const chunk = Buffer.from(Uint32Array.from(tokens.slice(end - this.chunkTokens, end)).buffer);
      chain = createHash("sha256").update(chain).update(chunk).digest();
      boundaries.push(end);
      keys.push(`${this.namespace}${identity.toString("hex", 0, 8)}:${end}:${chain.toString("hex")}`);
    }
    return { keys, boundaries };
  }
}
